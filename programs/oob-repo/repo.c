/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The repository model: the state file (the commit point), signing new
 * versions of roles, and writing public/ in an order safe for readers.
 *
 * Functions in programs/ are the edge: each logs its own failures once and
 * returns the error, so the command functions in main.c only pass it on.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "oob-repo.h"

#define STATE_MAGIC "oob-repo-state 1"
#define STATE_MAX_SIZE (1024U * 1024U * 1024U)
#define SPEC_VERSION "1.0.31"
#define LOCK_WAIT_MSEC 30000

static const char *const repo_role_table[_REPO_ROLE_MAX] = {
        [REPO_ROLE_ROOT] = "root",
        [REPO_ROLE_TIMESTAMP] = "timestamp",
        [REPO_ROLE_SNAPSHOT] = "snapshot",
        [REPO_ROLE_TARGETS] = "targets",
        [REPO_ROLE_RELEASES] = "releases",
        [REPO_ROLE_HELPDESK] = "helpdesk",
};
DEFINE_STRING_TABLE_LOOKUP(repo_role, RepoRole);

static const char *const cli_key_type_table[_TUF_KEY_TYPE_MAX] = {
        [TUF_KEY_ED25519] = "ed25519",
        [TUF_KEY_ECDSA_P256] = "ecdsa",
        [TUF_KEY_RSA_PSS_SHA256] = "rsa",
};
DEFINE_STRING_TABLE_LOOKUP(cli_key_type, TufKeyType);

_Static_assert((int) REPO_ROLE_ROOT == (int) TUF_ROLE_ROOT &&
                       (int) REPO_ROLE_TIMESTAMP == (int) TUF_ROLE_TIMESTAMP &&
                       (int) REPO_ROLE_SNAPSHOT == (int) TUF_ROLE_SNAPSHOT &&
                       (int) REPO_ROLE_TARGETS == (int) TUF_ROLE_TARGETS,
               "top-level RepoRole values index TufRoot.roles[]");

#define DAY INT64_C(86400)

const int64_t repo_default_durations[_REPO_ROLE_MAX] = {
        [REPO_ROLE_ROOT] = 365 * DAY,
        [REPO_ROLE_TIMESTAMP] = 1 * DAY,
        [REPO_ROLE_SNAPSHOT] = 7 * DAY,
        [REPO_ROLE_TARGETS] = 90 * DAY,
        [REPO_ROLE_RELEASES] = 90 * DAY,
        [REPO_ROLE_HELPDESK] = 90 * DAY,
};

/* Roles in the order new versions are signed and written: whatever a role
 * refers to exists before it (root first, timestamp last). */
static const RepoRole publication_order[] = {
        REPO_ROLE_ROOT,     REPO_ROLE_RELEASES, REPO_ROLE_HELPDESK,
        REPO_ROLE_TARGETS,  REPO_ROLE_SNAPSHOT, REPO_ROLE_TIMESTAMP,
};

int parse_duration(const char *s, int64_t *ret) {
        static const struct {
                char unit;
                int64_t seconds;
        } units[] = {
                { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', DAY }, { 'w', 7 * DAY },
        };
        _cleanup_free_ char *digits = NULL;
        int64_t unit = 1;
        uint64_t n;
        size_t len;

        if (!s || !*s)
                return -EINVAL;
        digits = strdup(s);
        if (!digits)
                return -ENOMEM;
        len = strlen(digits);
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (digits[len - 1] == units[i].unit) {
                        unit = units[i].seconds;
                        digits[len - 1] = 0;
                        break;
                }
        /* At most a century: expiry dates stay far from any overflow. */
        if (safe_atou64(digits, &n) < 0 || n == 0 || n > (uint64_t) (100 * 366 * DAY / unit))
                return -EINVAL;
        *ret = (int64_t) n * unit;
        return 0;
}

char *repo_path(const Repo *r, const char *relative) {
        return path_join(r->dir, relative);
}

static void repo_document_done(RepoDocument *d) {
        free(d->data);
        *d = (RepoDocument) {};
}

Repo *repo_free(Repo *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < _REPO_ROLE_MAX; i++) {
                free(r->roles[i].document);
                tuf_targets_free(r->targets[i]);
                tuf_private_key_free(r->keys[i]);
        }
        for (size_t i = 0; i < r->n_root_history; i++)
                repo_document_done(&r->root_history[i]);
        free(r->root_history);
        tuf_root_free(r->root);
        tuf_private_key_free(r->retiring_root_key);
        if (r->lock_fd >= 0)
                close(r->lock_fd);  /* releases the lock */
        free(r->dir);
        free(r);
        return NULL;
}

static int repo_new(const char *dir, Repo **ret) {
        _cleanup_(repo_freep) Repo *r = calloc(1, sizeof(Repo));

        if (!r)
                return log_oom();
        r->lock_fd = -EBADF;
        r->dir = strdup(dir);
        if (!r->dir)
                return log_oom();
        for (size_t i = 0; i < _REPO_ROLE_MAX; i++)
                r->roles[i].duration = repo_default_durations[i];
        *ret = TAKE_PTR(r);
        return 0;
}

/* One oob-repo at a time per repository: a cron "refresh" waits for an
 * admin's "add-payload" instead of publishing from a stale state. The lock
 * is on the folder itself, which, unlike the state file, is never replaced. */
static int repo_lock(Repo *r) {
        r->lock_fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r->lock_fd < 0) {
                if (errno == ENOENT)
                        return -ENOENT;
                return log_error_errno(-errno, "%s: cannot open the repository folder: %m", r->dir);
        }
        for (unsigned waited = 0;; waited += 100) {
                if (flock(r->lock_fd, LOCK_EX | LOCK_NB) >= 0)
                        return 0;
                if (errno != EWOULDBLOCK)
                        return log_error_errno(-errno, "%s: cannot lock the repository: %m", r->dir);
                if (waited == 0)
                        log_info("%s: waiting for another oob-repo working on this repository...", r->dir);
                if (waited >= LOCK_WAIT_MSEC)
                        return log_error_errno(-EBUSY, "%s: still locked by another oob-repo after %d s",
                                               r->dir, LOCK_WAIT_MSEC / 1000);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
        }
}

/* ---- the state file ---------------------------------------------------------- */

/*
 * Text lines, then length-prefixed blobs (metadata may contain newlines,
 * e.g. in PEM public keys), then "end" so a cut file is noticed:
 *
 *   oob-repo-state 1
 *   key-type ed25519
 *   role NAME VERSION EXPIRES DURATION DIRTY        one per role
 *   document NAME SIZE\n<SIZE bytes>\n               published, one per role
 *   working NAME SIZE\n<SIZE bytes>\n                unpublished copy of a dirty targets role
 *   root-history VERSION SIZE\n<SIZE bytes>\n        every root, 1 to current
 *   end
 */

static int write_blob(FILE *f, const char *kind, const char *name, const void *data, size_t size) {
        fprintf(f, "%s %s %zu\n", kind, name, size);
        fwrite(data, 1, size, f);
        fputc('\n', f);
        return ferror(f) ? -ENOMEM : 0;
}

/* The working copy of a role with unpublished changes, kept as a signed
 * document so that it is read back with the same parser as published ones.
 * It never leaves the state file. */
static int sign_working_copy(Repo *r, RepoRole role, char **ret, size_t *ret_size) {
        _cleanup_free_ char *json = NULL;
        TufPrivateKey *key;
        size_t size;
        int k;

        k = repo_key(r, role, &key);
        if (k < 0)
                return k;
        k = tuf_targets_to_json(r->targets[role], &json, &size);
        if (k < 0)
                return log_error_errno(k, "Failed to serialize the working copy of %s: %m",
                                       repo_role_to_string(role));
        k = tuf_metadata_sign(json, size, &key, 1, ret, ret_size);
        if (k < 0)
                return log_error_errno(k, "Failed to sign the working copy of %s: %m",
                                       repo_role_to_string(role));
        return 0;
}

static int state_serialize(Repo *r, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *f = open_memstream(&buf, &size);
        int k;

        if (!f)
                return log_oom();
        fprintf(f, "%s\n", STATE_MAGIC);
        fprintf(f, "key-type %s\n", cli_key_type_to_string(r->key_type));
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++)
                fprintf(f, "role %s %" PRIu64 " %" PRId64 " %" PRId64 " %d\n", repo_role_to_string(i),
                        r->roles[i].version, r->roles[i].expires, r->roles[i].duration,
                        (int) r->roles[i].dirty);
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                k = write_blob(f, "document", repo_role_to_string(i), r->roles[i].document,
                               r->roles[i].document_size);
                if (k < 0)
                        return log_oom();
        }
        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++) {
                _cleanup_free_ char *doc = NULL;
                size_t doc_size;

                if (!r->roles[i].dirty)
                        continue;
                k = sign_working_copy(r, i, &doc, &doc_size);
                if (k < 0)
                        return k;
                k = write_blob(f, "working", repo_role_to_string(i), doc, doc_size);
                if (k < 0)
                        return log_oom();
        }
        for (size_t v = 0; v < r->n_root_history; v++) {
                char name[32];

                snprintf(name, sizeof(name), "%zu", v + 1);
                k = write_blob(f, "root-history", name, r->root_history[v].data, r->root_history[v].size);
                if (k < 0)
                        return log_oom();
        }
        fputs("end\n", f);
        if (fflush(f) != 0 || ferror(f))
                return log_oom();
        fclose(TAKE_PTR(f));
        *ret_size = size;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Commit: after this returns, the new versions exist whatever happens next. */
static int repo_commit(Repo *r) {
        _cleanup_free_ char *data = NULL, *path = repo_path(r, "state");
        size_t size = 0;
        int k;

        if (!path)
                return log_oom();
        k = state_serialize(r, &data, &size);
        if (k < 0)
                return k;
        k = write_file_atomic(path, data, size, 0644);
        if (k < 0)
                return log_error_errno(k, "Failed to write %s: %m", path);
        return 0;
}

static size_t split_words(char *line, char **words, size_t max) {
        size_t n = 0;
        char *save = NULL;

        for (char *w = strtok_r(line, " ", &save); w && n < max; w = strtok_r(NULL, " ", &save))
                words[n++] = w;
        return n;
}

static int parse_i64(const char *s, int64_t *ret) {
        uint64_t u;

        if (safe_atou64(s, &u) < 0 || u > INT64_MAX)
                return -EPROTO;
        *ret = (int64_t) u;
        return 0;
}

/* Fill the roles, root history and working copies (unpublished) from the
 * state file's bytes; the documents' content is checked afterwards. */
static int state_parse(Repo *r, char *data, size_t size, RepoDocument working[_REPO_ROLE_MAX]) {
        char *p = data, *end = data + size;
        bool seen_magic = false;

        for (;;) {
                char *nl, *words[8];
                size_t n;

                nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl)
                        return -EPROTO;  /* truncated: no "end" line */
                *nl = 0;
                n = split_words(p, words, ELEMENTSOF(words));
                p = nl + 1;

                if (!seen_magic) {
                        if (n != 2 || !streq(words[0], "oob-repo-state") || !streq(words[1], "1"))
                                return -EPROTO;
                        seen_magic = true;
                } else if (n == 1 && streq(words[0], "end")) {
                        return 0;
                } else if (n == 2 && streq(words[0], "key-type")) {
                        r->key_type = cli_key_type_from_string(words[1]);
                        if ((int) r->key_type < 0)
                                return -EPROTO;
                } else if (n == 6 && streq(words[0], "role")) {
                        RepoRole role = repo_role_from_string(words[1]);
                        RoleState *s;
                        int64_t dirty;

                        if ((int) role < 0)
                                return -EPROTO;
                        s = &r->roles[role];
                        if (safe_atou64(words[2], &s->version) < 0 || parse_i64(words[3], &s->expires) < 0 ||
                            parse_i64(words[4], &s->duration) < 0 || s->duration == 0 ||
                            parse_i64(words[5], &dirty) < 0 || dirty > 1)
                                return -EPROTO;
                        s->dirty = dirty;
                } else if (n == 3 && (streq(words[0], "document") || streq(words[0], "working") ||
                                      streq(words[0], "root-history"))) {
                        RepoDocument d = {};
                        uint64_t blob_size;

                        if (safe_atou64(words[2], &blob_size) < 0 || blob_size >= (uint64_t) (end - p) ||
                            p[blob_size] != '\n')
                                return -EPROTO;
                        d.data = repo_memdup(p, blob_size);
                        if (!d.data)
                                return -ENOMEM;
                        d.size = blob_size;
                        p += blob_size + 1;

                        if (streq(words[0], "root-history")) {
                                uint64_t v;
                                RepoDocument *h;

                                if (safe_atou64(words[1], &v) < 0 || v != r->n_root_history + 1) {
                                        repo_document_done(&d);
                                        return -EPROTO;
                                }
                                h = reallocarray(r->root_history, r->n_root_history + 1, sizeof(RepoDocument));
                                if (!h) {
                                        repo_document_done(&d);
                                        return -ENOMEM;
                                }
                                r->root_history = h;
                                r->root_history[r->n_root_history++] = d;
                        } else {
                                RepoRole role = repo_role_from_string(words[1]);
                                bool is_working = streq(words[0], "working");

                                if ((int) role < 0 || (is_working && !repo_role_is_targets(role)) ||
                                    (is_working ? working[role].data : r->roles[role].document)) {
                                        repo_document_done(&d);
                                        return -EPROTO;
                                }
                                if (is_working)
                                        working[role] = d;
                                else {
                                        r->roles[role].document = d.data;
                                        r->roles[role].document_size = d.size;
                                }
                        }
                } else
                        return -EPROTO;
        }
}

/* Parse the working copies of root and targets roles out of the documents
 * just loaded, and check that state agrees with itself. */
static int repo_load_models(Repo *r, RepoDocument working[_REPO_ROLE_MAX]) {
        RoleState *root = &r->roles[REPO_ROLE_ROOT];
        int k;

        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++)
                if (r->roles[i].version == 0 || !r->roles[i].document)
                        return -EPROTO;
        if (r->n_root_history != root->version ||
            r->root_history[root->version - 1].size != root->document_size ||
            memcmp(r->root_history[root->version - 1].data, root->document, root->document_size) != 0)
                return -EPROTO;

        k = tuf_root_parse_unverified(root->document, root->document_size, &r->root);
        if (k < 0)
                return k;
        if (r->root->version != root->version || r->root->expires != root->expires)
                return -EPROTO;
        r->consistent_snapshot = r->root->consistent_snapshot;

        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++) {
                RoleState *s = &r->roles[i];

                if (s->dirty != !!working[i].data)
                        return -EPROTO;
                if (s->dirty)
                        k = tuf_targets_parse_unverified(working[i].data, working[i].size, &r->targets[i]);
                else
                        k = tuf_targets_parse_unverified(s->document, s->document_size, &r->targets[i]);
                if (k < 0)
                        return k;
                if (r->targets[i]->version != s->version)
                        return -EPROTO;
        }
        if (!r->targets[REPO_ROLE_TARGETS]->has_delegations)
                return -EPROTO;
        return 0;
}

static int public_is_current(Repo *r);
static int repo_write_public(Repo *r);

int repo_open(const char *dir, Repo **ret) {
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_free_ char *path = NULL, *data = NULL;
        RepoDocument working[_REPO_ROLE_MAX] = {};
        size_t size;
        int k;

        k = repo_new(dir, &r);
        if (k < 0)
                return k;
        path = repo_path(r, "state");
        if (!path)
                return log_oom();
        k = repo_lock(r);
        if (k == -ENOENT)
                goto not_a_repo;
        if (k < 0)
                return k;
        k = read_full_file(path, STATE_MAX_SIZE, &data, &size);
        if (k == -ENOENT)
                goto not_a_repo;
        if (k < 0)
                return log_error_errno(k, "Failed to read %s: %m", path);

        k = state_parse(r, data, size, working);
        if (k >= 0)
                k = repo_load_models(r, working);
        for (size_t i = 0; i < _REPO_ROLE_MAX; i++)
                repo_document_done(&working[i]);
        if (k == -ENOMEM)
                return log_oom();
        if (k < 0)
                return log_error_errno(k, "%s: damaged repository state: %m", path);

        k = repo_rotate_recover(r);
        if (k < 0)
                return k;
        k = public_is_current(r);
        if (k < 0)
                return k;
        if (k == 0) {
                log_warning("%s: public/ is behind the committed state (interrupted publication?): "
                            "writing it now",
                            r->dir);
                k = repo_write_public(r);
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(r);
        return 0;

not_a_repo:
        return log_error_errno(-ENOENT,
                               "%s: not an oob-repo repository (no %s); create one with "
                               "'oob-repo --repo %s init'",
                               dir, path, dir);
}

/* ---- creating a repository ------------------------------------------------- */

static int add_public_key(TufKey **keys, size_t *n_keys, const TufPrivateKey *k, TufRoleKeys *role) {
        TufKey pub = {}, *grown;
        int r;

        r = tuf_private_key_public(k, &pub);
        if (r < 0)
                return r;
        r = strv_extend(&role->keyids, pub.keyid);
        if (r < 0) {
                tuf_key_done(&pub);
                return r;
        }
        role->threshold = 1;
        if (tuf_key_find(*keys, *n_keys, pub.keyid)) {
                tuf_key_done(&pub);
                return 0;
        }
        grown = reallocarray(*keys, *n_keys + 1, sizeof(TufKey));
        if (!grown) {
                tuf_key_done(&pub);
                return -ENOMEM;
        }
        *keys = grown;
        (*keys)[(*n_keys)++] = pub;
        return 0;
}

static int new_targets(bool delegations, TufTargets **ret) {
        TufTargets *t = calloc(1, sizeof(TufTargets));

        if (!t)
                return -ENOMEM;
        t->spec_version = strdup(SPEC_VERSION);
        if (!t->spec_version) {
                tuf_targets_free(t);
                return -ENOMEM;
        }
        t->has_delegations = delegations;
        *ret = t;
        return 0;
}

/* Delegate one folder (or several) of target paths to a role, terminating:
 * nothing below targets may sign manifests/, payloads/ or orders/ otherwise. */
static int add_delegation(Repo *r, RepoRole role, const char *const *paths) {
        TufTargets *t = r->targets[REPO_ROLE_TARGETS];
        TufDelegatedRole *grown, *d;
        int k;

        grown = reallocarray(t->roles, t->n_roles + 1, sizeof(TufDelegatedRole));
        if (!grown)
                return -ENOMEM;
        t->roles = grown;
        d = &t->roles[t->n_roles++];
        *d = (TufDelegatedRole) { .terminating = true };
        d->name = strdup(repo_role_to_string(role));
        if (!d->name)
                return -ENOMEM;
        for (const char *const *p = paths; *p; p++) {
                k = strv_extend(&d->paths, *p);
                if (k < 0)
                        return k;
        }
        return add_public_key(&t->delegation_keys, &t->n_delegation_keys, r->keys[role], &d->keys);
}

static int repo_create_models(Repo *r) {
        static const char *const releases_paths[] = { "manifests/*", "payloads/*", NULL };
        static const char *const helpdesk_paths[] = { "orders/*", NULL };
        int k;

        r->root = calloc(1, sizeof(TufRoot));
        if (!r->root)
                return -ENOMEM;
        r->root->spec_version = strdup(SPEC_VERSION);
        if (!r->root->spec_version)
                return -ENOMEM;
        r->root->consistent_snapshot = r->consistent_snapshot;
        for (RepoRole i = REPO_ROLE_ROOT; i <= REPO_ROLE_TARGETS; i++) {
                k = add_public_key(&r->root->keys, &r->root->n_keys, r->keys[i], &r->root->roles[i]);
                if (k < 0)
                        return k;
        }

        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++) {
                k = new_targets(i == REPO_ROLE_TARGETS, &r->targets[i]);
                if (k < 0)
                        return k;
        }
        k = add_delegation(r, REPO_ROLE_RELEASES, releases_paths);
        if (k < 0)
                return k;
        return add_delegation(r, REPO_ROLE_HELPDESK, helpdesk_paths);
}

int repo_create(const char *dir, TufKeyType key_type, bool consistent_snapshot,
                const int64_t durations[_REPO_ROLE_MAX], Repo **ret) {
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_free_ char *state = NULL, *keys = NULL;
        int k;

        k = mkdir_p(dir, 0755);
        if (k < 0)
                return log_error_errno(k, "%s: cannot create the folder: %m", dir);
        k = repo_new(dir, &r);
        if (k < 0)
                return k;
        k = repo_lock(r);
        if (k < 0)
                return k;
        state = repo_path(r, "state");
        keys = repo_path(r, "keys");
        if (!state || !keys)
                return log_oom();
        if (access(state, F_OK) >= 0)
                return log_error_errno(-EEXIST, "%s: a repository is already there (%s exists): refusing "
                                       "to overwrite it", dir, state);
        if (mkdir(keys, 0700) < 0) {
                if (errno == EEXIST)
                        return log_error_errno(-EEXIST, "%s: a keys/ folder is already there: refusing "
                                               "to overwrite keys (remove it or choose another folder)",
                                               dir);
                return log_error_errno(-errno, "Failed to create %s: %m", keys);
        }
        if (chmod(keys, 0700) < 0)  /* whatever the umask said */
                return log_error_errno(-errno, "Failed to set the mode of %s: %m", keys);

        r->key_type = key_type;
        r->consistent_snapshot = consistent_snapshot;
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                _cleanup_free_ char *name = NULL;

                r->roles[i].duration = durations[i];
                r->roles[i].renew = true;
                k = tuf_private_key_generate(key_type, &r->keys[i]);
                if (k < 0)
                        return log_error_errno(k, "Failed to generate a %s key for %s: %m",
                                               cli_key_type_to_string(key_type), repo_role_to_string(i));
                if (asprintf(&name, "%s.pem", repo_role_to_string(i)) < 0)
                        return log_oom();
                k = repo_write_key(r, name, r->keys[i]);
                if (k < 0)
                        return k;
        }
        k = repo_create_models(r);
        if (k < 0)
                return log_error_errno(k, "Failed to build the initial metadata: %m");
        *ret = TAKE_PTR(r);
        return 0;
}

/* ---- signing ----------------------------------------------------------------- */

void repo_mark_expiring(Repo *r, int64_t now) {
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                RoleState *s = &r->roles[i];

                if (s->version == 0 || s->expires - now < s->duration / 2)
                        s->renew = true;
        }
}

/* A snapshot or timestamp "meta" entry for a document we signed. */
static int meta_file_for(const RoleState *s, char *name, TufMetaFile *ret) {
        int k;

        *ret = (TufMetaFile) { .name = name, .version = s->version, .length = s->document_size };
        k = tuf_hashes_compute(s->document, s->document_size, &ret->hashes);
        if (k < 0)
                return k;
        ret->hashes.has_sha512 = false;  /* sha256 is what every client reads */
        return 0;
}

static int snapshot_to_json(Repo *r, uint64_t version, int64_t expires, char **ret, size_t *ret_size) {
        static const RepoRole listed[] = { REPO_ROLE_TARGETS, REPO_ROLE_RELEASES, REPO_ROLE_HELPDESK };
        TufMetaFile meta[ELEMENTSOF(listed)] = {};
        TufSnapshot s = {
                .version = version,
                .expires = expires,
                .spec_version = (char *) SPEC_VERSION,
                .meta = meta,
                .n_meta = ELEMENTSOF(listed),
        };
        int k = 0;

        for (size_t i = 0; i < ELEMENTSOF(listed) && k >= 0; i++) {
                char *name = tuf_role_filename(repo_role_to_string(listed[i]), 0);

                if (!name)
                        k = -ENOMEM;
                else
                        k = meta_file_for(&r->roles[listed[i]], name, &meta[i]);
        }
        if (k >= 0)
                k = tuf_snapshot_to_json(&s, ret, ret_size);
        for (size_t i = 0; i < ELEMENTSOF(listed); i++)
                free(meta[i].name);
        return k;
}

static int timestamp_to_json(Repo *r, uint64_t version, int64_t expires, char **ret, size_t *ret_size) {
        char name[] = "snapshot.json";
        TufTimestamp t = {
                .version = version,
                .expires = expires,
                .spec_version = (char *) SPEC_VERSION,
        };
        int k;

        k = meta_file_for(&r->roles[REPO_ROLE_SNAPSHOT], name, &t.snapshot);
        if (k < 0)
                return k;
        return tuf_timestamp_to_json(&t, ret, ret_size);
}

static int root_history_append(Repo *r, const char *data, size_t size) {
        RepoDocument *h = reallocarray(r->root_history, r->n_root_history + 1, sizeof(RepoDocument));

        if (!h)
                return -ENOMEM;
        r->root_history = h;
        h[r->n_root_history].data = repo_memdup(data, size);
        if (!h[r->n_root_history].data)
                return -ENOMEM;
        h[r->n_root_history++].size = size;
        return 0;
}

/* The content of a delegated role as published, to renew it without its
 * unpublished changes. */
static int published_targets(Repo *r, RepoRole role, TufTargets **ret) {
        int k = tuf_targets_parse_unverified(r->roles[role].document, r->roles[role].document_size, ret);

        if (k < 0)
                return log_error_errno(k, "Failed to read the published %s: %m", repo_role_to_string(role));
        return 0;
}

/* Sign the next version of one role from its working copy, or with
 * from_published its published content (snapshot and timestamp from the
 * documents they describe). */
static int sign_role(Repo *r, RepoRole role, int64_t now, bool from_published) {
        RoleState *s = &r->roles[role];
        _cleanup_(tuf_targets_freep) TufTargets *published = NULL;
        _cleanup_free_ char *json = NULL, *doc = NULL;
        TufPrivateKey *keys[2];
        uint64_t version = s->version + 1;
        int64_t expires = now + s->duration;
        size_t json_size, doc_size, n_keys = 1;
        int k;

        k = repo_key(r, role, &keys[0]);
        if (k < 0)
                return k;

        switch (role) {
        case REPO_ROLE_ROOT:
                r->root->version = version;
                r->root->expires = expires;
                k = tuf_root_to_json(r->root, &json, &json_size);
                /* A new root must also carry the threshold of the root keys that
                 * clients trust now, or they could not follow the chain. */
                if (r->retiring_root_key)
                        keys[n_keys++] = r->retiring_root_key;
                break;
        case REPO_ROLE_TIMESTAMP:
                k = timestamp_to_json(r, version, expires, &json, &json_size);
                break;
        case REPO_ROLE_SNAPSHOT:
                k = snapshot_to_json(r, version, expires, &json, &json_size);
                break;
        case REPO_ROLE_TARGETS:
        case REPO_ROLE_RELEASES:
        case REPO_ROLE_HELPDESK: {
                TufTargets *t = r->targets[role];

                /* The working copy follows the version even when its changes
                 * stay unpublished: state is checked for that on load. */
                t->version = version;
                t->expires = expires;
                if (from_published) {
                        k = published_targets(r, role, &published);
                        if (k < 0)
                                return k;
                        t = published;
                        t->version = version;
                        t->expires = expires;
                }
                k = tuf_targets_to_json(t, &json, &json_size);
                break;
        }
        default:
                assert(false);
                return -EINVAL;
        }
        if (k < 0)
                return log_error_errno(k, "Failed to serialize %s version %" PRIu64 ": %m",
                                       repo_role_to_string(role), version);
        k = tuf_metadata_sign(json, json_size, keys, n_keys, &doc, &doc_size);
        if (k < 0)
                return log_error_errno(k, "Failed to sign %s version %" PRIu64 ": %m",
                                       repo_role_to_string(role), version);
        if (role == REPO_ROLE_ROOT) {
                k = root_history_append(r, doc, doc_size);
                if (k < 0)
                        return log_oom();
        }
        free(s->document);
        s->document = TAKE_PTR(doc);
        s->document_size = doc_size;
        s->version = version;
        s->expires = expires;
        s->renew = false;
        if (!from_published)
                s->dirty = false;
        return 0;
}

int repo_save(Repo *r) {
        return repo_commit(r);
}

int repo_publish(Repo *r, int64_t now, RepoPublishFlags flags) {
        bool staged = flags & REPO_PUBLISH_STAGED, signed_now[_REPO_ROLE_MAX] = {};
        int n = 0, k;

        repo_mark_expiring(r, now);
        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++) {
                if (staged && r->roles[i].dirty)
                        r->roles[i].renew = true;
                /* A new targets role needs a snapshot naming it, which needs
                 * a timestamp naming that. */
                if (r->roles[i].renew)
                        r->roles[REPO_ROLE_SNAPSHOT].renew = true;
        }
        if (r->roles[REPO_ROLE_SNAPSHOT].renew)
                r->roles[REPO_ROLE_TIMESTAMP].renew = true;

        for (size_t i = 0; i < ELEMENTSOF(publication_order); i++) {
                RepoRole role = publication_order[i];

                if (!r->roles[role].renew)
                        continue;
                /* Only delegated roles hold staged changes: the working copies
                 * of root and targets change only with a key rotation, which
                 * is published at once. */
                k = sign_role(r, role, now, !staged && repo_role_is_delegated(role) && r->roles[role].dirty);
                if (k < 0)
                        return k;
                signed_now[role] = true;
                n++;
        }
        if (n > 0) {
                k = repo_commit(r);
                if (k < 0)
                        return k;
        }
        /* Also with nothing new: public/ is made whole again if it was damaged. */
        k = repo_write_public(r);
        if (k < 0)
                return k;

        if ((flags & REPO_PUBLISH_REPORT) && n > 0) {
                printf("Published");
                for (size_t i = 0, j = 0; i < ELEMENTSOF(publication_order); i++) {
                        RepoRole role = publication_order[i];

                        if (signed_now[role])
                                printf("%s %s v%" PRIu64, j++ == 0 ? ":" : ",", repo_role_to_string(role),
                                       r->roles[role].version);
                }
                printf(".\n");
        } else if (flags & REPO_PUBLISH_REPORT)
                printf("Nothing to publish: every role is current.\n");
        return n;
}

/* ---- public/ ------------------------------------------------------------------ */

/* Replace path with data unless it already holds exactly that. */
static int write_if_changed(const char *path, const void *data, size_t size) {
        _cleanup_free_ char *old = NULL;
        size_t old_size;
        int k;

        k = read_full_file(path, size, &old, &old_size);
        if (k >= 0 && old_size == size && memcmp(old, data, size) == 0)
                return 0;
        k = write_file_atomic(path, data, size, 0644);
        if (k < 0)
                return log_error_errno(k, "Failed to write %s: %m", path);
        return 1;
}

static int write_metadata(Repo *r, const char *role, uint64_t version, const RepoDocument *d) {
        _cleanup_free_ char *name = tuf_role_filename(role, version), *relative = NULL, *path = NULL;

        if (!name)
                return log_oom();
        relative = path_join("public/metadata", name);
        path = relative ? repo_path(r, relative) : NULL;
        if (!path)
                return log_oom();
        return write_if_changed(path, d->data, d->size);
}

/* Each role as VERSION.ROLE.json (consistent snapshots) and then as ROLE.json
 * (clients without them), in publication order; timestamp is written last
 * and never versioned, so a reader never sees a timestamp naming a snapshot
 * that is not there yet. */
static const RoleState *role_state(const Repo *r, RepoRole role) {
        assert((size_t) role < _REPO_ROLE_MAX);
        return &r->roles[role];
}

static int repo_write_public(Repo *r) {
        static const char *const folders[] = { "public", "public/metadata", "public/targets" };
        int k;

        for (size_t i = 0; i < ELEMENTSOF(folders); i++) {
                _cleanup_free_ char *path = repo_path(r, folders[i]);

                if (!path)
                        return log_oom();
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return log_error_errno(-errno, "Failed to create %s: %m", path);
        }
        k = repo_link_target_files(r);
        if (k < 0)
                return k;

        for (size_t i = 0; i < ELEMENTSOF(publication_order); i++) {
                RepoRole role = publication_order[i];
                const char *name = repo_role_to_string(role);
                const RoleState *s = role_state(r, role);
                RepoDocument d = { .data = s->document, .size = s->document_size };

                if (role == REPO_ROLE_ROOT)
                        for (size_t v = 0; v < r->n_root_history; v++) {
                                k = write_metadata(r, name, v + 1, &r->root_history[v]);
                                if (k < 0)
                                        return k;
                        }
                else if (role != REPO_ROLE_TIMESTAMP) {
                        k = write_metadata(r, name, s->version, &d);
                        if (k < 0)
                                return k;
                }
                k = write_metadata(r, name, 0, &d);
                if (k < 0)
                        return k;
        }
        return repo_prune_target_files(r);
}

/* public/ is current when root.json and timestamp.json (written last) are
 * what state says: 1 current, 0 not. */
static int public_is_current(Repo *r) {
        static const RepoRole checked[] = { REPO_ROLE_ROOT, REPO_ROLE_TIMESTAMP };

        for (size_t i = 0; i < ELEMENTSOF(checked); i++) {
                RoleState *s = &r->roles[checked[i]];
                _cleanup_free_ char *name = tuf_role_filename(repo_role_to_string(checked[i]), 0);
                _cleanup_free_ char *relative = NULL, *path = NULL, *data = NULL;
                size_t size;
                int k;

                relative = name ? path_join("public/metadata", name) : NULL;
                path = relative ? repo_path(r, relative) : NULL;
                if (!path)
                        return log_oom();
                k = read_full_file(path, s->document_size, &data, &size);
                if (k < 0 || size != s->document_size || memcmp(data, s->document, size) != 0)
                        return 0;
        }
        return 1;
}

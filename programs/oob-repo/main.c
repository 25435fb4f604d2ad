/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oob-repo: the publisher. Keys, TUF metadata, patch manifests, payloads and
 * helpdesk orders, published as a static tree (DIR/public/) that any web
 * server, CDN or object store can serve. One function per command.
 *
 * Exit status: 0 success, 1 failure, 2 usage error.
 */

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "oob-repo.h"

#define YAML_FILE_MAX (16U * 1024U * 1024U)

typedef enum OptionFlag {
        OPTION_KEY_TYPE = 1 << 0,
        OPTION_NO_CONSISTENT = 1 << 1,
        OPTION_NAME = 1 << 2,
        OPTION_NO_PUBLISH = 1 << 3,
        OPTION_EXPIRES = 1 << 4,
        OPTION_TIMESTAMP_EXPIRY = 1 << 5,
        OPTION_SNAPSHOT_EXPIRY = 1 << 6,
        OPTION_JSON = 1 << 7,
} OptionFlag;

typedef struct Args {
        const char *repo;
        unsigned given;                            /* OptionFlags seen */
        TufKeyType key_type;
        const char *name;
        int64_t expires[_REPO_ROLE_MAX];           /* 0: not given */
        char **positional;                         /* after the verb */
        size_t n_positional;
} Args;

typedef struct Verb {
        const char *name;
        size_t n_args;
        unsigned options;
        int (*run)(const Args *args);
} Verb;

/* Usage errors exit with 2, other failures with 1. */
static bool usage_failed;

_printf_(1, 2) static int usage_error(const char *format, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        log_error("%s", buf);
        fprintf(stderr, "Try 'oob-repo --help'.\n");
        usage_failed = true;
        return -EINVAL;
}

static int64_t now(void) {
        return (int64_t) time(NULL);
}

static const char *format_time(int64_t t, char buf[static 21]) {
        if (format_iso8601_utc(t, buf) < 0)
                snprintf(buf, 21, "%" PRId64, t);
        return buf;
}

/* Publish, or with --no-publish only commit the working copies. */
static int finish(Repo *r, const Args *args) {
        int k;

        if (args->given & OPTION_NO_PUBLISH) {
                k = repo_save(r);
                if (k < 0)
                        return k;
                printf("Not published yet (--no-publish): run 'oob-repo --repo %s publish'.\n", r->dir);
                return 0;
        }
        k = repo_publish(r, now(), REPO_PUBLISH_STAGED | REPO_PUBLISH_REPORT);
        return k < 0 ? k : 0;
}

/* ---- init ------------------------------------------------------------------------ */

/* After a failed init nothing may be left that makes the next init refuse:
 * remove the keys it wrote, unless state was committed (then the
 * repository exists and only public/ is behind, which open() repairs). */
static void init_undo(const char *dir) {
        _cleanup_free_ char *state = path_join(dir, "state"), *keys = path_join(dir, "keys");

        if (!state || !keys || access(state, F_OK) >= 0)
                return;
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s.pem", keys, repo_role_to_string(i)) >= 0)
                        (void) unlink(path);
        }
        (void) rmdir(keys);
}

static int verb_init(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        int64_t durations[_REPO_ROLE_MAX];
        TufKeyType type = (args->given & OPTION_KEY_TYPE) ? args->key_type : TUF_KEY_ED25519;
        bool consistent = !(args->given & OPTION_NO_CONSISTENT);
        bool created = false;
        int k;

        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++)
                durations[i] = args->expires[i] ?: repo_default_durations[i];

        k = repo_create(args->repo, type, consistent, durations, &r);
        if (k >= 0) {
                created = true;
                k = repo_publish(r, now(), REPO_PUBLISH_STAGED);
        }
        if (k < 0) {
                if (created || k != -EEXIST)
                        init_undo(args->repo);
                return k;
        }
        printf("Created the repository in %s: %s keys in %s/keys/, %s.\n"
               "Serve %s/public/; devices start from %s/public/metadata/1.root.json.\n",
               args->repo, cli_key_type_to_string(type), args->repo,
               consistent ? "consistent snapshots" : "no consistent snapshots", args->repo, args->repo);
        return 0;
}

/* ---- add-payload, add-manifest, add-order, remove ---------------------------------- */

typedef struct MappedFile {
        void *data;
        size_t size;
        bool mapped;
} MappedFile;

static void mapped_file_done(MappedFile *m) {
        if (m->mapped)
                (void) munmap(m->data, m->size);
        *m = (MappedFile) {};
}

/* Payloads may be whole OS images: map them rather than read them. */
static int map_file(const char *path, MappedFile *ret) {
        static char empty[1];
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        void *p;

        if (fd < 0)
                return log_error_errno(-errno, "%s: cannot open: %m", path);
        if (fstat(fd, &st) < 0)
                return log_error_errno(-errno, "%s: cannot stat: %m", path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(-EINVAL, "%s: not a regular file", path);
        if (st.st_size == 0) {
                *ret = (MappedFile) { .data = empty };
                return 0;
        }
        p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
                return log_error_errno(-errno, "%s: cannot map: %m", path);
        *ret = (MappedFile) { .data = p, .size = (size_t) st.st_size, .mapped = true };
        return 0;
}

/* A name that becomes the last component of a target path. Names starting
 * with '.' are refused: public/ uses them for temporary files. */
static bool target_name_is_valid(const char *name) {
        return filename_is_safe(name) && name[0] != '.' && !strchr(name, '\\');
}

static void print_added(const char *target, RepoRole role, size_t size, int changed) {
        if (changed == 0)
                printf("%s is already in %s with these bytes.\n", target, repo_role_to_string(role));
        else
                printf("Added %s (%zu bytes) to %s.\n", target, size, repo_role_to_string(role));
}

static int verb_add_payload(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_(mapped_file_done) MappedFile m = {};
        _cleanup_free_ char *copy = strdup(args->positional[0]), *target = NULL;
        const char *name;
        RepoRole role = REPO_ROLE_RELEASES;
        int k;

        if (!copy)
                return log_oom();
        name = args->name ?: basename(copy);
        if (!target_name_is_valid(name))
                return usage_error("'%s' is not a valid payload name (one path component, not starting with '.')",
                                   name);
        if (asprintf(&target, "payloads/%s", name) < 0)
                return log_oom();

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        k = map_file(args->positional[0], &m);
        if (k < 0)
                return k;
        k = repo_add_target(r, target, m.data, m.size);
        if (k < 0)
                return k;
        (void) repo_role_for_target(r, target, &role);
        print_added(target, role, m.size, k);
        return finish(r, args);
}

static int read_yaml(const char *path, char **ret, size_t *ret_size) {
        int k = read_full_file(path, YAML_FILE_MAX, ret, ret_size);

        if (k == -EFBIG)
                return log_error_errno(k, "%s: larger than %u bytes", path, YAML_FILE_MAX);
        if (k < 0)
                return log_error_errno(k, "%s: cannot read: %m", path);
        return 0;
}

/* "FILE: line 4, column 3: unknown key 'acton'" from a parser's error. */
static int parse_failed(const char *path, const char *what, int error, const char *message) {
        if (message)
                return log_error_errno(error, "%s: %s", path, message);
        return log_error_errno(error, "%s: not a valid %s: %m", path, what);
}

/* What is already listed under target, parsed by the caller: 1 and its
 * bytes, or 0 when the target is new. */
static int read_listed(Repo *r, const char *target, char **ret, size_t *ret_size) {
        const TufTargetFile *f = repo_find_target(r, target, NULL);
        int k;

        if (!f)
                return 0;
        k = repo_read_target(r, f, ret, ret_size);
        return k < 0 ? k : 1;
}

static int check_payload_listed(Repo *r, const char *file, const char *payload) {
        RepoRole role;

        if (!payload)
                return 0;
        if (!repo_find_target(r, payload, &role) || role != REPO_ROLE_RELEASES)
                return log_error_errno(-ENOENT,
                                       "%s: payload '%s' is not in the repository: add it first with "
                                       "'oob-repo add-payload'",
                                       file, payload);
        return 0;
}

static int verb_add_manifest(const Args *args) {
        const char *file = args->positional[0];
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
        _cleanup_free_ char *data = NULL, *error = NULL, *target = NULL, *old = NULL;
        size_t size, old_size;
        int k;

        k = read_yaml(file, &data, &size);
        if (k < 0)
                return k;
        k = patch_manifest_parse(data, size, &m, &error);
        if (k < 0)
                return parse_failed(file, "patch manifest", k, error);
        if (asprintf(&target, "manifests/%s.yaml", m->id) < 0)
                return log_oom();
        if (!target_name_is_valid(m->id) || !tuf_target_path_is_valid(target))
                return log_error_errno(-EINVAL, "%s: id '%s' cannot name a file", file, m->id);

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        /* A manifest naming a payload that devices cannot download fails on
         * every device: refuse it here instead. */
        for (char **p = m->payloads; p && *p; p++) {
                k = check_payload_listed(r, file, *p);
                if (k < 0)
                        return k;
        }
        for (size_t i = 0; i < m->n_actions; i++) {
                k = check_payload_listed(r, file, m->actions[i].payload);
                if (k < 0)
                        return k;
        }

        k = read_listed(r, target, &old, &old_size);
        if (k < 0)
                return k;
        if (k > 0 && (old_size != size || memcmp(old, data, size) != 0)) {
                _cleanup_(patch_manifest_freep) PatchManifest *published = NULL;

                /* Devices never re-apply a version they installed. */
                if (patch_manifest_parse(old, old_size, &published, NULL) >= 0 &&
                    m->version <= published->version)
                        return log_error_errno(-ESTALE,
                                               "%s: manifest '%s' version %" PRIu64 " is not greater than "
                                               "the published version %" PRIu64
                                               " (devices that installed it would never apply this one)",
                                               file, m->id, m->version, published->version);
        }
        k = repo_add_target(r, target, data, size);
        if (k < 0)
                return k;
        print_added(target, REPO_ROLE_RELEASES, size, k);
        return finish(r, args);
}

static int verb_add_order(const Args *args) {
        const char *file = args->positional[0];
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_(order_freep) Order *o = NULL;
        _cleanup_free_ char *data = NULL, *error = NULL, *target = NULL, *old = NULL;
        char buf[21];
        size_t size, old_size;
        int k;

        k = read_yaml(file, &data, &size);
        if (k < 0)
                return k;
        k = order_parse(data, size, &o, &error);
        if (k < 0)
                return parse_failed(file, "order", k, error);
        if (asprintf(&target, "orders/%s.yaml", o->device) < 0)
                return log_oom();
        if (!target_name_is_valid(o->device) || !tuf_target_path_is_valid(target))
                return log_error_errno(-EINVAL, "%s: device '%s' cannot name a file", file, o->device);
        if (o->expires <= now())
                return log_error_errno(-EKEYEXPIRED, "%s: the order expired at %s", file,
                                       format_time(o->expires, buf));

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        k = read_listed(r, target, &old, &old_size);
        if (k < 0)
                return k;
        if (k > 0 && (old_size != size || memcmp(old, data, size) != 0)) {
                _cleanup_(order_freep) Order *published = NULL;
                _cleanup_free_ char *old_error = NULL;

                k = order_parse(old, old_size, &published, &old_error);
                if (k < 0)
                        return log_error_errno(k, "The published %s no longer parses (%s): remove it first",
                                               target, old_error ?: strerror(-k));
                /* Devices refuse a sequence they have seen: it would never run. */
                if (o->sequence <= published->sequence)
                        return log_error_errno(-ESTALE,
                                               "%s: sequence %" PRIu64 " for device '%s' is not greater than "
                                               "the published sequence %" PRIu64,
                                               file, o->sequence, o->device, published->sequence);
        }
        k = repo_add_target(r, target, data, size);
        if (k < 0)
                return k;
        print_added(target, REPO_ROLE_HELPDESK, size, k);
        return finish(r, args);
}

static bool manifest_needs(const PatchManifest *m, const char *payload) {
        for (char **p = m->payloads; p && *p; p++)
                if (streq(*p, payload))
                        return true;
        for (size_t i = 0; i < m->n_actions; i++)
                if (m->actions[i].payload && streq(m->actions[i].payload, payload))
                        return true;
        return false;
}

/* A payload that a listed manifest names would make that manifest fail on
 * every device: -EBUSY, naming the manifest. */
static int check_payload_unused(Repo *r, const char *payload) {
        const TufTargets *t = r->targets[REPO_ROLE_RELEASES];

        for (size_t i = 0; i < t->n_targets; i++) {
                _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
                _cleanup_free_ char *data = NULL;
                size_t size;
                int k;

                if (!strneq(t->targets[i].path, "manifests/", STRLEN("manifests/")))
                        continue;
                k = repo_read_target(r, &t->targets[i], &data, &size);
                if (k < 0)
                        return k;
                if (patch_manifest_parse(data, size, &m, NULL) < 0)
                        continue;  /* cannot name anything devices would apply */
                if (manifest_needs(m, payload))
                        return log_error_errno(-EBUSY, "%s: %s names it: remove or replace that manifest first",
                                               payload, t->targets[i].path);
        }
        return 0;
}

static int verb_remove(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        RepoRole role;
        int k;

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        k = check_payload_unused(r, args->positional[0]);
        if (k < 0)
                return k;
        k = repo_remove_target(r, args->positional[0], &role);
        if (k < 0)
                return k;
        printf("Removed %s from %s.\n", args->positional[0], repo_role_to_string(role));
        return finish(r, args);
}

/* ---- publish, refresh, rotate-key ------------------------------------------------ */

static int verb_publish(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        int k;

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++)
                if (args->expires[i]) {
                        r->roles[i].duration = args->expires[i];
                        r->roles[i].renew = true;
                }
        k = repo_publish(r, now(), REPO_PUBLISH_STAGED | REPO_PUBLISH_REPORT);
        return k < 0 ? k : 0;
}

static bool unpublished_changes(const Repo *r) {
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++)
                if (r->roles[i].dirty)
                        return true;
        return false;
}

/* From cron: a timestamp with a fresh expiry every time; the snapshot (and
 * any other role) when less than half of its validity is left. Changes
 * staged with --no-publish stay unpublished. */
static int verb_refresh(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        int k;

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        if (args->expires[REPO_ROLE_TIMESTAMP])
                r->roles[REPO_ROLE_TIMESTAMP].duration = args->expires[REPO_ROLE_TIMESTAMP];
        if (args->expires[REPO_ROLE_SNAPSHOT] &&
            args->expires[REPO_ROLE_SNAPSHOT] != r->roles[REPO_ROLE_SNAPSHOT].duration) {
                r->roles[REPO_ROLE_SNAPSHOT].duration = args->expires[REPO_ROLE_SNAPSHOT];
                r->roles[REPO_ROLE_SNAPSHOT].renew = true;
        }
        r->roles[REPO_ROLE_TIMESTAMP].renew = true;
        k = repo_publish(r, now(), REPO_PUBLISH_REPORT);
        if (k < 0)
                return k;
        if (unpublished_changes(r))
                printf("Changes added with --no-publish are still unpublished: run 'oob-repo --repo %s publish'.\n",
                       r->dir);
        return 0;
}

static int verb_rotate_key(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        _cleanup_free_ char *keyid = NULL;
        RepoRole role = repo_role_from_string(args->positional[0]);
        TufKeyType type;
        int k, n;

        if ((int) role < 0)
                return usage_error("unknown role '%s' (root, timestamp, snapshot, targets, releases, helpdesk)",
                                   args->positional[0]);
        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        type = (args->given & OPTION_KEY_TYPE) ? args->key_type : r->key_type;
        k = repo_rotate_begin(r, role, type);
        if (k < 0)
                return k;
        k = repo_publish(r, now(), REPO_PUBLISH_REPORT);
        if (k < 0)
                return k;
        n = repo_rotate_finish(r, role);
        if (n < 0)
                return n;
        k = repo_private_keyid(r->keys[role], &keyid);
        if (k < 0)
                return log_error_errno(k, "Failed to compute the new keyid: %m");
        printf("Rotated the %s key: new %s key %s in keys/%s.pem; the old one is kept as keys/%s.pem.old-%d.\n",
               repo_role_to_string(role), cli_key_type_to_string(type), keyid, repo_role_to_string(role),
               repo_role_to_string(role), n);
        return 0;
}

/* ---- status ------------------------------------------------------------------------ */

static const TufKey *role_key(Repo *r, RepoRole role, const char *keyid) {
        if (repo_role_is_delegated(role)) {
                const TufTargets *t = r->targets[REPO_ROLE_TARGETS];
                return tuf_key_find(t->delegation_keys, t->n_delegation_keys, keyid);
        }
        return tuf_key_find(r->root->keys, r->root->n_keys, keyid);
}

static size_t count_targets(const Repo *r) {
        size_t n = 0;

        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++)
                n += r->targets[i]->n_targets;
        return n;
}

static void json_string(const char *s) {
        putchar('"');
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                else if (*p < 0x20)
                        printf("\\u%04x", *p);
                else
                        putchar(*p);
        }
        putchar('"');
}

static void status_json(Repo *r, int64_t t) {
        char buf[21];

        printf("{\"repository\":");
        json_string(r->dir);
        printf(",\"consistent_snapshot\":%s,\"key_type\":\"%s\",\"targets\":%zu,\"roles\":{",
               r->consistent_snapshot ? "true" : "false", cli_key_type_to_string(r->key_type), count_targets(r));
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                const RoleState *s = &r->roles[i];
                const TufRoleKeys *rk = repo_role_keys(r, i);

                printf("%s\"%s\":{\"version\":%" PRIu64 ",\"expires\":\"%s\",\"expired\":%s,"
                       "\"unpublished_changes\":%s,\"threshold\":%u,\"keys\":[",
                       i == 0 ? "" : ",", repo_role_to_string(i), s->version, format_time(s->expires, buf),
                       s->expires <= t ? "true" : "false", s->dirty ? "true" : "false", rk ? rk->threshold : 0);
                for (char **id = rk ? rk->keyids : NULL; id && *id; id++) {
                        const TufKey *k = role_key(r, i, *id);

                        printf("%s{\"keyid\":\"%s\",\"scheme\":", id == rk->keyids ? "" : ",", *id);
                        json_string(k ? k->scheme : "unknown");
                        putchar('}');
                }
                putchar(']');
                if (repo_role_is_targets(i))
                        printf(",\"targets\":%zu", r->targets[i]->n_targets);
                putchar('}');
        }
        printf("}}\n");
}

static void status_text(Repo *r, int64_t t) {
        bool unpublished = false;
        char buf[21];

        printf("Repository:           %s\n", r->dir);
        printf("Consistent snapshots: %s\n", r->consistent_snapshot ? "yes" : "no");
        printf("Targets:              %zu (releases %zu, helpdesk %zu, targets %zu)\n\n", count_targets(r),
               r->targets[REPO_ROLE_RELEASES]->n_targets, r->targets[REPO_ROLE_HELPDESK]->n_targets,
               r->targets[REPO_ROLE_TARGETS]->n_targets);
        printf("%-10s %7s  %-20s %-8s  %s\n", "ROLE", "VERSION", "EXPIRES", "", "KEYS");
        for (RepoRole i = 0; i < _REPO_ROLE_MAX; i++) {
                const RoleState *s = &r->roles[i];
                const TufRoleKeys *rk = repo_role_keys(r, i);
                const char *note = s->expires <= t ? "EXPIRED" : s->dirty ? "changed" : "";

                unpublished = unpublished || s->dirty;
                printf("%-10s %7" PRIu64 "  %-20s %-8s ", repo_role_to_string(i), s->version,
                       format_time(s->expires, buf), note);
                for (char **id = rk ? rk->keyids : NULL; id && *id; id++) {
                        const TufKey *k = role_key(r, i, *id);
                        printf(" %s:%s", k ? k->scheme : "unknown", *id);
                }
                putchar('\n');
        }
        if (unpublished)
                printf("\nUnpublished changes: run 'oob-repo --repo %s publish'.\n", r->dir);
}

static int verb_status(const Args *args) {
        _cleanup_(repo_freep) Repo *r = NULL;
        int k;

        k = repo_open(args->repo, &r);
        if (k < 0)
                return k;
        if (args->given & OPTION_JSON)
                status_json(r, now());
        else
                status_text(r, now());
        return 0;
}

/* ---- command line ------------------------------------------------------------------ */

static int help(void) {
        printf("oob-repo [--repo DIR] COMMAND ...\n"
               "Publish an oob TUF repository: keys, metadata, patch manifests, payloads, orders.\n"
               "\n"
               "Commands:\n"
               "  init [--key-type ed25519|ecdsa|rsa] [--no-consistent-snapshot] [--expires ROLE=DURATION]\n"
               "                            create keys/, state and the first version of public/\n"
               "  add-payload FILE [--name NAME]  target payloads/NAME (role releases)\n"
               "  add-manifest FILE.yaml    validated; target manifests/ID.yaml (role releases)\n"
               "  add-order FILE.yaml       validated; target orders/DEVICE.yaml (role helpdesk)\n"
               "  remove TARGET_PATH        drop a target\n"
               "  publish [--expires ROLE=DURATION]\n"
               "                            sign new versions of what changed (or expires soon)\n"
               "  rotate-key ROLE [--key-type TYPE]\n"
               "                            new key for ROLE; the old one is kept in keys/\n"
               "  refresh [--timestamp-expiry DURATION] [--snapshot-expiry DURATION]\n"
               "                            new timestamp (run from cron)\n"
               "  status [--json]           versions, expiry and keys of each role\n"
               "\n"
               "Options:\n"
               "  --repo DIR                the repository (default: the current folder)\n"
               "  --no-publish              add-*/remove: change without publishing yet\n"
               "  -v, --verbose             debug messages\n"
               "  -h, --help, --version\n"
               "\n"
               "Durations: 45s, 30m, 12h, 7d, 2w. Defaults: root 365d, targets/releases/helpdesk 90d,\n"
               "snapshot 7d, timestamp 1d. Serve DIR/public/.\n");
        return 0;
}

static const Verb verbs[] = {
        { "init", 0, OPTION_KEY_TYPE | OPTION_NO_CONSISTENT | OPTION_EXPIRES, verb_init },
        { "add-payload", 1, OPTION_NAME | OPTION_NO_PUBLISH, verb_add_payload },
        { "add-manifest", 1, OPTION_NO_PUBLISH, verb_add_manifest },
        { "add-order", 1, OPTION_NO_PUBLISH, verb_add_order },
        { "remove", 1, OPTION_NO_PUBLISH, verb_remove },
        { "publish", 0, OPTION_EXPIRES, verb_publish },
        { "rotate-key", 1, OPTION_KEY_TYPE, verb_rotate_key },
        { "refresh", 0, OPTION_TIMESTAMP_EXPIRY | OPTION_SNAPSHOT_EXPIRY, verb_refresh },
        { "status", 0, OPTION_JSON, verb_status },
};

static const struct {
        OptionFlag flag;
        const char *name;
} option_names[] = {
        { OPTION_KEY_TYPE, "--key-type" },
        { OPTION_NO_CONSISTENT, "--no-consistent-snapshot" },
        { OPTION_NAME, "--name" },
        { OPTION_NO_PUBLISH, "--no-publish" },
        { OPTION_EXPIRES, "--expires" },
        { OPTION_TIMESTAMP_EXPIRY, "--timestamp-expiry" },
        { OPTION_SNAPSHOT_EXPIRY, "--snapshot-expiry" },
        { OPTION_JSON, "--json" },
};

static int parse_expires(const char *arg, Args *args) {
        _cleanup_free_ char *copy = strdup(arg);
        char *eq;
        RepoRole role;

        if (!copy)
                return log_oom();
        eq = strchr(copy, '=');
        if (!eq)
                return usage_error("--expires wants ROLE=DURATION, e.g. releases=30d: '%s'", arg);
        *eq = 0;
        role = repo_role_from_string(copy);
        if ((int) role < 0)
                return usage_error("--expires: unknown role '%s'", copy);
        if (parse_duration(eq + 1, &args->expires[role]) < 0)
                return usage_error("--expires: invalid duration '%s' (e.g. 45s, 30m, 12h, 7d, 2w)", eq + 1);
        return 0;
}

/* Options may come before or after the command; each command accepts its
 * own and --repo. Returns the verb, or NULL after --help/--version. */
static int parse_argv(int argc, char **argv, Args *args, const Verb **ret) {
        enum {
                ARG_REPO = 0x100,
                ARG_KEY_TYPE,
                ARG_NO_CONSISTENT,
                ARG_NAME,
                ARG_NO_PUBLISH,
                ARG_EXPIRES,
                ARG_TIMESTAMP_EXPIRY,
                ARG_SNAPSHOT_EXPIRY,
                ARG_JSON,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "repo", required_argument, NULL, ARG_REPO },
                { "key-type", required_argument, NULL, ARG_KEY_TYPE },
                { "no-consistent-snapshot", no_argument, NULL, ARG_NO_CONSISTENT },
                { "name", required_argument, NULL, ARG_NAME },
                { "no-publish", no_argument, NULL, ARG_NO_PUBLISH },
                { "expires", required_argument, NULL, ARG_EXPIRES },
                { "timestamp-expiry", required_argument, NULL, ARG_TIMESTAMP_EXPIRY },
                { "snapshot-expiry", required_argument, NULL, ARG_SNAPSHOT_EXPIRY },
                { "json", no_argument, NULL, ARG_JSON },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        const Verb *verb = NULL;
        int c, k;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hv", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        *ret = NULL;
                        return 0;
                case ARG_VERSION:
                        printf("oob-repo %s\n", OOB_VERSION);
                        *ret = NULL;
                        return 0;
                case 'v':
                        log_set_max_level(LOG_LEVEL_DEBUG);
                        break;
                case ARG_REPO:
                        args->repo = optarg;
                        break;
                case ARG_KEY_TYPE:
                        args->key_type = cli_key_type_from_string(optarg);
                        if ((int) args->key_type < 0)
                                return usage_error("--key-type: unknown key type '%s' (ed25519, ecdsa, rsa)",
                                                   optarg);
                        args->given |= OPTION_KEY_TYPE;
                        break;
                case ARG_NO_CONSISTENT:
                        args->given |= OPTION_NO_CONSISTENT;
                        break;
                case ARG_NAME:
                        args->name = optarg;
                        args->given |= OPTION_NAME;
                        break;
                case ARG_NO_PUBLISH:
                        args->given |= OPTION_NO_PUBLISH;
                        break;
                case ARG_EXPIRES:
                        k = parse_expires(optarg, args);
                        if (k < 0)
                                return k;
                        args->given |= OPTION_EXPIRES;
                        break;
                case ARG_TIMESTAMP_EXPIRY:
                case ARG_SNAPSHOT_EXPIRY: {
                        RepoRole role = c == ARG_TIMESTAMP_EXPIRY ? REPO_ROLE_TIMESTAMP : REPO_ROLE_SNAPSHOT;

                        if (parse_duration(optarg, &args->expires[role]) < 0)
                                return usage_error("invalid duration '%s' (e.g. 45s, 30m, 12h, 7d, 2w)", optarg);
                        args->given |= c == ARG_TIMESTAMP_EXPIRY ? OPTION_TIMESTAMP_EXPIRY
                                                                 : OPTION_SNAPSHOT_EXPIRY;
                        break;
                }
                case ARG_JSON:
                        args->given |= OPTION_JSON;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }

        if (optind >= argc)
                return usage_error("no command given");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name))
                        verb = &verbs[i];
        if (!verb) {
                if (streq(argv[optind], "help")) {
                        help();
                        *ret = NULL;
                        return 0;
                }
                return usage_error("unknown command '%s'", argv[optind]);
        }
        for (size_t i = 0; i < ELEMENTSOF(option_names); i++)
                if ((args->given & option_names[i].flag) && !(verb->options & option_names[i].flag))
                        return usage_error("%s does not take %s", verb->name, option_names[i].name);
        args->positional = argv + optind + 1;
        args->n_positional = (size_t) (argc - optind - 1);
        if (args->n_positional != verb->n_args)
                return usage_error("%s takes %s", verb->name,
                                   verb->n_args == 0 ? "no arguments" : "exactly one argument");
        *ret = verb;
        return 0;
}

int main(int argc, char **argv) {
        Args args = { .repo = "." };
        const Verb *verb = NULL;
        int k;

        log_set_program("oob-repo");
        /* Temp names of atomic writes come from random(): differ per run. */
        srandom((unsigned) time(NULL) ^ (unsigned) getpid());
        /* public/ must be readable by the web server whatever the caller's
         * umask; secrets get their modes explicitly (keys 0600, keys/ 0700). */
        umask(022);

        k = parse_argv(argc, argv, &args, &verb);
        if (k >= 0 && verb)
                k = verb->run(&args);
        if (k < 0)
                return usage_failed ? 2 : 1;
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TUF client workflow (specification, "Detailed client workflow"), on
 * top of manifests/' trusted set: this file fetches and persists bytes, the
 * trusted set decides whether they are trustworthy. Every step is one
 * function below, in the order the specification gives them:
 *
 *   5.1  fix the reference time                         tuf_client_refresh()
 *   5.2  load the trusted root                          client_load_trusted_root()
 *   5.3  update the root through N+1.root.json          client_update_root()
 *        fast-forward recovery                          client_forget_fast_forward()
 *        freeze check on the final root                 tuf_client_refresh()
 *   5.4  timestamp                                      client_update_timestamp()
 *   5.5  snapshot                                       client_update_snapshot()
 *   5.6  targets, delegations by pre-order DFS          client_load_targets(),
 *                                                       tuf_client_find_target()
 *   5.7  target download, verified while streaming      tuf_client_download_target()
 *
 * Errors are returned, never logged above debug; the step that failed is
 * kept in c->error for the caller's one message (tuf_client_error_context()).
 */

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "updater.h"

#define TUF_CLIENT_DEFAULT_MAX_ROOT_ROTATIONS 32U
#define TUF_CLIENT_DEFAULT_MAX_DELEGATIONS 32U
#define TUF_CLIENT_COPY_BUFFER 65536U

struct TufClient {
        char *metadata_dir;
        int metadata_dir_fd;
        char *metadata_url;
        char *target_base_url;
        unsigned max_root_rotations;
        unsigned max_delegations;
        int64_t reference_time; /* the option; 0: time(NULL) per refresh */

        Fetcher *fetcher;
        TufTrustedSet *trusted;
        bool refreshed; /* the last refresh succeeded */

        char error[512]; /* where the last failure happened */
};

/* Remember where we failed (for the caller's single message) and return r. */
_printf_(3, 4) static int client_fail(TufClient *c, int r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        vsnprintf(c->error, sizeof(c->error), format, ap);
        va_end(ap);
        log_debug_errno(r, "TUF client: %s: %m", c->error);
        return r;
}

const char *tuf_client_error_context(const TufClient *c) {
        if (!c || !c->error[0])
                return NULL;
        return c->error;
}

/* ---- setup --------------------------------------------------------------- */

int tuf_client_new(const TufClientOptions *o, TufClient **ret) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        int r;

        assert_return(o, -EINVAL);
        assert_return(o->metadata_dir, -EINVAL);
        assert_return(o->metadata_url, -EINVAL);
        assert_return(ret, -EINVAL);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->metadata_dir_fd = -EBADF;

        c->metadata_dir = strdup(o->metadata_dir);
        c->metadata_url = strdup(o->metadata_url);
        if (!c->metadata_dir || !c->metadata_url)
                return -ENOMEM;
        if (o->target_base_url) {
                c->target_base_url = strdup(o->target_base_url);
                if (!c->target_base_url)
                        return -ENOMEM;
        }
        c->max_root_rotations = o->max_root_rotations ?: TUF_CLIENT_DEFAULT_MAX_ROOT_ROTATIONS;
        c->max_delegations = o->max_delegations ?: TUF_CLIENT_DEFAULT_MAX_DELEGATIONS;
        c->reference_time = o->reference_time;

        c->metadata_dir_fd = open(c->metadata_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->metadata_dir_fd < 0)
                return -errno;

        r = fetcher_new(&o->fetch, &c->fetcher);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

TufClient *tuf_client_free(TufClient *c) {
        if (!c)
                return NULL;
        tuf_trusted_set_free(c->trusted);
        fetcher_free(c->fetcher);
        if (c->metadata_dir_fd >= 0)
                close(c->metadata_dir_fd);
        free(c->metadata_dir);
        free(c->metadata_url);
        free(c->target_base_url);
        free(c);
        return NULL;
}

const TufTrustedSet *tuf_client_trusted(const TufClient *c) {
        if (!c || !c->refreshed)
                return NULL;
        return c->trusted;
}

/* ---- metadata files: local cache and network ------------------------------- */

/* A file of our metadata directory. Names come from tuf_role_filename() and
 * so are always a single component. */
static int metadata_read_cached(TufClient *c, const char *name, size_t max_size, char **ret,
                                size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;

        fd = openat(c->metadata_dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_full_fd(fd, max_size, ret, ret_size);
}

static int metadata_persist(TufClient *c, const char *name, const void *data, size_t size) {
        int r;

        r = write_file_atomic_at(c->metadata_dir_fd, name, data, size, 0644);
        if (r < 0)
                return client_fail(c, r, "%s: saving to %s", name, c->metadata_dir);
        return 0;
}

static int metadata_remove(TufClient *c, const char *name) {
        if (unlinkat(c->metadata_dir_fd, name, 0) < 0 && errno != ENOENT)
                return client_fail(c, -errno, "%s: removing from %s", name, c->metadata_dir);
        return 0;
}

static int metadata_fetch(TufClient *c, const char *name, uint64_t max_size, char **ret, size_t *ret_size) {
        _cleanup_free_ char *url = path_join(c->metadata_url, name);
        int r;

        if (!url)
                return -ENOMEM;
        r = fetcher_get(c->fetcher, url, max_size, ret, ret_size);
        if (r < 0)
                return client_fail(c, r, "%s: download from %s", name, url);
        return 0;
}

/* ---- 5.2 and 5.3: the root ------------------------------------------------- */

static int client_load_trusted_root(TufClient *c, int64_t reference_time) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        r = metadata_read_cached(c, "root.json", TUF_ROOT_MAX_LENGTH, &data, &size);
        if (r < 0)
                return client_fail(c, r, "root.json: reading the trusted root from %s", c->metadata_dir);

        c->trusted = tuf_trusted_set_free(c->trusted);
        r = tuf_trusted_set_new(data, size, reference_time, &c->trusted);
        if (r < 0)
                return client_fail(c, r, "root.json: the trusted root in %s", c->metadata_dir);
        return 0;
}

/*
 * Fast-forward attack recovery (5.3.11): when the timestamp or snapshot keys
 * changed, the cached timestamp and snapshot may carry versions inflated by
 * the old, compromised keys; forget both so that the new ones are accepted.
 * Done after each new root and before it is persisted, so that a crash in
 * between can never leave the new root with the old caches.
 */
static int client_forget_fast_forward(TufClient *c) {
        int r;

        if (!tuf_trusted_set_rotated(c->trusted, TUF_ROLE_TIMESTAMP) &&
            !tuf_trusted_set_rotated(c->trusted, TUF_ROLE_SNAPSHOT))
                return 0;

        log_debug("TUF client: timestamp or snapshot keys rotated, dropping cached timestamp and snapshot");
        r = metadata_remove(c, "timestamp.json");
        if (r < 0)
                return r;
        r = metadata_remove(c, "snapshot.json");
        if (r < 0)
                return r;
        if (fsync(c->metadata_dir_fd) < 0)
                return client_fail(c, -errno, "%s: syncing", c->metadata_dir);
        return 0;
}

/* 5.3.2-5.3.9: walk N+1.root.json, N+2... until the repository has no newer
 * one (404/403) or max_root_rotations were taken this refresh. */
static int client_update_root(TufClient *c) {
        int r;

        for (unsigned i = 0; i < c->max_root_rotations; i++) {
                _cleanup_free_ char *name = NULL, *data = NULL;
                uint64_t version = tuf_trusted_set_root(c->trusted)->version;
                size_t size;

                if (version == UINT64_MAX)
                        break;
                name = tuf_role_filename("root", version + 1);
                if (!name)
                        return -ENOMEM;

                r = metadata_fetch(c, name, TUF_ROOT_MAX_LENGTH, &data, &size);
                if (r == -ENOENT) {
                        c->error[0] = 0; /* not an error: the trusted root is the newest */
                        break;
                }
                if (r < 0)
                        return r;

                r = tuf_trusted_set_update_root(c->trusted, data, size);
                if (r < 0)
                        return client_fail(c, r, "%s", name);

                r = client_forget_fast_forward(c);
                if (r < 0)
                        return r;
                r = metadata_persist(c, "root.json", data, size);
                if (r < 0)
                        return r;
                log_debug("TUF client: root updated to version %" PRIu64, version + 1);
        }
        return 0;
}

/* ---- 5.4 timestamp --------------------------------------------------------- */

static int client_update_timestamp(TufClient *c) {
        _cleanup_free_ char *cached = NULL, *data = NULL;
        const TufTimestamp *ts;
        size_t size;
        int r;

        /* The cached copy only serves as the reference for rollback checks. */
        r = metadata_read_cached(c, "timestamp.json", TUF_TIMESTAMP_MAX_LENGTH, &cached, &size);
        if (r >= 0)
                r = tuf_trusted_set_update_timestamp(c->trusted, cached, size);
        if (r < 0)
                log_debug_errno(r, "TUF client: no usable cached timestamp.json: %m");

        r = metadata_fetch(c, "timestamp.json", TUF_TIMESTAMP_MAX_LENGTH, &data, &size);
        if (r < 0)
                return r;

        r = tuf_trusted_set_update_timestamp(c->trusted, data, size);
        if (r == -EEXIST) {
                /* Same version as the cached one: keep that, but it must
                 * still be fresh (the trusted set only checked the new one). */
                ts = tuf_trusted_set_timestamp(c->trusted);
                if (ts->expires <= tuf_trusted_set_reference_time(c->trusted))
                        return client_fail(c, -EKEYEXPIRED, "timestamp.json");
                return 0;
        }
        if (r < 0)
                return client_fail(c, r, "timestamp.json");

        return metadata_persist(c, "timestamp.json", data, size);
}

/* ---- 5.5 snapshot ---------------------------------------------------------- */

static int client_update_snapshot(TufClient *c) {
        _cleanup_free_ char *cached = NULL, *data = NULL, *name = NULL;
        const TufRoot *root = tuf_trusted_set_root(c->trusted);
        const TufMetaFile *m = &tuf_trusted_set_timestamp(c->trusted)->snapshot;
        size_t size;
        int r;

        /* A cached snapshot that is the version timestamp names is current. */
        r = metadata_read_cached(c, "snapshot.json", TUF_SNAPSHOT_MAX_LENGTH, &cached, &size);
        if (r >= 0) {
                r = tuf_trusted_set_update_snapshot(c->trusted, cached, size, /* from_cache= */ true);
                if (r >= 0) {
                        log_debug("TUF client: cached snapshot.json is current");
                        return 0;
                }
        }
        log_debug_errno(r, "TUF client: no usable cached snapshot.json: %m");

        name = tuf_role_filename("snapshot", root->consistent_snapshot ? m->version : 0);
        if (!name)
                return -ENOMEM;
        r = metadata_fetch(c, name, m->length ?: TUF_SNAPSHOT_MAX_LENGTH, &data, &size);
        if (r < 0)
                return r;

        r = tuf_trusted_set_update_snapshot(c->trusted, data, size, /* from_cache= */ false);
        if (r < 0)
                return client_fail(c, r, "%s", name);

        return metadata_persist(c, "snapshot.json", data, size);
}

/* ---- 5.6 targets and delegated roles ---------------------------------------- */

static bool role_is_top_level(const char *role) {
        return tuf_role_type_from_string(role) >= 0;
}

/* Load a targets role (top-level "targets" with delegator "root", or a
 * delegated one), from the cache when it is still the version snapshot
 * names, from the network otherwise. Once per refresh. */
static int client_load_targets(TufClient *c, const char *role, const char *delegator) {
        _cleanup_free_ char *cached = NULL, *data = NULL, *local = NULL, *remote = NULL, *meta_name = NULL;
        const TufRoot *root = tuf_trusted_set_root(c->trusted);
        const TufMetaFile *m;
        size_t size;
        int r;

        if (tuf_trusted_set_targets(c->trusted, role))
                return 0;

        /* A delegated role called "root" or "timestamp" would be persisted
         * over the top-level file of that name. */
        if (!streq(delegator, "root") && role_is_top_level(role))
                return client_fail(c, -EPROTO, "%s: delegated role with a top-level role name", role);

        local = tuf_role_filename(role, 0);
        if (!local)
                return -ENOMEM;

        r = metadata_read_cached(c, local, TUF_TARGETS_MAX_LENGTH, &cached, &size);
        if (r >= 0) {
                r = tuf_trusted_set_update_targets(c->trusted, role, delegator, cached, size);
                if (r >= 0) {
                        log_debug("TUF client: cached %s is current", local);
                        return 0;
                }
        }
        log_debug_errno(r, "TUF client: no usable cached %s: %m", local);

        if (asprintf(&meta_name, "%s.json", role) < 0)
                return -ENOMEM;
        m = tuf_snapshot_find(tuf_trusted_set_snapshot(c->trusted), meta_name);
        if (!m)
                return client_fail(c, -ENOENT, "%s: not listed in snapshot.json", local);

        remote = tuf_role_filename(role, root->consistent_snapshot ? m->version : 0);
        if (!remote)
                return -ENOMEM;
        r = metadata_fetch(c, remote, m->length ?: TUF_TARGETS_MAX_LENGTH, &data, &size);
        if (r < 0)
                return r;

        r = tuf_trusted_set_update_targets(c->trusted, role, delegator, data, size);
        if (r < 0)
                return client_fail(c, r, "%s", remote);

        return metadata_persist(c, local, data, size);
}

int tuf_client_refresh(TufClient *c) {
        int64_t reference_time;
        int r;

        assert_return(c, -EINVAL);

        c->refreshed = false;
        c->error[0] = 0;

        /* 5.1: one reference time for every expiry check of this refresh. */
        reference_time = c->reference_time ?: (int64_t) time(NULL);

        r = client_load_trusted_root(c, reference_time);
        if (r < 0)
                return r;
        r = client_update_root(c);
        if (r < 0)
                return r;
        /* 5.3.10: the freeze check happens only on the final root. */
        r = tuf_trusted_set_check_root(c->trusted);
        if (r < 0)
                return client_fail(c, r, "root.json (version %" PRIu64 ")",
                                   tuf_trusted_set_root(c->trusted)->version);
        r = client_update_timestamp(c);
        if (r < 0)
                return r;
        r = client_update_snapshot(c);
        if (r < 0)
                return r;
        r = client_load_targets(c, "targets", "root");
        if (r < 0)
                return r;

        c->refreshed = true;
        return 0;
}

/* ---- target search --------------------------------------------------------- */

typedef struct RoleToVisit {
        char *role;
        char *delegator;
} RoleToVisit;

typedef struct VisitStack {
        RoleToVisit *items;
        size_t n;
} VisitStack;

static void visit_stack_clear(VisitStack *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->items[i].role);
                free(s->items[i].delegator);
        }
        s->n = 0;
}

static void visit_stack_done(VisitStack *s) {
        visit_stack_clear(s);
        free(s->items);
        s->items = NULL;
}

static int visit_stack_push(VisitStack *s, const char *role, const char *delegator) {
        RoleToVisit *grown, v = {};

        grown = reallocarray(s->items, s->n + 1, sizeof(RoleToVisit));
        if (!grown)
                return -ENOMEM;
        s->items = grown;
        v.role = strdup(role);
        v.delegator = strdup(delegator);
        if (!v.role || !v.delegator) {
                free(v.role);
                free(v.delegator);
                return -ENOMEM;
        }
        s->items[s->n++] = v;
        return 0;
}

static bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

/*
 * Push the delegations of t that cover path so that the first listed is
 * popped first. A matching terminating delegation ends the search of
 * everything not below it: the stack is cleared and later siblings are not
 * pushed.
 */
static int push_delegations(VisitStack *stack, const TufTargets *t, const char *role, const char *path) {
        _cleanup_free_ size_t *matching = NULL;
        size_t n = 0;
        int r;

        if (!t->has_delegations || t->n_roles == 0)
                return 0;
        matching = calloc(t->n_roles, sizeof(size_t));
        if (!matching)
                return -ENOMEM;

        for (size_t i = 0; i < t->n_roles; i++) {
                if (!tuf_delegated_role_matches(&t->roles[i], path))
                        continue;
                matching[n++] = i;
                if (t->roles[i].terminating) {
                        visit_stack_clear(stack);
                        break;
                }
        }
        while (n > 0) {
                r = visit_stack_push(stack, t->roles[matching[--n]].name, role);
                if (r < 0)
                        return r;
        }
        return 0;
}

int tuf_client_find_target(TufClient *c, const char *path, const TufTargetFile **ret) {
        _cleanup_(visit_stack_done) VisitStack stack = {};
        _cleanup_strv_free_ char **visited = NULL;
        unsigned n_visited = 0;
        int r;

        assert_return(c, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(c->refreshed, -EBUSY);

        c->error[0] = 0;
        if (!tuf_target_path_is_valid(path))
                return client_fail(c, -EINVAL, "not a valid target path");

        r = visit_stack_push(&stack, "targets", "root");
        if (r < 0)
                return r;

        /* 5.6.7: pre-order depth-first search, at most max_delegations roles. */
        while (stack.n > 0 && n_visited < c->max_delegations) {
                _cleanup_free_ char *role = stack.items[stack.n - 1].role;
                _cleanup_free_ char *delegator = stack.items[stack.n - 1].delegator;
                const TufTargetFile *found;
                const TufTargets *t;

                stack.n--;
                if (strv_contains(visited, role))
                        continue; /* a cycle in the delegation graph */

                r = client_load_targets(c, role, delegator);
                if (r < 0)
                        return r;
                t = tuf_trusted_set_targets(c->trusted, role);
                assert(t);

                found = tuf_targets_find(t, path);
                if (found) {
                        log_debug("TUF client: %s found in role %s", path, role);
                        *ret = found;
                        return 0;
                }

                r = strv_extend(&visited, role);
                if (r < 0)
                        return r;
                n_visited++;

                r = push_delegations(&stack, t, role, path);
                if (r < 0)
                        return r;
        }

        if (stack.n > 0)
                log_debug("TUF client: %zu roles left unvisited after %u delegations", stack.n, n_visited);
        return client_fail(c, -ENOENT, "no trusted role lists it");
}

/* ---- 5.7 targets ------------------------------------------------------------- */

static bool char_is_unreserved(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

/* Percent-encode everything but unreserved characters (and '/' if keep_slash). */
static char *percent_encode(const char *s, bool keep_slash) {
        static const char digits[] = "0123456789ABCDEF";
        char *out, *p;

        out = malloc(strlen(s) * 3 + 1);
        if (!out)
                return NULL;
        p = out;
        for (const char *i = s; *i; i++) {
                if (char_is_unreserved(*i) || (keep_slash && *i == '/')) {
                        *p++ = *i;
                        continue;
                }
                *p++ = '%';
                *p++ = digits[(uint8_t) *i >> 4];
                *p++ = digits[(uint8_t) *i & 15];
        }
        *p = 0;
        return out;
}

char *tuf_client_target_filename(const char *target_path) {
        if (!target_path)
                return NULL;
        return percent_encode(target_path, /* keep_slash= */ false);
}

/* The target's URL: TARGET_BASE_URL/PATH, or with consistent snapshots
 * TARGET_BASE_URL/DIR/HASH.BASENAME, the hash being the first listed. */
static int target_url(TufClient *c, const TufTargetFile *t, char **ret) {
        _cleanup_free_ char *hex = NULL, *remote = NULL, *encoded = NULL;
        const char *slash;
        char *url;

        if (tuf_trusted_set_root(c->trusted)->consistent_snapshot) {
                hex = tuf_hashes_first_hex(&t->hashes);
                if (!hex)
                        return -ENOMEM;
                slash = strrchr(t->path, '/');
                if (slash) {
                        if (asprintf(&remote, "%.*s/%s.%s", (int) (slash - t->path), t->path, hex,
                                     slash + 1) < 0)
                                return -ENOMEM;
                } else if (asprintf(&remote, "%s.%s", hex, t->path) < 0)
                        return -ENOMEM;
        } else {
                remote = strdup(t->path);
                if (!remote)
                        return -ENOMEM;
        }

        encoded = percent_encode(remote, /* keep_slash= */ true);
        if (!encoded)
                return -ENOMEM;
        url = path_join(c->target_base_url, encoded);
        if (!url)
                return -ENOMEM;
        *ret = url;
        return 0;
}

/* 0 if dir_fd/name is a regular file with t's length and hashes, -EBADMSG
 * (or another error) if not. */
static int target_file_verify_at(int dir_fd, const char *name, const TufTargetFile *t) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size != t->length)
                return -EBADMSG;

        r = tuf_hasher_new(&t->hashes, &h);
        if (r < 0)
                return r;
        buf = malloc(TUF_CLIENT_COPY_BUFFER);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf, TUF_CLIENT_COPY_BUFFER);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                r = tuf_hasher_update(h, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
        return tuf_hasher_verify(h, t->length, &t->hashes);
}

/* An unnamed file in dir_fd (O_TMPFILE: nothing is left behind on a crash or
 * a failed verification), or ".#NAME.XXXXXXXX" where that is unsupported. */
static int target_tmpfile_open(int dir_fd, const char *name, char **ret_tmpname) {
        _cleanup_free_ char *tmp = NULL;
        int fd;

        fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (fd >= 0) {
                *ret_tmpname = NULL;
                return fd;
        }
        /* Filesystems without O_TMPFILE say so in one of these ways. */
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                return -errno;

        if (asprintf(&tmp, ".#%.200s.%08x", name, (unsigned) random()) < 0)
                return -ENOMEM;
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        *ret_tmpname = TAKE_PTR(tmp);
        return fd;
}

/* Give the verified temporary file its final name, replacing what was there. */
static int target_tmpfile_commit(int fd, int dir_fd, const char *tmpname, const char *name) {
        _cleanup_free_ char *linked = NULL;
        char proc[STRLEN("/proc/self/fd/") + 12];

        if (fsync(fd) < 0)
                return -errno;
        if (!tmpname) {
                /* linkat() cannot replace, so link under a temp name, then rename. */
                if (asprintf(&linked, ".#%.200s.%08x", name, (unsigned) random()) < 0)
                        return -ENOMEM;
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                if (linkat(AT_FDCWD, proc, dir_fd, linked, AT_SYMLINK_FOLLOW) < 0)
                        return -errno;
                tmpname = linked;
        }
        if (renameat(dir_fd, tmpname, dir_fd, name) < 0) {
                int r = -errno;
                (void) unlinkat(dir_fd, tmpname, 0);
                return r;
        }
        if (fsync(dir_fd) < 0)
                return -errno;
        return 0;
}

/* TLS hands us the body one 16 KiB record at a time; collecting it into
 * 1 MiB writes saves most of the write() calls of a large target. */
#define TARGET_SINK_BUFFER (1024U * 1024U)

typedef struct TargetSink {
        TufHasher *hasher;
        int fd;
        uint8_t *buf;
        size_t used;
} TargetSink;

static int target_sink_flush(TargetSink *s) {
        int r = loop_write(s->fd, s->buf, s->used);

        s->used = 0;
        return r;
}

static int target_sink(const void *data, size_t size, void *userdata) {
        TargetSink *s = userdata;
        int r;

        r = tuf_hasher_update(s->hasher, data, size);
        if (r < 0)
                return r;
        if (s->used + size > TARGET_SINK_BUFFER) {
                r = target_sink_flush(s);
                if (r < 0)
                        return r;
        }
        if (size >= TARGET_SINK_BUFFER)
                return loop_write(s->fd, data, size);
        memcpy(s->buf + s->used, data, size);
        s->used += size;
        return 0;
}

static int client_download_target_at(TufClient *c, const TufTargetFile *t, int dir_fd, const char *name) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        _cleanup_free_ char *url = NULL, *tmpname = NULL;
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        TargetSink sink;
        int r;

        r = target_url(c, t, &url);
        if (r < 0)
                return r;
        r = tuf_hasher_new(&t->hashes, &h);
        if (r < 0)
                return r;
        fd = target_tmpfile_open(dir_fd, name, &tmpname);
        if (fd < 0)
                return client_fail(c, fd, "creating a temporary file");

        buf = malloc(TARGET_SINK_BUFFER);
        if (!buf)
                return -ENOMEM;
        sink = (TargetSink){.hasher = h, .fd = fd, .buf = buf};
        /* The signed length caps the transfer: the endless-data defence. */
        r = fetcher_get_stream(c->fetcher, url, t->length, target_sink, &sink, NULL);
        if (r >= 0)
                r = target_sink_flush(&sink);
        if (r < 0)
                r = client_fail(c, r, "download from %s", url);
        else {
                r = tuf_hasher_verify(h, t->length, &t->hashes);
                if (r < 0)
                        r = client_fail(c, r, "verifying the download from %s", url);
        }
        if (r >= 0) {
                r = target_tmpfile_commit(fd, dir_fd, tmpname, name);
                if (r < 0)
                        r = client_fail(c, r, "saving as %s", name);
                else {
                        free(tmpname); /* renamed: nothing to remove */
                        tmpname = NULL;
                }
        }
        if (r < 0 && tmpname)
                (void) unlinkat(dir_fd, tmpname, 0);
        return r;
}

int tuf_client_download_target(TufClient *c, const TufTargetFile *t, const char *target_dir, char **ret_path,
                               bool *ret_cached) {
        _cleanup_free_ char *name = NULL, *path = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        bool cached = false;
        int r;

        assert_return(c, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(target_dir, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        c->error[0] = 0;
        if (!tuf_target_path_is_valid(t->path))
                return client_fail(c, -EINVAL, "not a valid target path");
        name = tuf_client_target_filename(t->path);
        if (!name)
                return -ENOMEM;
        if (!filename_is_safe(name))
                return client_fail(c, -ENAMETOOLONG, "local file name too long");
        path = path_join(target_dir, name);
        if (!path)
                return -ENOMEM;

        dir_fd = open(target_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return client_fail(c, -errno, "opening the target directory %s", target_dir);

        r = target_file_verify_at(dir_fd, name, t);
        if (r >= 0) {
                log_debug("TUF client: %s is already there and verified", path);
                cached = true;
        } else {
                if (r != -ENOENT)
                        log_debug_errno(r, "TUF client: replacing %s, it does not match: %m", path);
                r = client_download_target_at(c, t, dir_fd, name);
                if (r < 0)
                        return r;
        }

        if (ret_cached)
                *ret_cached = cached;
        if (ret_path)
                *ret_path = TAKE_PTR(path);
        return 0;
}

int tuf_client_fetch_target(TufClient *c, const TufTargetFile *t, char **ret, size_t *ret_size) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        _cleanup_free_ char *url = NULL, *data = NULL;
        size_t size;
        int r;

        assert_return(c, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        c->error[0] = 0;
        if (!tuf_target_path_is_valid(t->path))
                return client_fail(c, -EINVAL, "not a valid target path");

        r = target_url(c, t, &url);
        if (r < 0)
                return r;
        r = fetcher_get(c->fetcher, url, t->length, &data, &size);
        if (r < 0)
                return client_fail(c, r, "download from %s", url);

        r = tuf_hasher_new(&t->hashes, &h);
        if (r < 0)
                return r;
        r = tuf_hasher_update(h, data, size);
        if (r >= 0)
                r = tuf_hasher_verify(h, t->length, &t->hashes);
        if (r < 0)
                return client_fail(c, r, "verifying the download from %s", url);

        if (ret_size)
                *ret_size = size;
        *ret = TAKE_PTR(data);
        return 0;
}

/* ---- installing the first root ---------------------------------------------- */

int tuf_client_init_root(const char *metadata_dir, const char *root_path) {
        _cleanup_(tuf_trusted_set_freep) TufTrustedSet *s = NULL;
        _cleanup_free_ char *data = NULL, *dest = NULL;
        size_t size;
        int r;

        assert_return(metadata_dir, -EINVAL);
        assert_return(root_path, -EINVAL);

        r = read_full_file(root_path, TUF_ROOT_MAX_LENGTH, &data, &size);
        if (r < 0)
                return log_debug_errno(r, "TUF client: reading %s: %m", root_path);

        /* Self-signed by its own threshold, or it is not installed. Expiry is
         * not checked: the rotation chain may lead to a fresh one. */
        r = tuf_trusted_set_new(data, size, (int64_t) time(NULL), &s);
        if (r < 0)
                return log_debug_errno(r, "TUF client: %s is not a valid root: %m", root_path);

        r = mkdir_p(metadata_dir, 0755);
        if (r < 0)
                return log_debug_errno(r, "TUF client: creating %s: %m", metadata_dir);
        dest = path_join(metadata_dir, "root.json");
        if (!dest)
                return -ENOMEM;
        r = write_file_atomic(dest, data, size, 0644);
        if (r < 0)
                return log_debug_errno(r, "TUF client: writing %s: %m", dest);
        return 0;
}

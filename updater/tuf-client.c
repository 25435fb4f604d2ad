/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TUF client workflow (specification, "Detailed client workflow"), on
 * top of manifests/' trusted set: this file fetches and persists bytes, the
 * trusted set decides whether they are trustworthy. The steps, in the order
 * the specification gives them:
 *
 *   5.1  fix the reference time                         tuf_client_refresh_async()
 *   5.2  load the trusted root                          client_load_trusted_root()
 *   5.3  update the root through N+1.root.json          refresh_root_begin(), root_accept()
 *        fast-forward recovery                          client_forget_fast_forward()
 *        freeze check on the final root                 refresh_advance()
 *   5.4  timestamp                                      timestamp_begin(), timestamp_accept()
 *   5.5  snapshot                                       snapshot_prepare(), snapshot_accept()
 *   5.6  targets, delegations by pre-order DFS          targets_prepare(), targets_accept(),
 *                                                       tuf_client_find_target_async()
 *   5.7  target download, verified while streaming      tuf_client_download_target_async(),
 *                                                       tuf_client_fetch_target_async()
 *
 * The daemon is single-threaded on sd-event, so every operation that may
 * need the network (refresh, target search, download, fetch into memory) is
 * a step machine on its loop: each step that needs the network starts a
 * FetchJob and the machine continues in the job's done callback. The
 * synchronous calls run the same machines on a private loop of the client
 * until they are over, so there is one implementation of each. Local files
 * are read and written directly (small metadata, or a payload written as it
 * arrives); hashing a whole payload file yields to the loop every few MiB.
 *
 * The target search loads delegated roles lazily, as the specification
 * allows: a role is fetched only when the search reaches it, and each fetch
 * is one step of the search on the loop. Roles already trusted (from this
 * refresh or from the cache) cost no step, so a search among loaded roles
 * finishes in one loop iteration.
 *
 * Errors are returned, never logged above debug; the step that failed is
 * kept in c->error for the caller's one message (tuf_client_error_context()).
 */

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "updater.h"

#define TUF_CLIENT_DEFAULT_MAX_ROOT_ROTATIONS 32U
#define TUF_CLIENT_DEFAULT_MAX_DELEGATIONS 32U
/* TLS hands us the body one 16 KiB record at a time; collecting it into
 * 1 MiB writes saves most of the write() calls of a large target. The same
 * buffer reads local files for hashing. */
#define TARGET_BUFFER (1024U * 1024U)
/* Hashing a local file yields to the loop after this many buffers (some
 * tens of ms of SHA-256), so a large payload does not stall the daemon. */
#define HASH_BUFFERS_PER_ITERATION 8U
#define PARTIAL_SUFFIX ".partial"
/* Initial buffer for a metadata file; doubled as needed, up to its cap. */
#define META_BUFFER_INITIAL 16384U

typedef enum ClientOp {
        CLIENT_OP_NONE,
        CLIENT_OP_REFRESH,
        CLIENT_OP_DOWNLOAD,
        CLIENT_OP_FIND,
        CLIENT_OP_FETCH,
        _CLIENT_OP_MAX,
        _CLIENT_OP_INVALID = -EINVAL,
} ClientOp;

/* clang-format off: one entry a line */
static const char *const client_op_table[_CLIENT_OP_MAX] = {
        [CLIENT_OP_NONE] = "none",
        [CLIENT_OP_REFRESH] = "refresh",
        [CLIENT_OP_DOWNLOAD] = "download",
        [CLIENT_OP_FIND] = "find",
        [CLIENT_OP_FETCH] = "fetch",
};
/* clang-format on */
static const char *client_op_to_string(ClientOp op);
static _unused_ ClientOp client_op_from_string(const char *s);
DEFINE_STRING_TABLE_LOOKUP(client_op, ClientOp);

/* Where a refresh is; each step may start one transfer. */
typedef enum RefreshStep {
        REFRESH_ROOT,      /* N+1.root.json until there is none (or the cap) */
        REFRESH_TIMESTAMP, /* timestamp.json, always fetched */
        REFRESH_SNAPSHOT,  /* unless the cached one is current */
        REFRESH_TARGETS,   /* top-level targets, unless the cached one is current */
        REFRESH_DONE,
        _REFRESH_STEP_MAX,
        _REFRESH_STEP_INVALID = -EINVAL,
} RefreshStep;

/* clang-format off: one entry a line */
static const char *const refresh_step_table[_REFRESH_STEP_MAX] = {
        [REFRESH_ROOT] = "root",       [REFRESH_TIMESTAMP] = "timestamp", [REFRESH_SNAPSHOT] = "snapshot",
        [REFRESH_TARGETS] = "targets", [REFRESH_DONE] = "done",
};
/* clang-format on */
static const char *refresh_step_to_string(RefreshStep s);
static _unused_ RefreshStep refresh_step_from_string(const char *s);
DEFINE_STRING_TABLE_LOOKUP(refresh_step, RefreshStep);

/* Where a target download is. */
typedef enum DownloadStep {
        DOWNLOAD_CHECK_FINAL,    /* hashing a file already under the final name */
        DOWNLOAD_REHASH_PARTIAL, /* hashing NAME.partial left by an interruption */
        DOWNLOAD_TRANSFER,       /* the rest from the server, appended and hashed */
        _DOWNLOAD_STEP_MAX,
        _DOWNLOAD_STEP_INVALID = -EINVAL,
} DownloadStep;

/* clang-format off: one entry a line */
static const char *const download_step_table[_DOWNLOAD_STEP_MAX] = {
        [DOWNLOAD_CHECK_FINAL] = "check-final",
        [DOWNLOAD_REHASH_PARTIAL] = "rehash-partial",
        [DOWNLOAD_TRANSFER] = "transfer",
};
/* clang-format on */
static const char *download_step_to_string(DownloadStep s);
static _unused_ DownloadStep download_step_from_string(const char *s);
DEFINE_STRING_TABLE_LOOKUP(download_step, DownloadStep);

typedef struct MemBuffer {
        char *data;
        size_t size, allocated;
} MemBuffer;

typedef struct Download {
        DownloadStep step;
        char *path; /* the target's path and signed length and hashes (copies) */
        uint64_t length;
        TufHashes hashes;
        char *url;
        char *target_dir;
        char *name;    /* NAME in target_dir */
        char *partial; /* NAME.partial */
        int dir_fd;
        int fd; /* the file being hashed or written */
        TufHasher *hasher;
        uint64_t hash_limit; /* read at most this much while hashing */
        uint64_t size;       /* bytes hashed (and in the partial file, but for buf) */
        bool restarted;      /* the server ignored Range once */
        bool have_partial;   /* fd is NAME.partial, open and locked */
        uint8_t *buf;        /* read buffer while hashing, write buffer after */
        size_t used;
        sd_event_source *hash_source;
        TufProgress progress;
        sd_event_source *progress_source;
} Download;

/* A role still to visit in a target search, and who delegated it. */
typedef struct RoleToVisit {
        char *role;
        char *delegator;
} RoleToVisit;

typedef struct VisitStack {
        RoleToVisit *items;
        size_t n;
} VisitStack;

/* A target search (5.6.7) in progress. */
typedef struct Search {
        char *path;
        VisitStack stack;
        char **visited;
        unsigned n_visited;
        char *role, *delegator; /* the role whose metadata is on its way */
        const TufTargetFile *found;
} Search;

/* A target on its way into memory (in c->meta), hashed as it arrives. */
typedef struct MemFetch {
        char *url;
        uint64_t length;
        TufHashes hashes;
        TufHasher *hasher;
} MemFetch;

struct TufClient {
        char *metadata_dir;
        int metadata_dir_fd;
        char *metadata_url;
        char *target_base_url;
        unsigned max_root_rotations;
        unsigned max_delegations;
        int64_t reference_time; /* the option; 0: time(NULL) per refresh */

        /* Transfers on the caller's loop (attached at the first asynchronous
         * call), and on our private loop for the synchronous calls. */
        Fetcher *fetcher;
        Fetcher *sync_fetcher;
        sd_event *sync_event;
        bool sync_busy; /* the private loop is running */

        TufTrustedSet *trusted;
        bool refreshed; /* the last refresh succeeded */

        /* The asynchronous operation in progress: one at a time. */
        ClientOp op;
        sd_event *op_event;
        TufClientDone op_done; /* refresh and download */
        TufFindDone op_find_done;
        TufFetchDone op_fetch_done;
        void *op_userdata;
        int op_result;
        sd_event_source *op_finish; /* hands op_result to op_done from the loop */
        FetchJob *job;

        /* A metadata file on its way (refresh, search), or a target (fetch). */
        char *meta_name;
        char *meta_url;
        MemBuffer meta;
        RefreshStep refresh_step;
        unsigned rotations; /* root versions taken in this refresh */
        bool roots_done;    /* the repository has no newer root */

        Download download;
        bool download_cached; /* the last download found a verified file */

        Search search;
        MemFetch fetch;

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

static int close_fd(int fd) {
        if (fd >= 0)
                close(fd);
        return -EBADF;
}

/* ---- memory buffers ---------------------------------------------------------- */

static void membuf_clear(MemBuffer *b) {
        free(b->data);
        *b = (MemBuffer){};
}

/* The fetcher enforces the cap; this only grows the buffer (with room for a NUL). */
static int membuf_append(MemBuffer *b, const void *data, size_t size) {
        if (b->allocated - b->size < size + 1) {
                size_t want = MAX(b->allocated, (size_t) META_BUFFER_INITIAL);
                char *p;

                while (want - b->size < size + 1) {
                        if (want > SIZE_MAX / 2)
                                return -ENOMEM;
                        want *= 2;
                }
                p = realloc(b->data, want);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->allocated = want;
        }
        memcpy(b->data + b->size, data, size);
        b->size += size;
        b->data[b->size] = 0;
        return 0;
}

/* Hand out the contents, NUL-terminated (also when empty). */
static int membuf_take(MemBuffer *b, char **ret, size_t *ret_size) {
        if (!b->data) {
                b->data = calloc(1, 1);
                if (!b->data)
                        return -ENOMEM;
        }
        if (ret_size)
                *ret_size = b->size;
        *ret = b->data;
        *b = (MemBuffer){};
        return 0;
}

/* ---- setup --------------------------------------------------------------- */

static void client_op_clear(TufClient *c);

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
        c->download.dir_fd = c->download.fd = -EBADF;

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
        r = fetcher_new(&o->fetch, &c->sync_fetcher);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

/* An operation in progress is dropped without its done(); a partial
 * download stays for the next attempt to resume. */
TufClient *tuf_client_free(TufClient *c) {
        if (!c)
                return NULL;
        client_op_clear(c);
        tuf_trusted_set_free(c->trusted);
        fetcher_free(c->fetcher);
        fetcher_free(c->sync_fetcher);
        sd_event_unref(c->sync_event);
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

/* ---- the asynchronous operation -------------------------------------------------- */

static void download_clear(Download *d) {
        d->hash_source = sd_event_source_disable_unref(d->hash_source);
        d->progress_source = sd_event_source_disable_unref(d->progress_source);
        /* Bytes hashed but still buffered: keep them for a resume. */
        if (d->fd >= 0 && d->step == DOWNLOAD_TRANSFER && d->used > 0)
                (void) loop_write(d->fd, d->buf, d->used);
        if (d->fd >= 0)
                close(d->fd); /* also drops our lock on the partial file */
        if (d->dir_fd >= 0)
                close(d->dir_fd);
        tuf_hasher_free(d->hasher);
        free(d->path);
        free(d->url);
        free(d->target_dir);
        free(d->name);
        free(d->partial);
        free(d->buf);
        *d = (Download){.dir_fd = -EBADF, .fd = -EBADF};
}

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

static void search_clear(Search *s) {
        visit_stack_done(&s->stack);
        strv_free(s->visited);
        free(s->path);
        free(s->role);
        free(s->delegator);
        *s = (Search){};
}

static void mem_fetch_clear(MemFetch *f) {
        tuf_hasher_free(f->hasher);
        free(f->url);
        *f = (MemFetch){};
}

static void client_op_clear(TufClient *c) {
        c->job = fetch_job_cancel(c->job);
        c->op_finish = sd_event_source_disable_unref(c->op_finish);
        download_clear(&c->download);
        search_clear(&c->search);
        mem_fetch_clear(&c->fetch);
        membuf_clear(&c->meta);
        free(c->meta_name);
        free(c->meta_url);
        c->meta_name = c->meta_url = NULL;
        c->op_event = sd_event_unref(c->op_event);
        c->op_done = NULL;
        c->op_find_done = NULL;
        c->op_fetch_done = NULL;
        c->op_userdata = NULL;
        c->op = CLIENT_OP_NONE;
}

static int client_op_begin(TufClient *c, ClientOp op, sd_event *e, TufClientDone done, void *userdata) {
        int r;

        if (c->op != CLIENT_OP_NONE)
                return -EBUSY;
        /* Our fetcher follows the caller's loop; it cannot serve two. */
        if (e != c->sync_event) {
                r = fetcher_attach_event(c->fetcher, e);
                if (r < 0)
                        return r;
        }
        c->op = op;
        c->op_event = sd_event_ref(e);
        c->op_done = done;
        c->op_userdata = userdata;
        c->op_result = 0;
        c->error[0] = 0;
        log_debug("TUF client: %s started", client_op_to_string(op));
        return 0;
}

static int on_op_finish(sd_event_source *s, void *userdata) {
        TufClient *c = userdata;
        TufClientDone done = c->op_done;
        TufFindDone find_done = c->op_find_done;
        TufFetchDone fetch_done = c->op_fetch_done;
        void *done_userdata = c->op_userdata;
        const TufTargetFile *found = NULL;
        _cleanup_free_ char *data = NULL;
        size_t size = 0;
        int r = c->op_result;

        /* The results outlive the operation: the target info belongs to the
         * trusted set, the fetched bytes to done(). */
        if (r >= 0 && c->op == CLIENT_OP_FIND)
                found = c->search.found;
        if (r >= 0 && c->op == CLIENT_OP_FETCH)
                r = membuf_take(&c->meta, &data, &size);

        client_op_clear(c);
        /* Last: done() may free c or start the next operation. */
        if (done)
                done(c, r, done_userdata);
        if (find_done)
                find_done(c, r, found, done_userdata);
        if (fetch_done)
                fetch_done(c, r, r >= 0 ? TAKE_PTR(data) : NULL, r >= 0 ? size : 0, done_userdata);
        return 0;
}

/* The operation is over: done() follows from the loop, never from inside
 * the call that started the operation or from a fetcher callback. */
static void client_op_finish(TufClient *c, int r) {
        int k;

        log_debug("TUF client: %s finished: %s", client_op_to_string(c->op), r < 0 ? strerror(-r) : "ok");
        c->job = fetch_job_cancel(c->job);
        /* A progress report still pending goes first (its priority is
         * higher), so the last one shows the final count. */
        c->download.hash_source = sd_event_source_disable_unref(c->download.hash_source);
        c->op_result = r;
        k = sd_event_add_defer(c->op_event, &c->op_finish, on_op_finish, c);
        if (k < 0) {
                /* Out of memory: better a re-entrant done() than none. */
                log_debug_errno(k, "TUF client: cannot defer the completion: %m");
                (void) on_op_finish(NULL, c);
                return;
        }
        (void) sd_event_source_set_description(c->op_finish, "tuf-client-done");
}

/* The fetcher for the operation's loop. */
static Fetcher *client_op_fetcher(TufClient *c) {
        return c->op_event == c->sync_event ? c->sync_fetcher : c->fetcher;
}

/* ---- the private loop of the synchronous calls ----------------------------------- */

static int client_sync_event(TufClient *c, sd_event **ret) {
        int r;

        if (c->sync_busy)
                return -EBUSY; /* called from inside a synchronous call */
        if (!c->sync_event) {
                r = sd_event_new(&c->sync_event);
                if (r < 0)
                        return r;
                r = fetcher_attach_event(c->sync_fetcher, c->sync_event);
                if (r < 0) {
                        c->sync_event = sd_event_unref(c->sync_event);
                        return r;
                }
        }
        *ret = c->sync_event;
        return 0;
}

/* Run the private loop until *finished. */
static int client_sync_run(TufClient *c, const bool *finished) {
        int r = 0;

        c->sync_busy = true;
        while (!*finished) {
                r = sd_event_run(c->sync_event, UINT64_MAX);
                if (r < 0)
                        break;
        }
        c->sync_busy = false;
        return r < 0 ? r : 0;
}

typedef struct SyncOp {
        bool finished;
        int error;
        const TufTargetFile *found; /* find */
        char *data;                 /* fetch */
        size_t size;
} SyncOp;

static void sync_op_done(TufClient *c, int error, void *userdata) {
        SyncOp *s = userdata;

        s->finished = true;
        s->error = error;
}

static void sync_find_done(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        SyncOp *s = userdata;

        s->found = t;
        sync_op_done(c, error, userdata);
}

static void sync_fetch_done(TufClient *c, int error, char *data, size_t size, void *userdata) {
        SyncOp *s = userdata;

        s->data = data;
        s->size = size;
        sync_op_done(c, error, userdata);
}

/* An operation started on the private loop, run to its end. */
static int client_sync_wait(TufClient *c, SyncOp *s) {
        int r;

        r = client_sync_run(c, &s->finished);
        if (r < 0) {
                client_op_clear(c);
                return r;
        }
        return s->error;
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

static int metadata_sink(const void *data, size_t size, void *userdata) {
        TufClient *c = userdata;

        return membuf_append(&c->meta, data, size);
}

static void refresh_on_metadata(FetchJob *j, int error, long http_status, void *userdata);

/* Start fetching METADATA_URL/name into c->meta, done() continuing the
 * operation: 1 started, or an error. */
static int metadata_fetch_start(TufClient *c, const char *name, uint64_t max_size, FetchDone done) {
        int r;

        membuf_clear(&c->meta);
        free(c->meta_name);
        free(c->meta_url);
        c->meta_name = strdup(name);
        c->meta_url = path_join(c->metadata_url, name);
        if (!c->meta_name || !c->meta_url)
                return -ENOMEM;

        r = fetcher_start(client_op_fetcher(c),
                          &(const FetchRequest){
                                  .url = c->meta_url,
                                  .max_size = max_size,
                                  .sink = metadata_sink,
                                  .done = done,
                                  .userdata = c,
                          },
                          &c->job);
        if (r < 0)
                return client_fail(c, r, "%s: download from %s", name, c->meta_url);
        return 1;
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

/* 5.3.2-5.3.9: fetch N+1.root.json unless the repository said it has none
 * (404/403) or max_root_rotations were taken this refresh. 1: started, 0:
 * the trusted root is the final one. */
static int refresh_root_begin(TufClient *c) {
        _cleanup_free_ char *name = NULL;
        uint64_t version = tuf_trusted_set_root(c->trusted)->version;

        if (c->roots_done || c->rotations >= c->max_root_rotations || version == UINT64_MAX)
                return 0;
        name = tuf_role_filename("root", version + 1);
        if (!name)
                return -ENOMEM;
        return metadata_fetch_start(c, name, TUF_ROOT_MAX_LENGTH, refresh_on_metadata);
}

static int root_accept(TufClient *c, const char *name, const char *data, size_t size) {
        int r;

        r = tuf_trusted_set_update_root(c->trusted, data, size);
        if (r < 0)
                return client_fail(c, r, "%s", name);

        r = client_forget_fast_forward(c);
        if (r < 0)
                return r;
        r = metadata_persist(c, "root.json", data, size);
        if (r < 0)
                return r;
        c->rotations++;
        log_debug("TUF client: root updated to version %" PRIu64, tuf_trusted_set_root(c->trusted)->version);
        return 0;
}

/* ---- 5.4 timestamp --------------------------------------------------------- */

static int timestamp_begin(TufClient *c) {
        _cleanup_free_ char *cached = NULL;
        size_t size;
        int r;

        /* The cached copy only serves as the reference for rollback checks. */
        r = metadata_read_cached(c, "timestamp.json", TUF_TIMESTAMP_MAX_LENGTH, &cached, &size);
        if (r >= 0)
                r = tuf_trusted_set_update_timestamp(c->trusted, cached, size);
        if (r < 0)
                log_debug_errno(r, "TUF client: no usable cached timestamp.json: %m");

        return metadata_fetch_start(c, "timestamp.json", TUF_TIMESTAMP_MAX_LENGTH, refresh_on_metadata);
}

static int timestamp_accept(TufClient *c, const char *data, size_t size) {
        const TufTimestamp *ts;
        int r;

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

/* 1 when the cached snapshot is the one timestamp names, else 0 with the
 * name and cap of the file to fetch. */
static int snapshot_prepare(TufClient *c, char **ret_name, uint64_t *ret_max) {
        _cleanup_free_ char *cached = NULL;
        const TufRoot *root = tuf_trusted_set_root(c->trusted);
        const TufMetaFile *m = &tuf_trusted_set_timestamp(c->trusted)->snapshot;
        char *name;
        size_t size;
        int r;

        r = metadata_read_cached(c, "snapshot.json", TUF_SNAPSHOT_MAX_LENGTH, &cached, &size);
        if (r >= 0) {
                r = tuf_trusted_set_update_snapshot(c->trusted, cached, size, /* from_cache= */ true);
                if (r >= 0) {
                        log_debug("TUF client: cached snapshot.json is current");
                        return 1;
                }
        }
        log_debug_errno(r, "TUF client: no usable cached snapshot.json: %m");

        name = tuf_role_filename("snapshot", root->consistent_snapshot ? m->version : 0);
        if (!name)
                return -ENOMEM;
        *ret_max = m->length ?: TUF_SNAPSHOT_MAX_LENGTH;
        *ret_name = name;
        return 0;
}

static int snapshot_accept(TufClient *c, const char *name, const char *data, size_t size) {
        int r;

        r = tuf_trusted_set_update_snapshot(c->trusted, data, size, /* from_cache= */ false);
        if (r < 0)
                return client_fail(c, r, "%s", name);

        return metadata_persist(c, "snapshot.json", data, size);
}

/* ---- 5.6 targets and delegated roles ---------------------------------------- */

static bool role_is_top_level(const char *role) {
        return tuf_role_type_from_string(role) >= 0;
}

/* A targets role (top-level "targets" with delegator "root", or a delegated
 * one) is loaded once per refresh, from the cache when it is still the
 * version snapshot names: then (or when loaded already) 1. Else 0 with the
 * remote name and cap of the file to fetch. */
static int targets_prepare(TufClient *c, const char *role, const char *delegator, char **ret_remote,
                           uint64_t *ret_max) {
        _cleanup_free_ char *cached = NULL, *local = NULL, *meta_name = NULL;
        const TufRoot *root = tuf_trusted_set_root(c->trusted);
        const TufMetaFile *m;
        char *remote;
        size_t size;
        int r;

        if (tuf_trusted_set_targets(c->trusted, role))
                return 1;

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
                        return 1;
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
        *ret_max = m->length ?: TUF_TARGETS_MAX_LENGTH;
        *ret_remote = remote;
        return 0;
}

static int targets_accept(TufClient *c, const char *role, const char *delegator, const char *remote,
                          const char *data, size_t size) {
        _cleanup_free_ char *local = tuf_role_filename(role, 0);
        int r;

        if (!local)
                return -ENOMEM;
        r = tuf_trusted_set_update_targets(c->trusted, role, delegator, data, size);
        if (r < 0)
                return client_fail(c, r, "%s", remote);

        return metadata_persist(c, local, data, size);
}

/* ---- the refresh, step by step ------------------------------------------------- */

/* Take steps until one waits for a transfer, or the refresh is over. */
static void refresh_advance(TufClient *c) {
        for (;;) {
                _cleanup_free_ char *name = NULL;
                uint64_t max = 0;
                int r;

                log_debug("TUF client: refresh step %s", refresh_step_to_string(c->refresh_step));
                switch (c->refresh_step) {
                case REFRESH_ROOT:
                        r = refresh_root_begin(c);
                        if (r != 0)
                                break;
                        /* 5.3.10: the freeze check happens only on the final root. */
                        r = tuf_trusted_set_check_root(c->trusted);
                        if (r < 0) {
                                r = client_fail(c, r, "root.json (version %" PRIu64 ")",
                                                tuf_trusted_set_root(c->trusted)->version);
                                break;
                        }
                        c->refresh_step = REFRESH_TIMESTAMP;
                        continue;

                case REFRESH_TIMESTAMP:
                        r = timestamp_begin(c);
                        break;

                case REFRESH_SNAPSHOT:
                        r = snapshot_prepare(c, &name, &max);
                        if (r > 0) {
                                c->refresh_step = REFRESH_TARGETS;
                                continue;
                        }
                        if (r == 0)
                                r = metadata_fetch_start(c, name, max, refresh_on_metadata);
                        break;

                case REFRESH_TARGETS:
                        r = targets_prepare(c, "targets", "root", &name, &max);
                        if (r > 0) {
                                c->refresh_step = REFRESH_DONE;
                                continue;
                        }
                        if (r == 0)
                                r = metadata_fetch_start(c, name, max, refresh_on_metadata);
                        break;

                case REFRESH_DONE:
                        c->refreshed = true;
                        client_op_finish(c, 0);
                        return;

                default:
                        assert(false);
                        r = -EINVAL;
                }

                if (r < 0)
                        client_op_finish(c, r);
                return; /* r > 0: the transfer's done() continues */
        }
}

/* A metadata file arrived (or did not): verify, persist, go on. */
static void refresh_on_metadata(FetchJob *j, int error, long http_status, void *userdata) {
        TufClient *c = userdata;
        const char *data = c->meta.data ?: "";
        size_t size = c->meta.size;
        int r;

        c->job = NULL; /* freed by the fetcher when we return */

        if (error == -ENOENT && c->refresh_step == REFRESH_ROOT) {
                c->roots_done = true; /* not an error: the trusted root is the newest */
                refresh_advance(c);
                return;
        }
        if (error < 0) {
                client_op_finish(c,
                                 client_fail(c, error, "%s: download from %s", c->meta_name, c->meta_url));
                return;
        }

        switch (c->refresh_step) {
        case REFRESH_ROOT:
                r = root_accept(c, c->meta_name, data, size);
                break;
        case REFRESH_TIMESTAMP:
                r = timestamp_accept(c, data, size);
                c->refresh_step = REFRESH_SNAPSHOT;
                break;
        case REFRESH_SNAPSHOT:
                r = snapshot_accept(c, c->meta_name, data, size);
                c->refresh_step = REFRESH_TARGETS;
                break;
        case REFRESH_TARGETS:
                r = targets_accept(c, "targets", "root", c->meta_name, data, size);
                c->refresh_step = REFRESH_DONE;
                break;
        default:
                assert(false);
                r = -EINVAL;
        }
        membuf_clear(&c->meta);
        if (r < 0) {
                client_op_finish(c, r);
                return;
        }
        refresh_advance(c);
}

int tuf_client_refresh_async(TufClient *c, sd_event *e, TufClientDone done, void *userdata) {
        int64_t reference_time;
        int r;

        assert_return(c, -EINVAL);
        assert_return(e, -EINVAL);

        r = client_op_begin(c, CLIENT_OP_REFRESH, e, done, userdata);
        if (r < 0)
                return r;
        c->refreshed = false;
        c->refresh_step = REFRESH_ROOT;
        c->rotations = 0;
        c->roots_done = false;

        /* 5.1: one reference time for every expiry check of this refresh. */
        reference_time = c->reference_time ?: (int64_t) time(NULL);

        r = client_load_trusted_root(c, reference_time);
        if (r < 0)
                client_op_finish(c, r);
        else
                refresh_advance(c);
        return 0;
}

int tuf_client_refresh(TufClient *c) {
        SyncOp s = {};
        sd_event *e;
        int r;

        assert_return(c, -EINVAL);

        r = client_sync_event(c, &e);
        if (r < 0)
                return r;
        r = tuf_client_refresh_async(c, e, sync_op_done, &s);
        if (r < 0)
                return r;
        return client_sync_wait(c, &s);
}

/* ---- target search --------------------------------------------------------- */

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

static void search_on_role(FetchJob *j, int error, long http_status, void *userdata);

/* Look for the path in a trusted role; if it is not there, push the roles
 * it delegates the path to. 1: found, 0: not found. */
static int search_visit(TufClient *c, const char *role) {
        Search *s = &c->search;
        const TufTargets *t = tuf_trusted_set_targets(c->trusted, role);
        const TufTargetFile *found;
        int r;

        assert(t);
        found = tuf_targets_find(t, s->path);
        if (found) {
                log_debug("TUF client: %s found in role %s", s->path, role);
                s->found = found;
                return 1;
        }
        r = strv_extend(&s->visited, role);
        if (r < 0)
                return r;
        s->n_visited++;
        r = push_delegations(&s->stack, t, role, s->path);
        if (r < 0)
                return r;
        return 0;
}

/* 5.6.7: pre-order depth-first search, at most max_delegations roles, each
 * loaded (cache or network) when the search reaches it. Takes steps until
 * one waits for a role's metadata, or the search is over. */
static void search_advance(TufClient *c) {
        Search *s = &c->search;
        int r;

        while (s->stack.n > 0 && s->n_visited < c->max_delegations) {
                _cleanup_free_ char *role = s->stack.items[s->stack.n - 1].role;
                _cleanup_free_ char *delegator = s->stack.items[s->stack.n - 1].delegator;
                _cleanup_free_ char *remote = NULL;
                uint64_t max = 0;

                s->stack.n--;
                if (strv_contains(s->visited, role))
                        continue; /* a cycle in the delegation graph */

                r = targets_prepare(c, role, delegator, &remote, &max);
                if (r == 0) {
                        /* Not trusted yet: fetch it, search_on_role() goes on. */
                        free(s->role);
                        free(s->delegator);
                        s->role = TAKE_PTR(role);
                        s->delegator = TAKE_PTR(delegator);
                        r = metadata_fetch_start(c, remote, max, search_on_role);
                        if (r < 0)
                                client_op_finish(c, r);
                        return;
                }
                if (r > 0)
                        r = search_visit(c, role);
                if (r != 0) {
                        client_op_finish(c, MIN(r, 0));
                        return;
                }
        }

        if (s->stack.n > 0)
                log_debug("TUF client: %zu roles left unvisited after %u delegations", s->stack.n,
                          s->n_visited);
        client_op_finish(c, client_fail(c, -ENOENT, "no trusted role lists it"));
}

/* A delegated role's metadata arrived (or did not): verify, persist, visit. */
static void search_on_role(FetchJob *j, int error, long http_status, void *userdata) {
        TufClient *c = userdata;
        Search *s = &c->search;
        int r;

        c->job = NULL; /* freed by the fetcher when we return */

        if (error < 0) {
                client_op_finish(c,
                                 client_fail(c, error, "%s: download from %s", c->meta_name, c->meta_url));
                return;
        }
        r = targets_accept(c, s->role, s->delegator, c->meta_name, c->meta.data ?: "", c->meta.size);
        membuf_clear(&c->meta);
        if (r >= 0)
                r = search_visit(c, s->role);
        if (r != 0) {
                client_op_finish(c, MIN(r, 0));
                return;
        }
        search_advance(c);
}

int tuf_client_find_target_async(TufClient *c, sd_event *e, const char *path, TufFindDone done,
                                 void *userdata) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(e, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(c->refreshed, -EBUSY);

        r = client_op_begin(c, CLIENT_OP_FIND, e, NULL, userdata);
        if (r < 0)
                return r;
        c->op_find_done = done;

        if (!tuf_target_path_is_valid(path)) {
                client_op_finish(c, client_fail(c, -EINVAL, "not a valid target path"));
                return 0;
        }
        c->search.path = strdup(path);
        if (!c->search.path) {
                client_op_finish(c, -ENOMEM);
                return 0;
        }
        r = visit_stack_push(&c->search.stack, "targets", "root");
        if (r < 0)
                client_op_finish(c, r);
        else
                search_advance(c);
        return 0;
}

int tuf_client_find_target(TufClient *c, const char *path, const TufTargetFile **ret) {
        SyncOp s = {};
        sd_event *e;
        int r;

        assert_return(c, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(c->refreshed, -EBUSY);

        r = client_sync_event(c, &e);
        if (r < 0)
                return r;
        r = tuf_client_find_target_async(c, e, path, sync_find_done, &s);
        if (r < 0)
                return r;
        r = client_sync_wait(c, &s);
        if (r < 0)
                return r;
        *ret = s.found;
        return 0;
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

/*
 * Target download, resumable. The bytes go to NAME.partial beside the final
 * name, hashed as they arrive; only a file whose length and hashes match the
 * signed ones is renamed to NAME. An interrupted download (network error,
 * daemon stopped) leaves NAME.partial: the next attempt hashes what is there
 * (it counts toward the signed length) and asks the server for the rest.
 * A server that ignores Range is refused by the fetcher (-ERANGE, nothing of
 * that body written): the partial file is emptied and the download starts
 * over from byte 0, once. Bytes that are wrong (a tampered or stale partial
 * file, a changed target) are only found by the final verification: the
 * partial file is removed then, so the next attempt starts over.
 *
 * The partial file is locked (flock) while a download uses it: a second
 * download of the same target into the same directory fails with -EBUSY
 * instead of interleaving.
 */

static void download_on_transfer_done(FetchJob *j, int error, long http_status, void *userdata);
static void download_transfer(TufClient *c);
static void download_open_partial(TufClient *c);

/* Errors that say the partial bytes are wrong or useless: they go. Others
 * (network, deadline, disk) leave them for the next attempt. */
static bool download_error_discards(int r) {
        switch (r) {
        case -EFBIG:   /* the server sent more than the signed length */
        case -EBADMSG: /* verification failed */
        case -ERANGE:  /* the server cannot resume, even after starting over */
        case -ENOENT:  /* the target is gone from the server */
                return true;
        default:
                return false;
        }
}

_printf_(3, 4) static void download_fail(TufClient *c, int r, const char *format, ...) {
        Download *d = &c->download;
        va_list ap;

        va_start(ap, format);
        vsnprintf(c->error, sizeof(c->error), format, ap);
        va_end(ap);
        log_debug_errno(r, "TUF client: %s: %m", c->error);

        /* Nothing received at all: no empty file left behind either. */
        if (d->have_partial && (download_error_discards(r) || d->size == 0)) {
                log_debug("TUF client: removing %s/%s", d->target_dir, d->partial);
                (void) unlinkat(d->dir_fd, d->partial, 0);
                d->used = 0;
        }
        client_op_finish(c, r);
}

static int download_flush(Download *d) {
        int r;

        if (d->used == 0)
                return 0;
        r = loop_write(d->fd, d->buf, d->used);
        d->used = 0;
        return r;
}

/* The transfer's sink: hash, then write in large pieces. */
static int download_sink(const void *data, size_t size, void *userdata) {
        TufClient *c = userdata;
        Download *d = &c->download;
        int r = 0;

        r = tuf_hasher_update(d->hasher, data, size);
        if (r < 0)
                return r;
        if (d->used + size > TARGET_BUFFER) {
                r = download_flush(d);
                if (r < 0)
                        return r;
        }
        if (size >= TARGET_BUFFER)
                r = loop_write(d->fd, data, size);
        else {
                memcpy(d->buf + d->used, data, size);
                d->used += size;
        }
        if (r < 0)
                return r;
        d->size += size;
        /* Reported from the loop, not from inside libcurl. */
        if (d->progress_source)
                (void) sd_event_source_set_enabled(d->progress_source, SD_EVENT_ONESHOT);
        return 0;
}

static int download_on_progress(sd_event_source *s, void *userdata) {
        TufClient *c = userdata;
        Download *d = &c->download;

        if (d->progress)
                d->progress(c, d->size, d->length, c->op_userdata);
        return 0;
}

/* Everything is there: verify, then give it its final name. */
static void download_commit(TufClient *c) {
        Download *d = &c->download;
        int r;

        r = tuf_hasher_verify(d->hasher, d->length, &d->hashes);
        if (r < 0) {
                download_fail(c, r, "verifying the download from %s", d->url);
                return;
        }
        if (fsync(d->fd) < 0 || renameat(d->dir_fd, d->partial, d->dir_fd, d->name) < 0 ||
            fsync(d->dir_fd) < 0) {
                r = -errno;
                download_fail(c, r, "saving as %s", d->name);
                return;
        }
        log_debug("TUF client: %s verified and saved as %s/%s", d->path, d->target_dir, d->name);
        c->download_cached = false;
        client_op_finish(c, 0);
}

/* Hashing a local file is done: the cached final file, or the partial one. */
static void download_hashed(TufClient *c) {
        Download *d = &c->download;
        int r;

        d->hash_source = sd_event_source_disable_unref(d->hash_source);

        if (d->step == DOWNLOAD_CHECK_FINAL) {
                r = d->size == d->length ? tuf_hasher_verify(d->hasher, d->length, &d->hashes) : -EBADMSG;
                d->hasher = tuf_hasher_free(d->hasher);
                d->fd = close_fd(d->fd);
                if (r >= 0) {
                        log_debug("TUF client: %s/%s is already there and verified", d->target_dir, d->name);
                        c->download_cached = true;
                        client_op_finish(c, 0);
                        return;
                }
                log_debug_errno(r, "TUF client: replacing %s/%s, it does not match: %m", d->target_dir,
                                d->name);
                download_open_partial(c);
                return;
        }

        /* What the partial file holds is exactly what was hashed. */
        if (ftruncate(d->fd, (off_t) d->size) < 0 || lseek(d->fd, (off_t) d->size, SEEK_SET) < 0) {
                r = -errno;
                download_fail(c, r, "preparing %s", d->partial);
                return;
        }
        if (d->size > 0)
                log_debug("TUF client: resuming %s at byte %" PRIu64 " of %" PRIu64, d->path, d->size,
                          d->length);
        if (d->size == d->length)
                download_commit(c);
        else
                download_transfer(c);
}

/* Hash d->fd from its position to its end (or hash_limit), a few MiB per
 * loop iteration. */
static int download_on_hash(sd_event_source *s, uint64_t usec, void *userdata) {
        TufClient *c = userdata;
        Download *d = &c->download;
        int r;

        for (unsigned i = 0; i < HASH_BUFFERS_PER_ITERATION; i++) {
                size_t want = (size_t) MIN((uint64_t) TARGET_BUFFER, d->hash_limit - d->size);
                ssize_t n;

                if (want == 0) {
                        download_hashed(c);
                        return 0;
                }
                n = read(d->fd, d->buf, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        download_fail(c, r, "reading %s",
                                      d->step == DOWNLOAD_CHECK_FINAL ? d->name : d->partial);
                        return 0;
                }
                if (n == 0) {
                        download_hashed(c);
                        return 0;
                }
                r = tuf_hasher_update(d->hasher, d->buf, (size_t) n);
                if (r < 0) {
                        download_fail(c, r, "hashing %s",
                                      d->step == DOWNLOAD_CHECK_FINAL ? d->name : d->partial);
                        return 0;
                }
                d->size += (uint64_t) n;
        }
        /* More next time round: due at once again, queued behind whatever
         * became pending meanwhile. */
        r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                download_fail(c, r, "hashing %s", d->step == DOWNLOAD_CHECK_FINAL ? d->name : d->partial);
        return 0;
}

static int download_hash_start(TufClient *c, DownloadStep step, uint64_t limit) {
        Download *d = &c->download;
        int r;

        d->step = step;
        d->size = 0;
        d->hash_limit = limit;
        d->hasher = tuf_hasher_free(d->hasher);
        r = tuf_hasher_new(&d->hashes, &d->hasher);
        if (r < 0)
                return r;
        /*
         * A time source already due, re-armed after each slice, rather than a
         * defer source left on: sd-event keeps a defer source pending with the
         * iteration it was added in, so it would always be the oldest and
         * starve every other source of its priority (or be starved by one
         * like it). A timer becomes pending anew each time, and takes turns.
         */
        r = sd_event_add_time(c->op_event, &d->hash_source, CLOCK_MONOTONIC, 1, 0, download_on_hash, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(d->hash_source, "tuf-client-hash");
        log_debug("TUF client: download step %s", download_step_to_string(step));
        return 0;
}

/* Open (or create) NAME.partial, lock it and hash what it holds. */
static void download_open_partial(TufClient *c) {
        Download *d = &c->download;
        struct stat st;
        int r;

        d->fd = openat(d->dir_fd, d->partial,
                       O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
        if (d->fd < 0) {
                r = -errno;
                client_op_finish(c, client_fail(c, r, "opening %s", d->partial));
                return;
        }
        d->step = DOWNLOAD_REHASH_PARTIAL;
        if (flock(d->fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                d->fd = close_fd(d->fd);
                client_op_finish(c, client_fail(c, r, "%s is in use by another download", d->partial));
                return;
        }
        if (fstat(d->fd, &st) < 0) {
                r = -errno;
                client_op_finish(c, client_fail(c, r, "opening %s", d->partial));
                return;
        }
        if (!S_ISREG(st.st_mode)) {
                d->fd = close_fd(d->fd);
                client_op_finish(c, client_fail(c, -EBADMSG, "%s is not a regular file", d->partial));
                return;
        }
        d->have_partial = true; /* ours, locked: download_fail() may remove it */
        /* Longer than the signed length: of no use, start over. */
        if ((uint64_t) st.st_size > d->length && ftruncate(d->fd, 0) < 0) {
                r = -errno;
                download_fail(c, r, "emptying %s", d->partial);
                return;
        }

        r = download_hash_start(c, DOWNLOAD_REHASH_PARTIAL, d->length);
        if (r < 0)
                download_fail(c, r, "hashing %s", d->partial);
}

/* Ask for what the partial file lacks. */
static void download_transfer(TufClient *c) {
        Download *d = &c->download;
        int r;

        d->step = DOWNLOAD_TRANSFER;
        d->used = 0;
        log_debug("TUF client: download step %s from byte %" PRIu64, download_step_to_string(d->step),
                  d->size);

        r = fetcher_start(client_op_fetcher(c),
                          &(const FetchRequest){
                                  .url = d->url,
                                  /* The signed length caps the transfer: the endless-data defence. */
                                  .max_size = d->length - d->size,
                                  .resume_from = d->size,
                                  .sink = download_sink,
                                  .done = download_on_transfer_done,
                                  .userdata = c,
                          },
                          &c->job);
        if (r < 0) {
                download_fail(c, r, "download from %s", d->url);
                return;
        }
        if (d->progress_source)
                (void) sd_event_source_set_enabled(d->progress_source, SD_EVENT_ONESHOT);
}

/* The server ignored our Range: what it sent went nowhere; empty the
 * partial file and ask for the whole target. */
static int download_restart(Download *d) {
        int r;

        if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)
                return -errno;
        d->size = 0;
        d->used = 0;
        d->restarted = true;
        d->hasher = tuf_hasher_free(d->hasher);
        r = tuf_hasher_new(&d->hashes, &d->hasher);
        if (r < 0)
                return r;
        return 0;
}

static void download_on_transfer_done(FetchJob *j, int error, long http_status, void *userdata) {
        TufClient *c = userdata;
        Download *d = &c->download;
        int r;

        c->job = NULL; /* freed by the fetcher when we return */

        r = download_flush(d);
        if (error == -ERANGE && d->size > 0 && !d->restarted) {
                log_debug("TUF client: %s did not resume at byte %" PRIu64 ", starting over", d->url,
                          d->size);
                r = download_restart(d);
                if (r < 0) {
                        download_fail(c, r, "emptying %s", d->partial);
                        return;
                }
                download_transfer(c);
                return;
        }
        if (error < 0) {
                download_fail(c, error, "download from %s", d->url);
                return;
        }
        if (r < 0) {
                download_fail(c, r, "writing %s", d->partial);
                return;
        }
        download_commit(c);
}

/* A file under the final name with the signed length is hashed before
 * anything is fetched: if it matches, nothing is. */
static void download_check_final(TufClient *c) {
        Download *d = &c->download;
        struct stat st;
        int r;

        d->fd = openat(d->dir_fd, d->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (d->fd < 0) {
                if (errno != ENOENT)
                        log_debug_errno(-errno, "TUF client: replacing %s/%s: %m", d->target_dir, d->name);
                download_open_partial(c);
                return;
        }
        if (fstat(d->fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t) st.st_size != d->length) {
                log_debug("TUF client: replacing %s/%s, it does not match", d->target_dir, d->name);
                d->fd = close_fd(d->fd);
                download_open_partial(c);
                return;
        }
        /* One byte more than allowed would show a file that grew meanwhile. */
        r = download_hash_start(c, DOWNLOAD_CHECK_FINAL, d->length + 1);
        if (r < 0) {
                d->fd = close_fd(d->fd);
                client_op_finish(c, client_fail(c, r, "hashing %s", d->name));
        }
}

static int download_setup(TufClient *c, const TufTargetFile *t, const char *target_dir) {
        Download *d = &c->download;
        int r;

        if (!tuf_target_path_is_valid(t->path))
                return client_fail(c, -EINVAL, "not a valid target path");
        d->name = tuf_client_target_filename(t->path);
        if (!d->name)
                return -ENOMEM;
        if (asprintf(&d->partial, "%s" PARTIAL_SUFFIX, d->name) < 0) {
                d->partial = NULL;
                return -ENOMEM;
        }
        if (!filename_is_safe(d->name) || !filename_is_safe(d->partial))
                return client_fail(c, -ENAMETOOLONG, "local file name too long");

        d->path = strdup(t->path);
        d->target_dir = strdup(target_dir);
        d->buf = malloc(TARGET_BUFFER);
        if (!d->path || !d->target_dir || !d->buf)
                return -ENOMEM;
        d->length = t->length;
        d->hashes = t->hashes;
        r = target_url(c, t, &d->url);
        if (r < 0)
                return r;

        d->dir_fd = open(target_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->dir_fd < 0)
                return client_fail(c, -errno, "opening the target directory %s", target_dir);

        if (d->progress) {
                r = sd_event_add_defer(c->op_event, &d->progress_source, download_on_progress, c);
                if (r >= 0)
                        r = sd_event_source_set_enabled(d->progress_source, SD_EVENT_OFF);
                if (r >= 0)
                        r = sd_event_source_set_priority(d->progress_source, SD_EVENT_PRIORITY_IMPORTANT);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(d->progress_source, "tuf-client-progress");
        }
        return 0;
}

int tuf_client_download_target_async(TufClient *c, sd_event *e, const TufTargetFile *t,
                                     const char *target_dir, TufProgress progress, TufClientDone done,
                                     void *userdata) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(e, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(target_dir, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        r = client_op_begin(c, CLIENT_OP_DOWNLOAD, e, done, userdata);
        if (r < 0)
                return r;
        c->download_cached = false;
        c->download.progress = progress;

        r = download_setup(c, t, target_dir);
        if (r < 0)
                client_op_finish(c, r);
        else
                download_check_final(c);
        return 0;
}

int tuf_client_download_target(TufClient *c, const TufTargetFile *t, const char *target_dir, char **ret_path,
                               bool *ret_cached) {
        _cleanup_free_ char *name = NULL, *path = NULL;
        SyncOp s = {};
        sd_event *e;
        int r;

        assert_return(c, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(target_dir, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        r = client_sync_event(c, &e);
        if (r < 0)
                return r;
        r = tuf_client_download_target_async(c, e, t, target_dir, NULL, sync_op_done, &s);
        if (r < 0)
                return r;
        r = client_sync_wait(c, &s);
        if (r < 0)
                return r;

        if (ret_path) {
                name = tuf_client_target_filename(t->path);
                if (!name)
                        return -ENOMEM;
                path = path_join(target_dir, name);
                if (!path)
                        return -ENOMEM;
                *ret_path = TAKE_PTR(path);
        }
        if (ret_cached)
                *ret_cached = c->download_cached;
        return 0;
}

/* ---- a target into memory ------------------------------------------------------ */

/* The transfer's sink: keep and hash (the fetcher caps at the signed length). */
static int fetch_sink(const void *data, size_t size, void *userdata) {
        TufClient *c = userdata;
        int r;

        r = tuf_hasher_update(c->fetch.hasher, data, size);
        if (r < 0)
                return r;
        return membuf_append(&c->meta, data, size);
}

static void fetch_on_done(FetchJob *j, int error, long http_status, void *userdata) {
        TufClient *c = userdata;
        MemFetch *f = &c->fetch;
        int r;

        c->job = NULL; /* freed by the fetcher when we return */

        if (error < 0) {
                client_op_finish(c, client_fail(c, error, "download from %s", f->url));
                return;
        }
        r = tuf_hasher_verify(f->hasher, f->length, &f->hashes);
        if (r < 0) {
                client_op_finish(c, client_fail(c, r, "verifying the download from %s", f->url));
                return;
        }
        client_op_finish(c, 0); /* on_op_finish() hands c->meta to done() */
}

int tuf_client_fetch_target_async(TufClient *c, sd_event *e, const TufTargetFile *t, TufFetchDone done,
                                  void *userdata) {
        MemFetch *f = &c->fetch;
        int r;

        assert_return(c, -EINVAL);
        assert_return(e, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        r = client_op_begin(c, CLIENT_OP_FETCH, e, NULL, userdata);
        if (r < 0)
                return r;
        c->op_fetch_done = done;

        if (!tuf_target_path_is_valid(t->path)) {
                client_op_finish(c, client_fail(c, -EINVAL, "not a valid target path"));
                return 0;
        }
        /* Copies: t need not outlive this call. */
        f->length = t->length;
        f->hashes = t->hashes;
        r = tuf_hasher_new(&f->hashes, &f->hasher);
        if (r >= 0)
                r = target_url(c, t, &f->url);
        if (r >= 0)
                r = fetcher_start(client_op_fetcher(c),
                                  &(const FetchRequest){
                                          .url = f->url,
                                          /* The signed length caps the transfer. */
                                          .max_size = f->length,
                                          .sink = fetch_sink,
                                          .done = fetch_on_done,
                                          .userdata = c,
                                  },
                                  &c->job);
        if (r < 0)
                client_op_finish(c, f->url ? client_fail(c, r, "download from %s", f->url) : r);
        return 0;
}

int tuf_client_fetch_target(TufClient *c, const TufTargetFile *t, char **ret, size_t *ret_size) {
        SyncOp s = {};
        sd_event *e;
        int r;

        assert_return(c, -EINVAL);
        assert_return(t, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(c->refreshed, -EBUSY);
        assert_return(c->target_base_url, -EINVAL);

        r = client_sync_event(c, &e);
        if (r < 0)
                return r;
        r = tuf_client_fetch_target_async(c, e, t, sync_fetch_done, &s);
        if (r < 0)
                return r;
        r = client_sync_wait(c, &s);
        if (r < 0)
                return r;
        if (ret_size)
                *ret_size = s.size;
        *ret = s.data;
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

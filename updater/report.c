/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The report outbox: status reports persisted as files before anything is
 * sent, POSTed one at a time on the daemon's loop, removed only once the
 * server answered 2xx. The directory is the truth: the in-memory queue is
 * just the order in which its files are sent, so a kill at any instant
 * loses nothing that outbox_queue() returned for, and at worst sends a
 * report twice (the idempotency key makes that harmless).
 *
 * One report at a time keeps the order (a failure report before the retry's
 * success report) and keeps the code simple; reports are small and rare.
 * When the endpoint is down, the head of the queue waits with backoff and
 * everything behind it waits too: there is no point trying the others.
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "updater.h"

#define OUTBOX_SUFFIX ".json"
#define OUTBOX_REJECTED_DIR "rejected"
/* What we accept of a server's answer; the body is read and dropped. */
#define OUTBOX_RESPONSE_MAX (64U * 1024U)

typedef struct OutboxItem {
        char *key;
        char *name;     /* file name in the outbox directory */
        uint64_t mtime; /* nanoseconds since the epoch: the order of sending */
        uint64_t seq;   /* ties (same mtime) in the order they were queued */
} OutboxItem;

struct Outbox {
        sd_event *event;
        Fetcher *fetcher;
        char *dir;
        char *endpoint;
        int dir_fd;

        OutboxItem **items; /* sorted, oldest first */
        size_t n_items;
        uint64_t next_seq;

        /* The attempt in flight: its item, the job and what the job points to. */
        OutboxItem *current;
        FetchJob *job;
        char *body;
        size_t body_size;
        char *url;
        sd_event_source *attempt_timer;

        sd_event_source *retry_timer;
        unsigned failures; /* attempts failed in a row */

        uint64_t backoff_base, backoff_cap, attempt_timeout;
        size_t max_reports;
};

static OutboxItem *outbox_item_free(OutboxItem *i) {
        if (!i)
                return NULL;
        free(i->key);
        free(i->name);
        free(i);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(OutboxItem *, outbox_item_free);

/* ---- keys and names ------------------------------------------------------------ */

static bool key_is_valid(const char *key) {
        size_t n = strlen(key);

        if (n == 0 || n > OUTBOX_KEY_MAX)
                return false;
        for (const char *p = key; *p; p++)
                if (*p <= ' ' || *p > '~')
                        return false;
        return true;
}

static bool char_is_plain(char c, bool first) {
        if (c == '.')
                return !first; /* ".#..." are temp files, "." and ".." are not files */
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-';
}

static const char hex_upper[] = "0123456789ABCDEF";

/* "a/b" -> "a%2Fb.json"; NULL on OOM. */
static char *key_to_filename(const char *key) {
        char *s = malloc(strlen(key) * 3 + STRLEN(OUTBOX_SUFFIX) + 1), *p = s;

        if (!s)
                return NULL;
        for (const char *k = key; *k; k++) {
                if (char_is_plain(*k, k == key)) {
                        *p++ = *k;
                        continue;
                }
                *p++ = '%';
                *p++ = hex_upper[(uint8_t) *k >> 4];
                *p++ = hex_upper[(uint8_t) *k & 15];
        }
        strcpy(p, OUTBOX_SUFFIX);
        return s;
}

static int hex_value(char c) {
        const char *p = c ? strchr(hex_upper, c) : NULL;

        return p ? (int) (p - hex_upper) : -1;
}

/* The inverse of key_to_filename(), accepting only its exact output (so
 * that one key has one file): -EINVAL for any other name. */
static int filename_to_key(const char *name, char **ret) {
        size_t n = strlen(name);
        _cleanup_free_ char *key = NULL, *check = NULL;
        char *p;

        if (n <= STRLEN(OUTBOX_SUFFIX) || !streq(name + n - STRLEN(OUTBOX_SUFFIX), OUTBOX_SUFFIX))
                return -EINVAL;
        n -= STRLEN(OUTBOX_SUFFIX);
        key = p = malloc(n + 1);
        if (!key)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (name[i] != '%') {
                        *p++ = name[i];
                        continue;
                }
                if (i + 2 >= n || (hi = hex_value(name[i + 1])) < 0 || (lo = hex_value(name[i + 2])) < 0)
                        return -EINVAL;
                *p++ = (char) (hi << 4 | lo);
                i += 2;
        }
        *p = 0;
        if (!key_is_valid(key))
                return -EINVAL;
        check = key_to_filename(key);
        if (!check)
                return -ENOMEM;
        if (!streq(check, name))
                return -EINVAL;
        *ret = TAKE_PTR(key);
        return 0;
}

/* endpoint + "?key=" or "&key=" + the key percent-encoded (RFC 3986 unreserved kept). */
static char *report_url(const char *endpoint, const char *key) {
        _cleanup_free_ char *enc = malloc(strlen(key) * 3 + 1);
        char *p = enc, *s;

        if (!enc)
                return NULL;
        for (const char *k = key; *k; k++) {
                if (char_is_plain(*k, false) || *k == '~') {
                        *p++ = *k;
                        continue;
                }
                *p++ = '%';
                *p++ = hex_upper[(uint8_t) *k >> 4];
                *p++ = hex_upper[(uint8_t) *k & 15];
        }
        *p = 0;
        if (asprintf(&s, "%s%ckey=%s", endpoint, strchr(endpoint, '?') ? '&' : '?', enc) < 0)
                return NULL;
        return s;
}

/* The report as sent: json (one object) with "idempotency_key" set to key. */
static int report_body(const char *key, const char *json, char **ret, size_t *ret_size) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_free_ char *s = NULL;
        json_error_t err;
        size_t n;

        if (strlen(json) > OUTBOX_REPORT_MAX)
                return -EFBIG;
        root = json_loads(json, JSON_REJECT_DUPLICATES, &err);
        if (!root || !json_is_object(root))
                return -EPROTO;
        if (json_object_set_new(root, "idempotency_key", json_string(key)) < 0)
                return -ENOMEM;
        s = json_dumps(root, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        if (n > OUTBOX_REPORT_MAX)
                return -EFBIG;
        *ret_size = n;
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- the queue --------------------------------------------------------------- */

static bool item_older(const OutboxItem *a, const OutboxItem *b) {
        return a->mtime != b->mtime ? a->mtime < b->mtime : a->seq < b->seq;
}

static ssize_t outbox_find(const Outbox *o, const char *name) {
        for (size_t i = 0; i < o->n_items; i++)
                if (streq(o->items[i]->name, name))
                        return (ssize_t) i;
        return -1;
}

/* Takes the item on success. */
static int outbox_insert(Outbox *o, OutboxItem *item) {
        OutboxItem **a;
        size_t at;

        a = reallocarray(o->items, o->n_items + 1, sizeof(OutboxItem *));
        if (!a)
                return -ENOMEM;
        o->items = a;
        item->seq = o->next_seq++;
        for (at = o->n_items; at > 0 && item_older(item, o->items[at - 1]); at--)
                ;
        memmove(o->items + at + 1, o->items + at, (o->n_items - at) * sizeof(OutboxItem *));
        o->items[at] = item;
        o->n_items++;
        return 0;
}

static void outbox_remove_at(Outbox *o, size_t i) {
        assert(i < o->n_items);
        outbox_item_free(o->items[i]);
        memmove(o->items + i, o->items + i + 1, (o->n_items - i - 1) * sizeof(OutboxItem *));
        o->n_items--;
}

static void outbox_remove(Outbox *o, OutboxItem *item) {
        for (size_t i = 0; i < o->n_items; i++)
                if (o->items[i] == item) {
                        outbox_remove_at(o, i);
                        return;
                }
        assert(false);
}

static uint64_t timespec_nsec(const struct timespec *ts) {
        return (uint64_t) ts->tv_sec * 1000000000ULL + (uint64_t) ts->tv_nsec;
}

/* A new item for file name (key decoded from it, or given), stamped with its
 * mtime; -ENOENT when the file is gone, -EINVAL when it is not a regular file. */
static int outbox_item_new(Outbox *o, const char *name, const char *key, OutboxItem **ret) {
        _cleanup_(outbox_item_freep) OutboxItem *i = NULL;
        struct stat st;
        int r;

        if (fstatat(o->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        i = calloc(1, sizeof(*i));
        if (!i)
                return -ENOMEM;
        i->name = strdup(name);
        if (!i->name)
                return -ENOMEM;
        if (key) {
                i->key = strdup(key);
                if (!i->key)
                        return -ENOMEM;
        } else {
                r = filename_to_key(name, &i->key);
                if (r < 0)
                        return r;
        }
        i->mtime = timespec_nsec(&st.st_mtim);
        *ret = TAKE_PTR(i);
        return 0;
}

/* ---- files ------------------------------------------------------------------- */

/* The mtime is the order of sending after a restart, and the file system's
 * clock is coarse (reports queued within a few ms would tie): make it later
 * than every report we know of. Best effort; a crash before it leaves the
 * coarse time, which only loses a tie's order. */
static void outbox_stamp(Outbox *o, const char *name) {
        struct timespec ts[2];
        uint64_t t, newest = 0;

        if (clock_gettime(CLOCK_REALTIME, &ts[1]) < 0)
                return;
        t = timespec_nsec(&ts[1]);
        for (size_t i = 0; i < o->n_items; i++)
                newest = MAX(newest, o->items[i]->mtime);
        if (t <= newest)
                t = newest + 1000;
        ts[1] = (struct timespec){.tv_sec = (time_t) (t / 1000000000ULL),
                                  .tv_nsec = (long) (t % 1000000000ULL)};
        ts[0] = (struct timespec){.tv_nsec = UTIME_OMIT};
        (void) utimensat(o->dir_fd, name, ts, AT_SYMLINK_NOFOLLOW);
}

static void outbox_unlink(Outbox *o, const char *name) {
        if (unlinkat(o->dir_fd, name, 0) < 0 && errno != ENOENT) {
                log_debug_errno(-errno, "Failed to remove report %s/%s: %m", o->dir, name);
                return;
        }
        (void) fsync(o->dir_fd);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* A DIR listing the directory fd, which stays open and ours. */
static int opendir_fd(int fd, DIR **ret) {
        _cleanup_close_ int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;

        if (dup_fd < 0)
                return -errno;
        d = fdopendir(dup_fd);
        if (!d)
                return -errno;
        TAKE_FD(dup_fd);
        *ret = d;
        return 0;
}

/* Keep rejected/ at OUTBOX_REJECTED_MAX files: remove the oldest. */
static void rejected_trim(int fd) {
        for (;;) {
                _cleanup_(closedirp) DIR *d = NULL;
                char oldest[NAME_MAX + 1] = "";
                uint64_t oldest_mtime = UINT64_MAX;
                size_t n = 0;
                struct dirent *de;

                if (opendir_fd(fd, &d) < 0)
                        return;
                while ((de = readdir(d))) {
                        struct stat st;

                        if (de->d_name[0] == '.')
                                continue;
                        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        n++;
                        if (timespec_nsec(&st.st_mtim) < oldest_mtime) {
                                oldest_mtime = timespec_nsec(&st.st_mtim);
                                snprintf(oldest, sizeof(oldest), "%s", de->d_name);
                        }
                }
                if (n <= OUTBOX_REJECTED_MAX || !oldest[0] || unlinkat(fd, oldest, 0) < 0)
                        return;
        }
}

/* The server will never take this report: keep it for an admin in rejected/. */
static void outbox_reject(Outbox *o, OutboxItem *item, const char *why) {
        _cleanup_close_ int fd = -EBADF;

        log_struct_id(LOG_LEVEL_WARNING, OOB_MESSAGE_REPORT_REJECTED,
                      "Report %s refused by %s (%s), kept in %s/" OUTBOX_REJECTED_DIR "/%s", item->key,
                      o->endpoint, why, o->dir, item->name);

        if (mkdirat(o->dir_fd, OUTBOX_REJECTED_DIR, 0700) < 0 && errno != EEXIST)
                goto remove;
        fd = openat(o->dir_fd, OUTBOX_REJECTED_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                goto remove;
        if (renameat(o->dir_fd, item->name, fd, item->name) < 0)
                goto remove;
        (void) fsync(fd);
        (void) fsync(o->dir_fd);
        rejected_trim(fd);
        outbox_remove(o, item);
        return;
remove:
        /* Sending it again would only be refused again. */
        log_debug_errno(-errno, "Failed to move report %s to " OUTBOX_REJECTED_DIR "/, removing it: %m",
                        item->name);
        outbox_unlink(o, item->name);
        outbox_remove(o, item);
}

/* ---- sending ----------------------------------------------------------------- */

static void outbox_kick(Outbox *o);

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* 4xx answers that are about the endpoint or the moment, not the report. */
static bool http_4xx_is_transient(long status) {
        return status == 401 || status == 403 || status == 404 || status == 408 || status == 429;
}

static void attempt_end(Outbox *o) {
        o->job = fetch_job_cancel(o->job);
        o->attempt_timer = sd_event_source_disable_unref(o->attempt_timer);
        o->current = NULL;
        o->body = mfree(o->body);
        o->body_size = 0;
        o->url = mfree(o->url);
}

static uint64_t random_u64(void) {
        uint64_t v;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == sizeof(v))
                return v;
        /* No entropy yet this early at boot: jitter need not be strong. */
        return (uint64_t) time(NULL) * 6364136223846793005ULL + (uint64_t) getpid();
}

/* sd-event's default slack (250 ms) is fine for seconds, not for the
 * milliseconds tests use: a sixteenth of the delay, 1 ms to 250 ms. */
static uint64_t timer_accuracy(uint64_t delay) {
        return MIN(MAX(delay / 16, (uint64_t) 1000), (uint64_t) 250000);
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Outbox *o = userdata;

        o->retry_timer = sd_event_source_disable_unref(o->retry_timer);
        outbox_kick(o);
        return 0;
}

/* An attempt failed (or could not start): wait, then try the oldest again. */
static void outbox_retry_later(Outbox *o, int error, long http_status) {
        uint64_t ceiling = o->backoff_base, delay, now;
        int r;

        o->failures++;
        for (unsigned i = 1; i < o->failures && ceiling < o->backoff_cap; i++)
                ceiling = ceiling > o->backoff_cap / 2 ? o->backoff_cap : ceiling * 2;
        ceiling = MIN(ceiling, o->backoff_cap);
        delay = ceiling == UINT64_MAX ? random_u64() : random_u64() % (ceiling + 1);

        /* A wrong endpoint or credentials will not fix itself: say so once. */
        if (o->failures == 1 && (http_status == 401 || http_status == 403 || http_status == 404))
                log_warning("Report endpoint %s answered HTTP %ld; reports wait and are retried",
                            o->endpoint, http_status);
        else
                log_debug_errno(
                        error,
                        "Report delivery to %s failed (HTTP %ld, attempt %u): %m; retrying in %" PRIu64
                        " ms",
                        o->endpoint, http_status, o->failures, delay / 1000);

        assert(!o->retry_timer);
        r = sd_event_now(o->event, CLOCK_BOOTTIME, &now);
        if (r >= 0)
                r = sd_event_add_time(o->event, &o->retry_timer, CLOCK_BOOTTIME, now + delay,
                                      timer_accuracy(delay), on_retry_timer, o);
        if (r < 0)
                /* Without a timer nothing would ever send again: next queue or resume will. */
                log_debug_errno(r, "Failed to arm the report retry timer: %m");
        else
                (void) sd_event_source_set_description(o->retry_timer, "outbox-retry");
}

static int discard_sink(const void *data, size_t size, void *userdata) {
        return 0;
}

static void on_done(FetchJob *j, int error, long http_status, void *userdata) {
        Outbox *o = userdata;
        OutboxItem *item = o->current;
        char why[64];

        /* The fetcher owns the job: done() is its last use. */
        o->job = NULL;
        assert(item);
        attempt_end(o);

        if (http_status >= 200 && http_status < 300) {
                /* The server took it, whatever happened to the rest of its answer. */
                log_debug("Report %s delivered to %s (HTTP %ld)", item->key, o->endpoint, http_status);
                outbox_unlink(o, item->name);
                outbox_remove(o, item);
                o->failures = 0;
        } else if (http_status >= 400 && http_status < 500 && !http_4xx_is_transient(http_status)) {
                snprintf(why, sizeof(why), "HTTP %ld", http_status);
                outbox_reject(o, item, why);
                o->failures = 0;
        } else {
                outbox_retry_later(o, error < 0 ? error : -EIO, http_status);
                return;
        }
        outbox_kick(o);
}

static int on_attempt_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Outbox *o = userdata;

        attempt_end(o);
        outbox_retry_later(o, -ETIMEDOUT, 0);
        return 0;
}

/* Start sending the oldest report. > 0 started or waiting for a retry, 0
 * the item was dropped and the caller should look at the next one. */
static int outbox_start(Outbox *o) {
        OutboxItem *item = o->items[0];
        _cleanup_close_ int fd = -EBADF;
        uint64_t now;
        int r;

        assert(!o->job && !o->current);

        fd = openat(o->dir_fd, item->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0 && errno == ENOENT) {
                log_debug("Report %s/%s disappeared, forgetting it", o->dir, item->name);
                outbox_remove(o, item);
                return 0;
        }
        if (fd < 0)
                r = -errno;
        else
                r = read_full_fd(fd, OUTBOX_REPORT_MAX, &o->body, &o->body_size);
        if (r == -EFBIG) {
                outbox_reject(o, item, "over the report size cap, not sent");
                return 0;
        }
        if (r < 0) {
                outbox_retry_later(o, r, 0);
                return 1;
        }
        o->url = report_url(o->endpoint, item->key);
        if (!o->url) {
                attempt_end(o);
                outbox_retry_later(o, -ENOMEM, 0);
                return 1;
        }

        o->current = item;
        r = fetcher_start(o->fetcher,
                          &(const FetchRequest){
                                  .url = o->url,
                                  .max_size = OUTBOX_RESPONSE_MAX,
                                  .sink = discard_sink,
                                  .post_body = o->body,
                                  .post_size = o->body_size,
                                  .content_type = "application/json",
                                  .done = on_done,
                                  .userdata = o,
                          },
                          &o->job);
        if (r >= 0) {
                r = sd_event_now(o->event, CLOCK_BOOTTIME, &now);
                if (r >= 0)
                        r = sd_event_add_time(o->event, &o->attempt_timer, CLOCK_BOOTTIME,
                                              now + o->attempt_timeout, timer_accuracy(o->attempt_timeout),
                                              on_attempt_timeout, o);
        }
        if (r < 0) {
                attempt_end(o);
                outbox_retry_later(o, r, 0);
                return 1;
        }
        (void) sd_event_source_set_description(o->attempt_timer, "outbox-attempt");
        return 1;
}

static void outbox_kick(Outbox *o) {
        while (!o->job && !o->retry_timer && o->n_items > 0)
                if (outbox_start(o) > 0)
                        return;
}

/* Over the cap: drop the oldest reports, even one in flight. */
static void outbox_enforce_cap(Outbox *o) {
        while (o->n_items > o->max_reports) {
                OutboxItem *oldest = o->items[0];

                if (oldest == o->current)
                        attempt_end(o);
                log_struct_id(LOG_LEVEL_WARNING, OOB_MESSAGE_REPORT_DROPPED,
                              "Report outbox %s holds more than %zu reports: dropped the oldest, %s", o->dir,
                              o->max_reports, oldest->key);
                outbox_unlink(o, oldest->name);
                outbox_remove_at(o, 0);
        }
}

/* ---- the API ----------------------------------------------------------------- */

int outbox_new(sd_event *e, Fetcher *f, const char *outbox_dir, const char *endpoint_url, Outbox **ret) {
        _cleanup_(outbox_freep) Outbox *o = NULL;
        int r;

        assert_return(e, -EINVAL);
        assert_return(f, -EINVAL);
        assert_return(outbox_dir && outbox_dir[0], -EINVAL);
        assert_return(endpoint_url && endpoint_url[0] && !strchr(endpoint_url, '#'), -EINVAL);
        assert_return(ret, -EINVAL);

        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->dir_fd = -EBADF;
        o->event = sd_event_ref(e);
        o->fetcher = f;
        o->backoff_base = OUTBOX_BACKOFF_BASE_USEC;
        o->backoff_cap = OUTBOX_BACKOFF_CAP_USEC;
        o->attempt_timeout = OUTBOX_ATTEMPT_TIMEOUT_USEC;
        o->max_reports = OUTBOX_MAX_REPORTS;
        o->dir = strdup(outbox_dir);
        o->endpoint = strdup(endpoint_url);
        if (!o->dir || !o->endpoint)
                return -ENOMEM;

        /* Reports go out on the daemon's loop: the fetcher drives e (a no-op
         * when it already does, -EBUSY when it drives another loop). */
        r = fetcher_attach_event(f, e);
        if (r < 0)
                return r;

        r = mkdir_p(outbox_dir, 0700);
        if (r < 0)
                return r;
        o->dir_fd = open(outbox_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->dir_fd < 0)
                return -errno;

        *ret = TAKE_PTR(o);
        return 0;
}

Outbox *outbox_free(Outbox *o) {
        if (!o)
                return NULL;
        attempt_end(o);
        sd_event_source_disable_unref(o->retry_timer);
        for (size_t i = 0; i < o->n_items; i++)
                outbox_item_free(o->items[i]);
        free(o->items);
        if (o->dir_fd >= 0)
                close(o->dir_fd);
        sd_event_unref(o->event);
        free(o->dir);
        free(o->endpoint);
        free(o);
        return NULL;
}

int outbox_set_backoff(Outbox *o, uint64_t base_usec, uint64_t cap_usec) {
        assert_return(o, -EINVAL);

        base_usec = base_usec ?: OUTBOX_BACKOFF_BASE_USEC;
        cap_usec = cap_usec ?: OUTBOX_BACKOFF_CAP_USEC;
        assert_return(base_usec <= cap_usec, -EINVAL);
        o->backoff_base = base_usec;
        o->backoff_cap = cap_usec;
        return 0;
}

int outbox_set_attempt_timeout(Outbox *o, uint64_t usec) {
        assert_return(o, -EINVAL);

        o->attempt_timeout = usec ?: OUTBOX_ATTEMPT_TIMEOUT_USEC;
        return 0;
}

int outbox_set_max_reports(Outbox *o, size_t n) {
        assert_return(o, -EINVAL);

        o->max_reports = n ?: OUTBOX_MAX_REPORTS;
        outbox_enforce_cap(o);
        outbox_kick(o);
        return 0;
}

int outbox_queue(Outbox *o, const char *key, const char *json) {
        _cleanup_(outbox_item_freep) OutboxItem *item = NULL;
        _cleanup_free_ char *name = NULL, *body = NULL;
        size_t size;
        int r;

        assert_return(o, -EINVAL);
        assert_return(key, -EINVAL);
        assert_return(json, -EINVAL);

        if (!key_is_valid(key))
                return -EINVAL;
        name = key_to_filename(key);
        if (!name)
                return -ENOMEM;
        if (outbox_find(o, name) >= 0)
                return 0;

        /* A file from before (not resumed yet) is the first queue of this key. */
        r = outbox_item_new(o, name, key, &item);
        if (r >= 0) {
                r = outbox_insert(o, item);
                if (r < 0)
                        return r;
                TAKE_PTR(item);
                outbox_enforce_cap(o);
                outbox_kick(o);
                return 0;
        }
        if (r != -ENOENT)
                return r;

        r = report_body(key, json, &body, &size);
        if (r < 0)
                return r;
        r = write_file_atomic_at(o->dir_fd, name, body, size, 0600);
        if (r < 0)
                return r;
        outbox_stamp(o, name);
        r = outbox_item_new(o, name, key, &item);
        if (r >= 0)
                r = outbox_insert(o, item);
        if (r < 0) {
                /* Persisted: the next outbox_resume() sends it. */
                log_debug_errno(r, "Failed to queue report %s in memory: %m", key);
                return r;
        }
        TAKE_PTR(item);
        outbox_enforce_cap(o);
        outbox_kick(o);
        return 1;
}

static int item_compare(const void *a, const void *b) {
        const OutboxItem *x = *(OutboxItem *const *) a, *y = *(OutboxItem *const *) b;

        if (x->mtime != y->mtime)
                return x->mtime < y->mtime ? -1 : 1;
        return strcmp(x->name, y->name);
}

int outbox_resume(Outbox *o) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ OutboxItem **found = NULL; /* items freed below */
        size_t n_found = 0, added = 0;
        struct dirent *de;
        int r;

        assert_return(o, -EINVAL);

        r = opendir_fd(o->dir_fd, &d);
        if (r < 0)
                return r;

        while ((de = readdir(d))) {
                _cleanup_(outbox_item_freep) OutboxItem *item = NULL;
                OutboxItem **a;
                int k;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                /* write_file_atomic_at()'s temp files: the writer died before
                 * the rename (writes are synchronous, none is in progress). */
                if (strneq(de->d_name, ".#", 2)) {
                        (void) unlinkat(o->dir_fd, de->d_name, 0);
                        continue;
                }
                if (outbox_find(o, de->d_name) >= 0)
                        continue;
                k = outbox_item_new(o, de->d_name, NULL, &item);
                if (k == -ENOMEM) {
                        r = k;
                        break;
                }
                if (k < 0) {
                        /* Not one of ours (rejected/, a foreign or odd name): leave it. */
                        if (k != -EINVAL)
                                log_debug_errno(k, "Ignoring %s/%s: %m", o->dir, de->d_name);
                        continue;
                }
                a = reallocarray(found, n_found + 1, sizeof(OutboxItem *));
                if (!a) {
                        r = -ENOMEM;
                        break;
                }
                found = a;
                found[n_found++] = TAKE_PTR(item);
        }

        /* Oldest first; the same mtime in name order, whatever readdir's order. */
        if (n_found > 0)
                qsort(found, n_found, sizeof(OutboxItem *), item_compare);
        for (size_t i = 0; i < n_found; i++) {
                if (r >= 0) {
                        int k = outbox_insert(o, found[i]);

                        if (k >= 0) {
                                added++;
                                continue;
                        }
                        r = k;
                }
                outbox_item_free(found[i]);
        }

        outbox_enforce_cap(o);
        outbox_kick(o);
        if (r < 0)
                return r;
        return (int) MIN(added, (size_t) INT_MAX);
}

size_t outbox_pending(const Outbox *o) {
        return o ? o->n_items : 0;
}

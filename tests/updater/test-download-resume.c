/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Target downloads on the loop that resume: an interrupted download leaves
 * NAME.partial, the next one asks nginx for the rest only (a 206 in the
 * access log, with exactly the missing bytes), a server that ignores Range
 * is caught and the download starts over, and a partial file whose bytes
 * were changed fails the final verification and is removed. The repository
 * is a scenario repository (tests/updater/tuf-repo.h) served by nginx.
 */

#include <dirent.h>
#include <inttypes.h>
#include <sys/file.h>
#include <time.h>

#include "updater.h"
#include "updater/tuf-repo.h"

#define TARGET "payloads/big.bin"
#define LOCAL "payloads%2Fbig.bin"
#define PARTIAL LOCAL ".partial"
#define TARGET_SIZE (96U * 1024U)

static Nginx nginx;
static char work[PATH_MAX]; /* per test: md/ and dl/ */
static char md[PATH_MAX + 8], dl[PATH_MAX + 8];
static char name[64]; /* the repository's folder on the server */
static char metadata_url[512], targets_url[512], slow_targets_url[512];
static char served_path[700], slow_served_path[700]; /* the target in nginx's log */
static Repo repo;
static uint8_t content[TARGET_SIZE];
/* A client's asynchronous calls all run on one loop: one per test. */
static sd_event *loop;

static void nginx_setup(void) {
        uint64_t x = 0x9e3779b97f4a7c15ULL;

        /* bytes that differ everywhere, so a splice or a shift shows */
        for (size_t i = 0; i < TARGET_SIZE; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                content[i] = (uint8_t) x;
        }
        nginx_start(&nginx);
}

static void nginx_teardown(void) {
        nginx_stop(&nginx);
}

static void setup(void) {
        char dir[PATH_MAX * 2];
        _cleanup_free_ char *root = NULL;

        strcpy(work, "/tmp/oob-test-download-resume.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(work));
        snprintf(md, sizeof(md), "%s/md", work);
        snprintf(dl, sizeof(dl), "%s/dl", work);
        ck_assert_int_eq(mkdir_p(dl, 0755), 0);
        snprintf(name, sizeof(name), "%s", strrchr(work, '/') + 1);
        snprintf(metadata_url, sizeof(metadata_url), "%s/%s/metadata", nginx.https, name);
        snprintf(targets_url, sizeof(targets_url), "%s/%s/targets", nginx.https, name);
        snprintf(slow_targets_url, sizeof(slow_targets_url), "%s/slow/%s/targets", nginx.https, name);
        snprintf(served_path, sizeof(served_path), "/%s/targets/" TARGET, name);
        snprintf(slow_served_path, sizeof(slow_served_path), "/slow/%s/targets/" TARGET, name);

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, false);
        repo_add_target(&repo, 0, TARGET, content, sizeof(content));
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);
        root = path_join(repo.metadata, "1.root.json");
        ck_assert_int_eq(tuf_client_init_root(md, root), 0);
        ck_assert_int_ge(sd_event_new(&loop), 0);
}

static void teardown(void) {
        char dir[PATH_MAX * 2];

        repo_done(&repo);
        loop = sd_event_unref(loop);
        fixture_rm_rf(work);
        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        fixture_rm_rf(dir);
}

/* ---- helpers ------------------------------------------------------------------- */

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* A refreshed client whose targets come from base, and our target in it. */
static TufClient *client_new(const char *base, const TufTargetFile **ret_t) {
        TufClientOptions o = {
                .metadata_dir = md,
                .metadata_url = metadata_url,
                .target_base_url = base,
                .fetch.ca_file = nginx.ca,
        };
        TufClient *c = NULL;

        ck_assert_int_eq(tuf_client_new(&o, &c), 0);
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, TARGET, ret_t), 0);
        ck_assert_uint_eq((*ret_t)->length, TARGET_SIZE);
        return c;
}

typedef struct Outcome {
        unsigned done_calls;
        int error;
        unsigned progress_calls;
        uint64_t first_progress, last_progress, total;
        bool backwards;               /* progress went down */
        TufClient **free_on_progress; /* the daemon stops mid-download */
        bool freed;
} Outcome;

static void on_done(TufClient *c, int error, void *userdata) {
        Outcome *o = userdata;

        o->done_calls++;
        o->error = error;
}

static void on_progress(TufClient *c, uint64_t done, uint64_t total, void *userdata) {
        Outcome *o = userdata;

        if (o->progress_calls++ == 0)
                o->first_progress = done;
        else if (done < o->last_progress)
                o->backwards = true;
        o->last_progress = done;
        o->total = total;
        if (o->free_on_progress && done > 0) {
                ck_assert_ptr_eq(*o->free_on_progress, c);
                *o->free_on_progress = tuf_client_free(c);
                o->free_on_progress = NULL;
                o->freed = true;
        }
}

static void run_until(sd_event *e, const bool *flag, const unsigned *count, double max_sec) {
        double deadline = now_sec() + max_sec;

        while (!(flag && *flag) && !(count && *count > 0)) {
                ck_assert_msg(now_sec() < deadline, "not done within %.0f s", max_sec);
                ck_assert_int_ge(sd_event_run(e, 100 * 1000), 0);
        }
}

/* Download on the test's loop; the outcome in *o. */
static void download(TufClient *c, const TufTargetFile *t, Outcome *o) {
        sd_event *e = loop;

        ck_assert_int_eq(tuf_client_download_target_async(c, e, t, dl, on_progress, on_done, o), 0);
        ck_assert_uint_eq(o->done_calls, 0); /* never from inside the call */
        run_until(e, NULL, &o->done_calls, 30);
        /* exactly once */
        for (int i = 0; i < 5; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        ck_assert_uint_eq(o->done_calls, 1);
}

static bool file_exists(const char *dir, const char *file) {
        _cleanup_free_ char *p = path_join(dir, file);

        return access(p, F_OK) == 0;
}

static uint8_t *file_read(const char *dir, const char *file, size_t *ret_size) {
        _cleanup_free_ char *p = path_join(dir, file);
        char *data = NULL;

        ck_assert_int_eq(read_full_file(p, 64 * 1024 * 1024, &data, ret_size), 0);
        return (uint8_t *) data;
}

static void write_partial(const void *data, size_t size) {
        fixture_write(dl, PARTIAL, data, size);
}

static void assert_final_file(void) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t size;

        data = file_read(dl, LOCAL, &size);
        ck_assert_uint_eq(size, TARGET_SIZE);
        ck_assert(memcmp(data, content, TARGET_SIZE) == 0);
        ck_assert(!file_exists(dl, PARTIAL));
}

/* nginx writes a request's log line once it is over; for a request the
 * client gave up, when nginx notices. Wait for it (bounded). */
static void nginx_wait(const char *path, int status, unsigned count) {
        unsigned n = 0;

        for (int i = 0; i < 500; i++) {
                (void) nginx_bytes(&nginx, path, status, &n);
                if (n >= count)
                        return;
                usleep(10000);
        }
        ck_abort_msg("nginx did not log %u requests of %s with %d", count, path, status);
}

/* ---- interruption, then resume ------------------------------------------------------ */

/* The first server breaks off after N bytes (Content-Length promised more):
 * the partial file keeps them, and nginx is asked for the rest only. */
START_TEST(test_resume_after_truncated_body) {
        _cleanup_(tuf_client_freep) TufClient *a = NULL, *b = NULL;
        _cleanup_free_ uint8_t *partial = NULL;
        const size_t n = 20000;
        const TufTargetFile *t;
        char head[256], base[64];
        Outcome first = {}, second = {};
        MiniServer m = {};
        unsigned count = 0;
        size_t size;
        uint64_t bytes;

        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %u\r\nConnection: close\r\n\r\n",
                 TARGET_SIZE);
        mini_server_start_replies(&m, &(MiniReply){.head = head, .body = content, .body_bytes = n}, 1, NULL);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", m.port);
        a = client_new(base, &t);
        download(a, t, &first);
        mini_server_stop(&m);

        /* a network error: the bytes received stay, nothing under the final name */
        ck_assert_int_lt(first.error, 0);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(a), "download from"));
        ck_assert(!file_exists(dl, LOCAL));
        partial = file_read(dl, PARTIAL, &size);
        ck_assert_uint_eq(size, n);
        ck_assert(memcmp(partial, content, n) == 0);

        b = client_new(targets_url, &t);
        download(b, t, &second);
        ck_assert_int_eq(second.error, 0);
        assert_final_file();

        /* nginx served the missing bytes only, as a range */
        nginx_wait(served_path, 206, 1);
        bytes = nginx_bytes(&nginx, served_path, 206, &count);
        ck_assert_uint_eq(count, 1);
        ck_assert_uint_eq(bytes, TARGET_SIZE - n);
        ck_assert_uint_eq(nginx_count(&nginx, served_path, 200), 0);

        /* progress started at the resume point and ended at the length */
        ck_assert_uint_ge(second.progress_calls, 1);
        ck_assert_uint_eq(second.first_progress, n);
        ck_assert_uint_eq(second.last_progress, TARGET_SIZE);
        ck_assert_uint_eq(second.total, TARGET_SIZE);
        ck_assert(!second.backwards);
}
END_TEST

/* The daemon stops in the middle of a download (the client is freed from
 * the progress callback, no done() follows): both requests are nginx's, and
 * together they served about the file's size, not more. */
START_TEST(test_resume_after_stop) {
        _cleanup_(tuf_client_freep) TufClient *a = NULL, *b = NULL;
        _cleanup_free_ uint8_t *partial = NULL;
        sd_event *e = loop;
        const TufTargetFile *t;
        Outcome first = {}, second = {};
        uint64_t first_bytes, second_bytes;
        unsigned count = 0;
        size_t p;

        /* /slow/: 64 bytes a second, so the stop comes early in the body */
        a = client_new(slow_targets_url, &t);
        first.free_on_progress = &a;
        ck_assert_int_eq(tuf_client_download_target_async(a, e, t, dl, on_progress, on_done, &first), 0);
        run_until(e, &first.freed, NULL, 20);
        ck_assert_ptr_null(a);
        for (int i = 0; i < 5; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        ck_assert_uint_eq(first.done_calls, 0);

        ck_assert(!file_exists(dl, LOCAL));
        partial = file_read(dl, PARTIAL, &p);
        ck_assert_uint_gt(p, 0);
        ck_assert_uint_lt(p, TARGET_SIZE);
        ck_assert(memcmp(partial, content, p) == 0);

        b = client_new(targets_url, &t);
        download(b, t, &second);
        ck_assert_int_eq(second.error, 0);
        assert_final_file();
        ck_assert_uint_eq(second.first_progress, p);

        nginx_wait(slow_served_path, 200, 1);
        nginx_wait(served_path, 206, 1);
        first_bytes = nginx_bytes(&nginx, slow_served_path, 200, NULL);
        second_bytes = nginx_bytes(&nginx, served_path, 206, &count);
        ck_assert_uint_eq(count, 1);
        ck_assert_uint_eq(second_bytes, TARGET_SIZE - p);
        ck_assert_uint_ge(first_bytes, p);
        /* what nginx sent beyond what we kept: at most a second at 64 B/s */
        ck_assert_uint_le(first_bytes + second_bytes, TARGET_SIZE + 128);
        ck_assert_uint_eq(nginx_count(&nginx, served_path, 200), 0);
}
END_TEST

/* The server answers 200 with the whole file to "Range: bytes=N-": caught
 * before a byte of it is appended, emptied, and fetched again from 0. */
START_TEST(test_server_ignores_range) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *record = NULL, *req0 = NULL, *req1 = NULL, *p0 = NULL, *p1 = NULL;
        const size_t n = 30000;
        const TufTargetFile *t;
        char head[256], base[64], range[64];
        Outcome o = {};
        MiniServer m = {};
        size_t size;

        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %u\r\nConnection: close\r\n\r\n",
                 TARGET_SIZE);
        MiniReply replies[] = {
                {.head = head, .body = content, .body_bytes = TARGET_SIZE},
                {.head = head, .body = content, .body_bytes = TARGET_SIZE},
        };
        ck_assert_int_ge(asprintf(&record, "%s/request", work), 0);
        mini_server_start_replies(&m, replies, 2, record);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", m.port);

        write_partial(content, n);
        c = client_new(base, &t);
        download(c, t, &o);
        mini_server_stop(&m);

        ck_assert_int_eq(o.error, 0);
        assert_final_file();
        snprintf(range, sizeof(range), "\r\nRange: bytes=%zu-\r\n", n);
        ck_assert_int_ge(asprintf(&p0, "%s.0", record), 0);
        ck_assert_int_ge(asprintf(&p1, "%s.1", record), 0);
        ck_assert_int_eq(read_full_file(p0, 65536, &req0, &size), 0);
        ck_assert_int_eq(read_full_file(p1, 65536, &req1, &size), 0);
        ck_assert_ptr_nonnull(strcasestr(req0, range));
        ck_assert_ptr_null(strcasestr(req1, "\r\nRange:"));
        /* progress went back to 0 for the second request */
        ck_assert(o.backwards);
        ck_assert_uint_eq(o.last_progress, TARGET_SIZE);
}
END_TEST

/* A server that ignores Range and serves other bytes: started over once,
 * and what it sent is still verified (and refused, leaving nothing). */
START_TEST(test_server_ignores_range_wrong_bytes) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ uint8_t *evil = NULL;
        const TufTargetFile *t;
        char head[256], base[64];
        Outcome o = {};
        MiniServer m = {};

        evil = malloc(TARGET_SIZE);
        ck_assert_ptr_nonnull(evil);
        memcpy(evil, content, TARGET_SIZE);
        evil[TARGET_SIZE - 1] ^= 1;
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %u\r\nConnection: close\r\n\r\n",
                 TARGET_SIZE);
        MiniReply replies[] = {
                {.head = head, .body = evil, .body_bytes = TARGET_SIZE},
                {.head = head, .body = evil, .body_bytes = TARGET_SIZE},
        };
        mini_server_start_replies(&m, replies, 2, NULL);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", m.port);

        write_partial(content, 1000);
        c = client_new(base, &t);
        download(c, t, &o);
        mini_server_stop(&m);

        ck_assert_int_eq(o.error, -EBADMSG);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(c), "verifying the download from"));
        ck_assert(!file_exists(dl, LOCAL));
        ck_assert(!file_exists(dl, PARTIAL));
}
END_TEST

/* Bytes of the partial file were changed: the resumed download fails its
 * final verification, the partial file goes, the next attempt starts over
 * (a 200 for the whole file) and succeeds. */
START_TEST(test_corrupted_partial) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ uint8_t *bad = NULL;
        const size_t n = 40000;
        const TufTargetFile *t;
        Outcome first = {}, second = {};
        unsigned count = 0;

        bad = malloc(n);
        ck_assert_ptr_nonnull(bad);
        memcpy(bad, content, n);
        bad[n / 2] ^= 0x40;
        write_partial(bad, n);

        c = client_new(targets_url, &t);
        download(c, t, &first);
        ck_assert_int_eq(first.error, -EBADMSG);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(c), "verifying the download from"));
        ck_assert(!file_exists(dl, LOCAL));
        ck_assert(!file_exists(dl, PARTIAL));
        nginx_wait(served_path, 206, 1);
        ck_assert_uint_eq(nginx_bytes(&nginx, served_path, 206, NULL), TARGET_SIZE - n);

        download(c, t, &second);
        ck_assert_int_eq(second.error, 0);
        assert_final_file();
        nginx_wait(served_path, 200, 1);
        ck_assert_uint_eq(nginx_bytes(&nginx, served_path, 200, &count), TARGET_SIZE);
        ck_assert_uint_eq(count, 1);
        ck_assert_uint_eq(second.first_progress, 0);
}
END_TEST

/* A complete, correct partial file needs no request at all; one longer than
 * the signed length is of no use and is replaced by a whole download (here
 * through the synchronous call, which runs the same code). */
START_TEST(test_partial_complete_or_too_long) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ uint8_t *longer = NULL;
        _cleanup_free_ char *path = NULL;
        const TufTargetFile *t;
        Outcome o = {};
        bool cached = true;

        write_partial(content, TARGET_SIZE);
        c = client_new(targets_url, &t);
        download(c, t, &o);
        ck_assert_int_eq(o.error, 0);
        assert_final_file();

        ck_assert_int_eq(unlink(path = path_join(dl, LOCAL)), 0);
        longer = malloc(TARGET_SIZE + 100);
        ck_assert_ptr_nonnull(longer);
        memcpy(longer, content, TARGET_SIZE);
        memset(longer + TARGET_SIZE, 'z', 100);
        write_partial(longer, TARGET_SIZE + 100);
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, &cached), 0);
        ck_assert(!cached);
        assert_final_file();

        nginx_wait(served_path, 200, 1);
        ck_assert_uint_eq(nginx_count(&nginx, served_path, 200), 1);
        ck_assert_uint_eq(nginx_count(&nginx, served_path, 206), 0);
}
END_TEST

/* The synchronous call resumes too. */
START_TEST(test_sync_download_resumes) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *path = NULL;
        const TufTargetFile *t;
        bool cached = true;

        write_partial(content, 5000);
        c = client_new(targets_url, &t);
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, &path, &cached), 0);
        ck_assert(!cached);
        ck_assert_str_eq(strrchr(path, '/') + 1, LOCAL);
        assert_final_file();
        nginx_wait(served_path, 206, 1);
        ck_assert_uint_eq(nginx_bytes(&nginx, served_path, 206, NULL), TARGET_SIZE - 5000);
}
END_TEST

/* A verified file under the final name is not fetched again; one that does
 * not verify is replaced. */
START_TEST(test_cached_final_file) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ uint8_t *bad = NULL;
        const TufTargetFile *t;
        Outcome first = {}, second = {};

        fixture_write(dl, LOCAL, content, TARGET_SIZE);
        c = client_new(targets_url, &t);
        download(c, t, &first);
        ck_assert_int_eq(first.error, 0);
        assert_final_file();

        bad = malloc(TARGET_SIZE);
        ck_assert_ptr_nonnull(bad);
        memcpy(bad, content, TARGET_SIZE);
        bad[0] ^= 1;
        fixture_write(dl, LOCAL, bad, TARGET_SIZE);
        download(c, t, &second);
        ck_assert_int_eq(second.error, 0);
        assert_final_file();

        nginx_wait(served_path, 200, 1);
        ck_assert_uint_eq(nginx_count(&nginx, served_path, 200), 1);
}
END_TEST

/* Two downloads of one target into one directory at the same time: the
 * second finds the partial file locked and fails, the first is unharmed. */
START_TEST(test_partial_locked) {
        _cleanup_(tuf_client_freep) TufClient *a = NULL, *b = NULL;
        const TufTargetFile *ta, *tb;
        sd_event *e = loop;
        Outcome oa = {}, ob = {};

        a = client_new(targets_url, &ta);
        b = client_new(targets_url, &tb);
        ck_assert_int_eq(tuf_client_download_target_async(a, e, ta, dl, NULL, on_done, &oa), 0);
        ck_assert_int_eq(tuf_client_download_target_async(b, e, tb, dl, NULL, on_done, &ob), 0);
        /* one operation at a time per client */
        ck_assert_int_eq(tuf_client_download_target_async(a, e, ta, dl, NULL, on_done, &oa), -EBUSY);
        ck_assert_int_eq(tuf_client_refresh_async(a, e, on_done, &oa), -EBUSY);
        run_until(e, NULL, &oa.done_calls, 20);
        run_until(e, NULL, &ob.done_calls, 20);

        ck_assert_int_eq(oa.error, 0);
        ck_assert_int_eq(ob.error, -EBUSY);
        ck_assert_uint_eq(oa.done_calls, 1);
        ck_assert_uint_eq(ob.done_calls, 1);
        assert_final_file();
}
END_TEST

static Suite *download_resume_suite(void) {
        Suite *s = suite_create("download-resume");
        TCase *tc = tcase_create("resume");

        tcase_set_timeout(tc, 60);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_resume_after_truncated_body);
        tcase_add_test(tc, test_resume_after_stop);
        tcase_add_test(tc, test_server_ignores_range);
        tcase_add_test(tc, test_server_ignores_range_wrong_bytes);
        tcase_add_test(tc, test_corrupted_partial);
        tcase_add_test(tc, test_partial_complete_or_too_long);
        tcase_add_test(tc, test_sync_download_resumes);
        tcase_add_test(tc, test_cached_final_file);
        tcase_add_test(tc, test_partial_locked);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(download_resume_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

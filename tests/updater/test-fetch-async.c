/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fetcher on an sd-event loop, as oobd drives it: concurrent transfers,
 * cancel (also from the callbacks), POST, Range resume and its refusals,
 * the slow-retrieval defences on the loop, and a loop that keeps serving
 * its other sources while a transfer runs. Against nginx on loopback
 * (tests/nginx-fixture) and the one-shot server of fixture.h for what nginx
 * will not do (record a POST body, ignore Range, lie in Content-Range).
 */

#include <inttypes.h>
#include <time.h>

#include "updater.h"
#include "updater/fixture.h"

static Nginx nginx;
static char tmpdir[PATH_MAX];

static const char hello[] = "hello world\n";

static void nginx_setup(void) {
        _cleanup_free_ char *big = NULL;
        char small[100];

        nginx_start(&nginx);
        fixture_write(nginx.www, "hello.txt", hello, strlen(hello));
        big = malloc(4 * 1024 * 1024);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < 4 * 1024 * 1024; i++)
                big[i] = (char) ('a' + i % 26);
        fixture_write(nginx.www, "four.bin", big, 4 * 1024 * 1024);
        fixture_write(nginx.www, "big.bin", big, 1024 * 1024);
        memset(small, 's', sizeof(small));
        fixture_write(nginx.www, "small.bin", small, sizeof(small));
}

static void nginx_teardown(void) {
        nginx_stop(&nginx);
}

static void setup(void) {
        strcpy(tmpdir, "/tmp/oob-test-fetch-async.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        fixture_rm_rf(tmpdir);
}

static char *url(const char *base, const char *path) {
        char *s;

        ck_assert_int_ge(asprintf(&s, "%s/%s", base, path), 0);
        return s;
}

static double now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static Fetcher *new_fetcher(const FetchOptions *o, sd_event *e) {
        Fetcher *f = NULL;

        ck_assert_int_eq(fetcher_new(o, &f), 0);
        if (e)
                ck_assert_int_eq(fetcher_attach_event(f, e), 0);
        return f;
}

static sd_event *new_loop(void) {
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        return e;
}

static void sd_event_unrefp_(sd_event **e) {
        if (*e)
                sd_event_unref(*e);
}
#define _cleanup_loop_ _cleanup_(sd_event_unrefp_)

/* One transfer's outcome and what its sink saw. */
typedef struct Transfer {
        FetchJob *job;
        Fetcher *fetcher;
        sd_event *event;
        char *data;
        size_t size;
        unsigned sink_calls;
        unsigned done_calls;
        int error;
        long status;
        double done_at;
        uint64_t progress_received, progress_total; /* as seen at the last sink call */
        /* Misbehaviour on request: */
        FetchJob **cancel_in_sink; /* cancel this job from the sink */
        bool free_fetcher_in_done;
} Transfer;

static int transfer_sink(const void *data, size_t size, void *userdata) {
        Transfer *t = userdata;
        char *p = realloc(t->data, t->size + size + 1);

        ck_assert_ptr_nonnull(p);
        memcpy(p + t->size, data, size);
        t->data = p;
        t->size += size;
        t->data[t->size] = 0;
        t->sink_calls++;
        fetch_job_progress(t->job, &t->progress_received, &t->progress_total);
        if (t->cancel_in_sink) {
                *t->cancel_in_sink = fetch_job_cancel(*t->cancel_in_sink);
                t->cancel_in_sink = NULL;
        }
        return 0;
}

static void transfer_done(FetchJob *j, int error, long status, void *userdata) {
        Transfer *t = userdata;

        ck_assert_ptr_eq(j, t->job);
        t->done_calls++;
        t->error = error;
        t->status = status;
        t->done_at = now_sec();
        t->job = NULL;
        /* A done() may cancel its own job: a no-op, it is freed afterwards. */
        ck_assert_ptr_null(fetch_job_cancel(j));
        if (t->free_fetcher_in_done)
                t->fetcher = fetcher_free(t->fetcher);
}

static void transfer_done_free(Transfer *t) {
        free(t->data);
}

static void transfer_start(Fetcher *f, sd_event *e, Transfer *t, const FetchRequest *extra) {
        FetchRequest r = *extra;

        t->fetcher = f;
        t->event = e;
        r.sink = r.sink ?: transfer_sink;
        r.done = transfer_done;
        r.userdata = t;
        ck_assert_int_eq(fetcher_start(f, &r, &t->job), 0);
        ck_assert_ptr_nonnull(t->job);
}

/* Run e until every transfer is done (or the deadline passed: a failure). */
static void run_until_done(sd_event *e, Transfer *const *t, size_t n, double max_sec) {
        double deadline = now_sec() + max_sec;

        for (;;) {
                bool all = true;

                for (size_t i = 0; i < n; i++)
                        all = all && t[i]->done_calls > 0;
                if (all)
                        return;
                ck_assert_msg(now_sec() < deadline, "transfers not done within %.0f s", max_sec);
                ck_assert_int_ge(sd_event_run(e, 100 * 1000), 0);
        }
}

/* Run e for sec seconds. */
static void run_for(sd_event *e, double sec) {
        double end = now_sec() + sec;

        while (now_sec() < end)
                ck_assert_int_ge(sd_event_run(e, 50 * 1000), 0);
}

/* A server that sends size bytes of 'x', 10 every 100 ms (nginx's /slow/
 * spends its first seconds on the headers). */
static void trickle_start(MiniServer *m, uint64_t size, char *ret_url, size_t n) {
        static char head[128];

        snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Length: %" PRIu64 "\r\nConnection: close\r\n\r\n", size);
        mini_server_start_replies(
                m, &(MiniReply){.head = head, .body_bytes = size, .chunk = 10, .delay_ms = 100}, 1, NULL);
        snprintf(ret_url, n, "http://127.0.0.1:%d/trickle", m->port);
}

/* ---- the API's rules -------------------------------------------------------------- */

START_TEST(test_start_needs_attach) {
        _cleanup_loop_ sd_event *e = new_loop(), *other = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){}, NULL);
        FetchJob *j = NULL;

        ck_assert_int_eq(fetcher_start(f, &(FetchRequest){.url = "https://127.0.0.1/x"}, &j), -EINVAL);
        ck_assert_int_eq(fetcher_attach_event(f, e), 0);
        ck_assert_int_eq(fetcher_attach_event(f, e), 0); /* again: a no-op */
        ck_assert_int_eq(fetcher_attach_event(f, other), -EBUSY);
        ck_assert_ptr_null(fetch_job_cancel(NULL));
}
END_TEST

/* Refused by policy: fetcher_start() says so, done() never comes. */
START_TEST(test_policy_refused_at_start) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){}, e);
        FetchJob *j = NULL;

        ck_assert_int_eq(fetcher_start(f, &(FetchRequest){.url = "http://192.0.2.1/x"}, &j),
                         -EPROTONOSUPPORT);
        ck_assert_int_eq(fetcher_start(f, &(FetchRequest){.url = "file:///etc/passwd"}, &j),
                         -EPROTONOSUPPORT);
        ck_assert_int_eq(fetcher_start(f, &(FetchRequest){.url = "no scheme"}, &j), -EINVAL);
        ck_assert_ptr_null(j);
        /* POST and Range together make no sense */
        ck_assert_int_eq(fetcher_start(f,
                                       &(FetchRequest){.url = "https://127.0.0.1/x",
                                                       .post_body = "x",
                                                       .post_size = 1,
                                                       .resume_from = 5},
                                       &j),
                         -EINVAL);
        /* a header cannot be smuggled through the content type */
        ck_assert_int_eq(fetcher_start(f,
                                       &(FetchRequest){.url = "https://127.0.0.1/x",
                                                       .post_body = "x",
                                                       .post_size = 1,
                                                       .content_type = "text/plain\r\nX-Evil: 1"},
                                       &j),
                         -EINVAL);
}
END_TEST

/* ---- concurrency and the loop ---------------------------------------------------------- */

START_TEST(test_two_concurrent_transfers) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *fast = url(nginx.https, "four.bin");
        MiniServer m = {};
        Transfer a = {}, b = {};
        char slow[128];

        /* Both started before the loop runs: a trickles in for a second
         * while b (4 MiB) completes, so b is done first although started
         * second. */
        trickle_start(&m, 100, slow, sizeof(slow));
        transfer_start(f, e, &a, &(FetchRequest){.url = slow, .max_size = 1000});
        transfer_start(f, e, &b, &(FetchRequest){.url = fast, .max_size = 8 * 1024 * 1024});
        run_until_done(e, (Transfer *[]){&a, &b}, 2, 20);
        mini_server_stop(&m);

        ck_assert_int_eq(a.error, 0);
        ck_assert_int_eq(a.status, 200);
        ck_assert_uint_eq(a.size, 100);
        /* Piece by piece: ten 10-byte pieces 100 ms apart. A loaded loop (the
         * 4 MiB transfer under ASan) may read several at once, so not ten. */
        ck_assert_uint_ge(a.sink_calls, 2);
        ck_assert_int_eq(b.error, 0);
        ck_assert_uint_eq(b.size, 4 * 1024 * 1024);
        ck_assert_int_eq(b.data[26], 'a');
        ck_assert_uint_eq(a.done_calls, 1);
        ck_assert_uint_eq(b.done_calls, 1);
        ck_assert_double_lt(b.done_at, a.done_at);
        /* the total was announced, and counted */
        ck_assert_uint_eq(b.progress_total, 4 * 1024 * 1024);
        ck_assert_uint_eq(b.progress_received, 4 * 1024 * 1024);
        transfer_done_free(&a);
        transfer_done_free(&b);
}
END_TEST

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        unsigned *ticks = userdata;

        (*ticks)++;
        ck_assert_int_ge(sd_event_source_set_time(s, usec + 100 * 1000), 0);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

/* The loop is not blocked while a transfer runs: a timer of its own keeps
 * firing during a slow transfer. */
START_TEST(test_loop_not_blocked) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *slow = url(nginx.https, "slow/small.bin");
        sd_event_source *tick = NULL;
        unsigned ticks = 0, ticks_at_done;
        uint64_t now;
        Transfer a = {};

        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &now), 0);
        ck_assert_int_ge(
                sd_event_add_time(e, &tick, CLOCK_MONOTONIC, now + 100 * 1000, 1000, on_tick, &ticks), 0);
        transfer_start(f, e, &a, &(FetchRequest){.url = slow, .max_size = 1000});
        run_until_done(e, (Transfer *[]){&a}, 1, 20);
        ticks_at_done = ticks;
        sd_event_source_disable_unref(tick);

        ck_assert_int_eq(a.error, 0);
        ck_assert_uint_eq(a.size, 100);
        /* 100 bytes at 64 B/s: more than a second, ten ticks a second */
        ck_assert_uint_ge(ticks_at_done, 5);
        /* and the sink was fed piece by piece while the loop went on */
        ck_assert_uint_ge(a.sink_calls, 2);
        transfer_done_free(&a);
}
END_TEST

/* ---- cancel ------------------------------------------------------------------------------ */

static int on_cancel_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        FetchJob **j = userdata;

        *j = fetch_job_cancel(*j);
        return 0;
}

START_TEST(test_cancel) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *fast = url(nginx.https, "hello.txt");
        Transfer a = {}, b = {}, c = {}, d = {};
        sd_event_source *s = NULL;
        MiniServer m = {};
        char slow[128];
        uint64_t now;

        /* before the loop ever ran */
        transfer_start(f, e, &a, &(FetchRequest){.url = fast, .max_size = 1000});
        a.job = fetch_job_cancel(a.job);
        ck_assert_ptr_null(a.job);

        /* while running, from a timer of the loop */
        trickle_start(&m, 1000, slow, sizeof(slow));
        transfer_start(f, e, &b, &(FetchRequest){.url = slow, .max_size = 1000});
        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &now), 0);
        ck_assert_int_ge(
                sd_event_add_time(e, &s, CLOCK_MONOTONIC, now + 350 * 1000, 1000, on_cancel_timer, &b.job),
                0);

        /* and the fetcher goes on with other work */
        transfer_start(f, e, &c, &(FetchRequest){.url = fast, .max_size = 1000});
        run_until_done(e, (Transfer *[]){&c}, 1, 10);
        run_for(e, 1.0);
        mini_server_stop(&m);
        ck_assert_ptr_null(b.job);
        ck_assert_uint_ge(b.sink_calls, 1); /* it had started */
        ck_assert_uint_lt(b.size, 1000);

        transfer_start(f, e, &d, &(FetchRequest){.url = fast, .max_size = 1000});
        run_until_done(e, (Transfer *[]){&d}, 1, 10);
        run_for(e, 0.5);

        ck_assert_uint_eq(a.done_calls, 0);
        ck_assert_uint_eq(a.sink_calls, 0);
        ck_assert_uint_eq(b.done_calls, 0);
        ck_assert_int_eq(c.error, 0);
        ck_assert_str_eq(c.data, hello);
        ck_assert_int_eq(d.error, 0);
        sd_event_source_disable_unref(s);
        transfer_done_free(&b);
        transfer_done_free(&c);
        transfer_done_free(&d);
}
END_TEST

/* From inside libcurl (a sink) a cancel is deferred: the job gets no more
 * data and no done(), and its neighbours are not disturbed. */
START_TEST(test_cancel_from_sink) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *big = url(nginx.https, "four.bin"), *fast = url(nginx.https, "big.bin");
        Transfer self = {}, victim = {}, other = {};
        MiniServer m = {};
        char slow[128];

        trickle_start(&m, 1000, slow, sizeof(slow));
        transfer_start(f, e, &self, &(FetchRequest){.url = big, .max_size = 8 * 1024 * 1024});
        self.cancel_in_sink = &self.job;
        transfer_start(f, e, &victim, &(FetchRequest){.url = slow, .max_size = 1000});
        transfer_start(f, e, &other, &(FetchRequest){.url = fast, .max_size = 2 * 1024 * 1024});
        other.cancel_in_sink = &victim.job;
        run_until_done(e, (Transfer *[]){&other}, 1, 10);
        run_for(e, 0.5);
        mini_server_stop(&m);

        ck_assert_uint_eq(self.sink_calls, 1);
        ck_assert_uint_eq(self.done_calls, 0);
        ck_assert_uint_eq(victim.done_calls, 0);
        ck_assert_ptr_null(victim.job);
        ck_assert_int_eq(other.error, 0);
        ck_assert_uint_eq(other.size, 1024 * 1024);
        transfer_done_free(&self);
        transfer_done_free(&victim);
        transfer_done_free(&other);
}
END_TEST

/* Freeing the fetcher from a done() drops the other transfers (no done()
 * for them) and is safe while the fetcher is still dispatching. */
START_TEST(test_free_fetcher_in_done) {
        _cleanup_loop_ sd_event *e = new_loop();
        Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *fast = url(nginx.https, "hello.txt");
        Transfer a = {}, b = {};
        MiniServer m = {};
        char slow[128];

        trickle_start(&m, 1000, slow, sizeof(slow));
        transfer_start(f, e, &a, &(FetchRequest){.url = slow, .max_size = 1000});
        transfer_start(f, e, &b, &(FetchRequest){.url = fast, .max_size = 1000});
        b.free_fetcher_in_done = true;
        run_until_done(e, (Transfer *[]){&b}, 1, 10);
        ck_assert_ptr_null(b.fetcher);
        run_for(e, 0.5);
        mini_server_stop(&m);
        ck_assert_int_eq(b.error, 0);
        ck_assert_uint_eq(a.done_calls, 0);
        transfer_done_free(&a);
        transfer_done_free(&b);
}
END_TEST

/* A synchronous call works on an attached fetcher, also while transfers
 * of it wait on the daemon's loop (which does not run meanwhile). */
START_TEST(test_sync_call_while_attached) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *fast = url(nginx.https, "hello.txt"), *data = NULL;
        Transfer a = {};
        size_t size = 0;

        transfer_start(f, e, &a, &(FetchRequest){.url = fast, .max_size = 1000});
        ck_assert_int_eq(fetcher_get(f, fast, 1000, &data, &size), 0);
        ck_assert_str_eq(data, hello);
        ck_assert_uint_eq(a.done_calls, 0);
        run_until_done(e, (Transfer *[]){&a}, 1, 10);
        ck_assert_int_eq(a.error, 0);
        ck_assert_str_eq(a.data, hello);
        transfer_done_free(&a);
}
END_TEST

/* ---- the defences, on the loop ------------------------------------------------------------ */

START_TEST(test_async_slow_retrieval) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f =
                new_fetcher(&(FetchOptions){.ca_file = nginx.ca, .low_speed_sec = 2}, e);
        _cleanup_free_ char *u = url(nginx.https, "slow/big.bin");
        double start = now_sec();
        Transfer a = {};

        transfer_start(f, e, &a, &(FetchRequest){.url = u, .max_size = 2 * 1024 * 1024});
        run_until_done(e, (Transfer *[]){&a}, 1, 15);
        ck_assert_int_eq(a.error, -ETIMEDOUT);
        ck_assert_double_ge(a.done_at - start, 1.5);
        ck_assert_double_lt(a.done_at - start, 8.0);
        transfer_done_free(&a);
}
END_TEST

START_TEST(test_async_deadline) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca,
                                                                          .low_speed_bytes = 1,
                                                                          .low_speed_sec = 60,
                                                                          .total_timeout_sec = 1},
                                                          e);
        _cleanup_free_ char *u = url(nginx.https, "slow/big.bin");
        double start = now_sec();
        Transfer a = {};

        transfer_start(f, e, &a, &(FetchRequest){.url = u, .max_size = 2 * 1024 * 1024});
        run_until_done(e, (Transfer *[]){&a}, 1, 15);
        ck_assert_int_eq(a.error, -ETIMEDOUT);
        ck_assert_double_ge(a.done_at - start, 0.9);
        ck_assert_double_lt(a.done_at - start, 5.0);
        transfer_done_free(&a);
}
END_TEST

/* A busy neighbour on the loop: every 50 ms, 20 ms of work before anything
 * else of that iteration. */
static int on_burn(sd_event_source *s, uint64_t usec, void *userdata) {
        double end = now_sec() + 0.02;

        while (now_sec() < end)
                ;
        ck_assert_int_ge(sd_event_source_set_time(s, usec + 50 * 1000), 0);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A server that accepts and then says nothing: only the timers end the
 * transfers, with no socket activity to wake the loop, and a busy neighbour
 * on it (libcurl does not re-arm an expiry that did not change, so a timer
 * of ours firing early would leave a transfer hanging). */
START_TEST(test_async_silent_server) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *deadline = new_fetcher(
                &(FetchOptions){.low_speed_bytes = 1, .low_speed_sec = 60, .total_timeout_sec = 1}, e);
        _cleanup_(fetcher_freep) Fetcher *slow = new_fetcher(&(FetchOptions){.low_speed_sec = 1}, e);
        MiniReply silent[] = {{.head = "", .hold_ms = 8000}, {.head = "", .hold_ms = 8000}};
        MiniServer m = {}, n = {};
        Transfer a = {}, b = {};
        sd_event_source *burn = NULL;
        char u[128], v[128];
        double start = now_sec();
        uint64_t now;

        ck_assert_int_ge(sd_event_now(e, CLOCK_MONOTONIC, &now), 0);
        ck_assert_int_ge(sd_event_add_time(e, &burn, CLOCK_MONOTONIC, now, 1, on_burn, NULL), 0);
        ck_assert_int_ge(sd_event_source_set_priority(burn, SD_EVENT_PRIORITY_IMPORTANT), 0);
        mini_server_start_replies(&m, silent, 1, NULL);
        mini_server_start_replies(&n, silent + 1, 1, NULL);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/silent", m.port);
        snprintf(v, sizeof(v), "http://127.0.0.1:%d/silent", n.port);
        transfer_start(deadline, e, &a, &(FetchRequest){.url = u, .max_size = 1000});
        transfer_start(slow, e, &b, &(FetchRequest){.url = v, .max_size = 1000});
        run_until_done(e, (Transfer *[]){&a, &b}, 2, 6);
        sd_event_source_disable_unref(burn);
        mini_server_stop(&m);
        mini_server_stop(&n);

        ck_assert_int_eq(a.error, -ETIMEDOUT);
        ck_assert_double_ge(a.done_at - start, 0.9);
        ck_assert_double_lt(a.done_at - start, 3.0);
        ck_assert_int_eq(b.error, -ETIMEDOUT);
        ck_assert_double_lt(b.done_at - start, 4.0);
}
END_TEST

START_TEST(test_async_caps_and_errors) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_(fetcher_freep) Fetcher *untrusting = new_fetcher(&(FetchOptions){}, e);
        _cleanup_free_ char *big = url(nginx.https, "big.bin"), *missing = url(nginx.https, "nope"),
                            *down = url(nginx.https, "to-http/hello.txt"),
                            *hello_url = url(nginx.https, "hello.txt");
        Transfer capped = {}, notfound = {}, downgrade = {}, cert = {};

        transfer_start(f, e, &capped, &(FetchRequest){.url = big, .max_size = 20000});
        transfer_start(f, e, &notfound, &(FetchRequest){.url = missing, .max_size = 20000});
        transfer_start(f, e, &downgrade, &(FetchRequest){.url = down, .max_size = 20000});
        transfer_start(untrusting, e, &cert, &(FetchRequest){.url = hello_url, .max_size = 20000});
        run_until_done(e, (Transfer *[]){&capped, &notfound, &downgrade, &cert}, 4, 10);

        /* Content-Length over the cap: refused before the first byte */
        ck_assert_int_eq(capped.error, -EFBIG);
        ck_assert_uint_eq(capped.sink_calls, 0);
        ck_assert_int_eq(notfound.error, -ENOENT);
        ck_assert_int_eq(notfound.status, 404);
        ck_assert_uint_eq(notfound.sink_calls, 0);
        ck_assert_int_eq(downgrade.error, -EPROTONOSUPPORT);
        ck_assert_int_eq(cert.error, -EKEYREJECTED);
}
END_TEST

/* ---- Range resume --------------------------------------------------------------------------- */

START_TEST(test_resume_from_nginx) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca}, e);
        _cleanup_free_ char *u = url(nginx.https, "hello.txt"), *big = url(nginx.https, "big.bin");
        Transfer a = {}, past = {}, b = {};

        transfer_start(f, e, &a, &(FetchRequest){.url = u, .max_size = 6, .resume_from = 6});
        /* nothing from byte 12 on: 416, which means "start over" too */
        transfer_start(f, e, &past, &(FetchRequest){.url = u, .max_size = 100, .resume_from = 12});
        transfer_start(f, e, &b,
                       &(FetchRequest){.url = big, .max_size = 1024 * 1024 - 1000, .resume_from = 1000});
        run_until_done(e, (Transfer *[]){&a, &past, &b}, 3, 10);

        ck_assert_int_eq(a.error, 0);
        ck_assert_int_eq(a.status, 206);
        ck_assert_str_eq(a.data, "world\n");
        /* progress counts the whole resource: the offset, then what came */
        ck_assert_uint_eq(a.progress_received, 12);
        ck_assert_uint_eq(a.progress_total, 12);
        ck_assert_int_eq(past.error, -ERANGE);
        ck_assert_int_eq(past.status, 416);
        ck_assert_uint_eq(past.sink_calls, 0);
        ck_assert_int_eq(b.error, 0);
        ck_assert_uint_eq(b.size, 1024 * 1024 - 1000);
        ck_assert_int_eq(b.data[0], 'a' + 1000 % 26);
        transfer_done_free(&a);
        transfer_done_free(&b);
}
END_TEST

/* A server that ignores Range (200, the whole file) or answers another
 * range than asked: -ERANGE, and not one byte of that body is passed on. */
START_TEST(test_resume_refused) {
        static const char *const heads[] = {
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\nContent-Length: 10\r\n"
                "Connection: close\r\n\r\n",
                "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 50-59/60\r\nContent-Length: 10\r\n"
                "Connection: close\r\n\r\n",
                "HTTP/1.1 206 Partial Content\r\nContent-Range: items 5-14/15\r\nContent-Length: 10\r\n"
                "Connection: close\r\n\r\n",
        };
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){}, e);

        for (size_t i = 0; i < ELEMENTSOF(heads); i++) {
                _cleanup_free_ char *record = NULL, *req = NULL, *p = NULL;
                MiniServer m = {};
                Transfer a = {};
                char u[128];
                size_t size;

                ck_assert_int_ge(asprintf(&record, "%s/request", tmpdir), 0);
                mini_server_start_replies(&m, &(MiniReply){.head = heads[i], .body_bytes = 10}, 1, record);
                snprintf(u, sizeof(u), "http://127.0.0.1:%d/t", m.port);
                transfer_start(f, e, &a, &(FetchRequest){.url = u, .max_size = 100, .resume_from = 5});
                run_until_done(e, (Transfer *[]){&a}, 1, 10);
                mini_server_stop(&m);

                ck_assert_msg(a.error == -ERANGE, "reply %zu: %d", i, a.error);
                ck_assert_uint_eq(a.sink_calls, 0);
                ck_assert_int_ge(asprintf(&p, "%s.0", record), 0);
                ck_assert_int_eq(read_full_file(p, 65536, &req, &size), 0);
                ck_assert_ptr_nonnull(strcasestr(req, "\r\nRange: bytes=5-\r\n"));
        }

        /* the honest answer is taken */
        {
                MiniServer m = {};
                Transfer a = {};
                char u[128];

                mini_server_start_replies(
                        &m,
                        &(MiniReply){.head = "HTTP/1.1 206 Partial Content\r\n"
                                             "Content-Range: bytes 5-14/15\r\n"
                                             "Content-Length: 10\r\nConnection: close\r\n\r\n",
                                     .body_bytes = 10},
                        1, NULL);
                snprintf(u, sizeof(u), "http://127.0.0.1:%d/t", m.port);
                transfer_start(f, e, &a, &(FetchRequest){.url = u, .max_size = 10, .resume_from = 5});
                run_until_done(e, (Transfer *[]){&a}, 1, 10);
                mini_server_stop(&m);
                ck_assert_int_eq(a.error, 0);
                ck_assert_str_eq(a.data, "xxxxxxxxxx");
                transfer_done_free(&a);
        }
}
END_TEST

/* ---- POST -------------------------------------------------------------------------------------- */

static char *read_record(const char *record, size_t i, size_t *ret_size) {
        _cleanup_free_ char *p = NULL;
        char *data = NULL;

        ck_assert_int_ge(asprintf(&p, "%s.%zu", record, i), 0);
        ck_assert_int_eq(read_full_file(p, MINI_REQUEST_MAX, &data, ret_size), 0);
        return data;
}

START_TEST(test_post) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){}, e);
        _cleanup_free_ char *record = NULL, *req = NULL, *body = NULL;
        static const char report[] = "{\"transaction\":\"t1\",\"outcome\":\"committed\"}";
        MiniServer m = {};
        Transfer a = {};
        size_t size;
        char u[128];
        char *sep;

        ck_assert_int_ge(asprintf(&record, "%s/post", tmpdir), 0);
        mini_server_start_replies(&m,
                                  &(MiniReply){.head = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n"
                                                       "Connection: close\r\n\r\n",
                                               .body = "ok",
                                               .body_bytes = 2},
                                  1, record);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/reports?key=t1", m.port);
        /* the body is copied: the caller's buffer may go at once */
        body = strdup(report);
        transfer_start(f, e, &a,
                       &(FetchRequest){.url = u,
                                       .post_body = body,
                                       .post_size = strlen(body),
                                       .content_type = "application/json"});
        memset(body, '#', strlen(body));
        run_until_done(e, (Transfer *[]){&a}, 1, 10);
        mini_server_stop(&m);

        ck_assert_int_eq(a.error, 0);
        ck_assert_int_eq(a.status, 201);
        ck_assert_str_eq(a.data, "ok"); /* max_size 0 for a POST: a default cap, not zero */

        req = read_record(record, 0, &size);
        ck_assert_msg(strneq(req, "POST /reports?key=t1 HTTP/1.1\r\n",
                             STRLEN("POST /reports?key=t1 HTTP/1.1\r\n")),
                      "%s", req);
        ck_assert_ptr_nonnull(strcasestr(req, "\r\nContent-Type: application/json\r\n"));
        ck_assert_ptr_null(strcasestr(req, "\r\nExpect:"));
        sep = strstr(req, "\r\n\r\n");
        ck_assert_ptr_nonnull(sep);
        ck_assert_uint_eq(size - (size_t) (sep + 4 - req), strlen(report));
        ck_assert(memcmp(sep + 4, report, strlen(report)) == 0);
        transfer_done_free(&a);
}
END_TEST

/* A larger binary body arrives byte for byte; a refusal is reported with
 * its status. */
START_TEST(test_post_binary_and_refused) {
        _cleanup_loop_ sd_event *e = new_loop();
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){}, e);
        _cleanup_free_ char *record = NULL, *req = NULL, *body = NULL;
        const size_t n = 300 * 1024;
        MiniReply replies[] = {
                {.head = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"},
                {.head = "HTTP/1.1 500 Oops\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                 .body_bytes = 5},
        };
        MiniServer m = {};
        Transfer a = {}, b = {};
        size_t size;
        char u[128];
        char *sep;

        body = malloc(n);
        ck_assert_ptr_nonnull(body);
        for (size_t i = 0; i < n; i++)
                body[i] = (char) (i * 7 % 256); /* NULs included */
        ck_assert_int_ge(asprintf(&record, "%s/post", tmpdir), 0);
        mini_server_start_replies(&m, replies, 2, record);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/r", m.port);

        transfer_start(f, e, &a,
                       &(FetchRequest){.url = u,
                                       .post_body = body,
                                       .post_size = n,
                                       .content_type = "application/octet-stream"});
        run_until_done(e, (Transfer *[]){&a}, 1, 10);
        transfer_start(f, e, &b, &(FetchRequest){.url = u, .post_body = "{}", .post_size = 2});
        run_until_done(e, (Transfer *[]){&b}, 1, 10);
        mini_server_stop(&m);

        ck_assert_int_eq(a.error, 0);
        ck_assert_int_eq(a.status, 204);
        req = read_record(record, 0, &size);
        sep = strstr(req, "\r\n\r\n");
        ck_assert_ptr_nonnull(sep);
        ck_assert_uint_eq(size - (size_t) (sep + 4 - req), n);
        ck_assert(memcmp(sep + 4, body, n) == 0);

        ck_assert_int_eq(b.error, -EIO);
        ck_assert_int_eq(b.status, 500);
        ck_assert_uint_eq(b.sink_calls, 0);
}
END_TEST

static Suite *fetch_async_suite(void) {
        Suite *s = suite_create("fetch-async");
        TCase *tc;

        tc = tcase_create("api");
        tcase_add_test(tc, test_start_needs_attach);
        tcase_add_test(tc, test_policy_refused_at_start);
        suite_add_tcase(s, tc);

        tc = tcase_create("one-shot-server");
        tcase_set_timeout(tc, 30);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_resume_refused);
        tcase_add_test(tc, test_post);
        tcase_add_test(tc, test_post_binary_and_refused);
        tcase_add_test(tc, test_async_silent_server);
        suite_add_tcase(s, tc);

        tc = tcase_create("nginx");
        tcase_set_timeout(tc, 30);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_test(tc, test_two_concurrent_transfers);
        tcase_add_test(tc, test_loop_not_blocked);
        tcase_add_test(tc, test_cancel);
        tcase_add_test(tc, test_cancel_from_sink);
        tcase_add_test(tc, test_free_fetcher_in_done);
        tcase_add_test(tc, test_sync_call_while_attached);
        tcase_add_test(tc, test_async_slow_retrieval);
        tcase_add_test(tc, test_async_deadline);
        tcase_add_test(tc, test_async_caps_and_errors);
        tcase_add_test(tc, test_resume_from_nginx);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(fetch_async_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

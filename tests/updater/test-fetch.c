/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fetcher against a real nginx on loopback (tests/nginx-fixture) and a
 * one-shot server of our own for what nginx will not do (a body without
 * Content-Length that never ends, a redirect to a non-loopback http host).
 */

#include <time.h>

#include "updater.h"
#include "updater/fixture.h"

static Nginx nginx;

static void nginx_setup(void) {
        static const char hello[] = "hello world\n";
        _cleanup_free_ char *big = NULL;

        nginx_start(&nginx);
        fixture_write(nginx.www, "hello.txt", hello, strlen(hello));
        big = malloc(4 * 1024 * 1024);
        ck_assert_ptr_nonnull(big);
        memset(big, 'b', 4 * 1024 * 1024);
        fixture_write(nginx.www, "four.bin", big, 4 * 1024 * 1024);
        fixture_write(nginx.www, "big.bin", big, 1024 * 1024);
        fixture_write(nginx.www, "ten-k.bin", big, 10 * 1024);
        ck_assert_int_eq(mkdir_p(nginx.www, 0755), 0);
        fixture_write(nginx.www, "dir/inside.txt", hello, strlen(hello));
}

static void nginx_teardown(void) {
        nginx_stop(&nginx);
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

typedef struct Counter {
        uint64_t bytes;
        unsigned calls;
} Counter;

static int count_sink(const void *data, size_t size, void *userdata) {
        Counter *c = userdata;

        c->bytes += size;
        c->calls++;
        return 0;
}

static Fetcher *new_fetcher(const FetchOptions *o) {
        Fetcher *f = NULL;

        ck_assert_int_eq(fetcher_new(o, &f), 0);
        return f;
}

/* ---- URL policy (no server needed) ------------------------------------------ */

START_TEST(test_other_schemes_refused) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.allow_http = true});
        static const char *const urls[] = {
                "file:///etc/passwd", "ftp://127.0.0.1/x",  "gopher://127.0.0.1/x",
                "scp://127.0.0.1/x",  "dict://127.0.0.1/x",
        };
        Counter c = {};

        for (size_t i = 0; i < ELEMENTSOF(urls); i++)
                ck_assert_int_eq(fetcher_get_stream(f, urls[i], 1000, count_sink, &c, NULL),
                                 -EPROTONOSUPPORT);
        ck_assert_uint_eq(c.calls, 0);
        ck_assert_int_eq(fetcher_get_stream(f, "no scheme at all", 1000, count_sink, &c, NULL), -EINVAL);
}
END_TEST

START_TEST(test_http_to_remote_refused_without_contact) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.connect_timeout_sec = 2});
        _cleanup_(fetcher_freep) Fetcher *open = NULL;
        static const char *const refused[] = {
                "http://192.0.2.1/x", /* TEST-NET-1: would hang if contacted */
                "http://128.0.0.1/x", "http://127.0.0.1.example.com/x", "http://localhost.example.com/x",
                "http://[::2]/x",     "http://[::ffff:192.0.2.1]/x",
        };
        double start = now_sec();

        for (size_t i = 0; i < ELEMENTSOF(refused); i++)
                ck_assert_msg(fetcher_get_stream(f, refused[i], 1000, NULL, NULL, NULL) == -EPROTONOSUPPORT,
                              "%s was not refused", refused[i]);
        /* Refused by policy, not by a failed attempt: no time was spent. */
        ck_assert_double_lt(now_sec() - start, 1.0);

        /* With allow_http the same URL is attempted (and fails otherwise). */
        open = new_fetcher(&(FetchOptions){.allow_http = true, .connect_timeout_sec = 1});
        int r = fetcher_get_stream(open, "http://192.0.2.1/x", 1000, NULL, NULL, NULL);
        ck_assert_int_lt(r, 0);
        ck_assert_int_ne(r, -EPROTONOSUPPORT);
}
END_TEST

START_TEST(test_http_loopback_allowed_by_policy) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.connect_timeout_sec = 2});
        MiniServer m = {};
        char u[128];
        int r;

        /* Nothing listens there: the policy let them through to the connect. */
        r = fetcher_get_stream(f, "http://127.0.0.2:1/x", 1000, NULL, NULL, NULL);
        ck_assert_int_lt(r, 0);
        ck_assert_int_ne(r, -EPROTONOSUPPORT);
        r = fetcher_get_stream(f, "http://[::1]:1/x", 1000, NULL, NULL, NULL);
        ck_assert_int_lt(r, 0);
        ck_assert_int_ne(r, -EPROTONOSUPPORT);

        mini_server_start(&m, "HTTP/1.0 200 OK\r\n\r\n", 5);
        snprintf(u, sizeof(u), "http://localhost:%d/x", m.port);
        r = fetcher_get_stream(f, u, 1000, NULL, NULL, NULL);
        mini_server_stop(&m);
        ck_assert_int_eq(r, 0);
}
END_TEST

/* Plain http allowed for a loopback URL must not follow a redirect to a
 * remote http host: every connection is held to loopback. */
START_TEST(test_http_redirect_to_remote_refused) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.connect_timeout_sec = 2});
        MiniServer m = {};
        char u[128];
        int r;

        mini_server_start(&m,
                          "HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/x\r\n"
                          "Content-Length: 0\r\nConnection: close\r\n\r\n",
                          0);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", m.port);
        r = fetcher_get_stream(f, u, 1000, NULL, NULL, NULL);
        mini_server_stop(&m);
        ck_assert_int_eq(r, -EPROTONOSUPPORT);
}
END_TEST

/* Endless data without Content-Length: only our byte count can stop it. */
START_TEST(test_endless_data_without_length) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){});
        _cleanup_free_ char *data = NULL;
        MiniServer m = {};
        Counter c = {};
        size_t size = 0;
        char u[128];
        int r;

        mini_server_start(&m, "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n",
                          64 * 1024 * 1024);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/endless", m.port);
        r = fetcher_get_stream(f, u, 1000, count_sink, &c, NULL);
        mini_server_stop(&m);
        ck_assert_int_eq(r, -EFBIG);
        ck_assert_uint_le(c.bytes, 1000);

        /* and into memory */
        mini_server_start(&m, "HTTP/1.0 200 OK\r\n\r\n", 64 * 1024 * 1024);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/endless", m.port);
        r = fetcher_get(f, u, 4096, &data, &size);
        mini_server_stop(&m);
        ck_assert_int_eq(r, -EFBIG);
        ck_assert_ptr_null(data);
}
END_TEST

/* ---- against nginx -------------------------------------------------------------- */

START_TEST(test_https_get) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *u = url(nginx.https, "hello.txt"), *data = NULL;
        size_t size = 0;
        long status = 0;
        Counter c = {};

        ck_assert_int_eq(fetcher_get(f, u, 1000, &data, &size), 0);
        ck_assert_uint_eq(size, 12);
        ck_assert_str_eq(data, "hello world\n");

        ck_assert_int_eq(fetcher_get_stream(f, u, 1000, count_sink, &c, &status), 0);
        ck_assert_int_eq(status, 200);
        ck_assert_uint_eq(c.bytes, 12);
}
END_TEST

START_TEST(test_http_loopback_get) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){});
        _cleanup_free_ char *u = url(nginx.http, "hello.txt"), *data = NULL;
        size_t size = 0;

        ck_assert_int_eq(fetcher_get(f, u, 1000, &data, &size), 0);
        ck_assert_str_eq(data, "hello world\n");
}
END_TEST

START_TEST(test_untrusted_certificate) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){});
        _cleanup_free_ char *u = url(nginx.https, "hello.txt"), *data = NULL;
        size_t size = 0;

        /* The test CA is not in the system's bundle. */
        ck_assert_int_eq(fetcher_get(f, u, 1000, &data, &size), -EKEYREJECTED);
}
END_TEST

START_TEST(test_not_found) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *u = url(nginx.https, "no-such-file"), *d = url(nginx.https, "dir/");
        long status = 0;
        Counter c = {};

        ck_assert_int_eq(fetcher_get_stream(f, u, 1000, count_sink, &c, &status), -ENOENT);
        ck_assert_int_eq(status, 404);
        /* a directory without index: 403 */
        ck_assert_int_eq(fetcher_get_stream(f, d, 1000, count_sink, &c, &status), -ENOENT);
        ck_assert_int_eq(status, 403);
        /* error pages are not data, and a cap smaller than the error page
         * does not hide the status */
        ck_assert_uint_eq(c.calls, 0);
        ck_assert_int_eq(fetcher_get_stream(f, u, 5, count_sink, &c, &status), -ENOENT);
        ck_assert_int_eq(fetcher_get_stream(f, u, 0, count_sink, &c, &status), -ENOENT);
}
END_TEST

START_TEST(test_size_cap) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *u = url(nginx.https, "big.bin"), *h = url(nginx.https, "hello.txt"),
                            *data = NULL;
        size_t size = 0;
        Counter c = {};

        ck_assert_int_eq(fetcher_get_stream(f, u, 1000, count_sink, &c, NULL), -EFBIG);
        ck_assert_uint_le(c.bytes, 1000);
        /* nginx announces the length: refused before any byte is passed on
         * (a TLS record holds at most 16 KiB, so a count alone would let
         * the first chunk through) */
        c = (Counter){};
        ck_assert_int_eq(fetcher_get_stream(f, u, 20000, count_sink, &c, NULL), -EFBIG);
        ck_assert_uint_eq(c.calls, 0);
        ck_assert_int_eq(fetcher_get(f, u, 1000, &data, &size), -EFBIG);
        ck_assert_ptr_null(data);

        /* exactly at the cap is fine, one byte under is not */
        ck_assert_int_eq(fetcher_get(f, h, 12, &data, &size), 0);
        free(data);
        data = NULL;
        ck_assert_int_eq(fetcher_get(f, h, 11, &data, &size), -EFBIG);
        ck_assert_int_eq(fetcher_get(f, u, 1024 * 1024, &data, &size), 0);
        ck_assert_uint_eq(size, 1024 * 1024);
}
END_TEST

START_TEST(test_slow_retrieval) {
        _cleanup_(fetcher_freep) Fetcher *f =
                new_fetcher(&(FetchOptions){.ca_file = nginx.ca, .low_speed_sec = 2});
        _cleanup_free_ char *u = url(nginx.https, "slow/ten-k.bin");
        double start = now_sec();

        /* 64 B/s is under the default 1024 B/s minimum */
        ck_assert_int_eq(fetcher_get_stream(f, u, 100000, NULL, NULL, NULL), -ETIMEDOUT);
        ck_assert_double_lt(now_sec() - start, 8.0);
}
END_TEST

START_TEST(test_total_deadline) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){
                .ca_file = nginx.ca, .low_speed_bytes = 1, .low_speed_sec = 60, .total_timeout_sec = 1});
        _cleanup_free_ char *u = url(nginx.https, "slow/ten-k.bin");
        double start = now_sec();

        ck_assert_int_eq(fetcher_get_stream(f, u, 100000, NULL, NULL, NULL), -ETIMEDOUT);
        ck_assert_double_lt(now_sec() - start, 5.0);
}
END_TEST

START_TEST(test_redirect_same_scheme_only) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *down = url(nginx.https, "to-http/hello.txt"),
                            *up = url(nginx.http, "to-https/hello.txt"),
                            *same = url(nginx.https, "to-https/hello.txt"), *data = NULL;
        size_t size = 0;

        ck_assert_int_eq(fetcher_get(f, down, 1000, &data, &size), -EPROTONOSUPPORT);
        ck_assert_int_eq(fetcher_get(f, up, 1000, &data, &size), -EPROTONOSUPPORT);
        ck_assert_int_eq(fetcher_get(f, same, 1000, &data, &size), 0);
        ck_assert_str_eq(data, "hello world\n");
        free(data);
        data = NULL;
        /* the cap is for the final body, not the redirect page's */
        ck_assert_int_eq(fetcher_get(f, same, 12, &data, &size), 0);
}
END_TEST

START_TEST(test_redirect_limit) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *five = url(nginx.https,
                                        "to-https/to-https/to-https/to-https/to-https/hello.txt"),
                            *six = url(nginx.https,
                                       "to-https/to-https/to-https/to-https/to-https/to-https/hello.txt"),
                            *data = NULL;
        size_t size = 0;

        ck_assert_int_eq(fetcher_get(f, five, 1000, &data, &size), 0);
        free(data);
        data = NULL;
        ck_assert_int_eq(fetcher_get(f, six, 1000, &data, &size), -ELOOP);
}
END_TEST

static int failing_sink(const void *data, size_t size, void *userdata) {
        return -ECANCELED;
}

START_TEST(test_sink_error) {
        _cleanup_(fetcher_freep) Fetcher *f = new_fetcher(&(FetchOptions){.ca_file = nginx.ca});
        _cleanup_free_ char *u = url(nginx.https, "hello.txt");

        ck_assert_int_eq(fetcher_get_stream(f, u, 1000, failing_sink, NULL, NULL), -ECANCELED);
}
END_TEST

START_TEST(test_bandwidth_limit) {
        _cleanup_(fetcher_freep) Fetcher *f =
                new_fetcher(&(FetchOptions){.ca_file = nginx.ca, .max_bytes_per_sec = 1024 * 1024});
        _cleanup_free_ char *u = url(nginx.https, "four.bin");
        double start = now_sec();
        Counter c = {};

        /* 4 MiB at 1 MiB/s. libcurl measures the speed once per second and
         * reads up to ~1.6 MB per wakeup, so the first burst is unthrottled:
         * expect well over one second, not four. */
        ck_assert_int_eq(fetcher_get_stream(f, u, 8 * 1024 * 1024, count_sink, &c, NULL), 0);
        ck_assert_uint_eq(c.bytes, 4 * 1024 * 1024);
        ck_assert_double_ge(now_sec() - start, 1.5);
}
END_TEST

static Suite *fetch_suite(void) {
        Suite *s = suite_create("fetch");
        TCase *tc;

        tc = tcase_create("policy");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_other_schemes_refused);
        tcase_add_test(tc, test_http_to_remote_refused_without_contact);
        tcase_add_test(tc, test_http_loopback_allowed_by_policy);
        tcase_add_test(tc, test_http_redirect_to_remote_refused);
        tcase_add_test(tc, test_endless_data_without_length);
        suite_add_tcase(s, tc);

        tc = tcase_create("nginx");
        tcase_set_timeout(tc, 30);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_test(tc, test_https_get);
        tcase_add_test(tc, test_http_loopback_get);
        tcase_add_test(tc, test_untrusted_certificate);
        tcase_add_test(tc, test_not_found);
        tcase_add_test(tc, test_size_cap);
        tcase_add_test(tc, test_slow_retrieval);
        tcase_add_test(tc, test_total_deadline);
        tcase_add_test(tc, test_redirect_same_scheme_only);
        tcase_add_test(tc, test_redirect_limit);
        tcase_add_test(tc, test_sink_error);
        tcase_add_test(tc, test_bandwidth_limit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(fetch_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

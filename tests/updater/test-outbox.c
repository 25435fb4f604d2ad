/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The report outbox on a real sd-event loop against tests/report-server.mjs
 * (node, on loopback): delivered exactly once, retried with backoff through
 * 503s, a server that is down and comes up, a lost answer, a kill before
 * delivery, duplicates, refusals, the size cap, order and TLS.
 */

#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <time.h>

#include "updater.h"
#include "updater/fixture.h"

static char tmpdir[64];
static char outdir[128];

static void setup(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/oob-test-outbox.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        ck_assert_int_lt(snprintf(outdir, sizeof(outdir), "%s/outbox", tmpdir), (int) sizeof(outdir));
}

static void teardown(void) {
        fixture_rm_rf(tmpdir);
}

/* ---- the report server -------------------------------------------------------- */

typedef struct Server {
        FILE *p;
        pid_t pid;
        char base[256];     /* http(s)://127.0.0.1:PORT */
        char endpoint[300]; /* BASE/reports */
        char ca[128];       /* CA file to reach it over https, or "" */
} Server;

static void server_script(char *buf, size_t size) {
        char exe[PATH_MAX];
        ssize_t n;

        if (access("tests/report-server.mjs", R_OK) == 0) {
                snprintf(buf, size, "tests/report-server.mjs");
                return;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = 0;
        for (char *slash = strrchr(exe, '/'); slash; slash = strrchr(exe, '/')) {
                *slash = 0;
                if (snprintf(buf, size, "%s/tests/report-server.mjs", exe) >= (int) size)
                        continue;
                if (access(buf, R_OK) == 0)
                        return;
        }
        ck_abort_msg("tests/report-server.mjs not found (run the tests from the top of the tree)");
}

/* Start the server with extra arguments (printf-style); it stores into
 * TMPDIR/store.jsonl, so a restarted server remembers. */
static _printf_(2, 3) void server_start(Server *s, const char *fmt, ...) {
        char script[PATH_MAX], args[1024], cmd[4096], line[512] = "", pid[32];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        server_script(script, sizeof(script));
        ck_assert_int_lt(snprintf(cmd, sizeof(cmd),
                                  "exec node '%s' --store '%s/store.jsonl' --max-seconds 60 %s", script,
                                  tmpdir, args),
                         (int) sizeof(cmd));
        memset(s, 0, sizeof(*s));
        s->p = popen(cmd, "r");
        ck_assert_ptr_nonnull(s->p);
        if (!fgets(line, sizeof(line), s->p))
                line[0] = 0;
        ck_assert_msg(fixture_take(line, "REPORT_SERVER=", s->base, sizeof(s->base)) &&
                              fixture_take(line, "PID=", pid, sizeof(pid)),
                      "unexpected report-server output: '%s'", line);
        s->pid = atoi(pid);
        ck_assert_int_gt(s->pid, 0);
        snprintf(s->endpoint, sizeof(s->endpoint), "%s/reports", s->base);
}

static void server_stop(Server *s) {
        if (!s->p)
                return;
        (void) kill(s->pid, SIGTERM);
        (void) pclose(s->p);
        s->p = NULL;
}

/* GET BASE/what ("reports" or "requests") as JSON. */
static json_t *server_get(const Server *s, const char *what) {
        _cleanup_(fetcher_freep) Fetcher *f = NULL;
        _cleanup_free_ char *url = NULL, *data = NULL;
        json_error_t err;
        json_t *j;
        size_t size;

        ck_assert_int_eq(fetcher_new(&(FetchOptions){.ca_file = s->ca[0] ? s->ca : NULL}, &f), 0);
        ck_assert_int_ge(asprintf(&url, "%s/%s", s->base, what), 0);
        ck_assert_int_eq(fetcher_get(f, url, 1024 * 1024, &data, &size), 0);
        j = json_loads(data, 0, &err);
        ck_assert_msg(json_is_array(j), "bad answer from %s: %s", url, data);
        return j;
}

/* POSTs to /reports the server saw, answered with status (-1: any, 0: none yet). */
static size_t server_posts(const Server *s, int status) {
        json_t *a = server_get(s, "requests"), *r;
        size_t i, n = 0;

        json_array_foreach(a, i, r) {
                json_t *st = json_object_get(r, "status");

                if (!streq(json_string_value(json_object_get(r, "method")), "POST"))
                        continue;
                if (status < 0 || (status == 0 && json_is_null(st)) ||
                    (status > 0 && json_integer_value(st) == status))
                        n++;
        }
        json_decref(a);
        return n;
}

/* The keys of the stored reports, in arrival order, joined by ' '. */
static char *server_stored_keys(const Server *s) {
        json_t *a = server_get(s, "reports"), *r;
        char *out = strdup("");
        size_t i;

        ck_assert_ptr_nonnull(out);
        json_array_foreach(a, i, r) {
                const char *k = json_string_value(json_object_get(r, "idempotency_key"));
                char *n;

                ck_assert_ptr_nonnull(k);
                ck_assert_int_ge(asprintf(&n, "%s%s%s", out, *out ? " " : "", k), 0);
                free(out);
                out = n;
        }
        json_decref(a);
        return out;
}

/* A port with nothing listening (bound, read and released). */
static int free_port(void) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        return ntohs(a.sin_port);
}

/* ---- the outbox on a loop -------------------------------------------------------- */

typedef struct Env {
        sd_event *e;
        Fetcher *f;
        Outbox *o;
} Env;

static void env_new(Env *env, const char *endpoint, const char *ca_file) {
        memset(env, 0, sizeof(*env));
        ck_assert_int_ge(sd_event_new(&env->e), 0);
        ck_assert_int_eq(fetcher_new(&(FetchOptions){.ca_file = ca_file}, &env->f), 0);
        /* outbox_new() attaches the fetcher to the loop. */
        ck_assert_int_eq(outbox_new(env->e, env->f, outdir, endpoint, &env->o), 0);
        /* Tests do not wait seconds: 20 ms base, 100 ms cap. */
        ck_assert_int_eq(outbox_set_backoff(env->o, 20 * 1000, 100 * 1000), 0);
}

static void env_free(Env *env) {
        env->o = outbox_free(env->o);
        env->f = fetcher_free(env->f);
        env->e = sd_event_unref(env->e);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Run the loop until nothing is pending, at most max_usec; true if emptied. */
static bool run_until_empty(Env *env, uint64_t max_usec) {
        uint64_t end = now_usec() + max_usec;

        while (outbox_pending(env->o) > 0) {
                uint64_t now = now_usec();

                if (now >= end)
                        return false;
                ck_assert_int_ge(sd_event_run(env->e, end - now), 0);
        }
        return true;
}

static void run_for(Env *env, uint64_t usec) {
        uint64_t end = now_usec() + usec;

        for (uint64_t now = now_usec(); now < end; now = now_usec())
                ck_assert_int_ge(sd_event_run(env->e, end - now), 0);
}

static bool outbox_has(const char *name) {
        _cleanup_free_ char *p = path_join(outdir, name);

        return access(p, F_OK) == 0;
}

static size_t count_files(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && de->d_type != DT_DIR)
                        n++;
        closedir(d);
        return n;
}

static const char report_json[] = "{\"transaction\":\"tx1\",\"outcome\":\"committed\",\"stop_code\":null}";

/* ---- tests ------------------------------------------------------------------------ */

START_TEST(test_delivered_exactly_once) {
        _cleanup_free_ char *keys = NULL;
        Server s;
        Env env;
        struct stat st;
        json_t *a, *r;

        server_start(&s, " ");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx1-committed", report_json), 1);

        /* Persisted before any attempt: the loop has not run yet. */
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        ck_assert(outbox_has("tx1-committed.json"));
        ck_assert_int_eq(stat(outdir, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
        {
                _cleanup_free_ char *p = path_join(outdir, "tx1-committed.json"), *data = NULL;
                size_t size;

                ck_assert_int_eq(stat(p, &st), 0);
                ck_assert_uint_eq(st.st_mode & 07777, 0600);
                ck_assert_int_eq(read_full_file(p, 4096, &data, &size), 0);
                ck_assert_str_eq(data,
                                 "{\"transaction\":\"tx1\",\"outcome\":\"committed\",\"stop_code\":null,"
                                 "\"idempotency_key\":\"tx1-committed\"}");
        }

        ck_assert(run_until_empty(&env, 10 * 1000000));
        ck_assert(!outbox_has("tx1-committed.json"));
        /* Nothing more is sent afterwards. */
        run_for(&env, 200 * 1000);
        ck_assert_uint_eq(server_posts(&s, -1), 1);
        ck_assert_uint_eq(server_posts(&s, 201), 1);

        a = server_get(&s, "reports");
        ck_assert_uint_eq(json_array_size(a), 1);
        r = json_array_get(a, 0);
        ck_assert_str_eq(json_string_value(json_object_get(r, "transaction")), "tx1");
        ck_assert_str_eq(json_string_value(json_object_get(r, "outcome")), "committed");
        ck_assert(json_is_null(json_object_get(r, "stop_code")));
        json_decref(a);

        a = server_get(&s, "requests");
        r = json_array_get(a, 0);
        ck_assert_str_eq(json_string_value(json_object_get(r, "url")), "/reports?key=tx1-committed");
        ck_assert_str_eq(json_string_value(json_object_get(r, "content_type")), "application/json");
        json_decref(a);

        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx1-committed");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_retried_through_503) {
        _cleanup_free_ char *keys = NULL;
        Server s;
        Env env;

        server_start(&s, "--fail 3");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx2-rolled-back", report_json), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        ck_assert_uint_eq(server_posts(&s, 503), 3);
        ck_assert_uint_eq(server_posts(&s, 201), 1);
        ck_assert_uint_eq(server_posts(&s, -1), 4);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx2-rolled-back");
        ck_assert_uint_eq(count_files(outdir), 0);
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_server_down_then_up) {
        _cleanup_free_ char *keys = NULL;
        char endpoint[128];
        int port = free_port();
        Server s;
        Env env;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", port);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx3-committed", report_json), 1);
        /* Refused connections for a while: several attempts, nothing lost. */
        run_for(&env, 300 * 1000);
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        ck_assert(outbox_has("tx3-committed.json"));

        server_start(&s, "--port %d", port);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx3-committed");
        ck_assert_uint_eq(server_posts(&s, -1), 1);
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_killed_before_delivery_resumes) {
        _cleanup_free_ char *keys = NULL, *tmp = NULL;
        char endpoint[128];
        int port = free_port(), status;
        Server s;
        Env env;
        pid_t pid;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", port);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                Env child;

                env_new(&child, endpoint, NULL);
                if (outbox_queue(child.o, "tx4-failed",
                                 "{\"outcome\":\"failed\",\"stop_code\":\"0x0000007E\"}") != 1 ||
                    outbox_queue(child.o, "tx5-committed", report_json) != 1)
                        _exit(1);
                run_for(&child, 50 * 1000); /* a failed attempt or two, a retry timer armed */
                raise(SIGKILL);
                _exit(1);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert(outbox_has("tx4-failed.json"));
        ck_assert(outbox_has("tx5-committed.json"));

        /* A temp file of a write the kill interrupted is not a report. */
        tmp = path_join(outdir, ".#tx6-committed.json.0123456789abcdef");
        ck_assert_int_eq(write_file_atomic(tmp, "{", 1, 0600), 0);

        server_start(&s, "--port %d", port);
        env_new(&env, endpoint, NULL);
        ck_assert_uint_eq(outbox_pending(env.o), 0);
        ck_assert_int_eq(outbox_resume(env.o), 2);
        ck_assert_uint_eq(outbox_pending(env.o), 2);
        ck_assert_int_eq(access(tmp, F_OK), -1);
        /* A second resume adds nothing. */
        ck_assert_int_eq(outbox_resume(env.o), 0);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx4-failed tx5-committed");
        ck_assert_uint_eq(server_posts(&s, -1), 2);
        {
                json_t *a = server_get(&s, "reports");

                ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "stop_code")),
                                 "0x0000007E");
                json_decref(a);
        }
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_lost_answer_and_free_in_flight) {
        _cleanup_free_ char *keys = NULL;
        Server s;
        Env env;

        /* The first POST is stored but never answered. */
        server_start(&s, "--hang 1");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx7-committed", report_json), 1);
        for (uint64_t end = now_usec() + 5 * 1000000; server_posts(&s, 0) == 0 && now_usec() < end;)
                run_for(&env, 20 * 1000);
        ck_assert_uint_eq(server_posts(&s, 0), 1);
        /* oobd stops while the request hangs: the report stays. */
        env_free(&env);
        ck_assert(outbox_has("tx7-committed.json"));

        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_resume(env.o), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        /* Sent twice, stored once: the server recognised the key. */
        ck_assert_uint_eq(server_posts(&s, 200), 1);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx7-committed");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_attempt_timeout_retries) {
        _cleanup_free_ char *keys = NULL;
        uint64_t start;
        Server s;
        Env env;

        server_start(&s, "--hang 1");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_set_attempt_timeout(env.o, 300 * 1000), 0);
        start = now_usec();
        ck_assert_int_eq(outbox_queue(env.o, "tx8-committed", report_json), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        ck_assert_uint_ge(now_usec() - start, 300 * 1000);
        ck_assert_uint_eq(server_posts(&s, -1), 2);
        ck_assert_uint_eq(server_posts(&s, 200), 1);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx8-committed");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_same_key_twice) {
        _cleanup_free_ char *keys = NULL;
        char endpoint[128];
        int port = free_port();
        Server s;
        Env env;
        json_t *a;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", port);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx9-committed", "{\"n\":1}"), 1);
        ck_assert_int_eq(outbox_queue(env.o, "tx9-committed", "{\"n\":2}"), 0);
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        ck_assert_uint_eq(count_files(outdir), 1);
        env_free(&env);

        /* Also after a restart, before resume: the file is the first queue. */
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx9-committed", "{\"n\":3}"), 0);
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        ck_assert_int_eq(outbox_resume(env.o), 0);
        ck_assert_uint_eq(outbox_pending(env.o), 1);

        server_start(&s, "--port %d", port);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        run_for(&env, 100 * 1000);
        ck_assert_uint_eq(server_posts(&s, -1), 1);
        a = server_get(&s, "reports");
        ck_assert_uint_eq(json_array_size(a), 1);
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "n")), 1);
        json_decref(a);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx9-committed");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_400_rejected_not_retried) {
        _cleanup_free_ char *keys = NULL, *rejected = NULL, *moved = NULL;
        Server s;
        Env env;

        server_start(&s, "--fail 1 --fail-status 400");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "bad", "{\"n\":1}"), 1);
        ck_assert_int_eq(outbox_queue(env.o, "good", "{\"n\":2}"), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        run_for(&env, 200 * 1000);

        rejected = path_join(outdir, "rejected");
        moved = path_join(rejected, "bad.json");
        ck_assert_int_eq(access(moved, F_OK), 0);
        ck_assert_uint_eq(count_files(rejected), 1);
        ck_assert_uint_eq(count_files(outdir), 0);
        /* One refusal, no retry of it; the next report went through. */
        ck_assert_uint_eq(server_posts(&s, 400), 1);
        ck_assert_uint_eq(server_posts(&s, -1), 2);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "good");

        /* A rejected report is not picked up again. */
        env_free(&env);
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_resume(env.o), 0);
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_rejected_dir_capped) {
        _cleanup_free_ char *rejected = NULL;
        char key[16];
        Server s;
        Env env;

        log_set_max_level(LOG_LEVEL_ERR); /* one warning per refusal */
        server_start(&s, "--fail 1000 --fail-status 422");
        env_new(&env, s.endpoint, NULL);
        for (unsigned i = 0; i < OUTBOX_REJECTED_MAX + 3; i++) {
                snprintf(key, sizeof(key), "r%03u", i);
                ck_assert_int_eq(outbox_queue(env.o, key, "{}"), 1);
        }
        ck_assert(run_until_empty(&env, 30 * 1000000));
        ck_assert_uint_eq(server_posts(&s, 422), OUTBOX_REJECTED_MAX + 3);
        rejected = path_join(outdir, "rejected");
        ck_assert_uint_eq(count_files(rejected), OUTBOX_REJECTED_MAX);
        for (unsigned i = 0; i < OUTBOX_REJECTED_MAX + 3; i++) {
                _cleanup_free_ char *p = NULL;

                ck_assert_int_ge(asprintf(&p, "%s/r%03u.json", rejected, i), 0);
                ck_assert_int_eq(access(p, F_OK) == 0, i >= 3);
        }
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_404_and_429_retried) {
        _cleanup_free_ char *keys = NULL, *rejected = NULL;
        Server s;
        Env env;

        /* A wrong endpoint is every report's problem: wait, do not reject. */
        server_start(&s, "--fail 2 --fail-status 404");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx10", "{}"), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        ck_assert_uint_eq(server_posts(&s, 404), 2);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx10");
        env_free(&env);
        server_stop(&s);

        server_start(&s, "--fail 2 --fail-status 429");
        env_new(&env, s.endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "tx11", "{}"), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        ck_assert_uint_eq(server_posts(&s, 429), 2);
        ck_assert_uint_eq(server_posts(&s, 201), 1);
        env_free(&env);
        server_stop(&s);

        rejected = path_join(outdir, "rejected");
        ck_assert_uint_eq(count_files(rejected), 0);
}
END_TEST

START_TEST(test_cap_drops_oldest) {
        _cleanup_free_ char *keys = NULL;
        char endpoint[128], key[16];
        int port = free_port();
        Server s;
        Env env;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", port);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_set_max_reports(env.o, 3), 0);
        for (int i = 1; i <= 5; i++) {
                snprintf(key, sizeof(key), "r%d", i);
                ck_assert_int_eq(outbox_queue(env.o, key, "{}"), 1);
                run_for(&env, 5 * 1000);
        }
        ck_assert_uint_eq(outbox_pending(env.o), 3);
        ck_assert_uint_eq(count_files(outdir), 3);
        ck_assert(!outbox_has("r1.json"));
        ck_assert(!outbox_has("r2.json"));

        server_start(&s, "--port %d", port);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "r3 r4 r5");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_resume_oldest_first) {
        _cleanup_free_ char *keys = NULL;
        /* Oldest first; "d" to "h" have the same time: name order, whatever
         * order the directory lists them in. */
        static const char *const order[] = {"c", "a", "b", "h", "g", "f", "e", "d"};
        char endpoint[128];
        int port = free_port();
        Server s;
        Env env;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", port);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, "a", "{}"), 1);
        ck_assert_int_eq(outbox_queue(env.o, "b", "{}"), 1);
        ck_assert_int_eq(outbox_queue(env.o, "c", "{}"), 1);
        for (size_t i = 3; i < ELEMENTSOF(order); i++)
                ck_assert_int_eq(outbox_queue(env.o, order[i], "{}"), 1);
        env_free(&env);
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                _cleanup_free_ char *name = NULL, *p = NULL;
                time_t t = 1700000000 + (time_t) MIN(i, (size_t) 3);
                struct timespec ts[2] = {{.tv_sec = t}, {.tv_sec = t}};

                ck_assert_int_ge(asprintf(&name, "%s.json", order[i]), 0);
                p = path_join(outdir, name);
                ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
        }

        server_start(&s, "--port %d", port);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_resume(env.o), 8);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "c a b d e f g h");
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_bad_input_refused) {
        _cleanup_free_ char *big = NULL, *long_key = NULL;
        char endpoint[128];
        Outbox *o = NULL;
        sd_event *other;
        Env env;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", free_port());
        env_new(&env, endpoint, NULL);

        /* A fetcher that drives another loop cannot send this one's reports. */
        ck_assert_int_ge(sd_event_new(&other), 0);
        ck_assert_int_eq(outbox_new(other, env.f, outdir, endpoint, &o), -EBUSY);
        ck_assert_ptr_null(o);
        sd_event_unref(other);
        /* Attaching again to the same loop is fine. */
        ck_assert_int_eq(fetcher_attach_event(env.f, env.e), 0);
        ck_assert_int_eq(outbox_new(env.e, env.f, outdir, endpoint, &o), 0);
        o = outbox_free(o);

        ck_assert_int_eq(outbox_queue(env.o, "", "{}"), -EINVAL);
        ck_assert_int_eq(outbox_queue(env.o, "a b", "{}"), -EINVAL);
        ck_assert_int_eq(outbox_queue(env.o, "caf\xc3\xa9", "{}"), -EINVAL);
        ck_assert_int_eq(outbox_queue(env.o, "tab\t", "{}"), -EINVAL);
        long_key = malloc(OUTBOX_KEY_MAX + 2);
        ck_assert_ptr_nonnull(long_key);
        memset(long_key, 'k', OUTBOX_KEY_MAX + 1);
        long_key[OUTBOX_KEY_MAX + 1] = 0;
        ck_assert_int_eq(outbox_queue(env.o, long_key, "{}"), -EINVAL);
        long_key[OUTBOX_KEY_MAX] = 0;
        ck_assert_int_eq(outbox_queue(env.o, long_key, "{}"), 1);

        ck_assert_int_eq(outbox_queue(env.o, "k1", "[1]"), -EPROTO);
        ck_assert_int_eq(outbox_queue(env.o, "k2", "{\"a\":"), -EPROTO);
        ck_assert_int_eq(outbox_queue(env.o, "k3", "{\"a\":1,\"a\":2}"), -EPROTO);
        ck_assert_int_eq(outbox_queue(env.o, "k4", "{} {}"), -EPROTO);
        big = malloc(OUTBOX_REPORT_MAX + 16);
        ck_assert_ptr_nonnull(big);
        memset(big, ' ', OUTBOX_REPORT_MAX + 15);
        big[0] = '{';
        big[OUTBOX_REPORT_MAX + 14] = '}';
        big[OUTBOX_REPORT_MAX + 15] = 0;
        ck_assert_int_eq(outbox_queue(env.o, "k5", big), -EFBIG);
        /* Nothing of the refused ones reached the disk. */
        ck_assert_uint_eq(count_files(outdir), 1);
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        env_free(&env);
}
END_TEST

START_TEST(test_key_escaped_in_name_and_url) {
        static const char key[] = "../a/b%c?d&e=f";
        _cleanup_free_ char *keys = NULL, *endpoint = NULL;
        Server s;
        Env env;
        json_t *a;

        server_start(&s, " ");
        /* An endpoint with a query of its own gets "&key=". */
        ck_assert_int_ge(asprintf(&endpoint, "%s?tenant=t1", s.endpoint), 0);
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_queue(env.o, key, "{}"), 1);
        ck_assert(outbox_has("%2E.%2Fa%2Fb%25c%3Fd%26e%3Df.json"));
        ck_assert_uint_eq(count_files(outdir), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        /* The server compares the query's key (decoded) with the body's. */
        ck_assert_uint_eq(server_posts(&s, 201), 1);
        a = server_get(&s, "requests");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "url")),
                         "/reports?tenant=t1&key=..%2Fa%2Fb%25c%3Fd%26e%3Df");
        json_decref(a);
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, key);
        env_free(&env);
        server_stop(&s);
}
END_TEST

START_TEST(test_foreign_files_left_alone) {
        char endpoint[128];
        Env env;

        snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/reports", free_port());
        ck_assert_int_eq(mkdir_p(outdir, 0700), 0);
        fixture_write(outdir, "notes.txt", "x", 1);
        fixture_write(outdir, "a%2fb.json", "{}", 2); /* not how we escape */
        fixture_write(outdir, "%2.json", "{}", 2);
        fixture_write(outdir, "bad key.json", "{}", 2);
        ck_assert_int_eq(mkdir_p(outdir, 0700), 0);
        {
                _cleanup_free_ char *d = path_join(outdir, "dir.json");

                ck_assert_int_eq(mkdir(d, 0700), 0);
        }
        env_new(&env, endpoint, NULL);
        ck_assert_int_eq(outbox_resume(env.o), 0);
        ck_assert_uint_eq(outbox_pending(env.o), 0);
        ck_assert_uint_eq(count_files(outdir), 4);
        env_free(&env);
}
END_TEST

/* A test CA and a server certificate for 127.0.0.1 made with openssl. */
static void make_certs(void) {
        char cmd[8192];
        int n;

        n = snprintf(
                cmd, sizeof(cmd),
                "(set -e; cd '%s'; "
                "for ca in ca other; do openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                "-nodes "
                "-days 2 -subj \"/CN=outbox test $ca\" -keyout $ca.key -out $ca.pem "
                "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign; done; "
                "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 "
                "-keyout server.key -out server.csr; "
                "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf; "
                "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
                "-extfile ext.cnf -out server.pem) 2>/dev/null",
                tmpdir);
        ck_assert_int_lt(n, (int) sizeof(cmd));
        ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_tls) {
        _cleanup_free_ char *keys = NULL;
        char ca[128], other[128];
        Server s;
        Env env;

        make_certs();
        snprintf(ca, sizeof(ca), "%s/ca.pem", tmpdir);
        snprintf(other, sizeof(other), "%s/other.pem", tmpdir);
        server_start(&s, "--cert '%s/server.pem' --key '%s/server.key'", tmpdir, tmpdir);
        ck_assert(strneq(s.endpoint, "https://", 8));
        snprintf(s.ca, sizeof(s.ca), "%s", ca);

        /* A server our CA did not sign is never sent the report. */
        env_new(&env, s.endpoint, other);
        ck_assert_int_eq(outbox_queue(env.o, "tx12-committed", report_json), 1);
        run_for(&env, 300 * 1000);
        ck_assert_uint_eq(outbox_pending(env.o), 1);
        ck_assert_uint_eq(server_posts(&s, -1), 0);
        env_free(&env);

        env_new(&env, s.endpoint, ca);
        ck_assert_int_eq(outbox_resume(env.o), 1);
        ck_assert(run_until_empty(&env, 10 * 1000000));
        keys = server_stored_keys(&s);
        ck_assert_str_eq(keys, "tx12-committed");
        env_free(&env);
        server_stop(&s);
}
END_TEST

static Suite *outbox_suite(void) {
        Suite *s = suite_create("outbox");
        TCase *tc = tcase_create("outbox");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_delivered_exactly_once);
        tcase_add_test(tc, test_retried_through_503);
        tcase_add_test(tc, test_server_down_then_up);
        tcase_add_test(tc, test_killed_before_delivery_resumes);
        tcase_add_test(tc, test_lost_answer_and_free_in_flight);
        tcase_add_test(tc, test_attempt_timeout_retries);
        tcase_add_test(tc, test_same_key_twice);
        tcase_add_test(tc, test_400_rejected_not_retried);
        tcase_add_test(tc, test_rejected_dir_capped);
        tcase_add_test(tc, test_404_and_429_retried);
        tcase_add_test(tc, test_cap_drops_oldest);
        tcase_add_test(tc, test_resume_oldest_first);
        tcase_add_test(tc, test_bad_input_refused);
        tcase_add_test(tc, test_key_escaped_in_name_and_url);
        tcase_add_test(tc, test_foreign_files_left_alone);
        tcase_add_test(tc, test_tls);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(outbox_suite());
        int failed;

        if (getenv("OOB_TEST_DEBUG"))
                log_set_max_level(LOG_LEVEL_DEBUG);

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

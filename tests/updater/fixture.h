/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the updater suites: a temp dir, and tests/nginx-fixture started
 * once per test case (an unchecked fixture, so it lives in the parent of the
 * forked tests) and stopped at the end.
 */

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lib.h"

typedef struct Nginx {
        char state[PATH_MAX]; /* STATE_DIR; files are served from STATE_DIR/www */
        char www[PATH_MAX];
        char https[256]; /* https://127.0.0.1:PORT */
        char http[256];  /* http://127.0.0.1:PORT */
        char ca[PATH_MAX];
        char log[PATH_MAX];
        char script[PATH_MAX];
} Nginx;

static int fixture_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static _unused_ void fixture_rm_rf(const char *dir) {
        if (dir && dir[0])
                (void) nftw(dir, fixture_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tests/nginx-fixture, relative to the working directory (make runs the
 * tests from the top of the tree) or else found above our binary. */
static _unused_ void fixture_find_script(char *buf, size_t size) {
        char exe[PATH_MAX];
        ssize_t n;

        if (access("tests/nginx-fixture", X_OK) == 0) {
                snprintf(buf, size, "tests/nginx-fixture");
                return;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = 0;
        for (char *slash = strrchr(exe, '/'); slash; slash = strrchr(exe, '/')) {
                *slash = 0;
                if (snprintf(buf, size, "%s/tests/nginx-fixture", exe) >= (int) size)
                        continue;
                if (access(buf, X_OK) == 0)
                        return;
        }
        ck_abort_msg("tests/nginx-fixture not found (run the tests from the top of the tree)");
}

static _unused_ bool fixture_take(const char *line, const char *key, char *buf, size_t size) {
        const char *p = strstr(line, key);
        size_t n;

        if (!p)
                return false;
        p += strlen(key);
        n = strcspn(p, " \n");
        if (n == 0 || n >= size)
                return false;
        memcpy(buf, p, n);
        buf[n] = 0;
        return true;
}

/* Start nginx serving a fresh temp dir; aborts the test case if it cannot. */
static _unused_ void nginx_start(Nginx *n) {
        char cmd[PATH_MAX * 2], line[4096] = "";
        FILE *p;

        memset(n, 0, sizeof(*n));
        fixture_find_script(n->script, sizeof(n->script));
        strcpy(n->state, "/tmp/oob-test-nginx.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(n->state));
        ck_assert_int_lt(snprintf(n->www, sizeof(n->www), "%s/www", n->state), (int) sizeof(n->www));

        ck_assert_int_lt(snprintf(cmd, sizeof(cmd), "'%s' start '%s'", n->script, n->state),
                         (int) sizeof(cmd));
        p = popen(cmd, "r");
        ck_assert_ptr_nonnull(p);
        if (!fgets(line, sizeof(line), p))
                line[0] = 0;
        ck_assert_int_eq(pclose(p), 0);

        ck_assert_msg(fixture_take(line, "NGINX_HTTPS=", n->https, sizeof(n->https)) &&
                              fixture_take(line, "NGINX_HTTP=", n->http, sizeof(n->http)) &&
                              fixture_take(line, "NGINX_CA=", n->ca, sizeof(n->ca)) &&
                              fixture_take(line, "NGINX_LOG=", n->log, sizeof(n->log)),
                      "unexpected nginx-fixture output: %s", line);
}

static _unused_ void nginx_stop(Nginx *n) {
        char cmd[PATH_MAX * 2];

        if (!n->state[0])
                return;
        if (snprintf(cmd, sizeof(cmd), "'%s' stop '%s'", n->script, n->state) >= (int) sizeof(cmd))
                return;
        (void) system(cmd);
        fixture_rm_rf(n->state);
        n->state[0] = 0;
}

/* Write a file (creating parent directories). */
static _unused_ void fixture_write_path(const char *p, const void *data, size_t size) {
        _cleanup_free_ char *d = NULL;
        char *slash;

        d = strdup(p);
        ck_assert_ptr_nonnull(d);
        slash = strrchr(d, '/');
        *slash = 0;
        ck_assert_int_eq(mkdir_p(d, 0755), 0);
        ck_assert_int_eq(write_file_atomic(p, data, size, 0644), 0);
}

static _unused_ void fixture_write(const char *dir, const char *rel, const void *data, size_t size) {
        _cleanup_free_ char *p = path_join(dir, rel);

        ck_assert_ptr_nonnull(p);
        fixture_write_path(p, data, size);
}

/* Count the log lines of requests "GET PATH" answered with status. */
static _unused_ unsigned nginx_count(const Nginx *n, const char *path, int status) {
        _cleanup_free_ char *data = NULL;
        char needle[PATH_MAX];
        unsigned count = 0;
        size_t size;

        snprintf(needle, sizeof(needle), "\"GET %s HTTP/1.1\" %d ", path, status);
        if (read_full_file(n->log, 64 * 1024 * 1024, &data, &size) < 0)
                return 0;
        for (const char *p = strstr(data, needle); p; p = strstr(p + 1, needle))
                count++;
        return count;
}

/* The body bytes nginx sent ($body_bytes_sent of the log lines) for the
 * requests "GET PATH" answered with status, summed; *ret_count (may be
 * NULL) gets how many lines there were. */
static _unused_ uint64_t nginx_bytes(const Nginx *n, const char *path, int status, unsigned *ret_count) {
        _cleanup_free_ char *data = NULL;
        char needle[PATH_MAX];
        unsigned count = 0;
        uint64_t sum = 0;
        size_t size;

        snprintf(needle, sizeof(needle), "\"GET %s HTTP/1.1\" %d ", path, status);
        if (read_full_file(n->log, 64 * 1024 * 1024, &data, &size) >= 0)
                for (const char *p = strstr(data, needle); p; p = strstr(p + 1, needle)) {
                        sum += strtoull(p + strlen(needle), NULL, 10);
                        count++;
                }
        if (ret_count)
                *ret_count = count;
        return sum;
}

/* ---- a one-shot server for what nginx cannot be made to do ------------------ */

typedef struct MiniServer {
        pid_t pid;
        int port;
} MiniServer;

/* One answer of the server: head (status line and headers, ending in an
 * empty line), then body_bytes of body, or of 'x' when body is NULL
 * (UINT64_MAX: without end, 64 KiB every 10 ms for 10 s, so a client
 * without a cap shows up as slow, without filling the disk). A body shorter
 * than the head's Content-Length serves a truncated download. With chunk
 * set, the body trickles: chunk bytes, then a pause of delay_ms. An empty
 * head with hold_ms makes a server that accepts and never answers. */
typedef struct MiniReply {
        const char *head;
        const void *body;
        uint64_t body_bytes;
        size_t chunk;
        unsigned delay_ms;
        unsigned hold_ms; /* keep the connection open this long, silent */
} MiniReply;

#define MINI_REQUEST_MAX (4U * 1024U * 1024U)

/* Read one request: the head, and as much body as its Content-Length says. */
static _unused_ size_t mini_read_request(int c, char *req, size_t size) {
        size_t got = 0, need = SIZE_MAX;

        while (got < size - 1 && got < need) {
                ssize_t n = read(c, req + got, size - 1 - got);
                char *end;

                if (n <= 0)
                        break;
                got += (size_t) n;
                req[got] = 0;
                if (need == SIZE_MAX && (end = strstr(req, "\r\n\r\n"))) {
                        const char *cl = strcasestr(req, "\r\nContent-Length:");
                        size_t head = (size_t) (end - req) + 4;

                        need = head;
                        if (cl && cl < end)
                                need += strtoul(cl + STRLEN("\r\nContent-Length:"), NULL, 10);
                }
        }
        return got;
}

/*
 * Serve n connections on 127.0.0.1, one request each, answering the i-th
 * with replies[i] and closing it, in a child process that lives at most
 * 30 s. With record set, request i (head and body, as received) is written
 * to "RECORD.i" before it is answered.
 */
static _unused_ void mini_server_start_replies(MiniServer *m, const MiniReply *replies, size_t n,
                                               const char *record) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        bool endless = false;
        int fd;

        for (size_t i = 0; i < n; i++)
                endless = endless || replies[i].body_bytes == UINT64_MAX;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(listen(fd, 4), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        m->port = ntohs(a.sin_port);

        m->pid = fork();
        ck_assert_int_ge(m->pid, 0);
        if (m->pid == 0) {
                static char buf[65536];
                char *req = malloc(MINI_REQUEST_MAX);

                signal(SIGPIPE, SIG_IGN);
                /* Check's timeout handler is inherited: ours must only end us. */
                signal(SIGALRM, SIG_DFL);
                alarm(endless ? 10 : 30); /* never outlive a broken test */
                if (!req)
                        _exit(1);
                memset(buf, 'x', sizeof(buf));
                for (size_t i = 0; i < n; i++) {
                        const MiniReply *r = &replies[i];
                        const char *body = r->body;
                        uint64_t left = r->body_bytes;
                        size_t got;
                        int c;

                        c = accept(fd, NULL, NULL);
                        if (c < 0)
                                _exit(1);
                        got = mini_read_request(c, req, MINI_REQUEST_MAX);
                        if (record) {
                                char path[PATH_MAX];

                                snprintf(path, sizeof(path), "%s.%zu", record, i);
                                if (write_file_atomic(path, req, got, 0644) < 0)
                                        _exit(1);
                        }
                        if (write(c, r->head, strlen(r->head)) < 0) {
                                close(c);
                                continue;
                        }
                        while (left > 0) {
                                const void *p = body ?: buf;
                                size_t chunk = body ? (size_t) MIN(left, (uint64_t) SSIZE_MAX)
                                                    : (size_t) MIN(left, sizeof(buf));
                                ssize_t k;

                                if (r->chunk > 0)
                                        chunk = MIN(chunk, r->chunk);
                                k = write(c, p, chunk);
                                if (k <= 0)
                                        break; /* the client hung up */
                                if (left != UINT64_MAX)
                                        left -= (uint64_t) k;
                                else
                                        usleep(10000);
                                if (body)
                                        body += k;
                                if (r->delay_ms > 0 && left > 0)
                                        usleep(r->delay_ms * 1000U);
                        }
                        if (r->hold_ms > 0)
                                usleep(r->hold_ms * 1000U);
                        close(c);
                }
                _exit(0);
        }
        close(fd);
}

/* Answer the first request on 127.0.0.1 with head, then body_bytes of 'x'
 * (close-delimited, no Content-Length), as mini_server_start_replies(). */
static _unused_ void mini_server_start(MiniServer *m, const char *head, uint64_t body_bytes) {
        MiniReply r = {.head = head, .body_bytes = body_bytes};

        mini_server_start_replies(m, &r, 1, NULL);
}

static _unused_ void mini_server_stop(MiniServer *m) {
        if (m->pid > 0) {
                kill(m->pid, SIGKILL);
                (void) waitpid(m->pid, NULL, 0);
                m->pid = 0;
        }
}

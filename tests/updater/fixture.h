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

/* ---- a one-shot server for what nginx cannot be made to do ------------------ */

typedef struct MiniServer {
        pid_t pid;
        int port;
} MiniServer;

/* Answer the first request on 127.0.0.1 with head, then body_bytes of 'x'
 * (close-delimited, no Content-Length), in a child process that lives at
 * most 30 s. UINT64_MAX: without end, 64 KiB every 10 ms for 10 s (so a
 * client without a cap shows up as slow, without filling the disk). */
static _unused_ void mini_server_start(MiniServer *m, const char *head, uint64_t body_bytes) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        ck_assert_int_eq(listen(fd, 4), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        m->port = ntohs(a.sin_port);

        m->pid = fork();
        ck_assert_int_ge(m->pid, 0);
        if (m->pid == 0) {
                char buf[65536], req[4096];
                size_t got = 0;
                int c;

                signal(SIGPIPE, SIG_IGN);
                /* Check's timeout handler is inherited: ours must only end us. */
                signal(SIGALRM, SIG_DFL);
                alarm(body_bytes == UINT64_MAX ? 10 : 30); /* never outlive a broken test */
                c = accept(fd, NULL, NULL);
                if (c < 0)
                        _exit(1);
                while (got < sizeof(req) - 1) {
                        ssize_t n = read(c, req + got, sizeof(req) - 1 - got);
                        if (n <= 0)
                                break;
                        got += (size_t) n;
                        req[got] = 0;
                        if (strstr(req, "\r\n\r\n"))
                                break;
                }
                if (write(c, head, strlen(head)) < 0)
                        _exit(1);
                memset(buf, 'x', sizeof(buf));
                while (body_bytes > 0) {
                        ssize_t n = write(c, buf, MIN(body_bytes, sizeof(buf)));
                        if (n <= 0)
                                _exit(0); /* the client hung up */
                        if (body_bytes != UINT64_MAX)
                                body_bytes -= (uint64_t) n;
                        else
                                usleep(10000);
                }
                _exit(0);
        }
        close(fd);
}

static _unused_ void mini_server_stop(MiniServer *m) {
        if (m->pid > 0) {
                kill(m->pid, SIGKILL);
                (void) waitpid(m->pid, NULL, 0);
                m->pid = 0;
        }
}

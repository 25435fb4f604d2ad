/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the updater suites: a temp dir, and tests/nginx-fixture started
 * once per test case (an unchecked fixture, so it lives in the parent of the
 * forked tests) and stopped at the end.
 */

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>

#include "lib.h"

typedef struct Nginx {
        char state[PATH_MAX];          /* STATE_DIR; files are served from STATE_DIR/www */
        char www[PATH_MAX];
        char https[256];               /* https://127.0.0.1:PORT */
        char http[256];                /* http://127.0.0.1:PORT */
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

        ck_assert_int_lt(snprintf(cmd, sizeof(cmd), "'%s' start '%s'", n->script, n->state), (int) sizeof(cmd));
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

/* Write a file under dir (creating parent directories). */
static _unused_ void fixture_write(const char *dir, const char *rel, const void *data, size_t size) {
        _cleanup_free_ char *p = path_join(dir, rel), *d = NULL;
        char *slash;

        ck_assert_ptr_nonnull(p);
        d = strdup(p);
        ck_assert_ptr_nonnull(d);
        slash = strrchr(d, '/');
        *slash = 0;
        ck_assert_int_eq(mkdir_p(d, 0755), 0);
        ck_assert_int_eq(write_file_atomic(p, data, size, 0644), 0);
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

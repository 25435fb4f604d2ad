/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the disk tests of hv/ (qcow2, nbd, partition, ntfs): a temp dir
 * fixture and the real tools that build disks and read them back
 * independently of our code (truncate, mkntfs, sgdisk, qemu-img, qemu-io,
 * ntfscp, ntfscat, ntfsls). Tests only: commands go through the shell.
 */

#include <check.h>
#include <ftw.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lib.h"

static char disk_tmpdir[64];

_unused_ static int disk_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

_unused_ static void disk_setup(void) {
        strcpy(disk_tmpdir, "/tmp/oob-test-disk.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(disk_tmpdir));
}

_unused_ static void disk_teardown(void) {
        nftw(disk_tmpdir, disk_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path inside the temp dir; static storage, a few in rotation. */
_unused_ static const char *tmp_path(const char *name) {
        static char buf[8][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, PATH_MAX, "%s/%s", disk_tmpdir, name);
        return p;
}

/* Run a shell command (formatted); returns its exit status. Output goes to
 * /dev/null unless the command redirects it itself. */
_unused_ _printf_(1, 2) static int sh(const char *fmt, ...) {
        char cmd[8192];
        va_list ap;
        int status;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        status = system(cmd);
        if (status < 0 || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

#define SH_OK(...) ck_assert_msg(sh(__VA_ARGS__) == 0, "command failed")

/* The command's stdout (capped), for checks on what the tools print. */
_unused_ _printf_(1, 2) static char *sh_output(const char *fmt, ...) {
        char cmd[8192];
        static char out[65536];
        size_t n = 0;
        va_list ap;
        FILE *f;

        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        f = popen(cmd, "r");
        ck_assert_ptr_nonnull(f);
        while (n < sizeof(out) - 1) {
                size_t k = fread(out + n, 1, sizeof(out) - 1 - n, f);
                if (k == 0)
                        break;
                n += k;
        }
        out[n] = 0;
        pclose(f);
        return out;
}

/* A fresh NTFS volume filling a whole raw file. */
_unused_ static void make_ntfs_raw(const char *path, unsigned size_mb, const char *label) {
        SH_OK("rm -f '%s' && truncate -s %uM '%s' && mkntfs -F -f -q -L '%s' '%s' >/dev/null 2>&1", path, size_mb,
              path, label, path);
}

_unused_ static void raw_to_qcow2(const char *raw, const char *qcow2) {
        SH_OK("qemu-img convert -f raw -O qcow2 '%s' '%s'", raw, qcow2);
}

_unused_ static void qcow2_to_raw(const char *qcow2, const char *raw) {
        SH_OK("rm -f '%s' && qemu-img convert -f qcow2 -O raw '%s' '%s'", raw, qcow2, raw);
}

/* Copy a host file into the NTFS volume of a raw file (ntfscp). */
_unused_ static void ntfs_put(const char *raw, const char *host_file, const char *dest) {
        SH_OK("ntfscp -q -f '%s' '%s' '%s' >/dev/null 2>&1", raw, host_file, dest);
}

_unused_ static void write_host_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, size, f), size);
        ck_assert_int_eq(fclose(f), 0);
}

_unused_ static char *file_sha256(const char *path) {
        char *out = sh_output("sha256sum '%s' | cut -c1-64", path);

        ck_assert_uint_eq(strlen(out), 65);
        return strndup(out, 64);
}

/* Deterministic pseudo-random bytes (xorshift), so that data is not
 * compressible or zero and a misplaced block shows. */
_unused_ static void fill_pattern(uint8_t *p, size_t n, uint64_t seed) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t) x;
        }
}

/* No child process of ours is left (qemu-img, qemu-nbd were reaped). */
_unused_ static bool no_children_left(void) {
        return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

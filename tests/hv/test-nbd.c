/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The offline disk: qemu-nbd started by libnbd; contents checked with qemu-io. */

#include "hv-internal.h"
#include "helpers-disk.h"

#define MiB (1024ULL * 1024ULL)

static bool qemu_io_pattern(const char *fmt, const char *img, unsigned pattern, uint64_t offset, uint64_t len) {
        const char *out = sh_output("qemu-io -f %s -c 'read -P 0x%02x %llu %llu' '%s' 2>&1", fmt, pattern,
                                    (unsigned long long) offset, (unsigned long long) len, img);
        return !strstr(out, "Pattern verification failed") && strstr(out, "read ");
}

START_TEST(test_read_raw) {
        const char *img = tmp_path("disk.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        uint8_t buf[4096];

        SH_OK("truncate -s 8M '%s' && qemu-io -f raw -c 'write -P 0x61 4096 4096' '%s' >/dev/null", img, img);
        ck_assert_int_eq(offline_disk_open(img, false, false, &d), 0);
        ck_assert_uint_eq(offline_disk_size(d), 8 * MiB);
        ck_assert(!offline_disk_is_writable(d));
        ck_assert_int_eq(offline_disk_pread(d, buf, sizeof(buf), 4096), 0);
        for (size_t i = 0; i < sizeof(buf); i++)
                ck_assert_uint_eq(buf[i], 0x61);
        ck_assert_int_eq(offline_disk_pread(d, buf, 512, 0), 0);
        ck_assert_uint_eq(buf[0], 0);

        /* Read-only: no writes, and nothing beyond the end. */
        ck_assert_int_eq(offline_disk_pwrite(d, buf, 512, 0), -EROFS);
        ck_assert_int_eq(offline_disk_pread(d, buf, 512, 8 * MiB - 256), -EINVAL);
        ck_assert_int_eq(offline_disk_pread(d, buf, 1, UINT64_MAX), -EINVAL);
        ck_assert_int_eq(offline_disk_flush(d), 0);
        d = offline_disk_close(d);
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_write_qcow2_large_requests) {
        const char *img = tmp_path("disk.qcow2"), *raw = tmp_path("out.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ uint8_t *data = NULL, *back = NULL, *file = NULL;
        const size_t size = 40 * MiB;      /* more than one NBD request */
        size_t file_size;

        SH_OK("qemu-img create -q -f qcow2 '%s' 64M", img);
        data = malloc(size);
        back = malloc(size);
        ck_assert(data && back);
        fill_pattern(data, size, 7);

        ck_assert_int_eq(offline_disk_open(img, true, false, &d), 0);
        ck_assert(offline_disk_is_writable(d));
        ck_assert_int_eq(offline_disk_pwrite(d, data, size, 3 * MiB + 512), 0);
        ck_assert_int_eq(offline_disk_pread(d, back, size, 3 * MiB + 512), 0);
        ck_assert(memcmp(data, back, size) == 0);
        ck_assert_int_eq(offline_disk_pwrite(d, data, 1024, 64 * MiB - 512), -EINVAL);
        ck_assert_int_eq(offline_disk_flush(d), 0);
        d = offline_disk_close(d);
        ck_assert(no_children_left());

        /* Independently: the image as qemu-img sees it once we are gone. */
        qcow2_to_raw(img, raw);
        ck_assert_int_eq(read_full_file(raw, 128 * MiB, (char **) &file, &file_size), 0);
        ck_assert_uint_eq(file_size, 64 * MiB);
        ck_assert(memcmp(file + 3 * MiB + 512, data, size) == 0);
        ck_assert(file[0] == 0 && memcmp(file, file + 1, 3 * MiB + 511) == 0);
}
END_TEST

START_TEST(test_running_desktop_refused) {
        const char *img = tmp_path("disk.qcow2");
        _cleanup_free_ char *before = NULL, *after = NULL;
        OfflineDisk *d = NULL;

        SH_OK("qemu-img create -q -f qcow2 '%s' 16M", img);
        before = file_sha256(img);
        ck_assert_int_eq(offline_disk_open(img, true, true, &d), -EBUSY);
        ck_assert_ptr_null(d);
        /* Refused before anything was started. */
        ck_assert(no_children_left());
        after = file_sha256(img);
        ck_assert_str_eq(before, after);
}
END_TEST

START_TEST(test_image_lock) {
        const char *img = tmp_path("disk.qcow2");
        _cleanup_(offline_disk_closep) OfflineDisk *w = NULL, *r = NULL;
        OfflineDisk *w2 = NULL;
        uint8_t buf[512];

        SH_OK("qemu-img create -q -f qcow2 '%s' 16M", img);
        ck_assert_int_eq(offline_disk_open(img, true, false, &w), 0);
        memset(buf, 0x7e, sizeof(buf));
        ck_assert_int_eq(offline_disk_pwrite(w, buf, sizeof(buf), 0), 0);
        ck_assert_int_eq(offline_disk_flush(w), 0);

        /* As if a running QEMU held the image: a second writer is refused by
         * qemu's image locking even though the caller said "not running". */
        ck_assert_int_eq(offline_disk_open(img, true, false, &w2), -EBUSY);
        ck_assert_ptr_null(w2);

        /* A read-only look at a running desktop's disk shares the lock. */
        ck_assert_int_eq(offline_disk_open(img, false, true, &r), 0);
        memset(buf, 0, sizeof(buf));
        ck_assert_int_eq(offline_disk_pread(r, buf, sizeof(buf), 0), 0);
        ck_assert_uint_eq(buf[0], 0x7e);
        ck_assert_uint_eq(buf[511], 0x7e);

        r = offline_disk_close(r);
        w = offline_disk_close(w);
        ck_assert(no_children_left());
        /* The lock went with qemu-nbd. */
        ck_assert_int_eq(offline_disk_open(img, true, false, &w), 0);
        w = offline_disk_close(w);
        ck_assert(qemu_io_pattern("qcow2", img, 0x7e, 0, 512));
}
END_TEST

START_TEST(test_write_through_overlay) {
        /* The patching flow: an overlay on the snapshot takes every write. */
        const char *base = tmp_path("base.qcow2"), *top = tmp_path("top.qcow2");
        _cleanup_free_ char *base_before = NULL, *base_after = NULL;
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        uint8_t buf[65536];

        SH_OK("qemu-img create -q -f qcow2 '%s' 16M && qemu-io -f qcow2 -c 'write -P 0x10 0 1M' '%s' >/dev/null",
              base, base);
        ck_assert_int_eq(disk_create_overlay(base, top), 0);
        base_before = file_sha256(base);

        ck_assert_int_eq(offline_disk_open(top, true, false, &d), 0);
        ck_assert_uint_eq(offline_disk_size(d), 16 * MiB);
        ck_assert_int_eq(offline_disk_pread(d, buf, sizeof(buf), 0), 0);
        ck_assert_uint_eq(buf[0], 0x10);
        memset(buf, 0x20, sizeof(buf));
        ck_assert_int_eq(offline_disk_pwrite(d, buf, sizeof(buf), 65536), 0);
        d = offline_disk_close(d);

        base_after = file_sha256(base);
        ck_assert_str_eq(base_before, base_after);
        ck_assert(qemu_io_pattern("qcow2", top, 0x20, 65536, 65536));
        ck_assert(qemu_io_pattern("qcow2", top, 0x10, 0, 65536));
        ck_assert(qemu_io_pattern("qcow2", base, 0x10, 65536, 65536));

        /* A missing backing file is a missing file. */
        ck_assert_int_eq(unlink(base), 0);
        ck_assert_int_eq(offline_disk_open(top, false, false, &d), -ENOENT);
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_open_errors) {
        const char *img = tmp_path("nope.qcow2"), *dir = tmp_path("sub");
        OfflineDisk *d = NULL;

        ck_assert_int_eq(offline_disk_open(img, false, false, &d), -ENOENT);
        ck_assert_int_eq(mkdir(dir, 0700), 0);
        ck_assert_int_eq(offline_disk_open(dir, false, false, &d), -EINVAL);
        ck_assert_ptr_null(d);
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_path_with_comma) {
        /* --image-opts needs commas doubled: the read-only running case. */
        const char *img = tmp_path("a,b.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        uint8_t b;

        SH_OK("truncate -s 1M '%s' && qemu-io -f raw -c 'write -P 0x3c 0 512' '%s' >/dev/null", img, img);
        ck_assert_int_eq(offline_disk_open(img, false, true, &d), 0);
        ck_assert_int_eq(offline_disk_pread(d, &b, 1, 100), 0);
        ck_assert_uint_eq(b, 0x3c);
}
END_TEST

static Suite *nbd_suite(void) {
        Suite *s = suite_create("nbd");
        TCase *tc = tcase_create("qemu-nbd");

        tcase_add_checked_fixture(tc, disk_setup, disk_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_read_raw);
        tcase_add_test(tc, test_write_qcow2_large_requests);
        tcase_add_test(tc, test_running_desktop_refused);
        tcase_add_test(tc, test_image_lock);
        tcase_add_test(tc, test_write_through_overlay);
        tcase_add_test(tc, test_open_errors);
        tcase_add_test(tc, test_path_with_comma);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(nbd_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* qcow2 chains through the real qemu-img; contents checked with qemu-io. */

#include <arpa/inet.h>
#include <fcntl.h>

#include "hv.h"
#include "helpers-disk.h"

#define MiB (1024ULL * 1024ULL)
#define GiB (1024ULL * MiB)

/* qemu-io exits 0 even when a pattern check fails: look at what it prints. */
static bool qemu_io_pattern(const char *fmt, const char *img, unsigned pattern, uint64_t offset, uint64_t len) {
        const char *out = sh_output("qemu-io -f %s -c 'read -P 0x%02x %llu %llu' '%s' 2>&1", fmt, pattern,
                                    (unsigned long long) offset, (unsigned long long) len, img);
        return !strstr(out, "Pattern verification failed") && strstr(out, "read ");
}

START_TEST(test_create_and_chain_info) {
        const char *img = tmp_path("base.qcow2");
        DiskLayer *layers = NULL;
        size_t n = 0;

        ck_assert_int_eq(disk_create(img, 64 * MiB), 0);
        ck_assert_int_eq(disk_chain_info(img, &layers, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(layers[0].path, img);
        ck_assert_str_eq(layers[0].format, "qcow2");
        ck_assert_uint_eq(layers[0].virtual_size, 64 * MiB);
        ck_assert_uint_gt(layers[0].actual_size, 0);
        ck_assert_uint_lt(layers[0].actual_size, 1 * MiB);
        ck_assert_ptr_null(layers[0].backing);
        disk_chain_free(layers, n);
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_create_never_overwrites) {
        const char *img = tmp_path("base.qcow2");
        _cleanup_free_ char *before = NULL, *after = NULL;

        ck_assert_int_eq(disk_create(img, 64 * MiB), 0);
        SH_OK("qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' '%s' >/dev/null", img);
        before = file_sha256(img);
        ck_assert_int_eq(disk_create(img, 64 * MiB), -EEXIST);
        ck_assert_int_eq(disk_create_overlay(img, img), -EEXIST);
        after = file_sha256(img);
        ck_assert_str_eq(before, after);
        ck_assert(qemu_io_pattern("qcow2", img, 0x5a, 0, 65536));
}
END_TEST

START_TEST(test_overlay_absolute_backing_and_format) {
        const char *base = tmp_path("base.qcow2"), *top = tmp_path("top.qcow2");
        _cleanup_free_ char *cwd = get_current_dir_name();
        DiskLayer *layers = NULL;
        size_t n = 0;
        const char *info;

        ck_assert_int_eq(disk_create(base, 64 * MiB), 0);
        /* Relative names in: the overlay must still record an absolute path. */
        ck_assert_int_eq(chdir(disk_tmpdir), 0);
        ck_assert_int_eq(disk_create_overlay("base.qcow2", "top.qcow2"), 0);
        ck_assert_int_eq(chdir(cwd), 0);

        info = sh_output("qemu-img info --output=json '%s'", top);
        ck_assert_ptr_nonnull(strstr(info, "\"backing-filename-format\": \"qcow2\""));
        ck_assert_msg(strstr(info, "\"backing-filename\": \"/"), "backing path not absolute: %s", info);

        ck_assert_int_eq(disk_chain_info(top, &layers, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(layers[0].path, top);
        ck_assert_str_eq(layers[0].backing, base);
        ck_assert_str_eq(layers[1].path, base);
        ck_assert_ptr_null(layers[1].backing);
        ck_assert_uint_eq(layers[0].virtual_size, 64 * MiB);
        disk_chain_free(layers, n);
}
END_TEST

START_TEST(test_overlay_of_raw_base) {
        const char *base = tmp_path("base.raw"), *top = tmp_path("top.qcow2");
        const char *info;

        SH_OK("truncate -s 16M '%s'", base);
        ck_assert_int_eq(disk_create_overlay(base, top), 0);
        info = sh_output("qemu-img info --output=json '%s'", top);
        ck_assert_ptr_nonnull(strstr(info, "\"backing-filename-format\": \"raw\""));
}
END_TEST

START_TEST(test_overlay_large_disk) {
        /* O(1): a 64 GiB base costs no more than a small one. */
        const char *base = tmp_path("big.qcow2"), *top = tmp_path("big-top.qcow2");
        DiskLayer *layers = NULL;
        size_t n = 0;

        ck_assert_int_eq(disk_create(base, 64 * GiB), 0);
        ck_assert_int_eq(disk_create_overlay(base, top), 0);
        ck_assert_int_eq(disk_chain_info(top, &layers, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(layers[0].virtual_size, 64 * GiB);
        ck_assert_uint_lt(layers[0].actual_size, 1 * MiB);
        disk_chain_free(layers, n);
}
END_TEST

START_TEST(test_chain_of_three) {
        const char *a = tmp_path("a.qcow2"), *b = tmp_path("b.qcow2"), *c = tmp_path("c.qcow2");
        DiskLayer *layers = NULL;
        size_t n = 0;

        ck_assert_int_eq(disk_create(a, 8 * MiB), 0);
        ck_assert_int_eq(disk_create_overlay(a, b), 0);
        ck_assert_int_eq(disk_create_overlay(b, c), 0);
        ck_assert_int_eq(disk_chain_info(c, &layers, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_str_eq(layers[0].backing, b);
        ck_assert_str_eq(layers[1].backing, a);
        ck_assert_str_eq(layers[2].path, a);
        disk_chain_free(layers, n);
}
END_TEST

START_TEST(test_missing_files) {
        const char *base = tmp_path("base.qcow2"), *top = tmp_path("top.qcow2");
        DiskLayer *layers = NULL;
        size_t n = 0;

        ck_assert_int_eq(disk_chain_info(tmp_path("nope.qcow2"), &layers, &n), -ENOENT);
        ck_assert_int_eq(disk_create_overlay(tmp_path("nope.qcow2"), top), -ENOENT);
        ck_assert_int_eq(access(top, F_OK), -1);
        ck_assert_int_eq(disk_check(tmp_path("nope.qcow2")), -ENOENT);

        /* A chain whose backing file went away. */
        ck_assert_int_eq(disk_create(base, 8 * MiB), 0);
        ck_assert_int_eq(disk_create_overlay(base, top), 0);
        ck_assert_int_eq(unlink(base), 0);
        ck_assert_int_eq(disk_chain_info(top, &layers, &n), -ENOENT);
}
END_TEST

START_TEST(test_commit) {
        const char *raw = tmp_path("seed.raw"), *base = tmp_path("base.qcow2"), *top = tmp_path("top.qcow2");
        DiskLayer *layers = NULL;
        size_t n = 0;

        SH_OK("truncate -s 8M '%s' && qemu-io -f raw -c 'write -P 0x11 0 8M' '%s' >/dev/null", raw, raw);
        raw_to_qcow2(raw, base);
        ck_assert_int_eq(disk_create_overlay(base, top), 0);
        SH_OK("qemu-io -f qcow2 -c 'write -P 0xab 1M 64k' '%s' >/dev/null", top);
        /* Not yet in the base. */
        ck_assert(qemu_io_pattern("qcow2", base, 0x11, 1 * MiB, 65536));

        ck_assert_int_eq(disk_commit(top), 0);
        ck_assert(qemu_io_pattern("qcow2", base, 0xab, 1 * MiB, 65536));
        ck_assert(qemu_io_pattern("qcow2", base, 0x11, 0, 1 * MiB));
        ck_assert(qemu_io_pattern("qcow2", base, 0x11, 1 * MiB + 65536, 1 * MiB));
        /* The overlay stays valid and shows the same contents. */
        ck_assert_int_eq(sh("qemu-img compare -q '%s' '%s'", base, top), 0);
        ck_assert_int_eq(disk_check(base), 0);

        /* An image without a backing file is not an overlay. */
        ck_assert_int_eq(disk_commit(base), -EINVAL);
        ck_assert_int_eq(disk_chain_info(top, &layers, &n), 0);
        ck_assert_uint_eq(n, 2);
        disk_chain_free(layers, n);
}
END_TEST

START_TEST(test_rebase_unsafe) {
        const char *a = tmp_path("a.qcow2"), *b = tmp_path("b.qcow2"), *top = tmp_path("top.qcow2");
        const char *info;
        DiskLayer *layers = NULL;
        size_t n = 0;

        ck_assert_int_eq(disk_create(a, 8 * MiB), 0);
        SH_OK("qemu-io -f qcow2 -c 'write -P 0x22 0 1M' '%s' >/dev/null", a);
        SH_OK("cp '%s' '%s'", a, b);
        ck_assert_int_eq(disk_create_overlay(a, top), 0);
        SH_OK("qemu-io -f qcow2 -c 'write -P 0x33 1M 64k' '%s' >/dev/null", top);

        ck_assert_int_eq(disk_rebase_unsafe(top, b), 0);
        ck_assert_int_eq(unlink(a), 0);
        ck_assert_int_eq(disk_chain_info(top, &layers, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(layers[0].backing, b);
        disk_chain_free(layers, n);
        info = sh_output("qemu-img info --output=json '%s'", top);
        ck_assert_ptr_nonnull(strstr(info, "\"backing-filename-format\": \"qcow2\""));
        /* Both layers' data still visible through the overlay. */
        ck_assert(qemu_io_pattern("qcow2", top, 0x22, 0, 1 * MiB));
        ck_assert(qemu_io_pattern("qcow2", top, 0x33, 1 * MiB, 65536));

        ck_assert_int_eq(disk_rebase_unsafe(top, tmp_path("nope.qcow2")), -ENOENT);
        ck_assert_int_eq(disk_rebase_unsafe(b, top), -EINVAL);    /* b has no backing */
}
END_TEST

/* Big-endian fields of a qcow2 header. */
static uint64_t be64_at(int fd, off_t off) {
        uint8_t b[8];
        uint64_t v = 0;

        ck_assert_int_eq(pread(fd, b, 8, off), 8);
        for (int i = 0; i < 8; i++)
                v = v << 8 | b[i];
        return v;
}

/* Set the 16-bit refcount of cluster index `cluster` (default refcount
 * order 4, 64 KiB clusters, first refcount block). */
static void set_refcount(const char *img, uint64_t cluster, uint16_t value) {
        int fd = open(img, O_RDWR | O_CLOEXEC);
        uint64_t table, block;
        uint16_t be = htons(value);

        ck_assert_int_ge(fd, 0);
        ck_assert_uint_eq(be64_at(fd, 20) & 0xffffffff00000000ULL, 16ULL << 32);   /* cluster_bits = 16 */
        table = be64_at(fd, 48);
        block = be64_at(fd, (off_t) table);
        ck_assert_uint_ne(block, 0);
        ck_assert_int_eq(pwrite(fd, &be, 2, (off_t) (block + 2 * cluster)), 2);
        close(fd);
}

START_TEST(test_check) {
        const char *img = tmp_path("c.qcow2"), *raw = tmp_path("c.raw");
        struct stat st;

        ck_assert_int_eq(disk_create(img, 8 * MiB), 0);
        SH_OK("qemu-io -f qcow2 -c 'write -P 0x44 0 1M' '%s' >/dev/null", img);
        ck_assert_int_eq(disk_check(img), 0);

        /* A leaked cluster: one more cluster at the end of the file, with a
         * refcount of 1 and nothing referring to it. */
        ck_assert_int_eq(stat(img, &st), 0);
        ck_assert_uint_eq(st.st_size % 65536, 0);
        SH_OK("truncate -s +64K '%s'", img);
        set_refcount(img, (uint64_t) st.st_size / 65536, 1);
        ck_assert_int_eq(disk_check(img), -EUCLEAN);
        set_refcount(img, (uint64_t) st.st_size / 65536, 0);
        ck_assert_int_eq(disk_check(img), 0);

        /* Corruption: the header cluster's refcount dropped to zero. */
        set_refcount(img, 0, 0);
        ck_assert_int_eq(disk_check(img), -EUCLEAN);

        SH_OK("truncate -s 1M '%s'", raw);
        ck_assert_int_eq(disk_check(raw), -EOPNOTSUPP);
}
END_TEST

static Suite *qcow2_suite(void) {
        Suite *s = suite_create("qcow2");
        TCase *tc = tcase_create("qemu-img");

        tcase_add_checked_fixture(tc, disk_setup, disk_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_create_and_chain_info);
        tcase_add_test(tc, test_create_never_overwrites);
        tcase_add_test(tc, test_overlay_absolute_backing_and_format);
        tcase_add_test(tc, test_overlay_of_raw_base);
        tcase_add_test(tc, test_overlay_large_disk);
        tcase_add_test(tc, test_chain_of_three);
        tcase_add_test(tc, test_missing_files);
        tcase_add_test(tc, test_commit);
        tcase_add_test(tc, test_rebase_unsafe);
        tcase_add_test(tc, test_check);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(qcow2_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

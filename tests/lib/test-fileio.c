/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "lib.h"

static char tmpdir[] = "/tmp/oob-test-fileio.XXXXXX";

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static void setup(void) {
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

START_TEST(test_atomic_write_and_read) {
        _cleanup_free_ char *p = path_join(tmpdir, "state.json"), *data = NULL;
        size_t size;
        struct stat st;

        ck_assert_int_eq(write_file_atomic(p, "old", 3, 0644), 0);
        ck_assert_int_eq(write_file_atomic(p, "new!", 4, 0600), 0);
        ck_assert_int_eq(read_full_file(p, 100, &data, &size), 0);
        ck_assert_uint_eq(size, 4);
        ck_assert_str_eq(data, "new!");
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0600);
        /* no temp file left behind */
        ck_assert_uint_eq(count_entries(tmpdir), 1);
}
END_TEST

START_TEST(test_read_cap) {
        _cleanup_free_ char *p = path_join(tmpdir, "big"), *data = NULL;
        char buf[10000];
        size_t size;

        memset(buf, 'x', sizeof(buf));
        ck_assert_int_eq(write_file_atomic(p, buf, sizeof(buf), 0644), 0);
        ck_assert_int_eq(read_full_file(p, sizeof(buf) - 1, &data, &size), -EFBIG);
        ck_assert_int_eq(read_full_file(p, sizeof(buf), &data, &size), 0);
        ck_assert_uint_eq(size, sizeof(buf));
}
END_TEST

START_TEST(test_atomic_write_refuses_unsafe_names) {
        ck_assert_int_eq(write_file_atomic_at(AT_FDCWD, "../x", "a", 1, 0644), -EINVAL);
        ck_assert_int_eq(write_file_atomic_at(AT_FDCWD, "..", "a", 1, 0644), -EINVAL);
}
END_TEST

START_TEST(test_atomic_write_missing_dir) {
        _cleanup_free_ char *p = path_join(tmpdir, "nope/file");

        ck_assert_int_eq(write_file_atomic(p, "a", 1, 0644), -ENOENT);
}
END_TEST

START_TEST(test_mkdir_p_and_join) {
        _cleanup_free_ char *p = path_join(tmpdir, "a/b/c");
        _cleanup_free_ char *j = path_join("/x//", "/y");
        struct stat st;

        ck_assert_int_eq(mkdir_p(p, 0700), 0);
        ck_assert_int_eq(mkdir_p(p, 0700), 0);
        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_str_eq(j, "/x/y");
}
END_TEST

int main(void) {
        Suite *s = suite_create("fileio");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_atomic_write_and_read);
        tcase_add_test(tc, test_read_cap);
        tcase_add_test(tc, test_atomic_write_refuses_unsafe_names);
        tcase_add_test(tc, test_atomic_write_missing_dir);
        tcase_add_test(tc, test_mkdir_p_and_join);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

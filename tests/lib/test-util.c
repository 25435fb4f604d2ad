/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <check.h>

#include "lib.h"

typedef enum Color { COLOR_RED, COLOR_GREEN, _COLOR_MAX, _COLOR_INVALID = -EINVAL } Color;
static const char *const color_table[_COLOR_MAX] = {
        [COLOR_RED] = "red",
        [COLOR_GREEN] = "green",
};
static const char *color_to_string(Color c);
static Color color_from_string(const char *s);
static DEFINE_STRING_TABLE_LOOKUP(color, Color);

START_TEST(test_string_table) {
        ck_assert_str_eq(color_to_string(COLOR_GREEN), "green");
        ck_assert_int_eq(color_from_string("red"), COLOR_RED);
        ck_assert_int_eq(color_from_string("blue"), -EINVAL);
        ck_assert_int_eq(color_from_string(NULL), -EINVAL);
        ck_assert_ptr_null(color_to_string(_COLOR_MAX));
}
END_TEST

START_TEST(test_hex) {
        _cleanup_free_ char *h = hexmem("\x00\xab\xff", 3);
        _cleanup_free_ void *b = NULL;
        size_t n;

        ck_assert_str_eq(h, "00abff");
        ck_assert_int_eq(unhexmem("00ABff", 6, &b, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_mem_eq(b, "\x00\xab\xff", 3);
        ck_assert_int_eq(unhexmem("abc", 3, &b, &n), -EINVAL);
        ck_assert_int_eq(unhexmem("zz", 2, &b, &n), -EINVAL);
}
END_TEST

START_TEST(test_unhex_to) {
        uint8_t buf[2];

        ck_assert_int_eq(unhexmem_to("beEF", 4, buf, 2), 0);
        ck_assert_mem_eq(buf, "\xbe\xef", 2);
        ck_assert_int_eq(unhexmem_to("beef00", 6, buf, 2), -EINVAL);  /* length must match exactly */
        ck_assert_int_eq(unhexmem_to("be", 2, buf, 2), -EINVAL);
        ck_assert_int_eq(unhexmem_to("bexx", 4, buf, 2), -EINVAL);
}
END_TEST

START_TEST(test_atou64) {
        uint64_t v;

        ck_assert_int_eq(safe_atou64("18446744073709551615", &v), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
        ck_assert_int_eq(safe_atou64("18446744073709551616", &v), -ERANGE);
        ck_assert_int_eq(safe_atou64("-1", &v), -EINVAL);
        ck_assert_int_eq(safe_atou64("1 ", &v), -EINVAL);
        ck_assert_int_eq(safe_atou64("", &v), -EINVAL);
}
END_TEST

START_TEST(test_memeq_consttime) {
        ck_assert(memeq_consttime("abcd", "abcd", 4));
        ck_assert(!memeq_consttime("abcd", "abce", 4));
        ck_assert(memeq_consttime("", "", 0));
}
END_TEST

START_TEST(test_strv) {
        _cleanup_strv_free_ char **l = NULL;

        ck_assert_int_eq(strv_extend(&l, "a"), 0);
        ck_assert_int_eq(strv_extend(&l, "b"), 0);
        ck_assert_uint_eq(strv_length(l), 2);
        ck_assert_str_eq(l[1], "b");
        ck_assert_ptr_null(l[2]);
}
END_TEST

START_TEST(test_filename_is_safe) {
        ck_assert(filename_is_safe("root.json"));
        ck_assert(!filename_is_safe(".."));
        ck_assert(!filename_is_safe("."));
        ck_assert(!filename_is_safe("a/b"));
        ck_assert(!filename_is_safe(""));
        ck_assert(!filename_is_safe(NULL));
}
END_TEST

START_TEST(test_log_level) {
        ck_assert_int_eq(log_level_from_string("debug"), LOG_LEVEL_DEBUG);
        ck_assert_int_eq(log_level_from_string("3"), LOG_LEVEL_ERR);
        ck_assert_int_eq(log_level_from_string("loud"), -EINVAL);
        /* the *_errno helpers return the negative error they were given */
        ck_assert_int_eq(log_debug_errno(-ENOENT, "test %m"), -ENOENT);
}
END_TEST

int main(void) {
        Suite *s = suite_create("util");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_string_table);
        tcase_add_test(tc, test_hex);
        tcase_add_test(tc, test_unhex_to);
        tcase_add_test(tc, test_atou64);
        tcase_add_test(tc, test_memeq_consttime);
        tcase_add_test(tc, test_strv);
        tcase_add_test(tc, test_filename_is_safe);
        tcase_add_test(tc, test_log_level);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

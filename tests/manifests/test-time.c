/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <check.h>

#include "manifests.h"

START_TEST(test_round_trip) {
        char buf[21];
        int64_t t;

        ck_assert_int_eq(parse_iso8601_utc("2030-01-01T00:00:00Z", &t), 0);
        ck_assert_int_eq(t, 1893456000);
        ck_assert_int_eq(format_iso8601_utc(t, buf), 0);
        ck_assert_str_eq(buf, "2030-01-01T00:00:00Z");
        ck_assert_int_eq(parse_iso8601_utc("2024-02-29T23:59:59Z", &t), 0);
        ck_assert_int_eq(t, 1709251199);
}
END_TEST

START_TEST(test_refused) {
        static const char *const bad[] = {
                "2026-02-30T00:00:00Z",      /* no such day (would normalize into March) */
                "2025-02-29T00:00:00Z",      /* not a leap year */
                "2026-13-01T00:00:00Z",
                "2026-01-01T24:00:00Z",
                "2026-01-01T00:00:60Z",      /* leap seconds are not used by TUF */
                "2026-01-01T00:00:00",       /* no zone */
                "2026-01-01T00:00:00+01:00", /* offsets refused */
                "2026-01-01T00:00:00.5Z",    /* fractions refused */
                "2026-01-01 00:00:00Z",
                "",
        };
        int64_t t;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(parse_iso8601_utc(bad[i], &t) == -EPROTO, "accepted '%s'", bad[i]);
}
END_TEST

int main(void) {
        Suite *s = suite_create("time");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_refused);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

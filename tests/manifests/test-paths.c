/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Target path rules, role file names and delegation matching: the places
 * where a name chosen by a repository (or an attacker) meets the file system
 * or decides which role is trusted for a target.
 */
#include <check.h>

#include "manifests.h"

START_TEST(test_target_path_valid) {
        static const char *const good[] = {
                "a",     "a.txt",  "a/b/c.yaml", "releases/2026-11/kb.cab", "..a", "a..", ".hidden", "a/.b",
                "x y/z", "%2e%2e", "ü/ß",
        };
        static const char *const bad[] = {
                "",  "/",  "/x",   "x/",     "a//b", "./a",  "a/./b", "a/.",
                ".", "..", "../x", "a/../b", "a/..", "a\\b", "..\\x", "\\x",
        };
        _cleanup_free_ char *longest = malloc(4098);

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ck_assert_msg(tuf_target_path_is_valid(good[i]), "'%s' should be valid", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(!tuf_target_path_is_valid(bad[i]), "'%s' should be refused", bad[i]);
        ck_assert(!tuf_target_path_is_valid(NULL));

        ck_assert_ptr_nonnull(longest);
        memset(longest, 'a', 4096);
        longest[4096] = 0;
        ck_assert(tuf_target_path_is_valid(longest));
        longest[4096] = 'a';
        longest[4097] = 0;
        ck_assert(!tuf_target_path_is_valid(longest));
}
END_TEST

static void check_filename(const char *role, uint64_t version, const char *expected) {
        _cleanup_free_ char *s = tuf_role_filename(role, version);

        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s, expected);
        /* whatever the role name, one safe path component */
        ck_assert(filename_is_safe(s));
        ck_assert_ptr_null(strchr(s, '/'));
}

START_TEST(test_role_filename) {
        check_filename("root", 0, "root.json");
        check_filename("root", 5, "5.root.json");
        check_filename("snapshot", UINT64_MAX, "18446744073709551615.snapshot.json");
        check_filename("releases-2026_x.y~z", 0, "releases-2026_x.y~z.json");
        check_filename("../x", 0, "..%2Fx.json");
        check_filename("../../etc/passwd", 3, "3...%2F..%2Fetc%2Fpasswd.json");
        check_filename("a/b", 0, "a%2Fb.json");
        check_filename("..", 0, "...json");
        check_filename(".", 0, "..json");
        check_filename("a%2Fb", 0, "a%252Fb.json");
        check_filename("a b\\c", 0, "a%20b%5Cc.json");
        check_filename("\xc3\xa9", 0, "%C3%A9.json");
        check_filename("\x01\xff", 0, "%01%FF.json");
        ck_assert_ptr_null(tuf_role_filename(NULL, 0));
        ck_assert_ptr_null(tuf_role_filename("", 1));
}
END_TEST

static bool matches_paths(const char *pattern, const char *path) {
        char *paths[] = {(char *) pattern, NULL};
        TufDelegatedRole r = {.name = (char *) "r", .paths = paths};

        return tuf_delegated_role_matches(&r, path);
}

START_TEST(test_delegation_globs) {
        ck_assert(matches_paths("releases/*", "releases/app.yaml"));
        ck_assert(matches_paths("releases/*", "releases/.hidden"));
        ck_assert(matches_paths("releases/*.yaml", "releases/app.yaml"));
        ck_assert(!matches_paths("releases/*.yaml", "releases/app.yml"));
        /* '*' never crosses a '/': same number of components on both sides */
        ck_assert(!matches_paths("releases/*", "releases/2026/app.yaml"));
        ck_assert(!matches_paths("*", "a/b"));
        ck_assert(matches_paths("*", "a"));
        ck_assert(matches_paths("*/*", "a/b"));
        ck_assert(matches_paths("*/b/*", "a/b/c"));
        ck_assert(!matches_paths("*/b/*", "a/x/c"));
        ck_assert(!matches_paths("releases/*", "releasesX/app"));
        ck_assert(!matches_paths("releases/*", "other/releases/app"));
        /* exact paths, '?' and sets */
        ck_assert(matches_paths("hello.txt", "hello.txt"));
        ck_assert(!matches_paths("hello.txt", "hello.txt2"));
        ck_assert(matches_paths("kb?.cab", "kb1.cab"));
        ck_assert(!matches_paths("kb?.cab", "kb12.cab"));
        ck_assert(matches_paths("[ab]/x", "b/x"));
        ck_assert(!matches_paths("[ab]/x", "c/x"));
        ck_assert(matches_paths("[!ab]/x", "c/x"));
        /* backslash is an ordinary character, as in Python's fnmatch */
        ck_assert(!matches_paths("a\\*", "ab"));
        ck_assert(matches_paths("a\\*", "a\\bc"));
        /* case matters */
        ck_assert(!matches_paths("Releases/*", "releases/a"));
        /* an empty pattern matches nothing valid */
        ck_assert(!matches_paths("", "a"));
        ck_assert(!matches_paths("releases/*", NULL));
}
END_TEST

START_TEST(test_delegation_multiple_patterns) {
        char *paths[] = {(char *) "a/*", (char *) "b/*.bin", NULL};
        TufDelegatedRole r = {.name = (char *) "r", .paths = paths};
        TufDelegatedRole none = {.name = (char *) "n"};

        ck_assert(tuf_delegated_role_matches(&r, "a/x"));
        ck_assert(tuf_delegated_role_matches(&r, "b/y.bin"));
        ck_assert(!tuf_delegated_role_matches(&r, "b/y.txt"));
        ck_assert(!tuf_delegated_role_matches(&none, "a/x"));
        ck_assert(!tuf_delegated_role_matches(NULL, "a/x"));
}
END_TEST

START_TEST(test_delegation_hash_prefixes) {
        /* sha256("foo") = 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae */
        char *yes[] = {(char *) "00", (char *) "2c26", NULL};
        char *no[] = {(char *) "2c27", (char *) "2C26", (char *) "c26b", NULL};
        char *full[] = {(char *) "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", NULL};
        char *longer[] = {(char *) "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae0",
                          NULL};
        char *everything[] = {(char *) "", NULL};
        TufDelegatedRole r = {.name = (char *) "bins"};

        r.path_hash_prefixes = yes;
        ck_assert(tuf_delegated_role_matches(&r, "foo"));
        ck_assert(!tuf_delegated_role_matches(&r, "bar")); /* fcde2b2e... */
        r.path_hash_prefixes = no;
        ck_assert(!tuf_delegated_role_matches(&r, "foo"));
        r.path_hash_prefixes = full;
        ck_assert(tuf_delegated_role_matches(&r, "foo"));
        r.path_hash_prefixes = longer;
        ck_assert(!tuf_delegated_role_matches(&r, "foo"));
        r.path_hash_prefixes = everything;
        ck_assert(tuf_delegated_role_matches(&r, "foo"));
        /* the hash is of the path string, not of a glob */
        r.path_hash_prefixes = yes;
        ck_assert(!tuf_delegated_role_matches(&r, "foo/"));
}
END_TEST

int main(void) {
        Suite *s = suite_create("paths");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_target_path_valid);
        tcase_add_test(tc, test_role_filename);
        tcase_add_test(tc, test_delegation_globs);
        tcase_add_test(tc, test_delegation_multiple_patterns);
        tcase_add_test(tc, test_delegation_hash_prefixes);
        suite_add_tcase(s, tc);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

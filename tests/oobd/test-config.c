/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/config.c: the strict ini-style parser oobd's configuration goes
 * through, and its value parsers. Every refusal must name FILE:LINE and
 * leave no doubt what is wrong; every accepted spelling must land in the
 * right field.
 */
#include <check.h>
#include <ftw.h>
#include <stddef.h>

#include "lib.h"

static char tmpdir[] = "/tmp/oob-test-config.XXXXXX";

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static void setup(void) {
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct Settings {
        char *url;
        char *dir;
        bool flag;
        unsigned count;
        uint64_t big;
        uint64_t rate;
        unsigned timeout;
        char **groups;
} Settings;

static const ConfigItem items[] = {
        {"repository", "url", config_parse_string, offsetof(Settings, url)},
        {"repository", "allow", config_parse_bool, offsetof(Settings, flag)},
        {"paths", "dir", config_parse_path, offsetof(Settings, dir)},
        {"limits", "count", config_parse_unsigned, offsetof(Settings, count)},
        {"limits", "big", config_parse_uint64, offsetof(Settings, big)},
        {"limits", "rate", config_parse_bytes, offsetof(Settings, rate)},
        {"limits", "timeout", config_parse_seconds, offsetof(Settings, timeout)},
        {"device", "groups", config_parse_strv, offsetof(Settings, groups)},
};

static void settings_done(Settings *s) {
        free(s->url);
        free(s->dir);
        strv_free(s->groups);
        *s = (Settings){};
}

/* Parse text into s; returns the error code, *error the message (or NULL). */
static int parse(const char *text, Settings *s, char **error) {
        return config_parse_text("test.conf", text, strlen(text), items, ELEMENTSOF(items), s, error);
}

/* text must be refused with -EPROTO and exactly this message. */
static void refused(const char *text, const char *message) {
        Settings s = {};
        _cleanup_free_ char *error = NULL;

        ck_assert_int_eq(parse(text, &s, &error), -EPROTO);
        ck_assert_ptr_nonnull(error);
        ck_assert_str_eq(error, message);
        settings_done(&s);
}

START_TEST(test_full_file) {
        Settings s = {.timeout = 7};
        _cleanup_free_ char *error = NULL;
        const char *text = "# oob test configuration\n"
                           "; another comment style\n"
                           "\n"
                           "[repository]\n"
                           "url = https://updates.example/metadata#frag  \n"
                           "  allow=YES\r\n"
                           "[ paths ]\n"
                           "\tdir = /var/lib/x y\n"
                           "[limits]\n"
                           "count = 4294967295\n"
                           "big = 18446744073709551615\n"
                           "rate = 10M\n"
                           "   # indented comment\n"
                           "[device]\n"
                           "groups = lab,  floor-2 ,,wing\n"
                           "[limits]\n"
                           "timeout = 1h 30min 5\n";

        ck_assert_int_eq(parse(text, &s, &error), 0);
        ck_assert_ptr_null(error);
        /* the value runs to the end of the line: '#' is not a comment there */
        ck_assert_str_eq(s.url, "https://updates.example/metadata#frag");
        ck_assert(s.flag);
        ck_assert_str_eq(s.dir, "/var/lib/x y");
        ck_assert_uint_eq(s.count, UINT_MAX);
        ck_assert_uint_eq(s.big, UINT64_MAX);
        ck_assert_uint_eq(s.rate, 10 * 1024 * 1024);
        ck_assert_uint_eq(s.timeout, 3600 + 1800 + 5);
        ck_assert_uint_eq(strv_length(s.groups), 3);
        ck_assert_str_eq(s.groups[0], "lab");
        ck_assert_str_eq(s.groups[1], "floor-2");
        ck_assert_str_eq(s.groups[2], "wing");
        settings_done(&s);
}
END_TEST

START_TEST(test_untouched_keys_keep_defaults) {
        Settings s = {.count = 42, .timeout = 600};
        _cleanup_free_ char *error = NULL;

        s.url = strdup("https://default.example/");
        ck_assert_int_eq(parse("[limits]\nbig = 1\n", &s, &error), 0);
        ck_assert_str_eq(s.url, "https://default.example/");
        ck_assert_uint_eq(s.count, 42);
        ck_assert_uint_eq(s.timeout, 600);
        ck_assert_uint_eq(s.big, 1);
        /* an empty value resets a string to unset */
        ck_assert_int_eq(parse("[repository]\nurl =\n", &s, &error), 0);
        ck_assert_ptr_null(s.url);
        ck_assert_int_eq(parse("", &s, &error), 0);
        ck_assert_int_eq(parse("\n\n# only comments\n", &s, &error), 0);
        settings_done(&s);
}
END_TEST

START_TEST(test_refusals_name_file_and_line) {
        refused("[repository]\nurl = x\n\nbogus = 1\n",
                "test.conf:4: unknown key 'bogus' in section [repository]");
        refused("[repository]\n[nope]\n", "test.conf:2: unknown section [nope]");
        refused("url = x\n", "test.conf:1: 'url' is outside any section (add a [section] line above it)");
        refused("[repository]\nurl = a\nallow = no\nurl = b\n",
                "test.conf:4: 'url' in [repository] is already set on line 2");
        /* the same key in a section given twice is still a duplicate */
        refused("[limits]\ncount = 1\n[repository]\n[limits]\ncount = 2\n",
                "test.conf:5: 'count' in [limits] is already set on line 2");
        refused("[repository]\njust words\n",
                "test.conf:2: expected 'key = value', '[section]' or a comment");
        refused("[repository\n", "test.conf:1: a section header must be '[name]'");
        refused("[\n", "test.conf:1: a section header must be '[name]'");
        refused("[repository]\n = 1\n", "test.conf:2: no key before '='");
        refused("[repository]\nallow = maybe\n",
                "test.conf:2: 'allow' in [repository]: invalid value 'maybe' (expected yes or no)");
        refused("[paths]\ndir = relative/dir\n",
                "test.conf:2: 'dir' in [paths]: invalid value 'relative/dir' (expected an absolute path)");
        refused("[limits]\ncount = 4294967296\n",
                "test.conf:2: 'count' in [limits]: '4294967296' is out of range");
        refused("[limits]\ncount = -1\n",
                "test.conf:2: 'count' in [limits]: invalid value '-1' (expected a number)");
        refused("[limits]\ntimeout = 5 weeks\n",
                "test.conf:2: 'timeout' in [limits]: invalid value '5 weeks' "
                "(expected a duration such as 90, 90s, 5min, 2h or 1d)");
        refused("[limits]\nrate = 1.5M\n", "test.conf:2: 'rate' in [limits]: invalid value '1.5M' (expected "
                                           "a size such as 4096, 512K, 10M or 1G)");
        refused("[limits]\nrate = 16777216T\n",
                "test.conf:2: 'rate' in [limits]: '16777216T' is out of range");
        /* keys and sections are case-sensitive */
        refused("[Repository]\n", "test.conf:1: unknown section [Repository]");
}
END_TEST

START_TEST(test_nul_and_size) {
        Settings s = {};
        _cleanup_free_ char *error = NULL, *big = NULL;
        const char text[] = "[repository]\nurl = a\0b\n";

        ck_assert_int_eq(
                config_parse_text("test.conf", text, sizeof(text) - 1, items, ELEMENTSOF(items), &s, &error),
                -EPROTO);
        ck_assert_str_eq(error, "test.conf: contains a NUL byte (not a text file)");
        big = malloc(CONFIG_FILE_MAX + 1);
        ck_assert_ptr_nonnull(big);
        memset(big, '\n', CONFIG_FILE_MAX + 1);
        ck_assert_int_eq(config_parse_text("test.conf", big, CONFIG_FILE_MAX + 1, items, ELEMENTSOF(items),
                                           &s, &error),
                         -EFBIG);
        ck_assert_int_eq(
                config_parse_text("test.conf", big, CONFIG_FILE_MAX, items, ELEMENTSOF(items), &s, &error),
                0);
        settings_done(&s);
}
END_TEST

START_TEST(test_file) {
        _cleanup_free_ char *path = path_join(tmpdir, "oobd.conf"),
                            *missing = path_join(tmpdir, "none.conf");
        _cleanup_free_ char *error = NULL, *expected = NULL;
        Settings s = {};
        const char *text = "[limits]\ncount = 3\n\ncount = 4\n";

        ck_assert_int_eq(write_file_atomic(path, text, strlen(text), 0644), 0);
        ck_assert_int_eq(config_parse_file(path, items, ELEMENTSOF(items), &s, &error), -EPROTO);
        ck_assert_int_ge(asprintf(&expected, "%s:4: 'count' in [limits] is already set on line 2", path), 0);
        ck_assert_str_eq(error, expected);
        /* values before the error are in the target: callers use a scratch copy */
        ck_assert_uint_eq(s.count, 3);

        ck_assert_int_eq(config_parse_file(missing, items, ELEMENTSOF(items), &s, &error), -ENOENT);
        free(expected);
        ck_assert_int_ge(asprintf(&expected, "%s: %s", missing, strerror(ENOENT)), 0);
        ck_assert_str_eq(error, expected);
        settings_done(&s);
}
END_TEST

START_TEST(test_bool_spellings) {
        static const char *const yes[] = {"yes", "true", "on", "1", "Yes", "TRUE"};
        static const char *const no[] = {"no", "false", "off", "0", "No", "OFF"};
        const char *expected = NULL;
        bool b;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                b = false;
                ck_assert_int_eq(config_parse_bool(yes[i], &b, &expected), 0);
                ck_assert(b);
        }
        for (size_t i = 0; i < ELEMENTSOF(no); i++) {
                b = true;
                ck_assert_int_eq(config_parse_bool(no[i], &b, &expected), 0);
                ck_assert(!b);
        }
        b = true;
        ck_assert_int_eq(config_parse_bool("", &b, &expected), -EINVAL);
        ck_assert_int_eq(config_parse_bool("y", &b, &expected), -EINVAL);
        ck_assert(b); /* untouched on error */
}
END_TEST

START_TEST(test_seconds) {
        static const struct {
                const char *text;
                unsigned seconds;
        } good[] = {
                {"0", 0},
                {"90", 90},
                {"90s", 90},
                {"90sec", 90},
                {"5min", 300},
                {"5m", 300},
                {"2h", 7200},
                {"1d", 86400},
                {"1h30min", 5400},
                {"1d 1h 1min 1s", 90061},
                {"4294967295", UINT_MAX},
        };
        static const char *const bad[] = {"", " ", "s", "5 minutes", "5ms", "-5", "1.5h", "5min x", "h5"};
        const char *expected = NULL;
        unsigned u;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                u = 12345;
                ck_assert_msg(config_parse_seconds(good[i].text, &u, &expected) == 0, "%s", good[i].text);
                ck_assert_uint_eq(u, good[i].seconds);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(config_parse_seconds(bad[i], &u, &expected) == -EINVAL, "'%s'", bad[i]);
        ck_assert_int_eq(config_parse_seconds("4294967296", &u, &expected), -ERANGE);
        ck_assert_int_eq(config_parse_seconds("49711d", &u, &expected), -ERANGE);
        ck_assert_int_eq(config_parse_seconds("49710d 6h 28min 15s", &u, &expected), 0);
        ck_assert_uint_eq(u, UINT_MAX);
        ck_assert_int_eq(config_parse_seconds("49710d 6h 28min 16s", &u, &expected), -ERANGE);
        ck_assert_int_eq(config_parse_seconds("99999999999999999999", &u, &expected), -ERANGE);
}
END_TEST

START_TEST(test_bytes) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                {"0", 0},
                {"4096", 4096},
                {"4096B", 4096},
                {"512K", 512 * 1024},
                {"512KiB", 512 * 1024},
                {"10M", 10 << 20},
                {"1G", 1 << 30},
                {"2GiB", UINT64_C(2) << 30},
                {"3T", UINT64_C(3) << 40},
                {"16777215T", UINT64_C(16777215) << 40},
        };
        static const char *const bad[] = {"", "K", "1k", "1 M", "1MB", "-1", "1.5G", "0x10"};
        const char *expected = NULL;
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ck_assert_msg(config_parse_bytes(good[i].text, &v, &expected) == 0, "%s", good[i].text);
                ck_assert_uint_eq(v, good[i].bytes);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(config_parse_bytes(bad[i], &v, &expected) == -EINVAL, "'%s'", bad[i]);
}
END_TEST

START_TEST(test_strv_replaces) {
        _cleanup_strv_free_ char **l = NULL;
        const char *expected = NULL;

        ck_assert_int_eq(config_parse_strv("a b", &l, &expected), 0);
        ck_assert_uint_eq(strv_length(l), 2);
        ck_assert_int_eq(config_parse_strv("c", &l, &expected), 0);
        ck_assert_uint_eq(strv_length(l), 1);
        ck_assert_str_eq(l[0], "c");
        ck_assert_int_eq(config_parse_strv(" , ,", &l, &expected), 0);
        ck_assert_ptr_null(l);
}
END_TEST

START_TEST(test_format_round_trip) {
        static const unsigned secs[] = {0, 1, 59, 60, 90, 600, 3600, 5400, 86400, 90061, UINT_MAX};
        static const uint64_t sizes[] = {
                0, 1, 1023, 1024, 1536, 10 << 20, 1 << 30, UINT64_C(3) << 40, UINT64_MAX};
        const char *expected = NULL;

        for (size_t i = 0; i < ELEMENTSOF(secs); i++) {
                _cleanup_free_ char *s = config_format_seconds(secs[i]);
                unsigned u;

                ck_assert_ptr_nonnull(s);
                ck_assert_int_eq(config_parse_seconds(s, &u, &expected), 0);
                ck_assert_uint_eq(u, secs[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                _cleanup_free_ char *s = config_format_bytes(sizes[i]);
                uint64_t v;

                ck_assert_ptr_nonnull(s);
                ck_assert_int_eq(config_parse_bytes(s, &v, &expected), 0);
                ck_assert_uint_eq(v, sizes[i]);
        }
        /* the spellings the reference configuration file uses */
        {
                _cleanup_free_ char *a = config_format_seconds(600), *b = config_format_seconds(90),
                                    *c = config_format_seconds(7200), *d = config_format_bytes(10 << 20),
                                    *e = config_format_bytes(1536), *f = config_format_seconds(86400 * 2);

                ck_assert_str_eq(a, "10min");
                ck_assert_str_eq(b, "90s");
                ck_assert_str_eq(c, "2h");
                ck_assert_str_eq(d, "10M");
                ck_assert_str_eq(e, "1536");
                ck_assert_str_eq(f, "2d");
        }
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_full_file);
        tcase_add_test(tc, test_untouched_keys_keep_defaults);
        tcase_add_test(tc, test_refusals_name_file_and_line);
        tcase_add_test(tc, test_nul_and_size);
        tcase_add_test(tc, test_file);
        tcase_add_test(tc, test_bool_spellings);
        tcase_add_test(tc, test_seconds);
        tcase_add_test(tc, test_bytes);
        tcase_add_test(tc, test_strv_replaces);
        tcase_add_test(tc, test_format_round_trip);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(config_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

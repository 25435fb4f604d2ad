/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <check.h>

#include "lib.h"

static char *render(bool pretty, void (*fill)(JsonWriter *w)) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        JsonWriter *w;

        ck_assert_ptr_nonnull(f);
        w = json_writer_new(f, pretty);
        fill(w);
        json_writer_free(w);
        fclose(f);
        return buf;
}

static void fill_nested(JsonWriter *w) {
        jw_begin_object(w);
        jw_kv_string(w, "id", "3");
        jw_kv_uint(w, "size", 18446744073709551615ULL);
        jw_kv_int(w, "delta", -5);
        jw_kv_bool(w, "pinned", true);
        jw_kv_string(w, "label", NULL);
        jw_key(w, "list");
        jw_begin_array(w);
        jw_string(w, "a\"b\\c\n\x01");
        jw_begin_object(w);
        jw_end_object(w);
        jw_begin_array(w);
        jw_end_array(w);
        jw_end_array(w);
        jw_end_object(w);
}

START_TEST(test_compact) {
        _cleanup_free_ char *s = render(false, fill_nested);

        ck_assert_str_eq(s, "{\"id\":\"3\",\"size\":18446744073709551615,\"delta\":-5,\"pinned\":true,"
                            "\"label\":null,\"list\":[\"a\\\"b\\\\c\\n\\u0001\",{},[]]}\n");
}
END_TEST

START_TEST(test_pretty) {
        _cleanup_free_ char *s = render(true, fill_nested);

        ck_assert_str_eq(s, "{\n  \"id\": \"3\",\n  \"size\": 18446744073709551615,\n  \"delta\": -5,\n"
                            "  \"pinned\": true,\n  \"label\": null,\n  \"list\": [\n"
                            "    \"a\\\"b\\\\c\\n\\u0001\",\n    {},\n    []\n  ]\n}\n");
}
END_TEST

static void fill_top_array(JsonWriter *w) {
        jw_begin_array(w);
        jw_uint(w, 1);
        jw_uint(w, 2);
        jw_end_array(w);
}

START_TEST(test_top_array) {
        _cleanup_free_ char *s = render(false, fill_top_array);

        ck_assert_str_eq(s, "[1,2]\n");
}
END_TEST

int main(void) {
        Suite *s = suite_create("jsonw");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_compact);
        tcase_add_test(tc, test_pretty);
        tcase_add_test(tc, test_top_array);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

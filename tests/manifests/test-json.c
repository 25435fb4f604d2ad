/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * manifests/json.c: strict parsing and canonical JSON. The canonical golden
 * vectors were cross-checked once against @tufjs/canonical-json 2.x (npm)
 * and a Python re-implementation of securesystemslib's encoder.
 */
#include <check.h>

#include "manifests-internal.h"

/* Parse text (a C string) strictly with a generous cap. */
static int parse(const char *text, json_t **ret) {
        return tuf_json_parse(text, strlen(text), 1 << 20, ret);
}

/* Parse then canonicalize; the result must equal expected (size given, as
 * canonical output may hold bytes a C string literal would end at). */
static void assert_canonical(const char *text, const char *expected, size_t expected_size) {
        _cleanup_json_ json_t *v = NULL;
        _cleanup_free_ char *c = NULL;
        size_t size = 0;

        ck_assert_int_eq(parse(text, &v), 0);
        ck_assert_int_eq(tuf_json_canonical(v, &c, &size), 0);
        ck_assert_uint_eq(size, expected_size);
        ck_assert_mem_eq(c, expected, expected_size);
        ck_assert_int_eq(c[size], 0);
}
#define ASSERT_CANONICAL(text, expected) assert_canonical((text), (expected), STRLEN(expected))

static void assert_refused(const char *text, int error) {
        json_t *v = NULL;

        ck_assert_int_eq(parse(text, &v), error);
        ck_assert_ptr_null(v);
}

START_TEST(test_canonical_golden) {
        /* The vector from the brief: sorting, only '"' and '\\' escaped,
         * raw UTF-8 and a raw newline in the output. */
        ASSERT_CANONICAL("{\"b\":1,\"a\":[true,null,\"x\\\"y\\\\z\"],\"\\u00e9\":\"\\n\"}",
                         "{\"a\":[true,null,\"x\\\"y\\\\z\"],\"b\":1,\"\xc3\xa9\":\"\n\"}");
        /* Same bytes whichever way the input spelled the characters. */
        ASSERT_CANONICAL(
                "{ \"\xc3\xa9\" : \"\\u000a\" ,\n \"b\" : 1 , \"a\" : [ true , null , \"x\\\"y\\\\z\" ] }",
                "{\"a\":[true,null,\"x\\\"y\\\\z\"],\"b\":1,\"\xc3\xa9\":\"\n\"}");
        /* Cross-checked with tuf-js: empty key first, prefixes before longer
         * keys, UTF-8 after ASCII, nested and empty containers, control
         * bytes raw, '/', '<', '&' and '\'' untouched. */
        ASSERT_CANONICAL(
                "{\"z\":{\"y\":{},\"x\":[]},\"n\":-42,\"m\":[[],{}],\"\":\"empty\",\"aa\":0,"
                "\"a\":9007199254740991,\"\\u00fc\":\"\\u0001\\u001f\\/<>&'\",\"a\\u00e9\":\"\xc3\xa9\"}",
                "{\"\":\"empty\",\"a\":9007199254740991,\"aa\":0,\"a\xc3\xa9\":\"\xc3\xa9\",\"m\":[[],{}],"
                "\"n\":-42,\"z\":{\"x\":[],\"y\":{}},\"\xc3\xbc\":\"\x01\x1f/<>&'\"}");
}
END_TEST

START_TEST(test_canonical_scalars) {
        ASSERT_CANONICAL("{}", "{}");
        ASSERT_CANONICAL("{\"a\":[]}", "{\"a\":[]}");
        ASSERT_CANONICAL("{\"a\":{}}", "{\"a\":{}}");
        ASSERT_CANONICAL("{\"min\":-9223372036854775808,\"max\":9223372036854775807,\"zero\":-0}",
                         "{\"max\":9223372036854775807,\"min\":-9223372036854775808,\"zero\":0}");
        ASSERT_CANONICAL("{\"t\":true,\"f\":false,\"n\":null}", "{\"f\":false,\"n\":null,\"t\":true}");
        /* Every JSON escape decodes; only '"' and '\\' are re-escaped. */
        ASSERT_CANONICAL("{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", "{\"s\":\"\\\"\\\\/\b\f\n\r\t\"}");
        /* A surrogate pair becomes its 4-byte UTF-8 form. */
        ASSERT_CANONICAL("{\"s\":\"\\ud83d\\ude00\"}", "{\"s\":\"\xf0\x9f\x98\x80\"}");
        /* Only quote and backslash characters, back to back. */
        ASSERT_CANONICAL("{\"\\\"\\\\\":\"\\\\\\\\\\\"\\\"\"}", "{\"\\\"\\\\\":\"\\\\\\\\\\\"\\\"\"}");
}
END_TEST

START_TEST(test_canonical_sort_bytes) {
        /* Byte order: 'B' (0x42) < 'a' < "ab" < 'b' < 'z' < U+00E9 (0xc3 0xa9). */
        ASSERT_CANONICAL("{\"z\":1,\"\xc3\xa9\":2,\"b\":3,\"ab\":4,\"a\":5,\"B\":6}",
                         "{\"B\":6,\"a\":5,\"ab\":4,\"b\":3,\"z\":1,\"\xc3\xa9\":2}");
        /* Nested objects are sorted too, arrays keep their order. */
        ASSERT_CANONICAL("{\"o\":{\"y\":[3,1,2],\"x\":{\"d\":1,\"c\":2}}}",
                         "{\"o\":{\"x\":{\"c\":2,\"d\":1},\"y\":[3,1,2]}}");
}
END_TEST

START_TEST(test_canonical_built_tree) {
        _cleanup_json_ json_t *o = json_object(), *r = json_pack("{s:f}", "x", 1.5);
        _cleanup_free_ char *c = NULL;
        size_t size = 0;

        /* A tree built in memory, a key with an embedded NUL included. */
        ck_assert_int_eq(json_object_setn_new(o, "k\0b", 3, json_integer(1)), 0);
        ck_assert_int_eq(json_object_set_new(o, "k", json_integer(2)), 0);
        ck_assert_int_eq(tuf_json_canonical(o, &c, &size), 0);
        ck_assert_uint_eq(size, STRLEN("{\"k\":2,\"k\0b\":1}"));
        ck_assert_mem_eq(c, "{\"k\":2,\"k\0b\":1}", size);

        /* Reals have no canonical form. */
        free(TAKE_PTR(c));
        ck_assert_int_eq(tuf_json_canonical(r, &c, &size), -EPROTO);
        ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_canonical_round_trip_large) {
        static const char prefix[] =
                "{\"files/00000.bin\":{\"hashes\":{\"sha256\":\"ab\\\"cd\"},\"length\":0},";
        _cleanup_json_ json_t *o = json_object(), *v = NULL;
        _cleanup_free_ char *c1 = NULL, *c2 = NULL;
        size_t s1 = 0, s2 = 0;

        /* A targets-like object with 20000 members inserted in reverse order. */
        for (int i = 19999; i >= 0; i--) {
                char name[64];
                snprintf(name, sizeof(name), "files/%05d.bin", i);
                ck_assert_int_eq(json_object_set_new(o, name,
                                                     json_pack("{s:i,s:{s:s}}", "length", i, "hashes",
                                                               "sha256", "ab\"cd")),
                                 0);
        }
        ck_assert_int_eq(tuf_json_canonical(o, &c1, &s1), 0);
        ck_assert(strneq(c1, prefix, strlen(prefix)));
        ck_assert_int_eq(tuf_json_parse(c1, s1, s1, &v), 0);
        ck_assert_int_eq(tuf_json_canonical(v, &c2, &s2), 0);
        ck_assert_uint_eq(s1, s2);
        ck_assert_mem_eq(c1, c2, s1);
}
END_TEST

START_TEST(test_parse_refuses) {
        assert_refused("{\"a\":1.0}", -EPROTO);
        assert_refused("{\"a\":1e3}", -EPROTO);
        assert_refused("{\"a\":[1,{\"b\":[0.5]}]}", -EPROTO);
        assert_refused("{\"a\":1,\"a\":2}", -EPROTO);
        assert_refused("{\"o\":{\"a\":1,\"a\":1}}", -EPROTO);
        /* The same key spelled two ways is still a duplicate. */
        assert_refused("{\"a\":1,\"\\u0061\":2}", -EPROTO);
        assert_refused("{\"a\":\"\\ud800\"}", -EPROTO); /* lone surrogate */
        assert_refused("{\"a\":\"x\\u0000y\"}", -EPROTO);
        assert_refused("{\"a\\u0000\":1}", -EPROTO);
        assert_refused("[1,2]", -EPROTO);
        assert_refused("42", -EPROTO);
        assert_refused("\"s\"", -EPROTO);
        assert_refused("{}x", -EPROTO);
        assert_refused("{} {}", -EPROTO);
        assert_refused("{\"a\":\"\xff\"}", -EPROTO);
        assert_refused("{\"a\":\"\xc3\"}", -EPROTO);
        assert_refused("{\"a\":\"raw\nnewline\"}", -EPROTO);
        assert_refused("{\"a\":99999999999999999999}", -EPROTO);
        assert_refused("{\"a\":NaN}", -EPROTO);
        assert_refused("{\"a\":1,}", -EPROTO);
        assert_refused("", -EPROTO);
}
END_TEST

START_TEST(test_parse_nul_in_buffer) {
        json_t *v = NULL;

        /* A NUL byte in the raw input (outside any string) is not JSON. */
        ck_assert_int_eq(tuf_json_parse("{\"a\":1}\0", 9, 100, &v), -EPROTO);
        ck_assert_int_eq(tuf_json_parse("{\"a\":\"\0\"}", 9, 100, &v), -EPROTO);
        ck_assert_ptr_null(v);
        ck_assert_int_eq(tuf_json_parse("{\"a\":1}\n", 8, 100, &v), 0);
        ck_assert_ptr_nonnull(v);
        json_decref(v);
}
END_TEST

/* {"a": followed by n-1 nested arrays: n containers in all. */
static char *nested(unsigned n) {
        size_t size = 8 + 2 * (size_t) n;
        char *s = malloc(size), *p = s;

        ck_assert_ptr_nonnull(s);
        p = stpcpy(p, "{\"a\":");
        for (unsigned i = 1; i < n; i++)
                *p++ = '[';
        for (unsigned i = 1; i < n; i++)
                *p++ = ']';
        strcpy(p, "}");
        return s;
}

START_TEST(test_parse_depth) {
        _cleanup_free_ char *ok = nested(32), *deep = nested(33), *very_deep = nested(5000);
        json_t *v = NULL;

        ck_assert_int_eq(parse(ok, &v), 0);
        json_decref(TAKE_PTR(v));
        ck_assert_int_eq(parse(deep, &v), -EPROTO);
        ck_assert_ptr_null(v);
        ck_assert_int_eq(parse(very_deep, &v), -EPROTO);
        ck_assert_ptr_null(v);
}
END_TEST

START_TEST(test_parse_size_cap) {
        const char *doc = "{\"a\":1}";
        _cleanup_free_ char *big = malloc((size_t) TUF_METADATA_MAX_LENGTH + 1);
        json_t *v = NULL;

        ck_assert_int_eq(tuf_json_parse(doc, strlen(doc), strlen(doc) - 1, &v), -EFBIG);
        ck_assert_ptr_null(v);
        /* Refused before parsing: garbage over the cap is -EFBIG, not -EPROTO. */
        ck_assert_int_eq(tuf_json_parse("garbage!", 8, 4, &v), -EFBIG);
        ck_assert_int_eq(tuf_json_parse(doc, strlen(doc), strlen(doc), &v), 0);
        json_decref(TAKE_PTR(v));
        /* The global cap holds whatever the caller asks for. */
        ck_assert_ptr_nonnull(big);
        memset(big, ' ', (size_t) TUF_METADATA_MAX_LENGTH + 1);
        big[0] = '{';
        big[TUF_METADATA_MAX_LENGTH] = '}';
        ck_assert_int_eq(tuf_json_parse(big, (size_t) TUF_METADATA_MAX_LENGTH + 1, SIZE_MAX, &v), -EFBIG);
        ck_assert_int_eq(tuf_json_parse(big, (size_t) TUF_METADATA_MAX_LENGTH + 1, 0, &v), -EFBIG);
        ck_assert_ptr_null(v);
}
END_TEST

int main(void) {
        Suite *s = suite_create("json");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_canonical_golden);
        tcase_add_test(tc, test_canonical_scalars);
        tcase_add_test(tc, test_canonical_sort_bytes);
        tcase_add_test(tc, test_canonical_built_tree);
        tcase_add_test(tc, test_canonical_round_trip_large);
        tcase_add_test(tc, test_parse_refuses);
        tcase_add_test(tc, test_parse_nul_in_buffer);
        tcase_add_test(tc, test_parse_depth);
        tcase_add_test(tc, test_parse_size_cap);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The strict YAML tree (manifests/yaml.c) and the schema helpers shared by the
 * patch-manifest and order parsers. This is the room's own test, so it uses
 * the room-private header.
 */
#include <check.h>

#include "yaml-internal.h"

/* Parse doc (strlen) and expect failure r with a message that starts with
 * "line L, column C: " (pos) and contains every further needle. */
#define assert_yaml_refused_n(doc, size, r_expected, pos, ...)                                          \
        do {                                                                                            \
                _cleanup_free_ char *_err = NULL;                                                       \
                YNode *_n = NULL;                                                                       \
                const char *_needles[] = {"", ##__VA_ARGS__};                                           \
                int _r = yaml_tree_parse((doc), (size), &_n, &_err);                                    \
                ck_assert_int_eq(_r, (r_expected));                                                     \
                ck_assert_ptr_null(_n);                                                                 \
                ck_assert_ptr_nonnull(_err);                                                            \
                ck_assert_msg(strneq(_err, pos ": ", strlen(pos ": ")), "error '%s' is not at '%s'",    \
                              strna(_err), pos);                                                        \
                for (size_t _i = 0; _i < ELEMENTSOF(_needles); _i++)                                    \
                        ck_assert_msg(strstr(_err, _needles[_i]), "error '%s' lacks '%s'", strna(_err), \
                                      _needles[_i]);                                                    \
        } while (0)
#define assert_yaml_refused(doc, pos, ...) \
        assert_yaml_refused_n(doc, strlen(doc), -EPROTO, pos, ##__VA_ARGS__)

static YNode *parse_ok(const char *doc) {
        _cleanup_free_ char *err = NULL;
        YNode *n = NULL;
        int r = yaml_tree_parse(doc, strlen(doc), &n, &err);

        ck_assert_msg(r == 0, "parse failed (%d): %s", r, strna(err));
        ck_assert_ptr_null(err);
        ck_assert_ptr_nonnull(n);
        return n;
}

START_TEST(test_tree_and_positions) {
        _cleanup_(ynode_freep) YNode *root = parse_ok("# comment\n"
                                                      "name: oob\n"
                                                      "list:\n"
                                                      "  - one\n"
                                                      "  - 'two'\n"
                                                      "  - {k: \"v\", n: 3}\n"
                                                      "empty: []\n");
        const YNode *list, *m;

        ck_assert_int_eq(root->type, YNODE_MAPPING);
        ck_assert_uint_eq(root->line, 2);
        ck_assert_uint_eq(root->column, 1);
        ck_assert_uint_eq(root->n_items, 3);
        ck_assert_str_eq(root->keys[0]->value, "name");
        ck_assert_str_eq(root->keys[1]->value, "list");
        ck_assert_str_eq(root->keys[2]->value, "empty");
        ck_assert_uint_eq(root->keys[1]->line, 3);
        ck_assert_uint_eq(root->keys[1]->column, 1);

        ck_assert_str_eq(ynode_get(root, "name")->value, "oob");
        ck_assert_uint_eq(ynode_get(root, "name")->line, 2);
        ck_assert_uint_eq(ynode_get(root, "name")->column, 7);
        ck_assert_ptr_null(ynode_get(root, "nope"));

        list = ynode_get(root, "list");
        ck_assert_int_eq(list->type, YNODE_SEQUENCE);
        ck_assert_uint_eq(list->n_items, 3);
        ck_assert_uint_eq(list->line, 4);
        ck_assert_uint_eq(list->column, 3);
        ck_assert_str_eq(list->items[0]->value, "one");
        ck_assert(list->items[0]->plain);
        ck_assert_str_eq(list->items[1]->value, "two");
        ck_assert(!list->items[1]->plain);
        ck_assert_uint_eq(list->items[1]->line, 5);
        ck_assert_uint_eq(list->items[1]->column, 5);

        m = list->items[2];
        ck_assert_int_eq(m->type, YNODE_MAPPING);
        ck_assert_uint_eq(m->line, 6);
        ck_assert_uint_eq(m->column, 5);
        ck_assert_str_eq(ynode_get(m, "k")->value, "v");
        ck_assert_uint_eq(ynode_get(m, "n")->line, 6);
        ck_assert_uint_eq(ynode_get(m, "n")->column, 17);

        ck_assert_int_eq(ynode_get(root, "empty")->type, YNODE_SEQUENCE);
        ck_assert_uint_eq(ynode_get(root, "empty")->n_items, 0);
}
END_TEST

START_TEST(test_scalars_stay_text) {
        /* YAML 1.1 would make these false, octal 8 and 16: the tree keeps what
         * was written and leaves typing to the schema. */
        _cleanup_(ynode_freep) YNode *root =
                parse_ok("a: NO\nb: 010\nc: 0x10\nd: ~\ne:\nf: ''\ng: |\n  two\n  lines\n");

        ck_assert_str_eq(ynode_get(root, "a")->value, "NO");
        ck_assert_str_eq(ynode_get(root, "b")->value, "010");
        ck_assert_str_eq(ynode_get(root, "c")->value, "0x10");
        ck_assert(ynode_is_null(ynode_get(root, "d")));
        ck_assert(ynode_is_null(ynode_get(root, "e")));
        ck_assert(!ynode_is_null(ynode_get(root, "f"))); /* a quoted empty string is a string */
        ck_assert_uint_eq(ynode_get(root, "f")->length, 0);
        ck_assert_str_eq(ynode_get(root, "g")->value, "two\nlines\n");
        ck_assert(!ynode_get(root, "g")->plain);
        ck_assert(!ynode_is_null(ynode_get(root, "a")));
}
END_TEST

START_TEST(test_utf8_text) {
        _cleanup_(ynode_freep) YNode *root = parse_ok("\xef\xbb\xbf# a UTF-8 byte order mark is fine\n"
                                                      "grüße: \"naïve ☃\"\n");

        ck_assert_str_eq(root->keys[0]->value, "grüße");
        ck_assert_str_eq(root->items[0]->value, "naïve ☃");
        /* Columns count characters, not bytes. */
        ck_assert_uint_eq(root->items[0]->line, 2);
        ck_assert_uint_eq(root->items[0]->column, 8);
}
END_TEST

START_TEST(test_aliases_and_anchors) {
        assert_yaml_refused("a: &x 1\nb: *x\n", "line 1, column 4", "anchors");
        assert_yaml_refused("a: 1\nb: *x\n", "line 2, column 4", "aliases");
        assert_yaml_refused("a: &x [1, 2]\n", "line 1, column 4", "anchors");
        assert_yaml_refused("a: &x {b: 1}\n", "line 1, column 4", "anchors");
        assert_yaml_refused("&root\na: 1\n", "line 1, column 1", "anchors");
        /* A "billion laughs" document fails at its first anchor. */
        assert_yaml_refused("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "line 1, column 4", "anchors");
}
END_TEST

START_TEST(test_tags) {
        assert_yaml_refused("a: !!str 1\n", "line 1, column 4", "tags are not allowed",
                            "tag:yaml.org,2002:str");
        assert_yaml_refused("a: !custom x\n", "line 1, column 4", "tags are not allowed", "!custom");
        assert_yaml_refused("a: ! x\n", "line 1, column 4", "tags are not allowed");
        assert_yaml_refused("--- !!map\na: 1\n", "line 1, column 5", "tags are not allowed");
        assert_yaml_refused("a: !!seq [1]\n", "line 1, column 4", "tags are not allowed");
        assert_yaml_refused("!!python/object:os.system\na: 1\n", "line 1, column 1", "tags are not allowed");
        assert_yaml_refused("%TAG !e! tag:example.com,2000:\n---\na: 1\n", "line 1, column 1", "%TAG");
}
END_TEST

START_TEST(test_duplicate_keys) {
        assert_yaml_refused("a: 1\nb: 2\na: 3\n", "line 3, column 1", "duplicate key 'a'",
                            "line 1, column 1");
        assert_yaml_refused("m: {x: 1, y: 2, x: 3}\n", "line 1, column 17", "duplicate key 'x'");
        /* Quoting does not make a different key. */
        assert_yaml_refused("a: 1\n'a': 2\n", "line 2, column 1", "duplicate key 'a'");
        assert_yaml_refused("outer:\n  inner: 1\n  inner: 2\n", "line 3, column 3", "duplicate key 'inner'");

        /* The same key in different mappings is fine. */
        _cleanup_(ynode_freep) YNode *n = parse_ok("a: {x: 1}\nb: {x: 2}\n");
        ck_assert_str_eq(ynode_get(ynode_get(n, "b"), "x")->value, "2");
}
END_TEST

START_TEST(test_non_scalar_keys) {
        assert_yaml_refused("? [a, b]\n: 1\n", "line 1, column 3", "mapping key must be a string", "list");
        assert_yaml_refused("? {a: 1}\n: 1\n", "line 1, column 3", "mapping key must be a string",
                            "mapping");
        assert_yaml_refused("{[a]: 1}\n", "line 1, column 2", "mapping key must be a string");
}
END_TEST

static char *nested(size_t depth) {
        char *s = malloc(depth * 2 + 2);

        ck_assert_ptr_nonnull(s);
        memset(s, '[', depth);
        memset(s + depth, ']', depth);
        strcpy(s + depth * 2, "\n");
        return s;
}

START_TEST(test_depth) {
        _cleanup_free_ char *ok = nested(YAML_MAX_DEPTH), *deep = nested(YAML_MAX_DEPTH + 1),
                            *bomb = nested(100000);
        _cleanup_(ynode_freep) YNode *n = parse_ok(ok);
        const YNode *i = n;

        for (unsigned d = 1; d < YAML_MAX_DEPTH; d++) {
                ck_assert_int_eq(i->type, YNODE_SEQUENCE);
                ck_assert_uint_eq(i->n_items, 1);
                i = i->items[0];
        }
        ck_assert_uint_eq(i->n_items, 0);

        assert_yaml_refused(deep, "line 1, column 17", "deeper than 16");
        assert_yaml_refused(bomb, "line 1, column 17", "deeper than 16");
        /* Block nesting counts the same way. */
        assert_yaml_refused("a:\n b:\n  c:\n   d:\n    e:\n     f:\n      g:\n       h:\n        i:\n"
                            "         j:\n          k:\n           l:\n            m:\n             n:\n"
                            "              o:\n               p:\n                q: 1\n",
                            "line 17, column 17", "deeper than 16");
}
END_TEST

static char *flow_sequence(size_t items) {
        char *s = malloc(items * 2 + 3), *p = s;

        ck_assert_ptr_nonnull(s);
        *p++ = '[';
        for (size_t i = 0; i < items; i++) {
                *p++ = 'a';
                *p++ = i + 1 < items ? ',' : ']';
        }
        strcpy(p, "\n");
        return s;
}

START_TEST(test_node_count) {
        /* The sequence itself and its items are nodes: 1 + 9999 is the most. */
        _cleanup_free_ char *ok = flow_sequence(YAML_MAX_NODES - 1), *over = flow_sequence(YAML_MAX_NODES),
                            *flood = flow_sequence(500000);
        _cleanup_(ynode_freep) YNode *n = parse_ok(ok);

        ck_assert_uint_eq(n->n_items, YAML_MAX_NODES - 1);
        /* The 10001st node is the 10000th item, at column 2 * 10000. */
        assert_yaml_refused(over, "line 1, column 20000", "more than 10000 nodes");
        assert_yaml_refused(flood, "line 1, column 20000", "more than 10000 nodes");

        /* Keys count too: a mapping of 5000 pairs plus itself is 10001 nodes. */
        {
                size_t size = 5000 * 12 + 1;
                _cleanup_free_ char *m = malloc(size);
                char *p;
                p = m;
                for (unsigned i = 0; i < 5000; i++)
                        p += sprintf(p, "k%05u: v\n", i);
                assert_yaml_refused(m, "line 5000, column 9", "more than 10000 nodes");
        }
}
END_TEST

START_TEST(test_size_cap) {
        _cleanup_free_ char *doc = malloc(YAML_MAX_SIZE + 1);
        _cleanup_(ynode_freep) YNode *n = NULL;

        /* Exactly at the cap: a comment filling the space, then a mapping. */
        memset(doc, '#', YAML_MAX_SIZE);
        memcpy(doc + YAML_MAX_SIZE - 6, "\na: 1\n", 6);
        doc[YAML_MAX_SIZE] = 0;
        n = parse_ok(doc);
        ck_assert_str_eq(ynode_get(n, "a")->value, "1");

        /* One byte more. */
        doc[YAML_MAX_SIZE - 1] = ' ';
        doc[YAML_MAX_SIZE] = '\n';
        assert_yaml_refused_n(doc, (size_t) YAML_MAX_SIZE + 1, -EFBIG, "line 1, column 1", "over the limit");
}
END_TEST

START_TEST(test_multiple_documents) {
        assert_yaml_refused("a: 1\n---\nb: 2\n", "line 2, column 1", "only one document");
        assert_yaml_refused("---\na: 1\n...\n---\na: 1\n", "line 4, column 1", "only one document");
        /* After an explicit end, libyaml wants "---" before anything else. */
        assert_yaml_refused("a: 1\n...\nb: 2\n", "line 3, column 1", "document start");

        /* Explicit markers around one document are fine. */
        _cleanup_(ynode_freep) YNode *n = parse_ok("%YAML 1.1\n---\na: 1\n...\n");
        ck_assert_str_eq(ynode_get(n, "a")->value, "1");
}
END_TEST

START_TEST(test_invalid_utf8) {
        assert_yaml_refused("a: \xff\n", "line 1, column 4", "UTF-8");
        assert_yaml_refused("a: 1\nb: x\xc3\x28\n", "line 2, column 6", "trailing UTF-8 octet");
        /* Overlong encoding of '/' and a UTF-16 surrogate encoded in UTF-8. */
        assert_yaml_refused("a: \xc0\xaf\n", "line 1, column 4", "UTF-8");
        assert_yaml_refused("a: \xed\xa0\x80\n", "line 1, column 4");
        /* UTF-16 is not guessed from a byte order mark. */
        assert_yaml_refused_n("\xff\xfe"
                              "a\0:\0 \0"
                              "1\0",
                              10, -EPROTO, "line 1, column 1");
        /* Raw control characters and NUL bytes. */
        assert_yaml_refused("a: x\x01y\n", "line 1, column 5", "control characters");
        assert_yaml_refused_n("a: x\0y\n", 7, -EPROTO, "line 1, column 5");
        /* NUL written as an escape. */
        assert_yaml_refused("a: \"x\\0y\"\n", "line 1, column 4", "NUL");
}
END_TEST

START_TEST(test_empty_document) {
        assert_yaml_refused("", "line 1, column 1", "empty");
        assert_yaml_refused_n("", 0, -EPROTO, "line 1, column 1", "empty");
        assert_yaml_refused("# only a comment\n", "line 1, column 1", "empty");
        assert_yaml_refused("---\n", "line 2, column 1", "empty");
        assert_yaml_refused("~\n", "line 1, column 1", "empty");
        assert_yaml_refused("\n\n   \n", "line 1, column 1", "empty");
}
END_TEST

START_TEST(test_syntax_errors) {
        assert_yaml_refused("a: [1, 2\nb: 3\n", "line 2, column 2", "did not find expected ',' or ']'",
                            "while parsing a flow sequence at line 1, column 4");
        assert_yaml_refused("a: 1\n b: 2\n", "line 2, column 3", "mapping values are not allowed");
        assert_yaml_refused("a: 'open\n", "line 2, column 1", "quoted scalar");
        assert_yaml_refused("a:\n\t- 1\n", "line 2, column 1", "tab");
}
END_TEST

START_TEST(test_error_message_is_sanitized) {
        _cleanup_free_ char *long_key = NULL;

        /* A key with an escaped newline cannot start a second log line. */
        assert_yaml_refused("\"a\\nb\": 1\n\"a\\nb\": 2\n", "line 2, column 1", "duplicate key 'a?b'");
        ck_assert_ptr_nonnull(long_key = malloc(2 * 204 + 1));
        for (size_t i = 0; i < 2; i++) {
                memset(long_key + i * 204, 'k', 200);
                strcpy(long_key + i * 204 + 200, ": 1\n");
        }
        {
                _cleanup_free_ char *err = NULL;
                YNode *n = NULL;
                ck_assert_int_eq(yaml_tree_parse(long_key, strlen(long_key), &n, &err), -EPROTO);
                ck_assert_ptr_nonnull(strstr(err, "kkk...'"));
                ck_assert_uint_lt(strlen(err), 200);
        }
        /* Cut on a character boundary. */
        {
                char s[80];
                _cleanup_free_ char *d = NULL;
                memset(s, 'x', 63);
                strcpy(s + 63, "é tail");
                d = yaml_display(s);
                ck_assert_uint_eq(strlen(d), 63 + 3);
        }
}
END_TEST

START_TEST(test_error_pointer_optional) {
        YNode *n = NULL;

        ck_assert_int_eq(yaml_tree_parse("a: *b\n", 6, &n, NULL), -EPROTO);
        ck_assert_ptr_null(n);
        ck_assert_int_eq(yaml_tree_parse("a: b\n", 5, NULL, NULL), -EINVAL);
}
END_TEST

/* ---- schema helpers ----------------------------------------------------------- */

#define assert_helper_refused(call, pos, ...)                                                           \
        do {                                                                                            \
                _cleanup_free_ char *_err = NULL;                                                       \
                const char *_needles[] = {"", ##__VA_ARGS__};                                           \
                char **ret_error = &_err;                                                               \
                ck_assert_int_eq((call), -EPROTO);                                                      \
                ck_assert_ptr_nonnull(_err);                                                            \
                ck_assert_msg(strneq(_err, pos ": ", strlen(pos ": ")), "error '%s' is not at '%s'",    \
                              strna(_err), pos);                                                        \
                for (size_t _i = 0; _i < ELEMENTSOF(_needles); _i++)                                    \
                        ck_assert_msg(strstr(_err, _needles[_i]), "error '%s' lacks '%s'", strna(_err), \
                                      _needles[_i]);                                                    \
        } while (0)

START_TEST(test_ymap_check) {
        static const char *const allowed[] = {"a", "b", NULL};
        _cleanup_(ynode_freep) YNode *ok = parse_ok("a: 1\nb: 2\n"), *bad = parse_ok("a: 1\nc: 2\n"),
                                     *list = parse_ok("- a\n");

        ck_assert_int_eq(ymap_check(ok, "the thing", allowed, NULL), 0);
        assert_helper_refused(ymap_check(bad, "the thing", allowed, ret_error), "line 2, column 1",
                              "unknown key 'c' in the thing", "allowed: a, b");
        assert_helper_refused(ymap_check(list, "the thing", allowed, ret_error), "line 1, column 1",
                              "the thing must be a mapping, not a list");
}
END_TEST

START_TEST(test_strings) {
        _cleanup_(ynode_freep) YNode *m = parse_ok("s: hello\nq: \"x y\"\nn: 12\nnull:\nempty: ''\n"
                                                   "ctl: \"a\\x01b\"\nlist: [a]\nml: |\n  a\n  b\n");
        _cleanup_free_ char *s = NULL, *q = NULL, *n = NULL, *ml = NULL, *absent = (char *) 1;

        ck_assert_int_eq(ymap_required_string(m, "it", "s", 100, &s, NULL), 0);
        ck_assert_str_eq(s, "hello");
        ck_assert_int_eq(ymap_required_string(m, "it", "q", 100, &q, NULL), 0);
        ck_assert_str_eq(q, "x y");
        /* A plain number is text when a string is wanted. */
        ck_assert_int_eq(ymap_required_string(m, "it", "n", 100, &n, NULL), 0);
        ck_assert_str_eq(n, "12");
        ck_assert_int_eq(ymap_optional_string(m, "ml", 100, &ml, NULL), 0);
        ck_assert_str_eq(ml, "a\nb\n");
        ck_assert_int_eq(ymap_optional_string(m, "absent", 100, &absent, NULL), 0);
        ck_assert_ptr_null(absent);

        assert_helper_refused(ymap_required_string(m, "it", "missing", 100, &s, ret_error),
                              "line 1, column 1", "missing required key 'missing' in it");
        assert_helper_refused(ymap_required_string(m, "it", "null", 100, &s, ret_error), "line 4, column 6",
                              "'null' has no value");
        assert_helper_refused(ymap_required_string(m, "it", "empty", 100, &s, ret_error), "line 5, column 8",
                              "'empty' is an empty string");
        assert_helper_refused(ymap_required_string(m, "it", "ctl", 100, &s, ret_error), "line 6, column 6",
                              "'ctl' contains a control character");
        assert_helper_refused(ymap_required_string(m, "it", "list", 100, &s, ret_error), "line 7, column 7",
                              "'list' must be a string, not a list");
        assert_helper_refused(ymap_required_string(m, "it", "s", 4, &s, ret_error), "line 1, column 4",
                              "'s' is longer than 4 bytes");
}
END_TEST

START_TEST(test_uints) {
        _cleanup_(ynode_freep) YNode *m =
                parse_ok("dec: 42\nhex: 0xFFffFFff\nzero: 0\nmax: 18446744073709551615\n"
                         "over: 18446744073709551616\nhexover: 0x10000000000000000\n"
                         "lead: 007\nneg: -1\nquoted: \"42\"\nword: forty\nfloat: 4.2\n"
                         "under: 1_000\nbare: 0x\n");
        uint64_t v;

        ck_assert_int_eq(ymap_required_uint(m, "it", "dec", 0, UINT64_MAX, &v, NULL), 0);
        ck_assert_uint_eq(v, 42);
        ck_assert_int_eq(ymap_required_uint(m, "it", "hex", 0, UINT32_MAX, &v, NULL), 0);
        ck_assert_uint_eq(v, 0xffffffffu);
        ck_assert_int_eq(ymap_required_uint(m, "it", "zero", 0, 1, &v, NULL), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_int_eq(ymap_required_uint(m, "it", "max", 0, UINT64_MAX, &v, NULL), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
        ck_assert_int_eq(ymap_optional_uint(m, "absent", 0, 10, 7, &v, NULL), 0);
        ck_assert_uint_eq(v, 7);

        assert_helper_refused(ymap_required_uint(m, "it", "dec", 0, 41, &v, ret_error), "line 1, column 6",
                              "'dec' must be between 0 and 41");
        assert_helper_refused(ymap_required_uint(m, "it", "zero", 1, 5, &v, ret_error), "line 3, column 7",
                              "'zero' must be between 1 and 5");
        assert_helper_refused(ymap_required_uint(m, "it", "over", 0, UINT64_MAX, &v, ret_error),
                              "line 5, column 7", "'over' must be between");
        assert_helper_refused(ymap_required_uint(m, "it", "hexover", 0, UINT64_MAX, &v, ret_error),
                              "line 6, column 10", "'hexover' must be between");
        assert_helper_refused(ymap_required_uint(m, "it", "lead", 0, 100, &v, ret_error), "line 7, column 7",
                              "'lead' must be an unsigned integer", "'007'");
        assert_helper_refused(ymap_required_uint(m, "it", "neg", 0, 100, &v, ret_error), "line 8, column 6",
                              "'neg' must be an unsigned integer");
        assert_helper_refused(ymap_required_uint(m, "it", "quoted", 0, 100, &v, ret_error),
                              "line 9, column 9",
                              "'quoted' must be an unsigned integer, not a quoted string");
        assert_helper_refused(ymap_required_uint(m, "it", "word", 0, 100, &v, ret_error),
                              "line 10, column 7", "'word'");
        assert_helper_refused(ymap_required_uint(m, "it", "float", 0, 100, &v, ret_error),
                              "line 11, column 8", "'float'");
        assert_helper_refused(ymap_required_uint(m, "it", "under", 0, 10000, &v, ret_error),
                              "line 12, column 8", "'under'");
        assert_helper_refused(ymap_required_uint(m, "it", "bare", 0, 10000, &v, ret_error),
                              "line 13, column 7", "'bare'");
        assert_helper_refused(ymap_required_uint(m, "it", "absent", 0, 10, &v, ret_error),
                              "line 1, column 1", "missing required key 'absent'");
}
END_TEST

START_TEST(test_durations) {
        _cleanup_(ynode_freep) YNode *m =
                parse_ok("- 300\n- 300s\n- 10m\n- 1h30m\n- 2h5s\n- '45s'\n- 0\n"
                         "- 10 m\n- 5m10m\n- 5s3m\n- 3d\n- m\n- 99999999999999999999h\n"
                         "- 1h-1s\n");
        static const uint64_t expect[] = {300, 300, 600, 5400, 7205, 45, 0};
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(expect); i++) {
                ck_assert_int_eq(ynode_duration(m->items[i], "d", 0, UINT64_MAX, &v, NULL), 0);
                ck_assert_uint_eq(v, expect[i]);
        }
        for (size_t i = ELEMENTSOF(expect); i + 1 < m->n_items; i++)
                ck_assert_int_eq(ynode_duration(m->items[i], "d", 0, UINT64_MAX, &v, NULL), -EPROTO);
        assert_helper_refused(ynode_duration(m->items[13], "d", 0, UINT64_MAX, &v, ret_error),
                              "line 14, column 3", "'d' must be a duration like 300, 300s, 10m or 1h30m",
                              "'1h-1s'");
        assert_helper_refused(ynode_duration(m->items[12], "d", 0, UINT64_MAX, &v, ret_error),
                              "line 13, column 3", "'d' must be between");
        assert_helper_refused(ynode_duration(m->items[2], "d", 0, 599, &v, ret_error), "line 3, column 3",
                              "'d' must be between 0s and 599s");
}
END_TEST

static const char *no_x(const char *s) {
        return strchr(s, 'x') ? "contains an x" : NULL;
}

START_TEST(test_strv) {
        _cleanup_(ynode_freep) YNode *m = parse_ok("ok: [a, b, 'c d']\nnone: []\nscalar: a\n"
                                                   "nested: [a, [b]]\ndup: [a, b, a]\nbad: [a, box]\n"
                                                   "nullitem: [a, ~]\n");
        _cleanup_strv_free_ char **l = NULL, **e = NULL, **dup = NULL;
        char **out = NULL;

        ck_assert_int_eq(ynode_strv(ynode_get(m, "ok"), "ok", 10, 100, no_x, true, &l, NULL), 0);
        ck_assert_uint_eq(strv_length(l), 3);
        ck_assert_str_eq(l[2], "c d");
        ck_assert_int_eq(ynode_strv(ynode_get(m, "none"), "none", 10, 100, NULL, true, &e, NULL), 0);
        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_null(e[0]);
        /* Duplicates are fine when not asked to be unique. */
        ck_assert_int_eq(ynode_strv(ynode_get(m, "dup"), "dup", 10, 100, NULL, false, &dup, NULL), 0);
        ck_assert_uint_eq(strv_length(dup), 3);

        assert_helper_refused(ynode_strv(ynode_get(m, "ok"), "ok", 2, 100, NULL, true, &out, ret_error),
                              "line 1, column 5", "'ok' has more than 2 items");
        assert_helper_refused(
                ynode_strv(ynode_get(m, "scalar"), "scalar", 10, 100, NULL, true, &out, ret_error),
                "line 3, column 9", "'scalar' must be a list, not a string");
        assert_helper_refused(
                ynode_strv(ynode_get(m, "nested"), "nested", 10, 100, NULL, true, &out, ret_error),
                "line 4, column 13", "'nested' must be a string, not a list");
        assert_helper_refused(ynode_strv(ynode_get(m, "dup"), "dup", 10, 100, NULL, true, &out, ret_error),
                              "line 5, column 13", "'dup' lists 'a' twice");
        assert_helper_refused(ynode_strv(ynode_get(m, "bad"), "bad", 10, 100, no_x, true, &out, ret_error),
                              "line 6, column 10", "'bad': 'box' is not valid: contains an x");
        assert_helper_refused(
                ynode_strv(ynode_get(m, "nullitem"), "nullitem", 10, 100, NULL, true, &out, ret_error),
                "line 7, column 15", "'nullitem' has no value");
        ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_safe_names) {
        ck_assert(manifest_name_is_safe("laptop-0042", 64));
        ck_assert(manifest_name_is_safe("a.b_c-D9", 64));
        ck_assert(manifest_name_is_safe("x", 1));
        ck_assert(!manifest_name_is_safe("xy", 1));
        ck_assert(!manifest_name_is_safe("", 64));
        ck_assert(!manifest_name_is_safe(".", 64));
        ck_assert(!manifest_name_is_safe("..", 64));
        ck_assert(!manifest_name_is_safe("a/b", 64));
        ck_assert(!manifest_name_is_safe("a b", 64));
        ck_assert(!manifest_name_is_safe("ä", 64));
        ck_assert(!manifest_name_is_safe(NULL, 64));
}
END_TEST

START_TEST(test_type_table) {
        ck_assert_str_eq(ynode_type_to_string(YNODE_SCALAR), "string");
        ck_assert_str_eq(ynode_type_to_string(YNODE_SEQUENCE), "list");
        ck_assert_str_eq(ynode_type_to_string(YNODE_MAPPING), "mapping");
        ck_assert_int_eq(ynode_type_from_string("list"), YNODE_SEQUENCE);
        ck_assert_int_eq(ynode_type_from_string("dict"), -EINVAL);
}
END_TEST

static Suite *yaml_suite(void) {
        Suite *s = suite_create("yaml");
        TCase *tc = tcase_create("tree");

        tcase_add_test(tc, test_tree_and_positions);
        tcase_add_test(tc, test_scalars_stay_text);
        tcase_add_test(tc, test_utf8_text);
        tcase_add_test(tc, test_aliases_and_anchors);
        tcase_add_test(tc, test_tags);
        tcase_add_test(tc, test_duplicate_keys);
        tcase_add_test(tc, test_non_scalar_keys);
        tcase_add_test(tc, test_depth);
        tcase_add_test(tc, test_node_count);
        tcase_add_test(tc, test_size_cap);
        tcase_add_test(tc, test_multiple_documents);
        tcase_add_test(tc, test_invalid_utf8);
        tcase_add_test(tc, test_empty_document);
        tcase_add_test(tc, test_syntax_errors);
        tcase_add_test(tc, test_error_message_is_sanitized);
        tcase_add_test(tc, test_error_pointer_optional);
        suite_add_tcase(s, tc);

        tc = tcase_create("schema-helpers");
        tcase_add_test(tc, test_ymap_check);
        tcase_add_test(tc, test_strings);
        tcase_add_test(tc, test_uints);
        tcase_add_test(tc, test_durations);
        tcase_add_test(tc, test_strv);
        tcase_add_test(tc, test_safe_names);
        tcase_add_test(tc, test_type_table);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(yaml_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

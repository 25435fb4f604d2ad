/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The jansson adapter: strict parsing of untrusted metadata and canonical
 * JSON, the byte form TUF signatures are computed over.
 *
 * Canonical JSON here is the OLPC dialect as securesystemslib (python-tuf)
 * and @tufjs/canonical-json implement it, byte for byte:
 *   - objects with members sorted by key, no white space at all;
 *   - strings in double quotes with only '"' and '\\' escaped: every other
 *     byte, raw UTF-8 and raw control characters included, is copied as is;
 *   - integers in decimal, true, false, null; no floats.
 * Keys are sorted by their UTF-8 bytes, which is code point order, the order
 * Python's sorted() gives. tuf-js sorts by UTF-16 code units instead; the two
 * only differ when one key has a character above U+FFFF where another has
 * one in U+E000..U+FFFF at the same position, which no TUF field name does.
 */

#include <assert.h>

#include "manifests-internal.h"

/* Nesting allowed in a parsed document: TUF's deepest standard path is
 * signed.delegations.roles[].paths (depth 5); "custom" fields get the rest. */
#define JSON_DEPTH_MAX 32U
/* Recursion bound for canonicalization of trees built in memory (which may
 * be a little deeper than parsed ones, e.g. a parsed "signed" inside its
 * envelope). Also stops a reference cycle from overflowing the stack. */
#define JSON_CANONICAL_DEPTH_MAX 512U

/* Refuse reals and measure depth: one walk over the parsed tree. */
static int json_check_tree(const json_t *v, unsigned depth) {
        switch (json_typeof(v)) {

        case JSON_OBJECT: {
                const char *key;
                json_t *child;

                if (depth >= JSON_DEPTH_MAX)
                        return -EPROTO;
                /* jansson's iteration API takes non-const objects; it does not modify them. */
                json_object_foreach((json_t *) v, key, child) {
                        int r = json_check_tree(child, depth + 1);
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        case JSON_ARRAY: {
                size_t i;
                json_t *child;

                if (depth >= JSON_DEPTH_MAX)
                        return -EPROTO;
                json_array_foreach(v, i, child) {
                        int r = json_check_tree(child, depth + 1);
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        case JSON_REAL:
                return -EPROTO;

        case JSON_STRING:
        case JSON_INTEGER:
        case JSON_TRUE:
        case JSON_FALSE:
        case JSON_NULL:
                return 0;
        }

        return -EPROTO;
}

int tuf_json_parse(const void *data, size_t size, size_t max_size, json_t **ret) {
        _cleanup_json_ json_t *v = NULL;
        json_error_t error;
        size_t cap;
        int r;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        /* 0 means "no cap of the caller's own": the global one still holds. */
        cap = max_size == 0 ? TUF_METADATA_MAX_LENGTH : MIN((size_t) TUF_METADATA_MAX_LENGTH, max_size);
        if (size > cap)
                return -EFBIG;
        if (size == 0)
                return -EPROTO;

        /* Without JSON_DECODE_ANY the top level is an object or array, without
         * JSON_ALLOW_NUL "\u0000" is refused in strings and keys, and jansson
         * always validates UTF-8 and refuses trailing garbage. */
        v = json_loadb(data, size, JSON_REJECT_DUPLICATES, &error);
        if (!v) {
                log_debug("Refusing JSON document: %s at line %d, column %d", error.text, error.line,
                          error.column);
                return -EPROTO;
        }
        if (!json_is_object(v))
                return -EPROTO;

        r = json_check_tree(v, 0);
        if (r < 0) {
                log_debug("Refusing JSON document: real number or nesting deeper than %u", JSON_DEPTH_MAX);
                return r;
        }

        *ret = TAKE_PTR(v);
        return 0;
}

/* ---- canonical serialization ---------------------------------------------- */

/* A growing output buffer: capacity doubles, so building is linear. */
typedef struct Buffer {
        char *data;
        size_t size, allocated;
} Buffer;

static int buffer_reserve(Buffer *b, size_t extra) {
        size_t need, n;
        char *p;

        if (extra > SIZE_MAX - b->size - 1)
                return -ENOMEM;
        need = b->size + extra + 1; /* room for a terminating NUL */
        if (need <= b->allocated)
                return 0;
        n = MAX(b->allocated, (size_t) 256);
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        p = realloc(b->data, n);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->allocated = n;
        return 0;
}

static int buffer_put(Buffer *b, const void *p, size_t n) {
        int r = buffer_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->size, p, n);
        b->size += n;
        return 0;
}

static int buffer_putc(Buffer *b, char c) {
        return buffer_put(b, &c, 1);
}

static int emit_string(Buffer *b, const char *s, size_t n) {
        size_t start = 0;
        int r;

        /* Worst case every byte is escaped: reserve once, then copy runs. */
        r = buffer_reserve(b, n > (SIZE_MAX - 2) / 2 ? SIZE_MAX : 2 * n + 2);
        if (r < 0)
                return r;
        b->data[b->size++] = '"';
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '"' && s[i] != '\\')
                        continue;
                memcpy(b->data + b->size, s + start, i - start);
                b->size += i - start;
                b->data[b->size++] = '\\';
                start = i; /* the quote or backslash itself goes out with the next run */
        }
        memcpy(b->data + b->size, s + start, n - start);
        b->size += n - start;
        b->data[b->size++] = '"';
        return 0;
}

typedef struct Member {
        const char *key;
        size_t key_len;
        const json_t *value;
} Member;

static int member_compare(const void *a, const void *b) {
        const Member *x = a, *y = b;
        int c = memcmp(x->key, y->key, MIN(x->key_len, y->key_len));

        if (c != 0)
                return c;
        /* A key sorts before every longer key it is a prefix of. */
        return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static int emit_value(Buffer *b, const json_t *v, unsigned depth);

static int emit_object(Buffer *b, const json_t *v, unsigned depth) {
        _cleanup_free_ Member *members = NULL;
        size_t n = json_object_size(v), i = 0;
        const char *key;
        size_t key_len;
        json_t *child;
        int r;

        if (n > 0) {
                members = calloc(n, sizeof(Member));
                if (!members)
                        return -ENOMEM;
        }
        json_object_keylen_foreach((json_t *) v, key, key_len, child) {
                assert(i < n);
                members[i++] = (Member){.key = key, .key_len = key_len, .value = child};
        }
        assert(i == n);
        if (n > 1)
                qsort(members, n, sizeof(Member), member_compare);

        r = buffer_putc(b, '{');
        if (r < 0)
                return r;
        for (i = 0; i < n; i++) {
                if (i > 0) {
                        r = buffer_putc(b, ',');
                        if (r < 0)
                                return r;
                }
                r = emit_string(b, members[i].key, members[i].key_len);
                if (r < 0)
                        return r;
                r = buffer_putc(b, ':');
                if (r < 0)
                        return r;
                r = emit_value(b, members[i].value, depth + 1);
                if (r < 0)
                        return r;
        }
        return buffer_putc(b, '}');
}

static int emit_value(Buffer *b, const json_t *v, unsigned depth) {
        int r;

        if (depth >= JSON_CANONICAL_DEPTH_MAX)
                return -EPROTO;

        switch (json_typeof(v)) {

        case JSON_OBJECT:
                return emit_object(b, v, depth);

        case JSON_ARRAY: {
                size_t i;
                json_t *child;

                r = buffer_putc(b, '[');
                if (r < 0)
                        return r;
                json_array_foreach(v, i, child) {
                        if (i > 0) {
                                r = buffer_putc(b, ',');
                                if (r < 0)
                                        return r;
                        }
                        r = emit_value(b, child, depth + 1);
                        if (r < 0)
                                return r;
                }
                return buffer_putc(b, ']');
        }

        case JSON_STRING:
                return emit_string(b, json_string_value(v), json_string_length(v));

        case JSON_INTEGER: {
                char num[32];
                int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                assert(n > 0 && (size_t) n < sizeof(num));
                return buffer_put(b, num, (size_t) n);
        }

        case JSON_TRUE:
                return buffer_put(b, "true", STRLEN("true"));
        case JSON_FALSE:
                return buffer_put(b, "false", STRLEN("false"));
        case JSON_NULL:
                return buffer_put(b, "null", STRLEN("null"));

        case JSON_REAL:
                return -EPROTO;
        }

        return -EPROTO;
}

int tuf_json_canonical(const json_t *v, char **ret, size_t *ret_size) {
        Buffer b = {};
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        r = emit_value(&b, v, 0);
        if (r >= 0)
                r = buffer_reserve(&b, 0); /* an empty tree still gets a NUL */
        if (r < 0) {
                free(b.data);
                return r;
        }
        b.data[b.size] = 0;

        if (ret_size)
                *ret_size = b.size;
        *ret = b.data;
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libyaml adapter: bytes -> a strict tree of nodes with positions, and
 * the schema helpers the patch-manifest and order parsers share.
 *
 * We read libyaml's event stream rather than its document API: the
 * composer of yaml_parser_load() expands aliases and knows no limits, while
 * events let us refuse anchors, aliases, tags, over-deep nesting and
 * over-large documents at the first event that crosses a line, before any
 * memory is spent on the rest. libyaml's errors are translated here and
 * nowhere else.
 */

#include <assert.h>
#include <inttypes.h>
#include <yaml.h>

#include "yaml-internal.h"

static const char *const ynode_type_table[_YNODE_TYPE_MAX] = {
        [YNODE_SCALAR] = "string",
        [YNODE_SEQUENCE] = "list",
        [YNODE_MAPPING] = "mapping",
};

DEFINE_STRING_TABLE_LOOKUP(ynode_type, YNodeType);

YNode *ynode_free(YNode *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_items; i++) {
                if (n->keys)
                        ynode_free(n->keys[i]);
                ynode_free(n->items[i]);
        }
        free(n->keys);
        free(n->items);
        free(n->value);
        free(n);
        return NULL;
}

/* ---- messages ------------------------------------------------------------- */

static int format_error_va(char **ret_error, int r, size_t line, size_t column, const char *format,
                           va_list ap) _printf_(5, 0);
static int format_error(char **ret_error, int r, size_t line, size_t column, const char *format, ...)
        _printf_(5, 6);

static int format_error_va(char **ret_error, int r, size_t line, size_t column, const char *format,
                           va_list ap) {
        _cleanup_free_ char *what = NULL;
        char *msg;

        if (!ret_error)
                return r;
        free(*ret_error);
        *ret_error = NULL;
        if (vasprintf(&what, format, ap) < 0)
                return r;
        if (asprintf(&msg, "line %zu, column %zu: %s", line, column, what) < 0)
                return r;
        *ret_error = msg;
        return r;
}

static int format_error(char **ret_error, int r, size_t line, size_t column, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        r = format_error_va(ret_error, r, line, column, format, ap);
        va_end(ap);
        return r;
}

int ynode_error(const YNode *n, char **ret_error, int r, const char *format, ...) {
        va_list ap;

        assert(n);
        va_start(ap, format);
        r = format_error_va(ret_error, r, n->line, n->column, format, ap);
        va_end(ap);
        return r;
}

char *yaml_display(const char *s) {
        size_t n = strlen(s), cut = MIN(n, (size_t) 64);
        char *d;

        while (cut < n && cut > 0 && ((uint8_t) s[cut] & 0xc0) == 0x80)
                cut--;
        d = malloc(cut + 4);
        if (!d)
                return NULL;
        for (size_t i = 0; i < cut; i++)
                d[i] = ((uint8_t) s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
        strcpy(d + cut, cut < n ? "..." : "");
        return d;
}

/* ---- the tree builder ------------------------------------------------------ */

typedef struct Frame {
        YNode *node;        /* an open collection */
        YNode *pending_key; /* mapping: key read, value not yet */
        size_t allocated;
} Frame;

typedef struct Builder {
        YNode *root;
        Frame stack[YAML_MAX_DEPTH];
        size_t depth;
        size_t n_nodes;
        unsigned n_documents;
} Builder;

static void builder_done(Builder *b) {
        for (size_t i = 0; i < b->depth; i++)
                ynode_free(b->stack[i].pending_key);
        b->root = ynode_free(b->root);
        b->depth = 0;
}

static int append_child(Frame *f, YNode *key, YNode *value) {
        YNode *n = f->node;

        if (n->n_items == f->allocated) {
                size_t a = MAX(f->allocated * 2, (size_t) 4);
                YNode **items = reallocarray(n->items, a, sizeof(YNode *));
                if (!items)
                        return -ENOMEM;
                n->items = items;
                if (n->type == YNODE_MAPPING) {
                        YNode **keys = reallocarray(n->keys, a, sizeof(YNode *));
                        if (!keys)
                                return -ENOMEM;
                        n->keys = keys;
                }
                f->allocated = a;
        }
        if (n->type == YNODE_MAPPING)
                n->keys[n->n_items] = key;
        n->items[n->n_items++] = value;
        return 0;
}

/* Attach a new node (taking ownership) where the document says it goes. */
static int builder_add(Builder *b, YNode *node, char **ret_error) {
        _cleanup_(ynode_freep) YNode *n = node;
        Frame *f;
        int r;

        if (++b->n_nodes > YAML_MAX_NODES)
                return ynode_error(n, ret_error, -EPROTO, "document has more than %u nodes", YAML_MAX_NODES);

        if (b->depth == 0) {
                assert(!b->root); /* libyaml yields one root node per document */
                b->root = TAKE_PTR(n);
                return 0;
        }

        f = &b->stack[b->depth - 1];
        if (f->node->type == YNODE_SEQUENCE || f->pending_key) {
                r = append_child(f, f->pending_key, n);
                if (r < 0)
                        return r;
                f->pending_key = NULL;
                TAKE_PTR(n);
                return 0;
        }

        /* A key. */
        if (n->type != YNODE_SCALAR)
                return ynode_error(n, ret_error, -EPROTO, "a mapping key must be a string, not a %s",
                                   ynode_type_to_string(n->type));
        for (size_t i = 0; i < f->node->n_items; i++) {
                const YNode *k = f->node->keys[i];

                if (k->length == n->length && memcmp(k->value, n->value, n->length) == 0) {
                        _cleanup_free_ char *d = yaml_display(n->value);
                        return ynode_error(n, ret_error, -EPROTO,
                                           "duplicate key '%s' (first at line %u, column %u)", strna(d),
                                           k->line, k->column);
                }
        }
        f->pending_key = TAKE_PTR(n);
        return 0;
}

static YNode *ynode_new(YNodeType type, const yaml_mark_t *mark) {
        YNode *n = calloc(1, sizeof(YNode));

        if (!n)
                return NULL;
        n->type = type;
        n->line = (unsigned) MIN(mark->line + 1, (size_t) UINT_MAX);
        n->column = (unsigned) MIN(mark->column + 1, (size_t) UINT_MAX);
        return n;
}

/* Anchors and tags are refused wherever they appear. */
static int check_properties(const yaml_event_t *e, const yaml_char_t *anchor, const yaml_char_t *tag,
                            char **ret_error) {
        size_t line = e->start_mark.line + 1, column = e->start_mark.column + 1;

        if (anchor)
                return format_error(ret_error, -EPROTO, line, column, "anchors (&name) are not allowed");
        if (tag) {
                _cleanup_free_ char *d = yaml_display((const char *) tag);
                return format_error(ret_error, -EPROTO, line, column, "tags are not allowed (found '%s')",
                                    strna(d));
        }
        return 0;
}

static int builder_event(Builder *b, const yaml_event_t *e, char **ret_error) {
        size_t line = e->start_mark.line + 1, column = e->start_mark.column + 1;
        YNodeType type;
        YNode *n;
        int r;

        switch (e->type) {

        case YAML_STREAM_START_EVENT:
        case YAML_STREAM_END_EVENT:
        case YAML_NO_EVENT:
                return 0;

        case YAML_DOCUMENT_START_EVENT:
                if (b->n_documents > 0)
                        return format_error(ret_error, -EPROTO, line, column,
                                            "only one document is allowed, found a second one");
                if (e->data.document_start.tag_directives.start != e->data.document_start.tag_directives.end)
                        return format_error(ret_error, -EPROTO, line, column,
                                            "%%TAG directives are not allowed");
                b->n_documents++;
                return 0;

        case YAML_DOCUMENT_END_EVENT:
                return 0;

        case YAML_ALIAS_EVENT:
                return format_error(ret_error, -EPROTO, line, column, "aliases (*name) are not allowed");

        case YAML_SCALAR_EVENT:
                r = check_properties(e, e->data.scalar.anchor, e->data.scalar.tag, ret_error);
                if (r < 0)
                        return r;
                if (memchr(e->data.scalar.value, 0, e->data.scalar.length))
                        return format_error(ret_error, -EPROTO, line, column,
                                            "a string contains a NUL character");
                n = ynode_new(YNODE_SCALAR, &e->start_mark);
                if (!n)
                        return -ENOMEM;
                n->value = strndup((const char *) e->data.scalar.value, e->data.scalar.length);
                if (!n->value) {
                        ynode_free(n);
                        return -ENOMEM;
                }
                n->length = e->data.scalar.length;
                n->plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                return builder_add(b, n, ret_error);

        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
                if (e->type == YAML_SEQUENCE_START_EVENT) {
                        type = YNODE_SEQUENCE;
                        r = check_properties(e, e->data.sequence_start.anchor, e->data.sequence_start.tag,
                                             ret_error);
                } else {
                        type = YNODE_MAPPING;
                        r = check_properties(e, e->data.mapping_start.anchor, e->data.mapping_start.tag,
                                             ret_error);
                }
                if (r < 0)
                        return r;
                if (b->depth >= YAML_MAX_DEPTH)
                        return format_error(ret_error, -EPROTO, line, column,
                                            "nesting is deeper than %u levels", YAML_MAX_DEPTH);
                n = ynode_new(type, &e->start_mark);
                if (!n)
                        return -ENOMEM;
                r = builder_add(b, n, ret_error);
                if (r < 0)
                        return r;
                /* builder_add() attached n (it is owned by its parent or is the root). */
                b->stack[b->depth++] = (Frame){.node = n};
                return 0;

        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                /* libyaml never yields a mapping end between a key and its value. */
                assert(b->depth > 0);
                assert(!b->stack[b->depth - 1].pending_key);
                b->depth--;
                return 0;
        }

        return format_error(ret_error, -EPROTO, line, column, "unexpected YAML event");
}

/* Position of a byte offset (libyaml's reader reports offsets, not marks). */
static void offset_to_position(const uint8_t *data, size_t size, size_t offset, size_t *ret_line,
                               size_t *ret_column) {
        size_t line = 1, column = 1;

        for (size_t i = 0; i < MIN(offset, size); i++) {
                if (data[i] == '\n') {
                        line++;
                        column = 1;
                } else if ((data[i] & 0xc0) != 0x80)
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

static int translate_parser_error(const yaml_parser_t *p, const uint8_t *data, size_t size,
                                  char **ret_error) {
        const char *problem = p->problem ?: "syntax error";
        size_t line, column;

        switch (p->error) {

        case YAML_MEMORY_ERROR:
                if (ret_error) {
                        free(*ret_error);
                        *ret_error = NULL;
                }
                return -ENOMEM;

        case YAML_READER_ERROR:
                offset_to_position(data, size, p->problem_offset, &line, &column);
                if (p->problem_value >= 0)
                        return format_error(ret_error, -EPROTO, line, column, "%s (0x%X)", problem,
                                            p->problem_value);
                return format_error(ret_error, -EPROTO, line, column, "%s", problem);

        default:
                line = p->problem_mark.line + 1;
                column = p->problem_mark.column + 1;
                /* The most common hand-editing mistake gets a plain answer. */
                if (p->problem_mark.index < size && data[p->problem_mark.index] == '\t')
                        return format_error(ret_error, -EPROTO, line, column,
                                            "a tab character: YAML is indented with spaces only");
                if (p->context)
                        return format_error(ret_error, -EPROTO, line, column,
                                            "%s (%s at line %zu, column %zu)", problem, p->context,
                                            p->context_mark.line + 1, p->context_mark.column + 1);
                return format_error(ret_error, -EPROTO, line, column, "%s", problem);
        }
}

static void parser_deletep(yaml_parser_t *p) {
        yaml_parser_delete(p);
}

int yaml_tree_parse(const void *data, size_t size, YNode **ret, char **ret_error) {
        _cleanup_(parser_deletep) yaml_parser_t parser = {};
        _cleanup_(builder_done) Builder b = {};
        bool end = false;
        int r;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (size > YAML_MAX_SIZE)
                return format_error(ret_error, -EFBIG, 1, 1,
                                    "document is %zu bytes, over the limit of %u bytes", size,
                                    YAML_MAX_SIZE);

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, size > 0 ? data : (const void *) "", size);
        /* UTF-8 only: no guessing of UTF-16 from a byte order mark. */
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

        while (!end) {
                yaml_event_t e;

                if (!yaml_parser_parse(&parser, &e))
                        return translate_parser_error(&parser, data, size, ret_error);
                end = e.type == YAML_STREAM_END_EVENT;
                r = builder_event(&b, &e, ret_error);
                yaml_event_delete(&e);
                if (r == -ENOMEM && ret_error) {
                        free(*ret_error);
                        *ret_error = NULL;
                }
                if (r < 0)
                        return r;
        }

        if (!b.root || (b.root->type == YNODE_SCALAR && ynode_is_null(b.root)))
                return format_error(ret_error, -EPROTO, b.root ? b.root->line : 1,
                                    b.root ? b.root->column : 1, "the document is empty");

        *ret = TAKE_PTR(b.root);
        return 0;
}

/* ---- queries ---------------------------------------------------------------- */

bool ynode_is_null(const YNode *n) {
        if (!n || n->type != YNODE_SCALAR || !n->plain)
                return false;
        return n->length == 0 || streq(n->value, "~") || streq(n->value, "null") ||
               streq(n->value, "Null") || streq(n->value, "NULL");
}

const YNode *ynode_get(const YNode *m, const char *key) {
        if (!m || m->type != YNODE_MAPPING)
                return NULL;
        for (size_t i = 0; i < m->n_items; i++)
                if (streq(m->keys[i]->value, key))
                        return m->items[i];
        return NULL;
}

bool manifest_name_is_safe(const char *s, size_t max) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > max || streq(s, ".") || streq(s, ".."))
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* ---- schema helpers ------------------------------------------------------- */

int ymap_check(const YNode *m, const char *what, const char *const *allowed, char **ret_error) {
        assert(m && what && allowed);

        if (m->type != YNODE_MAPPING)
                return ynode_error(m, ret_error, -EPROTO, "%s must be a mapping, not a %s", what,
                                   ynode_type_to_string(m->type));

        for (size_t i = 0; i < m->n_items; i++) {
                const YNode *k = m->keys[i];
                _cleanup_free_ char *d = NULL, *list = NULL;
                size_t len = 0;
                bool found = false;

                for (const char *const *a = allowed; *a; a++)
                        if (streq(k->value, *a))
                                found = true;
                if (found)
                        continue;

                for (const char *const *a = allowed; *a; a++)
                        len += strlen(*a) + 2;
                list = malloc(len + 1);
                if (!list)
                        return -ENOMEM;
                list[0] = 0;
                for (const char *const *a = allowed; *a; a++) {
                        if (a != allowed)
                                strcat(list, ", ");
                        strcat(list, *a);
                }
                d = yaml_display(k->value);
                return ynode_error(k, ret_error, -EPROTO, "unknown key '%s' in %s (allowed: %s)", strna(d),
                                   what, list);
        }
        return 0;
}

int ymap_check_format(const YNode *root, const char *what, const char *expected, char **ret_error) {
        _cleanup_free_ char *format = NULL;
        int r;

        assert(root && what && expected);

        if (root->type != YNODE_MAPPING)
                return ynode_error(root, ret_error, -EPROTO, "%s must be a mapping, not a %s", what,
                                   ynode_type_to_string(root->type));
        r = ymap_required_string(root, what, "format", 64, &format, ret_error);
        if (r < 0)
                return r;
        if (!streq(format, expected)) {
                _cleanup_free_ char *d = yaml_display(format);
                return ynode_error(ynode_get(root, "format"), ret_error, -EPROTO,
                                   "'format' is '%s', expected '%s'", strna(d), expected);
        }
        return 0;
}

static int check_scalar(const YNode *n, const char *key, const char *expected, char **ret_error) {
        if (n->type != YNODE_SCALAR)
                return ynode_error(n, ret_error, -EPROTO, "'%s' must be %s, not a %s", key, expected,
                                   ynode_type_to_string(n->type));
        if (ynode_is_null(n))
                return ynode_error(n, ret_error, -EPROTO, "'%s' has no value (expected %s)", key, expected);
        return 0;
}

int ynode_string(const YNode *n, const char *key, size_t max_length, char **ret, char **ret_error) {
        char *s;
        int r;

        assert(n && key && ret);

        r = check_scalar(n, key, "a string", ret_error);
        if (r < 0)
                return r;
        if (n->length == 0)
                return ynode_error(n, ret_error, -EPROTO, "'%s' is an empty string", key);
        if (n->length > max_length)
                return ynode_error(n, ret_error, -EPROTO, "'%s' is longer than %zu bytes", key, max_length);
        for (size_t i = 0; i < n->length; i++) {
                uint8_t c = (uint8_t) n->value[i];
                if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                        return ynode_error(n, ret_error, -EPROTO,
                                           "'%s' contains a control character (0x%02X)", key, c);
        }

        s = strdup(n->value);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int ymap_required_string(const YNode *m, const char *what, const char *key, size_t max_length, char **ret,
                         char **ret_error) {
        const YNode *v = ynode_get(m, key);

        if (!v)
                return ynode_error(m, ret_error, -EPROTO, "missing required key '%s' in %s", key, what);
        return ynode_string(v, key, max_length, ret, ret_error);
}

int ymap_optional_string(const YNode *m, const char *key, size_t max_length, char **ret, char **ret_error) {
        const YNode *v = ynode_get(m, key);

        if (!v) {
                *ret = NULL;
                return 0;
        }
        return ynode_string(v, key, max_length, ret, ret_error);
}

/* Decimal without leading zeros (YAML 1.1 would read "010" as octal: we
 * refuse the ambiguity) or "0x" hexadecimal. -EINVAL, -ERANGE. */
static int parse_uint(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                const char *p = s + 2;
                if (!*p)
                        return -EINVAL;
                for (; *p; p++) {
                        unsigned d;
                        if (*p >= '0' && *p <= '9')
                                d = (unsigned) (*p - '0');
                        else if (*p >= 'a' && *p <= 'f')
                                d = (unsigned) (*p - 'a' + 10);
                        else if (*p >= 'A' && *p <= 'F')
                                d = (unsigned) (*p - 'A' + 10);
                        else
                                return -EINVAL;
                        if (v > (UINT64_MAX >> 4))
                                return -ERANGE;
                        v = v << 4 | d;
                }
                *ret = v;
                return 0;
        }
        if (s[0] == '0' && s[1] != 0)
                return -EINVAL;
        return safe_atou64(s, ret);
}

int ynode_uint(const YNode *n, const char *key, uint64_t min, uint64_t max, uint64_t *ret,
               char **ret_error) {
        uint64_t v;
        int r;

        assert(n && key && ret);

        r = check_scalar(n, key, "an unsigned integer", ret_error);
        if (r < 0)
                return r;
        if (!n->plain)
                return ynode_error(n, ret_error, -EPROTO,
                                   "'%s' must be an unsigned integer, not a quoted string", key);
        r = parse_uint(n->value, &v);
        if (r == -ERANGE || (r >= 0 && (v < min || v > max)))
                return ynode_error(n, ret_error, -EPROTO, "'%s' must be between %" PRIu64 " and %" PRIu64,
                                   key, min, max);
        if (r < 0) {
                _cleanup_free_ char *d = yaml_display(n->value);
                return ynode_error(
                        n, ret_error, -EPROTO,
                        "'%s' must be an unsigned integer (decimal without leading zeros, or 0x hex), "
                        "not '%s'",
                        key, strna(d));
        }
        *ret = v;
        return 0;
}

int ymap_required_uint(const YNode *m, const char *what, const char *key, uint64_t min, uint64_t max,
                       uint64_t *ret, char **ret_error) {
        const YNode *v = ynode_get(m, key);

        if (!v)
                return ynode_error(m, ret_error, -EPROTO, "missing required key '%s' in %s", key, what);
        return ynode_uint(v, key, min, max, ret, ret_error);
}

int ymap_optional_uint(const YNode *m, const char *key, uint64_t min, uint64_t max, uint64_t def,
                       uint64_t *ret, char **ret_error) {
        const YNode *v = ynode_get(m, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        return ynode_uint(v, key, min, max, ret, ret_error);
}

static int parse_duration(const char *s, uint64_t *ret) {
        static const struct {
                char unit;
                uint64_t factor;
        } units[] = {{'h', 3600}, {'m', 60}, {'s', 1}};
        uint64_t total = 0;
        size_t next_unit = 0;
        const char *p = s;

        if (!*s)
                return -EINVAL;
        if (strspn(s, "0123456789") == strlen(s))
                return parse_uint(s, ret);

        while (*p) {
                size_t digits = strspn(p, "0123456789");
                uint64_t v = 0, f = 0;

                if (digits == 0 || digits > 19)
                        return digits == 0 ? -EINVAL : -ERANGE;
                for (size_t i = 0; i < digits; i++)
                        v = v * 10 + (uint64_t) (p[i] - '0');
                p += digits;
                for (; next_unit < ELEMENTSOF(units); next_unit++)
                        if (*p == units[next_unit].unit) {
                                f = units[next_unit++].factor;
                                break;
                        }
                if (f == 0)
                        return -EINVAL;
                p++;
                if (v > (UINT64_MAX - total) / f)
                        return -ERANGE;
                total += v * f;
        }
        *ret = total;
        return 0;
}

int ynode_duration(const YNode *n, const char *key, uint64_t min, uint64_t max, uint64_t *ret,
                   char **ret_error) {
        uint64_t v;
        int r;

        assert(n && key && ret);

        r = check_scalar(n, key, "a duration", ret_error);
        if (r < 0)
                return r;
        r = parse_duration(n->value, &v);
        if (r == -ERANGE || (r >= 0 && (v < min || v > max)))
                return ynode_error(n, ret_error, -EPROTO,
                                   "'%s' must be between %" PRIu64 "s and %" PRIu64 "s", key, min, max);
        if (r < 0) {
                _cleanup_free_ char *d = yaml_display(n->value);
                return ynode_error(n, ret_error, -EPROTO,
                                   "'%s' must be a duration like 300, 300s, 10m or 1h30m, not '%s'", key,
                                   strna(d));
        }
        *ret = v;
        return 0;
}

int ynode_strv(const YNode *n, const char *key, size_t max_items, size_t max_length, ystring_check_t valid,
               bool unique, char ***ret, char **ret_error) {
        _cleanup_strv_free_ char **l = NULL;
        size_t k = 0;

        assert(n && key && ret);

        if (n->type != YNODE_SEQUENCE)
                return ynode_error(n, ret_error, -EPROTO, "'%s' must be a list, not a %s", key,
                                   ynode_is_null(n) ? "missing value" : ynode_type_to_string(n->type));
        if (n->n_items > max_items)
                return ynode_error(n, ret_error, -EPROTO, "'%s' has more than %zu items", key, max_items);

        l = calloc(n->n_items + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        for (size_t i = 0; i < n->n_items; i++) {
                const YNode *item = n->items[i];
                const char *problem;
                int r;

                r = ynode_string(item, key, max_length, &l[k], ret_error);
                if (r < 0)
                        return r;
                k++;

                problem = valid ? valid(l[k - 1]) : NULL;
                if (problem) {
                        _cleanup_free_ char *d = yaml_display(l[k - 1]);
                        return ynode_error(item, ret_error, -EPROTO, "'%s': '%s' is not valid: %s", key,
                                           strna(d), problem);
                }
                if (unique)
                        for (size_t j = 0; j + 1 < k; j++)
                                if (streq(l[j], l[k - 1])) {
                                        _cleanup_free_ char *d = yaml_display(l[k - 1]);
                                        return ynode_error(item, ret_error, -EPROTO, "'%s' lists '%s' twice",
                                                           key, strna(d));
                                }
        }

        *ret = TAKE_PTR(l);
        return 0;
}

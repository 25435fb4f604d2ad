/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small streaming JSON writer for our own output. It keeps one bit of
 * state per nesting level (does the next item need a comma) and never
 * buffers: listings of any length stream straight to the FILE.
 */

#include <inttypes.h>

#include "lib.h"

#define JSON_WRITER_MAX_DEPTH 64

struct JsonWriter {
        FILE *f;
        bool pretty;
        unsigned depth;
        bool after_key;
        bool need_comma[JSON_WRITER_MAX_DEPTH];
};

JsonWriter *json_writer_new(FILE *f, bool pretty) {
        JsonWriter *w = calloc(1, sizeof(JsonWriter));

        if (!w)
                return NULL;
        w->f = f;
        w->pretty = pretty;
        return w;
}

JsonWriter *json_writer_free(JsonWriter *w) {
        if (!w)
                return NULL;
        fputc('\n', w->f);
        fflush(w->f);
        free(w);
        return NULL;
}

static void newline_indent(JsonWriter *w) {
        if (!w->pretty)
                return;
        fputc('\n', w->f);
        for (unsigned i = 0; i < w->depth; i++)
                fputs("  ", w->f);
}

/* Before any value or key: the comma and indentation it needs. */
static void prefix(JsonWriter *w) {
        if (w->after_key) {
                w->after_key = false;
                return;
        }
        if (w->depth == 0)
                return;
        if (w->need_comma[w->depth])
                fputc(',', w->f);
        w->need_comma[w->depth] = true;
        newline_indent(w);
}

static void open_level(JsonWriter *w, char c) {
        prefix(w);
        fputc(c, w->f);
        assert(w->depth + 1 < JSON_WRITER_MAX_DEPTH);
        w->depth++;
        w->need_comma[w->depth] = false;
}

static void close_level(JsonWriter *w, char c) {
        bool had_items;

        assert(w->depth > 0);
        had_items = w->need_comma[w->depth];
        w->depth--;
        if (had_items)
                newline_indent(w);
        fputc(c, w->f);
}

void jw_begin_object(JsonWriter *w) {
        open_level(w, '{');
}

void jw_end_object(JsonWriter *w) {
        close_level(w, '}');
}

void jw_begin_array(JsonWriter *w) {
        open_level(w, '[');
}

void jw_end_array(JsonWriter *w) {
        close_level(w, ']');
}

static void write_escaped(JsonWriter *w, const char *s) {
        fputc('"', w->f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                switch (*p) {
                case '"':
                        fputs("\\\"", w->f);
                        break;
                case '\\':
                        fputs("\\\\", w->f);
                        break;
                case '\n':
                        fputs("\\n", w->f);
                        break;
                case '\t':
                        fputs("\\t", w->f);
                        break;
                case '\r':
                        fputs("\\r", w->f);
                        break;
                default:
                        if (*p < 0x20)
                                fprintf(w->f, "\\u%04x", *p);
                        else
                                fputc(*p, w->f);
                }
        }
        fputc('"', w->f);
}

void jw_key(JsonWriter *w, const char *key) {
        prefix(w);
        write_escaped(w, key);
        fputs(w->pretty ? ": " : ":", w->f);
        w->after_key = true;
}

void jw_string(JsonWriter *w, const char *s) {
        if (!s) {
                jw_null(w);
                return;
        }
        prefix(w);
        write_escaped(w, s);
}

void jw_int(JsonWriter *w, int64_t v) {
        prefix(w);
        fprintf(w->f, "%" PRId64, v);
}

void jw_uint(JsonWriter *w, uint64_t v) {
        prefix(w);
        fprintf(w->f, "%" PRIu64, v);
}

void jw_bool(JsonWriter *w, bool v) {
        prefix(w);
        fputs(v ? "true" : "false", w->f);
}

void jw_null(JsonWriter *w) {
        prefix(w);
        fputs("null", w->f);
}

void jw_kv_string(JsonWriter *w, const char *key, const char *s) {
        jw_key(w, key);
        jw_string(w, s);
}

void jw_kv_int(JsonWriter *w, const char *key, int64_t v) {
        jw_key(w, key);
        jw_int(w, v);
}

void jw_kv_uint(JsonWriter *w, const char *key, uint64_t v) {
        jw_key(w, key);
        jw_uint(w, v);
}

void jw_kv_bool(JsonWriter *w, const char *key, bool v) {
        jw_key(w, key);
        jw_bool(w, v);
}

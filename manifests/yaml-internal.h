/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Room-private to manifests/: never included outside this folder.
 *
 * yaml.c is the libyaml adapter: it turns bytes into a small, strict tree of
 * mappings, sequences and scalars, each node carrying its 1-based line and
 * column, and it is the only file that includes <yaml.h>. The schema helpers
 * below are shared by patch-manifest.c and order.c so that both formats
 * report mistakes the same way: "line L, column C: what was wrong".
 *
 * Strictness (everything refused with -EPROTO unless noted):
 *   - input over YAML_MAX_SIZE bytes (-EFBIG), invalid UTF-8, control
 *     characters (libyaml's reader), NUL in a scalar;
 *   - anchors, aliases, explicit tags (even "!!str") and %TAG directives;
 *   - duplicate mapping keys, keys that are not scalars;
 *   - more than one document, an empty stream or an empty document;
 *   - nesting deeper than YAML_MAX_DEPTH collections, more than
 *     YAML_MAX_NODES nodes (scalars, keys included, and collections).
 * Scalars are kept as text: the tree does not resolve YAML 1.1 types, the
 * schema decides what a scalar means (so "NO", "010" or "0x10" stay what
 * the author wrote until a field gives them a type).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifests.h"

#define YAML_MAX_SIZE (1024U * 1024U)
#define YAML_MAX_DEPTH 16U
#define YAML_MAX_NODES 10000U

typedef enum YNodeType {
        YNODE_SCALAR,
        YNODE_SEQUENCE,
        YNODE_MAPPING,
        _YNODE_TYPE_MAX,
        _YNODE_TYPE_INVALID = -EINVAL,
} YNodeType;

typedef struct YNode YNode;
struct YNode {
        YNodeType type;
        unsigned line, column; /* 1-based, where the node starts */
        /* YNODE_SCALAR: NUL-terminated text (no NUL inside), its length, and
         * whether it was written plain (unquoted, not a block scalar). */
        char *value;
        size_t length;
        bool plain;
        /* YNODE_SEQUENCE: items[0..n_items). YNODE_MAPPING: keys[i] (always
         * scalars, no two equal) maps to items[i], in document order. */
        YNode **keys;
        YNode **items;
        size_t n_items;
};

/* Parse one YAML document. On failure returns -EPROTO, -EFBIG or -ENOMEM and,
 * when ret_error is not NULL, an allocated "line L, column C: ..." message
 * (NULL for -ENOMEM). */
int yaml_tree_parse(const void *data, size_t size, YNode **ret, char **ret_error);
YNode *ynode_free(YNode *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(YNode *, ynode_free);

/* "string", "list", "mapping" (for messages). */
const char *ynode_type_to_string(YNodeType t);
YNodeType ynode_type_from_string(const char *s);

/* A plain scalar that YAML reads as null: empty, "~", "null", "Null", "NULL". */
bool ynode_is_null(const YNode *n);

/* The value of key in mapping m, or NULL when absent (or m is not a mapping). */
const YNode *ynode_get(const YNode *m, const char *key);

/*
 * Store "line L, column C: <formatted message>" of node n in *ret_error (when
 * ret_error is not NULL; a previous message there is freed) and return r.
 * Used as `return ynode_error(n, ret_error, -EPROTO, "...", ...);`.
 */
int ynode_error(const YNode *n, char **ret_error, int r, const char *format, ...) _printf_(4, 5);

/*
 * Text from the document echoed in a message: at most 64 bytes (cut on a
 * UTF-8 boundary, "..." appended) with control characters shown as '?', so a
 * hostile document cannot forge extra log lines. NULL on OOM: print it
 * through strna().
 */
char *yaml_display(const char *s);
static inline const char *strna(const char *s) {
        return s ?: "(n/a)";
}

/* ---- schema helpers ---------------------------------------------------------
 *
 * "what" names the enclosing object in messages ("manifest", "action
 * 'extract'", ...). Every helper returns 0 or -EPROTO (with a message naming
 * the key, line and column) or -ENOMEM.
 */

/* m must be a mapping whose keys are all in allowed (NULL-terminated). */
int ymap_check(const YNode *m, const char *what, const char *const *allowed, char **ret_error);

/* The document root must be a mapping whose "format" is exactly expected.
 * Checked before the other keys, so that a document of another kind is told
 * so rather than given a list of unknown keys. */
int ymap_check_format(const YNode *root, const char *what, const char *expected, char **ret_error);

/* Strings: any non-null scalar, quoted or plain, taken as its text. Empty
 * strings and control characters (tab excepted) are refused, and so is text
 * longer than max_length bytes. */
int ynode_string(const YNode *n, const char *key, size_t max_length, char **ret, char **ret_error);
int ymap_required_string(const YNode *m, const char *what, const char *key, size_t max_length, char **ret,
                         char **ret_error);
/* Absent key: *ret = NULL. */
int ymap_optional_string(const YNode *m, const char *key, size_t max_length, char **ret, char **ret_error);

/* Unsigned integers: a plain scalar, decimal without leading zeros or
 * hexadecimal with "0x", in [min, max]. Quoted numbers are strings, refused. */
int ynode_uint(const YNode *n, const char *key, uint64_t min, uint64_t max, uint64_t *ret, char **ret_error);
int ymap_required_uint(const YNode *m, const char *what, const char *key, uint64_t min, uint64_t max,
                       uint64_t *ret, char **ret_error);
/* Absent key: *ret = def. */
int ymap_optional_uint(const YNode *m, const char *key, uint64_t min, uint64_t max, uint64_t def,
                       uint64_t *ret, char **ret_error);

/* Durations in seconds: "300", "300s", "10m", "1h30m" (units s, m, h, each
 * at most once and in that order: h, m, s), within [min, max] seconds. */
int ynode_duration(const YNode *n, const char *key, uint64_t min, uint64_t max, uint64_t *ret,
                   char **ret_error);

/*
 * A sequence of strings (each as ynode_string), at most max_items. Each item
 * is checked with valid() when not NULL (valid returns a static description
 * of what is wrong, or NULL when the item is fine); duplicates are refused
 * when unique. *ret is a NULL-terminated array, empty (not NULL) for [].
 */
typedef const char *(*ystring_check_t)(const char *s);
int ynode_strv(const YNode *n, const char *key, size_t max_items, size_t max_length, ystring_check_t valid,
               bool unique, char ***ret, char **ret_error);

/* Names that may become file names or identifiers: [A-Za-z0-9._-]{1,max},
 * not "." or "..". */
bool manifest_name_is_safe(const char *s, size_t max);

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * lib/: mechanism shared by the rooms. No policy lives here.
 *
 * Conventions used across oob (see ../shared/STYLE.md):
 *   - functions return int: >= 0 success, negative errno on failure;
 *     outputs through ret_ parameters, assigned last;
 *   - every owning local carries a _cleanup_ attribute; TAKE_PTR() hands
 *     ownership out; destructors accept NULL and return NULL.
 *
 * The errno vocabulary used by every room:
 *   -EBADMSG       bad signature, digest or length
 *   -EKEYREJECTED  key unknown or not trusted for that role
 *   -EKEYEXPIRED   metadata expired (freeze attack)
 *   -ESTALE        version rollback attempt
 *   -EFBIG         input over its size cap
 *   -EPROTO        malformed document
 *   -EOPNOTSUPP    unsupported algorithm, key type or format
 *   -ENOENT        no such file, target or role
 *   -ETIMEDOUT     slow retrieval or total deadline exceeded
 *   -EINVAL        bad argument from the caller (a bug, or bad user input at an edge)
 */

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- macros ------------------------------------------------------------ */

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define STRLEN(s) (sizeof(s) - 1)
#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)

/* Take ownership of a pointer out of a _cleanup_ variable. */
#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) _p_ = (p);     \
                (p) = NULL;                  \
                _p_;                         \
        })
#define TAKE_FD(fd)                          \
        ({                                   \
                int _fd_ = (fd);             \
                (fd) = -EBADF;               \
                _fd_;                        \
        })

/* Define a cleanup helper for a type's destructor: void fooptr(Foo **p). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)        \
        static inline void func##p(type *p) {          \
                if (*p)                                \
                        *p = func(*p);                 \
        }

/* Check a precondition at a room's entry point: a caller's bug, not input. */
#define assert_return(expr, r)                                           \
        do {                                                             \
                if (!(expr)) {                                           \
                        log_debug("Assertion '%s' failed at %s:%d",      \
                                  #expr, __FILE__, __LINE__);            \
                        return (r);                                      \
                }                                                        \
        } while (0)

static inline void freep(void *p) {
        free(*(void **) p);
}
static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
/* Free a NULL-terminated array of strings. */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* ---- memory and strings ----------------------------------------------- */

/* Overwrite a secret with zeroes in a way the compiler cannot elide. */
void explicit_wipe(void *p, size_t n);
/* Constant-time comparison; true when equal. */
bool memeq_consttime(const void *a, const void *b, size_t n);

size_t strv_length(char * const *l);
/* Append a copy of s; returns 0 or -ENOMEM. */
int strv_extend(char ***l, const char *s);

/* Lower-case hex, NUL-terminated; returns a newly allocated string or NULL. */
char *hexmem(const void *p, size_t n);
/* Decode hex (either case); -EINVAL on odd length or a non-hex digit. */
int unhexmem(const char *s, size_t len, void **ret, size_t *ret_size);
/* Decode exactly 2*size hex digits into buf (no allocation); -EINVAL otherwise. */
int unhexmem_to(const char *s, size_t len, void *buf, size_t size);

/* Parse a decimal uint64 with no sign, spaces or trailing junk. */
int safe_atou64(const char *s, uint64_t *ret);

/* ---- string tables ----------------------------------------------------- */

/*
 * One table per enum, used by the CLI, D-Bus, journal and state files alike:
 *   static const char *const color_table[_COLOR_MAX] = { [COLOR_RED] = "red", ... };
 *   DEFINE_STRING_TABLE_LOOKUP(color, Color);
 * defines color_to_string(Color) and color_from_string(const char *)
 * (the latter returns -EINVAL for an unknown or NULL string).
 */
ssize_t string_table_lookup(const char *const *table, size_t len, const char *key);

#define DEFINE_STRING_TABLE_LOOKUP(name, type)                                   \
        const char *name##_to_string(type i) {                                   \
                if ((size_t) i >= ELEMENTSOF(name##_table))                      \
                        return NULL;                                             \
                return name##_table[i];                                          \
        }                                                                        \
        type name##_from_string(const char *s) {                                 \
                return (type) string_table_lookup(name##_table,                  \
                                                  ELEMENTSOF(name##_table), s);  \
        }

/* ---- logging ----------------------------------------------------------- */

/*
 * Log to the journal when stderr is connected to it (JOURNAL_STREAM, as
 * systemd sets for services), to stderr otherwise. Levels are syslog's.
 * The *_errno variants set errno from the negative error code so that %m
 * works in the format, and return the (negative) error code.
 */
enum { LOG_LEVEL_EMERG, LOG_LEVEL_ALERT, LOG_LEVEL_CRIT, LOG_LEVEL_ERR,
       LOG_LEVEL_WARNING, LOG_LEVEL_NOTICE, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_max_level(int level);
int log_get_max_level(void);
/* Program name used as prefix on stderr and SYSLOG_IDENTIFIER in the journal. */
void log_set_program(const char *name);
/* Parse "debug", "info", ... or a number; -EINVAL otherwise. */
int log_level_from_string(const char *s);

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *message_id, const char *format, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, NULL, __VA_ARGS__)
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_LEVEL_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_LEVEL_DEBUG, (error), __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_LEVEL_INFO, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_LEVEL_WARNING, (error), __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_LEVEL_ERR, (error), __VA_ARGS__)

/* Journal entry with a stable MESSAGE_ID (32 hex chars, see the catalog). */
#define log_struct_id(level, message_id, ...) \
        log_internal((level), 0, __FILE__, __LINE__, __func__, (message_id), __VA_ARGS__)

/* ---- files ------------------------------------------------------------- */

/*
 * Read a whole file, refusing more than max_size bytes (-EFBIG).
 * The buffer is NUL-terminated (not counted in ret_size).
 */
int read_full_file(const char *path, size_t max_size, char **ret, size_t *ret_size);
int read_full_fd(int fd, size_t max_size, char **ret, size_t *ret_size);
/* Write all of data, retrying short writes and EINTR. */
int loop_write(int fd, const void *data, size_t size);

/*
 * Replace path atomically: write a temp file in the same directory, fsync it,
 * rename it over path, fsync the directory. After a crash at any instant path
 * holds either the old or the new contents, never a mix.
 */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);
/* The same relative to a directory fd (name must not contain '/'). */
int write_file_atomic_at(int dir_fd, const char *name, const void *data, size_t size, mode_t mode);

/* fsync a directory so that a rename or unlink inside it is durable. */
int fsync_directory(const char *path);
/* mkdir -p with mode for the created components. */
int mkdir_p(const char *path, mode_t mode);
/* Join two path components with exactly one '/'; NULL on OOM. */
char *path_join(const char *a, const char *b);
/* True when name is a single safe path component: not empty, ".", "..", no '/', no NUL. */
bool filename_is_safe(const char *name);

/* ---- JSON output (for --json listings and reports) --------------------- */

/*
 * A streaming JSON writer for output we produce (never for parsing input).
 * Calls nest naturally; commas and escaping are handled:
 *   JsonWriter *w = json_writer_new(stdout, true);
 *   jw_begin_object(w); jw_key(w, "id"); jw_string(w, "3"); jw_end_object(w);
 *   json_writer_free(w);   (prints a final newline)
 * Strings are escaped per RFC 8259 (control characters as \u00XX).
 */
typedef struct JsonWriter JsonWriter;

JsonWriter *json_writer_new(FILE *f, bool pretty);
JsonWriter *json_writer_free(JsonWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(JsonWriter *, json_writer_free);
void jw_begin_object(JsonWriter *w);
void jw_end_object(JsonWriter *w);
void jw_begin_array(JsonWriter *w);
void jw_end_array(JsonWriter *w);
void jw_key(JsonWriter *w, const char *key);
void jw_string(JsonWriter *w, const char *s);      /* NULL writes null */
void jw_int(JsonWriter *w, int64_t v);
void jw_uint(JsonWriter *w, uint64_t v);
void jw_bool(JsonWriter *w, bool v);
void jw_null(JsonWriter *w);
/* Convenience: key and value in one call. */
void jw_kv_string(JsonWriter *w, const char *key, const char *s);
void jw_kv_int(JsonWriter *w, const char *key, int64_t v);
void jw_kv_uint(JsonWriter *w, const char *key, uint64_t v);
void jw_kv_bool(JsonWriter *w, const char *key, bool v);

/* ---- configuration files (config.c) ------------------------------------- */

/*
 * An ini-style configuration file, parsed strictly against a table:
 *
 *     # a comment (also ';'), only as the first non-blank character of a line
 *     [section]
 *     key = value
 *
 * Blanks around section names, keys and values are dropped; the value is
 * the rest of the line taken verbatim (no quotes, escapes or trailing
 * comments, so "url = https://h/x#y" keeps its '#'). An empty value hands
 * "" to the parser (the string parsers then reset to unset, NULL).
 *
 * Refused, with -EPROTO and one message "FILE:LINE: what is wrong" in
 * *ret_error: a line that is neither blank, a comment, "[section]" nor
 * "key = value"; an assignment before the first section; an unknown
 * section or key; a key given twice in the same section (the message names
 * the first line); a NUL byte; a value its parser refuses. The file may be
 * at most CONFIG_FILE_MAX bytes (-EFBIG). A missing file is -ENOENT (the
 * caller decides whether defaults will do). Values parsed before an error
 * stay in the target: load into a scratch copy and keep it only on success.
 */
#define CONFIG_FILE_MAX (1024U * 1024U)

/*
 * A value parser: store value into data (the target field). On -EINVAL it
 * sets *ret_expected to what a valid value looks like ("yes or no"), for
 * the message; -ERANGE for a number out of range; -ENOMEM.
 */
typedef int (*ConfigParser)(const char *value, void *data, const char **ret_expected);

typedef struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParser parse;
        size_t offset;                 /* of the target field within the struct passed as base */
} ConfigItem;

/* Parse the file at path into base (a struct whose fields the items' offsets name). */
int config_parse_file(const char *path, const ConfigItem *items, size_t n_items, void *base, char **ret_error);
/* The same for text in memory; name is used in messages ("FILE:LINE"). */
int config_parse_text(const char *name, const char *text, size_t size, const ConfigItem *items, size_t n_items,
                      void *base, char **ret_error);

/* The value parsers, each named after its target type: */
int config_parse_string(const char *value, void *data, const char **ret_expected);   /* char *; "" -> NULL */
int config_parse_path(const char *value, void *data, const char **ret_expected);     /* char *, absolute; "" -> NULL */
int config_parse_bool(const char *value, void *data, const char **ret_expected);     /* bool: yes/no, true/false, on/off, 1/0 */
int config_parse_unsigned(const char *value, void *data, const char **ret_expected); /* unsigned */
int config_parse_uint64(const char *value, void *data, const char **ret_expected);   /* uint64_t */
/* uint64_t bytes: "4096", "512K", "10M", "1G", "2T" (powers of 1024; "KiB", "MiB", ... too). */
int config_parse_bytes(const char *value, void *data, const char **ret_expected);
/* unsigned seconds: "90", "90s", "5min", "2h", "1d", "1h 30min" (units s, sec, m, min, h, d). */
int config_parse_seconds(const char *value, void *data, const char **ret_expected);
/* char **, NULL-terminated: words separated by blanks or commas; "" -> NULL (empty list). */
int config_parse_strv(const char *value, void *data, const char **ret_expected);

/* The inverse for --dump-config style output: the shortest exact spelling
 * ("90s" -> "90s", 600 -> "10min", 1048576 -> "1M", 0 -> "0"). NULL on OOM. */
char *config_format_seconds(unsigned seconds);
char *config_format_bytes(uint64_t bytes);

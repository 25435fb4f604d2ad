/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Strict ini-style configuration files (the grammar is in lib.h). Mechanism
 * only: which sections and keys exist, their defaults and what they mean
 * belong to the program that passes the table.
 *
 * Strict because a typo in a key name of a daemon that patches disks at
 * night should stop the daemon at start, with the file and line, rather
 * than be ignored and leave a default in force nobody asked for.
 */

#include <ctype.h>
#include <inttypes.h>
#include <strings.h>

#include "lib.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim blanks on both ends of [*start, *end) in place. */
static void trim(const char **start, const char **end) {
        while (*start < *end && is_blank(**start))
                (*start)++;
        while (*end > *start && is_blank((*end)[-1]))
                (*end)--;
}

static char *strndup_range(const char *start, const char *end) {
        return strndup(start, (size_t) (end - start));
}

_printf_(2, 3) static int set_error(char **ret_error, const char *format, ...) {
        va_list ap;
        char *s = NULL;
        int r;

        if (!ret_error)
                return -EPROTO;
        va_start(ap, format);
        r = vasprintf(&s, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(*ret_error);
        *ret_error = s;
        return -EPROTO;
}

/* Is any item of the table in this section? */
static bool section_known(const ConfigItem *items, size_t n_items, const char *section) {
        for (size_t i = 0; i < n_items; i++)
                if (streq(items[i].section, section))
                        return true;
        return false;
}

int config_parse_text(const char *name, const char *text, size_t size, const ConfigItem *items,
                      size_t n_items, void *base, char **ret_error) {
        _cleanup_free_ unsigned *seen = NULL; /* line where items[i] was set, 0 if not yet */
        _cleanup_free_ char *section = NULL;
        const char *p = text, *end = text + size;
        unsigned line = 0;

        assert_return(name, -EINVAL);
        assert_return(text || size == 0, -EINVAL);
        assert_return(items || n_items == 0, -EINVAL);
        assert_return(base, -EINVAL);

        if (size > CONFIG_FILE_MAX)
                return -EFBIG;
        if (memchr(text, 0, size))
                return set_error(ret_error, "%s: contains a NUL byte (not a text file)", name);

        seen = calloc(n_items > 0 ? n_items : 1, sizeof(unsigned));
        if (!seen)
                return -ENOMEM;

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t) (end - p));
                const char *s = p, *e = eol ?: end, *eq;
                _cleanup_free_ char *key = NULL, *value = NULL;
                const char *expected = NULL;
                size_t i;
                int r;

                p = eol ? eol + 1 : end;
                line++;
                trim(&s, &e);
                if (s == e || *s == '#' || *s == ';')
                        continue;

                if (*s == '[') {
                        const char *ns = s + 1, *ne = e - 1;

                        if (e - s < 2 || *ne != ']')
                                return set_error(ret_error, "%s:%u: a section header must be '[name]'", name,
                                                 line);
                        trim(&ns, &ne);
                        free(section);
                        section = strndup_range(ns, ne);
                        if (!section)
                                return -ENOMEM;
                        if (!section_known(items, n_items, section))
                                return set_error(ret_error, "%s:%u: unknown section [%s]", name, line,
                                                 section);
                        continue;
                }

                eq = memchr(s, '=', (size_t) (e - s));
                if (!eq)
                        return set_error(ret_error,
                                         "%s:%u: expected 'key = value', '[section]' or a comment", name,
                                         line);
                {
                        const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;

                        trim(&ks, &ke);
                        trim(&vs, &ve);
                        if (ks == ke)
                                return set_error(ret_error, "%s:%u: no key before '='", name, line);
                        key = strndup_range(ks, ke);
                        value = strndup_range(vs, ve);
                        if (!key || !value)
                                return -ENOMEM;
                }
                if (!section)
                        return set_error(ret_error,
                                         "%s:%u: '%s' is outside any section (add a [section] line "
                                         "above it)",
                                         name, line, key);

                for (i = 0; i < n_items; i++)
                        if (streq(items[i].section, section) && streq(items[i].key, key))
                                break;
                if (i >= n_items)
                        return set_error(ret_error, "%s:%u: unknown key '%s' in section [%s]", name, line,
                                         key, section);
                if (seen[i] > 0)
                        return set_error(ret_error, "%s:%u: '%s' in [%s] is already set on line %u", name,
                                         line, key, section, seen[i]);
                seen[i] = line;

                r = items[i].parse(value, (uint8_t *) base + items[i].offset, &expected);
                if (r == -ENOMEM)
                        return r;
                if (r == -ERANGE)
                        return set_error(ret_error, "%s:%u: '%s' in [%s]: '%s' is out of range", name, line,
                                         key, section, value);
                if (r < 0)
                        return set_error(ret_error, "%s:%u: '%s' in [%s]: invalid value '%s' (expected %s)",
                                         name, line, key, section, value, expected ?: "another value");
        }

        return 0;
}

int config_parse_file(const char *path, const ConfigItem *items, size_t n_items, void *base,
                      char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        assert_return(path, -EINVAL);

        r = read_full_file(path, CONFIG_FILE_MAX, &text, &size);
        if (r == -EFBIG)
                (void) set_error(ret_error, "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
        else if (r < 0)
                (void) set_error(ret_error, "%s: %s", path, strerror(-r));
        if (r < 0)
                return r;
        return config_parse_text(path, text, size, items, n_items, base, ret_error);
}

/* ---- value parsers ---------------------------------------------------------- */

/* Copy value, or NULL for "" (unset). */
static int dup_or_null(const char *value, char **ret) {
        char *copy = NULL;

        if (*value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        *ret = copy;
        return 0;
}

int config_parse_string(const char *value, void *data, const char **ret_expected) {
        char **s = data, *copy;
        int r;

        r = dup_or_null(value, &copy);
        if (r < 0)
                return r;
        free(*s);
        *s = copy;
        return 0;
}

int config_parse_path(const char *value, void *data, const char **ret_expected) {
        if (*value && *value != '/') {
                *ret_expected = "an absolute path";
                return -EINVAL;
        }
        return config_parse_string(value, data, ret_expected);
}

int config_parse_bool(const char *value, void *data, const char **ret_expected) {
        static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off",
                                                                                    "0"};
        bool *b = data;

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0) {
                        *b = true;
                        return 0;
                }
                if (strcasecmp(value, no[i]) == 0) {
                        *b = false;
                        return 0;
                }
        }
        *ret_expected = "yes or no";
        return -EINVAL;
}

int config_parse_uint64(const char *value, void *data, const char **ret_expected) {
        uint64_t *u = data, v;
        int r;

        r = safe_atou64(value, &v);
        if (r == -EINVAL)
                *ret_expected = "a number";
        if (r < 0)
                return r;
        *u = v;
        return 0;
}

int config_parse_unsigned(const char *value, void *data, const char **ret_expected) {
        unsigned *u = data;
        uint64_t v;
        int r;

        r = config_parse_uint64(value, &v, ret_expected);
        if (r < 0)
                return r;
        if (v > UINT_MAX)
                return -ERANGE;
        *u = (unsigned) v;
        return 0;
}

/* Parse the leading decimal digits of *p (at least one), advancing *p. */
static int parse_digits(const char **p, uint64_t *ret) {
        uint64_t v = 0;
        const char *s = *p;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        for (; isdigit((unsigned char) *s); s++) {
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *p = s;
        *ret = v;
        return 0;
}

static const struct {
        const char *suffix;
        unsigned shift;
} byte_units[] = {
        {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20},
        {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40},
};

int config_parse_bytes(const char *value, void *data, const char **ret_expected) {
        uint64_t *u = data, v;
        const char *p = value;
        int r;

        *ret_expected = "a size such as 4096, 512K, 10M or 1G";
        r = parse_digits(&p, &v);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(byte_units); i++)
                if (streq(p, byte_units[i].suffix)) {
                        if (v > (UINT64_MAX >> byte_units[i].shift))
                                return -ERANGE;
                        *u = v << byte_units[i].shift;
                        return 0;
                }
        return -EINVAL;
}

static const struct {
        const char *unit;
        unsigned seconds;
} time_units[] = {
        {"s", 1}, {"sec", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", 86400},
};

int config_parse_seconds(const char *value, void *data, const char **ret_expected) {
        unsigned *u = data;
        uint64_t total = 0;
        const char *p = value;

        *ret_expected = "a duration such as 90, 90s, 5min, 2h or 1d";
        if (!*p)
                return -EINVAL;
        while (*p) {
                const char *unit;
                uint64_t v, mult = 0;
                size_t n;
                int r;

                r = parse_digits(&p, &v);
                if (r < 0)
                        return r;
                unit = p;
                while (isalpha((unsigned char) *p))
                        p++;
                n = (size_t) (p - unit);
                if (n == 0)
                        mult = 1;
                for (size_t i = 0; n > 0 && i < ELEMENTSOF(time_units); i++)
                        if (strlen(time_units[i].unit) == n && strneq(unit, time_units[i].unit, n))
                                mult = time_units[i].seconds;
                if (mult == 0)
                        return -EINVAL;
                if (v > (UINT_MAX - total) / mult)
                        return -ERANGE;
                total += v * mult;
                while (is_blank(*p))
                        p++;
        }
        *u = (unsigned) total;
        return 0;
}

int config_parse_strv(const char *value, void *data, const char **ret_expected) {
        _cleanup_strv_free_ char **l = NULL;
        char ***target = data;
        const char *p = value;

        while (*p) {
                size_t n;

                while (*p && (is_blank(*p) || *p == ','))
                        p++;
                n = strcspn(p, " \t\r\f\v,");
                if (n > 0) {
                        _cleanup_free_ char *word = strndup(p, n);

                        if (!word || strv_extend(&l, word) < 0)
                                return -ENOMEM;
                        p += n;
                }
        }
        strv_free(*target);
        *target = TAKE_PTR(l);
        return 0;
}

/* ---- formatting --------------------------------------------------------------- */

char *config_format_seconds(unsigned seconds) {
        static const struct {
                const char *unit;
                unsigned seconds;
        } units[] = {{"d", 86400}, {"h", 3600}, {"min", 60}, {"s", 1}};
        char *s = NULL;

        if (seconds == 0)
                return strdup("0");
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (seconds % units[i].seconds == 0) {
                        if (asprintf(&s, "%u%s", seconds / units[i].seconds, units[i].unit) < 0)
                                return NULL;
                        break;
                }
        return s;
}

char *config_format_bytes(uint64_t bytes) {
        static const struct {
                const char *suffix;
                unsigned shift;
        } units[] = {{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}};
        char *s = NULL;

        for (size_t i = 0; bytes > 0 && i < ELEMENTSOF(units); i++)
                if ((bytes & ((UINT64_C(1) << units[i].shift) - 1)) == 0) {
                        if (asprintf(&s, "%" PRIu64 "%s", bytes >> units[i].shift, units[i].suffix) < 0)
                                return NULL;
                        return s;
                }
        if (asprintf(&s, "%" PRIu64, bytes) < 0)
                return NULL;
        return s;
}

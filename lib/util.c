/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small memory, string and table helpers. */

#include <ctype.h>
#include <inttypes.h>

#include "lib.h"

void explicit_wipe(void *p, size_t n) {
        if (!p || n == 0)
                return;
        explicit_bzero(p, n);
}

bool memeq_consttime(const void *a, const void *b, size_t n) {
        const volatile uint8_t *x = a, *y = b;
        uint8_t d = 0;

        for (size_t i = 0; i < n; i++)
                d |= x[i] ^ y[i];
        return d == 0;
}

char **strv_free(char **l) {
        if (!l)
                return NULL;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char * const *l) {
        size_t n = 0;

        if (!l)
                return 0;
        while (l[n])
                n++;
        return n;
}

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        _cleanup_free_ char *copy = strdup(s);
        char **grown;

        if (!copy)
                return -ENOMEM;
        grown = reallocarray(*l, n + 2, sizeof(char *));
        if (!grown)
                return -ENOMEM;
        grown[n] = TAKE_PTR(copy);
        grown[n + 1] = NULL;
        *l = grown;
        return 0;
}

char *hexmem(const void *p, size_t n) {
        static const char digits[] = "0123456789abcdef";
        const uint8_t *b = p;
        char *s = malloc(n * 2 + 1);

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                s[i * 2] = digits[b[i] >> 4];
                s[i * 2 + 1] = digits[b[i] & 15];
        }
        s[n * 2] = 0;
        return s;
}

static int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int unhexmem_to(const char *s, size_t len, void *buf, size_t size) {
        uint8_t *b = buf;

        if (len != 2 * size)
                return -EINVAL;
        for (size_t i = 0; i < size; i++) {
                int hi = unhexchar(s[2 * i]), lo = unhexchar(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                b[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

int unhexmem(const char *s, size_t len, void **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        int r;

        if (len % 2 != 0)
                return -EINVAL;
        buf = malloc(len / 2 + 1);
        if (!buf)
                return -ENOMEM;
        r = unhexmem_to(s, len, buf, len / 2);
        if (r < 0)
                return r;
        *ret_size = len / 2;
        *ret = TAKE_PTR(buf);
        return 0;
}

int safe_atou64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        *ret = v;
        return 0;
}

ssize_t string_table_lookup(const char *const *table, size_t len, const char *key) {
        if (!key)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (table[i] && streq(table[i], key))
                        return (ssize_t) i;
        return -EINVAL;
}

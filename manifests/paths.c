/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Names: which target paths we accept, how a role name becomes a metadata
 * file name, and which delegated role a target path belongs to.
 */

#include <fnmatch.h>
#include <inttypes.h>

#include "manifests-internal.h"

#define TUF_TARGET_PATH_MAX 4096U

bool tuf_target_path_is_valid(const char *path) {
        const char *p, *slash;
        size_t n;

        if (!path)
                return false;
        n = strnlen(path, TUF_TARGET_PATH_MAX + 1);
        if (n == 0 || n > TUF_TARGET_PATH_MAX)
                return false;
        /* Windows would split at a backslash: refuse it on every side. */
        if (memchr(path, '\\', n))
                return false;

        /* Every '/'-separated component is non-empty and neither "." nor "..",
         * which also refuses a leading or trailing '/' and "a//b". */
        for (p = path;; p = slash + 1) {
                size_t len;

                slash = strchr(p, '/');
                len = slash ? (size_t) (slash - p) : strlen(p);
                if (len == 0)
                        return false;
                if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                if (!slash)
                        return true;
        }
}

static bool role_char_is_plain(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '~' || c == '-';
}

/*
 * Percent-encode like python-tuf (urllib.parse.quote(name, safe="")), so the
 * same role reaches the same URL with either client, and the result is one
 * path component whatever the (attacker-chosen) role name holds: '/' and '%'
 * are encoded, and "." or ".." become "..json" or "...json".
 */
char *tuf_role_filename(const char *role, uint64_t version) {
        static const char hex[] = "0123456789ABCDEF";
        char prefix[STRLEN("18446744073709551615.") + 1] = "";
        size_t n, len;
        char *s, *p;

        if (!role || !*role)
                return NULL;
        n = strlen(role);
        if (n > SIZE_MAX / 4)
                return NULL;
        if (version > 0)
                (void) snprintf(prefix, sizeof(prefix), "%" PRIu64 ".", version);

        len = strlen(prefix) + n * 3 + STRLEN(".json") + 1;
        s = malloc(len);
        if (!s)
                return NULL;
        p = stpcpy(s, prefix);
        for (const char *c = role; *c; c++) {
                if (role_char_is_plain(*c))
                        *p++ = *c;
                else {
                        *p++ = '%';
                        *p++ = hex[(uint8_t) *c >> 4];
                        *p++ = hex[(uint8_t) *c & 15];
                }
        }
        strcpy(p, ".json");
        return s;
}

static size_t count_components(const char *s) {
        size_t n = 1;

        for (; *s; s++)
                if (*s == '/')
                        n++;
        return n;
}

/*
 * Shell-style pattern per '/'-separated component, with the same number of
 * components on both sides, as python-tuf matches: "*" never crosses a '/'.
 * FNM_NOESCAPE because Python's fnmatch has no escape character.
 */
static bool path_matches_pattern(const char *path, const char *pattern) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        char *pa, *pb;

        if (count_components(path) != count_components(pattern))
                return false;
        a = strdup(path);
        b = strdup(pattern);
        if (!a || !b)
                return false;

        pa = a;
        pb = b;
        while (pa && pb) {
                char *ca = strsep(&pa, "/"), *cb = strsep(&pb, "/");

                if (fnmatch(cb, ca, FNM_NOESCAPE) != 0)
                        return false;
        }
        return true;
}

bool tuf_delegated_role_matches(const TufDelegatedRole *role, const char *target_path) {
        if (!role || !target_path)
                return false;

        if (role->path_hash_prefixes) {
                _cleanup_free_ char *hex = NULL;
                TufHashes h;

                if (tuf_hashes_compute(target_path, strlen(target_path), &h) < 0 || !h.has_sha256)
                        return false;
                hex = hexmem(h.sha256, sizeof(h.sha256));
                if (!hex)
                        return false;
                /* startswith(), as python-tuf: "" matches every path, a
                 * prefix longer than the digest none. */
                for (char **p = role->path_hash_prefixes; *p; p++)
                        if (strneq(hex, *p, strlen(*p)))
                                return true;
                return false;
        }

        for (char **p = role->paths; p && *p; p++)
                if (path_matches_pattern(target_path, *p))
                        return true;
        return false;
}

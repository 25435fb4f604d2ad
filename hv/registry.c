/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The hivex adapter: registry hives of the sleeping Windows volume.
 *
 * hivex works on files, so a hive is copied out of the NTFS volume into a
 * private temp file (mkstemp in $TMPDIR, mode 0600: SAM and SECURITY hold
 * secrets), edited there in memory, and on commit written back whole (see
 * registry_hive_commit for what that means on NTFS).
 * Only this file includes <hivex.h>; hivex's errno values are translated
 * here.
 *
 * Key names are compared case-insensitively as hivex does (ASCII case
 * folding; Windows folds all of Unicode through its upcase table).
 *
 * Values are converted at this boundary: REG_SZ, REG_EXPAND_SZ and
 * REG_MULTI_SZ are UTF-16LE on disk and UTF-8 above (iconv); DWORD and
 * QWORD are little endian on disk and host integers above.
 *
 * Refusals that are ours, not hivex's:
 *   - a hive whose base block has different primary and secondary sequence
 *     numbers was not written back completely: its true state includes
 *     the transaction logs (.LOG1/.LOG2) that Windows replays at the next
 *     boot and hivex cannot. A writable open refuses it with -EUCLEAN
 *     (hivex_commit would mark it consistent and Windows would then ignore
 *     the logs); a read-only open shows the primary file as it is.
 *   - value data over 16344 bytes: hivex stores it in one cell, where hive
 *     format 1.4 and later (every Windows since XP) keeps such data in
 *     "big data" segments; -EFBIG rather than a hive Windows may misread.
 */

#include <fcntl.h>
#include <hivex.h>
#include <iconv.h>
#include <strings.h>
#include <sys/stat.h>

#include "hv-internal.h"

/* A real SOFTWARE hive reaches a few hundred MiB on old installations. */
#define REGISTRY_HIVE_MAX (512U * 1024U * 1024U)
/* The largest value data stored in a single cell (hive format >= 1.4). */
#define REGISTRY_VALUE_CELL_MAX 16344U
/* Windows' own limits: key names 255 characters, value names 16383. */
#define REGISTRY_KEY_NAME_MAX 255U
#define REGISTRY_VALUE_NAME_MAX 16383U
/* Keys nest at most 512 levels deep in Windows. */
#define REGISTRY_KEY_DEPTH_MAX 512U

#define REGF_SEQUENCE1_OFFSET 4U
#define REGF_SEQUENCE2_OFFSET 8U

struct RegistryHive {
        NtfsVolume *volume;            /* not owned, must outlive the hive; NULL for a host file */
        char *path;                    /* in the volume, or the host file */
        char *temp_path;               /* the private copy hivex works on */
        hive_h *hive;
        bool writable;
        bool modified;                 /* changed since open or the last commit */
};

static void hivex_closep(hive_h **h) {
        if (*h)
                (void) hivex_close(*h);
}

static void iconv_closep(iconv_t *cd) {
        if (*cd != (iconv_t) -1)
                (void) iconv_close(*cd);
}

static void unlink_and_freep(char **path) {
        if (*path) {
                (void) unlink(*path);
                free(*path);
        }
}

/* hivex reports through errno: allocation, read-only handle, else a hive
 * whose structures do not hold together. */
static int hivex_error(void) {
        int e = errno;

        if (e == ENOMEM || e == EROFS)
                return -e;
        if (e == ERANGE || e == EOVERFLOW)
                return -EFBIG;
        return -EPROTO;
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t le64(const uint8_t *p) {
        return (uint64_t) le32(p) | (uint64_t) le32(p + 4) << 32;
}

/* ---- text: UTF-16LE on disk, UTF-8 above ---------------------------------- */

/* n bytes of UTF-16LE (no terminator needed) to a new NUL-terminated UTF-8 string. */
static int utf16le_to_utf8(const uint8_t *p, size_t n, char **ret) {
        _cleanup_(iconv_closep) iconv_t cd = iconv_open("UTF-8", "UTF-16LE");
        _cleanup_free_ char *out = NULL;
        size_t out_size, in_left = n, out_left;
        char *in = (char *) p, *o;

        if (cd == (iconv_t) -1)
                return -errno;
        if (n % 2 != 0)
                return -EPROTO;
        /* A UTF-16 code unit becomes at most 3 bytes of UTF-8 (a pair, 4). */
        out_size = n / 2 * 3 + 1;
        out = malloc(out_size);
        if (!out)
                return -ENOMEM;
        o = out;
        out_left = out_size - 1;
        if (iconv(cd, &in, &in_left, &o, &out_left) == (size_t) -1)
                return errno == EILSEQ || errno == EINVAL ? -EPROTO : -errno;
        *o = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* A UTF-8 string to UTF-16LE with its two-byte NUL terminator, appended to
 * (*buf, *size) which grows as needed. */
static int utf8_append_utf16le(const char *s, uint8_t **buf, size_t *size) {
        _cleanup_(iconv_closep) iconv_t cd = iconv_open("UTF-16LE", "UTF-8");
        size_t len = strlen(s), in_left = len, out_left, grow;
        char *in = (char *) s, *o;
        uint8_t *n;

        if (cd == (iconv_t) -1)
                return -errno;
        /* Each byte of UTF-8 becomes at most 2 bytes of UTF-16; plus the NUL. */
        if (len > (SIZE_MAX - *size - 2) / 2)
                return -EFBIG;
        grow = 2 * len + 2;
        n = realloc(*buf, *size + grow);
        if (!n)
                return -ENOMEM;
        *buf = n;
        o = (char *) n + *size;
        out_left = grow - 2;
        if (iconv(cd, &in, &in_left, &o, &out_left) == (size_t) -1)
                return errno == EILSEQ || errno == EINVAL ? -EINVAL : -errno;
        o[0] = o[1] = 0;
        *size = (size_t) (o + 2 - (char *) n);
        return 0;
}

/* The UTF-16 strings in data, split at NUL code units; at most max strings
 * (1 for SZ, where data after the first NUL is ignored as Windows does). */
static int decode_strings(const uint8_t *data, size_t size, size_t max, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t i = 0, n = 0, len = size & ~(size_t) 1;

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        while (i < len && n < max) {
                _cleanup_free_ char *s = NULL;
                size_t j = i;
                char **nl;
                int r;

                while (j < len && (data[j] || data[j + 1]))
                        j += 2;
                /* REG_MULTI_SZ ends with an empty string. */
                if (j == i && max > 1)
                        break;
                r = utf16le_to_utf8(data + i, j - i, &s);
                if (r < 0)
                        return r;
                nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[n++] = TAKE_PTR(s);
                l[n] = NULL;
                i = j + 2;
        }
        /* An empty REG_SZ (no data at all) is one empty string. */
        if (max == 1 && n == 0) {
                char **nl = realloc(l, 2 * sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[0] = strdup("");
                l[1] = NULL;
                if (!l[0])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- opening ----------------------------------------------------------------- */

static int write_all(int fd, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t l = write(fd, p, size);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += l;
                size -= (size_t) l;
        }
        return 0;
}

/* The private copy: mkstemp creates it 0600, readable by us alone. */
static int write_temp_copy(const void *data, size_t size, char **ret_path) {
        const char *tmpdir = getenv("TMPDIR");
        _cleanup_(unlink_and_freep) char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (!tmpdir || tmpdir[0] != '/')
                tmpdir = "/tmp";
        if (asprintf(&path, "%s/oob-hive.XXXXXX", tmpdir) < 0) {
                path = NULL;
                return -ENOMEM;
        }
        fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(TAKE_PTR(path));   /* nothing to unlink */
                return r;
        }
        r = write_all(fd, data, size);
        if (r < 0)
                return r;
        if (close(TAKE_FD(fd)) < 0)
                return -errno;
        *ret_path = TAKE_PTR(path);
        return 0;
}

static int hive_open_bytes(NtfsVolume *v, const char *path, const uint8_t *data, size_t size,
                           bool writable, RegistryHive **ret) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        int r;

        /* hivex checks the rest; this much we read ourselves. */
        if (size < 2 * 4096 || memcmp(data, "regf", 4) != 0)
                return -EPROTO;
        if (writable && le32(data + REGF_SEQUENCE1_OFFSET) != le32(data + REGF_SEQUENCE2_OFFSET)) {
                log_debug("Hive %s has pending transaction logs (sequence %u != %u).", path,
                          le32(data + REGF_SEQUENCE1_OFFSET), le32(data + REGF_SEQUENCE2_OFFSET));
                return -EUCLEAN;
        }

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->volume = v;
        h->writable = writable;
        h->path = strdup(path);
        if (!h->path)
                return -ENOMEM;

        r = write_temp_copy(data, size, &h->temp_path);
        if (r < 0)
                return r;

        errno = 0;
        h->hive = hivex_open(h->temp_path, writable ? HIVEX_OPEN_WRITE : 0);
        if (!h->hive) {
                r = errno == ENOMEM ? -ENOMEM : -EPROTO;
                log_debug_errno(r, "hivex refused hive %s: %m", path);
                return r;
        }

        *ret = TAKE_PTR(h);
        return 0;
}

int registry_hive_open(NtfsVolume *v, const char *path, bool writable, RegistryHive **ret) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        assert_return(v, -EINVAL);
        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);

        r = ntfs_volume_read_file(v, path, REGISTRY_HIVE_MAX, &data, &size);
        if (r < 0)
                return r;
        return hive_open_bytes(v, path, (const uint8_t *) data, size, writable, ret);
}

int registry_hive_open_file(const char *path, bool writable, RegistryHive **ret) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);

        r = read_full_file(path, REGISTRY_HIVE_MAX, &data, &size);
        if (r < 0)
                return r;
        return hive_open_bytes(NULL, path, (const uint8_t *) data, size, writable, ret);
}

RegistryHive *registry_hive_close(RegistryHive *h) {
        if (!h)
                return NULL;
        hivex_closep(&h->hive);
        unlink_and_freep(&h->temp_path);
        free(h->path);
        free(h);
        return NULL;
}

/*
 * Writing back. hivex_commit writes the whole hive to the private copy;
 * its bytes go into a new file next to the hive in the volume
 * ("SYSTEM.oob-new"), which is then renamed over the hive, keeping the
 * hive's on-disk spelling.
 *
 * What NTFS gives here (hv.h: "atomically as far as NTFS allows"):
 * libntfs-3g keeps no journal, and ntfs_volume_rename_file() deletes the old
 * name before linking the new one. A crash while the new file is written
 * leaves the old hive untouched (plus a stray .oob-new); a crash inside
 * the rename can leave the hive only under the .oob-new name, and
 * Windows would not find it. The real atomicity is one level up: every
 * apply runs on a throw-away qcow2 overlay, and an interrupted apply
 * discards the overlay whole. A hive file of the host
 * (registry_hive_open_file) is replaced with write_file_atomic().
 */
static ssize_t read_fd(void *userdata, void *buf, size_t size) {
        int fd = *(int *) userdata;

        for (;;) {
                ssize_t l = read(fd, buf, size);
                if (l >= 0)
                        return l;
                if (errno != EINTR)
                        return -errno;
        }
}

static int write_back_to_volume(RegistryHive *h) {
        _cleanup_(ntfs_stat_done) NtfsStat st = {};
        _cleanup_free_ char *target = NULL, *temp = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *slash = strrchr(h->path, '/');
        int dirlen = slash ? (int) (slash - h->path) : 0;
        int r;

        /* The hive's name as the volume spells it ("SYSTEM", not "system"). */
        r = ntfs_volume_stat(h->volume, h->path, &st);
        if (r < 0)
                return r;
        if (st.is_dir)
                return -EISDIR;
        if (asprintf(&target, "%.*s%s%s", dirlen, h->path, slash ? "/" : "", st.name) < 0) {
                target = NULL;
                return -ENOMEM;
        }
        if (asprintf(&temp, "%s.oob-new", target) < 0) {
                temp = NULL;
                return -ENOMEM;
        }

        fd = open(h->temp_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = ntfs_volume_write_file(h->volume, temp, read_fd, &fd);
        if (r >= 0)
                r = ntfs_volume_rename_file(h->volume, temp, target);
        if (r < 0) {
                (void) ntfs_volume_unlink(h->volume, temp);
                return r;
        }
        return 0;
}

int registry_hive_commit(RegistryHive *h) {
        int r;

        assert_return(h, -EINVAL);

        if (!h->writable)
                return -EROFS;
        if (!h->modified)
                return 0;

        if (hivex_commit(h->hive, NULL, 0) < 0)
                return errno == ENOMEM ? -ENOMEM : -EIO;

        if (h->volume)
                r = write_back_to_volume(h);
        else {
                _cleanup_free_ char *data = NULL;
                size_t size;

                r = read_full_file(h->temp_path, REGISTRY_HIVE_MAX, &data, &size);
                if (r >= 0)
                        r = write_file_atomic(h->path, data, size, 0600);
        }
        if (r < 0)
                return r;

        h->modified = false;
        return 0;
}

/* ---- keys ---------------------------------------------------------------------- */

/* The next component of a backslash-separated key path; *p advances past it. */
static int next_component(const char **p, char name[static REGISTRY_KEY_NAME_MAX * 4 + 1]) {
        const char *s = *p, *e = strchrnul(s, '\\');
        size_t len = (size_t) (e - s);

        /* Key names are at most 255 UTF-16 units; 4 bytes of UTF-8 each at worst. */
        if (len == 0 || len > REGISTRY_KEY_NAME_MAX * 4)
                return -EINVAL;
        memcpy(name, s, len);
        name[len] = 0;
        *p = *e ? e + 1 : e;
        if (*e && !**p)
                return -EINVAL;                 /* trailing backslash */
        return 0;
}

/* Select\Current of a SYSTEM hive: the control set the next boot uses. */
static int current_control_set(RegistryHive *h, hive_node_h *ret) {
        hive_node_h select, set;
        hive_value_h current;
        hive_type t;
        size_t len;
        char name[sizeof("ControlSet999")];

        errno = 0;
        select = hivex_node_get_child(h->hive, hivex_root(h->hive), "Select");
        if (select == 0)
                return errno ? hivex_error() : -ENOENT;
        errno = 0;
        current = hivex_node_get_value(h->hive, select, "Current");
        if (current == 0)
                return errno ? hivex_error() : -ENOENT;
        if (hivex_value_type(h->hive, current, &t, &len) < 0)
                return hivex_error();
        if (t != hive_t_REG_DWORD || len != 4)
                return -EPROTO;

        _cleanup_free_ char *raw = hivex_value_value(h->hive, current, &t, &len);
        if (!raw)
                return hivex_error();
        uint32_t n = le32((const uint8_t *) raw);
        if (n < 1 || n > 999)
                return -EPROTO;

        snprintf(name, sizeof(name), "ControlSet%03u", n);
        errno = 0;
        set = hivex_node_get_child(h->hive, hivex_root(h->hive), name);
        if (set == 0)
                return errno ? hivex_error() : -ENOENT;
        *ret = set;
        return 0;
}

/*
 * The node of key below the root, names compared case-insensitively
 * (hivex_node_get_child, ASCII case folding). "" (or "\") is the root. A
 * first component "CurrentControlSet" is the control set Select\Current
 * names: on disk that key never exists (Windows links it at boot), so
 * without Select it is -ENOENT, and it is never created. With create,
 * missing keys below it are added.
 */
static int lookup_key(RegistryHive *h, const char *key, bool create, hive_node_h *ret) {
        char name[REGISTRY_KEY_NAME_MAX * 4 + 1];
        hive_node_h node = hivex_root(h->hive);
        const char *p = key;
        unsigned depth = 0;
        int r;

        if (node == 0)
                return hivex_error();
        if (*p == '\\')
                p++;

        /* The whole path first: a bad component refuses before any key is created. */
        for (const char *q = p; *q;) {
                if (++depth > REGISTRY_KEY_DEPTH_MAX)
                        return -EINVAL;
                r = next_component(&q, name);
                if (r < 0)
                        return r;
        }

        depth = 0;
        while (*p) {
                hive_node_h child;

                depth++;
                r = next_component(&p, name);
                if (r < 0)
                        return r;

                if (depth == 1 && strcasecmp(name, "CurrentControlSet") == 0) {
                        r = current_control_set(h, &node);
                        if (r < 0)
                                return r;
                        continue;
                }

                errno = 0;
                child = hivex_node_get_child(h->hive, node, name);
                if (child == 0 && errno != 0)
                        return hivex_error();
                if (child == 0) {
                        if (!create)
                                return -ENOENT;
                        child = hivex_node_add_child(h->hive, node, name);
                        if (child == 0)
                                return hivex_error();
                        h->modified = true;
                }
                node = child;
        }

        *ret = node;
        return 0;
}

static int lookup_value(RegistryHive *h, hive_node_h node, const char *name, hive_value_h *ret) {
        hive_value_h v;

        errno = 0;
        v = hivex_node_get_value(h->hive, node, name ?: "");
        if (v == 0)
                return errno ? hivex_error() : -ENOENT;
        *ret = v;
        return 0;
}

/* ---- values -------------------------------------------------------------------- */

void registry_value_done(RegistryValue *v) {
        if (!v)
                return;
        v->strings = strv_free(v->strings);
        free(v->data);
        v->data = NULL;
        v->size = 0;
        v->number = 0;
}

int registry_get(RegistryHive *h, const char *key, const char *name, RegistryValue *ret) {
        _cleanup_(registry_value_done) RegistryValue v = {};
        _cleanup_free_ char *raw = NULL;
        hive_node_h node;
        hive_value_h val;
        hive_type t;
        size_t len;
        int r;

        assert_return(h, -EINVAL);
        assert_return(key, -EINVAL);
        assert_return(ret, -EINVAL);

        r = lookup_key(h, key, false, &node);
        if (r < 0)
                return r;
        r = lookup_value(h, node, name, &val);
        if (r < 0)
                return r;

        raw = hivex_value_value(h->hive, val, &t, &len);
        if (!raw)
                return hivex_error();

        v.type = (RegistryType) t;
        switch ((int) t) {
        case REGISTRY_SZ:
        case REGISTRY_EXPAND_SZ:
                r = decode_strings((const uint8_t *) raw, len, 1, &v.strings);
                if (r < 0)
                        return r;
                break;
        case REGISTRY_MULTI_SZ:
                r = decode_strings((const uint8_t *) raw, len, SIZE_MAX, &v.strings);
                if (r < 0)
                        return r;
                break;
        case REGISTRY_DWORD:
                if (len != 4)
                        return -EPROTO;
                v.number = le32((const uint8_t *) raw);
                break;
        case REGISTRY_QWORD:
                if (len != 8)
                        return -EPROTO;
                v.number = le64((const uint8_t *) raw);
                break;
        default:
                break;                  /* REG_BINARY and the rest: bytes only */
        }

        v.size = len;
        v.data = (uint8_t *) TAKE_PTR(raw);
        *ret = v;
        v = (RegistryValue) {};
        return 0;
}

/* The bytes Windows stores for v. */
static int encode_value(const RegistryValue *v, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t size = 0;
        int r;

        switch ((int) v->type) {
        case REGISTRY_SZ:
        case REGISTRY_EXPAND_SZ:
                if (strv_length(v->strings) != 1)
                        return -EINVAL;
                r = utf8_append_utf16le(v->strings[0], &buf, &size);
                if (r < 0)
                        return r;
                break;
        case REGISTRY_MULTI_SZ:
                for (char **s = v->strings; s && *s; s++) {
                        /* An empty string would end the list early. */
                        if (!**s)
                                return -EINVAL;
                        r = utf8_append_utf16le(*s, &buf, &size);
                        if (r < 0)
                                return r;
                }
                r = utf8_append_utf16le("", &buf, &size);
                if (r < 0)
                        return r;
                break;
        case REGISTRY_DWORD:
                if (v->number > UINT32_MAX)
                        return -ERANGE;
                buf = malloc(4);
                if (!buf)
                        return -ENOMEM;
                for (size = 0; size < 4; size++)
                        buf[size] = (uint8_t) (v->number >> (8 * size));
                break;
        case REGISTRY_QWORD:
                buf = malloc(8);
                if (!buf)
                        return -ENOMEM;
                for (size = 0; size < 8; size++)
                        buf[size] = (uint8_t) (v->number >> (8 * size));
                break;
        default:
                /* REG_BINARY and any other type: the bytes as given. */
                if (v->size > 0 && !v->data)
                        return -EINVAL;
                buf = malloc(MAX(v->size, 1U));
                if (!buf)
                        return -ENOMEM;
                if (v->size > 0)
                        memcpy(buf, v->data, v->size);
                size = v->size;
                break;
        }

        if (size > REGISTRY_VALUE_CELL_MAX)
                return -EFBIG;
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

int registry_set(RegistryHive *h, const char *key, const char *name, const RegistryValue *v) {
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *key_name = NULL;
        hive_set_value hv;
        hive_node_h node;
        size_t size;
        int r;

        assert_return(h, -EINVAL);
        assert_return(key, -EINVAL);
        assert_return(v, -EINVAL);

        if (!h->writable)
                return -EROFS;
        if (name && strlen(name) > REGISTRY_VALUE_NAME_MAX * 4)
                return -EINVAL;

        /* Everything that can fail on the caller's input first: no key is
         * created for a value that cannot be stored. */
        r = encode_value(v, &data, &size);
        if (r < 0)
                return r;
        key_name = strdup(name ?: "");
        if (!key_name)
                return -ENOMEM;

        r = lookup_key(h, key, true, &node);
        if (r < 0)
                return r;

        hv = (hive_set_value) {
                .key = key_name,
                .t = (hive_type) v->type,
                .len = size,
                .value = (char *) data,
        };
        /* Replaces a value of that name (case-insensitively), keeps the others. */
        if (hivex_node_set_value(h->hive, node, &hv, 0) < 0)
                return hivex_error();
        h->modified = true;
        return 0;
}

/* A node's values as hivex_node_set_values() takes them. */
typedef struct SetValues {
        hive_set_value *values;
        size_t n;
} SetValues;

static void set_values_done(SetValues *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->values[i].key);
                free(s->values[i].value);
        }
        free(s->values);
        *s = (SetValues) {};
}

int registry_delete_value(RegistryHive *h, const char *key, const char *name) {
        _cleanup_free_ hive_value_h *values = NULL;
        _cleanup_(set_values_done) SetValues keep = {};
        hive_node_h node;
        hive_value_h victim;
        size_t n = 0;
        int r;

        assert_return(h, -EINVAL);
        assert_return(key, -EINVAL);

        if (!h->writable)
                return -EROFS;

        r = lookup_key(h, key, false, &node);
        if (r < 0)
                return r;
        r = lookup_value(h, node, name, &victim);
        if (r < 0)
                return r;

        /* hivex has no "delete value": set the node's values to all the others. */
        values = hivex_node_values(h->hive, node);
        if (!values)
                return hivex_error();
        while (values[n])
                n++;
        keep.values = calloc(MAX(n, 1U), sizeof(hive_set_value));
        if (!keep.values)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                hive_set_value *k = &keep.values[keep.n];
                size_t len;

                if (values[i] == victim)
                        continue;
                keep.n++;
                k->key = hivex_value_key(h->hive, values[i]);
                if (!k->key)
                        return hivex_error();
                k->value = hivex_value_value(h->hive, values[i], &k->t, &len);
                if (!k->value)
                        return hivex_error();
                k->len = len;
        }

        if (hivex_node_set_values(h->hive, node, keep.n, keep.values, 0) < 0)
                return hivex_error();
        h->modified = true;
        return 0;
}

int registry_delete_key(RegistryHive *h, const char *key) {
        hive_node_h node;
        int r;

        assert_return(h, -EINVAL);
        assert_return(key, -EINVAL);

        if (!h->writable)
                return -EROFS;

        r = lookup_key(h, key, false, &node);
        if (r < 0)
                return r;
        /* The root, or the whole current control set through its alias. */
        if (node == hivex_root(h->hive))
                return -EINVAL;
        if (hivex_node_delete_child(h->hive, node) < 0)
                return hivex_error();
        h->modified = true;
        return 0;
}

/* ---- what Windows this is ----------------------------------------------------------- */

void windows_info_done(WindowsInfo *w) {
        if (!w)
                return;
        free(w->product_name);
        free(w->edition_id);
        free(w->display_version);
        *w = (WindowsInfo) {};
}

/* A REG_SZ (or REG_EXPAND_SZ) value as a new string; -ENOENT when absent. */
static int get_string(RegistryHive *h, const char *key, const char *name, char **ret) {
        _cleanup_(registry_value_done) RegistryValue v = {};
        int r;

        r = registry_get(h, key, name, &v);
        if (r < 0)
                return r;
        if ((v.type != REGISTRY_SZ && v.type != REGISTRY_EXPAND_SZ) || !v.strings || !v.strings[0])
                return -EPROTO;
        *ret = TAKE_PTR(v.strings[0]);
        return 0;
}

int windows_info_read(NtfsVolume *v, WindowsInfo *ret) {
        static const char key[] = "Microsoft\\Windows NT\\CurrentVersion";
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        _cleanup_(windows_info_done) WindowsInfo w = {};
        _cleanup_(registry_value_done) RegistryValue ubr = {};
        _cleanup_free_ char *build = NULL;
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        r = registry_hive_open(v, "Windows/System32/config/SOFTWARE", false, &h);
        if (r < 0)
                return r;

        r = get_string(h, key, "ProductName", &w.product_name);
        if (r < 0)
                return r;
        r = get_string(h, key, "EditionID", &w.edition_id);
        if (r < 0)
                return r;
        /* Since 20H2; older builds have only ReleaseId. */
        r = get_string(h, key, "DisplayVersion", &w.display_version);
        if (r < 0 && r != -ENOENT)
                return r;
        /* CurrentBuildNumber, and CurrentBuild where that is missing. */
        r = get_string(h, key, "CurrentBuildNumber", &build);
        if (r == -ENOENT)
                r = get_string(h, key, "CurrentBuild", &build);
        if (r < 0)
                return r;
        if (safe_atou64(build, &w.build) < 0 || w.build == 0)
                return -EPROTO;
        /* The update build revision, since Windows 10. */
        r = registry_get(h, key, "UBR", &ubr);
        if (r >= 0) {
                if (ubr.type != REGISTRY_DWORD)
                        return -EPROTO;
                w.ubr = ubr.number;
        } else if (r != -ENOENT)
                return r;

        *ret = w;
        w = (WindowsInfo) {};
        return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The offline apply engine: a verified patch manifest's actions, in order,
 * on the Windows volume of a throw-away staging overlay.
 *
 * Atomicity is not ours: the caller runs the whole apply on a fresh overlay
 * and discards it when this returns an error, so the disk is exactly as
 * before. What is ours is that nothing is written that the manifest did not
 * sign for, and that an action fails before its first write wherever the
 * input allows deciding that up front.
 *
 * extract: the only file that includes libarchive (its errors are
 * translated here). Two passes over the payload, through one open file
 * descriptor so that both see the same bytes:
 *   1. every entry is checked and nothing is written: type (regular files
 *      and directories only), name (normalised, then hardened: no "..",
 *      absolute names, drive letters or streams, no name Windows cannot
 *      open), duplicates compared as NTFS compares names, the entry count,
 *      and the total size, counted on the bytes actually decompressed (an
 *      entry's header may lie) and on the sizes the headers claim
 *      (whichever is larger), against the signed cap;
 *   2. the entries are written, the decompressed bytes counted again
 *      against the same cap.
 * Decompressing twice costs CPU, not disk writes; it buys a refusal of a
 * hostile archive with the volume untouched, which an overlay alone would
 * give only by discarding the whole patch.
 *
 * registry-set / registry-delete: each hive is opened once per apply
 * (cached), edited in memory, and all are committed at the end, before
 * success is returned.
 *
 * stage-package: see the first-boot section below and in updater.h.
 */

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <strings.h>
#include <locale.h>
#include <sys/stat.h>
#include <wctype.h>

#include "updater.h"

/* Bytes read from the archive and handed to libntfs-3g per call. */
#define APPLY_CHUNK (1U * 1024U * 1024U)
#define ARCHIVE_ENTRIES_MAX 100000U
/* All entry names together: bounds the memory of the duplicate check. */
#define ARCHIVE_NAME_BYTES_MAX (16U * 1024U * 1024U)
/* ...and with their parent directories (the duplicate check keeps them). */
#define ARCHIVE_NAME_SET_BYTES_MAX (64U * 1024U * 1024U)
/* Without max-size: at most this many times the payload's signed length... */
#define ARCHIVE_RATIO_MAX 32U
/* ...and never more than this. */
#define ARCHIVE_UNPACKED_MAX (UINT64_C(16) * 1024U * 1024U * 1024U)
#define VOLUME_PATH_MAX 4096U
#define NAME_UNITS_MAX 255U /* UTF-16 code units in an NTFS name */
/* What a shown name is cut to in messages. */
#define DISPLAY_MAX 128U
/* First-boot queue numbers are six digits. */
#define FIRSTBOOT_NUMBER_MAX 999999U
/* A result file is a few short lines. */
#define FIRSTBOOT_RESULT_MAX (64U * 1024U)

struct archive;

typedef struct OpenHive {
        char *name; /* "SYSTEM", "NTUSER:alice" */
        RegistryHive *hive;
        size_t last_action; /* for a failing commit's message */
} OpenHive;

typedef struct Apply {
        NtfsVolume *volume;
        const PatchManifest *manifest;
        const ApplyOptions *options;
        ApplyResult result;
        OpenHive *hives;
        size_t n_hives;
        char *error;             /* the cause of the failure, for the caller */
        unsigned firstboot_next; /* next first-boot queue number; 0: not looked up */
} Apply;

static void apply_done(Apply *ap) {
        for (size_t i = 0; i < ap->n_hives; i++) {
                registry_hive_close(ap->hives[i].hive);
                free(ap->hives[i].name);
        }
        free(ap->hives);
        free(ap->error);
}

static void archive_read_freep(struct archive **a) {
        if (*a)
                (void) archive_read_free(*a);
}

/* Text from a payload or the volume in a message: cut, control characters
 * as '?', so that an archive cannot forge log lines. */
static char *display(const char *s) {
        size_t n = strnlen(s, DISPLAY_MAX + 1);
        char *d = malloc(DISPLAY_MAX + 4);

        if (!d)
                return NULL;
        for (size_t i = 0; i < MIN(n, (size_t) DISPLAY_MAX); i++)
                d[i] = (unsigned char) s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        strcpy(d + MIN(n, (size_t) DISPLAY_MAX), n > DISPLAY_MAX ? "..." : "");
        return d;
}

static const char *strna(const char *s) {
        return s ?: "(n/a)";
}

/* Record why the current action fails (the first reason wins) and return r. */
static int fail(Apply *ap, int r, const char *format, ...) _printf_(3, 4);
static int fail(Apply *ap, int r, const char *format, ...) {
        va_list args;

        if (ap->error || r == -ENOMEM)
                return r;
        errno = r < 0 ? -r : 0; /* for %m */
        va_start(args, format);
        if (vasprintf(&ap->error, format, args) < 0)
                ap->error = NULL;
        va_end(args);
        return r;
}

static const char *dest_or_root(const char *dest) {
        return !dest || streq(dest, ".") ? "" : dest;
}

/* dir "" is the volume root. */
static char *volume_join(const char *dir, const char *name) {
        char *p;

        if (!*dir)
                return strdup(name);
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return NULL;
        return p;
}

/* ---- names ------------------------------------------------------------------- */

/* Windows' reserved device names, alone or with an extension. */
static bool name_is_reserved(const char *name) {
        static const char *const reserved[] = {"CON", "PRN", "AUX", "NUL"};
        size_t base = strcspn(name, ".");

        if (base == 3) {
                for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                        if (strncasecmp(name, reserved[i], 3) == 0)
                                return true;
        } else if (base == 4 && name[3] >= '1' && name[3] <= '9')
                return strncasecmp(name, "COM", 3) == 0 || strncasecmp(name, "LPT", 3) == 0;
        return false;
}

/* Decode one UTF-8 sequence (shortest form, no surrogates, <= U+10FFFF);
 * returns its length or 0 when invalid. */
static size_t utf8_decode(const char *s, uint32_t *ret) {
        const uint8_t *p = (const uint8_t *) s;
        uint32_t c;
        size_t n;

        if (p[0] < 0x80) {
                *ret = p[0];
                return 1;
        }
        if ((p[0] & 0xe0) == 0xc0) {
                c = p[0] & 0x1f;
                n = 2;
        } else if ((p[0] & 0xf0) == 0xe0) {
                c = p[0] & 0x0f;
                n = 3;
        } else if ((p[0] & 0xf8) == 0xf0) {
                c = p[0] & 0x07;
                n = 4;
        } else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
            (c >= 0xd800 && c <= 0xdfff))
                return 0;
        *ret = c;
        return n;
}

static size_t utf8_encode(uint32_t c, char *out) {
        if (c < 0x80) {
                out[0] = (char) c;
                return 1;
        }
        if (c < 0x800) {
                out[0] = (char) (0xc0 | c >> 6);
                out[1] = (char) (0x80 | (c & 0x3f));
                return 2;
        }
        if (c < 0x10000) {
                out[0] = (char) (0xe0 | c >> 12);
                out[1] = (char) (0x80 | (c >> 6 & 0x3f));
                out[2] = (char) (0x80 | (c & 0x3f));
                return 3;
        }
        out[0] = (char) (0xf0 | c >> 18);
        out[1] = (char) (0x80 | (c >> 12 & 0x3f));
        out[2] = (char) (0x80 | (c >> 6 & 0x3f));
        out[3] = (char) (0x80 | (c & 0x3f));
        return 4;
}

/*
 * What is wrong with one component of a name on the volume, or NULL. The
 * rules of FORMATS.md's volume paths (and of hv/ntfs.c, which checks them
 * again): Windows could not open what breaks them.
 */
static const char *component_problem(const char *c, size_t len) {
        size_t units = 0;
        char name[NAME_UNITS_MAX * 4 + 1];

        if (len == 0)
                return "empty path components are not allowed";
        if ((len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                return "'.' and '..' are not allowed";
        for (size_t i = 0; i < len;) {
                uint32_t u;
                size_t k = utf8_decode(c + i, &u);

                if (k == 0 || i + k > len)
                        return "names must be valid UTF-8";
                if (u < 0x20 || u == 0x7f || (u < 0x80 && strchr("<>\"|?*", (int) u)))
                        return "control characters and < > \" | ? * are not allowed";
                units += u >= 0x10000 ? 2 : 1;
                if (units > NAME_UNITS_MAX)
                        return "a name is longer than 255 characters";
                i += k;
        }
        if (c[len - 1] == '.' || c[len - 1] == ' ')
                return "names ending in a dot or a space are not allowed";
        memcpy(name, c, len);
        name[len] = 0;
        if (name_is_reserved(name))
                return "device names Windows reserves (CON, NUL, COM1, ...) are not allowed";
        return NULL;
}

/*
 * An archive entry's name as a path below the extract destination: '\' is
 * a separator too, a leading "./" is dropped, a directory's trailing '/'
 * too. "" is the archive's own root directory (a "./" entry). Returns 0
 * with *ret_problem NULL when the name is fine, -EPROTO with *ret_problem
 * set when it is refused.
 */
static int entry_name_normalize(const char *raw, bool is_dir, char **ret, const char **ret_problem) {
        _cleanup_free_ char *s = NULL;
        char *p;
        size_t n;

        *ret_problem = NULL;
        if (!raw || !*raw) {
                *ret_problem = "an entry has no name";
                return -EPROTO;
        }
        s = strdup(raw);
        if (!s)
                return -ENOMEM;
        for (p = s; *p; p++)
                if (*p == '\\')
                        *p = '/';
        p = s;
        if (*p == '/') {
                *ret_problem = "absolute names are not allowed";
                return -EPROTO;
        }
        if (strchr(p, ':')) {
                *ret_problem = "':' is not allowed (no drive letters or alternate data streams)";
                return -EPROTO;
        }
        while (p[0] == '.' && p[1] == '/')
                p += 2;
        n = strlen(p);
        if (is_dir && n > 0 && p[n - 1] == '/')
                p[--n] = 0;
        if (is_dir && (n == 0 || streq(p, "."))) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        if (n > VOLUME_PATH_MAX) {
                *ret_problem = "the name is longer than 4096 bytes";
                return -EPROTO;
        }
        for (const char *c = p;;) {
                size_t len = strcspn(c, "/");
                const char *problem = component_problem(c, len);

                if (problem) {
                        *ret_problem = problem;
                        return -EPROTO;
                }
                if (!c[len])
                        break;
                c += len + 1;
        }
        *ret = strdup(p);
        return *ret ? 0 : -ENOMEM;
}

/*
 * The key two names share when NTFS takes them for the same file: each
 * UTF-16 code unit upper-cased (NTFS's $UpCase table maps the BMP
 * character by character; characters outside it are kept). C.UTF-8's case
 * tables stand in for the volume's: where they differ they fold more, so a
 * difference can only refuse an archive, never let two names for one file
 * through. ASCII only if that locale is missing.
 */
static locale_t fold_locale(void) {
        static locale_t l;
        static bool tried;

        if (!tried) {
                tried = true;
                l = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
        }
        return l;
}

static char *name_fold(const char *s) {
        size_t n = strlen(s);
        locale_t l = fold_locale();
        char *out = malloc(n * 2 + 1), *o = out; /* an upper case form may need 3 bytes for 2 */

        if (!out)
                return NULL;
        while (*s) {
                uint32_t c;
                size_t k = utf8_decode(s, &c);

                assert(k > 0); /* checked by entry_name_normalize() */
                if (c < 0x10000) {
                        uint32_t u = l ? (uint32_t) towupper_l((wint_t) c, l)
                                       : (c < 0x80 ? (uint32_t) toupper((int) c) : c);
                        if (u < 0x10000 && !(u >= 0xd800 && u <= 0xdfff))
                                c = u;
                }
                o += utf8_encode(c, o);
                s += k;
        }
        *o = 0;
        return out;
}

/* ---- the duplicate check: a set of folded names ---------------------------------- */

typedef struct NameSet {
        struct {
                char *key;
                bool is_file; /* a file entry; else a directory (named or implied) */
                bool named;   /* a directory that has its own entry */
        } * slots;
        size_t n, capacity;
        size_t bytes; /* of all keys: names and their parents */
} NameSet;

static void name_set_done(NameSet *s) {
        for (size_t i = 0; i < s->capacity; i++)
                free(s->slots[i].key);
        free(s->slots);
        *s = (NameSet){};
}

static uint64_t name_hash(const char *s) {
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * 0x100000001b3ULL;
        return h;
}

static size_t name_set_slot(const NameSet *s, const char *key) {
        size_t i = name_hash(key) & (s->capacity - 1);

        while (s->slots[i].key && !streq(s->slots[i].key, key))
                i = (i + 1) & (s->capacity - 1);
        return i;
}

static int name_set_grow(NameSet *s) {
        NameSet bigger = {.capacity = s->capacity ? s->capacity * 2 : 256, .bytes = s->bytes};

        bigger.slots = calloc(bigger.capacity, sizeof(*bigger.slots));
        if (!bigger.slots)
                return -ENOMEM;
        for (size_t i = 0; i < s->capacity; i++)
                if (s->slots[i].key) {
                        size_t j = name_set_slot(&bigger, s->slots[i].key);
                        bigger.slots[j] = s->slots[i];
                        bigger.n++;
                }
        free(s->slots);
        *s = bigger;
        return 0;
}

/*
 * Add an entry (folded name). Refused: a second file of the same name, a
 * file where a directory is (named or implied by a longer name), a
 * directory where a file is (-EPROTO); more than
 * ARCHIVE_NAME_SET_BYTES_MAX bytes of names and parents (-EFBIG). Two
 * entries for one directory are harmless (tar files made by appending have
 * them) and accepted.
 */
static int name_set_add(NameSet *s, char *folded, bool is_file, const char **ret_problem) {
        _cleanup_free_ char *key = folded;
        size_t len = strlen(key);
        int r;

        /* Every parent is a directory, implied if it has no entry of its own. */
        for (size_t i = 0; i <= len; i++) {
                bool last = i == len;
                size_t slot;

                if (!last && key[i] != '/')
                        continue;
                if ((s->n + 1) * 4 > s->capacity * 3) {
                        r = name_set_grow(s);
                        if (r < 0)
                                return r;
                }
                key[i] = 0;
                slot = name_set_slot(s, key);
                if (s->slots[slot].key) {
                        if (!last && s->slots[slot].is_file) {
                                *ret_problem = "a file of that name is also used as a directory";
                                return -EPROTO;
                        }
                        if (last && is_file) {
                                *ret_problem = s->slots[slot].is_file
                                                       ? "another entry names the same file (NTFS compares "
                                                         "names case-insensitively)"
                                                       : "a directory of that name is in the archive too";
                                return -EPROTO;
                        }
                        if (last && s->slots[slot].is_file) {
                                *ret_problem = "a file of that name is in the archive too";
                                return -EPROTO;
                        }
                        if (last)
                                s->slots[slot].named = true;
                } else {
                        /* Deep names have many parents: bound what they cost. */
                        s->bytes += i + 1;
                        if (s->bytes > ARCHIVE_NAME_SET_BYTES_MAX) {
                                *ret_problem = "the archive's names are too many or too deep";
                                return -EFBIG;
                        }
                        s->slots[slot].key = strdup(key);
                        if (!s->slots[slot].key)
                                return -ENOMEM;
                        s->slots[slot].is_file = last && is_file;
                        s->slots[slot].named = last;
                        s->n++;
                }
                if (!last)
                        key[i] = '/';
        }
        return 0;
}

/* ---- payloads ---------------------------------------------------------------------- */

static const TufTargetFile *signed_payload(const ApplyOptions *o, const char *path) {
        for (size_t i = 0; i < o->n_payloads; i++)
                if (o->payloads[i] && streq(o->payloads[i]->path, path))
                        return o->payloads[i];
        return NULL;
}

/*
 * Open a payload: PAYLOAD_DIR/tuf_client_target_filename(path), of exactly
 * its signed length (the caller verified its hashes; we check it is still
 * that file's size). A payload the options do not list (admin use with
 * local files) may also be PAYLOAD_DIR/path, and its length is its size.
 */
static int payload_open(Apply *ap, const char *path, int *ret_fd, uint64_t *ret_length) {
        const TufTargetFile *t = signed_payload(ap->options, path);
        _cleanup_free_ char *name = NULL;
        _cleanup_close_ int dir_fd = -EBADF, fd = -EBADF;
        struct stat st;

        if (!ap->options->payload_dir)
                return fail(ap, -EINVAL, "no payload directory given for payload '%s'", path);
        name = tuf_client_target_filename(path);
        if (!name)
                return -ENOMEM;
        dir_fd = open(ap->options->payload_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return fail(ap, -errno, "cannot open the payload directory %s: %m",
                            ap->options->payload_dir);
        fd = filename_is_safe(name) ? openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (fd < 0 && (!filename_is_safe(name) || errno == ENOENT) && !t)
                fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return fail(ap, -errno, "payload '%s' not found in %s: %m", path, ap->options->payload_dir);
        if (fstat(fd, &st) < 0)
                return fail(ap, -errno, "payload '%s': %m", path);
        if (!S_ISREG(st.st_mode))
                return fail(ap, -EBADMSG, "payload '%s' is not a regular file", path);
        if (t && (uint64_t) st.st_size != t->length)
                return fail(ap, -EBADMSG, "payload '%s' is %jd bytes, its signed length is %" PRIu64, path,
                            (intmax_t) st.st_size, t->length);
        *ret_length = t ? t->length : (uint64_t) st.st_size;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- extract: libarchive ------------------------------------------------------------ */

/* libarchive's error, translated once: allocation and I/O errors keep
 * their meaning, anything else is a damaged or unsupported archive. */
static int archive_fail(Apply *ap, struct archive *a, const char *payload) {
        int e = archive_errno(a);
        _cleanup_free_ char *msg = display(archive_error_string(a) ?: "unknown error");

        if (e == ENOMEM)
                return -ENOMEM;
        return fail(ap, e == EIO ? -EIO : -EPROTO, "payload '%s': damaged or unsupported archive: %s",
                    payload, msg ?: "?");
}

/* tar (plain, gzip, bzip2, xz, zstd), zip and cab, nothing else: no raw
 * or "empty" formats, and only filters built into libarchive (a filter
 * that would run an external program is refused). */
static int archive_open(Apply *ap, int fd, const char *payload, struct archive **ret) {
        _cleanup_(archive_read_freep) struct archive *a = NULL;
        int (*const filters[])(struct archive *) = {
                archive_read_support_filter_gzip,
                archive_read_support_filter_bzip2,
                archive_read_support_filter_xz,
                archive_read_support_filter_zstd,
        };

        if (lseek(fd, 0, SEEK_SET) < 0)
                return fail(ap, -errno, "payload '%s': %m", payload);
        a = archive_read_new();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(filters); i++)
                if (filters[i](a) != ARCHIVE_OK)
                        return fail(ap, -EOPNOTSUPP, "this libarchive lacks a built-in decompressor: %s",
                                    archive_error_string(a) ?: "?");
        if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
            archive_read_support_format_zip(a) != ARCHIVE_OK ||
            archive_read_support_format_cab(a) != ARCHIVE_OK)
                return archive_fail(ap, a, payload);
        /* tar headers without a charset of their own are UTF-8, as GNU tar
         * and bsdtar write them on today's systems. */
        (void) archive_read_set_format_option(a, "tar", "hdrcharset", "UTF-8");
        if (archive_read_open_fd(a, fd, APPLY_CHUNK) != ARCHIVE_OK)
                return archive_fail(ap, a, payload);
        *ret = TAKE_PTR(a);
        return 0;
}

/* Next entry: 1, 0 at the end; names that cannot be converted to UTF-8
 * come back as NULL and are refused by the name check. */
static int archive_next(Apply *ap, struct archive *a, const char *payload, struct archive_entry **ret) {
        int r = archive_read_next_header(a, ret);

        if (r == ARCHIVE_EOF)
                return 0;
        if (r < ARCHIVE_WARN)
                return archive_fail(ap, a, payload);
        return 1;
}

/* Check an entry's type; the problem, or NULL for a file or directory. */
static const char *entry_type_problem(struct archive_entry *e) {
        if (archive_entry_hardlink(e))
                return "hard links are not allowed";
        if (archive_entry_symlink(e))
                return "symbolic links are not allowed";
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
        case AE_IFDIR:
                break;
        case AE_IFLNK:
                return "symbolic links are not allowed";
        case AE_IFCHR:
        case AE_IFBLK:
                return "device files are not allowed";
        case AE_IFIFO:
                return "FIFOs are not allowed";
        case AE_IFSOCK:
                return "sockets are not allowed";
        default:
                return "only regular files and directories are allowed";
        }
        if (archive_entry_is_encrypted(e))
                return "encrypted entries are not supported";
        return NULL;
}

typedef struct Entry {
        char *name; /* normalised, below dest; "" for the archive root */
        bool is_dir;
} Entry;

static void entry_done(Entry *e) {
        free(e->name);
        *e = (Entry){};
}

/* The checks both passes make on each entry. */
static int entry_check(Apply *ap, struct archive_entry *e, const char *payload, const char *dest,
                       Entry *ret) {
        const char *raw = archive_entry_pathname_utf8(e) ?: archive_entry_pathname(e);
        _cleanup_free_ char *shown = display(raw ?: "(not convertible to UTF-8)");
        const char *problem;
        Entry out = {};
        int r;

        if (!shown)
                return -ENOMEM;
        problem = entry_type_problem(e);
        if (problem)
                return fail(ap, archive_entry_is_encrypted(e) ? -EOPNOTSUPP : -EPROTO,
                            "payload '%s': archive entry '%s': %s", payload, shown, problem);
        out.is_dir = archive_entry_filetype(e) == AE_IFDIR;
        if (!raw)
                return fail(ap, -EPROTO, "payload '%s': an entry's name is not valid UTF-8", payload);
        r = entry_name_normalize(raw, out.is_dir, &out.name, &problem);
        if (r == -EPROTO)
                return fail(ap, r, "payload '%s': archive entry '%s': %s", payload, shown, problem);
        if (r < 0)
                return r;
        if (strlen(dest) + 1 + strlen(out.name) > VOLUME_PATH_MAX) {
                entry_done(&out);
                return fail(ap, -EPROTO,
                            "payload '%s': archive entry '%s': the path on the volume is longer "
                            "than 4096 bytes",
                            payload, shown);
        }
        *ret = out;
        return 0;
}

/* The cap on the bytes an extract may unpack to. */
static uint64_t extract_cap(const PatchAction *a, uint64_t payload_length) {
        if (a->max_unpacked > 0)
                return a->max_unpacked;
        if (payload_length > ARCHIVE_UNPACKED_MAX / ARCHIVE_RATIO_MAX)
                return ARCHIVE_UNPACKED_MAX;
        return MIN(payload_length * ARCHIVE_RATIO_MAX, ARCHIVE_UNPACKED_MAX);
}

static int over_cap(Apply *ap, const char *payload, uint64_t cap) {
        return fail(ap, -EFBIG, "payload '%s' unpacks to more than %" PRIu64 " bytes (%s)", payload, cap,
                    "its signed limit: max-size, or 32 times its length and at most 16 GiB");
}

/* Pass 1: everything is checked, nothing written. */
static int extract_check(Apply *ap, const PatchAction *a, int fd, uint64_t cap, size_t *ret_entries) {
        _cleanup_(archive_read_freep) struct archive *arc = NULL;
        _cleanup_(name_set_done) NameSet names = {};
        const char *dest = dest_or_root(a->dest);
        uint64_t total = 0, name_bytes = 0;
        struct archive_entry *e;
        size_t n = 0;
        int r;

        r = archive_open(ap, fd, a->payload, &arc);
        if (r < 0)
                return r;
        while ((r = archive_next(ap, arc, a->payload, &e)) > 0) {
                _cleanup_(entry_done) Entry entry = {};
                uint64_t size = 0;
                const void *block;
                size_t len;
                la_int64_t offset;
                const char *problem = NULL;

                if (++n > ARCHIVE_ENTRIES_MAX)
                        return fail(ap, -EFBIG, "payload '%s' has more than %u entries", a->payload,
                                    ARCHIVE_ENTRIES_MAX);
                r = entry_check(ap, e, a->payload, dest, &entry);
                if (r < 0)
                        return r;
                name_bytes += strlen(entry.name) + 1;
                if (name_bytes > ARCHIVE_NAME_BYTES_MAX)
                        return fail(ap, -EFBIG,
                                    "payload '%s': the entry names are longer than %u bytes together",
                                    a->payload, ARCHIVE_NAME_BYTES_MAX);
                if (*entry.name) {
                        char *folded = name_fold(entry.name);

                        if (!folded)
                                return -ENOMEM;
                        r = name_set_add(&names, folded, !entry.is_dir, &problem);
                        if (r == -EPROTO || r == -EFBIG) {
                                _cleanup_free_ char *shown = display(entry.name);
                                return fail(ap, r, "payload '%s': archive entry '%s': %s", a->payload,
                                            strna(shown), problem);
                        }
                        if (r < 0)
                                return r;
                }
                if (entry.is_dir)
                        continue;

                /* What the header claims first: a bomb is refused before
                 * it is decompressed when it says what it is. */
                if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0)
                        size = (uint64_t) archive_entry_size(e);
                if (size > cap || total + size > cap)
                        return over_cap(ap, a->payload, cap);
                /* Then what it decompresses to (sparse holes count). */
                while ((r = archive_read_data_block(arc, &block, &len, &offset)) == ARCHIVE_OK ||
                       r == ARCHIVE_WARN) {
                        uint64_t end;

                        if (offset < 0)
                                return fail(ap, -EPROTO, "payload '%s': negative data offset", a->payload);
                        end = (uint64_t) offset + len;
                        if (end > size)
                                size = end;
                        if (size > cap || total + size > cap)
                                return over_cap(ap, a->payload, cap);
                }
                if (r != ARCHIVE_EOF)
                        return archive_fail(ap, arc, a->payload);
                total += size;
        }
        if (r < 0)
                return r;
        *ret_entries = n;
        return 0;
}

typedef struct EntryReader {
        Apply *apply;
        struct archive *archive;
        const char *payload;
        uint64_t *total, cap;
        uint64_t written;
} EntryReader;

static ssize_t entry_read(void *userdata, void *buf, size_t size) {
        EntryReader *er = userdata;
        la_ssize_t n = archive_read_data(er->archive, buf, size);

        if (n < 0)
                return archive_fail(er->apply, er->archive, er->payload);
        *er->total += (uint64_t) n;
        if (*er->total > er->cap)
                return over_cap(er->apply, er->payload, er->cap);
        er->written += (uint64_t) n;
        return n;
}

/* The parent directory of a volume path ("" for the root), in buf. */
static char *parent_of(const char *path) {
        const char *slash = strrchr(path, '/');

        return strndup(path, slash ? (size_t) (slash - path) : 0);
}

/* Pass 2: the same archive, written below dest. */
static int extract_write(Apply *ap, const PatchAction *a, int fd, uint64_t cap, size_t entries) {
        _cleanup_(archive_read_freep) struct archive *arc = NULL;
        _cleanup_free_ char *made = NULL; /* the directory made last */
        const char *dest = dest_or_root(a->dest);
        struct archive_entry *e;
        uint64_t total = 0;
        size_t n = 0;
        int r;

        if (*dest) {
                r = ntfs_volume_mkdir_p(ap->volume, dest);
                if (r < 0)
                        return fail(ap, r, "creating the destination %s: %m", dest);
        }
        r = archive_open(ap, fd, a->payload, &arc);
        if (r < 0)
                return r;
        while ((r = archive_next(ap, arc, a->payload, &e)) > 0) {
                _cleanup_(entry_done) Entry entry = {};
                _cleanup_free_ char *path = NULL, *parent = NULL;

                /* The payload changed under us: the first pass saw fewer. */
                if (++n > entries)
                        return fail(ap, -EBADMSG, "payload '%s' changed while it was applied", a->payload);
                r = entry_check(ap, e, a->payload, dest, &entry);
                if (r < 0)
                        return r;
                if (!*entry.name)
                        continue;
                path = volume_join(dest, entry.name);
                if (!path)
                        return -ENOMEM;
                if (entry.is_dir) {
                        r = ntfs_volume_mkdir_p(ap->volume, path);
                        if (r < 0) {
                                _cleanup_free_ char *shown = display(path);
                                return fail(ap, r, "creating directory %s: %m", strna(shown));
                        }
                        continue;
                }

                parent = parent_of(path);
                if (!parent)
                        return -ENOMEM;
                if (*parent && (!made || !streq(made, parent))) {
                        r = ntfs_volume_mkdir_p(ap->volume, parent);
                        if (r < 0) {
                                _cleanup_free_ char *shown = display(parent);
                                return fail(ap, r, "creating directory %s: %m", strna(shown));
                        }
                        free(made);
                        made = TAKE_PTR(parent);
                }

                EntryReader er = {
                        .apply = ap,
                        .archive = arc,
                        .payload = a->payload,
                        .total = &total,
                        .cap = cap,
                };
                r = ntfs_volume_write_file(ap->volume, path, entry_read, &er);
                if (r < 0) {
                        _cleanup_free_ char *shown = display(path);
                        return fail(ap, r, "writing %s: %m", strna(shown));
                }
                ap->result.files_written++;
                ap->result.bytes_written += er.written;
        }
        return r;
}

static void uselocale_restore(locale_t *old) {
        if (*old)
                (void) uselocale(*old);
}

static int action_extract(Apply *ap, const PatchAction *a) {
        _cleanup_close_ int fd = -EBADF;
        /* libarchive converts names through the current locale, and in
         * the C locale drops UTF-8 names (zip's, pax's) it cannot convert:
         * read in C.UTF-8, on this thread only, whatever the process'. */
        _cleanup_(uselocale_restore) _unused_ locale_t old =
                fold_locale() ? uselocale(fold_locale()) : (locale_t) 0;
        uint64_t length, cap;
        size_t entries = 0;
        int r;

        r = payload_open(ap, a->payload, &fd, &length);
        if (r < 0)
                return r;
        cap = extract_cap(a, length);
        r = extract_check(ap, a, fd, cap, &entries);
        if (r < 0)
                return r;
        log_debug("Extracting %s (%zu entries, at most %" PRIu64 " bytes) to /%s", a->payload, entries, cap,
                  dest_or_root(a->dest));
        return extract_write(ap, a, fd, cap, entries);
}

/* ---- delete --------------------------------------------------------------------- */

/* A file already gone is fine: applying a patch twice (or one that cleans
 * up after several versions) must not fail on it. A directory is refused:
 * deleting trees is not what a list of files says. */
static int action_delete(Apply *ap, const PatchAction *a) {
        for (char **p = a->paths; p && *p; p++) {
                int r = ntfs_volume_unlink(ap->volume, *p);

                if (r == -ENOENT) {
                        log_debug("%s is already absent", *p);
                        continue;
                }
                if (r == -EISDIR)
                        return fail(ap, r, "%s is a directory: delete removes files only", *p);
                if (r < 0)
                        return fail(ap, r, "deleting %s: %m", *p);
                ap->result.files_deleted++;
        }
        return 0;
}

/* ---- registry ---------------------------------------------------------------------- */

/* The hive file of a manifest's hive name. */
static int hive_path(const char *hive, char **ret) {
        char *p;

        if (streq(hive, "SYSTEM") || streq(hive, "SOFTWARE"))
                p = volume_join("Windows/System32/config", hive);
        else if (strneq(hive, "NTUSER:", STRLEN("NTUSER:")) && hive[STRLEN("NTUSER:")]) {
                if (asprintf(&p, "Users/%s/NTUSER.DAT", hive + STRLEN("NTUSER:")) < 0)
                        p = NULL;
        } else
                return -EINVAL;
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* Each hive is opened once per apply; all are committed at the end. */
static int hive_get(Apply *ap, const char *name, size_t action, RegistryHive **ret) {
        _cleanup_(registry_hive_closep) RegistryHive *h = NULL;
        _cleanup_free_ char *path = NULL, *copy = NULL;
        OpenHive *l;
        int r;

        for (size_t i = 0; i < ap->n_hives; i++)
                if (streq(ap->hives[i].name, name)) {
                        ap->hives[i].last_action = action;
                        *ret = ap->hives[i].hive;
                        return 0;
                }

        r = hive_path(name, &path);
        if (r == -EINVAL)
                return fail(ap, r, "unknown hive '%s'", name);
        if (r < 0)
                return r;
        r = registry_hive_open(ap->volume, path, true, &h);
        if (r < 0)
                return fail(ap, r, "opening the %s hive (%s): %m", name, path);
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        l = reallocarray(ap->hives, ap->n_hives + 1, sizeof(OpenHive));
        if (!l)
                return -ENOMEM;
        ap->hives = l;
        ap->hives[ap->n_hives++] = (OpenHive){
                .name = TAKE_PTR(copy),
                .hive = h,
                .last_action = action,
        };
        *ret = TAKE_PTR(h);
        return 0;
}

static const RegistryType registry_type_map[_REG_VALUE_TYPE_MAX] = {
        [REG_VALUE_SZ] = REGISTRY_SZ,
        [REG_VALUE_EXPAND_SZ] = REGISTRY_EXPAND_SZ,
        [REG_VALUE_MULTI_SZ] = REGISTRY_MULTI_SZ,
        [REG_VALUE_DWORD] = REGISTRY_DWORD,
        [REG_VALUE_QWORD] = REGISTRY_QWORD,
        [REG_VALUE_BINARY] = REGISTRY_BINARY,
};

static int action_registry_set(Apply *ap, const PatchAction *a, size_t index) {
        static char *const no_strings[] = {NULL};
        RegistryHive *h;
        RegistryValue v;
        int r;

        if ((unsigned) a->value_type >= _REG_VALUE_TYPE_MAX)
                return fail(ap, -EINVAL, "unknown value type");
        v = (RegistryValue){
                .type = registry_type_map[a->value_type],
                .strings = a->strings ?: (char **) no_strings,
                .number = a->number,
                .data = a->binary,
                .size = a->binary_size,
        };
        r = hive_get(ap, a->hive, index, &h);
        if (r < 0)
                return r;
        r = registry_set(h, a->key, a->value_name, &v);
        if (r < 0)
                return fail(ap, r, "setting %s\\%s\\%s: %m", a->hive, a->key, a->value_name ?: "");
        ap->result.registry_changes++;
        return 0;
}

/* Like a file already deleted, a key or value already absent is fine. */
static int action_registry_delete(Apply *ap, const PatchAction *a, size_t index) {
        RegistryHive *h;
        int r;

        r = hive_get(ap, a->hive, index, &h);
        if (r < 0)
                return r;
        r = a->value_name ? registry_delete_value(h, a->key, a->value_name) : registry_delete_key(h, a->key);
        if (r == -ENOENT) {
                log_debug("%s\\%s%s%s is already absent", a->hive, a->key, a->value_name ? "\\" : "",
                          a->value_name ?: "");
                return 0;
        }
        if (r < 0)
                return fail(ap, r, "deleting %s\\%s%s%s: %m", a->hive, a->key, a->value_name ? "\\" : "",
                            a->value_name ?: "");
        ap->result.registry_changes++;
        return 0;
}

/* ---- stage-package and the first-boot queue ---------------------------------------- */

typedef struct FdReader {
        int fd;
        uint64_t read;
} FdReader;

static ssize_t fd_read(void *userdata, void *buf, size_t size) {
        FdReader *f = userdata;
        ssize_t n;

        do
                n = read(f->fd, buf, size);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        f->read += (uint64_t) n;
        return n;
}

static int write_text(Apply *ap, const char *path, const char *text) {
        int r = ntfs_volume_write_buffer(ap->volume, path, text, strlen(text));

        if (r < 0)
                return fail(ap, r, "writing %s: %m", path);
        ap->result.files_written++;
        ap->result.bytes_written += strlen(text);
        return 0;
}

/* The number a queue entry's name starts with ("000012-..."), or 0. */
static unsigned queue_number(const char *name) {
        unsigned n = 0;
        size_t i;

        for (i = 0; i < 9 && name[i] >= '0' && name[i] <= '9'; i++)
                n = n * 10 + (unsigned) (name[i] - '0');
        return i > 0 && name[i] == '-' ? n : 0;
}

/* One more than every number in the queue, running and results. Numbers
 * are never reused, so results of earlier patches are not overwritten. */
static int firstboot_next_number(Apply *ap, unsigned *ret) {
        static const char *const dirs[] = {
                FIRSTBOOT_DIR "/queue",
                FIRSTBOOT_DIR "/running",
                FIRSTBOOT_DIR "/results",
        };
        unsigned max = 0;

        if (ap->firstboot_next == 0) {
                for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                        _cleanup_strv_free_ char **l = NULL;
                        int r = ntfs_volume_list(ap->volume, dirs[i], &l);

                        if (r == -ENOENT)
                                continue;
                        if (r < 0)
                                return fail(ap, r, "listing %s: %m", dirs[i]);
                        for (char **n = l; *n; n++)
                                max = MAX(max, queue_number(*n));
                }
                if (max >= FIRSTBOOT_NUMBER_MAX)
                        return fail(ap, -EFBIG, "the first-boot queue numbers are exhausted");
                ap->firstboot_next = max + 1;
        }
        *ret = ap->firstboot_next++;
        return 0;
}

/* The runner: started by the service at every boot, runs each queued
 * command once. Lines end in CRLF: cmd.exe mis-parses labels otherwise. */
static const char firstboot_runner[] =
        "@echo off\r\n"
        "rem oob first-boot runner, written by oob's offline apply (see oob's\r\n"
        "rem manifests/FORMATS.md, stage-package). The service oobfirstboot starts it at\r\n"
        "rem every boot. Each queued command runs once, in name order: it is moved to\r\n"
        "rem running\\ before it starts, so one that was running when the machine went\r\n"
        "rem down is recorded as interrupted at the next boot, never started twice.\r\n"
        "setlocal EnableExtensions DisableDelayedExpansion\r\n"
        "set \"OOB=%SystemDrive%\\ProgramData\\oob\\firstboot\"\r\n"
        "if not exist \"%OOB%\\results\" mkdir \"%OOB%\\results\"\r\n"
        "if not exist \"%OOB%\\running\" mkdir \"%OOB%\\running\"\r\n"
        "for /f \"delims=\" %%f in ('dir /b /a-d /on \"%OOB%\\running\\*.cmd\" 2^>nul') do call "
        ":interrupted \"%%~nf\"\r\n"
        "for /f \"delims=\" %%f in ('dir /b /a-d /on \"%OOB%\\queue\\*.cmd\" 2^>nul') do call :run "
        "\"%%~nf\"\r\n"
        "exit /b 0\r\n"
        "\r\n"
        ":interrupted\r\n"
        "> \"%OOB%\\results\\%~1.tmp\" (\r\n"
        "  echo exit=interrupted\r\n"
        "  echo end=%DATE% %TIME%\r\n"
        ")\r\n"
        "move /y \"%OOB%\\results\\%~1.tmp\" \"%OOB%\\results\\%~1.result\" >nul\r\n"
        "del /f /q \"%OOB%\\running\\%~1.cmd\"\r\n"
        "exit /b 0\r\n"
        "\r\n"
        ":run\r\n"
        "move /y \"%OOB%\\queue\\%~1.cmd\" \"%OOB%\\running\\%~1.cmd\" >nul || exit /b 0\r\n"
        "set \"START=%DATE% %TIME%\"\r\n"
        "\"%ComSpec%\" /d /c call \"%OOB%\\running\\%~1.cmd\" > \"%OOB%\\results\\%~1.log\" 2>&1\r\n"
        "set \"RC=%ERRORLEVEL%\"\r\n"
        "> \"%OOB%\\results\\%~1.tmp\" (\r\n"
        "  echo exit=%RC%\r\n"
        "  echo start=%START%\r\n"
        "  echo end=%DATE% %TIME%\r\n"
        ")\r\n"
        "move /y \"%OOB%\\results\\%~1.tmp\" \"%OOB%\\results\\%~1.result\" >nul\r\n"
        "del /f /q \"%OOB%\\running\\%~1.cmd\"\r\n"
        "exit /b 0\r\n";

/* The service that starts the runner (HKLM\SYSTEM\CurrentControlSet\Services\oobfirstboot). */
static int firstboot_register_service(Apply *ap, size_t index) {
        static const char key[] = "CurrentControlSet\\Services\\" FIRSTBOOT_SERVICE;
        static const struct {
                const char *name;
                RegistryType type;
                const char *text;
                uint64_t number;
        } values[] = {
                {"Type", REGISTRY_DWORD, NULL, 0x10},      /* SERVICE_WIN32_OWN_PROCESS */
                {"Start", REGISTRY_DWORD, NULL, 2},        /* SERVICE_AUTO_START */
                {"ErrorControl", REGISTRY_DWORD, NULL, 1}, /* SERVICE_ERROR_NORMAL: logged, boot goes on */
                {"ImagePath", REGISTRY_EXPAND_SZ, FIRSTBOOT_IMAGE_PATH, 0},
                {"ObjectName", REGISTRY_SZ, "LocalSystem", 0},
                {"DisplayName", REGISTRY_SZ, "oob first-boot commands", 0},
                {"Description", REGISTRY_SZ,
                 "Runs the commands oob's offline patching queued in "
                 "%SystemDrive%\\ProgramData\\oob\\firstboot\\queue "
                 "once, and records their results.",
                 0},
        };
        RegistryHive *h;
        int r;

        r = hive_get(ap, "SYSTEM", index, &h);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                char *strings[] = {(char *) values[i].text, NULL};
                RegistryValue v = {
                        .type = values[i].type,
                        .strings = strings,
                        .number = values[i].number,
                };

                r = registry_set(h, key, values[i].name, &v);
                if (r < 0)
                        return fail(ap, r, "registering the first-boot service (SYSTEM\\%s\\%s): %m", key,
                                    values[i].name);
                ap->result.registry_changes++;
        }
        return 0;
}

static int action_stage_package(Apply *ap, const PatchAction *a, size_t index) {
        _cleanup_free_ char *staged_dir = NULL, *staged = NULL, *queued = NULL, *script = NULL;
        _cleanup_close_ int fd = -EBADF;
        const char *base = strrchr(a->payload, '/') ? strrchr(a->payload, '/') + 1 : a->payload;
        const char *problem;
        uint64_t length;
        unsigned number = 0;
        FdReader reader;
        int r;

        problem = component_problem(base, strlen(base));
        if (problem)
                return fail(ap, -EINVAL, "payload '%s': its file name cannot be a Windows file name: %s",
                            a->payload, problem);
        problem = component_problem(ap->manifest->id, strlen(ap->manifest->id));
        if (problem)
                return fail(ap, -EINVAL, "the manifest id cannot be a Windows directory name: %s", problem);

        r = payload_open(ap, a->payload, &fd, &length);
        if (r < 0)
                return r;
        if (asprintf(&staged_dir, STAGED_DIR "/%s", ap->manifest->id) < 0)
                return -ENOMEM;
        staged = volume_join(staged_dir, base);
        if (!staged)
                return -ENOMEM;
        r = ntfs_volume_mkdir_p(ap->volume, staged_dir);
        if (r < 0)
                return fail(ap, r, "creating %s: %m", staged_dir);
        reader = (FdReader){.fd = fd};
        r = ntfs_volume_write_file(ap->volume, staged, fd_read, &reader);
        if (r < 0)
                return fail(ap, r, "copying payload '%s' to %s: %m", a->payload, staged);
        if (reader.read != length)
                return fail(ap, -EBADMSG, "payload '%s' changed while it was copied", a->payload);
        ap->result.files_written++;
        ap->result.bytes_written += length;

        /* The queue entry, then the runner, then the service: a queue entry
         * without a runner would never run. */
        r = firstboot_next_number(ap, &number);
        if (r < 0)
                return r;
        r = ntfs_volume_mkdir_p(ap->volume, FIRSTBOOT_DIR "/queue");
        if (r < 0)
                return fail(ap, r, "creating " FIRSTBOOT_DIR "/queue: %m");
        if (asprintf(&queued, FIRSTBOOT_DIR "/queue/%06u-%s-%zu.cmd", number, ap->manifest->id, index + 1) <
            0)
                return -ENOMEM;
        if (asprintf(&script,
                     "@echo off\r\n"
                     "rem oob first-boot command: manifest %s version %" PRIu64 ", action %zu\r\n"
                     "cd /d \"%%SystemDrive%%\\ProgramData\\oob\\staged\\%s\"\r\n"
                     "%s\r\n"
                     "exit /b %%ERRORLEVEL%%\r\n",
                     ap->manifest->id, ap->manifest->version, index + 1, ap->manifest->id, a->command) < 0)
                return -ENOMEM;
        r = write_text(ap, queued, script);
        if (r < 0)
                return r;
        r = write_text(ap, FIRSTBOOT_DIR "/run.cmd", firstboot_runner);
        if (r < 0)
                return r;
        return firstboot_register_service(ap, index);
}

/* ---- reading first-boot results offline ------------------------------------------- */

static const char *const firstboot_state_table[_FIRSTBOOT_STATE_MAX] = {
        [FIRSTBOOT_PENDING] = "pending",
        [FIRSTBOOT_INTERRUPTED] = "interrupted",
        [FIRSTBOOT_EXITED] = "exited",
};

DEFINE_STRING_TABLE_LOOKUP(firstboot_state, FirstBootState);

void firstboot_results_free(FirstBootResult *r, size_t n) {
        for (size_t i = 0; r && i < n; i++) {
                free(r[i].name);
                free(r[i].manifest);
                free(r[i].started);
                free(r[i].ended);
        }
        free(r);
}

/* "000012-<manifest id>-<action>" into its parts; false when it is not one of ours. */
static bool queue_name_parse(const char *name, char **ret_manifest, unsigned *ret_action) {
        const char *first = strchr(name, '-'), *last = strrchr(name, '-');
        unsigned action = 0;

        if (queue_number(name) == 0 || !first || last == first || !last[1])
                return false;
        for (const char *c = last + 1; *c; c++) {
                if (*c < '0' || *c > '9' || action > 100000)
                        return false;
                action = action * 10 + (unsigned) (*c - '0');
        }
        *ret_manifest = strndup(first + 1, (size_t) (last - first - 1));
        *ret_action = action;
        return true;
}

/* name without the suffix, if it has it */
static char *strip_suffix(const char *name, const char *suffix) {
        size_t n = strlen(name), k = strlen(suffix);

        if (n <= k || strcasecmp(name + n - k, suffix) != 0)
                return NULL;
        return strndup(name, n - k);
}

/* One "key=value" line of a result file (CRLF or LF), or NULL. */
static char *result_field(const char *text, const char *key) {
        size_t k = strlen(key);

        for (const char *line = text; line && *line;
             line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (strneq(line, key, k) && line[k] == '=') {
                        const char *v = line + k + 1;
                        size_t n = strcspn(v, "\r\n");
                        _cleanup_free_ char *raw = strndup(v, n);

                        if (!raw)
                                return NULL;
                        while (n > 0 && raw[n - 1] == ' ')
                                raw[--n] = 0;
                        return display(raw);
                }
        return NULL;
}

static int result_add(FirstBootResult **l, size_t *n, const char *name, FirstBootState state, int exit_code,
                      char *started, char *ended) {
        _cleanup_free_ char *manifest = NULL, *copy = NULL;
        FirstBootResult *bigger;
        unsigned action;

        if (!queue_name_parse(name, &manifest, &action))
                return 0; /* not ours: ignored */
        if (!manifest)
                return -ENOMEM;
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        bigger = reallocarray(*l, *n + 1, sizeof(FirstBootResult));
        if (!bigger)
                return -ENOMEM;
        *l = bigger;
        (*l)[(*n)++] = (FirstBootResult){
                .name = TAKE_PTR(copy),
                .manifest = TAKE_PTR(manifest),
                .action = action,
                .state = state,
                .exit_code = exit_code,
                .started = started,
                .ended = ended,
        };
        return 1;
}

static int result_compare(const void *a, const void *b) {
        return strcmp(((const FirstBootResult *) a)->name, ((const FirstBootResult *) b)->name);
}

int apply_read_firstboot_results(NtfsVolume *v, FirstBootResult **ret, size_t *ret_n) {
        static const struct {
                const char *dir, *suffix;
                FirstBootState state;
        } dirs[] = {
                {FIRSTBOOT_DIR "/queue", ".cmd", FIRSTBOOT_PENDING},
                {FIRSTBOOT_DIR "/running", ".cmd", FIRSTBOOT_INTERRUPTED},
                {FIRSTBOOT_DIR "/results", ".result", FIRSTBOOT_EXITED},
        };
        FirstBootResult *l = NULL;
        size_t n = 0;
        int r = 0;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_n, -EINVAL);

        for (size_t d = 0; d < ELEMENTSOF(dirs) && r >= 0; d++) {
                _cleanup_strv_free_ char **names = NULL;

                r = ntfs_volume_list(v, dirs[d].dir, &names);
                if (r == -ENOENT) {
                        r = 0;
                        continue;
                }
                for (char **name = names; r >= 0 && name && *name; name++) {
                        _cleanup_free_ char *base = strip_suffix(*name, dirs[d].suffix), *path = NULL,
                                            *text = NULL, *code = NULL, *started = NULL, *ended = NULL;
                        FirstBootState state = dirs[d].state;
                        int exit_code = 0;
                        size_t size;

                        if (!base)
                                continue;
                        if (state == FIRSTBOOT_EXITED) {
                                path = volume_join(dirs[d].dir, *name);
                                if (!path) {
                                        r = -ENOMEM;
                                        break;
                                }
                                r = ntfs_volume_read_file(v, path, FIRSTBOOT_RESULT_MAX, &text, &size);
                                if (r < 0)
                                        break;
                                code = result_field(text, "exit");
                                started = result_field(text, "start");
                                ended = result_field(text, "end");
                                if (!code || streq(code, "interrupted"))
                                        state = FIRSTBOOT_INTERRUPTED;
                                else
                                        exit_code = (int) strtol(code, NULL, 10);
                        }
                        r = result_add(&l, &n, base, state, exit_code, started, ended);
                        if (r > 0) {
                                started = ended = NULL; /* owned by the list now */
                                r = 0;
                        }
                }
        }
        if (r < 0) {
                firstboot_results_free(l, n);
                return r;
        }
        if (n > 1)
                qsort(l, n, sizeof(FirstBootResult), result_compare);
        *ret = l;
        *ret_n = n;
        return 0;
}

/* ---- the manifest ---------------------------------------------------------------- */

char *apply_action_describe(const PatchAction *a) {
        char *s = NULL;
        int r = -1;

        if (!a)
                return NULL;
        switch (a->type) {
        case PATCH_ACTION_EXTRACT:
                r = asprintf(&s, "extract %s to %s", a->payload, a->dest);
                break;
        case PATCH_ACTION_DELETE: {
                size_t n = strv_length(a->paths);
                if (n > 1)
                        r = asprintf(&s, "delete %s and %zu more", a->paths[0], n - 1);
                else
                        r = asprintf(&s, "delete %s", n > 0 ? a->paths[0] : "");
                break;
        }
        case PATCH_ACTION_REGISTRY_SET:
                r = asprintf(&s, "registry-set %s\\%s\\%s", a->hive, a->key, a->value_name ?: "");
                break;
        case PATCH_ACTION_REGISTRY_DELETE:
                r = asprintf(&s, "registry-delete %s\\%s%s%s", a->hive, a->key, a->value_name ? "\\" : "",
                             a->value_name ?: "");
                break;
        case PATCH_ACTION_STAGE_PACKAGE:
                r = asprintf(&s, "stage-package %s", a->payload);
                break;
        case PATCH_ACTION_OS_IMAGE:
                r = asprintf(&s, "os-image %s to slot %s", a->payload, a->slot);
                break;
        default:
                r = asprintf(&s, "action of unknown type %d", (int) a->type);
                break;
        }
        return r < 0 ? NULL : s;
}

static int apply_action(Apply *ap, const PatchAction *a, size_t index) {
        switch (a->type) {
        case PATCH_ACTION_EXTRACT:
                return action_extract(ap, a);
        case PATCH_ACTION_DELETE:
                return action_delete(ap, a);
        case PATCH_ACTION_REGISTRY_SET:
                return action_registry_set(ap, a, index);
        case PATCH_ACTION_REGISTRY_DELETE:
                return action_registry_delete(ap, a, index);
        case PATCH_ACTION_STAGE_PACKAGE:
                return action_stage_package(ap, a, index);
        case PATCH_ACTION_OS_IMAGE:
                return fail(
                        ap, -EOPNOTSUPP,
                        "os-image actions install a side-by-side OS slot, which offline apply does not do "
                        "(yet): publish the image as its own patch once slots are supported");
        default:
                return fail(ap, -EINVAL, "unknown action type");
        }
}

int apply_manifest_full(NtfsVolume *v, const PatchManifest *m, const ApplyOptions *o, ApplyResult *ret,
                        char **ret_error) {
        _cleanup_(apply_done) Apply ap = {
                .volume = v,
                .manifest = m,
                .options = o,
        };
        int r = 0;

        assert_return(v, -EINVAL);
        assert_return(m, -EINVAL);
        assert_return(o, -EINVAL);
        assert_return(m->id, -EINVAL);

        for (size_t i = 0; i < m->n_actions; i++) {
                log_debug("Applying action %zu of %s: %s", i + 1, m->id,
                          patch_action_type_to_string(m->actions[i].type) ?: "?");
                ap.result.failed_action = i;
                r = apply_action(&ap, &m->actions[i], i);
                if (r < 0)
                        break;
                ap.result.actions_done++;
        }

        /* The registry is written when every action succeeded, and success
         * is returned only after it is. */
        for (size_t i = 0; r >= 0 && i < ap.n_hives; i++) {
                r = registry_hive_commit(ap.hives[i].hive);
                if (r < 0) {
                        ap.result.failed_action = ap.hives[i].last_action;
                        r = fail(&ap, r, "writing the %s hive back: %m", ap.hives[i].name);
                }
        }

        if (r >= 0)
                ap.result.failed_action = 0;
        else
                log_debug_errno(r, "Action %zu of %s failed: %s", ap.result.failed_action + 1, m->id,
                                ap.error ?: "(no details)");
        if (ret)
                *ret = ap.result;
        if (ret_error)
                *ret_error = r < 0 ? TAKE_PTR(ap.error) : NULL;
        return r;
}

int apply_manifest(NtfsVolume *v, const PatchManifest *m, const ApplyOptions *o, ApplyResult *ret) {
        return apply_manifest_full(v, m, o, ret, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * updater/apply.c on a Windows-like disk built once per run by
 * tests/fixtures/make-windows-disk (256 MiB, GPT). Each test applies to its
 * own qcow2 overlay on that disk, through the real qemu-nbd, libntfs-3g and
 * hivex, and reads every result back with tools that share no code with
 * ours: qemu-img convert + dd to get the Windows partition out, ntfscat and
 * ntfsls to read files, hivexget to read hives. A refused apply must leave
 * the overlay identical to its base (qemu-img compare): refused before the
 * first write.
 *
 * Archives are made here with libarchive's writer (tar in every filter,
 * zip), and cabinet files by hand (libarchive cannot write them), including
 * the hostile ones.
 */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "updater.h"

#define USER "carol"

static char tmpdir[] = "/tmp/oob-test-apply.XXXXXX";
static char disk[256];         /* the pristine fixture disk, never written */
static char script[PATH_MAX];  /* tests/fixtures/make-windows-disk */
static char scratch[256];      /* per test */
static char overlay[PATH_MAX]; /* per test: scratch/disk.qcow2 on disk */
static char payloads[512];     /* per test: scratch/payloads */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

/* Run a shell command; its stdout (trimmed of the final newline) into out. */
static int run(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static int run(char *out, size_t size, const char *fmt, ...) {
        char cmd[16384];
        va_list ap;
        FILE *p;
        int status;

        va_start(ap, fmt);
        ck_assert_int_lt(vsnprintf(cmd, sizeof(cmd), fmt, ap), (int) sizeof(cmd));
        va_end(ap);

        p = popen(cmd, "r");
        ck_assert_ptr_nonnull(p);
        if (out) {
                size_t n = fread(out, 1, size - 1, p);
                out[n] = 0;
                if (n > 0 && out[n - 1] == '\n')
                        out[n - 1] = 0;
        } else {
                char buf[4096];
                while (fread(buf, 1, sizeof(buf), p) > 0)
                        ;
        }
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *scratch_path(const char *name) {
        static char buf[8][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, PATH_MAX, "%s/%s", scratch, name);
        return p;
}

/* tests/fixtures/make-windows-disk from the top of the tree, or above our binary. */
static void find_script(void) {
        char exe[PATH_MAX];
        ssize_t n;

        if (access("tests/fixtures/make-windows-disk", X_OK) == 0) {
                ck_assert_ptr_nonnull(realpath("tests/fixtures/make-windows-disk", script));
                return;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = 0;
        for (char *slash = strrchr(exe, '/'); slash; slash = strrchr(exe, '/')) {
                *slash = 0;
                if (snprintf(script, sizeof(script), "%s/tests/fixtures/make-windows-disk", exe) >=
                    (int) sizeof(script))
                        continue;
                if (access(script, X_OK) == 0)
                        return;
        }
        ck_abort_msg("tests/fixtures/make-windows-disk not found (run the tests from the top of the tree)");
}

static void make_disk(const char *path, const char *variant) {
        char out[4096];

        ck_assert_msg(run(out, sizeof(out), "'%s' '%s' --size 256M --user " USER " --variant %s 2>&1",
                          script, path, variant) == 0,
                      "make-windows-disk failed: %s", out);
}

/* Once per run (unchecked fixture, in the parent): the disk. */
static void suite_setup(void) {
        if (disk[0])
                return;
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
        find_script();
        snprintf(disk, sizeof(disk), "%s/disk.qcow2", tmpdir);
        make_disk(disk, "clean");
}

static void suite_teardown(void) {
        if (getenv("KEEP_SCRATCH"))
                return;
        if (disk[0])
                nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Per test: a scratch dir, an overlay on the fixture disk, a payload dir. */
static void setup(void) {
        snprintf(scratch, sizeof(scratch), "%s/scratch.%d", tmpdir, (int) getpid());
        ck_assert_int_eq(mkdir(scratch, 0700), 0);
        snprintf(overlay, sizeof(overlay), "%s/disk.qcow2", scratch);
        ck_assert_int_eq(disk_create_overlay(disk, overlay), 0);
        snprintf(payloads, sizeof(payloads), "%s/payloads", scratch);
        ck_assert_int_eq(mkdir(payloads, 0700), 0);
}

static void teardown(void) {
        if (getenv("KEEP_SCRATCH"))
                return;
        nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Deterministic pseudo-random bytes (xorshift): not compressible, and a
 * misplaced block shows. */
static void fill_pattern(uint8_t *p, size_t n, uint64_t seed) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t) x;
        }
}

static void write_host_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(data, 1, size, f), size);
        ck_assert_int_eq(fclose(f), 0);
}

/* Where a payload with that target path goes in the payload dir. */
static const char *payload_file(const char *target) {
        static char buf[4][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];
        _cleanup_free_ char *name = tuf_client_target_filename(target);

        ck_assert_ptr_nonnull(name);
        ck_assert_int_lt(snprintf(p, PATH_MAX, "%s/%s", payloads, name), PATH_MAX);
        return p;
}

static uint64_t file_size(const char *path) {
        struct stat st;

        ck_assert_int_eq(stat(path, &st), 0);
        return (uint64_t) st.st_size;
}

/* ---- archives ------------------------------------------------------------------- */

typedef struct TestEntry {
        const char *name;
        unsigned type;    /* AE_IFREG when 0 */
        const char *text; /* contents, or */
        uint64_t size;    /* pattern bytes (seed = size) or zeros */
        bool zeros;
        const char *link; /* symlink target, or hard link target with hardlink */
        bool hardlink;
        bool unset_size; /* zip: no size in the header (streamed) */
} TestEntry;

typedef enum ArchiveKind { TAR, TAR_GZ, TAR_XZ, TAR_ZST, TAR_BZ2, ZIP, ZIP_STORED } ArchiveKind;

static void archive_write_freep(struct archive **a) {
        if (*a)
                archive_write_free(*a);
}

/* libarchive 3.6's writer crashes on UTF-8 names in the C locale (the
 * engine reads them in any locale): write in C.UTF-8, this thread only. */
static void uselocale_restore(locale_t *old) {
        locale_t l = uselocale(*old);

        if (l != *old && l != LC_GLOBAL_LOCALE)
                freelocale(l);
}

static void make_archive(const char *path, ArchiveKind kind, const TestEntry *entries, size_t n) {
        locale_t utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t) 0);
        _cleanup_(uselocale_restore) _unused_ locale_t old = uselocale(utf8);
        _cleanup_(archive_write_freep) struct archive *a = archive_write_new();

        ck_assert_ptr_nonnull(utf8);
        ck_assert_ptr_nonnull(a);
        switch (kind) {
        case ZIP:
        case ZIP_STORED:
                ck_assert_int_eq(archive_write_set_format_zip(a), ARCHIVE_OK);
                if (kind == ZIP_STORED)
                        ck_assert_int_eq(archive_write_zip_set_compression_store(a), ARCHIVE_OK);
                break;
        default:
                ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
                break;
        }
        switch (kind) {
        case TAR_GZ:
                ck_assert_int_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
                break;
        case TAR_XZ:
                ck_assert_int_eq(archive_write_add_filter_xz(a), ARCHIVE_OK);
                break;
        case TAR_ZST:
                ck_assert_int_eq(archive_write_add_filter_zstd(a), ARCHIVE_OK);
                break;
        case TAR_BZ2:
                ck_assert_int_eq(archive_write_add_filter_bzip2(a), ARCHIVE_OK);
                break;
        default:
                break;
        }
        ck_assert_int_eq(archive_write_open_filename(a, path), ARCHIVE_OK);

        for (size_t i = 0; i < n; i++) {
                const TestEntry *t = &entries[i];
                struct archive_entry *e = archive_entry_new();
                uint64_t size = t->text ? strlen(t->text) : t->size;
                unsigned type = t->type ?: AE_IFREG;

                ck_assert_ptr_nonnull(e);
                archive_entry_set_pathname_utf8(e, t->name);
                archive_entry_set_mtime(e, 1700000000, 0);
                if (t->hardlink) {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_hardlink(e, t->link);
                        archive_entry_set_size(e, 0);
                } else {
                        archive_entry_set_filetype(e, type);
                        archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
                        if (type == AE_IFLNK)
                                archive_entry_set_symlink(e, t->link);
                        if (type == AE_IFCHR || type == AE_IFBLK)
                                archive_entry_set_rdev(e, makedev(1, 3));
                        if (type == AE_IFREG && !t->unset_size)
                                archive_entry_set_size(e, (la_int64_t) size);
                }
                ck_assert_int_eq(archive_write_header(a, e), ARCHIVE_OK);
                if (type == AE_IFREG && !t->hardlink) {
                        if (t->text)
                                ck_assert_int_eq(archive_write_data(a, t->text, size), (la_ssize_t) size);
                        else {
                                uint8_t *data = malloc(size ?: 1);

                                ck_assert_ptr_nonnull(data);
                                if (t->zeros)
                                        memset(data, 0, size);
                                else
                                        fill_pattern(data, size, size);
                                for (uint64_t done = 0; done < size;) {
                                        size_t k = (size_t) MIN(size - done, (uint64_t) 1 << 20);
                                        ck_assert_int_eq(archive_write_data(a, data + done, k),
                                                         (la_ssize_t) k);
                                        done += k;
                                }
                                free(data);
                        }
                }
                archive_entry_free(e);
        }
        ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
}

/*
 * A cabinet file (MS-CAB, typeCompress 0: stored), written from the
 * specification's structures: CFHEADER, one CFFOLDER, a CFFILE per file
 * (names with '\', flagged UTF-8), CFDATA blocks of up to 32 KiB without
 * checksums.
 */
static void put16(uint8_t **p, uint16_t v) {
        (*p)[0] = (uint8_t) v;
        (*p)[1] = (uint8_t) (v >> 8);
        *p += 2;
}

static void put32(uint8_t **p, uint32_t v) {
        put16(p, (uint16_t) v);
        put16(p, (uint16_t) (v >> 16));
}

static void make_cab(const char *path, const char *const *names, const char *const *texts, size_t n) {
        size_t data_total = 0, files_size = 0, blocks, size;
        _cleanup_free_ uint8_t *cab = NULL, *data = NULL;
        uint8_t *p;
        uint32_t coff_files = 36 + 8, coff_data;

        for (size_t i = 0; i < n; i++) {
                data_total += strlen(texts[i]);
                files_size += 16 + strlen(names[i]) + 1;
        }
        data = malloc(data_total + 1);
        ck_assert_ptr_nonnull(data);
        data_total = 0;
        for (size_t i = 0; i < n; i++) {
                memcpy(data + data_total, texts[i], strlen(texts[i]));
                data_total += strlen(texts[i]);
        }
        blocks = (data_total + 32767) / 32768;
        coff_data = coff_files + (uint32_t) files_size;
        size = coff_data + blocks * 8 + data_total;
        cab = calloc(1, size);
        ck_assert_ptr_nonnull(cab);
        p = cab;

        memcpy(p, "MSCF", 4);
        p += 4;
        put32(&p, 0);
        put32(&p, (uint32_t) size);
        put32(&p, 0);
        put32(&p, coff_files);
        put32(&p, 0);
        *p++ = 3;                /* versionMinor */
        *p++ = 1;                /* versionMajor */
        put16(&p, 1);            /* cFolders */
        put16(&p, (uint16_t) n); /* cFiles */
        put16(&p, 0);            /* flags */
        put16(&p, 0x4242);       /* setID */
        put16(&p, 0);            /* iCabinet */

        put32(&p, coff_data); /* CFFOLDER */
        put16(&p, (uint16_t) blocks);
        put16(&p, 0); /* typeCompress: none */

        for (size_t i = 0, off = 0; i < n; i++) {
                put32(&p, (uint32_t) strlen(texts[i]));
                put32(&p, (uint32_t) off);
                put16(&p, 0); /* iFolder */
                put16(&p, (uint16_t) ((2026 - 1980) << 9 | 1 << 5 | 1));
                put16(&p, 0);
                put16(&p, 0x20 | 0x80); /* archive, name is UTF-8 */
                memcpy(p, names[i], strlen(names[i]) + 1);
                p += strlen(names[i]) + 1;
                off += strlen(texts[i]);
        }
        for (size_t b = 0; b < blocks; b++) {
                size_t k = MIN(data_total - b * 32768, (size_t) 32768);

                put32(&p, 0); /* no checksum */
                put16(&p, (uint16_t) k);
                put16(&p, (uint16_t) k);
                memcpy(p, data + b * 32768, k);
                p += k;
        }
        ck_assert_uint_eq((size_t) (p - cab), size);
        write_host_file(path, cab, size);
}

/* ---- applying ------------------------------------------------------------------- */

static PatchManifest *parse(const char *yaml) {
        _cleanup_free_ char *err = NULL;
        PatchManifest *m = NULL;

        ck_assert_msg(patch_manifest_parse(yaml, strlen(yaml), &m, &err) == 0, "%s\n%s", err ?: "", yaml);
        return m;
}

/* What oobctl apply and oobd do on the staging overlay: open it writable,
 * find Windows, mount NTFS writable, apply, close (flushing). The signed
 * payloads are given as (path, length) pairs; NULL: none (admin use). */
typedef struct Signed {
        const char *path;
        uint64_t length;
} Signed;

static int apply_yaml(const char *image, const char *yaml, const Signed *sig, size_t n_sig, ApplyResult *ret,
                      char **ret_error) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = parse(yaml);
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        TufTargetFile targets[8] = {};
        const TufTargetFile *list[8];
        VolumeRefusal refusal = VOLUME_OK;
        Partition p;
        int r;

        ck_assert_uint_le(n_sig, ELEMENTSOF(targets));
        for (size_t i = 0; i < n_sig; i++) {
                targets[i].path = (char *) sig[i].path;
                targets[i].length = sig[i].length;
                list[i] = &targets[i];
        }
        ApplyOptions o = {
                .payload_dir = payloads,
                .payloads = list,
                .n_payloads = n_sig,
        };

        ck_assert_int_eq(offline_disk_open(image, true, false, &d), 0);
        ck_assert_int_eq(disk_find_windows(d, &p), 0);
        r = ntfs_volume_open(d, &p, true, &v, &refusal);
        ck_assert_msg(r == 0, "ntfs_volume_open: %d (%s)", r, volume_refusal_to_string(refusal));
        return apply_manifest_full(v, m, &o, ret, ret_error);
}

/* Apply and expect success. */
static ApplyResult apply_ok(const char *yaml, const Signed *sig, size_t n_sig) {
        _cleanup_free_ char *err = NULL;
        ApplyResult res = {};
        int r = apply_yaml(overlay, yaml, sig, n_sig, &res, &err);

        ck_assert_msg(r == 0, "apply failed: %d (%s), action %zu: %s", r, strerror(-r),
                      res.failed_action + 1, err ?: "(no message)");
        ck_assert_ptr_null(err);
        return res;
}

/* Apply and expect error r at action index `action`, with the message
 * containing needle, and the overlay still identical to the fixture disk. */
static void apply_refused(const char *yaml, const Signed *sig, size_t n_sig, int expect, size_t action,
                          const char *needle) {
        _cleanup_free_ char *err = NULL;
        ApplyResult res = {};
        char out[4096];
        int r = apply_yaml(overlay, yaml, sig, n_sig, &res, &err);

        ck_assert_msg(r == expect, "expected %d (%s), got %d (%s): %s", expect, strerror(-expect), r,
                      strerror(-r), err ?: "(no message)");
        ck_assert_uint_eq(res.failed_action, action);
        ck_assert_uint_eq(res.actions_done, action);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strstr(err, needle), "message '%s' lacks '%s'", err, needle);
        ck_assert_msg(run(out, sizeof(out), "qemu-img compare -f qcow2 -F qcow2 '%s' '%s' 2>&1", disk,
                          overlay) == 0,
                      "the refused apply wrote to the disk: %s", out);
}

/* ---- reading back, independently ---------------------------------------------------- */

/* The Windows partition (GPT partition 3) of the overlay as a raw file,
 * for ntfscat and ntfsls. */
static const char *volume_raw(void) {
        static char raw[PATH_MAX];

        snprintf(raw, sizeof(raw), "%s/volume.raw", scratch);

        ck_assert_int_eq(run(NULL, 0,
                             "set -e; r='%s/disk.raw'; qemu-img convert -f qcow2 -O raw '%s' $r; "
                             "set -- $(sgdisk -i 3 $r | awk '/^First sector:/{s=$3}/^Partition "
                             "size:/{n=$3}END{print s, n}'); "
                             "dd if=$r of='%s' bs=1M iflag=skip_bytes,count_bytes skip=$(($1 * 512)) "
                             "count=$(($2 * 512)) status=none; rm -f $r",
                             scratch, overlay, raw),
                         0);
        return raw;
}

/* ntfscat RAW PATH > scratch/NAME; 0 or ntfscat's failure. */
static int ntfscat(const char *raw, const char *path, const char *name) {
        return run(NULL, 0, "ntfscat '%s' '%s' > '%s' 2>/dev/null", raw, path, scratch_path(name));
}

static void assert_file_text(const char *raw, const char *path, const char *text) {
        _cleanup_free_ char *data = NULL;
        size_t size;

        ck_assert_msg(ntfscat(raw, path, "cat.out") == 0, "ntfscat %s failed", path);
        ck_assert_int_eq(read_full_file(scratch_path("cat.out"), 1 << 20, &data, &size), 0);
        ck_assert_msg(size == strlen(text) && memcmp(data, text, size) == 0, "%s holds '%s', expected '%s'",
                      path, data, text);
}

/* A file's bytes are the pattern of that size. */
static void assert_file_pattern(const char *raw, const char *path, uint64_t size) {
        _cleanup_free_ char *data = NULL;
        _cleanup_free_ uint8_t *want = malloc(size ?: 1);
        size_t got;

        ck_assert_ptr_nonnull(want);
        fill_pattern(want, size, size);
        ck_assert_msg(ntfscat(raw, path, "cat.out") == 0, "ntfscat %s failed", path);
        ck_assert_int_eq(read_full_file(scratch_path("cat.out"), 64 << 20, &data, &got), 0);
        ck_assert_uint_eq(got, size);
        ck_assert_msg(memcmp(data, want, size) == 0, "%s has the wrong bytes", path);
}

static void assert_absent(const char *raw, const char *path) {
        ck_assert_msg(ntfscat(raw, path, "cat.out") != 0, "%s exists", path);
}

/* A hive of the overlay, extracted to scratch/NAME. */
static const char *hive_out(const char *raw, const char *path, const char *name) {
        ck_assert_msg(ntfscat(raw, path, name) == 0, "ntfscat %s failed", path);
        return scratch_path(name);
}

/* hivexget FILE KEY [NAME]: 0 and its output, or its failure. */
static int hivexget(char *out, size_t size, const char *file, const char *key, const char *name) {
        return run(out, size, "hivexget '%s' '%s' %s%s%s 2>/dev/null", file, key, name ? "'" : "",
                   name ?: "", name ? "'" : "");
}

#define HEAD "format: oob-patch/1\nid: kb-4711\nversion: 3\nactions:\n"

/* ---- extract ----------------------------------------------------------------------- */

START_TEST(test_extract_tar_gz) {
        const TestEntry entries[] = {
                {.name = "./Contoso/", .type = AE_IFDIR},
                {.name = "./Contoso/readme.txt", .text = "hello from the archive\n"},
                /* 3 MiB + 1: several 1 MiB chunks and a short one */
                {.name = "Contoso/bin/big.bin", .size = 3 * 1024 * 1024 + 1},
                {.name = "Contoso/empty.dat", .text = ""},
                {.name = "Contoso/Ünïcödé ✓.txt", .text = "utf-8"},
                /* replaces an existing file whose name differs in case */
                {.name = "system32/HAL.DLL", .text = "new hal"},
                {.name = "Contoso\\back\\slash.txt", .text = "windows separators"},
                {.name = "Contoso/deep/", .type = AE_IFDIR},
                {.name = "Contoso/deep/", .type = AE_IFDIR}, /* twice: harmless */
        };
        const char *tar = payload_file("p/contoso.tar.gz");
        const char *raw;
        ApplyResult res;
        char out[4096];

        make_archive(tar, TAR_GZ, entries, ELEMENTSOF(entries));
        res = apply_ok(HEAD "  - extract: {payload: p/contoso.tar.gz, dest: Windows}\n",
                       (Signed[]){{"p/contoso.tar.gz", file_size(tar)}}, 1);
        ck_assert_uint_eq(res.actions_done, 1);
        ck_assert_uint_eq(res.files_written, 6);
        ck_assert_uint_eq(res.bytes_written, strlen("hello from the archive\n") + 3 * 1024 * 1024 + 1 +
                                                     strlen("utf-8") + strlen("new hal") +
                                                     strlen("windows separators"));

        raw = volume_raw();
        assert_file_text(raw, "Windows/Contoso/readme.txt", "hello from the archive\n");
        assert_file_pattern(raw, "Windows/Contoso/bin/big.bin", 3 * 1024 * 1024 + 1);
        assert_file_text(raw, "Windows/Contoso/empty.dat", "");
        assert_file_text(raw, "Windows/Contoso/Ünïcödé ✓.txt", "utf-8");
        assert_file_text(raw, "Windows/Contoso/back/slash.txt", "windows separators");
        /* The existing file keeps its name; no second file appeared. */
        assert_file_text(raw, "Windows/System32/hal.dll", "new hal");
        ck_assert_int_eq(run(out, sizeof(out),
                             "ntfsls '%s' -p /Windows | grep -v '^\\.\\.\\?$' | sort | tr '\\n' ' '", raw),
                         0);
        ck_assert_str_eq(out, "Boot Contoso System32 Temp explorer.exe ");
        ck_assert_int_eq(
                run(out, sizeof(out), "ntfsls '%s' -p /Windows/System32 | grep -ic '^hal.dll$'", raw), 0);
        ck_assert_str_eq(out, "1");
        ck_assert_int_eq(run(out, sizeof(out),
                             "ntfsls '%s' -p /Windows/Contoso/deep | grep -v '^\\.\\.\\?$' | wc -l", raw),
                         0);
        ck_assert_str_eq(out, "0");
        /* The rest of the volume is intact. */
        ck_assert_int_eq(
                run(out, sizeof(out), "ntfscat '%s' Windows/System32/ntoskrnl.exe | head -c 2", raw), 0);
        ck_assert_str_eq(out, "MZ");
}
END_TEST

/* Every tar filter, zip (deflated and stored, with a streamed entry whose
 * header has no size), and a cabinet file; dest "." is the volume root. */
START_TEST(test_extract_formats) {
        static const struct {
                ArchiveKind kind;
                const char *target;
        } kinds[] = {
                {TAR, "p/a.tar"},         {TAR_XZ, "p/a.tar.xz"}, {TAR_ZST, "p/a.tar.zst"},
                {TAR_BZ2, "p/a.tar.bz2"}, {ZIP, "p/a.zip"},       {ZIP_STORED, "p/stored.zip"},
        };
        static const char *const cab_names[] = {"Cab\\one.txt", "Cab\\sub\\two.bin"};
        char two[70000], yaml[4096], path[256], text[256];
        const char *cab_texts[] = {"one from a cabinet", two};
        Signed sig[ELEMENTSOF(kinds) + 1];
        size_t k = 0;
        const char *raw;

        k += (size_t) snprintf(yaml, sizeof(yaml), "%s", HEAD);
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                TestEntry e[2] = {
                        {.name = path, .text = text},
                        {.name = "Formats/zip-streamed.txt",
                         .text = "no size in the header",
                         .unset_size = true},
                };

                snprintf(path, sizeof(path), "Formats/%zu.txt", i);
                snprintf(text, sizeof(text), "format %zu: %s", i, kinds[i].target);
                make_archive(payload_file(kinds[i].target), kinds[i].kind, e, kinds[i].kind == ZIP ? 2 : 1);
                sig[i] = (Signed){kinds[i].target, file_size(payload_file(kinds[i].target))};
                k += (size_t) snprintf(yaml + k, sizeof(yaml) - k, "  - extract: {payload: %s, dest: .}\n",
                                       kinds[i].target);
        }
        /* Two CFDATA blocks for the second file. */
        for (size_t i = 0; i < sizeof(two) - 1; i++)
                two[i] = (char) ('a' + i % 26);
        two[sizeof(two) - 1] = 0;
        make_cab(payload_file("p/a.cab"), cab_names, cab_texts, 2);
        sig[ELEMENTSOF(kinds)] = (Signed){"p/a.cab", file_size(payload_file("p/a.cab"))};
        snprintf(yaml + k, sizeof(yaml) - k, "  - extract: {payload: p/a.cab, dest: 'Program Files'}\n");

        ck_assert_uint_eq(apply_ok(yaml, sig, ELEMENTSOF(sig)).actions_done, ELEMENTSOF(kinds) + 1);

        raw = volume_raw();
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                snprintf(path, sizeof(path), "Formats/%zu.txt", i);
                snprintf(text, sizeof(text), "format %zu: %s", i, kinds[i].target);
                assert_file_text(raw, path, text);
        }
        assert_file_text(raw, "Formats/zip-streamed.txt", "no size in the header");
        assert_file_text(raw, "Program Files/Cab/one.txt", "one from a cabinet");
        assert_file_text(raw, "Program Files/Cab/sub/two.bin", two);
}
END_TEST

/* A payload not listed as signed (admin use) may sit under its plain path;
 * a signed one must have its signed length. */
START_TEST(test_payload_lookup) {
        const TestEntry e[] = {{.name = "x.txt", .text = "plain path"}};
        const char *raw;

        ck_assert_int_eq(mkdir(scratch_path("payloads/local"), 0700), 0);
        make_archive(scratch_path("payloads/local/x.tar"), TAR, e, 1);
        apply_ok(HEAD "  - extract: {payload: local/x.tar, dest: Temp}\n", NULL, 0);
        raw = volume_raw();
        assert_file_text(raw, "Temp/x.txt", "plain path");
}
END_TEST

START_TEST(test_payload_length) {
        const TestEntry e[] = {{.name = "x.txt", .text = "x"}};
        const char *tar = payload_file("p/x.tar");

        make_archive(tar, TAR, e, 1);
        apply_refused(HEAD "  - extract: {payload: p/x.tar, dest: Temp}\n",
                      (Signed[]){{"p/x.tar", file_size(tar) + 1}}, 1, -EBADMSG, 0, "signed length");
        /* Signed payloads are only looked up under their encoded name. */
        ck_assert_int_eq(mkdir(scratch_path("payloads/p"), 0700), 0);
        ck_assert_int_eq(rename(tar, scratch_path("payloads/p/x.tar")), 0);
        apply_refused(HEAD "  - extract: {payload: p/x.tar, dest: Temp}\n",
                      (Signed[]){{"p/x.tar", file_size(scratch_path("payloads/p/x.tar"))}}, 1, -ENOENT, 0,
                      "not found");
        /* Not an archive at all. */
        write_host_file(payload_file("p/junk.tar"), "just text, no archive\n", 22);
        apply_refused(HEAD "  - extract: {payload: p/junk.tar, dest: Temp}\n", NULL, 0, -EPROTO, 0,
                      "damaged or unsupported archive");
}
END_TEST

/* ---- hostile archives: each refused, the disk untouched ------------------------------ */

typedef struct Hostile {
        const char *what;
        ArchiveKind kind;
        TestEntry entries[3];
        size_t n;
        const char *max_size;   /* extract's max-size, or NULL */
        uint64_t signed_length; /* 0: the file's */
        int error;
        const char *needle;
} Hostile;

#define MiB (UINT64_C(1024) * 1024)

static const Hostile hostile[] = {
        /* A good entry first: refused archives must not be half written. */
        {"traversal",
         TAR,
         {{.name = "good.txt", .text = "g"}, {.name = "../x", .text = "x"}},
         2,
         NULL,
         0,
         -EPROTO,
         "'..' are not allowed"},
        {"nested traversal", TAR, {{.name = "a/../../x", .text = "x"}}, 1, NULL, 0, -EPROTO, "'..'"},
        {"absolute",
         TAR,
         {{.name = "good.txt", .text = "g"}, {.name = "/etc/x", .text = "x"}},
         2,
         NULL,
         0,
         -EPROTO,
         "absolute names"},
        {"absolute backslash",
         ZIP,
         {{.name = "\\Windows\\x", .text = "x"}},
         1,
         NULL,
         0,
         -EPROTO,
         "absolute names"},
        {"drive letter", TAR, {{.name = "C:\\x", .text = "x"}}, 1, NULL, 0, -EPROTO, "drive letters"},
        {"stream", ZIP, {{.name = "a.txt:evil", .text = "x"}}, 1, NULL, 0, -EPROTO, "streams"},
        {"symlink",
         TAR,
         {{.name = "good.txt", .text = "g"}, {.name = "l", .type = AE_IFLNK, .link = "/etc"}},
         2,
         NULL,
         0,
         -EPROTO,
         "symbolic links"},
        {"zip symlink",
         ZIP,
         {{.name = "l", .type = AE_IFLNK, .link = "../../x"}},
         1,
         NULL,
         0,
         -EPROTO,
         "symbolic links"},
        {"hardlink",
         TAR,
         {{.name = "good.txt", .text = "g"}, {.name = "h", .hardlink = true, .link = "good.txt"}},
         2,
         NULL,
         0,
         -EPROTO,
         "hard links"},
        {"char device", TAR, {{.name = "null", .type = AE_IFCHR}}, 1, NULL, 0, -EPROTO, "device files"},
        {"block device", TAR, {{.name = "sda", .type = AE_IFBLK}}, 1, NULL, 0, -EPROTO, "device files"},
        {"fifo",
         TAR,
         {{.name = "good.txt", .text = "g"}, {.name = "fifo", .type = AE_IFIFO}},
         2,
         NULL,
         0,
         -EPROTO,
         "FIFOs"},
        {"duplicate",
         TAR,
         {{.name = "A.dll", .text = "a"}, {.name = "a.dll", .text = "b"}},
         2,
         NULL,
         0,
         -EPROTO,
         "case-insensitively"},
        {"duplicate non-ASCII",
         ZIP,
         {{.name = "dir/Ärger.txt", .text = "a"}, {.name = "DIR/äRGER.TXT", .text = "b"}},
         2,
         NULL,
         0,
         -EPROTO,
         "same file"},
        {"file and directory",
         TAR,
         {{.name = "x", .text = "a"}, {.name = "X/y", .text = "b"}},
         2,
         NULL,
         0,
         -EPROTO,
         "also used as a directory"},
        {"reserved name",
         TAR,
         {{.name = "dir/con.txt", .text = "x"}},
         1,
         NULL,
         0,
         -EPROTO,
         "Windows reserves"},
        {"trailing dot", TAR, {{.name = "dir./x", .text = "x"}}, 1, NULL, 0, -EPROTO, "ending in a dot"},
        {"wildcard", TAR, {{.name = "a*b", .text = "x"}}, 1, NULL, 0, -EPROTO, "< > \" | ? *"},
        {"control character",
         TAR,
         {{.name = "a\nb", .text = "x"}},
         1,
         NULL,
         0,
         -EPROTO,
         "control characters"},
        {"empty component", TAR, {{.name = "a//b", .text = "x"}}, 1, NULL, 0, -EPROTO, "empty path"},
        /* 100 MiB of zeros compress to ~100 KiB: over a 1 MiB max-size... */
        {"bomb over max-size",
         TAR_GZ,
         {{.name = "zeros", .size = 100 * MiB, .zeros = true}},
         1,
         "1M",
         0,
         -EFBIG,
         "unpacks to more than 1048576 bytes"},
        /* ...and over 32 times its signed length without one... */
        {"bomb over the ratio",
         TAR_GZ,
         {{.name = "zeros", .size = 100 * MiB, .zeros = true}},
         1,
         NULL,
         0,
         -EFBIG,
         "unpacks to more than"},
        /* ...also when its local header does not say (zip, data descriptor). */
        {"streamed bomb",
         ZIP,
         {{.name = "good.txt", .text = "g"},
          {.name = "zeros", .size = 100 * MiB, .zeros = true, .unset_size = true}},
         2,
         "2M",
         0,
         -EFBIG,
         "unpacks to more than 2097152 bytes"},
};

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/* Rewrite the uncompressed size of a one-entry zip in its local header,
 * data descriptor and central directory: a header that lies. */
static void zip_lie(const char *path, uint32_t size) {
        _cleanup_free_ char *data = NULL;
        size_t n;
        uint8_t *d, *dd = NULL, *cd = NULL;

        ck_assert_int_eq(read_full_file(path, 64 << 20, &data, &n), 0);
        d = (uint8_t *) data;
        ck_assert_int_eq(get32(d), 0x04034b50);
        for (size_t i = 30; i + 4 <= n; i++) {
                if (get32(d + i) == 0x08074b50)
                        dd = d + i;
                if (get32(d + i) == 0x02014b50)
                        cd = d + i;
        }
        ck_assert_ptr_nonnull(dd);
        ck_assert_ptr_nonnull(cd);
        ck_assert_uint_eq(get32(cd + 24), get32(dd + 12));
        for (unsigned k = 0; k < 4; k++)
                d[22 + k] = dd[12 + k] = cd[24 + k] = (uint8_t) (size >> (8 * k));
        write_host_file(path, data, n);
}

START_TEST(test_hostile) {
        const Hostile *h = &hostile[_i];
        const char *target = h->kind == ZIP ? "p/evil.zip" : "p/evil.tar";
        char yaml[1024];

        make_archive(payload_file(target), h->kind, h->entries, h->n);
        snprintf(yaml, sizeof(yaml), HEAD "  - extract: {payload: %s, dest: Windows%s%s}\n", target,
                 h->max_size ? ", max-size: " : "", h->max_size ?: "");
        apply_refused(yaml, (Signed[]){{target, h->signed_length ?: file_size(payload_file(target))}}, 1,
                      h->error, 0, h->needle);
}
END_TEST

/* A bomb whose headers lie (1000 bytes, in the local header, the data
 * descriptor and the central directory): the bytes actually decompressed
 * are what counts. */
START_TEST(test_lying_bomb) {
        const TestEntry e[] = {{.name = "zeros", .size = 100 * MiB, .zeros = true}};

        make_archive(payload_file("p/liar.zip"), ZIP, e, 1);
        zip_lie(payload_file("p/liar.zip"), 1000);
        apply_refused(HEAD "  - extract: {payload: p/liar.zip, dest: Windows, max-size: 2M}\n", NULL, 0,
                      -EFBIG, 0, "unpacks to more than 2097152 bytes");
}
END_TEST

/* A cabinet file names its files with '\': traversal in that spelling. */
START_TEST(test_hostile_cab) {
        static const char *const names[] = {"ok.txt", "..\\..\\evil.txt"};
        static const char *const texts[] = {"ok", "evil"};

        make_cab(payload_file("p/evil.cab"), names, texts, 2);
        apply_refused(HEAD "  - extract: {payload: p/evil.cab, dest: Windows}\n", NULL, 0, -EPROTO, 0,
                      "'..' are not allowed");
}
END_TEST

/* More entries than the cap: refused before anything is written. */
START_TEST(test_too_many_entries) {
        _cleanup_(archive_write_freep) struct archive *a = archive_write_new();
        const char *tar = payload_file("p/many.tar.gz");

        ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        ck_assert_int_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        ck_assert_int_eq(archive_write_open_filename(a, tar), ARCHIVE_OK);
        for (unsigned i = 0; i <= 100000; i++) {
                struct archive_entry *e = archive_entry_new();
                char name[32];

                snprintf(name, sizeof(name), "d%u/", i);
                archive_entry_set_pathname(e, name);
                archive_entry_set_filetype(e, AE_IFDIR);
                archive_entry_set_perm(e, 0755);
                ck_assert_int_eq(archive_write_header(a, e), ARCHIVE_OK);
                archive_entry_free(e);
        }
        ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
        apply_refused(HEAD "  - extract: {payload: p/many.tar.gz, dest: Windows}\n", NULL, 0, -EFBIG, 0,
                      "more than 100000 entries");
}
END_TEST

/* Deep names cost memory for every parent: 70 names of 1000 levels each
 * (200 KiB of names) would keep 70 MB of parents. */
START_TEST(test_deep_names) {
        _cleanup_(archive_write_freep) struct archive *a = archive_write_new();
        const char *tar = payload_file("p/deep.tar.gz");
        char name[2100];

        ck_assert_int_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        ck_assert_int_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        ck_assert_int_eq(archive_write_open_filename(a, tar), ARCHIVE_OK);
        for (unsigned i = 0; i < 70; i++) {
                struct archive_entry *e = archive_entry_new();
                size_t k = (size_t) snprintf(name, sizeof(name), "d%u", i);

                for (unsigned j = 0; j < 1000; j++)
                        k += (size_t) snprintf(name + k, sizeof(name) - k, "/x");
                archive_entry_set_pathname(e, name);
                archive_entry_set_filetype(e, AE_IFDIR);
                archive_entry_set_perm(e, 0755);
                ck_assert_int_eq(archive_write_header(a, e), ARCHIVE_OK);
                archive_entry_free(e);
        }
        ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
        apply_refused(HEAD "  - extract: {payload: p/deep.tar.gz, dest: Windows}\n", NULL, 0, -EFBIG, 0,
                      "too many or too deep");
}
END_TEST

/* A later action failing fails the apply, and names its action; changes of
 * earlier actions are left on the overlay for the caller to discard, but
 * the registry is not written. */
START_TEST(test_later_action_fails) {
        const TestEntry good[] = {{.name = "good.txt", .text = "g"}};
        const TestEntry evil[] = {{.name = "../evil.txt", .text = "e"}};
        _cleanup_free_ char *err = NULL;
        ApplyResult res = {};
        const char *raw;
        char out[256];

        make_archive(payload_file("p/good.tar"), TAR, good, 1);
        make_archive(payload_file("p/evil.tar"), TAR, evil, 1);
        ck_assert_int_eq(apply_yaml(overlay,
                                    HEAD "  - registry-set: {hive: SOFTWARE, key: Contoso, name: v, type: "
                                         "REG_DWORD, value: 1}\n"
                                         "  - extract: {payload: p/good.tar, dest: Temp}\n"
                                         "  - extract: {payload: p/evil.tar, dest: Temp}\n",
                                    NULL, 0, &res, &err),
                         -EPROTO);
        ck_assert_uint_eq(res.failed_action, 2);
        ck_assert_uint_eq(res.actions_done, 2);
        ck_assert_uint_eq(res.files_written, 1);
        ck_assert_ptr_nonnull(strstr(err, "payload 'p/evil.tar': archive entry '../evil.txt'"));
        raw = volume_raw();
        assert_file_text(raw, "Temp/good.txt", "g");
        assert_absent(raw, "evil.txt");
        ck_assert_int_ne(hivexget(out, sizeof(out),
                                  hive_out(raw, "Windows/System32/config/SOFTWARE", "SOFTWARE"), "Contoso",
                                  "v"),
                         0);
}
END_TEST

/* ---- delete ------------------------------------------------------------------- */

START_TEST(test_delete) {
        ApplyResult res;
        const char *raw;
        char out[4096];

        /* Case-insensitive, missing files fine (counted as not deleted). */
        res = apply_ok(
                HEAD
                "  - delete: [windows/system32/drivers/DISK.SYS, 'Windows\\explorer.exe', Windows/none.dll, "
                "Nowhere/x.dll]\n",
                NULL, 0);
        ck_assert_uint_eq(res.files_deleted, 2);
        raw = volume_raw();
        assert_absent(raw, "Windows/System32/drivers/disk.sys");
        assert_absent(raw, "Windows/explorer.exe");
        ck_assert_int_eq(
                run(out, sizeof(out),
                    "ntfsls '%s' -p /Windows/System32/drivers | grep -v '^\\.\\.\\?$' | sort | tr '\\n' ' '",
                    raw),
                0);
        ck_assert_str_eq(out, "Ntfs.sys etc ");
        ck_assert_int_eq(run(out, sizeof(out), "ntfscat '%s' Windows/System32/hal.dll | head -c 2", raw), 0);
        ck_assert_str_eq(out, "MZ");
}
END_TEST

START_TEST(test_delete_directory_refused) {
        /* On a fresh overlay: the refused delete comes after a first one
         * that worked, so the overlay changed; only the error is checked. */
        _cleanup_free_ char *err = NULL;
        ApplyResult res = {};

        ck_assert_int_eq(apply_yaml(overlay, HEAD "  - delete: [Windows/Temp]\n", NULL, 0, &res, &err),
                         -EISDIR);
        ck_assert_uint_eq(res.failed_action, 0);
        ck_assert_ptr_nonnull(strstr(err, "Windows/Temp is a directory"));
}
END_TEST

/* ---- registry ------------------------------------------------------------------ */

START_TEST(test_registry_set) {
        const char *raw, *system, *software, *ntuser;
        ApplyResult res;
        char out[4096];

        res = apply_ok(
                HEAD
                "  - registry-set: {hive: SYSTEM, key: 'ControlSet001\\Services\\Contoso', name: Start, "
                "type: REG_DWORD, value: 3}\n"
                "  - registry-set: {hive: SYSTEM, key: 'ControlSet001\\Services\\Contoso', name: ImagePath, "
                "type: REG_EXPAND_SZ, value: '%SystemRoot%\\contoso.sys'}\n"
                "  - registry-set: {hive: SYSTEM, key: 'ControlSet001\\Services\\disk', name: Start, type: "
                "REG_DWORD, value: 4}\n"
                "  - registry-set: {hive: SOFTWARE, key: 'Contoso\\Agent', name: Name, type: REG_SZ, value: "
                "'Grüße'}\n"
                "  - registry-set: {hive: SOFTWARE, key: 'Contoso\\Agent', name: '', type: REG_SZ, value: "
                "default}\n"
                "  - registry-set: {hive: SOFTWARE, key: 'Contoso\\Agent', name: Servers, type: "
                "REG_MULTI_SZ, value: [a.example, b.example]}\n"
                "  - registry-set: {hive: SOFTWARE, key: 'Contoso\\Agent', name: Big, type: REG_QWORD, "
                "value: 0x0123456789abcdef}\n"
                "  - registry-set: {hive: SOFTWARE, key: 'Contoso\\Agent', name: Blob, type: REG_BINARY, "
                "value: '01,02,ff'}\n"
                "  - registry-set: {hive: 'NTUSER:" USER
                "', key: 'Control Panel\\Desktop', name: Wallpaper, type: REG_SZ, value: 'C:\\w.jpg'}\n",
                NULL, 0);
        ck_assert_uint_eq(res.registry_changes, 9);
        ck_assert_uint_eq(res.actions_done, 9);

        raw = volume_raw();
        system = hive_out(raw, "Windows/System32/config/SYSTEM", "SYSTEM");
        software = hive_out(raw, "Windows/System32/config/SOFTWARE", "SOFTWARE");
        ntuser = hive_out(raw, "Users/" USER "/NTUSER.DAT", "NTUSER.DAT");

        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\Contoso", "Start"), 0);
        ck_assert_str_eq(out, "3");
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\Contoso", "ImagePath"),
                         0);
        ck_assert_str_eq(out, "%SystemRoot%\\contoso.sys");
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\disk", "Start"), 0);
        ck_assert_str_eq(out, "4");
        /* the other values of that key are kept */
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\disk", "Group"), 0);
        ck_assert_str_eq(out, "SCSI Class");

        ck_assert_int_eq(hivexget(out, sizeof(out), software, "Contoso\\Agent", NULL), 0);
        ck_assert_msg(strstr(out, "\"@\"=\"default\""), "%s", out);
        ck_assert_msg(strstr(out, "\"Servers\"=hex(7):61,00,2e,00,65,00,78,00"), "%s", out);
        ck_assert_msg(strstr(out, "\"Big\"=hex(11):ef,cd,ab,89,67,45,23,01"), "%s", out);
        ck_assert_msg(strstr(out, "\"Blob\"=hex(3):01,02,ff"), "%s", out);
        ck_assert_int_eq(hivexget(out, sizeof(out), software, "Contoso\\Agent", "Name"), 0);
        ck_assert_str_eq(out, "Grüße");
        /* Windows' own values are still there. */
        ck_assert_int_eq(
                hivexget(out, sizeof(out), software, "Microsoft\\Windows NT\\CurrentVersion", "ProductName"),
                0);
        ck_assert_str_eq(out, "Windows 10 Pro");

        ck_assert_int_eq(hivexget(out, sizeof(out), ntuser, "Control Panel\\Desktop", "Wallpaper"), 0);
        ck_assert_str_eq(out, "C:\\w.jpg");
}
END_TEST

START_TEST(test_registry_delete) {
        const char *raw, *system;
        ApplyResult res;
        char out[4096];

        res = apply_ok(
                HEAD
                "  - registry-delete: {hive: SYSTEM, key: 'ControlSet001\\Services\\disk', name: Group}\n"
                "  - registry-delete: {hive: SYSTEM, key: 'ControlSet001\\Services\\LanmanWorkstation'}\n"
                "  - registry-delete: {hive: SYSTEM, key: 'ControlSet001\\Services\\NoSuchService'}\n"
                "  - registry-delete: {hive: SYSTEM, key: 'ControlSet001\\Services\\disk', name: "
                "NoSuchValue}\n",
                NULL, 0);
        ck_assert_uint_eq(res.registry_changes, 2);
        ck_assert_uint_eq(res.actions_done, 4);

        raw = volume_raw();
        system = hive_out(raw, "Windows/System32/config/SYSTEM", "SYSTEM");
        ck_assert_int_ne(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\disk", "Group"), 0);
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\disk", "Start"), 0);
        ck_assert_str_eq(out, "0");
        ck_assert_int_ne(
                hivexget(out, sizeof(out), system, "ControlSet001\\Services\\LanmanWorkstation", NULL), 0);
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\Ntfs", "Start"), 0);
        ck_assert_str_eq(out, "3");
}
END_TEST

START_TEST(test_registry_missing_hive) {
        /* A user without a profile: the hive file is missing. */
        _cleanup_free_ char *err = NULL;
        ApplyResult res = {};

        ck_assert_int_eq(
                apply_yaml(overlay,
                           HEAD
                           "  - registry-set: {hive: SOFTWARE, key: A, name: v, type: REG_DWORD, value: 1}\n"
                           "  - registry-set: {hive: 'NTUSER:nobody', key: A, name: v, type: REG_DWORD, "
                           "value: 1}\n",
                           NULL, 0, &res, &err),
                -ENOENT);
        ck_assert_uint_eq(res.failed_action, 1);
        ck_assert_ptr_nonnull(strstr(err, "Users/nobody/NTUSER.DAT"));
        /* Nothing committed: the disk is as it was. */
        ck_assert_int_eq(run(NULL, 0, "qemu-img compare -q '%s' '%s'", disk, overlay), 0);
}
END_TEST

/* ---- stage-package and the first-boot queue ---------------------------------------- */

static void results_read(FirstBootResult **ret, size_t *ret_n) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        Partition p;

        ck_assert_int_eq(offline_disk_open(overlay, false, false, &d), 0);
        ck_assert_int_eq(disk_find_windows(d, &p), 0);
        ck_assert_int_eq(ntfs_volume_open(d, &p, false, &v, NULL), 0);
        ck_assert_int_eq(apply_read_firstboot_results(v, ret, ret_n), 0);
}

/* What the runner would leave after a boot, written by our NTFS code. */
static void simulate_boot(const char *done, const char *result, const char *interrupted) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        char from[256], to[256];
        Partition p;

        ck_assert_int_eq(offline_disk_open(overlay, true, false, &d), 0);
        ck_assert_int_eq(disk_find_windows(d, &p), 0);
        ck_assert_int_eq(ntfs_volume_open(d, &p, true, &v, NULL), 0);
        ck_assert_int_eq(ntfs_volume_mkdir_p(v, FIRSTBOOT_DIR "/results"), 0);
        ck_assert_int_eq(ntfs_volume_mkdir_p(v, FIRSTBOOT_DIR "/running"), 0);
        snprintf(from, sizeof(from), FIRSTBOOT_DIR "/queue/%s.cmd", done);
        ck_assert_int_eq(ntfs_volume_unlink(v, from), 0);
        snprintf(to, sizeof(to), FIRSTBOOT_DIR "/results/%s.result", done);
        ck_assert_int_eq(ntfs_volume_write_buffer(v, to, result, strlen(result)), 0);
        snprintf(from, sizeof(from), FIRSTBOOT_DIR "/queue/%s.cmd", interrupted);
        snprintf(to, sizeof(to), FIRSTBOOT_DIR "/running/%s.cmd", interrupted);
        ck_assert_int_eq(ntfs_volume_rename_file(v, from, to), 0);
}

START_TEST(test_stage_package) {
        static const char msi[] = "not really an MSI, but bytes all the same\n";
        const char *raw, *system;
        FirstBootResult *results = NULL;
        size_t n = 0;
        ApplyResult res;
        char out[4096];

        write_host_file(payload_file("payloads/agent.msi"), msi, strlen(msi));
        write_host_file(payload_file("payloads/fix.cmd"), "@echo fixed\r\n", 13);
        res = apply_ok(HEAD "  - delete: [Windows/none.dll]\n"
                            "  - stage-package: {payload: payloads/agent.msi, command: 'msiexec /i "
                            "agent.msi /qn /l*v %TEMP%\\agent.log'}\n"
                            "  - stage-package: {payload: payloads/fix.cmd, command: 'call fix.cmd'}\n",
                       (Signed[]){{"payloads/agent.msi", strlen(msi)}, {"payloads/fix.cmd", 13}}, 2);
        ck_assert_uint_eq(res.actions_done, 3);

        raw = volume_raw();
        assert_file_text(raw, STAGED_DIR "/kb-4711/agent.msi", msi);
        assert_file_text(raw, STAGED_DIR "/kb-4711/fix.cmd", "@echo fixed\r\n");
        assert_file_text(raw, FIRSTBOOT_DIR "/queue/000001-kb-4711-2.cmd",
                         "@echo off\r\n"
                         "rem oob first-boot command: manifest kb-4711 version 3, action 2\r\n"
                         "cd /d \"%SystemDrive%\\ProgramData\\oob\\staged\\kb-4711\"\r\n"
                         "msiexec /i agent.msi /qn /l*v %TEMP%\\agent.log\r\n"
                         "exit /b %ERRORLEVEL%\r\n");
        ck_assert_int_eq(ntfscat(raw, FIRSTBOOT_DIR "/queue/000002-kb-4711-3.cmd", "q2"), 0);
        ck_assert_int_eq(ntfscat(raw, FIRSTBOOT_DIR "/run.cmd", "run.cmd"), 0);
        ck_assert_int_eq(run(out, sizeof(out), "grep -c 'queue' '%s'", scratch_path("run.cmd")), 0);
        /* CRLF on every line of the runner */
        ck_assert_int_eq(run(out, sizeof(out), "awk '!/\\r$/' '%s' | wc -l", scratch_path("run.cmd")), 0);
        ck_assert_str_eq(out, "0");

        system = hive_out(raw, "Windows/System32/config/SYSTEM", "SYSTEM");
        ck_assert_int_eq(
                hivexget(out, sizeof(out), system, "ControlSet001\\Services\\oobfirstboot", "Start"), 0);
        ck_assert_str_eq(out, "2");
        ck_assert_int_eq(hivexget(out, sizeof(out), system, "ControlSet001\\Services\\oobfirstboot", "Type"),
                         0);
        ck_assert_str_eq(out, "16");
        ck_assert_int_eq(
                hivexget(out, sizeof(out), system, "ControlSet001\\Services\\oobfirstboot", "ImagePath"), 0);
        ck_assert_str_eq(out, FIRSTBOOT_IMAGE_PATH);
        ck_assert_int_eq(
                hivexget(out, sizeof(out), system, "ControlSet001\\Services\\oobfirstboot", "ObjectName"),
                0);
        ck_assert_str_eq(out, "LocalSystem");

        /* Read offline: both pending. */
        results_read(&results, &n);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(results[0].name, "000001-kb-4711-2");
        ck_assert_str_eq(results[0].manifest, "kb-4711");
        ck_assert_uint_eq(results[0].action, 2);
        ck_assert_int_eq(results[0].state, FIRSTBOOT_PENDING);
        ck_assert_str_eq(results[1].name, "000002-kb-4711-3");
        ck_assert_int_eq(results[1].state, FIRSTBOOT_PENDING);
        firstboot_results_free(results, n);

        /* A boot ran the first and died in the second; then a later patch
         * queues again: its number follows the results'. */
        simulate_boot("000001-kb-4711-2",
                      "exit=1603\r\nstart=Sat 11/21/2026  3:00:01.10\r\nend=Sat 11/21/2026  3:00:09.52\r\n",
                      "000002-kb-4711-3");
        apply_ok("format: oob-patch/1\nid: next.patch\nversion: 1\nactions:\n"
                 "  - stage-package: {payload: payloads/fix.cmd, command: 'call fix.cmd'}\n",
                 NULL, 0);
        results_read(&results, &n);
        ck_assert_uint_eq(n, 3);
        ck_assert_int_eq(results[0].state, FIRSTBOOT_EXITED);
        ck_assert_int_eq(results[0].exit_code, 1603);
        ck_assert_str_eq(results[0].started, "Sat 11/21/2026  3:00:01.10");
        ck_assert_str_eq(results[0].ended, "Sat 11/21/2026  3:00:09.52");
        ck_assert_int_eq(results[1].state, FIRSTBOOT_INTERRUPTED);
        ck_assert_str_eq(results[2].name, "000003-next.patch-1");
        ck_assert_str_eq(results[2].manifest, "next.patch");
        ck_assert_int_eq(results[2].state, FIRSTBOOT_PENDING);
        ck_assert_str_eq(firstboot_state_to_string(results[1].state), "interrupted");
        firstboot_results_free(results, n);
}
END_TEST

START_TEST(test_os_image_refused) {
        write_host_file(payload_file("images/win11.qcow2"), "x", 1);
        apply_refused(HEAD "  - os-image: {payload: images/win11.qcow2, slot: b}\n", NULL, 0, -EOPNOTSUPP, 0,
                      "side-by-side");
}
END_TEST

/* ---- volumes that must not be written --------------------------------------------- */

START_TEST(test_refused_volumes) {
        static const char *const variants[] = {"hibernated", "dirty"};

        for (size_t i = 0; i < ELEMENTSOF(variants); i++) {
                _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
                NtfsVolume *v = NULL;
                VolumeRefusal refusal = VOLUME_OK;
                char image[PATH_MAX], before[128], after[128];
                Partition p;

                snprintf(image, sizeof(image), "%s/%s.qcow2", scratch, variants[i]);
                make_disk(image, variants[i]);
                ck_assert_int_eq(run(before, sizeof(before),
                                     "qemu-img convert -O raw '%s' '%s.raw' && sha256sum < '%s.raw' && rm "
                                     "-f '%s.raw'",
                                     image, image, image, image),
                                 0);

                ck_assert_int_eq(offline_disk_open(image, true, false, &d), 0);
                ck_assert_int_eq(disk_find_windows(d, &p), 0);
                ck_assert_int_eq(ntfs_volume_open(d, &p, true, &v, &refusal), -EPERM);
                ck_assert_ptr_null(v);
                ck_assert_str_eq(volume_refusal_to_string(refusal), variants[i]);
                d = offline_disk_close(d);

                ck_assert_int_eq(run(after, sizeof(after),
                                     "qemu-img convert -O raw '%s' '%s.raw' && sha256sum < '%s.raw' && rm "
                                     "-f '%s.raw'",
                                     image, image, image, image),
                                 0);
                ck_assert_str_eq(before, after);
        }
}
END_TEST

START_TEST(test_describe) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse(HEAD "  - extract: {payload: p/a.tar, dest: Windows}\n"
                           "  - delete: [a, b, c]\n"
                           "  - registry-set: {hive: SYSTEM, key: 'ControlSet001\\Services\\foo', name: "
                           "Start, type: REG_DWORD, value: 3}\n"
                           "  - registry-delete: {hive: SOFTWARE, key: 'Vendor\\Old'}\n"
                           "  - stage-package: {payload: p/agent.msi, command: x}\n");
        static const char *const want[] = {
                "extract p/a.tar to Windows",
                "delete a and 2 more",
                "registry-set SYSTEM\\ControlSet001\\Services\\foo\\Start",
                "registry-delete SOFTWARE\\Vendor\\Old",
                "stage-package p/agent.msi",
        };

        ck_assert_uint_eq(m->n_actions, ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                _cleanup_free_ char *s = apply_action_describe(&m->actions[i]);
                ck_assert_str_eq(s, want[i]);
        }
        ck_assert_int_eq(firstboot_state_from_string("exited"), FIRSTBOOT_EXITED);
        ck_assert_int_eq(firstboot_state_from_string("done"), -EINVAL);
}
END_TEST

static Suite *apply_suite(void) {
        Suite *s = suite_create("apply");
        TCase *tc;

        tc = tcase_create("pure");
        tcase_add_test(tc, test_describe);
        suite_add_tcase(s, tc);

        tc = tcase_create("disk");
        tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 180);
        tcase_add_test(tc, test_extract_tar_gz);
        tcase_add_test(tc, test_extract_formats);
        tcase_add_test(tc, test_payload_lookup);
        tcase_add_test(tc, test_payload_length);
        tcase_add_loop_test(tc, test_hostile, 0, ELEMENTSOF(hostile));
        tcase_add_test(tc, test_lying_bomb);
        tcase_add_test(tc, test_hostile_cab);
        tcase_add_test(tc, test_too_many_entries);
        tcase_add_test(tc, test_deep_names);
        tcase_add_test(tc, test_later_action_fails);
        tcase_add_test(tc, test_delete);
        tcase_add_test(tc, test_delete_directory_refused);
        tcase_add_test(tc, test_registry_set);
        tcase_add_test(tc, test_registry_delete);
        tcase_add_test(tc, test_registry_missing_hive);
        tcase_add_test(tc, test_stage_package);
        tcase_add_test(tc, test_os_image_refused);
        tcase_add_test(tc, test_refused_volumes);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(apply_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

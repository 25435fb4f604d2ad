/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The snapshot catalog against the real qemu-img: contents written with
 * qemu-io and read back with qemu-io and qemu-img compare, independently of
 * our code. Kill safety: each operation runs in a child that kills itself
 * at an injected step (OOB_TEST_CRASH_AT); the catalog must then open as
 * the old or the new state, with every listed layer reading the right data
 * and every backing pointer agreeing with the catalog.
 */

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "hv.h"
#include "recovery.h"
#include "hv/helpers-disk.h"

#define KiB 1024ULL
#define MiB (1024ULL * 1024ULL)
#define GiB (1024ULL * MiB)

/* ---- helpers ------------------------------------------------------------------ */

static void img_write(const char *img, unsigned pattern, uint64_t off, uint64_t len) {
        SH_OK("qemu-io -f qcow2 -c 'write -P 0x%02x %llu %llu' '%s' >/dev/null", pattern,
              (unsigned long long) off, (unsigned long long) len, img);
}

/* qemu-io exits 0 even when a pattern check fails: look at what it prints. */
static bool img_reads(const char *img, unsigned pattern, uint64_t off, uint64_t len) {
        const char *out = sh_output("qemu-io -r -f qcow2 -c 'read -P 0x%02x %llu %llu' '%s' 2>&1", pattern,
                                    (unsigned long long) off, (unsigned long long) len, img);
        return !strstr(out, "Pattern verification failed") && strstr(out, "read ");
}

/* The guest-visible contents of an image, as a raw file. */
static void img_dump(const char *img, const char *raw) {
        SH_OK("rm -f '%s' && qemu-img convert -U -O raw '%s' '%s'", raw, img, raw);
}

static bool img_same(const char *img, const char *raw) {
        return sh("qemu-img compare -U -q -F raw '%s' '%s' 2>/dev/null", img, raw) == 0;
}

static uint64_t blocks_of(const char *path) {
        struct stat st;

        ck_assert_int_eq(stat(path, &st), 0);
        return (uint64_t) st.st_blocks;
}

static bool exists(const char *path) {
        return access(path, F_OK) == 0;
}

/* The base image: 4 MiB, 0x11 in its first 256 KiB. Static storage. */
static const char *make_base(void) {
        static char base[PATH_MAX];

        snprintf(base, sizeof(base), "%s/base.qcow2", disk_tmpdir);
        SH_OK("qemu-img create -q -f qcow2 '%s' 4M", base);
        img_write(base, 0x11, 0, 256 * KiB);
        return base;
}

static const char *cat_dir(void) {
        return tmp_path("system");
}

static const char *cat_file(const char *name) {
        static char buf[4][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, PATH_MAX, "%s/%s", cat_dir(), name);
        return p;
}

static Catalog *open_ok(unsigned *ret_repairs) {
        Catalog *c = NULL;
        unsigned repairs = 0;

        ck_assert_int_eq(catalog_open(cat_dir(), &c, &repairs), 0);
        if (ret_repairs)
                *ret_repairs = repairs;
        return c;
}

static char *snap(Catalog *c, SnapshotReason reason, const char *label) {
        char *id = NULL;

        ck_assert_int_eq(catalog_snapshot(c, reason, label, NULL, false, &id), 0);
        ck_assert_ptr_nonnull(id);
        return id;
}

/* The sorted ids, space-separated, in static storage. */
static const char *ids_of(const Catalog *c) {
        static char buf[1024];
        const Snapshot *s;
        size_t n, k = 0;

        ck_assert_int_eq(catalog_list(c, &s, &n), 0);
        buf[0] = 0;
        for (size_t i = 0; i < n; i++)
                k += (size_t) snprintf(buf + k, sizeof(buf) - k, "%s%s", i ? " " : "", s[i].id);
        return buf;
}

/* The directory holds exactly catalog.json, the listed layers and the active overlay. */
static void assert_no_stray_files(const Catalog *c) {
        const char *out = sh_output("ls -A '%s'", cat_dir());
        char expected[4096] = "", line[PATH_MAX];
        const Snapshot *s;
        size_t n;
        char *names[512];
        size_t k = 0;

        ck_assert_int_eq(catalog_list(c, &s, &n), 0);
        names[k++] = strdup("catalog.json");
        names[k++] = strdup(strrchr(catalog_active(c), '/') + 1);
        for (size_t i = 0; i < n; i++)
                if (s[i].parent) {
                        snprintf(line, sizeof(line), "layer-%s.qcow2", s[i].id);
                        names[k++] = strdup(line);
                }
        /* ls sorts by name; so do we */
        for (size_t i = 0; i < k; i++)
                for (size_t j = i + 1; j < k; j++)
                        if (strcmp(names[j], names[i]) < 0) {
                                char *t = names[i];
                                names[i] = names[j];
                                names[j] = t;
                        }
        for (size_t i = 0; i < k; i++) {
                strcat(expected, names[i]);
                strcat(expected, "\n");
                free(names[i]);
        }
        ck_assert_str_eq(out, expected);
}

/* Each layer's backing pointer is its parent's layer; the active overlay's
 * is its parent's; qemu-img check finds nothing wrong. */
static void assert_pointers_agree(const Catalog *c) {
        const Snapshot *s, *p;
        DiskLayer *layers = NULL;
        size_t n, k = 0;

        ck_assert_int_eq(catalog_list(c, &s, &n), 0);
        for (size_t i = 0; i < n; i++) {
                if (!s[i].parent)
                        continue;
                p = catalog_get(c, s[i].parent);
                ck_assert_ptr_nonnull(p);
                ck_assert_int_eq(disk_chain_info(s[i].layer, &layers, &k), 0);
                ck_assert_uint_ge(k, 2);
                ck_assert_str_eq(layers[0].backing, p->layer);
                disk_chain_free(layers, k);
                ck_assert_int_eq(disk_check(s[i].layer), 0);
        }
        p = catalog_get(c, catalog_active_parent(c));
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(disk_chain_info(catalog_active(c), &layers, &k), 0);
        ck_assert_str_eq(layers[0].backing, p->layer);
        disk_chain_free(layers, k);
        ck_assert_int_eq(disk_check(catalog_active(c)), 0);
}

/* Run op on the catalog in a child that must die of SIGKILL at step. */
static void run_killed(const char *step, void (*op)(Catalog *c)) {
        pid_t pid;
        int status;

        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                Catalog *c = NULL;

                setenv("OOB_TEST_CRASH_AT", step, 1);
                if (catalog_open(cat_dir(), &c, NULL) < 0)
                        _exit(3);
                op(c);
                _exit(4);               /* the step was never reached */
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "step %s: child was not killed there (status 0x%x)", step, (unsigned) status);
}

/* ---- the hv addition: safe rebase ------------------------------------------- */

START_TEST(test_disk_rebase) {
        const char *a = tmp_path("a.qcow2"), *b = tmp_path("b.qcow2"), *cc = tmp_path("c.qcow2");
        const char *raw = tmp_path("c.raw");
        DiskLayer *layers = NULL;
        size_t n = 0;

        SH_OK("qemu-img create -q -f qcow2 '%s' 4M", a);
        img_write(a, 0x11, 0, 128 * KiB);
        ck_assert_int_eq(disk_create_overlay(a, b), 0);
        img_write(b, 0x22, 64 * KiB, 128 * KiB);
        ck_assert_int_eq(disk_create_overlay(b, cc), 0);
        img_write(cc, 0x33, 1 * MiB, 64 * KiB);
        img_dump(cc, raw);

        ck_assert_int_eq(disk_rebase(b, cc), -ELOOP);      /* c builds on b */
        ck_assert_int_eq(disk_rebase(a, b), -EINVAL);      /* a is no overlay */
        ck_assert_int_eq(disk_rebase(cc, tmp_path("nope")), -ENOENT);

        ck_assert_int_eq(disk_rebase(cc, a), 0);
        ck_assert(img_same(cc, raw));
        ck_assert(img_reads(cc, 0x22, 64 * KiB, 128 * KiB));
        ck_assert_int_eq(disk_chain_info(cc, &layers, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_str_eq(layers[0].backing, a);
        disk_chain_free(layers, n);
        /* b is no longer needed by c */
        ck_assert_int_eq(unlink(b), 0);
        ck_assert(img_same(cc, raw));
        ck_assert(no_children_left());
}
END_TEST

/* ---- create, snapshot, revert ------------------------------------------------ */

START_TEST(test_reason_table) {
        for (SnapshotReason r = 0; r < _SNAPSHOT_REASON_MAX; r++) {
                ck_assert_ptr_nonnull(snapshot_reason_to_string(r));
                ck_assert_int_eq(snapshot_reason_from_string(snapshot_reason_to_string(r)), r);
        }
        ck_assert_str_eq(snapshot_reason_to_string(SNAPSHOT_PRE_PATCH), "pre-patch");
        ck_assert_str_eq(snapshot_reason_to_string(SNAPSHOT_PRE_MIGRATION), "pre-migration");
        ck_assert_int_eq(snapshot_reason_from_string("nope"), -EINVAL);
        ck_assert_int_eq(snapshot_reason_from_string(NULL), -EINVAL);
}
END_TEST

START_TEST(test_create) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        Catalog *c2 = NULL;
        const char *base = make_base();
        const Snapshot *s;
        size_t n;

        mode_t old_umask = umask(022);
        struct stat st;

        ck_assert_int_eq(catalog_create(cat_dir(), base, &c), 0);
        umask(old_umask);
        /* QEMU runs as another user (libvirt-qemu) and must reach the layers. */
        ck_assert_int_eq(stat(cat_dir(), &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0711);
        ck_assert_int_eq(catalog_list(c, &s, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(s[0].id, "1");
        ck_assert_int_eq(s[0].reason, SNAPSHOT_INITIAL);
        ck_assert_str_eq(s[0].layer, base);
        ck_assert_ptr_null(s[0].parent);
        ck_assert_uint_gt(s[0].layer_size, 0);
        ck_assert_int_le(llabs(s[0].created - (int64_t) time(NULL)), 5);
        ck_assert_str_eq(catalog_active_parent(c), "1");
        ck_assert_str_eq(catalog_active(c), cat_file("active-1.qcow2"));
        ck_assert(img_reads(catalog_active(c), 0x11, 0, 256 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x00, 256 * KiB, 256 * KiB));
        ck_assert_ptr_null(catalog_last_known_good(c));
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        /* Locked while open; refused over an existing catalog. */
        ck_assert_int_eq(catalog_open(cat_dir(), &c2, NULL), -EAGAIN);
        c = catalog_free(c);
        ck_assert_int_eq(catalog_create(cat_dir(), base, &c2), -EEXIST);
        ck_assert_int_eq(catalog_create(tmp_path("other"), tmp_path("nope.qcow2"), &c2), -ENOENT);
        /* The base cannot be one of the catalog's own files. */
        SH_OK("mkdir '%s/third' && cp '%s' '%s/third/layer-9.qcow2'", disk_tmpdir, base, disk_tmpdir);
        ck_assert_int_eq(catalog_create(tmp_path("third"), tmp_path("third/layer-9.qcow2"), &c2), -EEXIST);
        ck_assert_int_eq(catalog_open(tmp_path("nothing-here"), &c2, NULL), -ENOENT);
        SH_OK("mkdir '%s'", tmp_path("empty"));
        ck_assert_int_eq(catalog_open(tmp_path("empty"), &c2, NULL), -ENOENT);
}
END_TEST

START_TEST(test_snapshot_revert) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *id2 = NULL, *id3 = NULL;
        const char *base = make_base();
        uint64_t before[3];
        const Snapshot *s;
        unsigned repairs = 99;

        ck_assert_int_eq(catalog_create(cat_dir(), base, &c), 0);
        img_write(catalog_active(c), 0x22, 512 * KiB, 64 * KiB);
        id2 = snap(c, SNAPSHOT_PRE_PATCH, "before KB5030211");
        ck_assert_str_eq(id2, "2");
        ck_assert_str_eq(catalog_active_parent(c), "2");
        ck_assert_str_eq(catalog_active(c), cat_file("active-2.qcow2"));
        ck_assert(!exists(cat_file("active-1.qcow2")));
        s = catalog_get(c, "2");
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s->parent, "1");
        ck_assert_str_eq(s->label, "before KB5030211");
        ck_assert_ptr_null(s->manifest);
        ck_assert_int_eq(s->reason, SNAPSHOT_PRE_PATCH);
        ck_assert(!s->pinned && !s->known_good);
        ck_assert_str_eq(s->layer, cat_file("layer-2.qcow2"));
        ck_assert(img_reads(s->layer, 0x22, 512 * KiB, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x22, 512 * KiB, 64 * KiB));

        img_write(catalog_active(c), 0x33, 1 * MiB, 64 * KiB);
        ck_assert_int_eq(catalog_snapshot(c, SNAPSHOT_KNOWN_GOOD, NULL, "patch-2024-05", false, &id3), 0);
        ck_assert_str_eq(id3, "3");
        ck_assert(catalog_get(c, "3")->known_good);
        ck_assert_str_eq(catalog_get(c, "3")->manifest, "patch-2024-05");
        ck_assert_str_eq(catalog_last_known_good(c)->id, "3");
        img_write(catalog_active(c), 0x44, 2 * MiB, 64 * KiB);

        /* Revert: O(1), no layer grows, the active overlay's changes are gone. */
        before[0] = blocks_of(base);
        before[1] = blocks_of(cat_file("layer-2.qcow2"));
        before[2] = blocks_of(cat_file("layer-3.qcow2"));
        ck_assert_int_eq(catalog_revert(c, "2", false), 0);
        ck_assert_str_eq(catalog_active_parent(c), "2");
        ck_assert(img_reads(catalog_active(c), 0x22, 512 * KiB, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x00, 1 * MiB, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x00, 2 * MiB, 64 * KiB));
        ck_assert_uint_eq(blocks_of(base), before[0]);
        ck_assert_uint_eq(blocks_of(cat_file("layer-2.qcow2")), before[1]);
        ck_assert_uint_eq(blocks_of(cat_file("layer-3.qcow2")), before[2]);
        ck_assert_uint_lt(blocks_of(catalog_active(c)) * 512, 1 * MiB);
        ck_assert_str_eq(ids_of(c), "1 2 3");
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        ck_assert_int_eq(catalog_revert(c, "1", false), 0);
        ck_assert(img_reads(catalog_active(c), 0x11, 0, 256 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x00, 512 * KiB, 64 * KiB));
        ck_assert_int_eq(catalog_revert(c, "3", false), 0);
        ck_assert(img_reads(catalog_active(c), 0x33, 1 * MiB, 64 * KiB));

        /* Refusals leave everything as it was. */
        ck_assert_int_eq(catalog_revert(c, "4", false), -ENOENT);
        ck_assert_int_eq(catalog_revert(c, "2", true), -EBUSY);
        ck_assert_int_eq(catalog_snapshot(c, SNAPSHOT_MANUAL, NULL, NULL, true, NULL), -EBUSY);
        ck_assert_int_eq(catalog_snapshot(c, SNAPSHOT_MANUAL, "bad\nlabel", NULL, false, NULL), -EINVAL);
        ck_assert_int_eq(catalog_snapshot(c, SNAPSHOT_INITIAL, NULL, NULL, false, NULL), -EINVAL);
        ck_assert_str_eq(catalog_active_parent(c), "3");
        assert_no_stray_files(c);

        /* Persisted: the same after a reopen, nothing to repair. */
        c = catalog_free(c);
        c = open_ok(&repairs);
        ck_assert_uint_eq(repairs, 0);
        ck_assert_str_eq(ids_of(c), "1 2 3");
        ck_assert_str_eq(catalog_active_parent(c), "3");
        ck_assert_str_eq(catalog_get(c, "2")->label, "before KB5030211");
        ck_assert_str_eq(catalog_get(c, "3")->manifest, "patch-2024-05");
        ck_assert_str_eq(catalog_last_known_good(c)->id, "3");
        ck_assert(img_reads(catalog_active(c), 0x33, 1 * MiB, 64 * KiB));
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_large_disk_is_o1) {
        /* 64 GiB virtual: snapshot and revert cost what they cost on 4 MiB. */
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *id = NULL;
        const char *base = tmp_path("big.qcow2");
        struct timespec t0, t1;
        double secs;

        SH_OK("qemu-img create -q -f qcow2 '%s' 64G", base);
        img_write(base, 0x11, 60 * GiB, 1 * MiB);
        ck_assert_int_eq(catalog_create(cat_dir(), base, &c), 0);
        img_write(catalog_active(c), 0x22, 63 * GiB, 1 * MiB);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        id = snap(c, SNAPSHOT_MANUAL, NULL);
        ck_assert_int_eq(catalog_revert(c, "1", false), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
        ck_assert_msg(secs < 2.0, "snapshot + revert of a 64 GiB disk took %.2fs", secs);
        ck_assert_uint_lt(blocks_of(catalog_active(c)) * 512, 1 * MiB);
        ck_assert_uint_lt(blocks_of(cat_file("layer-2.qcow2")) * 512, 4 * MiB);
        ck_assert(img_reads(catalog_active(c), 0x11, 60 * GiB, 1 * MiB));
        ck_assert(img_reads(catalog_active(c), 0x00, 63 * GiB, 1 * MiB));
        ck_assert(img_reads(cat_file("layer-2.qcow2"), 0x22, 63 * GiB, 1 * MiB));
}
END_TEST

/* ---- pin, delete, retain ------------------------------------------------------- */

/*
 * 1 base (0x11 @0)
 * 2 <- 1   0x22 @512K
 * 3 <- 2   0x33 @1M
 * 4 <- 2   0x44 @1.5M      (a branch: reverted to 2, then changed)
 * 5 <- 4   0x55 @2M
 * active <- 5 (0x66 @3M, not frozen)
 * Each layer's contents are dumped to tmp/<id>.raw, the active's to active.raw.
 */
static Catalog *make_tree(void) {
        Catalog *c = NULL;
        char *id;
        char raw[64];

        ck_assert_int_eq(catalog_create(cat_dir(), make_base(), &c), 0);
        img_write(catalog_active(c), 0x22, 512 * KiB, 64 * KiB);
        free(snap(c, SNAPSHOT_PRE_PATCH, NULL));
        img_write(catalog_active(c), 0x33, 1 * MiB, 64 * KiB);
        free(snap(c, SNAPSHOT_MANUAL, NULL));
        ck_assert_int_eq(catalog_revert(c, "2", false), 0);
        img_write(catalog_active(c), 0x44, 1536 * KiB, 64 * KiB);
        free(snap(c, SNAPSHOT_HELPDESK, NULL));
        img_write(catalog_active(c), 0x55, 2 * MiB, 64 * KiB);
        id = snap(c, SNAPSHOT_PRE_MIGRATION, NULL);
        ck_assert_str_eq(id, "5");
        free(id);
        img_write(catalog_active(c), 0x66, 3 * MiB, 64 * KiB);
        ck_assert_str_eq(ids_of(c), "1 2 3 4 5");
        ck_assert_str_eq(catalog_get(c, "4")->parent, "2");
        for (unsigned i = 1; i <= 5; i++) {
                char id_s[8];

                snprintf(id_s, sizeof(id_s), "%u", i);
                snprintf(raw, sizeof(raw), "%u.raw", i);
                img_dump(catalog_get(c, id_s)->layer, tmp_path(raw));
        }
        img_dump(catalog_active(c), tmp_path("active.raw"));
        return c;
}

/* Every listed snapshot and the active overlay read as dumped by make_tree(). */
static void assert_tree_contents(const Catalog *c) {
        const Snapshot *s;
        size_t n;
        char raw[64];

        ck_assert_int_eq(catalog_list(c, &s, &n), 0);
        for (size_t i = 0; i < n; i++) {
                snprintf(raw, sizeof(raw), "%s.raw", s[i].id);
                ck_assert_msg(img_same(s[i].layer, tmp_path(raw)), "snapshot %s reads differently", s[i].id);
        }
        ck_assert_msg(img_same(catalog_active(c), tmp_path("active.raw")),
                      "the active disk reads differently");
}

START_TEST(test_pin_and_delete) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        unsigned repairs = 99;

        /* Refusals. */
        ck_assert_int_eq(catalog_delete(c, "9", false), -ENOENT);
        ck_assert_int_eq(catalog_delete(c, "1", false), -EPERM);       /* the base */
        ck_assert_int_eq(catalog_set_pinned(c, "3", true), 0);
        ck_assert(catalog_get(c, "3")->pinned);
        ck_assert_int_eq(catalog_delete(c, "3", false), -EPERM);
        ck_assert_int_eq(catalog_set_known_good(c, "4"), 0);
        ck_assert_int_eq(catalog_delete(c, "4", false), -EPERM);       /* the last known-good */
        ck_assert_int_eq(catalog_set_pinned(c, "9", true), -ENOENT);
        ck_assert_int_eq(catalog_set_known_good(c, "9"), -ENOENT);
        /* On the running desktop's chain (1 <- 2 <- 4 <- 5 <- active): busy. */
        ck_assert_int_eq(catalog_delete(c, "2", true), -EBUSY);
        ck_assert_str_eq(ids_of(c), "1 2 3 4 5");

        /* 3 is off the active chain: allowed while running; no child, no merge. */
        ck_assert_int_eq(catalog_set_pinned(c, "3", false), 0);
        ck_assert_int_eq(catalog_delete(c, "3", true), 0);
        ck_assert(!exists(cat_file("layer-3.qcow2")));
        ck_assert_str_eq(ids_of(c), "1 2 4 5");

        /* 2 has a child (4): its data moves into 4, 4 builds on 1. */
        ck_assert_int_eq(catalog_delete(c, "2", false), 0);
        ck_assert(!exists(cat_file("layer-2.qcow2")));
        ck_assert_str_eq(ids_of(c), "1 4 5");
        ck_assert_str_eq(catalog_get(c, "4")->parent, "1");
        ck_assert(img_reads(catalog_get(c, "4")->layer, 0x22, 512 * KiB, 64 * KiB));
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        /* 5 is the active overlay's parent: the active overlay absorbs it. */
        ck_assert_int_eq(catalog_delete(c, "5", false), 0);
        ck_assert_str_eq(catalog_active_parent(c), "4");
        ck_assert_str_eq(ids_of(c), "1 4");
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        /* Ids are never reused. */
        free(snap(c, SNAPSHOT_MANUAL, NULL));
        ck_assert_str_eq(ids_of(c), "1 4 6");

        c = catalog_free(c);
        c = open_ok(&repairs);
        ck_assert_uint_eq(repairs, 0);
        ck_assert_str_eq(ids_of(c), "1 4 6");
        ck_assert(catalog_get(c, "4")->known_good);
}
END_TEST

START_TEST(test_retain) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        unsigned dropped = 99;

        /* Protected: 1 (base), 2 (pinned), 3 (last known-good), 5 (active's parent). */
        ck_assert_int_eq(catalog_set_pinned(c, "2", true), 0);
        ck_assert_int_eq(catalog_set_known_good(c, "3"), 0);
        ck_assert_int_eq(catalog_retain(c, 0, true, &dropped), -EBUSY);      /* 4 is on the running chain */
        ck_assert_int_eq(catalog_retain(c, 0, false, &dropped), 0);
        ck_assert_uint_eq(dropped, 1);
        ck_assert_str_eq(ids_of(c), "1 2 3 5");
        ck_assert_str_eq(catalog_get(c, "5")->parent, "2");
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        /* Nothing more to drop. */
        ck_assert_int_eq(catalog_retain(c, 0, false, &dropped), 0);
        ck_assert_uint_eq(dropped, 0);

        /* A newer known-good one: 3 is no longer protected; keep the newest 1. */
        ck_assert_int_eq(catalog_set_known_good(c, "5"), 0);
        ck_assert_int_eq(catalog_set_pinned(c, "2", false), 0);
        ck_assert_int_eq(catalog_retain(c, 1, false, &dropped), 0);
        ck_assert_uint_eq(dropped, 2);
        ck_assert_str_eq(ids_of(c), "1 5");
        ck_assert_str_eq(catalog_get(c, "5")->parent, "1");
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);
}
END_TEST

START_TEST(test_retain_keeps_newest) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        unsigned dropped = 99;

        ck_assert_int_eq(catalog_retain(c, 2, false, &dropped), 0);
        /* newest two: 5 and 4; 3 and 2 go (5 is also the active's parent) */
        ck_assert_uint_eq(dropped, 2);
        ck_assert_str_eq(ids_of(c), "1 4 5");
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);
}
END_TEST

/* ---- staging ---------------------------------------------------------------------- */

START_TEST(test_stage) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        _cleanup_free_ char *stage = NULL, *stage2 = NULL;
        unsigned repairs = 0;

        ck_assert_int_eq(catalog_stage(c, "9", &stage), -ENOENT);
        ck_assert_int_eq(catalog_stage(c, "3", &stage), 0);
        ck_assert(exists(stage));
        ck_assert_int_eq(catalog_stage(c, "3", &stage2), -EBUSY);
        ck_assert_int_eq(catalog_delete(c, "3", false), -EBUSY);       /* the stage builds on it */
        img_write(stage, 0x77, 3 * MiB, 64 * KiB);
        ck_assert(img_reads(stage, 0x33, 1 * MiB, 64 * KiB));
        /* The active disk is untouched until promote. */
        ck_assert(img_same(catalog_active(c), tmp_path("active.raw")));

        ck_assert_int_eq(catalog_promote(c), 0);
        ck_assert(!exists(stage));
        ck_assert_str_eq(catalog_active_parent(c), "3");
        ck_assert(img_reads(catalog_active(c), 0x77, 3 * MiB, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x33, 1 * MiB, 64 * KiB));
        assert_pointers_agree(c);
        assert_no_stray_files(c);

        /* Discard. */
        free(stage);
        stage = NULL;
        ck_assert_int_eq(catalog_stage(c, "5", &stage), 0);
        ck_assert_int_eq(catalog_discard_stage(c), 0);
        ck_assert(!exists(stage));
        ck_assert_int_eq(catalog_discard_stage(c), 0);
        assert_no_stray_files(c);

        /* A stage left by a process that died: discarded at open. */
        free(stage);
        stage = NULL;
        ck_assert_int_eq(catalog_stage(c, "5", &stage), 0);
        img_write(stage, 0x78, 0, 64 * KiB);
        c = catalog_free(c);
        ck_assert(!exists(stage));      /* freeing discards too */
        SH_OK("qemu-img create -q -f qcow2 -b '%s' -F qcow2 '%s'", cat_file("layer-5.qcow2"),
              cat_file("stage-40.qcow2"));
        c = open_ok(&repairs);
        ck_assert_uint_eq(repairs, 1);
        ck_assert(!exists(cat_file("stage-40.qcow2")));
        ck_assert(img_reads(catalog_active(c), 0x77, 3 * MiB, 64 * KiB));
        assert_no_stray_files(c);
}
END_TEST

/* ---- repair ----------------------------------------------------------------------- */

START_TEST(test_malformed_catalog_rebuilt) {
        static const char *const bad[] = {
                "garbage",
                "{}",
                "{\"format\": 1}",
                /* a snapshot whose parent does not exist */
                "PARENT",
                /* duplicate ids */
                "DUP",
                /* an unknown key */
                "UNKNOWN",
                /* wrong type */
                "TYPE",
                /* a base named like one of the catalog's layers (it must not be swept) */
                "BASEOURS",
        };
        _cleanup_free_ char *good = NULL, *base = NULL;
        size_t good_size;

        {
                Catalog *c = make_tree();
                catalog_free(c);
        }
        base = strdup(tmp_path("base.qcow2"));
        ck_assert_int_eq(read_full_file(cat_file("catalog.json"), 1 << 20, &good, &good_size), 0);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(catalog_freep) Catalog *c = NULL;
                _cleanup_free_ char *text = strdup(good);
                unsigned repairs = 0;
                char *p;

                /* Variants of the good file, made by editing its text. */
                if (streq(bad[i], "PARENT")) {
                        p = strstr(text, "\"parent\": \"4\"");
                        ck_assert_ptr_nonnull(p);
                        p[11] = '9';
                } else if (streq(bad[i], "DUP")) {
                        p = strstr(text, "\"id\": \"3\"");
                        ck_assert_ptr_nonnull(p);
                        p[7] = '2';
                } else if (streq(bad[i], "UNKNOWN")) {
                        p = strstr(text, "\"pinned\"");
                        ck_assert_ptr_nonnull(p);
                        memcpy(p, "\"pinnex\"", 8);
                } else if (streq(bad[i], "TYPE")) {
                        p = strstr(text, "\"pinned\": false");
                        ck_assert_ptr_nonnull(p);
                        memcpy(p, "\"pinned\": 0    ", 15);
                } else if (streq(bad[i], "BASEOURS")) {
                        char needle[PATH_MAX + 16];
                        _cleanup_free_ char *edited = NULL;

                        snprintf(needle, sizeof(needle), "\"layer\": \"%s\"", base);
                        p = strstr(text, needle);
                        ck_assert_ptr_nonnull(p);
                        ck_assert_int_ge(asprintf(&edited, "%.*s\"layer\": \"%s\"%s", (int) (p - text), text,
                                                  cat_file("layer-3.qcow2"), p + strlen(needle)),
                                         0);
                        free(text);
                        text = TAKE_PTR(edited);
                } else {
                        free(text);
                        text = strdup(bad[i]);
                }
                ck_assert_int_eq(write_file_atomic(cat_file("catalog.json"), text, strlen(text), 0600), 0);

                c = open_ok(&repairs);
                ck_assert_uint_ge(repairs, 1);
                ck_assert_str_eq(ids_of(c), "1 2 3 4 5");
                ck_assert_str_eq(catalog_get(c, "1")->layer, base);
                ck_assert_int_eq(catalog_get(c, "1")->reason, SNAPSHOT_INITIAL);
                ck_assert_int_eq(catalog_get(c, "4")->reason, SNAPSHOT_RECOVERED);
                ck_assert_str_eq(catalog_get(c, "4")->parent, "2");
                ck_assert_str_eq(catalog_get(c, "3")->parent, "2");
                ck_assert_str_eq(catalog_active_parent(c), "5");
                assert_tree_contents(c);
                assert_pointers_agree(c);
                assert_no_stray_files(c);
                c = catalog_free(c);
                /* The rebuilt catalog is stable. */
                c = open_ok(&repairs);
                ck_assert_uint_eq(repairs, 0);
        }

        /* Missing altogether: rebuilt too. */
        ck_assert_int_eq(unlink(cat_file("catalog.json")), 0);
        {
                _cleanup_(catalog_freep) Catalog *c = NULL;
                unsigned repairs = 0;

                c = open_ok(&repairs);
                ck_assert_uint_ge(repairs, 1);
                ck_assert_str_eq(ids_of(c), "1 2 3 4 5");
                assert_tree_contents(c);
        }
}
END_TEST

START_TEST(test_missing_layer) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        unsigned repairs = 0;

        /* 4's file is gone: 4 and 5 (which builds on it) cannot be read, so
         * they go, and the active overlay (on 5) is replaced by a new one on
         * the newest snapshot left (3). 2 and 3 stay. */
        c = catalog_free(c);
        ck_assert_int_eq(unlink(cat_file("layer-4.qcow2")), 0);
        c = open_ok(&repairs);
        ck_assert_uint_ge(repairs, 3);
        ck_assert_str_eq(ids_of(c), "1 2 3");
        ck_assert_str_eq(catalog_active_parent(c), "3");
        ck_assert(img_same(catalog_get(c, "3")->layer, tmp_path("3.raw")));
        ck_assert(img_same(catalog_active(c), tmp_path("3.raw")));
        assert_pointers_agree(c);
        assert_no_stray_files(c);
}
END_TEST

START_TEST(test_missing_layer_reparented) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        unsigned repairs = 0;

        /* 4 was moved onto 1 behind the catalog's back (its data merged), then
         * 2's file went: 4's chain still holds, so 4 stays and builds on 1. */
        c = catalog_free(c);
        SH_OK("qemu-img rebase -q -f qcow2 -b '%s' -F qcow2 '%s'", tmp_path("base.qcow2"),
              cat_file("layer-4.qcow2"));
        ck_assert_int_eq(unlink(cat_file("layer-2.qcow2")), 0);
        c = open_ok(&repairs);
        ck_assert_uint_ge(repairs, 2);
        ck_assert_str_eq(ids_of(c), "1 4 5");   /* 3 built on 2: gone */
        ck_assert_str_eq(catalog_get(c, "4")->parent, "1");
        ck_assert_str_eq(catalog_active_parent(c), "5");
        assert_tree_contents(c);
        assert_pointers_agree(c);
        assert_no_stray_files(c);
}
END_TEST

START_TEST(test_missing_base_untouched) {
        _cleanup_(catalog_freep) Catalog *c = make_tree();
        _cleanup_free_ char *before = NULL, *after = NULL, *files_before = NULL;
        Catalog *c2 = NULL;

        c = catalog_free(c);
        SH_OK("mv '%s' '%s'", tmp_path("base.qcow2"), tmp_path("base.away"));
        before = file_sha256(cat_file("catalog.json"));
        files_before = strdup(sh_output("ls -l '%s'", cat_dir()));
        ck_assert_int_eq(catalog_open(cat_dir(), &c2, NULL), -ENOENT);
        after = file_sha256(cat_file("catalog.json"));
        ck_assert_str_eq(before, after);
        ck_assert_str_eq(files_before, sh_output("ls -l '%s'", cat_dir()));

        /* Back in place: all there. */
        SH_OK("mv '%s' '%s'", tmp_path("base.away"), tmp_path("base.qcow2"));
        c = open_ok(NULL);
        ck_assert_str_eq(ids_of(c), "1 2 3 4 5");
        assert_tree_contents(c);
}
END_TEST

START_TEST(test_moved_directory) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        unsigned repairs = 0;
        char *id;

        /* The base inside the directory, moving with it. */
        SH_OK("mkdir '%s'", cat_dir());
        SH_OK("qemu-img create -q -f qcow2 '%s' 4M", cat_file("win.qcow2"));
        img_write(cat_file("win.qcow2"), 0x11, 0, 64 * KiB);
        ck_assert_int_eq(catalog_create(cat_dir(), cat_file("win.qcow2"), &c), 0);
        img_write(catalog_active(c), 0x22, 1 * MiB, 64 * KiB);
        id = snap(c, SNAPSHOT_MANUAL, NULL);
        free(id);
        img_write(catalog_active(c), 0x33, 2 * MiB, 64 * KiB);
        c = catalog_free(c);

        SH_OK("mv '%s' '%s'", cat_dir(), tmp_path("moved"));
        ck_assert_int_eq(catalog_open(tmp_path("moved"), &c, &repairs), 0);
        ck_assert_uint_ge(repairs, 1);
        ck_assert_str_eq(ids_of(c), "1 2");
        ck_assert_str_eq(catalog_get(c, "1")->layer, tmp_path("moved/win.qcow2"));
        ck_assert(img_reads(catalog_active(c), 0x11, 0, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x22, 1 * MiB, 64 * KiB));
        ck_assert(img_reads(catalog_active(c), 0x33, 2 * MiB, 64 * KiB));
        assert_pointers_agree(c);
        c = catalog_free(c);
        ck_assert_int_eq(catalog_open(tmp_path("moved"), &c, &repairs), 0);
        ck_assert_uint_eq(repairs, 0);
}
END_TEST

/* ---- kill safety -------------------------------------------------------------------- */

static void op_snapshot(Catalog *c) {
        (void) catalog_snapshot(c, SNAPSHOT_PRE_PATCH, "x", NULL, false, NULL);
}
static void op_revert_2(Catalog *c) {
        (void) catalog_revert(c, "2", false);
}
static void op_delete_2(Catalog *c) {
        (void) catalog_delete(c, "2", false);
}
static void op_delete_5(Catalog *c) {
        (void) catalog_delete(c, "5", false);
}
static void op_promote(Catalog *c) {
        char *stage = NULL;

        ck_assert_int_eq(catalog_stage(c, "3", &stage), 0);
        img_write(stage, 0x77, 3 * MiB, 64 * KiB);
        (void) catalog_promote(c);
}
static void op_open(Catalog *c) {
}

/* After the kill: the old or the new state, all of it readable and right. */
static Catalog *assert_after_kill(const char *step, const char *old_ids, const char *new_ids) {
        Catalog *c = NULL;
        unsigned repairs = 0;

        ck_assert_int_eq(catalog_open(cat_dir(), &c, &repairs), 0);
        ck_assert_msg(streq(ids_of(c), old_ids) || streq(ids_of(c), new_ids),
                      "%s: ids %s, expected %s or %s", step, ids_of(c), old_ids, new_ids);
        assert_pointers_agree(c);
        assert_no_stray_files(c);
        catalog_free(c);
        /* A second open finds nothing left to do. */
        ck_assert_int_eq(catalog_open(cat_dir(), &c, &repairs), 0);
        ck_assert_msg(repairs == 0, "%s: %u repairs on the second open", step, repairs);
        return c;
}

START_TEST(test_kill_snapshot) {
        static const char *const steps[] = { "snapshot-linked", "snapshot-overlay", "snapshot-committed" };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Catalog *c = make_tree();

                catalog_free(c);
                run_killed(steps[i], op_snapshot);
                SH_OK("cp '%s' '%s'", tmp_path("active.raw"), tmp_path("6.raw"));
                c = assert_after_kill(steps[i], "1 2 3 4 5", "1 2 3 4 5 6");
                /* Either way the active disk reads as before, and so does 6. */
                assert_tree_contents(c);
                if (catalog_get(c, "6")) {
                        ck_assert_str_eq(catalog_active_parent(c), "6");
                        ck_assert_str_eq(catalog_get(c, "6")->parent, "5");
                        ck_assert(img_same(catalog_get(c, "6")->layer, tmp_path("active.raw")));
                } else
                        ck_assert_str_eq(catalog_active_parent(c), "5");
                ck_assert_msg(streq(steps[i], "snapshot-committed") == !!catalog_get(c, "6"),
                              "%s: wrong side of the commit", steps[i]);
                catalog_free(c);
                disk_teardown();
                disk_setup();
        }
}
END_TEST

START_TEST(test_kill_revert) {
        static const char *const steps[] = { "revert-overlay", "revert-committed" };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Catalog *c = make_tree();

                catalog_free(c);
                run_killed(steps[i], op_revert_2);
                c = assert_after_kill(steps[i], "1 2 3 4 5", "1 2 3 4 5");
                if (i == 0) {
                        ck_assert_str_eq(catalog_active_parent(c), "5");
                        ck_assert(img_same(catalog_active(c), tmp_path("active.raw")));
                } else {
                        ck_assert_str_eq(catalog_active_parent(c), "2");
                        ck_assert(img_same(catalog_active(c), tmp_path("2.raw")));
                }
                catalog_free(c);
                disk_teardown();
                disk_setup();
        }
}
END_TEST

START_TEST(test_kill_delete) {
        /* 2 has two children (3 and 4): the kill after the first rebase
         * leaves one moved and one not. */
        static const char *const steps[] = { "delete-marked", "delete-rebased", "delete-committed" };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Catalog *c = make_tree();

                catalog_free(c);
                run_killed(steps[i], op_delete_2);
                c = assert_after_kill(steps[i], "1 2 3 4 5", "1 3 4 5");
                assert_tree_contents(c);
                ck_assert_msg(streq(steps[i], "delete-committed") == !catalog_get(c, "2"),
                              "%s: wrong side of the commit", steps[i]);
                /* What is left to do can be done. */
                if (catalog_get(c, "2"))
                        ck_assert_int_eq(catalog_delete(c, "2", false), 0);
                ck_assert_str_eq(ids_of(c), "1 3 4 5");
                assert_tree_contents(c);
                assert_pointers_agree(c);
                catalog_free(c);
                disk_teardown();
                disk_setup();
        }
}
END_TEST

START_TEST(test_kill_delete_single_child) {
        /* 5's only child is the active overlay: killed after moving it, the
         * open finishes the removal. */
        static const char *const steps[] = { "delete-marked", "delete-rebased", "delete-committed" };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Catalog *c = make_tree();

                catalog_free(c);
                run_killed(steps[i], op_delete_5);
                c = assert_after_kill(steps[i], "1 2 3 4 5", "1 2 3 4");
                assert_tree_contents(c);
                ck_assert_msg((i == 0) == !!catalog_get(c, "5"), "%s: expected 5 %s", steps[i],
                              i == 0 ? "kept" : "gone");
                ck_assert_str_eq(catalog_active_parent(c), i == 0 ? "5" : "4");
                catalog_free(c);
                disk_teardown();
                disk_setup();
        }
}
END_TEST

START_TEST(test_kill_promote) {
        static const char *const steps[] = { "promote-renamed", "promote-committed" };

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                Catalog *c = make_tree();

                catalog_free(c);
                run_killed(steps[i], op_promote);
                c = assert_after_kill(steps[i], "1 2 3 4 5", "1 2 3 4 5");
                if (i == 0) {
                        /* The pre-patch disk, intact. */
                        ck_assert_str_eq(catalog_active_parent(c), "5");
                        ck_assert(img_same(catalog_active(c), tmp_path("active.raw")));
                } else {
                        ck_assert_str_eq(catalog_active_parent(c), "3");
                        ck_assert(img_reads(catalog_active(c), 0x77, 3 * MiB, 64 * KiB));
                        ck_assert(img_reads(catalog_active(c), 0x33, 1 * MiB, 64 * KiB));
                }
                for (unsigned k = 1; k <= 5; k++) {
                        char id[8], raw[16];

                        snprintf(id, sizeof(id), "%u", k);
                        snprintf(raw, sizeof(raw), "%u.raw", k);
                        ck_assert(img_same(catalog_get(c, id)->layer, tmp_path(raw)));
                }
                catalog_free(c);
                disk_teardown();
                disk_setup();
        }
}
END_TEST

START_TEST(test_kill_create_and_repair) {
        Catalog *c = NULL;
        pid_t pid;
        int status;

        /* Killed before create's commit: the open rebuilds from the overlay. */
        make_base();
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                setenv("OOB_TEST_CRASH_AT", "create-overlay", 1);
                (void) catalog_create(cat_dir(), tmp_path("base.qcow2"), &c);
                _exit(4);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert(!exists(cat_file("catalog.json")));
        ck_assert_int_eq(catalog_create(cat_dir(), tmp_path("base.qcow2"), &c), -EEXIST);
        c = assert_after_kill("create-overlay", "1", "1");
        ck_assert(img_reads(catalog_active(c), 0x11, 0, 256 * KiB));
        catalog_free(c);
        disk_teardown();
        disk_setup();

        /* Killed in the middle of a repair (after its commit, before the
         * stray files went): the next open finishes it. */
        c = make_tree();
        catalog_free(c);
        run_killed("delete-rebased", op_delete_2);
        run_killed("repair-committed", op_open);
        c = assert_after_kill("repair-committed", "1 2 3 4 5", "1 3 4 5");
        assert_tree_contents(c);
        catalog_free(c);
}
END_TEST

static Suite *catalog_suite(void) {
        Suite *s = suite_create("catalog");
        TCase *tc = tcase_create("catalog");
        TCase *tk = tcase_create("kill");

        tcase_add_checked_fixture(tc, disk_setup, disk_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_disk_rebase);
        tcase_add_test(tc, test_reason_table);
        tcase_add_test(tc, test_create);
        tcase_add_test(tc, test_snapshot_revert);
        tcase_add_test(tc, test_large_disk_is_o1);
        tcase_add_test(tc, test_pin_and_delete);
        tcase_add_test(tc, test_retain);
        tcase_add_test(tc, test_retain_keeps_newest);
        tcase_add_test(tc, test_stage);
        tcase_add_test(tc, test_malformed_catalog_rebuilt);
        tcase_add_test(tc, test_missing_layer);
        tcase_add_test(tc, test_missing_layer_reparented);
        tcase_add_test(tc, test_missing_base_untouched);
        tcase_add_test(tc, test_moved_directory);
        suite_add_tcase(s, tc);

        tcase_add_checked_fixture(tk, disk_setup, disk_teardown);
        tcase_set_timeout(tk, 180);
        tcase_add_test(tk, test_kill_snapshot);
        tcase_add_test(tk, test_kill_revert);
        tcase_add_test(tk, test_kill_delete);
        tcase_add_test(tk, test_kill_delete_single_child);
        tcase_add_test(tk, test_kill_promote);
        tcase_add_test(tk, test_kill_create_and_repair);
        suite_add_tcase(s, tk);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(catalog_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NTFS through libntfs-3g on the qemu-nbd disk. Volumes are made by mkntfs
 * and ntfscp, served as qcow2; what our code wrote is read back after the
 * fact with ntfs-3g's own tools (ntfsls, ntfscat) from a raw conversion.
 */

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

/* libntfs-3g's headers need the standard ones first, volume.h before dir.h. */
#include <ntfs-3g/volume.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/unistr.h>

#include "hv-internal.h"
#include "helpers-disk.h"

#define MiB (1024ULL * 1024ULL)

static const char *raw_path, *img_path;

/* A 32 MiB volume "TestVol" with hello.txt, as raw (not yet converted). */
static void volume_setup(void) {
        disk_setup();
        raw_path = strdup(tmp_path("vol.raw"));
        img_path = strdup(tmp_path("vol.qcow2"));
        make_ntfs_raw(raw_path, 32, "TestVol");
        write_host_file(tmp_path("hello.txt"), "hello\n", 6);
        ntfs_put(raw_path, tmp_path("hello.txt"), "hello.txt");
}

static void volume_teardown(void) {
        disk_teardown();
}

typedef struct Mounted {
        OfflineDisk *disk;
        NtfsVolume *vol;
} Mounted;

/* Serve img and mount its whole-disk volume. */
static int mount_image(const char *img, bool writable, Mounted *ret, VolumeRefusal *ret_refusal) {
        Partition whole;
        int r;

        *ret = (Mounted) {};
        r = offline_disk_open(img, writable, false, &ret->disk);
        if (r < 0)
                return r;
        whole = (Partition) { .number = 1, .offset = 0, .size = offline_disk_size(ret->disk) };
        r = ntfs_volume_open(ret->disk, &whole, writable, &ret->vol, ret_refusal);
        if (r < 0)
                ret->disk = offline_disk_close(ret->disk);
        return r;
}

static void unmount_image(Mounted *m) {
        m->vol = ntfs_volume_close(m->vol);
        m->disk = offline_disk_close(m->disk);
        ck_assert(no_children_left());
}

static Mounted open_rw(void) {
        Mounted m;
        VolumeRefusal rf = _VOLUME_REFUSAL_INVALID;

        raw_to_qcow2(raw_path, img_path);
        ck_assert_int_eq(mount_image(img_path, true, &m, &rf), 0);
        ck_assert_int_eq(rf, VOLUME_OK);
        return m;
}

/* After unmounting: the image back as raw, for ntfs-3g's tools. */
static const char *readback(void) {
        const char *out = tmp_path("readback.raw");

        qcow2_to_raw(img_path, out);
        /* ntfsfix -n only reads and reports. */
        ck_assert_int_eq(sh("ntfsfix -n '%s' >/dev/null 2>&1", out), 0);
        return out;
}

static bool ntfsls_has(const char *raw, const char *dir, const char *name) {
        char *out = sh_output("ntfsls -p '/%s' '%s' 2>/dev/null", dir, raw);
        char *line = strtok(out, "\n");

        for (; line; line = strtok(NULL, "\n"))
                if (streq(line, name))
                        return true;
        return false;
}

static void ntfscat_equals(const char *raw, const char *path, const void *data, size_t size) {
        const char *host = tmp_path("cat.out");
        _cleanup_free_ char *got = NULL;
        size_t got_size;

        SH_OK("ntfscat '%s' '%s' > '%s'", raw, path, host);
        ck_assert_int_eq(read_full_file(host, 64 * MiB, &got, &got_size), 0);
        ck_assert_uint_eq(got_size, size);
        ck_assert(memcmp(got, data, size) == 0);
}

typedef struct PatternReader {
        uint8_t *data;
        size_t size, pos, step;
} PatternReader;

/* Hands out at most `step` bytes a call, to exercise the chunking. */
static ssize_t pattern_read(void *userdata, void *buf, size_t size) {
        PatternReader *p = userdata;
        size_t k = MIN(MIN(size, p->step), p->size - p->pos);

        memcpy(buf, p->data + p->pos, k);
        p->pos += k;
        return (ssize_t) k;
}

static ssize_t failing_read(void *userdata, void *buf, size_t size) {
        size_t *calls = userdata;

        if ((*calls)++ > 2)
                return -EBADMSG;
        memset(buf, 'x', MIN(size, (size_t) 4096));
        return (ssize_t) MIN(size, (size_t) 4096);
}

START_TEST(test_roundtrip_independent) {
        static const char unicode_name[] = "\xc3\x9c" "berpr\xc3\xbc" "fung \xe6\x97\xa5\xe6\x9c\xac.txt";
        const size_t big = 5 * MiB + 123;
        _cleanup_free_ uint8_t *data = malloc(big);
        PatternReader pr = { .data = data, .size = big, .step = 10000 };
        const char *out;
        Mounted m;

        ck_assert_ptr_nonnull(data);
        fill_pattern(data, big, 42);
        m = open_rw();
        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "Windows/System32/drivers"), 0);
        ck_assert_int_eq(ntfs_volume_write_file(m.vol, "Windows/System32/drivers/big.sys", pattern_read, &pr), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "Windows/notes.txt", "abc", 3), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, unicode_name, "u", 1), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "empty.dat", "", 0), 0);
        unmount_image(&m);

        out = readback();
        ck_assert(ntfsls_has(out, "", "Windows"));
        ck_assert(ntfsls_has(out, "", "hello.txt"));
        ck_assert(ntfsls_has(out, "", unicode_name));
        ck_assert(ntfsls_has(out, "", "empty.dat"));
        ck_assert(ntfsls_has(out, "Windows/System32", "drivers"));
        ntfscat_equals(out, "Windows/System32/drivers/big.sys", data, big);
        ntfscat_equals(out, "Windows/notes.txt", "abc", 3);
        ntfscat_equals(out, "hello.txt", "hello\n", 6);
        ntfscat_equals(out, "empty.dat", "", 0);

        /* And through our reader, on the same image, read-only this time. */
        {
                _cleanup_free_ char *back = NULL;
                size_t size;

                ck_assert_int_eq(mount_image(img_path, false, &m, NULL), 0);
                ck_assert_int_eq(ntfs_volume_read_file(m.vol, "windows/system32/DRIVERS/BIG.SYS", big, &back, &size),
                                 0);
                ck_assert_uint_eq(size, big);
                ck_assert(memcmp(back, data, big) == 0);
                ck_assert_int_eq(ntfs_volume_read_file(m.vol, "windows/system32/drivers/big.sys", big - 1, &back,
                                                       &size),
                                 -EFBIG);
                ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "x", "x", 1), -EROFS);
                ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "x"), -EROFS);
                ck_assert_int_eq(ntfs_volume_unlink(m.vol, "hello.txt"), -EROFS);
                unmount_image(&m);
        }
}
END_TEST

START_TEST(test_case_insensitive) {
        _cleanup_strv_free_ char **l = NULL, **top = NULL;
        NtfsStat st = {};
        const char *out;
        Mounted m = open_rw();

        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "Windows/System32"), 0);
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "WINDOWS/system32", &st), 0);
        ck_assert(st.is_dir);
        ck_assert_str_eq(st.name, "System32");
        ntfs_stat_done(&st);

        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "windows/SYSTEM32/Foo.DLL", "1", 1), 0);
        /* Same file, other case: replaced, not duplicated; its name kept. */
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "WINDOWS/system32/foo.dll", "22", 2), 0);
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "windows/system32/FOO.dll", &st), 0);
        ck_assert(!st.is_dir);
        ck_assert_uint_eq(st.size, 2);
        ck_assert_str_eq(st.name, "Foo.DLL");
        ntfs_stat_done(&st);
        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "windows/system32/NewDir"), 0);

        ck_assert_int_eq(ntfs_volume_list(m.vol, "WINDOWS/SYSTEM32", &l), 0);
        ck_assert_uint_eq(strv_length(l), 2);
        ck_assert(streq(l[0], "Foo.DLL") || streq(l[1], "Foo.DLL"));
        ck_assert(streq(l[0], "NewDir") || streq(l[1], "NewDir"));
        /* The root lists files, not NTFS metadata ($MFT, ...). */
        ck_assert_int_eq(ntfs_volume_list(m.vol, "", &top), 0);
        ck_assert_uint_eq(strv_length(top), 2);
        ck_assert(streq(top[0], "hello.txt") || streq(top[1], "hello.txt"));
        ck_assert(streq(top[0], "Windows") || streq(top[1], "Windows"));
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "", &st), 0);
        ck_assert(st.is_dir);
        ntfs_stat_done(&st);
        unmount_image(&m);

        out = readback();
        ck_assert(ntfsls_has(out, "Windows/System32", "Foo.DLL"));
        ck_assert(!ntfsls_has(out, "Windows/System32", "foo.dll"));
        ck_assert(ntfsls_has(out, "Windows/System32", "NewDir"));
        ntfscat_equals(out, "Windows/System32/Foo.DLL", "22", 2);
}
END_TEST

START_TEST(test_refused_names) {
        static const char *const bad[] = {
                "..", ".", "a/../b", "a/./b", "a//b", "/abs", "a/", "x:stream", "a<b", "a>b", "a\"b", "a\\b",
                "a|b", "a?b", "a*b", "tab\there", "CON", "con.txt", "Lpt1", "com9.log", "nul", "trailingdot.",
                "trailingspace ",
        };
        _cleanup_strv_free_ char **l = NULL;
        char long_name[300];
        NtfsStat st = {};
        Mounted m = open_rw();

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_msg(ntfs_volume_write_buffer(m.vol, bad[i], "x", 1) == -EINVAL, "%s", bad[i]);
                ck_assert_msg(ntfs_volume_mkdir_p(m.vol, bad[i]) == -EINVAL, "%s", bad[i]);
                ck_assert_msg(ntfs_volume_stat(m.vol, bad[i], &st) == -EINVAL, "%s", bad[i]);
        }
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "bad\xff\xfe.txt", "x", 1), -EINVAL);
        memset(long_name, 'n', 256);
        long_name[256] = 0;
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, long_name, "x", 1), -ENAMETOOLONG);
        long_name[255] = 0;
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, long_name, "x", 1), 0);
        /* Allowed although unusual. */
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "CONSOLE.txt", "x", 1), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, ".hidden", "x", 1), 0);

        /* NTFS metadata files are not reachable. */
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "$MFT", &st), -EPERM);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "$Bitmap", "x", 1), -EPERM);
        ck_assert_int_eq(ntfs_volume_unlink(m.vol, "$LogFile"), -EPERM);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "$Extend/$ObjId", "x", 1), -EPERM);

        ck_assert_int_eq(ntfs_volume_list(m.vol, "", &l), 0);
        ck_assert_uint_eq(strv_length(l), 4);   /* hello.txt, the long name, CONSOLE.txt, .hidden */
        unmount_image(&m);
}
END_TEST

START_TEST(test_errors) {
        _cleanup_free_ char *data = NULL;
        _cleanup_strv_free_ char **l = NULL;
        size_t size = 0, calls = 0;
        NtfsStat st = {};
        Mounted m = open_rw();

        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "d/e"), 0);
        ck_assert_int_eq(ntfs_volume_read_file(m.vol, "missing", 100, &data, &size), -ENOENT);
        ck_assert_int_eq(ntfs_volume_read_file(m.vol, "d", 100, &data, &size), -EISDIR);
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "d/missing", &st), -ENOENT);
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "hello.txt/x", &st), -ENOTDIR);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "nodir/file", "x", 1), -ENOENT);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "d", "x", 1), -EISDIR);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "", "x", 1), -EISDIR);
        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "hello.txt/sub"), -ENOTDIR);
        ck_assert_int_eq(ntfs_volume_unlink(m.vol, "d"), -EISDIR);
        ck_assert_int_eq(ntfs_volume_unlink(m.vol, "missing"), -ENOENT);
        ck_assert_int_eq(ntfs_volume_rmdir(m.vol, "d"), -ENOTEMPTY);
        ck_assert_int_eq(ntfs_volume_rmdir(m.vol, "hello.txt"), -ENOTDIR);
        ck_assert_int_eq(ntfs_volume_list(m.vol, "hello.txt", &l), -ENOTDIR);
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "missing", "x"), -ENOENT);
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "d", "x"), -EISDIR);
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "hello.txt", "d"), -EISDIR);
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "hello.txt", "nodir/x"), -ENOENT);

        /* A reader's error is returned, and a new file removed again. */
        ck_assert_int_eq(ntfs_volume_write_file(m.vol, "d/partial.bin", failing_read, &calls), -EBADMSG);
        ck_assert_int_eq(ntfs_volume_stat(m.vol, "d/partial.bin", &st), -ENOENT);

        ck_assert_int_eq(ntfs_volume_read_file(m.vol, "hello.txt", 100, &data, &size), 0);
        ck_assert_uint_eq(size, 6);
        ck_assert_str_eq(data, "hello\n");
        unmount_image(&m);
}
END_TEST

START_TEST(test_unlink_rmdir_rename) {
        const char *out;
        Mounted m = open_rw();

        ck_assert_int_eq(ntfs_volume_mkdir_p(m.vol, "dir/empty"), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "a.txt", "A", 1), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "b.txt", "B", 1), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "new.hiv", "new hive", 8), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "dir/SYSTEM", "old hive", 8), 0);

        ck_assert_int_eq(ntfs_volume_unlink(m.vol, "A.TXT"), 0);
        ck_assert_int_eq(ntfs_volume_rmdir(m.vol, "DIR/EMPTY"), 0);
        /* Into another directory, then a change of case only. */
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "b.txt", "dir/c.txt"), 0);
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "DIR/c.txt", "dir/C.TXT"), 0);
        /* Over an existing file, as a registry commit does. */
        ck_assert_int_eq(ntfs_volume_rename_file(m.vol, "new.hiv", "Dir/system"), 0);
        unmount_image(&m);

        out = readback();
        ck_assert(!ntfsls_has(out, "", "a.txt"));
        ck_assert(!ntfsls_has(out, "", "b.txt"));
        ck_assert(!ntfsls_has(out, "", "new.hiv"));
        ck_assert(!ntfsls_has(out, "dir", "empty"));
        ck_assert(ntfsls_has(out, "dir", "C.TXT"));
        ck_assert(!ntfsls_has(out, "dir", "c.txt"));
        ck_assert(ntfsls_has(out, "dir", "system"));
        ck_assert(!ntfsls_has(out, "dir", "SYSTEM"));
        ntfscat_equals(out, "dir/C.TXT", "B", 1);
        ntfscat_equals(out, "dir/system", "new hive", 8);
}
END_TEST

/* ---- the refusals ------------------------------------------------------------------ */

static void put_hiberfil(const char *magic) {
        uint8_t buf[8192] = {};

        if (magic)
                memcpy(buf, magic, 4);
        buf[5000] = 1;
        write_host_file(tmp_path("hiberfil.sys"), buf, sizeof(buf));
        ntfs_put(raw_path, tmp_path("hiberfil.sys"), "hiberfil.sys");
}

/* Set the NTFS dirty flag the way Windows does, with libntfs-3g itself. */
static void set_dirty_flag(const char *raw) {
        ntfs_volume *vol = ntfs_mount(raw, NTFS_MNT_NONE);

        ck_assert_ptr_nonnull(vol);
        ck_assert_int_eq(ntfs_volume_write_flags(vol, vol->flags | VOLUME_IS_DIRTY), 0);
        ck_assert_int_eq(ntfs_umount(vol, false), 0);
}

/* A writable open is refused with the refusal, and not one byte of the
 * image changes; a read-only open works and says the same. */
static void check_refused(VolumeRefusal expected) {
        _cleanup_free_ char *before = NULL, *after = NULL, *data = NULL;
        VolumeRefusal rf = _VOLUME_REFUSAL_INVALID;
        VolumeState state = {};
        size_t size;
        Mounted m;

        raw_to_qcow2(raw_path, img_path);
        before = file_sha256(img_path);
        ck_assert_int_eq(mount_image(img_path, true, &m, &rf), -EPERM);
        ck_assert_int_eq(rf, expected);
        ck_assert(no_children_left());
        after = file_sha256(img_path);
        ck_assert_str_eq(before, after);

        rf = _VOLUME_REFUSAL_INVALID;
        if (expected == VOLUME_BITLOCKER) {
                ck_assert_int_eq(mount_image(img_path, false, &m, &rf), -EPERM);
                ck_assert_int_eq(rf, VOLUME_BITLOCKER);
        } else {
                ck_assert_int_eq(mount_image(img_path, false, &m, &rf), 0);
                ck_assert_int_eq(rf, expected);
                ck_assert_int_eq(ntfs_volume_state(m.vol, &state), 0);
                ck_assert_int_eq(state.refusal, expected);
                volume_state_done(&state);
                ck_assert_int_eq(ntfs_volume_read_file(m.vol, "HELLO.txt", 100, &data, &size), 0);
                ck_assert_str_eq(data, "hello\n");
                unmount_image(&m);
        }
        free(after);
        after = file_sha256(img_path);
        ck_assert_str_eq(before, after);
}

START_TEST(test_hibernated_refused) {
        static const char *const magics[] = { "hibr", "HIBR", "wake", "WAKE" };

        put_hiberfil(magics[_i]);
        check_refused(VOLUME_HIBERNATED);
}
END_TEST

START_TEST(test_zeroed_hiberfil_accepted) {
        Mounted m;

        put_hiberfil(NULL);
        m = open_rw();
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "after-shutdown.txt", "ok", 2), 0);
        unmount_image(&m);
        ntfscat_equals(readback(), "after-shutdown.txt", "ok", 2);
}
END_TEST

START_TEST(test_dirty_refused) {
        ck_assert_ptr_nonnull(strstr(sh_output("ntfsinfo -f -m '%s' 2>/dev/null", raw_path), "Volume Flags: 0x0000"));
        set_dirty_flag(raw_path);
        ck_assert_ptr_nonnull(strstr(sh_output("ntfsinfo -f -m '%s' 2>/dev/null", raw_path), "Volume Flags: 0x0001"));
        check_refused(VOLUME_DIRTY);
}
END_TEST

START_TEST(test_bitlocker_refused) {
        int fd = open(raw_path, O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, "-FVE-FS-", 8, 3), 8);
        close(fd);
        check_refused(VOLUME_BITLOCKER);
}
END_TEST

START_TEST(test_not_ntfs) {
        const char *zero = tmp_path("zero.raw");
        Mounted m;

        SH_OK("truncate -s 4M '%s'", zero);
        ck_assert_int_eq(mount_image(zero, false, &m, NULL), -EPROTO);
        ck_assert(no_children_left());
}
END_TEST

START_TEST(test_state) {
        _cleanup_free_ uint8_t *data = malloc(4 * MiB);
        VolumeState s1 = {}, s2 = {};
        Mounted m = open_rw();

        ck_assert_int_eq(ntfs_volume_state(m.vol, &s1), 0);
        ck_assert_int_eq(s1.refusal, VOLUME_OK);
        ck_assert_str_eq(s1.label, "TestVol");
        ck_assert_uint_le(s1.size, 32 * MiB);
        ck_assert_uint_gt(s1.size, 31 * MiB);
        ck_assert_uint_lt(s1.free, s1.size);
        ck_assert_uint_eq(s1.ntfs_major, 3);
        ck_assert_uint_eq(s1.ntfs_minor, 1);

        fill_pattern(data, 4 * MiB, 1);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "four.bin", data, 4 * MiB), 0);
        ck_assert_int_eq(ntfs_volume_state(m.vol, &s2), 0);
        ck_assert_uint_le(s2.free, s1.free - 4 * MiB);
        volume_state_done(&s1);
        volume_state_done(&s2);
        unmount_image(&m);
}
END_TEST

/* Give file `name` in the root a second name, with libntfs-3g directly. */
static void add_hard_link(const char *raw, const char *name, const char *link) {
        ntfs_volume *vol = ntfs_mount(raw, NTFS_MNT_NONE);
        ntfs_inode *root, *ni;
        ntfschar *u = NULL;
        u64 mref;
        int len;

        ck_assert_ptr_nonnull(vol);
        root = ntfs_inode_open(vol, FILE_root);
        ck_assert_ptr_nonnull(root);
        /* Looked up in the open root: a second open of one MFT record
         * (ntfs_pathname_to_inode opens the root itself) confuses
         * libntfs-3g's inode cache. */
        mref = ntfs_inode_lookup_by_mbsname(root, name);
        ck_assert(mref != (u64) -1);
        ni = ntfs_inode_open(vol, MREF(mref));
        ck_assert_ptr_nonnull(ni);
        len = ntfs_mbstoucs(link, &u);
        ck_assert_int_gt(len, 0);
        ck_assert_int_eq(ntfs_link(ni, root, u, (u8) len), 0);
        free(u);
        ck_assert_int_eq(ntfs_inode_close(root), 0);
        ck_assert_int_eq(ntfs_inode_close(ni), 0);
        ck_assert_int_eq(ntfs_umount(vol, false), 0);
}

START_TEST(test_hard_linked_file_replaced) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *data = NULL;
        size_t size, calls = 0;
        const char *out;
        Mounted m;

        /* As Windows links System32 files into WinSxS: replacing one name
         * must leave the other name's contents alone. */
        add_hard_link(raw_path, "hello.txt", "winsxs-hello.txt");
        m = open_rw();
        /* A failed replacement leaves the file as it was, and no debris. */
        ck_assert_int_eq(ntfs_volume_write_file(m.vol, "hello.txt", failing_read, &calls), -EBADMSG);
        ck_assert_int_eq(ntfs_volume_read_file(m.vol, "hello.txt", 100, &data, &size), 0);
        ck_assert_str_eq(data, "hello\n");
        ck_assert_int_eq(ntfs_volume_list(m.vol, "", &l), 0);
        ck_assert_uint_eq(strv_length(l), 2);
        ck_assert_int_eq(ntfs_volume_write_buffer(m.vol, "hello.txt", "patched", 7), 0);
        unmount_image(&m);
        out = readback();
        ntfscat_equals(out, "hello.txt", "patched", 7);
        ntfscat_equals(out, "winsxs-hello.txt", "hello\n", 6);
        ck_assert_int_eq(atoi(sh_output("ntfsls '%s' | wc -l", out)), 2);
}
END_TEST

START_TEST(test_string_tables) {
        for (int r = 0; r < _VOLUME_REFUSAL_MAX; r++) {
                ck_assert_ptr_nonnull(volume_refusal_to_string(r));
                ck_assert_int_eq(volume_refusal_from_string(volume_refusal_to_string(r)), r);
                ck_assert_ptr_nonnull(volume_refusal_advice(r));
        }
        ck_assert_str_eq(volume_refusal_to_string(VOLUME_HIBERNATED), "hibernated");
        ck_assert_str_eq(volume_refusal_to_string(VOLUME_BITLOCKER), "bitlocker");
        ck_assert_ptr_nonnull(strstr(volume_refusal_advice(VOLUME_HIBERNATED), "shutdown /s /t 0"));
        ck_assert_ptr_null(volume_refusal_to_string(_VOLUME_REFUSAL_MAX));
        ck_assert_ptr_null(volume_refusal_advice(_VOLUME_REFUSAL_MAX));
        ck_assert_int_eq(volume_refusal_from_string("asleep"), -EINVAL);
}
END_TEST

static Suite *ntfs_suite(void) {
        Suite *s = suite_create("ntfs");
        TCase *tc = tcase_create("volume");

        tcase_add_checked_fixture(tc, volume_setup, volume_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_roundtrip_independent);
        tcase_add_test(tc, test_case_insensitive);
        tcase_add_test(tc, test_refused_names);
        tcase_add_test(tc, test_errors);
        tcase_add_test(tc, test_unlink_rmdir_rename);
        tcase_add_loop_test(tc, test_hibernated_refused, 0, 4);
        tcase_add_test(tc, test_zeroed_hiberfil_accepted);
        tcase_add_test(tc, test_dirty_refused);
        tcase_add_test(tc, test_bitlocker_refused);
        tcase_add_test(tc, test_not_ntfs);
        tcase_add_test(tc, test_state);
        tcase_add_test(tc, test_hard_linked_file_replaced);
        tcase_add_test(tc, test_string_tables);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(ntfs_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

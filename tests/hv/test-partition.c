/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GPT and MBR discovery on disks laid out by sgdisk, volumes made by mkntfs. */

#include <fcntl.h>

#include "hv-internal.h"
#include "helpers-disk.h"

#define MiB (1024ULL * 1024ULL)

/* sgdisk's own account of partition n: first sector and size in sectors. */
static void sgdisk_info(const char *disk, unsigned n, uint64_t *ret_first, uint64_t *ret_sectors) {
        uint64_t first, last;

        ck_assert_int_eq(safe_atou64(sh_output("sgdisk -i %u '%s' 2>/dev/null | sed -n 's/^First sector: \\([0-9]*\\).*/\\1/p' "
                                               "| tr -d '\\n'", n, disk),
                                     &first),
                         0);
        ck_assert_int_eq(safe_atou64(sh_output("sgdisk -i %u '%s' 2>/dev/null | sed -n 's/^Last sector: \\([0-9]*\\).*/\\1/p' "
                                               "| tr -d '\\n'", n, disk),
                                     &last),
                         0);
        *ret_first = first;
        *ret_sectors = last - first + 1;
}

/* Put the contents of volume at byte offset of disk. */
static void dd_into(const char *volume, const char *disk, uint64_t offset) {
        SH_OK("dd if='%s' of='%s' bs=1M seek=%llu oflag=seek_bytes conv=notrunc status=none", volume, disk,
              (unsigned long long) offset);
}

static void poke(const char *path, uint64_t offset, const void *data, size_t size) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pwrite(fd, data, size, (off_t) offset), (ssize_t) size);
        close(fd);
}

/* A volume holding Windows/System32/config/SYSTEM, written through our own
 * NTFS code (the NTFS tests check that code against ntfs-3g's tools). */
static void make_windows_volume(const char *path, unsigned size_mb) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        Partition whole;

        make_ntfs_raw(path, size_mb, "Windows");
        ck_assert_int_eq(offline_disk_open(path, true, false, &d), 0);
        whole = (Partition) { .number = 1, .offset = 0, .size = offline_disk_size(d) };
        ck_assert_int_eq(ntfs_volume_open(d, &whole, true, &v, NULL), 0);
        ck_assert_int_eq(ntfs_volume_mkdir_p(v, "Windows/System32/config"), 0);
        ck_assert_int_eq(ntfs_volume_write_buffer(v, "Windows/System32/config/SYSTEM", "regf", 4), 0);
        v = ntfs_volume_close(v);
        d = offline_disk_close(d);
        ck_assert_str_eq(sh_output("ntfscat '%s' Windows/System32/config/SYSTEM", path), "regf");
}

/*
 * 64 MiB GPT disk (small, so that each test builds its own quickly):
 *   1  EFI system      8 MiB  (no file system)
 *   2  MSR             4 MiB
 *   3  basic data     16 MiB  NTFS "Data"
 *   4  basic data     16 MiB  NTFS with Windows/System32/config/SYSTEM
 *   5  recovery       rest    (no file system)
 */
#define DISK_MB 64
static char template_dir[64];

static void build_gpt_disk(const char *disk) {
        uint64_t first, sectors;

        SH_OK("rm -f '%s' && truncate -s %uM '%s'", disk, DISK_MB, disk);
        SH_OK("sgdisk -o -n1:2048:+8M -t1:EF00 -n2:0:+4M -t2:0C01 -n3:0:+16M -t3:0700 "
              "-n4:0:+16M -t4:0700 -n5:0:0 -t5:2700 '%s' >/dev/null 2>&1",
              disk);
        make_ntfs_raw(tmp_path("data.ntfs"), 16, "Data");
        make_windows_volume(tmp_path("windows.ntfs"), 16);
        sgdisk_info(disk, 3, &first, &sectors);
        dd_into(tmp_path("data.ntfs"), disk, first * 512);
        sgdisk_info(disk, 4, &first, &sectors);
        dd_into(tmp_path("windows.ntfs"), disk, first * 512);
}

/* sgdisk takes a second or more per run: the disk is built once, in the
 * parent process, and copied for each test. */
static void template_setup(void) {
        char saved[sizeof(disk_tmpdir)];

        strcpy(template_dir, "/tmp/oob-test-gpt.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(template_dir));
        strcpy(saved, disk_tmpdir);
        strcpy(disk_tmpdir, template_dir);
        build_gpt_disk(tmp_path("disk.raw"));
        strcpy(disk_tmpdir, saved);
}

static void template_teardown(void) {
        nftw(template_dir, disk_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_gpt_disk(const char *disk) {
        SH_OK("cp --sparse=always '%s/disk.raw' '%s' && cp '%s/data.ntfs' '%s'", template_dir, disk, template_dir,
              tmp_path("data.ntfs"));
}

static void check_gpt_layout(const char *layout_disk, const char *image) {
        static const PartitionKind kinds[] = { PARTITION_EFI, PARTITION_MSR, PARTITION_BASIC_DATA,
                                               PARTITION_BASIC_DATA, PARTITION_RECOVERY };
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ Partition *p = NULL;
        PartitionTable t = _PARTITION_TABLE_INVALID;
        size_t n = 0;

        ck_assert_int_eq(offline_disk_open(image, false, false, &d), 0);
        ck_assert_int_eq(disk_partitions(d, &t, &p, &n), 0);
        ck_assert_int_eq(t, PARTITION_TABLE_GPT);
        ck_assert_uint_eq(n, 5);
        for (size_t i = 0; i < n; i++) {
                uint64_t first, sectors;

                sgdisk_info(layout_disk, (unsigned) i + 1, &first, &sectors);
                ck_assert_uint_eq(p[i].number, i + 1);
                ck_assert_uint_eq(p[i].offset, first * 512);
                ck_assert_uint_eq(p[i].size, sectors * 512);
                ck_assert_int_eq(p[i].kind, kinds[i]);
                ck_assert_int_eq(p[i].ntfs, i == 2 || i == 3);
                ck_assert(!p[i].bitlocker);
        }
}

START_TEST(test_crc32_golden) {
        ck_assert_uint_eq(crc32_ieee(0, "123456789", 9), 0xCBF43926U);
        ck_assert_uint_eq(crc32_ieee(0, "", 0), 0);
        /* Chaining equals one pass. */
        ck_assert_uint_eq(crc32_ieee(crc32_ieee(0, "1234", 4), "56789", 5), 0xCBF43926U);
}
END_TEST

START_TEST(test_string_tables) {
        ck_assert_str_eq(partition_table_to_string(PARTITION_TABLE_GPT), "gpt");
        ck_assert_str_eq(partition_table_to_string(PARTITION_TABLE_MBR), "mbr");
        ck_assert_str_eq(partition_kind_to_string(PARTITION_BASIC_DATA), "basic-data");
        ck_assert_int_eq(partition_kind_from_string("recovery"), PARTITION_RECOVERY);
        ck_assert_int_eq(partition_kind_from_string("nope"), -EINVAL);
        for (int k = 0; k < _PARTITION_KIND_MAX; k++)
                ck_assert_ptr_nonnull(partition_kind_to_string(k));
        ck_assert_ptr_null(partition_kind_to_string(_PARTITION_KIND_MAX));
}
END_TEST

START_TEST(test_gpt_qcow2_and_find_windows) {
        const char *disk = tmp_path("disk.raw"), *img = tmp_path("disk.qcow2");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        Partition w = {};

        make_gpt_disk(disk);
        raw_to_qcow2(disk, img);
        check_gpt_layout(disk, img);

        ck_assert_int_eq(offline_disk_open(img, false, false, &d), 0);
        ck_assert_int_eq(disk_find_windows(d, &w), 0);
        ck_assert_uint_eq(w.number, 4);
        ck_assert(w.ntfs);
}
END_TEST

START_TEST(test_gpt_backup_header) {
        const char *disk = tmp_path("disk.raw");
        uint8_t junk = 0xff;

        make_gpt_disk(disk);
        /* Damage the primary header's CRC-covered fields: the backup takes over. */
        poke(disk, 512 + 40, &junk, 1);
        check_gpt_layout(disk, disk);
}
END_TEST

START_TEST(test_gpt_entries_crc) {
        const char *disk = tmp_path("disk.raw");
        uint8_t junk = 0x5a;

        make_gpt_disk(disk);
        /* A byte of a partition name in the primary array: its CRC fails. */
        poke(disk, 1024 + 56 + 2, &junk, 1);
        check_gpt_layout(disk, disk);
}
END_TEST

START_TEST(test_gpt_both_headers_broken) {
        const char *disk = tmp_path("disk.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ Partition *p = NULL;
        uint8_t junk = 0xff;
        size_t n = 0;

        make_gpt_disk(disk);
        poke(disk, 512 + 40, &junk, 1);
        poke(disk, DISK_MB * MiB - 512 + 40, &junk, 1);
        ck_assert_int_eq(offline_disk_open(disk, false, false, &d), 0);
        /* Left with a protective MBR and no valid GPT. */
        ck_assert_int_eq(disk_partitions(d, NULL, &p, &n), -EPROTO);
}
END_TEST

START_TEST(test_mbr) {
        const char *gpt = tmp_path("gpt.raw"), *disk = tmp_path("mbr.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ Partition *p = NULL;
        PartitionTable t = _PARTITION_TABLE_INVALID;
        uint64_t first, sectors;
        Partition w = {};
        size_t n = 0;

        make_gpt_disk(gpt);
        SH_OK("cp '%s' '%s'", gpt, disk);
        /* sgdisk turns GPT partitions 1, 4 and 5 into MBR entries 1-3 (types
         * 0xef, 0x07, 0x27) and wipes the GPT. */
        SH_OK("sgdisk -m 1:4:5 '%s' >/dev/null 2>&1", disk);

        ck_assert_int_eq(offline_disk_open(disk, false, false, &d), 0);
        ck_assert_int_eq(disk_partitions(d, &t, &p, &n), 0);
        ck_assert_int_eq(t, PARTITION_TABLE_MBR);
        ck_assert_uint_eq(n, 3);
        ck_assert_int_eq(p[0].kind, PARTITION_EFI);
        ck_assert_int_eq(p[1].kind, PARTITION_BASIC_DATA);
        ck_assert_int_eq(p[2].kind, PARTITION_RECOVERY);
        for (size_t i = 0; i < n; i++)
                ck_assert_uint_eq(p[i].number, i + 1);
        sgdisk_info(gpt, 4, &first, &sectors);
        ck_assert_uint_eq(p[1].offset, first * 512);
        ck_assert_uint_eq(p[1].size, sectors * 512);
        ck_assert(p[1].ntfs);
        ck_assert(!p[0].ntfs && !p[2].ntfs);

        ck_assert_int_eq(disk_find_windows(d, &w), 0);
        ck_assert_uint_eq(w.number, 2);
}
END_TEST

START_TEST(test_bitlocker_partition) {
        const char *disk = tmp_path("disk.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ Partition *p = NULL;
        uint64_t first, sectors;
        Partition w = {};
        size_t n = 0;

        make_gpt_disk(disk);
        sgdisk_info(disk, 3, &first, &sectors);
        poke(disk, first * 512 + 3, "-FVE-FS-", 8);

        ck_assert_int_eq(offline_disk_open(disk, false, false, &d), 0);
        ck_assert_int_eq(disk_partitions(d, NULL, &p, &n), 0);
        ck_assert_uint_eq(n, 5);
        ck_assert(p[2].bitlocker);
        ck_assert(!p[2].ntfs);
        ck_assert(p[3].ntfs && !p[3].bitlocker);
        ck_assert_int_eq(disk_find_windows(d, &w), 0);
        ck_assert_uint_eq(w.number, 4);
}
END_TEST

START_TEST(test_no_windows) {
        const char *disk = tmp_path("disk.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        uint64_t first, sectors;
        Partition w = {};

        make_gpt_disk(disk);
        /* Partition 4 gets the plain "Data" volume too. */
        sgdisk_info(disk, 4, &first, &sectors);
        dd_into(tmp_path("data.ntfs"), disk, first * 512);
        ck_assert_int_eq(offline_disk_open(disk, false, false, &d), 0);
        ck_assert_int_eq(disk_find_windows(d, &w), -ENOENT);
}
END_TEST

START_TEST(test_no_table) {
        const char *vol = tmp_path("vol.raw"), *zero = tmp_path("zero.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL, *z = NULL;
        _cleanup_free_ Partition *p = NULL;
        size_t n = 0;

        /* A file system on the whole disk carries 55 AA too, but no table. */
        make_ntfs_raw(vol, 16, "Whole");
        ck_assert_int_eq(offline_disk_open(vol, false, false, &d), 0);
        ck_assert_int_eq(disk_partitions(d, NULL, &p, &n), -EPROTO);

        SH_OK("truncate -s 4M '%s'", zero);
        ck_assert_int_eq(offline_disk_open(zero, false, false, &z), 0);
        ck_assert_int_eq(disk_partitions(z, NULL, &p, &n), -EPROTO);
}
END_TEST

START_TEST(test_mbr_entry_outside_disk) {
        const char *disk = tmp_path("bad.raw");
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_free_ Partition *p = NULL;
        uint8_t mbr[512] = {};
        size_t n = 0;

        /* One NTFS entry starting at sector 2048 with 2^32-1 sectors. */
        mbr[446 + 4] = 0x07;
        mbr[446 + 8 + 1] = 0x08;
        memset(mbr + 446 + 12, 0xff, 4);
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        SH_OK("truncate -s 4M '%s'", disk);
        poke(disk, 0, mbr, sizeof(mbr));
        ck_assert_int_eq(offline_disk_open(disk, false, false, &d), 0);
        ck_assert_int_eq(disk_partitions(d, NULL, &p, &n), -EPROTO);
}
END_TEST

static Suite *partition_suite(void) {
        Suite *s = suite_create("partition");
        TCase *tc = tcase_create("tables");

        tcase_add_unchecked_fixture(tc, template_setup, template_teardown);
        tcase_add_checked_fixture(tc, disk_setup, disk_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_crc32_golden);
        tcase_add_test(tc, test_string_tables);
        tcase_add_test(tc, test_gpt_qcow2_and_find_windows);
        tcase_add_test(tc, test_gpt_backup_header);
        tcase_add_test(tc, test_gpt_entries_crc);
        tcase_add_test(tc, test_gpt_both_headers_broken);
        tcase_add_test(tc, test_mbr);
        tcase_add_test(tc, test_bitlocker_partition);
        tcase_add_test(tc, test_no_windows);
        tcase_add_test(tc, test_no_table);
        tcase_add_test(tc, test_mbr_entry_outside_disk);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(partition_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

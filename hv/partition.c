/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Partition tables of the offline disk: GPT (UEFI 2.x, chapter 5) first,
 * then the classic MBR. Everything read here is untrusted guest data: every
 * field is bounds-checked against the disk, the GPT header and entry array
 * are only used when their CRC-32s match, and sizes are capped.
 *
 * GPT: the primary header at LBA 1, else the backup header at the last LBA.
 * The logical sector size is found by looking for the header at 512 and at
 * 4096 bytes (qemu disks are 512; 4Kn disks put LBA 1 at 4096).
 *
 * MBR: the four primary entries. Extended partitions (types 0x05, 0x0f,
 * 0x85) are skipped, not followed: the logical partitions inside them are
 * not reported. Windows installs onto MBR disks only as primary partitions
 * in practice; a Windows volume inside an extended partition is not found.
 *
 * CRC-32 is computed here (a small table-driven IEEE CRC) rather than with
 * zlib's crc32(): zlib is not among the libraries the build links, and the
 * function is checked against the standard check value in the tests.
 */

#include <inttypes.h>

#include "hv-internal.h"

#define SECTOR_SIZE_MIN 512U
#define GPT_HEADER_SIZE_MIN 92U
#define GPT_ENTRY_SIZE_MIN 128U
/* UEFI requires room for at least 128 entries; nobody uses more than a few
 * hundred. Caps the entry array at 4096 * 4096 bytes = 16 MiB at worst. */
#define GPT_ENTRIES_MAX 4096U
#define GPT_ENTRY_SIZE_MAX 4096U

static const char *const partition_table_table[_PARTITION_TABLE_MAX] = {
        [PARTITION_TABLE_GPT] = "gpt",
        [PARTITION_TABLE_MBR] = "mbr",
};
DEFINE_STRING_TABLE_LOOKUP(partition_table, PartitionTable);

static const char *const partition_kind_table[_PARTITION_KIND_MAX] = {
        [PARTITION_EFI] = "efi",
        [PARTITION_BASIC_DATA] = "basic-data",
        [PARTITION_MSR] = "msr",
        [PARTITION_RECOVERY] = "recovery",
        [PARTITION_OTHER] = "other",
};
DEFINE_STRING_TABLE_LOOKUP(partition_kind, PartitionKind);

/* ---- CRC-32 ------------------------------------------------------------- */

static uint32_t crc32_table[256];
static bool crc32_table_ready;

static void crc32_table_init(void) {
        /* Reflected polynomial of x^32 + x^26 + ... + 1 (0x04C11DB7). */
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (unsigned k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ 0xEDB88320U : c >> 1;
                crc32_table[i] = c;
        }
        crc32_table_ready = true;
}

uint32_t crc32_ieee(uint32_t crc, const void *p, size_t n) {
        const uint8_t *b = p;

        if (!crc32_table_ready)
                crc32_table_init();
        crc = ~crc;
        while (n-- > 0)
                crc = crc32_table[(crc ^ *b++) & 0xFF] ^ (crc >> 8);
        return ~crc;
}

/* ---- little-endian fields ---------------------------------------------- */

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t le64(const uint8_t *p) {
        return (uint64_t) le32(p) | (uint64_t) le32(p + 4) << 32;
}

/* ---- boot sectors -------------------------------------------------------- */

BootSectorKind boot_sector_kind(const uint8_t sector[static 512]) {
        /* The OEM id at offset 3 of a volume boot record. BitLocker replaces
         * NTFS's with its own and keeps the rest of the volume encrypted. */
        if (memcmp(sector + 3, "NTFS    ", 8) == 0)
                return BOOT_SECTOR_NTFS;
        if (memcmp(sector + 3, "-FVE-FS-", 8) == 0)
                return BOOT_SECTOR_BITLOCKER;
        return BOOT_SECTOR_OTHER;
}

static int probe_boot_sector(OfflineDisk *d, Partition *p) {
        uint8_t sector[512];
        int r;

        p->ntfs = p->bitlocker = false;
        if (p->size < sizeof(sector))
                return 0;
        r = offline_disk_pread(d, sector, sizeof(sector), p->offset);
        if (r < 0)
                return r;
        switch (boot_sector_kind(sector)) {
        case BOOT_SECTOR_NTFS:
                p->ntfs = true;
                break;
        case BOOT_SECTOR_BITLOCKER:
                p->bitlocker = true;
                break;
        default:
                break;
        }
        return 0;
}

/* ---- GPT ------------------------------------------------------------------ */

/* On disk a GUID's first three fields are little-endian, the last two are
 * bytes in order: C12A7328-F81F-11D2-BA4B-00A0C93EC93B is stored as
 * 28 73 2A C1 1F F8 D2 11 BA 4B 00 A0 C9 3E C9 3B. */
static const struct {
        uint8_t guid[16];
        PartitionKind kind;
} gpt_types[] = {
        /* EFI system partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B */
        { { 0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B },
          PARTITION_EFI },
        /* Microsoft basic data, EBD0A0A2-B9E5-4433-87C0-68B6B72699C7 */
        { { 0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7 },
          PARTITION_BASIC_DATA },
        /* Microsoft reserved, E3C9E316-0B5C-4DB8-817D-F92DF00215AE */
        { { 0x16, 0xE3, 0xC9, 0xE3, 0x5C, 0x0B, 0xB8, 0x4D, 0x81, 0x7D, 0xF9, 0x2D, 0xF0, 0x02, 0x15, 0xAE },
          PARTITION_MSR },
        /* Windows recovery environment, DE94BBA4-06D1-4D40-A16A-BFD50179D6AC */
        { { 0xA4, 0xBB, 0x94, 0xDE, 0xD1, 0x06, 0x40, 0x4D, 0xA1, 0x6A, 0xBF, 0xD5, 0x01, 0x79, 0xD6, 0xAC },
          PARTITION_RECOVERY },
};

static PartitionKind gpt_kind(const uint8_t guid[16]) {
        for (size_t i = 0; i < ELEMENTSOF(gpt_types); i++)
                if (memcmp(gpt_types[i].guid, guid, 16) == 0)
                        return gpt_types[i].kind;
        return PARTITION_OTHER;
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/*
 * Read and verify the GPT header at lba and its entry array. Returns 0 with
 * the partitions, -EPROTO when this header is absent or invalid, other
 * errors for I/O.
 */
static int gpt_read(OfflineDisk *d, uint32_t ss, uint64_t lba, Partition **ret, size_t *ret_n) {
        _cleanup_free_ uint8_t *hdr = NULL, *entries = NULL;
        _cleanup_free_ Partition *parts = NULL;
        uint64_t disk_size = offline_disk_size(d), n_lbas = disk_size / ss;
        uint64_t entries_lba, first_usable, last_usable, array_bytes;
        uint32_t header_size, crc, n_entries, entry_size;
        size_t n = 0;
        int r;

        if (lba >= n_lbas)
                return -EPROTO;
        hdr = malloc(ss);
        if (!hdr)
                return -ENOMEM;
        r = offline_disk_pread(d, hdr, ss, lba * ss);
        if (r < 0)
                return r;
        if (memcmp(hdr, "EFI PART", 8) != 0)
                return -EPROTO;
        header_size = le32(hdr + 12);
        if (header_size < GPT_HEADER_SIZE_MIN || header_size > ss)
                return -EPROTO;
        crc = le32(hdr + 16);
        memset(hdr + 16, 0, 4);
        if (crc32_ieee(0, hdr, header_size) != crc) {
                log_debug("GPT header at LBA %" PRIu64 ": CRC mismatch", lba);
                return -EPROTO;
        }
        if (le64(hdr + 24) != lba)
                return -EPROTO;
        first_usable = le64(hdr + 40);
        last_usable = le64(hdr + 48);
        entries_lba = le64(hdr + 72);
        n_entries = le32(hdr + 80);
        entry_size = le32(hdr + 84);
        if (first_usable > last_usable || last_usable >= n_lbas)
                return -EPROTO;
        if (n_entries == 0 || n_entries > GPT_ENTRIES_MAX || entry_size < GPT_ENTRY_SIZE_MIN ||
            entry_size > GPT_ENTRY_SIZE_MAX || entry_size % 8 != 0)
                return -EPROTO;
        array_bytes = (uint64_t) n_entries * entry_size;
        if (entries_lba >= n_lbas || array_bytes > (n_lbas - entries_lba) * ss)
                return -EPROTO;

        entries = malloc(array_bytes);
        if (!entries)
                return -ENOMEM;
        r = offline_disk_pread(d, entries, array_bytes, entries_lba * ss);
        if (r < 0)
                return r;
        if (crc32_ieee(0, entries, array_bytes) != le32(hdr + 88)) {
                log_debug("GPT entries of header at LBA %" PRIu64 ": CRC mismatch", lba);
                return -EPROTO;
        }

        parts = calloc(n_entries, sizeof(Partition));
        if (!parts)
                return -ENOMEM;
        for (uint32_t i = 0; i < n_entries; i++) {
                const uint8_t *e = entries + (size_t) i * entry_size;
                uint64_t first = le64(e + 32), last = le64(e + 40);

                if (all_zero(e, 16))
                        continue;       /* unused entry */
                if (first > last || first < first_usable || last > last_usable) {
                        log_debug("GPT entry %" PRIu32 " out of the usable range", i + 1);
                        return -EPROTO;
                }
                parts[n++] = (Partition) {
                        .number = i + 1,
                        .offset = first * ss,
                        .size = (last - first + 1) * ss,
                        .kind = gpt_kind(e),
                };
        }
        *ret_n = n;
        *ret = TAKE_PTR(parts);
        return 0;
}

static int gpt_partitions(OfflineDisk *d, Partition **ret, size_t *ret_n) {
        static const uint32_t sector_sizes[] = { 512, 4096 };
        uint64_t disk_size = offline_disk_size(d);
        int r = -EPROTO;

        for (size_t i = 0; i < ELEMENTSOF(sector_sizes); i++) {
                uint32_t ss = sector_sizes[i];

                if (disk_size < 3 * (uint64_t) ss)
                        continue;
                r = gpt_read(d, ss, 1, ret, ret_n);
                if (r != -EPROTO)
                        return r;
                /* The primary is damaged: the backup header sits in the last LBA. */
                r = gpt_read(d, ss, disk_size / ss - 1, ret, ret_n);
                if (r != -EPROTO) {
                        if (r >= 0)
                                log_debug("Primary GPT header invalid, using the backup");
                        return r;
                }
        }
        return r;
}

/* ---- MBR -------------------------------------------------------------------- */

enum {
        MBR_TYPE_EMPTY = 0x00,
        MBR_TYPE_EXTENDED_CHS = 0x05,
        MBR_TYPE_NTFS = 0x07,          /* also exFAT and HPFS, told apart by the boot sector */
        MBR_TYPE_EXTENDED_LBA = 0x0F,
        MBR_TYPE_WINRE = 0x27,         /* hidden NTFS: Windows RE */
        MBR_TYPE_EXTENDED_LINUX = 0x85,
        MBR_TYPE_GPT_PROTECTIVE = 0xEE,
        MBR_TYPE_EFI = 0xEF,
};

static PartitionKind mbr_kind(uint8_t type) {
        switch (type) {
        case MBR_TYPE_NTFS:
                return PARTITION_BASIC_DATA;
        case MBR_TYPE_EFI:
                return PARTITION_EFI;
        case MBR_TYPE_WINRE:
                return PARTITION_RECOVERY;
        default:
                return PARTITION_OTHER;
        }
}

static int mbr_partitions(OfflineDisk *d, Partition **ret, size_t *ret_n) {
        _cleanup_free_ Partition *parts = NULL;
        uint64_t n_sectors = offline_disk_size(d) / SECTOR_SIZE_MIN;
        uint8_t mbr[512];
        size_t n = 0;
        int r;

        if (n_sectors < 1)
                return -EPROTO;
        r = offline_disk_pread(d, mbr, sizeof(mbr), 0);
        if (r < 0)
                return r;
        if (mbr[510] != 0x55 || mbr[511] != 0xAA)
                return -EPROTO;
        /* A volume boot record (a whole-disk file system) carries the same
         * signature; its bytes at 446 are boot code, not partitions. */
        if (boot_sector_kind(mbr) != BOOT_SECTOR_OTHER)
                return -EPROTO;
        for (size_t i = 0; i < 4; i++) {
                const uint8_t *e = mbr + 446 + 16 * i;
                if (e[0] != 0x00 && e[0] != 0x80)
                        return -EPROTO;         /* not a partition table */
        }

        parts = calloc(4, sizeof(Partition));
        if (!parts)
                return -ENOMEM;
        for (unsigned i = 0; i < 4; i++) {
                const uint8_t *e = mbr + 446 + 16 * i;
                uint8_t type = e[4];
                uint64_t start = le32(e + 8), count = le32(e + 12);

                switch (type) {
                case MBR_TYPE_EMPTY:
                        continue;
                case MBR_TYPE_GPT_PROTECTIVE:
                        /* A protective MBR whose GPT did not verify. */
                        log_debug("Protective MBR without a valid GPT");
                        return -EPROTO;
                case MBR_TYPE_EXTENDED_CHS:
                case MBR_TYPE_EXTENDED_LBA:
                case MBR_TYPE_EXTENDED_LINUX:
                        log_debug("MBR entry %u: extended partition, logical partitions not read", i + 1);
                        continue;
                default:
                        break;
                }
                if (count == 0)
                        continue;
                if (start == 0 || start >= n_sectors || count > n_sectors - start) {
                        log_debug("MBR entry %u outside the disk", i + 1);
                        return -EPROTO;
                }
                parts[n++] = (Partition) {
                        .number = i + 1,
                        .offset = start * SECTOR_SIZE_MIN,
                        .size = count * SECTOR_SIZE_MIN,
                        .kind = mbr_kind(type),
                };
        }
        *ret_n = n;
        *ret = TAKE_PTR(parts);
        return 0;
}

int disk_partitions(OfflineDisk *d, PartitionTable *ret_table, Partition **ret, size_t *ret_n) {
        _cleanup_free_ Partition *parts = NULL;
        PartitionTable table = PARTITION_TABLE_GPT;
        size_t n = 0;
        int r;

        assert_return(d, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_n, -EINVAL);

        r = gpt_partitions(d, &parts, &n);
        if (r == -EPROTO) {
                table = PARTITION_TABLE_MBR;
                r = mbr_partitions(d, &parts, &n);
        }
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                r = probe_boot_sector(d, &parts[i]);
                if (r < 0)
                        return r;
        }
        if (ret_table)
                *ret_table = table;
        *ret_n = n;
        *ret = TAKE_PTR(parts);
        return 0;
}

/* ---- the Windows volume -------------------------------------------------- */

int disk_find_windows(OfflineDisk *d, Partition *ret) {
        _cleanup_free_ Partition *parts = NULL;
        size_t n = 0;
        int r;

        assert_return(d, -EINVAL);
        assert_return(ret, -EINVAL);

        r = disk_partitions(d, NULL, &parts, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
                NtfsStat st = {};

                if (!parts[i].ntfs)
                        continue;       /* BitLocker volumes cannot be looked into */
                r = ntfs_volume_open(d, &parts[i], false, &v, NULL);
                if (r < 0) {
                        log_debug_errno(r, "Partition %u: cannot mount NTFS: %m", parts[i].number);
                        continue;
                }
                r = ntfs_volume_stat(v, "Windows/System32/config/SYSTEM", &st);
                if (r >= 0) {
                        bool is_dir = st.is_dir;

                        ntfs_stat_done(&st);
                        if (!is_dir) {
                                *ret = parts[i];
                                return 0;
                        }
                }
        }
        return -ENOENT;
}

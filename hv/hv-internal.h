/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * hv/ room-private: what nbd.c, partition.c and ntfs.c share. No other room
 * includes this; the unit tests of hv/ may.
 */

#include "hv.h"

/* ---- nbd.c ---------------------------------------------------------------- */

bool offline_disk_is_writable(const OfflineDisk *d);
/* The image path the disk was opened with (for debug messages and device names). */
const char *offline_disk_image(const OfflineDisk *d);

/* ---- partition.c --------------------------------------------------------- */

/* CRC-32 as GPT uses it (IEEE 802.3, reflected, init and final xor ~0):
 * crc32_ieee(0, "123456789", 9) == 0xCBF43926. Chain by passing the result. */
uint32_t crc32_ieee(uint32_t crc, const void *p, size_t n);

/* What the first sector of a partition says it holds. */
typedef enum BootSectorKind {
        BOOT_SECTOR_OTHER,
        BOOT_SECTOR_NTFS,              /* OEM id "NTFS    " */
        BOOT_SECTOR_BITLOCKER,         /* OEM id "-FVE-FS-" */
} BootSectorKind;
BootSectorKind boot_sector_kind(const uint8_t sector[static 512]);

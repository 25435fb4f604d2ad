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

/* ---- domain.c, event.c ----------------------------------------------------- */

/* virInitialize() and libvirt's error printing routed to our debug log;
 * once per process, called by every entry point that talks to libvirt. */
int libvirt_init(void);
/* The loop given to desktop_event_loop_setup(), or NULL before it. */
sd_event *desktop_event_loop(void);

/* The template of hv/desktop.xml that desktop_define() fills in. */
extern const char desktop_xml_template[];
/* Fill the template: def as given to desktop_define() (name and defaults
 * already applied by the caller: def->name set, memory and vCPUs non-zero);
 * uuid keeps a redefined domain's identity (or NULL); console_log is where
 * the serial console is logged on the host (or NULL: not logged). -EINVAL
 * for a value XML cannot carry (control characters). */
int desktop_render_xml(const DesktopDefinition *def, const char *uuid, const char *console_log, char **ret);

/* The <disk> element of libvirt's XML for a domain whose target is dev
 * ("vda"), its source file (unescaped), and the same element with the
 * source file replaced by path. libvirt formats its XML itself, so this
 * reads only what its formatter writes. -ENOENT when there is no such disk
 * or it has no file source, -EPROTO for XML it cannot read. */
int domain_xml_disk_source(const char *xml, const char *dev, char **ret_path);
int domain_xml_disk_with_source(const char *xml, const char *dev, const char *path, char **ret_disk_xml);
/* Whether the live XML says the guest agent's channel is connected. */
bool domain_xml_agent_connected(const char *xml);
/* The file of the <log> of the domain's first serial port, or -ENOENT. */
int domain_xml_console_log(const char *xml, char **ret_path);

/* The Hyper-V crash parameters, when a panic carries them:
 * crash_info_from_qemu_panic() reads the details of QEMU's GUEST_PANICKED
 * event as libvirt hands them out ({"action":"pause","info":{"type":"hyper-v",
 * "arg1":126,...}}; without "info": a pvpanic, reason "pvpanic");
 * crash_info_from_domain_log() finds the last "panic hyper-v: arg1='0x7e',
 * arg2=..." line libvirt writes into the domain's log (-ENOENT when there is
 * none). arg1 is the STOP code, arg2..arg5 its parameters. -EPROTO for
 * malformed input, -EFBIG over 64 KiB. */
int crash_info_from_qemu_panic(const char *details, CrashInfo *ret);
int crash_info_from_domain_log(const char *text, CrashInfo *ret);

/* desktop_logged_in_users()'s readers (domain.c), apart for the unit tests.
 * agent_info_command_enabled(): whether the agent's guest-info answer
 * lists command as enabled (1), or not or disabled (0); -EPROTO when the
 * answer is not one. guest_users_from_params(): the typed parameters of
 * virDomainGetGuestInfo(VIR_DOMAIN_GUEST_INFO_USERS) as names
 * ("DOMAIN\user" or "user"; an empty list for none), returning the count;
 * -EPROTO when "user.count" or a name is missing or the count is absurd. */
struct _virTypedParameter;
int agent_info_command_enabled(const char *reply, const char *command);
int guest_users_from_params(struct _virTypedParameter *params, int n, char ***ret_names);

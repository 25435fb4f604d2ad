/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * hv/: the virtual machine layer, mechanism only. This header covers the
 * desktop's virtual disks (issue 3); the libvirt domain joins it later.
 *
 *   qcow2 chains   through the qemu-img program (qcow2.c); a snapshot
 *                  boundary is an external overlay: O(1), no guest data copied
 *   offline disk   qemu-nbd started by libnbd with systemd socket activation
 *                  (nbd.c); no kernel nbd, no FUSE, no root
 *   partitions     GPT and MBR discovery over the NBD export (partition.c)
 *   NTFS           libntfs-3g mounted on a device whose operations go to
 *                  libnbd (ntfs.c), with the safety checks before any write
 *   registry       hivex over hive files copied out of and back into the
 *                  NTFS volume (registry.c)
 *
 * Only these files include libnbd, ntfs-3g and hivex headers. Errors:
 * -ENOENT missing file/path/key, -EEXIST exists, -ENOTDIR/-EISDIR, -EIO
 * device or tool failure, -EROFS opened read-only, -EBUSY the desktop is
 * running, -EPROTO unreadable partition table/filesystem/hive, plus the
 * refusals below. This room logs at debug only; callers log once.
 */

#include "lib.h"

/* ---- qcow2 chains (qemu-img) ----------------------------------------- */

typedef struct DiskLayer {
        char *path;                    /* absolute */
        char *format;                  /* "qcow2", "raw" */
        uint64_t virtual_size;         /* bytes seen by the guest */
        uint64_t actual_size;          /* bytes used on the host */
        char *backing;                 /* absolute backing path or NULL */
} DiskLayer;

/* The chain from the top image down to its base (qemu-img info --backing-chain). */
int disk_chain_info(const char *top, DiskLayer **ret, size_t *ret_n);
void disk_chain_free(DiskLayer *layers, size_t n);

/* New empty qcow2 image of size bytes. Never overwrites: -EEXIST when path
 * exists. */
int disk_create(const char *path, uint64_t size);
/* New qcow2 overlay on top of backing (stored as an absolute path, with its
 * format given explicitly). O(1). -EEXIST when overlay exists, -ENOENT when
 * backing does not. */
int disk_create_overlay(const char *backing, const char *overlay);
/* qemu-img check: 0 clean, -EUCLEAN leaks/corruption, -EIO failure,
 * -EOPNOTSUPP for a format without checks (raw). */
int disk_check(const char *path);
/* Merge overlay into its backing file (qemu-img commit): the only O(data) step. */
int disk_commit(const char *overlay);
/* Point overlay at a different backing file whose contents are identical
 * where it matters (qemu-img rebase -u). */
int disk_rebase_unsafe(const char *overlay, const char *new_backing);

/* -- added by the catalog helper (implemented in qcow2-rebase.c) -- */
/* Point overlay at new_backing and copy into it every cluster in which its
 * old and new backing chains differ (qemu-img rebase, safe mode), so that it
 * shows the same contents afterwards: O(data). Killed midway, the overlay
 * still shows the same contents through its old backing file. -ENOENT when
 * a file or a backing file of either chain is missing, -EINVAL when overlay
 * is not a qcow2 overlay, -ELOOP when new_backing builds on overlay. */
int disk_rebase(const char *overlay, const char *new_backing);

/* ---- offline access ------------------------------------------------------ */

typedef struct OfflineDisk OfflineDisk;

/* Serve image with qemu-nbd (socket activation through libnbd) and connect.
 * running: the caller's answer to "is the desktop using this disk now?";
 * a writable open of a running desktop's disk is refused with -EBUSY and
 * nothing is started. */
int offline_disk_open(const char *image, bool writable, bool running, OfflineDisk **ret);
OfflineDisk *offline_disk_close(OfflineDisk *d);   /* flushes, stops qemu-nbd */
DEFINE_TRIVIAL_CLEANUP_FUNC(OfflineDisk *, offline_disk_close);
uint64_t offline_disk_size(const OfflineDisk *d);
int offline_disk_pread(OfflineDisk *d, void *buf, size_t count, uint64_t offset);
int offline_disk_pwrite(OfflineDisk *d, const void *buf, size_t count, uint64_t offset);
int offline_disk_flush(OfflineDisk *d);

typedef enum PartitionTable { PARTITION_TABLE_GPT, PARTITION_TABLE_MBR, _PARTITION_TABLE_MAX,
                              _PARTITION_TABLE_INVALID = -EINVAL } PartitionTable;
typedef enum PartitionKind { PARTITION_EFI, PARTITION_BASIC_DATA, PARTITION_MSR, PARTITION_RECOVERY,
                             PARTITION_OTHER, _PARTITION_KIND_MAX, _PARTITION_KIND_INVALID = -EINVAL } PartitionKind;
const char *partition_table_to_string(PartitionTable t);   /* "gpt", "mbr" */
const char *partition_kind_to_string(PartitionKind k);     /* "efi", "basic-data", ... */

typedef struct Partition {
        unsigned number;               /* 1-based */
        uint64_t offset, size;         /* bytes */
        PartitionKind kind;
        bool ntfs;                     /* boot sector says NTFS */
        bool bitlocker;                /* boot sector says BitLocker ("-FVE-FS-") */
} Partition;

/* Read GPT (preferred; protective MBR) or MBR. -EPROTO when neither. */
int disk_partitions(OfflineDisk *d, PartitionTable *ret_table, Partition **ret, size_t *ret_n);

/* ---- NTFS --------------------------------------------------------------- */

typedef struct NtfsVolume NtfsVolume;

typedef enum VolumeRefusal {
        VOLUME_OK,
        VOLUME_HIBERNATED,             /* hiberfil.sys holds a hibernation image (also fast startup) */
        VOLUME_DIRTY,                  /* NTFS dirty flag or unclean $LogFile */
        VOLUME_BITLOCKER,              /* encrypted: cannot be patched offline */
        _VOLUME_REFUSAL_MAX,
        _VOLUME_REFUSAL_INVALID = -EINVAL,
} VolumeRefusal;
const char *volume_refusal_to_string(VolumeRefusal r);      /* "ok", "hibernated", ... */
/* One sentence for the admin: what it is and what to do about it. */
const char *volume_refusal_advice(VolumeRefusal r);

typedef struct VolumeState {
        VolumeRefusal refusal;
        char *label;
        uint64_t size, free;
        unsigned ntfs_major, ntfs_minor;
} VolumeState;

/* Mount the NTFS file system in partition p through libntfs-3g on libnbd.
 * Read-only opens always work on a readable volume (to inspect it); a
 * writable open first checks the state and refuses with -EPERM and
 * *ret_refusal set when it is hibernated, dirty or BitLocker, without
 * writing a single byte. A BitLocker volume is unreadable: refused the same
 * way read-only too. On success *ret_refusal (may be NULL) says what a
 * writable open would meet, VOLUME_OK for writable ones. -EROFS for a
 * writable open on a read-only OfflineDisk, -EPROTO when the boot sector
 * is not NTFS. */
int ntfs_volume_open(OfflineDisk *d, const Partition *p, bool writable, NtfsVolume **ret,
                     VolumeRefusal *ret_refusal);
NtfsVolume *ntfs_volume_close(NtfsVolume *v);      /* unmounts, syncs */
DEFINE_TRIVIAL_CLEANUP_FUNC(NtfsVolume *, ntfs_volume_close);
int ntfs_volume_state(NtfsVolume *v, VolumeState *ret);
void volume_state_done(VolumeState *s);

/*
 * Paths are '/'-separated, relative to the volume root, looked up
 * case-insensitively as Windows does ("windows/system32" finds
 * "Windows/System32"); names are created with the given case. Components
 * "..", "." and empty ones are refused (-EINVAL) as are ':' (streams) and
 * the characters Windows forbids in names.
 * (disk helper:) "" is the root. Also refused with -EINVAL: control
 * characters, names ending in '.' or ' ', DOS device names (CON, NUL, COM1,
 * LPT1.txt, ...), invalid UTF-8; -ENAMETOOLONG over 255 UTF-16 units or a
 * 4096-byte path. NTFS metadata files ($MFT, $Extend, ...) are -EPERM.
 * Junctions and other reparse points are not followed (-EOPNOTSUPP), and
 * files that are reparse points cannot be read (WOF-compressed system
 * files keep their data in another stream).
 */
typedef struct NtfsStat {
        bool is_dir;
        uint64_t size;
        char *name;                    /* the on-disk spelling of the last component */
} NtfsStat;

int ntfs_volume_stat(NtfsVolume *v, const char *path, NtfsStat *ret);
void ntfs_stat_done(NtfsStat *s);
int ntfs_volume_read_file(NtfsVolume *v, const char *path, size_t max_size, char **ret, size_t *ret_size);
/* Create parent directories as needed. */
int ntfs_volume_mkdir_p(NtfsVolume *v, const char *path);
/* Create or replace a regular file, streaming from a callback: read(userdata,
 * buf, size) returns bytes read, 0 at end, negative errno on error.
 * (disk helper:) The parent directory must exist (-ENOENT). A plain existing
 * file is truncated and rewritten (security descriptor, attributes and
 * streams kept); one with several hard links or a reparse point is replaced
 * by a new file with its security descriptor, written under a temporary
 * name and renamed over it (the other links keep the old data); a new file
 * gets its directory's security descriptor. On a reader error a new or
 * temporary file is removed, a file rewritten in place is left truncated:
 * roll back with the snapshot. */
typedef ssize_t (*NtfsReader)(void *userdata, void *buf, size_t size);
int ntfs_volume_write_file(NtfsVolume *v, const char *path, NtfsReader reader, void *userdata);
int ntfs_volume_write_buffer(NtfsVolume *v, const char *path, const void *data, size_t size);
/* Delete a file (not a directory); -ENOENT when absent. */
int ntfs_volume_unlink(NtfsVolume *v, const char *path);
/* List a directory's entries (Win32 names), NULL-terminated. */
int ntfs_volume_list(NtfsVolume *v, const char *path, char ***ret);

/* The Windows volume: the NTFS partition holding Windows/System32/config/SYSTEM. */
int disk_find_windows(OfflineDisk *d, Partition *ret);

/* -- added by the disk helper (implemented in ntfs.c, partition.c) -- */
/* The other half of the string tables above. */
PartitionTable partition_table_from_string(const char *s);
PartitionKind partition_kind_from_string(const char *s);
VolumeRefusal volume_refusal_from_string(const char *s);
/* (Not ntfs_volume_rename: libntfs-3g's volume.h declares that name.) */
/* Rename a file (not a directory), possibly into another existing directory;
 * an existing file at to is replaced. Not atomic (libntfs-3g has no journal):
 * the old to is deleted first, so after a crash the new contents are under
 * from or to, never lost. -ENOENT when from is absent, -EISDIR for
 * directories. */
int ntfs_volume_rename_file(NtfsVolume *v, const char *from, const char *to);
/* Remove an empty directory; -ENOTEMPTY otherwise, -ENOTDIR for files. */
int ntfs_volume_rmdir(NtfsVolume *v, const char *path);

/* ---- registry -------------------------------------------------------------- */

typedef struct RegistryHive RegistryHive;

/* Open a hive file of the volume (e.g. "Windows/System32/config/SYSTEM",
 * "Users/alice/NTUSER.DAT"): copied to a private temp file and opened with
 * hivex; writable requires a writable volume. */
int registry_hive_open(NtfsVolume *v, const char *path, bool writable, RegistryHive **ret);
/* Write the changed hive back into the volume (atomically as far as NTFS
 * allows: a new file, then a rename over the old one). */
int registry_hive_commit(RegistryHive *h);
RegistryHive *registry_hive_close(RegistryHive *h);   /* discards uncommitted changes */
DEFINE_TRIVIAL_CLEANUP_FUNC(RegistryHive *, registry_hive_close);

typedef enum RegistryType {
        REGISTRY_SZ = 1, REGISTRY_EXPAND_SZ = 2, REGISTRY_BINARY = 3, REGISTRY_DWORD = 4,
        REGISTRY_MULTI_SZ = 7, REGISTRY_QWORD = 11,
} RegistryType;                    /* the numeric values Windows uses */

typedef struct RegistryValue {
        RegistryType type;
        char **strings;                /* SZ/EXPAND_SZ: one; MULTI_SZ: many (UTF-8) */
        uint64_t number;               /* DWORD/QWORD */
        uint8_t *data;                 /* BINARY (and the raw bytes of any type) */
        size_t size;
} RegistryValue;
void registry_value_done(RegistryValue *v);

/* key: backslash-separated path below the hive root, case-insensitive;
 * in SYSTEM, "CurrentControlSet\..." is resolved through Select\Current. */
int registry_get(RegistryHive *h, const char *key, const char *name, RegistryValue *ret);
int registry_set(RegistryHive *h, const char *key, const char *name, const RegistryValue *v);  /* creates keys */
int registry_delete_value(RegistryHive *h, const char *key, const char *name);
int registry_delete_key(RegistryHive *h, const char *key);     /* recursively */

typedef struct WindowsInfo {
        char *product_name;            /* "Windows 10 Pro" */
        char *edition_id;              /* "Professional" */
        char *display_version;         /* "22H2" or NULL */
        uint64_t build;                /* CurrentBuildNumber, e.g. 19045 */
        uint64_t ubr;                  /* update build revision, 0 if absent */
} WindowsInfo;
/* Read from SOFTWARE\Microsoft\Windows NT\CurrentVersion of the offline volume. */
int windows_info_read(NtfsVolume *v, WindowsInfo *ret);
void windows_info_done(WindowsInfo *w);

/* ---- registry: hive files of the host (added by registry.c) ---------------- */

/* The same as registry_hive_open() on a hive file outside any volume (a
 * hive extracted for inspection, tests): copied to a private temp file too;
 * registry_hive_commit() replaces path atomically (temp file + rename). */
int registry_hive_open_file(const char *path, bool writable, RegistryHive **ret);

/* ---- the desktop domain (libvirt; domain.c, event.c) --------------------- */

/*
 * The desktop VM through libvirt (KVM/QEMU here, Xen through the same API
 * elsewhere). Only domain.c and event.c include libvirt headers; events are
 * delivered on the caller's sd-event loop (libvirt's event implementation is
 * registered backed by sd-event: no second thread).
 */

#include <systemd/sd-event.h>

typedef struct Desktop Desktop;

typedef struct DesktopOptions {
        const char *uri;               /* libvirt connection URI; default "qemu:///system" */
        const char *name;              /* domain name; default "oob-desktop" */
} DesktopOptions;

typedef enum DesktopState {
        DESKTOP_OFF,
        DESKTOP_RUNNING,
        DESKTOP_PAUSED,
        DESKTOP_CRASHED,               /* stopped after a panic, kept for evidence */
        DESKTOP_SHUTTING_DOWN,
        _DESKTOP_STATE_MAX,
        _DESKTOP_STATE_INVALID = -EINVAL,
} DesktopState;
const char *desktop_state_to_string(DesktopState s);   /* "off", "running", ... */
DesktopState desktop_state_from_string(const char *s);

typedef enum DesktopEventType {
        DESKTOP_EVENT_STARTED,
        DESKTOP_EVENT_STOPPED,         /* shut down, destroyed or powered off */
        DESKTOP_EVENT_CRASHED,         /* guest panic (pvpanic, Hyper-V crash MSRs) */
        DESKTOP_EVENT_WATCHDOG,        /* the watchdog fired: a hang */
        DESKTOP_EVENT_REBOOTED,
        DESKTOP_EVENT_AGENT_CONNECTED,
        DESKTOP_EVENT_AGENT_DISCONNECTED,
        _DESKTOP_EVENT_TYPE_MAX,
        _DESKTOP_EVENT_TYPE_INVALID = -EINVAL,
} DesktopEventType;
const char *desktop_event_type_to_string(DesktopEventType t);   /* "started", "crashed", ... */
DesktopEventType desktop_event_type_from_string(const char *s);

typedef struct CrashInfo {
        bool hyperv;                   /* the Hyper-V crash parameters are known */
        uint64_t stop_code;            /* BugCheck code, e.g. 0x7E */
        uint64_t params[4];            /* its four arguments */
        char *reason;                  /* what libvirt/QEMU said, e.g. "pvpanic" */
} CrashInfo;

typedef struct DesktopEvent {
        DesktopEventType type;
        uint64_t usec;                 /* CLOCK_REALTIME when it was received */
        CrashInfo crash;               /* DESKTOP_EVENT_CRASHED only */
} DesktopEvent;

typedef void (*DesktopEventHandler)(Desktop *d, const DesktopEvent *e, void *userdata);

/* Register libvirt's event implementation on this sd-event loop. Once per
 * process, before the first desktop_open(). */
int desktop_event_loop_setup(sd_event *e);

/* Connect to libvirt and look up the domain (-ENOENT if not defined). The
 * handler is called from the event loop for every event of this domain. */
int desktop_open(const DesktopOptions *o, DesktopEventHandler handler, void *userdata, Desktop **ret);
Desktop *desktop_close(Desktop *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Desktop *, desktop_close);

/* Define (or redefine) the desktop domain from the template shipped in
 * hv/desktop.xml. Tests and the demo boot the stand-in with a kernel and
 * initrd; a real Windows desktop boots its disk with UEFI. */
typedef struct DesktopDefinition {
        const char *name;
        const char *system_disk;       /* qcow2 active overlay */
        const char *data_disk;         /* user-data disk (qcow2), never snapshotted */
        unsigned memory_mib;
        unsigned vcpus;
        const char *kernel, *initrd, *cmdline;   /* direct kernel boot (stand-in) or NULL */
        bool kvm;                      /* domain type kvm, else qemu (TCG) */
} DesktopDefinition;
int desktop_define(const char *uri, const DesktopDefinition *def);
int desktop_undefine(const char *uri, const char *name);

int desktop_state(Desktop *d, DesktopState *ret);
int desktop_start(Desktop *d);
/* Force off now (virDomainDestroy). */
int desktop_destroy(Desktop *d);

/* Graceful shutdown, step by step on the event loop: ask the guest agent,
 * then ACPI, then destroy, each step given its timeout. done() is called
 * once with 0 when the desktop is off, or a negative errno. */
typedef void (*DesktopDoneCallback)(Desktop *d, int error, void *userdata);
int desktop_shutdown(Desktop *d, sd_event *e, unsigned agent_timeout_sec, unsigned acpi_timeout_sec,
                     DesktopDoneCallback done, void *userdata);

/* guest-ping through the QEMU guest agent; -ETIMEDOUT, -ENOTCONN. */
int desktop_agent_ping(Desktop *d, unsigned timeout_sec);
/*
 * Who is logged in on the running desktop, as its guest agent says
 * (guest-get-users through libvirt's virDomainGetGuestInfo()): on Windows
 * every interactive session, a locked or disconnected one too; on Linux the
 * USER_PROCESS records of utmp. Returns the number of users (0: nobody) and,
 * when ret_names is not NULL, their names, NULL-terminated (an empty list
 * for 0), each "DOMAIN\user" when the agent names a domain, else "user".
 * Blocks the loop for the round trip, at most libvirt's agent timeout (5 s
 * by default). Errors: -ENOTCONN the desktop does not run or its agent is
 * not connected; -ETIMEDOUT the agent is connected but does not answer;
 * -EOPNOTSUPP the agent lacks guest-get-users or has it disabled;
 * -EPROTO an answer that cannot be read; other -errno from libvirt.
 */
int desktop_logged_in_users(Desktop *d, char ***ret_names);
/* Point the system disk at another overlay (domain must be off; -EBUSY). */
int desktop_set_system_disk(Desktop *d, const char *path);
/* The system and data disk paths as currently defined. */
int desktop_disks(Desktop *d, char **ret_system, char **ret_data);
/* Is the domain using this disk image now? (the answer the disk layer needs) */
int desktop_is_running(Desktop *d, bool *ret);
const char *desktop_name(const Desktop *d);
void crash_info_done(CrashInfo *c);

/* -- added by the domain helper (implemented in domain.c) -- */
/*
 * What callers of the functions above see:
 *   - A panic gives one CRASHED, then STOPPED: the template's on_crash
 *     destroy powers the domain off and the system disk is free.
 *     desktop_state() says "crashed" from the CRASHED event on until the
 *     next start or reset, also when the caller destroyed it. CRASHED is
 *     libvirt's crashed event, with the Hyper-V parameters from QEMU's
 *     GUEST_PANICKED event before it (libvirt-qemu monitor events), else
 *     from libvirt's domain log (on the host only); a pvpanic crash has
 *     reason "pvpanic" and no parameters. crash.reason is valid during the
 *     handler call only.
 *   - WATCHDOG leaves the desktop running (the template's action none): the
 *     caller decides, e.g. desktop_destroy().
 *   - AGENT_DISCONNECTED comes before STOPPED when the agent was connected
 *     (libvirt itself says nothing when a guest dies).
 *   - Events are delivered from the loop, never from inside a call; the
 *     handler may call desktop_close(). A connection lost under an open
 *     Desktop is reopened from the loop (calls meanwhile fail with
 *     -ENOTCONN); what happened meanwhile is made up from the state found
 *     (STARTED, CRASHED, STOPPED).
 *   - Calls block the loop for their round trip to libvirtd. desktop_agent_ping()
 *     and the agent step of desktop_shutdown() wait up to their timeout, and
 *     at least libvirt's own 5 s guest-sync when the agent hangs.
 *   - desktop_shutdown(): -EALREADY while one runs; the agent step is skipped
 *     when the agent is not connected or agent_timeout_sec is 0, the ACPI step
 *     when acpi_timeout_sec is 0; desktop_close() drops a pending shutdown
 *     without calling done(). desktop_state() says "shutting-down" meanwhile.
 *   - desktop_define() keeps the UUID of a domain it redefines; without a
 *     kernel the domain boots its disk with UEFI (libvirt's firmware='efi').
 *     desktop_undefine() refuses a running domain (-EBUSY) and keeps the disks.
 *   - desktop_destroy() of a desktop that is off is 0; desktop_start() of a
 *     running one -EBUSY; no libvirtd answering is -ECONNREFUSED.
 */
/* The file on the hypervisor host where the desktop's serial console is
 * logged (desktop_define() asks libvirt's virtlogd to, appending across
 * boots), or -ENOENT when it is not logged (a session daemon). */
int desktop_console_log(Desktop *d, char **ret);

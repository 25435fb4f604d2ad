/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libntfs-3g adapter: the Windows volume of the sleeping disk, mounted
 * in this process on an ntfs_device whose operations are reads and writes
 * of the OfflineDisk (libnbd) at the partition's offset.
 *
 * Safety before writing. A writable open first mounts read-only and looks:
 *   - BitLocker boot sector                        -> VOLUME_BITLOCKER
 *   - hiberfil.sys holding a hibernation image     -> VOLUME_HIBERNATED
 *     (Fast Startup is a hibernation of the kernel session, same file)
 *   - $LogFile restart page 2.0: Windows kept metadata cached for a fast
 *     restart                                      -> VOLUME_HIBERNATED
 *   - the NTFS dirty flag, or a $LogFile that is not clean
 *                                                  -> VOLUME_DIRTY
 * and only when all is well unmounts and mounts again read-write, with none
 * of the flags that let libntfs-3g "fix" things (NTFS_MNT_RECOVER resets an
 * unclean journal, NTFS_MNT_IGNORE_HIBERFILE writes over a hibernated
 * system). libntfs-3g's own checks in the read-write mount then repeat ours.
 * A refused volume has not been written to: the read-only mount opens the
 * device O_RDONLY and every write through it fails.
 *
 * Names: lookups are case-insensitive (the volume's own $UpCase table, as
 * Windows compares), names are created as given (POSIX namespace, as
 * ntfs-3g creates them; Windows reads them like any other). Files created
 * here get the security descriptor of the directory they are created in,
 * not libntfs-3g's default "Everyone: full control" one.
 */

#include <assert.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include <ntfs-3g/attrib.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/logfile.h>
#include <ntfs-3g/logging.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

#include "hv-internal.h"

/* Write granularity: large contiguous device writes, few metadata updates. */
#define NTFS_WRITE_CHUNK (1U * 1024U * 1024U)
#define NTFS_PATH_MAX 4096U
#define HIBERFIL_HEADER_SIZE 4096U

static const char *const volume_refusal_table[_VOLUME_REFUSAL_MAX] = {
        [VOLUME_OK] = "ok",
        [VOLUME_HIBERNATED] = "hibernated",
        [VOLUME_DIRTY] = "dirty",
        [VOLUME_BITLOCKER] = "bitlocker",
};
DEFINE_STRING_TABLE_LOOKUP(volume_refusal, VolumeRefusal);

static const char *const volume_refusal_advice_table[_VOLUME_REFUSAL_MAX] = {
        [VOLUME_OK] = "The volume is cleanly shut down and can be patched offline.",
        [VOLUME_HIBERNATED] = "Windows is hibernated or shut down with Fast Startup; boot it and shut it down "
                              "fully (shutdown /s /t 0), or disable Fast Startup, then retry.",
        [VOLUME_DIRTY] = "The NTFS volume was not shut down cleanly or is marked for a check; boot Windows, "
                         "let it check the disk (chkdsk C: /f), shut it down fully (shutdown /s /t 0), then "
                         "retry.",
        [VOLUME_BITLOCKER] = "The volume is encrypted with BitLocker, which cannot be read or patched offline; "
                             "decrypt it (manage-bde -off C:) or apply the change from within Windows.",
};

const char *volume_refusal_advice(VolumeRefusal r) {
        if ((size_t) r >= ELEMENTSOF(volume_refusal_advice_table))
                return NULL;
        return volume_refusal_advice_table[r];
}

/* The ntfs_device's private data: a window of the OfflineDisk. */
typedef struct NbdDevice {
        OfflineDisk *disk;
        uint64_t offset, size;
        int64_t pos;
} NbdDevice;

struct NtfsVolume {
        OfflineDisk *disk;
        Partition partition;
        NbdDevice dev;
        char *dev_name;
        ntfs_volume *vol;
        bool writable;
        VolumeRefusal refusal;
};

/* ---- cleanup helpers for libntfs-3g objects --------------------------------- */

static void ntfs_inode_closep(ntfs_inode **p) {
        if (*p)
                (void) ntfs_inode_close(*p);
}

static void ntfs_attr_closep(ntfs_attr **p) {
        if (*p)
                ntfs_attr_close(*p);
}

static void ntfs_attr_put_search_ctxp(ntfs_attr_search_ctx **p) {
        if (*p)
                ntfs_attr_put_search_ctx(*p);
}

/* libntfs-3g reports errors in errno; make sure a failure never reads as success. */
static int errno_or(int fallback) {
        return errno > 0 ? -errno : fallback;
}

/* ---- logging ----------------------------------------------------------------- */

__attribute__((format(printf, 6, 0))) static int ntfs_log_to_debug(const char *function, const char *file,
                                                                     int line, u32 level, void *data,
                                                                     const char *format, va_list args) {
        char buf[1024];
        size_t n;

        if (log_get_max_level() < LOG_LEVEL_DEBUG)
                return 0;
        (void) vsnprintf(buf, sizeof(buf), format, args);
        n = strlen(buf);
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = 0;
        if (n > 0)
                log_debug("libntfs-3g: %s: %s", function, buf);
        return (int) n;
}

static void ntfs_log_setup(void) {
        static bool done;

        if (done)
                return;
        /* Without this libntfs-3g prints its errors on stderr; this room
         * only logs at debug level, its callers report. */
        ntfs_log_set_handler(ntfs_log_to_debug);
        done = true;
}

/* ---- the libnbd-backed device ------------------------------------------------- */

static int nbd_dev_open(struct ntfs_device *dev, int flags) {
        NbdDevice *nd = dev->d_private;

        if (NDevOpen(dev)) {
                errno = EBUSY;
                return -1;
        }
        if ((flags & O_ACCMODE) == O_RDONLY)
                NDevSetReadOnly(dev);
        else if (!offline_disk_is_writable(nd->disk)) {
                errno = EROFS;
                return -1;
        }
        nd->pos = 0;
        NDevSetOpen(dev);
        return 0;
}

static int nbd_dev_sync(struct ntfs_device *dev) {
        NbdDevice *nd = dev->d_private;
        int r;

        if (NDevReadOnly(dev) || !NDevDirty(dev))
                return 0;
        r = offline_disk_flush(nd->disk);
        if (r < 0) {
                errno = -r;
                return -1;
        }
        NDevClearDirty(dev);
        return 0;
}

static int nbd_dev_close(struct ntfs_device *dev) {
        if (!NDevOpen(dev)) {
                errno = EBADF;
                return -1;
        }
        if (nbd_dev_sync(dev) < 0)
                return -1;
        NDevClearOpen(dev);
        return 0;
}

static s64 nbd_dev_seek(struct ntfs_device *dev, s64 offset, int whence) {
        NbdDevice *nd = dev->d_private;
        int64_t base;

        switch (whence) {
        case SEEK_SET:
                base = 0;
                break;
        case SEEK_CUR:
                base = nd->pos;
                break;
        case SEEK_END:
                base = (int64_t) nd->size;
                break;
        default:
                errno = EINVAL;
                return -1;
        }
        if ((offset < 0 && base + offset < 0) || (offset > 0 && base > INT64_MAX - offset)) {
                errno = EINVAL;
                return -1;
        }
        nd->pos = base + offset;
        return nd->pos;
}

static s64 nbd_dev_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset) {
        NbdDevice *nd = dev->d_private;
        int r;

        if (count < 0 || offset < 0) {
                errno = EINVAL;
                return -1;
        }
        /* Like a file: reads end at the end of the partition. */
        if ((uint64_t) offset >= nd->size)
                return 0;
        count = (s64) MIN((uint64_t) count, nd->size - (uint64_t) offset);
        r = offline_disk_pread(nd->disk, buf, (size_t) count, nd->offset + (uint64_t) offset);
        if (r < 0) {
                errno = -r;
                return -1;
        }
        return count;
}

static s64 nbd_dev_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset) {
        NbdDevice *nd = dev->d_private;
        int r;

        if (NDevReadOnly(dev)) {
                errno = EROFS;
                return -1;
        }
        if (count < 0 || offset < 0) {
                errno = EINVAL;
                return -1;
        }
        if ((uint64_t) offset >= nd->size) {
                errno = ENOSPC;
                return -1;
        }
        count = (s64) MIN((uint64_t) count, nd->size - (uint64_t) offset);
        NDevSetDirty(dev);
        r = offline_disk_pwrite(nd->disk, buf, (size_t) count, nd->offset + (uint64_t) offset);
        if (r < 0) {
                errno = -r;
                return -1;
        }
        return count;
}

static s64 nbd_dev_read(struct ntfs_device *dev, void *buf, s64 count) {
        NbdDevice *nd = dev->d_private;
        s64 n = nbd_dev_pread(dev, buf, count, nd->pos);

        if (n > 0)
                nd->pos += n;
        return n;
}

static s64 nbd_dev_write(struct ntfs_device *dev, const void *buf, s64 count) {
        NbdDevice *nd = dev->d_private;
        s64 n = nbd_dev_pwrite(dev, buf, count, nd->pos);

        if (n > 0)
                nd->pos += n;
        return n;
}

static int nbd_dev_stat(struct ntfs_device *dev, struct stat *st) {
        NbdDevice *nd = dev->d_private;

        /* A regular file of the partition's size: libntfs-3g then asks no
         * block-device questions it would need ioctls for. */
        *st = (struct stat) {
                .st_mode = S_IFREG | 0600,
                .st_size = (off_t) nd->size,
                .st_blksize = 4096,
                .st_blocks = (blkcnt_t) (nd->size / 512),
        };
        return 0;
}

static int nbd_dev_ioctl(struct ntfs_device *dev, unsigned long request, void *argp) {
        NbdDevice *nd = dev->d_private;

        switch (request) {
        case BLKGETSIZE64:
                *(uint64_t *) argp = nd->size;
                return 0;
        case BLKGETSIZE:
                *(unsigned long *) argp = (unsigned long) (nd->size / 512);
                return 0;
        case BLKSSZGET:
                *(int *) argp = 512;
                return 0;
        case BLKBSZSET:
                return 0;
        default:
                errno = ENOTTY;
                return -1;
        }
}

/* libntfs-3g takes a non-const pointer but never writes through it. */
static const struct ntfs_device_operations nbd_device_ops = {
        .open = nbd_dev_open,
        .close = nbd_dev_close,
        .seek = nbd_dev_seek,
        .read = nbd_dev_read,
        .write = nbd_dev_write,
        .pread = nbd_dev_pread,
        .pwrite = nbd_dev_pwrite,
        .sync = nbd_dev_sync,
        .stat = nbd_dev_stat,
        .ioctl = nbd_dev_ioctl,
};

/* ---- mounting and the safety checks ------------------------------------------ */

static int mount_volume(NtfsVolume *v, bool writable) {
        struct ntfs_device *dev;
        ntfs_volume *vol;

        assert(!v->vol);
        dev = ntfs_device_alloc(v->dev_name, 0, (struct ntfs_device_operations *) &nbd_device_ops, &v->dev);
        if (!dev)
                return errno_or(-ENOMEM);
        /* NTFS_MNT_NONE for writing: no RECOVER, no IGNORE_HIBERFILE, no
         * MAY_RDONLY (a silent fallback to read-only would hide a refusal). */
        errno = 0;
        vol = ntfs_device_mount(dev, writable ? NTFS_MNT_NONE : NTFS_MNT_RDONLY);
        if (!vol) {
                int r = errno_or(-EIO);

                (void) ntfs_device_free(dev);
                log_debug_errno(r, "Mounting %s %s failed: %m", v->dev_name, writable ? "read-write" : "read-only");
                if (r == -EINVAL)
                        return -EPROTO;         /* not an NTFS boot sector */
                return r;
        }
        /* The volume stays case-sensitive, as ntfs-3g's tools use it (in
         * its ignore-case mode ntfs_readdir() lowercases every name); only
         * lookups ignore case, see lookup_name(). Hidden files are files. */
        NVolSetCaseSensitive(vol);
        (void) ntfs_set_shown_files(vol, false, true, false);
        v->vol = vol;
        return 0;
}

static void umount_volume(NtfsVolume *v) {
        if (!v->vol)
                return;
        if (ntfs_umount(v->vol, false) < 0)
                log_debug_errno(errno_or(-EIO), "Unmounting %s failed: %m", v->dev_name);
        v->vol = NULL;
}

/* Look name up in dir the way Windows does: ntfs_inode_lookup_by_name()
 * collates through the volume's $UpCase table and accepts a case-insensitive
 * match (an exact one first) while the volume is not flagged case-sensitive. */
static u64 lookup_name(ntfs_inode *dir, const ntfschar *uname, int ulen) {
        ntfs_volume *vol = dir->vol;
        u64 mref;
        int saved;

        NVolClearCaseSensitive(vol);
        mref = ntfs_inode_lookup_by_name(dir, uname, ulen);
        saved = errno;
        NVolSetCaseSensitive(vol);
        errno = saved;
        return mref;
}

static bool inode_is_dir(const ntfs_inode *ni) {
        return ni->mrec->flags & MFT_RECORD_IS_DIRECTORY;
}

static bool inode_is_reparse(const ntfs_inode *ni) {
        return ni->flags & FILE_ATTR_REPARSE_POINT;
}

/* hiberfil.sys in the root. The first four bytes of a hibernation image
 * are its signature: "hibr"/"HIBR" while hibernated (Fast Startup too),
 * "wake"/"WAKE" while being resumed, "rstr"/"RSTR" while restoring. A file
 * cleared by a full shutdown starts with zeroes. */
static int check_hiberfile(ntfs_volume *vol, VolumeRefusal *ret) {
        static const char *const signatures[] = { "hibr", "HIBR", "wake", "WAKE", "rstr", "RSTR" };
        _cleanup_(ntfs_inode_closep) ntfs_inode *root = NULL, *ni = NULL;
        _cleanup_(ntfs_attr_closep) ntfs_attr *na = NULL;
        _cleanup_free_ ntfschar *uname = NULL;
        uint8_t header[4] = {};
        int ulen;
        u64 mref;
        s64 n;

        *ret = VOLUME_OK;
        root = ntfs_inode_open(vol, FILE_root);
        if (!root)
                return errno_or(-EIO);
        ulen = ntfs_mbstoucs("hiberfil.sys", &uname);
        if (ulen < 0)
                return errno_or(-ENOMEM);
        errno = 0;
        mref = lookup_name(root, uname, ulen);
        if (mref == (u64) -1)
                return errno == ENOENT ? 0 : errno_or(-EIO);
        ni = ntfs_inode_open(vol, MREF(mref));
        if (!ni)
                return errno_or(-EIO);
        if (inode_is_dir(ni))
                return 0;
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na)
                return errno == ENOENT ? 0 : errno_or(-EIO);
        /* libntfs-3g refuses a read-write mount when hiberfil.sys is shorter
         * than its header (a "hibernated non-system partition"); report that
         * as what it is taken for rather than fail later. */
        if (na->data_size < HIBERFIL_HEADER_SIZE) {
                log_debug("hiberfil.sys is only %lld bytes", (long long) na->data_size);
                *ret = VOLUME_HIBERNATED;
                return 0;
        }
        n = ntfs_attr_pread(na, 0, sizeof(header), header);
        if (n != (s64) sizeof(header))
                return n < 0 ? errno_or(-EIO) : -EIO;
        for (size_t i = 0; i < ELEMENTSOF(signatures); i++)
                if (memcmp(header, signatures[i], 4) == 0) {
                        log_debug("hiberfil.sys starts with \"%s\"", signatures[i]);
                        *ret = VOLUME_HIBERNATED;
                        return 0;
                }
        return 0;
}

static int check_logfile(ntfs_volume *vol, VolumeRefusal *ret) {
        _cleanup_(ntfs_inode_closep) ntfs_inode *ni = NULL;
        _cleanup_(ntfs_attr_closep) ntfs_attr *na = NULL;
        RESTART_PAGE_HEADER *rp = NULL;
        bool ok;

        *ret = VOLUME_OK;
        ni = ntfs_inode_open(vol, FILE_LogFile);
        if (!ni)
                return errno_or(-EIO);
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na)
                return errno_or(-EIO);
        /* ntfs_check_logfile: false when the journal cannot be parsed;
         * ntfs_is_logfile_clean: false when it holds work to replay. */
        ok = ntfs_check_logfile(na, &rp) && ntfs_is_logfile_clean(na, rp);
        if (rp && sle16_to_cpu(rp->major_ver) == 2 && sle16_to_cpu(rp->minor_ver) == 0) {
                /* Windows 8 and later: metadata cached for a fast restart. */
                log_debug("$LogFile restart page version 2.0: Fast Startup");
                *ret = VOLUME_HIBERNATED;
        } else if (!ok) {
                log_debug("$LogFile is not clean");
                *ret = VOLUME_DIRTY;
        }
        free(rp);
        return 0;
}

/* Everything that makes a writable mount unsafe, most specific first. */
static int volume_inspect(ntfs_volume *vol, VolumeRefusal *ret) {
        VolumeRefusal hiber, log;
        int r;

        r = check_hiberfile(vol, &hiber);
        if (r < 0)
                return r;
        r = check_logfile(vol, &log);
        if (r < 0)
                return r;
        if (hiber != VOLUME_OK)
                *ret = hiber;
        else if (log == VOLUME_HIBERNATED)
                *ret = log;
        else if (vol->flags & VOLUME_IS_DIRTY) {
                log_debug("NTFS dirty flag set");
                *ret = VOLUME_DIRTY;
        } else
                *ret = log;
        return 0;
}

NtfsVolume *ntfs_volume_close(NtfsVolume *v) {
        if (!v)
                return NULL;
        umount_volume(v);
        free(v->dev_name);
        free(v);
        return NULL;
}

int ntfs_volume_open(OfflineDisk *d, const Partition *p, bool writable, NtfsVolume **ret,
                     VolumeRefusal *ret_refusal) {
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        uint8_t sector[512];
        VolumeRefusal refusal = VOLUME_OK;
        int r;

        assert_return(d, -EINVAL);
        assert_return(p, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(p->offset <= offline_disk_size(d) && p->size <= offline_disk_size(d) - p->offset, -EINVAL);

        if (ret_refusal)
                *ret_refusal = VOLUME_OK;
        if (writable && !offline_disk_is_writable(d))
                return -EROFS;
        ntfs_log_setup();

        /* The boot sector decides whether there is anything to mount. */
        if (p->size < sizeof(sector))
                return -EPROTO;
        r = offline_disk_pread(d, sector, sizeof(sector), p->offset);
        if (r < 0)
                return r;
        switch (boot_sector_kind(sector)) {
        case BOOT_SECTOR_BITLOCKER:
                if (ret_refusal)
                        *ret_refusal = VOLUME_BITLOCKER;
                return -EPERM;
        case BOOT_SECTOR_NTFS:
                break;
        default:
                return -EPROTO;
        }

        v = calloc(1, sizeof(NtfsVolume));
        if (!v)
                return -ENOMEM;
        v->disk = d;
        v->partition = *p;
        v->dev = (NbdDevice) { .disk = d, .offset = p->offset, .size = p->size };
        if (asprintf(&v->dev_name, "%s:%u", offline_disk_image(d), p->number) < 0) {
                v->dev_name = NULL;
                return -ENOMEM;
        }

        /* Always look read-only first; write only after looking. */
        r = mount_volume(v, false);
        if (r < 0)
                return r;
        r = volume_inspect(v->vol, &refusal);
        if (r < 0)
                return r;
        v->refusal = refusal;

        if (writable) {
                if (refusal != VOLUME_OK) {
                        log_debug("Refusing to write to %s: %s", v->dev_name, volume_refusal_to_string(refusal));
                        if (ret_refusal)
                                *ret_refusal = refusal;
                        return -EPERM;
                }
                umount_volume(v);
                r = mount_volume(v, true);
                /* libntfs-3g's own checks: EPERM for hibernation or cached
                 * metadata, EOPNOTSUPP for an unclean journal. */
                if (r == -EPERM || r == -EOPNOTSUPP) {
                        if (ret_refusal)
                                *ret_refusal = r == -EPERM ? VOLUME_HIBERNATED : VOLUME_DIRTY;
                        return -EPERM;
                }
                if (r < 0)
                        return r;
                v->writable = true;
        }

        if (ret_refusal)
                *ret_refusal = refusal;
        *ret = TAKE_PTR(v);
        return 0;
}

void volume_state_done(VolumeState *s) {
        if (!s)
                return;
        free(s->label);
        *s = (VolumeState) {};
}

int ntfs_volume_state(NtfsVolume *v, VolumeState *ret) {
        ntfs_volume *vol;
        char *label;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        vol = v->vol;
        if (ntfs_volume_get_free_space(vol) < 0)
                return errno_or(-EIO);
        label = strdup(vol->vol_name ?: "");
        if (!label)
                return -ENOMEM;
        *ret = (VolumeState) {
                .refusal = v->refusal,
                .label = label,
                .size = (uint64_t) vol->nr_clusters * vol->cluster_size,
                .free = (uint64_t) MAX(vol->free_clusters, (s64) 0) * vol->cluster_size,
                .ntfs_major = vol->major_ver,
                .ntfs_minor = vol->minor_ver,
        };
        return 0;
}

/* ---- paths ----------------------------------------------------------------------- */

/* CON, PRN, AUX, NUL, COM1-9, LPT1-9, alone or with an extension. */
static bool name_is_reserved(const char *name) {
        static const char *const reserved[] = { "CON", "PRN", "AUX", "NUL" };
        size_t base = strcspn(name, ".");

        if (base == 3) {
                for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                        if (strncasecmp(name, reserved[i], 3) == 0)
                                return true;
        } else if (base == 4 && name[3] >= '1' && name[3] <= '9')
                return strncasecmp(name, "COM", 3) == 0 || strncasecmp(name, "LPT", 3) == 0;
        return false;
}

static int name_check(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        for (const char *c = name; *c; c++)
                if ((unsigned char) *c < 0x20 || strchr("<>:\"\\|?*", *c))
                        return -EINVAL;
        /* Win32 strips trailing dots and spaces: such a name cannot be
         * opened from Windows. */
        if (name[n - 1] == '.' || name[n - 1] == ' ')
                return -EINVAL;
        if (name_is_reserved(name))
                return -EINVAL;
        return 0;
}

/* Split and check a volume path; "" is the root (no components). */
static int path_split(const char *path, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p = path;
        int r;

        if (!path)
                return -EINVAL;
        if (strlen(path) > NTFS_PATH_MAX)
                return -ENAMETOOLONG;
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        while (*path) {                 /* "" has no components */
                size_t len = strcspn(p, "/");
                _cleanup_free_ char *c = strndup(p, len);

                if (!c)
                        return -ENOMEM;
                r = name_check(c);
                if (r < 0)
                        return r;
                r = strv_extend(&l, c);
                if (r < 0)
                        return r;
                if (p[len] == 0)
                        break;
                p += len + 1;           /* a trailing '/' yields an empty, refused, component */
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int to_ucs(const char *name, ntfschar **ret, int *ret_len) {
        ntfschar *u = NULL;
        int len;

        errno = 0;
        len = ntfs_mbstoucs(name, &u);
        if (len < 0)
                return errno == ENOMEM ? -ENOMEM : -EINVAL;     /* not UTF-8 */
        if (len == 0 || len > NTFS_MAX_NAME_LEN) {
                free(u);
                return len == 0 ? -EINVAL : -ENAMETOOLONG;
        }
        *ret = u;
        *ret_len = len;
        return 0;
}

/* The child of dir named name (case-insensitively). System files (the
 * metadata files below FILE_first_user) are never handed out. */
static int child_open(ntfs_volume *vol, ntfs_inode *dir, const char *name, ntfs_inode **ret) {
        _cleanup_free_ ntfschar *u = NULL;
        ntfs_inode *ni;
        int len, r;
        u64 mref;

        if (!inode_is_dir(dir))
                return -ENOTDIR;
        /* A junction or directory symlink: its target is elsewhere, and
         * what is written below it would be invisible to Windows. */
        if (inode_is_reparse(dir))
                return -EOPNOTSUPP;
        r = to_ucs(name, &u, &len);
        if (r < 0)
                return r;
        errno = 0;
        mref = lookup_name(dir, u, len);
        if (mref == (u64) -1)
                return errno == ENOENT ? -ENOENT : errno_or(-EIO);
        if (MREF(mref) < FILE_first_user)
                return -EPERM;
        ni = ntfs_inode_open(vol, MREF(mref));
        if (!ni)
                return errno_or(-EIO);
        *ret = ni;
        return 0;
}

/* Open the inode of names[0..n) below the root. */
static int walk(NtfsVolume *v, char **names, size_t n, ntfs_inode **ret) {
        ntfs_inode *ni;
        int r;

        ni = ntfs_inode_open(v->vol, FILE_root);
        if (!ni)
                return errno_or(-EIO);
        for (size_t i = 0; i < n; i++) {
                ntfs_inode *child = NULL;

                r = child_open(v->vol, ni, names[i], &child);
                (void) ntfs_inode_close(ni);
                if (r < 0)
                        return r;
                ni = child;
        }
        *ret = ni;
        return 0;
}

/* The on-disk spelling of ni's name in directory dir_mft: the long (Win32
 * or POSIX) name matching want case-insensitively, else any long name. */
static int inode_name(ntfs_volume *vol, ntfs_inode *ni, u64 dir_mft, const char *want, char **ret) {
        _cleanup_(ntfs_attr_put_search_ctxp) ntfs_attr_search_ctx *ctx = NULL;
        _cleanup_free_ ntfschar *uwant = NULL;
        _cleanup_free_ ntfschar *best = NULL, *name = NULL;
        int best_len = 0, wlen, r;
        bool exact = false;
        char *s = NULL;

        r = to_ucs(want, &uwant, &wlen);
        if (r < 0)
                return r;
        ctx = ntfs_attr_get_search_ctx(ni, NULL);
        if (!ctx)
                return errno_or(-ENOMEM);
        while (!exact && ntfs_attr_lookup(AT_FILE_NAME, AT_UNNAMED, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
                const ATTR_RECORD *a = ctx->attr;
                const FILE_NAME_ATTR *fn;

                if (a->non_resident || le32_to_cpu(a->value_length) < sizeof(FILE_NAME_ATTR))
                        continue;
                fn = (const FILE_NAME_ATTR *) ((const u8 *) a + le16_to_cpu(a->value_offset));
                if (le32_to_cpu(a->value_length) < sizeof(FILE_NAME_ATTR) + fn->file_name_length * sizeof(ntfschar))
                        continue;
                if (MREF_LE(fn->parent_directory) != dir_mft || fn->file_name_type == FILE_NAME_DOS)
                        continue;
                /* Copied out of the packed record before use: aligned. */
                name = malloc(MAX(fn->file_name_length, (u8) 1) * sizeof(ntfschar));
                if (!name)
                        return -ENOMEM;
                memcpy(name, (const u8 *) fn + offsetof(FILE_NAME_ATTR, file_name),
                       fn->file_name_length * sizeof(ntfschar));
                exact = ntfs_names_are_equal(name, fn->file_name_length, uwant, wlen, IGNORE_CASE, vol->upcase,
                                             vol->upcase_len);
                if (exact || !best) {
                        free(best);
                        best = TAKE_PTR(name);
                        best_len = fn->file_name_length;
                }
        }
        if (!best) {
                /* Found through its DOS name only: report what was asked for. */
                s = strdup(want);
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        if (ntfs_ucstombs(best, best_len, &s, 0) < 0)
                return errno_or(-EINVAL);
        *ret = s;
        return 0;
}

/* Open the parent directory of names[0..n) and, when it exists, the last
 * component (*ret_child NULL and 0 returned when it does not). n >= 1. */
static int walk_parent(NtfsVolume *v, char **names, size_t n, ntfs_inode **ret_dir, ntfs_inode **ret_child) {
        ntfs_inode *dir = NULL, *child = NULL;
        int r;

        assert(n >= 1);
        r = walk(v, names, n - 1, &dir);
        if (r < 0)
                return r;
        r = child_open(v->vol, dir, names[n - 1], &child);
        if (r < 0 && r != -ENOENT) {
                (void) ntfs_inode_close(dir);
                return r;
        }
        *ret_dir = dir;
        *ret_child = child;
        return 0;
}

/* Hard links of ni, not counting DOS names (a Win32 name and its DOS alias
 * are one link). */
static int inode_links(ntfs_inode *ni) {
        _cleanup_(ntfs_attr_put_search_ctxp) ntfs_attr_search_ctx *ctx = NULL;
        int n = 0;

        ctx = ntfs_attr_get_search_ctx(ni, NULL);
        if (!ctx)
                return errno_or(-ENOMEM);
        while (ntfs_attr_lookup(AT_FILE_NAME, AT_UNNAMED, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
                const ATTR_RECORD *a = ctx->attr;
                const FILE_NAME_ATTR *fn;

                if (a->non_resident || le32_to_cpu(a->value_length) < sizeof(FILE_NAME_ATTR))
                        continue;
                fn = (const FILE_NAME_ATTR *) ((const u8 *) a + le16_to_cpu(a->value_offset));
                if (fn->file_name_type != FILE_NAME_DOS)
                        n++;
        }
        return n;
}

/* Remove the name of ni in dir. libntfs-3g's ntfs_delete() closes both
 * inodes whatever happens; so does this. */
static int delete_name(NtfsVolume *v, ntfs_inode *ni, ntfs_inode *dir, const char *name) {
        _cleanup_free_ ntfschar *u = NULL;
        int len, r;

        r = to_ucs(name, &u, &len);
        if (r < 0) {
                (void) ntfs_inode_close(ni);
                (void) ntfs_inode_close(dir);
                return r;
        }
        errno = 0;
        if (ntfs_delete(v->vol, NULL, ni, dir, u, (u8) len) < 0)
                return errno_or(-EIO);
        return 0;
}

void ntfs_stat_done(NtfsStat *s) {
        if (!s)
                return;
        free(s->name);
        *s = (NtfsStat) {};
}

static int data_size(ntfs_inode *ni, uint64_t *ret) {
        ntfs_attr *na;

        errno = 0;
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na) {
                if (errno != ENOENT)
                        return errno_or(-EIO);
                *ret = 0;
                return 0;
        }
        *ret = (uint64_t) MAX(na->data_size, (s64) 0);
        ntfs_attr_close(na);
        return 0;
}

int ntfs_volume_stat(NtfsVolume *v, const char *path, NtfsStat *ret) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(ntfs_inode_closep) ntfs_inode *dir = NULL, *ni = NULL;
        _cleanup_free_ char *name = NULL;
        uint64_t size = 0;
        size_t n;
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        r = path_split(path, &names);
        if (r < 0)
                return r;
        n = strv_length(names);
        if (n == 0) {
                *ret = (NtfsStat) { .is_dir = true, .name = strdup("") };
                return ret->name ? 0 : -ENOMEM;
        }
        r = walk_parent(v, names, n, &dir, &ni);
        if (r < 0)
                return r;
        if (!ni)
                return -ENOENT;
        if (!inode_is_dir(ni)) {
                r = data_size(ni, &size);
                if (r < 0)
                        return r;
        }
        r = inode_name(v->vol, ni, dir->mft_no, names[n - 1], &name);
        if (r < 0)
                return r;
        *ret = (NtfsStat) { .is_dir = inode_is_dir(ni), .size = size, .name = TAKE_PTR(name) };
        return 0;
}

int ntfs_volume_read_file(NtfsVolume *v, const char *path, size_t max_size, char **ret, size_t *ret_size) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(ntfs_inode_closep) ntfs_inode *ni = NULL;
        _cleanup_(ntfs_attr_closep) ntfs_attr *na = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t size, done = 0;
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_size, -EINVAL);

        r = path_split(path, &names);
        if (r < 0)
                return r;
        r = walk(v, names, strv_length(names), &ni);
        if (r < 0)
                return r;
        if (inode_is_dir(ni))
                return -EISDIR;
        /* A symlink, or a file whose data lives elsewhere (WOF-compressed
         * system files, deduplicated or cloud files): the unnamed stream is
         * not its contents. */
        if (inode_is_reparse(ni))
                return -EOPNOTSUPP;
        errno = 0;
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na && errno != ENOENT)
                return errno_or(-EIO);
        size = na ? (size_t) MAX(na->data_size, (s64) 0) : 0;
        if (size > max_size)
                return -EFBIG;
        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        while (done < size) {
                s64 k = ntfs_attr_pread(na, (s64) done, (s64) (size - done), buf + done);
                if (k <= 0)
                        return k < 0 ? errno_or(-EIO) : -EIO;
                done += (size_t) k;
        }
        buf[size] = 0;
        *ret_size = size;
        *ret = TAKE_PTR(buf);
        return 0;
}

int ntfs_volume_mkdir_p(NtfsVolume *v, const char *path) {
        _cleanup_strv_free_ char **names = NULL;
        ntfs_inode *dir;
        int r;

        assert_return(v, -EINVAL);

        if (!v->writable)
                return -EROFS;
        r = path_split(path, &names);
        if (r < 0)
                return r;
        dir = ntfs_inode_open(v->vol, FILE_root);
        if (!dir)
                return errno_or(-EIO);
        for (char **name = names; *name; name++) {
                ntfs_inode *child = NULL;

                r = child_open(v->vol, dir, *name, &child);
                if (r == -ENOENT) {
                        _cleanup_free_ ntfschar *u = NULL;
                        int len;

                        r = to_ucs(*name, &u, &len);
                        if (r >= 0) {
                                errno = 0;
                                child = ntfs_create(dir, dir->security_id, u, (u8) len, S_IFDIR);
                                if (!child)
                                        r = errno_or(-EIO);
                        }
                } else if (r >= 0 && !inode_is_dir(child))
                        r = -ENOTDIR;
                if (r < 0) {
                        if (child)
                                (void) ntfs_inode_close(child);
                        (void) ntfs_inode_close(dir);
                        return r;
                }
                if (ntfs_inode_close(dir) < 0) {
                        r = errno_or(-EIO);
                        (void) ntfs_inode_close(child);
                        return r;
                }
                dir = child;
        }
        if (ntfs_inode_close(dir) < 0)
                return errno_or(-EIO);
        return 0;
}

/* Fill buf from the reader: short only at the end of the data. */
static ssize_t read_chunk(NtfsReader reader, void *userdata, uint8_t *buf, size_t size) {
        size_t fill = 0;

        while (fill < size) {
                ssize_t k = reader(userdata, buf + fill, size - fill);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                if ((size_t) k > size - fill)
                        return -EINVAL;         /* the reader's bug */
                fill += (size_t) k;
        }
        return (ssize_t) fill;
}

static int stream_into(ntfs_attr *na, NtfsReader reader, void *userdata) {
        _cleanup_free_ uint8_t *buf = malloc(NTFS_WRITE_CHUNK);
        s64 pos = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t fill = read_chunk(reader, userdata, buf, NTFS_WRITE_CHUNK);
                size_t done = 0;

                if (fill < 0)
                        return (int) fill;
                while (done < (size_t) fill) {
                        s64 k = ntfs_attr_pwrite(na, pos, (s64) ((size_t) fill - done), buf + done);
                        if (k <= 0)
                                return k < 0 ? errno_or(-EIO) : -EIO;
                        done += (size_t) k;
                        pos += k;
                }
                if ((size_t) fill < NTFS_WRITE_CHUNK)
                        break;
        }
        /* Compressed files keep their last compression block pending. */
        if ((na->data_flags & ATTR_COMPRESSION_MASK) && ntfs_attr_pclose(na) < 0)
                return errno_or(-EIO);
        return 0;
}

/* Create name in dir (absent) with securid and stream the data into it.
 * Consumes dir. On failure the new file is removed again. */
static int write_new(NtfsVolume *v, ntfs_inode *dir, const char *name, le32 securid, NtfsReader reader,
                     void *userdata) {
        _cleanup_free_ ntfschar *u = NULL;
        ntfs_inode *ni;
        ntfs_attr *na;
        int len, r, k;

        r = to_ucs(name, &u, &len);
        if (r < 0) {
                (void) ntfs_inode_close(dir);
                return r;
        }
        errno = 0;
        ni = ntfs_create(dir, securid, u, (u8) len, S_IFREG);
        if (!ni) {
                r = errno_or(-EIO);
                (void) ntfs_inode_close(dir);
                return r;
        }
        errno = 0;
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na)
                r = errno_or(-EIO);
        else {
                r = stream_into(na, reader, userdata);
                ntfs_attr_close(na);
        }
        if (r < 0) {
                k = delete_name(v, ni, dir, name);
                if (k < 0)
                        log_debug_errno(k, "Failed to remove %s again: %m", name);
                return r;
        }
        /* Closing writes the MFT records back: errors here are write errors.
         * The file's directory entry is updated through the open dir: a
         * second, fresh copy of its MFT record would not yet hold the entry. */
        if (ntfs_inode_close_in_dir(ni, dir) < 0)
                r = errno_or(-EIO);
        if (ntfs_inode_close(dir) < 0 && r == 0)
                r = errno_or(-EIO);
        return r;
}

/* Truncate ni (a file in dir) and stream the new data into it. Consumes both. */
static int write_in_place(ntfs_inode *ni, ntfs_inode *dir, NtfsReader reader, void *userdata) {
        ntfs_attr *na;
        int r;

        errno = 0;
        na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
        if (!na)
                r = errno_or(-EIO);
        else if (ntfs_attr_truncate(na, 0) < 0)
                r = errno_or(-EIO);
        else
                r = stream_into(na, reader, userdata);
        if (na)
                ntfs_attr_close(na);
        if (r >= 0)
                ntfs_inode_update_times(ni, NTFS_UPDATE_MCTIME);
        if (ntfs_inode_close_in_dir(ni, dir) < 0 && r >= 0)
                r = errno_or(-EIO);
        if (ntfs_inode_close(dir) < 0 && r >= 0)
                r = errno_or(-EIO);
        return r;
}

static char *path_join_names(char **names, size_t n, const char *last) {
        size_t len = strlen(last) + 1;
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                len += strlen(names[i]) + 1;
        s = p = malloc(len);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++)
                p = stpcpy(stpcpy(p, names[i]), "/");
        strcpy(p, last);
        return s;
}

/*
 * Create or replace a file. An existing plain file is truncated and
 * rewritten in place, keeping its security descriptor, attributes, streams
 * and short name. An existing file that is a reparse point (WOF-compressed
 * system files, whose data lives in another stream) or has several hard
 * links (Windows' component store links system files into WinSxS) is
 * replaced by a new file with the same security descriptor, written under a
 * temporary name first and then renamed over it, so that the new contents
 * are what Windows reads and the other links keep the old ones. A new file
 * gets its directory's security descriptor.
 *
 * When the reader fails, a new or temporary file is removed again; a file
 * rewritten in place has been truncated and holds part of the new data.
 * Atomicity is the snapshot's job (the caller patches an overlay it can
 * throw away).
 */
int ntfs_volume_write_file(NtfsVolume *v, const char *path, NtfsReader reader, void *userdata) {
        static unsigned counter;
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_free_ char *name = NULL, *tmp_path = NULL, *final_path = NULL;
        ntfs_inode *dir = NULL, *ni = NULL;
        char tmp[64];
        le32 securid;
        size_t n;
        int links, r;

        assert_return(v, -EINVAL);
        assert_return(reader, -EINVAL);

        if (!v->writable)
                return -EROFS;
        r = path_split(path, &names);
        if (r < 0)
                return r;
        n = strv_length(names);
        if (n == 0)
                return -EISDIR;
        r = walk_parent(v, names, n, &dir, &ni);
        if (r < 0)
                return r;
        if (!ni)
                return write_new(v, dir, names[n - 1], dir->security_id, reader, userdata);

        if (inode_is_dir(ni))
                r = -EISDIR;
        else
                r = inode_name(v->vol, ni, dir->mft_no, names[n - 1], &name);
        links = r < 0 ? r : inode_links(ni);
        if (links < 0) {
                (void) ntfs_inode_close(ni);
                (void) ntfs_inode_close(dir);
                return links;
        }
        if (!inode_is_reparse(ni) && links <= 1)
                return write_in_place(ni, dir, reader, userdata);

        log_debug("Replacing %s by a new file (%s)", path, inode_is_reparse(ni) ? "reparse point" : "hard links");
        securid = ni->security_id;
        (void) ntfs_inode_close(ni);
        snprintf(tmp, sizeof(tmp), ".oob-new-%ld-%u.tmp", (long) getpid(), counter++);
        tmp_path = path_join_names(names, n - 1, tmp);
        final_path = path_join_names(names, n - 1, name);
        if (!tmp_path || !final_path) {
                (void) ntfs_inode_close(dir);
                return -ENOMEM;
        }
        r = write_new(v, dir, tmp, securid, reader, userdata);
        if (r < 0)
                return r;
        r = ntfs_volume_rename_file(v, tmp_path, final_path);
        if (r < 0) {
                int k = ntfs_volume_unlink(v, tmp_path);
                if (k < 0)
                        log_debug_errno(k, "Failed to remove %s again: %m", tmp_path);
        }
        return r;
}

typedef struct BufferReader {
        const uint8_t *data;
        size_t left;
} BufferReader;

static ssize_t buffer_read(void *userdata, void *buf, size_t size) {
        BufferReader *b = userdata;
        size_t k = MIN(size, b->left);

        memcpy(buf, b->data, k);
        b->data += k;
        b->left -= k;
        return (ssize_t) k;
}

int ntfs_volume_write_buffer(NtfsVolume *v, const char *path, const void *data, size_t size) {
        BufferReader b = { .data = data, .left = size };

        assert_return(data || size == 0, -EINVAL);
        return ntfs_volume_write_file(v, path, buffer_read, &b);
}

static int remove_entry(NtfsVolume *v, const char *path, bool want_dir) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_free_ char *name = NULL;
        ntfs_inode *dir = NULL, *ni = NULL;
        size_t n;
        int r;

        if (!v->writable)
                return -EROFS;
        r = path_split(path, &names);
        if (r < 0)
                return r;
        n = strv_length(names);
        if (n == 0)
                return -EBUSY;          /* the root */
        r = walk_parent(v, names, n, &dir, &ni);
        if (r < 0)
                return r;
        if (!ni)
                r = -ENOENT;
        else if (inode_is_dir(ni) != want_dir)
                r = want_dir ? -ENOTDIR : -EISDIR;
        else
                r = inode_name(v->vol, ni, dir->mft_no, names[n - 1], &name);
        if (r < 0) {
                if (ni)
                        (void) ntfs_inode_close(ni);
                (void) ntfs_inode_close(dir);
                return r;
        }
        return delete_name(v, ni, dir, name);
}

int ntfs_volume_unlink(NtfsVolume *v, const char *path) {
        assert_return(v, -EINVAL);
        return remove_entry(v, path, false);
}

int ntfs_volume_rmdir(NtfsVolume *v, const char *path) {
        assert_return(v, -EINVAL);
        return remove_entry(v, path, true);
}

int ntfs_volume_rename_file(NtfsVolume *v, const char *from, const char *to) {
        _cleanup_strv_free_ char **from_names = NULL, **to_names = NULL;
        _cleanup_free_ char *from_name = NULL, *to_existing = NULL;
        _cleanup_free_ ntfschar *u = NULL;
        ntfs_inode *from_dir = NULL, *ni = NULL, *to_dir = NULL, *to_ni = NULL;
        size_t nf, nt;
        u64 to_dir_mft;
        int len, r;

        assert_return(v, -EINVAL);

        if (!v->writable)
                return -EROFS;
        r = path_split(from, &from_names);
        if (r < 0)
                return r;
        r = path_split(to, &to_names);
        if (r < 0)
                return r;
        nf = strv_length(from_names);
        nt = strv_length(to_names);
        if (nf == 0 || nt == 0)
                return -EBUSY;
        r = to_ucs(to_names[nt - 1], &u, &len);
        if (r < 0)
                return r;

        r = walk_parent(v, from_names, nf, &from_dir, &ni);
        if (r < 0)
                return r;
        if (!ni) {
                r = -ENOENT;
                goto finish;
        }
        if (inode_is_dir(ni)) {
                r = -EISDIR;
                goto finish;
        }
        r = inode_name(v->vol, ni, from_dir->mft_no, from_names[nf - 1], &from_name);
        if (r < 0)
                goto finish;

        /* The target directory, shared with the source's when it is the
         * same: libntfs-3g must not see one MFT record opened twice. */
        r = walk(v, to_names, nt - 1, &to_dir);
        if (r < 0)
                goto finish;
        if (to_dir->mft_no == from_dir->mft_no) {
                (void) ntfs_inode_close(to_dir);
                to_dir = from_dir;
        }
        to_dir_mft = to_dir->mft_no;
        r = child_open(v->vol, to_dir, to_names[nt - 1], &to_ni);
        if (r < 0 && r != -ENOENT)
                goto finish;
        r = 0;
        if (to_ni && to_ni->mft_no == ni->mft_no) {
                /* Another name of the same file, e.g. a change of case. */
                (void) ntfs_inode_close(to_ni);
                to_ni = NULL;
                if (to_dir == from_dir && streq(from_name, to_names[nt - 1]))
                        goto finish;    /* nothing to do */
        } else if (to_ni) {
                bool shared = to_dir == from_dir;

                if (inode_is_dir(to_ni)) {
                        r = -EISDIR;
                        goto finish;
                }
                r = inode_name(v->vol, to_ni, to_dir_mft, to_names[nt - 1], &to_existing);
                if (r < 0)
                        goto finish;
                /* Deleting closes to_dir: open it again (and the source's
                 * directory with it when they are one). */
                r = delete_name(v, to_ni, to_dir, to_existing);
                to_ni = NULL;
                to_dir = NULL;
                if (shared)
                        from_dir = NULL;
                if (r < 0)
                        goto finish;
                to_dir = ntfs_inode_open(v->vol, to_dir_mft);
                if (!to_dir) {
                        r = errno_or(-EIO);
                        goto finish;
                }
                if (shared)
                        from_dir = to_dir;
        }

        errno = 0;
        if (ntfs_link(ni, to_dir, u, (u8) len) < 0) {
                r = errno_or(-EIO);
                goto finish;
        }
        /* Write the new entry's directory out before ni is closed (which
         * updates ni's entries through fresh copies of their directories),
         * then drop the old name; that closes ni and from_dir. */
        if (to_dir != from_dir) {
                ntfs_inode *t = TAKE_PTR(to_dir);

                if (ntfs_inode_close(t) < 0) {
                        r = errno_or(-EIO);
                        goto finish;
                }
        } else
                to_dir = NULL;
        r = delete_name(v, ni, from_dir, from_name);
        ni = from_dir = NULL;

finish:
        if (to_ni)
                (void) ntfs_inode_close(to_ni);
        if (to_dir && to_dir != from_dir)
                (void) ntfs_inode_close(to_dir);
        if (ni)
                (void) ntfs_inode_close(ni);
        if (from_dir)
                (void) ntfs_inode_close(from_dir);
        return r;
}

/* ---- listing ------------------------------------------------------------------------ */

/* Directories beyond this are refused rather than listed (WinSxS, the
 * largest on a Windows system, holds some tens of thousands). */
#define NTFS_LIST_MAX (1024U * 1024U)

typedef struct ListContext {
        char **names;
        size_t n, allocated;
        int error;
} ListContext;

static int list_filldir(void *dirent, const ntfschar *name, const int name_len, const int name_type,
                        const s64 pos, const MFT_REF mref, const unsigned dt_type) {
        ListContext *c = dirent;
        char *s = NULL;

        /* DOS 8.3 aliases duplicate a long name; "." and ".." are made up
         * by ntfs_readdir; metadata files ($MFT, ...) are not files. */
        if (name_type == FILE_NAME_DOS)
                return 0;
        if (MREF(mref) < FILE_first_user)
                return 0;
        if ((name_len == 1 || name_len == 2) && name[0] == const_cpu_to_le16('.') &&
            (name_len == 1 || name[1] == const_cpu_to_le16('.')))
                return 0;
        if (c->n + 1 >= NTFS_LIST_MAX) {
                c->error = -EFBIG;
                return -1;
        }
        if (ntfs_ucstombs(name, name_len, &s, 0) < 0) {
                /* Unpaired surrogates have no UTF-8 form. */
                log_debug("Skipping a directory entry whose name is not valid UTF-16");
                return 0;
        }
        if (c->n + 2 > c->allocated) {
                size_t a = MAX(c->allocated * 2, (size_t) 64);
                char **l = realloc(c->names, a * sizeof(char *));
                if (!l) {
                        free(s);
                        c->error = -ENOMEM;
                        return -1;
                }
                c->names = l;
                c->allocated = a;
        }
        c->names[c->n++] = s;
        c->names[c->n] = NULL;
        return 0;
}

int ntfs_volume_list(NtfsVolume *v, const char *path, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(ntfs_inode_closep) ntfs_inode *ni = NULL;
        ListContext c = {};
        s64 pos = 0;
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        r = path_split(path, &names);
        if (r < 0)
                return r;
        r = walk(v, names, strv_length(names), &ni);
        if (r < 0)
                return r;
        if (!inode_is_dir(ni))
                return -ENOTDIR;
        if (inode_is_reparse(ni))
                return -EOPNOTSUPP;
        errno = 0;
        r = ntfs_readdir(ni, &pos, &c, list_filldir);
        if (r < 0 || c.error < 0) {
                strv_free(c.names);
                return c.error < 0 ? c.error : errno_or(-EIO);
        }
        if (!c.names) {
                c.names = calloc(1, sizeof(char *));
                if (!c.names)
                        return -ENOMEM;
        }
        *ret = c.names;
        return 0;
}

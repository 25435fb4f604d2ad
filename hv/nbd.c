/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libnbd adapter: the sleeping desktop's disk image served by qemu-nbd,
 * which libnbd starts as its own child with systemd socket activation (it
 * creates the socket, passes it in LISTEN_FDS, and kills the child when the
 * handle is closed). Nothing needs root, the kernel nbd module or a mount.
 *
 * qemu-nbd's command line, and why:
 *   -f FORMAT         never let qemu probe (see qcow2.c); the format comes
 *                     from the image's first bytes, qcow2 or else raw
 *   --cache=writeback writes land in the host page cache and are made durable
 *                     by NBD_CMD_FLUSH (offline_disk_flush, and at close);
 *                     this is also qemu-nbd's default, spelled out
 *   -r                for read-only opens: qemu-nbd then refuses writes too
 *   no -k/-p/-b/-t    with socket activation the socket is given, and
 *                     without --persistent qemu-nbd exits after our one
 *                     connection ends
 * A read-only open of a running desktop's disk uses --image-opts with
 * force-share=on (what qemu-img -U does), since the running QEMU holds the
 * image's write lock. A writable open is refused before anything starts
 * when the caller says the desktop runs, and qemu's image locking refuses
 * it again (-EBUSY) when the caller was wrong.
 */

#include <fcntl.h>
#include <libnbd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "hv-internal.h"

/* qemu-nbd's largest request (NBD_MAX_BUFFER_SIZE); larger reads and writes
 * are split into requests of this size. */
#define NBD_REQUEST_MAX (32U * 1024U * 1024U)
/* What is kept of qemu-nbd's stderr for the debug log. */
#define NBD_STDERR_MAX (16U * 1024U)

struct OfflineDisk {
        struct nbd_handle *nbd;
        char *image;
        bool writable;
        uint64_t size;
        size_t request_max;
        int stderr_fd;                 /* memfd holding qemu-nbd's stderr */
};

static void nbd_closep(struct nbd_handle **h) {
        if (*h)
                nbd_close(*h);
}

bool offline_disk_is_writable(const OfflineDisk *d) {
        return d && d->writable;
}

const char *offline_disk_image(const OfflineDisk *d) {
        return d ? d->image : NULL;
}

uint64_t offline_disk_size(const OfflineDisk *d) {
        return d ? d->size : 0;
}

/* libnbd's error for the last call on this thread, as a negative errno. */
static int nbd_error(const char *what) {
        int e = nbd_get_errno();

        log_debug("libnbd: %s: %s", what, nbd_get_error() ?: "unknown error");
        return e > 0 ? -e : -EIO;
}

static int read_memfd(int fd, char **ret) {
        char *buf = malloc(NBD_STDERR_MAX + 1);
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        n = pread(fd, buf, NBD_STDERR_MAX, 0);
        if (n < 0) {
                free(buf);
                return -errno;
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        buf[n] = 0;
        *ret = buf;
        return 0;
}

/* qcow2 images start with "QFI\xfb"; anything else is served as raw. */
static int image_format(const char *path, const char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        uint8_t magic[4] = {};
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                return -EINVAL;
        n = pread(fd, magic, sizeof(magic), 0);
        if (n < 0)
                return -errno;
        *ret = n == 4 && memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
        return 0;
}

/* --image-opts value for a read-only, lock-ignoring open; commas in the
 * path are doubled, as qemu's option syntax requires. */
static char *image_opts_force_share(const char *format, const char *path) {
        size_t n = strlen(path), k = 0;
        char *escaped, *s = NULL;

        escaped = malloc(2 * n + 1);
        if (!escaped)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                escaped[k++] = path[i];
                if (path[i] == ',')
                        escaped[k++] = ',';
        }
        escaped[k] = 0;
        if (asprintf(&s, "driver=%s,read-only=on,force-share=on,file.driver=file,file.filename=%s", format,
                     escaped) < 0)
                s = NULL;
        free(escaped);
        return s;
}

/*
 * qemu-nbd inherits our stderr. So that its complaints (a held image lock,
 * a corrupt header) reach the debug log instead of the daemon's or a test's
 * terminal, fd 2 points at a memfd while libnbd forks it. This swaps a
 * process-wide descriptor for the duration of one call, which is fine for
 * oob's single-threaded programs; the memfd stays qemu-nbd's stderr for its
 * lifetime and is read again when the disk is closed.
 */
static int connect_capturing_stderr(struct nbd_handle *h, char **argv, int *ret_stderr_fd) {
        _cleanup_close_ int memfd = -EBADF, saved = -EBADF;
        int r, connect_errno = 0;

        memfd = memfd_create("qemu-nbd-stderr", MFD_CLOEXEC);
        if (memfd < 0)
                return -errno;
        saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (saved < 0 && errno != EBADF)
                return -errno;

        fflush(stderr);
        if (dup2(memfd, STDERR_FILENO) < 0)
                return -errno;
        r = nbd_connect_systemd_socket_activation(h, argv);
        if (r < 0)
                connect_errno = nbd_error("connect to qemu-nbd");
        if (saved >= 0)
                (void) dup2(saved, STDERR_FILENO);
        else
                (void) close(STDERR_FILENO);

        if (r < 0) {
                _cleanup_free_ char *err = NULL;

                (void) read_memfd(memfd, &err);
                if (err && *err)
                        log_debug("qemu-nbd: %s", err);
                /* qemu's messages for the two errors worth telling apart. */
                if (err && strstr(err, "lock"))
                        return -EBUSY;
                if (err && strstr(err, "No such file or directory"))
                        return -ENOENT;
                if (err && strstr(err, "Permission denied"))
                        return -EACCES;
                return connect_errno == -ENOENT ? -ENOENT : -EIO;
        }
        *ret_stderr_fd = TAKE_FD(memfd);
        return 0;
}

int offline_disk_open(const char *image, bool writable, bool running, OfflineDisk **ret) {
        _cleanup_(nbd_closep) struct nbd_handle *h = NULL;
        _cleanup_free_ char *abs = NULL, *opts = NULL;
        _cleanup_free_ OfflineDisk *d = NULL;
        const char *format = NULL;
        char *argv[16];
        size_t n = 0;
        int64_t size, block_max;
        int r, stderr_fd = -EBADF;

        assert_return(image, -EINVAL);
        assert_return(ret, -EINVAL);

        /* Refuse before starting anything: the desktop owns its disk. */
        if (writable && running)
                return -EBUSY;

        abs = realpath(image, NULL);
        if (!abs)
                return -errno;
        r = image_format(abs, &format);
        if (r < 0)
                return r;

        argv[n++] = "qemu-nbd";
        if (!writable && running) {
                opts = image_opts_force_share(format, abs);
                if (!opts)
                        return -ENOMEM;
                argv[n++] = "--image-opts";
                argv[n++] = "-r";
                argv[n++] = "--cache=writeback";
                argv[n++] = opts;
        } else {
                argv[n++] = "-f";
                argv[n++] = (char *) format;
                argv[n++] = "--cache=writeback";
                if (!writable)
                        argv[n++] = "-r";
                argv[n++] = abs;
        }
        argv[n] = NULL;

        h = nbd_create();
        if (!h)
                return nbd_error("create handle");
        /* Our reads either fail (and the buffer is not used) or fill the
         * buffer: skip libnbd's defensive memset of every read buffer. */
        (void) nbd_set_pread_initialize(h, false);

        log_debug("Serving %s (%s, %s) with qemu-nbd", abs, format, writable ? "read-write" : "read-only");
        r = connect_capturing_stderr(h, argv, &stderr_fd);
        if (r < 0)
                return r;

        d = calloc(1, sizeof(OfflineDisk));
        if (!d) {
                close(stderr_fd);
                return -ENOMEM;
        }
        d->stderr_fd = stderr_fd;
        d->image = TAKE_PTR(abs);
        d->writable = writable;

        size = nbd_get_size(h);
        if (size < 0) {
                r = nbd_error("get export size");
                goto fail;
        }
        if (writable && nbd_is_read_only(h) > 0) {
                r = -EROFS;
                goto fail;
        }
        d->size = (uint64_t) size;
        block_max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
        d->request_max = block_max > 0 ? MIN((size_t) block_max, (size_t) NBD_REQUEST_MAX) : NBD_REQUEST_MAX;
        d->nbd = TAKE_PTR(h);
        *ret = TAKE_PTR(d);
        return 0;

fail:
        close(d->stderr_fd);
        free(d->image);
        return r;
}

static int check_range(const OfflineDisk *d, size_t count, uint64_t offset) {
        if (offset > d->size || count > d->size - offset)
                return -EINVAL;
        return 0;
}

int offline_disk_pread(OfflineDisk *d, void *buf, size_t count, uint64_t offset) {
        uint8_t *p = buf;
        int r;

        assert_return(d, -EINVAL);
        assert_return(buf || count == 0, -EINVAL);

        r = check_range(d, count, offset);
        if (r < 0)
                return r;
        while (count > 0) {
                size_t n = MIN(count, d->request_max);

                if (nbd_pread(d->nbd, p, n, offset, 0) < 0)
                        return nbd_error("read");
                p += n;
                offset += n;
                count -= n;
        }
        return 0;
}

int offline_disk_pwrite(OfflineDisk *d, const void *buf, size_t count, uint64_t offset) {
        const uint8_t *p = buf;
        int r;

        assert_return(d, -EINVAL);
        assert_return(buf || count == 0, -EINVAL);

        if (!d->writable)
                return -EROFS;
        r = check_range(d, count, offset);
        if (r < 0)
                return r;
        while (count > 0) {
                size_t n = MIN(count, d->request_max);

                if (nbd_pwrite(d->nbd, p, n, offset, 0) < 0)
                        return nbd_error("write");
                p += n;
                offset += n;
                count -= n;
        }
        return 0;
}

int offline_disk_flush(OfflineDisk *d) {
        assert_return(d, -EINVAL);

        if (!d->writable)
                return 0;
        if (nbd_can_flush(d->nbd) <= 0)
                return 0;
        if (nbd_flush(d->nbd, 0) < 0)
                return nbd_error("flush");
        return 0;
}

OfflineDisk *offline_disk_close(OfflineDisk *d) {
        if (!d)
                return NULL;

        if (d->nbd) {
                int r = offline_disk_flush(d);
                if (r < 0)
                        log_debug_errno(r, "Failed to flush %s: %m", d->image);
                /* A clean NBD disconnect: qemu-nbd (one-shot) exits by itself,
                 * closing the image; nbd_close() then reaps it. */
                if (nbd_shutdown(d->nbd, 0) < 0)
                        (void) nbd_error("shutdown");
                nbd_close(d->nbd);
        }
        if (d->stderr_fd >= 0) {
                _cleanup_free_ char *err = NULL;

                if (read_memfd(d->stderr_fd, &err) >= 0 && *err)
                        log_debug("qemu-nbd: %s", err);
                close(d->stderr_fd);
        }
        free(d->image);
        free(d);
        return NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The qemu-img adapter: qcow2 chains of the desktop's disks.
 *
 * qemu-img runs as a child process, started with posix_spawn and an argv
 * (no shell, so no quoting of paths), stdin from /dev/null, its stdout and
 * stderr read through pipes. Exit codes are translated here and nowhere else;
 * stderr only ever reaches the debug log.
 *
 * Rules this file keeps:
 *   - an overlay names its backing file by absolute path and its backing
 *     format explicitly (-F), so that qemu never probes the format of a file
 *     the guest could have written (a raw disk beginning with a qcow2 header
 *     would otherwise be opened as qcow2, with a backing file of the guest's
 *     choosing);
 *   - nothing is ever created over an existing file: qemu-img create
 *     truncates without asking, and an overlay created over a snapshot would
 *     silently destroy it. The file is first created with O_EXCL.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "hv-internal.h"

extern char **environ;

/* qemu-img info of a chain prints a few hundred bytes per layer. */
#define QEMU_IMG_OUTPUT_MAX (4U * 1024U * 1024U)
/* Keep this much of stderr for the debug log. */
#define QEMU_IMG_STDERR_MAX (16U * 1024U)
/* Layers accepted in one chain: generous for daily snapshots kept for years. */
#define DISK_CHAIN_MAX 4096U

/* qemu-img check's documented exit codes. */
enum {
        QEMU_IMG_CHECK_OK = 0,
        QEMU_IMG_CHECK_FAILED = 1,      /* check not completed: internal error */
        QEMU_IMG_CHECK_CORRUPT = 2,
        QEMU_IMG_CHECK_LEAKS = 3,
        QEMU_IMG_CHECK_UNSUPPORTED = 63,
};

static void posix_spawn_file_actions_destroyp(posix_spawn_file_actions_t **p) {
        if (*p)
                posix_spawn_file_actions_destroy(*p);
}

static void close_pair(int fds[2]) {
        for (size_t i = 0; i < 2; i++)
                if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -EBADF;
                }
}

/* Append up to what the cap allows; returns false once something was dropped. */
static bool buffer_append(char **buf, size_t *size, size_t cap, const char *data, size_t n) {
        size_t take = MIN(n, cap - *size);
        char *p;

        if (take == 0)
                return n == 0;
        p = realloc(*buf, *size + take + 1);
        if (!p)
                return false;
        memcpy(p + *size, data, take);
        *size += take;
        p[*size] = 0;
        *buf = p;
        return take == n;
}

/*
 * Run qemu-img with argv (argv[0] is "qemu-img"). Returns the exit status
 * (>= 0) or a negative errno when it could not be run, was killed, or its
 * output exceeded the cap. stdout is handed out when ret_out is set.
 */
static int qemu_img_run(char **argv, char **ret_out, size_t *ret_out_size) {
        _cleanup_(posix_spawn_file_actions_destroyp) posix_spawn_file_actions_t *fa = NULL;
        posix_spawn_file_actions_t fa_storage;
        _cleanup_free_ char *out = NULL, *err = NULL;
        size_t out_size = 0, err_size = 0;
        int out_pipe[2] = { -EBADF, -EBADF }, err_pipe[2] = { -EBADF, -EBADF };
        bool overflow = false;
        pid_t pid;
        int r, status;

        if (log_get_max_level() >= LOG_LEVEL_DEBUG) {
                char line[1024];
                size_t n = 0;

                line[0] = 0;
                for (char **a = argv; *a && n < sizeof(line) - 1; a++) {
                        int k = snprintf(line + n, sizeof(line) - n, "%s%s", a == argv ? "" : " ", *a);
                        if (k < 0)
                                break;
                        n += (size_t) k;
                }
                log_debug("Running %s", line);
        }

        if (pipe2(out_pipe, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(err_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                close_pair(out_pipe);
                return r;
        }

        r = posix_spawn_file_actions_init(&fa_storage);
        if (r != 0) {
                close_pair(out_pipe);
                close_pair(err_pipe);
                return -r;
        }
        fa = &fa_storage;
        /* The pipes carry O_CLOEXEC; dup2 onto 1 and 2 clears it on the copies. */
        r = posix_spawn_file_actions_addopen(fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, out_pipe[1], STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, err_pipe[1], STDERR_FILENO);
        if (r == 0)
                r = posix_spawnp(&pid, argv[0], fa, NULL, argv, environ);
        close(out_pipe[1]);
        out_pipe[1] = -EBADF;
        close(err_pipe[1]);
        err_pipe[1] = -EBADF;
        if (r != 0) {
                close_pair(out_pipe);
                close_pair(err_pipe);
                log_debug("Failed to start %s: %s", argv[0], strerror(r));
                return -r;
        }

        /* Drain both pipes until both are closed, so that neither can fill up
         * and block the child. */
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = out_pipe[0], .events = POLLIN },
                        { .fd = err_pipe[0], .events = POLLIN },
                };
                char buf[65536];

                if (out_pipe[0] < 0 && err_pipe[0] < 0)
                        break;
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                for (size_t i = 0; i < 2; i++) {
                        int *fd = i == 0 ? &out_pipe[0] : &err_pipe[0];
                        ssize_t n;

                        if (*fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        n = read(*fd, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0) {
                                close(*fd);
                                *fd = -EBADF;
                                continue;
                        }
                        if (i == 0) {
                                if (!buffer_append(&out, &out_size, QEMU_IMG_OUTPUT_MAX, buf, (size_t) n))
                                        overflow = true;
                        } else
                                (void) buffer_append(&err, &err_size, QEMU_IMG_STDERR_MAX, buf, (size_t) n);
                }
        }
        close_pair(out_pipe);
        close_pair(err_pipe);

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;

        if (err_size > 0) {
                /* One line for the debug log, without the trailing newline. */
                while (err_size > 0 && (err[err_size - 1] == '\n' || err[err_size - 1] == '\r'))
                        err[--err_size] = 0;
                log_debug("%s: %s", argv[0], err);
        }
        if (!WIFEXITED(status)) {
                log_debug("%s killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
                return -EIO;
        }
        if (r < 0)
                return r;
        if (overflow)
                return -EFBIG;
        /* "Could not open 'x': No such file or directory" is how qemu-img
         * says that a file, or a backing file of the chain, is missing. */
        if (WEXITSTATUS(status) != 0 && err && strstr(err, "No such file or directory"))
                return -ENOENT;

        if (ret_out) {
                if (!out) {
                        out = strdup("");
                        if (!out)
                                return -ENOMEM;
                }
                *ret_out_size = out_size;
                *ret_out = TAKE_PTR(out);
        }
        return WEXITSTATUS(status);
}

/* The canonical absolute path of an existing image file: what an overlay
 * records must not depend on the working directory of whoever created it. */
static int absolute_existing(const char *path, char **ret) {
        char *p = realpath(path, NULL);
        struct stat st;

        if (!p)
                return -errno;
        if (stat(p, &st) < 0) {
                int r = -errno;
                free(p);
                return r;
        }
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
                free(p);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

static int json_get_string(json_t *o, const char *key, bool required, char **ret) {
        json_t *v = json_object_get(o, key);
        char *s;

        if (!v) {
                if (required)
                        return -EPROTO;
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            strlen(json_string_value(v)) != json_string_length(v))
                return -EPROTO;
        s = strdup(json_string_value(v));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int json_get_u64(json_t *o, const char *key, bool required, uint64_t *ret) {
        json_t *v = json_object_get(o, key);

        if (!v) {
                if (required)
                        return -EPROTO;
                *ret = 0;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EPROTO;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static void disk_layer_done(DiskLayer *l) {
        free(l->path);
        free(l->format);
        free(l->backing);
        *l = (DiskLayer) {};
}

void disk_chain_free(DiskLayer *layers, size_t n) {
        if (!layers)
                return;
        for (size_t i = 0; i < n; i++)
                disk_layer_done(&layers[i]);
        free(layers);
}

static int parse_layer(json_t *o, DiskLayer *ret) {
        DiskLayer l = {};
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        r = json_get_string(o, "filename", true, &l.path);
        if (r >= 0)
                r = json_get_string(o, "format", true, &l.format);
        if (r >= 0)
                r = json_get_u64(o, "virtual-size", true, &l.virtual_size);
        if (r >= 0)
                r = json_get_u64(o, "actual-size", false, &l.actual_size);
        /* full-backing-filename is the backing path resolved against the
         * overlay's directory; backing-filename is what the header stores. */
        if (r >= 0)
                r = json_get_string(o, "full-backing-filename", false, &l.backing);
        if (r >= 0 && !l.backing)
                r = json_get_string(o, "backing-filename", false, &l.backing);
        if (r < 0) {
                disk_layer_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

/* qemu-img info [--backing-chain] of an absolute path. */
static int image_info(const char *abs, bool chain, DiskLayer **ret, size_t *ret_n) {
        _cleanup_free_ char *out = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;
        DiskLayer *layers = NULL;
        json_error_t error;
        size_t out_size, n;
        int r;
        /* -U: reading a chain's metadata is harmless while a VM uses it, and
         * the caller may want to know the chain of a running desktop. */
        char *argv_chain[] = { "qemu-img", "info", "--backing-chain", "--output=json", "-U", (char *) abs, NULL };
        char *argv_one[] = { "qemu-img", "info", "--output=json", "-U", (char *) abs, NULL };

        r = qemu_img_run(chain ? argv_chain : argv_one, &out, &out_size);
        if (r < 0)
                return r;
        if (r != 0)
                return -EIO;

        root = json_loadb(out, out_size, JSON_REJECT_DUPLICATES, &error);
        if (!root) {
                log_debug("qemu-img info printed unparsable JSON: %s", error.text);
                return -EPROTO;
        }
        /* A single image is printed as an object, a chain as an array. */
        if (json_is_object(root)) {
                json_t *a = json_array();
                if (!a || json_array_append(a, root) < 0) {
                        json_decref(a);
                        return -ENOMEM;
                }
                json_decref(root);
                root = a;
        }
        if (!json_is_array(root))
                return -EPROTO;
        n = json_array_size(root);
        if (n == 0)
                return -EPROTO;
        if (n > DISK_CHAIN_MAX)
                return -EFBIG;

        layers = calloc(n, sizeof(DiskLayer));
        if (!layers)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = parse_layer(json_array_get(root, i), &layers[i]);
                if (r < 0) {
                        disk_chain_free(layers, n);
                        return r;
                }
        }
        /* The top layer's name is the one we passed. */
        if (!streq(layers[0].path, abs)) {
                char *p = strdup(abs);
                if (!p) {
                        disk_chain_free(layers, n);
                        return -ENOMEM;
                }
                free(layers[0].path);
                layers[0].path = p;
        }
        *ret_n = n;
        *ret = layers;
        return 0;
}

int disk_chain_info(const char *top, DiskLayer **ret, size_t *ret_n) {
        _cleanup_free_ char *abs = NULL;
        int r;

        assert_return(top, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_n, -EINVAL);

        r = absolute_existing(top, &abs);
        if (r < 0)
                return r;
        return image_info(abs, true, ret, ret_n);
}

/* The format qemu-img reports for one image (a probe, see disk_create_overlay). */
static int image_format(const char *abs, char **ret) {
        DiskLayer *layers = NULL;
        size_t n = 0;
        int r;

        r = image_info(abs, false, &layers, &n);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(layers[0].format);
        disk_chain_free(layers, n);
        return 0;
}

/* Reserve path with O_EXCL so that qemu-img create never overwrites a file. */
static int reserve_new_file(const char *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);

        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static int run_create(char **argv, const char *path) {
        int r;

        r = reserve_new_file(path);
        if (r < 0)
                return r;
        r = qemu_img_run(argv, NULL, NULL);
        if (r != 0) {
                (void) unlink(path);
                return r < 0 ? r : -EIO;
        }
        return 0;
}

int disk_create(const char *path, uint64_t size) {
        char size_str[32];

        assert_return(path, -EINVAL);
        assert_return(size > 0, -EINVAL);

        snprintf(size_str, sizeof(size_str), "%" PRIu64, size);
        char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", (char *) path, size_str, NULL };
        return run_create(argv, path);
}

int disk_create_overlay(const char *backing, const char *overlay) {
        _cleanup_free_ char *abs = NULL, *format = NULL;
        int r;

        assert_return(backing, -EINVAL);
        assert_return(overlay, -EINVAL);

        r = absolute_existing(backing, &abs);
        if (r < 0)
                return r;
        /* The backing file's format is probed once here and then written
         * into the overlay, so that no later open probes it again. The base
         * of a chain is created by us (qcow2) or imported deliberately; this
         * is the one place where its format is taken from its contents. */
        r = image_format(abs, &format);
        if (r < 0)
                return r;

        char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", abs, "-F", format,
                         (char *) overlay, NULL };
        /* Without a size, qemu-img takes the backing file's virtual size;
         * only the qcow2 header and empty tables are written: O(1). */
        return run_create(argv, overlay);
}

int disk_check(const char *path) {
        _cleanup_free_ char *abs = NULL, *format = NULL;
        int r;

        assert_return(path, -EINVAL);

        r = absolute_existing(path, &abs);
        if (r < 0)
                return r;
        r = image_format(abs, &format);
        if (r < 0)
                return r;

        char *argv[] = { "qemu-img", "check", "-q", "-f", format, abs, NULL };
        r = qemu_img_run(argv, NULL, NULL);
        if (r < 0)
                return r;
        switch (r) {
        case QEMU_IMG_CHECK_OK:
                return 0;
        case QEMU_IMG_CHECK_CORRUPT:
        case QEMU_IMG_CHECK_LEAKS:
                return -EUCLEAN;
        case QEMU_IMG_CHECK_UNSUPPORTED:
                return -EOPNOTSUPP;
        case QEMU_IMG_CHECK_FAILED:
        default:
                return -EIO;
        }
}

/* The overlay must be qcow2 with a backing file: that is what commit and
 * rebase operate on. */
static int overlay_check(const char *overlay, char **ret_abs) {
        _cleanup_free_ char *abs = NULL;
        DiskLayer *layers = NULL;
        size_t n = 0;
        int r;

        r = absolute_existing(overlay, &abs);
        if (r < 0)
                return r;
        r = image_info(abs, false, &layers, &n);
        if (r < 0)
                return r;
        if (!streq(layers[0].format, "qcow2") || !layers[0].backing)
                r = -EINVAL;
        disk_chain_free(layers, n);
        if (r < 0)
                return r;
        *ret_abs = TAKE_PTR(abs);
        return 0;
}

int disk_commit(const char *overlay) {
        _cleanup_free_ char *abs = NULL;
        int r;

        assert_return(overlay, -EINVAL);

        r = overlay_check(overlay, &abs);
        if (r < 0)
                return r;
        /* Writes the overlay's clusters into its backing file and empties
         * the overlay (it stays valid, now showing the same contents). */
        char *argv[] = { "qemu-img", "commit", "-q", "-f", "qcow2", abs, NULL };
        r = qemu_img_run(argv, NULL, NULL);
        if (r < 0)
                return r;
        return r == 0 ? 0 : -EIO;
}

int disk_rebase_unsafe(const char *overlay, const char *new_backing) {
        _cleanup_free_ char *abs = NULL, *abs_backing = NULL, *format = NULL;
        int r;

        assert_return(overlay, -EINVAL);
        assert_return(new_backing, -EINVAL);

        r = overlay_check(overlay, &abs);
        if (r < 0)
                return r;
        r = absolute_existing(new_backing, &abs_backing);
        if (r < 0)
                return r;
        r = image_format(abs_backing, &format);
        if (r < 0)
                return r;

        char *argv[] = { "qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", abs_backing, "-F", format,
                         abs, NULL };
        r = qemu_img_run(argv, NULL, NULL);
        if (r < 0)
                return r;
        return r == 0 ? 0 : -EIO;
}

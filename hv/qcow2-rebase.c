/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Safe rebase of a qcow2 overlay (qemu-img rebase without -u): the overlay
 * gets a copy of every cluster in which its old and its new backing chains
 * differ, then its header names the new backing file. This is how a
 * snapshot is dropped from the middle of a chain: the layers above it
 * absorb its data and skip it.
 *
 * Why it is safe to be killed: qemu-img first copies data into the overlay
 * (qcow2 keeps its metadata ordered so that an interrupted write at worst
 * leaks clusters) and rewrites the backing file name in the header last.
 * Killed before that, the overlay still reads through its old backing and
 * the copied clusters hold exactly what it showed there; killed after, the
 * rebase is complete. Either way the overlay shows the same contents.
 *
 * qemu-img runs as a child (posix_spawn with an argv, no shell) as in
 * qcow2.c, whose runner is private to that file: this one is smaller, as
 * rebase prints nothing we need (stdout goes to /dev/null, stderr to the
 * debug log).
 */

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include "hv.h"

extern char **environ;

#define REBASE_STDERR_MAX (16U * 1024U)

static void posix_spawn_file_actions_destroyp(posix_spawn_file_actions_t **p) {
        if (*p)
                posix_spawn_file_actions_destroy(*p);
}

/* Run argv; returns the exit status (>= 0) or a negative errno. */
static int run_quiet(char **argv) {
        _cleanup_(posix_spawn_file_actions_destroyp) posix_spawn_file_actions_t *fa = NULL;
        posix_spawn_file_actions_t fa_storage;
        _cleanup_close_ int err_read = -EBADF;
        char err[REBASE_STDERR_MAX + 1];
        size_t err_size = 0;
        int pipe_fds[2], r, status;
        pid_t pid;

        log_debug("Running %s %s ...", argv[0], argv[1]);

        if (pipe2(pipe_fds, O_CLOEXEC) < 0)
                return -errno;
        err_read = pipe_fds[0];

        r = posix_spawn_file_actions_init(&fa_storage);
        if (r != 0) {
                close(pipe_fds[1]);
                return -r;
        }
        fa = &fa_storage;
        r = posix_spawn_file_actions_addopen(fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, pipe_fds[1], STDERR_FILENO);
        if (r == 0)
                r = posix_spawnp(&pid, argv[0], fa, NULL, argv, environ);
        close(pipe_fds[1]);
        if (r != 0) {
                log_debug("Failed to start %s: %s", argv[0], strerror(r));
                return -r;
        }

        /* One pipe only: read it to the end (keeping what fits), then reap. */
        for (;;) {
                char buf[4096];
                ssize_t n = read(err_read, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (err_size < REBASE_STDERR_MAX) {
                        size_t take = MIN((size_t) n, REBASE_STDERR_MAX - err_size);
                        memcpy(err + err_size, buf, take);
                        err_size += take;
                }
        }
        err[err_size] = 0;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;

        while (err_size > 0 && (err[err_size - 1] == '\n' || err[err_size - 1] == '\r'))
                err[--err_size] = 0;
        if (err_size > 0)
                log_debug("%s: %s", argv[0], err);
        if (!WIFEXITED(status)) {
                log_debug("%s killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
                return -EIO;
        }
        if (WEXITSTATUS(status) != 0 && strstr(err, "No such file or directory"))
                return -ENOENT;
        return WEXITSTATUS(status);
}

int disk_rebase(const char *overlay, const char *new_backing) {
        _cleanup_free_ char *abs = NULL, *abs_backing = NULL, *format = NULL;
        DiskLayer *layers = NULL;
        size_t n = 0;
        int r;

        assert_return(overlay, -EINVAL);
        assert_return(new_backing, -EINVAL);

        abs = realpath(overlay, NULL);
        if (!abs)
                return -errno;
        abs_backing = realpath(new_backing, NULL);
        if (!abs_backing)
                return -errno;
        if (streq(abs, abs_backing))
                return -EINVAL;

        /* The overlay's whole chain must be readable: its data is what the
         * overlay must still show afterwards. */
        r = disk_chain_info(abs, &layers, &n);
        if (r < 0)
                return r;
        if (!streq(layers[0].format, "qcow2") || !layers[0].backing)
                r = -EINVAL;
        for (size_t i = 1; r >= 0 && i < n; i++)
                if (streq(layers[i].path, abs))
                        r = -ELOOP;
        disk_chain_free(layers, n);
        if (r < 0)
                return r;

        /* The new backing file's format, written into the overlay as in
         * disk_create_overlay(); and a new backing that builds on the
         * overlay itself would make a loop. */
        r = disk_chain_info(abs_backing, &layers, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (streq(layers[i].path, abs))
                        r = -ELOOP;
        if (r >= 0)
                format = TAKE_PTR(layers[0].format);
        disk_chain_free(layers, n);
        if (r < 0)
                return r;

        char *argv[] = { "qemu-img", "rebase", "-q", "-f", "qcow2", "-b", abs_backing, "-F", format, abs,
                         NULL };
        r = run_quiet(argv);
        if (r < 0)
                return r;
        return r == 0 ? 0 : -EIO;
}

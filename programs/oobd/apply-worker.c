/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The apply worker: work that blocks, run in a child process so that the
 * loop keeps answering D-Bus and the watchdog (oobd.service kills a daemon
 * whose loop stalls for WatchdogSec).
 *
 * Why fork() without exec(): the child needs the verified manifest and the
 * payloads' signed lengths and hashes, already in memory; an exec would
 * have to pass them through a file and verify them again, and would need
 * a second entry point in oobd's main(). The price is discipline in the
 * child, which is a copy of a daemon with an event loop, a bus connection,
 * libcurl and libvirt state:
 *   - it never returns into the parent's code: it runs the task and
 *     _exit()s (no atexit handlers, no destructors of the parent's objects);
 *   - it never touches the loop, the bus, libcurl or libvirt;
 *   - every inherited file descriptor is marked close-on-exec (so qemu-nbd,
 *     which libnbd starts, holds nothing of oobd's: neither the bus
 *     connection nor the catalog's lock outlives oobd through it);
 *   - it dies with oobd (PR_SET_PDEATHSIG): a SIGKILL of oobd in the middle
 *     of an apply kills the apply, and the next start finds the staging
 *     overlay unpromoted and discards it;
 *   - the signal mask oobd set (SIGTERM, SIGINT, SIGHUP, SIGCHLD blocked)
 *     is cleared, so the child's own children (qemu-nbd) are waited for
 *     normally.
 * The result is one JSON object written to a pipe before _exit():
 *   {"error": 0 | -errno, "step": "..." | null, "message": "..." | null,
 *    "build": N, "actions": N, "files_written": N, "bytes_written": N,
 *    "files_deleted": N, "registry_changes": N, "dropped": N}
 * A child that dies without writing it (killed, crashed) is reported as
 * -ECHILD with its exit status or signal.
 *
 * The parent watches the child with sd_event_add_child(), which needs
 * SIGCHLD blocked: worker_start() blocks it (the daemon has no handler for
 * it, and waitpid() of the programs the rooms run is unaffected).
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "recovery.h"
#include "updater.h"
#include "window.h"

#define _cleanup_json_ _cleanup_(json_decrefp)
#define WORKER_RESULT_MAX (64U * 1024U)
#define HASH_BUFFER (1024U * 1024U)

static const char *const worker_task_table[_WORKER_TASK_MAX] = {
        [WORKER_APPLY] = "apply",
        [WORKER_RETAIN] = "retain",
};
static const char *worker_task_to_string(WorkerTask t);
static _unused_ WorkerTask worker_task_from_string(const char *s);
DEFINE_STRING_TABLE_LOOKUP(worker_task, WorkerTask);

struct Worker {
        sd_event *event;
        sd_event_source *child;
        sd_event_source *finish; /* hands the result to done() outside the child source's dispatch */
        pid_t pid;
        int fd; /* the pipe's read end */
        WorkerTask task;
        WorkerResult result;
        WorkerDone done;
        void *userdata;
};

void worker_result_done(WorkerResult *r) {
        if (!r)
                return;
        free(r->step);
        free(r->message);
        *r = (WorkerResult){};
}

pid_t worker_pid(const Worker *w) {
        return w ? w->pid : 0;
}

/* ---- the child --------------------------------------------------------------------- */

/* What the child found, filled in as it goes. */
typedef struct ChildResult {
        int error;
        char step[256];
        char *message;
        uint64_t build;
        ApplyResult apply;
        unsigned dropped;
} ChildResult;

_printf_(3, 4) static int child_fail(ChildResult *c, int r, const char *step_format, ...) {
        va_list ap;

        va_start(ap, step_format);
        vsnprintf(c->step, sizeof(c->step), step_format, ap);
        va_end(ap);
        c->error = r < 0 ? r : -EIO;
        return c->error;
}

/* The payload file is the one that was verified at download: its length and
 * hashes again (between the download and the apply oobd may have been
 * restarted, days may have passed). */
static int verify_payload(const char *dir, const TxPayload *p, ChildResult *c) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        _cleanup_free_ char *name = NULL, *path = NULL, *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        int r;

        name = tuf_client_target_filename(p->path);
        if (!name)
                return child_fail(c, -ENOMEM, "verify payload %s", p->path);
        path = path_join(dir, name);
        buf = malloc(HASH_BUFFER);
        if (!path || !buf)
                return child_fail(c, -ENOMEM, "verify payload %s", p->path);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return child_fail(c, -errno, "verify payload %s (%s)", p->path, path);
        r = tuf_hasher_new(&p->hashes, &h);
        if (r < 0)
                return child_fail(c, r, "verify payload %s", p->path);
        for (;;) {
                ssize_t n = read(fd, buf, HASH_BUFFER);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return child_fail(c, -errno, "verify payload %s (%s)", p->path, path);
                if (n == 0)
                        break;
                r = tuf_hasher_update(h, buf, (size_t) n);
                if (r < 0)
                        return child_fail(c, r, "verify payload %s", p->path);
                if (tuf_hasher_length(h) > p->length)
                        return child_fail(c, -EBADMSG, "verify payload %s: longer than signed", p->path);
        }
        r = tuf_hasher_verify(h, p->length, &p->hashes);
        if (r < 0)
                return child_fail(c, r, "verify payload %s: length or hashes differ from the signed ones",
                                  p->path);
        return 0;
}

/* Test hook: OOB_TEST_APPLY_STALL=SECONDS (secure_getenv) makes the child
 * wait that long after the actions were written to the staging overlay and
 * before it is flushed and handed back, so that the kill tests can SIGKILL
 * oobd while an apply is under way. Nothing happens unless it is set. */
static void test_stall(void) {
        const char *e = secure_getenv("OOB_TEST_APPLY_STALL");
        uint64_t sec;

        if (e && safe_atou64(e, &sec) >= 0 && sec > 0 && sec <= 3600)
                (void) sleep((unsigned) sec);
}

static int child_apply(const WorkerRequest *req, ChildResult *c) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_(windows_info_done) WindowsInfo info = {};
        _cleanup_free_ TufTargetFile *targets = NULL;
        _cleanup_free_ const TufTargetFile **pointers = NULL;
        _cleanup_free_ char *error = NULL, *what = NULL;
        const PatchManifest *m = req->manifest;
        VolumeRefusal refusal = VOLUME_OK;
        Partition p;
        int r;

        for (size_t i = 0; i < req->n_payloads; i++) {
                r = verify_payload(req->payload_dir, &req->payloads[i], c);
                if (r < 0)
                        return r;
        }
        if (req->n_payloads > 0) {
                targets = calloc(req->n_payloads, sizeof(TufTargetFile));
                pointers = calloc(req->n_payloads, sizeof(TufTargetFile *));
                if (!targets || !pointers)
                        return child_fail(c, -ENOMEM, "apply");
                for (size_t i = 0; i < req->n_payloads; i++) {
                        targets[i] = (TufTargetFile){
                                .path = req->payloads[i].path,
                                .length = req->payloads[i].length,
                                .hashes = req->payloads[i].hashes,
                        };
                        pointers[i] = &targets[i];
                }
        }

        r = offline_disk_open(req->stage, /* writable= */ true, /* running= */ false, &d);
        if (r < 0)
                return child_fail(c, r, "serve the staging overlay %s", req->stage);
        r = disk_find_windows(d, &p);
        if (r < 0)
                return child_fail(c, r, "find the Windows volume");
        r = ntfs_volume_open(d, &p, /* writable= */ true, &v, &refusal);
        if (r < 0) {
                if (refusal != VOLUME_OK)
                        c->message = strdup(volume_refusal_advice(refusal));
                return child_fail(c, r, "mount the Windows volume (partition %u)%s%s", p.number,
                                  refusal != VOLUME_OK ? ": " : "",
                                  refusal != VOLUME_OK ? volume_refusal_to_string(refusal) : "");
        }
        r = windows_info_read(v, &info);
        if (r < 0)
                return child_fail(c, r, "read the Windows version (SOFTWARE hive)");
        c->build = info.build;
        if ((m->os_build_min > 0 && info.build < m->os_build_min) ||
            (m->os_build_max > 0 && info.build > m->os_build_max)) {
                c->message = strdup("the manifest's applies-to os-build does not include this build");
                return child_fail(c, -EINVAL, "check Windows build %" PRIu64, info.build);
        }

        r = apply_manifest_full(v, m,
                                &(ApplyOptions){
                                        .payload_dir = req->payload_dir,
                                        .payloads = pointers,
                                        .n_payloads = req->n_payloads,
                                },
                                &c->apply, &error);
        if (r < 0) {
                what = c->apply.failed_action < m->n_actions
                               ? apply_action_describe(&m->actions[c->apply.failed_action])
                               : NULL;
                c->message = TAKE_PTR(error);
                return child_fail(c, r, "action %zu (%s)", c->apply.failed_action + 1, what ?: "?");
        }

        /* Unmount (libntfs-3g writes its caches back), then make qemu-nbd
         * write everything to the overlay file before it is promoted. */
        v = ntfs_volume_close(v);
        test_stall();
        r = offline_disk_flush(d);
        if (r < 0)
                return child_fail(c, r, "flush the staging overlay");
        d = offline_disk_close(d);
        return 0;
}

static int child_retain(const WorkerRequest *req, ChildResult *c) {
        _cleanup_(catalog_freep) Catalog *cat = NULL;
        int r;

        r = catalog_open(req->catalog_dir, &cat, NULL);
        if (r < 0)
                return child_fail(c, r, "open the catalog %s", req->catalog_dir);
        r = catalog_retain(cat, req->keep, req->running, &c->dropped);
        if (r < 0)
                return child_fail(c, r, "retention (keep %u)", req->keep);
        return 0;
}

/* Mark every inherited descriptor but stdio close-on-exec. */
static void child_cloexec_all(void) {
        DIR *d;
        struct dirent *de;

        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
                return;
        d = opendir("/proc/self/fd");
        if (!d)
                return;
        while ((de = readdir(d))) {
                uint64_t fd;

                if (safe_atou64(de->d_name, &fd) < 0 || fd < 3 || fd == (uint64_t) dirfd(d))
                        continue;
                (void) fcntl((int) fd, F_SETFD, FD_CLOEXEC);
        }
        closedir(d);
}

static void child_write_result(int fd, const ChildResult *c) {
        _cleanup_json_ json_t *o = NULL;
        _cleanup_free_ char *text = NULL;

        o = json_pack("{s:i, s:s?, s:s?, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "error", c->error, "step",
                      c->step[0] ? c->step : NULL, "message", c->message, "build", (json_int_t) c->build,
                      "actions", (json_int_t) c->apply.actions_done, "files_written",
                      (json_int_t) c->apply.files_written, "bytes_written",
                      (json_int_t) c->apply.bytes_written, "files_deleted",
                      (json_int_t) c->apply.files_deleted, "registry_changes",
                      (json_int_t) c->apply.registry_changes, "dropped", (json_int_t) c->dropped);
        if (!o)
                return;
        text = json_dumps(o, JSON_COMPACT);
        if (text)
                (void) loop_write(fd, text, strlen(text));
}

_noreturn_ static void child_run(const WorkerRequest *req, int fd, pid_t parent) {
        ChildResult c = {};
        sigset_t none;

        /* Die with oobd; if it is gone already, do nothing at all. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(EXIT_FAILURE);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) signal(SIGPIPE, SIG_DFL);
        child_cloexec_all();

        switch (req->task) {
        case WORKER_APPLY:
                (void) child_apply(req, &c);
                break;
        case WORKER_RETAIN:
                (void) child_retain(req, &c);
                break;
        default:
                c.error = -EINVAL;
        }
        child_write_result(fd, &c);
        _exit(EXIT_SUCCESS);
}

/* ---- the parent -------------------------------------------------------------------- */

/* A string member or null; false when it is neither. */
static bool string_or_null(json_t *v, const char **ret) {
        if (json_is_null(v)) {
                *ret = NULL;
                return true;
        }
        *ret = json_string_value(v);
        return *ret != NULL;
}

static int parse_result(const char *text, size_t size, WorkerResult *ret) {
        _cleanup_json_ json_t *o = NULL;
        json_t *step_json = NULL, *message_json = NULL;
        const char *step = NULL, *message = NULL;
        json_int_t error = 0, build = 0, actions = 0, fw = 0, bw = 0, fd = 0, rc = 0, dropped = 0;

        o = json_loadb(text, size, 0, NULL);
        if (!o || json_unpack(o, "{s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "error", &error,
                              "step", &step_json, "message", &message_json, "build", &build, "actions",
                              &actions, "files_written", &fw, "bytes_written", &bw, "files_deleted", &fd,
                              "registry_changes", &rc, "dropped", &dropped) < 0)
                return -EPROTO;
        if (error > 0 || error < -4095 || !string_or_null(step_json, &step) ||
            !string_or_null(message_json, &message))
                return -EPROTO;
        *ret = (WorkerResult){
                .error = (int) error,
                .step = step ? strdup(step) : NULL,
                .message = message ? strdup(message) : NULL,
                .build = (uint64_t) build,
                .actions = (size_t) actions,
                .files_written = (uint64_t) fw,
                .bytes_written = (uint64_t) bw,
                .files_deleted = (uint64_t) fd,
                .registry_changes = (uint64_t) rc,
                .dropped = (unsigned) dropped,
        };
        return 0;
}

static int on_finish(sd_event_source *s, void *userdata) {
        Worker *w = userdata;
        /* Ours, not w's: done() may free w. */
        _cleanup_(worker_result_done) WorkerResult result = w->result;

        w->result = (WorkerResult){};
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        log_debug("apply worker (%s) finished: %s", worker_task_to_string(w->task),
                  result.error < 0 ? strerror(-result.error) : "ok");
        if (w->done)
                w->done(w, &result, w->userdata);
        return 0;
}

/* The child is gone (sd-event reaps it after this returns): take its result,
 * and call done() from a defer source, so that done() may free the worker
 * and with it this child source. */
static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Worker *w = userdata;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r;

        w->pid = 0;
        r = read_full_fd(w->fd, WORKER_RESULT_MAX, &text, &size);
        close(w->fd);
        w->fd = -EBADF;
        if (r >= 0 && size > 0)
                r = parse_result(text, size, &w->result);
        else if (r >= 0)
                r = -ENODATA;
        if (r < 0)
                log_debug_errno(r, "apply worker (%s): no result (%zu bytes read): %m",
                                worker_task_to_string(w->task), size);
        if (r < 0) {
                worker_result_done(&w->result);
                w->result.error = -ECHILD;
                if (asprintf(&w->result.message, "the %s worker %s %d without a result",
                             worker_task_to_string(w->task),
                             si->si_code == CLD_EXITED ? "exited with status" : "was killed by signal",
                             si->si_status) < 0)
                        w->result.message = NULL;
        }
        r = sd_event_add_defer(w->event, &w->finish, on_finish, w);
        if (r < 0) {
                /* Out of memory: call done() from here after all. */
                log_debug_errno(r, "apply worker: cannot defer the result: %m");
                return on_finish(s, w);
        }
        return 0;
}

int worker_start(sd_event *e, const WorkerRequest *req, WorkerDone done, void *userdata, Worker **ret) {
        _cleanup_(worker_freep) Worker *w = NULL;
        int fds[2], r;
        sigset_t chld;
        pid_t parent = getpid(), pid;

        assert_return(e, -EINVAL);
        assert_return(req, -EINVAL);
        assert_return(req->task >= 0 && req->task < _WORKER_TASK_MAX, -EINVAL);
        assert_return(req->task != WORKER_APPLY || (req->stage && req->manifest && req->payload_dir),
                      -EINVAL);
        assert_return(req->task != WORKER_RETAIN || req->catalog_dir, -EINVAL);
        assert_return(ret, -EINVAL);

        /* sd_event_add_child() refuses to work with SIGCHLD unblocked. */
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
                return -errno;

        w = calloc(1, sizeof(Worker));
        if (!w)
                return -ENOMEM;
        w->fd = -EBADF;
        w->task = req->task;
        w->done = done;
        w->userdata = userdata;
        w->event = sd_event_ref(e);

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        w->fd = fds[0];

        /* Anything buffered would be written twice. */
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(fds[1]);
                return r;
        }
        if (pid == 0) {
                close(fds[0]);
                child_run(req, fds[1], parent);
        }
        close(fds[1]);
        w->pid = pid;

        r = sd_event_add_child(e, &w->child, pid, WEXITED, on_child, w);
        if (r < 0)
                return r; /* worker_free() kills and reaps it */
        (void) sd_event_source_set_description(w->child, "apply-worker");
        log_debug("apply worker (%s) started: pid %d", worker_task_to_string(req->task), (int) pid);
        *ret = TAKE_PTR(w);
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        w->child = sd_event_source_disable_unref(w->child);
        w->finish = sd_event_source_disable_unref(w->finish);
        worker_result_done(&w->result);
        if (w->pid > 0) {
                (void) kill(w->pid, SIGKILL);
                (void) waitpid(w->pid, NULL, 0);
                log_debug("apply worker (%s) pid %d killed", worker_task_to_string(w->task), (int) w->pid);
        }
        if (w->fd >= 0)
                close(w->fd);
        sd_event_unref(w->event);
        free(w);
        return NULL;
}

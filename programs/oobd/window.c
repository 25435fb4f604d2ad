/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The patch window: oobd's Job driver (oobd.h) for UpdateNow(), Check() and
 * the resume of an interrupted transaction.
 *
 *   refresh    TUF metadata (tuf_client_refresh_async(): on the loop)
 *   select     the manifests the repository lists (targets "manifests/NAME.yaml",
 *              delegated to "releases"), each fetched with its TUF hashes
 *              checked and parsed; window_choose_manifest() (transaction.c)
 *              picks one by a documented rule
 *   download   its payloads into payload-dir on the loop, resumable
 *              (NAME.partial), progress on the bus
 *   defer      a running desktop with someone logged in is left alone
 *              ([desktop] defer-when-user-active, unless UpdateNow's force
 *              flag): the transaction ends "deferred", nothing changed
 *   shutdown   the desktop: agent, then ACPI, then destroy (desktop_shutdown())
 *   snapshot   the pre-patch snapshot P (catalog, inline: O(1))
 *   apply      on a staging overlay on P, in a child process
 *              (apply-worker.c); promoted when every action succeeded
 *   trial      the patched state frozen as snapshot Q; the desktop booted on
 *              a fresh overlay on Q and judged (recovery/trial.c); up to
 *              `attempts` boots, each on a fresh overlay on Q
 *   commit     Q marked known-good, installed.json, retention (in the child)
 *   rollback   a new overlay on P, Q dropped, the desktop started. A revert
 *              that fails keeps the last known-good snapshot and raises an
 *              alert (STATE_DIR/alert.json, in the guard's format: the guard
 *              then records crashes and does nothing else, so nothing loops)
 *   report     queued in the outbox once the transaction is terminal; a
 *              success only after the trial passed
 *
 * The transaction (transaction.c) is written before each state's action,
 * and window_step() runs the action of the current state, so a resumed
 * transaction continues through the same code (the resume rules are the
 * table at the top of transaction.c). Work that takes long runs on the loop
 * (transfers, the desktop's shutdown, the trial) or in the child (apply,
 * retention); catalog operations are O(1) and run inline. The select step
 * is a chain of the TUF client's asynchronous calls on the loop too (the
 * delegated roles, then each listed manifest searched and fetched one after
 * the other); only the Windows build is read inline from the disk.
 *
 * The effective trial policy: the longer boot timeout and the longer
 * stability window of the manifest's and the configuration's ([window]),
 * and the manifest's attempts.
 *
 * Deferring: "active" means someone is logged in on the running desktop as
 * its guest agent tells (desktop_logged_in_users(): on Windows every
 * interactive session, a locked one too: shutting Windows down would lose
 * that user's unsaved work). It is asked once, in the staged state, after
 * the payloads are verified (they stay in payload-dir for the next window)
 * and before the desktop is touched. An agent that does not answer or lacks
 * the command leaves the activity unknown, and the window goes on (a
 * desktop stuck at its boot or login screen must still be patched). The
 * deferral is an abort with `deferred` set: outcome "deferred", reported
 * like an abort so the fleet sees which devices defer night after night. A
 * transaction started with the force flag records it (`force`) and is
 * never deferred, also when resumed after a restart of oobd.
 *
 * A paused or suspended desktop is not shut down (its memory would be
 * lost): the window gives up.
 *
 * Test hook: OOB_TEST_CRASH_AT=STATE (read with secure_getenv()) makes
 * oobd SIGKILL itself right after it has written that state, before acting
 * on it, the first time in this process: the state boundaries of the kill
 * tests. recovery/catalog.c's crash points use the same variable with
 * other names ("promote-renamed", ...). OOB_TEST_APPLY_STALL=SECONDS holds
 * the apply worker after it wrote the staging overlay (apply-worker.c), to
 * kill oobd in the middle of an apply.
 */

#include <dirent.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "oobd.h"
#include "window.h"

#define MANIFESTS_MAX 256U
#define MANIFEST_SIZE_MAX (1024U * 1024U)
#define MANIFEST_PATTERN "manifests/*.yaml"
#define MANIFEST_PROBE "manifests/oob-window-probe.yaml"
#define ALERT_FILE "alert.json"
#define CATALOG_LOCK_TRIES 50U
#define CATALOG_LOCK_WAIT_USEC 100000U
/* A rollback waiting for libvirt tries again this often. */
#define ROLLBACK_RETRY_USEC (15U * 1000000U)

typedef struct Candidate {
        PatchManifest *manifest;
        char *path;
        uint64_t length;
        TufHashes hashes;
        char *text;
        size_t size;
} Candidate;

/* The select step, a chain of the TUF client's asynchronous calls: the
 * probe search (it loads the delegated roles), then a search and a fetch
 * for each listed manifest, one after the other, then the payloads of the
 * chosen one. */
typedef struct Select {
        Installed installed;
        char **paths;     /* the listed manifests */
        size_t next;      /* the next of paths to load */
        bool own_first;   /* a resumed transaction: its own manifest first */
        const char *path; /* the manifest being loaded (in paths, or the tx's) */
        uint64_t length;  /* its signed length and hashes */
        TufHashes hashes;
        Candidate *cands;
        size_t n_cands;
        uint64_t build;
        size_t chosen;       /* in cands */
        TxPayload *payloads; /* the chosen manifest's, as the search found them */
        size_t n_payloads;
} Select;

typedef struct Window {
        Job *job;
        Manager *m;
        Transaction *tx; /* NULL for check jobs */
        TxResume resume; /* the first step of a resumed transaction; _TX_RESUME_INVALID otherwise */

        TufClient *tuf;
        Select *select;          /* the select step under way */
        PatchManifest *manifest; /* the transaction's, verified */
        size_t payload_index;    /* the payload being downloaded */
        uint64_t bytes_before, bytes_total;
        char *available; /* check jobs: the manifest that would be applied */

        Catalog *catalog; /* open while a staging overlay exists */
        Worker *worker;
        Trial *trial;
        bool trial_boot_seen; /* the STARTED event of the trial's boot arrived */
        bool shutting_down;   /* desktop_shutdown() under way */
        bool retained_off;    /* retention done while the desktop was off (snapshotted) */
        bool retained_commit; /* retention done at the commit */

        sd_event_source *next;  /* runs window_step() from the loop */
        sd_event_source *retry; /* a rollback waiting for libvirt */
        bool retry_logged;
        bool finished;
} Window;

static void window_step(Window *w);
_printf_(3, 4) static void window_abort(Window *w, TxState where, const char *format, ...);
static void window_fail_unpersisted(Window *w, int r, const char *what);
static void act_finish(Window *w);
static void act_trial(Window *w);
static void act_rollback(Window *w);
static void trial_failed(Window *w);

/* ---- small helpers ----------------------------------------------------------------- */

static bool streq_ptr(const char *a, const char *b) {
        return a && b ? streq(a, b) : a == b;
}

static int64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const OobdConfig *cfg(const Window *w) {
        return &w->m->config;
}

static JobStep step_of_state(TxState s) {
        switch (s) {
        case TX_IDLE:
        case TX_REFRESHING:
                return JOB_STEP_REFRESH;
        case TX_DOWNLOADING:
        case TX_STAGED:
                return JOB_STEP_DOWNLOAD;
        case TX_STOPPING_DESKTOP:
                return JOB_STEP_SHUTDOWN;
        case TX_SNAPSHOTTED:
                return JOB_STEP_SNAPSHOT;
        case TX_APPLYING:
        case TX_APPLIED:
                return JOB_STEP_APPLY;
        case TX_TRIAL:
                return JOB_STEP_TRIAL;
        case TX_COMMITTING:
        case TX_COMMITTED:
                return JOB_STEP_COMMIT;
        case TX_ROLLING_BACK:
        case TX_ROLLED_BACK:
        case TX_FAILED:
                return JOB_STEP_ROLLBACK;
        default:
                return JOB_STEP_REPORT;
        }
}

static void crash_point(TxState s) {
        static bool fired[_TX_STATE_MAX];
        const char *e = secure_getenv("OOB_TEST_CRASH_AT");

        if (!e || s < 0 || s >= _TX_STATE_MAX || fired[s] || !streq(e, tx_state_to_string(s)))
                return;
        fired[s] = true;
        log_warning("OOB_TEST_CRASH_AT=%s: killing oobd right after writing that state.", e);
        (void) raise(SIGKILL);
}

/* The errno vocabulary of lib/lib.h in words, for reasons read by people
 * (the report, the journal): strerror() says "Stale file handle". */
static const char *cause(int r) {
        switch (r) {
        case -EBADMSG:
                return "bad signature, hash or length";
        case -EKEYREJECTED:
                return "key not trusted for that role";
        case -EKEYEXPIRED:
                return "expired (a freeze attack, or the repository is not kept fresh)";
        case -ESTALE:
                return "older than the version trusted already (a rollback attack)";
        case -EFBIG:
                return "larger than allowed";
        case -EPROTO:
                return "malformed";
        case -ETIMEDOUT:
                return "too slow or over the deadline";
        case -ERANGE:
                return "the server does not resume downloads";
        default:
                return strerror(-r);
        }
}

static int on_next(sd_event_source *s, void *userdata) {
        Window *w = userdata;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        window_step(w);
        return 0;
}

/* Run window_step() from the loop, once, soon. */
static void schedule(Window *w) {
        int r;

        if (w->finished)
                return;
        if (!w->next) {
                r = sd_event_add_defer(w->m->event, &w->next, on_next, w);
                if (r < 0) {
                        window_fail_unpersisted(w, r, "schedule the next step");
                        return;
                }
                (void) sd_event_source_set_description(w->next, "patch-window");
        }
        (void) sd_event_source_set_enabled(w->next, SD_EVENT_ONESHOT);
}

/* Write state `to` (before acting on it), tell the bus. */
static int enter(Window *w, TxState to) {
        int r;

        r = transaction_enter(cfg(w)->state_dir, w->tx, to, now_usec());
        if (r < 0) {
                log_error_errno(r,
                                "Transaction %s: cannot record the state %s in %s/" TRANSACTION_FILE ": %m",
                                w->tx->id, tx_state_to_string(to), cfg(w)->state_dir);
                return r;
        }
        log_debug("Transaction %s: %s", w->tx->id, tx_state_to_string(to));
        if (!tx_state_is_terminal(to))
                job_progress(w->job, step_of_state(to), 0, "%s", tx_state_to_string(to));
        crash_point(to);
        return 0;
}

/* enter(), and on failure give up the job (the file keeps the previous
 * state; the next start resumes from there). Returns whether it entered. */
static bool enter_or_stop(Window *w, TxState to) {
        int r = enter(w, to);

        if (r < 0) {
                window_fail_unpersisted(w, r, "record the transaction's state");
                return false;
        }
        return true;
}

static int get_desktop(Window *w, Desktop **ret) {
        int r = manager_get_desktop(w->m, ret);

        if (r < 0)
                log_debug_errno(r, "Cannot reach desktop %s on %s: %m", cfg(w)->desktop_name,
                                cfg(w)->desktop_uri);
        return r;
}

static int open_catalog(Window *w, Catalog **ret) {
        unsigned repairs = 0;
        int r;

        /* Another holder of the lock (oobctl snapshot list, the guard) is
         * done in milliseconds: wait a little (blocking, bounded to 5 s)
         * rather than give up a step for it. */
        for (unsigned i = 0;; i++) {
                r = catalog_open(cfg(w)->catalog_dir, ret, &repairs);
                if (r != -EAGAIN || i >= CATALOG_LOCK_TRIES)
                        break;
                (void) usleep(CATALOG_LOCK_WAIT_USEC);
        }
        if (r >= 0 && repairs > 0)
                log_notice("%s: repaired the catalog from the files on disk (%u fix%s).",
                           cfg(w)->catalog_dir, repairs, repairs == 1 ? "" : "es");
        return r;
}

/* alert.json (the guard's, or a failed rollback's) stands: the desktop is
 * left as it is for the helpdesk, and no window starts. */
static bool alert_raised(Manager *m) {
        _cleanup_free_ char *path = path_join(m->config.state_dir, ALERT_FILE);

        return path && access(path, F_OK) == 0;
}

/* Point the domain's system disk at the catalog's active overlay (each
 * snapshot, revert and promote makes a new one). The desktop must be off. */
static int sync_system_disk(Window *w, Catalog *c) {
        _cleanup_free_ char *system = NULL;
        Desktop *d;
        int r;

        r = get_desktop(w, &d);
        if (r < 0)
                return r;
        r = desktop_disks(d, &system, NULL);
        if (r >= 0 && streq(system, catalog_active(c)))
                return 0;
        return desktop_set_system_disk(d, catalog_active(c));
}

/* Make sure the desktop is off (destroying it: only after a failed or
 * interrupted trial, and to roll back). */
static int desktop_off(Window *w) {
        Desktop *d;
        int r;

        r = get_desktop(w, &d);
        if (r < 0)
                return r;
        return desktop_destroy(d);
}

/* Start the desktop on the catalog's active overlay, unless it runs. The
 * catalog is c when the caller holds it open (its lock is exclusive), else
 * w->catalog, else opened here. */
static int start_desktop(Window *w, Catalog *held) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        Desktop *d;
        bool running = false;
        int r;

        r = get_desktop(w, &d);
        if (r < 0)
                return r;
        r = desktop_is_running(d, &running);
        if (r < 0)
                return r;
        if (running)
                return 0;
        if (held || w->catalog)
                r = sync_system_disk(w, held ?: w->catalog);
        else {
                r = open_catalog(w, &c);
                if (r < 0)
                        return r;
                r = sync_system_disk(w, c);
        }
        if (r < 0)
                return r;
        return desktop_start(d);
}

static void candidate_done(Candidate *c) {
        patch_manifest_free(c->manifest);
        free(c->path);
        free(c->text);
        *c = (Candidate){};
}

static void free_candidates(Candidate *c, size_t n) {
        for (size_t i = 0; i < n; i++)
                candidate_done(&c[i]);
        free(c);
}

static void free_payloads(TxPayload *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(p[i].path);
        free(p);
}

static Select *select_free(Select *s) {
        if (!s)
                return NULL;
        installed_done(&s->installed);
        strv_free(s->paths);
        free_candidates(s->cands, s->n_cands);
        free_payloads(s->payloads, s->n_payloads);
        free(s);
        return NULL;
}

/* ---- the end ------------------------------------------------------------------------ */

static JobOutcome outcome_of(const Window *w) {
        switch (w->tx->state) {
        case TX_COMMITTED:
                return JOB_COMMITTED;
        case TX_ROLLED_BACK:
                return JOB_ROLLED_BACK;
        case TX_ABORTED:
                return w->tx->deferred ? JOB_DEFERRED : w->tx->cancelled ? JOB_CANCELLED : JOB_FAILED;
        default:
                return JOB_FAILED;
        }
}

/* Stop everything in flight (the job is over, or about to be). */
static void window_release(Window *w) {
        w->next = sd_event_source_disable_unref(w->next);
        w->retry = sd_event_source_disable_unref(w->retry);
        w->tuf = tuf_client_free(w->tuf);
        w->select = select_free(w->select);
        w->worker = worker_free(w->worker);
        w->trial = trial_free(w->trial);
        if (w->catalog) {
                (void) catalog_discard_stage(w->catalog);
                w->catalog = catalog_free(w->catalog);
        }
}

static void finish_job(Window *w, const JobResult *r) {
        if (w->finished)
                return;
        w->finished = true;
        window_release(w);
        job_finished(w->job, r);
}

/* The transaction file could not be written: stop here, in memory only.
 * What is on disk is the last state written; the next start resumes it. */
static void window_fail_unpersisted(Window *w, int r, const char *what) {
        _cleanup_free_ char *summary = NULL;

        if (asprintf(&summary, "stopped: cannot %s: %s; the transaction resumes at the next start", what,
                     strerror(-r)) < 0)
                summary = NULL;
        finish_job(w, &(JobResult){
                              .outcome = JOB_FAILED,
                              .summary = summary ?: "stopped: cannot record the transaction",
                              .manifest = w->tx ? w->tx->manifest_id : NULL,
                              .snapshot = w->tx ? w->tx->pre_patch_snapshot : NULL,
                              .failed_step = w->tx ? step_of_state(w->tx->state) : w->job->step,
                      });
}

static void check_finish(Window *w, JobOutcome o, const char *summary) {
        finish_job(w, &(JobResult){
                              .outcome = o,
                              .summary = summary,
                              .manifest = w->available,
                              .failed_step = o == JOB_FAILED ? w->job->step : _JOB_STEP_INVALID,
                      });
}

/* Queue t's report (terminal) in the outbox and record that in the file.
 * Failures leave it pending: the next start queues it. */
static int queue_report(Manager *m, Transaction *t) {
        _cleanup_free_ char *json = NULL, *key = NULL;
        Outbox *o;
        int r;

        if (t->report != TX_REPORT_PENDING)
                return 0;
        r = manager_get_outbox(m, &o);
        if (r == -ENOENT) {
                t->report = TX_REPORT_NONE; /* no [reports] url */
        } else {
                if (r >= 0)
                        r = transaction_report_json(t, m->config.device_id, &json);
                if (r >= 0)
                        r = transaction_report_key(t, &key);
                if (r >= 0)
                        r = outbox_queue(o, key, json);
                if (r < 0)
                        return log_error_errno(r, "Transaction %s: cannot queue the report: %m", t->id);
                t->report = TX_REPORT_QUEUED;
                log_info("Transaction %s: report %s queued for %s.", t->id, key, m->config.reports_url);
        }
        r = transaction_save(m->config.state_dir, t);
        if (r < 0)
                log_error_errno(r,
                                "Transaction %s: cannot record that the report is queued (it may be queued "
                                "again; the server's dedup takes care of that): %m",
                                t->id);
        return 0;
}

/* Terminal: report, then end the job. */
static void act_finish(Window *w) {
        _cleanup_free_ char *summary = NULL;
        const Transaction *t = w->tx;
        int r = 0;

        job_progress(w->job, JOB_STEP_REPORT, 100, "%s", transaction_outcome(t));
        (void) queue_report(w->m, w->tx);

        switch (t->state) {
        case TX_COMMITTED:
                r = asprintf(&summary,
                             "%s version %" PRIu64
                             " applied; the desktop booted healthy and stayed so for %u s "
                             "(trial %u of %u); snapshot %s is known-good",
                             t->manifest_id, t->manifest_version, t->stability_sec, t->attempt, t->attempts,
                             t->patched_snapshot);
                break;
        case TX_ROLLED_BACK:
                r = asprintf(&summary, "%s version %" PRIu64 " rolled back to the pre-patch snapshot %s: %s",
                             t->manifest_id, t->manifest_version, t->pre_patch_snapshot, t->reason);
                break;
        case TX_FAILED:
                r = asprintf(&summary, "%s%s%s: %s; an alert is raised (%s/" ALERT_FILE ")",
                             t->manifest_id ?: "the update", t->manifest_id ? " " : "",
                             t->manifest_id ? "failed" : "", t->reason, cfg(w)->state_dir);
                break;
        default:
                if (t->deferred)
                        r = asprintf(&summary,
                                     "deferred: %s; nothing was changed, the timer tries again next night "
                                     "(oobctl update now --force does not defer)",
                                     t->reason);
                else
                        r = asprintf(&summary, "%s: nothing was changed: %s",
                                     t->cancelled ? "cancelled" : "stopped", t->reason);
        }
        if (r < 0)
                summary = NULL;
        finish_job(w, &(JobResult){
                              .outcome = outcome_of(w),
                              .summary = summary ?: transaction_outcome(t),
                              .manifest = t->manifest_id,
                              .snapshot = t->pre_patch_snapshot,
                              .failed_step = t->failed_state >= 0 && !t->deferred
                                                     ? step_of_state(t->failed_state)
                                                     : _JOB_STEP_INVALID,
                      });
}

/* Stop before the active disk changed (any state up to applying): the
 * desktop is started again if the window shut it down. */
static void window_abort(Window *w, TxState where, const char *format, ...) {
        _cleanup_free_ char *reason = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&reason, format, ap);
        va_end(ap);
        if (r < 0)
                reason = NULL;

        if (!w->tx) { /* a check */
                check_finish(w, w->job->cancel_requested ? JOB_CANCELLED : JOB_FAILED, reason ?: "failed");
                return;
        }
        if (w->tx->state >= TX_APPLIED && !tx_state_is_terminal(w->tx->state)) {
                /* The disk has the patch: the only way out is back. */
                (void) transaction_set_failure(w->tx, where, "%s", reason ?: "failed");
                w->trial = trial_free(w->trial);
                act_rollback(w);
                return;
        }

        w->tuf = tuf_client_free(w->tuf);
        w->select = select_free(w->select);
        w->worker = worker_free(w->worker);
        if (w->catalog) {
                r = catalog_discard_stage(w->catalog);
                if (r < 0)
                        log_warning_errno(
                                r, "Cannot remove the staging overlay (the next catalog open does): %m");
                w->catalog = catalog_free(w->catalog);
        }
        (void) transaction_set_failure(w->tx, where, "%s", reason ?: "failed");
        log_warning("Transaction %s: stopped in state %s: %s", w->tx->id, tx_state_to_string(where),
                    w->tx->reason);

        /* After the pre-patch snapshot the active disk is a fresh overlay on
         * P, or (killed after a promote, before "applied" was written, and
         * the apply again failed) the patch that was never judged: a new
         * overlay on P is the old disk in both cases. */
        if (w->tx->pre_patch_snapshot && (w->tx->state == TX_SNAPSHOTTED || w->tx->state == TX_APPLYING)) {
                _cleanup_(catalog_freep) Catalog *c = NULL;

                r = open_catalog(w, &c);
                if (r >= 0 && streq_ptr(catalog_active_parent(c), w->tx->pre_patch_snapshot))
                        r = catalog_revert(c, w->tx->pre_patch_snapshot, /* running= */ false);
                if (r >= 0)
                        r = sync_system_disk(w, c);
                if (r < 0)
                        log_error_errno(r,
                                        "Transaction %s: cannot make sure the active disk is the pre-patch "
                                        "snapshot %s again: %m",
                                        w->tx->id, w->tx->pre_patch_snapshot);
                free(w->tx->result_snapshot);
                w->tx->result_snapshot =
                        c && catalog_active_parent(c) ? strdup(catalog_active_parent(c)) : NULL;
        }

        if (w->tx->desktop_was_running && !w->shutting_down && !alert_raised(w->m)) {
                r = start_desktop(w, NULL);
                if (r < 0)
                        log_error_errno(r, "Cannot start desktop %s again after the stopped window: %m",
                                        cfg(w)->desktop_name);
        }
        if (!enter_or_stop(w, TX_ABORTED))
                return;
        act_finish(w);
}

/* ---- refresh and select ----------------------------------------------------------- */

static void on_refreshed(TufClient *c, int error, void *userdata);

static void act_refresh(Window *w) {
        TufClientOptions o;
        int r;

        job_progress(w->job, JOB_STEP_REFRESH, 0, "TUF metadata from %s", cfg(w)->metadata_url);
        w->tuf = tuf_client_free(w->tuf);
        oobd_config_tuf_options(cfg(w), &o);
        r = tuf_client_new(&o, &w->tuf);
        if (r >= 0)
                r = tuf_client_refresh_async(w->tuf, w->m->event, on_refreshed, w);
        if (r < 0)
                window_abort(w, TX_REFRESHING, "cannot start the TUF refresh: %s", strerror(-r));
}

/* The Windows build of the sleeping (or running) desktop, read-only from the
 * active overlay; 0 when it cannot be read (logged). */
static uint64_t read_windows_build(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_(windows_info_done) WindowsInfo info = {};
        _cleanup_free_ char *active = NULL;
        Partition p;
        int r;

        r = open_catalog(w, &c);
        if (r >= 0 && !(active = strdup(catalog_active(c))))
                r = -ENOMEM;
        c = catalog_free(c);
        /* Read-only with force-share: whether or not the desktop runs. */
        if (r >= 0)
                r = offline_disk_open(active, /* writable= */ false, /* running= */ true, &d);
        if (r >= 0)
                r = disk_find_windows(d, &p);
        if (r >= 0)
                r = ntfs_volume_open(d, &p, /* writable= */ false, &v, NULL);
        if (r >= 0)
                r = windows_info_read(v, &info);
        if (r < 0) {
                log_warning_errno(r,
                                  "Cannot read the Windows build from %s (manifests bound to builds are not "
                                  "applied): %m",
                                  active ?: cfg(w)->catalog_dir);
                return 0;
        }
        return info.build;
}

static bool strv_has(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

/* Every "manifests/NAME.yaml" target the trusted targets roles list: the
 * top-level one and the roles it delegates that path to (one level, as
 * oob-repo publishes: targets -> releases). The search for a probe path
 * (act_select()) has loaded those roles. */
static int list_manifest_paths(Window *w, char ***ret) {
        _cleanup_strv_free_ char **paths = NULL, **roles = NULL;
        const TufTrustedSet *set;
        const TufTargets *top;
        int r;

        set = tuf_client_trusted(w->tuf);
        top = tuf_trusted_set_targets(set, "targets");
        if (!top)
                return -ENOENT;
        r = strv_extend(&roles, "targets");
        if (r < 0)
                return r;
        for (size_t i = 0; top->has_delegations && i < top->n_roles; i++)
                if (tuf_delegated_role_matches(&top->roles[i], MANIFEST_PROBE) &&
                    !strv_has(roles, top->roles[i].name)) {
                        r = strv_extend(&roles, top->roles[i].name);
                        if (r < 0)
                                return r;
                }
        for (char **role = roles; *role; role++) {
                const TufTargets *t = tuf_trusted_set_targets(set, *role);

                for (size_t i = 0; t && i < t->n_targets; i++) {
                        const char *p = t->targets[i].path;

                        if (fnmatch(MANIFEST_PATTERN, p, FNM_PATHNAME) != 0 || strv_has(paths, p))
                                continue;
                        if (strv_length(paths) >= MANIFESTS_MAX) {
                                log_warning("More than %u manifests listed; the others are ignored.",
                                            MANIFESTS_MAX);
                                break;
                        }
                        r = strv_extend(&paths, p);
                        if (r < 0)
                                return r;
                }
        }
        *ret = TAKE_PTR(paths);
        return 0;
}

static bool hashes_equal(const TufHashes *a, const TufHashes *b) {
        if (a->has_sha256 && b->has_sha256)
                return memcmp(a->sha256, b->sha256, sizeof(a->sha256)) == 0;
        if (a->has_sha512 && b->has_sha512)
                return memcmp(a->sha512, b->sha512, sizeof(a->sha512)) == 0;
        return false;
}

/* The transaction takes the chosen manifest: its identity, its payloads
 * (as the select step found them: taken from s) and trial policy, and its
 * bytes beside the transaction file. */
static int adopt_manifest(Window *w, Select *s) {
        Transaction *t = w->tx;
        Candidate *c = &s->cands[s->chosen];
        const PatchManifest *m = c->manifest;
        _cleanup_free_ char *path = NULL;
        int r;

        path = path_join(cfg(w)->state_dir, TRANSACTION_MANIFEST_FILE);
        if (!path)
                return -ENOMEM;
        r = write_file_atomic(path, c->text, c->size, 0600);
        if (r < 0)
                return r;

        free_payloads(t->payloads, t->n_payloads);
        t->payloads = TAKE_PTR(s->payloads);
        t->n_payloads = s->n_payloads;
        s->n_payloads = 0;
        free(t->manifest_target);
        free(t->manifest_id);
        t->manifest_target = strdup(c->path);
        t->manifest_id = strdup(m->id);
        if (!t->manifest_target || !t->manifest_id)
                return -ENOMEM;
        t->manifest_version = m->version;
        t->manifest_length = c->size;
        t->manifest_hashes = c->hashes;
        if (s->build > 0)
                t->windows_build = s->build;
        t->boot_timeout_sec = MAX(m->trial.boot_timeout_sec, cfg(w)->trial_boot_timeout);
        t->stability_sec = MAX(m->trial.stability_sec, cfg(w)->trial_stability);
        t->attempts = m->trial.attempts ?: 1;
        w->manifest = patch_manifest_free(w->manifest);
        w->manifest = TAKE_PTR(c->manifest);
        return 0;
}

/*
 * The select step runs on the loop as a chain of the TUF client's
 * asynchronous calls, each continuing in the next one's done():
 *
 *   act_select()            the probe search: loads the roles manifests are
 *                           delegated to
 *   on_probe_found()        list the manifests
 *   select_load_next()      for each (a resumed transaction's own first):
 *   on_candidate_found()      its search,
 *   on_candidate_fetched()    its fetch, verified, then parsed
 *   select_choose()         window_choose_manifest()
 *   select_payload_next()   the chosen one's payloads, searched
 *   select_adopt()          the transaction takes it
 *
 * A cancel frees w->tuf (window_cancel()), so no done() comes after it;
 * window_release() frees the step's state.
 */

static void select_load_next(Window *w);
static void select_choose(Window *w);
static void select_payload_next(Window *w);

/* A cancel that came between two calls: window_step() handles it. */
static bool select_cancelled(Window *w) {
        if (!w->job->cancel_requested)
                return false;
        schedule(w);
        return true;
}

/* A resumed transaction's manifest is not kept. */
static void log_choosing_again(Window *w) {
        log_notice("Transaction %s: manifest %s changed or is gone; choosing again.", w->tx->id,
                   w->tx->manifest_target);
}

static void on_probe_found(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        Window *w = userdata;
        Select *s = w->select;
        int r = error == -ENOENT ? 0 : error; /* the probe is not meant to exist */

        if (select_cancelled(w))
                return;
        if (r >= 0)
                r = list_manifest_paths(w, &s->paths);
        if (r < 0) {
                window_abort(w, TX_REFRESHING, "cannot list the manifests: %s: %s",
                             tuf_client_error_context(c) ?: "search", cause(r));
                return;
        }

        s->cands = calloc(MAX(strv_length(s->paths), 1U), sizeof(Candidate));
        if (!s->cands) {
                window_abort(w, TX_REFRESHING, "out of memory");
                return;
        }
        /* A resumed transaction keeps its manifest while the repository
         * still lists the same bytes. */
        if (w->tx && w->tx->manifest_id) {
                s->own_first = w->tx->manifest_target && strv_has(s->paths, w->tx->manifest_target);
                if (!s->own_first)
                        log_choosing_again(w);
        }
        select_load_next(w);
}

/* The manifest being loaded is done with, kept or not: on to the next. */
static void select_loaded(Window *w, bool kept) {
        Select *s = w->select;

        if (s->own_first) {
                s->own_first = false;
                if (kept) {
                        select_choose(w);
                        return;
                }
                log_choosing_again(w);
        }
        select_load_next(w);
}

static void on_candidate_found(TufClient *c, int error, const TufTargetFile *t, void *userdata);

/* The manifest being loaded is left out (logged, with what failed): on to
 * the next. */
static void select_skip(Window *w, int r, const char *what) {
        log_warning_errno(r, "Manifest %s: %s: %s", w->select->path, what, cause(r));
        select_loaded(w, false);
}

/* Search the next listed manifest, or choose when all were loaded. */
static void select_load_next(Window *w) {
        Select *s = w->select;
        int r;

        for (;;) {
                if (s->own_first)
                        s->path = w->tx->manifest_target;
                else if (s->paths && s->paths[s->next])
                        s->path = s->paths[s->next++];
                else {
                        select_choose(w);
                        return;
                }
                r = tuf_client_find_target_async(w->tuf, w->m->event, s->path, on_candidate_found, w);
                if (r >= 0)
                        return;
                log_warning_errno(r, "Manifest %s: cannot start the search: %s", s->path, cause(r));
                if (s->own_first) {
                        s->own_first = false;
                        log_choosing_again(w);
                }
        }
}

static void on_candidate_fetched(TufClient *c, int error, char *data, size_t size, void *userdata);

static void on_candidate_found(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        Window *w = userdata;
        Select *s = w->select;
        int r;

        if (select_cancelled(w))
                return;
        if (error < 0) {
                select_skip(w, error, tuf_client_error_context(c) ?: "not found");
                return;
        }
        if (t->length > MANIFEST_SIZE_MAX) {
                log_warning_errno(-EFBIG, "Manifest %s: %" PRIu64 " bytes, more than a manifest may be",
                                  s->path, t->length);
                select_loaded(w, false);
                return;
        }
        s->length = t->length;
        s->hashes = t->hashes;
        r = tuf_client_fetch_target_async(c, w->m->event, t, on_candidate_fetched, w);
        if (r < 0)
                select_skip(w, r, "cannot start the download");
}

static void on_candidate_fetched(TufClient *c, int error, char *data, size_t size, void *userdata) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
        _cleanup_free_ char *text = data, *parse_error = NULL, *copy = NULL;
        Window *w = userdata;
        Select *s = w->select;
        int r;

        if (select_cancelled(w))
                return;
        if (error < 0) {
                select_skip(w, error, tuf_client_error_context(c) ?: "download");
                return;
        }
        /* Verified: parse. */
        r = patch_manifest_parse(text, size, &m, &parse_error);
        if (r < 0) {
                log_warning_errno(r, "Manifest %s: %s", s->path, parse_error ?: strerror(-r));
                select_loaded(w, false);
                return;
        }
        if (s->own_first && !hashes_equal(&s->hashes, &w->tx->manifest_hashes)) {
                select_loaded(w, false);
                return;
        }
        copy = strdup(s->path);
        if (!copy) {
                log_warning_errno(-ENOMEM, "Manifest %s: %s", s->path, strerror(ENOMEM));
                select_loaded(w, false);
                return;
        }
        s->cands[s->n_cands++] = (Candidate){
                .manifest = TAKE_PTR(m),
                .path = TAKE_PTR(copy),
                .length = s->length,
                .hashes = s->hashes,
                .text = TAKE_PTR(text),
                .size = size,
        };
        select_loaded(w, true);
}

static void select_choose(Window *w) {
        _cleanup_free_ const char **why = NULL;
        _cleanup_free_ PatchManifest **list = NULL;
        Select *s = w->select;
        size_t n = s->n_cands;
        bool need_build = false;
        int r, chosen;

        list = calloc(MAX(n, 1U), sizeof(PatchManifest *));
        why = calloc(MAX(n, 1U), sizeof(const char *));
        if (!list || !why) {
                window_abort(w, TX_REFRESHING, "out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                list[i] = s->cands[i].manifest;
                need_build = need_build || list[i]->os_build_min > 0 || list[i]->os_build_max > 0;
        }
        if (need_build)
                s->build = read_windows_build(w);

        chosen = window_choose_manifest(list, n, cfg(w)->groups, s->build, &s->installed, why);
        for (size_t i = 0; i < n; i++)
                log_debug("Manifest %s version %" PRIu64 ": %s", list[i]->id, list[i]->version,
                          why[i] ?: "applies");

        if (chosen < 0) {
                w->select = select_free(w->select);
                if (!w->tx) {
                        check_finish(w, JOB_UP_TO_DATE, "nothing to apply: this device is up to date");
                        return;
                }
                /* Nothing was done: no transaction to keep or report. */
                r = transaction_remove(cfg(w)->state_dir);
                if (r < 0)
                        log_warning_errno(r, "Cannot remove %s/" TRANSACTION_FILE ": %m", cfg(w)->state_dir);
                finish_job(w, &(JobResult){
                                      .outcome = JOB_UP_TO_DATE,
                                      .summary = "nothing to apply: this device is up to date",
                                      .failed_step = _JOB_STEP_INVALID,
                              });
                return;
        }

        if (!w->tx) {
                _cleanup_free_ char *summary = NULL;

                w->available = strdup(list[chosen]->id);
                if (asprintf(&summary, "%s version %" PRIu64 " is available: %s", list[chosen]->id,
                             list[chosen]->version, list[chosen]->description ?: "no description") < 0)
                        summary = NULL;
                w->select = select_free(w->select);
                check_finish(w, JOB_AVAILABLE, summary ?: "an update is available");
                return;
        }

        s->chosen = (size_t) chosen;
        select_payload_next(w);
}

static void select_adopt(Window *w) {
        int r;

        r = adopt_manifest(w, w->select);
        w->select = select_free(w->select);
        if (r < 0) {
                window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(-r));
                return;
        }
        log_info("Transaction %s: %s version %" PRIu64 " (%s) applies to this device.", w->tx->id,
                 w->tx->manifest_id, w->tx->manifest_version, w->tx->manifest_target);
        job_progress(w->job, JOB_STEP_SELECT, 100, "%s version %" PRIu64, w->tx->manifest_id,
                     w->tx->manifest_version);
        w->payload_index = 0;
        if (!enter_or_stop(w, TX_DOWNLOADING))
                return;
        schedule(w);
}

static void on_payload_found(TufClient *c, int error, const TufTargetFile *t, void *userdata);

/* The chosen manifest's payloads, searched one after the other (they may
 * be delegated to roles no search loaded yet), then adopted. */
static void select_payload_next(Window *w) {
        Select *s = w->select;
        const PatchManifest *m = s->cands[s->chosen].manifest;
        size_t n = strv_length(m->payloads);
        int r;

        if (n > TRANSACTION_PAYLOADS_MAX) {
                window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(E2BIG));
                return;
        }
        if (n > 0 && !s->payloads) {
                s->payloads = calloc(n, sizeof(TxPayload));
                if (!s->payloads) {
                        window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(ENOMEM));
                        return;
                }
        }
        if (s->n_payloads == n) {
                select_adopt(w);
                return;
        }
        r = tuf_client_find_target_async(w->tuf, w->m->event, m->payloads[s->n_payloads], on_payload_found,
                                         w);
        if (r < 0) {
                log_error_errno(r, "Payload %s of %s: cannot start the search: %m",
                                m->payloads[s->n_payloads], m->id);
                window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(-r));
        }
}

static void on_payload_found(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        Window *w = userdata;
        Select *s = w->select;
        const PatchManifest *m = s->cands[s->chosen].manifest;

        if (select_cancelled(w))
                return;
        if (error < 0) {
                log_error_errno(error, "Payload %s of %s: %s: %m", m->payloads[s->n_payloads], m->id,
                                tuf_client_error_context(c) ?: "not listed");
                window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(-error));
                return;
        }
        s->payloads[s->n_payloads] =
                (TxPayload){.path = strdup(t->path), .length = t->length, .hashes = t->hashes};
        if (!s->payloads[s->n_payloads].path) {
                window_abort(w, TX_REFRESHING, "cannot take the manifest: %s", strerror(ENOMEM));
                return;
        }
        s->n_payloads++;
        select_payload_next(w);
}

static void on_probe_found(TufClient *c, int error, const TufTargetFile *t, void *userdata);

static void act_select(Window *w) {
        _cleanup_free_ char *error = NULL;
        int r;

        job_progress(w->job, JOB_STEP_SELECT, 0, "looking for a manifest for this device");

        w->select = select_free(w->select);
        w->select = calloc(1, sizeof(Select));
        if (!w->select) {
                window_abort(w, TX_REFRESHING, "out of memory");
                return;
        }
        r = installed_load(cfg(w)->state_dir, &w->select->installed, &error);
        if (r < 0) {
                window_abort(w, TX_REFRESHING, "cannot read %s/" INSTALLED_FILE ": %s", cfg(w)->state_dir,
                             error ?: strerror(-r));
                return;
        }
        /* The search for a probe path loads the roles "manifests/" is
         * delegated to: on_probe_found() then lists what they hold. */
        r = tuf_client_find_target_async(w->tuf, w->m->event, MANIFEST_PROBE, on_probe_found, w);
        if (r < 0)
                window_abort(w, TX_REFRESHING, "cannot list the manifests: %s: %s",
                             tuf_client_error_context(w->tuf) ?: "search", cause(r));
}

static void on_refreshed(TufClient *c, int error, void *userdata) {
        Window *w = userdata;

        if (error < 0) {
                window_abort(w, TX_REFRESHING, "TUF refresh failed: %s: %s",
                             tuf_client_error_context(c) ?: "metadata", cause(error));
                return;
        }
        if (w->job->cancel_requested) {
                schedule(w);
                return;
        }
        act_select(w);
}

/* ---- download ---------------------------------------------------------------------- */

static void on_downloaded(TufClient *c, int error, void *userdata);

/* payload-dir keeps what this manifest needs, finished or partial. */
static void clean_payload_dir(Window *w) {
        _cleanup_strv_free_ char **keep = NULL;
        DIR *d;
        struct dirent *de;

        for (size_t i = 0; i < w->tx->n_payloads; i++) {
                _cleanup_free_ char *name = tuf_client_target_filename(w->tx->payloads[i].path),
                                    *partial = NULL;

                if (!name || asprintf(&partial, "%s.partial", name) < 0 || strv_extend(&keep, name) < 0 ||
                    strv_extend(&keep, partial) < 0)
                        return; /* keep everything */
        }
        d = opendir(cfg(w)->payload_dir);
        if (!d)
                return;
        while ((de = readdir(d))) {
                /* Only names the TUF client makes ("payloads%2Fa.tar"). */
                if (de->d_name[0] == '.' || !strstr(de->d_name, "%2F") || strv_has(keep, de->d_name))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        log_info("Removed %s/%s: no manifest being applied needs it.", cfg(w)->payload_dir,
                                 de->d_name);
        }
        closedir(d);
}

static void on_download_progress(TufClient *c, uint64_t done, uint64_t total, void *userdata) {
        Window *w = userdata;
        uint64_t all = w->bytes_before + done;

        job_progress(w->job, JOB_STEP_DOWNLOAD, w->bytes_total ? (unsigned) (all * 100 / w->bytes_total) : 0,
                     "%s: %" PRIu64 " of %" PRIu64 " bytes", w->tx->payloads[w->payload_index].path, all,
                     w->bytes_total);
}

static void on_payload_listed(TufClient *c, int error, const TufTargetFile *f, void *userdata);

static void act_download(Window *w) {
        const TxPayload *p;
        int r;

        if (w->payload_index == 0) {
                r = mkdir_p(cfg(w)->payload_dir, 0700);
                if (r < 0) {
                        window_abort(w, TX_DOWNLOADING, "cannot create %s: %s", cfg(w)->payload_dir,
                                     strerror(-r));
                        return;
                }
                clean_payload_dir(w);
                w->bytes_before = 0;
                w->bytes_total = 0;
                for (size_t i = 0; i < w->tx->n_payloads; i++)
                        w->bytes_total += w->tx->payloads[i].length;
        }
        if (w->payload_index >= w->tx->n_payloads) {
                job_progress(w->job, JOB_STEP_DOWNLOAD, 100, "%zu payload%s verified", w->tx->n_payloads,
                             w->tx->n_payloads == 1 ? "" : "s");
                if (!enter_or_stop(w, TX_STAGED))
                        return;
                schedule(w);
                return;
        }
        /* Its signed info again (the roles are trusted since the select
         * step: no transfer), then the download. */
        p = &w->tx->payloads[w->payload_index];
        r = tuf_client_find_target_async(w->tuf, w->m->event, p->path, on_payload_listed, w);
        if (r < 0)
                window_abort(w, TX_DOWNLOADING, "payload %s: %s: %s", p->path,
                             tuf_client_error_context(w->tuf) ?: "not listed", cause(r));
}

static void on_payload_listed(TufClient *c, int error, const TufTargetFile *f, void *userdata) {
        Window *w = userdata;
        const TxPayload *p = &w->tx->payloads[w->payload_index];
        int r = error;

        if (w->job->cancel_requested) {
                schedule(w);
                return;
        }
        if (r >= 0 && (f->length != p->length || !hashes_equal(&f->hashes, &p->hashes)))
                r = -ESTALE; /* changed since the manifest was chosen */
        if (r < 0) {
                window_abort(w, TX_DOWNLOADING, "payload %s: %s: %s", p->path,
                             r == -ESTALE ? "changed in the repository during the window"
                                          : tuf_client_error_context(c) ?: "not listed",
                             r == -ESTALE ? "the signed length or hashes differ" : cause(r));
                return;
        }
        r = tuf_client_download_target_async(c, w->m->event, f, cfg(w)->payload_dir, on_download_progress,
                                             on_downloaded, w);
        if (r < 0)
                window_abort(w, TX_DOWNLOADING, "payload %s: cannot start the download: %s", p->path,
                             strerror(-r));
}

static void on_downloaded(TufClient *c, int error, void *userdata) {
        Window *w = userdata;
        const TxPayload *p = &w->tx->payloads[w->payload_index];

        if (error < 0) {
                if (error == -ENOSPC || error == -EDQUOT) {
                        /* No room: keep nothing half-written (the disk is full
                         * for everybody else too). */
                        _cleanup_free_ char *name = tuf_client_target_filename(p->path), *partial = NULL;

                        if (name && asprintf(&partial, "%s/%s.partial", cfg(w)->payload_dir, name) >= 0 &&
                            unlink(partial) >= 0)
                                log_info("Removed %s: the file system is full.", partial);
                }
                window_abort(w, TX_DOWNLOADING, "payload %s: %s: %s", p->path,
                             tuf_client_error_context(c) ?: "download", cause(error));
                return;
        }
        log_info("Transaction %s: payload %s verified.", w->tx->id, p->path);
        w->bytes_before += p->length;
        w->payload_index++;
        schedule(w);
}

/* ---- defer, shutdown and snapshot ---------------------------------------------------- */

/* "LAB\alice" or "2 users, LAB\alice and bob" (at most a few names: the
 * reason is one sentence). */
static char *users_text(char *const *users) {
        size_t n = strv_length(users), shown = MIN(n, (size_t) 4);
        _cleanup_free_ char *list = NULL;
        char *text = NULL;

        for (size_t i = 0; i < shown; i++) {
                char *next;

                if (asprintf(&next, "%s%s%s", list ?: "",
                             i == 0       ? ""
                             : i + 1 == n ? " and "
                                          : ", ",
                             users[i]) < 0)
                        return NULL;
                free(list);
                list = next;
        }
        if (n == 1)
                return TAKE_PTR(list);
        if (asprintf(&text, "%zu users, %s%s", n, list ?: "", n > shown ? " and others" : "") < 0)
                return NULL;
        return text;
}

/* The desktop runs: may the window shut it down now? Returns true when it
 * deferred the transaction (the job is over then). */
static bool defer_for_user(Window *w, Desktop *d) {
        _cleanup_strv_free_ char **users = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        if (w->tx->force) {
                log_info("Transaction %s: started with the force flag: not asking who is logged in on "
                         "desktop %s.",
                         w->tx->id, cfg(w)->desktop_name);
                return false;
        }
        if (!cfg(w)->defer_when_user_active) {
                log_info("Transaction %s: [desktop] defer-when-user-active is off: not asking who is logged "
                         "in on desktop %s.",
                         w->tx->id, cfg(w)->desktop_name);
                return false;
        }
        r = desktop_logged_in_users(d, &users);
        if (r < 0) {
                log_warning_errno(
                        r,
                        "Transaction %s: cannot ask the guest agent of desktop %s who is logged in "
                        "(%s): the user activity is unknown; the window proceeds.",
                        w->tx->id, cfg(w)->desktop_name,
                        r == -ENOTCONN     ? "not connected"
                        : r == -ETIMEDOUT  ? "no answer"
                        : r == -EOPNOTSUPP ? "the agent lacks guest-get-users"
                                           : strerror(-r));
                return false;
        }
        if (r == 0) {
                log_info("Transaction %s: nobody is logged in on desktop %s.", w->tx->id,
                         cfg(w)->desktop_name);
                return false;
        }

        who = users_text(users);
        w->tx->deferred = true;
        /* Running and left so (an earlier pass of a resumed transaction may
         * have said otherwise): nothing for an abort to start again. */
        w->tx->desktop_was_running = false;
        /* The reason goes to the report server: how many, not who. The
         * names stay in this machine's journal, for the helpdesk. */
        if (r == 1)
                (void) transaction_set_failure(w->tx, TX_STAGED, "a user is logged in on desktop %s",
                                               cfg(w)->desktop_name);
        else
                (void) transaction_set_failure(w->tx, TX_STAGED, "%d users are logged in on desktop %s", r,
                                               cfg(w)->desktop_name);
        log_notice("Transaction %s: %s %s logged in on desktop %s; deferred (the payloads stay in %s for the "
                   "next window).",
                   w->tx->id, who ?: "a user", r == 1 ? "is" : "are", cfg(w)->desktop_name,
                   cfg(w)->payload_dir);
        if (enter_or_stop(w, TX_ABORTED))
                act_finish(w);
        return true;
}

static void act_staged(Window *w) {
        DesktopState s;
        Desktop *d;
        int r;

        /* Written before the desktop is touched: whether to start it again. */
        r = get_desktop(w, &d);
        if (r >= 0)
                r = desktop_state(d, &s);
        if (r < 0) {
                window_abort(w, TX_STAGED, "cannot reach desktop %s on %s: %s", cfg(w)->desktop_name,
                             cfg(w)->desktop_uri, strerror(-r));
                return;
        }
        if (s == DESKTOP_PAUSED) {
                window_abort(w, TX_STAGED, "desktop %s is paused or suspended; it is not patched",
                             cfg(w)->desktop_name);
                return;
        }
        if (s == DESKTOP_RUNNING && defer_for_user(w, d))
                return;
        if (s != DESKTOP_OFF && s != DESKTOP_CRASHED)
                w->tx->desktop_was_running = true;
        if (!enter_or_stop(w, TX_STOPPING_DESKTOP))
                return;
        schedule(w);
}

static void snapshot_pre_patch(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *id = NULL, *label = NULL;
        Desktop *d;
        bool running = true;
        int r;

        r = get_desktop(w, &d);
        if (r >= 0)
                r = desktop_is_running(d, &running);
        if (r >= 0 && running)
                r = -EBUSY;
        if (r < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "the desktop is not off: %s", strerror(-r));
                return;
        }
        job_progress(w->job, JOB_STEP_SNAPSHOT, 0, "pre-patch snapshot");
        r = open_catalog(w, &c);
        if (r < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "cannot open the catalog %s: %s", cfg(w)->catalog_dir,
                             strerror(-r));
                return;
        }
        if (asprintf(&label, "before %s version %" PRIu64, w->tx->manifest_id, w->tx->manifest_version) < 0)
                label = NULL;
        r = catalog_snapshot(c, SNAPSHOT_PRE_PATCH, label, w->tx->manifest_id, /* running= */ false, &id);
        if (r < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "cannot take the pre-patch snapshot: %s", strerror(-r));
                return;
        }
        r = sync_system_disk(w, c);
        if (r < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "cannot point the desktop at the new active disk: %s",
                             strerror(-r));
                return;
        }
        log_info("Transaction %s: pre-patch snapshot %s.", w->tx->id, id);
        free(w->tx->pre_patch_snapshot);
        w->tx->pre_patch_snapshot = TAKE_PTR(id);
        if (!enter_or_stop(w, TX_SNAPSHOTTED))
                return;
        schedule(w);
}

static void on_desktop_off(Desktop *d, int error, void *userdata) {
        Window *w = userdata;

        w->shutting_down = false;
        if (error < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "cannot shut desktop %s down: %s", cfg(w)->desktop_name,
                             strerror(-error));
                return;
        }
        log_info("Desktop %s is off.", cfg(w)->desktop_name);
        schedule(w); /* the state is still stopping-desktop: the snapshot follows */
}

static void act_stop_desktop(Window *w) {
        DesktopState s;
        Desktop *d;
        int r;

        r = get_desktop(w, &d);
        if (r >= 0)
                r = desktop_state(d, &s);
        if (r < 0) {
                window_abort(w, TX_STOPPING_DESKTOP, "cannot reach desktop %s: %s", cfg(w)->desktop_name,
                             strerror(-r));
                return;
        }
        switch (s) {
        case DESKTOP_OFF:
                snapshot_pre_patch(w);
                return;
        case DESKTOP_CRASHED:
                /* Stopped after a panic and kept for evidence: nothing to lose. */
                r = desktop_destroy(d);
                if (r < 0) {
                        window_abort(w, TX_STOPPING_DESKTOP, "cannot stop the crashed desktop: %s",
                                     strerror(-r));
                        return;
                }
                snapshot_pre_patch(w);
                return;
        case DESKTOP_PAUSED:
                window_abort(w, TX_STOPPING_DESKTOP, "desktop %s is paused or suspended; it is not patched",
                             cfg(w)->desktop_name);
                return;
        default:
                job_progress(w->job, JOB_STEP_SHUTDOWN, 0, "asking desktop %s to shut down",
                             cfg(w)->desktop_name);
                r = desktop_shutdown(d, w->m->event, cfg(w)->shutdown_agent_timeout,
                                     cfg(w)->shutdown_acpi_timeout, on_desktop_off, w);
                if (r < 0) {
                        window_abort(w, TX_STOPPING_DESKTOP, "cannot shut desktop %s down: %s",
                                     cfg(w)->desktop_name, strerror(-r));
                        return;
                }
                w->shutting_down = true;
        }
}

/* ---- retention (in the child) ------------------------------------------------------- */

static void on_retained(Worker *wk, const WorkerResult *res, void *userdata) {
        Window *w = userdata;

        w->worker = worker_free(w->worker);
        if (res->error < 0)
                log_full_errno(res->error == -EBUSY ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING, res->error,
                               "Retention of %s: %s: %s", cfg(w)->catalog_dir, res->step ?: "?",
                               res->message ?: strerror(-res->error));
        else if (res->dropped > 0)
                log_info("Retention of %s: %u snapshot%s dropped (keeping %u).", cfg(w)->catalog_dir,
                         res->dropped, res->dropped == 1 ? "" : "s", cfg(w)->keep_snapshots);
        if (w->tx->state == TX_SNAPSHOTTED)
                w->retained_off = true;
        else
                w->retained_commit = true;
        schedule(w);
}

static int start_retention(Window *w, bool running) {
        return worker_start(w->m->event,
                            &(WorkerRequest){
                                    .task = WORKER_RETAIN,
                                    .catalog_dir = cfg(w)->catalog_dir,
                                    .keep = cfg(w)->keep_snapshots,
                                    .running = running,
                            },
                            on_retained, w, &w->worker);
}

static void act_snapshotted(Window *w) {
        int r;

        /* The desktop is off: the one time retention may merge layers of the
         * active chain. Not fatal when it fails. */
        if (w->worker)
                return; /* retention under way */
        if (!w->retained_off) {
                r = start_retention(w, /* running= */ false);
                if (r >= 0)
                        return;
                log_warning_errno(r, "Cannot start the retention: %m");
        }
        if (!enter_or_stop(w, TX_APPLYING))
                return;
        schedule(w);
}

/* ---- apply --------------------------------------------------------------------------- */

/* The transaction's manifest from TRANSACTION_MANIFEST_FILE, checked
 * against the hashes recorded when it was chosen. */
static int load_manifest(Window *w) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        _cleanup_free_ char *path = NULL, *text = NULL, *error = NULL;
        size_t size;
        int r;

        if (w->manifest)
                return 0;
        path = path_join(cfg(w)->state_dir, TRANSACTION_MANIFEST_FILE);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, MANIFEST_SIZE_MAX, &text, &size);
        if (r < 0)
                return log_error_errno(r, "Cannot read %s: %m", path);
        r = tuf_hasher_new(&w->tx->manifest_hashes, &h);
        if (r >= 0)
                r = tuf_hasher_update(h, text, size);
        if (r >= 0)
                r = tuf_hasher_verify(h, w->tx->manifest_length, &w->tx->manifest_hashes);
        if (r < 0)
                return log_error_errno(r, "%s is not the manifest the transaction chose: %m", path);
        r = patch_manifest_parse(text, size, &w->manifest, &error);
        if (r < 0)
                return log_error_errno(r, "%s: %s", path, error ?: strerror(-r));
        if (!streq(w->manifest->id, w->tx->manifest_id) || w->manifest->version != w->tx->manifest_version) {
                w->manifest = patch_manifest_free(w->manifest);
                return log_error_errno(-EBADMSG, "%s is not the manifest the transaction chose", path);
        }
        return 0;
}

static void on_applied(Worker *wk, const WorkerResult *res, void *userdata) {
        Window *w = userdata;
        int r;

        w->worker = worker_free(w->worker);
        if (res->build > 0)
                w->tx->windows_build = res->build;
        if (res->error < 0) {
                window_abort(w, TX_APPLYING, "%s: %s", res->step ?: "apply",
                             res->message ?: strerror(-res->error));
                return;
        }
        log_info("Transaction %s: %s applied on the staging overlay: %zu action%s, %" PRIu64
                 " file%s written (%" PRIu64 " bytes), %" PRIu64 " deleted, %" PRIu64 " registry change%s.",
                 w->tx->id, w->tx->manifest_id, res->actions, res->actions == 1 ? "" : "s",
                 res->files_written, res->files_written == 1 ? "" : "s", res->bytes_written,
                 res->files_deleted, res->registry_changes, res->registry_changes == 1 ? "" : "s");
        job_progress(w->job, JOB_STEP_APPLY, 90, "making the patched overlay the active disk");

        r = catalog_promote(w->catalog);
        if (r < 0) {
                window_abort(w, TX_APPLYING, "cannot make the patched overlay the active disk: %s",
                             strerror(-r));
                return;
        }
        r = sync_system_disk(w, w->catalog);
        w->catalog = catalog_free(w->catalog);
        if (r < 0) {
                /* The patch is the active disk now: the way out is the rollback. */
                if (enter(w, TX_APPLIED) >= 0)
                        window_abort(w, TX_APPLIED, "cannot point the desktop at the patched disk: %s",
                                     strerror(-r));
                else
                        window_fail_unpersisted(w, r, "record the transaction's state");
                return;
        }
        if (!enter_or_stop(w, TX_APPLIED))
                return;
        schedule(w);
}

static void act_apply(Window *w) {
        _cleanup_free_ char *stage = NULL;
        int r;

        r = load_manifest(w);
        if (r < 0) {
                window_abort(w, TX_APPLYING, "cannot load the transaction's manifest: %s", strerror(-r));
                return;
        }
        job_progress(w->job, JOB_STEP_APPLY, 0, "%s version %" PRIu64 " on a staging overlay of snapshot %s",
                     w->tx->manifest_id, w->tx->manifest_version, w->tx->pre_patch_snapshot);
        /* Opening repairs: a staging overlay of an interrupted apply goes. */
        r = open_catalog(w, &w->catalog);
        if (r < 0) {
                window_abort(w, TX_APPLYING, "cannot open the catalog %s: %s", cfg(w)->catalog_dir,
                             strerror(-r));
                return;
        }
        if (!catalog_get(w->catalog, w->tx->pre_patch_snapshot)) {
                window_abort(w, TX_APPLYING, "the pre-patch snapshot %s is gone from the catalog",
                             w->tx->pre_patch_snapshot);
                return;
        }
        r = catalog_stage(w->catalog, w->tx->pre_patch_snapshot, &stage);
        if (r < 0) {
                window_abort(w, TX_APPLYING, "cannot create a staging overlay on snapshot %s: %s",
                             w->tx->pre_patch_snapshot, strerror(-r));
                return;
        }
        r = worker_start(w->m->event,
                         &(WorkerRequest){
                                 .task = WORKER_APPLY,
                                 .stage = stage,
                                 .manifest = w->manifest,
                                 .payload_dir = cfg(w)->payload_dir,
                                 .payloads = w->tx->payloads,
                                 .n_payloads = w->tx->n_payloads,
                         },
                         on_applied, w, &w->worker);
        if (r < 0)
                window_abort(w, TX_APPLYING, "cannot start the apply worker: %s", strerror(-r));
}

/* ---- the trial ---------------------------------------------------------------------- */

/* applied: freeze the patched state as Q (or adopt the Q of a kill right
 * after the freeze), then trial 1. */
static void act_freeze(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *q = NULL, *label = NULL;
        const char *parent;
        int r;

        r = open_catalog(w, &c);
        if (r < 0) {
                window_abort(w, TX_APPLIED, "cannot open the catalog %s: %s", cfg(w)->catalog_dir,
                             strerror(-r));
                return;
        }
        parent = catalog_active_parent(c);
        if (streq(parent, w->tx->pre_patch_snapshot)) {
                if (asprintf(&label, "after %s version %" PRIu64, w->tx->manifest_id,
                             w->tx->manifest_version) < 0)
                        label = NULL;
                r = catalog_snapshot(c, SNAPSHOT_MANUAL, label, w->tx->manifest_id, /* running= */ false,
                                     &q);
                if (r < 0) {
                        window_abort(w, TX_APPLIED, "cannot snapshot the patched disk: %s", strerror(-r));
                        return;
                }
        } else {
                const Snapshot *s = catalog_get(c, parent);

                if (!s || !streq_ptr(s->manifest, w->tx->manifest_id) ||
                    !streq_ptr(s->parent, w->tx->pre_patch_snapshot)) {
                        window_abort(w, TX_APPLIED,
                                     "the active disk builds on snapshot %s, not on the patched "
                                     "state of snapshot %s",
                                     parent, w->tx->pre_patch_snapshot);
                        return;
                }
                q = strdup(parent);
                if (!q) {
                        window_abort(w, TX_APPLIED, "out of memory");
                        return;
                }
        }
        r = sync_system_disk(w, c);
        if (r < 0) {
                window_abort(w, TX_APPLIED, "cannot point the desktop at the patched disk: %s",
                             strerror(-r));
                return;
        }
        free(w->tx->patched_snapshot);
        w->tx->patched_snapshot = TAKE_PTR(q);
        w->tx->attempt = 1;
        if (!enter_or_stop(w, TX_TRIAL))
                return;
        schedule(w);
}

static void tx_clear_failure(Transaction *t) {
        free(t->reason);
        t->reason = NULL;
        t->failed_state = _TX_STATE_INVALID;
        free(t->crash.failure);
        free(t->crash.detail);
        t->crash = (TxCrash){};
        t->has_crash = false;
}

static void on_verdict(Trial *t, const TrialVerdict *v, void *userdata) {
        Window *w = userdata;
        _cleanup_free_ char *text = NULL;

        (void) trial_verdict_format(v, &text);
        log_struct_id(v->result == TRIAL_PASSED ? LOG_LEVEL_INFO : LOG_LEVEL_WARNING,
                      OOB_MESSAGE_TRIAL_VERDICT,
                      "Transaction %s: trial boot %u of %u of %s version %" PRIu64 ": %s", w->tx->id,
                      w->tx->attempt, w->tx->attempts, w->tx->manifest_id, w->tx->manifest_version,
                      text ?: trial_result_to_string(v->result));
        if (v->result == TRIAL_PASSED) {
                w->trial = trial_free(w->trial); /* allowed: done() may free it */
                tx_clear_failure(w->tx);         /* an earlier attempt's */
                if (!enter_or_stop(w, TX_COMMITTING))
                        return;
                schedule(w);
                return;
        }

        tx_clear_failure(w->tx);
        (void) transaction_set_failure(w->tx, TX_TRIAL, "trial boot %u of %u: %s", w->tx->attempt,
                                       w->tx->attempts, text ?: trial_failure_to_string(v->failure));
        w->tx->has_crash = true;
        w->tx->crash.failure = strdup(trial_failure_to_string(v->failure));
        if (v->failure == TRIAL_FAILURE_CRASH) {
                w->tx->crash.hyperv = v->crash.hyperv;
                w->tx->crash.stop_code = v->crash.stop_code;
                memcpy(w->tx->crash.params, v->crash.params, sizeof(w->tx->crash.params));
                w->tx->crash.detail = v->crash.reason ? strdup(v->crash.reason) : NULL;
        }
        if (!w->tx->crash.failure)
                w->tx->has_crash = false;
        w->trial = trial_free(w->trial);
        trial_failed(w);
}

/* Attempt n failed (its failure is recorded): the next one on a fresh
 * overlay of Q, or the rollback. */
static void trial_failed(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        int r;

        r = desktop_off(w);
        if (r < 0)
                log_warning_errno(r, "Cannot stop desktop %s after the failed trial: %m",
                                  cfg(w)->desktop_name);
        if (w->tx->attempt < w->tx->attempts && !w->job->cancel_requested && r >= 0) {
                r = open_catalog(w, &c);
                if (r >= 0)
                        r = catalog_revert(c, w->tx->patched_snapshot, /* running= */ false);
                if (r >= 0)
                        r = sync_system_disk(w, c);
                if (r >= 0) {
                        w->tx->attempt++;
                        if (!enter_or_stop(w, TX_TRIAL))
                                return;
                        schedule(w);
                        return;
                }
                log_warning_errno(r, "Cannot prepare trial boot %u: %m", w->tx->attempt + 1);
        }
        if (!enter_or_stop(w, TX_ROLLING_BACK))
                return;
        schedule(w);
}

static void act_trial(Window *w) {
        Desktop *d;
        int r;

        job_progress(w->job, JOB_STEP_TRIAL, 0,
                     "boot %u of %u: the agent must answer within %u s, then %u s stable", w->tx->attempt,
                     w->tx->attempts, w->tx->boot_timeout_sec, w->tx->stability_sec);
        r = get_desktop(w, &d);
        if (r >= 0)
                r = start_desktop(w, NULL);
        if (r < 0) {
                tx_clear_failure(w->tx);
                (void) transaction_set_failure(w->tx, TX_TRIAL,
                                               "trial boot %u of %u: cannot start the desktop: %s",
                                               w->tx->attempt, w->tx->attempts, strerror(-r));
                trial_failed(w);
                return;
        }
        w->trial_boot_seen = false;
        r = trial_start(w->m->event, d, w->tx->boot_timeout_sec, w->tx->stability_sec, on_verdict, w,
                        &w->trial);
        if (r < 0) {
                tx_clear_failure(w->tx);
                (void) transaction_set_failure(w->tx, TX_TRIAL, "trial boot %u of %u: cannot watch it: %s",
                                               w->tx->attempt, w->tx->attempts, strerror(-r));
                trial_failed(w);
        }
}

static void act_trial_interrupted(Window *w) {
        tx_clear_failure(w->tx);
        (void) transaction_set_failure(w->tx, TX_TRIAL, "trial boot %u of %u was interrupted (oobd stopped)",
                                       w->tx->attempt, w->tx->attempts);
        w->tx->has_crash = true;
        w->tx->crash.failure = strdup("interrupted");
        if (!w->tx->crash.failure)
                w->tx->has_crash = false;
        trial_failed(w);
}

/* ---- commit ---------------------------------------------------------------------------- */

static void remove_payloads(Window *w) {
        for (size_t i = 0; i < w->tx->n_payloads; i++) {
                _cleanup_free_ char *name = tuf_client_target_filename(w->tx->payloads[i].path),
                                    *path = NULL;

                if (name && (path = path_join(cfg(w)->payload_dir, name)) && unlink(path) < 0 &&
                    errno != ENOENT)
                        log_warning_errno(-errno, "Cannot remove %s: %m", path);
        }
}

static void act_commit(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(installed_done) Installed installed = {};
        _cleanup_free_ char *error = NULL;
        int r;

        if (w->worker)
                return; /* retention under way */
        if (w->retained_commit) {
                if (!enter_or_stop(w, TX_COMMITTED))
                        return;
                act_finish(w);
                return;
        }

        job_progress(w->job, JOB_STEP_COMMIT, 0, "snapshot %s is known-good", w->tx->patched_snapshot);
        /* Each step is idempotent: a resumed commit does them again. A step
         * that fails is a warning: the desktop runs healthy on the patch. */
        r = open_catalog(w, &c);
        if (r >= 0)
                r = catalog_set_known_good(c, w->tx->patched_snapshot);
        if (r < 0)
                log_warning_errno(r, "Cannot mark snapshot %s known-good: %m", w->tx->patched_snapshot);
        c = catalog_free(c);
        free(w->tx->result_snapshot);
        w->tx->result_snapshot = strdup(w->tx->patched_snapshot);

        r = installed_load(cfg(w)->state_dir, &installed, &error);
        if (r >= 0)
                r = installed_record(cfg(w)->state_dir, &installed, w->tx->manifest_id,
                                     w->tx->manifest_version,
                                     /* refused= */ false, w->tx->id, now_usec());
        if (r < 0)
                log_warning_errno(r, "Cannot record %s version %" PRIu64 " in %s/" INSTALLED_FILE ": %s",
                                  w->tx->manifest_id, w->tx->manifest_version, cfg(w)->state_dir,
                                  error ?: strerror(-r));
        remove_payloads(w);

        /* Retention while the desktop runs: only what it does not read. */
        r = start_retention(w, /* running= */ true);
        if (r < 0) {
                log_warning_errno(r, "Cannot start the retention: %m");
                w->retained_commit = true;
                schedule(w);
        }
}

/* ---- rollback ------------------------------------------------------------------------- */

static int write_alert(Window *w, const char *cause, const char *kept) {
        _cleanup_free_ char *path = NULL, *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        path = path_join(cfg(w)->state_dir, ALERT_FILE);
        if (!path)
                return -ENOMEM;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        {
                _cleanup_(json_writer_freep) JsonWriter *j = json_writer_new(f, true);

                if (j) {
                        jw_begin_object(j);
                        jw_kv_int(j, "version", 1);
                        jw_kv_int(j, "usec", now_usec());
                        jw_kv_string(j, "desktop", cfg(w)->desktop_name);
                        jw_kv_string(j, "cause", cause);
                        jw_kv_string(j, "source", "patch-window");
                        jw_kv_string(j, "transaction", w->tx->id);
                        jw_kv_string(j, "manifest", w->tx->manifest_id);
                        jw_kv_string(j, "snapshot", w->tx->pre_patch_snapshot);
                        jw_kv_string(j, "last_known_good", kept);
                        jw_kv_string(j, "catalog", cfg(w)->catalog_dir);
                        jw_key(j, "crashes");
                        jw_begin_array(j);
                        jw_end_array(j);
                        jw_end_object(j);
                }
                r = j ? 0 : -ENOMEM;
        }
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        return write_file_atomic(path, buf, size, 0644);
}

/* The revert to P failed: keep (or go to) the last known-good snapshot,
 * raise the alert, end "failed". Never tried again: failed is terminal. */
static void rollback_failed(Window *w, Catalog *c, const char *cause) {
        _cleanup_free_ char *reason = NULL, *kept = NULL, *good = NULL;
        const Snapshot *s = c ? catalog_last_known_good(c) : NULL;
        int r = -ENOENT;

        /* A copy: a revert replaces the catalog's list under s. */
        if (s)
                good = strdup(s->id);
        if (good && !streq_ptr(good, w->tx->patched_snapshot) &&
            !streq_ptr(good, w->tx->pre_patch_snapshot)) {
                r = catalog_revert(c, good, /* running= */ false);
                if (r >= 0)
                        r = sync_system_disk(w, c);
                if (r >= 0) {
                        kept = TAKE_PTR(good);
                        r = start_desktop(w, c);
                        if (r < 0)
                                log_error_errno(r, "Cannot start desktop %s on snapshot %s: %m",
                                                cfg(w)->desktop_name, kept);
                } else
                        log_error_errno(r, "Cannot revert to the last known-good snapshot %s either: %m",
                                        good);
        }
        if (!kept && c && catalog_active_parent(c))
                kept = strdup(catalog_active_parent(c));

        if (asprintf(&reason, "%s%sthe rollback to snapshot %s failed (%s); %s", w->tx->reason ?: "",
                     w->tx->reason ? "; then " : "", w->tx->pre_patch_snapshot, cause,
                     r >= 0 ? "the desktop runs on the last known-good snapshot"
                            : "the desktop is left off") < 0)
                reason = NULL;
        if (reason) {
                /* The cause of the rollback stays first; its crash too. */
                free(w->tx->reason);
                w->tx->reason = TAKE_PTR(reason);
                if (w->tx->failed_state < 0)
                        w->tx->failed_state = TX_ROLLING_BACK;
        } else
                (void) transaction_set_failure(w->tx, TX_ROLLING_BACK, "the rollback failed");
        free(w->tx->result_snapshot);
        w->tx->result_snapshot = TAKE_PTR(kept);

        r = write_alert(w, w->tx->reason, w->tx->result_snapshot);
        if (r < 0)
                log_error_errno(r, "Cannot write %s/" ALERT_FILE ": %m", cfg(w)->state_dir);
        w->tx->alert = true;
        log_struct_id(LOG_LEVEL_ALERT, OOBD_MESSAGE_ROLLBACK_FAILED, "Transaction %s: %s", w->tx->id,
                      w->tx->reason);
        if (!enter_or_stop(w, TX_FAILED))
                return;
        act_finish(w);
}

/* libvirt cannot be reached (not up yet after a reboot of the management
 * VM, a lost connection): nothing is wrong with the disk. */
static bool unreachable(int r) {
        return r == -ECONNREFUSED || r == -ENOTCONN || r == -ECONNRESET || r == -EHOSTUNREACH ||
               r == -EPIPE || r == -ETIMEDOUT;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Window *w = userdata;

        w->retry = sd_event_source_disable_unref(w->retry);
        schedule(w);
        return 0;
}

/* The rollback cannot reach the desktop: not a failed rollback, the same
 * again later (the state stays rolling-back, also across restarts). A
 * daemon that is stopping leaves it to its next start. */
static void rollback_later(Window *w, int r) {
        int k;

        if (w->job->stopping) {
                window_fail_unpersisted(w, r, "reach the desktop to roll back");
                return;
        }
        if (!w->retry_logged)
                log_warning_errno(
                        r,
                        "Transaction %s: cannot reach desktop %s to roll back (%m); trying again every "
                        "%u s.",
                        w->tx->id, cfg(w)->desktop_name, ROLLBACK_RETRY_USEC / 1000000U);
        w->retry_logged = true;
        job_progress(w->job, JOB_STEP_ROLLBACK, 0, "waiting for desktop %s: %s", cfg(w)->desktop_name,
                     strerror(-r));
        k = sd_event_add_time_relative(w->m->event, &w->retry, CLOCK_MONOTONIC, ROLLBACK_RETRY_USEC,
                                       1000000U, on_retry, w);
        if (k < 0)
                window_fail_unpersisted(w, k, "wait for the desktop");
}

static void act_rollback(Window *w) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(installed_done) Installed installed = {};
        _cleanup_free_ char *cause = NULL;
        const Snapshot *q;
        int r;

        if (w->tx->state != TX_ROLLING_BACK && !enter_or_stop(w, TX_ROLLING_BACK))
                return;
        w->trial = trial_free(w->trial);
        if (!w->tx->reason)
                (void) transaction_set_failure(w->tx, w->tx->state, "%s",
                                               w->tx->cancelled ? "cancelled" : "stopped");
        job_progress(w->job, JOB_STEP_ROLLBACK, 0, "back to the pre-patch snapshot %s",
                     w->tx->pre_patch_snapshot);

        if (w->retry)
                return; /* waiting for libvirt */
        r = desktop_off(w);
        if (r < 0 && unreachable(r)) {
                rollback_later(w, r);
                return;
        }
        if (r < 0) {
                (void) asprintf(&cause, "cannot stop the desktop: %s", strerror(-r));
                rollback_failed(w, NULL, cause ?: "cannot stop the desktop");
                return;
        }
        r = open_catalog(w, &c);
        if (r < 0) {
                (void) asprintf(&cause, "cannot open the catalog: %s", strerror(-r));
                rollback_failed(w, NULL, cause ?: "cannot open the catalog");
                return;
        }
        r = catalog_revert(c, w->tx->pre_patch_snapshot, /* running= */ false);
        if (r < 0) {
                (void) asprintf(&cause, "%s", strerror(-r));
                rollback_failed(w, c, cause ?: "error");
                return;
        }
        r = sync_system_disk(w, c);
        if (r < 0 && unreachable(r)) {
                /* Reverted, but the domain still names the old overlay:
                 * again later (a new revert to P is as good). */
                rollback_later(w, r);
                return;
        }
        if (r < 0) {
                (void) asprintf(&cause, "cannot point the desktop at the reverted disk: %s", strerror(-r));
                rollback_failed(w, c, cause ?: "error");
                return;
        }
        /* The patched state goes with it (nothing builds on it any more). */
        q = w->tx->patched_snapshot ? catalog_get(c, w->tx->patched_snapshot) : NULL;
        if (q && !q->known_good && !q->pinned) {
                r = catalog_delete(c, w->tx->patched_snapshot, /* running= */ false);
                if (r < 0)
                        log_warning_errno(r, "Cannot drop the patched snapshot %s: %m",
                                          w->tx->patched_snapshot);
        }
        free(w->tx->result_snapshot);
        w->tx->result_snapshot = strdup(w->tx->pre_patch_snapshot);
        c = catalog_free(c);

        r = start_desktop(w, NULL);
        if (r < 0)
                log_error_errno(r, "Cannot start desktop %s on the pre-patch snapshot %s: %m",
                                cfg(w)->desktop_name, w->tx->pre_patch_snapshot);

        /* A patch whose trial boot the desktop failed (crash, hang, no
         * agent, stopped) is not offered again at this version; one that
         * could not be judged (interrupted, the desktop would not start)
         * is. */
        if (!w->tx->cancelled && w->tx->failed_state == TX_TRIAL && w->tx->has_crash &&
            !streq(w->tx->crash.failure, "interrupted")) {
                _cleanup_free_ char *error = NULL;

                r = installed_load(cfg(w)->state_dir, &installed, &error);
                if (r >= 0)
                        r = installed_record(cfg(w)->state_dir, &installed, w->tx->manifest_id,
                                             w->tx->manifest_version, /* refused= */ true, w->tx->id,
                                             now_usec());
                if (r < 0)
                        log_warning_errno(r, "Cannot record %s as refused: %s", w->tx->manifest_id,
                                          error ?: strerror(-r));
        }
        if (!enter_or_stop(w, TX_ROLLED_BACK))
                return;
        act_finish(w);
}

/* ---- the step machine ---------------------------------------------------------------- */

/* Cancel() or SIGTERM: at a safe point. */
static bool handle_cancel(Window *w) {
        TxState s;

        if (!w->job->cancel_requested)
                return false;
        if (!w->tx) {
                window_abort(w, TX_REFRESHING, "cancelled");
                return true;
        }
        s = w->tx->state;
        if (tx_state_is_terminal(s) || s == TX_COMMITTING || s == TX_ROLLING_BACK)
                return false; /* finish what is under way */
        if (w->shutting_down)
                return true; /* on_desktop_off() comes back here */
        w->tx->cancelled = true;
        if (s <= TX_APPLYING) {
                window_abort(w, s, "cancelled");
                return true;
        }
        (void) transaction_set_failure(w->tx, s, "cancelled");
        act_rollback(w);
        return true;
}

static void window_step(Window *w) {
        TxResume resume = w->resume;

        if (w->finished)
                return;
        if (handle_cancel(w))
                return;
        if (!w->tx) { /* a check */
                act_refresh(w);
                return;
        }

        if (resume >= 0) {
                w->resume = _TX_RESUME_INVALID;
                switch (resume) {
                case TX_RESUME_RESTART:
                        if (alert_raised(w->m)) {
                                window_abort(
                                        w, w->tx->state,
                                        "an alert is raised for this desktop: no patch window until the "
                                        "helpdesk clears it");
                                return;
                        }
                        if (!enter_or_stop(w, TX_REFRESHING))
                                return;
                        act_refresh(w);
                        return;
                case TX_RESUME_APPLY:
                        if (w->tx->state == TX_APPLYING && !enter_or_stop(w, TX_APPLYING))
                                return;
                        break; /* the state's action */
                case TX_RESUME_INTERRUPTED:
                        act_trial_interrupted(w);
                        return;
                default:
                        break; /* the state's own action is the resume */
                }
        }

        switch (w->tx->state) {
        case TX_IDLE:
                if (!enter_or_stop(w, TX_REFRESHING))
                        return;
                act_refresh(w);
                return;
        case TX_REFRESHING:
                act_refresh(w);
                return;
        case TX_DOWNLOADING:
                act_download(w);
                return;
        case TX_STAGED:
                act_staged(w);
                return;
        case TX_STOPPING_DESKTOP:
                act_stop_desktop(w);
                return;
        case TX_SNAPSHOTTED:
                act_snapshotted(w);
                return;
        case TX_APPLYING:
                act_apply(w);
                return;
        case TX_APPLIED:
                act_freeze(w);
                return;
        case TX_TRIAL:
                act_trial(w);
                return;
        case TX_COMMITTING:
                act_commit(w);
                return;
        case TX_ROLLING_BACK:
                act_rollback(w);
                return;
        default:
                act_finish(w);
                return;
        }
}

/* ---- the driver ---------------------------------------------------------------------- */

static int load_transaction(Manager *m, Transaction **ret) {
        _cleanup_free_ char *error = NULL, *path = NULL, *bad = NULL;
        int r;

        r = transaction_load(m->config.state_dir, ret, &error);
        if (r != -EPROTO)
                return r;
        /* Unusable: keep it for a human, start without it. */
        path = path_join(m->config.state_dir, TRANSACTION_FILE);
        if (path && asprintf(&bad, "%s.bad", path) >= 0 && rename(path, bad) >= 0)
                log_error("%s is invalid (%s); kept as %s.", path, error ?: "?", bad);
        else
                log_error("%s/" TRANSACTION_FILE " is invalid: %s", m->config.state_dir, error ?: "?");
        return r;
}

static int window_pending(Manager *m, char **ret_id) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        char *id;
        int r;

        r = load_transaction(m, &t);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (transaction_resume_rule(t) == TX_RESUME_NONE)
                return 0;
        id = strdup(t->id);
        if (!id)
                return -ENOMEM;
        *ret_id = id;
        return 1;
}

static int window_start(Job *j) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        Manager *m = j->manager;
        Window *w;
        int r;

        w = calloc(1, sizeof(Window));
        if (!w)
                return -ENOMEM;
        j->userdata = w;
        w->job = j;
        w->m = m;
        w->resume = _TX_RESUME_INVALID;

        if (j->kind == JOB_CHECK) {
                schedule(w);
                return 0;
        }

        r = mkdir_p(m->config.state_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", m->config.state_dir);

        r = load_transaction(m, &t);
        if (r < 0 && r != -ENOENT && r != -EPROTO)
                return log_error_errno(r, "Cannot read %s/" TRANSACTION_FILE ": %m", m->config.state_dir);
        if (r >= 0) {
                TxResume rule = transaction_resume_rule(t);

                /* The last one is over; a report it could not queue then goes now. */
                if (rule == TX_RESUME_REPORT && j->kind != JOB_RESUME)
                        (void) queue_report(m, t);
                if (rule == TX_RESUME_NONE || (rule == TX_RESUME_REPORT && j->kind != JOB_RESUME))
                        t = transaction_free(t);
        }

        if (j->kind == JOB_RESUME) {
                if (!t || !streq(t->id, j->id))
                        return log_error_errno(-ENOENT, "No interrupted transaction %s to resume.", j->id);
        } else if (t) {
                /* Interrupted, and its resume did not run (or failed to start):
                 * finish that one first, under this job. */
                log_notice("Transaction %s is unfinished (%s); resuming it instead of a new window.", t->id,
                           tx_state_to_string(t->state));
                /* Forced now: what the admin asks for this time. Recorded
                 * with the next state written. */
                if (j->flags & OOBD_UPDATE_FORCE)
                        t->force = true;
        }

        if (t) {
                w->resume = transaction_resume_rule(t);
                log_struct_id(LOG_LEVEL_NOTICE, OOBD_MESSAGE_TRANSACTION_RESUMED,
                              "Transaction %s was interrupted in state %s; resuming: %s.", t->id,
                              tx_state_to_string(t->state), tx_resume_to_string(w->resume));
                w->tx = TAKE_PTR(t);
                schedule(w);
                return 0;
        }

        if (alert_raised(m)) {
                log_error("An alert is raised (%s/" ALERT_FILE "): no patch window until it is cleared.",
                          m->config.state_dir);
                finish_job(w,
                           &(JobResult){
                                   .outcome = JOB_FAILED,
                                   .summary = "an alert is raised for this desktop: no patch window until "
                                              "the helpdesk clears it",
                                   .failed_step = JOB_STEP_STARTING,
                           });
                return 0;
        }

        r = transaction_new(j->id, &w->tx);
        if (r < 0)
                return log_error_errno(r, "Cannot create transaction %s: %m", j->id);
        w->tx->force = j->flags & OOBD_UPDATE_FORCE;
        if (!enter_or_stop(w, TX_REFRESHING))
                return 0;
        schedule(w);
        return 0;
}

static void window_cancel(Job *j) {
        Window *w = j->userdata;

        if (!w || w->finished)
                return;
        /* Stop what runs where that is safe (the transfers, the apply, the
         * trial); window_step() decides what follows. A shutdown of the
         * desktop, a commit and a rollback are finished first. */
        if (!w->tx || w->tx->state <= TX_DOWNLOADING)
                w->tuf = tuf_client_free(w->tuf);
        else if (w->tx->state == TX_SNAPSHOTTED || w->tx->state == TX_APPLYING)
                w->worker = worker_free(w->worker);
        else if (w->tx->state == TX_TRIAL)
                w->trial = trial_free(w->trial);
        schedule(w);
}

static void window_free(Job *j) {
        Window *w = j->userdata;

        if (!w)
                return;
        window_release(w);
        patch_manifest_free(w->manifest);
        transaction_free(w->tx);
        free(w->available);
        free(w);
        j->userdata = NULL;
}

static void window_desktop_event(Job *j, const DesktopEvent *ev) {
        Window *w = j->userdata;

        if (!w || !w->trial)
                return;
        /* libvirt delivers events from the loop, later than the calls that
         * caused them: the "stopped" of the destroy or shutdown before this
         * boot may come after the trial began. Everything before the boot's
         * own "started" belongs to an earlier run of the domain. */
        if (!w->trial_boot_seen) {
                if (ev->type != DESKTOP_EVENT_STARTED) {
                        log_debug("Trial: ignoring a %s event from before the trial boot started.",
                                  desktop_event_type_to_string(ev->type));
                        return;
                }
                w->trial_boot_seen = true;
        }
        trial_feed(w->trial, ev);
}

const JobDriver window_driver = {
        .name = "window",
        .start = window_start,
        .cancel = window_cancel,
        .free = window_free,
        .pending = window_pending,
        .desktop_event = window_desktop_event,
};

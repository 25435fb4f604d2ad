/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * oobd: the daemon in the management VM. This header is private to
 * programs/oobd/; it is the contract between the daemon's frame (main.c,
 * manager.c, dbus.c, config.c, history.c) and the patch window (window.c),
 * which implements the Job driver below.
 *
 * One Manager owns the sd-event loop, the bus connection, the configuration,
 * the current job and, created on first use, the HTTP fetcher, the report
 * outbox and the desktop connection. Everything runs on that one loop (no
 * threads): long work is a step machine driven by loop events, and work
 * that cannot be split into steps (apply_manifest() on a large payload)
 * runs in a child process watched with sd_event_add_child(), because the
 * loop must keep answering D-Bus and the watchdog (WatchdogSec in
 * oobd.service) kills a daemon whose loop stalls.
 *
 * Timers: sd_event_add_time() with accuracy 0 means 250 ms of slack; pass
 * an explicit accuracy where it matters.
 *
 * Idle cost: when no job runs the loop has no timers except sd-event's
 * watchdog ping (only under systemd with WatchdogSec) and nothing big is
 * loaded: libcurl, the outbox and libvirt are set up when first needed.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "hv.h"
#include "lib.h"
#include "recovery.h"
#include "updater.h"

#define OOBD_CONFIG_FILE "/etc/oob/oobd.conf"

/* D-Bus names; the API is documented in dbus.c and introspectable. */
#define OOBD_BUS_NAME "org.oob.Manager1"
#define OOBD_BUS_PATH "/org/oob/Manager1"
#define OOBD_BUS_INTERFACE "org.oob.Manager1"
#define OOBD_BUS_ERROR_BUSY "org.oob.Manager1.Error.Busy"
#define OOBD_BUS_ERROR_NO_JOB "org.oob.Manager1.Error.NoJob"
#define OOBD_BUS_ERROR_NOT_AVAILABLE "org.oob.Manager1.Error.NotAvailable"
#define OOBD_BUS_ERROR_STOPPING "org.oob.Manager1.Error.Stopping"
#define OOBD_BUS_ERROR_JOB_FAILED "org.oob.Manager1.Error.JobFailed"
/* Besides root, members of this group may start and cancel jobs (the same
 * rule as mgmt-vm-rootfs/org.oob.Manager1.conf, checked again in oobd). */
#define OOBD_ADMIN_GROUP "oob"

/* UpdateNow() flags. */
#define OOBD_UPDATE_FORCE UINT64_C(1) /* do not defer when the user is active */
#define OOBD_UPDATE_FLAGS_ALL OOBD_UPDATE_FORCE

/*
 * Journal MESSAGE_IDs of oobd (explained in mgmt-vm-rootfs/oob.catalog).
 * The guard's are in recovery/recovery.h, the outbox's in updater/updater.h.
 */
#define OOBD_MESSAGE_STARTED "9ab09d176c9942e88014f0dcba5b0536"        /* ready on the bus */
#define OOBD_MESSAGE_STOPPED "d1d54818b387428789355d45acb1af2b"        /* stopping */
#define OOBD_MESSAGE_CONFIG_INVALID "27dd43c94c6840e199b243154b64d7c0" /* config refused */
#define OOBD_MESSAGE_JOB_STARTED "b8c8edfe67cf40719ee3e7c24662b0d7"    /* update, check or resume */
#define OOBD_MESSAGE_UPDATE_COMMITTED "082a51d7481749da99306cdf88a76f83"
#define OOBD_MESSAGE_UPDATE_ROLLED_BACK "444187c6aedb430b8c7c34e321050cbd"
#define OOBD_MESSAGE_JOB_FAILED "2e262d61f6ad4d18bfa030b7f671e5e2"
#define OOBD_MESSAGE_UP_TO_DATE "db643790056442deb35fcd40e67130f5"
#define OOBD_MESSAGE_UPDATE_AVAILABLE "01269257343b487092adc68674555c1f"
#define OOBD_MESSAGE_JOB_CANCELLED "f50faa249ba54bd88f090f7dcfe669af"
#define OOBD_MESSAGE_JOB_DEFERRED "e5d937a750b44cdf9ec0b5c6220b2753"

/* ---- configuration (config.c) ------------------------------------------------ */

/*
 * Every key of /etc/oob/oobd.conf; mgmt-vm-rootfs/oobd.conf documents each
 * with its default (and `oobd --dump-config` prints the effective values).
 * Durations are seconds, sizes bytes. After a successful load every path is
 * set (derived from state-dir when not given) and device_id is set.
 */
typedef struct OobdConfig {
        /* [repository] */
        char *metadata_url; /* NULL: not configured (updates refused, NotAvailable) */
        char *targets_url;  /* default: "targets" beside metadata-url */
        char *ca_file;      /* NULL: the system's CAs */
        bool allow_http;
        /* [device] */
        char *device_id; /* default: the machine ID hashed for oob */
        char **groups;   /* NULL-terminated, may be NULL */
        /* [paths] */
        char *state_dir;    /* default /var/lib/oob */
        char *metadata_dir; /* STATE/metadata: trusted TUF metadata (root.json installed there) */
        char *payload_dir;  /* STATE/payloads: downloaded targets */
        char *catalog_dir;  /* STATE/system: the system disk's snapshot catalog */
        char *outbox_dir;   /* STATE/outbox: reports waiting for delivery */
        /* [desktop] */
        char *desktop_uri;  /* libvirt URI, default qemu:///system */
        char *desktop_name; /* domain, default oob-desktop */
        unsigned shutdown_agent_timeout;
        unsigned shutdown_acpi_timeout;
        bool defer_when_user_active;
        /* [window] */
        uint64_t bandwidth_limit;    /* bytes per second, 0: none */
        unsigned max_download_time;  /* whole-transfer deadline */
        unsigned trial_boot_timeout; /* the agent must answer within this */
        unsigned trial_stability;    /* then no crash, hang or agent loss for this long */
        /* [reports] */
        char *reports_url; /* NULL: reports are not sent (none are queued) */
        /* [guard] */
        unsigned guard_max_crashes; /* 0: no guard */
        unsigned guard_window;
        /* [retention] */
        unsigned keep_snapshots;
} OobdConfig;

/*
 * Load path over the defaults. A missing file is an error only when
 * must_exist (an explicit --config); otherwise the defaults are used.
 * Errors: -EPROTO with *ret_error "FILE:LINE: ..." or "FILE: [section] key:
 * ..." (a value valid alone but not in this context), -ENOENT, -ENOMEM.
 * *ret is filled only on success.
 */
int oobd_config_load(const char *path, bool must_exist, OobdConfig *ret, char **ret_error);
void oobd_config_done(OobdConfig *c);
/* Every key with its effective value, in the reference file's order and
 * spelling ("[window]", "max-download-time = 1h"). */
int oobd_config_dump(const OobdConfig *c, FILE *f);
/* The TUF client's options for this configuration (pointers into c). */
void oobd_config_tuf_options(const OobdConfig *c, TufClientOptions *ret);
/* The fetcher's options for this configuration (pointers into c). */
void oobd_config_fetch_options(const OobdConfig *c, FetchOptions *ret);

/* ---- jobs ------------------------------------------------------------------------ */

typedef enum JobKind {
        JOB_UPDATE, /* a patch window: UpdateNow() or the timer */
        JOB_CHECK,  /* refresh metadata, pick a manifest, stop: Check() */
        JOB_RESUME, /* a transaction found persisted mid-way at start */
        _JOB_KIND_MAX,
        _JOB_KIND_INVALID = -EINVAL,
} JobKind;
const char *job_kind_to_string(JobKind k); /* "update", "check", "resume" */
JobKind job_kind_from_string(const char *s);

/* The steps of a patch window, in order (a job reports the ones it goes through). */
typedef enum JobStep {
        JOB_STEP_STARTING, /* accepted, not yet working */
        JOB_STEP_REFRESH,  /* TUF metadata refresh */
        JOB_STEP_SELECT,   /* pick the manifest for this device */
        JOB_STEP_DOWNLOAD, /* payloads */
        JOB_STEP_SHUTDOWN, /* shut the desktop down */
        JOB_STEP_SNAPSHOT, /* pre-patch snapshot */
        JOB_STEP_APPLY,    /* offline apply on a staging overlay */
        JOB_STEP_TRIAL,    /* trial boot */
        JOB_STEP_COMMIT,   /* mark known-good, retention */
        JOB_STEP_ROLLBACK, /* revert to the pre-patch snapshot */
        JOB_STEP_REPORT,   /* queue the report */
        _JOB_STEP_MAX,
        _JOB_STEP_INVALID = -EINVAL,
} JobStep;
const char *job_step_to_string(JobStep s); /* "starting", "refresh", ..., "trial", "rollback", "report" */
JobStep job_step_from_string(const char *s);

typedef enum JobOutcome {
        JOB_COMMITTED,   /* update applied, trial passed, committed */
        JOB_ROLLED_BACK, /* update applied, trial failed (or later error), disk reverted */
        JOB_FAILED,      /* stopped by an error; the disk is as before */
        JOB_UP_TO_DATE,  /* nothing to apply (update and check) */
        JOB_AVAILABLE,   /* check only: an update is available (JobResult.manifest) */
        JOB_CANCELLED,   /* Cancel() or stop; the disk is as before */
        JOB_DEFERRED,    /* not now (the user is active); the timer tries again */
        _JOB_OUTCOME_MAX,
        _JOB_OUTCOME_INVALID = -EINVAL,
} JobOutcome;
const char *job_outcome_to_string(JobOutcome o); /* "committed", "rolled-back", "failed", "up-to-date",
                                                  * "available", "cancelled", "deferred" */
JobOutcome job_outcome_from_string(const char *s);

typedef struct Manager Manager;

/*
 * The current job. The manager creates it, owns it and frees it; the
 * driver keeps its own state in userdata (freed by driver->free).
 */
typedef struct Job {
        Manager *manager;
        char *id; /* 16 hex digits, or the persisted transaction's id (resume) */
        JobKind kind;
        uint64_t flags; /* OOBD_UPDATE_* */
        JobStep step;
        unsigned percent;      /* of the current step, 0-100 */
        char *text;            /* one line about the current step, or NULL */
        int64_t started;       /* seconds since the epoch */
        bool cancel_requested; /* Cancel() or SIGTERM asked (see JobDriver.cancel) */
        bool stopping;         /* ... and it was SIGTERM: the daemon exits after the job */
        bool finished;         /* job_finished() was called */
        void *userdata;        /* the driver's */
} Job;

/* What a finished job says about itself (pointers only need to live for the call). */
typedef struct JobResult {
        JobOutcome outcome;
        const char *summary;  /* one sentence for people, e.g. "2024-05 applied; the desktop
                               * booted healthy in 41 s"; required */
        const char *manifest; /* the manifest applied, rolled back or available, or NULL */
        const char *snapshot; /* the pre-patch snapshot, or NULL */
        JobStep failed_step;  /* where a failed/rolled-back job failed; _JOB_STEP_INVALID otherwise */
} JobResult;

/*
 * The patch window implements this (window.c: `const JobDriver window_driver`).
 * All callbacks run on the loop.
 *
 * start     begin job j (j->kind, j->flags; j->id set; for JOB_RESUME the id
 *           pending() returned). Return < 0 if it could not start at all
 *           (the caller gets the error; job_finished() must not be called
 *           then, free() is). Otherwise report with job_progress() and end
 *           with exactly one job_finished(), from a later loop iteration or
 *           from start itself.
 * cancel    j->cancel_requested (and for a daemon stop j->stopping) has been
 *           set: stop at the next safe point and call job_finished() (the
 *           driver decides what is safe: before the snapshot, give up,
 *           JOB_CANCELLED; after it, finish the rollback, JOB_ROLLED_BACK).
 *           May be called more than once; must not free j.
 * free      release j->userdata (after job_finished(), or after a failed start).
 * pending   at start-up: if a transaction was persisted mid-way (the daemon
 *           was killed), return 1 and its id in *ret_id (the manager then
 *           starts a JOB_RESUME job with that id); 0 if none; < 0 on error
 *           (logged, the daemon runs on without resuming). May be NULL.
 * desktop_event   every event of the desktop while j runs (for the trial);
 *           may be NULL.
 */
typedef struct JobDriver {
        const char *name;
        int (*start)(Job *j);
        void (*cancel)(Job *j);
        void (*free)(Job *j);
        int (*pending)(Manager *m, char **ret_id);
        void (*desktop_event)(Job *j, const DesktopEvent *ev);
} JobDriver;

/* Defined by window.c. Until window.c exists oobd links without it and
 * refuses UpdateNow() and Check() with OOBD_BUS_ERROR_NOT_AVAILABLE. */
extern const JobDriver window_driver;
/* Test hook (simulate.c): with OOBD_TEST_SIMULATE set in the environment
 * oobd runs this scripted driver instead; see simulate.c. */
extern const JobDriver simulate_driver;

/*
 * Called by the driver. job_progress() updates the job's step, percent
 * (clamped to 100) and text, emits Progress and the changed properties on
 * the bus (rate-limited: a change of step or percent always, a text-only
 * change at most once a second), sets the STATUS= shown by systemctl, and
 * logs each new step at info.
 */
void job_progress(Job *j, JobStep step, unsigned percent, const char *text_format, ...) _printf_(4, 5);

/*
 * The job is over. The manager logs the outcome with its MESSAGE_ID,
 * records update and resume jobs in the history (history.c), emits
 * JobFinished, answers waiting Check() calls and, from the next loop
 * iteration, frees the job (driver->free) and becomes idle (or exits when
 * stopping). Safe to call from start() and cancel(). Once only.
 */
void job_finished(Job *j, const JobResult *r);

/* ---- the manager (manager.c) ---------------------------------------------------- */

typedef enum ManagerState {
        MANAGER_IDLE,
        MANAGER_CHECKING,
        MANAGER_UPDATING, /* update and resume jobs */
        MANAGER_CANCELLING,
        MANAGER_STOPPING,
        _MANAGER_STATE_MAX,
        _MANAGER_STATE_INVALID = -EINVAL,
} ManagerState;
const char *manager_state_to_string(ManagerState s); /* "idle", "checking", "updating", ... */
ManagerState manager_state_from_string(const char *s);

struct Manager {
        sd_event *event;
        sd_bus *bus;
        char *bus_address; /* NULL: the system bus */
        char *config_path;
        bool config_must_exist;
        OobdConfig config;
        const JobDriver *driver; /* NULL: no patch window in this build */

        Job *job;                    /* the current job, or NULL */
        sd_event_source *job_reaper; /* frees a finished job on the next iteration */
        uint64_t last_progress_usec; /* CLOCK_MONOTONIC of the last Progress signal */

        /* the last job that finished (since this daemon started) */
        char *last_id;
        JobKind last_kind;
        JobOutcome last_outcome; /* _JOB_OUTCOME_INVALID: none yet */
        char *last_summary;
        char *last_manifest;
        int64_t last_finished;

        void (*on_bus_ready)(Manager *m, int error); /* bus_setup()'s callback */
        sd_bus_message **check_calls;                /* Check() calls answered when the check job finishes */
        size_t n_check_calls;

        /* created on first use (resources.c) */
        Fetcher *fetcher;
        Outbox *outbox;
        Desktop *desktop;
        bool desktop_loop_set_up; /* desktop_event_loop_setup() done (once per process) */
        Guard *guard;
        sd_event_source *guard_retry; /* the desktop could not be reached: try again later */
        bool guard_retry_logged;

        bool stopping;       /* SIGTERM seen: exit once idle */
        bool reload_pending; /* SIGHUP seen while a job ran */
};

int manager_new(const char *config_path, bool config_must_exist, const char *bus_address, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
/* Connect, take the bus name, run until stopped. Returns the exit status. */
int manager_run(Manager *m);

ManagerState manager_state(const Manager *m);
/* Start a job (UpdateNow, Check, resume). -EBUSY when one runs, -ESHUTDOWN
 * when stopping, -EOPNOTSUPP without a driver, the driver's start error. */
int manager_start_job(Manager *m, JobKind kind, uint64_t flags, const char *id, Job **ret);
/* Ask the current job to stop at a safe point; -ENOENT when there is none. */
int manager_cancel_job(Manager *m);
/* Reports waiting in the outbox (from the Outbox when open, else the files). */
unsigned manager_pending_reports(Manager *m);
/* Status as one JSON object (GetStatus(), `oobctl status --json`). */
int manager_status_json(Manager *m, char **ret);

/*
 * Resources for the job, made on first use and kept while the daemon runs
 * (resources.c). All driven by m->event.
 *   manager_get_fetcher   libcurl with [repository]/[window] options
 *   manager_get_outbox    the report outbox; -ENOENT when [reports] url is unset
 *   manager_get_desktop   the libvirt connection and the desktop domain; its
 *                         events go to the running update job's driver
 *                         (desktop_event), to the guard otherwise
 */
int manager_get_fetcher(Manager *m, Fetcher **ret);
int manager_get_outbox(Manager *m, Outbox **ret);
int manager_get_desktop(Manager *m, Desktop **ret);
/* At start-up: resend the reports a previous run left (opens the outbox only
 * when there are some). */
int manager_resume_reports(Manager *m);
/* At start-up: watch the desktop between jobs with the guard ([guard]),
 * retrying every minute while the desktop cannot be reached. */
int manager_start_guard(Manager *m);
/* Free all of the above (stop, and reload: they are remade from the new
 * configuration). */
void manager_release_resources(Manager *m);

/* ---- D-Bus (dbus.c) ------------------------------------------------------------- */

/* Register the object on m->bus and request the name; ready() is called
 * once the name is ours (or with an error). */
int bus_setup(Manager *m, void (*ready)(Manager *m, int error));
/* Emit PropertiesChanged for the given property names (NULL-terminated). */
void bus_emit_changed(Manager *m, const char *property, ...);
void bus_emit_progress(Manager *m);
void bus_emit_job_finished(Manager *m, const char *id, JobOutcome outcome, const char *summary);
/* Answer every waiting Check() call. */
void bus_reply_check_calls(Manager *m, JobOutcome outcome, const char *manifest, const char *summary);
void bus_drop_check_calls(Manager *m);

/* ---- update history (history.c) ------------------------------------------------- */

/*
 * STATE_DIR/update-history.json: the finished update and resume jobs,
 * oldest first (checks and windows that found nothing to apply are not
 * recorded: a nightly "up to date" would crowd out the transactions), at most UPDATE_HISTORY_MAX
 * (the oldest dropped), written atomically by job_finished():
 *
 *   { "version": 1,
 *     "transactions": [
 *       { "id": "5f0c2a9e1b7d4c38",          the job / transaction id
 *         "kind": "update" | "resume",
 *         "started": 1714532400,             seconds since the epoch (UTC)
 *         "finished": 1714533290,
 *         "outcome": "committed" | "rolled-back" | "failed" | "cancelled"
 *                    | "deferred",
 *         "summary": "...",                  one sentence
 *         "manifest": "2024-05" | null,
 *         "snapshot": "7" | null,            the pre-patch snapshot
 *         "failed_step": "trial" | null } ] }
 *
 * Validated on load: any deviation is -EPROTO (GetHistory then fails with
 * that message; the next append keeps the bad file as
 * update-history.json.bad and starts a new one). A missing file is an
 * empty history. (The guard's crash history is history.json beside it.)
 */
#define UPDATE_HISTORY_FILE "update-history.json"
#define UPDATE_HISTORY_MAX 200

typedef struct HistoryEntry {
        const char *id;
        JobKind kind;
        int64_t started, finished;
        JobOutcome outcome;
        const char *summary;
        const char *manifest; /* or NULL */
        const char *snapshot; /* or NULL */
        JobStep failed_step;  /* or _JOB_STEP_INVALID */
} HistoryEntry;

int history_append(const char *state_dir, const HistoryEntry *e);
/* The history as compact JSON text (the format above), "{"version":1,
 * "transactions":[]}" when there is none. -EPROTO with *ret_error. */
int history_read_json(const char *state_dir, char **ret, char **ret_error);

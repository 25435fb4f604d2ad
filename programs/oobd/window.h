/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The patch window's private contract (programs/oobd/ only): the persisted
 * transaction (transaction.c), the manifest choice and the installed list
 * (transaction.c, pure: unit-tested without a daemon), and the apply worker
 * (apply-worker.c, a child process). window.c drives them on the loop.
 *
 * transaction.c depends on lib/ and manifests/ only (no Manager, no bus), so
 * tests/oobd/test-transaction.c can include it directly.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "lib.h"
#include "manifests.h"

/* Journal MESSAGE_IDs of the patch window (explained in mgmt-vm-rootfs/oob.catalog). */
#define OOBD_MESSAGE_TRANSACTION_RESUMED \
        "1f17df0ecd0a4e308c8266c7c2c6d5b8" /* an interrupted transaction resumes */
#define OOBD_MESSAGE_ROLLBACK_FAILED "8ce2ac16adb048b39f704d4b140a6b0a" /* a rollback failed: alert */

/* ---- the transaction: a persisted state machine (transaction.c) --------------- */

#define TRANSACTION_FILE "transaction.json"
/* The verified manifest bytes of the transaction, beside it (so that every
 * step from the snapshot on needs no network). */
#define TRANSACTION_MANIFEST_FILE "transaction-manifest.yaml"
/* What was committed or refused (id -> version), beside it. */
#define INSTALLED_FILE "installed.json"
#define TRANSACTION_FILE_MAX (1024U * 1024U)
#define TRANSACTION_PAYLOADS_MAX 1000U
#define TRANSACTION_TRANSITIONS_MAX 128U
#define TRANSACTION_TEXT_MAX 2048U

typedef enum TxState {
        TX_IDLE,             /* created, nothing done */
        TX_REFRESHING,       /* TUF refresh, then the choice of the manifest */
        TX_DOWNLOADING,      /* payloads into payload-dir (resumable) */
        TX_STAGED,           /* every payload verified on disk */
        TX_STOPPING_DESKTOP, /* shutting the desktop down, then the pre-patch snapshot */
        TX_SNAPSHOTTED,      /* pre-patch snapshot taken (pre_patch_snapshot) */
        TX_APPLYING,         /* apply on a staging overlay, promote on success */
        TX_APPLIED,          /* promoted: the active disk has the patch */
        TX_TRIAL,            /* trial boot number `attempt` under way */
        TX_COMMITTING,       /* the trial passed: known-good, installed, retention */
        TX_COMMITTED,        /* terminal: success */
        TX_ROLLING_BACK,     /* reverting to the pre-patch snapshot */
        TX_ROLLED_BACK,      /* terminal: the pre-patch disk is active again */
        TX_ABORTED,          /* terminal: stopped before the active disk changed */
        TX_FAILED,           /* terminal: the rollback failed; last known-good kept, alert */
        _TX_STATE_MAX,
        _TX_STATE_INVALID = -EINVAL,
} TxState;
const char *tx_state_to_string(TxState s); /* "idle", "refreshing", ..., "stopping-desktop", ... */
TxState tx_state_from_string(const char *s);
bool tx_state_is_terminal(TxState s);

/* What to do with a transaction found persisted at start (the table at the
 * top of transaction.c). */
typedef enum TxResume {
        TX_RESUME_NONE,        /* terminal and reported: nothing */
        TX_RESUME_REPORT,      /* terminal, report not queued yet: queue it */
        TX_RESUME_RESTART,     /* before the snapshot: again from the refresh, verified payloads kept */
        TX_RESUME_APPLY,       /* snapshotted/applying: a new stage on the pre-patch snapshot, apply again */
        TX_RESUME_FREEZE,      /* applied: freeze the patched state, start the trial */
        TX_RESUME_INTERRUPTED, /* trial: count the attempt as failed; retry or roll back */
        TX_RESUME_COMMIT,      /* committing: finish the commit (idempotent steps) */
        TX_RESUME_ROLLBACK,    /* rolling-back: finish the revert (idempotent) */
        _TX_RESUME_MAX,
        _TX_RESUME_INVALID = -EINVAL,
} TxResume;
const char *tx_resume_to_string(TxResume r);
TxResume tx_resume_from_string(const char *s);

typedef enum TxReport {
        TX_REPORT_PENDING, /* not queued yet */
        TX_REPORT_QUEUED,  /* in the outbox (delivered or not) */
        TX_REPORT_NONE,    /* no [reports] url: none is made */
        _TX_REPORT_MAX,
        _TX_REPORT_INVALID = -EINVAL,
} TxReport;
const char *tx_report_to_string(TxReport r);
TxReport tx_report_from_string(const char *s);

typedef struct TxPayload {
        char *path; /* target path */
        uint64_t length;
        TufHashes hashes; /* the signed hashes (at least one) */
} TxPayload;

typedef struct TxTransition {
        TxState state;
        int64_t usec; /* CLOCK_REALTIME when it was entered */
} TxTransition;

/* Why a trial boot failed (the verdict, persisted for the report). */
typedef struct TxCrash {
        char *failure; /* trial_failure_to_string(): "crash", "hang", "boot-timeout", "stopped",
                          "interrupted" */
        bool hyperv;   /* stop_code and params are known */
        uint64_t stop_code;
        uint64_t params[4];
        char *detail; /* what libvirt said ("pvpanic"), or NULL */
} TxCrash;

typedef struct Transaction {
        char *id; /* 16 hex digits (the job id) */
        TxState state;
        bool cancelled; /* Cancel() or stop asked for it */
        bool deferred;  /* aborted before the shutdown: someone was logged in on the desktop */
        bool force;     /* started with OOBD_UPDATE_FORCE: never deferred */

        /* the manifest, once chosen (from TX_DOWNLOADING on) */
        char *manifest_target; /* "manifests/2026-05.yaml" */
        char *manifest_id;
        uint64_t manifest_version;
        uint64_t manifest_length;
        TufHashes manifest_hashes; /* of TRANSACTION_MANIFEST_FILE */
        TxPayload *payloads;
        size_t n_payloads;
        uint64_t windows_build; /* as read when choosing; 0: unknown */

        /* the effective trial policy and where it is */
        unsigned boot_timeout_sec, stability_sec, attempts;
        unsigned attempt; /* 1-based from TX_TRIAL on; 0 before */

        bool desktop_was_running; /* the window shut it down (so it starts it again) */
        char *pre_patch_snapshot; /* from TX_SNAPSHOTTED on */
        char *patched_snapshot;   /* from TX_TRIAL on */
        char *result_snapshot;    /* terminal: what the active disk builds on */

        /* why it did not commit */
        TxState failed_state; /* _TX_STATE_INVALID: none */
        char *reason;
        TxCrash crash;
        bool has_crash;
        bool alert; /* an alert was raised (a failed rollback) */

        TxReport report;
        TxTransition *transitions; /* oldest first, at most TRANSACTION_TRANSITIONS_MAX (the oldest
                                    * after the first dropped) */
        size_t n_transitions;
} Transaction;

int transaction_new(const char *id, Transaction **ret);
Transaction *transaction_free(Transaction *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Transaction *, transaction_free);

/*
 * Load STATE_DIR/transaction.json and validate it strictly (types, known
 * members, the state's required fields: see transaction.c). -ENOENT when
 * there is none; -EPROTO with *ret_error (may be NULL) saying what is wrong.
 */
int transaction_load(const char *state_dir, Transaction **ret, char **ret_error);
/* Write it atomically (temp, fsync, rename, fsync dir), mode 0600. */
int transaction_save(const char *state_dir, const Transaction *t);
/* Remove the file (a window that found nothing to do leaves none). */
int transaction_remove(const char *state_dir);
/* The text that transaction_save() writes (for tests and the report). */
int transaction_to_json(const Transaction *t, char **ret);
int transaction_from_json(const char *text, size_t size, Transaction **ret, char **ret_error);
/* Check the invariants of t's state (what transaction_load() checks after
 * parsing). -EPROTO with *ret_error. */
int transaction_validate(const Transaction *t, char **ret_error);

/* May a transaction in state from go to state to? (Staying is allowed
 * for non-terminal states: a resumed step is entered again.) */
bool tx_transition_allowed(TxState from, TxState to);
/*
 * Enter state to: checks tx_transition_allowed() (-EINVAL otherwise),
 * records the transition (usec), validates and saves. On any error t is
 * unchanged in memory (and on disk the old state stays, or the new one if
 * only the final directory fsync failed).
 */
int transaction_enter(const char *state_dir, Transaction *t, TxState to, int64_t usec);

/* The resume rule for a loaded transaction. */
TxResume transaction_resume_rule(const Transaction *t);

/* Record a failure (state where it happened, reason). Keeps the first one:
 * a rollback after a failed trial still reports the trial. */
int transaction_set_failure(Transaction *t, TxState where, const char *reason_format, ...) _printf_(3, 4);

/* The outcome word of a terminal state: "committed", "rolled-back",
 * "aborted", "deferred" (aborted, deferred), "failed"; NULL for the others. */
const char *transaction_outcome(const Transaction *t);
/* The outbox key: "<id>-<outcome>". */
int transaction_report_key(const Transaction *t, char **ret);
/* The report as one JSON object (format in transaction.c). */
int transaction_report_json(const Transaction *t, const char *device_id, char **ret);

/* ---- what is installed, and which manifest is next (transaction.c) ------------ */

typedef struct InstalledEntry {
        char *id;
        uint64_t version;
        bool refused;      /* rolled back: this version is not offered again */
        char *transaction; /* the transaction that recorded it */
        int64_t usec;
} InstalledEntry;

typedef struct Installed {
        InstalledEntry *entries;
        size_t n;
} Installed;

/* STATE_DIR/installed.json; a missing file is an empty list. -EPROTO with *ret_error. */
int installed_load(const char *state_dir, Installed *ret, char **ret_error);
void installed_done(Installed *i);
/* Record id at version (committed, or refused after a rollback) and save
 * atomically. A higher version already recorded is kept. */
int installed_record(const char *state_dir, Installed *i, const char *id, uint64_t version, bool refused,
                     const char *transaction, int64_t usec);
/* Whether id at version is settled: installed at >= version, or refused at
 * >= version. */
bool installed_settled(const Installed *i, const char *id, uint64_t version);

/*
 * The choice of the manifest (the rule, documented in transaction.c):
 * among the candidates that apply to this device (a device group in
 * common, or no groups named; the OS build within the bounds, 0 meaning
 * unknown which satisfies no bound) and that are not settled, the one with
 * the smallest id (bytewise), and for one id the smallest version.
 * Returns the index, or -ENOENT when none applies. why (may be NULL) gets,
 * per candidate, NULL when it applies or a static reason.
 */
int window_choose_manifest(PatchManifest *const *candidates, size_t n, char *const *device_groups,
                           uint64_t windows_build, const Installed *installed, const char **why);

/* ---- the apply worker (apply-worker.c) ---------------------------------------- */

/*
 * Work that blocks (libntfs-3g and libnbd are synchronous, a merge of
 * layers is O(data)) runs in a child process while the loop keeps serving
 * D-Bus and the watchdog. The child is a fork() of oobd (no exec: it uses
 * the already verified objects in memory): it marks every inherited file
 * descriptor close-on-exec (so qemu-nbd, which libnbd starts, inherits
 * none of oobd's), dies with oobd (PR_SET_PDEATHSIG), and never touches the
 * loop, the bus or libvirt. It writes one JSON object to a pipe and exits.
 */
typedef enum WorkerTask {
        WORKER_APPLY,  /* verify the payloads, then apply the manifest on a staging overlay */
        WORKER_RETAIN, /* the catalog's retention */
        _WORKER_TASK_MAX,
        _WORKER_TASK_INVALID = -EINVAL,
} WorkerTask;

typedef struct WorkerRequest {
        WorkerTask task;
        /* WORKER_APPLY */
        const char *stage; /* the staging overlay */
        const PatchManifest *manifest;
        const char *payload_dir;
        const TxPayload *payloads;
        size_t n_payloads;
        /* WORKER_RETAIN */
        const char *catalog_dir;
        unsigned keep;
        bool running;
} WorkerRequest;

typedef struct WorkerResult {
        int error;      /* 0 or a negative errno */
        char *step;     /* where it failed: "verify payload", "open", "apply", ... or NULL */
        char *message;  /* one sentence, or NULL */
        uint64_t build; /* WORKER_APPLY: the Windows build found */
        size_t actions; /* actions done */
        uint64_t files_written, bytes_written, files_deleted, registry_changes;
        unsigned dropped; /* WORKER_RETAIN */
} WorkerResult;
void worker_result_done(WorkerResult *r);

typedef struct Worker Worker;
/* done() is called once from the loop with the result (valid during the
 * call, also when done() frees the worker, which it may). */
typedef void (*WorkerDone)(Worker *w, const WorkerResult *r, void *userdata);
int worker_start(sd_event *e, const WorkerRequest *req, WorkerDone done, void *userdata, Worker **ret);
/* Kill the child (SIGKILL) and wait for it; done() is not called. */
Worker *worker_free(Worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(Worker *, worker_free);
pid_t worker_pid(const Worker *w);

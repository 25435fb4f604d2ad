/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * recovery/: policy for rollback. This header covers the snapshot catalog
 * (issue 3); the guard, helpdesk orders and OS slots join it later. No
 * network code here.
 *
 * The system disk of the desktop is a qcow2 chain in one directory:
 *
 *     base layer <- frozen snapshot layers ... <- active overlay
 *
 * A snapshot freezes the current active overlay (it becomes a read-only
 * layer) and puts a new, empty active overlay on top: O(1). Reverting puts
 * a new active overlay on the chosen snapshot's layer and discards the old
 * active one: O(1). Layers form a tree (several overlays may share a frozen
 * backing). Deleting a snapshot that other layers build on merges its data
 * into them (qemu-img rebase): the only O(data) step. The separate user-data
 * disk is never part of a catalog.
 *
 * Every operation creates its new files first, then writes the catalog
 * (catalog.json, atomically: the commit point), then deletes the files the
 * catalog no longer names. On open the catalog is checked
 * against the files and repaired from them, never the other way round:
 * entries whose layer is missing are dropped, layers no entry claims
 * (an overlay left by a killed operation) are removed, a staging overlay
 * that was never promoted is discarded.
 *
 * A Catalog holds a lock on its directory for its whole life: a second
 * opener gets -EAGAIN. After a failed catalog write the handle refuses
 * further changes (-EIO) until reopened.
 *
 * Errors: -ENOENT unknown snapshot id, -EBUSY the desktop is running (the
 * caller's answer), -EPERM refusing to drop a pinned or the last known-good
 * snapshot, -ENOTEMPTY other snapshots build on it and merging was not
 * allowed, -EPROTO unreadable catalog (then repaired from the files).
 */

#include "lib.h"

typedef enum SnapshotReason {
        SNAPSHOT_PRE_PATCH,
        SNAPSHOT_KNOWN_GOOD,
        SNAPSHOT_HELPDESK,
        SNAPSHOT_MANUAL,
        SNAPSHOT_PRE_MIGRATION,
        SNAPSHOT_INITIAL,              /* the disk the catalog was created over */
        SNAPSHOT_RECOVERED,            /* a layer found on disk with no catalog entry */
        _SNAPSHOT_REASON_MAX,
        _SNAPSHOT_REASON_INVALID = -EINVAL,
} SnapshotReason;

const char *snapshot_reason_to_string(SnapshotReason r);   /* "pre-patch", "known-good", ... */
SnapshotReason snapshot_reason_from_string(const char *s);

/* One snapshot as listed (value type, owned by the catalog). */
typedef struct Snapshot {
        char *id;                      /* short and stable: "1", "2", ... (easy to read out on the phone) */
        int64_t created;               /* seconds since the epoch */
        SnapshotReason reason;
        char *manifest;                /* manifest id that caused it, or NULL */
        char *label;                   /* free text, or NULL */
        bool pinned;
        bool known_good;               /* the desktop booted healthy on this state */
        char *layer;                   /* absolute path of the frozen layer */
        char *parent;                  /* id of the snapshot below, NULL for the base */
        uint64_t layer_size;           /* bytes used by the layer on the host */
} Snapshot;

typedef struct Catalog Catalog;

/* Create a catalog in dir over an existing disk image (qcow2 or raw): the
 * image becomes the base layer (left where it is, never written again) and
 * a new active overlay is made on top. -EEXIST if dir already has one. */
int catalog_create(const char *dir, const char *base_image, Catalog **ret);
/* Load and repair. *ret_repairs (may be NULL) counts fixes made. */
int catalog_open(const char *dir, Catalog **ret, unsigned *ret_repairs);
Catalog *catalog_free(Catalog *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Catalog *, catalog_free);

/* Path of the active overlay: what the desktop boots. */
const char *catalog_active(const Catalog *c);
/* The snapshot the active overlay builds on. */
const char *catalog_active_parent(const Catalog *c);
int catalog_list(const Catalog *c, const Snapshot **ret, size_t *ret_n);
const Snapshot *catalog_get(const Catalog *c, const char *id);
/* Last known-good snapshot, or NULL. */
const Snapshot *catalog_last_known_good(const Catalog *c);

/* Freeze the active overlay as a new snapshot. running: whether the desktop
 * uses the disk now (refused with -EBUSY). */
int catalog_snapshot(Catalog *c, SnapshotReason reason, const char *label, const char *manifest,
                     bool running, char **ret_id);
/* New active overlay on snapshot id; the old active overlay is discarded. */
int catalog_revert(Catalog *c, const char *id, bool running);
int catalog_set_pinned(Catalog *c, const char *id, bool pinned);
int catalog_set_known_good(Catalog *c, const char *id);
/* Drop a snapshot; its data is merged into the layers that build on it. */
int catalog_delete(Catalog *c, const char *id, bool running);
/* Keep the newest keep_last snapshots plus every pinned one, the last
 * known-good one, the base and the active overlay's parent; drop the rest. */
int catalog_retain(Catalog *c, unsigned keep_last, bool running, unsigned *ret_dropped);

/*
 * Staging, for an offline apply: a throw-away overlay on snapshot id that
 * is not the active disk. promote makes it the active overlay (the old
 * active one is discarded) in one atomic catalog write; discard deletes it.
 * A staging overlay found at open (killed before promote) is discarded.
 */
int catalog_stage(Catalog *c, const char *id, char **ret_path);
int catalog_promote(Catalog *c);
int catalog_discard_stage(Catalog *c);

/* ---- the guard (guard.c) and the crash history (history.c) --------------- */

#include <systemd/sd-event.h>

#include "hv.h"

typedef enum TrialResult {
        TRIAL_PENDING,
        TRIAL_PASSED,
        TRIAL_FAILED,
        _TRIAL_RESULT_MAX,
        _TRIAL_RESULT_INVALID = -EINVAL,
} TrialResult;
const char *trial_result_to_string(TrialResult r);
TrialResult trial_result_from_string(const char *s);

typedef enum TrialFailure {
        TRIAL_FAILURE_NONE,
        TRIAL_FAILURE_CRASH,           /* panic (blue screen), with the STOP code when known */
        TRIAL_FAILURE_HANG,            /* the watchdog fired, or the agent stopped answering */
        TRIAL_FAILURE_BOOT_TIMEOUT,    /* the agent never answered within the boot timeout */
        TRIAL_FAILURE_STOPPED,         /* the desktop went off during the trial */
        _TRIAL_FAILURE_MAX,
        _TRIAL_FAILURE_INVALID = -EINVAL,
} TrialFailure;
const char *trial_failure_to_string(TrialFailure f);    /* "crash", "hang", "boot-timeout", ... */
TrialFailure trial_failure_from_string(const char *s);

typedef struct TrialVerdict {
        TrialResult result;
        TrialFailure failure;
        CrashInfo crash;               /* for TRIAL_FAILURE_CRASH */
        uint64_t boot_usec;            /* start to first agent answer */
} TrialVerdict;

/* A trial boot: started desktop, agent must answer within boot_timeout_sec,
 * then no panic/watchdog/agent loss for stability_sec. The caller feeds it
 * the desktop's events; it uses timers on the loop and pings the agent.
 * done() is called once with the verdict. */
typedef struct Trial Trial;
typedef void (*TrialDoneCallback)(Trial *t, const TrialVerdict *v, void *userdata);
int trial_start(sd_event *e, Desktop *d, unsigned boot_timeout_sec, unsigned stability_sec,
                TrialDoneCallback done, void *userdata, Trial **ret);
void trial_feed(Trial *t, const DesktopEvent *ev);
Trial *trial_free(Trial *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Trial *, trial_free);

/* The crash history of the desktop, persisted (history.json in the state dir). */
typedef struct CrashRecord {
        int64_t usec;
        DesktopEventType type;         /* crashed or watchdog */
        CrashInfo crash;
        char *snapshot;                /* the snapshot the active disk built on */
        char *action;                  /* what the guard did: "none", "reverted to 3", "alert" */
} CrashRecord;

/* Outside trials: after max_crashes crashes within window_sec, revert the
 * system disk to the last known-good snapshot and start the desktop again;
 * if that state crash-loops as well, stop, keep the evidence and raise a
 * helpdesk alert (persisted) instead of looping. The user-data disk is never
 * reverted. */
typedef struct GuardOptions {
        const char *state_dir;         /* history.json, alert.json */
        const char *catalog_dir;       /* the system disk's snapshot catalog */
        unsigned max_crashes;          /* default 3 */
        unsigned window_sec;           /* default 600 */
} GuardOptions;

typedef struct Guard Guard;
int guard_new(sd_event *e, Desktop *d, const GuardOptions *o, Guard **ret);
void guard_feed(Guard *g, const DesktopEvent *ev);
Guard *guard_free(Guard *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(Guard *, guard_free);

int crash_history_load(const char *state_dir, CrashRecord **ret, size_t *ret_n);
void crash_history_free(CrashRecord *r, size_t n);
/* The alert raised by the guard, or -ENOENT. */
int guard_alert_read(const char *state_dir, char **ret_text);

/* -- added by the guard helper (trial.c, guard.c, history.c) ------------------ */

/* Journal MESSAGE_IDs (listed with their explanation in mgmt-vm-rootfs/oob.catalog). */
#define OOB_MESSAGE_DESKTOP_CRASHED "a12ad3b928fe46b6996984a6ec45b875"   /* a crash or watchdog event */
#define OOB_MESSAGE_GUARD_REVERTED "26c8940fdc844a8fb5c9f4e0e9890bdb"    /* crash loop: reverted to known-good */
#define OOB_MESSAGE_GUARD_ALERT "6fba3d099b4d405bbfcc31acfd83c63d"       /* crash loop not fixed: helpdesk alert */
#define OOB_MESSAGE_TRIAL_VERDICT "cd7554d695704590b07abf4fd62d4637"     /* a trial boot's verdict */

/*
 * The trial's knobs, for callers that need more than trial_start()'s two
 * (and for tests: the agent ping is a field, desktop_agent_ping by default).
 * The ping runs on the loop and blocks it for up to ping_timeout_sec when
 * the agent does not answer (libvirt's agent calls are synchronous).
 * trial_options_init() fills in the defaults that trial_start() uses:
 * a ping every second with a 1 s timeout, a hang after 3 missed pings in a
 * row once the agent has answered, 2 guest reboots allowed after the agent
 * answered (each restarts the boot timeout; one more is a failure,
 * TRIAL_FAILURE_STOPPED). Reboots before the first answer only run down the
 * boot timeout.
 */
typedef int (*TrialPingFunction)(Desktop *d, unsigned timeout_sec, void *userdata);
typedef struct TrialOptions {
        uint64_t boot_timeout_usec;
        uint64_t stability_usec;
        uint64_t ping_interval_usec;
        unsigned ping_timeout_sec;
        unsigned max_missed_pings;
        unsigned max_reboots;
        TrialPingFunction ping;        /* NULL: desktop_agent_ping() (then d must not be NULL) */
        void *ping_userdata;
} TrialOptions;
void trial_options_init(TrialOptions *o, unsigned boot_timeout_sec, unsigned stability_sec);
/* As trial_start(); d may be NULL when o->ping is set and never looks at it.
 * The verdict passed to done() (and its crash.reason) is valid during the
 * call only; done() may free the trial. */
int trial_start_full(sd_event *e, Desktop *d, const TrialOptions *o, TrialDoneCallback done, void *userdata,
                     Trial **ret);
/* The verdict so far (TRIAL_PENDING until done() was called). */
const TrialVerdict *trial_verdict(const Trial *t);
/* One line for people and logs: "passed (boot 5.2 s)", "failed: crash, STOP 0x0000007e (...)". */
int trial_verdict_format(const TrialVerdict *v, char **ret);
void trial_verdict_done(TrialVerdict *v);

/*
 * history.c: history.json in the state dir, shared by the guard and oobctl,
 * written atomically under a lock file (history.lock), capped at the newest
 * CRASH_HISTORY_MAX records. The format (version 1):
 *
 *   { "version": 1,
 *     "crashes": [ { "usec": 1700000000000000,         CLOCK_REALTIME, microseconds
 *                    "type": "crashed" | "watchdog",
 *                    "stop_code": "0x7e" | null,       null when the STOP code is unknown
 *                    "params": ["0x..", "0x..", "0x..", "0x.."] | null,
 *                    "reason": "pvpanic" | null,
 *                    "snapshot": "3" | null,
 *                    "action": "restarted" } ... ],    oldest first
 *     "last_trial": { "usec": ..., "result": "failed", "failure": "crash",
 *                     "stop_code": ..., "params": ..., "reason": ...,
 *                     "boot_usec": ... } | absent }
 *
 * An unreadable file is kept as history.json.bad and a new one started.
 * Loading: -ENOENT none yet (crash_history_load() returns 0 records then),
 * -EPROTO malformed.
 */
#define CRASH_HISTORY_MAX 200
int crash_history_append(const char *state_dir, const CrashRecord *r);
void crash_record_done(CrashRecord *r);
int trial_verdict_save(const char *state_dir, const TrialVerdict *v, int64_t usec);
/* The last saved verdict; -ENOENT when none. */
int trial_verdict_load(const char *state_dir, TrialVerdict *ret, int64_t *ret_usec);

/*
 * guard.c. Actions, as recorded in CrashRecord.action: "none" (the desktop
 * was running again, or another crash followed at once), "none: alert raised"
 * (not counted), "restarted", "reverted to ID", "alert: CAUSE",
 * "failed: CAUSE".
 *
 * The desktop steps the guard takes, a table so tests can run the policy
 * without libvirt (guard_new() uses the hv functions on its Desktop).
 */
typedef struct GuardDesktopOps {
        int (*state)(Desktop *d, DesktopState *ret);
        int (*is_running)(Desktop *d, bool *ret);
        int (*destroy)(Desktop *d);
        int (*set_system_disk)(Desktop *d, const char *path);
        int (*start)(Desktop *d);
} GuardDesktopOps;
void guard_set_desktop_ops(Guard *g, const GuardDesktopOps *ops);
/* Remove a raised alert (the guard acts on crashes again); 0 also when none. */
int guard_alert_clear(const char *state_dir);
/* (history.c) The raised alert's cause and time; -ENOENT when none, -EPROTO
 * when alert.json is unreadable. */
int guard_alert_summary(const char *state_dir, char **ret_cause, int64_t *ret_usec);

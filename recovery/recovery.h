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

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The patch window's transaction: a state machine persisted in
 * STATE_DIR/transaction.json, written atomically (temp file, fsync, rename,
 * fsync of the directory) BEFORE the window acts on the state it enters
 * (DESIGN.md decision 6). So a SIGKILL at any instant leaves on disk the
 * state whose action was under way (or not begun), and the next start
 * resumes by this table:
 *
 *   state found         what it means on disk                 resume (TxResume)
 *   ------------------  ------------------------------------  --------------------------------------
 *   idle, refreshing,   nothing changed on the disk; payloads  RESTART: refresh again, the same
 *   downloading,        verified so far are in payload-dir     manifest if one was chosen (verified
 *   staged,             (a partial one as NAME.partial); the   payloads are hashed, not fetched;
 *   stopping-desktop    desktop may have been shut down        a partial one resumes)
 *   snapshotted         pre-patch snapshot P taken; the        APPLY: a new staging overlay on P,
 *                       active disk is a fresh overlay on P    apply from scratch, promote
 *   applying            maybe a staging overlay (discarded by  APPLY: the same; an unpromoted stage
 *                       the catalog at open) or, killed after  is gone, a promoted one is replaced:
 *                       the promote, a patched active overlay  the patch is never applied on top of
 *                                                              itself ("never half-applied twice")
 *   applied             the active disk has the patch          FREEZE: snapshot it as Q (or adopt Q
 *                                                              if the kill came after that), trial 1
 *   trial (attempt n)   the desktop may be running on Q        INTERRUPTED: destroy it, count
 *                                                              attempt n as failed ("interrupted"),
 *                                                              trial n+1 on a fresh overlay on Q if
 *                                                              attempts remain, else roll back
 *   committing          trial passed; known-good, installed    COMMIT: the same steps again (each
 *                       list, retention maybe half done        is idempotent)
 *   rolling-back        revert to P maybe half done            ROLLBACK: revert to P again (a new
 *                                                              overlay on P; idempotent), start
 *   committed,          terminal                               REPORT if the report is still
 *   rolled-back,                                               pending, else NONE
 *   aborted, failed
 *
 * Every state change is one write, so "the same step is never half-applied
 * twice": the only step that writes the system disk (the apply) always
 * starts from a new overlay on P; a kill anywhere else leaves an overlay
 * the catalog either names (old or new active disk) or removes at open.
 *
 * transaction.json (version 1), every member always present:
 *
 *   { "version": 1, "id": "5f0c2a9e1b7d4c38", "state": "trial",
 *     "cancelled": false,
 *     "deferred": false,                 aborted because someone was logged in
 *     "force": false,                    started with --force: never deferred
 *     "manifest": null | { "target": "manifests/2026-05.yaml", "id": "2026-05",
 *                          "version": 1, "length": 812,
 *                          "sha256": "hex" | null, "sha512": "hex" | null,
 *                          "payloads": [ { "path": "payloads/a.tar", "length": 10240,
 *                                          "sha256": "hex" | null, "sha512": "hex" | null } ] },
 *     "windows_build": 19045 | null,
 *     "trial": { "boot_timeout": 300, "stability": 600, "attempts": 1, "attempt": 1 },
 *     "desktop_was_running": true,
 *     "pre_patch_snapshot": "3" | null, "patched_snapshot": "4" | null,
 *     "result_snapshot": "4" | null,
 *     "failure": null | { "state": "trial", "reason": "...",
 *                         "crash": null | { "failure": "crash", "stop_code": "0x7e" | null,
 *                                           "params": ["0x..", x4] | null, "detail": "pvpanic" | null } },
 *     "alert": false,
 *     "report": "pending" | "queued" | "none",
 *     "transitions": [ { "state": "idle", "usec": 1714532400000000 }, ... ] }
 *
 * "deferred" and "force" came later: a file without them loads (both
 * false); every other member is required.
 *
 * Validation on load is strict: unknown or missing members, wrong types,
 * unknown states, and a state whose required fields are missing (a manifest
 * from downloading on, P from snapshotted on, Q and an attempt within
 * 1..attempts in trial and committing, a failure in aborted, rolled-back and
 * failed; deferred only in aborted, and not with cancelled or force) are
 * -EPROTO. The last transition is the current state.
 *
 * The report (transaction_report_json(), POSTed through the outbox once the
 * transaction is terminal; success only ever after the trial passed):
 *
 *   { "type": "oob-patch-report", "format": 1, "device": "lab-7",
 *     "transaction": "5f0c2a9e1b7d4c38", "oobd_version": "0.1.0",
 *     "outcome": "committed" | "rolled-back" | "aborted" | "deferred" | "failed",
 *                                           deferred: aborted before the desktop was
 *                                           touched because someone was logged in on it
 *     "cancelled": false,
 *     "manifest": { "id": "2026-05", "version": 1 } | null,
 *     "windows_build": 19045 | null,
 *     "failed_step": "trial" | null,            the transaction state it failed in
 *                                               (null for a deferral: no failure)
 *     "reason": "..." | null,                   a deferral's counts who was logged in
 *                                               (no names leave the device)
 *     "crash": null | { "failure": "crash", "stop_code": "0x0000007e" | null,
 *                       "params": ["0x...", x4] | null, "detail": "pvpanic" | null },
 *     "trial": { "attempts": 1, "attempt": 1 },
 *     "pre_patch_snapshot": "3" | null, "patched_snapshot": "4" | null,
 *     "result_snapshot": "4" | null,            what the active disk builds on at the end
 *     "alert": false,
 *     "started_usec": ..., "finished_usec": ...,
 *     "timings": { "refreshing": 0.8, "downloading": 2.1, ... } }   seconds per state entered
 * (the outbox adds "idempotency_key": "<transaction>-<outcome>").
 */

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>

#include "window.h"

#define _cleanup_json_ _cleanup_(json_decrefp)
#define TRANSACTION_VERSION 1
#define INSTALLED_VERSION 1
#define INSTALLED_MAX 10000U

/* clang-format off: one entry a line */
static const char *const tx_state_table[_TX_STATE_MAX] = {
        [TX_IDLE] = "idle",
        [TX_REFRESHING] = "refreshing",
        [TX_DOWNLOADING] = "downloading",
        [TX_STAGED] = "staged",
        [TX_STOPPING_DESKTOP] = "stopping-desktop",
        [TX_SNAPSHOTTED] = "snapshotted",
        [TX_APPLYING] = "applying",
        [TX_APPLIED] = "applied",
        [TX_TRIAL] = "trial",
        [TX_COMMITTING] = "committing",
        [TX_COMMITTED] = "committed",
        [TX_ROLLING_BACK] = "rolling-back",
        [TX_ROLLED_BACK] = "rolled-back",
        [TX_ABORTED] = "aborted",
        [TX_FAILED] = "failed",
};
DEFINE_STRING_TABLE_LOOKUP(tx_state, TxState);

static const char *const tx_resume_table[_TX_RESUME_MAX] = {
        [TX_RESUME_NONE] = "none",       [TX_RESUME_REPORT] = "report",
        [TX_RESUME_RESTART] = "restart", [TX_RESUME_APPLY] = "apply",
        [TX_RESUME_FREEZE] = "freeze",   [TX_RESUME_INTERRUPTED] = "interrupted",
        [TX_RESUME_COMMIT] = "commit",   [TX_RESUME_ROLLBACK] = "rollback",
};
DEFINE_STRING_TABLE_LOOKUP(tx_resume, TxResume);

static const char *const tx_report_table[_TX_REPORT_MAX] = {
        [TX_REPORT_PENDING] = "pending",
        [TX_REPORT_QUEUED] = "queued",
        [TX_REPORT_NONE] = "none",
};
DEFINE_STRING_TABLE_LOOKUP(tx_report, TxReport);

/* The transitions, as bit masks of the states each one may go to. */
#define B(s) (1U << (s))
static const unsigned tx_transitions[_TX_STATE_MAX] = {
        [TX_IDLE] = B(TX_REFRESHING) | B(TX_ABORTED),
        [TX_REFRESHING] = B(TX_REFRESHING) | B(TX_DOWNLOADING) | B(TX_ABORTED),
        [TX_DOWNLOADING] = B(TX_DOWNLOADING) | B(TX_REFRESHING) | B(TX_STAGED) | B(TX_ABORTED),
        [TX_STAGED] = B(TX_STAGED) | B(TX_REFRESHING) | B(TX_STOPPING_DESKTOP) | B(TX_ABORTED),
        [TX_STOPPING_DESKTOP] =
                B(TX_STOPPING_DESKTOP) | B(TX_REFRESHING) | B(TX_SNAPSHOTTED) | B(TX_ABORTED),
        [TX_SNAPSHOTTED] = B(TX_SNAPSHOTTED) | B(TX_APPLYING) | B(TX_ABORTED),
        [TX_APPLYING] = B(TX_APPLYING) | B(TX_APPLIED) | B(TX_ABORTED),
        [TX_APPLIED] = B(TX_APPLIED) | B(TX_TRIAL) | B(TX_ROLLING_BACK),
        [TX_TRIAL] = B(TX_TRIAL) | B(TX_COMMITTING) | B(TX_ROLLING_BACK),
        [TX_COMMITTING] = B(TX_COMMITTING) | B(TX_COMMITTED),
        [TX_COMMITTED] = 0,
        [TX_ROLLING_BACK] = B(TX_ROLLING_BACK) | B(TX_ROLLED_BACK) | B(TX_FAILED),
        [TX_ROLLED_BACK] = 0,
        [TX_ABORTED] = 0,
        [TX_FAILED] = 0,
};
#undef B
/* clang-format on */

bool tx_state_is_terminal(TxState s) {
        return s == TX_COMMITTED || s == TX_ROLLED_BACK || s == TX_ABORTED || s == TX_FAILED;
}

bool tx_transition_allowed(TxState from, TxState to) {
        if (from < 0 || from >= _TX_STATE_MAX || to < 0 || to >= _TX_STATE_MAX)
                return false;
        return (tx_transitions[from] & (1U << to)) != 0;
}

TxResume transaction_resume_rule(const Transaction *t) {
        assert(t);

        switch (t->state) {
        case TX_IDLE:
        case TX_REFRESHING:
        case TX_DOWNLOADING:
        case TX_STAGED:
        case TX_STOPPING_DESKTOP:
                return TX_RESUME_RESTART;
        case TX_SNAPSHOTTED:
        case TX_APPLYING:
                return TX_RESUME_APPLY;
        case TX_APPLIED:
                return TX_RESUME_FREEZE;
        case TX_TRIAL:
                return TX_RESUME_INTERRUPTED;
        case TX_COMMITTING:
                return TX_RESUME_COMMIT;
        case TX_ROLLING_BACK:
                return TX_RESUME_ROLLBACK;
        case TX_COMMITTED:
        case TX_ROLLED_BACK:
        case TX_ABORTED:
        case TX_FAILED:
                return t->report == TX_REPORT_PENDING ? TX_RESUME_REPORT : TX_RESUME_NONE;
        default:
                return _TX_RESUME_INVALID;
        }
}

/* ---- life cycle ---------------------------------------------------------------------- */

static void tx_crash_done(TxCrash *c) {
        free(c->failure);
        free(c->detail);
        *c = (TxCrash){};
}

Transaction *transaction_free(Transaction *t) {
        if (!t)
                return NULL;
        free(t->id);
        free(t->manifest_target);
        free(t->manifest_id);
        for (size_t i = 0; i < t->n_payloads; i++)
                free(t->payloads[i].path);
        free(t->payloads);
        free(t->pre_patch_snapshot);
        free(t->patched_snapshot);
        free(t->result_snapshot);
        free(t->reason);
        tx_crash_done(&t->crash);
        free(t->transitions);
        free(t);
        return NULL;
}

static Transaction *transaction_alloc(void) {
        Transaction *t = calloc(1, sizeof(Transaction));

        if (!t)
                return NULL;
        t->state = TX_IDLE;
        t->failed_state = _TX_STATE_INVALID;
        t->report = TX_REPORT_PENDING;
        return t;
}

static int64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool id_is_valid(const char *id) {
        size_t n = strlen(id);

        if (n == 0 || n > 64)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

int transaction_new(const char *id, Transaction **ret) {
        _cleanup_(transaction_freep) Transaction *t = NULL;

        assert_return(id, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(id_is_valid(id), -EINVAL);

        t = transaction_alloc();
        if (!t)
                return -ENOMEM;
        t->id = strdup(id);
        t->transitions = calloc(1, sizeof(TxTransition));
        if (!t->id || !t->transitions)
                return -ENOMEM;
        t->transitions[0] = (TxTransition){TX_IDLE, now_usec()};
        t->n_transitions = 1;
        *ret = TAKE_PTR(t);
        return 0;
}

int transaction_set_failure(Transaction *t, TxState where, const char *reason_format, ...) {
        char *reason = NULL;
        va_list ap;
        int r;

        assert_return(t, -EINVAL);
        assert_return(reason_format, -EINVAL);

        if (t->failed_state >= 0 || t->reason)
                return 0; /* the first failure is the one to report */
        va_start(ap, reason_format);
        r = vasprintf(&reason, reason_format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (strlen(reason) > TRANSACTION_TEXT_MAX)
                reason[TRANSACTION_TEXT_MAX] = 0;
        t->failed_state = where;
        t->reason = reason;
        return 0;
}

const char *transaction_outcome(const Transaction *t) {
        switch (t->state) {
        case TX_COMMITTED:
                return "committed";
        case TX_ROLLED_BACK:
                return "rolled-back";
        case TX_ABORTED:
                return t->deferred ? "deferred" : "aborted";
        case TX_FAILED:
                return "failed";
        default:
                return NULL;
        }
}

int transaction_report_key(const Transaction *t, char **ret) {
        const char *o = transaction_outcome(t);

        assert_return(t && ret, -EINVAL);
        if (!o)
                return -EINVAL;
        return asprintf(ret, "%s-%s", t->id, o) < 0 ? -ENOMEM : 0;
}

/* ---- validation ------------------------------------------------------------------------ */

_printf_(2, 3) static int bad(char **ret_error, const char *format, ...) {
        va_list ap;
        int r;

        if (!ret_error)
                return -EPROTO;
        free(*ret_error);
        *ret_error = NULL;
        va_start(ap, format);
        r = vasprintf(ret_error, format, ap);
        va_end(ap);
        if (r < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EPROTO;
}

static bool hashes_present(const TufHashes *h) {
        return h->has_sha256 || h->has_sha512;
}

/* The states from which the manifest, P and Q are required. */
static bool state_needs_manifest(TxState s) {
        return s >= TX_DOWNLOADING && s != TX_ABORTED && s != TX_FAILED;
}
static bool state_needs_pre_patch(TxState s) {
        return s >= TX_SNAPSHOTTED && s != TX_ABORTED && s != TX_FAILED;
}
static bool state_needs_patched(TxState s) {
        return s == TX_TRIAL || s == TX_COMMITTING || s == TX_COMMITTED;
}

int transaction_validate(const Transaction *t, char **ret_error) {
        assert_return(t, -EINVAL);

        if (!t->id || !id_is_valid(t->id))
                return bad(ret_error, "id: not 1-64 lower-case hex digits");
        if (t->state < 0 || t->state >= _TX_STATE_MAX)
                return bad(ret_error, "state: unknown");
        if (t->n_transitions == 0 || t->transitions[t->n_transitions - 1].state != t->state)
                return bad(ret_error, "transitions: the last one is not the state '%s'",
                           tx_state_to_string(t->state));
        if (t->manifest_id) {
                if (!t->manifest_target || !tuf_target_path_is_valid(t->manifest_target))
                        return bad(ret_error, "manifest.target: not a valid target path");
                if (t->manifest_version < 1)
                        return bad(ret_error, "manifest.version: must be at least 1");
                if (!hashes_present(&t->manifest_hashes))
                        return bad(ret_error, "manifest: no sha256 or sha512");
                for (size_t i = 0; i < t->n_payloads; i++) {
                        if (!tuf_target_path_is_valid(t->payloads[i].path))
                                return bad(ret_error, "manifest.payloads[%zu].path: not a valid target path",
                                           i);
                        if (!hashes_present(&t->payloads[i].hashes))
                                return bad(ret_error, "manifest.payloads[%zu]: no sha256 or sha512", i);
                }
                if (t->attempts < 1 || t->attempts > 10 || t->boot_timeout_sec == 0 || t->stability_sec == 0)
                        return bad(ret_error,
                                   "trial: boot_timeout and stability must be > 0, attempts 1-10");
        } else if (t->n_payloads > 0 || t->manifest_target)
                return bad(ret_error, "manifest: payloads or a target without an id");
        if (state_needs_manifest(t->state) && !t->manifest_id)
                return bad(ret_error, "state '%s' needs the manifest", tx_state_to_string(t->state));
        if (state_needs_pre_patch(t->state) && !t->pre_patch_snapshot)
                return bad(ret_error, "state '%s' needs pre_patch_snapshot", tx_state_to_string(t->state));
        if (state_needs_patched(t->state) && !t->patched_snapshot)
                return bad(ret_error, "state '%s' needs patched_snapshot", tx_state_to_string(t->state));
        if ((t->state == TX_TRIAL || t->state == TX_COMMITTING || t->state == TX_COMMITTED) &&
            (t->attempt < 1 || t->attempt > t->attempts))
                return bad(ret_error, "trial.attempt: %u is not within 1..%u", t->attempt, t->attempts);
        if (t->attempt > t->attempts)
                return bad(ret_error, "trial.attempt: %u is more than attempts %u", t->attempt, t->attempts);
        if (t->failed_state >= 0 && tx_state_is_terminal(t->failed_state))
                return bad(ret_error, "failure.state: '%s' is terminal",
                           tx_state_to_string(t->failed_state));
        if ((t->failed_state >= 0) != (t->reason != NULL))
                return bad(ret_error, "failure: state and reason go together");
        if ((t->state == TX_ABORTED || t->state == TX_ROLLED_BACK || t->state == TX_FAILED) && !t->reason)
                return bad(ret_error, "state '%s' needs a failure", tx_state_to_string(t->state));
        if (t->state == TX_FAILED && !t->alert)
                return bad(ret_error, "state 'failed' needs the alert raised");
        if (t->has_crash && !t->crash.failure)
                return bad(ret_error, "failure.crash.failure: missing");
        if (t->deferred && t->state != TX_ABORTED)
                return bad(ret_error, "deferred: in state '%s' (only 'aborted' is deferred)",
                           tx_state_to_string(t->state));
        if (t->deferred && (t->cancelled || t->force))
                return bad(ret_error, "deferred: a %s window is not deferred",
                           t->force ? "forced" : "cancelled");
        if (!tx_state_is_terminal(t->state) && t->report != TX_REPORT_PENDING)
                return bad(ret_error, "report: '%s' before the end", tx_report_to_string(t->report));
        return 0;
}

/* ---- JSON out ---------------------------------------------------------------------------- */

/* Building with jansson: every constructor may fail (NULL) and json_object_set_new()
 * then fails too; one check of the result at the end is enough only if each
 * step is checked, so set() records the failure. */
typedef struct Builder {
        bool oom;
} Builder;

static void set(Builder *b, json_t *o, const char *key, json_t *v) {
        if (!o || !v || json_object_set_new(o, key, v) < 0) {
                if (v && !o)
                        json_decref(v);
                b->oom = true;
        }
}

static void append(Builder *b, json_t *a, json_t *v) {
        if (!a || !v || json_array_append_new(a, v) < 0) {
                if (v && !a)
                        json_decref(v);
                b->oom = true;
        }
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *hex_or_null(bool has, const uint8_t *p, size_t n) {
        _cleanup_free_ char *h = NULL;

        if (!has)
                return json_null();
        h = hexmem(p, n);
        return h ? json_string(h) : NULL;
}

static json_t *hex64(uint64_t v) {
        char buf[32];

        snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
        return json_string(buf);
}

static void set_hashes(Builder *b, json_t *o, const TufHashes *h) {
        set(b, o, "sha256", hex_or_null(h->has_sha256, h->sha256, sizeof(h->sha256)));
        set(b, o, "sha512", hex_or_null(h->has_sha512, h->sha512, sizeof(h->sha512)));
}

static json_t *crash_to_json(Builder *b, const TxCrash *c) {
        json_t *o = json_object(), *params = NULL;

        set(b, o, "failure", string_or_null(c->failure));
        set(b, o, "stop_code", c->hyperv ? hex64(c->stop_code) : json_null());
        if (c->hyperv) {
                params = json_array();
                for (size_t i = 0; i < ELEMENTSOF(c->params); i++)
                        append(b, params, hex64(c->params[i]));
        } else
                params = json_null();
        set(b, o, "params", params);
        set(b, o, "detail", string_or_null(c->detail));
        return o;
}

static json_t *transaction_to_json_object(const Transaction *t, Builder *b) {
        json_t *root = json_object(), *m, *payloads, *trial, *failure, *transitions;

        set(b, root, "version", json_integer(TRANSACTION_VERSION));
        set(b, root, "id", json_string(t->id));
        set(b, root, "state", json_string(tx_state_to_string(t->state)));
        set(b, root, "cancelled", json_boolean(t->cancelled));
        set(b, root, "deferred", json_boolean(t->deferred));
        set(b, root, "force", json_boolean(t->force));
        if (t->manifest_id) {
                m = json_object();
                set(b, m, "target", json_string(t->manifest_target));
                set(b, m, "id", json_string(t->manifest_id));
                set(b, m, "version", json_integer((json_int_t) t->manifest_version));
                set(b, m, "length", json_integer((json_int_t) t->manifest_length));
                set_hashes(b, m, &t->manifest_hashes);
                payloads = json_array();
                for (size_t i = 0; i < t->n_payloads; i++) {
                        json_t *p = json_object();

                        set(b, p, "path", json_string(t->payloads[i].path));
                        set(b, p, "length", json_integer((json_int_t) t->payloads[i].length));
                        set_hashes(b, p, &t->payloads[i].hashes);
                        append(b, payloads, p);
                }
                set(b, m, "payloads", payloads);
        } else
                m = json_null();
        set(b, root, "manifest", m);
        set(b, root, "windows_build",
            t->windows_build ? json_integer((json_int_t) t->windows_build) : json_null());
        trial = json_object();
        set(b, trial, "boot_timeout", json_integer(t->boot_timeout_sec));
        set(b, trial, "stability", json_integer(t->stability_sec));
        set(b, trial, "attempts", json_integer(t->attempts));
        set(b, trial, "attempt", json_integer(t->attempt));
        set(b, root, "trial", trial);
        set(b, root, "desktop_was_running", json_boolean(t->desktop_was_running));
        set(b, root, "pre_patch_snapshot", string_or_null(t->pre_patch_snapshot));
        set(b, root, "patched_snapshot", string_or_null(t->patched_snapshot));
        set(b, root, "result_snapshot", string_or_null(t->result_snapshot));
        if (t->failed_state >= 0) {
                failure = json_object();
                set(b, failure, "state", json_string(tx_state_to_string(t->failed_state)));
                set(b, failure, "reason", string_or_null(t->reason));
                set(b, failure, "crash", t->has_crash ? crash_to_json(b, &t->crash) : json_null());
        } else
                failure = json_null();
        set(b, root, "failure", failure);
        set(b, root, "alert", json_boolean(t->alert));
        set(b, root, "report", json_string(tx_report_to_string(t->report)));
        transitions = json_array();
        for (size_t i = 0; i < t->n_transitions; i++) {
                json_t *e = json_object();

                set(b, e, "state", json_string(tx_state_to_string(t->transitions[i].state)));
                set(b, e, "usec", json_integer(t->transitions[i].usec));
                append(b, transitions, e);
        }
        set(b, root, "transitions", transitions);
        return root;
}

int transaction_to_json(const Transaction *t, char **ret) {
        _cleanup_json_ json_t *root = NULL;
        Builder b = {};
        char *text;

        assert_return(t && ret, -EINVAL);

        root = transaction_to_json_object(t, &b);
        if (!root || b.oom)
                return -ENOMEM;
        text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- JSON in -------------------------------------------------------------------------- */

/* Exactly these members, no others. */
/* o has every member of keys, and no member outside keys and optional
 * (may be NULL). */
static int check_members_optional(const json_t *o, const char *what, const char *const *keys,
                                  const char *const *optional, char **ret_error) {
        const char *key;
        json_t *v;

        if (!json_is_object(o))
                return bad(ret_error, "%s: not an object", what);
        for (const char *const *k = keys; *k; k++)
                if (!json_object_get(o, *k))
                        return bad(ret_error, "%s: member '%s' missing", what, *k);
        json_object_foreach((json_t *) o, key, v) {
                bool known = false;

                for (const char *const *k = keys; *k && !known; k++)
                        known = streq(*k, key);
                for (const char *const *k = optional; k && *k && !known; k++)
                        known = streq(*k, key);
                if (!known)
                        return bad(ret_error, "%s: unexpected member '%s'", what, key);
        }
        return 0;
}

static int check_members(const json_t *o, const char *what, const char *const *keys, char **ret_error) {
        return check_members_optional(o, what, keys, NULL, ret_error);
}

static int get_text(const json_t *o, const char *what, const char *key, bool nullable, char **ret,
                    char **ret_error) {
        const json_t *v = json_object_get(o, key);
        char *s;

        if (nullable && json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > TRANSACTION_TEXT_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
                return bad(ret_error, "%s.%s: not a string of 1-%u bytes%s", what, key, TRANSACTION_TEXT_MAX,
                           nullable ? " or null" : "");
        s = strdup(json_string_value(v));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int get_uint(const json_t *o, const char *what, const char *key, uint64_t max, uint64_t *ret,
                    char **ret_error) {
        const json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t) json_integer_value(v) > max)
                return bad(ret_error, "%s.%s: not an integer within 0..%" PRIu64, what, key, max);
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int get_bool(const json_t *o, const char *what, const char *key, bool *ret, char **ret_error) {
        const json_t *v = json_object_get(o, key);

        if (!json_is_boolean(v))
                return bad(ret_error, "%s.%s: not a boolean", what, key);
        *ret = json_is_true(v);
        return 0;
}

static int get_hex(const json_t *o, const char *what, const char *key, uint8_t *buf, size_t size,
                   bool *ret_has, char **ret_error) {
        const json_t *v = json_object_get(o, key);

        if (json_is_null(v)) {
                *ret_has = false;
                return 0;
        }
        if (!json_is_string(v) || json_string_length(v) != size * 2 ||
            unhexmem_to(json_string_value(v), size * 2, buf, size) < 0)
                return bad(ret_error, "%s.%s: not %zu hex digits or null", what, key, size * 2);
        *ret_has = true;
        return 0;
}

static int get_hashes(const json_t *o, const char *what, TufHashes *ret, char **ret_error) {
        int r;

        *ret = (TufHashes){};
        r = get_hex(o, what, "sha256", ret->sha256, sizeof(ret->sha256), &ret->has_sha256, ret_error);
        if (r < 0)
                return r;
        return get_hex(o, what, "sha512", ret->sha512, sizeof(ret->sha512), &ret->has_sha512, ret_error);
}

static int get_state(const json_t *o, const char *what, const char *key, TxState *ret, char **ret_error) {
        const json_t *v = json_object_get(o, key);
        TxState s = json_is_string(v) ? tx_state_from_string(json_string_value(v)) : _TX_STATE_INVALID;

        if (s < 0)
                return bad(ret_error, "%s.%s: not a known state", what, key);
        *ret = s;
        return 0;
}

static int parse_hex64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!strneq(s, "0x", 2) || strlen(s) < 3 || strlen(s) > 18)
                return -EINVAL;
        errno = 0;
        v = strtoull(s + 2, &end, 16);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = (uint64_t) v;
        return 0;
}

static int crash_from_json(const json_t *o, TxCrash *ret, char **ret_error) {
        static const char *const keys[] = {"failure", "stop_code", "params", "detail", NULL};
        const json_t *stop, *params;
        int r;

        r = check_members(o, "failure.crash", keys, ret_error);
        if (r < 0)
                return r;
        r = get_text(o, "failure.crash", "failure", false, &ret->failure, ret_error);
        if (r < 0)
                return r;
        r = get_text(o, "failure.crash", "detail", true, &ret->detail, ret_error);
        if (r < 0)
                return r;
        stop = json_object_get(o, "stop_code");
        params = json_object_get(o, "params");
        if (json_is_null(stop) && json_is_null(params))
                return 0;
        if (!json_is_string(stop) || parse_hex64(json_string_value(stop), &ret->stop_code) < 0)
                return bad(ret_error, "failure.crash.stop_code: not a 0x hex number or null");
        if (!json_is_array(params) || json_array_size(params) != ELEMENTSOF(ret->params))
                return bad(ret_error, "failure.crash.params: not four hex numbers");
        for (size_t i = 0; i < ELEMENTSOF(ret->params); i++) {
                const json_t *p = json_array_get(params, i);

                if (!json_is_string(p) || parse_hex64(json_string_value(p), &ret->params[i]) < 0)
                        return bad(ret_error, "failure.crash.params[%zu]: not a 0x hex number", i);
        }
        ret->hyperv = true;
        return 0;
}

static int manifest_from_json(const json_t *m, Transaction *t, char **ret_error) {
        static const char *const keys[] = {"target", "id",     "version",  "length",
                                           "sha256", "sha512", "payloads", NULL};
        static const char *const payload_keys[] = {"path", "length", "sha256", "sha512", NULL};
        const json_t *payloads;
        int r;

        r = check_members(m, "manifest", keys, ret_error);
        if (r < 0)
                return r;
        if ((r = get_text(m, "manifest", "target", false, &t->manifest_target, ret_error)) < 0 ||
            (r = get_text(m, "manifest", "id", false, &t->manifest_id, ret_error)) < 0 ||
            (r = get_uint(m, "manifest", "version", INT64_MAX, &t->manifest_version, ret_error)) < 0 ||
            (r = get_uint(m, "manifest", "length", INT64_MAX, &t->manifest_length, ret_error)) < 0 ||
            (r = get_hashes(m, "manifest", &t->manifest_hashes, ret_error)) < 0)
                return r;
        payloads = json_object_get(m, "payloads");
        if (!json_is_array(payloads) || json_array_size(payloads) > TRANSACTION_PAYLOADS_MAX)
                return bad(ret_error, "manifest.payloads: not an array of at most %u",
                           TRANSACTION_PAYLOADS_MAX);
        if (json_array_size(payloads) > 0) {
                t->payloads = calloc(json_array_size(payloads), sizeof(TxPayload));
                if (!t->payloads)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < json_array_size(payloads); i++) {
                const json_t *p = json_array_get(payloads, i);
                TxPayload *x = &t->payloads[i];

                r = check_members(p, "manifest.payloads[]", payload_keys, ret_error);
                if (r < 0)
                        return r;
                t->n_payloads++;
                if ((r = get_text(p, "manifest.payloads[]", "path", false, &x->path, ret_error)) < 0 ||
                    (r = get_uint(p, "manifest.payloads[]", "length", INT64_MAX, &x->length, ret_error)) <
                            0 ||
                    (r = get_hashes(p, "manifest.payloads[]", &x->hashes, ret_error)) < 0)
                        return r;
        }
        return 0;
}

static int failure_from_json(const json_t *f, Transaction *t, char **ret_error) {
        static const char *const keys[] = {"state", "reason", "crash", NULL};
        const json_t *crash;
        int r;

        r = check_members(f, "failure", keys, ret_error);
        if (r < 0)
                return r;
        if ((r = get_state(f, "failure", "state", &t->failed_state, ret_error)) < 0 ||
            (r = get_text(f, "failure", "reason", false, &t->reason, ret_error)) < 0)
                return r;
        crash = json_object_get(f, "crash");
        if (json_is_null(crash))
                return 0;
        t->has_crash = true;
        return crash_from_json(crash, &t->crash, ret_error);
}

int transaction_from_json(const char *text, size_t size, Transaction **ret, char **ret_error) {
        static const char *const keys[] = {
                "version",
                "id",
                "state",
                "cancelled",
                "manifest",
                "windows_build",
                "trial",
                "desktop_was_running",
                "pre_patch_snapshot",
                "patched_snapshot",
                "result_snapshot",
                "failure",
                "alert",
                "report",
                "transitions",
                NULL,
        };
        /* Written since deferring exists; a file from before lacks them (false). */
        static const char *const optional_keys[] = {"deferred", "force", NULL};
        static const char *const trial_keys[] = {"boot_timeout", "stability", "attempts", "attempt", NULL};
        static const char *const transition_keys[] = {"state", "usec", NULL};
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_json_ json_t *root = NULL;
        const json_t *v, *trial, *list;
        json_error_t error;
        uint64_t u;
        int r;

        assert_return(text, -EINVAL);
        assert_return(ret, -EINVAL);

        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &error);
        if (!root)
                return bad(ret_error, "line %d: %s", error.line, error.text);
        r = check_members_optional(root, "transaction", keys, optional_keys, ret_error);
        if (r < 0)
                return r;
        r = get_uint(root, "transaction", "version", UINT64_MAX >> 1, &u, ret_error);
        if (r < 0)
                return r;
        if (u != TRANSACTION_VERSION)
                return bad(ret_error, "version %" PRIu64 " is not %d", u, TRANSACTION_VERSION);

        t = transaction_alloc();
        if (!t)
                return -ENOMEM;
        if ((r = get_text(root, "transaction", "id", false, &t->id, ret_error)) < 0 ||
            (r = get_state(root, "transaction", "state", &t->state, ret_error)) < 0 ||
            (r = get_bool(root, "transaction", "cancelled", &t->cancelled, ret_error)) < 0 ||
            (json_object_get(root, "deferred") &&
             (r = get_bool(root, "transaction", "deferred", &t->deferred, ret_error)) < 0) ||
            (json_object_get(root, "force") &&
             (r = get_bool(root, "transaction", "force", &t->force, ret_error)) < 0) ||
            (r = get_bool(root, "transaction", "desktop_was_running", &t->desktop_was_running, ret_error)) <
                    0 ||
            (r = get_bool(root, "transaction", "alert", &t->alert, ret_error)) < 0 ||
            (r = get_text(root, "transaction", "pre_patch_snapshot", true, &t->pre_patch_snapshot,
                          ret_error)) < 0 ||
            (r = get_text(root, "transaction", "patched_snapshot", true, &t->patched_snapshot, ret_error)) <
                    0 ||
            (r = get_text(root, "transaction", "result_snapshot", true, &t->result_snapshot, ret_error)) < 0)
                return r;

        v = json_object_get(root, "manifest");
        if (!json_is_null(v)) {
                r = manifest_from_json(v, t, ret_error);
                if (r < 0)
                        return r;
        }
        v = json_object_get(root, "windows_build");
        if (!json_is_null(v)) {
                r = get_uint(root, "transaction", "windows_build", UINT32_MAX, &t->windows_build, ret_error);
                if (r < 0)
                        return r;
                if (t->windows_build == 0)
                        return bad(ret_error, "windows_build: 0 (unknown is null)");
        }

        trial = json_object_get(root, "trial");
        r = check_members(trial, "trial", trial_keys, ret_error);
        if (r < 0)
                return r;
        if ((r = get_uint(trial, "trial", "boot_timeout", 7 * 24 * 3600, &u, ret_error)) < 0)
                return r;
        t->boot_timeout_sec = (unsigned) u;
        if ((r = get_uint(trial, "trial", "stability", 7 * 24 * 3600, &u, ret_error)) < 0)
                return r;
        t->stability_sec = (unsigned) u;
        if ((r = get_uint(trial, "trial", "attempts", 10, &u, ret_error)) < 0)
                return r;
        t->attempts = (unsigned) u;
        if ((r = get_uint(trial, "trial", "attempt", 10, &u, ret_error)) < 0)
                return r;
        t->attempt = (unsigned) u;

        v = json_object_get(root, "failure");
        if (!json_is_null(v)) {
                r = failure_from_json(v, t, ret_error);
                if (r < 0)
                        return r;
        }

        v = json_object_get(root, "report");
        if (!json_is_string(v) || (t->report = tx_report_from_string(json_string_value(v))) < 0)
                return bad(ret_error, "report: not pending, queued or none");

        list = json_object_get(root, "transitions");
        if (!json_is_array(list) || json_array_size(list) == 0 ||
            json_array_size(list) > TRANSACTION_TRANSITIONS_MAX)
                return bad(ret_error, "transitions: not an array of 1-%u", TRANSACTION_TRANSITIONS_MAX);
        t->transitions = calloc(json_array_size(list), sizeof(TxTransition));
        if (!t->transitions)
                return -ENOMEM;
        for (size_t i = 0; i < json_array_size(list); i++) {
                const json_t *e = json_array_get(list, i);

                r = check_members(e, "transitions[]", transition_keys, ret_error);
                if (r < 0)
                        return r;
                if ((r = get_state(e, "transitions[]", "state", &t->transitions[i].state, ret_error)) < 0 ||
                    (r = get_uint(e, "transitions[]", "usec", INT64_MAX, &u, ret_error)) < 0)
                        return r;
                t->transitions[i].usec = (int64_t) u;
                t->n_transitions++;
        }

        r = transaction_validate(t, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- the file ------------------------------------------------------------------------- */

int transaction_load(const char *state_dir, Transaction **ret, char **ret_error) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret, -EINVAL);

        path = path_join(state_dir, TRANSACTION_FILE);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, TRANSACTION_FILE_MAX, &text, &size);
        if (r == -EFBIG)
                return bad(ret_error, "larger than %u bytes", TRANSACTION_FILE_MAX);
        if (r < 0)
                return r;
        return transaction_from_json(text, size, ret, ret_error);
}

int transaction_save(const char *state_dir, const Transaction *t) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(t, -EINVAL);

        r = transaction_to_json(t, &text);
        if (r < 0)
                return r;
        path = path_join(state_dir, TRANSACTION_FILE);
        if (!path)
                return -ENOMEM;
        return write_file_atomic(path, text, strlen(text), 0600);
}

int transaction_remove(const char *state_dir) {
        _cleanup_free_ char *path = NULL;

        assert_return(state_dir, -EINVAL);

        path = path_join(state_dir, TRANSACTION_FILE);
        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0)
                return errno == ENOENT ? 0 : -errno;
        return fsync_directory(state_dir);
}

int transaction_enter(const char *state_dir, Transaction *t, TxState to, int64_t usec) {
        TxTransition *list = t->transitions, saved_last = {};
        size_t saved_n = t->n_transitions;
        TxState from = t->state;
        bool dropped = false;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(t, -EINVAL);

        if (!tx_transition_allowed(from, to))
                return -EINVAL;
        if (t->n_transitions >= TRANSACTION_TRANSITIONS_MAX) {
                /* Keep the first (when it began); drop the oldest after it. */
                saved_last = list[1];
                memmove(list + 1, list + 2, (t->n_transitions - 2) * sizeof(TxTransition));
                t->n_transitions--;
                dropped = true;
        } else {
                list = reallocarray(t->transitions, t->n_transitions + 1, sizeof(TxTransition));
                if (!list)
                        return -ENOMEM;
                t->transitions = list;
        }
        list[t->n_transitions++] = (TxTransition){to, usec};
        t->state = to;

        r = transaction_validate(t, NULL);
        if (r >= 0)
                r = transaction_save(state_dir, t);
        if (r < 0) {
                /* Not entered: as before, in memory. */
                t->state = from;
                t->n_transitions = saved_n;
                if (dropped) {
                        memmove(list + 2, list + 1, (saved_n - 2) * sizeof(TxTransition));
                        list[1] = saved_last;
                }
                return r;
        }
        return 0;
}

/* ---- the report ------------------------------------------------------------------------ */

int transaction_report_json(const Transaction *t, const char *device_id, char **ret) {
        _cleanup_json_ json_t *root = NULL;
        json_t *m, *trial, *timings;
        const char *outcome;
        Builder b = {};
        char *text;

        assert_return(t, -EINVAL);
        assert_return(device_id, -EINVAL);
        assert_return(ret, -EINVAL);

        outcome = transaction_outcome(t);
        if (!outcome)
                return -EINVAL; /* reports are made at the end only */

        root = json_object();
        set(&b, root, "type", json_string("oob-patch-report"));
        set(&b, root, "format", json_integer(1));
        set(&b, root, "device", json_string(device_id));
        set(&b, root, "transaction", json_string(t->id));
        set(&b, root, "oobd_version", json_string(OOB_VERSION));
        set(&b, root, "outcome", json_string(outcome));
        set(&b, root, "cancelled", json_boolean(t->cancelled));
        if (t->manifest_id) {
                m = json_object();
                set(&b, m, "id", json_string(t->manifest_id));
                set(&b, m, "version", json_integer((json_int_t) t->manifest_version));
        } else
                m = json_null();
        set(&b, root, "manifest", m);
        set(&b, root, "windows_build",
            t->windows_build ? json_integer((json_int_t) t->windows_build) : json_null());
        /* A deferral is no failure: its reason says how many were logged in. */
        set(&b, root, "failed_step",
            t->failed_state >= 0 && !t->deferred ? json_string(tx_state_to_string(t->failed_state))
                                                 : json_null());
        set(&b, root, "reason", string_or_null(t->reason));
        set(&b, root, "crash", t->has_crash ? crash_to_json(&b, &t->crash) : json_null());
        trial = json_object();
        set(&b, trial, "attempts", json_integer(t->attempts));
        set(&b, trial, "attempt", json_integer(t->attempt));
        set(&b, root, "trial", trial);
        set(&b, root, "pre_patch_snapshot", string_or_null(t->pre_patch_snapshot));
        set(&b, root, "patched_snapshot", string_or_null(t->patched_snapshot));
        set(&b, root, "result_snapshot", string_or_null(t->result_snapshot));
        set(&b, root, "alert", json_boolean(t->alert));
        set(&b, root, "started_usec", json_integer(t->transitions[0].usec));
        set(&b, root, "finished_usec", json_integer(t->transitions[t->n_transitions - 1].usec));

        /* Seconds spent in each state (summed when entered more than once). */
        timings = json_object();
        for (size_t i = 0; i + 1 < t->n_transitions; i++) {
                const char *name = tx_state_to_string(t->transitions[i].state);
                int64_t d = t->transitions[i + 1].usec - t->transitions[i].usec;
                json_t *old = timings ? json_object_get(timings, name) : NULL;
                double sum = (old ? json_real_value(old) : 0.0) + (d > 0 ? (double) d / 1e6 : 0.0);

                set(&b, timings, name, json_real((double) (int64_t) (sum * 1000.0) / 1000.0));
        }
        set(&b, root, "timings", timings);
        if (!root || b.oom)
                return -ENOMEM;

        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- installed.json ----------------------------------------------------------------------- */

/*
 * STATE_DIR/installed.json, version 1:
 *   { "version": 1,
 *     "manifests": [ { "id": "2026-05", "version": 1, "refused": false,
 *                      "transaction": "5f0c...", "usec": 1714532400000000 } ] }
 * One entry per id. "refused": the version was rolled back after its trial
 * (it is not offered again; a corrected patch comes with a higher version).
 */

void installed_done(Installed *i) {
        if (!i)
                return;
        for (size_t k = 0; k < i->n; k++) {
                free(i->entries[k].id);
                free(i->entries[k].transaction);
        }
        free(i->entries);
        *i = (Installed){};
}

int installed_load(const char *state_dir, Installed *ret, char **ret_error) {
        static const char *const keys[] = {"version", "manifests", NULL};
        static const char *const entry_keys[] = {"id", "version", "refused", "transaction", "usec", NULL};
        _cleanup_free_ char *path = NULL, *text = NULL;
        _cleanup_json_ json_t *root = NULL;
        _cleanup_(installed_done) Installed i = {};
        const json_t *list;
        json_error_t error;
        size_t size;
        uint64_t u;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret, -EINVAL);

        path = path_join(state_dir, INSTALLED_FILE);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, TRANSACTION_FILE_MAX, &text, &size);
        if (r == -ENOENT) {
                *ret = (Installed){};
                return 0;
        }
        if (r < 0)
                return r;
        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &error);
        if (!root)
                return bad(ret_error, "%s: line %d: %s", path, error.line, error.text);
        r = check_members(root, INSTALLED_FILE, keys, ret_error);
        if (r < 0)
                return r;
        r = get_uint(root, INSTALLED_FILE, "version", INT64_MAX, &u, ret_error);
        if (r < 0)
                return r;
        if (u != INSTALLED_VERSION)
                return bad(ret_error, "%s: version %" PRIu64 " is not %d", path, u, INSTALLED_VERSION);
        list = json_object_get(root, "manifests");
        if (!json_is_array(list) || json_array_size(list) > INSTALLED_MAX)
                return bad(ret_error, "%s: manifests: not an array of at most %u", path, INSTALLED_MAX);
        if (json_array_size(list) > 0) {
                i.entries = calloc(json_array_size(list), sizeof(InstalledEntry));
                if (!i.entries)
                        return -ENOMEM;
        }
        for (size_t k = 0; k < json_array_size(list); k++) {
                const json_t *e = json_array_get(list, k);
                InstalledEntry *x = &i.entries[k];

                r = check_members(e, "manifests[]", entry_keys, ret_error);
                if (r < 0)
                        return r;
                i.n++;
                if ((r = get_text(e, "manifests[]", "id", false, &x->id, ret_error)) < 0 ||
                    (r = get_uint(e, "manifests[]", "version", INT64_MAX, &x->version, ret_error)) < 0 ||
                    (r = get_bool(e, "manifests[]", "refused", &x->refused, ret_error)) < 0 ||
                    (r = get_text(e, "manifests[]", "transaction", false, &x->transaction, ret_error)) < 0 ||
                    (r = get_uint(e, "manifests[]", "usec", INT64_MAX, &u, ret_error)) < 0)
                        return r;
                x->usec = (int64_t) u;
                for (size_t j = 0; j < k; j++)
                        if (streq(i.entries[j].id, x->id))
                                return bad(ret_error, "%s: manifest '%s' listed twice", path, x->id);
        }
        *ret = i;
        i = (Installed){};
        return 0;
}

static InstalledEntry *installed_find(const Installed *i, const char *id) {
        for (size_t k = 0; k < i->n; k++)
                if (streq(i->entries[k].id, id))
                        return &i->entries[k];
        return NULL;
}

bool installed_settled(const Installed *i, const char *id, uint64_t version) {
        const InstalledEntry *e;

        if (!i)
                return false;
        e = installed_find(i, id);
        return e && e->version >= version;
}

static int installed_save(const char *state_dir, const Installed *i) {
        _cleanup_json_ json_t *root = json_object();
        _cleanup_free_ char *path = NULL, *text = NULL;
        json_t *list = json_array();
        Builder b = {};

        for (size_t k = 0; k < i->n; k++) {
                const InstalledEntry *x = &i->entries[k];
                json_t *e = json_object();

                set(&b, e, "id", json_string(x->id));
                set(&b, e, "version", json_integer((json_int_t) x->version));
                set(&b, e, "refused", json_boolean(x->refused));
                set(&b, e, "transaction", json_string(x->transaction));
                set(&b, e, "usec", json_integer(x->usec));
                append(&b, list, e);
        }
        set(&b, root, "version", json_integer(INSTALLED_VERSION));
        set(&b, root, "manifests", list);
        if (!root || b.oom)
                return -ENOMEM;
        text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        path = path_join(state_dir, INSTALLED_FILE);
        if (!text || !path)
                return -ENOMEM;
        return write_file_atomic(path, text, strlen(text), 0644);
}

int installed_record(const char *state_dir, Installed *i, const char *id, uint64_t version, bool refused,
                     const char *transaction, int64_t usec) {
        InstalledEntry *e, *grown, saved;
        _cleanup_free_ char *new_id = NULL, *new_tx = NULL;
        bool added = false;
        int r;

        assert_return(state_dir && i && id && transaction, -EINVAL);

        e = installed_find(i, id);
        if (e && (e->version > version || (e->version == version && e->refused == refused)))
                return 0; /* settled already, at this or a higher version */
        new_tx = strdup(transaction);
        if (!new_tx)
                return -ENOMEM;
        if (!e) {
                if (i->n >= INSTALLED_MAX)
                        return -E2BIG;
                new_id = strdup(id);
                if (!new_id)
                        return -ENOMEM;
                grown = reallocarray(i->entries, i->n + 1, sizeof(InstalledEntry));
                if (!grown)
                        return -ENOMEM;
                i->entries = grown;
                e = &i->entries[i->n++];
                *e = (InstalledEntry){.id = TAKE_PTR(new_id)};
                added = true;
        }
        saved = *e;
        e->version = version;
        e->refused = refused;
        e->transaction = new_tx;
        e->usec = usec;

        r = installed_save(state_dir, i);
        if (r < 0) {
                if (added) {
                        free(e->id);
                        i->n--;
                } else
                        *e = saved;
                return r; /* new_tx freed by its cleanup */
        }
        TAKE_PTR(new_tx);
        free(saved.transaction);
        return 0;
}

/* ---- the choice of the manifest ------------------------------------------------------------------ */

/*
 * The rule: a manifest applies when
 *   - it names no device groups, or one of them is one of the device's;
 *   - the Windows build is within its os-build bounds (each 0: unbounded;
 *     a build that could not be read, 0, satisfies no bound: a manifest
 *     with bounds is then not applied);
 *   - its id is not settled at its version (installed.json: committed at
 *     that version or higher, or refused after a rollback at that version
 *     or higher).
 * Of those the one with the smallest id (bytewise) is taken, and for one
 * id (a repository lists one per id, but be deterministic) the smallest
 * version. One manifest per window: the next one waits for the next
 * window, after this one's trial and commit. Publishers name patches so
 * that this order is the order to install them ("2026-05-..." before
 * "2026-06-...").
 */
int window_choose_manifest(PatchManifest *const *candidates, size_t n, char *const *device_groups,
                           uint64_t windows_build, const Installed *installed, const char **why) {
        ssize_t best = -1;

        assert_return(candidates || n == 0, -EINVAL);

        for (size_t k = 0; k < n; k++) {
                const PatchManifest *m = candidates[k];
                const char *no = NULL;

                if (m->device_groups && m->device_groups[0]) {
                        bool member = false;

                        for (char *const *g = m->device_groups; *g && !member; g++)
                                for (char *const *d = device_groups; d && *d && !member; d++)
                                        member = streq(*g, *d);
                        if (!member)
                                no = "not for this device's groups";
                }
                if (!no && (m->os_build_min > 0 || m->os_build_max > 0)) {
                        if (windows_build == 0)
                                no = "the Windows build is unknown";
                        else if ((m->os_build_min > 0 && windows_build < m->os_build_min) ||
                                 (m->os_build_max > 0 && windows_build > m->os_build_max))
                                no = "not for this Windows build";
                }
                if (!no && installed_settled(installed, m->id, m->version))
                        no = "installed or refused already";
                if (why)
                        why[k] = no;
                if (no)
                        continue;
                if (best < 0) {
                        best = (ssize_t) k;
                        continue;
                }
                int c = strcmp(m->id, candidates[best]->id);
                if (c < 0 || (c == 0 && m->version < candidates[best]->version))
                        best = (ssize_t) k;
        }
        return best < 0 ? -ENOENT : (int) best;
}

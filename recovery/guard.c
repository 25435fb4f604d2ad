/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guard: the crash-loop rule outside trials.
 *
 * Every crash (panic or watchdog event) is logged to the journal with its
 * STOP code and kept in history.json with what the guard did about it:
 *
 *   - fewer than max_crashes crashes on the current state within window_sec:
 *     the desktop is started again (destroyed first when the crash left it
 *     paused or hung): "restarted";
 *   - max_crashes within window_sec: the system disk is reverted to the last
 *     known-good snapshot and the desktop started on it: "reverted to ID";
 *   - the state it reverted to reaches max_crashes as well, the first of them
 *     within window_sec of the revert: the desktop is stopped and left as it
 *     is (the evidence), alert.json is written and an alert logged:
 *     "alert: CAUSE". While alert.json exists the guard records crashes and
 *     does nothing else, so it never loops; guard_alert_clear() re-arms it.
 *     A revert it cannot make (no catalog, no known-good snapshot, a tool
 *     failing) raises the alert too.
 *
 * Crashes count toward the rule only on the state they happened on (the
 * snapshot the active disk builds on, read from the catalog at each crash)
 * and only after the last revert or alert, so a manual revert or the
 * guard's own starts a fresh count. The count and the last revert are
 * rebuilt from history.json when the guard starts, so a restarted daemon
 * keeps counting.
 *
 * The user-data disk is never touched: the guard only reverts the catalog
 * of the system disk and points the domain's system disk at the new overlay.
 *
 * Events are taken in guard_feed() and acted upon from a defer source on
 * the loop: the event handler returns at once, and libvirt calls are not
 * made from inside libvirt's event dispatch. This is the daemon's policy
 * component: it logs its decisions itself (journal, stable MESSAGE_IDs).
 */

#include <inttypes.h>
#include <time.h>

#include "recovery.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define ALERT_FILE "alert.json"
#define ALERT_MAX_BYTES (1U * 1024U * 1024U)
#define PENDING_MAX 16
#define REVERTED_PREFIX "reverted to "
#define ALERT_PREFIX "alert"
#define IGNORED_ACTION "none: alert raised"

typedef enum GuardDecision {
        GUARD_NONE,
        GUARD_IGNORE, /* an alert is raised: recorded, not counted, nothing done */
        GUARD_RESTART,
        GUARD_REVERT,
        GUARD_ALERT,
} GuardDecision;

typedef struct Counted {
        uint64_t usec;
        char *snapshot;
} Counted;

struct Guard {
        sd_event *event;
        Desktop *desktop;
        GuardDesktopOps ops;
        char *state_dir;
        char *catalog_dir;
        unsigned max_crashes;
        uint64_t window_usec;

        /* crashes since the epoch (last revert or alert), oldest first */
        Counted *counted;
        size_t n_counted;
        uint64_t epoch_usec;
        char *reverted_to; /* snapshot of the last revert, or NULL */
        uint64_t reverted_usec;

        /* crashes taken by guard_feed(), not acted upon yet */
        CrashRecord pending[PENDING_MAX];
        size_t n_pending;
        sd_event_source *defer;
};

static const GuardDesktopOps default_ops = {
        .state = desktop_state,
        .is_running = desktop_is_running,
        .destroy = desktop_destroy,
        .set_system_disk = desktop_set_system_disk,
        .start = desktop_start,
};

static uint64_t now_realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}

/* A formatted string, or NULL without memory. */
_printf_(1, 2) static char *strdupf(const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

static const char *name_of(const Guard *g) {
        return g->desktop ? desktop_name(g->desktop) : "desktop";
}

static void counted_clear(Guard *g) {
        for (size_t i = 0; i < g->n_counted; i++)
                free(g->counted[i].snapshot);
        g->n_counted = 0;
}

static void new_epoch(Guard *g, uint64_t usec) {
        counted_clear(g);
        g->epoch_usec = usec;
}

/* Forget crashes before the epoch, outside the window ending at now, or on
 * another state than snapshot; then count this one. */
static int count_crash(Guard *g, uint64_t usec, const char *snapshot) {
        size_t k = 0;
        Counted *n;

        for (size_t i = 0; i < g->n_counted; i++) {
                Counted *c = &g->counted[i];

                if (c->usec > g->epoch_usec && c->usec + g->window_usec > usec &&
                    streq_ptr(c->snapshot, snapshot))
                        g->counted[k++] = *c;
                else
                        free(c->snapshot);
        }
        g->n_counted = k;

        n = reallocarray(g->counted, g->n_counted + 1, sizeof(*g->counted));
        if (!n)
                return -ENOMEM;
        g->counted = n;
        g->counted[g->n_counted] = (Counted){.usec = usec};
        if (snapshot) {
                g->counted[g->n_counted].snapshot = strdup(snapshot);
                if (!g->counted[g->n_counted].snapshot)
                        return -ENOMEM;
        }
        g->n_counted++;
        return 0;
}

/* ---- the catalog ------------------------------------------------------------ */

/* The snapshot the active disk builds on now, or NULL when unknown (no
 * catalog, or busy: an update holds it). */
static char *current_snapshot(const Guard *g) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        const char *parent;
        int r;

        if (!g->catalog_dir)
                return NULL;
        r = catalog_open(g->catalog_dir, &c, NULL);
        if (r < 0) {
                log_debug_errno(r, "Guard: cannot open the catalog %s: %m", g->catalog_dir);
                return NULL;
        }
        parent = catalog_active_parent(c);
        return parent ? strdup(parent) : NULL;
}

/* ---- the alert ----------------------------------------------------------------- */

static char *alert_path(const char *state_dir) {
        return path_join(state_dir, ALERT_FILE);
}

static bool alert_raised(const Guard *g) {
        _cleanup_free_ char *p = alert_path(g->state_dir);

        return p && access(p, F_OK) == 0;
}

int guard_alert_read(const char *state_dir, char **ret_text) {
        _cleanup_free_ char *p = NULL;
        size_t size;

        assert_return(state_dir, -EINVAL);
        assert_return(ret_text, -EINVAL);

        p = alert_path(state_dir);
        if (!p)
                return -ENOMEM;
        return read_full_file(p, ALERT_MAX_BYTES, ret_text, &size);
}

int guard_alert_clear(const char *state_dir) {
        _cleanup_free_ char *p = NULL;

        assert_return(state_dir, -EINVAL);

        p = alert_path(state_dir);
        if (!p)
                return -ENOMEM;
        if (unlink(p) < 0 && errno != ENOENT)
                return -errno;
        return fsync_directory(state_dir);
}

static void jw_crash(JsonWriter *w, const CrashRecord *c) {
        char buf[32];

        jw_begin_object(w);
        jw_kv_int(w, "usec", c->usec);
        jw_kv_string(w, "type", desktop_event_type_to_string(c->type));
        if (c->crash.hyperv) {
                snprintf(buf, sizeof(buf), "0x%" PRIx64, c->crash.stop_code);
                jw_kv_string(w, "stop_code", buf);
                jw_key(w, "params");
                jw_begin_array(w);
                for (size_t i = 0; i < ELEMENTSOF(c->crash.params); i++) {
                        snprintf(buf, sizeof(buf), "0x%" PRIx64, c->crash.params[i]);
                        jw_string(w, buf);
                }
                jw_end_array(w);
        } else {
                jw_kv_string(w, "stop_code", NULL);
                jw_key(w, "params");
                jw_null(w);
        }
        jw_kv_string(w, "reason", c->crash.reason);
        jw_kv_string(w, "snapshot", c->snapshot);
        jw_kv_string(w, "action", c->action);
        jw_end_object(w);
}

/* alert.json: what happened and the evidence (the crashes of this episode:
 * those since the window before the last revert, this one included, whose
 * action is not written yet). */
static int alert_write(Guard *g, const CrashRecord *current, const char *cause,
                       const char *last_known_good) {
        _cleanup_free_ char *path = alert_path(g->state_dir), *buf = NULL;
        CrashRecord *records = NULL;
        size_t n = 0, size = 0;
        uint64_t since;
        FILE *f;
        int r;

        if (!path)
                return -ENOMEM;
        since = g->reverted_to ? g->reverted_usec : (uint64_t) current->usec;
        since = since > g->window_usec ? since - g->window_usec : 0;
        r = crash_history_load(g->state_dir, &records, &n);
        if (r < 0)
                log_debug_errno(r, "Guard: no history for the alert: %m");

        f = open_memstream(&buf, &size);
        if (!f) {
                crash_history_free(records, n);
                return -ENOMEM;
        }
        {
                _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(f, true);

                if (w) {
                        jw_begin_object(w);
                        jw_kv_int(w, "version", 1);
                        jw_kv_int(w, "usec", (int64_t) now_realtime());
                        jw_kv_string(w, "desktop", name_of(g));
                        jw_kv_string(w, "cause", cause);
                        jw_kv_string(w, "snapshot", current->snapshot);
                        jw_kv_string(w, "last_known_good", last_known_good);
                        jw_kv_string(w, "reverted_to", g->reverted_to);
                        if (g->reverted_to)
                                jw_kv_int(w, "reverted_usec", (int64_t) g->reverted_usec);
                        else
                                jw_kv_string(w, "reverted_usec", NULL);
                        jw_kv_string(w, "catalog", g->catalog_dir);
                        jw_kv_uint(w, "max_crashes", g->max_crashes);
                        jw_kv_uint(w, "window_sec", g->window_usec / USEC_PER_SEC);
                        jw_key(w, "crashes");
                        jw_begin_array(w);
                        for (size_t i = 0; i < n; i++)
                                if ((uint64_t) records[i].usec >= since)
                                        jw_crash(w, &records[i]);
                        jw_crash(w, current);
                        jw_end_array(w);
                        jw_end_object(w);
                }
                r = w ? 0 : -ENOMEM;
        }
        crash_history_free(records, n);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        r = mkdir_p(g->state_dir, 0755);
        if (r < 0)
                return r;
        return write_file_atomic(path, buf, size, 0644);
}

/* ---- the desktop steps ---------------------------------------------------- */

/* Make sure the desktop is off (no QEMU holds its disks): destroy it unless
 * it is. "Crashed" may be either: kept paused after a panic, or already
 * powered off by on_crash destroy. */
static int ensure_off(Guard *g) {
        bool running;
        int r;

        r = g->ops.is_running(g->desktop, &running);
        if (r < 0)
                return r;
        if (!running)
                return 0;
        r = g->ops.destroy(g->desktop);
        if (r < 0) {
                /* libvirt's own on_crash may have stopped it meanwhile */
                int k = g->ops.is_running(g->desktop, &running);

                if (k < 0 || running)
                        return r;
        }
        return 0;
}

static int do_restart(Guard *g, const CrashRecord *c, char **ret_action) {
        DesktopState s;
        int r;

        r = g->ops.state(g->desktop, &s);
        if (r < 0)
                return r;
        /* After a panic a running desktop was restarted by the hypervisor
         * (on_crash restart); after a watchdog it is hung: reset it. */
        if (c->type == DESKTOP_EVENT_CRASHED && s == DESKTOP_RUNNING) {
                *ret_action = strdup("none");
                return *ret_action ? 0 : -ENOMEM;
        }
        r = ensure_off(g);
        if (r < 0)
                return r;
        r = g->ops.start(g->desktop);
        if (r < 0)
                return r;
        log_info("Guard: started %s again after the crash.", name_of(g));
        *ret_action = strdup("restarted");
        return *ret_action ? 0 : -ENOMEM;
}

typedef enum RevertStep {
        REVERT_STOP,
        REVERT_OPEN,
        REVERT_NO_KNOWN_GOOD,
        REVERT_REVERT,
        REVERT_SET_DISK,
        REVERT_START,
} RevertStep;

static const char *const revert_step_text[] = {
        [REVERT_STOP] = "stopping the desktop",
        [REVERT_OPEN] = "opening the snapshot catalog",
        [REVERT_NO_KNOWN_GOOD] = "no known-good snapshot to revert to",
        [REVERT_REVERT] = "reverting the system disk",
        [REVERT_SET_DISK] = "pointing the desktop at the reverted disk",
        [REVERT_START] = "starting the desktop on the reverted disk",
};

/* Revert to the last known-good snapshot and start. On failure *ret_step
 * says where; the desktop is then off (or was never stopped). */
static int do_revert(Guard *g, char **ret_id, char **ret_good, RevertStep *ret_step) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *id = NULL;
        const Snapshot *good;
        bool running;
        int r;

        *ret_step = REVERT_STOP;
        r = ensure_off(g);
        if (r < 0)
                return r;

        *ret_step = REVERT_OPEN;
        if (!g->catalog_dir)
                return -ENOENT;
        r = catalog_open(g->catalog_dir, &c, NULL);
        if (r < 0)
                return r;
        good = catalog_last_known_good(c);
        if (!good) {
                *ret_step = REVERT_NO_KNOWN_GOOD;
                return -ENOENT;
        }
        id = strdup(good->id);
        if (!id)
                return -ENOMEM;
        *ret_good = strdup(id);

        *ret_step = REVERT_REVERT;
        r = g->ops.is_running(g->desktop, &running);
        if (r < 0)
                return r;
        r = catalog_revert(c, id, running);
        if (r < 0)
                return r;
        *ret_step = REVERT_SET_DISK;
        r = g->ops.set_system_disk(g->desktop, catalog_active(c));
        if (r < 0)
                return r;
        /* Let go of the catalog's lock before the boot: others may read it. */
        c = catalog_free(c);

        *ret_step = REVERT_START;
        r = g->ops.start(g->desktop);
        if (r < 0)
                return r;
        *ret_id = TAKE_PTR(id);
        return 0;
}

static int raise_alert(Guard *g, const CrashRecord *c, const char *cause, const char *good,
                       char **ret_action) {
        int r;

        r = ensure_off(g);
        if (r < 0)
                log_warning_errno(r, "Guard: could not stop %s for the alert: %m", name_of(g));
        r = alert_write(g, c, cause, good);
        if (r < 0)
                log_error_errno(r, "Guard: could not write %s/" ALERT_FILE ": %m", g->state_dir);
        log_struct_id(LOG_LEVEL_ALERT, OOB_MESSAGE_GUARD_ALERT,
                      "Crash loop on %s not fixed: %s. The desktop is left off and its disks as they are "
                      "(snapshot %s); helpdesk attention needed (%s/" ALERT_FILE ").",
                      name_of(g), cause, c->snapshot ?: "unknown", g->state_dir);
        new_epoch(g, now_realtime());
        *ret_action = strdupf(ALERT_PREFIX ": %s", cause);
        return *ret_action ? 0 : -ENOMEM;
}

/* ---- the rule ------------------------------------------------------------------- */

static void log_crash(const Guard *g, const CrashRecord *c, unsigned count) {
        char what[160];

        if (c->type == DESKTOP_EVENT_WATCHDOG)
                snprintf(what, sizeof(what), "hung (the watchdog fired)");
        else if (c->crash.hyperv)
                snprintf(what, sizeof(what),
                         "crashed: STOP code 0x%08" PRIx64 " (0x%" PRIx64 ", 0x%" PRIx64 ", 0x%" PRIx64
                         ", 0x%" PRIx64 ")",
                         c->crash.stop_code, c->crash.params[0], c->crash.params[1], c->crash.params[2],
                         c->crash.params[3]);
        else
                snprintf(what, sizeof(what), "crashed: STOP code unknown (%s)", c->crash.reason ?: "panic");
        log_struct_id(LOG_LEVEL_ERR, OOB_MESSAGE_DESKTOP_CRASHED,
                      "Desktop %s %s; snapshot %s, crash %u of %u allowed within %" PRIu64 " s.", name_of(g),
                      what, c->snapshot ?: "unknown", count, g->max_crashes, g->window_usec / USEC_PER_SEC);
}

static GuardDecision decide(Guard *g, const CrashRecord *c) {
        int r;

        r = count_crash(g, (uint64_t) c->usec, c->snapshot);
        if (r < 0)
                log_warning_errno(r, "Guard: could not count the crash: %m");
        log_crash(g, c, (unsigned) g->n_counted);

        if (g->n_counted < g->max_crashes)
                return GUARD_RESTART;
        /* The state we reverted to loops right away as well: reverting to it
         * again would loop. */
        if (g->reverted_to && c->snapshot && streq(g->reverted_to, c->snapshot) &&
            g->counted[0].usec <= g->reverted_usec + g->window_usec)
                return GUARD_ALERT;
        return GUARD_REVERT;
}

static void act(Guard *g, CrashRecord *c, GuardDecision decision) {
        _cleanup_free_ char *action = NULL, *id = NULL, *good = NULL, *cause = NULL;
        RevertStep step;
        int r = 0;

        switch (decision) {
        case GUARD_NONE:
                action = strdup("none");
                break;
        case GUARD_IGNORE:
                action = strdup(IGNORED_ACTION);
                break;
        case GUARD_RESTART:
                r = do_restart(g, c, &action);
                if (r < 0) {
                        log_warning_errno(r, "Guard: could not start %s again: %m", name_of(g));
                        action = strdupf("failed: restart: %s", strerror(-r));
                }
                break;
        case GUARD_REVERT:
                r = do_revert(g, &id, &good, &step);
                if (r >= 0) {
                        log_struct_id(LOG_LEVEL_WARNING, OOB_MESSAGE_GUARD_REVERTED,
                                      "Crash loop on %s (%u crashes within %" PRIu64
                                      " s): reverted the system disk to known-good snapshot %s and "
                                      "started it again; the user-data disk is untouched.",
                                      name_of(g), g->max_crashes, g->window_usec / USEC_PER_SEC, id);
                        free(g->reverted_to);
                        g->reverted_to = strdup(id);
                        g->reverted_usec = now_realtime();
                        new_epoch(g, g->reverted_usec);
                        action = strdupf(REVERTED_PREFIX "%s", id);
                        break;
                }
                if (step == REVERT_NO_KNOWN_GOOD)
                        cause = strdup(revert_step_text[step]);
                else
                        cause = strdupf("%s failed: %s", revert_step_text[step], strerror(-r));
                r = raise_alert(g, c, cause ?: "revert failed", good, &action);
                break;
        case GUARD_ALERT:
                cause = strdupf("known-good snapshot %s crash-loops too (%u crashes within %" PRIu64 " s)",
                                g->reverted_to, g->max_crashes, g->window_usec / USEC_PER_SEC);
                r = raise_alert(g, c, cause ?: "known-good snapshot crash-loops too", g->reverted_to,
                                &action);
                break;
        }

        free(c->action);
        c->action = TAKE_PTR(action);
        r = crash_history_append(g->state_dir, c);
        if (r < 0)
                log_warning_errno(r, "Guard: could not record the crash in %s: %m", g->state_dir);
}

static int on_defer(sd_event_source *s, void *userdata) {
        Guard *g = userdata;
        bool superseded = false;

        for (size_t i = 0; i < g->n_pending; i++) {
                CrashRecord *c = &g->pending[i];
                GuardDecision d;

                if (alert_raised(g)) {
                        log_crash(g, c, 0);
                        act(g, c, GUARD_IGNORE);
                } else if (superseded) {
                        /* Came in before a revert or an alert: not the state we have now. */
                        log_crash(g, c, 0);
                        act(g, c, GUARD_NONE);
                } else {
                        d = decide(g, c);
                        /* Another crash follows: one restart for both, with the later one. */
                        if (d == GUARD_RESTART && i + 1 < g->n_pending)
                                d = GUARD_NONE;
                        act(g, c, d);
                        superseded = d == GUARD_REVERT || d == GUARD_ALERT;
                }
                crash_record_done(c);
        }
        g->n_pending = 0;
        return 0;
}

void guard_feed(Guard *g, const DesktopEvent *ev) {
        CrashRecord *c;

        if (!g || !ev)
                return;
        if (ev->type != DESKTOP_EVENT_CRASHED && ev->type != DESKTOP_EVENT_WATCHDOG)
                return;
        if (g->n_pending >= PENDING_MAX) {
                log_warning("Guard: too many crashes waiting for action; dropping one from %s.", name_of(g));
                return;
        }

        c = &g->pending[g->n_pending];
        *c = (CrashRecord){
                .usec = (int64_t) ev->usec,
                .type = ev->type,
        };
        if (ev->type == DESKTOP_EVENT_CRASHED) {
                c->crash = ev->crash;
                c->crash.reason = ev->crash.reason ? strdup(ev->crash.reason) : NULL;
        }
        c->snapshot = current_snapshot(g);
        g->n_pending++;
        if (sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT) < 0)
                log_warning("Guard: could not schedule the action for %s.", name_of(g));
}

/* ---- setup -------------------------------------------------------------------------- */

/* Where the count stood: the last revert and the crashes since the epoch,
 * from the history. */
static int load_state(Guard *g) {
        CrashRecord *records = NULL;
        uint64_t now = now_realtime();
        size_t n = 0;
        int r;

        r = crash_history_load(g->state_dir, &records, &n);
        if (r < 0) {
                log_debug_errno(r, "Guard: history unreadable, counting from zero: %m");
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                const char *a = records[i].action;

                if (a && strneq(a, REVERTED_PREFIX, STRLEN(REVERTED_PREFIX))) {
                        free(g->reverted_to);
                        g->reverted_to = strdup(a + STRLEN(REVERTED_PREFIX));
                        g->reverted_usec = (uint64_t) records[i].usec;
                        new_epoch(g, g->reverted_usec);
                } else if (a && strneq(a, ALERT_PREFIX, STRLEN(ALERT_PREFIX)))
                        new_epoch(g, (uint64_t) records[i].usec);
                else if (a && streq(a, IGNORED_ACTION))
                        continue; /* while the alert stood: not part of any count */
                else if ((uint64_t) records[i].usec > g->epoch_usec &&
                         (uint64_t) records[i].usec + g->window_usec > now) {
                        r = count_crash(g, (uint64_t) records[i].usec, records[i].snapshot);
                        if (r < 0)
                                break;
                }
        }
        crash_history_free(records, n);
        return r < 0 ? r : 0;
}

int guard_new(sd_event *e, Desktop *d, const GuardOptions *o, Guard **ret) {
        _cleanup_(guard_freep) Guard *g = NULL;
        int r;

        assert_return(e, -EINVAL);
        assert_return(o, -EINVAL);
        assert_return(o->state_dir, -EINVAL);
        assert_return(ret, -EINVAL);

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(e);
        g->desktop = d;
        g->ops = default_ops;
        g->state_dir = strdup(o->state_dir);
        g->catalog_dir = o->catalog_dir ? strdup(o->catalog_dir) : NULL;
        if (!g->state_dir || (o->catalog_dir && !g->catalog_dir))
                return -ENOMEM;
        g->max_crashes = o->max_crashes > 0 ? o->max_crashes : 3;
        g->window_usec = (o->window_sec > 0 ? o->window_sec : 600) * USEC_PER_SEC;

        r = sd_event_add_defer(e, &g->defer, on_defer, g);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(g->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = load_state(g);
        if (r < 0)
                return r;
        if (alert_raised(g))
                log_notice("Guard: an alert is raised for %s (%s/" ALERT_FILE "); crashes are recorded, "
                           "nothing is done until it is cleared.",
                           name_of(g), g->state_dir);

        *ret = TAKE_PTR(g);
        return 0;
}

void guard_set_desktop_ops(Guard *g, const GuardDesktopOps *ops) {
        if (!g)
                return;
        g->ops = ops ? *ops : default_ops;
}

Guard *guard_free(Guard *g) {
        if (!g)
                return NULL;
        sd_event_source_disable_unref(g->defer);
        sd_event_unref(g->event);
        for (size_t i = 0; i < g->n_pending; i++)
                crash_record_done(&g->pending[i]);
        counted_clear(g);
        free(g->counted);
        free(g->reverted_to);
        free(g->state_dir);
        free(g->catalog_dir);
        free(g);
        return NULL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guard's crash-loop rule, fed desktop events on a real sd-event loop,
 * reverting a real snapshot catalog on qcow2 images (qemu-img); the desktop
 * steps (state, destroy, set disk, start) go to a recording stand-in here:
 * against libvirtd they run in tests/integration/test-desktop-e2e.sh.
 * Also the crash history file (history.c): format, cap, bad files.
 */

#include <time.h>

#include "recovery.h"
#include "hv/helpers-disk.h"

#define SEC 1000000ULL

static uint64_t now_real(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- the desktop, recorded ------------------------------------------------------ */

static struct {
        DesktopState state;
        bool active;      /* a QEMU holds the disks */
        char calls[4096]; /* "state destroy disk start ..." */
        char disk[PATH_MAX];
        int start_error;
        unsigned starts;
} fake;

static void called(const char *what) {
        if (fake.calls[0])
                strncat(fake.calls, " ", sizeof(fake.calls) - strlen(fake.calls) - 1);
        strncat(fake.calls, what, sizeof(fake.calls) - strlen(fake.calls) - 1);
}

static int fake_state(Desktop *d, DesktopState *ret) {
        ck_assert_ptr_null(d);
        *ret = fake.state;
        return 0;
}

static int fake_is_running(Desktop *d, bool *ret) {
        ck_assert_ptr_null(d);
        *ret = fake.active;
        return 0;
}

static int fake_destroy(Desktop *d) {
        called("destroy");
        fake.state = DESKTOP_OFF;
        fake.active = false;
        return 0;
}

static int fake_set_system_disk(Desktop *d, const char *path) {
        ck_assert(!fake.active);
        called("disk");
        snprintf(fake.disk, sizeof(fake.disk), "%s", path);
        return 0;
}

static int fake_start(Desktop *d) {
        called("start");
        ck_assert(!fake.active);
        if (fake.start_error < 0)
                return fake.start_error;
        fake.state = DESKTOP_RUNNING;
        fake.active = true;
        fake.starts++;
        return 0;
}

static const GuardDesktopOps fake_ops = {
        .state = fake_state,
        .is_running = fake_is_running,
        .destroy = fake_destroy,
        .set_system_disk = fake_set_system_disk,
        .start = fake_start,
};

/* ---- fixture: a catalog base(1) <- known-good(2) <- manual "bad" (3) <- active -- */

static sd_event *event;
static uint64_t clock_usec; /* the events' time, advanced per crash */

static const char *state_dir(void) {
        return tmp_path("state");
}

static const char *catalog_dir(void) {
        return tmp_path("system");
}

static void make_catalog(bool with_known_good) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        char *id = NULL;

        SH_OK("qemu-img create -q -f qcow2 '%s' 1M", tmp_path("base.qcow2"));
        ck_assert_int_eq(catalog_create(catalog_dir(), tmp_path("base.qcow2"), &c), 0);
        ck_assert_int_eq(catalog_snapshot(c, with_known_good ? SNAPSHOT_KNOWN_GOOD : SNAPSHOT_MANUAL, "good",
                                          NULL, false, &id),
                         0);
        ck_assert_str_eq(id, "2");
        free(id);
        ck_assert_int_eq(catalog_snapshot(c, SNAPSHOT_MANUAL, "bad driver", NULL, false, &id), 0);
        ck_assert_str_eq(id, "3");
        free(id);
        ck_assert_str_eq(catalog_active_parent(c), "3");
}

static void setup(void) {
        disk_setup();
        memset(&fake, 0, sizeof(fake));
        fake.state = DESKTOP_RUNNING;
        fake.active = true;
        ck_assert_int_ge(sd_event_new(&event), 0);
        clock_usec = now_real();
        make_catalog(true);
}

static void teardown(void) {
        event = sd_event_unref(event);
        disk_teardown();
}

static Guard *guard(unsigned max_crashes, unsigned window_sec) {
        GuardOptions o = {
                .state_dir = state_dir(),
                .catalog_dir = catalog_dir(),
                .max_crashes = max_crashes,
                .window_sec = window_sec,
        };
        Guard *g = NULL;

        ck_assert_int_eq(guard_new(event, NULL, &o, &g), 0);
        guard_set_desktop_ops(g, &fake_ops);
        return g;
}

static void run_loop(void) {
        for (unsigned i = 0; i < 5; i++)
                ck_assert_int_ge(sd_event_run(event, 0), 0);
}

/* A crash event, gap_sec after the previous one; the desktop left "shut off
 * (crashed)" by on_crash destroy, as the desktop domain does. */
static void crash(Guard *g, DesktopEventType type, uint64_t stop_code, unsigned gap_sec) {
        DesktopEvent ev = {
                .type = type,
                .usec = (clock_usec += gap_sec * SEC),
        };

        if (type == DESKTOP_EVENT_CRASHED) {
                ev.crash = (CrashInfo){
                        .hyperv = stop_code != 0, .stop_code = stop_code, .params = {1, 2, 3, 4}};
                ev.crash.reason = strdup(stop_code ? "hyperv" : "pvpanic");
                fake.state = DESKTOP_CRASHED;
                fake.active = false;
        }
        fake.calls[0] = 0;
        guard_feed(g, &ev);
        free(ev.crash.reason); /* the guard keeps its own copy */
        /* nothing happens inside the event handler */
        ck_assert_str_eq(fake.calls, "");
        run_loop();
}

typedef struct History {
        CrashRecord *r;
        size_t n;
} History;

static History history(void) {
        History h = {};

        ck_assert_int_eq(crash_history_load(state_dir(), &h.r, &h.n), 0);
        return h;
}

static void history_free(History *h) {
        crash_history_free(h->r, h->n);
        *h = (History){};
}

static const char *last_action(void) {
        static char buf[512];
        History h = history();

        ck_assert_uint_gt(h.n, 0);
        snprintf(buf, sizeof(buf), "%s", h.r[h.n - 1].action);
        history_free(&h);
        return buf;
}

static const char *active_parent(void) {
        static char buf[64];
        Catalog *c = NULL;

        ck_assert_int_eq(catalog_open(catalog_dir(), &c, NULL), 0);
        snprintf(buf, sizeof(buf), "%s", catalog_active_parent(c));
        catalog_free(c);
        return buf;
}

static const char *active_path(void) {
        static char buf[PATH_MAX];
        Catalog *c = NULL;

        ck_assert_int_eq(catalog_open(catalog_dir(), &c, NULL), 0);
        snprintf(buf, sizeof(buf), "%s", catalog_active(c));
        catalog_free(c);
        return buf;
}

static bool alert_exists(void) {
        char *text = NULL;
        int r = guard_alert_read(state_dir(), &text);

        free(text);
        ck_assert(r == 0 || r == -ENOENT);
        return r == 0;
}

/* ---- the rule ---------------------------------------------------------------------- */

START_TEST(test_crash_below_threshold_restarts) {
        Guard *g = guard(3, 600);
        History h;

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(fake.calls, "start");
        crash(g, DESKTOP_EVENT_CRASHED, 0x50, 1);
        ck_assert_str_eq(fake.calls, "start");
        ck_assert_str_eq(active_parent(), "3");
        ck_assert(!alert_exists());

        h = history();
        ck_assert_uint_eq(h.n, 2);
        ck_assert_int_eq(h.r[0].type, DESKTOP_EVENT_CRASHED);
        ck_assert(h.r[0].crash.hyperv);
        ck_assert_uint_eq(h.r[0].crash.stop_code, 0x7e);
        ck_assert_uint_eq(h.r[0].crash.params[3], 4);
        ck_assert_str_eq(h.r[0].crash.reason, "hyperv");
        ck_assert_str_eq(h.r[0].snapshot, "3");
        ck_assert_str_eq(h.r[0].action, "restarted");
        ck_assert_uint_eq(h.r[1].crash.stop_code, 0x50);
        ck_assert_int_eq(h.r[1].usec, (int64_t) clock_usec);
        history_free(&h);
        guard_free(g);
}
END_TEST

START_TEST(test_watchdog_resets_hung_desktop) {
        Guard *g = guard(3, 600);
        History h;

        fake.state = DESKTOP_RUNNING; /* hung, but running */
        crash(g, DESKTOP_EVENT_WATCHDOG, 0, 1);
        ck_assert_str_eq(fake.calls, "destroy start");
        h = history();
        ck_assert_uint_eq(h.n, 1);
        ck_assert_int_eq(h.r[0].type, DESKTOP_EVENT_WATCHDOG);
        ck_assert(!h.r[0].crash.hyperv);
        ck_assert_ptr_null(h.r[0].crash.reason);
        ck_assert_str_eq(h.r[0].action, "restarted");
        history_free(&h);
        guard_free(g);
}
END_TEST

START_TEST(test_paused_after_panic_is_destroyed_first) {
        DesktopEvent ev = {.type = DESKTOP_EVENT_CRASHED, .usec = now_real()};
        Guard *g = guard(3, 600);

        fake.state = DESKTOP_CRASHED; /* kept paused after the panic */
        guard_feed(g, &ev);
        run_loop();
        ck_assert_str_eq(fake.calls, "destroy start");
        ck_assert_str_eq(last_action(), "restarted");
        guard_free(g);
}
END_TEST

START_TEST(test_running_after_panic_is_left_alone) {
        DesktopEvent ev = {.type = DESKTOP_EVENT_CRASHED, .usec = now_real()};
        Guard *g = guard(3, 600);

        fake.state = DESKTOP_RUNNING; /* on_crash restart: the hypervisor did it */
        guard_feed(g, &ev);
        run_loop();
        ck_assert_str_eq(fake.calls, "");
        ck_assert_str_eq(last_action(), "none");
        guard_free(g);
}
END_TEST

START_TEST(test_other_events_ignored) {
        static const DesktopEventType types[] = {DESKTOP_EVENT_STARTED, DESKTOP_EVENT_STOPPED,
                                                 DESKTOP_EVENT_REBOOTED, DESKTOP_EVENT_AGENT_CONNECTED,
                                                 DESKTOP_EVENT_AGENT_DISCONNECTED};
        Guard *g = guard(1, 600);
        History h;

        fake.state = DESKTOP_OFF;
        fake.active = false;
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                DesktopEvent ev = {.type = types[i], .usec = now_real()};

                guard_feed(g, &ev);
                run_loop();
        }
        ck_assert_str_eq(fake.calls, "");
        h = history();
        ck_assert_uint_eq(h.n, 0);
        history_free(&h);
        guard_free(g);
}
END_TEST

START_TEST(test_crash_loop_reverts_to_known_good) {
        Guard *g = guard(3, 600);
        char *alert = NULL;
        History h;

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 10);
        crash(g, DESKTOP_EVENT_WATCHDOG, 0, 10);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 10);
        /* off already (on_crash destroy): no destroy; the disk before the start */
        ck_assert_str_eq(fake.calls, "disk start");
        ck_assert_str_eq(active_parent(), "2");
        ck_assert_str_eq(fake.disk, active_path());
        ck_assert(fake.active);
        ck_assert_str_eq(last_action(), "reverted to 2");
        ck_assert_int_eq(guard_alert_read(state_dir(), &alert), -ENOENT);

        /* the reverted state boots fine and crashes once in a while: restarts */
        crash(g, DESKTOP_EVENT_CRASHED, 0xd1, 10);
        ck_assert_str_eq(fake.calls, "start");
        h = history();
        ck_assert_uint_eq(h.n, 4);
        ck_assert_str_eq(h.r[2].snapshot, "3");
        ck_assert_str_eq(h.r[3].snapshot, "2");
        ck_assert_str_eq(h.r[3].action, "restarted");
        history_free(&h);
        guard_free(g);
}
END_TEST

START_TEST(test_known_good_loops_too_raises_alert) {
        Guard *g = guard(2, 600);
        char *alert = NULL, *cause = NULL;
        int64_t usec = 0;
        unsigned starts;
        History h;

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "reverted to 2");
        ck_assert_str_eq(active_parent(), "2");

        crash(g, DESKTOP_EVENT_CRASHED, 0xef, 5);
        ck_assert_str_eq(last_action(), "restarted");
        crash(g, DESKTOP_EVENT_CRASHED, 0xef, 5);
        ck_assert_str_eq(fake.calls, "");
        ck_assert(!fake.active);

        /* the alert: desktop off, nothing reverted or started, evidence kept */
        ck_assert_str_eq(active_parent(), "2");
        h = history();
        ck_assert_uint_eq(h.n, 4);
        ck_assert_ptr_nonnull(strstr(h.r[3].action, "alert: known-good snapshot 2 crash-loops too"));
        history_free(&h);
        ck_assert_int_eq(guard_alert_read(state_dir(), &alert), 0);
        ck_assert_ptr_nonnull(strstr(alert, "\"cause\": \"known-good snapshot 2 crash-loops too"));
        ck_assert_ptr_nonnull(strstr(alert, "\"reverted_to\": \"2\""));
        ck_assert_ptr_nonnull(strstr(alert, "\"last_known_good\": \"2\""));
        /* every crash of the episode with its STOP code, the current one too */
        ck_assert_ptr_nonnull(strstr(alert, "\"stop_code\": \"0x7e\""));
        ck_assert_ptr_nonnull(strstr(alert, "\"stop_code\": \"0xef\""));
        ck_assert_ptr_nonnull(strstr(alert, "\"snapshot\": \"3\""));
        free(alert);
        ck_assert_int_eq(guard_alert_summary(state_dir(), &cause, &usec), 0);
        ck_assert_str_eq(cause, "known-good snapshot 2 crash-loops too (2 crashes within 600 s)");
        ck_assert_int_gt(usec, 0);
        free(cause);

        /* no loop: later crashes are recorded, nothing else */
        starts = fake.starts;
        crash(g, DESKTOP_EVENT_CRASHED, 0xef, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0xef, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0xef, 5);
        ck_assert_str_eq(fake.calls, "");
        ck_assert_uint_eq(fake.starts, starts);
        ck_assert_str_eq(last_action(), "none: alert raised");
        ck_assert_str_eq(active_parent(), "2");
        guard_free(g);
}
END_TEST

START_TEST(test_alert_stops_a_crashed_desktop) {
        Guard *g = guard(1, 600);

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "reverted to 2");
        fake.calls[0] = 0;
        /* kept paused after the panic: the alert destroys it */
        {
                DesktopEvent ev = {.type = DESKTOP_EVENT_CRASHED, .usec = (clock_usec += 5 * SEC)};

                fake.state = DESKTOP_CRASHED;
                fake.active = true;
                guard_feed(g, &ev);
                run_loop();
        }
        ck_assert_str_eq(fake.calls, "destroy");
        ck_assert(!fake.active);
        ck_assert(alert_exists());
        guard_free(g);
}
END_TEST

START_TEST(test_alert_clear_rearms) {
        Guard *g = guard(1, 600);

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert(alert_exists());
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "none: alert raised");

        ck_assert_int_eq(guard_alert_clear(state_dir()), 0);
        ck_assert_int_eq(guard_alert_clear(state_dir()), 0);
        ck_assert(!alert_exists());
        {
                char *cause = NULL;

                ck_assert_int_eq(guard_alert_summary(state_dir(), &cause, NULL), -ENOENT);
        }
        /* the state it reverted to crashes again right away: the count started
         * anew at the alert, so this is a first crash... with max 1, the rule:
         * the last revert was to 2 and 2 loops within the window: alert again */
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_ptr_nonnull(strstr(last_action(), "alert: known-good snapshot 2"));
        guard_free(g);
}
END_TEST

/* Crashes recorded while the alert stood do not count once it is cleared,
 * also for a guard started afresh from the history. */
START_TEST(test_crashes_under_alert_not_counted) {
        Guard *g = guard(2, 600);

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "reverted to 2");
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert(alert_exists());
        for (unsigned i = 0; i < 3; i++)
                crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "none: alert raised");
        g = guard_free(g);

        ck_assert_int_eq(guard_alert_clear(state_dir()), 0);
        g = guard(2, 600);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 5);
        ck_assert_str_eq(last_action(), "restarted");
        ck_assert_str_eq(fake.calls, "start");
        guard_free(g);
}
END_TEST

START_TEST(test_revert_long_ago_reverts_again) {
        Guard *g = guard(2, 60);

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "reverted to 2");
        /* the known-good state ran for longer than the window, then loops: a
         * new episode, reverting once more is allowed */
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 120);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "reverted to 2");
        ck_assert(!alert_exists());
        guard_free(g);
}
END_TEST

START_TEST(test_window) {
        Guard *g = guard(3, 60);
        History h;

        /* 3 crashes, but never 3 within 60 s */
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 40);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 40);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 40);
        h = history();
        ck_assert_uint_eq(h.n, 4);
        for (size_t i = 0; i < h.n; i++)
                ck_assert_str_eq(h.r[i].action, "restarted");
        history_free(&h);
        ck_assert_str_eq(active_parent(), "3");
        /* then 3 within 60 s */
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 10);
        ck_assert_str_eq(last_action(), "reverted to 2");
        guard_free(g);
}
END_TEST

START_TEST(test_count_survives_guard_restart) {
        Guard *g = guard(3, 600);

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        g = guard_free(g);

        g = guard(3, 600);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "reverted to 2");
        g = guard_free(g);

        /* and so does the revert: the reverted state looping is an alert */
        g = guard(3, 600);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        g = guard_free(g);
        g = guard(3, 600);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_ptr_nonnull(strstr(last_action(), "alert: "));
        guard_free(g);
}
END_TEST

START_TEST(test_manual_revert_starts_a_new_count) {
        Guard *g = guard(3, 600);
        Catalog *c = NULL;

        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        /* an admin reverts to the base by hand */
        ck_assert_int_eq(catalog_open(catalog_dir(), &c, NULL), 0);
        ck_assert_int_eq(catalog_revert(c, "1", false), 0);
        c = catalog_free(c);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "restarted");
        ck_assert_str_eq(active_parent(), "1");
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "reverted to 2");
        guard_free(g);
}
END_TEST

START_TEST(test_no_known_good_raises_alert) {
        Guard *g;

        SH_OK("rm -rf '%s' '%s'", catalog_dir(), tmp_path("base.qcow2"));
        make_catalog(false);
        g = guard(2, 600);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "alert: no known-good snapshot to revert to");
        ck_assert_str_eq(active_parent(), "3");
        ck_assert_str_eq(fake.calls, "");
        ck_assert(alert_exists());
        guard_free(g);
}
END_TEST

START_TEST(test_busy_catalog_raises_alert) {
        Catalog *c = NULL;
        Guard *g = guard(2, 600);

        /* an update holds the catalog: the state is unknown, counted as one */
        ck_assert_int_eq(catalog_open(catalog_dir(), &c, NULL), 0);
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(last_action(), "restarted");
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        c = catalog_free(c);
        /* a revert that cannot take the catalog is an alert, not a retry loop */
        ck_assert_str_eq(last_action(),
                         "alert: opening the snapshot catalog failed: Resource temporarily unavailable");
        ck_assert_str_eq(active_parent(), "3");
        ck_assert(alert_exists());
        guard_free(g);
}
END_TEST

START_TEST(test_failed_start_after_revert_raises_alert) {
        Guard *g = guard(1, 600);

        fake.start_error = -EIO;
        crash(g, DESKTOP_EVENT_CRASHED, 0x7e, 1);
        ck_assert_str_eq(fake.calls, "disk start");
        ck_assert_str_eq(active_parent(), "2");
        ck_assert_ptr_nonnull(
                strstr(last_action(), "alert: starting the desktop on the reverted disk failed"));
        ck_assert(alert_exists());
        guard_free(g);
}
END_TEST

START_TEST(test_two_crashes_before_the_action) {
        DesktopEvent ev[2] = {
                {.type = DESKTOP_EVENT_WATCHDOG, .usec = now_real()},
                {.type = DESKTOP_EVENT_CRASHED, .usec = now_real() + 1},
        };
        Guard *g = guard(3, 600);
        History h;

        fake.state = DESKTOP_OFF;
        fake.active = false;
        guard_feed(g, &ev[0]);
        guard_feed(g, &ev[1]);
        run_loop();
        /* one start for both */
        ck_assert_str_eq(fake.calls, "start");
        h = history();
        ck_assert_uint_eq(h.n, 2);
        ck_assert_str_eq(h.r[0].action, "none");
        ck_assert_str_eq(h.r[1].action, "restarted");
        history_free(&h);
        guard_free(g);
}
END_TEST

/* ---- the history file ---------------------------------------------------------------- */

static void history_setup(void) {
        disk_setup();
}

START_TEST(test_history_empty) {
        History h = {.n = 99};
        TrialVerdict v;
        char *text = NULL;

        ck_assert_int_eq(crash_history_load(state_dir(), &h.r, &h.n), 0);
        ck_assert_uint_eq(h.n, 0);
        ck_assert_ptr_null(h.r);
        ck_assert_int_eq(trial_verdict_load(state_dir(), &v, NULL), -ENOENT);
        ck_assert_int_eq(guard_alert_read(state_dir(), &text), -ENOENT);
}
END_TEST

/* A file written by hand against the documented format. */
START_TEST(test_history_golden) {
        static const char golden[] =
                "{\"version\": 1, \"crashes\": [\n"
                " {\"usec\": 1700000000123456, \"type\": \"crashed\", \"stop_code\": \"0x0000007E\",\n"
                "  \"params\": [\"0xffffffffc0000005\", \"0x0\", \"0x1\", \"0xFFFFF80312345678\"],\n"
                "  \"reason\": \"hyperv\", \"snapshot\": \"3\", \"action\": \"reverted to 2\"},\n"
                " {\"usec\": 1700000001000000, \"type\": \"watchdog\", \"stop_code\": null, \"params\": "
                "null,\n"
                "  \"reason\": null, \"snapshot\": null, \"action\": \"restarted\"}],\n"
                " \"last_trial\": {\"usec\": 5, \"result\": \"failed\", \"failure\": \"crash\",\n"
                "  \"stop_code\": null, \"params\": null, \"reason\": \"pvpanic\", \"boot_usec\": 0}}\n";
        History h;
        TrialVerdict v = {};
        int64_t usec = 0;

        ck_assert_int_eq(mkdir_p(state_dir(), 0755), 0);
        write_host_file(tmp_path("state/history.json"), golden, strlen(golden));
        h = history();
        ck_assert_uint_eq(h.n, 2);
        ck_assert_int_eq(h.r[0].usec, 1700000000123456LL);
        ck_assert_int_eq(h.r[0].type, DESKTOP_EVENT_CRASHED);
        ck_assert(h.r[0].crash.hyperv);
        ck_assert_uint_eq(h.r[0].crash.stop_code, 0x7e);
        ck_assert_uint_eq(h.r[0].crash.params[0], 0xffffffffc0000005ULL);
        ck_assert_uint_eq(h.r[0].crash.params[3], 0xfffff80312345678ULL);
        ck_assert_str_eq(h.r[0].crash.reason, "hyperv");
        ck_assert_str_eq(h.r[0].snapshot, "3");
        ck_assert_str_eq(h.r[0].action, "reverted to 2");
        ck_assert_int_eq(h.r[1].type, DESKTOP_EVENT_WATCHDOG);
        ck_assert(!h.r[1].crash.hyperv);
        ck_assert_ptr_null(h.r[1].snapshot);
        history_free(&h);

        ck_assert_int_eq(trial_verdict_load(state_dir(), &v, &usec), 0);
        ck_assert_int_eq(usec, 5);
        ck_assert_int_eq(v.result, TRIAL_FAILED);
        ck_assert_int_eq(v.failure, TRIAL_FAILURE_CRASH);
        ck_assert_str_eq(v.crash.reason, "pvpanic");
        trial_verdict_done(&v);
}
END_TEST

START_TEST(test_history_round_trip_and_cap) {
        CrashRecord rec = {
                .type = DESKTOP_EVENT_CRASHED,
                .crash = {.hyperv = true, .stop_code = 0xc000021a, .params = {UINT64_MAX, 0, 1, 2}},
                .snapshot = (char *) "7",
                .action = (char *) "restarted"};
        TrialVerdict v = {.result = TRIAL_PASSED, .boot_usec = 4200000}, w = {};
        History h;
        int64_t usec;

        for (int i = 0; i < CRASH_HISTORY_MAX + 5; i++) {
                rec.usec = 1000 + i;
                ck_assert_int_eq(crash_history_append(state_dir(), &rec), 0);
                if (i == 3)
                        ck_assert_int_eq(trial_verdict_save(state_dir(), &v, 77), 0);
        }
        h = history();
        ck_assert_uint_eq(h.n, CRASH_HISTORY_MAX);
        ck_assert_int_eq(h.r[0].usec, 1005); /* the oldest five dropped */
        ck_assert_int_eq(h.r[h.n - 1].usec, 1000 + CRASH_HISTORY_MAX + 4);
        ck_assert_uint_eq(h.r[0].crash.params[0], UINT64_MAX);
        ck_assert_uint_eq(h.r[0].crash.stop_code, 0xc000021a);
        ck_assert_str_eq(h.r[0].snapshot, "7");
        history_free(&h);
        /* the verdict stays next to the crashes */
        ck_assert_int_eq(trial_verdict_load(state_dir(), &w, &usec), 0);
        ck_assert_int_eq(usec, 77);
        ck_assert_int_eq(w.result, TRIAL_PASSED);
        ck_assert_uint_eq(w.boot_usec, 4200000);
        trial_verdict_done(&w);
        ck_assert_int_eq(sh("grep -q '\"stop_code\": \"0xc000021a\"' '%s'", tmp_path("state/history.json")),
                         0);
}
END_TEST

START_TEST(test_history_bad_files) {
        static const char *const bad[] = {
                "not json",
                "{\"version\": 2, \"crashes\": []}",
                "{\"version\": 1}",
                "{\"version\": 1, \"crashes\": [{\"usec\": 1, \"type\": \"started\"}]}",
                "{\"version\": 1, \"crashes\": [{\"usec\": -1, \"type\": \"crashed\"}]}",
                "{\"version\": 1, \"crashes\": [{\"usec\": 1, \"type\": \"crashed\", \"stop_code\": \"7e\","
                " \"params\": [\"0x0\", \"0x0\", \"0x0\", \"0x0\"]}]}",
                "{\"version\": 1, \"crashes\": [{\"usec\": 1, \"type\": \"crashed\", \"stop_code\": \"0x1\","
                " \"params\": [\"0x0\", \"0x0\", \"0x0\"]}]}",
                "{\"version\": 1, \"crashes\": [{\"usec\": 1, \"type\": \"crashed\", \"stop_code\": "
                "\"0x11112222333344445\","
                " \"params\": [\"0x0\", \"0x0\", \"0x0\", \"0x0\"]}]}",
                "{\"version\": 1, \"crashes\": [{\"usec\": 1, \"type\": \"crashed\", \"snapshot\": 3}]}",
                "{\"version\": 1, \"version\": 1, \"crashes\": []}",
        };
        CrashRecord rec = {.usec = 42, .type = DESKTOP_EVENT_WATCHDOG};
        History h = {};
        char *kept = NULL;
        size_t size;

        ck_assert_int_eq(mkdir_p(state_dir(), 0755), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_host_file(tmp_path("state/history.json"), bad[i], strlen(bad[i]));
                ck_assert_msg(crash_history_load(state_dir(), &h.r, &h.n) == -EPROTO, "accepted: %s",
                              bad[i]);
        }
        /* appending keeps the bad file as evidence and starts anew */
        ck_assert_int_eq(crash_history_append(state_dir(), &rec), 0);
        ck_assert_int_eq(read_full_file(tmp_path("state/history.json.bad"), 4096, &kept, &size), 0);
        ck_assert_str_eq(kept, bad[ELEMENTSOF(bad) - 1]);
        free(kept);
        h = history();
        ck_assert_uint_eq(h.n, 1);
        ck_assert_int_eq(h.r[0].usec, 42);
        history_free(&h);
        /* a record we would not write is refused */
        rec.type = DESKTOP_EVENT_STARTED;
        ck_assert_int_eq(crash_history_append(state_dir(), &rec), -EINVAL);
}
END_TEST

static Suite *guard_suite(void) {
        Suite *s = suite_create("guard");
        TCase *tc = tcase_create("rule");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_crash_below_threshold_restarts);
        tcase_add_test(tc, test_watchdog_resets_hung_desktop);
        tcase_add_test(tc, test_paused_after_panic_is_destroyed_first);
        tcase_add_test(tc, test_running_after_panic_is_left_alone);
        tcase_add_test(tc, test_other_events_ignored);
        tcase_add_test(tc, test_crash_loop_reverts_to_known_good);
        tcase_add_test(tc, test_known_good_loops_too_raises_alert);
        tcase_add_test(tc, test_alert_stops_a_crashed_desktop);
        tcase_add_test(tc, test_alert_clear_rearms);
        tcase_add_test(tc, test_crashes_under_alert_not_counted);
        tcase_add_test(tc, test_revert_long_ago_reverts_again);
        tcase_add_test(tc, test_window);
        tcase_add_test(tc, test_count_survives_guard_restart);
        tcase_add_test(tc, test_manual_revert_starts_a_new_count);
        tcase_add_test(tc, test_no_known_good_raises_alert);
        tcase_add_test(tc, test_busy_catalog_raises_alert);
        tcase_add_test(tc, test_failed_start_after_revert_raises_alert);
        tcase_add_test(tc, test_two_crashes_before_the_action);
        suite_add_tcase(s, tc);

        tc = tcase_create("history");
        tcase_add_checked_fixture(tc, history_setup, disk_teardown);
        tcase_add_test(tc, test_history_empty);
        tcase_add_test(tc, test_history_golden);
        tcase_add_test(tc, test_history_round_trip_and_cap);
        tcase_add_test(tc, test_history_bad_files);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(guard_suite());
        int failed;

        /* the guard logs every crash and action; keep the alerts only */
        log_set_max_level(LOG_LEVEL_CRIT);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

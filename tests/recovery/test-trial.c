/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The trial verdict on a real sd-event loop with real timers (scaled down to
 * tens of milliseconds), fed desktop events the way hv delivers them and a
 * scripted agent ping in place of desktop_agent_ping(). The end-to-end test
 * (tests/integration/test-desktop-e2e.sh) runs the same code against
 * libvirtd and the stand-in desktop.
 */

#include <check.h>
#include <time.h>

#include "recovery.h"

#define MSEC 1000ULL
#define SEC 1000000ULL

static uint64_t now_mono(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- the scripted agent ------------------------------------------------------ */

typedef enum AgentMode {
        AGENT_ABSENT, /* -ENOTCONN */
        AGENT_ANSWERS,
        AGENT_SILENT, /* -ETIMEDOUT */
} AgentMode;

typedef struct Agent {
        AgentMode mode;
        unsigned calls;
        unsigned answer_after; /* ABSENT for the first answer_after calls, then ANSWERS */
        unsigned silent_from;  /* from this call on (1-based), silent; 0: never */
        unsigned silent_count; /* for this many calls; 0: for ever */
} Agent;

static int fake_ping(Desktop *d, unsigned timeout_sec, void *userdata) {
        Agent *a = userdata;

        ck_assert_ptr_null(d);
        ck_assert_uint_ge(timeout_sec, 1);
        a->calls++;
        if (a->silent_from > 0 && a->calls >= a->silent_from &&
            (a->silent_count == 0 || a->calls < a->silent_from + a->silent_count))
                return -ETIMEDOUT;
        if (a->answer_after > 0)
                return a->calls > a->answer_after ? 0 : -ENOTCONN;
        switch (a->mode) {
        case AGENT_ABSENT:
                return -ENOTCONN;
        case AGENT_SILENT:
                return -ETIMEDOUT;
        default:
                return 0;
        }
}

/* ---- the harness ------------------------------------------------------------------ */

typedef struct Run {
        sd_event *event;
        Trial *trial;
        Agent agent;
        TrialOptions options;
        unsigned verdicts;          /* done() calls */
        TrialVerdict verdict;       /* a copy of the first one */
        uint64_t start, verdict_at; /* CLOCK_MONOTONIC */
        bool free_in_done;
} Run;

static void on_done(Trial *t, const TrialVerdict *v, void *userdata) {
        Run *run = userdata;

        ck_assert_ptr_eq(t, run->trial);
        run->verdicts++;
        if (run->verdicts == 1) {
                run->verdict = *v;
                run->verdict.crash.reason = v->crash.reason ? strdup(v->crash.reason) : NULL;
                run->verdict_at = now_mono();
        }
        if (run->free_in_done)
                run->trial = trial_free(run->trial);
}

static void run_init(Run *run, uint64_t boot_timeout, uint64_t stability) {
        *run = (Run){};
        ck_assert_int_ge(sd_event_new(&run->event), 0);
        trial_options_init(&run->options, 1, 1);
        run->options.boot_timeout_usec = boot_timeout;
        run->options.stability_usec = stability;
        run->options.ping_interval_usec = 20 * MSEC;
        run->options.ping = fake_ping;
        run->options.ping_userdata = &run->agent;
}

static void run_start(Run *run) {
        run->start = now_mono();
        ck_assert_int_eq(trial_start_full(run->event, NULL, &run->options, on_done, run, &run->trial), 0);
        ck_assert_int_eq(trial_verdict(run->trial)->result, TRIAL_PENDING);
}

/* Run the loop until the verdict (or limit); then a little longer to catch
 * a second done() call. */
static void run_loop(Run *run, uint64_t limit) {
        uint64_t end = now_mono() + limit;

        while (run->verdicts == 0 && now_mono() < end)
                ck_assert_int_ge(sd_event_run(run->event, 10 * MSEC), 0);
        ck_assert_msg(run->verdicts == 1, "no verdict within %llu ms", (unsigned long long) (limit / MSEC));
        end = now_mono() + 100 * MSEC;
        while (now_mono() < end)
                ck_assert_int_ge(sd_event_run(run->event, 10 * MSEC), 0);
        ck_assert_uint_eq(run->verdicts, 1);
}

static void run_done(Run *run) {
        run->trial = trial_free(run->trial);
        trial_verdict_done(&run->verdict);
        run->event = sd_event_unref(run->event);
}

static uint64_t elapsed(const Run *run) {
        return run->verdict_at - run->start;
}

/* Feed an event from the loop at a given time after the start. */
typedef struct Scheduled {
        Run *run;
        DesktopEvent event;
        uint64_t fed_at;
        TrialResult result_after; /* trial's verdict right after trial_feed() returned */
} Scheduled;

static int on_scheduled(sd_event_source *s, uint64_t usec, void *userdata) {
        Scheduled *sc = userdata;

        sc->fed_at = now_mono();
        trial_feed(sc->run->trial, &sc->event);
        sc->result_after = sc->run->verdicts > 0 ? sc->run->verdict.result : TRIAL_PENDING;
        return 0;
}

static void schedule(Run *run, Scheduled *sc, uint64_t after, DesktopEventType type) {
        sc->run = run;
        sc->event = (DesktopEvent){.type = type};
        ck_assert_int_ge(sd_event_add_time(run->event, NULL, CLOCK_MONOTONIC, now_mono() + after, 1,
                                           on_scheduled, sc),
                         0);
}

/* ---- healthy ----------------------------------------------------------------------- */

START_TEST(test_healthy_boot_passes) {
        Run run;

        run_init(&run, 2 * SEC, 300 * MSEC);
        run.agent.answer_after = 3; /* booting: three pings without an agent */
        run_start(&run);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_PASSED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_NONE);
        /* first answer on the 4th ping: 3 intervals after the start */
        ck_assert_uint_ge(run.verdict.boot_usec, 60 * MSEC);
        ck_assert_uint_lt(run.verdict.boot_usec, 500 * MSEC);
        /* the whole window is waited for */
        ck_assert_uint_ge(elapsed(&run), run.verdict.boot_usec + 300 * MSEC);
        ck_assert_uint_lt(elapsed(&run), run.verdict.boot_usec + 600 * MSEC);
        /* and the agent was asked all along (interval 20 ms) */
        ck_assert_uint_ge(run.agent.calls, 3 + 10);
        run_done(&run);
}
END_TEST

START_TEST(test_agent_connected_pings_at_once) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 3 * SEC, 100 * MSEC);
        run.options.ping_interval_usec = 10 * SEC; /* only the first ping, at the start */
        run.agent.answer_after = 1;
        run_start(&run);
        schedule(&run, &sc, 150 * MSEC, DESKTOP_EVENT_AGENT_CONNECTED);
        run_loop(&run, 2 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_PASSED);
        ck_assert_uint_ge(run.verdict.boot_usec, 150 * MSEC);
        ck_assert_uint_lt(run.verdict.boot_usec, 400 * MSEC);
        run_done(&run);
}
END_TEST

START_TEST(test_reboot_before_answer_keeps_boot_timeout) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 400 * MSEC, 100 * MSEC);
        run.agent.mode = AGENT_ABSENT;
        run_start(&run);
        schedule(&run, &sc, 300 * MSEC, DESKTOP_EVENT_REBOOTED);
        run_loop(&run, 2 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_BOOT_TIMEOUT);
        /* counted from the start, not from the reboot */
        ck_assert_uint_ge(elapsed(&run), 400 * MSEC);
        ck_assert_uint_lt(elapsed(&run), 650 * MSEC);
        run_done(&run);
}
END_TEST

START_TEST(test_reboot_in_window_boots_again) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 2 * SEC, 300 * MSEC);
        run.agent.mode = AGENT_ANSWERS;
        run_start(&run);
        schedule(&run, &sc, 150 * MSEC, DESKTOP_EVENT_REBOOTED);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_PASSED);
        /* the window started again after the reboot */
        ck_assert_uint_ge(run.verdict_at, sc.fed_at + 300 * MSEC);
        /* boot time is the first answer's */
        ck_assert_uint_lt(run.verdict.boot_usec, 100 * MSEC);
        run_done(&run);
}
END_TEST

START_TEST(test_reboot_loop_fails) {
        Scheduled sc[3] = {};
        Run run;

        run_init(&run, 2 * SEC, 500 * MSEC);
        run.agent.mode = AGENT_ANSWERS;
        run.options.max_reboots = 2;
        run_start(&run);
        for (size_t i = 0; i < ELEMENTSOF(sc); i++)
                schedule(&run, &sc[i], (100 + 100 * i) * MSEC, DESKTOP_EVENT_REBOOTED);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_STOPPED);
        ck_assert_int_eq(sc[0].result_after, TRIAL_PENDING);
        ck_assert_int_eq(sc[1].result_after, TRIAL_PENDING);
        ck_assert_int_eq(sc[2].result_after, TRIAL_FAILED);
        run_done(&run);
}
END_TEST

/* ---- failures ----------------------------------------------------------------------- */

START_TEST(test_boot_timeout) {
        Run run;

        run_init(&run, 300 * MSEC, 100 * MSEC);
        run.agent.mode = AGENT_ABSENT;
        run_start(&run);
        run_loop(&run, 2 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_BOOT_TIMEOUT);
        ck_assert_uint_ge(elapsed(&run), 300 * MSEC);
        ck_assert_uint_lt(elapsed(&run), 500 * MSEC);
        ck_assert_uint_eq(run.verdict.boot_usec, 0);
        run_done(&run);
}
END_TEST

/* The verdict comes out of trial_feed() itself: no timer tick in between. */
static void crash_at(uint64_t after, AgentMode mode, bool hyperv) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.agent.mode = mode;
        run_start(&run);
        schedule(&run, &sc, after, DESKTOP_EVENT_CRASHED);
        sc.event.crash = (CrashInfo){
                .hyperv = hyperv,
                .stop_code = 0x7e,
                .params = {0xffffffffc0000005ULL, 0xfffff80312345678ULL, 0x1, 0x2},
                .reason = strdup("hyperv"),
        };
        run_loop(&run, 3 * SEC);
        free(sc.event.crash.reason); /* the verdict holds its own copy */

        ck_assert_int_eq(sc.result_after, TRIAL_FAILED);
        ck_assert_uint_le(run.verdict_at - sc.fed_at, 5 * MSEC);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_CRASH);
        ck_assert(run.verdict.crash.hyperv == hyperv);
        ck_assert_uint_eq(run.verdict.crash.stop_code, 0x7e);
        ck_assert_uint_eq(run.verdict.crash.params[0], 0xffffffffc0000005ULL);
        ck_assert_uint_eq(run.verdict.crash.params[3], 0x2);
        ck_assert_str_eq(run.verdict.crash.reason, "hyperv");
        ck_assert_str_eq(trial_verdict(run.trial)->crash.reason, "hyperv");
        run_done(&run);
}

START_TEST(test_crash_at_boot) {
        crash_at(100 * MSEC, AGENT_ABSENT, true);
}
END_TEST

START_TEST(test_crash_in_window) {
        crash_at(300 * MSEC, AGENT_ANSWERS, true);
}
END_TEST

START_TEST(test_crash_without_stop_code) {
        char *s = NULL;
        TrialVerdict v = {
                .result = TRIAL_FAILED, .failure = TRIAL_FAILURE_CRASH, .crash.reason = (char *) "pvpanic"};

        crash_at(100 * MSEC, AGENT_ANSWERS, false);
        ck_assert_int_eq(trial_verdict_format(&v, &s), 0);
        ck_assert_str_eq(s, "failed: crash, STOP code unknown, pvpanic");
        free(s);
}
END_TEST

START_TEST(test_watchdog_is_hang) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.agent.mode = AGENT_ANSWERS;
        run_start(&run);
        schedule(&run, &sc, 200 * MSEC, DESKTOP_EVENT_WATCHDOG);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(sc.result_after, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        run_done(&run);
}
END_TEST

START_TEST(test_stopped) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.agent.mode = AGENT_ABSENT;
        run_start(&run);
        schedule(&run, &sc, 100 * MSEC, DESKTOP_EVENT_STOPPED);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(sc.result_after, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_STOPPED);
        run_done(&run);
}
END_TEST

START_TEST(test_agent_stops_answering_is_hang) {
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.agent.mode = AGENT_ANSWERS;
        run.agent.silent_from = 6; /* answers 5 pings, then never again */
        run_start(&run);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        /* exactly max_missed_pings (3) silent pings */
        ck_assert_uint_eq(run.agent.calls, 5 + 3);
        ck_assert_uint_lt(elapsed(&run), 500 * MSEC);
        run_done(&run);
}
END_TEST

START_TEST(test_a_few_missed_pings_are_tolerated) {
        Run run;

        run_init(&run, 2 * SEC, 400 * MSEC);
        run.agent.mode = AGENT_ANSWERS;
        run.agent.silent_from = 4;
        run.agent.silent_count = 2; /* two misses, then answers again */
        run_start(&run);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_PASSED);
        run_done(&run);
}
END_TEST

START_TEST(test_window_end_waits_for_an_answer) {
        Run run;

        /* answers once (the 1st ping), then is silent for 2 pings around the
         * window's end (window 30 ms, interval 20 ms): a miss is pending at
         * the end, so the pass waits for the 4th ping's answer */
        run_init(&run, 2 * SEC, 30 * MSEC);
        run.agent.mode = AGENT_ANSWERS;
        run.agent.silent_from = 2;
        run.agent.silent_count = 2;
        run_start(&run);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_PASSED);
        ck_assert_uint_eq(run.agent.calls, 4);
        ck_assert_uint_ge(elapsed(&run), 60 * MSEC);
        run_done(&run);
}
END_TEST

START_TEST(test_window_end_then_silence_is_hang) {
        Run run;

        run_init(&run, 2 * SEC, 30 * MSEC);
        run.agent.mode = AGENT_ANSWERS;
        run.agent.silent_from = 2; /* silent from the 2nd ping on */
        run_start(&run);
        run_loop(&run, 3 * SEC);

        ck_assert_int_eq(run.verdict.result, TRIAL_FAILED);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        run_done(&run);
}
END_TEST

/* ---- ownership ------------------------------------------------------------------------ */

START_TEST(test_done_may_free_from_feed) {
        Scheduled sc = {};
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.free_in_done = true;
        run.agent.mode = AGENT_ABSENT;
        run_start(&run);
        schedule(&run, &sc, 50 * MSEC, DESKTOP_EVENT_WATCHDOG);
        run_loop(&run, 3 * SEC);
        ck_assert_ptr_null(run.trial);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        run_done(&run);
}
END_TEST

START_TEST(test_done_may_free_from_timer) {
        Run run;

        run_init(&run, 100 * MSEC, 100 * MSEC);
        run.free_in_done = true;
        run.agent.mode = AGENT_ABSENT;
        run_start(&run);
        run_loop(&run, 2 * SEC);
        ck_assert_ptr_null(run.trial);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_BOOT_TIMEOUT);
        run_done(&run);

        run_init(&run, 2 * SEC, 30 * MSEC);
        run.free_in_done = true;
        run.agent.mode = AGENT_ANSWERS;
        run.agent.silent_from = 2;
        run_start(&run);
        run_loop(&run, 2 * SEC); /* the verdict from the ping timer */
        ck_assert_ptr_null(run.trial);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        run_done(&run);
}
END_TEST

START_TEST(test_events_after_verdict_ignored) {
        Scheduled sc[2] = {};
        Run run;

        run_init(&run, 2 * SEC, 2 * SEC);
        run.agent.mode = AGENT_ANSWERS;
        run_start(&run);
        schedule(&run, &sc[0], 50 * MSEC, DESKTOP_EVENT_WATCHDOG);
        schedule(&run, &sc[1], 60 * MSEC, DESKTOP_EVENT_CRASHED);
        run_loop(&run, 3 * SEC);
        ck_assert_int_eq(run.verdict.failure, TRIAL_FAILURE_HANG);
        ck_assert_int_eq(trial_verdict(run.trial)->failure, TRIAL_FAILURE_HANG);
        run_done(&run);
}
END_TEST

START_TEST(test_bad_arguments) {
        TrialOptions o;
        Trial *t = NULL;
        sd_event *e = NULL;

        ck_assert_int_ge(sd_event_new(&e), 0);
        trial_options_init(&o, 10, 10);
        ck_assert_int_eq(trial_start_full(e, NULL, &o, NULL, NULL, &t), -EINVAL); /* no desktop, no ping */
        ck_assert_int_eq(trial_start(e, NULL, 10, 10, NULL, NULL, &t), -EINVAL);
        o.boot_timeout_usec = 0;
        o.ping = fake_ping;
        ck_assert_int_eq(trial_start_full(e, NULL, &o, NULL, NULL, &t), -EINVAL);
        ck_assert_ptr_null(t);
        trial_feed(NULL, NULL);
        ck_assert_ptr_null(trial_free(NULL));
        sd_event_unref(e);
}
END_TEST

START_TEST(test_strings) {
        TrialVerdict v = {};
        char *s = NULL;

        for (int i = 0; i < _TRIAL_RESULT_MAX; i++)
                ck_assert_int_eq(trial_result_from_string(trial_result_to_string(i)), i);
        for (int i = 0; i < _TRIAL_FAILURE_MAX; i++)
                ck_assert_int_eq(trial_failure_from_string(trial_failure_to_string(i)), i);
        ck_assert_str_eq(trial_failure_to_string(TRIAL_FAILURE_BOOT_TIMEOUT), "boot-timeout");
        ck_assert_int_eq(trial_failure_from_string("nonsense"), -EINVAL);
        ck_assert_int_eq(trial_result_from_string(NULL), -EINVAL);

        v = (TrialVerdict){
                .result = TRIAL_FAILED,
                .failure = TRIAL_FAILURE_CRASH,
                .crash = {.hyperv = true, .stop_code = 0xd1, .params = {1, 2, 3, 0xfffff80000000000ULL}}};
        ck_assert_int_eq(trial_verdict_format(&v, &s), 0);
        ck_assert_str_eq(s, "failed: crash, STOP code 0x000000d1 (0x1, 0x2, 0x3, 0xfffff80000000000)");
        free(s);
        v = (TrialVerdict){.result = TRIAL_PASSED, .boot_usec = 5250000};
        ck_assert_int_eq(trial_verdict_format(&v, &s), 0);
        ck_assert_str_eq(s, "passed (agent answered 5.2 s after the start)");
        free(s);
        v = (TrialVerdict){.result = TRIAL_FAILED, .failure = TRIAL_FAILURE_HANG};
        ck_assert_int_eq(trial_verdict_format(&v, &s), 0);
        ck_assert_ptr_nonnull(strstr(s, "hang"));
        free(s);
}
END_TEST

static Suite *trial_suite(void) {
        Suite *s = suite_create("trial");
        TCase *tc = tcase_create("verdict");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_healthy_boot_passes);
        tcase_add_test(tc, test_agent_connected_pings_at_once);
        tcase_add_test(tc, test_reboot_before_answer_keeps_boot_timeout);
        tcase_add_test(tc, test_reboot_in_window_boots_again);
        tcase_add_test(tc, test_reboot_loop_fails);
        tcase_add_test(tc, test_boot_timeout);
        tcase_add_test(tc, test_crash_at_boot);
        tcase_add_test(tc, test_crash_in_window);
        tcase_add_test(tc, test_crash_without_stop_code);
        tcase_add_test(tc, test_watchdog_is_hang);
        tcase_add_test(tc, test_stopped);
        tcase_add_test(tc, test_agent_stops_answering_is_hang);
        tcase_add_test(tc, test_a_few_missed_pings_are_tolerated);
        tcase_add_test(tc, test_window_end_waits_for_an_answer);
        tcase_add_test(tc, test_window_end_then_silence_is_hang);
        tcase_add_test(tc, test_done_may_free_from_feed);
        tcase_add_test(tc, test_done_may_free_from_timer);
        tcase_add_test(tc, test_events_after_verdict_ignored);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_strings);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(trial_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

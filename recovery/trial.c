/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The trial boot verdict: a step machine on the caller's sd-event loop.
 *
 *     booting --first agent answer--> stable --window over, last ping answered--> passed
 *        |                              |  ^
 *        |                              |  +-- reboot (within the allowance): back to booting
 *        +------------------------------+--> failed: crash, hang, boot timeout, stopped
 *
 * Events decide at once: trial_feed() delivers a crash, watchdog or stop
 * verdict from the caller's event handler, with no polling delay. The agent
 * is pinged on a timer (every ping_interval, from the end of the previous
 * ping) because an answer is the only proof the guest is alive; an agent
 * that answered once and then misses max_missed_pings pings in a row is a
 * hang. The window only ends on an answered ping, so a guest that stops
 * answering just before the end is not passed.
 *
 * The verdict is delivered last in every path, and nothing touches the
 * trial afterwards: done() may free it.
 */

#include <inttypes.h>
#include <time.h>

#include "recovery.h"

#define USEC_PER_SEC UINT64_C(1000000)

static const char *const trial_result_table[_TRIAL_RESULT_MAX] = {
        [TRIAL_PENDING] = "pending",
        [TRIAL_PASSED] = "passed",
        [TRIAL_FAILED] = "failed",
};
DEFINE_STRING_TABLE_LOOKUP(trial_result, TrialResult);

static const char *const trial_failure_table[_TRIAL_FAILURE_MAX] = {
        [TRIAL_FAILURE_NONE] = "none",       [TRIAL_FAILURE_CRASH] = "crash",
        [TRIAL_FAILURE_HANG] = "hang",       [TRIAL_FAILURE_BOOT_TIMEOUT] = "boot-timeout",
        [TRIAL_FAILURE_STOPPED] = "stopped",
};
DEFINE_STRING_TABLE_LOOKUP(trial_failure, TrialFailure);

typedef enum TrialPhase {
        TRIAL_PHASE_BOOTING,
        TRIAL_PHASE_STABLE,
        TRIAL_PHASE_DONE,
} TrialPhase;

struct Trial {
        sd_event *event;
        Desktop *desktop;
        TrialOptions options;
        TrialDoneCallback done;
        void *userdata;

        TrialPhase phase;
        uint64_t start_usec;      /* CLOCK_MONOTONIC, trial_start() */
        uint64_t window_end_usec; /* CLOCK_MONOTONIC, stable phase */
        unsigned missed;          /* pings missed in a row after the first answer */
        unsigned reboots;         /* guest reboots after the first answer */
        bool answered;            /* the agent answered at least once */

        sd_event_source *deadline; /* boot timeout, or the end of the window */
        sd_event_source *ping_timer;
        TrialVerdict verdict;
};

void trial_options_init(TrialOptions *o, unsigned boot_timeout_sec, unsigned stability_sec) {
        assert(o);
        *o = (TrialOptions){
                .boot_timeout_usec = boot_timeout_sec * USEC_PER_SEC,
                .stability_usec = stability_sec * USEC_PER_SEC,
                .ping_interval_usec = USEC_PER_SEC,
                .ping_timeout_sec = 1,
                .max_missed_pings = 3,
                .max_reboots = 2,
        };
}

static uint64_t now_monotonic(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int default_ping(Desktop *d, unsigned timeout_sec, void *userdata) {
        return desktop_agent_ping(d, timeout_sec);
}

void trial_verdict_done(TrialVerdict *v) {
        if (!v)
                return;
        crash_info_done(&v->crash);
        *v = (TrialVerdict){};
}

const TrialVerdict *trial_verdict(const Trial *t) {
        assert_return(t, NULL);
        return &t->verdict;
}

/* Stop every timer and hand out the verdict: the last thing any path does. */
static void trial_finish(Trial *t, TrialResult result, TrialFailure failure, const CrashInfo *crash) {
        assert(t->phase != TRIAL_PHASE_DONE);

        t->phase = TRIAL_PHASE_DONE;
        (void) sd_event_source_set_enabled(t->deadline, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(t->ping_timer, SD_EVENT_OFF);

        t->verdict.result = result;
        t->verdict.failure = failure;
        if (crash) {
                t->verdict.crash = *crash;
                /* Without memory for the text the verdict still stands. */
                t->verdict.crash.reason = crash->reason ? strdup(crash->reason) : NULL;
        }
        log_debug("Trial: %s (%s).", trial_result_to_string(result), trial_failure_to_string(failure));
        if (t->done)
                t->done(t, &t->verdict, t->userdata);
}

static int arm(sd_event_source *s, uint64_t usec) {
        int r;

        r = sd_event_source_set_time(s, usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int enter_booting(Trial *t, uint64_t now) {
        t->phase = TRIAL_PHASE_BOOTING;
        t->missed = 0;
        return arm(t->deadline, now + t->options.boot_timeout_usec);
}

static void on_answer(Trial *t, uint64_t now) {
        t->missed = 0;
        if (t->phase == TRIAL_PHASE_BOOTING) {
                if (!t->answered)
                        t->verdict.boot_usec = now - t->start_usec;
                t->answered = true;
                t->phase = TRIAL_PHASE_STABLE;
                t->window_end_usec = now + t->options.stability_usec;
                /* No timer, no window: judging now would pass an untested guest. */
                if (arm(t->deadline, t->window_end_usec) < 0)
                        trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_HANG, NULL);
                return;
        }
        /* An answer after the window's end (it was waiting for one) passes. */
        if (now >= t->window_end_usec)
                trial_finish(t, TRIAL_PASSED, TRIAL_FAILURE_NONE, NULL);
}

static int on_ping_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Trial *t = userdata;
        uint64_t now;
        int r;

        assert(t->phase != TRIAL_PHASE_DONE);

        r = t->options.ping(t->desktop, t->options.ping_timeout_sec, t->options.ping_userdata);
        now = now_monotonic();
        if (r >= 0) {
                on_answer(t, now);
                if (t->phase == TRIAL_PHASE_DONE)
                        return 0; /* may be freed: do not touch t */
        } else {
                log_debug_errno(r, "Trial: agent ping failed: %m");
                if (t->phase == TRIAL_PHASE_STABLE && ++t->missed >= t->options.max_missed_pings) {
                        trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_HANG, NULL);
                        return 0;
                }
        }

        if (arm(t->ping_timer, now + t->options.ping_interval_usec) < 0)
                trial_finish(t, TRIAL_FAILED, t->answered ? TRIAL_FAILURE_HANG : TRIAL_FAILURE_BOOT_TIMEOUT,
                             NULL);
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Trial *t = userdata;

        switch (t->phase) {
        case TRIAL_PHASE_BOOTING:
                trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_BOOT_TIMEOUT, NULL);
                break;
        case TRIAL_PHASE_STABLE:
                /* The window is over; pass only on a guest that answers now. */
                if (t->missed == 0)
                        trial_finish(t, TRIAL_PASSED, TRIAL_FAILURE_NONE, NULL);
                break;
        case TRIAL_PHASE_DONE:
                break;
        }
        return 0;
}

void trial_feed(Trial *t, const DesktopEvent *ev) {
        if (!t || !ev || t->phase == TRIAL_PHASE_DONE)
                return;

        switch (ev->type) {
        case DESKTOP_EVENT_CRASHED:
                trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_CRASH, &ev->crash);
                return;
        case DESKTOP_EVENT_WATCHDOG:
                trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_HANG, NULL);
                return;
        case DESKTOP_EVENT_STOPPED:
                trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_STOPPED, NULL);
                return;
        case DESKTOP_EVENT_REBOOTED:
                /* Before the first answer a reboot (Windows finishing an update)
                 * only runs down the boot timeout. After it, the guest went away
                 * on its own: boot again, a few times at most. */
                if (t->phase != TRIAL_PHASE_STABLE)
                        return;
                if (++t->reboots > t->options.max_reboots) {
                        trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_STOPPED, NULL);
                        return;
                }
                if (enter_booting(t, now_monotonic()) < 0)
                        trial_finish(t, TRIAL_FAILED, TRIAL_FAILURE_STOPPED, NULL);
                return;
        case DESKTOP_EVENT_AGENT_CONNECTED:
                /* Ask at once instead of at the next tick. */
                if (arm(t->ping_timer, now_monotonic()) < 0)
                        log_debug("Trial: could not reschedule the agent ping.");
                return;
        case DESKTOP_EVENT_STARTED:
        case DESKTOP_EVENT_AGENT_DISCONNECTED:
        default:
                /* A lost agent shows in the pings. */
                return;
        }
}

int trial_start_full(sd_event *e, Desktop *d, const TrialOptions *o, TrialDoneCallback done, void *userdata,
                     Trial **ret) {
        _cleanup_(trial_freep) Trial *t = NULL;
        uint64_t now;
        int r;

        assert_return(e, -EINVAL);
        assert_return(o, -EINVAL);
        assert_return(d || o->ping, -EINVAL);
        assert_return(o->boot_timeout_usec > 0, -EINVAL);
        assert_return(o->max_missed_pings > 0, -EINVAL);
        assert_return(ret, -EINVAL);

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->event = sd_event_ref(e);
        t->desktop = d;
        t->options = *o;
        if (!t->options.ping)
                t->options.ping = default_ping;
        if (t->options.ping_interval_usec == 0)
                t->options.ping_interval_usec = USEC_PER_SEC;
        if (t->options.ping_timeout_sec == 0)
                t->options.ping_timeout_sec = 1;
        t->done = done;
        t->userdata = userdata;
        t->verdict.result = TRIAL_PENDING;

        now = now_monotonic();
        t->start_usec = now;
        /* Accuracy 1 ms: the default (250 ms) would let sd-event coalesce the
         * wakeups and blur the verdict's timing. */
        r = sd_event_add_time(e, &t->deadline, CLOCK_MONOTONIC, now + o->boot_timeout_usec, 1000,
                              on_deadline, t);
        if (r < 0)
                return r;
        r = sd_event_add_time(e, &t->ping_timer, CLOCK_MONOTONIC, now, 1000, on_ping_timer, t);
        if (r < 0)
                return r;
        r = enter_booting(t, now);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(t);
        return 0;
}

int trial_start(sd_event *e, Desktop *d, unsigned boot_timeout_sec, unsigned stability_sec,
                TrialDoneCallback done, void *userdata, Trial **ret) {
        TrialOptions o;

        assert_return(d, -EINVAL);
        trial_options_init(&o, boot_timeout_sec, stability_sec);
        return trial_start_full(e, d, &o, done, userdata, ret);
}

Trial *trial_free(Trial *t) {
        if (!t)
                return NULL;
        /* Safe from inside the trial's own callbacks: sd-event defers freeing
         * a source that is being dispatched. */
        sd_event_source_disable_unref(t->deadline);
        sd_event_source_disable_unref(t->ping_timer);
        sd_event_unref(t->event);
        trial_verdict_done(&t->verdict);
        free(t);
        return NULL;
}

int trial_verdict_format(const TrialVerdict *v, char **ret) {
        char *s = NULL;
        int r;

        assert_return(v, -EINVAL);
        assert_return(ret, -EINVAL);

        if (v->result == TRIAL_PASSED)
                r = asprintf(&s, "passed (agent answered %.1f s after the start)",
                             (double) v->boot_usec / 1e6);
        else if (v->result == TRIAL_PENDING)
                r = asprintf(&s, "pending");
        else if (v->failure == TRIAL_FAILURE_CRASH && v->crash.hyperv)
                r = asprintf(&s,
                             "failed: crash, STOP code 0x%08" PRIx64 " (0x%" PRIx64 ", 0x%" PRIx64
                             ", 0x%" PRIx64 ", 0x%" PRIx64 ")%s%s",
                             v->crash.stop_code, v->crash.params[0], v->crash.params[1], v->crash.params[2],
                             v->crash.params[3], v->crash.reason ? ", " : "", v->crash.reason ?: "");
        else if (v->failure == TRIAL_FAILURE_CRASH)
                r = asprintf(&s, "failed: crash, STOP code unknown%s%s", v->crash.reason ? ", " : "",
                             v->crash.reason ?: "");
        else if (v->failure == TRIAL_FAILURE_HANG)
                r = asprintf(&s, "failed: hang (the watchdog fired or the agent stopped answering)");
        else if (v->failure == TRIAL_FAILURE_BOOT_TIMEOUT)
                r = asprintf(&s, "failed: boot-timeout (the agent never answered)");
        else
                r = asprintf(&s, "failed: %s", trial_failure_to_string(v->failure) ?: "unknown");
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

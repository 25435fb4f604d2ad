/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test hook: a scripted stand-in for the patch window, so the daemon's
 * frame (D-Bus, signals, history, stop and cancel) and oobctl can be tested
 * without a repository, libvirt or a desktop. oobd uses it only when
 * OOBD_TEST_SIMULATE is set in its environment (secure_getenv(): never for
 * a setuid caller), and says so in the journal. Nothing is fetched, touched
 * or applied; only the history file is written, as for real jobs.
 *
 *   OOBD_TEST_SIMULATE=OUTCOME   how update jobs end:
 *       committed     every step through trial, commit, report
 *       rolled-back   ... trial fails: rollback, report
 *       failed        fails during download
 *       up-to-date    nothing to apply after select
 *       deferred      deferred after select, unless UpdateNow's force flag
 *                     is given (then as committed)
 *     check jobs answer "available" (manifest "sim-2024-05"), or
 *     "up-to-date" / "failed" for those two outcomes.
 *   OOBD_TEST_SIMULATE_TICK_MS=N  time per step of the script (default 20)
 *   OOBD_TEST_SIMULATE_ROLLBACK_MS=N  time per step of a rollback after a
 *                                 cancel (default: the tick), to stop oobd
 *                                 in the middle of one
 *   OOBD_TEST_SIMULATE_HOLD=STEP  stop advancing on reaching STEP (until
 *                                 cancelled or stopped): deterministic tests
 *                                 of Cancel and SIGTERM
 *   OOBD_TEST_SIMULATE_PENDING=ID  at start-up, report an interrupted
 *                                 transaction ID: it is resumed (trial,
 *                                 commit, report) and committed
 *
 * Cancel before the snapshot step ends the job "cancelled"; from the
 * snapshot on it goes through rollback and ends "rolled-back", as the real
 * window must.
 */

#include "oobd.h"

#define SIM_MANIFEST "sim-2024-05"
#define SIM_SNAPSHOT "1"
#define USEC_PER_MSEC UINT64_C(1000)

typedef struct SimStep {
        JobStep step;
        unsigned percent;
} SimStep;

typedef struct Sim {
        Job *job;
        JobOutcome outcome; /* how the script ends */
        SimStep script[32];
        size_t n, pos;
        JobStep hold; /* _JOB_STEP_INVALID: none */
        uint64_t tick_usec;
        sd_event_source *timer;
        bool rolling_back;
        JobStep cancelled_at; /* the last step reached when cancel came */
} Sim;

static void add(Sim *s, JobStep step, unsigned from, unsigned to, unsigned by) {
        for (unsigned p = from; p <= to && s->n < ELEMENTSOF(s->script); p += by) {
                s->script[s->n++] = (SimStep){step, p};
                if (by == 0)
                        break;
        }
}

static void build_script(Sim *s, JobKind kind, uint64_t flags) {
        const char *e = secure_getenv("OOBD_TEST_SIMULATE");
        JobOutcome o = e ? job_outcome_from_string(e) : _JOB_OUTCOME_INVALID;

        if (o < 0 || o == JOB_AVAILABLE)
                o = JOB_COMMITTED;
        if (o == JOB_DEFERRED && (flags & OOBD_UPDATE_FORCE))
                o = JOB_COMMITTED;

        if (kind == JOB_RESUME) {
                add(s, JOB_STEP_TRIAL, 0, 100, 50);
                add(s, JOB_STEP_COMMIT, 100, 100, 0);
                add(s, JOB_STEP_REPORT, 100, 100, 0);
                s->outcome = JOB_COMMITTED;
                return;
        }

        add(s, JOB_STEP_REFRESH, 0, 100, 100);
        if (kind == JOB_CHECK) {
                s->outcome = o == JOB_UP_TO_DATE || o == JOB_FAILED ? o : JOB_AVAILABLE;
                if (o != JOB_FAILED)
                        add(s, JOB_STEP_SELECT, 100, 100, 0);
                return;
        }
        add(s, JOB_STEP_SELECT, 100, 100, 0);
        s->outcome = o;
        if (o == JOB_UP_TO_DATE || o == JOB_DEFERRED || o == JOB_CANCELLED)
                return;
        if (o == JOB_FAILED) {
                add(s, JOB_STEP_DOWNLOAD, 0, 40, 20);
                return;
        }
        add(s, JOB_STEP_DOWNLOAD, 0, 100, 20);
        add(s, JOB_STEP_SHUTDOWN, 0, 100, 100);
        add(s, JOB_STEP_SNAPSHOT, 100, 100, 0);
        add(s, JOB_STEP_APPLY, 0, 100, 50);
        add(s, JOB_STEP_TRIAL, 0, 100, 25);
        if (o == JOB_ROLLED_BACK)
                add(s, JOB_STEP_ROLLBACK, 100, 100, 0);
        else
                add(s, JOB_STEP_COMMIT, 100, 100, 0);
        add(s, JOB_STEP_REPORT, 100, 100, 0);
}

static void sim_finish(Sim *s) {
        JobResult r = {.outcome = s->outcome, .failed_step = _JOB_STEP_INVALID};

        s->timer = sd_event_source_disable_unref(s->timer);
        switch (s->outcome) {
        case JOB_COMMITTED:
                r.summary = s->job->kind == JOB_RESUME
                                    ? "simulated: the interrupted transaction was committed"
                                    : "simulated: " SIM_MANIFEST " applied; the trial passed";
                r.manifest = SIM_MANIFEST;
                r.snapshot = SIM_SNAPSHOT;
                break;
        case JOB_ROLLED_BACK:
                r.summary = s->rolling_back ? "simulated: cancelled; the disk was rolled back"
                                            : "simulated: the trial boot crashed; the disk was rolled back";
                r.manifest = SIM_MANIFEST;
                r.snapshot = SIM_SNAPSHOT;
                r.failed_step = s->rolling_back ? s->cancelled_at : JOB_STEP_TRIAL;
                break;
        case JOB_FAILED:
                r.summary = "simulated: the download failed";
                r.failed_step = s->job->kind == JOB_CHECK ? JOB_STEP_REFRESH : JOB_STEP_DOWNLOAD;
                break;
        case JOB_UP_TO_DATE:
                r.summary = "simulated: nothing to apply";
                break;
        case JOB_AVAILABLE:
                r.summary = "simulated: " SIM_MANIFEST " is available";
                r.manifest = SIM_MANIFEST;
                break;
        case JOB_CANCELLED:
                r.summary = "simulated: cancelled before anything was changed";
                break;
        case JOB_DEFERRED:
                r.summary = "simulated: deferred, the user is active";
                break;
        default:
                assert(!"an outcome the simulation does not produce");
        }
        job_finished(s->job, &r);
}

/* The next tick (time sources are one-shot: re-enable each time). */
static int arm(Sim *s) {
        int r;

        r = sd_event_source_set_time_relative(s->timer, s->tick_usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata) {
        Sim *s = userdata;
        const SimStep *st;

        if (s->pos >= s->n) {
                sim_finish(s);
                return 0;
        }
        st = &s->script[s->pos];
        if (s->hold >= 0 && st->step == s->hold && !s->job->cancel_requested) {
                /* Hold here (progress reported once) until cancelled. */
                job_progress(s->job, st->step, st->percent, "simulated, holding");
                return sd_event_source_set_enabled(src, SD_EVENT_OFF);
        }
        s->pos++;
        job_progress(s->job, st->step, st->percent, "simulated step %zu of %zu", s->pos, s->n);
        return arm(s);
}

static int sim_start(Job *j) {
        Sim *s;
        const char *e;
        uint64_t ms = 20;

        s = calloc(1, sizeof(Sim));
        if (!s)
                return -ENOMEM;
        j->userdata = s;
        s->job = j;
        s->hold = _JOB_STEP_INVALID;
        e = secure_getenv("OOBD_TEST_SIMULATE_TICK_MS");
        if (e && safe_atou64(e, &ms) < 0)
                ms = 20;
        s->tick_usec = ms * USEC_PER_MSEC;
        e = secure_getenv("OOBD_TEST_SIMULATE_HOLD");
        if (e)
                s->hold = job_step_from_string(e);
        build_script(s, j->kind, j->flags);

        return sd_event_add_time_relative(j->manager->event, &s->timer, CLOCK_MONOTONIC, s->tick_usec,
                                          USEC_PER_MSEC /* accuracy; 0 would mean 250 ms */, on_tick, s);
}

static void sim_cancel(Job *j) {
        Sim *s = j->userdata;
        const char *e;
        uint64_t ms;
        JobStep at;

        if (s->rolling_back)
                return;
        at = s->pos > 0 ? s->script[s->pos - 1].step : JOB_STEP_STARTING;
        if (at < JOB_STEP_SNAPSHOT || j->kind == JOB_CHECK) {
                s->outcome = JOB_CANCELLED;
                sim_finish(s);
                return;
        }
        /* Past the snapshot: the only safe way out is back. */
        e = secure_getenv("OOBD_TEST_SIMULATE_ROLLBACK_MS");
        if (e && safe_atou64(e, &ms) >= 0)
                s->tick_usec = ms * USEC_PER_MSEC;
        s->rolling_back = true;
        s->cancelled_at = at;
        s->outcome = JOB_ROLLED_BACK;
        s->n = s->pos;
        s->script[s->n++] = (SimStep){JOB_STEP_ROLLBACK, 100};
        s->script[s->n++] = (SimStep){JOB_STEP_REPORT, 100};
        (void) arm(s);
}

static void sim_free(Job *j) {
        Sim *s = j->userdata;

        if (!s)
                return;
        sd_event_source_disable_unref(s->timer);
        free(s);
        j->userdata = NULL;
}

static int sim_pending(Manager *m, char **ret_id) {
        static bool reported;
        const char *e = secure_getenv("OOBD_TEST_SIMULATE_PENDING");

        if (!e || !*e || reported)
                return 0;
        reported = true;
        *ret_id = strdup(e);
        return *ret_id ? 1 : -ENOMEM;
}

const JobDriver simulate_driver = {
        .name = "simulate",
        .start = sim_start,
        .cancel = sim_cancel,
        .free = sim_free,
        .pending = sim_pending,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Manager: the loop, the signals, the job's life cycle and the status.
 *
 * A job's life: manager_start_job() creates it and hands it to the driver;
 * the driver reports with job_progress() and ends with job_finished(),
 * which publishes the outcome at once and leaves the freeing to a defer
 * source on the next loop iteration, so the driver may call it from
 * anywhere (even from its own start or cancel) without the job vanishing
 * under its feet.
 *
 * Stopping (SIGTERM, SIGINT): with no job the loop ends at once; with one,
 * the job is asked to cancel at a safe point and the loop ends when it has
 * finished. A second signal ends the loop at once: the transaction is
 * persisted at every transition (DESIGN.md decision 6), so the next start
 * resumes or rolls back whatever was interrupted. SIGHUP reloads the
 * configuration, once idle.
 */

#include <dirent.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>
#include <time.h>

#include "oobd.h"

/* window.c may not be linked in yet: a weak reference lets oobd run without it. */
#pragma weak window_driver

/* clang-format off: one entry a line */
static const char *const job_kind_table[_JOB_KIND_MAX] = {
        [JOB_UPDATE] = "update",
        [JOB_CHECK] = "check",
        [JOB_RESUME] = "resume",
};
DEFINE_STRING_TABLE_LOOKUP(job_kind, JobKind);

static const char *const job_step_table[_JOB_STEP_MAX] = {
        [JOB_STEP_STARTING] = "starting", [JOB_STEP_REFRESH] = "refresh",   [JOB_STEP_SELECT] = "select",
        [JOB_STEP_DOWNLOAD] = "download", [JOB_STEP_SHUTDOWN] = "shutdown", [JOB_STEP_SNAPSHOT] = "snapshot",
        [JOB_STEP_APPLY] = "apply",       [JOB_STEP_TRIAL] = "trial",       [JOB_STEP_COMMIT] = "commit",
        [JOB_STEP_ROLLBACK] = "rollback", [JOB_STEP_REPORT] = "report",
};
DEFINE_STRING_TABLE_LOOKUP(job_step, JobStep);

static const char *const job_outcome_table[_JOB_OUTCOME_MAX] = {
        [JOB_COMMITTED] = "committed",   [JOB_ROLLED_BACK] = "rolled-back", [JOB_FAILED] = "failed",
        [JOB_UP_TO_DATE] = "up-to-date", [JOB_AVAILABLE] = "available",     [JOB_CANCELLED] = "cancelled",
        [JOB_DEFERRED] = "deferred",
};
DEFINE_STRING_TABLE_LOOKUP(job_outcome, JobOutcome);

static const char *const manager_state_table[_MANAGER_STATE_MAX] = {
        [MANAGER_IDLE] = "idle",         [MANAGER_CHECKING] = "checking",
        [MANAGER_UPDATING] = "updating", [MANAGER_CANCELLING] = "cancelling",
        [MANAGER_STOPPING] = "stopping",
};
DEFINE_STRING_TABLE_LOOKUP(manager_state, ManagerState);

/* The journal's view of each outcome: its level and MESSAGE_ID. */
static const struct {
        int level;
        const char *message_id;
} outcome_log[_JOB_OUTCOME_MAX] = {
        [JOB_COMMITTED] = {LOG_LEVEL_NOTICE, OOBD_MESSAGE_UPDATE_COMMITTED},
        [JOB_ROLLED_BACK] = {LOG_LEVEL_WARNING, OOBD_MESSAGE_UPDATE_ROLLED_BACK},
        [JOB_FAILED] = {LOG_LEVEL_ERR, OOBD_MESSAGE_JOB_FAILED},
        [JOB_UP_TO_DATE] = {LOG_LEVEL_INFO, OOBD_MESSAGE_UP_TO_DATE},
        [JOB_AVAILABLE] = {LOG_LEVEL_INFO, OOBD_MESSAGE_UPDATE_AVAILABLE},
        [JOB_CANCELLED] = {LOG_LEVEL_NOTICE, OOBD_MESSAGE_JOB_CANCELLED},
        [JOB_DEFERRED] = {LOG_LEVEL_NOTICE, OOBD_MESSAGE_JOB_DEFERRED},
};
/* clang-format on */

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

ManagerState manager_state(const Manager *m) {
        if (m->stopping)
                return MANAGER_STOPPING;
        if (!m->job || m->job->finished)
                return MANAGER_IDLE;
        if (m->job->cancel_requested)
                return MANAGER_CANCELLING;
        return m->job->kind == JOB_CHECK ? MANAGER_CHECKING : MANAGER_UPDATING;
}

/* What `systemctl status oobd` shows under "Status:". */
static void notify_status(Manager *m) {
        const Job *j = m->job;

        if (!j || j->finished) {
                if (m->last_outcome >= 0)
                        (void) sd_notifyf(false, "STATUS=Idle; last %s: %s",
                                          job_kind_to_string(m->last_kind),
                                          job_outcome_to_string(m->last_outcome));
                else
                        (void) sd_notify(false, "STATUS=Idle");
                return;
        }
        (void) sd_notifyf(false, "STATUS=%s%s %s: %s %u%%%s%s", j->cancel_requested ? "Cancelling " : "",
                          job_kind_to_string(j->kind), j->id, job_step_to_string(j->step), j->percent,
                          j->text ? ", " : "", j->text ?: "");
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        if (j->manager && j->manager->driver && j->manager->driver->free)
                j->manager->driver->free(j);
        free(j->id);
        free(j->text);
        free(j);
        return NULL;
}

static int manager_reload(Manager *m);

/* Drop the finished job; the manager is idle again. */
static void manager_reap_job(Manager *m) {
        assert(m->job && m->job->finished);

        m->job = job_free(m->job);
        m->job_reaper = sd_event_source_disable_unref(m->job_reaper);
        /* A window leaves a heap grown by its metadata and transfers; oobd
         * idles for a day after it: give the free pages back. */
        (void) malloc_trim(0);
        if (m->stopping) {
                (void) sd_event_exit(m->event, EXIT_SUCCESS);
                return;
        }
        bus_emit_changed(m, "State", "JobId", "JobKind", "JobStep", "JobProgress", "JobText", NULL);
        notify_status(m);
        if (m->reload_pending) {
                m->reload_pending = false;
                (void) manager_reload(m);
        }
}

static int on_job_reaper(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (m->job && m->job->finished)
                manager_reap_job(m);
        return 0;
}

static int new_job_id(char **ret) {
        sd_id128_t id;
        char *s;
        int r;

        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        s = hexmem(id.bytes, 8);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int manager_start_job(Manager *m, JobKind kind, uint64_t flags, const char *id, Job **ret) {
        _cleanup_free_ char *new_id = NULL;
        Job *j;
        int r;

        assert_return(m, -EINVAL);
        assert_return(kind >= 0 && kind < _JOB_KIND_MAX, -EINVAL);
        assert_return((kind == JOB_RESUME) == !!id, -EINVAL);

        if (m->stopping)
                return -ESHUTDOWN;
        if (!m->driver)
                return -EOPNOTSUPP;
        if (m->job && m->job->finished)
                manager_reap_job(m);
        if (m->job)
                return -EBUSY;
        if (kind != JOB_RESUME && !m->config.metadata_url)
                return -EDESTADDRREQ;

        if (!id) {
                r = new_job_id(&new_id);
                if (r < 0)
                        return r;
        } else if (!(new_id = strdup(id)))
                return -ENOMEM;

        j = calloc(1, sizeof(Job));
        if (!j)
                return -ENOMEM;
        *j = (Job){
                .manager = m,
                .id = TAKE_PTR(new_id),
                .kind = kind,
                .flags = flags,
                .step = JOB_STEP_STARTING,
                .started = (int64_t) time(NULL),
        };
        m->job = j;
        m->last_progress_usec = 0;

        log_struct_id(LOG_LEVEL_INFO, OOBD_MESSAGE_JOB_STARTED, "%s %s: started%s.",
                      job_kind_to_string(kind), j->id,
                      kind == JOB_RESUME ? " (a transaction interrupted when oobd stopped)" : "");
        r = m->driver->start(j);
        if (r < 0) {
                m->job = NULL;
                if (m->job_reaper) /* a driver that called job_finished() and then failed anyway */
                        m->job_reaper = sd_event_source_disable_unref(m->job_reaper);
                job_free(j);
                return r;
        }

        if (!j->finished) {
                bus_emit_changed(m, "State", "JobId", "JobKind", "JobStep", "JobProgress", "JobText", NULL);
                notify_status(m);
        }
        if (ret)
                *ret = j;
        return 0;
}

int manager_cancel_job(Manager *m) {
        Job *j = m->job;

        if (!j || j->finished)
                return -ENOENT;
        if (!j->cancel_requested)
                log_notice("%s %s: cancel requested.", job_kind_to_string(j->kind), j->id);
        j->cancel_requested = true;
        if (m->driver->cancel)
                m->driver->cancel(j);
        if (!j->finished) {
                bus_emit_changed(m, "State", NULL);
                notify_status(m);
        }
        return 0;
}

void job_progress(Job *j, JobStep step, unsigned percent, const char *text_format, ...) {
        Manager *m;
        _cleanup_free_ char *text = NULL;
        bool step_changed, percent_changed, text_changed;
        uint64_t now;

        assert(j);
        if (j->finished)
                return;
        m = j->manager;

        if (text_format) {
                va_list ap;

                va_start(ap, text_format);
                if (vasprintf(&text, text_format, ap) < 0)
                        text = NULL; /* keep going without the text */
                va_end(ap);
        }
        percent = MIN(percent, 100u);
        step_changed = step != j->step;
        percent_changed = percent != j->percent;
        text_changed = !streq(text ?: "", j->text ?: "");

        j->step = step;
        j->percent = percent;
        if (text_changed) {
                free(j->text);
                j->text = TAKE_PTR(text);
        }
        if (step_changed)
                log_info("%s %s: %s%s%s", job_kind_to_string(j->kind), j->id, job_step_to_string(step),
                         j->text ? ": " : "", j->text ?: "");

        now = now_usec(CLOCK_MONOTONIC);
        if (step_changed || percent_changed ||
            (text_changed && now - m->last_progress_usec >= UINT64_C(1000000))) {
                m->last_progress_usec = now;
                bus_emit_progress(m);
                notify_status(m);
        }
}

void job_finished(Job *j, const JobResult *r) {
        Manager *m;
        int k;

        assert(j && r);
        assert(r->outcome >= 0 && r->outcome < _JOB_OUTCOME_MAX);
        if (j->finished) {
                log_debug("job_finished() called twice for %s; ignored", j->id);
                return;
        }
        m = j->manager;
        j->finished = true;

        log_struct_id(outcome_log[r->outcome].level, outcome_log[r->outcome].message_id,
                      "%s %s: %s%s%s%s%s%s: %s", job_kind_to_string(j->kind), j->id,
                      job_outcome_to_string(r->outcome), r->failed_step >= 0 ? " at " : "",
                      r->failed_step >= 0 ? job_step_to_string(r->failed_step) : "",
                      r->manifest ? " (manifest " : "", r->manifest ?: "", r->manifest ? ")" : "",
                      r->summary ?: "(no summary)");

        free(m->last_id);
        free(m->last_summary);
        free(m->last_manifest);
        m->last_id = strdup(j->id);
        m->last_summary = strdup(r->summary ?: "");
        m->last_manifest = r->manifest ? strdup(r->manifest) : NULL;
        m->last_kind = j->kind;
        m->last_outcome = r->outcome;
        m->last_finished = (int64_t) time(NULL);

        if (j->kind != JOB_CHECK && r->outcome != JOB_UP_TO_DATE && r->outcome != JOB_AVAILABLE) {
                HistoryEntry e = {
                        .id = j->id,
                        .kind = j->kind,
                        .started = j->started,
                        .finished = m->last_finished,
                        .outcome = r->outcome,
                        .summary = r->summary ?: "",
                        .manifest = r->manifest,
                        .snapshot = r->snapshot,
                        .failed_step = r->failed_step,
                };

                k = history_append(m->config.state_dir, &e);
                if (k < 0)
                        log_error_errno(k, "Failed to record %s %s in %s/%s: %m",
                                        job_kind_to_string(j->kind), j->id, m->config.state_dir,
                                        UPDATE_HISTORY_FILE);
        }

        if (j->kind == JOB_CHECK)
                bus_reply_check_calls(m, r->outcome, r->manifest, r->summary);
        bus_emit_job_finished(m, j->id, r->outcome, r->summary ?: "");
        bus_emit_changed(m, "State", "LastJobId", "LastOutcome", "LastSummary", "LastFinished", NULL);
        notify_status(m);

        if (!m->job_reaper) {
                k = sd_event_add_defer(m->event, &m->job_reaper, on_job_reaper, m);
                if (k < 0) {
                        /* Without the defer source the next manager_start_job() reaps it. */
                        log_warning_errno(k, "Failed to schedule freeing job %s: %m", j->id);
                        if (m->stopping)
                                (void) sd_event_exit(m->event, EXIT_SUCCESS);
                }
        }
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

unsigned manager_pending_reports(Manager *m) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        unsigned n = 0;

        if (m->outbox)
                return (unsigned) MIN(outbox_pending(m->outbox), (size_t) UINT_MAX);
        /* Not loaded: count the files instead of starting libcurl for a number. */
        d = opendir(m->config.outbox_dir);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && (de->d_type == DT_REG || de->d_type == DT_UNKNOWN) &&
                    strlen(de->d_name) > 5 && streq(de->d_name + strlen(de->d_name) - 5, ".json"))
                        n++;
        return n;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

int manager_status_json(Manager *m, char **ret) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        const Job *j = m->job && !m->job->finished ? m->job : NULL;
        json_t *job = NULL, *last = NULL;
        char *text;

        if (j)
                job = json_pack("{s:s, s:s, s:s, s:i, s:o, s:I, s:b}", "id", j->id, "kind",
                                job_kind_to_string(j->kind), "step", job_step_to_string(j->step), "percent",
                                (int) j->percent, "text", string_or_null(j->text), "started",
                                (json_int_t) j->started, "cancel_requested", j->cancel_requested);
        else
                job = json_null();
        if (m->last_outcome >= 0)
                last = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "id", m->last_id ?: "", "kind",
                                 job_kind_to_string(m->last_kind), "outcome",
                                 job_outcome_to_string(m->last_outcome), "summary", m->last_summary ?: "",
                                 "manifest", string_or_null(m->last_manifest), "finished",
                                 (json_int_t) m->last_finished);
        else
                last = json_null();
        if (!job || !last) {
                json_decref(job);
                json_decref(last);
                return -ENOMEM;
        }

        root = json_pack("{s:s, s:s, s:s, s:o, s:b, s:o, s:o, s:i}", "version", OOB_VERSION, "state",
                         manager_state_to_string(manager_state(m)), "device", m->config.device_id,
                         "repository", string_or_null(m->config.metadata_url), "patch_window",
                         m->driver != NULL, "job", job, "last", last, "pending_reports",
                         (int) MIN(manager_pending_reports(m), (unsigned) INT_MAX));
        if (!root)
                return -ENOMEM;
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- configuration reload -------------------------------------------------------- */

static int manager_reload(Manager *m) {
        _cleanup_free_ char *error = NULL;
        OobdConfig c;
        int r;

        (void) sd_notify(false, "RELOADING=1");
        r = oobd_config_load(m->config_path, m->config_must_exist, &c, &error);
        if (r < 0) {
                if (r == -ENOMEM)
                        log_error("Not reloading the configuration: out of memory.");
                else
                        log_struct_id(LOG_LEVEL_ERR, OOBD_MESSAGE_CONFIG_INVALID,
                                      "Not reloading the configuration: %s", error ?: strerror(-r));
        } else {
                /* Resources made from the old values are remade from the new ones when next needed. */
                manager_release_resources(m);
                oobd_config_done(&m->config);
                m->config = c;
                log_info("Reloaded the configuration from %s.", m->config_path);
                (void) manager_resume_reports(m);
                (void) manager_start_guard(m);
        }
        (void) sd_notify(false, "READY=1");
        notify_status(m);
        return r;
}

/* ---- signals ------------------------------------------------------------------ */

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->stopping) {
                log_notice("Second %s: stopping now; an interrupted transaction resumes at the next start.",
                           strsignal((int) si->ssi_signo));
                (void) sd_event_exit(m->event, EXIT_SUCCESS);
                return 0;
        }
        m->stopping = true;
        (void) sd_notify(false, "STOPPING=1");
        bus_drop_check_calls(m);

        if (!m->job || m->job->finished) {
                log_struct_id(LOG_LEVEL_INFO, OOBD_MESSAGE_STOPPED, "Stopping (%s).",
                              strsignal((int) si->ssi_signo));
                (void) sd_event_exit(m->event, EXIT_SUCCESS);
                return 0;
        }

        log_struct_id(LOG_LEVEL_NOTICE, OOBD_MESSAGE_STOPPED,
                      "Stopping (%s): asking %s %s to stop at a safe point first.",
                      strsignal((int) si->ssi_signo), job_kind_to_string(m->job->kind), m->job->id);
        m->job->stopping = true;
        (void) manager_cancel_job(m);
        bus_emit_changed(m, "State", NULL);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->job && !m->job->finished) {
                log_info("SIGHUP: reloading the configuration once %s %s has finished.",
                         job_kind_to_string(m->job->kind), m->job->id);
                m->reload_pending = true;
                return 0;
        }
        (void) manager_reload(m);
        return 0;
}

/* ---- life cycle ------------------------------------------------------------------ */

int manager_new(const char *config_path, bool config_must_exist, const char *bus_address, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        assert_return(config_path, -EINVAL);
        assert_return(ret, -EINVAL);

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->last_outcome = _JOB_OUTCOME_INVALID;
        m->config_must_exist = config_must_exist;
        m->config_path = strdup(config_path);
        if (!m->config_path || (bus_address && !(m->bus_address = strdup(bus_address))))
                return -ENOMEM;

        r = oobd_config_load(config_path, config_must_exist, &m->config, &error);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_struct_id(LOG_LEVEL_ERR, OOBD_MESSAGE_CONFIG_INVALID, "Invalid configuration: %s",
                              error ?: strerror(-r));
                return r;
        }

        /* The scripted stand-in for the patch window, for tests of the daemon and oobctl only. */
        if (secure_getenv("OOBD_TEST_SIMULATE")) {
                log_warning("OOBD_TEST_SIMULATE is set: jobs are simulated, nothing is fetched or applied.");
                m->driver = &simulate_driver;
        } else
                m->driver = &window_driver ? &window_driver : NULL;
        if (!m->driver)
                log_notice("This oobd has no patch window (window.c): updates and checks are refused.");

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        bus_drop_check_calls(m);
        m->job_reaper = sd_event_source_disable_unref(m->job_reaper);
        m->job = job_free(m->job);
        manager_release_resources(m);
        m->bus = sd_bus_flush_close_unref(m->bus);
        m->event = sd_event_unref(m->event);
        oobd_config_done(&m->config);
        free(m->config_path);
        free(m->bus_address);
        free(m->last_id);
        free(m->last_summary);
        free(m->last_manifest);
        free(m);
        return NULL;
}

/* The bus name is ours: tell systemd, then pick up what the last run left. */
static void on_ready(Manager *m, int error) {
        _cleanup_free_ char *id = NULL;
        int r;

        if (error < 0) {
                log_error_errno(error, "Failed to acquire the bus name %s: %m", OOBD_BUS_NAME);
                (void) sd_event_exit(m->event, EXIT_FAILURE);
                return;
        }

        (void) sd_notify(false, "READY=1");
        notify_status(m);
        log_struct_id(LOG_LEVEL_INFO, OOBD_MESSAGE_STARTED, "oobd %s ready on %s (device %s).", OOB_VERSION,
                      m->bus_address ?: "the system bus", m->config.device_id);

        (void) manager_resume_reports(m);
        (void) manager_start_guard(m);

        if (!m->driver || !m->driver->pending)
                return;
        r = m->driver->pending(m, &id);
        if (r < 0) {
                log_error_errno(r, "Failed to look for an interrupted transaction: %m");
                return;
        }
        if (r == 0)
                return;
        r = manager_start_job(m, JOB_RESUME, 0, id, NULL);
        if (r < 0)
                log_error_errno(r, "Failed to resume the interrupted transaction %s: %m", id);
}

static int bus_connect(Manager *m) {
        int r;

        if (!m->bus_address)
                return sd_bus_open_system_with_description(&m->bus, "oobd");

        r = sd_bus_new(&m->bus);
        if (r < 0)
                return r;
        (void) sd_bus_set_description(m->bus, "oobd");
        r = sd_bus_set_address(m->bus, m->bus_address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(m->bus, true);
        if (r < 0)
                return r;
        return sd_bus_start(m->bus);
}

int manager_run(Manager *m) {
        int r;

        assert_return(m, -EINVAL);

        /* The signals were blocked by main() before any thread could exist. */
        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");
        if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_stop_signal, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGINT, on_stop_signal, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m)) < 0)
                return log_error_errno(r, "Failed to watch signals: %m");
        /* Pings WATCHDOG=1 when systemd asked for it (WatchdogSec=), nothing otherwise. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the watchdog: %m");

        r = bus_connect(m);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to %s: %m", m->bus_address ?: "the system bus");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        /* Losing the bus ends the loop (systemd restarts us; a job resumes then). */
        (void) sd_bus_set_exit_on_disconnect(m->bus, true);

        r = bus_setup(m, on_ready);
        if (r < 0)
                return log_error_errno(r, "Failed to publish %s on the bus: %m", OOBD_BUS_PATH);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

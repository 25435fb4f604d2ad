/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobd's D-Bus API: org.oob.Manager1 at /org/oob/Manager1 on the system
 * bus (or the bus given with --bus-address), introspectable.
 *
 * Properties (read by anyone):
 *   Version s          const
 *   State s            idle | checking | updating | cancelling | stopping
 *   JobId s            the running job, "" when idle
 *   JobKind s          update | check | resume, "" when idle
 *   JobStep s          starting | refresh | select | download | shutdown | snapshot
 *                      | apply | trial | commit | rollback | report, "" when idle
 *   JobProgress u      percent of the current step, 0-100
 *   JobText s          one line about the current step
 *   LastJobId s        the last finished job (since oobd started), or ""
 *   LastOutcome s      committed | rolled-back | failed | up-to-date | available
 *                      | cancelled | deferred, or ""
 *   LastSummary s      its one-sentence summary
 *   LastFinished t     when it finished, seconds since the epoch, 0 if none
 *   PendingReports u   reports waiting in the outbox (no change signal)
 * All but Version and PendingReports send PropertiesChanged.
 *
 * Methods (UpdateNow, Check and Cancel only for root and members of the
 * group "oob"; the bus policy says the same, and oobd checks it again):
 *   UpdateNow(t flags) -> (s job_id)
 *       Start a patch window now and return its id at once; follow it with
 *       the Progress and JobFinished signals (subscribe before calling).
 *       flags: 1 = force (do not defer when the user is active); other bits
 *       are refused. If an update is already running, its id is returned.
 *   Check() -> (s manifest)
 *       Refresh the metadata and answer, when done, with the id of the
 *       manifest this device would apply, or "" when up to date. Calls
 *       while a check runs share its answer. Can take minutes: use a long
 *       call timeout.
 *   Cancel() -> ()
 *       Ask the running job to stop at its next safe point; JobFinished
 *       tells how it ended (cancelled, or rolled-back when it was past the
 *       snapshot).
 *   GetStatus() -> (s json)
 *       {"version","state","device","repository","patch_window","job":{...}|null,
 *        "last":{...}|null,"pending_reports"} (oobctl status --json prints it).
 *   GetHistory() -> (s json)
 *       The update history (format in oobd.h).
 *
 * Signals:
 *   Progress(s step, u percent, s text)           as the job advances
 *   JobFinished(s id, s outcome, s summary)       once per job
 *
 * Errors: org.oob.Manager1.Error.Busy (another kind of job runs),
 * .NoJob (Cancel with nothing running), .NotAvailable (no repository
 * configured, or no patch window in this build), .Stopping (oobd is
 * stopping), .JobFailed (Check ended without an answer: the message says
 * why), org.freedesktop.DBus.Error.AccessDenied, .InvalidArgs.
 */

#include <grp.h>
#include <inttypes.h>

#include "oobd.h"

/* Is the caller root or in OOBD_ADMIN_GROUP? */
static int check_admin(sd_bus_message *msg, const char *action, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        struct group *grp;
        uid_t uid;
        gid_t gid;
        int r, n;

        r = sd_bus_query_sender_creds(msg,
                                      SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID | SD_BUS_CREDS_GID |
                                              SD_BUS_CREDS_EGID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS |
                                              SD_BUS_CREDS_AUGMENT,
                                      &creds);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who is calling: %m");

        /* The effective IDs decide; the bus may only know the real ones. */
        if (sd_bus_creds_get_euid(creds, &uid) < 0 && sd_bus_creds_get_uid(creds, &uid) < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who is calling.");
        if (uid == 0)
                return 0;

        grp = getgrnam(OOBD_ADMIN_GROUP);
        if (grp) {
                if ((sd_bus_creds_get_egid(creds, &gid) >= 0 || sd_bus_creds_get_gid(creds, &gid) >= 0) &&
                    gid == grp->gr_gid)
                        return 0;
                n = sd_bus_creds_get_supplementary_gids(creds, &gids);
                for (int i = 0; i < n; i++)
                        if (gids[i] == grp->gr_gid)
                                return 0;
        }
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Only root and members of group '%s' may %s.", OOBD_ADMIN_GROUP, action);
}

static const char *job_field(const Manager *m, const char *property) {
        const Job *j = m->job && !m->job->finished ? m->job : NULL;

        if (!j)
                return "";
        if (streq(property, "JobId"))
                return j->id;
        if (streq(property, "JobKind"))
                return job_kind_to_string(j->kind);
        if (streq(property, "JobStep"))
                return job_step_to_string(j->step);
        return j->text ?: "";
}

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const Job *j = m->job && !m->job->finished ? m->job : NULL;
        bool last = m->last_outcome >= 0;

        if (streq(property, "Version"))
                return sd_bus_message_append(reply, "s", OOB_VERSION);
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", manager_state_to_string(manager_state(m)));
        if (streq(property, "JobProgress"))
                return sd_bus_message_append(reply, "u", j ? j->percent : 0);
        if (strneq(property, "Job", 3))
                return sd_bus_message_append(reply, "s", job_field(m, property));
        if (streq(property, "LastJobId"))
                return sd_bus_message_append(reply, "s", last ? m->last_id : "");
        if (streq(property, "LastOutcome"))
                return sd_bus_message_append(reply, "s", last ? job_outcome_to_string(m->last_outcome) : "");
        if (streq(property, "LastSummary"))
                return sd_bus_message_append(reply, "s", last ? m->last_summary : "");
        if (streq(property, "LastFinished"))
                return sd_bus_message_append(reply, "t", (uint64_t) (last ? m->last_finished : 0));
        if (streq(property, "PendingReports"))
                return sd_bus_message_append(reply, "u", manager_pending_reports(m));
        return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s.", property);
}

/* Our errors from manager_start_job() in the caller's terms. */
static int start_error(Manager *m, int r, const char *what, sd_bus_error *error) {
        switch (r) {
        case -EBUSY:
                return sd_bus_error_setf(error, OOBD_BUS_ERROR_BUSY, "Cannot %s: %s %s is running.", what,
                                         job_kind_to_string(m->job->kind), m->job->id);
        case -ESHUTDOWN:
                return sd_bus_error_setf(error, OOBD_BUS_ERROR_STOPPING, "Cannot %s: oobd is stopping.",
                                         what);
        case -EOPNOTSUPP:
                return sd_bus_error_setf(error, OOBD_BUS_ERROR_NOT_AVAILABLE,
                                         "Cannot %s: this oobd has no patch window.", what);
        case -EDESTADDRREQ:
                return sd_bus_error_setf(
                        error, OOBD_BUS_ERROR_NOT_AVAILABLE,
                        "Cannot %s: no repository configured ([repository] metadata-url in %s).", what,
                        m->config_path);
        default:
                return sd_bus_error_set_errnof(error, r, "Cannot %s: %m", what);
        }
}

static int method_update_now(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Job *j;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~OOBD_UPDATE_FLAGS_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%" PRIx64 ".",
                                         flags & ~OOBD_UPDATE_FLAGS_ALL);
        r = check_admin(msg, "start an update", error);
        if (r < 0)
                return r;

        /* One patch window at a time: a second request follows the first. */
        if (m->job && !m->job->finished && m->job->kind != JOB_CHECK && !m->stopping)
                return sd_bus_reply_method_return(msg, "s", m->job->id);

        r = manager_start_job(m, JOB_UPDATE, flags, NULL, &j);
        if (r < 0)
                return start_error(m, r, "start an update", error);
        return sd_bus_reply_method_return(msg, "s", j->id);
}

static int method_check(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        sd_bus_message **calls;
        int r;

        r = check_admin(msg, "check for updates", error);
        if (r < 0)
                return r;

        if (m->job && !m->job->finished && m->job->kind != JOB_CHECK)
                return start_error(m, -EBUSY, "check for updates", error);

        /* Queued first: the job may finish (and answer) from within its start. */
        calls = reallocarray(m->check_calls, m->n_check_calls + 1, sizeof(sd_bus_message *));
        if (!calls)
                return -ENOMEM;
        m->check_calls = calls;
        m->check_calls[m->n_check_calls++] = sd_bus_message_ref(msg);

        if (m->job && !m->job->finished)
                return 1; /* a check runs: share its answer */

        r = manager_start_job(m, JOB_CHECK, 0, NULL, NULL);
        if (r < 0) {
                /* Only this call is queued (a running check would have been joined
                 * above); it gets the error as its reply. */
                m->n_check_calls--;
                sd_bus_message_unref(m->check_calls[m->n_check_calls]);
                return start_error(m, r, "check for updates", error);
        }
        return 1;
}

static int method_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = check_admin(msg, "cancel a job", error);
        if (r < 0)
                return r;
        r = manager_cancel_job(m);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, OOBD_BUS_ERROR_NO_JOB, "No job is running.");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_get_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *json = NULL;
        int r;

        r = manager_status_json(m, &json);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "s", json);
}

static int method_get_history(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *json = NULL, *problem = NULL;
        int r;

        r = history_read_json(m->config.state_dir, &json, &problem);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED, "Cannot read the history: %s",
                                         problem ?: strerror(-r));
        return sd_bus_reply_method_return(msg, "s", json);
}

#define PROPERTY(name, sig) SD_BUS_PROPERTY(name, sig, property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        PROPERTY("State", "s"),
        PROPERTY("JobId", "s"),
        PROPERTY("JobKind", "s"),
        PROPERTY("JobStep", "s"),
        PROPERTY("JobProgress", "u"),
        PROPERTY("JobText", "s"),
        PROPERTY("LastJobId", "s"),
        PROPERTY("LastOutcome", "s"),
        PROPERTY("LastSummary", "s"),
        PROPERTY("LastFinished", "t"),
        SD_BUS_PROPERTY("PendingReports", "u", property_get, 0, 0),
        SD_BUS_METHOD_WITH_NAMES("UpdateNow", "t", SD_BUS_PARAM(flags), "s", SD_BUS_PARAM(job_id),
                                 method_update_now, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Check", "", , "s", SD_BUS_PARAM(manifest), method_check,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetStatus", "", , "s", SD_BUS_PARAM(json), method_get_status,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetHistory", "", , "s", SD_BUS_PARAM(json), method_get_history,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Progress", "sus",
                                 SD_BUS_PARAM(step) SD_BUS_PARAM(percent) SD_BUS_PARAM(text), 0),
        SD_BUS_SIGNAL_WITH_NAMES("JobFinished", "sss",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(outcome) SD_BUS_PARAM(summary), 0),
        SD_BUS_VTABLE_END,
};

static int on_name_reply(sd_bus_message *reply, void *userdata, sd_bus_error *unused) {
        Manager *m = userdata;
        uint32_t answer;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                r = sd_bus_message_get_errno(reply);
                m->on_bus_ready(m, r > 0 ? -r : -EIO);
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &answer);
        if (r < 0) {
                m->on_bus_ready(m, r);
                return 0;
        }
        /* 1: primary owner, 4: already the owner; 2 (queued) and 3 (exists): someone else has it. */
        m->on_bus_ready(m, answer == 1 || answer == 4 ? 0 : -EEXIST);
        return 0;
}

int bus_setup(Manager *m, void (*ready)(Manager *m, int error)) {
        int r;

        assert_return(m && m->bus && ready, -EINVAL);

        m->on_bus_ready = ready;
        r = sd_bus_add_object_vtable(m->bus, NULL, OOBD_BUS_PATH, OOBD_BUS_INTERFACE, manager_vtable, m);
        if (r < 0)
                return r;
        return sd_bus_request_name_async(m->bus, NULL, OOBD_BUS_NAME, 0, on_name_reply, m);
}

void bus_emit_changed(Manager *m, const char *property, ...) {
        const char *names[16];
        size_t n = 0;
        va_list ap;
        int r;

        if (!m->bus)
                return;
        va_start(ap, property);
        for (const char *p = property; p && n < ELEMENTSOF(names) - 1; p = va_arg(ap, const char *))
                names[n++] = p;
        va_end(ap);
        names[n] = NULL;
        r = sd_bus_emit_properties_changed_strv(m->bus, OOBD_BUS_PATH, OOBD_BUS_INTERFACE, (char **) names);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged: %m");
}

void bus_emit_progress(Manager *m) {
        const Job *j = m->job;
        int r;

        if (!m->bus || !j)
                return;
        r = sd_bus_emit_signal(m->bus, OOBD_BUS_PATH, OOBD_BUS_INTERFACE, "Progress", "sus",
                               job_step_to_string(j->step), j->percent, j->text ?: "");
        if (r < 0)
                log_debug_errno(r, "Failed to emit Progress: %m");
        bus_emit_changed(m, "JobStep", "JobProgress", "JobText", NULL);
}

void bus_emit_job_finished(Manager *m, const char *id, JobOutcome outcome, const char *summary) {
        int r;

        if (!m->bus)
                return;
        r = sd_bus_emit_signal(m->bus, OOBD_BUS_PATH, OOBD_BUS_INTERFACE, "JobFinished", "sss", id,
                               job_outcome_to_string(outcome), summary);
        if (r < 0)
                log_warning_errno(r, "Failed to emit JobFinished for %s: %m", id);
}

void bus_reply_check_calls(Manager *m, JobOutcome outcome, const char *manifest, const char *summary) {
        for (size_t i = 0; i < m->n_check_calls; i++) {
                sd_bus_message *msg = m->check_calls[i];
                int r;

                if (outcome == JOB_AVAILABLE || outcome == JOB_UP_TO_DATE)
                        r = sd_bus_reply_method_return(msg, "s",
                                                       outcome == JOB_AVAILABLE && manifest ? manifest : "");
                else
                        r = sd_bus_reply_method_errorf(msg, OOBD_BUS_ERROR_JOB_FAILED, "The check %s: %s",
                                                       job_outcome_to_string(outcome), summary ?: "");
                if (r < 0)
                        log_debug_errno(r, "Failed to answer a Check() call: %m");
                sd_bus_message_unref(msg);
        }
        free(m->check_calls);
        m->check_calls = NULL;
        m->n_check_calls = 0;
}

void bus_drop_check_calls(Manager *m) {
        for (size_t i = 0; i < m->n_check_calls; i++) {
                (void) sd_bus_reply_method_errorf(m->check_calls[i], OOBD_BUS_ERROR_STOPPING,
                                                  "oobd is stopping; the check was not finished.");
                sd_bus_message_unref(m->check_calls[i]);
        }
        free(m->check_calls);
        m->check_calls = NULL;
        m->n_check_calls = 0;
}

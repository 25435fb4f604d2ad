/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl desktop: the desktop domain, its trial boots and its guard.
 *
 *   oobctl desktop [OPTIONS] status [--json]
 *   oobctl desktop [OPTIONS] start | stop | clear-alert
 *   oobctl desktop [OPTIONS] history [--json]
 *   oobctl desktop [OPTIONS] watch [--max-crashes N] [--window SECONDS]
 *   oobctl desktop [OPTIONS] trial [--boot-timeout S] [--stability S] [--json]
 *   oobctl desktop [OPTIONS] define --system-disk PATH [--data-disk PATH] [--memory MIB]
 *                  [--vcpus N] [--kernel PATH --initrd PATH [--cmdline TEXT]] [--kvm]
 *   oobctl desktop [OPTIONS] undefine
 *
 * watch runs the guard (recovery/guard.c) in the foreground on an sd-event
 * loop until SIGTERM or SIGINT: that is how the crash-loop rule runs until
 * oobd does it. Exit 0 on success (trial: passed), 1 on failure (trial:
 * failed), 2 on a usage error. A failure is reported once as
 * "DESKTOP: STEP: CAUSE".
 */

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "oobctl.h"
#include "recovery.h"

#define STATE_DIR_DEFAULT "/var/lib/oob/state"
#define CATALOG_DIR_DEFAULT "/var/lib/oob/system"
#define STATUS_CRASHES 5
#define USEC_PER_SEC UINT64_C(1000000)

typedef struct DesktopArgs {
        DesktopOptions desktop;
        const char *state_dir;
        const char *catalog_dir;
        bool json;
        unsigned max_crashes, window_sec;
        unsigned boot_timeout_sec, stability_sec;
        unsigned agent_timeout_sec, acpi_timeout_sec;
        DesktopDefinition definition;
} DesktopArgs;

/* What the event handler feeds, and what the trial saw. */
typedef struct Context {
        const DesktopArgs *args;
        sd_event *event;
        Desktop *desktop;
        Guard *guard;
        Trial *trial;
        bool finished;
        int error;                    /* stop: the shutdown's result */
        uint64_t decisive_event_usec; /* trial: the event that decided it, if one did */
        uint64_t verdict_usec;
} Context;

static void desktop_usage(FILE *f) {
        fprintf(f,
                "Usage: oobctl desktop [OPTIONS] COMMAND [ARGS...]\n"
                "\n"
                "  status [--json]   state, disks, last trial verdict, alert and recent crashes\n"
                "                    (with their STOP codes)\n"
                "  start             start the desktop\n"
                "  stop [--agent-timeout S] [--acpi-timeout S]\n"
                "                    shut it down: the guest agent, then ACPI, then force it off\n"
                "                    (defaults 10 s and 30 s)\n"
                "  history [--json]  every crash recorded, oldest first, and what the guard did\n"
                "  watch [--max-crashes N] [--window S]\n"
                "                    run the guard in the foreground until SIGTERM: record every\n"
                "                    crash, start the desktop again after one, revert the system\n"
                "                    disk to the last known-good snapshot after N crashes within\n"
                "                    S seconds (defaults 3 and 600), and raise an alert instead\n"
                "                    of looping when that state crashes as well\n"
                "  trial [--boot-timeout S] [--stability S] [--json]\n"
                "                    start the (shut down) desktop and judge the boot: the agent\n"
                "                    must answer within S (default 300) and no crash, hang or\n"
                "                    stop may follow for the stability window (default 120);\n"
                "                    exit 0 passed, 1 failed. The desktop is left as it ends.\n"
                "  clear-alert       remove the guard's alert: it acts on crashes again\n"
                "  define --system-disk PATH [--data-disk PATH] [--memory MIB] [--vcpus N]\n"
                "         [--kernel PATH --initrd PATH [--cmdline TEXT]] [--kvm]\n"
                "                    define (or redefine) the desktop domain from hv's template:\n"
                "                    the system disk (a catalog's active disk), the user-data disk,\n"
                "                    direct kernel boot for the stand-in; TCG unless --kvm\n"
                "  undefine          remove the domain's definition (not its disks)\n"
                "\n"
                "Options:\n"
                "  --uri URI          libvirt connection (default qemu:///system)\n"
                "  --name NAME        the desktop domain (default oob-desktop)\n"
                "  --state-dir DIR    crash history, last verdict, alert (default " STATE_DIR_DEFAULT ")\n"
                "  --catalog-dir DIR  the system disk's snapshot catalog (default " CATALOG_DIR_DEFAULT ")\n"
                "  -h, --help         show this help\n"
                "\n"
                "The user-data disk is never reverted.\n"
                "Exit status: 0 success (trial: passed), 1 failure (trial: failed), 2 usage error.\n");
}

static const char *desktop_label(const DesktopArgs *a) {
        return a->desktop.name ?: "oob-desktop";
}

_printf_(3, 4) static int fail(const DesktopArgs *a, int r, const char *step_fmt, ...) {
        char step[256];
        va_list ap;

        va_start(ap, step_fmt);
        vsnprintf(step, sizeof(step), step_fmt, ap);
        va_end(ap);
        log_error_errno(r, "%s: %s: %s", desktop_label(a), step, oobctl_error_cause(r));
        return OOBCTL_EXIT_FAILURE;
}

static uint64_t now_realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void format_usec(int64_t usec, bool utc, char *buf, size_t size) {
        time_t t = (time_t) (usec / (int64_t) USEC_PER_SEC);
        struct tm tm;

        if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)) ||
            strftime(buf, size, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "%" PRId64, usec);
}

static void format_stop_code(const CrashInfo *c, char *buf, size_t size) {
        if (c->hyperv)
                snprintf(buf, size,
                         "0x%08" PRIx64 " (0x%" PRIx64 ", 0x%" PRIx64 ", 0x%" PRIx64 ", 0x%" PRIx64 ")",
                         c->stop_code, c->params[0], c->params[1], c->params[2], c->params[3]);
        else
                snprintf(buf, size, "unknown");
}

static void jw_crash_info(JsonWriter *w, const CrashInfo *c) {
        char buf[32];

        if (c->hyperv) {
                snprintf(buf, sizeof(buf), "0x%" PRIx64, c->stop_code);
                jw_kv_string(w, "stop_code", buf);
                jw_key(w, "params");
                jw_begin_array(w);
                for (size_t i = 0; i < ELEMENTSOF(c->params); i++) {
                        snprintf(buf, sizeof(buf), "0x%" PRIx64, c->params[i]);
                        jw_string(w, buf);
                }
                jw_end_array(w);
        } else {
                jw_kv_string(w, "stop_code", NULL);
                jw_key(w, "params");
                jw_null(w);
        }
        jw_kv_string(w, "reason", c->reason);
}

static void jw_record(JsonWriter *w, const CrashRecord *r) {
        char when[64];

        jw_begin_object(w);
        jw_kv_int(w, "usec", r->usec);
        format_usec(r->usec, true, when, sizeof(when));
        jw_kv_string(w, "time_utc", when);
        jw_kv_string(w, "type", desktop_event_type_to_string(r->type));
        jw_crash_info(w, &r->crash);
        jw_kv_string(w, "snapshot", r->snapshot);
        jw_kv_string(w, "action", r->action);
        jw_end_object(w);
}

static void print_record(const CrashRecord *r) {
        char when[64], code[160];

        format_usec(r->usec, false, when, sizeof(when));
        format_stop_code(&r->crash, code, sizeof(code));
        printf("  %s  %-8s  STOP %s%s%s  snapshot %s  -> %s\n", when, desktop_event_type_to_string(r->type),
               code, r->crash.reason ? ", " : "", r->crash.reason ?: "", r->snapshot ?: "?",
               r->action ?: "?");
}

/* ---- the loop and the desktop ------------------------------------------------- */

static void on_event(Desktop *d, const DesktopEvent *ev, void *userdata) {
        Context *ctx = userdata;

        log_info("%s: event %s", desktop_name(d), desktop_event_type_to_string(ev->type) ?: "?");
        if (ctx->trial) {
                const TrialVerdict *before = trial_verdict(ctx->trial);
                bool pending = before && before->result == TRIAL_PENDING;

                trial_feed(ctx->trial, ev);
                if (pending && ctx->finished)
                        ctx->decisive_event_usec = ev->usec;
        }
        if (ctx->guard)
                guard_feed(ctx->guard, ev);
}

static int open_desktop(const DesktopArgs *a, Context *ctx) {
        int r;

        r = sd_event_default(&ctx->event);
        if (r < 0)
                return fail(a, r, "set up the event loop");
        r = desktop_event_loop_setup(ctx->event);
        if (r < 0)
                return fail(a, r, "set up libvirt's events");
        r = desktop_open(&a->desktop, on_event, ctx, &ctx->desktop);
        if (r < 0)
                return fail(a, r, "connect to %s", a->desktop.uri ?: "qemu:///system");
        return OOBCTL_EXIT_OK;
}

static void context_done(Context *ctx) {
        ctx->trial = trial_free(ctx->trial);
        ctx->guard = guard_free(ctx->guard);
        ctx->desktop = desktop_close(ctx->desktop);
        ctx->event = sd_event_unref(ctx->event);
}

/* ---- status and history ----------------------------------------------------------- */

static int desktop_status(const DesktopArgs *a) {
        _cleanup_(context_done) Context ctx = {.args = a};
        _cleanup_free_ char *system = NULL, *data = NULL, *verdict_text = NULL, *alert = NULL;
        _cleanup_(trial_verdict_done) TrialVerdict verdict = {};
        CrashRecord *records = NULL;
        size_t n = 0, first;
        DesktopState state = _DESKTOP_STATE_INVALID;
        int64_t verdict_usec = 0, alert_usec = 0;
        int r, rv, ra, ret;
        char when[64];

        ret = open_desktop(a, &ctx);
        if (ret == OOBCTL_EXIT_OK) {
                r = desktop_state(ctx.desktop, &state);
                if (r < 0)
                        ret = fail(a, r, "read the state");
                else if (desktop_disks(ctx.desktop, &system, &data) < 0)
                        system = data = NULL;
        }
        /* The records are shown whether libvirt answers or not. */
        r = crash_history_load(a->state_dir, &records, &n);
        if (r < 0) {
                log_warning_errno(r, "%s/history.json: %s", a->state_dir, oobctl_error_cause(r));
                n = 0;
        }
        rv = trial_verdict_load(a->state_dir, &verdict, &verdict_usec);
        if (rv >= 0 && trial_verdict_format(&verdict, &verdict_text) < 0)
                verdict_text = NULL;
        ra = guard_alert_summary(a->state_dir, &alert, &alert_usec);
        first = n > STATUS_CRASHES ? n - STATUS_CRASHES : 0;

        if (a->json) {
                _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(stdout, true);

                if (!w) {
                        crash_history_free(records, n);
                        return fail(a, -ENOMEM, "status");
                }
                jw_begin_object(w);
                jw_kv_string(w, "name", desktop_label(a));
                jw_kv_string(w, "state", state >= 0 ? desktop_state_to_string(state) : NULL);
                jw_kv_string(w, "system_disk", system);
                jw_kv_string(w, "data_disk", data);
                jw_key(w, "last_trial");
                if (rv >= 0) {
                        jw_begin_object(w);
                        jw_kv_int(w, "usec", verdict_usec);
                        jw_kv_string(w, "result", trial_result_to_string(verdict.result));
                        jw_kv_string(w, "failure", trial_failure_to_string(verdict.failure));
                        jw_crash_info(w, &verdict.crash);
                        jw_kv_uint(w, "boot_usec", verdict.boot_usec);
                        jw_kv_string(w, "text", verdict_text);
                        jw_end_object(w);
                } else
                        jw_null(w);
                jw_key(w, "alert");
                if (ra >= 0) {
                        jw_begin_object(w);
                        jw_kv_int(w, "usec", alert_usec);
                        jw_kv_string(w, "cause", alert);
                        jw_end_object(w);
                } else
                        jw_null(w);
                jw_kv_uint(w, "crashes_total", n);
                jw_key(w, "recent_crashes");
                jw_begin_array(w);
                for (size_t i = first; i < n; i++)
                        jw_record(w, &records[i]);
                jw_end_array(w);
                jw_end_object(w);
        } else {
                printf("Desktop:      %s (%s)\n", desktop_label(a), a->desktop.uri ?: "qemu:///system");
                printf("State:        %s\n", state >= 0 ? desktop_state_to_string(state) : "unknown");
                if (system)
                        printf("System disk:  %s\n", system);
                if (data)
                        printf("Data disk:    %s\n", data);
                if (rv >= 0) {
                        format_usec(verdict_usec, false, when, sizeof(when));
                        printf("Last trial:   %s (%s)\n", verdict_text ?: "?", when);
                } else
                        printf("Last trial:   none\n");
                if (ra >= 0) {
                        format_usec(alert_usec, false, when, sizeof(when));
                        printf("Alert:        RAISED %s: %s (%s/alert.json; 'oobctl desktop clear-alert')\n",
                               when, alert, a->state_dir);
                } else if (ra == -ENOENT)
                        printf("Alert:        none\n");
                else
                        printf("Alert:        unreadable (%s/alert.json)\n", a->state_dir);
                printf("Crashes:      %zu recorded%s\n", n, n > 0 ? ", the latest:" : "");
                for (size_t i = first; i < n; i++)
                        print_record(&records[i]);
        }
        crash_history_free(records, n);
        return ret;
}

static int desktop_history(const DesktopArgs *a) {
        CrashRecord *records = NULL;
        size_t n = 0;
        int r;

        r = crash_history_load(a->state_dir, &records, &n);
        if (r < 0)
                return fail(a, r, "read %s/history.json", a->state_dir);
        if (a->json) {
                _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(stdout, true);

                if (w) {
                        jw_begin_object(w);
                        jw_kv_string(w, "name", desktop_label(a));
                        jw_key(w, "crashes");
                        jw_begin_array(w);
                        for (size_t i = 0; i < n; i++)
                                jw_record(w, &records[i]);
                        jw_end_array(w);
                        jw_end_object(w);
                }
        } else if (n == 0)
                printf("No crashes recorded.\n");
        else
                for (size_t i = 0; i < n; i++)
                        print_record(&records[i]);
        crash_history_free(records, n);
        return OOBCTL_EXIT_OK;
}

/* ---- start, stop ------------------------------------------------------------------- */

static int desktop_start_command(const DesktopArgs *a) {
        _cleanup_(context_done) Context ctx = {.args = a};
        DesktopState state;
        int r;

        r = open_desktop(a, &ctx);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = desktop_state(ctx.desktop, &state);
        if (r < 0)
                return fail(a, r, "read the state");
        if (state == DESKTOP_RUNNING) {
                log_info("%s is running already.", desktop_label(a));
                return OOBCTL_EXIT_OK;
        }
        r = desktop_start(ctx.desktop);
        if (r < 0)
                return fail(a, r, "start");
        return OOBCTL_EXIT_OK;
}

static void on_shutdown_done(Desktop *d, int error, void *userdata) {
        Context *ctx = userdata;

        ctx->error = error;
        ctx->finished = true;
        (void) sd_event_exit(ctx->event, 0);
}

static int desktop_stop(const DesktopArgs *a) {
        _cleanup_(context_done) Context ctx = {.args = a};
        bool running;
        int r;

        r = open_desktop(a, &ctx);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = desktop_is_running(ctx.desktop, &running);
        if (r < 0)
                return fail(a, r, "read the state");
        if (!running) {
                log_info("%s is off already.", desktop_label(a));
                return OOBCTL_EXIT_OK;
        }
        r = desktop_shutdown(ctx.desktop, ctx.event, a->agent_timeout_sec, a->acpi_timeout_sec,
                             on_shutdown_done, &ctx);
        if (r < 0)
                return fail(a, r, "shut down");
        r = sd_event_loop(ctx.event);
        if (r < 0)
                return fail(a, r, "run the event loop");
        if (ctx.error < 0)
                return fail(a, ctx.error, "shut down");
        return OOBCTL_EXIT_OK;
}

static int desktop_define_command(const DesktopArgs *a) {
        DesktopDefinition def = a->definition;
        int r;

        def.name = desktop_label(a);
        r = desktop_define(a->desktop.uri, &def);
        if (r < 0)
                return fail(a, r, "define the domain");
        return OOBCTL_EXIT_OK;
}

static int desktop_undefine_command(const DesktopArgs *a) {
        int r;

        r = desktop_undefine(a->desktop.uri, desktop_label(a));
        if (r < 0)
                return fail(a, r, "undefine the domain");
        return OOBCTL_EXIT_OK;
}

static int desktop_clear_alert(const DesktopArgs *a) {
        int r;

        r = guard_alert_clear(a->state_dir);
        if (r < 0)
                return fail(a, r, "clear the alert in %s", a->state_dir);
        return OOBCTL_EXIT_OK;
}

/* ---- watch ----------------------------------------------------------------------------- */

static int block_signals(void) {
        sigset_t ss;

        if (sigemptyset(&ss) < 0 || sigaddset(&ss, SIGTERM) < 0 || sigaddset(&ss, SIGINT) < 0)
                return -errno;
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        return 0;
}

static int desktop_watch(const DesktopArgs *a) {
        _cleanup_(context_done) Context ctx = {.args = a};
        GuardOptions o = {
                .state_dir = a->state_dir,
                .catalog_dir = a->catalog_dir,
                .max_crashes = a->max_crashes,
                .window_sec = a->window_sec,
        };
        int r;

        r = block_signals();
        if (r < 0)
                return fail(a, r, "block signals");
        r = open_desktop(a, &ctx);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = sd_event_add_signal(ctx.event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(ctx.event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return fail(a, r, "watch for SIGTERM");
        r = guard_new(ctx.event, ctx.desktop, &o, &ctx.guard);
        if (r < 0)
                return fail(a, r, "start the guard");
        log_info("Guarding %s: %u crashes within %u s revert %s to its last known-good snapshot.",
                 desktop_label(a), a->max_crashes, a->window_sec, a->catalog_dir);
        (void) sd_notify(false, "READY=1\nSTATUS=Guarding the desktop");
        r = sd_event_loop(ctx.event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return fail(a, r, "run the event loop");
        return OOBCTL_EXIT_OK;
}

/* ---- trial ------------------------------------------------------------------------------- */

static void on_trial_done(Trial *t, const TrialVerdict *v, void *userdata) {
        Context *ctx = userdata;

        ctx->verdict_usec = now_realtime();
        ctx->finished = true;
        (void) sd_event_exit(ctx->event, 0);
}

static int desktop_trial(const DesktopArgs *a) {
        _cleanup_(context_done) Context ctx = {.args = a};
        _cleanup_free_ char *text = NULL;
        const TrialVerdict *v;
        DesktopState state = DESKTOP_RUNNING;
        uint64_t start_usec;
        bool running;
        int r;

        r = open_desktop(a, &ctx);
        if (r != OOBCTL_EXIT_OK)
                return r;
        /* Off, or "crashed" and already powered off by on_crash: it can boot. */
        r = desktop_is_running(ctx.desktop, &running);
        if (r >= 0 && running)
                r = desktop_state(ctx.desktop, &state);
        if (r < 0)
                return fail(a, r, "read the state");
        if (running) {
                log_error("%s: trial: the desktop is %s; a trial judges a boot: stop it first.",
                          desktop_label(a), desktop_state_to_string(state));
                return OOBCTL_EXIT_FAILURE;
        }

        start_usec = now_realtime();
        r = trial_start(ctx.event, ctx.desktop, a->boot_timeout_sec, a->stability_sec, on_trial_done, &ctx,
                        &ctx.trial);
        if (r < 0)
                return fail(a, r, "start the trial");
        r = desktop_start(ctx.desktop);
        if (r < 0)
                return fail(a, r, "start");
        r = sd_event_loop(ctx.event);
        if (r < 0)
                return fail(a, r, "run the event loop");

        v = trial_verdict(ctx.trial);
        r = trial_verdict_save(a->state_dir, v, (int64_t) ctx.verdict_usec);
        if (r < 0)
                log_warning_errno(r, "%s: could not save the verdict in %s: %s", desktop_label(a),
                                  a->state_dir, oobctl_error_cause(r));
        if (trial_verdict_format(v, &text) < 0)
                return fail(a, -ENOMEM, "trial");
        log_struct_id(v->result == TRIAL_PASSED ? LOG_LEVEL_NOTICE : LOG_LEVEL_ERR,
                      OOB_MESSAGE_TRIAL_VERDICT, "Trial boot of %s %s.", desktop_label(a), text);

        if (a->json) {
                _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(stdout, true);

                if (w) {
                        jw_begin_object(w);
                        jw_kv_string(w, "name", desktop_label(a));
                        jw_kv_string(w, "result", trial_result_to_string(v->result));
                        jw_kv_string(w, "failure", trial_failure_to_string(v->failure));
                        jw_crash_info(w, &v->crash);
                        jw_kv_uint(w, "boot_usec", v->boot_usec);
                        jw_kv_uint(w, "start_usec", start_usec);
                        jw_kv_uint(w, "verdict_usec", ctx.verdict_usec);
                        /* the event that decided it (crash, watchdog, stop), else null */
                        if (ctx.decisive_event_usec > 0)
                                jw_kv_uint(w, "event_usec", ctx.decisive_event_usec);
                        else
                                jw_kv_string(w, "event_usec", NULL);
                        jw_kv_string(w, "text", text);
                        jw_end_object(w);
                }
        } else
                printf("%s\n", text);
        return v->result == TRIAL_PASSED ? OOBCTL_EXIT_OK : OOBCTL_EXIT_FAILURE;
}

/* ---- the verb ---------------------------------------------------------------------------- */

typedef struct DesktopCommand {
        const char *name;
        int (*run)(const DesktopArgs *a);
        bool json, watch, trial, stop, define;
} DesktopCommand;

static const DesktopCommand desktop_commands[] = {
        {.name = "status", .run = desktop_status, .json = true},
        {.name = "start", .run = desktop_start_command},
        {.name = "stop", .run = desktop_stop, .stop = true},
        {.name = "history", .run = desktop_history, .json = true},
        {.name = "watch", .run = desktop_watch, .watch = true},
        {.name = "trial", .run = desktop_trial, .json = true, .trial = true},
        {.name = "clear-alert", .run = desktop_clear_alert},
        {.name = "define", .run = desktop_define_command, .define = true},
        {.name = "undefine", .run = desktop_undefine_command},
};

/* A positive number of seconds (or crashes), at most a day's worth. */
static int parse_count(const char *s, const char *option, unsigned *ret) {
        uint64_t v;

        if (safe_atou64(s, &v) < 0 || v == 0 || v > 86400) {
                log_error("%s takes a whole number from 1 to 86400, not '%s'.", option, s);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

int verb_desktop(int argc, char *argv[]) {
        enum {
                ARG_URI = 0x100,
                ARG_NAME,
                ARG_STATE_DIR,
                ARG_CATALOG_DIR,
                ARG_JSON,
                ARG_MAX_CRASHES,
                ARG_WINDOW,
                ARG_BOOT_TIMEOUT,
                ARG_STABILITY,
                ARG_AGENT_TIMEOUT,
                ARG_ACPI_TIMEOUT,
                ARG_SYSTEM_DISK,
                ARG_DATA_DISK,
                ARG_MEMORY,
                ARG_VCPUS,
                ARG_KERNEL,
                ARG_INITRD,
                ARG_CMDLINE,
                ARG_KVM,
        };
        static const struct option options[] = {
                {"uri", required_argument, NULL, ARG_URI},
                {"name", required_argument, NULL, ARG_NAME},
                {"state-dir", required_argument, NULL, ARG_STATE_DIR},
                {"catalog-dir", required_argument, NULL, ARG_CATALOG_DIR},
                {"json", no_argument, NULL, ARG_JSON},
                {"max-crashes", required_argument, NULL, ARG_MAX_CRASHES},
                {"window", required_argument, NULL, ARG_WINDOW},
                {"boot-timeout", required_argument, NULL, ARG_BOOT_TIMEOUT},
                {"stability", required_argument, NULL, ARG_STABILITY},
                {"agent-timeout", required_argument, NULL, ARG_AGENT_TIMEOUT},
                {"acpi-timeout", required_argument, NULL, ARG_ACPI_TIMEOUT},
                {"system-disk", required_argument, NULL, ARG_SYSTEM_DISK},
                {"data-disk", required_argument, NULL, ARG_DATA_DISK},
                {"memory", required_argument, NULL, ARG_MEMORY},
                {"vcpus", required_argument, NULL, ARG_VCPUS},
                {"kernel", required_argument, NULL, ARG_KERNEL},
                {"initrd", required_argument, NULL, ARG_INITRD},
                {"cmdline", required_argument, NULL, ARG_CMDLINE},
                {"kvm", no_argument, NULL, ARG_KVM},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        DesktopArgs a = {
                .state_dir = STATE_DIR_DEFAULT,
                .catalog_dir = CATALOG_DIR_DEFAULT,
                .max_crashes = 3,
                .window_sec = 600,
                .boot_timeout_sec = 300,
                .stability_sec = 120,
                .agent_timeout_sec = 10,
                .acpi_timeout_sec = 30,
                .definition = {.memory_mib = 256, .vcpus = 1},
        };
        bool watch_opt = false, trial_opt = false, stop_opt = false, define_opt = false;
        const DesktopCommand *cmd = NULL;
        const char *command, *option = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_URI:
                        a.desktop.uri = optarg;
                        break;
                case ARG_NAME:
                        a.desktop.name = optarg;
                        break;
                case ARG_STATE_DIR:
                        a.state_dir = optarg;
                        break;
                case ARG_CATALOG_DIR:
                        a.catalog_dir = optarg;
                        break;
                case ARG_JSON:
                        a.json = true;
                        break;
                case ARG_MAX_CRASHES:
                        if (parse_count(optarg, "--max-crashes", &a.max_crashes) < 0)
                                return OOBCTL_EXIT_USAGE;
                        watch_opt = true;
                        break;
                case ARG_WINDOW:
                        if (parse_count(optarg, "--window", &a.window_sec) < 0)
                                return OOBCTL_EXIT_USAGE;
                        watch_opt = true;
                        break;
                case ARG_BOOT_TIMEOUT:
                        if (parse_count(optarg, "--boot-timeout", &a.boot_timeout_sec) < 0)
                                return OOBCTL_EXIT_USAGE;
                        trial_opt = true;
                        break;
                case ARG_STABILITY:
                        if (parse_count(optarg, "--stability", &a.stability_sec) < 0)
                                return OOBCTL_EXIT_USAGE;
                        trial_opt = true;
                        break;
                case ARG_AGENT_TIMEOUT:
                        if (parse_count(optarg, "--agent-timeout", &a.agent_timeout_sec) < 0)
                                return OOBCTL_EXIT_USAGE;
                        stop_opt = true;
                        break;
                case ARG_ACPI_TIMEOUT:
                        if (parse_count(optarg, "--acpi-timeout", &a.acpi_timeout_sec) < 0)
                                return OOBCTL_EXIT_USAGE;
                        stop_opt = true;
                        break;
                case ARG_SYSTEM_DISK:
                        a.definition.system_disk = optarg;
                        define_opt = true;
                        break;
                case ARG_DATA_DISK:
                        a.definition.data_disk = optarg;
                        define_opt = true;
                        break;
                case ARG_MEMORY:
                        if (parse_count(optarg, "--memory", &a.definition.memory_mib) < 0)
                                return OOBCTL_EXIT_USAGE;
                        define_opt = true;
                        break;
                case ARG_VCPUS:
                        if (parse_count(optarg, "--vcpus", &a.definition.vcpus) < 0)
                                return OOBCTL_EXIT_USAGE;
                        define_opt = true;
                        break;
                case ARG_KERNEL:
                        a.definition.kernel = optarg;
                        define_opt = true;
                        break;
                case ARG_INITRD:
                        a.definition.initrd = optarg;
                        define_opt = true;
                        break;
                case ARG_CMDLINE:
                        a.definition.cmdline = optarg;
                        define_opt = true;
                        break;
                case ARG_KVM:
                        a.definition.kvm = true;
                        define_opt = true;
                        break;
                case 'h':
                        desktop_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        desktop_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }

        if (optind >= argc) {
                log_error("'oobctl desktop' needs a command; see 'oobctl desktop --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        command = argv[optind++];
        for (size_t k = 0; k < ELEMENTSOF(desktop_commands); k++)
                if (streq(command, desktop_commands[k].name))
                        cmd = &desktop_commands[k];
        if (!cmd) {
                log_error("Unknown command 'desktop %s'; see 'oobctl desktop --help'.", command);
                return OOBCTL_EXIT_USAGE;
        }
        if (optind < argc) {
                log_error("'oobctl desktop %s' takes no arguments; see 'oobctl desktop --help'.", command);
                return OOBCTL_EXIT_USAGE;
        }
        if (a.json && !cmd->json)
                option = "--json";
        else if (watch_opt && !cmd->watch)
                option = "--max-crashes or --window";
        else if (trial_opt && !cmd->trial)
                option = "--boot-timeout or --stability";
        else if (stop_opt && !cmd->stop)
                option = "--agent-timeout or --acpi-timeout";
        else if (define_opt && !cmd->define)
                option = "--system-disk, --data-disk, --memory, --vcpus, --kernel, --initrd, --cmdline or "
                         "--kvm";
        if (option) {
                log_error("'oobctl desktop %s' does not take %s; see 'oobctl desktop --help'.", command,
                          option);
                return OOBCTL_EXIT_USAGE;
        }
        if (cmd->define && !a.definition.system_disk) {
                log_error("'oobctl desktop define' needs --system-disk; see 'oobctl desktop --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        if (!!a.definition.kernel != !!a.definition.initrd) {
                log_error("'oobctl desktop define' takes --kernel and --initrd together.");
                return OOBCTL_EXIT_USAGE;
        }
        return cmd->run(&a);
}

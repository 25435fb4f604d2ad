/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl update: start a patch window in oobd, or ask whether there is one
 * to run.
 *
 *   oobctl update now [--wait] [--force] [--json] [--bus-address ADDR]
 *   oobctl update check [--json] [--bus-address ADDR]
 *
 * `now --wait` follows the job through oobd's Progress signals until its
 * JobFinished: a progress bar when stdout is a terminal, one line per step
 * (and per 10 %) otherwise, nothing but the result with --json. The exit
 * status tells a script what happened (see update_usage()).
 * oob-window.service runs `oobctl update now --wait` from oob-window.timer.
 */

#include <getopt.h>
#include <jansson.h>
#include <sys/ioctl.h>
#include <systemd/sd-bus.h>

#include "oobctl.h"

#define BUS_NAME "org.oob.Manager1"
#define BUS_PATH "/org/oob/Manager1"
#define BUS_INTERFACE "org.oob.Manager1"
#define UPDATE_FORCE UINT64_C(1)
/* A check refreshes metadata over the network: give it time (oobd bounds it). */
#define CHECK_TIMEOUT_USEC (60ULL * 60ULL * 1000000ULL)

typedef struct UpdateArgs {
        const char *address;
        bool wait;
        bool force;
        bool json;
} UpdateArgs;

/* What `now --wait` sees while following the job. */
typedef struct Follow {
        const UpdateArgs *args;
        const char *id; /* NULL until UpdateNow answered */
        bool tty;
        unsigned columns;
        bool bar_shown;
        char last_step[32];
        unsigned last_percent;
        bool done;
        bool daemon_gone;
        char *outcome, *summary;
} Follow;

static void update_usage(FILE *f) {
        fprintf(f, "Usage: oobctl update now [--wait] [--force] [--json] [--bus-address ADDR]\n"
                   "       oobctl update check [--json] [--bus-address ADDR]\n"
                   "\n"
                   "  now     start a patch window in oobd now (or join the one running) and print\n"
                   "          its job id; with --wait, follow it to the end\n"
                   "  check   refresh the repository's metadata and say whether an update is\n"
                   "          available for this device, without applying it\n"
                   "\n"
                   "Options:\n"
                   "  --wait              follow the job: a progress bar on a terminal, plain lines\n"
                   "                      otherwise; the exit status tells the outcome\n"
                   "  --force             do not defer when the desktop's user is active\n"
                   "  --json              print the result as JSON (no progress output)\n"
                   "  --bus-address ADDR  talk to oobd on this D-Bus address (default: the system bus)\n"
                   "  -h, --help          show this help\n"
                   "\n"
                   "Starting and checking is for root and members of group 'oob'.\n"
                   "\n"
                   "Exit status:\n"
                   "  0  now: started (without --wait) or committed; check: an update is available\n"
                   "  1  failure: the job failed (the disk is as before) or the request was refused\n"
                   "  2  usage error\n"
                   "  3  oobd is not reachable (not running, or the bus is not)\n"
                   "  4  the update was applied, failed its trial boot and was rolled back\n"
                   "  5  nothing to do: up to date\n"
                   "  6  not done now: cancelled, or deferred because the user was active\n");
}

static int exit_status_for(const char *outcome) {
        if (streq(outcome, "committed") || streq(outcome, "available"))
                return OOBCTL_EXIT_OK;
        if (streq(outcome, "rolled-back"))
                return OOBCTL_EXIT_ROLLED_BACK;
        if (streq(outcome, "up-to-date"))
                return OOBCTL_EXIT_NOTHING_TO_DO;
        if (streq(outcome, "cancelled") || streq(outcome, "deferred"))
                return OOBCTL_EXIT_NOT_DONE;
        return OOBCTL_EXIT_FAILURE;
}

static unsigned terminal_columns(void) {
        struct winsize ws;

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
                return ws.ws_col;
        return 80;
}

/* "download  [#######.............]  35%  text", redrawn in place. */
static void draw_bar(Follow *f, const char *step, unsigned percent, const char *text) {
        char line[512];
        unsigned width = 24, filled = percent * width / 100;
        int n;

        n = snprintf(line, sizeof(line), "%-9s [", step);
        for (unsigned i = 0; i < width && n > 0 && (size_t) n < sizeof(line) - 1; i++)
                line[n++] = i < filled ? '#' : '.';
        if (n > 0 && (size_t) n < sizeof(line))
                snprintf(line + n, sizeof(line) - (size_t) n, "] %3u%%  %s", percent, text);
        /* Never wrap: a wrapped line cannot be redrawn with \r. */
        if (strlen(line) > f->columns - 1)
                line[f->columns - 1] = 0;
        printf("\r\033[K%s", line);
        fflush(stdout);
        f->bar_shown = true;
}

static int on_progress(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *step, *text;
        uint32_t percent;

        if (sd_bus_message_read(m, "sus", &step, &percent, &text) < 0 || f->done || f->args->json)
                return 0;
        percent = MIN(percent, 100u);
        if (f->tty)
                draw_bar(f, step, percent, text);
        else {
                /* Plain lines for logs (the timer's journal): each step, then every 10 %. */
                if (streq(step, f->last_step) && percent < f->last_percent + 10 &&
                    !(percent == 100 && f->last_percent < 100))
                        return 0;
                printf("%s %u%%%s%s\n", step, percent, *text ? ": " : "", text);
                fflush(stdout);
        }
        snprintf(f->last_step, sizeof(f->last_step), "%s", step);
        f->last_percent = percent;
        return 0;
}

static int set_str(char **p, const char *s) {
        char *c = strdup(s);

        if (!c)
                return -ENOMEM;
        free(*p);
        *p = c;
        return 0;
}

static int on_job_finished(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *id, *outcome, *summary;

        if (sd_bus_message_read(m, "sss", &id, &outcome, &summary) < 0)
                return 0;
        if (!f->id || !streq(id, f->id))
                return 0;
        if (set_str(&f->outcome, outcome) < 0 || set_str(&f->summary, summary) < 0)
                return -ENOMEM;
        f->done = true;
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (streq(name, BUS_NAME) && *old_owner && !*new_owner)
                f->daemon_gone = true;
        return 0;
}

static int print_result(const UpdateArgs *a, const char *id, const char *outcome, const char *summary) {
        if (a->json) {
                json_t *j = json_pack("{s:s, s:s, s:s}", "id", id, "outcome", outcome, "summary", summary);
                int r;

                if (!j) {
                        log_error("Out of memory.");
                        return OOBCTL_EXIT_FAILURE;
                }
                r = oobctl_print_json(j);
                json_decref(j);
                if (r != OOBCTL_EXIT_OK)
                        return r;
        } else {
                printf("update %s: %s: %s\n", id, outcome, summary);
                fflush(stdout);
        }
        return exit_status_for(outcome);
}

static int update_now(const UpdateArgs *a) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Follow f = {.args = a, .tty = isatty(STDOUT_FILENO) && !a->json, .last_percent = 0};
        const char *id;
        int r, ret;

        r = oobctl_bus_connect(a->address, &bus);
        if (r != OOBCTL_EXIT_OK)
                return r;

        /* Subscribe before asking, so that no signal of our job can slip by. */
        if (a->wait) {
                if ((r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, BUS_INTERFACE, "Progress",
                                             on_progress, &f)) < 0 ||
                    (r = sd_bus_match_signal(bus, NULL, BUS_NAME, BUS_PATH, BUS_INTERFACE, "JobFinished",
                                             on_job_finished, &f)) < 0 ||
                    (r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed,
                                             &f)) < 0) {
                        log_error_errno(
                                r, "Cannot follow the update: subscribing to oobd's signals failed: %m");
                        return OOBCTL_EXIT_FAILURE;
                }
        }

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "UpdateNow", &error, &reply, "t",
                               a->force ? UPDATE_FORCE : UINT64_C(0));
        if (r < 0)
                return oobctl_bus_failure("start an update", &error, r);
        r = sd_bus_message_read(reply, "s", &id);
        if (r < 0) {
                log_error_errno(r, "Cannot start an update: unexpected answer from oobd: %m");
                return OOBCTL_EXIT_FAILURE;
        }

        if (!a->wait) {
                if (a->json) {
                        json_t *j = json_pack("{s:s}", "id", id);

                        ret = j ? oobctl_print_json(j) : OOBCTL_EXIT_FAILURE;
                        json_decref(j);
                        return ret;
                }
                printf("%s\n", id);
                return fflush(stdout) == 0 ? OOBCTL_EXIT_OK : OOBCTL_EXIT_FAILURE;
        }

        if (!a->json && !f.tty) {
                printf("update %s: started\n", id);
                fflush(stdout);
        }
        f.columns = terminal_columns();
        /* Signals that arrived while sd_bus_call() waited for the reply are queued,
         * not dispatched: sd_bus_process() below hands them over now that the id is known. */
        f.id = id;

        while (!f.done && !f.daemon_gone) {
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        if (f.bar_shown)
                                putchar('\n');
                        log_error_errno(r, "Lost the connection to the bus while update %s was running: %m",
                                        id);
                        ret = OOBCTL_EXIT_UNREACHABLE;
                        goto finish;
                }
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR) {
                        log_error_errno(r, "Failed to wait for oobd: %m");
                        ret = OOBCTL_EXIT_FAILURE;
                        goto finish;
                }
        }
        if (f.bar_shown)
                putchar('\n');

        if (!f.done) {
                log_error("oobd stopped while update %s was running; it resumes or rolls back when oobd "
                          "starts "
                          "again (see 'oobctl status').",
                          id);
                ret = OOBCTL_EXIT_UNREACHABLE;
                goto finish;
        }
        ret = print_result(a, id, f.outcome, f.summary);

finish:
        free(f.outcome);
        free(f.summary);
        return ret;
}

static int update_check(const UpdateArgs *a) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        const char *manifest;
        int r;

        r = oobctl_bus_connect(a->address, &bus);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = sd_bus_message_new_method_call(bus, &call, BUS_NAME, BUS_PATH, BUS_INTERFACE, "Check");
        if (r >= 0)
                r = sd_bus_call(bus, call, CHECK_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return oobctl_bus_failure("check for updates", &error, r);
        r = sd_bus_message_read(reply, "s", &manifest);
        if (r < 0) {
                log_error_errno(r, "Cannot check for updates: unexpected answer from oobd: %m");
                return OOBCTL_EXIT_FAILURE;
        }

        if (a->json) {
                json_t *j = json_pack("{s:o}", "available", *manifest ? json_string(manifest) : json_null());

                r = j ? oobctl_print_json(j) : OOBCTL_EXIT_FAILURE;
                json_decref(j);
                if (r != OOBCTL_EXIT_OK)
                        return r;
        } else if (*manifest)
                printf("Update available: %s\n", manifest);
        else
                printf("Up to date.\n");
        if (fflush(stdout) != 0)
                return OOBCTL_EXIT_FAILURE;
        return *manifest ? OOBCTL_EXIT_OK : OOBCTL_EXIT_NOTHING_TO_DO;
}

int verb_update(int argc, char *argv[]) {
        enum { ARG_WAIT = 0x100, ARG_FORCE, ARG_JSON, ARG_BUS_ADDRESS };
        static const struct option options[] = {
                {"wait", no_argument, NULL, ARG_WAIT},
                {"force", no_argument, NULL, ARG_FORCE},
                {"json", no_argument, NULL, ARG_JSON},
                {"bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        UpdateArgs a = {};
        const char *command;
        int c;

        /* Options may come before or after the command (GNU getopt permutes). */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_WAIT:
                        a.wait = true;
                        break;
                case ARG_FORCE:
                        a.force = true;
                        break;
                case ARG_JSON:
                        a.json = true;
                        break;
                case ARG_BUS_ADDRESS:
                        a.address = optarg;
                        break;
                case 'h':
                        update_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        update_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                log_error("Missing command: 'now' or 'check'; see 'oobctl update --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        command = argv[optind++];
        if (optind < argc) {
                log_error("Unexpected argument '%s'; see 'oobctl update --help'.", argv[optind]);
                return OOBCTL_EXIT_USAGE;
        }

        if (streq(command, "now"))
                return update_now(&a);
        if (streq(command, "check")) {
                if (a.wait || a.force) {
                        log_error("--wait and --force are for 'update now'; see 'oobctl update --help'.");
                        return OOBCTL_EXIT_USAGE;
                }
                return update_check(&a);
        }
        log_error("Unknown command '%s': 'now' or 'check'; see 'oobctl update --help'.", command);
        return OOBCTL_EXIT_USAGE;
}

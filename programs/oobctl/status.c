/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl status: what oobd is doing, over D-Bus (org.oob.Manager1).
 *
 *   oobctl status [--json] [--bus-address ADDR]
 *
 * Also the helpers the other D-Bus verbs (update, history) share: the
 * connection and the translation of bus errors into exit statuses.
 */

#include <getopt.h>
#include <jansson.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include "oobctl.h"

#define BUS_NAME "org.oob.Manager1"
#define BUS_PATH "/org/oob/Manager1"
#define BUS_INTERFACE "org.oob.Manager1"

int oobctl_bus_connect(const char *address, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        if (!address) {
                /* The system bus, or $DBUS_SYSTEM_BUS_ADDRESS. */
                r = sd_bus_open_system(&bus);
        } else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0) {
                sd_bus_unref(bus);
                log_error_errno(r, "Cannot reach oobd: cannot connect to %s: %m",
                                address ?: "the system bus");
                return OOBCTL_EXIT_UNREACHABLE;
        }
        *ret = bus;
        return OOBCTL_EXIT_OK;
}

/* Is this error the bus saying nobody owns the name (oobd not running)? */
static bool error_is_unreachable(const sd_bus_error *e, int r) {
        static const char *const names[] = {
                SD_BUS_ERROR_SERVICE_UNKNOWN,
                SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                SD_BUS_ERROR_NO_REPLY,
                SD_BUS_ERROR_DISCONNECTED,
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (sd_bus_error_has_name(e, names[i]))
                        return true;
        return !sd_bus_error_is_set(e) && (r == -ECONNRESET || r == -ENOTCONN || r == -ETIMEDOUT);
}

int oobctl_bus_failure(const char *what, const sd_bus_error *e, int r) {
        if (error_is_unreachable(e, r)) {
                log_error("Cannot %s: oobd is not running (%s).", what,
                          sd_bus_error_is_set(e) ? e->message : strerror(-r));
                return OOBCTL_EXIT_UNREACHABLE;
        }
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED)) {
                /* The bus's own refusal lists the policy rules; ours says it plainly. */
                log_error("Cannot %s: permission denied (only root and members of group 'oob' may start or "
                          "cancel jobs).",
                          what);
                return OOBCTL_EXIT_FAILURE;
        }
        if (sd_bus_error_is_set(e))
                log_error("%s", e->message ?: e->name);
        else
                log_error_errno(r, "Cannot %s: %m", what);
        return OOBCTL_EXIT_FAILURE;
}

int oobctl_bus_call_json(sd_bus *bus, const char *method, const char *what, json_t **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *text;
        json_error_t jerr;
        json_t *j;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, method, &error, &reply, NULL);
        if (r < 0)
                return oobctl_bus_failure(what, &error, r);
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0) {
                log_error_errno(r, "Cannot %s: unexpected answer from oobd: %m", what);
                return OOBCTL_EXIT_FAILURE;
        }
        j = json_loads(text, 0, &jerr);
        if (!j) {
                log_error("Cannot %s: oobd answered something that is not JSON (%s).", what, jerr.text);
                return OOBCTL_EXIT_FAILURE;
        }
        *ret = j;
        return OOBCTL_EXIT_OK;
}

void oobctl_format_time(int64_t t, char *buf, size_t size) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (t <= 0 || !localtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "-");
}

int oobctl_print_json(const json_t *j) {
        if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 || putchar('\n') == EOF ||
            fflush(stdout) != 0) {
                log_error("Failed to write the output.");
                return OOBCTL_EXIT_FAILURE;
        }
        return OOBCTL_EXIT_OK;
}

/* Member key of o as a string, or def. */
const char *oobctl_json_str(const json_t *o, const char *key, const char *def) {
        const json_t *v = json_object_get(o, key);

        return json_is_string(v) ? json_string_value(v) : def;
}

static void status_usage(FILE *f) {
        fprintf(f, "Usage: oobctl status [--json] [--bus-address ADDR]\n"
                   "\n"
                   "What oobd is doing: its state, the running job and its step, the last job's\n"
                   "outcome, and the reports waiting to be sent.\n"
                   "\n"
                   "Options:\n"
                   "  --json              print oobd's status object (GetStatus) instead\n"
                   "  --bus-address ADDR  talk to oobd on this D-Bus address (default: the system bus)\n"
                   "  -h, --help          show this help\n"
                   "\n"
                   "Exit status: 0 success, 1 failure, 2 usage error, 3 oobd not reachable.\n");
}

int verb_status(int argc, char *argv[]) {
        enum { ARG_JSON = 0x100, ARG_BUS_ADDRESS };
        static const struct option options[] = {
                {"json", no_argument, NULL, ARG_JSON},
                {"bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(json_decrefp) json_t *st = NULL;
        const json_t *job, *last;
        const char *address = NULL;
        bool json = false;
        char when[64];
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_JSON:
                        json = true;
                        break;
                case ARG_BUS_ADDRESS:
                        address = optarg;
                        break;
                case 'h':
                        status_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        status_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'; see 'oobctl status --help'.", argv[optind]);
                return OOBCTL_EXIT_USAGE;
        }

        r = oobctl_bus_connect(address, &bus);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = oobctl_bus_call_json(bus, "GetStatus", "get the status", &st);
        if (r != OOBCTL_EXIT_OK)
                return r;

        if (json)
                return oobctl_print_json(st);

        job = json_object_get(st, "job");
        last = json_object_get(st, "last");
        printf("State:           %s\n", oobctl_json_str(st, "state", "?"));
        if (json_is_object(job)) {
                const char *text = oobctl_json_str(job, "text", NULL);

                oobctl_format_time(json_integer_value(json_object_get(job, "started")), when, sizeof(when));
                printf("Job:             %s %s, started %s\n", oobctl_json_str(job, "kind", "?"),
                       oobctl_json_str(job, "id", "?"), when);
                printf("Step:            %s %" JSON_INTEGER_FORMAT "%%%s%s%s\n",
                       oobctl_json_str(job, "step", "?"),
                       json_integer_value(json_object_get(job, "percent")), text ? " (" : "", text ?: "",
                       text ? ")" : "");
        }
        if (json_is_object(last)) {
                const char *manifest = oobctl_json_str(last, "manifest", NULL);

                oobctl_format_time(json_integer_value(json_object_get(last, "finished")), when,
                                   sizeof(when));
                printf("Last job:        %s %s: %s at %s%s%s\n", oobctl_json_str(last, "kind", "?"),
                       oobctl_json_str(last, "id", "?"), oobctl_json_str(last, "outcome", "?"), when,
                       manifest ? ", manifest " : "", manifest ?: "");
                printf("                 %s\n", oobctl_json_str(last, "summary", ""));
        } else
                printf("Last job:        none since oobd started (see 'oobctl history')\n");
        printf("Device:          %s\n", oobctl_json_str(st, "device", "?"));
        printf("Repository:      %s\n", oobctl_json_str(st, "repository", "not configured"));
        if (!json_is_true(json_object_get(st, "patch_window")))
                printf("Patch window:    not available in this oobd\n");
        printf("Pending reports: %" JSON_INTEGER_FORMAT "\n",
               json_integer_value(json_object_get(st, "pending_reports")));
        return fflush(stdout) == 0 ? OOBCTL_EXIT_OK : OOBCTL_EXIT_FAILURE;
}

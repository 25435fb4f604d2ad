/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl history: the update transactions oobd recorded (GetHistory; the
 * file format is in programs/oobd/oobd.h), newest first.
 *
 *   oobctl history [--json] [--bus-address ADDR]
 */

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <systemd/sd-bus.h>

#include "oobctl.h"

/* id, started, took, outcome, failed step, manifest, snapshot, summary */
#define HISTORY_ROW "%-16s  %-19s  %7s  %-11s  %-9s  %-16s  %-8s  %s\n"

static void history_usage(FILE *f) {
        fprintf(f, "Usage: oobctl history [--json] [--bus-address ADDR]\n"
                   "\n"
                   "The patch windows oobd ran, newest first: id, start (local time), duration,\n"
                   "outcome, the step that failed, the manifest, the pre-patch snapshot and a\n"
                   "summary. Windows that found nothing to apply are not recorded.\n"
                   "\n"
                   "Options:\n"
                   "  --json              print oobd's history object (oldest first) instead\n"
                   "  --bus-address ADDR  talk to oobd on this D-Bus address (default: the system bus)\n"
                   "  -h, --help          show this help\n"
                   "\n"
                   "Exit status: 0 success, 1 failure, 2 usage error, 3 oobd not reachable.\n");
}

/* "45s", "12min", "2h05" */
static void format_duration(int64_t seconds, char *buf, size_t size) {
        if (seconds < 0)
                snprintf(buf, size, "-");
        else if (seconds < 60)
                snprintf(buf, size, "%" PRId64 "s", seconds);
        else if (seconds < 3600)
                snprintf(buf, size, "%" PRId64 "min", seconds / 60);
        else
                snprintf(buf, size, "%" PRId64 "h%02" PRId64, seconds / 3600, seconds / 60 % 60);
}

int verb_history(int argc, char *argv[]) {
        enum { ARG_JSON = 0x100, ARG_BUS_ADDRESS };
        static const struct option options[] = {
                {"json", no_argument, NULL, ARG_JSON},
                {"bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(json_decrefp) json_t *h = NULL;
        const json_t *list;
        const char *address = NULL;
        bool json = false;
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
                        history_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        history_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'; see 'oobctl history --help'.", argv[optind]);
                return OOBCTL_EXIT_USAGE;
        }

        r = oobctl_bus_connect(address, &bus);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = oobctl_bus_call_json(bus, "GetHistory", "read the history", &h);
        if (r != OOBCTL_EXIT_OK)
                return r;
        if (json)
                return oobctl_print_json(h);

        list = json_object_get(h, "transactions");
        if (!json_is_array(list)) {
                log_error("Cannot read the history: oobd's answer has no transactions.");
                return OOBCTL_EXIT_FAILURE;
        }
        if (json_array_size(list) == 0) {
                printf("No update transactions recorded.\n");
                return fflush(stdout) == 0 ? OOBCTL_EXIT_OK : OOBCTL_EXIT_FAILURE;
        }

        printf(HISTORY_ROW, "ID", "STARTED", "TOOK", "OUTCOME", "FAILED AT", "MANIFEST", "SNAPSHOT",
               "SUMMARY");
        for (size_t i = json_array_size(list); i > 0; i--) {
                const json_t *e = json_array_get(list, i - 1);
                int64_t started = json_integer_value(json_object_get(e, "started")),
                        finished = json_integer_value(json_object_get(e, "finished"));
                char when[64], took[32];

                oobctl_format_time(started, when, sizeof(when));
                format_duration(finished - started, took, sizeof(took));
                printf(HISTORY_ROW, oobctl_json_str(e, "id", "?"), when, took,
                       oobctl_json_str(e, "outcome", "?"), oobctl_json_str(e, "failed_step", "-"),
                       oobctl_json_str(e, "manifest", "-"), oobctl_json_str(e, "snapshot", "-"),
                       oobctl_json_str(e, "summary", ""));
        }
        return fflush(stdout) == 0 ? OOBCTL_EXIT_OK : OOBCTL_EXIT_FAILURE;
}

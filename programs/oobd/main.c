/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobd: the out-of-band update daemon of the management VM. Started by
 * oobd.service (Type=notify); patch windows come from oob-window.timer
 * through `oobctl update now --wait`, or from an admin.
 */

#include <getopt.h>
#include <signal.h>

#include "oobd.h"

static void usage(FILE *f) {
        fprintf(f, "Usage: oobd [OPTIONS]\n"
                   "\n"
                   "The oob daemon: patch windows, the crash guard and reports, on the D-Bus\n"
                   "name " OOBD_BUS_NAME " (see `oobctl status`).\n"
                   "\n"
                   "Options:\n"
                   "  --config FILE        configuration file (default " OOBD_CONFIG_FILE ";\n"
                   "                       the defaults apply when that one is missing)\n"
                   "  --bus-address ADDR   use this D-Bus address instead of the system bus (tests)\n"
                   "  --log-level LEVEL    emerg, alert, crit, err, warning, notice, info (default), debug\n"
                   "  --dump-config        print the effective configuration and exit\n"
                   "  -h, --help           show this help\n"
                   "  --version            show the version\n"
                   "\n"
                   "Signals: SIGTERM/SIGINT stop (a running job first stops at a safe point; a\n"
                   "second signal stops at once), SIGHUP reloads the configuration when idle.\n"
                   "Exit status: 0 stopped cleanly, 1 failure (configuration, bus), 2 usage error.\n");
}

int main(int argc, char *argv[]) {
        enum { ARG_CONFIG = 0x100, ARG_BUS_ADDRESS, ARG_LOG_LEVEL, ARG_DUMP_CONFIG, ARG_VERSION };
        static const struct option options[] = {
                {"config", required_argument, NULL, ARG_CONFIG},
                {"bus-address", required_argument, NULL, ARG_BUS_ADDRESS},
                {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
                {"dump-config", no_argument, NULL, ARG_DUMP_CONFIG},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *config = OOBD_CONFIG_FILE, *bus_address = NULL;
        bool config_given = false, dump = false;
        sigset_t mask;
        int c, r, level;

        log_set_program("oobd");

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_CONFIG:
                        config = optarg;
                        config_given = true;
                        break;
                case ARG_BUS_ADDRESS:
                        bus_address = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        level = log_level_from_string(optarg);
                        if (level < 0) {
                                log_error("Unknown log level '%s'.", optarg);
                                return 2;
                        }
                        log_set_max_level(level);
                        break;
                case ARG_DUMP_CONFIG:
                        dump = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case ARG_VERSION:
                        printf("oobd %s\n", OOB_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                log_error("Unexpected argument '%s'; see 'oobd --help'.", argv[optind]);
                return 2;
        }

        if (dump) {
                _cleanup_free_ char *error = NULL;
                OobdConfig cfg;

                r = oobd_config_load(config, config_given, &cfg, &error);
                if (r < 0) {
                        log_error_errno(r, "%s", error ?: strerror(-r));
                        return 1;
                }
                r = oobd_config_dump(&cfg, stdout);
                oobd_config_done(&cfg);
                if (r < 0 || fflush(stdout) != 0) {
                        log_error("Failed to write the configuration.");
                        return 1;
                }
                return 0;
        }

        /* Blocked before anything else exists, so only the loop's signalfd sees them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                log_error_errno(-errno, "Failed to block signals: %m");
                return 1;
        }

        r = manager_new(config, config_given, bus_address, &m);
        if (r < 0) {
                if (r == -ENOMEM)
                        log_error("Out of memory.");
                return 1; /* the configuration error was logged */
        }
        r = manager_run(m);
        return r < 0 ? 1 : r;
}

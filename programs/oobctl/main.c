/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl: the admin and helpdesk command line. Global options, then a verb
 * from the table below; each verb lives in its own file and parses its own
 * options. New verbs (snapshot, image, desktop, status, update) are one row.
 */

#include <getopt.h>

#include "oobctl.h"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[]);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        { "tuf", verb_tuf, "TUF client: install a root, refresh metadata, download targets" },
        { "snapshot", verb_snapshot, "system disk snapshots: list, create, revert, pin, delete, retain" },
        { "image", verb_image, "inspect a desktop disk: chain, partitions, Windows volume and version" },
        { "apply", verb_apply, "apply a patch manifest offline to a system disk (admin use)" },
        { "desktop", verb_desktop, "the desktop VM: status, start, stop, crash history, trial boot, guard" },
        { "status", verb_status, "what oobd is doing: state, running job, last outcome" },
        { "update", verb_update, "start a patch window now (update now [--wait]) or check for one" },
        { "history", verb_history, "the patch windows oobd ran and how they ended" },
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: oobctl [--log-level LEVEL] VERB [ARGS...]\n"
                "       oobctl VERB --help\n"
                "\n"
                "Options:\n"
                "  --log-level LEVEL  emerg, alert, crit, err, warning, notice, info (default), debug\n"
                "  -h, --help         show this help\n"
                "  --version          show the version\n"
                "\n"
                "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f,
                "\n"
                "Exit status: 0 success, 1 failure, 2 usage error; the verbs that talk to oobd\n"
                "(status, update, history) also: 3 oobd not reachable, 4 update rolled back,\n"
                "5 nothing to do (up to date), 6 cancelled or deferred (see 'oobctl update --help').\n");
}

/* Our errno vocabulary (lib/lib.h) in words an admin can act on. */
static const struct {
        int error;
        const char *cause;
} error_causes[] = {
        { EBADMSG, "bad signature, hash or length" },
        { EKEYREJECTED, "untrusted key or certificate" },
        { EKEYEXPIRED, "expired metadata (freeze attack or stale repository)" },
        { ESTALE, "rollback attempt" },
        { EFBIG, "larger than allowed" },
        { EPROTO, "malformed document" },
        { EOPNOTSUPP, "unsupported algorithm, key type or format" },
        { ENOENT, "not found" },
        { ETIMEDOUT, "slow retrieval or timeout" },
        { EPROTONOSUPPORT, "URL scheme or host not allowed (plain http only to loopback, or --allow-http)" },
        { ECONNREFUSED, "connection refused" },
        { EHOSTUNREACH, "host unknown or unreachable" },
        { ECONNRESET, "connection or TLS handshake failed" },
        { ELOOP, "too many redirects" },
        { EIO, "server or I/O error" },
        { ENAMETOOLONG, "name too long" },
        { EINVAL, "invalid argument" },
};

const char *oobctl_error_cause(int error) {
        if (error < 0)
                error = -error;
        for (size_t i = 0; i < ELEMENTSOF(error_causes); i++)
                if (error_causes[i].error == error)
                        return error_causes[i].cause;
        return strerror(error);
}

int main(int argc, char *argv[]) {
        enum { ARG_LOG_LEVEL = 0x100, ARG_VERSION };
        static const struct option options[] = {
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c, level;

        log_set_program("oobctl");

        /* "+": stop at the verb, whose options are its own. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_LOG_LEVEL:
                        level = log_level_from_string(optarg);
                        if (level < 0) {
                                log_error("Unknown log level '%s'.", optarg);
                                return OOBCTL_EXIT_USAGE;
                        }
                        log_set_max_level(level);
                        break;
                case 'h':
                        usage(stdout);
                        return OOBCTL_EXIT_OK;
                case ARG_VERSION:
                        printf("oobctl %s\n", OOB_VERSION);
                        return OOBCTL_EXIT_OK;
                default:
                        usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }

        if (optind >= argc) {
                usage(stderr);
                return OOBCTL_EXIT_USAGE;
        }

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name)) {
                        int verb_argc = argc - optind;
                        char **verb_argv = argv + optind;

                        optind = 0;  /* re-initialize getopt for the verb */
                        return verbs[i].run(verb_argc, verb_argv);
                }

        log_error("Unknown verb '%s'; see 'oobctl --help'.", argv[optind]);
        return OOBCTL_EXIT_USAGE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl tuf: the conventional TUF client command line (as conformance test
 * suites drive clients), on top of updater/'s TUF client.
 *
 *   oobctl tuf --metadata-dir DIR init TRUSTED_ROOT_FILE
 *   oobctl tuf --metadata-dir DIR --metadata-url URL refresh
 *   oobctl tuf --metadata-dir DIR --metadata-url URL --target-name NAME [...]
 *              --target-base-url URL --target-dir DIR download
 *
 * Exit 0 on success, 1 on any failure, 2 on a usage error. Each failure is
 * reported once, naming the file or role that failed and why.
 */

#include <getopt.h>

#include "oobctl.h"
#include "updater.h"

typedef struct TufArgs {
        const char *metadata_dir;
        const char *metadata_url;
        const char *target_base_url;
        const char *target_dir;
        char **target_names;
        const char *ca_file;
        bool allow_http;
} TufArgs;

static void tuf_usage(FILE *f) {
        fprintf(f, "Usage: oobctl tuf --metadata-dir DIR init TRUSTED_ROOT_FILE\n"
                   "       oobctl tuf --metadata-dir DIR --metadata-url URL refresh\n"
                   "       oobctl tuf --metadata-dir DIR --metadata-url URL --target-name NAME\n"
                   "                  [--target-name NAME2 ...] --target-base-url URL --target-dir DIR "
                   "download\n"
                   "\n"
                   "  init      install TRUSTED_ROOT_FILE (it must be signed by its own keys) as "
                   "DIR/root.json\n"
                   "  refresh   update the trusted metadata in DIR from URL (TUF client workflow)\n"
                   "  download  refresh, then download each target into DIR, verified against its\n"
                   "            signed length and hashes; a verified file already there is kept\n"
                   "\n"
                   "Options:\n"
                   "  --ca-file PEM   trust the CA certificates in PEM for https (default: the system's)\n"
                   "  --allow-http    allow plain http to any host (default: loopback only)\n"
                   "  -h, --help      show this help\n"
                   "\n"
                   "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

/* "CONTEXT: CAUSE (strerror)" or "CAUSE (strerror)" into one message. */
static int log_client_error(const TufClient *c, int r, const char *what) {
        const char *context = tuf_client_error_context(c);

        if (context)
                return log_error_errno(r, "%s: %s: %s (%m)", what, context, oobctl_error_cause(r));
        return log_error_errno(r, "%s: %s (%m)", what, oobctl_error_cause(r));
}

static int tuf_init(const TufArgs *a, const char *root_file) {
        int r;

        r = tuf_client_init_root(a->metadata_dir, root_file);
        if (r < 0) {
                log_error_errno(r, "Failed to install trusted root %s into %s: %s (%m)", root_file,
                                a->metadata_dir, oobctl_error_cause(r));
                return OOBCTL_EXIT_FAILURE;
        }
        log_debug("Installed %s as the trusted root in %s.", root_file, a->metadata_dir);
        return OOBCTL_EXIT_OK;
}

static int tuf_client_open_and_refresh(const TufArgs *a, TufClient **ret) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *what = NULL;
        TufClientOptions o = {
                .metadata_dir = a->metadata_dir,
                .metadata_url = a->metadata_url,
                .target_base_url = a->target_base_url,
                .fetch =
                        {
                                .ca_file = a->ca_file,
                                .allow_http = a->allow_http,
                        },
        };
        int r;

        r = tuf_client_new(&o, &c);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the TUF client for %s: %s (%m)", a->metadata_dir,
                                       oobctl_error_cause(r));

        r = tuf_client_refresh(c);
        if (r < 0) {
                if (asprintf(&what, "Failed to refresh metadata from %s", a->metadata_url) < 0)
                        return log_error_errno(-ENOMEM, "Out of memory.");
                return log_client_error(c, r, what);
        }

        *ret = TAKE_PTR(c);
        return 0;
}

static int tuf_refresh(const TufArgs *a) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;

        if (tuf_client_open_and_refresh(a, &c) < 0)
                return OOBCTL_EXIT_FAILURE;
        log_debug("Metadata in %s is up to date.", a->metadata_dir);
        return OOBCTL_EXIT_OK;
}

static int tuf_download_one(TufClient *c, const TufArgs *a, const char *name) {
        _cleanup_free_ char *what = NULL, *path = NULL;
        const TufTargetFile *t;
        bool cached;
        int r;

        r = tuf_client_find_target(c, name, &t);
        if (r < 0) {
                if (asprintf(&what, "Failed to find target '%s'", name) < 0)
                        return log_error_errno(-ENOMEM, "Out of memory.");
                return log_client_error(c, r, what);
        }

        r = tuf_client_download_target(c, t, a->target_dir, &path, &cached);
        if (r < 0) {
                if (asprintf(&what, "Failed to download target '%s'", name) < 0)
                        return log_error_errno(-ENOMEM, "Out of memory.");
                return log_client_error(c, r, what);
        }

        log_info("%s: %s %s", name, cached ? "already verified in" : "downloaded to", path);
        return 0;
}

static int tuf_download(const TufArgs *a) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        int r;

        r = mkdir_p(a->target_dir, 0755);
        if (r < 0) {
                log_error_errno(r, "Failed to create target directory %s: %m", a->target_dir);
                return OOBCTL_EXIT_FAILURE;
        }

        if (tuf_client_open_and_refresh(a, &c) < 0)
                return OOBCTL_EXIT_FAILURE;

        for (char **n = a->target_names; *n; n++)
                if (tuf_download_one(c, a, *n) < 0)
                        return OOBCTL_EXIT_FAILURE;
        return OOBCTL_EXIT_OK;
}

/* Check that what the command needs was given; a usage error otherwise. */
static bool tuf_args_require(bool present, const char *command, const char *option) {
        if (!present)
                log_error("'oobctl tuf %s' needs %s; see 'oobctl tuf --help'.", command, option);
        return present;
}

int verb_tuf(int argc, char *argv[]) {
        enum {
                ARG_METADATA_DIR = 0x100,
                ARG_METADATA_URL,
                ARG_TARGET_NAME,
                ARG_TARGET_BASE_URL,
                ARG_TARGET_DIR,
                ARG_CA_FILE,
                ARG_ALLOW_HTTP,
        };
        static const struct option options[] = {
                {"metadata-dir", required_argument, NULL, ARG_METADATA_DIR},
                {"metadata-url", required_argument, NULL, ARG_METADATA_URL},
                {"target-name", required_argument, NULL, ARG_TARGET_NAME},
                {"target-base-url", required_argument, NULL, ARG_TARGET_BASE_URL},
                {"target-dir", required_argument, NULL, ARG_TARGET_DIR},
                {"ca-file", required_argument, NULL, ARG_CA_FILE},
                {"allow-http", no_argument, NULL, ARG_ALLOW_HTTP},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_strv_free_ char **names = NULL;
        TufArgs a = {};
        const char *command;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_METADATA_DIR:
                        a.metadata_dir = optarg;
                        break;
                case ARG_METADATA_URL:
                        a.metadata_url = optarg;
                        break;
                case ARG_TARGET_NAME:
                        if (strv_extend(&names, optarg) < 0) {
                                log_error("Out of memory.");
                                return OOBCTL_EXIT_FAILURE;
                        }
                        break;
                case ARG_TARGET_BASE_URL:
                        a.target_base_url = optarg;
                        break;
                case ARG_TARGET_DIR:
                        a.target_dir = optarg;
                        break;
                case ARG_CA_FILE:
                        a.ca_file = optarg;
                        break;
                case ARG_ALLOW_HTTP:
                        a.allow_http = true;
                        break;
                case 'h':
                        tuf_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        tuf_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        a.target_names = names;

        if (optind >= argc) {
                tuf_usage(stderr);
                return OOBCTL_EXIT_USAGE;
        }
        command = argv[optind++];

        if (!tuf_args_require(a.metadata_dir, command, "--metadata-dir"))
                return OOBCTL_EXIT_USAGE;

        if (streq(command, "init")) {
                if (argc - optind != 1) {
                        log_error("'oobctl tuf init' takes exactly one TRUSTED_ROOT_FILE.");
                        return OOBCTL_EXIT_USAGE;
                }
                return tuf_init(&a, argv[optind]);
        }

        if (!streq(command, "refresh") && !streq(command, "download")) {
                log_error("Unknown tuf command '%s'; see 'oobctl tuf --help'.", command);
                return OOBCTL_EXIT_USAGE;
        }
        if (optind != argc) {
                log_error("'oobctl tuf %s' takes no arguments.", command);
                return OOBCTL_EXIT_USAGE;
        }
        if (!tuf_args_require(a.metadata_url, command, "--metadata-url"))
                return OOBCTL_EXIT_USAGE;
        if (streq(command, "refresh"))
                return tuf_refresh(&a);

        if (!tuf_args_require(names, command, "at least one --target-name") ||
            !tuf_args_require(a.target_base_url, command, "--target-base-url") ||
            !tuf_args_require(a.target_dir, command, "--target-dir"))
                return OOBCTL_EXIT_USAGE;
        return tuf_download(&a);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl snapshot: the system disk's snapshot catalog (recovery/catalog.c).
 *
 *   oobctl snapshot [--dir DIR] init BASE_IMAGE
 *   oobctl snapshot [--dir DIR] list [--json]
 *   oobctl snapshot [--dir DIR] create [--reason R] [--label L] [--manifest M]
 *   oobctl snapshot [--dir DIR] revert|pin|unpin|known-good|delete ID
 *   oobctl snapshot [--dir DIR] retain --keep N
 *
 * Exit 0 on success, 1 on failure, 2 on a usage error. A failure is
 * reported once as "DIR: STEP: CAUSE".
 *
 * Whether the desktop is running is not known here yet: the libvirt check
 * joins with the guard (issue 4); until then every change is made as if the
 * desktop were shut down (running = false), which is the caller's
 * responsibility.
 */

#include <getopt.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#include "oobctl.h"
#include "recovery.h"

#define SNAPSHOT_DIR_DEFAULT "/var/lib/oob/system"
/* id, parent, created, reason, pinned, known-good, size, manifest, label */
#define LIST_ROW "%-6s %-6s %-19s  %-13s %-6s %-10s %10s  %-20s %s\n"

typedef struct SnapshotArgs {
        const char *dir;
        const char *reason;
        const char *label;
        const char *manifest;
        const char *keep;
        bool json;
} SnapshotArgs;

static void snapshot_usage(FILE *f) {
        fprintf(f,
                "Usage: oobctl snapshot [--dir DIR] COMMAND [ARGS...]\n"
                "\n"
                "  init BASE_IMAGE   make DIR the catalog of a system disk whose base is BASE_IMAGE\n"
                "                    (left where it is, never written); the desktop boots DIR's\n"
                "                    active disk\n"
                "  list [--json]     the snapshots: id, parent, created (local time), reason, pinned,\n"
                "                    known-good, layer size, manifest, label; '*' marks the one the\n"
                "                    active disk builds on\n"
                "  create [--reason R] [--label L] [--manifest ID]\n"
                "                    freeze the active disk as a new snapshot (prints its id);\n"
                "                    R: manual (default), pre-patch, known-good, helpdesk, pre-migration\n"
                "  revert ID         a new active disk on snapshot ID; changes since the last snapshot\n"
                "                    are discarded\n"
                "  pin ID, unpin ID  keep (or stop keeping) ID whatever the retention says\n"
                "  known-good ID     mark ID as a state the desktop booted healthy on\n"
                "  delete ID         drop ID; its data moves into the layers that build on it\n"
                "  retain --keep N   keep the newest N snapshots plus the pinned ones, the last\n"
                "                    known-good one, the base and the active disk's; drop the rest\n"
                "\n"
                "Options:\n"
                "  --dir DIR   the catalog directory (default " SNAPSHOT_DIR_DEFAULT ")\n"
                "  -h, --help  show this help\n"
                "\n"
                "The desktop must be shut down for create, revert, delete and retain.\n"
                "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

/* Log "DIR: STEP: CAUSE" and return the failure exit status. */
_printf_(4, 5) static int fail(const SnapshotArgs *a, int r, const char *cause, const char *step_fmt, ...) {
        char step[256];
        va_list ap;

        va_start(ap, step_fmt);
        vsnprintf(step, sizeof(step), step_fmt, ap);
        va_end(ap);
        log_error_errno(r, "%s: %s: %s", a->dir, step, cause ?: oobctl_error_cause(r));
        return OOBCTL_EXIT_FAILURE;
}

/* Causes in this verb's terms; NULL for the generic text. */
static const char *open_cause(const SnapshotArgs *a, int r) {
        _cleanup_free_ char *path = NULL;

        switch (r) {
        case -ENOENT:
                path = path_join(a->dir, "catalog.json");
                if (path && access(path, F_OK) == 0)
                        return "the base image is missing (is its file system mounted?)";
                return "no catalog here (see 'oobctl snapshot init')";
        case -EAGAIN:
                return "the catalog is in use by another process";
        case -EPROTO:
                return "unreadable catalog and no layers to rebuild it from";
        default:
                return NULL;
        }
}

static const char *id_cause(const Catalog *c, const char *id, int r) {
        const Snapshot *s = catalog_get(c, id);

        switch (r) {
        case -ENOENT:
                return "no such snapshot";
        case -EPERM:
                if (s && !s->parent)
                        return "it is the base image";
                if (s && s->pinned)
                        return "it is pinned (unpin it first)";
                return "it is the last known-good snapshot";
        case -EBUSY:
                return "the disk is in use (the desktop is running or an update is staged on it)";
        case -EIO:
                return "disk tool or I/O error";
        default:
                return NULL;
        }
}

static int open_catalog(const SnapshotArgs *a, Catalog **ret) {
        unsigned repairs = 0;
        int r;

        r = catalog_open(a->dir, ret, &repairs);
        if (r < 0)
                return fail(a, r, open_cause(a, r), "open the catalog");
        if (repairs > 0)
                log_notice("%s: repaired the catalog from the files on disk (%u fix%s).", a->dir, repairs,
                           repairs == 1 ? "" : "es");
        return OOBCTL_EXIT_OK;
}

/* "1.5 GiB" */
static void format_size(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) bytes;
        size_t u = 0;

        while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%" PRIu64 " B", bytes);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void format_time(int64_t t, bool utc, char *buf, size_t size) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (!(utc ? gmtime_r(&tt, &tm) : localtime_r(&tt, &tm)) ||
            strftime(buf, size, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, size, "%" PRId64, t);
}

static int snapshot_list_json(const SnapshotArgs *a, const Catalog *c) {
        _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(stdout, true);
        const Snapshot *s, *good = catalog_last_known_good(c);
        size_t n;
        char when[64];

        if (!w)
                return fail(a, -ENOMEM, NULL, "list");
        (void) catalog_list(c, &s, &n);
        jw_begin_object(w);
        jw_kv_string(w, "dir", a->dir);
        jw_kv_string(w, "active", catalog_active(c));
        jw_kv_string(w, "active_parent", catalog_active_parent(c));
        jw_kv_string(w, "last_known_good", good ? good->id : NULL);
        jw_key(w, "snapshots");
        jw_begin_array(w);
        for (size_t i = 0; i < n; i++) {
                jw_begin_object(w);
                jw_kv_string(w, "id", s[i].id);
                jw_kv_string(w, "parent", s[i].parent);
                jw_kv_int(w, "created", s[i].created);
                format_time(s[i].created, true, when, sizeof(when));
                jw_kv_string(w, "created_utc", when);
                jw_kv_string(w, "reason", snapshot_reason_to_string(s[i].reason));
                jw_kv_string(w, "manifest", s[i].manifest);
                jw_kv_string(w, "label", s[i].label);
                jw_kv_bool(w, "pinned", s[i].pinned);
                jw_kv_bool(w, "known_good", s[i].known_good);
                jw_kv_string(w, "layer", s[i].layer);
                jw_kv_uint(w, "layer_size", s[i].layer_size);
                jw_kv_bool(w, "active_parent", streq(s[i].id, catalog_active_parent(c)));
                jw_end_object(w);
        }
        jw_end_array(w);
        jw_end_object(w);
        return OOBCTL_EXIT_OK;
}

static int snapshot_list(const SnapshotArgs *a) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        const Snapshot *s;
        size_t n;
        int r;

        r = open_catalog(a, &c);
        if (r != OOBCTL_EXIT_OK)
                return r;
        if (a->json)
                return snapshot_list_json(a, c);

        (void) catalog_list(c, &s, &n);
        printf(LIST_ROW, "ID", "PARENT", "CREATED", "REASON", "PINNED", "KNOWN-GOOD", "SIZE", "MANIFEST",
               "LABEL");
        for (size_t i = 0; i < n; i++) {
                char when[64], size[32], id[32];

                format_time(s[i].created, false, when, sizeof(when));
                format_size(s[i].layer_size, size, sizeof(size));
                snprintf(id, sizeof(id), "%s%s", s[i].id,
                         streq(s[i].id, catalog_active_parent(c)) ? " *" : "");
                printf(LIST_ROW, id, s[i].parent ?: "-", when,
                       snapshot_reason_to_string(s[i].reason), s[i].pinned ? "yes" : "-",
                       s[i].known_good ? "yes" : "-", size, s[i].manifest ?: "-", s[i].label ?: "-");
        }
        printf("\n* the active disk (%s) builds on snapshot %s\n", catalog_active(c),
               catalog_active_parent(c));
        return OOBCTL_EXIT_OK;
}

static int snapshot_init(const SnapshotArgs *a, const char *base) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        int r;

        r = catalog_create(a->dir, base, &c);
        if (r < 0)
                return fail(a, r,
                            r == -EEXIST   ? "a catalog (or the files of one) is already there"
                            : r == -EAGAIN ? "the catalog is in use by another process"
                            : r == -EINVAL ? "the base must be a disk image, not a catalog file"
                                           : NULL,
                            "create a catalog over %s", base);
        log_info("%s: catalog created over %s; the desktop boots %s.", a->dir, base, catalog_active(c));
        return OOBCTL_EXIT_OK;
}

static int snapshot_create(const SnapshotArgs *a) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *id = NULL;
        SnapshotReason reason = SNAPSHOT_MANUAL;
        int r;

        if (a->reason) {
                reason = snapshot_reason_from_string(a->reason);
                if (reason < 0 || reason == SNAPSHOT_INITIAL || reason == SNAPSHOT_RECOVERED) {
                        log_error("Unknown snapshot reason '%s'; see 'oobctl snapshot --help'.", a->reason);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        r = open_catalog(a, &c);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = catalog_snapshot(c, reason, a->label, a->manifest, /* running= */ false, &id);
        if (r < 0)
                return fail(a, r,
                            r == -EINVAL ? "labels and manifest ids are one line of text, at most 1024 bytes"
                                         : id_cause(c, "", r),
                            "create a snapshot");
        printf("%s\n", id);
        return OOBCTL_EXIT_OK;
}

static int snapshot_id_command(const SnapshotArgs *a, const char *command, const char *id) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        const char *step;
        int r;

        r = open_catalog(a, &c);
        if (r != OOBCTL_EXIT_OK)
                return r;
        if (streq(command, "revert")) {
                step = "revert to snapshot";
                r = catalog_revert(c, id, /* running= */ false);
        } else if (streq(command, "pin")) {
                step = "pin snapshot";
                r = catalog_set_pinned(c, id, true);
        } else if (streq(command, "unpin")) {
                step = "unpin snapshot";
                r = catalog_set_pinned(c, id, false);
        } else if (streq(command, "known-good")) {
                step = "mark as known-good snapshot";
                r = catalog_set_known_good(c, id);
        } else {
                step = "delete snapshot";
                r = catalog_delete(c, id, /* running= */ false);
        }
        if (r < 0)
                return fail(a, r, id_cause(c, id, r), "%s %s", step, id);
        if (streq(command, "revert"))
                log_info("%s: the active disk now builds on snapshot %s.", a->dir, id);
        return OOBCTL_EXIT_OK;
}

static int snapshot_retain(const SnapshotArgs *a) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        uint64_t keep;
        unsigned dropped = 0;
        int r;

        if (safe_atou64(a->keep, &keep) < 0 || keep > UINT_MAX) {
                log_error("--keep needs a number, not '%s'.", a->keep);
                return OOBCTL_EXIT_USAGE;
        }
        r = open_catalog(a, &c);
        if (r != OOBCTL_EXIT_OK)
                return r;
        r = catalog_retain(c, (unsigned) keep, /* running= */ false, &dropped);
        if (r < 0)
                return fail(a, r, id_cause(c, "", r), "keep the newest %" PRIu64 " snapshots", keep);
        log_info("%s: %u snapshot%s dropped.", a->dir, dropped, dropped == 1 ? "" : "s");
        return OOBCTL_EXIT_OK;
}

/* Which commands take which options and how many arguments. */
static const struct {
        const char *name;
        unsigned n_args;
        bool json, create, keep;
} snapshot_commands[] = {
        { "init", .n_args = 1 },
        { "list", .json = true },
        { "create", .create = true },
        { "revert", .n_args = 1 },
        { "pin", .n_args = 1 },
        { "unpin", .n_args = 1 },
        { "known-good", .n_args = 1 },
        { "delete", .n_args = 1 },
        { "retain", .keep = true },
};

int verb_snapshot(int argc, char *argv[]) {
        enum {
                ARG_DIR = 0x100,
                ARG_JSON,
                ARG_REASON,
                ARG_LABEL,
                ARG_MANIFEST,
                ARG_KEEP,
        };
        static const struct option options[] = {
                { "dir", required_argument, NULL, ARG_DIR },
                { "json", no_argument, NULL, ARG_JSON },
                { "reason", required_argument, NULL, ARG_REASON },
                { "label", required_argument, NULL, ARG_LABEL },
                { "manifest", required_argument, NULL, ARG_MANIFEST },
                { "keep", required_argument, NULL, ARG_KEEP },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        SnapshotArgs a = { .dir = SNAPSHOT_DIR_DEFAULT };
        const char *command, *option = NULL;
        size_t k;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DIR:
                        a.dir = optarg;
                        break;
                case ARG_JSON:
                        a.json = true;
                        break;
                case ARG_REASON:
                        a.reason = optarg;
                        break;
                case ARG_LABEL:
                        a.label = optarg;
                        break;
                case ARG_MANIFEST:
                        a.manifest = optarg;
                        break;
                case ARG_KEEP:
                        a.keep = optarg;
                        break;
                case 'h':
                        snapshot_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        snapshot_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }

        if (optind >= argc) {
                log_error("'oobctl snapshot' needs a command; see 'oobctl snapshot --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        command = argv[optind++];
        for (k = 0; k < ELEMENTSOF(snapshot_commands); k++)
                if (streq(command, snapshot_commands[k].name))
                        break;
        if (k >= ELEMENTSOF(snapshot_commands)) {
                log_error("Unknown command 'snapshot %s'; see 'oobctl snapshot --help'.", command);
                return OOBCTL_EXIT_USAGE;
        }
        if ((unsigned) (argc - optind) != snapshot_commands[k].n_args) {
                log_error("'oobctl snapshot %s' takes %s; see 'oobctl snapshot --help'.", command,
                          snapshot_commands[k].n_args == 0 ? "no arguments"
                          : streq(command, "init")         ? "the base image"
                                                           : "one snapshot id");
                return OOBCTL_EXIT_USAGE;
        }
        if (a.json && !snapshot_commands[k].json)
                option = "--json";
        else if ((a.reason || a.label || a.manifest) && !snapshot_commands[k].create)
                option = "--reason, --label or --manifest";
        else if (a.keep && !snapshot_commands[k].keep)
                option = "--keep";
        if (option) {
                log_error("'oobctl snapshot %s' does not take %s; see 'oobctl snapshot --help'.", command,
                          option);
                return OOBCTL_EXIT_USAGE;
        }
        if (snapshot_commands[k].keep && !a.keep) {
                log_error("'oobctl snapshot %s' needs --keep N; see 'oobctl snapshot --help'.", command);
                return OOBCTL_EXIT_USAGE;
        }

        if (streq(command, "init"))
                return snapshot_init(&a, argv[optind]);
        if (streq(command, "list"))
                return snapshot_list(&a);
        if (streq(command, "create"))
                return snapshot_create(&a);
        if (streq(command, "retain"))
                return snapshot_retain(&a);
        return snapshot_id_command(&a, command, argv[optind]);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl apply: a patch manifest applied offline to the system disk of a
 * snapshot catalog, outside a patch window (admin use).
 *
 *   oobctl apply MANIFEST --disk DIR [--payloads DIR] [--json]
 *
 * MANIFEST is a local YAML file (format oob-patch/1), parsed strictly but
 * not signature-checked: the admin vouches for it. Payloads are read from
 * --payloads (default: the manifest's directory), each under its TUF local
 * file name ("payloads%2Fa.tar", as 'oobctl tuf download' saves it) or its
 * plain target path ("payloads/a.tar"); without signed lengths, an archive
 * without max-size may unpack to 32 times its size (at most 16 GiB).
 *
 * The steps, and what a failure at each leaves:
 *   1. open the catalog (locks it for the whole apply);
 *   2. snapshot the active disk (reason pre-patch, the manifest's id);
 *   3. stage a throw-away overlay on that snapshot;
 *   4. serve it with qemu-nbd, find the Windows volume, mount it writable
 *      (hibernated, dirty and BitLocker volumes are refused, unwritten);
 *   5. apply the actions in order (updater/apply.c);
 *   6. unmount and flush;
 *   7. promote the staging overlay to the active disk: one atomic catalog
 *      write.
 * Any failure from step 3 on discards the staging overlay: the active disk
 * is exactly as before (it is the fresh overlay step 2 left on the
 * pre-patch snapshot, which stays in the catalog). A kill at any instant
 * leaves the same state after the next catalog open, which removes the
 * staging file.
 *
 * Failures are one line: "DIR: apply MANIFEST: STEP: CAUSE", the step
 * naming the action when one failed ("action 3 (registry-set
 * SYSTEM\ControlSet001\Services\foo\Start)"; actions count from 1).
 *
 * The desktop must be shut down (running = false is passed on, as by
 * 'oobctl snapshot', until the libvirt check lands).
 */

#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>

#include "oobctl.h"
#include "recovery.h"
#include "updater.h"

typedef struct ApplyArgs {
        const char *manifest_path;
        const char *dir;
        const char *payloads;
        bool json;
} ApplyArgs;

static void apply_usage(FILE *f) {
        fprintf(f, "Usage: oobctl apply MANIFEST --disk DIR [--payloads DIR] [--json]\n"
                   "\n"
                   "Apply a patch manifest (a local oob-patch/1 YAML file) offline to the system disk\n"
                   "whose snapshot catalog is DIR: a pre-patch snapshot is taken, the actions run on a\n"
                   "staging overlay, and only when all of them succeed does it become the active disk.\n"
                   "On any failure the active disk is left exactly as it was.\n"
                   "\n"
                   "Options:\n"
                   "  --disk DIR      the snapshot catalog directory (see 'oobctl snapshot')\n"
                   "  --payloads DIR  where the payloads are, each under its target path or its TUF\n"
                   "                  local file name (default: the manifest's directory)\n"
                   "  --json          print the result as JSON\n"
                   "  -h, --help      show this help\n"
                   "\n"
                   "The desktop must be shut down. Exit status: 0 success, 1 failure, 2 usage error.\n");
}

/* Log "DIR: apply MANIFEST: STEP: CAUSE" and return the failure exit status. */
_printf_(4, 5) static int fail(const ApplyArgs *a, int r, const char *cause, const char *step_fmt, ...) {
        char step[512];
        va_list ap;

        va_start(ap, step_fmt);
        vsnprintf(step, sizeof(step), step_fmt, ap);
        va_end(ap);
        log_error_errno(r, "%s: apply %s: %s: %s", a->dir, a->manifest_path, step,
                        cause ?: oobctl_error_cause(r));
        return OOBCTL_EXIT_FAILURE;
}

static int read_manifest(const ApplyArgs *a, PatchManifest **ret) {
        _cleanup_free_ char *data = NULL, *error = NULL;
        size_t size;
        int r;

        /* The parser refuses more than 1 MiB; read one byte more to let it say so. */
        r = read_full_file(a->manifest_path, 1024 * 1024 + 1, &data, &size);
        if (r < 0)
                return fail(a, r, r == -EFBIG ? "larger than 1 MiB" : NULL, "read the manifest");
        r = patch_manifest_parse(data, size, ret, &error);
        if (r < 0)
                return fail(a, r, error, "parse the manifest");
        return OOBCTL_EXIT_OK;
}

static const char *open_cause(int r) {
        switch (r) {
        case -ENOENT:
                return "no catalog here, or its base image is missing (see 'oobctl snapshot init')";
        case -EAGAIN:
                return "the catalog is in use by another process";
        default:
                return NULL;
        }
}

static void print_json(const ApplyArgs *a, const PatchManifest *m, const char *snapshot, const char *active,
                       const WindowsInfo *w, const ApplyResult *res) {
        _cleanup_(json_writer_freep) JsonWriter *j = json_writer_new(stdout, true);

        if (!j)
                return;
        jw_begin_object(j);
        jw_kv_string(j, "dir", a->dir);
        jw_kv_string(j, "manifest", m->id);
        jw_kv_uint(j, "version", m->version);
        jw_kv_string(j, "pre_patch_snapshot", snapshot);
        jw_kv_string(j, "active", active);
        jw_kv_uint(j, "windows_build", w->build);
        jw_kv_uint(j, "actions", res->actions_done);
        jw_kv_uint(j, "files_written", res->files_written);
        jw_kv_uint(j, "bytes_written", res->bytes_written);
        jw_kv_uint(j, "files_deleted", res->files_deleted);
        jw_kv_uint(j, "registry_changes", res->registry_changes);
        jw_end_object(j);
}

/* Steps 4 to 6 on the staging overlay. Returns an exit status, having
 * logged the failure. */
static int apply_on_stage(const ApplyArgs *a, const PatchManifest *m, const char *stage,
                          WindowsInfo *ret_info, ApplyResult *ret) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        _cleanup_free_ char *error = NULL, *what = NULL;
        VolumeRefusal refusal = VOLUME_OK;
        WindowsInfo info = {};
        ApplyResult res = {};
        bool bitlocker = false;
        Partition p;
        int r;

        r = offline_disk_open(stage, true, /* running= */ false, &d);
        if (r < 0)
                return fail(a, r, r == -EBUSY ? "the disk is in use (is the desktop running?)" : NULL,
                            "serve the staging overlay %s", stage);
        r = image_find_windows(d, &p, &bitlocker);
        if (r < 0)
                return fail(a, r,
                            bitlocker      ? volume_refusal_advice(VOLUME_BITLOCKER)
                            : r == -ENOENT ? "no NTFS partition holds Windows/System32/config/SYSTEM"
                                           : NULL,
                            "find the Windows volume");
        r = ntfs_volume_open(d, &p, true, &v, &refusal);
        if (r < 0)
                return fail(a, r, refusal != VOLUME_OK ? volume_refusal_advice(refusal) : NULL,
                            "mount the Windows volume (partition %u)%s%s", p.number,
                            refusal != VOLUME_OK ? ": " : "",
                            refusal != VOLUME_OK ? volume_refusal_to_string(refusal) : "");

        r = windows_info_read(v, &info);
        if (r < 0)
                return fail(a, r, NULL, "read the Windows version (SOFTWARE hive)");
        if ((m->os_build_min > 0 && info.build < m->os_build_min) ||
            (m->os_build_max > 0 && info.build > m->os_build_max)) {
                uint64_t build = info.build;

                windows_info_done(&info);
                return fail(a, -EINVAL, "the manifest's applies-to os-build does not include this build",
                            "check Windows build %" PRIu64, build);
        }

        r = apply_manifest_full(v, m, &(ApplyOptions){.payload_dir = a->payloads}, &res, &error);
        if (r < 0) {
                windows_info_done(&info);
                what = res.failed_action < m->n_actions
                               ? apply_action_describe(&m->actions[res.failed_action])
                               : NULL;
                return fail(a, r, error, "action %zu (%s)", res.failed_action + 1, what ?: "?");
        }

        /* Unmount (libntfs-3g writes its caches back), then make qemu-nbd
         * write everything to the overlay file before it is promoted. */
        v = ntfs_volume_close(v);
        r = offline_disk_flush(d);
        if (r < 0) {
                windows_info_done(&info);
                return fail(a, r, NULL, "flush the staging overlay");
        }
        d = offline_disk_close(d);
        *ret_info = info;
        *ret = res;
        return OOBCTL_EXIT_OK;
}

static int apply_run(const ApplyArgs *a) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *snapshot = NULL, *stage = NULL;
        _cleanup_(windows_info_done) WindowsInfo info = {};
        ApplyResult res = {};
        unsigned repairs = 0;
        int r;

        r = read_manifest(a, &m);
        if (r != OOBCTL_EXIT_OK)
                return r;

        r = catalog_open(a->dir, &c, &repairs);
        if (r < 0)
                return fail(a, r, open_cause(r), "open the catalog");
        if (repairs > 0)
                log_notice("%s: repaired the catalog from the files on disk (%u fix%s).", a->dir, repairs,
                           repairs == 1 ? "" : "es");

        r = catalog_snapshot(c, SNAPSHOT_PRE_PATCH, NULL, m->id, /* running= */ false, &snapshot);
        if (r < 0)
                return fail(a, r, r == -EBUSY ? "the disk is in use (is the desktop running?)" : NULL,
                            "take the pre-patch snapshot");
        r = catalog_stage(c, snapshot, &stage);
        if (r < 0)
                return fail(a, r, NULL, "create a staging overlay on snapshot %s", snapshot);

        r = apply_on_stage(a, m, stage, &info, &res);
        if (r != OOBCTL_EXIT_OK) {
                int k = catalog_discard_stage(c);
                if (k < 0)
                        log_warning_errno(k,
                                          "%s: could not remove the staging overlay %s (the next catalog "
                                          "open removes it): %m",
                                          a->dir, stage);
                return r;
        }

        r = catalog_promote(c);
        if (r < 0) {
                (void) catalog_discard_stage(c);
                return fail(a, r, NULL, "make the patched overlay the active disk");
        }

        if (a->json)
                print_json(a, m, snapshot, catalog_active(c), &info, &res);
        else
                log_info("%s: applied %s version %" PRIu64 " to Windows build %" PRIu64 ": %zu action%s, "
                         "%" PRIu64 " file%s written (%" PRIu64 " bytes), %" PRIu64 " deleted, %" PRIu64
                         " registry change%s; pre-patch snapshot %s; the desktop boots %s.",
                         a->dir, m->id, m->version, info.build, res.actions_done,
                         res.actions_done == 1 ? "" : "s", res.files_written,
                         res.files_written == 1 ? "" : "s", res.bytes_written, res.files_deleted,
                         res.registry_changes, res.registry_changes == 1 ? "" : "s", snapshot,
                         catalog_active(c));
        return OOBCTL_EXIT_OK;
}

int verb_apply(int argc, char *argv[]) {
        enum {
                ARG_DISK = 0x100,
                ARG_PAYLOADS,
                ARG_JSON,
        };
        static const struct option options[] = {
                {"disk", required_argument, NULL, ARG_DISK},
                {"payloads", required_argument, NULL, ARG_PAYLOADS},
                {"json", no_argument, NULL, ARG_JSON},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_free_ char *manifest_dir = NULL;
        ApplyArgs a = {};
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_DISK:
                        a.dir = optarg;
                        break;
                case ARG_PAYLOADS:
                        a.payloads = optarg;
                        break;
                case ARG_JSON:
                        a.json = true;
                        break;
                case 'h':
                        apply_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        apply_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        if (argc - optind != 1) {
                log_error("'oobctl apply' takes one manifest file; see 'oobctl apply --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        if (!a.dir) {
                log_error("'oobctl apply' needs --disk DIR, the snapshot catalog of the system disk.");
                return OOBCTL_EXIT_USAGE;
        }
        a.manifest_path = argv[optind];
        if (!a.payloads) {
                _cleanup_free_ char *copy = strdup(a.manifest_path);

                if (copy)
                        manifest_dir = strdup(dirname(copy));
                if (!manifest_dir) {
                        log_error("Out of memory.");
                        return OOBCTL_EXIT_FAILURE;
                }
                a.payloads = manifest_dir;
        }
        return apply_run(&a);
}

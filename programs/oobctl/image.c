/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * oobctl image inspect: what is on a desktop disk, read-only.
 *
 *   oobctl image inspect DISK [--json]
 *
 * DISK is an image file (qcow2 or raw) or a snapshot catalog directory
 * (its active disk; the catalog is locked while it is read). Shown: the
 * qcow2 chain (qemu-img), the partition table, the Windows volume's state
 * (label, size, free space, and whether it may be patched offline:
 * hibernated, dirty or BitLocker volumes may not, with what to do about
 * it), the Windows product, edition and build from the SOFTWARE hive, and
 * the first-boot commands staged by patches with their results.
 *
 * Everything is opened read-only (qemu-nbd -r, libntfs-3g read-only): the
 * disk is not changed, not even its NTFS journal. A part that cannot be
 * read (no Windows volume, an encrypted one) is reported as such; only a
 * disk that cannot be opened at all fails the command.
 */

#include <getopt.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "oobctl.h"
#include "recovery.h"
#include "updater.h"

typedef struct Inspection {
        const char *disk; /* the image inspected */
        DiskLayer *chain;
        size_t n_chain;
        PartitionTable table;
        Partition *partitions;
        size_t n_partitions;
        /* the Windows volume */
        bool found, bitlocker;
        Partition windows;
        VolumeState state;
        bool have_state;
        int volume_error; /* why the volume could not be read, or 0 */
        WindowsInfo info;
        bool have_info;
        FirstBootResult *firstboot;
        size_t n_firstboot;
} Inspection;

static void inspection_done(Inspection *i) {
        disk_chain_free(i->chain, i->n_chain);
        free(i->partitions);
        volume_state_done(&i->state);
        windows_info_done(&i->info);
        firstboot_results_free(i->firstboot, i->n_firstboot);
}

int image_find_windows(OfflineDisk *d, Partition *ret, bool *ret_bitlocker) {
        _cleanup_free_ Partition *parts = NULL;
        size_t n = 0;
        int r;

        r = disk_find_windows(d, ret);
        if (r != -ENOENT) {
                *ret_bitlocker = false;
                return r;
        }
        /* An encrypted volume cannot be looked into: if there is one, it
         * is the likely reason Windows was not found. */
        *ret_bitlocker = false;
        if (disk_partitions(d, NULL, &parts, &n) >= 0)
                for (size_t i = 0; i < n; i++)
                        if (parts[i].bitlocker) {
                                *ret = parts[i];
                                *ret_bitlocker = true;
                        }
        return -ENOENT;
}

static void image_usage(FILE *f) {
        fprintf(f, "Usage: oobctl image inspect DISK [--json]\n"
                   "\n"
                   "Show a desktop disk, read-only: its qcow2 chain, partitions, the Windows volume's\n"
                   "state (whether it can be patched offline), the Windows version, and the first-boot\n"
                   "commands patches staged with their results. DISK is an image file or a snapshot\n"
                   "catalog directory (its active disk).\n"
                   "\n"
                   "Options:\n"
                   "  --json      print the result as JSON\n"
                   "  -h, --help  show this help\n"
                   "\n"
                   "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

/* "1.5 GiB" */
static void format_size(uint64_t bytes, char *buf, size_t size) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
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

/* Read everything that can be read. Fails only when the disk cannot be
 * opened or its partition table read. */
static int inspect(const char *image, Inspection *ret) {
        _cleanup_(offline_disk_closep) OfflineDisk *d = NULL;
        _cleanup_(ntfs_volume_closep) NtfsVolume *v = NULL;
        Inspection *i = ret;
        VolumeRefusal refusal = VOLUME_OK;
        int r;

        i->disk = image;
        r = disk_chain_info(image, &i->chain, &i->n_chain);
        if (r < 0) {
                log_error_errno(r, "%s: read the disk chain (qemu-img info): %s", image,
                                oobctl_error_cause(r));
                return r;
        }
        r = offline_disk_open(image, false, /* running= */ false, &d);
        if (r < 0) {
                log_error_errno(r, "%s: open the disk read-only (qemu-nbd): %s", image,
                                r == -EIO ? "disk tool error (is the disk in use by a running desktop?)"
                                          : oobctl_error_cause(r));
                return r;
        }
        r = disk_partitions(d, &i->table, &i->partitions, &i->n_partitions);
        if (r < 0) {
                log_error_errno(r, "%s: read the partition table: %s", image,
                                r == -EPROTO ? "neither GPT nor MBR" : oobctl_error_cause(r));
                return r;
        }

        r = image_find_windows(d, &i->windows, &i->bitlocker);
        if (r < 0) {
                i->found = i->bitlocker;
                i->volume_error = r;
                if (i->bitlocker)
                        i->state.refusal = VOLUME_BITLOCKER;
                return 0;
        }
        i->found = true;
        r = ntfs_volume_open(d, &i->windows, false, &v, &refusal);
        if (r >= 0)
                r = ntfs_volume_state(v, &i->state);
        if (r < 0) {
                i->volume_error = r;
                return 0;
        }
        i->have_state = true;
        i->have_info = windows_info_read(v, &i->info) >= 0;
        if (apply_read_firstboot_results(v, &i->firstboot, &i->n_firstboot) < 0) {
                i->firstboot = NULL;
                i->n_firstboot = 0;
        }
        return 0;
}

static void print_json(const Inspection *i) {
        _cleanup_(json_writer_freep) JsonWriter *w = json_writer_new(stdout, true);

        if (!w)
                return;
        jw_begin_object(w);
        jw_kv_string(w, "disk", i->disk);
        jw_key(w, "chain");
        jw_begin_array(w);
        for (size_t k = 0; k < i->n_chain; k++) {
                jw_begin_object(w);
                jw_kv_string(w, "path", i->chain[k].path);
                jw_kv_string(w, "format", i->chain[k].format);
                jw_kv_uint(w, "virtual_size", i->chain[k].virtual_size);
                jw_kv_uint(w, "actual_size", i->chain[k].actual_size);
                jw_kv_string(w, "backing", i->chain[k].backing);
                jw_end_object(w);
        }
        jw_end_array(w);
        jw_kv_string(w, "partition_table", partition_table_to_string(i->table));
        jw_key(w, "partitions");
        jw_begin_array(w);
        for (size_t k = 0; k < i->n_partitions; k++) {
                const Partition *p = &i->partitions[k];

                jw_begin_object(w);
                jw_kv_uint(w, "number", p->number);
                jw_kv_uint(w, "offset", p->offset);
                jw_kv_uint(w, "size", p->size);
                jw_kv_string(w, "kind", partition_kind_to_string(p->kind));
                jw_kv_bool(w, "ntfs", p->ntfs);
                jw_kv_bool(w, "bitlocker", p->bitlocker);
                jw_kv_bool(w, "windows", i->found && p->number == i->windows.number);
                jw_end_object(w);
        }
        jw_end_array(w);

        jw_key(w, "windows_volume");
        if (!i->found)
                jw_null(w);
        else {
                jw_begin_object(w);
                jw_kv_uint(w, "partition", i->windows.number);
                jw_kv_string(w, "state", volume_refusal_to_string(i->state.refusal));
                jw_kv_bool(w, "patchable", i->have_state && i->state.refusal == VOLUME_OK);
                jw_kv_string(w, "advice",
                             i->state.refusal != VOLUME_OK ? volume_refusal_advice(i->state.refusal) : NULL);
                if (i->have_state) {
                        char version[32];

                        snprintf(version, sizeof(version), "%u.%u", i->state.ntfs_major,
                                 i->state.ntfs_minor);
                        jw_kv_string(w, "label", i->state.label);
                        jw_kv_uint(w, "size", i->state.size);
                        jw_kv_uint(w, "free", i->state.free);
                        jw_kv_string(w, "ntfs_version", version);
                } else if (i->state.refusal == VOLUME_OK)
                        jw_kv_string(w, "error", oobctl_error_cause(i->volume_error));
                jw_end_object(w);
        }

        jw_key(w, "windows");
        if (!i->have_info)
                jw_null(w);
        else {
                jw_begin_object(w);
                jw_kv_string(w, "product_name", i->info.product_name);
                jw_kv_string(w, "edition_id", i->info.edition_id);
                jw_kv_string(w, "display_version", i->info.display_version);
                jw_kv_uint(w, "build", i->info.build);
                jw_kv_uint(w, "ubr", i->info.ubr);
                jw_end_object(w);
        }

        jw_key(w, "firstboot");
        jw_begin_array(w);
        for (size_t k = 0; k < i->n_firstboot; k++) {
                const FirstBootResult *f = &i->firstboot[k];

                jw_begin_object(w);
                jw_kv_string(w, "name", f->name);
                jw_kv_string(w, "manifest", f->manifest);
                jw_kv_uint(w, "action", f->action);
                jw_kv_string(w, "state", firstboot_state_to_string(f->state));
                if (f->state == FIRSTBOOT_EXITED)
                        jw_kv_int(w, "exit_code", f->exit_code);
                else {
                        jw_key(w, "exit_code");
                        jw_null(w);
                }
                jw_kv_string(w, "started", f->started);
                jw_kv_string(w, "ended", f->ended);
                jw_end_object(w);
        }
        jw_end_array(w);
        jw_end_object(w);
}

static void print_text(const Inspection *i) {
        char a[32], b[32];

        printf("Disk: %s\n\nChain (top first):\n", i->disk);
        for (size_t k = 0; k < i->n_chain; k++) {
                format_size(i->chain[k].virtual_size, a, sizeof(a));
                format_size(i->chain[k].actual_size, b, sizeof(b));
                printf("  %s\n      %s, %s virtual, %s on the host%s%s\n", i->chain[k].path,
                       i->chain[k].format, a, b, i->chain[k].backing ? ", backing " : "",
                       i->chain[k].backing ?: "");
        }

        printf("\nPartitions (%s):\n", partition_table_to_string(i->table));
        printf("  %-3s %-11s %12s %12s  %s\n", "#", "KIND", "OFFSET", "SIZE", "CONTENTS");
        for (size_t k = 0; k < i->n_partitions; k++) {
                const Partition *p = &i->partitions[k];

                format_size(p->offset, a, sizeof(a));
                format_size(p->size, b, sizeof(b));
                printf("  %-3u %-11s %12s %12s  %s%s\n", p->number, partition_kind_to_string(p->kind), a, b,
                       p->bitlocker ? "BitLocker"
                       : p->ntfs    ? "NTFS"
                                    : "-",
                       i->found && p->number == i->windows.number ? " (Windows)" : "");
        }

        printf("\nWindows volume: ");
        if (!i->found)
                printf("none found (%s)\n",
                       i->volume_error == -ENOENT ? "no NTFS partition holds Windows/System32/config/SYSTEM"
                                                  : oobctl_error_cause(i->volume_error));
        else {
                printf("partition %u\n", i->windows.number);
                if (i->have_state) {
                        format_size(i->state.size, a, sizeof(a));
                        format_size(i->state.free, b, sizeof(b));
                        printf("  label \"%s\", %s, %s free, NTFS %u.%u\n", i->state.label ?: "", a, b,
                               i->state.ntfs_major, i->state.ntfs_minor);
                } else if (i->state.refusal == VOLUME_OK)
                        printf("  cannot be read: %s\n", oobctl_error_cause(i->volume_error));
                printf("  state: %s\n  %s\n", volume_refusal_to_string(i->state.refusal),
                       volume_refusal_advice(i->state.refusal));
        }

        if (i->have_info)
                printf("\nWindows: %s (%s)%s%s, build %" PRIu64 ".%" PRIu64 "\n",
                       i->info.product_name ?: "?", i->info.edition_id ?: "?",
                       i->info.display_version ? " " : "", i->info.display_version ?: "", i->info.build,
                       i->info.ubr);

        if (i->have_state) {
                printf("\nFirst-boot commands: %s\n", i->n_firstboot == 0 ? "none" : "");
                for (size_t k = 0; k < i->n_firstboot; k++) {
                        const FirstBootResult *f = &i->firstboot[k];

                        if (f->state == FIRSTBOOT_EXITED)
                                printf("  %-40s exit code %d (%s .. %s)\n", f->name, f->exit_code,
                                       f->started ?: "?", f->ended ?: "?");
                        else
                                printf("  %-40s %s\n", f->name,
                                       f->state == FIRSTBOOT_PENDING ? "pending (runs at the next boot)"
                                                                     : "interrupted (not run again)");
                }
        }
}

static int image_inspect(const char *disk, bool json) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(inspection_done) Inspection i = {};
        const char *image = disk;
        struct stat st;
        int r;

        if (stat(disk, &st) < 0) {
                r = -errno;
                log_error_errno(r, "%s: %s", disk, oobctl_error_cause(r));
                return OOBCTL_EXIT_FAILURE;
        }
        if (S_ISDIR(st.st_mode)) {
                r = catalog_open(disk, &c, NULL);
                if (r < 0) {
                        log_error_errno(r, "%s: open the catalog: %s", disk,
                                        r == -EAGAIN   ? "the catalog is in use by another process"
                                        : r == -ENOENT ? "no catalog here, or its base image is missing"
                                                       : oobctl_error_cause(r));
                        return OOBCTL_EXIT_FAILURE;
                }
                image = catalog_active(c);
        }

        r = inspect(image, &i);
        if (r < 0)
                return OOBCTL_EXIT_FAILURE;
        if (json)
                print_json(&i);
        else
                print_text(&i);
        return OOBCTL_EXIT_OK;
}

int verb_image(int argc, char *argv[]) {
        enum { ARG_JSON = 0x100 };
        static const struct option options[] = {
                {"json", no_argument, NULL, ARG_JSON},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        bool json = false;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_JSON:
                        json = true;
                        break;
                case 'h':
                        image_usage(stdout);
                        return OOBCTL_EXIT_OK;
                default:
                        image_usage(stderr);
                        return OOBCTL_EXIT_USAGE;
                }
        }
        if (optind >= argc || !streq(argv[optind], "inspect")) {
                log_error("'oobctl image' needs a command (inspect); see 'oobctl image --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        if (argc - optind != 2) {
                log_error("'oobctl image inspect' takes one disk; see 'oobctl image --help'.");
                return OOBCTL_EXIT_USAGE;
        }
        return image_inspect(argv[optind + 1], json);
}

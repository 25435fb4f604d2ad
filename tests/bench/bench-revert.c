/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-revert: how long the guard takes from a panic event to the desktop
 * running again on the reverted system disk, on the real libvirtd and the
 * stand-in desktop, excluding the guest's own boot (the clock stops at the
 * STARTED event that follows the guard's desktop_start()).
 *
 * Reference, measured in the same run on the same domain: the same guard
 * with a threshold it never reaches, so after the panic it only starts the
 * desktop again (no catalog, no revert, no disk swap). The ratio shows what
 * the revert adds. Rounds alternate between the two.
 *
 * Each round is also split into phases, timed around the guard's calls of
 * the real hv functions (through its desktop-ops table, wrapping, not
 * replacing them): teardown (panic event until no QEMU holds the disks:
 * libvirt's on_crash destroy), disk (catalog revert and the domain's disk
 * swap; ~0 for the reference), start (desktop_start()).
 *
 *   bench-revert --uri URI --standin DIR --good GOOD.qcow2 --bad BAD.qcow2
 *                --data DATA.qcow2 --work DIR [--rounds N] [--name NAME]
 *
 * GOOD boots healthy, BAD panics at boot (a crashing driver,
 * tests/standin/README.md); both from tests/fixtures/make-windows-disk.
 * WORK gets the catalog (base GOOD, known-good; snapshot 2 holds BAD's
 * contents) and the guard's state. Prints key=value lines on stdout, one
 * line per round on stderr; exit 0 when every round ended on the right disk.
 */

#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "hv.h"
#include "recovery.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define ROUND_TIMEOUT_SEC 120
#define ROUNDS_MAX 20

typedef struct Bench {
        sd_event *event;
        Desktop *desktop;
        Guard *guard;
        bool crashed, restarted, timed_out;
        uint64_t crash_usec, started_usec;
        /* CLOCK_REALTIME, noted when the guard's calls return: desktop off
         * (libvirt's teardown done), start called, start returned */
        uint64_t off_usec, start_begin_usec, start_end_usec;
} Bench;

/* One round's phases, microseconds. */
typedef struct Phases {
        uint64_t total;    /* panic event -> STARTED event */
        uint64_t teardown; /* panic event -> no QEMU holds the disks */
        uint64_t disk;     /* -> desktop_start() called: catalog revert, domain disk swap */
        uint64_t start;    /* desktop_start() */
} Phases;

/* The guard's desktop steps are the real ones; the wrappers only note when
 * they return. */
static Bench *bench;

static uint64_t now_realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int timed_is_running(Desktop *d, bool *ret) {
        int r = desktop_is_running(d, ret);

        if (r >= 0 && !*ret && bench->crashed && bench->off_usec == 0)
                bench->off_usec = now_realtime();
        return r;
}

static int timed_destroy(Desktop *d) {
        int r = desktop_destroy(d);

        if (bench->crashed && bench->off_usec == 0)
                bench->off_usec = now_realtime();
        return r;
}

static int timed_start(Desktop *d) {
        int r;

        bench->start_begin_usec = now_realtime();
        r = desktop_start(d);
        bench->start_end_usec = now_realtime();
        return r;
}

static const GuardDesktopOps timed_ops = {
        .state = desktop_state,
        .is_running = timed_is_running,
        .destroy = timed_destroy,
        .set_system_disk = desktop_set_system_disk,
        .start = timed_start,
};

static void on_event(Desktop *d, const DesktopEvent *ev, void *userdata) {
        Bench *b = userdata;

        if (ev->type == DESKTOP_EVENT_CRASHED && !b->crashed) {
                b->crashed = true;
                b->crash_usec = ev->usec;
        } else if (ev->type == DESKTOP_EVENT_STARTED && b->crashed && !b->restarted) {
                b->restarted = true;
                b->started_usec = ev->usec;
        }
        if (b->guard)
                guard_feed(b->guard, ev);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Bench *b = userdata;

        b->timed_out = true;
        return 0;
}

static int ensure_off(Desktop *d) {
        bool running;
        int r;

        r = desktop_is_running(d, &running);
        if (r < 0 || !running)
                return r;
        return desktop_destroy(d);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Median of one phase (the field at offset) over n rounds, in milliseconds. */
static double median_ms(const Phases *p, size_t n, size_t offset) {
        uint64_t v[ROUNDS_MAX];

        for (size_t i = 0; i < n; i++)
                v[i] = *(const uint64_t *) ((const char *) &p[i] + offset);
        qsort(v, n, sizeof(*v), cmp_u64);
        if (n % 2)
                return (double) v[n / 2] / 1000.0;
        return (double) (v[n / 2 - 1] + v[n / 2]) / 2000.0;
}

/* One round: the desktop on the crashing state, a guard, wait for the panic
 * and the start after it. revert: a threshold of 1 (reverts at the first
 * crash), else one it never reaches (starts it again). */
static int round_run(Bench *b, const char *catalog_dir, const char *state_dir, bool revert, Phases *ret) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_free_ char *history = path_join(state_dir, "history.json"), *system = NULL, *data = NULL;
        sd_event_source *timer = NULL;
        GuardOptions o = {
                .state_dir = state_dir,
                .catalog_dir = catalog_dir,
                .max_crashes = revert ? 1 : 1000,
                .window_sec = 600,
        };
        int r;

        if (!history)
                return -ENOMEM;
        r = ensure_off(b->desktop);
        if (r < 0)
                return log_error_errno(r, "bench-revert: could not stop the desktop: %m");
        r = catalog_open(catalog_dir, &c, NULL);
        if (r >= 0)
                r = catalog_revert(c, "2", false);
        if (r >= 0)
                r = desktop_set_system_disk(b->desktop, catalog_active(c));
        if (r < 0)
                return log_error_errno(r, "bench-revert: could not put the crashing state back: %m");
        c = catalog_free(c);
        (void) unlink(history);

        r = guard_new(b->event, b->desktop, &o, &b->guard);
        if (r < 0)
                return log_error_errno(r, "bench-revert: guard: %m");
        guard_set_desktop_ops(b->guard, &timed_ops);
        b->crashed = b->restarted = b->timed_out = false;
        b->off_usec = b->start_begin_usec = b->start_end_usec = 0;
        r = sd_event_add_time_relative(b->event, &timer, CLOCK_MONOTONIC, ROUND_TIMEOUT_SEC * USEC_PER_SEC,
                                       0, on_timeout, b);
        if (r >= 0)
                r = desktop_start(b->desktop);
        /* sd_event_run(), not sd_event_loop(): an exited loop takes no new sources */
        while (r >= 0 && !b->restarted && !b->timed_out)
                r = sd_event_run(b->event, UINT64_MAX);
        sd_event_source_disable_unref(timer);
        b->guard = guard_free(b->guard);
        if (r < 0)
                return log_error_errno(r, "bench-revert: round: %m");
        if (b->timed_out)
                return log_error_errno(-ETIMEDOUT, "bench-revert: no panic and start within %d s",
                                       ROUND_TIMEOUT_SEC);

        /* It must run on the right disk: reverted (on known-good 1) or not (2). */
        r = catalog_open(catalog_dir, &c, NULL);
        if (r >= 0)
                r = desktop_disks(b->desktop, &system, &data);
        if (r < 0)
                return log_error_errno(r, "bench-revert: could not check the disks: %m");
        if (!streq(system, catalog_active(c)) || !streq(catalog_active_parent(c), revert ? "1" : "2"))
                return log_error_errno(-EIO, "bench-revert: the desktop runs %s (catalog active %s on %s)",
                                       system, catalog_active(c), catalog_active_parent(c));
        if (b->off_usec == 0 || b->start_begin_usec < b->off_usec)
                return log_error_errno(-EIO, "bench-revert: the guard's steps were not seen");
        *ret = (Phases){
                .total = b->started_usec - b->crash_usec,
                .teardown = b->off_usec - b->crash_usec,
                .disk = b->start_begin_usec - b->off_usec,
                .start = b->start_end_usec - b->start_begin_usec,
        };
        return ensure_off(b->desktop);
}

static void print_round(uint64_t i, const Phases *rev, const Phases *plain) {
        fprintf(stderr,
                "bench-revert: round %" PRIu64 ": revert %.1f ms (teardown %.1f, disk %.1f, start %.1f); "
                "plain restart %.1f ms (teardown %.1f, start %.1f)\n",
                i + 1, (double) rev->total / 1000.0, (double) rev->teardown / 1000.0,
                (double) rev->disk / 1000.0, (double) rev->start / 1000.0, (double) plain->total / 1000.0,
                (double) plain->teardown / 1000.0, (double) plain->start / 1000.0);
}

static void print_summary(const Phases *rev, const Phases *plain, uint64_t rounds) {
        double total = median_ms(rev, rounds, offsetof(Phases, total)),
               ref = median_ms(plain, rounds, offsetof(Phases, total)),
               disk = median_ms(rev, rounds, offsetof(Phases, disk)),
               ref_disk = median_ms(plain, rounds, offsetof(Phases, disk));

        printf("rounds=%" PRIu64 "\n", rounds);
        printf("revert_latency_ms=%.1f\n", total);
        printf("revert_teardown_ms=%.1f\n", median_ms(rev, rounds, offsetof(Phases, teardown)));
        printf("revert_disk_ms=%.1f\n", disk);
        printf("revert_start_ms=%.1f\n", median_ms(rev, rounds, offsetof(Phases, start)));
        printf("plain_restart_ms=%.1f\n", ref);
        printf("plain_teardown_ms=%.1f\n", median_ms(plain, rounds, offsetof(Phases, teardown)));
        printf("plain_start_ms=%.1f\n", median_ms(plain, rounds, offsetof(Phases, start)));
        printf("ratio_revert_to_plain=%.2f\n", ref > 0 ? total / ref : 0.0);
        printf("revert_added_ms=%.1f\n", disk - ref_disk);
        printf("goal_ms=1000\n");
        printf("goal_met=%s\n", total < 1000.0 ? "yes" : "no");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                {"uri", required_argument, NULL, 'u'},
                {"standin", required_argument, NULL, 's'},
                {"good", required_argument, NULL, 'g'},
                {"bad", required_argument, NULL, 'b'},
                {"data", required_argument, NULL, 'd'},
                {"work", required_argument, NULL, 'w'},
                {"rounds", required_argument, NULL, 'r'},
                {"name", required_argument, NULL, 'n'},
                {},
        };
        const char *uri = NULL, *standin = NULL, *good = NULL, *bad = NULL, *data = NULL, *work = NULL;
        const char *name = "oob-bench-revert";
        _cleanup_free_ char *catalog_dir = NULL, *state_dir = NULL, *kernel = NULL, *initrd = NULL,
                            *cmd = NULL;
        _cleanup_free_ char *standin_abs = NULL, *data_abs = NULL, *work_abs = NULL;
        _cleanup_(catalog_freep) Catalog *c = NULL;
        Phases revert_p[ROUNDS_MAX], plain_p[ROUNDS_MAX];
        uint64_t rounds = 3;
        Bench b = {};
        char *id = NULL;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (opt) {
                case 'u':
                        uri = optarg;
                        break;
                case 's':
                        standin = optarg;
                        break;
                case 'g':
                        good = optarg;
                        break;
                case 'b':
                        bad = optarg;
                        break;
                case 'd':
                        data = optarg;
                        break;
                case 'w':
                        work = optarg;
                        break;
                case 'n':
                        name = optarg;
                        break;
                case 'r':
                        if (safe_atou64(optarg, &rounds) < 0 || rounds == 0 || rounds > ROUNDS_MAX) {
                                fprintf(stderr, "bench-revert: --rounds 1..%d\n", ROUNDS_MAX);
                                return 2;
                        }
                        break;
                default:
                        return 2;
                }
        if (!uri || !standin || !good || !bad || !data || !work) {
                fprintf(stderr,
                        "Usage: bench-revert --uri URI --standin DIR --good GOOD.qcow2 --bad BAD.qcow2 "
                        "--data DATA.qcow2 --work DIR [--rounds N] [--name NAME]\n");
                return 2;
        }
        log_set_program("bench-revert");
        log_set_max_level(LOG_LEVEL_CRIT); /* the guard logs every crash and revert */

        /* libvirt wants absolute paths */
        standin_abs = realpath(standin, NULL);
        data_abs = realpath(data, NULL);
        work_abs = realpath(work, NULL);
        if (!standin_abs || !data_abs || !work_abs) {
                fprintf(stderr, "bench-revert: %s, %s or %s: %m\n", standin, data, work);
                return 1;
        }
        catalog_dir = path_join(work_abs, "system");
        state_dir = path_join(work_abs, "state");
        kernel = path_join(standin_abs, "vmlinuz");
        initrd = path_join(standin_abs, "initrd.img");
        if (!catalog_dir || !state_dir || !kernel || !initrd)
                return 1;

        /* base GOOD (known-good "1"); BAD's contents written into the active
         * overlay by qemu-img and frozen as snapshot "2" */
        r = catalog_create(catalog_dir, good, &c);
        if (r >= 0)
                r = catalog_set_known_good(c, "1");
        /* The catalog makes its directory 0700; libvirt's QEMU runs as
         * another user and relabels the image files, not their directory. */
        if (r >= 0 && chmod(catalog_dir, 0711) < 0)
                r = -errno;
        if (r < 0) {
                log_error_errno(r, "bench-revert: catalog: %m");
                return 1;
        }
        if (asprintf(&cmd, "qemu-img convert -n -f qcow2 -O qcow2 '%s' '%s'", bad, catalog_active(c)) < 0)
                return 1;
        if (system(cmd) != 0) {
                log_error("bench-revert: %s failed", cmd);
                return 1;
        }
        r = catalog_snapshot(c, SNAPSHOT_MANUAL, "crashing driver", NULL, false, &id);
        if (r < 0) {
                log_error_errno(r, "bench-revert: snapshot: %m");
                return 1;
        }
        free(id);
        if (mkdir_p(state_dir, 0755) < 0)
                return 1;

        {
                DesktopDefinition def = {
                        .name = name,
                        .system_disk = catalog_active(c),
                        .data_disk = data_abs,
                        .memory_mib = 256,
                        .vcpus = 1,
                        .kernel = kernel,
                        .initrd = initrd,
                        .cmdline = "console=ttyS0 quiet",
                };
                DesktopOptions o = {.uri = uri, .name = name};

                r = desktop_define(uri, &def);
                if (r < 0) {
                        log_error_errno(r, "bench-revert: define: %m");
                        return 1;
                }
                c = catalog_free(c);
                r = sd_event_default(&b.event);
                if (r >= 0)
                        r = desktop_event_loop_setup(b.event);
                if (r >= 0)
                        r = desktop_open(&o, on_event, &b, &b.desktop);
                if (r < 0) {
                        log_error_errno(r, "bench-revert: open: %m");
                        (void) desktop_undefine(uri, name);
                        return 1;
                }
        }

        bench = &b;
        for (uint64_t i = 0; i < rounds && r >= 0; i++) {
                r = round_run(&b, catalog_dir, state_dir, true, &revert_p[i]);
                if (r >= 0)
                        r = round_run(&b, catalog_dir, state_dir, false, &plain_p[i]);
                if (r >= 0)
                        print_round(i, &revert_p[i], &plain_p[i]);
        }

        (void) ensure_off(b.desktop);
        b.desktop = desktop_close(b.desktop);
        (void) desktop_undefine(uri, name);
        b.event = sd_event_unref(b.event);
        if (r < 0)
                return 1;
        print_summary(revert_p, plain_p, rounds);
        return 0;
}

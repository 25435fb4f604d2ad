/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Verification time of a targets.json with N targets (default 10,000): the
 * trusted set loads root, timestamp, snapshot and then the big targets
 * document (hash check against snapshot, parse, canonicalize, verify the
 * ed25519 signature, build the target table). The reference, measured in
 * the same run on the same bytes, is jansson's plain json_loads() of the
 * document, i.e. the cost of merely reading it; the ratio shows what
 * verification adds on top.
 *
 * Output (one line per measure, key=value, for scripts/bench):
 *   targets=10000 bytes=... verify_ms=... parse_ms=... ratio=...
 */

#include <jansson.h>
#include <time.h>

#include "manifests.h"

#define EXPIRES (time(NULL) + 86400)

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static char *sign(const char *signed_json, size_t size, TufPrivateKey *key, size_t *ret_size) {
        char *out = NULL;
        TufPrivateKey *keys[] = { key };

        if (tuf_metadata_sign(signed_json, size, keys, 1, &out, ret_size) < 0) {
                fprintf(stderr, "bench-verify: signing failed\n");
                exit(EXIT_FAILURE);
        }
        return out;
}

#define CHECK(expr)                                                               \
        do {                                                                      \
                int _r = (expr);                                                  \
                if (_r < 0) {                                                     \
                        fprintf(stderr, "bench-verify: %s: %s\n", #expr, strerror(-_r)); \
                        exit(EXIT_FAILURE);                                       \
                }                                                                 \
        } while (0)

int main(int argc, char **argv) {
        size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000, rounds = 7;
        _cleanup_(tuf_private_key_freep) TufPrivateKey *key = NULL;
        TufKey pub = {};
        char *ids[] = { NULL, NULL };
        TufRoot root = {};
        TufTargets targets = {};
        TufSnapshot snapshot = {};
        TufTimestamp timestamp = {};
        TufMetaFile meta = {};
        _cleanup_free_ char *root_s = NULL, *targets_s = NULL, *snapshot_s = NULL, *timestamp_s = NULL;
        _cleanup_free_ char *root_m = NULL, *targets_m = NULL, *snapshot_m = NULL, *timestamp_m = NULL;
        size_t root_n, targets_n, snapshot_n, timestamp_n, root_mn, targets_mn, snapshot_mn, timestamp_mn;
        double verify[16], parse[16];

        CHECK(tuf_private_key_generate(TUF_KEY_ED25519, &key));
        CHECK(tuf_private_key_public(key, &pub));
        ids[0] = pub.keyid;

        root.version = 1;
        root.expires = EXPIRES;
        root.consistent_snapshot = true;
        root.keys = &pub;
        root.n_keys = 1;
        for (int i = 0; i < _TUF_ROLE_TYPE_MAX; i++)
                root.roles[i] = (TufRoleKeys) { .keyids = ids, .threshold = 1 };

        targets.version = 1;
        targets.expires = EXPIRES;
        targets.n_targets = n;
        targets.targets = calloc(n, sizeof(TufTargetFile));
        if (!targets.targets)
                return EXIT_FAILURE;
        for (size_t i = 0; i < n; i++) {
                char name[64];
                snprintf(name, sizeof(name), "payloads/file-%06zu.cab", i);
                targets.targets[i].path = strdup(name);
                targets.targets[i].length = 1000 + i;
                CHECK(tuf_hashes_compute(name, strlen(name), &targets.targets[i].hashes));
                targets.targets[i].hashes.has_sha512 = false;
        }

        CHECK(tuf_root_to_json(&root, &root_s, &root_n));
        root_m = sign(root_s, root_n, key, &root_mn);
        CHECK(tuf_targets_to_json(&targets, &targets_s, &targets_n));
        targets_m = sign(targets_s, targets_n, key, &targets_mn);

        meta.name = (char *) "targets.json";
        meta.version = 1;
        meta.length = targets_mn;
        CHECK(tuf_hashes_compute(targets_m, targets_mn, &meta.hashes));
        snapshot.version = 1;
        snapshot.expires = EXPIRES;
        snapshot.meta = &meta;
        snapshot.n_meta = 1;
        CHECK(tuf_snapshot_to_json(&snapshot, &snapshot_s, &snapshot_n));
        snapshot_m = sign(snapshot_s, snapshot_n, key, &snapshot_mn);

        timestamp.version = 1;
        timestamp.expires = EXPIRES;
        timestamp.snapshot.name = (char *) "snapshot.json";
        timestamp.snapshot.version = 1;
        timestamp.snapshot.length = snapshot_mn;
        CHECK(tuf_hashes_compute(snapshot_m, snapshot_mn, &timestamp.snapshot.hashes));
        CHECK(tuf_timestamp_to_json(&timestamp, &timestamp_s, &timestamp_n));
        timestamp_m = sign(timestamp_s, timestamp_n, key, &timestamp_mn);

        for (size_t r = 0; r < rounds; r++) {
                _cleanup_(tuf_trusted_set_freep) TufTrustedSet *set = NULL;
                json_error_t error;
                json_t *j;
                double t0;

                CHECK(tuf_trusted_set_new(root_m, root_mn, time(NULL), &set));
                CHECK(tuf_trusted_set_update_timestamp(set, timestamp_m, timestamp_mn));
                CHECK(tuf_trusted_set_update_snapshot(set, snapshot_m, snapshot_mn, false));
                t0 = now_ms();
                CHECK(tuf_trusted_set_update_targets(set, "targets", "root", targets_m, targets_mn));
                verify[r] = now_ms() - t0;
                if (tuf_trusted_set_targets(set, "targets")->n_targets != n)
                        return EXIT_FAILURE;

                t0 = now_ms();
                j = json_loadb(targets_m, targets_mn, 0, &error);
                parse[r] = now_ms() - t0;
                if (!j)
                        return EXIT_FAILURE;
                json_decref(j);
        }
        qsort(verify, rounds, sizeof(double), cmp_double);
        qsort(parse, rounds, sizeof(double), cmp_double);
        printf("targets=%zu bytes=%zu verify_ms=%.1f parse_ms=%.1f ratio=%.2f\n", n, targets_mn,
               verify[rounds / 2], parse[rounds / 2], verify[rounds / 2] / parse[rounds / 2]);

        for (size_t i = 0; i < n; i++)
                free(targets.targets[i].path);
        free(targets.targets);
        tuf_key_done(&pub);
        return EXIT_SUCCESS;
}

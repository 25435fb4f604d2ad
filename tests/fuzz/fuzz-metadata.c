/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer entry point for TUF metadata: the production parsers on
 * untrusted bytes. The envelope, whichever role parser the document claims,
 * the serializer on what parsed (it must not fail on our own parse result
 * unless the document used something we refuse to write), self-verification
 * of a root and the trusted set's entry point.
 */
#include "manifests-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise_signed(const TufEnvelope *e) {
        _cleanup_free_ char *out = NULL;
        size_t n;

        switch (e->type) {
        case TUF_ROLE_ROOT: {
                _cleanup_(tuf_root_freep) TufRoot *r = NULL;

                if (tuf_root_from_json(e->signed_json, &r) < 0)
                        return;
                (void) tuf_envelope_verify(e, r->keys, r->n_keys, &r->roles[TUF_ROLE_ROOT]);
                (void) tuf_root_to_json(r, &out, &n);
                break;
        }
        case TUF_ROLE_TIMESTAMP: {
                _cleanup_(tuf_timestamp_freep) TufTimestamp *t = NULL;

                if (tuf_timestamp_from_json(e->signed_json, &t) < 0)
                        return;
                (void) tuf_timestamp_to_json(t, &out, &n);
                break;
        }
        case TUF_ROLE_SNAPSHOT: {
                _cleanup_(tuf_snapshot_freep) TufSnapshot *s = NULL;

                if (tuf_snapshot_from_json(e->signed_json, &s) < 0)
                        return;
                for (size_t i = 0; i < s->n_meta; i++)
                        (void) tuf_snapshot_find(s, s->meta[i].name);
                (void) tuf_snapshot_to_json(s, &out, &n);
                break;
        }
        case TUF_ROLE_TARGETS: {
                _cleanup_(tuf_targets_freep) TufTargets *t = NULL;

                if (tuf_targets_from_json(e->signed_json, &t) < 0)
                        return;
                for (size_t i = 0; i < t->n_roles; i++) {
                        free(tuf_role_filename(t->roles[i].name, 1));
                        if (t->n_targets > 0)
                                (void) tuf_delegated_role_matches(&t->roles[i], t->targets[0].path);
                        if (t->roles[i].keys.threshold > 0)
                                (void) tuf_envelope_verify(e, t->delegation_keys, t->n_delegation_keys,
                                                           &t->roles[i].keys);
                }
                (void) tuf_targets_to_json(t, &out, &n);
                break;
        }
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_trusted_set_freep) TufTrustedSet *s = NULL;
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        _cleanup_(tuf_targets_freep) TufTargets *t = NULL;

        log_set_max_level(LOG_LEVEL_CRIT);

        if (tuf_envelope_parse(data, size, &e) >= 0)
                exercise_signed(e);

        (void) tuf_root_parse_unverified(data, size, &r);
        (void) tuf_targets_parse_unverified(data, size, &t);

        if (tuf_trusted_set_new(data, size, 1800000000, &s) >= 0) {
                (void) tuf_trusted_set_check_root(s);
                (void) tuf_trusted_set_update_root(s, data, size);
                (void) tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP);
        }
        return 0;
}

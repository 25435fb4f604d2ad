/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The trusted set: the client half of the TUF specification's "Detailed
 * client workflow" (sections 5.2 to 5.6), without any I/O. The caller
 * fetches bytes and hands them in, role by role and in the workflow's
 * order; each update_* call accepts them only when they are signed by the
 * trusted delegator, not a rollback, consistent with what references them
 * and not expired at the reference time fixed when the set was created.
 *
 * Every update builds the new object completely before it touches the set,
 * so an error leaves the set as it was. The two exceptions are inherited
 * from python-tuf's TrustedMetadataSet, and both only ever make later
 * checks stricter:
 *   - an expired timestamp is kept (documented in manifests.h), so that a
 *     newer one must still not roll back from it;
 *   - a snapshot that is authentic and not a rollback, but expired or not
 *     the version the timestamp names (typically our cached copy after the
 *     repository moved on), is kept as a rollback floor only: it is not
 *     visible through tuf_trusted_set_snapshot() and targets cannot be
 *     loaded against it, but the next snapshot must still list every role
 *     it listed at no lower version (5.5.5). Without this, the spec's
 *     targets rollback check would never fire in the usual refresh, where
 *     the cached snapshot is always the outdated one.
 */

#include <inttypes.h>

#include "manifests-internal.h"

typedef struct TrustedTargets {
        char *name;
        TufTargets *targets;
} TrustedTargets;

struct TufTrustedSet {
        int64_t reference_time;

        TufRoot *initial_root; /* as loaded, for tuf_trusted_set_rotated() */
        TufRoot *root;         /* current; may be the same object as initial_root */

        TufTimestamp *timestamp;

        TufSnapshot *snapshot;       /* trusted: final, matches timestamp, not expired */
        TufSnapshot *snapshot_floor; /* authentic but not final (see above), or NULL */

        TrustedTargets *targets;
        size_t n_targets;
};

static bool is_expired(const TufTrustedSet *s, int64_t expires) {
        /* Valid while expires is later than the reference time (5.3.10 and
         * following: "MUST be higher than the fixed update start time"). */
        return expires <= s->reference_time;
}

static void set_root(TufTrustedSet *s, TufRoot *r) {
        if (s->root != s->initial_root)
                tuf_root_free(s->root);
        s->root = r;
}

TufTrustedSet *tuf_trusted_set_free(TufTrustedSet *s) {
        if (!s)
                return NULL;
        set_root(s, NULL);
        tuf_root_free(s->initial_root);
        tuf_timestamp_free(s->timestamp);
        tuf_snapshot_free(s->snapshot);
        tuf_snapshot_free(s->snapshot_floor);
        for (size_t i = 0; i < s->n_targets; i++) {
                free(s->targets[i].name);
                tuf_targets_free(s->targets[i].targets);
        }
        free(s->targets);
        free(s);
        return NULL;
}

/* Parse the envelope and check it claims the role we are loading. */
static int envelope_for(const void *data, size_t size, TufRoleType type, TufEnvelope **ret) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        int r;

        r = tuf_envelope_parse(data, size, &e);
        if (r < 0)
                return r;
        if (e->type != type) {
                log_debug("Expected %s metadata, got %s", tuf_role_type_to_string(type),
                          tuf_role_type_to_string(e->type));
                return -EPROTO;
        }
        *ret = TAKE_PTR(e);
        return 0;
}

static int verify_by_root(const TufEnvelope *e, const TufRoot *root, TufRoleType role) {
        return tuf_envelope_verify(e, root->keys, root->n_keys, &root->roles[role]);
}

/* 5.2: the trusted root, verified by itself only; its expiry is checked
 * after the rotation chain (tuf_trusted_set_check_root()). */
int tuf_trusted_set_new(const void *root, size_t size, int64_t reference_time, TufTrustedSet **ret) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_trusted_set_freep) TufTrustedSet *s = NULL;
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        int k;

        assert_return(root || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        k = envelope_for(root, size, TUF_ROLE_ROOT, &e);
        if (k < 0)
                return k;
        k = tuf_root_from_json(e->signed_json, &r);
        if (k < 0)
                return k;
        k = verify_by_root(e, r, TUF_ROLE_ROOT);
        if (k < 0)
                return k;

        s = calloc(1, sizeof(TufTrustedSet));
        if (!s)
                return -ENOMEM;
        s->reference_time = reference_time;
        s->initial_root = s->root = TAKE_PTR(r);

        *ret = TAKE_PTR(s);
        return 0;
}

/* 5.3.4 to 5.3.7: N+1.root.json. */
int tuf_trusted_set_update_root(TufTrustedSet *s, const void *data, size_t size) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        int k;

        assert_return(s, -EINVAL);
        assert_return(data || size == 0, -EINVAL);

        if (s->timestamp)
                return -EBUSY;

        k = envelope_for(data, size, TUF_ROLE_ROOT, &e);
        if (k < 0)
                return k;
        /* Signed by a threshold of the trusted root's root keys ... */
        k = verify_by_root(e, s->root, TUF_ROLE_ROOT);
        if (k < 0)
                return k;
        k = tuf_root_from_json(e->signed_json, &r);
        if (k < 0)
                return k;
        /* ... and of its own. */
        k = verify_by_root(e, r, TUF_ROLE_ROOT);
        if (k < 0)
                return k;
        /* 5.3.5: exactly N+1. The caller asked for N+1.root.json; anything
         * else is a replay or a skip over a root whose keys we never saw. */
        if (r->version != s->root->version + 1) {
                log_debug("Root version %" PRIu64 " is not %" PRIu64 " + 1", r->version, s->root->version);
                return -ESTALE;
        }

        set_root(s, TAKE_PTR(r));
        return 0;
}

/* 5.3.10: freeze attack on the final root. */
int tuf_trusted_set_check_root(TufTrustedSet *s) {
        assert_return(s, -EINVAL);

        if (is_expired(s, s->root->expires))
                return -EKEYEXPIRED;
        return 0;
}

/* 5.4 */
int tuf_trusted_set_update_timestamp(TufTrustedSet *s, const void *data, size_t size) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_timestamp_freep) TufTimestamp *t = NULL;
        int k;

        assert_return(s, -EINVAL);
        assert_return(data || size == 0, -EINVAL);

        if (s->snapshot || s->snapshot_floor)
                return -EBUSY;
        /* Whether or not the caller ran check_root(): nothing is trusted
         * under an expired root. */
        if (is_expired(s, s->root->expires))
                return -EKEYEXPIRED;

        k = envelope_for(data, size, TUF_ROLE_TIMESTAMP, &e);
        if (k < 0)
                return k;
        k = verify_by_root(e, s->root, TUF_ROLE_TIMESTAMP);
        if (k < 0)
                return k;
        k = tuf_timestamp_from_json(e->signed_json, &t);
        if (k < 0)
                return k;

        if (s->timestamp) {
                if (t->version < s->timestamp->version)
                        return -ESTALE;
                /* Nothing new: keep the trusted copy (5.4.3.1). */
                if (t->version == s->timestamp->version)
                        return -EEXIST;
                if (t->snapshot.version < s->timestamp->snapshot.version)
                        return -ESTALE;
        }

        tuf_timestamp_free(s->timestamp);
        s->timestamp = TAKE_PTR(t);

        /* 5.4.4: kept even when expired, see the top of this file. */
        if (is_expired(s, s->timestamp->expires))
                return -EKEYEXPIRED;
        return 0;
}

static int cmp_meta_name(const void *a, const void *b) {
        const TufMetaFile *x = *(const TufMetaFile *const *) a, *y = *(const TufMetaFile *const *) b;

        return strcmp(x->name, y->name);
}

/* 5.5.5: every role listed by the old snapshot is still listed, at no lower
 * version. Sorted lookups keep this O(n log n) for large delegation trees. */
static int check_snapshot_rollback(const TufSnapshot *old, const TufSnapshot *new) {
        _cleanup_free_ const TufMetaFile **index = NULL;

        if (!old)
                return 0;
        index = calloc(MAX(new->n_meta, 1U), sizeof(TufMetaFile *));
        if (!index)
                return -ENOMEM;
        for (size_t i = 0; i < new->n_meta; i++)
                index[i] = &new->meta[i];
        qsort(index, new->n_meta, sizeof(TufMetaFile *), cmp_meta_name);

        for (size_t i = 0; i < old->n_meta; i++) {
                const TufMetaFile *key = &old->meta[i], **found;

                found = bsearch(&key, index, new->n_meta, sizeof(TufMetaFile *), cmp_meta_name);
                if (!found) {
                        log_debug("New snapshot no longer lists %s", key->name);
                        return -ESTALE;
                }
                if ((*found)->version < key->version) {
                        log_debug("New snapshot rolls %s back from %" PRIu64 " to %" PRIu64, key->name,
                                  key->version, (*found)->version);
                        return -ESTALE;
                }
        }
        return 0;
}

/* Length and hashes of referenced metadata, when the referrer gives them. */
static int check_meta_file(const TufMetaFile *m, const void *data, size_t size) {
        if (m->length > 0 && m->length != size)
                return -EBADMSG;
        if (m->hashes.has_sha256 || m->hashes.has_sha512) {
                int r = tuf_hashes_verify(&m->hashes, data, size);

                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return -EBADMSG;
        }
        return 0;
}

/* 5.5 */
int tuf_trusted_set_update_snapshot(TufTrustedSet *s, const void *data, size_t size, bool from_cache) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_snapshot_freep) TufSnapshot *n = NULL;
        const TufMetaFile *m;
        int k;

        assert_return(s, -EINVAL);
        assert_return(data || size == 0, -EINVAL);

        if (!s->timestamp || s->n_targets > 0)
                return -EBUSY;
        if (is_expired(s, s->timestamp->expires))
                return -EKEYEXPIRED;
        m = &s->timestamp->snapshot;

        /* 5.5.2: hashes before signatures, they come from a trusted timestamp.
         * Our own cached copy was checked when it was stored. */
        if (!from_cache) {
                k = check_meta_file(m, data, size);
                if (k < 0)
                        return k;
        }

        k = envelope_for(data, size, TUF_ROLE_SNAPSHOT, &e);
        if (k < 0)
                return k;
        k = verify_by_root(e, s->root, TUF_ROLE_SNAPSHOT); /* 5.5.3 */
        if (k < 0)
                return k;
        k = tuf_snapshot_from_json(e->signed_json, &n);
        if (k < 0)
                return k;

        k = check_snapshot_rollback(s->snapshot ?: s->snapshot_floor, n); /* 5.5.5 */
        if (k < 0)
                return k;

        /* 5.5.4 and 5.5.6. A lower version is an old snapshot replayed (or our
         * cache being out of date); a higher one was never named by any
         * timestamp we trust. */
        if (n->version != m->version || is_expired(s, n->expires)) {
                int err = n->version < m->version   ? -ESTALE
                          : n->version > m->version ? -EBADMSG
                                                    : -EKEYEXPIRED;

                /* Kept as a rollback floor only; a trusted final snapshot
                 * stays as it is. */
                if (!s->snapshot) {
                        tuf_snapshot_free(s->snapshot_floor);
                        s->snapshot_floor = TAKE_PTR(n);
                }
                return err;
        }

        tuf_snapshot_free(s->snapshot);
        s->snapshot = TAKE_PTR(n);
        s->snapshot_floor = tuf_snapshot_free(s->snapshot_floor);
        return 0;
}

static TrustedTargets *find_targets(const TufTrustedSet *s, const char *role) {
        for (size_t i = 0; i < s->n_targets; i++)
                if (streq(s->targets[i].name, role))
                        return &s->targets[i];
        return NULL;
}

static const TufDelegatedRole *find_delegation(const TufTargets *t, const char *role) {
        for (size_t i = 0; i < t->n_roles; i++)
                if (streq(t->roles[i].name, role))
                        return &t->roles[i];
        return NULL;
}

/* 5.6 (and 5.6.7 for delegated roles) */
int tuf_trusted_set_update_targets(TufTrustedSet *s, const char *role, const char *delegator,
                                   const void *data, size_t size) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_targets_freep) TufTargets *t = NULL;
        _cleanup_free_ char *meta_name = NULL, *name = NULL;
        const TufKey *keys;
        const TufRoleKeys *rk;
        size_t n_keys;
        const TufMetaFile *m;
        TrustedTargets *slot;
        int k;

        assert_return(s && role && delegator, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        /* "targets" is the top-level role, delegated by root and by root only
         * (the parser refuses delegations using a top-level role name). */
        assert_return(streq(role, "targets") == streq(delegator, "root"), -EINVAL);

        if (!s->snapshot)
                return -EBUSY;

        if (streq(delegator, "root")) {
                keys = s->root->keys;
                n_keys = s->root->n_keys;
                rk = &s->root->roles[TUF_ROLE_TARGETS];
        } else {
                const TrustedTargets *d = find_targets(s, delegator);
                const TufDelegatedRole *dr;

                if (!d)
                        return -EBUSY; /* the delegator must be trusted first */
                dr = find_delegation(d->targets, role);
                if (!dr) {
                        log_debug("%s does not delegate to %s", delegator, role);
                        return -ENOENT;
                }
                keys = d->targets->delegation_keys;
                n_keys = d->targets->n_delegation_keys;
                rk = &dr->keys;
        }

        /* The snapshot names role files by the plain role name. */
        if (asprintf(&meta_name, "%s.json", role) < 0)
                return -ENOMEM;
        m = tuf_snapshot_find(s->snapshot, meta_name);
        if (!m)
                return -ENOENT;
        k = check_meta_file(m, data, size); /* 5.6.2 */
        if (k < 0)
                return k;

        k = envelope_for(data, size, TUF_ROLE_TARGETS, &e);
        if (k < 0)
                return k;
        k = tuf_envelope_verify(e, keys, n_keys, rk); /* 5.6.3 */
        if (k < 0)
                return k;
        k = tuf_targets_from_json(e->signed_json, &t);
        if (k < 0)
                return k;
        if (t->version != m->version) /* 5.6.4 */
                return -ESTALE;
        if (is_expired(s, t->expires)) /* 5.6.5 */
                return -EKEYEXPIRED;

        slot = find_targets(s, role);
        if (slot) {
                /* Same version as before (both equal the snapshot's): replace. */
                tuf_targets_free(slot->targets);
                slot->targets = TAKE_PTR(t);
                return 0;
        }

        name = strdup(role);
        if (!name)
                return -ENOMEM;
        slot = reallocarray(s->targets, s->n_targets + 1, sizeof(TrustedTargets));
        if (!slot)
                return -ENOMEM;
        s->targets = slot;
        s->targets[s->n_targets++] = (TrustedTargets){
                .name = TAKE_PTR(name),
                .targets = TAKE_PTR(t),
        };
        return 0;
}

const TufRoot *tuf_trusted_set_root(const TufTrustedSet *s) {
        return s ? s->root : NULL;
}

const TufTimestamp *tuf_trusted_set_timestamp(const TufTrustedSet *s) {
        return s ? s->timestamp : NULL;
}

const TufSnapshot *tuf_trusted_set_snapshot(const TufTrustedSet *s) {
        return s ? s->snapshot : NULL;
}

const TufTargets *tuf_trusted_set_targets(const TufTrustedSet *s, const char *role) {
        const TrustedTargets *t;

        if (!s || !role)
                return NULL;
        t = find_targets(s, role);
        return t ? t->targets : NULL;
}

int64_t tuf_trusted_set_reference_time(const TufTrustedSet *s) {
        return s ? s->reference_time : 0;
}

/* The keys a root lists for role, as a set of keyids each bound to its key
 * material: a keyid whose key changed counts as a rotation too. */
static bool role_keys_equal(const TufRoot *a, const TufRoot *b, TufRoleType role) {
        const TufRoleKeys *x = &a->roles[role], *y = &b->roles[role];

        if (x->threshold != y->threshold)
                return false;
        for (int pass = 0; pass < 2; pass++) {
                const TufRoot *ra = pass ? b : a, *rb = pass ? a : b;
                const TufRoleKeys *ka = pass ? y : x, *kb = pass ? x : y;

                for (char **id = ka->keyids; id && *id; id++) {
                        const TufKey *k1, *k2;
                        bool listed = false;

                        for (char **o = kb->keyids; o && *o && !listed; o++)
                                listed = streq(*id, *o);
                        if (!listed)
                                return false;
                        k1 = tuf_key_find(ra->keys, ra->n_keys, *id);
                        k2 = tuf_key_find(rb->keys, rb->n_keys, *id);
                        if (!k1 != !k2)
                                return false;
                        if (k1 && !tuf_key_same_material(k1, k2))
                                return false;
                }
        }
        return true;
}

/* 5.3.11 */
bool tuf_trusted_set_rotated(const TufTrustedSet *s, TufRoleType role) {
        if (!s || role < 0 || role >= _TUF_ROLE_TYPE_MAX)
                return false;
        if (s->root == s->initial_root)
                return false;
        return !role_keys_equal(s->initial_root, s->root, role);
}

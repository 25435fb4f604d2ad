/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The trusted set against the attacks of the TUF specification: each test
 * builds a small repository in memory with the publishing API, then plays
 * one attack on the client state machine and checks it is refused with the
 * documented error while the trusted state stays what it was.
 */
#include <check.h>
#include <jansson.h>

#include "manifests-internal.h"

#define NOW ((int64_t) 1800000000) /* 2027-01-15T08:00:00Z */
#define LATER (NOW + 365 * 86400)
#define EXPIRED (NOW - 60)

/* ---- a repository builder ---------------------------------------------------- */

typedef struct Doc {
        char *data;
        size_t size;
} Doc;

static void doc_done(Doc *d) {
        free(d->data);
        *d = (Doc){};
}

typedef struct TestKey {
        TufPrivateKey *priv;
        TufKey pub;
} TestKey;

/* Every key a test may use; generated once per test (CK_FORK). */
static struct World { TestKey root, root2, timestamp, timestamp2, snapshot, targets, releases, other; } W;

static void key_init(TestKey *k) {
        ck_assert_int_eq(tuf_private_key_generate(TUF_KEY_ED25519, &k->priv), 0);
        ck_assert_int_eq(tuf_private_key_public(k->priv, &k->pub), 0);
}

static void key_done(TestKey *k) {
        k->priv = tuf_private_key_free(k->priv);
        tuf_key_done(&k->pub);
}

static void setup(void) {
        key_init(&W.root);
        key_init(&W.root2);
        key_init(&W.timestamp);
        key_init(&W.timestamp2);
        key_init(&W.snapshot);
        key_init(&W.targets);
        key_init(&W.releases);
        key_init(&W.other);
}

static void teardown(void) {
        key_done(&W.root);
        key_done(&W.root2);
        key_done(&W.timestamp);
        key_done(&W.timestamp2);
        key_done(&W.snapshot);
        key_done(&W.targets);
        key_done(&W.releases);
        key_done(&W.other);
}

/* One signature: by key, listed under keyid (its own keyid when NULL). */
typedef struct Sig {
        const TestKey *key;
        const char *keyid;
} Sig;

#define SIGS(...) ((const Sig[]){__VA_ARGS__, {}})

/* Wrap canonical "signed" bytes into an envelope with exactly the given
 * signatures (in order, duplicates kept): unlike tuf_metadata_sign(), this
 * lets a test repeat a signature or list a key under another keyid. */
static Doc envelope(const char *signed_json, size_t signed_size, const Sig *sigs) {
        _cleanup_json_ json_t *signed_obj = NULL, *doc = NULL;
        json_t *arr;
        Doc d = {};

        _cleanup_free_ char *canonical = NULL;
        size_t canonical_size;

        ck_assert_int_eq(tuf_json_parse(signed_json, signed_size, TUF_METADATA_MAX_LENGTH, &signed_obj), 0);
        ck_assert_int_eq(tuf_json_canonical(signed_obj, &canonical, &canonical_size), 0);
        arr = json_array();
        ck_assert_ptr_nonnull(arr);
        for (const Sig *s = sigs; s->key; s++) {
                _cleanup_free_ uint8_t *raw = NULL;
                _cleanup_free_ char *hex = NULL;
                size_t raw_size;

                ck_assert_int_eq(
                        tuf_private_key_sign(s->key->priv, canonical, canonical_size, &raw, &raw_size), 0);
                hex = hexmem(raw, raw_size);
                ck_assert_int_eq(
                        json_array_append_new(arr, json_pack("{s:s,s:s}", "keyid",
                                                             s->keyid ?: s->key->pub.keyid, "sig", hex)),
                        0);
        }
        doc = json_pack("{s:o,s:O}", "signatures", arr, "signed", signed_obj);
        ck_assert_ptr_nonnull(doc);
        ck_assert_int_eq(tuf_json_canonical(doc, &d.data, &d.size), 0);
        return d;
}

/* ---- root ---- */

typedef struct RoleSpec {
        const char *keyids[5]; /* NULL-terminated */
        unsigned threshold;
} RoleSpec;

typedef struct RootSpec {
        uint64_t version;
        int64_t expires;
        const TufKey *keys[8]; /* NULL-terminated key entries */
        RoleSpec roles[_TUF_ROLE_TYPE_MAX];
} RootSpec;

static Doc make_root(const RootSpec *spec, const Sig *sigs) {
        _cleanup_free_ char *json = NULL;
        TufKey keys[8];
        TufRoot r = {
                .version = spec->version ?: 1,
                .expires = spec->expires ?: LATER,
                .consistent_snapshot = true,
                .keys = keys,
        };
        size_t size;

        for (; spec->keys[r.n_keys]; r.n_keys++)
                keys[r.n_keys] = *spec->keys[r.n_keys]; /* borrowed: never freed here */
        for (TufRoleType t = 0; t < _TUF_ROLE_TYPE_MAX; t++) {
                r.roles[t].keyids = (char **) spec->roles[t].keyids;
                r.roles[t].threshold = spec->roles[t].threshold ?: 1;
        }
        ck_assert_int_eq(tuf_root_to_json(&r, &json, &size), 0);
        return envelope(json, size, sigs);
}

/* The usual root: one key per role. */
static RootSpec std_root_spec(uint64_t version) {
        return (RootSpec){
                .version = version,
                .keys = {&W.root.pub, &W.timestamp.pub, &W.snapshot.pub, &W.targets.pub},
                .roles =
                        {
                                [TUF_ROLE_ROOT] = {{W.root.pub.keyid}},
                                [TUF_ROLE_TIMESTAMP] = {{W.timestamp.pub.keyid}},
                                [TUF_ROLE_SNAPSHOT] = {{W.snapshot.pub.keyid}},
                                [TUF_ROLE_TARGETS] = {{W.targets.pub.keyid}},
                        },
        };
}

static Doc std_root(uint64_t version) {
        RootSpec spec = std_root_spec(version);

        return make_root(&spec, SIGS({.key = &W.root}));
}

/* ---- timestamp, snapshot, targets ---- */

static TufMetaFile meta_for(const char *name, uint64_t version, const Doc *of) {
        TufMetaFile m = {.name = (char *) name, .version = version};

        if (of) {
                m.length = of->size;
                ck_assert_int_eq(tuf_hashes_compute(of->data, of->size, &m.hashes), 0);
        }
        return m;
}

static Doc make_timestamp(uint64_t version, int64_t expires, TufMetaFile snapshot, const Sig *sigs) {
        _cleanup_free_ char *json = NULL;
        TufTimestamp t = {
                .version = version,
                .expires = expires ?: LATER,
                .snapshot = snapshot,
        };
        size_t size;

        ck_assert_int_eq(tuf_timestamp_to_json(&t, &json, &size), 0);
        return envelope(json, size, sigs);
}

static Doc make_snapshot(uint64_t version, int64_t expires, TufMetaFile *meta, size_t n_meta,
                         const Sig *sigs) {
        _cleanup_free_ char *json = NULL;
        TufSnapshot s = {
                .version = version,
                .expires = expires ?: LATER,
                .meta = meta,
                .n_meta = n_meta,
        };
        size_t size;

        ck_assert_int_eq(tuf_snapshot_to_json(&s, &json, &size), 0);
        return envelope(json, size, sigs);
}

static TufTargetFile target_for(const char *path, const char *content) {
        TufTargetFile f = {.path = (char *) path, .length = strlen(content)};

        ck_assert_int_eq(tuf_hashes_compute(content, strlen(content), &f.hashes), 0);
        return f;
}

/* Top-level targets: lists "hello.txt" and delegates "releases/ *" to
 * the releases key (when delegate is set). */
static Doc make_targets(uint64_t version, int64_t expires, bool delegate, const Sig *sigs) {
        _cleanup_free_ char *json = NULL;
        TufTargetFile files[] = {target_for("hello.txt", "hello\n")};
        char *paths[] = {(char *) "releases/*", NULL};
        char *keyids[] = {W.releases.pub.keyid, NULL};
        TufDelegatedRole role = {
                .name = (char *) "releases",
                .keys = {.keyids = keyids, .threshold = 1},
                .paths = paths,
        };
        TufTargets t = {
                .version = version,
                .expires = expires ?: LATER,
                .targets = files,
                .n_targets = ELEMENTSOF(files),
                .has_delegations = delegate,
                .delegation_keys = delegate ? &W.releases.pub : NULL,
                .n_delegation_keys = delegate ? 1 : 0,
                .roles = delegate ? &role : NULL,
                .n_roles = delegate ? 1 : 0,
        };
        size_t size;

        ck_assert_int_eq(tuf_targets_to_json(&t, &json, &size), 0);
        return envelope(json, size, sigs);
}

static Doc make_releases(uint64_t version, int64_t expires, const Sig *sigs) {
        _cleanup_free_ char *json = NULL;
        TufTargetFile files[] = {target_for("releases/app.yaml", "id: app\n")};
        TufTargets t = {
                .version = version,
                .expires = expires ?: LATER,
                .targets = files,
                .n_targets = ELEMENTSOF(files),
        };
        size_t size;

        ck_assert_int_eq(tuf_targets_to_json(&t, &json, &size), 0);
        return envelope(json, size, sigs);
}

/*
 * A consistent set of top-level metadata. Zero fields take defaults:
 * version 1, not expired, references listing the versions actually made.
 */
typedef struct ChainSpec {
        uint64_t timestamp_version, snapshot_version, targets_version, releases_version;
        uint64_t ts_lists_snapshot; /* version timestamp names */
        uint64_t snap_lists_targets, snap_lists_releases;
        int64_t timestamp_expires, snapshot_expires, targets_expires, releases_expires;
        bool no_hashes;   /* meta entries with version only */
        bool no_releases; /* snapshot does not list releases.json */
} ChainSpec;

typedef struct Chain {
        Doc root, timestamp, snapshot, targets, releases;
} Chain;

static void chain_done(Chain *c) {
        doc_done(&c->root);
        doc_done(&c->timestamp);
        doc_done(&c->snapshot);
        doc_done(&c->targets);
        doc_done(&c->releases);
}

static Chain make_chain(const ChainSpec *s) {
        uint64_t tsv = s->timestamp_version ?: 1, sv = s->snapshot_version ?: 1,
                 tv = s->targets_version ?: 1, rv = s->releases_version ?: 1;
        TufMetaFile meta[2];
        Chain c = {};

        c.root = std_root(1);
        c.releases = make_releases(rv, s->releases_expires, SIGS({.key = &W.releases}));
        c.targets = make_targets(tv, s->targets_expires, true, SIGS({.key = &W.targets}));
        meta[0] = meta_for("targets.json", s->snap_lists_targets ?: tv, s->no_hashes ? NULL : &c.targets);
        meta[1] = meta_for("releases.json", s->snap_lists_releases ?: rv, s->no_hashes ? NULL : &c.releases);
        c.snapshot = make_snapshot(sv, s->snapshot_expires, meta, s->no_releases ? 1 : 2,
                                   SIGS({.key = &W.snapshot}));
        c.timestamp = make_timestamp(
                tsv, s->timestamp_expires,
                meta_for("snapshot.json", s->ts_lists_snapshot ?: sv, s->no_hashes ? NULL : &c.snapshot),
                SIGS({.key = &W.timestamp}));
        return c;
}

/* Change the first occurrence of from into to (same length): a byte-level
 * tamper that keeps the document well-formed JSON. */
static Doc tampered(const Doc *d, const char *from, const char *to) {
        Doc t = {.data = malloc(d->size + 1), .size = d->size};
        char *p;

        ck_assert_ptr_nonnull(t.data);
        memcpy(t.data, d->data, d->size + 1);
        ck_assert_uint_eq(strlen(from), strlen(to));
        p = strstr(t.data, from);
        ck_assert_ptr_nonnull(p);
        memcpy(p, to, strlen(to));
        return t;
}

static TufTrustedSet *load_root(const Doc *root) {
        TufTrustedSet *s = NULL;

        ck_assert_int_eq(tuf_trusted_set_new(root->data, root->size, NOW, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), 0);
        return s;
}

static TufTrustedSet *load_through_snapshot(const Chain *c) {
        TufTrustedSet *s = load_root(&c->root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c->timestamp.data, c->timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c->snapshot.data, c->snapshot.size, false), 0);
        return s;
}

#define _cleanup_chain_ _cleanup_(chain_done)
#define _cleanup_doc_ _cleanup_(doc_done)
#define _cleanup_set_ _cleanup_(tuf_trusted_set_freep)

/* ---- the good path ------------------------------------------------------------- */

START_TEST(test_good_chain) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        const TufTargets *t;

        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                0);

        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 1);
        ck_assert_uint_eq(tuf_trusted_set_timestamp(s)->version, 1);
        ck_assert_uint_eq(tuf_trusted_set_snapshot(s)->version, 1);
        t = tuf_trusted_set_targets(s, "targets");
        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_nonnull(tuf_targets_find(t, "hello.txt"));
        ck_assert_uint_eq(t->n_roles, 1);
        ck_assert(tuf_delegated_role_matches(&t->roles[0], "releases/app.yaml"));
        t = tuf_trusted_set_targets(s, "releases");
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(tuf_targets_find(t, "releases/app.yaml")->length, 8);
        ck_assert_ptr_null(tuf_trusted_set_targets(s, "nope"));
        ck_assert_int_eq(tuf_trusted_set_reference_time(s), NOW);
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
}
END_TEST

/* The same chain with meta entries giving versions only (hashes optional). */
START_TEST(test_good_chain_without_meta_hashes) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);

        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                0);
}
END_TEST

/* ---- arbitrary installation: tampered bytes ------------------------------------- */

START_TEST(test_tampered_root) {
        _cleanup_doc_ Doc root = std_root(1);
        _cleanup_doc_ Doc bad = tampered(&root, "1.0.31", "1.0.32");
        TufTrustedSet *s = NULL;

        ck_assert_int_eq(tuf_trusted_set_new(bad.data, bad.size, NOW, &s), -EBADMSG);
        ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_tampered_timestamp) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){});
        _cleanup_doc_ Doc bad = tampered(&c.timestamp, "1.0.31", "1.0.32");
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, bad.data, bad.size), -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_timestamp(s));
}
END_TEST

START_TEST(test_tampered_snapshot) {
        /* With hashes in timestamp the hash check refuses it; without, the signature. */
        for (int no_hashes = 0; no_hashes <= 1; no_hashes++) {
                _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = no_hashes});
                _cleanup_doc_ Doc bad = tampered(&c.snapshot, "1.0.31", "1.0.32");
                _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

                ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
                ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, bad.data, bad.size, false), -EBADMSG);
                ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, bad.data, bad.size, true), -EBADMSG);
                ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        }
}
END_TEST

START_TEST(test_tampered_targets) {
        for (int no_hashes = 0; no_hashes <= 1; no_hashes++) {
                _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = no_hashes});
                _cleanup_doc_ Doc bad = tampered(&c.targets, "1.0.31", "1.0.32");
                _cleanup_doc_ Doc bad_rel = tampered(&c.releases, "1.0.31", "1.0.32");
                _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);

                ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", bad.data, bad.size),
                                 -EBADMSG);
                ck_assert_ptr_null(tuf_trusted_set_targets(s, "targets"));
                ck_assert_int_eq(
                        tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size),
                        0);
                ck_assert_int_eq(
                        tuf_trusted_set_update_targets(s, "releases", "targets", bad_rel.data, bad_rel.size),
                        -EBADMSG);
                ck_assert_ptr_null(tuf_trusted_set_targets(s, "releases"));
        }
}
END_TEST

/* A target hash changed in targets.json: the change the attacker wants. */
START_TEST(test_tampered_target_hash) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        _cleanup_free_ char *hex = NULL;
        TufHashes h;
        Doc bad;

        ck_assert_int_eq(tuf_hashes_compute("hello\n", 6, &h), 0);
        hex = hexmem(h.sha256, 32);
        hex[0] = hex[0] == '0' ? '1' : '0';
        {
                _cleanup_free_ char *orig = hexmem(h.sha256, 32);
                bad = tampered(&c.targets, orig, hex);
        }
        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", bad.data, bad.size), -EBADMSG);
        doc_done(&bad);
}
END_TEST

/* ---- wrong keys ------------------------------------------------------------------- */

START_TEST(test_wrong_key_root) {
        RootSpec spec = std_root_spec(1);
        _cleanup_doc_ Doc root = make_root(&spec, SIGS({.key = &W.other}));
        _cleanup_doc_ Doc by_ts = make_root(&spec, SIGS({.key = &W.timestamp}));
        /* The other key listed under the root keyid: the signature does not verify. */
        _cleanup_doc_ Doc spoof = make_root(&spec, SIGS({.key = &W.other, .keyid = W.root.pub.keyid}));
        TufTrustedSet *s = NULL;

        ck_assert_int_eq(tuf_trusted_set_new(root.data, root.size, NOW, &s), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_new(by_ts.data, by_ts.size, NOW, &s), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_new(spoof.data, spoof.size, NOW, &s), -EBADMSG);
        ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_wrong_key_timestamp) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);
        _cleanup_doc_ Doc by_snap =
                make_timestamp(1, 0, meta_for("snapshot.json", 1, &c.snapshot), SIGS({.key = &W.snapshot}));
        _cleanup_doc_ Doc by_root =
                make_timestamp(1, 0, meta_for("snapshot.json", 1, &c.snapshot), SIGS({.key = &W.root}));
        _cleanup_doc_ Doc unsigned_ts =
                make_timestamp(1, 0, meta_for("snapshot.json", 1, &c.snapshot), SIGS({.key = NULL}));

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, by_snap.data, by_snap.size), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, by_root.data, by_root.size), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, unsigned_ts.data, unsigned_ts.size), -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_timestamp(s));
}
END_TEST

START_TEST(test_wrong_key_snapshot) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);
        TufMetaFile meta[] = {meta_for("targets.json", 1, NULL), meta_for("releases.json", 1, NULL)};
        _cleanup_doc_ Doc bad = make_snapshot(1, 0, meta, 2, SIGS({.key = &W.timestamp}));

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, bad.data, bad.size, false), -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false), 0);
}
END_TEST

START_TEST(test_wrong_key_targets) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        _cleanup_doc_ Doc by_releases = make_targets(1, 0, true, SIGS({.key = &W.releases}));
        _cleanup_doc_ Doc by_targets = make_releases(1, 0, SIGS({.key = &W.targets}));

        /* Top-level targets must be signed by root's targets keys ... */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", by_releases.data, by_releases.size),
                -EBADMSG);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        /* ... a delegated role by the keys its delegator lists for it, not the delegator's own. */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", by_targets.data, by_targets.size),
                -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_targets(s, "releases"));
}
END_TEST

/* ---- rollback -------------------------------------------------------------------- */

START_TEST(test_rollback_timestamp) {
        _cleanup_chain_ Chain c2 = make_chain(&(ChainSpec){.timestamp_version = 2, .snapshot_version = 2});
        _cleanup_chain_ Chain c1 = make_chain(&(ChainSpec){});
        _cleanup_set_ TufTrustedSet *s = load_root(&c2.root);
        /* version 3 but naming snapshot 1 again */
        _cleanup_doc_ Doc ts3 =
                make_timestamp(3, 0, meta_for("snapshot.json", 1, NULL), SIGS({.key = &W.timestamp}));
        /* version 1 naming the same snapshot */
        _cleanup_doc_ Doc ts1 = make_timestamp(1, 0, meta_for("snapshot.json", 2, &c2.snapshot),
                                               SIGS({.key = &W.timestamp}));
        /* version 2 again, different content */
        _cleanup_doc_ Doc ts2b =
                make_timestamp(2, 0, meta_for("snapshot.json", 5, NULL), SIGS({.key = &W.timestamp}));
        const TufTimestamp *t;

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c2.timestamp.data, c2.timestamp.size), 0);
        t = tuf_trusted_set_timestamp(s);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c1.timestamp.data, c1.timestamp.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts1.data, ts1.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts3.data, ts3.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts2b.data, ts2b.size), -EEXIST);

        /* nothing changed */
        ck_assert_ptr_eq(tuf_trusted_set_timestamp(s), t);
        ck_assert_uint_eq(t->version, 2);
        ck_assert_uint_eq(t->snapshot.version, 2);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c2.snapshot.data, c2.snapshot.size, false), 0);
}
END_TEST

/* The cached snapshot (v1, targets v2) is outdated, yet the new one must not
 * roll targets back from it: the spec's 5.5.5 in the usual refresh. */
START_TEST(test_rollback_snapshot_role_version) {
        _cleanup_chain_ Chain old = make_chain(&(ChainSpec){.targets_version = 2, .no_hashes = true});
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){
                .timestamp_version = 2, .snapshot_version = 2, .targets_version = 1, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        /* cached copy: authentic but not the version the timestamp names */
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, old.snapshot.data, old.snapshot.size, true),
                         -ESTALE);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", old.targets.data, old.targets.size),
                -EBUSY);
        /* the new snapshot lowers targets.json from 2 to 1 */
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -ESTALE);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
}
END_TEST

START_TEST(test_rollback_snapshot_role_removed) {
        _cleanup_chain_ Chain old = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){
                .timestamp_version = 2, .snapshot_version = 2, .no_releases = true, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, old.snapshot.data, old.snapshot.size, true),
                         -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -ESTALE);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
}
END_TEST

/* Control for the two tests above: the same calls with no rollback succeed. */
START_TEST(test_snapshot_moves_forward) {
        _cleanup_chain_ Chain old = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){
                .timestamp_version = 2, .snapshot_version = 2, .targets_version = 2, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, old.snapshot.data, old.snapshot.size, true),
                         -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false), 0);
        ck_assert_uint_eq(tuf_trusted_set_snapshot(s)->version, 2);
        /* the old targets (v1) is not what snapshot names any more */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", old.targets.data, old.targets.size),
                -ESTALE);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
}
END_TEST

/* A trusted (final) snapshot followed by one rolling a role back. */
START_TEST(test_rollback_snapshot_after_trusted) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.targets_version = 3, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        TufMetaFile meta[] = {meta_for("targets.json", 2, NULL), meta_for("releases.json", 1, NULL)};
        _cleanup_doc_ Doc snap = make_snapshot(1, 0, meta, 2, SIGS({.key = &W.snapshot}));
        const TufSnapshot *before = tuf_trusted_set_snapshot(s);

        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, snap.data, snap.size, true), -ESTALE);
        ck_assert_ptr_eq(tuf_trusted_set_snapshot(s), before);
        ck_assert_uint_eq(tuf_snapshot_find(before, "targets.json")->version, 3);
}
END_TEST

START_TEST(test_rollback_targets) {
        _cleanup_chain_ Chain c =
                make_chain(&(ChainSpec){.targets_version = 2, .releases_version = 2, .no_hashes = true});
        _cleanup_doc_ Doc t1 = make_targets(1, 0, true, SIGS({.key = &W.targets}));
        _cleanup_doc_ Doc t3 = make_targets(3, 0, true, SIGS({.key = &W.targets}));
        _cleanup_doc_ Doc r1 = make_releases(1, 0, SIGS({.key = &W.releases}));
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);

        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", t1.data, t1.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", t3.data, t3.size), -ESTALE);
        ck_assert_ptr_null(tuf_trusted_set_targets(s, "targets"));
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "releases", "targets", r1.data, r1.size),
                         -ESTALE);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                0);
}
END_TEST

START_TEST(test_rollback_root) {
        _cleanup_doc_ Doc root1 = std_root(1);
        _cleanup_doc_ Doc root2 = std_root(2);
        _cleanup_doc_ Doc root3 = std_root(3);
        _cleanup_doc_ Doc root4 = std_root(4);
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        /* same version, and skipping one */
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root1.data, root1.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root3.data, root3.size), -ESTALE);
        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 1);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root1.data, root1.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root4.data, root4.size), -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root3.data, root3.size), 0);
        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 3);
}
END_TEST

/* ---- freeze ----------------------------------------------------------------------- */

START_TEST(test_freeze_timestamp) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.timestamp_expires = EXPIRED});
        _cleanup_chain_ Chain c2 =
                make_chain(&(ChainSpec){.timestamp_version = 2, .timestamp_expires = EXPIRED});
        _cleanup_doc_ Doc at_now = make_timestamp(3, NOW, meta_for("snapshot.json", 1, &c.snapshot),
                                                  SIGS({.key = &W.timestamp}));
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size),
                         -EKEYEXPIRED);
        /* kept for rollback checks of later timestamps ... */
        ck_assert_ptr_nonnull(tuf_trusted_set_timestamp(s));
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), -EEXIST);
        /* ... but nothing can be loaded against it */
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -EKEYEXPIRED);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c2.timestamp.data, c2.timestamp.size),
                         -EKEYEXPIRED);
        ck_assert_uint_eq(tuf_trusted_set_timestamp(s)->version, 2);
        /* expiring exactly at the reference time is expired */
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, at_now.data, at_now.size), -EKEYEXPIRED);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -EKEYEXPIRED);
}
END_TEST

START_TEST(test_freeze_snapshot) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.snapshot_expires = EXPIRED});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -EKEYEXPIRED);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size),
                -EBUSY);
}
END_TEST

START_TEST(test_freeze_targets) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.targets_expires = EXPIRED});
        _cleanup_chain_ Chain d = make_chain(&(ChainSpec){.releases_expires = EXPIRED});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        _cleanup_set_ TufTrustedSet *t = load_through_snapshot(&d);

        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size),
                -EKEYEXPIRED);
        ck_assert_ptr_null(tuf_trusted_set_targets(s, "targets"));
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(t, "targets", "root", d.targets.data, d.targets.size), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(t, "releases", "targets", d.releases.data, d.releases.size),
                -EKEYEXPIRED);
        ck_assert_ptr_null(tuf_trusted_set_targets(t, "releases"));
}
END_TEST

START_TEST(test_freeze_final_root) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){});
        RootSpec spec = std_root_spec(2);
        _cleanup_doc_ Doc root2 = {};
        _cleanup_set_ TufTrustedSet *s = NULL;

        spec.expires = EXPIRED;
        root2 = make_root(&spec, SIGS({.key = &W.root}));
        ck_assert_int_eq(tuf_trusted_set_new(c.root.data, c.root.size, NOW, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), -EKEYEXPIRED);
        /* skipping check_root does not help */
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size),
                         -EKEYEXPIRED);
        ck_assert_ptr_null(tuf_trusted_set_timestamp(s));
}
END_TEST

/* An expired root in the middle of the chain (and the initial one) is fine
 * as long as the final one is valid. */
START_TEST(test_expired_intermediate_root) {
        RootSpec spec1 = std_root_spec(1), spec2 = std_root_spec(2);
        _cleanup_doc_ Doc root1 = {}, root2 = {}, root3 = std_root(3);
        _cleanup_set_ TufTrustedSet *s = NULL;

        spec1.expires = EXPIRED;
        spec2.expires = EXPIRED;
        root1 = make_root(&spec1, SIGS({.key = &W.root}));
        root2 = make_root(&spec2, SIGS({.key = &W.root}));
        ck_assert_int_eq(tuf_trusted_set_new(root1.data, root1.size, NOW, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), -EKEYEXPIRED);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root3.data, root3.size), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), 0);
}
END_TEST

/* ---- mix and match ------------------------------------------------------------------ */

START_TEST(test_mix_snapshot_hashes) {
        /* Two snapshots with the same version and length, both correctly
         * signed: the timestamp names one by hash. */
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.snapshot_expires = LATER});
        TufMetaFile meta[] = {meta_for("targets.json", 1, &c.targets),
                              meta_for("releases.json", 1, &c.releases)};
        _cleanup_doc_ Doc other = make_snapshot(1, LATER + 1, meta, 2, SIGS({.key = &W.snapshot}));
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_uint_eq(other.size, c.snapshot.size);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, other.data, other.size, false), -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
        /* from our own cache the hashes are not checked, the rest is */
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, other.data, other.size, true), 0);
}
END_TEST

START_TEST(test_mix_snapshot_length) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        TufMetaFile m = meta_for("snapshot.json", 1, &c.snapshot);
        _cleanup_doc_ Doc ts = {}, padded = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        /* length only, no hashes */
        m.hashes = (TufHashes){};
        ts = make_timestamp(1, 0, m, SIGS({.key = &W.timestamp}));
        /* the signed snapshot plus a trailing space: still valid JSON and signature */
        padded.size = c.snapshot.size + 1;
        padded.data = malloc(padded.size + 1);
        memcpy(padded.data, c.snapshot.data, c.snapshot.size);
        memcpy(padded.data + c.snapshot.size, " ", 2);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts.data, ts.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, padded.data, padded.size, false), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false), 0);
}
END_TEST

START_TEST(test_mix_snapshot_version) {
        /* timestamp names snapshot 2; a correctly signed snapshot 1 or 3 is refused */
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.ts_lists_snapshot = 2, .no_hashes = true});
        _cleanup_chain_ Chain c3 = make_chain(&(ChainSpec){.snapshot_version = 3, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -ESTALE);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c3.snapshot.data, c3.snapshot.size, false),
                         -EBADMSG);
        ck_assert_ptr_null(tuf_trusted_set_snapshot(s));
}
END_TEST

START_TEST(test_mix_targets) {
        /* snapshot names targets 2 by hash; a signed targets 2 with other
         * content of the same length */
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.targets_version = 2, .targets_expires = LATER});
        _cleanup_doc_ Doc other = make_targets(2, LATER + 1, true, SIGS({.key = &W.targets}));
        _cleanup_chain_ Chain v = make_chain(&(ChainSpec){.snap_lists_targets = 2, .no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);
        _cleanup_set_ TufTrustedSet *t = load_through_snapshot(&v);

        ck_assert_uint_eq(other.size, c.targets.size);
        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", other.data, other.size),
                         -EBADMSG);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        /* snapshot names targets 2, the repository serves a signed targets 1 */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(t, "targets", "root", v.targets.data, v.targets.size),
                -ESTALE);
        ck_assert_ptr_null(tuf_trusted_set_targets(t, "targets"));
}
END_TEST

/* Listed in snapshot, but the delegator does not delegate it. */
START_TEST(test_role_not_delegated) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_doc_ Doc plain = make_targets(1, 0, false, SIGS({.key = &W.targets}));
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);

        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "targets", "root", plain.data, plain.size), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                -ENOENT);
        ck_assert_ptr_null(tuf_trusted_set_targets(s, "releases"));
}
END_TEST

START_TEST(test_role_not_in_snapshot_or_not_delegated) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_releases = true});
        _cleanup_set_ TufTrustedSet *s = load_through_snapshot(&c);

        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                -ENOENT);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "helpdesk", "targets", c.releases.data, c.releases.size),
                -ENOENT);
        /* a role delegated by nobody loaded yet */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "x", "releases", c.releases.data, c.releases.size),
                -EBUSY);
        /* the top-level role only through root, and root only for it */
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "releases", c.targets.data, c.targets.size),
                -EINVAL);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "root", c.releases.data, c.releases.size),
                -EINVAL);
}
END_TEST

/* A document of another role where one was asked for. */
START_TEST(test_wrong_role_type) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);
        TufTrustedSet *t = NULL;

        ck_assert_int_eq(tuf_trusted_set_new(c.timestamp.data, c.timestamp.size, NOW, &t), -EPROTO);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, c.timestamp.data, c.timestamp.size), -EPROTO);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.snapshot.data, c.snapshot.size), -EPROTO);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.timestamp.data, c.timestamp.size, false),
                         -EPROTO);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false), 0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.snapshot.data, c.snapshot.size),
                -EPROTO);
}
END_TEST

/* ---- thresholds --------------------------------------------------------------------- */

/* Root with the targets role given by role_keys and the extra key entries. */
static TufTrustedSet *root_with_targets_role(const TufKey *extra, RoleSpec role) {
        RootSpec spec = std_root_spec(1);
        _cleanup_doc_ Doc root = {};

        spec.keys[4] = &W.other.pub;
        spec.keys[5] = extra;
        spec.roles[TUF_ROLE_TARGETS] = role;
        root = make_root(&spec, SIGS({.key = &W.root}));
        return load_root(&root);
}

/* Load targets signed with sigs under a snapshot listing it (no hashes). */
static int load_targets_signed(TufTrustedSet *s, const Sig *sigs) {
        TufMetaFile meta[] = {meta_for("targets.json", 1, NULL)};
        _cleanup_doc_ Doc snap = make_snapshot(1, 0, meta, 1, SIGS({.key = &W.snapshot}));
        _cleanup_doc_ Doc ts =
                make_timestamp(1, 0, meta_for("snapshot.json", 1, NULL), SIGS({.key = &W.timestamp}));
        _cleanup_doc_ Doc t = make_targets(1, 0, false, sigs);

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts.data, ts.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, snap.data, snap.size, false), 0);
        return tuf_trusted_set_update_targets(s, "targets", "root", t.data, t.size);
}

START_TEST(test_threshold_distinct_keys) {
        /* control: two different keys reach a threshold of two */
        _cleanup_set_ TufTrustedSet *s =
                root_with_targets_role(NULL, (RoleSpec){{W.targets.pub.keyid, W.other.pub.keyid}, 2});

        ck_assert_int_eq(load_targets_signed(s, SIGS({.key = &W.targets}, {.key = &W.other})), 0);
}
END_TEST

START_TEST(test_threshold_one_key_not_enough) {
        _cleanup_set_ TufTrustedSet *s =
                root_with_targets_role(NULL, (RoleSpec){{W.targets.pub.keyid, W.other.pub.keyid}, 2});

        ck_assert_int_eq(load_targets_signed(s, SIGS({.key = &W.targets})), -EBADMSG);
}
END_TEST

START_TEST(test_threshold_duplicate_signatures) {
        _cleanup_set_ TufTrustedSet *s =
                root_with_targets_role(NULL, (RoleSpec){{W.targets.pub.keyid, W.other.pub.keyid}, 2});

        ck_assert_int_eq(load_targets_signed(s, SIGS({.key = &W.targets}, {.key = &W.targets})), -EBADMSG);
}
END_TEST

START_TEST(test_threshold_duplicate_keyid_in_role) {
        _cleanup_set_ TufTrustedSet *s =
                root_with_targets_role(NULL, (RoleSpec){{W.targets.pub.keyid, W.targets.pub.keyid}, 2});

        ck_assert_int_eq(load_targets_signed(s, SIGS({.key = &W.targets}, {.key = &W.targets})), -EBADMSG);
}
END_TEST

START_TEST(test_threshold_same_material_two_keyids) {
        /* The targets key listed a second time under another keyid. */
        TufKey alias = W.targets.pub;
        _cleanup_set_ TufTrustedSet *s = NULL;

        alias.keyid = (char *) "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        s = root_with_targets_role(&alias, (RoleSpec){{W.targets.pub.keyid, alias.keyid}, 2});
        ck_assert_int_eq(
                load_targets_signed(s, SIGS({.key = &W.targets}, {.key = &W.targets, .keyid = alias.keyid})),
                -EBADMSG);
}
END_TEST

/* Signatures by keys the role does not list do not count, even when the
 * key is trusted for another role. */
START_TEST(test_threshold_unauthorized_keys) {
        _cleanup_set_ TufTrustedSet *s =
                root_with_targets_role(NULL, (RoleSpec){{W.targets.pub.keyid, W.other.pub.keyid}, 2});

        ck_assert_int_eq(
                load_targets_signed(s, SIGS({.key = &W.targets}, {.key = &W.root}, {.key = &W.snapshot})),
                -EBADMSG);
}
END_TEST

/* ---- root rotation ------------------------------------------------------------------- */

static RootSpec rotated_root_spec(void) {
        RootSpec spec = std_root_spec(2);

        spec.keys[4] = &W.root2.pub;
        spec.roles[TUF_ROLE_ROOT] = (RoleSpec){{W.root2.pub.keyid}, 1};
        return spec;
}

START_TEST(test_root_rotation) {
        RootSpec spec = rotated_root_spec();
        _cleanup_doc_ Doc root1 = std_root(1);
        _cleanup_doc_ Doc both = make_root(&spec, SIGS({.key = &W.root}, {.key = &W.root2}));
        _cleanup_doc_ Doc new_only = make_root(&spec, SIGS({.key = &W.root2}));
        _cleanup_doc_ Doc old_only = make_root(&spec, SIGS({.key = &W.root}));
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        ck_assert_int_eq(tuf_trusted_set_update_root(s, new_only.data, new_only.size), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, old_only.data, old_only.size), -EBADMSG);
        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 1);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, both.data, both.size), 0);
        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 2);
        /* root keys are not timestamp or snapshot keys */
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
        ck_assert(tuf_trusted_set_rotated(s, TUF_ROLE_ROOT));
}
END_TEST

/* After rotation, v3 must be signed by the new root keys, the old ones no longer count. */
START_TEST(test_root_rotation_old_keys_revoked) {
        RootSpec spec2 = rotated_root_spec(), spec3 = rotated_root_spec();
        _cleanup_doc_ Doc root1 = std_root(1), root2 = {}, by_old = {}, by_new = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        spec3.version = 3;
        root2 = make_root(&spec2, SIGS({.key = &W.root}, {.key = &W.root2}));
        by_old = make_root(&spec3, SIGS({.key = &W.root}));
        by_new = make_root(&spec3, SIGS({.key = &W.root2}));
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, by_old.data, by_old.size), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, by_new.data, by_new.size), 0);
}
END_TEST

START_TEST(test_fast_forward_rotated) {
        RootSpec spec = std_root_spec(2);
        _cleanup_doc_ Doc root1 = std_root(1), root2 = {};
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){.no_hashes = true});
        _cleanup_doc_ Doc ts_new = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        spec.keys[4] = &W.timestamp2.pub;
        spec.roles[TUF_ROLE_TIMESTAMP] = (RoleSpec){{W.timestamp2.pub.keyid}, 1};
        root2 = make_root(&spec, SIGS({.key = &W.root}));
        ts_new = make_timestamp(1, 0, meta_for("snapshot.json", 1, NULL), SIGS({.key = &W.timestamp2}));

        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert(tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
        /* the old key's timestamp (e.g. inflated by an attacker) is no longer trusted */
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), -EBADMSG);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, ts_new.data, ts_new.size), 0);
}
END_TEST

START_TEST(test_rotated_threshold_change) {
        RootSpec spec = std_root_spec(2);
        _cleanup_doc_ Doc root1 = std_root(1), root2 = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        spec.keys[4] = &W.other.pub;
        spec.roles[TUF_ROLE_SNAPSHOT] = (RoleSpec){{W.snapshot.pub.keyid, W.other.pub.keyid}, 1};
        root2 = make_root(&spec, SIGS({.key = &W.root}));
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert(tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
}
END_TEST

START_TEST(test_rotated_threshold_only) {
        RootSpec spec = std_root_spec(2);
        _cleanup_doc_ Doc root1 = std_root(1), root2 = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        spec.roles[TUF_ROLE_TIMESTAMP].threshold = 2;
        root2 = make_root(&spec, SIGS({.key = &W.root}));
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert(tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
}
END_TEST

/* Same keyid, other key material: a rotation too. */
START_TEST(test_rotated_key_material_only) {
        RootSpec spec = std_root_spec(2);
        TufKey swapped = W.other.pub;
        _cleanup_doc_ Doc root1 = std_root(1), root2 = {};
        _cleanup_set_ TufTrustedSet *s = load_root(&root1);

        swapped.keyid = W.snapshot.pub.keyid;
        spec.keys[2] = &swapped;
        root2 = make_root(&spec, SIGS({.key = &W.root}));
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), 0);
        ck_assert(tuf_trusted_set_rotated(s, TUF_ROLE_SNAPSHOT));
        ck_assert(!tuf_trusted_set_rotated(s, TUF_ROLE_TIMESTAMP));
}
END_TEST

/* ---- call order ---------------------------------------------------------------------- */

START_TEST(test_call_order) {
        _cleanup_chain_ Chain c = make_chain(&(ChainSpec){});
        _cleanup_doc_ Doc root2 = std_root(2);
        _cleanup_set_ TufTrustedSet *s = load_root(&c.root);

        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -EBUSY);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size),
                -EBUSY);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, root2.data, root2.size), -EBUSY);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size),
                -EBUSY);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false), 0);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, c.timestamp.data, c.timestamp.size), -EBUSY);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "releases", "targets", c.releases.data, c.releases.size),
                -EBUSY);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", c.targets.data, c.targets.size), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, c.snapshot.data, c.snapshot.size, false),
                         -EBUSY);
        ck_assert_uint_eq(tuf_trusted_set_root(s)->version, 1);
}
END_TEST

/* ---- hashes ----------------------------------------------------------------------- */

START_TEST(test_unknown_hash_algorithm_only) {
        _cleanup_doc_ Doc root = std_root(1);
        _cleanup_set_ TufTrustedSet *s = load_root(&root);
        static const char ts[] =
                "{\"_type\":\"timestamp\",\"expires\":\"2030-01-01T00:00:00Z\",\"meta\":{\"snapshot.json\":"
                "{\"hashes\":{\"md5\":\"d41d8cd98f00b204e9800998ecf8427e\"},\"length\":10,\"version\":1}},"
                "\"spec_version\":\"1.0.31\",\"version\":1}";
        _cleanup_doc_ Doc doc = envelope(ts, strlen(ts), SIGS({.key = &W.timestamp}));

        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, doc.data, doc.size), -EOPNOTSUPP);
        ck_assert_ptr_null(tuf_trusted_set_timestamp(s));
}
END_TEST

/* ---- golden vector ----------------------------------------------------------------- */

/*
 * A root.json made once by oob's publishing code (ed25519 key generated for
 * it, private half discarded) and frozen here: catches any change in
 * canonical JSON, keyid or signature handling that would make clients stop
 * trusting roots they already have.
 */
static const char golden_root[] =
        "{\"signatures\":[{\"keyid\":\"30319aef81693da7fc82d7a5e9cd5d08b0269627c9aa96914004807e23"
        "2f9f72\",\"sig\":\"ba8c6b381d31ea1f5c87982a4057f223eb6495528f0f47abfacef6f5d96ed7390d503"
        "4170625707969ef4ca09b5d9496285c78e0530661c5a4ca2de287f94b04\"}],\"signed\":{\"_type\":\""
        "root\",\"consistent_snapshot\":true,\"expires\":\"2035-01-01T00:00:00Z\",\"keys\":{\"303"
        "19aef81693da7fc82d7a5e9cd5d08b0269627c9aa96914004807e232f9f72\":{\"keytype\":\"ed25519\""
        ",\"keyval\":{\"public\":\"9de099755d0cad09b4dc556bad719a44247c898a898c4acf11348b93177c7f"
        "d2\"},\"scheme\":\"ed25519\"}},\"roles\":{\"root\":{\"keyids\":[\"30319aef81693da7fc82d7"
        "a5e9cd5d08b0269627c9aa96914004807e232f9f72\"],\"threshold\":1},\"snapshot\":{\"keyids\":"
        "[\"30319aef81693da7fc82d7a5e9cd5d08b0269627c9aa96914004807e232f9f72\"],\"threshold\":1},"
        "\"targets\":{\"keyids\":[\"30319aef81693da7fc82d7a5e9cd5d08b0269627c9aa96914004807e232f9"
        "f72\"],\"threshold\":1},\"timestamp\":{\"keyids\":[\"30319aef81693da7fc82d7a5e9cd5d08b02"
        "69627c9aa96914004807e232f9f72\"],\"threshold\":1}},\"spec_version\":\"1.0.31\",\"version"
        "\":1}}";

START_TEST(test_golden_root) {
        TufTrustedSet *s = NULL;
        const TufRoot *r;
        char *bad;

        ck_assert_int_eq(tuf_trusted_set_new(golden_root, strlen(golden_root), NOW, &s), 0);
        r = tuf_trusted_set_root(s);
        ck_assert_uint_eq(r->version, 1);
        ck_assert_uint_eq(r->n_keys, 1);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), 0);
        s = tuf_trusted_set_free(s);

        /* one byte changed in the signed part (the version) */
        bad = strdup(golden_root);
        ck_assert_ptr_nonnull(bad);
        ck_assert_ptr_nonnull(strstr(bad, "\"version\":1"));
        strstr(bad, "\"version\":1")[10] = '2';
        ck_assert_int_eq(tuf_trusted_set_new(bad, strlen(bad), NOW, &s), -EBADMSG);
        /* one byte changed in the signature */
        memcpy(bad, golden_root, sizeof(golden_root));
        {
                char *sig = strstr(bad, "\"sig\":\"") + 7;
                sig[5] = sig[5] == '0' ? '1' : '0';
        }
        ck_assert_int_eq(tuf_trusted_set_new(bad, strlen(bad), NOW, &s), -EBADMSG);
        free(bad);
        ck_assert_ptr_null(s);
}
END_TEST

/* ---- a repository made by another implementation ---------------------------------- */

/*
 * Metadata made by tuf-js' @tufjs/models (tests/interop/make-repo.mjs --keys
 * mixed), frozen here as written (pretty-printed, so canonicalization is
 * exercised too): root rotation 1 -> 2, ed25519, ecdsa-sha2-nistp256 (both
 * keytype spellings) and rsassa-pss-sha256 keys, a 2-of-2 targets threshold,
 * the delegated role "releases".
 */
static const char tufjs_root1[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"a1388cfce1c06cdfaebbc0ba4a97e95ca9bce794f8b836a54f48b60f8483f288\",\n"
        "   \"sig\": "
        "\"c80e91e5213af36f4a7eaa1c382aed78627e25e23bd8d750166b5ec077a82f117fdd0f9dcf9549f565c16a7143df66cf3"
        "53d49b76c2bfd8e09dd9ec25321150b\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"root\",\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 1,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\",\n"
        "  \"keys\": {\n"
        "   \"a1388cfce1c06cdfaebbc0ba4a97e95ca9bce794f8b836a54f48b60f8483f288\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"d992e0801fef02a6187da2b093e7cfb96cab36998c337371f72ed20c2dce7e55\"\n"
        "    }\n"
        "   },\n"
        "   \"264c003b7c61686c3fb00b719ad1ca1815dfbc719428c13763e9c34e287372a7\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"5b65ba1250b6b75ae27e1379903832ee90bfd51d56a60b188f33a8627100f138\"\n"
        "    }\n"
        "   },\n"
        "   \"aab6ed068f9b0f31d67e87278ac9827fd9b8cbbbb774719fa440942236544ca2\": {\n"
        "    \"keytype\": \"ecdsa\",\n"
        "    \"scheme\": \"ecdsa-sha2-nistp256\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"-----BEGIN PUBLIC "
        "KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1RI906LxxD3Cy0mwU2XBKs7/"
        "6BJB\\noDdWrkYgjK1PzOfDkQYQ+1PSKLu2sHLW1/M7b+k0g8fxXOeM/pkP36cnkQ==\\n-----END PUBLIC "
        "KEY-----\\n\"\n"
        "    }\n"
        "   },\n"
        "   \"dcf179f89ec7452b084c8753f3591a02a1a533c5efd0178cc9cc4ff325a88010\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"b5bfd4648cbc2bd2259456a3fa446cd644374ded887586b62ed10fc80af4c470\"\n"
        "    }\n"
        "   },\n"
        "   \"33f085164721cee4717bb2bee91231b95c0ec0de78d15ea2a6d88aafa452a456\": {\n"
        "    \"keytype\": \"ecdsa-sha2-nistp256\",\n"
        "    \"scheme\": \"ecdsa-sha2-nistp256\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"-----BEGIN PUBLIC "
        "KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELL7RaDgG2qVEJOHLuOA7KE72IHR+"
        "\\nnVY90dEYHPo8xNMFlt2VXuBS01olW15N5drwnk1NP8PuYlJA6BfnEq5Xfw==\\n-----END PUBLIC KEY-----\\n\"\n"
        "    }\n"
        "   }\n"
        "  },\n"
        "  \"roles\": {\n"
        "   \"root\": {\n"
        "    \"keyids\": [\n"
        "     \"a1388cfce1c06cdfaebbc0ba4a97e95ca9bce794f8b836a54f48b60f8483f288\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"timestamp\": {\n"
        "    \"keyids\": [\n"
        "     \"264c003b7c61686c3fb00b719ad1ca1815dfbc719428c13763e9c34e287372a7\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"snapshot\": {\n"
        "    \"keyids\": [\n"
        "     \"aab6ed068f9b0f31d67e87278ac9827fd9b8cbbbb774719fa440942236544ca2\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"targets\": {\n"
        "    \"keyids\": [\n"
        "     \"dcf179f89ec7452b084c8753f3591a02a1a533c5efd0178cc9cc4ff325a88010\",\n"
        "     \"33f085164721cee4717bb2bee91231b95c0ec0de78d15ea2a6d88aafa452a456\"\n"
        "    ],\n"
        "    \"threshold\": 2\n"
        "   }\n"
        "  },\n"
        "  \"consistent_snapshot\": true\n"
        " }\n"
        "}\n";

static const char tufjs_root2[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"a1388cfce1c06cdfaebbc0ba4a97e95ca9bce794f8b836a54f48b60f8483f288\",\n"
        "   \"sig\": "
        "\"b6886a1a651fa951e1ee765c4d94ace384b8b606ac4d64eaf17d743b0a32442a8c06291a0f4f5b93ea7d2304b4032a55c"
        "287e57d228154e7d36f0a7506d08b08\"\n"
        "  },\n"
        "  {\n"
        "   \"keyid\": \"bd360b8366da70f209833401b62bea74c6894d2b1a06d2388614c1bbe785de4b\",\n"
        "   \"sig\": "
        "\"a35f1adaf7f360dcdb9df71fe9affa23abaca60c8406459915263adc975db0cc941ba16bdbcc0ca644cbe7476ae7bf134"
        "fc0b9aa5f7c1afb8fe942ece8f75002\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"root\",\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 2,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\",\n"
        "  \"keys\": {\n"
        "   \"bd360b8366da70f209833401b62bea74c6894d2b1a06d2388614c1bbe785de4b\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"f1f15f762e28f3199289bfa0324271f1fb171ed694ed8e1dcd4366f2c1b7eb94\"\n"
        "    }\n"
        "   },\n"
        "   \"264c003b7c61686c3fb00b719ad1ca1815dfbc719428c13763e9c34e287372a7\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"5b65ba1250b6b75ae27e1379903832ee90bfd51d56a60b188f33a8627100f138\"\n"
        "    }\n"
        "   },\n"
        "   \"aab6ed068f9b0f31d67e87278ac9827fd9b8cbbbb774719fa440942236544ca2\": {\n"
        "    \"keytype\": \"ecdsa\",\n"
        "    \"scheme\": \"ecdsa-sha2-nistp256\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"-----BEGIN PUBLIC "
        "KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1RI906LxxD3Cy0mwU2XBKs7/"
        "6BJB\\noDdWrkYgjK1PzOfDkQYQ+1PSKLu2sHLW1/M7b+k0g8fxXOeM/pkP36cnkQ==\\n-----END PUBLIC "
        "KEY-----\\n\"\n"
        "    }\n"
        "   },\n"
        "   \"dcf179f89ec7452b084c8753f3591a02a1a533c5efd0178cc9cc4ff325a88010\": {\n"
        "    \"keytype\": \"ed25519\",\n"
        "    \"scheme\": \"ed25519\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"b5bfd4648cbc2bd2259456a3fa446cd644374ded887586b62ed10fc80af4c470\"\n"
        "    }\n"
        "   },\n"
        "   \"33f085164721cee4717bb2bee91231b95c0ec0de78d15ea2a6d88aafa452a456\": {\n"
        "    \"keytype\": \"ecdsa-sha2-nistp256\",\n"
        "    \"scheme\": \"ecdsa-sha2-nistp256\",\n"
        "    \"keyval\": {\n"
        "     \"public\": \"-----BEGIN PUBLIC "
        "KEY-----\\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELL7RaDgG2qVEJOHLuOA7KE72IHR+"
        "\\nnVY90dEYHPo8xNMFlt2VXuBS01olW15N5drwnk1NP8PuYlJA6BfnEq5Xfw==\\n-----END PUBLIC KEY-----\\n\"\n"
        "    }\n"
        "   }\n"
        "  },\n"
        "  \"roles\": {\n"
        "   \"root\": {\n"
        "    \"keyids\": [\n"
        "     \"bd360b8366da70f209833401b62bea74c6894d2b1a06d2388614c1bbe785de4b\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"timestamp\": {\n"
        "    \"keyids\": [\n"
        "     \"264c003b7c61686c3fb00b719ad1ca1815dfbc719428c13763e9c34e287372a7\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"snapshot\": {\n"
        "    \"keyids\": [\n"
        "     \"aab6ed068f9b0f31d67e87278ac9827fd9b8cbbbb774719fa440942236544ca2\"\n"
        "    ],\n"
        "    \"threshold\": 1\n"
        "   },\n"
        "   \"targets\": {\n"
        "    \"keyids\": [\n"
        "     \"dcf179f89ec7452b084c8753f3591a02a1a533c5efd0178cc9cc4ff325a88010\",\n"
        "     \"33f085164721cee4717bb2bee91231b95c0ec0de78d15ea2a6d88aafa452a456\"\n"
        "    ],\n"
        "    \"threshold\": 2\n"
        "   }\n"
        "  },\n"
        "  \"consistent_snapshot\": true\n"
        " }\n"
        "}\n";

static const char tufjs_timestamp[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"264c003b7c61686c3fb00b719ad1ca1815dfbc719428c13763e9c34e287372a7\",\n"
        "   \"sig\": "
        "\"9a5741560ee7d059a3d243ec79c59216e236752da48ad59641eb3df76cf487a88bb690ec350165bfb06e5d4e2b015708d"
        "38dec0c99c7fe79a4bd2d898fddd90b\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"timestamp\",\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 1,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\",\n"
        "  \"meta\": {\n"
        "   \"snapshot.json\": {\n"
        "    \"version\": 1,\n"
        "    \"length\": 742,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"5fe7c62886d4250375aa9d0a164010f2b7c9052bd722f73a448ae468373d21c1\"\n"
        "    }\n"
        "   }\n"
        "  }\n"
        " }\n"
        "}\n";

static const char tufjs_snapshot[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"aab6ed068f9b0f31d67e87278ac9827fd9b8cbbbb774719fa440942236544ca2\",\n"
        "   \"sig\": "
        "\"304502206a3e178c95d8e066c11cf4572a288f5dc3b1fbbcf6b27396baed7bb869cf4e79022100c07ed8bde580fc46849"
        "f9c51598e8dff646e1ca7291444e2978ec8d2f0bceacd\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"snapshot\",\n"
        "  \"meta\": {\n"
        "   \"targets.json\": {\n"
        "    \"version\": 1,\n"
        "    \"length\": 2805,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"16bf5edbcb5977ce9b579dbefde68412a82192e0666b7a57954ad022f85ba389\"\n"
        "    }\n"
        "   },\n"
        "   \"releases.json\": {\n"
        "    \"version\": 1,\n"
        "    \"length\": 1339,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"ee3997be75bf3da2ea77494dc2e290ac57f136445111cc288523118e4425a5e5\"\n"
        "    }\n"
        "   }\n"
        "  },\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 1,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\"\n"
        " }\n"
        "}\n";

static const char tufjs_targets[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"dcf179f89ec7452b084c8753f3591a02a1a533c5efd0178cc9cc4ff325a88010\",\n"
        "   \"sig\": "
        "\"f4a2395589067e34ded758990510bfbb4fbdd136a14d319a71849e95fe64f5ec1b83f18672a118358557aaa46092fa674"
        "50de42bccf2d2723e3be0c16e13ab07\"\n"
        "  },\n"
        "  {\n"
        "   \"keyid\": \"33f085164721cee4717bb2bee91231b95c0ec0de78d15ea2a6d88aafa452a456\",\n"
        "   \"sig\": "
        "\"3044022002cee633cc4a0a08d40ef0265d684a67112c98550fa72c313aecaaac4b364af402205af9fd312ee5518d7893a"
        "6b549dbe14ede2d0202dc81a7120d5f4927a51aac07\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"targets\",\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 1,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\",\n"
        "  \"targets\": {\n"
        "   \"hello.txt\": {\n"
        "    \"length\": 31,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"f613a8fd5bcbf6ff0990122cbc987ce739e516315017b3a55a1f29caf13c48bd\",\n"
        "     \"sha512\": "
        "\"588567182e5c2b8fb429c3712c989839800681a37ab76fb92635f9ff3f9e3a0054760dc66dc615f38cac93139f225b99b"
        "9b57222f40c05177004e0fb46c57653\"\n"
        "    },\n"
        "    \"custom\": {\n"
        "     \"description\": \"Grüße, 日本語\\nsecond line \\\"quoted\\\" \\\\ backslash\",\n"
        "     \"build\": 42\n"
        "    }\n"
        "   },\n"
        "   \"empty.txt\": {\n"
        "    \"length\": 0,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\n"
        "     \"sha512\": "
        "\"cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f6"
        "3b931bd47417a81a538327af927da3e\"\n"
        "    }\n"
        "   },\n"
        "   \"sub/dir/nested.bin\": {\n"
        "    \"length\": 70000,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"5284d2748488972cd97f707d3792f68dac73317ab26978cf6173289b8bdea3fa\",\n"
        "     \"sha512\": "
        "\"7c9f920a71266a4d7662f4feba3c3e0cbbbf5299a61748ce68fde5fd5326135f365c7bfb2a683aa37b4525c4f93a1a689"
        "c3b8c20c87f4191ce90c5eee8191eca\"\n"
        "    }\n"
        "   }\n"
        "  },\n"
        "  \"x_interop_note\": \"made by tests/interop/make-repo.mjs\",\n"
        "  \"delegations\": {\n"
        "   \"keys\": {\n"
        "    \"fe2980285e014581c8b09df9962830403073ba26fa19ad92d74fc2bd5f5e0138\": {\n"
        "     \"keytype\": \"rsa\",\n"
        "     \"scheme\": \"rsassa-pss-sha256\",\n"
        "     \"keyval\": {\n"
        "      \"public\": \"-----BEGIN PUBLIC "
        "KEY-----\\nMIIBojANBgkqhkiG9w0BAQEFAAOCAY8AMIIBigKCAYEAig90UUBwQ3zyb00LKCoM\\nDPvWvPj/"
        "EG7+NaUEta+M86/O3KagNLQyprzXIM6QZSaVskMrBp9Os854nU/meIYu\\nN+JWk0t0Oi9/"
        "52RdCkn2SEtfaZ0E8RCF7pghFqUd41USn9U8nWqUeUiFr1lkXx0v\\nENsI1ph7+ERIpanx9dLTVyBlLtAuq3+"
        "wApnVW2eKKeqwfer9o5IPWNtYwhka6kQL\\nWNOr34uYu2rEhxeQ8blCrN2PiTkBhXkKc9TUmz/p/"
        "p134YZABNpFoqBJrPFWRMG9\\n4HzKfpdEwZOU88jYVjEFODCGOFhTedza6IlLdkerRplRO6naPR8in/"
        "lup5BWk15I\\nQlvJNYxEOPKICO8TwdJ6NBV25U2xWyi++OeLj9EjzzUIccdjad33x1fYt/"
        "h2nPVr\\nUuYXC7bX3fe8TbYb64HFfpJ7KE5qT3AgCAc4nvj6TlvMrak4T5V4rszbC5fzogkk\\nSUVovyfX9Fdba/"
        "8tgtHZTroBK2Z10ELpGcrIWkOghUlfAgMBAAE=\\n-----END PUBLIC KEY-----\\n\"\n"
        "     }\n"
        "    }\n"
        "   },\n"
        "   \"roles\": [\n"
        "    {\n"
        "     \"keyids\": [\n"
        "      \"fe2980285e014581c8b09df9962830403073ba26fa19ad92d74fc2bd5f5e0138\"\n"
        "     ],\n"
        "     \"threshold\": 1,\n"
        "     \"name\": \"releases\",\n"
        "     \"terminating\": true,\n"
        "     \"paths\": [\n"
        "      \"payloads/*\"\n"
        "     ]\n"
        "    }\n"
        "   ]\n"
        "  }\n"
        " }\n"
        "}\n";

static const char tufjs_releases[] =
        "{\n"
        " \"signatures\": [\n"
        "  {\n"
        "   \"keyid\": \"fe2980285e014581c8b09df9962830403073ba26fa19ad92d74fc2bd5f5e0138\",\n"
        "   \"sig\": "
        "\"608b926e14e0c8b623cbb8d7a3427cb0aacf40aad866d03da509bf019ff7ec3ba81f7ccbf86bf3ae7282617faa42aef71"
        "b87806ba5cec4e01e12975deb979882f436fba2f27348342f8d296b4078be6b9459e92bb2b88d2904a23520bcb9ad999e19"
        "48d0ebc996c24319487e52656d42b2af5f1f47ca563c30ea1620f6690427a8e8c36140d114f018f03ce317e7f73269c5b3d"
        "cdf601afa97beb79e0b315f749b6606f290241045cb9f30fe2847b75d48e8ba611b68fd2a67a287e8d93401745264320c57"
        "2ac7e5f28de948ec94da0fbff1a50660ee15f08c3f5e61a4cd1626debcf3bf621d2e7ad568c270dd96e5ea2d53b0af4af45"
        "6dc678fc13c802fd8e07cace0992af8f47b82161919579a905a63aee8268f65d077af996629a2377436909e32896d6d427d"
        "615176ed893dc87596b92a8f98c3c6fbfd5b7dc36e261f35238197abfb00a69a70af561a23da3ee5d1742beaed86a0c3d5b"
        "d170952eeefb44996170d5320eb58b1482e6fbd7deb774123fdacb3387f6376307e70326c68b0\"\n"
        "  }\n"
        " ],\n"
        " \"signed\": {\n"
        "  \"_type\": \"targets\",\n"
        "  \"spec_version\": \"1.0.31\",\n"
        "  \"version\": 1,\n"
        "  \"expires\": \"2026-12-21T08:11:19Z\",\n"
        "  \"targets\": {\n"
        "   \"payloads/delegated.tar\": {\n"
        "    \"length\": 5000,\n"
        "    \"hashes\": {\n"
        "     \"sha256\": \"35a8aec74cbe4838eb29fdf7563444130eacf0b30d640563cceefda0a4ff0f82\",\n"
        "     \"sha512\": "
        "\"8533f0ff8bd426c6fb7e14535ca497decf039f8233247a1cd0481f40ae3f898e08c32642aa4d896dbca65cb055fbf1aea"
        "e92d51965df4b4466d8fcf6e0ee67c5\"\n"
        "    }\n"
        "   }\n"
        "  }\n"
        " }\n"
        "}\n";

START_TEST(test_tufjs_repository) {
        _cleanup_set_ TufTrustedSet *s = NULL;
        const TufTargets *t;
        int64_t now;
        char *bad;

        ck_assert_int_eq(parse_iso8601_utc("2026-11-22T00:00:00Z", &now), 0);
        ck_assert_int_eq(tuf_trusted_set_new(tufjs_root1, strlen(tufjs_root1), now, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, tufjs_root2, strlen(tufjs_root2)), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), 0);
        ck_assert_int_eq(tuf_trusted_set_update_timestamp(s, tufjs_timestamp, strlen(tufjs_timestamp)), 0);
        ck_assert_int_eq(tuf_trusted_set_update_snapshot(s, tufjs_snapshot, strlen(tufjs_snapshot), false),
                         0);
        ck_assert_int_eq(
                tuf_trusted_set_update_targets(s, "targets", "root", tufjs_targets, strlen(tufjs_targets)),
                0);
        ck_assert_int_eq(tuf_trusted_set_update_targets(s, "releases", "targets", tufjs_releases,
                                                        strlen(tufjs_releases)),
                         0);

        t = tuf_trusted_set_targets(s, "targets");
        ck_assert_ptr_nonnull(tuf_targets_find(t, "sub/dir/nested.bin"));
        ck_assert_uint_eq(t->n_roles, 1);
        ck_assert(tuf_delegated_role_matches(&t->roles[0], "payloads/delegated.tar"));
        ck_assert_ptr_nonnull(
                tuf_targets_find(tuf_trusted_set_targets(s, "releases"), "payloads/delegated.tar"));

        /* the same documents once the clock passed their expiry */
        s = tuf_trusted_set_free(s);
        ck_assert_int_eq(tuf_trusted_set_new(tufjs_root2, strlen(tufjs_root2), now + 60 * 86400, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_check_root(s), -EKEYEXPIRED);
        s = tuf_trusted_set_free(s);

        /* one byte changed in the signed part of the rotated root */
        bad = strdup(tufjs_root2);
        ck_assert_ptr_nonnull(bad);
        ck_assert_ptr_nonnull(strstr(bad, "\"version\": 2"));
        strstr(bad, "\"version\": 2")[11] = '3';
        ck_assert_int_eq(tuf_trusted_set_new(tufjs_root1, strlen(tufjs_root1), now, &s), 0);
        ck_assert_int_eq(tuf_trusted_set_update_root(s, bad, strlen(bad)), -EBADMSG);
        free(bad);
}
END_TEST

int main(void) {
        Suite *suite = suite_create("trusted");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_good_chain);
        tcase_add_test(tc, test_good_chain_without_meta_hashes);
        tcase_add_test(tc, test_tampered_root);
        tcase_add_test(tc, test_tampered_timestamp);
        tcase_add_test(tc, test_tampered_snapshot);
        tcase_add_test(tc, test_tampered_targets);
        tcase_add_test(tc, test_tampered_target_hash);
        tcase_add_test(tc, test_wrong_key_root);
        tcase_add_test(tc, test_wrong_key_timestamp);
        tcase_add_test(tc, test_wrong_key_snapshot);
        tcase_add_test(tc, test_wrong_key_targets);
        tcase_add_test(tc, test_rollback_timestamp);
        tcase_add_test(tc, test_rollback_snapshot_role_version);
        tcase_add_test(tc, test_rollback_snapshot_role_removed);
        tcase_add_test(tc, test_snapshot_moves_forward);
        tcase_add_test(tc, test_rollback_snapshot_after_trusted);
        tcase_add_test(tc, test_rollback_targets);
        tcase_add_test(tc, test_rollback_root);
        tcase_add_test(tc, test_freeze_timestamp);
        tcase_add_test(tc, test_freeze_snapshot);
        tcase_add_test(tc, test_freeze_targets);
        tcase_add_test(tc, test_freeze_final_root);
        tcase_add_test(tc, test_expired_intermediate_root);
        tcase_add_test(tc, test_mix_snapshot_hashes);
        tcase_add_test(tc, test_mix_snapshot_length);
        tcase_add_test(tc, test_mix_snapshot_version);
        tcase_add_test(tc, test_mix_targets);
        tcase_add_test(tc, test_role_not_in_snapshot_or_not_delegated);
        tcase_add_test(tc, test_wrong_role_type);
        tcase_add_test(tc, test_threshold_distinct_keys);
        tcase_add_test(tc, test_threshold_one_key_not_enough);
        tcase_add_test(tc, test_threshold_duplicate_signatures);
        tcase_add_test(tc, test_threshold_duplicate_keyid_in_role);
        tcase_add_test(tc, test_threshold_same_material_two_keyids);
        tcase_add_test(tc, test_threshold_unauthorized_keys);
        tcase_add_test(tc, test_root_rotation);
        tcase_add_test(tc, test_root_rotation_old_keys_revoked);
        tcase_add_test(tc, test_fast_forward_rotated);
        tcase_add_test(tc, test_rotated_threshold_change);
        tcase_add_test(tc, test_rotated_threshold_only);
        tcase_add_test(tc, test_rotated_key_material_only);
        tcase_add_test(tc, test_role_not_delegated);
        tcase_add_test(tc, test_call_order);
        tcase_add_test(tc, test_unknown_hash_algorithm_only);
        tcase_add_test(tc, test_golden_root);
        tcase_add_test(tc, test_tufjs_repository);
        suite_add_tcase(suite, tc);

        sr = srunner_create(suite);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TUF role documents: the envelope, threshold counting, the strict role
 * parsers and the serializers.
 */
#include <check.h>
#include <jansson.h>
#include <time.h>

#include "manifests-internal.h"

#define EXPIRES ((int64_t) 1900000000) /* 2030-03-17T17:46:40Z */

typedef struct TestKey {
        TufPrivateKey *priv;
        TufKey pub;
} TestKey;

static TestKey K1, K2, K3;

static void key_init(TestKey *k) {
        ck_assert_int_eq(tuf_private_key_generate(TUF_KEY_ED25519, &k->priv), 0);
        ck_assert_int_eq(tuf_private_key_public(k->priv, &k->pub), 0);
}

static void key_done(TestKey *k) {
        k->priv = tuf_private_key_free(k->priv);
        tuf_key_done(&k->pub);
}

static void setup(void) {
        key_init(&K1);
        key_init(&K2);
        key_init(&K3);
}

static void teardown(void) {
        key_done(&K1);
        key_done(&K2);
        key_done(&K3);
}

static json_t *parse_json(const char *s) {
        json_t *j = NULL;

        ck_assert_int_eq(tuf_json_parse(s, strlen(s), TUF_METADATA_MAX_LENGTH, &j), 0);
        return j;
}

/* Interpret j as role t, free the result; return the parser's code. */
static int parse_as(const json_t *j, TufRoleType t) {
        int r;

        switch (t) {
        case TUF_ROLE_ROOT: {
                TufRoot *x = NULL;
                r = tuf_root_from_json(j, &x);
                tuf_root_free(x);
                break;
        }
        case TUF_ROLE_TIMESTAMP: {
                TufTimestamp *x = NULL;
                r = tuf_timestamp_from_json(j, &x);
                tuf_timestamp_free(x);
                break;
        }
        case TUF_ROLE_SNAPSHOT: {
                TufSnapshot *x = NULL;
                r = tuf_snapshot_from_json(j, &x);
                tuf_snapshot_free(x);
                break;
        }
        case TUF_ROLE_TARGETS: {
                TufTargets *x = NULL;
                r = tuf_targets_from_json(j, &x);
                tuf_targets_free(x);
                break;
        }
        default:
                ck_abort();
        }
        return r;
}

/* A signed root object: K1 root, K2 timestamp and snapshot, K3 targets. */
static json_t *base_root(void) {
        _cleanup_free_ char *s = NULL;
        TufKey keys[] = {K1.pub, K2.pub, K3.pub};
        char *k1[] = {K1.pub.keyid, NULL}, *k2[] = {K2.pub.keyid, NULL}, *k3[] = {K3.pub.keyid, NULL};
        TufRoot r = {
                .version = 1,
                .expires = EXPIRES,
                .consistent_snapshot = true,
                .keys = keys,
                .n_keys = 3,
                .roles =
                        {
                                [TUF_ROLE_ROOT] = {k1, 1},
                                [TUF_ROLE_TIMESTAMP] = {k2, 1},
                                [TUF_ROLE_SNAPSHOT] = {k2, 1},
                                [TUF_ROLE_TARGETS] = {k3, 1},
                        },
        };
        size_t n;

        ck_assert_int_eq(tuf_root_to_json(&r, &s, &n), 0);
        return parse_json(s);
}

static json_t *base_timestamp(void) {
        return parse_json("{\"_type\":\"timestamp\",\"expires\":\"2030-01-01T00:00:00Z\",\"meta\":"
                          "{\"snapshot.json\":{\"version\":3}},\"spec_version\":\"1.0.31\",\"version\":7}");
}

static json_t *base_snapshot(void) {
        return parse_json(
                "{\"_type\":\"snapshot\",\"expires\":\"2030-01-01T00:00:00Z\",\"meta\":"
                "{\"targets.json\":{\"version\":2},\"releases.json\":{\"version\":5,\"length\":10}},"
                "\"spec_version\":\"1.0.31\",\"version\":3}");
}

static json_t *base_targets(void) {
        return parse_json(
                "{\"_type\":\"targets\",\"expires\":\"2030-01-01T00:00:00Z\",\"spec_version\":\"1.0\","
                "\"version\":2,\"targets\":{\"a/b.txt\":{\"length\":3,\"hashes\":{\"sha256\":"
                "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"},"
                "\"custom\":{\"z\":1,\"a\":[\"x\",{\"q\":null}]}}},"
                "\"delegations\":{\"keys\":{},\"roles\":["
                "{\"name\":\"releases\",\"keyids\":[\"abcd\"],\"threshold\":1,\"terminating\":true,"
                "\"paths\":[\"releases/*\"]},"
                "{\"name\":\"bins\",\"keyids\":[\"abcd\"],\"threshold\":2,\"terminating\":false,"
                "\"path_hash_prefixes\":[\"00\",\"ff\"]}]}}");
}

/* Set a member at a '/'-separated path of objects (array index as number). */
static void set_at(json_t *j, const char *path, json_t *v) {
        _cleanup_free_ char *p = strdup(path);
        char *last = strrchr(p, '/'), *part, *save = NULL;
        json_t *o = j;

        if (last) {
                *last++ = 0;
                for (part = strtok_r(p, "/", &save); part; part = strtok_r(NULL, "/", &save))
                        o = json_is_array(o) ? json_array_get(o, strtoul(part, NULL, 10))
                                             : json_object_get(o, part);
        } else
                last = p;
        ck_assert_ptr_nonnull(o);
        if (v)
                ck_assert_int_eq(json_object_set_new(o, last, v), 0);
        else
                ck_assert_int_eq(json_object_del(o, last), 0);
}

/* Parse base with one member changed (v) or removed (NULL). */
static int parse_modified(json_t *(*base)(void), TufRoleType t, const char *path, json_t *v) {
        _cleanup_json_ json_t *j = base();

        set_at(j, path, v);
        return parse_as(j, t);
}

/* ---- roles and tables ------------------------------------------------------ */

START_TEST(test_role_type_table) {
        ck_assert_str_eq(tuf_role_type_to_string(TUF_ROLE_ROOT), "root");
        ck_assert_str_eq(tuf_role_type_to_string(TUF_ROLE_TARGETS), "targets");
        ck_assert_int_eq(tuf_role_type_from_string("timestamp"), TUF_ROLE_TIMESTAMP);
        ck_assert_int_eq(tuf_role_type_from_string("snapshot"), TUF_ROLE_SNAPSHOT);
        ck_assert_int_eq(tuf_role_type_from_string("mirrors"), -EINVAL);
        ck_assert_int_eq(tuf_role_type_from_string(NULL), -EINVAL);
        ck_assert_ptr_null(tuf_role_type_to_string(_TUF_ROLE_TYPE_MAX));
}
END_TEST

/* ---- the envelope ------------------------------------------------------------ */

static char *sign_doc(const char *signed_json, TestKey **keys, size_t n, size_t *ret_size) {
        _cleanup_json_ json_t *j = parse_json(signed_json);
        _cleanup_free_ char *canonical = NULL;
        TufPrivateKey *privs[4];
        size_t cn;
        char *out;

        ck_assert_int_eq(tuf_json_canonical(j, &canonical, &cn), 0);
        for (size_t i = 0; i < n; i++)
                privs[i] = keys[i]->priv;
        ck_assert_int_eq(tuf_metadata_sign(canonical, cn, privs, n, &out, ret_size), 0);
        return out;
}

START_TEST(test_envelope_parse) {
        static const char ts[] = "{\"_type\":\"timestamp\",\"version\":1, \"x\":[1,2]}";
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_free_ char *doc = NULL;
        size_t n;

        doc = sign_doc(ts, (TestKey *[]){&K1, &K2}, 2, &n);
        ck_assert_int_eq(tuf_envelope_parse(doc, n, &e), 0);
        ck_assert_int_eq(e->type, TUF_ROLE_TIMESTAMP);
        ck_assert_uint_eq(e->n_signatures, 2);
        ck_assert_str_eq(e->canonical, "{\"_type\":\"timestamp\",\"version\":1,\"x\":[1,2]}");
        ck_assert_uint_eq(e->canonical_size, strlen(e->canonical));
        ck_assert_uint_eq(e->signatures[0].sig_size, 64);
        ck_assert(json_is_object(e->signed_json));
}
END_TEST

static int parse_envelope_str(const char *s) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;

        return tuf_envelope_parse(s, strlen(s), &e);
}

START_TEST(test_envelope_malformed) {
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{\"_type\":\"root\"}}"), 0);
        /* unsigned top-level members are ignored */
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{\"_type\":\"root\"},\"x\":1}"),
                         0);
        ck_assert_int_eq(parse_envelope_str("not json"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[]}"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signed\":{\"_type\":\"root\"}}"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":{},\"signed\":{\"_type\":\"root\"}}"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":[]}"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{}}"), -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{\"_type\":\"mirrors\"}}"),
                         -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{\"_type\":1}}"), -EPROTO);
        ck_assert_int_eq(
                parse_envelope_str("{\"signatures\":[{\"sig\":\"00\"}],\"signed\":{\"_type\":\"root\"}}"),
                -EPROTO);
        ck_assert_int_eq(
                parse_envelope_str("{\"signatures\":[{\"keyid\":\"a\"}],\"signed\":{\"_type\":\"root\"}}"),
                -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[{\"keyid\":\"\",\"sig\":\"00\"}],\"signed\":{"
                                            "\"_type\":\"root\"}}"),
                         -EPROTO);
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[1],\"signed\":{\"_type\":\"root\"}}"),
                         -EPROTO);
        /* floats have no canonical form */
        ck_assert_int_eq(parse_envelope_str("{\"signatures\":[],\"signed\":{\"_type\":\"root\",\"v\":1.5}}"),
                         -EPROTO);
}
END_TEST

START_TEST(test_envelope_caps) {
        _cleanup_free_ char *s = NULL, *id = NULL;
        size_t n = 0;
        FILE *f;

        /* a keyid longer than TUF_KEYID_MAX */
        id = malloc(TUF_KEYID_MAX + 2);
        memset(id, 'a', TUF_KEYID_MAX + 1);
        id[TUF_KEYID_MAX + 1] = 0;
        f = open_memstream(&s, &n);
        fprintf(f, "{\"signatures\":[{\"keyid\":\"%s\",\"sig\":\"00\"}],\"signed\":{\"_type\":\"root\"}}",
                id);
        fclose(f);
        ck_assert_int_eq(parse_envelope_str(s), -EPROTO);
        free(s);
        s = NULL;

        /* more signatures than any role needs */
        f = open_memstream(&s, &n);
        fputs("{\"signatures\":[", f);
        for (int i = 0; i < 1025; i++)
                fprintf(f, "%s{\"keyid\":\"k%d\",\"sig\":\"00\"}", i ? "," : "", i);
        fputs("],\"signed\":{\"_type\":\"root\"}}", f);
        fclose(f);
        ck_assert_int_eq(parse_envelope_str(s), -EFBIG);
}
END_TEST

/* ---- threshold counting ----------------------------------------------------- */

/* An envelope over a fixed "signed" with signatures (keyid, key) in order;
 * a NULL key makes a signature of 64 zero bytes. */
typedef struct Sig {
        const char *keyid;
        const TestKey *key;
        const char *raw_hex; /* used as "sig" verbatim when set */
} Sig;

static TufEnvelope *envelope_with(const Sig *sigs, size_t n) {
        static const char signed_json[] = "{\"_type\":\"targets\",\"version\":1}";
        _cleanup_json_ json_t *doc = NULL, *arr = json_array();
        _cleanup_free_ char *text = NULL;
        TufEnvelope *e = NULL;
        size_t size;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *raw = NULL;
                _cleanup_free_ char *hex = NULL;
                size_t raw_size = 64;

                if (sigs[i].raw_hex)
                        hex = strdup(sigs[i].raw_hex);
                else {
                        if (sigs[i].key)
                                ck_assert_int_eq(tuf_private_key_sign(sigs[i].key->priv, signed_json,
                                                                      strlen(signed_json), &raw, &raw_size),
                                                 0);
                        else
                                raw = calloc(1, raw_size);
                        hex = hexmem(raw, raw_size);
                }
                ck_assert_int_eq(json_array_append_new(
                                         arr, json_pack("{s:s,s:s}", "keyid", sigs[i].keyid, "sig", hex)),
                                 0);
        }
        doc = json_pack("{s:O,s:o}", "signatures", arr, "signed", parse_json(signed_json));
        ck_assert_int_eq(tuf_json_canonical(doc, &text, &size), 0);
        ck_assert_int_eq(tuf_envelope_parse(text, size, &e), 0);
        return e;
}

static int verify(const Sig *sigs, size_t n_sigs, const TufKey *keys, size_t n_keys,
                  const char *const *keyids, unsigned threshold) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = envelope_with(sigs, n_sigs);
        TufRoleKeys role = {.keyids = (char **) keyids, .threshold = threshold};

        return tuf_envelope_verify(e, keys, n_keys, &role);
}

#define IDS(...) ((const char *const[]){__VA_ARGS__, NULL})

START_TEST(test_verify_threshold) {
        const TufKey keys[] = {K1.pub, K2.pub, K3.pub};
        const Sig both[] = {{K1.pub.keyid, &K1, NULL}, {K2.pub.keyid, &K2, NULL}};
        const Sig twice[] = {{K1.pub.keyid, &K1, NULL}, {K1.pub.keyid, &K1, NULL}};
        const Sig not_hex[] = {{K1.pub.keyid, NULL, "zz"}};
        const Sig misnamed[] = {{"unlisted", &K1, NULL}};

        ck_assert_int_eq(verify(both, 2, keys, 3, IDS(K1.pub.keyid, K2.pub.keyid), 2), 0);
        ck_assert_int_eq(verify(both, 2, keys, 3, IDS(K1.pub.keyid, K2.pub.keyid), 1), 0);
        ck_assert_int_eq(verify(both, 2, keys, 3, IDS(K1.pub.keyid, K2.pub.keyid), 3), -EBADMSG);
        ck_assert_int_eq(verify(both, 1, keys, 3, IDS(K1.pub.keyid, K2.pub.keyid), 2), -EBADMSG);
        ck_assert_int_eq(verify(both, 0, keys, 3, IDS(K1.pub.keyid), 1), -EBADMSG);
        /* the same signature twice is one key */
        ck_assert_int_eq(verify(twice, 2, keys, 3, IDS(K1.pub.keyid, K2.pub.keyid), 2), -EBADMSG);
        /* a keyid listed twice in the role is one key */
        ck_assert_int_eq(verify(twice, 2, keys, 3, IDS(K1.pub.keyid, K1.pub.keyid), 2), -EBADMSG);
        /* signatures by keys the role does not list are ignored */
        ck_assert_int_eq(verify(both, 2, keys, 3, IDS(K1.pub.keyid, K3.pub.keyid), 2), -EBADMSG);
        /* a keyid the role lists but the delegator gives no key for */
        ck_assert_int_eq(verify(both, 2, keys + 1, 2, IDS(K1.pub.keyid, K2.pub.keyid), 2), -EBADMSG);
        ck_assert_int_eq(verify(both, 2, keys + 1, 2, IDS(K1.pub.keyid, K2.pub.keyid), 1), 0);
        /* signatures are matched to keys by keyid, as other clients do */
        ck_assert_int_eq(verify(misnamed, 1, keys, 3, IDS(K1.pub.keyid), 1), -EBADMSG);
        /* a signature that is not hex is kept and never counts */
        ck_assert_int_eq(verify(not_hex, 1, keys, 3, IDS(K1.pub.keyid), 1), -EBADMSG);
}
END_TEST

START_TEST(test_verify_same_material) {
        TufKey alias = K1.pub;
        const TufKey keys[] = {K1.pub, alias, K2.pub};
        const Sig sigs[] = {{"alias", &K1, NULL}, {K1.pub.keyid, &K1, NULL}};
        const Sig with_k2[] = {{"alias", &K1, NULL}, {K1.pub.keyid, &K1, NULL}, {K2.pub.keyid, &K2, NULL}};
        TufKey keys2[3];

        memcpy(keys2, keys, sizeof(keys));
        keys2[1].keyid = (char *) "alias";
        ck_assert_int_eq(verify(sigs, 2, keys2, 3, (const char *const[]){K1.pub.keyid, "alias", NULL}, 2),
                         -EBADMSG);
        ck_assert_int_eq(verify(sigs, 2, keys2, 3, (const char *const[]){"alias", NULL}, 1), 0);
        ck_assert_int_eq(verify(with_k2, 3, keys2, 3,
                                (const char *const[]){K1.pub.keyid, "alias", K2.pub.keyid, NULL}, 2),
                         0);
}
END_TEST

START_TEST(test_verify_bad_and_unusable) {
        /* K1's keyid with a public key that does not parse */
        TufKey broken = K1.pub;
        TufKey keys[2];
        /* an invalid signature first, then a valid one under the same keyid */
        const Sig retry[] = {{K2.pub.keyid, NULL, NULL}, {K2.pub.keyid, &K2, NULL}};
        const Sig by_k3_as_k2[] = {{K2.pub.keyid, &K3, NULL}};
        const Sig s12[] = {{K1.pub.keyid, &K1, NULL}, {K2.pub.keyid, &K2, NULL}};

        broken.public = (char *) "not a key";
        keys[0] = broken;
        keys[1] = K2.pub;

        ck_assert_int_eq(verify(retry, 2, keys, 2, (const char *const[]){K2.pub.keyid, NULL}, 1), 0);
        ck_assert_int_eq(verify(by_k3_as_k2, 1, keys, 2, (const char *const[]){K2.pub.keyid, NULL}, 1),
                         -EBADMSG);
        /* the unusable key is skipped, the other still counts */
        ck_assert_int_eq(verify(s12, 2, keys, 2, (const char *const[]){K1.pub.keyid, K2.pub.keyid, NULL}, 1),
                         0);
        ck_assert_int_eq(verify(s12, 2, keys, 2, (const char *const[]){K1.pub.keyid, K2.pub.keyid, NULL}, 2),
                         -EBADMSG);
        /* a threshold of 0 is a caller bug, never "anything goes" */
        ck_assert_int_eq(verify(s12, 2, keys, 2, (const char *const[]){K2.pub.keyid, NULL}, 0), -EINVAL);
}
END_TEST

/* ---- role parsers ------------------------------------------------------------------ */

START_TEST(test_root_parse) {
        _cleanup_json_ json_t *j = base_root();
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;

        ck_assert_int_eq(tuf_root_from_json(j, &r), 0);
        ck_assert_uint_eq(r->version, 1);
        ck_assert_int_eq(r->expires, EXPIRES);
        ck_assert_str_eq(r->spec_version, "1.0.31");
        ck_assert(r->consistent_snapshot);
        ck_assert_uint_eq(r->n_keys, 3);
        ck_assert_ptr_nonnull(tuf_key_find(r->keys, r->n_keys, K3.pub.keyid));
        ck_assert_ptr_null(tuf_key_find(r->keys, r->n_keys, "nope"));
        ck_assert_str_eq(r->roles[TUF_ROLE_TARGETS].keyids[0], K3.pub.keyid);
        ck_assert_ptr_null(r->roles[TUF_ROLE_TARGETS].keyids[1]);
        ck_assert_uint_eq(r->roles[TUF_ROLE_SNAPSHOT].threshold, 1);
}
END_TEST

START_TEST(test_common_fields) {
        for (TufRoleType t = 0; t < _TUF_ROLE_TYPE_MAX; t++) {
                json_t *(*base)(void) = t == TUF_ROLE_ROOT        ? base_root
                                        : t == TUF_ROLE_TIMESTAMP ? base_timestamp
                                        : t == TUF_ROLE_SNAPSHOT  ? base_snapshot
                                                                  : base_targets;

                ck_assert_int_eq(parse_modified(base, t, "x-unknown", json_integer(1)), 0);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1.0")), 0);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1.20.3")), 0);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("2.0.0")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("0.9")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("10.0.0")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1.0.31.2")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1..0")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_string("1.0-rc1")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", json_integer(1)), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "spec_version", NULL), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "version", json_integer(0)), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "version", json_integer(-1)), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "version", json_string("1")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "version", json_true()), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "version", NULL), -EPROTO);
                ck_assert_int_eq(
                        parse_modified(base, t, "expires", json_string("2030-01-01T00:00:00+01:00")),
                        -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "expires", json_string("2030-01-01")), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "expires", json_integer(1900000000)), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "expires", NULL), -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "_type",
                                                json_string(t == TUF_ROLE_ROOT ? "targets" : "root")),
                                 -EPROTO);
                ck_assert_int_eq(parse_modified(base, t, "_type", NULL), -EPROTO);
        }
}
END_TEST

START_TEST(test_root_strict) {
        _cleanup_json_ json_t *j = base_root();
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        char path[256];

        /* a key type we do not implement is skipped, not fatal */
        set_at(j, "keys/ffff",
               json_pack("{s:s,s:s,s:{s:s}}", "keytype", "sphincs", "scheme", "sphincs-shake", "keyval",
                         "public", "00"));
        ck_assert_int_eq(tuf_root_from_json(j, &r), 0);
        ck_assert_uint_eq(r->n_keys, 3);
        ck_assert_ptr_null(tuf_key_find(r->keys, r->n_keys, "ffff"));

        /* a malformed key of a known type is an error */
        snprintf(path, sizeof(path), "keys/%s/keyval", K1.pub.keyid);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, path, json_string("x")), -EPROTO);

        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "consistent_snapshot", json_string("yes")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "consistent_snapshot", NULL), 0);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "keys", json_array()), -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "keys", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/snapshot", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/mirrors", json_object()), 0);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/threshold", json_integer(0)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/threshold", json_integer(-1)),
                         -EPROTO);
        ck_assert_int_eq(
                parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/threshold", json_integer(1LL << 40)),
                -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/threshold", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/keyids", json_string("a")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/keyids", json_pack("[i]", 1)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/keyids", json_pack("[s]", "")),
                         -EPROTO);
        /* no keyids: valid, just never satisfiable */
        ck_assert_int_eq(parse_modified(base_root, TUF_ROLE_ROOT, "roles/root/keyids", json_array()), 0);
}
END_TEST

START_TEST(test_timestamp_parse) {
        _cleanup_json_ json_t *j = base_timestamp();
        _cleanup_(tuf_timestamp_freep) TufTimestamp *t = NULL;

        ck_assert_int_eq(tuf_timestamp_from_json(j, &t), 0);
        ck_assert_uint_eq(t->version, 7);
        ck_assert_str_eq(t->snapshot.name, "snapshot.json");
        ck_assert_uint_eq(t->snapshot.version, 3);
        ck_assert_uint_eq(t->snapshot.length, 0);
        ck_assert(!t->snapshot.hashes.has_sha256 && !t->snapshot.hashes.has_sha512);

        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json", NULL),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/version",
                                        json_integer(0)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/length",
                                        json_integer(0)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/length",
                                        json_integer(-5)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/length",
                                        json_integer(100)),
                         0);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/hashes",
                                        json_pack("{s:s}", "md5", "d41d8cd98f00b204e9800998ecf8427e")),
                         -EOPNOTSUPP);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/hashes",
                                        json_object()),
                         -EOPNOTSUPP);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/hashes",
                                        json_pack("{s:s}", "sha256", "xyz")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/hashes",
                                        json_string("x")),
                         -EPROTO);
        ck_assert_int_eq(
                parse_modified(
                        base_timestamp, TUF_ROLE_TIMESTAMP, "meta/snapshot.json/hashes",
                        json_pack("{s:s,s:s}", "md5", "00", "sha256",
                                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
                0);
        /* other entries of timestamp's meta are not interpreted */
        ck_assert_int_eq(
                parse_modified(base_timestamp, TUF_ROLE_TIMESTAMP, "meta/other.json", json_integer(1)), 0);
}
END_TEST

START_TEST(test_snapshot_parse) {
        _cleanup_json_ json_t *j = base_snapshot();
        _cleanup_(tuf_snapshot_freep) TufSnapshot *s = NULL;
        const TufMetaFile *m;

        ck_assert_int_eq(tuf_snapshot_from_json(j, &s), 0);
        ck_assert_uint_eq(s->n_meta, 2);
        m = tuf_snapshot_find(s, "releases.json");
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->version, 5);
        ck_assert_uint_eq(m->length, 10);
        ck_assert_uint_eq(tuf_snapshot_find(s, "targets.json")->version, 2);
        ck_assert_ptr_null(tuf_snapshot_find(s, "targets"));

        ck_assert_int_eq(parse_modified(base_snapshot, TUF_ROLE_SNAPSHOT, "meta/targets.json/version", NULL),
                         -EPROTO);
        ck_assert_int_eq(
                parse_modified(base_snapshot, TUF_ROLE_SNAPSHOT, "meta/targets.json", json_integer(2)),
                -EPROTO);
        ck_assert_int_eq(parse_modified(base_snapshot, TUF_ROLE_SNAPSHOT, "meta", json_array()), -EPROTO);
        ck_assert_int_eq(parse_modified(base_snapshot, TUF_ROLE_SNAPSHOT, "meta", json_object()), 0);
}
END_TEST

START_TEST(test_targets_parse) {
        _cleanup_json_ json_t *j = base_targets();
        _cleanup_(tuf_targets_freep) TufTargets *t = NULL;
        const TufTargetFile *f;

        ck_assert_int_eq(tuf_targets_from_json(j, &t), 0);
        ck_assert_uint_eq(t->version, 2);
        ck_assert_uint_eq(t->n_targets, 1);
        f = tuf_targets_find(t, "a/b.txt");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(f->length, 3);
        ck_assert(f->hashes.has_sha256 && !f->hashes.has_sha512);
        ck_assert_str_eq(f->custom_json, "{\"a\":[\"x\",{\"q\":null}],\"z\":1}");
        ck_assert_ptr_null(tuf_targets_find(t, "a/b"));
        ck_assert(t->has_delegations);
        ck_assert_uint_eq(t->n_delegation_keys, 0);
        ck_assert_uint_eq(t->n_roles, 2);
        /* document order kept: it is the search order */
        ck_assert_str_eq(t->roles[0].name, "releases");
        ck_assert(t->roles[0].terminating);
        ck_assert_str_eq(t->roles[0].paths[0], "releases/*");
        ck_assert_ptr_null(t->roles[0].path_hash_prefixes);
        ck_assert_str_eq(t->roles[1].name, "bins");
        ck_assert(!t->roles[1].terminating);
        ck_assert_uint_eq(t->roles[1].keys.threshold, 2);
        ck_assert_str_eq(t->roles[1].path_hash_prefixes[1], "ff");
        ck_assert_ptr_null(t->roles[1].paths);
}
END_TEST

START_TEST(test_targets_strict) {
        static const char *const bad_paths[] = {"../x", "/x",   "a//b", "a/./b", "a/",
                                                ".",    "a\\b", "a/..", ""};
        for (size_t i = 0; i < ELEMENTSOF(bad_paths); i++) {
                _cleanup_json_ json_t *j = base_targets();
                json_t *targets = json_object_get(j, "targets");

                ck_assert_int_eq(json_object_set(targets, bad_paths[i], json_object_get(targets, "a/b.txt")),
                                 0);
                ck_assert_int_eq(json_object_del(targets, "a/b.txt"), 0);
                ck_assert_int_eq(parse_as(j, TUF_ROLE_TARGETS), -EPROTO);
        }

        ck_assert_int_eq(parse_modified(base_targets, TUF_ROLE_TARGETS, "targets", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, TUF_ROLE_TARGETS, "targets", json_object()), 0);
}
END_TEST

/* Modify the single target "a/b.txt" (set_at cannot name a key holding '/'). */
static int parse_target_modified(const char *field, json_t *v) {
        _cleanup_json_ json_t *j = base_targets();
        json_t *f = json_object_get(json_object_get(j, "targets"), "a/b.txt");

        ck_assert_ptr_nonnull(f);
        if (v)
                ck_assert_int_eq(json_object_set_new(f, field, v), 0);
        else
                ck_assert_int_eq(json_object_del(f, field), 0);
        return parse_as(j, TUF_ROLE_TARGETS);
}

START_TEST(test_target_fields) {
        ck_assert_int_eq(parse_target_modified("length", json_integer(-1)), -EPROTO);
        ck_assert_int_eq(parse_target_modified("length", json_integer(0)), 0);
        ck_assert_int_eq(parse_target_modified("length", NULL), -EPROTO);
        ck_assert_int_eq(parse_target_modified("hashes", NULL), -EPROTO);
        ck_assert_int_eq(parse_target_modified("hashes", json_pack("{s:s}", "sha384", "00")), -EOPNOTSUPP);
        ck_assert_int_eq(parse_target_modified("custom", NULL), 0);
        ck_assert_int_eq(parse_target_modified("custom", json_string("text")), 0);
        ck_assert_int_eq(parse_target_modified("x-other", json_integer(2)), 0);
}
END_TEST

START_TEST(test_delegations_strict) {
        const TufRoleType T = TUF_ROLE_TARGETS;

        ck_assert_int_eq(parse_modified(base_targets, T, "delegations", NULL), 0);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/keys", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles", json_object()), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles", json_array()), 0);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/succinct_roles", json_object()), 0);
        {
                _cleanup_json_ json_t *j = base_targets();
                json_t *d = json_object_get(j, "delegations");

                json_object_del(d, "roles");
                json_object_set_new(d, "succinct_roles", json_object());
                ck_assert_int_eq(parse_as(j, T), -EOPNOTSUPP);
        }
        /* exactly one of paths and path_hash_prefixes */
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/0/path_hash_prefixes",
                                        json_pack("[s]", "ab")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/0/paths", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/0/paths", json_pack("[i]", 1)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/0/paths", json_string("x")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/0/paths", json_array()), 0);
        /* names: non-empty, unique, not a top-level role */
        ck_assert_int_eq(
                parse_modified(base_targets, T, "delegations/roles/1/name", json_string("releases")),
                -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/name", json_string("")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/name", json_string("targets")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/name", json_string("root")),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/name", NULL), -EPROTO);
        /* any other name is fine here; tuf_role_filename() makes it a safe file name */
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/name", json_string("../../x")),
                         0);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/terminating", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/terminating", json_integer(0)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/threshold", json_integer(0)),
                         -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/keyids", NULL), -EPROTO);
        ck_assert_int_eq(parse_modified(base_targets, T, "delegations/roles/1/x-extra", json_true()), 0);
}
END_TEST

/* ---- serialization ------------------------------------------------------------------ */

START_TEST(test_timestamp_to_json_golden) {
        _cleanup_free_ char *s = NULL;
        TufTimestamp t = {
                .version = 7,
                .expires = 1893456000, /* 2030-01-01T00:00:00Z */
                .snapshot = {.name = (char *) "snapshot.json", .version = 3},
        };
        size_t n;

        ck_assert_int_eq(tuf_timestamp_to_json(&t, &s, &n), 0);
        ck_assert_str_eq(s,
                         "{\"_type\":\"timestamp\",\"expires\":\"2030-01-01T00:00:00Z\",\"meta\":"
                         "{\"snapshot.json\":{\"version\":3}},\"spec_version\":\"1.0.31\",\"version\":7}");
        ck_assert_uint_eq(n, strlen(s));
        free(s);
        s = NULL;

        t.spec_version = (char *) "1.0.28";
        t.snapshot.length = 42;
        ck_assert_int_eq(tuf_hashes_compute("", 0, &t.snapshot.hashes), 0);
        t.snapshot.hashes.has_sha512 = false;
        ck_assert_int_eq(tuf_timestamp_to_json(&t, &s, &n), 0);
        ck_assert_str_eq(s, "{\"_type\":\"timestamp\",\"expires\":\"2030-01-01T00:00:00Z\",\"meta\":"
                            "{\"snapshot.json\":{\"hashes\":{\"sha256\":"
                            "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"},"
                            "\"length\":42,\"version\":3}},\"spec_version\":\"1.0.28\",\"version\":7}");
}
END_TEST

/* parse -> serialize -> parse gives the same canonical bytes */
static void roundtrip(json_t *(*base)(void), TufRoleType t) {
        _cleanup_json_ json_t *j = base(), *again = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;
        size_t na, nb;

        switch (t) {
        case TUF_ROLE_ROOT: {
                _cleanup_(tuf_root_freep) TufRoot *x = NULL;
                ck_assert_int_eq(tuf_root_from_json(j, &x), 0);
                ck_assert_int_eq(tuf_root_to_json(x, &a, &na), 0);
                break;
        }
        case TUF_ROLE_TIMESTAMP: {
                _cleanup_(tuf_timestamp_freep) TufTimestamp *x = NULL;
                ck_assert_int_eq(tuf_timestamp_from_json(j, &x), 0);
                ck_assert_int_eq(tuf_timestamp_to_json(x, &a, &na), 0);
                break;
        }
        case TUF_ROLE_SNAPSHOT: {
                _cleanup_(tuf_snapshot_freep) TufSnapshot *x = NULL;
                ck_assert_int_eq(tuf_snapshot_from_json(j, &x), 0);
                ck_assert_int_eq(tuf_snapshot_to_json(x, &a, &na), 0);
                break;
        }
        case TUF_ROLE_TARGETS: {
                _cleanup_(tuf_targets_freep) TufTargets *x = NULL;
                ck_assert_int_eq(tuf_targets_from_json(j, &x), 0);
                ck_assert_int_eq(tuf_targets_to_json(x, &a, &na), 0);
                break;
        }
        default:
                ck_abort();
        }
        /* the output is canonical ... */
        again = parse_json(a);
        ck_assert_int_eq(tuf_json_canonical(again, &b, &nb), 0);
        ck_assert_str_eq(a, b);
        free(b);
        b = NULL;
        /* ... and says what the input said */
        ck_assert_int_eq(tuf_json_canonical(j, &b, &nb), 0);
        ck_assert_str_eq(a, b);
}

START_TEST(test_roundtrip) {
        roundtrip(base_root, TUF_ROLE_ROOT);
        roundtrip(base_timestamp, TUF_ROLE_TIMESTAMP);
        roundtrip(base_snapshot, TUF_ROLE_SNAPSHOT);
        roundtrip(base_targets, TUF_ROLE_TARGETS);
}
END_TEST

START_TEST(test_serialize_refuses_bad_structs) {
        _cleanup_free_ char *s = NULL;
        TufTargetFile f = {.path = (char *) "../x", .length = 1, .hashes = {.has_sha256 = true}};
        TufTargets t = {.version = 1, .expires = EXPIRES, .targets = &f, .n_targets = 1};
        TufDelegatedRole d = {.name = (char *) "r", .keys = {.threshold = 1}};
        TufTimestamp ts = {.version = 0, .expires = EXPIRES, .snapshot = {.version = 1}};
        size_t n;

        ck_assert_int_eq(tuf_targets_to_json(&t, &s, &n), -EINVAL);
        f.path = (char *) "ok";
        f.hashes.has_sha256 = false;
        ck_assert_int_eq(tuf_targets_to_json(&t, &s, &n), -EINVAL); /* no hash */
        f.hashes.has_sha256 = true;
        t.roles = &d;
        t.n_roles = 1;
        ck_assert_int_eq(tuf_targets_to_json(&t, &s, &n), -EINVAL);    /* neither paths nor prefixes */
        ck_assert_int_eq(tuf_timestamp_to_json(&ts, &s, &n), -EINVAL); /* version 0 */
        ts.version = 1;
        ts.spec_version = (char *) "2.0.0";
        ck_assert_int_eq(tuf_timestamp_to_json(&ts, &s, &n), -EINVAL);
        ck_assert_ptr_null(s);
}
END_TEST

/* ---- unverified parsing ------------------------------------------------------------- */

START_TEST(test_parse_unverified) {
        _cleanup_json_ json_t *root = base_root(), *targets = base_targets();
        _cleanup_free_ char *rs = NULL, *ts = NULL, *rdoc = NULL, *tdoc = NULL;
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        _cleanup_(tuf_targets_freep) TufTargets *t = NULL;
        size_t n, rn, tn;

        ck_assert_int_eq(tuf_json_canonical(root, &rs, &n), 0);
        ck_assert_int_eq(tuf_json_canonical(targets, &ts, &n), 0);
        /* signed by nobody: this API does not look at signatures */
        ck_assert_int_eq(tuf_metadata_sign(rs, strlen(rs), NULL, 0, &rdoc, &rn), 0);
        ck_assert_int_eq(tuf_metadata_sign(ts, strlen(ts), NULL, 0, &tdoc, &tn), 0);

        ck_assert_int_eq(tuf_root_parse_unverified(rdoc, rn, &r), 0);
        ck_assert_uint_eq(r->n_keys, 3);
        ck_assert_int_eq(tuf_targets_parse_unverified(tdoc, tn, &t), 0);
        ck_assert_uint_eq(t->n_roles, 2);
        tuf_root_free(r);
        tuf_targets_free(t);
        r = NULL;
        t = NULL;
        ck_assert_int_eq(tuf_root_parse_unverified(tdoc, tn, &r), -EPROTO);
        ck_assert_int_eq(tuf_targets_parse_unverified(rdoc, rn, &t), -EPROTO);
        ck_assert_int_eq(tuf_root_parse_unverified("{", 1, &r), -EPROTO);
        ck_assert_ptr_null(r);
        ck_assert_ptr_null(t);
}
END_TEST

/* ---- scale ----------------------------------------------------------------------------- */

/* 10,000 targets: serialize, sign, then parse and verify as a client does.
 * Guards against accidental quadratic behaviour (a few hundred ms here). */
START_TEST(test_ten_thousand_targets) {
        _cleanup_free_ TufTargetFile *files = calloc(10000, sizeof(TufTargetFile));
        _cleanup_free_ char *json = NULL, *doc = NULL;
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_(tuf_targets_freep) TufTargets *parsed = NULL;
        char(*paths)[32] = calloc(10000, 32);
        char *ids[] = {K1.pub.keyid, NULL};
        TufRoleKeys role = {ids, 1};
        TufTargets t = {.version = 1, .expires = EXPIRES, .targets = files, .n_targets = 10000};
        TufPrivateKey *k = K1.priv;
        struct timespec a, b;
        size_t n, dn;
        double ms;

        ck_assert_ptr_nonnull(files);
        ck_assert_ptr_nonnull(paths);
        for (size_t i = 0; i < 10000; i++) {
                snprintf(paths[i], 32, "payloads/p%05zu.bin", i);
                files[i] = (TufTargetFile){.path = paths[i], .length = i};
                files[i].hashes.has_sha256 = true;
                files[i].hashes.sha256[0] = (uint8_t) i;
        }
        ck_assert_int_eq(tuf_targets_to_json(&t, &json, &n), 0);
        ck_assert_int_eq(tuf_metadata_sign(json, n, &k, 1, &doc, &dn), 0);

        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(tuf_envelope_parse(doc, dn, &e), 0);
        ck_assert_int_eq(tuf_envelope_verify(e, &K1.pub, 1, &role), 0);
        ck_assert_int_eq(tuf_targets_from_json(e->signed_json, &parsed), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ms = (double) (b.tv_sec - a.tv_sec) * 1e3 + (double) (b.tv_nsec - a.tv_nsec) / 1e6;

        ck_assert_uint_eq(parsed->n_targets, 10000);
        ck_assert_uint_eq(tuf_targets_find(parsed, "payloads/p09999.bin")->length, 9999);
        /* generous: sanitizer builds on a shared 2-core machine */
        ck_assert_msg(ms < 5000, "parse+verify of 10000 targets took %.0f ms", ms);
        free(paths);
}
END_TEST

int main(void) {
        Suite *s = suite_create("metadata");
        TCase *tc = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_role_type_table);
        tcase_add_test(tc, test_envelope_parse);
        tcase_add_test(tc, test_envelope_malformed);
        tcase_add_test(tc, test_envelope_caps);
        tcase_add_test(tc, test_verify_threshold);
        tcase_add_test(tc, test_verify_same_material);
        tcase_add_test(tc, test_verify_bad_and_unusable);
        tcase_add_test(tc, test_root_parse);
        tcase_add_test(tc, test_common_fields);
        tcase_add_test(tc, test_root_strict);
        tcase_add_test(tc, test_timestamp_parse);
        tcase_add_test(tc, test_snapshot_parse);
        tcase_add_test(tc, test_targets_parse);
        tcase_add_test(tc, test_targets_strict);
        tcase_add_test(tc, test_target_fields);
        tcase_add_test(tc, test_delegations_strict);
        tcase_add_test(tc, test_timestamp_to_json_golden);
        tcase_add_test(tc, test_roundtrip);
        tcase_add_test(tc, test_serialize_refuses_bad_structs);
        tcase_add_test(tc, test_parse_unverified);
        tcase_add_test(tc, test_ten_thousand_targets);
        suite_add_tcase(s, tc);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

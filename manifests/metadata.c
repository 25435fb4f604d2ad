/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TUF 1.0 role documents <-> plain value structs.
 *
 * Parsing is strict about the fields TUF defines (types, ranges, required
 * members) and tolerant of fields it does not know: the specification lets
 * any object carry unrecognized members, and since signatures are checked
 * over the canonical form of the whole "signed" object, such members are
 * covered by the signature whether we interpret them or not.
 *
 * Serialization writes the "signed" object in the standard format, as
 * python-tuf and tuf-js write it, so that other clients read our metadata.
 */

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>

#include "manifests-internal.h"

/* A metadata document listing more signatures than this is refused: real
 * roles have a handful of keys, and each signature may cost a verification. */
#define TUF_SIGNATURES_MAX 1024U
/* Role names end up in file names (percent-encoded, see tuf_role_filename()). */
#define TUF_ROLE_NAME_MAX 255U
/* What tuf_*_to_json() write when the struct gives no spec_version. */
#define TUF_SPEC_VERSION_DEFAULT "1.0.31"

static const char *const tuf_role_type_table[_TUF_ROLE_TYPE_MAX] = {
        [TUF_ROLE_ROOT] = "root",
        [TUF_ROLE_TIMESTAMP] = "timestamp",
        [TUF_ROLE_SNAPSHOT] = "snapshot",
        [TUF_ROLE_TARGETS] = "targets",
};

DEFINE_STRING_TABLE_LOOKUP(tuf_role_type, TufRoleType);

/* ---- small JSON readers ---------------------------------------------------- */

/* Optional unsigned integer member: 0 absent (ret untouched), 1 present. */
static int get_uint(const json_t *o, const char *key, uint64_t min, uint64_t max, uint64_t *ret) {
        const json_t *v = json_object_get(o, key);
        json_int_t i;

        if (!v)
                return 0;
        if (!json_is_integer(v))
                return -EPROTO;
        i = json_integer_value(v);
        if (i < 0 || (uint64_t) i < min || (uint64_t) i > max)
                return -EPROTO;
        *ret = (uint64_t) i;
        return 1;
}

static int need_uint(const json_t *o, const char *key, uint64_t min, uint64_t max, uint64_t *ret) {
        int r = get_uint(o, key, min, max, ret);

        if (r < 0)
                return r;
        return r == 0 ? -EPROTO : 0;
}

static const char *get_string(const json_t *o, const char *key) {
        const json_t *v = json_object_get(o, key);

        return json_is_string(v) ? json_string_value(v) : NULL;
}

static int strdup_checked(const char *s, char **ret) {
        char *c = strdup(s);

        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

/* A NULL-terminated copy of an array of strings; each passes check (if given). */
static int string_array(const json_t *a, bool (*check)(const char *), char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const json_t *v;
        size_t i;

        if (!json_is_array(a))
                return -EPROTO;
        l = calloc(json_array_size(a) + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        json_array_foreach(a, i, v) {
                if (!json_is_string(v))
                        return -EPROTO;
                if (check && !check(json_string_value(v)))
                        return -EPROTO;
                l[i] = strdup(json_string_value(v));
                if (!l[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static bool keyid_is_valid(const char *keyid) {
        size_t n = strlen(keyid);

        return n > 0 && n <= TUF_KEYID_MAX;
}

/* "1.0.31" or "1.0" (python-tuf accepts both), digits only, major 1. */
static int check_spec_version(const char *s) {
        unsigned parts = 1;
        bool empty = true;

        for (const char *p = s; *p; p++) {
                if (*p == '.') {
                        if (empty)
                                return -EPROTO;
                        parts++;
                        empty = true;
                } else if (*p >= '0' && *p <= '9')
                        empty = false;
                else
                        return -EPROTO;
        }
        if (empty || parts < 2 || parts > 3)
                return -EPROTO;
        if (!strneq(s, "1.", 2))
                return -EPROTO; /* another major version: its rules may differ */
        return 0;
}

/* _type, spec_version, version, expires: common to all four roles. */
static int parse_common(const json_t *j, TufRoleType type, uint64_t *ret_version, int64_t *ret_expires,
                        char **ret_spec_version) {
        const char *t, *spec, *expires;
        uint64_t version;
        int64_t e;
        int r;

        if (!json_is_object(j))
                return -EPROTO;
        t = get_string(j, "_type");
        if (!t || tuf_role_type_from_string(t) != type)
                return -EPROTO;
        spec = get_string(j, "spec_version");
        if (!spec)
                return -EPROTO;
        r = check_spec_version(spec);
        if (r < 0)
                return r;
        r = need_uint(j, "version", 1, INT64_MAX, &version);
        if (r < 0)
                return r;
        expires = get_string(j, "expires");
        if (!expires)
                return -EPROTO;
        r = parse_iso8601_utc(expires, &e);
        if (r < 0)
                return -EPROTO;
        r = strdup_checked(spec, ret_spec_version);
        if (r < 0)
                return r;
        *ret_version = version;
        *ret_expires = e;
        return 0;
}

/* ---- keys and roles -------------------------------------------------------- */

void tuf_role_keys_done(TufRoleKeys *r) {
        if (!r)
                return;
        r->keyids = strv_free(r->keyids);
        r->threshold = 0;
}

static void keys_free(TufKey *keys, size_t n) {
        for (size_t i = 0; i < n; i++)
                tuf_key_done(&keys[i]);
        free(keys);
}

/*
 * A "keys" object (keyid -> key). Keys of a type we do not implement are
 * skipped, not fatal: another implementation may list keys for schemes we
 * do not know, and a role can still reach its threshold with the others.
 * Filled in place so that the owner's destructor frees a partial result.
 */
static int parse_keys(const json_t *o, TufKey **keys, size_t *n_keys) {
        const char *keyid;
        const json_t *v;

        assert(!*keys && *n_keys == 0);

        if (!json_is_object(o))
                return -EPROTO;
        *keys = calloc(MAX(json_object_size(o), 1U), sizeof(TufKey));
        if (!*keys)
                return -ENOMEM;
        json_object_foreach((json_t *) o, keyid, v) {
                TufKey k = {};
                int r;

                if (!keyid_is_valid(keyid))
                        return -EPROTO;
                r = tuf_key_from_json(keyid, v, &k);
                if (r == -EOPNOTSUPP || r == -EKEYREJECTED) {
                        log_debug("Skipping key %s: %s", keyid, strerror(-r));
                        continue;
                }
                if (r < 0)
                        return r;
                (*keys)[(*n_keys)++] = k;
        }
        return 0;
}

static int parse_role_keys(const json_t *o, TufRoleKeys *ret) {
        _cleanup_strv_free_ char **keyids = NULL;
        uint64_t threshold;
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        r = string_array(json_object_get(o, "keyids"), keyid_is_valid, &keyids);
        if (r < 0)
                return r;
        r = need_uint(o, "threshold", 1, UINT_MAX, &threshold);
        if (r < 0)
                return r;
        ret->keyids = TAKE_PTR(keyids);
        ret->threshold = (unsigned) threshold;
        return 0;
}

const TufKey *tuf_key_find(const TufKey *keys, size_t n_keys, const char *keyid) {
        if (!keys || !keyid)
                return NULL;
        for (size_t i = 0; i < n_keys; i++)
                if (keys[i].keyid && streq(keys[i].keyid, keyid))
                        return &keys[i];
        return NULL;
}

/* ---- the envelope ---------------------------------------------------------- */

TufEnvelope *tuf_envelope_free(TufEnvelope *e) {
        if (!e)
                return NULL;
        json_decref(e->signed_json);
        free(e->canonical);
        for (size_t i = 0; i < e->n_signatures; i++) {
                free(e->signatures[i].keyid);
                free(e->signatures[i].sig);
        }
        free(e->signatures);
        free(e);
        return NULL;
}

int tuf_envelope_parse(const void *data, size_t size, TufEnvelope **ret) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        _cleanup_json_ json_t *doc = NULL;
        const json_t *signed_json, *sigs, *v;
        const char *type;
        size_t i;
        int r;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        r = tuf_json_parse(data, size, TUF_METADATA_MAX_LENGTH, &doc);
        if (r < 0)
                return r;

        /* Other top-level members are allowed (and ignored): they are not signed. */
        signed_json = json_object_get(doc, "signed");
        sigs = json_object_get(doc, "signatures");
        if (!json_is_object(signed_json) || !json_is_array(sigs))
                return -EPROTO;
        if (json_array_size(sigs) > TUF_SIGNATURES_MAX)
                return -EFBIG;
        type = get_string(signed_json, "_type");
        if (!type)
                return -EPROTO;

        e = calloc(1, sizeof(TufEnvelope));
        if (!e)
                return -ENOMEM;
        e->type = tuf_role_type_from_string(type);
        if (e->type < 0)
                return -EPROTO;
        e->signed_json = json_incref((json_t *) signed_json);

        r = tuf_json_canonical(signed_json, &e->canonical, &e->canonical_size);
        if (r < 0)
                return r;

        e->signatures = calloc(MAX(json_array_size(sigs), 1U), sizeof(TufSignature));
        if (!e->signatures)
                return -ENOMEM;
        json_array_foreach(sigs, i, v) {
                TufSignature *s = &e->signatures[e->n_signatures];
                const char *keyid = get_string(v, "keyid"), *sig = get_string(v, "sig");
                void *raw = NULL;
                size_t raw_size = 0;

                if (!json_is_object(v) || !keyid || !sig || !keyid_is_valid(keyid))
                        return -EPROTO;
                /* A signature that is not hex cannot verify; it is kept (and
                 * never counts) rather than failing the whole document, so one
                 * bad signer cannot veto a threshold the others reach. */
                r = unhexmem(sig, strlen(sig), &raw, &raw_size);
                if (r == -ENOMEM)
                        return r;
                s->keyid = strdup(keyid);
                if (!s->keyid) {
                        free(raw);
                        return -ENOMEM;
                }
                s->sig = r < 0 ? NULL : raw;
                s->sig_size = r < 0 ? 0 : raw_size;
                e->n_signatures++;
        }

        *ret = TAKE_PTR(e);
        return 0;
}

/*
 * Count the distinct keys of the role that made a valid signature. The loop
 * runs over the role's keyids (not over the signatures), so signatures by
 * keys the role does not list are never looked at; a key is counted once
 * however often its keyid is listed, however many signatures name it, and
 * whatever other keyid lists the same key material.
 */
int tuf_envelope_verify(const TufEnvelope *e, const TufKey *keys, size_t n_keys, const TufRoleKeys *role) {
        _cleanup_free_ const TufKey **counted = NULL;
        size_t n_counted = 0;

        assert_return(e && role, -EINVAL);
        /* A zero threshold would accept anything: only a caller can produce it. */
        assert_return(role->threshold >= 1, -EINVAL);

        counted = calloc(MAX(strv_length(role->keyids), 1U), sizeof(TufKey *));
        if (!counted)
                return -ENOMEM;

        for (char **id = role->keyids; id && *id; id++) {
                const TufKey *k = tuf_key_find(keys, n_keys, *id);
                bool seen = false;

                if (!k)
                        continue;
                for (size_t c = 0; c < n_counted && !seen; c++)
                        seen = counted[c] == k || tuf_key_same_material(counted[c], k);
                if (seen)
                        continue;

                for (size_t i = 0; i < e->n_signatures; i++) {
                        const TufSignature *s = &e->signatures[i];
                        int r;

                        if (!s->sig || !streq(s->keyid, *id))
                                continue;
                        r = tuf_key_verify(k, e->canonical, e->canonical_size, s->sig, s->sig_size);
                        if (r == 0) {
                                counted[n_counted++] = k;
                                break;
                        }
                        if (r == -ENOMEM)
                                return r;
                        if (r == -EKEYREJECTED || r == -EOPNOTSUPP) {
                                log_debug("Key %s is unusable, skipped: %s", *id, strerror(-r));
                                break;
                        }
                        /* -EBADMSG: a later signature under the same keyid may be good. */
                }
                if (n_counted >= role->threshold)
                        return 0;
        }

        log_debug("Signed by %zu of the %u keys needed", n_counted, role->threshold);
        return -EBADMSG;
}

/* ---- root -------------------------------------------------------------------- */

TufRoot *tuf_root_free(TufRoot *r) {
        if (!r)
                return NULL;
        free(r->spec_version);
        keys_free(r->keys, r->n_keys);
        for (size_t i = 0; i < _TUF_ROLE_TYPE_MAX; i++)
                tuf_role_keys_done(&r->roles[i]);
        free(r);
        return NULL;
}

int tuf_root_from_json(const json_t *j, TufRoot **ret) {
        _cleanup_(tuf_root_freep) TufRoot *r = NULL;
        const json_t *cs, *roles;
        int k;

        assert_return(j && ret, -EINVAL);

        r = calloc(1, sizeof(TufRoot));
        if (!r)
                return -ENOMEM;
        k = parse_common(j, TUF_ROLE_ROOT, &r->version, &r->expires, &r->spec_version);
        if (k < 0)
                return k;

        /* Optional in python-tuf; absent means no consistent snapshots. */
        cs = json_object_get(j, "consistent_snapshot");
        if (cs && !json_is_boolean(cs))
                return -EPROTO;
        r->consistent_snapshot = json_is_true(cs);

        k = parse_keys(json_object_get(j, "keys"), &r->keys, &r->n_keys);
        if (k < 0)
                return k;

        /* The four top-level roles are required; others ("mirrors") are ignored. */
        roles = json_object_get(j, "roles");
        if (!json_is_object(roles))
                return -EPROTO;
        for (TufRoleType t = 0; t < _TUF_ROLE_TYPE_MAX; t++) {
                k = parse_role_keys(json_object_get(roles, tuf_role_type_to_string(t)), &r->roles[t]);
                if (k < 0)
                        return k;
        }

        *ret = TAKE_PTR(r);
        return 0;
}

/* ---- meta files (timestamp and snapshot) ------------------------------------ */

static void meta_file_done(TufMetaFile *m) {
        free(m->name);
        m->name = NULL;
}

static int parse_meta_file(const char *name, const json_t *o, TufMetaFile *ret) {
        TufMetaFile m = {};
        const json_t *h;
        int r;

        if (!json_is_object(o) || !*name)
                return -EPROTO;
        r = need_uint(o, "version", 1, INT64_MAX, &m.version);
        if (r < 0)
                return r;
        /* Our struct says "0 when absent"; a listed length of 0 cannot be a
         * metadata file anyway, so refusing it keeps the two apart. */
        r = get_uint(o, "length", 1, INT64_MAX, &m.length);
        if (r < 0)
                return r;
        h = json_object_get(o, "hashes");
        if (h) {
                if (!json_is_object(h))
                        return -EPROTO;
                r = tuf_hashes_from_json(h, &m.hashes);
                if (r < 0)
                        return r;
        }
        r = strdup_checked(name, &m.name);
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

static json_t *meta_file_to_json(const TufMetaFile *m) {
        _cleanup_json_ json_t *o = json_object();

        if (!o || m->version < 1 || m->version > INT64_MAX || m->length > INT64_MAX)
                return NULL;
        if (json_object_set_new(o, "version", json_integer((json_int_t) m->version)) < 0)
                return NULL;
        if (m->length > 0 && json_object_set_new(o, "length", json_integer((json_int_t) m->length)) < 0)
                return NULL;
        if (m->hashes.has_sha256 || m->hashes.has_sha512) {
                json_t *h = NULL;

                if (tuf_hashes_to_json(&m->hashes, &h) < 0 || json_object_set_new(o, "hashes", h) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

/* ---- timestamp ------------------------------------------------------------- */

TufTimestamp *tuf_timestamp_free(TufTimestamp *t) {
        if (!t)
                return NULL;
        free(t->spec_version);
        meta_file_done(&t->snapshot);
        free(t);
        return NULL;
}

int tuf_timestamp_from_json(const json_t *j, TufTimestamp **ret) {
        _cleanup_(tuf_timestamp_freep) TufTimestamp *t = NULL;
        const json_t *meta;
        int r;

        assert_return(j && ret, -EINVAL);

        t = calloc(1, sizeof(TufTimestamp));
        if (!t)
                return -ENOMEM;
        r = parse_common(j, TUF_ROLE_TIMESTAMP, &t->version, &t->expires, &t->spec_version);
        if (r < 0)
                return r;
        meta = json_object_get(j, "meta");
        if (!json_is_object(meta))
                return -EPROTO;
        r = parse_meta_file("snapshot.json", json_object_get(meta, "snapshot.json"), &t->snapshot);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- snapshot ---------------------------------------------------------------- */

TufSnapshot *tuf_snapshot_free(TufSnapshot *s) {
        if (!s)
                return NULL;
        free(s->spec_version);
        for (size_t i = 0; i < s->n_meta; i++)
                meta_file_done(&s->meta[i]);
        free(s->meta);
        free(s);
        return NULL;
}

int tuf_snapshot_from_json(const json_t *j, TufSnapshot **ret) {
        _cleanup_(tuf_snapshot_freep) TufSnapshot *s = NULL;
        const json_t *meta, *v;
        const char *name;
        int r;

        assert_return(j && ret, -EINVAL);

        s = calloc(1, sizeof(TufSnapshot));
        if (!s)
                return -ENOMEM;
        r = parse_common(j, TUF_ROLE_SNAPSHOT, &s->version, &s->expires, &s->spec_version);
        if (r < 0)
                return r;
        meta = json_object_get(j, "meta");
        if (!json_is_object(meta))
                return -EPROTO;
        s->meta = calloc(MAX(json_object_size(meta), 1U), sizeof(TufMetaFile));
        if (!s->meta)
                return -ENOMEM;
        /* Names are unique: tuf_json_parse() refuses duplicate keys. */
        json_object_foreach((json_t *) meta, name, v) {
                r = parse_meta_file(name, v, &s->meta[s->n_meta]);
                if (r < 0)
                        return r;
                s->n_meta++;
        }

        *ret = TAKE_PTR(s);
        return 0;
}

const TufMetaFile *tuf_snapshot_find(const TufSnapshot *s, const char *name) {
        if (!s || !name)
                return NULL;
        for (size_t i = 0; i < s->n_meta; i++)
                if (s->meta[i].name && streq(s->meta[i].name, name))
                        return &s->meta[i];
        return NULL;
}

/* ---- targets ------------------------------------------------------------------ */

static void target_file_done(TufTargetFile *f) {
        free(f->path);
        free(f->custom_json);
}

static void delegated_role_done(TufDelegatedRole *d) {
        free(d->name);
        tuf_role_keys_done(&d->keys);
        strv_free(d->paths);
        strv_free(d->path_hash_prefixes);
}

TufTargets *tuf_targets_free(TufTargets *t) {
        if (!t)
                return NULL;
        free(t->spec_version);
        for (size_t i = 0; i < t->n_targets; i++)
                target_file_done(&t->targets[i]);
        free(t->targets);
        keys_free(t->delegation_keys, t->n_delegation_keys);
        for (size_t i = 0; i < t->n_roles; i++)
                delegated_role_done(&t->roles[i]);
        free(t->roles);
        free(t);
        return NULL;
}

static int parse_target_file(const char *path, const json_t *o, TufTargetFile *ret) {
        _cleanup_free_ char *custom = NULL, *p = NULL;
        TufTargetFile f = {};
        const json_t *c;
        size_t custom_size;
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        if (!tuf_target_path_is_valid(path))
                return -EPROTO;
        r = need_uint(o, "length", 0, INT64_MAX, &f.length);
        if (r < 0)
                return r;
        /* Required and with at least one algorithm we implement: a target we
         * could not check must not be installable. */
        if (!json_is_object(json_object_get(o, "hashes")))
                return -EPROTO;
        r = tuf_hashes_from_json(json_object_get(o, "hashes"), &f.hashes);
        if (r < 0)
                return r;
        c = json_object_get(o, "custom");
        if (c) {
                r = tuf_json_canonical(c, &custom, &custom_size);
                if (r < 0)
                        return r;
        }
        r = strdup_checked(path, &p);
        if (r < 0)
                return r;
        f.path = TAKE_PTR(p);
        f.custom_json = TAKE_PTR(custom);
        *ret = f;
        return 0;
}

static bool role_name_is_valid(const char *name) {
        size_t n = strlen(name);

        /* Top-level names are refused as python-tuf does: a delegation named
         * "targets" or "root" would be confused with the top-level roles. */
        return n > 0 && n <= TUF_ROLE_NAME_MAX && tuf_role_type_from_string(name) < 0;
}

static int parse_delegated_role(const json_t *o, TufDelegatedRole *d) {
        const json_t *term, *paths, *prefixes;
        const char *name;
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        name = get_string(o, "name");
        if (!name || !role_name_is_valid(name))
                return -EPROTO;
        r = strdup_checked(name, &d->name);
        if (r < 0)
                return r;
        r = parse_role_keys(o, &d->keys);
        if (r < 0)
                return r;
        term = json_object_get(o, "terminating");
        if (!json_is_boolean(term))
                return -EPROTO;
        d->terminating = json_is_true(term);

        paths = json_object_get(o, "paths");
        prefixes = json_object_get(o, "path_hash_prefixes");
        if (!!paths == !!prefixes)
                return -EPROTO;
        if (paths)
                return string_array(paths, NULL, &d->paths);
        return string_array(prefixes, NULL, &d->path_hash_prefixes);
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int parse_delegations(const json_t *o, TufTargets *t) {
        _cleanup_free_ const char **names = NULL;
        const json_t *roles, *v;
        size_t i;
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        r = parse_keys(json_object_get(o, "keys"), &t->delegation_keys, &t->n_delegation_keys);
        if (r < 0)
                return r;
        roles = json_object_get(o, "roles");
        if (!roles)
                /* TAP 15 hash-bin delegations are not implemented. */
                return json_object_get(o, "succinct_roles") ? -EOPNOTSUPP : -EPROTO;
        if (!json_is_array(roles))
                return -EPROTO;

        t->roles = calloc(MAX(json_array_size(roles), 1U), sizeof(TufDelegatedRole));
        names = calloc(MAX(json_array_size(roles), 1U), sizeof(char *));
        if (!t->roles || !names)
                return -ENOMEM;
        json_array_foreach(roles, i, v) {
                /* Counted before it is filled: the destructor frees a partial role. */
                t->n_roles++;
                r = parse_delegated_role(v, &t->roles[i]);
                if (r < 0)
                        return r;
                names[i] = t->roles[i].name;
        }

        /* Names must be unique; sorting keeps this linear-logarithmic. */
        qsort(names, t->n_roles, sizeof(char *), strcmp_ptr);
        for (i = 1; i < t->n_roles; i++)
                if (streq(names[i - 1], names[i]))
                        return -EPROTO;
        return 0;
}

int tuf_targets_from_json(const json_t *j, TufTargets **ret) {
        _cleanup_(tuf_targets_freep) TufTargets *t = NULL;
        const json_t *targets, *v, *d;
        const char *path;
        int r;

        assert_return(j && ret, -EINVAL);

        t = calloc(1, sizeof(TufTargets));
        if (!t)
                return -ENOMEM;
        r = parse_common(j, TUF_ROLE_TARGETS, &t->version, &t->expires, &t->spec_version);
        if (r < 0)
                return r;

        targets = json_object_get(j, "targets");
        if (!json_is_object(targets))
                return -EPROTO;
        t->targets = calloc(MAX(json_object_size(targets), 1U), sizeof(TufTargetFile));
        if (!t->targets)
                return -ENOMEM;
        json_object_foreach((json_t *) targets, path, v) {
                r = parse_target_file(path, v, &t->targets[t->n_targets]);
                if (r < 0)
                        return r;
                t->n_targets++;
        }

        d = json_object_get(j, "delegations");
        if (d) {
                t->has_delegations = true;
                r = parse_delegations(d, t);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(t);
        return 0;
}

const TufTargetFile *tuf_targets_find(const TufTargets *t, const char *path) {
        if (!t || !path)
                return NULL;
        for (size_t i = 0; i < t->n_targets; i++)
                if (t->targets[i].path && streq(t->targets[i].path, path))
                        return &t->targets[i];
        return NULL;
}

/* ---- unverified parsing (publisher tools) ------------------------------------- */

int tuf_root_parse_unverified(const void *data, size_t size, TufRoot **ret) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        int r;

        assert_return(data && ret, -EINVAL);

        r = tuf_envelope_parse(data, size, &e);
        if (r < 0)
                return r;
        if (e->type != TUF_ROLE_ROOT)
                return -EPROTO;
        return tuf_root_from_json(e->signed_json, ret);
}

int tuf_targets_parse_unverified(const void *data, size_t size, TufTargets **ret) {
        _cleanup_(tuf_envelope_freep) TufEnvelope *e = NULL;
        int r;

        assert_return(data && ret, -EINVAL);

        r = tuf_envelope_parse(data, size, &e);
        if (r < 0)
                return r;
        if (e->type != TUF_ROLE_TARGETS)
                return -EPROTO;
        return tuf_targets_from_json(e->signed_json, ret);
}

/* ---- serialization ------------------------------------------------------------- */

/* json_object_set_new() steals v even when it fails; v == NULL means the
 * constructor failed (out of memory, or a string that is not UTF-8). */
static int set_new(json_t *o, const char *key, json_t *v) {
        if (!v)
                return -EINVAL;
        if (json_object_set_new(o, key, v) < 0)
                return -ENOMEM;
        return 0;
}

static int append_new(json_t *a, json_t *v) {
        if (!v)
                return -EINVAL;
        if (json_array_append_new(a, v) < 0)
                return -ENOMEM;
        return 0;
}

static int common_to_json(TufRoleType type, uint64_t version, int64_t expires, const char *spec_version,
                          json_t **ret) {
        _cleanup_json_ json_t *o = NULL;
        char buf[21];
        int r;

        if (version < 1 || version > INT64_MAX)
                return -EINVAL;
        if (spec_version && check_spec_version(spec_version) < 0)
                return -EINVAL;
        r = format_iso8601_utc(expires, buf);
        if (r < 0)
                return -EINVAL;

        o = json_object();
        if (!o)
                return -ENOMEM;
        r = set_new(o, "_type", json_string(tuf_role_type_to_string(type)));
        if (r >= 0)
                r = set_new(o, "spec_version", json_string(spec_version ?: TUF_SPEC_VERSION_DEFAULT));
        if (r >= 0)
                r = set_new(o, "version", json_integer((json_int_t) version));
        if (r >= 0)
                r = set_new(o, "expires", json_string(buf));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

static int keys_to_json(const TufKey *keys, size_t n_keys, json_t **ret) {
        _cleanup_json_ json_t *o = json_object();

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < n_keys; i++) {
                json_t *k = NULL;
                int r;

                if (!keys[i].keyid || !keyid_is_valid(keys[i].keyid))
                        return -EINVAL;
                r = tuf_key_to_json(&keys[i], &k);
                if (r < 0)
                        return r;
                r = set_new(o, keys[i].keyid, k);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int strv_to_json(char *const *l, json_t **ret) {
        _cleanup_json_ json_t *a = json_array();

        if (!a)
                return -ENOMEM;
        for (char *const *i = l; i && *i; i++) {
                int r = append_new(a, json_string(*i));
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* {"keyids": [...], "threshold": N} into o (a new object or a delegated role). */
static int role_keys_into_json(const TufRoleKeys *rk, json_t *o) {
        json_t *ids = NULL;
        int r;

        if (rk->threshold < 1)
                return -EINVAL;
        r = strv_to_json(rk->keyids, &ids);
        if (r < 0)
                return r;
        r = set_new(o, "keyids", ids);
        if (r < 0)
                return r;
        return set_new(o, "threshold", json_integer(rk->threshold));
}

static int finish(json_t *o, char **ret, size_t *ret_size) {
        return tuf_json_canonical(o, ret, ret_size);
}

int tuf_root_to_json(const TufRoot *root, char **ret, size_t *ret_size) {
        _cleanup_json_ json_t *o = NULL, *roles = NULL;
        json_t *keys = NULL;
        int r;

        assert_return(root && ret && ret_size, -EINVAL);

        r = common_to_json(TUF_ROLE_ROOT, root->version, root->expires, root->spec_version, &o);
        if (r < 0)
                return r;
        r = set_new(o, "consistent_snapshot", json_boolean(root->consistent_snapshot));
        if (r < 0)
                return r;
        r = keys_to_json(root->keys, root->n_keys, &keys);
        if (r < 0)
                return r;
        r = set_new(o, "keys", keys);
        if (r < 0)
                return r;

        roles = json_object();
        if (!roles)
                return -ENOMEM;
        for (TufRoleType t = 0; t < _TUF_ROLE_TYPE_MAX; t++) {
                json_t *role = json_object();

                r = set_new(roles, tuf_role_type_to_string(t), role);
                if (r < 0)
                        return r;
                r = role_keys_into_json(&root->roles[t], role);
                if (r < 0)
                        return r;
        }
        r = set_new(o, "roles", TAKE_PTR(roles));
        if (r < 0)
                return r;

        return finish(o, ret, ret_size);
}

int tuf_timestamp_to_json(const TufTimestamp *t, char **ret, size_t *ret_size) {
        _cleanup_json_ json_t *o = NULL;
        json_t *meta;
        int r;

        assert_return(t && ret && ret_size, -EINVAL);

        r = common_to_json(TUF_ROLE_TIMESTAMP, t->version, t->expires, t->spec_version, &o);
        if (r < 0)
                return r;
        meta = json_object();
        r = set_new(o, "meta", meta);
        if (r < 0)
                return r;
        r = set_new(meta, "snapshot.json", meta_file_to_json(&t->snapshot));
        if (r < 0)
                return r;
        return finish(o, ret, ret_size);
}

int tuf_snapshot_to_json(const TufSnapshot *s, char **ret, size_t *ret_size) {
        _cleanup_json_ json_t *o = NULL;
        json_t *meta;
        int r;

        assert_return(s && ret && ret_size, -EINVAL);

        r = common_to_json(TUF_ROLE_SNAPSHOT, s->version, s->expires, s->spec_version, &o);
        if (r < 0)
                return r;
        meta = json_object();
        r = set_new(o, "meta", meta);
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->n_meta; i++) {
                if (!s->meta[i].name || !*s->meta[i].name || json_object_get(meta, s->meta[i].name))
                        return -EINVAL;
                r = set_new(meta, s->meta[i].name, meta_file_to_json(&s->meta[i]));
                if (r < 0)
                        return r;
        }
        return finish(o, ret, ret_size);
}

static int target_file_to_json(const TufTargetFile *f, json_t **ret) {
        _cleanup_json_ json_t *o = json_object();
        json_t *h = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        if (!tuf_target_path_is_valid(f->path) || f->length > INT64_MAX)
                return -EINVAL;
        if (!f->hashes.has_sha256 && !f->hashes.has_sha512)
                return -EINVAL;
        r = set_new(o, "length", json_integer((json_int_t) f->length));
        if (r < 0)
                return r;
        r = tuf_hashes_to_json(&f->hashes, &h);
        if (r < 0)
                return r;
        r = set_new(o, "hashes", h);
        if (r < 0)
                return r;
        if (f->custom_json) {
                json_error_t err;
                json_t *c = json_loads(f->custom_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);

                r = set_new(o, "custom", c);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int delegations_to_json(const TufTargets *t, json_t **ret) {
        _cleanup_json_ json_t *o = json_object();
        json_t *keys = NULL, *roles;
        int r;

        if (!o)
                return -ENOMEM;
        r = keys_to_json(t->delegation_keys, t->n_delegation_keys, &keys);
        if (r < 0)
                return r;
        r = set_new(o, "keys", keys);
        if (r < 0)
                return r;
        roles = json_array();
        r = set_new(o, "roles", roles);
        if (r < 0)
                return r;
        for (size_t i = 0; i < t->n_roles; i++) {
                const TufDelegatedRole *d = &t->roles[i];
                json_t *role = json_object(), *l = NULL;

                r = append_new(roles, role);
                if (r < 0)
                        return r;
                if (!d->name || !role_name_is_valid(d->name) || !d->paths == !d->path_hash_prefixes)
                        return -EINVAL;
                r = set_new(role, "name", json_string(d->name));
                if (r < 0)
                        return r;
                r = role_keys_into_json(&d->keys, role);
                if (r < 0)
                        return r;
                r = set_new(role, "terminating", json_boolean(d->terminating));
                if (r < 0)
                        return r;
                r = strv_to_json(d->paths ?: d->path_hash_prefixes, &l);
                if (r < 0)
                        return r;
                r = set_new(role, d->paths ? "paths" : "path_hash_prefixes", l);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

int tuf_targets_to_json(const TufTargets *t, char **ret, size_t *ret_size) {
        _cleanup_json_ json_t *o = NULL;
        json_t *targets;
        int r;

        assert_return(t && ret && ret_size, -EINVAL);

        r = common_to_json(TUF_ROLE_TARGETS, t->version, t->expires, t->spec_version, &o);
        if (r < 0)
                return r;
        targets = json_object();
        r = set_new(o, "targets", targets);
        if (r < 0)
                return r;
        for (size_t i = 0; i < t->n_targets; i++) {
                json_t *f = NULL;

                r = target_file_to_json(&t->targets[i], &f);
                if (r < 0)
                        return r;
                if (json_object_get(targets, t->targets[i].path)) {
                        json_decref(f);
                        return -EINVAL;
                }
                r = set_new(targets, t->targets[i].path, f);
                if (r < 0)
                        return r;
        }
        if (t->has_delegations || t->n_roles > 0) {
                json_t *d = NULL;

                r = delegations_to_json(t, &d);
                if (r < 0)
                        return r;
                r = set_new(o, "delegations", d);
                if (r < 0)
                        return r;
        }
        return finish(o, ret, ret_size);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Room-private to manifests/: never included outside this folder.
 * json.c     the jansson adapter: strict parsing, canonical JSON
 * crypto.c   the OpenSSL adapter: keys, signatures, hashes
 * metadata.c TUF role documents <-> value structs
 * trusted.c  the trusted set (client state machine)
 * paths.c    role file names, target path rules, delegation matching
 */

#include <jansson.h>

#include "manifests.h"

/* ---- json.c -------------------------------------------------------------- */

static inline json_t *json_decref_null(json_t *j) {
        json_decref(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(json_t *, json_decref_null);
#define _cleanup_json_ _cleanup_(json_decref_nullp)

/*
 * Parse a JSON document strictly: UTF-8, no duplicate keys, no NUL in
 * strings, depth <= 32, size <= max_size (-EFBIG), a top-level object.
 * -EPROTO on anything else. Floats are refused (canonical JSON has none).
 */
int tuf_json_parse(const void *data, size_t size, size_t max_size, json_t **ret);

/*
 * Canonical JSON (OLPC / securesystemslib): objects with keys sorted by
 * their UTF-8 bytes, no insignificant white space, strings with only '"' and
 * '\\' escaped, integers only. -EPROTO for floats or reals.
 */
int tuf_json_canonical(const json_t *v, char **ret, size_t *ret_size);

/* ---- crypto.c ------------------------------------------------------------ */

/* Parse a key object {"keytype","scheme","keyval":{"public"}} listed under keyid. */
int tuf_key_from_json(const char *keyid, const json_t *o, TufKey *ret);
/* The key object as metadata lists it (new reference). */
int tuf_key_to_json(const TufKey *k, json_t **ret);
/* Hex SHA-256 of the canonical JSON of the key object. */
int tuf_key_compute_keyid(const TufKey *k, char **ret);

/*
 * Verify sig (decoded from hex by the caller) over msg with key.
 * 0 valid; -EBADMSG invalid signature; -EKEYREJECTED the public key does not
 * parse or does not match its declared type; -EOPNOTSUPP unknown scheme.
 */
int tuf_key_verify(const TufKey *k, const void *msg, size_t msg_size,
                   const void *sig, size_t sig_size);

/* True when two keys are the same key material (same type and public key,
 * whatever keyids they are listed under): a threshold counts distinct keys. */
bool tuf_key_same_material(const TufKey *a, const TufKey *b);

/* Sign msg; signature bytes (hex-encoded by the caller into metadata). */
int tuf_private_key_sign(const TufPrivateKey *k, const void *msg, size_t msg_size,
                         uint8_t **ret, size_t *ret_size);

/* Parse a "hashes" object: {"sha256": hex, "sha512": hex, other: ignored}.
 * -EOPNOTSUPP if no understood algorithm, -EPROTO for bad hex or length. */
int tuf_hashes_from_json(const json_t *o, TufHashes *ret);
int tuf_hashes_to_json(const TufHashes *h, json_t **ret);
/* Constant-time check of data against every understood hash present. */
int tuf_hashes_verify(const TufHashes *h, const void *data, size_t size);

/* ---- metadata.c ----------------------------------------------------------- */

/*
 * A metadata envelope {"signatures":[{"keyid","sig"}],"signed":{...}}:
 * the canonical bytes of "signed" and the signatures, before the role's
 * content is interpreted.
 */
typedef struct TufSignature {
        char *keyid;
        uint8_t *sig;
        size_t sig_size;
} TufSignature;

typedef struct TufEnvelope {
        json_t *signed_json;           /* owned reference */
        char *canonical;               /* canonical JSON of "signed" */
        size_t canonical_size;
        TufSignature *signatures;
        size_t n_signatures;
        TufRoleType type;              /* from signed._type */
} TufEnvelope;

int tuf_envelope_parse(const void *data, size_t size, TufEnvelope **ret);
TufEnvelope *tuf_envelope_free(TufEnvelope *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufEnvelope *, tuf_envelope_free);

/*
 * Count valid signatures over e->canonical by distinct keys among
 * role->keyids (each key found in keys[]), counting a key once however many
 * keyids or signatures name it. 0 when >= role->threshold, -EBADMSG otherwise.
 */
int tuf_envelope_verify(const TufEnvelope *e, const TufKey *keys, size_t n_keys,
                        const TufRoleKeys *role);

/* Interpret "signed" as a role (the envelope's _type must match). */
int tuf_root_from_json(const json_t *signed_json, TufRoot **ret);
int tuf_timestamp_from_json(const json_t *signed_json, TufTimestamp **ret);
int tuf_snapshot_from_json(const json_t *signed_json, TufSnapshot **ret);
int tuf_targets_from_json(const json_t *signed_json, TufTargets **ret);

TufTimestamp *tuf_timestamp_free(TufTimestamp *t);
TufSnapshot *tuf_snapshot_free(TufSnapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufTimestamp *, tuf_timestamp_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufSnapshot *, tuf_snapshot_free);
void tuf_role_keys_done(TufRoleKeys *r);

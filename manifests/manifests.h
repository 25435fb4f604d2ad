/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * manifests/: formats and trust. Pure functions: bytes in, verified objects
 * out. No network, no files (callers read and write bytes).
 *
 *  1. TUF 1.0 metadata (JSON, canonical-JSON signatures; ed25519,
 *     ecdsa-sha2-nistp256, rsassa-pss-sha256), parsed into plain read-only
 *     value structs, and the trusted set: the client-side state machine of the
 *     specification's "Detailed client workflow" that accepts new metadata
 *     only when it is correctly signed, fresh and consistent.
 *  2. Hashing of targets (streamed) against signed hashes and length.
 *  3. Publishing: keys, canonical serialization and signing (used by oob-repo).
 *  4. The patch manifest and helpdesk order (YAML, parsed only after their
 *     TUF hashes matched).
 *
 * Errors (see lib/lib.h for the vocabulary): -EPROTO malformed, -EBADMSG bad
 * signature/threshold/hash/length, -EKEYREJECTED wrong key type or unusable
 * key, -EKEYEXPIRED expired, -ESTALE rollback, -EFBIG over a cap,
 * -EOPNOTSUPP unsupported algorithm only, -ENOENT missing role or file,
 * -EBUSY call out of order (e.g. root after timestamp), -ENOMEM.
 * This room never logs above debug level.
 *
 * Only this room includes jansson, OpenSSL and libyaml headers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib.h"

/* ---- roles, keys and hashes -------------------------------------------- */

typedef enum TufRoleType {
        TUF_ROLE_ROOT,
        TUF_ROLE_TIMESTAMP,
        TUF_ROLE_SNAPSHOT,
        TUF_ROLE_TARGETS,
        _TUF_ROLE_TYPE_MAX,
        _TUF_ROLE_TYPE_INVALID = -EINVAL,
} TufRoleType;

const char *tuf_role_type_to_string(TufRoleType t);  /* "root", ... */
TufRoleType tuf_role_type_from_string(const char *s);

typedef enum TufKeyType {
        TUF_KEY_ED25519,          /* keytype "ed25519", scheme "ed25519", public: 64 hex chars */
        TUF_KEY_ECDSA_P256,       /* keytype "ecdsa" or "ecdsa-sha2-nistp256", scheme
                                   * "ecdsa-sha2-nistp256", public: PEM SubjectPublicKeyInfo;
                                   * signature: hex of DER ECDSA-Sig-Value over SHA-256 */
        TUF_KEY_RSA_PSS_SHA256,   /* keytype "rsa", scheme "rsassa-pss-sha256", public: PEM;
                                   * PSS with MGF1-SHA256, salt length = digest length */
        _TUF_KEY_TYPE_MAX,
        _TUF_KEY_TYPE_INVALID = -EINVAL,
} TufKeyType;

const char *tuf_key_type_to_string(TufKeyType t);     /* the scheme name */
TufKeyType tuf_key_type_from_string(const char *s);

#define TUF_KEYID_MAX 128

typedef struct TufKey {
        char *keyid;           /* as listed by the delegating role (hex) */
        TufKeyType type;
        char *keytype;         /* exact strings from the document, re-serialized verbatim */
        char *scheme;
        char *public;          /* hex (ed25519) or PEM (ecdsa, rsa) as in the document */
} TufKey;

/* A role's authorised keys and threshold (root's roles and delegated roles). */
typedef struct TufRoleKeys {
        char **keyids;         /* NULL-terminated */
        unsigned threshold;    /* >= 1 */
} TufRoleKeys;

/* Hash algorithms understood: sha256 and sha512. Others are ignored, but a
 * hashes object with no understood algorithm is refused (-EOPNOTSUPP). */
typedef struct TufHashes {
        bool has_sha256, has_sha512;
        uint8_t sha256[32];
        uint8_t sha512[64];
} TufHashes;

/* ---- metadata (value types, read-only after parsing) ------------------- */

typedef struct TufRoot {
        uint64_t version;
        int64_t expires;               /* seconds since the epoch, UTC */
        char *spec_version;
        bool consistent_snapshot;
        TufKey *keys;
        size_t n_keys;
        TufRoleKeys roles[_TUF_ROLE_TYPE_MAX];
} TufRoot;

/* An entry of timestamp's or snapshot's "meta": file name -> version etc. */
typedef struct TufMetaFile {
        char *name;                    /* "snapshot.json", "targets.json", "releases.json" */
        uint64_t version;
        uint64_t length;               /* 0 when absent */
        TufHashes hashes;              /* both false when absent */
} TufMetaFile;

typedef struct TufTimestamp {
        uint64_t version;
        int64_t expires;
        char *spec_version;
        TufMetaFile snapshot;          /* meta["snapshot.json"] */
} TufTimestamp;

typedef struct TufSnapshot {
        uint64_t version;
        int64_t expires;
        char *spec_version;
        TufMetaFile *meta;
        size_t n_meta;
} TufSnapshot;

typedef struct TufTargetFile {
        char *path;                    /* relative, '/'-separated, no "..", "." or empty parts */
        uint64_t length;
        TufHashes hashes;
        char *custom_json;             /* canonical JSON of "custom", or NULL */
} TufTargetFile;

typedef struct TufDelegatedRole {
        char *name;
        TufRoleKeys keys;
        bool terminating;
        char **paths;                  /* NULL-terminated glob patterns, or NULL */
        char **path_hash_prefixes;     /* NULL-terminated hex prefixes, or NULL */
} TufDelegatedRole;

typedef struct TufTargets {
        uint64_t version;
        int64_t expires;
        char *spec_version;
        TufTargetFile *targets;
        size_t n_targets;
        bool has_delegations;
        TufKey *delegation_keys;
        size_t n_delegation_keys;
        TufDelegatedRole *roles;       /* in document order */
        size_t n_roles;
} TufTargets;

const TufMetaFile *tuf_snapshot_find(const TufSnapshot *s, const char *name);
const TufTargetFile *tuf_targets_find(const TufTargets *t, const char *path);
const TufKey *tuf_key_find(const TufKey *keys, size_t n_keys, const char *keyid);

/* True if target_path is delegated to role: either a "paths" pattern matches
 * (fnmatch per '/'-separated component, same number of components) or the
 * hex SHA-256 of the path starts with one of "path_hash_prefixes". */
bool tuf_delegated_role_matches(const TufDelegatedRole *role, const char *target_path);

/* Target paths we accept from a document or a caller: relative, '/'-separated,
 * no empty, "." or ".." components, no backslash or NUL, at most 4096 bytes. */
bool tuf_target_path_is_valid(const char *path);

/* Metadata file name for a role ("root" -> "root.json"), with the role name
 * percent-encoded (everything but [A-Za-z0-9_.~-]) so that "../x" or "a/b"
 * can never leave a directory: "..%2Fx.json". With version > 0 the consistent
 * snapshot form "VERSION.NAME.json". Returns a new string or NULL. */
char *tuf_role_filename(const char *role, uint64_t version);

/* ---- the trusted set (client state machine) ---------------------------- */

/*
 * Mirrors the specification's client workflow, one call per step. Every
 * update_* verifies signatures against the currently trusted delegator,
 * checks versions against the trusted copy (rollback), hashes/length against
 * the referencing metadata (mix-and-match) and expiry against the fixed
 * reference time given at creation (freeze). On error the trusted state is
 * unchanged. The caller persists the bytes it passed after a call succeeds.
 */
typedef struct TufTrustedSet TufTrustedSet;

/* Load the trusted root (verified with its own keys and threshold). The root
 * may be expired at this point; that is checked after the rotation chain. */
int tuf_trusted_set_new(const void *root, size_t size, int64_t reference_time, TufTrustedSet **ret);
TufTrustedSet *tuf_trusted_set_free(TufTrustedSet *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufTrustedSet *, tuf_trusted_set_free);

/* N+1.root.json: signed by the threshold of the trusted root's root keys AND
 * of its own; version exactly trusted+1 (-ESTALE otherwise, -EBADMSG for
 * signatures). -EBUSY once a timestamp was loaded. */
int tuf_trusted_set_update_root(TufTrustedSet *s, const void *data, size_t size);

/* After the rotation chain: -EKEYEXPIRED when the final root is expired. */
int tuf_trusted_set_check_root(TufTrustedSet *s);

/* Timestamp. -ESTALE for a lower version or a lower snapshot version than
 * the trusted one; -EEXIST when the version equals the trusted one (the
 * trusted copy is kept, not an error for the workflow); -EKEYEXPIRED when the
 * new timestamp is expired (it is still kept as trusted, for rollback checks
 * of later timestamps, like python-tuf). -EBUSY once a snapshot was loaded. */
int tuf_trusted_set_update_timestamp(TufTrustedSet *s, const void *data, size_t size);

/* Snapshot. from_cache: the bytes come from our own metadata directory, so the
 * timestamp's hashes/length are not checked (version is). Checks: length and
 * hashes from timestamp (-EBADMSG), signature, no file listed in the trusted
 * snapshot missing or with a lower version (-ESTALE), expiry, version equal to
 * timestamp's snapshot version (-ESTALE / -EBADMSG). -EBUSY once targets loaded. */
int tuf_trusted_set_update_snapshot(TufTrustedSet *s, const void *data, size_t size, bool from_cache);

/* Top-level targets (delegator "root") or a delegated role (delegator is a
 * targets role already loaded). Checks snapshot's meta entry for ROLE.json
 * (-ENOENT if absent), its length/hashes when given (-EBADMSG), signatures
 * by the delegator's keys for that role, version equal to snapshot's
 * (-ESTALE), expiry (-EKEYEXPIRED). */
int tuf_trusted_set_update_targets(TufTrustedSet *s, const char *role, const char *delegator,
                                   const void *data, size_t size);

/* Accessors: NULL when not (yet) trusted. Valid until the next update of
 * that role or the set is freed. */
const TufRoot *tuf_trusted_set_root(const TufTrustedSet *s);
const TufTimestamp *tuf_trusted_set_timestamp(const TufTrustedSet *s);
const TufSnapshot *tuf_trusted_set_snapshot(const TufTrustedSet *s);
const TufTargets *tuf_trusted_set_targets(const TufTrustedSet *s, const char *role);
int64_t tuf_trusted_set_reference_time(const TufTrustedSet *s);

/* True if, between the root the set was created with and the current one, the
 * timestamp or snapshot role's keyids or threshold changed; the caller then
 * deletes its cached timestamp and snapshot (fast-forward attack recovery). */
bool tuf_trusted_set_rotated(const TufTrustedSet *s, TufRoleType role);

/* ---- target hashing ------------------------------------------------------ */

/* Streamed hashing of a download against signed hashes and length. */
typedef struct TufHasher TufHasher;

/* Computes the algorithms present in expected (both when NULL); verify may
 * then be called with those expectations. -EOPNOTSUPP when expected has none. */
int tuf_hasher_new(const TufHashes *expected, TufHasher **ret);
TufHasher *tuf_hasher_free(TufHasher *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufHasher *, tuf_hasher_free);
int tuf_hasher_update(TufHasher *h, const void *data, size_t size);
uint64_t tuf_hasher_length(const TufHasher *h);
/* Finish and compare every understood hash (constant time) and the length:
 * 0 when all match, -EBADMSG when one differs, -EFBIG if over length. The
 * hasher cannot be updated afterwards. */
int tuf_hasher_verify(TufHasher *h, uint64_t expected_length, const TufHashes *expected);
/* Hashes of a whole buffer (sha256 and sha512). */
int tuf_hashes_compute(const void *data, size_t size, TufHashes *ret);
/* First understood hash as lower-case hex, for consistent-snapshot target
 * names (sha256 preferred, as python-tuf takes the first listed; see .c). */
char *tuf_hashes_first_hex(const TufHashes *h);

/* ---- publishing (oob-repo) ---------------------------------------------- */

/* A private key. Wiped on free. Stored on disk as PKCS#8 PEM (0600). */
typedef struct TufPrivateKey TufPrivateKey;

int tuf_private_key_generate(TufKeyType type, TufPrivateKey **ret);
int tuf_private_key_from_pem(const void *pem, size_t size, TufPrivateKey **ret);
/* PKCS#8 PEM; the returned buffer holds a secret: wipe before free. */
int tuf_private_key_to_pem(const TufPrivateKey *k, char **ret, size_t *ret_size);
TufPrivateKey *tuf_private_key_free(TufPrivateKey *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufPrivateKey *, tuf_private_key_free);
/* The public half as metadata lists it; keyid = hex SHA-256 of the canonical
 * JSON of {"keytype","keyval":{"public"},"scheme"}. Free with tuf_key_done(). */
int tuf_private_key_public(const TufPrivateKey *k, TufKey *ret);
void tuf_key_done(TufKey *k);

/* Serialize a role's "signed" object as canonical JSON. */
int tuf_root_to_json(const TufRoot *r, char **ret, size_t *ret_size);
int tuf_timestamp_to_json(const TufTimestamp *t, char **ret, size_t *ret_size);
int tuf_snapshot_to_json(const TufSnapshot *s, char **ret, size_t *ret_size);
int tuf_targets_to_json(const TufTargets *t, char **ret, size_t *ret_size);

/* Wrap canonical "signed" bytes into {"signatures":[...],"signed":...}, one
 * signature per key, written as canonical JSON (readable by any TUF client).
 * Signing a signed object with the same key twice yields one signature. */
int tuf_metadata_sign(const char *signed_json, size_t size, TufPrivateKey * const *keys,
                      size_t n_keys, char **ret, size_t *ret_size);

/* Parse a metadata document's "signed" part without verifying signatures:
 * for tools that display or re-sign what they published themselves. Free
 * the result with the matching *_free(). */
int tuf_root_parse_unverified(const void *data, size_t size, TufRoot **ret);
int tuf_targets_parse_unverified(const void *data, size_t size, TufTargets **ret);
TufRoot *tuf_root_free(TufRoot *r);
TufTargets *tuf_targets_free(TufTargets *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufRoot *, tuf_root_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufTargets *, tuf_targets_free);

/* Caps on metadata sizes when the referencing role gives no length (the
 * specification's suggested defaults, as python-tuf uses). */
#define TUF_ROOT_MAX_LENGTH 512000U
#define TUF_TIMESTAMP_MAX_LENGTH 16384U
#define TUF_SNAPSHOT_MAX_LENGTH 2000000U
#define TUF_TARGETS_MAX_LENGTH 5000000U
/* Documents above this are refused by the parser whatever the caller says. */
#define TUF_METADATA_MAX_LENGTH (64U * 1024U * 1024U)

/* ---- patch manifests and helpdesk orders (YAML) ----------------------- */

/* See manifests/FORMATS.md for the schemas and examples. */

typedef enum PatchActionType {
        PATCH_ACTION_EXTRACT,          /* files from an archive payload into the volume */
        PATCH_ACTION_DELETE,           /* delete files */
        PATCH_ACTION_REGISTRY_SET,     /* set a registry value */
        PATCH_ACTION_REGISTRY_DELETE,  /* delete a registry value or key */
        PATCH_ACTION_STAGE_PACKAGE,    /* copy a payload and register a first-boot command */
        PATCH_ACTION_OS_IMAGE,         /* a whole OS image (side-by-side slot) */
        _PATCH_ACTION_TYPE_MAX,
        _PATCH_ACTION_TYPE_INVALID = -EINVAL,
} PatchActionType;

const char *patch_action_type_to_string(PatchActionType t);
PatchActionType patch_action_type_from_string(const char *s);

typedef enum RegistryValueType {
        REG_VALUE_SZ,
        REG_VALUE_EXPAND_SZ,
        REG_VALUE_MULTI_SZ,
        REG_VALUE_DWORD,
        REG_VALUE_QWORD,
        REG_VALUE_BINARY,
        _REG_VALUE_TYPE_MAX,
        _REG_VALUE_TYPE_INVALID = -EINVAL,
} RegistryValueType;

const char *registry_value_type_to_string(RegistryValueType t);  /* "REG_SZ", ... */
RegistryValueType registry_value_type_from_string(const char *s);

typedef struct PatchAction {
        PatchActionType type;
        /* extract: payload (target path), dest (volume dir, e.g. "Windows/System32");
         * stage-package: payload, command (run once at next boot);
         * os-image: payload, slot */
        char *payload;
        char *dest;
        char **paths;                  /* delete: volume paths (NULL-terminated) */
        /* registry-set / registry-delete */
        char *hive;                    /* "SYSTEM", "SOFTWARE", "NTUSER:<user>" */
        char *key;                     /* backslash-separated key path under the hive */
        char *value_name;              /* NULL: registry-delete of the whole key */
        RegistryValueType value_type;
        char **strings;                /* REG_SZ/REG_EXPAND_SZ (one), REG_MULTI_SZ (many) */
        uint64_t number;               /* REG_DWORD/REG_QWORD */
        uint8_t *binary;               /* REG_BINARY */
        size_t binary_size;
        char *command;
        char *slot;
        /* extract: the most bytes the archive may unpack to ("max-size"),
         * 0 when the manifest gives none (the apply engine then caps it
         * by the payload's signed length). Added by the "apply" helper. */
        uint64_t max_unpacked;
} PatchAction;

typedef struct TrialPolicy {
        unsigned boot_timeout_sec;     /* agent must answer within this; default 300 */
        unsigned stability_sec;        /* no crash/watchdog for this long; default 600 */
        unsigned attempts;             /* trial boots before rollback; default 1 */
} TrialPolicy;

typedef struct PatchManifest {
        char *id;                      /* unique, e.g. "2026-11-kb5040001" */
        uint64_t version;              /* installed versions of an id are never re-applied */
        char *description;
        char **device_groups;          /* applies to these groups; NULL or empty: all */
        uint64_t os_build_min, os_build_max;  /* inclusive; 0: unbounded */
        char **payloads;               /* target paths this manifest needs */
        PatchAction *actions;
        size_t n_actions;
        TrialPolicy trial;
} PatchManifest;

/* Parse a manifest's bytes (only after its TUF hashes matched). Strict:
 * unknown or duplicate keys, aliases, tags, over-deep (> 16) or over-large
 * (> 1 MiB, > 10000 nodes) documents are refused with -EPROTO/-EFBIG and a
 * message naming the line and column in *ret_error (may be NULL). */
int patch_manifest_parse(const void *data, size_t size, PatchManifest **ret, char **ret_error);
PatchManifest *patch_manifest_free(PatchManifest *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(PatchManifest *, patch_manifest_free);

typedef enum OrderAction {
        ORDER_ROLLBACK,                /* args: snapshot (optional; default last known-good) */
        ORDER_REIMAGE,                 /* args: image (target path); user data kept */
        ORDER_COLLECT,                 /* args: what ("crash-dumps", "logs", "all") */
        ORDER_SWITCH_OS,               /* args: slot */
        ORDER_PIN,                     /* args: snapshot */
        _ORDER_ACTION_MAX,
        _ORDER_ACTION_INVALID = -EINVAL,
} OrderAction;

const char *order_action_to_string(OrderAction a);
OrderAction order_action_from_string(const char *s);

typedef struct Order {
        char *device;                  /* device id this order is for */
        uint64_t sequence;             /* strictly increasing per device */
        int64_t expires;               /* seconds since the epoch */
        OrderAction action;
        char *snapshot, *image, *what, *slot;  /* the action's arguments */
        char *reason;                  /* free text for the audit trail */
} Order;

int order_parse(const void *data, size_t size, Order **ret, char **ret_error);
Order *order_free(Order *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(Order *, order_free);

/* ISO 8601 UTC "2026-11-21T08:00:00Z" <-> seconds (used by TUF and YAML). */
int parse_iso8601_utc(const char *s, int64_t *ret);
int format_iso8601_utc(int64_t t, char buf[static 21]);

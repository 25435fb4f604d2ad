/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A small TUF publisher for client tests, built on manifests/' publishing
 * API (keys, *_to_json, tuf_metadata_sign). Unlike oob-repo it does whatever
 * a scenario asks, including what an attacker would: any version, any
 * expiry, any key, delegations with odd names, files swapped on the server.
 *
 * Layout under DIR (served by nginx): metadata/ and targets/, with the
 * consistent-snapshot names (V.ROLE.json, DIR/HASH.NAME) written alongside
 * the plain ones when the repository uses consistent snapshots.
 */

#include <time.h>

#include "manifests.h"
#include "updater/fixture.h"

#define REPO_MAX_ROLES 6
#define REPO_MAX_FILES 8
#define REPO_MAX_DELEGATIONS 4

typedef struct RepoKey {
        TufPrivateKey *priv;
        TufKey pub;
} RepoKey;

typedef struct RepoDelegation {
        size_t child; /* index into Repo.roles */
        char pattern[128];
        bool terminating;
} RepoDelegation;

/* A targets role: roles[0] is the top-level "targets". */
typedef struct RepoRole {
        char name[128];
        uint64_t version;
        int64_t expires;
        RepoKey key;
        TufTargetFile files[REPO_MAX_FILES];
        size_t n_files;
        RepoDelegation delegations[REPO_MAX_DELEGATIONS];
        size_t n_delegations;
} RepoRole;

typedef struct Repo {
        char dir[PATH_MAX];
        char metadata[PATH_MAX + 16];
        char targets[PATH_MAX + 16];
        bool consistent;
        bool meta_hashes; /* lengths and hashes in timestamp's and snapshot's meta */

        RepoKey root, timestamp, snapshot;
        RepoKey timestamp_also; /* if set, root lists it for timestamp too */
        uint64_t root_version, timestamp_version, snapshot_version;
        int64_t root_expires, timestamp_expires, snapshot_expires;

        RepoRole roles[REPO_MAX_ROLES];
        size_t n_roles;
} Repo;

#define REPO_DAY 86400

static _unused_ void repo_key_new(RepoKey *k) {
        ck_assert_int_eq(tuf_private_key_generate(TUF_KEY_ED25519, &k->priv), 0);
        ck_assert_int_eq(tuf_private_key_public(k->priv, &k->pub), 0);
}

static _unused_ void repo_key_done(RepoKey *k) {
        k->priv = tuf_private_key_free(k->priv);
        tuf_key_done(&k->pub);
}

static _unused_ void repo_init(Repo *r, const char *dir, bool consistent) {
        int64_t now = (int64_t) time(NULL);

        memset(r, 0, sizeof(*r));
        ck_assert_int_lt(snprintf(r->dir, sizeof(r->dir), "%s", dir), (int) sizeof(r->dir));
        snprintf(r->metadata, sizeof(r->metadata), "%s/metadata", r->dir);
        snprintf(r->targets, sizeof(r->targets), "%s/targets", r->dir);
        ck_assert_int_eq(mkdir_p(r->metadata, 0755), 0);
        ck_assert_int_eq(mkdir_p(r->targets, 0755), 0);

        r->consistent = consistent;
        r->meta_hashes = true;
        repo_key_new(&r->root);
        repo_key_new(&r->timestamp);
        repo_key_new(&r->snapshot);
        r->root_version = r->timestamp_version = r->snapshot_version = 1;
        r->root_expires = now + 365 * REPO_DAY;
        r->timestamp_expires = now + REPO_DAY;
        r->snapshot_expires = now + 7 * REPO_DAY;

        r->n_roles = 1;
        snprintf(r->roles[0].name, sizeof(r->roles[0].name), "targets");
        r->roles[0].version = 1;
        r->roles[0].expires = now + 90 * REPO_DAY;
        repo_key_new(&r->roles[0].key);
}

static _unused_ void repo_done(Repo *r) {
        repo_key_done(&r->root);
        repo_key_done(&r->timestamp);
        repo_key_done(&r->timestamp_also);
        repo_key_done(&r->snapshot);
        for (size_t i = 0; i < r->n_roles; i++) {
                repo_key_done(&r->roles[i].key);
                for (size_t j = 0; j < r->roles[i].n_files; j++)
                        free(r->roles[i].files[j].path);
        }
}

/* A delegated role below parent, for target paths matching pattern. */
static _unused_ size_t repo_add_role(Repo *r, size_t parent, const char *name, const char *pattern,
                                     bool terminating) {
        RepoRole *role;
        RepoDelegation *d;

        ck_assert_uint_lt(r->n_roles, REPO_MAX_ROLES);
        ck_assert_uint_lt(r->roles[parent].n_delegations, REPO_MAX_DELEGATIONS);
        role = &r->roles[r->n_roles];
        d = &r->roles[parent].delegations[r->roles[parent].n_delegations++];
        snprintf(role->name, sizeof(role->name), "%s", name);
        role->version = 1;
        role->expires = (int64_t) time(NULL) + 90 * REPO_DAY;
        repo_key_new(&role->key);
        *d = (RepoDelegation){.child = r->n_roles, .terminating = terminating};
        snprintf(d->pattern, sizeof(d->pattern), "%s", pattern);
        return r->n_roles++;
}

/* Another delegation to an existing role (for cycles). */
static _unused_ void repo_delegate(Repo *r, size_t parent, size_t child, const char *pattern) {
        RepoDelegation *d;

        ck_assert_uint_lt(r->roles[parent].n_delegations, REPO_MAX_DELEGATIONS);
        d = &r->roles[parent].delegations[r->roles[parent].n_delegations++];
        *d = (RepoDelegation){.child = child};
        snprintf(d->pattern, sizeof(d->pattern), "%s", pattern);
}

/* The served name of a target: PATH, or DIR/HASH.BASENAME. */
static _unused_ char *repo_target_served_path(const Repo *r, const TufTargetFile *f, bool hashed) {
        _cleanup_free_ char *hex = NULL;
        const char *slash;
        char *p;

        if (!hashed)
                return path_join(r->targets, f->path);
        hex = tuf_hashes_first_hex(&f->hashes);
        ck_assert_ptr_nonnull(hex);
        slash = strrchr(f->path, '/');
        if (slash)
                ck_assert_int_ge(asprintf(&p, "%s/%.*s/%s.%s", r->targets, (int) (slash - f->path), f->path,
                                          hex, slash + 1),
                                 0);
        else
                ck_assert_int_ge(asprintf(&p, "%s/%s.%s", r->targets, hex, f->path), 0);
        return p;
}

/* Put data on the server under the target's served name(s) (to tamper). */
static _unused_ void repo_serve_target_bytes(const Repo *r, const TufTargetFile *f, const void *data,
                                             size_t size) {
        for (int hashed = 0; hashed <= (int) r->consistent; hashed++) {
                _cleanup_free_ char *p = repo_target_served_path(r, f, hashed);
                fixture_write_path(p, data, size);
        }
}

static _unused_ const TufTargetFile *repo_add_target(Repo *r, size_t role, const char *path,
                                                     const void *data, size_t size) {
        RepoRole *ro = &r->roles[role];
        TufTargetFile *f;

        ck_assert_uint_lt(ro->n_files, REPO_MAX_FILES);
        f = &ro->files[ro->n_files++];
        *f = (TufTargetFile){.path = strdup(path), .length = size};
        ck_assert_ptr_nonnull(f->path);
        ck_assert_int_eq(tuf_hashes_compute(data, size, &f->hashes), 0);
        f->hashes.has_sha512 = false; /* one hash, as most repositories list */
        repo_serve_target_bytes(r, f, data, size);
        return f;
}

/* Sign and write metadata/NAME (a file name, percent-encoded already). */
static _unused_ void repo_write_signed(const Repo *r, const char *name, const char *signed_json, size_t size,
                                       TufPrivateKey *const *keys, size_t n_keys) {
        _cleanup_free_ char *doc = NULL;
        size_t doc_size;

        ck_assert_int_eq(tuf_metadata_sign(signed_json, size, keys, n_keys, &doc, &doc_size), 0);
        fixture_write(r->metadata, name, doc, doc_size);
}

/* Write root (version root_version) as N.root.json and root.json, signed
 * by the current root key and the extra keys given (an old root key). */
static _unused_ void repo_write_root(Repo *r, TufPrivateKey *const *extra, size_t n_extra) {
        TufPrivateKey *signers[4] = {r->root.priv};
        TufKey keys[5] = {r->root.pub, r->timestamp.pub, r->snapshot.pub, r->roles[0].key.pub,
                          r->timestamp_also.pub};
        char *ids[4][3] = {
                {r->root.pub.keyid, NULL},
                {r->timestamp.pub.keyid, r->timestamp_also.pub.keyid, NULL},
                {r->snapshot.pub.keyid, NULL},
                {r->roles[0].key.pub.keyid, NULL},
        };
        TufRoot root = {
                .version = r->root_version,
                .expires = r->root_expires,
                .consistent_snapshot = r->consistent,
                .keys = keys,
                .n_keys = r->timestamp_also.priv ? 5 : 4,
        };
        _cleanup_free_ char *json = NULL, *name = NULL;
        size_t size;

        ck_assert_uint_le(n_extra, 3);
        for (size_t i = 0; i < n_extra; i++)
                signers[1 + i] = extra[i];
        for (TufRoleType t = 0; t < _TUF_ROLE_TYPE_MAX; t++)
                root.roles[t] = (TufRoleKeys){.keyids = ids[t], .threshold = 1};

        ck_assert_int_eq(tuf_root_to_json(&root, &json, &size), 0);
        name = tuf_role_filename("root", r->root_version);
        repo_write_signed(r, name, json, size, signers, 1 + n_extra);
        repo_write_signed(r, "root.json", json, size, signers, 1 + n_extra);
}

/* Write targets role i as ROLE.json (and V.ROLE.json). */
static _unused_ void repo_write_role(Repo *r, size_t i) {
        RepoRole *ro = &r->roles[i];
        TufKey keys[REPO_MAX_DELEGATIONS];
        TufDelegatedRole dr[REPO_MAX_DELEGATIONS];
        char *ids[REPO_MAX_DELEGATIONS][2], *paths[REPO_MAX_DELEGATIONS][2];
        TufTargets t = {
                .version = ro->version,
                .expires = ro->expires,
                .targets = ro->files,
                .n_targets = ro->n_files,
                .has_delegations = ro->n_delegations > 0,
                .delegation_keys = keys,
                .n_delegation_keys = ro->n_delegations,
                .roles = dr,
                .n_roles = ro->n_delegations,
        };
        _cleanup_free_ char *json = NULL, *plain = NULL, *versioned = NULL;
        size_t size;

        for (size_t d = 0; d < ro->n_delegations; d++) {
                RepoRole *child = &r->roles[ro->delegations[d].child];

                keys[d] = child->key.pub;
                ids[d][0] = child->key.pub.keyid;
                ids[d][1] = NULL;
                paths[d][0] = ro->delegations[d].pattern;
                paths[d][1] = NULL;
                dr[d] = (TufDelegatedRole){
                        .name = child->name,
                        .keys = {.keyids = ids[d], .threshold = 1},
                        .terminating = ro->delegations[d].terminating,
                        .paths = paths[d],
                };
        }
        /* Two delegations to the same child list its key once. */
        for (size_t d = 1; d < t.n_delegation_keys; d++)
                for (size_t e = 0; e < d; e++)
                        if (streq(keys[d].keyid, keys[e].keyid)) {
                                keys[d--] = keys[--t.n_delegation_keys];
                                break;
                        }

        ck_assert_int_eq(tuf_targets_to_json(&t, &json, &size), 0);
        plain = tuf_role_filename(ro->name, 0);
        versioned = tuf_role_filename(ro->name, ro->version);
        repo_write_signed(r, plain, json, size, &ro->key.priv, 1);
        if (r->consistent)
                repo_write_signed(r, versioned, json, size, &ro->key.priv, 1);
}

/* Length and hashes of a metadata file as published (plain name). */
static _unused_ void repo_meta_file(const Repo *r, const char *file, const char *role, uint64_t version,
                                    TufMetaFile *ret) {
        _cleanup_free_ char *p = path_join(r->metadata, file), *data = NULL;
        size_t size;

        *ret = (TufMetaFile){.version = version};
        ck_assert_int_ge(asprintf(&ret->name, "%s.json", role), 0);
        if (!r->meta_hashes)
                return;
        ck_assert_int_eq(read_full_file(p, 64 * 1024 * 1024, &data, &size), 0);
        ret->length = size;
        ck_assert_int_eq(tuf_hashes_compute(data, size, &ret->hashes), 0);
        ret->hashes.has_sha512 = false;
}

static _unused_ void repo_write_snapshot(Repo *r) {
        TufMetaFile meta[REPO_MAX_ROLES] = {};
        TufSnapshot s = {
                .version = r->snapshot_version,
                .expires = r->snapshot_expires,
                .meta = meta,
                .n_meta = r->n_roles,
        };
        _cleanup_free_ char *json = NULL, *versioned = NULL;
        size_t size;

        for (size_t i = 0; i < r->n_roles; i++) {
                _cleanup_free_ char *file = tuf_role_filename(r->roles[i].name, 0);
                repo_meta_file(r, file, r->roles[i].name, r->roles[i].version, &meta[i]);
        }
        ck_assert_int_eq(tuf_snapshot_to_json(&s, &json, &size), 0);
        for (size_t i = 0; i < r->n_roles; i++)
                free(meta[i].name);

        repo_write_signed(r, "snapshot.json", json, size, &r->snapshot.priv, 1);
        versioned = tuf_role_filename("snapshot", r->snapshot_version);
        if (r->consistent)
                repo_write_signed(r, versioned, json, size, &r->snapshot.priv, 1);
}

static _unused_ void repo_write_timestamp(Repo *r) {
        TufTimestamp t = {
                .version = r->timestamp_version,
                .expires = r->timestamp_expires,
        };
        _cleanup_free_ char *json = NULL;
        size_t size;

        repo_meta_file(r, "snapshot.json", "snapshot", r->snapshot_version, &t.snapshot);
        ck_assert_int_eq(tuf_timestamp_to_json(&t, &json, &size), 0);
        free(t.snapshot.name);
        repo_write_signed(r, "timestamp.json", json, size, &r->timestamp.priv, 1);
}

/* Every targets role, snapshot and timestamp at their current versions. */
static _unused_ void repo_publish(Repo *r) {
        for (size_t i = r->n_roles; i > 0; i--)
                repo_write_role(r, i - 1);
        repo_write_snapshot(r);
        repo_write_timestamp(r);
}

/* A new version of everything but root, as after adding a target. */
static _unused_ void repo_bump(Repo *r) {
        for (size_t i = 0; i < r->n_roles; i++)
                r->roles[i].version++;
        r->snapshot_version++;
        r->timestamp_version++;
}

/* Read a published metadata file (to replay it later). */
static _unused_ char *repo_read(const Repo *r, const char *name, size_t *ret_size) {
        _cleanup_free_ char *p = path_join(r->metadata, name);
        char *data = NULL;

        ck_assert_int_eq(read_full_file(p, 64 * 1024 * 1024, &data, ret_size), 0);
        return data;
}

static _unused_ void repo_put(const Repo *r, const char *name, const void *data, size_t size) {
        fixture_write(r->metadata, name, data, size);
}

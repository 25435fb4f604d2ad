/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * oob-repo's private model; never included outside programs/oob-repo/.
 *
 * A repository directory holds:
 *
 *   keys/ROLE.pem   one PKCS#8 PEM private key per role (files 0600, folder
 *                   0700); retired keys are kept as ROLE.pem.old-N.
 *   state           everything the repository knows in ONE file, replaced
 *                   atomically: settings, each role's current signed document,
 *                   the whole root history, and the working copies of targets
 *                   roles with unpublished changes (--no-publish). Writing it
 *                   is the commit point of every command.
 *   store/          target files by content (store/payloads/SHA256.NAME), written
 *                   before the commit that lists them.
 *   public/         the static tree to serve, wholly derived from state and
 *                   store/ after each commit, in an order that is safe for
 *                   readers: target files (hard links), root, targets roles,
 *                   snapshot, then timestamp. A command interrupted between
 *                   the commit and the end of that writing is finished by the
 *                   next command that opens the repository.
 *
 * Every command is: repo_open() (lock, load, verify), modify the working
 * copies (repo->root, repo->targets[]), repo_publish() or repo_save().
 */

#include <assert.h>

#include "manifests.h"

#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")

static inline void *repo_memdup(const void *p, size_t n) {
        void *q = malloc(n ? n : 1);

        if (q && n)
                memcpy(q, p, n);
        return q;
}

typedef enum RepoRole {
        REPO_ROLE_ROOT,             /* the first four match TufRoleType */
        REPO_ROLE_TIMESTAMP,
        REPO_ROLE_SNAPSHOT,
        REPO_ROLE_TARGETS,
        REPO_ROLE_RELEASES,         /* delegated by targets: manifests/ and payloads/ */
        REPO_ROLE_HELPDESK,         /* delegated by targets: orders/ */
        _REPO_ROLE_MAX,
        _REPO_ROLE_INVALID = -EINVAL,
} RepoRole;

const char *repo_role_to_string(RepoRole r);
RepoRole repo_role_from_string(const char *s);

static inline bool repo_role_is_targets(RepoRole r) {
        return r >= REPO_ROLE_TARGETS && r < _REPO_ROLE_MAX;
}
static inline bool repo_role_is_delegated(RepoRole r) {
        return r == REPO_ROLE_RELEASES || r == REPO_ROLE_HELPDESK;
}

/* Key types as the command line names them ("ed25519", "ecdsa", "rsa"). */
const char *cli_key_type_to_string(TufKeyType t);
TufKeyType cli_key_type_from_string(const char *s);

/* "90d", "12h", "30m", "45s", "2w" or plain seconds -> seconds (> 0). */
int parse_duration(const char *s, int64_t *ret);

typedef struct RoleState {
        uint64_t version;          /* published version; 0 before the first publication */
        int64_t expires;           /* expiry of the published version */
        int64_t duration;          /* validity given to new versions, in seconds */
        char *document;            /* the published signed document */
        size_t document_size;
        bool dirty;                /* targets roles: the working copy has changes not yet
                                    * published (kept in state across commands) */
        bool renew;                /* sign a new version in this command even if not
                                    * dirty: expiry, key rotation, --expires */
} RoleState;

typedef struct RepoDocument {
        char *data;
        size_t size;
} RepoDocument;

typedef struct Repo {
        char *dir;
        int lock_fd;
        TufKeyType key_type;               /* default type of new keys */
        bool consistent_snapshot;
        RoleState roles[_REPO_ROLE_MAX];
        RepoDocument *root_history;        /* [i] is version i + 1, up to the published root */
        size_t n_root_history;
        TufRoot *root;                     /* working copy of root */
        TufTargets *targets[_REPO_ROLE_MAX];  /* working copies, set for targets roles only */
        TufPrivateKey *keys[_REPO_ROLE_MAX];  /* loaded on first use */
        TufPrivateKey *retiring_root_key;  /* also signs the next root (root rotation) */
} Repo;

Repo *repo_free(Repo *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Repo *, repo_free);

/* Default validity of each role's new versions. */
extern const int64_t repo_default_durations[_REPO_ROLE_MAX];

/*
 * Create DIR's keys/ and an unpublished repository in memory (every role at
 * version 0): the caller publishes it. -EEXIST when DIR already
 * holds a repository or a keys/ folder. durations: seconds per role.
 */
int repo_create(const char *dir, TufKeyType key_type, bool consistent_snapshot,
                const int64_t durations[_REPO_ROLE_MAX], Repo **ret);

/* Lock DIR (waits up to 30 s for another oob-repo), load and check state,
 * finish an interrupted key rotation or publication. -ENOENT: no repository. */
int repo_open(const char *dir, Repo **ret);

/* The private key of a role, loaded from keys/ROLE.pem (borrowed). */
int repo_key(Repo *r, RepoRole role, TufPrivateKey **ret);

/* Path of a file in the repository, e.g. repo_path(r, "keys/root.pem"). */
char *repo_path(const Repo *r, const char *relative);

/* Mark roles whose published version has less than half of its validity
 * left at now (or no version yet) for renewal. */
void repo_mark_expiring(Repo *r, int64_t now);

typedef enum RepoPublishFlags {
        REPO_PUBLISH_STAGED = 1 << 0,   /* also publish the working copies' changes */
        REPO_PUBLISH_REPORT = 1 << 1,   /* print one line naming the new versions */
} RepoPublishFlags;

/*
 * Sign new versions of the roles marked for renewal, of expiring roles,
 * with REPO_PUBLISH_STAGED of the roles with unpublished changes, and of
 * what must follow (a new targets role makes a new snapshot, a new snapshot
 * a new timestamp); commit state, then write public/. Without
 * REPO_PUBLISH_STAGED a delegated role is renewed from its published content
 * and its changes stay unpublished (refresh from cron must not publish what
 * an admin staged). Returns the number of roles signed (0: nothing to do).
 */
int repo_publish(Repo *r, int64_t now, RepoPublishFlags flags);

/* Commit the working copies without publishing (--no-publish). */
int repo_save(Repo *r);

/* ---- targets (targets.c) ----------------------------------------------- */

/* The targets role that a target path is delegated to (releases or
 * helpdesk); -ENOENT when none matches. */
int repo_role_for_target(const Repo *r, const char *target_path, RepoRole *ret);

/* Find a target in the working copies; NULL if absent. */
const TufTargetFile *repo_find_target(const Repo *r, const char *target_path, RepoRole *ret_role);

/*
 * Store data under public/targets/ by hash (durably, before any metadata
 * names it) and list it in the working copy of the role it is delegated to.
 * Returns 1 when the role changed, 0 when the same bytes were already listed.
 */
int repo_add_target(Repo *r, const char *target_path, const void *data, size_t size);

/* Drop a target from the working copies. -ENOENT when not listed. */
int repo_remove_target(Repo *r, const char *target_path, RepoRole *ret_role);

/* Read back the stored bytes of a listed target, checked against its hashes. */
int repo_read_target(const Repo *r, const TufTargetFile *f, char **ret, size_t *ret_size);

/* Where a target's bytes live: the store, and its two names in public/. */
typedef struct RepoTargetPaths {
        char *stored;              /* DIR/store/DIR/SHA256.NAME */
        char *hashed;              /* DIR/public/targets/DIR/SHA256.NAME */
        char *plain;               /* DIR/public/targets/DIR/NAME */
} RepoTargetPaths;

int repo_target_file_paths(const Repo *r, const char *target_path, const TufHashes *h,
                           RepoTargetPaths *ret);
void repo_target_paths_done(RepoTargetPaths *p);

/* Make public/targets/ show every published target under both names, as
 * hard links to the store (before the metadata naming them is written). */
int repo_link_target_files(Repo *r);
/* Drop plain names in public/targets/ that no published role lists any
 * more (after the timestamp was written). Hash-prefixed names are kept:
 * clients holding an older snapshot may still fetch them. */
int repo_prune_target_files(Repo *r);

/* ---- keys (keys.c) -------------------------------------------------------- */

/* Write a private key as keys/NAME (0600, whatever the umask); wipes the PEM. */
int repo_write_key(const Repo *r, const char *name, const TufPrivateKey *k);
/* Read keys/NAME. */
int repo_read_key(const Repo *r, const char *name, TufPrivateKey **ret);

/* The keyids and threshold that the working metadata gives a role. */
TufRoleKeys *repo_role_keys(Repo *r, RepoRole role);

/*
 * Key rotation in three steps around the commit:
 *   begin:  new key written as keys/ROLE.pem.new, the working metadata names
 *           it instead of the old one (root: the old root key also signs the
 *           next root), the roles to re-sign are marked;
 *   (repo_publish commits and publishes)
 *   finish: keys/ROLE.pem becomes keys/ROLE.pem.old-N, ROLE.pem.new ROLE.pem.
 * repo_open() finishes or discards a rotation interrupted in between.
 */
int repo_rotate_begin(Repo *r, RepoRole role, TufKeyType type);
int repo_rotate_finish(Repo *r, RepoRole role);
int repo_rotate_recover(Repo *r);

/* Keyid of a private key (new string). */
int repo_private_keyid(const TufPrivateKey *k, char **ret);

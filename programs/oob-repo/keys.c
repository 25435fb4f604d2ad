/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Private keys on disk and key rotation. A key's PEM exists in memory only
 * between reading or writing the file and the parse, and is wiped then.
 */

#include <fcntl.h>
#include <sys/stat.h>

#include "oob-repo.h"

#define KEY_FILE_MAX (64U * 1024U)
#define OLD_KEYS_MAX 10000

typedef struct SecretBuffer {
        char *data;
        size_t size;
} SecretBuffer;

static void secret_buffer_done(SecretBuffer *s) {
        if (s->data) {
                explicit_wipe(s->data, s->size);
                free(s->data);
        }
        *s = (SecretBuffer) {};
}
#define _cleanup_secret_ _cleanup_(secret_buffer_done)

static char *key_path(const Repo *r, const char *name) {
        _cleanup_free_ char *relative = path_join("keys", name);

        return relative ? repo_path(r, relative) : NULL;
}

int repo_write_key(const Repo *r, const char *name, const TufPrivateKey *k) {
        _cleanup_free_ char *path = key_path(r, name);
        _cleanup_secret_ SecretBuffer pem = {};
        int e;

        if (!path)
                return log_oom();
        e = tuf_private_key_to_pem(k, &pem.data, &pem.size);
        if (e < 0)
                return log_error_errno(e, "Failed to encode the key for %s: %m", path);
        /* write_file_atomic() creates the file with this mode and sets it
         * again with fchmod(), so no umask can widen it. */
        e = write_file_atomic(path, pem.data, pem.size, 0600);
        if (e < 0)
                return log_error_errno(e, "Failed to write %s: %m", path);
        return 0;
}

int repo_read_key(const Repo *r, const char *name, TufPrivateKey **ret) {
        _cleanup_free_ char *path = key_path(r, name);
        _cleanup_secret_ SecretBuffer pem = {};
        struct stat st;
        int e;

        if (!path)
                return log_oom();
        e = read_full_file(path, KEY_FILE_MAX, &pem.data, &pem.size);
        if (e < 0)
                return log_error_errno(e, "Failed to read %s: %m", path);
        if (stat(path, &st) >= 0 && (st.st_mode & 0077))
                log_warning("%s: readable by others (mode %04o): should be 0600", path,
                            (unsigned) (st.st_mode & 07777));
        e = tuf_private_key_from_pem(pem.data, pem.size, ret);
        if (e < 0)
                return log_error_errno(e, "%s: not a usable private key: %m", path);
        return 0;
}

int repo_private_keyid(const TufPrivateKey *k, char **ret) {
        TufKey pub = {};
        int e;

        e = tuf_private_key_public(k, &pub);
        if (e < 0)
                return e;
        *ret = TAKE_PTR(pub.keyid);
        tuf_key_done(&pub);
        return 0;
}

static TufDelegatedRole *find_delegation(TufTargets *t, const char *name) {
        for (size_t i = 0; i < t->n_roles; i++)
                if (streq(t->roles[i].name, name))
                        return &t->roles[i];
        return NULL;
}

TufRoleKeys *repo_role_keys(Repo *r, RepoRole role) {
        TufDelegatedRole *d;

        if (!repo_role_is_delegated(role))
                return &r->root->roles[role];
        d = find_delegation(r->targets[REPO_ROLE_TARGETS], repo_role_to_string(role));
        return d ? &d->keys : NULL;
}

static bool keyid_listed(const TufRoleKeys *rk, const char *keyid) {
        if (!rk)
                return false;
        for (char **i = rk->keyids; i && *i; i++)
                if (streq(*i, keyid))
                        return true;
        return false;
}

int repo_key(Repo *r, RepoRole role, TufPrivateKey **ret) {
        _cleanup_(tuf_private_key_freep) TufPrivateKey *k = NULL;
        _cleanup_free_ char *name = NULL, *keyid = NULL;
        int e;

        if (r->keys[role]) {
                *ret = r->keys[role];
                return 0;
        }
        if (asprintf(&name, "%s.pem", repo_role_to_string(role)) < 0)
                return log_oom();
        e = repo_read_key(r, name, &k);
        if (e < 0)
                return e;
        /* Refuse to sign with a key that clients would not accept for the
         * role: better now than a repository no client can update from. */
        e = repo_private_keyid(k, &keyid);
        if (e < 0)
                return log_error_errno(e, "keys/%s: cannot compute its keyid: %m", name);
        if (!keyid_listed(repo_role_keys(r, role), keyid))
                return log_error_errno(-EKEYREJECTED,
                                       "keys/%s (keyid %s) is not a key the metadata lists for %s",
                                       name, keyid, repo_role_to_string(role));
        *ret = r->keys[role] = TAKE_PTR(k);
        return 0;
}

/* ---- rotation ------------------------------------------------------------------ */

static bool keyid_used(TufRoleKeys *const *sets, size_t n_sets, const char *keyid) {
        for (size_t i = 0; i < n_sets; i++)
                if (keyid_listed(sets[i], keyid))
                        return true;
        return false;
}

/*
 * Make new_key the only key of role (one of sets[]), then drop from keys[]
 * every key that no set names any more. new_key is moved into keys[].
 */
static int replace_role_key(TufKey **keys, size_t *n_keys, TufRoleKeys *role, TufRoleKeys *const *sets,
                            size_t n_sets, TufKey *new_key) {
        _cleanup_strv_free_ char **keyids = NULL;
        TufKey *grown;
        size_t j = 0;
        int e;

        e = strv_extend(&keyids, new_key->keyid);
        if (e < 0)
                return e;
        grown = reallocarray(*keys, *n_keys + 1, sizeof(TufKey));
        if (!grown)
                return -ENOMEM;
        *keys = grown;

        strv_free(role->keyids);
        role->keyids = TAKE_PTR(keyids);
        role->threshold = 1;

        for (size_t i = 0; i < *n_keys; i++) {
                if (keyid_used(sets, n_sets, (*keys)[i].keyid) && !streq((*keys)[i].keyid, new_key->keyid))
                        (*keys)[j++] = (*keys)[i];
                else
                        tuf_key_done(&(*keys)[i]);
        }
        (*keys)[j++] = *new_key;
        *new_key = (TufKey) {};
        *n_keys = j;
        return 0;
}

static int rotate_in_metadata(Repo *r, RepoRole role, TufKey *pub) {
        TufRoleKeys *sets[_TUF_ROLE_TYPE_MAX + 2];
        size_t n_sets = 0;

        if (repo_role_is_delegated(role)) {
                TufTargets *t = r->targets[REPO_ROLE_TARGETS];

                /* Delegations of our own making name only our two roles. */
                if (t->n_roles > 2)
                        return -EOPNOTSUPP;
                for (size_t i = 0; i < t->n_roles; i++)
                        sets[n_sets++] = &t->roles[i].keys;
                r->roles[REPO_ROLE_TARGETS].renew = true;
                return replace_role_key(&t->delegation_keys, &t->n_delegation_keys, repo_role_keys(r, role),
                                        sets, n_sets, pub);
        }
        for (size_t i = 0; i < _TUF_ROLE_TYPE_MAX; i++)
                sets[n_sets++] = &r->root->roles[i];
        r->roles[REPO_ROLE_ROOT].renew = true;
        return replace_role_key(&r->root->keys, &r->root->n_keys, &r->root->roles[role], sets, n_sets, pub);
}

int repo_rotate_begin(Repo *r, RepoRole role, TufKeyType type) {
        _cleanup_(tuf_private_key_freep) TufPrivateKey *new_key = NULL;
        _cleanup_free_ char *new_name = NULL;
        TufPrivateKey *old_key;
        TufKey pub = {};
        int e;

        /* The current key must be the listed one: it signs the new root. */
        e = repo_key(r, role, &old_key);
        if (e < 0)
                return e;
        e = tuf_private_key_generate(type, &new_key);
        if (e < 0)
                return log_error_errno(e, "Failed to generate a %s key: %m", cli_key_type_to_string(type));
        if (asprintf(&new_name, "%s.pem.new", repo_role_to_string(role)) < 0)
                return log_oom();
        e = repo_write_key(r, new_name, new_key);
        if (e < 0)
                return e;

        e = tuf_private_key_public(new_key, &pub);
        if (e >= 0)
                e = rotate_in_metadata(r, role, &pub);
        tuf_key_done(&pub);
        if (e < 0)
                return log_error_errno(e, "Failed to replace the %s key in the metadata: %m",
                                       repo_role_to_string(role));

        if (role == REPO_ROLE_ROOT)
                r->retiring_root_key = TAKE_PTR(r->keys[role]);
        else
                r->keys[role] = tuf_private_key_free(r->keys[role]);
        r->keys[role] = TAKE_PTR(new_key);
        r->roles[role].renew = true;
        return 0;
}

int repo_rotate_finish(Repo *r, RepoRole role) {
        _cleanup_free_ char *keys = repo_path(r, "keys"), *name = NULL, *new_name = NULL;
        _cleanup_free_ char *path = NULL, *new_path = NULL;
        int n;

        if (!keys || asprintf(&name, "%s.pem", repo_role_to_string(role)) < 0 ||
            asprintf(&new_name, "%s.new", name) < 0)
                return log_oom();
        path = key_path(r, name);
        new_path = key_path(r, new_name);
        if (!path || !new_path)
                return log_oom();

        /* Keep the retired key: link() never replaces an existing name. */
        for (n = 1; n <= OLD_KEYS_MAX; n++) {
                _cleanup_free_ char *old_path = NULL;

                if (asprintf(&old_path, "%s.old-%d", path, n) < 0)
                        return log_oom();
                if (link(path, old_path) >= 0)
                        break;
                if (errno != EEXIST)
                        return log_error_errno(-errno, "Failed to keep the old key as %s: %m", old_path);
        }
        if (n > OLD_KEYS_MAX)
                return log_error_errno(-EEXIST, "%s: too many old keys kept", keys);
        if (rename(new_path, path) < 0)
                return log_error_errno(-errno, "Failed to rename %s to %s: %m", new_path, path);
        (void) fsync_directory(keys);
        return n;
}

/* A keys/ROLE.pem.new left by an interrupted rotate-key: if state committed
 * the rotation, the new key is the role's key now; otherwise it never was. */
int repo_rotate_recover(Repo *r) {
        for (RepoRole role = 0; role < _REPO_ROLE_MAX; role++) {
                _cleanup_(tuf_private_key_freep) TufPrivateKey *k = NULL;
                _cleanup_free_ char *new_name = NULL, *path = NULL, *keyid = NULL;
                int e;

                if (asprintf(&new_name, "%s.pem.new", repo_role_to_string(role)) < 0)
                        return log_oom();
                path = key_path(r, new_name);
                if (!path)
                        return log_oom();
                if (access(path, F_OK) < 0)
                        continue;
                e = repo_read_key(r, new_name, &k);
                if (e < 0)
                        return e;
                e = repo_private_keyid(k, &keyid);
                if (e < 0)
                        return log_error_errno(e, "%s: cannot compute its keyid: %m", path);
                if (keyid_listed(repo_role_keys(r, role), keyid)) {
                        log_warning("Finishing the interrupted rotation of the %s key", repo_role_to_string(role));
                        e = repo_rotate_finish(r, role);
                        if (e < 0)
                                return e;
                } else {
                        log_warning("Discarding %s: its rotation was interrupted before it was committed", path);
                        if (unlink(path) < 0)
                                return log_error_errno(-errno, "Failed to remove %s: %m", path);
                }
        }
        return 0;
}

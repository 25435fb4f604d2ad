/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Target files. Their bytes are kept in DIR/store/ by content
 * ("DIR/store/payloads/SHA256.NAME"), written durably before any metadata
 * lists them. Publication makes public/targets/ from the store with hard
 * links: "payloads/SHA256.NAME" (consistent snapshots) and "payloads/NAME"
 * (clients without them). public/ is therefore wholly derived: deleting it
 * loses nothing, the next command rebuilds it.
 */

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "oob-repo.h"

#define PRUNE_DEPTH_MAX 16

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

int repo_role_for_target(const Repo *r, const char *target_path, RepoRole *ret) {
        const TufTargets *t = r->targets[REPO_ROLE_TARGETS];

        for (size_t i = 0; i < t->n_roles; i++) {
                RepoRole role;

                if (!tuf_delegated_role_matches(&t->roles[i], target_path))
                        continue;
                role = repo_role_from_string(t->roles[i].name);
                if (!repo_role_is_delegated(role))
                        return -ENOENT;
                *ret = role;
                return 0;
        }
        return -ENOENT;
}

const TufTargetFile *repo_find_target(const Repo *r, const char *target_path, RepoRole *ret_role) {
        for (RepoRole role = REPO_ROLE_TARGETS; role < _REPO_ROLE_MAX; role++) {
                const TufTargetFile *f = tuf_targets_find(r->targets[role], target_path);

                if (f) {
                        if (ret_role)
                                *ret_role = role;
                        return f;
                }
        }
        return NULL;
}

int repo_target_file_paths(const Repo *r, const char *target_path, const TufHashes *h,
                           RepoTargetPaths *ret) {
        _cleanup_free_ char *hex = tuf_hashes_first_hex(h), *relative = NULL, *hashed_relative = NULL;
        const char *slash = strrchr(target_path, '/');
        size_t dir_len = slash ? (size_t) (slash - target_path) + 1 : 0;
        RepoTargetPaths p = {};

        if (!hex)
                return -ENOMEM;
        if (asprintf(&hashed_relative, "%.*s%s.%s", (int) dir_len, target_path, hex, target_path + dir_len) < 0)
                return -ENOMEM;
        relative = path_join("store", hashed_relative);
        p.stored = relative ? repo_path(r, relative) : NULL;
        free(TAKE_PTR(relative));
        relative = path_join("public/targets", hashed_relative);
        p.hashed = relative ? repo_path(r, relative) : NULL;
        free(TAKE_PTR(relative));
        relative = path_join("public/targets", target_path);
        p.plain = relative ? repo_path(r, relative) : NULL;
        if (!p.stored || !p.hashed || !p.plain) {
                repo_target_paths_done(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

void repo_target_paths_done(RepoTargetPaths *p) {
        free(p->stored);
        free(p->hashed);
        free(p->plain);
        *p = (RepoTargetPaths) {};
}

static int make_parent(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        int k;

        if (!dir)
                return log_oom();
        *strrchr(dir, '/') = 0;
        k = mkdir_p(dir, 0755);
        if (k < 0)
                return log_error_errno(k, "Failed to create %s: %m", dir);
        return 0;
}

static int store_bytes(const char *path, const void *data, size_t size) {
        int k = make_parent(path);

        if (k < 0)
                return k;
        k = write_file_atomic(path, data, size, 0644);
        if (k < 0)
                return log_error_errno(k, "Failed to write %s: %m", path);
        return 0;
}

int repo_add_target(Repo *r, const char *target_path, const void *data, size_t size) {
        _cleanup_(repo_target_paths_done) RepoTargetPaths paths = {};
        TufTargetFile *f = NULL, *grown;
        TufTargets *t;
        TufHashes h;
        RepoRole role;
        int k;

        if (!tuf_target_path_is_valid(target_path))
                return log_error_errno(-EINVAL, "%s: not a valid target path", target_path);
        k = repo_role_for_target(r, target_path, &role);
        if (k < 0)
                return log_error_errno(k, "%s: no role of this repository is trusted for that path",
                                       target_path);
        k = tuf_hashes_compute(data, size, &h);
        if (k < 0)
                return log_error_errno(k, "Failed to hash %s: %m", target_path);
        /* Listed with sha256 only: clients that name files by "the first
         * hash" (as tuf-js and go-tuf do) then all ask for the one name. */
        h.has_sha512 = false;

        k = repo_target_file_paths(r, target_path, &h, &paths);
        if (k < 0)
                return log_oom();
        k = store_bytes(paths.stored, data, size);
        if (k < 0)
                return k;

        t = r->targets[role];
        for (size_t i = 0; i < t->n_targets; i++)
                if (streq(t->targets[i].path, target_path))
                        f = &t->targets[i];
        if (f && f->length == size && f->hashes.has_sha256 && !f->hashes.has_sha512 &&
            memcmp(f->hashes.sha256, h.sha256, sizeof(h.sha256)) == 0)
                return 0;

        if (!f) {
                grown = reallocarray(t->targets, t->n_targets + 1, sizeof(TufTargetFile));
                if (!grown)
                        return log_oom();
                t->targets = grown;
                f = &t->targets[t->n_targets];
                *f = (TufTargetFile) { .path = strdup(target_path) };
                if (!f->path)
                        return log_oom();
                t->n_targets++;
        }
        f->length = size;
        f->hashes = h;
        r->roles[role].dirty = true;
        return 1;
}

int repo_remove_target(Repo *r, const char *target_path, RepoRole *ret_role) {
        for (RepoRole role = REPO_ROLE_TARGETS; role < _REPO_ROLE_MAX; role++) {
                TufTargets *t = r->targets[role];

                for (size_t i = 0; i < t->n_targets; i++) {
                        if (!streq(t->targets[i].path, target_path))
                                continue;
                        free(t->targets[i].path);
                        free(t->targets[i].custom_json);
                        memmove(&t->targets[i], &t->targets[i + 1],
                                (t->n_targets - i - 1) * sizeof(TufTargetFile));
                        t->n_targets--;
                        r->roles[role].dirty = true;
                        if (ret_role)
                                *ret_role = role;
                        return 0;
                }
        }
        return log_error_errno(-ENOENT, "%s: no such target in the repository", target_path);
}

int repo_read_target(const Repo *r, const TufTargetFile *f, char **ret, size_t *ret_size) {
        _cleanup_(repo_target_paths_done) RepoTargetPaths paths = {};
        _cleanup_free_ char *data = NULL;
        size_t size;
        TufHashes h;
        int k;

        k = repo_target_file_paths(r, f->path, &f->hashes, &paths);
        if (k < 0)
                return log_oom();
        k = read_full_file(paths.stored, f->length, &data, &size);
        if (k < 0)
                return log_error_errno(k, "Failed to read the stored %s (%s): %m", f->path, paths.stored);
        k = tuf_hashes_compute(data, size, &h);
        if (k < 0)
                return log_error_errno(k, "Failed to hash %s: %m", paths.stored);
        if (size != f->length || !f->hashes.has_sha256 ||
            !memeq_consttime(h.sha256, f->hashes.sha256, sizeof(h.sha256)))
                return log_error_errno(-EBADMSG, "%s: stored bytes do not match the metadata", paths.stored);
        *ret = TAKE_PTR(data);
        *ret_size = size;
        return 0;
}

/* The targets roles as last published (not the working copies). */
typedef struct Published {
        TufTargets *roles[_REPO_ROLE_MAX];
} Published;

static void published_done(Published *p) {
        for (size_t i = 0; i < _REPO_ROLE_MAX; i++)
                p->roles[i] = tuf_targets_free(p->roles[i]);
}

static int published_load(Repo *r, Published *ret) {
        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++) {
                int k = tuf_targets_parse_unverified(r->roles[i].document, r->roles[i].document_size,
                                                     &ret->roles[i]);
                if (k < 0)
                        return log_error_errno(k, "Failed to read the published %s: %m",
                                               repo_role_to_string(i));
        }
        return 0;
}

static bool published_lists(const Published *p, const char *target_path) {
        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++)
                if (p->roles[i] && tuf_targets_find(p->roles[i], target_path))
                        return true;
        return false;
}

static ssize_t read_chunk(int fd, char *buf, size_t size) {
        size_t done = 0;

        while (done < size) {
                ssize_t n = read(fd, buf + done, size - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

/* 1 when both files hold the same bytes, 0 otherwise (or unreadable). */
static int files_equal(const char *a, const char *b) {
        _cleanup_close_ int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
        static char ba[65536], bb[65536];

        if (fa < 0 || fb < 0)
                return 0;
        for (;;) {
                ssize_t na = read_chunk(fa, ba, sizeof(ba)), nb = read_chunk(fb, bb, sizeof(bb));

                if (na < 0 || na != nb || memcmp(ba, bb, (size_t) na) != 0)
                        return 0;
                if (na == 0)
                        return 1;
        }
}

/* A copy where a hard link cannot be made (public/ on another file system). */
static int copy_file(const char *from, const char *to) {
        _cleanup_close_ int fd = open(from, O_RDONLY | O_CLOEXEC);
        struct stat st;
        void *p = NULL;
        int k;

        if (fd < 0 || fstat(fd, &st) < 0)
                return log_error_errno(-errno, "Failed to open %s: %m", from);
        if (st.st_size > 0) {
                p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
                if (p == MAP_FAILED)
                        return log_error_errno(-errno, "Failed to map %s: %m", from);
        }
        k = write_file_atomic(to, p ?: "", (size_t) st.st_size, 0644);
        if (p)
                (void) munmap(p, (size_t) st.st_size);
        if (k < 0)
                return log_error_errno(k, "Failed to copy %s to %s: %m", from, to);
        return 0;
}

/* Make name show the stored bytes: a hard link put in place atomically
 * (link to a temp name, rename), or a copy across file systems. */
static int place_file(const char *stored, const char *name) {
        _cleanup_free_ char *tmp = NULL, *dir = NULL;
        struct stat a, b;
        int k;

        if (stat(stored, &a) < 0)
                return log_error_errno(-errno, "%s: stored target file missing: %m", stored);
        if (stat(name, &b) >= 0 &&
            ((a.st_dev == b.st_dev && a.st_ino == b.st_ino) ||
             (a.st_size == b.st_size && files_equal(stored, name) > 0)))
                return 0;
        k = make_parent(name);
        if (k < 0)
                return k;
        dir = strdup(name);
        if (!dir)
                return log_oom();
        *strrchr(dir, '/') = 0;
        if (asprintf(&tmp, "%s/.#%s.link", dir, strrchr(name, '/') + 1) < 0)
                return log_oom();
        (void) unlink(tmp);
        if (link(stored, tmp) < 0) {
                if (errno == EXDEV)
                        return copy_file(stored, name);
                return log_error_errno(-errno, "Failed to link %s to %s: %m", tmp, stored);
        }
        if (rename(tmp, name) < 0) {
                k = -errno;
                (void) unlink(tmp);
                return log_error_errno(k, "Failed to rename %s to %s: %m", tmp, name);
        }
        (void) fsync_directory(dir);
        return 0;
}

int repo_link_target_files(Repo *r) {
        _cleanup_(published_done) Published p = {};
        int k;

        k = published_load(r, &p);
        if (k < 0)
                return k;
        for (RepoRole i = REPO_ROLE_TARGETS; i < _REPO_ROLE_MAX; i++)
                for (size_t j = 0; j < p.roles[i]->n_targets; j++) {
                        const TufTargetFile *f = &p.roles[i]->targets[j];
                        _cleanup_(repo_target_paths_done) RepoTargetPaths paths = {};

                        if (!f->hashes.has_sha256)
                                continue;  /* not one of ours */
                        k = repo_target_file_paths(r, f->path, &f->hashes, &paths);
                        if (k < 0)
                                return log_oom();
                        k = place_file(paths.stored, paths.hashed);
                        if (k >= 0)
                                k = place_file(paths.stored, paths.plain);
                        if (k < 0)
                                return k;
                }
        return 0;
}

static bool is_hash_prefixed(const char *name) {
        size_t n = strspn(name, "0123456789abcdef");

        return (n == 64 || n == 128) && name[n] == '.';
}

static int prune_folder(const Published *p, const char *path, const char *target_prefix, unsigned depth) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int k;

        if (depth > PRUNE_DEPTH_MAX)
                return 0;
        d = opendir(path);
        if (!d)
                return errno == ENOENT ? 0 : log_error_errno(-errno, "Failed to open %s: %m", path);
        while ((de = readdir(d))) {
                _cleanup_free_ char *child = NULL, *target = NULL;
                struct stat st;

                if (de->d_name[0] == '.')  /* ".", "..", temp files */
                        continue;
                child = path_join(path, de->d_name);
                target = target_prefix ? path_join(target_prefix, de->d_name) : strdup(de->d_name);
                if (!child || !target)
                        return log_oom();
                if (lstat(child, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        k = prune_folder(p, child, target, depth + 1);
                        if (k < 0)
                                return k;
                } else if (S_ISREG(st.st_mode) && !is_hash_prefixed(de->d_name) &&
                           !published_lists(p, target)) {
                        if (unlink(child) < 0 && errno != ENOENT)
                                return log_error_errno(-errno, "Failed to remove %s: %m", child);
                        log_debug("Removed %s: no longer a published target", child);
                }
        }
        return 0;
}

int repo_prune_target_files(Repo *r) {
        _cleanup_(published_done) Published p = {};
        _cleanup_free_ char *path = repo_path(r, "public/targets");
        int k;

        if (!path)
                return log_oom();
        k = published_load(r, &p);
        if (k < 0)
                return k;
        return prune_folder(&p, path, NULL, 0);
}

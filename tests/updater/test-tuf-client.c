/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TUF client workflow against scenario repositories (tests/updater/
 * tuf-repo.h) served by nginx over TLS: the good path, then each attack of
 * the specification's threat model, each test failing if its defence is
 * taken out of updater/tuf-client.c or updater/fetch.c.
 */

#include <dirent.h>
#include <time.h>

#include "updater.h"
#include "updater/tuf-repo.h"

static Nginx nginx;
static char work[PATH_MAX]; /* per test: md/ and dl/ */
static char md[PATH_MAX + 8], dl[PATH_MAX + 8];
static char name[64]; /* the repository's folder on the server */
static char metadata_url[512], targets_url[512];
static Repo repo;

static const char hello[] = "hello, world\n";
static const char payload[] = "payload bytes of a delegated target\n";

static void nginx_setup(void) {
        nginx_start(&nginx);
}

static void nginx_teardown(void) {
        nginx_stop(&nginx);
}

static void setup(void) {
        strcpy(work, "/tmp/oob-test-tuf-client.XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(work));
        snprintf(md, sizeof(md), "%s/md", work);
        snprintf(dl, sizeof(dl), "%s/dl", work);
        ck_assert_int_eq(mkdir_p(dl, 0755), 0);
        snprintf(name, sizeof(name), "%s", strrchr(work, '/') + 1);
        snprintf(metadata_url, sizeof(metadata_url), "%s/%s/metadata", nginx.https, name);
        snprintf(targets_url, sizeof(targets_url), "%s/%s/targets", nginx.https, name);
}

static void teardown(void) {
        char dir[PATH_MAX * 2];

        repo_done(&repo);
        fixture_rm_rf(work);
        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        fixture_rm_rf(dir);
}

/* ---- helpers ------------------------------------------------------------------- */

/* A repository with hello.txt in targets and payloads/a.tar in "releases". */
static void repo_setup(bool consistent, bool meta_hashes) {
        char dir[PATH_MAX * 2];
        size_t releases;

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, consistent);
        repo.meta_hashes = meta_hashes;
        repo_add_target(&repo, 0, "hello.txt", hello, strlen(hello));
        releases = repo_add_role(&repo, 0, "releases", "payloads/*", true);
        repo_add_target(&repo, releases, "payloads/a.tar", payload, strlen(payload));
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);
}

static void init_root(void) {
        _cleanup_free_ char *root = path_join(repo.metadata, "1.root.json");

        ck_assert_int_eq(tuf_client_init_root(md, root), 0);
}

static TufClient *client_new_with(const TufClientOptions *extra) {
        TufClientOptions o = extra ? *extra : (TufClientOptions){};
        TufClient *c = NULL;

        o.metadata_dir = md;
        if (!o.metadata_url)
                o.metadata_url = metadata_url;
        if (!o.target_base_url)
                o.target_base_url = targets_url;
        o.fetch.ca_file = nginx.ca;
        ck_assert_int_eq(tuf_client_new(&o, &c), 0);
        return c;
}

static TufClient *client_new(void) {
        return client_new_with(NULL);
}

/* A fresh client refreshing once: the error, with the context checked. */
static int refresh_once(const char *expected_context) {
        _cleanup_(tuf_client_freep) TufClient *c = client_new();
        int r = tuf_client_refresh(c);

        if (expected_context) {
                const char *ctx = tuf_client_error_context(c);
                ck_assert_msg(ctx && strstr(ctx, expected_context), "context '%s' does not name '%s'",
                              ctx ?: "(null)", expected_context);
        }
        return r;
}

static size_t dir_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static bool file_exists(const char *dir, const char *file) {
        _cleanup_free_ char *p = path_join(dir, file);

        return access(p, F_OK) == 0;
}

static char *file_read(const char *dir, const char *file) {
        _cleanup_free_ char *p = path_join(dir, file);
        char *data = NULL;
        size_t size;

        ck_assert_int_eq(read_full_file(p, 64 * 1024 * 1024, &data, &size), 0);
        return data;
}

/* nginx writes a request's log line after sending the response: a client
 * may be faster. Make one more request and wait for its line, which comes
 * after those of every earlier request (one worker). */
static void nginx_sync(void) {
        static unsigned n = 0;
        _cleanup_(fetcher_freep) Fetcher *f = NULL;
        char path[128], u[700];

        snprintf(path, sizeof(path), "/%s/.sync-%u", name, n++);
        snprintf(u, sizeof(u), "%s%s", nginx.https, path);
        ck_assert_int_eq(fetcher_new(&(FetchOptions){.ca_file = nginx.ca}, &f), 0);
        ck_assert_int_eq(fetcher_get_stream(f, u, 4096, NULL, NULL, NULL), -ENOENT);
        for (int i = 0; i < 500 && nginx_count(&nginx, path, 404) == 0; i++)
                usleep(10000);
        ck_assert_uint_eq(nginx_count(&nginx, path, 404), 1);
}

/* How often PATH below the repository was served with status. */
static unsigned served(const char *path, int status) {
        char p[1024];

        nginx_sync();
        snprintf(p, sizeof(p), "/%s/%s", name, path);
        return nginx_count(&nginx, p, status);
}

static char *repeat(char ch, size_t n) {
        char *s = malloc(n + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, ch, n);
        s[n] = 0;
        return s;
}

/* ---- the good path ------------------------------------------------------------- */

/* _i: 0 plain names, 1 consistent snapshots */
START_TEST(test_refresh_and_download) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *path = NULL, *data = NULL, *mem = NULL;
        const TufTargetFile *t;
        bool cached = true;
        size_t size;

        repo_setup(_i, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_ptr_null(tuf_client_error_context(c));
        ck_assert_ptr_nonnull(tuf_client_trusted(c));
        ck_assert(file_exists(md, "root.json"));
        ck_assert(file_exists(md, "timestamp.json"));
        ck_assert(file_exists(md, "snapshot.json"));
        ck_assert(file_exists(md, "targets.json"));
        ck_assert(!file_exists(md, "releases.json")); /* loaded only when a search needs it */
        ck_assert_uint_eq(served(_i ? "metadata/1.snapshot.json" : "metadata/snapshot.json", 200), 1);
        ck_assert_uint_eq(served(_i ? "metadata/1.targets.json" : "metadata/targets.json", 200), 1);
        ck_assert_uint_eq(served("metadata/2.root.json", 404), 1);

        /* top-level target */
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), 0);
        ck_assert_uint_eq(t->length, strlen(hello));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, &path, &cached), 0);
        ck_assert(!cached);
        data = file_read(dl, "hello.txt");
        ck_assert_str_eq(data, hello);
        ck_assert_str_eq(strrchr(path, '/') + 1, "hello.txt");
        ck_assert_int_eq(tuf_client_fetch_target(c, t, &mem, &size), 0);
        ck_assert_uint_eq(size, strlen(hello));
        ck_assert_str_eq(mem, hello);

        /* delegated target, through "releases" */
        free(data);
        free(path);
        path = NULL;
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/a.tar", &t), 0);
        ck_assert(file_exists(md, "releases.json"));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, &path, &cached), 0);
        data = file_read(dl, "payloads%2Fa.tar");
        ck_assert_str_eq(data, payload);
        if (_i) {
                _cleanup_free_ char *hex = tuf_hashes_first_hex(&t->hashes), *served_name = NULL;

                ck_assert_int_ge(asprintf(&served_name, "targets/payloads/%s.a.tar", hex), 0);
                ck_assert_uint_eq(served(served_name, 200), 1);
                ck_assert_uint_eq(served("targets/payloads/a.tar", 200), 0);
        } else
                ck_assert_uint_eq(served("targets/payloads/a.tar", 200), 1);
        ck_assert_uint_eq(dir_entries(dl), 2);

        /* not listed anywhere */
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/none.tar", &t), -ENOENT);
        ck_assert_int_eq(tuf_client_find_target(c, "none.txt", &t), -ENOENT);
}
END_TEST

START_TEST(test_init_root) {
        _cleanup_free_ char *good = NULL, *bad = NULL, *data = NULL, *copy = NULL, *missing = NULL,
                            *changed = NULL;
        static const char from[] = "\"consistent_snapshot\":false";
        size_t size;
        char *p;

        repo_setup(false, true);
        good = path_join(repo.metadata, "1.root.json");
        bad = path_join(work, "bad-root.json");
        missing = path_join(work, "no-such-root.json");

        /* a root whose signed part changed: refused, nothing installed */
        data = repo_read(&repo, "1.root.json", &size);
        p = strstr(data, from);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_ge(asprintf(&changed, "%.*s\"consistent_snapshot\":true%s", (int) (p - data), data,
                                  p + STRLEN(from)),
                         0);
        fixture_write_path(bad, changed, strlen(changed));
        ck_assert_int_eq(tuf_client_init_root(md, bad), -EBADMSG);
        ck_assert_int_eq(access(md, F_OK), -1);
        ck_assert_int_eq(tuf_client_init_root(md, missing), -ENOENT);

        ck_assert_int_eq(tuf_client_init_root(md, good), 0);
        free(data);
        data = file_read(repo.metadata, "1.root.json");
        copy = file_read(md, "root.json");
        ck_assert_str_eq(copy, data);
}
END_TEST

/* ---- endless data and slow retrieval --------------------------------------------- */

START_TEST(test_endless_timestamp) {
        _cleanup_free_ char *big = repeat(' ', 100 * 1024);

        repo_setup(false, true);
        init_root();
        repo_put(&repo, "timestamp.json", big, strlen(big));
        ck_assert_int_eq(refresh_once("timestamp.json: download"), -EFBIG);
        ck_assert(!file_exists(md, "timestamp.json"));
}
END_TEST

START_TEST(test_endless_snapshot) {
        _cleanup_free_ char *snapshot = NULL, *big = NULL;
        size_t size;

        /* snapshot.json longer than the length timestamp gives for it */
        repo_setup(false, true);
        init_root();
        snapshot = repo_read(&repo, "snapshot.json", &size);
        big = repeat(' ', size + 1000);
        memcpy(big, snapshot, size);
        repo_put(&repo, "snapshot.json", big, strlen(big));
        ck_assert_int_eq(refresh_once("snapshot.json: download"), -EFBIG);
        ck_assert(!file_exists(md, "snapshot.json"));
}
END_TEST

START_TEST(test_endless_target) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *longer = NULL;
        const TufTargetFile *t;

        repo_setup(_i, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), 0);

        ck_assert_int_ge(asprintf(&longer, "%s and then some more bytes", hello), 0);
        repo_serve_target_bytes(&repo, t, longer, strlen(longer));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, NULL), -EFBIG);
        ck_assert_uint_eq(dir_entries(dl), 0);
}
END_TEST

/* A mirror that streams without end and without Content-Length: the
 * signed length stops it at once. */
START_TEST(test_endless_target_stream) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        const TufTargetFile *t;
        struct timespec a, b;
        MiniServer m = {};
        char base[64];
        int r;

        repo_setup(false, true);
        init_root();
        mini_server_start(&m, "HTTP/1.0 200 OK\r\n\r\n", UINT64_MAX);
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", m.port);
        c = client_new_with(&(TufClientOptions){.target_base_url = base});
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), 0);

        clock_gettime(CLOCK_MONOTONIC, &a);
        r = tuf_client_download_target(c, t, dl, NULL, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        mini_server_stop(&m);
        ck_assert_int_eq(r, -EFBIG);
        ck_assert_int_lt(b.tv_sec - a.tv_sec, 5);
        ck_assert_uint_eq(dir_entries(dl), 0);
}
END_TEST

START_TEST(test_slow_retrieval) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        char slow[600];
        struct timespec a, b;

        repo_setup(false, true);
        init_root();
        snprintf(slow, sizeof(slow), "%s/slow/%s/metadata", nginx.https, name);
        c = client_new_with(&(TufClientOptions){
                .metadata_url = slow,
                .fetch = {.low_speed_sec = 2},
        });
        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(tuf_client_refresh(c), -ETIMEDOUT);
        clock_gettime(CLOCK_MONOTONIC, &b);
        ck_assert_int_lt(b.tv_sec - a.tv_sec, 10);
        /* 2.root.json (its 404 page is slow too) or timestamp.json */
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(c), ".json: download from"));
}
END_TEST

/* ---- arbitrary installation and substitution ------------------------------------ */

START_TEST(test_arbitrary_installation) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *evil = strdup(hello);
        const TufTargetFile *t;
        size_t size;

        repo_setup(_i, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), 0);

        evil[0] = 'J'; /* same length, other bytes */
        repo_serve_target_bytes(&repo, t, evil, strlen(evil));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, NULL), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(c), "verifying"));
        ck_assert_uint_eq(dir_entries(dl), 0);

        free(evil);
        evil = NULL;
        ck_assert_int_eq(tuf_client_fetch_target(c, t, &evil, &size), -EBADMSG);
        ck_assert_ptr_null(evil);
}
END_TEST

START_TEST(test_target_substitution) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *evil = strdup(hello), *data = NULL, *local = NULL;
        const TufTargetFile *t;
        bool cached = false;

        repo_setup(false, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), 0);
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, &cached), 0);
        ck_assert(!cached);
        ck_assert_uint_eq(served("targets/hello.txt", 200), 1);

        /* The server now serves other bytes: the verified local copy stays,
         * and the server is not even asked. */
        evil[0] = 'J';
        repo_serve_target_bytes(&repo, t, evil, strlen(evil));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, &cached), 0);
        ck_assert(cached);
        ck_assert_uint_eq(served("targets/hello.txt", 200), 1);
        data = file_read(dl, "hello.txt");
        ck_assert_str_eq(data, hello);

        /* A local copy tampered with is downloaded again and replaced. */
        repo_serve_target_bytes(&repo, t, hello, strlen(hello));
        local = path_join(dl, "hello.txt");
        fixture_write_path(local, evil, strlen(evil));
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, &cached), 0);
        ck_assert(!cached);
        free(data);
        data = file_read(dl, "hello.txt");
        ck_assert_str_eq(data, hello);
        ck_assert_uint_eq(served("targets/hello.txt", 200), 2);
        ck_assert_uint_eq(dir_entries(dl), 1);

        /* Tampered locally while the server is bad too: refused, and the
         * bad server bytes never replace anything. */
        repo_serve_target_bytes(&repo, t, evil, strlen(evil));
        fixture_write_path(local, "short", 5);
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, &cached), -EBADMSG);
        free(data);
        data = file_read(dl, "hello.txt");
        ck_assert_str_eq(data, "short");
        ck_assert_uint_eq(dir_entries(dl), 1);
}
END_TEST

/* ---- fast-forward recovery, rollback, freeze, mix-and-match ---------------------- */

/* _i: 0 the timestamp key is replaced; 1 a key is added next to the old
 * one. In case 0 the cached timestamp no longer verifies anyway; in case 1
 * it still does, and only dropping it on rotation (5.3.11) recovers. */
START_TEST(test_fast_forward_timestamp) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;

        repo_setup(false, true);
        init_root();
        ck_assert_int_eq(refresh_once(NULL), 0);

        /* An attacker with the timestamp key fast-forwards the version. */
        repo.timestamp_version = 1000;
        repo_write_timestamp(&repo);
        ck_assert_int_eq(refresh_once(NULL), 0);

        /* The repository recovers: new timestamp key in root v2, and a
         * timestamp at an honest (lower) version. */
        if (_i == 0) {
                repo_key_done(&repo.timestamp);
                repo_key_new(&repo.timestamp);
        } else {
                repo.timestamp_also = repo.timestamp;
                repo_key_new(&repo.timestamp);
        }
        repo.root_version = 2;
        repo_write_root(&repo, NULL, 0);
        repo.timestamp_version = 2;
        repo_write_timestamp(&repo);

        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_uint_eq(tuf_trusted_set_timestamp(tuf_client_trusted(c))->version, 2);
        ck_assert_uint_eq(tuf_trusted_set_root(tuf_client_trusted(c))->version, 2);
}
END_TEST

START_TEST(test_fast_forward_snapshot) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;

        repo_setup(false, true);
        init_root();
        ck_assert_int_eq(refresh_once(NULL), 0);

        /* Snapshot (and timestamp) keys abused to fast-forward snapshot. */
        repo.snapshot_version = 1000;
        repo.timestamp_version++;
        repo_publish(&repo);
        ck_assert_int_eq(refresh_once(NULL), 0);

        /* Recovery rotates the snapshot key only; the timestamp now names a
         * lower snapshot version than the cached timestamp did, so the cached
         * timestamp must go as well. */
        repo_key_done(&repo.snapshot);
        repo_key_new(&repo.snapshot);
        repo.root_version = 2;
        repo_write_root(&repo, NULL, 0);
        repo.snapshot_version = 2;
        repo.timestamp_version++;
        repo_publish(&repo);

        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_uint_eq(tuf_trusted_set_snapshot(tuf_client_trusted(c))->version, 2);
}
END_TEST

START_TEST(test_rollback_timestamp) {
        _cleanup_free_ char *old = NULL;
        size_t size;

        repo_setup(false, true);
        init_root();
        old = repo_read(&repo, "timestamp.json", &size);
        repo_bump(&repo);
        repo_publish(&repo);
        ck_assert_int_eq(refresh_once(NULL), 0);

        /* the server (or a man in the middle) replays the old timestamp */
        repo_put(&repo, "timestamp.json", old, size);
        ck_assert_int_eq(refresh_once("timestamp.json"), -ESTALE);
}
END_TEST

START_TEST(test_rollback_snapshot_targets_version) {
        _cleanup_free_ char *old_targets = NULL;
        size_t size;

        /* Version 3 of targets trusted; then a newer snapshot (honest
         * signature, e.g. a compromised snapshot key) names targets v2. */
        repo_setup(false, false);
        init_root();
        repo.roles[0].version = 2;
        repo_publish(&repo);
        old_targets = repo_read(&repo, "targets.json", &size);
        repo.roles[0].version = 3;
        repo.snapshot_version++;
        repo.timestamp_version++;
        repo_publish(&repo);
        ck_assert_int_eq(refresh_once(NULL), 0);

        repo_put(&repo, "targets.json", old_targets, size);
        repo.roles[0].version = 2;
        repo.snapshot_version++;
        repo.timestamp_version++;
        repo_write_snapshot(&repo);
        repo_write_timestamp(&repo);
        ck_assert_int_eq(refresh_once("snapshot.json"), -ESTALE);
}
END_TEST

START_TEST(test_freeze_expired_timestamp) {
        repo_setup(false, true);
        init_root();
        repo.timestamp_version++;
        repo.timestamp_expires = (int64_t) time(NULL) - 60;
        repo_write_timestamp(&repo);
        ck_assert_int_eq(refresh_once("timestamp.json"), -EKEYEXPIRED);
        ck_assert(!file_exists(md, "timestamp.json"));
}
END_TEST

START_TEST(test_freeze_same_timestamp_later) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;

        /* The server keeps serving the timestamp we already have; two days
         * later (reference time) it has expired: that is a freeze too. */
        repo_setup(false, true);
        init_root();
        ck_assert_int_eq(refresh_once(NULL), 0);
        c = client_new_with(&(TufClientOptions){.reference_time = (int64_t) time(NULL) + 2 * REPO_DAY});
        ck_assert_int_eq(tuf_client_refresh(c), -EKEYEXPIRED);
        ck_assert_str_eq(tuf_client_error_context(c), "timestamp.json");
}
END_TEST

START_TEST(test_freeze_expired_root) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;

        repo_setup(false, true);
        init_root();
        c = client_new_with(&(TufClientOptions){.reference_time = (int64_t) time(NULL) + 400 * REPO_DAY});
        ck_assert_int_eq(tuf_client_refresh(c), -EKEYEXPIRED);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(c), "root.json"));
        ck_assert(!file_exists(md, "timestamp.json"));
}
END_TEST

/* _i: 0 snapshot lists hashes (caught by hash), 1 versions only (by version) */
START_TEST(test_mix_and_match) {
        _cleanup_free_ char *old_targets = NULL;
        size_t size;

        repo_setup(false, _i == 0);
        init_root();
        old_targets = repo_read(&repo, "targets.json", &size);
        repo_bump(&repo);
        repo_publish(&repo);

        /* targets.json of the previous snapshot, correctly signed */
        repo_put(&repo, "targets.json", old_targets, size);
        ck_assert_int_eq(refresh_once("targets.json"), _i == 0 ? -EBADMSG : -ESTALE);
        ck_assert(!file_exists(md, "targets.json"));
}
END_TEST

/* ---- root rotation ---------------------------------------------------------------- */

static void rotate_root_key(void) {
        RepoKey old = repo.root;

        repo_key_new(&repo.root);
        repo.root_version++;
        repo_write_root(&repo, &old.priv, 1); /* signed by the old and the new key */
        repo_key_done(&old);
}

START_TEST(test_root_rotation_chain_and_cap) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *d = NULL;
        _cleanup_free_ char *v3 = NULL, *local = NULL;

        repo_setup(false, true);
        init_root();
        for (int i = 0; i < 4; i++)
                rotate_root_key(); /* versions 2..5 */

        c = client_new_with(&(TufClientOptions){.max_root_rotations = 2});
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_uint_eq(tuf_trusted_set_root(tuf_client_trusted(c))->version, 3);
        ck_assert_uint_eq(served("metadata/3.root.json", 200), 1);
        ck_assert_uint_eq(served("metadata/4.root.json", 200), 0);
        /* each trusted root persisted */
        v3 = file_read(repo.metadata, "3.root.json");
        local = file_read(md, "root.json");
        ck_assert_str_eq(local, v3);

        d = client_new();
        ck_assert_int_eq(tuf_client_refresh(d), 0);
        ck_assert_uint_eq(tuf_trusted_set_root(tuf_client_trusted(d))->version, 5);
        ck_assert_uint_eq(served("metadata/6.root.json", 404), 1);
}
END_TEST

START_TEST(test_root_rotation_bad_signature) {
        _cleanup_free_ char *v1 = NULL, *local = NULL;

        repo_setup(false, true);
        init_root();
        /* 2.root.json signed by a new key only: the old root did not approve */
        repo_key_done(&repo.root);
        repo_key_new(&repo.root);
        repo.root_version = 2;
        repo_write_root(&repo, NULL, 0);

        ck_assert_int_eq(refresh_once("2.root.json"), -EBADMSG);
        v1 = file_read(repo.metadata, "1.root.json");
        local = file_read(md, "root.json");
        ck_assert_str_eq(local, v1);
}
END_TEST

/* ---- delegations ------------------------------------------------------------------- */

START_TEST(test_evil_role_name) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *doc = NULL, *outside = NULL;
        const TufTargetFile *t;
        char dir[PATH_MAX * 2];
        size_t evil, size;

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, false);
        evil = repo_add_role(&repo, 0, "../evil", "evil/*", false);
        repo_add_target(&repo, evil, "evil/x", payload, strlen(payload));
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);
        /* nginx decodes "metadata/..%2Fevil.json" to "evil.json" next to
         * metadata/: serve the role there too */
        doc = repo_read(&repo, "..%2Fevil.json", &size);
        fixture_write(repo.dir, "evil.json", doc, size);

        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "evil/x", &t), 0);
        ck_assert(file_exists(md, "..%2Fevil.json"));
        ck_assert(!file_exists(work, "evil.json"));
        ck_assert_uint_eq(dir_entries(md), 5); /* root timestamp snapshot targets ..%2Fevil */
        outside = path_join(work, "evil.json");
        ck_assert_int_eq(access(outside, F_OK), -1);
}
END_TEST

START_TEST(test_target_path_traversal) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        const TufTargetFile *t;
        TufTargetFile forged = {.path = (char *) "../escape", .length = 5};

        repo_setup(false, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "../hello.txt", &t), -EINVAL);
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/../hello.txt", &t), -EINVAL);
        ck_assert_int_eq(tuf_client_find_target(c, "/hello.txt", &t), -EINVAL);
        ck_assert_int_eq(tuf_client_download_target(c, &forged, dl, NULL, NULL), -EINVAL);
        ck_assert(!file_exists(work, "escape"));
        ck_assert_uint_eq(dir_entries(dl), 0);
}
END_TEST

/* Two roles claim "x/ANY": the first listed (and its subtree) wins; BFS would
 * pick b's copy of x/deep, pre-order DFS a1's. */
START_TEST(test_delegation_search_order) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *data = NULL;
        const TufTargetFile *t;
        TufHashes h;
        char dir[PATH_MAX * 2];
        size_t a, a1, b;

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, true);
        a = repo_add_role(&repo, 0, "a", "x/*", false);
        b = repo_add_role(&repo, 0, "b", "x/*", false);
        a1 = repo_add_role(&repo, a, "a1", "x/*", false);
        repo_add_target(&repo, b, "x/file", "from b", 6);
        repo_add_target(&repo, a, "x/file", "from a", 6);
        repo_add_target(&repo, b, "x/deep", "deep b", 6);
        repo_add_target(&repo, a1, "x/deep", "deep a1", 7);
        /* the last served bytes are a's and a1's; b's are still distinguishable by hash */
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);

        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "x/file", &t), 0);
        ck_assert_int_eq(tuf_hashes_compute("from a", 6, &h), 0);
        ck_assert(memcmp(t->hashes.sha256, h.sha256, 32) == 0);
        ck_assert(!file_exists(md, "b.json")); /* never needed */

        ck_assert_int_eq(tuf_client_find_target(c, "x/deep", &t), 0);
        ck_assert_int_eq(tuf_hashes_compute("deep a1", 7, &h), 0);
        ck_assert(memcmp(t->hashes.sha256, h.sha256, 32) == 0);
        ck_assert_int_eq(tuf_client_download_target(c, t, dl, NULL, NULL), 0);
        data = file_read(dl, "x%2Fdeep");
        ck_assert_str_eq(data, "deep a1");
}
END_TEST

START_TEST(test_delegation_terminating) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        const TufTargetFile *t;
        char dir[PATH_MAX * 2];
        size_t a, b;

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, false);
        a = repo_add_role(&repo, 0, "a", "x/*", true);
        b = repo_add_role(&repo, 0, "b", "x/*", false);
        repo_add_target(&repo, a, "x/in-a", "a", 1);
        repo_add_target(&repo, b, "x/in-b", "b", 1);
        repo_add_target(&repo, b, "y/in-b", "b", 1); /* not delegated to b: never found */
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);

        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "x/in-a", &t), 0);
        /* a is terminating for "x/ANY": b is never asked */
        ck_assert_int_eq(tuf_client_find_target(c, "x/in-b", &t), -ENOENT);
        ck_assert(!file_exists(md, "b.json"));
        ck_assert_uint_eq(served("metadata/b.json", 200), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "y/in-b", &t), -ENOENT);
}
END_TEST

START_TEST(test_delegation_cycle_and_cap) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *capped = NULL;
        const TufTargetFile *t;
        char dir[PATH_MAX * 2];
        size_t a, b, cr;

        /* targets -> a -> b -> a (a cycle), and targets -> c after a */
        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, false);
        a = repo_add_role(&repo, 0, "a", "x/*", false);
        cr = repo_add_role(&repo, 0, "c", "x/*", false);
        b = repo_add_role(&repo, a, "b", "x/*", false);
        repo_delegate(&repo, b, a, "x/*");
        repo_add_target(&repo, b, "x/in-b", "b", 1);
        repo_add_target(&repo, cr, "x/in-c", "c", 1);
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);

        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        /* without the visited set the search would go round a and b until
         * the cap and never reach c */
        ck_assert_int_eq(tuf_client_find_target(c, "x/in-c", &t), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "x/none", &t), -ENOENT);
        ck_assert_uint_eq(served("metadata/a.json", 200), 1);
        ck_assert_uint_eq(served("metadata/b.json", 200), 1);
        ck_assert_uint_eq(served("metadata/c.json", 200), 1);
        ck_assert_int_eq(tuf_client_find_target(c, "x/in-b", &t), 0);

        /* two roles visited at most: targets and a; b is out of reach */
        capped = client_new_with(&(TufClientOptions){.max_delegations = 2});
        ck_assert_int_eq(tuf_client_refresh(capped), 0);
        ck_assert_int_eq(tuf_client_find_target(capped, "x/in-b", &t), -ENOENT);
}
END_TEST

/* ---- the local cache ----------------------------------------------------------------- */

START_TEST(test_metadata_reused) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *d = NULL;
        const TufTargetFile *t;

        repo_setup(false, true);
        init_root();
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/a.tar", &t), 0);

        d = client_new();
        ck_assert_int_eq(tuf_client_refresh(d), 0);
        ck_assert_int_eq(tuf_client_find_target(d, "payloads/a.tar", &t), 0);
        ck_assert_uint_eq(served("metadata/timestamp.json", 200), 2); /* always asked */
        ck_assert_uint_eq(served("metadata/snapshot.json", 200), 1);
        ck_assert_uint_eq(served("metadata/targets.json", 200), 1);
        ck_assert_uint_eq(served("metadata/releases.json", 200), 1);

        /* a new version of releases only: only that is fetched again */
        repo.roles[1].version++;
        repo.snapshot_version++;
        repo.timestamp_version++;
        repo_publish(&repo);
        tuf_client_free(d);
        d = client_new();
        ck_assert_int_eq(tuf_client_refresh(d), 0);
        ck_assert_int_eq(tuf_client_find_target(d, "payloads/a.tar", &t), 0);
        ck_assert_uint_eq(served("metadata/snapshot.json", 200), 2);
        ck_assert_uint_eq(served("metadata/targets.json", 200), 1);
        ck_assert_uint_eq(served("metadata/releases.json", 200), 2);
}
END_TEST

START_TEST(test_corrupt_cache_ignored) {
        _cleanup_free_ char *p = NULL;

        /* A damaged local copy is not trusted and not fatal: refetched. */
        repo_setup(false, true);
        init_root();
        ck_assert_int_eq(refresh_once(NULL), 0);
        p = path_join(md, "targets.json");
        fixture_write_path(p, "{}", 2);
        ck_assert_int_eq(refresh_once(NULL), 0);
        ck_assert_uint_eq(served("metadata/targets.json", 200), 2);
}
END_TEST

/* ---- the same workflow as a step machine on a loop ------------------------------------ */

typedef struct AsyncResult {
        unsigned calls;
        int error;
        bool free_client; /* free it from inside done() */
        TufClient **client;
} AsyncResult;

static void async_done(TufClient *c, int error, void *userdata) {
        AsyncResult *a = userdata;

        a->calls++;
        a->error = error;
        if (a->free_client) {
                ck_assert_ptr_eq(*a->client, c);
                *a->client = tuf_client_free(c);
        }
}

/* A defer source at idle priority: it runs whenever the loop has nothing
 * more urgent (a defer source stays pending, so at the same priority it
 * would starve the others). */
static int async_tick(sd_event_source *s, void *userdata) {
        unsigned *ticks = userdata;

        (*ticks)++;
        return 0;
}

/* Run e until *calls (at most limit_sec), then a little longer: done()
 * comes exactly once. */
static void run_until(sd_event *e, const unsigned *calls, long limit_sec) {
        struct timespec start, now;

        clock_gettime(CLOCK_MONOTONIC, &start);
        while (*calls == 0) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                ck_assert_int_lt(now.tv_sec - start.tv_sec, limit_sec);
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        }
        ck_assert_uint_eq(*calls, 1);
        for (int i = 0; i < 5; i++)
                ck_assert_int_ge(sd_event_run(e, 1000), 0);
        ck_assert_uint_eq(*calls, 1);
}

static void async_run(sd_event *e, AsyncResult *a) {
        run_until(e, &a->calls, 20);
}

/* _i: 0 plain names, 1 consistent snapshots */
START_TEST(test_refresh_async) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *data = NULL;
        sd_event *e = NULL;
        sd_event_source *tick = NULL;
        const TufTargetFile *t;
        AsyncResult a = {}, d = {};
        unsigned ticks = 0;

        repo_setup(_i, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        /* a source of the loop's own, dispatched between the steps */
        ck_assert_int_ge(sd_event_add_defer(e, &tick, async_tick, &ticks), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(tick, SD_EVENT_ON), 0);
        ck_assert_int_ge(sd_event_source_set_priority(tick, SD_EVENT_PRIORITY_IDLE), 0);

        c = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &a), 0);
        ck_assert_uint_eq(a.calls, 0); /* never from inside the call */
        ck_assert_ptr_null(tuf_client_trusted(c));
        /* one operation at a time, on one loop */
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &a), -EBUSY);
        ck_assert_int_eq(tuf_client_refresh(c), -EBUSY);
        async_run(e, &a);
        ck_assert_int_eq(a.error, 0);
        ck_assert_ptr_null(tuf_client_error_context(c));
        ck_assert_ptr_nonnull(tuf_client_trusted(c));
        /* one iteration at least per transfer: 2.root.json, timestamp,
         * snapshot, targets; a refresh blocking the loop would show 1 */
        ck_assert_uint_ge(ticks, 4);
        ck_assert(file_exists(md, "timestamp.json"));
        ck_assert(file_exists(md, "snapshot.json"));
        ck_assert(file_exists(md, "targets.json"));
        ck_assert_uint_eq(served(_i ? "metadata/1.snapshot.json" : "metadata/snapshot.json", 200), 1);
        ck_assert_uint_eq(served("metadata/2.root.json", 404), 1);

        /* delegated roles load (blocking) on demand after an async refresh */
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/a.tar", &t), 0);
        ck_assert_int_eq(tuf_client_download_target_async(c, e, t, dl, NULL, async_done, &d), 0);
        async_run(e, &d);
        ck_assert_int_eq(d.error, 0);
        data = file_read(dl, "payloads%2Fa.tar");
        ck_assert_str_eq(data, payload);

        /* the synchronous calls still work beside it */
        ck_assert_int_eq(tuf_client_refresh(c), 0);

        sd_event_source_disable_unref(tick);
        c = tuf_client_free(c);
        sd_event_unref(e);
}
END_TEST

/* Every refusal of the synchronous refresh arrives through done(), with
 * the same context; here the repeated root step and two attacks. */
START_TEST(test_refresh_async_refusals) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *d = NULL, *f = NULL;
        _cleanup_free_ char *big = repeat(' ', 100 * 1024), *old = NULL;
        sd_event *e = NULL;
        AsyncResult a = {}, b = {}, g = {};
        size_t size;

        repo_setup(false, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        for (int i = 0; i < 3; i++)
                rotate_root_key(); /* versions 2..4 */
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &a), 0);
        async_run(e, &a);
        ck_assert_int_eq(a.error, 0);
        ck_assert_uint_eq(tuf_trusted_set_root(tuf_client_trusted(c))->version, 4);
        ck_assert_uint_eq(served("metadata/5.root.json", 404), 1);

        /* a replayed timestamp */
        old = repo_read(&repo, "timestamp.json", &size);
        repo_bump(&repo);
        repo_publish(&repo);
        d = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(d, e, async_done, &b), 0);
        async_run(e, &b);
        ck_assert_int_eq(b.error, 0);
        repo_put(&repo, "timestamp.json", old, size);
        b = (AsyncResult){};
        ck_assert_int_eq(tuf_client_refresh_async(d, e, async_done, &b), 0);
        async_run(e, &b);
        ck_assert_int_eq(b.error, -ESTALE);
        ck_assert_str_eq(tuf_client_error_context(d), "timestamp.json");
        ck_assert_ptr_null(tuf_client_trusted(d));

        /* endless data */
        repo_put(&repo, "timestamp.json", big, strlen(big));
        f = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(f, e, async_done, &g), 0);
        async_run(e, &g);
        ck_assert_int_eq(g.error, -EFBIG);
        ck_assert_ptr_nonnull(strstr(tuf_client_error_context(f), "timestamp.json: download from"));

        c = tuf_client_free(c);
        d = tuf_client_free(d);
        f = tuf_client_free(f);
        sd_event_unref(e);
}
END_TEST

/* The daemon may drop a client at any time: from its done(), or while a
 * refresh is under way (no done() then). */
START_TEST(test_refresh_async_free) {
        TufClient *c = NULL;
        sd_event *e = NULL;
        AsyncResult a = {.free_client = true, .client = &c}, b = {};

        repo_setup(false, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);

        c = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &a), 0);
        async_run(e, &a);
        ck_assert_int_eq(a.error, 0);
        ck_assert_ptr_null(c);

        c = client_new();
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &b), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        c = tuf_client_free(c);
        for (int i = 0; i < 50; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        ck_assert_uint_eq(b.calls, 0);

        /* a client drives one loop: another one is refused */
        {
                _cleanup_(tuf_client_freep) TufClient *d = client_new();
                sd_event *other = NULL;
                AsyncResult r = {};

                ck_assert_int_ge(sd_event_new(&other), 0);
                ck_assert_int_eq(tuf_client_refresh_async(d, e, async_done, &r), 0);
                async_run(e, &r);
                ck_assert_int_eq(tuf_client_refresh_async(d, other, async_done, &r), -EBUSY);
                sd_event_unref(other);
        }
        sd_event_unref(e);
}
END_TEST

/* ---- the target search and the fetch into memory on a loop --------------------------- */

typedef struct FindResult {
        unsigned calls;
        int error;
        const TufTargetFile *t;
        bool free_client; /* free it from inside done() */
        TufClient **client;
} FindResult;

typedef struct FetchResult {
        unsigned calls;
        int error;
        char *data;
        size_t size;
} FetchResult;

static void find_done(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        FindResult *f = userdata;

        f->calls++;
        f->error = error;
        f->t = t;
        ck_assert(error < 0 ? t == NULL : t != NULL);
        if (f->free_client) {
                ck_assert_ptr_eq(*f->client, c);
                *f->client = tuf_client_free(c);
        }
}

static void fetch_done(TufClient *c, int error, char *data, size_t size, void *userdata) {
        FetchResult *f = userdata;

        f->calls++;
        f->error = error;
        free(f->data);
        f->data = data; /* ours now */
        f->size = size;
        ck_assert(error < 0 ? data == NULL : data != NULL);
}

static void find_async(TufClient *c, sd_event *e, const char *path, FindResult *f) {
        *f = (FindResult){};
        ck_assert_int_eq(tuf_client_find_target_async(c, e, path, find_done, f), 0);
        ck_assert_uint_eq(f->calls, 0); /* never from inside the call */
        run_until(e, &f->calls, 60);
}

static void fetch_async(TufClient *c, sd_event *e, const TufTargetFile *t, FetchResult *f) {
        free(f->data);
        *f = (FetchResult){};
        ck_assert_int_eq(tuf_client_fetch_target_async(c, e, t, fetch_done, f), 0);
        ck_assert_uint_eq(f->calls, 0);
        run_until(e, &f->calls, 60);
}

static void context_has(TufClient *c, const char *expected) {
        const char *ctx = tuf_client_error_context(c);

        ck_assert_msg(ctx && strstr(ctx, expected), "context '%s' does not name '%s'", ctx ?: "(null)",
                      expected);
}

/* A timer on the loop every TICK_USEC, recording how late it fired: the
 * longest time the loop was kept from its other sources. */
#define TICK_USEC (50U * 1000U)

typedef struct Ticker {
        sd_event_source *source;
        unsigned ticks;
        uint64_t max_late;
} Ticker;

static uint64_t mono_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static int ticker_fire(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        uint64_t now = mono_usec();

        t->ticks++;
        t->max_late = MAX(t->max_late, now > usec ? now - usec : 0);
        ck_assert_int_ge(sd_event_source_set_time(s, now + TICK_USEC), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT), 0);
        return 0;
}

static void ticker_start(Ticker *t, sd_event *e) {
        *t = (Ticker){};
        ck_assert_int_ge(sd_event_add_time(e, &t->source, CLOCK_MONOTONIC, mono_usec() + TICK_USEC, 1000,
                                           ticker_fire, t),
                         0);
}

/* _i: 0 plain names, 1 consistent snapshots */
START_TEST(test_find_async) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *d = NULL;
        sd_event *e = NULL;
        FindResult f = {};
        FetchResult g = {};
        const char *releases = _i ? "metadata/1.releases.json" : "metadata/releases.json";

        repo_setup(_i, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        c = client_new();

        /* refused at once: no refresh yet */
        ck_assert_int_eq(tuf_client_find_target_async(c, e, "hello.txt", find_done, &f), -EBUSY);
        ck_assert_int_eq(tuf_client_refresh(c), 0);

        /* in the top-level targets: no delegated role is loaded */
        find_async(c, e, "hello.txt", &f);
        ck_assert_int_eq(f.error, 0);
        ck_assert_str_eq(f.t->path, "hello.txt");
        ck_assert_uint_eq(f.t->length, strlen(hello));
        ck_assert_ptr_null(tuf_client_error_context(c));
        ck_assert(!file_exists(md, "releases.json"));
        fetch_async(c, e, f.t, &g);
        ck_assert_int_eq(g.error, 0);
        ck_assert_uint_eq(g.size, strlen(hello));
        ck_assert_str_eq(g.data, hello);

        /* through the delegation: releases fetched (its consistent-snapshot
         * name), verified and persisted */
        find_async(c, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, 0);
        ck_assert_str_eq(f.t->path, "payloads/a.tar");
        ck_assert(file_exists(md, "releases.json"));
        ck_assert_ptr_nonnull(tuf_trusted_set_targets(tuf_client_trusted(c), "releases"));
        ck_assert_uint_eq(served(releases, 200), 1);
        fetch_async(c, e, f.t, &g);
        ck_assert_int_eq(g.error, 0);
        ck_assert_str_eq(g.data, payload);

        /* again: the trusted role is searched, nothing fetched */
        find_async(c, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, 0);
        ck_assert_uint_eq(served(releases, 200), 1);

        /* a new client finds releases in its cache */
        d = client_new();
        ck_assert_int_eq(tuf_client_refresh(d), 0);
        find_async(d, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, 0);
        ck_assert_uint_eq(served(releases, 200), 1);

        /* nowhere: -ENOENT, with the sync call's context */
        find_async(c, e, "payloads/none.tar", &f);
        ck_assert_int_eq(f.error, -ENOENT);
        context_has(c, "no trusted role lists it");
        find_async(c, e, "none.txt", &f);
        ck_assert_int_eq(f.error, -ENOENT);
        /* not a valid path: through done() too */
        find_async(c, e, "payloads/../hello.txt", &f);
        ck_assert_int_eq(f.error, -EINVAL);
        context_has(c, "not a valid target path");

        free(g.data);
        c = tuf_client_free(c);
        d = tuf_client_free(d);
        sd_event_unref(e);
}
END_TEST

/* The search's rules are the synchronous one's (it is the same code):
 * order, terminating delegations, cycles, the cap. */
START_TEST(test_find_async_rules) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *capped = NULL;
        sd_event *e = NULL;
        FindResult f = {};
        TufHashes h;
        char dir[PATH_MAX * 2];
        size_t a, a1, b, t;

        /* targets -> a -> a1 -> a (a cycle); targets -> t (terminating for
         * "t/ANY"); targets -> b (any two components) */
        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, true);
        a = repo_add_role(&repo, 0, "a", "x/*", false);
        t = repo_add_role(&repo, 0, "t", "t/*", true);
        b = repo_add_role(&repo, 0, "b", "*/*", false);
        a1 = repo_add_role(&repo, a, "a1", "x/*", false);
        repo_delegate(&repo, a1, a, "x/*");
        repo_add_target(&repo, b, "x/file", "from b", 6);
        repo_add_target(&repo, a1, "x/file", "from a1", 7);
        repo_add_target(&repo, b, "t/file", "from b", 6);
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);
        (void) t;

        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);

        /* pre-order: a1 (below a) before b, across the cycle back to a */
        find_async(c, e, "x/file", &f);
        ck_assert_int_eq(f.error, 0);
        ck_assert_int_eq(tuf_hashes_compute("from a1", 7, &h), 0);
        ck_assert(memcmp(f.t->hashes.sha256, h.sha256, 32) == 0);
        ck_assert(!file_exists(md, "b.json"));
        ck_assert_uint_eq(served("metadata/1.a.json", 200), 1);
        ck_assert_uint_eq(served("metadata/1.a1.json", 200), 1);

        /* t is terminating for t/ANY and lists nothing: b is never asked */
        find_async(c, e, "t/file", &f);
        ck_assert_int_eq(f.error, -ENOENT);
        ck_assert(!file_exists(md, "b.json"));
        ck_assert(file_exists(md, "t.json"));

        /* the cycle does not keep b from being reached */
        find_async(c, e, "x/none", &f);
        ck_assert_int_eq(f.error, -ENOENT);
        ck_assert(file_exists(md, "b.json"));
        ck_assert_uint_eq(served("metadata/1.a.json", 200), 1);

        /* two roles visited at most: targets and a; a1 is out of reach */
        capped = client_new_with(&(TufClientOptions){.max_delegations = 2});
        ck_assert_int_eq(tuf_client_refresh(capped), 0);
        find_async(capped, e, "x/file", &f);
        ck_assert_int_eq(f.error, -ENOENT);

        c = tuf_client_free(c);
        capped = tuf_client_free(capped);
        sd_event_unref(e);
}
END_TEST

/* A delegated role that does not verify is refused, not persisted, and the
 * search ends there with the role's name as context. */
START_TEST(test_find_async_tampered_role) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL, *d = NULL;
        _cleanup_free_ char *good = NULL, *bad = NULL;
        sd_event *e = NULL;
        FindResult f = {};
        size_t size;

        /* signed by a key the delegation does not name (no meta hashes in
         * snapshot, so only the signature can tell) */
        repo_setup(false, false);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        good = repo_read(&repo, "releases.json", &size);
        repo_key_done(&repo.roles[1].key);
        repo_key_new(&repo.roles[1].key);
        repo_write_role(&repo, 1);
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        find_async(c, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, -EBADMSG);
        ck_assert_str_eq(tuf_client_error_context(c), "releases.json");
        ck_assert(!file_exists(md, "releases.json"));
        ck_assert_ptr_null(tuf_trusted_set_targets(tuf_client_trusted(c), "releases"));
        /* top-level targets are still found */
        find_async(c, e, "hello.txt", &f);
        ck_assert_int_eq(f.error, 0);

        /* one byte changed with the hashes in snapshot: the hash tells */
        repo_done(&repo);
        fixture_rm_rf(md);
        repo_setup(false, true);
        init_root();
        bad = repo_read(&repo, "releases.json", &size);
        bad[size / 2] ^= 1;
        repo_put(&repo, "releases.json", bad, size);
        d = client_new();
        ck_assert_int_eq(tuf_client_refresh(d), 0);
        find_async(d, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, -EBADMSG);
        ck_assert_str_eq(tuf_client_error_context(d), "releases.json");
        ck_assert(!file_exists(md, "releases.json"));

        /* gone from the server: the download's context */
        free(bad);
        bad = path_join(repo.metadata, "releases.json");
        ck_assert_int_eq(unlink(bad), 0);
        find_async(d, e, "payloads/a.tar", &f);
        ck_assert_int_eq(f.error, -ENOENT);
        context_has(d, "releases.json: download from https://");

        c = tuf_client_free(c);
        d = tuf_client_free(d);
        sd_event_unref(e);
}
END_TEST

/* Bytes the server swapped are refused before done() sees them. */
START_TEST(test_fetch_async_refused) {
        _cleanup_(tuf_client_freep) TufClient *c = NULL;
        _cleanup_free_ char *evil = strdup(hello);
        sd_event *e = NULL;
        FindResult f = {};
        FetchResult g = {};
        TufTargetFile forged = {.path = (char *) "/etc/passwd", .length = 1};

        repo_setup(_i, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        find_async(c, e, "hello.txt", &f);
        ck_assert_int_eq(f.error, 0);

        /* same length, other bytes */
        evil[0] = 'J';
        repo_serve_target_bytes(&repo, f.t, evil, strlen(evil));
        fetch_async(c, e, f.t, &g);
        ck_assert_int_eq(g.error, -EBADMSG);
        ck_assert_ptr_null(g.data);
        context_has(c, "verifying the download from https://");

        /* longer: the signed length caps the transfer */
        repo_serve_target_bytes(&repo, f.t, payload, strlen(payload));
        fetch_async(c, e, f.t, &g);
        ck_assert_int_eq(g.error, -EFBIG);
        context_has(c, "download from https://");

        /* back to the signed bytes */
        repo_serve_target_bytes(&repo, f.t, hello, strlen(hello));
        fetch_async(c, e, f.t, &g);
        ck_assert_int_eq(g.error, 0);
        ck_assert_str_eq(g.data, hello);

        /* an invalid path, through done() */
        fetch_async(c, e, &forged, &g);
        ck_assert_int_eq(g.error, -EINVAL);
        context_has(c, "not a valid target path");

        free(g.data);
        c = tuf_client_free(c);
        sd_event_unref(e);
}
END_TEST

/*
 * The point of it all: a delegated role and a manifest served at 64 bytes/s
 * (nginx's /slow/) while a timer on the same loop keeps firing on time.
 * A blocking search would hold the loop for the whole transfer.
 */
START_TEST(test_find_fetch_async_slow) {
        _cleanup_(tuf_client_freep) TufClient *fast = NULL, *c = NULL;
        _cleanup_free_ char *manifest = repeat('m', 128);
        char slow_metadata[600], slow_targets[600], logged[1024];
        sd_event *e = NULL;
        FindResult f = {};
        FetchResult g = {};
        Ticker tick;
        uint64_t start, took;
        char dir[PATH_MAX * 2];
        size_t releases;

        snprintf(dir, sizeof(dir), "%s/%s", nginx.www, name);
        repo_init(&repo, dir, false);
        repo.meta_hashes = false; /* a smaller timestamp.json: a shorter test */
        releases = repo_add_role(&repo, 0, "releases", "manifests/*", false);
        repo_add_target(&repo, releases, "manifests/slow.yaml", manifest, strlen(manifest));
        repo_write_root(&repo, NULL, 0);
        repo_publish(&repo);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);

        /* snapshot and targets cached, fast */
        fast = client_new();
        ck_assert_int_eq(tuf_client_refresh(fast), 0);
        fast = tuf_client_free(fast);

        snprintf(slow_metadata, sizeof(slow_metadata), "%s/slow/%s/metadata", nginx.https, name);
        snprintf(slow_targets, sizeof(slow_targets), "%s/slow/%s/targets", nginx.https, name);
        c = client_new_with(&(TufClientOptions){
                .metadata_url = slow_metadata,
                .target_base_url = slow_targets,
                .fetch = {.low_speed_bytes = 8, .low_speed_sec = 30},
        });
        ck_assert_int_eq(tuf_client_refresh(c), 0);

        ticker_start(&tick, e);
        start = mono_usec();
        find_async(c, e, "manifests/slow.yaml", &f);
        took = mono_usec() - start;
        ck_assert_int_eq(f.error, 0);
        snprintf(logged, sizeof(logged), "/slow/%s/metadata/releases.json", name);
        nginx_sync();
        ck_assert_uint_eq(nginx_count(&nginx, logged, 200), 1);
        /* it was slow (a role of some hundred bytes at 64 B/s), and the timer
         * kept running: about took / TICK_USEC times, never held up long */
        ck_assert_uint_ge(took, 2000000U);
        ck_assert_uint_ge(tick.ticks, took / TICK_USEC / 2);
        ck_assert_uint_lt(tick.max_late, 250000U);
        fprintf(stderr, "slow role: %" PRIu64 " ms, %u ticks, loop held up at most %" PRIu64 " ms\n",
                took / 1000, tick.ticks, tick.max_late / 1000);

        sd_event_source_disable_unref(tick.source);
        ticker_start(&tick, e);
        start = mono_usec();
        fetch_async(c, e, f.t, &g);
        took = mono_usec() - start;
        ck_assert_int_eq(g.error, 0);
        ck_assert_str_eq(g.data, manifest);
        ck_assert_uint_ge(took, 2000000U);
        ck_assert_uint_ge(tick.ticks, took / TICK_USEC / 2);
        ck_assert_uint_lt(tick.max_late, 250000U);
        fprintf(stderr, "slow manifest: %" PRIu64 " ms, %u ticks, loop held up at most %" PRIu64 " ms\n",
                took / 1000, tick.ticks, tick.max_late / 1000);

        free(g.data);
        sd_event_source_disable_unref(tick.source);
        c = tuf_client_free(c);
        sd_event_unref(e);
}
END_TEST

typedef struct Chain {
        sd_event *e;
        unsigned calls;
        FetchResult fetch;
} Chain;

/* done() may start the next operation: the fetch of what was found. */
static void chain_fetch(TufClient *c, int error, const TufTargetFile *t, void *userdata) {
        Chain *ch = userdata;

        ch->calls++;
        ck_assert_int_eq(error, 0);
        ck_assert_int_eq(tuf_client_fetch_target_async(c, ch->e, t, fetch_done, &ch->fetch), 0);
}

/* One operation at a time; done() may free the client or start the next
 * one; a client freed mid-operation never calls done(). */
START_TEST(test_find_async_busy_and_free) {
        TufClient *c = NULL;
        sd_event *e = NULL;
        FindResult a = {}, b = {};
        FetchResult g = {};
        Chain ch = {};
        const TufTargetFile *t;
        char *data = NULL;
        size_t size;

        repo_setup(false, true);
        init_root();
        ck_assert_int_ge(sd_event_new(&e), 0);
        ch.e = e;
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);

        ck_assert_int_eq(tuf_client_find_target_async(c, e, "payloads/a.tar", find_done, &a), 0);
        ck_assert_int_eq(tuf_client_find_target_async(c, e, "hello.txt", find_done, &b), -EBUSY);
        ck_assert_int_eq(tuf_client_find_target(c, "hello.txt", &t), -EBUSY);
        ck_assert_int_eq(tuf_client_fetch_target(c, &repo.roles[0].files[0], &data, &size), -EBUSY);
        ck_assert_int_eq(tuf_client_fetch_target_async(c, e, &repo.roles[0].files[0], fetch_done, &g),
                         -EBUSY);
        ck_assert_int_eq(tuf_client_refresh_async(c, e, async_done, &(AsyncResult){}), -EBUSY);
        /* dropped while releases.json is on its way */
        for (int i = 0; i < 2; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        c = tuf_client_free(c);
        for (int i = 0; i < 50; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        ck_assert_uint_eq(a.calls, 0);
        ck_assert_uint_eq(b.calls, 0);

        /* freed from inside done() */
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        a = (FindResult){.free_client = true, .client = &c};
        ck_assert_int_eq(tuf_client_find_target_async(c, e, "payloads/a.tar", find_done, &a), 0);
        run_until(e, &a.calls, 20);
        ck_assert_int_eq(a.error, 0);
        ck_assert_ptr_null(c);

        /* a fetch dropped mid-way */
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target(c, "payloads/a.tar", &t), 0);
        ck_assert_int_eq(tuf_client_fetch_target_async(c, e, t, fetch_done, &g), 0);
        ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        c = tuf_client_free(c);
        for (int i = 0; i < 50; i++)
                ck_assert_int_ge(sd_event_run(e, 10 * 1000), 0);
        ck_assert_uint_eq(g.calls, 0);

        /* the next operation started from done() */
        c = client_new();
        ck_assert_int_eq(tuf_client_refresh(c), 0);
        ck_assert_int_eq(tuf_client_find_target_async(c, e, "payloads/a.tar", chain_fetch, &ch), 0);
        run_until(e, &ch.fetch.calls, 20);
        ck_assert_uint_eq(ch.calls, 1);
        ck_assert_int_eq(ch.fetch.error, 0);
        ck_assert_str_eq(ch.fetch.data, payload);
        free(ch.fetch.data);
        c = tuf_client_free(c);

        sd_event_unref(e);
}
END_TEST

static Suite *tuf_client_suite(void) {
        Suite *s = suite_create("tuf-client");
        TCase *tc = tcase_create("scenarios");

        tcase_set_timeout(tc, 60);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_loop_test(tc, test_refresh_and_download, 0, 2);
        tcase_add_test(tc, test_init_root);
        tcase_add_test(tc, test_endless_timestamp);
        tcase_add_test(tc, test_endless_snapshot);
        tcase_add_loop_test(tc, test_endless_target, 0, 2);
        tcase_add_test(tc, test_endless_target_stream);
        tcase_add_test(tc, test_slow_retrieval);
        tcase_add_loop_test(tc, test_arbitrary_installation, 0, 2);
        tcase_add_test(tc, test_target_substitution);
        tcase_add_loop_test(tc, test_fast_forward_timestamp, 0, 2);
        tcase_add_test(tc, test_fast_forward_snapshot);
        tcase_add_test(tc, test_rollback_timestamp);
        tcase_add_test(tc, test_rollback_snapshot_targets_version);
        tcase_add_test(tc, test_freeze_expired_timestamp);
        tcase_add_test(tc, test_freeze_same_timestamp_later);
        tcase_add_test(tc, test_freeze_expired_root);
        tcase_add_loop_test(tc, test_mix_and_match, 0, 2);
        tcase_add_test(tc, test_root_rotation_chain_and_cap);
        tcase_add_test(tc, test_root_rotation_bad_signature);
        tcase_add_test(tc, test_evil_role_name);
        tcase_add_test(tc, test_target_path_traversal);
        tcase_add_test(tc, test_delegation_search_order);
        tcase_add_test(tc, test_delegation_terminating);
        tcase_add_test(tc, test_delegation_cycle_and_cap);
        tcase_add_test(tc, test_metadata_reused);
        tcase_add_test(tc, test_corrupt_cache_ignored);
        suite_add_tcase(s, tc);

        tc = tcase_create("async");
        tcase_set_timeout(tc, 60);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_loop_test(tc, test_refresh_async, 0, 2);
        tcase_add_test(tc, test_refresh_async_refusals);
        tcase_add_test(tc, test_refresh_async_free);
        tcase_add_loop_test(tc, test_find_async, 0, 2);
        tcase_add_test(tc, test_find_async_rules);
        tcase_add_test(tc, test_find_async_tampered_role);
        tcase_add_loop_test(tc, test_fetch_async_refused, 0, 2);
        tcase_add_test(tc, test_find_async_busy_and_free);
        suite_add_tcase(s, tc);

        tc = tcase_create("async-slow");
        tcase_set_timeout(tc, 90);
        tcase_add_unchecked_fixture(tc, nginx_setup, nginx_teardown);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_find_fetch_async_slow);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(tuf_client_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

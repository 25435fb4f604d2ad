/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The snapshot catalog: policy over the qcow2 chain of the system disk.
 *
 * One directory per system disk:
 *
 *     catalog.json          the catalog (format below), replaced atomically
 *     layer-<id>.qcow2      the frozen layer of snapshot <id>
 *     active-<n>.qcow2      the active overlay: what the desktop boots
 *     stage-<n>.qcow2       a staging overlay (an offline apply in progress)
 *
 * The base image stays where it is, named by its absolute path, and is never
 * written: it is snapshot "1" (reason "initial"). Snapshot ids come from a
 * counter that never goes back, so an id read out on the phone yesterday
 * still means the same snapshot today, or nothing.
 *
 * Every change follows one order, so that a SIGKILL at any instant leaves a
 * state that catalog_open() turns into the old or the new catalog:
 *
 *   1. create the new files (overlays, hard links), fsync them;
 *   2. write catalog.json atomically (temp file, fsync, rename, fsync dir):
 *      the commit point;
 *   3. delete the files the new catalog no longer names.
 *
 * A snapshot freezes the active overlay by giving it a second name
 * (link(active-<n>, layer-<id>): O(1), no data copied), puts a new empty
 * active-<m> on layer-<id>, commits, then drops the name active-<n>.
 * Killed before the commit, layer-<id> and active-<m> are names no entry
 * claims and are removed at open; the data stays under active-<n>. A revert
 * creates active-<m> on the chosen layer, commits, removes the old active
 * overlay. A promote renames stage-<n> to active-<m>, commits, removes the
 * old active overlay. Dropping a snapshot X whose layer others build on
 * first records "merging": X, then rebases each child onto X's parent with
 * disk_rebase() (safe mode: the child absorbs X's data; the only O(data)
 * step), commits the catalog without X, and removes X's layer.
 *
 * Repair at open, from the files, never the other way round:
 *   - catalog.json missing or malformed (strict validation: types, key
 *     sets, unique ids, existing parents, no cycles, file names matching
 *     ids) while layer files exist: rebuilt from the backing pointers of the
 *     files (qemu-img info); the layers come back with reason "recovered"
 *     (their labels, pins and manifests are lost), the newest active
 *     overlay whose chain holds stays active;
 *   - the directory was moved: the backing pointers name the old path;
 *     every overlay is pointed at the same file in the new directory
 *     (disk_rebase_unsafe: the files are identical, only their path moved);
 *   - an entry whose layer file is missing is dropped; when that happens, or
 *     when a merge was interrupted, the backing pointers of all our files
 *     are read (the truth) and the catalog's parents follow them; a layer
 *     whose chain no longer holds (its backing file is gone) is dropped; an
 *     interrupted merge whose children have all been moved is finished;
 *   - the active overlay missing or its chain broken: a new empty one is
 *     created on the newest snapshot;
 *   - files of our naming that no entry names (left by a killed operation,
 *     including every stage-<n>: a staging overlay never promoted) and
 *     stale temp files of catalog.json are removed.
 * A missing base image is not repaired (it may live on a file system not
 * mounted yet): catalog_open() fails with -ENOENT and changes nothing.
 * Checking backing pointers costs one qemu-img run per branch, so a clean
 * open does not: it only stats the files.
 *
 * Concurrency: the catalog directory is flock()ed for the lifetime of a
 * Catalog; a second opener gets -EAGAIN. A staging overlay exists only while
 * its Catalog is open (a crash is a discard).
 *
 * A failed catalog write may or may not have reached the disk (the rename
 * can happen before fsync of the directory fails): the files of both states
 * are then left in place, and the handle refuses further changes with -EIO;
 * opening the catalog again settles on whichever state is on disk.
 *
 * Policy details: a snapshot taken with reason "known-good" is marked
 * known-good; the "last" known-good snapshot is the one with the highest id
 * (ids follow creation; the wall clock may not). Retention counts every
 * snapshot but the base towards the newest keep_last; among the older ones
 * the pinned ones, the last known-good one, the active overlay's parent and
 * the staging overlay's parent stay. The base cannot be deleted (-EPERM): it
 * is not ours. Freezing needs a file system with hard links (ext4, xfs,
 * btrfs: the management VM's).
 *
 * `running` (the desktop uses the disk now): snapshot and revert are refused
 * with -EBUSY, as is dropping a snapshot on the active overlay's chain (the
 * merge would rewrite layers the running desktop reads). The caller's
 * answer comes from libvirt once the guard lands (issue 4). catalog_promote()
 * has no such argument: its caller must have shut the desktop down.
 *
 * Test hook: when the environment variable OOB_TEST_CRASH_AT names a step
 * (see crash_point() calls: "create-overlay", "snapshot-linked",
 * "snapshot-overlay", "snapshot-committed", "revert-overlay",
 * "revert-committed", "delete-marked", "delete-rebased",
 * "delete-committed", "promote-renamed", "promote-committed",
 * "repair-committed"), the process kills itself with SIGKILL there; the
 * kill-safety tests run each operation in a child with it set. It is read
 * with secure_getenv() and does nothing unless set.
 *
 * catalog.json (format 1):
 *   { "format": 1, "dir": "/abs/dir", "active": "active-7.qcow2",
 *     "active_parent": "3", "next_id": 5, "next_overlay": 8,
 *     ["merging": "2",]
 *     "snapshots": [ { "id": "1", "created": 1700000000, "reason": "initial",
 *                      "manifest": null, "label": null, "pinned": false,
 *                      "known_good": false, "layer": "/abs/base.qcow2",
 *                      "parent": null }, ... ] }
 * The base's layer is an absolute path; every other layer is the file name
 * "layer-<id>.qcow2" in the directory. jansson is used here and only here in
 * recovery/, for this one file.
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "hv.h"
#include "recovery.h"

#define CATALOG_FILE "catalog.json"
#define CATALOG_TEMP_PREFIX ".#" CATALOG_FILE "."
#define CATALOG_FORMAT 1
#define CATALOG_SIZE_MAX (16U * 1024U * 1024U)
/* Snapshots in one catalog: daily snapshots kept for years. */
#define CATALOG_SNAPSHOTS_MAX 4096U
/* Labels and manifest ids: one line for a human. */
#define CATALOG_TEXT_MAX 1024U
#define BASE_ID "1"

static const char *const snapshot_reason_table[_SNAPSHOT_REASON_MAX] = {
        [SNAPSHOT_PRE_PATCH] = "pre-patch",
        [SNAPSHOT_KNOWN_GOOD] = "known-good",
        [SNAPSHOT_HELPDESK] = "helpdesk",
        [SNAPSHOT_MANUAL] = "manual",
        [SNAPSHOT_PRE_MIGRATION] = "pre-migration",
        [SNAPSHOT_INITIAL] = "initial",
        [SNAPSHOT_RECOVERED] = "recovered",
};
DEFINE_STRING_TABLE_LOOKUP(snapshot_reason, SnapshotReason);

/* What catalog.json holds: the committed state. */
typedef struct CatalogState {
        char *dir;                     /* the directory the backing pointers were written for */
        Snapshot *snapshots;           /* ascending numeric id; layer is absolute */
        size_t n;
        char *active;                  /* file name "active-<n>.qcow2" */
        char *active_parent;           /* id */
        uint64_t next_id;
        uint64_t next_overlay;
        char *merging;                 /* id of a snapshot being dropped, or NULL */
} CatalogState;

struct Catalog {
        char *dir;                     /* canonical absolute path */
        int dir_fd;                    /* holds the flock */
        CatalogState st;
        char *active_path;             /* absolute path of st.active */
        char *stage;                   /* absolute path of the staging overlay, or NULL */
        char *stage_parent;            /* id it builds on */
        bool broken;                   /* a catalog write failed: reopen */
};

typedef enum FileKind {
        FILE_OTHER,
        FILE_LAYER,
        FILE_ACTIVE,
        FILE_STAGE,
        FILE_CATALOG_TEMP,
} FileKind;

typedef struct DirFile {
        char *name;
        FileKind kind;
        uint64_t num;
} DirFile;

/* ---- small helpers --------------------------------------------------------------- */

static void crash_point(const char *step) {
        const char *e = secure_getenv("OOB_TEST_CRASH_AT");

        if (e && streq(e, step)) {
                log_debug("OOB_TEST_CRASH_AT=%s: killing myself", step);
                (void) raise(SIGKILL);
        }
}

static void jsonp(json_t **p) {
        if (*p)
                json_decref(*p);
}

/* A decimal number without sign, spaces or leading zeros, > 0. */
static int parse_number(const char *s, size_t len, uint64_t *ret) {
        char buf[21];
        uint64_t v;

        if (len == 0 || len >= sizeof(buf) || s[0] == '0')
                return -EINVAL;
        memcpy(buf, s, len);
        buf[len] = 0;
        if (safe_atou64(buf, &v) < 0 || v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_id(const char *id, uint64_t *ret) {
        return parse_number(id, strlen(id), ret);
}

/* "<prefix><number><suffix>" */
static bool parse_file_name(const char *name, const char *prefix, const char *suffix, uint64_t *ret) {
        size_t len = strlen(name), pl = strlen(prefix), sl = strlen(suffix);

        if (len <= pl + sl || !strneq(name, prefix, pl) || !streq(name + len - sl, suffix))
                return false;
        return parse_number(name + pl, len - pl - sl, ret) >= 0;
}

static FileKind classify_file(const char *name, uint64_t *ret_num) {
        uint64_t num = 0;
        FileKind k = FILE_OTHER;

        if (parse_file_name(name, "layer-", ".qcow2", &num))
                k = FILE_LAYER;
        else if (parse_file_name(name, "active-", ".qcow2", &num))
                k = FILE_ACTIVE;
        else if (parse_file_name(name, "stage-", ".qcow2", &num))
                k = FILE_STAGE;
        else if (strneq(name, CATALOG_TEMP_PREFIX, STRLEN(CATALOG_TEMP_PREFIX)))
                k = FILE_CATALOG_TEMP;
        *ret_num = num;
        return k;
}

static char *name_for(const char *prefix, uint64_t num) {
        char *s;

        if (asprintf(&s, "%s%" PRIu64 ".qcow2", prefix, num) < 0)
                return NULL;
        return s;
}

/* Labels and manifest ids: NULL, or valid UTF-8 without control characters. */
static bool text_is_valid(const char *s) {
        json_t *j;

        if (!s)
                return true;
        if (strlen(s) > CATALOG_TEXT_MAX)
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        j = json_string(s);         /* NULL unless valid UTF-8 */
        if (!j)
                return false;
        json_decref(j);
        return true;
}

static int strdup_or_null(const char *s, char **ret) {
        char *t = NULL;

        if (s) {
                t = strdup(s);
                if (!t)
                        return -ENOMEM;
        }
        *ret = t;
        return 0;
}

static bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return streq(a, b);
}

static uint64_t file_usage(const char *path) {
        struct stat st;

        if (stat(path, &st) < 0)
                return 0;
        return (uint64_t) st.st_blocks * 512U;
}

static int fsync_path(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

static bool file_exists(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0;
}

/* ---- state ------------------------------------------------------------------------ */

static void snapshot_done(Snapshot *s) {
        free(s->id);
        free(s->manifest);
        free(s->label);
        free(s->layer);
        free(s->parent);
        *s = (Snapshot) {};
}

static int snapshot_copy(const Snapshot *s, Snapshot *ret) {
        Snapshot t = *s;
        int r;

        t.id = t.manifest = t.label = t.layer = t.parent = NULL;
        r = strdup_or_null(s->id, &t.id);
        if (r >= 0)
                r = strdup_or_null(s->manifest, &t.manifest);
        if (r >= 0)
                r = strdup_or_null(s->label, &t.label);
        if (r >= 0)
                r = strdup_or_null(s->layer, &t.layer);
        if (r >= 0)
                r = strdup_or_null(s->parent, &t.parent);
        if (r < 0) {
                snapshot_done(&t);
                return r;
        }
        *ret = t;
        return 0;
}

static void state_done(CatalogState *st) {
        for (size_t i = 0; i < st->n; i++)
                snapshot_done(&st->snapshots[i]);
        free(st->snapshots);
        free(st->dir);
        free(st->active);
        free(st->active_parent);
        free(st->merging);
        *st = (CatalogState) {};
}

static int state_clone(const CatalogState *st, CatalogState *ret) {
        _cleanup_(state_done) CatalogState t = {
                .next_id = st->next_id,
                .next_overlay = st->next_overlay,
        };
        int r;

        if (st->n > 0) {
                t.snapshots = calloc(st->n, sizeof(Snapshot));
                if (!t.snapshots)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < st->n; i++) {
                r = snapshot_copy(&st->snapshots[i], &t.snapshots[i]);
                if (r < 0)
                        return r;
                t.n++;
        }
        r = strdup_or_null(st->dir, &t.dir);
        if (r >= 0)
                r = strdup_or_null(st->active, &t.active);
        if (r >= 0)
                r = strdup_or_null(st->active_parent, &t.active_parent);
        if (r >= 0)
                r = strdup_or_null(st->merging, &t.merging);
        if (r < 0)
                return r;
        *ret = t;
        t = (CatalogState) {};
        return 0;
}

static Snapshot *state_find(const CatalogState *st, const char *id) {
        if (!id)
                return NULL;
        for (size_t i = 0; i < st->n; i++)
                if (streq(st->snapshots[i].id, id))
                        return &st->snapshots[i];
        return NULL;
}

static Snapshot *state_base(const CatalogState *st) {
        for (size_t i = 0; i < st->n; i++)
                if (!st->snapshots[i].parent)
                        return &st->snapshots[i];
        return NULL;
}

static void state_remove(CatalogState *st, Snapshot *s) {
        size_t i = (size_t) (s - st->snapshots);

        assert(i < st->n);
        snapshot_done(s);
        memmove(st->snapshots + i, st->snapshots + i + 1, (st->n - i - 1) * sizeof(Snapshot));
        st->n--;
}

static int snapshot_cmp(const void *a, const void *b) {
        uint64_t x = 0, y = 0;

        (void) parse_id(((const Snapshot *) a)->id, &x);
        (void) parse_id(((const Snapshot *) b)->id, &y);
        return x < y ? -1 : x > y;
}

/* Append (taking s over on success). */
static int state_append(CatalogState *st, Snapshot *s) {
        Snapshot *p;

        if (st->n >= CATALOG_SNAPSHOTS_MAX)
                return -EFBIG;
        p = reallocarray(st->snapshots, st->n + 1, sizeof(Snapshot));
        if (!p)
                return -ENOMEM;
        st->snapshots = p;
        st->snapshots[st->n++] = *s;
        *s = (Snapshot) {};
        return 0;
}

/* Is id the active overlay's parent or one of its ancestors? */
static bool state_in_active_chain(const CatalogState *st, const char *id) {
        const Snapshot *s = state_find(st, st->active_parent);

        for (size_t steps = 0; s && steps <= st->n; steps++) {
                if (streq(s->id, id))
                        return true;
                s = state_find(st, s->parent);
        }
        return false;
}

static bool state_has_children(const CatalogState *st, const char *id) {
        if (streq_ptr(st->active_parent, id))
                return true;
        for (size_t i = 0; i < st->n; i++)
                if (streq_ptr(st->snapshots[i].parent, id))
                        return true;
        return false;
}

/* The snapshot with the highest id. */
static const Snapshot *state_newest(const CatalogState *st) {
        return st->n > 0 ? &st->snapshots[st->n - 1] : NULL;
}

/* ---- catalog.json ----------------------------------------------------------------- */

static int json_set_new(json_t *o, const char *key, json_t *v) {
        if (!v || json_object_set_new(o, key, v) < 0)
                return -ENOMEM;
        return 0;
}

static json_t *json_string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static int snapshot_to_json(const CatalogState *st, const Snapshot *s, json_t **ret) {
        _cleanup_(jsonp) json_t *o = json_object();
        const char *layer = s->layer;
        int r;

        if (!o)
                return -ENOMEM;
        /* Our layers are stored by file name: the directory may move. */
        if (s->parent) {
                layer = strrchr(s->layer, '/');
                assert(layer);
                layer++;
        }
        r = json_set_new(o, "id", json_string(s->id));
        if (r >= 0)
                r = json_set_new(o, "created", json_integer(s->created));
        if (r >= 0)
                r = json_set_new(o, "reason", json_string(snapshot_reason_to_string(s->reason)));
        if (r >= 0)
                r = json_set_new(o, "manifest", json_string_or_null(s->manifest));
        if (r >= 0)
                r = json_set_new(o, "label", json_string_or_null(s->label));
        if (r >= 0)
                r = json_set_new(o, "pinned", json_boolean(s->pinned));
        if (r >= 0)
                r = json_set_new(o, "known_good", json_boolean(s->known_good));
        if (r >= 0)
                r = json_set_new(o, "layer", json_string(layer));
        if (r >= 0)
                r = json_set_new(o, "parent", json_string_or_null(s->parent));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

static int state_to_json(const CatalogState *st, char **ret, size_t *ret_size) {
        _cleanup_(jsonp) json_t *o = json_object(), *a = json_array();
        char *text;
        int r;

        if (!o || !a)
                return -ENOMEM;
        for (size_t i = 0; i < st->n; i++) {
                json_t *s = NULL;

                r = snapshot_to_json(st, &st->snapshots[i], &s);
                if (r < 0)
                        return r;
                if (json_array_append_new(a, s) < 0)
                        return -ENOMEM;
        }
        r = json_set_new(o, "format", json_integer(CATALOG_FORMAT));
        if (r >= 0)
                r = json_set_new(o, "dir", json_string(st->dir));
        if (r >= 0)
                r = json_set_new(o, "active", json_string(st->active));
        if (r >= 0)
                r = json_set_new(o, "active_parent", json_string(st->active_parent));
        if (r >= 0)
                r = json_set_new(o, "next_id", json_integer((json_int_t) st->next_id));
        if (r >= 0)
                r = json_set_new(o, "next_overlay", json_integer((json_int_t) st->next_overlay));
        if (r >= 0 && st->merging)
                r = json_set_new(o, "merging", json_string(st->merging));
        if (r >= 0)
                r = json_set_new(o, "snapshots", TAKE_PTR(a));
        if (r < 0)
                return r;

        text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        *ret_size = strlen(text);
        *ret = text;
        return 0;
}

/* Only the listed keys, each of the expected type. */
static bool json_keys_allowed(json_t *o, const char *const *keys) {
        const char *key;
        json_t *v;

        json_object_foreach(o, key, v) {
                bool found = false;

                for (const char *const *k = keys; *k; k++)
                        if (streq(*k, key)) {
                                found = true;
                                break;
                        }
                if (!found)
                        return false;
        }
        return true;
}

/* A string (of at most max bytes, no NUL inside), or NULL when nullable and null. */
static int json_text(json_t *o, const char *key, bool nullable, size_t max, char **ret) {
        json_t *v = json_object_get(o, key);

        if (!v)
                return -EPROTO;
        if (json_is_null(v) && nullable) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
            strlen(json_string_value(v)) != json_string_length(v))
                return -EPROTO;
        return strdup_or_null(json_string_value(v), ret);
}

static int json_uint(json_t *o, const char *key, uint64_t *ret) {
        json_t *v = json_object_get(o, key);

        if (!v || !json_is_integer(v) || json_integer_value(v) <= 0)
                return -EPROTO;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static int json_flag(json_t *o, const char *key, bool *ret) {
        json_t *v = json_object_get(o, key);

        if (!v || !json_is_boolean(v))
                return -EPROTO;
        *ret = json_is_true(v);
        return 0;
}

static int snapshot_from_json(json_t *o, const char *dir, Snapshot *ret) {
        static const char *const keys[] = { "id", "created", "reason", "manifest", "label", "pinned",
                                            "known_good", "layer", "parent", NULL };
        _cleanup_(snapshot_done) Snapshot s = {};
        _cleanup_free_ char *reason = NULL, *layer = NULL;
        uint64_t num, layer_num;
        json_t *v;
        int r;

        if (!json_is_object(o) || !json_keys_allowed(o, keys))
                return -EPROTO;
        r = json_text(o, "id", false, 20, &s.id);
        if (r >= 0 && parse_id(s.id, &num) < 0)
                r = -EPROTO;
        if (r >= 0) {
                v = json_object_get(o, "created");
                if (!v || !json_is_integer(v))
                        r = -EPROTO;
                else
                        s.created = json_integer_value(v);
        }
        if (r >= 0)
                r = json_text(o, "reason", false, 64, &reason);
        if (r >= 0) {
                s.reason = snapshot_reason_from_string(reason);
                if (s.reason < 0)
                        r = -EPROTO;
        }
        if (r >= 0)
                r = json_text(o, "manifest", true, CATALOG_TEXT_MAX, &s.manifest);
        if (r >= 0)
                r = json_text(o, "label", true, CATALOG_TEXT_MAX, &s.label);
        if (r >= 0 && (!text_is_valid(s.manifest) || !text_is_valid(s.label)))
                r = -EPROTO;
        if (r >= 0)
                r = json_flag(o, "pinned", &s.pinned);
        if (r >= 0)
                r = json_flag(o, "known_good", &s.known_good);
        if (r >= 0)
                r = json_text(o, "layer", false, PATH_MAX, &layer);
        if (r >= 0)
                r = json_text(o, "parent", true, 20, &s.parent);
        if (r < 0)
                return r;

        if (s.parent) {
                /* Ours: "layer-<id>.qcow2" in the directory, and no other name. */
                if (!parse_file_name(layer, "layer-", ".qcow2", &layer_num) || layer_num != num)
                        return -EPROTO;
                s.layer = path_join(dir, layer);
                if (!s.layer)
                        return -ENOMEM;
        } else {
                if (layer[0] != '/')
                        return -EPROTO;
                s.layer = TAKE_PTR(layer);
        }
        *ret = s;
        s = (Snapshot) {};
        return 0;
}

/* Parse and validate catalog.json: anything unexpected is -EPROTO. */
static int state_from_json(const char *text, size_t size, const char *dir, CatalogState *ret) {
        static const char *const keys[] = { "format", "dir", "active", "active_parent", "next_id",
                                            "next_overlay", "merging", "snapshots", NULL };
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_(jsonp) json_t *root = NULL;
        json_error_t error;
        json_t *a, *v;
        uint64_t format, num, max_id = 0, active_num;
        size_t bases = 0;
        int r;

        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &error);
        if (!root) {
                log_debug("%s/%s: line %d: %s", dir, CATALOG_FILE, error.line, error.text);
                return -EPROTO;
        }
        if (!json_is_object(root) || !json_keys_allowed(root, keys))
                return -EPROTO;
        r = json_uint(root, "format", &format);
        if (r < 0 || format != CATALOG_FORMAT)
                return -EPROTO;
        r = json_text(root, "dir", false, PATH_MAX, &st.dir);
        if (r >= 0 && st.dir[0] != '/')
                r = -EPROTO;
        if (r >= 0)
                r = json_text(root, "active", false, 64, &st.active);
        if (r >= 0 && !parse_file_name(st.active, "active-", ".qcow2", &active_num))
                r = -EPROTO;
        if (r >= 0)
                r = json_text(root, "active_parent", false, 20, &st.active_parent);
        if (r >= 0)
                r = json_uint(root, "next_id", &st.next_id);
        if (r >= 0)
                r = json_uint(root, "next_overlay", &st.next_overlay);
        if (r >= 0 && active_num >= st.next_overlay)
                r = -EPROTO;
        if (r >= 0 && json_object_get(root, "merging"))
                r = json_text(root, "merging", false, 20, &st.merging);
        if (r < 0)
                return -EPROTO;

        a = json_object_get(root, "snapshots");
        if (!json_is_array(a) || json_array_size(a) == 0)
                return -EPROTO;
        if (json_array_size(a) > CATALOG_SNAPSHOTS_MAX)
                return -EPROTO;
        st.snapshots = calloc(json_array_size(a), sizeof(Snapshot));
        if (!st.snapshots)
                return -ENOMEM;
        for (size_t i = 0; i < json_array_size(a); i++) {
                v = json_array_get(a, i);
                r = snapshot_from_json(v, dir, &st.snapshots[i]);
                if (r < 0)
                        return r;
                st.n++;
                if (state_find(&st, st.snapshots[i].id) != &st.snapshots[i])
                        return -EPROTO;        /* duplicate id */
                (void) parse_id(st.snapshots[i].id, &num);
                max_id = MAX(max_id, num);
                if (!st.snapshots[i].parent)
                        bases++;
        }
        if (bases != 1 || max_id >= st.next_id)
                return -EPROTO;
        qsort(st.snapshots, st.n, sizeof(Snapshot), snapshot_cmp);

        /* Every parent exists and every chain ends at the base (no loops). */
        for (size_t i = 0; i < st.n; i++) {
                const Snapshot *s = &st.snapshots[i];
                size_t steps = 0;

                while (s->parent) {
                        s = state_find(&st, s->parent);
                        if (!s || ++steps > st.n)
                                return -EPROTO;
                }
        }
        if (!state_find(&st, st.active_parent))
                return -EPROTO;
        if (st.merging && (!state_find(&st, st.merging) || !state_find(&st, st.merging)->parent))
                return -EPROTO;

        *ret = st;
        st = (CatalogState) {};
        return 0;
}

/* The commit point of every change. */
static int catalog_write(Catalog *c, const CatalogState *st) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = state_to_json(st, &text, &size);
        if (r < 0)
                return r;
        r = write_file_atomic_at(c->dir_fd, CATALOG_FILE, text, size, 0600);
        if (r < 0) {
                /* The rename may have happened: see the top of this file. */
                log_debug("%s: writing %s failed: %s", c->dir, CATALOG_FILE, strerror(-r));
                c->broken = true;
                return r;
        }
        return 0;
}

static int catalog_read(Catalog *c, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;

        fd = openat(c->dir_fd, CATALOG_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        return read_full_fd(fd, CATALOG_SIZE_MAX, ret, ret_size);
}

/* Take st over as the current state (st is emptied). */
static int catalog_adopt(Catalog *c, CatalogState *st) {
        char *active_path = path_join(c->dir, st->active);

        if (!active_path)
                return -ENOMEM;
        state_done(&c->st);
        c->st = *st;
        *st = (CatalogState) {};
        free(c->active_path);
        c->active_path = active_path;
        for (size_t i = 0; i < c->st.n; i++)
                c->st.snapshots[i].layer_size = file_usage(c->st.snapshots[i].layer);
        return 0;
}

/* Remove one of our files (after the commit that stopped naming it). */
static void catalog_unlink(Catalog *c, const char *name) {
        if (unlinkat(c->dir_fd, name, 0) < 0 && errno != ENOENT)
                log_debug("%s: could not remove %s: %m", c->dir, name);
}

static void catalog_unlink_path(Catalog *c, const char *path) {
        const char *slash = strrchr(path, '/');

        catalog_unlink(c, slash ? slash + 1 : path);
}

/* A file name for a new overlay, never one that exists. */
static char *catalog_new_overlay_name(Catalog *c, CatalogState *st, const char *prefix) {
        for (;;) {
                char *name = name_for(prefix, st->next_overlay++);

                if (!name)
                        return NULL;
                if (faccessat(c->dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                        return name;
                free(name);
        }
}

/* ---- the directory ---------------------------------------------------------------- */

static void dir_files_free(DirFile *files, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(files[i].name);
        free(files);
}

/* Our files in the directory (and stale temp files of the catalog). */
static int catalog_scan(Catalog *c, DirFile **ret, size_t *ret_n) {
        _cleanup_close_ int fd = -EBADF;
        DirFile *files = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        fd = openat(c->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;

        while ((errno = 0, de = readdir(d))) {
                uint64_t num;
                FileKind k = classify_file(de->d_name, &num);
                DirFile *p;

                if (k == FILE_OTHER)
                        continue;
                if (n >= 4 * CATALOG_SNAPSHOTS_MAX) {
                        r = -EFBIG;
                        break;
                }
                p = reallocarray(files, n + 1, sizeof(DirFile));
                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                files = p;
                files[n] = (DirFile) { .name = strdup(de->d_name), .kind = k, .num = num };
                if (!files[n].name) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        closedir(d);
        if (r < 0) {
                dir_files_free(files, n);
                return r;
        }
        *ret = files;
        *ret_n = n;
        return 0;
}

/* Is path (absolute) one of our files in the directory? Then its name. */
static const char *our_name(const Catalog *c, const char *path, FileKind *ret_kind, uint64_t *ret_num) {
        size_t dl = strlen(c->dir);
        uint64_t num;
        FileKind k;

        if (!strneq(path, c->dir, dl) || path[dl] != '/' || strchr(path + dl + 1, '/'))
                return NULL;
        k = classify_file(path + dl + 1, &num);
        if (k == FILE_OTHER || k == FILE_CATALOG_TEMP)
                return NULL;
        if (ret_kind)
                *ret_kind = k;
        if (ret_num)
                *ret_num = num;
        return path + dl + 1;
}

static int catalog_lock(const char *dir, bool create, char **ret_dir, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *canonical = NULL;
        int r;

        if (create) {
                /* 0711: the hypervisor's QEMU (user libvirt-qemu) must be able to
                 * reach the layers it opens; listing the directory stays ours.
                 * libvirt sets the image files' own ownership. */
                r = mkdir_p(dir, 0711);
                if (r < 0)
                        return r;
        }
        canonical = realpath(dir, NULL);
        if (!canonical)
                return -errno;
        fd = open(canonical, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        *ret_dir = TAKE_PTR(canonical);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static Catalog *catalog_new(void) {
        Catalog *c = calloc(1, sizeof(Catalog));

        if (c)
                c->dir_fd = -EBADF;
        return c;
}

Catalog *catalog_free(Catalog *c) {
        if (!c)
                return NULL;
        /* A stage never promoted is thrown away (as it would be at the next open). */
        if (c->stage && c->dir_fd >= 0)
                catalog_unlink_path(c, c->stage);
        state_done(&c->st);
        free(c->dir);
        free(c->active_path);
        free(c->stage);
        free(c->stage_parent);
        if (c->dir_fd >= 0)
                close(c->dir_fd);        /* releases the flock */
        free(c);
        return NULL;
}

/* ---- create ------------------------------------------------------------------------ */

int catalog_create(const char *dir, const char *base_image, Catalog **ret) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *base = NULL, *active = NULL, *active_path = NULL;
        Snapshot s = {};
        DirFile *files = NULL;
        size_t n_files = 0;
        struct stat sb;
        bool ours = false;
        int r;

        assert_return(dir, -EINVAL);
        assert_return(base_image, -EINVAL);
        assert_return(ret, -EINVAL);

        c = catalog_new();
        if (!c)
                return -ENOMEM;
        r = catalog_lock(dir, true, &c->dir, &c->dir_fd);
        if (r < 0)
                return r;

        if (faccessat(c->dir_fd, CATALOG_FILE, F_OK, AT_SYMLINK_NOFOLLOW) >= 0)
                return -EEXIST;
        /* Files of a catalog whose catalog.json is gone: catalog_open()
         * rebuilds that one; a new catalog must not bury it. */
        r = catalog_scan(c, &files, &n_files);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_files; i++)
                if (files[i].kind != FILE_CATALOG_TEMP)
                        ours = true;
        dir_files_free(files, n_files);
        if (ours)
                return -EEXIST;

        base = realpath(base_image, NULL);
        if (!base)
                return -errno;
        if (stat(base, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode))
                return -EINVAL;
        if (our_name(c, base, NULL, NULL) || strlen(base) > PATH_MAX)
                return -EINVAL;

        st.dir = strdup(c->dir);
        if (!st.dir)
                return -ENOMEM;
        st.next_id = 2;
        st.next_overlay = 1;
        active = catalog_new_overlay_name(c, &st, "active-");
        if (!active)
                return -ENOMEM;
        active_path = path_join(c->dir, active);
        if (!active_path)
                return -ENOMEM;

        s = (Snapshot) {
                .id = strdup(BASE_ID),
                .created = (int64_t) time(NULL),
                .reason = SNAPSHOT_INITIAL,
                .layer = TAKE_PTR(base),
        };
        r = state_append(&st, &s);
        snapshot_done(&s);
        if (r < 0)
                return r;
        if (!st.snapshots[0].id)
                return -ENOMEM;
        st.active = TAKE_PTR(active);
        st.active_parent = strdup(BASE_ID);
        if (!st.active_parent)
                return -ENOMEM;

        r = disk_create_overlay(st.snapshots[0].layer, active_path);
        if (r < 0)
                return r;
        r = fsync_path(active_path);
        if (r >= 0) {
                crash_point("create-overlay");
                r = catalog_write(c, &st);
        }
        if (r < 0) {
                if (!c->broken)
                        (void) unlink(active_path);
                return r;
        }
        r = catalog_adopt(c, &st);
        if (r < 0)
                return r;
        log_debug("%s: catalog created over %s", c->dir, c->st.snapshots[0].layer);
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- open and repair -------------------------------------------------------------- */

/* The backing pointers of our files, as read with qemu-img. */
typedef struct Pointer {
        char *path;                    /* absolute path of one of our files */
        int state;                     /* 0 unknown, 1 read (backing set or NULL), -1 chain broken */
        char *backing;                 /* absolute path, NULL when it has none */
} Pointer;

static void pointers_free(Pointer *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(p[i].path);
                free(p[i].backing);
        }
        free(p);
}

static Pointer *pointer_find(Pointer *p, size_t n, const char *path) {
        for (size_t i = 0; i < n; i++)
                if (streq(p[i].path, path))
                        return &p[i];
        return NULL;
}

/*
 * Read the backing pointer of each listed file: one qemu-img run per file
 * not already seen in an earlier chain, so visiting tops first costs one run
 * per branch. A chain that does not hold (-ENOENT: a backing file is gone)
 * marks the file broken; other failures leave it unknown.
 */
static int read_pointers(Catalog *c, Pointer *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                DiskLayer *layers = NULL;
                size_t k = 0;
                int r;

                if (p[i].state != 0)
                        continue;
                r = disk_chain_info(p[i].path, &layers, &k);
                if (r == -ENOENT) {
                        log_debug("%s: the chain of %s does not hold", c->dir, p[i].path);
                        p[i].state = -1;
                        continue;
                }
                if (r < 0) {
                        log_debug("%s: could not read the chain of %s: %s", c->dir, p[i].path, strerror(-r));
                        continue;
                }
                for (size_t j = 0; j < k; j++) {
                        Pointer *q = pointer_find(p, n, layers[j].path);

                        if (!q)
                                break;          /* below our files: the base's own chain */
                        if (q->state != 0)
                                continue;
                        free(q->backing);
                        q->backing = NULL;
                        if (layers[j].backing) {
                                q->backing = strdup(layers[j].backing);
                                if (!q->backing) {
                                        disk_chain_free(layers, k);
                                        return -ENOMEM;
                                }
                        }
                        q->state = 1;
                }
                disk_chain_free(layers, k);
        }
        return 0;
}

static const Snapshot *state_find_layer(const CatalogState *st, const char *path) {
        for (size_t i = 0; i < st->n; i++)
                if (streq(st->snapshots[i].layer, path))
                        return &st->snapshots[i];
        return NULL;
}

/* Drop entries whose parent is gone, until none is left (a chain that lost a link). */
static unsigned state_drop_orphans(Catalog *c, CatalogState *st) {
        unsigned dropped = 0;
        bool again = true;

        while (again) {
                again = false;
                for (size_t i = 0; i < st->n; i++)
                        if (st->snapshots[i].parent && !state_find(st, st->snapshots[i].parent)) {
                                log_debug("%s: dropping snapshot %s: its parent is gone", c->dir,
                                          st->snapshots[i].id);
                                state_remove(st, &st->snapshots[i]);
                                dropped++;
                                again = true;
                                break;
                        }
        }
        return dropped;
}

/*
 * The catalog's parents follow the backing pointers. Called when a layer
 * file is missing or a merge was interrupted. Returns the number of fixes.
 */
static int state_verify(Catalog *c, CatalogState *st, bool *ret_active_broken, unsigned *repairs) {
        _cleanup_free_ char *active_path = path_join(c->dir, st->active);
        Pointer *p = NULL;
        size_t n = 0;
        bool active_broken = false;
        int r = 0;

        if (!active_path)
                return -ENOMEM;
        p = calloc(st->n + 1, sizeof(Pointer));
        if (!p)
                return -ENOMEM;
        /* Tops first: the active overlay, then the newest layers. */
        if (file_exists(active_path)) {
                p[n].path = strdup(active_path);
                if (!p[n++].path)
                        r = -ENOMEM;
        }
        for (size_t i = st->n; r >= 0 && i > 0; i--) {
                const Snapshot *s = &st->snapshots[i - 1];

                if (!s->parent)
                        continue;
                p[n].path = strdup(s->layer);
                if (!p[n++].path)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = read_pointers(c, p, n);
        if (r < 0) {
                pointers_free(p, n);
                return r;
        }

        for (size_t i = 0; i < n; i++) {
                const Snapshot *backing = NULL;
                bool is_active = streq(p[i].path, active_path);
                Snapshot *s = is_active ? NULL : (Snapshot *) state_find_layer(st, p[i].path);
                const char *parent = is_active ? st->active_parent : s->parent;

                if (p[i].state == 0)
                        continue;               /* unknown: keep what the catalog says */
                if (p[i].state > 0 && p[i].backing)
                        backing = state_find_layer(st, p[i].backing);
                if (!backing || (s && backing == s)) {
                        /* Its backing file is gone or is not one of the catalog's layers. */
                        log_debug("%s: %s does not build on a layer of the catalog", c->dir, p[i].path);
                        if (is_active)
                                active_broken = true;
                        else {
                                /* "0" is no id: state_drop_orphans() drops it below. */
                                free(s->parent);
                                s->parent = strdup("0");
                                if (!s->parent)
                                        r = -ENOMEM;
                        }
                        (*repairs)++;
                        continue;
                }
                if (streq(backing->id, parent))
                        continue;
                log_debug("%s: %s builds on snapshot %s, not %s", c->dir, p[i].path, backing->id, parent);
                if (is_active) {
                        free(st->active_parent);
                        st->active_parent = strdup(backing->id);
                        if (!st->active_parent)
                                r = -ENOMEM;
                } else {
                        free(s->parent);
                        s->parent = strdup(backing->id);
                        if (!s->parent)
                                r = -ENOMEM;
                }
                (*repairs)++;
        }
        pointers_free(p, n);
        if (r < 0)
                return r;

        /* Entries marked above, and their descendants, go. */
        *repairs += state_drop_orphans(c, st);
        if (!state_find(st, st->active_parent))
                active_broken = true;

        *ret_active_broken = active_broken;
        return 0;
}

/* A base image that lived in the moved directory moved with it. */
static int state_relocate_base(CatalogState *st, Snapshot *base, const char *dir) {
        size_t l = strlen(st->dir);
        char *moved;

        if (!strneq(base->layer, st->dir, l) || base->layer[l] != '/')
                return 0;
        moved = path_join(dir, base->layer + l + 1);
        if (!moved)
                return -ENOMEM;
        free(base->layer);
        base->layer = moved;
        return 0;
}

/* The directory moved: point every overlay at the same file in the new place. */
static int state_relocate(Catalog *c, CatalogState *st, unsigned *repairs) {
        _cleanup_free_ char *active_path = NULL;
        int r;

        log_debug("%s: the catalog was written for %s; pointing the layers here", c->dir, st->dir);

        for (size_t i = 0; i < st->n + 1; i++) {
                const Snapshot *parent;
                const char *path;

                if (i < st->n) {
                        if (!st->snapshots[i].parent)
                                continue;
                        path = st->snapshots[i].layer;
                        parent = state_find(st, st->snapshots[i].parent);
                } else {
                        active_path = path_join(c->dir, st->active);
                        if (!active_path)
                                return -ENOMEM;
                        path = active_path;
                        parent = state_find(st, st->active_parent);
                }
                if (!file_exists(path) || !file_exists(parent->layer))
                        continue;       /* what is missing is dealt with next */
                r = disk_rebase_unsafe(path, parent->layer);
                if (r < 0)
                        return r;
                r = fsync_path(path);
                if (r < 0)
                        return r;
        }

        free(st->dir);
        st->dir = strdup(c->dir);
        if (!st->dir)
                return -ENOMEM;
        (*repairs)++;
        return 0;
}

/* Catalog lost or unreadable: rebuild it from the files' backing pointers. */
static int state_rebuild(Catalog *c, const DirFile *files, size_t n_files, CatalogState *ret) {
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *base = NULL;
        Pointer *p = NULL;
        size_t n = 0, placed_active = SIZE_MAX;
        uint64_t max_id = 1, max_overlay = 0, best_active = 0;
        bool progress = true;
        struct stat sb;
        int r = 0;

        p = calloc(n_files + 1, sizeof(Pointer));
        if (!p)
                return -ENOMEM;
        /* Actives first (newest first), then layers (newest first): tops come first. */
        for (int pass = 0; pass < 2 && r >= 0; pass++) {
                FileKind want = pass == 0 ? FILE_ACTIVE : FILE_LAYER;
                size_t first = n;

                for (size_t i = 0; i < n_files; i++) {
                        if (files[i].kind == FILE_ACTIVE || files[i].kind == FILE_STAGE)
                                max_overlay = MAX(max_overlay, files[i].num);
                        if (files[i].kind == FILE_LAYER)
                                max_id = MAX(max_id, files[i].num);
                        if (files[i].kind != want)
                                continue;
                        p[n].path = path_join(c->dir, files[i].name);
                        if (!p[n++].path) {
                                r = -ENOMEM;
                                break;
                        }
                }
                /* newest first */
                for (size_t i = first; i < n; i++)
                        for (size_t j = i + 1; j < n; j++) {
                                uint64_t a, b;

                                (void) our_name(c, p[i].path, NULL, &a);
                                (void) our_name(c, p[j].path, NULL, &b);
                                if (b > a) {
                                        Pointer t = p[i];
                                        p[i] = p[j];
                                        p[j] = t;
                                }
                        }
        }
        if (r >= 0)
                r = read_pointers(c, p, n);
        if (r < 0)
                goto finish;

        /* The base: what the newest readable top builds on below our files. */
        for (size_t i = 0; i < n && !base; i++) {
                const char *b = p[i].backing;
                size_t steps = 0;

                if (p[i].state <= 0 || !b)
                        continue;
                for (;;) {
                        Pointer *q;

                        if (!our_name(c, b, NULL, NULL)) {
                                base = strdup(b);
                                if (!base)
                                        r = -ENOMEM;
                                break;
                        }
                        q = pointer_find(p, n, b);
                        if (!q || q->state <= 0 || !q->backing || ++steps > n)
                                break;
                        b = q->backing;
                }
        }
        if (r < 0)
                goto finish;
        if (!base) {
                log_debug("%s: no readable chain left to rebuild the catalog from", c->dir);
                r = -EPROTO;
                goto finish;
        }

        st.dir = strdup(c->dir);
        if (!st.dir) {
                r = -ENOMEM;
                goto finish;
        }
        {
                Snapshot s = {
                        .id = strdup(BASE_ID),
                        .created = stat(base, &sb) >= 0 ? (int64_t) sb.st_mtime : 0,
                        .reason = SNAPSHOT_INITIAL,
                        .layer = TAKE_PTR(base),
                };

                r = s.id ? state_append(&st, &s) : -ENOMEM;
                snapshot_done(&s);
                if (r < 0)
                        goto finish;
        }

        /* Place layers whose backing is already placed, until nothing changes. */
        while (progress) {
                progress = false;
                for (size_t i = 0; i < n; i++) {
                        const Snapshot *parent;
                        FileKind kind;
                        uint64_t num;
                        Snapshot s = {};

                        if (p[i].state <= 0 || !p[i].backing || state_find_layer(&st, p[i].path))
                                continue;
                        (void) our_name(c, p[i].path, &kind, &num);
                        if (kind != FILE_LAYER || num == 1)
                                continue;
                        parent = state_find_layer(&st, p[i].backing);
                        if (!parent)
                                continue;
                        s.reason = SNAPSHOT_RECOVERED;
                        s.created = stat(p[i].path, &sb) >= 0 ? (int64_t) sb.st_mtime : 0;
                        if (asprintf(&s.id, "%" PRIu64, num) < 0)
                                s.id = NULL;
                        s.layer = strdup(p[i].path);
                        s.parent = strdup(parent->id);
                        r = s.id && s.layer && s.parent ? state_append(&st, &s) : -ENOMEM;
                        snapshot_done(&s);
                        if (r < 0)
                                goto finish;
                        progress = true;
                }
        }
        qsort(st.snapshots, st.n, sizeof(Snapshot), snapshot_cmp);

        /* The active overlay: the newest one whose chain holds. */
        for (size_t i = 0; i < n; i++) {
                FileKind kind;
                uint64_t num;
                const Snapshot *parent;

                (void) our_name(c, p[i].path, &kind, &num);
                if (kind != FILE_ACTIVE || p[i].state <= 0 || !p[i].backing)
                        continue;
                parent = state_find_layer(&st, p[i].backing);
                if (!parent || (placed_active != SIZE_MAX && num <= best_active))
                        continue;
                placed_active = i;
                best_active = num;
                free(st.active);
                free(st.active_parent);
                st.active = strdup(strrchr(p[i].path, '/') + 1);
                st.active_parent = strdup(parent->id);
                if (!st.active || !st.active_parent) {
                        r = -ENOMEM;
                        goto finish;
                }
        }
        st.next_id = max_id + 1;
        st.next_overlay = max_overlay + 1;
        log_debug("%s: catalog rebuilt from the files: %zu snapshots, active %s", c->dir, st.n,
                  st.active ?: "(none)");
        *ret = st;
        st = (CatalogState) {};
        r = 0;
finish:
        pointers_free(p, n);
        return r;
}

/* A new empty active overlay on the newest snapshot (the old one is missing or broken). */
static int state_new_active(Catalog *c, CatalogState *st) {
        _cleanup_free_ char *name = NULL, *path = NULL;
        const Snapshot *newest = state_newest(st);
        int r;

        name = catalog_new_overlay_name(c, st, "active-");
        if (!name)
                return -ENOMEM;
        path = path_join(c->dir, name);
        if (!path)
                return -ENOMEM;
        r = disk_create_overlay(newest->layer, path);
        if (r < 0)
                return r;
        r = fsync_path(path);
        if (r < 0)
                return r;
        log_debug("%s: new active overlay %s on snapshot %s", c->dir, name, newest->id);
        free(st->active);
        free(st->active_parent);
        st->active = TAKE_PTR(name);
        st->active_parent = strdup(newest->id);
        if (!st->active_parent)
                return -ENOMEM;
        return 0;
}

static bool state_names_file(const CatalogState *st, const char *dir, const DirFile *f) {
        char id[32];

        switch (f->kind) {
        case FILE_ACTIVE:
                return streq_ptr(st->active, f->name);
        case FILE_LAYER:
                snprintf(id, sizeof(id), "%" PRIu64, f->num);
                return state_find(st, id) && state_find(st, id)->parent;
        default:
                return false;
        }
}

static int catalog_load(Catalog *c, unsigned *ret_repairs) {
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *text = NULL;
        DirFile *files = NULL;
        size_t n_files = 0, size = 0;
        unsigned repairs = 0;
        bool changed = false, need_verify = false, active_broken = false, ours = false;
        int r;

        r = catalog_scan(c, &files, &n_files);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_files; i++)
                if (files[i].kind == FILE_LAYER || files[i].kind == FILE_ACTIVE)
                        ours = true;

        r = catalog_read(c, &text, &size);
        if (r >= 0)
                r = state_from_json(text, size, c->dir, &st);
        /* A base named like one of our files would be swept away below. */
        if (r >= 0 && our_name(c, state_base(&st)->layer, NULL, NULL)) {
                state_done(&st);
                r = -EPROTO;
        }
        if (r == -ENOMEM)
                goto finish;
        if (r < 0) {
                log_debug("%s: %s: %s", c->dir, CATALOG_FILE, r == -ENOENT ? "missing" : "malformed");
                if (!ours) {
                        r = r == -ENOENT ? -ENOENT : -EPROTO;
                        goto finish;
                }
                r = state_rebuild(c, files, n_files, &st);
                if (r < 0)
                        goto finish;
                repairs++;
                changed = true;
                if (!st.active)
                        active_broken = true;
        } else {
                bool moved = !streq(st.dir, c->dir);
                Snapshot *base = state_base(&st);

                if (moved) {
                        r = state_relocate_base(&st, base, c->dir);
                        if (r < 0)
                                goto finish;
                }
                if (!file_exists(base->layer)) {
                        log_debug("%s: the base image %s is missing", c->dir, base->layer);
                        r = -ENOENT;
                        goto finish;
                }
                if (moved) {
                        r = state_relocate(c, &st, &repairs);
                        if (r < 0)
                                goto finish;
                        changed = true;
                }
                /* Missing layers go; the backing pointers of the rest decide
                 * whether their children follow them or build on another layer. */
                for (size_t i = st.n; i > 0; i--) {
                        Snapshot *s = &st.snapshots[i - 1];

                        if (s->parent && !file_exists(s->layer)) {
                                log_debug("%s: snapshot %s: layer %s is missing", c->dir, s->id, s->layer);
                                state_remove(&st, s);
                                repairs++;
                                need_verify = true;
                        }
                }
                if (st.merging)
                        need_verify = true;
                if (need_verify) {
                        _cleanup_free_ char *merging = TAKE_PTR(st.merging);

                        r = state_verify(c, &st, &active_broken, &repairs);
                        if (r < 0)
                                goto finish;
                        /* A merge whose children have all moved: finish it. */
                        if (merging && state_find(&st, merging) && !state_has_children(&st, merging) &&
                            !active_broken) {
                                log_debug("%s: finishing the interrupted removal of snapshot %s", c->dir,
                                          merging);
                                state_remove(&st, state_find(&st, merging));
                                repairs++;
                        } else if (merging) {
                                log_debug("%s: the removal of snapshot %s was interrupted; it stays", c->dir,
                                          merging);
                                repairs++;
                        }
                        changed = true;
                }
                if (faccessat(c->dir_fd, st.active, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                        active_broken = true;
        }

        if (active_broken) {
                log_debug("%s: the active overlay %s is missing or broken", c->dir, st.active ?: "(none)");
                r = state_new_active(c, &st);
                if (r < 0)
                        goto finish;
                repairs++;
                changed = true;
        }

        if (changed) {
                r = catalog_write(c, &st);
                if (r < 0)
                        goto finish;
                crash_point("repair-committed");
        }

        /* Files no entry names: killed operations' leftovers, stages never
         * promoted, layers of dropped snapshots, stale temp files. */
        for (size_t i = 0; i < n_files; i++)
                if (!state_names_file(&st, c->dir, &files[i])) {
                        log_debug("%s: removing %s (not in the catalog)", c->dir, files[i].name);
                        catalog_unlink(c, files[i].name);
                        if (files[i].kind != FILE_CATALOG_TEMP)
                                repairs++;
                }
        (void) fsync(c->dir_fd);

        r = catalog_adopt(c, &st);
        if (r < 0)
                goto finish;
        if (ret_repairs)
                *ret_repairs = repairs;
        r = 0;
finish:
        dir_files_free(files, n_files);
        return r;
}

int catalog_open(const char *dir, Catalog **ret, unsigned *ret_repairs) {
        _cleanup_(catalog_freep) Catalog *c = NULL;
        int r;

        assert_return(dir, -EINVAL);
        assert_return(ret, -EINVAL);

        c = catalog_new();
        if (!c)
                return -ENOMEM;
        r = catalog_lock(dir, false, &c->dir, &c->dir_fd);
        if (r < 0)
                return r;
        r = catalog_load(c, ret_repairs);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- reading ----------------------------------------------------------------------- */

const char *catalog_active(const Catalog *c) {
        assert_return(c, NULL);
        return c->active_path;
}

const char *catalog_active_parent(const Catalog *c) {
        assert_return(c, NULL);
        return c->st.active_parent;
}

int catalog_list(const Catalog *c, const Snapshot **ret, size_t *ret_n) {
        assert_return(c, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_n, -EINVAL);

        *ret = c->st.snapshots;
        *ret_n = c->st.n;
        return 0;
}

const Snapshot *catalog_get(const Catalog *c, const char *id) {
        assert_return(c, NULL);
        assert_return(id, NULL);
        return state_find(&c->st, id);
}

/* "Last" is the highest id: ids follow creation, wall clock time may not. */
const Snapshot *catalog_last_known_good(const Catalog *c) {
        assert_return(c, NULL);
        for (size_t i = c->st.n; i > 0; i--)
                if (c->st.snapshots[i - 1].known_good)
                        return &c->st.snapshots[i - 1];
        return NULL;
}

/* ---- changes ----------------------------------------------------------------------- */

int catalog_snapshot(Catalog *c, SnapshotReason reason, const char *label, const char *manifest,
                     bool running, char **ret_id) {
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *layer_name = NULL, *layer = NULL, *active = NULL, *active_path = NULL,
                            *old_active = NULL, *id = NULL;
        Snapshot s = {};
        int r;

        assert_return(c, -EINVAL);
        assert_return(reason >= 0 && reason < _SNAPSHOT_REASON_MAX, -EINVAL);
        /* These two describe how an entry came to be, not why one is taken. */
        assert_return(reason != SNAPSHOT_INITIAL && reason != SNAPSHOT_RECOVERED, -EINVAL);

        if (c->broken)
                return -EIO;
        if (!text_is_valid(label) || !text_is_valid(manifest))
                return -EINVAL;
        if (running)
                return -EBUSY;
        if (c->st.n >= CATALOG_SNAPSHOTS_MAX)
                return -EFBIG;

        r = state_clone(&c->st, &st);
        if (r < 0)
                return r;
        /* A leftover layer file under the next id (impossible after a
         * repair, but link() must not fail on it) is stepped over. */
        for (;; st.next_id++) {
                free(layer_name);
                layer_name = name_for("layer-", st.next_id);
                if (!layer_name)
                        return -ENOMEM;
                if (faccessat(c->dir_fd, layer_name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                        break;
        }
        if (asprintf(&id, "%" PRIu64, st.next_id++) < 0)
                return -ENOMEM;
        active = catalog_new_overlay_name(c, &st, "active-");
        layer = path_join(c->dir, layer_name);
        old_active = strdup(st.active);
        if (!active || !layer || !old_active)
                return -ENOMEM;
        active_path = path_join(c->dir, active);
        if (!active_path)
                return -ENOMEM;

        /* Freeze: the active overlay's file gets its snapshot name. */
        if (linkat(c->dir_fd, st.active, c->dir_fd, layer_name, 0) < 0)
                return -errno;
        crash_point("snapshot-linked");
        r = disk_create_overlay(layer, active_path);
        if (r >= 0)
                r = fsync_path(active_path);
        if (r < 0) {
                (void) unlinkat(c->dir_fd, active, 0);
                catalog_unlink(c, layer_name);
                return r;
        }
        crash_point("snapshot-overlay");

        s = (Snapshot) {
                .id = strdup(id),
                .created = (int64_t) time(NULL),
                .reason = reason,
                .known_good = reason == SNAPSHOT_KNOWN_GOOD,
                .layer = TAKE_PTR(layer),
                .parent = strdup(st.active_parent),
        };
        r = strdup_or_null(label, &s.label);
        if (r >= 0)
                r = strdup_or_null(manifest, &s.manifest);
        if (r >= 0 && (!s.id || !s.parent))
                r = -ENOMEM;
        if (r >= 0)
                r = state_append(&st, &s);
        snapshot_done(&s);
        if (r >= 0) {
                free(st.active);
                free(st.active_parent);
                st.active = TAKE_PTR(active);
                st.active_parent = strdup(id);
                if (!st.active_parent)
                        r = -ENOMEM;
        }
        if (r < 0) {
                catalog_unlink_path(c, active_path);
                catalog_unlink(c, layer_name);
                return r;
        }

        r = catalog_write(c, &st);
        if (r < 0) {
                if (!c->broken) {
                        catalog_unlink_path(c, active_path);
                        catalog_unlink(c, layer_name);
                }
                return r;
        }
        crash_point("snapshot-committed");
        catalog_unlink(c, old_active);

        r = catalog_adopt(c, &st);
        if (r < 0)
                return r;
        log_debug("%s: snapshot %s taken (%s)", c->dir, id, snapshot_reason_to_string(reason));
        if (ret_id)
                *ret_id = TAKE_PTR(id);
        return 0;
}

/* Replace the active overlay by new_active (an existing file of ours) on parent_id. */
static int catalog_switch_active(Catalog *c, const char *new_active, const char *parent_id,
                                 const char *step) {
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *old_active = NULL;
        int r;

        r = state_clone(&c->st, &st);
        if (r < 0)
                return r;
        old_active = TAKE_PTR(st.active);
        free(st.active_parent);
        st.active = strdup(new_active);
        st.active_parent = strdup(parent_id);
        if (!st.active || !st.active_parent)
                return -ENOMEM;
        r = catalog_write(c, &st);
        if (r < 0)
                return r;
        crash_point(step);
        catalog_unlink(c, old_active);
        return catalog_adopt(c, &st);
}

int catalog_revert(Catalog *c, const char *id, bool running) {
        _cleanup_free_ char *active = NULL, *active_path = NULL;
        const Snapshot *s;
        int r;

        assert_return(c, -EINVAL);
        assert_return(id, -EINVAL);

        if (c->broken)
                return -EIO;
        s = state_find(&c->st, id);
        if (!s)
                return -ENOENT;
        if (running)
                return -EBUSY;

        /* The name counter lives in the state; it is committed with the switch. */
        active = catalog_new_overlay_name(c, &c->st, "active-");
        if (!active)
                return -ENOMEM;
        active_path = path_join(c->dir, active);
        if (!active_path)
                return -ENOMEM;
        r = disk_create_overlay(s->layer, active_path);
        if (r >= 0)
                r = fsync_path(active_path);
        if (r < 0) {
                catalog_unlink(c, active);
                return r;
        }
        crash_point("revert-overlay");

        r = catalog_switch_active(c, active, id, "revert-committed");
        if (r < 0) {
                if (!c->broken)
                        catalog_unlink(c, active);
                return r;
        }
        log_debug("%s: reverted to snapshot %s", c->dir, id);
        return 0;
}

static int catalog_set_flag(Catalog *c, const char *id, bool pinned, bool value) {
        _cleanup_(state_done) CatalogState st = {};
        Snapshot *s;
        int r;

        if (c->broken)
                return -EIO;
        if (!state_find(&c->st, id))
                return -ENOENT;
        r = state_clone(&c->st, &st);
        if (r < 0)
                return r;
        s = state_find(&st, id);
        if (pinned)
                s->pinned = value;
        else
                s->known_good = value;
        r = catalog_write(c, &st);
        if (r < 0)
                return r;
        return catalog_adopt(c, &st);
}

int catalog_set_pinned(Catalog *c, const char *id, bool pinned) {
        assert_return(c, -EINVAL);
        assert_return(id, -EINVAL);
        return catalog_set_flag(c, id, true, pinned);
}

int catalog_set_known_good(Catalog *c, const char *id) {
        assert_return(c, -EINVAL);
        assert_return(id, -EINVAL);
        return catalog_set_flag(c, id, false, true);
}

/* Why id may not be dropped, or 0. */
static int catalog_may_drop(const Catalog *c, const char *id, bool running) {
        const Snapshot *s = state_find(&c->st, id), *good = catalog_last_known_good(c);

        if (!s)
                return -ENOENT;
        if (!s->parent)
                return -EPERM;          /* the base image is not ours to drop */
        if (s->pinned || s == good)
                return -EPERM;
        if (c->stage && streq_ptr(c->stage_parent, id))
                return -EBUSY;          /* the staging overlay builds on it */
        if (running && state_in_active_chain(&c->st, id))
                return -EBUSY;
        return 0;
}

/* Drop snapshot id: its children absorb its data and build on its parent. */
static int catalog_drop(Catalog *c, const char *id) {
        _cleanup_(state_done) CatalogState st = {};
        _cleanup_free_ char *layer = NULL, *parent_id = NULL, *parent_layer = NULL;
        const Snapshot *x = state_find(&c->st, id), *parent;
        int r;

        /* Copies: c->st is replaced below. */
        assert(x && x->parent);
        parent = state_find(&c->st, x->parent);
        layer = strdup(x->layer);
        parent_id = strdup(x->parent);
        parent_layer = strdup(parent->layer);
        if (!layer || !parent_id || !parent_layer)
                return -ENOMEM;

        if (state_has_children(&c->st, id)) {
                /* Say what is going on before the pointers change, so that an
                 * open after a kill knows to read them. */
                r = state_clone(&c->st, &st);
                if (r < 0)
                        return r;
                st.merging = strdup(id);
                if (!st.merging)
                        return -ENOMEM;
                r = catalog_write(c, &st);
                if (r < 0)
                        return r;
                r = catalog_adopt(c, &st);
                if (r < 0)
                        return r;
                crash_point("delete-marked");

                for (size_t i = 0; i < c->st.n + 1; i++) {
                        const char *child;

                        if (i < c->st.n) {
                                if (!streq_ptr(c->st.snapshots[i].parent, id))
                                        continue;
                                child = c->st.snapshots[i].layer;
                        } else {
                                if (!streq(c->st.active_parent, id))
                                        continue;
                                child = c->active_path;
                        }
                        log_debug("%s: merging snapshot %s into %s", c->dir, id, child);
                        r = disk_rebase(child, parent_layer);
                        if (r >= 0)
                                r = fsync_path(child);
                        if (r < 0) {
                                /* Some children may have moved: the catalog says
                                 * "merging", the next open reads the pointers. */
                                c->broken = true;
                                return r;
                        }
                        crash_point("delete-rebased");
                }
        }

        r = state_clone(&c->st, &st);
        if (r < 0)
                return r;
        for (size_t i = 0; i < st.n; i++)
                if (streq_ptr(st.snapshots[i].parent, id)) {
                        free(st.snapshots[i].parent);
                        st.snapshots[i].parent = strdup(parent_id);
                        if (!st.snapshots[i].parent)
                                return -ENOMEM;
                }
        if (streq(st.active_parent, id)) {
                free(st.active_parent);
                st.active_parent = strdup(parent_id);
                if (!st.active_parent)
                        return -ENOMEM;
        }
        free(st.merging);
        st.merging = NULL;
        state_remove(&st, state_find(&st, id));
        r = catalog_write(c, &st);
        if (r < 0)
                return r;
        crash_point("delete-committed");
        catalog_unlink_path(c, layer);
        log_debug("%s: snapshot %s dropped", c->dir, id);
        return catalog_adopt(c, &st);
}

int catalog_delete(Catalog *c, const char *id, bool running) {
        int r;

        assert_return(c, -EINVAL);
        assert_return(id, -EINVAL);

        if (c->broken)
                return -EIO;
        r = catalog_may_drop(c, id, running);
        if (r < 0)
                return r;
        return catalog_drop(c, id);
}

int catalog_retain(Catalog *c, unsigned keep_last, bool running, unsigned *ret_dropped) {
        _cleanup_strv_free_ char **victims = NULL;
        const Snapshot *good;
        unsigned kept = 0, dropped = 0;
        int r;

        assert_return(c, -EINVAL);

        if (c->broken)
                return -EIO;
        good = catalog_last_known_good(c);
        /* Newest first: the newest keep_last (the base not counted) stay,
         * and so does every protected one among the older ones. */
        for (size_t i = c->st.n; i > 0; i--) {
                const Snapshot *s = &c->st.snapshots[i - 1];

                if (!s->parent)
                        continue;
                if (kept < keep_last) {
                        kept++;
                        continue;
                }
                if (s->pinned || s == good || streq(s->id, c->st.active_parent) ||
                    (c->stage && streq_ptr(c->stage_parent, s->id)))
                        continue;
                if (running && state_in_active_chain(&c->st, s->id))
                        return -EBUSY;
                r = strv_extend(&victims, s->id);
                if (r < 0)
                        return r;
        }
        /* Oldest first. */
        for (size_t i = strv_length(victims); i > 0; i--) {
                r = catalog_drop(c, victims[i - 1]);
                if (r < 0)
                        return r;
                dropped++;
        }
        if (ret_dropped)
                *ret_dropped = dropped;
        return 0;
}

/* ---- staging ----------------------------------------------------------------------- */

int catalog_stage(Catalog *c, const char *id, char **ret_path) {
        _cleanup_free_ char *name = NULL, *path = NULL, *ret = NULL, *parent = NULL;
        const Snapshot *s;
        int r;

        assert_return(c, -EINVAL);
        assert_return(id, -EINVAL);
        assert_return(ret_path, -EINVAL);

        if (c->broken)
                return -EIO;
        if (c->stage)
                return -EBUSY;
        s = state_find(&c->st, id);
        if (!s)
                return -ENOENT;

        name = catalog_new_overlay_name(c, &c->st, "stage-");
        if (!name)
                return -ENOMEM;
        path = path_join(c->dir, name);
        ret = strdup(path ?: "");
        parent = strdup(id);
        if (!path || !ret || !parent)
                return -ENOMEM;
        r = disk_create_overlay(s->layer, path);
        if (r < 0)
                return r;
        log_debug("%s: staging overlay %s on snapshot %s", c->dir, name, id);
        c->stage = TAKE_PTR(path);
        c->stage_parent = TAKE_PTR(parent);
        *ret_path = TAKE_PTR(ret);
        return 0;
}

int catalog_promote(Catalog *c) {
        _cleanup_free_ char *active = NULL, *active_path = NULL;
        int r;

        assert_return(c, -EINVAL);
        assert_return(c->stage, -EINVAL);

        if (c->broken)
                return -EIO;
        active = catalog_new_overlay_name(c, &c->st, "active-");
        if (!active)
                return -ENOMEM;
        active_path = path_join(c->dir, active);
        if (!active_path)
                return -ENOMEM;

        /* Nothing builds on a staging overlay: a rename is enough. Killed
         * before the commit, the new name is one no entry claims. */
        r = fsync_path(c->stage);
        if (r < 0)
                return r;
        if (rename(c->stage, active_path) < 0)
                return -errno;
        crash_point("promote-renamed");

        r = catalog_switch_active(c, active, c->stage_parent, "promote-committed");
        if (r < 0) {
                if (!c->broken)
                        (void) rename(active_path, c->stage);
                return r;
        }
        log_debug("%s: staging overlay promoted to %s", c->dir, active);
        free(c->stage);
        free(c->stage_parent);
        c->stage = c->stage_parent = NULL;
        return 0;
}

int catalog_discard_stage(Catalog *c) {
        assert_return(c, -EINVAL);

        if (!c->stage)
                return 0;
        if (unlink(c->stage) < 0 && errno != ENOENT)
                return -errno;
        log_debug("%s: staging overlay %s discarded", c->dir, c->stage);
        free(c->stage);
        free(c->stage_parent);
        c->stage = c->stage_parent = NULL;
        return 0;
}

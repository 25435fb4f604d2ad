/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The desktop's crash history and last trial verdict: history.json in the
 * state dir (format in recovery.h). The guard (oobctl desktop watch, later
 * oobd) and oobctl desktop trial both write it, from different processes:
 * every read-modify-write holds history.lock, and the file itself is only
 * ever replaced atomically, so readers need no lock.
 *
 * jansson is used here only: the file is ours, but it is read back after
 * power cuts and hand edits, so it is validated field by field like any
 * input; a file that fails is kept aside (history.json.bad) as evidence and
 * a new one started, so a bad file never stops crashes from being recorded.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "recovery.h"

#define HISTORY_FILE "history.json"
#define HISTORY_BAD "history.json.bad"
#define HISTORY_LOCK "history.lock"
#define HISTORY_VERSION 1
#define HISTORY_MAX_BYTES (4U * 1024U * 1024U)
#define TEXT_MAX 1024

/* jansson's own json_decrefp() (json_auto_t) accepts NULL. */
#define _cleanup_json_ _cleanup_(json_decrefp)

void crash_record_done(CrashRecord *r) {
        if (!r)
                return;
        crash_info_done(&r->crash);
        free(r->snapshot);
        free(r->action);
        *r = (CrashRecord){};
}

void crash_history_free(CrashRecord *r, size_t n) {
        for (size_t i = 0; r && i < n; i++)
                crash_record_done(&r[i]);
        free(r);
}

/* ---- values ---------------------------------------------------------------- */

static json_t *hex64(uint64_t v) {
        char buf[2 + 16 + 1];

        snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
        return json_string(buf);
}

/* "0x" and 1 to 16 hex digits, nothing else. */
static int parse_hex64(const json_t *j, uint64_t *ret) {
        const char *s = json_string_value(j);
        uint64_t v = 0;
        size_t n;

        if (!s || !strneq(s, "0x", 2))
                return -EPROTO;
        n = strlen(s + 2);
        if (n == 0 || n > 16)
                return -EPROTO;
        for (const char *p = s + 2; *p; p++) {
                int d;

                if (*p >= '0' && *p <= '9')
                        d = *p - '0';
                else if (*p >= 'a' && *p <= 'f')
                        d = *p - 'a' + 10;
                else if (*p >= 'A' && *p <= 'F')
                        d = *p - 'A' + 10;
                else
                        return -EPROTO;
                v = (v << 4) | (uint64_t) d;
        }
        *ret = v;
        return 0;
}

/* An optional string: absent or null is NULL. */
static int parse_text(const json_t *o, const char *key, char **ret) {
        const json_t *j = json_object_get(o, key);
        const char *s;

        if (!j || json_is_null(j)) {
                *ret = NULL;
                return 0;
        }
        s = json_string_value(j);
        if (!s || strlen(s) > TEXT_MAX || strlen(s) != json_string_length(j))
                return -EPROTO;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int parse_int(const json_t *o, const char *key, int64_t *ret) {
        const json_t *j = json_object_get(o, key);

        if (!json_is_integer(j) || json_integer_value(j) < 0)
                return -EPROTO;
        *ret = (int64_t) json_integer_value(j);
        return 0;
}

static json_t *text(const char *s) {
        return s ? json_string(s) : json_null();
}

/* The crash fields shared by records and verdicts. */
static int crash_to_json(json_t *o, const CrashInfo *c) {
        json_t *params;

        if (c->hyperv) {
                params = json_array();
                if (!params)
                        return -ENOMEM;
                for (size_t i = 0; i < ELEMENTSOF(c->params); i++)
                        if (json_array_append_new(params, hex64(c->params[i])) < 0) {
                                json_decref(params);
                                return -ENOMEM;
                        }
                if (json_object_set_new(o, "stop_code", hex64(c->stop_code)) < 0 ||
                    json_object_set_new(o, "params", params) < 0)
                        return -ENOMEM;
        } else if (json_object_set_new(o, "stop_code", json_null()) < 0 ||
                   json_object_set_new(o, "params", json_null()) < 0)
                return -ENOMEM;
        if (json_object_set_new(o, "reason", text(c->reason)) < 0)
                return -ENOMEM;
        return 0;
}

static int crash_from_json(const json_t *o, CrashInfo *ret) {
        const json_t *code = json_object_get(o, "stop_code"), *params = json_object_get(o, "params");
        CrashInfo c = {};
        int r;

        if (code && !json_is_null(code)) {
                if (!json_is_array(params) || json_array_size(params) != ELEMENTSOF(c.params))
                        return -EPROTO;
                r = parse_hex64(code, &c.stop_code);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ELEMENTSOF(c.params); i++) {
                        r = parse_hex64(json_array_get(params, i), &c.params[i]);
                        if (r < 0)
                                return r;
                }
                c.hyperv = true;
        } else if (params && !json_is_null(params))
                return -EPROTO;
        r = parse_text(o, "reason", &c.reason);
        if (r < 0)
                return r;
        *ret = c;
        return 0;
}

static json_t *record_to_json(const CrashRecord *rec) {
        _cleanup_json_ json_t *o = json_object();

        if (!o)
                return NULL;
        if (json_object_set_new(o, "usec", json_integer(rec->usec)) < 0 ||
            json_object_set_new(o, "type", json_string(desktop_event_type_to_string(rec->type))) < 0 ||
            crash_to_json(o, &rec->crash) < 0 ||
            json_object_set_new(o, "snapshot", text(rec->snapshot)) < 0 ||
            json_object_set_new(o, "action", text(rec->action)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static int record_from_json(const json_t *o, CrashRecord *ret) {
        _cleanup_(crash_record_done) CrashRecord rec = {};
        const char *type;
        int r;

        if (!json_is_object(o))
                return -EPROTO;
        r = parse_int(o, "usec", &rec.usec);
        if (r < 0)
                return r;
        type = json_string_value(json_object_get(o, "type"));
        rec.type = desktop_event_type_from_string(type);
        if (rec.type != DESKTOP_EVENT_CRASHED && rec.type != DESKTOP_EVENT_WATCHDOG)
                return -EPROTO;
        r = crash_from_json(o, &rec.crash);
        if (r < 0)
                return r;
        r = parse_text(o, "snapshot", &rec.snapshot);
        if (r < 0)
                return r;
        r = parse_text(o, "action", &rec.action);
        if (r < 0)
                return r;
        *ret = rec;
        rec = (CrashRecord){};
        return 0;
}

/* ---- the file ---------------------------------------------------------------- */

/* The document as stored; -ENOENT when there is none, -EPROTO when it is not
 * a version 1 history (records are checked by their readers). */
static int document_read(const char *state_dir, json_t **ret) {
        _cleanup_free_ char *path = path_join(state_dir, HISTORY_FILE), *data = NULL;
        _cleanup_json_ json_t *doc = NULL;
        const json_t *crashes;
        size_t size;
        int r;

        if (!path)
                return -ENOMEM;
        r = read_full_file(path, HISTORY_MAX_BYTES, &data, &size);
        if (r == -EFBIG)
                return -EPROTO;
        if (r < 0)
                return r;
        doc = json_loadb(data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(doc) || json_integer_value(json_object_get(doc, "version")) != HISTORY_VERSION)
                return -EPROTO;
        crashes = json_object_get(doc, "crashes");
        if (!json_is_array(crashes) || json_array_size(crashes) > CRASH_HISTORY_MAX)
                return -EPROTO;
        *ret = TAKE_PTR(doc);
        return 0;
}

static json_t *document_new(void) {
        _cleanup_json_ json_t *doc = json_object();

        if (!doc || json_object_set_new(doc, "version", json_integer(HISTORY_VERSION)) < 0 ||
            json_object_set_new(doc, "crashes", json_array()) < 0)
                return NULL;
        return TAKE_PTR(doc);
}

static int lock_history(const char *state_dir, int *ret_fd) {
        _cleanup_free_ char *path = path_join(state_dir, HISTORY_LOCK);
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (!path)
                return -ENOMEM;
        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return r;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Under the lock: the current document, or a new one (an unreadable file is
 * moved aside first). */
static int document_load_for_update(const char *state_dir, json_t **ret) {
        json_t *doc = NULL;
        int r;

        r = document_read(state_dir, &doc);
        if (r == -EPROTO) {
                _cleanup_free_ char *from = path_join(state_dir, HISTORY_FILE),
                                    *to = path_join(state_dir, HISTORY_BAD);

                if (!from || !to)
                        return -ENOMEM;
                log_debug("%s is unreadable, keeping it as %s and starting a new one.", from, to);
                if (rename(from, to) < 0)
                        return -errno;
                r = -ENOENT;
        }
        if (r == -ENOENT) {
                doc = document_new();
                if (!doc)
                        return -ENOMEM;
                r = 0;
        }
        if (r < 0)
                return r;
        *ret = doc;
        return 0;
}

static int document_write(const char *state_dir, const json_t *doc) {
        _cleanup_free_ char *path = path_join(state_dir, HISTORY_FILE), *data = NULL;

        if (!path)
                return -ENOMEM;
        data = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!data)
                return -ENOMEM;
        return write_file_atomic(path, data, strlen(data), 0644);
}

int crash_history_append(const char *state_dir, const CrashRecord *rec) {
        _cleanup_close_ int lock = -EBADF;
        _cleanup_json_ json_t *doc = NULL;
        json_t *crashes, *o;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(rec, -EINVAL);
        assert_return(rec->type == DESKTOP_EVENT_CRASHED || rec->type == DESKTOP_EVENT_WATCHDOG, -EINVAL);

        r = lock_history(state_dir, &lock);
        if (r < 0)
                return r;
        r = document_load_for_update(state_dir, &doc);
        if (r < 0)
                return r;
        crashes = json_object_get(doc, "crashes");
        o = record_to_json(rec);
        if (!o || json_array_append_new(crashes, o) < 0)
                return -ENOMEM;
        while (json_array_size(crashes) > CRASH_HISTORY_MAX)
                if (json_array_remove(crashes, 0) < 0)
                        return -ENOMEM;
        return document_write(state_dir, doc);
}

int crash_history_load(const char *state_dir, CrashRecord **ret, size_t *ret_n) {
        _cleanup_json_ json_t *doc = NULL;
        CrashRecord *records = NULL;
        const json_t *crashes;
        size_t n;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_n, -EINVAL);

        r = document_read(state_dir, &doc);
        if (r == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return r;
        crashes = json_object_get(doc, "crashes");
        n = json_array_size(crashes);
        if (n > 0) {
                records = calloc(n, sizeof(*records));
                if (!records)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = record_from_json(json_array_get(crashes, i), &records[i]);
                if (r < 0) {
                        crash_history_free(records, n);
                        return r;
                }
        }
        *ret = records;
        *ret_n = n;
        return 0;
}

int trial_verdict_save(const char *state_dir, const TrialVerdict *v, int64_t usec) {
        _cleanup_close_ int lock = -EBADF;
        _cleanup_json_ json_t *doc = NULL, *o = NULL;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(v, -EINVAL);
        assert_return(trial_result_to_string(v->result) && trial_failure_to_string(v->failure), -EINVAL);

        o = json_object();
        if (!o || json_object_set_new(o, "usec", json_integer(usec)) < 0 ||
            json_object_set_new(o, "result", json_string(trial_result_to_string(v->result))) < 0 ||
            json_object_set_new(o, "failure", json_string(trial_failure_to_string(v->failure))) < 0 ||
            crash_to_json(o, &v->crash) < 0 ||
            json_object_set_new(o, "boot_usec", json_integer((json_int_t) v->boot_usec)) < 0)
                return -ENOMEM;

        r = lock_history(state_dir, &lock);
        if (r < 0)
                return r;
        r = document_load_for_update(state_dir, &doc);
        if (r < 0)
                return r;
        if (json_object_set(doc, "last_trial", o) < 0)
                return -ENOMEM;
        return document_write(state_dir, doc);
}

int trial_verdict_load(const char *state_dir, TrialVerdict *ret, int64_t *ret_usec) {
        _cleanup_json_ json_t *doc = NULL;
        _cleanup_(trial_verdict_done) TrialVerdict v = {};
        const json_t *o;
        int64_t usec, boot;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret, -EINVAL);

        r = document_read(state_dir, &doc);
        if (r < 0)
                return r;
        o = json_object_get(doc, "last_trial");
        if (!o)
                return -ENOENT;
        if (!json_is_object(o))
                return -EPROTO;
        r = parse_int(o, "usec", &usec);
        if (r < 0)
                return r;
        r = parse_int(o, "boot_usec", &boot);
        if (r < 0)
                return r;
        v.boot_usec = (uint64_t) boot;
        v.result = trial_result_from_string(json_string_value(json_object_get(o, "result")));
        v.failure = trial_failure_from_string(json_string_value(json_object_get(o, "failure")));
        if (v.result < 0 || v.failure < 0)
                return -EPROTO;
        r = crash_from_json(o, &v.crash);
        if (r < 0)
                return r;
        if (ret_usec)
                *ret_usec = usec;
        *ret = v;
        v = (TrialVerdict){};
        return 0;
}

/* alert.json is written by guard.c (lib's JSON writer); read back here,
 * where the parser is. */
int guard_alert_summary(const char *state_dir, char **ret_cause, int64_t *ret_usec) {
        _cleanup_free_ char *text = NULL, *cause = NULL;
        _cleanup_json_ json_t *doc = NULL;
        int64_t usec;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret_cause, -EINVAL);

        r = guard_alert_read(state_dir, &text);
        if (r < 0)
                return r;
        doc = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(doc))
                return -EPROTO;
        r = parse_int(doc, "usec", &usec);
        if (r < 0)
                return r;
        r = parse_text(doc, "cause", &cause);
        if (r < 0)
                return r;
        if (!cause)
                return -EPROTO;
        if (ret_usec)
                *ret_usec = usec;
        *ret_cause = TAKE_PTR(cause);
        return 0;
}

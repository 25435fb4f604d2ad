/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The update history (format in oobd.h): written by job_finished(), read by
 * GetHistory(). The file is small (at most UPDATE_HISTORY_MAX entries) and
 * read only when asked for, so nothing of it stays in memory while idle.
 */

#include <jansson.h>

#include "oobd.h"

/* 200 entries of a few hundred bytes; anything far larger is not ours. */
#define HISTORY_FILE_MAX (4U * 1024U * 1024U)

/* jansson.h provides json_decrefp() for cleanup. */
#define _cleanup_json_ _cleanup_(json_decrefp)

_printf_(2, 3) static int bad(char **ret_error, const char *format, ...) {
        va_list ap;
        int r;

        free(*ret_error);
        *ret_error = NULL;
        va_start(ap, format);
        r = vasprintf(ret_error, format, ap);
        va_end(ap);
        return r < 0 ? -ENOMEM : -EPROTO;
}

static bool is_string_or_null(const json_t *v) {
        return !v || json_is_null(v) || json_is_string(v);
}

/* Is member key of o a string that the table lookup accepts (or null when allowed)? */
static bool is_enum(const json_t *o, const char *key, int (*lookup)(const char *), bool null_ok) {
        const json_t *v = json_object_get(o, key);

        if (null_ok && (!v || json_is_null(v)))
                return true;
        return json_is_string(v) && lookup(json_string_value(v)) >= 0;
}

static int kind_lookup(const char *s) {
        JobKind k = job_kind_from_string(s);
        return k == JOB_CHECK ? -EINVAL : (int) k;
}
static int outcome_lookup(const char *s) {
        JobOutcome o = job_outcome_from_string(s);
        return o == JOB_AVAILABLE || o == JOB_UP_TO_DATE ? -EINVAL : (int) o;
}
static int step_lookup(const char *s) {
        return (int) job_step_from_string(s);
}

static int validate(const char *path, const json_t *root, char **ret_error) {
        const json_t *list, *e;
        size_t i;

        if (!json_is_object(root))
                return bad(ret_error, "%s: not a JSON object", path);
        if (!json_is_integer(json_object_get(root, "version")) ||
            json_integer_value(json_object_get(root, "version")) != 1)
                return bad(ret_error, "%s: \"version\" is not 1", path);
        list = json_object_get(root, "transactions");
        if (!json_is_array(list))
                return bad(ret_error, "%s: \"transactions\" is not an array", path);
        if (json_array_size(list) > UPDATE_HISTORY_MAX)
                return bad(ret_error, "%s: more than %d transactions", path, UPDATE_HISTORY_MAX);

        json_array_foreach(list, i, e) {
                const char *problem = NULL;
                const json_t *id = json_object_get(e, "id");

                if (!json_is_object(e))
                        problem = "not an object";
                else if (!json_is_string(id) || json_string_length(id) == 0)
                        problem = "\"id\" is not a non-empty string";
                else if (!is_enum(e, "kind", kind_lookup, false))
                        problem = "\"kind\" is not update or resume";
                else if (!json_is_integer(json_object_get(e, "started")) ||
                         !json_is_integer(json_object_get(e, "finished")))
                        problem = "\"started\" or \"finished\" is not an integer";
                else if (!is_enum(e, "outcome", outcome_lookup, false))
                        problem = "\"outcome\" is not a transaction's outcome";
                else if (!json_is_string(json_object_get(e, "summary")))
                        problem = "\"summary\" is not a string";
                else if (!is_string_or_null(json_object_get(e, "manifest")) ||
                         !is_string_or_null(json_object_get(e, "snapshot")))
                        problem = "\"manifest\" or \"snapshot\" is not a string or null";
                else if (!is_enum(e, "failed_step", step_lookup, true))
                        problem = "\"failed_step\" is not a step or null";
                if (problem)
                        return bad(ret_error, "%s: transaction %zu: %s", path, i + 1, problem);
        }
        return 0;
}

/* The history at path, validated; a new empty one when the file is missing. */
static int history_load(const char *path, json_t **ret, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        _cleanup_json_ json_t *root = NULL;
        json_error_t err;
        size_t size;
        int r;

        r = read_full_file(path, HISTORY_FILE_MAX, &text, &size);
        if (r == -ENOENT) {
                root = json_pack("{s:i, s:[]}", "version", 1, "transactions");
                if (!root)
                        return -ENOMEM;
                *ret = TAKE_PTR(root);
                return 0;
        }
        if (r == -EFBIG)
                return bad(ret_error, "%s: larger than %u bytes", path, HISTORY_FILE_MAX);
        if (r < 0) {
                (void) bad(ret_error, "%s: %s", path, strerror(-r));
                return r;
        }
        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return bad(ret_error, "%s:%d: %s", path, err.line, err.text);
        r = validate(path, root, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(root);
        return 0;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static int set_new(json_t *o, const char *key, json_t *v) {
        if (!v || json_object_set_new(o, key, v) < 0)
                return -ENOMEM;
        return 0;
}

int history_append(const char *state_dir, const HistoryEntry *e) {
        _cleanup_free_ char *path = NULL, *error = NULL, *text = NULL;
        _cleanup_json_ json_t *root = NULL, *entry = NULL;
        json_t *list;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(e && e->id && e->summary, -EINVAL);
        assert_return(e->kind == JOB_UPDATE || e->kind == JOB_RESUME, -EINVAL);

        path = path_join(state_dir, UPDATE_HISTORY_FILE);
        if (!path)
                return -ENOMEM;
        r = mkdir_p(state_dir, 0755);
        if (r < 0)
                return r;

        r = history_load(path, &root, &error);
        if (r == -EPROTO) {
                _cleanup_free_ char *aside = NULL;

                /* Keep the evidence, start over: losing old entries beats losing new ones. */
                if (asprintf(&aside, "%s.bad", path) < 0)
                        return -ENOMEM;
                if (rename(path, aside) < 0)
                        return -errno;
                log_warning("%s; kept it as %s and started a new history.", error, aside);
                r = history_load(path, &root, &error);
        }
        if (r < 0)
                return r;

        entry = json_object();
        if (!entry)
                return -ENOMEM;
        if (set_new(entry, "id", json_string(e->id)) < 0 ||
            set_new(entry, "kind", json_string(job_kind_to_string(e->kind))) < 0 ||
            set_new(entry, "started", json_integer(e->started)) < 0 ||
            set_new(entry, "finished", json_integer(e->finished)) < 0 ||
            set_new(entry, "outcome", json_string(job_outcome_to_string(e->outcome))) < 0 ||
            /* json_string() refuses invalid UTF-8: never lose an entry to a summary */
            set_new(entry, "summary", json_string(e->summary) ?: json_string("(summary not valid UTF-8)")) <
                    0 ||
            set_new(entry, "manifest", string_or_null(e->manifest)) < 0 ||
            set_new(entry, "snapshot", string_or_null(e->snapshot)) < 0 ||
            set_new(entry, "failed_step",
                    string_or_null(e->failed_step >= 0 ? job_step_to_string(e->failed_step) : NULL)) < 0)
                return -ENOMEM;

        list = json_object_get(root, "transactions");
        if (json_array_append(list, entry) < 0)
                return -ENOMEM;
        while (json_array_size(list) > UPDATE_HISTORY_MAX)
                json_array_remove(list, 0);

        text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        {
                _cleanup_free_ char *line = NULL;

                if (asprintf(&line, "%s\n", text) < 0)
                        return -ENOMEM;
                if (strlen(line) > HISTORY_FILE_MAX)
                        return -EFBIG;
                return write_file_atomic(path, line, strlen(line), 0644);
        }
}

int history_read_json(const char *state_dir, char **ret, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *root = NULL;
        char *text;
        int r;

        assert_return(state_dir, -EINVAL);
        assert_return(ret, -EINVAL);
        assert_return(ret_error, -EINVAL);

        path = path_join(state_dir, UPDATE_HISTORY_FILE);
        if (!path)
                return -ENOMEM;
        r = history_load(path, &root, ret_error);
        if (r < 0)
                return r;
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

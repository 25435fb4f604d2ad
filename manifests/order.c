/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The helpdesk order (format "oob-order/1"): one action for one device,
 * signed by the helpdesk role. Schema in FORMATS.md.
 *
 * This parser checks the document only. Whether the order is for this
 * device, newer than the last one executed (sequence) and not expired is for
 * the caller to decide against its own state and clock.
 */

#include "yaml-internal.h"

#define ORDER_FORMAT "oob-order/1"
#define DEVICE_MAX 64
#define SNAPSHOT_MAX 128
#define SLOT_MAX 64
#define REASON_MAX 4096
#define PATH_MAX_LENGTH 4096

static const char *const order_action_table[_ORDER_ACTION_MAX] = {
        [ORDER_ROLLBACK] = "rollback",   [ORDER_REIMAGE] = "reimage", [ORDER_COLLECT] = "collect",
        [ORDER_SWITCH_OS] = "switch-os", [ORDER_PIN] = "pin",
};

DEFINE_STRING_TABLE_LOOKUP(order_action, OrderAction);

/* What "collect" may upload; "all" when the order does not say. */
static const char *const collect_what[] = {"crash-dumps", "logs", "all", NULL};

/* The arguments each action takes: required, optional, or not at all. */
typedef enum ArgUse { ARG_NO, ARG_OPTIONAL, ARG_REQUIRED } ArgUse;

static const struct {
        ArgUse snapshot, image, what, slot;
} action_args[_ORDER_ACTION_MAX] = {
        [ORDER_ROLLBACK] = {.snapshot = ARG_OPTIONAL}, [ORDER_REIMAGE] = {.image = ARG_REQUIRED},
        [ORDER_COLLECT] = {.what = ARG_OPTIONAL},      [ORDER_SWITCH_OS] = {.slot = ARG_REQUIRED},
        [ORDER_PIN] = {.snapshot = ARG_REQUIRED},
};

Order *order_free(Order *o) {
        if (!o)
                return NULL;
        free(o->device);
        free(o->snapshot);
        free(o->image);
        free(o->what);
        free(o->slot);
        free(o->reason);
        free(o);
        return NULL;
}

/* One argument: refused when the action does not use it, required when it
 * needs it, then checked by valid() (a static problem description or NULL). */
static int parse_arg(const YNode *root, OrderAction action, const char *key, ArgUse use, size_t max,
                     const char *(*valid)(const char *s), char **ret, char **ret_error) {
        const YNode *v = ynode_get(root, key);
        _cleanup_free_ char *s = NULL;
        const char *problem;
        int r;

        if (!v) {
                if (use == ARG_REQUIRED)
                        return ynode_error(root, ret_error, -EPROTO,
                                           "missing required key '%s' for action '%s'", key,
                                           order_action_to_string(action));
                *ret = NULL;
                return 0;
        }
        if (use == ARG_NO)
                for (size_t i = 0; i < root->n_items; i++)
                        if (root->items[i] == v)
                                return ynode_error(root->keys[i], ret_error, -EPROTO,
                                                   "'%s' is not used by action '%s'", key,
                                                   order_action_to_string(action));

        r = ynode_string(v, key, max, &s, ret_error);
        if (r < 0)
                return r;
        problem = valid(s);
        if (problem)
                return ynode_error(v, ret_error, -EPROTO, "'%s': %s", key, problem);
        *ret = TAKE_PTR(s);
        return 0;
}

static const char *snapshot_problem(const char *s) {
        return manifest_name_is_safe(s, SNAPSHOT_MAX) ? NULL
                                                      : "names use only A-Z a-z 0-9 . _ - (at most 128)";
}

static const char *slot_problem(const char *s) {
        return manifest_name_is_safe(s, SLOT_MAX) ? NULL : "names use only A-Z a-z 0-9 . _ - (at most 64)";
}

static const char *image_problem(const char *s) {
        return tuf_target_path_is_valid(s)
                       ? NULL
                       : "an image is a target path: relative, '/'-separated, no empty, '.' or "
                         "'..' parts";
}

static const char *what_problem(const char *s) {
        for (const char *const *w = collect_what; *w; w++)
                if (streq(s, *w))
                        return NULL;
        return "must be crash-dumps, logs or all";
}

int order_parse(const void *data, size_t size, Order **ret, char **ret_error) {
        static const char *const keys[] = {
                "format", "device", "sequence", "expires", "action", "snapshot",
                "image",  "what",   "slot",     "reason",  NULL,
        };
        static const char what[] = "the order";
        _cleanup_(ynode_freep) YNode *root = NULL;
        _cleanup_(order_freep) Order *o = NULL;
        _cleanup_free_ char *expires = NULL, *action = NULL;
        char canonical[21];
        int r;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        r = yaml_tree_parse(data, size, &root, ret_error);
        if (r < 0)
                return r;
        r = ymap_check_format(root, what, ORDER_FORMAT, ret_error);
        if (r < 0)
                return r;
        r = ymap_check(root, what, keys, ret_error);
        if (r < 0)
                return r;

        o = calloc(1, sizeof(Order));
        if (!o)
                return -ENOMEM;

        r = ymap_required_string(root, what, "device", DEVICE_MAX, &o->device, ret_error);
        if (r < 0)
                return r;
        if (!manifest_name_is_safe(o->device, DEVICE_MAX))
                return ynode_error(ynode_get(root, "device"), ret_error, -EPROTO,
                                   "'device' must be 1 to 64 of A-Z a-z 0-9 . _ - (and not '.' or '..')");

        r = ymap_required_uint(root, what, "sequence", 1, UINT64_MAX, &o->sequence, ret_error);
        if (r < 0)
                return r;

        r = ymap_required_string(root, what, "expires", 64, &expires, ret_error);
        if (r < 0)
                return r;
        /* Formatting back must give the same text: this also refuses dates
         * that do not exist (2026-02-30), which a normalizing parser would
         * otherwise move into March. */
        if (parse_iso8601_utc(expires, &o->expires) < 0 || format_iso8601_utc(o->expires, canonical) < 0 ||
            !streq(canonical, expires))
                return ynode_error(ynode_get(root, "expires"), ret_error, -EPROTO,
                                   "'expires' must be a UTC time like 2026-11-22T00:00:00Z");

        r = ymap_required_string(root, what, "action", 32, &action, ret_error);
        if (r < 0)
                return r;
        o->action = order_action_from_string(action);
        if (o->action < 0)
                return ynode_error(ynode_get(root, "action"), ret_error, -EPROTO,
                                   "'action' must be one of rollback, reimage, collect, switch-os, pin");

        r = parse_arg(root, o->action, "snapshot", action_args[o->action].snapshot, SNAPSHOT_MAX,
                      snapshot_problem, &o->snapshot, ret_error);
        if (r < 0)
                return r;
        r = parse_arg(root, o->action, "image", action_args[o->action].image, PATH_MAX_LENGTH, image_problem,
                      &o->image, ret_error);
        if (r < 0)
                return r;
        r = parse_arg(root, o->action, "what", action_args[o->action].what, 32, what_problem, &o->what,
                      ret_error);
        if (r < 0)
                return r;
        if (o->action == ORDER_COLLECT && !o->what) {
                o->what = strdup("all");
                if (!o->what)
                        return -ENOMEM;
        }
        r = parse_arg(root, o->action, "slot", action_args[o->action].slot, SLOT_MAX, slot_problem, &o->slot,
                      ret_error);
        if (r < 0)
                return r;

        /* The reason is what the audit trail shows: an order without one is refused. */
        r = ymap_required_string(root, what, "reason", REASON_MAX, &o->reason, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

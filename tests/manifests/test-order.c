/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The helpdesk order schema (manifests/order.c, FORMATS.md): every rule with
 * an accepted and a refused case, refusals naming line, column and key.
 */
#include <check.h>
#include <dirent.h>
#include <libgen.h>

#include "manifests.h"

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Four lines; the action follows on line 5, its arguments and reason after. */
#define HEAD "format: oob-order/1\ndevice: laptop-0042\nsequence: 7\nexpires: 2026-11-22T00:00:00Z\n"
#define REASON "reason: ticket 1\n"

static Order *parse_ok(const char *doc) {
        _cleanup_free_ char *err = NULL;
        Order *o = NULL;
        int r = order_parse(doc, strlen(doc), &o, &err);

        ck_assert_msg(r == 0, "parse failed (%d): %s\n%s", r, err ?: "(no message)", doc);
        ck_assert_ptr_null(err);
        ck_assert_ptr_nonnull(o);
        return o;
}

#define assert_refused(doc, pos, ...)                                                                  \
        do {                                                                                           \
                _cleanup_free_ char *_err = NULL;                                                      \
                Order *_o = NULL;                                                                      \
                const char *_needles[] = {"", ##__VA_ARGS__};                                          \
                int _r = order_parse((doc), strlen(doc), &_o, &_err);                                  \
                ck_assert_msg(_r == -EPROTO, "expected -EPROTO, got %d for:\n%s", _r, (doc));          \
                ck_assert_ptr_null(_o);                                                                \
                ck_assert_ptr_nonnull(_err);                                                           \
                ck_assert_msg(strneq(_err, pos ": ", strlen(pos ": ")), "error '%s' is not at '%s'",   \
                              _err ?: "", pos);                                                        \
                for (size_t _i = 0; _i < ELEMENTSOF(_needles); _i++)                                   \
                        ck_assert_msg(strstr(_err, _needles[_i]), "error '%s' lacks '%s'", _err ?: "", \
                                      _needles[_i]);                                                   \
        } while (0)

START_TEST(test_rollback) {
        _cleanup_(order_freep) Order *o = parse_ok("format: oob-order/1\n"
                                                   "device: laptop-0042\n"
                                                   "sequence: 7\n"
                                                   "expires: 2026-11-22T00:00:00Z\n"
                                                   "action: rollback\n"
                                                   "snapshot: known-good      # optional\n"
                                                   "reason: \"ticket 4711: BSOD after driver update\"\n");
        _cleanup_(order_freep) Order *plain = parse_ok(HEAD "action: rollback\n" REASON);

        ck_assert_str_eq(o->device, "laptop-0042");
        ck_assert_uint_eq(o->sequence, 7);
        ck_assert_int_eq(o->expires, 1795305600); /* date -u -d 2026-11-22 +%s */
        ck_assert_int_eq(o->action, ORDER_ROLLBACK);
        ck_assert_str_eq(o->snapshot, "known-good");
        ck_assert_ptr_null(o->image);
        ck_assert_ptr_null(o->what);
        ck_assert_ptr_null(o->slot);
        ck_assert_str_eq(o->reason, "ticket 4711: BSOD after driver update");

        /* Without a snapshot: the last known-good one (the caller's choice). */
        ck_assert_ptr_null(plain->snapshot);
}
END_TEST

START_TEST(test_other_actions) {
        _cleanup_(order_freep) Order *reimage =
                parse_ok(HEAD "action: reimage\nimage: images/base.qcow2\n" REASON);
        _cleanup_(order_freep) Order *collect = parse_ok(HEAD "action: collect\n" REASON);
        _cleanup_(order_freep) Order *logs = parse_ok(HEAD "action: collect\nwhat: logs\n" REASON);
        _cleanup_(order_freep) Order *sw = parse_ok(HEAD "action: switch-os\nslot: a\n" REASON);
        _cleanup_(order_freep) Order *pin =
                parse_ok(HEAD "action: pin\nsnapshot: pre-2026-11-kb5040001\n" REASON);

        ck_assert_int_eq(reimage->action, ORDER_REIMAGE);
        ck_assert_str_eq(reimage->image, "images/base.qcow2");
        ck_assert_int_eq(collect->action, ORDER_COLLECT);
        ck_assert_str_eq(collect->what, "all");
        ck_assert_str_eq(logs->what, "logs");
        ck_assert_int_eq(sw->action, ORDER_SWITCH_OS);
        ck_assert_str_eq(sw->slot, "a");
        ck_assert_int_eq(pin->action, ORDER_PIN);
        ck_assert_str_eq(pin->snapshot, "pre-2026-11-kb5040001");
}
END_TEST

static char *examples_dir(void) {
        _cleanup_free_ char *copy = strdup(__FILE__);
        char *d;

        ck_assert_ptr_nonnull(copy);
        ck_assert_int_ge(asprintf(&d, "%s/../../manifests/examples", dirname(copy)), 0);
        return d;
}

static Order *parse_example(const char *name) {
        _cleanup_free_ char *dir = examples_dir(), *path = path_join(dir, name), *data = NULL, *err = NULL;
        Order *o = NULL;
        size_t size;

        ck_assert_int_eq(read_full_file(path, 1 << 20, &data, &size), 0);
        ck_assert_msg(order_parse(data, size, &o, &err) == 0, "%s: %s", name, err ?: "");
        return o;
}

START_TEST(test_examples) {
        _cleanup_free_ char *dir = examples_dir();
        _cleanup_(closedirp) DIR *d = opendir(dir);
        bool seen[_ORDER_ACTION_MAX] = {};

        ck_assert_ptr_nonnull(d);
        for (struct dirent *de; (de = readdir(d));) {
                Order *o;

                if (!strneq(de->d_name, "order-", 6))
                        continue;
                o = parse_example(de->d_name);
                seen[o->action] = true;
                order_free(o);
        }
        /* One example per action. */
        for (OrderAction a = 0; a < _ORDER_ACTION_MAX; a++)
                ck_assert_msg(seen[a], "no example for '%s'", order_action_to_string(a));
}
END_TEST

START_TEST(test_example_contents) {
        _cleanup_(order_freep) Order *rb = parse_example("order-rollback.yaml");
        _cleanup_(order_freep) Order *sw = parse_example("order-switch-os.yaml");
        _cleanup_(order_freep) Order *co = parse_example("order-collect.yaml");

        ck_assert_str_eq(rb->snapshot, "known-good");
        ck_assert_str_eq(rb->reason, "ticket 4711: BSOD after driver update");
        ck_assert_str_eq(sw->slot, "a");
        ck_assert_str_eq(sw->reason, "ticket 4801: line-of-business app does not run on the new OS, "
                                     "switch back to the old slot until the vendor ships a fix");
        ck_assert_str_eq(co->what, "crash-dumps");
        ck_assert_str_eq(co->device, "desk-0815");
}
END_TEST

START_TEST(test_root_and_format) {
        assert_refused("[a]\n", "line 1, column 1", "the order must be a mapping, not a list");
        assert_refused("device: x\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\naction: collect\n" REASON,
                       "line 1, column 1", "missing required key 'format' in the order");
        assert_refused("format: oob-patch/1\ndevice: x\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 1, column 9", "'format' is 'oob-patch/1', expected 'oob-order/1'");
        /* A manifest handed to the order parser is told so, before its keys are looked at. */
        assert_refused("format: oob-patch/1\nid: t\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 1, column 9", "'format' is 'oob-patch/1', expected 'oob-order/1'");
        assert_refused(HEAD "action: collect\n" REASON "priority: high\n", "line 7, column 1",
                       "unknown key 'priority' in the order");
        assert_refused(HEAD "action: collect\n" REASON "action: pin\n", "line 7, column 1",
                       "duplicate key 'action'");
        assert_refused(HEAD "action: collect\n" REASON "&a x: 1\n", "line 7, column 1", "anchors");
}
END_TEST

START_TEST(test_device) {
        _cleanup_(order_freep) Order *o =
                parse_ok("format: oob-order/1\ndevice: A.b_c-9\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                         "action: collect\n" REASON);
        _cleanup_free_ char *long_ok = NULL, *long_bad = NULL;

        ck_assert_str_eq(o->device, "A.b_c-9");
        ck_assert_int_ge(asprintf(&long_ok,
                                  "format: oob-order/1\ndevice: %064d\nsequence: 1\n"
                                  "expires: 2026-11-22T00:00:00Z\naction: collect\n" REASON,
                                  0),
                         0);
        order_free(parse_ok(long_ok));

        ck_assert_int_ge(asprintf(&long_bad,
                                  "format: oob-order/1\ndevice: %065d\nsequence: 1\n"
                                  "expires: 2026-11-22T00:00:00Z\naction: collect\n" REASON,
                                  0),
                         0);
        assert_refused(long_bad, "line 2, column 9", "'device' is longer than 64 bytes");
        assert_refused("format: oob-order/1\ndevice: ../x\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 2, column 9", "'device' must be 1 to 64 of");
        assert_refused("format: oob-order/1\ndevice: ..\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 2, column 9", "'device'");
        assert_refused(
                "format: oob-order/1\ndevice: 'laptop 42'\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                "action: collect\n" REASON,
                "line 2, column 9", "'device'");
        assert_refused(
                "format: oob-order/1\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\naction: collect\n" REASON,
                "line 1, column 1", "missing required key 'device'");
}
END_TEST

START_TEST(test_sequence) {
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 0\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 3, column 11", "'sequence' must be between 1 and");
        assert_refused("format: oob-order/1\ndevice: d\nsequence: '7'\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 3, column 11", "'sequence'", "quoted string");
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 7.5\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 3, column 11", "'sequence' must be an unsigned integer");
        assert_refused(
                "format: oob-order/1\ndevice: d\nexpires: 2026-11-22T00:00:00Z\naction: collect\n" REASON,
                "line 1, column 1", "missing required key 'sequence'");
}
END_TEST

START_TEST(test_expires) {
        _cleanup_(order_freep) Order *quoted =
                parse_ok("format: oob-order/1\ndevice: d\nsequence: 1\nexpires: '2030-01-01T00:00:00Z'\n"
                         "action: collect\n" REASON);

        ck_assert_int_eq(quoted->expires, 1893456000);
        assert_refused(
                "format: oob-order/1\ndevice: d\nsequence: 1\nexpires: 2026-11-22\naction: collect\n" REASON,
                "line 4, column 10", "'expires' must be a UTC time like 2026-11-22T00:00:00Z");
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 1\nexpires: 2026-11-22T00:00:00+01:00\n"
                       "action: collect\n" REASON,
                       "line 4, column 10", "'expires'");
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 1\nexpires: 2026-02-30T00:00:00Z\n"
                       "action: collect\n" REASON,
                       "line 4, column 10", "'expires'");
        assert_refused(
                "format: oob-order/1\ndevice: d\nsequence: 1\nexpires: 1795305600\naction: collect\n" REASON,
                "line 4, column 10", "'expires'");
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 1\naction: collect\n" REASON,
                       "line 1, column 1", "missing required key 'expires'");
}
END_TEST

START_TEST(test_action) {
        assert_refused(HEAD "action: reboot\n" REASON, "line 5, column 9",
                       "'action' must be one of rollback, reimage, collect, switch-os, pin");
        assert_refused(HEAD "action: [rollback]\n" REASON, "line 5, column 9",
                       "'action' must be a string, not a list");
        assert_refused(HEAD REASON, "line 1, column 1", "missing required key 'action'");
}
END_TEST

START_TEST(test_arguments) {
        /* Arguments an action does not take are refused at their key. */
        assert_refused(HEAD "action: rollback\nimage: images/a.qcow2\n" REASON, "line 6, column 1",
                       "'image' is not used by action 'rollback'");
        assert_refused(HEAD "action: collect\nsnapshot: s\n" REASON, "line 6, column 1",
                       "'snapshot' is not used by action 'collect'");
        assert_refused(HEAD "action: pin\nsnapshot: s\nslot: a\n" REASON, "line 7, column 1",
                       "'slot' is not used by action 'pin'");
        assert_refused(HEAD "action: switch-os\nslot: a\nwhat: logs\n" REASON, "line 7, column 1",
                       "'what' is not used by action 'switch-os'");
        /* Required arguments. */
        assert_refused(HEAD "action: reimage\n" REASON, "line 1, column 1",
                       "missing required key 'image' for action 'reimage'");
        assert_refused(HEAD "action: switch-os\n" REASON, "line 1, column 1",
                       "missing required key 'slot' for action 'switch-os'");
        assert_refused(HEAD "action: pin\n" REASON, "line 1, column 1",
                       "missing required key 'snapshot' for action 'pin'");
        /* Their values. */
        assert_refused(HEAD "action: rollback\nsnapshot: ../../etc\n" REASON, "line 6, column 11",
                       "'snapshot':", "A-Z a-z 0-9");
        assert_refused(HEAD "action: rollback\nsnapshot:\n" REASON, "line 6, column 10",
                       "'snapshot' has no value");
        assert_refused(HEAD "action: reimage\nimage: /images/a.qcow2\n" REASON, "line 6, column 8",
                       "'image':", "target path");
        assert_refused(HEAD "action: reimage\nimage: images/../a\n" REASON, "line 6, column 8", "'image':");
        assert_refused(HEAD "action: collect\nwhat: everything\n" REASON, "line 6, column 7",
                       "'what': must be crash-dumps, logs or all");
        assert_refused(HEAD "action: switch-os\nslot: 'b c'\n" REASON, "line 6, column 7", "'slot':");
        assert_refused(HEAD "action: switch-os\nslot: [a]\n" REASON, "line 6, column 7",
                       "'slot' must be a string, not a list");
}
END_TEST

START_TEST(test_reason) {
        _cleanup_(order_freep) Order *multi =
                parse_ok(HEAD "action: collect\nreason: |\n  line one\n  line two\n");
        _cleanup_free_ char *long_reason = NULL;

        ck_assert_str_eq(multi->reason, "line one\nline two\n");
        assert_refused(HEAD "action: collect\n", "line 1, column 1",
                       "missing required key 'reason' in the order");
        assert_refused(HEAD "action: collect\nreason: ''\n", "line 6, column 9",
                       "'reason' is an empty string");
        assert_refused(HEAD "action: collect\nreason: \"esc\\e[31m\"\n", "line 6, column 9",
                       "'reason' contains a control character");
        ck_assert_int_ge(asprintf(&long_reason, HEAD "action: collect\nreason: %04097d\n", 0), 0);
        assert_refused(long_reason, "line 6, column 9", "'reason' is longer than 4096 bytes");
}
END_TEST

START_TEST(test_string_table) {
        for (OrderAction a = 0; a < _ORDER_ACTION_MAX; a++)
                ck_assert_int_eq(order_action_from_string(order_action_to_string(a)), a);
        ck_assert_str_eq(order_action_to_string(ORDER_ROLLBACK), "rollback");
        ck_assert_str_eq(order_action_to_string(ORDER_REIMAGE), "reimage");
        ck_assert_str_eq(order_action_to_string(ORDER_COLLECT), "collect");
        ck_assert_str_eq(order_action_to_string(ORDER_SWITCH_OS), "switch-os");
        ck_assert_str_eq(order_action_to_string(ORDER_PIN), "pin");
        ck_assert_int_eq(order_action_from_string("Rollback"), -EINVAL);
        ck_assert_ptr_null(order_action_to_string(_ORDER_ACTION_MAX));
}
END_TEST

START_TEST(test_error_pointer_optional) {
        Order *o = NULL;

        ck_assert_int_eq(order_parse(HEAD, strlen(HEAD), &o, NULL), -EPROTO);
        ck_assert_ptr_null(o);
        ck_assert_int_eq(order_parse("\xff", 1, &o, NULL), -EPROTO);
        ck_assert_int_eq(order_parse(HEAD, strlen(HEAD), NULL, NULL), -EINVAL);
        ck_assert_ptr_null(order_free(NULL));
}
END_TEST

static Suite *order_suite(void) {
        Suite *s = suite_create("order");
        TCase *tc = tcase_create("documents");

        tcase_add_test(tc, test_rollback);
        tcase_add_test(tc, test_other_actions);
        tcase_add_test(tc, test_examples);
        tcase_add_test(tc, test_example_contents);
        suite_add_tcase(s, tc);

        tc = tcase_create("rules");
        tcase_add_test(tc, test_root_and_format);
        tcase_add_test(tc, test_device);
        tcase_add_test(tc, test_sequence);
        tcase_add_test(tc, test_expires);
        tcase_add_test(tc, test_action);
        tcase_add_test(tc, test_arguments);
        tcase_add_test(tc, test_reason);
        tcase_add_test(tc, test_string_table);
        tcase_add_test(tc, test_error_pointer_optional);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(order_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

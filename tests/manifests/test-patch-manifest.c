/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The patch manifest schema (manifests/patch-manifest.c, FORMATS.md): every
 * rule with a case it accepts and a case it refuses, the refusal naming the
 * line, the column and the offending key.
 */
#include <check.h>
#include <dirent.h>
#include <libgen.h>

#include "manifests.h"

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Three lines; "actions:" follows on line 4, the first action on line 5. */
#define HEAD "format: oob-patch/1\nid: t-1\nversion: 1\n"
/* One action; its type is at line 5, column 5. */
#define ACTION(a) HEAD "actions:\n  - " a "\n"

static PatchManifest *parse_ok(const char *doc) {
        _cleanup_free_ char *err = NULL;
        PatchManifest *m = NULL;
        int r = patch_manifest_parse(doc, strlen(doc), &m, &err);

        ck_assert_msg(r == 0, "parse failed (%d): %s\n%s", r, err ?: "(no message)", doc);
        ck_assert_ptr_null(err);
        ck_assert_ptr_nonnull(m);
        return m;
}

/* Refused with -EPROTO, the message starting "line L, column C: " and
 * containing every further needle. */
#define assert_refused(doc, pos, ...)                                                                  \
        do {                                                                                           \
                _cleanup_free_ char *_err = NULL;                                                      \
                PatchManifest *_m = NULL;                                                              \
                const char *_needles[] = {"", ##__VA_ARGS__};                                          \
                int _r = patch_manifest_parse((doc), strlen(doc), &_m, &_err);                         \
                ck_assert_msg(_r == -EPROTO, "expected -EPROTO, got %d for:\n%s", _r, (doc));          \
                ck_assert_ptr_null(_m);                                                                \
                ck_assert_ptr_nonnull(_err);                                                           \
                ck_assert_msg(strneq(_err, pos ": ", strlen(pos ": ")), "error '%s' is not at '%s'",   \
                              _err ?: "", pos);                                                        \
                for (size_t _i = 0; _i < ELEMENTSOF(_needles); _i++)                                   \
                        ck_assert_msg(strstr(_err, _needles[_i]), "error '%s' lacks '%s'", _err ?: "", \
                                      _needles[_i]);                                                   \
        } while (0)

START_TEST(test_full_manifest) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = parse_ok(
                "format: oob-patch/1\n"
                "id: 2026-11-kb5040001\n"
                "version: 1\n"
                "description: November cumulative update\n"
                "applies-to:\n"
                "  device-groups: [finance, lab]\n"
                "  os-build: {min: 19045, max: 19045}\n"
                "payloads: [payloads/kb5040001.tar, payloads/agent.msi]\n"
                "actions:\n"
                "  - extract: {payload: payloads/kb5040001.tar, dest: Windows/System32}\n"
                "  - delete: [Windows/System32/drivers/old.sys]\n"
                "  - registry-set: {hive: SYSTEM, key: 'ControlSet001\\Services\\foo', name: Start, type: "
                "REG_DWORD, value: 3}\n"
                "  - registry-delete: {hive: SOFTWARE, key: 'Vendor\\Old'}\n"
                "  - stage-package: {payload: payloads/agent.msi, command: 'msiexec /i agent.msi /qn'}\n"
                "trial: {boot-timeout: 300s, stability: 10m, attempts: 1}\n");
        const PatchAction *a = m->actions;

        ck_assert_str_eq(m->id, "2026-11-kb5040001");
        ck_assert_uint_eq(m->version, 1);
        ck_assert_str_eq(m->description, "November cumulative update");
        ck_assert_uint_eq(strv_length(m->device_groups), 2);
        ck_assert_str_eq(m->device_groups[0], "finance");
        ck_assert_str_eq(m->device_groups[1], "lab");
        ck_assert_uint_eq(m->os_build_min, 19045);
        ck_assert_uint_eq(m->os_build_max, 19045);
        ck_assert_uint_eq(strv_length(m->payloads), 2);
        ck_assert_str_eq(m->payloads[1], "payloads/agent.msi");
        ck_assert_uint_eq(m->n_actions, 5);

        ck_assert_int_eq(a[0].type, PATCH_ACTION_EXTRACT);
        ck_assert_str_eq(a[0].payload, "payloads/kb5040001.tar");
        ck_assert_str_eq(a[0].dest, "Windows/System32");

        ck_assert_int_eq(a[1].type, PATCH_ACTION_DELETE);
        ck_assert_uint_eq(strv_length(a[1].paths), 1);
        ck_assert_str_eq(a[1].paths[0], "Windows/System32/drivers/old.sys");

        ck_assert_int_eq(a[2].type, PATCH_ACTION_REGISTRY_SET);
        ck_assert_str_eq(a[2].hive, "SYSTEM");
        ck_assert_str_eq(a[2].key, "ControlSet001\\Services\\foo");
        ck_assert_str_eq(a[2].value_name, "Start");
        ck_assert_int_eq(a[2].value_type, REG_VALUE_DWORD);
        ck_assert_uint_eq(a[2].number, 3);

        ck_assert_int_eq(a[3].type, PATCH_ACTION_REGISTRY_DELETE);
        ck_assert_str_eq(a[3].hive, "SOFTWARE");
        ck_assert_str_eq(a[3].key, "Vendor\\Old");
        ck_assert_ptr_null(a[3].value_name);

        ck_assert_int_eq(a[4].type, PATCH_ACTION_STAGE_PACKAGE);
        ck_assert_str_eq(a[4].payload, "payloads/agent.msi");
        ck_assert_str_eq(a[4].command, "msiexec /i agent.msi /qn");

        ck_assert_uint_eq(m->trial.boot_timeout_sec, 300);
        ck_assert_uint_eq(m->trial.stability_sec, 600);
        ck_assert_uint_eq(m->trial.attempts, 1);
}
END_TEST

START_TEST(test_minimal_manifest_defaults) {
        _cleanup_(patch_manifest_freep) PatchManifest *m = parse_ok(ACTION("delete: [a.sys]"));

        ck_assert_str_eq(m->id, "t-1");
        ck_assert_ptr_null(m->description);
        ck_assert_ptr_null(m->device_groups);
        ck_assert_uint_eq(m->os_build_min, 0);
        ck_assert_uint_eq(m->os_build_max, 0);
        ck_assert_ptr_nonnull(m->payloads);
        ck_assert_ptr_null(m->payloads[0]);
        ck_assert_uint_eq(m->trial.boot_timeout_sec, 300);
        ck_assert_uint_eq(m->trial.stability_sec, 600);
        ck_assert_uint_eq(m->trial.attempts, 1);
}
END_TEST

/* The examples in manifests/examples/ are what FORMATS.md shows: each must
 * parse. The source tree is found from this file's path (tests run from the
 * top of the tree). */
static char *examples_dir(void) {
        _cleanup_free_ char *copy = strdup(__FILE__);
        char *d;

        ck_assert_ptr_nonnull(copy);
        ck_assert_int_ge(asprintf(&d, "%s/../../manifests/examples", dirname(copy)), 0);
        return d;
}

static PatchManifest *parse_example(const char *name) {
        _cleanup_free_ char *dir = examples_dir(), *path = path_join(dir, name), *data = NULL, *err = NULL;
        PatchManifest *m = NULL;
        size_t size;

        ck_assert_int_eq(read_full_file(path, 1 << 20, &data, &size), 0);
        ck_assert_msg(patch_manifest_parse(data, size, &m, &err) == 0, "%s: %s", name, err ?: "");
        return m;
}

START_TEST(test_examples) {
        _cleanup_free_ char *dir = examples_dir();
        _cleanup_(closedirp) DIR *d = opendir(dir);
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        for (struct dirent *de; (de = readdir(d));) {
                if (!strneq(de->d_name, "patch-", 6))
                        continue;
                patch_manifest_free(parse_example(de->d_name));
                n++;
        }
        ck_assert_uint_ge(n, 3);
}
END_TEST

START_TEST(test_example_contents) {
        _cleanup_(patch_manifest_freep) PatchManifest *cu = parse_example("patch-cumulative-update.yaml");
        _cleanup_(patch_manifest_freep) PatchManifest *reg = parse_example("patch-registry-only.yaml");
        _cleanup_(patch_manifest_freep) PatchManifest *os = parse_example("patch-os-image.yaml");

        ck_assert_uint_eq(cu->n_actions, 5);
        ck_assert_uint_eq(strv_length(cu->actions[1].paths), 2);
        ck_assert_uint_eq(cu->trial.boot_timeout_sec, 300);
        ck_assert_uint_eq(cu->trial.attempts, 2);

        ck_assert_uint_eq(reg->n_actions, 8);
        ck_assert_str_eq(reg->description, "Require SMB signing, set the proxy for one user and\n"
                                           "remove a stale uninstall entry.\n");
        ck_assert_uint_eq(reg->os_build_min, 19045);
        ck_assert_uint_eq(reg->os_build_max, 19045);
        ck_assert_ptr_null(reg->payloads[0]);
        ck_assert_str_eq(reg->actions[1].value_name, "");
        ck_assert_str_eq(reg->actions[2].strings[0], "%ProgramData%\\Contoso\\Logs");
        ck_assert_str_eq(reg->actions[5].hive, "NTUSER:alice");
        ck_assert_uint_eq(reg->actions[5].binary_size, 8);
        ck_assert_str_eq(reg->actions[7].value_name, "LastRun");

        ck_assert_int_eq(os->actions[0].type, PATCH_ACTION_OS_IMAGE);
        ck_assert_str_eq(os->actions[0].slot, "b");
        ck_assert_str_eq(os->payloads[0], "images/win11-24h2.qcow2");
        ck_assert_uint_eq(os->trial.boot_timeout_sec, 3600);
        ck_assert_uint_eq(os->trial.stability_sec, 5400);
        ck_assert_uint_eq(os->trial.attempts, 3);
}
END_TEST

/* ---- top level ---------------------------------------------------------------- */

START_TEST(test_root) {
        assert_refused("- a\n- b\n", "line 1, column 1", "the patch manifest must be a mapping, not a list");
        assert_refused(HEAD "actions: [{delete: [a]}]\nfoo: 1\n", "line 5, column 1", "unknown key 'foo'",
                       "in the patch manifest");
        /* Errors of the YAML layer come through. */
        assert_refused(HEAD "id: again\nactions: [{delete: [a]}]\n", "line 4, column 1",
                       "duplicate key 'id'");
        assert_refused("", "line 1, column 1", "empty");
        {
                _cleanup_free_ char *big = malloc((1 << 20) + 2);
                PatchManifest *m = NULL;
                memset(big, '#', (1 << 20) + 1);
                big[(1 << 20) + 1] = 0;
                ck_assert_int_eq(patch_manifest_parse(big, strlen(big), &m, NULL), -EFBIG);
                ck_assert_ptr_null(m);
        }
}
END_TEST

START_TEST(test_format) {
        assert_refused("id: t-1\nversion: 1\nactions: [{delete: [a]}]\n", "line 1, column 1",
                       "missing required key 'format'");
        assert_refused("format: oob-patch/2\nid: t-1\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 1, column 9", "'format' is 'oob-patch/2', expected 'oob-patch/1'");
        assert_refused("format: oob-order/1\nid: t-1\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 1, column 9", "'format'");
        /* An order handed to the manifest parser is told so, before its keys are looked at. */
        assert_refused("format: oob-order/1\ndevice: d\nsequence: 1\nexpires: 2026-11-22T00:00:00Z\n"
                       "action: collect\nreason: r\n",
                       "line 1, column 9", "'format' is 'oob-order/1', expected 'oob-patch/1'");
        assert_refused("format: [oob-patch/1]\n", "line 1, column 9",
                       "'format' must be a string, not a list");
}
END_TEST

START_TEST(test_id) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok("format: oob-patch/1\nid: A.b_c-9\nversion: 1\nactions: [{delete: [a]}]\n");

        ck_assert_str_eq(m->id, "A.b_c-9");
        assert_refused("format: oob-patch/1\nversion: 1\nactions: [{delete: [a]}]\n", "line 1, column 1",
                       "missing required key 'id'");
        assert_refused("format: oob-patch/1\nid: a/b\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 2, column 5", "'id'");
        assert_refused("format: oob-patch/1\nid: .hidden\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 2, column 5", "'id' must start with a letter or digit");
        assert_refused("format: oob-patch/1\nid: [a]\nversion: 1\nactions: [{delete: [a]}]\n",
                       "line 2, column 5", "'id' must be a string, not a list");
}
END_TEST

START_TEST(test_version) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok("format: oob-patch/1\nid: t\nversion: 0x10\nactions: [{delete: [a]}]\n");

        ck_assert_uint_eq(m->version, 16);
        assert_refused("format: oob-patch/1\nid: t\nactions: [{delete: [a]}]\n", "line 1, column 1",
                       "missing required key 'version'");
        assert_refused("format: oob-patch/1\nid: t\nversion: 0\nactions: [{delete: [a]}]\n",
                       "line 3, column 10", "'version' must be between 1 and");
        assert_refused("format: oob-patch/1\nid: t\nversion: \"2\"\nactions: [{delete: [a]}]\n",
                       "line 3, column 10", "'version' must be an unsigned integer, not a quoted string");
        assert_refused("format: oob-patch/1\nid: t\nversion: 02\nactions: [{delete: [a]}]\n",
                       "line 3, column 10", "'version' must be an unsigned integer");
        assert_refused("format: oob-patch/1\nid: t\nversion: -1\nactions: [{delete: [a]}]\n",
                       "line 3, column 10", "'version'");
        assert_refused("format: oob-patch/1\nid: t\nversion: {a: 1}\nactions: [{delete: [a]}]\n",
                       "line 3, column 10", "'version' must be an unsigned integer, not a mapping");
}
END_TEST

START_TEST(test_description) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok(HEAD "description: 'Fixes: a, b'\nactions: [{delete: [a]}]\n");
        _cleanup_free_ char *long_doc = NULL;

        ck_assert_str_eq(m->description, "Fixes: a, b");
        assert_refused(HEAD "description:\nactions: [{delete: [a]}]\n", "line 4, column 13",
                       "'description' has no value");
        assert_refused(HEAD "description: \"bell\\a\"\nactions: [{delete: [a]}]\n", "line 4, column 14",
                       "'description' contains a control character");
        ck_assert_int_ge(asprintf(&long_doc, HEAD "description: %05000d\nactions: [{delete: [a]}]\n", 1), 0);
        assert_refused(long_doc, "line 4, column 14", "'description' is longer than 4096 bytes");
}
END_TEST

/* ---- applies-to --------------------------------------------------------------- */

START_TEST(test_applies_to) {
        _cleanup_(patch_manifest_freep) PatchManifest *a =
                parse_ok(HEAD "applies-to:\n  device-groups:\n    - lab\nactions: [{delete: [a]}]\n");
        _cleanup_(patch_manifest_freep) PatchManifest *b =
                parse_ok(HEAD "applies-to: {os-build: {min: 19041}}\nactions: [{delete: [a]}]\n");
        _cleanup_(patch_manifest_freep) PatchManifest *c =
                parse_ok(HEAD "applies-to: {os-build: {max: 22631}}\nactions: [{delete: [a]}]\n");
        _cleanup_(patch_manifest_freep) PatchManifest *d =
                parse_ok(HEAD "applies-to: {os-build: 22631}\nactions: [{delete: [a]}]\n");

        ck_assert_str_eq(a->device_groups[0], "lab");
        ck_assert_ptr_null(a->device_groups[1]);
        ck_assert_uint_eq(b->os_build_min, 19041);
        ck_assert_uint_eq(b->os_build_max, 0);
        ck_assert_uint_eq(c->os_build_min, 0);
        ck_assert_uint_eq(c->os_build_max, 22631);
        ck_assert_uint_eq(d->os_build_min, 22631);
        ck_assert_uint_eq(d->os_build_max, 22631);

        assert_refused(HEAD "applies-to: lab\nactions: [{delete: [a]}]\n", "line 4, column 13",
                       "'applies-to' must be a mapping, not a string");
        assert_refused(HEAD "applies-to: {groups: [a]}\nactions: [{delete: [a]}]\n", "line 4, column 14",
                       "unknown key 'groups' in 'applies-to'", "device-groups, os-build");
        assert_refused(HEAD "applies-to: {device-groups: lab}\nactions: [{delete: [a]}]\n",
                       "line 4, column 29", "'device-groups' must be a list, not a string");
        assert_refused(HEAD "applies-to: {device-groups: [lab, 'bad group']}\nactions: [{delete: [a]}]\n",
                       "line 4, column 35", "'device-groups': 'bad group' is not valid");
        assert_refused(HEAD "applies-to: {device-groups: [lab, lab]}\nactions: [{delete: [a]}]\n",
                       "line 4, column 35", "'device-groups' lists 'lab' twice");
        assert_refused(HEAD "applies-to: {device-groups: []}\nactions: [{delete: [a]}]\n",
                       "line 4, column 29", "'device-groups' is empty");
        assert_refused(HEAD "applies-to: {os-build: {min: 2, max: 1}}\nactions: [{delete: [a]}]\n",
                       "line 4, column 24", "'os-build': 'min' (2) is above 'max' (1)");
        assert_refused(HEAD "applies-to: {os-build: {min: 1, exact: 1}}\nactions: [{delete: [a]}]\n",
                       "line 4, column 33", "unknown key 'exact' in 'os-build'");
        assert_refused(HEAD "applies-to: {os-build: {}}\nactions: [{delete: [a]}]\n", "line 4, column 24",
                       "'os-build' needs 'min', 'max' or both");
        assert_refused(HEAD "applies-to: {os-build: '19045'}\nactions: [{delete: [a]}]\n",
                       "line 4, column 24", "'os-build' must be an unsigned integer, not a quoted string");
        assert_refused(HEAD "applies-to: {os-build: {min: 0}}\nactions: [{delete: [a]}]\n",
                       "line 4, column 30", "'min' must be between 1 and");
}
END_TEST

/* ---- payloads ------------------------------------------------------------------- */

START_TEST(test_payloads) {
        _cleanup_(patch_manifest_freep) PatchManifest *listed = parse_ok(
                HEAD
                "payloads: [p/a.tar, p/unused.tar]\nactions:\n  - extract: {payload: p/a.tar, dest: .}\n");
        _cleanup_(patch_manifest_freep) PatchManifest *derived =
                parse_ok(HEAD "actions:\n  - extract: {payload: p/b.tar, dest: x}\n  - extract: {payload: "
                              "p/a.tar, dest: y}\n"
                              "  - extract: {payload: p/b.tar, dest: z}\n");

        ck_assert_uint_eq(strv_length(listed->payloads), 2);
        ck_assert_str_eq(listed->actions[0].dest, ".");
        /* Without a list: the actions' payloads, in order of first use. */
        ck_assert_uint_eq(strv_length(derived->payloads), 2);
        ck_assert_str_eq(derived->payloads[0], "p/b.tar");
        ck_assert_str_eq(derived->payloads[1], "p/a.tar");

        assert_refused(HEAD "payloads: [p/a.tar]\nactions:\n  - extract: {payload: p/b.tar, dest: x}\n",
                       "line 6, column 24", "'payload': 'p/b.tar' is not listed under 'payloads' (line 4)");
        assert_refused(HEAD "payloads: [../a.tar]\nactions: [{delete: [a]}]\n", "line 4, column 12",
                       "'payloads': '../a.tar' is not valid");
        assert_refused(HEAD "payloads: [/etc/passwd]\nactions: [{delete: [a]}]\n", "line 4, column 12",
                       "'payloads': '/etc/passwd' is not valid");
        assert_refused(HEAD "payloads: ['p\\a.tar']\nactions: [{delete: [a]}]\n", "line 4, column 12",
                       "'payloads'", "is not valid");
        assert_refused(HEAD "payloads: [p//a.tar]\nactions: [{delete: [a]}]\n", "line 4, column 12",
                       "'payloads': 'p//a.tar' is not valid");
        assert_refused(HEAD "payloads: [a, a]\nactions: [{delete: [a]}]\n", "line 4, column 15",
                       "'payloads' lists 'a' twice");
        assert_refused(HEAD "payloads: a.tar\nactions: [{delete: [a]}]\n", "line 4, column 11",
                       "'payloads' must be a list, not a string");
}
END_TEST

/* ---- actions --------------------------------------------------------------------- */

START_TEST(test_actions_list) {
        assert_refused(HEAD, "line 1, column 1", "missing required key 'actions'");
        assert_refused(HEAD "actions: []\n", "line 4, column 10", "'actions' is empty");
        assert_refused(HEAD "actions:\n", "line 4, column 9",
                       "'actions' must be a list, not a missing value");
        assert_refused(HEAD "actions: {delete: [a]}\n", "line 4, column 10",
                       "'actions' must be a list, not a mapping");
        assert_refused(ACTION("delete"), "line 5, column 5", "an action is a mapping with one key");
        assert_refused(ACTION("{}"), "line 5, column 5", "an action is a mapping with one key");
        assert_refused(ACTION("copy: {from: a, to: b}"), "line 5, column 5", "unknown action 'copy'",
                       "extract, delete, registry-set, registry-delete, stage-package, os-image");
        assert_refused(ACTION("delete: [a]\n    extract: {payload: p, dest: d}"), "line 6, column 5",
                       "exactly one key", "'extract' after 'delete'");
        /* The classic indentation slip: parameters beside the type, not under it. */
        assert_refused(HEAD "actions:\n  - extract:\n    payload: p.tar\n    dest: x\n", "line 6, column 5",
                       "'payload' must be indented under 'extract'");
        assert_refused(ACTION("extract:"), "line 5, column 13", "action 'extract' has no parameters");
        assert_refused(ACTION("extract: ~"), "line 5, column 14", "action 'extract' has no parameters");
}
END_TEST

START_TEST(test_extract) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok(ACTION("extract: {payload: p.tar, dest: 'Program Files\\Contoso'}"));

        /* Backslashes are separators on the volume. */
        ck_assert_str_eq(m->actions[0].dest, "Program Files/Contoso");
        ck_assert_str_eq(m->actions[0].payload, "p.tar");

        assert_refused(ACTION("extract: {dest: x}"), "line 5, column 14",
                       "missing required key 'payload' in action 'extract'");
        assert_refused(ACTION("extract: {payload: p.tar}"), "line 5, column 14",
                       "missing required key 'dest' in action 'extract'", "dest: .");
        assert_refused(ACTION("extract: {payload: p.tar, dest: x, mode: 644}"), "line 5, column 40",
                       "unknown key 'mode' in action 'extract'", "allowed: payload, dest");
        assert_refused(ACTION("extract: [p.tar, x]"), "line 5, column 14",
                       "action 'extract' must be a mapping, not a list");
        assert_refused(ACTION("extract: {payload: ../p.tar, dest: x}"), "line 5, column 24", "'payload'",
                       "target path");
        assert_refused(ACTION("extract: {payload: p.tar, dest: /Windows}"), "line 5, column 37",
                       "'dest': invalid volume path: absolute paths are not allowed");
        assert_refused(ACTION("extract: {payload: p.tar, dest: '\\Windows'}"), "line 5, column 37", "'dest'",
                       "absolute");
        assert_refused(ACTION("extract: {payload: p.tar, dest: 'C:\\Windows'}"), "line 5, column 37",
                       "'dest'", "no drive letters");
        assert_refused(ACTION("extract: {payload: p.tar, dest: Windows/../../etc}"), "line 5, column 37",
                       "'dest'", "'.' and '..' are not allowed");
        assert_refused(ACTION("extract: {payload: p.tar, dest: 'Windows\\..'}"), "line 5, column 37",
                       "'dest'", "'..'");
        assert_refused(ACTION("extract: {payload: p.tar, dest: Windows//System32}"), "line 5, column 37",
                       "'dest'", "empty path components");
        assert_refused(ACTION("extract: {payload: p.tar, dest: Windows/}"), "line 5, column 37", "'dest'",
                       "empty path components");
        assert_refused(ACTION("extract: {payload: p.tar, dest: 'Windows/file.txt:stream'}"),
                       "line 5, column 37", "'dest'", "alternate data streams");
}
END_TEST

/* The signed cap on what an archive unpacks to: bytes or K/M/G (1024). */
START_TEST(test_extract_max_size) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                { "1", 1 },
                { "1048576", 1048576 },
                { "64K", 65536 },
                { "'64K'", 65536 },
                { "512M", UINT64_C(512) << 20 },
                { "2G", UINT64_C(2) << 30 },
                { "1024G", UINT64_C(1) << 40 },
        };
        static const char *const bad[] = {
                "0", "0K", "012", "-1", "1.5G", "1T", "1k", "1 M", "1MB", "K", "0x10", "''", "~",
                "1025G", "1099511627777", "99999999999999999999", "18446744073709551615G", "[1]",
        };
        char doc[512];

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_(patch_manifest_freep) PatchManifest *m = NULL;

                snprintf(doc, sizeof(doc), ACTION("extract: {payload: p.tar, dest: x, max-size: %s}"),
                         good[i].text);
                m = parse_ok(doc);
                ck_assert_msg(m->actions[0].max_unpacked == good[i].bytes, "%s", good[i].text);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(doc, sizeof(doc), ACTION("extract: {payload: p.tar, dest: x, max-size: %s}"), bad[i]);
                assert_refused(doc, "line 5, column 50", "'max-size'");
        }

        {
                /* Absent: 0, the engine's default cap applies. */
                _cleanup_(patch_manifest_freep) PatchManifest *m =
                        parse_ok(ACTION("extract: {payload: p.tar, dest: x}"));
                ck_assert_uint_eq(m->actions[0].max_unpacked, 0);
        }
        assert_refused(ACTION("stage-package: {payload: p, command: c, max-size: 1M}"), "line 5, column 45",
                       "unknown key 'max-size' in action 'stage-package'");
}
END_TEST

START_TEST(test_delete) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok(ACTION("delete:\n      - 'Windows\\System32\\a.dll'\n      - Windows/b.dll"));

        ck_assert_uint_eq(strv_length(m->actions[0].paths), 2);
        ck_assert_str_eq(m->actions[0].paths[0], "Windows/System32/a.dll");
        ck_assert_str_eq(m->actions[0].paths[1], "Windows/b.dll");

        assert_refused(ACTION("delete: a.dll"), "line 5, column 13",
                       "'delete' takes a list of volume paths");
        assert_refused(ACTION("delete: {paths: [a]}"), "line 5, column 13", "'delete' takes a list");
        assert_refused(ACTION("delete: []"), "line 5, column 13", "'delete' lists no paths");
        assert_refused(ACTION("delete: [a, ../b]"), "line 5, column 17", "'delete': invalid volume path",
                       "'..'");
        assert_refused(ACTION("delete: [a, a]"), "line 5, column 17", "'delete' lists 'a' twice");
        /* Backslashes and slashes name the same file. */
        assert_refused(ACTION("delete: [a/b, 'a\\b']"), "line 5, column 19", "'delete' lists 'a/b' twice");
        assert_refused(ACTION("delete: ['Windows/*.tmp']"), "line 5, column 14", "'delete'", "< > \" | ? *");
        assert_refused(ACTION("delete: ['Windows/x. ']"), "line 5, column 14", "'delete'",
                       "ending in a dot or a space");
        assert_refused(ACTION("delete: [[a]]"), "line 5, column 14",
                       "'delete' must be a string, not a list");
        assert_refused(ACTION("delete: [.]"), "line 5, column 14", "'delete'", "'.' and '..'");
}
END_TEST

/* ---- registry ---------------------------------------------------------------------- */

#define REGSET(type, value) \
        ACTION("registry-set: {hive: SOFTWARE, key: 'A\\B', name: V, type: " type ", value: " value "}")

static PatchManifest *parse_value(const char *type, const char *value) {
        _cleanup_free_ char *doc = NULL;

        ck_assert_int_ge(
                asprintf(&doc,
                         ACTION("registry-set: {hive: SOFTWARE, key: 'A\\B', name: V, type: %s, value: %s}"),
                         type, value),
                0);
        return parse_ok(doc);
}

START_TEST(test_registry_value_types) {
        _cleanup_(patch_manifest_freep) PatchManifest *sz = parse_value("REG_SZ", "hello world");
        _cleanup_(patch_manifest_freep) PatchManifest *sz_empty = parse_value("REG_SZ", "''");
        _cleanup_(patch_manifest_freep) PatchManifest *sz_number = parse_value("REG_SZ", "42");
        _cleanup_(patch_manifest_freep) PatchManifest *expand =
                parse_value("REG_EXPAND_SZ", "'%SystemRoot%\\x'");
        _cleanup_(patch_manifest_freep) PatchManifest *multi = parse_value("REG_MULTI_SZ", "[a, 'b c']");
        _cleanup_(patch_manifest_freep) PatchManifest *multi_empty = parse_value("REG_MULTI_SZ", "[]");
        _cleanup_(patch_manifest_freep) PatchManifest *dword = parse_value("REG_DWORD", "4294967295");
        _cleanup_(patch_manifest_freep) PatchManifest *dword_hex = parse_value("REG_DWORD", "0x0000ff01");
        _cleanup_(patch_manifest_freep) PatchManifest *qword =
                parse_value("REG_QWORD", "18446744073709551615");
        _cleanup_(patch_manifest_freep) PatchManifest *binary = parse_value("REG_BINARY", "0102aBfF");
        _cleanup_(patch_manifest_freep) PatchManifest *binary_sep =
                parse_value("REG_BINARY", "'de,ad:be ef'");
        _cleanup_(patch_manifest_freep) PatchManifest *binary_empty = parse_value("REG_BINARY", "\"\"");
        const PatchAction *a;

        a = &sz->actions[0];
        ck_assert_str_eq(a->hive, "SOFTWARE");
        ck_assert_str_eq(a->key, "A\\B");
        ck_assert_str_eq(a->value_name, "V");
        ck_assert_int_eq(a->value_type, REG_VALUE_SZ);
        ck_assert_uint_eq(strv_length(a->strings), 1);
        ck_assert_str_eq(a->strings[0], "hello world");
        ck_assert_str_eq(sz_empty->actions[0].strings[0], "");
        ck_assert_str_eq(sz_number->actions[0].strings[0], "42");

        ck_assert_int_eq(expand->actions[0].value_type, REG_VALUE_EXPAND_SZ);
        ck_assert_str_eq(expand->actions[0].strings[0], "%SystemRoot%\\x");

        ck_assert_int_eq(multi->actions[0].value_type, REG_VALUE_MULTI_SZ);
        ck_assert_uint_eq(strv_length(multi->actions[0].strings), 2);
        ck_assert_str_eq(multi->actions[0].strings[1], "b c");
        ck_assert_ptr_nonnull(multi_empty->actions[0].strings);
        ck_assert_ptr_null(multi_empty->actions[0].strings[0]);

        ck_assert_int_eq(dword->actions[0].value_type, REG_VALUE_DWORD);
        ck_assert_uint_eq(dword->actions[0].number, 0xffffffffu);
        ck_assert_uint_eq(dword_hex->actions[0].number, 0xff01);

        ck_assert_int_eq(qword->actions[0].value_type, REG_VALUE_QWORD);
        ck_assert_uint_eq(qword->actions[0].number, UINT64_MAX);

        ck_assert_int_eq(binary->actions[0].value_type, REG_VALUE_BINARY);
        ck_assert_uint_eq(binary->actions[0].binary_size, 4);
        ck_assert_mem_eq(binary->actions[0].binary, "\x01\x02\xab\xff", 4);
        ck_assert_uint_eq(binary_sep->actions[0].binary_size, 4);
        ck_assert_mem_eq(binary_sep->actions[0].binary, "\xde\xad\xbe\xef", 4);
        ck_assert_uint_eq(binary_empty->actions[0].binary_size, 0);
}
END_TEST

START_TEST(test_registry_value_refused) {
        /* In REGSET() the type starts at column 63, the value at 63 + strlen(type) + 9. */
        assert_refused(REGSET("REG_DWORD", "4294967296"), "line 5, column 81",
                       "'value' must be between 0 and 4294967295");
        assert_refused(REGSET("REG_DWORD", "0x100000000"), "line 5, column 81", "'value' must be between");
        assert_refused(REGSET("REG_DWORD", "-1"), "line 5, column 81",
                       "'value' must be an unsigned integer");
        assert_refused(REGSET("REG_DWORD", "'3'"), "line 5, column 81", "'value'", "quoted string");
        assert_refused(REGSET("REG_QWORD", "18446744073709551616"), "line 5, column 81",
                       "'value' must be between");
        assert_refused(REGSET("REG_BINARY", "abc"), "line 5, column 82",
                       "'value' of REG_BINARY must be hex bytes");
        assert_refused(REGSET("REG_BINARY", "'1,2,3'"), "line 5, column 82",
                       "'value' of REG_BINARY must be hex bytes");
        assert_refused(REGSET("REG_BINARY", "zz"), "line 5, column 82", "'value' of REG_BINARY",
                       "not a hex digit");
        assert_refused(REGSET("REG_BINARY", "[1, 2]"), "line 5, column 82",
                       "'value' of REG_BINARY must be a hex string, not a list");
        assert_refused(REGSET("REG_MULTI_SZ", "a"), "line 5, column 84",
                       "'value' of REG_MULTI_SZ must be a list of strings, not a string");
        assert_refused(REGSET("REG_MULTI_SZ", "[a, '']"), "line 5, column 88", "'value' is an empty string");
        assert_refused(REGSET("REG_SZ", "[a]"), "line 5, column 78",
                       "'value' of REG_SZ must be a string, not a list");
        assert_refused(REGSET("REG_SZ", "~"), "line 5, column 78", "'value' has no value");
        assert_refused(REGSET("REG_EXPAND_SZ", "{a: b}"), "line 5, column 85",
                       "'value' of REG_EXPAND_SZ must be a string");
        assert_refused(REGSET("REG_NONE", "x"), "line 5, column 63", "'type' must be one of REG_SZ");
        assert_refused(REGSET("reg_sz", "x"), "line 5, column 63", "'type' must be one of");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: 'A', name: V, type: REG_SZ}"),
                       "line 5, column 19", "missing required key 'value' in action 'registry-set'");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: 'A', name: V, value: x}"),
                       "line 5, column 19", "missing required key 'type' in action 'registry-set'");
}
END_TEST

START_TEST(test_registry_names) {
        _cleanup_(patch_manifest_freep) PatchManifest *user =
                parse_ok(ACTION("registry-set: {hive: 'NTUSER:j.doe', key: 'Software\\X', name: '', type: "
                                "REG_SZ, value: v}"));
        _cleanup_(patch_manifest_freep) PatchManifest *sys = parse_ok(
                ACTION("registry-delete: {hive: SYSTEM, key: 'ControlSet001\\Services\\old', name: Start}"));

        ck_assert_str_eq(user->actions[0].hive, "NTUSER:j.doe");
        ck_assert_str_eq(user->actions[0].value_name, "");
        ck_assert_str_eq(sys->actions[0].value_name, "Start");

        assert_refused(ACTION("registry-set: {hive: HKLM, key: 'A', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 26", "'hive' must be SYSTEM, SOFTWARE or NTUSER:<user>");
        assert_refused(ACTION("registry-set: {hive: system, key: 'A', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 26", "'hive'");
        assert_refused(
                ACTION("registry-set: {hive: 'NTUSER:../admin', key: 'A', name: V, type: REG_SZ, value: x}"),
                "line 5, column 26", "'hive'");
        assert_refused(ACTION("registry-set: {hive: 'NTUSER:', key: 'A', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 26", "'hive'");
        assert_refused(ACTION("registry-set: {key: 'A', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 19", "missing required key 'hive'");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: '\\A', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 41", "'key': invalid registry key: empty parts");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: 'A\\', name: V, type: REG_SZ, value: x}"),
                       "line 5, column 41", "'key'", "empty parts");
        assert_refused(
                ACTION("registry-set: {hive: SOFTWARE, key: 'A\\\\B', name: V, type: REG_SZ, value: x}"),
                "line 5, column 41", "'key'", "empty parts");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: 'HKLM\\SOFTWARE\\A', name: V, type: "
                              "REG_SZ, value: x}"),
                       "line 5, column 41", "'key'", "relative to the hive");
        assert_refused(ACTION("registry-set: {hive: SYSTEM, key: 'CurrentControlSet\\Services\\x', name: V, "
                              "type: REG_SZ, value: x}"),
                       "line 5, column 39", "'key'", "ControlSet001");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, name: V, type: REG_SZ, value: x}"),
                       "line 5, column 19", "missing required key 'key'");
        assert_refused(ACTION("registry-set: {hive: SOFTWARE, key: A, type: REG_SZ, value: x}"),
                       "line 5, column 19", "missing required key 'name'", "name: \"\"");
        assert_refused(
                ACTION("registry-set: {hive: SOFTWARE, key: A, name: V, type: REG_SZ, value: x, data: 1}"),
                "line 5, column 77", "unknown key 'data' in action 'registry-set'");
        assert_refused(ACTION("registry-delete: {hive: SOFTWARE, key: A, type: REG_SZ}"),
                       "line 5, column 47", "unknown key 'type' in action 'registry-delete'");
        assert_refused(ACTION("registry-delete: {hive: SOFTWARE}"), "line 5, column 22",
                       "missing required key 'key'");
}
END_TEST

/* ---- stage-package and os-image ----------------------------------------------------------- */

START_TEST(test_stage_package) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok(ACTION("stage-package: {payload: pkg/a.msi, command: 'msiexec /i a.msi /qn'}"));

        ck_assert_int_eq(m->actions[0].type, PATCH_ACTION_STAGE_PACKAGE);
        ck_assert_str_eq(m->actions[0].command, "msiexec /i a.msi /qn");
        ck_assert_str_eq(m->payloads[0], "pkg/a.msi");

        assert_refused(ACTION("stage-package: {payload: pkg/a.msi}"), "line 5, column 20",
                       "missing required key 'command' in action 'stage-package'");
        assert_refused(ACTION("stage-package: {payload: pkg/a.msi, command: \"a\\nb\"}"),
                       "line 5, column 50", "'command' must be a single line");
        assert_refused(ACTION("stage-package: {payload: pkg/a.msi, command: x, args: y}"),
                       "line 5, column 53", "unknown key 'args'");
        assert_refused(ACTION("stage-package: {command: x}"), "line 5, column 20",
                       "missing required key 'payload'");
}
END_TEST

START_TEST(test_os_image) {
        _cleanup_(patch_manifest_freep) PatchManifest *m =
                parse_ok(ACTION("os-image: {payload: img/w11.qcow2, slot: b}"));

        ck_assert_int_eq(m->actions[0].type, PATCH_ACTION_OS_IMAGE);
        ck_assert_str_eq(m->actions[0].payload, "img/w11.qcow2");
        ck_assert_str_eq(m->actions[0].slot, "b");

        assert_refused(ACTION("os-image: {payload: img/w11.qcow2}"), "line 5, column 15",
                       "missing required key 'slot'");
        assert_refused(ACTION("os-image: {payload: img/w11.qcow2, slot: ../a}"), "line 5, column 46",
                       "'slot'", "A-Z a-z 0-9");
}
END_TEST

/* ---- trial ---------------------------------------------------------------------------------- */

START_TEST(test_trial) {
        _cleanup_(patch_manifest_freep) PatchManifest *a = parse_ok(
                HEAD "actions: [{delete: [a]}]\ntrial: {boot-timeout: 90, stability: 1h, attempts: 10}\n");
        _cleanup_(patch_manifest_freep) PatchManifest *b =
                parse_ok(HEAD "actions: [{delete: [a]}]\ntrial: {stability: 2m30s}\n");

        ck_assert_uint_eq(a->trial.boot_timeout_sec, 90);
        ck_assert_uint_eq(a->trial.stability_sec, 3600);
        ck_assert_uint_eq(a->trial.attempts, 10);
        /* Absent fields keep their defaults. */
        ck_assert_uint_eq(b->trial.boot_timeout_sec, 300);
        ck_assert_uint_eq(b->trial.stability_sec, 150);
        ck_assert_uint_eq(b->trial.attempts, 1);

        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {attempts: 0}\n", "line 5, column 19",
                       "'attempts' must be between 1 and 10");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {attempts: 11}\n", "line 5, column 19",
                       "'attempts' must be between 1 and 10");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {boot-timeout: 1s}\n", "line 5, column 23",
                       "'boot-timeout' must be between 5s and 14400s");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {boot-timeout: 5h}\n", "line 5, column 23",
                       "'boot-timeout' must be between");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {stability: 25h}\n", "line 5, column 20",
                       "'stability' must be between 5s and 86400s");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {stability: 10 minutes}\n",
                       "line 5, column 20", "'stability' must be a duration like");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: {retries: 2}\n", "line 5, column 9",
                       "unknown key 'retries' in 'trial'", "boot-timeout, stability, attempts");
        assert_refused(HEAD "actions: [{delete: [a]}]\ntrial: 300\n", "line 5, column 8",
                       "'trial' must be a mapping, not a string");
}
END_TEST

START_TEST(test_string_tables) {
        for (PatchActionType t = 0; t < _PATCH_ACTION_TYPE_MAX; t++)
                ck_assert_int_eq(patch_action_type_from_string(patch_action_type_to_string(t)), t);
        ck_assert_str_eq(patch_action_type_to_string(PATCH_ACTION_REGISTRY_DELETE), "registry-delete");
        ck_assert_str_eq(patch_action_type_to_string(PATCH_ACTION_OS_IMAGE), "os-image");
        ck_assert_int_eq(patch_action_type_from_string("Extract"), -EINVAL);
        ck_assert_ptr_null(patch_action_type_to_string(_PATCH_ACTION_TYPE_MAX));

        for (RegistryValueType t = 0; t < _REG_VALUE_TYPE_MAX; t++)
                ck_assert_int_eq(registry_value_type_from_string(registry_value_type_to_string(t)), t);
        ck_assert_str_eq(registry_value_type_to_string(REG_VALUE_EXPAND_SZ), "REG_EXPAND_SZ");
        ck_assert_str_eq(registry_value_type_to_string(REG_VALUE_BINARY), "REG_BINARY");
        ck_assert_int_eq(registry_value_type_from_string("REG_NONE"), -EINVAL);
}
END_TEST

START_TEST(test_error_pointer_optional) {
        PatchManifest *m = NULL;

        ck_assert_int_eq(patch_manifest_parse("a: *b\n", 6, &m, NULL), -EPROTO);
        ck_assert_int_eq(patch_manifest_parse(HEAD, strlen(HEAD), &m, NULL), -EPROTO);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(patch_manifest_parse(HEAD, strlen(HEAD), NULL, NULL), -EINVAL);
        ck_assert_ptr_null(patch_manifest_free(NULL));
}
END_TEST

static Suite *patch_manifest_suite(void) {
        Suite *s = suite_create("patch-manifest");
        TCase *tc = tcase_create("documents");

        tcase_add_test(tc, test_full_manifest);
        tcase_add_test(tc, test_minimal_manifest_defaults);
        tcase_add_test(tc, test_examples);
        tcase_add_test(tc, test_example_contents);
        suite_add_tcase(s, tc);

        tc = tcase_create("rules");
        tcase_add_test(tc, test_root);
        tcase_add_test(tc, test_format);
        tcase_add_test(tc, test_id);
        tcase_add_test(tc, test_version);
        tcase_add_test(tc, test_description);
        tcase_add_test(tc, test_applies_to);
        tcase_add_test(tc, test_payloads);
        tcase_add_test(tc, test_actions_list);
        tcase_add_test(tc, test_extract);
        tcase_add_test(tc, test_extract_max_size);
        tcase_add_test(tc, test_delete);
        tcase_add_test(tc, test_registry_value_types);
        tcase_add_test(tc, test_registry_value_refused);
        tcase_add_test(tc, test_registry_names);
        tcase_add_test(tc, test_stage_package);
        tcase_add_test(tc, test_os_image);
        tcase_add_test(tc, test_trial);
        tcase_add_test(tc, test_string_tables);
        tcase_add_test(tc, test_error_pointer_optional);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(patch_manifest_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

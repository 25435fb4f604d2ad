/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * programs/oobd/transaction.c: the patch window's persisted state machine.
 * The file format (a golden document, read and written back byte for
 * byte), strict validation of every member and of each state's required
 * fields, the transition table, the resume table, transaction_enter()
 * writing before it returns and changing nothing on failure, the report,
 * the installed list and the rule that chooses the manifest.
 *
 * transaction.c depends on lib/ and manifests/ only, so it is compiled
 * into this test directly.
 */
#include <check.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>

#include "../../programs/oobd/transaction.c"

static char tmpdir[] = "/tmp/oob-test-transaction.XXXXXX";
static char template[] = "/tmp/oob-test-transaction.XXXXXX";

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static void setup(void) {
        memcpy(tmpdir, template, sizeof(template));
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) {
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A transaction in the trial state, every member set: written by
 * transaction_to_json() exactly like this. */
static const char golden[] =
        "{\n"
        "  \"version\": 1,\n"
        "  \"id\": \"5f0c2a9e1b7d4c38\",\n"
        "  \"state\": \"trial\",\n"
        "  \"cancelled\": false,\n"
        "  \"deferred\": false,\n"
        "  \"force\": true,\n"
        "  \"manifest\": {\n"
        "    \"target\": \"manifests/2026-05.yaml\",\n"
        "    \"id\": \"2026-05\",\n"
        "    \"version\": 3,\n"
        "    \"length\": 812,\n"
        "    \"sha256\": \"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c\",\n"
        "    \"sha512\": null,\n"
        "    \"payloads\": [\n"
        "      {\n"
        "        \"path\": \"payloads/a.tar\",\n"
        "        \"length\": 10240,\n"
        "        \"sha256\": \"7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730\",\n"
        "        \"sha512\": null\n"
        "      }\n"
        "    ]\n"
        "  },\n"
        "  \"windows_build\": 19045,\n"
        "  \"trial\": {\n"
        "    \"boot_timeout\": 300,\n"
        "    \"stability\": 600,\n"
        "    \"attempts\": 2,\n"
        "    \"attempt\": 2\n"
        "  },\n"
        "  \"desktop_was_running\": true,\n"
        "  \"pre_patch_snapshot\": \"3\",\n"
        "  \"patched_snapshot\": \"4\",\n"
        "  \"result_snapshot\": null,\n"
        "  \"failure\": {\n"
        "    \"state\": \"trial\",\n"
        "    \"reason\": \"trial boot 1 of 2: failed: crash\",\n"
        "    \"crash\": {\n"
        "      \"failure\": \"crash\",\n"
        "      \"stop_code\": \"0x000000000000007e\",\n"
        "      \"params\": [\n"
        "        \"0xffffffffc0000005\",\n"
        "        \"0xfffff80312345678\",\n"
        "        \"0xffff9a0c1d2e3f40\",\n"
        "        \"0xffff9a0c1d2e3e80\"\n"
        "      ],\n"
        "      \"detail\": \"hyperv\"\n"
        "    }\n"
        "  },\n"
        "  \"alert\": false,\n"
        "  \"report\": \"pending\",\n"
        "  \"transitions\": [\n"
        "    {\n"
        "      \"state\": \"idle\",\n"
        "      \"usec\": 1714532400000000\n"
        "    },\n"
        "    {\n"
        "      \"state\": \"refreshing\",\n"
        "      \"usec\": 1714532400100000\n"
        "    },\n"
        "    {\n"
        "      \"state\": \"applied\",\n"
        "      \"usec\": 1714532460000000\n"
        "    },\n"
        "    {\n"
        "      \"state\": \"trial\",\n"
        "      \"usec\": 1714532470000000\n"
        "    },\n"
        "    {\n"
        "      \"state\": \"trial\",\n"
        "      \"usec\": 1714532530500000\n"
        "    }\n"
        "  ]\n"
        "}";

static Transaction *load_golden(void) {
        Transaction *t = NULL;
        char *error = NULL;
        int r;

        r = transaction_from_json(golden, strlen(golden), &t, &error);
        ck_assert_msg(r == 0, "golden refused: %s", error ?: strerror(-r));
        free(error);
        return t;
}

/* The golden document with one textual replacement; asserts it is refused
 * with a message containing want. */
static void refused(const char *from, const char *to, const char *want) {
        _cleanup_free_ char *text = NULL, *error = NULL;
        Transaction *t = NULL;
        const char *at = strstr(golden, from);
        int r;

        ck_assert_msg(at, "'%s' not in the golden document", from);
        ck_assert_int_ge(asprintf(&text, "%.*s%s%s", (int) (at - golden), golden, to, at + strlen(from)), 0);
        r = transaction_from_json(text, strlen(text), &t, &error);
        ck_assert_msg(r == -EPROTO, "'%s' -> '%s' accepted (%d)", from, to, r);
        ck_assert_ptr_null(t);
        ck_assert_msg(error && strstr(error, want), "'%s' -> '%s': error '%s' lacks '%s'", from, to,
                      error ?: "", want);
}

START_TEST(test_golden_round_trip) {
        _cleanup_(transaction_freep) Transaction *t = load_golden();
        _cleanup_free_ char *text = NULL;

        ck_assert_str_eq(t->id, "5f0c2a9e1b7d4c38");
        ck_assert_int_eq(t->state, TX_TRIAL);
        ck_assert_str_eq(t->manifest_id, "2026-05");
        ck_assert_uint_eq(t->manifest_version, 3);
        ck_assert(t->manifest_hashes.has_sha256 && !t->manifest_hashes.has_sha512);
        ck_assert_uint_eq(t->manifest_hashes.sha256[0], 0xb5);
        ck_assert_uint_eq(t->n_payloads, 1);
        ck_assert_uint_eq(t->payloads[0].length, 10240);
        ck_assert_uint_eq(t->windows_build, 19045);
        ck_assert_uint_eq(t->attempt, 2);
        ck_assert(t->desktop_was_running);
        ck_assert_str_eq(t->pre_patch_snapshot, "3");
        ck_assert_str_eq(t->patched_snapshot, "4");
        ck_assert_ptr_null(t->result_snapshot);
        ck_assert_int_eq(t->failed_state, TX_TRIAL);
        ck_assert(t->has_crash && t->crash.hyperv);
        ck_assert_uint_eq(t->crash.stop_code, 0x7e);
        ck_assert_uint_eq(t->crash.params[0], UINT64_C(0xffffffffc0000005));
        ck_assert_str_eq(t->crash.detail, "hyperv");
        ck_assert_int_eq(t->report, TX_REPORT_PENDING);
        ck_assert_uint_eq(t->n_transitions, 5);
        ck_assert(!t->deferred);
        ck_assert(t->force);

        ck_assert_int_eq(transaction_to_json(t, &text), 0);
        ck_assert_str_eq(text, golden);
}
END_TEST

/* A file written before deferring existed has neither "deferred" nor
 * "force": it loads, both false, and is written back with them. */
START_TEST(test_older_file_loads) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_free_ char *text = NULL, *error = NULL, *out = NULL;
        const char *members = "  \"deferred\": false,\n  \"force\": true,\n";
        const char *at = strstr(golden, members);
        int r;

        ck_assert_ptr_nonnull(at);
        ck_assert_int_ge(asprintf(&text, "%.*s%s", (int) (at - golden), golden, at + strlen(members)), 0);
        r = transaction_from_json(text, strlen(text), &t, &error);
        ck_assert_msg(r == 0, "older file refused: %s", error ?: strerror(-r));
        ck_assert(!t->deferred && !t->force);
        ck_assert_int_eq(transaction_to_json(t, &out), 0);
        ck_assert_ptr_nonnull(strstr(out, "\"deferred\": false,\n  \"force\": false,"));
}
END_TEST

START_TEST(test_save_load) {
        _cleanup_(transaction_freep) Transaction *t = load_golden(), *u = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *path = NULL;
        struct stat st;

        ck_assert_int_eq(transaction_save(tmpdir, t), 0);
        path = path_join(tmpdir, TRANSACTION_FILE);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0600);
        ck_assert_int_eq(transaction_load(tmpdir, &u, NULL), 0);
        ck_assert_int_eq(transaction_to_json(t, &a), 0);
        ck_assert_int_eq(transaction_to_json(u, &b), 0);
        ck_assert_str_eq(a, b);

        ck_assert_int_eq(transaction_remove(tmpdir), 0);
        ck_assert_int_eq(access(path, F_OK), -1);
        u = transaction_free(u);
        ck_assert_int_eq(transaction_load(tmpdir, &u, NULL), -ENOENT);
        ck_assert_int_eq(transaction_remove(tmpdir), 0); /* none: fine */
}
END_TEST

START_TEST(test_refusals) {
        refused("\"version\": 1,\n  \"id\"", "\"version\": 2,\n  \"id\"", "version 2");
        refused("\"cancelled\": false,", "\"cancelled\": false, \"extra\": 1,", "unexpected member 'extra'");
        refused("  \"alert\": false,\n", "", "member 'alert' missing");
        refused("\"state\": \"trial\",\n  \"cancelled\"", "\"state\": \"testing\",\n  \"cancelled\"",
                "not a known state");
        refused("5f0c2a9e1b7d4c38", "5F0C2A9E1B7D4C38", "id");
        refused("5f0c2a9e1b7d4c38", "../../etc", "id");
        refused("\"b5bb9d80", "\"zzbb9d80", "sha256");
        refused("\"sha256\": \"b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c\"",
                "\"sha256\": null", "no sha256 or sha512");
        refused("\"path\": \"payloads/a.tar\"", "\"path\": \"payloads/../a.tar\"",
                "not a valid target path");
        refused("\"attempt\": 2", "\"attempt\": 3", "trial.attempt");
        refused("\"attempts\": 2", "\"attempts\": 0", "attempts");
        refused("\"patched_snapshot\": \"4\"", "\"patched_snapshot\": null", "needs patched_snapshot");
        refused("\"pre_patch_snapshot\": \"3\"", "\"pre_patch_snapshot\": null", "needs pre_patch_snapshot");
        refused("\"report\": \"pending\"", "\"report\": \"queued\"", "before the end");
        refused("\"report\": \"pending\"", "\"report\": \"sent\"", "report");
        refused("\"stop_code\": \"0x000000000000007e\"", "\"stop_code\": \"7e\"", "stop_code");
        refused("\"0xffff9a0c1d2e3e80\"\n", "\"0xffff9a0c1d2e3e80\", \"0x1\"\n", "four");
        /* The current state is the last transition. */
        refused("\"state\": \"trial\",\n      \"usec\": 1714532530500000",
                "\"state\": \"applied\",\n      \"usec\": 1714532530500000", "last one is not the state");
        refused("\"transitions\": [", "\"transitions\": 7, \"x\": [", "unexpected member");
        refused("\"windows_build\": 19045", "\"windows_build\": 0", "windows_build");
        refused("\"windows_build\": 19045", "\"windows_build\": -1", "windows_build");
        refused("\"id\": \"2026-05\"", "\"id\": \"\"", "manifest.id");
        /* Duplicate members are not a matter of taste. */
        refused("\"cancelled\": false,", "\"cancelled\": false, \"cancelled\": true,", "duplicate");
        refused("{\n  \"version\"", "[\n  \"version\"", "line");
        /* Optional, but typed, and only once. */
        refused("\"deferred\": false,", "\"deferred\": \"no\",", "deferred");
        refused("\"force\": true,", "\"force\": 1,", "force");
        refused("\"force\": true,", "\"force\": true, \"force\": false,", "duplicate");
        /* Deferred is an abort; the trial is not. */
        refused("\"deferred\": false,\n  \"force\": true,", "\"deferred\": true,\n  \"force\": false,",
                "only 'aborted' is deferred");
}
END_TEST

/* The deferral: an abort before the desktop is touched, its own outcome
 * word, report key and report. */
START_TEST(test_deferred) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_free_ char *text = NULL, *key = NULL, *error = NULL;
        json_t *o;

        ck_assert_int_eq(transaction_new("0123456789abcdef", &t), 0);
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_REFRESHING, 1714532400000000), 0);
        t->manifest_target = strdup("manifests/2026-05.yaml");
        t->manifest_id = strdup("2026-05");
        t->manifest_version = 1;
        t->manifest_hashes.has_sha256 = true;
        t->boot_timeout_sec = t->stability_sec = 60;
        t->attempts = 1;
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_DOWNLOADING, 1714532401000000), 0);
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_STAGED, 1714532402000000), 0);
        t->deferred = true;
        ck_assert_int_eq(transaction_set_failure(t, TX_STAGED, "user LAB\\alice is logged in on desktop d"),
                         0);

        /* Forced windows and cancelled ones are never deferred. */
        t->force = true;
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ABORTED, 1714532403000000), -EPROTO);
        ck_assert_int_eq(t->state, TX_STAGED);
        t->force = false;
        t->cancelled = true;
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ABORTED, 1714532403000000), -EPROTO);
        t->cancelled = false;
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ABORTED, 1714532403000000), 0);

        ck_assert_str_eq(transaction_outcome(t), "deferred");
        ck_assert_int_eq(transaction_report_key(t, &key), 0);
        ck_assert_str_eq(key, "0123456789abcdef-deferred");
        ck_assert_int_eq(transaction_resume_rule(t), TX_RESUME_REPORT);
        ck_assert_int_eq(transaction_report_json(t, "lab-7", &text), 0);
        o = json_loads(text, 0, NULL);
        ck_assert_ptr_nonnull(o);
        ck_assert_str_eq(json_string_value(json_object_get(o, "outcome")), "deferred");
        ck_assert(json_is_false(json_object_get(o, "cancelled")));
        ck_assert(json_is_null(json_object_get(o, "failed_step")));
        ck_assert_str_eq(json_string_value(json_object_get(o, "reason")),
                         "user LAB\\alice is logged in on desktop d");
        ck_assert(json_is_null(json_object_get(o, "pre_patch_snapshot")));
        json_decref(o);

        /* Persisted: a restart reads it back as deferred. */
        t = transaction_free(t);
        ck_assert_int_eq(transaction_load(tmpdir, &t, &error), 0);
        ck_assert(t->deferred && t->state == TX_ABORTED);
        ck_assert_str_eq(transaction_outcome(t), "deferred");

        /* An abort that is not deferred keeps its word. */
        t->deferred = false;
        ck_assert_str_eq(transaction_outcome(t), "aborted");
}
END_TEST

/* A terminal state needs its own fields. */
START_TEST(test_state_requirements) {
        _cleanup_(transaction_freep) Transaction *t = load_golden();
        _cleanup_free_ char *error = NULL;

        t->state = TX_ABORTED;
        t->transitions[t->n_transitions - 1].state = TX_ABORTED;
        ck_assert_int_eq(transaction_validate(t, &error), 0); /* a failure is recorded */
        free(t->reason);
        t->reason = NULL;
        ck_assert_int_eq(transaction_validate(t, &error), -EPROTO);
        ck_assert_ptr_nonnull(strstr(error, "failure"));

        t->reason = strdup("x");
        t->state = TX_FAILED;
        t->transitions[t->n_transitions - 1].state = TX_FAILED;
        ck_assert_int_eq(transaction_validate(t, &error), -EPROTO);
        ck_assert_ptr_nonnull(strstr(error, "alert"));
        t->alert = true;
        ck_assert_int_eq(transaction_validate(t, NULL), 0);

        t->state = TX_DOWNLOADING;
        t->transitions[t->n_transitions - 1].state = TX_DOWNLOADING;
        ck_assert_int_eq(transaction_validate(t, NULL), 0);
        free(t->manifest_id);
        t->manifest_id = NULL;
        ck_assert_int_eq(transaction_validate(t, &error), -EPROTO); /* payloads without a manifest */
        ck_assert_ptr_nonnull(strstr(error, "manifest"));
}
END_TEST

START_TEST(test_transition_table) {
        /* Terminal states go nowhere. */
        for (TxState to = 0; to < _TX_STATE_MAX; to++) {
                ck_assert(!tx_transition_allowed(TX_COMMITTED, to));
                ck_assert(!tx_transition_allowed(TX_ROLLED_BACK, to));
                ck_assert(!tx_transition_allowed(TX_ABORTED, to));
                ck_assert(!tx_transition_allowed(TX_FAILED, to));
        }
        /* Once the patch is on the active disk, the only ways out are a
         * commit after the trial, or the rollback: never "aborted". */
        ck_assert(!tx_transition_allowed(TX_APPLIED, TX_ABORTED));
        ck_assert(!tx_transition_allowed(TX_TRIAL, TX_ABORTED));
        ck_assert(!tx_transition_allowed(TX_APPLIED, TX_COMMITTING));
        ck_assert(tx_transition_allowed(TX_TRIAL, TX_COMMITTING));
        ck_assert(tx_transition_allowed(TX_TRIAL, TX_ROLLING_BACK));
        ck_assert(tx_transition_allowed(TX_APPLIED, TX_ROLLING_BACK));
        /* A success is only ever reached through the trial. */
        for (TxState from = 0; from < _TX_STATE_MAX; from++)
                if (from != TX_TRIAL && from != TX_COMMITTING)
                        ck_assert_msg(!tx_transition_allowed(from, TX_COMMITTING) &&
                                              !tx_transition_allowed(from, TX_COMMITTED),
                                      "%s reaches a commit", tx_state_to_string(from));
        /* The pre-patch state is never left but forward. */
        ck_assert(!tx_transition_allowed(TX_SNAPSHOTTED, TX_REFRESHING));
        ck_assert(!tx_transition_allowed(TX_APPLYING, TX_SNAPSHOTTED));
        ck_assert(tx_transition_allowed(TX_STOPPING_DESKTOP, TX_REFRESHING)); /* a restart */
        ck_assert(tx_transition_allowed(TX_APPLYING, TX_APPLYING));           /* a re-apply */
        ck_assert(!tx_transition_allowed(TX_ROLLING_BACK, TX_COMMITTED));
        ck_assert(tx_transition_allowed(TX_ROLLING_BACK, TX_FAILED));
        ck_assert(!tx_transition_allowed(_TX_STATE_INVALID, TX_IDLE));
}
END_TEST

START_TEST(test_resume_table) {
        static const struct {
                TxState state;
                TxResume resume;
        } table[] = {
                {TX_IDLE, TX_RESUME_RESTART},
                {TX_REFRESHING, TX_RESUME_RESTART},
                {TX_DOWNLOADING, TX_RESUME_RESTART},
                {TX_STAGED, TX_RESUME_RESTART},
                {TX_STOPPING_DESKTOP, TX_RESUME_RESTART},
                {TX_SNAPSHOTTED, TX_RESUME_APPLY},
                {TX_APPLYING, TX_RESUME_APPLY},
                {TX_APPLIED, TX_RESUME_FREEZE},
                {TX_TRIAL, TX_RESUME_INTERRUPTED},
                {TX_COMMITTING, TX_RESUME_COMMIT},
                {TX_ROLLING_BACK, TX_RESUME_ROLLBACK},
                {TX_COMMITTED, TX_RESUME_REPORT},
                {TX_ROLLED_BACK, TX_RESUME_REPORT},
                {TX_ABORTED, TX_RESUME_REPORT},
                {TX_FAILED, TX_RESUME_REPORT},
        };
        Transaction t = {.report = TX_REPORT_PENDING};

        ck_assert_uint_eq(ELEMENTSOF(table), _TX_STATE_MAX);
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                t.state = table[i].state;
                ck_assert_msg(transaction_resume_rule(&t) == table[i].resume, "%s: %s, expected %s",
                              tx_state_to_string(t.state), tx_resume_to_string(transaction_resume_rule(&t)),
                              tx_resume_to_string(table[i].resume));
        }
        t.report = TX_REPORT_QUEUED;
        t.state = TX_COMMITTED;
        ck_assert_int_eq(transaction_resume_rule(&t), TX_RESUME_NONE);
        t.report = TX_REPORT_NONE;
        t.state = TX_ABORTED;
        ck_assert_int_eq(transaction_resume_rule(&t), TX_RESUME_NONE);
}
END_TEST

START_TEST(test_enter_writes_first) {
        _cleanup_(transaction_freep) Transaction *t = NULL, *u = NULL;
        _cleanup_free_ char *missing = NULL;

        ck_assert_int_eq(transaction_new("00112233aabbccdd", &t), 0);
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_REFRESHING, 1000), 0);
        ck_assert_int_eq(transaction_load(tmpdir, &u, NULL), 0);
        ck_assert_int_eq(u->state, TX_REFRESHING);
        u = transaction_free(u);

        /* Refused transitions change nothing, in memory or on disk. */
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_COMMITTED, 2000), -EINVAL);
        ck_assert_int_eq(t->state, TX_REFRESHING);
        ck_assert_uint_eq(t->n_transitions, 2);
        /* A state whose fields are missing is not written. */
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_DOWNLOADING, 2000), -EPROTO);
        ck_assert_int_eq(t->state, TX_REFRESHING);
        ck_assert_uint_eq(t->n_transitions, 2);
        ck_assert_int_eq(transaction_load(tmpdir, &u, NULL), 0);
        ck_assert_int_eq(u->state, TX_REFRESHING);
        u = transaction_free(u);

        /* A write that fails leaves the state as it was. */
        missing = path_join(tmpdir, "no/such/dir");
        ck_assert_int_lt(transaction_enter(missing, t, TX_ABORTED, 3000), 0);
        ck_assert_int_eq(t->state, TX_REFRESHING);
        ck_assert_uint_eq(t->n_transitions, 2);

        ck_assert_int_eq(transaction_set_failure(t, TX_REFRESHING, "expired: %s", "timestamp.json"), 0);
        ck_assert_int_eq(transaction_set_failure(t, TX_DOWNLOADING, "second"), 0); /* the first stays */
        ck_assert_str_eq(t->reason, "expired: timestamp.json");
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ABORTED, 4000), 0);
        ck_assert_int_eq(transaction_load(tmpdir, &u, NULL), 0);
        ck_assert_int_eq(u->state, TX_ABORTED);
        ck_assert_int_eq(u->failed_state, TX_REFRESHING);
        ck_assert_int_eq(transaction_resume_rule(u), TX_RESUME_REPORT);
}
END_TEST

START_TEST(test_transitions_capped) {
        _cleanup_(transaction_freep) Transaction *t = load_golden();

        for (unsigned i = 0; i < 3 * TRANSACTION_TRANSITIONS_MAX; i++)
                ck_assert_int_eq(transaction_enter(tmpdir, t, TX_TRIAL, 1714532600000000 + i), 0);
        ck_assert_uint_eq(t->n_transitions, TRANSACTION_TRANSITIONS_MAX);
        /* The first (when it began) is kept, the newest is last. */
        ck_assert_int_eq(t->transitions[0].state, TX_IDLE);
        ck_assert_int_eq(t->transitions[0].usec, 1714532400000000);
        ck_assert_int_eq(t->transitions[t->n_transitions - 1].usec,
                         1714532600000000 + 3 * TRANSACTION_TRANSITIONS_MAX - 1);
        ck_assert_int_eq(t->transitions[1].usec, 1714532600000000 + 3 * TRANSACTION_TRANSITIONS_MAX -
                                                         (TRANSACTION_TRANSITIONS_MAX - 1));

        /* Full, and the write fails: the list is exactly as before. */
        {
                _cleanup_free_ char *missing = path_join(tmpdir, "no/such/dir");
                TxTransition before[TRANSACTION_TRANSITIONS_MAX];

                memcpy(before, t->transitions, sizeof(before));
                ck_assert_int_lt(transaction_enter(missing, t, TX_ROLLING_BACK, 1), 0);
                ck_assert_int_eq(t->state, TX_TRIAL);
                ck_assert_uint_eq(t->n_transitions, TRANSACTION_TRANSITIONS_MAX);
                ck_assert_mem_eq(t->transitions, before, sizeof(before));
        }
}
END_TEST

START_TEST(test_report) {
        _cleanup_(transaction_freep) Transaction *t = load_golden();
        _cleanup_free_ char *text = NULL, *key = NULL;
        json_t *o, *c;

        /* Not before the end: success is only known after the trial. */
        ck_assert_int_eq(transaction_report_json(t, "lab-7", &text), -EINVAL);
        ck_assert_int_eq(transaction_report_key(t, &key), -EINVAL);

        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ROLLING_BACK, 1714532540000000), 0);
        t->result_snapshot = strdup("3");
        ck_assert_int_eq(transaction_enter(tmpdir, t, TX_ROLLED_BACK, 1714532545000000), 0);
        ck_assert_int_eq(transaction_report_key(t, &key), 0);
        ck_assert_str_eq(key, "5f0c2a9e1b7d4c38-rolled-back");
        ck_assert_int_eq(transaction_report_json(t, "lab-7", &text), 0);

        o = json_loads(text, 0, NULL);
        ck_assert_ptr_nonnull(o);
        ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "oob-patch-report");
        ck_assert_str_eq(json_string_value(json_object_get(o, "device")), "lab-7");
        ck_assert_str_eq(json_string_value(json_object_get(o, "transaction")), "5f0c2a9e1b7d4c38");
        ck_assert_str_eq(json_string_value(json_object_get(o, "outcome")), "rolled-back");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "manifest"), "id")),
                         "2026-05");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "manifest"), "version")), 3);
        ck_assert_str_eq(json_string_value(json_object_get(o, "failed_step")), "trial");
        ck_assert_str_eq(json_string_value(json_object_get(o, "reason")),
                         "trial boot 1 of 2: failed: crash");
        c = json_object_get(o, "crash");
        ck_assert_str_eq(json_string_value(json_object_get(c, "stop_code")), "0x000000000000007e");
        ck_assert_str_eq(json_string_value(json_array_get(json_object_get(c, "params"), 3)),
                         "0xffff9a0c1d2e3e80");
        ck_assert_str_eq(json_string_value(json_object_get(o, "pre_patch_snapshot")), "3");
        ck_assert_str_eq(json_string_value(json_object_get(o, "result_snapshot")), "3");
        ck_assert_int_eq(json_integer_value(json_object_get(o, "started_usec")), 1714532400000000);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "finished_usec")), 1714532545000000);
        /* Seconds per state, a state entered twice summed: trial 60.5 + 9.5 s. */
        ck_assert(json_real_value(json_object_get(json_object_get(o, "timings"), "trial")) == 70.0);
        ck_assert(json_real_value(json_object_get(json_object_get(o, "timings"), "applied")) == 10.0);
        ck_assert(json_real_value(json_object_get(json_object_get(o, "timings"), "rolling-back")) == 5.0);
        json_decref(o);
}
END_TEST

START_TEST(test_installed) {
        _cleanup_(installed_done) Installed i = {}, j = {};
        _cleanup_free_ char *path = NULL, *error = NULL;
        FILE *f;

        ck_assert_int_eq(installed_load(tmpdir, &i, NULL), 0); /* none yet */
        ck_assert_uint_eq(i.n, 0);
        ck_assert(!installed_settled(&i, "2026-05", 1));

        ck_assert_int_eq(installed_record(tmpdir, &i, "2026-05", 2, false, "aa", 1), 0);
        ck_assert(installed_settled(&i, "2026-05", 1));
        ck_assert(installed_settled(&i, "2026-05", 2));
        ck_assert(!installed_settled(&i, "2026-05", 3)); /* a corrected patch is offered */
        ck_assert(!installed_settled(&i, "2026-06", 1));
        /* A lower version does not replace a higher one. */
        ck_assert_int_eq(installed_record(tmpdir, &i, "2026-05", 1, true, "bb", 2), 0);
        ck_assert_uint_eq(i.entries[0].version, 2);
        ck_assert(!i.entries[0].refused);
        ck_assert_int_eq(installed_record(tmpdir, &i, "2026-06", 1, true, "cc", 3), 0);

        ck_assert_int_eq(installed_load(tmpdir, &j, NULL), 0);
        ck_assert_uint_eq(j.n, 2);
        ck_assert_str_eq(j.entries[1].id, "2026-06");
        ck_assert(j.entries[1].refused);
        ck_assert_str_eq(j.entries[1].transaction, "cc");
        ck_assert(installed_settled(&j, "2026-06", 1));

        /* Malformed: the same id twice. */
        path = path_join(tmpdir, INSTALLED_FILE);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs("{\"version\":1,\"manifests\":[{\"id\":\"a\",\"version\":1,\"refused\":false,\"transaction\":"
              "\"x\","
              "\"usec\":1},{\"id\":\"a\",\"version\":2,\"refused\":false,\"transaction\":\"y\",\"usec\":2}]"
              "}",
              f);
        fclose(f);
        installed_done(&j);
        ck_assert_int_eq(installed_load(tmpdir, &j, &error), -EPROTO);
        ck_assert_ptr_nonnull(strstr(error, "twice"));
}
END_TEST

static PatchManifest manifest(const char *id, uint64_t version, char **groups, uint64_t min, uint64_t max) {
        return (PatchManifest){
                .id = (char *) id,
                .version = version,
                .device_groups = groups,
                .os_build_min = min,
                .os_build_max = max,
        };
}

START_TEST(test_choose) {
        char *lab[] = {"lab", NULL}, *ring0[] = {"ring0", "lab", NULL}, *other[] = {"finance", NULL};
        PatchManifest a = manifest("2026-06-b", 1, NULL, 0, 0), b = manifest("2026-05-a", 2, other, 0, 0),
                      c = manifest("2026-05-c", 1, ring0, 19041, 19045),
                      d = manifest("2026-05-c", 2, lab, 0, 0), e = manifest("2026-01-x", 1, NULL, 22000, 0);
        PatchManifest *list[] = {&a, &b, &c, &d, &e};
        _cleanup_(installed_done) Installed none = {}, done = {};
        const char *why[ELEMENTSOF(list)];
        char *groups[] = {"lab", NULL};

        /* b: not our group; e: our build is too old; c and d share an id:
         * the smaller version; c before a by id. */
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), groups, 19045, &none, why), 2);
        ck_assert_ptr_nonnull(why[1]);
        ck_assert_ptr_nonnull(strstr(why[1], "groups"));
        ck_assert_ptr_nonnull(strstr(why[4], "build"));
        ck_assert_ptr_null(why[0]);
        ck_assert_ptr_null(why[2]);

        /* A build outside c's bounds: d (same id, version 2, no bounds). */
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), groups, 19046, &none, why), 3);
        /* An unknown build satisfies no bound: e and c are out. */
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), groups, 0, &none, why), 3);
        ck_assert_ptr_nonnull(strstr(why[4], "unknown"));
        /* No groups: only manifests for every group. */
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), NULL, 19045, &none, why), 0);

        /* Installed versions are settled: 2026-05-c version 2 covers both. */
        ck_assert_int_eq(installed_record(tmpdir, &done, "2026-05-c", 2, false, "aa", 1), 0);
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), groups, 19045, &done, why), 0);
        ck_assert_ptr_nonnull(strstr(why[2], "installed"));
        ck_assert_int_eq(installed_record(tmpdir, &done, "2026-06-b", 1, true, "bb", 2), 0);
        ck_assert_int_eq(window_choose_manifest(list, ELEMENTSOF(list), groups, 19045, &done, why), -ENOENT);
        ck_assert_int_eq(window_choose_manifest(NULL, 0, groups, 19045, &none, NULL), -ENOENT);
        (void) lab;
}
END_TEST

START_TEST(test_string_tables) {
        for (TxState s = 0; s < _TX_STATE_MAX; s++)
                ck_assert_int_eq(tx_state_from_string(tx_state_to_string(s)), s);
        for (TxResume r = 0; r < _TX_RESUME_MAX; r++)
                ck_assert_int_eq(tx_resume_from_string(tx_resume_to_string(r)), r);
        for (TxReport r = 0; r < _TX_REPORT_MAX; r++)
                ck_assert_int_eq(tx_report_from_string(tx_report_to_string(r)), r);
        ck_assert_int_eq(tx_state_from_string("Trial"), _TX_STATE_INVALID);
        ck_assert_str_eq(tx_state_to_string(TX_STOPPING_DESKTOP), "stopping-desktop");
}
END_TEST

static Suite *transaction_suite(void) {
        Suite *s = suite_create("transaction");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_golden_round_trip);
        tcase_add_test(tc, test_older_file_loads);
        tcase_add_test(tc, test_deferred);
        tcase_add_test(tc, test_save_load);
        tcase_add_test(tc, test_refusals);
        tcase_add_test(tc, test_state_requirements);
        tcase_add_test(tc, test_transition_table);
        tcase_add_test(tc, test_resume_table);
        tcase_add_test(tc, test_enter_writes_first);
        tcase_add_test(tc, test_transitions_capped);
        tcase_add_test(tc, test_report);
        tcase_add_test(tc, test_installed);
        tcase_add_test(tc, test_choose);
        tcase_add_test(tc, test_string_tables);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(transaction_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

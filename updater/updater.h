/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * updater/: oobd's update side. HTTP through libcurl (only fetch.c includes
 * curl.h), the TUF client workflow on top of manifests/' trusted set, and
 * target download with streaming verification.
 */

#include "hv.h"
#include "lib.h"
#include "manifests.h"

/* ---- HTTP fetcher ------------------------------------------------------ */

typedef struct FetchOptions {
        /* Plain http:// is refused (-EPROTONOSUPPORT) unless the host is on
         * loopback (127.0.0.0/8, ::1, "localhost") or allow_http is set. */
        bool allow_http;
        const char *ca_file;               /* extra CA bundle (PEM), or NULL for the system's */
        /* Slow-retrieval defence: abort when fewer than low_speed_bytes per
         * second arrive for low_speed_sec seconds; defaults 1024 B/s, 30 s. */
        uint64_t low_speed_bytes;
        unsigned low_speed_sec;
        unsigned connect_timeout_sec;      /* default 30 */
        unsigned total_timeout_sec;        /* whole transfer deadline; default 3600 */
        uint64_t max_bytes_per_sec;        /* bandwidth limit; 0: none */
        const char *user_agent;            /* default "oob/VERSION" */
} FetchOptions;

typedef struct Fetcher Fetcher;

int fetcher_new(const FetchOptions *o, Fetcher **ret);
Fetcher *fetcher_free(Fetcher *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(Fetcher *, fetcher_free);

/* Called with each chunk as it arrives; a negative return aborts the transfer
 * and is returned by fetcher_get_stream(). */
typedef int (*FetchSink)(const void *data, size_t size, void *userdata);

/*
 * GET url, streaming the body to sink. More than max_size bytes (announced
 * by Content-Length or received) aborts with -EFBIG: the endless-data
 * defence. Redirects are followed only to the same scheme (at most 5).
 * Errors: -ENOENT for 404/403/410, -EIO other HTTP errors, -ETIMEDOUT slow
 * or over the deadline, -EPROTONOSUPPORT scheme not allowed, -ECONNREFUSED,
 * -EHOSTUNREACH, -ENOMEM. *ret_http (may be NULL) gets the final status.
 */
int fetcher_get_stream(Fetcher *f, const char *url, uint64_t max_size, FetchSink sink,
                       void *userdata, long *ret_http);
/* GET url into memory (NUL-terminated, not counted), capped at max_size. */
int fetcher_get(Fetcher *f, const char *url, uint64_t max_size, char **ret, size_t *ret_size);

/* ---- TUF client ------------------------------------------------------ */

typedef struct TufClientOptions {
        const char *metadata_dir;          /* trusted metadata: root.json, timestamp.json, ... */
        const char *metadata_url;          /* base URL of the metadata ("https://h/metadata") */
        const char *target_base_url;       /* base URL of targets, may be NULL until download */
        FetchOptions fetch;
        unsigned max_root_rotations;       /* per refresh; default 32 */
        unsigned max_delegations;          /* roles visited per target search; default 32 */
        int64_t reference_time;            /* 0: time(NULL) at refresh start */
} TufClientOptions;

typedef struct TufClient TufClient;

/* Install the trusted root: copied to METADATA_DIR/root.json after checking
 * it is self-signed (an untrusted file is refused). */
int tuf_client_init_root(const char *metadata_dir, const char *root_path);

int tuf_client_new(const TufClientOptions *o, TufClient **ret);
TufClient *tuf_client_free(TufClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TufClient *, tuf_client_free);

/*
 * The specification's workflow 5.1-5.5: fix the reference time, load the
 * trusted root, update it through N+1.root.json (capped), check freeze,
 * fast-forward recovery, then timestamp, snapshot and top-level targets, each
 * persisted atomically in metadata_dir once trusted. Local copies are used
 * when still valid. Returns 0 or the first error, logged at debug only.
 */
int tuf_client_refresh(TufClient *c);

/*
 * Find a target's signed info by a pre-order depth-first search of the
 * delegation graph (loading delegated roles as needed, visiting at most
 * max_delegations roles, honouring terminating delegations). refresh must
 * have succeeded. -ENOENT when no role lists it; -EINVAL for a path that
 * is not valid (see tuf_target_path_is_valid()). The result is owned by the
 * client and valid until it is freed or refreshed. Blocks while delegated
 * roles are fetched: tuf_client_find_target_async() on a loop.
 */
int tuf_client_find_target(TufClient *c, const char *path, const TufTargetFile **ret);

/* Local file name for a target in a target directory: the path percent-
 * encoded into one component ("a/b.txt" -> "a%2Fb.txt"), as python-tuf does. */
char *tuf_client_target_filename(const char *target_path);

/*
 * Download a target into target_dir (streamed, length-capped, hashes
 * verified before the file appears under its final name). If a file with
 * the right length and hashes is already there it is not fetched again.
 * Consistent snapshots fetch "DIR/HASH.NAME". *ret_path (may be NULL) gets
 * the local path; *ret_cached whether no download was needed.
 */
int tuf_client_download_target(TufClient *c, const TufTargetFile *t, const char *target_dir,
                               char **ret_path, bool *ret_cached);

/* Fetch a target into memory with the same checks (for manifests, orders);
 * blocking: tuf_client_fetch_target_async() on a loop. */
int tuf_client_fetch_target(TufClient *c, const TufTargetFile *t, char **ret, size_t *ret_size);

/* The trusted set after a refresh, for callers that need the metadata. */
const TufTrustedSet *tuf_client_trusted(const TufClient *c);

/* ---- the TUF client: details (updater/tuf-client.c) --------------------- */

/* Where the last failing call on c failed, for the caller's one error
 * message. Refresh names the metadata file and the step: "timestamp.json"
 * (verification), "timestamp.json: download from URL", "root.json: saving
 * to DIR"; target calls only the step ("download from URL", "verifying the
 * download from URL"), the caller names the target. NULL when the last call
 * succeeded. Valid until the next call on c. */
const char *tuf_client_error_context(const TufClient *c);

/* ---- the offline apply engine (updater/apply.c) ------------------------ */

typedef struct ApplyOptions {
        /* Directory holding the manifest's verified payloads, each under
         * tuf_client_target_filename(target path). */
        const char *payload_dir;
        /* Signed lengths of the payloads, to cap what an archive may unpack
         * to when its extract action gives no explicit limit. */
        const TufTargetFile *const *payloads;
        size_t n_payloads;
} ApplyOptions;

typedef struct ApplyResult {
        size_t actions_done;           /* actions completed, in order */
        size_t failed_action;          /* index of the failing action, if any */
        uint64_t files_written, bytes_written, files_deleted, registry_changes;
} ApplyResult;

/*
 * Execute a verified manifest's actions, in order, on a writable Windows
 * volume (which must be a throw-away staging overlay: on error the caller
 * discards it, so the disk is exactly as before). Archive entries are
 * written below the action's destination with hardened paths (no "..",
 * absolute paths, drive letters, links or devices; names colliding
 * case-insensitively are one file, as on NTFS); total unpacked bytes are
 * capped. Errors name the action through ret->failed_action.
 */
int apply_manifest(NtfsVolume *v, const PatchManifest *m, const ApplyOptions *o, ApplyResult *ret);

/* ---- applying a patch manifest: details (updater/apply.c) -------------- */

/*
 * apply_manifest(), and on failure *ret_error (may be NULL; freed by the
 * caller) gets one sentence naming the cause inside the failing action:
 * "payload 'p/a.tar': archive entry '../x': '.' and '..' are not allowed".
 * The caller names the disk and the action (apply_action_describe()).
 * Errors: -EPROTO a refused archive entry (name, type, duplicate) or a
 * damaged archive, -EFBIG over the unpacked-size or entry caps, -EBADMSG a
 * payload whose length is not the signed one, -EOPNOTSUPP os-image or an
 * encrypted entry, -ENOENT a payload or hive file missing, others from hv/.
 *
 * Caps of an extract (manifests/FORMATS.md, "Archives"): at most 100000
 * entries; the decompressed bytes of all entries together at most the
 * action's max-size, or else 32 times the payload's signed length and
 * never more than 16 GiB.
 */
int apply_manifest_full(NtfsVolume *v, const PatchManifest *m, const ApplyOptions *o, ApplyResult *ret,
                        char **ret_error);

/* "registry-set SYSTEM\ControlSet001\Services\foo\Start", "extract p/a.tar
 * to Windows": an action in a few words, for messages. NULL on OOM. */
char *apply_action_describe(const PatchAction *a);

/*
 * stage-package: the payload is copied to STAGED_DIR/<manifest id>/<its
 * file name> and its command queued to run once at the next boot:
 *
 *   FIRSTBOOT_DIR/queue/NNNNNN-<manifest id>-<action>.cmd
 *       a batch file: cd to the staged directory, the command line, exit
 *       with its errorlevel. NNNNNN is one more than any number in queue/,
 *       running/ and results/, so commands run in the order they were
 *       applied and results are never overwritten; <action> is 1-based.
 *   FIRSTBOOT_DIR/run.cmd
 *       the runner (rewritten by every stage-package; the same text).
 *   HKLM\SYSTEM\CurrentControlSet\Services\oobfirstboot
 *       Type 0x10 (own process), Start 2 (automatic), ErrorControl 1,
 *       ObjectName LocalSystem, ImagePath FIRSTBOOT_IMAGE_PATH.
 *
 * At every boot the service control manager starts cmd.exe with run.cmd,
 * which, in name order, moves each queue entry to running/, runs it with
 * its output in results/NAME.log, writes results/NAME.result ("exit=N",
 * "start=...", "end=..." lines; the times as cmd.exe's %DATE% %TIME% in
 * the system's locale) and deletes the running/ entry. An entry found in
 * running/ at the start was interrupted (the machine went down while it
 * ran): it is recorded as "exit=interrupted" and not run again. A command
 * runs at most once.
 *
 * Limits, honestly: cmd.exe is not a service program; it never reports to
 * the service control manager, which waits ServicesPipeTimeout (30 s by
 * default), logs event 7000/7009 in the System log and ends the process.
 * Everything queued must finish within those 30 s, or the runner is killed
 * and the command in progress is recorded as interrupted at the next boot
 * (its .log keeps what it printed). A longer installer should be detached
 * by its command line (start "" /b msiexec ...), giving up its exit code.
 * The service runs at every boot (with an empty queue it ends at once) and
 * is left registered: later patches reuse it. The tests check what is
 * written and how results are read; they do not run run.cmd on Windows.
 *
 * A later window reads the outcome offline with
 * apply_read_firstboot_results().
 */
#define STAGED_DIR "ProgramData/oob/staged"
#define FIRSTBOOT_DIR "ProgramData/oob/firstboot"
#define FIRSTBOOT_SERVICE "oobfirstboot"
#define FIRSTBOOT_IMAGE_PATH \
        "%SystemRoot%\\System32\\cmd.exe /d /c \"%SystemDrive%\\ProgramData\\oob\\firstboot\\run.cmd\""

typedef enum FirstBootState {
        FIRSTBOOT_PENDING,             /* queued, not run yet (no boot since) */
        FIRSTBOOT_INTERRUPTED,         /* started, never finished */
        FIRSTBOOT_EXITED,              /* ran; exit_code is its errorlevel */
        _FIRSTBOOT_STATE_MAX,
        _FIRSTBOOT_STATE_INVALID = -EINVAL,
} FirstBootState;
const char *firstboot_state_to_string(FirstBootState s);   /* "pending", "interrupted", "exited" */
FirstBootState firstboot_state_from_string(const char *s);

typedef struct FirstBootResult {
        char *name;                    /* "000003-<manifest id>-<action>" */
        char *manifest;                /* manifest id */
        unsigned action;               /* 1-based action number in that manifest */
        FirstBootState state;
        int exit_code;                 /* FIRSTBOOT_EXITED only */
        char *started, *ended;         /* as the runner wrote them, or NULL */
} FirstBootResult;

/* Every first-boot command of the volume, pending or done, sorted by name
 * (the order they were queued). Read-only volumes are fine. */
int apply_read_firstboot_results(NtfsVolume *v, FirstBootResult **ret, size_t *ret_n);
void firstboot_results_free(FirstBootResult *r, size_t n);

/* ---- asynchronous transfers on the daemon's loop (issue 5) --------------- */

/*
 * oobd is single-threaded on sd-event: transfers run as libcurl multi
 * handles driven by the loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION mapped
 * onto sd_event io and time sources). The synchronous calls above remain
 * for oobctl and tests and are built on the same code (a private loop run
 * until the one transfer is done), so there is one implementation.
 */

#include <systemd/sd-event.h>

typedef struct FetchJob FetchJob;
typedef void (*FetchDone)(FetchJob *j, int error, long http_status, void *userdata);

typedef struct FetchRequest {
        const char *url;
        uint64_t max_size;                 /* body cap (GET) as in fetcher_get_stream() */
        FetchSink sink;                    /* body chunks (GET and POST responses) */
        /* Resume: ask for bytes from offset on ("Range: bytes=N-"). A server
         * that answers 200 instead of 206, or a Content-Range that does not
         * start at N, is refused: done() gets -ERANGE and nothing of that body
         * reaches the sink; the caller starts over from 0, never splices. */
        uint64_t resume_from;
        /* POST: body and its type; NULL body means GET. */
        const void *post_body;
        size_t post_size;
        const char *content_type;
        FetchDone done;                    /* called once from the loop */
        void *userdata;
} FetchRequest;

/* Drive this fetcher's transfers from loop e (once; before fetcher_start). */
int fetcher_attach_event(Fetcher *f, sd_event *e);
int fetcher_start(Fetcher *f, const FetchRequest *r, FetchJob **ret);
/* Abort; done() is not called afterwards. Returns NULL. */
FetchJob *fetch_job_cancel(FetchJob *j);
/* Bytes received so far, and the total when the server announced it (0 if not). */
void fetch_job_progress(const FetchJob *j, uint64_t *ret_received, uint64_t *ret_total);

typedef void (*TufClientDone)(TufClient *c, int error, void *userdata);
/* The refresh of tuf_client_refresh(), as a step machine on loop e. */
int tuf_client_refresh_async(TufClient *c, sd_event *e, TufClientDone done, void *userdata);

/*
 * Download a target into target_dir on loop e, resuming a partial download
 * left by an interruption ("NAME.partial" beside it, re-hashed before the
 * transfer continues). A server that ignores Range is detected and the
 * download starts over from byte 0. progress (may be NULL) is called as
 * bytes arrive. The result is verified before it gets its final name.
 */
typedef void (*TufProgress)(TufClient *c, uint64_t done_bytes, uint64_t total_bytes, void *userdata);
int tuf_client_download_target_async(TufClient *c, sd_event *e, const TufTargetFile *t, const char *target_dir,
                                     TufProgress progress, TufClientDone done, void *userdata);

/* ---- transfers on a loop (fetch.c, tuf-client.c): the details ------------ */

/*
 * Fetch jobs. fetcher_start() returns a negative errno, and never calls
 * done(), when the request is refused at once (-EPROTONOSUPPORT by the URL
 * policy, -EINVAL, -ENOMEM); ret may be NULL. Otherwise done() comes exactly
 * once, from the loop (never from inside fetcher_start() or a libcurl
 * callback), unless the job is cancelled. The job belongs to the fetcher: it
 * is freed when done() returns, so done() is its last use (cancelling it
 * there is a no-op). done() may start and cancel transfers and free the
 * fetcher (its other transfers are then dropped without done()). A sink runs
 * inside libcurl: it returns a negative errno to abort, a cancel from there
 * takes effect when libcurl returns (no more data, no done()), and it must
 * not free the fetcher. fetcher_free() drops running transfers silently.
 * done()'s error is the errno of fetcher_get_stream(), plus -ERANGE for a
 * refused resume (also a 416 to a Range request). A POST with max_size 0
 * accepts at most 64 KiB of answer; the body is copied at start; the request
 * carries no "Expect: 100-continue". fetch_job_progress() counts the whole
 * resource: resume_from plus the bytes received, and resume_from plus the
 * announced Content-Length (0 when none came yet).
 *
 * A fetcher drives transfers on several loops: fetcher_attach_event()'s, and
 * a private one for the synchronous calls, so fetcher_get() works also on an
 * attached fetcher (from outside its callbacks; -EBUSY if nested).
 *
 * TUF operations. One asynchronous operation per client at a time (-EBUSY
 * otherwise, also from tuf_client_refresh() and tuf_client_download_target()
 * meanwhile), and all of a
 * client's asynchronous calls use one loop (-EBUSY for another one). A
 * negative return means nothing was started and done() will not come;
 * every failure after that, also a local one (no trusted root, an invalid
 * target path), arrives through done() from the loop, with
 * tuf_client_error_context() set as for the synchronous calls. done() may
 * free the client or start the next operation; tuf_client_free() during an
 * operation drops it without done() (a download's partial file stays).
 * The target search and the fetch into memory have asynchronous forms too
 * (below); every synchronous call is its asynchronous form run on a private
 * loop, so it blocks its caller (and returns -EBUSY while an asynchronous
 * operation of the same client runs).
 *
 * Downloads. NAME.partial (NAME = tuf_client_target_filename()) beside
 * NAME holds what arrived; it is flock()ed while in use (a second download
 * of it fails with -EBUSY). At start a file already under NAME is hashed
 * (a few MiB per loop iteration) and kept if it matches: done(0), no
 * request. Then NAME.partial is hashed the same way (more than the signed
 * length: emptied) and the transfer asks for the rest; on -ERANGE it is
 * emptied and the download starts over from 0, once. The verified file is
 * renamed to NAME. The partial file is removed after -EBADMSG (a changed or
 * corrupted partial file is only found here: the next attempt starts over),
 * -EFBIG, -ENOENT and -ERANGE, or when it is empty; after other errors
 * (network, deadline, disk) it stays to be resumed. progress() comes from
 * the loop (coalesced), done_bytes counting the partial file's bytes too,
 * its last call before done() showing the final count. The synchronous
 * tuf_client_download_target() runs the same code (and so resumes too).
 * A target whose local name is another's NAME.partial ("x" and
 * "x.partial" in one directory) would collide; repositories should avoid
 * that suffix.
 */

/* ---- target search and fetch on a loop (tuf-client.c) --------------------- */

/*
 * tuf_client_find_target() on loop e: the same pre-order search with the
 * same rules (max_delegations roles visited, terminating delegations,
 * cycles), each delegated role that is not trusted yet (from this refresh
 * or the metadata_dir cache) fetched on the loop under its consistent-
 * snapshot name, verified through the trusted set and persisted in
 * metadata_dir, before the search goes on. done() gets the target's info
 * (owned by the client, valid until it is freed or refreshed; NULL on
 * error) or -ENOENT (no role lists it), -EINVAL (not a valid path), a
 * download error or a verification error of a role, with
 * tuf_client_error_context() as for the synchronous call ("releases.json:
 * download from URL", "2.releases.json", "no trusted role lists it"). A
 * search among roles already trusted needs no transfer; done() still
 * comes from the loop. The refresh must have succeeded (-EBUSY otherwise).
 * The rules of the asynchronous operations above hold (one at a time, one
 * loop, done() may free the client or start the next operation,
 * tuf_client_free() cancels without done()).
 */
typedef void (*TufFindDone)(TufClient *c, int error, const TufTargetFile *t, void *userdata);
int tuf_client_find_target_async(TufClient *c, sd_event *e, const char *path, TufFindDone done,
                                 void *userdata);

/*
 * tuf_client_fetch_target() on loop e: the target into memory, capped at its
 * signed length (-EFBIG beyond), hashed as it arrives and verified against
 * the signed length and hashes (-EBADMSG) before done() sees it. t is
 * copied: it need not outlive the call. On success done() gets the bytes
 * (NUL-terminated, size not counting it) and owns them: it frees data.
 * On error data is NULL, and the context is "download from URL" or
 * "verifying the download from URL".
 */
typedef void (*TufFetchDone)(TufClient *c, int error, char *data, size_t size, void *userdata);
int tuf_client_fetch_target_async(TufClient *c, sd_event *e, const TufTargetFile *t, TufFetchDone done,
                                  void *userdata);

/* ---- status reports (report.c) --------------------------------------------- */

/*
 * A persisted outbox of JSON reports, POSTed to the configured endpoint with
 * retries and exponential backoff (with jitter), one file per report in
 * outbox_dir written atomically before the first attempt, removed only after
 * the server answered 2xx. Reports carry an idempotency key (the transaction
 * id and outcome) so a report delivered twice is recognised by the server.
 * Survives restarts and offline days: outbox_resume() re-queues every file.
 */
typedef struct Outbox Outbox;

int outbox_new(sd_event *e, Fetcher *f, const char *outbox_dir, const char *endpoint_url, Outbox **ret);
Outbox *outbox_free(Outbox *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(Outbox *, outbox_free);
/* Persist a report (JSON object text) under key and start sending it. The
 * same key queued twice keeps the first. */
int outbox_queue(Outbox *o, const char *key, const char *json);
/* Re-queue every report left in outbox_dir (call at start). */
int outbox_resume(Outbox *o);
/* Reports still waiting for delivery. */
size_t outbox_pending(const Outbox *o);

/* ---- the report outbox: details (updater/report.c) ------------------------ */

/*
 * The outbox in detail (the contract above still holds):
 *
 * Files. OUTBOX_DIR (created 0700) holds one file per waiting report,
 * "<name>.json", mode 0600, written with write_file_atomic_at() before the
 * first attempt; <name> is the key with every byte outside [A-Za-z0-9_.-]
 * (and a leading '.') written as %XX, so any key is one safe file name and
 * temp files (".#...") never look like reports. Reports the server refused
 * go to OUTBOX_DIR/rejected/ (at most OUTBOX_REJECTED_MAX, oldest removed).
 * At most OUTBOX_MAX_REPORTS wait (outbox_set_max_reports()); queuing one
 * more drops the oldest with a journal warning (OOB_MESSAGE_REPORT_DROPPED),
 * so months offline cannot fill the disk.
 *
 * Keys. 1..OUTBOX_KEY_MAX printable ASCII characters, no spaces (-EINVAL
 * otherwise), e.g. "<transaction id>-<outcome>". FetchRequest carries no
 * request headers, so there is no "Idempotency-Key:" header: the key is sent
 * twice instead, as the URL query "?key=<percent-encoded key>" ('&' when the
 * endpoint has a query already) and as the member "idempotency_key" that
 * outbox_queue() sets in the JSON object (replacing one already there). A
 * server dedupes by that member. The body sent is exactly the file's bytes.
 *
 * outbox_queue(): json must be one JSON object of at most OUTBOX_REPORT_MAX
 * bytes (-EPROTO not an object or not JSON, -EFBIG too big). Returns 1 when
 * the report was persisted, 0 when that key was already waiting (in memory
 * or as a file, which is kept unchanged and, if it was not queued yet, is
 * picked up now). A key whose report was already delivered is sent again:
 * the server's dedup answers that. Sending starts at once unless a retry
 * is pending; errors of sending never reach the caller (they are retried).
 *
 * Delivery, one report at a time, oldest (file mtime, then queue order)
 * first; POST, Content-Type application/json:
 *   2xx                 delivered: the file is removed (directory fsynced);
 *   other 4xx           the server calls it malformed: moved to rejected/
 *                       with a warning (OOB_MESSAGE_REPORT_REJECTED), never
 *                       retried; but 401, 403, 404 (endpoint or credentials
 *                       wrong: true for every report, so rejecting would
 *                       empty the outbox), 408 and 429 are retried;
 *   5xx, 3xx, no answer, network errors, an attempt over its timeout
 *                       (default OUTBOX_ATTEMPT_TIMEOUT_USEC; the job is
 *                       cancelled): retried after a delay drawn uniformly
 *                       from [0, min(cap, base * 2^(failures-1))] ("full
 *                       jitter"), base 5 s, cap 1 h by default. Timers are
 *                       CLOCK_BOOTTIME sources on the loop (time asleep
 *                       counts). Any delivery or rejection resets the count.
 * outbox_new() attaches f to e (fetcher_attach_event(): nothing to do when
 * the caller did already, -EBUSY when f drives another loop); f must
 * outlive the outbox. outbox_free() cancels a transfer in flight (its file
 * stays for the next outbox_resume()).
 *
 * outbox_resume() picks up every "*.json" in OUTBOX_DIR not yet queued
 * (names that are not canonical escaped keys are left alone), removes temp
 * files left by a killed write, applies the size cap, and returns how many
 * reports it added.
 */
#define OUTBOX_KEY_MAX 80
#define OUTBOX_REPORT_MAX (64U * 1024U)
#define OUTBOX_MAX_REPORTS 1000U
#define OUTBOX_REJECTED_MAX 100U
#define OUTBOX_BACKOFF_BASE_USEC (5ULL * 1000000ULL)
#define OUTBOX_BACKOFF_CAP_USEC (3600ULL * 1000000ULL)
#define OUTBOX_ATTEMPT_TIMEOUT_USEC (60ULL * 1000000ULL)

/* Journal MESSAGE_IDs (to be listed in the catalog with the guard's). */
#define OOB_MESSAGE_REPORT_DROPPED "8612d668b1a34682ba5c37d309c2989e"  /* outbox full: oldest dropped */
#define OOB_MESSAGE_REPORT_REJECTED "6088c60e81ca47cc9e300d71dd57c1d3" /* server refused a report (4xx) */

/* Knobs, mostly for tests; 0 restores a default. base <= cap. */
int outbox_set_backoff(Outbox *o, uint64_t base_usec, uint64_t cap_usec);
int outbox_set_attempt_timeout(Outbox *o, uint64_t usec);
int outbox_set_max_reports(Outbox *o, size_t n);

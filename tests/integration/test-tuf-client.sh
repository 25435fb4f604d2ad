#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oobctl tuf, the conformance command line, as a user and a test harness see
# it: a repository published by oob-repo and served by nginx over TLS, then
#   - the contract: exit 0 on success, 1 on any failure, 2 on usage errors,
#     metadata under plain names, targets percent-encoded in TARGET_DIR;
#   - download implies refresh, and a verified file already there is kept
#     (the server is not asked again);
#   - an interrupted download (NAME.partial) resumes with a Range request
#     for the missing bytes only; a corrupted partial file fails the final
#     verification, is removed, and the next attempt starts over;
#   - one error message per failure that names the file and the cause, for:
#     a tampered target, a replayed (rollback) timestamp, an endless
#     timestamp, plain http to a remote host, a target path with "..", an
#     unknown target, an untrusted TLS certificate, an untrusted root;
#   - nothing is left in the target dir by a refused download.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=$root/${BUILD:-build}/bin
oobctl=${OOBCTL:-$bin/oobctl}
oobrepo=${OOB_REPO:-$bin/oob-repo}
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }
[ -x "$oobrepo" ] || { echo "oob-repo not built: $oobrepo (run make)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/oob-tuf-client.XXXXXX)
cleanup() {
	tests/nginx-fixture stop "$tmp/nginx" >/dev/null 2>&1 || true
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# ctl ARGS...: run oobctl (bounded), output in $tmp/out; returns its status.
ctl() {
	local rc=0
	timeout 60 "$oobctl" "$@" >"$tmp/out" 2>&1 || rc=$?
	return $rc
}
# expect CODE PATTERN ARGS...: oobctl must exit with CODE and print PATTERN
# (extended regex), on exactly one line for failures.
expect() {
	local want=$1 pattern=$2 rc=0; shift 2
	ctl "$@" || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$tmp/out" >&2; fail "oobctl $*: exit $rc, expected $want"; }
	[ -z "$pattern" ] || grep -qE -- "$pattern" "$tmp/out" ||
		{ cat "$tmp/out" >&2; fail "oobctl $*: output lacks '$pattern'"; }
	if [ "$want" -eq 1 ]; then
		[ "$(grep -c . "$tmp/out")" -eq 1 ] || { cat "$tmp/out" >&2; fail "oobctl $*: expected one error line"; }
		sed 's/^/    /' "$tmp/out"
	fi
}
served() { grep -c "\"GET $1 HTTP/1.1\" 200 " "$NGINX_LOG" || true; }
empty_dir() { [ ! -d "$1" ] || [ -z "$(ls -A "$1")" ]; }

# ---- a repository and a server -------------------------------------------------------
r=$tmp/repo
timeout 60 "$oobrepo" --repo "$r" init >/dev/null
head -c 100000 /dev/urandom >"$tmp/update.tar"
printf 'second\n' >"$tmp/second.bin"
timeout 60 "$oobrepo" --repo "$r" add-payload "$tmp/update.tar" >/dev/null
timeout 60 "$oobrepo" --repo "$r" add-payload "$tmp/second.bin" >/dev/null

eval "$(tests/nginx-fixture start "$tmp/nginx")"
ln -s "$r/public" "$tmp/nginx/www/r"
url=$NGINX_HTTPS/r
md=$tmp/md dl=$tmp/dl

tuf() { ctl tuf --ca-file "$NGINX_CA" "$@"; }
tuf_expect() { local code=$1 pattern=$2; shift 2; expect "$code" "$pattern" tuf --ca-file "$NGINX_CA" "$@"; }
download() {
	local dir=$1 name names=(); shift
	for name in "$@"; do names+=(--target-name "$name"); done
	tuf --metadata-dir "$md" --metadata-url "$url/metadata" "${names[@]}" \
		--target-base-url "$url/targets" --target-dir "$dir" download
}

# ---- usage ------------------------------------------------------------------------------
expect 2 'Usage: oobctl' ;                               ok "no verb: exit 2 with usage"
expect 2 "Unknown verb 'frobnicate'" frobnicate;         ok "unknown verb: exit 2"
expect 0 'Exit status: 0 success, 1 failure, 2 usage error' --help
expect 0 'oobctl tuf --metadata-dir DIR init' tuf --help
expect 2 'needs --metadata-dir' tuf refresh
expect 2 'needs --metadata-url' tuf --metadata-dir "$md" refresh
expect 2 'needs at least one --target-name' tuf --metadata-dir "$md" --metadata-url "$url/metadata" download
expect 2 "Unknown tuf command 'update'" tuf --metadata-dir "$md" update
expect 2 'takes exactly one TRUSTED_ROOT_FILE' tuf --metadata-dir "$md" init
expect 2 'Unknown log level' --log-level loud tuf --help
ok "usage errors: exit 2 with a message"

# ---- init ----------------------------------------------------------------------------------
printf '{"signed": {}, "signatures": []}' >"$tmp/not-a-root.json"
expect 1 "Failed to install trusted root $tmp/not-a-root.json into $md: " tuf --metadata-dir "$md" init "$tmp/not-a-root.json"
[ ! -e "$md/root.json" ] || fail "an untrusted root was installed"
expect 0 '' tuf --metadata-dir "$md" init "$r/public/metadata/1.root.json"
cmp -s "$md/root.json" "$r/public/metadata/1.root.json" || fail "root.json is not the given root"
ok "init refuses a document that is not a self-signed root, installs a good one"

# ---- the good path ---------------------------------------------------------------------------
download "$dl" payloads/update.tar payloads/second.bin || { cat "$tmp/out" >&2; fail "download"; }
cmp -s "$tmp/update.tar" "$dl/payloads%2Fupdate.tar" || fail "update.tar differs"
cmp -s "$tmp/second.bin" "$dl/payloads%2Fsecond.bin" || fail "second.bin differs"
for f in root timestamp snapshot targets releases; do
	[ -f "$md/$f.json" ] || fail "metadata dir lacks $f.json"
done
ok "download (with its implied refresh) verified and stored both payloads"

fetched=$(served "/r/targets/payloads/.*update.tar")
download "$dl" payloads/update.tar || fail "second download"
grep -q 'already verified' "$tmp/out" || { cat "$tmp/out" >&2; fail "no 'already verified'"; }
[ "$(served "/r/targets/payloads/.*update.tar")" -eq "$fetched" ] || fail "a verified local copy was fetched again"
tuf_expect 0 '' --metadata-dir "$md" --metadata-url "$url/metadata" refresh
ok "a verified target already there is kept; refresh alone works"

# ---- an interrupted download resumes ----------------------------------------------------------
# wait_log REGEX: nginx logs a request once it is over; wait (bounded) for it.
wait_log() {
	local _
	for _ in $(seq 1 200); do
		grep -qE "$1" "$NGINX_LOG" && return 0
		sleep 0.05
	done
	fail "nginx did not log $1"
}
rm -f "$dl/payloads%2Fupdate.tar"
head -c 40000 "$tmp/update.tar" >"$dl/payloads%2Fupdate.tar.partial"
download "$dl" payloads/update.tar || { cat "$tmp/out" >&2; fail "resumed download"; }
cmp -s "$tmp/update.tar" "$dl/payloads%2Fupdate.tar" || fail "resumed update.tar differs"
[ ! -e "$dl/payloads%2Fupdate.tar.partial" ] || fail "the partial file was left behind"
wait_log "\"GET /r/targets/payloads/[0-9a-f]*\\.update\\.tar HTTP/1.1\" 206 60000 "
ok "a partial download resumes: nginx served the missing 60000 bytes as a range"

# A partial file whose bytes were changed: the final check fails, it goes,
# and the next attempt starts over.
rm -f "$dl/payloads%2Fupdate.tar"
head -c 40000 "$tmp/update.tar" | tr 'A-Za-z' 'N-ZA-Mn-za-m' >"$dl/payloads%2Fupdate.tar.partial"
cmp -s "$dl/payloads%2Fupdate.tar.partial" <(head -c 40000 "$tmp/update.tar") && fail "the partial file did not change"
tuf_expect 1 "Failed to download target 'payloads/update.tar': verifying the download from .*update.tar: bad signature, hash or length" \
	--metadata-dir "$md" --metadata-url "$url/metadata" --target-name payloads/update.tar \
	--target-base-url "$url/targets" --target-dir "$dl" download
[ ! -e "$dl/payloads%2Fupdate.tar.partial" ] || fail "the corrupted partial file was kept"
[ ! -e "$dl/payloads%2Fupdate.tar" ] || fail "a corrupted download got the final name"
download "$dl" payloads/update.tar || { cat "$tmp/out" >&2; fail "download after a corrupted partial"; }
cmp -s "$tmp/update.tar" "$dl/payloads%2Fupdate.tar" || fail "update.tar differs after starting over"
ok "a corrupted partial file fails verification, is removed, and the next download starts over"

# ---- refusals, each with one message naming file and cause --------------------------------------
tuf_expect 1 "Failed to find target '../etc/passwd': not a valid target path" \
	--metadata-dir "$md" --metadata-url "$url/metadata" --target-name ../etc/passwd \
	--target-base-url "$url/targets" --target-dir "$dl" download
tuf_expect 1 "Failed to find target 'payloads/none.bin': no trusted role lists it: not found" \
	--metadata-dir "$md" --metadata-url "$url/metadata" --target-name payloads/none.bin \
	--target-base-url "$url/targets" --target-dir "$dl" download
ok "bad and unknown target names refused"

tuf_expect 1 "Failed to refresh metadata from http://192.0.2.1/metadata: 2.root.json: download from .*: URL scheme or host not allowed" \
	--metadata-dir "$md" --metadata-url http://192.0.2.1/metadata refresh
expect 1 "Failed to refresh metadata from $url/metadata: 2.root.json: download from .*: untrusted key or certificate" \
	tuf --metadata-dir "$md" --metadata-url "$url/metadata" refresh
ok "plain http to a remote host and an untrusted TLS certificate refused"

# A target changed on the server (every copy of it): refused, nothing stored.
for f in "$r"/public/targets/payloads/*second.bin; do printf 'SECOND\n' >"$f"; done
tuf_expect 1 "Failed to download target 'payloads/second.bin': verifying the download from .*second.bin: bad signature, hash or length" \
	--metadata-dir "$md" --metadata-url "$url/metadata" --target-name payloads/second.bin \
	--target-base-url "$url/targets" --target-dir "$tmp/dl-evil" download
empty_dir "$tmp/dl-evil" || fail "a refused download left files: $(ls -A "$tmp/dl-evil")"
ok "tampered target refused, target dir left empty"

# Rollback: the server replays the timestamp this client already replaced.
cp "$r/public/metadata/timestamp.json" "$tmp/old-timestamp.json"
timeout 60 "$oobrepo" --repo "$r" refresh >/dev/null
tuf_expect 0 '' --metadata-dir "$md" --metadata-url "$url/metadata" refresh
cp "$r/public/metadata/timestamp.json" "$tmp/new-timestamp.json"
cp "$tmp/old-timestamp.json" "$r/public/metadata/timestamp.json"
tuf_expect 1 "Failed to refresh metadata from $url/metadata: timestamp.json: rollback attempt" \
	--metadata-dir "$md" --metadata-url "$url/metadata" refresh
cmp -s "$md/timestamp.json" "$tmp/new-timestamp.json" || fail "the replayed timestamp replaced the trusted one"
ok "replayed timestamp refused, the trusted one kept"

# Endless data: a timestamp far over its cap.
head -c 100000 /dev/zero | tr '\0' ' ' >"$r/public/metadata/timestamp.json"
tuf_expect 1 "timestamp.json: download from .*: larger than allowed" \
	--metadata-dir "$md" --metadata-url "$url/metadata" refresh
cp "$tmp/new-timestamp.json" "$r/public/metadata/timestamp.json"
tuf_expect 0 '' --metadata-dir "$md" --metadata-url "$url/metadata" refresh
ok "oversized timestamp refused; the client recovers once the server is sane"

echo "test-tuf-client: OK"

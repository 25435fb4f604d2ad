#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/report-server.mjs, the endpoint the outbox tests and `make demo`
# send reports to, seen from the outside with curl:
#   - a report is stored once: the same idempotency key again is answered
#     200 and not stored twice, also by a restarted server (its store file);
#   - --fail N answers the first N POSTs with the given status and stores
#     nothing; --hang N stores and never answers (a lost response), and the
#     client's retry is recognised as a duplicate;
#   - refusals: no key 400, body and query keys differ 400, wrong
#     Content-Type 415, not an object 400;
#   - TLS with the nginx fixture's test CA (its server.pem/server.key);
#   - the server goes away by itself when the process that started it does.
# The outbox itself (retries, backoff, kill and resume) is tests/updater/test-outbox.c.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v node >/dev/null || { echo "node is not installed (run scripts/install-deps)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/oob-test-outbox-sh.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	tests/nginx-fixture stop "$tmp/nginx" >/dev/null 2>&1 || true
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# start ARGS...: run the server, wait (at most 10 s) for its line; sets URL and PID.
start() {
	local line
	exec {fd}< <(exec node tests/report-server.mjs --max-seconds 120 "$@" 2>>"$tmp/server.err")
	pids+=($!)
	read -r -t 10 -u "$fd" line || fail "report-server did not start: $(cat "$tmp/server.err")"
	[[ $line =~ ^REPORT_SERVER=([^ ]+)\ PID=([0-9]+)$ ]] || fail "unexpected line: $line"
	URL=${BASH_REMATCH[1]}
	PID=${BASH_REMATCH[2]}
}

stop() {
	kill "$PID"
	# Bounded: the server exits on SIGTERM at once.
	for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || return 0; sleep 0.05; done
	fail "report-server $PID did not exit on SIGTERM"
}

# post KEY BODY [CURL ARGS...]: POST to /reports?key=KEY; prints the HTTP status.
post() {
	local key=$1 body=$2
	shift 2
	curl -s -o "$tmp/answer" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
		--data-binary "$body" "$@" "$URL/reports?key=$key"
}

stored() { curl -s --max-time 10 "$@" "$URL/reports" | node -e \
	'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).map(r=>r.idempotency_key??"-").join(" ")))'; }

expect() { [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"; }

# ---- stored once, also across a restart ---------------------------------------
start --store "$tmp/store.jsonl"
expect "first POST" "$(post tx1 '{"idempotency_key":"tx1","outcome":"committed"}')" 201
expect "same key again" "$(post tx1 '{"idempotency_key":"tx1","outcome":"committed"}')" 200
expect "second key" "$(post tx2 '{"idempotency_key":"tx2","outcome":"failed","stop_code":"0x0000007E"}')" 201
expect "stored" "$(stored)" "tx1 tx2"
expect "store file lines" "$(wc -l <"$tmp/store.jsonl")" 2
stop
start --store "$tmp/store.jsonl"
expect "after restart" "$(post tx1 '{"idempotency_key":"tx1","outcome":"committed"}')" 200
expect "stored after restart" "$(stored)" "tx1 tx2"
stop
ok "a key is stored once, also by a restarted server"

# ---- refusals -------------------------------------------------------------------
start
expect "no key" "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{}' "$URL/reports")" 400
expect "keys differ" "$(post a '{"idempotency_key":"b"}')" 400
expect "not an object" "$(post a '[1]')" 400
expect "not JSON" "$(post a '{')" 400
expect "content type" "$(curl -s -o /dev/null -w '%{http_code}' -d '{"idempotency_key":"a"}' "$URL/reports?key=a")" 415
expect "header key" "$(post '' '{}' -H 'Idempotency-Key: h1')" 201
expect "nothing else stored" "$(stored)" "-"
stop
ok "malformed reports are refused with 400/415"

# ---- failing, hanging ---------------------------------------------------------
start --fail 2 --fail-status 503
expect "fail 1" "$(post f1 '{"idempotency_key":"f1"}')" 503
expect "fail 2" "$(post f1 '{"idempotency_key":"f1"}')" 503
expect "then stored" "$(post f1 '{"idempotency_key":"f1"}')" 201
expect "stored once" "$(stored)" "f1"
stop
start --hang 1
expect "hanging" "$(post h1 '{"idempotency_key":"h1"}' --max-time 1 || true)" 000
expect "retry is a duplicate" "$(post h1 '{"idempotency_key":"h1"}')" 200
expect "stored once" "$(stored)" "h1"
stop
ok "--fail answers with the status, --hang stores and never answers"

# ---- TLS with the nginx fixture's test CA ----------------------------------------
eval "$(tests/nginx-fixture start "$tmp/nginx")"
tests/nginx-fixture stop "$tmp/nginx" >/dev/null
start --cert "$tmp/nginx/server.pem" --key "$tmp/nginx/server.key"
[[ $URL == https://* ]] || fail "not https: $URL"
expect "over TLS" "$(post t1 '{"idempotency_key":"t1"}' --cacert "$NGINX_CA")" 201
expect "stored over TLS" "$(stored --cacert "$NGINX_CA")" "t1"
expect "unknown CA" "$(post t2 '{"idempotency_key":"t2"}' || true)" 000
stop
ok "TLS with the test CA"

# ---- gone with its parent --------------------------------------------------------
bash -c 'exec {fd}< <(exec node tests/report-server.mjs --max-seconds 120 2>/dev/null)
	read -r -t 10 -u "$fd" line && echo "$line"' >"$tmp/orphan"
[[ $(cat "$tmp/orphan") =~ PID=([0-9]+)$ ]] || fail "orphan server did not start"
orphan=${BASH_REMATCH[1]}
pids+=("$orphan")
for _ in $(seq 100); do kill -0 "$orphan" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$orphan" 2>/dev/null || fail "report-server $orphan outlived its parent"
ok "the server exits when its parent is gone"

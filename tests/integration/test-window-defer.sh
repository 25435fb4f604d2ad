#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The patch window defers while someone is logged in on the desktop
# ([desktop] defer-when-user-active, programs/oobd/window.c), in the test
# world of scripts/world (the desktop running, the good patch published).
# A user "logs in" on the stand-in through its guest agent (guest-exec of
# /bin/standin-login, a utmp record that qemu-ga's guest-get-users lists):
#
#   A. defer-when-user-active = yes, alice logged in: `update now --wait`
#      exits 6, outcome deferred, the summary says a user is logged in (only
#      oobd's journal names alice: no names leave the device); the desktop runs
#      on (the same domain ID, never shut down), the catalog is unchanged,
#      the payload stays downloaded; the report server gets one report,
#      outcome "deferred", reason "a user is logged in", no failed step; history and
#      the journal (MESSAGE_ID of a deferral) say deferred;
#   B. defer-when-user-active = no: the window does not ask who is logged
#      in (oobd stopped right after it went on: OOB_TEST_CRASH_AT=
#      stopping-desktop, before the desktop is touched);
#   C. ... restarted with yes, oobd resumes that transaction by itself and
#      defers it (a resumed window asks again);
#   D. an agent without guest-get-users (qemu-ga -b): the activity is
#      unknown, a warning says so and the window goes on (stopped the same
#      way); the real agent back, the resume defers again;
#   E. `update now --wait --force` with alice still logged in: not asked,
#      the desktop shut down, patched, trial-booted, committed (exit 0);
#      the payload was fetched from nginx once in all.
#
# Needs root (the system libvirtd). About a minute: the world's boot and
# one trial boot under TCG; the deferrals cost no boot.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
. tests/integration/window-lib.sh
window_test_begin test-window-defer

# agent JSON: one command to the stand-in's guest agent, its answer.
agent() { virt qemu-agent-command "$DOMAIN" "$1"; }
# exec_request PROGRAM ARG...: the guest-exec command that runs it.
exec_request() {
	node -e 'const [path, ...arg] = process.argv.slice(1);
		process.stdout.write(JSON.stringify({execute: "guest-exec", arguments: {path, arg}}))' -- "$@"
}
# guest_exec PROGRAM ARG...: run it in the stand-in through the agent, as a
# user's session would start there, and wait for it to exit 0.
guest_exec() {
	local out pid i
	out=$(agent "$(exec_request "$@")") || fail "guest-exec $*: $out"
	pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$out")
	[ -n "$pid" ] || fail "guest-exec $*: no pid in $out"
	for ((i = 0; i < 200; i++)); do
		out=$(agent "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || fail "guest-exec-status: $out"
		if grep -q '"exited":true' <<<"$out"; then
			grep -q '"exitcode":0' <<<"$out" || fail "in the stand-in, $* failed: $out"
			return 0
		fi
		sleep 0.05
	done
	fail "in the stand-in, $* did not exit within 10 s"
}
# set_defer yes|no: the key in oobd.conf (read at oobd's next start).
set_defer() { sed -i "s/^defer-when-user-active = .*/defer-when-user-active = $1/" "$CONFIG"; }
# start_oobd [CRASH_STATE]: oobd restarted, with OOB_TEST_CRASH_AT when given.
start_oobd() {
	local crash=${1:-}
	scripts/world oobd-stop "$w" >/dev/null 2>&1 || true
	rm -f "$w/oobd.pid"
	if ! env ${crash:+OOB_TEST_CRASH_AT="$crash"} scripts/world oobd-start "$w" >/dev/null 2>"$w/start.err"; then
		[ -n "$crash" ] && [ -s "$w/oobd.pid" ] || { cat "$w/start.err" >&2; fail "oobd did not start"; }
	fi
	OOBD_PID=$(cat "$w/oobd.pid")
}
wait_dead() { wait_for 60 "oobd to stop itself ($1)" bash -c "! kill -0 $OOBD_PID"; }
dom_id() { virt domid "$DOMAIN"; }
catalog_state() { json "$CATALOG_DIR/catalog.json" 'd.active + " " + d.snapshots.map(s => s.id).join(",")'; }
log_lines() { wc -l <"$OOBD_LOG"; }
log_since() { tail -n +"$(($1 + 1))" "$OOBD_LOG"; }
# check_deferred ID WHO: transaction ID ended deferred, naming WHO, and nothing changed.
check_deferred() {
	local id=$1 who=$2
	[ "$(tx 'd.id + " " + d.state + " " + d.deferred + " " + d.force')" = "$id aborted true false" ] ||
		fail "transaction: $(tx 'd.id + " " + d.state + " deferred " + d.deferred + " force " + d.force')"
	tx 'd.failure.reason' | grep -qx "a user is logged in on desktop $DOMAIN" || fail "reason: $(tx 'd.failure.reason')"
	[ "$(tx 'd.pre_patch_snapshot === null && d.desktop_was_running === false')" = true ] ||
		fail "the deferred window touched the desktop: $(cat "$OOBD_STATE/transaction.json")"
	[ "$(virt domstate "$DOMAIN")" = running ] || fail "the desktop does not run after the deferral"
	[ "$(dom_id)" = "$dom_id0" ] || fail "the desktop was restarted (domain ID $(dom_id), was $dom_id0)"
	[ "$(catalog_state)" = "$catalog0" ] || fail "the catalog changed: $(catalog_state), was $catalog0"
	[ "$(domain_disk)" = "$disk0" ] || fail "the domain's disk changed: $(domain_disk), was $disk0"
	[ -n "$(ls "$OOBD_STATE/payloads" 2>/dev/null)" ] || fail "the downloaded payload is gone after the deferral"
	wait_for 30 "the deferred report of $id" grep -q "\"key\":\"$id-deferred\"" "$REPORTS_STORE"
	[ "$(reports_with_key "$id-")" = 1 ] || fail "$(reports_with_key "$id-") reports for $id"
	grep "\"key\":\"$id-deferred\"" "$REPORTS_STORE" >"$w/report.json"
	[ "$(json "$w/report.json" 'd.report.outcome + " " + d.report.failed_step + " " + d.report.cancelled + " " + d.report.manifest.id + " " + d.report.pre_patch_snapshot')" = \
		"deferred null false $GOOD_MANIFEST null" ] || fail "report: $(cat "$w/report.json")"
	json "$w/report.json" 'd.report.reason' | grep -qx "a user is logged in on desktop $DOMAIN" || fail "the report's reason: $(cat "$w/report.json")"
	! grep -q "$who" "$w/report.json" || fail "the report names $who: $(cat "$w/report.json")"
}

# ---- the world ----------------------------------------------------------------------
start=$(date +%s)
scripts/world up "$w" --good-only --stability 5 --quiet >/dev/null 2>"$w.err" || { cat "$w.err" >&2; fail "world up"; }
rm -f "$w.err"
set -a
. "$w/world.env"
set +a
ok "the world is up in $(($(date +%s) - start)) s; desktop $DOMAIN runs"
[ "$(virt domstate "$DOMAIN")" = running ] || fail "the desktop is not running before the window"
dom_id0=$(dom_id)
catalog0=$(catalog_state)
disk0=$(domain_disk)
console0=$(wc -c <"$CONSOLE_LOG")

# A user logs in, as the agent (and libvirt) sees it.
guest_exec /bin/standin-login alice
virt guestinfo --user "$DOMAIN" >"$w/guestinfo"
grep -q "user.0.name *: alice" "$w/guestinfo" || fail "libvirt does not see alice logged in: $(cat "$w/guestinfo")"
ok "alice logged in on the stand-in (virsh guestinfo --user lists her)"

# ---- A: deferred ---------------------------------------------------------------------------
set_defer yes
start_oobd
mark=$(log_lines)
rc=0
timeout 120 "$OOBCTL" update now --wait --bus-address "$OOBD_BUS" >"$w/out" 2>&1 || rc=$?
[ $rc -eq 6 ] || { cat "$w/out" >&2; fail "update now --wait: exit $rc, expected 6 (deferred)"; }
grep -q "deferred: a user is logged in on desktop $DOMAIN; nothing was changed" "$w/out" || fail "oobctl said: $(cat "$w/out")"
id_a=$(tx 'd.id')
check_deferred "$id_a" alice
log_since "$mark" | grep -q "update $id_a: deferred (manifest $GOOD_MANIFEST): deferred: a user is logged in" ||
	fail "no deferral in oobd's log"
log_since "$mark" | grep -q "Transaction $id_a: alice is logged in on desktop $DOMAIN; deferred" ||
	fail "oobd's journal does not name alice"
! log_since "$mark" | grep -q "asking desktop $DOMAIN to shut down" || fail "the deferred window asked the desktop to shut down"
ctl history --json >"$w/history.json"
[ "$(json "$w/history.json" "d.transactions.map(t => t.id + ':' + t.outcome + ':' + t.failed_step).join(' ')")" = "$id_a:deferred:null" ] ||
	fail "history: $(cat "$w/history.json")"
ok "A: deferred (exit 6) while alice is logged in: the desktop ran on untouched, the catalog unchanged, the payload kept; report and history say deferred"

# ---- B: defer-when-user-active = no: not asked ------------------------------------------------
set_defer no
start_oobd stopping-desktop
mark=$(log_lines)
ctl update now >/dev/null 2>&1 || fail "update now (B) was refused"
wait_dead "at stopping-desktop"
id_b=$(tx 'd.id')
[ "$id_b" != "$id_a" ] && [ "$(tx 'd.state')" = stopping-desktop ] || fail "B: transaction $id_b in $(tx 'd.state')"
log_since "$mark" | grep -q "Transaction $id_b: \[desktop\] defer-when-user-active is off: not asking who is logged in" ||
	fail "B: the window did not say it skipped the question"
[ "$(dom_id)" = "$dom_id0" ] || fail "B: the desktop was touched"
ok "B: defer-when-user-active = no: not asked, the window went on to shut the desktop down (stopped there)"

# ---- C: the resume asks again ------------------------------------------------------------------
set_defer yes
start_oobd
wait_outcome "$id_b" deferred
check_deferred "$id_b" alice
ok "C: restarted with yes, the resumed transaction $id_b is deferred too"

# ---- D: an agent that cannot tell -----------------------------------------------------------------
# restart_agent [QEMU-GA OPTIONS]: qemu-ga replaced by one with those options
# (from a process of its own: the old agent ends while it runs).
restart_agent() {
	agent "$(exec_request /bin/sh -c "p=\$(pidof qemu-ga); (kill \$p; while kill -0 \$p 2>/dev/null; do sleep 0.1; done;
		exec qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /run/qemu-ga $*)
		</dev/null >/dev/null 2>&1 &")" >/dev/null || fail "cannot restart the agent"
}
users_enabled() { agent '{"execute":"guest-info"}' | node -e "const d=JSON.parse(require('fs').readFileSync(0,'utf8')); process.exit(d.return.supported_commands.some(c => c.name === 'guest-get-users' && c.enabled) === ($1) ? 0 : 1)"; }
restart_agent -b guest-get-users
wait_for 30 "an agent without guest-get-users" users_enabled false
start_oobd stopping-desktop
mark=$(log_lines)
ctl update now >/dev/null 2>&1 || fail "update now (D) was refused"
wait_dead "at stopping-desktop"
id_d=$(tx 'd.id')
[ "$(tx 'd.state')" = stopping-desktop ] || fail "D: transaction $id_d in $(tx 'd.state')"
log_since "$mark" | grep -q "Transaction $id_d: cannot ask the guest agent of desktop $DOMAIN who is logged in (the agent lacks guest-get-users): the user activity is unknown; the window proceeds" ||
	fail "D: no warning that the user activity is unknown"
[ "$(dom_id)" = "$dom_id0" ] || fail "D: the desktop was touched"
ok "D: an agent without guest-get-users: the activity is unknown, a warning, the window went on"
restart_agent
wait_for 30 "the agent with guest-get-users again" users_enabled true
start_oobd
wait_outcome "$id_d" deferred
check_deferred "$id_d" alice
ok "D: the real agent back, the resumed $id_d is deferred"

# ---- E: --force -----------------------------------------------------------------------------------
mark=$(log_lines)
rc=0
timeout 240 "$OOBCTL" update now --wait --force --bus-address "$OOBD_BUS" >"$w/out" 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat "$w/out" >&2; fail "update now --wait --force: exit $rc, expected 0"; }
id_e=$(tx 'd.id')
[ "$(tx 'd.state + " " + d.force + " " + d.deferred + " " + d.desktop_was_running')" = "committed true false true" ] ||
	fail "E: $(tx 'd.state + " force " + d.force + " deferred " + d.deferred')"
log_since "$mark" | grep -q "Transaction $id_e: started with the force flag: not asking who is logged in" ||
	fail "E: the forced window asked who is logged in"
grep -q "Desktop $DOMAIN is off" <(log_since "$mark") || fail "E: the desktop was not shut down cleanly"
tail -c +"$((console0 + 1))" "$CONSOLE_LOG" | tr -d '\r' | grep -q "system marker: patched with $GOOD_MANIFEST" ||
	fail "E: the trial did not boot the patched disk"
wait_for 30 "the committed report" grep -q "\"key\":\"$id_e-committed\"" "$REPORTS_STORE"
n=$(grep -c "GET /targets/payloads/[0-9a-f]*\.$GOOD_MANIFEST\.tar HTTP/[0-9.]*\" 200" "$NGINX_LOG" || true)
[ "$n" = 1 ] || fail "E: the payload was fetched $n times"
ok "E: --force with alice logged in: not asked, committed (exit 0); the payload was fetched once for all four windows"

ctl history --json >"$w/history.json"
[ "$(json "$w/history.json" "d.transactions.map(t => t.outcome).join(' ')")" = "deferred deferred deferred committed" ] ||
	fail "history: $(cat "$w/history.json")"
[ "$(sha256sum "$DATA_DISK" | cut -d' ' -f1)" = "$DATA_SHA256" ] || fail "the user-data disk changed"
echo "test-window-defer: all passed in $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oobd on a private D-Bus bus (a dbus-daemon with the system bus's default
# policy plus mgmt-vm-rootfs/org.oob.Manager1.conf), driven by oobctl and
# busctl, with the patch window replaced by oobd's scripted test driver
# (OOBD_TEST_SIMULATE, see programs/oobd/simulate.c):
#
#   - the reference oobd.conf documents every key with its default (compared
#     with `oobd --dump-config`), and a bad key is refused with FILE:LINE;
#   - sd_notify READY=1, STATUS=, WATCHDOG=1 (WATCHDOG_USEC), reload on SIGHUP
#     (RELOADING=1, an invalid file keeps the old values), STOPPING=1;
#   - introspection, status and history (text and --json, read with node);
#   - update now --wait for each outcome and its exit status (0 committed,
#     4 rolled back, 1 failed, 5 up to date, 6 deferred, --force), update check;
#   - the history file after each, a garbled one kept aside;
#   - Cancel before and after the snapshot (cancelled / rolled back), SIGTERM
#     during a job (it stops at a safe point, exit 0), a second SIGTERM (at once);
#   - resuming an interrupted transaction at start-up;
#   - reports left in the outbox are sent once a URL is set; an unreachable
#     libvirt only delays the guard;
#   - access: anyone reads, nobody else than root starts or cancels (both the
#     bus policy and oobd's own check), a second oobd cannot take the name,
#     exit 3 when oobd is not there;
#   - the merged journal catalog lists every MESSAGE_ID the code defines.
# Idle resident memory and wake-ups are printed, not asserted.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobd=${OOBD:-$root/${BUILD:-build}/bin/oobd}
oobctl=${OOBCTL:-$root/${BUILD:-build}/bin/oobctl}
for b in "$oobd" "$oobctl"; do
	[ -x "$b" ] || { echo "not built: $b (run make)" >&2; exit 1; }
done
for tool in dbus-daemon busctl socat setpriv node journalctl; do
	command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/oob-oobd-dbus.XXXXXX)
chmod 755 "$tmp"    # the unprivileged caller must reach the bus socket
bus_pid='' bus2_pid='' notify_pid='' oobd_pid='' report_pid=''
cleanup() {
	for p in $oobd_pid $report_pid $notify_pid $bus2_pid $bus_pid; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; [ -f "$tmp/oobd.log" ] && sed 's/^/  oobd.log: /' "$tmp/oobd.log" >&2; exit 1; }
ok() { echo "ok: $*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds, bounded.
wait_for() {
	local limit=$1 what=$2 i; shift 2
	for ((i = 0; i < limit * 20; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "timed out after ${limit}s waiting for $what"
}

# ---- configuration: the reference file and the parser's refusals -----------

: >"$tmp/empty.conf"
"$oobd" --config "$tmp/empty.conf" --dump-config >"$tmp/defaults" || fail "dump-config with an empty file"
# Every key of the dump appears in the reference, commented, with the same
# default (values in parentheses describe a computed default).
awk '/^\[/ {s=$0; next} /^#[a-z-]+ =/ {sub(/^#/, ""); print s, $0}' mgmt-vm-rootfs/oobd.conf >"$tmp/ref"
awk '/^\[/ {s=$0; next} /^[a-z-]+ =/ {print s, $0}' "$tmp/defaults" >"$tmp/dump"
awk 'NR == FNR {ref[$1 " " $2] = $0; next}
     { k = $1 " " $2
       if (!(k in ref)) { print "undocumented: " $0; bad = 1; next }
       r = ref[k]; delete ref[k]
       if (r !~ / = \(/ && r != $0) { print "default differs: reference \"" r "\", oobd \"" $0 "\""; bad = 1 } }
     END { for (k in ref) { print "documented but unknown: " ref[k]; bad = 1 } exit bad }' \
	"$tmp/ref" "$tmp/dump" || fail "mgmt-vm-rootfs/oobd.conf and oobd --dump-config disagree"
"$oobd" --config mgmt-vm-rootfs/oobd.conf --dump-config | cmp -s - "$tmp/defaults" ||
	fail "the all-commented reference file does not give the defaults"
ok "the reference oobd.conf documents all $(wc -l <"$tmp/dump") keys with their defaults"

printf '[window]\nmax-download-time = 2h\n\n[window ]\nbandwith-limit = 1M\n' >"$tmp/bad.conf"
rc=0; "$oobd" --config "$tmp/bad.conf" --dump-config >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] || fail "a bad key: exit $rc, expected 1"
grep -qxF "oobd: $tmp/bad.conf:5: unknown key 'bandwith-limit' in section [window]" "$tmp/err" ||
	{ cat "$tmp/err" >&2; fail "a bad key is not named with FILE:LINE"; }
rc=0; "$oobd" --config "$tmp/nonexistent.conf" --dump-config >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q "nonexistent.conf: No such file" "$tmp/err" || fail "a missing --config file is not refused"
ok "configuration errors name the file and line"

# Values derived from others, and checks across keys.
printf '[repository]\nmetadata-url = https://h.example/repo/metadata/\n[paths]\nstate-dir = /srv/oob\ncatalog-dir = /disks/system\n[device]\nid = lab-7\ngroups = ring0, lab\n[window]\nbandwidth-limit = 2048K\n' >"$tmp/derive.conf"
"$oobd" --config "$tmp/derive.conf" --dump-config >"$tmp/derived" || fail "dump-config of derive.conf"
for line in 'targets-url = https://h.example/repo/targets' 'metadata-dir = /srv/oob/metadata' \
	'payload-dir = /srv/oob/payloads' 'outbox-dir = /srv/oob/outbox' 'catalog-dir = /disks/system' \
	'id = lab-7' 'groups = ring0 lab' 'bandwidth-limit = 2M'; do
	grep -qxF "$line" "$tmp/derived" || { cat "$tmp/derived" >&2; fail "derived value: no '$line'"; }
done
# refused_conf CONFIG-TEXT MESSAGE: oobd must refuse it (exit 1) with exactly MESSAGE.
refused_conf() {
	local rc=0
	printf "$1" >"$tmp/refused.conf"
	"$oobd" --config "$tmp/refused.conf" --dump-config >/dev/null 2>"$tmp/err" || rc=$?
	[ $rc -eq 1 ] && grep -qxF "oobd: $tmp/refused.conf: $2" "$tmp/err" ||
		{ cat "$tmp/err" >&2; fail "not refused with '$2' (exit $rc)"; }
}
refused_conf '[repository]\nmetadata-url = ftp://h/metadata\n' "[repository] metadata-url: 'ftp://h/metadata' is not an http(s) URL"
refused_conf '[repository]\nmetadata-url = https://h/\n' \
	"[repository] metadata-url: 'https://h/' has no path to put 'targets' beside; set targets-url"
refused_conf '[device]\nid = a/b\n' "[device] id: 'a/b' must be 1-64 letters, digits, '-', '_' or '.'"
refused_conf '[guard]\nwindow = 0\n' "[guard] window must be longer than 0 (or max-crashes = 0 to turn the guard off)"
ok "derived defaults (targets-url, the state directories) and refusals across keys"

# ---- a private bus with the system bus's policy and ours --------------------

cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$root/mgmt-vm-rootfs/org.oob.Manager1.conf</include>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" 2>"$tmp/bus.log" &
bus_pid=$!
wait_for 10 "dbus-daemon" test -s "$tmp/address"
addr=$(head -n1 "$tmp/address")
busctl_() { busctl --address="$addr" "$@"; }
prop_is() { [ "$(prop "$1")" = "$2" ]; }
prop() { busctl_ get-property org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 "$1" | sed -E 's/^[a-z] //; s/^"(.*)"$/\1/'; }

# sd_notify messages arrive as datagrams; socat writes them one after the other
# (without separators: match them unanchored).
socat -u UNIX-RECV:"$tmp/notify",unlink-early STDOUT >"$tmp/notify.log" 2>/dev/null &
notify_pid=$!
wait_for 5 "the notify socket" test -S "$tmp/notify"

mkdir -p "$tmp/state"
cat >"$tmp/oobd.conf" <<EOF
[repository]
metadata-url = https://127.0.0.1:1/metadata
[device]
id = test-device
[paths]
state-dir = $tmp/state
[guard]
max-crashes = 0
EOF

ready_count() { { grep -o 'READY=1' "$tmp/notify.log" || true; } | wc -l; }
ready_after() { [ "$(ready_count)" -gt "$1" ]; }
# start_oobd ENV...: start oobd with these extra environment variables; wait until it is ready.
start_oobd() {
	local before; before=$(ready_count)
	env NOTIFY_SOCKET="$tmp/notify" "$@" "$oobd" --config "$tmp/oobd.conf" --bus-address "$addr" \
		--log-level debug 2>>"$tmp/oobd.log" &
	oobd_pid=$!
	wait_for 10 "READY=1 from oobd" ready_after "$before"
	busctl_ status org.oob.Manager1 >/dev/null 2>&1 || fail "READY=1 before the bus name was taken"
}
# stop_oobd: SIGTERM; oobd must exit 0.
stop_oobd() {
	local rc=0
	kill -TERM "$oobd_pid"
	wait "$oobd_pid" || rc=$?
	oobd_pid=''
	[ $rc -eq 0 ] || fail "oobd exited $rc after SIGTERM"
}
# ctl EXPECTED_EXIT ARGS...: run oobctl on our bus; stdout in $tmp/out, stderr in $tmp/err.
ctl() {
	local want=$1 rc=0; shift
	timeout 30 "$oobctl" "$@" --bus-address "$addr" >"$tmp/out" 2>"$tmp/err" || rc=$?
	[ $rc -eq "$want" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "oobctl $*: exit $rc, expected $want"; }
}
# json FILE EXPR: evaluate EXPR on the JSON document in FILE (d; for a history also
# last, its newest transaction, and byId(ID)).
json() { node -e "const d=JSON.parse(require('fs').readFileSync('$1','utf8')); const last=d.transactions ? d.transactions[d.transactions.length - 1] : null; const byId=id => d.transactions.find(t => t.id === id); console.log($2)"; }
history_json() { ctl 0 history --json && cp "$tmp/out" "$tmp/history.json"; }
# The file itself, when oobd is not running.
history_file() { cp "$tmp/state/update-history.json" "$tmp/history.json"; }

# ---- start, idle, introspection, status -------------------------------------

start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=5 WATCHDOG_USEC=300000
grep -q 'READY=1STATUS=Idle' "$tmp/notify.log" || fail "no STATUS=Idle after READY=1"
wait_for 5 "WATCHDOG=1 (WATCHDOG_USEC=300000)" grep -q 'WATCHDOG=1' "$tmp/notify.log"
ok "READY=1 once the name is taken, STATUS=Idle, WATCHDOG=1 pings"

# Idle cost, for the record (bench measures it properly).
sleep 1
rss=$(awk '/^VmRSS/ {print $2, $3}' "/proc/$oobd_pid/status")
anon=$(awk '/^RssAnon/ {print $2, $3}' "/proc/$oobd_pid/status")
echo "info: idle oobd VmRSS $rss (anonymous $anon)"

busctl_ introspect org.oob.Manager1 /org/oob/Manager1 >"$tmp/introspect"
for member in UpdateNow Check Cancel GetStatus GetHistory State JobId JobStep JobProgress LastOutcome \
	PendingReports Progress JobFinished; do
	grep -q "^\.$member " "$tmp/introspect" || { cat "$tmp/introspect" >&2; fail "introspection lacks $member"; }
done
grep -q '^\.UpdateNow *method *t *s ' "$tmp/introspect" || fail "UpdateNow's signature is not t -> s"
grep -q '^\.Progress *signal *sus ' "$tmp/introspect" || fail "Progress's signature is not sus"
grep -q '^\.JobFinished *signal *sss ' "$tmp/introspect" || fail "JobFinished's signature is not sss"
[ "$(prop State)" = idle ] || fail "State is not idle"
ok "introspectable: the methods, properties and signals of org.oob.Manager1"

ctl 0 status --json
[ "$(json "$tmp/out" '[d.state, d.device, d.job, d.last, d.patch_window, d.pending_reports].join(" ")')" = \
	"idle test-device   true 0" ] || { cat "$tmp/out" >&2; fail "status --json"; }
ctl 0 status
grep -qx 'State:           idle' "$tmp/out" && grep -qx 'Device:          test-device' "$tmp/out" ||
	{ cat "$tmp/out" >&2; fail "status"; }
ctl 0 history
grep -qx 'No update transactions recorded.' "$tmp/out" || fail "an empty history is not said so"
history_json
[ "$(json "$tmp/history.json" 'd.version + " " + d.transactions.length')" = "1 0" ] || fail "empty history --json"
ok "status and an empty history, text and --json"

# ---- update now --wait: committed, with plain progress lines ----------------

ctl 0 update now --wait
grep -qx 'download 20%: simulated step 5 of 22' "$tmp/out" || { cat "$tmp/out" >&2; fail "no progress lines"; }
last=$(tail -n1 "$tmp/out")
[[ $last =~ ^update\ ([0-9a-f]{16}):\ committed:\ simulated:\ sim-2024-05\ applied ]] ||
	fail "last line: $last"
id=${BASH_REMATCH[1]}
history_json
[ "$(json "$tmp/history.json" 'JSON.stringify([d.transactions.length, d.transactions[0].id, d.transactions[0].kind,
	d.transactions[0].outcome, d.transactions[0].manifest, d.transactions[0].snapshot, d.transactions[0].failed_step,
	d.transactions[0].finished >= d.transactions[0].started])')" = \
	"[1,\"$id\",\"update\",\"committed\",\"sim-2024-05\",\"1\",null,true]" ] ||
	{ cat "$tmp/history.json" >&2; fail "history after a commit"; }
[ "$(prop LastOutcome)" = committed ] && [ "$(prop LastJobId)" = "$id" ] || fail "LastOutcome/LastJobId"
ctl 0 status
grep -q "^Last job:        update $id: committed at " "$tmp/out" || { cat "$tmp/out" >&2; fail "status after commit"; }
ctl 0 history
grep -q "^$id  .* committed  *-  *sim-2024-05  *1  *simulated: sim-2024-05 applied" "$tmp/out" ||
	{ cat "$tmp/out" >&2; fail "history table"; }
grep -q 'STATUS=update [0-9a-f]*: download [0-9]*%' "$tmp/notify.log" || fail "no STATUS= while updating"
ok "update now --wait: progress lines, committed (exit 0), history, status, STATUS="

ctl 0 update now --wait --json
[ "$(json "$tmp/out" 'd.outcome + " " + /^[0-9a-f]{16}$/.test(d.id)')" = "committed true" ] ||
	{ cat "$tmp/out" >&2; fail "update now --wait --json"; }
ctl 0 update now
[[ $(cat "$tmp/out") =~ ^[0-9a-f]{16}$ ]] || fail "update now without --wait prints the job id"
wait_for 10 "the job started without --wait to finish" prop_is State idle

ctl 0 update check
grep -qx 'Update available: sim-2024-05' "$tmp/out" || fail "update check"
ctl 0 update check --json
[ "$(json "$tmp/out" 'd.available')" = sim-2024-05 ] || fail "update check --json"
history_json
[ "$(json "$tmp/history.json" 'd.transactions.length')" = 3 ] || fail "checks must not be recorded"
ok "update now --json, without --wait, update check (checks not recorded)"

# ---- access ----------------------------------------------------------------

nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
rc=0; nobody "$oobctl" status --bus-address "$addr" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/err" >&2; fail "an unprivileged user cannot read the status"; }
nobody "$oobctl" history --bus-address "$addr" >/dev/null || fail "an unprivileged user cannot read the history"
rc=0; nobody "$oobctl" update now --bus-address "$addr" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q "permission denied" "$tmp/err" || { cat "$tmp/err" >&2; fail "nobody started an update"; }
rc=0; nobody "$oobctl" update check --bus-address "$addr" >/dev/null 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] || fail "nobody ran a check"
nobody busctl --address="$addr" call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 Cancel \
	>/dev/null 2>&1 && fail "nobody could call Cancel"
ok "anyone reads status and history; only root starts, checks and cancels (bus policy)"

rc=0; "$oobd" --config "$tmp/oobd.conf" --bus-address "$addr" 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q "Failed to acquire the bus name org.oob.Manager1" "$tmp/err" ||
	{ cat "$tmp/err" >&2; fail "a second oobd: exit $rc"; }
ok "a second oobd cannot take the name (exit 1)"

# ---- reload ----------------------------------------------------------------

sed -i 's/^id = test-device$/id = renamed-device/' "$tmp/oobd.conf"
before=$(ready_count)
kill -HUP "$oobd_pid"
wait_for 5 "READY=1 after SIGHUP" ready_after "$before"
grep -q 'RELOADING=1' "$tmp/notify.log" || fail "no RELOADING=1"
ctl 0 status --json
[ "$(json "$tmp/out" 'd.device')" = renamed-device ] || fail "SIGHUP did not reload"
printf '[device]\nid = bad device id\n' >>"$tmp/oobd.conf"
before=$(ready_count)
kill -HUP "$oobd_pid"
wait_for 5 "READY=1 after a refused reload" ready_after "$before"
ctl 0 status --json
[ "$(json "$tmp/out" 'd.device')" = renamed-device ] || fail "a refused reload changed the configuration"
grep -q "Not reloading the configuration: $tmp/oobd.conf:.*'id' in \[device\] is already set" "$tmp/oobd.log" ||
	fail "the refused reload is not explained"
sed -i '$d' "$tmp/oobd.conf"; sed -i '$d' "$tmp/oobd.conf"
ok "SIGHUP reloads (RELOADING=1, READY=1); an invalid file keeps the old values"

stop_oobd
grep -q 'STOPPING=1' "$tmp/notify.log" || fail "no STOPPING=1"
ctl 3 status
grep -q "oobd is not running" "$tmp/err" || { cat "$tmp/err" >&2; fail "no 'not running' message"; }
rc=0; "$oobctl" status --bus-address "unix:path=$tmp/no-such-bus" >/dev/null 2>&1 || rc=$?
[ $rc -eq 3 ] || fail "an unreachable bus: exit $rc, expected 3"
ok "SIGTERM when idle: exit 0, STOPPING=1; oobctl exits 3 when oobd is not there"

# ---- every outcome's exit status --------------------------------------------

# outcome OUTCOME EXIT [ARGS...]: a fresh oobd simulating OUTCOME; update now --wait ARGS must exit EXIT.
outcome() {
	local o=$1 want=$2; shift 2
	start_oobd OOBD_TEST_SIMULATE="$o" OOBD_TEST_SIMULATE_TICK_MS=2
	ctl "$want" update now --wait "$@"
	stop_oobd
}
outcome rolled-back 4
tail -n1 "$tmp/out" | grep -q ': rolled-back: simulated: the trial boot crashed' || fail "rolled-back line"
outcome failed 1
outcome up-to-date 5
outcome deferred 6
outcome deferred 0 --force
history_file
[ "$(json "$tmp/history.json" 'd.transactions.slice(3).map(t => t.outcome + ":" + t.failed_step).join(" ")')" = \
	"rolled-back:trial failed:download deferred:null committed:null" ] ||
	{ cat "$tmp/history.json" >&2; fail "history of the outcomes (up-to-date must not be recorded)"; }
start_oobd OOBD_TEST_SIMULATE=up-to-date OOBD_TEST_SIMULATE_TICK_MS=2
ctl 5 update check
grep -qx 'Up to date.' "$tmp/out" || fail "check when up to date"
stop_oobd
start_oobd OOBD_TEST_SIMULATE=failed OOBD_TEST_SIMULATE_TICK_MS=2
ctl 1 update check
grep -q "The check failed: simulated" "$tmp/err" || { cat "$tmp/err" >&2; fail "a failed check's message"; }
stop_oobd
ok "exit statuses: 4 rolled back, 1 failed, 5 up to date (not recorded), 6 deferred, --force, check 5 and 1"

# ---- cancel and stop at safe points -----------------------------------------

# follow_bg: `oobctl update now --wait` in the background; its exit status goes to $tmp/follow.rc.
follow_bg() {
	rm -f "$tmp/follow.rc"
	( rc=0; timeout 30 "$oobctl" update now --wait --bus-address "$addr" >"$tmp/follow.out" 2>"$tmp/follow.err" ||
		rc=$?; echo $rc >"$tmp/follow.rc" ) &
	follow_pid=$!
}
# follow_wait: wait for it (in this shell: $(...) could not wait for it); its status in $frc.
follow_wait() { wait "$follow_pid" || true; frc=$(cat "$tmp/follow.rc"); }

start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=2 OOBD_TEST_SIMULATE_HOLD=download
rc=0; busctl_ call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 Cancel 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] && grep -q "No job is running" "$tmp/err" || fail "Cancel with no job"
follow_bg
wait_for 10 "the job to hold at download" prop_is JobStep download
[ "$(prop State)" = updating ] || fail "State while updating"
busctl_ call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 Cancel >/dev/null || fail "Cancel"
follow_wait
[ "$frc" = 6 ] || { cat "$tmp/follow.out" "$tmp/follow.err" >&2; fail "cancelled before the snapshot: not exit 6"; }
grep -q ': cancelled: simulated: cancelled before anything was changed' "$tmp/follow.out" || fail "cancel line"
stop_oobd

start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=2 OOBD_TEST_SIMULATE_HOLD=trial
follow_bg
wait_for 10 "the job to hold at trial" prop_is JobStep trial
busctl_ call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 Cancel >/dev/null || fail "Cancel"
follow_wait
[ "$frc" = 4 ] || { cat "$tmp/follow.out" "$tmp/follow.err" >&2; fail "cancelled after the snapshot: not exit 4"; }
history_json
[ "$(json "$tmp/history.json" 'last.outcome + " " + last.failed_step')" = \
	"rolled-back apply" ] || fail "a cancel after the snapshot is a rollback"
ok "Cancel: none running (NoJob), before the snapshot (exit 6), after it (rolled back, exit 4)"

# SIGTERM during a job: the job stops at a safe point, oobctl sees its end, oobd exits 0.
follow_bg
wait_for 10 "the job to hold at trial" prop_is JobStep trial
stop_oobd
follow_wait
[ "$frc" = 4 ] || { cat "$tmp/follow.out" "$tmp/follow.err" >&2; fail "SIGTERM during a job"; }
grep -q 'Stopping (Terminated): asking update [0-9a-f]* to stop at a safe point first' "$tmp/oobd.log" ||
	fail "the stop is not explained"
ok "SIGTERM during a job: rolled back first, then exit 0; the follower sees the outcome (exit 4)"

# A second SIGTERM stops at once, even in the middle of a (here one minute long) rollback;
# the follower learns that oobd went away (exit 3), and the next start resumes the transaction.
start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=2 OOBD_TEST_SIMULATE_HOLD=trial \
	OOBD_TEST_SIMULATE_ROLLBACK_MS=60000
follow_bg
wait_for 10 "the job to hold at trial" prop_is JobStep trial
id=$(prop JobId)
kill -TERM "$oobd_pid"
wait_for 5 "State stopping" prop_is State stopping
kill -TERM "$oobd_pid"
rc=0; wait "$oobd_pid" || rc=$?
oobd_pid=''
[ $rc -eq 0 ] || fail "oobd exited $rc after the second SIGTERM"
grep -q 'Second Terminated: stopping now' "$tmp/oobd.log" || fail "the second signal is not explained"
follow_wait
[ "$frc" = 3 ] && grep -q "oobd stopped while update $id was running" "$tmp/follow.err" ||
	{ cat "$tmp/follow.out" "$tmp/follow.err" >&2; fail "the follower of an interrupted job"; }
history_file
[ "$(json "$tmp/history.json" "d.transactions.filter(t => t.id === '$id').length")" = 0 ] ||
	fail "an interrupted job was recorded as finished"

start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=2 OOBD_TEST_SIMULATE_PENDING="$id"
wait_for 10 "the resumed job to finish" grep -q "\"id\": \"$id\"" "$tmp/state/update-history.json"
history_file
[ "$(json "$tmp/history.json" "byId('$id').kind + ' ' + byId('$id').outcome")" = \
	"resume committed" ] || { cat "$tmp/history.json" >&2; fail "the resumed transaction"; }
grep -q "resume $id: started (a transaction interrupted when oobd stopped)" "$tmp/oobd.log" || fail "resume not logged"
ok "a second SIGTERM stops at once (exit 0, follower exit 3); the next start resumes the transaction"

# ---- a garbled history ------------------------------------------------------

echo '{"version": 1, "transactions": [{"id": 7}]}' >"$tmp/state/update-history.json"
ctl 1 history
grep -q "Cannot read the history: $tmp/state/update-history.json: transaction 1: \"id\" is not a non-empty string" \
	"$tmp/err" || { cat "$tmp/err" >&2; fail "a garbled history is not explained"; }
ctl 0 update now --wait
ctl 0 history --json
[ "$(json "$tmp/out" 'd.transactions.length + " " + d.transactions[0].outcome')" = "1 committed" ] ||
	fail "the history after a garbled one"
grep -q '"id": 7' "$tmp/state/update-history.json.bad" || fail "the garbled history was not kept aside"
stop_oobd
ok "a garbled history is refused with the cause, kept as .bad, and a new one started"

# ---- oobd's own access check, under a bus policy that lets everything through ----

sed -e "s|<deny send_type=\"method_call\"/>|<allow send_type=\"method_call\"/>|" \
	-e "s|$tmp/bus<|$tmp/bus2<|" -e "/<include>/d" "$tmp/bus.conf" >"$tmp/bus2.conf"
sed -i "s|<deny own=\"\\*\"/>|<allow own=\"*\"/>|" "$tmp/bus2.conf"
dbus-daemon --config-file="$tmp/bus2.conf" --nofork --print-address=3 3>"$tmp/address2" 2>>"$tmp/bus.log" &
bus2_pid=$!
wait_for 10 "the second dbus-daemon" test -s "$tmp/address2"
addr1=$addr addr=$(head -n1 "$tmp/address2")
start_oobd OOBD_TEST_SIMULATE=committed OOBD_TEST_SIMULATE_TICK_MS=2
# busctl shows only strerror() for AccessDenied; its debug output has the message itself.
denied_by_oobd() {
	local member=$1 message=$2; shift 2
	if SYSTEMD_LOG_LEVEL=debug nobody busctl --address="$addr" call org.oob.Manager1 /org/oob/Manager1 \
		org.oob.Manager1 "$member" "$@" >"$tmp/out" 2>&1; then
		fail "nobody could call $member"
	fi
	grep -qF "error-name=org.freedesktop.DBus.Error.AccessDenied error-message=$message" "$tmp/out" ||
		{ cat "$tmp/out" >&2; fail "$member was not refused by oobd itself"; }
}
denied_by_oobd UpdateNow "Only root and members of group 'oob' may start an update." t 0
denied_by_oobd Check "Only root and members of group 'oob' may check for updates."
denied_by_oobd Cancel "Only root and members of group 'oob' may cancel a job."
nobody busctl --address="$addr" call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 GetStatus >/dev/null ||
	fail "nobody cannot read the status"
rc=0; busctl --address="$addr" call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 UpdateNow t 2 \
	>/dev/null 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] && grep -q "Unknown flags 0x2" "$tmp/err" || fail "unknown UpdateNow flags accepted"
stop_oobd
kill "$bus2_pid"; wait "$bus2_pid" 2>/dev/null || true
bus2_pid='' addr=$addr1
ok "oobd checks the caller itself: nobody cannot start or cancel even when the bus lets the call through"

# ---- reports left by an earlier run; the guard when libvirt cannot be reached ----

mkdir -m 700 "$tmp/state/outbox"
echo '{"transaction": "t-1", "outcome": "committed"}' >"$tmp/state/outbox/t-1-committed.json"
chmod 600 "$tmp/state/outbox/t-1-committed.json"
start_oobd
[ "$(prop PendingReports)" = 1 ] || fail "PendingReports does not count the outbox's files ($(prop PendingReports))"
node tests/report-server.mjs --store "$tmp/reports.jsonl" --max-seconds 60 >"$tmp/report-server.out" 2>&1 &
report_pid=$!
wait_for 10 "the report server" grep -q '^REPORT_SERVER=' "$tmp/report-server.out"
report_url=$(sed -n 's/^REPORT_SERVER=\([^ ]*\).*/\1/p' "$tmp/report-server.out")/reports
printf '[reports]\nurl = %s\n' "$report_url" >>"$tmp/oobd.conf"
before=$(ready_count)
kill -HUP "$oobd_pid"
wait_for 5 "READY=1 after SIGHUP" ready_after "$before"
wait_for 10 "the waiting report to be delivered" grep -q '"transaction":"t-1"' "$tmp/reports.jsonl"
wait_for 10 "the delivered report to leave the outbox" test ! -e "$tmp/state/outbox/t-1-committed.json"
[ "$(prop PendingReports)" = 0 ] || fail "PendingReports after delivery"
stop_oobd
kill "$report_pid"; wait "$report_pid" 2>/dev/null || true
sed -i '/^\[reports\]$/,$d' "$tmp/oobd.conf"
ok "reports left in the outbox are sent once a report URL is configured (PendingReports 1, then 0)"

sed -i 's/^max-crashes = 0$/max-crashes = 3/' "$tmp/oobd.conf"
printf '[desktop]\nuri = qemu+unix:///system?socket=%s/no-libvirt-sock\n' "$tmp" >>"$tmp/oobd.conf"
start_oobd
wait_for 10 "the guard's warning" grep -q "Cannot guard desktop oob-desktop on qemu+unix:///system?socket=$tmp/no-libvirt-sock yet (.*); retrying every minute." "$tmp/oobd.log"
ctl 0 status
stop_oobd
sed -i 's/^max-crashes = 3$/max-crashes = 0/; /^\[desktop\]$/,$d' "$tmp/oobd.conf"
ok "the guard: libvirt unreachable is a warning and a retry, oobd keeps serving"

# ---- the journal catalog ------------------------------------------------------

cat_root=$tmp/catalog-root
mkdir -p "$cat_root/usr/lib/systemd/catalog" "$cat_root/var/lib/systemd/catalog"
cp mgmt-vm-rootfs/oob.catalog "$cat_root/usr/lib/systemd/catalog/"
journalctl --root="$cat_root" --update-catalog 2>"$tmp/err" || { cat "$tmp/err" >&2; fail "journalctl --update-catalog"; }
journalctl --root="$cat_root" --list-catalog >"$tmp/catalog"
ids=$(grep -ohE '#define (OOBD|OOB)_MESSAGE_[A-Z_]+ +"[0-9a-f]{32}"' programs/oobd/oobd.h recovery/recovery.h \
	updater/updater.h | grep -oE '[0-9a-f]{32}')
n=0
for m in $ids; do
	grep -q "^$m oob: " "$tmp/catalog" || fail "MESSAGE_ID $m has no catalog entry"
	n=$((n + 1))
done
[ "$n" -ge 11 ] || fail "only $n MESSAGE_IDs found in the headers"
ok "the journal catalog explains all $n MESSAGE_IDs defined in the code"

# ---- idle wake-ups, for the record ---------------------------------------------

start_oobd
ctl 0 status --json
if [ "$(json "$tmp/out" 'd.patch_window')" = false ]; then
	# Until programs/oobd/window.c exists: refused with a reason, not a crash.
	ctl 1 update now --wait
	grep -q "Cannot start an update: this oobd has no patch window." "$tmp/err" || fail "no patch window: message"
	ok "without a patch window (window.c), updates are refused with that reason"
fi
sleep 0.5
w0=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$oobd_pid/status")
sleep 2
w1=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$oobd_pid/status")
echo "info: idle oobd (no watchdog, no guard, no simulation): $((w1 - w0)) wake-ups in 2 s;" \
	"VmRSS $(awk '/^VmRSS/ {print $2, $3}' "/proc/$oobd_pid/status")"
stop_oobd
echo "PASS: oobd on D-Bus"

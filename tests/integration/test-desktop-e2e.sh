#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The trial verdict and the guard end to end: oobctl desktop against the
# real libvirtd (tests/libvirt-fixture) booting the stand-in desktop
# (tests/standin) under TCG, on Windows-like disks from
# tests/fixtures/make-windows-disk, with a snapshot catalog from
# oobctl snapshot. libvirt's own view (virsh event --timestamp, virsh
# domstate, virsh domblklist, virsh qemu-agent-command) is the independent
# witness:
#   - a healthy boot is judged good; status and stop work;
#   - a crash at boot is judged bad (crash), the verdict within one second
#     of libvirt's panic event;
#   - a hang at boot is judged bad (hang) when the watchdog fires; a hang
#     after the agent answered is judged bad when the agent stops answering,
#     before any watchdog;
#   - oobctl desktop watch: a crash loop on a disk with a crashing driver is
#     reverted to the known-good snapshot and the desktop boots healthy
#     (the agent answers libvirt);
#   - a known-good snapshot that crash-loops as well: an alert, the desktop
#     left off, no further start;
#   - the user-data disk is byte-identical (sha256 of the file) throughout.
# Every wait is bounded; TCG boots take 5-10 s each.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobctl=${OOBCTL:-$root/${BUILD:-build}/bin/oobctl}
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }
for tool in qemu-img qemu-system-x86_64 virsh mkntfs ntfscp node journalctl; do
	command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/oob-desktop-e2e.XXXXXX)
# libvirt's QEMU runs as another user: it must reach the disks.
chmod 755 "$tmp"
name=oob-e2e-$$
watch_pid='' events_pid=''
cleanup() {
	local rc=$?
	[ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
	[ -z "$events_pid" ] || kill "$events_pid" 2>/dev/null || true
	if [ -n "${LIBVIRT_URI:-}" ]; then
		virsh -q -c "$LIBVIRT_URI" destroy "$name" >/dev/null 2>&1 || true
		virsh -q -c "$LIBVIRT_URI" undefine "$name" >/dev/null 2>&1 || true
	fi
	tests/libvirt-fixture stop "$tmp/libvirt" >/dev/null 2>&1 || true
	if [ "$rc" -ne 0 ] && [ -n "${KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
json() { node -e "const d=JSON.parse(require('fs').readFileSync('$1','utf8')); console.log($2)"; }
now_usec() { echo $(($(date +%s%N) / 1000)); }

eval "$(tests/libvirt-fixture start "$tmp/libvirt")"
[ -n "${LIBVIRT_URI:-}" ] || fail "libvirt-fixture gave no URI"
virt() { virsh -q -c "$LIBVIRT_URI" "$@"; }
D() { "$oobctl" desktop --uri "$LIBVIRT_URI" --name "$name" --state-dir "$tmp/state" "$@"; }

# ---- the world ----------------------------------------------------------------------

tests/standin/build-standin "$tmp/standin" >/dev/null
mkdir -p "$tmp/drivers"
printf 'oob-standin: crash\n' >"$tmp/drivers/crash.sys"
printf 'oob-standin: hang\n' >"$tmp/drivers/hang.sys"
printf 'oob-standin: hang after 2\n' >"$tmp/drivers/hang-later.sys"
printf 'known-good\n' >"$tmp/drivers/good.txt"
mwd() { tests/fixtures/make-windows-disk "$@" --size 256M >/dev/null; }
mwd "$tmp/good.qcow2" --put "$tmp/drivers/good.txt=oob-marker.txt"
mwd "$tmp/crash.qcow2" --put "$tmp/drivers/crash.sys=Windows/System32/drivers/oobcrash.sys"
mwd "$tmp/hang.qcow2" --put "$tmp/drivers/hang.sys=Windows/System32/drivers/oobhang.sys"
mwd "$tmp/hang-later.qcow2" --put "$tmp/drivers/hang-later.sys=Windows/System32/drivers/oobhang.sys"

# The user-data disk: NTFS with the user's document.
truncate -s 64M "$tmp/data.raw"
mkntfs -F -f -q -L Data "$tmp/data.raw" >/dev/null 2>&1
printf 'user data: do not lose me\n' >"$tmp/doc.txt"
ntfscp -q -f "$tmp/data.raw" "$tmp/doc.txt" oob-marker.txt >/dev/null 2>&1
qemu-img convert -f raw -O qcow2 "$tmp/data.raw" "$tmp/data.qcow2"
rm -f "$tmp/data.raw"
data_sha=$(sha256sum <"$tmp/data.qcow2")
data_same() {
	[ "$(sha256sum <"$tmp/data.qcow2")" = "$data_sha" ] || fail "$1: the user-data disk changed"
}

# define DISK [HEARTBEAT]: the domain on that system disk (an overlay of
# ours, so the fixtures stay as made), the data disk second.
define() {
	virt destroy "$name" >/dev/null 2>&1 || true
	D define --system-disk "$1" --data-disk "$tmp/data.qcow2" --memory 256 \
		--kernel "$tmp/standin/vmlinuz" --initrd "$tmp/standin/initrd.img" \
		--cmdline "$(cat "$tmp/standin/cmdline") standin.heartbeat=${2:-10}" ||
		fail "define on $1"
}
overlay() {
	rm -f "$tmp/$2"
	qemu-img create -q -f qcow2 -b "$tmp/$1" -F qcow2 "$tmp/$2"
	echo "$tmp/$2"
}

# libvirt's events with libvirt's timestamps, to compare our verdicts with.
events() {
	[ -z "$events_pid" ] || kill "$events_pid" 2>/dev/null || true
	: >"$tmp/events.log"
	virsh -c "$LIBVIRT_URI" event --domain "$name" --all --loop --timestamp >"$tmp/events.log" 2>&1 &
	events_pid=$!
	sleep 0.5   # virsh registers its callbacks
}
# event_usec PATTERN [SECONDS]: libvirt's time of the first event line
# matching PATTERN, waiting for it up to SECONDS (default 0), or empty.
event_usec() {
	local line i
	for i in $(seq 0 $((${2:-0} * 10))); do
		line=$(grep -m1 -E "$1" "$tmp/events.log" || true)
		[ -z "$line" ] || break
		[ "$i" -eq $((${2:-0} * 10)) ] || sleep 0.1
	done
	[ -n "$line" ] || return 0
	echo $(($(date -d "$(echo "$line" | cut -d' ' -f1-2 | sed 's/: *$//')" +%s%N) / 1000))
}

# trial DISK HEARTBEAT EXPECT: runs oobctl desktop trial, checks the exit status.
trial() {
	local rc=0
	define "$1" "$2"
	events
	timeout 150 "$oobctl" desktop --uri "$LIBVIRT_URI" --name "$name" --state-dir "$tmp/state" \
		trial --boot-timeout 60 --stability 5 --json >"$tmp/trial.json" 2>"$tmp/trial.err" || rc=$?
	[ "$rc" -eq "$3" ] || { cat "$tmp/trial.err" >&2; fail "trial on $1: exit $rc, expected $3"; }
}

# ---- the journal catalog ----------------------------------------------------------------

# Every MESSAGE_ID the guard logs is explained in the project's journal
# catalog (mgmt-vm-rootfs/oob.catalog), and journalctl lists each.
ids=$(sed -n 's/^#define OOB_MESSAGE_[A-Z_]* "\([0-9a-f]\{32\}\)".*/\1/p' recovery/recovery.h)
[ "$(echo "$ids" | wc -l)" -ge 4 ] || fail "catalog: MESSAGE_IDs not found in recovery.h"
for id in $ids; do grep -qx -- "-- $id" mgmt-vm-rootfs/oob.catalog || fail "catalog: $id is not explained"; done
mkdir -p "$tmp/jroot/usr/lib/systemd/catalog" "$tmp/jroot/var/lib/systemd/catalog"
cp mgmt-vm-rootfs/oob.catalog "$tmp/jroot/usr/lib/systemd/catalog/"
journalctl --root="$tmp/jroot" --update-catalog
journalctl --root="$tmp/jroot" --list-catalog >"$tmp/catalog.list"
for id in $ids; do
	grep -q "^$id oob: " "$tmp/catalog.list" || fail "catalog: journalctl does not list $id"
done
ok "journal catalog explains every MESSAGE_ID"

# ---- trials -------------------------------------------------------------------------

# A healthy boot passes; the verdict is kept for status.
trial "$(overlay good.qcow2 sys-good.qcow2)" 10 0
[ "$(json "$tmp/trial.json" d.result)" = passed ] || fail "healthy: $(cat "$tmp/trial.json")"
boot=$(json "$tmp/trial.json" d.boot_usec)
[ "$boot" -gt 0 ] && [ "$boot" -lt 60000000 ] || fail "healthy: boot_usec $boot"
D status --json >"$tmp/status.json"
[ "$(json "$tmp/status.json" d.state)" = running ] || fail "status: $(cat "$tmp/status.json")"
[ "$(json "$tmp/status.json" d.last_trial.result)" = passed ] || fail "status: no passed trial"
[ "$(json "$tmp/status.json" d.system_disk)" = "$tmp/sys-good.qcow2" ] || fail "status: system disk"
[ "$(json "$tmp/status.json" d.data_disk)" = "$tmp/data.qcow2" ] || fail "status: data disk"
D status | grep -q '^Last trial:   passed' || fail "status text"
timeout 60 "$oobctl" desktop --uri "$LIBVIRT_URI" --name "$name" stop --agent-timeout 10 --acpi-timeout 10 ||
	fail "stop"
[ "$(virt domstate "$name")" = "shut off" ] || fail "stop: libvirt says $(virt domstate "$name")"
ok "healthy boot judged good in $((boot / 1000)) ms; status and stop"

# A crash at boot fails as a crash, within a second of libvirt's panic event.
trial "$(overlay crash.qcow2 sys-crash.qcow2)" 10 1
[ "$(json "$tmp/trial.json" d.failure)" = crash ] || fail "crash: $(cat "$tmp/trial.json")"
verdict=$(json "$tmp/trial.json" d.verdict_usec)
ours=$(json "$tmp/trial.json" d.event_usec)
theirs=$(event_usec "Crashed|crashed" 5)
[ -n "$theirs" ] || { cat "$tmp/events.log" >&2; fail "crash: libvirt reported no crash event"; }
[ $((verdict - ours)) -lt 1000000 ] || fail "crash: verdict $((verdict - ours)) us after our event"
# virsh stamps an event when it receives it, as we do: the same broadcast
# reaches both clients about together, either may be first by a few ms
[ $((verdict - theirs)) -gt -100000 ] && [ $((verdict - theirs)) -lt 1000000 ] ||
	fail "crash: verdict $((verdict - theirs)) us after libvirt's panic event"
ok "crash at boot judged bad (crash), $(((verdict - theirs) / 1000)) ms from libvirt's panic event"

# A hang at boot (no agent ever) fails as a hang when the watchdog fires.
trial "$(overlay hang.qcow2 sys-hang.qcow2)" 3 1
[ "$(json "$tmp/trial.json" d.failure)" = hang ] || fail "hang: $(cat "$tmp/trial.json")"
theirs=$(event_usec "[Ww]atchdog" 5)
[ -n "$theirs" ] || { cat "$tmp/events.log" >&2; fail "hang: libvirt reported no watchdog event"; }
verdict=$(json "$tmp/trial.json" d.verdict_usec)
[ $((verdict - theirs)) -lt 1000000 ] || fail "hang: verdict $((verdict - theirs)) us after the watchdog"
virt destroy "$name" >/dev/null 2>&1 || true
ok "hang at boot judged bad (hang) on the watchdog"

# A hang after the agent answered fails when the agent stops answering,
# before the watchdog (heartbeat 30 s: it would fire about a minute later).
trial "$(overlay hang-later.qcow2 sys-hang-later.qcow2)" 30 1
[ "$(json "$tmp/trial.json" d.failure)" = hang ] || fail "agent hang: $(cat "$tmp/trial.json")"
[ "$(json "$tmp/trial.json" d.event_usec)" = null ] || fail "agent hang: decided by an event"
[ -z "$(event_usec "[Ww]atchdog")" ] || fail "agent hang: the watchdog fired first"
[ "$(json "$tmp/trial.json" d.boot_usec)" -gt 0 ] || fail "agent hang: the agent never answered"
virt destroy "$name" >/dev/null 2>&1 || true
ok "hang after boot judged bad (hang) on the agent timeout"
data_same "trials"

# ---- the guard -----------------------------------------------------------------------

# watch DIR: the guard in the background on catalog DIR (2 crashes in 300 s).
watch() {
	"$oobctl" desktop --uri "$LIBVIRT_URI" --name "$name" --state-dir "$tmp/state" --catalog-dir "$1" \
		watch --max-crashes 2 --window 300 >"$tmp/watch.log" 2>&1 &
	watch_pid=$!
	# ready when it logged that it guards
	for _ in $(seq 100); do grep -q '^oobctl: Guarding' "$tmp/watch.log" && return 0; sleep 0.1; done
	cat "$tmp/watch.log" >&2
	fail "watch did not start"
}
unwatch() {
	kill -TERM "$watch_pid"
	local rc=0
	timeout 20 tail --pid="$watch_pid" -f /dev/null || fail "watch did not stop on SIGTERM"
	wait "$watch_pid" || rc=$?
	watch_pid=''
	[ "$rc" -eq 0 ] || { cat "$tmp/watch.log" >&2; fail "watch exited $rc"; }
}
# wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
	local limit=$1 what=$2 i; shift 2
	for i in $(seq $((limit * 2))); do
		"$@" && return 0
		sleep 0.5
	done
	cat "$tmp/watch.log" >&2
	fail "no $what within $limit s"
}
history_has() { D history --json >"$tmp/history.json" && json "$tmp/history.json" \
	"d.crashes.some(c => c.action.startsWith('$1'))" | grep -qx true; }
agent_answers() { virt qemu-agent-command "$name" '{"execute":"guest-ping"}' --timeout 2 >/dev/null 2>&1; }
catalog_active() { "$oobctl" snapshot --dir "$1" list --json >"$tmp/list.json" && json "$tmp/list.json" d.active; }
catalog_parent() { json "$tmp/list.json" d.active_parent; }

# A crash loop: the known-good snapshot 1 has no crashing driver; the
# active disk on it does (the crashing disk's contents, written by qemu-img).
rm -rf "$tmp/state"
"$oobctl" snapshot --dir "$tmp/cat" init "$tmp/good.qcow2" >/dev/null
"$oobctl" snapshot --dir "$tmp/cat" known-good 1
active=$(catalog_active "$tmp/cat")
qemu-img convert -n -f qcow2 -O qcow2 "$tmp/crash.qcow2" "$active"
qemu-img compare -q "$active" "$tmp/crash.qcow2" || fail "the active disk does not hold the crashing driver"
define "$active" 10
watch "$tmp/cat"
D start || fail "start"
wait_for 120 "revert" history_has "reverted to 1"
active=$(catalog_active "$tmp/cat")
[ "$(catalog_parent)" = 1 ] || fail "revert: the active disk builds on $(catalog_parent)"
wait_for 60 "healthy boot after the revert" agent_answers
virt domblklist "$name" | grep -q "vda *$active\$" || fail "revert: libvirt boots $(virt domblklist "$name")"
D history --json >"$tmp/history.json"
[ "$(json "$tmp/history.json" d.crashes.length)" -eq 2 ] || fail "history: $(cat "$tmp/history.json")"
[ "$(json "$tmp/history.json" "d.crashes.map(c => c.type + '/' + c.snapshot + '/' + c.action).join(' ')")" = \
	"crashed/1/restarted crashed/1/reverted to 1" ] || fail "history: $(cat "$tmp/history.json")"
# pvpanic gives no STOP code: recorded as unknown
[ "$(json "$tmp/history.json" "d.crashes[0].stop_code")" = null ] || fail "history: a STOP code from pvpanic?"
D status | grep -q 'crashed   STOP unknown' || fail "status shows no crash: $(D status)"
D history | grep -c 'STOP unknown' | grep -qx 2 || fail "history text"
unwatch
grep -q 'reverted the system disk to known-good snapshot 1' "$tmp/watch.log" || fail "watch log: no revert message"
timeout 60 "$oobctl" desktop --uri "$LIBVIRT_URI" --name "$name" stop --agent-timeout 10 --acpi-timeout 10
data_same "crash loop"
ok "crash loop reverted to known-good and booted healthy; user-data disk identical"

# The known-good state crash-loops as well: an alert, the desktop left off.
rm -rf "$tmp/state"
"$oobctl" snapshot --dir "$tmp/cat2" init "$tmp/crash.qcow2" >/dev/null
"$oobctl" snapshot --dir "$tmp/cat2" known-good 1
active=$(catalog_active "$tmp/cat2")
define "$active" 10
watch "$tmp/cat2"
D start || fail "start"
wait_for 180 "alert" test -e "$tmp/state/alert.json"
[ "$(virt domstate "$name")" = "shut off" ] || fail "alert: libvirt says $(virt domstate "$name")"
D history --json >"$tmp/history.json"
[ "$(json "$tmp/history.json" "d.crashes.map(c => c.action.replace(/:.*/, '')).join(' ')")" = \
	"restarted reverted to 1 restarted alert" ] || fail "alert history: $(cat "$tmp/history.json")"
json "$tmp/state/alert.json" d.cause | grep -q 'known-good snapshot 1 crash-loops too' || fail "alert cause"
[ "$(json "$tmp/state/alert.json" d.crashes.length)" -eq 4 ] || fail "alert evidence: $(cat "$tmp/state/alert.json")"
grep -q 'Crash loop on .* not fixed' "$tmp/watch.log" || fail "watch log: no alert message"
D status | grep -q '^Alert:        RAISED' || fail "status shows no alert"
# no loop: it stays off
sleep 10
[ "$(virt domstate "$name")" = "shut off" ] || fail "alert: started again"
[ "$(json "$tmp/history.json" d.crashes.length)" -eq 4 ] || fail "alert: more crashes"
grep -c 'event started' "$tmp/watch.log" | grep -qx 4 || fail "alert: $(grep -c 'event started' "$tmp/watch.log") starts"
unwatch
D clear-alert
[ ! -e "$tmp/state/alert.json" ] || fail "clear-alert"
data_same "alert"
ok "known-good crash loop: alert raised, desktop left off, no loop; user-data disk identical"

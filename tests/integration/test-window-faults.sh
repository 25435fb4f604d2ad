#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The patch window when things go wrong, in the test world of scripts/world
# (desktop off, nothing published at the start). Each case ends with a
# report and a desktop disk that is the old one, unchanged:
#
#   - expired metadata (a timestamp that expired a second after it was
#     signed): the window stops at the refresh, "aborted", nothing applied,
#     no snapshot taken; exit 1; again, killed right after writing
#     "aborted": the restart sends the report, once;
#   - rolled-back metadata (the server hands out an older timestamp than
#     the one oobd trusts): the same;
#   - manifests served at 64 bytes/s (nginx's /slow/ as targets-url): the
#     select step runs on the loop, so oobd answers D-Bus within a second
#     all along (the longest wait is printed); Cancel() during that select
#     step: exit 6, aborted at the refresh step, "cancelled";
#   - Cancel() during a (bandwidth-limited) download: exit 6, aborted and
#     "cancelled" in the file and the report, the partial file kept;
#   - no space while downloading (payload-dir on a 2 MiB tmpfs, an 8 MiB
#     payload): aborted at the download, the partial file removed, the
#     catalog untouched;
#   - no space while applying (the catalog on a 4 MiB tmpfs, so the staging
#     overlay cannot take a 16 MiB file): aborted at the apply, the stage
#     discarded, the active disk's contents the same as before the window;
#   - killed right after the promote (before "applied" was written), and
#     the apply failing when resumed (its payload gone): the patch that was
#     never judged does not stay, the active disk is the old one again;
#   - a rollback that cannot reach libvirt (a wrong URI after a restart):
#     it waits and tries again, no alert; with libvirt back it finishes;
#   - a rollback that fails (the pre-patch layer damaged while the trial
#     ran: its qcow2 header names a version qemu does not know): the disk
#     is reverted to the last known-good snapshot instead and the desktop
#     boots it, an alert is raised (alert.json), the report says "failed";
#     killed right after writing "failed", the restart only sends the
#     report; a restart does not try again (no loop) and no new window
#     starts while the alert stands; exit 1.
#
# Needs root (the system libvirtd, tmpfs mounts). About 45 s: two TCG boots.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
. tests/integration/window-lib.sh
window_test_begin test-window-faults "the system libvirtd, tmpfs"
mounts=()
window_test_cleanup() {
	local m
	scripts/world oobd-stop "$w" >/dev/null 2>&1 || true
	for m in "${mounts[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}
# What a guest would read from the whole active disk.
digest() { qemu-img convert -U -O raw "$1" "$w/digest.raw" && sha256sum <"$w/digest.raw" | cut -c1-64 && rm -f "$w/digest.raw"; }

start_oobd() {
	scripts/world oobd-stop "$w" >/dev/null 2>&1 || true
	rm -f "$w/oobd.pid"
	if ! env "$@" scripts/world oobd-start "$w" >/dev/null 2>"$w/start.err"; then
		[ $# -gt 0 ] && [ -s "$w/oobd.pid" ] || { cat "$w/start.err" >&2; fail "oobd did not start"; }
	fi
	OOBD_PID=$(cat "$w/oobd.pid")
}
set_config() { # set_config SECTION KEY VALUE: replace or add the key
	node -e '
		const fs = require("fs"), [file, section, key, value] = process.argv.slice(1);
		let lines = fs.readFileSync(file, "utf8").split("\n").filter(l => !l.startsWith(key + " ="));
		const i = lines.indexOf("[" + section + "]");
		lines.splice(i + 1, 0, key + " = " + value);
		fs.writeFileSync(file, lines.join("\n"));' "$CONFIG" "$1" "$2" "$3"
}
publish() { # publish ID SIZE: a patch extracting SIZE random bytes to ProgramData/Fault/ID.bin
	local id=$1 d=$w/patches/$1
	mkdir -p "$d/tree/ProgramData/Fault"
	head -c "$2" /dev/urandom >"$d/tree/ProgramData/Fault/$id.bin"
	tar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/$id.tar" -C "$d/tree" ProgramData
	printf 'format: oob-patch/1\nid: %s\nversion: 1\npayloads: [payloads/%s.tar]\nactions:\n  - extract: {payload: payloads/%s.tar, dest: .}\ntrial: {boot-timeout: 2m, stability: 5s}\n' \
		"$id" "$id" "$id" >"$d/$id.yaml"
	"$OOB_REPO" --repo "$REPO_DIR" add-payload "$d/$id.tar" --no-publish >"$d/log" 2>&1 &&
		"$OOB_REPO" --repo "$REPO_DIR" add-manifest "$d/$id.yaml" >>"$d/log" 2>&1 || { cat "$d/log" >&2; fail "publishing $id"; }
}
unpublish() { "$OOB_REPO" --repo "$REPO_DIR" remove "manifests/$1.yaml" >/dev/null 2>&1 || fail "unpublishing $1"; }

# A window that must stop without touching the disk: update now --wait
# exits 1; the transaction is aborted at state $1 with $2 in its reason; the
# catalog is as it was; the report says so.
expect_aborted() {
	local where=$1 words=$2 rc=0 id
	cp "$CATALOG_DIR/catalog.json" "$w/catalog.before"
	ctl update now --wait >"$w/out" 2>&1 || rc=$?
	[ $rc -eq 1 ] || { cat "$w/out" >&2; fail "$where: update now --wait: exit $rc, expected 1"; }
	id=$(tx 'd.id')
	[ "$(tx 'd.state + " " + d.failure.state')" = "aborted $where" ] || fail "$where: the file says $(tx 'd.state + " " + d.failure.state')"
	tx 'd.failure.reason' | grep -q "$words" || fail "$where: the reason '$(tx 'd.failure.reason')' lacks '$words'"
	case "$where" in
	refreshing | downloading)
		cmp -s "$CATALOG_DIR/catalog.json" "$w/catalog.before" || fail "$where: the catalog changed"
		;;
	esac
	wait_for 30 "the aborted report of $id" grep -q "\"key\":\"$id-aborted\"" "$REPORTS_STORE"
	grep "\"key\":\"$id-aborted\"" "$REPORTS_STORE" >"$w/report.json"
	[ "$(json "$w/report.json" 'd.report.outcome + " " + d.report.failed_step')" = "aborted $where" ] ||
		fail "$where: report $(cat "$w/report.json")"
	json "$w/report.json" 'd.report.reason' | grep -q "$words" || fail "$where: the report's reason lacks '$words'"
	[ "$(virt domstate "$DOMAIN")" != running ] || fail "$where: the desktop was started"
}

# expect_cancelled WAITER STATE: Cancel() the window that `update now --wait`
# (pid WAITER, output in $w/out) follows: it exits 6, the transaction is
# aborted at STATE, cancelled.
expect_cancelled() {
	local waiter=$1 where=$2 rc=0
	busctl --address="$OOBD_BUS" call org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 Cancel >/dev/null ||
		fail "$where: Cancel"
	wait "$waiter" || rc=$?
	[ $rc -eq 6 ] || { cat "$w/out" >&2; fail "$where: cancel: update now --wait: exit $rc, expected 6"; }
	[ "$(tx 'd.state + " " + d.cancelled + " " + d.failure.state + " " + d.failure.reason')" = "aborted true $where cancelled" ] ||
		fail "$where: cancel: the file says $(tx 'd.state + " " + d.cancelled + " " + d.failure.state + " " + d.failure.reason')"
}

# ---- the world ----------------------------------------------------------------------
start=$(date +%s)
scripts/world up "$w" --empty --desktop-off --stability 5 --quiet >/dev/null 2>"$w.err" ||
	{ cat "$w.err" >&2; fail "world up"; }
rm -f "$w.err"
set -a
. "$w/world.env"
set +a
# The base is a state the desktop booted healthy on: the last known-good.
"$OOBCTL" snapshot --dir "$CATALOG_DIR" known-good 1 >/dev/null
OOBD_PID=$(cat "$w/oobd.pid")
ok "the world is up in $(($(date +%s) - start)) s"

# ---- expired metadata ------------------------------------------------------------------
"$OOB_REPO" --repo "$REPO_DIR" refresh --timestamp-expiry 1s >/dev/null 2>&1 || fail "oob-repo refresh"
expires=$(node -e 'console.log(Date.parse(JSON.parse(require("fs").readFileSync(process.argv[1])).signed.expires))' \
	"$REPO_DIR/public/metadata/timestamp.json")
wait_for 5 "the timestamp to expire" node -e "process.exit(Date.now() > $expires ? 0 : 1)"
expect_aborted refreshing expired
# Killed right after writing "aborted", the restart queues the report, once.
start_oobd OOB_TEST_CRASH_AT=aborted
ctl update now >/dev/null 2>&1 || true
wait_for 30 "oobd to stop at aborted" bash -c "! kill -0 $OOBD_PID"
id=$(tx 'd.id')
[ "$(tx 'd.state + " " + d.report')" = "aborted pending" ] || fail "expired/kill: the file says $(tx 'd.state + " " + d.report')"
start_oobd
wait_for 30 "the report of $id" grep -q "\"key\":\"$id-aborted\"" "$REPORTS_STORE"
[ "$(grep -c "\"key\":\"$id-aborted\"" "$REPORTS_STORE")" = 1 ] || fail "expired/kill: the report is stored more than once"
[ "$(tx 'd.report')" = queued ] || fail "expired/kill: the report is not recorded as queued"
# (the expiry given is kept for later versions: set it back)
"$OOB_REPO" --repo "$REPO_DIR" refresh --timestamp-expiry 1d >/dev/null 2>&1 || fail "oob-repo refresh"
ok "expired metadata: aborted at the refresh with the TUF error, reported, nothing applied (exit 1)"

# ---- rolled-back metadata ---------------------------------------------------------------
rc=0
ctl update check >/dev/null 2>&1 || rc=$?
[ $rc -eq 5 ] || fail "update check on an empty repository: exit $rc, expected 5"
cp "$REPO_DIR/public/metadata/timestamp.json" "$w/old-timestamp.json"
"$OOB_REPO" --repo "$REPO_DIR" refresh >/dev/null 2>&1 || fail "oob-repo refresh"
rc=0
ctl update check >/dev/null 2>&1 || rc=$?
[ $rc -eq 5 ] || fail "update check: exit $rc"
cp "$w/old-timestamp.json" "$REPO_DIR/public/metadata/timestamp.json.tmp"
mv "$REPO_DIR/public/metadata/timestamp.json.tmp" "$REPO_DIR/public/metadata/timestamp.json"
expect_aborted refreshing "rollback"
"$OOB_REPO" --repo "$REPO_DIR" refresh >/dev/null 2>&1 || fail "oob-repo refresh"
ok "rolled-back metadata: aborted at the refresh (a rollback attack), reported, nothing applied (exit 1)"

# ---- a slow repository during the select step --------------------------------------------
# The manifest (a few hundred bytes) comes at 64 B/s: seconds of transfer,
# during which oobd must keep serving the bus.
publish 2026-08-slow 1024
cp "$CONFIG" "$w/oobd.conf.orig"
set_config repository targets-url "$NGINX_HTTPS/slow/targets"
start_oobd
# bus_latency_ms PROPERTY: how long oobd takes to answer a property read
bus_latency_ms() {
	local t0=${EPOCHREALTIME/./} v
	v=$(busctl --address="$OOBD_BUS" --timeout=60 get-property org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 "$1") ||
		fail "reading $1"
	echo "$((((${EPOCHREALTIME/./}) - t0) / 1000)) $v"
}
timeout 60 "$OOBCTL" update check --bus-address "$OOBD_BUS" >"$w/out" 2>&1 &
checker=$!
max=0 in_select=0 reads=0
while alive "$checker"; do
	read -r ms step < <(bus_latency_ms JobStep)
	reads=$((reads + 1))
	[ "$ms" -gt "$max" ] && max=$ms
	[ "$step" = 's "select"' ] && in_select=$((in_select + 1))
	sleep 0.05
done
rc=0
wait "$checker" || rc=$?
[ $rc -eq 0 ] && grep -q 2026-08-slow "$w/out" || { cat "$w/out" >&2; fail "slow select: update check: exit $rc"; }
grep -q "GET /slow/targets/manifests/.*2026-08-slow.yaml HTTP/1.1\" 200" "$NGINX_LOG" ||
	fail "slow select: the manifest did not come through /slow/"
echo "slow select: $reads property reads, $in_select during the select step, the longest took $max ms"
[ "$in_select" -ge 5 ] || fail "slow select: only $in_select of $reads reads saw the select step (not slow?)"
[ "$max" -lt 1000 ] || fail "slow select: oobd took $max ms to answer the bus during the select step"
# Cancelled in the middle of it: the window stops, nothing changed.
timeout 60 "$OOBCTL" update now --wait --bus-address "$OOBD_BUS" >"$w/out" 2>&1 &
waiter=$!
wait_for 20 "the select step" bash -c "busctl --address='$OOBD_BUS' get-property org.oob.Manager1 /org/oob/Manager1 org.oob.Manager1 JobStep | grep -q select"
expect_cancelled "$waiter" refreshing
alive "$OOBD_PID" || fail "slow select: oobd is gone"
unpublish 2026-08-slow
cp "$w/oobd.conf.orig" "$CONFIG"
start_oobd
ok "manifests at 64 B/s: the bus answered within $max ms all through the select step; Cancel() there stops the window (exit 6)"

# ---- cancelled while downloading --------------------------------------------------------
publish 2026-08-cancel $((4 * 1024 * 1024))
cp "$CONFIG" "$w/oobd.conf.orig"
set_config window bandwidth-limit 256K
start_oobd
partial="$OOBD_STATE/payloads/payloads%2F2026-08-cancel.tar.partial"
timeout 60 "$OOBCTL" update now --wait --bus-address "$OOBD_BUS" >"$w/out" 2>&1 &
waiter=$!
wait_for 30 "the download to begin" bash -c "[ \$(stat -c %s '$partial' 2>/dev/null || echo 0) -ge 262144 ]"
expect_cancelled "$waiter" downloading
id=$(tx 'd.id')
[ -s "$partial" ] || fail "cancel: the partial download was not kept for the next window"
wait_for 30 "the report of $id" grep -q "\"key\":\"$id-aborted\"" "$REPORTS_STORE"
[ "$(grep "\"key\":\"$id-aborted\"" "$REPORTS_STORE" | json /dev/stdin 'd.report.cancelled + " " + d.report.outcome')" = "true aborted" ] ||
	fail "cancel: the report does not say cancelled"
unpublish 2026-08-cancel
cp "$w/oobd.conf.orig" "$CONFIG"
ok "Cancel() during the download: cancelled (exit 6), nothing changed, the partial file kept to resume, reported"

# ---- no space while downloading ---------------------------------------------------------
mkdir -p "$w/small-payloads"
mount -t tmpfs -o size=2m,mode=0700 oob-test "$w/small-payloads"
mounts+=("$w/small-payloads")
cp "$CONFIG" "$w/oobd.conf.orig"
set_config paths payload-dir "$w/small-payloads"
start_oobd
publish 2026-08-enospc-download $((8 * 1024 * 1024))
expect_aborted downloading "No space left"
[ -z "$(ls -A "$w/small-payloads")" ] || fail "ENOSPC download: left $(ls "$w/small-payloads")"
unpublish 2026-08-enospc-download
cp "$w/oobd.conf.orig" "$CONFIG"
ok "no space while downloading: aborted, the partial file removed, the catalog untouched (exit 1)"

# ---- no space while applying ------------------------------------------------------------
small=$w/small-catalog
mkdir -p "$small"
mount -t tmpfs -o size=4m,mode=0755 oob-test "$small"
mounts+=("$small")
"$OOBCTL" snapshot --dir "$small/system" init "$BASE_DISK" >/dev/null 2>&1 || fail "a catalog on the small file system"
before=$(digest "$small/system/$(json "$small/system/catalog.json" 'd.active')")
set_config paths catalog-dir "$small/system"
start_oobd
publish 2026-08-enospc-apply $((16 * 1024 * 1024))
CATALOG_DIR_SAVED=$CATALOG_DIR
CATALOG_DIR=$small/system
expect_aborted applying "action 1"
ls "$small/system"/stage-*.qcow2 >/dev/null 2>&1 && fail "ENOSPC apply: a staging overlay is left"
p=$(tx 'd.pre_patch_snapshot')
[ "$(json "$small/system/catalog.json" 'd.active_parent')" = "$p" ] || fail "ENOSPC apply: the active disk does not build on P"
after=$(digest "$small/system/$(json "$small/system/catalog.json" 'd.active')")
[ "$before" = "$after" ] || fail "ENOSPC apply: the active disk's contents changed"
CATALOG_DIR=$CATALOG_DIR_SAVED
unpublish 2026-08-enospc-apply
cp "$w/oobd.conf.orig" "$CONFIG"
start_oobd
wait_for 10 "nobody to use $small" bash -c "! fuser -m '$small'"
umount "$small"
ok "no space while applying: aborted, the stage discarded, the active disk's contents unchanged (exit 1)"

# ---- killed after the promote, and the apply fails when resumed ---------------------------
publish 2026-08-promoted $((64 * 1024))
start_oobd OOB_TEST_CRASH_AT=promote-committed
ctl update now >/dev/null 2>&1 || true
wait_for 60 "oobd to stop inside the promote" bash -c "! kill -0 $OOBD_PID"
id=$(tx 'd.id')
p=$(tx 'd.pre_patch_snapshot')
[ "$(tx 'd.state')" = applying ] || fail "promoted: the file says $(tx 'd.state')"
old=$(digest "$CATALOG_DIR/layer-$p.qcow2")
[ "$(digest "$CATALOG_DIR/$(json "$CATALOG_DIR/catalog.json" 'd.active')")" != "$old" ] ||
	fail "promoted: the active disk does not have the patch (the crash point did not fire after the promote)"
# The payload is gone: applying again fails (verifying it).
rm -f "$OOBD_STATE/payloads/payloads%2F2026-08-promoted.tar"
start_oobd
wait_for 60 "the transaction to end" bash -c \
	"[ \"\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(\"$OOBD_STATE/transaction.json\")).state)')\" = aborted ]"
[ "$(tx 'd.failure.state')" = applying ] && tx 'd.failure.reason' | grep -q "verify payload" ||
	fail "promoted: $(tx 'd.failure')"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$p" ] || fail "promoted: the active disk does not build on P"
[ "$(digest "$CATALOG_DIR/$(json "$CATALOG_DIR/catalog.json" 'd.active')")" = "$old" ] ||
	fail "promoted: the patch that was never judged is still the active disk"
wait_for 30 "the report of $id" grep -q "\"key\":\"$id-aborted\"" "$REPORTS_STORE"
unpublish 2026-08-promoted
ok "killed after the promote, the apply failing when resumed: the old disk again (a new overlay on P), reported aborted"

# ---- a rollback that cannot reach libvirt waits for it -------------------------------------
# A patch of its own that crashes the stand-in (the world's bad one is for
# the next case: a patch whose trial crashed is not offered again).
d=$w/patches/2026-04-crash
mkdir -p "$d/tree/Windows/System32/drivers"
printf 'oob-standin: crash\n' >"$d/tree/Windows/System32/drivers/oobcrash.sys"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/2026-04-crash.tar" -C "$d/tree" Windows
printf 'format: oob-patch/1\nid: 2026-04-crash\nversion: 1\npayloads: [payloads/2026-04-crash.tar]\nactions:\n  - extract: {payload: payloads/2026-04-crash.tar, dest: .}\ntrial: {boot-timeout: 2m, stability: 5s}\n' \
	>"$d/2026-04-crash.yaml"
"$OOB_REPO" --repo "$REPO_DIR" add-payload "$d/2026-04-crash.tar" --no-publish >"$d/log" 2>&1 &&
	"$OOB_REPO" --repo "$REPO_DIR" add-manifest "$d/2026-04-crash.yaml" >>"$d/log" 2>&1 || { cat "$d/log" >&2; fail "publishing 2026-04-crash"; }
start_oobd OOB_TEST_CRASH_AT=rolling-back
ctl update now >/dev/null 2>&1 || true
wait_for 60 "oobd to stop at rolling-back" bash -c "! kill -0 $OOBD_PID"
id=$(tx 'd.id')
p=$(tx 'd.pre_patch_snapshot')
cp "$CONFIG" "$w/oobd.conf.orig"
set_config desktop uri "qemu+unix:///system?socket=$w/no-libvirt-here"
start_oobd
wait_for 30 "the rollback to wait for libvirt" grep -q "Transaction $id: cannot reach desktop .* to roll back" "$OOBD_LOG"
[ "$(tx 'd.state + " " + d.alert')" = "rolling-back false" ] || fail "unreachable: the file says $(tx 'd.state + " " + d.alert')"
[ ! -e "$OOBD_STATE/alert.json" ] || fail "unreachable: an alert for a libvirt that is only away"
cp "$w/oobd.conf.orig" "$CONFIG"
start_oobd
wait_for 60 "the rollback to finish" bash -c \
	"[ \"\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(\"$OOBD_STATE/transaction.json\")).state)')\" = rolled-back ]"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$p" ] || fail "unreachable: the active disk does not build on P"
wait_for 30 "the rolled-back report" grep -q "\"key\":\"$id-rolled-back\"" "$REPORTS_STORE"
virt destroy "$DOMAIN" >/dev/null 2>&1 || true
ok "a rollback that cannot reach libvirt waits (no alert) and finishes once libvirt answers"

# ---- a rollback that fails ---------------------------------------------------------------
scripts/world publish "$w" bad
start_oobd OOB_TEST_CRASH_AT=trial
ctl update now >/dev/null 2>&1 || true
wait_for 60 "oobd to stop at the trial" bash -c "! kill -0 $OOBD_PID"
id=$(tx 'd.id')
p=$(tx 'd.pre_patch_snapshot')
[ "$(tx 'd.state')" = trial ] || fail "rollback: the file says $(tx 'd.state')"
# The pre-patch layer is damaged: a qcow2 version no qemu knows.
printf '\x00\x00\x00\x63' | dd of="$CATALOG_DIR/layer-$p.qcow2" bs=1 seek=4 conv=notrunc status=none
console_before=$(wc -c 2>/dev/null <"$CONSOLE_LOG" || echo 0)
# Killed right after writing "failed": the restart only queues the report.
start_oobd OOB_TEST_CRASH_AT=failed
wait_for 120 "oobd to stop at failed" bash -c "! kill -0 $OOBD_PID"
[ "$(tx 'd.state + " " + d.report')" = "failed pending" ] || fail "rollback: the file says $(tx 'd.state + " " + d.report')"
start_oobd
[ "$(tx 'd.alert')" = true ] || fail "rollback: no alert in the transaction"
tx 'd.failure.reason' | grep -q "the rollback to snapshot $p failed" || fail "rollback: reason '$(tx 'd.failure.reason')'"
[ -s "$OOBD_STATE/alert.json" ] || fail "rollback: no alert.json"
[ "$(json "$OOBD_STATE/alert.json" 'd.source + " " + d.transaction')" = "patch-window $id" ] || fail "alert.json: $(cat "$OOBD_STATE/alert.json")"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = 1 ] || fail "rollback: the active disk does not build on the known-good snapshot 1"
[ "$(domain_disk)" = "$CATALOG_DIR/$(json "$CATALOG_DIR/catalog.json" 'd.active')" ] || fail "rollback: the domain does not boot the active disk"
wait_for 90 "the desktop to boot healthy on the known-good snapshot" \
	bash -c "tail -c +$((console_before + 1)) '$CONSOLE_LOG' | tr -d '\r' | grep -q 'oob-standin: healthy'"
tail -c +"$((console_before + 1))" "$CONSOLE_LOG" | tr -d '\r' | grep -q "system marker: Windows 10 22H2, build 19045.2965, no patches" ||
	fail "rollback: the desktop did not boot the known-good state"
wait_for 30 "the failed report" grep -q "\"key\":\"$id-failed\"" "$REPORTS_STORE"
grep "\"key\":\"$id-failed\"" "$REPORTS_STORE" >"$w/report.json"
[ "$(json "$w/report.json" 'd.report.outcome + " " + d.report.alert + " " + d.report.result_snapshot')" = "failed true 1" ] ||
	fail "rollback: report $(cat "$w/report.json")"
ok "a failing rollback: the last known-good snapshot was booted instead, an alert raised, reported 'failed'"

# No loop: a restart leaves it, and no window starts while the alert stands.
n=$(grep -c "resume $id: started" "$OOBD_LOG" || true)
start_oobd
[ "$(grep -c "resume $id: started" "$OOBD_LOG" || true)" = "$n" ] || fail "the failed transaction was resumed again"
[ "$(tx 'd.transitions.filter(t => t.state === "rolling-back").length')" = 1 ] || fail "the rollback was tried more than once"
rc=0
ctl update now --wait >"$w/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "alert" "$w/out" || { cat "$w/out" >&2; fail "update now with an alert raised: exit $rc"; }
[ "$(tx 'd.id')" = "$id" ] || fail "a new transaction started while the alert stands"
ok "no loop: the restart did not retry, update now is refused while the alert stands (exit 1)"

[ "$(sha256sum "$DATA_DISK" | cut -d' ' -f1)" = "$DATA_SHA256" ] || fail "the user-data disk changed"
ok "the user-data disk is byte-identical"
echo "test-window-faults: all passed in $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGKILL of oobd in the middle of a patch window, then a restart: the
# transaction resumes by the table at the top of programs/oobd/transaction.c
# and ends with the desktop on a disk that is wholly the old one or wholly
# the new, verified one. In the test world of scripts/world (desktop off at
# the start, trial stability 5 s):
#
#   A. the good patch, oobd killed right after writing each state in turn
#      (OOB_TEST_CRASH_AT, see programs/oobd/window.c): refreshing,
#      downloading, staged, stopping-desktop, snapshotted, applying,
#      applied, committing, committed; each restart resumes the same
#      transaction and is killed at the next state. At every kill: the file
#      says that state, one pre-patch snapshot at most, no overlay the
#      catalog does not name, the domain's disk is the catalog's active one
#      with a whole chain, no report yet. At the end: committed, one report,
#      the payload fetched from nginx exactly once.
#   B. the bad patch, killed at trial (before the boot), at rolling-back and
#      at rolled-back: the interrupted trial counts as a failed attempt, the
#      rollback is finished, the report says rolled-back ("interrupted"),
#      once; Q is gone, the active disk builds on P.
#   C. a patch with two trial attempts, oobd killed while the desktop boots
#      the trial: the restart destroys it, boots attempt 2 on a fresh
#      overlay of Q, commits.
#   D. a 16 MiB payload downloaded at 1 MiB/s, oobd killed in the middle:
#      the partial file stays, the restart (no limit) asks nginx for the
#      rest only (206, exactly the missing bytes: nothing verified is
#      fetched again);
#   E. ... and killed while the apply worker writes the staging overlay
#      (OOB_TEST_APPLY_STALL): the worker dies with oobd, the restart
#      discards the stage and applies again from scratch on a new one;
#      then killed inside the catalog's promote (the stage renamed, the
#      catalog not yet written: OOB_TEST_CRASH_AT=promote-renamed): the
#      rename is undone by the catalog at open, the apply runs once more;
#      committed, the payload's file in the volume is the signed one.
#   F. SIGTERM while the trial boots: oobd stops at a safe point, which is
#      after the rollback (the desktop started on P), then exits; the patch
#      is not refused (it was not its fault).
#   The user-data disk is byte-identical at the end.
#
# Needs root (the system libvirtd). About two minutes: five TCG boots.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
. tests/integration/window-lib.sh
window_test_begin test-window-kill

check_catalog() {
	local names active f
	active=$(json "$CATALOG_DIR/catalog.json" 'd.active')
	names=$(json "$CATALOG_DIR/catalog.json" '[d.active].concat(d.snapshots.map(s => s.layer.split("/").pop())).join("\n")')
	for f in "$CATALOG_DIR"/*.qcow2; do
		[ -e "$f" ] || continue
		grep -qxF "$(basename "$f")" <<<"$names" || fail "$1: overlay $(basename "$f") is not in the catalog"
	done
	[ "$(domain_disk)" = "$CATALOG_DIR/$active" ] ||
		fail "$1: the domain boots $(domain_disk), the catalog's active disk is $CATALOG_DIR/$active"
	qemu-img info -U --backing-chain "$CATALOG_DIR/$active" >"$w/chain" 2>&1 || fail "$1: broken chain: $(cat "$w/chain")"
	grep -q "^image: $BASE_DISK\$" "$w/chain" || fail "$1: the chain does not end in the base"
}
pre_patch_count() { json "$CATALOG_DIR/catalog.json" "d.snapshots.filter(s => s.reason === 'pre-patch' && s.manifest === '$1').length"; }

# oobd (re)started, with OOB_TEST_CRASH_AT=$1 when given ("" for none) and
# the other environment assignments given. With a crash point a resumed
# transaction may kill oobd before it answered on the bus: not a failure.
start_oobd() {
	local crash=$1
	shift
	scripts/world oobd-stop "$w" >/dev/null 2>&1 || true
	rm -f "$w/oobd.pid"
	if ! env ${crash:+OOB_TEST_CRASH_AT="$crash"} "$@" scripts/world oobd-start "$w" >/dev/null 2>"$w/start.err"; then
		[ -n "$crash" ] && [ -s "$w/oobd.pid" ] || { cat "$w/start.err" >&2; fail "oobd did not start"; }
	fi
	OOBD_PID=$(cat "$w/oobd.pid")
}
# Wait for oobd to kill itself (the crash point) or die from our SIGKILL.
wait_dead() { wait_for "${2:-60}" "oobd to die ($1)" bash -c "! kill -0 $OOBD_PID"; }
kill9() {
	kill -KILL "$OOBD_PID"
	wait_dead "$1" 10
}

# A patch of our own: make_patch ID ATTEMPTS FILE-IN-VOLUME SOURCE [SIZE-BYTES-OF-RANDOM]
make_patch() {
	local id=$1 attempts=$2 dest=$3 size=${4:-0} d=$w/patches/$1
	mkdir -p "$d/tree/$(dirname "$dest")"
	if [ "$size" -gt 0 ]; then head -c "$size" /dev/urandom >"$d/tree/$dest"; else printf '%s\n' "$id" >"$d/tree/$dest"; fi
	printf 'patched with %s\n' "$id" >"$d/tree/oob-marker.txt"
	tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$d/$id.tar" -C "$d/tree" "${dest%%/*}" oob-marker.txt
	cat >"$d/$id.yaml" <<-EOF
	format: oob-patch/1
	id: $id
	version: 1
	payloads: [payloads/$id.tar]
	actions:
	  - extract: {payload: payloads/$id.tar, dest: .}
	trial: {boot-timeout: 2m, stability: ${STABILITY}s, attempts: $attempts}
	EOF
	"$OOB_REPO" --repo "$REPO_DIR" add-payload "$d/$id.tar" --no-publish >"$d/publish.log" 2>&1 &&
		"$OOB_REPO" --repo "$REPO_DIR" add-manifest "$d/$id.yaml" >>"$d/publish.log" 2>&1 ||
		{ cat "$d/publish.log" >&2; fail "publishing $id"; }
}

# ---- the world ----------------------------------------------------------------------
start=$(date +%s)
scripts/world up "$w" --good-only --desktop-off --stability 5 --quiet >/dev/null 2>"$w.err" ||
	{ cat "$w.err" >&2; fail "world up"; }
rm -f "$w.err"
set -a
. "$w/world.env"
set +a
ok "the world is up in $(($(date +%s) - start)) s"

# ---- A: every state boundary of a window that commits -----------------------------------
states=(refreshing downloading staged stopping-desktop snapshotted applying applied committing committed)
start_oobd "${states[0]}"
ctl update now >/dev/null 2>&1 || true
id=''
for ((k = 0; k < ${#states[@]}; k++)); do
	s=${states[$k]}
	wait_dead "killed at $s" 120
	[ -n "$id" ] || id=$(tx 'd.id')
	[ "$(tx 'd.id')" = "$id" ] || fail "A/$s: a new transaction $(tx 'd.id') instead of $id"
	[ "$(tx 'd.state')" = "$s" ] || fail "A/$s: the file says $(tx 'd.state')"
	[ "$(pre_patch_count "$GOOD_MANIFEST")" -le 1 ] || fail "A/$s: more than one pre-patch snapshot"
	check_catalog "A/$s"
	[ "$(reports_with_key "$id")" = 0 ] || fail "A/$s: a report before the end"
	[ "$(virt domstate "$DOMAIN")" != running ] || [ "$s" = committing ] || [ "$s" = committed ] ||
		fail "A/$s: the desktop runs"
	start_oobd "${states[$((k + 1))]:-}"
done
wait_outcome "$id" committed
[ "$(tx 'd.state + " " + d.report')" = "committed queued" ] || fail "A: the file says $(tx 'd.state + " " + d.report')"
[ "$(pre_patch_count "$GOOD_MANIFEST")" = 1 ] || fail "A: $(pre_patch_count "$GOOD_MANIFEST") pre-patch snapshots"
check_catalog "A/end"
wait_for 30 "the committed report" grep -q "\"key\":\"$id-committed\"" "$REPORTS_STORE"
[ "$(reports_with_key "$id")" = 1 ] || fail "A: $(reports_with_key "$id") reports for $id"
n=$(grep -c "GET /targets/payloads/[0-9a-f]*\.$GOOD_MANIFEST\.tar HTTP/[0-9.]*\" 200" "$NGINX_LOG" || true)
[ "$n" = 1 ] || fail "A: the payload was fetched $n times"
ok "A: killed at ${#states[@]} state boundaries, each resumed: committed once, one report, one pre-patch snapshot, the payload fetched once"

# ---- B: the trial interrupted, the rollback killed twice ------------------------------------
scripts/world publish "$w" bad
start_oobd trial
ctl update now >/dev/null 2>&1 || true
wait_dead "killed at trial" 120
id=$(tx 'd.id')
[ "$(tx 'd.state + " " + d.trial.attempt')" = "trial 1" ] ||
	fail "B: the file says $(tx 'd.state')"
p=$(tx 'd.pre_patch_snapshot')
q=$(tx 'd.patched_snapshot')
[ "$(virt domstate "$DOMAIN")" != running ] || fail "B: the desktop runs before the trial was started"
check_catalog "B/trial"
start_oobd rolling-back
wait_dead "killed at rolling-back" 60
[ "$(tx 'd.state + " " + d.failure.crash.failure')" = "rolling-back interrupted" ] || fail "B: the file says $(tx 'd.state')"
start_oobd rolled-back
wait_dead "killed at rolled-back" 60
[ "$(tx 'd.state + " " + d.report')" = "rolled-back pending" ] || fail "B: the file says $(tx 'd.state + " " + d.report')"
check_catalog "B/rolled-back"
start_oobd ""
wait_outcome "$id" rolled-back
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$p" ] || fail "B: the active disk does not build on P $p"
[ "$(json "$CATALOG_DIR/catalog.json" "d.snapshots.some(s => s.id === '$q')")" = false ] || fail "B: Q $q is still there"
check_catalog "B/end"
wait_for 30 "the rolled-back report" grep -q "\"key\":\"$id-rolled-back\"" "$REPORTS_STORE"
[ "$(reports_with_key "$id")" = 1 ] || fail "B: $(reports_with_key "$id") reports for $id"
grep "\"key\":\"$id-rolled-back\"" "$REPORTS_STORE" | json /dev/stdin 'd.report.reason' | grep -q interrupted ||
	fail "B: the report does not say the trial was interrupted"
"$OOB_REPO" --repo "$REPO_DIR" remove "manifests/$BAD_MANIFEST.yaml" >/dev/null 2>&1 || fail "B: cannot unpublish $BAD_MANIFEST"
ok "B: the interrupted trial counted as failed, the rollback finished across two kills: rolled back to P $p, one report"

# ---- C: killed while the trial boots ----------------------------------------------------------
make_patch 2026-06-retry 2 "ProgramData/Retry/retry.txt"
start_oobd ""
ctl update now >/dev/null 2>&1 || true
wait_for 120 "the trial boot to begin" bash -c \
	"[ \"\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(\"$OOBD_STATE/transaction.json\")).state)')\" = trial ] &&
	 [ \"\$(virsh -q -c '$LIBVIRT_URI' domstate '$DOMAIN')\" = running ]"
id=$(tx 'd.id')
[ "$(tx 'd.manifest.id')" = 2026-06-retry ] || fail "C: the window took $(tx 'd.manifest.id')"
console_before=$(wc -c <"$CONSOLE_LOG")
kill9 "inside the trial boot"
[ "$(virt domstate "$DOMAIN")" = running ] || fail "C: the desktop stopped with oobd"
start_oobd ""
wait_outcome "$id" committed
[ "$(tx 'd.trial.attempt')" = 2 ] || fail "C: committed at attempt $(tx 'd.trial.attempt')"
tail -c +"$((console_before + 1))" "$CONSOLE_LOG" | tr -d '\r' | grep -q "system marker: patched with 2026-06-retry" ||
	fail "C: attempt 2 did not boot the patched disk"
check_catalog "C/end"
wait_for 30 "the committed report" grep -q "\"key\":\"$id-committed\"" "$REPORTS_STORE"
ok "C: killed during the trial boot: the restart destroyed it, attempt 2 booted a fresh overlay of Q and passed"

# ---- D and E: killed inside the download, inside the apply, inside the promote ----------------
size=$((16 * 1024 * 1024))
make_patch 2026-07-big 1 "ProgramData/Big/big.bin" "$size"
big_tar=$w/patches/2026-07-big/2026-07-big.tar
tar_size=$(stat -c %s "$big_tar")
partial="$OOBD_STATE/payloads/payloads%2F2026-07-big.tar.partial"
cp "$CONFIG" "$w/oobd.conf.orig"
sed -i 's/^\[window\]$/[window]\nbandwidth-limit = 1M/' "$CONFIG"
start_oobd ""
ctl update now >/dev/null 2>&1 || true
wait_for 60 "2 MiB of the download" bash -c "[ \$(stat -c %s '$partial' 2>/dev/null || echo 0) -ge $((2 * 1024 * 1024)) ]"
id=$(tx 'd.id')
kill9 "inside the download"
[ "$(tx 'd.state')" = downloading ] || fail "D: the file says $(tx 'd.state')"
have=$(stat -c %s "$partial")
[ "$have" -lt "$tar_size" ] || fail "D: the download was complete already"
cp "$w/oobd.conf.orig" "$CONFIG"
# The restart: no bandwidth limit, and the apply held (then killed).
log_before=$(wc -l <"$NGINX_LOG")
start_oobd "" OOB_TEST_APPLY_STALL=30
wait_for 60 "the apply worker to write the staging overlay" bash -c \
	"[ \"\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(\"$OOBD_STATE/transaction.json\")).state)')\" = applying ] &&
	 ls '$CATALOG_DIR'/stage-*.qcow2 && [ \$(du -k '$CATALOG_DIR'/stage-*.qcow2 | cut -f1) -ge 8192 ]"
tail -n +"$((log_before + 1))" "$NGINX_LOG" | grep "2026-07-big\.tar HTTP" >"$w/resume.log" || true
[ "$(wc -l <"$w/resume.log")" = 1 ] || fail "D: $(wc -l <"$w/resume.log") requests after the restart: $(cat "$w/resume.log")"
read -r status sent < <(sed -E 's/.*" ([0-9]{3}) ([0-9]+) .*/\1 \2/' "$w/resume.log")
[ "$status" = 206 ] && [ "$sent" = $((tar_size - have)) ] ||
	fail "D: the restart fetched status $status, $sent bytes; expected 206 and the missing $((tar_size - have))"
ok "D: killed inside the download at byte $have of $tar_size: the restart fetched only the missing $sent bytes (206)"

stage=$(ls "$CATALOG_DIR"/stage-*.qcow2)
worker=$(pgrep -P "$OOBD_PID" -f "$OOBD" | head -n1)
[ -n "$worker" ] || fail "E: no apply worker under oobd"
kill9 "inside the apply"
wait_for 10 "the apply worker to die with oobd" bash -c "! kill -0 $worker"
[ -e "$stage" ] || fail "E: the staging overlay vanished with the kill"
[ "$(tx 'd.state')" = applying ] || fail "E: the file says $(tx 'd.state')"
active_before=$(json "$CATALOG_DIR/catalog.json" 'd.active')
start_oobd promote-renamed
wait_dead "inside the promote" 60
[ ! -e "$stage" ] || fail "E: the interrupted stage $(basename "$stage") was not discarded"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active')" = "$active_before" ] || fail "E: the catalog changed before its commit"
[ "$(tx 'd.state')" = applying ] || fail "E: the file says $(tx 'd.state')"
start_oobd ""
wait_outcome "$id" committed
check_catalog "E/end"
[ "$(pre_patch_count 2026-07-big)" = 1 ] || fail "E: $(pre_patch_count 2026-07-big) pre-patch snapshots"
q=$(tx 'd.patched_snapshot')
wait_for 30 "the committed report" grep -q "\"key\":\"$id-committed\"" "$REPORTS_STORE"
[ "$(reports_with_key "$id")" = 1 ] || fail "E: $(reports_with_key "$id") reports"
ok "E: killed inside the apply (the worker died too, the stage was discarded) and inside the promote: applied once more from scratch, committed"

# The big file in the committed state is the signed one (read from Q's
# layer: the Windows volume cut out of the disk, read with ntfs-3g's tools).
qemu-img convert -U -O raw "$CATALOG_DIR/layer-$q.qcow2" "$w/q.raw"
read -r s n < <(sgdisk -i 3 "$w/q.raw" | awk '/^First sector:/ { s = $3 } /^Partition size:/ { n = $3 } END { print s, n }')
dd if="$w/q.raw" of="$w/win.raw" bs=1M iflag=skip_bytes,count_bytes skip=$((s * 512)) count=$((n * 512)) status=none
rm -f "$w/q.raw"
cmp -s <(ntfscat "$w/win.raw" ProgramData/Big/big.bin) "$w/patches/2026-07-big/tree/ProgramData/Big/big.bin" ||
	fail "E: ProgramData/Big/big.bin in snapshot $q is not the payload's file"
[ "$(ntfscat "$w/win.raw" oob-marker.txt)" = "patched with 2026-07-big" ] || fail "E: the marker is not the patch's"
rm -f "$w/win.raw"
ok "E: the file in the committed snapshot is byte for byte the signed payload's"

# ---- F: SIGTERM during the trial: a safe point is the rollback ----------------------------------
make_patch 2026-09-term 1 "ProgramData/Term/term.txt"
start_oobd ""
ctl update now >/dev/null 2>&1 || true
wait_for 120 "the trial boot to begin" bash -c \
	"[ \"\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(\"$OOBD_STATE/transaction.json\")).state)')\" = trial ] &&
	 [ \"\$(virsh -q -c '$LIBVIRT_URI' domstate '$DOMAIN')\" = running ]"
id=$(tx 'd.id')
p=$(tx 'd.pre_patch_snapshot')
kill -TERM "$OOBD_PID"
wait_dead "after SIGTERM" 60
grep -q "Stopping (Terminated): asking update $id to stop at a safe point first" "$OOBD_LOG" || fail "F: no safe stop"
[ "$(tx 'd.state + " " + d.cancelled + " " + d.report')" = "rolled-back true queued" ] ||
	fail "F: the file says $(tx 'd.state + " " + d.cancelled + " " + d.report')"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$p" ] || fail "F: the active disk does not build on P"
[ "$(virt domstate "$DOMAIN")" = running ] || fail "F: the desktop was not started again on P"
start_oobd ""
check_catalog "F/end"
rc=0
ctl update check >/dev/null 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "F: a cancelled patch must stay available (update check: exit $rc)"
ok "F: SIGTERM during the trial: rolled back to P $p and started, then oobd exited; the patch stays available"

# Retention ran while the desktop was off (default keep-snapshots = 5): of
# the snapshots these windows took, at most the newest five are left.
n=$(json "$CATALOG_DIR/catalog.json" 'd.snapshots.filter(s => s.parent !== null).length')
[ "$n" -le 5 ] || fail "retention: $n snapshots besides the base: $("$OOBCTL" snapshot --dir "$CATALOG_DIR" list 2>&1)"
check_catalog "retention"
ok "retention: $n snapshots besides the base are kept (keep-snapshots = 5), the chain whole"

[ "$(sha256sum "$DATA_DISK" | cut -d' ' -f1)" = "$DATA_SHA256" ] || fail "the user-data disk changed"
ok "the user-data disk is byte-identical"
echo "test-window-kill: all passed in $(($(date +%s) - start)) s"

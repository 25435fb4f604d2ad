#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The patch window end to end, in the test world of scripts/world (an
# oob-repo repository behind nginx over HTTPS, libvirtd booting the stand-in
# desktop under TCG from a Windows-like disk in a snapshot catalog, the
# report server, oobd on a private bus), driven by oobctl:
#
#   - update check says the good patch is available (exit 0);
#   - update now --wait with the desktop running: it is shut down through
#     its agent, snapshotted, patched offline, trial-booted on the patched
#     disk (its console shows the patch's marker) and committed (exit 0);
#     the report arrives once, "committed", with the transaction's id; the
#     catalog holds the pre-patch snapshot P and the known-good patched Q;
#     the domain boots the active overlay on Q, a chain down to the base;
#     the payloads are gone from payload-dir; update now again: exit 5;
#   - the bad patch (a "driver" the stand-in crashes on): the trial sees the
#     crash (pvpanic), the disk goes back to its pre-patch snapshot, Q is
#     dropped, the desktop boots healthy again on the good patch's state;
#     exit 4; the report says rolled-back, at the trial, with the crash; the
#     patch is refused from then on (exit 5, not retried every night);
#   - the user-data disk is byte-identical throughout; no overlay is left
#     that the catalog does not name; history lists both transactions.
#
# Needs root (the system libvirtd). About a minute: three TCG boots.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
. tests/integration/window-lib.sh
window_test_begin test-window-e2e

# Every qcow2 file in the catalog directory is one the catalog names (the
# active overlay or a layer); the domain boots the active overlay, whose
# backing chain is whole down to the base.
check_catalog() {
	local names active f
	active=$(json "$CATALOG_DIR/catalog.json" 'd.active')
	names=$(json "$CATALOG_DIR/catalog.json" '[d.active].concat(d.snapshots.map(s => s.layer.split("/").pop())).join("\n")')
	for f in "$CATALOG_DIR"/*.qcow2; do
		[ -e "$f" ] || continue
		grep -qxF "$(basename "$f")" <<<"$names" || fail "orphan overlay $(basename "$f") in $CATALOG_DIR"
	done
	[ "$(domain_disk)" = "$CATALOG_DIR/$active" ] ||
		fail "the domain boots $(domain_disk), the catalog's active disk is $CATALOG_DIR/$active"
	qemu-img info -U --backing-chain "$CATALOG_DIR/$active" >"$w/chain" 2>&1 || fail "broken chain: $(cat "$w/chain")"
	grep -q "^image: $BASE_DISK\$" "$w/chain" || fail "the chain does not end in the base: $(cat "$w/chain")"
}
# The stand-in prints the system disk's marker at each boot; the last one.
last_marker() { tr -d '\r' <"$CONSOLE_LOG" | sed -n 's/^oob-standin: system marker: //p' | tail -n1; }

# ---- the world ----------------------------------------------------------------------
start=$(date +%s)
scripts/world up "$w" --good-only --stability 5 --quiet >"$w.env" 2>"$w.err" || { cat "$w.err" >&2; fail "world up"; }
rm -f "$w.env" "$w.err"
set -a
. "$w/world.env"
set +a
ok "the world is up in $(($(date +%s) - start)) s; desktop $DOMAIN runs"
[ "$(virt domstate "$DOMAIN")" = running ] || fail "the desktop is not running before the window"

# ---- check ------------------------------------------------------------------------
rc=0
ctl update check >"$w/out" 2>&1 || rc=$?
[ $rc -eq 0 ] && grep -q "$GOOD_MANIFEST" "$w/out" || { cat "$w/out" >&2; fail "update check: exit $rc"; }
[ ! -e "$OOBD_STATE/transaction.json" ] || fail "a check left a transaction"
ok "update check: $GOOD_MANIFEST is available (exit 0), no transaction started"

# ---- the good patch -----------------------------------------------------------------
: >"$w/console.mark"
console_before=$(wc -c <"$CONSOLE_LOG")
rc=0
timeout 240 "$OOBCTL" update now --wait --bus-address "$OOBD_BUS" >"$w/out" 2>&1 || rc=$?
[ $rc -eq 0 ] || { cat "$w/out" >&2; fail "update now --wait (good): exit $rc, expected 0"; }
id=$(tx 'd.id')
[ "$(tx 'd.state')" = committed ] || fail "transaction $id: $(tx 'd.state')"
p=$(tx 'd.pre_patch_snapshot')
q=$(tx 'd.patched_snapshot')
[ "$(tx 'd.desktop_was_running')" = true ] || fail "the window did not notice the desktop was running"
grep -q "Desktop $DOMAIN is off" "$OOBD_LOG" || fail "the desktop was not shut down cleanly"
ok "update now --wait: $GOOD_MANIFEST committed (exit 0), transaction $id, pre-patch $p, patched $q"

# The trial booted the patched disk.
tail -c +"$((console_before + 1))" "$CONSOLE_LOG" | tr -d '\r' | grep -q "system marker: patched with $GOOD_MANIFEST" ||
	fail "the trial did not boot the patched disk"
[ "$(virt domstate "$DOMAIN")" = running ] || fail "the desktop does not run after the commit"
ok "the trial booted the patched disk; the desktop runs on"

"$OOBCTL" snapshot --dir "$CATALOG_DIR" list --json >"$w/cat.json"
[ "$(json "$w/cat.json" "d.snapshots.find(s => s.id === '$p').reason")" = pre-patch ] || fail "P is not a pre-patch snapshot"
[ "$(json "$w/cat.json" "d.snapshots.find(s => s.id === '$q').known_good")" = true ] || fail "Q is not known-good"
[ "$(json "$w/cat.json" "d.snapshots.find(s => s.id === '$q').parent")" = "$p" ] || fail "Q does not build on P"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$q" ] || fail "the active disk does not build on Q"
check_catalog
[ -z "$(ls -A "$OOBD_STATE/payloads" 2>/dev/null)" ] || fail "payloads left after the commit: $(ls "$OOBD_STATE/payloads")"
[ "$(json "$OOBD_STATE/installed.json" "d.manifests.find(m => m.id === '$GOOD_MANIFEST').version")" = 1 ] ||
	fail "installed.json does not list $GOOD_MANIFEST"
ok "catalog: P pre-patch, Q known-good on P, the active disk on Q; chain whole; no orphan overlay; payloads removed"

wait_for 30 "the committed report" grep -q "\"key\":\"$id-committed\"" "$REPORTS_STORE"
[ "$(reports_with_key "$id-committed")" = 1 ] || fail "the committed report is stored $(reports_with_key "$id-committed") times"
grep "\"key\":\"$id-committed\"" "$REPORTS_STORE" >"$w/report.json"
[ "$(json "$w/report.json" 'd.report.outcome + " " + d.report.manifest.id + " " + d.report.device + " " + d.report.result_snapshot')" = \
	"committed $GOOD_MANIFEST $DEVICE_ID $q" ] || fail "report: $(cat "$w/report.json")"
[ "$(json "$w/report.json" 'd.report.failed_step === null && d.report.crash === null && d.report.timings.trial > 0')" = true ] ||
	fail "report details: $(cat "$w/report.json")"
ok "the report arrived once: committed, manifest, device, result snapshot, timings"

rc=0
ctl update now --wait >"$w/out" 2>&1 || rc=$?
[ $rc -eq 5 ] || { cat "$w/out" >&2; fail "update now again: exit $rc, expected 5 (up to date)"; }
ok "update now again: up to date (exit 5)"

# ---- the bad patch ------------------------------------------------------------------
scripts/world publish "$w" bad
console_before=$(wc -c <"$CONSOLE_LOG")
rc=0
timeout 240 "$OOBCTL" update now --wait --bus-address "$OOBD_BUS" >"$w/out" 2>&1 || rc=$?
[ $rc -eq 4 ] || { cat "$w/out" >&2; fail "update now --wait (bad): exit $rc, expected 4 (rolled back)"; }
id2=$(tx 'd.id')
p2=$(tx 'd.pre_patch_snapshot')
q2=$(tx 'd.patched_snapshot')
[ "$(tx 'd.state')" = rolled-back ] || fail "transaction $id2: $(tx 'd.state')"
[ "$(tx 'd.failure.state + " " + d.failure.crash.failure')" = "trial crash" ] || fail "failure: $(tx 'd.failure')"
[ "$p2" != "$p" ] && [ "$(json "$CATALOG_DIR/catalog.json" "d.snapshots.find(s => s.id === '$p2').parent")" = "$q" ] ||
	fail "the bad patch's pre-patch snapshot $p2 does not build on the good state $q"
ok "update now --wait: $BAD_MANIFEST rolled back (exit 4): the trial saw a crash"

tail -c +"$((console_before + 1))" "$CONSOLE_LOG" | tr -d '\r' >"$w/console.txt"
grep -q "oob-standin: crashing (driver oobbad.sys)" "$w/console.txt" || fail "the stand-in did not crash on the bad driver"
[ "$(json "$CATALOG_DIR/catalog.json" 'd.active_parent')" = "$p2" ] || fail "the active disk does not build on P $p2"
[ "$(json "$CATALOG_DIR/catalog.json" "d.snapshots.some(s => s.id === '$q2')")" = false ] ||
	fail "the bad patched snapshot $q2 is still in the catalog"
check_catalog
# The desktop boots healthy again, on the state before the bad patch.
wait_for 90 "the desktop to boot healthy after the rollback" \
	bash -c "tail -c +$((console_before + 1)) '$CONSOLE_LOG' | tr -d '\r' | sed -n '/crashing/,\$p' | grep -q 'oob-standin: healthy'"
[ "$(last_marker)" = "patched with $GOOD_MANIFEST" ] || fail "after the rollback the desktop booted '$(last_marker)'"
wait_for 30 "the agent to answer" virt qemu-agent-command "$DOMAIN" '{"execute":"guest-ping"}'
ok "rolled back to P $p2 (Q $q2 dropped): the desktop booted healthy again on the good patch's state"

wait_for 30 "the rolled-back report" grep -q "\"key\":\"$id2-rolled-back\"" "$REPORTS_STORE"
[ "$(reports_with_key "$id2-rolled-back")" = 1 ] || fail "the rolled-back report is stored more than once"
grep "\"key\":\"$id2-rolled-back\"" "$REPORTS_STORE" >"$w/report.json"
[ "$(json "$w/report.json" 'd.report.outcome + " " + d.report.manifest.id + " " + d.report.failed_step + " " + d.report.crash.failure + " " + d.report.result_snapshot')" = \
	"rolled-back $BAD_MANIFEST trial crash $p2" ] || fail "report: $(cat "$w/report.json")"
json "$w/report.json" 'd.report.reason' | grep -q crash || fail "the report's reason does not say crash"
ok "the report arrived once: rolled-back at the trial, reason and crash (STOP code unknown under pvpanic)"

rc=0
ctl update now --wait >"$w/out" 2>&1 || rc=$?
[ $rc -eq 5 ] || { cat "$w/out" >&2; fail "update now after the rollback: exit $rc, expected 5"; }
[ "$(json "$OOBD_STATE/installed.json" "d.manifests.find(m => m.id === '$BAD_MANIFEST').refused")" = true ] ||
	fail "the bad patch is not recorded as refused"
ok "the rolled-back patch is not offered again (exit 5)"

# ---- throughout ---------------------------------------------------------------------
[ "$(sha256sum "$DATA_DISK" | cut -d' ' -f1)" = "$DATA_SHA256" ] || fail "the user-data disk changed"
ctl history --json >"$w/history.json"
[ "$(json "$w/history.json" "d.transactions.map(t => t.id + ':' + t.outcome).join(' ')")" = "$id:committed $id2:rolled-back" ] ||
	fail "history: $(cat "$w/history.json")"
ok "the user-data disk is byte-identical; history lists both windows"
echo "test-window-e2e: all passed in $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oobctl snapshot end to end on real qcow2 chains: init over a base image,
# create (reason, label, manifest), list and list --json (parsed with node),
# revert (O(1): no layer grows, the discarded changes are gone), pin/unpin,
# known-good, delete (the data merges into the layer above), retain, and the
# refusals: each message names the directory, the step and the cause, with
# exit 1; usage errors exit 2. A create killed half-way (OOB_TEST_CRASH_AT)
# and a garbled catalog.json are repaired by the next command, and a catalog
# locked by another process is refused. Contents are written with qemu-io
# and read back with qemu-io, independently of oob.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobctl=${OOBCTL:-$root/${BUILD:-build}/bin/oobctl}
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }
for tool in qemu-img qemu-io node flock; do
	command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/oob-snapshot-cli.XXXXXX)
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$tmp"; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

dir=$tmp/system
base=$tmp/base.qcow2

# snap ARGS...: run oobctl snapshot on $dir; stdout in $tmp/out, stderr in $tmp/err.
snap() {
	local rc=0
	timeout 60 "$oobctl" snapshot --dir "$dir" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	return $rc
}
# refused EXIT_CODE MESSAGE ARGS...: must exit with that code and print exactly MESSAGE (a line of stderr).
refused() {
	local want=$1 message=$2 rc=0; shift 2
	snap "$@" || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$tmp/err" >&2; fail "snapshot $*: exit $rc, expected $want"; }
	grep -qxF -- "$message" "$tmp/err" || { cat "$tmp/err" >&2; fail "snapshot $*: no line '$message'"; }
}
refused_like() {
	local want=$1 pattern=$2 rc=0; shift 2
	snap "$@" || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$tmp/err" >&2; fail "snapshot $*: exit $rc, expected $want"; }
	grep -qE -- "$pattern" "$tmp/err" || { cat "$tmp/err" >&2; fail "snapshot $*: message lacks '$pattern'"; }
}
# json EXPR: evaluate EXPR on the JSON that `list --json` prints (d is the document).
json() {
	snap list --json || { cat "$tmp/err" >&2; fail "list --json"; }
	node -e "const d=JSON.parse(require('fs').readFileSync(0,'utf8')); const s=id=>d.snapshots.find(x=>x.id===id); console.log($1)" <"$tmp/out"
}
write() { qemu-io -f qcow2 -c "write -P $2 $3 $4" "$1" >/dev/null; }
# reads IMG PATTERN OFFSET LEN: qemu-io exits 0 even on a mismatch, so look at its output.
reads() {
	local out
	out=$(qemu-io -r -f qcow2 -c "read -P $2 $3 $4" "$1" 2>&1)
	[[ $out == *"read "* && $out != *"Pattern verification failed"* ]]
}
blocks() { stat -c %b "$1"; }
# The catalog directory's files (dot files too), sorted, on one line.
files() { (cd "$dir" && shopt -s dotglob && printf '%s ' *); }

# ---- init ----------------------------------------------------------------------
qemu-img create -q -f qcow2 "$base" 64M
write "$base" 0x11 0 1M
snap init "$base" || { cat "$tmp/err" >&2; fail "init"; }
[ "$(json 'd.snapshots.length + " " + s("1").reason + " " + d.active_parent')" = "1 initial 1" ] || fail "init: list"
active=$(json d.active)
[ "$active" = "$dir/active-1.qcow2" ] || fail "active disk is $active"
reads "$active" 0x11 0 1M || fail "the active disk does not show the base"
refused 1 "oobctl: $dir: create a catalog over $base: a catalog (or the files of one) is already there" init "$base"
ok "init"

# ---- create ----------------------------------------------------------------------
write "$active" 0x22 2M 64k
snap create --reason pre-patch --label 'before "KB5030211" – ü' --manifest 2024-05-cumulative || fail "create"
[ "$(cat "$tmp/out")" = 2 ] || fail "create printed '$(cat "$tmp/out")', expected the id 2"
[ "$(json 's("2").reason')" = pre-patch ] || fail "reason"
[ "$(json 's("2").label')" = 'before "KB5030211" – ü' ] || fail "label through --json"
[ "$(json 's("2").manifest')" = 2024-05-cumulative ] || fail "manifest"
[ "$(json 's("2").parent + " " + d.active_parent + " " + s("2").active_parent')" = "1 2 true" ] || fail "parents"
[ "$(json 'typeof s("2").created + " " + (Math.abs(s("2").created - Date.now() / 1000) < 60)')" = "number true" ] ||
	fail "created"
[ "$(json 's("2").layer_size > 0')" = true ] || fail "layer_size"
active=$(json d.active)
reads "$(json 's("2").layer')" 0x22 2M 64k || fail "snapshot 2 lacks what was written before it"
reads "$active" 0x22 2M 64k || fail "the new active disk lacks it"
[ ! -e "$dir/active-1.qcow2" ] || fail "the old active overlay's name is still there"
snap list || fail "list"
grep -qE '^2 \* +1 +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} +pre-patch +- +- .*2024-05-cumulative +before "KB5030211"' "$tmp/out" ||
	{ cat "$tmp/out" >&2; fail "list: row of snapshot 2"; }
grep -qF "builds on snapshot 2" "$tmp/out" || fail "list: which snapshot the active disk builds on"
ok "create and list"

# ---- revert: O(1), changes since the snapshot are discarded -----------------------
write "$active" 0x33 4M 64k
snap create || fail "create 3"
write "$(json d.active)" 0x44 8M 64k
b1=$(blocks "$base") b2=$(blocks "$dir/layer-2.qcow2") b3=$(blocks "$dir/layer-3.qcow2")
snap revert 2 || { cat "$tmp/err" >&2; fail "revert"; }
active=$(json d.active)
[ "$(json d.active_parent)" = 2 ] || fail "revert: active parent"
reads "$active" 0x22 2M 64k || fail "revert: snapshot 2's data"
reads "$active" 0x00 4M 64k || fail "revert: snapshot 3's data still shows"
reads "$active" 0x00 8M 64k || fail "revert: the discarded changes still show"
[ "$(blocks "$base") $(blocks "$dir/layer-2.qcow2") $(blocks "$dir/layer-3.qcow2")" = "$b1 $b2 $b3" ] ||
	fail "revert copied data into a layer"
[ "$(blocks "$active")" -lt 2048 ] || fail "revert: the new active overlay is not empty"
snap revert 3 || fail "revert 3"
reads "$(json d.active)" 0x33 4M 64k || fail "revert 3: data"
ok "revert"

# ---- pin, known-good, delete, retain ---------------------------------------------
snap pin 2 || fail "pin"
[ "$(json 's("2").pinned')" = true ] || fail "pinned"
refused 1 "oobctl: $dir: delete snapshot 2: it is pinned (unpin it first)" delete 2
refused 1 "oobctl: $dir: delete snapshot 1: it is the base image" delete 1
refused 1 "oobctl: $dir: revert to snapshot 9: no such snapshot" revert 9
refused 1 "oobctl: $dir: pin snapshot 9: no such snapshot" pin 9
snap unpin 2 || fail "unpin"
snap known-good 3 || fail "known-good"
[ "$(json 'd.last_known_good + " " + s("3").known_good')" = "3 true" ] || fail "known-good in --json"
refused 1 "oobctl: $dir: delete snapshot 3: it is the last known-good snapshot" delete 3

# 3 builds on 2: deleting 2 merges its data into 3.
snap delete 2 || { cat "$tmp/err" >&2; fail "delete 2"; }
[ ! -e "$dir/layer-2.qcow2" ] || fail "delete: layer-2 still there"
[ "$(json 'd.snapshots.map(x => x.id).join(" ") + " " + s("3").parent')" = "1 3 1" ] || fail "delete: catalog"
reads "$dir/layer-3.qcow2" 0x22 2M 64k || fail "delete: snapshot 2's data lost from 3"
reads "$dir/layer-3.qcow2" 0x33 4M 64k || fail "delete: snapshot 3's own data"
reads "$(json d.active)" 0x22 2M 64k || fail "delete: the active disk changed"

for i in 4 5 6; do
	write "$(json d.active)" "0x5$i" $(((16 + i) * 1024 * 1024)) 64k
	snap create || fail "create $i"
done
snap retain --keep 1 || { cat "$tmp/err" >&2; fail "retain"; }
grep -qF "2 snapshots dropped" "$tmp/err" || { cat "$tmp/err" >&2; fail "retain: message"; }
# kept: 1 (base), 3 (last known-good), 6 (newest, and the active disk's)
[ "$(json 'd.snapshots.map(x => x.id).join(" ")')" = "1 3 6" ] || fail "retain kept $(json 'd.snapshots.map(x => x.id).join(" ")')"
for i in 4 5 6; do
	reads "$(json d.active)" "0x5$i" $(((16 + i) * 1024 * 1024)) 64k || fail "retain: data of snapshot $i lost"
done
reads "$dir/layer-6.qcow2" 0x33 4M 64k || fail "retain: snapshot 6 lost data below it"
ok "pin, known-good, delete, retain"

# ---- usage errors ------------------------------------------------------------------
refused_like 2 "needs a command"
refused_like 2 "Unknown command 'snapshot bogus'" bogus
refused_like 2 "takes one snapshot id" revert
refused_like 2 "takes one snapshot id" delete 3 4
refused_like 2 "does not take --json" revert 3 --json
refused_like 2 "does not take --keep" list --keep 3
refused_like 2 "needs --keep N" retain
refused_like 2 "Unknown snapshot reason 'initial'" create --reason initial
refused_like 2 "--keep needs a number" retain --keep many
refused 1 "oobctl: $tmp/nowhere: open the catalog: no catalog here (see 'oobctl snapshot init')" \
	--dir "$tmp/nowhere" list
ok "usage errors"

# ---- kill safety and repair -------------------------------------------------------
before=$(json 'd.snapshots.map(x => x.id).join(" ") + " / " + d.active_parent')
rc=0
# (in a subshell whose stderr hides bash's "Killed" notice)
(OOB_TEST_CRASH_AT=snapshot-overlay snap create) 2>/dev/null || rc=$?
[ "$rc" -eq 137 ] || fail "the crash hook did not kill oobctl (exit $rc)"
[ -e "$dir/layer-7.qcow2" ] || fail "the killed create left no half-made snapshot to repair"
[ "$(json 'd.snapshots.map(x => x.id).join(" ") + " / " + d.active_parent')" = "$before" ] ||
	fail "after the kill: not the old state"
grep -qF "$dir: repaired the catalog from the files on disk (2 fixes)." "$tmp/err" ||
	{ cat "$tmp/err" >&2; fail "repair not reported"; }
[ "$(files)" = "$(basename "$(json d.active)") catalog.json layer-3.qcow2 layer-6.qcow2 " ] ||
	fail "stray files: $(files)"
reads "$(json d.active)" 0x56 22M 64k || fail "after the kill: active disk data"

echo 'this is not { json' >"$dir/catalog.json"
[ "$(json 'd.snapshots.map(x => x.id + ":" + x.reason).join(" ")')" = "1:initial 3:recovered 6:recovered" ] ||
	fail "garbled catalog: not rebuilt from the files"
grep -qF "repaired the catalog" "$tmp/err" || fail "rebuild not reported"
snap list || fail "list after the rebuild"
[ ! -s "$tmp/err" ] || { cat "$tmp/err" >&2; fail "a second repair after the rebuild"; }
ok "kill safety and repair"

# ---- lock ----------------------------------------------------------------------------
rc=0
flock -n "$dir" timeout 60 "$oobctl" snapshot --dir "$dir" list >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "a locked catalog: exit $rc"
grep -qxF "oobctl: $dir: open the catalog: the catalog is in use by another process" "$tmp/err" ||
	{ cat "$tmp/err" >&2; fail "a locked catalog: message"; }
ok "lock"

echo "all snapshot CLI tests passed"

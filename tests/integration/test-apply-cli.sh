#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oobctl apply and oobctl image inspect end to end, on Windows-like disks
# built by tests/fixtures/make-windows-disk, through the real qemu-img,
# qemu-nbd, libntfs-3g and hivex:
#   - a good manifest (extract, delete, registry-set, stage-package) applied
#     to a snapshot catalog, every result read back with tools that share no
#     code with oob (qemu-img convert + dd, ntfscat, ntfsls, hivexget);
#   - a bad one (a hostile archive after a registry change) refused with one
#     message naming the disk, the action and the cause, and the active disk
#     unchanged byte for byte;
#   - hibernated, dirty and BitLocker disks refused with the advice, unchanged;
#   - oobctl SIGKILLed in the middle of an apply (while it writes files,
#     and at the catalog's promote hook): the active disk is unchanged and
#     the next catalog open leaves no staging overlay behind;
#   - image inspect (text and --json) on each.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobctl=${OOBCTL:-$root/${BUILD:-build}/bin/oobctl}
mwd=$root/tests/fixtures/make-windows-disk
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }
for tool in qemu-img sgdisk ntfscat ntfsls hivexget node tar; do
	command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/install-deps)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/oob-apply-cli.XXXXXX)
bg=''
cleanup() {
	[ -z "$bg" ] || kill -9 "$bg" 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# apply DIR MANIFEST [ARGS...]: stdout in $tmp/out, stderr in $tmp/err.
apply() {
	local dir=$1 manifest=$2 rc=0; shift 2
	timeout 120 "$oobctl" apply "$manifest" --disk "$dir" --payloads "$tmp/payloads" "$@" \
		>"$tmp/out" 2>"$tmp/err" || rc=$?
	return $rc
}
# refused DIR MANIFEST MESSAGE: exit 1 and exactly that line on stderr.
refused() {
	local rc=0
	apply "$1" "$2" || rc=$?
	[ "$rc" -eq 1 ] || { cat "$tmp/err" >&2; fail "apply $2: exit $rc, expected 1"; }
	grep -qxF -- "$3" "$tmp/err" || { cat "$tmp/err" >&2; fail "apply $2: no line '$3'"; }
}
# json FILE EXPR: EXPR evaluated on the JSON document in FILE (d).
json() { node -e "const d=JSON.parse(require('fs').readFileSync('$1','utf8')); console.log($2)"; }
active() { "$oobctl" snapshot --dir "$1" list --json >"$tmp/list.json" && json "$tmp/list.json" d.active; }
# The Windows volume (GPT partition 3) of an image, as a raw file.
volume() {
	local s n
	qemu-img convert -O raw "$1" "$tmp/disk.raw"
	read -r s n < <(sgdisk -i 3 "$tmp/disk.raw" | awk '/^First sector:/ { s = $3 } /^Partition size:/ { n = $3 } END { print s, n }')
	dd if="$tmp/disk.raw" of="$2" bs=1M iflag=skip_bytes,count_bytes skip=$((s * 512)) count=$((n * 512)) status=none
	rm -f "$tmp/disk.raw"
}
# What a guest would read from the whole disk.
digest() { qemu-img convert -O raw "$1" "$tmp/digest.raw" && sha256sum <"$tmp/digest.raw" | cut -c1-64 && rm -f "$tmp/digest.raw"; }
ls_dir() { ntfsls -p "$2" "$1" | grep -vx -e . -e .. | sort | tr '\n' ' '; }
same() { [ "$1" = "$2" ] || fail "$3: got [$1], want [$2]"; }
# No staging overlay left, and no qemu-nbd still serving one of ours (bounded wait).
no_leftovers() {
	local i
	for i in $(seq 100); do
		pgrep -f "qemu-nbd.*$tmp" >/dev/null || break
		sleep 0.1
	done
	! pgrep -f "qemu-nbd.*$tmp" >/dev/null || fail "$1: a qemu-nbd still serves a disk of this test"
	! ls "$2"/stage-* >/dev/null 2>&1 || fail "$1: a staging overlay is left: $(ls "$2")"
}

# ---- disks and payloads -------------------------------------------------------------
"$mwd" "$tmp/base.qcow2" --size 256M --user dave >/dev/null
mkdir -p "$tmp/payloads" "$tmp/src/Contoso/bin" "$tmp/evil"
printf 'agent config\r\n' >"$tmp/src/Contoso/agent.ini"
head -c 3000000 /dev/urandom >"$tmp/src/Contoso/bin/agent.dll"
tar -C "$tmp/src" -czf "$tmp/payloads/contoso.tar.gz" Contoso
printf 'msi bytes' >"$tmp/payloads/agent.msi"
# hostile: a plain file, then a symbolic link out of the tree
printf 'innocent\n' >"$tmp/evil/readme.txt"
ln -s /etc/passwd "$tmp/evil/passwd"
tar -C "$tmp/evil" -cf "$tmp/payloads/evil.tar" readme.txt passwd
# hostile: a name climbing out of dest
tar -C "$tmp/evil" -P --transform 's,^readme,../../readme,' -cf "$tmp/payloads/climb.tar" readme.txt
tar -tf "$tmp/payloads/climb.tar" 2>/dev/null | grep -qx '../../readme.txt' || fail "tar did not keep the '..' name"

cat >"$tmp/good.yaml" <<'EOF'
format: oob-patch/1
id: kb-0001
version: 2
applies-to: {os-build: 19045}
actions:
  - extract: {payload: contoso.tar.gz, dest: 'Program Files'}
  - delete: [Windows/System32/drivers/disk.sys, Windows/not-there.dll]
  - registry-set: {hive: SYSTEM, key: 'ControlSet001\Services\Contoso', name: Start, type: REG_DWORD, value: 2}
  - registry-set: {hive: 'NTUSER:dave', key: Environment, name: CONTOSO, type: REG_EXPAND_SZ, value: '%ProgramFiles%\Contoso'}
  - stage-package: {payload: agent.msi, command: 'msiexec /i agent.msi /qn'}
EOF
cat >"$tmp/bad.yaml" <<'EOF'
format: oob-patch/1
id: kb-0002
version: 1
actions:
  - registry-set: {hive: SOFTWARE, key: Contoso, name: Bad, type: REG_SZ, value: 'must not stay'}
  - extract: {payload: contoso.tar.gz, dest: Windows/Contoso}
  - extract: {payload: evil.tar, dest: Windows}
EOF
cat >"$tmp/climb.yaml" <<'EOF'
format: oob-patch/1
id: kb-0003
version: 1
actions:
  - extract: {payload: climb.tar, dest: Windows/System32}
EOF
cat >"$tmp/bomb.yaml" <<'EOF'
format: oob-patch/1
id: kb-0004
version: 1
actions:
  - extract: {payload: contoso.tar.gz, dest: Windows, max-size: 1M}
EOF
cat >"$tmp/wrong-build.yaml" <<'EOF'
format: oob-patch/1
id: kb-0005
version: 1
applies-to: {os-build: {min: 22000}}
actions:
  - delete: [Windows/explorer.exe]
EOF

# ---- a good manifest -------------------------------------------------------------------
dir=$tmp/system
"$oobctl" snapshot --dir "$dir" init "$tmp/base.qcow2" 2>/dev/null
before=$(active "$dir")
apply "$dir" "$tmp/good.yaml" --json || { cat "$tmp/err" >&2; fail "good manifest"; }
cp "$tmp/out" "$tmp/apply.json"
same "$(json "$tmp/apply.json" '[d.manifest, d.version, d.actions, d.files_written, d.files_deleted, d.windows_build].join(" ")')" \
	"kb-0001 2 5 5 1 19045" "apply --json"
after=$(active "$dir")
[ "$after" != "$before" ] || fail "the active disk was not replaced"
same "$(json "$tmp/list.json" 'd.snapshots.map(s => s.reason + ":" + (s.manifest || "-")).join(" ")')" \
	"initial:- pre-patch:kb-0001" "snapshots after the apply"
no_leftovers "good apply" "$dir"

volume "$after" "$tmp/win.raw"
cmp -s <(ntfscat "$tmp/win.raw" "Program Files/Contoso/bin/agent.dll") "$tmp/src/Contoso/bin/agent.dll" ||
	fail "agent.dll differs"
same "$(ntfscat "$tmp/win.raw" "Program Files/Contoso/agent.ini" | od -An -c | tr -s ' ')" \
	"$(od -An -c <"$tmp/src/Contoso/agent.ini" | tr -s ' ')" "agent.ini"
same "$(ls_dir "$tmp/win.raw" /Windows/System32/drivers)" "Ntfs.sys etc " "drivers after delete"
ntfscat "$tmp/win.raw" Windows/System32/config/SYSTEM >"$tmp/SYSTEM"
ntfscat "$tmp/win.raw" Users/dave/NTUSER.DAT >"$tmp/NTUSER.DAT"
same "$(hivexget "$tmp/SYSTEM" 'ControlSet001\Services\Contoso' Start)" 2 "SYSTEM Contoso Start"
same "$(hivexget "$tmp/NTUSER.DAT" Environment CONTOSO)" '%ProgramFiles%\Contoso' "NTUSER CONTOSO"
same "$(hivexget "$tmp/SYSTEM" 'ControlSet001\Services\oobfirstboot' ImagePath)" \
	'%SystemRoot%\System32\cmd.exe /d /c "%SystemDrive%\ProgramData\oob\firstboot\run.cmd"' "first-boot service"
same "$(ntfscat "$tmp/win.raw" ProgramData/oob/staged/kb-0001/agent.msi)" "msi bytes" "staged package"
ntfscat "$tmp/win.raw" ProgramData/oob/firstboot/queue/000001-kb-0001-5.cmd | grep -q '^msiexec /i agent.msi /qn' ||
	fail "first-boot queue entry"
ok "good manifest applied and read back"

"$oobctl" image inspect "$dir" --json >"$tmp/inspect.json"
same "$(json "$tmp/inspect.json" '[d.disk, d.partition_table, d.windows_volume.partition, d.windows_volume.state, d.windows.build, d.firstboot.map(f => f.name + ":" + f.state).join(",")].join(" ")')" \
	"$after gpt 3 ok 19045 000001-kb-0001-5:pending" "image inspect --json"
same "$(json "$tmp/inspect.json" 'd.chain.map(l => l.path).join(" ")')" \
	"$after $dir/layer-2.qcow2 $tmp/base.qcow2" "image inspect: chain"
"$oobctl" image inspect "$after" >"$tmp/inspect.txt"
grep -q '^Windows: Windows 10 Pro (Professional) 22H2, build 19045.2965$' "$tmp/inspect.txt" || fail "image inspect text"
grep -q '^  000001-kb-0001-5 .*pending' "$tmp/inspect.txt" || fail "image inspect: first-boot"
ok "image inspect"

# ---- bad manifests: refused, the active disk unchanged ---------------------------------------
good=$(digest "$after")
refused "$dir" "$tmp/bad.yaml" \
	"oobctl: $dir: apply $tmp/bad.yaml: action 3 (extract evil.tar to Windows): payload 'evil.tar': archive entry 'passwd': symbolic links are not allowed"
refused "$dir" "$tmp/climb.yaml" \
	"oobctl: $dir: apply $tmp/climb.yaml: action 1 (extract climb.tar to Windows/System32): payload 'climb.tar': archive entry '../../readme.txt': '.' and '..' are not allowed"
refused "$dir" "$tmp/bomb.yaml" \
	"oobctl: $dir: apply $tmp/bomb.yaml: action 1 (extract contoso.tar.gz to Windows): payload 'contoso.tar.gz' unpacks to more than 1048576 bytes (its signed limit: max-size, or 32 times its length and at most 16 GiB)"
refused "$dir" "$tmp/wrong-build.yaml" \
	"oobctl: $dir: apply $tmp/wrong-build.yaml: check Windows build 19045: the manifest's applies-to os-build does not include this build"
same "$(digest "$(active "$dir")")" "$good" "the active disk after refused applies"
no_leftovers "refused applies" "$dir"
volume "$(active "$dir")" "$tmp/win.raw"
! ntfscat "$tmp/win.raw" Windows/Contoso/agent.ini >/dev/null 2>&1 || fail "a refused apply left files"
ok "hostile archives and a wrong build refused, the active disk unchanged"

# ---- volumes that must not be written ----------------------------------------------------
for variant in hibernated dirty bitlocker; do
	"$mwd" "$tmp/$variant.qcow2" --size 256M --variant "$variant" >/dev/null
	"$oobctl" snapshot --dir "$tmp/$variant" init "$tmp/$variant.qcow2" 2>/dev/null
	old=$(digest "$(active "$tmp/$variant")")
	case $variant in
	hibernated) advice="Windows is hibernated or shut down with Fast Startup; boot it and shut it down fully (shutdown /s /t 0), or disable Fast Startup, then retry." ;;
	dirty) advice="The NTFS volume was not shut down cleanly or is marked for a check; boot Windows, let it check the disk (chkdsk C: /f), shut it down fully (shutdown /s /t 0), then retry." ;;
	bitlocker) advice="The volume is encrypted with BitLocker, which cannot be read or patched offline; decrypt it (manage-bde -off C:) or apply the change from within Windows." ;;
	esac
	step="mount the Windows volume (partition 3): $variant"
	[ "$variant" != bitlocker ] || step="find the Windows volume"
	refused "$tmp/$variant" "$tmp/good.yaml" "oobctl: $tmp/$variant: apply $tmp/good.yaml: $step: $advice"
	same "$(digest "$(active "$tmp/$variant")")" "$old" "$variant disk after the refusal"
	no_leftovers "$variant" "$tmp/$variant"
	"$oobctl" image inspect "$tmp/$variant" --json >"$tmp/inspect.json"
	same "$(json "$tmp/inspect.json" '[d.windows_volume.state, d.windows_volume.patchable].join(" ")')" \
		"$variant false" "image inspect of the $variant disk"
done
ok "hibernated, dirty and BitLocker volumes refused, unchanged"

# ---- killed in the middle ------------------------------------------------------------------
# Many files, so that the apply takes a while and can be caught writing.
mkdir -p "$tmp/many/Many"
for i in $(seq 1500); do head -c 12000 /dev/urandom >"$tmp/many/Many/f$i.bin"; done
tar -C "$tmp/many" -cf "$tmp/payloads/many.tar" Many
cat >"$tmp/many.yaml" <<'EOF'
format: oob-patch/1
id: kb-0006
version: 1
actions:
  - registry-set: {hive: SOFTWARE, key: Contoso, name: Killed, type: REG_DWORD, value: 1}
  - extract: {payload: many.tar, dest: Windows}
EOF
good=$(digest "$(active "$dir")")
"$oobctl" apply "$tmp/many.yaml" --disk "$dir" --payloads "$tmp/payloads" >/dev/null 2>&1 &
bg=$!
# Wait for the staging overlay to grow past 2 MiB on the host (files being
# written), then kill; at most 60 s.
killed=''
for _ in $(seq 6000); do
	stage=$(find "$dir" -maxdepth 1 -name 'stage-*.qcow2' | head -n1)
	if [ -n "$stage" ] && [ "$(stat -c %s "$stage" 2>/dev/null || echo 0)" -gt 2097152 ]; then
		kill -9 "$bg" && killed=yes
		break
	fi
	kill -0 "$bg" 2>/dev/null || break
	sleep 0.01
done
rc=0
wait "$bg" || rc=$?
bg=''
if [ -z "$killed" ] || [ "$rc" -ne 137 ]; then
	fail "the apply was not caught in the middle (exit $rc): make many.tar bigger"
fi
ls "$dir"/stage-*.qcow2 >/dev/null 2>&1 || fail "no staging overlay left by the kill to clean up"
same "$(digest "$(active "$dir")")" "$good" "the active disk after the kill"
no_leftovers "SIGKILL while writing" "$dir"
same "$(json "$tmp/list.json" 'd.snapshots.map(s => s.reason + ":" + (s.manifest || "-")).join(" ")')" \
	"initial:- pre-patch:kb-0001 pre-patch:kb-0002 pre-patch:kb-0003 pre-patch:kb-0004 pre-patch:kb-0005 pre-patch:kb-0006" \
	"snapshots after the kill"
ok "SIGKILL while writing files: the active disk unchanged, the stage removed at the next open"

# Killed by the catalog's hook after the staging overlay was renamed to an
# active name but before the catalog names it: still the old disk.
rc=0
OOB_TEST_CRASH_AT=promote-renamed "$oobctl" apply "$tmp/good.yaml" --disk "$dir" --payloads "$tmp/payloads" \
	>/dev/null 2>&1 || rc=$?
[ "$rc" -eq 137 ] || fail "the promote crash hook did not kill oobctl (exit $rc)"
same "$(digest "$(active "$dir")")" "$good" "the active disk after a kill at promote"
no_leftovers "SIGKILL at promote" "$dir"
same "$(find "$dir" -maxdepth 1 -name 'active-*.qcow2' | wc -l)" 1 "active overlays after a kill at promote"
ok "SIGKILL at promote: the active disk unchanged"

# And a complete apply after all that still works.
apply "$dir" "$tmp/many.yaml" || { cat "$tmp/err" >&2; fail "apply after the kills"; }
volume "$(active "$dir")" "$tmp/win.raw"
same "$(ntfsls -p /Windows/Many "$tmp/win.raw" | grep -c '^f[0-9]*\.bin$')" 1500 "files after the last apply"
cmp -s <(ntfscat "$tmp/win.raw" Windows/Many/f777.bin) "$tmp/many/Many/f777.bin" || fail "f777.bin differs"
ok "apply after the kills"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The stand-in desktop (tests/standin/README.md): build it, then boot it with
# plain QEMU (no libvirt) on Windows-like disks from
# tests/fixtures/make-windows-disk and check each behaviour from outside, as
# oobd will: the guest agent answers (guest-ping, guest-shutdown, guest-get-users
# after a login through guest-exec), QMP reports
# GUEST_PANICKED for a crash and WATCHDOG for a hang, the serial log shows a
# reboot loop, and neither disk is written.
#
# Software emulation (TCG) by default; OOB_STANDIN_ACCEL=kvm where nested KVM
# works. OOB_STANDIN_OUT (default build/standin) keeps the build between runs.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
standin=$top/tests/standin
mwd=$top/tests/fixtures/make-windows-disk
out=${OOB_STANDIN_OUT:-$top/build/standin}
accel=${OOB_STANDIN_ACCEL:-tcg}

for t in qemu-system-x86_64 qemu-img node mkntfs ntfscp sha256sum; do
	command -v "$t" >/dev/null || { echo "test-standin: '$t' is missing: run scripts/install-deps" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/test-standin.XXXXXX")
qemu_pid=''
stop_qemu() {
	if [ -n "$qemu_pid" ]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
		qemu_pid=''
	fi
}
trap 'stop_qemu; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cd "$work"

fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
check() {
	local what=$1; shift
	if "$@" >check.out 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     /' check.out >&2; fi
}

# ---- build ------------------------------------------------------------------------
start=$(date +%s%N)
"$standin/build-standin" "$out"
echo "     (build-standin took $((($(date +%s%N) - start) / 1000000)) ms)"
check "vmlinuz and initrd.img built" test -s "$out/vmlinuz" -a -s "$out/initrd.img"
kib=$(($(stat -c %s "$out/initrd.img") / 1024))
echo "     (initrd.img: $kib KiB)"
check "initramfs under 8 MiB" test "$kib" -lt 8192
start=$(date +%s%N)
"$standin/build-standin" "$out" >rebuild.out
ms=$((($(date +%s%N) - start) / 1000000))
check "second build is a no-op in under 5 s ($ms ms)" bash -c "grep -q 'is up to date' rebuild.out && [ $ms -lt 5000 ]"

# ---- disks ------------------------------------------------------------------------
marker() { printf 'oob-standin: %s\n' "$1" >"$2"; }
marker healthy fine.sys
marker crash crash.sys
marker hang hang0.sys
marker reboot reboot0.sys
marker 'hang after 6' hang.sys
marker reboot reboot.sys
marker 'explode now' odd.sys
echo 'system v1' >system-marker.txt
echo 'documents of alice' >data-marker.txt
echo 'echo hello' >hello.cmd
drivers=Windows/System32/drivers
"$mwd" healthy.qcow2 --size 200M --put fine.sys=$drivers/oobfine.sys --put odd.sys=$drivers/oobodd.sys \
	--put system-marker.txt=oob-marker.txt --put hello.cmd=ProgramData/oob/firstboot/01-hello.cmd
# crash beats hang beats reboot, whatever the order of the files; the
# variants and layouts: a dirty volume is read (as Windows boots it), a
# hibernated one too, the MBR layout has the Windows volume second.
"$mwd" crash.qcow2 --size 200M --variant dirty --put reboot0.sys=$drivers/aaareboot.sys --put hang0.sys=$drivers/bbbhang.sys \
	--put crash.sys=$drivers/zzzcrash.sys
"$mwd" hang.qcow2 --size 200M --variant hibernated --put hang.sys=$drivers/oobhang.sys
"$mwd" reboot.qcow2 --size 200M --layout mbr --put reboot.sys=$drivers/oobreboot.sys
qemu-img create -q -f qcow2 blank.qcow2 64M
# The user-data disk: a bare NTFS volume on a raw file.
truncate -s 16M data.raw
mkntfs -F -f -q -L Data data.raw >/dev/null 2>&1
ntfscp -q data.raw data-marker.txt oob-marker.txt

# ---- boot -------------------------------------------------------------------------
# boot NAME SYSTEM.qcow2 [DATA.raw|''] [KERNEL-ARGS...]: start QEMU paused,
# with a pvpanic, an i6300esb watchdog (action none: the event is enough) and
# the agent's virtio-serial port; NAME.serial is the console.
boot() {
	local name=$1 disk=$2 data=${3:-}
	shift 3
	local drives=(-drive "file=$disk,if=virtio,format=qcow2")
	[ -z "$data" ] || drives+=(-drive "file=$data,if=virtio,format=raw")
	qemu-system-x86_64 -machine q35 -accel "$accel" -m 256 -nodefaults -no-user-config \
		-display none -S \
		-kernel "$out/vmlinuz" -initrd "$out/initrd.img" -append "$(cat "$out/cmdline") $*" \
		-serial "file:$name.serial" \
		-qmp "unix:$name-qmp.sock,server=on,wait=off" \
		-device pvpanic -device i6300esb -action panic=pause,watchdog=none \
		-device virtio-serial-pci \
		-chardev "socket,id=qga,path=$name-qga.sock,server=on,wait=off" \
		-device virtserialport,chardev=qga,name=org.qemu.guest_agent.0 \
		"${drives[@]}" 2>"$name.qemu.err" &
	qemu_pid=$!
}
# events NAME SECONDS EVENT: let the paused guest run (QMP "cont" after
# connecting, so no event is missed) and print QMP events up to EVENT.
events() { node "$standin/qemu-socket.mjs" qmp "$1-qmp.sock" "$2" "$3" --cont; }
qga() { node "$standin/qemu-socket.mjs" qga "$1-qga.sock" "$2" "$3"; }
# console NAME: the serial log without the tty's carriage returns.
console() { tr -d '\r' <"$1.serial" 2>/dev/null; }
# serial NAME SECONDS LINE [COUNT]: wait until the console has LINE (a whole
# line, fixed string) COUNT times (default 1).
serial() {
	local name=$1 deadline=$((SECONDS + $2)) line=$3 count=${4:-1} n
	while :; do
		n=$(console "$name" | grep -c -x -F "$line") || true
		[ "${n:-0}" -lt "$count" ] || return 0
		[ "$SECONDS" -lt "$deadline" ] || { echo "no '$line' (x$count) in $name.serial after $2 s:"; console "$name"; return 1; }
		sleep 0.2
	done
}
has() { console "$1" | grep -q -x -F "$2" || { echo "no '$2' in $1.serial:"; console "$1"; return 1; }; }
# agent_run VM PROGRAM [ARG]: run it in the guest through the agent
# (guest-exec), wait for it to exit 0 (guest-exec-status).
agent_run() {
	local out pid i
	out=$(qga "$1" 10 "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"$2\",\"arg\":[${3:+\"$3\"}]}}") || return 1
	pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<<"$out")
	[ -n "$pid" ] || { echo "guest-exec: $out"; return 1; }
	for ((i = 0; i < 100; i++)); do
		out=$(qga "$1" 10 "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || return 1
		case $out in *'"exited":true'*) echo "$out"; grep -q '"exitcode":0' <<<"$out"; return ;; esac
		sleep 0.1
	done
	echo "$2 did not exit within 10 s"
	return 1
}
# users_are VM NAMES: guest-get-users lists exactly these users (space-separated).
users_are() {
	local got
	got=$(qga "$1" 10 '{"execute":"guest-get-users"}' |
		node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).return.map(u => u.user).join(" "))') || return 1
	[ "$got" = "$2" ] || { echo "guest-get-users: '$got', expected '$2'"; return 1; }
}
hasnt() { ! console "$1" | grep -q -F "$2" || { echo "'$2' in $1.serial:"; console "$1"; return 1; }; }

# ---- healthy: agent, watchdog petted, markers, first boot, shutdown, nothing written ----
before=$(sha256sum healthy.qcow2 data.raw)
boot healthy healthy.qcow2 data.raw standin.heartbeat=3
events healthy 90 SHUTDOWN >healthy.events &
ev=$!
check "healthy: says healthy" serial healthy 60 "oob-standin: healthy"
check "healthy: guest-ping answers" bash -c "[ \"\$(node '$standin/qemu-socket.mjs' qga healthy-qga.sock 20 '{\"execute\":\"guest-ping\"}')\" = '{\"return\":{}}' ]"
check "healthy: guest-get-osinfo names the stand-in" bash -c "node '$standin/qemu-socket.mjs' qga healthy-qga.sock 20 '{\"execute\":\"guest-get-osinfo\"}' | grep -q '\"id\":\"oob-standin\"'"
check "healthy: Windows volume found" has healthy "oob-standin: Windows volume /dev/vda3"
check "healthy: system marker read" has healthy "oob-standin: system marker: system v1"
check "healthy: user-data volume found" has healthy "oob-standin: user-data volume /dev/vdb"
check "healthy: user-data marker read" has healthy "oob-standin: user-data marker: documents of alice"
check "healthy: first-boot command listed" has healthy "oob-standin: firstboot: 01-hello.cmd"
check "healthy: explicit healthy marker accepted" has healthy "oob-standin: driver oobfine.sys: healthy"
check "healthy: unknown marker ignored" has healthy "oob-standin: driver oobodd.sys: unknown marker 'oob-standin: explode now', ignored"
check "healthy: watchdog armed" has healthy "oob-standin: watchdog armed (timeout 3 s)"
check "healthy: nobody logged in after the boot" users_are healthy ""
check "healthy: standin-login through guest-exec" agent_run healthy /bin/standin-login alice
check "healthy: guest-get-users lists the user" users_are healthy alice
check "healthy: the login on the console" has healthy "oob-standin: user alice logged in"
check "healthy: standin-logout through guest-exec" agent_run healthy /bin/standin-logout alice
check "healthy: nobody logged in again" users_are healthy ""
# Longer than the watchdog needs to fire (about twice its timeout) when unpetted.
sleep 9
check "healthy: still answering after 9 s" qga healthy 10 '{"execute":"guest-ping"}'
check "healthy: guest-shutdown accepted" qga healthy 20 '{"execute":"guest-shutdown"}'
wait "$ev" || true
check "healthy: QMP SHUTDOWN from the guest" grep -q '"event": "SHUTDOWN".*"reason": "guest-shutdown"' healthy.events
check "healthy: no watchdog, no panic" bash -c "! grep -q -e WATCHDOG -e GUEST_PANICKED healthy.events"
check "healthy: powered off" serial healthy 10 "oob-standin: poweroff (shutdown -h -P +0 hypervisor initiated shutdown)"
deadline=$((SECONDS + 20))
while kill -0 "$qemu_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
check "healthy: QEMU exited" bash -c "! kill -0 $qemu_pid 2>/dev/null"
stop_qemu
check "healthy: neither disk written" bash -c "[ \"\$(sha256sum healthy.qcow2 data.raw)\" = '$before' ]"

# ---- crash: pvpanic, seen by QMP -------------------------------------------------------
boot crash crash.qcow2 ''
start=$SECONDS
check "crash: GUEST_PANICKED" bash -c "node '$standin/qemu-socket.mjs' qmp crash-qmp.sock 60 GUEST_PANICKED --cont >crash.events"
echo "     (panic reported $((SECONDS - start)) s after start)"
check "crash: dirty volume read" has crash "oob-standin: Windows volume /dev/vda3"
check "crash: the crashing driver named" has crash "oob-standin: crashing (driver zzzcrash.sys)"
check "crash: before the agent starts" hasnt crash "oob-standin: agent started"
stop_qemu

# ---- no Windows volume: INACCESSIBLE_BOOT_DEVICE ------------------------------------------
boot blank blank.qcow2 ''
check "blank disk: GUEST_PANICKED" events blank 60 GUEST_PANICKED
check "blank disk: says why" has blank "oob-standin: crashing (INACCESSIBLE_BOOT_DEVICE: no Windows volume on /dev/vda)"
stop_qemu

# ---- hang: the agent stops answering, the watchdog fires ------------------------------------
boot hang hang.qcow2 '' standin.heartbeat=3
events hang 90 WATCHDOG >hang.events &
ev=$!
check "hang: hibernated volume read" serial hang 60 "oob-standin: Windows volume /dev/vda3"
check "hang: healthy first" serial hang 60 "oob-standin: healthy"
check "hang: agent answers before the hang" qga hang 5 '{"execute":"guest-ping"}'
check "hang: hangs" serial hang 30 "oob-standin: hanging (driver oobhang.sys)"
check "hang: agent no longer answers" bash -c "! node '$standin/qemu-socket.mjs' qga hang-qga.sock 3 '{\"execute\":\"guest-ping\"}'"
wait "$ev" || true
check "hang: QMP WATCHDOG" grep -q '"event": "WATCHDOG"' hang.events
check "hang: no panic" bash -c "! grep -q GUEST_PANICKED hang.events"
stop_qemu

# ---- reboot loop ----------------------------------------------------------------------
boot reboot reboot.qcow2 ''
check "reboot: QMP RESET from the guest" bash -c "node '$standin/qemu-socket.mjs' qmp reboot-qmp.sock 60 RESET --cont | grep -q '\"guest\": true'"
check "reboot: boots twice or more" serial reboot 60 "oob-standin: rebooting (driver oobreboot.sys)" 2
check "reboot: MBR layout, Windows volume second" has reboot "oob-standin: Windows volume /dev/vda2"
check "reboot: never healthy" hasnt reboot "oob-standin: healthy"
stop_qemu

if [ "$fails" -ne 0 ]; then
	echo "test-standin: $fails check(s) failed" >&2
	exit 1
fi
echo "test-standin: all checks passed"

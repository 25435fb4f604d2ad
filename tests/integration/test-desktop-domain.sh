#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The desktop domain (hv/domain.c) against a real libvirtd, QEMU under TCG
# and the stand-in desktop (tests/standin/README.md): this script prepares
# the world (the stand-in, Windows-like system disks whose marker drivers
# crash, hang or reboot it, an NTFS user-data disk, libvirtd through
# tests/libvirt-fixture), checks the fixture itself, and runs the libvirt
# cases of tests/hv/test-domain.c (OOB_TEST_LIBVIRT=1): define/undefine,
# start, agent connected and ping, graceful shutdown through the agent, the
# ACPI-then-destroy fallback on a hung guest, the watchdog, a crash reported
# within a second of QEMU's panic, another system disk really booted, the
# user-data disk untouched, reboot, and reconnecting after libvirtd dropped
# the connection.
#
# Needs root (the system libvirtd). OOB_STANDIN_OUT (default build/standin)
# keeps the stand-in between runs; BUILD (default build) is where the test
# binary is built.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
build=${BUILD:-build}
out=${OOB_STANDIN_OUT:-$top/build/standin}
mwd=$top/tests/fixtures/make-windows-disk

if [ "$(id -u)" -ne 0 ]; then
	echo "test-desktop-domain: needs root for the system libvirtd, skipped" >&2
	exit 0
fi
for t in virsh libvirtd qemu-system-x86_64 qemu-img mkntfs ntfscp sha256sum; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
		{ echo "test-desktop-domain: '$t' is missing: run scripts/install-deps" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/test-desktop-domain.XXXXXX")
# QEMU runs as libvirt-qemu: it must reach the disks.
chmod 0755 "$work"
other=$work/other-user
fixture_started=''
ours() {
	local d
	for d in $(virsh -q list --all --name 2>/dev/null | grep '^oob-test-' || true); do
		virsh -q domblklist "$d" 2>/dev/null | awk -v w="$work/" '$1 == "vda" && index($2, w) == 1 {found = 1} END {exit !found}' &&
			echo "$d"
	done
}
cleanup() {
	local d
	# Domains a killed test binary left behind: ours are the ones booting our disks.
	for d in $(ours); do
		virsh -q destroy "$d" >/dev/null 2>&1 || true
		virsh -q undefine --nvram "$d" >/dev/null 2>&1 || true
		rm -f "/var/log/libvirt/qemu/$d.log" "/var/log/libvirt/qemu/$d-console.log"
	done
	tests/libvirt-fixture stop "$other" 2>/dev/null || true
	[ -z "$fixture_started" ] || tests/libvirt-fixture stop "$work" || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
check() {
	local what=$1; shift
	if "$@" >"$work/check.out" 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     /' "$work/check.out" >&2; fi
}

# ---- the world ----------------------------------------------------------------------
"$top/tests/standin/build-standin" "$out" >/dev/null
# QEMU runs as libvirt-qemu: it reads the kernel from $work (0755), not from
# the checkout, whose parents may be private (a clone under /root or mktemp).
mkdir "$work/standin"
cp "$out/vmlinuz" "$out/initrd.img" "$out/cmdline" "$work/standin/"
marker() { printf 'oob-standin: %s\n' "$1" >"$work/$2"; }
marker healthy healthy.sys
marker crash crash.sys
marker 'hang after 1' hang.sys
marker reboot reboot.sys
echo 'healthy system' >"$work/system-marker.txt"
echo 'documents of alice' >"$work/data-marker.txt"
drivers=Windows/System32/drivers
mk() {
	local name=$1; shift
	"$mwd" "$work/$name.qcow2" --size 200M "$@" >"$work/$name.log" 2>&1 ||
		{ cat "$work/$name.log" >&2; exit 1; }
}
mk healthy --put "$work/healthy.sys=$drivers/oobhealthy.sys" --put "$work/system-marker.txt=oob-marker.txt"
mk crash --put "$work/crash.sys=$drivers/oobcrash.sys"
mk hang --put "$work/hang.sys=$drivers/oobhang.sys"
mk reboot --put "$work/reboot.sys=$drivers/oobreboot.sys"
# The user-data disk: a bare NTFS volume, as qcow2.
truncate -s 16M "$work/data.raw"
mkntfs -F -f -q -L Data "$work/data.raw" >/dev/null 2>&1
ntfscp -q "$work/data.raw" "$work/data-marker.txt" oob-marker.txt
qemu-img convert -q -f raw -O qcow2 "$work/data.raw" "$work/data.qcow2"
rm -f "$work/data.raw"
data_hash=$(sha256sum <"$work/data.qcow2")

# ---- the fixture --------------------------------------------------------------------
fixture_started=1
env_line=$(tests/libvirt-fixture start "$work")
eval "$env_line"
check "fixture: LIBVIRT_URI is the system daemon" test "$LIBVIRT_URI" = qemu:///system
check "fixture: libvirtd answers" virsh -q -c "$LIBVIRT_URI" uri
pid=$(pgrep -x libvirtd | head -n1)
# A second user shares the daemon; its stop leaves it to us.
env_line=$(tests/libvirt-fixture start "$other")
check "fixture: a second start reuses the daemon" test "$(pgrep -x libvirtd | head -n1)" = "$pid"
tests/libvirt-fixture stop "$other"
check "fixture: the other user's stop leaves it running" virsh -q -c "$LIBVIRT_URI" uri
check "fixture: libvirtd listens on no TCP port" \
	bash -c "! ss -ltnp 2>/dev/null | grep -q '\"libvirtd\"'"

# ---- the cases in C ------------------------------------------------------------------
make --no-print-directory -s BUILD="$build" "$build/tests/hv/test-domain" >"$work/make.log" 2>&1 ||
	{ cat "$work/make.log" >&2; exit 1; }
start=$(date +%s)
if OOB_TEST_LIBVIRT=1 OOB_TEST_LIBVIRT_URI="$LIBVIRT_URI" OOB_TEST_STANDIN="$work/standin" OOB_TEST_DISKS="$work" \
	CK_FORK=yes CK_DEFAULT_TIMEOUT=240 "$build/tests/hv/test-domain" >"$work/test.out" 2>&1; then
	pass "tests/hv/test-domain with libvirt, QEMU and the stand-in ($(($(date +%s) - start)) s)"
	grep -E '^[0-9]+%: Checks|^test-domain: crash seen' "$work/test.out" | sed 's/^test-domain: //; s/^/     /' || true
else
	fail "tests/hv/test-domain with libvirt, QEMU and the stand-in"
	sed 's/^/     /' "$work/test.out" >&2
fi
check "the user-data disk is byte-identical" test "$(sha256sum <"$work/data.qcow2")" = "$data_hash"
check "no test domain left behind" test -z "$(ours)"

[ "$fails" -eq 0 ]

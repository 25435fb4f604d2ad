#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/fixtures/make-windows-disk: build every layout and variant and check,
# with tools that share no code with the builder's C part (sgdisk, file,
# mtools, ntfsprogs, hivexget), that each disk is what
# tests/fixtures/README.md says. Also as an unprivileged user when run as root.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mwd=$top/tests/fixtures/make-windows-disk
work=$(mktemp -d "${TMPDIR:-/tmp}/test-windows-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cd "$work"

fails=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
	local what=$1; shift
	if "$@" >check.out 2>&1; then pass "$what"; else fail "$what"; sed 's/^/     /' check.out >&2; fi
}
# refuse DESCRIPTION EXPECTED-RC EXPECTED-STDERR-LINE COMMAND...: must fail just so.
refuse() {
	local what=$1 rc=$2 msg=$3 got=0; shift 3
	"$@" >/dev/null 2>refuse.err || got=$?
	if [ "$got" -eq "$rc" ] && grep -qxF "$msg" refuse.err; then
		pass "$what"
	else
		fail "$what: exit $got (want $rc), stderr:"; sed 's/^/     /' refuse.err >&2
	fi
}
# same STRING EXPECTED: exact comparison with a readable failure.
same() { [ "$1" = "$2" ] || { echo "got:  [$1]"; echo "want: [$2]"; return 1; }; }

# raw IMAGE.qcow2 -> IMAGE.raw; part IMAGE.raw N OUT: partition N into a file.
raw() { qemu-img convert -f qcow2 -O raw "$1" "${1%.qcow2}.raw"; }
part() {
	local s n
	read -r s n < <(sgdisk -i "$2" "$1" 2>/dev/null | awk '/^First sector:/ { s = $3 } /^Partition size:/ { n = $3 } END { print s, n }')
	dd if="$1" of="$3" bs=1M iflag=skip_bytes,count_bytes skip=$((s * 512)) count=$((n * 512)) status=none
}
# ntfsls prints "." and ".." for some directories only: leave them out.
ls_dir() { ntfsls "$@" | grep -vx -e . -e .. | tr '\n' ' '; }
hive() { ntfscat "$1" "$2" >"$3"; }

# ---- argument errors -----------------------------------------------------------------
refuse "bad layout refused" 1 "make-windows-disk: --layout must be gpt or mbr" "$mwd" x.qcow2 --layout gpx
refuse "too small refused" 1 "make-windows-disk: --size must be at least 200M" "$mwd" x.qcow2 --size 100M
check "nothing written on refusal" test ! -e x.qcow2

# ---- GPT, clean, 1 GiB: the layout, timed ------------------------------------------------
start=$(date +%s%N)
"$mwd" gpt.qcow2 --size 1G --build 19045 --user alice
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "     (1 GiB GPT disk built in $ms ms)"
check "1 GiB built in under 30 s" test "$ms" -lt 30000
check "qcow2 of 1 GiB" bash -c "qemu-img info --output=json gpt.qcow2 | grep -q '\"virtual-size\": 1073741824' && qemu-img info gpt.qcow2 | grep -q '^file format: qcow2'"
check "qemu-img check clean" qemu-img check -q gpt.qcow2
check "qcow2 stays small (sparse)" test "$(stat -c %s gpt.qcow2)" -lt $((64 * 1048576))
raw gpt.qcow2

check "sgdisk: valid GPT" bash -c "sgdisk -v gpt.raw | grep -q 'No problems found'"
sgdisk -p gpt.raw | awk '$1 ~ /^[0-9]+$/ { print $1, $2, $6 }' >layout.txt
check "sgdisk: ESP, MSR, basic data, WinRE" same "$(cat layout.txt)" "1 2048 EF00
2 206848 0C01
3 239616 0700
4 2031616 2700"
check "sgdisk: partition names" bash -c "sgdisk -i 1 gpt.raw | grep -qx \"Partition name: 'EFI system partition'\" &&
	sgdisk -i 2 gpt.raw | grep -qx \"Partition name: 'Microsoft reserved partition'\" &&
	sgdisk -i 3 gpt.raw | grep -qx \"Partition name: 'Basic data partition'\""
check "sgdisk: WinRE attributes required + no drive letter" bash -c "sgdisk -i 4 gpt.raw | grep -qx 'Attribute flags: 8000000000000001'"
check "sgdisk: data partition uses the rest" bash -c "sgdisk -i 3 gpt.raw | grep -q '^Last sector: 2031582 '"

part gpt.raw 1 esp.raw
export MTOOLS_SKIP_CHECK=1
check "ESP is FAT32 labelled SYSTEM" bash -c "file -s esp.raw | grep -q 'FAT (32 bit)' && minfo -i esp.raw :: | grep -q 'disk label=\"SYSTEM '"
check "ESP: Windows boot manager and BCD" same "$(mdir -b -i esp.raw ::/EFI/Microsoft/Boot | sort | tr '\n' ' ')" \
	"::/EFI/Microsoft/Boot/BCD ::/EFI/Microsoft/Boot/bootmgfw.efi "
check "ESP: fallback loader" bash -c "mdir -b -i esp.raw ::/EFI/Boot | grep -qx '::/EFI/Boot/bootx64.efi'"
mcopy -i esp.raw ::/EFI/Microsoft/Boot/BCD BCD
root=\\
check "BCD is an (empty) hive" same "$(hivexget BCD "$root" 2>&1)" ""

part gpt.raw 3 win.raw
check "NTFS boot sector" same "$(dd if=win.raw bs=1 skip=3 count=8 status=none)" "NTFS    "
check "NTFS label, version, clean flags" bash -c "ntfsinfo -m win.raw > info.txt &&
	grep -qx $'\tVolume Name: Windows' info.txt && grep -qx $'\tVolume Version: 3.1' info.txt &&
	grep -qx $'\tVolume Flags: 0x0000' info.txt"
check "volume root" same "$(ls_dir win.raw)" "Program Files Program Files (x86) ProgramData Users Windows "
check "Windows" same "$(ls_dir -p /Windows win.raw)" "Boot explorer.exe System32 Temp "
check "System32" same "$(ls_dir -p /Windows/System32 win.raw)" "config drivers hal.dll ntoskrnl.exe svchost.exe winload.efi "
check "config" same "$(ls_dir -p /Windows/System32/config win.raw)" "DEFAULT SAM SECURITY SOFTWARE SYSTEM "
check "drivers" same "$(ls_dir -p /Windows/System32/drivers win.raw)" "disk.sys etc Ntfs.sys "
check "Users" same "$(ls_dir -p /Users win.raw)" "alice Default Public "
check "user profile" same "$(ls_dir -p /Users/alice win.raw)" "AppData Documents NTUSER.DAT "
check "no hiberfil.sys on a clean disk" bash -c "! ntfsls win.raw | grep -qi hiberfil"
check "stand-in kernel" bash -c "ntfscat win.raw Windows/System32/ntoskrnl.exe > k && test \$(stat -c %s k) = 4096 &&
	test \"\$(head -c 2 k)\" = MZ && grep -aq 'oob fixture stand-in for ntoskrnl.exe (build 19045)' k"
check "hosts file" bash -c "ntfscat win.raw Windows/System32/drivers/etc/hosts | grep -aq 'localhost'"
check "long name: Win32 + DOS PROGRA~1" bash -c "ntfsinfo -F '/Program Files' win.raw > f.txt &&
	grep -q $'Namespace:\t\t Win32$' f.txt && grep -q $'Namespace:\t\t DOS$' f.txt && grep -q \"Filename:.*'PROGRA~1'\" f.txt"
check "8.3 name: one Win32 & DOS name" bash -c "ntfsinfo -F /Windows/System32/config/SYSTEM win.raw | grep -q $'Namespace:\t\t Win32 & DOS$'"

hive win.raw Windows/System32/config/SOFTWARE SOFTWARE
hive win.raw Windows/System32/config/SYSTEM SYSTEM
hive win.raw Users/alice/NTUSER.DAT NTUSER.DAT
cv='Microsoft\Windows NT\CurrentVersion'
check "SOFTWARE: version values" same "$(hivexget SOFTWARE "$cv" | grep -E '^"(ProductName|EditionID|CurrentBuild|CurrentBuildNumber|DisplayVersion|ReleaseId|UBR|CurrentMajorVersionNumber)"=')" \
'"ProductName"="Windows 10 Pro"
"EditionID"="Professional"
"CurrentMajorVersionNumber"=dword:0000000a
"CurrentBuild"="19045"
"CurrentBuildNumber"="19045"
"UBR"=dword:00000b95
"DisplayVersion"="22H2"
"ReleaseId"="2009"'
check "SOFTWARE: profile of the user" bash -c "hivexget SOFTWARE '$cv\\ProfileList\\S-1-5-21-3623811015-3361044348-30300820-1001' ProfileImagePath | grep -qx 'C:\\\\Users\\\\alice'"
check "SYSTEM: Select" same "$(hivexget SYSTEM Select)" '"Current"=dword:00000001
"Default"=dword:00000001
"Failed"=dword:00000000
"LastKnownGood"=dword:00000001'
check "SYSTEM: computer name" same "$(hivexget SYSTEM 'ControlSet001\Control\ComputerName\ComputerName' ComputerName)" DESKTOP-OOB
check "SYSTEM: a driver service" same "$(hivexget SYSTEM 'ControlSet001\Services\disk')" '"Type"=dword:00000001
"Start"=dword:00000000
"ErrorControl"=dword:00000001
"Group"="SCSI Class"
"ImagePath"=str(2):"System32\\drivers\\disk.sys"'
check "SYSTEM: MULTI_SZ dependencies" same "$(hivexget SYSTEM 'ControlSet001\Services\LanmanWorkstation' DependOnService)" 'Bowser
MRxSmb20
NSI'
check "SYSTEM: no CurrentControlSet key on disk" bash -c "! hivexget SYSTEM CurrentControlSet 2>/dev/null"
check "NTUSER.DAT: Explorer key" bash -c "hivexget NTUSER.DAT 'Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\Advanced' Hidden | grep -qx 2"
check "NTUSER.DAT: EXPAND_SZ TEMP" same "$(hivexget NTUSER.DAT Environment TEMP)" '%USERPROFILE%\AppData\Local\Temp'
for h in SAM SECURITY DEFAULT; do
	hive win.raw "Windows/System32/config/$h" "$h"
done
check "SAM and SECURITY: empty hives" same "$(hivexget SAM "$root"; hivexget SECURITY "$root")" ""
check "DEFAULT: locale" same "$(hivexget DEFAULT 'Control Panel\International' LocaleName)" en-US
# The base blocks: consistent (equal sequence numbers), hive format 1.5.
# shellcheck disable=SC2016
check "hives are consistent regf 1.5" bash -c 'for f in SOFTWARE SYSTEM NTUSER.DAT SAM; do
	set -- $(od -An -tu4 -j4 -N24 $f); [ "$(head -c 4 $f)" = regf ] && [ "$1" = "$2" ] && [ "$5" = 1 ] && [ "$6" = 5 ] || exit 1; done'

part gpt.raw 4 re.raw
check "recovery volume" bash -c "ntfsinfo -m re.raw | grep -qx $'\tVolume Name: Recovery' &&
	ntfscat re.raw Recovery/WindowsRE/Winre.wim | grep -aq 'stand-in for Winre.wim'"

cp win.raw rw.raw
echo "written by ntfscp" >note.txt
check "clean volume is writable by ntfs-3g (ntfscp)" bash -c "ntfscp rw.raw note.txt note.txt && ntfscat rw.raw note.txt | grep -q 'written by ntfscp'"

# ---- MBR ------------------------------------------------------------------------------
"$mwd" mbr.qcow2 --size 256M --layout mbr --build 19041 --ubr 1 --user carol --hostname PC-2
raw mbr.qcow2
check "file: MBR, two NTFS (0x07) partitions, the first active" bash -c "file -s mbr.raw | grep -q 'partition 1 : ID=0x7, active, .*startsector 2048, 102400 sectors; partition 2 : ID=0x7, .*startsector 104448, 419807 sectors'"
check "sgdisk: an MBR disk, no GPT" bash -c "sgdisk -p mbr.raw 2>&1 | grep -q 'Found invalid GPT and valid MBR'"
check "MBR disk signature" same "$(od -An -tx4 -j440 -N4 mbr.raw | tr -d ' ')" 0b0b0b0b
part mbr.raw 1 sr.raw
check "System Reserved: bootmgr and BCD" bash -c "ntfsinfo -m sr.raw | grep -qx $'\tVolume Name: System Reserved' &&
	test \"\$(ntfsls sr.raw | tr '\n' ' ')\" = 'Boot bootmgr ' && ntfsls -p /Boot sr.raw | grep -qx BCD"
part mbr.raw 2 mwin.raw
check "MBR Windows volume" same "$(ls_dir -p /Windows/System32 mwin.raw)" "config drivers hal.dll ntoskrnl.exe svchost.exe winload.exe "
hive mwin.raw Windows/System32/config/SOFTWARE MSOFTWARE
check "build 19041: no DisplayVersion, ReleaseId 2004, UBR 1" bash -c "! hivexget MSOFTWARE '$cv' DisplayVersion 2>/dev/null &&
	test \"\$(hivexget MSOFTWARE '$cv' ReleaseId)\" = 2004 && test \"\$(hivexget MSOFTWARE '$cv' UBR)\" = 1"
check "--user and --hostname" bash -c "ntfscat mwin.raw Users/carol/NTUSER.DAT > C.DAT && hivexget C.DAT Environment TMP >/dev/null &&
	ntfscat mwin.raw Windows/System32/config/SYSTEM > MSYSTEM &&
	test \"\$(hivexget MSYSTEM 'ControlSet001\\Control\\ComputerName\\ComputerName' ComputerName)\" = PC-2"

# ---- variants ---------------------------------------------------------------------------
"$mwd" hib.qcow2 --size 256M --variant hibernated
raw hib.qcow2
part hib.raw 3 hib3.raw
check "hibernated: hiberfil.sys at the root, HIBR magic" bash -c "ntfsls hib3.raw | grep -qx hiberfil.sys &&
	test \"\$(ntfscat hib3.raw hiberfil.sys | head -c 4)\" = HIBR"
check "hibernated: read-only tools still read it" bash -c "ntfsls -p /Windows hib3.raw >/dev/null && ntfsinfo -m hib3.raw >/dev/null && ntfsfix -n hib3.raw >/dev/null"
sum=$(sha256sum hib3.raw)
refuse "hibernated: ntfscp refused by libntfs-3g" 1 "Windows is hibernated, refused to mount." ntfscp hib3.raw note.txt note.txt
refuse "hibernated: ntfslabel NEW refused" 1 "Windows is hibernated, refused to mount." ntfslabel hib3.raw NEW
check "hibernated: the refusals wrote nothing" same "$(sha256sum hib3.raw)" "$sum"

"$mwd" dirty.qcow2 --size 256M --variant dirty --layout mbr
raw dirty.qcow2
part dirty.raw 2 dirty2.raw
refuse "dirty: ntfsls refuses without -f" 2 "Volume is scheduled for check." ntfsls dirty2.raw
refuse "dirty: ntfscat refuses without -f" 1 "Volume is scheduled for check." ntfscat dirty2.raw Windows/explorer.exe
refuse "dirty: ntfscp refuses" 1 "Volume is scheduled for check." ntfscp dirty2.raw note.txt note.txt
check "dirty: ntfsinfo -f shows the DIRTY flag" bash -c "ntfsinfo -f -m dirty2.raw 2>/dev/null | grep -qx $'\tVolume Flags: 0x0001 DIRTY'"
check "dirty: contents intact (ntfscat -f)" bash -c "ntfscat -f dirty2.raw Windows/System32/config/SYSTEM 2>/dev/null > DSYSTEM && hivexget DSYSTEM Select Current | grep -qx 1"
cp dirty2.raw fixed.raw
check "dirty: ntfsfix keeps the flag, ntfsfix -d clears it" bash -c "ntfsfix fixed.raw >/dev/null 2>&1 &&
	ntfsinfo -f -m fixed.raw 2>/dev/null | grep -q 'Volume Flags: 0x0001 DIRTY' &&
	ntfsfix -d fixed.raw >/dev/null 2>&1 && ntfsinfo -m fixed.raw | grep -qx $'\tVolume Flags: 0x0000'"

"$mwd" bl.qcow2 --size 256M --variant bitlocker
raw bl.qcow2
part bl.raw 3 bl3.raw
check "bitlocker: OEM id -FVE-FS-" bash -c "file -s bl3.raw | grep -q 'OEM-ID \"-FVE-FS-\"'"
refuse "bitlocker: ntfsls finds no NTFS" 2 "NTFS signature is missing." ntfsls bl3.raw
refuse "bitlocker: ntfsinfo finds no NTFS" 1 "NTFS signature is missing." ntfsinfo -m bl3.raw
check "bitlocker: ntfsfix cannot repair it from the backup boot sector" bash -c "! ntfsfix -n bl3.raw >/dev/null 2>&1"
check "bitlocker: the other partitions are untouched" bash -c "sgdisk -v bl.raw | grep -q 'No problems found'"

# ---- as an unprivileged user -------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	# $work is private (0700): nobody gets a directory of its own.
	user=$(mktemp -d "${TMPDIR:-/tmp}/test-windows-disk-user.XXXXXX")
	trap 'rm -rf "$work" "$user"' EXIT
	chmod 0777 "$user"
	# The fixture from a copy nobody can read: the checkout's parents may be
	# private (a clone under /root or mktemp).
	mkdir -p "$user/fixtures"
	cp "$mwd" "$top/tests/fixtures/winfs-tool.c" "$user/fixtures/"
	chmod -R a+rX "$user/fixtures"
	check "builds as user nobody (no root, no mounts)" setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups \
		env -i PATH="$PATH" HOME="$user" TMPDIR="$user" OOB_FIXTURE_BUILD="$user/tool" \
		bash "$user/fixtures/make-windows-disk" "$user/u.qcow2" --size 256M --layout mbr --variant hibernated
	check "its disk is complete" bash -c "qemu-img check -q '$user/u.qcow2' && test \"\$(stat -c %U '$user/u.qcow2')\" = nobody"
else
	echo "skip builds as an unprivileged user (not root, or no setpriv/nobody)"
fi

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed" >&2
	exit 1
fi
echo "all checks passed"

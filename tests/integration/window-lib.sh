# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Helpers shared by the patch window's integration tests (test-window-*.sh).
# window_test_begin comes first; the others need the world's variables,
# set by `eval "$(scripts/world up ...)"` (OOBCTL, OOBD_BUS, OOBD_LOG, OOBD_STATE, LIBVIRT_URI, DOMAIN,
# REPORTS_STORE). Not a test itself: run-tests only runs test-*.sh.

# window_test_begin NAME [NEEDS]: how every window test starts, after
# `cd` to the top of the tree: BUILD made absolute, skipped (exit 0) when
# not root (NEEDS says why root, default "the system libvirtd"), a fresh
# work directory in $w, and at exit the world torn down and $w removed (kept
# for a look after a failure with KEEP=1). A test with more to undo defines
# window_test_cleanup, which runs first.
window_test_begin() {
	export BUILD=${BUILD:-build}
	[[ "$BUILD" = /* ]] || BUILD=$PWD/$BUILD
	if [ "$(id -u)" -ne 0 ]; then
		echo "$1: needs root (${2:-the system libvirtd}), skipped" >&2
		exit 0
	fi
	w=$(mktemp -d "/tmp/oob-${1#test-}.XXXXXX")
	trap window_test_end EXIT
	trap 'exit 130' INT TERM
}

window_test_end() {
	local rc=$?
	if declare -F window_test_cleanup >/dev/null; then
		window_test_cleanup || true
	fi
	if [ "$rc" -ne 0 ] && [ -n "${KEEP:-}" ]; then
		scripts/world down "$w" --keep >/dev/null 2>&1 || true
		echo "kept $w" >&2
	else
		scripts/world down "$w" >/dev/null 2>&1 || true
		rm -rf "$w"
	fi
}

# fail MESSAGE: say it, show the end of oobd's log, stop the test.
fail() {
	echo "FAIL: $*" >&2
	[ -f "${OOBD_LOG:-/nonexistent}" ] && tail -n 40 "$OOBD_LOG" | sed 's/^/  oobd.log: /' >&2
	exit 1
}
ok() { echo "ok: $*"; }

# wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds, bounded.
wait_for() {
	local limit=$1 what=$2 i
	shift 2
	for ((i = 0; i < limit * 20; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "timed out after ${limit} s waiting for $what"
}

# jq-like: json FILE EXPRESSION (d is the document)
json() { node -e "const d=JSON.parse(require('fs').readFileSync(process.argv[1],'utf8')); const v=($2); console.log(typeof v === 'object' ? JSON.stringify(v) : v)" "$1"; }
ctl() { "$OOBCTL" "$@" --bus-address "$OOBD_BUS"; }
virt() { virsh -q -c "$LIBVIRT_URI" "$@"; }
# tx EXPRESSION: a field of oobd's persisted transaction
tx() { json "$OOBD_STATE/transaction.json" "$1"; }
# reports_with_key PREFIX: how many stored reports have a key starting with PREFIX
reports_with_key() { if [ -s "$REPORTS_STORE" ]; then grep -c "\"key\":\"$1" "$REPORTS_STORE" || true; else echo 0; fi; }
domain_disk() { virt domblklist "$DOMAIN" | awk '$1 == "vda" {print $2}'; }
alive() { kill -0 "$1" 2>/dev/null; }

# wait_outcome ID OUTCOME: wait (at most 180 s) until oobd is idle with
# transaction ID its last job, and check that it ended OUTCOME.
wait_outcome() {
	local id=$1 want=$2 i
	for ((i = 0; i < 180 * 10; i++)); do
		alive "$OOBD_PID" || fail "oobd died while waiting for transaction $id"
		if ctl status --json >"$w/status.json" 2>/dev/null &&
			[ "$(json "$w/status.json" "d.state === 'idle' && d.last !== null && d.last.id === '$id'")" = true ]; then
			[ "$(json "$w/status.json" 'd.last.outcome')" = "$want" ] ||
				fail "transaction $id ended $(json "$w/status.json" 'd.last.outcome + ": " + d.last.summary'), expected $want"
			return 0
		fi
		sleep 0.1
	done
	fail "transaction $id did not end within 180 s"
}

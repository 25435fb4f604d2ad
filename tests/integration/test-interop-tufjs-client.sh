#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Interoperability: another TUF client (tuf-js, tests/interop/client.mjs)
# against repositories published by oob-repo, served by nginx over TLS.
# For each key type oob-repo offers (ed25519, ecdsa, rsa): init, add two
# payloads (targets "payloads/NAME" under the delegated role "releases"),
# tuf-js starts from 1.root.json, downloads both and the bytes must match.
# On the ed25519 repository, further: a payload added later is seen by the
# same client (new timestamp/snapshot/releases versions), a rotated timestamp
# key (oob-repo rotate-key timestamp, when available) is followed by both the
# existing client and a fresh one, and a tampered payload makes tuf-js fail
# without leaving the file in the target dir.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobrepo=${OOB_REPO:-$root/${BUILD:-build}/bin/oob-repo}
[ -x "$oobrepo" ] || { echo "oob-repo not built: $oobrepo (run make)" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "node is missing (run scripts/install-deps)" >&2; exit 1; }

# The npm packages, installed once and again only when the lock file changed.
if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
	npm ci --prefix tests/interop --no-audit --no-fund >/dev/null
	touch tests/interop/node_modules
fi

tmp=$(mktemp -d /tmp/oob-interop-client.XXXXXX)
cleanup() {
	tests/nginx-fixture stop "$tmp/nginx" || true
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

eval "$(tests/nginx-fixture start "$tmp/nginx")"
www=$tmp/nginx/www
export NODE_EXTRA_CA_CERTS=$NGINX_CA

repo() { timeout 60 "$oobrepo" "$@"; }

# tufjs NAME MDDIR TARGETDIR [client.mjs options]: tuf-js against repository NAME.
tufjs() {
	local n=$1 md=$2 dir=$3; shift 3
	timeout 30 node tests/interop/client.mjs --metadata-dir "$md" --metadata-url "$NGINX_HTTPS/$n/metadata" \
		--target-base-url "$NGINX_HTTPS/$n/targets" --target-dir "$dir" "$@"
}

root_version() { node -e 'console.log(require(process.argv[1]).signed.version)' "$1"; }

head -c 20000 /dev/urandom >"$tmp/a.tar"
head -c 777 /dev/urandom >"$tmp/b.bin"
printf 'added later\n' >"$tmp/c.txt"

for kt in ed25519 ecdsa rsa; do
	r=$tmp/repo-$kt
	repo --repo "$r" init --key-type "$kt" >/dev/null || fail "$kt: oob-repo init"
	repo --repo "$r" add-payload "$tmp/a.tar" --name a.tar >/dev/null || fail "$kt: add-payload a.tar"
	repo --repo "$r" add-payload "$tmp/b.bin" --name b.bin >/dev/null || fail "$kt: add-payload b.bin"
	[ -f "$r/public/metadata/1.root.json" ] || fail "$kt: no public/metadata/1.root.json"
	# Serve only the public tree (the keys stay out of the web root).
	ln -s "$r/public" "$www/$kt"

	md=$tmp/$kt/md dl=$tmp/$kt/dl
	tufjs "$kt" "$md" "$dl" --root "$r/public/metadata/1.root.json" \
		--target payloads/a.tar --target payloads/b.bin || fail "$kt: tuf-js refresh and download"
	cmp "$tmp/a.tar" "$dl/payloads%2Fa.tar" || fail "$kt: payloads/a.tar differs"
	cmp "$tmp/b.bin" "$dl/payloads%2Fb.bin" || fail "$kt: payloads/b.bin differs"
	echo "$kt: tuf-js verified and downloaded payloads/a.tar and payloads/b.bin"
done

r=$tmp/repo-ed25519 md=$tmp/ed25519/md

# A later publication: the same client moves to the new versions.
repo --repo "$r" add-payload "$tmp/c.txt" --name c.txt >/dev/null || fail "add-payload c.txt"
tufjs ed25519 "$md" "$tmp/ed25519/dl2" --target payloads/c.txt || fail "tuf-js after a new payload"
cmp "$tmp/c.txt" "$tmp/ed25519/dl2/payloads%2Fc.txt" || fail "payloads/c.txt differs"
echo "ed25519: tuf-js followed a new publication (payloads/c.txt)"

# Key rotation: a new root (signed by the old and new root) lists the new
# timestamp key; the existing client must walk to it, a fresh one too.
if "$oobrepo" --help 2>&1 | grep -q rotate-key; then
	before=$(root_version "$md/root.json")
	repo --repo "$r" rotate-key timestamp >/dev/null || fail "oob-repo rotate-key timestamp"
	tufjs ed25519 "$md" "$tmp/ed25519/dl3" --target payloads/a.tar || fail "tuf-js after rotate-key timestamp"
	after=$(root_version "$md/root.json")
	[ "$after" -gt "$before" ] || fail "root version did not advance after rotate-key ($before -> $after)"
	cmp "$tmp/a.tar" "$tmp/ed25519/dl3/payloads%2Fa.tar" || fail "payloads/a.tar differs after rotation"
	tufjs ed25519 "$tmp/ed25519/md-fresh" "$tmp/ed25519/dl4" --root "$r/public/metadata/1.root.json" \
		--target payloads/b.bin || fail "fresh tuf-js client after rotate-key timestamp"
	cmp "$tmp/b.bin" "$tmp/ed25519/dl4/payloads%2Fb.bin" || fail "payloads/b.bin differs (fresh client)"
	echo "ed25519: tuf-js followed the timestamp key rotation (root $before -> $after)"
else
	echo "SKIP: oob-repo has no rotate-key command; key rotation not tested"
fi

# A tampered payload: same length, one byte changed, in every copy served.
n=0
while IFS= read -r -d '' f; do
	byte=X
	[ "$(od -An -c -j10 -N1 "$f" | tr -d ' ')" != X ] || byte=Y
	printf '%s' "$byte" | dd of="$f" bs=1 seek=10 conv=notrunc status=none
	n=$((n + 1))
done < <(find "$r/public/targets" -name '*b.bin' -type f -print0)
[ "$n" -ge 1 ] || fail "no served file for payloads/b.bin found to tamper"
rc=0
tufjs ed25519 "$md" "$tmp/ed25519/refused" --target payloads/b.bin 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/err" >&2; fail "tampered payload: tuf-js exit $rc, expected 1"; }
if [ -e "$tmp/ed25519/refused/payloads%2Fb.bin" ]; then
	fail "tampered payload left in the target dir"
fi
echo "ed25519: tampered payload refused by tuf-js: $(tail -n1 "$tmp/err")"

echo "test-interop-tufjs-client: OK"

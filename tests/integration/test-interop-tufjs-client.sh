#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Interoperability: another TUF client (tuf-js, tests/interop/client.mjs)
# against repositories published by oob-repo, served by nginx over TLS.
# For each key type oob-repo offers (ed25519, ecdsa, rsa) and once without
# consistent snapshots: init, add two payloads (targets "payloads/NAME" under
# the delegated role "releases"), tuf-js starts from 1.root.json, downloads
# both and the bytes must match. On the ed25519 repository, further: a payload
# added later (non-ASCII name with a space) is seen by the same client, rotated
# timestamp and root keys (oob-repo rotate-key) are followed by the existing
# client and by a fresh one from 1.root.json, and a tampered payload makes
# tuf-js fail without leaving the file in the target dir.
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
trap 'exit 1' INT TERM

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
# A payload name with a space and non-ASCII letters (percent-encoded in URLs
# and in the saved file name).
uname='notes ü 1.txt'
uname_file=$(node -e 'console.log(encodeURIComponent(process.argv[1]))' "payloads/$uname")

# NAME:oob-repo init options
for spec in "ed25519:--key-type ed25519" "ecdsa:--key-type ecdsa" "rsa:--key-type rsa" \
	"plain:--key-type ed25519 --no-consistent-snapshot"; do
	n=${spec%%:*}
	read -r -a init_opts <<<"${spec#*:}"
	r=$tmp/repo-$n
	repo --repo "$r" init "${init_opts[@]}" >/dev/null || fail "$n: oob-repo init ${init_opts[*]}"
	repo --repo "$r" add-payload "$tmp/a.tar" --name a.tar >/dev/null || fail "$n: add-payload a.tar"
	repo --repo "$r" add-payload "$tmp/b.bin" --name b.bin >/dev/null || fail "$n: add-payload b.bin"
	[ -f "$r/public/metadata/1.root.json" ] || fail "$n: no public/metadata/1.root.json"
	# Serve only the public tree (the keys stay out of the web root).
	ln -s "$r/public" "$www/$n"

	md=$tmp/$n/md dl=$tmp/$n/dl
	tufjs "$n" "$md" "$dl" --root "$r/public/metadata/1.root.json" \
		--target payloads/a.tar --target payloads/b.bin || fail "$n: tuf-js refresh and download"
	cmp "$tmp/a.tar" "$dl/payloads%2Fa.tar" || fail "$n: payloads/a.tar differs"
	cmp "$tmp/b.bin" "$dl/payloads%2Fb.bin" || fail "$n: payloads/b.bin differs"
	# The layout tuf-js used follows the root's consistent_snapshot.
	if [ "$n" = plain ]; then
		grep -q "\"GET /$n/metadata/snapshot.json HTTP/[0-9.]*\" 200 " "$NGINX_LOG" ||
			fail "$n: tuf-js did not fetch snapshot.json"
	else
		grep -Eq "\"GET /$n/targets/payloads/[0-9a-f]{64,128}\.a\.tar HTTP/[0-9.]*\" 200 " "$NGINX_LOG" ||
			fail "$n: tuf-js did not fetch a hash-prefixed target"
	fi
	echo "$n (${init_opts[*]}): tuf-js verified and downloaded payloads/a.tar and payloads/b.bin"
done

r=$tmp/repo-ed25519 md=$tmp/ed25519/md

# A later publication: the same client moves to the new versions.
repo --repo "$r" add-payload "$tmp/c.txt" --name "$uname" >/dev/null || fail "add-payload '$uname'"
tufjs ed25519 "$md" "$tmp/ed25519/dl2" --target "payloads/$uname" || fail "tuf-js after a new payload"
cmp "$tmp/c.txt" "$tmp/ed25519/dl2/$uname_file" || fail "payloads/$uname differs"
echo "ed25519: tuf-js followed a new publication (payloads/$uname)"

# keyids ROOT_FILE ROLE: the role's keyids in that root.
keyids() { node -e 'console.log(require(process.argv[1]).signed.roles[process.argv[2]].keyids.join(","))' "$1" "$2"; }

# Key rotation: each rotation is a new root, signed by the old and the new
# root keys; the existing client must walk to it, and a fresh client from
# 1.root.json through the whole chain.
if "$oobrepo" --help 2>&1 | grep -q rotate-key; then
	before=$(root_version "$md/root.json")
	for role in timestamp root; do
		old=$(keyids "$r/public/metadata/root.json" "$role")
		repo --repo "$r" rotate-key "$role" >/dev/null || fail "oob-repo rotate-key $role"
		new=$(keyids "$r/public/metadata/root.json" "$role")
		[ "$old" != "$new" ] || fail "rotate-key $role: keyids unchanged ($old)"
		tufjs ed25519 "$md" "$tmp/ed25519/dl-$role" --target payloads/a.tar ||
			fail "tuf-js after rotate-key $role"
		cmp "$tmp/a.tar" "$tmp/ed25519/dl-$role/payloads%2Fa.tar" || fail "payloads/a.tar differs after rotating $role"
	done
	after=$(root_version "$md/root.json")
	[ "$after" -ge $((before + 2)) ] || fail "root version did not advance twice after two rotations ($before -> $after)"
	tufjs ed25519 "$tmp/ed25519/md-fresh" "$tmp/ed25519/dl-fresh" --root "$r/public/metadata/1.root.json" \
		--target payloads/b.bin || fail "fresh tuf-js client after the rotations"
	[ "$(root_version "$tmp/ed25519/md-fresh/root.json")" -eq "$after" ] || fail "fresh client did not reach root v$after"
	cmp "$tmp/b.bin" "$tmp/ed25519/dl-fresh/payloads%2Fb.bin" || fail "payloads/b.bin differs (fresh client)"
	echo "ed25519: tuf-js followed timestamp and root key rotations (root $before -> $after)"
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

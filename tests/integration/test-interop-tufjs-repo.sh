#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Interoperability: oobctl (our TUF client) against repositories made by
# another implementation (@tufjs/models, tests/interop/make-repo.mjs), served
# by nginx over TLS:
#   - "cs":    consistent snapshots, hash-prefixed targets, mixed key types
#              (ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256, a 2-of-2
#              threshold), lengths/hashes of metadata in snapshot
#   - "plain": no consistent snapshots, ed25519 only, versions only
# Both rotate root once (1.root.json -> 2.root.json) and carry quirks of real
# repositories (see make-repo.mjs). For each: init with 1.root.json, refresh,
# download every target (two only through delegated roles: "releases" by glob,
# "bins" by path_hash_prefixes; one with a space and non-ASCII in its path)
# and compare bytes. Then the negative side: a tampered target
# (same length, then longer), and a metadata document changed without
# re-signing, must be refused (exit 1) and leave nothing in the target dir.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
oobctl=${OOBCTL:-$root/${BUILD:-build}/bin/oobctl}
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "node is missing (run scripts/install-deps)" >&2; exit 1; }

# The npm packages, installed once and again only when the lock file changed.
if [ ! -d tests/interop/node_modules ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules ]; then
	npm ci --prefix tests/interop --no-audit --no-fund >/dev/null
	touch tests/interop/node_modules
fi

tmp=$(mktemp -d /tmp/oob-interop-repo.XXXXXX)
cleanup() {
	tests/nginx-fixture stop "$tmp/nginx" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

eval "$(tests/nginx-fixture start "$tmp/nginx")"
www=$tmp/nginx/www
node tests/interop/make-repo.mjs --out "$www/cs"
node tests/interop/make-repo.mjs --out "$www/plain" --no-consistent --keys ed25519

# Run oobctl with a timeout so a hang fails the test instead of blocking it.
tuf() { timeout 30 "$oobctl" tuf "$@"; }

# download VARIANT MDDIR TARGETDIR NAME...: oobctl download from that variant.
download() {
	local v=$1 md=$2 dir=$3; shift 3
	local names=()
	for n in "$@"; do names+=(--target-name "$n"); done
	tuf --metadata-dir "$md" --metadata-url "$NGINX_HTTPS/$v/metadata" --ca-file "$NGINX_CA" \
		"${names[@]}" --target-base-url "$NGINX_HTTPS/$v/targets" --target-dir "$dir" download
}

# 200 responses for a path in the access log (layout-independent evidence).
served() { grep -c "\"GET $1 HTTP/[0-9.]*\" 200 " "$NGINX_LOG" || true; }

for v in cs plain; do
	echo "== $v: $(tr -d '\n' <"$www/$v/info.json")"
	md=$tmp/$v/md dl=$tmp/$v/dl
	mkdir -p "$tmp/$v"
	tuf --metadata-dir "$md" init "$www/$v/metadata/1.root.json" || fail "$v: init"
	tuf --metadata-dir "$md" --metadata-url "$NGINX_HTTPS/$v/metadata" --ca-file "$NGINX_CA" refresh ||
		fail "$v: refresh"
	[ "$(served "/$v/metadata/2.root.json")" -ge 1 ] || fail "$v: 2.root.json was not fetched (root rotation)"
	grep -q "\"GET /$v/metadata/3.root.json HTTP/[0-9.]*\" 404 " "$NGINX_LOG" ||
		fail "$v: the client did not look for 3.root.json"

	# Target paths, and the file names the client saves them under.
	mapfile -t names < <(node -e 'const i = require(process.argv[1]); for (const p of [...i.targets, ...i.delegated]) console.log(p)' \
		"$www/$v/info.json")
	mapfile -t files < <(node -e 'const i = require(process.argv[1]); for (const p of [...i.targets, ...i.delegated]) console.log(encodeURIComponent(p))' \
		"$www/$v/info.json")
	[ "${#names[@]}" -eq 6 ] || fail "$v: expected 6 targets in info.json"
	download "$v" "$md" "$dl" "${names[@]}" || fail "$v: download ${names[*]}"
	for i in "${!names[@]}"; do
		cmp "$www/$v/originals/${names[$i]}" "$dl/${files[$i]}" || fail "$v: ${names[$i]} differs"
	done
	echo "$v: refresh and download of ${#names[@]} targets OK"
done

# The delegated roles' metadata was fetched under the right name in both
# layouts ("releases" by glob, "bins" by path_hash_prefixes).
[ "$(served /cs/metadata/1.releases.json)" -ge 1 ] || fail "cs: 1.releases.json not fetched"
[ "$(served /plain/metadata/releases.json)" -ge 1 ] || fail "plain: releases.json not fetched"
[ "$(served /cs/metadata/1.bins.json)" -ge 1 ] || fail "cs: 1.bins.json not fetched"
[ "$(served /plain/metadata/bins.json)" -ge 1 ] || fail "plain: bins.json not fetched"

# expect_refused VARIANT MDDIR NAME WHAT: downloading NAME must fail (exit 1)
# and leave nothing in the target dir.
expect_refused() {
	local v=$1 md=$2 n=$3 what=$4 dir=$tmp/$v/refused-$RANDOM rc=0
	download "$v" "$md" "$dir" "$n" 2>"$tmp/err" || rc=$?
	[ "$rc" -eq 1 ] || { cat "$tmp/err" >&2; fail "$v: $what: exit $rc, expected 1"; }
	if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
		fail "$v: $what: left files in the target dir: $(ls -A "$dir")"
	fi
	echo "$v: $what refused: $(tail -n1 "$tmp/err")"
}

# Same length, one byte changed, in every hash-prefixed copy.
for f in "$www"/cs/targets/sub/dir/*.nested.bin; do
	byte=X
	[ "$(od -An -c -j100 -N1 "$f" | tr -d ' ')" != X ] || byte=Y
	printf '%s' "$byte" | dd of="$f" bs=1 seek=100 conv=notrunc status=none
	if cmp -s "$f" "$www/cs/originals/sub/dir/nested.bin"; then fail "could not tamper $f"; fi
done
expect_refused cs "$tmp/cs/md" sub/dir/nested.bin "tampered target (same length)"

# Longer than signed (endless data).
printf 'extra bytes\n' >>"$www/plain/targets/payloads/delegated.tar"
expect_refused plain "$tmp/plain/md" payloads/delegated.tar "tampered target (longer)"

# Metadata changed without re-signing: "custom" of hello.txt in targets.json
# (plain: snapshot lists versions only, so only the signature catches it).
# A fresh client must refuse to download through it.
sed -i 's/"build": 42/"build": 43/' "$www/plain/metadata/targets.json"
grep -q '"build": 43' "$www/plain/metadata/targets.json" || fail "could not tamper targets.json"
tuf --metadata-dir "$tmp/plain/md-fresh" init "$www/plain/metadata/1.root.json" || fail "plain: init (fresh)"
expect_refused plain "$tmp/plain/md-fresh" hello.txt "targets.json changed without re-signing"

echo "test-interop-tufjs-repo: OK"

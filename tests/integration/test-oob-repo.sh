#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# oob-repo end to end: init a repository, add a payload, a patch manifest and
# a helpdesk order, check the key files (0600 in a 0700 folder, whatever the
# umask) and that no key material is ever printed, check the public/ layout,
# then serve public/ with nginx (TLS) and read it with `oobctl tuf`:
# downloads byte-identical, a client follows timestamp and root rotations
# (root chain 1 -> 2 -> 3) and refreshes. Refused: a manifest with a schema
# error (the message names line and column), a stale order sequence, adding
# to a folder that is not a repository, init over an existing one, usage
# errors (exit 2). An interrupted publication is finished by the next command.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=$root/${BUILD:-build}/bin
oobrepo=${OOB_REPO:-$bin/oob-repo}
oobctl=${OOBCTL:-$bin/oobctl}
[ -x "$oobrepo" ] || { echo "oob-repo not built: $oobrepo (run make)" >&2; exit 1; }
[ -x "$oobctl" ] || { echo "oobctl not built: $oobctl (run make)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/oob-repo-test.XXXXXX)
cleanup() {
	tests/nginx-fixture stop "$tmp/nginx" >/dev/null 2>&1 || true
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

r=$tmp/repo
log=$tmp/all-output          # everything oob-repo ever printed, checked for key material

# repo ARGS...: run oob-repo, output kept in $tmp/out (and appended to $log).
repo() {
	local rc=0
	timeout 60 "$oobrepo" "$@" >"$tmp/out" 2>&1 || rc=$?
	cat "$tmp/out" >>"$log"
	return $rc
}
# refused EXIT_CODE PATTERN ARGS...: oob-repo must exit with that code and say PATTERN.
refused() {
	local want=$1 pattern=$2 rc=0; shift 2
	repo "$@" || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$tmp/out" >&2; fail "oob-repo $*: exit $rc, expected $want"; }
	grep -qE -- "$pattern" "$tmp/out" || { cat "$tmp/out" >&2; fail "oob-repo $*: message lacks '$pattern'"; }
}
mode() { stat -c %a "$1"; }
json() { node -e "const d=JSON.parse(require('fs').readFileSync(0,'utf8')); console.log($1)"; }
status() { repo --repo "$r" status --json || fail "status"; json "$1" <"$tmp/out"; }
in_days() { date -u -d "+$1 days" +%Y-%m-%dT%H:%M:%SZ; }

# ---- init ------------------------------------------------------------------------
(umask 000 && repo --repo "$r" init) || { cat "$tmp/out" >&2; fail "init"; }
[ "$(mode "$r/keys")" = 700 ] || fail "keys/ has mode $(mode "$r/keys"), expected 700 (umask 000)"
for role in root timestamp snapshot targets releases helpdesk; do
	[ -f "$r/keys/$role.pem" ] || fail "no keys/$role.pem"
	[ "$(mode "$r/keys/$role.pem")" = 600 ] || fail "keys/$role.pem has mode $(mode "$r/keys/$role.pem")"
	grep -q -- '-----BEGIN PRIVATE KEY-----' "$r/keys/$role.pem" || fail "keys/$role.pem is not PKCS#8 PEM"
done
for f in 1.root.json root.json timestamp.json 1.snapshot.json snapshot.json 1.targets.json targets.json \
	1.releases.json releases.json 1.helpdesk.json helpdesk.json; do
	[ -f "$r/public/metadata/$f" ] || fail "init: no public/metadata/$f"
done
[ ! -e "$r/public/metadata/1.timestamp.json" ] || fail "timestamp must not be versioned"
if grep -rl 'PRIVATE KEY' "$r/public" "$r/state" >/dev/null 2>&1; then fail "private key material in public/ or state"; fi
# The delegations as the brief gives them.
json 'JSON.stringify(d.signed.delegations.roles.map(x => [x.name, x.paths, x.terminating]))' \
	<"$r/public/metadata/targets.json" >"$tmp/deleg"
grep -qF '[["releases",["manifests/*","payloads/*"],true],["helpdesk",["orders/*"],true]]' "$tmp/deleg" ||
	fail "unexpected delegations: $(cat "$tmp/deleg")"
[ "$(json 'd.signed.consistent_snapshot' <"$r/public/metadata/root.json")" = true ] || fail "consistent_snapshot"
ok "init: six keys 0600 in keys/ 0700 under umask 000, public/metadata version 1 of every role"

refused 1 'already' --repo "$r" init
refused 1 'not an oob-repo repository' --repo "$tmp/nowhere" add-payload /etc/hostname
[ ! -e "$tmp/nowhere/state" ] || fail "add-payload created a repository"
refused 2 'unknown command' --repo "$r" frobnicate
refused 2 'unknown role' --repo "$r" rotate-key janitor
refused 2 'does not take --json' --repo "$r" publish --json
refused 2 'invalid duration' --repo "$r" refresh --timestamp-expiry 3x
ok "refused: init over a repository, add to a non-repository, usage errors (exit 2)"

# ---- payload, manifest, order -------------------------------------------------------
head -c 50000 /dev/urandom >"$tmp/update.tar"
repo --repo "$r" add-payload "$tmp/update.tar" || { cat "$tmp/out" >&2; fail "add-payload"; }
grep -q 'payloads/update.tar' "$tmp/out" || fail "add-payload did not name the target"
sha=$(sha256sum "$tmp/update.tar" | cut -d' ' -f1)
cmp "$tmp/update.tar" "$r/public/targets/payloads/$sha.update.tar" || fail "hash-prefixed payload missing or differs"
cmp "$tmp/update.tar" "$r/public/targets/payloads/update.tar" || fail "plain-named payload missing or differs"
for f in 2.releases.json 2.snapshot.json; do
	[ -f "$r/public/metadata/$f" ] || fail "add-payload did not publish $f"
done
[ "$(json 'd.signed.meta["snapshot.json"].version' <"$r/public/metadata/timestamp.json")" = 2 ] ||
	fail "timestamp does not name snapshot v2"
[ "$(json 'd.signed.targets["payloads/update.tar"].hashes.sha256' <"$r/public/metadata/releases.json")" = "$sha" ] ||
	fail "releases does not list payloads/update.tar with its sha256"

cat >"$tmp/patch.yaml" <<EOF
format: oob-patch/1
id: test-2026-11
version: 1
description: integration test patch
payloads:
  - payloads/update.tar
actions:
  - extract: {payload: payloads/update.tar, dest: Windows/System32}
EOF
repo --repo "$r" add-manifest "$tmp/patch.yaml" || { cat "$tmp/out" >&2; fail "add-manifest"; }
cmp "$tmp/patch.yaml" "$r/public/targets/manifests/test-2026-11.yaml" || fail "manifest not published"

cat >"$tmp/order.yaml" <<EOF
format: oob-order/1
device: laptop-0042
sequence: 5
expires: $(in_days 2)
action: rollback
reason: "integration test"
EOF
repo --repo "$r" add-order "$tmp/order.yaml" || { cat "$tmp/out" >&2; fail "add-order"; }
cmp "$tmp/order.yaml" "$r/public/targets/orders/laptop-0042.yaml" || fail "order not published"
[ "$(status 'd.targets')" = 3 ] || fail "status: expected 3 targets"
ok "add-payload, add-manifest, add-order published under hash-prefixed and plain names"

# Refused additions.
cat >"$tmp/bad.yaml" <<EOF
format: oob-patch/1
id: test-bad
version: 1
acton: []
EOF
refused 1 "bad.yaml: line 4, column 1: .*acton" --repo "$r" add-manifest "$tmp/bad.yaml"
sed -e 's/^sequence: 5/sequence: 4/' -e 's/integration test/older/' "$tmp/order.yaml" >"$tmp/stale.yaml"
refused 1 'sequence 4 .* not greater than the published sequence 5' --repo "$r" add-order "$tmp/stale.yaml"
sed -e 's/integration test/same sequence/' "$tmp/order.yaml" >"$tmp/same.yaml"
refused 1 'not greater' --repo "$r" add-order "$tmp/same.yaml"
sed -e 's/id: test-2026-11/id: test-missing/' -e 's#payloads/update.tar#payloads/nothere.tar#g' \
	"$tmp/patch.yaml" >"$tmp/missing.yaml"
refused 1 "payload 'payloads/nothere.tar' is not in the repository" --repo "$r" add-manifest "$tmp/missing.yaml"
sed -e "s/^expires: .*/expires: 2001-01-01T00:00:00Z/" -e 's/^sequence: 5/sequence: 9/' \
	"$tmp/order.yaml" >"$tmp/expired.yaml"
refused 1 'expired' --repo "$r" add-order "$tmp/expired.yaml"
sed 's/description: integration test patch/description: changed, same version/' "$tmp/patch.yaml" >"$tmp/samever.yaml"
refused 1 'not greater than the published version 1' --repo "$r" add-manifest "$tmp/samever.yaml"
[ "$(status 'd.roles.helpdesk.version')" = 2 ] || fail "a refused order changed helpdesk"
ok "refused: schema error with line/column, stale and equal order sequence, missing payload, expired order, reused manifest version"

# ---- serve public/ and read it with oobctl ------------------------------------------
eval "$(tests/nginx-fixture start "$tmp/nginx")"
ln -s "$r/public" "$tmp/nginx/www/repo"
url=$NGINX_HTTPS/repo
client() {  # client MDDIR VERB [ARGS...]
	local md=$1; shift
	timeout 60 "$oobctl" tuf --ca-file "$NGINX_CA" --metadata-dir "$md" --metadata-url "$url/metadata" "$@"
}
download() {  # download MDDIR DESTDIR TARGET...
	local md=$1 dest=$2 a=(); shift 2
	for t in "$@"; do a+=(--target-name "$t"); done
	client "$md" --target-base-url "$url/targets" --target-dir "$dest" "${a[@]}" download
}
find_download() {  # the downloaded file for a target path, whatever name oobctl gives it
	local dest=$1 t=$2 f
	for f in "$dest/$t" "$dest/${t//\//%2F}" "$dest/$(basename "$t")"; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	fail "no downloaded file for $t in $dest: $(find "$dest" -type f | tr '\n' ' ')"
}

md=$tmp/client
timeout 30 "$oobctl" tuf --metadata-dir "$md" init "$r/public/metadata/1.root.json" >/dev/null || fail "oobctl tuf init"
download "$md" "$tmp/dl1" payloads/update.tar manifests/test-2026-11.yaml orders/laptop-0042.yaml ||
	fail "oobctl download"
cmp "$tmp/update.tar" "$(find_download "$tmp/dl1" payloads/update.tar)" || fail "downloaded payload differs"
cmp "$tmp/patch.yaml" "$(find_download "$tmp/dl1" manifests/test-2026-11.yaml)" || fail "downloaded manifest differs"
cmp "$tmp/order.yaml" "$(find_download "$tmp/dl1" orders/laptop-0042.yaml)" || fail "downloaded order differs"
grep -q "GET /repo/targets/payloads/$sha.update.tar " "$NGINX_LOG" || fail "the client did not fetch the hash-prefixed name"
ok "oobctl verified and downloaded the payload, manifest and order (byte-identical)"

# ---- rotations, a new publication, refresh -----------------------------------------------
old_ts=$(status 'd.roles.timestamp.keys[0].keyid')
repo --repo "$r" rotate-key timestamp || { cat "$tmp/out" >&2; fail "rotate-key timestamp"; }
[ -f "$r/keys/timestamp.pem.old-1" ] || fail "old timestamp key not kept"
[ "$(mode "$r/keys/timestamp.pem")" = 600 ] || fail "new timestamp key has mode $(mode "$r/keys/timestamp.pem")"
[ "$(status 'd.roles.timestamp.keys[0].keyid')" != "$old_ts" ] || fail "timestamp keyid unchanged"
(umask 000 && repo --repo "$r" rotate-key root) || { cat "$tmp/out" >&2; fail "rotate-key root"; }
[ -f "$r/keys/root.pem.old-1" ] || fail "old root key not kept"
[ "$(mode "$r/keys/root.pem")" = 600 ] || fail "new root key has mode $(mode "$r/keys/root.pem") (umask 000)"
[ -f "$r/public/metadata/3.root.json" ] || fail "no 3.root.json after two rotations"
# 3.root.json carries the signatures of both the old and the new root key.
[ "$(json 'd.signatures.length' <"$r/public/metadata/3.root.json")" = 2 ] || fail "3.root.json not signed by old and new root keys"

head -c 3000 /dev/urandom >"$tmp/second.bin"
repo --repo "$r" add-payload "$tmp/second.bin" --name second.bin --no-publish || fail "add-payload --no-publish"
[ ! -e "$r/public/targets/payloads/second.bin" ] || fail "--no-publish published the plain name"
[ "$(status 'd.roles.releases.unpublished_changes')" = true ] || fail "status does not show the unpublished change"
listed() { json "JSON.stringify(Object.keys(d.signed.targets).includes('$1'))" <"$r/public/metadata/releases.json"; }
repo --repo "$r" refresh || fail "refresh with a staged change"
[ "$(listed payloads/second.bin)" = false ] || fail "refresh published a change staged with --no-publish"
[ "$(status 'd.roles.releases.unpublished_changes')" = true ] || fail "refresh lost the staged change"
repo --repo "$r" publish || fail "publish"
[ "$(listed payloads/second.bin)" = true ] || fail "publish did not publish the staged change"
grep -q 'releases' "$tmp/out" || fail "publish did not sign releases"
before_ts=$(status 'd.roles.timestamp.version')
repo --repo "$r" refresh --timestamp-expiry 2d || fail "refresh"
[ "$(status 'd.roles.timestamp.version')" -gt "$before_ts" ] || fail "refresh did not make a new timestamp"

download "$md" "$tmp/dl2" payloads/second.bin payloads/update.tar || fail "oobctl after rotations and refresh"
cmp "$tmp/second.bin" "$(find_download "$tmp/dl2" payloads/second.bin)" || fail "second.bin differs"
[ "$(json 'd.signed.version' <"$md/root.json")" = 3 ] || fail "client did not follow the root chain to 3"
timeout 30 "$oobctl" tuf --metadata-dir "$tmp/fresh" init "$r/public/metadata/1.root.json" >/dev/null || fail "fresh init"
download "$tmp/fresh" "$tmp/dl3" payloads/update.tar || fail "fresh client after rotations"
cmp "$tmp/update.tar" "$(find_download "$tmp/dl3" payloads/update.tar)" || fail "fresh client: payload differs"
ok "rotate-key timestamp and root, publish, refresh: existing and fresh clients follow root 1 -> 2 -> 3"

# ---- remove, and an interrupted publication ---------------------------------------------
refused 1 'manifests/test-2026-11.yaml names it' --repo "$r" remove payloads/update.tar
repo --repo "$r" remove payloads/second.bin || fail "remove"
[ ! -e "$r/public/targets/payloads/second.bin" ] || fail "removed target still served under its plain name"
rc=0; download "$md" "$tmp/dl4" payloads/second.bin 2>/dev/null || rc=$?
[ "$rc" -ne 0 ] || fail "the client still downloads a removed target"
refused 1 'no such target' --repo "$r" remove payloads/second.bin

# As if oob-repo died after committing state but before writing timestamp.json.
cp "$r/public/metadata/timestamp.json" "$tmp/ts-before"
rm "$r/public/metadata/timestamp.json" "$r/public/metadata/snapshot.json"
repo --repo "$r" status || fail "status after an interrupted publication"
grep -q 'interrupted publication' "$tmp/out" || fail "the interrupted publication was not noticed"
cmp "$tmp/ts-before" "$r/public/metadata/timestamp.json" || fail "timestamp.json not rewritten identically"
download "$md" "$tmp/dl5" payloads/update.tar || fail "client after recovery"
ok "remove; an interrupted publication is finished by the next command"

# ---- every other role's key, an interrupted rotation, public/ rebuilt --------------------
printf 'third\n' >"$tmp/third.txt"
repo --repo "$r" add-payload "$tmp/third.txt" --no-publish || fail "add-payload third.txt --no-publish"
for role in snapshot targets releases helpdesk; do
	old=$(status "d.roles.$role.keys[0].keyid")
	repo --repo "$r" rotate-key "$role" --key-type ecdsa || { cat "$tmp/out" >&2; fail "rotate-key $role"; }
	[ "$(status "d.roles.$role.keys[0].keyid")" != "$old" ] || fail "$role keyid unchanged"
	[ "$(status "d.roles.$role.keys[0].scheme")" = ecdsa-sha2-nistp256 ] || fail "$role key is not ecdsa"
done
[ "$(listed payloads/third.txt)" = false ] || fail "rotate-key releases published a staged change"
download "$md" "$tmp/dl6" payloads/update.tar orders/laptop-0042.yaml || fail "client after rotating every role"
repo --repo "$r" publish || fail "publish after the rotations"
[ "$(listed payloads/third.txt)" = true ] || fail "the staged change was lost by the rotations"
cmp "$tmp/order.yaml" "$(find_download "$tmp/dl6" orders/laptop-0042.yaml)" || fail "order differs after rotations"

# Died before renaming keys/ROLE.pem.new after the commit: the next command finishes the rename.
mv "$r/keys/helpdesk.pem" "$r/keys/helpdesk.pem.new"
cp -p "$r/keys/helpdesk.pem.old-1" "$r/keys/helpdesk.pem"
repo --repo "$r" status || fail "status after an interrupted rotation"
grep -q 'Finishing the interrupted rotation of the helpdesk key' "$tmp/out" || fail "interrupted rotation not finished"
[ ! -e "$r/keys/helpdesk.pem.new" ] || fail "keys/helpdesk.pem.new left after recovery"
[ -f "$r/keys/helpdesk.pem.old-2" ] || fail "the replaced helpdesk key was not kept"
# Died before the commit: the new key was never listed and is discarded.
cp -p "$r/keys/releases.pem.old-1" "$r/keys/timestamp.pem.new"
repo --repo "$r" refresh || fail "refresh after an uncommitted rotation"
grep -q 'Discarding' "$tmp/out" || fail "uncommitted key not discarded"
[ ! -e "$r/keys/timestamp.pem.new" ] || fail "keys/timestamp.pem.new left behind"

# public/ is derived: deleted, it is rebuilt, with the target files.
rm -rf "$r/public"
repo --repo "$r" publish || fail "publish after public/ was deleted"
cmp "$tmp/update.tar" "$r/public/targets/payloads/$sha.update.tar" || fail "payload not rebuilt in public/"
download "$md" "$tmp/dl7" payloads/update.tar || fail "client after public/ was rebuilt"

# Concurrent runs wait for each other (the cron refresh and an admin).
v=$(status 'd.roles.timestamp.version')
timeout 60 "$oobrepo" --repo "$r" refresh >"$tmp/c1" 2>&1 & p1=$!
timeout 60 "$oobrepo" --repo "$r" refresh >"$tmp/c2" 2>&1 & p2=$!
wait "$p1" || fail "concurrent refresh 1: $(cat "$tmp/c1")"
wait "$p2" || fail "concurrent refresh 2: $(cat "$tmp/c2")"
cat "$tmp/c1" "$tmp/c2" >>"$log"
[ "$(status 'd.roles.timestamp.version')" = $((v + 2)) ] || fail "two concurrent refreshes did not make two timestamps"

repo --repo "$r" publish --expires releases=30d || fail "publish --expires"
exp=$(status 'd.roles.releases.expires')
[ "$(( $(date -u -d "$exp" +%s) - $(date -u +%s) ))" -le $((30 * 86400)) ] || fail "releases expiry not 30 days: $exp"
download "$md" "$tmp/dl8" payloads/update.tar || fail "client after publish --expires"
ok "rotate-key snapshot/targets/releases/helpdesk (ecdsa), interrupted rotations recovered, public/ rebuilt, concurrent runs, --expires"

# ---- ecdsa keys without consistent snapshots ------------------------------------------------
r2=$tmp/repo2
repo --repo "$r2" init --key-type ecdsa --no-consistent-snapshot --expires timestamp=2h || fail "init ecdsa"
[ "$(json 'd.signed.consistent_snapshot' <"$r2/public/metadata/root.json")" = false ] || fail "consistent_snapshot not false"
repo --repo "$r2" add-payload "$tmp/update.tar" --name u.tar || fail "add-payload (repo2)"
ln -s "$r2/public" "$tmp/nginx/www/repo2"
url=$NGINX_HTTPS/repo2
timeout 30 "$oobctl" tuf --metadata-dir "$tmp/client2" init "$r2/public/metadata/1.root.json" >/dev/null || fail "init (repo2)"
download "$tmp/client2" "$tmp/dl9" payloads/u.tar || fail "client (no consistent snapshots)"
cmp "$tmp/update.tar" "$(find_download "$tmp/dl9" payloads/u.tar)" || fail "payload differs (repo2)"
grep -q 'GET /repo2/targets/payloads/u.tar ' "$NGINX_LOG" || fail "the client did not fetch the plain name"
grep -q 'GET /repo2/metadata/snapshot.json ' "$NGINX_LOG" || fail "the client did not fetch snapshot.json"
ok "ecdsa keys, no consistent snapshots: the client reads plain names"

# ---- a new version of a manifest replaces the old one ---------------------------------------
sed -e 's/^version: 1/version: 2/' -e 's/integration test patch/second version/' "$tmp/patch.yaml" >"$tmp/patch2.yaml"
repo --repo "$r" add-manifest "$tmp/patch2.yaml" || { cat "$tmp/out" >&2; fail "add-manifest version 2"; }
cmp "$tmp/patch2.yaml" "$r/public/targets/manifests/test-2026-11.yaml" || fail "manifest version 2 not published"
ok "a manifest's next version replaces it"

# ---- no key material was ever printed ------------------------------------------------------
for f in "$r"/keys/*.pem*; do
	grep -v -- '-----' "$f"
done >"$tmp/key-lines"
[ -s "$tmp/key-lines" ] || fail "no key lines to look for"
if grep -qF -f "$tmp/key-lines" "$log"; then fail "private key material appeared in oob-repo's output"; fi
if grep -q 'PRIVATE KEY' "$log"; then fail "a PEM header appeared in oob-repo's output"; fi
ok "no key material in anything oob-repo printed"

echo "test-oob-repo: OK"

// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Build a TUF repository with @tufjs/models only (keys from node:crypto), laid
// out for a static web server, to test that oobctl accepts what another TUF
// implementation publishes.
//
//   node make-repo.mjs --out DIR [--no-consistent] [--keys mixed|ed25519]
//
// DIR/metadata/   1.root.json 2.root.json root.json timestamp.json and
//                 N.snapshot.json N.targets.json N.releases.json (consistent
//                 snapshots) or snapshot.json targets.json releases.json
// DIR/targets/    target files, "HASH.NAME" for every listed hash (consistent)
//                 or "NAME"
// DIR/originals/  the target files under their target paths, for cmp
// DIR/info.json   {"consistent_snapshot", "keys", "targets": [paths], "delegated": [paths]}
//
// Root is rotated once: 1.root.json (root key A) -> 2.root.json (root key B,
// signed by A and B). Delegations: "releases" (paths ["payloads/*"],
// terminating) and "bins" (path_hash_prefixes). Quirks of real repositories
// a client must take: a legacy timestamp key with "keyid_hash_algorithms"
// (keyid over that object), a signature by an unknown key on timestamp, an
// unrecognized field in targets, non-ASCII text and a newline in "custom". Key types with --keys mixed: root, timestamp ed25519;
// snapshot ecdsa-sha2-nistp256 (keytype "ecdsa"); targets threshold 2 of
// {ed25519, ecdsa (keytype "ecdsa-sha2-nistp256")};
// the delegated role "releases" (paths ["payloads/*"]) rsassa-pss-sha256.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const {
        Metadata, Root, Timestamp, Snapshot, Targets, Key, Signature, MetaFile, TargetFile,
} = require('@tufjs/models');
const { Delegations } = require('@tufjs/models/dist/delegations');
const { DelegatedRole, Role } = require('@tufjs/models/dist/role');
const { canonicalize } = require('@tufjs/canonical-json');

function usage() {
        console.error('usage: make-repo.mjs --out DIR [--no-consistent] [--keys mixed|ed25519]');
        process.exit(2);
}

let out = null;
let consistent = true;
let keyMode = 'mixed';
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
        if (argv[i] === '--out' && i + 1 < argv.length)
                out = argv[++i];
        else if (argv[i] === '--no-consistent')
                consistent = false;
        else if (argv[i] === '--keys' && i + 1 < argv.length)
                keyMode = argv[++i];
        else
                usage();
}
if (!out || !['mixed', 'ed25519'].includes(keyMode))
        usage();

// ---- keys -------------------------------------------------------------------

// A signer: the public Key as metadata lists it plus a sign(bytes) function
// returning a Signature, which is what Metadata.sign() takes.
function makeSigner(type, legacyName = false, legacyKeyid = false) {
        let keytype, scheme, pub, signFn;
        if (type === 'ed25519') {
                const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
                const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
                keytype = 'ed25519';
                scheme = 'ed25519';
                pub = raw.toString('hex');
                signFn = (data) => crypto.sign(null, data, privateKey);
        } else if (type === 'ecdsa') {
                const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
                // securesystemslib's current keytype, or the older one.
                keytype = legacyName ? 'ecdsa-sha2-nistp256' : 'ecdsa';
                scheme = 'ecdsa-sha2-nistp256';
                pub = publicKey.export({ format: 'pem', type: 'spki' });
                // DER ECDSA-Sig-Value over SHA-256 (node's default dsaEncoding).
                signFn = (data) => crypto.sign('sha256', data, privateKey);
        } else if (type === 'rsa') {
                const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 3072 });
                keytype = 'rsa';
                scheme = 'rsassa-pss-sha256';
                pub = publicKey.export({ format: 'pem', type: 'spki' });
                signFn = (data) => crypto.sign('sha256', data, {
                        key: privateKey,
                        padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
                        saltLength: 32,
                });
        } else {
                throw new Error(`unknown key type ${type}`);
        }
        const keyval = { public: pub };
        // Older python-tuf keys (still in Sigstore's root) carry
        // "keyid_hash_algorithms", and their keyid hashes the object with it:
        // a client must take keyids as listed, not recompute them.
        const extra = legacyKeyid ? { keyid_hash_algorithms: ['sha256', 'sha512'] } : {};
        const keyID = crypto.createHash('sha256')
                .update(canonicalize({ keytype, keyval, scheme, ...extra }))
                .digest('hex');
        const key = new Key({ keyID, keyType: keytype, scheme, keyVal: keyval, unrecognizedFields: extra });
        const signer = (data) => new Signature({ keyID, sig: signFn(data).toString('hex') });
        return { key, signer };
}

const mixed = keyMode === 'mixed';
const keys = {
        rootA: makeSigner('ed25519'),
        rootB: makeSigner('ed25519'),
        timestamp: makeSigner('ed25519', false, true),
        snapshot: makeSigner(mixed ? 'ecdsa' : 'ed25519'),
        targets1: makeSigner('ed25519'),
        targets2: makeSigner(mixed ? 'ecdsa' : 'ed25519', true),
        releases: makeSigner(mixed ? 'rsa' : 'ed25519'),
        bins: makeSigner('ed25519'),
        stranger: makeSigner('ed25519'),
};

// ---- target files -------------------------------------------------------------

const topTargets = {
        'hello.txt': Buffer.from('hello from a tuf-js repository\n'),
        'empty.txt': Buffer.alloc(0),
        'sub/dir/nested.bin': crypto.randomBytes(70000),
        // Non-ASCII and a space: percent-encoded in URLs and file names.
        'docs/notes ü 1.txt': Buffer.from('notes\n'),
};
const delegatedTargets = {
        'payloads/delegated.tar': crypto.randomBytes(5000),
};
// Delegated to "bins" by path_hash_prefixes (not by a glob).
const binsPath = 'bins/by-hash-prefix.txt';
const binsTargets = { [binsPath]: Buffer.from('found through path_hash_prefixes\n') };

const metaDir = path.join(out, 'metadata');
const targetsDir = path.join(out, 'targets');
const originalsDir = path.join(out, 'originals');
fs.rmSync(out, { recursive: true, force: true });
for (const d of [metaDir, targetsDir, originalsDir])
        fs.mkdirSync(d, { recursive: true });

function hashesOf(data) {
        return {
                sha256: crypto.createHash('sha256').update(data).digest('hex'),
                sha512: crypto.createHash('sha512').update(data).digest('hex'),
        };
}

// Writes the target for HTTP and returns its TargetFile. With consistent
// snapshots a copy is written for every listed hash, as the specification
// lets a client pick any of them.
function publishTarget(targetPath, data, custom) {
        const hashes = hashesOf(data);
        const { dir, base } = path.posix.parse(targetPath);
        fs.mkdirSync(path.join(targetsDir, dir), { recursive: true });
        const names = consistent ? Object.values(hashes).map((h) => `${h}.${base}`) : [base];
        for (const n of names)
                fs.writeFileSync(path.join(targetsDir, dir, n), data);
        fs.mkdirSync(path.join(originalsDir, dir), { recursive: true });
        fs.writeFileSync(path.join(originalsDir, targetPath), data);
        const unrecognizedFields = custom ? { custom } : undefined;
        return new TargetFile({ path: targetPath, length: data.length, hashes, unrecognizedFields });
}

// ---- metadata -------------------------------------------------------------------

const expires = new Date(Date.now() + 30 * 86400 * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const specVersion = '1.0.31';

function writeMetadata(name, md) {
        // Pretty-printed, not canonical, as python-tuf writes it by default:
        // a client must canonicalize "signed" itself to check signatures.
        const text = JSON.stringify(md.toJSON(), null, 1) + '\n';
        fs.writeFileSync(path.join(metaDir, name), text);
        return Buffer.from(text);
}

function metaFileFor(data, version, withHashes) {
        if (!withHashes)
                return new MetaFile({ version });
        return new MetaFile({
                version,
                length: data.length,
                hashes: { sha256: crypto.createHash('sha256').update(data).digest('hex') },
        });
}

// Delegated role "releases".
const releases = new Targets({ version: 1, specVersion, expires });
for (const [p, data] of Object.entries(delegatedTargets))
        releases.addTarget(publishTarget(p, data));
const releasesMd = new Metadata(releases);
releasesMd.sign(keys.releases.signer);
const releasesBytes = writeMetadata(consistent ? '1.releases.json' : 'releases.json', releasesMd);

// Delegated role "bins" (path_hash_prefixes).
const bins = new Targets({ version: 1, specVersion, expires });
for (const [p, data] of Object.entries(binsTargets))
        bins.addTarget(publishTarget(p, data));
const binsMd = new Metadata(bins);
binsMd.sign(keys.bins.signer);
const binsBytes = writeMetadata(consistent ? '1.bins.json' : 'bins.json', binsMd);
const binsPrefix = crypto.createHash('sha256').update(binsPath).digest('hex').slice(0, 4);

// Top-level targets: delegates payloads/* to releases; one target carries a
// "custom" object with non-ASCII text and a newline (canonical JSON leaves
// both unescaped), and the signed part has an unrecognized field, which a
// client must keep in what it canonicalizes.
const delegations = new Delegations({
        keys: {
                [keys.releases.key.keyID]: keys.releases.key,
                [keys.bins.key.keyID]: keys.bins.key,
        },
        roles: {
                releases: new DelegatedRole({
                        name: 'releases',
                        keyIDs: [keys.releases.key.keyID],
                        threshold: 1,
                        terminating: true,
                        paths: ['payloads/*'],
                }),
                bins: new DelegatedRole({
                        name: 'bins',
                        keyIDs: [keys.bins.key.keyID],
                        threshold: 1,
                        terminating: false,
                        pathHashPrefixes: ['0000', binsPrefix],
                }),
        },
});
const targets = new Targets({
        version: 1, specVersion, expires, delegations,
        unrecognizedFields: { x_interop_note: 'made by tests/interop/make-repo.mjs' },
});
for (const [p, data] of Object.entries(topTargets)) {
        const custom = p === 'hello.txt'
                ? { description: 'Grüße, 日本語\nsecond line "quoted" \\ backslash', build: 42 }
                : undefined;
        targets.addTarget(publishTarget(p, data, custom));
}
const targetsMd = new Metadata(targets);
targetsMd.sign(keys.targets1.signer);
targetsMd.sign(keys.targets2.signer);
const targetsBytes = writeMetadata(consistent ? '1.targets.json' : 'targets.json', targetsMd);

// Snapshot: lengths and hashes of targets metadata only in the consistent
// variant (both forms are valid).
const snapshot = new Snapshot({
        version: 1, specVersion, expires,
        meta: {
                'targets.json': metaFileFor(targetsBytes, 1, consistent),
                'releases.json': metaFileFor(releasesBytes, 1, consistent),
                'bins.json': metaFileFor(binsBytes, 1, consistent),
        },
});
const snapshotMd = new Metadata(snapshot);
snapshotMd.sign(keys.snapshot.signer);
const snapshotBytes = writeMetadata(consistent ? '1.snapshot.json' : 'snapshot.json', snapshotMd);

const timestamp = new Timestamp({
        version: 1, specVersion, expires,
        snapshotMeta: metaFileFor(snapshotBytes, 1, true),
});
const timestampMd = new Metadata(timestamp);
timestampMd.sign(keys.timestamp.signer);
// A signature by a key nobody delegated to: ignored, never counted.
timestampMd.sign(keys.stranger.signer);
writeMetadata('timestamp.json', timestampMd);

// Root v1 (root key A) and v2 (root key B), v2 signed by both.
function makeRoot(version, rootKey) {
        const allKeys = {};
        const roles = {};
        const assign = (role, signers, threshold) => {
                for (const s of signers)
                        allKeys[s.key.keyID] = s.key;
                roles[role] = new Role({ keyIDs: signers.map((s) => s.key.keyID), threshold });
        };
        assign('root', [rootKey], 1);
        assign('timestamp', [keys.timestamp], 1);
        assign('snapshot', [keys.snapshot], 1);
        assign('targets', [keys.targets1, keys.targets2], 2);
        return new Root({
                version, specVersion, expires, keys: allKeys, roles, consistentSnapshot: consistent,
        });
}
const root1 = new Metadata(makeRoot(1, keys.rootA));
root1.sign(keys.rootA.signer);
writeMetadata('1.root.json', root1);
const root2 = new Metadata(makeRoot(2, keys.rootB));
root2.sign(keys.rootA.signer);
root2.sign(keys.rootB.signer);
writeMetadata('2.root.json', root2);
writeMetadata('root.json', root2);

fs.writeFileSync(path.join(out, 'info.json'), JSON.stringify({
        consistent_snapshot: consistent,
        keys: keyMode,
        targets: Object.keys(topTargets),
        delegated: [...Object.keys(delegatedTargets), ...Object.keys(binsTargets)],
}, null, 1) + '\n');

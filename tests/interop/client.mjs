// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A tuf-js client, to test that another TUF implementation accepts what
// oob-repo publishes.
//
//   node client.mjs --metadata-dir DIR --metadata-url URL
//                   [--root TRUSTED_ROOT_FILE] [--target-base-url URL
//                   --target-dir DIR --target NAME [--target NAME ...]]
//
// --root copies the trusted root to DIR/root.json first (tuf-js starts from
// there). Refreshes the metadata, then downloads each target into target-dir
// under its percent-encoded path ("payloads/a.tar" -> "payloads%2Fa.tar").
// HTTPS trusts the system CAs plus NODE_EXTRA_CA_CERTS (set it to the test CA).
// Exit 0 on success, 1 on any failure (message on stderr), 2 on usage errors.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Updater } = require('tuf-js');

function usage() {
        console.error('usage: client.mjs --metadata-dir DIR --metadata-url URL [--root FILE]\n' +
                '                  [--target-base-url URL --target-dir DIR --target NAME ...]');
        process.exit(2);
}

const opts = { targets: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const v = argv[i + 1];
        if (v === undefined)
                usage();
        if (a === '--metadata-dir')
                opts.metadataDir = v;
        else if (a === '--metadata-url')
                opts.metadataUrl = v;
        else if (a === '--root')
                opts.root = v;
        else if (a === '--target-base-url')
                opts.targetBaseUrl = v;
        else if (a === '--target-dir')
                opts.targetDir = v;
        else if (a === '--target')
                opts.targets.push(v);
        else
                usage();
        i++;
}
if (!opts.metadataDir || !opts.metadataUrl)
        usage();
if (opts.targets.length > 0 && (!opts.targetBaseUrl || !opts.targetDir))
        usage();

async function main() {
        fs.mkdirSync(opts.metadataDir, { recursive: true });
        if (opts.root)
                fs.copyFileSync(opts.root, path.join(opts.metadataDir, 'root.json'));

        const updater = new Updater({
                metadataDir: opts.metadataDir,
                metadataBaseUrl: opts.metadataUrl,
                targetBaseUrl: opts.targetBaseUrl,
                targetDir: opts.targetDir,
                config: { fetchRetry: 0, fetchTimeout: 15000 },
        });
        await updater.refresh();
        const root = JSON.parse(fs.readFileSync(path.join(opts.metadataDir, 'root.json'), 'utf8'));
        console.log(`refreshed: root version ${root.signed.version}`);

        if (opts.targets.length > 0)
                fs.mkdirSync(opts.targetDir, { recursive: true });
        for (const name of opts.targets) {
                const info = await updater.getTargetInfo(name);
                if (!info)
                        throw new Error(`target ${name} not found in the trusted metadata`);
                const file = await updater.downloadTarget(info);
                console.log(`downloaded ${name} -> ${file} (${info.length} bytes)`);
        }
}

main().then(() => process.exit(0), (err) => {
        console.error(`client.mjs: ${err?.name ?? 'Error'}: ${err?.message ?? err}`);
        process.exit(1);
});

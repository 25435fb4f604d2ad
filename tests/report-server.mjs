// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A small report server for tests and `make demo`: receives oobd's status
// reports the way a fleet endpoint would, on 127.0.0.1 only.
//
//   node tests/report-server.mjs [--port N] [--cert PEM --key PEM] [--store FILE]
//                                [--fail N] [--fail-status S] [--hang N] [--max-seconds S]
//
// Prints one line when listening (port 0 picks a free one):
//   REPORT_SERVER=http://127.0.0.1:PORT PID=PID
//
//   POST /reports   a JSON object, Content-Type application/json (else 415;
//                   not an object: 400). Its idempotency key is the
//                   Idempotency-Key header, else the body's "idempotency_key",
//                   else the query's "key"; none, or a body key that differs
//                   from the query's: 400. A new key is appended to FILE as one
//                   JSON line and answered 201; a key already stored is
//                   answered 200 and not stored again.
//   GET /reports    the stored reports, a JSON array in arrival order
//   GET /requests   every request seen: [{method, url, key, content_type, status}]
//                   (status null for a request left hanging)
//
// --fail N: the first N POSTs are answered --fail-status (default 503)
// without storing anything. --hang N: the N POSTs after those are stored
// but never answered, as when a response is lost on the way back (the
// client's retry must then be recognised as a duplicate). The store file is
// read at start, so a restarted server still knows what it has. The server
// exits on SIGTERM/SIGINT, when the process that started it is gone, and by
// itself after --max-seconds (default 300), so that a broken test never
// leaves it behind.

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const opts = { port: 0, cert: null, key: null, store: null, fail: 0, failStatus: 503, hang: 0, maxSeconds: 300 };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
        const a = args[i], v = args[i + 1];
        const num = () => {
                const n = Number(v);
                if (!Number.isInteger(n) || n < 0) usage(`${a} needs a number`);
                i++;
                return n;
        };
        const str = () => {
                if (v === undefined) usage(`${a} needs a value`);
                i++;
                return v;
        };
        switch (a) {
        case '--port': opts.port = num(); break;
        case '--cert': opts.cert = str(); break;
        case '--key': opts.key = str(); break;
        case '--store': opts.store = str(); break;
        case '--fail': opts.fail = num(); break;
        case '--fail-status': opts.failStatus = num(); break;
        case '--hang': opts.hang = num(); break;
        case '--max-seconds': opts.maxSeconds = num(); break;
        default: usage(`unknown argument ${a}`);
        }
}
if (!opts.cert !== !opts.key)
        usage('--cert and --key go together');

function usage(msg) {
        process.stderr.write(`report-server: ${msg}\n`);
        process.exit(2);
}

const MAX_BODY = 1024 * 1024;
const stored = [];      // parsed reports, arrival order
const keys = new Set();
const requests = [];
let posts = 0;

if (opts.store && fs.existsSync(opts.store)) {
        for (const line of fs.readFileSync(opts.store, 'utf8').split('\n')) {
                if (!line) continue;
                const r = JSON.parse(line);
                stored.push(r.report);
                keys.add(r.key);
        }
}

function answer(res, rec, status, obj) {
        rec.status = status;
        const body = JSON.stringify(obj) + '\n';
        res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
}

function handle(req, res) {
        const url = new URL(req.url, 'http://127.0.0.1');
        const rec = { method: req.method, url: req.url, key: null, content_type: req.headers['content-type'] ?? null,
                      status: null };
        requests.push(rec);

        if (req.method === 'GET' && url.pathname === '/reports')
                return answer(res, rec, 200, stored);
        if (req.method === 'GET' && url.pathname === '/requests')
                return answer(res, rec, 200, requests);
        if (url.pathname !== '/reports')
                return answer(res, rec, 404, { error: 'not found' });
        if (req.method !== 'POST')
                return answer(res, rec, 405, { error: 'method not allowed' });

        const chunks = [];
        let size = 0, tooBig = false;
        req.on('data', (c) => {
                size += c.length;
                if (size > MAX_BODY) tooBig = true;
                else chunks.push(c);
        });
        req.on('end', () => {
                const n = ++posts;

                if (tooBig)
                        return answer(res, rec, 413, { error: 'too large' });
                if (n <= opts.fail)
                        return answer(res, rec, opts.failStatus, { error: `failing request ${n} on purpose` });
                if (!/^application\/json\b/.test(rec.content_type ?? ''))
                        return answer(res, rec, 415, { error: 'Content-Type must be application/json' });
                let report;
                try {
                        report = JSON.parse(Buffer.concat(chunks).toString('utf8'));
                } catch {
                        return answer(res, rec, 400, { error: 'not JSON' });
                }
                if (report === null || typeof report !== 'object' || Array.isArray(report))
                        return answer(res, rec, 400, { error: 'not a JSON object' });
                const q = url.searchParams.get('key');
                const b = typeof report.idempotency_key === 'string' ? report.idempotency_key : null;
                const key = req.headers['idempotency-key'] ?? b ?? q;
                rec.key = key;
                if (!key)
                        return answer(res, rec, 400, { error: 'no idempotency key' });
                if (b !== null && q !== null && b !== q)
                        return answer(res, rec, 400, { error: 'body and query keys differ' });

                const duplicate = keys.has(key);
                if (!duplicate) {
                        keys.add(key);
                        stored.push(report);
                        if (opts.store)
                                fs.appendFileSync(opts.store, JSON.stringify({ key, report }) + '\n');
                }
                if (n <= opts.fail + opts.hang)
                        return; // stored, never answered: the response is "lost"
                answer(res, rec, duplicate ? 200 : 201, { status: duplicate ? 'duplicate' : 'stored', key });
        });
}

const server = opts.cert
        ? https.createServer({ cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) }, handle)
        : http.createServer(handle);

server.listen(opts.port, '127.0.0.1', () => {
        const scheme = opts.cert ? 'https' : 'http';
        process.stdout.write(`REPORT_SERVER=${scheme}://127.0.0.1:${server.address().port} PID=${process.pid}\n`);
});
server.on('error', (e) => {
        process.stderr.write(`report-server: ${e.message}\n`);
        process.exit(1);
});

const quit = () => process.exit(0);
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
setTimeout(quit, opts.maxSeconds * 1000).unref();
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) quit(); }, 500).unref();

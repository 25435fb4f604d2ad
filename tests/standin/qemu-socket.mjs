// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Talk to a QEMU started by hand (no libvirt), for tests of the stand-in:
//
//   node qemu-socket.mjs qga SOCKET SECONDS JSON
//       Synchronise with the guest agent (guest-sync-delimited), send one
//       command, print its reply line. guest-shutdown and the other commands
//       that never reply print nothing. Exit 1 when the agent did not answer
//       within SECONDS.
//   node qemu-socket.mjs qmp SOCKET SECONDS EVENT [--cont]
//       Connect to QMP (retrying until the socket exists), enter command
//       mode, send "cont" with --cont (for a QEMU started with -S, so that no
//       event can come before we listen), and print every event, one JSON
//       line each, up to EVENT. Exit 1 when EVENT did not come within
//       SECONDS or QEMU closed the socket first.
import net from 'node:net';

const [mode, path, seconds, arg, flag] = process.argv.slice(2);
if (!['qga', 'qmp'].includes(mode) || !path || !(Number(seconds) > 0) || !arg) {
	console.error('usage: qemu-socket.mjs qga SOCKET SECONDS JSON | qmp SOCKET SECONDS EVENT [--cont]');
	process.exit(2);
}

const deadline = Date.now() + Number(seconds) * 1000;
setTimeout(() => {
	console.error(`qemu-socket: ${mode} ${path}: nothing within ${seconds} s`);
	process.exit(1);
}, Number(seconds) * 1000);

function connect() {
	return new Promise((resolve) => {
		const attempt = () => {
			const s = net.createConnection(path);
			s.once('connect', () => resolve(s));
			s.once('error', () => {
				s.destroy();
				if (Date.now() < deadline) setTimeout(attempt, 100);
			});
		};
		attempt();
	});
}

// Split a byte stream into JSON lines; guest-sync-delimited answers after a
// 0xFF byte that tells the client to drop whatever came before.
function lines(sock, onLine) {
	let buf = Buffer.alloc(0);
	sock.on('data', (chunk) => {
		buf = Buffer.concat([buf, chunk]);
		const ff = buf.lastIndexOf(0xff);
		if (ff >= 0) buf = buf.subarray(ff + 1);
		let nl;
		while ((nl = buf.indexOf(0x0a)) >= 0) {
			const text = buf.subarray(0, nl).toString('utf8').trim();
			buf = buf.subarray(nl + 1);
			if (!text) continue;
			let msg;
			try {
				msg = JSON.parse(text);
			} catch {
				continue;
			}
			onLine(msg, text);
		}
	});
}

const sock = await connect();
let quietExit = false;
if (mode === 'qga') {
	// The reply is recognised by its id: an answer to a stray 0xFF or to an
	// earlier sync can come in between.
	const command = { ...JSON.parse(arg), id: `oob-${process.pid}` };
	const noReply = ['guest-shutdown', 'guest-suspend-disk', 'guest-suspend-ram', 'guest-suspend-hybrid'];
	// Each sync attempt has its own id; a late answer to an earlier one is
	// never taken for the command's reply.
	const ids = new Set();
	let synced = false;
	lines(sock, (msg, text) => {
		if (typeof msg.return === 'number' && ids.has(msg.return)) {
			if (!synced) {
				synced = true;
				sock.write(JSON.stringify(command) + '\n');
				if (noReply.includes(command.execute)) {
					// The guest may go away at once: closing is then success.
					quietExit = true;
					setTimeout(() => process.exit(0), 500);
				}
			}
			return;
		}
		if (synced && msg.id === command.id) {
			delete msg.id;
			console.log(JSON.stringify(msg));
			process.exit(0);
		}
	});
	// Resend the sync until it is answered: requests sent before the agent
	// opened its port may be lost.
	const sync = () => {
		if (synced) return;
		const id = Math.floor(Math.random() * 2 ** 31);
		ids.add(id);
		sock.write(Buffer.concat([Buffer.from([0xff]),
			Buffer.from(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } }) + '\n')]));
		setTimeout(sync, 1000);
	};
	sync();
} else {
	lines(sock, (msg, text) => {
		if (msg.QMP) {
			sock.write(JSON.stringify({ execute: 'qmp_capabilities', id: 'caps' }) + '\n');
		} else if (msg.id === 'caps' && flag === '--cont') {
			sock.write(JSON.stringify({ execute: 'cont', id: 'cont' }) + '\n');
		} else if (msg.event) {
			console.log(text);
			if (msg.event === arg) process.exit(0);
		}
	});
}
sock.on('close', () => {
	if (quietExit) process.exit(0);
	console.error(`qemu-socket: ${path} closed`);
	process.exit(1);
});

#!/usr/bin/env node
// A pomelo client built on the NetEase reference encoder (pomelo-protocol 0.1.6), run against
// `gatekit serve --listen pomelo+tcp://...` by harness/tests/peers_pomelo.rs, and over WebSocket
// (`pomelo+ws://`) by harness/tests/peers_transports.rs.
//
//   node client.js PORT                                                  # TCP, as before
//   node --experimental-websocket client.js --ws ws://127.0.0.1:PORT/ [--kick]
//
// It does what a pomelo game client does, as the official client does it: handshake
// {"sys":{"type":"js-tcp","version":"0.0.1","rsa":{}},"user":{}}, ack, waits for the server's first
// heartbeat, then heartbeats at the interval it was given; a request to echo.handler.say and its
// response; a notify; waits for a push; then stops heartbeating and waits for the gate to kick it.
//
// With --ws it connects with Node's WebSocket (undici's, global in Node 20 with
// --experimental-websocket, by default from Node 22) as pomelo's WebSocket client
// (pomelo-jsclient-websocket) does: handshake type "js-websocket", each package one binary
// message, no subprotocol. After the push it closes the WebSocket (code 1000, "bye") and prints the
// close code the gate answered with; with --kick it waits for the kick instead, as over TCP.
//
// Every step is printed as one JSON line on stdout; any failure exits 1. Bounded: 20 s in all.
'use strict';

const net = require('net');
const Protocol = require('pomelo-protocol');
const { Package, Message } = Protocol;

const argv = process.argv.slice(2);
const wsAt = argv.indexOf('--ws');
const wsUrl = wsAt >= 0 ? argv[wsAt + 1] : null;
const waitKick = !wsUrl || argv.includes('--kick');
const port = wsUrl ? 0 : Number(argv[0]);
if (wsUrl ? !/^wss?:\/\//.test(wsUrl) : !port) {
    console.error('usage: node client.js PORT | node client.js --ws ws://HOST:PORT/ [--kick]');
    process.exit(2);
}

function say(step, fields) {
    process.stdout.write(JSON.stringify(Object.assign({ step }, fields || {})) + '\n');
}

function fail(why) {
    say('failed', { why: String(why) });
    process.exit(1);
}

setTimeout(() => fail('timed out after 20 s'), 20000).unref();

// The connection: a TCP socket, or a WebSocket behind the same write/on-data interface.
let socket;
if (wsUrl) {
    if (typeof WebSocket === 'undefined') {
        fail('no global WebSocket: run node with --experimental-websocket (Node 20/21)');
    }
    const ws = new WebSocket(wsUrl);
    ws.binaryType = 'arraybuffer';
    const handlers = {};
    socket = {
        on(event, f) {
            handlers[event] = f;
        },
        write(bytes) {
            ws.send(bytes);
        },
        close() {
            ws.close(1000, 'bye');
        },
    };
    ws.onopen = () => {
        say('ws_open', { protocol: ws.protocol, extensions: ws.extensions });
        handlers.connect();
    };
    ws.onmessage = (e) => {
        if (typeof e.data === 'string') fail(`a text message: ${e.data.slice(0, 64)}`);
        handlers.data(Buffer.from(e.data));
    };
    ws.onerror = (e) => fail(`WebSocket error: ${e.message || e.error || e.type}`);
    ws.onclose = (e) => handlers.close(e);
} else {
    socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
}
let buffer = Buffer.alloc(0);
let heartbeatSecs = 0;
let heartbeatTimer = null;
let stage = 'handshake';

function send(type, body) {
    socket.write(Package.encode(type, body));
}

function sendMessage(id, type, route, body) {
    const msg = Message.encode(id, type, 0, route, Protocol.strencode(JSON.stringify(body)));
    send(Package.TYPE_DATA, msg);
}

function startHeartbeat() {
    heartbeatTimer = setInterval(() => send(Package.TYPE_HEARTBEAT), heartbeatSecs * 1000);
}

function onPackage(p) {
    switch (p.type) {
        case Package.TYPE_HANDSHAKE: {
            const answer = JSON.parse(Protocol.strdecode(p.body));
            say('handshake', { code: answer.code, heartbeat: answer.sys && answer.sys.heartbeat });
            if (answer.code !== 200) fail('handshake refused');
            heartbeatSecs = answer.sys.heartbeat;
            send(Package.TYPE_HANDSHAKE_ACK);
            stage = 'ack';
            break;
        }
        case Package.TYPE_HEARTBEAT:
            if (stage === 'ack') {
                // As the official client: heartbeats start once the server's first one arrived.
                say('first_heartbeat');
                stage = 'request';
                startHeartbeat();
                sendMessage(1, Message.TYPE_REQUEST, 'echo.handler.say', { hello: 'gatekit' });
            }
            break;
        case Package.TYPE_DATA: {
            const m = Message.decode(p.body);
            const body = Protocol.strdecode(m.body);
            if (m.type === Message.TYPE_RESPONSE) {
                say('response', { id: m.id, body: JSON.parse(body) });
                sendMessage(0, Message.TYPE_NOTIFY, 'echo.handler.say', { note: 1 });
                say('notify');
                stage = 'push';
            } else if (m.type === Message.TYPE_PUSH && stage === 'push') {
                say('push', { route: m.route, bytes: m.body.length });
                clearInterval(heartbeatTimer);
                if (waitKick) {
                    // Stop heartbeating: the gate must kick this client after two silent
                    // heartbeats.
                    stage = 'kick';
                } else {
                    // Close the WebSocket: the gate must answer the Close frame.
                    stage = 'closing';
                    socket.close();
                }
            }
            break;
        }
        case Package.TYPE_KICK: {
            const kick = JSON.parse(Protocol.strdecode(p.body));
            say('kick', { reason: kick.reason });
            stage = 'kicked';
            break;
        }
        default:
            fail(`unexpected package type ${p.type}`);
    }
}

socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    // Split complete packages (4-byte header: type, 3-byte big-endian length) and decode each with
    // pomelo-protocol.
    while (buffer.length >= 4) {
        const len = (buffer[1] << 16) | (buffer[2] << 8) | buffer[3];
        if (buffer.length < 4 + len) break;
        const one = buffer.subarray(0, 4 + len);
        buffer = buffer.subarray(4 + len);
        onPackage(Package.decode(Buffer.from(one)));
    }
});

socket.on('error', (e) => fail(e));
socket.on('close', (e) => {
    if (stage !== (waitKick ? 'kicked' : 'closing')) fail(`closed at stage ${stage}`);
    // Over WebSocket: the Close frame the gate sent, and whether the close handshake completed.
    say('closed', wsUrl ? { code: e.code, reason: e.reason, clean: e.wasClean } : {});
    process.exit(0);
});

socket.on('connect', () => {
    const type = wsUrl ? 'js-websocket' : 'js-tcp';
    const hs = { sys: { type, version: '0.0.1', rsa: {} }, user: {} };
    send(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(hs)));
});

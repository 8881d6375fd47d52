#!/usr/bin/env node
// A pomelo client built on the NetEase reference encoder (pomelo-protocol 0.1.6), run against
// `gatekit serve --listen pomelo+tcp://...` by harness/tests/peers_pomelo.rs.
//
//   node client.js PORT
//
// It does what a pomelo game client does, as the official client does it: handshake
// {"sys":{"type":"js-tcp","version":"0.0.1","rsa":{}},"user":{}}, ack, waits for the server's first
// heartbeat, then heartbeats at the interval it was given; a request to echo.handler.say and its
// response; a notify; waits for a push; then stops heartbeating and waits for the gate to kick it.
// Every step is printed as one JSON line on stdout; any failure exits 1. Bounded: 20 s in all.
'use strict';

const net = require('net');
const Protocol = require('pomelo-protocol');
const { Package, Message } = Protocol;

const port = Number(process.argv[2]);
if (!port) {
    console.error('usage: node client.js PORT');
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

const socket = net.connect({ host: '127.0.0.1', port });
socket.setNoDelay(true);
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
                // Stop heartbeating: the gate must kick this client after two silent heartbeats.
                clearInterval(heartbeatTimer);
                stage = 'kick';
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
socket.on('close', () => {
    if (stage !== 'kicked') fail(`closed at stage ${stage}`);
    say('closed');
    process.exit(0);
});

socket.on('connect', () => {
    const hs = { sys: { type: 'js-tcp', version: '0.0.1', rsa: {} }, user: {} };
    send(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(hs)));
});

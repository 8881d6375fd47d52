#!/usr/bin/env node
// Golden vectors for gatekit-codec's pomelo profile, written by the real libraries:
// pomelo-protocol 0.1.6 (Package.encode, Message.encode, Protocol.strencode) for what clients send,
// and pinus 1.7.4's own server code (HandshakeCommand, DictionaryComponent, kick and heartbeat
// commands, the connector coder) for what a pinus server sends.
//
// Writes corpus/pomelo/golden/<name>.bin (one package, as on the wire) and <name>.json (what it is,
// field by field; see corpus/pomelo/README.md), after removing the old ones. Deterministic: running
// it twice gives the same files. codec/tests/pomelo_peers.rs replays them without Node.
//
//   cd peers/pomelo && npm ci && node golden.js
//
// (pomelo-protocol prints a `new Buffer()` deprecation warning on Node 20: harmless.)
'use strict';

require('reflect-metadata');
const fs = require('fs');
const path = require('path');
const Protocol = require('pomelo-protocol');
const { Package, Message } = Protocol;
const pinusProtocol = require('pinus-protocol');
const { pinus } = require('pinus/dist/lib/pinus');
const { DictionaryComponent } = require('pinus/dist/lib/components/dictionary');
const { HandshakeCommand } = require('pinus/dist/lib/connectors/commands/handshake');
const { HeartbeatCommand } = require('pinus/dist/lib/connectors/commands/heartbeat');
const kickCommand = require('pinus/dist/lib/connectors/commands/kick');
const coder = require('pinus/dist/lib/connectors/common/coder');

const OUT = path.resolve(__dirname, '../../corpus/pomelo/golden');

const TYPE_NAMES = ['request', 'notify', 'response', 'push'];

const files = new Map();

function emit(name, bytes, desc) {
    if (files.has(name)) throw new Error('duplicate golden name ' + name);
    const buf = Buffer.from(bytes);
    const head = { name, what: desc.what, by: desc.by, type: buf[0], body_len: buf.length - 4 };
    delete desc.what;
    delete desc.by;
    files.set(name, { buf, json: Object.assign(head, desc) });
}

/** The description of a message, field by field, as pomelo-protocol's Message.decode sees it. */
function describeMessage(buf) {
    const m = Message.decode(Package.decode(buf).body);
    const compressed = !!m.compressRoute;
    const out = { type: TYPE_NAMES[m.type] };
    if (m.type === Message.TYPE_REQUEST || m.type === Message.TYPE_RESPONSE) out.id = m.id;
    if (m.type !== Message.TYPE_RESPONSE) {
        out.compressRoute = compressed;
        if (compressed) out.routeCode = m.route; else out.route = m.route;
    }
    out.gzip = !!m.compressGzip;
    out.body_hex = Buffer.from(m.body).toString('hex');
    return out;
}

function dataMessage(name, what, id, type, compressRoute, route, body, gzip) {
    const msg = body === null ? null : Protocol.strencode(body);
    const bytes = Package.encode(Package.TYPE_DATA, Message.encode(id, type, compressRoute, route, msg, gzip));
    const by = `pomelo-protocol Package.encode(TYPE_DATA, Message.encode(${id}, ${TYPE_NAMES[type]}, ` +
        `${compressRoute ? 1 : 0}, ${JSON.stringify(route)}, ${body === null ? 'null' : 'strencode(body)'}` +
        `${gzip ? ', true' : ''}))`;
    emit(name, bytes, { what, by, message: describeMessage(bytes) });
}

/** pinus's DictionaryComponent on a fixture app (handlers under app/servers, user dictionary). */
function dictionary(base, serverTypes) {
    const root = path.resolve(__dirname, 'fixtures', base);
    const servers = {};
    for (const s of serverTypes) servers[s] = [];
    const app = { getBase: () => root, get: (k) => (k === 'servers' ? servers : undefined) };
    const dict = new DictionaryComponent(app, { dict: path.join(root, 'config/dictionary.json') });
    const warn = console.warn;
    console.warn = () => {}; // it lists the routes on stderr
    dict.start(() => {});
    console.warn = warn;
    // The inputs, for the Rust side to rebuild the same dictionary.
    const user = require(path.join(root, 'config/dictionary.json'));
    const handlers = Object.values(dict.getAbbrs()).slice(0, Object.keys(dict.getAbbrs()).length - user.length);
    return { component: dict, inputs: { handlers, user } };
}

/** A fake pinus socket that resolves with the first package pinus sends on it. */
function socket() {
    let resolve;
    const sent = new Promise((r) => (resolve = r));
    return {
        sent,
        id: 1,
        state: 2,
        handshakeResponse: (buf) => resolve(buf),
        sendForce: (buf) => resolve(buf),
        sendRaw: (buf) => resolve(buf),
        disconnect: () => {},
        once: () => {},
    };
}

/** pinus's HandshakeCommand with `opts`, given the client's handshake object `msg`. */
async function pinusHandshake(opts, msg, dict) {
    pinus._app = { components: { __dictionary__: dict && dict.component } };
    const s = socket();
    new HandshakeCommand(opts).handle(s, msg);
    return s.sent;
}

function handshakeDesc(buf) {
    return { json: Buffer.from(buf.subarray(4)).toString('utf8') };
}

async function main() {
    // ---- client → server: handshake, ack, heartbeat ----------------------------------------------
    const hello = { sys: { type: 'js-tcp', version: '0.0.1', rsa: {} }, user: {} };
    emit('handshake_client_js_tcp', Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(hello))), {
        what: 'client handshake as the official TCP client sends it (PEERS.md: 01 00 00 3e + JSON)',
        by: 'pomelo-protocol Package.encode(TYPE_HANDSHAKE, strencode(JSON.stringify(handshake)))',
        handshake: handshakeDesc(Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(hello)))),
    });
    const main = dictionary('main', ['connector', 'chat', 'echo']);
    const cached = {
        sys: {
            type: 'js-websocket', version: '0.0.1', rsa: {},
            dictVersion: main.component.getVersion(), protoVersion: 0, platform: 'web',
        },
        user: { name: 'ann', 'é': [1, 2.5, null] },
    };
    const cachedBytes = Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(cached)));
    emit('handshake_client_cached_dict', cachedBytes, {
        what: 'client handshake with a cached dictVersion, a protoVersion, an extra sys key and a user object',
        by: 'pomelo-protocol Package.encode(TYPE_HANDSHAKE, strencode(JSON.stringify(handshake)))',
        handshake: handshakeDesc(cachedBytes),
    });
    emit('handshake_ack', Package.encode(Package.TYPE_HANDSHAKE_ACK), {
        what: 'handshake ack (client → server), empty body',
        by: 'pomelo-protocol Package.encode(TYPE_HANDSHAKE_ACK)',
    });

    // ---- server → client: handshake responses, by pinus's HandshakeCommand -------------------------
    const ok = await pinusHandshake({ heartbeat: 3, useDict: true }, hello, main);
    emit('handshake_server_dict', ok, {
        what: 'pinus accepts: heartbeat 3 s and the route dictionary (handler routes sorted from 1, then the user dictionary)',
        by: 'pinus HandshakeCommand({heartbeat: 3, useDict: true}).handle(socket, handshake), DictionaryComponent on fixtures/main',
        handshake: handshakeDesc(ok),
        dict: Object.assign(main.inputs, { json: JSON.stringify(main.component.getDict()), version: main.component.getVersion() }),
    });
    const same = await pinusHandshake({ heartbeat: 3, useDict: true }, cached, main);
    emit('handshake_server_dict_cached', same, {
        what: 'pinus accepts a client whose dictVersion is current: useDict without the dictionary',
        by: 'pinus HandshakeCommand({heartbeat: 3, useDict: true}).handle(socket, handshake with dictVersion)',
        handshake: handshakeDesc(same),
        dict: Object.assign({}, main.inputs, { json: JSON.stringify(main.component.getDict()), version: main.component.getVersion() }),
    });
    const odd = dictionary('odd', ['zz']);
    const oddBytes = await pinusHandshake({ heartbeat: 10, useDict: true }, hello, odd);
    emit('handshake_server_dict_odd', oddBytes, {
        what: 'pinus dictionary corner cases: UTF-16 sort (U+10000 before U+FFFF), index-like keys first in JSON, a route given twice, escapes',
        by: 'pinus HandshakeCommand({heartbeat: 10, useDict: true}), DictionaryComponent on fixtures/odd',
        handshake: handshakeDesc(oddBytes),
        dict: Object.assign(odd.inputs, { json: JSON.stringify(odd.component.getDict()), version: odd.component.getVersion() }),
    });
    const plain = await pinusHandshake({}, hello, null);
    emit('handshake_server_plain', plain, {
        what: 'pinus without heartbeat or dictionary: {"code":200,"sys":{}}',
        by: 'pinus HandshakeCommand({}).handle(socket, handshake)',
        handshake: handshakeDesc(plain),
    });
    const user = await pinusHandshake(
        { heartbeat: 3, handshake: (msg, cb) => cb(null, { uid: 7, name: 'ann' }) },
        hello,
        null,
    );
    emit('handshake_server_user', user, {
        what: 'pinus with an application handshake callback answering {uid, name}: a user object',
        by: 'pinus HandshakeCommand({heartbeat: 3, handshake: cb}).handle(socket, handshake)',
        handshake: handshakeDesc(user),
    });
    const noSys = await pinusHandshake({ heartbeat: 3 }, {}, null);
    emit('handshake_server_error_500', noSys, {
        what: 'pinus refuses a handshake without sys (also bad JSON or an empty body, parsed as {})',
        by: 'pinus HandshakeCommand({heartbeat: 3}).handle(socket, {})',
        handshake: handshakeDesc(noSys),
    });
    const old = await pinusHandshake({ heartbeat: 3, checkClient: () => false }, hello, null);
    emit('handshake_server_old_client_501', old, {
        what: 'pinus refuses a client its checkClient(type, version) finds too old',
        by: 'pinus HandshakeCommand({heartbeat: 3, checkClient: () => false}).handle(socket, handshake)',
        handshake: handshakeDesc(old),
    });

    // ---- heartbeat and kick, by pinus's commands ---------------------------------------------------
    {
        const s = socket();
        const hb = new HeartbeatCommand({ heartbeat: 3 });
        hb.handle(s);
        hb.clearTimers(s.id);
        emit('heartbeat', await s.sent, {
            what: 'heartbeat, either way (pinus echoes each client heartbeat)',
            by: 'pinus HeartbeatCommand({heartbeat: 3}).handle(socket)',
        });
    }
    for (const [name, reason, what] of [
        ['kick_bye', 'bye', 'pinus kick with reason "bye"'],
        ['kick_escapes', 'kicked: "dup" \\ login\n再见 \u0001', 'pinus kick whose reason needs JSON escapes and has non-ASCII text'],
    ]) {
        const s = socket();
        kickCommand.handle(s, reason);
        emit(name, await s.sent, {
            what,
            by: 'pinus kick.handle(socket, reason)',
            kick: { reason },
        });
    }

    // ---- data: messages by pomelo-protocol's Message.encode -----------------------------------------
    const R = Message.TYPE_REQUEST, N = Message.TYPE_NOTIFY, S = Message.TYPE_RESPONSE, P = Message.TYPE_PUSH;
    dataMessage('request_id1', 'request id 1 (PEERS.md: 04 00 00 26 | 00 01 1c <route> {"a":1})', 1, R, 0, 'connector.entryHandler.entry', '{"a":1}');
    dataMessage('request_compressed', 'request id 1, route compressed to code 1', 1, R, 1, 1, '{"a":1}');
    dataMessage('request_id_127', 'request id 127: the largest 1-byte id', 127, R, 0, 'echo.handler.say', '{}');
    dataMessage('request_id_128', 'request id 128: 2-byte varint 80 01', 128, R, 0, 'echo.handler.say', '{}');
    dataMessage('request_id_16384', 'request id 16384: 3-byte varint 80 80 01', 16384, R, 0, 'echo.handler.say', '{}');
    dataMessage('request_id_2p28', 'request id 2^28: 5-byte varint 80 80 80 80 01', 2 ** 28, R, 0, 'echo.handler.say', '{}');
    dataMessage('request_id_js_max', 'request id 2^31 - 1: the largest id pomelo-protocol encodes correctly', 2 ** 31 - 1, R, 0, 'echo.handler.say', '{}');
    dataMessage('request_empty_body', 'request with no body', 7, R, 0, 'chat.chatHandler.history', null);
    dataMessage('request_utf8_route', 'request whose route is non-ASCII UTF-8', 3, R, 0, '聊天.处理器.发送', '{"t":"你好"}');
    dataMessage('request_route_255', 'request with a 255-byte route, the longest', 9, R, 0, 'r.' + 'x'.repeat(253), '{}');
    dataMessage('notify', 'notify (flag 02), no id', 0, N, 0, 'chat.chatHandler.send', '{"text":"hi"}');
    dataMessage('notify_compressed', 'notify, route code 2 (flag 03)', 0, N, 1, 2, '{"text":"hi"}');
    dataMessage('response_id1', 'response id 1 (PEERS.md: 04 01 {"code":200,...})', 1, S, 0, null, '{"code":200,"msg":"ok"}');
    dataMessage('response_id_300', 'response id 300: varint ac 02', 300, S, 0, null, '{"code":200}');
    dataMessage('response_empty_body', 'response with no body', 2, S, 0, null, null);
    dataMessage('response_gzip', 'response with the gzip bit (flag 14); the body is carried as is', 5, S, 0, null, 'not really gzip', true);
    dataMessage('push', 'push (flag 06) with a route name', 0, P, 0, 'onChat', '{"from":"ann","text":"hi"}');
    dataMessage('push_compressed', 'push (flag 07) with route code 513 (02 01)', 0, P, 1, 513, '{}');
    dataMessage('push_empty_body', 'push with no body', 0, P, 0, 'onLeave', null);
    {
        const body = Buffer.alloc(256);
        for (let i = 0; i < 256; i++) body[i] = i;
        const bytes = Package.encode(Package.TYPE_DATA, Message.encode(0, P, 0, 'onBinary', body));
        emit('push_binary_body', bytes, {
            what: 'push whose body is the 256 byte values (protobuf bodies are binary)',
            by: 'pomelo-protocol Package.encode(TYPE_DATA, Message.encode(0, push, 0, "onBinary", bytes 00..ff))',
            message: describeMessage(bytes),
        });
    }

    // ---- data: what pinus's connector sends (coder.encode), with the dictionary --------------------
    const connector = { dictionary: main.component, connector: { useDict: true } };
    for (const [name, reqId, route, body, what] of [
        ['pinus_response', 3, 'chat.chatHandler.send', { code: 200, route: 'chat.chatHandler.send' }, 'pinus response to request 3: no route, JSON body'],
        ['pinus_push_dict', 0, 'onChat', { msg: 'hi', from: 'ann' }, 'pinus push of a route in the dictionary: compressed (flag 07)'],
        ['pinus_push_plain', 0, 'onKick', { reason: 'x' }, 'pinus push of a route not in the dictionary: by name (flag 06)'],
    ]) {
        const bytes = pinusProtocol.Package.encode(pinusProtocol.Package.TYPE_DATA, coder.encode.call(connector, reqId, route, body));
        emit(name, bytes, {
            what,
            by: `pinus coder.encode(${reqId}, ${JSON.stringify(route)}, body) with useDict, in Package.encode(TYPE_DATA, ...)`,
            message: describeMessage(bytes),
        });
    }

    fs.mkdirSync(OUT, { recursive: true });
    for (const f of fs.readdirSync(OUT)) {
        if (f.endsWith('.bin') || f.endsWith('.json')) fs.unlinkSync(path.join(OUT, f));
    }
    for (const [name, { buf, json }] of [...files].sort()) {
        fs.writeFileSync(path.join(OUT, name + '.bin'), buf);
        fs.writeFileSync(path.join(OUT, name + '.json'), JSON.stringify(json, null, 2) + '\n');
    }
    console.log(`wrote ${files.size} golden vectors to ${path.relative(process.cwd(), OUT)}`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});

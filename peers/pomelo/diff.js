#!/usr/bin/env node
// The differential peer for gatekit-codec's pomelo profile (driven by codec/tests/pomelo_node_diff.rs).
//
// Reads one JSON request per line on stdin, writes one JSON line per request on stdout, in order:
//
//   {"op":"decode_package","hex":H}   -> {"type":T,"body_hex":B|null}       pomelo-protocol Package.decode
//   {"op":"decode_message","hex":H}   -> {"id","type","compressRoute","route","gzip","body_hex"}
//                                        or {"error":E}                     pomelo-protocol Message.decode
//   {"op":"encode_message","id","type","compressRoute","route","gzip","body_hex"}
//                                     -> {"hex":H,"package_hex":P}          Message.encode (+ Package.encode)
//   {"op":"encode_package","type","body_hex"} -> {"hex":H}                  Package.encode
//   {"op":"dict","handlers":[..],"user":[..]} -> {"json":J,"version":V,"codes":{route:code}}
//
// `dict` runs the numbering of pinus 1.7.4's DictionaryComponent.start (lib/components/dictionary.ts:
// handler routes sorted with Array.prototype.sort, numbered from 1, then the user routes; the version
// is crypto md5 of JSON.stringify(dict), base64), on routes given here instead of handler files, so
// that V8's sort order, JSON.stringify's key order and escaping and Node's md5/base64 are what
// gatekit is compared with. (golden.js runs the real component on fixture handler files.)
'use strict';

const crypto = require('crypto');
const readline = require('readline');
const Protocol = require('pomelo-protocol');
const { Package, Message } = Protocol;

function hex(buf) {
    return buf ? Buffer.from(buf).toString('hex') : null;
}

function handle(req) {
    switch (req.op) {
        case 'decode_package': {
            const p = Package.decode(Buffer.from(req.hex, 'hex'));
            if (Array.isArray(p)) return { error: `${p.length} packages` };
            return { type: p.type, body_hex: hex(p.body) };
        }
        case 'decode_message': {
            const m = Message.decode(Buffer.from(req.hex, 'hex'));
            return {
                id: m.id,
                type: m.type,
                compressRoute: m.compressRoute,
                route: m.route,
                gzip: m.compressGzip,
                body_hex: hex(m.body),
            };
        }
        case 'encode_message': {
            const body = Buffer.from(req.body_hex, 'hex');
            const msg = Message.encode(req.id, req.type, req.compressRoute, req.route, body, req.gzip);
            return { hex: hex(msg), package_hex: hex(Package.encode(Package.TYPE_DATA, msg)) };
        }
        case 'encode_package': {
            const body = req.body_hex === null ? undefined : Buffer.from(req.body_hex, 'hex');
            return { hex: hex(Package.encode(req.type, body)) };
        }
        case 'dict': {
            // As pinus's DictionaryComponent.start, on the given routes.
            const routes = req.handlers.slice();
            routes.sort();
            const dict = {};
            let abbr;
            let i;
            for (i = 0; i < routes.length; i++) {
                abbr = i + 1;
                dict[routes[i]] = abbr;
            }
            abbr = routes.length + 1;
            for (i = 0; i < req.user.length; i++) {
                dict[req.user[i]] = abbr;
                abbr++;
            }
            const json = JSON.stringify(dict);
            const version = crypto.createHash('md5').update(json).digest('base64');
            return { json, version, codes: dict };
        }
        default:
            return { error: 'unknown op ' + req.op };
    }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
rl.on('line', (line) => {
    if (!line.trim()) return;
    let res;
    try {
        res = handle(JSON.parse(line));
    } catch (e) {
        res = { error: String(e && e.message ? e.message : e) };
    }
    out.push(JSON.stringify(res));
    if (out.length >= 256) process.stdout.write(out.splice(0).join('\n') + '\n');
});
rl.on('close', () => {
    if (out.length) process.stdout.write(out.join('\n') + '\n');
});

// The encoder and streaming decoder of clients/js/gatekit.js against docs/PROTOCOL.md and the
// corpus (corpus/native/golden, corpus/native/malformed). Run: node --test clients/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { Decoder, encode, utf8, json, encodeBody, STATUS, CLOSE_CODE, GatekitError } from '../gatekit.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const golden = join(root, 'corpus', 'native', 'golden');
const malformed = join(root, 'corpus', 'native', 'malformed');
const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const bytes = (s) => new TextEncoder().encode(s);

/** The packet each golden file holds, as given by its name and docs/PROTOCOL.md's examples. */
const GOLDEN = {
  handshake: { type: 'handshake', version: 1, heartbeat: 30, token: bytes('tok') },
  welcome: { type: 'welcome', version: 1, heartbeat: 30, maxFrame: 65535, sessionId: 's-1' },
  request: { type: 'request', id: 7, route: 'chat/send', body: bytes('{}') },
  request_empty_body: { type: 'request', id: 1, route: 'room/join', body: new Uint8Array(0) },
  response: { type: 'response', id: 7, status: 0, statusName: 'ok', body: bytes('ok') },
  notify: { type: 'notify', route: 'chat/typing', body: new Uint8Array(0) },
  push: { type: 'push', topic: 'room/7', body: bytes('hi') },
  ping: { type: 'ping' },
  pong: { type: 'pong' },
  close: { type: 'close', code: 5, codeName: 'kicked', reason: 'bye' },
  close_refusal_server_full: { type: 'close', code: 11, codeName: 'server full', reason: '' },
};

function goldenFiles() {
  return readdirSync(golden)
    .filter((f) => f.endsWith('.bin'))
    .sort()
    .map((f) => ({ name: f.slice(0, -4), bin: new Uint8Array(readFileSync(join(golden, f))) }));
}

function decodeAll(chunks, options) {
  const d = new Decoder(options);
  const out = [];
  for (const c of chunks) out.push(...d.drain(c));
  assert.equal(d.end(), null, 'clean end between frames');
  return out;
}

test('every golden file is known, decodes to its packet and re-encodes to the same bytes', () => {
  const files = goldenFiles();
  assert.deepEqual(files.map((f) => f.name).sort(), Object.keys(GOLDEN).sort());
  for (const { name, bin } of files) {
    const packets = decodeAll([bin]);
    assert.equal(packets.length, 1, name);
    assert.deepEqual(packets[0], GOLDEN[name], name);
    assert.equal(hex(encode(packets[0])), hex(bin), `${name}: re-encoded`);
    assert.equal(hex(encode(GOLDEN[name])), hex(bin), `${name}: encoded from fields`);
  }
});

test('encoding from the friendly forms matches the golden frames', () => {
  const g = Object.fromEntries(goldenFiles().map(({ name, bin }) => [name, hex(bin)]));
  assert.equal(hex(encode({ type: 'handshake', heartbeat: 30, token: 'tok' })), g.handshake);
  assert.equal(hex(encode({ type: 'request', id: 7, route: 'chat/send', body: {} })), g.request);
  assert.equal(hex(encode({ type: 'request', id: 7, route: 'chat/send', body: '{}' })), g.request);
  assert.equal(hex(encode({ type: 'request', id: 1, route: 'room/join' })), g.request_empty_body);
  assert.equal(hex(encode({ type: 'response', id: 7, status: 'ok', body: 'ok' })), g.response);
  assert.equal(hex(encode({ type: 'notify', route: 'chat/typing' })), g.notify);
  assert.equal(hex(encode({ type: 'push', topic: 'room/7', body: 'hi' })), g.push);
  assert.equal(hex(encode({ type: 'close', code: 'kicked', reason: 'bye' })), g.close);
  assert.equal(hex(encode({ type: 'close', code: 'server full' })), g.close_refusal_server_full);
});

test('the hex examples of docs/PROTOCOL.md decode and re-encode', () => {
  const doc = readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8');
  const re = /<!-- example: (\w+) -->\s*```hex\n([\s\S]*?)```/g;
  const seen = [];
  for (const [, name, body] of doc.matchAll(re)) {
    const bin = unhex(body);
    const packets = decodeAll([bin]);
    assert.equal(packets.length, 1, name);
    assert.equal(hex(encode(packets[0])), hex(bin), name);
    if (GOLDEN[name]) assert.deepEqual(packets[0], GOLDEN[name], name);
    seen.push(name);
  }
  assert.ok(seen.includes('push_200') && seen.includes('refusal') && seen.length >= 11, `examples: ${seen}`);
  const push200 = decodeAll([unhex(doc.match(/example: push_200 -->\s*```hex\n([\s\S]*?)```/)[1])])[0];
  assert.equal(push200.topic, 't');
  assert.equal(utf8(push200.body), 'x'.repeat(200));
});

test('length prefixes: the varint examples of docs/PROTOCOL.md', () => {
  // A PING-like frame of the given length: kind PUSH, topic "t", filler body.
  for (const [len, prefix] of [[5, '05'], [127, '7f'], [128, '8001'], [300, 'ac02'], [65535, 'ffff03']]) {
    const body = new Uint8Array(len - 3);
    const frame = encode({ type: 'push', topic: 't', body });
    assert.equal(hex(frame.subarray(0, prefix.length / 2)), prefix, `length ${len}`);
    assert.equal(frame.length, prefix.length / 2 + len);
    assert.equal(decodeAll([frame])[0].body.length, len - 3);
  }
  const big = encode({ type: 'push', topic: 't', body: new Uint8Array(2_097_152) }, 16 * 1024 * 1024);
  assert.equal(hex(big.subarray(0, 4)), '83808001'); // 2,097,155 = 0x200003
  assert.equal(decodeAll([big], { maxFrameLength: 16 * 1024 * 1024 })[0].body.length, 2_097_152);
});

/** A stream of every golden frame, the doc's push_200, and a large frame with a 3-byte prefix. */
function streamFixture() {
  const frames = goldenFiles().map((f) => f.bin);
  frames.push(encode({ type: 'push', topic: 't', body: 'x'.repeat(200) }));
  frames.push(encode({ type: 'response', id: 0xffffffff, status: 'failed', body: new Uint8Array(20000).fill(7) }));
  frames.push(encode({ type: 'request', id: 42, route: 'é/ü', body: { a: [1, 2] } }));
  const total = frames.reduce((n, f) => n + f.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const f of frames) all.set(f, (at += f.length) - f.length);
  return { frames, all, expected: frames.map((f) => decodeAll([f])[0]) };
}

test('several frames per message: the whole stream in one chunk', () => {
  const { all, expected } = streamFixture();
  assert.deepEqual(decodeAll([all]), expected);
});

test('frames split across messages at every byte boundary', () => {
  const { all, expected } = streamFixture();
  // Two chunks, cut at every position of the stream.
  for (let cut = 0; cut <= all.length; cut++) {
    const got = decodeAll([all.subarray(0, cut), all.subarray(cut)]);
    if (got.length !== expected.length) assert.fail(`cut at ${cut}: ${got.length} packets`);
    assert.deepEqual(got, expected, `cut at ${cut}`);
  }
});

test('frames split into three chunks around every boundary of the small frames', () => {
  const { frames, expected } = streamFixture();
  const small = frames.slice(0, 12);
  const all = Uint8Array.from(small.flatMap((f) => [...f]));
  for (let a = 0; a <= all.length; a++) {
    for (let b = a; b <= all.length; b++) {
      const got = decodeAll([all.subarray(0, a), all.subarray(a, b), all.subarray(b)]);
      assert.deepEqual(got, expected.slice(0, 12), `cuts at ${a}, ${b}`);
    }
  }
});

test('one byte per message, and packets come out as soon as their last byte arrives', () => {
  const { frames, all, expected } = streamFixture();
  const d = new Decoder();
  const got = [];
  const ends = [];
  let at = 0;
  for (const f of frames) ends.push((at += f.length));
  for (let i = 0; i < all.length; i++) {
    const out = d.drain(all.subarray(i, i + 1));
    if (out.length > 0) {
      assert.equal(out.length, 1);
      assert.equal(i + 1, ends[got.length], 'a packet completes exactly at its frame end');
      got.push(...out);
    }
  }
  assert.deepEqual(got, expected);
  assert.equal(d.buffered, 0);
});

test('decoded bodies are copies: later chunks and the caller reusing its buffer do not change them', () => {
  const d = new Decoder();
  const chunk = encode({ type: 'push', topic: 'a', body: 'first' });
  const [p] = d.drain(chunk);
  chunk.fill(0);
  d.drain(encode({ type: 'push', topic: 'b', body: 'second' }));
  assert.equal(utf8(p.body), 'first');
  // A partial frame kept from a reused buffer.
  const reused = encode({ type: 'push', topic: 'c', body: 'third' });
  const d2 = new Decoder();
  assert.deepEqual(d2.drain(reused.subarray(0, 4)), []);
  const tail = reused.slice(4);
  reused.fill(0);
  assert.equal(utf8(d2.drain(tail)[0].body), 'third');
});

/** The varint length prefix of `len`. */
function prefixOf(len) {
  const out = [];
  while (len >= 0x80) {
    out.push((len & 0x7f) | 0x80);
    len >>>= 7;
  }
  out.push(len);
  return Uint8Array.from(out);
}

test('the max frame length: at the limit accepted, one over refused from the length prefix alone', () => {
  for (const max of [3, 5, 127, 128, 300, 16383, 16384, 65535, 2_097_151, 16 * 1024 * 1024]) {
    const ok = encode({ type: 'push', topic: 't', body: new Uint8Array(max - 3) }, max);
    assert.equal(ok.length, prefixOf(max).length + max);
    assert.equal(decodeAll([ok], { maxFrameLength: max }).length, 1, `max ${max}`);
    // One byte over the limit: refused once the prefix is read, with none of the frame there.
    const d = new Decoder({ maxFrameLength: max });
    const prefix = prefixOf(max + 1);
    assert.throws(
      () => d.drain(prefix),
      (e) =>
        e instanceof GatekitError &&
        e.kind === 'protocol' &&
        e.fatal &&
        e.closeCode === 7 &&
        /exceeds the maximum of \d+ bytes/.test(e.message),
      `max ${max}`,
    );
    // Fatal: every later call throws the same error, whatever arrives.
    assert.throws(() => d.drain(encode({ type: 'ping' })), /exceeds the maximum/);
    assert.ok(d.failed);
  }
  const d = new Decoder({ maxFrameLength: 1 });
  assert.deepEqual(d.drain(encode({ type: 'ping' })), [{ type: 'ping' }]);
  assert.throws(() => d.drain(unhex('0209')), { message: 'frame length 2 exceeds the maximum of 1 bytes (from the length prefix; nothing buffered)' });
  assert.throws(() => new Decoder({ maxFrameLength: 0 }), /outside 1\.\.=16777216/);
  assert.throws(() => new Decoder({ maxFrameLength: 16 * 1024 * 1024 + 1 }), /outside/);
  // The encoder keeps to the same limit.
  assert.throws(() => encode({ type: 'push', topic: 't', body: new Uint8Array(16 * 1024 * 1024) }, 2 ** 30), /exceeds the maximum of 16777216/);
});

test('a length prefix is refused at the first byte that proves the frame too large', () => {
  // ff ff ff: at least 4,194,303 after 3 bytes; with the default 65,535, 80 80 80 proves it at byte 3.
  const cases = [
    ['ffffff', 65535, 3, 'frame length of at least 4194303 (from the first 3 bytes of its length varint) exceeds the maximum of 65535 bytes'],
    ['ff', 200, 1, 'frame length of at least 255 (from the first 1 bytes of its length varint) exceeds the maximum of 200 bytes'],
    ['8080', 16000, 2, 'frame length of at least 16384 (from the first 2 bytes of its length varint) exceeds the maximum of 16000 bytes'],
  ];
  for (const [prefix, max, at, message] of cases) {
    const d = new Decoder({ maxFrameLength: max });
    const b = unhex(prefix);
    for (let i = 0; i < at - 1; i++) assert.deepEqual(d.drain(b.subarray(i, i + 1)), []);
    assert.throws(() => d.drain(b.subarray(at - 1, at)), { message });
  }
  // Over 4 bytes, or not minimal: fatal too.
  assert.throws(() => decodeAll([unhex('8080808001')], { maxFrameLength: 16 * 1024 * 1024 }), {
    message: 'length varint does not end within 4 bytes',
  });
  assert.throws(() => decodeAll([unhex('810007')]), { message: 'length varint of 2 bytes is not minimal: value 1 fits in fewer bytes' });
});

test('an invalid packet is not fatal: the stream stays in sync', () => {
  const d = new Decoder();
  d.push(Uint8Array.of(...unhex('010a'), ...encode({ type: 'ping' })));
  assert.throws(() => d.next(), (e) => e.kind === 'protocol' && e.fatal === false && e.message === 'unknown packet kind 0x0a at offset 0');
  assert.deepEqual(d.next(), { type: 'ping' });
  assert.equal(d.next(), null);
});

test('every malformed corpus file fails with the codec\'s exact error text', () => {
  const files = readdirSync(malformed).filter((f) => f.endsWith('.bin')).sort();
  assert.ok(files.length >= 30);
  for (const f of files) {
    const bin = new Uint8Array(readFileSync(join(malformed, f)));
    const want = readFileSync(join(malformed, f.replace(/\.bin$/, '.err')), 'utf8');
    const d = new Decoder();
    d.push(bin);
    let got = null;
    try {
      while (d.next());
      d.end();
    } catch (e) {
      assert.ok(e instanceof GatekitError && e.kind === 'protocol', f);
      got = e.message;
    }
    assert.equal(got, want, f);
  }
});

test('the encoder refuses what breaks a limit', () => {
  const refuses = (p, message, max) => assert.throws(() => encode(p, max), (e) => e.kind === 'invalid' && e.message === message);
  refuses({ type: 'request', id: 1, route: 'nochat' }, 'route "nochat" is not of the form module/func');
  refuses({ type: 'request', id: 1, route: 'a/b/c' }, 'route "a/b/c" is not of the form module/func');
  refuses({ type: 'request', id: 1, route: '/b' }, 'route "/b" is not of the form module/func');
  refuses({ type: 'request', id: 1, route: 'a/' }, 'route "a/" is not of the form module/func');
  refuses({ type: 'request', id: 1, route: '' }, 'route is empty');
  refuses({ type: 'notify', route: `m/${'f'.repeat(254)}` }, 'route is 256 bytes, over the limit of 255');
  refuses({ type: 'request', id: 0, route: 'a/b' }, 'message id 0 is not 1 to 4294967295');
  refuses({ type: 'request', id: 2 ** 32, route: 'a/b' }, 'message id 4294967296 is not 1 to 4294967295');
  refuses({ type: 'push', topic: '' }, 'topic is empty');
  refuses({ type: 'handshake', token: new Uint8Array(4097) }, 'token is 4097 bytes, over the limit of 4096');
  refuses({ type: 'close', code: 0, reason: 'x'.repeat(256) }, 'reason is 256 bytes, over the limit of 255');
  refuses({ type: 'close', code: 13 }, 'unknown close code 13');
  refuses({ type: 'response', id: 1, status: 'nope' }, 'unknown status "nope"');
  refuses({ type: 'welcome', heartbeat: 1, maxFrame: 1, sessionId: '' }, 'session id is empty');
  refuses({ type: 'request', id: 1, route: 'a/b', body: new Uint8Array(100) }, 'frame of 109 bytes exceeds the maximum of 100 bytes', 100);
  assert.equal(encode({ type: 'request', id: 1, route: 'a/b', body: new Uint8Array(100) }, 109).length, 110);
  assert.equal(encode({ type: 'handshake', token: new Uint8Array(4096) }).length, 2 + 4 + 4096);
});

test('bodies: bytes, strings, JSON; utf8() and json()', () => {
  assert.deepEqual(encodeBody(Uint8Array.of(1, 2)), Uint8Array.of(1, 2));
  assert.deepEqual(encodeBody(Uint16Array.of(0x0102).buffer), new Uint8Array(Uint16Array.of(0x0102).buffer));
  assert.equal(utf8(encodeBody('héllo')), 'héllo');
  assert.deepEqual(json(encodeBody({ a: [1, 'b'] })), { a: [1, 'b'] });
  assert.equal(encodeBody(undefined).length, 0);
  assert.equal(utf8(encodeBody(42)), '42');
  assert.equal(utf8(new Uint8Array([0x68, 0xff])), 'h\ufffd');
  assert.throws(() => json(encodeBody('not json')), SyntaxError);
});

test('names of statuses and close codes match docs/PROTOCOL.md', () => {
  const doc = readFileSync(join(root, 'docs', 'PROTOCOL.md'), 'utf8');
  for (const [i, name] of STATUS.entries()) assert.match(doc, new RegExp(`\\| ${i}\\s+\\| ${name}\\s+\\|`));
  for (const [i, name] of CLOSE_CODE.entries()) assert.match(doc, new RegExp(`\\| ${i}\\s+\\| ${name}\\s*\\|`));
});

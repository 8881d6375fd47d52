// The GateClient of clients/js/gatekit.js against an in-process fake WebSocket and fake gate:
// handshake, requests and statuses, timeouts, pushes, heartbeat, the close handshake, reconnect.
// Run: node --test clients/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, encode, Decoder, utf8, GatekitError } from '../gatekit.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A fake gate behind a fake WebSocket class. Each socket decodes what the client sends and answers
 * like the gate does; `behave` hooks change that per test.
 */
function fakeGate(behave = {}) {
  const gate = { sockets: [], sessions: 0, received: [] };
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.binaryType = 'blob';
      this.decoder = new Decoder();
      this.closedByClient = false;
      gate.sockets.push(this);
      setTimeout(() => {
        if (behave.refuseSocket) return this._closed(1006);
        this.readyState = 1;
        this.onopen?.({});
      }, 1);
    }
    send(bytes) {
      assert.ok(bytes instanceof Uint8Array, 'the client sends binary messages');
      if (this.readyState !== 1) throw new Error('not open');
      for (const p of this.decoder.drain(bytes.slice())) {
        gate.received.push(p);
        this.onPacket(p);
      }
    }
    onPacket(p) {
      if (behave.onPacket && behave.onPacket(this, p) === true) return;
      switch (p.type) {
        case 'handshake':
          this.handshake = p;
          if (behave.refuse) return this.serverSend(encode({ type: 'close', code: behave.refuse, reason: 'no' }), true);
          if (behave.silentHandshake) return;
          gate.sessions++;
          this.serverSend(
            encode({ type: 'welcome', heartbeat: behave.heartbeat ?? Math.min(p.heartbeat || 30, 30), maxFrame: behave.maxFrame ?? 65535, sessionId: `s-${gate.sessions}` }),
            false,
            behave.splitWelcome,
          );
          return;
        case 'request':
          if (behave.hang) return;
          if (p.route === 'echo/fail') return this.serverSend(encode({ type: 'response', id: p.id, status: 'failed', body: 'nope' }));
          if (p.route === 'none/x') return this.serverSend(encode({ type: 'response', id: p.id, status: 'not found' }));
          return this.serverSend(encode({ type: 'response', id: p.id, status: 'ok', body: p.body }));
        case 'ping':
          if (!behave.noPong) this.serverSend(encode({ type: 'pong' }));
          return;
        case 'close':
          return this.serverSend(encode({ type: 'close', code: 'normal', reason: 'bye' }), true);
        default:
      }
    }
    /** The gate writes bytes (one message, or one message per byte with `split`), then maybe ends. */
    serverSend(bytes, thenClose = false, split = false) {
      setTimeout(() => {
        if (this.readyState !== 1) return;
        const chunks = split ? [...bytes].map((b) => Uint8Array.of(b)) : [bytes];
        for (const c of chunks) this.onmessage?.({ data: c.buffer.slice(c.byteOffset, c.byteOffset + c.byteLength) });
        if (thenClose) this._closed(1000);
      }, 1);
    }
    drop() {
      this._closed(1006);
    }
    close() {
      this.closedByClient = true;
      this._closed(1000);
    }
    _closed(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code }), 1);
    }
  }
  gate.WebSocket = FakeWebSocket;
  return gate;
}

test('connect: HANDSHAKE with token and heartbeat, WELCOME gives the session', async () => {
  const g = fakeGate({ splitWelcome: true });
  const gate = await connect('ws://x/gate', { WebSocket: g.WebSocket, token: 'secret', heartbeatMs: 4500, reconnect: false });
  assert.equal(g.sockets[0].binaryType, 'arraybuffer');
  assert.deepEqual(g.received[0], { type: 'handshake', version: 1, heartbeat: 5, token: new TextEncoder().encode('secret') });
  assert.equal(gate.sessionId, 's-1');
  assert.equal(gate.heartbeatMs, 5000);
  assert.equal(gate.maxFrameLength, 65535);
  assert.equal(gate.state, 'open');
  await gate.close();
});

test('connect rejects on a refusal, a socket that does not open, and a silent gate', async () => {
  await assert.rejects(connect('ws://x', { WebSocket: fakeGate({ refuse: 'unauthorized' }).WebSocket }), (e) =>
    e instanceof GatekitError && e.kind === 'refused' && e.closeName === 'unauthorized' && e.closeCode === 10 && /unauthorized/.test(e.message),
  );
  await assert.rejects(connect('ws://x', { WebSocket: fakeGate({ refuseSocket: true }).WebSocket }), (e) => e.kind === 'websocket' && e.wsCode === 1006);
  const silent = fakeGate({ silentHandshake: true });
  await assert.rejects(connect('ws://x', { WebSocket: silent.WebSocket, handshakeTimeoutMs: 50 }), (e) => e.kind === 'handshake-timeout');
  assert.ok(silent.sockets[0].closedByClient);
  await assert.rejects(connect('ws://x', { WebSocket: fakeGate().WebSocket, token: new Uint8Array(4097) }), /token is 4097 bytes/);
});

test('requests: ok bodies, statuses as errors, JSON and text bodies, ids, timeouts', async () => {
  const g = fakeGate();
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: false });
  assert.equal(utf8(await gate.request('echo/echo', 'hi')), 'hi');
  assert.deepEqual(await gate.request('echo/echo', { a: [1] }, { as: 'json' }), { a: [1] });
  assert.equal(await gate.request('echo/echo', Uint8Array.of(104, 105), { as: 'text' }), 'hi');
  await assert.rejects(gate.request('echo/fail', 'x'), (e) => e.kind === 'status' && e.status === 'failed' && e.statusCode === 5 && utf8(e.body) === 'nope');
  await assert.rejects(gate.request('none/x'), (e) => e.kind === 'status' && e.status === 'not found');
  await assert.rejects(gate.request('bad-route', 'x'), (e) => e.kind === 'invalid');
  await assert.rejects(gate.request('echo/echo', new Uint8Array(70000)), (e) => e.kind === 'invalid' && /exceeds the maximum of 65535/.test(e.message));
  const ids = g.received.filter((p) => p.type === 'request').map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids.every((id) => id >= 1));
  // Concurrent requests each get their own answer.
  const many = await Promise.all(Array.from({ length: 20 }, (_, i) => gate.request('echo/echo', `m${i}`, { as: 'text' })));
  assert.deepEqual(many, Array.from({ length: 20 }, (_, i) => `m${i}`));
  assert.equal(gate.pending, 0);
  await gate.close();
});

test('a request with no answer times out; notify sends a NOTIFY', async () => {
  const g = fakeGate({ hang: true });
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, requestTimeoutMs: 40, reconnect: false });
  await assert.rejects(gate.request('echo/echo', 'x'), (e) => e.kind === 'timeout' && e.route === 'echo/echo');
  await assert.rejects(gate.request('echo/echo', 'x', { timeoutMs: 10 }), (e) => e.kind === 'timeout');
  gate.notify('chat/typing', 'yes');
  assert.deepEqual(g.received.at(-1), { type: 'notify', route: 'chat/typing', body: new TextEncoder().encode('yes') });
  assert.throws(() => gate.notify('nope', 'x'), (e) => e.kind === 'invalid');
  await gate.close();
  assert.throws(() => gate.notify('chat/typing'), (e) => e.kind === 'closed');
  await assert.rejects(gate.request('echo/echo'), (e) => e.kind === 'closed');
});

test('pushes, PING from the gate answered with PONG, frames split across messages', async () => {
  const g = fakeGate();
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: false });
  const pushes = [];
  const off = gate.onPush((topic, body) => pushes.push([topic, utf8(body)]));
  const ws = g.sockets[0];
  const bytes = Uint8Array.of(
    ...encode({ type: 'push', topic: 'room/7', body: 'hi' }),
    ...encode({ type: 'ping' }),
    ...encode({ type: 'push', topic: 'room/8', body: 'x'.repeat(300) }),
  );
  ws.serverSend(bytes.subarray(0, 5));
  ws.serverSend(bytes.subarray(5, 14));
  ws.serverSend(bytes.subarray(14));
  await sleep(20);
  assert.deepEqual(pushes, [['room/7', 'hi'], ['room/8', 'x'.repeat(300)]]);
  assert.deepEqual(g.received.at(-1), { type: 'pong' });
  off();
  ws.serverSend(encode({ type: 'push', topic: 'room/9', body: '' }));
  await sleep(10);
  assert.equal(pushes.length, 2);
  await gate.close();
});

test('close(): CLOSE with the reason, answers still in flight arrive, then the socket closes', async () => {
  let held = null;
  const g = fakeGate({
    onPacket(ws, p) {
      if (p.type === 'request' && p.route === 'slow/x') {
        held = p;
        return true;
      }
      if (p.type === 'close' && held) {
        ws.serverSend(encode({ type: 'response', id: held.id, status: 'ok', body: 'late' }));
        ws.serverSend(encode({ type: 'close', code: 'normal', reason: 'bye' }), true);
        return true;
      }
      return false;
    },
  });
  const gate = await connect('ws://x', { WebSocket: g.WebSocket });
  const closes = [];
  gate.onClose((i) => closes.push(i));
  const slow = gate.request('slow/x', 'x', { as: 'text' });
  await sleep(5);
  const info = await gate.close('game over');
  assert.equal(await slow, 'late');
  assert.deepEqual(g.received.filter((p) => p.type === 'close'), [{ type: 'close', code: 0, codeName: 'normal', reason: 'game over' }]);
  assert.equal(info.by, 'client');
  assert.deepEqual(info.server, { code: 0, name: 'normal', reason: 'bye' });
  assert.equal(closes.length, 1);
  assert.equal(gate.state, 'closed');
  assert.equal(g.sockets.length, 1, 'no reconnect after close()');
  assert.deepEqual(await gate.closed, info);
});

test('close() does not wait past the close timeout for a gate that never answers CLOSE', async () => {
  const g = fakeGate({ onPacket: (ws, p) => p.type === 'close' });
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, closeTimeoutMs: 30 });
  const pending = gate.request('echo/never', 'x').catch((e) => e);
  const t0 = Date.now();
  const info = await gate.close('bye');
  assert.ok(Date.now() - t0 < 500);
  assert.equal(info.server, undefined);
  assert.ok(g.sockets[0].closedByClient);
  void pending;
});

test('a server CLOSE: onClose gets its code and reason; kicked does not reconnect', async () => {
  const g = fakeGate();
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: { initialMs: 5 } });
  const closes = [];
  gate.onClose((i) => closes.push(i));
  const pending = gate.request('slow/x', 'x').catch((e) => e);
  g.sockets[0].serverSend(encode({ type: 'close', code: 'kicked', reason: 'cheating' }), true);
  const info = await gate.closed;
  assert.equal(info.by, 'server');
  assert.equal(info.code, 5);
  assert.equal(info.name, 'kicked');
  assert.equal(info.reason, 'cheating');
  assert.equal(info.willReconnect, false);
  assert.equal(closes.length, 1);
  const e = await pending;
  // The echo answer may have come first; if not, the request was rejected as closed.
  if (e instanceof Error) assert.equal(e.kind, 'closed');
  await sleep(30);
  assert.equal(g.sockets.length, 1);
});

test('a drop rejects pending requests and reconnects with a new handshake; shutdown too', async () => {
  const g = fakeGate({ hang: true });
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, token: 't', reconnect: { initialMs: 10, maxMs: 20 } });
  const events = [];
  gate.onClose((i) => events.push(['close', i.by, i.willReconnect]));
  gate.onReconnecting((i) => events.push(['reconnecting', i.attempt]));
  const reconnected = new Promise((r) => gate.onReconnect((i) => (events.push(['reconnect', i.sessionId, i.previousSessionId]), r())));
  const pending = gate.request('echo/echo', 'x');
  g.sockets[0].drop();
  await assert.rejects(pending, (e) => e.kind === 'disconnected');
  await assert.rejects(gate.request('echo/echo'), (e) => e.kind === 'disconnected');
  await reconnected;
  assert.equal(gate.sessionId, 's-2');
  assert.equal(gate.state, 'open');
  assert.deepEqual(events, [['close', 'drop', true], ['reconnecting', 1], ['reconnect', 's-2', 's-1']]);
  assert.equal(g.received.filter((p) => p.type === 'handshake').length, 2);
  // The gate shutting down: reconnect as well.
  const again = new Promise((r) => gate.onReconnect(r));
  g.sockets[1].serverSend(encode({ type: 'close', code: 'shutdown', reason: 'restart' }), true);
  await again;
  assert.equal(gate.sessionId, 's-3');
  await gate.close();
});

test('reconnect gives up after maxAttempts, with back-off delays growing to maxMs', async () => {
  const behave = {};
  const g = fakeGate(behave);
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: { initialMs: 4, factor: 2, maxMs: 10, maxAttempts: 4, jitter: 0 } });
  const delays = [];
  gate.onReconnecting((i) => delays.push(i.delayMs));
  behave.refuseSocket = true; // every later socket fails to open
  g.sockets[0].drop();
  const info = await gate.closed;
  assert.deepEqual(delays, [4, 8, 10, 10]);
  assert.equal(g.sockets.length, 5);
  assert.equal(info.willReconnect, false);
  assert.equal(info.attempts, 4);
  assert.match(info.reason, /gave up reconnecting after 4 attempts: WebSocket ws:\/\/x closed before WELCOME/);
});

test('a refusal while reconnecting: unauthorized stops, server full retries', async () => {
  const behave = {};
  const g = fakeGate(behave);
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: { initialMs: 2, maxAttempts: 3 } });
  behave.refuse = 'server full';
  g.sockets[0].drop();
  await sleep(10);
  behave.refuse = 'unauthorized';
  const info = await gate.closed;
  assert.equal(info.by, 'server');
  assert.equal(info.name, 'unauthorized');
  assert.ok(g.sockets.length >= 3);
});

test('close() during reconnecting stops it', async () => {
  const g = fakeGate();
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: { initialMs: 200 } });
  g.sockets[0].drop();
  await sleep(20);
  assert.equal(gate.state, 'reconnecting');
  const info = await gate.close('never mind');
  assert.equal(info.by, 'client');
  await sleep(250);
  assert.equal(g.sockets.length, 1);
});

test('heartbeat: PINGs when idle; no answer within an interval closes and reconnects', async () => {
  const g = fakeGate({ heartbeat: 1 });
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, heartbeatMs: 1000, reconnect: { initialMs: 5 } });
  assert.equal(gate.heartbeatMs, 1000);
  await sleep(1150);
  assert.ok(g.received.some((p) => p.type === 'ping'), 'a PING after one idle interval');
  assert.equal(gate.sessionId, 's-1');
  // Now the gate stops answering.
  g.sockets[0].onPacket = () => {};
  const dropped = new Promise((r) => gate.onClose(r));
  const info = await dropped;
  assert.equal(info.by, 'drop');
  assert.match(info.reason, /no answer to PING within 1000 ms/);
  assert.equal(info.willReconnect, true);
  await new Promise((r) => gate.onReconnect(r));
  await gate.close();
});

test('bytes that break the protocol: CLOSE protocol error / frame too large, no reconnect', async () => {
  const g = fakeGate();
  const gate = await connect('ws://x', { WebSocket: g.WebSocket, reconnect: { initialMs: 5 } });
  g.sockets[0].serverSend(Uint8Array.of(0x01, 0x0a));
  const info = await gate.closed;
  assert.equal(info.by, 'error');
  assert.equal(info.name, 'protocol error');
  assert.deepEqual(g.received.at(-1), { type: 'close', code: 2, codeName: 'protocol error', reason: 'unknown packet kind 0x0a at offset 0' });

  const g2 = fakeGate({ maxFrame: 1000 });
  const gate2 = await connect('ws://x', { WebSocket: g2.WebSocket, reconnect: { initialMs: 5 } });
  g2.sockets[0].serverSend(Uint8Array.of(0xe9, 0x07)); // 1001 > the gate's 1000
  const info2 = await gate2.closed;
  assert.equal(info2.name, 'frame too large');
  assert.equal(g2.received.at(-1).code, 7);
  await sleep(20);
  assert.equal(g.sockets.length + g2.sockets.length, 2);
});

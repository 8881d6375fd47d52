// gatekit.js: a dependency-free client for the gatekit native protocol (docs/PROTOCOL.md, version 1)
// over WebSocket, for browsers (and Node >= 20 given a WebSocket implementation).
//
// The WebSocket carries the native byte stream in binary messages: a message may hold several
// frames or part of one, so incoming bytes go through a streaming decoder. Each packet the client
// sends is one binary message.
//
// Exports:
//   connect(url, options)        open a session: resolves with a GateClient after WELCOME
//   utf8(body), json(body)       decode a response or push body
//   encode(packet, max)          one packet -> one frame (Uint8Array)
//   Decoder                      streaming frame decoder (push bytes, take packets)
//   encodeBody(body)             Uint8Array | ArrayBuffer | string | JSON value -> bytes
//   GatekitError                 every error this module raises or rejects with
//   STATUS, CLOSE_CODE, KIND     the protocol's names, by number
//   shouldReconnectAfter(code)   the default reconnect policy after a server CLOSE
//
// SPDX-License-Identifier: MIT OR Apache-2.0

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
/** The default maximum frame length (bytes after the length prefix): mqant's MaxPackSize. */
export const DEFAULT_MAX_FRAME_LENGTH = 65535;
/** The largest maximum frame length any gatekit peer accepts: 16 MiB. */
export const MAX_FRAME_LENGTH_CAP = 16 * 1024 * 1024;
/** The longest token a HANDSHAKE may carry. */
export const MAX_TOKEN_LEN = 4096;
/** The longest session id. */
export const MAX_SESSION_ID_LEN = 64;
/** The longest CLOSE reason. */
export const MAX_REASON_LEN = 255;
/** The longest route or topic. */
export const MAX_ROUTE_LEN = 255;

/** Packet kind bytes by name. */
export const KIND = Object.freeze({
  handshake: 0x01,
  welcome: 0x02,
  request: 0x03,
  response: 0x04,
  notify: 0x05,
  push: 0x06,
  ping: 0x07,
  pong: 0x08,
  close: 0x09,
});
const KIND_NAME = ['', 'HANDSHAKE', 'WELCOME', 'REQUEST', 'RESPONSE', 'NOTIFY', 'PUSH', 'PING', 'PONG', 'CLOSE'];

/** RESPONSE status names, indexed by status byte (docs/PROTOCOL.md). */
export const STATUS = Object.freeze(['ok', 'not found', 'timeout', 'busy', 'internal error', 'failed']);

/** CLOSE code names, indexed by code byte (docs/PROTOCOL.md). */
export const CLOSE_CODE = Object.freeze([
  'normal',
  'going away',
  'protocol error',
  'idle timeout',
  'slow consumer',
  'kicked',
  'shutdown',
  'frame too large',
  'handshake timeout',
  'unsupported version',
  'unauthorized',
  'server full',
  'internal error',
]);

/**
 * Close codes after which, when the gate sends them, the client reconnects by default: the gate
 * is draining, restarting, full, or timed the session out; coming back later may work. After any
 * other code (`normal`, `protocol error`, `kicked`, `frame too large`, `unsupported version`,
 * `unauthorized`, `internal error`, ...) it does not: the gate meant it, or trying again would
 * fail the same way.
 */
const RECONNECT_AFTER = new Set([1, 3, 6, 8, 11]); // going away, idle timeout, shutdown, handshake timeout, server full

/**
 * The default reconnect policy after the gate sends CLOSE with `code`.
 * @param {number} code close code byte
 * @returns {boolean}
 */
export function shouldReconnectAfter(code) {
  return RECONNECT_AFTER.has(code);
}

/**
 * Every error of this module. `kind` says what went wrong:
 *
 * - `"status"`: the gate answered a request with a status other than ok. `.status` is the
 *   protocol's status name (`"not found"`, `"timeout"`, `"busy"`, `"internal error"`,
 *   `"failed"`), `.statusCode` its byte, `.body` the answer's body (Uint8Array; for `failed` it
 *   says why), `.route` and `.id` the request's.
 * - `"timeout"`: no answer within the request timeout (client side; the gate may still answer
 *   later, and that answer is dropped).
 * - `"handshake-timeout"`: no WELCOME within the handshake timeout.
 * - `"refused"`: the gate answered HANDSHAKE with CLOSE: `.closeCode`, `.closeName`, `.reason`.
 * - `"closed"`: the session was closed (by `close()` or by the gate's CLOSE) before the answer
 *   came; `.closeCode` / `.closeName` / `.reason` when the gate sent CLOSE.
 * - `"disconnected"`: the connection dropped (or is being re-established) before the answer came.
 * - `"protocol"`: bytes that break the protocol (from the gate, or given to the decoder);
 *   `.fatal` says whether the stream is still in sync.
 * - `"invalid"`: an argument breaks a protocol limit (bad route, token too long, body over the
 *   gate's maximum frame length, ...). Nothing was sent.
 * - `"websocket"`: the WebSocket could not be opened or failed.
 */
export class GatekitError extends Error {
  /**
   * @param {string} message
   * @param {string} kind
   * @param {object} [props] extra properties copied onto the error
   */
  constructor(message, kind, props = {}) {
    super(message);
    this.name = 'GatekitError';
    /** @type {string} */
    this.kind = kind;
    Object.assign(this, props);
  }
}

// ---------------------------------------------------------------------------------------------
// Bytes and text

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8');

/** Bytes of `x`: Uint8Array as is, other views and ArrayBuffers wrapped, strings UTF-8 encoded. */
function toBytes(x) {
  if (x instanceof Uint8Array) return x;
  if (typeof x === 'string') return textEncoder.encode(x);
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (x == null) return new Uint8Array(0);
  throw new GatekitError(`expected bytes or a string, got ${typeof x}`, 'invalid');
}

/**
 * The bytes of a request or notify body:
 * Uint8Array (as is), ArrayBuffer or another typed array (its bytes), string (UTF-8),
 * `undefined` / `null` (empty), anything else (JSON.stringify, UTF-8).
 * @param {Uint8Array | ArrayBuffer | ArrayBufferView | string | null | undefined | any} body
 * @returns {Uint8Array}
 */
export function encodeBody(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (body instanceof Uint8Array || typeof body === 'string' || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
    return toBytes(body);
  }
  const text = JSON.stringify(body);
  if (text === undefined) throw new GatekitError(`body of type ${typeof body} cannot be sent as JSON`, 'invalid');
  return textEncoder.encode(text);
}

/**
 * A body as text (UTF-8; invalid sequences become U+FFFD).
 * @param {Uint8Array | ArrayBuffer} body
 * @returns {string}
 */
export function utf8(body) {
  return textDecoder.decode(toBytes(body));
}

/**
 * A body as JSON (throws a SyntaxError if it is not).
 * @param {Uint8Array | ArrayBuffer} body
 * @returns {any}
 */
export function json(body) {
  return JSON.parse(utf8(body));
}

/**
 * Where UTF-8 validation of b[start..end) fails, as an offset from start (the first byte of the
 * first invalid or incomplete sequence, like Rust's `Utf8Error::valid_up_to`), or -1 if valid.
 */
function utf8ValidUpTo(b, start, end) {
  let i = start;
  while (i < end) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c === 0xe0) (n = 2), (lo = 0xa0);
    else if (c === 0xed) (n = 2), (hi = 0x9f);
    else if (c >= 0xe1 && c <= 0xef) n = 2;
    else if (c === 0xf0) (n = 3), (lo = 0x90);
    else if (c >= 0xf1 && c <= 0xf3) n = 3;
    else if (c === 0xf4) (n = 3), (hi = 0x8f);
    else return i - start;
    for (let j = 1; j <= n; j++) {
      if (i + j >= end) return i - start;
      const d = b[i + j];
      if (j === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return i - start;
    }
    i += n + 1;
  }
  return -1;
}

/** Rust's `{:?}` of a string, near enough for error messages. */
function debugStr(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp === 0) out += '\\0';
    else if (cp < 0x20 || cp === 0x7f) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

/** Checks a route: 1 to 255 bytes, `module/func` with exactly one `/`. Returns its bytes. */
function routeBytes(route) {
  const bytes = toBytes(route);
  if (bytes.length === 0) throw new GatekitError('route is empty', 'invalid');
  if (bytes.length > MAX_ROUTE_LEN) {
    throw new GatekitError(`route is ${bytes.length} bytes, over the limit of ${MAX_ROUTE_LEN}`, 'invalid');
  }
  if (utf8ValidUpTo(bytes, 0, bytes.length) !== -1) throw new GatekitError('route is not UTF-8', 'invalid');
  if (!isRouteShape(bytes, 0, bytes.length)) {
    throw new GatekitError(`route ${debugStr(textDecoder.decode(bytes))} is not of the form module/func`, 'invalid');
  }
  return bytes;
}

function isRouteShape(b, start, end) {
  let slash = -1;
  for (let i = start; i < end; i++) {
    if (b[i] === 0x2f) {
      if (slash !== -1) return false;
      slash = i;
    }
  }
  return slash > start && slash + 1 < end;
}

function topicBytes(topic) {
  const bytes = toBytes(topic);
  if (bytes.length === 0) throw new GatekitError('topic is empty', 'invalid');
  if (bytes.length > MAX_ROUTE_LEN) {
    throw new GatekitError(`topic is ${bytes.length} bytes, over the limit of ${MAX_ROUTE_LEN}`, 'invalid');
  }
  if (utf8ValidUpTo(bytes, 0, bytes.length) !== -1) throw new GatekitError('topic is not UTF-8', 'invalid');
  return bytes;
}

/** A status or close code given as a name or a number. */
function codeOf(value, names, what) {
  const n = typeof value === 'string' ? names.indexOf(value) : value;
  if (!Number.isInteger(n) || n < 0 || n >= names.length) {
    throw new GatekitError(`unknown ${what} ${JSON.stringify(value)}`, 'invalid');
  }
  return n;
}

function checkId(id) {
  if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) {
    throw new GatekitError(`message id ${id} is not 1 to 4294967295`, 'invalid');
  }
  return id;
}

/** Truncates a string so that its UTF-8 fits `max` bytes, at a character boundary. */
function truncateUtf8(s, max) {
  const bytes = textEncoder.encode(s);
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * @typedef {{type: 'handshake', version?: number, heartbeat?: number, token?: Uint8Array | string}} HandshakePacket
 * @typedef {{type: 'welcome', version?: number, heartbeat: number, maxFrame: number, sessionId: string}} WelcomePacket
 * @typedef {{type: 'request', id: number, route: string, body?: any}} RequestPacket
 * @typedef {{type: 'response', id: number, status: number | string, body?: any}} ResponsePacket
 * @typedef {{type: 'notify', route: string, body?: any}} NotifyPacket
 * @typedef {{type: 'push', topic: string, body?: any}} PushPacket
 * @typedef {{type: 'ping'} | {type: 'pong'}} PingPongPacket
 * @typedef {{type: 'close', code: number | string, reason?: string}} ClosePacket
 * @typedef {HandshakePacket | WelcomePacket | RequestPacket | ResponsePacket | NotifyPacket | PushPacket | PingPongPacket | ClosePacket} Packet
 */

/**
 * Encodes one packet as one frame (varint length, kind byte, payload). Refuses (throws a
 * GatekitError of kind "invalid", nothing encoded) a packet that breaks a limit of
 * docs/PROTOCOL.md or whose frame would exceed `maxFrameLength`. Bodies are encoded by
 * {@link encodeBody}; text fields may be strings or UTF-8 bytes.
 *
 * Decoded packets (from {@link Decoder}) carry the same fields, so `encode(decoded)` re-encodes
 * them (with `status` / `code` as numbers and `statusName` / `codeName` beside them).
 *
 * @param {Packet} p
 * @param {number} [maxFrameLength] default 65,535; capped at 16 MiB
 * @returns {Uint8Array}
 */
export function encode(p, maxFrameLength = DEFAULT_MAX_FRAME_LENGTH) {
  const parts = [];
  let kind;
  switch (p.type) {
    case 'handshake': {
      kind = KIND.handshake;
      const token = toBytes(p.token ?? new Uint8Array(0));
      if (token.length > MAX_TOKEN_LEN) {
        throw new GatekitError(`token is ${token.length} bytes, over the limit of ${MAX_TOKEN_LEN}`, 'invalid');
      }
      const hb = p.heartbeat ?? 0;
      if (!Number.isInteger(hb) || hb < 0 || hb > 0xffff) {
        throw new GatekitError(`heartbeat ${hb} is not 0 to 65535 seconds`, 'invalid');
      }
      parts.push(u8(p.version ?? PROTOCOL_VERSION), u16(hb), token);
      break;
    }
    case 'welcome': {
      kind = KIND.welcome;
      const sid = toBytes(p.sessionId);
      if (sid.length === 0) throw new GatekitError('session id is empty', 'invalid');
      if (sid.length > MAX_SESSION_ID_LEN) {
        throw new GatekitError(`session id is ${sid.length} bytes, over the limit of ${MAX_SESSION_ID_LEN}`, 'invalid');
      }
      parts.push(u8(p.version ?? PROTOCOL_VERSION), u16(p.heartbeat), u32(p.maxFrame), sid);
      break;
    }
    case 'request': {
      kind = KIND.request;
      const route = routeBytes(p.route);
      parts.push(u32(checkId(p.id)), u8(route.length), route, encodeBody(p.body));
      break;
    }
    case 'response':
      kind = KIND.response;
      parts.push(u32(checkId(p.id)), u8(codeOf(p.status, STATUS, 'status')), encodeBody(p.body));
      break;
    case 'notify': {
      kind = KIND.notify;
      const route = routeBytes(p.route);
      parts.push(u8(route.length), route, encodeBody(p.body));
      break;
    }
    case 'push': {
      kind = KIND.push;
      const topic = topicBytes(p.topic);
      parts.push(u8(topic.length), topic, encodeBody(p.body));
      break;
    }
    case 'ping':
      kind = KIND.ping;
      break;
    case 'pong':
      kind = KIND.pong;
      break;
    case 'close': {
      kind = KIND.close;
      const reason = toBytes(p.reason ?? '');
      if (reason.length > MAX_REASON_LEN) {
        throw new GatekitError(`reason is ${reason.length} bytes, over the limit of ${MAX_REASON_LEN}`, 'invalid');
      }
      parts.push(u8(codeOf(p.code, CLOSE_CODE, 'close code')), reason);
      break;
    }
    default:
      throw new GatekitError(`unknown packet type ${JSON.stringify(p.type)}`, 'invalid');
  }
  let len = 1;
  for (const part of parts) len += part.length;
  const max = Math.min(maxFrameLength, MAX_FRAME_LENGTH_CAP);
  if (len > max) throw new GatekitError(`frame of ${len} bytes exceeds the maximum of ${max} bytes`, 'invalid');
  const prefix = len < 0x80 ? 1 : len < 0x4000 ? 2 : len < 0x200000 ? 3 : 4;
  const out = new Uint8Array(prefix + len);
  let at = 0;
  let v = len;
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  out[at++] = kind;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u8(v) {
  return Uint8Array.of(v & 0xff);
}
function u16(v) {
  return Uint8Array.of((v >>> 8) & 0xff, v & 0xff);
}
function u32(v) {
  return Uint8Array.of((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * @typedef {object} DecodedPacket
 * @property {'handshake'|'welcome'|'request'|'response'|'notify'|'push'|'ping'|'pong'|'close'} type
 * @property {number} [version]    handshake, welcome
 * @property {number} [heartbeat]  handshake, welcome: seconds
 * @property {Uint8Array} [token]  handshake
 * @property {number} [maxFrame]   welcome: the largest frame length the gate accepts
 * @property {string} [sessionId]  welcome
 * @property {number} [id]         request, response
 * @property {string} [route]      request, notify
 * @property {number} [status]     response: status byte (STATUS[status] is its name)
 * @property {string} [statusName] response
 * @property {string} [topic]      push
 * @property {number} [code]       close: code byte (CLOSE_CODE[code] is its name)
 * @property {string} [codeName]   close
 * @property {string} [reason]     close
 * @property {Uint8Array} [body]   request, response, notify, push: a copy, yours to keep
 */

/** `closeCode`: the CLOSE code a receiver answers this error with (7 frame too large, 2 protocol error). */
function protocolError(message, fatal, closeCode = 2) {
  return new GatekitError(message, 'protocol', { fatal, closeCode });
}

/** Reads the fields of one frame (kind byte at `start`), with offsets counted from the kind byte. */
class FrameReader {
  constructor(buf, start, end) {
    this.b = buf;
    this.start = start;
    this.end = end;
    this.at = start + 1;
  }
  get off() {
    return this.at - this.start;
  }
  get left() {
    return this.end - this.at;
  }
  truncated(field, needed) {
    return protocolError(
      `${field} at offset ${this.off} is truncated: needs ${needed} bytes, frame has ${this.left} left`,
      false,
    );
  }
  fixed(field, n) {
    if (this.left < n) throw this.truncated(field, n);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + this.b[this.at + i];
    this.at += n;
    return v;
  }
  messageId() {
    const off = this.off;
    const id = this.fixed('message id', 4);
    if (id === 0) throw protocolError(`message id at offset ${off} is 0; ids are 1 to 4294967295`, false);
    return id;
  }
  code(field, names) {
    const off = this.off;
    const v = this.fixed(field, 1);
    if (v >= names.length) throw protocolError(`unknown ${field} ${v} at offset ${off}`, false);
    return v;
  }
  /** A len8 text (route or topic). */
  shortText(field, isRoute) {
    const off = this.off;
    if (this.left < 1) throw this.truncated(field, 1);
    const len = this.b[this.at];
    if (len === 0) throw protocolError(`${field} at offset ${off} is empty`, false);
    if (this.left - 1 < len) throw this.truncated(field, len + 1);
    const s = this.at + 1;
    const bad = utf8ValidUpTo(this.b, s, s + len);
    if (bad !== -1) {
      throw protocolError(`${field} at offset ${off} is not UTF-8: invalid byte at ${off + 1 + bad}`, false);
    }
    const text = textDecoder.decode(this.b.subarray(s, s + len));
    if (isRoute && !isRouteShape(this.b, s, s + len)) {
      throw protocolError(`route ${debugStr(text)} at offset ${off} is not of the form module/func`, false);
    }
    this.at = s + len;
    return text;
  }
  /** The rest of the frame as text of at most `max` bytes. */
  restText(field, max) {
    const off = this.off;
    const len = this.left;
    if (len > max) throw protocolError(`${field} at offset ${off} is ${len} bytes, over the limit of ${max}`, false);
    const bad = utf8ValidUpTo(this.b, this.at, this.end);
    if (bad !== -1) throw protocolError(`${field} at offset ${off} is not UTF-8: invalid byte at ${off + bad}`, false);
    const text = textDecoder.decode(this.b.subarray(this.at, this.end));
    this.at = this.end;
    return text;
  }
  restBytes() {
    const out = this.b.slice(this.at, this.end);
    this.at = this.end;
    return out;
  }
}

/**
 * Decodes one complete frame: `buf[start]` is the kind byte, `buf[end - 1]` the last payload byte.
 * Throws a non-fatal GatekitError of kind "protocol" for an invalid packet.
 * @returns {DecodedPacket}
 */
function decodeFrame(buf, start, end) {
  if (end === start) throw protocolError('empty frame: a packet needs at least its kind byte', false);
  const r = new FrameReader(buf, start, end);
  const kind = buf[start];
  switch (kind) {
    case KIND.handshake: {
      const version = r.fixed('version', 1);
      const heartbeat = r.fixed('heartbeat', 2);
      if (r.left > MAX_TOKEN_LEN) {
        throw protocolError(`token at offset ${r.off} is ${r.left} bytes, over the limit of ${MAX_TOKEN_LEN}`, false);
      }
      return { type: 'handshake', version, heartbeat, token: r.restBytes() };
    }
    case KIND.welcome: {
      const version = r.fixed('version', 1);
      const heartbeat = r.fixed('heartbeat', 2);
      const maxFrame = r.fixed('max frame length', 4);
      const off = r.off;
      const sessionId = r.restText('session id', MAX_SESSION_ID_LEN);
      if (sessionId.length === 0) throw protocolError(`session id at offset ${off} is empty`, false);
      return { type: 'welcome', version, heartbeat, maxFrame, sessionId };
    }
    case KIND.request: {
      const id = r.messageId();
      const route = r.shortText('route', true);
      return { type: 'request', id, route, body: r.restBytes() };
    }
    case KIND.response: {
      const id = r.messageId();
      const status = r.code('status', STATUS);
      return { type: 'response', id, status, statusName: STATUS[status], body: r.restBytes() };
    }
    case KIND.notify: {
      const route = r.shortText('route', true);
      return { type: 'notify', route, body: r.restBytes() };
    }
    case KIND.push: {
      const topic = r.shortText('topic', false);
      return { type: 'push', topic, body: r.restBytes() };
    }
    case KIND.ping:
    case KIND.pong:
      if (r.left > 0) {
        throw protocolError(`${KIND_NAME[kind]} packet has ${r.left} unexpected bytes after offset ${r.off}`, false);
      }
      return { type: kind === KIND.ping ? 'ping' : 'pong' };
    case KIND.close: {
      const code = r.code('close code', CLOSE_CODE);
      const reason = r.restText('reason', MAX_REASON_LEN);
      return { type: 'close', code, codeName: CLOSE_CODE[code], reason };
    }
    default:
      throw protocolError(`unknown packet kind 0x${kind.toString(16).padStart(2, '0')} at offset 0`, false);
  }
}

/**
 * A streaming decoder for the native protocol: append bytes as they arrive with {@link push},
 * take complete packets with {@link next}. A chunk may hold several frames or part of one.
 *
 * Errors (GatekitError of kind "protocol") come in two sorts, as in docs/PROTOCOL.md:
 * - `fatal: false`: a frame was delimited but its packet is invalid; the frame is consumed and the
 *   decoder is still in sync (call next() again for the following packet).
 * - `fatal: true`: the length prefix cannot be read (not minimal, over 4 bytes) or announces a frame
 *   over the maximum frame length, which is refused from the prefix alone (as soon as its first
 *   bytes prove it too large); every later next() throws the same error.
 *
 * ```js
 * const d = new Decoder();
 * d.push(chunk);
 * for (let p; (p = d.next()); ) handle(p);
 * ```
 */
export class Decoder {
  /**
   * @param {{maxFrameLength?: number}} [options] largest frame length accepted (bytes after the
   *   length prefix): default 65,535, 1 to 16 MiB
   */
  constructor(options = {}) {
    this.maxFrameLength = options.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
    /** @private */ this._buf = new Uint8Array(0);
    /** @private */ this._start = 0;
    /** @private */ this._end = 0;
    /** @private */ this._owned = false;
    /** @private */ this._failed = null;
    /** @private */ this._need = 0; // bytes the frame at _start needs in all, once its header is known
  }

  /** The maximum frame length (settable, e.g. to the gate's after WELCOME). */
  get maxFrameLength() {
    return this._max;
  }
  set maxFrameLength(v) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_FRAME_LENGTH_CAP) {
      throw new GatekitError(`max frame length ${v} is outside 1..=${MAX_FRAME_LENGTH_CAP}`, 'invalid');
    }
    this._max = v;
  }

  /** Bytes buffered, not yet decoded. */
  get buffered() {
    return this._end - this._start;
  }

  /** Whether a fatal error has ended the decoder. */
  get failed() {
    return this._failed !== null;
  }

  /**
   * Appends bytes. `chunk` is never modified, and may be reused by the caller once next() has
   * returned null (the decoder copies the partial frame it keeps) or drain() has returned.
   * @param {Uint8Array | ArrayBuffer | ArrayBufferView} chunk
   */
  push(chunk) {
    const bytes = toBytes(chunk);
    if (bytes.length === 0) return;
    const have = this._end - this._start;
    if (have === 0) {
      // Nothing buffered: read straight from the caller's bytes (never written to).
      this._buf = bytes;
      this._start = 0;
      this._end = bytes.length;
      this._owned = false;
      return;
    }
    if (this._owned && this._buf.length - this._end >= bytes.length) {
      this._buf.set(bytes, this._end);
      this._end += bytes.length;
      return;
    }
    const need = have + bytes.length;
    let cap = this._owned ? this._buf.length : 0;
    if (cap < need) cap = Math.max(need, Math.min(2 * cap, need + 65536), 256);
    const next = this._owned && cap === this._buf.length ? this._buf : new Uint8Array(cap);
    if (next === this._buf) this._buf.copyWithin(0, this._start, this._end);
    else next.set(this._buf.subarray(this._start, this._end), 0);
    next.set(bytes, have);
    this._buf = next;
    this._start = 0;
    this._end = need;
    this._owned = true;
  }

  /**
   * The next complete packet, or `null` if the bytes so far hold none. Throws on an invalid packet
   * (non-fatal: the frame was consumed) or an unreadable or oversized length prefix (fatal).
   * @returns {DecodedPacket | null}
   */
  next() {
    if (this._failed) throw this._failed;
    const b = this._buf;
    const p = this._start;
    const n = this._end - p;
    if (n === 0) return null;
    let len;
    let hl;
    const b0 = b[p];
    if (b0 < 0x80) {
      len = b0;
      hl = 1;
    } else {
      // Refuse a prefix whose first bytes already prove the frame too large: a minimal varint's
      // last byte is at least 1.
      let partial = 0;
      for (let i = 0; i < Math.min(3, n); i++) {
        const c = b[p + i];
        if ((c & 0x80) === 0) break;
        partial += (c & 0x7f) * 2 ** (7 * i);
        const atLeast = partial + 2 ** (7 * (i + 1));
        if (atLeast > this._max) {
          return this._fail(
            `frame length of at least ${atLeast} (from the first ${i + 1} bytes of its length varint) exceeds the maximum of ${this._max} bytes`,
            7,
          );
        }
      }
      len = 0;
      hl = 0;
      for (let i = 0; i < 4; i++) {
        if (i >= n) return this._keep(); // prefix incomplete
        const c = b[p + i];
        len += (c & 0x7f) * 2 ** (7 * i);
        if ((c & 0x80) === 0) {
          if (c === 0) {
            return this._fail(`length varint of ${i + 1} bytes is not minimal: value ${len} fits in fewer bytes`);
          }
          hl = i + 1;
          break;
        }
      }
      if (hl === 0) return this._fail('length varint does not end within 4 bytes');
    }
    if (len > this._max) {
      return this._fail(
        `frame length ${len} exceeds the maximum of ${this._max} bytes (from the length prefix; nothing buffered)`,
        7,
      );
    }
    const total = hl + len;
    if (n < total) {
      this._need = total;
      this._keep();
      return null;
    }
    this._need = 0;
    this._start = p + total;
    if (this._start === this._end) {
      // Drop the reference to the caller's (or our) bytes.
      this._buf = new Uint8Array(0);
      this._start = this._end = 0;
      this._owned = false;
    }
    return decodeFrame(b, p + hl, p + total);
  }

  /**
   * Every packet now complete. Stops at the first error (throws it; packets decoded before it are
   * on the error as `.packets`).
   * @param {Uint8Array | ArrayBuffer | ArrayBufferView} [chunk] bytes to push first
   * @returns {DecodedPacket[]}
   */
  drain(chunk) {
    if (chunk !== undefined) this.push(chunk);
    const out = [];
    try {
      for (let pkt; (pkt = this.next()); ) out.push(pkt);
    } catch (e) {
      e.packets = out;
      throw e;
    }
    return out;
  }

  /**
   * For when the stream has ended: like next(), but a partial frame left over is an error
   * ("stream ended inside a frame"). Returns null at a clean end between frames.
   * @returns {DecodedPacket | null}
   */
  end() {
    const pkt = this.next();
    if (pkt) return pkt;
    const have = this._end - this._start;
    if (have === 0) return null;
    const needed = this._need || have + 1;
    throw protocolError(`stream ended inside a frame: ${have} bytes buffered, frame needs ${needed}`, true);
  }

  /** Copies a partial frame held in the caller's bytes, so that the caller may reuse them. @private */
  _keep() {
    if (!this._owned) {
      const have = this._end - this._start;
      const own = new Uint8Array(Math.max(256, have * 2));
      own.set(this._buf.subarray(this._start, this._end), 0);
      this._buf = own;
      this._start = 0;
      this._end = have;
      this._owned = true;
    }
    return null;
  }

  /** @private */
  _fail(message, closeCode = 2) {
    this._failed = protocolError(message, true, closeCode);
    throw this._failed;
  }
}

// ---------------------------------------------------------------------------------------------
// The client

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [initialMs=500]   delay before the first attempt
 * @property {number} [maxMs=30000]     the longest delay
 * @property {number} [factor=2]        each delay is the previous one times this
 * @property {number} [maxAttempts=Infinity] attempts before giving up (per drop)
 * @property {number} [jitter=0.5]      each delay is drawn from [delay × (1 − jitter), delay]
 * @property {(info: CloseInfo) => boolean} [shouldReconnect] overrides the default policy
 *   (see {@link shouldReconnectAfter}) for a connection that ended
 */

/**
 * @typedef {object} ConnectOptions
 * @property {Uint8Array | string} [token]   sent in HANDSHAKE (opaque to the protocol; at most 4,096 bytes)
 * @property {number} [heartbeatMs=0]        heartbeat interval to ask for (rounded up to seconds;
 *   0 lets the gate choose, 30 s by default; the gate caps it at its ping interval)
 * @property {number} [requestTimeoutMs=15000] how long request() waits for an answer (the gate
 *   answers `timeout` itself after its back-end timeout, 10 s by default)
 * @property {number} [handshakeTimeoutMs=10000] how long to wait for the WebSocket to open and WELCOME to come
 * @property {number} [closeTimeoutMs=2000]  how long close() waits for the gate's CLOSE before closing the socket
 * @property {number} [maxFrameLength]       largest incoming frame accepted; default: the gate's
 *   (WELCOME's max_frame; 65,535 before WELCOME)
 * @property {ReconnectOptions | false} [reconnect] back-off settings; `false` never reconnects
 * @property {typeof WebSocket} [WebSocket]  the WebSocket class (default: globalThis.WebSocket)
 * @property {string | string[]} [protocols] WebSocket subprotocols to offer
 */

/**
 * @typedef {object} CloseInfo
 * @property {'server' | 'client' | 'drop' | 'error'} by who ended it: the gate's CLOSE, close(),
 *   the connection dropped without CLOSE (or stopped answering PINGs), or this client found the
 *   gate's bytes invalid (and sent CLOSE `protocol error` / `frame too large`)
 * @property {number | null} code    the CLOSE code (the gate's for "server", ours otherwise; null for "drop")
 * @property {string | null} name    its name (CLOSE_CODE[code])
 * @property {string} reason         the CLOSE reason (or why the connection dropped)
 * @property {boolean} willReconnect whether the client will now try to reconnect
 * @property {string | null} sessionId the session that ended
 * @property {number} [wsCode]       the WebSocket close code, when the socket closed
 * @property {number} [attempts]     reconnect attempts made, when reconnecting gave up
 */

/**
 * @typedef {object} ReconnectInfo
 * @property {number} attempt            which attempt succeeded (1 is the first)
 * @property {string} sessionId          the new session
 * @property {string | null} previousSessionId
 */

/**
 * A session with a gate, made by {@link connect}. After an unexpected drop it reconnects (new
 * WebSocket, new HANDSHAKE, new session id) unless told not to; `state` tells where it is:
 * `"open"`, `"reconnecting"`, `"closing"`, `"closed"`.
 */
export class GateClient {
  /**
   * @param {string} url
   * @param {ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    const o = options;
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new GatekitError('no WebSocket: pass one in options.WebSocket', 'invalid');
    }
    this._token = o.token === undefined ? new Uint8Array(0) : toBytes(o.token);
    if (this._token.length > MAX_TOKEN_LEN) {
      throw new GatekitError(`token is ${this._token.length} bytes, over the limit of ${MAX_TOKEN_LEN}`, 'invalid');
    }
    const hbMs = o.heartbeatMs ?? 0;
    this._askHeartbeat = Math.min(0xffff, Math.max(0, Math.ceil(hbMs / 1000)));
    this._requestTimeoutMs = o.requestTimeoutMs ?? 15000;
    this._handshakeTimeoutMs = o.handshakeTimeoutMs ?? 10000;
    this._closeTimeoutMs = o.closeTimeoutMs ?? 2000;
    this._maxFrameOption = o.maxFrameLength;
    this._protocols = o.protocols;
    this._reconnect =
      o.reconnect === false
        ? null
        : { initialMs: 500, maxMs: 30000, factor: 2, maxAttempts: Infinity, jitter: 0.5, ...(o.reconnect || {}) };

    /** The session id the gate gave in WELCOME (a new one after each reconnect). @type {string | null} */
    this.sessionId = null;
    /** The heartbeat interval the gate agreed on, in ms (0: none). */
    this.heartbeatMs = 0;
    /** The largest frame length the gate accepts (from WELCOME). */
    this.maxFrameLength = DEFAULT_MAX_FRAME_LENGTH;
    /** The protocol version the gate answered with. */
    this.version = PROTOCOL_VERSION;
    /** "connecting" | "open" | "reconnecting" | "closing" | "closed" */
    this.state = 'connecting';

    this._conn = null;
    this._pending = new Map();
    this._nextId = 1;
    this._listeners = { push: new Set(), close: new Set(), reconnect: new Set(), reconnecting: new Set() };
    this._closeRequested = null; // the reason given to close()
    this._sleep = null;
    /** Settles (never rejects) with the final CloseInfo once the client is closed for good. @type {Promise<CloseInfo>} */
    this.closed = new Promise((resolve) => (this._resolveClosed = resolve));
  }

  // --- events ---------------------------------------------------------------------------------

  /**
   * Calls `fn(topic, body)` for every PUSH (`body` a Uint8Array: see utf8()/json()).
   * @param {(topic: string, body: Uint8Array) => void} fn
   * @returns {() => void} unsubscribes
   */
  onPush(fn) {
    return this._on('push', fn);
  }

  /**
   * Calls `fn(info)` each time a connection ends (see {@link CloseInfo}): after the gate's CLOSE
   * (`by: "server"`, with its `code`, `name` and `reason`), after close(), after a drop; and once
   * more, with `willReconnect: false`, if reconnecting gives up. The last call has
   * `willReconnect: false`, and `gate.closed` settles with the same info.
   * @param {(info: CloseInfo) => void} fn
   * @returns {() => void} unsubscribes
   */
  onClose(fn) {
    return this._on('close', fn);
  }

  /**
   * Calls `fn(info)` after a reconnect succeeded (new session: see `info.sessionId`).
   * @param {(info: ReconnectInfo) => void} fn
   * @returns {() => void} unsubscribes
   */
  onReconnect(fn) {
    return this._on('reconnect', fn);
  }

  /**
   * Calls `fn({attempt, delayMs, error})` before each reconnect attempt (`error`: why the previous
   * attempt failed, if one did).
   * @param {(info: {attempt: number, delayMs: number, error: Error | null}) => void} fn
   * @returns {() => void} unsubscribes
   */
  onReconnecting(fn) {
    return this._on('reconnecting', fn);
  }

  _on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError(`on${name}: expected a function`);
    this._listeners[name].add(fn);
    return () => this._listeners[name].delete(fn);
  }

  _emit(name, ...args) {
    for (const fn of [...this._listeners[name]]) {
      try {
        fn(...args);
      } catch (e) {
        if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
        else console.error(e);
      }
    }
  }

  // --- calls ----------------------------------------------------------------------------------

  /** Requests in flight. */
  get pending() {
    return this._pending.size;
  }

  /**
   * Calls `route` ("module/func") with `body` (see {@link encodeBody}: Uint8Array, string → UTF-8,
   * other values → JSON) and resolves with the answer's body when its status is ok: a Uint8Array,
   * or text / a JSON value with `{as: "text"}` / `{as: "json"}`. Rejects with a GatekitError:
   * kind "status" (`.status` = the status name) for any other status, "timeout" after the request
   * timeout, "disconnected" / "closed" if the connection ends first, "invalid" for a bad route or
   * a body over the gate's frame limit.
   * @param {string} route
   * @param {any} [body]
   * @param {{timeoutMs?: number, as?: 'bytes' | 'text' | 'json'}} [options]
   * @returns {Promise<Uint8Array | string | any>}
   */
  request(route, body, options = {}) {
    return new Promise((resolve, reject) => {
      const conn = this._conn;
      if (this.state !== 'open' || !conn) {
        reject(this._notOpenError(`request ${route}`));
        return;
      }
      let id = this._nextId;
      while (this._pending.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
      this._nextId = id >= 0xffffffff ? 1 : id + 1;
      let frame;
      try {
        frame = encode({ type: 'request', id, route, body }, this.maxFrameLength);
      } catch (e) {
        reject(e);
        return;
      }
      const timeoutMs = options.timeoutMs ?? this._requestTimeoutMs;
      const entry = { resolve, reject, route, id, as: options.as ?? 'bytes', timer: null };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          if (this._pending.get(id) !== entry) return;
          this._pending.delete(id);
          reject(new GatekitError(`request ${route} (id ${id}) got no answer within ${timeoutMs} ms`, 'timeout', { route, id }));
        }, timeoutMs);
      }
      this._pending.set(id, entry);
      this._send(conn, frame);
    });
  }

  /**
   * Sends a NOTIFY (no answer). Throws a GatekitError ("disconnected" / "closed" when not open,
   * "invalid" for a bad route or an oversized body).
   * @param {string} route "module/func"
   * @param {any} [body]
   */
  notify(route, body) {
    const conn = this._conn;
    if (this.state !== 'open' || !conn) throw this._notOpenError(`notify ${route}`);
    this._send(conn, encode({ type: 'notify', route, body }, this.maxFrameLength));
  }

  /**
   * Closes the session for good: sends CLOSE `normal` with `reason`, waits (up to the close
   * timeout) for the gate's own CLOSE, which comes after the gate has answered every request it
   * read before (so requests in flight still get their answers), then closes the WebSocket. Never
   * reconnects afterwards. Requests still unanswered then reject with kind "closed".
   * Also stops a reconnect in progress.
   * @param {string} [reason="bye"] at most 255 bytes of UTF-8 (longer is cut)
   * @returns {Promise<CloseInfo>} the final close info (as `gate.closed`)
   */
  close(reason = 'bye') {
    if (this.state === 'closed' || this._closeRequested !== null) return this.closed;
    this._closeRequested = String(reason);
    const conn = this._conn;
    if (this._sleep) this._sleep(); // wake the reconnect loop, which sees _closeRequested
    if (conn && conn.phase === 'open') {
      this.state = 'closing';
      conn.phase = 'closing';
      this._send(conn, encode({ type: 'close', code: 0, reason: truncateUtf8(this._closeRequested, MAX_REASON_LEN) }));
      conn.closeTimer = setTimeout(() => this._finishClientClose(conn, null), this._closeTimeoutMs);
    } else if (conn) {
      // A handshake in progress (reconnecting): abandon it.
      this._failHandshake(conn, new GatekitError('close() during the handshake', 'closed'));
      this._final({ by: 'client', code: 0, name: 'normal', reason: this._closeRequested, sessionId: this.sessionId });
    } else {
      this._final({ by: 'client', code: 0, name: 'normal', reason: this._closeRequested, sessionId: this.sessionId });
    }
    return this.closed;
  }

  _notOpenError(what) {
    if (this.state === 'closed' || this.state === 'closing') {
      return new GatekitError(`${what}: the session is closed`, 'closed');
    }
    return new GatekitError(`${what}: not connected (${this.state})`, 'disconnected');
  }

  // --- connections ----------------------------------------------------------------------------

  /** Opens a WebSocket and handshakes. Resolves once WELCOME came (the connection is then current). */
  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = this._protocols === undefined ? new this._WebSocket(this.url) : new this._WebSocket(this.url, this._protocols);
      } catch (e) {
        reject(new GatekitError(`cannot open WebSocket ${this.url}: ${e && e.message ? e.message : e}`, 'websocket', { cause: e }));
        return;
      }
      ws.binaryType = 'arraybuffer';
      const conn = {
        ws,
        phase: 'handshake', // handshake | open | closing | done
        decoder: new Decoder({ maxFrameLength: this._maxFrameOption ?? DEFAULT_MAX_FRAME_LENGTH }),
        resolve,
        reject,
        handshakeTimer: null,
        heartbeatTimer: null,
        closeTimer: null,
        lastSentAt: Date.now(),
        lastRecvAt: Date.now(),
        pingSentAt: null, // a PING not answered yet (by any packet)
        serverClose: null,
      };
      this._conn = conn;
      conn.handshakeTimer = setTimeout(() => {
        this._failHandshake(conn, new GatekitError(`no WELCOME from ${this.url} within ${this._handshakeTimeoutMs} ms`, 'handshake-timeout'));
      }, this._handshakeTimeoutMs);
      ws.onopen = () => {
        if (conn.phase !== 'handshake') return;
        this._send(conn, encode({ type: 'handshake', version: PROTOCOL_VERSION, heartbeat: this._askHeartbeat, token: this._token }));
      };
      ws.onmessage = (ev) => this._onMessage(conn, ev.data);
      ws.onerror = () => {
        conn.wsError = true;
      };
      ws.onclose = (ev) => this._onSocketClose(conn, ev);
    });
  }

  _send(conn, bytes) {
    if (conn.phase === 'done') return;
    try {
      conn.ws.send(bytes);
      conn.lastSentAt = Date.now();
    } catch (e) {
      // The socket is closing or closed: its close event handles the rest.
    }
  }

  _onMessage(conn, data) {
    if (conn.phase === 'done') return;
    if (typeof data === 'string') {
      this._protocolFailure(conn, protocolError('a text WebSocket message: the gate sends binary messages only', true));
      return;
    }
    if (typeof Blob !== 'undefined' && data instanceof Blob) {
      // binaryType was not honoured: keep order by chaining the reads.
      conn.blobChain = (conn.blobChain || Promise.resolve())
        .then(() => data.arrayBuffer())
        .then((buf) => this._onMessage(conn, buf));
      return;
    }
    try {
      conn.decoder.push(data);
      for (;;) {
        if (conn.phase === 'done') return;
        const pkt = conn.decoder.next();
        if (!pkt) break;
        conn.lastRecvAt = Date.now();
        conn.pingSentAt = null;
        this._onPacket(conn, pkt);
      }
    } catch (e) {
      if (e instanceof GatekitError && e.kind === 'protocol') this._protocolFailure(conn, e);
      else throw e;
    }
  }

  _onPacket(conn, pkt) {
    if (conn.phase === 'handshake') {
      if (pkt.type === 'welcome') {
        this._onWelcome(conn, pkt);
      } else if (pkt.type === 'close') {
        conn.serverClose = pkt;
        this._failHandshake(
          conn,
          new GatekitError(`the gate refused the session: ${pkt.codeName}${pkt.reason ? ` (${pkt.reason})` : ''}`, 'refused', {
            closeCode: pkt.code,
            closeName: pkt.codeName,
            reason: pkt.reason,
          }),
        );
      } else {
        this._protocolFailure(conn, protocolError(`${KIND_NAME[KIND[pkt.type]]} before WELCOME`, false));
      }
      return;
    }
    switch (pkt.type) {
      case 'response': {
        const entry = this._pending.get(pkt.id);
        if (!entry) return; // answered after our timeout: dropped
        this._pending.delete(pkt.id);
        if (entry.timer) clearTimeout(entry.timer);
        if (pkt.status === 0) {
          try {
            entry.resolve(entry.as === 'text' ? utf8(pkt.body) : entry.as === 'json' ? json(pkt.body) : pkt.body);
          } catch (e) {
            entry.reject(e);
          }
        } else {
          const detail = pkt.body.length > 0 ? `: ${utf8(pkt.body.subarray(0, 200))}` : '';
          entry.reject(
            new GatekitError(`request ${entry.route} (id ${pkt.id}) answered ${pkt.statusName}${detail}`, 'status', {
              status: pkt.statusName,
              statusCode: pkt.status,
              body: pkt.body,
              route: entry.route,
              id: pkt.id,
            }),
          );
        }
        return;
      }
      case 'push':
        this._emit('push', pkt.topic, pkt.body);
        return;
      case 'ping':
        this._send(conn, encode({ type: 'pong' }));
        return;
      case 'pong':
        return;
      case 'close':
        conn.serverClose = pkt;
        if (conn.phase === 'closing') {
          this._finishClientClose(conn, pkt);
        } else {
          this._endConnection(conn, { by: 'server', code: pkt.code, name: pkt.codeName, reason: pkt.reason });
        }
        return;
      case 'welcome':
        this._protocolFailure(conn, protocolError('a second WELCOME after the session opened', false));
        return;
      default:
        this._protocolFailure(conn, protocolError(`${KIND_NAME[KIND[pkt.type]]} is sent by clients, not by the gate`, false));
    }
  }

  _onWelcome(conn, w) {
    clearTimeout(conn.handshakeTimer);
    conn.phase = 'open';
    this.sessionId = w.sessionId;
    this.heartbeatMs = w.heartbeat * 1000;
    this.version = w.version;
    this.maxFrameLength = Math.max(1, Math.min(w.maxFrame, MAX_FRAME_LENGTH_CAP));
    if (this._maxFrameOption === undefined) conn.decoder.maxFrameLength = this.maxFrameLength;
    this.state = 'open';
    if (this.heartbeatMs > 0) {
      conn.heartbeatTimer = setInterval(() => this._tick(conn), this.heartbeatMs / 2);
    }
    conn.resolve(w);
  }

  /**
   * Twice per agreed heartbeat interval H: a PING that got no packet back within H means the gate
   * is gone (the connection is closed as dropped, and reconnects); otherwise PING when nothing was
   * sent, or nothing received, for H. (Any packet from the gate answers a PING; the gate closes a
   * connection silent for 3 H.)
   */
  _tick(conn) {
    if (conn.phase !== 'open' && conn.phase !== 'closing') return;
    const now = Date.now();
    const h = this.heartbeatMs;
    const due = h * 0.75; // ticks come every h/2, a little early or late
    if (conn.pingSentAt !== null) {
      if (now - conn.pingSentAt >= due) {
        const reason = `no answer to PING within ${h} ms`;
        this._send(conn, encode({ type: 'close', code: 1, reason }));
        this._endConnection(conn, { by: 'drop', code: null, name: null, reason });
      }
      return;
    }
    if (now - conn.lastSentAt >= due || now - conn.lastRecvAt >= due) {
      this._send(conn, encode({ type: 'ping' }));
      conn.pingSentAt = now;
    }
  }

  _failHandshake(conn, err) {
    if (conn.phase !== 'handshake') return;
    this._abort(conn);
    conn.reject(err);
  }

  /** Bytes from the gate break the protocol: CLOSE with the reason, then close. Never reconnects. */
  _protocolFailure(conn, err) {
    if (conn.phase === 'done') return;
    const code = err.closeCode ?? 2;
    this._send(conn, encode({ type: 'close', code, reason: truncateUtf8(err.message, MAX_REASON_LEN) }));
    if (conn.phase === 'handshake') {
      this._failHandshake(conn, err);
      return;
    }
    this._endConnection(conn, { by: 'error', code, name: CLOSE_CODE[code], reason: err.message, error: err });
  }

  _onSocketClose(conn, ev) {
    if (conn.phase === 'done') return;
    const wsCode = ev && typeof ev.code === 'number' ? ev.code : undefined;
    if (conn.phase === 'handshake') {
      this._failHandshake(
        conn,
        new GatekitError(
          `WebSocket ${this.url} closed before WELCOME${wsCode !== undefined ? ` (code ${wsCode})` : ''}`,
          'websocket',
          { wsCode },
        ),
      );
      return;
    }
    if (conn.phase === 'closing') {
      this._finishClientClose(conn, conn.serverClose, wsCode);
      return;
    }
    this._endConnection(conn, { by: 'drop', code: null, name: null, reason: 'connection lost without CLOSE', wsCode });
  }

  /** Stops a connection's timers and handlers and closes its socket. */
  _abort(conn) {
    if (conn.phase === 'done') return;
    conn.phase = 'done';
    clearTimeout(conn.handshakeTimer);
    clearInterval(conn.heartbeatTimer);
    clearTimeout(conn.closeTimer);
    const ws = conn.ws;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(1000);
    } catch {
      /* already closed */
    }
    if (this._conn === conn) this._conn = null;
  }

  _rejectPending(kind, message, props = {}) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const e of pending) {
      if (e.timer) clearTimeout(e.timer);
      e.reject(new GatekitError(`request ${e.route} (id ${e.id}): ${message}`, kind, { route: e.route, id: e.id, ...props }));
    }
  }

  _finishClientClose(conn, serverClose, wsCode) {
    if (conn.phase === 'done') return;
    this._abort(conn);
    this._rejectPending('closed', 'the session was closed before the answer came');
    const info = { by: 'client', code: 0, name: 'normal', reason: this._closeRequested, sessionId: this.sessionId };
    if (serverClose) info.server = { code: serverClose.code, name: serverClose.codeName, reason: serverClose.reason };
    if (wsCode !== undefined) info.wsCode = wsCode;
    this._final(info);
  }

  /** A connection that was open ended (not by close()): reject what is pending, maybe reconnect. */
  _endConnection(conn, info) {
    if (conn.phase === 'done') return;
    this._abort(conn);
    info.sessionId = this.sessionId;
    if (info.by === 'server') {
      this._rejectPending('closed', `the gate closed the session: ${info.name}${info.reason ? ` (${info.reason})` : ''}`, {
        closeCode: info.code,
        closeName: info.name,
        reason: info.reason,
      });
    } else {
      this._rejectPending('disconnected', `the connection ended before the answer came: ${info.reason}`);
    }
    const willReconnect = this._wantsReconnect(info);
    info.willReconnect = willReconnect;
    if (!willReconnect) {
      this._final(info);
      return;
    }
    this.state = 'reconnecting';
    this._emit('close', info);
    this._reconnectLoop();
  }

  _wantsReconnect(info) {
    if (!this._reconnect || this._closeRequested !== null) return false;
    if (typeof this._reconnect.shouldReconnect === 'function') return !!this._reconnect.shouldReconnect(info);
    if (info.by === 'drop') return true;
    if (info.by === 'server') return shouldReconnectAfter(info.code);
    return false; // 'error': the gate speaks something else; trying again would fail the same way
  }

  _final(info) {
    if (this.state === 'closed') return;
    info.willReconnect = false;
    this.state = 'closed';
    this._rejectPending('closed', 'the session was closed before the answer came');
    this._emit('close', info);
    this._resolveClosed(info);
  }

  _delay(attempt) {
    const r = this._reconnect;
    const base = Math.min(r.maxMs, r.initialMs * r.factor ** (attempt - 1));
    const jitter = Math.min(1, Math.max(0, r.jitter));
    return Math.round(base * (1 - jitter * Math.random()));
  }

  async _reconnectLoop() {
    const r = this._reconnect;
    const previous = this.sessionId;
    let error = null;
    let attempt = 0;
    while (attempt < r.maxAttempts) {
      attempt++;
      const delayMs = this._delay(attempt);
      this._emit('reconnecting', { attempt, delayMs, error });
      await new Promise((resolve) => {
        const t = setTimeout(resolve, delayMs);
        this._sleep = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this._sleep = null;
      if (this._closeRequested !== null || this.state === 'closed') return;
      try {
        await this._open();
      } catch (e) {
        error = e;
        if (this._closeRequested !== null || this.state === 'closed') return;
        if (e.kind === 'refused') {
          const info = { by: 'server', code: e.closeCode, name: e.closeName, reason: e.reason, sessionId: null };
          if (!this._wantsReconnect(info)) {
            this._final({ ...info, attempts: attempt, error: e });
            return;
          }
        }
        continue;
      }
      if (this._closeRequested !== null) return; // close() during the handshake handled it
      this._emit('reconnect', { attempt, sessionId: this.sessionId, previousSessionId: previous });
      return;
    }
    this._final({
      by: 'drop',
      code: null,
      name: null,
      reason: `gave up reconnecting after ${attempt} attempts${error ? `: ${error.message}` : ''}`,
      sessionId: this.sessionId,
      attempts: attempt,
      error,
    });
  }
}

/**
 * Opens a session with a gate: a WebSocket to `url` (binary messages carrying the native
 * protocol), HANDSHAKE (with `options.token`), and resolves on WELCOME with the client
 * (`gate.sessionId`, `gate.heartbeatMs`, `gate.maxFrameLength` set). Rejects with a GatekitError:
 * kind "refused" if the gate answers CLOSE (`.closeName`, e.g. "unauthorized", "server full"),
 * "handshake-timeout" if no WELCOME comes in time, "websocket" if the socket cannot be opened or
 * closes first, "protocol" if the gate's bytes are not the native protocol. The first connection
 * is not retried: reconnecting is for sessions that were open.
 *
 * ```js
 * const gate = await connect('ws://127.0.0.1:7001/gate', { token: 'secret' });
 * const answer = await gate.request('chat/send', { text: 'hi' });
 * ```
 * @param {string} url ws:// or wss:// URL of the gate's WebSocket listener
 * @param {ConnectOptions} [options]
 * @returns {Promise<GateClient>}
 */
export async function connect(url, options = {}) {
  const gate = new GateClient(url, options);
  try {
    await gate._open();
  } catch (e) {
    gate.state = 'closed';
    throw e;
  }
  return gate;
}

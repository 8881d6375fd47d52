#!/usr/bin/env python3
"""A game client of gatekit's native protocol (docs/PROTOCOL.md) over WebSocket, TLS or TCP, run
by harness/tests/peers_transports.rs.

    python3 client.py --url ws://127.0.0.1:PORT/gate [--no-subprotocol]
    python3 client.py --url wss://127.0.0.1:PORT/gate --tls-ca ca.pem
    python3 client.py --tcp 127.0.0.1:PORT --tls-ca ca.pem      # native over TLS (Python's ssl)
    python3 client.py --tcp 127.0.0.1:PORT                      # native over plain TCP

WebSocket is the `websockets` package (PyPI, 15.x, its sync client); TLS is Python's own `ssl`
module, verifying the gate's certificate against `--tls-ca` (TLS 1.2 or 1.3, host name checked).
Over WebSocket every packet goes out as one binary message, and what arrives is read as a byte
stream (a message may hold part of a frame or several).

The steps, each one JSON line on stdout: the transport opened (`ws_open` with the subprotocol
the gate selected, or `tls` with version, cipher and ALPN, or `tcp`), HANDSHAKE answered by
WELCOME, a REQUEST to `echo/say` answered by a RESPONSE with its body, a PUSH received (run the gate
with `--push-rate`), PING answered by PONG, CLOSE `normal` with a reason answered by the gate's
CLOSE, then the end of the transport: `ws_closed` with the close code and reason the gate sent
(1000 for a graceful close) or `eof`. Pushes that arrive between steps are counted, not printed.

Exit codes: 0 every step done; 1 a step failed (`failed` line); 3 the TLS handshake failed
(`tls_error` line with OpenSSL's reason and verify code). Loopback only; 20 s at most.
"""

import argparse
import json
import socket
import ssl
import struct
import sys
import time

DEADLINE = time.monotonic() + 20

HANDSHAKE, WELCOME, REQUEST, RESPONSE, NOTIFY, PUSH, PING, PONG, CLOSE = range(1, 10)
NAMES = {
    1: "HANDSHAKE",
    2: "WELCOME",
    3: "REQUEST",
    4: "RESPONSE",
    5: "NOTIFY",
    6: "PUSH",
    7: "PING",
    8: "PONG",
    9: "CLOSE",
}


def say(step, **fields):
    print(json.dumps(dict(step=step, **fields)), flush=True)


def fail(why):
    say("failed", why=str(why))
    sys.exit(1)


def left():
    t = DEADLINE - time.monotonic()
    if t <= 0:
        fail("timed out after 20 s")
    return t


# --- frames (docs/PROTOCOL.md, "Frames") -------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def frame(kind, payload=b""):
    return varint(1 + len(payload)) + bytes([kind]) + payload


def take_frame(buf):
    """(kind, payload, rest) for the first complete frame of `buf`, or None."""
    n = 0
    for i in range(4):
        if i >= len(buf):
            return None
        b = buf[i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            start = i + 1
            break
    else:
        fail(f"length prefix over 4 bytes: {buf[:4].hex()}")
    if n == 0:
        fail("an empty frame")
    if len(buf) < start + n:
        return None
    return buf[start], bytes(buf[start + 1 : start + n]), buf[start + n :]


def text8(s):
    b = s.encode()
    return bytes([len(b)]) + b


# --- transports ---------------------------------------------------------------------------------


def tls_context(ca, tls_max):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_failed(e):
    say(
        "tls_error",
        reason=getattr(e, "reason", None),
        verify_code=getattr(e, "verify_code", None),
        verify_message=getattr(e, "verify_message", None),
        error=str(e),
    )
    sys.exit(3)


class Tcp:
    """Native over a TCP socket, wrapped in TLS when a CA is given."""

    def __init__(self, target, ca, server_name, alpn, tls_max):
        host, _, port = target.rpartition(":")
        raw = socket.create_connection((host, int(port)), timeout=left())
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca is None:
            self.sock = raw
            say("tcp", peer=target)
            return
        ctx = tls_context(ca, tls_max)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_name or host)
        except ssl.SSLError as e:
            raw.close()
            tls_failed(e)
        say(
            "tls",
            version=self.sock.version(),
            cipher=self.sock.cipher()[0],
            alpn=self.sock.selected_alpn_protocol(),
        )

    def send(self, data):
        self.sock.settimeout(left())
        self.sock.sendall(data)

    def recv(self):
        """Bytes, or b"" at the end of the stream."""
        self.sock.settimeout(left())
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            fail("timed out after 20 s")

    def finish(self):
        """After the gate's CLOSE: the stream must end."""
        rest = b""
        clean = True
        while True:
            try:
                chunk = self.recv()
            except ssl.SSLEOFError:
                # The TCP stream ended without TLS's close_notify.
                clean = False
                break
            if not chunk:
                break
            rest += chunk
        if rest:
            fail(f"{len(rest)} bytes after the gate's CLOSE: {rest[:32].hex()}")
        say("eof", close_notify=clean if isinstance(self.sock, ssl.SSLSocket) else None)
        self.sock.close()


class Ws:
    """Native over WebSocket (binary messages), on the `websockets` package's sync client."""

    def __init__(self, url, ca, subprotocols, tls_max):
        from websockets.sync.client import connect

        kwargs = {}
        if url.startswith("wss:"):
            ctx = tls_context(ca, tls_max)
            # As browsers do: the gate's wss listeners select http/1.1.
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            kwargs["ssl"] = ctx
        try:
            self.ws = connect(
                url,
                subprotocols=subprotocols or None,
                open_timeout=left(),
                close_timeout=5,
                max_size=1 << 20,
                proxy=None,  # loopback: never through an HTTP proxy from the environment
                **kwargs,
            )
        except ssl.SSLError as e:
            tls_failed(e)
        sock = self.ws.socket
        tls = (
            {"tls": sock.version(), "alpn": sock.selected_alpn_protocol()}
            if isinstance(sock, ssl.SSLSocket)
            else {}
        )
        say(
            "ws_open",
            subprotocol=self.ws.subprotocol,
            extensions=self.ws.response.headers.get("Sec-WebSocket-Extensions"),
            **tls,
        )

    def send(self, data):
        self.ws.send(data)

    def recv(self):
        from websockets.exceptions import ConnectionClosed

        try:
            msg = self.ws.recv(timeout=left())
        except TimeoutError:
            fail("timed out after 20 s")
        except ConnectionClosed:
            return b""
        if isinstance(msg, str):
            fail(f"a text message from the gate: {msg[:64]!r}")
        return msg

    def finish(self):
        """After the gate's CLOSE: the gate's Close frame, answered (the close handshake)."""
        from websockets.exceptions import ConnectionClosed

        try:
            msg = self.ws.recv(timeout=left())
            fail(f"a message after the gate's CLOSE: {msg[:32]!r}")
        except TimeoutError:
            fail("the gate did not close the WebSocket")
        except ConnectionClosed:
            pass
        rcvd, sent = self.ws.protocol.close_rcvd, self.ws.protocol.close_sent
        say(
            "ws_closed",
            code=rcvd.code if rcvd else None,
            reason=rcvd.reason if rcvd else None,
            sent_code=sent.code if sent else None,
            # The gate's Close came first and this client answered it.
            gate_first=bool(self.ws.protocol.close_rcvd_then_sent),
        )
        self.ws.close()


# --- the conversation ---------------------------------------------------------------------------


class Conversation:
    def __init__(self, transport):
        self.t = transport
        self.buf = b""
        self.pushes = []
        self.pings_answered = 0

    def send(self, kind, payload=b""):
        self.t.send(frame(kind, payload))

    def next(self):
        """The next packet from the gate (PINGs from the gate answered)."""
        while True:
            got = take_frame(self.buf)
            if got is not None:
                kind, payload, self.buf = got
                if kind == PING:
                    self.send(PONG)
                    self.pings_answered += 1
                    continue
                return kind, payload
            chunk = self.t.recv()
            if not chunk:
                fail(f"the gate ended the stream ({len(self.buf)} bytes pending)")
            self.buf += chunk

    def expect(self, want):
        """The next packet of kind `want`; pushes on the way are kept."""
        while True:
            kind, payload = self.next()
            if kind == want:
                return payload
            if kind == PUSH:
                self.pushes.append(payload)
                continue
            if kind == CLOSE:
                fail(f"CLOSE code {payload[0]} {payload[1:].decode(errors='replace')!r}")
            fail(f"{NAMES.get(kind, kind)} while waiting for {NAMES[want]}")


def push_fields(payload):
    n = payload[0]
    return {"topic": payload[1 : 1 + n].decode(), "bytes": len(payload) - 1 - n}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")
    where.add_argument("--tcp", metavar="HOST:PORT", help="native over TCP (TLS with --tls-ca)")
    p.add_argument("--tls-ca", metavar="FILE", help="PEM CA certificates to verify the gate with")
    p.add_argument("--server-name", help="TLS server name to check (default: the host)")
    p.add_argument(
        "--tls-max", choices=["1.2", "1.3"], default="1.3", help="the highest TLS version offered"
    )
    p.add_argument(
        "--alpn", action="append", default=[], help="an ALPN protocol to offer (--tcp; repeatable)"
    )
    p.add_argument(
        "--no-subprotocol",
        action="store_true",
        help="offer no WebSocket subprotocol (default: offer `gatekit`)",
    )
    p.add_argument("--token", default="py-native", help="the HANDSHAKE token")
    p.add_argument("--body", default='{"hello":"gatekit"}', help="the echo request's body")
    a = p.parse_args()
    if a.url and a.url.startswith("wss:") and not a.tls_ca:
        p.error("wss:// needs --tls-ca")

    if a.url:
        t = Ws(a.url, a.tls_ca, [] if a.no_subprotocol else ["gatekit"], a.tls_max)
    else:
        t = Tcp(a.tcp, a.tls_ca, a.server_name, a.alpn, a.tls_max)
    c = Conversation(t)

    # HANDSHAKE version 1, heartbeat 5 s → WELCOME.
    c.send(HANDSHAKE, bytes([1]) + struct.pack(">H", 5) + a.token.encode())
    w = c.expect(WELCOME)
    version, heartbeat, max_frame = w[0], *struct.unpack(">HI", w[1:7])
    say(
        "welcome",
        version=version,
        heartbeat=heartbeat,
        max_frame=max_frame,
        session=w[7:].decode(),
    )

    # REQUEST id 1 to echo/say → RESPONSE id 1, status ok, the body.
    c.send(REQUEST, struct.pack(">I", 1) + text8("echo/say") + a.body.encode())
    r = c.expect(RESPONSE)
    say("response", id=struct.unpack(">I", r[:4])[0], status=r[4], body=r[5:].decode())

    # A PUSH (perhaps already here).
    push = c.pushes.pop(0) if c.pushes else c.expect(PUSH)
    say("push", **push_fields(push))

    # PING → PONG.
    c.send(PING)
    c.expect(PONG)
    say("pong")

    # CLOSE normal with a reason → the gate's CLOSE (normal "bye"), then the transport's end.
    c.send(CLOSE, bytes([0]) + b"python client done")
    g = c.expect(CLOSE)
    say(
        "close",
        code=g[0],
        reason=g[1:].decode(),
        pushes_between=len(c.pushes),
        pings_answered=c.pings_answered,
    )
    if c.buf:
        fail(f"{len(c.buf)} bytes after the gate's CLOSE")
    t.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A chat client of gatekit's native protocol (docs/PROTOCOL.md) over TCP, for the README's walk
through a gate with the example chat back end (examples/backends/): it logs in, joins a room,
says something if asked to, and prints every message pushed to it until --listen ends.

    python3 chat_client.py --gate 127.0.0.1:7000 --name bob --room lobby --listen 10
    python3 chat_client.py --gate 127.0.0.1:7000 --name alice --room lobby --say "hi bob"

Each step is one line on stdout: `welcome <session>`, `login <status> <body>`, `join <status>
<body>`, `send <status> <body>`, `push <topic> <body>`, `closed <code> <reason>`. Exit code 0,
or 1 when the gate refuses a step or the connection breaks. Only the standard library.
"""

import argparse
import socket
import struct
import sys
import time

HANDSHAKE, WELCOME, REQUEST, RESPONSE, NOTIFY, PUSH, PING, PONG, CLOSE = range(1, 10)
STATUS = {0: "ok", 1: "not_found", 2: "timeout", 3: "busy", 4: "internal_error", 5: "failed"}


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def frame(kind, payload=b""):
    return varint(1 + len(payload)) + bytes([kind]) + payload


class Gate:
    def __init__(self, target):
        host, _, port = target.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""
        self.next_id = 1

    def send(self, kind, payload=b""):
        self.sock.sendall(frame(kind, payload))

    def packet(self, deadline):
        """The next (kind, payload), or None at the deadline."""
        while True:
            n, shift, i = 0, 0, 0
            while i < len(self.buf) and i < 4:
                n |= (self.buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not self.buf[i - 1] & 0x80:
                    if len(self.buf) >= i + n:
                        kind, body = self.buf[i], self.buf[i + 1 : i + n]
                        self.buf = self.buf[i + n :]
                        return kind, body
                    break
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                print("closed eof", flush=True)
                sys.exit(1)
            self.buf += chunk

    def show(self, kind, body):
        if kind == PUSH:
            n = body[0]
            print(f"push {body[1:1 + n].decode()} {body[1 + n:].decode(errors='replace')}", flush=True)
        elif kind == CLOSE:
            print(f"closed {body[0]} {body[1:].decode(errors='replace')}", flush=True)
            sys.exit(0 if body[0] == 0 else 1)
        elif kind == PING:
            self.send(PONG)

    def request(self, route, body):
        rid = self.next_id
        self.next_id += 1
        r = route.encode()
        self.send(REQUEST, struct.pack(">I", rid) + bytes([len(r)]) + r + body.encode())
        deadline = time.monotonic() + 15
        while True:
            got = self.packet(deadline)
            if got is None:
                print(f"{route} no answer in 15 s", flush=True)
                sys.exit(1)
            kind, payload = got
            if kind == RESPONSE and struct.unpack(">I", payload[:4])[0] == rid:
                return STATUS.get(payload[4], str(payload[4])), payload[5:].decode(errors="replace")
            self.show(kind, payload)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gate", default="127.0.0.1:7000", help="the gate's native tcp listener")
    p.add_argument("--name", required=True, help="the user name to log in with (chat/login)")
    p.add_argument("--room", default="lobby", help="the room to join (chat/join)")
    p.add_argument("--say", help="a message for the room (chat/send)")
    p.add_argument("--token", default="", help="the HANDSHAKE token (with [auth] in the gate)")
    p.add_argument("--listen", type=float, default=1.0, help="seconds to print pushes for")
    a = p.parse_args()

    g = Gate(a.gate)
    g.send(HANDSHAKE, bytes([1]) + struct.pack(">H", 30) + a.token.encode())
    got = g.packet(time.monotonic() + 10)
    if got is None or got[0] != WELCOME:
        if got is not None:
            g.show(*got)
        print("no WELCOME", flush=True)
        sys.exit(1)
    print(f"welcome {got[1][7:].decode()}", flush=True)
    for step, route, body in [
        ("login", "chat/login", a.name),
        ("join", "chat/join", a.room),
    ] + ([("send", "chat/send", a.say)] if a.say else []):
        status, answer = g.request(route, body)
        print(f"{step} {status} {answer}", flush=True)
        if status != "ok":
            sys.exit(1)
    deadline = time.monotonic() + a.listen
    while (got := g.packet(deadline)) is not None:
        g.show(*got)
    g.send(CLOSE, bytes([0]) + b"bye")
    end = time.monotonic() + 2
    while (got := g.packet(end)) is not None:
        if got[0] == CLOSE:
            print(f"closed {got[1][0]} {got[1][1:].decode(errors='replace')}", flush=True)
            return
        g.show(*got)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The chat module of docs/CLUSTER.md: a gatekit back end in Python with nats-py (asyncio).

    python3 chat.py [--nats nats://127.0.0.1:4222] [--prefix gatekit] [--id ID]

It subscribes to <prefix>.rpc.chat.> in queue group "chat" (and, with --id, to
<prefix>.rpc.chat@<id>.> in queue group "chat@<id>"), prints "ready" once subscribed, and
answers the clients' calls. The gate turns a client's request "chat/join" into a NATS request on
gatekit.rpc.chat.join, the client's body as payload, the session in headers (Gatekit-Session,
Gatekit-Gate, Gatekit-User, Gatekit-Settings...); the reply's payload is the client's response,
its Gatekit-Status header the response's status.

    chat/join   body: a room name  remembers the session in the room (leaving its previous one),
                                   sets its session setting "room" (gate RPC "set");
                                   answers {"room": "lobby", "members": 2}
    chat/send   body: a text       sends {"from": <user or session id>, "text": ...} on topic
                                   chat/message to every member of the sender's room, the sender
                                   included (gate RPC "send"); answers {"delivered": 2}
    chat/kick   body: a session id closes that member of the sender's room with reason
                                   "kicked by <from>" (gate RPC "close"); answers {"ok": true}
    chat/login  body: a user name  binds it to the session (gate RPC "bind"); answers {"ok": true}

Another function is answered Gatekit-Status: not_found; a body it cannot use (not UTF-8, empty,
too long), a send before any join, or a gate RPC refused: Gatekit-Status: failed, the reason as
payload. A notify (no reply subject) is handled the same, unanswered. A member whose gate answers
no_such_session is dropped from its room (gates do not tell back ends about disconnects: this is
how members leave).

The rooms live in this process's memory: run one instance, or pin rooms to instances with --id
(clients call chat@1/join). A session whose calls carry the setting "room" (Gatekit-Settings)
this process does not know, after a restart, is taken back into that room.

NATS_URL and GATEKIT_PREFIX are read when --nats and --prefix are not given. The client
reconnects forever when the NATS connection is lost. SIGTERM or SIGINT: unsubscribe, finish the
calls in flight (5 s at most), flush, exit 0.

Needs Python 3.8+ and nats-py 2 (requirements.txt). The same module in Rust:
examples/backends/rust/.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

import nats
from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError

MODULE = "chat"
GATE_RPC_TIMEOUT = 3.0  # seconds given to one gate RPC
MAX_NAME = 64  # longest room or user name, in characters


def compact(value):
    """JSON without spaces, as the Rust back end writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def log(*args):
    print("chat:", *args, file=sys.stderr, flush=True)


class Answer:
    """What a call is answered: the payload, and Gatekit-Status when not ok."""

    def __init__(self, body, status=None):
        self.body = body if isinstance(body, bytes) else body.encode()
        self.status = status

    @staticmethod
    def ok(value):
        return Answer(compact(value))

    @staticmethod
    def failed(message):
        return Answer(message, "failed")

    @staticmethod
    def not_found(message):
        return Answer(message, "not_found")


class RpcError(Exception):
    """A gate RPC that did not succeed: code is the gate's error code, None if it did not answer."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code


class BadBody(Exception):
    pass


def name(body, what):
    """A room or user name from a body: UTF-8, trimmed, 1 to 64 characters, no control
    characters (it may become a header value: Gatekit-User)."""
    try:
        s = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadBody(f"the {what} is not UTF-8")
    if not s:
        raise BadBody(f"empty {what}")
    if len(s) > MAX_NAME:
        raise BadBody(f"the {what} is longer than {MAX_NAME} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in s):
        raise BadBody(f"the {what} has a control character")
    return s


class Rooms:
    """The rooms this instance knows; a member is (gate id, session id)."""

    def __init__(self):
        self.members = {}  # room -> set of members
        self.room_of = {}  # member -> room

    def join(self, member, room):
        """Puts member in room (out of the room it was in); returns the room's member count."""
        self.leave(member)
        self.room_of[member] = room
        self.members.setdefault(room, set()).add(member)
        return len(self.members[room])

    def leave(self, member):
        old = self.room_of.pop(member, None)
        if old is not None:
            s = self.members.get(old, set())
            s.discard(member)
            if not s:
                self.members.pop(old, None)


class Call:
    """One call from the gate, its session headers read."""

    def __init__(self, member, sender, room_setting, body):
        self.member = member  # (gate id, session id)
        self.sender = sender  # Gatekit-User, else the session id
        self.room_setting = room_setting  # "room" of Gatekit-Settings
        self.body = body


class Chat:
    def __init__(self, nc, prefix):
        self.nc = nc
        self.prefix = prefix
        self.rooms = Rooms()

    async def gate_rpc(self, gate, op, headers, payload=b""):
        """A request to <prefix>.gate.<gate>.<op>; its JSON answer when "ok" is true."""
        subject = f"{self.prefix}.gate.{gate}.{op}"
        try:
            reply = await self.nc.request(
                subject, payload, timeout=GATE_RPC_TIMEOUT, headers=headers
            )
        except NoRespondersError:
            raise RpcError(None, f"{subject}: no gate answers")
        except NatsTimeoutError:
            raise RpcError(None, f"{subject}: timed out")
        except Exception as e:  # connection closed, reconnecting...
            raise RpcError(None, f"{subject}: {e}")
        try:
            v = json.loads(reply.data)
        except ValueError as e:
            raise RpcError(None, f"{subject}: answer is not JSON: {e}")
        if isinstance(v, dict) and v.get("ok") is True:
            return v
        v = v if isinstance(v, dict) else {}
        raise RpcError(str(v.get("error", "")), str(v.get("message", "")))

    def room_of(self, call):
        """The sender's room: the one it joined here, or its "room" setting, taken back."""
        room = self.rooms.room_of.get(call.member)
        if room is None and call.room_setting:
            room = call.room_setting
            self.rooms.join(call.member, room)
        return room

    async def dispatch(self, func, call):
        handler = {
            "join": self.join,
            "send": self.send,
            "kick": self.kick,
            "login": self.login,
        }.get(func)
        if handler is None:
            return Answer.not_found(f"{MODULE} has no function {json.dumps(func)}")
        try:
            return await handler(call)
        except BadBody as e:
            return Answer.failed(str(e))

    async def join(self, call):
        room = name(call.body, "room name")
        gate, session = call.member
        try:
            headers = {"Gatekit-Session": session, "Gatekit-Key": "room"}
            await self.gate_rpc(gate, "set", headers, room.encode())
        except RpcError as e:
            return Answer.failed(f"cannot set the session's room: {e}")
        members = self.rooms.join(call.member, room)
        return Answer.ok({"room": room, "members": members})

    async def send(self, call):
        try:
            text = call.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadBody("the message is not UTF-8")
        if not text:
            raise BadBody("empty message")
        room = self.room_of(call)
        if room is None:
            return Answer.failed("join a room first (chat/join)")
        members = sorted(self.rooms.members.get(room, ()))
        message = compact({"from": call.sender, "text": text}).encode()
        results = await asyncio.gather(
            *(
                self.gate_rpc(
                    gate,
                    "send",
                    {"Gatekit-Session": session, "Gatekit-Topic": "chat/message"},
                    message,
                )
                for gate, session in members
            ),
            return_exceptions=True,
        )
        delivered = 0
        for member, r in zip(members, results):
            if not isinstance(r, Exception):
                delivered += 1
            elif isinstance(r, RpcError) and r.code == "no_such_session":
                log(f"{member[1]} left {room!r} (its gate: {r})")
                if self.rooms.room_of.get(member) == room:
                    self.rooms.leave(member)
            else:
                log(f"message to {member[1]} in {room!r} not sent: {r}")
        return Answer.ok({"delivered": delivered})

    async def kick(self, call):
        try:
            target = call.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BadBody("the session id is not UTF-8")
        if not target:
            raise BadBody("give the session id to kick")
        room = self.room_of(call)
        if room is None:
            return Answer.failed("join a room first (chat/join)")
        member = next((m for m in self.rooms.members.get(room, ()) if m[1] == target), None)
        if member is None:
            return Answer.failed(f"{target} is not in room {json.dumps(room)}")
        headers = {"Gatekit-Session": member[1], "Gatekit-Reason": f"kicked by {call.sender}"}
        try:
            await self.gate_rpc(member[0], "close", headers)
        except RpcError as e:
            if e.code == "no_such_session":
                self.rooms.leave(member)
            return Answer.failed(f"cannot kick {target}: {e}")
        self.rooms.leave(member)
        return Answer.ok({"ok": True})

    async def login(self, call):
        user = name(call.body, "user name")
        gate, session = call.member
        try:
            await self.gate_rpc(gate, "bind", {"Gatekit-Session": session, "Gatekit-User": user})
        except RpcError as e:
            return Answer.failed(f"cannot bind {json.dumps(user)}: {e}")
        return Answer.ok({"ok": True})

    async def handle(self, msg, func):
        """Answers one message from the gate (a request), or handles it unanswered (a notify)."""
        headers = {k.lower(): v for k, v in (msg.headers or {}).items()}
        gate, session = headers.get("gatekit-gate"), headers.get("gatekit-session")
        try:
            if not gate or not session:
                answer = Answer.failed("missing the Gatekit-Gate or Gatekit-Session header")
            else:
                room_setting = None
                try:
                    settings = json.loads(headers.get("gatekit-settings") or "{}")
                    if isinstance(settings, dict) and isinstance(settings.get("room"), str):
                        room_setting = settings["room"]
                except ValueError:
                    pass
                sender = headers.get("gatekit-user") or session
                call = Call((gate, session), sender, room_setting, msg.data)
                answer = await self.dispatch(func, call)
        except Exception as e:  # a bug here must not leave the client waiting for the timeout
            log(f"{func}: {e!r}")
            answer = Answer(f"chat: {e}", "failed")
        if not msg.reply:
            if answer.status:
                log(f"notify {func}: {answer.status}: {answer.body.decode(errors='replace')}")
            return
        try:
            status = {"Gatekit-Status": answer.status} if answer.status else None
            await self.nc.publish(msg.reply, answer.body, headers=status)
        except Exception as e:
            log(f"reply to {func} not sent: {e}")


def valid_token(t):
    return bool(t) and not any(c in ".*>" or c.isspace() for c in t)


async def run(args):
    async def error_cb(e):
        log(f"NATS: {e}")

    async def disconnected_cb():
        log("NATS: disconnected")

    async def reconnected_cb():
        log("NATS: reconnected")

    try:
        nc = await nats.connect(
            args.nats,
            name="gatekit example chat (python)",
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=error_cb,
            disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb,
        )
    except Exception as e:
        print(f"chat.py: cannot connect to NATS at {args.nats}: {e}", file=sys.stderr)
        return 1
    chat = Chat(nc, args.prefix)
    tasks = set()

    def serving(prefix):
        async def cb(msg):
            # Each call runs in its own task: a slow gate RPC does not hold up other sessions.
            # (The gate keeps one session's calls in order: max_in_flight = 1.)
            func = msg.subject[len(prefix):] if msg.subject.startswith(prefix) else ""
            t = asyncio.get_running_loop().create_task(chat.handle(msg, func))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

        return cb

    subjects = [(f"{args.prefix}.rpc.{MODULE}.", MODULE)]
    if args.id is not None:
        subjects.append((f"{args.prefix}.rpc.{MODULE}@{args.id}.", f"{MODULE}@{args.id}"))
    subs = [await nc.subscribe(p + ">", queue=q, cb=serving(p)) for p, q in subjects]
    await nc.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    served = " and ".join(p + ">" for p, _ in subjects)
    log(f"serving {served} on {args.nats} (queue group {MODULE})")
    await stop.wait()

    log("shutting down")
    # Every step is bounded: with NATS gone (reconnecting), nats-py's calls may wait for it.
    for sub in subs:
        try:
            await asyncio.wait_for(sub.unsubscribe(), 2)
        except Exception:
            pass
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=5)
        if pending:
            log(f"{len(pending)} calls still in flight after 5 s, left unanswered")
    try:
        await asyncio.wait_for(nc.flush(), 2)
    except Exception:
        pass
    try:
        await asyncio.wait_for(nc.close(), 2)
    except Exception:
        pass
    return 0


def main():
    p = argparse.ArgumentParser(description="The chat module of docs/CLUSTER.md over NATS.")
    p.add_argument(
        "--nats",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="the NATS server (env NATS_URL; default nats://127.0.0.1:4222)",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("GATEKIT_PREFIX", "gatekit"),
        help="the gate's subject prefix, [nats] prefix (env GATEKIT_PREFIX; default gatekit)",
    )
    p.add_argument("--id", help="also serve calls pinned to this instance, chat@ID/func")
    args = p.parse_args()
    if not all(valid_token(t) for t in args.prefix.split(".")):
        p.error(f"--prefix {args.prefix!r}: not a NATS subject (tokens separated by '.')")
    if args.id is not None and not valid_token(args.id):
        p.error(f"--id {args.id!r}: not a NATS subject token")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()

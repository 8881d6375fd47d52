#!/usr/bin/env python3
"""Capture the exact bytes real MQTT clients send, as golden vectors for gatekit's MQTT codec.

Runs a tiny MQTT "server" on a free 127.0.0.1 port, one session at a time, lets a real client
(mosquitto_pub / mosquitto_sub from Debian's mosquitto-clients, and the paho-mqtt Python client)
connect to it, answers only what the client waits for (CONNACK, PUBACK, SUBACK, UNSUBACK,
PINGRESP; an MQTT 5 CONNACK 0x84 refusal to a 5.0 CONNECT, as the gate does), and records every
packet, byte for byte, one file per packet:

    <session>-<nn>-c-<type>.bin   what the client sent (its own encoder)
    <session>-<nn>-s-<type>.bin   what this server answered (and the client accepted)

It also writes README.md in the output folder: how each session was run, the client's version,
exit status and output, and every file with its hex. `codec/tests/mqtt_peers.rs` replays the
files, so `cargo test` needs neither Python nor mosquitto.

Loopback only, bounded in time (every socket and subprocess has a timeout), re-runnable: it
deletes the `.bin` files it owns in the output folder first.

    apt-get install -y mosquitto-clients && pip install 'paho-mqtt==2.*'
    python3 peers/mqtt/capture.py --out corpus/mqtt/golden
"""

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds, per socket operation and per session

TYPES = {
    1: "connect", 2: "connack", 3: "publish", 4: "puback", 5: "pubrec", 6: "pubrel",
    7: "pubcomp", 8: "subscribe", 9: "suback", 10: "unsubscribe", 11: "unsuback",
    12: "pingreq", 13: "pingresp", 14: "disconnect", 15: "auth", 0: "reserved",
}

CONNACK_ACCEPTED = bytes.fromhex("20 02 00 00")
CONNACK_V5_UNSUPPORTED = bytes.fromhex("20 03 00 84 00")
PINGRESP = bytes.fromhex("d0 00")


def remaining_length(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(byte1, body):
    return bytes([byte1]) + remaining_length(len(body)) + body


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_packet(conn):
    """One whole packet (fixed header included), or None at end of stream."""
    head = read_exact(conn, 1)
    if head is None:
        return None
    length, mult, raw = 0, 1, b""
    for _ in range(4):
        b = read_exact(conn, 1)
        if b is None:
            return None
        raw += b
        length += (b[0] & 0x7F) * mult
        mult *= 128
        if b[0] < 0x80:
            break
    body = read_exact(conn, length) if length else b""
    if body is None:
        return None
    return head + raw + body


def body_offset(pkt):
    i = 1
    while pkt[i] & 0x80:
        i += 1
    return i + 1


class Session:
    """One client connection: records what is sent each way and answers minimally."""

    def __init__(self, name, publish_after_ping=None):
        self.name = name
        self.publish_after_ping = publish_after_ping
        self.records = []  # (direction, bytes)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, conn, data):
        self.records.append(("s", data))
        conn.sendall(data)

    def _run(self):
        try:
            conn, _ = self.listener.accept()
        except OSError as e:
            self.error = f"no connection: {e}"
            return
        conn.settimeout(TIMEOUT)
        try:
            self._serve(conn)
        except OSError as e:
            self.error = f"socket: {e}"
        finally:
            conn.close()
            self.listener.close()

    def _serve(self, conn):
        while True:
            pkt = read_packet(conn)
            if pkt is None:
                return
            self.records.append(("c", pkt))
            kind = pkt[0] >> 4
            body = pkt[body_offset(pkt):]
            if kind == 1:  # CONNECT: protocol name, then level
                name_len = int.from_bytes(body[0:2], "big")
                level = body[2 + name_len]
                if level == 5:
                    self._send(conn, CONNACK_V5_UNSUPPORTED)
                    return  # the gate closes after refusing
                self._send(conn, CONNACK_ACCEPTED)
            elif kind == 3:  # PUBLISH
                qos = (pkt[0] >> 1) & 3
                if qos == 1:
                    topic_len = int.from_bytes(body[0:2], "big")
                    pid = body[2 + topic_len:4 + topic_len]
                    self._send(conn, packet(0x40, pid))
            elif kind == 8:  # SUBSCRIBE: grant min(requested, 1) per filter
                pid, rest, codes = body[0:2], body[2:], bytearray()
                while rest:
                    n = int.from_bytes(rest[0:2], "big")
                    codes.append(min(rest[2 + n], 1))
                    rest = rest[3 + n:]
                self._send(conn, packet(0x90, pid + bytes(codes)))
            elif kind == 10:  # UNSUBSCRIBE
                self._send(conn, packet(0xB0, body[0:2]))
            elif kind == 12:  # PINGREQ
                self._send(conn, PINGRESP)
                if self.publish_after_ping:
                    self._send(conn, self.publish_after_ping)
                    self.publish_after_ping = None
            elif kind == 14:  # DISCONNECT
                return

    def join(self):
        self.thread.join(TIMEOUT + 5)


def run_command(session, argv):
    argv = [a.replace("{port}", str(session.port)) for a in argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 5)
        outcome = f"exit {p.returncode}"
        output = (p.stdout + p.stderr).strip()
    except subprocess.TimeoutExpired as e:
        outcome = "timed out (killed)"
        output = ((e.stdout or b"").decode() + (e.stderr or b"").decode()).strip()
    session.join()
    return shlex.join(argv).replace(str(session.port), "PORT"), outcome, output


def tool_version(tool):
    try:
        out = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=5)
        m = re.search(r"version (\S+)", out.stdout + out.stderr)
        return f"{tool} {m.group(1)}" if m else tool
    except OSError:
        return None


# A reply the gate would push on the client's topic (mqant's JSON answer envelope).
ANSWER = packet(0x30, b"\x00\x0d" + b"echo/HD_say/1" + b'{"Trace":"","Error":"","Result":"hi"}')

MOSQUITTO_SESSIONS = [
    ("mosquitto_pub_v311_qos0", None, [
        "mosquitto_pub", "-V", "mqttv311", "-h", HOST, "-p", "{port}", "-i", "gk-pub",
        "-u", "gk-user", "-P", "gk-secret", "-k", "30",
        "--will-topic", "echo/HD_will/1", "--will-payload", "bye", "--will-qos", "1",
        "-t", "echo/HD_say/1", "-q", "0", "-m", '{"say":"hi"}']),
    ("mosquitto_pub_v311_qos1", None, [
        "mosquitto_pub", "-V", "mqttv311", "-h", HOST, "-p", "{port}", "-i", "gk-pub1",
        "-t", "echo/HD_say/1", "-q", "1", "-r", "-m", '{"say":"hi"}']),
    ("mosquitto_pub_v31", None, [
        "mosquitto_pub", "-V", "mqttv31", "-h", HOST, "-p", "{port}", "-i", "gk-pub31",
        "-t", "echo/HD_say/1", "-q", "1", "-m", "hi"]),
    ("mosquitto_pub_v5", None, [
        "mosquitto_pub", "-V", "mqttv5", "-h", HOST, "-p", "{port}", "-i", "gk-pub5",
        "-t", "echo/HD_say/1", "-q", "1", "-m", "hi"]),
    ("mosquitto_sub_v311", ANSWER, [
        "mosquitto_sub", "-V", "mqttv311", "-h", HOST, "-p", "{port}", "-i", "gk-sub",
        "-k", "5", "-q", "1", "-t", "echo/HD_say/1", "-t", "room/+/chat", "-t", "sys/#",
        "-U", "old/topic", "-C", "1", "-W", "12", "-v"]),
]


def paho_sessions():
    try:
        import paho.mqtt
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError:
        return None, []
    version = f"paho-mqtt {paho.mqtt.__version__}"

    def client(session, protocol, client_id):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        c.events = []
        c.on_connect = lambda cl, u, flags, rc, props: c.events.append(f"on_connect {rc}")
        c.on_subscribe = lambda cl, u, mid, rcs, props: c.events.append(
            f"on_subscribe mid {mid} {[str(r) for r in rcs]}")
        c.on_unsubscribe = lambda cl, u, mid, rcs, props: c.events.append(f"on_unsubscribe mid {mid}")
        c.on_publish = lambda cl, u, mid, rc, props: c.events.append(f"on_publish mid {mid}")
        return c

    def v311(session):
        c = client(session, mqtt.MQTTv311, "gk-paho")
        c.username_pw_set("gk-user", "gk-secret")
        c.will_set("echo/HD_will/1", b"bye", qos=1, retain=False)
        c.connect(HOST, session.port, keepalive=2)
        c.loop_start()
        deadline = time.time() + TIMEOUT
        while not c.is_connected() and time.time() < deadline:
            time.sleep(0.05)
        c.publish("echo/HD_say", b'{"say":"no reply"}', qos=0)
        c.publish("echo/HD_say/1", b'{"say":"hi"}', qos=1).wait_for_publish(TIMEOUT)
        c.subscribe([("echo/+/1", 1), ("room/#", 0)])
        time.sleep(0.3)
        c.unsubscribe(["room/#"])
        time.sleep(2.8)  # idle past the 2 s keep-alive: paho sends PINGREQ
        c.disconnect()
        c.loop_stop()
        return c.events

    def v31(session):
        c = client(session, mqtt.MQTTv31, "gk-paho31")
        c.connect(HOST, session.port, keepalive=60)
        c.loop_start()
        deadline = time.time() + TIMEOUT
        while not c.is_connected() and time.time() < deadline:
            time.sleep(0.05)
        c.publish("echo/HD_say/1", b"hi", qos=1).wait_for_publish(TIMEOUT)
        c.disconnect()
        c.loop_stop()
        return c.events

    def v5(session):
        c = client(session, mqtt.MQTTv5, "gk-paho5")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 30
        c.connect(HOST, session.port, keepalive=60, properties=props)
        c.loop_start()
        time.sleep(1.0)
        c.loop_stop()
        return c.events

    return version, [
        ("paho_v311", v311, "paho Client(MQTTv311), user/password, will, keepalive 2: "
         "publish QoS 0 and 1, subscribe 2 filters, unsubscribe 1, idle for PINGREQ, disconnect"),
        ("paho_v31", v31, "paho Client(MQTTv31): connect, publish QoS 1, disconnect"),
        ("paho_v5", v5, "paho Client(MQTTv5) with SessionExpiryInterval 30: refused with 0x84"),
    ]


def write_session(out, name, records):
    files = []
    for i, (direction, data) in enumerate(records, 1):
        fname = f"{name}-{i:02d}-{direction}-{TYPES[data[0] >> 4]}.bin"
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data)
        files.append((fname, data))
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (e.g. corpus/mqtt/golden)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".bin") and re.match(r"^(mosquitto_|paho_)", f):
            os.remove(os.path.join(args.out, f))

    report = []
    if tool_version("mosquitto_pub") is None:
        print("mosquitto_pub not found: apt-get install -y mosquitto-clients", file=sys.stderr)
    else:
        for name, answer, argv in MOSQUITTO_SESSIONS:
            s = Session(name, publish_after_ping=answer)
            cmd, outcome, output = run_command(s, argv)
            report.append((name, tool_version(argv[0]), f"`{cmd}`", outcome, output, s.error,
                           write_session(args.out, name, s.records)))
            print(f"{name}: {outcome}, {len(s.records)} packets", file=sys.stderr)

    paho_version, sessions = paho_sessions()
    if paho_version is None:
        print("paho-mqtt not found: pip install 'paho-mqtt==2.*'", file=sys.stderr)
    for name, fn, what in sessions:
        s = Session(name)
        try:
            events = fn(s)
            outcome = "ok"
        except Exception as e:  # noqa: BLE001 - recorded in the README
            events, outcome = [], f"raised {e!r}"
        s.join()
        report.append((name, paho_version, what, outcome, "\n".join(events), s.error,
                       write_session(args.out, name, s.records)))
        print(f"{name}: {outcome}, {len(s.records)} packets", file=sys.stderr)

    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README_HEAD)
        for name, version, how, outcome, output, error, files in report:
            f.write(f"\n## {name}\n\n{version}: {how}\n\nClient outcome: {outcome}")
            if error:
                f.write(f"; capture server: {error}")
            f.write("\n")
            if output:
                f.write("\n```text\n" + output + "\n```\n")
            f.write("\n| file | hex |\n|---|---|\n")
            for fname, data in files:
                f.write(f"| `{fname}` | `{data.hex(' ')}` |\n")
    return 0


README_HEAD = """# MQTT golden vectors from real clients

Written by `python3 peers/mqtt/capture.py --out corpus/mqtt/golden` (do not edit by hand; rerun
it). Each session ran a real client against a minimal capture server on a free 127.0.0.1 port,
which answered only what the client waited for and recorded every packet byte for byte:

- `<session>-<nn>-c-<type>.bin`: what the client sent, from its own encoder;
- `<session>-<nn>-s-<type>.bin`: what the capture server answered, which the client accepted
  (CONNACK `20 02 00 00`, PUBACK, SUBACK granting min(QoS, 1), UNSUBACK, PINGRESP, a PUBLISH
  after the first PINGREQ for mosquitto_sub, and the MQTT 5 CONNACK `20 03 00 84 00` to a 5.0
  CONNECT, after which the server closes, as the gate does).

`codec/tests/mqtt_peers.rs` replays every file: client files decode with a server-role
`MqttCodec`, server files with a client-role one, each to the packet the test expects (its fields
asserted), and every file gatekit accepts re-encodes to the same bytes. The MQTT 5 CONNECTs are
refused with `UnsupportedProtocolLevel` and `connack_refusal()` gives exactly the CONNACK the
client was sent.
"""

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Differential check helper: paho-mqtt's own encoder on random packets, for comparison with
gatekit's encoder by `codec/tests/mqtt_peers.rs` (test `paho_encoder_differential`, run with
`GATEKIT_PAHO_DIFF=1`).

No network: paho's client methods that build packets (`_send_publish`, `_send_subscribe`,
`_send_unsubscribe`, `_send_connect`, `_send_puback`, `_send_simple_command`) are called with the
queueing step replaced by a capture, so each packet's bytes are exactly what paho would write.

Prints one case per line, tokens separated by spaces, text as hex (`-` for none/empty), the last
token the packet paho built:

    publish QOS RETAIN DUP MID TOPIC PAYLOAD WIRE
    subscribe MID TOPIC:QOS,TOPIC:QOS,... WIRE
    unsubscribe MID TOPIC,TOPIC,... WIRE
    connect PROTOCOL(3|4) CLEAN KEEPALIVE CLIENT_ID WILL(TOPIC:PAYLOAD:QOS:RETAIN|-) USER PASS WIRE
    puback MID WIRE
    pingreq WIRE
    disconnect WIRE

    python3 peers/mqtt/paho_diff.py [--cases N] [--seed S]
"""

import argparse
import random
import sys

import paho.mqtt.client as mqtt

ALPHABET = "abcxyz019_-/ é中"


def h(b):
    return b.hex() if b else "-"


def text(rng, lo, hi, alphabet=ALPHABET):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def topic(rng):
    return text(rng, 1, 40).encode()


def filt(rng):
    levels = []
    for _ in range(rng.randint(1, 4)):
        levels.append("+" if rng.random() < 0.25 else text(rng, 0, 10, ALPHABET.replace("/", "")))
    if rng.random() < 0.3:
        levels.append("#")
    return ("/".join(levels) or "#").encode()


class _NoSocket:
    def close(self):
        pass


class Capture:
    def __init__(self, protocol=mqtt.MQTTv311):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=protocol)
        self.c._sock = _NoSocket()  # "connected": the send methods check only that it is set
        self.out = []
        self.c._packet_queue = lambda command, packet, mid, qos, info=None: self.out.append(
            bytes(packet)) or mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def take(self):
        assert len(self.out) == 1, self.out
        return self.out.pop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    lines = []
    for _ in range(args.cases):
        kind = rng.choice(["publish"] * 4 + ["subscribe", "unsubscribe", "connect", "connect",
                                             "puback", "pingreq", "disconnect"])
        cap = Capture()
        c = cap.c
        if kind == "publish":
            qos, retain = rng.randint(0, 1), rng.random() < 0.3
            dup = qos == 1 and rng.random() < 0.3
            mid = rng.randint(1, 65535) if qos else 0
            t, payload = topic(rng), bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
            c._send_publish(mid, t, payload, qos, retain, dup)
            lines.append(f"publish {qos} {int(retain)} {int(dup)} {mid} {h(t)} {h(payload)} "
                         f"{cap.take().hex()}")
        elif kind == "subscribe":
            topics = [(filt(rng), rng.randint(0, 2)) for _ in range(rng.randint(1, 5))]
            c._last_mid = rng.randint(0, 65534)
            _, mid = c._send_subscribe(0, topics)
            lines.append(f"subscribe {mid} {','.join(f'{h(t)}:{q}' for t, q in topics)} "
                         f"{cap.take().hex()}")
        elif kind == "unsubscribe":
            topics = [filt(rng) for _ in range(rng.randint(1, 5))]
            c._last_mid = rng.randint(0, 65534)
            _, mid = c._send_unsubscribe(0, topics)
            lines.append(f"unsubscribe {mid} {','.join(h(t) for t in topics)} {cap.take().hex()}")
        elif kind == "connect":
            proto = rng.choice([mqtt.MQTTv311, mqtt.MQTTv31])
            cap = Capture(proto)
            c = cap.c
            c._client_id = text(rng, 1, 23).encode()
            c._clean_session = rng.random() < 0.7
            will = "-"
            if rng.random() < 0.5:
                wt = topic(rng).decode()
                wp = bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))
                wq, wr = rng.randint(0, 2), rng.random() < 0.5
                c.will_set(wt, wp, wq, wr)
                will = f"{h(wt.encode())}:{h(wp)}:{wq}:{int(wr)}"
            user = pw = None
            if rng.random() < 0.6:
                user = text(rng, 0, 20)
                pw = text(rng, 0, 20) if rng.random() < 0.7 else None
                c.username_pw_set(user, pw)
            keepalive = rng.randint(0, 65535)
            c._send_connect(keepalive)
            lines.append(f"connect {int(proto)} {int(c._clean_session)} {keepalive} "
                         f"{h(c._client_id)} {will} {h(user.encode()) if user is not None else 'none'} "
                         f"{h(pw.encode()) if pw is not None else 'none'} {cap.take().hex()}")
        elif kind == "puback":
            mid = rng.randint(1, 65535)
            c._send_puback(mid)
            lines.append(f"puback {mid} {cap.take().hex()}")
        elif kind == "pingreq":
            c._send_simple_command(mqtt.PINGREQ)
            lines.append(f"pingreq {cap.take().hex()}")
        else:
            c._send_simple_command(mqtt.DISCONNECT)
            lines.append(f"disconnect {cap.take().hex()}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""An mqant game client on paho-mqtt (2.x), run against `gatekit serve --listen mqtt+tcp://...` by
harness/tests/peers_mqtt.rs, and over WebSocket and TLS by harness/tests/peers_transports.rs.

    python3 client.py PORT                                          # MQTT over TCP
    python3 client.py PORT --transport websockets --path /mqtt      # mqtt+ws://
    python3 client.py PORT --transport websockets --path /mqtt --tls-ca ca.pem   # mqtt+wss://
    python3 client.py PORT --tls-ca ca.pem                          # mqtt+tls://

Over WebSocket paho offers the subprotocol `mqtt` and sends each packet as binary messages; with
`--tls-ca` it verifies the gate's certificate (and host name, 127.0.0.1) against that file.

As mqant's clients do: CONNECT (MQTT 3.1.1, user name and password, keep-alive 30), SUBSCRIBE to
the reply topics and to the pushes, a request on echo/HD_say/1 at QoS 0 and one on echo/HD_say/2
at QoS 1 (each answered on its own topic in mqant's {"Trace","Error","Result"} envelope), a
notify (no msgid), a push received, DISCONNECT. Every step is one JSON line on stdout; any failure
exits 1. Loopback only; 20 s at most.
"""

import argparse
import json
import queue
import sys
import time

import paho.mqtt.client as mqtt

args = argparse.ArgumentParser(description="An mqant game client on paho-mqtt.")
args.add_argument("port", type=int, help="the gate's MQTT port on 127.0.0.1")
args.add_argument("--transport", choices=["tcp", "websockets"], default="tcp")
args.add_argument("--path", default="/mqtt", help="the WebSocket path (--transport websockets)")
args.add_argument("--tls-ca", metavar="FILE", help="TLS, verifying the gate against these CAs")
args = args.parse_args()
port = args.port
events = queue.Queue()


def say(step, **fields):
    print(json.dumps(dict(step=step, **fields)), flush=True)


def fail(why):
    say("failed", why=str(why))
    sys.exit(1)


def expect(kind, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            fail(f"no {kind} within {timeout} s")
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            fail(f"no {kind} within {timeout} s")
        if event[0] == kind:
            return event[1:]


def on_connect(client, userdata, flags, reason_code, properties):
    events.put(("connack", str(reason_code)))


def on_subscribe(client, userdata, mid, reason_codes, properties):
    events.put(("suback", [int(c.value) for c in reason_codes]))


def on_publish(client, userdata, mid, reason_code, properties):
    events.put(("puback", mid))


def on_message(client, userdata, msg):
    events.put(("message", msg.topic, msg.payload))


client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id="paho-game",
    protocol=mqtt.MQTTv311,
    transport=args.transport,
)
if args.transport == "websockets":
    client.ws_set_options(path=args.path)
if args.tls_ca:
    client.tls_set(ca_certs=args.tls_ca)
client.username_pw_set("player", "secret")
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_publish = on_publish
client.on_message = on_message
try:
    client.connect("127.0.0.1", port, keepalive=30)
except Exception as e:  # a refused upgrade, a TLS failure: say which
    fail(f"connect: {type(e).__name__}: {e}")
client.loop_start()

say("connack", code=expect("connack")[0])

client.subscribe([("echo/HD_say/+", 0), ("push/tick", 1)])
say("suback", codes=expect("suback")[0])

for msgid, qos in [(1, 0), (2, 1)]:
    topic = f"echo/HD_say/{msgid}"
    info = client.publish(topic, json.dumps({"hello": msgid}), qos=qos)
    if qos == 1:
        expect("puback")
        say("puback", msgid=msgid)
    while True:
        got_topic, payload = expect("message")
        if got_topic == topic:
            break
    say("answer", topic=got_topic, envelope=json.loads(payload))

client.publish("echo/HD_say", json.dumps({"note": 1}), qos=0)
say("notify")

while True:
    got_topic, payload = expect("message")
    if got_topic == "push/tick":
        say("push", topic=got_topic, bytes=len(payload))
        break

client.disconnect()
client.loop_stop()
say("disconnected")

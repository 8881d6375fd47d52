//! Real MQTT clients against `gatekit serve --listen mqtt+tcp://` — paho-mqtt (PyPI) as an mqant
//! game client, mosquitto_pub and mosquitto_sub (Debian mosquitto-clients) — and the harness's own
//! MQTT client codec against a real broker (Debian mosquitto) as a check of the client side.
//! Each skips, with a printed reason, where its peer is missing, unless GATEKIT_REQUIRE_PEERS=1.

mod common;

use bytes::{Bytes, BytesMut};
use common::{finish, have_program, peer_ready, repo_root, Out, Serve};
use gatekit_codec::mqtt::{
    ConnAck, Connect, MqttCodec, MqttString, Packet, PacketId, Publish, QoS, Subscribe,
    Subscription, TopicFilter, TopicName,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(program: &str, args: &[&str]) -> Out {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    finish(child, Duration::from_secs(30), program)
}

fn have_paho() -> Result<(), String> {
    have_program("python3")?;
    let ok = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if ok.success() {
        Ok(())
    } else {
        Err("the Python package paho-mqtt is not installed (pip install 'paho-mqtt==2.*')".into())
    }
}

fn mqtt_gate() -> Serve {
    Serve::start(&["--listen", "mqtt+tcp://127.0.0.1:0", "--push-rate", "5"])
}

#[test]
fn paho_talks_to_the_gate_as_an_mqant_client() {
    if !peer_ready("paho_talks_to_the_gate_as_an_mqant_client", have_paho()) {
        return;
    }
    let serve = mqtt_gate();
    let script = repo_root().join("peers/mqtt/client.py");
    let port = serve.addr.port().to_string();
    let out = run("python3", &[script.to_str().unwrap(), &port]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let steps: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "connack",
            "suback",
            "answer",
            "puback",
            "answer",
            "notify",
            "push",
            "disconnected"
        ],
        "{out:?}"
    );
    assert_eq!(steps[0]["code"], "Success");
    assert_eq!(steps[1]["codes"], serde_json::json!([0, 1]));
    assert_eq!(steps[2]["topic"], "echo/HD_say/1");
    assert_eq!(
        steps[2]["envelope"],
        serde_json::json!({"Trace": "", "Error": "", "Result": {"hello": 1}})
    );
    assert_eq!(steps[4]["topic"], "echo/HD_say/2");
    assert_eq!(
        steps[4]["envelope"]["Result"],
        serde_json::json!({"hello": 2})
    );
    assert_eq!(steps[6]["topic"], "push/tick");
    assert_eq!(serve.stop(), Some(0));
}

#[test]
fn mosquitto_clients_publish_subscribe_and_an_mqtt5_one_is_refused() {
    let ready = have_program("mosquitto_pub").and_then(|()| have_program("mosquitto_sub"));
    if !peer_ready(
        "mosquitto_clients_publish_subscribe_and_an_mqtt5_one_is_refused",
        ready,
    ) {
        return;
    }
    let serve = mqtt_gate();
    let port = serve.addr.port().to_string();
    let base = ["-h", "127.0.0.1", "-p", port.as_str(), "-i", "mosq"];
    // QoS 1: mosquitto_pub waits for the PUBACK, and exits 0 once it has it.
    let mut args = base.to_vec();
    args.extend([
        "-V",
        "mqttv311",
        "-q",
        "1",
        "-t",
        "echo/HD_say/1",
        "-m",
        "{\"a\":1}",
    ]);
    let out = run("mosquitto_pub", &args);
    assert_eq!(out.code, Some(0), "QoS 1 publish: {out:?}");
    // A notify at QoS 0.
    let mut args = base.to_vec();
    args.extend(["-t", "echo/HD_say", "-m", "{}"]);
    assert_eq!(run("mosquitto_pub", &args).code, Some(0));
    // mosquitto_sub waits for its SUBACK (mqant never sends one for QoS 0/1), then prints the
    // pushes: three of them, then it exits.
    let mut args = base.to_vec();
    args.extend(["-t", "push/tick", "-C", "3", "-W", "15", "-F", "%t"]);
    let out = run("mosquitto_sub", &args);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["push/tick"; 3],
        "{out:?}"
    );
    // An MQTT 5 client is refused with the CONNACK it understands.
    let mut args = base.to_vec();
    args.extend(["-V", "mqttv5", "-t", "echo/HD_say/1", "-m", "{}"]);
    let out = run("mosquitto_pub", &args);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("Unsupported Protocol Version")
            || out.stdout.contains("Unsupported Protocol Version"),
        "{out:?}"
    );
    assert_eq!(serve.stop(), Some(0));
}

/// A mosquitto broker on a free loopback port, stopped when dropped.
struct Broker(std::process::Child, u16);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn broker() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = common::TempFile::with(
        "mosquitto.conf",
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    );
    let child = Command::new("mosquitto")
        .args(["-c", conf.path()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mosquitto");
    // Wait for it to listen (the config file must outlive the start); the guard kills it on
    // every path.
    let broker = Broker(child, port);
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return broker;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not listen on {port}");
}

fn send(s: &mut TcpStream, codec: &MqttCodec, p: Packet) {
    let mut out = BytesMut::new();
    codec.encode(&p, &mut out).unwrap();
    s.write_all(&out).unwrap();
}

fn recv(s: &mut TcpStream, codec: &mut MqttCodec, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = codec.decode(buf).expect("the broker's packets decode") {
            return p;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("read from mosquitto");
        assert!(n > 0, "mosquitto closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn the_harness_mqtt_client_codec_works_with_a_real_broker() {
    if !peer_ready(
        "the_harness_mqtt_client_codec_works_with_a_real_broker",
        have_program("mosquitto"),
    ) {
        return;
    }
    let b = broker();
    let mut s = TcpStream::connect(("127.0.0.1", b.1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut codec = MqttCodec::client();
    let mut buf = BytesMut::new();
    send(
        &mut s,
        &codec,
        Packet::Connect(Box::new(Connect::new(MqttString::from_static("gk"), 30))),
    );
    assert_eq!(
        recv(&mut s, &mut codec, &mut buf),
        Packet::ConnAck(ConnAck::Accepted {
            session_present: false
        })
    );
    let id = PacketId::new(1).unwrap();
    send(
        &mut s,
        &codec,
        Packet::Subscribe(Subscribe {
            packet_id: id,
            subscriptions: vec![Subscription {
                filter: TopicFilter::from_static("echo/+/#"),
                qos: QoS::AtLeastOnce,
            }],
        }),
    );
    assert!(matches!(recv(&mut s, &mut codec, &mut buf), Packet::SubAck(a) if a.packet_id == id));
    let pid = PacketId::new(2).unwrap();
    let topic = TopicName::from_static("echo/HD_say/1");
    send(
        &mut s,
        &codec,
        Packet::Publish(Publish::qos1(pid, topic.clone(), Bytes::from_static(b"hi"))),
    );
    // The broker acknowledges ours and delivers it back to us (we subscribed).
    let mut got_ack = false;
    let mut got_msg = false;
    while !(got_ack && got_msg) {
        match recv(&mut s, &mut codec, &mut buf) {
            Packet::PubAck(p) if p == pid => got_ack = true,
            Packet::Publish(p) => {
                assert_eq!(
                    (p.topic.as_str(), &p.payload[..]),
                    ("echo/HD_say/1", &b"hi"[..])
                );
                if let Some(id) = p.packet_id() {
                    send(&mut s, &codec, Packet::PubAck(id));
                }
                got_msg = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    send(&mut s, &codec, Packet::PingReq);
    assert_eq!(recv(&mut s, &mut codec, &mut buf), Packet::PingResp);
    send(&mut s, &codec, Packet::Disconnect);
}

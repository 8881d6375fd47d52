//! The cluster when something fails (docs/CLUSTER.md "Failures"), with a real redis-server and
//! nats-server: a gate process killed with SIGKILL, Redis restarted under live sessions, a gate
//! cut off from NATS by a partition. Every surviving gate ends with Disconnect exactly once per
//! Connect.
//!
//! Skipped (printed `skipped: <test>: <why>`) without redis-server or nats-server, failed then
//! when `GATEKIT_REQUIRE_PEERS=1`.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "../../agent/tests/common/native_client.rs"]
mod native_client;
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/redis_server.rs"]
mod redis_server;

use cluster::*;
use gatekit_agent::DuplicateLogin;
use gatekit_codec::Status;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn peers(test: &str) -> Option<(redis_server::RedisServer, nats_server::NatsServer)> {
    let redis = redis_server::start_for(test)?;
    let nats = nats_server::start_for(test)?;
    Some((redis, nats))
}

/// A `gatekit-server` process, killed on drop.
struct GateProcess {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: TempDir,
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `gatekit-server` as gate `id` of the cluster; returns once its port accepts.
fn gate_process(id: &str, redis: &str, nats: &str) -> GateProcess {
    let port = redis_server::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("gatekit-cluster-{id}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gate]
id = "{id}"
listen = ["native+tcp://127.0.0.1:{port}"]
shutdown_grace = "300ms"
[nats]
url = "{nats}"
[store]
kind = "redis"
url = "{redis}"
gate_ttl = "{gate_ttl}ms"
grace = "{grace}ms"
[auth]
kind = "hmac"
secret = "{SECRET}"
"#,
            gate_ttl = GATE_TTL.as_millis(),
            grace = GRACE.as_millis(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gatekit-server"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gatekit-server starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < STEP,
            "gate {id} did not listen within {STEP:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    GateProcess {
        child,
        addr,
        _dir: TempDir(dir),
    }
}

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Whether the user's entry in Redis says it is online (has a location).
async fn listed_online(url: &str, user: &str) -> bool {
    match redis_get(url, &format!("gatekit:session:{user}")).await {
        None => false,
        Some(json) => {
            let v: Value = serde_json::from_str(&json).unwrap();
            v.get("gate").is_some()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gate_s_users_go_offline_within_the_grace_and_get_their_settings_back_elsewhere() {
    let Some((redis, nats)) = peers("a_killed_gate_s_users_go_offline") else {
        return;
    };
    let mut doomed = gate_process("gate-doomed", &redis.url(), &nats.url());
    let survivor = TestGate::start(gate_config(
        "gate-survivor",
        &redis.url(),
        &nats.url(),
        DuplicateLogin::Kick,
    ))
    .await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let users: Vec<String> = (0..5).map(|i| format!("doomed-{i}")).collect();
    let mut clients = Vec::new();
    for u in &users {
        let (c, _) = login(doomed.addr, u).await;
        clients.push(c);
    }
    for u in &users {
        // The gate's directory and gate RPC are live once it answers for its own user.
        until("online at the doomed gate", STEP, || async {
            user_op(&nc, "is_online", u, &[], b"").await["online"] == Value::Bool(true)
        })
        .await;
        let v = user_op(&nc, "set", u, &[("Gatekit-Key", "level")], b"42").await;
        assert_eq!(v["ok"], Value::Bool(true), "{v}");
        assert_eq!(v["gate"], "gate-doomed", "{v}");
    }
    let (bystander, _) = login(survivor.addr(), "bystander").await;

    doomed.child.kill().unwrap(); // SIGKILL
    doomed.child.wait().unwrap();
    let killed = Instant::now();
    for c in &mut clients {
        assert_eq!(
            bounded("dropped", c.recv()).await,
            None,
            "the connection dropped"
        );
    }
    // The back ends' view: offline at once (the gate's NATS subscriptions went with it), and
    // a push is an error, not a success.
    for u in &users {
        let v = user_op(&nc, "is_online", u, &[], b"").await;
        assert_eq!(v["online"], Value::Bool(false), "{u}: {v}");
        let v = user_op(&nc, "send", u, &[("Gatekit-Topic", "t")], b"x").await;
        assert_eq!(v["ok"], Value::Bool(false), "{u}: {v}");
        assert_eq!(v["error"], "offline", "{u}: {v}");
    }
    // Redis's view: no user of the dead gate listed online past the gate's ttl plus a beat
    // (the survivor reaps them), well within the grace.
    let redis_url = redis.url();
    let took = until("listed offline in Redis", GRACE, || async {
        let mut any = false;
        for u in &users {
            any |= listed_online(&redis_url, u).await;
        }
        !any
    })
    .await;
    let since_kill = killed.elapsed();
    assert!(since_kill < GRACE, "{since_kill:?}");
    eprintln!("listed offline {since_kill:?} after the kill (polled for {took:?})");
    assert!(
        listed_online(&redis_url, "bystander").await,
        "the survivor's own user stays"
    );

    // Back on the survivor within the grace: stored settings restored.
    for u in &users {
        let (_c, sid) = login(survivor.addr(), u).await;
        until("settings restored", STEP, || async {
            survivor
                .settings(&sid)
                .and_then(|s| s.get("level").cloned())
                .as_deref()
                == Some("42")
        })
        .await;
        let v = user_op(&nc, "is_online", u, &[], b"").await;
        assert_eq!(v["gate"], "gate-survivor", "{v}");
    }
    drop(bystander);
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_live_sessions_is_rebuilt_from_them() {
    let Some((mut redis, nats)) = peers("redis_restarted_under_live_sessions") else {
        return;
    };
    let gate = TestGate::start(gate_config(
        "gate-r",
        &redis.url(),
        &nats.url(),
        DuplicateLogin::Kick,
    ))
    .await;
    let (mut alice, alice_sid) = login(gate.addr(), "alice").await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let v = user_op(&nc, "set", "alice", &[("Gatekit-Key", "room")], b"9").await;
    assert_eq!(v["ok"], Value::Bool(true), "{v}");
    assert!(listed_online(&redis.url(), "alice").await);

    redis.kill();
    let errors_before = gate.running.gate().store_errors();
    // Connections and requests go on; a login still binds locally.
    let r = bounded("echo", alice.request(1, "echo/x", b"still here")).await;
    assert_eq!(
        (r.status, r.body.as_ref()),
        (Status::Ok, b"still here".as_ref())
    );
    let (mut bob, bob_sid) = login(gate.addr(), "bob").await;
    let bob_user = gate
        .running
        .gate()
        .agent(&bob_sid)
        .and_then(|h| h.session())
        .and_then(|s| s.user_id.clone());
    assert_eq!(bob_user.as_deref(), Some("bob"));
    let r = bounded("echo", bob.request(1, "echo/x", b"hi")).await;
    assert_eq!(r.status, Status::Ok);
    // The store's failures are counted.
    until("store errors counted", STEP, || async {
        gate.running.gate().store_errors() > errors_before
    })
    .await;
    // The directory answers that it cannot tell, by name.
    let v = user_op(&nc, "is_online", "alice", &[], b"").await;
    assert_eq!(v["error"], "store_unavailable", "{v}");

    // Redis comes back empty: the gate stores its live sessions again.
    redis.restart().unwrap();
    let url = redis.url();
    let took = until("rebuilt", STEP, || async {
        listed_online(&url, "alice").await && listed_online(&url, "bob").await
    })
    .await;
    eprintln!("directory rebuilt {took:?} after Redis came back");
    for (u, sid) in [("alice", &alice_sid), ("bob", &bob_sid)] {
        let v = user_op(&nc, "is_online", u, &[], b"").await;
        assert_eq!(v["session_id"], sid.as_str(), "{u}: {v}");
    }
    let stored = redis_get(&url, "gatekit:session:alice").await.unwrap();
    assert!(
        stored.contains(r#""room":"9""#),
        "the settings came back too: {stored}"
    );
    alice.close().await;
    bob.close().await;
    gate.stop().await;
}

/// `gatekit.users.<op>` for `user`, or None if no gate answered within 4 s.
async fn try_user_op(
    nc: &async_nats::Client,
    op: &str,
    user: &str,
    extra: &[(&str, &str)],
) -> Option<Value> {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Gatekit-User", user);
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let request = async_nats::Request::new()
        .headers(h)
        .payload("x".into())
        .timeout(Some(Duration::from_secs(4)));
    let reply = nc
        .send_request(format!("gatekit.users.{op}"), request)
        .await
        .ok()?;
    Some(serde_json::from_slice(&reply.payload).expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_cut_off_from_nats_has_its_users_reported_offline_and_pushes_fail() {
    let test = "a_gate_cut_off_from_nats";
    let Some(redis) = redis_server::start_for(test) else {
        return;
    };
    // nats-server notices a silent client after two unanswered pings 2 s apart (its default is
    // two minutes apart): until then it may hand the cut-off gate requests.
    let nats =
        match nats_server::NatsServer::start_with_config("ping_interval: \"2s\"\nping_max: 2\n") {
            Ok(n) => n,
            Err(why) => {
                nats_server::peer_ready(test, Err(why));
                return;
            }
        };
    let nats_addr: std::net::SocketAddr = ([127, 0, 0, 1], nats.port()).into();
    let partition = Partition::start(nats_addr).await;
    let cut_off = TestGate::start(gate_config(
        "gate-cut",
        &redis.url(),
        &format!("nats://{}", partition.addr),
        DuplicateLogin::Kick,
    ))
    .await;
    let other = TestGate::start(gate_config(
        "gate-other",
        &redis.url(),
        &nats.url(),
        DuplicateLogin::Kick,
    ))
    .await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let (mut alice, _) = login(cut_off.addr(), "alice").await;
    let (_bob, _) = login(other.addr(), "bob").await;
    let v = user_op(&nc, "is_online", "alice", &[], b"").await;
    assert_eq!(v["online"], Value::Bool(true), "{v}");

    partition.cut();
    // Every answer now: alice is not online, a push to her is not a success. A request that the
    // queue group hands to the cut-off gate gets no answer at all (the caller's timeout): never
    // a success either.
    //
    // While nats-server still counts the silent gate in (a few seconds here), the other gate
    // forwards to it and gets no answer within its 2 s: `unreachable`. 16 requests at once, so
    // some reach the other gate (all 16 going to the cut-off one: 1 in 65,536).
    let check_send = |v: &Value| {
        assert_eq!(v["ok"], Value::Bool(false), "a push to a cut-off user: {v}");
        assert!(
            ["unreachable", "offline"].contains(&v["error"].as_str().unwrap()),
            "{v}"
        );
    };
    let (sends, asks) = tokio::join!(
        futures_util::future::join_all((0..16).map(|_| try_user_op(
            &nc,
            "send",
            "alice",
            &[("Gatekit-Topic", "t")]
        ))),
        futures_util::future::join_all((0..16).map(|_| try_user_op(
            &nc,
            "is_online",
            "alice",
            &[]
        )))
    );
    let mut unanswered = 0;
    let mut unreachable = 0;
    for v in sends.iter().flatten() {
        check_send(v);
    }
    for v in &asks {
        match v {
            Some(v) => {
                assert_eq!(v["online"], Value::Bool(false), "{v}");
                unreachable += usize::from(v["reason"] == "unreachable");
            }
            None => unanswered += 1,
        }
    }
    assert!(
        unreachable > 0,
        "the other gate answered while the cut-off one was still subscribed: {asks:?}"
    );
    // Once nats-server has dropped the silent gate: answered at once by the other one, offline
    // (`gate_down`; or `offline` once the cut-off gate, seeing its NATS connection gone, has
    // stopped beating and its key has expired: then Redis lists alice offline too).
    let mut answered_offline = 0;
    let start = Instant::now();
    while answered_offline < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "offline answers: {answered_offline}, unanswered: {unanswered}"
        );
        if let Some(v) = try_user_op(&nc, "send", "alice", &[("Gatekit-Topic", "t")]).await {
            check_send(&v);
        }
        match try_user_op(&nc, "is_online", "alice", &[]).await {
            Some(v) => {
                assert_eq!(v["online"], Value::Bool(false), "{v}");
                answered_offline += usize::from(v["reason"] != "unreachable");
            }
            None => unanswered += 1,
        }
    }
    eprintln!(
        "cut off: {unreachable} answered unreachable, then {answered_offline} offline after {:?}; {unanswered} unanswered",
        start.elapsed()
    );
    let url = redis.url();
    until("listed offline in Redis", STEP, || async {
        !listed_online(&url, "alice").await
    })
    .await;
    // The cut-off gate's own clients go on with in-process modules.
    let r = bounded("echo", alice.request(1, "echo/x", b"alive")).await;
    assert_eq!(r.status, Status::Ok);
    // Bob, on the other gate, is unaffected (whenever the other gate is the one answering).
    let mut bob_seen = false;
    for _ in 0..20 {
        if let Some(v) = try_user_op(&nc, "is_online", "bob", &[]).await {
            assert_eq!(v["online"], Value::Bool(true), "{v}");
            bob_seen = true;
            break;
        }
    }
    assert!(bob_seen, "no gate answered for bob");
    drop(partition);
    other.stop().await;
    cut_off.stop().await;
}

//! Users reachable on any gate (docs/CLUSTER.md "The user directory"): two gates sharing a real
//! redis-server and nats-server; a back end pushes to, kicks and asks about users by id over
//! `gatekit.users.*` without knowing their gate; duplicate logins (kick, refuse, allow), also
//! racing on two gates; groups that span gates. Every gate ends with Disconnect exactly once
//! per Connect.
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
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// redis-server and nats-server for `test`, or None (skipped).
fn peers(test: &str) -> Option<(redis_server::RedisServer, nats_server::NatsServer)> {
    let redis = redis_server::start_for(test)?;
    let nats = nats_server::start_for(test)?;
    Some((redis, nats))
}

async fn two_gates(
    redis: &redis_server::RedisServer,
    nats: &nats_server::NatsServer,
    policy: DuplicateLogin,
) -> (TestGate, TestGate, async_nats::Client) {
    let a = TestGate::start(gate_config("gate-a", &redis.url(), &nats.url(), policy)).await;
    let b = TestGate::start(gate_config("gate-b", &redis.url(), &nats.url(), policy)).await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    (a, b, nc)
}

fn ok(v: &Value) -> bool {
    v["ok"] == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_end_reaches_users_on_any_gate_by_user_id() {
    let Some((redis, nats)) = peers("a_back_end_reaches_users_on_any_gate_by_user_id") else {
        return;
    };
    let (a, b, nc) = two_gates(&redis, &nats, DuplicateLogin::Kick).await;
    let (mut alice, alice_sid) = login(a.addr(), "alice").await;
    let (mut bob, bob_sid) = login(b.addr(), "bob").await;

    // Located: whichever gate answers (queue group), the user's own gate and session.
    for _ in 0..6 {
        let v = user_op(&nc, "is_online", "alice", &[], b"").await;
        assert_eq!(v["online"], Value::Bool(true), "{v}");
        assert_eq!(v["gate"], "gate-a", "{v}");
        assert_eq!(v["session_id"], alice_sid.as_str(), "{v}");
    }
    // Pushes, each delivered once, in order, to alice only.
    for i in 0..20 {
        let body = format!("hello {i}");
        let v = user_op(
            &nc,
            "send",
            "alice",
            &[("Gatekit-Topic", "chat")],
            body.as_bytes(),
        )
        .await;
        assert!(ok(&v), "{v}");
        assert_eq!(v["gate"], "gate-a");
    }
    for i in 0..20 {
        let (topic, body) = bounded("push", next_push(&mut alice))
            .await
            .expect("a push");
        assert_eq!(topic, "chat");
        assert_eq!(body, format!("hello {i}").as_bytes());
    }
    // Settings by user id, stored: a reconnect elsewhere gets them (below).
    let v = user_op(&nc, "set", "bob", &[("Gatekit-Key", "room")], b"7").await;
    assert!(ok(&v), "{v}");
    until("bob's setting", STEP, || async {
        b.settings(&bob_sid)
            .and_then(|s| s.get("room").cloned())
            .as_deref()
            == Some("7")
    })
    .await;

    // Nobody: offline, by name.
    let v = user_op(&nc, "send", "carol", &[("Gatekit-Topic", "chat")], b"x").await;
    assert_eq!(v["ok"], Value::Bool(false), "{v}");
    assert_eq!(v["error"], "offline", "{v}");
    let v = user_op(&nc, "is_online", "carol", &[], b"").await;
    assert_eq!(
        (v["ok"].clone(), v["online"].clone()),
        (Value::Bool(true), Value::Bool(false)),
        "{v}"
    );
    // A bad request names what is missing.
    let v = user_op(&nc, "send", "alice", &[], b"x").await;
    assert_eq!(v["error"], "bad_request", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("Gatekit-Topic"),
        "{v}"
    );

    // Kicked by user id, from wherever: CLOSE kicked with the reason given.
    let v = user_op(
        &nc,
        "kick",
        "bob",
        &[("Gatekit-Reason", "maintenance")],
        b"",
    )
    .await;
    assert!(ok(&v), "{v}");
    assert_eq!(
        bounded("kick", next_close(&mut bob)).await,
        Some(("kicked".into(), "maintenance".into()))
    );
    until("bob offline", STEP, || async {
        user_op(&nc, "is_online", "bob", &[], b"").await["online"] == Value::Bool(false)
    })
    .await;
    // Back on the other gate within the grace: his settings are restored.
    let (_bob2, bob2_sid) = login(a.addr(), "bob").await;
    until("bob's settings restored", STEP, || async {
        a.settings(&bob2_sid)
            .and_then(|s| s.get("room").cloned())
            .as_deref()
            == Some("7")
    })
    .await;
    let v = user_op(&nc, "is_online", "bob", &[], b"").await;
    assert_eq!(
        (v["gate"].clone(), v["session_id"].clone()),
        ("gate-a".into(), bob2_sid.as_str().into()),
        "{v}"
    );

    alice.close().await;
    a.stop().await;
    b.stop().await;
}

/// Logs `user` in on both gates at the same moment; returns the two clients with their
/// session ids.
async fn race(
    a: &TestGate,
    b: &TestGate,
    user: &str,
) -> [(native_client::Client<tokio::net::TcpStream>, String); 2] {
    let (x, y) = tokio::join!(login(a.addr(), user), login(b.addr(), user));
    [x, y]
}

/// How each of the pair ended within a settle time: `Some((code, reason))` if closed.
async fn outcome(
    pair: &mut [(native_client::Client<tokio::net::TcpStream>, String); 2],
) -> [Option<(String, String)>; 2] {
    let [(c0, _), (c1, _)] = pair;
    let settle = Duration::from_millis(1500);
    let (r0, r1) = tokio::join!(
        tokio::time::timeout(settle, next_close(c0)),
        tokio::time::timeout(settle, next_close(c1))
    );
    [r0.ok().flatten(), r1.ok().flatten()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logins_at_once_on_two_gates_end_with_one_session_kick() {
    let Some((redis, nats)) = peers("two_logins_at_once_on_two_gates_end_with_one_session_kick")
    else {
        return;
    };
    let (a, b, nc) = two_gates(&redis, &nats, DuplicateLogin::Kick).await;
    // The same gate first: the older session is kicked, by name.
    let (mut first, _) = login(a.addr(), "dora").await;
    let (_second, second_sid) = login(a.addr(), "dora").await;
    assert_eq!(
        bounded("kick", next_close(&mut first)).await,
        Some(("kicked".into(), "logged in elsewhere".into()))
    );
    let v = user_op(&nc, "is_online", "dora", &[], b"").await;
    assert_eq!(v["session_id"], second_sid.as_str(), "{v}");

    // Racing pairs on two gates.
    let users: Vec<String> = (0..20).map(|i| format!("racer-{i}")).collect();
    let mut pairs = Vec::new();
    for u in &users {
        pairs.push(race(&a, &b, u).await);
    }
    let mut kicked_on = [0, 0];
    let ends_all = futures_util::future::join_all(pairs.iter_mut().map(outcome)).await;
    for ((u, pair), ends) in users.iter().zip(pairs.iter()).zip(ends_all) {
        let open: Vec<usize> = (0..2).filter(|i| ends[*i].is_none()).collect();
        assert_eq!(open.len(), 1, "{u}: exactly one session remains: {ends:?}");
        let closed = 1 - open[0];
        kicked_on[closed] += 1;
        assert_eq!(
            ends[closed],
            Some(("kicked".into(), "logged in elsewhere".into())),
            "{u}"
        );
        let v = user_op(&nc, "is_online", u, &[], b"").await;
        assert_eq!(v["online"], Value::Bool(true), "{u}: {v}");
        assert_eq!(
            v["session_id"],
            pair[open[0]].1.as_str(),
            "{u}: the survivor is the one located: {v}"
        );
        assert_eq!(v["gate"], ["gate-a", "gate-b"][open[0]], "{u}: {v}");
    }
    let sessions = a.running.gate().session_count() + b.running.gate().session_count();
    assert_eq!(
        sessions,
        users.len() + 1,
        "one session per user (and dora's)"
    );
    let kicks = a.running.gate().duplicate_logins().0 + b.running.gate().duplicate_logins().0;
    assert_eq!(
        kicks,
        users.len() as u64 + 1,
        "one kick per duplicate, counted"
    );
    drop(pairs);
    a.stop().await;
    b.stop().await;
    eprintln!("kicked on gate-a, gate-b: {kicked_on:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_keeps_the_first_session_and_allow_keeps_both() {
    let Some((redis, nats)) = peers("refuse_keeps_the_first_session_and_allow_keeps_both") else {
        return;
    };
    let (a, b, nc) = two_gates(&redis, &nats, DuplicateLogin::Refuse).await;
    let (_first, first_sid) = login(a.addr(), "erin").await;
    let (mut second, _) = login(b.addr(), "erin").await;
    assert_eq!(
        bounded("refused", next_close(&mut second)).await,
        Some(("kicked".into(), "already logged in elsewhere".into()))
    );
    let v = user_op(&nc, "is_online", "erin", &[], b"").await;
    assert_eq!(
        v["session_id"],
        first_sid.as_str(),
        "the first stays located: {v}"
    );
    // Racing: one of the two is bound, the other refused.
    let mut pairs = Vec::new();
    for i in 0..10 {
        let u = format!("refused-{i}");
        pairs.push((race(&a, &b, &u).await, u));
    }
    let ends_all = futures_util::future::join_all(pairs.iter_mut().map(|(p, _)| outcome(p))).await;
    for ((pair, u), ends) in pairs.iter().zip(ends_all) {
        let open: Vec<usize> = (0..2).filter(|i| ends[*i].is_none()).collect();
        assert_eq!(open.len(), 1, "{u}: {ends:?}");
        assert_eq!(
            ends[1 - open[0]],
            Some(("kicked".into(), "already logged in elsewhere".into()))
        );
        let v = user_op(&nc, "is_online", u, &[], b"").await;
        assert_eq!(v["session_id"], pair[open[0]].1.as_str(), "{u}: {v}");
    }
    let refused = a.running.gate().duplicate_logins().1 + b.running.gate().duplicate_logins().1;
    assert_eq!(
        refused, 11,
        "erin's second login and one of each racing pair"
    );
    a.stop().await;
    b.stop().await;

    let (a, b, nc) = two_gates(&redis, &nats, DuplicateLogin::Allow).await;
    let (mut c1, _) = login(a.addr(), "finn").await;
    let (mut c2, sid2) = login(b.addr(), "finn").await;
    let v = user_op(&nc, "is_online", "finn", &[], b"").await;
    assert_eq!(v["session_id"], sid2.as_str(), "the newer is located: {v}");
    let settle = Duration::from_millis(800);
    assert!(
        tokio::time::timeout(settle, next_close(&mut c1))
            .await
            .is_err(),
        "allow: nobody kicked"
    );
    assert!(tokio::time::timeout(settle, next_close(&mut c2))
        .await
        .is_err());
    c1.close().await;
    c2.close().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spans_gates() {
    let Some((redis, nats)) = peers("a_group_spans_gates") else {
        return;
    };
    let (a, b, nc) = two_gates(&redis, &nats, DuplicateLogin::Kick).await;
    let (mut g1, _) = login(a.addr(), "g1").await;
    let (mut g2, _) = login(b.addr(), "g2").await;
    let (mut g3, g3_sid) = login(b.addr(), "g3").await;
    let (mut outsider, _) = login(a.addr(), "outsider").await;
    for u in ["g1", "g2", "g3"] {
        let v = user_op(&nc, "join", u, &[("Gatekit-Group", "room-1")], b"").await;
        assert_eq!(v["joined"], Value::Bool(true), "{u}: {v}");
    }
    let v = user_op(&nc, "join", "g1", &[("Gatekit-Group", "room-1")], b"").await;
    assert_eq!(v["joined"], Value::Bool(false), "a member already: {v}");
    assert_eq!(b.running.gate().group_members("room-1").len(), 2);

    let send = |body: &'static str| {
        let nc = nc.clone();
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Gatekit-Group", "room-1");
            h.insert("Gatekit-Topic", "room");
            nc.publish_with_headers("gatekit.groups.send", h, body.into())
                .await
                .unwrap();
            nc.flush().await.unwrap();
        }
    };
    send("one").await;
    for c in [&mut g1, &mut g2, &mut g3] {
        let (_, body) = bounded("group push", next_push(c)).await.unwrap();
        assert_eq!(body, "one".as_bytes());
    }
    let v = user_op(&nc, "leave", "g2", &[("Gatekit-Group", "room-1")], b"").await;
    assert_eq!(v["left"], Value::Bool(true), "{v}");
    g3.close().await;
    until("g3 forgotten", STEP, || async {
        !b.running.gate().group_members("room-1").contains(&g3_sid)
    })
    .await;
    send("two").await;
    let (_, body) = bounded("group push", next_push(&mut g1)).await.unwrap();
    assert_eq!(body, "two".as_bytes());
    // Nobody else got anything: a marker sent to each directly arrives first.
    for (u, c) in [("g2", &mut g2), ("outsider", &mut outsider)] {
        let v = user_op(&nc, "send", u, &[("Gatekit-Topic", "marker")], b"m").await;
        assert!(ok(&v), "{v}");
        let (topic, _) = bounded("marker", next_push(c)).await.unwrap();
        assert_eq!(topic, "marker", "{u} got only the marker");
    }
    let groups: HashSet<usize> = [
        a.running.gate().group_count(),
        b.running.gate().group_count(),
    ]
    .into();
    assert!(groups.contains(&1));
    drop((g1, g2, outsider));
    a.stop().await;
    b.stop().await;
}

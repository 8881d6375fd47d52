//! The Redis session store against a real `redis-server` (loopback, one per test): the rules of
//! the embedded `MemoryStore`, the stored value's encoding, a Redis that lost its keys, corrupt
//! values, Redis going away and coming back, Redis absent at start, two gates binding one user at
//! once, and the count of Redis operations.
//!
//! Skipped (printed `skipped: <test>: <why>`) when `redis-server` is not installed, failed when
//! `GATEKIT_REQUIRE_PEERS=1`.

#[path = "support/redis_server.rs"]
mod redis_server;

use gatekit_agent::{DuplicateLogin, Location, Session, SessionStore, StoreError, StoredSession};
use gatekit_server::store::redis::{RedisStore, RedisStoreConfig, RedisStoreError};
use redis::aio::MultiplexedConnection;
use redis_server::{free_port, peer_ready, RedisServer};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most any test may take.
const TEST_WITHIN: Duration = Duration::from_secs(60);
/// The most one store operation may take while Redis is gone (the store's 1 s bound + slack).
const FAIL_WITHIN: Duration = Duration::from_millis(1500);

/// Runs a test's body bounded by [`TEST_WITHIN`].
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_WITHIN, f)
        .await
        .expect("the test did not finish within its bound")
}

/// A `redis-server` for `test`, or None (skipped).
fn redis_for(test: &str) -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(s) => Some(s),
        Err(why) => {
            peer_ready(test, Err(why));
            None
        }
    }
}

fn config(url: &str, ttl: Duration, grace: Duration) -> RedisStoreConfig {
    RedisStoreConfig {
        url: url.to_owned(),
        prefix: "gatekit".to_owned(),
        ttl,
        grace,
        connect_timeout: Duration::from_millis(500),
        gate_ttl: None,
    }
}

async fn store(url: &str, ttl: Duration, grace: Duration) -> RedisStore {
    let store = RedisStore::connect(config(url, ttl, grace))
        .await
        .expect("a valid url");
    assert!(store.is_connected(), "redis is running at {url}");
    store
}

async fn default_store(url: &str) -> RedisStore {
    store(url, Duration::from_secs(30), Duration::from_secs(10)).await
}

/// A plain connection, to look at and change what is in Redis.
async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a plain redis connection")
}

async fn get(c: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(c).await.unwrap()
}

async fn pttl(c: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(c).await.unwrap()
}

async fn set(c: &mut MultiplexedConnection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(c)
        .await
        .unwrap()
}

async fn exec(c: &mut MultiplexedConnection, args: &[&str]) {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async::<redis::Value>(c)
        .await
        .unwrap();
}

fn session(id: &str, gate: &str, user: &str, settings: &[(&str, &str)]) -> Arc<Session> {
    let mut s = Session::new(id, "tcp", "127.0.0.1:1", gate);
    s.user_id = Some(user.into());
    s.settings = map(settings);
    Arc::new(s)
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn location(s: &Session) -> Location {
    Location {
        gate: s.server_id.clone(),
        session_id: s.session_id.clone(),
    }
}

fn is_unavailable(r: &Result<impl std::fmt::Debug, StoreError>) -> bool {
    matches!(r, Err(StoreError::Unavailable(_)))
}

fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>, user: &str, says: &str) {
    match r {
        Err(StoreError::Corrupt { user_id, reason }) => {
            assert_eq!(user_id, user);
            assert!(reason.contains(says), "{reason:?} should say {says:?}");
        }
        other => panic!("expected Corrupt for {user}, got {other:?}"),
    }
}

#[tokio::test]
async fn bind_restores_what_the_session_lacks_and_disconnect_keeps_it_for_the_grace() {
    let Some(redis) = redis_for("bind_restores_what_the_session_lacks") else {
        return;
    };
    bounded(async {
        let grace = Duration::from_millis(1000);
        let store = store(&redis.url(), Duration::from_secs(30), grace).await;
        let mut c = raw(&redis.url()).await;
        let first = session("s1", "g1", "alice", &[("room", "lobby"), ("level", "3")]);
        assert_eq!(
            store
                .bind(first.clone(), DuplicateLogin::Kick)
                .await
                .unwrap(),
            Default::default()
        );
        store.disconnect(first).await.unwrap();
        let stored = store.query("alice").await.unwrap().unwrap();
        assert_eq!(stored.location, None);
        assert_eq!(stored.settings, map(&[("room", "lobby"), ("level", "3")]));
        let left = pttl(&mut c, "gatekit:session:alice").await;
        assert!(left > 0 && left <= 1000, "expires within the grace: {left}");
        // A reconnect (on another gate, here) within the grace: its own keys win.
        let second = session("s2", "g2", "alice", &[("room", "arena")]);
        let bound = store
            .bind(second.clone(), DuplicateLogin::Kick)
            .await
            .unwrap();
        assert_eq!(bound.restored, map(&[("level", "3")]));
        assert_eq!(bound.previous, None, "offline before: no previous location");
        let stored = store.query("alice").await.unwrap().unwrap();
        assert_eq!(stored.settings, map(&[("room", "arena"), ("level", "3")]));
        assert!(stored.is_at(&second));
        let left = pttl(&mut c, "gatekit:session:alice").await;
        assert!(left > 1000 && left <= 30_000, "online: the ttl: {left}");
        store.disconnect(second).await.unwrap();
        tokio::time::sleep(grace + Duration::from_millis(300)).await;
        assert_eq!(store.query("alice").await.unwrap(), None, "grace over");
    })
    .await
}

#[tokio::test]
async fn online_entries_expire_without_heartbeats() {
    let Some(redis) = redis_for("online_entries_expire_without_heartbeats") else {
        return;
    };
    bounded(async {
        let ttl = Duration::from_millis(1500);
        let store = store(&redis.url(), ttl, Duration::from_secs(10)).await;
        let mut c = raw(&redis.url()).await;
        let s = session("s1", "g1", "bob", &[]);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        store.heartbeat(s.clone()).await.unwrap();
        let left = pttl(&mut c, "gatekit:session:bob").await;
        assert!(
            left > 1000 && left <= 1500,
            "the heartbeat renewed the ttl: {left}"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            store.query("bob").await.unwrap().is_some(),
            "kept by its heartbeat (2 s after the bind)"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(store.query("bob").await.unwrap(), None, "ttl over");
        // A heartbeat after the entry was lost stores it again.
        store.heartbeat(s.clone()).await.unwrap();
        assert!(store.query("bob").await.unwrap().unwrap().is_at(&s));
    })
    .await
}

#[tokio::test]
async fn a_newer_login_keeps_the_location_from_the_older_session() {
    let Some(redis) = redis_for("a_newer_login_keeps_the_location") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        let mut c = raw(&redis.url()).await;
        let old = session("s1", "g1", "carol", &[("room", "lobby")]);
        let new = session("s2", "g2", "carol", &[]);
        store.bind(old.clone(), DuplicateLogin::Kick).await.unwrap();
        let bound = store.bind(new.clone(), DuplicateLogin::Kick).await.unwrap();
        assert_eq!(bound.previous, Some(location(&old)));
        assert_eq!(bound.restored, map(&[("room", "lobby")]));
        // The old session's late writes and its end do not take the user back.
        let old_later = session("s1", "g1", "carol", &[("room", "late")]);
        store.storage(old_later.clone()).await.unwrap();
        let stored = store.query("carol").await.unwrap().unwrap();
        assert!(stored.is_at(&new), "storage keeps the newer location");
        assert_eq!(
            stored.settings,
            map(&[("room", "late")]),
            "settings written"
        );
        exec(&mut c, &["PEXPIRE", "gatekit:session:carol", "5000"]).await;
        store.heartbeat(old.clone()).await.unwrap();
        let stored = store.query("carol").await.unwrap().unwrap();
        assert!(stored.is_at(&new), "heartbeat keeps the newer location");
        assert_eq!(
            stored.settings,
            map(&[("room", "late")]),
            "heartbeat wrote nothing"
        );
        let left = pttl(&mut c, "gatekit:session:carol").await;
        assert!(left > 5000, "the heartbeat refreshed the expiry: {left}");
        store.disconnect(old.clone()).await.unwrap();
        store.delete(old).await.unwrap();
        let stored = store.query("carol").await.unwrap().unwrap();
        assert!(stored.is_at(&new), "disconnect and delete leave it");
        // Its own logout forgets the user.
        store.delete(new).await.unwrap();
        assert_eq!(store.query("carol").await.unwrap(), None);
        assert_eq!(get(&mut c, "gatekit:session:carol").await, None);
    })
    .await
}

#[tokio::test]
async fn a_disconnected_user_is_deleted_by_any_session() {
    let Some(redis) = redis_for("a_disconnected_user_is_deleted_by_any_session") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        let s = session("s1", "g1", "erin", &[("k", "v")]);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        store.disconnect(s).await.unwrap();
        // Offline: a late delete of another session forgets it (MemoryStore's rule).
        store
            .delete(session("s9", "g9", "erin", &[]))
            .await
            .unwrap();
        assert_eq!(store.query("erin").await.unwrap(), None);
        // Missing: every operation but bind, storage and heartbeat leaves it missing.
        let s = session("s1", "g1", "erin", &[]);
        store.disconnect(s.clone()).await.unwrap();
        store.delete(s).await.unwrap();
        assert_eq!(store.query("erin").await.unwrap(), None);
    })
    .await
}

#[tokio::test]
async fn unbound_sessions_are_not_stored() {
    let Some(redis) = redis_for("unbound_sessions_are_not_stored") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        let mut c = raw(&redis.url()).await;
        let mut s = Session::new("s1", "tcp", "p", "g");
        s.settings.insert("k".into(), "v".into());
        let s = Arc::new(s);
        assert_eq!(
            store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap(),
            Default::default()
        );
        store.storage(s.clone()).await.unwrap();
        store.heartbeat(s.clone()).await.unwrap();
        store.disconnect(s.clone()).await.unwrap();
        store.delete(s).await.unwrap();
        let keys: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
        assert_eq!(keys, 0);
        assert_eq!(store.redis_ops(), 0, "nothing sent");
    })
    .await
}

#[tokio::test]
async fn the_value_in_redis_is_the_documented_json() {
    let Some(redis) = redis_for("the_value_in_redis_is_the_documented_json") else {
        return;
    };
    bounded(async {
        let ttl = Duration::from_secs(30);
        let store = store(&redis.url(), ttl, Duration::from_secs(10)).await;
        let mut c = raw(&redis.url()).await;
        assert_eq!(store.key("alice"), "gatekit:session:alice");
        let s = session("9f00", "gate-1", "alice", &[("room", "lobby")]);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        let json = get(&mut c, "gatekit:session:alice").await.unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"user_id":"alice","settings":{"room":"lobby"},"gate":"gate-1","session_id":"9f00"}"#
        );
        assert_eq!(
            StoredSession::from_json(json.as_bytes()).unwrap(),
            StoredSession::of(&s).unwrap()
        );
        let left = pttl(&mut c, "gatekit:session:alice").await;
        assert!(left > 0 && left <= 30_000, "{left}");

        // Written by the scripts' JSON encoder (a merge, a kept location, a disconnect): the
        // same document, fields in any order.
        let s2 = session("a/b", "gate-2", "alice", &[("level", "3"), ("é", "\"x\"")]);
        store.bind(s2.clone(), DuplicateLogin::Kick).await.unwrap();
        let json = get(&mut c, "gatekit:session:alice").await.unwrap();
        let stored = StoredSession::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            stored,
            StoredSession {
                settings: map(&[("level", "3"), ("room", "lobby"), ("é", "\"x\"")]),
                ..StoredSession::of(&s2).unwrap()
            }
        );
        store.storage(s.clone()).await.unwrap();
        let json = get(&mut c, "gatekit:session:alice").await.unwrap();
        let stored = StoredSession::from_json(json.as_bytes()).unwrap();
        assert_eq!(stored.settings, map(&[("room", "lobby")]));
        assert_eq!(stored.location, Some(location(&s2)));
        store.disconnect(s2.clone()).await.unwrap();
        let json = get(&mut c, "gatekit:session:alice").await.unwrap();
        assert!(!json.contains("gate") && !json.contains("session_id"), "{json}");
        let stored = StoredSession::from_json(json.as_bytes()).unwrap();
        assert_eq!(stored.location, None);
        assert_eq!(stored.user_id, "alice");
        assert_eq!(stored.settings, map(&[("room", "lobby")]));
        // An empty settings map stays an object.
        let empty = session("s3", "gate-3", "zed", &[]);
        store.bind(empty.clone(), DuplicateLogin::Kick).await.unwrap();
        store.disconnect(empty).await.unwrap();
        let json = get(&mut c, "gatekit:session:zed").await.unwrap();
        assert!(StoredSession::from_json(json.as_bytes()).is_ok(), "{json}");

        // Another prefix.
        let other = RedisStore::connect(RedisStoreConfig {
            prefix: "cluster-b".into(),
            ..config(&redis.url(), ttl, ttl)
        })
        .await
        .unwrap();
        assert_eq!(other.key("bob"), "cluster-b:session:bob");
        other.bind(session("s", "g", "bob", &[]), DuplicateLogin::Kick).await.unwrap();
        assert!(get(&mut c, "cluster-b:session:bob").await.is_some());
    })
    .await
}

#[tokio::test]
async fn a_heartbeat_after_redis_lost_the_key_writes_it_again() {
    let Some(redis) = redis_for("a_heartbeat_after_redis_lost_the_key") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        let mut c = raw(&redis.url()).await;
        let s = session("s1", "g1", "frank", &[("room", "lobby")]);
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        store.heartbeat(s.clone()).await.unwrap();
        // What a restarted Redis looks like: no keys, no scripts.
        exec(&mut c, &["FLUSHALL"]).await;
        exec(&mut c, &["SCRIPT", "FLUSH"]).await;
        let before = store.redis_ops();
        store.heartbeat(s.clone()).await.unwrap();
        assert_eq!(
            store.redis_ops() - before,
            2,
            "EVALSHA refused (NOSCRIPT), then EVAL"
        );
        let stored = store.query("frank").await.unwrap().unwrap();
        assert_eq!(stored, StoredSession::of(&s).unwrap());
        let left = pttl(&mut c, "gatekit:session:frank").await;
        assert!(left > 0 && left <= 30_000, "{left}");
        let before = store.redis_ops();
        store.heartbeat(s).await.unwrap();
        assert_eq!(store.redis_ops() - before, 1, "the script is cached again");
    })
    .await
}

#[tokio::test]
async fn corrupt_values_are_reported_and_replaced() {
    let Some(redis) = redis_for("corrupt_values_are_reported_and_replaced") else {
        return;
    };
    bounded(async {
        let grace = Duration::from_secs(10);
        let store = store(&redis.url(), Duration::from_secs(30), grace).await;
        let mut c = raw(&redis.url()).await;
        let key = store.key("dave");
        let s = session("s1", "g1", "dave", &[("room", "lobby")]);

        set(&mut c, &key, "garbage").await;
        assert_corrupt(store.query("dave").await, "dave", "expected");
        // The bind reports it, and overwrites it with the session.
        assert_corrupt(
            store.bind(s.clone(), DuplicateLogin::Kick).await,
            "dave",
            "overwritten by the bind",
        );
        assert_eq!(
            store.query("dave").await.unwrap(),
            Some(StoredSession::of(&s).unwrap())
        );

        // Another version, an unreadable settings value: not merged, overwritten.
        set(
            &mut c,
            &key,
            r#"{"v":2,"user_id":"dave","settings":{"secret":"x"}}"#,
        )
        .await;
        assert_corrupt(
            store.bind(s.clone(), DuplicateLogin::Kick).await,
            "dave",
            "version 2",
        );
        assert_eq!(
            store.query("dave").await.unwrap().unwrap().settings,
            s.settings
        );
        set(
            &mut c,
            &key,
            r#"{"v":1,"user_id":"dave","settings":{"n":3}}"#,
        )
        .await;
        assert_corrupt(
            store.bind(s.clone(), DuplicateLogin::Kick).await,
            "dave",
            "overwritten",
        );
        assert_eq!(
            store.query("dave").await.unwrap().unwrap().settings,
            s.settings
        );

        set(&mut c, &key, "garbage").await;
        assert_corrupt(
            store.storage(s.clone()).await,
            "dave",
            "overwritten by the storage",
        );
        assert!(store.query("dave").await.unwrap().unwrap().is_at(&s));
        set(&mut c, &key, "garbage").await;
        assert_corrupt(
            store.heartbeat(s.clone()).await,
            "dave",
            "overwritten by the heartbeat",
        );
        assert!(store.query("dave").await.unwrap().unwrap().is_at(&s));

        set(&mut c, &key, "garbage").await;
        assert_corrupt(store.disconnect(s.clone()).await, "dave", "grace");
        assert_eq!(get(&mut c, &key).await.as_deref(), Some("garbage"));
        let left = pttl(&mut c, &key).await;
        assert!(
            left > 0 && left <= 10_000,
            "expires after the grace: {left}"
        );
        assert_corrupt(store.delete(s.clone()).await, "dave", "deleted");
        assert_eq!(get(&mut c, &key).await, None);

        // Location fields that are not both strings: offline (as StoredSession reads it).
        set(
            &mut c,
            &key,
            r#"{"v":1,"user_id":"dave","settings":{"k":"v"},"gate":3,"session_id":"x"}"#,
        )
        .await;
        let bound = store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        assert_eq!(bound.previous, None);
        assert_eq!(bound.restored, map(&[("k", "v")]));
        assert_eq!(
            store.query("dave").await.unwrap().unwrap().settings,
            map(&[("k", "v"), ("room", "lobby")])
        );

        // Another Redis type under the key.
        exec(&mut c, &["DEL", &key]).await;
        exec(&mut c, &["HSET", &key, "f", "v"]).await;
        assert_corrupt(store.query("dave").await, "dave", "another redis type");
        assert_corrupt(
            store.bind(s.clone(), DuplicateLogin::Kick).await,
            "dave",
            "redis hash",
        );
        assert!(store.query("dave").await.unwrap().unwrap().is_at(&s));
    })
    .await
}

/// Every operation once, each bounded by `within`; the results in order.
async fn every_op(
    store: &RedisStore,
    s: &Arc<Session>,
    within: Duration,
) -> Vec<Result<(), StoreError>> {
    let mut out = Vec::new();
    macro_rules! timed {
        ($f:expr) => {{
            let started = Instant::now();
            let r = tokio::time::timeout(within + Duration::from_secs(5), $f)
                .await
                .expect("the operation hung");
            assert!(
                started.elapsed() <= within,
                "took {:?} (> {within:?}): {r:?}",
                started.elapsed()
            );
            out.push(r);
        }};
    }
    timed!(async {
        store
            .bind(s.clone(), DuplicateLogin::Kick)
            .await
            .map(|_| ())
    });
    timed!(store.storage(s.clone()));
    timed!(store.heartbeat(s.clone()));
    timed!(async { store.query("gina").await.map(|_| ()) });
    timed!(store.ping());
    timed!(store.disconnect(s.clone()));
    timed!(store.delete(s.clone()));
    out
}

/// Polls `ok` every 100 ms until it is true or `within` passes; whether it became true.
async fn eventually<F: Future<Output = bool>>(within: Duration, mut ok: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn operations_fail_fast_while_redis_is_gone_and_succeed_when_it_is_back() {
    let Some(mut redis) = redis_for("operations_fail_fast_while_redis_is_gone") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        let s = session("s1", "g1", "gina", &[("room", "lobby")]);
        for r in every_op(&store, &s, FAIL_WITHIN).await {
            r.unwrap();
        }
        redis.kill();
        for round in 0..2 {
            for r in every_op(&store, &s, FAIL_WITHIN).await {
                assert!(is_unavailable(&r), "round {round}: {r:?}");
                let Err(StoreError::Unavailable(why)) = r else {
                    unreachable!()
                };
                assert!(why.contains(&redis.url()), "names the url: {why}");
            }
        }
        redis.restart().expect("redis restarts on its port");
        let back = eventually(Duration::from_secs(10), || async {
            store.bind(s.clone(), DuplicateLogin::Kick).await.is_ok()
        })
        .await;
        assert!(back, "the store reconnected");
        // Redis lost everything (no persistence) and its scripts: all work again.
        for r in every_op(&store, &s, FAIL_WITHIN).await {
            r.unwrap();
        }
        assert!(store.heartbeat(s.clone()).await.is_ok());
        assert!(store.query("gina").await.unwrap().unwrap().is_at(&s));
    })
    .await
}

#[tokio::test]
async fn a_store_started_without_redis_connects_when_it_comes() {
    if !peer_ready(
        "a_store_started_without_redis_connects_when_it_comes",
        RedisServer::start().map(drop),
    ) {
        return;
    }
    bounded(async {
        let port = free_port().unwrap();
        let url = redis_server::url_on(port);
        let started = Instant::now();
        let store = RedisStore::connect(config(
            &url,
            Duration::from_secs(30),
            Duration::from_secs(10),
        ))
        .await
        .expect("the store starts without redis");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(2),
            "waited about the connect timeout (500 ms): {took:?}"
        );
        assert!(!store.is_connected());
        let s = session("s1", "g1", "hank", &[]);
        for r in every_op(&store, &s, Duration::from_millis(100)).await {
            match r {
                Err(StoreError::Unavailable(why)) => {
                    assert!(why.contains("not connected yet"), "{why}");
                    assert!(why.contains(&url), "{why}");
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        assert_eq!(store.redis_ops(), 0, "nothing sent");
        let _redis = RedisServer::start_on(port).expect("redis on the store's port");
        let connected = eventually(Duration::from_secs(5), || async {
            store.ping().await.is_ok()
        })
        .await;
        assert!(connected, "connected within a few seconds of redis coming");
        assert!(store.is_connected());
        for r in every_op(&store, &s, FAIL_WITHIN).await {
            r.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_an_error_naming_it() {
    let err = RedisStore::connect(config(
        "http://:hunter2@h/",
        Duration::from_secs(1),
        Duration::from_secs(1),
    ))
    .await
    .unwrap_err();
    let RedisStoreError::Url { url, .. } = &err;
    assert_eq!(url, "http://:***@h/", "the password is not shown");
    assert!(
        err.to_string()
            .starts_with(r#"redis url "http://:***@h/": "#),
        "{err}"
    );
    let err = RedisStore::connect(config(
        "not a url",
        Duration::from_secs(1),
        Duration::from_secs(1),
    ))
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with(r#"redis url "not a url": "#),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gates_binding_one_user_at_once_see_each_other_once() {
    let Some(redis) = redis_for("two_gates_binding_one_user_at_once") else {
        return;
    };
    bounded(async {
        let gate_a = default_store(&redis.url()).await;
        let gate_b = default_store(&redis.url()).await;
        let mut c = raw(&redis.url()).await;
        let key = gate_a.key("ivy");
        let mut a_last = 0;
        for round in 0..50 {
            exec(&mut c, &["DEL", &key]).await;
            let a = session(&format!("a{round}"), "gate-a", "ivy", &[("from", "a")]);
            let b = session(&format!("b{round}"), "gate-b", "ivy", &[("from", "b")]);
            let (bound_a, bound_b) = tokio::join!(
                tokio::spawn(gate_a.bind(a.clone(), DuplicateLogin::Kick)),
                tokio::spawn(gate_b.bind(b.clone(), DuplicateLogin::Kick))
            );
            let (bound_a, bound_b) = (bound_a.unwrap().unwrap(), bound_b.unwrap().unwrap());
            let stored = gate_a.query("ivy").await.unwrap().unwrap();
            // The last writer holds the location and saw the first; the first saw nothing.
            let (last, first, bound_last, bound_first) = if stored.is_at(&a) {
                a_last += 1;
                (&a, &b, &bound_a, &bound_b)
            } else {
                assert!(stored.is_at(&b), "round {round}: {stored:?}");
                (&b, &a, &bound_b, &bound_a)
            };
            assert_eq!(bound_last.previous, Some(location(first)), "round {round}");
            assert_eq!(bound_first.previous, None, "round {round}");
            assert!(bound_first.restored.is_empty() && bound_last.restored.is_empty());
            assert_eq!(stored.settings, last.settings, "round {round}");
        }
        eprintln!("gate a wrote last in {a_last} of 50 rounds");
    })
    .await
}

#[tokio::test]
async fn redis_ops_counts_one_per_operation() {
    let Some(redis) = redis_for("redis_ops_counts_one_per_operation") else {
        return;
    };
    bounded(async {
        let store = default_store(&redis.url()).await;
        assert_eq!(store.redis_ops(), 0, "connecting is not counted");
        let s = session("s1", "g1", "jack", &[]);
        // First use of each script on this Redis: EVALSHA refused, then EVAL.
        let first = every_op(&store, &s, FAIL_WITHIN).await;
        assert!(first.iter().all(|r| r.is_ok()), "{first:?}");
        assert_eq!(
            store.redis_ops(),
            6 * 2 + 1,
            "6 scripts loaded (query is the locate script), PING"
        );
        let mut before = store.redis_ops();
        let mut one = |what: &str| {
            let now = store.redis_ops();
            assert_eq!(now - before, 1, "{what}");
            before = now;
        };
        store.bind(s.clone(), DuplicateLogin::Kick).await.unwrap();
        one("bind");
        store.storage(s.clone()).await.unwrap();
        one("storage");
        store.heartbeat(s.clone()).await.unwrap();
        one("heartbeat");
        store.query("jack").await.unwrap();
        one("query");
        store.ping().await.unwrap();
        one("ping");
        store.disconnect(s.clone()).await.unwrap();
        one("disconnect");
        store.delete(s.clone()).await.unwrap();
        one("delete");
        // Clones share the count.
        let clone = store.clone();
        clone.heartbeat(s).await.unwrap();
        one("heartbeat of a clone");
    })
    .await
}

/// A store tracking gate liveness (what gatekit-server runs), gate_ttl 300 ms.
async fn live_store(url: &str) -> RedisStore {
    let store = RedisStore::connect(RedisStoreConfig {
        gate_ttl: Some(Duration::from_millis(300)),
        ..config(url, Duration::from_secs(30), Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(store.is_connected());
    store
}

async fn smembers(c: &mut MultiplexedConnection, key: &str) -> Vec<String> {
    let mut v: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(c)
        .await
        .unwrap();
    v.sort();
    v
}

#[tokio::test]
async fn a_location_on_a_dead_gate_is_offline_to_lookups_logins_and_the_reaper() {
    let Some(redis) = redis_for("a_location_on_a_dead_gate_is_offline") else {
        return;
    };
    bounded(async {
        let store = live_store(&redis.url()).await;
        let mut c = raw(&redis.url()).await;
        assert!(
            !store.beat_gate("gate-a").await.unwrap(),
            "no key before the first beat"
        );
        assert!(
            store.beat_gate("gate-a").await.unwrap(),
            "there at the second"
        );
        store.beat_gate("gate-b").await.unwrap();
        let on_a = session("s1", "gate-a", "kim", &[("k", "v")]);
        let also_a = session("s2", "gate-a", "lou", &[]);
        store
            .bind(on_a.clone(), DuplicateLogin::Kick)
            .await
            .unwrap();
        store
            .bind(also_a.clone(), DuplicateLogin::Kick)
            .await
            .unwrap();
        assert_eq!(
            smembers(&mut c, "gatekit:gate-users:gate-a").await,
            ["kim", "lou"]
        );
        // Alive: a login elsewhere is a duplicate, refused under refuse.
        let on_b = session("s3", "gate-b", "kim", &[]);
        let refused = store
            .bind(on_b.clone(), DuplicateLogin::Refuse)
            .await
            .unwrap();
        assert!(refused.refused);
        assert!(store.query("kim").await.unwrap().unwrap().is_at(&on_a));

        // gate-a stops beating: past its gate_ttl it is dead.
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.beat_gate("gate-b").await.unwrap();
        assert_eq!(get(&mut c, "gatekit:gate:gate-a").await, None);
        // A lookup says offline and removes the location (settings kept, for the grace).
        let kim = store.query("kim").await.unwrap().unwrap();
        assert_eq!((kim.location, kim.settings), (None, map(&[("k", "v")])));
        let raw_kim = get(&mut c, "gatekit:session:kim").await.unwrap();
        assert!(!raw_kim.contains("gate-a"), "{raw_kim}");
        assert!(pttl(&mut c, "gatekit:session:kim").await <= 10_000);
        // A login elsewhere is not a duplicate: bound, nothing to kick, settings restored.
        let bound = store
            .bind(on_b.clone(), DuplicateLogin::Refuse)
            .await
            .unwrap();
        assert_eq!((bound.refused, bound.previous), (false, None));
        assert_eq!(bound.restored, map(&[("k", "v")]));
        assert_eq!(smembers(&mut c, "gatekit:gate-users:gate-b").await, ["kim"]);
        // The reaper sets the dead gate's other users offline and forgets the gate.
        let (reaped, _) = store.reap(None, 1000).await.unwrap();
        assert_eq!(reaped, 1, "lou (kim had moved)");
        let lou = store.query("lou").await.unwrap().unwrap();
        assert_eq!(lou.location, None);
        assert!(smembers(&mut c, "gatekit:gate-users:gate-a")
            .await
            .is_empty());
        let gates: Vec<String> = redis::cmd("ZRANGE")
            .arg("gatekit:gates")
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(gates, ["gate-b"]);
        // A live gate's users are left alone; a disconnect untracks.
        assert_eq!(store.reap(None, 1000).await.unwrap().0, 0);
        assert!(store.query("kim").await.unwrap().unwrap().is_at(&on_b));
        store.disconnect(on_b).await.unwrap();
        assert!(smembers(&mut c, "gatekit:gate-users:gate-b")
            .await
            .is_empty());
    })
    .await
}

#[tokio::test]
async fn a_gate_starting_again_reaps_what_its_earlier_run_left() {
    let Some(redis) = redis_for("a_gate_starting_again_reaps") else {
        return;
    };
    bounded(async {
        let store = live_store(&redis.url()).await;
        store.beat_gate("gate-a").await.unwrap();
        for i in 0..25 {
            let s = session(&format!("s{i}"), "gate-a", &format!("u{i}"), &[]);
            store.bind(s, DuplicateLogin::Kick).await.unwrap();
        }
        // The same gate id starts again at once (its key still alive): its earlier sessions
        // are gone, in batches of 10.
        let mut reaped = 0;
        loop {
            let (n, handled) = store.reap(Some("gate-a"), 10).await.unwrap();
            reaped += n;
            if handled < 10 {
                break;
            }
        }
        assert_eq!(reaped, 25);
        for i in 0..25 {
            let u = store.query(&format!("u{i}")).await.unwrap().unwrap();
            assert_eq!(u.location, None, "u{i}");
        }
    })
    .await
}

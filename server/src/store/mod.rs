//! Session stores of the server (`[store]`): in memory (the embedded default), Redis
//! ([`redis::RedisStore`], shared by every gate of a cluster), or none.

pub mod liveness;
pub mod redis;

use crate::Dur;
use gatekit_agent::{MemoryStore, NoStore, SessionStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which store keeps the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// This gate's memory: a quick reconnect to the same gate gets its settings back.
    Memory,
    /// Redis at `url`: every gate of the cluster shares the sessions (docs/CLUSTER.md).
    Redis,
    /// Nothing is kept.
    None,
}

/// `[store]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Which store.
    pub kind: StoreKind,
    /// The Redis server, `redis://host:port[/db]` (kind `redis`).
    pub url: Option<String>,
    /// The first part of every Redis key (`<prefix>:session:<user_id>`).
    pub prefix: String,
    /// How long a bound session's entry lives past its last write or heartbeat: at least the
    /// heartbeat interval (`limits.heartbeat`), or online users would expire between beats.
    pub ttl: Dur,
    /// How long a session's settings are kept after it disconnects (a reconnect within it gets
    /// them back).
    pub grace: Dur,
    /// Time a store operation may take before it counts as failed (the connection goes on).
    pub timeout: Dur,
    /// Time allowed for the first connection to Redis; the gate starts without it and retries.
    pub connect_timeout: Dur,
    /// Redis: how long a gate's liveness key `<prefix>:gate:<gate_id>` outlives its last
    /// refresh (every third of it). A gate killed or cut off from NATS has its users offline
    /// to the cluster within it; at most `grace`.
    pub gate_ttl: Dur,
    /// A bind of a user online on another session (on any gate): `kick` the older session
    /// (CLOSE kicked "logged in elsewhere"), `refuse` the new one, or `allow` both.
    pub duplicate_login: gatekit_agent::DuplicateLogin,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Memory,
            url: None,
            prefix: "gatekit".to_owned(),
            ttl: Dur::secs(180),
            grace: Dur::secs(60),
            timeout: Dur::secs(2),
            connect_timeout: Dur::secs(2),
            gate_ttl: Dur::secs(10),
            duplicate_login: gatekit_agent::DuplicateLogin::Kick,
        }
    }
}

impl StoreConfig {
    /// What is wrong with the section, as (key, message); `heartbeat` is `limits.heartbeat`.
    pub fn check(&self, heartbeat: Dur) -> Result<(), (&'static str, String)> {
        match (self.kind, &self.url) {
            (StoreKind::Redis, None) => {
                return Err((
                    "store.url",
                    "kind = \"redis\" needs the Redis server: set store.url (or --redis), e.g. \"redis://127.0.0.1:6379\"".into(),
                ))
            }
            (StoreKind::Memory | StoreKind::None, Some(_)) => {
                return Err((
                    "store.url",
                    "a Redis url is given but store.kind is not \"redis\": set kind = \"redis\" or drop the url".into(),
                ))
            }
            _ => {}
        }
        for (key, d) in [
            ("store.ttl", self.ttl),
            ("store.grace", self.grace),
            ("store.timeout", self.timeout),
            ("store.connect_timeout", self.connect_timeout),
            ("store.gate_ttl", self.gate_ttl),
        ] {
            if d.0.is_zero() {
                return Err((key, "must be more than 0".into()));
            }
        }
        if self.ttl.0 < heartbeat.0 {
            return Err((
                "store.ttl",
                format!(
                    "{} is shorter than limits.heartbeat ({}): online sessions would expire between their heartbeats",
                    self.ttl, heartbeat
                ),
            ));
        }
        if self.gate_ttl.0 > self.grace.0 {
            return Err((
                "store.gate_ttl",
                format!(
                    "{} is longer than store.grace ({}): a dead gate's users would stay online past the grace",
                    self.gate_ttl, self.grace
                ),
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err((
                "store.prefix",
                format!("{:?}: give a non-empty prefix without spaces", self.prefix),
            ));
        }
        Ok(())
    }

    /// The store this section describes (Redis: connected, or connecting in the background,
    /// with gate liveness; the Redis store is also returned, for the gate's liveness beats).
    pub async fn build(
        &self,
    ) -> Result<(Arc<dyn SessionStore>, Option<redis::RedisStore>), redis::RedisStoreError> {
        Ok(match self.kind {
            StoreKind::None => (Arc::new(NoStore), None),
            StoreKind::Memory => (Arc::new(MemoryStore::new(self.ttl.0, self.grace.0)), None),
            StoreKind::Redis => {
                let store = redis::RedisStore::connect(redis::RedisStoreConfig {
                    url: self.url.clone().unwrap_or_default(),
                    prefix: self.prefix.clone(),
                    ttl: self.ttl.0,
                    grace: self.grace.0,
                    connect_timeout: self.connect_timeout.0,
                    gate_ttl: Some(self.gate_ttl.0),
                })
                .await?;
                (Arc::new(store.clone()), Some(store))
            }
        })
    }
}

//! Session stores of the server (`[store]`): in memory (the embedded default), Redis
//! ([`redis::RedisStore`], shared by every gate of a cluster), or none.

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
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err((
                "store.prefix",
                format!("{:?}: give a non-empty prefix without spaces", self.prefix),
            ));
        }
        Ok(())
    }

    /// The store this section describes (Redis: connected, or connecting in the background).
    pub async fn build(&self) -> Result<Arc<dyn SessionStore>, redis::RedisStoreError> {
        Ok(match self.kind {
            StoreKind::None => Arc::new(NoStore),
            StoreKind::Memory => Arc::new(MemoryStore::new(self.ttl.0, self.grace.0)),
            StoreKind::Redis => Arc::new(
                redis::RedisStore::connect(redis::RedisStoreConfig {
                    url: self.url.clone().unwrap_or_default(),
                    prefix: self.prefix.clone(),
                    ttl: self.ttl.0,
                    grace: self.grace.0,
                    connect_timeout: self.connect_timeout.0,
                })
                .await?,
            ),
        })
    }
}

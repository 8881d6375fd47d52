//! The Redis session store: [`RedisStore`], a [`SessionStore`] shared by every gate of a cluster,
//! so a user's settings survive a reconnect to any gate and a login anywhere sees where the user
//! already is.
//!
//! # Keys and values
//!
//! A user's stored session is one string key, [`RedisStore::key`] `<prefix>:session:<user_id>`,
//! whose value is [`StoredSession`]'s JSON (docs/CLUSTER.md). While the user is online the value
//! has `gate` and `session_id` and the key expires `ttl` after the last bind, storage or heartbeat;
//! after a disconnect it has neither and expires `grace` after it.
//!
//! # Operations
//!
//! Each operation is one Lua script (`EVALSHA`; `EVAL` once after Redis restarted and forgot
//! the script), so it is atomic against the other gates', with [`MemoryStore`]'s rules:
//!
//! - **bind**: writes the session's value plus the stored settings it lacks (its own keys win),
//!   online at the session, expiring `ttl`; returns what was restored and where the user was
//!   online before, if on another session.
//! - **storage**: writes the session's settings, expiring `ttl`; the location becomes the
//!   session's unless the user is online on another session (a newer login), which keeps it.
//! - **heartbeat**: online on another session: refreshes the expiry only; otherwise writes the
//!   session's value (so a Redis that lost its keys gets the live sessions back), expiring `ttl`.
//! - **disconnect**: online at the session or offline: removes the location, the settings stay
//!   for `grace`; online on another session: nothing.
//! - **delete**: online at the session or offline: deletes the key; else nothing.
//! - **query**: reads the value; with gate liveness (`gate_ttl`), a location on a gate whose key
//!   `<prefix>:gate:<gate_id>` has expired is removed first (the user is offline).
//!
//! A bind with [`DuplicateLogin::Refuse`] writes nothing when the user is online on another
//! session (of a live gate). The scripts read the gate keys they are not given as `KEYS`: the
//! store needs a standalone Redis (or a primary with replicas), not Redis Cluster.
//!
//! Sessions not bound to a user are not stored (every operation is a no-op).
//!
//! A value that is not a stored session (another service wrote something else under the key) is
//! [`StoreError::Corrupt`], naming the user; the operation still does what it can: bind, storage
//! and heartbeat overwrite it with the session, disconnect gives it the `grace` expiry, delete
//! deletes it.
//!
//! # Connection
//!
//! One [`ConnectionManager`] (a multiplexed connection that reconnects by itself) per store.
//! [`RedisStore::connect`] waits `connect_timeout` for Redis, then returns the store anyway and
//! keeps trying in the background; until it is connected every operation fails at once with
//! [`StoreError::Unavailable`]. Once connected, an operation that gets no answer within
//! [`RedisStore::OP_TIMEOUT`] fails (Unavailable) rather than waiting for the agent's
//! `store_timeout`, and the manager reconnects when Redis is back.
//!
//! [`MemoryStore`]: gatekit_agent::MemoryStore

use gatekit_agent::{
    Bound, DuplicateLogin, Session, SessionStore, StoreError, StoreFuture, StoredSession,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How to reach Redis and how long stored sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// The Redis server, `redis://[[user]:password@]host[:port][/db]` (`rediss://` is not
    /// supported: the crate is built without TLS).
    pub url: String,
    /// The first part of every key: `<prefix>:session:<user_id>`.
    pub prefix: String,
    /// How long an online entry lives past its last bind, storage or heartbeat (a few heartbeat
    /// intervals). Rounded to whole milliseconds, at least 1.
    pub ttl: Duration,
    /// How long a disconnected user's settings are kept. Rounded to whole milliseconds, at
    /// least 1.
    pub grace: Duration,
    /// How long [`RedisStore::connect`] waits for Redis before it returns the store unconnected
    /// (it keeps trying in the background).
    pub connect_timeout: Duration,
    /// Gate liveness: `Some(gate_ttl)` when every gate keeps its key `<prefix>:gate:<gate_id>`
    /// alive ([`RedisStore::beat_gate`], which sets it to expire `gate_ttl` later). Then a user
    /// whose location is on a gate without its key is offline: a login elsewhere does not count
    /// it as a duplicate, and [`SessionStore::query`] reports it offline (and removes the
    /// location). `None`: every location counts as live until its entry expires.
    pub gate_ttl: Option<Duration>,
}

impl Default for RedisStoreConfig {
    /// `redis://127.0.0.1:6379`, prefix `gatekit`, entries living 3 minutes past their last
    /// heartbeat and 1 minute after a disconnect ([`MemoryStore`]'s defaults), 2 s to connect.
    ///
    /// [`MemoryStore`]: gatekit_agent::MemoryStore
    fn default() -> Self {
        RedisStoreConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "gatekit".to_owned(),
            ttl: Duration::from_secs(180),
            grace: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            gate_ttl: None,
        }
    }
}

/// Why a [`RedisStore`] could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisStoreError {
    /// The URL is not a Redis URL this build can use.
    #[error("redis url {url:?}: {reason}")]
    Url {
        /// The URL as configured (its password, if any, replaced by `***`).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The Redis session store (see the [module](self) documentation for its keys and rules).
///
/// Cloning shares the store (its connection and its [`redis_ops`](Self::redis_ops) count).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL for messages, password hidden.
    shown_url: String,
    prefix: String,
    ttl_ms: u64,
    grace_ms: u64,
    /// The key prefix when gate liveness is tracked, else empty (the scripts' convention).
    cluster: String,
    gate_ttl_ms: u64,
    /// Set once, when the first connection is made (at [`RedisStore::connect`] or later by
    /// `connector`).
    conn: Arc<OnceLock<ConnectionManager>>,
    /// Why the last connection attempt failed, while `conn` is unset.
    last_error: Arc<Mutex<String>>,
    /// Commands and script calls sent.
    ops: AtomicU64,
    /// The background connection attempts, while not connected at start (ended with the store).
    _connector: Option<AbortOnDrop>,
}

/// Aborts its task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.shown_url)
            .field("prefix", &self.inner.prefix)
            .field("ttl_ms", &self.inner.ttl_ms)
            .field("grace_ms", &self.inner.grace_ms)
            .field("connected", &self.inner.conn.get().is_some())
            .finish()
    }
}

/// A script of the store: the shared Lua prelude followed by the operation's own text.
struct LuaScript {
    code: &'static str,
    script: Script,
}

impl LuaScript {
    fn new(code: &'static str) -> LuaScript {
        LuaScript {
            code,
            script: Script::new(code),
        }
    }
}

macro_rules! lua {
    ($file:literal) => {
        LazyLock::new(|| {
            LuaScript::new(concat!(
                include_str!("redis/common.lua"),
                include_str!(concat!("redis/", $file))
            ))
        })
    };
}

static BIND: LazyLock<LuaScript> = lua!("bind.lua");
static STORAGE: LazyLock<LuaScript> = lua!("storage.lua");
static HEARTBEAT: LazyLock<LuaScript> = lua!("heartbeat.lua");
static DISCONNECT: LazyLock<LuaScript> = lua!("disconnect.lua");
static DELETE: LazyLock<LuaScript> = lua!("delete.lua");
static LOCATE: LazyLock<LuaScript> = lua!("locate.lua");
static BEAT: LazyLock<LuaScript> = lua!("beat.lua");
static REAP: LazyLock<LuaScript> = lua!("reap.lua");

/// What a script found under the key, when it returns it.
enum Old {
    /// No key.
    Missing,
    /// A string value (a stored session, or something unreadable).
    Value(Vec<u8>),
    /// The key holds another Redis type (its `TYPE`).
    OtherType(String),
}

impl RedisStore {
    /// The longest a connection attempt or a command waits for Redis; an operation that gets no
    /// answer within it fails with [`StoreError::Unavailable`] (below the agent's default
    /// `store_timeout` of 2 s).
    pub const OP_TIMEOUT: Duration = Duration::from_secs(1);

    /// How often the store tries to connect when Redis was not there at [`connect`](Self::connect).
    pub const RETRY_EVERY: Duration = Duration::from_secs(1);

    /// Connects to Redis at `config.url`. Err only if the URL is not usable; if Redis does not
    /// answer within `config.connect_timeout`, logs a warning and returns the store, which keeps
    /// trying every [`RETRY_EVERY`](Self::RETRY_EVERY) in the background (its operations fail
    /// with [`StoreError::Unavailable`] until then).
    ///
    /// Must run inside a Tokio runtime (the connection's tasks run on it).
    pub async fn connect(config: RedisStoreConfig) -> Result<RedisStore, RedisStoreError> {
        let shown_url = hide_password(&config.url);
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| RedisStoreError::Url {
                url: shown_url.clone(),
                reason: e.to_string(),
            })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Self::OP_TIMEOUT))
            .set_response_timeout(Some(Self::OP_TIMEOUT))
            // One attempt per reconnect: an operation waiting on a reconnect fails as soon as
            // the attempt does (with its error) instead of sitting through a backoff; the next
            // operation starts the next attempt.
            .set_number_of_retries(0);
        let conn = Arc::new(OnceLock::new());
        let last_error = Arc::new(Mutex::new(String::new()));

        let deadline = Instant::now() + config.connect_timeout;
        let mut connector = None;
        match connect_until(&client, &manager_config, deadline).await {
            Ok(manager) => {
                let _ = conn.set(manager);
            }
            Err(why) => {
                tracing::warn!(
                    url = %shown_url,
                    error = %why,
                    "cannot connect to Redis; starting without it, session store operations fail until it is there"
                );
                *last_error.lock().expect("redis store lock") = why;
                let task = tokio::spawn(keep_connecting(
                    client,
                    manager_config,
                    shown_url.clone(),
                    conn.clone(),
                    last_error.clone(),
                ));
                connector = Some(AbortOnDrop(task));
            }
        }
        Ok(RedisStore {
            inner: Arc::new(Inner {
                shown_url,
                prefix: config.prefix.clone(),
                ttl_ms: millis(config.ttl),
                grace_ms: millis(config.grace),
                cluster: match config.gate_ttl {
                    Some(_) => config.prefix.clone(),
                    None => String::new(),
                },
                gate_ttl_ms: config.gate_ttl.map_or(0, millis),
                conn,
                last_error,
                ops: AtomicU64::new(0),
                _connector: connector,
            }),
        })
    }

    /// The key of `user_id`'s stored session: `<prefix>:session:<user_id>`.
    pub fn key(&self, user_id: &str) -> String {
        self.inner.key(user_id)
    }

    /// The liveness key of gate `gate_id`: `<prefix>:gate:<gate_id>`.
    pub fn gate_key(&self, gate_id: &str) -> String {
        format!("{}:gate:{gate_id}", self.inner.prefix)
    }

    /// Marks gate `gate_id` alive for `gate_ttl` (one `SET ... PX`): a gate calls it every
    /// third of `gate_ttl` (gatekit-server does, while it is reachable over NATS). The value is
    /// `{"v":1,"gate":<gate_id>,"at_ms":<unix time in ms>}`. Returns whether the key was still
    /// there (false: it expired, or Redis lost it, since the last beat). Err if liveness is not
    /// tracked (`gate_ttl` None) or Redis did not take it.
    pub async fn beat_gate(&self, gate_id: &str) -> Result<bool, StoreError> {
        self.tracked()?;
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let value = serde_json::json!({"v": 1, "gate": gate_id, "at_ms": at_ms}).to_string();
        let reply = self
            .inner
            .eval(
                &BEAT,
                &self.gate_key(gate_id),
                &[
                    gate_id,
                    &value,
                    &self.inner.gate_ttl_ms.to_string(),
                    &self.inner.cluster,
                ],
            )
            .await?;
        match reply {
            Value::Int(was) => Ok(was == 1),
            other => Err(self.inner.unexpected(&other)),
        }
    }

    /// Sets offline the users located on gates that died (their liveness key expired more than
    /// `gate_ttl` ago), at most `budget` users per call, or, with `own`, every user located on
    /// gate `own` (a gate starting reaps what an earlier run of it left). Returns (users set
    /// offline, users handled): call again while handled == budget. One script call.
    pub async fn reap(&self, own: Option<&str>, budget: u32) -> Result<(u64, u64), StoreError> {
        self.tracked()?;
        let reply = self
            .inner
            .eval(
                &REAP,
                &format!("{}:gates", self.inner.prefix),
                &[
                    &self.inner.cluster,
                    &self.inner.grace_ms.to_string(),
                    &self.inner.gate_ttl_ms.to_string(),
                    &budget.to_string(),
                    own.unwrap_or(""),
                ],
            )
            .await?;
        match reply {
            Value::Array(v) => match v.as_slice() {
                [Value::Int(reaped), Value::Int(handled)] => Ok((*reaped as u64, *handled as u64)),
                _ => Err(self.inner.unexpected(&Value::Array(v))),
            },
            other => Err(self.inner.unexpected(&other)),
        }
    }

    fn tracked(&self) -> Result<(), StoreError> {
        if self.inner.cluster.is_empty() {
            return Err(StoreError::Unavailable(
                "gate liveness is not tracked by this store (gate_ttl is not set)".into(),
            ));
        }
        Ok(())
    }

    /// Removes gate `gate_id`'s liveness key (a gate that stops on purpose, after its sessions
    /// have ended).
    pub async fn forget_gate(&self, gate_id: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.gate_key(gate_id));
        self.inner.send(&cmd).await.map(|_| ())
    }

    /// Whether the store has connected to Redis (at least once; a connected store whose Redis
    /// went away still says true while it reconnects).
    pub fn is_connected(&self) -> bool {
        self.inner.conn.get().is_some()
    }

    /// Sends `PING` (health checks, tests).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("PING");
        cmd.arg("gatekit");
        match self.inner.send(&cmd).await? {
            Value::BulkString(b) if b == b"gatekit" => Ok(()),
            other => Err(self.inner.unexpected(&other)),
        }
    }

    /// How many Redis commands (script calls included, `PING` too) this store has sent: one per
    /// operation, plus one when a script had to be sent again in full (`EVAL` after `NOSCRIPT`,
    /// once per script after Redis restarted). Operations that fail before sending anything
    /// (not connected yet, unbound sessions) send nothing.
    pub fn redis_ops(&self) -> u64 {
        self.inner.ops.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn key(&self, user_id: &str) -> String {
        format!("{}:session:{user_id}", self.prefix)
    }

    /// The connection, or Unavailable at once if there is none yet.
    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        match self.conn.get() {
            Some(c) => Ok(c.clone()),
            None => Err(StoreError::Unavailable(format!(
                "redis at {} not connected yet: {}",
                self.shown_url,
                self.last_error.lock().expect("redis store lock")
            ))),
        }
    }

    fn unavailable(&self, e: &RedisError) -> StoreError {
        StoreError::Unavailable(format!("redis at {}: {e}", self.shown_url))
    }

    fn unexpected(&self, v: &Value) -> StoreError {
        StoreError::Unavailable(format!(
            "redis at {}: unexpected reply {v:?}",
            self.shown_url
        ))
    }

    /// Sends one command, bounded by [`RedisStore::OP_TIMEOUT`].
    async fn send(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        let mut conn = self.connection()?;
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.bounded(async { cmd.query_async::<Value>(&mut conn).await })
            .await?
            .map_err(|e| self.unavailable(&e))
    }

    /// Runs `script` on `key` with `args`: `EVALSHA`, and `EVAL` if Redis does not have the
    /// script (it restarted, or `SCRIPT FLUSH`); EVAL caches it for the next EVALSHA. The whole
    /// is bounded by [`RedisStore::OP_TIMEOUT`].
    async fn eval(
        &self,
        script: &LuaScript,
        key: &str,
        args: &[&str],
    ) -> Result<Value, StoreError> {
        let mut conn = self.connection()?;
        let call = |name: &str, script: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(script).arg(1).arg(key).arg(args);
            cmd
        };
        let evalsha = call("EVALSHA", script.script.get_hash());
        let result = self
            .bounded(async {
                self.ops.fetch_add(1, Ordering::Relaxed);
                match evalsha.query_async::<Value>(&mut conn).await {
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        self.ops.fetch_add(1, Ordering::Relaxed);
                        call("EVAL", script.code)
                            .query_async::<Value>(&mut conn)
                            .await
                    }
                    other => other,
                }
            })
            .await?;
        result.map_err(|e| self.unavailable(&e))
    }

    /// `f`, or Unavailable if it takes longer than [`RedisStore::OP_TIMEOUT`].
    async fn bounded<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
        tokio::time::timeout(RedisStore::OP_TIMEOUT, f)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "redis at {} did not answer within {:?}",
                    self.shown_url,
                    RedisStore::OP_TIMEOUT
                ))
            })
    }

    /// A script's reply: the old value it returned, if any.
    fn old(&self, reply: Value) -> Result<Old, StoreError> {
        match reply {
            Value::Nil => Ok(Old::Missing),
            Value::BulkString(b) => Ok(Old::Value(b)),
            Value::SimpleString(t) => Ok(Old::OtherType(t)),
            Value::Okay => Ok(Old::OtherType("OK".to_owned())),
            other => Err(self.unexpected(&other)),
        }
    }
}

/// A value the scripts found unreadable: Corrupt, saying what is wrong and what was done.
fn corrupt(user_id: &str, old: Old, done: &str) -> StoreError {
    let what = match old {
        Old::Missing => "no value".to_owned(),
        Old::Value(b) => match StoredSession::from_json(&b) {
            Err(why) => why,
            Ok(_) => "not a stored session the store's scripts can update".to_owned(),
        },
        Old::OtherType(t) => format!("the key holds a redis {t}, not a string"),
    };
    StoreError::Corrupt {
        user_id: user_id.to_owned(),
        reason: format!("{what} ({done})"),
    }
}

impl SessionStore for RedisStore {
    fn bind(&self, session: Arc<Session>, policy: DuplicateLogin) -> StoreFuture<Bound> {
        let Some(fresh) = StoredSession::of(&session) else {
            return ready(Ok(Bound::default()));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let key = inner.key(&fresh.user_id);
            let reply = inner
                .eval(
                    &BIND,
                    &key,
                    &[
                        &fresh.to_json(),
                        &inner.ttl_ms.to_string(),
                        policy.name(),
                        &inner.cluster,
                    ],
                )
                .await?;
            let (outcome, old) = match reply {
                Value::Array(mut parts) if parts.len() == 2 => {
                    let old = parts.pop().expect("two parts");
                    match parts.pop().expect("two parts") {
                        Value::BulkString(o) => (o, old),
                        other => return Err(inner.unexpected(&other)),
                    }
                }
                other => return Err(inner.unexpected(&other)),
            };
            let elsewhere = outcome != b"bound";
            let refused = outcome == b"refused";
            match inner.old(old)? {
                Old::Missing => Ok(Bound::default()),
                Old::Value(b) => match StoredSession::from_json(&b) {
                    Ok(old) => Ok(Bound {
                        restored: if refused {
                            Default::default()
                        } else {
                            old.restored_for(&session)
                        },
                        previous: old
                            .location
                            .clone()
                            .filter(|_| elsewhere && !old.is_at(&session)),
                        refused,
                    }),
                    Err(_) => Err(corrupt(
                        &fresh.user_id,
                        Old::Value(b),
                        "overwritten by the bind",
                    )),
                },
                old @ Old::OtherType(_) => {
                    Err(corrupt(&fresh.user_id, old, "overwritten by the bind"))
                }
            }
        })
    }

    fn storage(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.write(&STORAGE, "storage", session)
    }

    fn heartbeat(&self, session: Arc<Session>) -> StoreFuture<()> {
        self.write(&HEARTBEAT, "heartbeat", session)
    }

    fn disconnect(&self, session: Arc<Session>) -> StoreFuture<()> {
        let Some(user_id) = session.user_id.clone() else {
            return ready(Ok(()));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let key = inner.key(&user_id);
            let reply = inner
                .eval(
                    &DISCONNECT,
                    &key,
                    &[
                        &inner.grace_ms.to_string(),
                        &session.server_id,
                        &session.session_id,
                        &inner.cluster,
                    ],
                )
                .await?;
            match inner.old(reply)? {
                Old::Missing => Ok(()),
                old => Err(corrupt(&user_id, old, "expires after the grace")),
            }
        })
    }

    fn delete(&self, session: Arc<Session>) -> StoreFuture<()> {
        let Some(user_id) = session.user_id.clone() else {
            return ready(Ok(()));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let key = inner.key(&user_id);
            let reply = inner
                .eval(
                    &DELETE,
                    &key,
                    &[&session.server_id, &session.session_id, &inner.cluster],
                )
                .await?;
            match inner.old(reply)? {
                Old::Missing => Ok(()),
                old => Err(corrupt(&user_id, old, "deleted")),
            }
        })
    }

    fn query(&self, user_id: &str) -> StoreFuture<Option<StoredSession>> {
        let inner = self.inner.clone();
        let user_id = user_id.to_owned();
        Box::pin(async move {
            let key = inner.key(&user_id);
            let reply = inner
                .eval(
                    &LOCATE,
                    &key,
                    &[&inner.cluster, &inner.grace_ms.to_string()],
                )
                .await?;
            match inner.old(reply)? {
                Old::Missing => Ok(None),
                Old::Value(b) => {
                    StoredSession::from_json(&b)
                        .map(Some)
                        .map_err(|reason| StoreError::Corrupt {
                            user_id: user_id.clone(),
                            reason,
                        })
                }
                Old::OtherType(_) => Err(StoreError::Corrupt {
                    user_id,
                    reason: "the key holds another redis type, not a string".to_owned(),
                }),
            }
        })
    }
}

impl RedisStore {
    /// storage and heartbeat: `script` with the session's value, ttl and location.
    fn write(
        &self,
        script: &'static LazyLock<LuaScript>,
        op: &'static str,
        session: Arc<Session>,
    ) -> StoreFuture<()> {
        let Some(fresh) = StoredSession::of(&session) else {
            return ready(Ok(()));
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let key = inner.key(&fresh.user_id);
            let reply = inner
                .eval(
                    script,
                    &key,
                    &[
                        &fresh.to_json(),
                        &inner.ttl_ms.to_string(),
                        &session.server_id,
                        &session.session_id,
                        &inner.cluster,
                    ],
                )
                .await?;
            match inner.old(reply)? {
                Old::Missing => Ok(()),
                old => Err(corrupt(
                    &fresh.user_id,
                    old,
                    &format!("overwritten by the {op}"),
                )),
            }
        })
    }
}

fn ready<T: Send + 'static>(v: Result<T, StoreError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(v))
}

/// Whole milliseconds, at least 1 (`PX 0` is an error).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Tries to connect until `deadline` (attempts 100 ms apart); Err is the last attempt's error.
async fn connect_until(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
    deadline: Instant,
) -> Result<ConnectionManager, String> {
    let mut last = "no attempt made".to_owned();
    loop {
        let attempt = ConnectionManager::new_with_config(client.clone(), config.clone());
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(manager)) => return Ok(manager),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => {
                if last == "no attempt made" {
                    last = "no connection within the connect timeout".to_owned();
                }
                return Err(last);
            }
        }
        let next = Instant::now() + Duration::from_millis(100);
        if next >= deadline {
            return Err(last);
        }
        tokio::time::sleep_until(next).await;
    }
}

/// The background attempts after a start without Redis: one every [`RedisStore::RETRY_EVERY`]
/// until one connects.
async fn keep_connecting(
    client: redis::Client,
    config: ConnectionManagerConfig,
    shown_url: String,
    conn: Arc<OnceLock<ConnectionManager>>,
    last_error: Arc<Mutex<String>>,
) {
    loop {
        tokio::time::sleep(RedisStore::RETRY_EVERY).await;
        let attempt = ConnectionManager::new_with_config(client.clone(), config.clone());
        match tokio::time::timeout(RedisStore::OP_TIMEOUT * 2, attempt).await {
            Ok(Ok(manager)) => {
                let _ = conn.set(manager);
                tracing::info!(url = %shown_url, "connected to Redis");
                return;
            }
            Ok(Err(e)) => *last_error.lock().expect("redis store lock") = e.to_string(),
            Err(_) => {
                *last_error.lock().expect("redis store lock") =
                    format!("no connection within {:?}", RedisStore::OP_TIMEOUT * 2)
            }
        }
    }
}

/// `url` with the password of its user info, if any, replaced by `***` (for messages).
fn hide_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("redis://:secret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            hide_password("redis://u:secret@h:6379"),
            "redis://u:***@h:6379"
        );
        assert_eq!(hide_password("redis://u@h"), "redis://u@h");
        assert_eq!(hide_password("redis://h:6379"), "redis://h:6379");
        assert_eq!(hide_password("nonsense"), "nonsense");
    }

    #[test]
    fn durations_are_whole_milliseconds_at_least_one() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(3)), 3000);
    }

    #[test]
    fn every_script_starts_with_the_prelude() {
        for s in [&BIND, &STORAGE, &HEARTBEAT, &DISCONNECT, &DELETE] {
            assert!(s.code.starts_with(include_str!("redis/common.lua")));
            assert_eq!(s.script.get_hash().len(), 40);
        }
    }
}

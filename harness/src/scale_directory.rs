//! `gatekit scale --directory`: the connection-scale run with the cluster's user directory on.
//! A `redis-server` (Debian's) is started on a free loopback port; every gate process keeps its
//! sessions there (`[store] kind = "redis"`, its own gate id) and logs each connection in with
//! an HMAC token, so every held connection is a user bound to its session, listed in Redis with
//! its gate and session id. Measured from Redis itself (`INFO`): its memory per online user and
//! the commands it ran per bind and per storage heartbeat.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// The shared secret of the run's HMAC logins.
pub const SECRET: &str = "gatekit scale --directory secret";

/// The default storage heartbeat interval of the gates (so a hold of a few seconds sees
/// heartbeats); `gatekit scale --heartbeat` changes it.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// What the directory cost in Redis at one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirectoryUse {
    /// Users online (one per connection) when measured.
    pub users: u64,
    /// Redis `used_memory` growth from before the first connection to all bound, per user, bytes.
    pub redis_bytes_per_user: f64,
    /// Script calls (`EVALSHA` + `EVAL`) Redis ran while the connections logged in, per login:
    /// its bind, its first storage heartbeat (made at bind), any later heartbeat, and the gates'
    /// liveness beats and reaps during that time.
    pub commands_per_login: f64,
    /// The same less the storage heartbeats the gates made meanwhile and the liveness calls:
    /// what one bind costs.
    pub commands_per_bind: f64,
    /// Script calls during the hold, per storage heartbeat the gates made then (liveness calls
    /// included).
    pub commands_per_heartbeat: f64,
    /// Storage heartbeats the gates made during the hold.
    pub heartbeats: u64,
    /// Of the script calls counted, the gates' liveness beats and reaps (estimated: two per gate
    /// per beat interval).
    pub liveness_calls: f64,
    /// Store operations that failed or timed out (all gates) by the time every user was bound.
    pub store_errors_bound: u64,
    /// The same at the end of the hold.
    pub store_errors_held: u64,
}

/// A `redis-server` for the run, killed on drop.
pub struct RedisProcess {
    child: Child,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
}

impl RedisProcess {
    /// Starts `redis-server` on a free loopback port, no persistence. Err names what is missing.
    pub fn start() -> Result<RedisProcess, String> {
        let bin = crate::cluster::procs::find_redis_server()
            .map_err(|e| format!("scale --directory: {e}"))?;
        let (child, port) = crate::cluster::procs::start_listening(
            &bin,
            "redis-server",
            crate::cluster::procs::redis_args,
        )?;
        let mut p = RedisProcess {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        // Answering, not only listening.
        p.info()?;
        Ok(p)
    }

    /// `INFO` as (field, value) lines.
    pub fn info(&mut self) -> Result<Info, String> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| format!("redis at {}: {e}", self.url))?;
        let text: String = redis::cmd("INFO")
            .arg("everything")
            .query(&mut c)
            .map_err(|e| format!("redis INFO: {e}"))?;
        let keys: u64 = redis::cmd("DBSIZE")
            .query(&mut c)
            .map_err(|e| format!("redis DBSIZE: {e}"))?;
        Ok(Info { text, keys })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `INFO everything` reply and the key count.
pub struct Info {
    text: String,
    /// `DBSIZE`.
    pub keys: u64,
}

impl Info {
    fn field(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// `used_memory`, bytes.
    pub fn used_memory(&self) -> u64 {
        self.field("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Script calls so far: `calls=` of `cmdstat_evalsha` plus `cmdstat_eval`.
    pub fn script_calls(&self) -> u64 {
        ["cmdstat_evalsha", "cmdstat_eval"]
            .iter()
            .filter_map(|c| self.field(c))
            .filter_map(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    }
}

/// Writes the gates' configuration (Redis store, HMAC logins, storage heartbeats every
/// `heartbeat`) into `dir`; returns its path.
pub fn gate_config(dir: &Path, redis_url: &str, heartbeat: Duration) -> Result<PathBuf, String> {
    let path = dir.join("gate-directory.toml");
    let text = format!(
        r#"# gatekit scale --directory: sessions in Redis, every connection a logged-in user.
[store]
kind = "redis"
url = "{redis_url}"
gate_ttl = "30s"
ttl = "{ttl}s"
[limits]
heartbeat = "{heartbeat}s"
[auth]
kind = "hmac"
secret = "{SECRET}"
"#,
        heartbeat = heartbeat.as_secs().max(1),
        ttl = (heartbeat.as_secs().max(1) * 3).max(180),
    );
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The liveness beat interval of [`gate_config`]'s `gate_ttl` (30 s / 3).
pub const BEAT_EVERY: Duration = Duration::from_secs(10);

/// The script calls `gates` gates make for their liveness over `elapsed` (an estimate: a beat
/// and a reap per gate per started [`BEAT_EVERY`]).
pub fn liveness_calls(gates: usize, elapsed: Duration) -> f64 {
    2.0 * gates as f64 * (elapsed.as_secs_f64() / BEAT_EVERY.as_secs_f64()).ceil()
}

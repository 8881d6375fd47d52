//! `gatekit cluster --measure-push`: what the directory costs, measured (not checked).
//!
//! - Redis at rest: `INFO commandstats` deltas over an idle window with the push users online —
//!   the gates' liveness beats (`SET`) and the sessions' storage heartbeats (`EVALSHA`).
//! - Per bind: `--bind-users` new users connect at once with their tokens; after a second
//!   (no directory polling meanwhile) the commands Redis processed, less the idle rate, per
//!   user, and Redis `used_memory` per online user.
//! - Push throughput: `users.send` to the online push users, as fast as `concurrency` requests
//!   in flight allow, for the measured duration; delivered pushes per second and the latency
//!   from the request sent to the client's receipt (one process, one clock): p50, p99, max;
//!   and the Redis commands per `users.send` (the directory's lookup of the user).

use super::directory::{close_all, Directory};
use super::user_client::{UserClient, DIRECTORY_TOPIC};
use super::users;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The idle window over which Redis's resting rate is measured.
const IDLE: Duration = Duration::from_secs(2);

/// The time given to the binds before Redis is read again.
const BIND_SETTLE: Duration = Duration::from_secs(1);

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct MeasureOptions {
    /// How long pushes are sent.
    pub duration: Duration,
    /// `users.send` requests in flight at once.
    pub concurrency: usize,
    /// Users connected at once for the bind cost.
    pub bind_users: usize,
}

/// What was measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeasureReport {
    /// Online users the pushes went to.
    pub users: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Seconds of sending.
    pub seconds: f64,
    /// `users.send` sent.
    pub sent: u64,
    /// Answered ok.
    pub answered_ok: u64,
    /// Pushes received by their user (each once).
    pub delivered: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Delivered pushes per second of sending.
    pub delivered_per_s: f64,
    /// Send → receipt, microseconds: p50, p99, max.
    pub latency_us: [u64; 3],
    /// Redis commands per second at rest, by command (`set`, `evalsha`, ...).
    pub idle_commands_per_s: BTreeMap<String, f64>,
    /// Redis commands per second at rest, all.
    pub idle_total_per_s: f64,
    /// Users bound at once for the bind cost.
    pub bind_users: usize,
    /// Redis commands per bind, by command, the idle rate taken off.
    pub commands_per_bind: BTreeMap<String, f64>,
    /// Redis commands per bind, all (`total_commands_processed`), the idle rate taken off.
    pub total_per_bind: f64,
    /// Redis `used_memory` growth per online user, bytes.
    pub memory_per_user: f64,
    /// Redis commands per `users.send` (the directory looks the user up), by command, the idle
    /// rate taken off.
    pub commands_per_send: BTreeMap<String, f64>,
    /// What went wrong while measuring.
    pub problems: Vec<String>,
}

/// What Redis says at one moment: calls per command, total commands, memory.
struct RedisInfo {
    at: Instant,
    calls: BTreeMap<String, u64>,
    total: u64,
    used_memory: u64,
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

async fn info(redis: &users::Redis) -> Result<RedisInfo, String> {
    let stats = redis.info("commandstats").await?;
    let rest = redis.info("default").await?;
    let calls = stats
        .lines()
        .filter_map(|l| {
            let (name, v) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = v.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect();
    Ok(RedisInfo {
        at: Instant::now(),
        calls,
        total: field(&rest, "total_commands_processed").ok_or("no total_commands_processed")?,
        used_memory: field(&rest, "used_memory").ok_or("no used_memory")?,
    })
}

/// Per-command deltas from `a` to `b`, less this process's own INFO calls.
fn deltas(a: &RedisInfo, b: &RedisInfo) -> (BTreeMap<String, f64>, f64) {
    let mut d = BTreeMap::new();
    for (k, &v) in &b.calls {
        let mut n = v.saturating_sub(a.calls.get(k).copied().unwrap_or(0)) as f64;
        if k == "info" {
            n -= 2.0;
        }
        if n > 0.0 {
            d.insert(k.clone(), n);
        }
    }
    (d, b.total.saturating_sub(a.total) as f64 - 2.0)
}

/// Measures with the online `clients` (the push users).
pub async fn run(d: &Directory<'_>, clients: &[UserClient], m: MeasureOptions) -> MeasureReport {
    let mut r = MeasureReport {
        users: clients.len(),
        concurrency: m.concurrency,
        bind_users: m.bind_users,
        ..MeasureReport::default()
    };
    if let Err(e) = redis_costs(d, m, &mut r).await {
        r.problems.push(e);
    }
    let before = info(&d.redis).await;
    pushes(d, clients, m, &mut r).await;
    match (before, info(&d.redis).await) {
        (Ok(a), Ok(b)) => {
            let secs = (b.at - a.at).as_secs_f64();
            let k = r.sent.max(1) as f64;
            r.commands_per_send = deltas(&a, &b)
                .0
                .iter()
                .map(|(c, v)| {
                    let rest = r.idle_commands_per_s.get(c).copied().unwrap_or(0.0) * secs;
                    (c.clone(), ((v - rest) / k).max(0.0))
                })
                .filter(|(_, v)| *v >= 0.005)
                .collect();
        }
        (Err(e), _) | (_, Err(e)) => r.problems.push(e),
    }
    r
}

async fn redis_costs(
    d: &Directory<'_>,
    m: MeasureOptions,
    r: &mut MeasureReport,
) -> Result<(), String> {
    let s0 = info(&d.redis).await?;
    tokio::time::sleep(IDLE).await;
    let s1 = info(&d.redis).await?;
    let idle_secs = (s1.at - s0.at).as_secs_f64();
    let (idle, idle_total) = deltas(&s0, &s1);
    r.idle_commands_per_s = idle
        .iter()
        .map(|(k, v)| (k.clone(), v / idle_secs))
        .collect();
    r.idle_total_per_s = idle_total / idle_secs;

    let n = d.gates.len();
    let who: Vec<(String, usize)> = (0..m.bind_users)
        .map(|i| (format!("bind-{i}"), i % n))
        .collect();
    let s2 = info(&d.redis).await?;
    let (bound, failed) = d.connect_all(&who).await;
    tokio::time::sleep(BIND_SETTLE).await;
    let s3 = info(&d.redis).await?;
    if !failed.is_empty() {
        r.problems
            .push(format!("{} bind users could not connect", failed.len()));
    }
    let secs = (s3.at - s2.at).as_secs_f64();
    let k = bound.len().max(1) as f64;
    let (binds, total) = deltas(&s2, &s3);
    r.commands_per_bind = binds
        .iter()
        .map(|(c, v)| {
            let rest = r.idle_commands_per_s.get(c).copied().unwrap_or(0.0) * secs;
            (c.clone(), ((v - rest) / k).max(0.0))
        })
        .collect();
    r.total_per_bind = ((total - r.idle_total_per_s * secs) / k).max(0.0);
    r.memory_per_user = (s3.used_memory as f64 - s2.used_memory as f64) / k;
    close_all(bound).await;
    Ok(())
}

async fn pushes(
    d: &Directory<'_>,
    clients: &[UserClient],
    m: MeasureOptions,
    r: &mut MeasureReport,
) {
    if clients.is_empty() {
        return;
    }
    let before: Vec<usize> = clients.iter().map(UserClient::push_count).collect();
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let start = Instant::now();
    let end = start + m.duration;
    let worker = || async {
        while Instant::now() < end {
            let seq = next.fetch_add(1, Ordering::Relaxed);
            let c = &clients[seq as usize % clients.len()];
            sent_at
                .lock()
                .expect("sent times")
                .insert(seq, Instant::now());
            let body = format!("m{seq}");
            if let Ok(v) = users::send(&d.nats, &c.user, DIRECTORY_TOPIC, body.into()).await {
                if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    join_all((0..m.concurrency.max(1)).map(|_| worker())).await;
    r.seconds = start.elapsed().as_secs_f64();
    r.sent = next.load(Ordering::Relaxed);
    r.answered_ok = ok.load(Ordering::Relaxed);
    // Let the last ones arrive.
    let until = Instant::now() + Duration::from_secs(2);
    let received = |c: &[UserClient]| -> usize {
        c.iter().zip(&before).map(|(c, b)| c.push_count() - b).sum()
    };
    while (received(clients) as u64) < r.answered_ok && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_at = sent_at.lock().expect("sent times");
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    let mut seen = std::collections::HashSet::new();
    for (c, b) in clients.iter().zip(&before) {
        let pushes = c.pushes();
        for (body, at) in &pushes[*b..] {
            let Some(seq) = std::str::from_utf8(body)
                .ok()
                .and_then(|t| t.strip_prefix('m'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if !seen.insert(seq) {
                r.duplicated += 1;
                continue;
            }
            r.delivered += 1;
            if let Some(t) = sent_at.get(&seq) {
                let _ = h.record(at.saturating_duration_since(*t).as_micros() as u64);
            }
        }
    }
    r.delivered_per_s = r.delivered as f64 / r.seconds.max(1e-9);
    r.latency_us = [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()];
}

impl fmt::Display for MeasureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |m: &BTreeMap<String, f64>| {
            let v: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        let ms = |us: u64| us as f64 / 1000.0;
        writeln!(
            f,
            "  measured push   {} users, {} in flight, {:.1} s: {} sent, {} answered ok, {} delivered ({:.0}/s), {} duplicated; send → receipt ms p50 {:.3} · p99 {:.3} · max {:.3}",
            self.users,
            self.concurrency,
            self.seconds,
            self.sent,
            self.answered_ok,
            self.delivered,
            self.delivered_per_s,
            self.duplicated,
            ms(self.latency_us[0]),
            ms(self.latency_us[1]),
            ms(self.latency_us[2])
        )?;
        writeln!(
            f,
            "  measured redis  at rest {:.1} commands/s ({}); per bind ({} users at once) {:.2} commands ({}); per users.send ({}); used_memory {:.0} bytes per online user",
            self.idle_total_per_s,
            per(&self.idle_commands_per_s),
            self.bind_users,
            self.total_per_bind,
            per(&self.commands_per_bind),
            per(&self.commands_per_send),
            self.memory_per_user
        )?;
        for p in &self.problems {
            writeln!(f, "      {p}")?;
        }
        Ok(())
    }
}

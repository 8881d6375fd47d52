//! `gate_killed`: after a gate is killed, no user stays listed online past the grace period.
//!
//! The last gate is SIGKILLed while the push users on it are connected (their connections must
//! drop). Then, every 100 ms, for each of those users: `users.is_online` through NATS (answered
//! by the other gates) and the user's stored session in Redis, read as any service may. A user
//! is offline once the directory says `online:false` **and** the stored session no longer
//! names the dead gate as the user's location (the gates remove it once the dead gate's
//! liveness key has expired, `gate_ttl` after its last refresh). Every user must be offline
//! within `offline_within` (the grace) of the kill; the time is reported, the max over users.
//! Then `users.send` to each must answer `ok:false`, and each reconnects with its token to a
//! surviving gate, where `users.is_online` must list it.

use super::directory::{check_lines, close_all, Directory, MAX_LISTED};
use super::user_client::{Ended, UserClient};
use super::users;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How long the killed gate's clients may take to see their connections drop.
const DROPPED_WITHIN: Duration = Duration::from_secs(2);

/// Polling goes on this long past the window, to report how long it really took.
const MEASURED_PAST: Duration = Duration::from_secs(2);

/// How long one `is_online` probe waits: once NATS has dropped the killed gate, any gate answers
/// at once; a request lost with the killed gate never is answered, and is asked again.
const PROBE_WITHIN: Duration = Duration::from_millis(500);

/// What `gate_killed` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GateKillReport {
    /// The gate killed.
    pub gate: String,
    /// Its users (connected push users).
    pub users: usize,
    /// Of their connections, the ones that dropped (ended without a CLOSE).
    pub dropped: usize,
    /// Users offline within the window.
    pub offline_in_time: usize,
    /// The window: the grace, unless a test asked for less.
    pub within_ms: u64,
    /// Max over users of the time from the kill until the directory said offline.
    pub directory_offline_ms: Option<u64>,
    /// Max over users of the time from the kill until the store stopped naming the dead gate.
    pub store_offline_ms: Option<u64>,
    /// `users.send` to them answered `ok:false`, by error code.
    pub sends_refused: BTreeMap<String, usize>,
    /// The surviving gate they reconnected to.
    pub reconnected_to: String,
    /// Reconnected users listed online there.
    pub reconnected_online: usize,
    /// Reconnected users that then received a push sent to them exactly once.
    pub reconnected_pushed: usize,
    /// The invariant held.
    pub passed: bool,
    /// What was wrong (the first few).
    pub problems: Vec<String>,
}

/// When each of a user's two conditions first held, since the kill.
#[derive(Default, Clone, Copy)]
struct Offline {
    directory: Option<Duration>,
    store: Option<Duration>,
}

impl Offline {
    fn at(&self) -> Option<Duration> {
        Some(self.directory?.max(self.store?))
    }
}

/// Runs the check: `kill(victim)` SIGKILLs the gate; `clients` are its connected users.
pub async fn run(
    d: &Directory<'_>,
    victim: usize,
    clients: Vec<UserClient>,
    kill: impl FnOnce(usize),
) -> GateKillReport {
    let gate = d.gate_id(victim).to_owned();
    let survivor = (victim + 1) % d.gates.len();
    let within = d.opts.offline_within.0;
    let mut r = GateKillReport {
        gate: gate.clone(),
        users: clients.len(),
        within_ms: within.as_millis() as u64,
        reconnected_to: d.gate_id(survivor).to_owned(),
        ..GateKillReport::default()
    };
    let mut problems = Vec::new();
    kill(victim);
    let killed = Instant::now();

    // Each user is probed on its own, each answer timed when it comes: a request that the queue
    // group handed to the dying gate in the instant of the kill is lost (no answer), which costs
    // that probe PROBE_WITHIN and is asked again, not a failure.
    let until = killed + within.max(d.opts.store.grace.0) + MEASURED_PAST;
    let gate_ref = gate.as_str();
    let probed = join_all(clients.iter().map(|c| async move {
        let mut o = Offline::default();
        let mut problems = Vec::new();
        let mut unanswered = 0u32;
        while o.at().is_none() && Instant::now() < until {
            let dir = async {
                if o.directory.is_some() {
                    return None;
                }
                let v = users::op_within(
                    &d.nats,
                    "is_online",
                    &c.user,
                    &[],
                    bytes::Bytes::new(),
                    PROBE_WITHIN,
                )
                .await;
                Some((v, killed.elapsed()))
            };
            let store = async {
                if o.store.is_some() {
                    return None;
                }
                Some((d.redis.stored_gate(&c.user).await, killed.elapsed()))
            };
            let (dir, store) = tokio::join!(dir, store);
            match dir {
                Some((Ok(v), t)) if v.get("ok") == Some(&serde_json::Value::Bool(true)) => {
                    let offline = v.get("online") == Some(&serde_json::Value::Bool(false));
                    o.directory = o.directory.or(offline.then_some(t));
                }
                Some((Ok(v), _)) => problems.push(format!("is_online {}: answered {v}", c.user)),
                Some((Err(_), _)) => unanswered += 1,
                None => {}
            }
            match store {
                Some((Ok(g), t)) if g.as_deref() != Some(gate_ref) => {
                    o.store.get_or_insert(t);
                }
                Some((Ok(_), _)) | None => {}
                Some((Err(e), _)) => problems.push(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if o.directory.is_none() && unanswered > 0 {
            problems.push(format!(
                "is_online {}: {unanswered} request(s) without an answer within {PROBE_WITHIN:?}",
                c.user
            ));
        }
        (o, problems)
    }))
    .await;
    let mut offline = Vec::with_capacity(probed.len());
    for (o, p) in probed {
        offline.push(o);
        problems.extend(p);
    }
    let ms = |d: Duration| d.as_millis() as u64;
    r.directory_offline_ms = offline
        .iter()
        .map(|o| o.directory)
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
        .map(ms);
    r.store_offline_ms = offline
        .iter()
        .map(|o| o.store)
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
        .map(ms);
    for (c, o) in clients.iter().zip(&offline) {
        match o.at() {
            Some(t) if t <= within => r.offline_in_time += 1,
            Some(t) => problems.push(format!(
                "{} still listed online {} ms after {gate} was killed (window {} ms; directory offline after {:?} ms, store after {:?} ms)",
                c.user,
                ms(t),
                ms(within),
                o.directory.map(ms),
                o.store.map(ms)
            )),
            None => problems.push(format!(
                "{} still listed online {} ms after {gate} was killed (directory offline: {}, store no longer naming {gate}: {})",
                c.user,
                ms(killed.elapsed()),
                o.directory.is_some(),
                o.store.is_some()
            )),
        }
    }

    // The connections of the killed gate's clients dropped.
    let drop_by = killed + DROPPED_WITHIN;
    while clients.iter().any(|c| c.ended().is_none()) && Instant::now() < drop_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in &clients {
        match c.ended() {
            Some(Ended::Dropped { .. }) => r.dropped += 1,
            e => problems.push(format!(
                "{}'s connection to the killed {gate}: {e:?}, not dropped",
                c.user
            )),
        }
    }

    // A send to any of them is refused.
    let sends = join_all(clients.iter().map(|c| {
        users::send(
            &d.nats,
            &c.user,
            super::user_client::DIRECTORY_TOPIC,
            "after-kill".into(),
        )
    }))
    .await;
    for (c, a) in clients.iter().zip(sends) {
        match a {
            Ok(v) if v.get("ok") == Some(&serde_json::Value::Bool(false)) => {
                *r.sends_refused
                    .entry(users::field(&v, "error").to_owned())
                    .or_default() += 1
            }
            Ok(v) => problems.push(format!(
                "send to {} after {gate} was killed: answered {v}, not ok:false",
                c.user
            )),
            Err(e) => problems.push(e),
        }
    }

    // They come back on a surviving gate.
    let who: Vec<(String, usize)> = clients.iter().map(|c| (c.user.clone(), survivor)).collect();
    let (back, failed) = d.connect_all(&who).await;
    problems.extend(failed);
    let refs: Vec<&UserClient> = back.iter().collect();
    let wrong = d.wait_online(&refs).await;
    r.reconnected_online = back.len() - wrong.len();
    problems.extend(
        wrong
            .into_iter()
            .map(|w| format!("after reconnecting: {w}")),
    );
    let (once, wrong) = d.push_to_current(&refs).await;
    r.reconnected_pushed = once;
    problems.extend(
        wrong
            .into_iter()
            .map(|w| format!("after reconnecting: {w}")),
    );
    close_all(back).await;
    drop(clients);

    let refused: usize = r.sends_refused.values().sum();
    r.passed = problems.is_empty()
        && r.users > 0
        && r.dropped == r.users
        && r.offline_in_time == r.users
        && refused == r.users
        && r.reconnected_online == r.users
        && r.reconnected_pushed == r.users;
    let more = problems.len().saturating_sub(MAX_LISTED);
    problems.truncate(MAX_LISTED);
    if more > 0 {
        problems.push(format!("… and {more} more"));
    }
    r.problems = problems;
    r
}

impl fmt::Display for GateKillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |v: Option<u64>| v.map_or("never".to_owned(), |v| format!("{v} ms"));
        let refused: Vec<String> = self
            .sends_refused
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let summary = format!(
            "{} SIGKILLed with {} users: {} connections dropped; {} offline within {} ms (max since the kill: directory {}, store {}); sends refused: {}; {} reconnected to {} and listed online there, {} got a push there exactly once",
            self.gate,
            self.users,
            self.dropped,
            self.offline_in_time,
            self.within_ms,
            ms(self.directory_offline_ms),
            ms(self.store_offline_ms),
            if refused.is_empty() { "none".to_owned() } else { refused.join(", ") },
            self.reconnected_online,
            self.reconnected_to,
            self.reconnected_pushed
        );
        check_lines(f, "gate_killed", self.passed, &summary, &self.problems)
    }
}

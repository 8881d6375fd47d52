//! The directory phase of `gatekit cluster`, driven by the cluster process itself after the runs,
//! while the gates are still up: authenticated native clients ([`UserClient`]) on every gate,
//! the user directory over NATS and the stored sessions in Redis ([`super::users`]), three
//! invariants ([`super::push_once`], [`super::duplicate_login`], [`super::gate_kill`]).

use super::auth::{AuthCounts, AuthService};
use super::config::StoreTimes;
use super::duplicate_login::DuplicateLoginReport;
use super::gate_kill::GateKillReport;
use super::measure::{MeasureOptions, MeasureReport};
use super::push_once::PushOnceReport;
use super::user_client::UserClient;
use super::users::{self, Redis};
use crate::scenario::Dur;
use futures_util::future::join_all;
use gatekit_agent::DuplicateLogin;
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a newly connected user may take to be listed online at its session (its bind is a
/// store operation beside its packets, after the WELCOME).
pub const ONLINE_WITHIN: Duration = Duration::from_secs(5);

/// Problems listed per invariant at most (the counts say how many in all).
pub const MAX_LISTED: usize = 5;

/// Options of the directory phase.
#[derive(Debug, Clone)]
pub struct DirectoryOptions {
    /// Users connected for the pushes, round-robin over the gates.
    pub users: usize,
    /// `users.send` per user.
    pub pushes_per_user: usize,
    /// Users logged in twice at once, on two gates.
    pub pairs: usize,
    /// The gates' duplicate-login policy.
    pub policy: DuplicateLogin,
    /// The gates' store expiries.
    pub store: StoreTimes,
    /// The killed gate's users must be offline within this (the grace, unless a test says less).
    pub offline_within: Dur,
    /// Measure the directory's costs after `push_once` (`--measure-push`).
    pub measure: Option<MeasureOptions>,
}

/// What the phase works with.
pub struct Directory<'a> {
    /// A NATS connection of the cluster process.
    pub nats: async_nats::Client,
    /// A Redis connection of the cluster process.
    pub redis: Redis,
    /// The login service (it mints the users' tokens).
    pub auth: &'a AuthService,
    /// Every gate: its id and listener address.
    pub gates: Vec<(String, SocketAddr)>,
    /// The options.
    pub opts: DirectoryOptions,
}

impl Directory<'_> {
    /// The id of gate `i`.
    pub fn gate_id(&self, i: usize) -> &str {
        &self.gates[i].0
    }

    /// Connects `user` to gate `gate` with its token.
    pub async fn connect(&self, user: &str, gate: usize) -> Result<UserClient, String> {
        UserClient::connect(self.gates[gate].1, gate, user, &self.auth.token(user))
            .await
            .map_err(|e| e.to_string())
    }

    /// Connects every `(user, gate)` at once; the clients, and what failed.
    pub async fn connect_all(&self, who: &[(String, usize)]) -> (Vec<UserClient>, Vec<String>) {
        let results = join_all(who.iter().map(|(u, g)| self.connect(u, *g))).await;
        let mut clients = Vec::new();
        let mut failed = Vec::new();
        for r in results {
            match r {
                Ok(c) => clients.push(c),
                Err(e) => failed.push(e),
            }
        }
        (clients, failed)
    }

    /// Waits until `users.is_online` lists each client online at its own gate and session;
    /// what was still wrong at [`ONLINE_WITHIN`].
    pub async fn wait_online(&self, clients: &[&UserClient]) -> Vec<String> {
        let until = Instant::now() + ONLINE_WITHIN;
        let mut pending: Vec<&UserClient> = clients.to_vec();
        let mut last: Vec<String> = Vec::new();
        loop {
            let answers = join_all(
                pending
                    .iter()
                    .map(|c| users::is_online(&self.nats, &c.user)),
            )
            .await;
            let mut still = Vec::new();
            last.clear();
            for (c, a) in pending.iter().zip(answers) {
                let want = (self.gate_id(c.gate).to_owned(), c.session_id.clone());
                match a {
                    Ok(v) if users::online_at(&v).as_ref() == Some(&want) => {}
                    Ok(v) => {
                        last.push(format!(
                            "user {} (on {}, session {}): is_online answered {v}",
                            c.user, want.0, want.1
                        ));
                        still.push(*c);
                    }
                    Err(e) => {
                        last.push(e);
                        still.push(*c);
                    }
                }
            }
            pending = still;
            if pending.is_empty() || Instant::now() >= until {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends one push (`<user>#after`) to each client's user through the directory and counts
    /// the clients that received it exactly once within 2 s; what was wrong.
    pub async fn push_to_current(&self, clients: &[&UserClient]) -> (usize, Vec<String>) {
        let before: Vec<usize> = clients.iter().map(|c| c.push_count()).collect();
        let body = |c: &UserClient| format!("{}#after", c.user);
        let answers = join_all(clients.iter().map(|c| {
            users::send(
                &self.nats,
                &c.user,
                super::user_client::DIRECTORY_TOPIC,
                body(c).into(),
            )
        }))
        .await;
        let mut problems = Vec::new();
        for (c, a) in clients.iter().zip(answers) {
            match a {
                Ok(v)
                    if v.get("ok") == Some(&serde_json::Value::Bool(true))
                        && users::field(&v, "session_id") == c.session_id => {}
                Ok(v) => problems.push(format!(
                    "send to {} (session {}): answered {v}",
                    c.user, c.session_id
                )),
                Err(e) => problems.push(e),
            }
        }
        let until = Instant::now() + Duration::from_secs(2);
        let arrived = |c: &UserClient, b: usize| {
            c.pushes()[b..]
                .iter()
                .filter(|(p, _)| p[..] == *body(c).as_bytes())
                .count()
        };
        while clients
            .iter()
            .zip(&before)
            .any(|(c, &b)| arrived(c, b) == 0)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut once = 0;
        for (c, &b) in clients.iter().zip(&before) {
            match arrived(c, b) {
                1 => once += 1,
                n => problems.push(format!(
                    "{} (session {}) received {:?} {n} times",
                    c.user,
                    c.session_id,
                    body(c)
                )),
            }
        }
        (once, problems)
    }
}

/// Closes every client (CLOSE normal), at once.
pub async fn close_all(clients: Vec<UserClient>) {
    join_all(clients.into_iter().map(UserClient::close)).await;
}

/// What the directory phase found.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryReport {
    /// The gates' store expiries.
    pub store: StoreTimes,
    /// The gates' duplicate-login policy.
    pub duplicate_login: &'static str,
    /// What the login service answered (the runs' clients and the directory's users).
    pub auth: AuthCounts,
    /// Every push to an online user is delivered exactly once to its current session.
    pub push_once: Option<PushOnceReport>,
    /// What the directory costs (`--measure-push`; measured, not checked).
    pub measured: Option<MeasureReport>,
    /// After a duplicate login exactly one session remains.
    pub duplicate_login_check: Option<DuplicateLoginReport>,
    /// After a gate is killed, no user stays listed online past the grace.
    pub gate_killed: Option<GateKillReport>,
    /// What kept a check from running.
    pub problems: Vec<String>,
    /// Every check ran and passed.
    pub passed: bool,
}

/// Runs the three checks in order: the pushes (their users stay connected), the duplicate
/// logins, then the kill of the last gate (`kill(i)` SIGKILLs gate `i`) with the push users
/// that were on it.
pub async fn run(d: &Directory<'_>, kill: impl FnOnce(usize)) -> DirectoryReport {
    let mut report = DirectoryReport {
        store: d.opts.store,
        duplicate_login: d.opts.policy.name(),
        auth: AuthCounts::default(),
        push_once: None,
        measured: None,
        duplicate_login_check: None,
        gate_killed: None,
        problems: Vec::new(),
        passed: false,
    };
    let n = d.gates.len();
    let who: Vec<(String, usize)> = (0..d.opts.users)
        .map(|i| (format!("push-{i}"), i % n))
        .collect();
    let (clients, failed) = d.connect_all(&who).await;
    if !failed.is_empty() {
        report.problems.push(format!(
            "{} of {} users could not connect: {}",
            failed.len(),
            who.len(),
            failed
                .iter()
                .take(MAX_LISTED)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
        close_all(clients).await;
        report.auth = d.auth.counts();
        return report;
    }
    report.push_once = Some(super::push_once::run(d, &clients).await);
    if let Some(m) = d.opts.measure {
        report.measured = Some(super::measure::run(d, &clients, m).await);
    }
    report.duplicate_login_check = Some(super::duplicate_login::run(d).await);
    let victim = n - 1;
    let (on_victim, others): (Vec<UserClient>, Vec<UserClient>) =
        clients.into_iter().partition(|c| c.gate == victim);
    report.gate_killed = Some(super::gate_kill::run(d, victim, on_victim, kill).await);
    close_all(others).await;
    report.auth = d.auth.counts();
    report.passed = report.problems.is_empty()
        && report.push_once.as_ref().is_some_and(|r| r.passed)
        && report
            .duplicate_login_check
            .as_ref()
            .is_some_and(|r| r.passed)
        && report.gate_killed.as_ref().is_some_and(|r| r.passed);
    report
}

/// `PASS` or `FAIL`.
pub fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

impl fmt::Display for DirectoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "directory: Redis store (ttl {}, grace {}, gate_ttl {}), duplicate_login {}; login service: {} tokens verified, {} run clients unbound, {} refused",
            self.store.ttl,
            self.store.grace,
            self.store.gate_ttl,
            self.duplicate_login,
            self.auth.verified,
            self.auth.anonymous,
            self.auth.refused
        )?;
        if let Some(r) = &self.push_once {
            write!(f, "{r}")?;
        }
        if let Some(r) = &self.measured {
            write!(f, "{r}")?;
        }
        if let Some(r) = &self.duplicate_login_check {
            write!(f, "{r}")?;
        }
        if let Some(r) = &self.gate_killed {
            write!(f, "{r}")?;
        }
        for p in &self.problems {
            writeln!(f, "  problem: {p}")?;
        }
        Ok(())
    }
}

/// Writes `  <name> <PASS|FAIL>  <summary>` and the listed problems under it.
pub fn check_lines(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    passed: bool,
    summary: &str,
    problems: &[String],
) -> fmt::Result {
    writeln!(f, "  {name:<16} {}  {summary}", verdict(passed))?;
    for p in problems {
        writeln!(f, "      {p}")?;
    }
    Ok(())
}

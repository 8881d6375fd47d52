//! `push_once`: every push to an online user is delivered exactly once to its current session.
//!
//! Each connected user gets `pushes_per_user` `users.send` requests through NATS (any gate of
//! the queue group answers, so most cross to the user's gate), each body `<user>#<n>`, all at
//! once. Every answer must be ok, naming the user's own gate and session; every client must
//! receive each of its own bodies exactly once and nothing meant for another. A send to a user
//! who never connected must answer `ok:false`, error `offline`.

use super::directory::{check_lines, Directory, MAX_LISTED};
use super::user_client::{UserClient, DIRECTORY_TOPIC};
use super::users;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How long the pushes may take to arrive after the last answer.
const DELIVERED_WITHIN: Duration = Duration::from_secs(3);

/// What `push_once` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushOnceReport {
    /// Users connected.
    pub users: usize,
    /// Gates they were spread over.
    pub gates: usize,
    /// `users.send` requests sent.
    pub sent: usize,
    /// Answered ok with the user's own gate and session.
    pub answered_ok: usize,
    /// Pushes received by their own user's session (each counted once).
    pub delivered: usize,
    /// Extra copies received.
    pub duplicated: usize,
    /// Sent pushes never received.
    pub lost: usize,
    /// Pushes received by a session they were not meant for (or unknown bodies).
    pub misdelivered: usize,
    /// What a send to a never-connected user answered (`error`, or the whole answer).
    pub never_connected: String,
    /// The invariant held.
    pub passed: bool,
    /// What was wrong (the first few).
    pub problems: Vec<String>,
}

fn body(user: &str, n: usize) -> String {
    format!("{user}#{n}")
}

/// Runs the check on `clients` (connected, one per user).
pub async fn run(d: &Directory<'_>, clients: &[UserClient]) -> PushOnceReport {
    let k = d.opts.pushes_per_user;
    let mut r = PushOnceReport {
        users: clients.len(),
        gates: d.gates.len(),
        ..PushOnceReport::default()
    };
    let mut problems = Vec::new();
    let refs: Vec<&UserClient> = clients.iter().collect();
    for p in d.wait_online(&refs).await {
        problems.push(format!("not listed online before the pushes: {p}"));
    }
    let sends = clients.iter().flat_map(|c| (1..=k).map(move |n| (c, n)));
    let answers = join_all(sends.map(|(c, n)| async move {
        let a = users::send(&d.nats, &c.user, DIRECTORY_TOPIC, body(&c.user, n).into()).await;
        (c, n, a)
    }))
    .await;
    r.sent = answers.len();
    for (c, n, a) in &answers {
        let gate = d.gate_id(c.gate);
        match a {
            Ok(v)
                if v.get("ok") == Some(&serde_json::Value::Bool(true))
                    && users::field(v, "gate") == gate
                    && users::field(v, "session_id") == c.session_id =>
            {
                r.answered_ok += 1
            }
            Ok(v) => problems.push(format!(
                "send {} to {} (on {gate}, session {}): answered {v}",
                body(&c.user, *n),
                c.user,
                c.session_id
            )),
            Err(e) => problems.push(e.clone()),
        }
    }
    // Wait for every push, then a little more for any duplicate.
    let until = Instant::now() + DELIVERED_WITHIN;
    while clients.iter().any(|c| c.push_count() < k) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for c in clients {
        let pushes = c.pushes();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (b, _) in &pushes {
            let text = String::from_utf8_lossy(b).into_owned();
            let mine = text
                .rsplit_once('#')
                .filter(|(u, _)| *u == c.user)
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .is_some_and(|n| (1..=k).contains(&n));
            if mine {
                *counts.entry(text).or_default() += 1;
            } else {
                r.misdelivered += 1;
                problems.push(format!("{} received {text:?}, not one of its own", c.user));
            }
        }
        for n in 1..=k {
            match counts.get(&body(&c.user, n)).copied().unwrap_or(0) {
                0 => {
                    r.lost += 1;
                    problems.push(format!("{} never received {}", c.user, body(&c.user, n)));
                }
                m => {
                    r.delivered += 1;
                    if m > 1 {
                        r.duplicated += m - 1;
                        problems.push(format!(
                            "{} received {} {m} times",
                            c.user,
                            body(&c.user, n)
                        ));
                    }
                }
            }
        }
    }
    let nobody = format!("never-connected-{}", std::process::id());
    match users::send(&d.nats, &nobody, DIRECTORY_TOPIC, "nobody#1".into()).await {
        Ok(v)
            if v.get("ok") == Some(&serde_json::Value::Bool(false))
                && users::field(&v, "error") == "offline" =>
        {
            r.never_connected = "offline".into()
        }
        Ok(v) => {
            r.never_connected = v.to_string();
            problems.push(format!(
                "send to {nobody}, who never connected: answered {v}, not ok:false error offline"
            ));
        }
        Err(e) => {
            r.never_connected = e.clone();
            problems.push(e);
        }
    }
    r.passed = problems.is_empty()
        && r.answered_ok == r.sent
        && r.delivered == r.sent
        && r.sent == r.users * k
        && r.users > 0;
    let more = problems.len().saturating_sub(MAX_LISTED);
    problems.truncate(MAX_LISTED);
    if more > 0 {
        problems.push(format!("… and {more} more"));
    }
    r.problems = problems;
    r
}

impl fmt::Display for PushOnceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = format!(
            "{} users on {} gates: {} pushes sent (users.send over NATS), {} answered ok at the user's gate and session, {} delivered, {} duplicated, {} lost, {} misdelivered; a never-connected user: {}",
            self.users,
            self.gates,
            self.sent,
            self.answered_ok,
            self.delivered,
            self.duplicated,
            self.lost,
            self.misdelivered,
            self.never_connected
        );
        check_lines(f, "push_once", self.passed, &summary, &self.problems)
    }
}

//! `duplicate_login`: after a duplicate login exactly one session remains.
//!
//! For each of `pairs` users, two clients open a session with the user's token at the same
//! moment, on two different gates. After a settle time exactly one of the two connections must
//! still be open; the other must have received CLOSE `kicked` with the policy's reason (`kick`:
//! "logged in elsewhere", the older one; `refuse`: "already logged in elsewhere", the newer
//! one); and `users.is_online` must list the user online at the survivor's gate and session.
//! With `duplicate_login = "allow"` both stay open: the check fails, as it must.

use super::directory::{check_lines, close_all, Directory, MAX_LISTED};
use super::user_client::{Ended, UserClient};
use super::users;
use futures_util::future::join_all;
use gatekit_agent::store::{ALREADY_ONLINE, LOGGED_IN_ELSEWHERE};
use gatekit_agent::DuplicateLogin;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// How long the pairs are given to settle (a kick crosses NATS to the other gate).
const SETTLE_WITHIN: Duration = Duration::from_secs(3);

/// What `duplicate_login` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DuplicateLoginReport {
    /// The policy of the gates.
    pub policy: &'static str,
    /// Users logged in twice at once.
    pub pairs: usize,
    /// Pairs with exactly one connection left open.
    pub one_survivor: usize,
    /// Pairs with both left open.
    pub both_open: usize,
    /// Pairs with neither left open.
    pub none_open: usize,
    /// Closed connections whose CLOSE was `kicked` with the policy's reason.
    pub closed_as_expected: usize,
    /// Survivors that `users.is_online` lists online at their own gate and session.
    pub listed_at_survivor: usize,
    /// Survivors that then received a push sent to their user exactly once.
    pub pushed_to_survivor: usize,
    /// The invariant held.
    pub passed: bool,
    /// What was wrong (the first few).
    pub problems: Vec<String>,
}

async fn pair(d: &Directory<'_>, i: usize) -> (String, Result<[UserClient; 2], String>) {
    let n = d.gates.len();
    let user = format!("dup-{i}");
    let (a, b) = tokio::join!(d.connect(&user, i % n), d.connect(&user, (i + 1) % n));
    let r = match (a, b) {
        (Ok(a), Ok(b)) => Ok([a, b]),
        (Err(e), Ok(c)) | (Ok(c), Err(e)) => {
            c.close().await;
            Err(e)
        }
        (Err(e), Err(f)) => Err(format!("{e}; {f}")),
    };
    (user, r)
}

/// Runs the check.
pub async fn run(d: &Directory<'_>) -> DuplicateLoginReport {
    let mut r = DuplicateLoginReport {
        policy: d.opts.policy.name(),
        pairs: d.opts.pairs,
        ..DuplicateLoginReport::default()
    };
    let mut problems = Vec::new();
    let pairs = join_all((0..d.opts.pairs).map(|i| pair(d, i))).await;
    let mut open_pairs = Vec::new();
    for (user, p) in pairs {
        match p {
            Ok(p) => open_pairs.push((user, p)),
            Err(e) => problems.push(format!("{user}: {e}")),
        }
    }
    // Settle: until every pair has lost a connection (or the time is up), then a little more for
    // a late second close.
    let until = Instant::now() + SETTLE_WITHIN;
    while open_pairs
        .iter()
        .any(|(_, p)| p.iter().all(|c| c.ended().is_none()))
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reason = match d.opts.policy {
        DuplicateLogin::Kick => Some(LOGGED_IN_ELSEWHERE),
        DuplicateLogin::Refuse => Some(ALREADY_ONLINE),
        DuplicateLogin::Allow => None,
    };
    let mut survivors = Vec::new();
    for (user, p) in &open_pairs {
        let ended: Vec<Option<Ended>> = p.iter().map(UserClient::ended).collect();
        for (c, e) in p.iter().zip(&ended) {
            match (e, reason) {
                (None, _) => {}
                (Some(Ended::Closed { code, reason: got }), Some(want))
                    if code == "kicked" && got == want =>
                {
                    r.closed_as_expected += 1
                }
                (Some(e), _) => problems.push(format!(
                    "{user} on {}: the connection ended {e:?}, not with CLOSE kicked {reason:?}",
                    d.gate_id(c.gate)
                )),
            }
        }
        match ended.iter().filter(|e| e.is_none()).count() {
            1 => {
                r.one_survivor += 1;
                let s = &p[usize::from(ended[0].is_some())];
                survivors.push(s);
            }
            2 => {
                r.both_open += 1;
                problems.push(format!(
                    "{user}: both sessions still open ({} on {}, {} on {}) after a duplicate login",
                    p[0].session_id,
                    d.gate_id(p[0].gate),
                    p[1].session_id,
                    d.gate_id(p[1].gate)
                ));
            }
            _ => {
                r.none_open += 1;
                problems.push(format!("{user}: neither session is open"));
            }
        }
    }
    let answers = join_all(survivors.iter().map(|c| users::is_online(&d.nats, &c.user))).await;
    for (c, a) in survivors.iter().zip(answers) {
        let want = (d.gate_id(c.gate).to_owned(), c.session_id.clone());
        match a {
            Ok(v) if users::online_at(&v).as_ref() == Some(&want) => r.listed_at_survivor += 1,
            Ok(v) => problems.push(format!(
                "{}: survivor on {} session {}, but is_online answered {v}",
                c.user, want.0, want.1
            )),
            Err(e) => problems.push(e),
        }
    }
    let (once, wrong) = d.push_to_current(&survivors).await;
    r.pushed_to_survivor = once;
    problems.extend(wrong);
    r.passed = problems.is_empty()
        && r.pairs > 0
        && r.pushed_to_survivor == r.pairs
        && r.one_survivor == r.pairs
        && r.closed_as_expected == r.pairs
        && r.listed_at_survivor == r.pairs;
    let more = problems.len().saturating_sub(MAX_LISTED);
    problems.truncate(MAX_LISTED);
    if more > 0 {
        problems.push(format!("… and {more} more"));
    }
    r.problems = problems;
    close_all(open_pairs.into_iter().flat_map(|(_, p)| p).collect()).await;
    r
}

impl fmt::Display for DuplicateLoginReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = format!(
            "{} users logged in twice at once on two gates (policy {}): {} with exactly one session left, {} both open, {} none open; {} closed with CLOSE kicked and the policy's reason; {} listed online at the survivor, {} got a push to the user there exactly once",
            self.pairs,
            self.policy,
            self.one_survivor,
            self.both_open,
            self.none_open,
            self.closed_as_expected,
            self.listed_at_survivor,
            self.pushed_to_survivor
        );
        check_lines(f, "duplicate_login", self.passed, &summary, &self.problems)
    }
}

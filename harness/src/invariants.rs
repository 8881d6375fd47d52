//! The invariants checked at the end of every run.

use crate::client::Behavior;
use crate::run::RunData;
use gatekit_agent::CloseReason;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// One invariant's verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    /// Short name.
    pub name: &'static str,
    /// What it checks.
    pub what: &'static str,
    /// Items checked (connections or sessions).
    pub checked: usize,
    /// Items that broke it.
    pub violations: usize,
    /// A few of them, explained.
    pub sample: Vec<String>,
}

impl Verdict {
    fn new(name: &'static str, what: &'static str) -> Self {
        Verdict {
            name,
            what,
            checked: 0,
            violations: 0,
            sample: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations += 1;
            if self.sample.len() < 5 {
                self.sample.push(why());
            }
        }
    }

    /// Whether it held.
    pub fn held(&self) -> bool {
        self.violations == 0
    }
}

/// The close reasons a behaviour may end with (`None`: it must never get a session).
fn allowed_reasons(b: Behavior) -> Option<&'static [CloseReason]> {
    use CloseReason::*;
    Some(match b {
        Behavior::Normal | Behavior::Burst | Behavior::Dribble => &[ClientClosed],
        Behavior::Drop | Behavior::DropMidFrame => &[Eof, Reset],
        // Closed as a slow consumer if the gate's output filled its queue, else it ends when the
        // client drops.
        Behavior::SlowConsumer => &[SlowConsumer, Eof, Reset],
        Behavior::Slowloris => return None,
        Behavior::GarbageBytes | Behavior::GarbageOversize | Behavior::GarbageRoute => {
            &[ProtocolError]
        }
    })
}

/// Checks every invariant.
pub fn check(run: &RunData) -> Vec<Verdict> {
    vec![
        counters(run),
        nothing_lost(run),
        disconnects(run),
        heartbeats(run),
        memory(run),
    ]
}

fn counters(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "counters",
        "client sent = agent received and agent sent = client received (≤ when the connection was not closed gracefully)",
    );
    for c in &run.conns {
        let (Some(ar), Some(asent)) = (c.agent_received, c.agent_sent) else {
            continue;
        };
        let (cs, cr) = (c.stats.packets_sent, c.stats.packets_received);
        let exact = c.close_reason == Some(CloseReason::ClientClosed);
        let ok = if exact {
            ar == cs && asent == cr
        } else {
            ar <= cs && cr <= asent
        };
        v.check(ok, || {
            format!(
                "client {} ({}, {:?}): client sent {cs} / agent received {ar}; agent sent {asent} / client received {cr}",
                c.index,
                c.behavior.name(),
                c.close_reason.map(|r| r.name())
            )
        });
    }
    v
}

fn nothing_lost(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "nothing_lost",
        "every request got exactly one response with its own body, or the close reason explains why not",
    );
    for c in &run.conns {
        let s = &c.stats;
        let answered: u64 = s.responses.values().sum();
        // A client that closed gracefully must have had every answer — unless it gave up waiting
        // (closed after its grace period with requests outstanding), which CLOSE then explains.
        let graceful = c.close_reason == Some(CloseReason::ClientClosed) && !s.gave_up;
        let ok = s.unexpected_responses == 0
            && s.wrong_bodies == 0
            && s.decode_errors == 0
            && answered + s.unanswered == s.requests
            && (!graceful || s.unanswered == 0);
        v.check(ok, || {
            format!(
                "client {} ({}): {} requests, {answered} answered, {} unanswered, {} unexpected, {} wrong bodies, {} decode errors, closed {:?}",
                c.index,
                c.behavior.name(),
                s.requests,
                s.unanswered,
                s.unexpected_responses,
                s.wrong_bodies,
                s.decode_errors,
                c.close_reason.map(|r| r.name())
            )
        });
    }
    v
}

fn disconnects(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "disconnect",
        "exactly one Disconnect per Connect, after it, with the expected reason; no session left registered",
    );
    let mut by_session: BTreeMap<&str, (Behavior, u64)> = BTreeMap::new();
    for c in &run.conns {
        let sid = c.session_id.as_deref().or(c.client_session_id.as_deref());
        if let Some(sid) = sid {
            by_session.insert(sid, (c.behavior, c.index));
        }
    }
    for (sid, log) in &run.recorder.sessions {
        let (behavior, index) = by_session
            .get(sid.as_str())
            .copied()
            .unwrap_or((Behavior::Normal, u64::MAX));
        let reason = log.disconnects.first().map(|d| d.1);
        let in_order = match (log.connect_at, log.disconnects.first()) {
            (Some(c), Some((d, _))) => *d >= c,
            _ => false,
        };
        let expected = match allowed_reasons(behavior) {
            None => false, // this client must never have had a session
            Some(allowed) => reason.is_some_and(|r| allowed.contains(&r)),
        };
        let ok = log.connects == 1
            && log.disconnects.len() == 1
            && !log.disconnect_before_connect
            && in_order
            && expected;
        v.check(ok, || {
            format!(
                "session {}… (client {index}, {}): {} connect, {} disconnect {:?}",
                &sid[..sid.len().min(8)],
                behavior.name(),
                log.connects,
                log.disconnects.len(),
                log.disconnects
                    .iter()
                    .map(|d| d.1.name())
                    .collect::<Vec<_>>()
            )
        });
    }
    // Every welcomed client's session reached the learner.
    for c in &run.conns {
        if let Some(sid) = &c.client_session_id {
            let known = run.recorder.sessions.contains_key(sid);
            v.check(known, || {
                format!(
                    "client {} was welcomed as {sid} but the learner never heard of it",
                    c.index
                )
            });
        }
    }
    v.check(run.sessions_left == 0, || {
        format!("{} sessions still registered at the end", run.sessions_left)
    });
    v
}

fn heartbeats(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "heartbeat",
        "storage heartbeats only for bound sessions, ≤ ⌊connected/interval⌋+1, ≥ interval apart, at least one per active interval",
    );
    let interval = run.scenario.gate.heartbeat.0;
    let tol = run.timing_tolerance;
    // When each session stopped being served: the start of a lingering close if known (sim), else
    // its Disconnect less the longest linger (tcp: the close decision is not observed).
    let closing: BTreeMap<&str, Instant> = run
        .conns
        .iter()
        .filter_map(|c| {
            let sid = c.session_id.as_deref().or(c.client_session_id.as_deref())?;
            Some((sid, c.closing_at?))
        })
        .collect();
    let linger = match run.mode {
        crate::scenario::Mode::Sim => std::time::Duration::ZERO,
        crate::scenario::Mode::Tcp => gatekit_agent::AgentConfig::default().close_linger,
    };
    let activity: BTreeMap<&str, &[Instant]> = run
        .conns
        .iter()
        .filter_map(|c| {
            c.session_id
                .as_deref()
                .or(c.client_session_id.as_deref())
                .map(|s| (s, c.activity.as_slice()))
        })
        .collect();
    for (sid, log) in &run.recorder.sessions {
        let hb = &log.heartbeats;
        let Some(bind) = log.bind_at else {
            v.check(hb.is_empty(), || {
                format!(
                    "session {sid}: {} heartbeats without a user bound",
                    hb.len()
                )
            });
            continue;
        };
        let end = log.disconnects.first().map(|d| d.0).unwrap_or(run.finished);
        let served_until = closing
            .get(sid.as_str())
            .copied()
            .unwrap_or_else(|| end.checked_sub(linger).unwrap_or(end))
            .min(end);
        let connected = end.saturating_duration_since(log.connect_at.unwrap_or(bind));
        let max = (connected.as_nanos() / interval.as_nanos().max(1)) as usize + 1;
        let spaced = hb.windows(2).all(|w| w[1] + tol >= w[0] + interval);
        let mut ok = log.unbound_heartbeats == 0 && hb.len() <= max && spaced;
        let mut why = String::new();
        if ok {
            // Lower bound: after any activity, the next heartbeat is due by
            // max(activity, previous heartbeat + interval), unless the session ended first.
            for &a in activity.get(sid.as_str()).copied().unwrap_or(&[]) {
                if a < bind {
                    continue;
                }
                let prev = hb.iter().rev().find(|&&h| h <= a + tol);
                let Some(&prev) = prev else {
                    ok = false;
                    why = "no heartbeat at bind".into();
                    break;
                };
                let due = a.max(prev + interval);
                if due + tol >= served_until {
                    continue;
                }
                if !hb.iter().any(|&h| h > prev && h <= due + tol) && a > prev + tol {
                    ok = false;
                    why = format!(
                        "activity at +{:?} but no heartbeat by +{:?}",
                        a - run.started,
                        due - run.started
                    );
                    break;
                }
            }
        }
        v.check(ok, || {
            format!(
                "session {}…: {} heartbeats (max {max}) over {:?}, spaced ≥ interval: {spaced} {why}",
                &sid[..sid.len().min(8)],
                hb.len(),
                connected
            )
        });
    }
    v
}

fn memory(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "memory",
        "bytes buffered per connection never above the configured bound",
    );
    for c in &run.conns {
        if let (Some(m), Some(b)) = (c.max_buffered, c.buffer_bound) {
            v.check(m <= b, || {
                format!(
                    "client {} ({}): buffered {m} bytes, bound {b}",
                    c.index,
                    c.behavior.name()
                )
            });
        }
    }
    v
}

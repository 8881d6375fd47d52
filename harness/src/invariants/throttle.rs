//! The storage heartbeat's throttle and the per-connection buffer bound.

use super::{gate_side_hidden, Verdict};
use crate::run::RunData;
use std::collections::BTreeMap;
use std::time::Instant;

/// `heartbeat`: storage heartbeats only for bound sessions, at most one per interval, at least
/// one per interval with activity.
pub fn heartbeats(run: &RunData) -> Verdict {
    const WHAT: &str = "storage heartbeats only for bound sessions, ≤ ⌊connected/interval⌋+1, ≥ interval apart, at least one per active interval";
    if let Some(why) = gate_side_hidden(run) {
        return Verdict::skipped("heartbeat", WHAT, why).finish(String::new);
    }
    let mut v = Verdict::new("heartbeat", WHAT);
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
            // A session never bound must never be heartbeated (not counted as a check: it is
            // no evidence of the throttle working).
            if !hb.is_empty() {
                v.check(false, || {
                    format!(
                        "session {sid}: {} heartbeats without a user bound",
                        hb.len()
                    )
                });
            }
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
    v.finish(|| {
        if run.scenario.bind_users && matches!(run.gate_side, crate::run::GateSide::Control(_)) {
            "no session was bound to a user (against an external gate the harness cannot bind one: bind_users needs the built-in gate)".into()
        } else if run.scenario.bind_users {
            "no session was bound to a user".into()
        } else {
            "no session was bound to a user (bind_users = false)".into()
        }
    })
}

/// `memory`: no connection ever buffered more than the bound its agent promises.
pub fn memory(run: &RunData) -> Verdict {
    const WHAT: &str = "bytes buffered per connection never above the configured bound";
    if let Some(why) = gate_side_hidden(run) {
        return Verdict::skipped("memory", WHAT, why).finish(String::new);
    }
    let mut v = Verdict::new("memory", WHAT);
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
    v.finish(|| "no connection reported its buffers".into())
}

//! What the gate counts and tells its learner: exact packet counters, and exactly one Disconnect
//! per Connect with the reason the client's behaviour calls for.

use super::{gate_side_hidden, Verdict};
use crate::client::Behavior;
use crate::run::{ConnRecord, RunData};
use gatekit_agent::CloseReason;
use std::collections::BTreeMap;

/// `counters`: the agent's received and sent counters match what the client sent and received.
pub fn counters(run: &RunData) -> Verdict {
    const WHAT: &str = "client sent = agent received and agent sent = client received (≤ when the connection was not closed gracefully)";
    if let Some(why) = gate_side_hidden(run) {
        return Verdict::skipped("counters", WHAT, why).finish(String::new);
    }
    let mut v = Verdict::new("counters", WHAT);
    for c in &run.conns {
        let (Some(ar), Some(asent)) = (c.agent_received, c.agent_sent) else {
            continue;
        };
        let (cs, cr) = (c.stats.packets_sent, c.stats.packets_received);
        // Exact once the client ended gracefully: its goodbye answered, or (a protocol without
        // one) its side closed after every answer; either way it read to the end.
        let exact = c.close_reason == Some(CloseReason::ClientClosed)
            || (c.graceful && c.close_reason == Some(CloseReason::Eof));
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
    v.finish(|| "no connection had an agent to compare with".into())
}

/// Whether the gate had to close this slow consumer: it accepted more bytes of pushes for it,
/// after it stopped reading, than the sockets and the write queue hold.
pub fn slow_consumer_required(run: &RunData, c: &ConnRecord) -> bool {
    let (Some(threshold), Some(accepted)) = (run.slow_consumer_threshold, &c.pushes_accepted)
    else {
        return false;
    };
    c.behavior == Behavior::SlowConsumer && accepted.len() as u64 * run.push_frame_len > threshold
}

/// The close reasons a connection may end with (`None`: it must never get a session).
pub fn allowed_reasons(run: &RunData, c: &ConnRecord) -> Option<&'static [CloseReason]> {
    use CloseReason::*;
    let goodbye = run.scenario.protocol.has_goodbye();
    Some(match c.behavior {
        // A graceful client says goodbye where its protocol can, else closes its side.
        Behavior::Normal | Behavior::Burst | Behavior::Dribble if goodbye => &[ClientClosed],
        Behavior::Normal | Behavior::Burst | Behavior::Dribble => &[Eof],
        Behavior::Drop | Behavior::DropMidFrame => &[Eof, Reset],
        // Closed as a slow consumer once the gate's output passed what the sockets and its write
        // queue hold; before that, it ends when the client drops (or as a slow consumer, if the
        // gate's answers and pongs filled the queue first).
        Behavior::SlowConsumer if slow_consumer_required(run, c) => &[SlowConsumer],
        Behavior::SlowConsumer => &[SlowConsumer, Eof, Reset],
        Behavior::Slowloris => return None,
        Behavior::GarbageBytes | Behavior::GarbageOversize | Behavior::GarbageRoute => {
            &[ProtocolError]
        }
    })
}

/// `disconnect`: exactly one Disconnect per Connect, after it, with an expected reason; no session
/// left registered.
pub fn disconnects(run: &RunData) -> Verdict {
    const WHAT: &str = "exactly one Disconnect per Connect, after it, with the expected reason; no session left registered";
    if let Some(why) = gate_side_hidden(run) {
        return Verdict::skipped("disconnect", WHAT, why).finish(String::new);
    }
    let mut v = Verdict::new("disconnect", WHAT);
    let mut by_session: BTreeMap<&str, &ConnRecord> = BTreeMap::new();
    for c in &run.conns {
        let sid = c.session_id.as_deref().or(c.client_session_id.as_deref());
        if let Some(sid) = sid {
            by_session.insert(sid, c);
        }
    }
    for (sid, log) in &run.recorder.sessions {
        let conn = by_session.get(sid.as_str()).copied();
        let reason = log.disconnects.first().map(|d| d.1);
        let in_order = match (log.connect_at, log.disconnects.first()) {
            (Some(c), Some((d, _))) => *d >= c,
            _ => false,
        };
        let allowed = conn.and_then(|c| allowed_reasons(run, c));
        let expected = match allowed {
            // No client of this run has this session, or this client must never have had one.
            None => false,
            Some(allowed) => reason.is_some_and(|r| allowed.contains(&r)),
        };
        let ok = log.connects == 1
            && log.disconnects.len() == 1
            && !log.disconnect_before_connect
            && in_order
            && expected;
        v.check(ok, || {
            format!(
                "session {}… (client {}, {}): {} connect, {} disconnect {:?}, allowed {:?}",
                &sid[..sid.len().min(8)],
                conn.map_or("?".into(), |c| c.index.to_string()),
                conn.map_or("unknown", |c| c.behavior.name()),
                log.connects,
                log.disconnects.len(),
                log.disconnects
                    .iter()
                    .map(|d| d.1.name())
                    .collect::<Vec<_>>(),
                allowed
                    .unwrap_or(&[])
                    .iter()
                    .map(|r| r.name())
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
    v.finish(String::new)
}

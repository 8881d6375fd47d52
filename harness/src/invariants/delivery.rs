//! What the client sees: every request answered once with its own body, in order when the gate
//! promises order, and every push the gate accepted delivered once, in order.
//!
//! The rules on loss (the native protocol, docs/PROTOCOL.md "What a close loses"): a connection
//! that ends — whoever ends it and for whatever reason — loses the answers to the requests still
//! in flight and the pushes not yet written. Nothing else is ever lost. So a request may go
//! unanswered only if the connection ended before a correct gate had to answer it (its answer
//! deadline, `answer_deadline`), and a push the gate accepted may be missing only if the
//! connection ended before it could arrive; a client that does not read (a slow consumer) is owed
//! nothing.

use super::Verdict;
use crate::run::{ConnRecord, RunData};
use std::time::Instant;

fn at(run: &RunData, t: Instant) -> String {
    format!(
        "+{:.3} s",
        t.saturating_duration_since(run.started).as_secs_f64()
    )
}

fn ended(run: &RunData, c: &ConnRecord) -> String {
    c.client_ended_at
        .map_or_else(|| "never".to_owned(), |t| at(run, t))
}

/// `nothing_lost`: every request got exactly one response, with its own body, in time; or the
/// connection ended before its answer was due.
pub fn nothing_lost(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "nothing_lost",
        "every request got exactly one response with its own body by its answer deadline, or the connection ended before that deadline",
    );
    let slack = run.answer_slack;
    for c in &run.conns {
        let s = &c.stats;
        let answered: u64 = s.responses.values().sum();
        // Requests whose answer was due while the connection was still open, yet never came.
        let lost: Vec<Instant> = if c.reads_everything {
            s.unanswered_due
                .iter()
                .flatten()
                .copied()
                .filter(|&due| c.client_ended_at.is_none_or(|end| due + slack < end))
                .collect()
        } else {
            Vec::new()
        };
        let ok = s.unexpected_responses == 0
            && s.wrong_bodies == 0
            && s.decode_errors == 0
            && s.late_responses == 0
            && !s.gave_up
            && lost.is_empty()
            && answered + s.unanswered == s.requests;
        v.check(ok, || {
            let mut why = format!(
                "client {} ({}): {} requests, {answered} answered, {} unanswered",
                c.index,
                c.behavior.name(),
                s.requests,
                s.unanswered
            );
            if let Some(due) = lost.first() {
                why += &format!(
                    " ({} due by {} while open, connection ended {})",
                    lost.len(),
                    at(run, *due),
                    ended(run, c)
                );
            }
            if s.gave_up {
                why += ", gave up waiting past the answer deadlines";
            }
            for (n, what) in [
                (s.late_responses, "late"),
                (
                    s.unexpected_responses,
                    "unexpected (unknown or repeated id)",
                ),
                (s.wrong_bodies, "with a wrong body"),
                (s.decode_errors, "undecodable packets"),
            ] {
                if n > 0 {
                    why += &format!(", {n} {what}");
                }
            }
            why + &format!(", closed {:?}", c.close_reason.map(|r| r.name()))
        });
    }
    v.finish(|| "no connection was opened".into())
}

/// `order`: with one call in flight per connection, responses come in request order; with more,
/// each id is answered at most once.
pub fn order(run: &RunData) -> Verdict {
    let in_order = run.scenario.gate.max_in_flight <= 1;
    let mut v = Verdict::new(
        "order",
        if in_order {
            "max_in_flight = 1: responses came in request order on every connection"
        } else {
            "max_in_flight > 1: each request id was answered at most once (responses may overtake)"
        },
    );
    for c in &run.conns {
        let s = &c.stats;
        let answered: u64 = s.responses.values().sum();
        if in_order {
            if answered < 2 {
                continue;
            }
            v.check(s.out_of_order == 0, || {
                format!(
                    "client {} ({}): {} of {answered} responses came before the answer to an earlier request",
                    c.index,
                    c.behavior.name(),
                    s.out_of_order
                )
            });
        } else {
            if answered == 0 {
                continue;
            }
            v.check(s.unexpected_responses == 0, || {
                format!(
                    "client {} ({}): {} responses to ids not in flight (repeated or unknown)",
                    c.index,
                    c.behavior.name(),
                    s.unexpected_responses
                )
            });
        }
    }
    v.finish(|| {
        if in_order {
            "no connection got two responses".into()
        } else {
            "no connection got a response".into()
        }
    })
}

/// How a client's pushes compare with what the gate accepted for its session.
#[derive(Debug, PartialEq, Eq)]
pub enum PushFinding {
    /// Received exactly what was accepted, in order (possibly missing a tail, `missing` long,
    /// the first of it accepted at `first_missing`).
    Prefix {
        /// Accepted pushes that did not arrive (all at the end).
        missing: usize,
        /// When the first of them was accepted.
        first_missing: Option<Instant>,
    },
    /// The `index`-th push received is not the one accepted in that place.
    Mismatch {
        /// Position in the received sequence.
        index: usize,
        /// The push number received there.
        got: u64,
        /// The number the gate accepted in that place (`None`: more received than accepted).
        expected: Option<u64>,
    },
}

/// Compares the pushes received with those accepted (numbers in acceptance order).
pub fn compare_pushes(received: &[u64], accepted: &[(u64, Instant)]) -> PushFinding {
    for (i, &got) in received.iter().enumerate() {
        let expected = accepted.get(i).map(|a| a.0);
        if expected != Some(got) {
            return PushFinding::Mismatch {
                index: i,
                got,
                expected,
            };
        }
    }
    PushFinding::Prefix {
        missing: accepted.len() - received.len(),
        first_missing: accepted.get(received.len()).map(|a| a.1),
    }
}

fn describe_mismatch(received: &[u64], index: usize, got: u64, expected: Option<u64>) -> String {
    let seen_before = received[..index].contains(&got);
    match expected {
        None => format!("push #{got} arrived beyond every push the gate accepted"),
        Some(e) if seen_before => format!("push #{got} arrived twice (where #{e} was due)"),
        Some(e) if got > e => format!("push #{e} missing: #{got} arrived in its place"),
        Some(e) => format!("push #{got} arrived out of order (where #{e} was due)"),
    }
}

/// `pushes`: every push the gate accepted for a session reached its client exactly once and in
/// order, or the connection ended before it could arrive.
pub fn pushes(run: &RunData) -> Verdict {
    let slack = run.answer_slack;
    let known = run.conns.iter().any(|c| c.pushes_accepted.is_some());
    if !known {
        // An external gate: what it accepted is not visible, so only what the client sees.
        return client_side_pushes(run);
    }
    let mut v = Verdict::new(
        "pushes",
        "every push the gate accepted for a session reached its client exactly once, in order, or the connection ended first",
    );
    for c in &run.conns {
        let Some(accepted) = &c.pushes_accepted else {
            continue;
        };
        let received = &c.stats.push_seqs;
        if accepted.is_empty() && received.is_empty() {
            continue;
        }
        let finding = compare_pushes(received, accepted);
        let ok = match &finding {
            PushFinding::Mismatch { .. } => false,
            PushFinding::Prefix { first_missing, .. } => {
                !c.reads_everything
                    || first_missing
                        .is_none_or(|t| c.client_ended_at.is_some_and(|end| t + slack >= end))
            }
        };
        v.check(ok, || {
            let what = match finding {
                PushFinding::Mismatch {
                    index,
                    got,
                    expected,
                } => describe_mismatch(received, index, got, expected),
                PushFinding::Prefix {
                    missing,
                    first_missing,
                } => format!(
                    "{missing} accepted pushes never arrived, the first accepted at {} while the connection lasted until {}",
                    first_missing.map_or("?".into(), |t| at(run, t)),
                    ended(run, c)
                ),
            };
            format!(
                "client {} ({}): {} accepted, {} received: {what}",
                c.index,
                c.behavior.name(),
                accepted.len(),
                received.len()
            )
        });
    }
    v.finish(|| {
        if run.scenario.push_rate > 0.0 {
            "the gate accepted no push (no session was open at a push tick)".into()
        } else {
            "no pushes in this scenario (push_rate = 0)".into()
        }
    })
}

/// Pushes against an external gate: numbers only increase (none repeated, none out of order).
fn client_side_pushes(run: &RunData) -> Verdict {
    let mut v = Verdict::new(
        "pushes",
        "pushes received arrived once each and in order (what the gate accepted is not visible: missing pushes are not checked)",
    );
    for c in &run.conns {
        let r = &c.stats.push_seqs;
        if r.is_empty() {
            continue;
        }
        let bad = r.windows(2).position(|w| w[1] <= w[0]);
        v.check(bad.is_none(), || {
            let i = bad.unwrap_or(0);
            format!(
                "client {} ({}): push #{} arrived after #{}",
                c.index,
                c.behavior.name(),
                r[i + 1],
                r[i]
            )
        });
    }
    v.finish(|| {
        "no push arrived (the gate pushed nothing; `gatekit serve --push-rate` makes it push)"
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accepted(n: u64) -> Vec<(u64, Instant)> {
        let t0 = Instant::now();
        (0..n)
            .map(|i| (10 + 3 * i, t0 + std::time::Duration::from_millis(i)))
            .collect()
    }

    proptest! {
        /// A prefix of what was accepted is a prefix; a push repeated, missing from the middle,
        /// out of order or unknown is a mismatch at the first place it shows.
        #[test]
        fn pushes_compare_exactly(n in 1u64..40, cut in 0usize..40, edit in 0u8..4, at in 0usize..40) {
            let acc = accepted(n);
            let nums: Vec<u64> = acc.iter().map(|a| a.0).collect();
            let cut = cut.min(nums.len());
            let prefix = &nums[..cut];
            match compare_pushes(prefix, &acc) {
                PushFinding::Prefix { missing, first_missing } => {
                    prop_assert_eq!(missing, nums.len() - cut);
                    prop_assert_eq!(first_missing, acc.get(cut).map(|a| a.1));
                }
                other => prop_assert!(false, "{:?}", other),
            }
            if nums.len() < 2 {
                return Ok(());
            }
            let at = at % (nums.len() - 1);
            let mut bad = nums.clone();
            match edit {
                0 => bad.insert(at + 1, nums[at]),   // repeated
                1 => { bad.remove(at); }             // lost from the middle
                2 => bad.swap(at, at + 1),           // out of order
                _ => bad[at] = 1,                    // never accepted
            }
            let expected_at = match edit { 0 => at + 1, _ => at };
            match compare_pushes(&bad, &acc) {
                PushFinding::Mismatch { index, got, expected } => {
                    prop_assert_eq!(index, expected_at);
                    prop_assert_eq!(got, bad[index]);
                    prop_assert_eq!(expected, acc.get(index).map(|a| a.0));
                }
                other => prop_assert!(false, "edit {} at {}: {:?}", edit, at, other),
            }
        }
    }

    #[test]
    fn mismatches_are_named_for_what_happened() {
        let r = [10, 13, 13];
        assert_eq!(
            describe_mismatch(&r, 2, 13, Some(16)),
            "push #13 arrived twice (where #16 was due)"
        );
        assert_eq!(
            describe_mismatch(&[10, 16], 1, 16, Some(13)),
            "push #13 missing: #16 arrived in its place"
        );
        assert_eq!(
            describe_mismatch(&[13, 10], 0, 13, Some(10)),
            "push #10 missing: #13 arrived in its place"
        );
        assert_eq!(
            describe_mismatch(&[10, 16, 13], 2, 13, Some(16)),
            "push #13 arrived out of order (where #16 was due)"
        );
        assert_eq!(
            describe_mismatch(&[10], 0, 10, None),
            "push #10 arrived beyond every push the gate accepted"
        );
    }
}

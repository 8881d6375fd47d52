//! When a correct gate must have answered a request, computed by the client from what it sent.
//!
//! The gate reads a connection's packets in order, decodes one only while fewer than
//! `max_in_flight` of its calls (requests and notifies) are in flight, and answers every request
//! within `backend_timeout` of decoding it (with `timeout` at worst). So, for packets sent at
//! `t1 ≤ t2 ≤ …`, packet k is decoded by
//!
//! ```text
//! D(k) = max(t(k), D(k-1), the max_in_flight-th latest C of the calls before k)
//! ```
//!
//! (a slot is free once all but `max_in_flight - 1` earlier calls are done), and a call decoded
//! at `D` is done by `C = D + backend_timeout`. Packets that start no call
//! (PING, PONG) take a place in the order but no slot. This is an upper bound for every gate that
//! keeps the rules, however slow or hanging its back ends; a request still unanswered past its
//! bound (plus the run's timing slack) while the connection was open was lost. A client waits for
//! its outstanding requests until their bounds pass, and no longer: giving up is a violation.
//!
//! Answers tighten the bounds: a response to request j at `r` means call j was done, and every
//! packet up to j decoded, by `r`; and since j was decoded, at most `max_in_flight - 1` earlier
//! calls were still in flight then (so all but the latest `max_in_flight - 1` bounds of them can
//! be lowered to `r`; with one call in flight, all of them).

use std::time::{Duration, Instant};

/// The bound model for one connection.
#[derive(Debug, Clone)]
pub struct AnswerDeadlines {
    call_time: Duration,
    slots: usize,
    /// Packets sent so far (the last one's number).
    sent: u64,
    /// The last packet's decode bound.
    last_decode: Option<Instant>,
    /// The calls that may still be in flight at the last send: packet number, request id,
    /// completion bound.
    calls: Vec<(u64, Option<u32>, Instant)>,
}

impl AnswerDeadlines {
    /// For a gate answering within `backend_timeout`, with `max_in_flight` calls per connection.
    pub fn new(backend_timeout: Duration, max_in_flight: usize) -> Self {
        AnswerDeadlines {
            call_time: backend_timeout,
            slots: max_in_flight.max(1),
            sent: 0,
            last_decode: None,
            calls: Vec::new(),
        }
    }

    /// A packet that starts no call (PING, PONG, the handshake) fully sent at `t`: when the gate
    /// has decoded it at the latest.
    pub fn packet(&mut self, t: Instant) -> Instant {
        self.sent += 1;
        let mut d = t;
        if let Some(last) = self.last_decode {
            d = d.max(last);
        }
        if self.calls.len() >= self.slots {
            // The slots-th latest completion: from then on fewer than `slots` are in flight.
            let mut done: Vec<Instant> = self.calls.iter().map(|c| c.2).collect();
            done.sort_unstable_by(|a, b| b.cmp(a));
            d = d.max(done[self.slots - 1]);
        }
        self.last_decode = Some(d);
        // Calls surely done by now (real time `t`, not the bound `d`, which later answers may
        // lower) no longer matter.
        self.calls.retain(|c| c.2 > t);
        d
    }

    /// A request (`Some(id)`) or notify (`None`) fully sent at `t`: when the gate has answered
    /// it (or, for a notify, freed its slot) at the latest.
    pub fn call(&mut self, t: Instant, request: Option<u32>) -> Instant {
        let done = self.packet(t) + self.call_time;
        self.calls.push((self.sent, request, done));
        done
    }

    /// The response to request `id` arrived at `r`.
    pub fn answered(&mut self, id: u32, r: Instant) {
        let Some(&(seq, _, _)) = self.calls.iter().find(|c| c.1 == Some(id)) else {
            return;
        };
        // Request j was decoded by `r`, so then at most `slots - 1` earlier calls were still in
        // flight: all but the `slots - 1` latest bounds among them were done by `r`.
        let mut earlier: Vec<usize> = (0..self.calls.len())
            .filter(|&i| self.calls[i].0 < seq)
            .collect();
        earlier.sort_unstable_by(|&a, &b| self.calls[b].2.cmp(&self.calls[a].2));
        for &i in earlier.iter().skip(self.slots - 1) {
            self.calls[i].2 = self.calls[i].2.min(r);
        }
        for c in self.calls.iter_mut().filter(|c| c.1 == Some(id)) {
            c.2 = c.2.min(r);
        }
        if self.sent == seq {
            self.last_decode = self.last_decode.map(|d| d.min(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn one_slot_serialises_calls() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(10), 1);
        // Three requests at once: answered by +10, +20, +30.
        assert_eq!(a.call(t0, Some(1)), t0 + s(10));
        assert_eq!(a.call(t0, Some(2)), t0 + s(20));
        // A PING behind them is decoded when the second one is done.
        assert_eq!(a.packet(t0 + s(1)), t0 + s(20));
        assert_eq!(a.call(t0, Some(3)), t0 + s(30));
        // Much later, the queue is empty again.
        assert_eq!(a.call(t0 + s(100), Some(4)), t0 + s(110));
    }

    #[test]
    fn answers_tighten_the_bounds() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(10), 1);
        // A notify, then a request: the request waits for the notify's slot.
        assert_eq!(a.call(t0, None), t0 + s(10));
        assert_eq!(a.call(t0, Some(1)), t0 + s(20));
        // The request is answered at +1: the notify was done by then too.
        a.answered(1, t0 + s(1));
        assert_eq!(a.call(t0 + s(2), Some(2)), t0 + s(12));
        // An answer to an id that is not in flight changes nothing.
        a.answered(9, t0 + s(3));
        assert_eq!(a.call(t0 + s(2), Some(3)), t0 + s(22));
    }

    #[test]
    fn with_several_slots_an_answer_frees_only_its_own() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(10), 2);
        assert_eq!(a.call(t0, None), t0 + s(10));
        assert_eq!(a.call(t0, Some(1)), t0 + s(10));
        a.answered(1, t0 + s(1));
        // One slot is known free at +1, the notify's may be busy until +10.
        assert_eq!(a.call(t0 + s(2), Some(2)), t0 + s(12));
        // Then both slots may be busy (the notify until +10, request 2 until +12).
        assert_eq!(a.call(t0 + s(2), Some(3)), t0 + s(20));
    }

    #[test]
    fn several_slots_overlap() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(10), 2);
        assert_eq!(a.call(t0, Some(1)), t0 + s(10));
        assert_eq!(a.call(t0, Some(2)), t0 + s(10));
        // The third waits for the first slot.
        assert_eq!(a.call(t0, Some(3)), t0 + s(20));
        assert_eq!(a.call(t0 + s(5), Some(4)), t0 + s(20));
        assert_eq!(a.call(t0 + s(5), Some(5)), t0 + s(30));
    }

    #[test]
    fn a_lowered_decode_bound_still_waits_for_busy_slots() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(5), 2);
        // Two notifies that may hang until +5, then a request that must wait for one of them.
        a.call(t0, None);
        a.call(t0, None);
        assert_eq!(a.call(t0, Some(1)), t0 + s(10));
        // It is answered at +1 (a notify was done early), lowering the decode bound to +1…
        a.answered(1, t0 + s(1));
        // …but the other notify may still hang until +5, and so may request 2: request 3 waits.
        assert_eq!(a.call(t0 + s(2), Some(2)), t0 + s(7));
        assert_eq!(a.call(t0 + s(2), Some(3)), t0 + s(10));
    }

    #[test]
    fn packets_keep_their_order() {
        let t0 = Instant::now();
        let mut a = AnswerDeadlines::new(s(2), 1);
        assert_eq!(a.call(t0 + s(10), Some(1)), t0 + s(12));
        // Sent earlier than the call before it is impossible, but decoding never goes back.
        assert_eq!(a.packet(t0 + s(5)), t0 + s(12));
    }
}

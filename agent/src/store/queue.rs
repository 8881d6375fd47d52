//! [`StoreQueue`]: one connection's store operations, run one at a time in the order asked.
//!
//! Pure bookkeeping (the driver runs the operations): an operation on the connection's current
//! user is sent with the session's latest snapshot, so a write queued behind a slow one stores
//! the newest settings; repeated writes and heartbeats waiting together are one; an operation
//! whose user was unbound since it was asked is dropped (the unbind's own `disconnect` follows
//! it). Bounded: past [`MAX_PENDING`] waiting operations, new ones are refused and counted.

use super::{StoreKind, StoreOp};
use crate::session::Session;
use std::collections::VecDeque;
use std::sync::Arc;

/// Operations that may wait behind the one running.
pub(crate) const MAX_PENDING: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct StoreQueue {
    pending: VecDeque<StoreOp>,
}

impl StoreQueue {
    /// Queues `op`; false if it was refused (the queue is full).
    pub(crate) fn push(&mut self, op: StoreOp) -> bool {
        if let Some(last) = self.pending.back_mut() {
            let same_user = last.session.user_id == op.session.user_id;
            // One write covers another (both send the latest snapshot), and a bind writes it too.
            let covered = same_user
                && match op.kind {
                    StoreKind::Storage => {
                        matches!(last.kind, StoreKind::Storage | StoreKind::Bind)
                    }
                    StoreKind::Heartbeat => last.kind == StoreKind::Heartbeat,
                    _ => false,
                };
            if covered {
                return true;
            }
        }
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        self.pending.push_back(op);
        true
    }

    /// The next operation to run, given the connection's current session.
    pub(crate) fn next(&mut self, current: Option<&Arc<Session>>) -> Option<StoreOp> {
        while let Some(mut op) = self.pending.pop_front() {
            match op.kind {
                StoreKind::Bind | StoreKind::Storage | StoreKind::Heartbeat => {
                    let Some(current) = current.filter(|c| {
                        c.user_id.is_some()
                            && c.user_id == op.session.user_id
                            && c.session_id == op.session.session_id
                    }) else {
                        continue; // unbound (or bound to another user) since: stale
                    };
                    op.session = current.clone();
                    return Some(op);
                }
                StoreKind::Disconnect | StoreKind::Delete => return Some(op),
            }
        }
        if self.pending.capacity() > MAX_PENDING {
            self.pending = VecDeque::new();
        }
        None
    }

    /// Whether nothing waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(user: Option<&str>, setting: &str) -> Arc<Session> {
        let mut s = Session::new("s1", "tcp", "p", "g");
        s.user_id = user.map(str::to_owned);
        s.settings.insert("k".into(), setting.into());
        Arc::new(s)
    }

    fn op(kind: StoreKind, session: &Arc<Session>) -> StoreOp {
        StoreOp {
            kind,
            session: session.clone(),
        }
    }

    fn drain(q: &mut StoreQueue, current: &Arc<Session>) -> Vec<(StoreKind, String)> {
        std::iter::from_fn(|| q.next(Some(current)))
            .map(|o| (o.kind, o.session.settings["k"].clone()))
            .collect()
    }

    #[test]
    fn writes_waiting_together_are_one_and_carry_the_latest_settings() {
        let mut q = StoreQueue::default();
        let a1 = s(Some("a"), "1");
        assert!(q.push(op(StoreKind::Bind, &a1)));
        assert!(q.push(op(StoreKind::Storage, &a1)));
        assert!(q.push(op(StoreKind::Heartbeat, &a1)));
        assert!(q.push(op(StoreKind::Heartbeat, &a1)));
        assert!(q.push(op(StoreKind::Storage, &a1)));
        assert!(q.push(op(StoreKind::Storage, &a1)));
        let a3 = s(Some("a"), "3");
        assert_eq!(
            drain(&mut q, &a3),
            vec![
                (StoreKind::Bind, "3".into()),
                (StoreKind::Heartbeat, "3".into()),
                (StoreKind::Storage, "3".into()),
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn operations_of_a_user_unbound_since_are_dropped_but_its_disconnect_runs() {
        let mut q = StoreQueue::default();
        let a = s(Some("a"), "1");
        q.push(op(StoreKind::Bind, &a));
        q.push(op(StoreKind::Storage, &a));
        q.push(op(StoreKind::Disconnect, &a));
        let b = s(Some("b"), "2");
        q.push(op(StoreKind::Bind, &b));
        assert_eq!(
            drain(&mut q, &b),
            vec![
                (StoreKind::Disconnect, "1".into()),
                (StoreKind::Bind, "2".into())
            ]
        );
        // Once the connection has no session, only disconnects and deletes run.
        q.push(op(StoreKind::Heartbeat, &b));
        q.push(op(StoreKind::Delete, &b));
        let kinds: Vec<_> = std::iter::from_fn(|| q.next(None))
            .map(|o| o.kind)
            .collect();
        assert_eq!(kinds, vec![StoreKind::Delete]);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = StoreQueue::default();
        let users: Vec<_> = (0..MAX_PENDING + 1)
            .map(|i| s(Some(&format!("u{i}")), "x"))
            .collect();
        for u in &users[..MAX_PENDING] {
            assert!(q.push(op(StoreKind::Disconnect, u)));
        }
        assert!(!q.push(op(StoreKind::Disconnect, &users[MAX_PENDING])));
    }
}

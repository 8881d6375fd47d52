//! The back-end calls in flight on one connection's task.
//!
//! Usually there is none (idle) or one (`max_in_flight` is 1 by default), so the set holds no
//! memory when empty, polls a lone call directly, and only builds a `FuturesUnordered` while two
//! or more calls are in flight.

use crate::services::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::task::{ready, Context, Poll};

/// Futures polled together on the connection's task; each yields once.
pub(crate) enum CallSet<T> {
    /// Nothing in flight.
    Empty,
    /// One call.
    One(BoxFuture<T>),
    /// Two or more calls (never empty).
    Many(FuturesUnordered<BoxFuture<T>>),
}

impl<T> CallSet<T> {
    /// Adds a call.
    pub(crate) fn push(&mut self, call: BoxFuture<T>) {
        *self = match std::mem::replace(self, CallSet::Empty) {
            CallSet::Empty => CallSet::One(call),
            CallSet::One(first) => {
                let many = FuturesUnordered::new();
                many.push(first);
                many.push(call);
                CallSet::Many(many)
            }
            CallSet::Many(many) => {
                many.push(call);
                CallSet::Many(many)
            }
        };
    }

    /// Whether no call is in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, CallSet::Empty)
    }

    /// The output of a call that finished, `Pending` if none has (and `cx` is woken when one
    /// does), or `None` if the set is empty.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let out = match self {
            CallSet::Empty => return Poll::Ready(None),
            CallSet::One(call) => {
                let out = ready!(call.as_mut().poll(cx));
                *self = CallSet::Empty;
                return Poll::Ready(Some(out));
            }
            CallSet::Many(many) => ready!(many.poll_next_unpin(cx)),
        };
        if let CallSet::Many(many) = self {
            if many.is_empty() {
                *self = CallSet::Empty;
            }
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn yields_every_output_and_ends_empty() {
        let mut set: CallSet<u32> = CallSet::Empty;
        assert!(set.is_empty());
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, None);
        set.push(Box::pin(async { 1 }));
        assert!(matches!(set, CallSet::One(_)));
        assert_eq!(poll_fn(|cx| set.poll_next(cx)).await, Some(1));
        assert!(set.is_empty());
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        set.push(Box::pin(async move { rx.await.unwrap() }));
        set.push(Box::pin(async { 3 }));
        set.push(Box::pin(async { 4 }));
        let mut got = vec![
            poll_fn(|cx| set.poll_next(cx)).await.unwrap(),
            poll_fn(|cx| set.poll_next(cx)).await.unwrap(),
        ];
        assert!(!set.is_empty());
        tx.send(2).unwrap();
        got.push(poll_fn(|cx| set.poll_next(cx)).await.unwrap());
        got.sort();
        assert_eq!(got, [2, 3, 4]);
        assert!(set.is_empty(), "a drained set gives its memory back");
    }
}

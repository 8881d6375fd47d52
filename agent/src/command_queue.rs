//! The bounded queue of one connection's commands: a `VecDeque` under a lock, plus the waker of the
//! connection's task. Unlike a channel, it holds no memory while empty (an idle connection costs
//! the lock, an empty deque and a waker slot), and it gives its capacity back once drained.

use crate::handle::{Command, HandleError};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A bounded, single-consumer command queue. Senders never wait: a full queue is an error.
#[derive(Debug)]
pub(crate) struct CommandQueue {
    bound: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Command>,
    /// The receiver's waker, while it waits for a command.
    waker: Option<Waker>,
    /// The receiver is gone: nothing is queued any more.
    closed: bool,
}

impl CommandQueue {
    /// An empty queue holding at most `bound` commands.
    pub(crate) fn new(bound: usize) -> Self {
        CommandQueue {
            bound,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queue consistent (every critical section is
        // a single deque operation), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `cmd` at the end, or refuses it when full or closed.
    pub(crate) fn push(&self, cmd: Command) -> Result<(), HandleError> {
        self.push_within(cmd, self.bound)
    }

    /// Queues [`Command::Shutdown`] at the end, using one place beyond the bound if the queue is
    /// full (the place a sender waiting for room would get next). If the queue is already past
    /// its bound, that place holds a shutdown already, and nothing is added.
    pub(crate) fn push_shutdown(&self) -> Result<(), HandleError> {
        match self.push_within(Command::Shutdown, self.bound + 1) {
            Err(HandleError::Full) => Ok(()),
            other => other,
        }
    }

    fn push_within(&self, cmd: Command, limit: usize) -> Result<(), HandleError> {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return Err(HandleError::Closed);
            }
            if state.queue.len() >= limit {
                return Err(HandleError::Full);
            }
            state.queue.push_back(cmd);
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Takes the first command, or registers `cx` to be woken by the next push.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Command> {
        let mut state = self.lock();
        match pop(&mut state) {
            Some(cmd) => Poll::Ready(cmd),
            None => {
                match &state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => state.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Takes the first command, if any.
    pub(crate) fn try_pop(&self) -> Option<Command> {
        pop(&mut self.lock())
    }

    /// Commands queued.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Closes the queue (the receiver is gone): later pushes fail with `Closed`, and what is
    /// queued is dropped.
    pub(crate) fn close(&self) {
        let (queue, waker) = {
            let mut state = self.lock();
            state.closed = true;
            (std::mem::take(&mut state.queue), state.waker.take())
        };
        drop((queue, waker));
    }
}

fn pop(state: &mut State) -> Option<Command> {
    let cmd = state.queue.pop_front()?;
    if state.queue.is_empty() {
        // Drained: give the memory back rather than keep it for an idle connection.
        state.queue = VecDeque::new();
    }
    Some(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    fn kick(i: usize) -> Command {
        Command::Kick(i.to_string())
    }

    fn reason(c: Command) -> String {
        match c {
            Command::Kick(r) => r,
            other => panic!("expected a kick, got {other:?}"),
        }
    }

    #[derive(Default)]
    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn full_at_the_bound_and_in_order() {
        let q = CommandQueue::new(4);
        for i in 0..4 {
            q.push(kick(i)).unwrap();
        }
        assert_eq!(q.push(kick(4)), Err(HandleError::Full));
        assert_eq!(q.len(), 4);
        assert_eq!(reason(q.try_pop().unwrap()), "0");
        q.push(kick(5)).unwrap();
        let rest: Vec<_> = std::iter::from_fn(|| q.try_pop()).map(reason).collect();
        assert_eq!(rest, ["1", "2", "3", "5"]);
    }

    #[test]
    fn drained_queue_holds_no_memory() {
        let q = CommandQueue::new(256);
        for i in 0..100 {
            q.push(kick(i)).unwrap();
        }
        assert!(q.lock().queue.capacity() >= 100);
        while q.try_pop().is_some() {}
        assert_eq!(q.lock().queue.capacity(), 0);
    }

    #[test]
    fn shutdown_takes_one_place_past_the_bound_after_what_is_queued() {
        let q = CommandQueue::new(2);
        q.push(kick(0)).unwrap();
        q.push(kick(1)).unwrap();
        q.push_shutdown().unwrap();
        // No second place past the bound, for a shutdown or anything else.
        q.push_shutdown().unwrap();
        assert_eq!(q.push(kick(2)), Err(HandleError::Full));
        assert_eq!(q.len(), 3);
        assert_eq!(reason(q.try_pop().unwrap()), "0");
        assert_eq!(reason(q.try_pop().unwrap()), "1");
        assert!(matches!(q.try_pop(), Some(Command::Shutdown)));
        assert!(q.try_pop().is_none());
    }

    #[test]
    fn closed_queue_refuses_and_drops_what_it_held() {
        let q = CommandQueue::new(2);
        q.push(kick(0)).unwrap();
        q.close();
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(kick(1)), Err(HandleError::Closed));
        assert_eq!(q.push_shutdown(), Err(HandleError::Closed));
    }

    #[test]
    fn a_push_wakes_the_waiting_receiver_once() {
        let q = CommandQueue::new(2);
        let wake = Arc::new(CountWake::default());
        let waker = Waker::from(wake.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_pop(&mut cx).is_pending());
        assert!(q.poll_pop(&mut cx).is_pending());
        q.push(kick(7)).unwrap();
        q.push(kick(8)).unwrap();
        assert_eq!(wake.0.load(Ordering::SeqCst), 1);
        match q.poll_pop(&mut cx) {
            Poll::Ready(c) => assert_eq!(reason(c), "7"),
            Poll::Pending => panic!("a command was queued"),
        }
    }
}

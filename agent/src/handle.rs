//! [`AgentHandle`]: a connection seen from other tasks — counters, session, commands.

use crate::command_queue::CommandQueue;
use crate::connection::Counters;
use crate::session::Session;
use bytes::Bytes;
use gatekit_codec::Topic;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

/// Commands to a connection's driver.
#[derive(Debug, Clone)]
pub enum Command {
    /// Send a PUSH.
    Push(Topic, Bytes),
    /// Close with `kicked` and this reason text.
    Kick(String),
    /// Close with `shutdown` once the calls in flight are answered (or time out); nothing more
    /// is read meanwhile ([`Connection::drain`](crate::Connection::drain)).
    Shutdown,
    /// Bind a user id.
    Bind(String),
    /// Unbind the user id.
    Unbind,
    /// Set a setting.
    Set(String, String),
    /// Remove a setting.
    Remove(String),
    /// Log the user out: unbind it and have the store forget its session (mqant's `Delete`).
    Logout,
    /// Store the bound session again (the store lost it: Redis restarted), as a settings write.
    StoreAgain,
}

/// Why a command could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
    /// The connection's command queue is full (it is not keeping up).
    #[error("connection command queue full")]
    Full,
    /// No session with that id on this gate.
    #[error("no such session")]
    NoSuchSession,
    /// The packet would exceed the maximum frame length; nothing was queued.
    #[error("push of {len} bytes exceeds the maximum frame length of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

pub(crate) struct HandleInner {
    pub(crate) conn_time: SystemTime,
    pub(crate) counters: Arc<Counters>,
    pub(crate) session: Mutex<Option<Arc<Session>>>,
    pub(crate) commands: CommandQueue,
    pub(crate) max_frame_length: usize,
}

/// The receiving end of a connection's commands, given to its agent in
/// [`AgentContext`](crate::AgentContext): commands come out in the order they were accepted.
///
/// The queue holds no memory while it is empty. Dropping the receiver closes the queue: senders
/// then get [`HandleError::Closed`] and commands still queued are dropped.
pub struct Commands {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("queued", &self.inner.commands.len())
            .finish()
    }
}

impl Commands {
    /// The next command, waiting until one arrives.
    pub async fn recv(&mut self) -> Command {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next command if one is queued; otherwise `cx` is woken when one arrives.
    ///
    /// Each command taken uses up some of the task's tokio budget, like a tokio channel would.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let cmd = std::task::ready!(self.inner.commands.poll_pop(cx));
        coop.made_progress();
        Poll::Ready(cmd)
    }

    /// The next command if one is queued.
    pub fn try_recv(&mut self) -> Option<Command> {
        self.inner.commands.try_pop()
    }

    /// Commands queued.
    pub fn len(&self) -> usize {
        self.inner.commands.len()
    }

    /// Whether no command is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        self.inner.commands.close();
    }
}

/// A cheap, cloneable view of one connection, usable from any task: the equivalent of mqant's Agent
/// methods `ConnTime`, `RevNum`, `SendNum`, `IsClosed`, `GetSession`, `WriteMsg` and `Close`.
///
/// Counters and the closed flag are atomics (no lock); commands go through a bounded queue to the
/// connection's own task, which applies them in order.
#[derive(Clone)]
pub struct AgentHandle {
    pub(crate) inner: Arc<HandleInner>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("session", &self.session().map(|s| s.session_id.clone()))
            .field("received", &self.received())
            .field("sent", &self.sent())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Commands queued per connection before senders see [`HandleError::Full`].
pub const COMMAND_QUEUE: usize = 256;

impl AgentHandle {
    pub(crate) fn new(counters: Arc<Counters>, max_frame_length: usize) -> (AgentHandle, Commands) {
        let inner = Arc::new(HandleInner {
            conn_time: SystemTime::now(),
            counters,
            session: Mutex::new(None),
            commands: CommandQueue::new(COMMAND_QUEUE),
            max_frame_length,
        });
        (
            AgentHandle {
                inner: inner.clone(),
            },
            Commands { inner },
        )
    }

    /// When the connection was accepted.
    pub fn conn_time(&self) -> SystemTime {
        self.inner.conn_time
    }

    /// Packets received from the client.
    pub fn received(&self) -> u64 {
        self.inner.counters.received()
    }

    /// Packets sent to the client.
    pub fn sent(&self) -> u64 {
        self.inner.counters.sent()
    }

    /// Bytes of the protocol's stream received (above the transport).
    pub fn bytes_in(&self) -> u64 {
        self.inner.counters.bytes_in()
    }

    /// Bytes of the protocol's stream written (above the transport).
    pub fn bytes_out(&self) -> u64 {
        self.inner.counters.bytes_out()
    }

    /// Whether the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.counters.is_closed()
    }

    /// The most bytes the connection ever buffered at once.
    pub fn max_buffered(&self) -> usize {
        self.inner.counters.max_buffered()
    }

    /// The latest session snapshot (`None` before the handshake).
    pub fn session(&self) -> Option<Arc<Session>> {
        self.inner.session.lock().expect("session lock").clone()
    }

    pub(crate) fn set_session(&self, session: Option<Arc<Session>>) {
        *self.inner.session.lock().expect("session lock") = session;
    }

    /// Sends a command to the connection.
    pub fn command(&self, cmd: Command) -> Result<(), HandleError> {
        self.inner.commands.push(cmd)
    }

    /// Queues [`Command::Shutdown`] even when the queue is full: it takes the next place, after
    /// the commands already queued, so a full queue cannot cost the client its CLOSE.
    pub(crate) fn command_shutdown(&self) -> Result<(), HandleError> {
        self.inner.commands.push_shutdown()
    }

    /// Pushes a message to the client (mqant's `WriteMsg` / `Session.Send`).
    pub fn push(&self, topic: Topic, body: impl Into<Bytes>) -> Result<(), HandleError> {
        let body = body.into();
        // Refuse here what the encoder would refuse later, where no one could be told.
        let len = 2 + topic.as_str().len() + body.len();
        let max = self.inner.max_frame_length;
        if len > max {
            return Err(HandleError::TooLarge { len, max });
        }
        self.command(Command::Push(topic, body))
    }

    /// Closes the connection with `kicked` (mqant's `Close`).
    pub fn kick(&self, reason: impl Into<String>) -> Result<(), HandleError> {
        self.command(Command::Kick(reason.into()))
    }

    /// Binds a user id to the session.
    pub fn bind(&self, user_id: impl Into<String>) -> Result<(), HandleError> {
        self.command(Command::Bind(user_id.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (AgentHandle, Commands) {
        AgentHandle::new(Arc::new(Counters::default()), 65_535)
    }

    fn topic() -> Topic {
        Topic::try_from("t").unwrap()
    }

    #[test]
    fn full_at_command_queue_and_in_order() {
        let (h, mut rx) = handle();
        for i in 0..COMMAND_QUEUE {
            h.push(topic(), i.to_string()).unwrap();
        }
        assert_eq!(h.kick("late"), Err(HandleError::Full));
        assert_eq!(rx.len(), COMMAND_QUEUE);
        for i in 0..COMMAND_QUEUE {
            match rx.try_recv() {
                Some(Command::Push(_, body)) => assert_eq!(body, i.to_string()),
                other => panic!("expected push {i}, got {other:?}"),
            }
        }
        assert!(rx.try_recv().is_none());
        assert!(rx.is_empty());
    }

    #[test]
    fn shutdown_is_queued_after_a_full_queue() {
        let (h, mut rx) = handle();
        for _ in 0..COMMAND_QUEUE {
            h.bind("u").unwrap();
        }
        h.command_shutdown().unwrap();
        assert_eq!(rx.len(), COMMAND_QUEUE + 1);
        for _ in 0..COMMAND_QUEUE {
            assert!(matches!(rx.try_recv(), Some(Command::Bind(_))));
        }
        assert!(matches!(rx.try_recv(), Some(Command::Shutdown)));
    }

    #[test]
    fn closed_once_the_receiver_is_gone() {
        let (h, rx) = handle();
        h.kick("x").unwrap();
        drop(rx);
        assert_eq!(h.kick("y"), Err(HandleError::Closed));
        assert_eq!(h.command_shutdown(), Err(HandleError::Closed));
    }

    #[tokio::test]
    async fn recv_waits_for_a_command() {
        let (h, mut rx) = handle();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        h.kick("wake").unwrap();
        match waiter.await.unwrap() {
            Command::Kick(r) => assert_eq!(r, "wake"),
            other => panic!("expected the kick, got {other:?}"),
        }
    }
}

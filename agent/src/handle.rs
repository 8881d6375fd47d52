//! [`AgentHandle`]: a connection seen from other tasks — counters, session, commands.

use crate::connection::Counters;
use crate::session::Session;
use bytes::Bytes;
use gatekit_codec::Topic;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Commands to a connection's driver.
#[derive(Debug, Clone)]
pub enum Command {
    /// Send a PUSH.
    Push(Topic, Bytes),
    /// Close with `kicked` and this reason text.
    Kick(String),
    /// Close with `shutdown`.
    Shutdown,
    /// Bind a user id.
    Bind(String),
    /// Unbind the user id.
    Unbind,
    /// Set a setting.
    Set(String, String),
    /// Remove a setting.
    Remove(String),
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
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) max_frame_length: usize,
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
    pub(crate) fn new(
        counters: Arc<Counters>,
        max_frame_length: usize,
    ) -> (AgentHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let inner = HandleInner {
            conn_time: SystemTime::now(),
            counters,
            session: Mutex::new(None),
            commands: tx,
            max_frame_length,
        };
        (
            AgentHandle {
                inner: Arc::new(inner),
            },
            rx,
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
        self.inner.commands.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HandleError::Full,
            mpsc::error::TrySendError::Closed(_) => HandleError::Closed,
        })
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

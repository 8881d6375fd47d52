//! The life of one connection as a deterministic, I/O-free state machine, the same for every wire
//! protocol ([`Protocol`]: gatekit's native one by default, MQTT, pomelo, a user's own).
//!
//! Fed with received bytes, back-end results, gate commands and the current time, it yields what to
//! do: bytes to write ([`Connection::poll_transmit`]), actions ([`Connection::poll_action`]: connect
//! and disconnect notifications, back-end calls, storage heartbeats) and when it next needs the clock
//! ([`Connection::poll_timeout`]). It never reads the clock and never touches a socket, so a test or
//! the harness can run it on a virtual clock, and the tokio driver only moves bytes and timers.
//!
//! Guarantees, each kept by this type alone (not by its driver remembering a call):
//!
//! - `Connect` is yielded once, after a successful handshake; `Disconnect` once, after it, if and only
//!   if `Connect` was yielded — on every path (client close, EOF, reset, timeouts, protocol errors,
//!   kicks, slow consumers, shutdown).
//! - Counters of packets received and sent are exact.
//! - At most `max_in_flight` back-end calls are in flight; while that many are, no more packets are
//!   decoded and [`Connection::wants_read`] is false, so the driver stops reading (TCP back-pressure)
//!   instead of dropping messages.
//! - Bytes buffered are bounded: input by the maximum frame plus one read, output by
//!   `max_write_queue` (a client that does not read is closed as a slow consumer).
//! - A storage heartbeat for a bound session happens at most once per `heartbeat` interval, and at
//!   least once per interval in which the client sent anything.

mod types;

pub use types::{Action, Call, CallId, CallResult, CloseReason, ConnInfo, Counters, PushError};

use crate::config::AgentConfig;
use crate::native::Native;
use crate::protocol::{Event, Hello, Outbox, Protocol, Violation, Welcome};
use crate::session::Session;
use crate::store::{StoreKind, StoreOp};
use bytes::{Bytes, BytesMut};
use gatekit_codec::{CloseCode, Status, Topic};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes charged against the write queue for each queued packet, for the bookkeeping that counts it
/// as sent once written (so a flood of tiny packets is bounded like a flood of bytes).
pub const PACKET_OVERHEAD: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake {
        deadline: Instant,
    },
    Open,
    Closing {
        reason: CloseReason,
        deadline: Instant,
    },
    Closed,
}

#[derive(Debug)]
struct InFlight<R> {
    call: CallId,
    reply_to: Option<R>,
    deadline: Instant,
}

/// One connection's state machine, speaking protocol `P`. See the module docs.
pub struct Connection<P: Protocol = Native> {
    config: Arc<AgentConfig>,
    info: ConnInfo,
    phase: Phase,
    protocol: P,
    input: BytesMut,
    output: BytesMut,
    /// Bytes of output ever queued (encoded), counted from the start of the connection.
    queued_total: u64,
    /// Bytes of output reported written by the driver.
    written_total: u64,
    /// Where each queued, not yet fully written packet ends in the output stream: a packet counts
    /// as sent once the driver has written up to its end. Each entry is charged
    /// [`PACKET_OVERHEAD`] bytes against the write queue, so this list is bounded too.
    ends: VecDeque<u64>,
    /// The peer is done sending: it closed its side (EOF), or said goodbye. Nothing more is read;
    /// the connection ends once the calls in flight are answered.
    peer_eof: bool,
    /// The peer said goodbye (the protocol's graceful close): the gate answers what it read, then
    /// says goodbye too.
    goodbye: bool,
    /// The gate is shutting down: nothing more is read, and once the calls in flight are
    /// answered the connection closes with `shutdown`.
    draining: bool,
    /// Whether hellos go to an authenticator ([`Connection::require_authentication`]).
    authenticate: bool,
    /// The hello waiting for its authenticator's answer (nothing more is read meanwhile).
    authenticating: Option<Box<Hello>>,
    session: Option<Arc<Session>>,
    connected: bool,
    disconnect_sent: bool,
    actions: VecDeque<Action>,
    in_flight: VecDeque<InFlight<P::Reply>>,
    next_call: u64,
    last_activity: Instant,
    idle_timeout: Duration,
    heartbeat_last: Option<Instant>,
    active_since_heartbeat: bool,
    counters: Arc<Counters>,
    max_buffered: usize,
    reason: Option<CloseReason>,
    closing_at: Option<Instant>,
    #[cfg(feature = "fault-injection")]
    fault_state: crate::faults::FaultState<P::Reply>,
}

impl<P: Protocol> fmt::Debug for Connection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("protocol", &self.protocol.name())
            .field("phase", &self.phase)
            .field("session", &self.session)
            .field("in_flight", &self.in_flight.len())
            .field("input", &self.input.len())
            .field("output", &self.queued_output())
            .finish()
    }
}

impl Connection<Native> {
    /// A new connection speaking gatekit's native protocol, accepted at `now`: the handshake must
    /// finish by `now + handshake_timeout`.
    pub fn new(config: Arc<AgentConfig>, info: ConnInfo, now: Instant) -> Self {
        Self::with_counters(config, info, now, Arc::new(Counters::default()))
    }

    /// Like [`Connection::new`], with counters shared with an existing handle.
    pub fn with_counters(
        config: Arc<AgentConfig>,
        info: ConnInfo,
        now: Instant,
        counters: Arc<Counters>,
    ) -> Self {
        let native = Native::new(&config);
        Connection::with_protocol(native, config, info, now, counters)
    }
}

impl<P: Protocol> Connection<P> {
    /// A new connection speaking `protocol`, accepted at `now`, with counters shared with an
    /// existing handle: the handshake must finish by `now + handshake_timeout`.
    pub fn with_protocol(
        protocol: P,
        config: Arc<AgentConfig>,
        info: ConnInfo,
        now: Instant,
        counters: Arc<Counters>,
    ) -> Self {
        Connection {
            phase: Phase::Handshake {
                deadline: now + config.handshake_timeout,
            },
            protocol,
            input: BytesMut::new(),
            output: BytesMut::new(),
            queued_total: 0,
            written_total: 0,
            ends: VecDeque::new(),
            peer_eof: false,
            goodbye: false,
            draining: false,
            authenticate: false,
            authenticating: None,
            session: None,
            connected: false,
            disconnect_sent: false,
            actions: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_call: 0,
            last_activity: now,
            idle_timeout: config.idle_timeout,
            heartbeat_last: None,
            active_since_heartbeat: false,
            counters,
            max_buffered: 0,
            reason: None,
            closing_at: None,
            #[cfg(feature = "fault-injection")]
            fault_state: Default::default(),
            info,
            config,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Refuses a connection before it starts (the gate is full or shutting down): queues the
    /// protocol's closing packet with `code` and closes once it is written. No session, no
    /// Connect, no Disconnect.
    pub fn refuse(&mut self, now: Instant, code: CloseCode) {
        self.close_with(
            now,
            CloseReason::Refused,
            Some((code, code.name().to_owned())),
        );
    }

    /// Sends every hello to an authenticator first: the session opens only once
    /// [`Connection::handle_auth_result`] accepts it ([`Action::Authenticate`]). Set before any
    /// input.
    pub fn require_authentication(&mut self) {
        self.authenticate = true;
    }

    /// Whether a hello waits for its authenticator.
    pub fn is_authenticating(&self) -> bool {
        self.authenticating.is_some()
    }

    // ----- inputs -----

    /// The authenticator's answer to [`Action::Authenticate`]: the session opens (binding the
    /// identity's user id, if any), or the client is refused with the protocol's own
    /// `unauthorized` (or `internal error` when the check could not be made). An answer after the
    /// handshake deadline (the connection is closing) is ignored.
    pub fn handle_auth_result(
        &mut self,
        now: Instant,
        result: Result<crate::auth::Identity, crate::auth::AuthError>,
    ) {
        if !matches!(self.phase, Phase::Handshake { .. }) {
            return;
        }
        let Some(hello) = self.authenticating.take() else {
            return;
        };
        match result {
            Ok(identity) => {
                let bound = identity.user_id.is_some();
                self.open(now, &hello, identity.user_id);
                if bound {
                    self.store_current(StoreKind::Bind);
                    // Storage heartbeats start as with a Bind.
                    self.active_since_heartbeat = true;
                    self.maybe_heartbeat(now);
                }
                self.process_input(now);
            }
            Err(crate::auth::AuthError::Refused(why)) => self.close_with(
                now,
                CloseReason::Refused,
                Some((CloseCode::Unauthorized, why)),
            ),
            Err(crate::auth::AuthError::Unavailable(why)) => self.close_with(
                now,
                CloseReason::Refused,
                Some((
                    CloseCode::InternalError,
                    format!("authentication unavailable: {why}"),
                )),
            ),
        }
    }

    /// Bytes received from the client.
    pub fn handle_input(&mut self, now: Instant, data: BytesMut) {
        self.counters
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        // After the client's goodbye nothing more is read: it was its last packet.
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed)
            || self.goodbye
            || data.is_empty()
        {
            return;
        }
        if self.input.is_empty() {
            self.input = data;
        } else {
            self.input.extend_from_slice(&data);
        }
        self.note_buffered();
        self.process_input(now);
    }

    /// The client's stream ended (read returned 0).
    pub fn handle_eof(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed) {
            // Already closing: the output still drains (the peer may only have half-closed).
            return;
        }
        // Complete packets already received are still handled, and calls in flight are answered
        // (a client may half-close after its last request); then the connection ends with `eof`.
        self.peer_eof = true;
        self.process_input(now);
    }

    /// The transport failed.
    pub fn handle_io_error(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::Closed) {
            self.finish(CloseReason::Reset);
        }
    }

    /// The driver wrote `n` bytes handed out by [`Connection::poll_transmit`].
    pub fn handle_written(&mut self, n: usize) {
        self.counters
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        let unwritten = self.queued_total - self.written_total;
        self.written_total += (n as u64).min(unwritten);
        while self
            .ends
            .front()
            .is_some_and(|&end| end <= self.written_total)
        {
            self.ends.pop_front();
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
        release_if_empty(&mut self.ends);
        if matches!(self.phase, Phase::Closing { .. }) && self.queued_output() == 0 {
            let Phase::Closing { reason, .. } = self.phase else {
                unreachable!()
            };
            self.finish(reason);
        }
    }

    /// A back-end call finished.
    pub fn handle_call_result(&mut self, now: Instant, call: CallId, result: CallResult) {
        let Some(pos) = self.in_flight.iter().position(|f| f.call == call) else {
            return; // timed out already, or the connection closed: the late answer is dropped
        };
        let done = self.in_flight.remove(pos).expect("position is valid");
        release_if_empty(&mut self.in_flight);
        self.last_activity = self.last_activity.max(now);
        if let Some(reply) = done.reply_to {
            let (status, body) = match result {
                CallResult::Ok(b) => (Status::Ok, b),
                CallResult::NotFound => (Status::NotFound, Bytes::new()),
                CallResult::Failed(b) => (Status::Failed, b),
                CallResult::Busy => (Status::Busy, Bytes::new()),
                CallResult::Panicked => (Status::InternalError, Bytes::new()),
            };
            self.respond(now, reply, status, body);
        }
        self.process_input(now);
        self.drained(now);
    }

    /// Closes a draining connection once its last call is answered.
    fn drained(&mut self, now: Instant) {
        if self.draining && self.in_flight.is_empty() {
            self.draining = false;
            self.shutdown(now);
        }
    }

    /// Time passed: fires whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Handshake { deadline } if now >= deadline => {
                self.close_with(
                    now,
                    CloseReason::HandshakeTimeout,
                    Some((CloseCode::HandshakeTimeout, "handshake timeout".into())),
                );
                return;
            }
            Phase::Closing { reason, deadline } if now >= deadline => {
                self.finish(reason);
                return;
            }
            Phase::Open => {}
            _ => return,
        }
        // Back-end calls past their deadline answer `timeout`.
        while let Some(pos) = self.in_flight.iter().position(|f| f.deadline <= now) {
            let expired = self.in_flight.remove(pos).expect("position is valid");
            release_if_empty(&mut self.in_flight);
            self.last_activity = self.last_activity.max(now);
            if let Some(reply) = expired.reply_to {
                self.respond(now, reply, Status::Timeout, Bytes::new());
            }
        }
        self.drained(now);
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        if self.in_flight.is_empty() && now >= self.last_activity + self.idle_timeout {
            self.close_with(
                now,
                CloseReason::IdleTimeout,
                Some((CloseCode::IdleTimeout, "idle timeout".into())),
            );
            return;
        }
        self.maybe_heartbeat(now);
        self.process_input(now);
    }

    // ----- gate commands -----

    /// Queues a push to the client.
    pub fn push(&mut self, topic: Topic, body: Bytes) -> Result<(), PushError> {
        if !matches!(self.phase, Phase::Open) {
            return Err(PushError::NotOpen);
        }
        #[cfg(feature = "fault-injection")]
        if self.fault_state.drops_push(&self.config.faults) {
            return Ok(());
        }
        let Connection {
            protocol, output, ..
        } = self;
        let before = output.len();
        protocol.encode_push(&topic, &body, output)?;
        self.queued(before);
        Ok(())
    }

    /// Closes the connection on purpose, telling the client why.
    pub fn kick(&mut self, now: Instant, reason: &str) {
        self.close_with(
            now,
            CloseReason::Kicked,
            Some((CloseCode::Kicked, reason.to_owned())),
        );
    }

    /// Closes the connection because the gate is shutting down, at once: calls in flight are
    /// abandoned. [`Connection::drain`] answers them first.
    pub fn shutdown(&mut self, now: Instant) {
        self.close_with(
            now,
            CloseReason::Shutdown,
            Some((CloseCode::Shutdown, "gate shutting down".into())),
        );
    }

    /// Closes the connection because the gate is shutting down, gracefully: at once if no
    /// back-end call is in flight; otherwise nothing more is read, the calls in flight are answered
    /// (or time out at their deadline), and then it closes as [`Connection::shutdown`] does.
    pub fn drain(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Open) && !self.in_flight.is_empty() {
            self.draining = true;
        } else {
            self.shutdown(now);
        }
    }

    /// Binds a user id to the session (mqant's `Bind`); starts storage heartbeats. The store is
    /// asked to bind it ([`StoreKind::Bind`]): the user's stored settings come back through
    /// [`Connection::restore_settings`]. Binding another user first unbinds the previous one.
    pub fn bind(&mut self, now: Instant, user_id: impl Into<String>) -> bool {
        let user_id = user_id.into();
        let previous = self.bound_session();
        let again = previous
            .as_ref()
            .is_some_and(|p| p.user_id.as_deref() == Some(user_id.as_str()));
        let bound = self.update_session(|s| s.user_id = Some(user_id));
        if bound && !again {
            if let Some(previous) = previous {
                self.store(StoreKind::Disconnect, previous);
            }
            self.store_current(StoreKind::Bind);
        }
        if bound {
            // A re-bind does not reset the interval: heartbeats stay at least `heartbeat` apart.
            self.active_since_heartbeat = true;
            self.maybe_heartbeat(now);
        }
        bound
    }

    /// Unbinds the user id (mqant's `UnBind`); stops storage heartbeats. The store keeps the
    /// user's settings for its grace period ([`StoreKind::Disconnect`]).
    pub fn unbind(&mut self) -> bool {
        let previous = self.bound_session();
        let unbound = self.update_session(|s| s.user_id = None);
        if let (true, Some(previous)) = (unbound, previous) {
            self.store(StoreKind::Disconnect, previous);
        }
        unbound
    }

    /// Logs the user out: unbinds it and has the store forget its stored session (mqant's
    /// `Delete`, [`StoreKind::Delete`]).
    pub fn logout(&mut self) -> bool {
        let previous = self.bound_session();
        let unbound = self.update_session(|s| s.user_id = None);
        if let (true, Some(previous)) = (unbound, previous) {
            self.store(StoreKind::Delete, previous);
        }
        unbound
    }

    /// Sets a session setting (mqant's `Set`), stored if the session is bound.
    pub fn set_setting(&mut self, key: impl Into<String>, value: impl Into<String>) -> bool {
        let (k, v) = (key.into(), value.into());
        let set = self.update_session(|s| {
            s.settings.insert(k, v);
        });
        self.store_current(StoreKind::Storage);
        set
    }

    /// Removes a session setting (mqant's `Remove`), stored if the session is bound.
    pub fn remove_setting(&mut self, key: &str) -> bool {
        let removed = self.update_session(|s| {
            s.settings.remove(key);
        });
        self.store_current(StoreKind::Storage);
        removed
    }

    /// Settings the store kept for `user_id` (a bind's [`Bound::restored`]): each key the
    /// session does not have is added (the session's own keys win, as in mqant's Bind). Ignored
    /// unless the session is open and still bound to `user_id`. Returns how many were added.
    ///
    /// [`Bound::restored`]: crate::store::Bound::restored
    pub fn restore_settings(
        &mut self,
        user_id: &str,
        restored: std::collections::BTreeMap<String, String>,
    ) -> usize {
        let bound_here = self
            .session
            .as_ref()
            .is_some_and(|s| s.user_id.as_deref() == Some(user_id));
        if !bound_here || restored.is_empty() {
            return 0;
        }
        let mut added = 0;
        self.update_session(|s| {
            for (k, v) in restored {
                if let std::collections::btree_map::Entry::Vacant(e) = s.settings.entry(k) {
                    e.insert(v);
                    added += 1;
                }
            }
        });
        added
    }

    /// Asks the store to write the bound session again ([`StoreKind::Storage`]): the store lost
    /// it (Redis restarted) and the gate rebuilds it from its live sessions. Nothing if unbound.
    pub fn store_again(&mut self) {
        self.store_current(StoreKind::Storage);
    }

    /// The session, if it is bound to a user id.
    fn bound_session(&self) -> Option<Arc<Session>> {
        self.session.clone().filter(|s| s.is_bound())
    }

    /// Asks for a store operation on the current session, if it is open and bound.
    fn store_current(&mut self, kind: StoreKind) {
        if matches!(self.phase, Phase::Open) {
            if let Some(s) = self.bound_session() {
                self.store(kind, s);
            }
        }
    }

    fn store(&mut self, kind: StoreKind, session: Arc<Session>) {
        self.actions
            .push_back(Action::Store(StoreOp { kind, session }));
    }

    // ----- outputs -----

    /// Bytes to write to the client, if any. Report them with [`Connection::handle_written`] once
    /// written.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.output).freeze();
        Some(out)
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        release_if_empty(&mut self.actions);
        action
    }

    /// When [`Connection::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Handshake { deadline } | Phase::Closing { deadline, .. } => Some(deadline),
            Phase::Closed => None,
            Phase::Open => {
                let mut t = self.in_flight.iter().map(|f| f.deadline).min();
                if self.in_flight.is_empty() {
                    t = min_opt(t, Some(self.last_activity + self.idle_timeout));
                }
                if let (Some(last), true) = (self.heartbeat_last, self.heartbeat_pending()) {
                    t = min_opt(t, Some(last + self.config.heartbeat));
                }
                t
            }
        }
    }

    /// Whether the driver should read from the client now. False while the back ends are busy
    /// with this connection's calls (back-pressure) and once closing.
    pub fn wants_read(&self) -> bool {
        match self.phase {
            Phase::Handshake { .. } | Phase::Open => {
                !self.peer_eof
                    && !self.draining
                    && self.authenticating.is_none()
                    && self.in_flight.len() < self.config.max_in_flight.max(1)
                    && self.input.len() <= self.protocol.max_packet_len()
            }
            _ => false,
        }
    }

    /// Whether the connection is over: nothing more to write, no more actions.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Closed) && self.actions.is_empty()
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. } | Phase::Closed)
    }

    /// Whether the handshake succeeded and the connection is open.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    /// The session, once the handshake succeeded.
    pub fn session(&self) -> Option<&Arc<Session>> {
        self.session.as_ref()
    }

    /// The counters, shareable with other tasks.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Bytes buffered now: undecoded input plus unwritten output.
    pub fn buffered_bytes(&self) -> usize {
        self.input.len() + self.queued_output()
    }

    /// Heap bytes reserved by the connection's own buffers and queues (capacity, not contents):
    /// undecoded input, unwritten output, packet bookkeeping, pending actions and calls in
    /// flight. Zero while the connection is idle, however much traffic came before.
    pub fn held_capacity(&self) -> usize {
        self.input.capacity()
            + self.output.capacity()
            + self.ends.capacity() * std::mem::size_of::<u64>()
            + self.actions.capacity() * std::mem::size_of::<Action>()
            + self.in_flight.capacity() * std::mem::size_of::<InFlight<P::Reply>>()
    }

    /// The most bytes ever buffered at once (input plus output), for memory invariants.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered
    }

    /// The bound on [`Connection::buffered_bytes`] this connection keeps, whatever the client does:
    /// the largest packet plus one read of `read_size` bytes of input; the write queue limit, the
    /// packet that crosses it and the closing packet, each with its bookkeeping, of output. For
    /// the native protocol it is [`AgentConfig::buffer_bound`].
    pub fn buffer_bound(&self, read_size: usize) -> usize {
        let packet = self.protocol.max_packet_len();
        let input = packet + read_size;
        let largest_packet = packet + PACKET_OVERHEAD;
        let close = self.protocol.max_close_len() + PACKET_OVERHEAD;
        input + self.config.max_write_queue + largest_packet + close
    }

    /// The options.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Back-end calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The idle timeout in force: the configured one until the handshake, then the one the
    /// protocol negotiated.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Why the connection is closing or closed, once it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason
    }

    /// When the connection started closing (stopped serving its session), if it has and the
    /// close went through a lingering close; `finish` without linger leaves it unset.
    pub fn closing_at(&self) -> Option<Instant> {
        self.closing_at
    }

    // ----- internals -----

    /// Output not yet written, in bytes, plus the bookkeeping charged per queued packet.
    fn queued_output(&self) -> usize {
        (self.queued_total - self.written_total) as usize + PACKET_OVERHEAD * self.ends.len()
    }

    /// Accounts for one packet appended to the output since it was `before` bytes long, and
    /// enforces the write queue's bound.
    fn queued(&mut self, before: usize) {
        self.queued_total += (self.output.len() - before) as u64;
        self.ends.push_back(self.queued_total);
        self.check_write_queue();
    }

    /// Accounts for the packets a protocol wrote on its own while decoding.
    fn queued_outbox(&mut self, before: usize, ends: &[usize]) {
        for &end in ends {
            self.ends
                .push_back(self.queued_total + (end - before) as u64);
        }
        self.queued_total += (self.output.len() - before) as u64;
        if !ends.is_empty() {
            self.check_write_queue();
        }
    }

    fn check_write_queue(&mut self) {
        self.note_buffered();
        #[cfg(feature = "fault-injection")]
        if self.config.faults.skip_slow_consumer_close {
            return;
        }
        if self.queued_output() > self.config.max_write_queue {
            // The client is not reading: no point queueing a close behind what it ignores.
            self.output = BytesMut::new();
            self.finish(CloseReason::SlowConsumer);
        }
    }

    fn note_buffered(&mut self) {
        let now = self.buffered_bytes();
        if now > self.max_buffered {
            self.max_buffered = now;
            self.counters.max_buffered.store(now, Ordering::Relaxed);
        }
    }

    fn heartbeat_pending(&self) -> bool {
        self.active_since_heartbeat && self.session.as_ref().is_some_and(|s| s.is_bound())
    }

    fn maybe_heartbeat(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Open) || !self.heartbeat_pending() {
            return;
        }
        let due = match self.heartbeat_last {
            None => true,
            Some(last) => now >= last + self.config.heartbeat,
        };
        if due {
            self.heartbeat_last = Some(now);
            self.active_since_heartbeat = false;
            #[cfg(feature = "fault-injection")]
            if self.fault_state.skips_heartbeat(&self.config.faults) {
                return;
            }
            let session = self.session.clone().expect("bound implies a session");
            self.actions.push_back(Action::StorageHeartbeat(session));
        }
    }

    fn update_session(&mut self, f: impl FnOnce(&mut Session)) -> bool {
        if !matches!(self.phase, Phase::Open) {
            return false;
        }
        match &mut self.session {
            Some(s) => {
                f(Arc::make_mut(s));
                true
            }
            None => false,
        }
    }

    /// Decodes and handles events while there is room for back-end calls.
    fn process_input(&mut self, now: Instant) {
        while matches!(self.phase, Phase::Handshake { .. } | Phase::Open)
            && !self.goodbye
            && !self.draining
            && self.authenticating.is_none()
            && self.in_flight.len() < self.config.max_in_flight.max(1)
        {
            let before = self.output.len();
            let Connection {
                protocol,
                input,
                output,
                ..
            } = self;
            let mut outbox = Outbox::new(output);
            let decoded = protocol.decode(input, &mut outbox);
            let ends = std::mem::take(&mut outbox.ends);
            self.queued_outbox(before, &ends);
            let event = match decoded {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(v) => {
                    self.violation(now, v);
                    break;
                }
            };
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            self.last_activity = now;
            self.active_since_heartbeat = true;
            self.handle_event(now, event);
        }
        if self.input.is_empty() {
            // Do not keep a read buffer allocated while idle. Capacity alone does not tell: a
            // buffer emptied by taking its last frame has none left, yet still holds the memory
            // the frame came from.
            self.input = BytesMut::new();
        }
        self.maybe_heartbeat(now);
        if self.peer_eof {
            match self.phase {
                // No session was made: nothing to answer, nobody to tell.
                Phase::Handshake { .. } => self.finish(CloseReason::Eof),
                // Everything read is answered: say goodbye back if the peer did, flush what is
                // queued, then end.
                Phase::Open if self.in_flight.is_empty() => {
                    if self.goodbye {
                        self.close_with(
                            now,
                            CloseReason::ClientClosed,
                            Some((CloseCode::Normal, "bye".into())),
                        )
                    } else {
                        self.close_with(now, CloseReason::Eof, None)
                    }
                }
                _ => {}
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: Event<P::Reply>) {
        match (self.phase, event) {
            (_, Event::Invalid(v)) => {
                self.close_with(now, CloseReason::ProtocolError, Some((v.code, v.reason)))
            }
            (
                Phase::Handshake { .. },
                Event::Hello(Hello {
                    refused: Some(v), ..
                }),
            ) => self.close_with(now, CloseReason::Refused, Some((v.code, v.reason))),
            (Phase::Handshake { .. }, Event::Hello(mut hello)) if self.authenticate => {
                self.actions
                    .push_back(Action::Authenticate(crate::auth::Credentials {
                        protocol: self.protocol.name(),
                        network: self.info.network.clone(),
                        peer: self.info.peer.clone(),
                        credentials: std::mem::take(&mut hello.credentials),
                    }));
                self.authenticating = Some(Box::new(hello));
            }
            (Phase::Handshake { .. }, Event::Hello(hello)) => self.open(now, &hello, None),
            (Phase::Handshake { .. }, other) => {
                let msg = format!(
                    "expected {}, got {}",
                    self.protocol.event_name(&Event::Hello(Hello::default())),
                    self.protocol.event_name(&other)
                );
                self.close_with(
                    now,
                    CloseReason::ProtocolError,
                    Some((CloseCode::ProtocolError, msg)),
                );
            }
            (Phase::Open, Event::Request { reply, route, body }) => {
                self.start_call(now, Some(reply), route, body);
            }
            (Phase::Open, Event::Notify { route, body }) => {
                self.start_call(now, None, route, body);
            }
            (Phase::Open, Event::Ping) => {
                let before = self.output.len();
                self.protocol.encode_pong(&mut self.output);
                self.queued(before);
            }
            (Phase::Open, Event::Activity) => {}
            (Phase::Open, Event::Goodbye) => {
                // The last packet the client sends: what it sent before is answered, whatever
                // follows is not read.
                self.goodbye = true;
                self.peer_eof = true;
                self.input = BytesMut::new();
            }
            (Phase::Open, hello @ Event::Hello(_)) => {
                let msg = format!(
                    "a second {} after the session opened",
                    self.protocol.event_name(&hello)
                );
                self.close_with(
                    now,
                    CloseReason::ProtocolError,
                    Some((CloseCode::ProtocolError, msg)),
                );
            }
            (Phase::Closing { .. } | Phase::Closed, _) => {}
        }
    }

    /// A valid (and, with an authenticator, accepted) hello: the session opens, bound to `user`
    /// if the authenticator named one (the learner's Connect already sees it).
    fn open(&mut self, now: Instant, hello: &Hello, user: Option<String>) {
        let negotiated = self.protocol.negotiate(hello, &self.config);
        // The connection's info is only needed for its session: moved, not copied.
        let mut session = Session::new(
            std::mem::take(&mut self.info.session_id),
            std::mem::take(&mut self.info.network),
            std::mem::take(&mut self.info.peer),
            self.config.server_id.clone(),
        );
        session.user_id = user;
        let session = Arc::new(session);
        self.phase = Phase::Open;
        self.last_activity = now;
        self.idle_timeout = negotiated.idle_timeout;
        self.session = Some(session.clone());
        self.connected = true;
        self.actions.push_back(Action::Connect(session.clone()));
        let welcome = Welcome {
            session_id: &session.session_id,
            heartbeat: negotiated.heartbeat,
            max_frame_length: self.config.max_frame_length,
        };
        let before = self.output.len();
        match self.protocol.encode_welcome(&welcome, &mut self.output) {
            Ok(()) => self.queued(before),
            Err(_) => self.close_with(now, CloseReason::Internal, None),
        }
    }

    fn start_call(
        &mut self,
        now: Instant,
        reply_to: Option<P::Reply>,
        route: gatekit_codec::Route,
        body: Bytes,
    ) {
        let id = CallId(self.next_call);
        self.next_call += 1;
        let expects_reply = reply_to.is_some();
        self.in_flight.push_back(InFlight {
            call: id,
            reply_to,
            deadline: now + self.config.backend_timeout,
        });
        let session = self.session.clone().expect("open implies a session");
        self.actions.push_back(Action::Call(Call {
            id,
            session,
            route,
            body,
            expects_reply,
        }));
    }

    fn respond(&mut self, now: Instant, reply: P::Reply, status: Status, body: Bytes) {
        if !matches!(self.phase, Phase::Open) {
            return;
        }
        #[cfg(feature = "fault-injection")]
        {
            let answers = self
                .fault_state
                .responses(&self.config.faults, (reply, status, body));
            for (reply, status, body) in answers {
                // An answer can close the connection (it fit no frame): none after that.
                if matches!(self.phase, Phase::Open) {
                    self.send_response(now, &reply, status, &body);
                }
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        self.send_response(now, &reply, status, &body);
    }

    /// Encodes a response; one over the frame limit becomes `internal error`.
    fn send_response(&mut self, now: Instant, reply: &P::Reply, status: Status, body: &Bytes) {
        let before = self.output.len();
        let encoded = self
            .protocol
            .encode_response(reply, status, body, &mut self.output);
        if encoded.is_err() {
            // The back end answered more than a frame holds: tell the client, do not drop the id.
            self.output.truncate(before);
            let too_large = Bytes::from_static(b"response too large");
            if self
                .protocol
                .encode_response(reply, Status::InternalError, &too_large, &mut self.output)
                .is_err()
            {
                // Not even that fits (a frame limit smaller than the protocol's error answer):
                // the answer cannot be given, so the connection ends, saying why, rather than
                // leave the client waiting for it.
                self.output.truncate(before);
                self.close_with(
                    now,
                    CloseReason::Internal,
                    Some((
                        CloseCode::InternalError,
                        "response too large for the frame limit".into(),
                    )),
                );
                return;
            }
        }
        self.queued(before);
    }

    fn violation(&mut self, now: Instant, v: Violation) {
        self.close_with(now, CloseReason::ProtocolError, Some((v.code, v.reason)));
    }

    /// Starts closing: optionally queue the protocol's closing packet, then finish once it is
    /// written (or the linger deadline passes).
    fn close_with(
        &mut self,
        now: Instant,
        reason: CloseReason,
        close: Option<(CloseCode, String)>,
    ) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed) {
            return;
        }
        self.counters.closed.store(true, Ordering::Release);
        self.reason.get_or_insert(reason);
        self.closing_at.get_or_insert(now);
        // Calls in flight are abandoned: late results are ignored.
        self.in_flight = VecDeque::new();
        self.input = BytesMut::new();
        if let Some((code, text)) = close {
            let before = self.output.len();
            if self.protocol.encode_close(code, &text, &mut self.output) {
                self.queued_total += (self.output.len() - before) as u64;
                self.ends.push_back(self.queued_total);
                self.note_buffered();
            }
        }
        self.phase = Phase::Closing {
            reason,
            deadline: now + self.config.close_linger,
        };
        if self.queued_output() == 0 {
            self.finish(reason);
        }
    }

    /// Ends the connection: nothing more is read or written; Disconnect if Connect was sent.
    fn finish(&mut self, reason: CloseReason) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.counters.closed.store(true, Ordering::Release);
        let reason = *self.reason.get_or_insert(reason);
        self.phase = Phase::Closed;
        self.in_flight = VecDeque::new();
        self.input = BytesMut::new();
        self.output = BytesMut::new();
        // Packets never written are not counted as sent.
        self.written_total = self.queued_total;
        self.ends = VecDeque::new();
        if self.connected && !self.disconnect_sent {
            self.disconnect_sent = true;
            let session = self.session.clone().expect("connected implies a session");
            #[cfg(feature = "fault-injection")]
            if self.config.faults.drops_disconnect_of(&session.session_id) {
                return;
            }
            self.actions.push_back(Action::Disconnect(session, reason));
        }
    }
}

/// Gives a drained queue's memory back: an idle connection holds no capacity.
fn release_if_empty<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() != 0 {
        *queue = VecDeque::new();
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

//! The gate: accepts connections, creates one agent per connection through a pluggable factory,
//! and operates on sessions by id (push, kick, broadcast, count), with graceful shutdown.

use crate::auth::Authenticator;
use crate::config::{AgentConfig, AgentConfigError};
use crate::connection::{ConnInfo, Connection, Counters};
use crate::driver;
use crate::groups::Groups;
use crate::handle::{AgentHandle, Command, Commands, HandleError};
use crate::protocol::Protocol;
use crate::registration::Registration;
use crate::remote_gates::RemoteGates;
use crate::services::{BoxFuture, Services};
use crate::session::{random_session_id, Session};
use crate::store::Location;
use crate::transport::{Transport, TransportError};
use bytes::{Bytes, BytesMut};
use gatekit_codec::{Close, CloseCode, NativeCodec, Packet, Text, Topic};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

/// Refusals (gate full or shutting down) that may run through a transport's handshake at once;
/// past that, connections to a full gate over a transport are closed without a refusal.
pub const MAX_TRANSPORT_REFUSALS: usize = 64;

/// A byte stream an agent can run on (TCP, TLS, in-memory pipe...).
pub trait AgentStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AgentStream for T {}

/// A boxed [`AgentStream`].
pub type BoxStream = Box<dyn AgentStream>;

/// What an agent gets for its connection.
pub struct AgentContext {
    /// The drop guard that registers the session and guarantees Disconnect.
    pub registration: Registration,
    /// Commands from the gate (push, kick, bind...).
    pub commands: Commands,
    /// The gate's options.
    pub config: Arc<AgentConfig>,
    /// Back ends, session store, learner.
    pub services: Services,
    /// Peer, transport and the session id to use.
    pub info: ConnInfo,
    /// Counters shared with the connection's [`AgentHandle`].
    pub counters: Arc<Counters>,
    /// When the connection was accepted: its handshake must be done by `accepted_at +
    /// handshake_timeout`, the transport's handshake (TLS, WebSocket upgrade) included.
    pub accepted_at: std::time::Instant,
}

/// Creates and runs the agent of each accepted connection: mqant's `SetCreateAgent`. Swap it to
/// change the protocol or the whole agent; the [`Registration`] in the context still guarantees
/// Disconnect.
pub trait AgentFactory: Send + Sync + 'static {
    /// Runs one connection to its end.
    fn run(&self, stream: BoxStream, ctx: AgentContext) -> BoxFuture<()>;

    /// The bytes that refuse a connection before any agent runs (the gate is full or shutting
    /// down), in this factory's protocol. By default the native CLOSE with `code`.
    fn refusal(&self, code: CloseCode) -> Bytes {
        let mut out = BytesMut::new();
        let close = Packet::Close(Close {
            code,
            reason: Text::from_static(code.name()),
        });
        let _ = NativeCodec::default().encode(&close, &mut out);
        out.freeze()
    }
}

/// The default agent: gatekit's native protocol on the sans-I/O [`Connection`].
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeAgent;

/// An agent for any [`Protocol`]: the connection core and its driver, with a protocol made per
/// connection by `make` from the gate's options. `ProtocolAgent::new(Native::new)` is
/// [`NativeAgent`]; a user's own protocol runs the same way, with every guarantee of the core.
pub struct ProtocolAgent<P> {
    make: Arc<dyn Fn(&AgentConfig) -> P + Send + Sync>,
}

impl<P: Protocol> ProtocolAgent<P> {
    /// An agent making its protocol with `make`.
    pub fn new(make: impl Fn(&AgentConfig) -> P + Send + Sync + 'static) -> Self {
        ProtocolAgent {
            make: Arc::new(make),
        }
    }
}

impl<P: Protocol> AgentFactory for ProtocolAgent<P> {
    fn refusal(&self, code: CloseCode) -> Bytes {
        let mut protocol = (self.make)(&AgentConfig::default());
        let mut out = BytesMut::new();
        protocol.encode_close(code, code.name(), &mut out);
        out.freeze()
    }

    fn run(&self, stream: BoxStream, ctx: AgentContext) -> BoxFuture<()> {
        let protocol = (self.make)(&ctx.config);
        let conn = Connection::with_protocol(
            protocol,
            ctx.config,
            ctx.info,
            ctx.accepted_at,
            ctx.counters,
        );
        Box::pin(driver::run(
            conn,
            stream,
            ctx.services,
            ctx.commands,
            ctx.registration,
        ))
    }
}

impl AgentFactory for NativeAgent {
    fn run(&self, stream: BoxStream, ctx: AgentContext) -> BoxFuture<()> {
        // The driver's future is boxed as it is (not inside another async block that would keep
        // its own copy of the context).
        let conn = Connection::with_counters(ctx.config, ctx.info, ctx.accepted_at, ctx.counters);
        Box::pin(driver::run(
            conn,
            stream,
            ctx.services,
            ctx.commands,
            ctx.registration,
        ))
    }
}

pub(crate) struct GateShared {
    pub(crate) config: Arc<AgentConfig>,
    pub(crate) services: Services,
    factory: Arc<dyn AgentFactory>,
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    remote_gates: Arc<dyn RemoteGates>,
    groups: Groups,
    max_connections: usize,
    sessions: Mutex<HashMap<String, AgentHandle>>,
    conns: Mutex<HashMap<u64, (AgentHandle, Option<AbortHandle>)>>,
    live: AtomicUsize,
    next_conn: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    out_of_files: AtomicU64,
    accepted: AtomicU64,
    transport_failed: AtomicU64,
    transport_timed_out: AtomicU64,
    /// Traffic of the connections that ended (live ones are summed from their handles).
    ended_traffic: [AtomicU64; 4],
    /// Refusals running through a transport's handshake now.
    transport_refusals: AtomicUsize,
    shutting_down: AtomicBool,
    store_errors: AtomicU64,
    store_log: Mutex<StoreLog>,
    /// Duplicate logins: older sessions kicked (here or on another gate), new ones refused.
    duplicates_kicked: AtomicU64,
    duplicates_refused: AtomicU64,
    stop_accepting: Notify,
    idle: Notify,
}

impl GateShared {
    pub(crate) fn register(&self, session: &Session, handle: &AgentHandle) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(session.session_id.clone(), handle.clone());
    }

    pub(crate) fn unregister(&self, session_id: &str) {
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            sessions.remove(session_id);
            shrink_if_sparse(&mut sessions);
        }
        self.groups.forget(session_id);
    }

    /// Closes the user's older session at `at` (a duplicate login, policy `kick`): here if it
    /// is on this gate, else through the remote gates. Failures are logged.
    pub(crate) fn kick_elsewhere(&self, at: Location) {
        self.duplicates_kicked.fetch_add(1, Ordering::Relaxed);
        let reason = crate::store::LOGGED_IN_ELSEWHERE;
        if at.gate == self.config.server_id {
            let handle = self
                .sessions
                .lock()
                .expect("sessions lock")
                .get(&at.session_id)
                .cloned();
            match handle {
                Some(h) => {
                    if h.command(Command::Kick(reason.to_owned())).is_err() {
                        tracing::debug!(session = %at.session_id, "duplicate login: the older session was already closing");
                    }
                }
                None => {
                    tracing::debug!(session = %at.session_id, "duplicate login: the older session has already ended")
                }
            }
            return;
        }
        let kick = self.remote_gates.kick(&at, reason);
        tokio::spawn(async move {
            if let Err(why) = kick.await {
                tracing::warn!(gate = %at.gate, session = %at.session_id, "duplicate login: the older session was not kicked: {why}");
            }
        });
    }

    pub(crate) fn connection_ended(&self, conn_id: u64) {
        {
            let mut conns = self.conns.lock().expect("conns lock");
            if let Some((handle, _)) = conns.remove(&conn_id) {
                let t = Traffic::of(&handle);
                for (total, n) in self.ended_traffic.iter().zip(t.as_array()) {
                    total.fetch_add(n, Ordering::Relaxed);
                }
            }
            shrink_if_sparse(&mut conns);
        }
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn store_result<T>(
        &self,
        kind: crate::store::StoreKind,
        result: &Result<T, crate::store::StoreError>,
    ) {
        match result {
            Err(error) => {
                let total = self.store_errors.fetch_add(1, Ordering::Relaxed) + 1;
                let mut log = self.store_log.lock().expect("store log lock");
                log.failing = true;
                let now = driver::now();
                if log.warned_at.is_none_or(|t| now >= t + STORE_WARN_EVERY) {
                    log.warned_at = Some(now);
                    tracing::warn!(op = %kind, %error, errors = total, "session store operation failed (the connection goes on; failures are counted, and logged at warn at most every {STORE_WARN_EVERY:?})");
                } else {
                    tracing::debug!(op = %kind, %error, "session store operation failed");
                }
            }
            Ok(_) => {
                let mut log = self.store_log.lock().expect("store log lock");
                if std::mem::replace(&mut log.failing, false) {
                    tracing::debug!(op = %kind, "session store answering again");
                    if log
                        .warned_at
                        .is_some_and(|t| driver::now() >= t + STORE_WARN_EVERY)
                    {
                        tracing::info!(op = %kind, errors = self.store_errors.load(Ordering::Relaxed), "session store answering again");
                        log.warned_at = None;
                    }
                }
            }
        }
    }

    /// A new session was refused: its user is online elsewhere (`duplicate_login = refuse`).
    pub(crate) fn duplicate_refused(&self) {
        self.duplicates_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// The most often a failing store is logged at `warn` (a busy store that fails one operation in
/// ten would otherwise log thousands of lines a second).
const STORE_WARN_EVERY: Duration = Duration::from_secs(10);

/// When the store's failures were last logged at `warn`, and whether the last operation failed.
#[derive(Debug, Default)]
struct StoreLog {
    warned_at: Option<std::time::Instant>,
    failing: bool,
}

/// Gives back most of a map's table once it is mostly empty (after a storm of connections), so
/// the gate does not keep its peak's memory. Shrinking to twice the length leaves room to grow
/// again before the next reallocation.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const MIN_CAPACITY: usize = 1024;
    if map.capacity() > MIN_CAPACITY && map.len() * 4 < map.capacity() {
        map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    }
}

/// Packets and bytes through a gate's connections ([`Gate::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets received from clients.
    pub packets_in: u64,
    /// Packets written to clients.
    pub packets_out: u64,
    /// Bytes received from clients (the protocols' streams).
    pub bytes_in: u64,
    /// Bytes written to clients (the protocols' streams).
    pub bytes_out: u64,
}

impl Traffic {
    fn of(handle: &AgentHandle) -> Traffic {
        Traffic {
            packets_in: handle.received(),
            packets_out: handle.sent(),
            bytes_in: handle.bytes_in(),
            bytes_out: handle.bytes_out(),
        }
    }

    fn as_array(self) -> [u64; 4] {
        [
            self.packets_in,
            self.packets_out,
            self.bytes_in,
            self.bytes_out,
        ]
    }
}

/// Builds a [`Gate`].
pub struct GateBuilder {
    config: AgentConfig,
    services: Services,
    factory: Arc<dyn AgentFactory>,
    max_connections: usize,
    authenticator: Option<Arc<dyn Authenticator>>,
    remote_gates: Arc<dyn RemoteGates>,
}

impl GateBuilder {
    /// Agent options.
    pub fn config(mut self, config: AgentConfig) -> Self {
        self.config = config;
        self
    }

    /// Back ends, store and learner.
    pub fn services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }

    /// The agent factory (default [`NativeAgent`]).
    pub fn factory(mut self, factory: impl AgentFactory) -> Self {
        self.factory = Arc::new(factory);
        self
    }

    /// Checks every client's credentials before its session opens ([`crate::auth`]). Default:
    /// none (every well-formed handshake is welcome).
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// How this gate reaches the other gates of its cluster (to kick a user's older session on
    /// another gate at a duplicate login). Default: [`NoRemoteGates`](crate::NoRemoteGates).
    pub fn remote_gates(mut self, remote: Arc<dyn RemoteGates>) -> Self {
        self.remote_gates = remote;
        self
    }

    /// Connections held at most; more are refused with CLOSE `server full` before any agent is
    /// created. Default 100,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The gate.
    ///
    /// # Panics
    ///
    /// If the options are invalid ([`AgentConfig::validate`]); [`GateBuilder::try_build`] returns
    /// the error instead.
    pub fn build(self) -> Gate {
        match self.try_build() {
            Ok(gate) => gate,
            Err(e) => panic!("invalid gate options: {e}"),
        }
    }

    /// The gate, or what is wrong with its options.
    pub fn try_build(self) -> Result<Gate, AgentConfigError> {
        self.config.validate()?;
        Ok(Gate {
            shared: Arc::new(GateShared {
                config: Arc::new(self.config),
                services: self.services,
                factory: self.factory,
                authenticator: self.authenticator,
                remote_gates: self.remote_gates,
                groups: Groups::default(),
                max_connections: self.max_connections,
                sessions: Mutex::default(),
                conns: Mutex::default(),
                live: AtomicUsize::new(0),
                next_conn: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                accept_errors: AtomicU64::new(0),
                out_of_files: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                transport_failed: AtomicU64::new(0),
                transport_timed_out: AtomicU64::new(0),
                ended_traffic: Default::default(),
                transport_refusals: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                store_errors: AtomicU64::new(0),
                store_log: Mutex::default(),
                duplicates_kicked: AtomicU64::new(0),
                duplicates_refused: AtomicU64::new(0),
                stop_accepting: Notify::new(),
                idle: Notify::new(),
            }),
        })
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when the shutdown began.
    pub connections: usize,
    /// Of those, the ones that had not finished by the deadline and were aborted (their Disconnect
    /// still happened, with reason `shutdown`).
    pub aborted: usize,
}

/// The gate. Cheap to clone; all clones are the same gate.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<GateShared>,
}

impl Gate {
    /// A builder with default options, no back ends, no store, no learner.
    pub fn builder() -> GateBuilder {
        GateBuilder {
            config: AgentConfig::default(),
            services: Services::default(),
            factory: Arc::new(NativeAgent),
            max_connections: 100_000,
            authenticator: None,
            remote_gates: Arc::new(crate::remote_gates::NoRemoteGates),
        }
    }

    /// The options.
    pub fn config(&self) -> &AgentConfig {
        &self.shared.config
    }

    /// Listens on `addr` (for example `127.0.0.1:0`) and accepts in the background until
    /// [`Gate::shutdown`]. Returns the bound address and the accept task.
    pub async fn listen(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> io::Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((local, self.serve(listener)))
    }

    /// Accepts connections from `listener` in the background until [`Gate::shutdown`], each run by
    /// the gate's factory.
    pub fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let factory = self.shared.factory.clone();
        self.serve_with(listener, factory)
    }

    /// Like [`Gate::serve`], with connections run by `factory` (another protocol on another
    /// port: the same back ends, learner, store and session registry serve them all).
    pub fn serve_with(
        &self,
        listener: TcpListener,
        factory: Arc<dyn AgentFactory>,
    ) -> JoinHandle<()> {
        self.accept_loop(listener, None, factory)
    }

    /// Like [`Gate::serve_with`], with each connection first going through `transport` (TLS,
    /// WebSocket, ...: see [`crate::transport`]) within its handshake deadline.
    pub fn serve_over(
        &self,
        listener: TcpListener,
        transport: Arc<dyn Transport>,
        factory: Arc<dyn AgentFactory>,
    ) -> JoinHandle<()> {
        self.accept_loop(listener, Some(transport), factory)
    }

    fn accept_loop(
        &self,
        listener: TcpListener,
        transport: Option<Arc<dyn Transport>>,
        factory: Arc<dyn AgentFactory>,
    ) -> JoinHandle<()> {
        let gate = self.clone();
        tokio::spawn(async move {
            // Whether the last accept failed.
            let mut failing = false;
            loop {
                let stopped = gate.shared.stop_accepting.notified();
                if gate.shared.is_shutting_down() {
                    break;
                }
                tokio::select! {
                    _ = stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            failing = false;
                            let _ = stream.set_nodelay(true);
                            match &transport {
                                None => gate.accept_with(Box::new(stream), "tcp", peer.to_string(), &factory),
                                Some(t) => gate.accept_over(Box::new(stream), t, peer.to_string(), &factory),
                            }
                        }
                        Err(e) => {
                            // EMFILE / ENFILE: the process hit its open-file limit. Count it, say
                            // so through tracing, and back off instead of spinning.
                            let out_of_files = matches!(e.raw_os_error(), Some(23) | Some(24));
                            // Said once per run of failures (they repeat 20 times a second).
                            if out_of_files {
                                gate.shared.out_of_files.fetch_add(1, Ordering::Relaxed);
                                if !failing {
                                    tracing::warn!(error = %e, connections = gate.connection_count(), "accept failed: open-file limit reached; new connections wait in the listen queue");
                                }
                            } else if !failing {
                                tracing::warn!(error = %e, "accept failed");
                            }
                            failing = true;
                            gate.shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        })
    }

    /// Runs an agent on an already-accepted stream (any transport). Refuses it with CLOSE
    /// `server full` (or `shutdown`) when the gate is at its limit (or shutting down).
    pub fn accept(&self, stream: BoxStream, network: &str, peer: String) {
        let factory = self.shared.factory.clone();
        self.accept_with(stream, network, peer, &factory);
    }

    /// Like [`Gate::accept`], with the connection run by `factory`.
    pub fn accept_with(
        &self,
        stream: BoxStream,
        network: &str,
        peer: String,
        factory: &Arc<dyn AgentFactory>,
    ) {
        let Some(ctx) = self.admit(network, peer) else {
            let code = self.refusal_code();
            tokio::spawn(refuse(stream, factory.refusal(code)));
            return;
        };
        let conn_id = ctx.registration.conn_id();
        let task = tokio::spawn(factory.run(stream, ctx));
        self.set_abort(conn_id, task.abort_handle());
    }

    /// Like [`Gate::accept_with`], with the stream first going through `transport`, whose
    /// handshake must end by the connection's handshake deadline (`handshake_timeout` after
    /// now); the protocol's handshake then has what is left of it. A connection that fails the
    /// transport's handshake never reaches the agent: it is counted
    /// ([`Gate::transport_failures`]) and logged at debug level. A connection refused because
    /// the gate is full still goes through the transport, so the client reads the refusal in its
    /// own protocol.
    pub fn accept_over(
        &self,
        stream: BoxStream,
        transport: &Arc<dyn Transport>,
        peer: String,
        factory: &Arc<dyn AgentFactory>,
    ) {
        let accepted_at = driver::now();
        let deadline =
            tokio::time::Instant::from_std(accepted_at + self.shared.config.handshake_timeout);
        let upgrade = transport.accept(stream);
        let shared = self.shared.clone();
        let failed = move |e: Option<TransportError>| match e {
            Some(e) => {
                shared.transport_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "transport handshake failed");
            }
            None => {
                shared.transport_timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("transport handshake timed out");
            }
        };
        let Some(mut ctx) = self.admit(transport.name(), peer) else {
            // A refusal through a transport costs a handshake (a TLS one costs CPU): at most
            // MAX_TRANSPORT_REFUSALS run at once, so a flood on a full gate cannot grow without
            // bound; past that a connection is closed without a word.
            let refusing = &self.shared.transport_refusals;
            if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_TRANSPORT_REFUSALS {
                refusing.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            let refusal = factory.refusal(self.refusal_code());
            let shared = self.shared.clone();
            tokio::spawn(async move {
                match tokio::time::timeout_at(deadline, upgrade).await {
                    Ok(Ok(stream)) => refuse(stream, refusal).await,
                    Ok(Err(e)) => failed(Some(e)),
                    Err(_) => failed(None),
                }
                shared.transport_refusals.fetch_sub(1, Ordering::AcqRel);
            });
            return;
        };
        ctx.accepted_at = accepted_at;
        let conn_id = ctx.registration.conn_id();
        let factory = factory.clone();
        let task = tokio::spawn(async move {
            match tokio::time::timeout_at(deadline, upgrade).await {
                Ok(Ok(stream)) => factory.run(stream, ctx).await,
                Ok(Err(e)) => failed(Some(e)),
                Err(_) => failed(None),
            }
        });
        self.set_abort(conn_id, task.abort_handle());
    }

    /// Why a connection is refused now: the gate is shutting down or full.
    fn refusal_code(&self) -> CloseCode {
        if self.shared.is_shutting_down() {
            CloseCode::Shutdown
        } else {
            CloseCode::ServerFull
        }
    }

    /// Takes a place for a new connection and makes its context, or refuses it (`None`, counted)
    /// when the gate is full or shutting down.
    fn admit(&self, network: &str, peer: String) -> Option<AgentContext> {
        let shared = &self.shared;
        // Take a place first, then check: concurrent callers can never exceed the limit.
        let before = shared.live.fetch_add(1, Ordering::AcqRel);
        if shared.is_shutting_down() || before >= shared.max_connections {
            if shared.live.fetch_sub(1, Ordering::AcqRel) == 1 {
                shared.idle.notify_waiters();
            }
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(Counters::default());
        let (handle, commands) = AgentHandle::new(counters.clone(), shared.config.max_frame_length);
        shared
            .conns
            .lock()
            .expect("conns lock")
            .insert(conn_id, (handle.clone(), None));
        Some(AgentContext {
            registration: Registration::new(shared.clone(), conn_id, handle),
            commands,
            config: shared.config.clone(),
            services: shared.services.clone(),
            info: ConnInfo {
                session_id: random_session_id(),
                network: network.to_owned(),
                peer,
            },
            counters,
            accepted_at: driver::now(),
        })
    }

    fn set_abort(&self, conn_id: u64, abort: AbortHandle) {
        if let Some(entry) = self
            .shared
            .conns
            .lock()
            .expect("conns lock")
            .get_mut(&conn_id)
        {
            entry.1 = Some(abort);
        }
    }

    /// The handle of a session's connection.
    pub fn agent(&self, session_id: &str) -> Option<AgentHandle> {
        self.shared
            .sessions
            .lock()
            .expect("sessions lock")
            .get(session_id)
            .cloned()
    }

    fn with_agent(&self, session_id: &str, cmd: Command) -> Result<(), HandleError> {
        self.agent(session_id)
            .ok_or(HandleError::NoSuchSession)?
            .command(cmd)
    }

    /// Pushes a message to one session.
    pub fn push(
        &self,
        session_id: &str,
        topic: Topic,
        body: impl Into<Bytes>,
    ) -> Result<(), HandleError> {
        self.agent(session_id)
            .ok_or(HandleError::NoSuchSession)?
            .push(topic, body)
    }

    /// Closes one session's connection with `kicked`.
    pub fn kick(&self, session_id: &str, reason: impl Into<String>) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Kick(reason.into()))
    }

    /// Binds a user id to a session (mqant's `GateHandler.Bind`).
    pub fn bind_user(
        &self,
        session_id: &str,
        user_id: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Bind(user_id.into()))
    }

    /// Unbinds a session's user id.
    pub fn unbind_user(&self, session_id: &str) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Unbind)
    }

    /// Logs a session's user out: unbinds it and has the store forget its stored session.
    pub fn logout(&self, session_id: &str) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Logout)
    }

    /// Removes a session setting.
    pub fn remove(&self, session_id: &str, key: impl Into<String>) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Remove(key.into()))
    }

    /// Sets a session setting.
    pub fn set(
        &self,
        session_id: &str,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), HandleError> {
        self.with_agent(session_id, Command::Set(key.into(), value.into()))
    }

    /// Adds a session to a group of this gate (pomelo's channel); `Ok(false)` if it was a member.
    /// It leaves every group when it ends.
    pub fn join(&self, session_id: &str, group: &str) -> Result<bool, HandleError> {
        // Under the sessions lock: a session that ends now is forgotten after this.
        let sessions = self.shared.sessions.lock().expect("sessions lock");
        if !sessions.contains_key(session_id) {
            return Err(HandleError::NoSuchSession);
        }
        Ok(self.shared.groups.join(session_id, group))
    }

    /// Removes a session from a group; false if it was not a member.
    pub fn leave(&self, session_id: &str, group: &str) -> bool {
        self.shared.groups.leave(session_id, group)
    }

    /// The sessions of a group on this gate.
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.shared.groups.members(group)
    }

    /// Every session's handle, copied out of the registry (so no lock is held while they are
    /// commanded).
    fn handles(&self) -> Vec<AgentHandle> {
        self.shared
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .cloned()
            .collect()
    }

    /// Has every session bound to a user stored again (the store lost them: Redis restarted);
    /// returns how many sessions were asked.
    pub fn store_sessions_again(&self) -> usize {
        self.handles()
            .iter()
            .filter(|h| h.session().is_some_and(|s| s.is_bound()))
            .filter(|h| h.command(Command::StoreAgain).is_ok())
            .count()
    }

    /// Duplicate logins so far: (older sessions kicked, new sessions refused), by the policy
    /// [`AgentConfig::duplicate_login`].
    pub fn duplicate_logins(&self) -> (u64, u64) {
        (
            self.shared.duplicates_kicked.load(Ordering::Relaxed),
            self.shared.duplicates_refused.load(Ordering::Relaxed),
        )
    }

    /// How many groups have members on this gate.
    pub fn group_count(&self) -> usize {
        self.shared.groups.count()
    }

    /// Pushes a message to every member of a group on this gate; returns how many accepted it.
    pub fn send_to_group(&self, group: &str, topic: Topic, body: impl Into<Bytes>) -> usize {
        let body = body.into();
        self.shared
            .groups
            .members(group)
            .iter()
            .filter(|sid| self.push(sid, topic.clone(), body.clone()).is_ok())
            .count()
    }

    /// Pushes a message to every session; returns how many accepted it.
    pub fn broadcast(&self, topic: Topic, body: impl Into<Bytes>) -> usize {
        let body = body.into();
        self.handles()
            .iter()
            .filter(|h| h.push(topic.clone(), body.clone()).is_ok())
            .count()
    }

    /// Pushes a message to every session, telling `each` the session id and whether its
    /// connection accepted the push (queued it in order after everything queued before) or why
    /// not; returns how many accepted it. A session that connects during the call may or may not
    /// be included; one that is included is told.
    pub fn broadcast_each(
        &self,
        topic: Topic,
        body: impl Into<Bytes>,
        mut each: impl FnMut(&str, Result<(), HandleError>),
    ) -> usize {
        let body = body.into();
        let sessions: Vec<(String, AgentHandle)> = self
            .shared
            .sessions
            .lock()
            .expect("sessions lock")
            .iter()
            .map(|(id, h)| (id.clone(), h.clone()))
            .collect();
        let mut accepted = 0;
        for (id, h) in &sessions {
            let result = h.push(topic.clone(), body.clone());
            accepted += usize::from(result.is_ok());
            each(id, result);
        }
        accepted
    }

    /// Session store operations that failed or timed out since start (each also logged).
    pub fn store_errors(&self) -> u64 {
        self.shared.store_errors.load(Ordering::Relaxed)
    }

    /// Sessions connected (handshake done, not yet disconnected): mqant's `GetAgentNum`.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.lock().expect("sessions lock").len()
    }

    /// Connections held, handshaking ones included.
    pub fn connection_count(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }

    /// Connections accepted and refused so far.
    pub fn accepted_refused(&self) -> (u64, u64) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
        )
    }

    /// Failed `accept` calls of [`Gate::serve`] so far, and how many of them were the process
    /// (EMFILE) or the system (ENFILE) out of file descriptors. The accept loop backs off 50 ms after
    /// each, so while the limit holds this grows by about 20 a second.
    pub fn accept_errors(&self) -> (u64, u64) {
        (
            self.shared.accept_errors.load(Ordering::Relaxed),
            self.shared.out_of_files.load(Ordering::Relaxed),
        )
    }

    /// Connections whose transport handshake (TLS, WebSocket upgrade) failed, and those whose
    /// handshake did not end by the handshake deadline, so far.
    pub fn transport_failures(&self) -> (u64, u64) {
        (
            self.shared.transport_failed.load(Ordering::Relaxed),
            self.shared.transport_timed_out.load(Ordering::Relaxed),
        )
    }

    /// Packets and bytes in and out of every connection since the gate started, the live ones
    /// included (bytes of the protocols' streams, above the transports). Costs one pass over the
    /// connections: for metrics scrapes, not per packet.
    pub fn traffic(&self) -> Traffic {
        let mut total = [0u64; 4];
        for (t, ended) in total.iter_mut().zip(&self.shared.ended_traffic) {
            *t = ended.load(Ordering::Relaxed);
        }
        // Ended connections are added to the totals while the lock is held, so none is counted
        // twice or missed.
        let conns = self.shared.conns.lock().expect("conns lock");
        for (handle, _) in conns.values() {
            for (t, n) in total.iter_mut().zip(Traffic::of(handle).as_array()) {
                *t += n;
            }
        }
        drop(conns);
        Traffic {
            packets_in: total[0],
            packets_out: total[1],
            bytes_in: total[2],
            bytes_out: total[3],
        }
    }

    /// Graceful shutdown: stop accepting; every connection stops reading, answers its calls in
    /// flight (or times them out), then sends CLOSE `shutdown`; writes drain until `deadline`,
    /// then what is left is aborted. Every connected session gets its Disconnect.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let shared = &self.shared;
        shared.shutting_down.store(true, Ordering::Release);
        shared.stop_accepting.notify_waiters();
        let handles: Vec<AgentHandle> = shared
            .conns
            .lock()
            .expect("conns lock")
            .values()
            .map(|(h, _)| h.clone())
            .collect();
        let connections = handles.len();
        for h in &handles {
            // A full command queue must not cost this client its CLOSE: the shutdown takes the
            // next place, as if it had waited for room.
            let _ = h.command_shutdown();
        }
        let end = tokio::time::Instant::now() + deadline;
        self.wait_idle(end).await;
        let left: Vec<AbortHandle> = shared
            .conns
            .lock()
            .expect("conns lock")
            .values()
            .filter_map(|(_, a)| a.clone())
            .collect();
        for a in &left {
            a.abort();
        }
        self.wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        ShutdownReport {
            connections,
            aborted: left.len(),
        }
    }

    async fn wait_idle(&self, until: tokio::time::Instant) {
        loop {
            let idle = self.shared.idle.notified();
            if self.shared.live.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                return;
            }
        }
    }
}

/// Writes a refusal and drops the stream.
async fn refuse(mut stream: BoxStream, refusal: Bytes) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if !refusal.is_empty() {
            let _ = stream.write_all(&refusal).await;
        }
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sparse_maps_give_their_table_back() {
        let mut map: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
        let peak = map.capacity();
        for i in 0..99_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert_eq!(map.len(), 1_000);
        assert!(map.capacity() < peak / 16, "{} of {peak}", map.capacity());
        assert!(map.capacity() >= 1_000);
        // Small maps are left alone.
        let mut small: HashMap<u64, u64> = (0..500).map(|i| (i, i)).collect();
        small.retain(|&k, _| k < 10);
        let cap = small.capacity();
        shrink_if_sparse(&mut small);
        assert_eq!(small.capacity(), cap);
    }

    #[test]
    fn try_build_refuses_an_invalid_frame_limit_and_build_accepts_the_default() {
        let bad = AgentConfig {
            max_frame_length: gatekit_codec::MAX_FRAME_LENGTH_CAP + 1,
            ..AgentConfig::default()
        };
        assert_eq!(
            Gate::builder().config(bad).try_build().err(),
            Some(AgentConfigError::MaxFrameLength {
                value: gatekit_codec::MAX_FRAME_LENGTH_CAP + 1,
                cap: gatekit_codec::MAX_FRAME_LENGTH_CAP,
            })
        );
        let gate = Gate::builder().build();
        assert_eq!(gate.config(), &AgentConfig::default());
    }

    #[test]
    #[should_panic(expected = "invalid gate options: max_frame_length 0 is out of range")]
    fn build_panics_naming_the_invalid_option() {
        let _ = Gate::builder()
            .config(AgentConfig {
                max_frame_length: 0,
                ..AgentConfig::default()
            })
            .build();
    }
}

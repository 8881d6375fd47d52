//! What a run produced, in either mode, before it is checked and reported.

use crate::client::{Behavior, ClientStats};
use crate::recorder::Recorder;
use crate::scenario::{Mode, Scenario};
use gatekit_agent::CloseReason;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// One connection, as seen by its client and (where known) by its agent.
#[derive(Debug, Clone)]
pub struct ConnRecord {
    /// Client index.
    pub index: u64,
    /// Client behaviour.
    pub behavior: Behavior,
    /// What the client counted.
    pub stats: ClientStats,
    /// The session id the agent created (sim), if any.
    pub session_id: Option<String>,
    /// The session id the client was told in WELCOME.
    pub client_session_id: Option<String>,
    /// The agent's received counter.
    pub agent_received: Option<u64>,
    /// The agent's sent counter.
    pub agent_sent: Option<u64>,
    /// The most bytes the agent buffered for this connection.
    pub max_buffered: Option<usize>,
    /// The bound the agent promises for it.
    pub buffer_bound: Option<usize>,
    /// Why the agent closed it.
    pub close_reason: Option<CloseReason>,
    /// When the client sent packets (heartbeat scenarios only).
    pub activity: Vec<Instant>,
    /// When the harness bound a user id.
    pub bound_at: Option<Instant>,
    /// When the agent started closing (sim), if it lingered before its Disconnect.
    pub closing_at: Option<Instant>,
    /// When the connection ended for the client (it closed, dropped or saw the gate close).
    pub client_ended_at: Option<Instant>,
    /// Whether the client read everything the gate sent (a slow consumer does not).
    pub reads_everything: bool,
    /// Whether the client ended gracefully (its goodbye, or its side closed after every answer).
    pub graceful: bool,
    /// The pushes the gate accepted for this session, by number, with when (`None`: not known,
    /// an external gate).
    pub pushes_accepted: Option<Vec<(u64, Instant)>>,
}

/// Where the gate's side of a run (learner, store, per-connection counters) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateSide {
    /// Recorded in this process: the simulation, or the built-in gate of `tcp` mode.
    Recorded,
    /// Read from an external gate's control endpoint (`gatekit serve --control`).
    Control(std::net::SocketAddr),
    /// Not visible: an external gate without a control endpoint. The invariants that need it are
    /// not checked, with this reason.
    Invisible(String),
}

/// Everything a run produced.
pub struct RunData {
    /// Sim or TCP.
    pub mode: Mode,
    /// The transport under the protocol in TCP mode when it is not plain TCP (`tls`, `ws`, `wss`).
    pub transport: Option<&'static str>,
    /// The scenario run.
    pub scenario: Scenario,
    /// Start of the run (virtual in sim).
    pub started: Instant,
    /// End of the send phase.
    pub send_end: Instant,
    /// When the last connection ended.
    pub finished: Instant,
    /// Real time taken.
    pub wall: Duration,
    /// Every connection.
    pub conns: Vec<ConnRecord>,
    /// Learner and session-store events.
    pub recorder: Recorder,
    /// Request → response latencies, µs.
    pub latency_us: Histogram<u64>,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Connections the gate refused.
    pub refused: u64,
    /// Sessions still registered at the end.
    pub sessions_left: usize,
    /// Events processed (sim).
    pub events: u64,
    /// Slack allowed on timing checks (0 in sim; scheduling jitter over real sockets).
    pub timing_tolerance: Duration,
    /// Slack allowed on answer deadlines and push delivery (see `answer_deadline`).
    pub answer_slack: Duration,
    /// Where the gate's side comes from.
    pub gate_side: GateSide,
    /// Bytes of pushes a client that stops reading may be sent before the gate must close it as a
    /// slow consumer: what the sockets hold plus the write queue bound (`None`: not known).
    pub slow_consumer_threshold: Option<u64>,
    /// Bytes of one push frame of this run.
    pub push_frame_len: u64,
    /// Read size the agent used (for its buffer bound).
    pub read_size: usize,
}

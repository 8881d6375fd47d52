//! Agent and gate options, with mqant's defaults where mqant has one.

use gatekit_codec::{DEFAULT_MAX_FRAME_LENGTH, MAX_FRAME_LENGTH_CAP};
use std::time::Duration;

/// What is wrong with an [`AgentConfig`] ([`AgentConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentConfigError {
    /// `max_frame_length` is 0 or above what any gatekit decoder accepts.
    #[error("max_frame_length {value} is out of range: it must be 1 to {cap} bytes")]
    MaxFrameLength {
        /// The configured value.
        value: usize,
        /// The largest allowed ([`MAX_FRAME_LENGTH_CAP`], 16 MiB).
        cap: usize,
    },
}

/// Options for every connection of a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Time allowed from accept to a complete handshake (mqant's `OverTime`). Default 10 s.
    pub handshake_timeout: Duration,
    /// Interval offered to clients for pings (a client may ask for less). Default 30 s.
    pub ping_interval: Duration,
    /// A connection with no packet received for this long is closed. Default 90 s. Each protocol
    /// may close sooner from the heartbeat it agreed with the client (native: three heartbeats).
    pub idle_timeout: Duration,
    /// Storage heartbeat interval for sessions bound to a user id (mqant's `Heartbeat`). Default 60 s.
    pub heartbeat: Duration,
    /// Back-end call timeout (mqant's `RPCExpired`). Default 10 s.
    pub backend_timeout: Duration,
    /// Time a session store operation may take before it counts as failed (the connection goes on
    /// either way). Default 2 s.
    pub store_timeout: Duration,
    /// Back-end calls in flight per connection. 1 (the default) keeps a connection's messages in
    /// order; more lets responses come back out of order, matched by id.
    pub max_in_flight: usize,
    /// Bytes queued for a client that has not read them before it is closed as a slow consumer.
    /// Default 256 KiB.
    pub max_write_queue: usize,
    /// Largest frame accepted and sent (mqant's `MaxPackSize`). Default 65,535.
    pub max_frame_length: usize,
    /// Time given to a closing connection to flush its CLOSE packet. Default 2 s.
    pub close_linger: Duration,
    /// The gate's server id, put in every session.
    pub server_id: String,
    /// What a bind does when its user is online on another session (on this gate or another,
    /// as the session store knows it). Default: kick the older session.
    pub duplicate_login: crate::store::DuplicateLogin,
    /// Deliberate defects (feature `fault-injection`, for tests only). None by default.
    #[cfg(feature = "fault-injection")]
    pub faults: crate::faults::Faults,
}

impl AgentConfig {
    /// Checks the options every part of the gate must agree on. An invalid `max_frame_length`
    /// would otherwise be replaced by the codec's default on input while the WELCOME, the push
    /// checks and the buffer bound used the configured value.
    pub fn validate(&self) -> Result<(), AgentConfigError> {
        if self.max_frame_length == 0 || self.max_frame_length > MAX_FRAME_LENGTH_CAP {
            return Err(AgentConfigError::MaxFrameLength {
                value: self.max_frame_length,
                cap: MAX_FRAME_LENGTH_CAP,
            });
        }
        Ok(())
    }

    /// The most bytes one connection buffers, whatever its client does, when the driver reads
    /// `read_size` bytes at a time: one frame plus one read of input (the agent stops reading past a
    /// frame); and the write queue limit, plus the one packet that crosses it, plus a final CLOSE
    /// (each packet charged its bookkeeping, `PACKET_OVERHEAD`).
    pub fn buffer_bound(&self, read_size: usize) -> usize {
        let overhead = crate::connection::PACKET_OVERHEAD;
        let input = self.max_frame_length + 4 + read_size;
        let largest_packet = self.max_frame_length + 4 + overhead;
        let close = gatekit_codec::native::MAX_REASON_LEN + 2 + 4 + overhead;
        input + self.max_write_queue + largest_packet + close
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            heartbeat: Duration::from_secs(60),
            backend_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(2),
            max_in_flight: 1,
            max_write_queue: 256 * 1024,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            close_linger: Duration::from_secs(2),
            server_id: "gate-1".to_owned(),
            duplicate_login: crate::store::DuplicateLogin::Kick,
            #[cfg(feature = "fault-injection")]
            faults: crate::faults::Faults::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_an_out_of_range_frame_limit() {
        assert_eq!(AgentConfig::default().validate(), Ok(()));
        for (value, valid) in [
            (0, false),
            (1, true),
            (MAX_FRAME_LENGTH_CAP, true),
            (MAX_FRAME_LENGTH_CAP + 1, false),
        ] {
            let config = AgentConfig {
                max_frame_length: value,
                ..AgentConfig::default()
            };
            let expected = if valid {
                Ok(())
            } else {
                Err(AgentConfigError::MaxFrameLength {
                    value,
                    cap: MAX_FRAME_LENGTH_CAP,
                })
            };
            assert_eq!(config.validate(), expected, "{value}");
        }
        assert_eq!(
            AgentConfig {
                max_frame_length: 0,
                ..AgentConfig::default()
            }
            .validate()
            .unwrap_err()
            .to_string(),
            "max_frame_length 0 is out of range: it must be 1 to 16777216 bytes"
        );
    }
}

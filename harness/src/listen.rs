//! Listener specifications, as operators write them: `protocol+transport://address`, for example
//! `native+tcp://127.0.0.1:7000` or `pomelo+tcp://127.0.0.1:3010`.

use gatekit_agent::{AgentFactory, Mqtt, NativeAgent, Pomelo, ProtocolAgent};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

/// A wire protocol the gate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WireProtocol {
    /// gatekit's own protocol (docs/PROTOCOL.md).
    Native,
    /// mqant's MQTT 3.1.1 dialect (docs/MQTT.md).
    Mqtt,
    /// The pomelo protocol (docs/POMELO.md): pomelo, pinus, pitaya, nano clients.
    Pomelo,
}

impl WireProtocol {
    /// Every protocol.
    pub const ALL: [WireProtocol; 3] = [
        WireProtocol::Native,
        WireProtocol::Mqtt,
        WireProtocol::Pomelo,
    ];

    /// Its name in listener specifications.
    pub fn name(self) -> &'static str {
        match self {
            WireProtocol::Native => "native",
            WireProtocol::Mqtt => "mqtt",
            WireProtocol::Pomelo => "pomelo",
        }
    }

    /// Whether a client can say goodbye (native CLOSE); where it cannot (pomelo), a graceful
    /// client closes its side and the connection ends `eof`.
    pub fn has_goodbye(self) -> bool {
        match self {
            WireProtocol::Native | WireProtocol::Mqtt => true,
            WireProtocol::Pomelo => false,
        }
    }

    /// The agent factory that serves it.
    pub fn factory(self) -> Arc<dyn AgentFactory> {
        match self {
            WireProtocol::Native => Arc::new(NativeAgent),
            WireProtocol::Mqtt => Arc::new(ProtocolAgent::new(Mqtt::new)),
            WireProtocol::Pomelo => Arc::new(ProtocolAgent::new(Pomelo::new)),
        }
    }
}

impl fmt::Display for WireProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener: a protocol on a transport at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The wire protocol.
    pub protocol: WireProtocol,
    /// Where to listen (loopback for the harness).
    pub addr: SocketAddr,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+tcp://{}", self.protocol, self.addr)
    }
}

impl FromStr for Listener {
    type Err = String;

    fn from_str(s: &str) -> Result<Listener, String> {
        let (scheme, addr) = s.split_once("://").ok_or_else(|| {
            format!("listener {s:?}: expected protocol+transport://address, e.g. native+tcp://127.0.0.1:7000")
        })?;
        let (protocol, transport) = scheme.split_once('+').ok_or_else(|| {
            format!("listener {s:?}: {scheme:?} names no transport (protocol+transport, e.g. native+tcp)")
        })?;
        let protocol = WireProtocol::ALL
            .into_iter()
            .find(|p| p.name() == protocol)
            .ok_or_else(|| {
                let known: Vec<&str> = WireProtocol::ALL.iter().map(|p| p.name()).collect();
                format!(
                    "listener {s:?}: unknown protocol {protocol:?} (known: {})",
                    known.join(", ")
                )
            })?;
        if transport != "tcp" {
            return Err(format!(
                "listener {s:?}: unknown transport {transport:?} (known: tcp)"
            ));
        }
        let addr = addr
            .parse()
            .map_err(|e| format!("listener {s:?}: address {addr:?}: {e}"))?;
        Ok(Listener { protocol, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_print_and_refuse_clearly() {
        let l: Listener = "pomelo+tcp://127.0.0.1:3010".parse().unwrap();
        assert_eq!(l.protocol, WireProtocol::Pomelo);
        assert_eq!(l.to_string(), "pomelo+tcp://127.0.0.1:3010");
        assert_eq!(
            "native+tcp://127.0.0.1:7000"
                .parse::<Listener>()
                .unwrap()
                .to_string(),
            "native+tcp://127.0.0.1:7000"
        );
        for (bad, says) in [
            ("127.0.0.1:7000", "expected protocol+transport://address"),
            ("native://127.0.0.1:7000", "names no transport"),
            (
                "smtp+tcp://127.0.0.1:25",
                "unknown protocol \"smtp\" (known: native, mqtt, pomelo)",
            ),
            ("native+quic://127.0.0.1:7000", "unknown transport \"quic\""),
            ("native+tcp://localhost", "address \"localhost\""),
        ] {
            let e = bad.parse::<Listener>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}

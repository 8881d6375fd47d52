//! Listener specifications, as operators write them: `protocol+transport://address[/path]`, for
//! example `native+tcp://127.0.0.1:7000`, `pomelo+ws://127.0.0.1:3010` or
//! `mqtt+wss://127.0.0.1:8084/mqtt`.

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

/// A transport under the protocol (gatekit_agent::transport).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 6455) over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl TransportKind {
    /// Every transport.
    pub const ALL: [TransportKind; 4] = [
        TransportKind::Tcp,
        TransportKind::Tls,
        TransportKind::Ws,
        TransportKind::Wss,
    ];

    /// Its name in listener specifications.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }

    /// Whether it runs TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }

    /// Whether it runs WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener: a protocol on a transport at an address (and, for WebSocket, a path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The wire protocol.
    pub protocol: WireProtocol,
    /// The transport.
    #[serde(default)]
    pub transport: TransportKind,
    /// Where to listen (loopback for the harness).
    pub addr: SocketAddr,
    /// The WebSocket path upgraded (`/gate`); `None` upgrades any path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Listener {
    /// A listener of `protocol` over plain TCP at `addr`.
    pub fn tcp(protocol: WireProtocol, addr: SocketAddr) -> Self {
        Listener {
            protocol,
            transport: TransportKind::Tcp,
            addr,
            path: None,
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}://{}", self.protocol, self.transport, self.addr)?;
        if let Some(p) = &self.path {
            f.write_str(p)?;
        }
        Ok(())
    }
}

impl FromStr for Listener {
    type Err = String;

    fn from_str(s: &str) -> Result<Listener, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
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
        let transport = TransportKind::ALL
            .into_iter()
            .find(|t| t.name() == transport)
            .ok_or_else(|| {
                format!(
                    "listener {s:?}: unknown transport {transport:?} (known: tcp, tls, ws, wss)"
                )
            })?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        if path.is_some() && !transport.is_websocket() {
            return Err(format!(
                "listener {s:?}: a path applies to ws and wss only, not {transport}"
            ));
        }
        let addr = addr
            .parse()
            .map_err(|e| format!("listener {s:?}: address {addr:?}: {e}"))?;
        Ok(Listener {
            protocol,
            transport,
            addr,
            path,
        })
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
        for spec in [
            "native+ws://127.0.0.1:7001/gate",
            "mqtt+wss://127.0.0.1:8084/mqtt",
            "native+tls://127.0.0.1:7443",
            "pomelo+ws://127.0.0.1:3011",
        ] {
            assert_eq!(spec.parse::<Listener>().unwrap().to_string(), spec);
        }
        let l: Listener = "mqtt+wss://127.0.0.1:8084/mqtt?x".parse().unwrap();
        assert_eq!(
            (l.transport, l.path.as_deref()),
            (TransportKind::Wss, Some("/mqtt?x"))
        );
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
            (
                "native+tcp://127.0.0.1:7000/gate",
                "a path applies to ws and wss only",
            ),
            ("native+tcp://localhost", "address \"localhost\""),
        ] {
            let e = bad.parse::<Listener>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}

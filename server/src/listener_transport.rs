//! The transport layers of a listener (`native+wss://...`): its TLS certificate, its WebSocket
//! options for the protocol it carries, its ALPN.

use crate::listen::{Listener, TransportKind, WireProtocol};
use gatekit_agent::transport::websocket::Page;
use gatekit_agent::{AgentConfig, Layered, Tls, Transport, WebSocket, WebSocketConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a TLS listener's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files (`--tls-cert`, `--tls-key`).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// PEM text in memory (the harness's self-signed certificate).
    Pem {
        /// The certificate chain.
        cert: String,
        /// The private key.
        key: String,
    },
}

/// Options of the tls, ws and wss listeners.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// The certificate of tls and wss listeners.
    pub tls: Option<TlsSource>,
    /// Origins allowed on ws and wss listeners (`None`: any).
    pub allowed_origins: Option<Vec<String>>,
    /// Serve the browser demo (clients/js/) on native ws and wss listeners.
    pub demo: bool,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM (certificate, key).
pub fn self_signed() -> (String, String) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// The WebSocket subprotocols `protocol` accepts, in order of preference, and whether a client
/// must offer one: MQTT over WebSocket requires `mqtt` (MQTT 3.1.1 section 6; `mqttv3.1` is
/// MQTT 3.1's name, which paho still offers), the native protocol offers `gatekit`, pomelo's
/// clients offer none.
pub fn subprotocols(protocol: WireProtocol) -> (&'static [&'static str], bool) {
    match protocol {
        WireProtocol::Mqtt => (&["mqtt", "mqttv3.1"], true),
        WireProtocol::Native => (&["gatekit"], false),
        WireProtocol::Pomelo => (&[], false),
    }
}

/// The ALPN protocols a TLS listener offers.
fn alpn(listener: &Listener) -> &'static [&'static str] {
    match (listener.transport, listener.protocol) {
        (TransportKind::Wss, _) => &["http/1.1"],
        (TransportKind::Tls, WireProtocol::Mqtt) => &["mqtt"],
        _ => &[],
    }
}

/// The browser demo's pages.
fn demo_pages() -> Vec<Page> {
    vec![
        Page {
            path: "/".to_owned(),
            content_type: "text/html; charset=utf-8",
            body: bytes::Bytes::from_static(include_bytes!("../../clients/js/demo.html")),
        },
        Page {
            path: "/gatekit.js".to_owned(),
            content_type: "text/javascript; charset=utf-8",
            body: bytes::Bytes::from_static(include_bytes!("../../clients/js/gatekit.js")),
        },
    ]
}

/// The layers of `listener` (`None` for plain TCP), or what is wrong with its options.
pub fn transport(
    listener: &Listener,
    opts: &TransportOptions,
    config: &AgentConfig,
) -> Result<Option<Arc<dyn Transport>>, String> {
    let tls = || -> Result<Tls, String> {
        let server = match &opts.tls {
            None => {
                return Err(format!(
                    "listener {listener}: a {} listener needs --tls-cert and --tls-key ([tls] cert and key in a config file)",
                    listener.transport
                ))
            }
            Some(TlsSource::Files { cert, key }) => Tls::from_pem_files(cert, key, alpn(listener)),
            Some(TlsSource::Pem { cert, key }) => {
                Tls::from_pem(cert.as_bytes(), key.as_bytes(), alpn(listener))
            }
        }
        .map_err(|e| format!("listener {listener}: {e}"))?;
        Ok(Tls::new(server))
    };
    let websocket = || {
        let (protocols, required) = subprotocols(listener.protocol);
        let mut ws = WebSocketConfig::for_frame_length(config.max_frame_length);
        ws.path = listener
            .path
            .as_ref()
            .map(|p| p.split(['?', '#']).next().unwrap_or(p).to_owned());
        ws.protocols = protocols.iter().map(|p| p.to_string()).collect();
        ws.require_protocol = required;
        ws.allowed_origins = opts.allowed_origins.clone();
        if opts.demo && listener.protocol == WireProtocol::Native {
            ws.pages = demo_pages();
        }
        WebSocket::new(ws)
    };
    Ok(match listener.transport {
        TransportKind::Tcp => None,
        TransportKind::Tls => Some(Arc::new(tls()?)),
        TransportKind::Ws => Some(Arc::new(websocket())),
        TransportKind::Wss => Some(Arc::new(Layered::new(
            "wss",
            Arc::new(tls()?),
            Arc::new(websocket()),
        ))),
    })
}

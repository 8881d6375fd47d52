//! The client side of a listener's transport: what the harness's clients (`run`, `rtt`, `hold`)
//! do on a fresh TCP connection before they speak their wire protocol — nothing (`tcp`), the TLS
//! client handshake (`tls`), the WebSocket upgrade (`ws`), or both (`wss`).
//!
//! The root of trust is either the harness's own self-signed certificate
//! ([`crate::listener_transport::self_signed`], when the harness starts the gate itself) or a PEM
//! file (`--tls-ca`) for a gate started elsewhere. Every rustls config is built on
//! [`gatekit_agent::transport::tls::provider`].
//!
//! A connection is a [`ClientStream`]: an enum over the four stacks, so a plain TCP connection
//! costs nothing more than its socket, and the TLS ones one allocation next to rustls's own.

use crate::listen::{TransportKind, WireProtocol};
use crate::listener_transport::subprotocols;
use gatekit_agent::transport::websocket::{self, WebSocketStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// What is wrong with a client transport's options: each names the option and the value.
#[derive(Debug, thiserror::Error)]
pub enum ClientTransportError {
    /// The `--tls-ca` file could not be read.
    #[error("--tls-ca {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The CA PEM holds no usable certificate, or a broken one.
    #[error("--tls-ca {path}: {problem}")]
    BadCa {
        /// The file (`<memory>` for the harness's own certificate).
        path: PathBuf,
        /// What was wrong, e.g. "no CERTIFICATE section found".
        problem: String,
    },
    /// The name to check the gate's certificate against is not a DNS name or an IP address.
    #[error("--tls-server-name {name:?} is neither a DNS name nor an IP address")]
    BadServerName {
        /// The name given.
        name: String,
    },
    /// A tls or wss transport without a root of trust.
    #[error("--transport {kind} against --target needs --tls-ca FILE (the PEM certificate the gate's certificate is checked against)")]
    NoCa {
        /// The transport asked for.
        kind: TransportKind,
    },
}

/// How a client reaches the protocol over a transport.
#[derive(Clone)]
pub struct ClientTransport {
    /// The transport.
    pub kind: TransportKind,
    /// The TLS client config (tls and wss).
    pub tls: Option<Arc<ClientConfig>>,
    /// The name the gate's certificate must carry (tls and wss).
    pub server_name: ServerName<'static>,
    /// The path of the WebSocket upgrade (ws and wss).
    pub ws_path: String,
    /// The WebSocket subprotocols offered, in order of preference (ws and wss).
    pub ws_protocols: Vec<String>,
    /// The largest WebSocket message written: larger writes are split (ws and wss). The gate
    /// accepts [`websocket::message_size_for`] its frame limit.
    pub max_message: u64,
}

impl std::fmt::Debug for ClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTransport")
            .field("kind", &self.kind)
            .field("tls", &self.tls.is_some())
            .field("server_name", &self.server_name)
            .field("ws_path", &self.ws_path)
            .field("ws_protocols", &self.ws_protocols)
            .field("max_message", &self.max_message)
            .finish()
    }
}

/// The root of trust of a tls or wss client.
#[derive(Debug, Clone)]
pub enum TrustRoot {
    /// PEM text in memory (the harness's own self-signed certificate).
    Pem(String),
    /// A PEM file (`--tls-ca`).
    File(PathBuf),
}

/// Options to build a [`ClientTransport`] from.
#[derive(Debug, Clone)]
pub struct ClientTransportOptions {
    /// The transport.
    pub kind: TransportKind,
    /// The protocol carried (it decides the WebSocket subprotocols and the ALPN offered).
    pub protocol: WireProtocol,
    /// The root of trust (tls and wss; ignored otherwise).
    pub trust: Option<TrustRoot>,
    /// The name the certificate is checked against (`None`: the target's IP address).
    pub server_name: Option<String>,
    /// The WebSocket path (`/` when `None`).
    pub ws_path: Option<String>,
    /// The gate's largest protocol frame (for the WebSocket message size).
    pub max_frame_length: usize,
}

impl ClientTransport {
    /// Plain TCP.
    pub fn tcp() -> Self {
        ClientTransport {
            kind: TransportKind::Tcp,
            tls: None,
            server_name: ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            ws_path: "/".to_owned(),
            ws_protocols: Vec::new(),
            max_message: websocket::message_size_for(
                gatekit_agent::AgentConfig::default().max_frame_length,
            ),
        }
    }

    /// The client side of `opts.kind` towards a gate at `target`.
    pub fn new(
        opts: &ClientTransportOptions,
        target: SocketAddr,
    ) -> Result<Self, ClientTransportError> {
        let server_name = match &opts.server_name {
            None => ServerName::IpAddress(target.ip().into()),
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|_| ClientTransportError::BadServerName { name: name.clone() })?,
        };
        let tls = if opts.kind.is_tls() {
            let trust = opts
                .trust
                .as_ref()
                .ok_or(ClientTransportError::NoCa { kind: opts.kind })?;
            Some(client_config(trust, alpn(opts.kind, opts.protocol))?)
        } else {
            None
        };
        let (protocols, _) = subprotocols(opts.protocol);
        Ok(ClientTransport {
            kind: opts.kind,
            tls,
            server_name,
            ws_path: opts.ws_path.clone().unwrap_or_else(|| "/".to_owned()),
            ws_protocols: protocols.iter().map(|p| p.to_string()).collect(),
            max_message: websocket::message_size_for(opts.max_frame_length),
        })
    }

    /// Runs the transport's client handshake on `tcp`: TLS, then the WebSocket upgrade, as the
    /// kind asks. An error says which step failed.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<ClientStream> {
        match self.kind {
            TransportKind::Tcp => Ok(ClientStream::Tcp(tcp)),
            TransportKind::Tls => Ok(ClientStream::Tls(Box::new(self.tls(tcp).await?))),
            TransportKind::Ws => {
                let host = tcp.peer_addr()?.to_string();
                Ok(ClientStream::Ws(self.upgrade(tcp, &host).await?))
            }
            TransportKind::Wss => {
                let host = tcp.peer_addr()?.to_string();
                let tls = self.tls(tcp).await?;
                Ok(ClientStream::Wss(Box::new(self.upgrade(tls, &host).await?)))
            }
        }
    }

    async fn tls(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let config = self
            .tls
            .clone()
            .ok_or_else(|| io::Error::other(format!("a {} client has no TLS config", self.kind)))?;
        TlsConnector::from(config)
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))
    }

    async fn upgrade<S>(&self, stream: S, host: &str) -> io::Result<WebSocketStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let protocols: Vec<&str> = self.ws_protocols.iter().map(String::as_str).collect();
        let (ws, _) = websocket::connect(stream, host, &self.ws_path, &protocols, self.max_message)
            .await
            .map_err(|e| io::Error::other(format!("WebSocket upgrade of {}: {e}", self.ws_path)))?;
        Ok(ws)
    }
}

/// The ALPN protocols a client offers: as the gate's listeners do (`http/1.1` under WebSocket,
/// `mqtt` for MQTT straight over TLS).
fn alpn(kind: TransportKind, protocol: WireProtocol) -> &'static [&'static str] {
    match (kind, protocol) {
        (TransportKind::Wss, _) => &["http/1.1"],
        (TransportKind::Tls, WireProtocol::Mqtt) => &["mqtt"],
        _ => &[],
    }
}

/// A TLS client config trusting the certificates of `trust` (and nothing else), on gatekit's
/// crypto provider, TLS 1.2 and 1.3, offering `alpn`.
pub fn client_config(
    trust: &TrustRoot,
    alpn: &[&str],
) -> Result<Arc<ClientConfig>, ClientTransportError> {
    let (pem, path) = match trust {
        TrustRoot::Pem(p) => (p.as_bytes().to_vec(), PathBuf::from("<memory>")),
        TrustRoot::File(path) => (
            std::fs::read(path).map_err(|source| ClientTransportError::ReadCa {
                path: path.clone(),
                source,
            })?,
            path.clone(),
        ),
    };
    let bad = |problem: String| ClientTransportError::BadCa {
        path: path.clone(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE section found".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate refused: {e}")))?;
    }
    let mut config = ClientConfig::builder_with_provider(gatekit_agent::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("no protocol version: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// Certificate directories made by this process so far (each gets its own).
static CERT_DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The harness's own self-signed certificate for 127.0.0.1 and localhost: the tls and wss gates
/// and servers it starts present it, and its clients trust it.
#[derive(Debug, Clone)]
pub struct SelfSignedCert {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
    /// Both written to files, for server processes (`gatekit serve` or `gatekit rtt-server` with `--tls-cert --tls-key`; removed on drop).
    pub files: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl SelfSignedCert {
    /// A new self-signed certificate for 127.0.0.1; with `files`, written to a fresh temporary
    /// directory.
    pub fn new(files: bool) -> Result<SelfSignedCert, String> {
        let (cert, key) = crate::listener_transport::self_signed();
        let files = if files {
            let dir = std::env::temp_dir().join(format!(
                "gatekit-cert-{}-{}",
                std::process::id(),
                CERT_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&c, &cert).map_err(|e| format!("{}: {e}", c.display()))?;
            std::fs::write(&k, &key).map_err(|e| format!("{}: {e}", k.display()))?;
            Some((c, k))
        } else {
            None
        };
        Ok(SelfSignedCert { cert, key, files })
    }
}

impl Drop for SelfSignedCert {
    fn drop(&mut self) {
        if let Some((c, k)) = &self.files {
            let _ = std::fs::remove_file(c);
            let _ = std::fs::remove_file(k);
            if let Some(dir) = c.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// One client connection over its transport: read and written as the protocol's byte stream.
///
/// The TLS stacks are boxed (a rustls connection is kilobytes); the WebSocket one is not: each
/// stream lives in its own client task, so a box would add an allocation and save nothing but
/// about 250 bytes per plain TCP client.
#[allow(clippy::large_enum_variant)]
pub enum ClientStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket over TCP: binary messages carry the bytes.
    Ws(WebSocketStream<TcpStream>),
    /// WebSocket over TLS.
    Wss(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

impl ClientStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Tcp(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
            ClientStream::Ws(s) => s.get_ref(),
            ClientStream::Wss(s) => s.get_ref().get_ref().0,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientStream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientStream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
            ClientStream::Ws($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientStream::Wss($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kind: TransportKind, trust: Option<TrustRoot>) -> ClientTransportOptions {
        ClientTransportOptions {
            kind,
            protocol: WireProtocol::Mqtt,
            trust,
            server_name: None,
            ws_path: Some("/mqtt".into()),
            max_frame_length: 1000,
        }
    }

    #[test]
    fn options_are_checked_and_errors_name_them() {
        let target: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let e = ClientTransport::new(&opts(TransportKind::Wss, None), target).unwrap_err();
        assert!(e.to_string().contains("--transport wss"), "{e}");
        assert!(e.to_string().contains("--tls-ca"), "{e}");
        let missing = TrustRoot::File("/nonexistent/ca.pem".into());
        let e = ClientTransport::new(&opts(TransportKind::Tls, Some(missing)), target).unwrap_err();
        assert!(
            e.to_string().starts_with("--tls-ca /nonexistent/ca.pem"),
            "{e}"
        );
        let junk = TrustRoot::Pem("not a certificate".into());
        let e = ClientTransport::new(&opts(TransportKind::Tls, Some(junk)), target).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE section"), "{e}");
        let mut bad_name = opts(TransportKind::Ws, None);
        bad_name.server_name = Some("not a name!".into());
        let e = ClientTransport::new(&bad_name, target).unwrap_err();
        assert!(e.to_string().contains("\"not a name!\""), "{e}");
        // ws needs no root of trust; mqtt offers its subprotocol; the message size fits a frame.
        let ws = ClientTransport::new(&opts(TransportKind::Ws, None), target).unwrap();
        assert_eq!(ws.ws_protocols[0], "mqtt");
        assert_eq!(ws.ws_path, "/mqtt");
        assert_eq!(ws.max_message, websocket::message_size_for(1000));
        let (cert, _) = crate::listener_transport::self_signed();
        let tls = ClientTransport::new(
            &opts(TransportKind::Tls, Some(TrustRoot::Pem(cert))),
            target,
        )
        .unwrap();
        assert!(tls.tls.is_some());
    }
}

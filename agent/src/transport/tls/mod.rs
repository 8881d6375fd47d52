//! TLS (1.2 and 1.3) with rustls, on the workspace's one crypto provider, *ring*.
//!
//! The provider is named explicitly ([`provider`]) rather than taken from rustls's process-wide
//! default: a build that links both ring and aws-lc-rs has no default, and
//! `ServerConfig::builder()` panics there. Every rustls config of the workspace (this module, the
//! harness's clients, the tests) is made with [`provider`].
//!
//! The stream is gatekit's own (`stream.rs`), on rustls's unbuffered API, rather than
//! tokio-rustls's: an idle connection keeps the rustls connection state and no buffer (rustls's
//! buffered `ServerConnection` keeps a 4 KiB read buffer for its whole life).

use super::{Transport, TransportError};
use crate::gate::BoxStream;
use crate::services::BoxFuture;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod stream;

use stream::TlsStream;
pub use stream::MAX_UNSENT;

/// The crypto provider every rustls config of gatekit uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What is wrong with a certificate or key given to [`Tls::from_pem_files`] or
/// [`Tls::from_pem`]: each names the file and what was found there.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The file could not be read.
    #[error("TLS {what} file {path}: {source}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM section of the expected kind, or a broken one.
    #[error("TLS {what} file {path}: {problem}")]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file (`<memory>` for [`Tls::from_pem`]).
        path: PathBuf,
        /// What was wrong, e.g. "no CERTIFICATE section found".
        problem: String,
    },
    /// rustls refused the pair: the key does not match the certificate, or is of an unsupported
    /// type.
    #[error("TLS certificate {cert} and key {key}: {source}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// The `tls` transport: a TLS server handshake in front of the protocol.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    name: String,
}

impl Tls {
    /// A TLS transport with `config` (built with [`provider`]), named `tls`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Tls {
            config,
            name: "tls".to_owned(),
        }
    }

    /// The same transport with another name (`wss` when WebSocket runs over it).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A server config from a PEM certificate chain file and a PEM private key file (PKCS#8,
    /// PKCS#1 or SEC1), TLS 1.2 and 1.3, offering the ALPN protocols `alpn` (for example
    /// `http/1.1` for WebSocket, `mqtt` for MQTT; empty for none).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        alpn: &[&str],
    ) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsConfigError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read("certificate", cert)?;
        let key_pem = read("key", key)?;
        server_config(&cert_pem, cert, &key_pem, key, alpn)
    }

    /// Like [`Tls::from_pem_files`], from PEM text in memory.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        alpn: &[&str],
    ) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let memory = Path::new("<memory>");
        server_config(cert_pem, memory, key_pem, memory, alpn)
    }
}

fn server_config(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
    alpn: &[&str],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let pem_error = |what, path: &Path, problem: String| TlsConfigError::Pem {
        what,
        path: path.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate",
            cert_path,
            "no CERTIFICATE section found".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY section found (PKCS#8, RSA or EC)".to_owned()
            }
            e => e.to_string(),
        };
        pem_error("key", key_path, problem)
    })?;
    let refused = |source| TlsConfigError::Refused {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(refused)?;
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

impl Transport for Tls {
    fn name(&self) -> &str {
        &self.name
    }

    fn accept(&self, stream: BoxStream) -> BoxFuture<Result<BoxStream, TransportError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let conn = UnbufferedServerConnection::new(config).map_err(|e| {
                TransportError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?;
            let mut tls = TlsStream::new(stream, conn);
            poll_fn(|cx| tls.poll_handshake(cx))
                .await
                .map_err(TransportError::Tls)?;
            Ok(Box::new(tls) as BoxStream)
        })
    }
}

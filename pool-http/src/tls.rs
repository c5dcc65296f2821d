//! TLS through rustls (feature `tls`): the handshake under `tls_handshake_timeout`, and ALPN,
//! which decides between HTTP/2 and HTTP/1.1 per connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{ConnectError, Origin};

/// The user's rustls config with ALPN offering HTTP/2 and HTTP/1.1, unless it already names
/// its own protocols.
pub(crate) fn with_alpn(mut config: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    if config.alpn_protocols.is_empty() {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Arc::new(config)
}

/// Runs the TLS handshake; says whether the server chose HTTP/2.
pub(crate) async fn handshake(
    tcp: TcpStream,
    origin: &Origin,
    config: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, bool), ConnectError> {
    let host = || origin.authority();
    let name = ServerName::try_from(origin.host().to_owned()).map_err(|e| ConnectError::Tls {
        host: host(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let connecting = TlsConnector::from(config.clone()).connect(name, tcp);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(ConnectError::TlsTimeout {
            host: host(),
            timeout,
        }),
        Ok(Err(source)) => Err(ConnectError::Tls {
            host: host(),
            source,
        }),
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok((stream, h2))
        }
    }
}

/// Feature `rustls`: the configuration a client gets when the caller passes none (made at
/// its first `https` dial): rustls's
/// `ring` provider, its safe default protocol versions, and the roots of the enabled roots
/// features (`webpki-roots`, `native-roots`). `None` with no roots feature: an `https`
/// request then says which feature to enable.
///
/// # Errors
/// A config error (knob `tls`) when `native-roots` is the only roots feature and the system
/// has no certificate rustls can read: every `https` dial then fails with it as its cause.
#[cfg(feature = "rustls")]
pub(crate) fn built_in() -> Result<Option<Arc<rustls::ClientConfig>>, crate::Error> {
    #[allow(unused_mut)]
    let mut roots = rustls::RootCertStore::empty();
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "native-roots")]
    {
        // Per-file errors are skipped (as curl does): one unreadable file must not cost
        // the rest.
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 && roots.is_empty() {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(crate::Error::config(
                "tls",
                format!(
                    "feature `native-roots` found no root certificate on this system ({why}); \
                     set SSL_CERT_FILE, enable `webpki-roots`, or pass ClientBuilder::tls"
                ),
            ));
        }
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::Error::config("tls", format!("rustls rejected its defaults: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(with_alpn(config)))
}

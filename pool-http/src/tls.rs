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

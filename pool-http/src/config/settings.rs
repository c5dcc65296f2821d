//! [`Settings`]: the knobs the dialler and the request path read, shared by a client's
//! requests, and the TLS configuration its `https` dials use.

#[cfg(any(feature = "tls", feature = "cookies", feature = "testing"))]
use std::sync::Arc;
use std::time::Duration;

use super::Drain;
#[cfg(feature = "tls")]
use crate::Error;
use crate::proxy::Proxies;
use crate::redirect::Policy;

/// The knobs the dialler and the request path read.
#[derive(Clone)]
pub(crate) struct Settings {
    pub connect_timeout: Duration,
    pub tcp_keepalive: Option<Duration>,
    pub response_header_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    pub disable_keep_alives: bool,
    pub drain: Drain,
    pub http2_prior_knowledge: bool,
    pub tls_handshake_timeout: Duration,
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Feature `rustls`: the built-in configuration, made at the first `https` dial (the
    /// roots take milliseconds to load: a client that never dials https never pays).
    #[cfg(feature = "rustls")]
    pub built_in_tls: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>>,
    /// Which redirects are followed.
    pub redirect: Policy,
    /// Ask for compressed responses and decode them (Go's `!DisableCompression`).
    pub compression: bool,
    /// Largest body [`Response::bytes`](crate::Response::bytes), `text` and `json` collect.
    pub body_limit: Option<usize>,
    /// Feature `cookies`: the jar requests take cookies from and responses put them in.
    #[cfg(feature = "cookies")]
    pub cookies: Option<Arc<dyn crate::cookie::CookieStore>>,
    /// The proxies requests go through (empty: all direct); the environment's unless the
    /// builder said otherwise.
    pub proxies: Proxies,
    /// Feature `testing`: socket writes left to fail, for every connection of the client.
    #[cfg(feature = "testing")]
    pub fail_writes: Arc<std::sync::atomic::AtomicUsize>,
}

/// Every knob, and whether TLS is configured: never the rustls config itself, which may
/// hold a client key, a key log or a verifier with secrets of the caller's.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("connect_timeout", &self.connect_timeout)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("response_header_timeout", &self.response_header_timeout)
            .field("timeout", &self.timeout)
            .field("disable_keep_alives", &self.disable_keep_alives)
            .field("drain", &self.drain)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("tls", &self.has_tls())
            .field("redirect", &self.redirect)
            .field("compression", &self.compression)
            .field("body_limit", &self.body_limit)
            .field("cookies", &self.has_cookies())
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Whether a cookie jar is set (feature `cookies`).
    pub fn has_cookies(&self) -> bool {
        #[cfg(feature = "cookies")]
        return self.cookies.is_some();
        #[cfg(not(feature = "cookies"))]
        false
    }

    /// Whether `https` URLs can be served: the caller's config, or a built-in one with roots.
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some()
            || cfg!(all(
                feature = "rustls",
                any(feature = "webpki-roots", feature = "native-roots")
            ));
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The TLS configuration `https` dials use: the caller's, else the built-in one (made
    /// at the first dial that needs it, on a blocking thread with feature `native-roots`,
    /// which reads files), else none.
    ///
    /// # Errors
    /// The built-in configuration could not be made (feature `native-roots` alone, and no
    /// root certificate on the system). It is not kept: the next dial tries again (after
    /// certificates are installed, say).
    #[cfg(feature = "tls")]
    pub async fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, Error> {
        if let Some(config) = &self.tls {
            return Ok(Some(config.clone()));
        }
        #[cfg(feature = "rustls")]
        {
            if let Some(made) = self.built_in_tls.get() {
                return Ok(made.clone());
            }
            #[cfg(feature = "native-roots")]
            let made = tokio::task::spawn_blocking(crate::tls::built_in)
                .await
                .map_err(|e| Error::config("tls", format!("loading the roots failed: {e}")))??;
            #[cfg(not(feature = "native-roots"))]
            let made = crate::tls::built_in()?;
            Ok(self.built_in_tls.get_or_init(|| made).clone())
        }
        #[cfg(not(feature = "rustls"))]
        Ok(None)
    }
}

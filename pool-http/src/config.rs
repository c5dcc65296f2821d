//! [`ClientBuilder`]: Go `http.Transport`'s knobs with its defaults, plus our `idle_grace` and
//! [`Drain`] policy.

use std::sync::Arc;
use std::time::Duration;

use pool_core::{Config, Hooks, KeyedConfig, KeyedPool};

use crate::client::Client;
use crate::manager::{Counters, Dialer};
use crate::{Error, Origin};

/// What happens to a response body dropped before its end (Go closes the connection).
///
/// The client reads the rest in the background, up to `max_bytes` and for at most
/// `max_time`. If the body ends within both, the connection goes back to the pool; otherwise
/// it is closed. [`Drain::NONE`] is Go's behaviour: always close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Most bytes read past the point where the body was dropped. Default 256 KiB.
    pub max_bytes: usize,
    /// Longest the drain may take. Default 50 ms.
    pub max_time: Duration,
}

impl Drain {
    /// Never drain: a body dropped early closes its connection, as in Go.
    pub const NONE: Drain = Drain {
        max_bytes: 0,
        max_time: Duration::ZERO,
    };

    pub(crate) fn is_off(&self) -> bool {
        self.max_bytes == 0 || self.max_time.is_zero()
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            max_bytes: 256 * 1024,
            max_time: Duration::from_millis(50),
        }
    }
}

/// The knobs the dialler and the request path read.
#[derive(Debug, Clone)]
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
    /// Feature `testing`: socket writes left to fail, for every connection of the client.
    #[cfg(feature = "testing")]
    pub fail_writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Settings {
    /// Whether `https` URLs can be served.
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// Builds a [`Client`]. Every knob has Go's `DefaultTransport` default unless said otherwise.
///
/// | knob | default | Go |
/// |---|---|---|
/// | [`max_idle_conns`](Self::max_idle_conns) | 100 (0: no limit) | `MaxIdleConns` |
/// | [`max_idle_conns_per_host`](Self::max_idle_conns_per_host) | 2 (0: 2) | `MaxIdleConnsPerHost` |
/// | [`max_conns_per_host`](Self::max_conns_per_host) | 0 (no limit) | `MaxConnsPerHost` |
/// | [`idle_conn_timeout`](Self::idle_conn_timeout) | 90 s (0: none) | `IdleConnTimeout` |
/// | [`disable_keep_alives`](Self::disable_keep_alives) | false | `DisableKeepAlives` |
/// | [`connect_timeout`](Self::connect_timeout) | 30 s | `Dialer.Timeout` |
/// | [`tls_handshake_timeout`](Self::tls_handshake_timeout) | 10 s | `TLSHandshakeTimeout` |
/// | [`tcp_keepalive`](Self::tcp_keepalive) | 30 s | `Dialer.KeepAlive` |
/// | [`response_header_timeout`](Self::response_header_timeout) | none | `ResponseHeaderTimeout` |
/// | [`timeout`](Self::timeout) | none | `Client.Timeout` |
/// | [`idle_grace`](Self::idle_grace) | 30 s | (Go: 0) |
/// | [`drain`](Self::drain) | 256 KiB, 50 ms | (Go: [`Drain::NONE`]) |
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_http::Error> {
/// use std::time::Duration;
///
/// let client = pool_http::Client::builder()
///     .max_conns_per_host(32)
///     .max_idle_conns_per_host(8)
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    max_idle_conns: usize,
    max_idle_conns_per_host: usize,
    max_conns_per_host: usize,
    idle_conn_timeout: Duration,
    idle_grace: Duration,
    settings: Settings,
    hooks: Option<AddHooks>,
}

/// Installs the user's hooks on the pool builder (their type is erased here).
type AddHooks = Box<dyn FnOnce(pool_core::KeyedBuilder<Dialer>) -> pool_core::KeyedBuilder<Dialer>>;

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            max_idle_conns: 100,
            max_idle_conns_per_host: 2,
            max_conns_per_host: 0,
            idle_conn_timeout: Duration::from_secs(90),
            idle_grace: Config::default().idle_grace,
            settings: Settings {
                connect_timeout: Duration::from_secs(30),
                tcp_keepalive: Some(Duration::from_secs(30)),
                response_header_timeout: None,
                timeout: None,
                disable_keep_alives: false,
                drain: Drain::default(),
                http2_prior_knowledge: false,
                tls_handshake_timeout: Duration::from_secs(10),
                #[cfg(feature = "tls")]
                tls: None,
                #[cfg(feature = "testing")]
                fail_writes: Arc::default(),
            },
            hooks: None,
        }
    }
}

impl ClientBuilder {
    /// Most idle connections across all hosts (`MaxIdleConns`). Default 100; 0 means no
    /// limit, as in Go. Above it, the least recently used idle connection of any host goes
    /// (after `idle_grace`).
    pub fn max_idle_conns(mut self, n: usize) -> Self {
        self.max_idle_conns = n;
        self
    }

    /// Most idle connections kept per host (`MaxIdleConnsPerHost`). Default 2; 0 means 2, as
    /// in Go. Connections released above it are kept as surplus for `idle_grace`.
    pub fn max_idle_conns_per_host(mut self, n: usize) -> Self {
        self.max_idle_conns_per_host = n;
        self
    }

    /// Most connections per host, counting those being dialled (`MaxConnsPerHost`). Default
    /// 0: no limit. Requests above it wait, first come first served.
    pub fn max_conns_per_host(mut self, n: usize) -> Self {
        self.max_conns_per_host = n;
        self
    }

    /// How long an idle connection is kept before it is closed (`IdleConnTimeout`). Default
    /// 90 s; zero means no limit.
    pub fn idle_conn_timeout(mut self, d: Duration) -> Self {
        self.idle_conn_timeout = d;
        self
    }

    /// How long connections released above `max_idle_conns_per_host` (or the global cap) are
    /// kept for the next burst before they are closed. Default 30 s; zero closes them at once,
    /// as Go does.
    pub fn idle_grace(mut self, d: Duration) -> Self {
        self.idle_grace = d;
        self
    }

    /// Never reuse a connection: each request dials and sends `Connection: close`
    /// (`DisableKeepAlives`). Default false.
    pub fn disable_keep_alives(mut self, yes: bool) -> Self {
        self.settings.disable_keep_alives = yes;
        self
    }

    /// Longest a dial may take, DNS included (`net.Dialer.Timeout`). Default 30 s; must not
    /// be zero.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.settings.connect_timeout = d;
        self
    }

    /// TCP keep-alive probe period on new connections (`net.Dialer.KeepAlive`). Default
    /// 30 s; zero turns keep-alive probes off.
    pub fn tcp_keepalive(mut self, d: Duration) -> Self {
        self.settings.tcp_keepalive = (!d.is_zero()).then_some(d);
        self
    }

    /// Longest wait for the response head once the request is written
    /// (`ResponseHeaderTimeout`). Default none; zero means none.
    pub fn response_header_timeout(mut self, d: Duration) -> Self {
        self.settings.response_header_timeout = (!d.is_zero()).then_some(d);
        self
    }

    /// Longest a whole request may take: waiting for a connection, dialling, the response
    /// head and reading the body (`http.Client.Timeout`). Default none; zero means none.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = (!d.is_zero()).then_some(d);
        self
    }

    /// What to do with a body dropped before its end. Default [`Drain::default`] (256 KiB,
    /// 50 ms); [`Drain::NONE`] closes the connection, as Go does.
    pub fn drain(mut self, drain: Drain) -> Self {
        self.settings.drain = drain;
        self
    }

    /// Longest a TLS handshake may take (`TLSHandshakeTimeout`). Default 10 s; must not be
    /// zero.
    pub fn tls_handshake_timeout(mut self, d: Duration) -> Self {
        self.settings.tls_handshake_timeout = d;
        self
    }

    /// Feature `tls`: the rustls configuration for `https` URLs (roots, client certificate,
    /// crypto provider). ALPN offers `h2` and `http/1.1` unless the config names its own
    /// protocols: a server that picks `h2` gets one shared HTTP/2 connection per origin.
    /// Without it, an `https` request fails with [`is_tls`](Error::is_tls).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.settings.tls = Some(crate::tls::with_alpn(config));
        self
    }

    /// Speak HTTP/2 without negotiation (h2c with prior knowledge) to every `http://` origin
    /// (`https://` origins negotiate with ALPN).
    /// One connection per origin then carries all concurrent requests as streams; it counts
    /// once against `max_conns_per_host`, is `in_use` while it carries a stream, and idles
    /// (with `idle_conn_timeout` and `idle_grace`) when the last stream ends. Default false.
    pub fn http2_prior_knowledge(mut self, yes: bool) -> Self {
        self.settings.http2_prior_knowledge = yes;
        self
    }

    /// Go's behaviour where ours differs: no `idle_grace` and no drain. The other knobs
    /// already have Go's defaults. For comparisons and for porting step by step.
    pub fn go_mode(self) -> Self {
        self.idle_grace(Duration::ZERO).drain(Drain::NONE)
    }

    /// Lifecycle [`Hooks`] (Go's httptrace), called with the request's [`Origin`]: get-conn,
    /// got-conn (reused, idle time), dial start and done, put-idle, closed with its reason.
    /// Default none, which costs nothing.
    pub fn hooks(mut self, hooks: impl Hooks<Origin>) -> Self {
        self.hooks = Some(Box::new(move |b| b.hooks(hooks)));
        self
    }

    /// Checks the knobs and starts the client's pool. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`is_config`](Error::is_config) for a zero `connect_timeout`, or outside a runtime.
    pub fn build(self) -> Result<Client, Error> {
        let s = &self.settings;
        if s.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout", "must be above zero"));
        }
        if s.tls_handshake_timeout.is_zero() {
            return Err(Error::config("tls_handshake_timeout", "must be above zero"));
        }
        let per_host_idle = if s.disable_keep_alives {
            0
        } else if self.max_idle_conns_per_host == 0 {
            2
        } else {
            self.max_idle_conns_per_host
        };
        let config = KeyedConfig {
            max_idle: match self.max_idle_conns {
                0 => usize::MAX,
                n => n,
            },
            per_key: Config {
                max_open: self.max_conns_per_host,
                max_idle: per_host_idle,
                idle_grace: self.idle_grace,
                max_idle_time: (!self.idle_conn_timeout.is_zero())
                    .then_some(self.idle_conn_timeout),
                // The dial enforces `connect_timeout` itself and says so; this only bounds a
                // dial that ignores it.
                create_timeout: Some(
                    s.connect_timeout + s.tls_handshake_timeout + Duration::from_secs(5),
                ),
                ..Config::default()
            },
        };
        let settings = Arc::new(self.settings);
        let counters = Arc::new(Counters::default());
        let dialer = Dialer {
            settings: settings.clone(),
        };
        let mut builder = KeyedPool::builder(dialer).config(config);
        if let Some(hooks) = self.hooks {
            builder = hooks(builder);
        }
        let pool = builder.build().map_err(Error::pool)?;
        Ok(Client::new_inner(pool, settings, counters))
    }
}

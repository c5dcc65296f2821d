//! [`ClientBuilder`]: Go `http.Transport`'s knobs with its defaults, plus our `idle_grace` and
//! [`Drain`] policy.

#[cfg(feature = "serde")]
mod de;
mod drain;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use pool_core::{Config, Hooks, KeyedConfig, KeyedPool, MAX_DURATION};

use crate::client::Client;
use crate::manager::Dialer;
use crate::proxy::Proxies;
use crate::redirect::Policy;
use crate::{Error, Origin, Proxy};

pub use drain::Drain;
pub(crate) use settings::Settings;

/// Builds a [`Client`]. Every knob has Go's `DefaultTransport` default unless said otherwise.
///
/// Every duration is at most [`MAX_DURATION`] (365 days; `tcp_keepalive` at most 32,767 s):
/// a longer one is surely a mistake, and [`build`](ClientBuilder::build) rejects it with a
/// config error naming the knob. Zero has the meaning the table gives.
///
/// `Send + Sync`, so it can be made in one task and built in another. Its `Debug` shows
/// the knobs, and only whether TLS and hooks are set (never the rustls config or the hooks,
/// which may hold secrets).
///
/// Feature `serde`: a `ClientBuilder` also deserialises from a configuration file, the
/// knobs below by their method names, durations as `"30s"` (see its `Deserialize` impl);
/// `tls`, `hooks`, `cookie_store` and custom redirect policies stay code's.
///
/// | knob | default | Go |
/// |---|---|---|
/// | [`max_idle_conns`](Self::max_idle_conns) | 100 (0: no limit) | `MaxIdleConns` |
/// | [`max_idle_conns_per_host`](Self::max_idle_conns_per_host) | 2 (0: 2) | `MaxIdleConnsPerHost` |
/// | [`max_conns_per_host`](Self::max_conns_per_host) | 0 (no limit) | `MaxConnsPerHost` |
/// | [`idle_conn_timeout`](Self::idle_conn_timeout) | 90 s (0: none) | `IdleConnTimeout` |
/// | [`disable_keep_alives`](Self::disable_keep_alives) | false | `DisableKeepAlives` |
/// | [`connect_timeout`](Self::connect_timeout) | 30 s (0: config error) | `Dialer.Timeout` |
/// | [`tls_handshake_timeout`](Self::tls_handshake_timeout) | 10 s (0: config error) | `TLSHandshakeTimeout` |
/// | [`tcp_keepalive`](Self::tcp_keepalive) | 30 s (0: off) | `Dialer.KeepAlive` |
/// | [`response_header_timeout`](Self::response_header_timeout) | none (0: none) | `ResponseHeaderTimeout` |
/// | [`timeout`](Self::timeout) | none (0: none) | `Client.Timeout` |
/// | [`idle_grace`](Self::idle_grace) | 30 s (0: Go's) | (Go: 0) |
/// | [`adaptive_idle`](Self::adaptive_idle) | off (the fixed `idle_grace`) | (Go: none) |
/// | [`drain`](Self::drain) | 256 KiB, 50 ms (0: off) | (Go: [`Drain::NONE`]) |
/// | [`redirect`](Self::redirect) | [`Policy::limited(10)`](Policy::limited) | `Client.CheckRedirect` (nil: 10) |
/// | [`disable_compression`](Self::disable_compression) | false (gzip asked for and decoded) | `DisableCompression` |
/// | [`body_limit`](Self::body_limit) | none | (Go: none) |
/// | [`tls`](Self::tls) | feature `rustls` (default): rustls with `ring` and the roots feature's certificates | `TLSClientConfig` |
/// | [`proxy`](Self::proxy), [`no_proxy`](Self::no_proxy) | the environment's (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`) | `Proxy: ProxyFromEnvironment` |
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
    adaptive_idle: Option<Duration>,
    settings: Settings,
    hooks: Option<AddHooks>,
    /// Read the environment's proxies at `build` (no `proxy` or `no_proxy` call).
    proxy_env: bool,
}

/// Installs the user's hooks on the pool builder (their type is erased here). `Send + Sync`
/// as the hooks are, so that a builder can move between tasks.
type AddHooks = Box<
    dyn FnOnce(pool_core::KeyedBuilder<Dialer>) -> pool_core::KeyedBuilder<Dialer> + Send + Sync,
>;

/// The knobs, and whether TLS and hooks are set: never the rustls config or the hooks
/// themselves (they may hold secrets of the caller's).
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.settings;
        f.debug_struct("ClientBuilder")
            .field("max_idle_conns", &self.max_idle_conns)
            .field("max_idle_conns_per_host", &self.max_idle_conns_per_host)
            .field("max_conns_per_host", &self.max_conns_per_host)
            .field("idle_conn_timeout", &self.idle_conn_timeout)
            .field("idle_grace", &self.idle_grace)
            .field("adaptive_idle", &self.adaptive_idle)
            .field("disable_keep_alives", &s.disable_keep_alives)
            .field("connect_timeout", &s.connect_timeout)
            .field("tls_handshake_timeout", &s.tls_handshake_timeout)
            .field("tcp_keepalive", &s.tcp_keepalive)
            .field("response_header_timeout", &s.response_header_timeout)
            .field("timeout", &s.timeout)
            .field("drain", &s.drain)
            .field("http2_prior_knowledge", &s.http2_prior_knowledge)
            .field("tls", &s.has_tls())
            .field("redirect", &s.redirect)
            .field("compression", &s.compression)
            .field("body_limit", &s.body_limit)
            .field("cookies", &s.has_cookies())
            .field("proxies", &ProxyChoice(self))
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            max_idle_conns: 100,
            max_idle_conns_per_host: 2,
            max_conns_per_host: 0,
            idle_conn_timeout: Duration::from_secs(90),
            idle_grace: Config::default().idle_grace,
            adaptive_idle: None,
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
                #[cfg(feature = "rustls")]
                built_in_tls: std::sync::OnceLock::new(),
                redirect: Policy::default(),
                compression: true,
                body_limit: None,
                #[cfg(feature = "cookies")]
                cookies: None,
                proxies: Proxies::default(),
                #[cfg(feature = "testing")]
                fail_writes: Arc::default(),
            },
            hooks: None,
            proxy_env: true,
        }
    }
}

impl ClientBuilder {
    /// Most idle connections across all hosts (`MaxIdleConns`). Default 100; 0 means no
    /// limit, as in Go. A ceiling at every instant, `idle_grace` or not: above it, the least
    /// recently idled connection of any host is closed at once, so a client that fetches
    /// user-supplied URLs holds at most this many idle sockets however many hosts it meets.
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
    /// 90 s; zero means no limit; at most [`MAX_DURATION`].
    pub fn idle_conn_timeout(mut self, d: Duration) -> Self {
        self.idle_conn_timeout = d;
        self
    }

    /// How long connections released above `max_idle_conns_per_host` are kept for the next
    /// burst before they are closed, within `max_idle_conns` (which holds at every instant).
    /// Default 30 s; zero closes them at once, as Go does; at most [`MAX_DURATION`].
    pub fn idle_grace(mut self, d: Duration) -> Self {
        self.idle_grace = d;
        self
    }

    /// Learn from each host's traffic how long to keep connections above
    /// `max_idle_conns_per_host`, instead of the fixed `idle_grace`: kept across bursts that
    /// come back sooner than `break_even` (how long holding an idle connection costs as much
    /// as dialling one; 60 s suits most backends), closed soon after a spike or between
    /// bursts further apart. See [`pool_core::Config::adaptive_idle`]. Default: off.
    pub fn adaptive_idle(mut self, break_even: Duration) -> Self {
        self.adaptive_idle = Some(break_even);
        self
    }

    /// Never reuse a connection: each request dials and sends `Connection: close`
    /// (`DisableKeepAlives`). Default false.
    pub fn disable_keep_alives(mut self, yes: bool) -> Self {
        self.settings.disable_keep_alives = yes;
        self
    }

    /// Longest a dial may take, DNS included (`net.Dialer.Timeout`); through a proxy, it
    /// covers reaching the proxy and, for `https`, the proxy's answer to `CONNECT`. Default
    /// 30 s; must not be zero; at most [`MAX_DURATION`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.settings.connect_timeout = d;
        self
    }

    /// TCP keep-alive probe period on new connections (`net.Dialer.KeepAlive`). Default
    /// 30 s; zero turns keep-alive probes off. The kernel counts whole seconds up to 32,767
    /// (Linux's limit): a period under 1 s or above that is a config error, not a silent
    /// "no probes".
    pub fn tcp_keepalive(mut self, d: Duration) -> Self {
        self.settings.tcp_keepalive = (!d.is_zero()).then_some(d);
        self
    }

    /// Longest wait for the response head once the request is written
    /// (`ResponseHeaderTimeout`). Default none; zero means none; at most [`MAX_DURATION`].
    pub fn response_header_timeout(mut self, d: Duration) -> Self {
        self.settings.response_header_timeout = (!d.is_zero()).then_some(d);
        self
    }

    /// Longest a whole request may take: waiting for a connection, dialling, the response
    /// head and reading the body (`http.Client.Timeout`). Default none; zero means none; at
    /// most [`MAX_DURATION`].
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = (!d.is_zero()).then_some(d);
        self
    }

    /// What to do with a body dropped before its end. Default [`Drain::default`] (256 KiB,
    /// 50 ms); [`Drain::NONE`] (or a zero in either field) closes the connection, as Go does;
    /// `max_time` at most [`MAX_DURATION`].
    pub fn drain(mut self, drain: Drain) -> Self {
        self.settings.drain = drain;
        self
    }

    /// Longest a TLS handshake may take (`TLSHandshakeTimeout`). Default 10 s; must not be
    /// zero; at most [`MAX_DURATION`].
    pub fn tls_handshake_timeout(mut self, d: Duration) -> Self {
        self.settings.tls_handshake_timeout = d;
        self
    }

    /// Feature `tls`: the rustls configuration for `https` URLs (roots, client certificate,
    /// crypto provider), in place of the built-in one. ALPN offers `h2` and `http/1.1`
    /// unless the config names its own protocols: a server that picks `h2` gets shared
    /// HTTP/2 connections (see [`http2_prior_knowledge`](Self::http2_prior_knowledge)).
    ///
    /// Without it, feature `rustls` (on by default) builds one: rustls's `ring` provider and
    /// the root certificates of feature `webpki-roots` (default) and/or `native-roots` (the
    /// system's, read at the first `https` dial). With neither, an `https` request fails
    /// with [`is_tls`](Error::is_tls) and a message naming the feature to enable.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.settings.tls = Some(crate::tls::with_alpn(config));
        self
    }

    /// Which redirects a request follows (Go's `Client.CheckRedirect`). Default
    /// [`Policy::limited(10)`](Policy::limited), Go's: up to 10, then an
    /// [`is_redirect`](Error::is_redirect) error. [`Policy::none`] returns every 3xx as it
    /// is. A request can override it with
    /// [`RequestBuilder::redirect`](crate::RequestBuilder::redirect).
    pub fn redirect(mut self, policy: Policy) -> Self {
        self.settings.redirect = policy;
        self
    }

    /// Do not ask for compressed responses (Go's `DisableCompression`). By default, a
    /// request without its own `Accept-Encoding` asks for `gzip` (and `br`, `zstd` with
    /// those features) and the response body is decoded as it is read, its
    /// `Content-Encoding` and `Content-Length` removed. A request that sets
    /// `Accept-Encoding` itself gets the body as the server sent it.
    pub fn disable_compression(mut self, yes: bool) -> Self {
        self.settings.compression = !yes;
        self
    }

    /// Largest body, in bytes, that [`Response::bytes`](crate::Response::bytes),
    /// [`text`](crate::Response::text) and [`json`](crate::Response::json) collect (after
    /// decompression): past it they fail with [`is_too_large`](Error::is_too_large) and the
    /// connection is closed. Default none. A request can override it with
    /// [`RequestBuilder::body_limit`](crate::RequestBuilder::body_limit).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.settings.body_limit = Some(bytes);
        self
    }

    /// Feature `cookies`: keep cookies in `store` (Go's `http.Client.Jar`): every request,
    /// each redirect hop included, sends the store's cookies for its URL (after a `Cookie`
    /// header of its own), and every response's `Set-Cookie` goes into it. Default none:
    /// only the cookies a request sets itself are sent. Keep the `Arc` to read or share
    /// the jar.
    ///
    /// ```
    /// # fn main() -> Result<(), pool_http::Error> {
    /// use std::sync::Arc;
    ///
    /// let jar = Arc::new(pool_http::cookie::Jar::new());
    /// let client = pool_http::Client::builder().cookie_store(jar.clone()).build()?;
    /// # drop(client);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cookies")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
    pub fn cookie_store(mut self, store: Arc<impl crate::cookie::CookieStore>) -> Self {
        self.settings.cookies = Some(store);
        self
    }

    /// Speak HTTP/2 without negotiation (h2c with prior knowledge) to every `http://` origin
    /// (`https://` origins negotiate with ALPN).
    /// One connection per origin then carries concurrent requests as streams, up to the
    /// server's `SETTINGS_MAX_CONCURRENT_STREAMS`; past it a request gets another connection
    /// (as Go's Transport), or waits for a stream at `max_conns_per_host`. Each connection
    /// counts once against `max_conns_per_host`, is `in_use` while it carries a stream, and
    /// idles (with `idle_conn_timeout` and `idle_grace`) when its last stream ends. Default
    /// false.
    /// Not through a forward [`proxy`](Self::proxy): `http` URLs sent to a proxy go over
    /// HTTP/1.1, which proxies speak.
    pub fn http2_prior_knowledge(mut self, yes: bool) -> Self {
        self.settings.http2_prior_knowledge = yes;
        self
    }

    /// Sends requests through `proxy` (Go's `Transport.Proxy`); call it again for more: for
    /// each request, the first proxy that serves its scheme and does not exclude its host
    /// (see [`Proxy::no_proxy`]) carries it, and a request no proxy takes goes direct. See
    /// [`Proxy`] for how `http` and `https` URLs travel through one.
    ///
    /// Default, as Go's `DefaultTransport` (`ProxyFromEnvironment`): the environment's
    /// proxies, read at [`build`](Self::build):
    /// - `HTTP_PROXY` (else `http_proxy`) for `http` URLs, `HTTPS_PROXY` (else
    ///   `https_proxy`) for `https` URLs; `NO_PROXY` (else `no_proxy`) lists the hosts that
    ///   go direct, with [`NoProxy`](crate::NoProxy)'s rules, and `localhost` and loopback
    ///   addresses always go direct. An empty variable counts as unset.
    /// - A value without a scheme is `http://` (`proxy.corp:3128`); one that is no URL even
    ///   so, or one with another scheme (`https://`, `socks5://`), makes the requests it
    ///   would carry fail with [`is_proxy`](Error::is_proxy), rather than go direct (fail
    ///   closed; the error names the variable, never its value).
    /// - When `REQUEST_METHOD` is set (a CGI process, whose `HTTP_PROXY` may come from a
    ///   request's `Proxy:` header: httpoxy), `HTTP_PROXY` is ignored and only `http_proxy`
    ///   is read (Go fails `http` requests instead).
    ///
    /// Calling `proxy` replaces the environment's proxies with the ones given, as does
    /// [`no_proxy`](Self::no_proxy).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        if self.proxy_env {
            self.settings.proxies.clear();
            self.proxy_env = false;
        }
        self.settings.proxies.push(proxy);
        self
    }

    /// No proxy at all: every request goes direct, whatever the environment says, and the
    /// proxies given to [`proxy`](Self::proxy) before are dropped (a `proxy` after adds
    /// one again). Go's `Transport{Proxy: nil}`.
    pub fn no_proxy(mut self) -> Self {
        self.settings.proxies.clear();
        self.proxy_env = false;
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

    /// Checks the knobs, reads the environment's proxies (unless [`proxy`](Self::proxy) or
    /// [`no_proxy`](Self::no_proxy) said otherwise), and starts the client's pool: now
    /// inside a tokio runtime, else at the first request (so a client can live in a
    /// `static`). The built-in TLS configuration (feature `rustls`) is made at the first
    /// `https` dial.
    ///
    /// # Errors
    /// [`is_config`](Error::is_config), with [`knob`](Error::knob) naming it, for a zero
    /// `connect_timeout` or `tls_handshake_timeout`, a duration above [`MAX_DURATION`] (or a
    /// `tcp_keepalive` the kernel does not take).
    pub fn build(mut self) -> Result<Client, Error> {
        self.check_durations()?;
        if self.proxy_env {
            self.settings.proxies = Proxies::from_env(|name| std::env::var(name).ok());
        }
        let s = &self.settings;
        let per_host_idle = if s.disable_keep_alives {
            0
        } else if self.max_idle_conns_per_host == 0 {
            2
        } else {
            self.max_idle_conns_per_host
        };
        // pool-core's configs are `#[non_exhaustive]`: built by assigning fields.
        let mut per_key = Config::default();
        per_key.max_open = self.max_conns_per_host;
        per_key.max_idle = per_host_idle;
        per_key.idle_grace = self.idle_grace;
        per_key.adaptive_idle = self.adaptive_idle;
        per_key.max_idle_time =
            (!self.idle_conn_timeout.is_zero()).then_some(self.idle_conn_timeout);
        // The dial enforces `connect_timeout` itself and says so; this only bounds a dial
        // that ignores it (saturating: each part may be `MAX_DURATION`).
        per_key.create_timeout = Some(
            s.connect_timeout
                .saturating_add(s.tls_handshake_timeout)
                .saturating_add(Duration::from_secs(5))
                .min(MAX_DURATION),
        );
        let mut config = KeyedConfig::default();
        config.max_idle = match self.max_idle_conns {
            0 => usize::MAX,
            n => n,
        };
        config.per_key = per_key;
        let settings = Arc::new(self.settings);
        let hooks = self.hooks;
        Client::new_inner(settings, move |dialer| {
            let builder = KeyedPool::builder(dialer).config(config);
            match hooks {
                Some(hooks) => hooks(builder),
                None => builder,
            }
        })
    }

    /// Every duration knob within what it accepts, so no deadline computed from one can
    /// overflow an `Instant` (which panics).
    fn check_durations(&self) -> Result<(), Error> {
        let s = &self.settings;
        let positive = [
            ("connect_timeout", s.connect_timeout),
            ("tls_handshake_timeout", s.tls_handshake_timeout),
        ];
        for (knob, d) in positive {
            if d.is_zero() {
                return Err(Error::config(knob, "must be above zero"));
            }
        }
        // What zero means instead, for the message.
        let bounded = [
            ("connect_timeout", s.connect_timeout, ""),
            ("tls_handshake_timeout", s.tls_handshake_timeout, ""),
            (
                "idle_conn_timeout",
                self.idle_conn_timeout,
                "; zero means no limit",
            ),
            (
                "idle_grace",
                self.idle_grace,
                "; zero closes surplus at once",
            ),
            (
                "response_header_timeout",
                s.response_header_timeout.unwrap_or_default(),
                "; zero means none",
            ),
            (
                "timeout",
                s.timeout.unwrap_or_default(),
                "; zero means none",
            ),
            (
                "drain.max_time",
                s.drain.max_time,
                "; zero turns the drain off",
            ),
        ];
        for (knob, d, zero) in bounded {
            if d > MAX_DURATION {
                return Err(Error::config(
                    knob,
                    format!(
                        "is {d:?}, above the longest accepted: 365 days \
                         (pool_core::MAX_DURATION){zero}"
                    ),
                ));
            }
        }
        if let Some(d) = s.tcp_keepalive
            && !(Duration::from_secs(1)..=MAX_TCP_KEEPALIVE).contains(&d)
        {
            return Err(Error::config(
                "tcp_keepalive",
                format!(
                    "is {d:?}: the kernel takes whole seconds from 1 to 32767; zero turns \
                     keep-alive probes off"
                ),
            ));
        }
        Ok(())
    }
}

/// The builder's proxies for its `Debug`: the environment's, to be read at `build`, or the
/// list given (never credentials).
struct ProxyChoice<'a>(&'a ClientBuilder);

impl std::fmt::Debug for ProxyChoice<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.proxy_env {
            f.write_str("environment")
        } else {
            std::fmt::Debug::fmt(&self.0.settings.proxies, f)
        }
    }
}

/// The longest TCP keep-alive idle time and probe interval Linux takes (`MAX_TCP_KEEPIDLE`,
/// `MAX_TCP_KEEPINTVL`): `setsockopt` fails above it, and the dial ignores that failure.
const MAX_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);

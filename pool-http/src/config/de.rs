//! Feature `serde`: a [`ClientBuilder`] from a configuration file.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};

use super::ClientBuilder;
use crate::redirect::Policy;
use crate::{Drain, NoProxy, Proxy};

/// What a [`ClientBuilder`] is read from: the builder's knobs by their method names,
/// durations in pool-core's syntax (`"30s"`, `"5m"`, `"1h 30m"`). No `Debug`: it may hold
/// proxy credentials.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    go_mode: bool,
    max_idle_conns: Option<usize>,
    max_idle_conns_per_host: Option<usize>,
    max_conns_per_host: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    idle_conn_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idle_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    adaptive_idle: Option<Duration>,
    disable_keep_alives: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    tls_handshake_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    tcp_keepalive: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    response_header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    drain: Option<DrainSpec>,
    redirect: Option<RedirectSpec>,
    disable_compression: Option<bool>,
    body_limit: Option<usize>,
    http2_prior_knowledge: Option<bool>,
    #[serde(default)]
    no_proxy: bool,
    #[serde(default)]
    proxy: ProxyList,
}

/// A [`Drain`]: the fields absent take [`Drain::default`]'s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainSpec {
    max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    max_time: Option<Duration>,
}

impl From<DrainSpec> for Drain {
    fn from(spec: DrainSpec) -> Drain {
        let default = Drain::default();
        Drain::new(
            spec.max_bytes.unwrap_or(default.max_bytes),
            spec.max_time.unwrap_or(default.max_time),
        )
    }
}

/// A [`Policy`] that is data: `"none"` or `{ "limited": 5 }`.
enum RedirectSpec {
    None,
    Limited(usize),
}

/// `{ "limited": 5 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limited {
    limited: usize,
}

impl<'de> Deserialize<'de> for RedirectSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RedirectVisitor)
    }
}

struct RedirectVisitor;

impl<'de> Visitor<'de> for RedirectVisitor {
    type Value = RedirectSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a redirect policy: "none" or { "limited": 10 }"#)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<RedirectSpec, E> {
        match s {
            "none" => Ok(RedirectSpec::None),
            _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RedirectSpec, A::Error> {
        let Limited { limited } = Limited::deserialize(MapAccessDeserializer::new(map))?;
        Ok(RedirectSpec::Limited(limited))
    }
}

impl From<RedirectSpec> for Policy {
    fn from(spec: RedirectSpec) -> Policy {
        match spec {
            RedirectSpec::None => Policy::none(),
            RedirectSpec::Limited(max) => Policy::limited(max),
        }
    }
}

/// `proxy`: one proxy (a URL or a table) or a list of them, in order.
#[derive(Default)]
struct ProxyList(Vec<Proxy>);

/// One proxy: a URL (for `http` and `https` URLs: [`Proxy::all`]) or a table.
struct OneProxy(Proxy);

/// A proxy as a table: its URL under the constructor's name (exactly one of `http`,
/// `https`, `all`), and its exceptions as a `NO_PROXY` list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyTable {
    http: Option<String>,
    https: Option<String>,
    all: Option<String>,
    no_proxy: Option<String>,
}

/// A proxy URL made a [`Proxy`]; the error quotes the URL without its userinfo (as
/// [`Proxy::all`]'s does).
fn proxy<E: de::Error>(
    make: fn(&str) -> Result<Proxy, crate::Error>,
    url: &str,
) -> Result<Proxy, E> {
    make(url).map_err(|e| E::custom(format_args!("proxy: {e}")))
}

impl<'de> Deserialize<'de> for OneProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneProxyVisitor)
    }
}

struct OneProxyVisitor;

impl<'de> Visitor<'de> for OneProxyVisitor {
    type Value = OneProxy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a proxy URL, or a table with one of `http`, `https`, `all` (the proxy URL) and \
             optionally `no_proxy`",
        )
    }

    fn visit_str<E: de::Error>(self, url: &str) -> Result<OneProxy, E> {
        proxy(Proxy::all, url).map(OneProxy)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneProxy, A::Error> {
        let table = ProxyTable::deserialize(MapAccessDeserializer::new(map))?;
        let mut p = match (table.http, table.https, table.all) {
            (Some(url), None, None) => proxy(Proxy::http, &url)?,
            (None, Some(url), None) => proxy(Proxy::https, &url)?,
            (None, None, Some(url)) => proxy(Proxy::all, &url)?,
            _ => {
                return Err(de::Error::custom(
                    "proxy: a table takes exactly one of `http`, `https`, `all`",
                ));
            }
        };
        if let Some(list) = table.no_proxy {
            p = p.no_proxy(NoProxy::from_string(&list));
        }
        Ok(OneProxy(p))
    }
}

impl<'de> Deserialize<'de> for ProxyList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProxyListVisitor)
    }
}

struct ProxyListVisitor;

impl<'de> Visitor<'de> for ProxyListVisitor {
    type Value = ProxyList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a proxy (a URL or a table) or a list of them")
    }

    fn visit_str<E: de::Error>(self, url: &str) -> Result<ProxyList, E> {
        OneProxyVisitor.visit_str(url).map(|p| ProxyList(vec![p.0]))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ProxyList, A::Error> {
        OneProxyVisitor.visit_map(map).map(|p| ProxyList(vec![p.0]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProxyList, A::Error> {
        let mut list = Vec::new();
        while let Some(OneProxy(p)) = seq.next_element()? {
            list.push(p);
        }
        Ok(ProxyList(list))
    }
}

/// A [`ClientBuilder`] from serde (feature `serde`): any of the builder's knobs by their
/// method names, each with the builder's default when absent, applied through its setters:
///
/// - numbers: `max_idle_conns`, `max_idle_conns_per_host`, `max_conns_per_host`,
///   `body_limit` (bytes);
/// - durations, pool-core's syntax (`"30s"`, `"250ms"`, `"1h 30m"`): `idle_conn_timeout`,
///   `idle_grace`, `adaptive_idle`, `connect_timeout`, `tls_handshake_timeout`, `tcp_keepalive`,
///   `response_header_timeout`, `timeout` (zero means what it means to the setter);
/// - booleans: `disable_keep_alives`, `disable_compression`, `http2_prior_knowledge`;
/// - `drain`: `{ "max_bytes": 262144, "max_time": "50ms" }`, a field absent taking
///   [`Drain::default`]'s (a zero in either turns the drain off);
/// - `redirect`: `"none"` ([`Policy::none`]) or `{ "limited": 5 }` ([`Policy::limited`]);
/// - `proxy`: a proxy URL (`"http://user:password@proxy.corp:3128"`, for `http` and `https`
///   URLs: [`Proxy::all`]), a table with the URL under one of `http`, `https`, `all` (the
///   [`Proxy`] constructors) and optionally `no_proxy`, a [`NoProxy`] list
///   (`{ "https": "http://proxy.corp:3128", "no_proxy": "internal.corp, 10.0.0.0/8" }`),
///   or a list of those, in order (as [`proxy`](ClientBuilder::proxy) called for each):
///   the environment's proxies are then not read;
/// - `no_proxy: true`: no proxy at all, whatever the environment says
///   ([`no_proxy`](ClientBuilder::no_proxy)); with `proxy` too, an error (they contradict);
/// - `go_mode: true`: Go's behaviour ([`go_mode`](ClientBuilder::go_mode)), applied before
///   the single knobs, so a `drain` or `idle_grace` given too wins.
///
/// An unknown field is an error (a misspelt knob must not be silently ignored). A value the
/// setter takes but [`build`](ClientBuilder::build) refuses (a zero `connect_timeout`, a
/// duration above a year) is refused by `build`, with the knob named, as for a builder made
/// in code. A proxy URL that [`Proxy::all`] refuses is an error here, quoting the URL without
/// its userinfo; no error and no `Debug` ever shows a proxy's credentials.
///
/// Code, not data, and so not read: `tls` (a rustls config),
/// [`hooks`](ClientBuilder::hooks), `cookie_store`, [`Policy::custom`], and
/// [`Proxy::basic_auth`] (put the credentials in the proxy URL instead).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let builder: pool_http::ClientBuilder = serde_json::from_str(r#"{
///     "max_conns_per_host": 32,
///     "idle_conn_timeout": "2m",
///     "timeout": "10s",
///     "redirect": { "limited": 5 },
///     "proxy": { "https": "http://svc:s3cret@proxy.corp:3128", "no_proxy": "internal.corp" }
/// }"#)?;
/// let shown = format!("{builder:?}");
/// assert!(shown.contains("max_conns_per_host: 32") && shown.contains("Policy::limited(5)"));
/// assert!(!shown.contains("s3cret"));
/// let client = builder.build()?;
/// # drop(client);
/// # Ok(()) }
/// ```
impl<'de> Deserialize<'de> for ClientBuilder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = Spec::deserialize(deserializer)?;
        if spec.no_proxy && !spec.proxy.0.is_empty() {
            return Err(de::Error::custom(
                "`no_proxy: true` and `proxy` contradict: give one",
            ));
        }
        let mut b = ClientBuilder::default();
        if spec.go_mode {
            b = b.go_mode();
        }
        macro_rules! apply {
            ($($knob:ident),*) => {
                $(if let Some(value) = spec.$knob {
                    b = b.$knob(value);
                })*
            };
        }
        apply!(
            max_idle_conns,
            max_idle_conns_per_host,
            max_conns_per_host,
            idle_conn_timeout,
            idle_grace,
            adaptive_idle,
            disable_keep_alives,
            connect_timeout,
            tls_handshake_timeout,
            tcp_keepalive,
            response_header_timeout,
            timeout,
            disable_compression,
            body_limit,
            http2_prior_knowledge
        );
        if let Some(drain) = spec.drain {
            b = b.drain(drain.into());
        }
        if let Some(redirect) = spec.redirect {
            b = b.redirect(redirect.into());
        }
        if spec.no_proxy {
            b = b.no_proxy();
        }
        for p in spec.proxy.0 {
            b = b.proxy(p);
        }
        Ok(b)
    }
}

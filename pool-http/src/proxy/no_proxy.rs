//! [`NoProxy`]: the hosts a proxy does not serve, with the rules of Go's
//! `golang.org/x/net/http/httpproxy` (`NO_PROXY`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Hosts that go direct instead of through a [`Proxy`](crate::Proxy): Go's `NO_PROXY`.
///
/// A comma-separated list; entries are trimmed and compared case-insensitively:
/// - `*` alone: no host is proxied.
/// - `10.0.0.0/8`, `fe80::/10`: IP hosts in that network.
/// - `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`: that IP host; with a port (`1.2.3.4:8080`,
///   `[2001:db8::1]:443`) only on that port (the URL's, or its scheme's default).
/// - `foo.com`: foo.com and its subdomains; `.foo.com` and `*.foo.com`: its subdomains only;
///   `foo.com:8080`: those, on that port only. A domain entry never matches a mere suffix
///   (`foo.com` does not match `barfoo.com`).
/// - Malformed entries (`:80`, a bad network) are ignored, as in Go.
///
/// As Go's special case, `localhost` and loopback addresses (`127.0.0.0/8`, `::1`) are never
/// proxied, whatever the list: an empty `NoProxy` ([`Default`]) excludes only them.
/// Internationalised names are compared as written (Go converts them to punycode).
///
/// Cheap to clone. `Debug` shows the entries kept.
///
/// # Examples
///
/// ```
/// use pool_http::{NoProxy, Proxy};
///
/// # fn main() -> Result<(), pool_http::Error> {
/// let direct = NoProxy::from_string("internal.corp, .svc.local, 10.0.0.0/8, db:5432");
/// let proxy = Proxy::all("http://proxy.corp:3128")?.no_proxy(direct);
/// # drop(proxy);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct NoProxy {
    rules: Arc<Rules>,
}

#[derive(Default)]
struct Rules {
    /// `*`: nothing is proxied.
    all: bool,
    ips: Vec<IpRule>,
    domains: Vec<DomainRule>,
    /// The entries kept, for `Debug`.
    shown: Box<str>,
}

enum IpRule {
    /// An address with a prefix length (`10.0.0.0/8`).
    Net(IpAddr, u8),
    /// An address, on one port or any.
    Addr(IpAddr, Option<u16>),
}

/// `suffix` starts with a dot: `.foo.com` matches its subdomains, and `foo.com` itself when
/// `itself`.
struct DomainRule {
    suffix: Box<str>,
    itself: bool,
    port: Option<u16>,
}

impl NoProxy {
    /// Reads a `NO_PROXY` list (see the type's docs). Never fails: a malformed entry is
    /// ignored, as in Go.
    pub fn from_string(list: &str) -> NoProxy {
        let mut rules = Rules::default();
        let mut shown = Vec::new();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                rules.all = true;
            } else if let Some((addr, prefix)) = entry.split_once('/') {
                match network(addr, prefix) {
                    Some((addr, prefix)) => rules.ips.push(IpRule::Net(addr, prefix)),
                    None => continue,
                }
            } else {
                let Some((host, port)) = split_port(&entry) else {
                    continue;
                };
                if let Ok(ip) = host.parse::<IpAddr>() {
                    rules.ips.push(IpRule::Addr(ip.to_canonical(), port));
                } else {
                    // `*.foo.com` is `.foo.com`; `foo.com` also matches itself.
                    let host = host
                        .strip_prefix('*')
                        .filter(|h| h.starts_with('.'))
                        .unwrap_or(host);
                    let itself = !host.starts_with('.');
                    let suffix = if itself {
                        format!(".{host}")
                    } else {
                        host.to_owned()
                    };
                    rules.domains.push(DomainRule {
                        suffix: suffix.into_boxed_str(),
                        itself,
                        port,
                    });
                }
            }
            shown.push(entry);
        }
        rules.shown = shown.join(",").into_boxed_str();
        NoProxy {
            rules: Arc::new(rules),
        }
    }

    /// Whether a target goes direct. `host` is lowercased, without IPv6 brackets (as an
    /// [`Origin`](crate::Origin) holds it); `port` is explicit or the scheme's default.
    pub(crate) fn bypasses(&self, host: &str, port: u16) -> bool {
        let ip = host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        let rules = &*self.rules;
        if rules.all {
            return true;
        }
        if let Some(ip) = ip
            && rules.ips.iter().any(|rule| rule.matches(ip, port))
        {
            return true;
        }
        // Go's `domainMatch` applies to names only (`ip == nil`): `.1` is no rule for
        // `10.0.0.1`.
        ip.is_none() && rules.domains.iter().any(|rule| rule.matches(host, port))
    }
}

impl fmt::Debug for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NoProxy").field(&&*self.rules.shown).finish()
    }
}

impl IpRule {
    fn matches(&self, ip: IpAddr, port: u16) -> bool {
        match *self {
            IpRule::Addr(addr, want) => addr == ip && want.is_none_or(|p| p == port),
            IpRule::Net(IpAddr::V4(net), prefix) => match ip {
                IpAddr::V4(ip) => {
                    masked(net.to_bits().into(), prefix, 32)
                        == masked(ip.to_bits().into(), prefix, 32)
                }
                IpAddr::V6(_) => false,
            },
            IpRule::Net(IpAddr::V6(net), prefix) => match ip {
                IpAddr::V6(ip) => {
                    masked(net.to_bits(), prefix, 128) == masked(ip.to_bits(), prefix, 128)
                }
                IpAddr::V4(_) => false,
            },
        }
    }
}

/// The top `prefix` bits of a `bits`-bit address.
fn masked(addr: u128, prefix: u8, bits: u8) -> u128 {
    let drop = u32::from(bits - prefix);
    if drop >= 128 { 0 } else { addr >> drop }
}

impl DomainRule {
    fn matches(&self, host: &str, port: u16) -> bool {
        let name = host.ends_with(&*self.suffix) || (self.itself && host == &self.suffix[1..]);
        name && self.port.is_none_or(|p| p == port)
    }
}

/// `addr/prefix` as a network (Go's `net.ParseCIDR`): a valid address and a prefix length
/// within its size.
fn network(addr: &str, prefix: &str) -> Option<(IpAddr, u8)> {
    let addr = addr.parse::<IpAddr>().ok()?;
    let prefix = prefix
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| prefix.parse::<u8>().ok())??;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= bits).then_some((addr, prefix))
}

/// Splits `host[:port]` as Go's `net.SplitHostPort` does for these entries: `[v6]:port`,
/// `name:port`, or no port (a bare IPv6 address has several colons). `None` for an entry
/// with an empty host (`:80`) or a port that is not a number, which nothing can match. A
/// bracketed IPv6 address without a port (`[::1]`) is read as that address.
fn split_port(entry: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (entry, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => Some(port.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `useProxy` tests (x/net/http/httpproxy), every target on port 80: whether the
    /// host goes direct.
    #[test]
    fn gos_no_proxy_examples() {
        let no_proxy = NoProxy::from_string(
            "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, \
             192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, \
             [2001:db8::52:0:3]:80, 2002:db8:a::45/64",
        );
        for (host, direct) in [
            // Never proxied, whatever the list.
            ("localhost", true),
            ("127.0.0.1", true),
            ("127.0.0.2", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::2", false),
            // IPs and networks.
            ("192.168.1.1", true),
            ("192.168.1.2", false), // another port
            ("192.168.1.3", true),
            ("192.168.1.4", false),
            ("10.0.0.2", true),
            ("10.0.0.4", false), // outside the /30
            ("2001:db8::52:0:1", true),
            ("2001:db8::52:0:2", false), // another port
            ("2001:db8::52:0:3", true),
            ("2002:db8:a::123", true),
            ("fe80::424b:c8be:1643:a1b6", false),
            // Domains.
            ("barbaz.net", false), // `.barbaz.net`: subdomains only
            ("www.barbaz.net", true),
            ("foobar.com", true),
            ("www.foobar.com", true),
            ("foofoobar.com", false), // not a mere suffix
            ("baz.com", false),
            ("localhost.net", false),
            ("local.localhost", false),
            ("barbarbaz.net", false),
            ("wildcard.io", false), // `*.wildcard.io`: subdomains only
            ("nested.wildcard.io", true),
            ("awildcard.io", false),
        ] {
            assert_eq!(no_proxy.bypasses(host, 80), direct, "{host}");
        }
    }

    #[test]
    fn a_star_alone_bypasses_everything_and_an_empty_list_only_loopback() {
        let all = NoProxy::from_string("a.com, *");
        assert!(all.bypasses("example.com", 443));
        assert!(all.bypasses("192.0.2.1", 80));
        let none = NoProxy::default();
        assert!(!none.bypasses("example.com", 80));
        assert!(none.bypasses("localhost", 80));
        assert!(none.bypasses("127.9.9.9", 80));
        // `*` inside a name is not a wildcard.
        assert!(!NoProxy::from_string("a*.com").bypasses("ab.com", 80));
    }

    #[test]
    fn ports_must_match_and_case_does_not_matter() {
        let no_proxy = NoProxy::from_string(" Host.COM:8080 ,.Sub.ORG:443, [::5] ");
        assert!(no_proxy.bypasses("host.com", 8080));
        assert!(no_proxy.bypasses("a.host.com", 8080));
        assert!(!no_proxy.bypasses("host.com", 80));
        assert!(no_proxy.bypasses("x.sub.org", 443));
        assert!(!no_proxy.bypasses("x.sub.org", 80));
        assert!(!no_proxy.bypasses("sub.org", 443));
        assert!(no_proxy.bypasses("::5", 1));
    }

    #[test]
    fn domain_rules_never_match_an_ip_host() {
        // Go's domainMatch requires `ip == nil`: a suffix that looks like an address's tail
        // is no rule for the address.
        let no_proxy = NoProxy::from_string(".1, 0.1, .0.0.1, *.1, .5");
        assert!(!no_proxy.bypasses("10.0.0.1", 80));
        assert!(!no_proxy.bypasses("2001:db8::5", 80));
        // Names still match, and address rules still match addresses.
        let no_proxy = NoProxy::from_string(".1, 10.0.0.2");
        assert!(no_proxy.bypasses("host.1", 80));
        assert!(no_proxy.bypasses("10.0.0.2", 80));
    }

    #[test]
    fn malformed_entries_are_ignored() {
        // Go's TestInvalidNoProxy: `:1` must not exclude (or panic on) anything.
        for list in [
            ":1",
            "1.2.3.4/33",
            "10.0.0.0/x",
            "[::1",
            "h:port",
            "/8",
            ",,",
        ] {
            let no_proxy = NoProxy::from_string(list);
            assert!(!no_proxy.bypasses("example.com", 80), "{list}");
            assert!(!no_proxy.bypasses("1.2.3.4", 80), "{list}");
        }
        let no_proxy = NoProxy::from_string("a.com, :1, b.com");
        assert!(
            no_proxy.bypasses("b.com", 80),
            "the entries after a bad one count"
        );
        assert_eq!(format!("{no_proxy:?}"), r#"NoProxy("a.com,b.com")"#);
    }

    #[test]
    fn networks_of_every_prefix_length() {
        let zero = NoProxy::from_string("0.0.0.0/0");
        assert!(zero.bypasses("203.0.113.9", 80));
        assert!(
            !zero.bypasses("2001:db8::1", 80),
            "an IPv4 network holds no IPv6 host"
        );
        let host = NoProxy::from_string("203.0.113.9/32, ::/0");
        assert!(host.bypasses("203.0.113.9", 80));
        assert!(!host.bypasses("203.0.113.8", 80));
        assert!(host.bypasses("2001:db8::1", 80));
        let mapped = NoProxy::from_string("10.0.0.0/8");
        assert!(
            mapped.bypasses("::ffff:10.1.2.3", 80),
            "an IPv4-mapped address is IPv4"
        );
    }
}

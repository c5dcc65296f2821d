//! The environment's proxies, as Go's `http.ProxyFromEnvironment` reads them (a pure function
//! over a variable lookup, so that it is tested without touching the process environment).
//!
//! - `HTTP_PROXY`, else `http_proxy`: the proxy of `http` URLs; `HTTPS_PROXY`, else
//!   `https_proxy`: the proxy of `https` URLs; `NO_PROXY`, else `no_proxy`: the hosts that go
//!   direct (see [`NoProxy`]; `localhost` and loopback addresses always do). As Go reads
//!   them: the first of the two names with a non-empty value.
//! - A value without a scheme is an `http://` URL (`proxy.corp:3128`). A value that is no URL
//!   even so (`bad host:3128`, `h:8a`), one with another scheme than `http` (`https://`,
//!   `socks5://`), or with a port of digits outside 1 to 65535 (`h:99999`, which Go's
//!   `url.Parse` takes and its dial then refuses), is kept, and the requests it would carry
//!   fail with [`Error::is_proxy`](crate::Error::is_proxy): they never silently go direct
//!   (fail closed). The error names the variable, never its value (it may hold credentials).
//!   Go's `httpproxy` today drops a value it cannot parse, so its requests go direct around
//!   the proxy the environment asked for; older Go failed them with "invalid proxy address",
//!   which is what we keep (without printing the value).
//! - CGI (httpoxy): when `REQUEST_METHOD` is set, the process serves a request whose
//!   `Proxy:` header arrived as `HTTP_PROXY`, so `HTTP_PROXY` is ignored. Go fails every
//!   `http` request then; we read `http_proxy` instead (a request header cannot set a
//!   lowercase variable), as curl does.

use std::sync::Arc;

use super::{Endpoint, NoProxy, Proxy, Serves};

/// The proxies the environment names, `http` first; `var` reads a variable (`None`: unset or
/// not Unicode).
pub(super) fn proxies(var: impl Fn(&str) -> Option<String>) -> Vec<Proxy> {
    let first = |names: &[&'static str]| {
        names
            .iter()
            .find_map(|&name| var(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
    };
    let cgi = var("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
    let http: &[&'static str] = if cgi {
        &["http_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy"]
    };
    let no_proxy = NoProxy::from_string(
        first(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v)
            .as_deref()
            .unwrap_or(""),
    );
    let mut list = Vec::new();
    for (serves, names) in [
        (Serves::Http, http),
        (Serves::Https, &["HTTPS_PROXY", "https_proxy"][..]),
    ] {
        let Some((name, value)) = first(names) else {
            continue;
        };
        let endpoint = Endpoint::parse(&value, false).unwrap_or_else(|_| {
            tracing::warn!(
                target: "pool_http",
                variable = name,
                "a proxy variable is not a URL: the requests it would carry fail"
            );
            Endpoint::not_a_url(name)
        });
        list.push(Proxy {
            serves,
            endpoint: Arc::new(endpoint),
            no_proxy: Some(no_proxy.clone()),
        });
    }
    list
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::Proxies;

    /// The proxies of an environment with these variables.
    fn env(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Proxies::from_env(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn via(proxies: &Proxies, url: &str) -> Option<String> {
        let origin = crate::Origin::routed(&url.parse().unwrap(), proxies).unwrap();
        origin.proxy().map(ToString::to_string)
    }

    #[test]
    fn each_scheme_has_its_variable_and_uppercase_wins() {
        let proxies = env(&[
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "http://lower:1"),
            ("https_proxy", "http://secure:2"),
        ]);
        assert_eq!(
            via(&proxies, "http://a.com/").as_deref(),
            Some("http://upper:1")
        );
        assert_eq!(
            via(&proxies, "https://a.com/").as_deref(),
            Some("http://secure:2")
        );
        // An empty value counts as unset.
        let proxies = env(&[("HTTP_PROXY", ""), ("http_proxy", "lower:3")]);
        assert_eq!(
            via(&proxies, "http://a.com/").as_deref(),
            Some("http://lower:3")
        );
        assert_eq!(via(&proxies, "https://a.com/"), None, "no https proxy");
        assert!(env(&[("HTTPS_PROXY", "")]).is_empty());
        assert!(env(&[]).is_empty());
    }

    #[test]
    fn a_value_without_a_scheme_is_http_and_one_that_is_no_url_fails_its_requests() {
        let proxies = env(&[
            ("HTTP_PROXY", "cache.corp:3128"),
            ("HTTPS_PROXY", "cache.corp"),
        ]);
        assert_eq!(
            via(&proxies, "http://a.com/").as_deref(),
            Some("http://cache.corp:3128")
        );
        assert_eq!(
            via(&proxies, "https://a.com/").as_deref(),
            Some("http://cache.corp:80")
        );
        let proxies = env(&[
            ("HTTP_PROXY", "u:s3cret@not a url"),
            ("https_proxy", "u:s3cret@h:8a"),
        ]);
        for (url, variable) in [
            ("http://a.com/", "HTTP_PROXY"),
            ("https://a.com/", "https_proxy"),
        ] {
            let origin = crate::Origin::routed(&url.parse().unwrap(), &proxies).unwrap();
            let proxy = origin.proxy().expect("kept, never direct");
            let refused = proxy.unsupported(|| origin.host_port()).expect("refused");
            let shown = format!("{refused} {refused:?} {proxies:?} {origin}");
            assert!(shown.contains(variable), "{shown}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(crate::Error::dial(refused).is_proxy());
        }
        // NO_PROXY still sends its hosts direct.
        let proxies = env(&[("HTTP_PROXY", "not a url"), ("NO_PROXY", "a.com")]);
        assert_eq!(via(&proxies, "http://a.com/"), None);
        // Another scheme is kept: its requests fail rather than go direct.
        let proxies = env(&[("HTTPS_PROXY", "socks5://s:1080")]);
        assert_eq!(
            via(&proxies, "https://a.com/").as_deref(),
            Some("socks5://s:1080")
        );
    }

    #[test]
    fn a_port_out_of_range_is_kept_so_that_its_requests_fail_rather_than_go_direct() {
        // Go's url.Parse takes any digits as a port, and the dial fails.
        let proxies = env(&[("HTTPS_PROXY", "u:s3cret@h:99999")]);
        let origin = crate::Origin::routed(&"https://a.com/".parse().unwrap(), &proxies).unwrap();
        let proxy = origin.proxy().expect("kept, not dropped");
        assert_eq!(proxy.to_string(), "http://h:99999");
        let refused = proxy.unsupported(|| origin.host_port()).expect("refused");
        let shown = format!("{refused} {refused:?}");
        assert!(shown.contains("ports are 1 to 65535"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let e = crate::Error::dial(refused);
        assert!(e.is_proxy(), "{e:?}");
        // A well-formed proxy is not refused.
        let proxies = env(&[("HTTPS_PROXY", "h:3128")]);
        let origin = crate::Origin::routed(&"https://a.com/".parse().unwrap(), &proxies).unwrap();
        assert!(origin.proxy().unwrap().unsupported(String::new).is_none());
    }

    #[test]
    fn request_method_makes_http_proxy_ignored_but_not_the_others() {
        let proxies = env(&[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
            ("HTTPS_PROXY", "http://secure:2"),
        ]);
        assert_eq!(via(&proxies, "http://a.com/"), None);
        assert_eq!(
            via(&proxies, "https://a.com/").as_deref(),
            Some("http://secure:2")
        );
        let proxies = env(&[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
            ("http_proxy", "http://mine:3"),
        ]);
        assert_eq!(
            via(&proxies, "http://a.com/").as_deref(),
            Some("http://mine:3")
        );
        // An empty REQUEST_METHOD is no CGI.
        let proxies = env(&[("REQUEST_METHOD", ""), ("HTTP_PROXY", "http://p:1")]);
        assert_eq!(
            via(&proxies, "http://a.com/").as_deref(),
            Some("http://p:1")
        );
    }

    #[test]
    fn no_proxy_applies_to_both_and_loopback_always_goes_direct() {
        let proxies = env(&[
            ("HTTP_PROXY", "p:1"),
            ("HTTPS_PROXY", "p:2"),
            ("NO_PROXY", "direct.com"),
            ("no_proxy", "ignored.com"),
        ]);
        assert_eq!(via(&proxies, "http://direct.com/"), None);
        assert_eq!(via(&proxies, "https://www.direct.com/"), None);
        assert!(
            via(&proxies, "http://ignored.com/").is_some(),
            "NO_PROXY wins"
        );
        for url in [
            "http://localhost:8080/",
            "https://127.0.0.1/",
            "http://[::1]/",
        ] {
            assert_eq!(via(&proxies, url), None, "{url}");
        }
        let proxies = env(&[("HTTP_PROXY", "p:1"), ("no_proxy", "lower.com")]);
        assert_eq!(via(&proxies, "http://lower.com/"), None);
    }

    #[test]
    fn http_targets_through_one_proxy_share_a_key_and_https_targets_do_not() {
        let proxies = env(&[("HTTP_PROXY", "p:1"), ("HTTPS_PROXY", "p:1")]);
        let key = |url: &str| crate::Origin::routed(&url.parse().unwrap(), &proxies).unwrap();
        assert_eq!(key("http://a.com/"), key("http://b.com:8080/"));
        let keys: HashSet<_> = [key("http://a.com/"), key("http://b.com:8080/")].into();
        assert_eq!(keys.len(), 1, "equal keys hash alike");
        assert_ne!(key("https://a.com/"), key("https://b.com/"));
        assert_eq!(key("https://a.com/x"), key("https://a.com/y"));
        assert_ne!(
            key("http://a.com/"),
            crate::Origin::from_url("http://a.com/").unwrap()
        );
        assert_eq!(
            key("http://a.com/").host(),
            "a.com",
            "the getters describe the target"
        );
        // The shared key names no target; a request's own messages name its target.
        assert_eq!(key("http://b.com/").to_string(), "http://* via http://p:1");
        assert_eq!(
            format!("{:?}", key("http://b.com/")),
            "http://* via http://p:1"
        );
        assert_eq!(
            key("http://b.com/").target().to_string(),
            "http://b.com:80 via http://p:1"
        );
        assert_eq!(
            key("https://b.com/").to_string(),
            "https://b.com:443 via http://p:1"
        );
    }
}

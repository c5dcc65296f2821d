//! `ClientBuilder` from serde (feature `serde`): every knob by its method name applied as the
//! setter would, the builder's defaults when absent, pool-core's duration syntax, unknown
//! fields refused, values the builder refuses refused by `build`, no proxy credentials in
//! errors or `Debug`; and a client read from JSON serves requests as its knobs say.
#![cfg(feature = "serde")]

mod support;

use std::time::Duration;

use hyper::Response;
use pool_http::redirect::Policy;
use pool_http::{Client, ClientBuilder, Drain, NoProxy, Proxy};
use support::{Server, full};

fn read(json: &str) -> Result<ClientBuilder, serde_json::Error> {
    serde_json::from_str(json)
}

/// The error text of a JSON the builder does not take.
fn refused(json: &str) -> String {
    match read(json) {
        Ok(b) => panic!("{json} was taken: {b:?}"),
        Err(e) => e.to_string(),
    }
}

fn debug(b: &ClientBuilder) -> String {
    format!("{b:?}")
}

#[test]
fn every_knob_read_is_applied_as_its_setter() {
    let b = read(
        r#"{
            "max_idle_conns": 7,
            "max_idle_conns_per_host": 3,
            "max_conns_per_host": 9,
            "idle_conn_timeout": "2m",
            "idle_grace": "45s",
            "disable_keep_alives": true,
            "connect_timeout": "5s",
            "tls_handshake_timeout": "3s 500ms",
            "tcp_keepalive": "15s",
            "response_header_timeout": "4s",
            "timeout": "1m 30s",
            "drain": { "max_bytes": 1024, "max_time": "20ms" },
            "redirect": { "limited": 3 },
            "disable_compression": true,
            "body_limit": 1048576,
            "http2_prior_knowledge": true,
            "proxy": [
                { "http": "http://u:pw@p1.corp:3128", "no_proxy": "internal.corp, 10.0.0.0/8" },
                "p2.corp:8080"
            ]
        }"#,
    )
    .unwrap();
    let by_hand = Client::builder()
        .max_idle_conns(7)
        .max_idle_conns_per_host(3)
        .max_conns_per_host(9)
        .idle_conn_timeout(Duration::from_secs(120))
        .idle_grace(Duration::from_secs(45))
        .disable_keep_alives(true)
        .connect_timeout(Duration::from_secs(5))
        .tls_handshake_timeout(Duration::from_millis(3500))
        .tcp_keepalive(Duration::from_secs(15))
        .response_header_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(90))
        .drain(Drain::new(1024, Duration::from_millis(20)))
        .redirect(Policy::limited(3))
        .disable_compression(true)
        .body_limit(1 << 20)
        .http2_prior_knowledge(true)
        .proxy(
            Proxy::http("http://u:pw@p1.corp:3128")
                .unwrap()
                .no_proxy(NoProxy::from_string("internal.corp, 10.0.0.0/8")),
        )
        .proxy(Proxy::all("p2.corp:8080").unwrap());
    assert_eq!(debug(&b), debug(&by_hand));
    assert_ne!(debug(&b), debug(&Client::builder()));
    b.build().unwrap();
}

#[test]
fn absent_knobs_keep_the_builders_defaults() {
    assert_eq!(debug(&read("{}").unwrap()), debug(&Client::builder()));
    assert_eq!(
        debug(&read(r#"{"max_conns_per_host": 4}"#).unwrap()),
        debug(&Client::builder().max_conns_per_host(4))
    );
    // A drain's absent field is `Drain::default()`'s.
    assert_eq!(
        debug(&read(r#"{"drain": {"max_time": "1s"}}"#).unwrap()),
        debug(&Client::builder().drain(Drain::default().with_max_time(Duration::from_secs(1))))
    );
    // `go_mode` first, so a knob given too wins; `false` is the default.
    assert_eq!(
        debug(&read(r#"{"go_mode": true}"#).unwrap()),
        debug(&Client::builder().go_mode())
    );
    assert_eq!(
        debug(&read(r#"{"go_mode": true, "drain": {"max_bytes": 4096}}"#).unwrap()),
        debug(
            &Client::builder()
                .go_mode()
                .drain(Drain::default().with_max_bytes(4096))
        )
    );
    assert_eq!(
        debug(&read(r#"{"go_mode": false, "no_proxy": false}"#).unwrap()),
        debug(&Client::builder())
    );
    // Zero means what it means to the setter: no keep-alive probes, no timeout.
    assert_eq!(
        debug(&read(r#"{"tcp_keepalive": "0s", "timeout": "0s"}"#).unwrap()),
        debug(
            &Client::builder()
                .tcp_keepalive(Duration::ZERO)
                .timeout(Duration::ZERO)
        )
    );
}

#[test]
fn redirect_and_proxy_forms() {
    assert_eq!(
        debug(&read(r#"{"redirect": "none"}"#).unwrap()),
        debug(&Client::builder().redirect(Policy::none()))
    );
    let limited = refused(r#"{"redirect": "limited"}"#);
    assert!(
        limited.contains(r#""none" or { "limited": 10 }"#),
        "{limited}"
    );
    let unknown = refused(r#"{"redirect": {"max": 3}}"#);
    assert!(unknown.contains("unknown field `max`"), "{unknown}");
    let unknown = refused(r#"{"redirect": "follow_all"}"#);
    assert!(
        unknown.contains("follow_all") && unknown.contains("none"),
        "{unknown}"
    );

    assert_eq!(
        debug(&read(r#"{"no_proxy": true}"#).unwrap()),
        debug(&Client::builder().no_proxy())
    );
    assert_eq!(
        debug(&read(r#"{"proxy": "http://proxy.corp:3128"}"#).unwrap()),
        debug(&Client::builder().proxy(Proxy::all("http://proxy.corp:3128").unwrap()))
    );
    assert_eq!(
        debug(&read(r#"{"proxy": {"https": "proxy.corp:3128"}}"#).unwrap()),
        debug(&Client::builder().proxy(Proxy::https("proxy.corp:3128").unwrap()))
    );
    assert_eq!(
        debug(&read(r#"{"proxy": [{"all": "a.corp"}, {"http": "b.corp"}]}"#).unwrap()),
        debug(
            &Client::builder()
                .proxy(Proxy::all("a.corp").unwrap())
                .proxy(Proxy::http("b.corp").unwrap())
        )
    );
    let two = refused(r#"{"proxy": {"http": "a.corp", "all": "b.corp"}}"#);
    assert!(two.contains("exactly one of"), "{two}");
    let none = refused(r#"{"proxy": {"no_proxy": "a.corp"}}"#);
    assert!(none.contains("exactly one of"), "{none}");
    let both = refused(r#"{"no_proxy": true, "proxy": "http://proxy.corp"}"#);
    assert!(both.contains("contradict"), "{both}");
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let e = refused(r#"{"max_conns": 3}"#);
    assert!(
        e.contains("unknown field `max_conns`") && e.contains("max_conns_per_host"),
        "{e}"
    );
    let e = refused(r#"{"drain": {"max_bytes": 1, "max_size": 2}}"#);
    assert!(e.contains("unknown field `max_size`"), "{e}");
    let e = refused(r#"{"proxy": {"all": "p.corp", "user": "svc"}}"#);
    assert!(e.contains("unknown field `user`"), "{e}");
    // Code's knobs are not data.
    for knob in ["tls", "hooks", "cookie_store", "pool"] {
        let e = refused(&format!(r#"{{"{knob}": {{}}}}"#));
        assert!(e.contains(&format!("unknown field `{knob}`")), "{e}");
    }
}

#[test]
fn a_bad_duration_is_refused() {
    let e = refused(r#"{"timeout": "10 parsecs"}"#);
    assert!(e.contains("parsecs") || e.contains("unit"), "{e}");
    // A bare number has no unit: refused, not read as seconds or milliseconds.
    assert!(read(r#"{"connect_timeout": 30}"#).is_err());
    assert!(read(r#"{"drain": {"max_time": "fast"}}"#).is_err());
    assert!(read(r#"{"max_idle_conns": -1}"#).is_err());
}

#[test]
fn values_the_builder_refuses_are_refused_by_build_naming_the_knob() {
    for (json, knob) in [
        (r#"{"connect_timeout": "0s"}"#, "connect_timeout"),
        (
            r#"{"tls_handshake_timeout": "0s"}"#,
            "tls_handshake_timeout",
        ),
        (r#"{"timeout": "400days"}"#, "timeout"),
        (r#"{"idle_grace": "2years"}"#, "idle_grace"),
        (r#"{"tcp_keepalive": "500ms"}"#, "tcp_keepalive"),
        (r#"{"drain": {"max_time": "400days"}}"#, "drain.max_time"),
    ] {
        let e = read(json).unwrap().build().unwrap_err();
        assert!(e.is_config(), "{json}: {e}");
        assert_eq!(e.knob(), Some(knob), "{json}: {e}");
    }
}

#[test]
fn a_proxy_password_is_never_in_an_error_or_debug() {
    const SECRET: &str = "hunter2";
    let taken = [
        r#"{"proxy": "http://svc:hunter2@proxy.corp:3128"}"#,
        r#"{"proxy": {"https": "svc:hunter2@proxy.corp", "no_proxy": "internal.corp"}}"#,
        r#"{"proxy": ["http://svc:hunter2@a.corp", {"http": "http://svc:hunter2@b.corp"}]}"#,
    ];
    for json in taken {
        let b = read(json).unwrap();
        let shown = debug(&b);
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("credentials: true"), "{shown}");
        let client = b.build().unwrap();
        assert!(!format!("{client:?}").contains(SECRET));
    }
    let refused_urls = [
        // TLS to the proxy is not spoken.
        r#"{"proxy": "https://svc:hunter2@proxy.corp"}"#,
        r#"{"proxy": {"all": "socks5://svc:hunter2@proxy.corp"}}"#,
        // A bad port.
        r#"{"proxy": "http://svc:hunter2@proxy.corp:99999"}"#,
        // A `#` in the password hides the `@`.
        r#"{"proxy": "http://svc:hun#ter2@proxy.corp"}"#,
        // Refused for another reason than the URL.
        r#"{"proxy": {"http": "http://svc:hunter2@a.corp", "all": "http://svc:hunter2@b.corp"}}"#,
        r#"{"no_proxy": true, "proxy": "http://svc:hunter2@proxy.corp"}"#,
        r#"{"proxy": "http://svc:hunter2@proxy.corp", "max_conns": 1}"#,
    ];
    for json in refused_urls {
        let e = refused(json);
        assert!(!e.contains(SECRET) && !e.contains("ter2"), "{e}");
        assert!(e.contains("proxy") || e.contains("max_conns"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_read_from_json_serves_requests_as_its_knobs_say() {
    let server = Server::start(|req| async move {
        let res = Response::builder();
        if req.uri().path() == "/" {
            res.status(302).header("location", "/next").body(full(0))
        } else {
            res.body(full(2))
        }
        .unwrap()
    })
    .await;

    // `redirect: "none"` returns the 302; `disable_keep_alives` dials for each request.
    let client = read(
        r#"{"no_proxy": true, "redirect": "none", "disable_keep_alives": true, "timeout": "10s"}"#,
    )
    .unwrap()
    .build()
    .unwrap();
    for _ in 0..2 {
        let res = client.get(&server.url("/")).await.unwrap();
        assert_eq!(res.status(), 302);
        res.bytes().await.unwrap();
    }
    assert_eq!(server.accepts(), 2);

    // The defaults: the redirect followed, one connection reused.
    let client = read(r#"{"no_proxy": true, "max_conns_per_host": 1}"#)
        .unwrap()
        .build()
        .unwrap();
    for _ in 0..2 {
        let res = client.get(&server.url("/")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().len(), 2);
    }
    assert_eq!(server.accepts(), 3);
}

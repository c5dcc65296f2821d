//! Proxies through a proxy written here (`support::test_proxy`, raw tokio TCP on loopback):
//! `http` URLs forwarded in absolute form over the proxy's shared connections, `https` URLs
//! through pooled `CONNECT` tunnels (ALPN `h2` inside), and each way a proxy can fail. The
//! environment's proxies are in `proxy_env.rs`.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Response;
use pool_http::{Client, ConnectError, Phase, Proxy};
use support::test_proxy::{Behaviour, TestProxy, header};
use support::{Server, full};
use tokio::net::TcpListener;

/// A port where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// base64("user:pa ss"), base64("u:p").
const USER_PA_SS: &str = "Basic dXNlcjpwYSBzcw==";
const U_P: &str = "Basic dTpw";

#[tokio::test]
async fn http_urls_go_to_the_proxy_in_absolute_form_over_one_connection() {
    let server = Server::start(|req| async move {
        assert_eq!(req.uri().scheme_str(), Some("http"), "absolute form");
        Response::new(full(5))
    })
    .await;
    let proxy = TestProxy::start(Behaviour::Forward, Some(USER_PA_SS)).await;
    let url = format!("http://user:pa%20ss@{}", proxy.addr);
    let client = Client::builder()
        .proxy(Proxy::http(&url).unwrap())
        .build()
        .unwrap();
    for i in 0..3 {
        let response = client
            .get(&server.url(&format!("/a{i}?q=1")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.into_body().bytes().await.unwrap().len(), 5);
    }
    assert_eq!(proxy.accepts(), 1, "one proxy connection carried the three");
    assert_eq!(client.stats().pool.created, 1);
    assert_eq!(server.accepts(), 1);
    let heads = proxy.heads();
    assert_eq!(heads.len(), 3);
    for (i, head) in heads.iter().enumerate() {
        let line = format!("GET http://{}/a{i}?q=1 HTTP/1.1\r\n", server.addr);
        assert!(head.starts_with(&line), "{head}");
        assert_eq!(header(head, "host"), Some(server.addr.to_string()));
        assert_eq!(
            header(head, "proxy-authorization").as_deref(),
            Some(USER_PA_SS)
        );
    }
}

#[tokio::test]
async fn every_http_target_shares_the_proxys_connections() {
    let a = Server::sized(1).await;
    let b = Server::sized(2).await;
    let proxy = TestProxy::start(Behaviour::Forward, None).await;
    let client = Client::builder()
        .proxy(Proxy::all(&proxy.url()).unwrap())
        .build()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(support::bytes(&client, &a.url("/")).await.len(), 1);
        assert_eq!(support::bytes(&client, &b.url("/")).await.len(), 2);
    }
    assert_eq!(
        proxy.accepts(),
        1,
        "Go keys http through a proxy by the proxy alone"
    );
    assert_eq!(client.stats().pool.created, 1);
    assert_eq!((a.accepts(), b.accepts()), (1, 1));
    assert!(proxy.heads()[1].starts_with(&format!("GET http://{}/ ", b.addr)));
}

/// The keys the pool's hooks saw, as `Display` shows them.
#[derive(Clone, Default)]
struct Keys(Arc<Mutex<Vec<String>>>);

impl pool_http::Hooks<pool_http::Origin> for Keys {
    fn get_conn(&self, key: &pool_http::Origin) {
        self.0.lock().unwrap().push(key.to_string());
    }

    fn create_start(&self, key: &pool_http::Origin) {
        self.0.lock().unwrap().push(key.to_string());
    }
}

#[tokio::test]
async fn the_shared_key_of_a_forward_proxy_names_no_target_and_errors_name_their_own() {
    // All http targets of a forward proxy are one pool key, made by whichever came first:
    // its Display must not put that host on every other target's hooks, metrics and logs.
    let proxy = TestProxy::start(Behaviour::Answer, None).await;
    let keys = Keys::default();
    let client = Client::builder()
        .proxy(Proxy::http(&proxy.url()).unwrap())
        .hooks(keys.clone())
        .build()
        .unwrap();
    for host in ["first-target.invalid", "second-target.invalid"] {
        let text = client
            .get(&format!("http://{host}/x"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, "proxied");
    }
    assert_eq!(proxy.accepts(), 1, "one key, one connection");
    let shared = format!("http://* via {}", proxy.url());
    let seen = keys.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for key in &seen {
        assert_eq!(key, &shared, "{seen:?}");
    }
    #[cfg(feature = "metrics")]
    {
        let capture = pool_core::testing::metrics::Capture::default();
        metrics::with_local_recorder(&capture, || client.record_metrics("p"));
        let names: Vec<_> = capture.all().keys().cloned().collect();
        assert!(
            names.iter().any(|n| n.contains(&format!("key={shared}"))),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("target")), "{names:?}");
    }

    // A request's own error names its own target, whichever made the key.
    let closing = TestProxy::start(Behaviour::Close, None).await;
    let client = Client::builder()
        .proxy(Proxy::http(&closing.url()).unwrap())
        .build()
        .unwrap();
    for host in ["first-target.invalid", "second-target.invalid"] {
        let err = client.get(&format!("http://{host}/x")).await.unwrap_err();
        let want = format!("http://{host}:80 via {}", closing.url());
        assert!(err.to_string().contains(&want), "{err}");
        assert!(format!("{err:?}").contains(&want), "{err:?}");
    }
}

#[tokio::test]
async fn two_credentials_for_one_proxy_never_share_a_connection() {
    let proxy = TestProxy::start(Behaviour::Answer, None).await;
    let addr = proxy.addr;
    // The same proxy twice, with other credentials for `b.invalid`.
    let client = Client::builder()
        .proxy(
            Proxy::http(&format!("http://a:1@{addr}"))
                .unwrap()
                .no_proxy(pool_http::NoProxy::from_string("b.invalid")),
        )
        .proxy(
            Proxy::http(&format!("http://{addr}"))
                .unwrap()
                .basic_auth("b", "2"),
        )
        .build()
        .unwrap();
    for _ in 0..2 {
        for host in ["a.invalid", "b.invalid"] {
            let response = client.get(&format!("http://{host}/")).await.unwrap();
            assert_eq!(response.text().await.unwrap(), "proxied");
        }
    }
    assert_eq!(proxy.accepts(), 2, "one connection per credential");
    assert_eq!(client.stats().pool.created, 2);
    let heads = proxy.heads();
    assert_eq!(heads.len(), 4);
    for head in &heads {
        let auth = header(head, "proxy-authorization").unwrap();
        let target = head.split_whitespace().nth(1).unwrap();
        // base64("a:1"), base64("b:2").
        let want = if target.contains("a.invalid") {
            "Basic YTox"
        } else {
            "Basic Yjoy"
        };
        assert_eq!(auth, want, "{head}");
    }
}

#[tokio::test]
async fn a_forward_proxy_gets_http1_even_with_http2_prior_knowledge() {
    let server = Server::sized(3).await;
    let proxy = TestProxy::start(Behaviour::Forward, None).await;
    let client = Client::builder()
        .http2_prior_knowledge(true)
        .proxy(Proxy::http(&proxy.url()).unwrap())
        .build()
        .unwrap();
    for _ in 0..2 {
        let response = client.get(&server.url("/")).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert_eq!(response.into_body().bytes().await.unwrap().len(), 3);
    }
    assert_eq!(proxy.accepts(), 1);
    let head = &proxy.heads()[0];
    assert!(head.starts_with(&format!("GET http://{}/ HTTP/1.1\r\n", server.addr)));
    assert_eq!(header(head, "host"), Some(server.addr.to_string()));
}

#[tokio::test]
async fn a_forward_proxys_own_407_is_the_response() {
    let server = Server::sized(1).await;
    let proxy = TestProxy::start(Behaviour::Forward, Some("Basic right")).await;
    let client = Client::builder()
        .proxy(Proxy::http(&proxy.url()).unwrap().basic_auth("u", "wrong"))
        .build()
        .unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    assert_eq!(
        response.status(),
        407,
        "as Go: the proxy's answer is the response"
    );
    assert_eq!(server.accepts(), 0);
}

#[tokio::test]
async fn https_urls_go_through_one_reused_connect_tunnel() {
    let (server, root) = Server::start_tls(&[b"http/1.1"], |req| async move {
        assert_eq!(
            req.uri().scheme_str(),
            None,
            "origin form inside the tunnel"
        );
        Response::new(full(7))
    })
    .await;
    // Another server, with a certificate of its own (not trusted).
    let (other, _) = Server::start_tls(&[b"http/1.1"], |_| async { Response::new(full(1)) }).await;
    let proxy = TestProxy::start(Behaviour::Forward, Some(U_P)).await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .proxy(Proxy::https(&proxy.url()).unwrap().basic_auth("u", "p"))
        .build()
        .unwrap();
    let url = format!("https://{}/x", server.addr);
    for _ in 0..3 {
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert_eq!(response.into_body().bytes().await.unwrap().len(), 7);
    }
    assert_eq!(proxy.accepts(), 1, "the tunnel is pooled and reused");
    assert_eq!(server.accepts(), 1);
    let target = server.addr.to_string();
    assert_eq!(
        proxy.heads(),
        [format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {U_P}\r\n\r\n"
        )]
    );
    // Another target is another tunnel (its certificate is not trusted: the tunnel opened,
    // then TLS failed inside it).
    let err = client
        .get(&format!("https://{}/", other.addr))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{}", support::chain(&err));
    assert_eq!(
        proxy.accepts(),
        2,
        "each (proxy, target) has its own tunnels"
    );
    assert_eq!(other.accepts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_works_through_the_tunnel() {
    let (server, root) = Server::start_tls(&[b"h2", b"http/1.1"], |req| async move {
        assert_eq!(req.version(), hyper::Version::HTTP_2);
        Response::new(full(4))
    })
    .await;
    let proxy = TestProxy::start(Behaviour::Forward, None).await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .proxy(Proxy::all(&proxy.url()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://{}/", server.addr);
    let first = client.get(&url).await.unwrap();
    assert_eq!(first.version(), hyper::Version::HTTP_2);
    first.into_body().bytes().await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).await.unwrap().into_body().bytes().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().len(), 4);
    }
    assert_eq!(proxy.accepts(), 1, "one tunnel carried every stream");
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_407_to_connect_is_a_proxy_error_that_names_the_status_and_no_credential() {
    const SECRET: &str = "hunter2-secret";
    let proxy = TestProxy::start(Behaviour::Forward, Some("Basic right")).await;
    let url = format!("http://user:{SECRET}@{}", proxy.addr);
    let builder = Client::builder().proxy(Proxy::https(&url).unwrap());
    let shown_builder = format!("{builder:?}");
    let client = builder.build().unwrap();
    let err = client.get("https://example.invalid/").await.unwrap_err();
    assert!(err.is_proxy(), "{}", support::chain(&err));
    assert!(err.is_connect());
    assert!(!err.is_timeout());
    assert!(matches!(
        err.connect_error(),
        Some(ConnectError::Proxy { status: Some(s), .. }) if s.as_u16() == 407
    ));
    let report = support::chain(&err);
    assert!(
        report.contains("407 Proxy Authentication Required"),
        "{report}"
    );
    assert!(report.contains("example.invalid:443"), "{report}");
    assert!(report.contains(&format!("via {}", proxy.url())), "{report}");
    // base64 of "user:hunter2-secret" starts with this.
    let encoded = "dXNlcjpodW50ZXIyLXNlY3JldA";
    for shown in [
        report,
        format!("{err:?}"),
        format!("{err:#?}"),
        shown_builder,
        format!("{client:?}"),
        format!("{:?}", Proxy::all(&url).unwrap()),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(encoded), "{shown}");
    }
}

#[tokio::test]
async fn a_proxy_that_refuses_connections_is_a_connect_error_naming_it() {
    let gone = closed_port().await;
    let client = Client::builder()
        .proxy(Proxy::all(&format!("http://{gone}")).unwrap())
        .build()
        .unwrap();
    for url in ["http://example.invalid/", "https://example.invalid/"] {
        let err = client.get(url).await.unwrap_err();
        assert!(err.is_connect(), "{}", support::chain(&err));
        assert!(err.is_connect_refused(), "{}", support::chain(&err));
        assert!(!err.is_proxy());
        let report = support::chain(&err);
        assert!(report.contains(&format!("via http://{gone}")), "{report}");
        assert!(
            report.contains(&format!("connect to {gone} refused")),
            "{report}"
        );
    }
}

#[tokio::test]
async fn a_proxy_silent_after_connect_is_a_connect_timeout() {
    let proxy = TestProxy::start(Behaviour::Silent, None).await;
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(300))
        .proxy(Proxy::all(&proxy.url()).unwrap())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get("https://example.invalid/").await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout(), "{}", support::chain(&err));
    assert_eq!(err.timeout_phase(), Some(Phase::Connect));
    assert!(err.is_proxy() && err.is_connect());
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        support::chain(&err).contains("no answer to CONNECT"),
        "{}",
        support::chain(&err)
    );
}

#[tokio::test]
async fn an_endless_header_from_the_proxy_is_cut_at_8_kib() {
    let proxy = TestProxy::start(Behaviour::EndlessHeader, None).await;
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .proxy(Proxy::https(&proxy.url()).unwrap())
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get("https://example.invalid/").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by size, not time"
    );
    assert!(err.is_proxy(), "{}", support::chain(&err));
    assert!(!err.is_timeout());
    assert!(
        support::chain(&err).contains("over 8192 bytes"),
        "{}",
        support::chain(&err)
    );
}

#[tokio::test]
async fn a_proxy_that_closes_or_answers_garbage_is_a_proxy_error() {
    for (behaviour, says) in [
        (
            Behaviour::Close,
            "closed the connection before answering CONNECT",
        ),
        (Behaviour::Garbage, "not an HTTP/1.x response"),
    ] {
        let proxy = TestProxy::start(behaviour, None).await;
        let client = Client::builder()
            .proxy(Proxy::https(&proxy.url()).unwrap())
            .build()
            .unwrap();
        let err = client.get("https://example.invalid/").await.unwrap_err();
        assert!(
            err.is_proxy() && err.is_connect(),
            "{}",
            support::chain(&err)
        );
        assert!(
            support::chain(&err).contains(says),
            "{behaviour:?}: {}",
            support::chain(&err)
        );
        assert_eq!(proxy.heads().len(), 1);
    }
}

#[tokio::test]
async fn a_proxy_of_one_scheme_leaves_the_other_direct() {
    let server = Server::sized(1).await;
    let proxy = TestProxy::start(Behaviour::Forward, None).await;
    let client = Client::builder()
        .proxy(Proxy::https(&proxy.url()).unwrap())
        .build()
        .unwrap();
    support::bytes(&client, &server.url("/")).await;
    assert_eq!(proxy.accepts(), 0);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn no_proxy_drops_the_proxies_given_before() {
    let server = Server::sized(1).await;
    let proxy = TestProxy::start(Behaviour::Forward, None).await;
    let builder = Client::builder()
        .proxy(Proxy::all(&proxy.url()).unwrap())
        .no_proxy();
    assert!(
        format!("{builder:?}").contains("proxies: []"),
        "{builder:?}"
    );
    let client = builder.build().unwrap();
    support::bytes(&client, &server.url("/")).await;
    assert_eq!(proxy.accepts(), 0);
    assert_eq!(server.accepts(), 1);
}

#[test]
fn https_and_other_schemes_are_refused_as_proxy_urls() {
    for url in ["https://proxy.corp:443", "socks5://proxy.corp"] {
        let err = Proxy::all(url).unwrap_err();
        assert!(err.is_invalid_url(), "{err}");
    }
    let err = Proxy::http("https://user:secret@proxy.corp").unwrap_err();
    assert!(err.to_string().contains("https:// proxy"), "{err}");
    assert!(!format!("{err} {err:?}").contains("secret"));
    assert!(Proxy::http("proxy.corp:3128").is_ok(), "no scheme: http");
}

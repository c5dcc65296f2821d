//! Proxies through a proxy written here (raw tokio TCP on loopback): `http` URLs forwarded in
//! absolute form over the proxy's shared connections, `https` URLs through pooled `CONNECT`
//! tunnels (ALPN `h2` inside), each way a proxy can fail, and the environment's proxies (in a
//! child process, as the process environment cannot be changed here).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Response;
use pool_http::{Client, ConnectError, Phase, Proxy};
use support::{Server, full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// A real proxy: tunnels `CONNECT`, forwards absolute-form requests to their target.
    Forward,
    /// Answers every absolute-form request itself with `proxied`.
    Answer,
    /// Reads the request, then never answers (and keeps the connection open).
    Silent,
    /// Answers `CONNECT` with a status line, then header lines without end.
    EndlessHeader,
    /// Closes the connection once it has read the request.
    Close,
    /// Answers with something that is not HTTP.
    Garbage,
}

/// A proxy on loopback that records each request head it reads.
struct TestProxy {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// `auth`: the `Proxy-Authorization` value it requires (407 otherwise).
    async fn start(behaviour: Behaviour, auth: Option<&str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepts.clone(), heads.clone());
        let auth = auth.map(str::to_owned);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour, auth.clone(), h.clone()));
            }
        });
        TestProxy {
            addr,
            accepts,
            heads,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection of the proxy.
async fn serve(
    mut client: TcpStream,
    behaviour: Behaviour,
    auth: Option<String>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut upstreams: HashMap<String, TcpStream> = HashMap::new();
    while let Some(head) = read_head(&mut client).await {
        heads.lock().unwrap().push(head.clone());
        match behaviour {
            Behaviour::Silent => std::future::pending::<()>().await,
            Behaviour::Close => return,
            Behaviour::Garbage => {
                let _ = client.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
                return;
            }
            Behaviour::EndlessHeader => {
                let _ = client.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let line = format!("x-endless: {}\r\n", "a".repeat(1000));
                while client.write_all(line.as_bytes()).await.is_ok() {}
                return;
            }
            Behaviour::Forward | Behaviour::Answer => {}
        }
        if auth.is_some() && header(&head, "proxy-authorization") != auth {
            let denied = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                          proxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n";
            if client.write_all(denied.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap(), words.next().unwrap().to_owned());
        if method == "CONNECT" {
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(ok).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            return;
        }
        if behaviour == Behaviour::Answer {
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nproxied";
            if client.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        // Absolute form: relay the request (heads and empty bodies only) and one response.
        let uri: http::Uri = target.parse().unwrap();
        let authority = uri.authority().unwrap().to_string();
        if !upstreams.contains_key(&authority) {
            let Ok(upstream) = TcpStream::connect(&authority).await else {
                return;
            };
            upstreams.insert(authority.clone(), upstream);
        }
        let upstream = upstreams.get_mut(&authority).unwrap();
        if upstream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let Some(response) = read_head(upstream).await else {
            return;
        };
        let len = header(&response, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0u8; len];
        if upstream.read_exact(&mut body).await.is_err()
            || client.write_all(response.as_bytes()).await.is_err()
            || client.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

/// A head up to its blank line, byte by byte (so nothing after it is taken); `None` at EOF.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8(head).unwrap())
}

/// The value of header `name` in `head`.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

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

// The environment's proxies, in a child process run with the variables set.

/// Set in the child: which case it runs, and the proxy's address.
const CHILD_CASE: &str = "POOL_HTTP_TEST_PROXY_CHILD";
const CHILD_MARK: &str = "proxy child done:";
/// A host that only the proxy (which answers itself) can serve.
const ELSEWHERE: &str = "http://pool-http-proxy-test.invalid/x";

/// Runs [`env_child`] with `case` and `vars` (every proxy variable of the parent removed).
async fn run_child(case: &'static str, vars: &[(&'static str, String)]) {
    let exe = std::env::current_exe().unwrap();
    let vars = vars.to_vec();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(exe);
        command.args(["--exact", "env_child", "--nocapture"]);
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
            "REQUEST_METHOD",
            "ALL_PROXY",
            "all_proxy",
        ] {
            command.env_remove(name);
        }
        command.env(CHILD_CASE, case).envs(vars).output().unwrap()
    })
    .await
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{out}");
    assert!(
        out.contains(&format!("{CHILD_MARK} {case}")),
        "the child did not run its body:\n{out}"
    );
}

#[tokio::test]
async fn the_environments_proxies_are_read_at_build() {
    let proxy = TestProxy::start(Behaviour::Answer, None).await;
    let url = proxy.url();
    run_child("proxied", &[("HTTP_PROXY", url.clone())]).await;
    assert_eq!(proxy.heads().len(), 1);
    assert!(proxy.heads()[0].starts_with(&format!("GET {ELSEWHERE} HTTP/1.1")));
    // Scheme-less, lowercase.
    let bare = proxy.addr.to_string();
    run_child("proxied", &[("http_proxy", bare.clone())]).await;
    assert_eq!(proxy.heads().len(), 2);
    // `no_proxy()`, NO_PROXY, and CGI's HTTP_PROXY go direct (and fail: no such host).
    run_child("direct", &[("HTTP_PROXY", url.clone())]).await;
    run_child(
        "env_direct",
        &[
            ("HTTP_PROXY", url.clone()),
            ("NO_PROXY", "example.com,.invalid".into()),
        ],
    )
    .await;
    run_child(
        "env_direct",
        &[("HTTP_PROXY", url), ("REQUEST_METHOD", "GET".into())],
    )
    .await;
    assert_eq!(proxy.heads().len(), 2, "none of those reached the proxy");
    // A proxy of a scheme the client does not speak fails its requests: never direct.
    run_child(
        "unsupported",
        &[("HTTPS_PROXY", "socks5://127.0.0.1:1".into())],
    )
    .await;
}

#[tokio::test]
async fn an_environment_proxy_with_a_port_out_of_range_fails_its_requests_never_direct() {
    // Go's url.Parse takes any digits as a port; its dial fails. Dropping the variable would
    // send the traffic direct, around the proxy the environment asked for.
    run_child(
        "bad_port",
        &[(
            "HTTPS_PROXY",
            format!("envuser:{ENV_SECRET}@127.0.0.1:99999"),
        )],
    )
    .await;
}

#[tokio::test]
async fn an_environment_proxys_credentials_are_never_shown() {
    let proxy = TestProxy::start(Behaviour::Close, None).await;
    let url = format!("http://envuser:{ENV_SECRET}@{}", proxy.addr);
    run_child(
        "env_secret",
        &[("HTTP_PROXY", url.clone()), ("HTTPS_PROXY", url)],
    )
    .await;
    assert!(!proxy.heads().is_empty(), "the requests went to the proxy");
}

/// The password of the environment's proxies in [`env_child`].
const ENV_SECRET: &str = "EnvPr0xyPw";

/// The child of [`the_environments_proxies_are_read_at_build`]: does nothing unless run by
/// it.
#[test]
fn env_child() {
    let Ok(case) = std::env::var(CHILD_CASE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let builder = Client::builder().connect_timeout(Duration::from_secs(3));
        match case.as_str() {
            "proxied" => {
                let client = builder.build().unwrap();
                let text = client.get(ELSEWHERE).await.unwrap().text().await.unwrap();
                assert_eq!(text, "proxied");
            }
            "direct" | "env_direct" => {
                let builder = if case == "direct" {
                    builder.no_proxy()
                } else {
                    builder
                };
                let client = builder.build().unwrap();
                let err = client.get(ELSEWHERE).await.unwrap_err();
                assert!(err.is_connect(), "{}", support::chain(&err));
                assert!(
                    !support::chain(&err).contains(" via "),
                    "{}",
                    support::chain(&err)
                );
            }
            "unsupported" => {
                let client = builder.build().unwrap();
                let url = "https://pool-http-proxy-test.invalid/";
                let err = client.get(url).await.unwrap_err();
                assert!(err.is_proxy(), "{}", support::chain(&err));
                assert!(
                    support::chain(&err).contains("`socks5`"),
                    "{}",
                    support::chain(&err)
                );
            }
            "bad_port" => {
                let client = builder.build().unwrap();
                let err = client
                    .get("https://pool-http-proxy-test.invalid/")
                    .await
                    .unwrap_err();
                assert!(err.is_proxy(), "{}", support::chain(&err));
                let shown = format!("{} {err:?}", support::chain(&err));
                assert!(shown.contains("ports are 1 to 65535"), "{shown}");
                assert!(!shown.contains(ENV_SECRET), "{shown}");
            }
            "env_secret" => {
                let capture = pool_core::testing::spans::Capture::new();
                tracing::subscriber::set_global_default(capture.clone()).unwrap();
                let shown = format!("{builder:?}");
                assert!(!shown.contains(ENV_SECRET), "{shown}");
                let client = builder.build().unwrap();
                let mut shown = format!("{client:?}");
                for url in [ELSEWHERE, "https://pool-http-proxy-test.invalid/"] {
                    let err = client.get(url).await.unwrap_err();
                    assert!(
                        support::chain(&err).contains(" via "),
                        "{}",
                        support::chain(&err)
                    );
                    shown.push_str(&format!("{} {err:?}", support::chain(&err)));
                }
                shown.push_str(&format!("{client:?}"));
                let spans = capture.spans();
                assert!(spans.iter().any(|s| s.name == "request"), "{spans:?}");
                for span in spans {
                    shown.push_str(&format!("{span:?}"));
                }
                assert!(!shown.contains(ENV_SECRET), "{shown}");
                assert!(!shown.contains("envuser"), "{shown}");
            }
            other => panic!("unknown case {other}"),
        }
    });
    println!("{CHILD_MARK} {case}");
}

//! A proxy's credentials (in its URL or from [`Proxy::basic_auth`]) go on the wire as
//! `Proxy-Authorization` and nowhere else: not in the `Debug` of the builder or the client,
//! not in an error's `Display`, `Debug` or source chain, not in a span field. The
//! environment's proxies are checked the same way in `tests/proxy.rs` (a child process).

mod support;

use pool_http::{Client, Proxy};
use support::{Raw, read_request};
use tokio::io::AsyncWriteExt;

const URL_SECRET: &str = "UrlPr0xyPw";
const AUTH_SECRET: &str = "AuthPr0xyPw";

/// The error, its `Debug` and its whole source chain.
fn shown(err: &pool_http::Error) -> String {
    let mut out = format!("{err} {err:?}");
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        out.push_str(&format!(": {e} {e:?}"));
        cause = e.source();
    }
    out
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [URL_SECRET, AUTH_SECRET, "svcuser"] {
        assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
    }
}

#[tokio::test]
async fn proxy_credentials_never_show_in_debug_errors_or_spans() {
    let capture = support::span_capture();
    // A proxy that asks for other credentials (407 to CONNECT) and closes after a forwarded
    // request: both kinds of proxy error, each with credentials sent.
    let proxy = Raw::start(|mut stream, _| async move {
        let Some(head) = read_request(&mut stream).await else {
            return;
        };
        if head.starts_with("CONNECT ") {
            let denied = "HTTP/1.1 407 Proxy Authentication Required\r\n\
                          proxy-authenticate: Basic realm=\"x\"\r\ncontent-length: 0\r\n\r\n";
            let _ = stream.write_all(denied.as_bytes()).await;
        }
    })
    .await;
    let proxies = [
        Proxy::all(&format!("http://svcuser:{URL_SECRET}@{}", proxy.addr)).unwrap(),
        Proxy::all(&format!("http://{}", proxy.addr))
            .unwrap()
            .basic_auth("svcuser", AUTH_SECRET),
    ];
    for p in proxies {
        assert_no_secret("Proxy Debug", &format!("{p:?}"));
        let builder = Client::builder().proxy(p);
        assert_no_secret("ClientBuilder Debug", &format!("{builder:?}"));
        let client = builder.build().unwrap();
        assert_no_secret("Client Debug", &format!("{client:?}"));
        let err = client.get("http://target.invalid/x?q=1").await.unwrap_err();
        assert!(shown(&err).contains(" via "), "{}", shown(&err));
        assert_no_secret("a forwarded request's error", &shown(&err));
        let err = client.get("https://target.invalid/").await.unwrap_err();
        assert!(err.is_proxy(), "{}", shown(&err));
        assert_no_secret("a CONNECT error", &shown(&err));
        assert_no_secret("Client Debug after use", &format!("{client:?}"));
    }
    let spans = capture.spans();
    let requests = spans.iter().filter(|s| s.name == "request").count();
    assert_eq!(requests, 4, "{spans:#?}");
    for span in &spans {
        assert_no_secret("a span", &format!("{:?}", span.fields));
    }
}

//! The environment's proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, CGI's
//! `REQUEST_METHOD`) end to end, each case in a child process run with the variables set (the
//! process environment cannot be changed here), against the proxy of `support::test_proxy`.

mod support;

use std::time::Duration;

use pool_http::Client;
use support::test_proxy::{Behaviour, TestProxy};

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

/// A proxy variable that is no URL fails the requests it would carry, naming the variable and
/// never its value: dropping it would send the traffic direct, around the proxy the
/// environment asked for.
#[tokio::test]
async fn an_environment_proxy_that_is_no_url_fails_its_requests_never_direct() {
    run_child(
        "not_a_url",
        &[
            (
                "HTTP_PROXY",
                format!("http://envuser:{ENV_SECRET}@bad host:3128"),
            ),
            ("https_proxy", format!("envuser:{ENV_SECRET}@h:8a")),
        ],
    )
    .await;
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
            "not_a_url" => {
                let client = builder.build().unwrap();
                for (url, variable) in [
                    (ELSEWHERE, "HTTP_PROXY"),
                    ("https://pool-http-proxy-test.invalid/", "https_proxy"),
                ] {
                    let err = client.get(url).await.unwrap_err();
                    let shown = format!("{} {err:?} {client:?}", support::chain(&err));
                    assert!(err.is_proxy(), "{shown}");
                    assert!(shown.contains(variable), "{shown}");
                    assert!(!shown.contains(ENV_SECRET), "{shown}");
                    assert!(!shown.contains("envuser"), "{shown}");
                }
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

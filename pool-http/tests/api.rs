//! The public API's promises (issue 19): the main types are `Send + Sync` (a builder made
//! in one task is built in another), every public type is `Debug`, and no `Debug` prints a
//! secret: URL userinfo, the rustls config (its key log, client key, verifier) or the hooks.

mod support;

use std::error::Error as _;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use pool_http::{
    Body, BoxError, Client, ClientBuilder, ClientStats, CloseReason, ConnectError, Drain, Error,
    GotConn, Hooks, Origin, Phase, RequestBody, Response, Returned, Stats, Upgraded,
};
use support::Raw;

const SECRET: &str = "S3cr3tPW";

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}
fn assert_debug<T: Debug + ?Sized>() {}

#[test]
fn the_main_types_are_send_and_sync() {
    assert_send_sync::<Client>();
    assert_send_sync::<ClientBuilder>();
    assert_send_sync::<Response>();
    assert_send_sync::<Body>();
    assert_send_sync::<Error>();
    assert_send_sync::<ConnectError>();
    assert_send_sync::<ClientStats>();
    assert_send_sync::<Drain>();
    assert_send_sync::<Origin>();
    assert_send_sync::<Phase>();
    // A streamed request body need not be `Sync`; an upgraded connection is hyper's.
    assert_send::<RequestBody>();
    assert_send::<Upgraded>();
}

#[test]
fn every_public_type_is_debug() {
    assert_debug::<Client>();
    assert_debug::<ClientBuilder>();
    assert_debug::<ClientStats>();
    assert_debug::<Response>();
    assert_debug::<Body>();
    assert_debug::<Upgraded>();
    assert_debug::<RequestBody>();
    assert_debug::<BoxError>();
    assert_debug::<Drain>();
    assert_debug::<Error>();
    assert_debug::<ConnectError>();
    assert_debug::<Phase>();
    assert_debug::<Origin>();
    assert_debug::<Stats>();
    assert_debug::<GotConn>();
    assert_debug::<Returned>();
    assert_debug::<CloseReason>();
}

/// Hooks that keep a secret of the caller's (an audit token), as a real tracer might.
#[derive(Debug)]
struct Audit {
    #[allow(dead_code)] // read by the derived `Debug` only
    token: String,
    got: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hooks<Origin> for Audit {
    fn got_conn(&self, _: &Origin, _: &GotConn) {
        self.got.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_builder_with_hooks_moves_to_another_task_and_builds_there() {
    let server = Raw::answering("hello").await;
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let builder = Client::builder().max_conns_per_host(4).hooks(Audit {
        token: SECRET.to_owned(),
        got: got.clone(),
    });
    let client = tokio::spawn(async move { builder.build() })
        .await
        .unwrap()
        .unwrap();
    // And the client moves back and forth too.
    let url = server.url("/");
    let text = tokio::spawn(async move { client.get(&url).await?.into_body().text().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "hello");
    assert_eq!(
        got.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the hooks ran"
    );
}

/// A key log that holds a secret (say, the token of the service it uploads to): rustls's
/// own `Debug` of its config shows it.
#[derive(Debug)]
struct KeyLogSink {
    #[allow(dead_code)] // read by the derived `Debug` only
    token: &'static str,
}

impl rustls::KeyLog for KeyLogSink {
    fn log(&self, _: &str, _: &[u8], _: &[u8]) {}
}

fn tls_config_with_a_secret() -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    config.key_log = Arc::new(KeyLogSink { token: SECRET });
    config
}

#[tokio::test]
async fn no_debug_prints_url_userinfo_the_tls_config_or_the_hooks() {
    let server = Raw::answering("hello").await;
    let config = tls_config_with_a_secret();
    // The secret is there to leak: rustls prints it.
    assert!(format!("{config:?}").contains(SECRET));
    let builder = Client::builder()
        .max_conns_per_host(16)
        .tls(config)
        .hooks(Audit {
            token: SECRET.to_owned(),
            got: Arc::default(),
        });
    let shown = format!("{builder:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    // Still useful: the knobs, and whether TLS and hooks are set.
    for field in [
        "max_conns_per_host: 16",
        "tls: true",
        "hooks: true",
        "drain: Drain",
    ] {
        assert!(shown.contains(field), "{field} missing from {shown}");
    }
    let client = builder.build().unwrap();

    let url = format!("http://user:{SECRET}@{}/a", server.addr);
    let response = client.get(&url).await.unwrap();
    let mut shown = vec![format!("{response:?}"), format!("{:?}", response.body())];
    shown.push(format!("{client:?}"));
    shown.push(format!("{:?}", client.stats()));
    assert_eq!(response.into_body().text().await.unwrap(), "hello");
    let origin = Origin::from_url(&url).unwrap();
    shown.push(format!("{origin:?}"));
    shown.push(format!("{:?}", client.host_stats(&origin)));

    // Errors of every stage, from URLs with the userinfo.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("http://user:{SECRET}@127.0.0.1:{port}/"), // refused
        format!("https://user:{SECRET}@127.0.0.1:{port}/"), // refused, over TLS
        format!("http://user:{SECRET}@127.0.0.1:65536/"),  // invalid
        format!("ftp://user:{SECRET}@127.0.0.1/"),         // invalid
    ] {
        let err = client.get(&url).await.unwrap_err();
        shown.push(format!("{err:?}"));
        shown.push(format!("{err:#?}"));
        let mut cause = err.source();
        while let Some(e) = cause {
            shown.push(format!("{e:?}"));
            cause = e.source();
        }
    }
    shown.push(format!("{client:?}"));
    for s in &shown {
        assert!(!s.contains(SECRET), "secret printed: {s}");
    }
    // The client's own `Debug` shows what it holds, not a blank.
    assert!(shown.last().unwrap().contains("KeyedPool"), "{shown:?}");
}

#[test]
fn a_drain_is_built_with_new_or_from_its_default() {
    let drain = Drain::new(1 << 20, Duration::from_millis(100));
    assert_eq!(drain.max_bytes, 1 << 20);
    assert_eq!(drain.max_time, Duration::from_millis(100));
    assert_eq!(Drain::NONE, Drain::new(0, Duration::ZERO));
    let mut drain = Drain::default();
    assert_eq!(drain, Drain::new(256 * 1024, Duration::from_millis(50)));
    drain.max_time = Duration::from_millis(10);
    assert_eq!(drain.max_time, Duration::from_millis(10));
    let d = Duration::from_secs(5);
    assert_eq!(Drain::default().with_max_time(d), Drain::new(256 * 1024, d));
    assert_eq!(
        Drain::default().with_max_bytes(16),
        Drain::new(16, Duration::from_millis(50))
    );
}

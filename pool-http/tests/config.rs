//! Every duration knob of `ClientBuilder` at its extremes: `Duration::MAX` is a config error
//! naming the knob (it used to panic: in `build` for `connect_timeout`, on every request for
//! `timeout`, in the drain task for a drain's `max_time`), zero is either an error naming the
//! knob or has the meaning the docs give, and the longest accepted values serve requests.

mod support;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use pool_core::MAX_DURATION;
use pool_http::{Client, ClientBuilder, Drain};
use support::Raw;

/// Every duration knob, set to `d`, with its name as `Error::knob` reports it.
fn knobs(d: Duration) -> Vec<(&'static str, ClientBuilder)> {
    let b = Client::builder;
    vec![
        ("connect_timeout", b().connect_timeout(d)),
        ("tls_handshake_timeout", b().tls_handshake_timeout(d)),
        ("tcp_keepalive", b().tcp_keepalive(d)),
        ("response_header_timeout", b().response_header_timeout(d)),
        ("timeout", b().timeout(d)),
        ("idle_conn_timeout", b().idle_conn_timeout(d)),
        ("idle_grace", b().idle_grace(d)),
        ("drain.max_time", b().drain(Drain::new(1 << 20, d))),
    ]
}

/// Builds, catching a panic: `Err(message)` if `build` panicked.
fn build(b: ClientBuilder) -> Result<Result<Client, pool_http::Error>, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| b.build())).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// GETs `url` twice, reading the first body and dropping the second unread (the drain path),
/// inside a task so that a panic is caught and reported.
async fn serves(client: &Client, url: &str) -> Result<(), String> {
    let (client, url) = (client.clone(), url.to_owned());
    let task = tokio::spawn(async move {
        let body = client.get(&url).await?.into_body().text().await?;
        assert_eq!(body, "hello");
        drop(client.get(&url).await?);
        client.get(&url).await?.into_body().bytes().await?;
        Ok::<_, pool_http::Error>(())
    });
    match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("failed: {e:?}")),
        Err(panic) => Err(format!("panicked: {panic}")),
    }
}

#[tokio::test]
async fn every_duration_knob_at_duration_max_is_a_config_error_naming_it() {
    let mut wrong = Vec::new();
    for (knob, builder) in knobs(Duration::MAX) {
        match build(builder) {
            Err(panic) => wrong.push(format!("{knob}: build panicked: {panic}")),
            Ok(Ok(_)) => wrong.push(format!("{knob}: Duration::MAX accepted")),
            Ok(Err(e)) => {
                if !e.is_config() || e.knob() != Some(knob) {
                    wrong.push(format!("{knob}: {e:?} names {:?}", e.knob()));
                }
                let text = e.to_string();
                if !text.contains(&format!("`{knob}`")) {
                    wrong.push(format!("{knob}: the message does not name it: {text}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn every_duration_knob_at_zero_is_a_config_error_or_its_documented_meaning() {
    let server = Raw::answering("hello").await;
    let url = server.url("/");
    let mut wrong = Vec::new();
    for (knob, builder) in knobs(Duration::ZERO) {
        let must_be_positive = matches!(knob, "connect_timeout" | "tls_handshake_timeout");
        match build(builder) {
            Err(panic) => wrong.push(format!("{knob}: build panicked: {panic}")),
            Ok(Err(e)) if must_be_positive && e.is_config() && e.knob() == Some(knob) => {}
            Ok(Err(e)) => wrong.push(format!("{knob}: {e:?}")),
            Ok(Ok(_)) if must_be_positive => wrong.push(format!("{knob}: zero accepted")),
            // Zero means none / off / Go's behaviour: the client works.
            Ok(Ok(client)) => {
                if let Err(e) = serves(&client, &url).await {
                    wrong.push(format!("{knob}: {e}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn the_longest_accepted_durations_serve_requests_without_overflow() {
    let server = Raw::answering("hello").await;
    let url = server.url("/");
    // One knob at a time, then all at once.
    let mut wrong = Vec::new();
    let longest = |knob: &str| match knob {
        "tcp_keepalive" => Duration::from_secs(32_767),
        _ => MAX_DURATION,
    };
    for (knob, _) in knobs(Duration::ZERO) {
        let builder = knobs(longest(knob))
            .into_iter()
            .find(|(k, _)| *k == knob)
            .unwrap()
            .1;
        match build(builder) {
            Err(panic) => wrong.push(format!("{knob}: build panicked: {panic}")),
            Ok(Err(e)) => wrong.push(format!("{knob}: {e:?}")),
            Ok(Ok(client)) => {
                if let Err(e) = serves(&client, &url).await {
                    wrong.push(format!("{knob}: {e}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let client = Client::builder()
        .connect_timeout(MAX_DURATION)
        .tls_handshake_timeout(MAX_DURATION)
        .tcp_keepalive(Duration::from_secs(32_767))
        .response_header_timeout(MAX_DURATION)
        .timeout(MAX_DURATION)
        .idle_conn_timeout(MAX_DURATION)
        .idle_grace(MAX_DURATION)
        .drain(Drain::new(1 << 20, MAX_DURATION))
        .build()
        .unwrap();
    serves(&client, &url).await.unwrap();
}

#[tokio::test]
async fn a_keepalive_the_kernel_would_refuse_is_a_config_error_not_silently_off() {
    for d in [
        Duration::from_millis(500),
        Duration::from_secs(32_768),
        MAX_DURATION,
    ] {
        let err = Client::builder().tcp_keepalive(d).build().unwrap_err();
        assert_eq!(err.knob(), Some("tcp_keepalive"), "{d:?}: {err}");
    }
    for d in [Duration::from_secs(1), Duration::from_secs(32_767)] {
        Client::builder().tcp_keepalive(d).build().unwrap();
    }
}

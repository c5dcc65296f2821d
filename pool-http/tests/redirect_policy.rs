//! Which redirects are followed, against real servers on loopback (`support::site`): Go's
//! limit of ten, `Policy::limited`, `none` and `custom`, a request's policy over the client's,
//! the hard limit of 100 whatever the policy, and loops.

mod support;

use std::sync::{Arc, Mutex};

use pool_http::redirect::Policy;
use support::site::{Reply, Site, builder, chain, client, text};

#[tokio::test]
async fn ten_redirects_are_followed_and_the_eleventh_fails() {
    let site = Site::start().await;
    chain(&site, 12, 302);
    let client = client();
    let response = client.get(&site.url("/hop/10")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().to_string(), site.url("/hop/0"));
    assert_eq!(site.take().len(), 11);

    let err = client.get(&site.url("/hop/11")).await.unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(!err.is_timeout());
    assert_eq!(
        err.to_string(),
        format!(
            "redirect from http://127.0.0.1:{} not followed: stopped after 10 redirects",
            site.port()
        )
    );
    let seen = site.take();
    assert_eq!(seen.len(), 11, "the 11th Location is never requested");
    assert_eq!(seen.last().unwrap().target, "/hop/1");
    assert_eq!(client.stats().requests, 22);
}

#[tokio::test]
async fn policy_limited_follows_that_many() {
    let site = Site::start().await;
    chain(&site, 5, 301);
    for max in [0, 1, 3] {
        let client = builder().redirect(Policy::limited(max)).build().unwrap();
        let response = client.get(&site.url(&format!("/hop/{max}"))).await.unwrap();
        assert_eq!(response.status(), 200, "limited({max})");
        assert_eq!(site.take().len(), max + 1);
        let err = client
            .get(&site.url(&format!("/hop/{}", max + 1)))
            .await
            .unwrap_err();
        assert!(err.is_redirect(), "limited({max}): {err:?}");
        assert!(
            err.to_string()
                .ends_with(&format!("stopped after {max} redirects")),
            "{err}"
        );
        assert_eq!(site.take().len(), max + 1, "limited({max})");
    }
}

#[tokio::test]
async fn policy_none_returns_every_3xx_as_is() {
    let site = Site::start().await;
    let client = builder().redirect(Policy::none()).build().unwrap();
    for status in [301, 302, 303, 307, 308] {
        let target = format!("/none/{status}");
        site.redirect(&target, status, "/elsewhere");
        let response = client.post(&site.url(&target)).body("b").await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["location"], "/elsewhere");
        assert_eq!(response.url().to_string(), site.url(&target));
        assert_eq!(response.text().await.unwrap(), "xxxxx");
        assert_eq!(site.take().len(), 1);
    }
    assert_eq!(site.hits("/elsewhere"), 0);
}

#[tokio::test]
async fn a_custom_policy_sees_each_attempt_and_decides() {
    let site = Site::start().await;
    site.redirect("/c/1", 301, "/c/2");
    site.redirect("/c/2", 307, &site.at("localhost", "/c/3"));
    site.redirect("/c/3", 308, "/c/4");
    site.redirect("/c/4", 302, "/c/5");
    type Attempts = Arc<Mutex<Vec<(u16, String, Vec<String>)>>>;
    let attempts = Attempts::default();
    let seen_attempts = attempts.clone();
    let policy = Policy::custom(move |attempt| {
        let previous = attempt.previous().iter().map(|u| u.to_string()).collect();
        let status = attempt.status().as_u16();
        let next = attempt.url().to_string();
        seen_attempts.lock().unwrap().push((status, next, previous));
        if attempt.previous().len() < 3 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let client = builder().redirect(policy).build().unwrap();
    let response = client.get(&site.url("/c/1")).await.unwrap();
    assert_eq!(response.status(), 308, "stopped at the third");
    assert_eq!(response.url().to_string(), site.at("localhost", "/c/3"));
    let (first, second, third) = (
        site.url("/c/1"),
        site.url("/c/2"),
        site.at("localhost", "/c/3"),
    );
    let want = vec![
        (301, second.clone(), vec![first.clone()]),
        (307, third.clone(), vec![first.clone(), second.clone()]),
        (
            308,
            site.at("localhost", "/c/4"),
            vec![first, second, third],
        ),
    ];
    assert_eq!(*attempts.lock().unwrap(), want);
    assert_eq!(site.hits("/c/4"), 0);

    // An error: the request fails with the policy's reason, and goes nowhere else.
    let policy = Policy::custom(|attempt| match attempt.url().host() {
        Some("localhost") => attempt.error("left the allowed hosts"),
        _ => attempt.follow(),
    });
    site.take();
    let err = client
        .get(&site.url("/c/1"))
        .redirect(policy)
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    // This level says a policy refused it; the policy's own error is the source.
    assert!(err.to_string().contains("policy refused"), "{err}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("left the allowed hosts"));
    let targets: Vec<_> = site.take().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/c/1", "/c/2"]);

    // Not asked about what the rules do not follow: a 3xx without Location.
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let policy = Policy::custom(move |attempt| {
        *counted.lock().unwrap() += 1;
        attempt.follow()
    });
    site.route("/no-location", |_| Reply::Now(text(300, "choices")));
    let response = client
        .get(&site.url("/no-location"))
        .redirect(policy)
        .await
        .unwrap();
    assert_eq!(response.status(), 300);
    assert_eq!(*calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_request_s_policy_overrides_the_client_s() {
    let site = Site::start().await;
    chain(&site, 3, 302);
    let url = site.url("/hop/3");
    let none = builder().redirect(Policy::none()).build().unwrap();
    assert_eq!(none.get(&url).await.unwrap().status(), 302);
    let response = none.get(&url).redirect(Policy::default()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().to_string(), site.url("/hop/0"));

    let default = client();
    let response = default.get(&url).redirect(Policy::none()).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.url().to_string(), url);
    assert_eq!(default.get(&url).await.unwrap().status(), 200);

    let one = builder().redirect(Policy::limited(1)).build().unwrap();
    assert!(one.get(&url).await.unwrap_err().is_redirect());
    let response = one.get(&url).redirect(Policy::limited(3)).await.unwrap();
    assert_eq!(response.status(), 200);
    // `Client::request` takes the client's.
    let req = http::Request::get(&url).body(()).unwrap();
    assert!(one.request(req).await.unwrap_err().is_redirect());
}

#[tokio::test]
async fn a_custom_policy_that_always_follows_stops_at_the_hard_limit() {
    let site = Site::start().await;
    site.redirect("/forever", 302, "/forever");
    let client = builder()
        .redirect(Policy::custom(|attempt| attempt.follow()))
        .build()
        .unwrap();
    let err = client.get(&site.url("/forever")).await.unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(
        err.to_string().ends_with("stopped after 100 redirects"),
        "{err}"
    );
    assert_eq!(pool_http::redirect::MAX_REDIRECTS, 100);
    assert_eq!(
        site.take().len(),
        101,
        "the first request and 100 redirects"
    );
    // A limit above it is cut to it too.
    let err = client
        .get(&site.url("/forever"))
        .redirect(Policy::limited(1000))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("stopped after 100 redirects"));
    assert_eq!(site.take().len(), 101);
}

#[tokio::test]
async fn a_redirect_loop_ends_at_the_limit() {
    let site = Site::start().await;
    site.redirect("/loop/a", 302, &site.at("localhost", "/loop/b"));
    site.redirect("/loop/b", 302, &site.url("/loop/a"));
    site.redirect("/loop/self", 307, "/loop/self");
    let client = client();
    for path in ["/loop/a", "/loop/self"] {
        let err = client.get(&site.url(path)).await.unwrap_err();
        assert!(err.is_redirect(), "{path}: {err:?}");
        assert!(err.to_string().ends_with("stopped after 10 redirects"));
        assert_eq!(site.take().len(), 11, "{path}");
    }
}

/// A Location's userinfo never reaches a custom policy: not in the next URL, not in the URLs
/// requested so far, not in the attempt's `Debug` (a policy that logs its attempts would
/// print a password the server put there). The wire never carried it either (see
/// `redirect_credentials.rs`).
#[tokio::test]
async fn a_custom_policy_never_sees_a_locations_userinfo() {
    let site = Site::start().await;
    let port = site.port();
    site.redirect(
        "/u/1",
        302,
        &format!("http://evil:S3cr3t@localhost:{port}/u/2"),
    );
    site.redirect("/u/2", 302, "/u/3");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let policy = Policy::custom(move |attempt| {
        let mut log = log.lock().unwrap();
        log.push(format!("{attempt:?}"));
        log.push(attempt.url().to_string());
        log.extend(attempt.previous().iter().map(|u| u.to_string()));
        attempt.follow()
    });
    let client = builder().redirect(policy).build().unwrap();
    let response = client.get(&site.url("/u/1")).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 6, "{seen:?}");
    for s in seen.iter() {
        assert!(!s.contains("S3cr3t") && !s.contains("evil"), "{s}");
    }
    assert!(
        seen.contains(&format!("http://localhost:{port}/u/2")),
        "{seen:?}"
    );
}

//! Credentials on redirects, against real servers on loopback (`support::site`), as Go: the
//! caller's kept to the first host (bearer, cookies, proxy auth), URL userinfo on the first
//! request only, the `Referer` (never from https to http), and a caller's `Host` on relative
//! hops only. Each test asserts what the servers saw.

mod support;

use base64::Engine as _;
use support::site::{Site, builder, client};

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// The credentials a test sends, and what it checks arrived.
const SENSITIVE: [(&str, &str); 5] = [
    ("cookie", "sid=1"),
    ("cookie2", "$Version=1"),
    ("proxy-authorization", "Basic cHJveHk6cHc="),
    // Go 1.24.4, CVE-2025-4673.
    ("proxy-authenticate", "Basic realm=p"),
    ("www-authenticate", "Basic realm=x"),
];

fn with_credentials(builder: pool_http::RequestBuilder) -> pool_http::RequestBuilder {
    SENSITIVE
        .iter()
        .fold(builder.bearer_auth("t0ken"), |b, (k, v)| b.header(*k, *v))
        .header("x-api-version", "7")
}

#[tokio::test]
async fn credentials_go_to_the_same_host_only() {
    let site = Site::start().await;
    let other_port = Site::start().await;
    let port = site.port();
    site.redirect("/same", 302, "/same-end");
    site.redirect("/same-absolute", 301, &site.url("/same-end"));
    // Go compares host names without the port: another port of the host keeps them.
    site.redirect("/other-port", 302, &other_port.url("/end"));
    site.redirect("/cross", 302, &site.at("localhost", "/cross-end"));
    site.redirect("/cross-307", 307, &site.at("localhost", "/cross-end"));
    let client = client();
    let mut sent_on = 0;
    for path in ["/same", "/same-absolute", "/other-port"] {
        let response = with_credentials(client.get(&site.url(path))).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut seen = site.take();
        seen.extend(other_port.take());
        let last = &seen[1];
        assert_eq!(last.header("authorization"), Some("Bearer t0ken"), "{path}");
        for (name, value) in SENSITIVE {
            assert_eq!(last.header(name), Some(value), "{path}: {name}");
        }
        assert_eq!(last.header("x-api-version"), Some("7"));
    }
    for path in ["/cross", "/cross-307"] {
        let response = with_credentials(client.post(&site.url(path)).body("data"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen = site.take();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
        let last = &seen[1];
        assert_eq!(last.header("host"), Some(&*format!("localhost:{port}")));
        assert_eq!(last.header("authorization"), None, "{path}");
        for (name, _) in SENSITIVE {
            assert_eq!(
                last.header(name),
                None,
                "{path}: {name} went to another host"
            );
        }
        assert_eq!(
            last.header("x-api-version"),
            Some("7"),
            "other headers go on"
        );
        assert_eq!(last.header("referer"), Some(&*site.url(path)));
        sent_on += usize::from(last.body == "data");
    }
    // The body of a 307 goes on to the other host (Go's rule), without the credentials.
    assert_eq!(sent_on, 1);
}

#[tokio::test]
async fn credentials_stripped_once_never_come_back() {
    let site = Site::start().await;
    site.redirect("/away", 302, &site.at("localhost", "/back"));
    site.redirect("/back", 302, &site.url("/home"));
    let client = client();
    let response = with_credentials(client.get(&site.url("/away")))
        .await
        .unwrap();
    assert_eq!(response.url().to_string(), site.url("/home"));
    let seen = site.take();
    assert_eq!(seen.len(), 3);
    for last in &seen[1..] {
        assert_eq!(last.header("authorization"), None, "{}", last.target);
        assert_eq!(last.header("cookie"), None, "{}", last.target);
    }
}

#[tokio::test]
async fn url_userinfo_credentials_go_on_the_first_request_only() {
    // Go's `send` puts them on its own copy of the request, and a redirect copies the
    // caller's headers: not even the same host gets them again.
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/u/relative", 302, "/u/end");
    site.redirect("/u/absolute", 302, &site.url("/u/end"));
    site.redirect("/u/cross", 302, &site.at("localhost", "/u/end"));
    site.redirect("/u/307", 307, "/u/end");
    let want = basic("user:p@ss");
    let client = client();
    for path in ["/u/relative", "/u/absolute", "/u/cross", "/u/307"] {
        let url = format!("http://user:p%40ss@127.0.0.1:{port}{path}?k=v");
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            !response.url().to_string().contains("p%40ss"),
            "{path}: the password travels on in the URL: {}",
            response.url()
        );
        let seen = site.take();
        assert_eq!(seen.len(), 2, "{path}");
        assert_eq!(seen[0].header("authorization"), Some(&*want));
        let last = &seen[1];
        assert_eq!(last.header("authorization"), None, "{path}");
        assert_eq!(
            last.header("referer"),
            Some(&*format!("http://127.0.0.1:{port}{path}?k=v")),
            "{path}: the Referer has no userinfo"
        );
    }
}

#[tokio::test]
async fn a_callers_authorization_beats_the_userinfo_and_follows_the_same_host() {
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/a/same", 302, "/a/end");
    site.redirect("/a/cross", 302, &site.at("localhost", "/a/end"));
    let client = client();
    for (path, expected) in [("/a/same", Some("Bearer t0ken")), ("/a/cross", None)] {
        let url = format!("http://user:pw@127.0.0.1:{port}{path}");
        client.get(&url).bearer_auth("t0ken").await.unwrap();
        let seen = site.take();
        assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
        assert_eq!(seen[1].header("authorization"), expected, "{path}");
    }
}

#[tokio::test]
async fn the_referer_is_the_previous_url_and_the_caller_s_own_stays() {
    let site = Site::start().await;
    site.redirect("/r/1", 302, "/r/2?page=2");
    site.redirect("/r/2", 302, "/r/3");
    let client = client();
    client.get(&site.url("/r/1?page=1")).await.unwrap();
    let seen = site.take();
    let referers: Vec<_> = seen.iter().map(|s| s.header("referer")).collect();
    let (first, second) = (site.url("/r/1?page=1"), site.url("/r/2?page=2"));
    assert_eq!(referers, [None, Some(&*first), Some(&*second)]);

    client
        .get(&site.url("/r/1"))
        .header("referer", "https://app.example/page")
        .await
        .unwrap();
    let seen = site.take();
    for s in &seen {
        assert_eq!(
            s.header("referer"),
            Some("https://app.example/page"),
            "the caller's Referer on every hop: {}",
            s.target
        );
    }
}

#[tokio::test]
async fn from_https_to_http_neither_credentials_nor_referer_go() {
    let (secure, tls) = Site::start_tls().await;
    let plain = Site::start().await;
    secure.redirect("/down", 302, &plain.url("/plain"));
    secure.redirect("/s1", 302, "/s2");
    secure.redirect("/s2", 302, &plain.url("/plain"));
    let client = builder().tls(tls).build().unwrap();
    for path in ["/down", "/s1"] {
        let response = with_credentials(client.get(&secure.url(path)))
            .await
            .unwrap();
        assert_eq!(response.url().to_string(), plain.url("/plain"));
        let secure_seen = secure.take();
        if path == "/s1" {
            assert_eq!(secure_seen[1].header("referer"), Some(&*secure.url("/s1")));
            assert_eq!(secure_seen[1].header("authorization"), Some("Bearer t0ken"));
        }
        let last = plain.take().pop().unwrap();
        assert_eq!(last.header("authorization"), None, "{path}: sent in clear");
        assert_eq!(last.header("cookie"), None, "{path}: sent in clear");
        assert_eq!(
            last.header("referer"),
            None,
            "{path}: an https URL leaked to http"
        );
    }
}

#[tokio::test]
async fn a_callers_referer_is_not_sent_from_https_to_http_and_comes_back_on_https() {
    // Go's refererForURL returns "" on a downgrade before it looks at the caller's Referer.
    let (secure, tls) = Site::start_tls().await;
    let plain = Site::start().await;
    secure.redirect("/cr/down", 302, &plain.url("/cr/plain"));
    plain.redirect("/cr/plain", 302, &secure.url("/cr/up"));
    secure.redirect("/cr/up", 302, "/cr/end");
    let client = builder().tls(tls).build().unwrap();
    let response = client
        .get(&secure.url("/cr/down"))
        .header("referer", "https://app.example/page")
        .await
        .unwrap();
    assert_eq!(response.url().to_string(), secure.url("/cr/end"));
    let on_plain = plain.take();
    assert_eq!(on_plain.len(), 1);
    assert_eq!(
        on_plain[0].header("referer"),
        None,
        "the caller's https Referer leaked to http"
    );
    let on_secure = secure.take();
    let referers: Vec<_> = on_secure.iter().map(|s| s.header("referer")).collect();
    let callers = Some("https://app.example/page");
    assert_eq!(referers, [callers, callers, callers], "{on_secure:?}");
}

#[tokio::test]
async fn a_callers_host_header_stays_on_relative_redirects_only() {
    let site = Site::start().await;
    site.redirect("/vhost", 301, "/vhost/");
    site.redirect("/vhost/", 302, &site.at("localhost", "/elsewhere"));
    let client = client();
    let response = client
        .get(&site.url("/vhost"))
        .header("host", "app.internal")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let hosts: Vec<_> = site
        .take()
        .iter()
        .map(|s| s.header("host").unwrap().to_owned())
        .collect();
    let localhost = format!("localhost:{}", site.port());
    assert_eq!(hosts, ["app.internal", "app.internal", &localhost]);
}

#[tokio::test]
async fn a_location_with_userinfo_never_gets_the_callers_credentials_nor_shows_its_own() {
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/ui/next", 302, "/ui/end");
    // Its own password; and the first host's name as userinfo, to look like it.
    let locations = [
        format!("http://evil:S3cr3t@localhost:{port}/ui/next"),
        format!("http://127.0.0.1:{port}@localhost:{port}/ui/next"),
    ];
    let client = client();
    for (i, location) in locations.iter().enumerate() {
        site.redirect(&format!("/ui/{i}"), 302, location);
        let response = client
            .get(&site.url(&format!("/ui/{i}")))
            .bearer_auth("t0ken")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(!format!("{response:?}").contains("S3cr3t"));
        // `/ui/end` resolved against the Location does not inherit its userinfo.
        assert_eq!(
            response.url().to_string(),
            format!("http://localhost:{port}/ui/end"),
            "{location}"
        );
        let seen = site.take();
        assert_eq!(seen.len(), 3);
        for s in &seen[1..] {
            let auth = s.header("authorization");
            assert_ne!(auth, Some("Bearer t0ken"), "{location}: {}", s.target);
            assert_eq!(s.header("host"), Some(&*format!("localhost:{port}")));
            assert!(!s.target.contains("S3cr3t"));
        }
        assert_eq!(
            seen[2].header("referer"),
            Some(&*format!("http://localhost:{port}/ui/next")),
            "no userinfo in the Referer"
        );
    }
    // The Location with userinfo is the last hop: the final URL is it, without its userinfo.
    site.redirect(
        "/ui/last",
        302,
        &format!("http://evil:S3cr3t@localhost:{port}/ui/end"),
    );
    let response = client.get(&site.url("/ui/last")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.url().to_string(),
        format!("http://localhost:{port}/ui/end")
    );
    assert_eq!(site.take().len(), 2);
}

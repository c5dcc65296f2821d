//! Feature `cookies`: a jar as Go's `http.Client.Jar`: responses' `Set-Cookie` go in, and
//! every request (each redirect hop too) carries the jar's cookies for its URL; without a
//! jar, only the cookies a request sets itself.

mod support;

use std::sync::{Arc, Mutex};

use hyper::Response;
use pool_http::Client;
use pool_http::cookie::Jar;
use support::{ResBody, Server};

/// A server that sets cookies on `/login` (and on `/hop`, which redirects to `/me`), and
/// records the `Cookie` header of every request.
async fn site() -> (Server, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = Server::start(move |req| {
        let cookie = req
            .headers()
            .get("cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        record
            .lock()
            .unwrap()
            .push((req.uri().path().to_owned(), cookie));
        let path = req.uri().path().to_owned();
        async move {
            let mut response: Response<ResBody> = Response::new(support::full(2));
            match path.as_str() {
                "/login" => {
                    let h = response.headers_mut();
                    h.append(
                        "set-cookie",
                        "session=abc123; Path=/; HttpOnly".parse().unwrap(),
                    );
                    h.append("set-cookie", "scoped=y; Path=/admin".parse().unwrap());
                }
                "/hop" => {
                    *response.status_mut() = hyper::StatusCode::FOUND;
                    let h = response.headers_mut();
                    h.insert("location", "/me".parse().unwrap());
                    h.append("set-cookie", "hop=1; Path=/".parse().unwrap());
                }
                _ => {}
            }
            response
        }
    })
    .await;
    (server, seen)
}

fn cookie_of(seen: &Mutex<Vec<(String, Option<String>)>>, path: &str) -> Option<String> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .rev()
        .find(|(p, _)| p == path)
        .expect("the path was requested")
        .1
        .clone()
}

#[tokio::test]
async fn a_jar_keeps_what_responses_set_and_sends_it_where_it_applies() {
    let (server, seen) = site().await;
    let jar = Arc::new(Jar::new());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    client
        .get(&server.url("/login"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(jar.len(), 2);

    client
        .get(&server.url("/me"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Not `scoped` (another path). (`Secure` cannot be shown on loopback: `cookie_store`
    // counts loopback as a secure origin, as browsers do.)
    assert_eq!(cookie_of(&seen, "/me").as_deref(), Some("session=abc123"));
    client
        .get(&server.url("/admin/x"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let admin = cookie_of(&seen, "/admin/x").unwrap();
    let mut sent: Vec<&str> = admin.split("; ").collect();
    sent.sort_unstable();
    assert_eq!(sent, ["scoped=y", "session=abc123"]);

    // The caller's own cookie goes first, the jar's after it, in one header.
    client
        .get(&server.url("/me"))
        .header("cookie", "mine=1")
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        cookie_of(&seen, "/me").as_deref(),
        Some("mine=1; session=abc123")
    );

    let shown = format!("{jar:?} {client:?}");
    assert!(
        !shown.contains("abc123") && !shown.contains("session"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_cookie_set_by_a_redirect_goes_with_the_next_hop() {
    let (server, seen) = site().await;
    let jar = Arc::new(Jar::new());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    let response = client.get(&server.url("/hop")).await.unwrap();
    assert_eq!(response.url().path(), "/me");
    response.bytes().await.unwrap();
    assert_eq!(cookie_of(&seen, "/hop"), None);
    assert_eq!(cookie_of(&seen, "/me").as_deref(), Some("hop=1"));
}

#[tokio::test]
async fn cookies_stay_with_their_host() {
    let (server, seen) = site().await;
    let (other, other_seen) = site().await;
    let jar = Arc::new(Jar::new());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    client
        .get(&server.url("/login"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Same host name, other port: cookies do not isolate by port (RFC 6265).
    client
        .get(&other.url("/me"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        cookie_of(&other_seen, "/me").as_deref(),
        Some("session=abc123")
    );
    // Another host name: nothing.
    let localhost = server.url("/me").replace("127.0.0.1", "localhost");
    client.get(&localhost).await.unwrap().bytes().await.unwrap();
    assert_eq!(cookie_of(&seen, "/me"), None);
}

#[tokio::test]
async fn without_a_jar_no_cookie_is_kept() {
    let (server, seen) = site().await;
    let client = Client::new().unwrap();
    client
        .get(&server.url("/login"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    client
        .get(&server.url("/me"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(cookie_of(&seen, "/me"), None);
}

/// Every `log` record of this test binary (cookie_store logs through the `log` facade).
struct Logged(Mutex<Vec<String>>);

impl log::Log for Logged {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

#[tokio::test]
async fn no_log_line_holds_a_cookie_value() {
    static LOGGED: Logged = Logged(Mutex::new(Vec::new()));
    log::set_logger(&LOGGED).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Trace);
    let (server, seen) = site().await;
    let jar = Arc::new(Jar::new());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    client
        .get(&server.url("/login"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    jar.add_cookie_str("added=s3cr3t; Path=/", &server.url("/").parse().unwrap());
    client
        .get(&server.url("/me"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(cookie_of(&seen, "/me").unwrap().contains("abc123"));
    let logged = LOGGED.0.lock().unwrap();
    for line in logged.iter() {
        assert!(
            !line.contains("abc123") && !line.contains("s3cr3t"),
            "{line}"
        );
    }
}

//! A recording server for the request builder and response tests (`builder.rs`, `bodies.rs`,
//! `response.rs`): every request is read whole and recorded, then answered as its path says.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{ResBody, Server, chunked, full};

/// The secret the tests send (a token, a password) and `/cookie` sets: no message shows it.
pub const SECRET: &str = "tok3n-S3CRET";

/// What the server received.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    pub fn one(&self, name: &str) -> &str {
        match self.all(name).as_slice() {
            [one] => one,
            other => panic!("expected one `{name}`, got {other:?}"),
        }
    }
}

/// A recording server: every request is read whole and recorded, then answered as its path
/// says (see [`answer`]).
pub struct Wire {
    pub server: Server,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Wire {
    pub async fn start() -> Wire {
        let (tx, seen) = mpsc::unbounded_channel();
        let server = Server::start(move |req: hyper::Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let target = parts.uri.path_and_query().unwrap().as_str().to_owned();
                let path = parts.uri.path().to_owned();
                let _ = tx.send(Seen {
                    method: parts.method,
                    target,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                });
                answer(&path).await
            }
        })
        .await;
        Wire { server, seen }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The next request the server received.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the server received no request within 10 s")
            .unwrap()
    }

    pub fn nothing_more(&mut self) {
        assert!(
            self.seen.try_recv().is_err(),
            "the server received a request"
        );
    }
}

pub fn reply(status: u16, body: ResBody) -> hyper::Response<ResBody> {
    hyper::Response::builder()
        .status(status)
        .body(body)
        .unwrap()
}

pub fn bytes_body(b: &'static [u8]) -> ResBody {
    Full::new(Bytes::from_static(b)).boxed()
}

/// `/status/N`: status N with 10 KiB (Content-Length); `/status-chunked/N`: the same,
/// chunked; `/sized/N`: N bytes; `/chunked/C/S`: C chunks of S bytes; `/json`, `/not-json`,
/// `/wrong-shape`, `/bad-utf8`; `/slow` answers after 300 ms; `/never` never answers;
/// `/stall` sends its head and one chunk, then nothing; `/redirect` is a 302 to `/`;
/// `/cookie` sets a secret cookie. Anything else: `ok`.
async fn answer(path: &str) -> hyper::Response<ResBody> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let num = |i: usize| parts[i].parse::<usize>().unwrap();
    match parts[0] {
        "status" => reply(num(1) as u16, full(10 * 1024)),
        "status-chunked" => reply(num(1) as u16, chunked(10, 1024)),
        "sized" => reply(200, full(num(1))),
        "chunked" => reply(200, chunked(num(1), num(2))),
        "json" => reply(200, bytes_body(br#"{"name":"a","n":7}"#)),
        "not-json" => reply(200, bytes_body(br#"{"name": "a", "#)),
        "wrong-shape" => reply(200, bytes_body(br#"{"name": 7}"#)),
        "bad-utf8" => reply(200, bytes_body(b"ok \xff\xfe end")),
        "slow" => {
            // A slow server, not a synchronisation: it answers 300 ms late.
            tokio::time::sleep(Duration::from_millis(300)).await;
            reply(200, bytes_body(b"late"))
        }
        "never" => std::future::pending().await,
        "stall" => {
            let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                Frame::data(Bytes::from_static(b"a")),
            )]);
            let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
            reply(200, StreamBody::new(body).boxed())
        }
        "redirect" => hyper::Response::builder()
            .status(302)
            .header("location", "/")
            .body(bytes_body(b"moved"))
            .unwrap(),
        "cookie" => hyper::Response::builder()
            .header("set-cookie", format!("session={SECRET}"))
            .body(bytes_body(b"ok"))
            .unwrap(),
        _ => reply(200, bytes_body(b"ok")),
    }
}

/// The shape `/json` answers with, and a body the tests send as JSON.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Item {
    pub name: String,
    pub n: u32,
}

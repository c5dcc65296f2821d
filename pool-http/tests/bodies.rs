//! Request bodies proved on the wire (a loopback server records what it received): every kind
//! of body, a file from its position, `json` and `form` with their content types, and what does
//! not serialise failing `send`.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::StreamBody;
use hyper::body::Frame;
use pool_http::{Client, RequestBody};
use serde::Serialize;
use support::wire::{Item, Wire};

#[tokio::test]
async fn bodies_of_every_kind_reach_the_wire() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/upload");
    let in_memory: [(RequestBody, &[u8]); 5] = [
        ("a &'static str".into(), b"a &'static str"),
        (String::from("a String").into(), b"a String"),
        (
            Bytes::from_static(b"\x00bytes\xff").into(),
            b"\x00bytes\xff",
        ),
        (vec![1u8, 2, 3].into(), &[1, 2, 3]),
        ((&b"a static slice"[..]).into(), b"a static slice"),
    ];
    for (body, expected) in in_memory {
        client.post(&url).body(body).await.unwrap();
        let seen = wire.next().await;
        assert_eq!(seen.body, expected);
        assert_eq!(seen.one("content-length"), expected.len().to_string());
    }
    // A non-'static string goes as a `String`.
    let owned = format!("made at {}", wire.server.addr);
    client.put(&url).body(owned.clone()).await.unwrap();
    assert_eq!(wire.next().await.body, owned);

    let frames = ["one,", "two,", "three"]
        .map(|s| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(s.as_bytes()))));
    let stream = RequestBody::stream(StreamBody::new(futures_util::stream::iter(frames)));
    client.patch(&url).body(stream).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.body, "one,two,three");
    assert_eq!(seen.one("transfer-encoding"), "chunked");
    assert!(seen.headers.get(CONTENT_LENGTH).is_none());

    // `()` and the default: no body.
    client.post(&url).body(()).await.unwrap();
    assert!(wire.next().await.body.is_empty());
}

#[tokio::test]
async fn a_file_body_goes_from_its_position_with_its_length_and_a_grown_file_is_cut() {
    use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let path = std::env::temp_dir().join(format!("pool-http-file-body-{}", std::process::id()));
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tokio::fs::write(&path, &content).await.unwrap();

    let mut file = tokio::fs::File::open(&path).await.unwrap();
    file.seek(std::io::SeekFrom::Start(10)).await.unwrap();
    let body = RequestBody::file(file).await.unwrap();
    client.put(&wire.url("/f")).body(body).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-length"),
        "99990",
        "the length from the metadata"
    );
    assert!(seen.headers.get("transfer-encoding").is_none());
    assert_eq!(seen.body, &content[10..]);

    // The file grows after the body was made: the body ends at the length it announced.
    let body = RequestBody::file(tokio::fs::File::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut appending = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .unwrap();
    appending.write_all(b"appended later").await.unwrap();
    appending.flush().await.unwrap();
    client.put(&wire.url("/f")).body(body).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("content-length"), "100000");
    assert_eq!(seen.body, &content[..]);
    let _ = std::fs::remove_file(&path);
}

#[derive(Serialize)]
struct Form {
    name: &'static str,
    tag: &'static str,
    city: &'static str,
}

/// Always fails to serialise.
struct Unserialisable;

impl Serialize for Unserialisable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialise"))
    }
}

#[tokio::test]
async fn json_and_form_set_their_content_type_unless_one_is_set() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/data");
    let item = Item {
        name: "a \"q\" é".into(),
        n: 7,
    };
    client.post(&url).json(&item).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("content-type"), "application/json");
    assert_eq!(seen.body, "{\"name\":\"a \\\"q\\\" é\",\"n\":7}");

    client
        .post(&url)
        .header(CONTENT_TYPE, "application/vnd.item+json")
        .json(&item)
        .await
        .unwrap();
    assert_eq!(
        wire.next().await.one("content-type"),
        "application/vnd.item+json"
    );

    let form = Form {
        name: "a b",
        tag: "x&y=z",
        city: "Zürich",
    };
    client.post(&url).form(&form).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(seen.body, "name=a+b&tag=x%26y%3Dz&city=Z%C3%BCrich");

    client
        .post(&url)
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .form(&[("k", "v w")])
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-type"),
        "application/x-www-form-urlencoded; charset=utf-8"
    );
    assert_eq!(seen.body, "k=v+w");
    let map = BTreeMap::from([("b", "2"), ("a", "1")]);
    client.post(&url).form(&map).await.unwrap();
    assert_eq!(wire.next().await.body, "a=1&b=2");

    // What does not serialise fails `send`, before any connection.
    let json = client
        .post(&url)
        .json(&Unserialisable)
        .send()
        .await
        .unwrap_err();
    assert!(json.is_builder(), "{json:?}");
    assert!(json.to_string().contains("JSON"), "{json}");
    let nested = BTreeMap::from([("a", BTreeMap::from([("b", 1)]))]);
    let form = client.post(&url).form(&nested).send().await.unwrap_err();
    assert!(form.is_builder(), "{form:?}");
    assert!(
        std::error::Error::source(&form).is_some(),
        "the cause: {form:?}"
    );
    wire.nothing_more();
    assert_eq!(client.stats().requests, 5);
}

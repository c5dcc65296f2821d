//! The fault-injecting proxy against a real echo server: each fault does what it says, and
//! faults change while connections are open.

use std::net::SocketAddr;
use std::time::Duration;

use pool_core::testing::eventually;
use pool_core::testing::proxy::{FaultProxy, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server; returns its address.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(s: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(data).await?;
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).await?;
    Ok(back)
}

#[tokio::test]
async fn without_faults_it_forwards_both_ways_and_counts_connections() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(roundtrip(&mut s, b"hello").await.unwrap(), b"hello");
    let big = vec![7u8; 200_000];
    assert_eq!(roundtrip(&mut s, &big).await.unwrap(), big);
    assert_eq!((proxy.accepted(), proxy.live()), (1, 1));
    drop(s);
    eventually("the connection closed", || proxy.live() == 0).await;
}

#[tokio::test]
async fn latency_is_added_to_every_chunk() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut s, b"warm").await.unwrap();
    proxy.set(Faults::latency(Duration::from_millis(40)));
    let start = std::time::Instant::now();
    roundtrip(&mut s, b"slow").await.unwrap();
    // Two chunks (there and back), each delayed: a lower bound only.
    assert!(
        start.elapsed() >= Duration::from_millis(80),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn the_bandwidth_limit_paces_a_transfer() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    proxy.set(Faults::bandwidth(1_000_000));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let start = std::time::Instant::now();
    roundtrip(&mut s, &vec![1u8; 100_000]).await.unwrap();
    // 100 kB at 1 MB/s: at least 0.1 s on the way up alone (a lower bound only).
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_black_hole_holds_data_until_it_lifts() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut s, b"before").await.unwrap();
    proxy.set(Faults::black_hole());
    s.write_all(b"lost?").await.unwrap();
    let mut buf = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await;
    assert!(read.is_err(), "nothing comes back through a black hole");
    // A new connection is accepted, and also hears nothing.
    let mut other = TcpStream::connect(proxy.addr()).await.unwrap();
    other.write_all(b"x").await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(100), other.read(&mut [0u8; 1])).await;
    assert!(read.is_err());
    proxy.set(Faults::none());
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"lost?", "held, not dropped");
}

#[tokio::test]
async fn close_after_cuts_the_connection_at_that_many_bytes() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    // 10 bytes up, then only 5 of the 10 coming back.
    proxy.set(Faults::close_after(15));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"0123456789").await.unwrap();
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got).await;
    assert_eq!(&got[..], b"01234", "cut at the limit");
    assert!(
        end.as_ref().err().map(|e| e.kind()) == Some(std::io::ErrorKind::ConnectionReset)
            || end.is_ok(),
        "{end:?}"
    );
    eventually("the connection is gone", || proxy.live() == 0).await;
}

#[tokio::test]
async fn refusing_makes_connects_fail_and_leaves_open_connections_alone() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut open, b"a").await.unwrap();
    proxy.set(Faults::refuse());
    let mut refused = None;
    eventually("connects are refused", || {
        refused = Some(std::net::TcpStream::connect(proxy.addr()));
        matches!(&refused, Some(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    assert_eq!(roundtrip(&mut open, b"b").await.unwrap(), b"b");
    assert_eq!(proxy.live(), 1);
    // Cleared: the same address accepts again.
    proxy.set(Faults::none());
    let mut again = None;
    eventually("listening again", || {
        again = std::net::TcpStream::connect(proxy.addr()).ok();
        again.is_some()
    })
    .await;
    eventually("accepted through the proxy", || proxy.accepted() == 2).await;
}

#[tokio::test]
async fn a_reset_reaches_the_client_as_a_reset() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut a, b"1").await.unwrap();
    roundtrip(&mut b, b"2").await.unwrap();
    proxy.reset_conn(0);
    let err = a.read(&mut [0u8; 1]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        roundtrip(&mut b, b"3").await.unwrap(),
        b"3",
        "only connection 0 was reset"
    );
    proxy.reset_all();
    assert!(b.read(&mut [0u8; 1]).await.is_err());
    eventually("all gone", || proxy.live() == 0).await;
}

#[tokio::test]
async fn per_connection_faults_override_the_global_ones() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut a, b"1").await.unwrap();
    roundtrip(&mut b, b"2").await.unwrap();
    proxy.set_conn(0, Some(Faults::black_hole()));
    a.write_all(b"x").await.unwrap();
    let held = tokio::time::timeout(Duration::from_millis(100), a.read(&mut [0u8; 1])).await;
    assert!(held.is_err(), "connection 0 is black-holed");
    assert_eq!(
        roundtrip(&mut b, b"y").await.unwrap(),
        b"y",
        "connection 1 is not"
    );
    proxy.set_conn(0, None);
    let mut x = [0u8; 1];
    a.read_exact(&mut x).await.unwrap();
    assert_eq!(&x, b"x");
}

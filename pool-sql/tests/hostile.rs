//! A server (or anything on the path) that misbehaves before the session is ready costs a
//! bounded amount: a fake PostgreSQL on loopback speaking just enough of the protocol.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake server that answers every startup with the header of an ErrorResponse of `len`
/// bytes, then streams filler (16 MiB at most) while the client reads.
async fn announcing(len: u32) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut startup = [0u8; 1024];
                let _ = socket.read(&mut startup).await;
                let mut header = vec![b'E'];
                header.extend_from_slice(&len.to_be_bytes());
                if socket.write_all(&header).await.is_err() {
                    return;
                }
                let filler = vec![b'x'; 64 * 1024];
                for _ in 0..256 {
                    if socket.write_all(&filler).await.is_err() {
                        return;
                    }
                }
                // Then stall, as a server that means to hold the client would.
                let _ = socket.read(&mut startup).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_message_announced_during_startup_is_refused_at_its_header() {
    let port = announcing(1 << 30).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=20");
    let db = pool_sql::Db::builder(&url).max_open(1).build().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), db.ping())
        .await
        .expect("the connect ends")
        .unwrap_err();
    // Without the bound, tokio-postgres reserves the announced gigabyte and waits for it
    // until the connect timeout.
    assert!(
        !err.is_timeout(),
        "refused at the header, not timed out: {err:?}"
    );
    let chain = format!("{err:?}");
    assert!(
        chain.contains("before the session was ready"),
        "the error says why: {chain}"
    );
    let s = db.stats();
    assert_eq!((s.open, s.create_errors), (0, 1), "{s:?}");
}

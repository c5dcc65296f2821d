//! Corners of the protocol a real server reaches only by timing, reproduced every time: a
//! fake PostgreSQL on loopback that speaks just enough of it (startup, the extended
//! protocol's prepared statements, simple queries, COPY FROM STDIN, cancel requests).
//!
//! A COPY FROM STDIN whose Execute is followed by a Sync (as tokio-postgres writes it) and
//! that fails before the server reads that Sync (a cancel request or a `statement_timeout`
//! landing while the server sets the COPY up; seen under load against PostgreSQL 15) gets
//! two ReadyForQuery: one for that Sync, one for the Sync after the CopyFail, and
//! tokio-postgres would give the second to the session's next request.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use pool_sql::Db;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A fake PostgreSQL on 127.0.0.1.
struct FakePg {
    port: u16,
    /// Cancel requests received.
    cancels: Arc<AtomicUsize>,
}

impl FakePg {
    /// `early_error`: a COPY FROM STDIN fails as soon as it starts (as when a cancel lands
    /// while the server sets it up), before the server reads the message after the
    /// Execute; otherwise it waits for its data as usual.
    async fn start(early_error: bool) -> FakePg {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cancels = Arc::new(AtomicUsize::new(0));
        let counted = cancels.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let cancels = counted.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, early_error, &cancels).await;
                });
            }
        });
        FakePg { port, cancels }
    }

    fn db(&self) -> Db {
        let url = format!("postgres://app:pw@127.0.0.1:{}/app", self.port);
        Db::builder(&url).max_open(1).build().unwrap()
    }
}

/// Where the fake's session is.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// In COPY FROM STDIN: data, then CopyDone or CopyFail; Syncs are ignored.
    Copy,
    /// After an error in the extended protocol: everything up to a Sync is discarded.
    SkipToSync,
}

/// One message: its type and its body after the length.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The NUL-terminated strings at the start of `body`.
fn strings(body: &[u8], n: usize) -> Vec<String> {
    body.split(|&b| b == 0)
        .take(n)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The fake's side of one connection; ends when the client hangs up.
async fn serve(mut s: TcpStream, early_error: bool, cancels: &AtomicUsize) -> io::Result<()> {
    s.set_nodelay(true)?;
    loop {
        let len = s.read_u32().await?;
        let code = s.read_u32().await?;
        let mut rest = vec![0; (len as usize).saturating_sub(8)];
        s.read_exact(&mut rest).await?;
        match code {
            80_877_103 => s.write_all(b"N").await?, // SSLRequest: no TLS here.
            80_877_102 => {
                // A CancelRequest: acted on (nothing runs long here), connection closed.
                cancels.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            196_608 => break,
            _ => return Ok(()),
        }
    }
    let mut out = message(b'R', &0u32.to_be_bytes());
    out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
    out.extend(message(b'Z', b"I"));
    s.write_all(&out).await?;

    let mut statements: HashMap<String, String> = HashMap::new();
    let mut portal = String::new();
    let mut mode = Mode::Normal;
    loop {
        let kind = s.read_u8().await?;
        let len = s.read_u32().await?;
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        s.read_exact(&mut body).await?;
        let out = match (mode, kind) {
            (_, b'X') => return Ok(()),
            (Mode::SkipToSync, b'S') => {
                mode = Mode::Normal;
                message(b'Z', b"I")
            }
            (Mode::SkipToSync, _) | (Mode::Copy, b'd' | b'S' | b'H') => continue,
            (Mode::Copy, b'c') => {
                mode = Mode::Normal;
                message(b'C', b"COPY 1\0")
            }
            (Mode::Copy, b'f') => {
                mode = Mode::SkipToSync;
                message(b'E', b"SERROR\0VERROR\0C57014\0McopyFail\0\0")
            }
            (Mode::Copy, _) => return Ok(()),
            (Mode::Normal, b'P') => {
                let [name, sql] = <[String; 2]>::try_from(strings(&body, 2)).unwrap();
                statements.insert(name, sql);
                message(b'1', b"")
            }
            (Mode::Normal, b'D') => {
                let name = &strings(&body[1..], 1)[0];
                let mut out = message(b't', &[0, 0]);
                if statements[name].starts_with("SELECT") {
                    // One int4 column.
                    let mut row = vec![0, 1];
                    row.extend_from_slice(b"n\0");
                    row.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4]);
                    row.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0]);
                    out.extend(message(b'T', &row));
                } else {
                    out.extend(message(b'n', b""));
                }
                out
            }
            (Mode::Normal, b'B') => {
                portal = statements[&strings(&body, 2)[1]].clone();
                message(b'2', b"")
            }
            (Mode::Normal, b'E') => {
                if portal.ends_with("FROM STDIN") {
                    let mut out = message(b'G', &[0, 0, 1, 0, 0]);
                    mode = if early_error {
                        // Failed in copy mode: everything up to a Sync is discarded, and
                        // the next Sync is answered, whichever it is.
                        out.extend(message(b'E', b"SERROR\0VERROR\0C57014\0Mcanceled\0\0"));
                        Mode::SkipToSync
                    } else {
                        Mode::Copy
                    };
                    out
                } else if let Some(n) = portal.strip_prefix("SELECT ") {
                    // The row, in binary as tokio-postgres asks.
                    let n: i32 = n.parse().unwrap();
                    let mut row = vec![0, 1, 0, 0, 0, 4];
                    row.extend_from_slice(&n.to_be_bytes());
                    let mut out = message(b'D', &row);
                    out.extend(message(b'C', b"SELECT 1\0"));
                    out
                } else {
                    message(b'C', b"OK\0")
                }
            }
            (Mode::Normal, b'S') => message(b'Z', b"I"),
            // The rest of a COPY that failed: ignored outside copy mode.
            (Mode::Normal, b'd' | b'c' | b'f') => continue,
            (Mode::Normal, b'C') => message(b'3', b""),
            (Mode::Normal, b'Q') => {
                let mut out = if body == b"\0" {
                    message(b'I', b"")
                } else {
                    message(b'C', b"OK\0")
                };
                out.extend(message(b'Z', b"I"));
                out
            }
            (Mode::Normal, _) => return Ok(()),
        };
        s.write_all(&out).await?;
    }
}

/// One row, then data that never ends; `asked` is notified once the COPY asks past the row.
fn stalled(asked: Arc<Notify>) -> impl futures_util::Stream<Item = io::Result<&'static str>> {
    stream::iter([Ok("9\n")]).chain(stream::poll_fn(move |_| {
        asked.notify_one();
        std::task::Poll::Pending
    }))
}

async fn select(conn: &mut pool_sql::Conn, n: i32) -> i32 {
    let sql = format!("SELECT {n}");
    tokio::time::timeout(Duration::from_secs(10), conn.query_one(&sql, &[]))
        .await
        .expect("answered")
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_failed_before_the_server_read_its_sync_leaves_a_conn_in_step() {
    for early_error in [false, true] {
        let fake = FakePg::start(early_error).await;
        let db = fake.db();
        let mut conn = db.conn().await.unwrap();
        assert_eq!(select(&mut conn, 1).await, 1);
        let asked = Arc::new(Notify::new());
        tokio::select! {
            r = conn.copy_in("COPY t FROM STDIN", stalled(asked.clone())) => {
                panic!("the data never ends: {r:?}")
            }
            () = asked.notified() => {}
        }
        // Each statement gets its own answer: with two ReadyForQuery for the COPY, the one
        // waiting for the cancel gets the second, and each later one the answer before its
        // own.
        for n in 2..6 {
            assert_eq!(select(&mut conn, n).await, n, "early error: {early_error}");
        }
        // A bare Sync (tokio-postgres's connection check) is answered by a ReadyForQuery
        // alone, and gets it.
        let check = conn.get_ref().client().check_connection();
        tokio::time::timeout(Duration::from_secs(10), check)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(select(&mut conn, 6).await, 6);
        drop(conn);
        let mut conn = db.conn().await.unwrap();
        assert_eq!(select(&mut conn, 7).await, 7);
        let s = db.stats();
        assert_eq!((s.created, s.broken_closed), (1, 0), "{early_error}: {s:?}");
        assert_eq!(
            fake.cancels.load(Ordering::SeqCst),
            1,
            "the COPY was cancelled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_failed_before_the_server_read_its_sync_is_settled_and_its_session_reused() {
    for early_error in [false, true] {
        let fake = FakePg::start(early_error).await;
        let db = fake.db();
        let asked = Arc::new(Notify::new());
        tokio::select! {
            r = db.copy_in("COPY t FROM STDIN", stalled(asked.clone())) => {
                panic!("the data never ends: {r:?}")
            }
            () = asked.notified() => {}
        }
        // The pool settles the session in the background, then hands it out again.
        let mut conn = db.conn().await.unwrap();
        for n in 1..4 {
            assert_eq!(select(&mut conn, n).await, n, "early error: {early_error}");
        }
        drop(conn);
        let s = db.stats();
        assert_eq!((s.created, s.broken_closed), (1, 0), "{early_error}: {s:?}");
    }
}

//! A server (or anything on the path) that misbehaves costs a bounded amount: a fake
//! PostgreSQL on loopback speaking just enough of the protocol. Before the session is ready:
//! one huge message, or endless small ones. Once it is: endless parameter changes
//! (ParameterStatus, which tokio-postgres keeps in a map, the latest value of each name)
//! while the session sits idle or in a statement's answer, and stalls half way through a
//! message. A server that behaves is not taken for one that does not: a PostgreSQL 13
//! reports a function's `SET` clause twice a row. What is asserted is what the library
//! bounds (the session closed with a protocol error that says which bound, the bytes the
//! server got in before that), not the process's memory, which other tests in the process
//! move too.

mod support;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use pool_sql::Db;
use support::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    // Without the bound, tokio-postgres reserves the announced gigabyte and waits for it
    // until the connect timeout.
    refused_before_ready(&db).await;
    let s = db.stats();
    assert_eq!((s.open, s.create_errors), (0, 1), "{s:?}");
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads the startup message (answering an SSLRequest before it with `N`).
async fn read_startup(s: &mut TcpStream) -> io::Result<()> {
    loop {
        let len = s.read_u32().await?;
        let code = s.read_u32().await?;
        let mut rest = vec![0; (len as usize).saturating_sub(8)];
        s.read_exact(&mut rest).await?;
        match code {
            80_877_103 => s.write_all(b"N").await?,
            196_608 => return Ok(()),
            _ => return Err(io::ErrorKind::InvalidData.into()),
        }
    }
}

/// The most a flood sends one session before it stops and holds it: far more than the
/// kernel's socket buffers take (so a client that stopped reading is seen to), far less
/// than would hurt the machine when the bound is missing.
const FLOOD_CAP: u64 = 64 << 20;

/// What a flooding fake server saw.
#[derive(Default)]
struct Flood {
    sessions: AtomicUsize,
    /// Sessions the client closed while the server flooded them, and the most bytes one
    /// of them had been sent by then.
    closed: AtomicUsize,
    most_sent: AtomicU64,
    /// Sessions that took the whole [`FLOOD_CAP`] without being closed.
    swallowed: AtomicUsize,
}

/// The client closed a flooded session before it had taken the whole flood.
async fn closed_before_the_end(flood: &Flood) {
    eventually(
        Duration::from_secs(20),
        "the client closed the session or swallowed the flood",
        || async {
            flood.closed.load(Ordering::Relaxed) + flood.swallowed.load(Ordering::Relaxed) > 0
        },
    )
    .await;
    assert_eq!(
        flood.swallowed.load(Ordering::Relaxed),
        0,
        "the client read the whole flood"
    );
    let sent = flood.most_sent.load(Ordering::Relaxed);
    assert!(sent < FLOOD_CAP, "{sent} bytes went in before the close");
}

/// A server that authenticates every session at once and then sends ParameterStatus
/// messages, each with a new name and 32 KiB (under the 64 KiB per-message bound: past
/// 1 MiB of latest values together the session is closed) until the client closes the
/// session or [`FLOOD_CAP`] is reached. With `after_ping`, the flood
/// starts once the session is ready and has answered one simple query (a ping): it then
/// reaches a session idle in the pool, with no request outstanding.
async fn flooding(after_ping: bool) -> (u16, Arc<Flood>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let flood = Arc::new(Flood::default());
    let seen = flood.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let flood = seen.clone();
            tokio::spawn(async move {
                flood.sessions.fetch_add(1, Ordering::Relaxed);
                if read_startup(&mut s).await.is_err() {
                    return;
                }
                let mut out = message(b'R', &0u32.to_be_bytes());
                if after_ping {
                    out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
                    out.extend(message(b'Z', b"I"));
                    if s.write_all(&out).await.is_err() || answer_ping(&mut s).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                let value = vec![b'v'; 32 * 1024];
                let mut sent = 0;
                for i in 0u64.. {
                    let mut body = format!("p{i}").into_bytes();
                    body.push(0);
                    body.extend_from_slice(&value);
                    body.push(0);
                    out.extend(message(b'S', &body));
                    if s.write_all(&out).await.is_err() {
                        flood.most_sent.fetch_max(sent, Ordering::Relaxed);
                        flood.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    sent += out.len() as u64;
                    out.clear();
                    if sent >= FLOOD_CAP {
                        break;
                    }
                }
                flood.swallowed.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (port, flood)
}

/// Reads one simple query and answers it as an empty one.
async fn answer_ping(s: &mut TcpStream) -> io::Result<()> {
    let kind = s.read_u8().await?;
    let len = s.read_u32().await?;
    let mut body = vec![0; (len as usize).saturating_sub(4)];
    s.read_exact(&mut body).await?;
    if kind != b'Q' {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut out = message(b'I', b"");
    out.extend(message(b'Z', b"I"));
    s.write_all(&out).await
}

/// Each message is small, but the startup keeps every parameter: without a bound on the
/// whole startup, the client's memory grew with whatever the server sent until the connect
/// timeout (900 MiB in 2 s). Past the bound the connect fails at once, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_small_messages_before_ready_keeps_memory_bounded() {
    let (port, flood) = flooding(false).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
    let db = Db::builder(&url).max_open(1).build().unwrap();
    refused_before_ready(&db).await;
    closed_before_the_end(&flood).await;
}

/// A session idle in the pool has no request outstanding and no deadline: a server (or
/// anything on a plain-text path) that sends it parameter changes with new names grew the
/// client's memory without bound (tokio-postgres's connection task keeps each). Past the
/// bound the session is closed, and the next call gets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unasked_messages_to_an_idle_session_keep_memory_bounded() {
    let (port, flood) = flooding(true).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
    let db = Db::builder(&url).max_open(1).build().unwrap();
    tokio::time::timeout(Duration::from_secs(10), db.ping())
        .await
        .expect("the ping ends")
        .expect("the ping works");
    closed_before_the_end(&flood).await;
    // The closed session is never handed out: the next call gets a new one.
    tokio::time::timeout(Duration::from_secs(10), db.ping())
        .await
        .expect("the ping ends")
        .expect("the ping works on a new session");
    assert_eq!(flood.sessions.load(Ordering::Relaxed), 2);
    assert_eq!(db.stats().broken_closed, 1, "{:?}", db.stats());
    db.close();
}

/// A server that answers every simple query as an empty one and, after the first, sends
/// `unasked` once, to a session idle in the pool. Counts sessions, and those the client
/// closed (EOF) in `closed`.
async fn talking_while_idle(unasked: Vec<u8>) -> (u16, Arc<Flood>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Flood::default());
    let flood = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (flood, unasked) = (flood.clone(), unasked.clone());
            tokio::spawn(async move {
                flood.sessions.fetch_add(1, Ordering::Relaxed);
                if read_startup(&mut s).await.is_err() {
                    return;
                }
                let mut out = message(b'R', &0u32.to_be_bytes());
                out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
                out.extend(message(b'Z', b"I"));
                if s.write_all(&out).await.is_err() {
                    return;
                }
                let mut first = true;
                while answer_ping(&mut s).await.is_ok() {
                    if std::mem::take(&mut first) && s.write_all(&unasked).await.is_err() {
                        break;
                    }
                }
                flood.closed.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (port, seen)
}

/// Unasked traffic to an idle session within the bounds: a notice is the server's right
/// (the session stays); anything else (here a CommandComplete nobody asked for) means the
/// session is out of step, and it is never handed out again: tokio-postgres ends the
/// session when it reads it, and the check at checkout sees it closed (or, not read yet,
/// sees bytes waiting and makes the reset's round trip meet it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unasked_replies_to_an_idle_session_close_it_and_notices_do_not() {
    let notice = message(b'N', b"SNOTICE\0C00000\0Mhello\0\0");
    let stray = message(b'C', b"SELECT 1\0");
    for (unasked, kept) in [(notice, true), (stray, false)] {
        let (port, seen) = talking_while_idle(unasked).await;
        let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
        let db = Db::builder(&url).max_open(1).build().unwrap();
        db.ping().await.unwrap();
        if !kept {
            eventually(
                Duration::from_secs(10),
                "the stray session is closed",
                || async { seen.closed.load(Ordering::Relaxed) == 1 },
            )
            .await;
        }
        tokio::time::timeout(Duration::from_secs(10), db.ping())
            .await
            .expect("the ping ends")
            .expect("the ping works");
        let sessions = seen.sessions.load(Ordering::Relaxed);
        assert_eq!(sessions, if kept { 1 } else { 2 }, "kept: {kept}");
        assert_eq!(
            db.stats().broken_closed,
            u64::from(!kept),
            "{:?}",
            db.stats()
        );
        db.close();
    }
}

/// A server that starts every session as a PostgreSQL 13 does (three of its parameters
/// reported) and answers every simple query with `reply`.
async fn answering(reply: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                if read_startup(&mut s).await.is_err() {
                    return;
                }
                let mut out = message(b'R', &0u32.to_be_bytes());
                for (k, v) in [
                    ("client_encoding", "UTF8"),
                    ("server_version", "13.16"),
                    ("TimeZone", "Europe/Berlin"),
                ] {
                    out.extend(message(b'S', format!("{k}\0{v}\0").as_bytes()));
                }
                out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
                out.extend(message(b'Z', b"I"));
                if s.write_all(&out).await.is_err() {
                    return;
                }
                loop {
                    let Ok(kind) = s.read_u8().await else { return };
                    let Ok(len) = s.read_u32().await else { return };
                    let mut body = vec![0; (len as usize).saturating_sub(4)];
                    if s.read_exact(&mut body).await.is_err() || kind != b'Q' {
                        return;
                    }
                    if s.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A PostgreSQL 13's answer to `SELECT f(i) FROM generate_series(1, rows) i` where `f` is
/// declared `SET TimeZone = 'UTC'`: before PostgreSQL 14 (commit 2432b1a0, "Avoid spamming
/// the client with multiple ParameterStatus messages") every change of a reported setting
/// was reported at once, so each call sends two ParameterStatus (the `SET` clause, then its
/// undoing) before its row, all before the one ReadyForQuery. YugabyteDB 2.x, Greenplum
/// and Redshift do the same.
fn set_clause_per_row(rows: usize) -> Vec<u8> {
    // RowDescription: one column `f`, type void (2278), text.
    let mut t = 1u16.to_be_bytes().to_vec();
    t.extend_from_slice(b"f\0");
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t.extend_from_slice(&2278u32.to_be_bytes());
    t.extend_from_slice(&4i16.to_be_bytes());
    t.extend_from_slice(&(-1i32).to_be_bytes());
    t.extend_from_slice(&0i16.to_be_bytes());
    let mut out = message(b'T', &t);
    for _ in 0..rows {
        out.extend(message(b'S', b"TimeZone\0UTC\0"));
        out.extend(message(b'S', b"TimeZone\0Europe/Berlin\0"));
        out.extend(message(b'D', &[0, 1, 0, 0, 0, 0]));
    }
    out.extend(message(b'C', format!("SELECT {rows}\0").as_bytes()));
    out.extend(message(b'Z', b"I"));
    out
}

/// 20,000 calls: 40,000 ParameterStatus of about 30 bytes (1.2 MB) in one answer. The
/// statement is legitimate and the server well-behaved: the session is kept, statement
/// after statement. The bound was once 64 KiB of ParameterStatus between two ReadyForQuery,
/// which 2,000 calls passed and killed the session with "closed", no reason given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_14_server_reporting_a_function_set_clause_per_row_is_not_a_flood() {
    let port = answering(set_clause_per_row(20_000)).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
    let db = Db::builder(&url).max_open(1).build().unwrap();
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            db.batch_execute("SELECT f(i) FROM generate_series(1, 20000) i"),
        )
        .await
        .expect("answered");
        if let Err(e) = r {
            panic!("a legitimate statement failed: {e} / {e:?}");
        }
    }
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
    db.close();
}

/// ParameterStatus with new names, `len` bytes of value each, `n` of them.
fn new_names(n: usize, len: usize) -> Vec<u8> {
    let value = vec![b'v'; len];
    (0..n)
        .flat_map(|i| {
            message(
                b'S',
                &[format!("p{i}\0").as_bytes(), &value, b"\0"].concat(),
            )
        })
        .collect()
}

/// `err`'s message and those of its causes, outermost first.
fn chain(err: &pool_sql::Error) -> String {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// A statement whose answer passes a bound on parameter reports fails with the session,
/// and the reason is its cause: too many names, too many bytes of latest values, one
/// message too large (refused at its header). The statement's error once said only that the
/// session closed: the connection ended the statements waiting on it before it kept its
/// exit error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_by_a_parameter_flood_fails_saying_which_bound() {
    let mut huge = vec![b'S'];
    huge.extend_from_slice(&(1u32 << 30).to_be_bytes());
    huge.extend_from_slice(b"p\0");
    for (reply, why) in [
        (new_names(1000, 8), "more than 256 different parameters"),
        (new_names(100, 32 * 1024), "more than 1048576 bytes"),
        (huge, "1073741824-byte parameter change"),
    ] {
        let port = answering(reply).await;
        let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
        let db = Db::builder(&url).max_open(1).build().unwrap();
        let err = tokio::time::timeout(Duration::from_secs(20), db.batch_execute("SELECT 1"))
            .await
            .expect("answered")
            .unwrap_err();
        assert!(err.is_closed(), "{err:?}");
        let chain = chain(&err);
        assert!(chain.contains(why), "the cause says why: {chain}");
        assert!(chain.contains("ParameterStatus"), "{chain}");
        eventually(Duration::from_secs(10), "the session is closed", || async {
            db.stats().open == 0
        })
        .await;
        db.close();
    }
}

/// A server that stalls half way through a message: during startup (`at_startup`), or in
/// the answer to the first query after a normal startup. It holds the connection, reading
/// whatever comes, until the client leaves.
async fn staller(at_startup: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_startup(&mut s).await.is_err() {
                    return;
                }
                if at_startup {
                    let _ = s.write_all(&message(b'R', &0u32.to_be_bytes())[..6]).await;
                } else {
                    let mut out = message(b'R', &0u32.to_be_bytes());
                    out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
                    out.extend(message(b'Z', b"I"));
                    let _ = s.write_all(&out).await;
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = s.read(&mut buf).await; // the query
                    let row_description = message(b'T', &[0, 1, b'x', 0, 0, 0]);
                    let _ = s.write_all(&row_description[..7]).await;
                }
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A message cut half way and never finished: a connect ends at `acquire_timeout`, a
/// statement at `query_timeout`, and its session is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_mid_message_end_at_their_deadlines() {
    let port = staller(true).await;
    let db = Db::builder(&format!("postgres://app:pw@127.0.0.1:{port}/app"))
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    times_out_soon(db.ping()).await;

    let port = staller(false).await;
    let db = Db::builder(&format!("postgres://app:pw@127.0.0.1:{port}/app"))
        .query_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    times_out_soon(db.query("SELECT 1", &[])).await;
    eventually(
        Duration::from_secs(5),
        "the session is given up",
        || async { db.stats().open == 0 },
    )
    .await;
}

/// `db`'s connect fails at once (not at its timeout), and the error says the session was
/// not ready.
async fn refused_before_ready(db: &Db) {
    let err = tokio::time::timeout(Duration::from_secs(30), db.ping())
        .await
        .expect("the connect ends")
        .unwrap_err();
    assert!(
        !err.is_timeout(),
        "refused past the bound, not timed out: {err:?}"
    );
    let chain = format!("{err:?}");
    assert!(
        chain.contains("before the session was ready"),
        "the error says why: {chain}"
    );
}

/// `call` fails as a timeout, well before 5 s (its deadline is 500 ms).
async fn times_out_soon<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, pool_sql::Error>>,
) {
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("bounded");
    assert!(r.unwrap_err().is_timeout());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

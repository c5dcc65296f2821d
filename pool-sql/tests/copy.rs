//! COPY through the pool against a real PostgreSQL: a million rows in and out within
//! bounded memory, and a COPY dropped (or failed) half way leaves the next caller a clean
//! session.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use pool_sql::testing::TestPg;
use support::{active, admin, db, eventually, ints};

/// A field of `/proc/self/status`, in KiB (`VmHWM`: the peak resident set).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("the field")
}

/// Starts a new peak: the kernel sets `VmHWM` to the current resident set.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

const ROWS: u64 = 1_000_000;
/// Each row's text: its number, a tab, and this padding (about 100 bytes a row).
const PAD: &str =
    "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp";
/// The most the resident set may grow while ~100 MB go through a COPY each way.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_copy_in_and_out_within_bounded_memory() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "copy-big").max_open(1).build().unwrap();
    db.batch_execute("CREATE UNLOGGED TABLE big (n bigint, pad text)")
        .await
        .unwrap();
    // Warm up (the runtime, the session, the statement path) before the baseline.
    db.copy_in(
        "COPY big FROM STDIN",
        stream::iter([Ok::<_, std::io::Error>("0\tw\n")]),
    )
    .await
    .unwrap();
    db.batch_execute("TRUNCATE big").await.unwrap();

    reset_peak();
    let base = status_kib("VmHWM");
    let started = Instant::now();
    // Chunks of 1,000 rows made as the COPY asks for them: nothing holds the whole input.
    let chunks = stream::iter(0..ROWS / 1000).map(|c| {
        let mut chunk = String::with_capacity(1000 * (PAD.len() + 10));
        for n in c * 1000..(c + 1) * 1000 {
            chunk.push_str(&format!("{n}\t{PAD}\n"));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let sent = db.copy_in("COPY big FROM STDIN", chunks).await.unwrap();
    let copy_in_time = started.elapsed();
    assert_eq!(sent, ROWS);
    let after_in = status_kib("VmHWM");

    let started = Instant::now();
    let mut out = db.copy_out("COPY big TO STDOUT").await.unwrap();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = out.try_next().await.unwrap() {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let copy_out_time = started.elapsed();
    let after_out = status_kib("VmHWM");
    assert_eq!(lines, ROWS);
    assert!(bytes > 95 * ROWS, "about 100 bytes a row: {bytes}");
    eprintln!(
        "1M rows, {} MB: COPY IN {copy_in_time:?}, peak RSS +{} KiB; COPY OUT {copy_out_time:?}, \
         peak RSS +{} KiB (baseline {base} KiB)",
        bytes / 1_000_000,
        after_in - base,
        after_out - base,
    );
    assert!(
        after_in - base < GROWTH_LIMIT_KIB && after_out - base < GROWTH_LIMIT_KIB,
        "memory grew with the data: +{} KiB in, +{} KiB out, for {bytes} bytes",
        after_in - base,
        after_out - base
    );
    let s = db.stats();
    assert_eq!(
        (s.created, s.broken_closed),
        (1, 0),
        "one session, reused: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_dropped_half_way_keeps_nothing_and_the_next_caller_gets_a_clean_session() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "copy-in-dropped").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    // Some rows, then a data source that never ends.
    let data = stream::iter((0..100).map(|n| Ok::<_, std::io::Error>(format!("{n}\n"))))
        .chain(stream::pending());
    let copy = {
        let db = db.clone();
        tokio::spawn(async move { db.copy_in("COPY t FROM STDIN", data).await })
    };
    eventually(Duration::from_secs(10), "the COPY runs", || async {
        active(&admin, "copy-in-dropped", "COPY").await == 1
    })
    .await;
    copy.abort();
    assert!(copy.await.unwrap_err().is_cancelled());

    // The only session comes back out of COPY mode: a statement runs on it at once, and the
    // rows of the abandoned COPY were not kept.
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        ints(&db, "SELECT count(*)::int FROM t"),
    )
    .await
    .expect("the next caller does not wait");
    assert_eq!(n, [0]);
    let copied = db
        .copy_in(
            "COPY t FROM STDIN",
            stream::iter([Ok::<_, std::io::Error>("7\n8\n")]),
        )
        .await
        .unwrap();
    assert_eq!(copied, 2);
    assert_eq!(ints(&db, "SELECT n FROM t ORDER BY n").await, [7, 8]);
    assert_eq!(active(&admin, "copy-in-dropped", "COPY").await, 0);
    let s = db.stats();
    assert_eq!(
        (s.created, s.broken_closed),
        (1, 0),
        "settled and reused: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_whose_data_fails_is_aborted_with_that_error() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "copy-in-failed").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    let data = stream::iter([
        Ok(Bytes::from_static(b"1\n2\n")),
        Err(std::io::Error::other("the upload broke")),
    ]);
    let err = db.copy_in("COPY t FROM STDIN", data).await.unwrap_err();
    assert!(err.is_copy_aborted(), "{err:?}");
    let cause = std::error::Error::source(&err).expect("the data's error");
    assert_eq!(cause.to_string(), "the upload broke");
    assert_eq!(ints(&db, "SELECT count(*)::int FROM t").await, [0]);

    // A row the server rejects fails the COPY with the server's error.
    let err = db
        .copy_in(
            "COPY t FROM STDIN",
            stream::iter([Ok::<_, std::io::Error>("x\n")]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&pool_sql::SqlState::INVALID_TEXT_REPRESENTATION)
    );
    assert_eq!(ints(&db, "SELECT count(*)::int FROM t").await, [0]);
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_out_dropped_after_one_chunk_is_cancelled_and_the_next_caller_gets_its_session() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "copy-out-dropped").max_open(1).build().unwrap();
    let mut out = db
        .copy_out("COPY (SELECT generate_series(1::bigint, 10000000000)) TO STDOUT")
        .await
        .unwrap();
    let first = out.try_next().await.unwrap().expect("a first chunk");
    assert!(first.starts_with(b"1\n"));
    assert_eq!(
        active(&admin, "copy-out-dropped", "generate_series").await,
        1
    );
    drop(out);
    // Without the cancel, the next caller would wait for ten billion lines.
    let n = tokio::time::timeout(Duration::from_secs(10), ints(&db, "SELECT 5"))
        .await
        .expect("the next caller does not wait for the abandoned COPY");
    assert_eq!(n, [5]);
    assert_eq!(
        active(&admin, "copy-out-dropped", "generate_series").await,
        0
    );
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_on_a_conn_and_in_a_transaction() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "copy-pinned").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    let rows = |text: &'static str| stream::iter([Ok::<_, std::io::Error>(text)]);

    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.copy_in("COPY t FROM STDIN", rows("1\n2\n"))
            .await
            .unwrap(),
        2
    );
    tx.rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert_eq!(
        tx.copy_in("COPY t FROM STDIN", rows("3\n")).await.unwrap(),
        1
    );
    tx.commit().await.unwrap();

    let mut conn = db.conn().await.unwrap();
    {
        let mut out = conn.copy_out("COPY t TO STDOUT").await.unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = out.try_next().await.unwrap() {
            all.extend_from_slice(&chunk);
        }
        assert_eq!(all, b"3\n");
    }
    // A COPY dropped unfinished on a Conn: its next statement waits for the cancel.
    {
        let mut out = conn
            .copy_out("COPY (SELECT generate_series(1::bigint, 10000000000)) TO STDOUT")
            .await
            .unwrap();
        assert!(out.try_next().await.unwrap().is_some());
    }
    let n: i32 = tokio::time::timeout(Duration::from_secs(10), conn.query_one("SELECT 4", &[]))
        .await
        .expect("does not queue behind the abandoned COPY")
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
    // A COPY FROM STDIN whose future is dropped half way on a Conn: aborted, and the next
    // statement on the Conn runs on a session out of COPY mode.
    // The data stream says when the COPY has asked past its first row, then never ends.
    let asked = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = asked.clone();
    let stalled =
        stream::iter([Ok::<_, std::io::Error>("9\n")]).chain(stream::poll_fn(move |_| {
            signal.notify_one();
            std::task::Poll::Pending
        }));
    tokio::select! {
        r = conn.copy_in("COPY t FROM STDIN", stalled) => panic!("the data never ends: {r:?}"),
        () = asked.notified() => {}
    }
    let n: i64 = tokio::time::timeout(
        Duration::from_secs(10),
        conn.query_one("SELECT count(*) FROM t", &[]),
    )
    .await
    .expect("out of COPY mode at once")
    .unwrap()
    .get(0);
    assert_eq!(n, 1, "the abandoned COPY kept nothing");
    // A failed COPY in a transaction fails the transaction.
    drop(conn);
    let mut tx = db.begin().await.unwrap();
    let err = tx
        .copy_in("COPY t FROM STDIN", rows("x\n"))
        .await
        .unwrap_err();
    assert!(err.code().is_some(), "{err:?}");
    assert!(tx.commit().await.unwrap_err().is_tx_aborted());
    assert_eq!(ints(&db, "SELECT n FROM t").await, [3]);
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

/// `copy_in` and `copy_out` of a statement that is not the matching COPY: refused before
/// anything is sent (an `INSERT` does not run), and a COPY of the other direction (a reply
/// tokio-postgres does not expect) never leaves its session out of step for the next caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_a_statement_that_is_not_its_copy_runs_nothing_and_the_next_caller_is_served() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "copy-misuse").max_open(1).build().unwrap();
    db.execute("CREATE TABLE misuse (n int)", &[])
        .await
        .unwrap();
    let one_line = || stream::iter([Ok::<_, std::io::Error>("1\n")]);
    for round in 0..10 {
        let e = db
            .copy_in("INSERT INTO misuse VALUES (1)", one_line())
            .await
            .unwrap_err();
        assert!(e.is_config(), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("INSERT"), "{e:?}");
        let e = db.copy_out("SELECT 1").await.unwrap_err();
        assert!(e.is_config(), "{e:?}");
        // A COPY, but the other direction: the server answers what copy_in does not expect.
        assert!(
            db.copy_in("COPY misuse TO STDOUT", one_line())
                .await
                .is_err()
        );
        assert_eq!(
            db.query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1,
            "round {round}"
        );
        assert!(db.copy_out("COPY misuse FROM STDIN").await.is_err());
        assert_eq!(
            db.query_one("SELECT 2", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            2,
            "round {round}"
        );
        let mut conn = db.conn().await.unwrap();
        assert!(
            conn.copy_in("COPY misuse TO STDOUT", one_line())
                .await
                .is_err()
        );
        drop(conn);
        assert_eq!(
            db.query_one("SELECT 3", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            3,
            "round {round}"
        );
    }
    assert_eq!(ints(&db, "SELECT count(*)::int FROM misuse").await, [0]);
}

/// A COPY FROM STDIN whose start fails (no such table; cancelled while it waits for a lock)
/// has the Sync after its Execute answered, and the one after its CopyFail too: each later
/// statement of the session still gets its own answer (tokio-postgres gave the second
/// ReadyForQuery to the next statement: "unexpected message", then a closed session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_that_fails_at_its_start_leaves_the_session_in_step() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "copy-failed-start").max_open(1).build().unwrap();
    let one_line = || stream::iter([Ok::<_, std::io::Error>("1\n")]);
    let mut conn = db.conn().await.unwrap();
    let e = conn
        .copy_in("COPY missing FROM STDIN", one_line())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&pool_sql::SqlState::UNDEFINED_TABLE),
        "{e:?}"
    );
    for n in 0..3 {
        let row = conn.query_one("SELECT $1::int", &[&n]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), n);
    }
    drop(conn);
    let e = db
        .copy_in("COPY missing FROM STDIN", one_line())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&pool_sql::SqlState::UNDEFINED_TABLE),
        "{e:?}"
    );
    assert_eq!(ints(&db, "SELECT 7").await, [7]);

    db.batch_execute("CREATE TABLE locked (n int)")
        .await
        .unwrap();
    let mut holder = admin.begin().await.unwrap();
    holder.batch_execute("LOCK TABLE locked").await.unwrap();
    let copy = {
        let db = db.clone();
        tokio::spawn(async move { db.copy_in("COPY locked FROM STDIN", one_line()).await })
    };
    eventually(
        Duration::from_secs(10),
        "the COPY waits for the lock",
        || async { active(&admin, "copy-failed-start", "COPY locked").await == 1 },
    )
    .await;
    copy.abort();
    assert!(copy.await.unwrap_err().is_cancelled());
    // The pool cancels the COPY, settles its session and hands it out again.
    let n = tokio::time::timeout(Duration::from_secs(10), ints(&db, "SELECT 8"))
        .await
        .expect("the next caller does not wait for the lock");
    assert_eq!(n, [8]);
    assert_eq!(ints(&db, "SELECT 9").await, [9]);
    holder.rollback().await.unwrap();
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

/// A `COPY ... FROM STDIN` (or `TO STDOUT`) run as a statement (`execute`, `query`,
/// `batch_execute`) gets a clear error, and its session, which the server holds in copy
/// mode, ends there: the next caller is served on a new session at once (it got the
/// session in copy mode and failed with "closed" before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_run_as_a_statement_fails_clearly_and_its_session_serves_nobody_else() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "copy-as-statement").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let next_caller = |n: i32| {
        let db = db.clone();
        async move {
            let sql = format!("SELECT {n}");
            let row = tokio::time::timeout(Duration::from_secs(10), db.query_one(&sql, &[]))
                .await
                .expect("the next caller does not wait")
                .unwrap_or_else(|e| panic!("the next caller is served: {e:?}"));
            assert_eq!(row.get::<_, i32>(0), n);
        }
    };
    let mut closed = 0;
    for sql in ["COPY t FROM STDIN", "COPY t TO STDOUT"] {
        let e = db.execute(sql, &[]).await.unwrap_err();
        assert!(e.is_config() && e.to_string().contains("copy_in"), "{e}");
        next_caller(1).await;
        let e = db.query(sql, &[]).await.unwrap_err();
        assert!(e.is_config(), "{e:?}");
        next_caller(2).await;
        let e = db
            .batch_execute(&format!("SELECT 1; {sql}"))
            .await
            .unwrap_err();
        assert!(e.is_config(), "{e:?}");
        next_caller(3).await;
        // On a Conn: its later statements fail at once as closed, never wait.
        let mut conn = db.conn().await.unwrap();
        assert!(conn.execute(sql, &[]).await.unwrap_err().is_config());
        let later = tokio::time::timeout(Duration::from_secs(10), conn.query("SELECT 1", &[]))
            .await
            .expect("fails at once");
        assert!(later.is_err(), "{later:?}");
        drop(conn);
        next_caller(4).await;
        closed += 4;
        let s = db.stats();
        assert_eq!(s.broken_closed, closed, "{sql}: {s:?}");
    }
    assert_eq!(ints(&db, "SELECT n FROM t").await, [1]);
}

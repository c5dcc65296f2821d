//! LISTEN/NOTIFY through `Listener` against a real PostgreSQL: notifications sent through
//! the `Db` arrive, on several channels, not after `unlisten`; the listener's session is
//! outside the pool and closes with it; a channel name with quotes and SQL in it is only a
//! name; and a listener survives a server restart, listens again and reports the gap.

mod support;

use std::time::Duration;

use pool_sql::listener::{Event, Gap};
use pool_sql::testing::TestPg;
use pool_sql::{Listener, Notification};
use support::{admin, db, wait_sessions};

/// The next event, failing the test after 10 s (a broken listener must not hang it).
async fn next(listener: &mut Listener) -> Result<Event, pool_sql::Error> {
    tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("an event within 10 s")
}

/// The next event, which must be a notification.
async fn notification(listener: &mut Listener) -> Notification {
    match next(listener).await {
        Ok(Event::Notification(n)) => n,
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_sent_through_the_db_arrive_on_each_channel_until_unlisten() {
    let pg = TestPg::start().expect("test server");
    let db = db(&pg, "listen-basic").build().unwrap();
    let mut listener = db.listener().await.unwrap();
    listener.listen("jobs").await.unwrap();
    listener.listen("mail").await.unwrap();
    listener.listen("jobs").await.unwrap();
    assert_eq!(listener.channels().collect::<Vec<_>>(), ["jobs", "mail"]);

    db.notify("jobs", "1").await.unwrap();
    db.execute("NOTIFY mail, 'hello'", &[]).await.unwrap();
    db.execute("SELECT pg_notify($1, $2)", &[&"jobs", &"2"])
        .await
        .unwrap();
    let got: Vec<(String, String)> = [
        notification(&mut listener).await,
        notification(&mut listener).await,
        notification(&mut listener).await,
    ]
    .iter()
    .map(|n| (n.channel().to_owned(), n.payload().to_owned()))
    .collect();
    let want = [("jobs", "1"), ("mail", "hello"), ("jobs", "2")];
    assert_eq!(got, want.map(|(c, p)| (c.to_owned(), p.to_owned())));

    // After unlisten, "jobs" is silent: notifications of one sender arrive in commit order,
    // so the "mail" one arriving first proves the "jobs" one was never delivered.
    listener.unlisten("jobs").await.unwrap();
    listener.unlisten("never-listened").await.unwrap();
    assert_eq!(listener.channels().collect::<Vec<_>>(), ["mail"]);
    db.notify("jobs", "lost").await.unwrap();
    db.notify("mail", "after").await.unwrap();
    let n = notification(&mut listener).await;
    assert_eq!((n.channel(), n.payload()), ("mail", "after"));

    // A recv dropped while waiting loses nothing.
    let waited = tokio::time::timeout(Duration::from_millis(50), listener.recv()).await;
    assert!(waited.is_err(), "nothing was sent: {waited:?}");
    db.notify("mail", "kept").await.unwrap();
    assert_eq!(notification(&mut listener).await.payload(), "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_session_takes_no_pool_slot_and_closes_when_dropped() {
    let pg = TestPg::start().expect("test server");
    let admin = admin(&pg);
    let app = "listen-slot";
    let db = db(&pg, app).max_open(1).build().unwrap();
    let conn = db.conn().await.unwrap();
    // The pool's one slot is taken, and a listener still opens.
    let mut listener = db.listener().await.unwrap();
    listener.listen("slot").await.unwrap();
    assert_eq!(
        db.stats().open,
        1,
        "the listener is not in the pool's count"
    );
    wait_sessions(&admin, app, 2).await;
    drop(conn);
    db.notify("slot", "x").await.unwrap();
    assert_eq!(notification(&mut listener).await.payload(), "x");

    // It outlives the Db's close, and its session ends when it is dropped.
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
    wait_sessions(&admin, app, 1).await;
    admin.notify("slot", "y").await.unwrap();
    assert_eq!(notification(&mut listener).await.payload(), "y");
    drop(listener);
    wait_sessions(&admin, app, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_name_with_quotes_and_sql_in_it_is_only_a_name() {
    let pg = TestPg::start().expect("test server");
    let db = db(&pg, "listen-odd").build().unwrap();
    db.execute("CREATE TABLE t (x int)", &[]).await.unwrap();
    let mut listener = db.listener().await.unwrap();
    let odd = "Odd \"name\"; DROP TABLE t; -- é";
    listener.listen(odd).await.unwrap();
    // Case is kept: "Jobs" and "jobs" are two channels.
    listener.listen("Jobs").await.unwrap();
    db.notify(odd, "p").await.unwrap();
    db.notify("jobs", "lower").await.unwrap();
    db.execute("NOTIFY \"Jobs\", 'upper'", &[]).await.unwrap();
    let n = notification(&mut listener).await;
    assert_eq!((n.channel(), n.payload()), (odd, "p"));
    let n = notification(&mut listener).await;
    assert_eq!((n.channel(), n.payload()), ("Jobs", "upper"));
    let count: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("the table is still there")
        .get(0);
    assert_eq!(count, 0);

    for bad in [String::new(), "a\0b".to_owned(), "x".repeat(64)] {
        let err = listener.listen(&bad).await.unwrap_err();
        assert!(err.is_config(), "{err:?}");
        assert_eq!(err.knob(), Some("channel"));
    }
    assert_eq!(listener.channels().count(), 2, "no bad name was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_survives_a_server_restart_listens_again_and_reports_the_gap() {
    let pg = TestPg::start().expect("test server");
    let db = db(&pg, "listen-restart").build().unwrap();
    let mut listener = db.listener().await.unwrap();
    listener.listen("a").await.unwrap();
    listener.listen("b").await.unwrap();
    db.notify("a", "before").await.unwrap();
    // Received before the stop: whether the server sends it when a shutdown is racing
    // it is the server's business.
    assert_eq!(notification(&mut listener).await.payload(), "before");

    pg.stop().expect("stop");
    // The end is seen, and the attempt to reconnect fails while the server is down.
    let err = next(&mut listener).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    pg.resume().expect("resume");

    // Attempts go on with backoff (each failure an error) until one succeeds: the gap.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let gap: Gap = loop {
        match next(&mut listener).await {
            Ok(Event::Gap(gap)) => break gap,
            Ok(other) => panic!("expected the gap, got {other:?}"),
            Err(e) => {
                assert!(e.is_connect(), "{e:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no reconnect: {e:?}"
                );
            }
        }
    };
    assert!(gap.attempts() >= 1, "{gap:?}");
    assert!(gap.down_for() > Duration::ZERO, "{gap:?}");
    let cause = gap.cause().expect("the server said why the session ended");
    assert!(
        cause.is_server_shutdown() && cause.is_closed(),
        "57P01 on fast shutdown: {cause:?}"
    );

    // Every channel is listened to again on the new session.
    db.notify("b", "after-b").await.unwrap();
    db.notify("a", "after-a").await.unwrap();
    assert_eq!(notification(&mut listener).await.payload(), "after-b");
    assert_eq!(notification(&mut listener).await.payload(), "after-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_session_is_replaced_and_listen_works_across_it() {
    let pg = TestPg::start().expect("test server");
    let admin = admin(&pg);
    let app = "listen-kill";
    let db = db(&pg, app).build().unwrap();
    let mut listener = db.listener().await.unwrap();
    listener.listen("k").await.unwrap();
    wait_sessions(&admin, app, 1).await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    wait_sessions(&admin, app, 0).await;
    // listen on the ended session: an error (the session is found closed) or, if the end
    // was already seen, a new session; either way the next recv reports the gap.
    let _ = listener.listen("k2").await;
    let gap = loop {
        match next(&mut listener).await {
            Ok(Event::Gap(gap)) => break gap,
            Ok(other) => panic!("expected the gap, got {other:?}"),
            Err(e) => assert!(e.is_connect(), "{e:?}"),
        }
    };
    assert!(
        gap.cause().is_some_and(pool_sql::Error::is_server_shutdown),
        "{gap:?}"
    );
    listener.listen("k2").await.unwrap();
    db.notify("k", "1").await.unwrap();
    db.notify("k2", "2").await.unwrap();
    assert_eq!(notification(&mut listener).await.payload(), "1");
    assert_eq!(notification(&mut listener).await.payload(), "2");
    // One new listener session, and the pool's one for the notifies.
    wait_sessions(&admin, app, 2).await;
    drop(listener);
    wait_sessions(&admin, app, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_as_a_stream_yields_what_recv_returns() {
    use futures_util::StreamExt;
    let pg = TestPg::start().expect("test server");
    let db = db(&pg, "listen-stream").build().unwrap();
    let mut listener = db.listener().await.unwrap();
    listener.listen("s").await.unwrap();
    let mut events = std::pin::pin!(listener.into_stream());
    for payload in ["1", "2"] {
        db.notify("s", payload).await.unwrap();
    }
    for payload in ["1", "2"] {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream never ends");
        match event {
            Ok(Event::Notification(n)) => assert_eq!(n.payload(), payload),
            other => panic!("expected a notification, got {other:?}"),
        }
    }
}

/// A flood of notifications nobody reads yet: at most `Listener::QUEUE` wait in memory, the
/// rest are dropped and counted, and `recv` reports the count before what waited, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_queue_is_dropped_and_counted_not_kept_in_memory() {
    let pg = TestPg::start().expect("test server");
    let db = db(&pg, "listen-flood").build().unwrap();
    let mut listener = db.listener().await.unwrap();
    listener.listen("flood").await.unwrap();
    let total = 3 * Listener::QUEUE as i64;
    db.execute(
        "SELECT pg_notify('flood', g::text) FROM generate_series(1, $1::bigint) g",
        &[&total],
    )
    .await
    .unwrap();
    // The reply to this LISTEN comes after every notification the server sent before it:
    // once it returns, the listener's connection task has read the whole flood.
    listener.listen("after").await.unwrap();
    match next(&mut listener).await {
        Ok(Event::Overflow(dropped)) => {
            assert_eq!(dropped, (total as u64) - Listener::QUEUE as u64)
        }
        other => panic!("expected the overflow first, got {other:?}"),
    }
    for expected in 1..=Listener::QUEUE {
        assert_eq!(
            notification(&mut listener).await.payload(),
            expected.to_string()
        );
    }
    // Room again: what comes next is delivered.
    db.notify("after", "end").await.unwrap();
    let end = notification(&mut listener).await;
    assert_eq!((end.channel(), end.payload()), ("after", "end"));
}

//! The public API's promises that the compiler can check: every public type is `Debug`,
//! `Send` and `Sync` (a user moves a `Db`, a `Conn`, a `Tx` or an error into a spawned task
//! or across threads), and the futures of the statement API are `Send` (`tokio::spawn`
//! takes them); and that `Debug` of the handles a user prints shows no password.

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use pool_sql::testing::{TestBouncer, TestBouncerBuilder, TestPg, TestPgBuilder};
use pool_sql::{
    Conn, CopyOutStream, Db, DbBuilder, Error, Params, PgConn, PgManager, RowStream, SessionReset,
    Statement, Tx,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_debug<T: Debug>() {}
fn assert_static<T: 'static>() {}
fn assert_send_future<F: Future + Send>(_: &F) {}

#[test]
fn every_public_type_is_debug_send_and_sync() {
    assert_send_sync::<Db>();
    assert_send_sync::<DbBuilder>();
    assert_send_sync::<Conn>();
    assert_send_sync::<Tx>();
    assert_send_sync::<pool_sql::Savepoint<'static>>();
    assert_send_sync::<pool_sql::TxOptions>();
    assert_send_sync::<pool_sql::IsolationLevel>();
    assert_send_sync::<PgConn>();
    assert_send_sync::<PgManager>();
    assert_send_sync::<Error>();
    assert_send_sync::<SessionReset>();
    assert_send_sync::<Params<'static>>();
    assert_send_sync::<pool_sql::Stats>();
    assert_send_sync::<pool_sql::Listener>();
    assert_send_sync::<pool_sql::listener::Event>();
    assert_send_sync::<pool_sql::listener::Gap>();
    assert_send_sync::<TestPg>();
    assert_send_sync::<TestPgBuilder>();
    assert_send_sync::<TestBouncer>();
    assert_send_sync::<TestBouncerBuilder>();
    assert_send_sync::<RowStream<'static>>();
    assert_send_sync::<CopyOutStream<'static>>();
    assert_send_sync::<Statement>();

    assert_debug::<Db>();
    assert_debug::<DbBuilder>();
    assert_debug::<Conn>();
    assert_debug::<Tx>();
    assert_debug::<pool_sql::Savepoint<'static>>();
    assert_debug::<pool_sql::TxOptions>();
    assert_debug::<pool_sql::IsolationLevel>();
    assert_debug::<PgConn>();
    assert_debug::<PgManager>();
    assert_debug::<Error>();
    assert_debug::<SessionReset>();
    assert_debug::<Params<'static>>();
    assert_debug::<pool_sql::Listener>();
    assert_debug::<pool_sql::listener::Event>();
    assert_debug::<pool_sql::listener::Gap>();
    assert_debug::<TestPg>();
    assert_debug::<TestPgBuilder>();
    assert_debug::<TestBouncer>();
    assert_debug::<TestBouncerBuilder>();
    assert_debug::<RowStream<'static>>();
    assert_debug::<CopyOutStream<'static>>();
    assert_debug::<Statement>();

    // A `Conn` and a `Tx` own their session: they can be kept in a struct or moved into a
    // task (no borrow of the `Db`).
    assert_static::<Conn>();
    assert_static::<Tx>();
    // A `Db`'s stream owns its session: it can be returned from a handler or moved into
    // a task; a prepared statement holds no session.
    assert_static::<RowStream<'static>>();
    assert_static::<CopyOutStream<'static>>();
    assert_static::<Statement>();
    // An error can be boxed into `anyhow::Error` / `Box<dyn Error + Send + Sync>`.
    let _: Box<dyn std::error::Error + Send + Sync> = Box::new(
        Db::builder("host=h port=notaport")
            .build()
            .expect_err("a bad port"),
    );
}

#[tokio::test]
async fn the_statement_api_futures_are_send() {
    let db = Db::open("postgres://app:pw@127.0.0.1:1/app").unwrap();
    // Made, never polled: nothing connects.
    assert_send_future(&db.query("SELECT 1", &[]));
    assert_send_future(&db.query_one("SELECT $1::int", &[&1i32]));
    assert_send_future(&db.query_opt("SELECT 1", &[]));
    assert_send_future(&db.execute("SELECT 1", &[]));
    assert_send_future(&db.batch_execute("SELECT 1"));
    assert_send_future(&db.conn());
    assert_send_future(&db.begin());
    assert_send_future(&db.ping());
    assert_send_future(&db.query_stream("SELECT 1", &[]));
    assert_send_future(&db.prepare("SELECT 1"));
    assert_send_future(&db.query_as::<(i32,)>("SELECT 1", &[]));
    assert_send_future(&db.copy_out("COPY t TO STDOUT"));
    let data = futures_util::stream::iter([Ok::<_, std::io::Error>("1\n")]);
    assert_send_future(&db.copy_in("COPY t FROM STDIN", data));
    assert_send_future(&db.listener());
    assert_send_future(&db.notify("channel", "payload"));
    assert_send_future(&db.close_and_wait(Duration::from_secs(1)));
    assert_send_future(&db.transaction(async |tx| tx.execute("SELECT 1", &[]).await));
    assert_send_future(&db.begin_with(pool_sql::TxOptions::new()));
    assert_send_future(
        &db.transaction_with(pool_sql::TxOptions::new(), async |tx| {
            tx.execute("SELECT 1", &[]).await
        }),
    );
    assert_send_future(
        &db.transaction_retry(pool_sql::TxOptions::new(), async |tx| {
            tx.transaction(async |sp| sp.execute("SELECT 1", &[]).await)
                .await
        }),
    );
    // The futures of `Conn` and `Tx`, through functions that take them (a `Conn` cannot be
    // made without a server).
    fn on_conn(conn: &mut Conn) -> impl Future + Send + '_ {
        conn.query("SELECT 1", &[])
    }
    fn on_tx(tx: Tx) -> impl Future + Send {
        tx.commit()
    }
    fn begin(conn: Conn) -> impl Future + Send {
        conn.begin()
    }
    fn stream_on_conn(conn: &mut Conn) -> impl Future + Send + '_ {
        conn.query_stream("SELECT 1", &[])
    }
    fn copy_in_tx(tx: &mut Tx) -> impl Future + Send + '_ {
        tx.copy_in(
            "COPY t FROM STDIN",
            futures_util::stream::empty::<Result<Vec<u8>, std::io::Error>>(),
        )
    }
    let _ = (on_conn, on_tx, begin, stream_on_conn, copy_in_tx);
    db.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_of_a_conn_a_tx_and_the_manager_shows_no_password() {
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(2).build().unwrap();
    let mut conn = db.conn().await.unwrap();
    conn.execute("SELECT 1", &[]).await.unwrap();
    let tx = db.begin().await.unwrap();
    for shown in [
        format!("{conn:?}"),
        format!("{conn:#?}"),
        format!("{tx:?}"),
        format!("{:?}", db.pool().manager()),
        format!("{:?}", db.pool()),
        format!("{db:?}"),
        format!("{pg:?}"),
    ] {
        assert!(!shown.contains(TestPg::PASSWORD), "a password in {shown}");
    }
    // What they do show: the session's state, and where the sessions go.
    let shown = format!("{conn:?}");
    assert!(
        shown.contains("PgConn") && shown.contains("uses: 1"),
        "{shown}"
    );
    let shown = format!("{:?}", db.pool().manager());
    let at = format!("postgres@127.0.0.1:{}/postgres", pg.port().unwrap());
    assert!(shown.contains(&at), "{shown}");
    drop((conn, tx));
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

/// A `Conn` discarded is closed, not given back: the next `conn()` gets a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_conn_is_closed_and_counted_not_given_back() {
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(1).build().unwrap();
    let mut conn = db.conn().await.unwrap();
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    conn.discard();
    let mut next = db.conn().await.unwrap();
    let other: i32 = next
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, other, "the discarded session came back");
    assert_eq!(db.stats().broken_closed, 1, "{:?}", db.stats());
    drop(next);
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

/// `PgManager`'s error is this crate's `Error`: a `pool_core::Error` from the pool
/// underneath (`db.pool().get()`) reaches it, predicates and all.
#[tokio::test]
async fn an_error_of_the_pool_underneath_downcasts_to_this_crates_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = Db::open(&format!("postgres://app:pw@127.0.0.1:{port}/app")).unwrap();
    let err = db.pool().get().await.unwrap_err();
    assert!(err.is_create(), "{err:?}");
    let ours = err
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("no pool_sql::Error in {err:?}"));
    assert!(ours.is_connect() && ours.is_connect_refused(), "{ours:?}");
    assert_eq!(
        ours.to_string(),
        format!("connect to 127.0.0.1:{port} refused")
    );
    db.close();
}

/// The listener's futures are `Send` too (checked at compile time; never called).
#[allow(dead_code)]
fn the_listener_futures_are_send(listener: &mut pool_sql::Listener) {
    assert_send_future(&listener.recv());
    assert_send_future(&listener.listen("channel"));
    assert_send_future(&listener.unlisten("channel"));
}

//! Multi-host connection strings, honoured as libpq does (issue 16, point 9), against real
//! servers: a primary and a streaming-replication standby of it (`TestPg::standby_of`).
//!
//! - `target_session_attrs=read-write` skips a standby listed first, and `read-only` picks
//!   it; a session of the wrong kind is closed and the next host tried;
//! - after a failover (the primary stops, the standby is promoted), the same `Db` finds the
//!   new primary without a restart, and meanwhile no write ever reaches the standby;
//! - `hostaddr` is dialled instead of resolving the host name, which still names the server
//!   (in errors, and for TLS);
//! - no host of the kind asked for is a clear error naming every host, never a password;
//! - `load_balance_hosts=random` spreads connects over the hosts; ports must pair up.

mod support;

use std::error::Error as _;
use std::time::{Duration, Instant};

use pool_sql::testing::TestPg;
use pool_sql::{Db, SqlState};
use support::{admin, eventually, sessions};

/// A key=value connection string to `hosts` (name and port each), as the superuser.
fn conninfo(hosts: &[(&str, u16)], extra: &str) -> String {
    let names: Vec<&str> = hosts.iter().map(|(h, _)| *h).collect();
    let ports: Vec<String> = hosts.iter().map(|(_, p)| p.to_string()).collect();
    format!(
        "host={} port={} user=postgres password={} dbname=postgres connect_timeout=10 {extra}",
        names.join(","),
        ports.join(","),
        TestPg::PASSWORD,
    )
}

fn port(pg: &TestPg) -> u16 {
    pg.port().expect("a local server")
}

/// A primary and a standby streaming from it.
fn pair() -> (TestPg, TestPg) {
    let primary = TestPg::start().expect("primary");
    let standby = TestPg::standby_of(&primary).expect("standby");
    (primary, standby)
}

/// The port of the server the session went to, and whether it is a standby.
async fn where_am_i(db: &Db) -> (u16, bool) {
    let row = db
        .query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .expect("where the session went");
    (row.get::<_, i32>(0) as u16, row.get(1))
}

/// A port nothing listens on: bound, then released.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The error and all its causes, as one line.
fn chain(e: &pool_sql::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_skips_a_standby_listed_first() {
    let (primary, standby) = pair();
    let url = conninfo(
        &[("127.0.0.1", port(&standby)), ("127.0.0.1", port(&primary))],
        "target_session_attrs=read-write",
    );
    let db = Db::builder(&url).max_open(2).build().unwrap();
    // Before the fix the session went to the standby: 25006, read-only transaction.
    db.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    assert_eq!(
        db.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap(),
        1
    );
    assert_eq!(where_am_i(&db).await, (port(&primary), false));
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_picks_the_standby() {
    let (primary, standby) = pair();
    let url = conninfo(
        &[("127.0.0.1", port(&primary)), ("127.0.0.1", port(&standby))],
        "target_session_attrs=read-only",
    );
    let db = Db::builder(&url)
        .application_name("hosts-read-only")
        .max_open(2)
        .build()
        .unwrap();
    assert_eq!(where_am_i(&db).await, (port(&standby), true));
    // The primary's session, of the wrong kind, was closed, not left behind.
    let on_primary = admin(&primary);
    eventually(
        Duration::from_secs(10),
        "no session left on the primary",
        || async { sessions(&on_primary, "hosts-read-only").await == 0 },
    )
    .await;
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_same_db_finds_the_promoted_standby() {
    let (a, b) = pair();
    let url = conninfo(
        &[("127.0.0.1", port(&a)), ("127.0.0.1", port(&b))],
        "target_session_attrs=read-write",
    );
    // A short breaker backoff: the failover is noticed within a second, not five.
    let builder = Db::builder(&url).max_open(4);
    let mut pool = builder.pool_config().clone();
    pool.breaker_max_backoff = Duration::from_millis(500);
    let db = builder.pool(pool).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    db.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    // A few sessions open in the pool, all on a.
    let (p1, p2, p3) = tokio::join!(where_am_i(&db), where_am_i(&db), where_am_i(&db));
    for p in [p1, p2, p3] {
        assert_eq!(p, (port(&a), false));
    }
    // b has the row before a goes (so the failover loses nothing committed).
    let on_b = Db::builder(&b.url()).max_open(1).build().unwrap();
    eventually(Duration::from_secs(10), "b replayed the row", || async {
        on_b.query_one("SELECT count(*) FROM t", &[])
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 1)
    })
    .await;
    on_b.close_and_wait(Duration::from_secs(10)).await.unwrap();

    a.stop().unwrap();
    // The pool's old sessions fail; then, with b still a standby, a write must fail to
    // connect, saying why, and never reach b (before the fix: 25006 on b).
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match db.execute("INSERT INTO t VALUES (2)", &[]).await {
            Ok(_) => panic!("a write succeeded with the primary down and b still a standby"),
            Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                panic!("a write reached the standby: {}", chain(&e))
            }
            Err(e) if chain(&e).contains("target_session_attrs=read-write") => break chain(&e),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "old sessions still failing after 20 s: {}",
                    chain(&e)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        refused.contains(&format!("127.0.0.1:{} (read-only)", port(&b))),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("127.0.0.1:{}", port(&a))),
        "{refused}"
    );

    b.promote().unwrap();
    let promoted = Instant::now();
    let bound = Duration::from_secs(15);
    loop {
        match db.execute("INSERT INTO t VALUES (3)", &[]).await {
            Ok(n) => break assert_eq!(n, 1),
            Err(e) => {
                assert!(
                    promoted.elapsed() < bound,
                    "no write on the promoted b within {bound:?}: {}",
                    chain(&e)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!(
        "writes resumed {:?} after the promotion",
        promoted.elapsed()
    );
    assert_eq!(where_am_i(&db).await, (port(&b), false));
    let rows: Vec<i32> = db
        .query("SELECT x FROM t ORDER BY x", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 3], "the row from before the failover is on b");
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostaddr_is_dialled_instead_of_resolving_the_host_name() {
    let pg = TestPg::start().expect("postgres");
    // `.invalid` never resolves (RFC 2606): only hostaddr can get there.
    let url = format!(
        "{} hostaddr=127.0.0.1,127.0.0.1",
        conninfo(
            &[
                ("gone.pool-sql.invalid", dead_port()),
                ("db.pool-sql.invalid", port(&pg)),
            ],
            "",
        )
    );
    let db = Db::builder(&url).max_open(1).build().unwrap();
    assert_eq!(where_am_i(&db).await, (port(&pg), false));
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();

    // Errors name the server by its host name, and say which address was dialled.
    let dead = dead_port();
    let url = format!(
        "{} hostaddr=127.0.0.1",
        conninfo(&[("gone.pool-sql.invalid", dead)], "")
    );
    let db = Db::builder(&url).max_open(1).build().unwrap();
    let e = db.ping().await.unwrap_err();
    assert!(e.is_connect_refused(), "{}", chain(&e));
    assert!(
        chain(&e).contains(&format!(
            "gone.pool-sql.invalid:{dead} (hostaddr 127.0.0.1)"
        )),
        "{}",
        chain(&e)
    );
}

/// `hostaddr` without `host`: the address is the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostaddr_without_host_is_the_target() {
    let pg = TestPg::start().expect("postgres");
    let url = format!(
        "hostaddr=127.0.0.1 port={} user=postgres password={} dbname=postgres",
        port(&pg),
        TestPg::PASSWORD
    );
    let db = Db::builder(&url).max_open(1).build().unwrap();
    assert_eq!(where_am_i(&db).await, (port(&pg), false));
}

/// With `hostaddr`, TLS still checks the certificate against the host's name: a server whose
/// certificate names only `db.pool-sql.invalid` is reached at 127.0.0.1 and verified.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hostaddr_tls_verifies_the_host_name() {
    let (cert, key, der) = support::certificate_for(&["db.pool-sql.invalid"]);
    let pg = TestPg::builder()
        .tls(cert, key)
        .start()
        .expect("test server with TLS");
    let tls = || support::trusting(der.clone());
    let named = format!(
        "{} hostaddr=127.0.0.1",
        conninfo(&[("db.pool-sql.invalid", port(&pg))], "sslmode=require")
    );
    let db = Db::builder(&named).tls(tls()).max_open(1).build().unwrap();
    let ssl = support::encrypted(&db).await;
    assert!(ssl, "the session is encrypted");
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();

    // The same address under another name: the certificate does not match it.
    let other = format!(
        "{} hostaddr=127.0.0.1",
        conninfo(&[("other.pool-sql.invalid", port(&pg))], "sslmode=require")
    );
    let db = Db::builder(&other).tls(tls()).max_open(1).build().unwrap();
    let e = db.ping().await.unwrap_err();
    assert!(e.is_tls(), "{}", chain(&e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_of_the_wanted_kind_is_an_error_naming_every_host() {
    let (primary, standby) = pair();
    let dead = dead_port();
    let url = conninfo(
        &[("127.0.0.1", port(&standby)), ("127.0.0.1", dead)],
        "target_session_attrs=read-write",
    );
    let db = Db::builder(&url)
        .application_name("hosts-no-match")
        .max_open(1)
        .build()
        .unwrap();
    let e = db.ping().await.unwrap_err();
    let text = chain(&e);
    assert!(
        text.contains("no host gave a read-write session (target_session_attrs=read-write)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{} (read-only)", port(&standby))),
        "{text}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{dead} (failed: could not connect")),
        "{text}"
    );
    for shown in [text, format!("{e:?}")] {
        assert!(!shown.contains(TestPg::PASSWORD), "a password in {shown}");
    }
    // The standby's session was closed, not kept.
    let on_standby = admin(&standby);
    eventually(
        Duration::from_secs(10),
        "no session left on the standby",
        || async { sessions(&on_standby, "hosts-no-match").await == 0 },
    )
    .await;

    // And the other way round: read-only where there is only a primary.
    let url = conninfo(
        &[("127.0.0.1", port(&primary))],
        "target_session_attrs=read-only",
    );
    let db = Db::builder(&url).max_open(1).build().unwrap();
    let text = chain(&db.ping().await.unwrap_err());
    assert!(
        text.contains(&format!(
            "no host gave a read-only session (target_session_attrs=read-only); tried \
             127.0.0.1:{} (not read-only)",
            port(&primary)
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balance_hosts_random_spreads_connects_over_the_hosts() {
    let (one, two) = (TestPg::start().expect("one"), TestPg::start().expect("two"));
    let url = conninfo(
        &[("127.0.0.1", port(&one)), ("127.0.0.1", port(&two))],
        "load_balance_hosts=random",
    );
    // Each connect draws its own order: both hosts show up within a few new sessions
    // (all 40 on the first one has probability 2^-40). Before the fix, every session went
    // to the first host.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let db = Db::builder(&url).max_open(1).build().unwrap();
        seen.insert(where_am_i(&db).await.0);
        db.close_and_wait(Duration::from_secs(10)).await.unwrap();
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, [port(&one), port(&two)].into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_that_do_not_pair_with_hosts_are_an_error() {
    let pg = TestPg::start().expect("postgres");
    // Three hosts, two ports: libpq refuses it; before the fix the third host silently got
    // the first port.
    let p = port(&pg);
    let url = conninfo(&[("127.0.0.1", p), ("127.0.0.1", p)], "").replace(
        "host=127.0.0.1,127.0.0.1",
        "host=127.0.0.1,127.0.0.1,127.0.0.1",
    );
    let e = match Db::builder(&url).build() {
        Err(e) => e,
        Ok(db) => db.ping().await.unwrap_err(),
    };
    assert!(chain(&e).contains("2 ports for 3 hosts"), "{}", chain(&e));
}

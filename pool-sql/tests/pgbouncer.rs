//! Behind PgBouncer in transaction mode, with the statement cache off: many client sessions
//! share two server sessions, and every statement (with parameters, in transactions or not)
//! still runs right, because nothing named is left on a server session.
//!
//! Needs the `pgbouncer` binary (`scripts/test.sh` installs it). Skipped with `DATABASE_URL`,
//! whose server a test cannot put a PgBouncer in front of with known credentials.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::{TestBouncer, TestBouncerBuilder, TestPg};
use support::{admin, eventually, ints};

const CLIENTS: usize = 16;
const SERVER_SESSIONS: u32 = 2;

/// A test server and `bouncer` in front of it; `None` (the test is skipped) with
/// `DATABASE_URL`, whose server has no PgBouncer of ours.
fn started(bouncer: TestBouncerBuilder) -> Option<(TestPg, TestBouncer)> {
    if std::env::var_os("DATABASE_URL").is_some() {
        eprintln!("skipped: DATABASE_URL is set");
        return None;
    }
    let pg = TestPg::start().expect("test server");
    let bouncer = bouncer
        .start(&pg)
        .expect("pgbouncer (apt-get install pgbouncer)");
    Some((pg, bouncer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_mode_with_the_cache_off_runs_every_statement() {
    let Some((pg, bouncer)) = started(TestBouncer::builder().server_sessions(SERVER_SESSIONS))
    else {
        return;
    };
    let admin = admin(&pg);
    admin
        .batch_execute(
            "CREATE TABLE ledger (id serial PRIMARY KEY, who int8, amount int4, note text)",
        )
        .await
        .unwrap();

    let db = Db::builder(&bouncer.url())
        .statement_cache(0)
        .max_open(CLIENTS)
        .max_idle(CLIENTS)
        .build()
        .unwrap();

    // 16 client sessions at once, each running parameterised statements and transactions.
    let mut tasks = Vec::new();
    for who in 0..CLIENTS as i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40i32 {
                let row = db
                    .query_one(
                        "SELECT $1::int4 + $2::int4, $3::text || '!'",
                        &[&i, &7i32, &format!("w{who}")],
                    )
                    .await
                    .expect("select with parameters");
                assert_eq!(row.get::<_, i32>(0), i + 7);
                assert_eq!(row.get::<_, String>(1), format!("w{who}!"));
                // An untyped parameter: its type comes from the Rust value (int8, then a
                // cast the server makes for the column).
                let n = db
                    .execute(
                        "INSERT INTO ledger (who, amount, note) VALUES ($1, $2, $3)",
                        &[&who, &i, &Some("plain")],
                    )
                    .await
                    .expect("insert");
                assert_eq!(n, 1);
                // A transaction: its statements stay on one server session; a rolled back
                // one leaves nothing.
                let commit = i % 2 == 0;
                let mut tx = db.begin().await.expect("begin");
                tx.execute(
                    "INSERT INTO ledger (who, amount, note) VALUES ($1, $2, 'tx')",
                    &[&who, &(-i)],
                )
                .await
                .expect("insert in tx");
                let mine: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM ledger WHERE who = $1 AND note = 'tx'",
                        &[&who],
                    )
                    .await
                    .expect("read own write")
                    .get(0);
                assert!(mine >= 1);
                if commit {
                    tx.commit().await.expect("commit");
                } else {
                    tx.rollback().await.expect("rollback");
                }
            }
            Ok::<(), pool_sql::Error>(())
        }));
    }

    // While they run, PgBouncer holds at most its two server sessions for all of them: the
    // clients really do share server sessions.
    let most = AtomicI64::new(0);
    eventually(Duration::from_secs(30), "the clients finish", || {
        let (admin, most) = (&admin, &most);
        let done = tasks.iter().all(|t| t.is_finished());
        async move {
            let server: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                     AND application_name <> 'pool-sql-admin'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            most.fetch_max(server, Ordering::Relaxed);
            done
        }
    })
    .await;
    let most = most.into_inner();
    assert!(
        (1..=i64::from(SERVER_SESSIONS)).contains(&most),
        "{most} server sessions behind PgBouncer's pool of {SERVER_SESSIONS}"
    );
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(
        db.stats().created as usize > SERVER_SESSIONS as usize,
        "more client sessions than server sessions: {:?}",
        db.stats()
    );

    let per_client = ints(
        &admin,
        "SELECT count(*)::int4 FROM ledger WHERE note = 'plain' GROUP BY who ORDER BY who",
    )
    .await;
    assert_eq!(per_client, vec![40; CLIENTS]);
    let committed = ints(
        &admin,
        "SELECT count(*)::int4 FROM ledger WHERE note = 'tx' GROUP BY who ORDER BY who",
    )
    .await;
    assert_eq!(
        committed,
        vec![20; CLIENTS],
        "only the committed halves stay"
    );
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_types_come_from_the_rust_values() {
    let Some((_pg, bouncer)) = started(TestBouncer::builder()) else {
        return;
    };
    let db = Db::builder(&bouncer.url())
        .statement_cache(0)
        .build()
        .unwrap();
    let row = db
        .query_one(
            "SELECT pg_typeof($1)::text, pg_typeof($2)::text, pg_typeof($3)::text, \
             pg_typeof($4)::text, pg_typeof($5)::text, pg_typeof($6)::text, pg_typeof($7)::text",
            &[
                &1i32,
                &2i64,
                &"three",
                &true,
                &1.5f64,
                &vec![1i64, 2],
                &None::<i16>,
            ],
        )
        .await
        .unwrap();
    let types: Vec<String> = (0..7).map(|i| row.get(i)).collect();
    assert_eq!(
        types,
        [
            "integer",
            "bigint",
            "text",
            "boolean",
            "double precision",
            "bigint[]",
            "smallint"
        ]
    );
    // A value the statement cannot take gets the server's clear error, not a panic.
    let err = db
        .query_one("SELECT 1 WHERE 1 = $1", &[&"one"])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&pool_sql::SqlState::UNDEFINED_FUNCTION),
        "{err}"
    );
    // Bytes and NULLs round-trip.
    let row = db
        .query_one(
            "SELECT $1::bytea, $2::text IS NULL",
            &[&vec![0u8, 1, 2], &None::<String>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), vec![0u8, 1, 2]);
    assert!(row.get::<_, bool>(1));
}

/// `copy_in` through PgBouncer in transaction mode, with its start failing now and then:
/// every COPY lands or fails with the server's own error, never with another request's
/// answer (the failed start's second ReadyForQuery reached the next COPY: "unexpected
/// message"). Whether each request gets an answer at all is PgBouncer's business: before
/// 1.22 it miscounts a COPY's answers and may drop a request sent right after one (the
/// pool's reset, or the next COPY), so `query_timeout` bounds every wait and a COPY that
/// timed out is allowed here; nothing else is, and the table holds exactly the rows of the
/// COPYs that said they landed (and at most those that timed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_through_transaction_mode_gets_each_copy_its_own_answer() {
    let Some((pg, bouncer)) = started(TestBouncer::builder().server_sessions(SERVER_SESSIONS))
    else {
        return;
    };
    let admin = admin(&pg);
    admin.batch_execute("CREATE TABLE c (n int)").await.unwrap();
    let db = Db::builder(&bouncer.url())
        .statement_cache(0)
        .query_timeout(Duration::from_secs(2))
        .max_open(1)
        .build()
        .unwrap();
    let (mut landed, mut timed_out) = (0, 0);
    for i in 0..20 {
        let line = futures_util::stream::iter([Ok::<_, std::io::Error>(format!("{i}\n"))]);
        let missing = i % 5 == 4;
        let sql = if missing {
            "COPY missing FROM STDIN"
        } else {
            "COPY c FROM STDIN"
        };
        match db.copy_in(sql, line).await {
            Ok(n) => {
                assert!(!missing, "a COPY into a missing table said it landed");
                assert_eq!(n, 1);
                landed += 1;
            }
            Err(e) if e.is_timeout() => timed_out += 1,
            Err(e) => {
                assert!(missing, "a COPY into an existing table failed: {e:?}");
                assert_eq!(
                    e.code(),
                    Some(&pool_sql::SqlState::UNDEFINED_TABLE),
                    "{e:?}"
                );
            }
        }
    }
    assert!(
        landed >= 8,
        "most COPYs land ({landed}; {timed_out} timed out)"
    );
    // A COPY whose answer PgBouncer lost may have landed all the same.
    let rows = ints(&admin, "SELECT count(*)::int FROM c").await[0];
    assert!(
        (landed..=landed + timed_out).contains(&rows),
        "{rows} rows: the COPYs that landed ({landed}), and at most those that timed out \
         ({timed_out})"
    );
}

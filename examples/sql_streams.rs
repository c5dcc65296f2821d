//! PostgreSQL work beyond single statements, through the pool and with its hygiene: a
//! 100,000-row COPY in from a stream, the rows read back as they arrive, a COPY out, a
//! stream given up half way (cancelled; the next caller gets a clean session), a listener
//! fed by concurrent workers, and SERIALIZABLE transfers retried on conflicts.
//!
//! `cargo run -p examples --example sql_streams` starts a throw-away PostgreSQL from the
//! system's binaries (or uses `DATABASE_URL` when set).

use std::time::Duration;

use pool_sql::listener::Event;
use pool_sql::testing::TestPg;
use pool_sql::{Db, IsolationLevel, TxOptions};

const ROWS: i32 = 100_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = TestPg::from_env_or_start()?;
    let db = Db::builder(&pg.url())
        .application_name("sql-streams-example")
        .max_open(4)
        .build()?;
    db.batch_execute(
        "DROP TABLE IF EXISTS reading;
         CREATE TABLE reading (id int PRIMARY KEY, value double precision NOT NULL);
         DROP TABLE IF EXISTS account;
         CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL);
         INSERT INTO account VALUES (1, 1000), (2, 1000);",
    )
    .await?;

    // COPY in from a stream of chunks made as they are sent: memory holds one chunk.
    let chunks = (0..ROWS / 1000).map(|c| {
        let mut chunk = String::new();
        for id in c * 1000..(c + 1) * 1000 {
            chunk.push_str(&format!("{id}\t{}\n", f64::from(id) / 7.0));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let copied = db
        .copy_in(
            "COPY reading FROM STDIN",
            futures_util::stream::iter(chunks),
        )
        .await?;
    println!("copied in: {copied} rows");

    // The rows back as they arrive.
    let mut rows = db
        .query_stream("SELECT id, value FROM reading ORDER BY id", &[])
        .await?;
    let (mut count, mut sum) = (0u64, 0.0);
    while let Some(row) = rows.try_next().await? {
        count += 1;
        sum += row.get::<_, f64>(1);
    }
    println!("streamed: {count} rows, sum {sum:.1}");

    // COPY out, chunk by chunk.
    let mut out = db.copy_out("COPY reading TO STDOUT (FORMAT csv)").await?;
    let mut bytes = 0;
    while let Some(chunk) = out.try_next().await? {
        bytes += chunk.len();
    }
    println!("copied out: {bytes} bytes of CSV");

    // A stream given up after one row: the query is cancelled on the server and the session
    // is clean for the next caller, at once.
    let mut endless = db
        .query_stream("SELECT generate_series(1::bigint, 10000000000)", &[])
        .await?;
    let first = endless.try_next().await?.map(|row| row.get::<_, i64>(0));
    drop(endless);
    let one: i32 = db.query_one("SELECT 1", &[]).await?.get(0);
    println!("endless stream given up after row {first:?}; the next statement answered {one}");

    // A listener on a session of its own, fed by workers through the pool.
    let mut listener = db.listener().await?;
    listener.listen("done").await?;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move { db.notify("done", &format!("worker {w}")).await })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let mut heard = Vec::new();
    while heard.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), listener.recv()).await?? {
            Event::Notification(n) => heard.push(n.payload().to_owned()),
            Event::Gap(gap) => println!("the listener was down for {:?}", gap.down_for()),
            _ => {}
        }
    }
    heard.sort();
    println!("heard: {heard:?}");

    // SERIALIZABLE transfers in both directions at once: conflicts (40001) are retried.
    let options = TxOptions::new()
        .isolation(IsolationLevel::Serializable)
        .attempts(10);
    let transfers: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let (from, to) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
            tokio::spawn(async move {
                // `async move`: in a spawned task the closure owns what it captures.
                db.transaction_retry(options, async move |tx| {
                    let balance: i32 = tx
                        .query_one("SELECT balance FROM account WHERE id = $1", &[&from])
                        .await?
                        .get(0);
                    tx.execute(
                        "UPDATE account SET balance = $1 WHERE id = $2",
                        &[&(balance - 10), &from],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE account SET balance = balance + 10 WHERE id = $1",
                        &[&to],
                    )
                    .await
                })
                .await
            })
        })
        .collect();
    let mut done = 0;
    for transfer in transfers {
        if transfer.await?.is_ok() {
            done += 1;
        }
    }
    let total: i64 = db
        .query_one("SELECT sum(balance) FROM account", &[])
        .await?
        .get(0);
    println!("{done}/8 transfers committed; total {total} (always 2000)");
    assert_eq!(total, 2000);

    println!("{:?}", db.stats());
    db.close_and_wait(Duration::from_secs(5)).await?;
    Ok(())
}

//! A small service on `pool_sql::Db`: an order table, concurrent handlers that read, write
//! and transfer stock in transactions, a caller that gives up mid-query, and the pool's
//! DBStats at the end.
//!
//! `cargo run -p examples --example sql_service` starts a throw-away PostgreSQL from the
//! system's binaries (or uses `DATABASE_URL` when set).

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = TestPg::from_env_or_start()?;
    let db = Db::builder(&pg.url())
        .application_name("sql-service-example")
        .max_open(8)
        .max_idle(2)
        .acquire_timeout(Duration::from_secs(5))
        .build()?;

    db.batch_execute(
        "DROP TABLE IF EXISTS stock;
         CREATE TABLE stock (item text PRIMARY KEY, qty int NOT NULL CHECK (qty >= 0));
         INSERT INTO stock VALUES ('apple', 100), ('pear', 100);",
    )
    .await?;

    // 64 concurrent "requests" on 8 sessions: reads, and transfers in transactions, some of
    // which fail their CHECK constraint and roll back.
    let mut handlers = Vec::new();
    for i in 0..64i32 {
        let db = db.clone();
        handlers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let row = db
                    .query_one("SELECT qty FROM stock WHERE item = $1", &[&"apple"])
                    .await?;
                Ok::<_, pool_sql::Error>(row.get::<_, i32>(0) >= 0)
            } else {
                let amount = if i % 7 == 0 { 1000 } else { 3 };
                let moved = db
                    .transaction(async |tx| {
                        tx.execute(
                            "UPDATE stock SET qty = qty - $1 WHERE item = 'apple'",
                            &[&amount],
                        )
                        .await?;
                        tx.execute(
                            "UPDATE stock SET qty = qty + $1 WHERE item = 'pear'",
                            &[&amount],
                        )
                        .await
                    })
                    .await;
                Ok(moved.is_ok())
            }
        }));
    }
    let mut ok = 0;
    for h in handlers {
        if h.await?? {
            ok += 1;
        }
    }

    // A caller that gives up mid-query: the statement is cancelled on the server and its
    // session is clean for the next caller.
    let slow = tokio::time::timeout(
        Duration::from_millis(100),
        db.query("SELECT pg_sleep(30)", &[]),
    );
    println!("slow query given up: {}", slow.await.is_err());
    let total: i64 = db
        .query_one("SELECT sum(qty) FROM stock", &[])
        .await?
        .get(0);

    println!("{ok}/64 requests succeeded; stock total {total} (always 200: transfers are atomic)");
    let s = db.stats();
    println!(
        "DBStats: max_open {} open {} in_use {} idle {} wait_count {} wait_duration {:?} \
         max_idle_closed {} created {} hits {} grace_reused {}",
        s.max_open,
        s.open,
        s.in_use,
        s.idle,
        s.wait_count,
        s.wait_duration,
        s.max_idle_closed,
        s.created,
        s.hits,
        s.grace_reused
    );
    db.close_and_wait(Duration::from_secs(5)).await?;
    assert_eq!(total, 200);
    Ok(())
}

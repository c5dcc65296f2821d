//! Soak: many statements through `Db` against a real PostgreSQL behind the fault-injecting
//! proxy, by 32 tasks under random cancellation, while a chaos monkey resets a random
//! connection every few milliseconds. The mix: parameter round trips (whose answers are
//! checked, so a session reused after a fault can never answer for another call), short
//! sleeps, statements past `query_timeout`, transactions committed or dropped open, and pinned
//! sessions. At the end nothing may be lost: the books balance, the cap held, and after close
//! the server has no session of the pool and the proxy no connection.
//!
//! Bounded in CI (10,000 operations); `SOAK=full` runs 100,000 (`SOAK_OPS=n` any number).

mod support;

use std::time::Duration;

use pool_core::testing::load::{Load, soak_ops};
use pool_sql::{Db, Error};
use support::Rig;

/// `SELECT $1` with a random value: the answer must be the value sent.
async fn echo(
    run: impl AsyncFnOnce(i32) -> Result<i32, Error>,
    rng: &mut fastrand::Rng,
) -> Result<(), Error> {
    let sent = rng.i32(..);
    let got = run(sent).await?;
    assert_eq!(got, sent, "a statement got another call's answer");
    Ok(())
}

async fn one(db: &Db, seed: u64) -> Result<(), Error> {
    let mut rng = fastrand::Rng::with_seed(seed);
    match rng.u32(..100) {
        0..60 => {
            echo(
                async |v| Ok(db.query_one("SELECT $1::int", &[&v]).await?.get(0)),
                &mut rng,
            )
            .await
        }
        60..70 => db.execute("SELECT pg_sleep(0.005)", &[]).await.map(drop),
        // Past query_timeout (100 ms): the session is given up, a cancel request sent.
        70..72 => {
            let err = db.execute("SELECT pg_sleep(0.3)", &[]).await.unwrap_err();
            assert!(
                err.is_timeout() || err.is_closed() || err.pool_error().is_some(),
                "{err:?}"
            );
            Err(err)
        }
        72..88 => {
            let mut tx = db.begin().await?;
            echo(
                async |v| Ok(tx.query_one("SELECT $1::int", &[&v]).await?.get(0)),
                &mut rng,
            )
            .await?;
            if rng.bool() {
                tx.commit().await
            } else {
                // Dropped open: rolled back before the session is reused.
                Ok(())
            }
        }
        _ => {
            let mut conn = db.conn().await?;
            for _ in 0..rng.u8(1..4) {
                echo(
                    async |v| Ok(conn.query_one("SELECT $1::int", &[&v]).await?.get(0)),
                    &mut rng,
                )
                .await?;
            }
            Ok(())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_under_resets_and_cancellation_lose_nothing() {
    let ops = soak_ops(10_000, 100_000);
    let rig = Rig::start("soak").await;
    let db = rig
        .db()
        .max_idle(4)
        .idle_grace(Duration::from_millis(50))
        .acquire_timeout(Duration::from_millis(500))
        .create_timeout(Duration::from_millis(500))
        .query_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let load = Load::start(32, 1..300, Some(ops), {
        let db = db.clone();
        move |rng| {
            let (db, seed) = (db.clone(), rng.u64(..));
            async move {
                one(&db, seed).await.inspect_err(|e| {
                    // Cancel requests go only to statements their callers abandoned.
                    assert!(
                        !e.is_query_canceled(),
                        "a stray cancel hit a statement: {e:?}"
                    );
                })
            }
        }
    });
    let (tally, resets) = rig.proxy.with_monkey(11, 5..30, load.finish()).await;
    let s = db.stats();
    eprintln!(
        "sql soak: {} statements in {:?}: {tally:?}; {} connections reset; {s:?}",
        tally.calls(),
        started.elapsed(),
        resets
    );
    assert_eq!(tally.calls(), ops);
    assert!(tally.ok > ops / 2, "mostly served: {tally:?}");
    assert!(resets > 0);
    support::eventually(Duration::from_secs(10), "books balance", || async {
        let s = db.stats();
        s.created - s.closed() - s.detached == s.open as u64 && s.in_use == 0
    })
    .await;
    // acquire_timeout (500 ms), query_timeout (100 ms) and up to three tries of a statement
    // that never reached the server; margin for a loaded machine.
    rig.settle(db, &tally, Duration::from_millis(2500)).await;
}

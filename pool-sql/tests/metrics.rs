//! Feature `metrics`: `Db::record_metrics` exports the pool's series and the `Db`'s own
//! counters (bad-connection re-runs, transactions run again after a conflict, and those
//! given up) under the documented names, labelled by the given name only.
#![cfg(feature = "metrics")]

use std::time::Duration;

use pool_core::testing::metrics::Capture;
use pool_sql::testing::TestPg;
use pool_sql::{Db, TxOptions};

const CONFLICT: &str =
    "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$";

#[tokio::test]
async fn the_pool_and_the_retries_are_exported_under_the_documented_names() {
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(4).build().unwrap();
    db.execute("SELECT 1", &[]).await.unwrap();

    // One bad-connection re-run.
    {
        let conn = db.conn().await.unwrap();
        conn.get_ref().fail_next_write();
    }
    db.execute("SELECT 1", &[]).await.unwrap();
    // One transaction retried once, then committed; one retried twice and given up.
    let fast = TxOptions::new().backoff(Duration::ZERO);
    let mut runs = 0;
    db.transaction_retry(fast, async |tx| {
        runs += 1;
        if runs == 1 {
            tx.batch_execute(CONFLICT).await?;
        }
        Ok::<_, pool_sql::Error>(())
    })
    .await
    .unwrap();
    let err = db
        .transaction_retry(fast, async |tx| tx.batch_execute(CONFLICT).await)
        .await
        .unwrap_err();
    assert!(err.is_serialization_failure());

    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || db.record_metrics("orders"));
    let get = |name: &str| {
        capture
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported: {:?}", capture.all()))
    };
    assert_eq!(get("sql_retried{pool=orders}"), 1.0);
    assert_eq!(get("sql_tx_retried{pool=orders}"), 3.0, "1 + 2 runs again");
    assert_eq!(get("sql_tx_gave_up{pool=orders}"), 1.0);
    let s = db.stats();
    assert_eq!(get("pool_created{pool=orders}"), s.created as f64);
    assert_eq!(get("pool_broken_closed{pool=orders}"), 1.0);
    assert_eq!(get("pool_open{pool=orders}"), s.open as f64);
    let url = pg.url();
    for name in capture.all().keys() {
        assert!(name.ends_with("{pool=orders}"), "one label set: {name}");
        assert!(!name.contains(&url), "{name}");
    }
}

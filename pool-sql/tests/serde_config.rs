//! `DbBuilder` from serde (feature `serde`): the knobs by their method names with the
//! builder's defaults, pool-core's duration syntax, a whole `pool` section, unknown fields
//! refused, and no password in `Debug`; the knobs read reach a real server.
#![cfg(feature = "serde")]

mod support;

use std::time::Duration;

use pool_sql::DbBuilder;
use pool_sql::testing::TestPg;

fn read(json: &str) -> Result<DbBuilder, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn knobs_read_with_the_builders_defaults_and_pool_cores_durations() {
    let b = read(r#"{"url": "postgres://app:s3cret@db/app"}"#).unwrap();
    assert_eq!(
        b.pool_config().max_open,
        10,
        "the builder's default, not pool-core's"
    );
    assert!(!format!("{b:?}").contains("s3cret"));

    let b = read(
        r#"{"url": "host=db password=s3cret", "max_open": 3, "max_idle": 1, "min_idle": 1,
            "idle_grace": "1m 30s", "max_lifetime": "1h", "max_idle_time": "10m",
            "acquire_timeout": "2s", "create_timeout": "500ms", "validate_after": "0s",
            "statement_cache": 0, "session_reset": {"sql": {"sql": "RESET ALL",
            "discards_statements": false}}}"#,
    )
    .unwrap();
    let c = b.pool_config();
    assert_eq!((c.max_open, c.max_idle, c.min_idle), (3, 1, 1));
    assert_eq!(c.idle_grace, Duration::from_secs(90));
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(c.max_idle_time, Some(Duration::from_secs(600)));
    assert_eq!(c.acquire_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.create_timeout, Some(Duration::from_millis(500)));
    assert_eq!(c.validate_after, Some(Duration::ZERO));
    assert_eq!(b.redacted_url(), "host=db password=***");

    // go_mode first, then the single knobs; a whole pool section replaces every pool knob.
    let b = read(r#"{"url": "host=db", "go_mode": true, "max_idle": 5}"#).unwrap();
    assert_eq!((b.pool_config().max_open, b.pool_config().max_idle), (0, 5));
    assert_eq!(b.pool_config().idle_grace, Duration::ZERO);
    let b = read(r#"{"url": "host=db", "pool": {"max_open": 4, "idle_grace": "5s"}}"#).unwrap();
    assert_eq!(b.pool_config().max_open, 4);
    assert_eq!(b.pool_config().idle_grace, Duration::from_secs(5));
}

#[test]
fn unknown_fields_and_bad_values_are_errors_that_show_no_password() {
    for (json, says) in [
        (
            r#"{"url": "postgres://a:s3cret@db/a", "max_opne": 3}"#,
            "max_opne",
        ),
        (
            r#"{"url": "postgres://a:s3cret@db/a", "query_timeout": "5 parsecs"}"#,
            "parsecs",
        ),
        (
            r#"{"url": "postgres://a:s3cret@db/a", "session_reset": "discard_some"}"#,
            "discard_some",
        ),
        (
            r#"{"url": "postgres://a:s3cret@db/a", "pool": {"max_opne": 1}}"#,
            "max_opne",
        ),
        (r#"{"max_open": 3}"#, "url"),
    ] {
        let err = read(json).unwrap_err().to_string();
        assert!(err.contains(says), "{json}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knobs_read_reach_the_server() {
    let pg = TestPg::start().expect("test server");
    let json = format!(
        r#"{{"url": "{}", "application_name": "from-serde", "query_timeout": "300ms",
            "max_open": 1}}"#,
        pg.url()
    );
    let db = read(&json).unwrap().build().unwrap();
    let app: String = db
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "from-serde");
    let err = db.execute("SELECT pg_sleep(30)", &[]).await.unwrap_err();
    assert!(err.is_timeout(), "query_timeout applied: {err:?}");
    assert_eq!(db.stats().max_open, 1);
}

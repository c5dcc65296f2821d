//! Hostile review of the sql-fix merge (b0208a0..6a75903): each test states what a correct
//! crate does and fails on the current one.

use pool_sql::Db;
use pool_sql::testing::TestPg;

// ---------------------------------------------------------------- client_encoding

/// PostgreSQL keeps `UNICODE` verbatim (check_client_encoding's JDBC workaround) while the
/// encoding is UTF8: text decodes fine, yet the session is closed as "foreign".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_client_encoding_unicode_is_utf8_and_kept() {
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url())
        .application_name("unicode")
        .max_open(1)
        .build()
        .unwrap();
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("SET client_encoding = 'UNICODE'")
        .await
        .unwrap();
    let row = conn
        .query_one("SELECT current_setting('client_encoding'), chr(233)", &[])
        .await
        .unwrap();
    let (enc, e): (String, String) = (row.get(0), row.get(1));
    assert_eq!(
        (enc.as_str(), e.as_str()),
        ("UNICODE", "é"),
        "UTF8 under another name"
    );
    drop(conn);
    db.query_one("SELECT 1", &[]).await.unwrap();
    let s = db.stats();
    assert_eq!(
        (s.broken_closed, s.created),
        (0, 1),
        "a UTF8 session was closed: {s:?}"
    );
}

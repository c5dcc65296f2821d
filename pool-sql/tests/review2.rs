//! Hostile review of the sql-fix merge (b0208a0..6a75903): each test states what a correct
//! crate does and fails on the current one.

use std::io;
use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- the 64 KiB bound

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

async fn read_startup(s: &mut TcpStream) -> io::Result<()> {
    loop {
        let len = s.read_u32().await?;
        let code = s.read_u32().await?;
        let mut rest = vec![0; (len as usize).saturating_sub(8)];
        s.read_exact(&mut rest).await?;
        match code {
            80_877_103 => s.write_all(b"N").await?,
            196_608 => return Ok(()),
            _ => return Err(io::ErrorKind::InvalidData.into()),
        }
    }
}

/// A PostgreSQL 13 (or older; also YugabyteDB 2.x, Greenplum, Redshift) answering
/// `SELECT f(i) FROM generate_series(1, rows)` where `f` is declared `SET TimeZone = 'UTC'`:
/// before PostgreSQL 14 (commit 2432b1a0, "Avoid spamming the client with multiple
/// ParameterStatus messages") every change of a GUC_REPORT setting was reported at once, so
/// each call sends two ParameterStatus (the SET clause, then its restore), inside one
/// request, before its single ReadyForQuery. Every simple query gets this answer.
async fn pg13_with_set_clause(rows: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_startup(&mut s).await.is_err() {
                    return;
                }
                let mut out = message(b'R', &0u32.to_be_bytes());
                for (k, v) in [
                    ("client_encoding", "UTF8"),
                    ("server_version", "13.16"),
                    ("TimeZone", "Europe/Berlin"),
                ] {
                    out.extend(message(b'S', format!("{k}\0{v}\0").as_bytes()));
                }
                out.extend(message(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
                out.extend(message(b'Z', b"I"));
                if s.write_all(&out).await.is_err() {
                    return;
                }
                loop {
                    let Ok(kind) = s.read_u8().await else { return };
                    let Ok(len) = s.read_u32().await else { return };
                    let mut body = vec![0; (len as usize).saturating_sub(4)];
                    if s.read_exact(&mut body).await.is_err() || kind != b'Q' {
                        return;
                    }
                    let mut out = Vec::new();
                    // RowDescription: one column `f`, type void (2278), text.
                    let mut t = 1u16.to_be_bytes().to_vec();
                    t.extend_from_slice(b"f\0");
                    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                    t.extend_from_slice(&2278u32.to_be_bytes());
                    t.extend_from_slice(&4i16.to_be_bytes());
                    t.extend_from_slice(&(-1i32).to_be_bytes());
                    t.extend_from_slice(&0i16.to_be_bytes());
                    out.extend(message(b'T', &t));
                    for _ in 0..rows {
                        out.extend(message(b'S', b"TimeZone\0UTC\0"));
                        out.extend(message(b'S', b"TimeZone\0Europe/Berlin\0"));
                        let mut d = 1u16.to_be_bytes().to_vec();
                        d.extend_from_slice(&0i32.to_be_bytes());
                        out.extend(message(b'D', &d));
                    }
                    out.extend(message(b'C', format!("SELECT {rows}\0").as_bytes()));
                    out.extend(message(b'Z', b"I"));
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// 2000 calls: 4000 ParameterStatus of about 30 bytes (~120 KB) in one request. The
/// statement is legitimate and the server well-behaved; the session must not be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_14_server_reporting_a_function_set_clause_per_row_is_not_a_flood() {
    let port = pg13_with_set_clause(2000).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
    let db = Db::builder(&url).max_open(1).build().unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        db.batch_execute("SELECT f(i) FROM generate_series(1, 2000) i"),
    )
    .await
    .expect("answered");
    if let Err(e) = r {
        panic!("a legitimate statement failed: {e} / {e:?}");
    }
}

/// The control: 1000 calls (~46 KB of ParameterStatus) pass, so the bound is the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_1000_calls_pass() {
    let port = pg13_with_set_clause(1000).await;
    let url = format!("postgres://app:pw@127.0.0.1:{port}/app?connect_timeout=5");
    let db = Db::builder(&url).max_open(1).build().unwrap();
    db.batch_execute("SELECT f(i) FROM generate_series(1, 1000) i")
        .await
        .unwrap();
    db.batch_execute("SELECT f(i) FROM generate_series(1, 1000) i")
        .await
        .unwrap();
}

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

//! TLS through rustls (feature `tls`), against a private server with a certificate made in
//! the test: sessions are encrypted and verified (chain and host name), a cancel request
//! travels encrypted too, a TLS config makes TLS required unless `sslmode` says otherwise
//! (a hostile server that refuses TLS never sees the password), and each way of getting TLS
//! wrong has its clear error.
#![cfg(feature = "tls")]

mod support;

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;
use support::{certificate_for, trusting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    certificate_for(&["127.0.0.1", "localhost"])
}

fn tls_server() -> (TestPg, rustls::pki_types::CertificateDer<'static>) {
    let (cert, key, der) = certificate();
    let pg = TestPg::builder()
        .tls(cert, key)
        .start()
        .expect("test server with TLS");
    (pg, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_encrypted_and_an_abandoned_statement_is_cancelled_over_tls() {
    let (pg, root) = tls_server();
    let db = Db::builder(&format!("{}?sslmode=require", pg.url()))
        .tls(trusting(root))
        .max_open(1)
        .build()
        .unwrap();
    let ssl = support::encrypted(&db).await;
    assert!(ssl, "the session is encrypted");

    // A statement dropped mid-flight: the cancel request goes out over TLS as well, and the
    // one session is back in service long before the abandoned pg_sleep would end.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        db.execute("SELECT pg_sleep(60)", &[]),
    )
    .await;
    assert!(abandoned.is_err(), "the statement was still running");
    let again = tokio::time::timeout(Duration::from_secs(20), db.query_one("SELECT 1", &[]))
        .await
        .expect("the session came back long before pg_sleep(60) ended")
        .unwrap();
    assert_eq!(again.get::<_, i32>(0), 1);
    let ssl = support::encrypted(&db).await;
    assert!(ssl);
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let (pg, _) = tls_server();
    let (_, _, stranger) = certificate();
    let db = Db::builder(&format!("{}?sslmode=require", pg.url()))
        .tls(trusting(stranger))
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert!(
        !err.is_auth_failed() && !err.is_connect_refused(),
        "{err:?}"
    );
    assert!(
        !format!("{err} {err:?}").contains(TestPg::PASSWORD),
        "no secret in {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_is_a_tls_error() {
    let pg = TestPg::start().expect("test server");
    let (_, _, root) = certificate();
    let db = Db::builder(&format!("{}?sslmode=require", pg.url()))
        .tls(trusting(root.clone()))
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");

    // With a TLS config and no sslmode, `require` is the default.
    let db = Db::builder(&pg.url())
        .tls(trusting(root.clone()))
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");

    // An explicit `prefer` (and `allow`, treated as `prefer`) keeps libpq's meaning: plain
    // TCP on such a server.
    for mode in ["prefer", "allow"] {
        let db = Db::builder(&format!("{}?sslmode={mode}", pg.url()))
            .tls(trusting(root.clone()))
            .build()
            .unwrap();
        let ssl = support::encrypted(&db).await;
        assert!(!ssl, "sslmode={mode}");
    }

    // Without a TLS config nothing changes: plain TCP, no sslmode needed.
    let db = Db::builder(&pg.url()).build().unwrap();
    let ssl = support::encrypted(&db).await;
    assert!(!ssl);
}

/// With a roots feature, the built-in config serves instead: tests/tls_default.rs.
#[cfg(not(any(feature = "webpki-roots", feature = "native-roots")))]
#[tokio::test]
async fn require_without_a_tls_config_is_a_config_error() {
    let err = Db::builder("postgres://u:secret@127.0.0.1:1/db?sslmode=require")
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("tls"));
    assert!(!err.to_string().contains("secret"));
}

/// What a hostile server saw from one client: [`hostile_server`].
#[derive(Debug, Default)]
struct Seen {
    /// The client asked for TLS (an 8-byte SSLRequest) first.
    ssl_request: bool,
    /// A startup message arrived after the server said "no TLS".
    startup: bool,
    /// The password message that arrived, if any.
    password: Option<Vec<u8>>,
}

/// A fake PostgreSQL server on 127.0.0.1, as a man in the middle would be: it answers `N`
/// to the SSLRequest, then asks for the password in clear text and records what arrives.
/// Reports one [`Seen`] per connection once the client has hung up.
async fn hostile_server() -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let _ = downgrade(socket, &mut seen).await;
                let _ = tx.send(seen);
            });
        }
    });
    (port, rx)
}

/// The hostile server's side of one connection; ends when the client hangs up.
async fn downgrade(mut socket: TcpStream, seen: &mut Seen) -> std::io::Result<()> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut request = [0u8; 8];
    socket.read_exact(&mut request).await?;
    seen.ssl_request = request == SSL_REQUEST;
    socket.write_all(b"N").await?;
    // The startup message: length (itself included), then the body.
    let len = socket.read_u32().await?;
    let mut body = vec![0u8; (len as usize).saturating_sub(4)];
    socket.read_exact(&mut body).await?;
    seen.startup = true;
    // AuthenticationCleartextPassword.
    socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
    let tag = socket.read_u8().await?;
    let len = socket.read_u32().await?;
    let mut body = vec![0u8; (len as usize).saturating_sub(4)];
    socket.read_exact(&mut body).await?;
    if tag == b'p' {
        seen.password = Some(body);
    }
    let fields = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0";
    let mut error = vec![b'E'];
    error.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    error.extend_from_slice(fields);
    socket.write_all(&error).await?;
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tls_config_and_no_sslmode_a_server_refusing_tls_never_gets_the_password() {
    let (_, _, root) = certificate();
    let (port, mut seen) = hostile_server().await;
    for url in [
        format!(
            "postgres://postgres:{}@127.0.0.1:{port}/postgres",
            TestPg::PASSWORD
        ),
        format!(
            "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres",
            TestPg::PASSWORD
        ),
    ] {
        let db = Db::builder(&url)
            .tls(trusting(root.clone()))
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let err = db.ping().await.unwrap_err();
        // The first connection's record arrives once the client has hung up (the bound
        // only keeps a broken test from hanging).
        let first = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("the client hung up")
            .expect("a connection");
        db.close();
        for s in std::iter::once(first).chain(std::iter::from_fn(|| seen.try_recv().ok())) {
            assert!(s.ssl_request, "TLS was asked for first: {s:?}");
            assert!(!s.startup, "nothing is sent after the refusal: {s:?}");
            assert!(s.password.is_none(), "the password leaked: {s:?}");
        }
        assert!(err.is_tls(), "{err:?}");
        assert!(!err.is_auth_failed(), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_and_verify_ca_check_the_certificate_and_the_host_name() {
    // The certificate names localhost only: connecting to 127.0.0.1 must fail on the name.
    let (cert, key, root) = certificate_for(&["localhost"]);
    let pg = TestPg::builder()
        .tls(cert, key)
        .start()
        .expect("test server with TLS");
    let port = pg.port().expect("a local server");
    for mode in ["verify-full", "verify-ca", "require"] {
        let by_ip = format!(
            "postgres://postgres:{}@127.0.0.1:{port}/postgres?sslmode={mode}",
            TestPg::PASSWORD
        );
        let db = Db::builder(&by_ip)
            .tls(trusting(root.clone()))
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let err = db.ping().await.unwrap_err();
        assert!(err.is_tls(), "sslmode={mode}: {err:?}");

        let by_name = format!(
            "host=localhost port={port} user=postgres password={} dbname=postgres sslmode={mode}",
            TestPg::PASSWORD
        );
        let db = Db::builder(&by_name)
            .tls(trusting(root.clone()))
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let ssl = support::encrypted(&db).await;
        assert!(ssl, "sslmode={mode}");
    }
}

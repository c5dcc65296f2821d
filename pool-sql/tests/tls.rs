//! TLS through rustls (feature `tls`), against a private server with a certificate made in
//! the test: sessions are encrypted and verified, a cancel request travels encrypted too,
//! and each way of getting TLS wrong has its clear error.
#![cfg(feature = "tls")]

use std::sync::Arc;
use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

fn trusting(root: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
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
    let ssl: bool = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
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
    let ssl: bool = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
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

    // `prefer` (the default) falls back to plain TCP on such a server.
    let db = Db::builder(&pg.url()).tls(trusting(root)).build().unwrap();
    let ssl: bool = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl);
}

#[tokio::test]
async fn require_without_a_tls_config_is_a_config_error() {
    let err = Db::builder("postgres://u:secret@127.0.0.1:1/db?sslmode=require")
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("tls"));
    assert!(!err.to_string().contains("secret"));
}

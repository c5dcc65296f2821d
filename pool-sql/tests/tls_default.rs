//! TLS with no set-up (features `webpki-roots`, `native-roots`): `sslmode=require` and
//! `verify-full` in the connection string work without `DbBuilder::tls`, through a built-in
//! rustls config that verifies the server against the roots features' certificates. A
//! server whose certificate chains to none of them is a TLS error, a server without TLS is
//! never used in plain text, and `DbBuilder::tls` still overrides. With `native-roots`, a
//! CA given through `SSL_CERT_FILE` is trusted: checked in a child process of this test
//! binary, whose environment is its own.
#![cfg(any(feature = "webpki-roots", feature = "native-roots"))]

mod support;

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;
use support::{certificate_for, trusting};

/// A server with a self-signed certificate for 127.0.0.1 and localhost.
fn tls_server() -> (TestPg, String, rustls::pki_types::CertificateDer<'static>) {
    let (cert, key, der) = certificate_for(&["127.0.0.1", "localhost"]);
    let pg = TestPg::builder()
        .tls(cert.clone(), key)
        .start()
        .expect("test server with TLS");
    (pg, cert, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_with_no_config_verifies_the_server_and_never_falls_back_to_plain_text() {
    let (pg, _, root) = tls_server();
    // Without the features this is a config error at build; with them, a built-in config
    // that does not trust the test's self-signed certificate.
    for mode in ["require", "verify-full", "verify-ca"] {
        let db = Db::builder(&format!("{}?sslmode={mode}", pg.url()))
            .acquire_timeout(Duration::from_secs(10))
            .build()
            .expect("sslmode=require builds with no TLS config");
        let err = db.ping().await.unwrap_err();
        assert!(err.is_tls(), "sslmode={mode}: {err:?}");
        assert!(!format!("{err} {err:?}").contains(TestPg::PASSWORD));
    }

    // A server without TLS: an error, not a plain-text session.
    let plain = TestPg::start().expect("test server");
    let db = Db::builder(&format!("{}?sslmode=require", plain.url()))
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");

    // No sslmode, or prefer: the built-in config is not used (plain text, as before).
    for url in [plain.url(), format!("{}?sslmode=prefer", plain.url())] {
        let db = Db::builder(&url).build().unwrap();
        assert!(!support::encrypted(&db).await, "{url}");
    }

    // DbBuilder::tls still overrides the built-in config.
    let db = Db::builder(&format!("{}?sslmode=verify-full", pg.url()))
        .tls(trusting(root))
        .build()
        .unwrap();
    assert!(support::encrypted(&db).await);
}

/// The child's side (see the next test): trusts the CA only through `SSL_CERT_FILE`.
#[cfg(feature = "native-roots")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_trusts_ssl_cert_file() {
    let Some(url) = std::env::var_os("POOL_SQL_TLS_CHILD_URL") else {
        return;
    };
    let url = url.into_string().expect("a UTF-8 url");
    let db = Db::builder(&url)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .expect("build");
    assert!(support::encrypted(&db).await, "encrypted");
    let require = url.replace("verify-full", "require");
    let db = Db::builder(&require).build().expect("build");
    assert!(support::encrypted(&db).await, "encrypted");
    println!("tls child done");
}

#[cfg(feature = "native-roots")]
#[test]
fn with_native_roots_a_ca_in_ssl_cert_file_makes_verify_full_work_with_no_code() {
    let (pg, cert, _) = tls_server();
    let dir = std::env::temp_dir().join(format!("pool-sql-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let run = |ca_file: &std::path::Path| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_trusts_ssl_cert_file", "--nocapture"])
            .env("SSL_CERT_FILE", ca_file)
            .env_remove("SSL_CERT_DIR")
            .env(
                "POOL_SQL_TLS_CHILD_URL",
                format!("{}?sslmode=verify-full", pg.url()),
            )
            .output()
            .expect("run the child")
    };
    let out = run(&ca);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("tls child done"), "the child ran: {text}");

    // Another CA in SSL_CERT_FILE: the same child fails (its check can fail).
    let (stranger, _, _) = certificate_for(&["127.0.0.1"]);
    let other = dir.join("other.pem");
    std::fs::write(&other, stranger).unwrap();
    assert!(!run(&other).status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

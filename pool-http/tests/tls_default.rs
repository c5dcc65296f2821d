//! HTTPS as a new user gets it: with the default features, `Client::new()` has TLS (rustls,
//! `ring`, the roots of `webpki-roots`), so a server whose certificate comes from a CA made
//! here is refused for its issuer, not for a missing TLS setup; `ClientBuilder::tls` with
//! that CA trusted succeeds. With feature `native-roots`, the system's roots are read when
//! the client is built, which `SSL_CERT_FILE` points at: checked in a child process (this
//! very test binary), since the workspace forbids the `unsafe` that `set_var` needs.
#![cfg(any(feature = "webpki-roots", feature = "native-roots"))]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use pool_http::{Client, ConnectError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// A certificate authority made for one test.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Ca {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// A certificate for 127.0.0.1 signed by this CA, and its key.
    fn leaf(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        (cert.der().clone(), key)
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    #[cfg(feature = "native-roots")]
    fn pem(&self) -> String {
        self.issuer.pem()
    }
}

/// A TLS server on loopback presenting a certificate of `ca` (the leaf only, as servers
/// do); answers `hello` over HTTP/1.1. Counts handshakes that failed and that succeeded.
struct TlsServer {
    addr: SocketAddr,
    failed: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    async fn start(ca: &Ca) -> TlsServer {
        let (cert, key) = ca.leaf();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failed = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (f, s) = (failed.clone(), served.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, f, s) = (acceptor.clone(), f.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        f.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let service = hyper::service::service_fn(move |_req| {
                        s.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"hello",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsServer {
            addr,
            failed,
            served,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rustls error under a failed handshake, when that is what the error is.
fn rustls_error(err: &pool_http::Error) -> Option<&rustls::Error> {
    match err.connect_error()? {
        ConnectError::Tls { source, .. } => source.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// A client config that trusts `ca` alone.
fn trusting(ca: &Ca) -> rustls::ClientConfig {
    support::trusting(ca.der())
}

#[tokio::test]
async fn client_new_has_tls_and_refuses_an_unknown_issuer() {
    let ca = Ca::new("pool-http test CA");
    let server = TlsServer::start(&ca).await;
    let client = Client::new().unwrap();
    let err = client.get(&server.url()).await.unwrap_err();
    let report = support::chain(&err);
    assert!(err.is_tls(), "{report}");
    assert!(err.is_connect(), "{report}");
    assert!(!err.is_timeout(), "{report}");
    assert!(
        !matches!(err.connect_error(), Some(ConnectError::NoTls { .. })),
        "the default client has TLS: {report}"
    );
    assert!(!report.contains("needs TLS"), "{report}");
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "an untrusted issuer, not another failure: {report}"
    );
    assert!(report.contains("UnknownIssuer"), "{report}");
    // The handshake happened (the client dialled and spoke TLS) and nothing was served.
    assert_eq!(client.stats().pool.created, 0, "no connection was made");
    assert_eq!(server.served(), 0);
    // The server sees the client's alert, or the socket closing, just after.
    pool_core::testing::eventually("the server saw the failed handshake", || {
        server.failed() == 1
    })
    .await;
}

#[tokio::test]
async fn client_builder_build_has_tls_too() {
    let ca = Ca::new("pool-http test CA");
    let server = TlsServer::start(&ca).await;
    let client = Client::builder().build().unwrap();
    let err = client.get(&server.url()).await.unwrap_err();
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{}",
        support::chain(&err)
    );
}

#[tokio::test]
async fn a_tls_config_that_trusts_the_ca_is_served() {
    let ca = Ca::new("pool-http test CA");
    let server = TlsServer::start(&ca).await;
    let client = Client::builder().tls(trusting(&ca)).build().unwrap();
    for _ in 0..3 {
        let response = client.get(&server.url()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_11);
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    assert_eq!(server.served(), 3);
    assert_eq!(server.failed(), 0);
    assert_eq!(
        client.stats().pool.created,
        1,
        "one TLS connection served all"
    );
}

#[tokio::test]
async fn a_tls_config_that_trusts_another_ca_is_refused() {
    let ca = Ca::new("pool-http test CA");
    let other = Ca::new("another CA");
    let server = TlsServer::start(&ca).await;
    let client = Client::builder().tls(trusting(&other)).build().unwrap();
    let err = client.get(&server.url()).await.unwrap_err();
    assert!(err.is_tls(), "{}", support::chain(&err));
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{}",
        support::chain(&err)
    );
}

/// Set in the child process: what it should find at this URL (`trusted` or `untrusted`).
#[cfg(feature = "native-roots")]
const CHILD_EXPECT: &str = "POOL_HTTP_TEST_NATIVE_ROOTS_EXPECT";
#[cfg(feature = "native-roots")]
const CHILD_URL: &str = "POOL_HTTP_TEST_NATIVE_ROOTS_URL";
#[cfg(feature = "native-roots")]
const CHILD_MARK: &str = "native-roots child done:";

/// A file removed when dropped.
#[cfg(feature = "native-roots")]
struct TempFile(std::path::PathBuf);

#[cfg(feature = "native-roots")]
impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "pool-http-{}-{}-{name}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

#[cfg(feature = "native-roots")]
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs [`native_roots_child`] in a child process with `SSL_CERT_FILE=pem`; returns its
/// output once it passed.
#[cfg(feature = "native-roots")]
async fn run_child(pem: &TempFile, url: String, expect: &'static str) -> String {
    let exe = std::env::current_exe().unwrap();
    let path = pem.0.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args(["--exact", "native_roots_child", "--nocapture"])
            .env("SSL_CERT_FILE", path)
            .env_remove("SSL_CERT_DIR")
            .env(CHILD_URL, url)
            .env(CHILD_EXPECT, expect)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{out}");
    assert!(
        out.contains(&format!("{CHILD_MARK} {expect}")),
        "the child did not run its body:\n{out}"
    );
    out
}

#[cfg(feature = "native-roots")]
#[tokio::test]
async fn native_roots_come_from_ssl_cert_file_at_build() {
    let ca = Ca::new("pool-http test CA");
    let server = TlsServer::start(&ca).await;
    let trusted = TempFile::new("ca.pem", &ca.pem());
    run_child(&trusted, server.url(), "trusted").await;
    assert_eq!(server.served(), 1, "the child's request was served");
    // The control: the same child with another CA in the file is refused, so it was the
    // file that made the difference.
    let other = TempFile::new("other.pem", &Ca::new("another CA").pem());
    run_child(&other, server.url(), "untrusted").await;
    assert_eq!(server.served(), 1);
}

/// The child of [`native_roots_come_from_ssl_cert_file_at_build`]: does nothing unless run
/// by it (with the environment it sets).
#[cfg(feature = "native-roots")]
#[test]
fn native_roots_child() {
    let (Ok(url), Ok(expect)) = (std::env::var(CHILD_URL), std::env::var(CHILD_EXPECT)) else {
        return;
    };
    // Built outside any runtime: the roots are read here, from SSL_CERT_FILE.
    let client = Client::new().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let result = client.get(&url).await;
        match expect.as_str() {
            "trusted" => {
                let response = result.unwrap_or_else(|e| panic!("{}", support::chain(&e)));
                assert_eq!(response.text().await.unwrap(), "hello");
            }
            "untrusted" => {
                let err = result.unwrap_err();
                assert!(
                    matches!(
                        rustls_error(&err),
                        Some(rustls::Error::InvalidCertificate(
                            rustls::CertificateError::UnknownIssuer
                        ))
                    ),
                    "{}",
                    support::chain(&err)
                );
            }
            other => panic!("unknown expectation {other}"),
        }
    });
    println!("{CHILD_MARK} {expect}");
}

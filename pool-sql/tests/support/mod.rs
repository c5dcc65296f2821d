//! Helpers the pool-sql integration tests share: an admin connection to the test server,
//! server-side session counts, polling with a deadline, and a rig with a fault-injecting
//! proxy between the pool and the server.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use pool_core::testing::load::Tally;
use pool_core::testing::proxy::FaultProxy;
use pool_sql::testing::TestPg;
use pool_sql::{Db, DbBuilder};

/// The cap of the pools under chaos and soak.
pub const CAP: usize = 8;

/// A separate small pool for looking at (and killing) the sessions under test.
pub fn admin(pg: &TestPg) -> Db {
    Db::builder(&pg.url())
        .application_name("pool-sql-admin")
        .max_open(2)
        .build()
        .expect("admin pool")
}

/// A pool under test whose sessions the admin can count by `app`.
pub fn db(pg: &TestPg, app: &str) -> pool_sql::DbBuilder {
    Db::builder(&pg.url()).application_name(app)
}

/// Sessions the server has for `app` right now.
pub async fn sessions(admin: &Db, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("count sessions")
        .get(0)
}

/// Polls `check` until it returns true, failing the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server has exactly `n` sessions for `app`.
pub async fn wait_sessions(admin: &Db, app: &str, n: i64) {
    eventually(
        Duration::from_secs(10),
        &format!("{app} has {n} sessions"),
        || async { sessions(admin, app).await == n },
    )
    .await;
}

/// Whether the session a call of `db` gets is encrypted (`pg_stat_ssl`).
pub async fn encrypted(db: &Db) -> bool {
    db.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .await
    .expect("ask pg_stat_ssl")
    .get(0)
}

/// Sessions of `app` the server shows inside a transaction with nothing running.
pub async fn idle_in_transaction(admin: &Db, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state LIKE 'idle in transaction%'",
            &[&app],
        )
        .await
        .expect("count sessions in a transaction")
        .get(0)
}

/// Terminates every session of `app` and waits until they are gone.
pub async fn kill_sessions(admin: &Db, app: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminate");
    wait_sessions(admin, app, 0).await;
}

/// The first column of every row of `sql`, as `i32`.
pub async fn ints(db: &Db, sql: &str) -> Vec<i32> {
    db.query(sql, &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A server, a proxy in front of it, and a pool (named `app` on the server) through the proxy.
pub struct Rig {
    pub pg: TestPg,
    pub admin: Db,
    pub proxy: FaultProxy,
    pub app: &'static str,
}

impl Rig {
    pub async fn start(app: &'static str) -> Rig {
        let pg = TestPg::start().expect("postgres");
        let admin = admin(&pg);
        let port = pg.port().expect("a local server");
        let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())
            .await
            .unwrap();
        Rig {
            pg,
            admin,
            proxy,
            app,
        }
    }

    /// A pool through the proxy, capped at [`CAP`].
    pub fn db(&self) -> DbBuilder {
        let port = self.pg.port().expect("a local server");
        let url = self.pg.url().replace(
            &format!(":{port}/"),
            &format!(":{}/", self.proxy.addr().port()),
        );
        Db::builder(&url)
            .application_name(self.app)
            .max_open(CAP)
            .max_idle(CAP)
    }

    /// Serves again after the fault, within 10 s; returns how long it took.
    pub async fn recovery(db: &Db) -> Duration {
        let started = tokio::time::Instant::now();
        while db.execute("SELECT 1", &[]).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no recovery within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// The laws at the end: the cap held, everything back in the pool (sessions of cancelled
    /// calls come back once their cancel is answered), and after close no session on the
    /// server and no connection through the proxy.
    pub async fn settle(&self, db: Db, tally: &Tally, bound: Duration) {
        let s = db.stats();
        assert!(s.peak_open <= CAP, "open reached {} > {CAP}", s.peak_open);
        eventually(Duration::from_secs(10), "all sessions back", || async {
            let s = db.stats();
            s.in_use == 0 && s.open == s.idle
        })
        .await;
        // Every session the pool holds idle is idle on the server too: none was handed back
        // (or is kept) inside a transaction.
        assert_eq!(
            idle_in_transaction(&self.admin, self.app).await,
            0,
            "a session the pool holds idle is in a transaction on the server"
        );
        assert!(
            tally.slowest_failure < bound,
            "a call took {:?} to fail, past its bound {bound:?}",
            tally.slowest_failure
        );
        db.close_and_wait(Duration::from_secs(10)).await.unwrap();
        wait_sessions(&self.admin, self.app, 0).await;
        eventually(
            Duration::from_secs(10),
            "proxy connections closed",
            || async { self.proxy.live() == 0 },
        )
        .await;
    }
}

/// A self-signed certificate for `names`: (certificate PEM, key PEM, DER).
pub fn certificate_for(
    names: &[&str],
) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let params = rcgen::CertificateParams::new(names).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem(), cert.der().clone())
}

/// A rustls client config that trusts only `root`.
pub fn trusting(root: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// Sessions of `app` running a statement whose text holds `like`.
pub async fn active(admin: &pool_sql::Db, app: &str, like: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND query LIKE '%' || $2 || '%'",
            &[&app, &like],
        )
        .await
        .unwrap()
        .get(0)
}

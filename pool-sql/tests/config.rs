//! `DbBuilder`'s defaults and checks: `max_open` 10 unless set, `go_mode` as database/sql,
//! libpq's `sslmode` values, and text in the connection string that is not an option.

mod support;

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;
use support::eventually;

/// Nothing listens there; nothing connects before the first call anyway.
const NOWHERE: &str = "postgres://app:pw@127.0.0.1:1/app";

#[tokio::test]
async fn max_open_defaults_to_10_and_go_mode_to_unlimited_without_grace_or_jitter() {
    let db = Db::builder(NOWHERE).build().unwrap();
    assert_eq!(db.stats().max_open, 10);
    assert_eq!(Db::builder(NOWHERE).pool_config().max_open, 10);
    let db = Db::builder(NOWHERE).max_open(0).build().unwrap();
    assert_eq!(db.stats().max_open, 0, "0 still means unlimited");

    let go = Db::builder(NOWHERE)
        .max_open(7)
        .idle_grace(Duration::from_secs(9));
    let go = go.go_mode();
    let config = go.pool_config();
    assert_eq!(config.max_open, 0);
    assert_eq!(config.max_idle, 2);
    assert_eq!(config.idle_grace, Duration::ZERO);
    assert_eq!(config.lifetime_jitter, Some(Duration::ZERO));
    assert_eq!(
        config.binding,
        pool_core::Binding::Caller,
        "database/sql's binding"
    );
    assert_eq!(config.breaker_threshold, 0, "database/sql has no breaker");
    let db = go.build().unwrap();
    assert_eq!(db.stats().max_open, 0);
    let db = Db::builder(NOWHERE).go_mode().max_open(5).build().unwrap();
    assert_eq!(db.stats().max_open, 5, "knobs set after go_mode apply");
    // A lifetime without jitter is accepted in Go mode.
    Db::builder(NOWHERE)
        .go_mode()
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mode_closes_sessions_above_max_idle_at_once_and_the_default_keeps_them() {
    let pg = TestPg::start().expect("test server");
    for go in [true, false] {
        let mut builder = Db::builder(&pg.url());
        if go {
            builder = builder.go_mode();
        }
        let db = builder.build().unwrap();
        let mut pinned = Vec::new();
        for _ in 0..4 {
            pinned.push(db.conn().await.unwrap());
        }
        drop(pinned);
        let (open, idle) = if go { (2, 2) } else { (4, 4) };
        eventually(
            Duration::from_secs(10),
            &format!("go mode {go}: {open} open, {idle} idle"),
            || async { (db.stats().open, db.stats().idle) == (open, idle) },
        )
        .await;
        let s = db.stats();
        if go {
            assert_eq!(s.max_idle_closed, 2, "{s:?}");
        } else {
            assert_eq!(s.surplus_idle, 2, "{s:?}");
        }
        db.close_and_wait(Duration::from_secs(10)).await.unwrap();
    }
}

/// With a roots feature (`webpki-roots`, `native-roots`) the built-in TLS config serves
/// the modes that require TLS (seen in `Debug`: `tls: Rustls`); without one, they are a
/// config error naming `tls`.
const BUILT_IN_TLS: bool = cfg!(any(feature = "webpki-roots", feature = "native-roots"));

/// Builds `url`, which requires TLS: the built-in config with a roots feature, else the
/// config error naming `tls` and the mode.
fn requires_tls(url: &str, mode: &str) {
    match (BUILT_IN_TLS, Db::builder(url).build()) {
        (true, Ok(db)) => {
            assert!(format!("{db:?}").contains("tls: Rustls"), "{url}: {db:?}");
        }
        (false, Err(err)) => {
            assert!(err.is_config(), "{url}: {err:?}");
            assert_eq!(err.knob(), Some("tls"), "{url}: {err}");
            assert!(err.to_string().contains(mode), "{err}");
        }
        (true, Err(err)) => panic!("{url}: the built-in TLS config should serve: {err:?}"),
        (false, Ok(db)) => panic!("{url} built without a TLS config: {db:?}"),
    }
}

#[tokio::test]
async fn libpq_sslmodes_are_understood_and_tls_ones_need_a_tls_config() {
    for mode in ["verify-full", "verify-ca", "require"] {
        for url in [
            format!("{NOWHERE}?sslmode={mode}"),
            format!("host=127.0.0.1 port=1 sslmode='{mode}'"),
        ] {
            requires_tls(&url, mode);
        }
    }
    // Percent-encoded in a URL, quoted in `key=value`, and the last one wins.
    for url in [
        format!("{NOWHERE}?ssl%6dode=verify%2Dfull"),
        "host=127.0.0.1 sslmode=disable sslmode = 'verify-full'".to_owned(),
    ] {
        requires_tls(&url, "verify-full");
    }
    // The modes that allow plain text never get the built-in config.
    for mode in ["disable", "allow", "prefer"] {
        let db = Db::builder(&format!("{NOWHERE}?sslmode={mode}"))
            .build()
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert!(format!("{db:?}").contains("tls: Off"), "{mode}: {db:?}");
    }
    let db = Db::builder(NOWHERE).build().unwrap();
    assert!(format!("{db:?}").contains("tls: Off"), "{db:?}");
    let err = Db::builder(&format!("{NOWHERE}?sslmode=verify"))
        .build()
        .unwrap_err();
    assert_eq!(err.knob(), Some("url"), "{err}");
    assert!(err.to_string().contains("sslmode"), "{err}");
}

#[tokio::test]
async fn text_that_is_not_an_option_is_a_config_error_not_ignored() {
    // tokio-postgres stops reading at an `=` where an option name should be, silently.
    let err = Db::builder("host=127.0.0.1 port=1 = sslmode=require")
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("url"), "{err}");
    assert!(err.to_string().contains("byte 22"), "{err}");
}

/// libpq's certificate options name files; here the CA and the client certificate go in
/// the rustls config given to `DbBuilder::tls`, and the error says so instead of only
/// "unknown option", in one sentence (its literal once lost two line continuations and
/// showed runs of 18 spaces).
#[tokio::test]
async fn sslrootcert_is_refused_with_a_pointer_to_the_tls_config() {
    for option in [
        "sslrootcert=/etc/ca.pem",
        "sslcert=/c.pem",
        "sslkey=/k.pem",
        "sslcrl=/crl.pem",
        "sslcrldir=/crl",
    ] {
        for url in [
            format!("postgres://u:pw@h/db?sslmode=verify-full&{option}"),
            format!("host=h user=u password=pw sslmode=verify-full {option}"),
        ] {
            let err = Db::builder(&url).build().unwrap_err();
            assert!(err.is_config(), "{url}: {err:?}");
            assert_eq!(err.knob(), Some("url"), "{url}: {err}");
            let shown = err.to_string();
            assert!(
                shown.contains("DbBuilder::tls"),
                "the error points to DbBuilder::tls: {shown}"
            );
            let name = option.split('=').next().unwrap();
            assert!(shown.contains(name), "it names the option: {shown}");
            assert!(!shown.contains(".pem"), "no value is repeated: {shown}");
            assert!(!shown.contains("  "), "no run of spaces: {shown:?}");
        }
    }
}

/// Forms libpq and tokio-postgres read alike, each accepted: IPv6 hosts, several hosts,
/// Unix sockets (percent-encoded in the host or in `?host=`), percent-encoded passwords,
/// raw `@` in an option's value after the user info, and quoting and escapes in `key=value`.
#[tokio::test]
async fn valid_forms_are_accepted() {
    for url in [
        "postgres://app:pw@[::1]:5432/app",
        "postgresql://[::1]/app",
        "postgres://app:pw@[::1]:5432,[::2]:5433/app",
        "host=/var/run/postgresql user=app dbname=app",
        "postgres://%2Fvar%2Frun%2Fpostgresql/app",
        "postgres://app@%2Fvar%2Frun%2Fpostgresql/app",
        "postgres:///app?host=/var/run/postgresql",
        "postgres://app@/app?host=%2Ftmp&password=p%40ss",
        "postgres://app:p%40ss@h1:5432,h2:5433/app?target_session_attrs=read-write",
        "host=h1,h2 port=5432,5433 user=app password=p@ss dbname=app",
        "postgres://app:p%40ss%2Fw%3Frd@db/app",
        "postgres://app@db/app?options=-c%20search_path%3Da%26b",
        "postgres://app@db/app?options=-c search_path=a",
        "postgres://app@db/app?application_name=me@home",
        "postgres://first.last-x:pw@db-1.example.com/app",
        "postgresql://app@db/app",
        "host='db' user='app' password='p@ss /w?rd=&x' dbname='my db'",
        "host=db user=app password=p\\ ss dbname=app",
        "user=team/app host=db",
    ] {
        let r = Db::builder(url).build();
        assert!(r.is_ok(), "{url}: {}", r.unwrap_err());
    }
}

/// A role name with `/` or `?` (legal: `CREATE ROLE "team/app"`), written percent-encoded
/// as the refusal of a raw one asks: libpq and tokio-postgres both read the user
/// `team/app`. It was refused, because the check looked at the decoded name; the raw text
/// is what tells a name from a misread string.
#[tokio::test]
async fn a_percent_encoded_slash_in_the_user_name_is_accepted() {
    for (url, user) in [
        ("postgres://team%2Fapp:pw@127.0.0.1:5432/app", "team/app"),
        ("postgres://team%3Fapp@127.0.0.1/app", "team?app"),
    ] {
        let db = Db::builder(url)
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let shown = format!("{db:?}");
        assert!(shown.contains(&format!("user: Some({user:?})")), "{shown}");
    }
    // Raw, a `/` or `?` in a user name is still refused: it is where a misread starts.
    for url in [
        "postgres://team/app:pw@127.0.0.1/app",
        "postgres://team?app:pw@127.0.0.1/app",
    ] {
        let err = Db::builder(url).build().unwrap_err();
        assert_eq!(err.knob(), Some("url"), "{url}: {err}");
    }
}

/// A `?` in the password of the user info: libpq's look-ahead for the user info stops at
/// `@` or `/`, not `?`, and tokio-postgres reads the user info up to the first `@`, so both
/// dial 127.0.0.1 with the password `pa?ss`. It was refused as if the `?` began a query.
#[tokio::test]
async fn a_question_mark_in_a_password_in_the_user_info_is_accepted() {
    for url in [
        "postgres://app:pa?ss@127.0.0.1:5432/app",
        "postgres://app:?@127.0.0.1/app?sslmode=disable",
    ] {
        let db = Db::builder(url)
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let shown = format!("{db:?}");
        assert!(shown.contains("host: [Tcp(\"127.0.0.1\")]"), "{shown}");
        assert!(!shown.contains("pa?ss"), "{shown}");
    }
}

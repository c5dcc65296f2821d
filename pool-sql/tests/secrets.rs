//! What pool-sql prints: never a password, in any form of connection string, and never an
//! unbounded amount of the server's text.
//!
//! The forms: a URL with the password in its user info, a URL with `?password=`, and
//! `key=value` with `password=` (plain, quoted, percent-encoded names). The outputs: `Debug`
//! of the builder and of the `Db`, and `Display` and `Debug` of every config error.

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;

const SECRET: &str = "s3cr3t-pw";

/// One connection string of each form, each with [`SECRET`] as its password.
fn every_form() -> Vec<String> {
    vec![
        format!("postgres://app:{SECRET}@127.0.0.1:1/app"),
        // A `?` in the user info is the password's, as libpq and tokio-postgres read it.
        format!("postgres://app:?{SECRET}@127.0.0.1:1/app"),
        format!("postgresql://app@127.0.0.1:1/app?password={SECRET}&connect_timeout=5"),
        format!("postgres://app@127.0.0.1:1/app?pass%77ord={SECRET}"),
        format!("host=127.0.0.1 port=1 user=app password={SECRET} dbname=app"),
        format!("host=127.0.0.1 port=1 user=app password = '{SECRET}' dbname=app"),
    ]
}

/// The last characters of `s`, for a failure message.
fn tail(s: &str) -> String {
    let mut last: Vec<char> = s.chars().rev().take(60).collect();
    last.reverse();
    last.into_iter().collect()
}

#[test]
fn debug_of_a_builder_shows_no_password_in_any_form() {
    for url in every_form() {
        let builder = Db::builder(&url);
        let shown = format!("{builder:?} {builder:#?} {}", builder.redacted_url());
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("***"),
            "the string is shown, redacted: {shown}"
        );
        assert!(shown.contains("127.0.0.1"), "the rest is kept: {shown}");
    }
}

#[test]
fn redaction_masks_each_password_and_keeps_the_rest() {
    for (url, shown) in [
        (
            "postgres://app:s3cret@db:5432/app?sslmode=require",
            "postgres://app:***@db:5432/app?sslmode=require",
        ),
        (
            "postgresql://app@db/app?password=s3cret&sslmode=require",
            "postgresql://app@db/app?password=***&sslmode=require",
        ),
        // An unencoded `@` in the password: both readings are masked.
        ("postgres://app:p@ss@db/app", "postgres://app:***@db/app"),
        // ... and with a `/` after it: the host and database name before the last `@`.
        (
            "postgres://app:s3cr@t/Part2@db/app?sslmode=require",
            "postgres://app:***@db/app?sslmode=require",
        ),
        // A `?` in the password: the query starts after the user info.
        (
            "postgres://app:pa?ss@db/app?application_name=me@home",
            "postgres://app:***@db/app?application_name=me@home",
        ),
        (
            "postgres://db/app?password=a@b",
            "postgres://db/app?password=***",
        ),
        (
            "postgres://db/app?pass%77ord=s3cret",
            "postgres://db/app?pass%77ord=***",
        ),
        (
            "host=db password=s3cret user=app",
            "host=db password=*** user=app",
        ),
        (
            "host=db password = 'se cr\\'et' user=app",
            "host=db password = *** user=app",
        ),
        // Text tokio-postgres would ignore is masked too.
        ("host=db password=s3cret =tail", "host=db password=*** ***"),
    ] {
        assert_eq!(Db::builder(url).redacted_url(), shown, "{url}");
    }
    let hidden = Db::builder("host=db password='s3cret").redacted_url();
    assert!(!hidden.contains("s3cret"), "{hidden}");
}

#[tokio::test]
async fn debug_of_a_db_shows_no_password_in_any_form() {
    for url in every_form() {
        let db = Db::builder(&url).build().unwrap();
        let shown = format!("{db:?} {db:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("password: Some(_)"), "{shown}");
        db.close();
    }
}

#[tokio::test]
async fn config_errors_show_no_password() {
    let mut cases = vec![
        // An unquoted password with a space: its second half reads as an unknown option.
        (
            "url",
            "host=h user=app password=first s3cr3t-pw=x".to_owned(),
        ),
        // The same in a URL, with an unencoded `&`.
        (
            "url",
            "postgres://app@h/app?password=first&s3cr3t-pw=x".to_owned(),
        ),
        ("url", format!("host=h password='{SECRET}")),
        ("url", format!("host=h password={SECRET} sslmode=bogus")),
        ("url", format!("postgres://app:{SECRET}@h:notaport/app")),
        (
            "url",
            format!("postgres://app@h/app?password={SECRET}&bogus"),
        ),
        (
            "url",
            format!("postgres://app@h/app?password={SECRET}&sslmode=bogus"),
        ),
        // An unencoded `@` in the password: the rest of it would be read as the host.
        ("url", format!("postgres://app:pw@{SECRET}@h/app")),
        ("url", format!("host=h password={SECRET} =trailing")),
    ];
    // With a roots feature (the default), the built-in TLS config serves these.
    if cfg!(not(any(feature = "webpki-roots", feature = "native-roots"))) {
        cases.push((
            "tls",
            format!("postgres://app:{SECRET}@h/app?sslmode=require"),
        ));
        cases.push((
            "tls",
            format!("host=h password={SECRET} sslmode=verify-full"),
        ));
    }
    for (knob, url) in cases {
        let err = Db::builder(&url).build().unwrap_err();
        assert!(err.is_config(), "{url}: {err:?}");
        assert_eq!(err.knob(), Some(knob), "{url}: {err}");
        let shown = format!("{err} {err:?} {err:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("url") || shown.contains("tls"), "{shown}");
    }
}

/// The server's text is the source (the `DbError`, whole), never this error's `Display`,
/// and `Debug` prints at most 4 KiB of each part, cut on a character boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_of_a_huge_server_error_is_bounded_and_db_error_keeps_it_whole() {
    let pg = TestPg::start().expect("test server");
    let db = Db::builder(&pg.url()).max_open(1).build().unwrap();
    let err = db
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION '%', repeat('x', 1000000); END $$")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "postgres statement failed (SQLSTATE P0001)"
    );
    let debug = format!("{err:?}");
    assert!(debug.len() < 4 * 4096, "Debug is {} bytes", debug.len());
    assert!(debug.contains("more bytes)"), "{}", tail(&debug));
    let whole = err.as_db_error().expect("the server's error");
    assert_eq!(whole.message().len(), 1_000_000);
    let source = std::error::Error::source(&err).expect("the server's error is the source");
    assert_eq!(source.to_string().len(), "ERROR: ".len() + 1_000_000);

    // Two bytes, then three-byte characters: the 4 KiB cut of `Debug` falls inside one.
    for alternate in [false, true] {
        let err = db
            .batch_execute("DO $$ BEGIN RAISE EXCEPTION '%', 'xx' || repeat('€', 400000); END $$")
            .await
            .unwrap_err();
        let debug = if alternate {
            format!("{err:#?}")
        } else {
            format!("{err:?}")
        };
        assert!(debug.len() < 4 * 4096, "Debug is {} bytes", debug.len());
        assert!(debug.contains("€… ("), "{}", tail(&debug));
    }
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

/// An `@` after the host (in a query option or the database name) and no user info:
/// tokio-postgres reads the user info up to the first `@` anywhere, so the user name it
/// parses is `db.invalid/app?password=p` and the host the rest of the password. Such a
/// string is refused at build, with the fix (%40) and no part of it; and the `Db`'s target
/// (in `Debug`, errors and spans) could not show it anyway.
#[tokio::test]
async fn a_password_with_an_at_sign_in_the_query_never_shows_in_debug_or_errors() {
    const TAIL: &str = "ss-w0rd-s3cr3t";
    for url in [
        format!("postgres://db.invalid/app?password=p@{TAIL}&connect_timeout=2"),
        format!("postgres://db.invalid:5432/app?password=p@{TAIL}"),
        format!("postgresql://db.invalid?password=p@{TAIL}"),
        format!("postgres://db.invalid/a@b?password={TAIL}"),
        // No path: a `?` and an `=` before the `@` are a query's, not a password's.
        format!("postgres://db.invalid:5432?password=p@{TAIL}"),
    ] {
        let builder = Db::builder(&url);
        assert!(!builder.redacted_url().contains(TAIL), "{url}");
        let err = builder.build().unwrap_err();
        assert!(err.is_config(), "{url}: {err:?}");
        assert_eq!(err.knob(), Some("url"), "{url}: {err}");
        let shown = format!("{err} | {err:?} | {err:#?}");
        assert!(
            !shown.contains(TAIL) && !shown.contains("password=p"),
            "{shown}"
        );
        assert!(
            shown.contains("%40"),
            "the error says how to fix it: {shown}"
        );
    }
    // Whatever the form, a host that holds what a host never holds is refused: here the
    // password, after an `&` where a URL's query would start.
    let err = Db::builder(&format!("host=db.invalid&password={TAIL}"))
        .build()
        .unwrap_err();
    assert_eq!(err.knob(), Some("url"), "{err}");
    assert!(!format!("{err} {err:?}").contains(TAIL), "{err:?}");
    // An `@` in the user info stays fine, encoded or not in the password (the last `@`
    // before the host is the one a reader expects; tokio-postgres takes the first, and the
    // host check refuses what it would misread).
    Db::builder("postgres://app:p%40ss@127.0.0.1:1/app?password=x%40y")
        .build()
        .unwrap();
}

/// An unencoded `@` in the user info's password, with a `/` after it
/// (`app:s3cr@t/Part2@db/app`): tokio-postgres and libpq both end the user info at the first
/// `@`, so they read the host `t` and the database `Part2@db/app`, and the target in `Debug`,
/// errors and spans showed the rest of the password. Such a string is refused at build,
/// saying to write `%40`; `redacted_url` masks up to the last `@` before the query, so it
/// shows no piece of the password either.
#[tokio::test]
async fn a_password_misread_into_the_host_and_database_name_is_refused_and_never_shown() {
    const TAIL: &str = "Part2-s3cr3t";
    for url in [
        format!("postgres://app:s3cr@t/{TAIL}@127.0.0.1:5432/app"),
        format!("postgres://app:s3cr@t/{TAIL}@127.0.0.1/app?sslmode=disable"),
        format!("postgres://app:pa?ss@t/{TAIL}@127.0.0.1/app"),
        format!("postgres://app:s3cr@t:5432/{TAIL}@db/app"),
    ] {
        let builder = Db::builder(&url);
        let redacted = builder.redacted_url();
        assert!(!redacted.contains(TAIL), "{url}: {redacted}");
        assert!(!format!("{builder:?}").contains(TAIL), "{builder:?}");
        let err = builder.build().unwrap_err();
        assert_eq!(err.knob(), Some("url"), "{url}: {err}");
        let shown = format!("{err} | {err:?} | {err:#?}");
        assert!(!shown.contains(TAIL), "{shown}");
        assert!(
            shown.contains("%40"),
            "the error says how to fix it: {shown}"
        );
    }
    // Encoded, the same password is fine, and so is an `@` in the database name.
    for url in [
        "postgres://app:s3cr%40t%2FPart2@127.0.0.1:5432/app",
        "postgres://app:pw@127.0.0.1:5432/my%40db",
    ] {
        Db::builder(url)
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

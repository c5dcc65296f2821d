//! The framing's unit tests: every way of cutting the bytes, COPY's answers, bounds.

use super::*;
use crate::wire::{PARAMETER_KEPT_LIMIT, PARAMETER_MESSAGE_LIMIT, PARAMETER_NAMES_LIMIT, TxStatus};

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup() -> Vec<u8> {
    let body = b"\0\x03\0\0user\0me\0\0";
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

/// Feeds `data` one split at a time: every way of cutting it in two, and byte by byte.
fn splits(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all: Vec<Vec<&[u8]>> = (0..=data.len())
        .map(|i| vec![&data[..i], &data[i..]])
        .collect();
    all.push(data.chunks(1).collect());
    all
}

#[test]
fn the_status_follows_ready_for_query_however_the_bytes_are_cut() {
    let mut server = Vec::new();
    server.extend(msg(b'R', &[0, 0, 0, 0]));
    server.extend(msg(b'S', b"a\0b\0"));
    server.extend(msg(b'K', &[0, 1, 0xE2, 0x40, 9, 9, 9, 9]));
    server.extend(msg(b'Z', b"I"));
    server.extend(msg(b'C', b"BEGIN\0"));
    server.extend(msg(b'Z', b"T"));
    let mut client = startup();
    client.extend(msg(b'Q', b"BEGIN\0"));
    for cut in splits(&server) {
        let wire = Wire::default();
        let mut f = Frames::plain();
        f.on_write(&client, &wire);
        assert_eq!(wire.tx_status(), TxStatus::Unsettled);
        assert_eq!(client_sees(&mut f, &wire, &cut), server);
        assert_eq!(wire.tx_status(), TxStatus::InTransaction);
        assert_eq!(wire.pid(), Some(123_456), "the BackendKeyData's process id");
    }
    for cut in splits(&client) {
        let wire = Wire::default();
        let mut f = Frames::plain();
        for part in cut {
            f.on_write(part, &wire);
        }
        assert_eq!(
            wire.syncs.load(Ordering::Relaxed),
            2,
            "startup and one query"
        );
    }
}

/// What reaches the client of `parts` read one after another, as `Observed` passes it.
fn client_sees(f: &mut Frames, wire: &Wire, parts: &[&[u8]]) -> Vec<u8> {
    let mut seen = Vec::new();
    for part in parts {
        let mut buf = part.to_vec();
        let mut at = 0;
        while let Read::Elide { from, to } = f.on_read(&buf[at..], wire).unwrap() {
            buf.drain(at + from..at + to);
            at += from;
        }
        seen.extend(buf);
    }
    seen
}

/// The client's side of a COPY FROM STDIN through the extended protocol: Bind, Execute,
/// Sync; one row (CopyData), `end` (CopyDone or CopyFail), Sync.
fn copy_in(wire: &Wire, f: &mut Frames, end: u8) {
    f.on_write(&startup(), wire);
    f.on_read(&msg(b'Z', b"I"), wire).unwrap();
    let mut ext = msg(b'B', b"\0s0\0\0\0\0\0\0\0");
    ext.extend(msg(b'E', b"\0\0\0\0\0"));
    ext.extend(msg(b'S', b""));
    f.on_write(&ext, wire);
    let mut copy = msg(b'd', b"9\n");
    copy.extend(msg(end, if end == b'f' { b"\0" } else { b"" }));
    copy.extend(msg(b'S', b""));
    f.on_write(&copy, wire);
}

/// A COPY FROM STDIN ended by `end`, then an empty query: the server answers `server`,
/// cut every way; the client must see `seen`, and every request is answered.
fn copy_answered(end: u8, server: &[u8], seen: &[u8]) {
    for cut in splits(server) {
        let (wire, mut f) = (Wire::default(), Frames::plain());
        copy_in(&wire, &mut f, end);
        f.on_write(&msg(b'Q', b"\0"), &wire);
        assert_eq!(client_sees(&mut f, &wire, &cut), seen, "{cut:?}");
        assert_eq!(wire.tx_status(), TxStatus::Idle, "{cut:?}");
    }
}

#[test]
fn the_second_answer_of_a_copy_ins_request_never_reaches_the_client() {
    let empty_query = [msg(b'I', b""), msg(b'Z', b"I")].concat();
    let copy_failed = [
        msg(b'2', b""),
        msg(b'G', b"\0\0\x01\0\0"),
        msg(b'E', b"SERROR\0C57014\0\0"),
        msg(b'Z', b"I"),
    ]
    .concat();
    // The usual case: the Sync after the Execute was ignored in copy mode, one answer.
    let once = [&copy_failed[..], &empty_query].concat();
    copy_answered(b'f', &once, &once);
    // The COPY failed before the server read that Sync: both Syncs answered (a notice
    // between them), the second answer dropped.
    let notice = msg(b'N', b"notice\0");
    let twice = [&copy_failed[..], &notice, &msg(b'Z', b"I"), &empty_query].concat();
    copy_answered(
        b'f',
        &twice,
        &[&copy_failed[..], &notice, &empty_query].concat(),
    );
    // The Execute failed (no such table): both Syncs answered; the second answer counts
    // for the second Sync (no CopyInResponse discounted the first).
    let start_failed = [
        msg(b'2', b""),
        msg(b'E', b"SERROR\0C42P01\0\0"),
        msg(b'Z', b"I"),
    ]
    .concat();
    let twice = [&start_failed[..], &msg(b'Z', b"I"), &empty_query].concat();
    copy_answered(b'f', &twice, &[&start_failed[..], &empty_query].concat());
    // A COPY that ends well: one answer, and the next request's pass whole.
    let done = [
        msg(b'2', b""),
        msg(b'G', b"\0\0\x01\0\0"),
        msg(b'C', b"COPY 1\0"),
        msg(b'Z', b"I"),
        empty_query.clone(),
    ]
    .concat();
    copy_answered(b'c', &done, &done);
}

#[test]
fn a_bare_sync_gets_its_ready_for_query_and_an_undecidable_one_closes_the_session() {
    let (wire, mut f) = (Wire::default(), Frames::plain());
    f.on_write(&startup(), &wire);
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    // tokio-postgres's `check_connection`: a Sync alone, after a query and after a COPY.
    let answered = [msg(b'Z', b"I"), msg(b'Z', b"I")].concat();
    f.on_write(&[msg(b'S', b""), msg(b'S', b"")].concat(), &wire);
    assert_eq!(client_sees(&mut f, &wire, &[&answered]), answered);
    assert_eq!(wire.tx_status(), TxStatus::Idle);
    let (wire, mut f) = (Wire::default(), Frames::plain());
    copy_in(&wire, &mut f, b'c');
    f.on_write(&msg(b'S', b""), &wire);
    let done = [
        msg(b'2', b""),
        msg(b'G', b"\0\0\x01\0\0"),
        msg(b'C', b"COPY 1\0"),
        msg(b'Z', b"I"),
        msg(b'Z', b"I"),
    ]
    .concat();
    assert_eq!(client_sees(&mut f, &wire, &[&done]), done);
    assert_eq!(wire.tx_status(), TxStatus::Idle);
    // A COPY canceled in copy mode, then a Sync alone: two ReadyForQuery may answer S1
    // and S2, or S2 and the Sync; the session ends rather than guess.
    let (wire, mut f) = (Wire::default(), Frames::plain());
    copy_in(&wire, &mut f, b'f');
    f.on_write(&msg(b'S', b""), &wire);
    let canceled = [
        msg(b'2', b""),
        msg(b'G', b"\0\0\x01\0\0"),
        msg(b'E', b"SERROR\0VERROR\0C57014\0Mcanceled\0\0"),
        msg(b'Z', b"I"),
    ]
    .concat();
    f.on_read(&canceled, &wire).unwrap();
    let err = f.on_read(&msg(b'Z', b"I"), &wire).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn a_request_not_yet_answered_leaves_the_status_unsettled() {
    let wire = Wire::default();
    let mut f = Frames::plain();
    f.on_write(&startup(), &wire);
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    assert_eq!(wire.tx_status(), TxStatus::Idle);
    let mut ext = msg(b'P', b"\0SELECT 1\0\0\0");
    ext.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
    ext.extend(msg(b'E', b"\0\0\0\0\0"));
    ext.extend(msg(b'S', b""));
    f.on_write(&ext, &wire);
    assert_eq!(wire.tx_status(), TxStatus::Unsettled);
    let mark = wire.mark();
    f.on_read(&msg(b'1', b""), &wire).unwrap();
    assert!(!wire.at_most_an_error_since(mark));
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    assert_eq!(wire.tx_status(), TxStatus::Idle);
}

#[test]
fn an_error_as_the_first_reply_is_told_apart_from_one_after_rows() {
    let wire = Wire::default();
    let mut f = Frames::plain();
    f.on_write(&startup(), &wire);
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    let mark = wire.mark();
    assert!(wire.at_most_an_error_since(mark), "nothing came");
    f.on_read(&msg(b'N', b"notice\0"), &wire).unwrap();
    f.on_read(&msg(b'E', b"SFATAL\0C57P01\0\0"), &wire).unwrap();
    assert!(wire.at_most_an_error_since(mark), "a notice does not count");
    let mark = wire.mark();
    f.on_read(&msg(b'D', b"\0\0"), &wire).unwrap();
    f.on_read(&msg(b'E', b"SFATAL\0C57P01\0\0"), &wire).unwrap();
    assert!(!wire.at_most_an_error_since(mark));
}

#[test]
fn a_huge_message_before_the_session_is_ready_is_refused() {
    let wire = Wire::default();
    let mut f = Frames::plain();
    f.on_write(&startup(), &wire);
    let mut huge = vec![b'E'];
    huge.extend_from_slice(&(1u32 << 30).to_be_bytes());
    let err = f.on_read(&huge, &wire).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // Once ready, large messages (rows) are the client's business.
    let mut f = Frames::plain();
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    f.on_read(&huge, &wire).unwrap();
}

#[test]
fn after_an_ssl_request_a_yes_hands_over_and_a_no_reads_plain_text() {
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    let wire = Wire::default();
    let mut f = Frames::before_ssl();
    f.on_write(&ssl, &wire);
    f.on_read(b"S", &wire).unwrap();
    f.on_read(&[0x16, 3, 3, 0xff, 0xff, 0xff], &wire).unwrap();
    assert_eq!(
        wire.syncs.load(Ordering::Relaxed),
        0,
        "ciphertext is not framed"
    );

    let wire = Wire::default();
    let mut f = Frames::before_ssl();
    f.on_write(&ssl, &wire);
    let mut answer = b"N".to_vec();
    answer.extend(msg(b'R', &[0, 0, 0, 0]));
    f.on_write(&startup(), &wire);
    f.on_read(&answer, &wire).unwrap();
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    assert_eq!(wire.tx_status(), TxStatus::Idle);
}

#[test]
fn small_messages_before_the_session_is_ready_are_bounded_in_all() {
    let wire = Wire::default();
    let mut f = Frames::plain();
    f.on_write(&startup(), &wire);
    let notice = msg(b'N', &[b'x'; 1000]);
    let mut read = 0;
    let err = loop {
        match f.on_read(&notice, &wire) {
            Ok(_) => read += notice.len() as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains("before the session was ready"),
        "{err}"
    );
    assert!(read <= STARTUP_LIMIT && read + 2 * notice.len() as u64 > STARTUP_LIMIT);
}

/// A ready session, as the framing sees it: the startup written, one ReadyForQuery read.
fn ready() -> (Wire, Frames) {
    let (wire, mut f) = (Wire::default(), Frames::plain());
    f.on_write(&startup(), &wire);
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    (wire, f)
}

/// A ParameterStatus for `name` with a value of `len` bytes.
fn report(name: &str, len: usize) -> Vec<u8> {
    msg(
        b'S',
        &[name.as_bytes(), b"\0", &vec![b'v'; len], b"\0"].concat(),
    )
}

/// A PostgreSQL 13 reports a function's `SET TimeZone` clause and its undoing at each call:
/// 10,000 rows send 20,000 messages (about 600 KB) before one ReadyForQuery. The names are
/// known ones, each message replaces the last value: nothing grows, the session goes on.
#[test]
fn the_same_parameters_reported_again_and_again_are_not_a_flood() {
    let (wire, mut f) = ready();
    f.on_write(
        &msg(b'Q', b"SELECT f(i) FROM generate_series(1, 10000) i\0"),
        &wire,
    );
    let call = [
        msg(b'S', b"TimeZone\0UTC\0"),
        msg(b'S', b"TimeZone\0Europe/Berlin\0"),
        msg(b'D', &[0, 1, 0, 0, 0, 0]),
    ]
    .concat();
    for _ in 0..10_000 {
        f.on_read(&call, &wire).unwrap();
    }
    f.on_read(
        &[msg(b'C', b"SELECT 10000\0"), msg(b'Z', b"I")].concat(),
        &wire,
    )
    .unwrap();
    assert_eq!(wire.tx_status(), TxStatus::Idle);
    // Large values too, far past the bound on the latest values together, one name at a time.
    let big = report("application_name", 60 * 1024);
    for _ in 0..(2 * PARAMETER_KEPT_LIMIT / big.len() as u64) {
        f.on_read(&big, &wire).unwrap();
    }
}

/// Reports that would grow what tokio-postgres keeps end the session, saying which bound:
/// one message too large (at its header), a new name past the count of names, new names
/// whose latest values together pass the bound on bytes kept.
#[test]
fn parameter_reports_are_bounded_by_message_names_and_bytes_kept() {
    let too_large = report("p", usize::try_from(PARAMETER_MESSAGE_LIMIT).unwrap());
    let (wire, mut f) = ready();
    let err = f.on_read(&too_large[..5], &wire).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("-byte parameter change"), "{err}");

    // The startup's reports count too; an idle session gets the rest, unasked.
    let (wire, mut f) = (Wire::default(), Frames::plain());
    f.on_write(&startup(), &wire);
    f.on_read(&[report("a", 1), msg(b'Z', b"I")].concat(), &wire)
        .unwrap();
    for i in 1..PARAMETER_NAMES_LIMIT {
        f.on_read(&report(&format!("p{i}"), 10), &wire).unwrap();
    }
    f.on_read(&report("a", 10), &wire).unwrap();
    let next = report("one_more", 10);
    let err = f.on_read(&next, &wire).unwrap_err();
    assert!(err.to_string().contains("different parameters"), "{err}");

    let (wire, mut f) = ready();
    let big = report("p", 32 * 1024);
    let fit = PARAMETER_KEPT_LIMIT / big.len() as u64;
    for i in 0..fit {
        f.on_read(&report(&format!("p{i}"), 32 * 1024), &wire)
            .unwrap();
    }
    // Cut in the name: it counts once whole.
    let last = report("last", 32 * 1024);
    f.on_read(&last[..7], &wire).unwrap();
    let err = f.on_read(&last[7..], &wire).unwrap_err();
    assert!(err.to_string().contains("ParameterStatus"), "{err}");
    assert!(err.to_string().contains("latest value"), "{err}");
}

#[test]
fn the_servers_report_of_client_encoding_is_kept_however_the_bytes_are_cut() {
    let latin1 = msg(b'S', b"client_encoding\0LATIN1\0");
    let utf8 = msg(b'S', b"client_encoding\0UTF8\0");
    let other = msg(b'S', b"DateStyle\0German\0");
    for (server, foreign) in [
        ([&latin1[..], &other].concat(), true),
        ([&latin1[..], &utf8, &other].concat(), false),
        ([&utf8[..], &latin1].concat(), true),
    ] {
        let server = [&server[..], &msg(b'Z', b"I")].concat();
        for cut in splits(&server) {
            let wire = Wire::default();
            let mut f = Frames::plain();
            f.on_write(&startup(), &wire);
            f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
            f.on_write(&msg(b'Q', b"SET client_encoding ...\0"), &wire);
            assert_eq!(client_sees(&mut f, &wire, &cut), server);
            assert_eq!(wire.foreign_encoding(), foreign, "{cut:?}");
        }
    }
}

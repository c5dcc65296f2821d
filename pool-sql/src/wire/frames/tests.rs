//! The framing's unit tests: every way of cutting the bytes, COPY's answers, bounds.

use super::*;
use crate::wire::TxStatus;

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

#[test]
fn parameter_changes_between_two_ready_for_query_are_bounded() {
    let wire = Wire::default();
    let mut f = Frames::plain();
    f.on_write(&startup(), &wire);
    f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
    let change = msg(
        b'S',
        &[&b"application_name\0"[..], &[b'a'; 1000], b"\0"].concat(),
    );
    let fit = PARAMETER_LIMIT / change.len() as u64;
    // Within the bound, in each stretch between two ReadyForQuery: fine.
    for _ in 0..3 {
        f.on_write(&msg(b'Q', b"SET application_name = 'a...'\0"), &wire);
        for _ in 0..fit {
            f.on_read(&change, &wire).unwrap();
        }
        f.on_read(&[msg(b'C', b"SET\0"), msg(b'Z', b"I")].concat(), &wire)
            .unwrap();
    }
    // Unasked, to an idle session: past the bound, the session ends, at the header of the
    // message that crosses it.
    for _ in 0..fit {
        f.on_read(&change, &wire).unwrap();
    }
    let err = f.on_read(&change[..5], &wire).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("ParameterStatus"), "{err}");
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

//! The protocol's message framing, followed in both directions: [`Frames`].

use std::io;
use std::sync::atomic::Ordering;

use super::answers::{Answers, Ready};
use super::{STARTUP_MESSAGE_LIMIT, Wire};

/// What a [`Frames`] looks at in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing: TLS runs above this layer, which sees only ciphertext.
    Off,
    /// Reading: the one-byte answer to an SSLRequest.
    SslAnswer,
    /// Writing: an untyped message (SSLRequest or startup) comes next.
    Untyped,
    /// Typed messages: a type byte, a 4-byte length (itself included), the body.
    Messages,
}

/// Where one direction is within the current message.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    phase: Phase,
    head: [u8; 8],
    have: usize,
    /// Body bytes of the current message still to come.
    left: u64,
    /// The next body byte is a ReadyForQuery's status.
    status_next: bool,
    /// Bytes of a BackendKeyData's process id still to come, and those seen so far.
    pid_left: u8,
    pid: u32,
    /// The current message is dropped from the stream (see [`Answers`]).
    eliding: bool,
    /// Requests the ReadyForQuery being read ends, counted at its status byte.
    ends: u64,
}

impl Cursor {
    /// Passes over what `data` holds of the current message's body; returns the rest.
    fn skip_body<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(data.len());
        self.left -= n as u64;
        &data[n..]
    }

    fn new(phase: Phase) -> Self {
        Cursor {
            phase,
            head: [0; 8],
            have: 0,
            left: 0,
            status_next: false,
            pid_left: 0,
            pid: 0,
            eliding: false,
            ends: 0,
        }
    }
}

/// What [`Frames::on_read`] found in the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// Everything is the client's.
    All,
    /// `data[from..to]` must not reach the client (see [`Answers`]); the bytes after `to`
    /// have not been looked at: pass them again.
    Elide { from: usize, to: usize },
}

/// The SSLRequest code (its untyped message is 8 bytes: length, then this).
const SSL_REQUEST: u32 = 80_877_103;

/// Follows the message framing of one session in both directions (see the
/// [module docs](super)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frames {
    read: Cursor,
    write: Cursor,
    /// The first ReadyForQuery came: startup is over.
    ready: bool,
    answers: Answers,
}

impl Frames {
    /// A session without TLS: the startup message, then typed messages.
    pub fn plain() -> Self {
        Frames {
            read: Cursor::new(Phase::Messages),
            write: Cursor::new(Phase::Untyped),
            ready: false,
            answers: Answers::default(),
        }
    }

    /// The socket under a session that asks for TLS first: the SSLRequest and its answer;
    /// then nothing if the server said yes (the TLS layer's [`Observed`](super::Observed)
    /// takes over), or the plain session if it said no.
    #[cfg_attr(not(any(feature = "tls", test)), allow(dead_code))]
    pub fn before_ssl() -> Self {
        Frames {
            read: Cursor::new(Phase::SslAnswer),
            write: Cursor::new(Phase::Untyped),
            ready: false,
            answers: Answers::default(),
        }
    }

    /// Sees nothing (a socket under direct TLS, a cancel request).
    pub fn off() -> Self {
        Frames {
            read: Cursor::new(Phase::Off),
            write: Cursor::new(Phase::Off),
            ready: false,
            answers: Answers::default(),
        }
    }

    /// Bytes the server sent, up to the end of a message the client must not see.
    pub(super) fn on_read(&mut self, mut data: &[u8], wire: &Wire) -> io::Result<Read> {
        let len = data.len();
        if self.read.phase == Phase::SslAnswer {
            let Some((&answer, rest)) = data.split_first() else {
                return Ok(Read::All);
            };
            data = rest;
            if answer == b'S' {
                self.read.phase = Phase::Off;
                self.write.phase = Phase::Off;
                return Ok(Read::All);
            }
            self.read.phase = Phase::Messages;
        }
        if self.read.phase != Phase::Messages {
            return Ok(Read::All);
        }
        // Where the message being dropped starts in `data` (0: in an earlier read).
        let mut elide_from = 0;
        let c = &mut self.read;
        while !data.is_empty() {
            if c.eliding && c.left == 0 && c.have == 0 {
                c.eliding = false;
                return Ok(Read::Elide {
                    from: elide_from,
                    to: len - data.len(),
                });
            }
            if c.left > 0 {
                if c.status_next {
                    c.status_next = false;
                    wire.set_status(data[0]);
                    wire.readies
                        .fetch_add(std::mem::take(&mut c.ends), Ordering::AcqRel);
                    self.ready = true;
                }
                if c.pid_left > 0 {
                    let n = usize::from(c.pid_left).min(data.len());
                    for &b in &data[..n] {
                        c.pid = c.pid << 8 | u32::from(b);
                    }
                    c.pid_left -= n as u8;
                    c.left -= n as u64;
                    data = &data[n..];
                    if c.pid_left == 0 {
                        wire.pid.store(c.pid, Ordering::Release);
                    }
                    continue;
                }
                let rest = c.skip_body(data);
                data = rest;
                continue;
            }
            if c.have == 0 {
                let kind = data[0];
                if !matches!(kind, b'N' | b'A' | b'S') {
                    let ended = self.answers.on_reply(kind);
                    wire.readies.fetch_add(ended, Ordering::AcqRel);
                    let ready = if kind == b'Z' {
                        self.answers.on_ready()
                    } else {
                        Ready::Pass(0)
                    };
                    match ready {
                        Ready::Ambiguous => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the answers of an aborted COPY FROM STDIN and of a bare Sync \
                                 after it cannot be told apart: the session is closed",
                            ));
                        }
                        Ready::Drop => {
                            c.eliding = true;
                            elide_from = len - data.len();
                            wire.readies.fetch_add(1, Ordering::AcqRel);
                        }
                        Ready::Pass(ends) => {
                            c.ends = ends;
                            wire.last_reply.store(kind, Ordering::Release);
                            wire.replies.fetch_add(1, Ordering::AcqRel);
                            if matches!(kind, b'G' | b'H') {
                                wire.copies.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                    }
                }
            }
            let n = (5 - c.have).min(data.len());
            c.head[c.have..c.have + n].copy_from_slice(&data[..n]);
            c.have += n;
            data = &data[n..];
            if c.have < 5 {
                continue;
            }
            c.have = 0;
            let kind = c.head[0];
            let size = be32(&c.head[1..5]);
            if size < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server sent a message with an invalid length",
                ));
            }
            if !self.ready && size > STARTUP_MESSAGE_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server announced a {size}-byte message before the session was \
                         ready; at most {STARTUP_MESSAGE_LIMIT} bytes are accepted then"
                    ),
                ));
            }
            c.left = size - 4;
            c.status_next = kind == b'Z' && c.left > 0 && !c.eliding;
            if kind == b'K' && c.left >= 4 {
                (c.pid_left, c.pid) = (4, 0);
            }
        }
        if c.eliding && elide_from < len {
            if c.left == 0 && c.have == 0 {
                c.eliding = false;
            }
            return Ok(Read::Elide {
                from: elide_from,
                to: len,
            });
        }
        Ok(Read::All)
    }

    /// Bytes that reached the server.
    pub(super) fn on_write(&mut self, mut data: &[u8], wire: &Wire) {
        let c = &mut self.write;
        while !data.is_empty() && c.phase != Phase::Off {
            if c.left > 0 {
                data = c.skip_body(data);
                continue;
            }
            let typed = c.phase == Phase::Messages;
            if typed && c.have == 0 {
                // A simple query, a Sync or a function call: answered by one ReadyForQuery.
                let request = matches!(data[0], b'Q' | b'S' | b'F');
                self.answers.on_write(data[0], request);
                if request {
                    wire.syncs.fetch_add(1, Ordering::AcqRel);
                }
            }
            // A typed header is the type and the length; an untyped one (SSLRequest,
            // startup) the length and a code.
            let size = if typed { 5 } else { 8 };
            let n = (size - c.have).min(data.len());
            c.head[c.have..c.have + n].copy_from_slice(&data[..n]);
            c.have += n;
            data = &data[n..];
            if c.have < size {
                continue;
            }
            c.have = 0;
            if typed {
                c.left = be32(&c.head[1..5]).saturating_sub(4);
            } else {
                c.left = be32(&c.head[0..4]).saturating_sub(8);
                if be32(&c.head[4..8]) != u64::from(SSL_REQUEST) {
                    // The startup message: the session's first ReadyForQuery answers it.
                    self.answers.on_write(0, true);
                    wire.syncs.fetch_add(1, Ordering::AcqRel);
                    c.phase = Phase::Messages;
                }
            }
        }
    }
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
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
}

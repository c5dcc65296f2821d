//! The protocol's message framing, followed in both directions: [`Frames`].

use std::io;
use std::sync::atomic::Ordering;

use super::answers::{Answers, Ready};
use super::params::{Parameter, Reported};
use super::{STARTUP_LIMIT, STARTUP_MESSAGE_LIMIT, Wire, invalid};

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
    /// In a ParameterStatus: where its body is, for `client_encoding`.
    param: Option<Parameter>,
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
            param: None,
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
#[derive(Debug, Clone)]
pub(crate) struct Frames {
    read: Cursor,
    write: Cursor,
    /// The first ReadyForQuery came: startup is over.
    ready: bool,
    /// Bytes read before `ready` (bounded by [`STARTUP_LIMIT`]).
    early: u64,
    /// The parameters the server reported (ParameterStatus), bounded as tokio-postgres
    /// keeps them.
    reported: Reported,
    answers: Answers,
}

impl Frames {
    /// A session without TLS: the startup message, then typed messages.
    pub fn plain() -> Self {
        Frames {
            read: Cursor::new(Phase::Messages),
            write: Cursor::new(Phase::Untyped),
            ready: false,
            early: 0,
            reported: Reported::default(),
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
            early: 0,
            reported: Reported::default(),
            answers: Answers::default(),
        }
    }

    /// Sees nothing (a socket under direct TLS, a cancel request).
    pub fn off() -> Self {
        Frames {
            read: Cursor::new(Phase::Off),
            write: Cursor::new(Phase::Off),
            ready: false,
            early: 0,
            reported: Reported::default(),
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
        if !self.ready {
            self.early += data.len() as u64;
            if self.early > STARTUP_LIMIT {
                return Err(invalid(format!(
                    "the server sent more than {STARTUP_LIMIT} bytes before the session was \
                     ready; the session is closed"
                )));
            }
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
                if let Some(param) = &mut c.param {
                    let n = usize::try_from(c.left)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    if let Some(utf8) = param.feed(&data[..n]) {
                        wire.foreign_encoding.store(!utf8, Ordering::Release);
                    }
                    self.reported.feed(&data[..n])?;
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
            c.param = (kind == b'S').then(Parameter::new);
            if kind == b'S' {
                self.reported.start(size)?;
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
mod tests;

//! Which request each ReadyForQuery answers, around a `COPY ... FROM STDIN`: [`Answers`].
//!
//! tokio-postgres's `copy_in` writes Bind, Execute and a Sync (S1), then the data, then
//! CopyDone or CopyFail and a second Sync (S2), and takes the first ReadyForQuery after its
//! Execute as the end of the request. The server ignores a Sync in copy mode, so S1
//! normally gets no ReadyForQuery and the one that comes answers S2. But when the server is
//! not in copy mode as it reads S1, it answers it, and S2 too:
//! - the Execute failed (no such table, no permission, a cancel during its lock wait): no
//!   CopyInResponse came;
//! - the COPY failed before the server read S1 (a cancel request or `statement_timeout`
//!   landing while it sets the COPY up): a CopyInResponse, then an error.
//!
//! The second ReadyForQuery would go to the session's next request, and every answer after
//! it to the request after its own, so it is dropped from the stream before tokio-postgres
//! reads it. Which case it is shows in the answers, with one exception: a COPY that failed
//! with `query_canceled` after its CopyInResponse (the CopyFail's own error has that code
//! too) may or may not have had S1 answered. The reply after its ReadyForQuery tells: a
//! second ReadyForQuery right away is S2's (no request of tokio-postgres is answered by a
//! ReadyForQuery alone but a bare Sync, its `check_connection`); anything else is the next
//! request's. The same holds after S1's answer: behind a pooler (PgBouncer in transaction
//! mode lets the server go at that answer) S2 may get no answer at all, and the next
//! request's reply says so. If the next request is that bare Sync, nothing can tell, and
//! the session is given up.

/// A `COPY ... FROM STDIN` whose answers are not all in.
#[derive(Debug, Clone, Copy)]
struct Copy {
    /// The index of S1 among the requests written; S2 is the next.
    s1: u64,
    s1_answered: S1,
    /// Whether the request after S2 is a bare Sync, once it is written.
    bare_sync_after: Option<bool>,
}

/// What the answers tell of S1 so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S1 {
    /// Nothing yet.
    Unknown,
    /// S1 was answered: the ReadyForQuery for S2 is dropped.
    Yes,
    /// The first ReadyForQuery came after the COPY failed with `query_canceled`: S1 was
    /// answered if another follows at once.
    Maybe,
}

/// How the request being answered ended, as far as a COPY's S1 goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum End {
    #[default]
    Open,
    /// CommandComplete: the COPY ran in copy mode to its end.
    Complete,
    /// An error; `query_canceled`: its SQLSTATE is 57014 (or could not be read).
    Error { canceled: bool },
}

/// What to do with a ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ready {
    /// Pass it to the client: it ends that many requests.
    Pass(u64),
    /// Drop it from the stream: it answers a COPY's S2, whose request tokio-postgres ended
    /// already.
    Drop,
    /// The answers can no longer be told apart (see the module docs).
    Ambiguous,
}

/// Follows which request each ReadyForQuery answers (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Answers {
    /// Requests written that the server answers with a ReadyForQuery (startup, a simple
    /// query, a Sync, a function call), S1 included.
    written: u64,
    /// Requests answered.
    answered: u64,
    /// The types of the last two messages written.
    last: [u8; 2],
    /// Since the last ReadyForQuery: a CopyInResponse came, and how the request ended.
    copy_started: bool,
    end: End,
    copy: Option<Copy>,
    /// A second COPY started before the first was told apart: given up.
    lost: bool,
}

impl Answers {
    /// A message of type `kind` is being written; `request`: the server answers it with a
    /// ReadyForQuery (the startup message, a simple query, a Sync, a function call).
    pub fn on_write(&mut self, kind: u8, request: bool) {
        if matches!(kind, b'd' | b'c' | b'f') && self.last == [b'E', b'S'] {
            // Copy data right after an Execute's Sync: that Sync is a COPY's S1.
            let s1 = self.written - 1;
            let s1_answered = if self.answered > s1 {
                S1::Yes
            } else {
                S1::Unknown
            };
            self.lost |= self.copy.is_some();
            self.copy = Some(Copy {
                s1,
                s1_answered,
                bare_sync_after: None,
            });
        }
        if request {
            if let Some(c) = &mut self.copy
                && self.written == c.s1 + 2
            {
                c.bare_sync_after = Some(kind == b'S' && self.last[1] == b'S');
            }
            self.written += 1;
        }
        self.last = [self.last[1], kind];
    }

    /// A reply of type `kind` (not a notice, notification or parameter status) starts;
    /// returns the requests it shows ended before it (a COPY's S2 answered by the last
    /// ReadyForQuery).
    pub fn on_reply(&mut self, kind: u8) -> u64 {
        let mut ended = 0;
        if kind != b'Z'
            && let Some(c) = self.copy
            && c.s1_answered != S1::Unknown
            && self.answered == c.s1 + 1
        {
            // The next request's reply, not a ReadyForQuery for S2: S1 was ignored and the
            // last one answered S2 (`Maybe`), or nothing answers S2 (`Yes`: a pooler
            // between, having let the server go at S1's answer, drops what follows).
            self.answered += 1;
            self.copy = None;
            ended = 1;
        }
        match kind {
            b'G' => self.copy_started = true,
            b'C' => self.end = End::Complete,
            _ => {}
        }
        ended
    }

    /// The error that just came has SQLSTATE `code`, if it could be read.
    pub fn on_error(&mut self, code: Option<[u8; 5]>) {
        let canceled = code.is_none_or(|c| &c == b"57014");
        self.end = End::Error { canceled };
    }

    /// A ReadyForQuery starts (after [`on_reply`](Self::on_reply)).
    pub fn on_ready(&mut self) -> Ready {
        let (started, end) = (self.copy_started, self.end);
        (self.copy_started, self.end) = (false, End::Open);
        if self.lost {
            return Ready::Ambiguous;
        }
        let at = self.answered;
        let Some(c) = &mut self.copy else {
            self.answered += 1;
            return Ready::Pass(1);
        };
        if c.s1 == at && c.s1_answered == S1::Unknown {
            // The first ReadyForQuery since the COPY's Execute.
            match (started, end) {
                // In copy mode to its end, or failed on its data: S1 came in copy mode.
                (true, End::Complete | End::Error { canceled: false }) => {
                    self.answered += 2;
                    self.copy = None;
                    Ready::Pass(2)
                }
                // Never in copy mode: S1 answered.
                (false, _) => {
                    c.s1_answered = S1::Yes;
                    self.answered += 1;
                    Ready::Pass(1)
                }
                _ => {
                    c.s1_answered = S1::Maybe;
                    self.answered += 1;
                    Ready::Pass(1)
                }
            }
        } else if c.s1 + 1 == at && c.s1_answered != S1::Unknown {
            // Right after the ReadyForQuery of S1: S2's.
            if c.s1_answered == S1::Maybe && c.bare_sync_after == Some(true) {
                self.lost = true;
                return Ready::Ambiguous;
            }
            self.answered += 1;
            self.copy = None;
            Ready::Drop
        } else {
            self.answered += 1;
            Ready::Pass(1)
        }
    }
}

/// The SQLSTATE of an ErrorResponse whose body starts with `body` (the fields: a type byte
/// and a string each, `C` the code).
pub(super) fn sqlstate(body: &[u8]) -> Option<[u8; 5]> {
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = after.iter().position(|&b| b == 0)?;
        if field == b'C' {
            return after[..end].try_into().ok();
        }
        rest = &after[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `messages` (types), then reads `replies` (types; `E5` an error with 57014,
    /// `Ex` another error): what each ReadyForQuery became, and the requests ended early.
    fn run(a: &mut Answers, messages: &str, replies: &str) -> Vec<Ready> {
        for k in messages.bytes() {
            a.on_write(k, matches!(k, b'Q' | b'S' | b'F' | b'0'));
        }
        let mut out = Vec::new();
        let mut replies = replies.bytes().peekable();
        while let Some(k) = replies.next() {
            if a.on_reply(k) > 0 {
                out.push(Ready::Pass(0)); // S2 ended by the earlier answer.
            }
            match k {
                b'Z' => out.push(a.on_ready()),
                b'E' => {
                    let canceled = replies.next() == Some(b'5');
                    a.on_error(Some(if canceled { *b"57014" } else { *b"23505" }));
                }
                _ => {}
            }
        }
        out
    }

    fn started() -> Answers {
        let mut a = Answers::default();
        run(&mut a, "0", "Z");
        a
    }

    use Ready::{Ambiguous, Drop, Pass};

    #[test]
    fn a_copy_in_copy_mode_is_answered_once() {
        let mut a = started();
        // Done: one answer ends S1 and S2.
        assert_eq!(run(&mut a, "BESdcS", "2GCZ"), [Pass(2)]);
        // Failed on its data, then the next query.
        assert_eq!(run(&mut a, "BESdfSQ", "2GExZIZ"), [Pass(2), Pass(1)]);
        assert_eq!((a.written, a.answered), (6, 6));
    }

    #[test]
    fn a_copy_whose_execute_failed_has_its_second_answer_dropped() {
        let mut a = started();
        // The error and S1's answer may come before the CopyFail is written.
        assert_eq!(run(&mut a, "BES", "2E5Z"), [Pass(1)]);
        assert_eq!(run(&mut a, "fSQ", "ZIZ"), [Drop, Pass(1)]);
        assert_eq!(run(&mut a, "BESfSS", "2ExZZZ"), [Pass(1), Drop, Pass(1)]);
        // Behind a pooler, S2 may go unanswered: the next request's reply says so.
        assert_eq!(run(&mut a, "BESfSQ", "2ExZIZ"), [Pass(1), Pass(0), Pass(1)]);
        let (w, n) = (a.written, a.answered);
        assert_eq!((w - 3, n - 3), (7, 7));
    }

    #[test]
    fn a_copy_canceled_in_copy_mode_is_told_apart_by_the_next_reply() {
        let mut a = started();
        // S1 answered: a second ReadyForQuery at once.
        assert_eq!(run(&mut a, "BESdfSQ", "2GE5ZZIZ"), [Pass(1), Drop, Pass(1)]);
        // S1 ignored: the next query's answer follows.
        assert_eq!(
            run(&mut a, "BESdfSQ", "2GE5ZIZ"),
            [Pass(1), Pass(0), Pass(1)]
        );
        assert_eq!((a.written, a.answered), (7, 7));
        // A bare Sync after it: nothing tells.
        assert_eq!(run(&mut a, "BESdfSS", "2GE5ZZ"), [Pass(1), Ambiguous]);
    }

    #[test]
    fn bare_syncs_and_other_requests_pass() {
        let mut a = started();
        assert_eq!(run(&mut a, "SSCSPDS", "ZZ3Z1tnZ"), [Pass(1); 4]);
        assert_eq!(run(&mut a, "BESdcSS", "2GCZZ"), [Pass(2), Pass(1)]);
    }

    #[test]
    fn the_sqlstate_is_read_from_the_error_fields() {
        assert_eq!(sqlstate(b"SERROR\0VERROR\0C57014\0Mx\0\0"), Some(*b"57014"));
        assert_eq!(sqlstate(b"SERROR\0Mx\0\0"), None);
        assert_eq!(sqlstate(b"SERROR\0C570"), None, "cut short");
    }
}

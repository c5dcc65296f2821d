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
//! after its CopyInResponse may or may not have had S1 answered (an error on its data comes
//! after the server read S1 in copy mode; a cancel, a view or a statement trigger failing as
//! the COPY starts, before). The reply after its ReadyForQuery tells: a second
//! ReadyForQuery right away is S2's (no request of tokio-postgres is answered by a
//! ReadyForQuery alone but a bare Sync, its `check_connection`); anything else is the next
//! request's. The same holds after S1's answer: behind a pooler (PgBouncer in transaction
//! mode lets the server go at that answer) S2 may get no answer at all, and the next
//! request's reply says so. Until that reply the session reads as not settled (the pool's
//! reset sends an empty query, which settles it). If the request after S2 is a bare Sync,
//! nothing can tell, and the session is given up.

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
    /// The first ReadyForQuery came after the COPY failed in copy mode: S1 was answered if
    /// another follows at once.
    Maybe,
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
    /// Since the last ReadyForQuery: a CopyInResponse came, and then a CommandComplete
    /// (the COPY ran in copy mode to its end).
    copy_started: bool,
    copy_done: bool,
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
        if !self.lost
            && kind != b'Z'
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
            b'C' => self.copy_done = self.copy_started,
            _ => {}
        }
        ended
    }

    /// A ReadyForQuery starts (after [`on_reply`](Self::on_reply)).
    pub fn on_ready(&mut self) -> Ready {
        let (started, done) = (self.copy_started, self.copy_done);
        (self.copy_started, self.copy_done) = (false, false);
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
            match (started, done) {
                // In copy mode to its end: S1 came in copy mode.
                (true, true) => {
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
            if c.bare_sync_after == Some(true) {
                // S2's, or (S1 ignored, or S2 left unanswered by a pooler) the bare Sync's.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `messages` (types; `0` the startup), then reads `replies` (types): what each
    /// ReadyForQuery became, `Pass(0)` where a reply showed that S2 had ended.
    fn run(a: &mut Answers, messages: &str, replies: &str) -> Vec<Ready> {
        for k in messages.bytes() {
            a.on_write(k, matches!(k, b'Q' | b'S' | b'F' | b'0'));
        }
        let mut out = Vec::new();
        for k in replies.bytes() {
            if a.on_reply(k) > 0 {
                out.push(Ready::Pass(0));
            }
            if k == b'Z' {
                out.push(a.on_ready());
            }
        }
        out
    }

    fn started() -> Answers {
        let mut a = Answers::default();
        run(&mut a, "0", "Z");
        a
    }

    fn settled(a: &Answers) -> bool {
        a.written == a.answered
    }

    use Ready::{Ambiguous, Drop, Pass};

    #[test]
    fn a_copy_run_in_copy_mode_to_its_end_is_answered_once() {
        let mut a = started();
        assert_eq!(run(&mut a, "BESdcS", "2GCZ"), [Pass(2)]);
        assert!(settled(&a));
        assert_eq!(run(&mut a, "BESdcSS", "2GCZZ"), [Pass(2), Pass(1)]);
        assert!(settled(&a));
    }

    #[test]
    fn a_copy_whose_execute_failed_has_its_second_answer_dropped() {
        let mut a = started();
        // The error and S1's answer come before the CopyFail is written.
        assert_eq!(run(&mut a, "BES", "2EZ"), [Pass(1)]);
        assert_eq!(run(&mut a, "fSQ", "ZIZ"), [Drop, Pass(1)]);
        assert!(settled(&a));
        // Behind a pooler S2 may go unanswered: the next request's reply says so.
        assert_eq!(run(&mut a, "BESfSQ", "2EZIZ"), [Pass(1), Pass(0), Pass(1)]);
        assert!(settled(&a));
        // A bare Sync next: its answer and S2's cannot be told apart.
        assert_eq!(run(&mut a, "BESfSS", "2EZZ"), [Pass(1), Ambiguous]);
        assert_eq!(run(&mut a, "Q", "IZ"), [Ambiguous], "given up for good");
    }

    #[test]
    fn a_copy_failed_in_copy_mode_is_told_apart_by_the_next_reply() {
        let mut a = started();
        // Failed before the server read S1 (a cancel, a statement trigger): S2's answer
        // follows at once.
        assert_eq!(run(&mut a, "BESdfSQ", "2GEZZIZ"), [Pass(1), Drop, Pass(1)]);
        assert!(settled(&a));
        // Failed on its data, after S1: the next query's reply follows.
        assert_eq!(
            run(&mut a, "BESdfSQ", "2GEZIZ"),
            [Pass(1), Pass(0), Pass(1)]
        );
        assert!(settled(&a));
        // Nothing after it yet: not settled until a reply tells.
        assert_eq!(run(&mut a, "BESdfS", "2GEZ"), [Pass(1)]);
        assert!(!settled(&a));
        assert_eq!(run(&mut a, "Q", "IZ"), [Pass(0), Pass(1)]);
        assert!(settled(&a));
        // The error can come after the first data is written.
        assert_eq!(run(&mut a, "BES", "2G"), []);
        assert_eq!(run(&mut a, "d", "EZ"), [Pass(1)]);
        assert_eq!(run(&mut a, "cS", "Z"), [Drop]);
        assert!(settled(&a));
        // A bare Sync after it: nothing tells.
        assert_eq!(run(&mut a, "BESdfSS", "2GEZZ"), [Pass(1), Ambiguous]);
    }

    #[test]
    fn bare_syncs_and_other_requests_pass() {
        let mut a = started();
        assert_eq!(run(&mut a, "SSCSPDS", "ZZ3Z1tnZ"), [Pass(1); 4]);
        // copy_out, and a COPY TO STDOUT through copy_in (no CopyInResponse: S1 answered).
        assert_eq!(run(&mut a, "BESQ", "2HdcCZIZ"), [Pass(1), Pass(1)]);
        assert_eq!(run(&mut a, "BESfSQ", "2HdcCZZIZ"), [Pass(1), Drop, Pass(1)]);
        assert!(settled(&a));
    }
}

//! Printing an [`Error`] for logs: [`Report`] (the whole source chain, for this crate's own
//! log lines) and `Debug` (each part capped).

use std::error::Error as StdError;
use std::fmt;

use super::{Error, walk};

/// An error with its whole source chain, joined with `": "`, for this crate's own log lines
/// (where a `Display` of one level would lose the cause).
pub(crate) struct Report<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        for cause in walk(self.0.source()) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// Most bytes `Debug` prints of each part (the kind with its causes, the connection's exit
/// error).
const DEBUG_PART: usize = 4096;

impl fmt::Debug for Error {
    /// The kind with its causes and the connection's exit error, each cut after 4 KiB: the
    /// server's text in them can be megabytes long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &CappedDebug(&self.inner.kind));
        if let Some(exit) = &self.inner.exit {
            d.field("connection_exit", &CappedDebug(exit));
        }
        d.finish()
    }
}

/// The largest character boundary of `text` at or below `at`.
fn char_floor(text: &str, at: usize) -> usize {
    let mut cut = at.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// A value's `Debug`, cut after [`DEBUG_PART`] bytes; the rest is counted, not kept.
struct CappedDebug<'a, T: ?Sized>(&'a T);

impl<T: fmt::Debug + ?Sized> fmt::Debug for CappedDebug<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alternate = f.alternate();
        let mut out = Capped {
            f,
            left: DEBUG_PART,
            dropped: 0,
        };
        if alternate {
            fmt::write(&mut out, format_args!("{:#?}", self.0))?;
        } else {
            fmt::write(&mut out, format_args!("{:?}", self.0))?;
        }
        let dropped = out.dropped;
        if dropped > 0 {
            write!(f, "… ({dropped} more bytes)")?;
        }
        Ok(())
    }
}

/// Passes text on to a formatter until `left` bytes are used up, then only counts it.
struct Capped<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    left: usize,
    dropped: usize,
}

impl fmt::Write for Capped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            return self.f.write_str(s);
        }
        let cut = char_floor(s, self.left);
        self.left = 0;
        self.dropped += s.len() - cut;
        self.f.write_str(&s[..cut])
    }
}

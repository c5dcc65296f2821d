//! What the server reports of the session's settings (ParameterStatus), read as the bytes
//! stream by: [`Parameter`] watches for `client_encoding`, and [`Reported`] bounds what
//! tokio-postgres keeps of the reports.
//!
//! tokio-postgres decodes every text as UTF-8 (it asks for `client_encoding=UTF8` at
//! startup), but any statement may change the setting (`SET client_encoding`,
//! `set_config`, a function's `SET` clause); the server then reports the new value. A
//! session reported in another encoding must reach nobody else (the check closes it):
//! the next caller's text would not decode, or decode wrong. `DateStyle` and
//! `IntervalStyle` need no watch: tokio-postgres reads dates, times and intervals in
//! binary, which they do not change.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;

use super::{PARAMETER_KEPT_LIMIT, PARAMETER_MESSAGE_LIMIT, PARAMETER_NAMES_LIMIT, invalid};

/// The parameters the server reported, as tokio-postgres keeps them: the latest value of
/// each name, for the session's life. Bounds what that costs whatever the number of
/// messages: each message at most [`PARAMETER_MESSAGE_LIMIT`] bytes, at most
/// [`PARAMETER_NAMES_LIMIT`] names, and the latest message of each name at most
/// [`PARAMETER_KEPT_LIMIT`] bytes together. A server reporting the same few names over
/// and over (PostgreSQL 13 and older report a function's `SET` clause, and its undoing, at
/// each call: two messages a row) stays within them; one reporting new names, or huge
/// values, does not.
#[derive(Debug, Clone, Default)]
pub(super) struct Reported {
    /// Each name reported so far, with the size of its latest message.
    sizes: HashMap<Vec<u8>, u64>,
    /// The sizes in `sizes`, added up.
    kept: u64,
    /// The message being read: its size, while its name is not whole yet.
    reading: Option<u64>,
    /// Its name so far.
    name: Vec<u8>,
}

impl Reported {
    /// A ParameterStatus of `size` bytes (its length field) starts.
    ///
    /// # Errors
    /// `InvalidData` for a message over [`PARAMETER_MESSAGE_LIMIT`], at its header: before
    /// tokio-postgres buffers it.
    pub fn start(&mut self, size: u64) -> io::Result<()> {
        if size > PARAMETER_MESSAGE_LIMIT {
            return Err(invalid(format!(
                "the server announced a {size}-byte parameter change (ParameterStatus); at \
                 most {PARAMETER_MESSAGE_LIMIT} bytes are accepted: the session is closed"
            )));
        }
        self.reading = Some(size);
        self.name.clear();
        Ok(())
    }

    /// Reads the next bytes of the message's body (at most the body: the caller cuts them),
    /// and counts the message against the bounds once its name is whole.
    ///
    /// # Errors
    /// `InvalidData` when the name is new and [`PARAMETER_NAMES_LIMIT`] names came already,
    /// or the latest messages of all names come to more than [`PARAMETER_KEPT_LIMIT`].
    pub fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(size) = self.reading else {
            return Ok(());
        };
        let Some(end) = data.iter().position(|&b| b == 0) else {
            self.name.extend_from_slice(data);
            return Ok(());
        };
        self.name.extend_from_slice(&data[..end]);
        self.reading = None;
        let name = std::mem::take(&mut self.name);
        let names = self.sizes.len();
        let before = match self.sizes.entry(name) {
            Entry::Occupied(mut known) => known.insert(size),
            Entry::Vacant(_) if names >= PARAMETER_NAMES_LIMIT => {
                return Err(invalid(format!(
                    "the server reported more than {PARAMETER_NAMES_LIMIT} different \
                     parameters (ParameterStatus); the session is closed"
                )));
            }
            Entry::Vacant(new) => {
                new.insert(size);
                0
            }
        };
        self.kept = self.kept - before + size;
        if self.kept > PARAMETER_KEPT_LIMIT {
            return Err(invalid(format!(
                "the parameters the server reported (ParameterStatus, the latest value of \
                 each) came to more than {PARAMETER_KEPT_LIMIT} bytes; the session is closed"
            )));
        }
        Ok(())
    }
}

/// Where a ParameterStatus body (`name\0value\0`) is, as far as `client_encoding` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parameter {
    /// This many bytes of the name matched `client_encoding\0` so far.
    Name(usize),
    /// The name is `client_encoding`; the value's letters and digits so far, lowercased (the
    /// first [`SPELLED`] of them), and how many came.
    Value([u8; SPELLED], usize),
    /// Another parameter, or the value already reported.
    Done,
}

const NAME: &[u8] = b"client_encoding\0";

/// The names PostgreSQL reads as UTF8 once it has cleaned an encoding name up
/// (`clean_encoding_name`: letters and digits only, lowercased), so `UTF8`, `utf-8`, `UTF_8`
/// and `Unicode` all are. It reports the canonical `UTF8`, except `UNICODE`, which it keeps
/// verbatim (`check_client_encoding`, for old JDBC drivers); servers before 9.1, and
/// servers that only speak the protocol, may keep any spelling.
const UTF8_NAMES: [&[u8]; 2] = [b"utf8", b"unicode"];

/// The letters and digits of a value kept to compare: as many as the longest of
/// [`UTF8_NAMES`].
const SPELLED: usize = 7;

impl Parameter {
    /// A new ParameterStatus body starts.
    pub fn new() -> Self {
        Parameter::Name(0)
    }

    /// Reads the next bytes of the body (at most the body: the caller cuts them). Returns,
    /// once the value of `client_encoding` has come whole, whether it names UTF8 (any of
    /// its spellings: see [`UTF8_NAMES`]).
    pub fn feed(&mut self, data: &[u8]) -> Option<bool> {
        for &b in data {
            match *self {
                Parameter::Name(i) if NAME[i] == b => {
                    *self = if i + 1 == NAME.len() {
                        Parameter::Value([0; SPELLED], 0)
                    } else {
                        Parameter::Name(i + 1)
                    };
                }
                Parameter::Name(_) | Parameter::Done => {
                    *self = Parameter::Done;
                    return None;
                }
                Parameter::Value(spelled, n) if b == 0 => {
                    *self = Parameter::Done;
                    return Some(n <= SPELLED && UTF8_NAMES.contains(&&spelled[..n]));
                }
                Parameter::Value(mut spelled, n) if b.is_ascii_alphanumeric() => {
                    if let Some(at) = spelled.get_mut(n) {
                        *at = b.to_ascii_lowercase();
                    }
                    *self = Parameter::Value(spelled, n.saturating_add(1));
                }
                Parameter::Value(..) => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` cut at `at`, returning what the watch said.
    fn read(body: &[u8], at: usize) -> Option<bool> {
        let mut p = Parameter::new();
        let first = p.feed(&body[..at]);
        first.or_else(|| p.feed(&body[at..]))
    }

    #[test]
    fn client_encoding_is_told_however_the_body_is_cut() {
        for (body, said) in [
            (&b"client_encoding\0UTF8\0"[..], Some(true)),
            // PostgreSQL's own report of `SET client_encoding = 'UNICODE'`.
            (b"client_encoding\0UNICODE\0", Some(true)),
            // Spellings a server that keeps the value verbatim may report.
            (b"client_encoding\0utf-8\0", Some(true)),
            (b"client_encoding\0Utf_8\0", Some(true)),
            (b"client_encoding\0unicode\0", Some(true)),
            (b"client_encoding\0U.T.F.8\0", Some(true)),
            (b"client_encoding\0LATIN1\0", Some(false)),
            (b"client_encoding\0UTF8X\0", Some(false)),
            (b"client_encoding\0UTF\0", Some(false)),
            (b"client_encoding\0UTF16\0", Some(false)),
            (b"client_encoding\0UNICODE8\0", Some(false)),
            (b"client_encoding\0unicodeutf8\0", Some(false)),
            (b"client_encoding\0\0", Some(false)),
            (b"client_encoding\0-\0", Some(false)),
            (b"client_encodingx\0UTF8\0", None),
            (b"DateStyle\0ISO, MDY\0", None),
            (b"client\0encoding\0", None),
        ] {
            for at in 0..=body.len() {
                assert_eq!(read(body, at), said, "{body:?} cut at {at}");
            }
        }
    }
}

//! What the server reports of the session's settings (ParameterStatus), read as the bytes
//! stream by: [`Parameter`] watches for `client_encoding`.
//!
//! tokio-postgres decodes every text as UTF-8 (it asks for `client_encoding=UTF8` at
//! startup), but any statement may change the setting (`SET client_encoding`,
//! `set_config`, a function's `SET` clause); the server then reports the new value. A
//! session reported in another encoding must reach nobody else (the check closes it):
//! the next caller's text would not decode, or decode wrong. `DateStyle` and
//! `IntervalStyle` need no watch: tokio-postgres reads dates, times and intervals in
//! binary, which they do not change.

/// Where a ParameterStatus body (`name\0value\0`) is, as far as `client_encoding` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parameter {
    /// This many bytes of the name matched `client_encoding\0` so far.
    Name(usize),
    /// The name is `client_encoding`; this many bytes of the value came, and whether they
    /// match `UTF8\0` so far.
    Value(usize, bool),
    /// Another parameter, or the value already reported.
    Done,
}

const NAME: &[u8] = b"client_encoding\0";
const UTF8: &[u8] = b"UTF8\0";

impl Parameter {
    /// A new ParameterStatus body starts.
    pub fn new() -> Self {
        Parameter::Name(0)
    }

    /// Reads the next bytes of the body (at most the body: the caller cuts them). Returns,
    /// once the value of `client_encoding` has come whole, whether it is UTF8.
    pub fn feed(&mut self, data: &[u8]) -> Option<bool> {
        for &b in data {
            match *self {
                Parameter::Name(i) if NAME[i] == b => {
                    *self = if i + 1 == NAME.len() {
                        Parameter::Value(0, true)
                    } else {
                        Parameter::Name(i + 1)
                    };
                }
                Parameter::Name(_) | Parameter::Done => {
                    *self = Parameter::Done;
                    return None;
                }
                Parameter::Value(i, same) => {
                    let same = same && UTF8.get(i) == Some(&b);
                    if b == 0 {
                        *self = Parameter::Done;
                        return Some(same && i + 1 == UTF8.len());
                    }
                    *self = Parameter::Value(i + 1, same);
                }
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
            (b"client_encoding\0LATIN1\0", Some(false)),
            (b"client_encoding\0UTF8X\0", Some(false)),
            (b"client_encoding\0UTF\0", Some(false)),
            (b"client_encoding\0\0", Some(false)),
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

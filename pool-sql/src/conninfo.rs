//! Reading a connection string as tokio-postgres does, for what its `Config` cannot tell:
//! whether `sslmode` was written at all (a TLS config makes the default `require`),
//! libpq's `sslmode` values that tokio-postgres does not know (`verify-full`, `verify-ca`,
//! `allow`), and where each password is, so that nothing this crate prints shows one.

use std::ops::Range;

use crate::Error;

/// tokio-postgres's parse errors name the option, not the value, but for an unknown option
/// its name is the user's text: after a password with an unquoted space (or, in a URL, an
/// unencoded `&`), that is a piece of the password, and it is not repeated.
pub(crate) fn describe_parse_error(e: &tokio_postgres::Error, scanned: &Scanned) -> String {
    let text = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_else(|| e.to_string());
    let unknown = text
        .strip_prefix("unknown option `")
        .and_then(|rest| rest.strip_suffix('`'));
    if let Some(key) = unknown {
        if let Some(option) = CERTIFICATE_FILES.iter().find(|o| **o == key) {
            return format!(
                "does not parse: `{option}` (libpq's certificate file) is not read here: give \
                 a private CA, or a client certificate and key, in the rustls ClientConfig \
                 passed to DbBuilder::tls (feature `tls`)"
            );
        }
        let Some(at) = scanned.params.iter().position(|p| p.key == key) else {
            return "does not parse: it has an unknown option".to_owned();
        };
        if at > 0 && scanned.params[at - 1].key == "password" {
            let fix = if scanned.url {
                "write an `&` in a password as %26"
            } else {
                "quote a password that holds spaces: password='...'"
            };
            return format!(
                "does not parse: an unknown option follows `password`, maybe the rest of it \
                 ({fix})"
            );
        }
    }
    format!("does not parse: {text}")
}

/// Why tokio-postgres or libpq would misread the URL `s`, if so. Both end a URL's user info
/// at the first `@`; tokio-postgres looks for it anywhere, libpq only before the first `/`.
/// Only the raw text counts: a `/`, `?` or `@` written `%2F`, `%3F`, `%40` is a character
/// of a name, not syntax. Refused, in words that never quote the string:
/// - an `@` with a `/` before it, or a `?` in the user name, or a `?` and then an `=` in the
///   password: an `@` after the host (in the database name or an option) and no user info
///   before it (`postgres://db/app?password=p@ss`, `postgres://db:5432?password=p@ss`),
///   which makes a user name and a host out of the text around it, password included. A
///   `?` alone in a password is the password's (`app:pa?ss@db`), as both drivers read it;
/// - an `@` after the user info and before the query, in the host or the database name: the
///   rest of a password holding an unencoded `@` (`app:s3cr@t/Part2@db/app` is the user
///   `app` at the host `t`, database `Part2@db/app`).
///
/// See also [`misread_parts`].
pub(crate) fn misread_url(s: &str, scanned: &Scanned) -> Option<&'static str> {
    if !scanned.url {
        return None;
    }
    let start = s.find("://").map_or(0, |i| i + 3);
    let first_at = s[start..].find('@').map(|i| start + i)?;
    let (user, password) = s[start..first_at]
        .split_once(':')
        .unwrap_or((&s[start..first_at], ""));
    let query_like = password
        .find('?')
        .is_some_and(|q| password[q..].contains('='));
    if s[start..first_at].contains('/') || user.contains('?') || query_like {
        return Some(
            "has an `@` after the host (in the database name or an option) and none before \
             it: tokio-postgres would read all the text up to it as the user name and \
             password; write that `@` as %40 (and a `/` or `?` in a password as %2F, %3F)",
        );
    }
    let rest = &s[first_at + 1..];
    let before_query = rest.find('?').map_or(rest, |q| &rest[..q]);
    before_query.contains('@').then_some(
        "has a second `@`, after the user info: tokio-postgres and libpq end the user info at \
         the first `@` and would read the rest of the password as the host and database \
         name; write an `@` in a password (or a database name) as %40",
    )
}

/// Whatever tokio-postgres read into `config`, hosts that no correct reading gives, so that
/// a piece of a password never reaches a message through a host: one holding `@`, `/`, `?`,
/// `&` or `=`. The words never quote the string. (A URL's user name is checked in its raw
/// text, by [`misread_url`]: `team%2Fapp` is the role `team/app`.)
pub(crate) fn misread_parts(config: &tokio_postgres::Config) -> Option<&'static str> {
    let host_has = |cuts: &[char]| {
        config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(name) if name.contains(cuts)))
    };
    if host_has(&['@']) {
        return Some(
            "names a host with `@` in it: the user name or password holds an `@`, which a \
             URL must write as %40",
        );
    }
    host_has(&['/', '?', '&', '=']).then_some(
        "names a host with `/`, `?`, `&` or `=` in it: part of the string was read as the \
         host (write `@` in a password or an option as %40)",
    )
}

/// libpq's options that name certificate files, which this crate does not read: the CA
/// and the client certificate go into the rustls config given to `DbBuilder::tls`.
const CERTIFICATE_FILES: [&str; 5] = ["sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir"];

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LibpqSslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl LibpqSslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The value tokio-postgres knows with our meaning (see [`DbBuilder::tls`]).
    fn ours(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow | Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }

    pub(crate) fn requires_tls(self) -> bool {
        self.ours() == "require"
    }
}

/// One option of a connection string, as tokio-postgres reads it.
#[derive(Debug)]
struct Param {
    /// Its name, percent-decoded in a URL.
    key: String,
    /// Where its value is in the string, quotes included.
    span: Range<usize>,
    /// The value, unescaped or percent-decoded.
    value: String,
}

/// A connection string's options, found with tokio-postgres's grammar (its
/// `impl FromStr for Config`): a URL (`postgres://` or `postgresql://`; the user info ends
/// at the first `@`, the host at `/` or `?`, the database name at `?`, then `key=value`
/// pairs split at `&`, percent-decoded) or `key = value` pairs split at whitespace, a value
/// either `'quoted'` or plain, `\` escaping the next character in both. The URL's password
/// is a [`Param`] named `password`. Only the syntax: names and values are tokio-postgres's
/// to judge.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub(crate) url: bool,
    params: Vec<Param>,
    /// Where tokio-postgres stops reading: an option name that is empty (the string's end,
    /// or an `=` where a name should be) ends a `key=value` string, silently.
    pub(crate) end: usize,
}

impl Scanned {
    /// # Errors
    /// What is wrong, in words that never quote the string.
    pub(crate) fn scan(s: &str) -> Result<Scanned, &'static str> {
        match ["postgres://", "postgresql://"]
            .iter()
            .find(|p| s.starts_with(*p))
        {
            Some(prefix) => Self::scan_url(s, prefix.len()),
            None => Self::scan_key_values(s),
        }
    }

    fn scan_url(s: &str, start: usize) -> Result<Scanned, &'static str> {
        let mut params = Vec::new();
        let mut at = start;
        if let Some(end) = s[at..].find('@').map(|i| at + i) {
            if let Some(colon) = s[at..end].find(':').map(|i| at + i) {
                params.push(Param {
                    key: "password".to_owned(),
                    span: colon + 1..end,
                    value: percent_decode(&s[colon + 1..end]),
                });
            }
            at = end + 1;
        }
        at = s[at..].find(['/', '?']).map_or(s.len(), |i| at + i);
        if s[at..].starts_with('/') {
            at = s[at..].find('?').map_or(s.len(), |i| at + i);
        }
        if s[at..].starts_with('?') {
            at += 1;
            while at < s.len() {
                let eq = s[at..]
                    .find('=')
                    .map(|i| at + i)
                    .ok_or("a query parameter has no `=`")?;
                let end = s[eq + 1..].find('&').map_or(s.len(), |i| eq + 1 + i);
                params.push(Param {
                    key: percent_decode(&s[at..eq]),
                    span: eq + 1..end,
                    value: percent_decode(&s[eq + 1..end]),
                });
                at = (end + 1).min(s.len());
            }
        }
        Ok(Scanned {
            url: true,
            params,
            end: s.len(),
        })
    }

    fn scan_key_values(s: &str) -> Result<Scanned, &'static str> {
        let mut it = s.char_indices().peekable();
        let mut params = Vec::new();
        let pos = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            it.peek().map_or(s.len(), |&(i, _)| i)
        };
        let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        };
        loop {
            skip_ws(&mut it);
            let key_start = pos(&mut it);
            while it
                .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
                .is_some()
            {}
            let key_end = pos(&mut it);
            if key_start == key_end {
                return Ok(Scanned {
                    url: false,
                    params,
                    end: key_start,
                });
            }
            skip_ws(&mut it);
            if it.next_if(|&(_, c)| c == '=').is_none() {
                return Err(
                    "an option name is not followed by `=` (quote a value that holds \
                            spaces: key='a b')",
                );
            }
            skip_ws(&mut it);
            let value_start = pos(&mut it);
            let quoted = it.next_if(|&(_, c)| c == '\'').is_some();
            let mut value = String::new();
            loop {
                match it.peek().copied() {
                    None if quoted => return Err("a quoted value has no closing quote"),
                    None => break,
                    Some((_, '\'')) if quoted => {
                        it.next();
                        break;
                    }
                    Some((_, c)) if !quoted && c.is_whitespace() => break,
                    Some((_, '\\')) => {
                        it.next();
                        value.extend(it.next().map(|(_, c)| c));
                    }
                    Some((_, c)) => {
                        it.next();
                        value.push(c);
                    }
                }
            }
            if !quoted && value.is_empty() {
                return Err("an option has no value");
            }
            params.push(Param {
                key: s[key_start..key_end].to_owned(),
                span: value_start..pos(&mut it),
                value,
            });
        }
    }

    /// The `sslmode` the string sets (the last one wins, as in tokio-postgres), if any.
    pub(crate) fn ssl_mode(&self) -> Result<Option<LibpqSslMode>, Error> {
        let Some(param) = self.params.iter().rev().find(|p| p.key == "sslmode") else {
            return Ok(None);
        };
        LibpqSslMode::parse(&param.value).map(Some).ok_or_else(|| {
            Error::config(
                "url",
                "has an unknown sslmode (disable, allow, prefer, require, verify-ca or \
                 verify-full)",
            )
        })
    }

    /// `s` (the string scanned) with each `sslmode` written as tokio-postgres knows it.
    pub(crate) fn libpq_modes_as_ours(&self, s: &str) -> String {
        let spans = self.params.iter().filter_map(|p| {
            let mode = LibpqSslMode::parse(&p.value).filter(|_| p.key == "sslmode")?;
            Some((p.span.clone(), mode.ours()))
        });
        splice(s, spans)
    }
}

/// `s` with each span (ordered, not overlapping) replaced by its text.
fn splice<'a>(s: &str, spans: impl IntoIterator<Item = (Range<usize>, &'a str)>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (span, text) in spans {
        out.push_str(&s[at..span.start]);
        out.push_str(text);
        at = span.end;
    }
    out.push_str(&s[at..]);
    out
}

/// The connection string `s` with every password replaced by `***`: the URL's password
/// and every `password` option, in the URL's query and in `key=value` form. A string that
/// does not parse is not shown at all, and text after the last option is masked as well.
///
/// Where a URL is ambiguous (an unencoded `@`, `?` or `&` in a password) both readings are
/// masked: tokio-postgres's (user info up to the first `@`) and the one a reader expects:
/// the password runs from the user info's first `:` up to the last `@` before the query
/// (which starts at the first `?` after the first `@`: a `?` before it is the password's),
/// and query options are split after the first `?` as well. So whatever the database name
/// and the host seem to hold before the last such `@` is masked too: in
/// `app:s3cr@t/Part2@db/app`, all of `s3cr@t/Part2`.
pub(crate) fn redact(s: &str) -> String {
    let Ok(scanned) = Scanned::scan(s) else {
        return "(a connection string that does not parse; not shown, it may hold a password)"
            .to_owned();
    };
    let mut masks: Vec<Range<usize>> = scanned
        .params
        .iter()
        .filter(|p| p.key == "password")
        .map(|p| p.span.clone())
        .collect();
    if scanned.end < s.len() {
        masks.push(scanned.end..s.len());
    }
    if scanned.url {
        let start = s.find("://").map_or(0, |i| i + 3);
        if let Some(first_at) = s[start..].find('@').map(|i| start + i) {
            let query = s[first_at..].find('?').map_or(s.len(), |i| first_at + i);
            let last_at = s[first_at..query]
                .rfind('@')
                .map_or(first_at, |i| first_at + i);
            if let Some(colon) = s[start..last_at].find(':').map(|i| start + i) {
                masks.push(colon + 1..last_at);
            }
        }
        if let Some(query) = s.find('?') {
            let mut at = query + 1;
            for pair in s[query + 1..].split('&') {
                if let Some((key, value)) = pair.split_once('=')
                    && percent_decode(key) == "password"
                {
                    let from = at + key.len() + 1;
                    masks.push(from..from + value.len());
                }
                at += pair.len() + 1;
            }
        }
    }
    masks.sort_by_key(|m| m.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(masks.len());
    for m in masks {
        match merged.last_mut() {
            Some(last) if m.start <= last.end => last.end = last.end.max(m.end),
            _ => merged.push(m),
        }
    }
    splice(s, merged.into_iter().map(|m| (m, "***")))
}

/// Percent-decoding as tokio-postgres does it (a `%` not followed by two hex digits stays),
/// lossy where the bytes are not UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

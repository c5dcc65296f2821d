//! The `CONNECT` exchange that turns a connection to a proxy into a tunnel to the target.
//!
//! The answer's head is read without a byte past its end: what follows belongs to the TLS
//! handshake. The bytes are peeked first, and only those up to the head's end are consumed,
//! so a proxy that sends more at once loses nothing and no read is byte by byte. The head is
//! bounded ([`MAX_HEAD`]) and the whole exchange ends at the dial's deadline
//! (`connect_timeout`), so a hostile proxy (an endless header, or silence) costs at most that.

use std::io;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Endpoint;
use crate::{ConnectError, Origin};

/// Largest `CONNECT` answer head read (as Go's `http.ReadResponse` over its 4 KiB reader,
/// with room for a proxy's verbose headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Why reading the answer's head failed.
enum Head {
    Closed,
    TooLarge,
    Io(io::Error),
}

/// Sends `CONNECT` for `origin` to `proxy` on `tcp` and reads the answer; a 2xx leaves `tcp`
/// at the first byte after the answer's head, a tunnel to the target.
///
/// # Errors
/// [`ConnectError::Proxy`]: another status (its `status` set), the proxy closed or failed,
/// a malformed or too large head, or no answer by `deadline` (its source an `io::Error` of
/// kind `TimedOut`).
pub(crate) async fn tunnel(
    tcp: &mut TcpStream,
    proxy: &Endpoint,
    origin: &Origin,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let target = origin.host_port();
    let request = request(&target, proxy.auth());
    let exchange = async {
        tcp.write_all(&request).await.map_err(Head::Io)?;
        read_head(tcp).await
    };
    let fail = |reason: String, status: Option<StatusCode>, source: Option<io::Error>| {
        ConnectError::Proxy {
            proxy: proxy.to_string(),
            target: target.clone(),
            status,
            reason,
            source,
        }
    };
    let head = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => {
            return Err(fail(
                format!("sent no answer to CONNECT within connect_timeout ({timeout:?})"),
                None,
                Some(io::ErrorKind::TimedOut.into()),
            ));
        }
        Ok(Err(Head::Closed)) => {
            return Err(fail(
                "closed the connection before answering CONNECT".into(),
                None,
                None,
            ));
        }
        Ok(Err(Head::TooLarge)) => {
            return Err(fail(
                format!("answered CONNECT with a head over {MAX_HEAD} bytes"),
                None,
                None,
            ));
        }
        Ok(Err(Head::Io(e))) => {
            return Err(fail("CONNECT failed on the socket".into(), None, Some(e)));
        }
        Ok(Ok(head)) => head,
    };
    match status(&head) {
        Some(status) if status.is_success() => Ok(()),
        Some(status) => Err(fail(
            format!("answered CONNECT with {status}"),
            Some(status),
            None,
        )),
        None => Err(fail(
            "answered CONNECT with something that is not an HTTP/1.x response".into(),
            None,
            None,
        )),
    }
}

/// `CONNECT target HTTP/1.1` with `Host` and, when the proxy has credentials,
/// `Proxy-Authorization` (which is why this is bytes that are never logged).
fn request(target: &str, auth: Option<&HeaderValue>) -> Vec<u8> {
    let mut request = Vec::with_capacity(128);
    for part in ["CONNECT ", target, " HTTP/1.1\r\nHost: ", target, "\r\n"] {
        request.extend_from_slice(part.as_bytes());
    }
    if let Some(auth) = auth {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

/// Reads the answer's head, through its blank line and not a byte further.
async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>, Head> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        // At most one byte past the limit: enough to know it was passed.
        let room = (MAX_HEAD + 1 - head.len()).min(buf.len());
        let n = tcp.peek(&mut buf[..room]).await.map_err(Head::Io)?;
        if n == 0 {
            return Err(Head::Closed);
        }
        let seen = head.len();
        head.extend_from_slice(&buf[..n]);
        // A blank line may have started in the bytes of the last pass.
        let from = seen.saturating_sub(2);
        let end = end_of_head(&head[from..]).map(|end| from + end);
        let take = end.map_or(n, |end| end - seen);
        head.truncate(seen + take);
        // Peeked, so there: consumes exactly those bytes.
        tcp.read_exact(&mut buf[..take]).await.map_err(Head::Io)?;
        if end.is_some() {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(Head::TooLarge);
        }
    }
}

/// The length up to the end of the first blank line (`\n\n` or `\n\r\n`), if there is one.
fn end_of_head(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// The status of an `HTTP/1.x NNN reason` status line.
fn status(head: &[u8]) -> Option<StatusCode> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    if !minor.is_ascii_digit() || rest.len() < 3 || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    StatusCode::from_bytes(&rest[..3]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head comes in `pieces` (a pause between them), then `after`: the head is read
    /// whole and `after` is left on the socket.
    async fn read_back(pieces: &'static [&'static [u8]]) -> (Vec<u8>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for piece in pieces {
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let Ok(head) = read_head(&mut tcp).await else {
            panic!("the head was not read");
        };
        let server = server.await.unwrap();
        drop(server);
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        (head, rest)
    }

    #[tokio::test]
    async fn the_head_is_read_without_a_byte_past_it() {
        let (head, rest) = read_back(&[b"HTTP/1.1 200 OK\r\n\r\nafter"]).await;
        assert_eq!(head, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(rest, b"after");
        // The blank line split over three writes.
        let (head, rest) =
            read_back(&[b"HTTP/1.1 200 OK\r\nA: b\r", b"\n\r", b"\nafter", b" more"]).await;
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n");
        assert_eq!(rest, b"after more");
    }

    #[test]
    fn the_head_ends_at_its_first_blank_line() {
        assert_eq!(end_of_head(b"HTTP/1.1 200 OK\r\n\r\nTLS"), Some(19));
        assert_eq!(end_of_head(b"HTTP/1.1 200 OK\n\nTLS"), Some(17));
        assert_eq!(end_of_head(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(end_of_head(b"\r\n"), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(StatusCode::OK)
        );
        assert_eq!(status(b"HTTP/1.0 200\r\n\r\n"), Some(StatusCode::OK));
        assert_eq!(
            status(b"HTTP/1.1 407 Proxy Authentication Required\r\n"),
            Some(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        );
        for bad in [
            &b"HTTP/2 200 OK\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.x 200 OK\r\n",
            b"",
        ] {
            assert_eq!(status(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_request_has_host_and_only_the_credentials_given() {
        let plain = request("example.com:443", None);
        assert_eq!(
            plain,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        let auth = super::super::basic(b"u", b"p");
        let with = String::from_utf8(request("[::1]:443", Some(&auth))).unwrap();
        assert!(with.starts_with("CONNECT [::1]:443 HTTP/1.1\r\n"), "{with}");
        assert!(
            with.ends_with("Proxy-Authorization: Basic dTpw\r\n\r\n"),
            "{with}"
        );
    }
}

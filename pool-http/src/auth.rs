//! Credentials as they go on the wire: one `Basic` encoder for every place that sends one
//! (a request's [`basic_auth`](crate::RequestBuilder::basic_auth), a URL's userinfo, a
//! proxy's credentials). Every value made here is marked sensitive, so `http` and hyper keep
//! it out of their `Debug` and HTTP/2 never indexes it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::HeaderValue;
use percent_encoding::percent_decode_str;

/// `Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic(user: &[u8], password: &[u8]) -> HeaderValue {
    let mut plain = Vec::with_capacity(user.len() + password.len() + 1);
    plain.extend_from_slice(user);
    plain.push(b':');
    plain.extend_from_slice(password);
    let mut value = HeaderValue::try_from(format!("Basic {}", BASE64.encode(&plain)))
        .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// The `Basic` value of a URL's userinfo (`user[:password]`, both percent-decoded, the
/// password cut at the first `:`): a user alone has an empty password, as in Go.
pub(crate) fn userinfo_basic(userinfo: &str) -> HeaderValue {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user: Vec<u8> = percent_decode_str(user).collect();
    let password: Vec<u8> = percent_decode_str(password).collect();
    basic(&user, &password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_percent_decoded_and_every_value_is_sensitive() {
        assert_eq!(basic(b"u", b"p"), "Basic dTpw");
        // "us er:p@ss", and a user alone is `user:`.
        assert_eq!(userinfo_basic("us%20er:p%40ss"), "Basic dXMgZXI6cEBzcw==");
        assert_eq!(userinfo_basic("u"), "Basic dTo=");
        // The password keeps its own colons.
        assert_eq!(userinfo_basic("u:a:b"), basic(b"u", b"a:b"));
        assert!(basic(b"", b"").is_sensitive());
        assert!(userinfo_basic("u:p").is_sensitive());
    }
}

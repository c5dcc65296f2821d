//! Redirects as Go's `http.Client` follows them: the [`Policy`] that decides, and `Follow`,
//! which turns a 3xx response into the next request.
//!
//! # The rules (Go's `redirectBehavior` and `shouldCopyHeaderOnRedirect`)
//! - 301, 302, 303: the next request is a `GET` without a body (a `HEAD` stays a `HEAD`);
//!   the body's headers (`Content-Type`, `Content-Length`, `Content-Encoding`,
//!   `Transfer-Encoding`) go with it.
//! - 307, 308: the method and the body go again, when the body is in memory; a streamed
//!   body cannot be sent twice, so the 3xx response is returned as it is (as Go does without
//!   `GetBody`).
//! - A 3xx without `Location`, or with an empty one (300, 304, ...), is returned as it is.
//! - A `Location` is resolved against the URL that got it (RFC 3986), with the bytes a URL
//!   cannot hold (non-ASCII, spaces) percent-encoded, as Go's `url.Parse` takes them. One
//!   that is not then an `http` or `https` URL the client can use fails the request.
//! - `Authorization`, `Proxy-Authorization`, `Proxy-Authenticate`, `Cookie`, `Cookie2` and
//!   `WWW-Authenticate` headers the caller set go only to the first request's host or its
//!   subdomains, on any port (Go's rule), and never from `https` to `http` (stricter than
//!   Go: a downgrade would put them on the wire in clear). Once dropped, they never come
//!   back.
//! - The first URL's userinfo goes on the first request only, as `Authorization: Basic`
//!   (unless the caller set an `Authorization`), never on a redirect, not even to the same
//!   host: Go's `send` puts it on its own copy of the request, and redirects copy the
//!   caller's headers.
//! - `Referer`, per hop: none from `https` to `http`, not even one the caller set (Go's
//!   `refererForURL` checks the downgrade first); otherwise the caller's own, if any, else
//!   the previous URL (without userinfo or fragment). So a caller's `Referer` dropped on a
//!   downgrade comes back on a later `https` hop.
//! - At most [`MAX_REDIRECTS`] redirects in all, whatever the policy: a
//!   [`Policy::custom`] that always follows still ends against a server that redirects
//!   forever.
//! - A `Host` the caller set goes on while every `Location` is a relative reference (a
//!   virtual host's own redirects, as in Go); the first absolute one drops it for good.
//! - Every hop's connection is pooled as usual: the 3xx body is dropped, so drained within
//!   the client's drain budget, not closed.

use std::sync::Arc;

use http::{StatusCode, Uri};

use crate::BoxError;
#[cfg(doc)]
use crate::Error;

mod follow;

pub(crate) use follow::Follow;

/// The most redirects one request follows, whatever its [`Policy`] says (Go's default check
/// stops at 10; this bounds a custom policy that always follows): the next fails with
/// [`is_redirect`](Error::is_redirect), `stopped after 100 redirects`.
pub const MAX_REDIRECTS: usize = 100;

/// Which redirects a request follows: [`ClientBuilder::redirect`](crate::ClientBuilder::redirect)
/// for a client, [`RequestBuilder::redirect`](crate::RequestBuilder::redirect) for one request.
///
/// Cheap to clone. Its `Debug` says which kind of policy it is.
///
/// # Examples
///
/// ```
/// use pool_http::redirect::Policy;
///
/// // Follow at most 3, and never leave example.com.
/// let policy = Policy::custom(|attempt| {
///     if attempt.previous().len() >= 3 {
///         attempt.error("more than 3 redirects")
///     } else if attempt.url().host() != Some("example.com") {
///         attempt.stop()
///     } else {
///         attempt.follow()
///     }
/// });
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct Policy {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    None,
    Limited(usize),
    Custom(Arc<dyn Fn(Attempt<'_>) -> Action + Send + Sync>),
}

impl Policy {
    /// Follow up to `max` redirects (at most [`MAX_REDIRECTS`]), then fail with [`is_redirect`](Error::is_redirect)
    /// (`stopped after 10 redirects` for the default, 10: 11 requests in all). Go's default
    /// check fails on the 10th redirect instead (10 requests in all, the same message); to
    /// match it exactly, use `Policy::limited(9)`.
    pub fn limited(max: usize) -> Policy {
        Policy {
            kind: Kind::Limited(max),
        }
    }

    /// Follow none: every 3xx response is returned as it is.
    pub fn none() -> Policy {
        Policy { kind: Kind::None }
    }

    /// Decide each redirect with `decide` (Go's `CheckRedirect`): it sees the status, the
    /// next URL and the URLs before it, and says [`follow`](Attempt::follow),
    /// [`stop`](Attempt::stop) (the 3xx response is returned, Go's `ErrUseLastResponse`) or
    /// [`error`](Attempt::error). It is called for every redirect the rules would follow, up
    /// to [`MAX_REDIRECTS`]: the one after those fails without asking it.
    pub fn custom(decide: impl Fn(Attempt<'_>) -> Action + Send + Sync + 'static) -> Policy {
        Policy {
            kind: Kind::Custom(Arc::new(decide)),
        }
    }

    /// Whether no redirect is ever followed.
    pub(crate) fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }
}

impl Default for Policy {
    /// [`Policy::limited(10)`](Policy::limited), reqwest's and (one more than) Go's.
    fn default() -> Policy {
        Policy::limited(10)
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::None => f.write_str("Policy::none()"),
            Kind::Limited(n) => write!(f, "Policy::limited({n})"),
            Kind::Custom(_) => f.write_str("Policy::custom(..)"),
        }
    }
}

/// A redirect a [`Policy::custom`] decides on.
#[derive(Debug)]
pub struct Attempt<'a> {
    status: StatusCode,
    next: &'a Uri,
    previous: &'a [Uri],
}

impl<'a> Attempt<'a> {
    /// The 3xx status of the response.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Where the redirect goes (absolute, resolved against the request's URL; a userinfo
    /// the Location carried is dropped, as it is on the wire).
    pub fn url(&self) -> &'a Uri {
        self.next
    }

    /// The URLs requested so far, the first request's first (without its userinfo): its
    /// length is the number of redirects already followed plus one.
    pub fn previous(&self) -> &'a [Uri] {
        self.previous
    }

    /// Follow it.
    pub fn follow(self) -> Action {
        Action {
            kind: ActionKind::Follow,
        }
    }

    /// Do not follow it: the 3xx response is the request's response.
    pub fn stop(self) -> Action {
        Action {
            kind: ActionKind::Stop,
        }
    }

    /// Fail the request with [`is_redirect`](Error::is_redirect), `reason` in the message.
    pub fn error(self, reason: impl Into<BoxError>) -> Action {
        Action {
            kind: ActionKind::Error(reason.into()),
        }
    }
}

/// What a [`Policy::custom`] decided: made by [`Attempt::follow`], [`Attempt::stop`] or
/// [`Attempt::error`].
#[derive(Debug)]
pub struct Action {
    kind: ActionKind,
}

#[derive(Debug)]
enum ActionKind {
    Follow,
    Stop,
    Error(BoxError),
}

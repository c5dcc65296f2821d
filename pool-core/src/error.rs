//! The one error type of the pool: an opaque [`Error`] with predicates.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// A shared, type-erased cause: the manager's own error, kept as the [`Error`]'s source.
pub(crate) type Cause = Arc<dyn StdError + Send + Sync + 'static>;

/// An error from the pool.
///
/// The kind is private; ask with the predicates ([`is_timeout`](Error::is_timeout),
/// [`is_closed`](Error::is_closed), ...). The manager's error, when there is one, is the
/// [`source`](StdError::source) and can be reached with [`downcast_ref`](Error::downcast_ref).
/// A timeout after failed creates carries the last create error as its source, so "pool timed
/// out" always says why.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: Kind,
    source: Option<Cause>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Kind {
    #[error("pool timed out while waiting for an open connection")]
    Timeout,
    #[error("pool timed out while creating a connection")]
    CreateTimeout,
    #[error("pool failed to create a connection")]
    Create,
    #[error("pool manager panicked while creating a connection")]
    Panic,
    #[error("pool is closed")]
    Closed,
    #[error("pool is failing fast: the last connection attempts failed")]
    Unavailable,
    #[error("pool timed out while closing: connections are still checked out")]
    CloseTimeout,
    #[error("pool config error: `{knob}` {reason}")]
    Config { knob: &'static str, reason: String },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with_cause(kind: Kind, source: Option<Cause>) -> Self {
        Error {
            inner: Box::new(Inner { kind, source }),
        }
    }

    pub(crate) fn closed() -> Self {
        Self::new(Kind::Closed)
    }

    pub(crate) fn config(knob: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            knob,
            reason: reason.into(),
        })
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        self.inner.source.clone()
    }

    /// The acquire (or a create, or a bounded close) ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Timeout | Kind::CreateTimeout | Kind::CloseTimeout
        )
    }

    /// The pool was closed (before or while waiting).
    pub fn is_closed(&self) -> bool {
        self.inner.kind == Kind::Closed
    }

    /// Creating a connection failed: the manager returned an error (the source), timed out
    /// (`is_timeout()` too) or panicked (`is_panic()` too).
    pub fn is_create(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Create | Kind::CreateTimeout | Kind::Panic
        )
    }

    /// The manager panicked in `create`; the slot was freed and other waiters are unaffected.
    pub fn is_panic(&self) -> bool {
        self.inner.kind == Kind::Panic
    }

    /// The breaker is open: repeated creates failed, so the pool fails fast (with the last
    /// create error as source) while a background probe waits for the backend to come back.
    pub fn is_unavailable(&self) -> bool {
        self.inner.kind == Kind::Unavailable
    }

    /// The configuration was rejected; [`knob`](Error::knob) names the setting.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config { .. })
    }

    /// For a configuration error, the name of the offending knob.
    pub fn knob(&self) -> Option<&'static str> {
        match &self.inner.kind {
            Kind::Config { knob, .. } => Some(knob),
            _ => None,
        }
    }

    /// The first error of type `E` in the source chain, e.g. the manager's own error.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        let mut next: Option<&(dyn StdError + 'static)> = StdError::source(self);
        while let Some(err) = next {
            if let Some(e) = err.downcast_ref::<E>() {
                return Some(e);
            }
            next = err.source();
        }
        None
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.kind, f)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The cause of an [`Error`] whose manager call panicked: the panic's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub(crate) String);

/// The cause of a create error when the create task was dropped before it finished (its
/// runtime shut down): no manager call failed or panicked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the create task was dropped before it finished (runtime shut down?)")]
pub(crate) struct CreateAbandoned;

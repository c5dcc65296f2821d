//! The [`Manager`] trait: how the pool makes, checks, resets and closes one kind of resource.

use std::time::Duration;

use async_trait::async_trait;

/// What [`Manager::check`] says about a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Usable as it is.
    Ready,
    /// Usable after [`Manager::reset`] runs (at its next checkout, with a deadline).
    NeedsReset,
    /// Not usable: the pool closes it and frees its slot.
    Broken,
}

/// Creates and looks after one kind of pooled resource.
///
/// Only [`create`](Manager::create) is required. The hooks run on these occasions:
///
/// | hook | when | on failure |
/// |---|---|---|
/// | [`check`](Manager::check) (sync, cheap) | on release and before every reuse | `Broken`: closed |
/// | [`validate`](Manager::validate) | before reuse, if idle at least [`validate_after`](Manager::validate_after) | closed, next one tried |
/// | [`reset`](Manager::reset) | before reuse, if `check` said `NeedsReset` | closed, next one tried |
/// | [`close`](Manager::close) | when the pool retires the resource | resource dropped |
///
/// Every async hook runs under `Config::hook_timeout`; one that times out or panics costs the
/// resource, never the pool.
///
/// # Examples
///
/// ```
/// use pool_core::{async_trait, Manager};
///
/// struct Counter;
///
/// #[async_trait]
/// impl Manager for Counter {
///     type Resource = u64;
///     type Error = std::io::Error;
///
///     async fn create(&self) -> Result<u64, std::io::Error> {
///         Ok(42)
///     }
/// }
/// ```
#[async_trait]
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource, e.g. a database connection.
    type Resource: Send + 'static;
    /// The error `create`, `validate` and `reset` return; kept as the pool error's source.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a new resource. Runs in a task of its own under `Config::create_timeout`, so a
    /// caller that gives up does not cancel it: the result goes to the next waiter or to idle.
    async fn create(&self) -> Result<Self::Resource, Self::Error>;

    /// A cheap, synchronous look at a resource on release and before reuse (a closed socket,
    /// a broken flag, an open transaction). The default says [`Health::Ready`].
    fn check(&self, _resource: &mut Self::Resource) -> Health {
        Health::Ready
    }

    /// How long a resource may sit idle before [`validate`](Manager::validate) runs at its
    /// next checkout. `None` (the default) never validates; `Some(ZERO)` validates every
    /// reuse. HikariCP uses 500 ms. `Config::validate_after` overrides it.
    fn validate_after(&self) -> Option<Duration> {
        None
    }

    /// An async liveness check (a ping) before reusing a resource that sat idle for at least
    /// `validate_after`. The default succeeds.
    async fn validate(&self, _resource: &mut Self::Resource) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Brings a resource back to a clean session state before reuse, when
    /// [`check`](Manager::check) asked for it (database/sql's `ResetSession`). The default
    /// succeeds.
    async fn reset(&self, _resource: &mut Self::Resource) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Closes a resource gracefully. The default drops it.
    async fn close(&self, resource: Self::Resource) {
        drop(resource);
    }
}

/// A [`Manager`] whose resources belong to a key (a host, a shard, a tenant): what a
/// [`KeyedPool`](crate::KeyedPool) pools, as Go's `http.Transport` pools connections per
/// (scheme, host, port).
///
/// The hooks mean what they mean on [`Manager`]; only [`create`](KeyedManager::create) is
/// required, and it gets the key. Every [`Manager`] is a `KeyedManager` with the key `()`:
/// the plain [`Pool`](crate::Pool) is the one-key case of the same machinery.
///
/// # Examples
///
/// ```
/// use pool_core::{async_trait, KeyedManager};
///
/// /// Dials `host:port` strings.
/// struct Dialer;
///
/// #[async_trait]
/// impl KeyedManager for Dialer {
///     type Key = String;
///     type Resource = tokio::net::TcpStream;
///     type Error = std::io::Error;
///
///     async fn create(&self, addr: &String) -> Result<Self::Resource, Self::Error> {
///         tokio::net::TcpStream::connect(addr.as_str()).await
///     }
/// }
/// ```
#[async_trait]
pub trait KeyedManager: Send + Sync + 'static {
    /// What resources are pooled by: compared with `Eq` and hashed, cloned once per key.
    type Key: Eq + std::hash::Hash + Clone + Send + Sync + 'static;
    /// The pooled resource.
    type Resource: Send + 'static;
    /// The error `create`, `validate` and `reset` return; kept as the pool error's source.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Creates a new resource for `key`, in a task of its own (see [`Manager::create`]).
    async fn create(&self, key: &Self::Key) -> Result<Self::Resource, Self::Error>;

    /// What a checkout's span records as its `key` field (see the crate docs, "Tracing"), or
    /// `None` to leave the field out. The default is `None`: a key may hold what a log must
    /// not show (a password in a URL, a tenant's name). Called only when the span is on.
    ///
    /// ```
    /// # use pool_core::{async_trait, KeyedManager};
    /// # struct Dialer;
    /// # #[async_trait]
    /// # impl KeyedManager for Dialer {
    /// #     type Key = String;
    /// #     type Resource = ();
    /// #     type Error = std::io::Error;
    /// #     async fn create(&self, _: &String) -> Result<(), std::io::Error> { Ok(()) }
    /// // `host:port` strings are safe to log.
    /// fn span_key<'k>(&self, key: &'k String) -> Option<&'k dyn std::fmt::Display> {
    ///     Some(key)
    /// }
    /// # }
    /// ```
    fn span_key<'k>(&self, _key: &'k Self::Key) -> Option<&'k dyn std::fmt::Display> {
        None
    }

    /// See [`Manager::check`].
    fn check(&self, _resource: &mut Self::Resource) -> Health {
        Health::Ready
    }

    /// See [`Manager::validate_after`].
    fn validate_after(&self) -> Option<Duration> {
        None
    }

    /// See [`Manager::validate`].
    async fn validate(&self, _resource: &mut Self::Resource) -> Result<(), Self::Error> {
        Ok(())
    }

    /// See [`Manager::reset`].
    async fn reset(&self, _resource: &mut Self::Resource) -> Result<(), Self::Error> {
        Ok(())
    }

    /// See [`Manager::close`].
    async fn close(&self, resource: Self::Resource) {
        drop(resource);
    }
}

#[async_trait]
impl<M: Manager> KeyedManager for M {
    type Key = ();
    type Resource = M::Resource;
    type Error = M::Error;

    async fn create(&self, _key: &()) -> Result<M::Resource, M::Error> {
        Manager::create(self).await
    }

    #[inline]
    fn check(&self, resource: &mut M::Resource) -> Health {
        Manager::check(self, resource)
    }

    fn validate_after(&self) -> Option<Duration> {
        Manager::validate_after(self)
    }

    async fn validate(&self, resource: &mut M::Resource) -> Result<(), M::Error> {
        Manager::validate(self, resource).await
    }

    async fn reset(&self, resource: &mut M::Resource) -> Result<(), M::Error> {
        Manager::reset(self, resource).await
    }

    async fn close(&self, resource: M::Resource) {
        Manager::close(self, resource).await
    }
}

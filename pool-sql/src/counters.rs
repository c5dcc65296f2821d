//! What a [`Db`] counts beyond its pool's [`Stats`](crate::Stats): runs again after a bad
//! connection or a conflicting transaction; exported with feature `metrics`
//! ([`Db::record_metrics`]).

use std::sync::atomic::AtomicU64;
#[cfg(feature = "metrics")]
use std::sync::atomic::Ordering;

#[cfg(feature = "metrics")]
use crate::Db;

/// The counters, shared by every clone of a [`Db`] (they live in its manager).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Statements run again after a bad connection (they never reached the server).
    pub(crate) retried: AtomicU64,
    /// Transactions run again by [`Db::transaction_retry`](crate::Db::transaction_retry)
    /// after a serialization failure or a deadlock.
    pub(crate) tx_retried: AtomicU64,
    /// Transactions [`Db::transaction_retry`](crate::Db::transaction_retry) gave up on: the
    /// last attempt conflicted too.
    pub(crate) tx_gave_up: AtomicU64,
}

#[cfg(feature = "metrics")]
impl Db {
    /// Feature `metrics`: records the pool's [`Stats`](crate::Stats) and the `Db`'s own
    /// counters through the `metrics` facade, labelled `pool = name`. Call it periodically
    /// (each scrape, or every few seconds); counters are set to their absolute values, so
    /// calling it again is harmless.
    ///
    /// It exports the pool's series as pool-core's `Pool::record_metrics` does (`pool_open`,
    /// `pool_in_use`, `pool_idle`, `pool_wait_count`, `pool_created`, ... the [`Stats`]
    /// names with the `pool_` prefix), and the counters `sql_retried` (statements run again
    /// after a bad connection), `sql_tx_retried` (transactions run again by
    /// [`transaction_retry`](Db::transaction_retry) after a serialization failure or a
    /// deadlock) and `sql_tx_gave_up` (those whose last attempt conflicted too). Never a
    /// statement's text, a host or a user name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) {
    /// let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    /// loop {
    ///     every.tick().await;
    ///     db.record_metrics("app"); // to the recorder the application installed
    /// }
    /// # }
    /// ```
    ///
    /// [`Stats`]: crate::Stats
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self, name: &str) {
        self.pool().record_metrics(name);
        let c = &self.pool().manager().counters;
        let labels = [("pool", name.to_owned())];
        let counters = [
            ("sql_retried", &c.retried),
            ("sql_tx_retried", &c.tx_retried),
            ("sql_tx_gave_up", &c.tx_gave_up),
        ];
        for (series, value) in counters {
            metrics::counter!(series, &labels).absolute(value.load(Ordering::Relaxed));
        }
    }
}

//! The modes of `BEGIN` and the retry knobs: [`TxOptions`], [`IsolationLevel`].

use std::borrow::Cow;
use std::time::Duration;

#[cfg(doc)]
use crate::{Db, Error};

/// The isolation level of a transaction (`BEGIN ISOLATION LEVEL ...`), as PostgreSQL names
/// them. Without one, the session's `default_transaction_isolation` applies (the server's
/// default is `READ COMMITTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// `READ COMMITTED`: each statement sees what was committed before it began.
    ReadCommitted,
    /// `REPEATABLE READ`: every statement sees the snapshot taken at the first one; a
    /// concurrent update of a row it writes fails with 40001.
    RepeatableRead,
    /// `SERIALIZABLE`: as if the transactions ran one after another; any that could not
    /// fail with 40001 ([`Error::is_serialization_failure`]): run them again
    /// ([`Db::transaction_retry`]).
    Serializable,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
        }
    }
}

/// How a transaction begins (its isolation level, `READ ONLY`, `DEFERRABLE`: Go's
/// `sql.TxOptions`), and how [`Db::transaction_retry`] runs it again.
///
/// The default is a plain `BEGIN` (the session's defaults), 3 attempts, a 10 ms backoff.
///
/// # Examples
///
/// ```
/// use pool_sql::{IsolationLevel, TxOptions};
///
/// let options = TxOptions::new()
///     .isolation(IsolationLevel::Serializable)
///     .read_only(true)
///     .deferrable(true);
/// assert_eq!(options.begin_sql(), "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
/// assert_eq!(TxOptions::new().begin_sql(), "BEGIN");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOptions {
    isolation: Option<IsolationLevel>,
    read_only: bool,
    deferrable: bool,
    pub(super) attempts: u32,
    backoff: Duration,
}

impl Default for TxOptions {
    fn default() -> Self {
        TxOptions {
            isolation: None,
            read_only: false,
            deferrable: false,
            attempts: TxOptions::DEFAULT_ATTEMPTS,
            backoff: TxOptions::DEFAULT_BACKOFF,
        }
    }
}

impl TxOptions {
    /// How many times [`Db::transaction_retry`] runs a transaction at most, by default.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
    /// The base of [`Db::transaction_retry`]'s backoff, by default.
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(10);

    /// A plain `BEGIN`: the session's defaults (see [`TxOptions`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The isolation level (default: the session's, `READ COMMITTED` unless configured).
    pub fn isolation(mut self, level: IsolationLevel) -> Self {
        self.isolation = Some(level);
        self
    }

    /// `READ ONLY`: a write fails with SQLSTATE 25006 (`read_only_sql_transaction`).
    /// Default false (the session's default, normally read-write).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// `DEFERRABLE`: with `SERIALIZABLE` and `READ ONLY`, the transaction may wait at its
    /// start for a snapshot that cannot fail, and then never fails with 40001 (PostgreSQL
    /// ignores it otherwise). Default false.
    pub fn deferrable(mut self, deferrable: bool) -> Self {
        self.deferrable = deferrable;
        self
    }

    /// How many times [`Db::transaction_retry`] runs the transaction at most (the first
    /// run included). Default [`DEFAULT_ATTEMPTS`](Self::DEFAULT_ATTEMPTS), 3; 0 counts as
    /// 1 (no retry). The other transaction functions run it once whatever this says.
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The backoff of [`Db::transaction_retry`]: before its `n`th retry it waits a random
    /// time between zero and `backoff × 2^(n-1)` (at most 1 s), so that transactions that
    /// conflicted do not meet again at once. Default
    /// [`DEFAULT_BACKOFF`](Self::DEFAULT_BACKOFF), 10 ms; zero retries at once.
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The statement that begins such a transaction: `BEGIN`, then the modes set, in
    /// PostgreSQL's words, separated by commas.
    pub fn begin_sql(&self) -> Cow<'static, str> {
        let modes: Vec<Cow<'static, str>> = [
            self.isolation
                .map(|l| Cow::Owned(format!("ISOLATION LEVEL {}", l.sql()))),
            self.read_only.then_some(Cow::Borrowed("READ ONLY")),
            self.deferrable.then_some(Cow::Borrowed("DEFERRABLE")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if modes.is_empty() {
            Cow::Borrowed("BEGIN")
        } else {
            Cow::Owned(format!("BEGIN {}", modes.join(", ")))
        }
    }

    /// The wait before retry `n` (1 for the first): full jitter under a doubling cap.
    pub(super) fn backoff_before(&self, n: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(Duration::from_secs(1));
        cap.mul_f64(fastrand::f64())
    }
}

//! LISTEN/NOTIFY: a [`Listener`] on a session of its own that survives the server.
//!
//! A session that listens must stay the same session (a `LISTEN` belongs to it, and a
//! pooled session goes to others), so a listener opens one of its own, outside the pool:
//! it takes no slot, is not counted in [`Stats`](crate::Stats), and `max_open` does not
//! bound it. It is dialled exactly as the pool's sessions are (every host of the connection
//! string, `target_session_attrs`, TLS, the connect timeout), and its connection task hands
//! the session's notifications to the listener instead of dropping them.
//!
//! When the session ends (the server restarted, the network failed, an administrator ran
//! `pg_terminate_backend`), the next [`recv`](Listener::recv) dials again, with backoff,
//! listens to every channel again and then reports an [`Event::Gap`]: notifications sent
//! while no session listened are lost, as PostgreSQL keeps them for listening sessions
//! only. Whoever relies on them re-reads the state they stand for at a gap.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{Client, Notification};

use crate::connect::{self, NotifySink, Tls, Wire};
use crate::error::Kind;
use crate::{Db, Error};

/// Longest a connect to one host (dial, TLS, startup) may take, and the `LISTEN`s after
/// it, when neither the connection string's `connect_timeout` nor the builder's
/// `create_timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait before dialling again after a failed attempt; it doubles each failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most bytes of a channel name (PostgreSQL's `NAMEDATALEN` - 1; `LISTEN` would cut a
/// longer name, `pg_notify` refuses it).
const MAX_CHANNEL: usize = 63;

/// What [`Listener::recv`] returns: a notification, or the news that some may be lost.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A notification on a channel this listener listens to: its
    /// [`channel`](Notification::channel), [`payload`](Notification::payload) and the
    /// [`process_id`](Notification::process_id) of the session that sent it.
    Notification(Notification),
    /// The listener's session ended and a new one listens again to every channel:
    /// notifications sent in between are lost.
    Gap(Gap),
    /// This many notifications were dropped: they came while [`Listener::QUEUE`] were
    /// already waiting for `recv`. Those waiting are still returned, in order; what came
    /// after the drop follows them.
    Overflow(u64),
}

/// A time when no session listened ([`Event::Gap`]): notifications sent on the channels
/// then were lost.
#[derive(Debug, Clone)]
pub struct Gap {
    down_for: Duration,
    attempts: u32,
    cause: Option<Error>,
}

impl Gap {
    /// From the moment the listener saw its session end to the moment a new one listened.
    pub fn down_for(&self) -> Duration {
        self.down_for
    }

    /// Connects it took to get a new session (1 when the first one worked).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why the old session ended, when its connection said (the server's 57P01 after a
    /// restart or `pg_terminate_backend`, a socket error...); `None` for a plain end of
    /// stream.
    pub fn cause(&self) -> Option<&Error> {
        self.cause.as_ref()
    }
}

/// Receives PostgreSQL notifications (`LISTEN`/`NOTIFY`) on a session of its own, outside
/// the pool: [`Db::listener`] or [`Listener::connect`].
///
/// It listens to any number of channels ([`listen`](Listener::listen),
/// [`unlisten`](Listener::unlisten)); [`recv`](Listener::recv) returns each notification,
/// in the order the server sent them. A channel name is taken literally and quoted as an
/// identifier (any characters but NUL; no SQL injection): `listen("Orders")` gets what
/// `pg_notify('Orders', ...)` and `NOTIFY "Orders"` send, not `NOTIFY Orders`, which
/// PostgreSQL folds to `orders`. [`Db::notify`] sends one.
///
/// **Its session does not come from the pool**: it takes no slot of `max_open` and is not
/// in [`Db::stats`]; it is closed when the listener is dropped. It is dialled as the pool's
/// sessions are (same connection string, TLS and connect timeout) and keeps its
/// own copy of them, so it goes on working after the [`Db`] is closed.
///
/// **When the session ends** (server restart, network failure, `pg_terminate_backend`),
/// `recv` first returns the notifications that arrived before, then dials again, listens to
/// every channel again, and returns [`Event::Gap`]: what was sent in between is lost.
/// A failed attempt is `recv`'s error; the next call tries again after a backoff (100 ms,
/// doubling up to 5 s, less a random part of up to half), so a loop that logs errors and
/// goes on is all a service needs.
///
/// A session cut off without a reset (a dead route, a server gone without closing) is
/// noticed when TCP keep-alive gives up (`keepalives_idle` in the connection string; 2 h by
/// default), as for any session: set it lower for a listener that must notice sooner.
///
/// Notifications wait in a queue until `recv` takes them, at most [`Listener::QUEUE`]
/// (4,096; a payload is at most 8,000 bytes, so about 32 MB at worst): past it the newest
/// are dropped and `recv` says how many ([`Event::Overflow`]), so a flood of `NOTIFY`s
/// from other sessions never grows the process's memory without bound. Read them
/// promptly, in a task of their own if the consumer is slow.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_sql::listener::Event;
///
/// # let pg = pool_sql::testing::TestPg::start()?;
/// let db = pool_sql::Db::open(&pg.url())?;
/// let mut listener = db.listener().await?;
/// listener.listen("jobs").await?;
/// db.notify("jobs", "42").await?;
/// match listener.recv().await? {
///     Event::Notification(n) => assert_eq!((n.channel(), n.payload()), ("jobs", "42")),
///     Event::Gap(_) => { /* re-read what the notifications stand for */ }
///     _ => {}
/// }
/// # Ok(()) }
/// ```
pub struct Listener {
    config: tokio_postgres::Config,
    connect_timeout: Duration,
    tls: Tls,
    target: Arc<str>,
    channels: BTreeSet<String>,
    session: Option<Session>,
    /// When the last session was seen to end, and why (cleared by the gap it becomes).
    lost: Option<(Instant, Option<Error>)>,
    /// A reconnection not yet reported by `recv`.
    gap: Option<Gap>,
    /// Connects tried since the session was lost.
    attempts: u32,
    /// No attempt before this (the backoff after a failed one).
    retry_at: Option<Instant>,
}

/// The listener's current session.
struct Session {
    client: Client,
    wire: Arc<Wire>,
    notes: mpsc::Receiver<Notification>,
    /// Notifications the connection task dropped (the queue was full), not yet reported.
    dropped: Arc<AtomicU64>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("target", &self.target)
            .field("channels", &self.channels)
            .field("connected", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Most notifications waiting for [`recv`](Listener::recv); more are dropped and
    /// reported as [`Event::Overflow`].
    pub const QUEUE: usize = 4096;

    /// Opens a session of its own to `db`'s server (not from its pool), listening to
    /// nothing yet. The same as [`Db::listener`].
    ///
    /// # Errors
    /// [`Error::is_connect`] (and its other predicates: `is_auth_failed`, `is_tls`, ...)
    /// when no session could be opened within the connect timeout (the connection string's
    /// `connect_timeout`, else the builder's `create_timeout`, else 30 s).
    ///
    /// # Cancel safety
    /// Dropping the future drops the half-open session; nothing is left behind.
    pub async fn connect(db: &Db) -> Result<Listener, Error> {
        let manager = db.pool().manager();
        let mut listener = Listener {
            config: manager.config.clone(),
            connect_timeout: manager.connect_timeout.unwrap_or(CONNECT_TIMEOUT),
            tls: manager.tls.clone(),
            target: manager.target.clone(),
            channels: BTreeSet::new(),
            session: None,
            lost: None,
            gap: None,
            attempts: 0,
            retry_at: None,
        };
        listener.session = Some(listener.open().await?);
        Ok(listener)
    }

    /// Listens to `channel` (taken literally: see [`Listener`]); from when this returns,
    /// every notification on it reaches [`recv`](Listener::recv). Listening twice to a
    /// channel is the same as once.
    ///
    /// # Errors
    /// [`Error::is_config`] (with [`Error::knob`] `"channel"`) for an empty name, one
    /// longer than 63 bytes or one holding NUL; the connect error when the session was
    /// lost and could not be opened again; the server's error. On error the channel is
    /// not listened to (call again); when the error was the session's end, the next `recv`
    /// reports the gap.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the channel may or may not be listened to on the current
    /// session, and is not on the next one: call `listen` again.
    pub async fn listen(&mut self, channel: &str) -> Result<(), Error> {
        let sql = format!("LISTEN {}", quote_channel(channel)?);
        self.run(&sql).await?;
        self.channels.insert(channel.to_owned());
        Ok(())
    }

    /// Stops listening to `channel`; nothing sent on it after this returns reaches
    /// [`recv`](Listener::recv). A channel not listened to is no error.
    ///
    /// # Errors
    /// As [`listen`](Listener::listen), but a session that ended is no error: the next one
    /// will not listen to the channel.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the channel is not listened to on the next session, and
    /// may still be on the current one.
    pub async fn unlisten(&mut self, channel: &str) -> Result<(), Error> {
        let sql = format!("UNLISTEN {}", quote_channel(channel)?);
        if !self.channels.remove(channel) {
            return Ok(());
        }
        match self.run(&sql).await {
            Err(e) if self.session.is_none() => {
                tracing::debug!(target: "pool_sql", error = %crate::error::Report(&e), "unlisten: the session had ended");
                Ok(())
            }
            r => r,
        }
    }

    /// The channels listened to, in byte order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(String::as_str)
    }

    /// The next notification on a channel listened to, or [`Event::Gap`] once a lost
    /// session has been replaced (see [`Listener`]). Waits as long as it takes.
    ///
    /// # Errors
    /// A failed attempt to open a new session after the last one ended
    /// ([`Error::is_connect`], or the server's error to a `LISTEN`). The listener stays
    /// usable: the next call tries again, after a backoff of 100 ms doubling up to 5 s
    /// (less a random part of up to half, so that listeners do not dial together).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped before it returns, no notification is lost (the next call
    /// returns it), the gap is still reported, and the backoff is kept.
    pub async fn recv(&mut self) -> Result<Event, Error> {
        loop {
            if let Some(gap) = self.gap.take() {
                return Ok(Event::Gap(gap));
            }
            if let Some(session) = &mut self.session {
                let dropped = session.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    return Ok(Event::Overflow(dropped));
                }
                match session.notes.recv().await {
                    Some(n) => return Ok(Event::Notification(n)),
                    None => self.lose(),
                }
            } else {
                self.reconnect().await?;
            }
        }
    }

    /// The listener as a [`Stream`] of what [`recv`](Listener::recv) returns; it never ends
    /// (an error is an item: the next one is another attempt).
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// use futures_util::StreamExt;
    /// let mut listener = db.listener().await?;
    /// listener.listen("jobs").await?;
    /// let mut events = std::pin::pin!(listener.into_stream());
    /// while let Some(event) = events.next().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Error>> + Send {
        futures_util::stream::unfold(self, |mut listener| async move {
            let event = listener.recv().await;
            Some((event, listener))
        })
    }

    /// Runs `sql` on the session, opening one first if the last ended.
    async fn run(&mut self, sql: &str) -> Result<(), Error> {
        if self.session.is_none() {
            self.reconnect().await?;
        }
        let Some(session) = &self.session else {
            unreachable!("reconnect leaves a session or fails")
        };
        let limit = self.connect_timeout;
        match tokio::time::timeout(limit, session.client.batch_execute(sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let closed = e.is_closed() || session.client.is_closed();
                let err = Error::statement(e, session.wire.exit_error());
                if closed {
                    self.lose();
                }
                Err(err)
            }
            // The session's state is unknown: a new one takes over (and reports a gap).
            Err(_) => {
                self.lose();
                Err(Error::new(Kind::QueryTimeout(limit)))
            }
        }
    }

    /// The session ended: drop it and remember when.
    fn lose(&mut self) {
        if let Some(session) = self.session.take() {
            let cause = session.wire.exit_error().map(Error::session_ended);
            tracing::debug!(target: "pool_sql", target_db = %self.target, "listener session ended");
            self.lost.get_or_insert((Instant::now(), cause));
        }
    }

    /// After the backoff, one attempt at a new session listening to every channel.
    async fn reconnect(&mut self) -> Result<(), Error> {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at).await;
        }
        self.attempts += 1;
        match self.open().await {
            Ok(session) => {
                if let Some((since, cause)) = self.lost.take() {
                    self.gap = Some(Gap {
                        down_for: since.elapsed(),
                        attempts: self.attempts,
                        cause,
                    });
                }
                self.session = Some(session);
                self.attempts = 0;
                self.retry_at = None;
                Ok(())
            }
            Err(e) => {
                let shift = self.attempts.saturating_sub(1).min(16);
                let wait = BACKOFF_START.saturating_mul(1 << shift).min(BACKOFF_MAX);
                // Half to all of it, so that listeners a restart cut off together do not
                // dial together.
                let wait = wait.mul_f64(0.5 + fastrand::f64() / 2.0);
                self.retry_at = Some(Instant::now() + wait);
                Err(e)
            }
        }
    }

    /// A new session that listens to every channel (each host and the `LISTEN`s under the
    /// connect timeout).
    async fn open(&self) -> Result<Session, Error> {
        let (queue, notes) = mpsc::channel(Listener::QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = NotifySink {
            queue,
            dropped: dropped.clone(),
        };
        let limit = self.connect_timeout;
        // Each host tried under the connect timeout, as the pool's sessions are.
        let c = connect::connect(&self.config, Some(limit), &self.tls, Some(&sink))
            .await
            .map_err(Error::connect)?;
        let sql: String = self
            .channels
            .iter()
            .map(|ch| format!("LISTEN {};", quote(ch)))
            .collect();
        if !sql.is_empty() {
            match tokio::time::timeout(limit, c.client.batch_execute(&sql)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::statement(e, c.wire.exit_error())),
                Err(_) => return Err(Error::new(Kind::QueryTimeout(limit))),
            }
        }
        Ok(Session {
            client: c.client,
            wire: c.wire,
            notes,
            dropped,
        })
    }
}

/// `channel` as a quoted identifier, checked first.
fn quote_channel(channel: &str) -> Result<String, Error> {
    let why = if channel.is_empty() {
        "is empty"
    } else if channel.len() > MAX_CHANNEL {
        "is longer than 63 bytes (PostgreSQL's limit for a name)"
    } else if channel.contains('\0') {
        "holds a NUL character"
    } else {
        return Ok(quote(channel));
    };
    Err(Error::config("channel", format!("name {why}")))
}

/// An identifier in double quotes, each `"` doubled: taken literally by the server.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Db {
    /// A [`Listener`] for LISTEN/NOTIFY, on a session of its own: not from the pool, it
    /// takes no slot of `max_open`. See [`Listener`].
    ///
    /// # Errors
    /// As [`Listener::connect`].
    ///
    /// # Cancel safety
    /// As [`Listener::connect`].
    pub async fn listener(&self) -> Result<Listener, Error> {
        Listener::connect(self).await
    }

    /// Sends a notification on `channel` with `payload` (`SELECT pg_notify($1, $2)` on a
    /// session of the pool). The channel is taken literally, as [`Listener::listen`] takes
    /// it; the server delivers it to every session listening there, once the statement's
    /// transaction commits (at once here). In a [`Tx`](crate::Tx), run
    /// `tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])`: it is sent at the
    /// commit, and not at all on a rollback.
    ///
    /// # Errors
    /// As [`Db::execute`]; the server refuses an empty channel, one longer than 63 bytes, and
    /// a payload of 8000 bytes or more.
    ///
    /// # Cancel safety
    /// As [`Db::execute`]: dropped, it may or may not have been sent.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), Error> {
        self.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_quoted_literally_and_checked() {
        assert_eq!(quote("jobs").as_str(), "\"jobs\"");
        assert_eq!(
            quote("a\"; DROP TABLE t; --").as_str(),
            "\"a\"\"; DROP TABLE t; --\""
        );
        assert!(quote_channel("").unwrap_err().is_config());
        assert_eq!(quote_channel("a\0b").unwrap_err().knob(), Some("channel"));
        assert!(quote_channel(&"x".repeat(64)).is_err());
        assert!(quote_channel(&"x".repeat(63)).is_ok());
    }
}

//! Leak detection ([`Config::leak_threshold`](crate::Config::leak_threshold), HikariCP's
//! `leakDetectionThreshold`): a guard checked out longer than the threshold is reported once,
//! while it is still out.
//!
//! # Implementation details
//! Off (the default), a pool has no [`LeakBook`]: a checkout future carries an empty
//! [`Track`] (its `Option` is `None`) and a guard an empty ticket, so the cost is a branch at
//! hand-out and at drop, and 16 bytes in each. No clock is read and nothing is spawned.
//!
//! On, the pool keeps a book of the guards out (a slab behind its own lock, never the
//! state's): a checkout reads the clock and inserts an entry (the connection's id, its key's
//! handle, the instant, the `get` call's `Location`, and a backtrace only with
//! [`LeakTrace::Backtrace`]); dropping or consuming the guard removes it. The slab keeps its
//! capacity, so neither allocates once it holds the most guards ever out at once.
//!
//! One watcher task per pool (a per-pool timer, not one per checkout) sleeps until the
//! earliest deadline (`checked out + threshold`) of the entries not yet reported, then scans
//! the book: it marks what is due as reported, counts it, and, outside the lock, logs it
//! and calls the hook. A scan costs O(guards out). The book is armed (the watcher has a
//! deadline) whenever an unreported entry exists; a checkout into an unarmed book arms it and
//! wakes the watcher. Entries are inserted with the clock read under the book's lock, so a
//! later entry never has an earlier deadline: the armed deadline is never later than any
//! entry's. The watcher holds the book by a `Weak` and only while it works: the book lives as
//! long as the pool or a guard of it does (a guard leaked past the pool's end is still
//! reported), and its drop wakes the watcher to exit.

use std::backtrace::Backtrace;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Guard;
use crate::hooks::{self, HeldTooLong, Hooks};
use crate::machine::Table;
use crate::shell::rt::{Mutex, Runtime};
use crate::{KeyedManager, LeakTrace};

/// The guards out of one pool with leak detection on, and when each was checked out.
pub(crate) struct LeakBook<H> {
    threshold: Duration,
    trace: LeakTrace,
    out: Mutex<Out<H>>,
    /// Guards that crossed the threshold (`Stats::held_too_long`).
    reported: AtomicU64,
    /// Wakes the watcher: the book was armed, or dropped.
    wake: Arc<Notify>,
}

struct Out<H> {
    guards: Slab<Entry<H>>,
    /// The watcher sleeps until a deadline; `false`: until it is woken.
    armed: bool,
}

struct Entry<H> {
    id: u64,
    handle: H,
    at: Instant,
    caller: &'static Location<'static>,
    backtrace: Option<Backtrace>,
    reported: bool,
}

/// A report, taken out of the book to be logged after its lock.
struct Due<H> {
    id: u64,
    handle: H,
    held: Duration,
    caller: &'static Location<'static>,
    backtrace: Option<Backtrace>,
}

impl<H: Clone + Send + Sync + 'static> LeakBook<H> {
    /// A book for a new pool, and its watcher (none where the runtime has no timers).
    pub fn start<M, T>(
        threshold: Duration,
        trace: LeakTrace,
        hooks: Option<Arc<dyn Hooks<M::Key>>>,
    ) -> Arc<Self>
    where
        M: KeyedManager,
        T: Table<M, Handle = H>,
    {
        let wake = Arc::new(Notify::new());
        let book = Arc::new(LeakBook {
            threshold,
            trace,
            out: Mutex::new(Out {
                guards: Slab::new(),
                armed: false,
            }),
            reported: AtomicU64::new(0),
            wake: wake.clone(),
        });
        if let Some(rt) = Runtime::current().filter(Runtime::has_timers) {
            rt.spawn(watch::<M, T>(Arc::downgrade(&book), wake, hooks));
        }
        book
    }

    /// How many guards crossed the threshold so far.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    /// Enters a guard handed out now.
    fn check_out(
        self: &Arc<Self>,
        id: u64,
        handle: &H,
        caller: &'static Location<'static>,
    ) -> LeakTicket<H> {
        let backtrace = (self.trace == LeakTrace::Backtrace).then(Backtrace::force_capture);
        let handle = handle.clone();
        let mut out = self.out.lock();
        let slot = out.guards.insert(Entry {
            id,
            handle,
            at: Instant::now(),
            caller,
            backtrace,
            reported: false,
        });
        let arm = !out.armed;
        out.armed = true;
        drop(out);
        if arm {
            self.wake.notify_one();
        }
        LeakTicket {
            book: self.clone(),
            slot,
        }
    }

    /// The watcher's turn: reports what is due, returns the next deadline.
    fn report_due<M, T>(&self, hooks: Option<&dyn Hooks<M::Key>>) -> Option<Instant>
    where
        M: KeyedManager,
        T: Table<M, Handle = H>,
    {
        let mut due = Vec::new();
        let next = {
            let mut out = self.out.lock();
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for (_, e) in out.guards.iter_mut().filter(|(_, e)| !e.reported) {
                let deadline = e.at + self.threshold;
                if deadline <= now {
                    e.reported = true;
                    due.push(Due {
                        id: e.id,
                        handle: e.handle.clone(),
                        held: now - e.at,
                        caller: e.caller,
                        backtrace: e.backtrace.take(),
                    });
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
            out.armed = next.is_some();
            next
        };
        self.reported.fetch_add(due.len() as u64, Ordering::Relaxed);
        for d in due {
            tracing::warn!(
                target: "pool_core",
                conn = d.id,
                held = ?d.held,
                threshold = ?self.threshold,
                caller = %d.caller,
                backtrace = d.backtrace.as_ref().map(tracing::field::display),
                "a connection has been checked out longer than leak_threshold: its guard may have leaked",
            );
            if let Some(h) = hooks {
                let info = HeldTooLong {
                    id: d.id,
                    held: d.held,
                    caller: d.caller,
                    backtrace: d.backtrace.as_ref(),
                };
                hooks::call("held_too_long", || {
                    h.held_too_long(T::key_of(&d.handle), &info)
                });
            }
        }
        next
    }
}

impl<H> Drop for LeakBook<H> {
    fn drop(&mut self) {
        // The watcher exits at its next turn: the `Weak` no longer upgrades.
        self.wake.notify_one();
    }
}

/// The per-pool watcher: quinn's `drive_timer` over the book.
async fn watch<M, T>(
    book: Weak<LeakBook<T::Handle>>,
    wake: Arc<Notify>,
    hooks: Option<Arc<dyn Hooks<M::Key>>>,
) where
    M: KeyedManager,
    T: Table<M>,
{
    loop {
        let next = {
            let Some(book) = book.upgrade() else { return };
            book.report_due::<M, T>(hooks.as_deref())
        };
        match next {
            Some(at) => {
                let _ = tokio::time::timeout_at(at, wake.notified()).await;
            }
            None => wake.notified().await,
        }
    }
}

/// A guard's entry in the book; dropped with the guard, it takes the entry out.
pub(crate) struct LeakTicket<H> {
    book: Arc<LeakBook<H>>,
    slot: usize,
}

impl<H> Drop for LeakTicket<H> {
    fn drop(&mut self) {
        // The lock is released at the end of this statement; the entry (its handle, its
        // backtrace) drops after it.
        let e = self.book.out.lock().guards.remove(self.slot);
        if e.reported {
            tracing::info!(
                target: "pool_core",
                conn = e.id,
                held = ?e.at.elapsed(),
                caller = %e.caller,
                "a connection reported as held longer than leak_threshold came back",
            );
        }
    }
}

/// What a checkout future keeps for leak detection: the pool's book and where `get` was
/// called; empty when leak detection is off.
pub(crate) struct Track<'a, H>(Option<(&'a Arc<LeakBook<H>>, &'static Location<'static>)>);

impl<'a, H: Clone + Send + Sync + 'static> Track<'a, H> {
    /// Called from a `#[track_caller]` checkout: remembers its caller when `book` is set.
    #[inline]
    #[track_caller]
    pub fn new(book: &'a Option<Arc<LeakBook<H>>>) -> Self {
        // Outside the closure: `Location::caller` inside one would name the closure.
        match book {
            Some(b) => Track(Some((b, Location::caller()))),
            None => Track(None),
        }
    }

    /// Reports `caller` instead of the `get` call's own line (see `Get::called_from`).
    pub fn called_from(&mut self, caller: &'static Location<'static>) {
        if let Some((_, at)) = &mut self.0 {
            *at = caller;
        }
    }

    /// Enters a guard just handed out in the book.
    #[inline]
    pub fn start<M, T>(&self, guard: &mut Guard<'_, M, T>)
    where
        M: KeyedManager,
        T: Table<M, Handle = H>,
    {
        if let Some((book, caller)) = self.0 {
            guard.leak = Some(book.check_out(guard.conn().id, &guard.handle, caller));
        }
    }
}

impl<H> std::fmt::Debug for Track<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some((_, caller)) => write!(f, "{caller}"),
            None => f.write_str("off"),
        }
    }
}

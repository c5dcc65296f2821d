//! What a step gives the shell back: [`Effects`], to run once the lock is released, and the
//! result of a checkout or of polling a waiter.

use std::task::Waker;

use super::KeyId;
use super::idle::Conn;
use super::waiters::WaiterId;
use crate::Error;
use crate::stats::CloseReason;

/// How a checkout was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Idle,
    Release,
    Created,
}

/// The result of a checkout attempt.
pub(crate) enum Acquired<C> {
    Ready(Conn<C>),
    Wait(WaiterId),
}

/// The result of polling a waiter.
pub(crate) enum WaitPoll<C> {
    /// Still queued; the replaced waker, to drop after the lock.
    Pending(Option<Waker>),
    Ready(Result<(Conn<C>, Via), Error>),
}

/// What the one-step return (`push_fast`) did with a connection.
#[must_use]
pub(crate) enum Pushed {
    /// It went to the idle list.
    Idle,
    /// It went to the head waiter: wake this waker once the lock is released.
    HandedOff(Option<Waker>),
    /// Declined: the connection is still in the caller's slot, for the general return path.
    Declined,
}

/// What the shell must do once the lock is released. Small on purpose: the common case (a
/// hand-off) is one waker; everything else lives in a box allocated only when needed.
#[must_use]
pub(crate) struct Effects<C> {
    pub wake: Option<Waker>,
    pub rare: Option<Box<Rare<C>>>,
}

/// The less common effects.
pub(crate) struct Rare<C> {
    pub wakes: Vec<Waker>,
    /// Creates to spawn, each for a key and tagged with the waiter that asked (`None`: refill
    /// or probe).
    pub creates: Vec<(KeyId, Option<WaiterId>)>,
    pub closes: Vec<(KeyId, Conn<C>, CloseReason)>,
    pub notify_reaper: bool,
    /// The pool is closed and every connection is gone.
    pub drained: bool,
    /// Wakers of waiters that left: dropped with these effects, after the lock (a waker's
    /// drop may run any code, the pool's own included).
    pub stale: Vec<Waker>,
}

impl<C> Default for Effects<C> {
    fn default() -> Self {
        Effects {
            wake: None,
            rare: None,
        }
    }
}

impl<C> Effects<C> {
    pub fn rare(&mut self) -> &mut Rare<C> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                wakes: Vec::new(),
                creates: Vec::new(),
                closes: Vec::new(),
                notify_reaper: false,
                drained: false,
                stale: Vec::new(),
            })
        })
    }

    /// A waker to drop once the lock is released.
    pub(super) fn stale(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.rare().stale.push(w);
        }
    }

    pub(super) fn wake(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            match self.wake {
                None => self.wake = Some(w),
                Some(_) => self.rare().wakes.push(w),
            }
        }
    }

    #[cfg(test)]
    pub fn take_creates(&mut self) -> Vec<Option<WaiterId>> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.creates))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, tag)| tag)
            .collect()
    }

    #[cfg(test)]
    pub fn take_closes(&mut self) -> Vec<(Conn<C>, CloseReason)> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.closes))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, c, r)| (c, r))
            .collect()
    }

    #[cfg(test)]
    pub fn flag(&self, f: impl Fn(&Rare<C>) -> bool) -> bool {
        self.rare.as_ref().is_some_and(|r| f(r))
    }
}

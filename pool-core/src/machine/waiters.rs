//! The FIFO queue of waiting checkouts.
//!
//! # Implementation details
//! Entries live in a slab; the queue holds their ids in arrival order. A waiter that leaves
//! (cancelled, timed out, failed) is removed from the slab at once and its queue id becomes
//! stale; stale ids are skipped when served and compacted away when they outnumber live ones,
//! so every operation is O(1) amortised whatever the number of waiters. A sequence number in
//! each id makes a reused slab slot unmistakable.
//!
//! A second queue, `uncreated`, lists the queued waiters no create was started for, in the
//! same order, so that creates go to the oldest first. A waiter queued while the pool is full
//! ([`push_full`](Waiters::push_full), the contended path) is not put there at once: no
//! create can start for it until a slot frees, and most are served by a release before then.
//! [`sync`](Waiters::sync) adds the ones still waiting, in order, before a create is tagged
//! from that queue or a waiter is pushed to its back (trimming its stale front and compacting
//! it need no sync); waiters at the back of `queue` are in `seq` order, and every
//! one with `seq >= synced` was queued since the last sync, so each is looked at once.

use std::collections::VecDeque;
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

use super::Now;
use super::effects::{Effects, Via, WaitPoll};
use super::idle::Conn;
use super::state::State;
use crate::Error;

/// Names one waiter; stale ids are recognised, never confused with a newer waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterId {
    idx: usize,
    seq: u64,
    /// A caller waiting for its own create (Go's binding), outside the hand-off queue.
    pub own: bool,
}

/// When a waiter started waiting: by the precise clock when its checkout has a deadline
/// (whose computation read that clock already), else by the coarse one ([`Now::coarse`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Since {
    Precise(Instant),
    Coarse(Duration),
}

impl Since {
    /// The start of a wait: `started` when the checkout read the precise clock for its
    /// deadline, else a coarse reading.
    pub fn of(started: Option<Instant>, now: &Now) -> Since {
        match started {
            Some(t) => Since::Precise(t),
            None => Since::Coarse(now.coarse()),
        }
    }

    /// How long since then, by the clock it was read with.
    pub fn elapsed(self, now: &mut Now) -> Duration {
        match self {
            Since::Precise(t) => now.get().saturating_duration_since(t),
            Since::Coarse(c) => now.coarse().saturating_sub(c),
        }
    }
}

/// Where a waiter stands.
pub(crate) enum Slot<T> {
    /// Queued; the waker of its last poll.
    Waiting(Option<Waker>),
    /// Served, not yet taken by its future.
    Served(T),
    /// Failed (pool closed, create failed, breaker open), not yet taken.
    Failed(Error),
}

pub(crate) struct Entry<T> {
    seq: u64,
    /// When it started waiting.
    pub since: Since,
    /// Whether it waits for capacity (database/sql's `WaitCount`).
    pub counted: bool,
    /// A create was started on its behalf (each waiter gets at most one).
    create: bool,
    /// In `uncreated` (or was): false for a waiter `push_full` queued and no `sync` saw yet.
    tracked: bool,
    /// Waits for its own create, outside the queue (see [`WaiterId::own`]).
    own: bool,
    pub slot: Slot<T>,
}

/// The contended paths touch the counts, the queue and the slab, in this order (`repr(C)`;
/// see `State`'s layout).
#[repr(C)]
pub(crate) struct Waiters<T> {
    /// Queued entries in `Slot::Waiting`.
    waiting: usize,
    /// Of those, the ones no create was started for.
    waiting_uncreated: usize,
    next_seq: u64,
    /// The hand-off queue, in arrival order.
    queue: VecDeque<WaiterId>,
    slab: Slab<Entry<T>>,
    /// Queued waiters no create was started for yet, in arrival order (stale ids skipped).
    uncreated: VecDeque<WaiterId>,
    /// Callers waiting for their own create (outside the queue), in `Slot::Waiting`.
    own: usize,
    /// Every waiter queued at the back with a lower `seq` is in `uncreated`, or has left.
    synced: u64,
}

impl<T> Waiters<T> {
    pub fn new() -> Self {
        Waiters {
            slab: Slab::new(),
            queue: VecDeque::new(),
            uncreated: VecDeque::new(),
            waiting: 0,
            waiting_uncreated: 0,
            own: 0,
            next_seq: 0,
            synced: 0,
        }
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        self.waiting
    }

    /// Callers waiting for their own create (each has exactly one in flight).
    pub fn own(&self) -> usize {
        self.own
    }

    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// No entry at all: none waiting, none served or failed and not yet taken.
    pub fn is_vacant(&self) -> bool {
        self.slab.is_empty()
    }

    /// Queues a waiter at the back, or at the front for one whose connection turned out broken
    /// (it had reached the head already).
    pub fn push(
        &mut self,
        since: Since,
        counted: bool,
        front: bool,
        waker: Option<&Waker>,
    ) -> WaiterId {
        // `uncreated` stays in arrival order: the waiters `push_full` queued go first.
        self.sync();
        let id = self.insert(since, counted, false, waker);
        if front {
            self.queue.push_front(id);
            self.uncreated.push_front(id);
        } else {
            self.queue.push_back(id);
            self.uncreated.push_back(id);
        }
        self.waiting += 1;
        self.waiting_uncreated += 1;
        id
    }

    /// Queues a waiter at the back while the pool is full (no room for a create): counted,
    /// and left out of `uncreated` until a [`sync`](Waiters::sync) needs it there.
    #[inline]
    pub fn push_full(&mut self, since: Since, waker: &Waker) -> WaiterId {
        let id = self.insert(since, true, false, Some(waker));
        self.slab[id.idx].tracked = false;
        self.queue.push_back(id);
        self.waiting += 1;
        self.waiting_uncreated += 1;
        id
    }

    /// Puts the waiters `push_full` queued since the last sync, and still waiting, at the
    /// back of `uncreated`, in arrival order.
    fn sync(&mut self) {
        if self.synced == self.next_seq {
            return;
        }
        let synced = self.synced;
        let mut fresh = Vec::new();
        for &id in self.queue.iter().rev().take_while(|id| id.seq >= synced) {
            if Self::waiting_with(&self.slab, id, Some(false)) && !self.slab[id.idx].tracked {
                self.slab[id.idx].tracked = true;
                fresh.push(id);
            }
        }
        // Found newest first.
        self.uncreated.extend(fresh.into_iter().rev());
        self.synced = self.next_seq;
    }

    /// A caller that waits for the create it starts (Go's binding): not in the hand-off
    /// queue; only [`serve`](Waiters::serve) or [`fail`](Waiters::fail) reach it.
    pub fn push_own(&mut self, since: Since, waker: Option<&Waker>) -> WaiterId {
        let id = self.insert(since, false, true, waker);
        self.own += 1;
        id
    }

    fn insert(
        &mut self,
        since: Since,
        counted: bool,
        own: bool,
        waker: Option<&Waker>,
    ) -> WaiterId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let idx = self.slab.insert(Entry {
            seq,
            since,
            counted,
            create: own,
            own,
            tracked: true,
            slot: Slot::Waiting(waker.cloned()),
        });
        WaiterId { idx, seq, own }
    }

    /// Marks the oldest queued waiter with no create as having one, and returns it.
    pub fn tag_oldest_uncreated(&mut self) -> Option<WaiterId> {
        self.sync();
        while let Some(id) = self.uncreated.pop_front() {
            if Self::waiting_with(&self.slab, id, Some(false)) {
                self.slab[id.idx].create = true;
                self.waiting_uncreated -= 1;
                return Some(id);
            }
        }
        None
    }

    /// The oldest queued waiter.
    pub fn oldest_waiting(&self) -> Option<WaiterId> {
        self.queue
            .iter()
            .copied()
            .find(|&id| Self::is_waiting(&self.slab, id))
    }

    /// The oldest queued waiter that a create was started for.
    pub fn oldest_created(&self) -> Option<WaiterId> {
        self.queue
            .iter()
            .copied()
            .find(|&id| Self::waiting_with(&self.slab, id, Some(true)))
    }

    /// Bookkeeping for an entry that stops waiting.
    fn left(&mut self, id: WaiterId, create: bool, tracked: bool) {
        if id.own {
            self.own -= 1;
        } else {
            self.waiting -= 1;
            if !create {
                self.waiting_uncreated -= 1;
            }
            if !create && tracked {
                // Waiters mostly leave in arrival order (served from the head): drop the
                // stale ids at the front as they appear, so the queue of waiters without a
                // create does not grow with every wait that a release served.
                while let Some(&front) = self.uncreated.front() {
                    if Self::waiting_with(&self.slab, front, Some(false)) {
                        break;
                    }
                    self.uncreated.pop_front();
                }
            }
        }
    }

    fn is_waiting(slab: &Slab<Entry<T>>, id: WaiterId) -> bool {
        Self::waiting_with(slab, id, None)
    }

    /// `id` is still waiting, and (when `create` is given) a create was or was not started
    /// for it.
    fn waiting_with(slab: &Slab<Entry<T>>, id: WaiterId, create: Option<bool>) -> bool {
        matches!(
            slab.get(id.idx),
            Some(e) if e.seq == id.seq
                && matches!(e.slot, Slot::Waiting(_))
                && create.is_none_or(|c| e.create == c)
        )
    }

    /// Serves the head waiter with `value` and returns its waker, or gives `value` back when
    /// nobody waits.
    pub fn serve_head(&mut self, value: T) -> Result<Option<Waker>, T> {
        while let Some(id) = self.queue.pop_front() {
            if !Self::is_waiting(&self.slab, id) {
                continue;
            }
            return self.serve(id, value);
        }
        Err(value)
    }

    /// Serves one waiting waiter with `value` and returns its waker, or gives `value` back
    /// when it is not waiting.
    pub fn serve(&mut self, id: WaiterId, value: T) -> Result<Option<Waker>, T> {
        if !Self::is_waiting(&self.slab, id) {
            return Err(value);
        }
        let entry = &mut self.slab[id.idx];
        let (create, tracked) = (entry.create, entry.tracked);
        let Slot::Waiting(waker) = std::mem::replace(&mut entry.slot, Slot::Served(value)) else {
            unreachable!("is_waiting checked the slot");
        };
        self.left(id, create, tracked);
        Ok(waker)
    }

    /// Fails one waiting waiter; returns `Some(waker)` when it was waiting.
    pub fn fail(&mut self, id: WaiterId, err: Error) -> Option<Option<Waker>> {
        if !Self::is_waiting(&self.slab, id) {
            return None;
        }
        let entry = &mut self.slab[id.idx];
        let (create, tracked) = (entry.create, entry.tracked);
        let Slot::Waiting(waker) = std::mem::replace(&mut entry.slot, Slot::Failed(err)) else {
            unreachable!("is_waiting checked the slot");
        };
        self.left(id, create, tracked);
        self.compact();
        Some(waker)
    }

    /// Fails every waiting waiter, queued or waiting for its own create (the pool closed).
    pub fn fail_all(&mut self, err: impl Fn() -> Error, wakers: &mut Vec<Waker>) {
        let ids: Vec<WaiterId> = self
            .slab
            .iter()
            .filter(|(_, e)| matches!(e.slot, Slot::Waiting(_)))
            .map(|(idx, e)| WaiterId {
                idx,
                seq: e.seq,
                own: e.own,
            })
            .collect();
        for id in ids {
            if let Some(Some(w)) = self.fail(id, err()) {
                wakers.push(w);
            }
        }
        self.queue.clear();
        self.uncreated.clear();
    }

    /// Fails every queued waiter a create was started for (nothing open can serve them any
    /// more), oldest first.
    pub fn fail_created(&mut self, err: impl Fn() -> Error, wakers: &mut Vec<Waker>) {
        // One pass over the queue, then the failures (each `fail` leaves the queue as it is).
        let created: Vec<WaiterId> = self
            .queue
            .iter()
            .copied()
            .filter(|&id| Self::waiting_with(&self.slab, id, Some(true)))
            .collect();
        for id in created {
            if let Some(Some(w)) = self.fail(id, err()) {
                wakers.push(w);
            }
        }
    }

    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut Entry<T>> {
        self.slab.get_mut(id.idx).filter(|e| e.seq == id.seq)
    }

    /// Takes a waiter out, whatever its slot.
    pub fn remove(&mut self, id: WaiterId) -> Option<Entry<T>> {
        self.get_mut(id)?;
        let entry = self.slab.remove(id.idx);
        if matches!(entry.slot, Slot::Waiting(_)) {
            self.left(id, entry.create, entry.tracked);
            self.compact();
        }
        Some(entry)
    }

    /// Drops stale queue ids once they outnumber live ones.
    fn compact(&mut self) {
        if self.queue.len() > 64 && self.queue.len() > 2 * self.waiting {
            let slab = &self.slab;
            self.queue.retain(|&id| Self::is_waiting(slab, id));
        }
        if self.uncreated.len() > 64 && self.uncreated.len() > 2 * self.waiting_uncreated {
            let slab = &self.slab;
            self.uncreated
                .retain(|&id| Self::waiting_with(slab, id, Some(false)));
        }
    }
}

/// A waiter's fate, as the state decides it: served, timed out or cancelled.
impl<C> State<C> {
    fn finish_wait(
        &mut self,
        since: Since,
        counted: bool,
        now: &mut Now,
        slot: Slot<(Conn<C>, Via)>,
    ) -> Result<(Conn<C>, Via), Error> {
        if counted {
            self.stats.wait_duration += since.elapsed(now);
        }
        match slot {
            Slot::Served((conn, via)) => {
                match via {
                    Via::Release => self.stats.handoffs += 1,
                    Via::Idle => self.stats.hits += 1,
                    Via::Created => {}
                }
                Ok((conn, via))
            }
            Slot::Failed(err) => Err(err),
            Slot::Waiting(_) => {
                unreachable!("finish_wait is only called on a served or failed slot")
            }
        }
    }

    /// Polls a waiter: takes its connection or error, or records the waker.
    pub fn poll_waiter(&mut self, id: WaiterId, waker: &Waker, now: &mut Now) -> WaitPoll<C> {
        let Some(entry) = self.waiters.get_mut(id) else {
            return WaitPoll::Ready(Err(Error::closed()));
        };
        if let Slot::Waiting(w) = &mut entry.slot {
            if w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                return WaitPoll::Pending(None);
            }
            return WaitPoll::Pending(w.replace(waker.clone()));
        }
        let entry = self.waiters.remove(id).expect("entry was just found");
        WaitPoll::Ready(self.finish_wait(entry.since, entry.counted, now, entry.slot))
    }

    /// The waiter's deadline passed: a connection delivered meanwhile is still taken;
    /// otherwise it leaves the queue with a timeout error (its waker leaves in `fx`).
    pub fn timeout_waiter(
        &mut self,
        id: WaiterId,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Result<(Conn<C>, Via), Error> {
        let Some(entry) = self.waiters.remove(id) else {
            return Err(self.timeout_error());
        };
        if let Slot::Waiting(waker) = entry.slot {
            fx.stale(waker);
            if entry.counted {
                self.stats.wait_duration += entry.since.elapsed(now);
            }
            self.stats.timeouts += 1;
            return Err(self.timeout_error());
        }
        self.finish_wait(entry.since, entry.counted, now, entry.slot)
    }

    /// The waiter's future was dropped: it leaves the queue (its waker leaves in `fx`), and a
    /// connection already handed to it moves on to the next waiter or to idle.
    pub fn cancel_waiter(&mut self, id: WaiterId, now: &mut Now, fx: &mut Effects<C>) {
        let Some(entry) = self.waiters.remove(id) else {
            return;
        };
        if entry.counted {
            self.stats.wait_duration += entry.since.elapsed(now);
        }
        match entry.slot {
            Slot::Served((conn, via)) => {
                self.put(conn, via, now, fx);
            }
            Slot::Waiting(waker) => fx.stale(waker),
            Slot::Failed(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waiters served one after another (a release for each, no create) leave nothing behind
    /// in either queue.
    #[test]
    fn queues_stay_small_when_every_waiter_is_served_by_a_release() {
        let mut w: Waiters<u32> = Waiters::new();
        let t = Since::Coarse(Duration::ZERO);
        for i in 0..10_000u32 {
            let id = w.push(t, true, false, None);
            assert!(w.serve_head(i).is_ok());
            assert!(w.remove(id).is_some());
        }
        assert_eq!((w.len(), w.waiting_uncreated), (0, 0));
        assert!(
            w.queue.len() <= 1 && w.uncreated.len() <= 1,
            "{} {}",
            w.queue.len(),
            w.uncreated.len()
        );
    }

    /// Waiters queued while the pool was full get creates in arrival order with the others,
    /// once a slot frees: `sync` puts them in `uncreated` before a later waiter and before a
    /// tag; one that left meanwhile is skipped; served ones never enter it.
    #[test]
    fn waiters_queued_while_full_get_creates_in_arrival_order() {
        let mut w: Waiters<u32> = Waiters::new();
        let t = Since::Coarse(Duration::ZERO);
        let noop = Waker::noop();
        for i in 0..100 {
            w.push_full(t, noop);
            assert!(w.serve_head(i).is_ok());
        }
        assert!(
            w.uncreated.is_empty(),
            "served waiters never enter `uncreated`"
        );
        let a = w.push_full(t, noop);
        let gone = w.push_full(t, noop);
        let b = w.push_full(t, noop);
        assert!(w.remove(gone).is_some());
        let c = w.push(t, true, false, None);
        let d = w.push_full(t, noop);
        let tags: Vec<_> = std::iter::from_fn(|| w.tag_oldest_uncreated()).collect();
        assert_eq!(tags, [a, b, c, d]);
        assert_eq!(w.waiting_uncreated, 0);
    }
}

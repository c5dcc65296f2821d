//! The FIFO queue of waiting checkouts.
//!
//! # Implementation details
//! Entries live in a slab; the queue holds their ids in arrival order. A waiter that leaves
//! (cancelled, timed out, failed) is removed from the slab at once and its queue id becomes
//! stale; stale ids are skipped when served and compacted away when they outnumber live ones,
//! so every operation is O(1) amortised whatever the number of waiters. A sequence number in
//! each id makes a reused slab slot unmistakable.

use std::collections::VecDeque;
use std::task::Waker;

use slab::Slab;
use std::time::Duration;

use crate::Error;

/// Names one waiter; stale ids are recognised, never confused with a newer waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaiterId {
    idx: usize,
    seq: u64,
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
    /// When it started waiting (`clock::coarse_now`).
    pub since: Duration,
    /// Whether it waits for capacity (database/sql's `WaitCount`).
    pub counted: bool,
    pub slot: Slot<T>,
}

pub(crate) struct Waiters<T> {
    slab: Slab<Entry<T>>,
    queue: VecDeque<WaiterId>,
    /// Entries in `Slot::Waiting`.
    waiting: usize,
    next_seq: u64,
}

impl<T> Waiters<T> {
    pub fn new() -> Self {
        Waiters {
            slab: Slab::new(),
            queue: VecDeque::new(),
            waiting: 0,
            next_seq: 0,
        }
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        self.waiting
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
        since: Duration,
        counted: bool,
        front: bool,
        waker: Option<&Waker>,
    ) -> WaiterId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let idx = self.slab.insert(Entry {
            seq,
            since,
            counted,
            slot: Slot::Waiting(waker.cloned()),
        });
        let id = WaiterId { idx, seq };
        if front {
            self.queue.push_front(id);
        } else {
            self.queue.push_back(id);
        }
        self.waiting += 1;
        id
    }

    fn is_waiting(slab: &Slab<Entry<T>>, id: WaiterId) -> bool {
        matches!(slab.get(id.idx), Some(e) if e.seq == id.seq && matches!(e.slot, Slot::Waiting(_)))
    }

    /// Serves the head waiter with `value` and returns its waker, or gives `value` back when
    /// nobody waits.
    pub fn serve_head(&mut self, value: T) -> Result<Option<Waker>, T> {
        while let Some(id) = self.queue.pop_front() {
            if !Self::is_waiting(&self.slab, id) {
                continue;
            }
            let entry = &mut self.slab[id.idx];
            let Slot::Waiting(waker) = std::mem::replace(&mut entry.slot, Slot::Served(value))
            else {
                unreachable!("is_waiting checked the slot");
            };
            self.waiting -= 1;
            return Ok(waker);
        }
        Err(value)
    }

    /// Fails one waiting waiter; returns `Some(waker)` when it was waiting.
    pub fn fail(&mut self, id: WaiterId, err: Error) -> Option<Option<Waker>> {
        if !Self::is_waiting(&self.slab, id) {
            return None;
        }
        let Slot::Waiting(waker) =
            std::mem::replace(&mut self.slab[id.idx].slot, Slot::Failed(err))
        else {
            unreachable!("is_waiting checked the slot");
        };
        self.waiting -= 1;
        self.compact();
        Some(waker)
    }

    /// Fails every waiting waiter (the pool closed).
    pub fn fail_all(&mut self, err: impl Fn() -> Error, wakers: &mut Vec<Waker>) {
        while let Some(id) = self.queue.pop_front() {
            if let Some(Some(w)) = self.fail(id, err()) {
                wakers.push(w);
            }
        }
    }

    /// The most recent waiter still waiting.
    pub fn newest(&mut self) -> Option<WaiterId> {
        while let Some(&id) = self.queue.back() {
            if Self::is_waiting(&self.slab, id) {
                return Some(id);
            }
            self.queue.pop_back();
        }
        None
    }

    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut Entry<T>> {
        self.slab.get_mut(id.idx).filter(|e| e.seq == id.seq)
    }

    /// Takes a waiter out, whatever its slot.
    pub fn remove(&mut self, id: WaiterId) -> Option<Entry<T>> {
        self.get_mut(id)?;
        let entry = self.slab.remove(id.idx);
        if matches!(entry.slot, Slot::Waiting(_)) {
            self.waiting -= 1;
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
    }
}

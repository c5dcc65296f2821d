//! The keyed pool's table: one [`State`] per key behind the pool's one lock, plus what spans
//! keys.
//!
//! # Invariants
//! - Each key's state enforces its own limits (`max_open`, `max_idle`, waiters, grace)
//!   exactly as a plain pool; a waiter of one key can only ever be served by that key's
//!   state, so it never gets another key's connection.
//! - `idle` and `open` are the sums over keys. `lru` lists (when it went idle, key) for every
//!   idle connection in the order they went idle, plus stale entries of connections taken
//!   since: an entry is live while its key's least recently idled connection went idle at
//!   that time, and stale ones are skipped at the front, or dropped by a rebuild once they
//!   outnumber the live ones. So the common steps cost a push, and the oldest idle
//!   connection of any key is the first live entry. Entries carry the stamp the key's state
//!   keeps (read back after the push), so the liveness test compares like with like.
//!   `timers` holds each key's armed deadline (see `timers.rs`: never late, maybe early).
//! - The global `max_idle` (Go's `MaxIdleConns`) is a ceiling at every instant, grace or
//!   not: after every step the least recently idled connection of any key is closed while
//!   the total is above it (`CloseReason::MaxIdle`). Grace keeps a key's surplus (idle above
//!   its own `max_idle`) only within the global cap: otherwise a client fed user-supplied
//!   hosts could hold an idle socket per host for the whole grace period.
//! - A key whose state is vacant (no connection, no waiter, no breaker retry pending) is
//!   forgotten at once, its counters folded into `retired`: memory follows the keys in use,
//!   not every key ever seen.
//!
//! Every step on a key goes through [`Table::with`], which settles these after it.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use super::effects::{Effects, Pushed};
use super::idle::Conn;
use super::state::State;
use super::table::Table;
use super::{KeyId, Now};
use crate::{CloseReason, Error, KeyedManager, Stats};

/// A keyed pool's handle of a key: the key (shared with the guards) and where its state
/// lives.
pub(crate) struct KeyHandle<K> {
    pub key: Arc<K>,
    pub id: KeyId,
}

impl<K> Clone for KeyHandle<K> {
    fn clone(&self) -> Self {
        KeyHandle {
            key: self.key.clone(),
            id: self.id,
        }
    }
}

struct Entry<K, C> {
    key: Arc<K>,
    generation: u32,
    state: State<C>,
    /// This key's entry in `timers`.
    timer: Option<Instant>,
}

pub(crate) struct KeyTable<K, C> {
    /// Keys inline (no pointer to chase on lookup); the entry holds the shared `Arc`.
    index: HashMap<K, u32>,
    keys: Slab<Entry<K, C>>,
    next_generation: u32,
    /// The knobs every new key starts with; runtime changes apply to it too.
    template: State<C>,
    /// Global idle cap (`MaxIdleConns`).
    max_idle: usize,
    idle: usize,
    open: usize,
    /// The most open across all keys at once.
    peak_open: usize,
    lru: VecDeque<(Instant, KeyId)>,
    timers: BTreeSet<(Instant, u32)>,
    /// Counters of forgotten keys.
    retired: Stats,
    closed: bool,
}

impl<K: std::hash::Hash + Eq + Clone, C> KeyTable<K, C> {
    pub fn new(template: State<C>, max_idle: usize) -> Self {
        KeyTable {
            index: HashMap::new(),
            keys: Slab::new(),
            next_generation: 0,
            template,
            max_idle,
            idle: 0,
            open: 0,
            peak_open: 0,
            lru: VecDeque::new(),
            timers: BTreeSet::new(),
            retired: Stats::default(),
            closed: false,
        }
    }

    fn id(&self, idx: u32) -> Option<KeyId> {
        self.keys.get(idx as usize).map(|e| KeyId {
            idx,
            generation: e.generation,
        })
    }

    fn ids(&self) -> Vec<KeyId> {
        self.keys
            .iter()
            .map(|(idx, e)| KeyId {
                idx: idx as u32,
                generation: e.generation,
            })
            .collect()
    }

    fn entry(&mut self, key: KeyId) -> &mut Entry<K, C> {
        self.keys
            .get_mut(key.idx as usize)
            .filter(|e| e.generation == key.generation)
            .expect("a key with a connection, create, close or waiter is never forgotten")
    }

    /// Finds or makes the state of `key`.
    pub fn enter_key(&mut self, key: &K) -> Result<(KeyId, Arc<K>), Error> {
        if self.closed {
            return Err(Error::closed());
        }
        if let Some(&idx) = self.index.get(key) {
            let e = &self.keys[idx as usize];
            let id = KeyId {
                idx,
                generation: e.generation,
            };
            return Ok((id, e.key.clone()));
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = self.keys.vacant_entry();
        let idx = u32::try_from(slot.key()).expect("fewer than 2^32 keys in use");
        let id = KeyId { idx, generation };
        let key = Arc::new(key.clone());
        slot.insert(Entry {
            key: key.clone(),
            generation,
            state: self.template.new_like(id),
            timer: None,
        });
        self.index.insert(K::clone(&key), idx);
        Ok((id, key))
    }

    /// The common checkout in one step (see `State::pop_fast`): an idle connection of `key`
    /// when nobody of that key waits.
    #[inline]
    pub fn pop_fast<Q>(&mut self, key: &Q) -> Option<(Conn<C>, KeyHandle<K>)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let &idx = self.index.get(key)?;
        let e = &mut self.keys[idx as usize];
        let conn = e.state.pop_fast()?;
        self.idle -= 1;
        let handle = KeyHandle {
            key: e.key.clone(),
            id: KeyId {
                idx,
                generation: e.generation,
            },
        };
        Some((conn, handle))
    }

    /// Runs `f` on a live key's state, then settles the key and the global idle cap.
    pub fn with_key<R>(
        &mut self,
        key: KeyId,
        now: &mut Now,
        fx: &mut Effects<C>,
        f: impl FnOnce(&mut State<C>, &mut Now, &mut Effects<C>) -> R,
    ) -> R {
        let r = self.step(key, now, fx, f);
        self.enforce_idle_cap(now, fx);
        r
    }

    /// Runs `f` on one key and settles that key's entries (not the global cap).
    fn step<R>(
        &mut self,
        key: KeyId,
        now: &mut Now,
        fx: &mut Effects<C>,
        f: impl FnOnce(&mut State<C>, &mut Now, &mut Effects<C>) -> R,
    ) -> R {
        let e = self.entry(key);
        let (idle, open) = (e.state.idle_len(), e.state.open());
        let r = f(&mut e.state, now, fx);
        self.settle(key, idle, open);
        r
    }

    fn settle(&mut self, key: KeyId, idle_before: usize, open_before: usize) {
        let idx = key.idx;
        let e = &mut self.keys[idx as usize];
        let idle_after = e.state.idle_len();
        self.idle = self.idle + idle_after - idle_before;
        self.open = self.open + e.state.open() - open_before;
        self.peak_open = self.peak_open.max(self.open);
        if idle_after > idle_before {
            let t = e
                .state
                .newest_idle()
                .expect("a keyed pool stamps idle connections");
            for _ in idle_before..idle_after {
                self.lru.push_back((t, key));
            }
        }
        let at = e.state.armed();
        if at != e.timer {
            if let Some(t) = e.timer {
                self.timers.remove(&(t, idx));
            }
            if let Some(t) = at {
                self.timers.insert((t, idx));
            }
            e.timer = at;
        }
        if e.state.is_vacant() {
            self.forget(idx);
        }
        if self.lru.len() > 2 * self.idle + 64 {
            self.rebuild_lru();
        }
    }

    fn forget(&mut self, idx: u32) {
        let e = self.keys.remove(idx as usize);
        if let Some(t) = e.timer {
            self.timers.remove(&(t, idx));
        }
        self.index.remove(&*e.key);
        self.retired.add(&e.state.stats());
    }

    /// Closes the least recently idled connection of any key while the total is above
    /// `max_idle`, grace or not: the global cap is a ceiling at every instant.
    fn enforce_idle_cap(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        while self.idle > self.max_idle {
            let oldest = self.oldest().or_else(|| {
                // Every idle connection has an entry; should one be missing, list afresh
                // rather than leave the cap broken.
                self.rebuild_lru();
                self.oldest()
            });
            let Some((_, key)) = oldest else { return };
            self.step(key, now, fx, |st, _, fx| {
                st.close_oldest_idle(CloseReason::MaxIdle, fx)
            });
        }
    }

    /// The least recently idled connection of any key: when it went idle, and its key.
    fn oldest(&mut self) -> Option<(Instant, KeyId)> {
        while let Some(&(t, key)) = self.lru.front() {
            let live = self.keys.get(key.idx as usize).is_some_and(|e| {
                e.generation == key.generation && e.state.oldest_idle() == Some(t)
            });
            if live {
                return Some((t, key));
            }
            self.lru.pop_front();
        }
        None
    }

    /// Lists every idle connection afresh, in the order they went idle.
    fn rebuild_lru(&mut self) {
        let mut all: Vec<(Instant, KeyId)> = Vec::with_capacity(self.idle);
        for (idx, e) in &self.keys {
            let key = KeyId {
                idx: idx as u32,
                generation: e.generation,
            };
            all.extend(e.state.idle_stamps().map(|t| (t, key)));
        }
        all.sort_by_key(|&(t, _)| t);
        self.lru = all.into();
    }

    /// The totals: every key's gauges and counters, plus the counters of forgotten keys.
    /// `max_open` is the per-key limit times the keys held; `surplus_idle` counts idle connections above the
    /// per-key or the global `max_idle`, whichever is more.
    pub fn stats(&self) -> Stats {
        let mut total = self.retired;
        for (_, e) in &self.keys {
            total.add(&e.state.stats());
        }
        // The total cap: the per-key cap times the keys held (0: unlimited), so that
        // `open <= max_open` reads right on the totals too.
        total.max_open = self
            .template
            .limits()
            .max_open
            .saturating_mul(self.keys.len());
        total.peak_open = self.peak_open;
        total.retention = (self.keys.iter())
            .map(|(_, e)| e.state.retention())
            .max()
            .unwrap_or_else(|| self.template.retention());
        total.surplus_idle = total
            .surplus_idle
            .max(self.idle.saturating_sub(self.max_idle));
        total
    }

    /// One key's stats; `None` if the pool holds nothing for it.
    pub fn key_stats<Q>(&self, key: &Q) -> Option<Stats>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let idx = *self.index.get(key)?;
        Some(self.keys[idx as usize].state.stats())
    }

    /// Every key held now, with its stats.
    pub fn all_key_stats(&self) -> Vec<(Arc<K>, Stats)> {
        self.keys
            .iter()
            .map(|(_, e)| (e.key.clone(), e.state.stats()))
            .collect()
    }

    /// Keys the pool holds state for now.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Runs `f` on the template and on every key (a runtime knob change).
    pub fn for_each(
        &mut self,
        now: &mut Now,
        fx: &mut Effects<C>,
        mut f: impl FnMut(&mut State<C>, &mut Now, &mut Effects<C>),
    ) {
        // The template holds no connection or waiter; what it asks for is applied all the same.
        f(&mut self.template, now, fx);
        let ids = self.ids();
        for key in ids {
            if self.id(key.idx) == Some(key) {
                self.step(key, now, fx, |st, now, fx| {
                    f(st, now, fx);
                    st.poll_timeout();
                });
            }
        }
        self.enforce_idle_cap(now, fx);
        fx.rare().notify_reaper = true;
    }

    /// Sets the global `max_idle`; idle connections above it close at once, oldest first.
    pub fn set_max_idle(&mut self, n: usize, now: &mut Now, fx: &mut Effects<C>) {
        self.max_idle = n;
        self.enforce_idle_cap(now, fx);
    }
}

/// What the tests look at inside.
#[cfg(test)]
impl<K, C> KeyTable<K, C> {
    /// Idle connections across keys.
    pub fn idle(&self) -> usize {
        self.idle
    }

    /// The key whose state is at `idx`, if one is.
    pub fn key_at(&self, idx: u32) -> Option<&K> {
        self.keys.get(idx as usize).map(|e| &*e.key)
    }

    /// Entries in the key index, the timers and the LRU queue (stale ones included).
    pub fn leftovers(&self) -> (usize, usize, usize) {
        (self.index.len(), self.timers.len(), self.lru.len())
    }
}

impl<M: KeyedManager> Table<M> for KeyTable<M::Key, M::Resource> {
    type Handle = KeyHandle<M::Key>;

    fn key_of(handle: &KeyHandle<M::Key>) -> &M::Key {
        &handle.key
    }

    fn key_id(handle: &KeyHandle<M::Key>) -> KeyId {
        handle.id
    }

    fn fixed_handle() -> Option<KeyHandle<M::Key>> {
        None
    }

    fn enter(&mut self, key: &M::Key) -> Result<(KeyId, KeyHandle<M::Key>), Error> {
        let (id, key) = self.enter_key(key)?;
        Ok((id, KeyHandle { key, id }))
    }

    fn find<Q>(&self, key: &Q) -> Option<KeyId>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let &idx = self.index.get(key)?;
        Some(KeyId {
            idx,
            generation: self.keys[idx as usize].generation,
        })
    }

    fn handle(&self, key: KeyId) -> KeyHandle<M::Key> {
        self.keys
            .get(key.idx as usize)
            .filter(|e| e.generation == key.generation)
            .map(|e| KeyHandle {
                key: e.key.clone(),
                id: key,
            })
            .expect("a key with a create or close in flight is never forgotten")
    }

    fn with<R>(
        &mut self,
        key: KeyId,
        now: &mut Now,
        fx: &mut Effects<M::Resource>,
        f: impl FnOnce(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        self.with_key(key, now, fx, f)
    }

    #[inline]
    fn pop_fast<Q>(&mut self, key: &Q) -> Option<(Conn<M::Resource>, KeyHandle<M::Key>)>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        KeyTable::pop_fast(self, key)
    }

    #[inline]
    fn push_fast(
        &mut self,
        slot: &mut Option<Conn<M::Resource>>,
        key: KeyId,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        let Some(e) = self
            .keys
            .get_mut(key.idx as usize)
            .filter(|e| e.generation == key.generation)
        else {
            return Pushed::Declined;
        };
        if e.state.has_waiters() {
            // A hand-off: the global idle count stays as it is, and no stamp is read.
            return e
                .state
                .push_fast(slot, || unreachable!("a hand-off reads no clock"));
        }
        if self.idle >= self.max_idle {
            return Pushed::Declined;
        }
        let t = now();
        match e.state.push_fast(slot, || t) {
            Pushed::Idle => {}
            other => return other,
        }
        // The state's own stamp, which `oldest` compares with.
        let t = e.state.newest_idle().unwrap_or(t);
        self.idle += 1;
        self.lru.push_back((t, key));
        if self.lru.len() > 2 * self.idle + 64 {
            self.rebuild_lru();
        }
        Pushed::Idle
    }

    fn handle_timeout(&mut self, now: &mut Now, fx: &mut Effects<M::Resource>) {
        if self.closed {
            return;
        }
        let t = now.get();
        let due: Vec<u32> = self
            .timers
            .range(..=(t, u32::MAX))
            .map(|&(_, idx)| idx)
            .collect();
        for idx in due {
            if let Some(key) = self.id(idx) {
                self.step(key, now, fx, |st, now, fx| {
                    st.handle_timeout(now, fx);
                    st.poll_timeout();
                });
            }
        }
        self.enforce_idle_cap(now, fx);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.timers.first().map(|&(t, _)| t)
    }

    fn close(&mut self, now: &mut Now, fx: &mut Effects<M::Resource>) {
        if self.closed {
            return;
        }
        self.closed = true;
        let ids = self.ids();
        for key in ids {
            self.step(key, now, fx, |st, _, fx| st.close(fx));
        }
        fx.rare().notify_reaper = true;
        if self.open == 0 {
            fx.rare().drained = true;
        }
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn open(&self) -> usize {
        self.open
    }
}

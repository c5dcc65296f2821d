//! [`Table`]: what the async shell locks. A plain pool's table is one [`State`]; a keyed
//! pool's is a map of states, one per key, plus what spans keys (the global idle cap). The
//! shell reaches every state through [`Table::with`], so the table can react after each
//! step (evict across keys, forget a vacant key).

use std::borrow::Borrow;
use std::hash::Hash;
use std::task::Waker;
use std::time::Instant;

use super::effects::{Effects, Pushed, WaitPoll};
use super::idle::Conn;
use super::state::State;
use super::waiters::WaiterId;
use super::{KeyId, Now};
use crate::{Error, KeyedManager};

/// The pool's lock guards one of these.
pub(crate) trait Table<M: KeyedManager>: Send + 'static {
    /// The key as creates and hooks see it: `()`, or the keyed pool's shared `Arc<K>`.
    type Handle: Clone + Send + Sync + Unpin + 'static;

    /// The key behind a handle.
    fn key_of(handle: &Self::Handle) -> &M::Key;

    /// Where the key's state lives.
    fn key_id(handle: &Self::Handle) -> KeyId;

    /// The handle when there is only one key; `None` when it must be looked up.
    fn fixed_handle() -> Option<Self::Handle>;

    /// The state of `key`, made if missing (a closed pool makes none).
    fn enter(&mut self, key: &M::Key) -> Result<(KeyId, Self::Handle), Error>;

    /// The handle of a live key.
    fn handle(&self, key: KeyId) -> Self::Handle;

    /// The state of `key` if the table holds one (never makes one).
    fn find<Q>(&self, key: &Q) -> Option<KeyId>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// Runs `f` on the state of a live key, then settles what spans keys.
    fn with<R>(
        &mut self,
        key: KeyId,
        now: &mut Now,
        fx: &mut Effects<M::Resource>,
        f: impl FnOnce(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R;

    /// The common checkout in one step, when the table allows it (see `State::pop_fast`).
    fn pop_fast<Q>(&mut self, key: &Q) -> Option<(Conn<M::Resource>, Self::Handle)>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized;

    /// An idle connection of `key` now, without queueing or creating, and whether surplus
    /// existed (see `State::try_acquire`); not counted as a hit until it is handed out.
    fn try_pop<Q>(
        &mut self,
        key: &Q,
        now: &mut Now,
        fx: &mut Effects<M::Resource>,
    ) -> Option<(Conn<M::Resource>, bool, Self::Handle)>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let id = self.find(key)?;
        let handle = self.handle(id);
        self.with(id, now, fx, |st, now, fx| st.try_acquire(now, fx))
            .map(|(conn, surplus)| (conn, surplus, handle))
    }

    /// The common release in one step, when the table allows it (see `State::push_fast`).
    /// `now` is the shell's clock, read only for a stamp.
    #[inline]
    fn push_fast(
        &mut self,
        slot: &mut Option<Conn<M::Resource>>,
        key: KeyId,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        let _ = (slot, key, now);
        Pushed::Declined
    }

    /// The common wait in one step, when the table allows it (see `State::wait_fast`): the
    /// key's state and handle, and the place in its queue.
    #[inline]
    fn wait_fast<Q>(
        &mut self,
        key: &Q,
        waker: &Waker,
        now: &Now,
    ) -> Option<(KeyId, WaiterId, Self::Handle)>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let _ = (key, waker, now);
        None
    }

    /// Polls a queued waiter (see `State::poll_waiter`), settling the key as `with` does.
    #[inline]
    fn poll_waiter(
        &mut self,
        key: KeyId,
        id: WaiterId,
        waker: &Waker,
        now: &mut Now,
        fx: &mut Effects<M::Resource>,
    ) -> WaitPoll<M::Resource> {
        self.with(key, now, fx, |st, now, _| st.poll_waiter(id, waker, now))
    }

    /// The reaper's turn at `now` (read once; not at all once closed).
    fn handle_timeout(&mut self, now: &mut Now, fx: &mut Effects<M::Resource>);

    /// The reaper's next deadline.
    fn poll_timeout(&mut self) -> Option<Instant>;

    /// Closes every key.
    fn close(&mut self, now: &mut Now, fx: &mut Effects<M::Resource>);

    fn is_closed(&self) -> bool;

    /// Connections open across every key.
    fn open(&self) -> usize;
}

/// The plain pool: one state, one key.
impl<M: KeyedManager<Key = ()>> Table<M> for State<M::Resource> {
    type Handle = ();

    #[inline]
    fn key_of(_: &()) -> &() {
        &()
    }

    #[inline]
    fn key_id(_: &()) -> KeyId {
        KeyId::ROOT
    }

    #[inline]
    fn fixed_handle() -> Option<()> {
        Some(())
    }

    #[inline]
    fn enter(&mut self, _: &()) -> Result<(KeyId, ()), Error> {
        Ok((KeyId::ROOT, ()))
    }

    #[inline]
    fn handle(&self, _: KeyId) {}

    #[inline]
    fn find<Q>(&self, _: &Q) -> Option<KeyId>
    where
        (): Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(KeyId::ROOT)
    }

    #[inline]
    fn with<R>(
        &mut self,
        _: KeyId,
        now: &mut Now,
        fx: &mut Effects<M::Resource>,
        f: impl FnOnce(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        f(self, now, fx)
    }

    #[inline]
    fn pop_fast<Q>(&mut self, _: &Q) -> Option<(Conn<M::Resource>, ())>
    where
        (): Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        State::pop_fast(self).map(|c| (c, ()))
    }

    #[inline]
    fn push_fast(
        &mut self,
        slot: &mut Option<Conn<M::Resource>>,
        _: KeyId,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        State::push_fast(self, slot, now)
    }

    #[inline]
    fn wait_fast<Q>(&mut self, _: &Q, waker: &Waker, now: &Now) -> Option<(KeyId, WaiterId, ())>
    where
        (): Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        State::wait_fast(self, waker, now).map(|id| (KeyId::ROOT, id, ()))
    }

    #[inline]
    fn poll_waiter(
        &mut self,
        _: KeyId,
        id: WaiterId,
        waker: &Waker,
        now: &mut Now,
        _: &mut Effects<M::Resource>,
    ) -> WaitPoll<M::Resource> {
        State::poll_waiter(self, id, waker, now)
    }

    fn handle_timeout(&mut self, now: &mut Now, fx: &mut Effects<M::Resource>) {
        State::handle_timeout(self, now, fx)
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        State::poll_timeout(self)
    }

    fn close(&mut self, _: &mut Now, fx: &mut Effects<M::Resource>) {
        State::close(self, fx)
    }

    fn is_closed(&self) -> bool {
        State::is_closed(self)
    }

    fn open(&self) -> usize {
        State::open(self)
    }
}

//! The keyed table driven step by step on a virtual clock: each key against the plain
//! pool's reference model, plus what spans keys (the global idle cap, forgetting keys).

use std::task::Waker;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::model::{Model, W, pick};
use super::{CLOCK, SEC, cfg, epoch};
use crate::machine::{
    Acquired, Conn, Effects, KeyId, KeyTable, Now, Pushed, State, Table, WaitPoll, WaiterId,
};
use crate::{CloseReason, Config, Error, KeyedConfig};

const KEYS: usize = 3;

fn table(per_key: Config, max_idle: usize) -> KeyTable<usize, u32> {
    let config = KeyedConfig { max_idle, per_key };
    let (limits, _) = config.validate(None).unwrap();
    let template = State::new(limits, config.per_key.max_idle, None);
    KeyTable::new(template, max_idle)
}

/// Runs one step on key `k`, collecting the creates and closes it asks for.
struct Driver {
    t: KeyTable<usize, u32>,
    clock: Instant,
    creates: Vec<(KeyId, Option<WaiterId>)>,
    closes: Vec<(KeyId, CloseReason)>,
}

impl Driver {
    fn new(t: KeyTable<usize, u32>) -> Self {
        Driver {
            t,
            clock: epoch(),
            creates: Vec::new(),
            closes: Vec::new(),
        }
    }

    fn absorb(&mut self, fx: Effects<u32>) {
        if let Some(rare) = fx.rare {
            self.creates.extend(rare.creates);
            self.closes
                .extend(rare.closes.into_iter().map(|(key, _, r)| (key, r)));
        }
    }

    fn on<R>(
        &mut self,
        key: KeyId,
        f: impl FnOnce(&mut State<u32>, &mut Now, &mut Effects<u32>) -> R,
    ) -> R {
        let mut fx = Effects::default();
        let r = self
            .t
            .with_key(key, &mut Now::at(self.clock, CLOCK), &mut fx, f);
        self.absorb(fx);
        r
    }

    fn acquire(&mut self, k: usize) -> Result<(KeyId, Acquired<u32>), Error> {
        let (key, _) = self.t.enter_key(&k)?;
        let r = self.on(key, |st, now, fx| st.acquire(now, false, None, None, fx))?;
        Ok((key, r))
    }

    /// Serves every pending create with a connection and the head waiter takes it.
    fn serve(&mut self, k: usize) -> Conn<u32> {
        let (key, a) = self.acquire(k).unwrap();
        let id = match a {
            Acquired::Ready(c) => return c,
            Acquired::Wait(id) => id,
        };
        let (ck, tag) = self.creates.remove(0);
        self.on(ck, |st, now, fx| st.handle_created(1, 0, tag, 0.5, now, fx));
        match self.on(key, |st, now, _| st.poll_waiter(id, Waker::noop(), now)) {
            WaitPoll::Ready(Ok((c, _))) => c,
            _ => panic!("not served"),
        }
    }

    /// Releases a connection of key `k` (which holds it, so it is live).
    fn release(&mut self, k: usize, c: Conn<u32>) {
        self.clock += Duration::from_millis(1);
        let (key, _) = self.t.enter_key(&k).unwrap();
        self.on(key, |st, now, fx| st.release(c, now, fx));
    }

    fn finish_closes(&mut self) {
        while let Some((key, reason)) = self.closes.pop() {
            self.on(key, |st, now, fx| st.handle_closed(reason, now, fx));
        }
    }
}

#[test]
fn the_global_idle_cap_closes_the_oldest_idle_connection_of_any_key() {
    let mut d = Driver::new(table(cfg(0, 2, Duration::ZERO), 2));
    let a = d.serve(0);
    let b = d.serve(1);
    let c = d.serve(2);
    d.release(0, a);
    d.release(1, b);
    assert!(d.closes.is_empty());
    d.release(2, c);
    assert_eq!(d.closes.len(), 1, "one over the global cap");
    let (evicted, reason) = d.closes[0];
    assert_eq!(reason, CloseReason::MaxIdle);
    assert_eq!(d.t.key_stats(&0).unwrap().idle, 0, "key 0 idled first");
    assert_eq!(evicted, d.t.enter_key(&0).unwrap().0);
    assert_eq!(d.t.idle(), 2);
    d.finish_closes();
    assert!(
        d.t.key_stats(&0).is_none(),
        "key 0 holds nothing: forgotten"
    );
    assert_eq!(
        d.t.stats().max_idle_closed,
        1,
        "the forgotten key still counts"
    );
}

#[test]
fn with_grace_the_global_cap_still_closes_the_oldest_at_once() {
    let mut d = Driver::new(table(cfg(0, 2, 10 * SEC), 1));
    let a = d.serve(0);
    let b = d.serve(1);
    d.release(0, a);
    d.release(1, b);
    assert_eq!(
        d.t.idle(),
        1,
        "the global cap holds during the grace period"
    );
    assert_eq!(d.closes.len(), 1);
    let (evicted, reason) = d.closes[0];
    assert_eq!(reason, CloseReason::MaxIdle);
    assert_eq!(evicted, d.t.enter_key(&0).unwrap().0, "key 0 idled first");
    assert_eq!(d.t.key_stats(&1).unwrap().idle, 1, "the newer one stays");
    assert_eq!(
        Table::<Dummy>::poll_timeout(&mut d.t),
        None,
        "nothing left to reap"
    );
}

#[test]
fn with_grace_a_key_keeps_its_surplus_within_the_global_cap() {
    let mut d = Driver::new(table(cfg(0, 1, 10 * SEC), 3));
    let a = d.serve(0);
    let b = d.serve(0);
    let c = d.serve(1);
    d.release(1, c);
    d.release(0, a);
    d.release(0, b);
    assert!(d.closes.is_empty(), "within the global cap: {:?}", d.closes);
    assert_eq!(d.t.key_stats(&0).unwrap().surplus_idle, 1);
    let d2 = d.serve(2);
    d.release(2, d2);
    assert_eq!(d.t.idle(), 3);
    assert_eq!(d.closes.len(), 1);
    assert_eq!(d.closes[0].1, CloseReason::MaxIdle);
    assert!(d.t.key_stats(&1).unwrap().idle == 0, "key 1 idled first");
    d.finish_closes();
    // The key's own surplus goes when its grace ends, as grace.
    let due = Table::<Dummy>::poll_timeout(&mut d.t).expect("grace end scheduled");
    assert!(due > d.clock && due <= d.clock + 10 * SEC);
    let mut fx = Effects::default();
    Table::<Dummy>::handle_timeout(&mut d.t, &mut Now::at(due, CLOCK), &mut fx);
    d.absorb(fx);
    assert_eq!(d.closes.len(), 1);
    assert_eq!(d.closes[0].1, CloseReason::Grace);
    assert_eq!(d.t.key_stats(&0).unwrap().idle, 1);
}

#[test]
fn ten_thousand_keys_used_once_leave_nothing_behind() {
    let mut d = Driver::new(table(cfg(0, 2, Duration::ZERO), 0));
    for k in 0..10_000 {
        let c = d.serve(k);
        d.release(k, c);
        d.finish_closes();
    }
    assert_eq!(d.t.key_count(), 0);
    let (index, timers, lru) = d.t.leftovers();
    assert!(index == 0 && timers == 0);
    assert!(lru <= 64, "stale idle entries are bounded");
    let s = d.t.stats();
    assert_eq!((s.created, s.max_idle_closed, s.open), (10_000, 10_000, 0));
}

/// A manager type to name the table's trait impl in tests.
struct Dummy;

#[async_trait::async_trait]
impl crate::KeyedManager for Dummy {
    type Key = usize;
    type Resource = u32;
    type Error = std::io::Error;
    async fn create(&self, _: &usize) -> Result<u32, std::io::Error> {
        Ok(1)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Poll(usize),
    Cancel(usize),
    Timeout(usize),
    Release(usize),
    Discard(usize),
    CreateDone(usize, bool),
    CloseDone(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Acquire),
        3 => any::<usize>().prop_map(Op::Poll),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Timeout),
        3 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Discard),
        3 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(k, ok)| Op::CreateDone(k, ok)),
        2 => any::<usize>().prop_map(Op::CloseDone),
        1 => prop::bool::weighted(0.05).prop_map(|_| Op::Close),
    ]
}

/// Every key against its own reference model; across keys, the global idle order.
struct Models {
    keys: Vec<Model>,
    /// Keys of the idle connections, least recently idled first.
    idle_order: Vec<usize>,
    global_max: usize,
}

impl Models {
    /// Runs a model step on key `k`, then follows its idle count in the global order and
    /// applies the global cap.
    fn step(&mut self, k: usize, f: impl FnOnce(&mut Model)) {
        let before = self.keys[k].idle;
        f(&mut self.keys[k]);
        let after = self.keys[k].idle;
        if after > before {
            self.idle_order.push(k);
        } else if after < before {
            let last = self.idle_order.iter().rposition(|&x| x == k).unwrap();
            self.idle_order.remove(last);
        }
        // The global cap holds after every step, grace or not.
        while self.idle_order.len() > self.global_max {
            let j = self.idle_order.remove(0);
            self.keys[j].idle -= 1;
            self.keys[j].closing += 1;
        }
    }
}

fn run_model(
    max_open: usize,
    max_idle: usize,
    global_max: usize,
    grace_zero: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let grace = if grace_zero {
        Duration::ZERO
    } else {
        100 * SEC
    };
    let mut d = Driver::new(table(cfg(max_open, max_idle, grace), global_max));
    let model = |_| Model::new(max_open, max_idle, grace_zero);
    let mut m = Models {
        keys: (0..KEYS).map(model).collect(),
        idle_order: Vec::new(),
        global_max,
    };
    // Every waiter ever queued: (key, its place in the key model's list, its id).
    let mut waiters: Vec<(usize, usize, KeyId, WaiterId)> = Vec::new();
    let mut out: Vec<(usize, KeyId, Conn<u32>)> = Vec::new();
    let mut closed = false;

    for op in ops {
        d.clock += Duration::from_millis(1);
        match op {
            Op::Acquire(k) => {
                // As the shell: the one-step path first, the general one when it declines.
                let got = match d.t.pop_fast(&k) {
                    Some((c, handle)) => {
                        prop_assert_eq!(*handle.key, k);
                        Ok((handle.id, Acquired::Ready(c)))
                    }
                    None => d.acquire(k),
                };
                if closed {
                    prop_assert!(got.is_err());
                    continue;
                }
                let (key, a) = got.unwrap();
                let mk = &m.keys[k];
                if mk.waiting() == 0 && mk.idle > 0 {
                    match a {
                        Acquired::Ready(c) => out.push((k, key, c)),
                        Acquired::Wait(_) => prop_assert!(false, "idle not handed out"),
                    }
                    m.step(k, |mk| mk.idle -= 1);
                } else {
                    match a {
                        Acquired::Wait(id) => waiters.push((k, mk.waiters.len(), key, id)),
                        Acquired::Ready(_) => prop_assert!(false, "a newcomer did not queue"),
                    }
                    m.step(k, Model::queue);
                }
            }
            Op::Poll(i) | Op::Timeout(i) | Op::Cancel(i) => {
                let Some(i) = pick(&waiters, i) else { continue };
                let (k, w, key, id) = waiters[i];
                let state = m.keys[k].waiters[w];
                if state == W::Gone {
                    continue;
                }
                match op {
                    Op::Cancel(_) => {
                        d.on(key, |st, now, fx| st.cancel_waiter(id, now, fx));
                        m.step(k, |mk| {
                            mk.waiters[w] = W::Gone;
                            if state == W::Served {
                                mk.put();
                            }
                        });
                        continue;
                    }
                    Op::Timeout(_) => match d.on(key, |st, now, fx| st.timeout_waiter(id, now, fx))
                    {
                        Ok((c, _)) => {
                            prop_assert_eq!(state, W::Served);
                            out.push((k, key, c));
                        }
                        Err(_) => prop_assert_ne!(state, W::Served),
                    },
                    _ => match d.on(key, |st, now, _| st.poll_waiter(id, Waker::noop(), now)) {
                        WaitPoll::Pending(_) => {
                            prop_assert_eq!(state, W::Waiting);
                            continue;
                        }
                        WaitPoll::Ready(Ok((c, _))) => {
                            prop_assert_eq!(state, W::Served);
                            out.push((k, key, c));
                        }
                        WaitPoll::Ready(Err(_)) => prop_assert_eq!(state, W::Failed),
                    },
                }
                m.keys[k].waiters[w] = W::Gone;
            }
            Op::Release(j) | Op::Discard(j) => {
                let Some(j) = pick(&out, j) else { continue };
                let (k, key, c) = out.swap_remove(j);
                if !closed {
                    let live = d.t.enter_key(&k).ok().map(|(id, _)| id);
                    prop_assert_eq!(Some(key), live, "the key of a held connection is live");
                }
                if matches!(op, Op::Release(_)) {
                    let mut slot = Some(c);
                    let t = d.clock;
                    if let Pushed::Declined =
                        Table::<Dummy>::push_fast(&mut d.t, &mut slot, key, || t)
                    {
                        let c = slot.expect("kept when not pushed");
                        d.on(key, |st, now, fx| st.release(c, now, fx));
                    }
                    m.step(k, Model::put);
                } else {
                    d.on(key, |st, _, fx| st.begin_close(c, CloseReason::Broken, fx));
                    m.step(k, |mk| mk.closing += 1);
                }
            }
            Op::CreateDone(i, ok) => {
                let Some(i) = pick(&d.creates, i) else {
                    continue;
                };
                let (key, tag) = d.creates.remove(i);
                let k =
                    *d.t.key_at(key.idx)
                        .expect("a key with a create or close is held");
                let n = d.creates[..i].iter().filter(|(c, _)| *c == key).count();
                m.keys[k].creates.remove(n);
                if ok {
                    d.on(key, |st, now, fx| {
                        st.handle_created(1, 0, tag, 0.5, now, fx)
                    });
                    m.step(k, |mk| mk.create_done(true));
                } else {
                    d.on(key, |st, now, fx| {
                        st.handle_create_failed(
                            Error::new(crate::error::Kind::Create),
                            tag,
                            now,
                            fx,
                        )
                    });
                    m.step(k, |mk| mk.create_done(false));
                }
            }
            Op::CloseDone(i) => {
                let Some(i) = pick(&d.closes, i) else {
                    continue;
                };
                let (key, reason) = d.closes.remove(i);
                let k =
                    *d.t.key_at(key.idx)
                        .expect("a key with a create or close is held");
                d.on(key, |st, now, fx| st.handle_closed(reason, now, fx));
                m.step(k, |mk| {
                    mk.closing -= 1;
                    mk.open -= 1;
                    mk.balance();
                });
            }
            Op::Close => {
                let mut fx = Effects::default();
                Table::<Dummy>::close(&mut d.t, &mut Now::at(d.clock, CLOCK), &mut fx);
                d.absorb(fx);
                if !closed {
                    closed = true;
                    for k in 0..KEYS {
                        m.step(k, |mk| {
                            mk.closed = true;
                            for w in mk.waiters.iter_mut().filter(|w| **w == W::Waiting) {
                                *w = W::Failed;
                            }
                            mk.closing += mk.idle;
                            mk.idle = 0;
                        });
                    }
                }
            }
        }

        // Each key agrees with its model; a key with nothing left is forgotten.
        let mut idle = 0;
        for (k, mk) in m.keys.iter().enumerate() {
            let pending = mk.waiters.iter().any(|w| *w != W::Gone);
            match d.t.key_stats(&k) {
                None => prop_assert!(
                    mk.open == 0 && !pending,
                    "key {} forgotten while it holds something: {:?}",
                    k,
                    mk
                ),
                Some(s) => {
                    prop_assert!(mk.open > 0 || pending, "vacant key {} kept", k);
                    prop_assert_eq!(
                        (s.open, s.idle, s.waiting),
                        (mk.open, mk.idle, mk.waiting()),
                        "key {}: {:?}",
                        k,
                        mk
                    );
                    prop_assert!(max_open == 0 || s.open <= max_open);
                }
            }
            let creates = d
                .creates
                .iter()
                .filter(|(c, _)| d.t.key_at(c.idx) == Some(&k))
                .count();
            prop_assert_eq!(creates, mk.creating, "key {} creates", k);
            idle += mk.idle;
        }
        prop_assert_eq!(d.t.idle(), idle);
        prop_assert!(
            idle <= global_max,
            "idle {} over the global cap {}",
            idle,
            global_max
        );
        let s = d.t.stats();
        prop_assert_eq!(s.idle, idle);
        prop_assert_eq!(
            s.created - s.closed() - s.detached,
            (s.open - d.creates.len()) as u64
        );
        prop_assert_eq!(
            d.closes.len(),
            m.keys.iter().map(|mk| mk.closing).sum::<usize>()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_key_matches_the_reference_model_and_the_global_cap_holds(
        max_open in 1usize..4,
        max_idle in 0usize..3,
        global_max in 0usize..5,
        grace_zero in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run_model(max_open, max_idle, global_max, grace_zero, ops)?;
    }
}

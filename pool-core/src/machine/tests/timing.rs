//! The reaper's deadlines under time (proptest): random checkouts, returns, creates, closes
//! and the passing of time, with the knobs that move deadlines (the adaptive retention,
//! lifetime rotation, grace or none, FIFO or LIFO). After every step: the reaper is never
//! late (`timers.rs`: every deadline `next_deadline` reports is at or after the armed one,
//! or the reaper was notified), never spins (after its turn at `t`, its next deadline is
//! after `t`), `max_open` holds and the books balance.

use std::task::Waker;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{CLOCK, SEC, cfg, epoch, state};
use crate::error::Kind;
use crate::machine::{Acquired, Conn, Effects, Now, State, WaitPoll, WaiterId};
use crate::{CloseReason, Config, Error, IdleOrder};

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    TryAcquire,
    Poll(usize),
    Release(usize),
    CreateDone(usize, bool),
    CloseDone(usize),
    /// Time passes (milliseconds; up to a few minutes), the reaper taking its turns.
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        1 => Just(Op::TryAcquire),
        3 => any::<usize>().prop_map(Op::Poll),
        3 => any::<usize>().prop_map(Op::Release),
        3 => (any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(k, ok)| Op::CreateDone(k, ok)),
        2 => any::<usize>().prop_map(Op::CloseDone),
        3 => prop_oneof![1u64..50, 50u64..5_000, 5_000u64..200_000].prop_map(Op::Wait),
    ]
}

struct Driver {
    st: State<u32>,
    t: Instant,
    max_open: usize,
    creates: Vec<Option<WaiterId>>,
    closes: Vec<CloseReason>,
    waiting: Vec<WaiterId>,
    out: Vec<Conn<u32>>,
    ids: u64,
}

impl Driver {
    fn step<R>(&mut self, f: impl FnOnce(&mut State<u32>, &mut Now, &mut Effects<u32>) -> R) -> R {
        let mut fx = Effects::default();
        let r = f(&mut self.st, &mut Now::at(self.t, CLOCK), &mut fx);
        self.creates.extend(fx.take_creates());
        self.closes
            .extend(fx.take_closes().into_iter().map(|(_, r)| r));
        if fx.flag(|r| r.notify_reaper) {
            // The reaper computes its deadline again on its next turn.
            self.st.poll_timeout();
        }
        self.check();
        r
    }

    /// Never late: every deadline is at or after the armed one.
    fn check(&self) {
        if let Some(next) = self.st.next_deadline() {
            let armed = self.st.armed();
            assert!(
                armed.is_some_and(|a| a <= next),
                "the reaper is late: armed {armed:?}, due {next:?}"
            );
        }
        let s = self.st.stats();
        assert!(s.open <= self.max_open, "{s:?}");
    }

    /// Time passes to `until`, the reaper taking a turn at each armed deadline on the way.
    fn wait(&mut self, until: Instant) {
        let mut turns = 0;
        while let Some(at) = self.st.armed().filter(|&a| a <= until) {
            self.t = self.t.max(at);
            let mut fx = Effects::default();
            self.st.handle_timeout(&mut Now::at(self.t, CLOCK), &mut fx);
            self.creates.extend(fx.take_creates());
            self.closes
                .extend(fx.take_closes().into_iter().map(|(_, r)| r));
            let next = self.st.poll_timeout();
            assert!(
                next.is_none_or(|n| n > self.t),
                "the reaper spins: next {next:?} at {:?}",
                self.t
            );
            self.check();
            turns += 1;
            assert!(turns < 10_000, "the reaper never sleeps");
        }
        self.t = until;
    }
}

fn run(config: Config, ops: Vec<Op>) {
    let max_open = config.max_open;
    let mut d = Driver {
        st: state(config),
        t: epoch(),
        max_open,
        creates: Vec::new(),
        closes: Vec::new(),
        waiting: Vec::new(),
        out: Vec::new(),
        ids: 0,
    };
    d.st.poll_timeout();
    for op in ops {
        match op {
            Op::Acquire => match d.step(|st, now, fx| st.acquire(now, false, None, None, fx)) {
                Ok(Acquired::Ready(c)) => d.out.push(c),
                Ok(Acquired::Wait(id)) => d.waiting.push(id),
                Err(_) => {}
            },
            Op::TryAcquire => {
                if let Some((c, _)) = d.step(|st, now, fx| st.try_acquire(now, fx)) {
                    d.out.push(c);
                }
            }
            Op::Poll(k) if !d.waiting.is_empty() => {
                let id = d.waiting[k % d.waiting.len()];
                match d.step(|st, now, _| st.poll_waiter(id, Waker::noop(), now)) {
                    WaitPoll::Ready(Ok((c, _))) => {
                        d.waiting.retain(|w| *w != id);
                        d.out.push(c);
                    }
                    WaitPoll::Ready(Err(_)) => d.waiting.retain(|w| *w != id),
                    WaitPoll::Pending(_) => {}
                }
            }
            Op::Release(k) if !d.out.is_empty() => {
                let c = d.out.swap_remove(k % d.out.len());
                d.step(|st, now, fx| st.release(c, now, fx));
            }
            Op::CreateDone(k, ok) if !d.creates.is_empty() => {
                let tag = d.creates.remove(k % d.creates.len());
                d.ids += 1;
                let (id, jitter) = (d.ids, (d.ids as f32 * 0.618_034).fract());
                if ok {
                    d.step(|st, now, fx| st.handle_created(7, id, tag, jitter, now, fx));
                } else {
                    let err = Error::new(Kind::Create);
                    d.step(|st, now, fx| st.handle_create_failed(err, tag, now, fx));
                }
            }
            Op::CloseDone(k) if !d.closes.is_empty() => {
                let r = d.closes.remove(k % d.closes.len());
                d.step(|st, now, fx| st.handle_closed(r, now, fx));
            }
            Op::Wait(ms) => {
                let until = d.t + Duration::from_millis(ms);
                d.wait(until);
            }
            _ => {}
        }
    }
    // Settle: everything back, every create and close done; the books balance.
    for c in std::mem::take(&mut d.out) {
        d.step(|st, now, fx| st.release(c, now, fx));
    }
    for id in std::mem::take(&mut d.waiting) {
        d.step(|st, now, fx| st.cancel_waiter(id, now, fx));
    }
    while !d.creates.is_empty() || !d.closes.is_empty() {
        if let Some(tag) = d.creates.pop() {
            d.step(|st, now, fx| st.handle_create_failed(Error::new(Kind::Create), tag, now, fx));
        }
        if let Some(r) = d.closes.pop() {
            d.step(|st, now, fx| st.handle_closed(r, now, fx));
        }
    }
    let s = d.st.stats();
    assert_eq!(s.created - s.closed() - s.detached, s.open as u64, "{s:?}");
    assert_eq!(s.open, s.idle, "{s:?}");
}

fn config(max_open: usize, max_idle: usize, knobs: u8) -> Config {
    let grace = if knobs & 1 == 0 {
        Duration::ZERO
    } else {
        10 * SEC
    };
    let mut c = cfg(max_open, max_idle, grace);
    if knobs & 2 != 0 {
        c.adaptive_idle = Some(60 * SEC);
    }
    if knobs & 4 != 0 {
        c.max_lifetime = Some(30 * SEC);
    }
    if knobs & 8 != 0 {
        c.idle_order = IdleOrder::Fifo;
    }
    if knobs & 16 != 0 {
        c.max_idle_time = Some(20 * SEC);
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn the_reaper_is_never_late_and_never_spins(
        max_open in 1usize..6,
        max_idle in 0usize..4,
        knobs in 0u8..32,
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(config(max_open, max_idle, knobs), ops);
    }
}

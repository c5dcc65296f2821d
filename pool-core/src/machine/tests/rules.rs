//! The state machine driven step by step, with no runtime and a virtual clock: unit tests of
//! its rules.

use std::task::Waker;
use std::time::{Duration, Instant};

use super::{CLOCK, SEC, cfg, epoch, state};
use crate::error::Kind;
use crate::machine::idle::STAMP_EVERY;
use crate::machine::{Acquired, Conn, Effects, Now, Pushed, State, WaitPoll, WaiterId};
use crate::{CloseReason, Config, Error};

/// Drives a state: runs creates and closes the way the shell would, on a virtual clock.
struct Driver {
    st: State<u32>,
    t: Instant,
    creates: Vec<Option<WaiterId>>,
    closes: Vec<CloseReason>,
    /// Lifetime jitter draws handed out so far (the shell draws them at random; here they
    /// follow a fixed, evenly spread sequence).
    draws: u32,
}

impl Driver {
    fn new(config: Config) -> Self {
        Driver {
            st: state(config),
            t: epoch(),
            creates: Vec::new(),
            closes: Vec::new(),
            draws: 0,
        }
    }

    fn absorb(&mut self, mut fx: Effects<u32>) {
        self.creates.extend(fx.take_creates());
        self.closes
            .extend(fx.take_closes().into_iter().map(|(_, r)| r));
    }

    fn step<R>(&mut self, f: impl FnOnce(&mut State<u32>, &mut Now, &mut Effects<u32>) -> R) -> R {
        let mut fx = Effects::default();
        let r = f(&mut self.st, &mut Now::at(self.t, CLOCK), &mut fx);
        self.absorb(fx);
        r
    }

    fn acquire(&mut self) -> Acquired<u32> {
        self.step(|st, now, fx| st.acquire(now, false, None, None, fx))
            .unwrap()
    }

    /// The next jitter draw: the fractional parts of multiples of the golden ratio.
    fn jitter(&mut self) -> f32 {
        self.draws += 1;
        (self.draws as f32 * 0.618_034).fract()
    }

    fn create_ok(&mut self) {
        let tag = self.creates.remove(0);
        let jitter = self.jitter();
        // Each connection its own id, as the shell gives them (rotation tells them apart).
        let id = u64::from(self.draws);
        self.step(|st, now, fx| st.handle_created(7, id, tag, jitter, now, fx));
    }

    fn close_all(&mut self) {
        while let Some(r) = self.closes.pop() {
            self.step(|st, now, fx| st.handle_closed(r, now, fx));
        }
    }

    fn take(&mut self, id: WaiterId) -> Conn<u32> {
        match self.step(|st, now, _| st.poll_waiter(id, Waker::noop(), now)) {
            WaitPoll::Ready(Ok((c, _))) => c,
            _ => panic!("waiter not served"),
        }
    }

    fn release(&mut self, c: Conn<u32>) {
        self.step(|st, now, fx| st.release(c, now, fx));
    }

    fn tick(&mut self, d: Duration) {
        self.t += d;
        let mut fx = Effects::default();
        self.st.handle_timeout(&mut Now::at(self.t, CLOCK), &mut fx);
        self.absorb(fx);
    }
}

fn ready(a: Acquired<u32>) -> Conn<u32> {
    match a {
        Acquired::Ready(c) => c,
        Acquired::Wait(_) => panic!("expected an idle connection"),
    }
}

fn waiting(a: Acquired<u32>) -> WaiterId {
    match a {
        Acquired::Wait(id) => id,
        Acquired::Ready(_) => panic!("expected to wait"),
    }
}

#[test]
fn a_release_goes_to_the_head_waiter_not_to_idle() {
    let mut d = Driver::new(cfg(1, 2, SEC));
    let first = waiting(d.acquire());
    d.create_ok();
    let c = d.take(first);
    let w1 = waiting(d.acquire());
    let w2 = waiting(d.acquire());
    assert!(d.creates.is_empty(), "a create started beyond max_open");
    d.release(c);
    assert_eq!(d.st.stats().idle, 0);
    let c = d.take(w1);
    d.release(c);
    d.take(w2);
    assert_eq!(d.st.stats().handoffs, 2);
}

#[test]
fn creates_follow_demand_and_the_cap() {
    let mut d = Driver::new(cfg(3, 3, SEC));
    let ids: Vec<_> = (0..5).map(|_| waiting(d.acquire())).collect();
    assert_eq!(d.creates.len(), 3);
    assert_eq!(
        d.st.stats().wait_count,
        2,
        "only waits at the cap count, as database/sql"
    );
    // A waiter that leaves does not cancel its create: the result serves the queue.
    d.step(|st, now, fx| st.cancel_waiter(ids[0], now, fx));
    d.create_ok();
    d.take(ids[1]);
}

#[test]
fn surplus_is_a_count_reaped_least_recently_used_first_after_grace() {
    let mut d = Driver::new(cfg(0, 1, 10 * SEC));
    let ids: Vec<_> = (0..3).map(|_| waiting(d.acquire())).collect();
    for _ in 0..3 {
        d.create_ok();
    }
    let conns: Vec<_> = ids.into_iter().map(|id| d.take(id)).collect();
    for c in conns {
        d.release(c);
        d.t += SEC;
    }
    assert_eq!(d.st.stats().surplus_idle, 2);
    // Released at t, t+1, t+2 with max_idle 1: the first went idle unstamped, so the
    // reaper's stamp pass is due at t+1 (overdue now) ...
    assert_eq!(d.st.poll_timeout(), Some(d.t - 3 * SEC + STAMP_EVERY));
    d.tick(Duration::ZERO);
    // ... but surplus appeared at t+1 and stamped it then, which is when its grace starts.
    assert_eq!(
        d.st.poll_timeout(),
        Some(d.t - 2 * SEC + 10 * SEC),
        "the oldest surplus sets the deadline"
    );
    d.tick(7 * SEC);
    assert!(d.closes.is_empty(), "surplus closed before its grace ended");
    d.tick(SEC);
    assert_eq!(d.closes, vec![CloseReason::Grace, CloseReason::Grace]);
    d.tick(100 * SEC);
    assert_eq!(d.closes.len(), 2, "max_idle connections are kept");
    d.close_all();
    assert_eq!(d.st.stats().grace_closed, 2);
}

#[test]
fn no_clock_is_read_on_the_default_fast_path() {
    let mut d = Driver::new(cfg(0, 2, 30 * SEC));
    let id = waiting(d.acquire());
    d.create_ok();
    let c = d.take(id);
    // The first unstamped release arms the reaper's stamp pass: one clock read.
    let mut fx = Effects::default();
    let mut now = Now::lazy(CLOCK);
    d.st.release(c, &mut now, &mut fx);
    assert!(now.at.is_some());
    assert_eq!(d.st.poll_timeout(), Some(now.get() + STAMP_EVERY));
    // Until that pass, none: checkouts and releases read no clock and wake nothing.
    let mut fx = Effects::default();
    let mut now = Now::lazy(CLOCK);
    for _ in 0..3 {
        let c = ready(d.st.acquire(&mut now, false, None, None, &mut fx).unwrap());
        assert!(matches!(
            d.st.push_fast(&mut Some(c), || panic!("the fast path read the clock")),
            Pushed::Idle
        ));
    }
    let c = ready(d.st.acquire(&mut now, false, None, None, &mut fx).unwrap());
    d.st.release(c, &mut now, &mut fx);
    assert!(now.at.is_none(), "the fast path read the clock");
    assert!(fx.rare.is_none() && fx.wake.is_none());
}

#[test]
fn the_reaper_stamps_what_the_fast_path_left_unstamped_within_a_second() {
    let mut d = Driver::new(cfg(0, 4, 30 * SEC));
    let ids: Vec<_> = (0..4).map(|_| waiting(d.acquire())).collect();
    for _ in 0..4 {
        d.create_ok();
    }
    let start = d.t;
    for id in ids {
        let c = d.take(id);
        d.release(c);
    }
    assert!(d.st.idle_stamps().next().is_none(), "released unstamped");
    assert_eq!(d.st.poll_timeout(), Some(start + STAMP_EVERY));
    d.tick(STAMP_EVERY);
    let stamps: Vec<_> = d.st.idle_stamps().collect();
    assert_eq!(stamps, vec![start + STAMP_EVERY; 4], "stamped by the pass");
    assert_eq!(
        d.st.poll_timeout(),
        None,
        "a pool at rest: no pass after it"
    );
    // Knobs set later count from the pass, not from the call.
    d.t += 20 * SEC;
    d.step(|st, now, fx| st.set_max_idle_time(Some(5 * SEC), now, fx));
    d.tick(Duration::ZERO);
    assert_eq!(d.closes, vec![CloseReason::MaxIdleTime; 4]);
}

#[test]
fn lifetime_jitter_only_shortens() {
    let config = Config {
        max_lifetime: Some(100 * SEC),
        lifetime_jitter: Some(20 * SEC),
        ..cfg(0, 100, SEC)
    };
    let mut d = Driver::new(config);
    let ids: Vec<_> = (0..50).map(|_| waiting(d.acquire())).collect();
    for _ in 0..50 {
        d.create_ok();
    }
    let start = d.t;
    let conns: Vec<_> = ids.into_iter().map(|id| d.take(id)).collect();
    let lives: Vec<_> = conns
        .iter()
        .map(|c| d.st.expires_at(c).unwrap() - start)
        .collect();
    assert!(
        lives.iter().all(|l| *l <= 100 * SEC && *l >= 80 * SEC),
        "{lives:?}"
    );
    assert!(
        lives.iter().any(|l| *l < 95 * SEC),
        "no jitter applied: {lives:?}"
    );
}

#[test]
fn the_breaker_opens_after_the_threshold_and_fails_fast() {
    let config = Config {
        breaker_threshold: 2,
        ..cfg(4, 2, SEC)
    };
    let mut d = Driver::new(config);
    for i in 0..2 {
        let id = waiting(d.acquire());
        let tag = d.creates.remove(0);
        d.step(|st, now, fx| st.handle_create_failed(Error::new(Kind::Create), tag, now, fx));
        match d.step(|st, now, _| st.poll_waiter(id, Waker::noop(), now)) {
            WaitPoll::Ready(Err(e)) => assert!(e.is_create(), "{i}: {e:?}"),
            _ => panic!("the waiter did not get its create error"),
        }
    }
    let err = d
        .step(|st, now, fx| st.acquire(now, false, None, None, fx))
        .err()
        .expect("breaker open");
    assert!(err.is_unavailable());
    assert!(d.creates.is_empty());
    // The reaper probes after the backoff.
    d.tick(Duration::from_millis(50));
    assert!(d.creates.is_empty());
    d.tick(Duration::from_millis(60));
    assert_eq!(d.creates, vec![None]);
    d.create_ok();
    assert!(
        matches!(d.acquire(), Acquired::Ready(_)),
        "the probe's connection was not pooled"
    );
}

#[test]
fn close_fails_waiters_and_drains() {
    let mut d = Driver::new(cfg(1, 1, SEC));
    let a = waiting(d.acquire());
    let b = waiting(d.acquire());
    d.create_ok();
    let c = d.take(a);
    let mut fx = Effects::default();
    d.st.close(&mut fx);
    assert_eq!(
        fx.rare.as_ref().map_or(0, |r| r.wakes.len()) + usize::from(fx.wake.is_some()),
        0,
        "noop wakers are not stored twice"
    );
    d.absorb(fx);
    match d.step(|st, now, _| st.poll_waiter(b, Waker::noop(), now)) {
        WaitPoll::Ready(Err(e)) => assert!(e.is_closed()),
        _ => panic!("a waiter survived close"),
    }
    let mut fx = Effects::default();
    d.st.release(c, &mut Now::at(d.t, CLOCK), &mut fx);
    assert_eq!(fx.take_closes()[0].1, CloseReason::Shutdown);
    d.absorb(fx);
    let mut fx = Effects::default();
    d.st.handle_closed(CloseReason::Shutdown, &mut Now::at(d.t, CLOCK), &mut fx);
    assert!(fx.flag(|r| r.drained));
}

/// A pool for the rotation rules: room for 4, every connection living exactly 80 s (no
/// jitter), so its rotation point is 80 s less the lead (2 s until a create was timed).
fn rotating() -> Driver {
    Driver::new(Config {
        max_lifetime: Some(80 * SEC),
        lifetime_jitter: Some(Duration::ZERO),
        ..cfg(4, 4, SEC)
    })
}

/// One connection, created at the start and now idle; the reaper has looked since.
fn one_idle_connection(d: &mut Driver) {
    let id = waiting(d.acquire());
    d.create_ok();
    let c = d.take(id);
    d.release(c);
    d.tick(SEC);
}

#[test]
fn a_due_connection_is_replaced_before_it_expires_then_retired_when_idle() {
    let mut d = rotating();
    one_idle_connection(&mut d);
    // Its rotation point, 78 s: the checkout 1 s ago keeps the pool in use for an eighth of
    // the lifetime (a reaper turn then finds that window passed and waits for the expiry).
    assert_eq!(d.st.poll_timeout(), Some(d.t + 77 * SEC));
    d.t += 77 * SEC + Duration::from_millis(500); // 78.5 s: due (the lead is 2 s)
    let c = ready(d.acquire());
    assert_eq!(d.creates, vec![None], "no replacement started");
    assert_eq!(d.st.stats().rotated, 1);
    d.release(c);
    assert_eq!(
        d.creates.len(),
        1,
        "a second replacement for the same connection"
    );
    assert!(d.closes.is_empty(), "retired before its replacement landed");
    d.t += Duration::from_millis(30);
    d.create_ok();
    assert_eq!(
        d.closes,
        vec![CloseReason::MaxLifetime],
        "the old one was not retired"
    );
    d.close_all();
    let s = d.st.stats();
    assert_eq!((s.open, s.idle, s.max_lifetime_closed), (1, 1, 1));
    assert_eq!(s.created - s.closed() - s.detached, s.open as u64);
    // The lead is now four times the timed create (30 ms): the new connection, created at
    // 78.53 s, is due at 158.53 s - 120 ms.
    assert_eq!(d.st.rotation_lead(), Duration::from_millis(120));
}

#[test]
fn a_checked_out_connection_is_retired_on_return_never_under_its_holder() {
    let mut d = rotating();
    one_idle_connection(&mut d);
    d.t += 78 * SEC; // 79 s
    let old = ready(d.acquire());
    d.create_ok();
    assert!(d.closes.is_empty(), "closed while checked out");
    assert_eq!(d.st.stats().idle, 1, "the replacement did not go idle");
    // A checkout now takes the replacement; the old one retires when it comes back.
    let new = ready(d.acquire());
    d.release(old);
    assert_eq!(d.closes, vec![CloseReason::MaxLifetime]);
    d.close_all();
    d.release(new);
    assert_eq!(d.st.stats().open, 1);
}

#[test]
fn a_failed_replacement_loses_nothing_and_backs_off() {
    let mut d = rotating();
    one_idle_connection(&mut d);
    d.t += 78 * SEC; // 79 s
    let c = ready(d.acquire());
    let tag = d.creates.remove(0);
    d.step(|st, now, fx| st.handle_create_failed(Error::new(Kind::Create), tag, now, fx));
    d.release(c);
    assert!(d.closes.is_empty(), "the old connection was closed");
    assert!(d.creates.is_empty(), "retried before the breaker's backoff");
    let c = ready(d.acquire());
    assert!(d.creates.is_empty(), "retried before the breaker's backoff");
    d.t += Duration::from_millis(100); // the backoff: another try
    d.release(c);
    assert_eq!(d.creates, vec![None]);
    assert_eq!(d.st.stats().rotated, 2);
}

#[test]
fn an_idle_pool_does_not_rotate() {
    let mut d = rotating();
    one_idle_connection(&mut d);
    d.tick(78 * SEC); // 79 s: due, but nothing checked out and no checkout since the last look
    assert!(d.creates.is_empty(), "an idle pool rotated");
    assert_eq!(d.st.poll_timeout(), Some(d.t + SEC), "only its expiry");
    d.tick(SEC);
    assert_eq!(
        d.closes,
        vec![CloseReason::MaxLifetime],
        "it did not expire"
    );
}

#[test]
fn an_idle_connection_of_a_busy_pool_is_replaced_by_the_reaper() {
    let mut d = rotating();
    let start = d.t;
    one_idle_connection(&mut d);
    // A second connection, checked out all along: the pool is in use.
    let first = ready(d.acquire());
    let id = waiting(d.acquire());
    d.create_ok();
    let _held = d.take(id);
    d.release(first);
    d.tick(SEC);
    d.t += 60 * SEC;
    let at = d.st.poll_timeout().expect("a deadline");
    assert_eq!(at, start + 78 * SEC, "the rotation point is not armed");
    d.tick(at - d.t);
    assert_eq!(d.creates, vec![None], "the reaper did not replace it");
    d.create_ok();
    assert_eq!(d.closes, vec![CloseReason::MaxLifetime]);
}

#[test]
fn at_max_open_nothing_rotates() {
    let mut d = Driver::new(Config {
        max_lifetime: Some(80 * SEC),
        lifetime_jitter: Some(Duration::ZERO),
        ..cfg(1, 1, SEC)
    });
    one_idle_connection(&mut d);
    d.t += 78 * SEC;
    let c = ready(d.acquire());
    d.release(c);
    assert!(d.creates.is_empty(), "rotation went beyond max_open");
    assert_eq!(d.st.stats().rotated, 0);
}

/// Review finding: the replacement was placed before the connection it replaces was
/// retired, so with no grace it closed as surplus, and then the old one closed too.
#[test]
fn with_no_grace_a_replacement_takes_the_place_of_the_idle_connection_it_replaces() {
    let mut d = Driver::new(Config {
        max_lifetime: Some(80 * SEC),
        lifetime_jitter: Some(Duration::ZERO),
        ..cfg(4, 2, Duration::ZERO)
    });
    let ids: Vec<_> = (0..3).map(|_| waiting(d.acquire())).collect();
    for _ in 0..3 {
        d.create_ok();
    }
    let mut conns: Vec<_> = ids.into_iter().map(|id| d.take(id)).collect();
    let held = conns.pop().expect("three connections");
    for c in conns {
        d.release(c);
    }
    assert_eq!(d.st.stats().idle, 2);
    d.tick(78 * SEC + Duration::from_millis(500)); // due; one checked out: in use
    assert_eq!(d.creates, vec![None], "one replacement (room for one)");
    d.create_ok();
    assert_eq!(
        d.closes,
        vec![CloseReason::MaxLifetime],
        "the replacement was lost"
    );
    d.close_all();
    let s = d.st.stats();
    assert_eq!((s.open, s.idle, s.max_idle_closed), (3, 2, 0), "{s:?}");
    d.release(held);
}

/// Review finding: a pool whose idle entries are stamped on the way in has no stamp pass,
/// so a checkout long before the reaper's next turn counted as "in use" at that turn.
#[test]
fn a_checkout_long_before_does_not_make_a_quiet_pool_rotate() {
    let mut d = Driver::new(Config {
        max_lifetime: Some(80 * SEC),
        lifetime_jitter: Some(Duration::ZERO),
        max_idle_time: Some(3600 * SEC),
        ..cfg(4, 4, SEC)
    });
    let id = waiting(d.acquire());
    d.create_ok();
    let c = d.take(id);
    d.release(c);
    d.tick(78 * SEC + Duration::from_millis(500)); // due; the last checkout 78 s ago
    assert!(d.creates.is_empty(), "a quiet pool rotated");
    // A checkout now marks the pool in use: the reaper replaces it.
    let c = ready(d.acquire());
    assert_eq!(d.creates, vec![None], "a busy pool did not rotate");
    d.release(c);
}

/// Review finding: failed replacements counted toward the breaker's threshold, so a server
/// refusing the one extra connection rotation needs made checkouts fail fast.
#[test]
fn failed_replacements_space_the_next_try_but_never_open_the_breaker() {
    let mut d = Driver::new(Config {
        max_lifetime: Some(80 * SEC),
        lifetime_jitter: Some(Duration::ZERO),
        breaker_threshold: 1,
        ..cfg(4, 4, SEC)
    });
    one_idle_connection(&mut d);
    d.t += 78 * SEC; // 79 s: due
    for _ in 0..3 {
        let c = ready(d.acquire());
        let tag = d.creates.remove(0);
        d.step(|st, now, fx| st.handle_create_failed(Error::new(Kind::Create), tag, now, fx));
        assert!(
            !d.st.breaker.is_open(),
            "a failed replacement opened the breaker"
        );
        d.release(c);
        let retry = d.st.breaker.retry_at().expect("the next try is spaced");
        d.t = retry;
    }
    // A checkout that must create still creates.
    let c = ready(d.acquire());
    assert!(matches!(d.acquire(), Acquired::Wait(_)));
    d.release(c);
}

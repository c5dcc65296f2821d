//! The state machine driven step by step, with no runtime and a virtual clock: unit tests of
//! its rules, and a proptest run against a simple reference model.

use std::task::Waker;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::Config;

fn state(config: Config) -> State<u32> {
    let (limits, _) = config.validate(None).unwrap();
    State::new(limits, config.max_idle, config.lifetime_jitter)
}

pub(crate) fn cfg(max_open: usize, max_idle: usize, grace: Duration) -> Config {
    Config {
        max_open,
        max_idle,
        idle_grace: grace,
        breaker_threshold: 0,
        ..Config::default()
    }
}

pub(crate) const SEC: Duration = Duration::from_secs(1);

/// Drives a state: runs creates and closes the way the shell would, on a virtual clock.
struct Driver {
    st: State<u32>,
    t: Instant,
    creates: Vec<Option<WaiterId>>,
    closes: Vec<CloseReason>,
}

impl Driver {
    fn new(config: Config) -> Self {
        Driver {
            st: state(config),
            t: Instant::now(),
            creates: Vec::new(),
            closes: Vec::new(),
        }
    }

    fn absorb(&mut self, mut fx: Effects<u32>) {
        self.creates.extend(fx.take_creates());
        self.closes
            .extend(fx.take_closes().into_iter().map(|(_, r)| r));
    }

    fn step<R>(&mut self, f: impl FnOnce(&mut State<u32>, &mut Now, &mut Effects<u32>) -> R) -> R {
        let mut fx = Effects::default();
        let r = f(&mut self.st, &mut Now::at(self.t), &mut fx);
        self.absorb(fx);
        r
    }

    fn acquire(&mut self) -> Acquired<u32> {
        self.step(|st, now, fx| st.acquire(now, false, None, None, fx))
            .unwrap()
    }

    fn create_ok(&mut self) {
        let tag = self.creates.remove(0);
        self.step(|st, now, fx| st.handle_created(7, 0, tag, now, fx));
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
        let t = self.t;
        let mut fx = Effects::default();
        self.st.handle_timeout(t, &mut fx);
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
    let mut now = Now::lazy();
    d.st.release(c, &mut now, &mut fx);
    assert!(now.0.is_some());
    assert_eq!(d.st.poll_timeout(), Some(now.get() + STAMP_EVERY));
    // Until that pass, none: checkouts and releases read no clock and wake nothing.
    let mut fx = Effects::default();
    let mut now = Now::lazy();
    for _ in 0..3 {
        let c = ready(d.st.acquire(&mut now, false, None, None, &mut fx).unwrap());
        assert!(d.st.push_fast(&mut Some(c), || panic!("the fast path read the clock")));
    }
    let c = ready(d.st.acquire(&mut now, false, None, None, &mut fx).unwrap());
    d.st.release(c, &mut now, &mut fx);
    assert!(now.0.is_none(), "the fast path read the clock");
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
    d.st.release(c, &mut Now::at(d.t), &mut fx);
    assert_eq!(fx.take_closes()[0].1, CloseReason::Shutdown);
    d.absorb(fx);
    let mut fx = Effects::default();
    d.st.handle_closed(CloseReason::Shutdown, &mut Now::at(d.t), &mut fx);
    assert!(fx.flag(|r| r.drained));
}

// ---- proptest: the state against a reference model ----

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Poll(usize),
    Cancel(usize),
    Timeout(usize),
    Release(usize),
    Discard(usize),
    Detach(usize),
    CreateDone(usize, bool),
    CloseDone(usize),
    SetMaxIdle(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        3 => any::<usize>().prop_map(Op::Poll),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Timeout),
        3 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Discard),
        1 => any::<usize>().prop_map(Op::Detach),
        3 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(k, ok)| Op::CreateDone(k, ok)),
        2 => any::<usize>().prop_map(Op::CloseDone),
        1 => (0usize..4).prop_map(Op::SetMaxIdle),
        1 => prop::bool::weighted(0.1).prop_map(|_| Op::Close),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum W {
    Waiting,
    Served,
    Failed,
    Gone,
}

/// The reference: counts and a queue, with the rules written the plain way.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) max_open: usize,
    pub(crate) max_idle: usize,
    pub(crate) grace_zero: bool,
    pub(crate) closed: bool,
    pub(crate) idle: usize,
    pub(crate) open: usize,
    pub(crate) creating: usize,
    pub(crate) closing: usize,
    /// Waiters by arrival index.
    pub(crate) waiters: Vec<W>,
    /// Tag of each pending create (a waiter index).
    pub(crate) creates: Vec<Option<usize>>,
    /// Per waiter: a create was started on its behalf.
    pub(crate) has_create: Vec<bool>,
    /// A create failed since the last one succeeded.
    pub(crate) failure: bool,
}

impl Model {
    pub(crate) fn new(max_open: usize, max_idle: usize, grace_zero: bool) -> Self {
        Model {
            max_open,
            max_idle: max_idle.min(max_open),
            grace_zero,
            closed: false,
            idle: 0,
            open: 0,
            creating: 0,
            closing: 0,
            waiters: Vec::new(),
            creates: Vec::new(),
            has_create: Vec::new(),
            failure: false,
        }
    }

    /// A newcomer queues.
    pub(crate) fn queue(&mut self) {
        self.waiters.push(W::Waiting);
        self.has_create.push(false);
        self.balance();
    }

    /// A create ends: its connection is put, or its slot frees and the error goes to the
    /// oldest waiter with a create, unless something in flight may still serve it.
    pub(crate) fn create_done(&mut self, ok: bool) {
        self.creating -= 1;
        if ok {
            self.failure = false;
            self.put();
            return;
        }
        self.open -= 1;
        self.failure = true;
        if self.in_flight() == 0 {
            self.fail_oldest_created();
        }
        self.balance();
    }

    fn in_flight(&self) -> usize {
        self.open - self.idle - self.closing
    }

    fn fail_oldest_created(&mut self) -> bool {
        let oldest =
            (0..self.waiters.len()).find(|&w| self.waiters[w] == W::Waiting && self.has_create[w]);
        if let Some(w) = oldest {
            self.waiters[w] = W::Failed;
        }
        oldest.is_some()
    }
    pub(crate) fn waiting(&self) -> usize {
        self.waiters.iter().filter(|w| **w == W::Waiting).count()
    }

    pub(crate) fn balance(&mut self) {
        if self.closed {
            return;
        }
        while self.waiting() > self.creating && self.open < self.max_open {
            let uncreated = (0..self.waiters.len())
                .find(|&w| self.waiters[w] == W::Waiting && !self.has_create[w]);
            // While creates fail, one create per waiter; otherwise any waiter in turn.
            let any = || (0..self.waiters.len()).find(|&w| self.waiters[w] == W::Waiting);
            let Some(w) = uncreated.or_else(|| if self.failure { None } else { any() }) else {
                break;
            };
            self.has_create[w] = true;
            self.open += 1;
            self.creating += 1;
            self.creates.push(Some(w));
        }
        if self.waiting() > 0 && self.in_flight() == 0 && self.closing == 0 && self.failure {
            while self.fail_oldest_created() {}
        }
    }

    pub(crate) fn put(&mut self) {
        if self.closed || self.open - self.closing > self.max_open {
            self.closing += 1;
        } else if let Some(head) = self.waiters.iter().position(|w| *w == W::Waiting) {
            self.waiters[head] = W::Served;
        } else if self.idle >= self.max_idle && self.grace_zero {
            self.closing += 1;
        } else {
            self.idle += 1;
        }
    }

    fn shrink(&mut self) {
        while self.idle > self.max_idle {
            self.idle -= 1;
            self.closing += 1;
        }
    }
}

pub(crate) fn pick<T>(v: &[T], i: usize) -> Option<usize> {
    (!v.is_empty()).then(|| i % v.len())
}

fn run_model(
    max_open: usize,
    max_idle: usize,
    grace_zero: bool,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let grace = if grace_zero {
        Duration::ZERO
    } else {
        100 * SEC
    };
    let mut st = state(cfg(max_open, max_idle, grace));
    let max_idle = max_idle.min(max_open);
    let mut m = Model::new(max_open, max_idle, grace_zero);
    let t = Instant::now();
    let mut ids: Vec<WaiterId> = Vec::new();
    let mut out: Vec<Conn<u32>> = Vec::new();
    let mut creates: Vec<Option<WaiterId>> = Vec::new();
    let mut closes: Vec<CloseReason> = Vec::new();
    let noop = Waker::noop();

    for op in ops {
        let mut fx = Effects::default();
        let now = &mut Now::at(t);
        match op {
            Op::Acquire => {
                // As the shell: the one-step path first, the general one when it declines.
                let got = match st.pop_fast() {
                    Some(c) => Ok(Acquired::Ready(c)),
                    None => st.acquire(now, false, None, None, &mut fx),
                };
                if m.closed {
                    prop_assert!(got.is_err());
                } else if m.waiting() == 0 && m.idle > 0 {
                    m.idle -= 1;
                    match got {
                        Ok(Acquired::Ready(c)) => out.push(c),
                        _ => prop_assert!(false, "an idle connection was not handed out"),
                    }
                } else {
                    match got {
                        Ok(Acquired::Wait(id)) => ids.push(id),
                        _ => prop_assert!(false, "a newcomer did not queue"),
                    }
                    m.queue();
                }
            }
            Op::Poll(i) | Op::Timeout(i) => {
                let Some(i) = pick(&m.waiters, i) else {
                    continue;
                };
                if m.waiters[i] == W::Gone {
                    continue;
                }
                let timeout = matches!(op, Op::Timeout(_));
                let r = if timeout {
                    Some(st.timeout_waiter(ids[i], now, &mut fx))
                } else {
                    match st.poll_waiter(ids[i], noop, now) {
                        WaitPoll::Ready(r) => Some(r),
                        WaitPoll::Pending(_) => None,
                    }
                };
                match (m.waiters[i], r) {
                    (W::Served, Some(Ok((c, _)))) => out.push(c),
                    (W::Failed, Some(Err(_))) => {}
                    (W::Waiting, None) if !timeout => continue,
                    (W::Waiting, Some(Err(e))) if timeout => prop_assert!(e.is_timeout()),
                    (w, r) => prop_assert!(
                        false,
                        "waiter {i}: model {w:?}, state {:?}",
                        r.map(|r| r.map(|_| ()))
                    ),
                }
                m.waiters[i] = W::Gone;
            }
            Op::Cancel(i) => {
                let Some(i) = pick(&m.waiters, i) else {
                    continue;
                };
                if m.waiters[i] == W::Gone {
                    continue;
                }
                st.cancel_waiter(ids[i], now, &mut fx);
                let was = std::mem::replace(&mut m.waiters[i], W::Gone);
                if was == W::Served {
                    m.put();
                }
            }
            Op::Release(j) | Op::Discard(j) | Op::Detach(j) => {
                let Some(j) = pick(&out, j) else { continue };
                let c = out.swap_remove(j);
                match op {
                    Op::Release(_) => {
                        let mut slot = Some(c);
                        if !st.push_fast(&mut slot, || now.get()) {
                            st.release(slot.expect("kept when not pushed"), now, &mut fx);
                        }
                        m.put();
                    }
                    Op::Discard(_) => {
                        st.begin_close(c, CloseReason::Broken, &mut fx);
                        m.closing += 1;
                    }
                    _ => {
                        st.detach(now, &mut fx);
                        m.open -= 1;
                        m.balance();
                    }
                }
            }
            Op::CreateDone(k, ok) => {
                let Some(k) = pick(&creates, k) else { continue };
                let tag = creates.remove(k);
                m.creates.remove(k);
                if ok {
                    st.handle_created(1, 0, tag, now, &mut fx);
                } else {
                    st.handle_create_failed(Error::new(Kind::Create), tag, now, &mut fx);
                }
                m.create_done(ok);
            }
            Op::CloseDone(k) => {
                let Some(k) = pick(&closes, k) else { continue };
                let reason = closes.remove(k);
                st.handle_closed(reason, now, &mut fx);
                m.closing -= 1;
                m.open -= 1;
                m.balance();
            }
            Op::SetMaxIdle(n) => {
                st.set_max_idle(n, now, &mut fx);
                m.max_idle = n.min(m.max_open);
                m.shrink();
                m.balance();
            }
            Op::Close => {
                st.close(&mut fx);
                if !m.closed {
                    m.closed = true;
                    for w in m.waiters.iter_mut().filter(|w| **w == W::Waiting) {
                        *w = W::Failed;
                    }
                    m.closing += m.idle;
                    m.idle = 0;
                }
            }
        }
        creates.extend(fx.take_creates());
        closes.extend(fx.take_closes().into_iter().map(|(_, r)| r));

        // The state agrees with the model ...
        let s = st.stats();
        let tags: Vec<Option<usize>> = creates
            .iter()
            .map(|t| t.map(|t| ids.iter().position(|id| *id == t).unwrap()))
            .collect();
        prop_assert_eq!(&tags, &m.creates, "creates differ (tags)");
        prop_assert_eq!(
            (s.open, s.idle, s.waiting),
            (m.open, m.idle, m.waiting()),
            "{:?}",
            m
        );
        prop_assert_eq!(closes.len(), m.closing);
        // ... and the invariants hold.
        prop_assert!(
            s.open <= max_open,
            "open {} over max_open {}",
            s.open,
            max_open
        );
        prop_assert!(
            s.waiting == 0 || s.idle == 0,
            "idle connections while callers wait"
        );
        let served = m.waiters.iter().filter(|w| **w == W::Served).count();
        prop_assert_eq!(
            s.open,
            s.idle + out.len() + creates.len() + closes.len() + served
        );
        prop_assert_eq!(
            s.created - s.closed() - s.detached,
            (s.open - creates.len()) as u64
        );
        if let (Some(first_waiting), Some(last_served)) = (
            m.waiters.iter().position(|w| *w == W::Waiting),
            m.waiters.iter().rposition(|w| *w == W::Served),
        ) {
            prop_assert!(last_served < first_waiting, "served out of arrival order");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_the_reference_model(max_open in 1usize..5, max_idle in 0usize..4, grace_zero in any::<bool>(), ops in prop::collection::vec(op(), 1..120)) {
        run_model(max_open, max_idle, grace_zero, ops)?;
    }
}

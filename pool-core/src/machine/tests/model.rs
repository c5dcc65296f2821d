//! The state against a simple reference model (proptest): the counts, the queue and the
//! invariants after every step. The keyed table's model test (`keyed.rs`) runs this model
//! per key.

use std::task::Waker;
use std::time::Duration;

use proptest::prelude::*;

use super::{CLOCK, SEC, cfg, epoch, state};
use crate::error::Kind;
use crate::machine::{Acquired, Conn, Effects, Now, Pushed, WaitPoll, WaiterId};
use crate::{CloseReason, Error};

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
pub(super) enum W {
    Waiting,
    Served,
    Failed,
    Gone,
}

/// The reference: counts and a queue, with the rules written the plain way.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) max_open: usize,
    pub(super) max_idle: usize,
    pub(super) grace_zero: bool,
    pub(super) closed: bool,
    pub(super) idle: usize,
    pub(super) open: usize,
    pub(super) creating: usize,
    pub(super) closing: usize,
    /// Waiters by arrival index.
    pub(super) waiters: Vec<W>,
    /// Tag of each pending create (a waiter index).
    pub(super) creates: Vec<Option<usize>>,
    /// Per waiter: a create was started on its behalf.
    pub(super) has_create: Vec<bool>,
    /// A create failed since the last one succeeded.
    pub(super) failure: bool,
}

impl Model {
    pub(super) fn new(max_open: usize, max_idle: usize, grace_zero: bool) -> Self {
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
    pub(super) fn queue(&mut self) {
        self.waiters.push(W::Waiting);
        self.has_create.push(false);
        self.balance();
    }

    /// A create ends: its connection is put, or its slot frees and the error goes to the
    /// oldest waiter with a create, unless something in flight may still serve it.
    pub(super) fn create_done(&mut self, ok: bool) {
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
    pub(super) fn waiting(&self) -> usize {
        self.waiters.iter().filter(|w| **w == W::Waiting).count()
    }

    pub(super) fn balance(&mut self) {
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

    pub(super) fn put(&mut self) {
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

pub(super) fn pick<T>(v: &[T], i: usize) -> Option<usize> {
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
    let t = epoch();
    let mut ids: Vec<WaiterId> = Vec::new();
    let mut out: Vec<Conn<u32>> = Vec::new();
    let mut creates: Vec<Option<WaiterId>> = Vec::new();
    let mut closes: Vec<CloseReason> = Vec::new();
    let noop = Waker::noop();

    for op in ops {
        let mut fx = Effects::default();
        let now = &mut Now::at(t, CLOCK);
        match op {
            Op::Acquire => {
                // As the shell: the one-step path first, the general one when it declines.
                let got = match st.pop_fast() {
                    Some(c) => Ok(Acquired::Ready(c)),
                    None => match st.wait_fast(noop, now) {
                        Some(id) => Ok(Acquired::Wait(id)),
                        None => st.acquire(now, false, None, None, &mut fx),
                    },
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
                        if let Pushed::Declined = st.push_fast(&mut slot, || now.get()) {
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
                    st.handle_created(1, 0, tag, 0.5, now, &mut fx);
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

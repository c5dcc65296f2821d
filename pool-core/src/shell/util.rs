//! Small helpers of the shell: panic-catching futures and a lazily computed deadline.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// Polls a boxed future, turning a panic inside it into an `Err` with the panic's message.
pub(crate) struct CatchUnwind<F>(pub F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The checkout's deadline, computed on first need so the fast path reads no clock.
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    /// When it was computed (the checkout's start, as precise as its clock), and the deadline.
    at: Option<Option<(Instant, Option<Instant>)>>,
}

impl Deadline {
    pub fn new(timeout: Option<Duration>) -> Self {
        Deadline { timeout, at: None }
    }

    fn computed(&mut self) -> Option<(Instant, Option<Instant>)> {
        *self.at.get_or_insert_with(|| {
            self.timeout.map(|t| {
                let now = Instant::now();
                (now, now.checked_add(t))
            })
        })
    }

    /// `None`: no deadline (or one past what an `Instant` can hold). Reads the clock only
    /// the first time, and only with a timeout.
    pub fn get(&mut self) -> Option<Instant> {
        self.computed().and_then(|(_, at)| at)
    }

    /// When the deadline was computed: the start of a wait that has one (`None` without a
    /// timeout). Reads the clock as [`get`](Deadline::get) does.
    pub fn started(&mut self) -> Option<Instant> {
        self.computed().map(|(start, _)| start)
    }
}

//! A `tracing` subscriber that keeps what it is given, for tests of spans and events: every
//! span with its fields (as recorded so far) and its parent, every event with the span it
//! happened in, each with the thread it happened on.
//!
//! Its queries return what happened on the calling thread: a test's current-thread runtime
//! runs the pool's tasks on the test's thread, so tests that run in parallel threads of one
//! process can share one `Capture` installed as the global default
//! (`tracing::subscriber::set_global_default`), each seeing its own spans. Prefer that to
//! [`Capture::set_default`] (a subscriber for one thread) in such tests: `tracing` caches per
//! call site whether anyone is interested, and a thread-local subscriber racing with other
//! threads' first use of a call site can miss a span now and then.
//!
//! ```
//! use pool_core::testing::spans::Capture;
//!
//! let capture = Capture::new();
//! {
//!     let _on = capture.set_default();
//!     let span = tracing::info_span!(target: "demo", "outer", id = 7);
//!     span.in_scope(|| tracing::info!(target: "demo", "inside"));
//! }
//! let outer = &capture.spans_named("demo", "outer")[0];
//! assert_eq!(outer.field("id"), Some("7"));
//! assert_eq!(capture.events()[0].span, Some(outer.id));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Metadata, Subscriber};

/// A span as captured: its fields hold the values recorded so far, formatted (`Debug` for
/// most values, strings without quotes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CapturedSpan {
    /// The span's id (unique for the capture's life: ids are never reused).
    pub id: u64,
    /// The thread it was made on.
    pub thread: ThreadId,
    /// The span's name.
    pub name: &'static str,
    /// The span's target.
    pub target: &'static str,
    /// The span's level.
    pub level: tracing::Level,
    /// The parent span's id (explicit, or the span current on the thread when it was made).
    pub parent: Option<u64>,
    /// Its fields by name, as recorded so far (a field declared `Empty` and never recorded is
    /// absent).
    pub fields: BTreeMap<&'static str, String>,
    /// The spans it follows from (`Span::follows_from`): causes that are not its parent.
    pub follows: Vec<u64>,
}

impl CapturedSpan {
    /// The value recorded for `name`, if any.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event as captured.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CapturedEvent {
    /// The event's target.
    pub target: &'static str,
    /// The event's level.
    pub level: tracing::Level,
    /// Its message (the `message` field), or empty.
    pub message: String,
    /// Its other fields by name, formatted.
    pub fields: BTreeMap<&'static str, String>,
    /// The span it happened in.
    pub span: Option<u64>,
    /// The thread it happened on.
    pub thread: ThreadId,
}

#[derive(Default)]
struct Captured {
    spans: Vec<CapturedSpan>,
    meta: Vec<&'static Metadata<'static>>,
    events: Vec<CapturedEvent>,
    /// The spans entered on each thread, innermost last.
    entered: HashMap<ThreadId, Vec<u64>>,
}

impl Captured {
    fn current(&self) -> Option<u64> {
        self.entered
            .get(&std::thread::current().id())
            .and_then(|stack| stack.last().copied())
    }

    fn span_mut(&mut self, id: u64) -> Option<&mut CapturedSpan> {
        // Spans are pushed in id order, starting at 1.
        self.spans
            .get_mut(usize::try_from(id).ok()?.checked_sub(1)?)
    }
}

/// The capturing subscriber (a handle: clones share what was captured).
#[derive(Clone)]
pub struct Capture {
    inner: Arc<Mutex<Captured>>,
    /// The most verbose level it wants.
    max_level: tracing::Level,
}

impl Default for Capture {
    fn default() -> Capture {
        Capture {
            inner: Arc::default(),
            max_level: tracing::Level::TRACE,
        }
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("Capture")
            .field("spans", &inner.spans.len())
            .field("events", &inner.events.len())
            .finish()
    }
}

impl Capture {
    /// An empty capture of every level.
    pub fn new() -> Capture {
        Capture::default()
    }

    /// An empty capture that wants nothing more verbose than `level` (to test what code does
    /// when a level is filtered out).
    pub fn with_max_level(level: tracing::Level) -> Capture {
        Capture {
            max_level: level,
            ..Capture::default()
        }
    }

    /// Makes this the current thread's subscriber until the guard is dropped.
    #[must_use = "the subscriber is uninstalled when the guard is dropped"]
    pub fn set_default(&self) -> DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    /// Every span made on this thread so far, in the order they were made.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        let here = std::thread::current().id();
        let inner = self.inner.lock();
        inner
            .spans
            .iter()
            .filter(|s| s.thread == here)
            .cloned()
            .collect()
    }

    /// The spans of `target` called `name` made on this thread, in the order they were made.
    pub fn spans_named(&self, target: &str, name: &str) -> Vec<CapturedSpan> {
        let mut spans = self.spans();
        spans.retain(|s| s.target == target && s.name == name);
        spans
    }

    /// The span with this id (made on any thread).
    pub fn span(&self, id: u64) -> Option<CapturedSpan> {
        self.inner.lock().span_mut(id).map(|s| s.clone())
    }

    /// The spans `id` is nested in, its parent first.
    pub fn ancestors(&self, id: u64) -> Vec<CapturedSpan> {
        let mut out = Vec::new();
        let mut at = self.span(id).and_then(|s| s.parent);
        while let Some(p) = at.and_then(|p| self.span(p)) {
            at = p.parent;
            out.push(p);
        }
        out
    }

    /// Every event on this thread so far, in order.
    pub fn events(&self) -> Vec<CapturedEvent> {
        let here = std::thread::current().id();
        let inner = self.inner.lock();
        inner
            .events
            .iter()
            .filter(|e| e.thread == here)
            .cloned()
            .collect()
    }
}

/// Formats each field it is shown.
struct Fields<'a> {
    fields: &'a mut BTreeMap<&'static str, String>,
    message: Option<&'a mut String>,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: String) {
        match &mut self.message {
            Some(message) if field.name() == "message" => **message = value,
            _ => {
                self.fields.insert(field.name(), value);
            }
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.max_level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max_level.into())
    }

    // Values are formatted before the lock is taken: a `Debug` or `Display` that emits an
    // event of its own would otherwise wait on the lock this thread holds.
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let meta = attrs.metadata();
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields {
            fields: &mut fields,
            message: None,
        });
        let mut inner = self.inner.lock();
        let parent = if attrs.is_root() {
            None
        } else if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else {
            inner.current()
        };
        let id = inner.spans.len() as u64 + 1;
        inner.spans.push(CapturedSpan {
            id,
            thread: std::thread::current().id(),
            name: meta.name(),
            target: meta.target(),
            level: *meta.level(),
            parent,
            fields,
            follows: Vec::new(),
        });
        inner.meta.push(meta);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = BTreeMap::new();
        values.record(&mut Fields {
            fields: &mut fields,
            message: None,
        });
        if let Some(span) = self.inner.lock().span_mut(span.into_u64()) {
            span.fields.extend(fields);
        }
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        if let Some(span) = self.inner.lock().span_mut(span.into_u64()) {
            span.follows.push(follows.into_u64());
        }
    }

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut captured = CapturedEvent {
            target: meta.target(),
            level: *meta.level(),
            message: String::new(),
            fields: BTreeMap::new(),
            span: None,
            thread: std::thread::current().id(),
        };
        event.record(&mut Fields {
            fields: &mut captured.fields,
            message: Some(&mut captured.message),
        });
        let mut inner = self.inner.lock();
        captured.span = if event.is_root() {
            None
        } else if let Some(p) = event.parent() {
            Some(p.into_u64())
        } else {
            inner.current()
        };
        inner.events.push(captured);
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let inner = self.inner.lock();
        let meta = inner
            .current()
            .and_then(|id| Some((id, *inner.meta.get(usize::try_from(id).ok()? - 1)?)));
        match meta {
            Some((id, meta)) => tracing_core::span::Current::new(Id::from_u64(id), meta),
            None => tracing_core::span::Current::none(),
        }
    }

    fn enter(&self, span: &Id) {
        let mut inner = self.inner.lock();
        let stack = inner
            .entered
            .entry(std::thread::current().id())
            .or_default();
        stack.push(span.into_u64());
    }

    fn exit(&self, span: &Id) {
        let mut inner = self.inner.lock();
        if let Some(stack) = inner.entered.get_mut(&std::thread::current().id())
            && let Some(at) = stack.iter().rposition(|&s| s == span.into_u64())
        {
            stack.remove(at);
        }
    }
}

//! The public API's promises that only the compiler checks: what is `Send` and `Sync`, what
//! is `Debug` without asking the manager to be. A broken promise fails to compile.

use std::cell::Cell;
use std::fmt::Debug;
use std::time::Duration;

use pool_core::testing::{KeyedScripted, ScriptedManager};
use pool_core::{
    Binding, Builder, CloseReason, Config, Error, Get, GetOwned, GotConn, Health, HeldTooLong,
    IdleOrder, KeyedBuilder, KeyedConfig, KeyedGet, KeyedGetOwned, KeyedManager, KeyedPool,
    KeyedPooled, LeakTrace, Manager, Panicked, Pool, Pooled, Returned, Stats, async_trait,
};

fn send<T: Send>() {}
fn send_sync<T: Send + Sync>() {}
fn debug<T: Debug + ?Sized>() {}

/// A manager that is not `Debug`, whose resource is `Send` but not `Sync`.
struct Plain;

#[async_trait]
impl Manager for Plain {
    type Resource = Cell<u64>;
    type Error = std::io::Error;
    async fn create(&self) -> Result<Cell<u64>, std::io::Error> {
        Ok(Cell::new(0))
    }
}

/// A key that is not `Debug`.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Host(String);

/// A keyed manager that is not `Debug`, with a key that is not `Debug` either.
struct Dialer;

#[async_trait]
impl KeyedManager for Dialer {
    type Key = Host;
    type Resource = u64;
    type Error = std::io::Error;
    async fn create(&self, _: &Host) -> Result<u64, std::io::Error> {
        Ok(0)
    }
}

type M = ScriptedManager;
type K = KeyedScripted<String>;

#[test]
fn handles_builders_and_guards_are_send_and_sync_and_futures_are_send() {
    send_sync::<Pool<M>>();
    send_sync::<KeyedPool<K>>();
    send_sync::<Builder<M>>();
    send_sync::<KeyedBuilder<K>>();
    send_sync::<Pooled<'static, M>>();
    send_sync::<KeyedPooled<'static, K>>();
    // Futures go to `tokio::spawn`: `Send`.
    send::<Get<'static, M>>();
    send::<GetOwned<'static, M>>();
    send::<KeyedGet<'static, 'static, K>>();
    send::<KeyedGet<'static, 'static, K, str>>();
    send::<KeyedGetOwned<'static, 'static, K>>();
    send::<KeyedGetOwned<'static, 'static, K, str>>();
    // A resource that is `Send` but not `Sync` still gives `Send + Sync` handles, and
    // guards and futures that are `Send`.
    send_sync::<Pool<Plain>>();
    send_sync::<Builder<Plain>>();
    send::<Pooled<'static, Plain>>();
    send::<Get<'static, Plain>>();
    send::<GetOwned<'static, Plain>>();
    // Plain data.
    send_sync::<Config>();
    send_sync::<KeyedConfig>();
    send_sync::<Stats>();
    send_sync::<Error>();
    send_sync::<HeldTooLong<'static>>();
}

#[test]
fn every_public_type_is_debug_without_the_manager_or_the_key_being_debug() {
    debug::<Pool<Plain>>();
    debug::<Builder<Plain>>();
    debug::<Get<'static, Plain>>();
    debug::<GetOwned<'static, Plain>>();
    // A guard shows its resource, as `MutexGuard` does: that one needs `Debug`.
    debug::<Pooled<'static, Plain>>();
    debug::<KeyedPool<Dialer>>();
    debug::<KeyedBuilder<Dialer>>();
    debug::<KeyedGet<'static, 'static, Dialer>>();
    debug::<KeyedGet<'static, 'static, Dialer, str>>();
    debug::<KeyedGetOwned<'static, 'static, Dialer, str>>();
    debug::<KeyedPooled<'static, Dialer>>();
    debug::<Config>();
    debug::<KeyedConfig>();
    debug::<Stats>();
    debug::<Error>();
    debug::<Panicked>();
    debug::<CloseReason>();
    debug::<GotConn>();
    debug::<Returned>();
    debug::<HeldTooLong<'static>>();
    debug::<Health>();
    debug::<IdleOrder>();
    debug::<Binding>();
    debug::<LeakTrace>();
}

#[tokio::test(start_paused = true)]
async fn debug_output_names_the_type_and_what_matters() {
    let builder = Pool::builder(Plain)
        .max_open(3)
        .leak_threshold(Duration::from_secs(9));
    let shown = format!("{builder:?}");
    assert!(shown.starts_with("Builder"), "{shown}");
    assert!(shown.contains("max_open: 3"), "{shown}");
    assert!(shown.contains("leak_threshold: Some(9s)"), "{shown}");
    let pool = builder.build().unwrap();
    assert!(format!("{pool:?}").starts_with("Pool"));
    // With leak detection on, a checkout shows where it was made.
    let (get, line) = (pool.get(), line!());
    let shown = format!("{get:?}");
    let at = format!("caller: {}:{line}:", file!());
    assert!(shown.contains(&at), "{shown} lacks {at}");
    let conn = get.await.unwrap();
    let shown = format!("{conn:?}");
    assert!(shown.contains("resource: Cell"), "{shown}");
    drop(conn);

    let keyed = KeyedPool::builder(Dialer).build().unwrap();
    assert!(format!("{keyed:?}").starts_with("KeyedPool"));
    let conn = keyed.get(&Host("db1".into())).await.unwrap();
    assert!(format!("{conn:?}").starts_with("KeyedPooled"));
    assert_eq!(KeyedPooled::key(&conn).0, "db1");
}

/// The guard's own operations are associated functions: `get_ref` and `get_mut` reach the
/// guard only as `Pooled::get_ref(&conn)`, so a resource's methods of the same name are the
/// ones `conn.get_ref()` calls.
#[tokio::test(start_paused = true)]
async fn guard_operations_never_shadow_the_resources_methods() {
    struct Stream;
    impl Stream {
        fn get_ref(&self) -> &'static str {
            "the stream's own"
        }
    }
    struct Streams;
    #[async_trait]
    impl Manager for Streams {
        type Resource = Stream;
        type Error = std::io::Error;
        async fn create(&self) -> Result<Stream, std::io::Error> {
            Ok(Stream)
        }
    }
    let pool = Pool::builder(Streams).build().unwrap();
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.get_ref(), "the stream's own");
    let _: &Stream = Pooled::get_ref(&conn);
    let _: &mut Stream = Pooled::get_mut(&mut conn);
    assert_eq!(Pooled::id(&conn), 1);
}

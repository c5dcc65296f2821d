//! Lifecycle hooks on a keyed pool, printed the way Go's `httptrace` callbacks usually are:
//! one line per event, a `GotConn` line per request. A keyed pool of TCP connections to three
//! local servers (keyed by address, as `http.Transport` keys by host), with
//! `max_idle_per_key = 1`, so the trace shows reuse, hand-offs, new connections and closes.
//!
//! Run: `cargo run -p examples --example trace`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pool_core::{
    CloseReason, Error, GotConn, Hooks, KeyedManager, KeyedPool, Returned, async_trait,
};
use tokio::net::{TcpListener, TcpStream};

/// Dials the key's address.
struct Dialer;

#[async_trait]
impl KeyedManager for Dialer {
    type Key = SocketAddr;
    type Resource = TcpStream;
    type Error = std::io::Error;

    async fn create(&self, addr: &SocketAddr) -> Result<TcpStream, std::io::Error> {
        TcpStream::connect(addr).await
    }
}

/// Prints every event with the time since the start.
struct Trace(Instant);

impl Trace {
    fn line(&self, addr: &SocketAddr, what: std::fmt::Arguments<'_>) {
        println!("{:>8.3?} {addr} {what}", self.0.elapsed());
    }
}

impl Hooks<SocketAddr> for Trace {
    fn get_conn(&self, addr: &SocketAddr) {
        self.line(addr, format_args!("GetConn"));
    }

    fn got_conn(&self, addr: &SocketAddr, i: &GotConn) {
        self.line(
            addr,
            format_args!(
                "GotConn: {{Conn:{} Reused:{} WasIdle:{} IdleTime:{:?}}} after {:?}",
                i.id, i.reused, i.was_idle, i.idle_time, i.wait
            ),
        );
    }

    fn create_start(&self, addr: &SocketAddr) {
        self.line(addr, format_args!("ConnectStart"));
    }

    fn create_done(&self, addr: &SocketAddr, result: Result<u64, &Error>) {
        match result {
            Ok(id) => self.line(addr, format_args!("ConnectDone: conn {id}")),
            Err(e) => self.line(addr, format_args!("ConnectDone: error: {e}")),
        }
    }

    fn put_idle(&self, addr: &SocketAddr, id: u64, returned: Returned) {
        match returned {
            Returned::Closed(reason) => self.line(
                addr,
                format_args!("PutIdleConn: conn {id} not kept: {reason}"),
            ),
            other => self.line(
                addr,
                format_args!("PutIdleConn: conn {id} {}", other.as_str()),
            ),
        }
    }

    fn closed(&self, addr: &SocketAddr, id: u64, reason: CloseReason) {
        self.line(addr, format_args!("Closed: conn {id} ({reason})"));
    }
}

/// A server that accepts connections and holds them open.
async fn server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = [server().await?, server().await?, server().await?];
    let pool = KeyedPool::builder(Dialer)
        .max_idle_per_key(1)
        .max_open_per_key(2)
        .max_idle(2)
        .idle_grace(Duration::ZERO)
        .hooks(Trace(Instant::now()))
        .build()?;

    println!("-- one request per host (max_idle 2 across hosts evicts the oldest idle one),");
    println!("   then the last host again (reused, was idle) and the first (evicted: new)");
    for addr in hosts.iter().chain([&hosts[2], &hosts[0]]) {
        drop(pool.get(addr).await?);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    println!("-- three at once on one host with max_open_per_key 2 (one is handed off)");
    let a = hosts[1];
    let (c1, c2) = (pool.get(&a).await?, pool.get(&a).await?);
    let third = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get(&a).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(c1);
    third.await??;
    drop(c2);

    println!("-- close");
    pool.close_and_wait(Duration::from_secs(1)).await?;
    let s = pool.stats();
    println!(
        "stats: created {} hits {} handoffs {} max_idle_closed {} shutdown_closed {}",
        s.created, s.hits, s.handoffs, s.max_idle_closed, s.shutdown_closed
    );
    Ok(())
}

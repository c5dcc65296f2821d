//! Go's pitfall, written the Go way: `cargo run -p examples --example http_pitfall`.
//!
//! Each request checks the status and drops the body unread, as code does that only cares
//! whether a call succeeded. Go closes the connection of every such body, so each request
//! dials again (and leaves a socket in TIME_WAIT). This client drains the rest of a dropped
//! body within a budget (256 KiB, 50 ms) and reuses the connection, so the count stays flat.
//! Both modes run against the same local server, which counts the connections it accepted.

use bytes::Bytes;
use examples::http_server::Server;

const REQUESTS: usize = 500;

async fn run(
    name: &str,
    builder: pool_http::ClientBuilder,
) -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::start(|_| {
        (
            "application/octet-stream",
            Bytes::from(vec![b'x'; 16 * 1024]),
        )
    })
    .await?;
    let client = builder.build()?;
    for _ in 0..REQUESTS {
        let response = client.get(&server.url("/report")).await?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()).into());
        }
        // The pitfall: the body is dropped unread.
        drop(response);
    }
    let stats = client.stats();
    println!(
        "{name:<22} {REQUESTS} requests, bodies dropped unread: {:>4} connections opened ({:.0} per 1,000); drained {}, closed {}",
        server.accepts(),
        server.accepts() as f64 * 1000.0 / REQUESTS as f64,
        stats.drained,
        stats.drain_failed
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run("Go (go_mode)", pool_http::Client::builder().go_mode()).await?;
    run("pool-http (defaults)", pool_http::Client::builder()).await?;
    Ok(())
}

//! The smallest useful `Manager`: a pool of TCP connections to one address, with a cheap
//! usability check. Run: `cargo run -p examples --example custom_manager`.

use pool_core::{Health, Manager, Pool, async_trait};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

struct Tcp {
    addr: std::net::SocketAddr,
}

#[async_trait]
impl Manager for Tcp {
    type Resource = TcpStream;
    type Error = std::io::Error;

    async fn create(&self) -> Result<TcpStream, std::io::Error> {
        TcpStream::connect(self.addr).await
    }

    /// A socket with a pending error (reset by the peer) is not reused.
    fn check(&self, stream: &mut TcpStream) -> Health {
        match stream.take_error() {
            Ok(None) => Health::Ready,
            _ => Health::Broken,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A local echo-less server that accepts and holds connections.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });

    let pool = Pool::builder(Tcp { addr })
        .max_open(4)
        .max_idle(2)
        .build()?;
    for i in 0..10 {
        let mut conn = pool.get().await?;
        conn.write_all(format!("request {i}\n").as_bytes()).await?;
    }
    let s = pool.stats();
    println!(
        "10 requests, {} connection(s) created, {} reused from idle",
        s.created, s.hits
    );
    pool.close_and_wait(std::time::Duration::from_secs(1))
        .await?;
    Ok(())
}

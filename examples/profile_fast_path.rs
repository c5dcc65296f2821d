//! A tight checkout-and-return loop for instruction-level profiling of the fast path:
//! `valgrind --tool=callgrind target/release/examples/profile_fast_path 100000`, then divide
//! the instruction total by the count. Instruction counts are repeatable on a noisy machine.
use pool_core::{Manager, Pool, async_trait};
struct M;
#[async_trait]
impl Manager for M {
    type Resource = u64;
    type Error = std::convert::Infallible;
    async fn create(&self) -> Result<u64, Self::Error> {
        Ok(0)
    }
}
fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Pool::builder(M).max_open(8).max_idle(8).build().unwrap();
        drop(pool.get().await.unwrap());
        let n: u64 = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(200_000);
        for _ in 0..n {
            drop(std::hint::black_box(pool.get().await.unwrap()));
        }
    });
}

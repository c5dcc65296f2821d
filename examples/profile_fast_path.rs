//! Tight checkout-and-return loops for instruction-level profiling:
//! `valgrind --tool=callgrind target/release/examples/profile_fast_path [N] [TASKS]`, then
//! divide the instruction total by N. With TASKS > 1, TASKS tasks share a pool of 8 and hold
//! each checkout across a `yield_now` (benchmark B2's workload); with TASKS = 0, one task
//! takes owned guards (`get_owned`, B1's second row). Instruction counts are repeatable on a
//! noisy machine.

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
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let n = args.next().flatten().unwrap_or(200_000);
    let tasks = args.next().flatten().unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = Pool::builder(M)
            .max_open(8)
            .max_idle(8)
            .build()
            .expect("valid knobs");
        drop(pool.get().await.expect("get"));
        if tasks == 0 {
            for _ in 0..n {
                drop(std::hint::black_box(pool.get_owned().await.expect("get")));
            }
            return;
        }
        if tasks == 1 {
            for _ in 0..n {
                drop(std::hint::black_box(pool.get().await.expect("get")));
            }
            return;
        }
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for _ in 0..n / tasks {
                        let c = pool.get().await.expect("get");
                        tokio::task::yield_now().await;
                        drop(c);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
    });
}

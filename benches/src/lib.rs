//! Shared helpers of the benchmark programs (`pg_bench`, `http_bench`): argument parsing,
//! medians, CPU time, CPU placement and TIME_WAIT counts.

use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;

/// The error type of the benchmark programs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A benchmark program's `main`: parses the arguments with `parse` (a bad one prints the
/// error and `usage`, exit code 2), then runs `run` on a 2-worker tokio runtime (an error is
/// printed, exit code 1).
pub fn main_with<O, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<O, String>,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), BoxError>>,
{
    main_on(name, usage, parse, |_| (2, Vec::new()), run)
}

/// [`main_with`], with the runtime that `runtime` picks from the options: its number of
/// worker threads, and the CPUs they are pinned to (spread over them in turn; none: the OS
/// places them).
pub fn main_on<O, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<O, String>,
    runtime: impl FnOnce(&O) -> (usize, Vec<core_affinity::CoreId>),
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), BoxError>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let (workers, cores) = runtime(&opts);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(move || {
            if !cores.is_empty() {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                core_affinity::set_for_current(cores[i % cores.len()]);
            }
        })
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `text` as a number of at least `min`, or says what `name` takes.
///
/// # Errors
/// A message naming the flag when `text` is not a number or is below `min`.
pub fn number<T: FromStr + PartialOrd + std::fmt::Display>(
    name: &str,
    text: &str,
    min: T,
) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!("{name} takes a number >= {min}, not {text:?}")),
    }
}

/// The median of `values` (sorted in place); NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// This process's CPU time so far, in seconds (`/proc/self/stat`, clock ticks of 10 ms).
pub fn cpu_time() -> f64 {
    stat_cpu_time("/proc/self/stat")
}

/// The CPU time so far of one thread of this process (its id from [`thread_id`]), in seconds.
pub fn thread_cpu_time(tid: u32) -> f64 {
    stat_cpu_time(&format!("/proc/self/task/{tid}/stat"))
}

/// The calling thread's id as the kernel knows it (`/proc/thread-self`), if it can be read.
pub fn thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

fn stat_cpu_time(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Appends one JSON line of `program`'s results to `target/bench-results/{program}.jsonl`
/// (relative to the working directory, as BENCH.md asks); a failure to write is reported on
/// stderr and otherwise ignored.
pub fn record(program: &str, json: &str) {
    use std::io::Write;
    let dir = std::path::Path::new("target/bench-results");
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{program}.jsonl")))?;
        writeln!(file, "{json}")
    });
    if let Err(e) = written {
        eprintln!("{program}: cannot write to {}: {e}", dir.display());
    }
}

/// TIME_WAIT sockets to or from a port: pool-lab's counter, shared.
pub use examples::lab::sockets::time_wait;

//! Shared helpers of the benchmark programs (`pg_bench`, `http_bench`): argument parsing,
//! medians, CPU time and TIME_WAIT counts.

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{name}: {e}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// TIME_WAIT sockets to or from a port: pool-lab's counter, shared.
pub use examples::lab::sockets::time_wait;

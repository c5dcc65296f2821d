//! Printing the results to stdout without a panic when the reader has gone away:
//! `pool-lab replay ... | head -6` closes the pipe early, and `println!` would panic with
//! "failed printing to stdout: Broken pipe" (exit 101). [`line()`] stops the process quietly
//! with exit 0 instead, as `head` asked for no more.

use std::fmt;
use std::io::{self, Write};

/// Writes `args` and a newline to stdout. On a broken pipe the process exits at once with
/// status 0 (the reader wanted no more); any other write error is reported on stderr and
/// the process exits with status 2.
pub fn line(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("pool-lab: cannot write to stdout: {e}");
            std::process::exit(2);
        }
    }
}

/// `println!` through [`line()`]: stops quietly on a broken pipe instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::lab::out::line(format_args!($($arg)*))
    };
}

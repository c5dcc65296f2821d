//! Helpers shared by the replay tests: running `pool-lab replay` and naming temporary files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use examples::lab::sim::Measured;

/// Runs `pool-lab replay ARGS`: its exit code, stdout and stderr.
pub fn pool_lab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pool-lab"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A path in the temporary directory, unique to this test process and `prefix`.
pub fn temp(prefix: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()))
}

/// A measured setting with only its place on the frontier chart filled in.
pub fn point(label: &str, opens: u64, idle: f64) -> Measured {
    Measured {
        label: label.into(),
        calls: 10,
        errors: 0,
        opens,
        idle_conn_s: idle,
        waited: 0,
        latencies: Vec::new(),
        peak_open: 1,
        span: Duration::from_secs(1),
    }
}

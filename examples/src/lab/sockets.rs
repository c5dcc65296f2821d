//! TIME_WAIT sockets, read from `/proc/net/tcp` (Linux; elsewhere always empty): each closed
//! connection leaves one for a minute on the side that closed first, so their number shows
//! connection churn from outside the pool.

use std::collections::HashSet;

/// TIME_WAIT sockets to or from `port` on this machine, as (local, remote) address pairs.
pub fn time_wait(port: Option<u16>) -> HashSet<(String, String)> {
    let mut set = HashSet::new();
    let Some(port) = port else { return set };
    let hex = format!(":{port:04X}");
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[3] == "06" && (f[1].ends_with(&hex) || f[2].ends_with(&hex)) {
                set.insert((f[1].to_owned(), f[2].to_owned()));
            }
        }
    }
    set
}

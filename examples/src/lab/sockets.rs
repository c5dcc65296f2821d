//! TIME_WAIT sockets, read from `/proc/net/tcp` (Linux; elsewhere always empty): each closed
//! connection leaves one for a minute on the side that closed first, so their number shows
//! connection churn from outside the pool.
//!
//! A run counts the TIME_WAIT sockets whose address pair (local and remote address and port)
//! was not on the machine when it started, in any state: a connection of the previous
//! setting that was still open or closing then, and reaches TIME_WAIT during this run, is
//! not counted again. The count stays approximate in two ways: other programs on this
//! machine talking to the same port add theirs, and a server elsewhere that closed first
//! holds the TIME_WAIT on its own machine, out of sight.

use std::collections::{HashMap, HashSet};

/// The kernel's code for TIME_WAIT in `/proc/net/tcp`.
const TIME_WAIT: &str = "06";

/// (local, remote) address pair, as `/proc/net/tcp` writes it (`0100007F:1538`).
type Pair = (String, String);

/// The TCP sockets to or from one port at one moment, with their states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    sockets: HashMap<Pair, String>,
}

impl Snapshot {
    /// The sockets to or from `port` on this machine now (empty without `port` or off
    /// Linux).
    pub fn take(port: Option<u16>) -> Self {
        let Some(port) = port else {
            return Self::default();
        };
        let mut text = String::new();
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(t) = std::fs::read_to_string(file) {
                text.push_str(&t);
            }
        }
        Self::parse(&text, port)
    }

    /// The sockets to or from `port` in `/proc/net/tcp`'s text (its header lines are
    /// skipped, as any line that is not a socket).
    pub fn parse(text: &str, port: u16) -> Self {
        let hex = format!(":{port:04X}");
        let mut sockets = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[0].ends_with(':') && (f[1].ends_with(&hex) || f[2].ends_with(&hex))
            {
                sockets.insert((f[1].to_owned(), f[2].to_owned()), f[3].to_owned());
            }
        }
        Snapshot { sockets }
    }

    /// TIME_WAIT sockets now whose address pair was not in `before` at all (in no state):
    /// the ones connections opened since `before` left.
    pub fn new_time_wait(&self, before: &Snapshot) -> usize {
        self.sockets
            .iter()
            .filter(|(pair, state)| *state == TIME_WAIT && !before.sockets.contains_key(*pair))
            .count()
    }
}

/// TIME_WAIT sockets to or from `port` on this machine, as (local, remote) address pairs.
pub fn time_wait(port: Option<u16>) -> HashSet<(String, String)> {
    Snapshot::take(port)
        .sockets
        .into_iter()
        .filter(|(_, state)| state == TIME_WAIT)
        .map(|(pair, _)| pair)
        .collect()
}

//! Traces: the calls a service made, each a start offset and a duration, read from a file or
//! generated ([`super::shapes`]).
//!
//! # File formats
//! [`Trace::parse`] takes either format and tells them apart by the first line that is not
//! blank and not a `#` comment:
//!
//! - **CSV** with a header naming the columns and their units: `start_s,duration_s`, or
//!   `start_ms,duration_ms` (the units may differ: `start_s,duration_ms`). The duration
//!   column may be left out (every call then lasts zero; `pool-lab replay --service` adds a
//!   hold to each). Other columns are ignored, so an export with more fields works. Starts
//!   may be any non-negative numbers in any order (epoch seconds work): the trace starts at
//!   the earliest. A leading byte order mark (Excel's "CSV UTF-8") and double quotes
//!   around cells (`"start_s","duration_s"`) are taken off. A comment takes a line of its
//!   own.
//!
//!   ```text
//!   start_s,duration_s
//!   0.000,0.050
//!   0.002,0.048
//!   ```
//! - **An access log** in the combined format with the request time appended as the last
//!   field, as nginx writes it with `log_format timed '$remote_addr - $remote_user
//!   [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//!   $request_time';` and Apache with `%D` appended to its combined format. The last field
//!   tells which: with a decimal point it is nginx's `$request_time` in seconds, and the
//!   bracketed time is when the request *ended* (nginx logs at the end); a plain integer is
//!   Apache's `%D` in microseconds, and the bracketed time is when the request *started*.
//!   The bracketed time has one-second resolution (fractions like `13:55:36.250` are read
//!   when present): the calls of one second are spread evenly over it, in log order, which
//!   keeps their number per second and their durations but not their exact instants.
//!
//! A bad line is an error naming it ([`TraceError`]), never a panic.

use std::fmt;
use std::time::Duration;

/// One call: when it started, counted from the trace's start, and how long it held its
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// Offset from the start of the trace.
    pub start: Duration,
    /// How long the call holds its connection.
    pub duration: Duration,
}

/// A list of calls sorted by start, and the span the trace covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The calls, sorted by start.
    pub calls: Vec<Call>,
    /// The end of the observed span (at least the end of the last call): what idle time is
    /// counted up to. A generated trace ends after its last quiet period, not at its last
    /// call.
    pub end: Duration,
}

/// Why a trace file cannot be read: the line (1-based) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// The line that is wrong, counting from 1 (0: the file as a whole).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for TraceError {}

fn bad(line: usize, message: impl Into<String>) -> TraceError {
    TraceError {
        line,
        message: message.into(),
    }
}

/// The longest offset or duration a trace may hold: ten years, far beyond any trace.
const LONGEST_S: f64 = 10.0 * 365.0 * 86_400.0;
/// The latest start a CSV may write before it is shifted to zero: epoch seconds to the
/// year 5000.
const LATEST_START_S: f64 = 1e11;

impl Trace {
    /// A trace of `calls` (sorted here) observed until `end` (raised to the end of the last
    /// call when shorter).
    pub fn new(mut calls: Vec<Call>, end: Duration) -> Trace {
        calls.sort();
        let last = calls
            .iter()
            .map(|c| c.start + c.duration)
            .max()
            .unwrap_or_default();
        Trace {
            calls,
            end: end.max(last),
        }
    }

    /// Reads a CSV trace or an access log (see the module docs).
    ///
    /// # Errors
    /// A [`TraceError`] naming the first bad line, or saying the file holds no call.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        // Excel's "CSV UTF-8" starts with a byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let Some((n, first)) = lines(text).next() else {
            return Err(bad(
                0,
                "the file holds no call (it is empty or only comments)",
            ));
        };
        let trace = if first.to_ascii_lowercase().contains("start") && !first.contains('[') {
            parse_csv(text)?
        } else if first.contains('[') && first.contains('"') {
            parse_log(text)?
        } else {
            return Err(bad(
                n,
                "neither a CSV header (`start_s,duration_s`, or with `_ms`) nor an access log \
                 line (combined format with the request time last)",
            ));
        };
        if trace.calls.is_empty() {
            return Err(bad(0, "the file holds no call, only a header"));
        }
        Ok(trace)
    }

    /// The trace as CSV (`start_s,duration_s`, microsecond precision), which
    /// [`Trace::parse`] reads back.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("start_s,duration_s\n");
        for c in &self.calls {
            out.push_str(&format!(
                "{:.6},{:.6}\n",
                c.start.as_secs_f64(),
                c.duration.as_secs_f64()
            ));
        }
        out
    }

    /// The most calls in progress at once (a call occupies `[start, start + duration)`).
    pub fn peak_concurrency(&self) -> usize {
        let mut edges: Vec<(Duration, i32)> = Vec::with_capacity(self.calls.len() * 2);
        for c in &self.calls {
            edges.push((c.start, 1));
            edges.push((c.start + c.duration, -1));
        }
        edges.sort(); // ends (-1) before starts (+1) at the same instant
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, d) in edges {
            now += i64::from(d);
            peak = peak.max(now);
        }
        peak as usize
    }
}

/// The lines that are not blank and not `#` comments, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A number of seconds (`per_second` 1) or milliseconds (`per_second` 1000) into seconds,
/// at most `max` seconds.
fn seconds(
    field: &str,
    per_second: f64,
    max: f64,
    what: &str,
    n: usize,
) -> Result<f64, TraceError> {
    let field = unquote(field);
    let v: f64 = field.parse().map_err(|_| {
        let hint = if field.contains('#') {
            " (a comment takes a line of its own, starting with `#`)"
        } else {
            ""
        };
        bad(
            n,
            format!("the {what} `{}` is not a number{hint}", shorten(field)),
        )
    })?;
    let s = v / per_second;
    if !(0.0..=max).contains(&s) {
        return Err(bad(
            n,
            format!(
                "the {what} `{}` is out of range (0 to {:.0} s)",
                shorten(field),
                max
            ),
        ));
    }
    Ok(s)
}

/// A field without surrounding blanks and double quotes (`"start_s"`, `"0.5"`).
fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .map_or(field, str::trim)
}

/// The longest quoted value an error message shows whole.
const SHOWN_CHARS: usize = 40;

/// `value` for an error message: its first 40 characters and `...` when longer.
pub fn shorten(value: &str) -> String {
    if value.chars().count() <= SHOWN_CHARS {
        value.to_owned()
    } else {
        let head: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{head}...")
    }
}

/// The unit a header names: `_s` seconds, `_ms` milliseconds.
fn unit(name: &str, n: usize) -> Result<f64, TraceError> {
    if name.ends_with("_ms") {
        Ok(1000.0)
    } else if name.ends_with("_s") {
        Ok(1.0)
    } else {
        Err(bad(
            n,
            format!(
                "the column `{0}` names no unit: write `{0}_s` or `{0}_ms`",
                shorten(name)
            ),
        ))
    }
}

fn parse_csv(text: &str) -> Result<Trace, TraceError> {
    let mut rows = lines(text);
    let (n, header) = rows.next().unwrap_or((1, ""));
    let names: Vec<String> = header
        .split(',')
        .map(|h| unquote(h).to_ascii_lowercase())
        .collect();
    let find = |prefix: &str| names.iter().position(|h| h.starts_with(prefix));
    let start_col = find("start").ok_or_else(|| bad(n, "the header has no start column"))?;
    let start_unit = unit(&names[start_col], n)?;
    let duration = match find("duration") {
        Some(i) => Some((i, unit(&names[i], n)?)),
        None => None,
    };
    let (mut raw, mut line_of) = (Vec::new(), Vec::new());
    for (n, row) in rows {
        let fields: Vec<&str> = row.split(',').collect();
        if fields.len() < names.len() {
            return Err(bad(
                n,
                format!(
                    "{} fields where the header names {}",
                    fields.len(),
                    names.len()
                ),
            ));
        }
        let start = seconds(fields[start_col], start_unit, LATEST_START_S, "start", n)?;
        let held = match duration {
            Some((i, u)) => seconds(fields[i], u, LONGEST_S, "duration", n)?,
            None => 0.0,
        };
        raw.push((start, held));
        line_of.push(n);
    }
    // Epoch times are fine; offsets spanning more than ten years are surely a mistake.
    let origin = raw.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    if let Some(i) = raw.iter().position(|r| r.0 - origin > LONGEST_S) {
        return Err(bad(
            line_of[i],
            "this start is more than ten years after the earliest",
        ));
    }
    Ok(from_seconds(&raw))
}

/// Calls from (start, duration) pairs in seconds, shifted so the earliest starts at zero.
fn from_seconds(raw: &[(f64, f64)]) -> Trace {
    let origin = raw.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let calls = raw
        .iter()
        .map(|&(s, d)| Call {
            start: nanos(s - origin),
            duration: nanos(d),
        })
        .collect();
    Trace::new(calls, Duration::ZERO)
}

fn parse_log(text: &str) -> Result<Trace, TraceError> {
    // (second of the bracketed time, its fraction if written, request time in s, ends?)
    let mut entries: Vec<(i64, Option<f64>, f64, bool)> = Vec::new();
    let mut line_of = Vec::new();
    for (n, line) in lines(text) {
        let open = line
            .find('[')
            .ok_or_else(|| bad(n, "no [time] field (combined log format expected)"))?;
        let close = line[open..]
            .find(']')
            .map(|i| open + i)
            .ok_or_else(|| bad(n, "the [time] field is not closed"))?;
        let (second, fraction) = log_time(&line[open + 1..close]).map_err(|m| bad(n, m))?;
        let last = line.rsplit(' ').next().unwrap_or("");
        let (held, ends) = if last.contains('.') {
            (seconds(last, 1.0, LONGEST_S, "request time", n)?, true)
        } else if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            (seconds(last, 1e6, LONGEST_S, "request time", n)?, false)
        } else {
            return Err(bad(
                n,
                format!(
                    "the last field `{}` is not a request time: add `$request_time` (nginx) \
                     or `%D` (Apache) at the end of the log format",
                    shorten(last)
                ),
            ));
        };
        entries.push((second, fraction, held, ends));
        line_of.push(n);
    }
    // Spread the calls of one second evenly over it, in log order. Seconds count from the
    // earliest, in integers: epoch seconds as f64 would cost sub-microsecond precision.
    let base = entries.iter().map(|e| e.0).min().unwrap_or(0);
    if let Some(i) = entries.iter().position(|e| (e.0 - base) as f64 > LONGEST_S) {
        return Err(bad(
            line_of[i],
            "this time is more than ten years after the earliest",
        ));
    }
    let mut raw = Vec::with_capacity(entries.len());
    let mut i = 0;
    while i < entries.len() {
        let second = entries[i].0;
        let j = i + entries[i..].iter().take_while(|e| e.0 == second).count();
        let count = (j - i) as f64;
        for (k, &(s, fraction, held, ends)) in entries[i..j].iter().enumerate() {
            let at = (s - base) as f64 + fraction.unwrap_or((k as f64 + 0.5) / count);
            raw.push((if ends { at - held } else { at }, held));
        }
        i = j;
    }
    Ok(from_seconds(&raw))
}

/// Seconds (non-negative, at most [`LONGEST_S`]) to the nearest nanosecond.
fn nanos(s: f64) -> Duration {
    Duration::from_nanos((s.max(0.0) * 1e9).round() as u64)
}

/// `10/Oct/2023:13:55:36 +0000` (seconds may have a fraction) into seconds since the epoch
/// (UTC) and the fraction when one is written.
fn log_time(field: &str) -> Result<(i64, Option<f64>), String> {
    let wrong = || {
        format!(
            "the time `{}` is not like `10/Oct/2023:13:55:36 +0000`",
            shorten(field)
        )
    };
    let (stamp, zone) = field.split_once(' ').ok_or_else(wrong)?;
    let parts: Vec<&str> = stamp.splitn(4, [':', '/']).collect();
    let [day, month, year, clock] = parts.as_slice() else {
        return Err(wrong());
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .ok_or_else(wrong)? as i64
        + 1;
    let day: i64 = day.parse().map_err(|_| wrong())?;
    let year: i64 = year.parse().map_err(|_| wrong())?;
    let hms: Vec<&str> = clock.split(':').collect();
    let [h, m, s] = hms.as_slice() else {
        return Err(wrong());
    };
    let (h, m): (i64, i64) = (
        h.parse().map_err(|_| wrong())?,
        m.parse().map_err(|_| wrong())?,
    );
    let s: f64 = s.parse().map_err(|_| wrong())?;
    if !(1..=31).contains(&day)
        || !(1..=9999).contains(&year)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0.0..61.0).contains(&s)
    {
        return Err(wrong());
    }
    let sign = match zone.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err(wrong()),
    };
    let z: i64 = zone[1..].parse().map_err(|_| wrong())?;
    if zone.len() != 5 || !(0..=1400).contains(&z) {
        return Err(wrong());
    }
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    let whole = s.trunc();
    let fraction = (s > whole).then_some(s - whole);
    let t = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + whole as i64;
    Ok((t - offset, fraction))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_and_a_leap_day_are_counted_right() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2023, 3, 1) - days_from_civil(2023, 2, 28),
            1
        );
    }

    #[test]
    fn a_time_zone_is_taken_off() {
        let (utc, _) = log_time("10/Oct/2023:13:55:36 +0000").unwrap();
        let (east, _) = log_time("10/Oct/2023:15:55:36 +0200").unwrap();
        assert_eq!(utc, east);
        let (_, f) = log_time("10/Oct/2023:13:55:36.250 +0000").unwrap();
        assert_eq!(f, Some(0.25));
    }
}

//! `berth-bench`: a benchmark client that speaks plain OCI Distribution
//! HTTP to any registry, measures the machine's limits, and turns the JSON
//! lines of several rounds into docs/PERFORMANCE.md.

pub mod auth;
pub mod client;
pub mod limits;
pub mod report;
pub mod runner;
pub mod scenarios;
pub mod startup;
pub mod stats;

use std::time::Duration;

use anyhow::{Result, bail};

/// Parses `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = match num.parse() {
        Ok(n) => n,
        Err(_) => bail!("bad duration {s:?} (use e.g. 10s, 500ms, 2m)"),
    };
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("bad duration unit in {s:?} (ms, s or m)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}

//! Latency percentiles, the per-scenario figures, and the server's
//! CPU time and peak RSS read from `/proc`.

use serde::{Deserialize, Serialize};

const MIB: f64 = 1024.0 * 1024.0;

/// Nearest-rank percentile (`q` in 0..=100) of `values`; sorts in place.
/// Empty input gives `None`.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(percentile_sorted(values, q))
}

/// Nearest-rank percentile of already sorted, non-empty `values`.
pub fn percentile_sorted(values: &[f64], q: f64) -> f64 {
    let n = values.len();
    let rank = ((q / 100.0) * n as f64).ceil() as usize;
    values[rank.clamp(1, n) - 1]
}

/// Median of `values` (mean of the two middle ones for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The one JSON line a scenario prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub scenario: String,
    pub registry: String,
    pub concurrency: usize,
    pub ops: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mib_s: f64,
    pub ops_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// Server CPU per operation, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms_per_op: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mib: Option<f64>,
    /// True when the peak could not be reset for this scenario, so it is
    /// the process's lifetime peak.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peak_rss_is_lifetime: bool,
    /// Scenario-specific numbers (entries walked, pages, limits...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a scenario's workers counted: successful operations, bytes moved,
/// failed operations, wall time and each successful operation's latency.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latencies_ms: Vec<f64>,
}

impl Figures {
    /// Builds figures from what the workers counted.
    pub fn from_outcome(
        scenario: &str,
        registry: &str,
        concurrency: usize,
        outcome: &mut Outcome,
    ) -> Figures {
        let Outcome {
            ops,
            bytes,
            errors,
            seconds,
            ref mut latencies_ms,
        } = *outcome;
        latencies_ms.sort_by(f64::total_cmp);
        let (p50, p99) = if latencies_ms.is_empty() {
            (None, None)
        } else {
            (
                Some(round3(percentile_sorted(latencies_ms, 50.0))),
                Some(round3(percentile_sorted(latencies_ms, 99.0))),
            )
        };
        let secs = seconds.max(1e-9);
        Figures {
            scenario: scenario.to_string(),
            registry: registry.to_string(),
            concurrency,
            ops,
            bytes,
            seconds: round3(seconds),
            mib_s: round3(bytes as f64 / MIB / secs),
            ops_s: round3(ops as f64 / secs),
            p50_ms: p50,
            p99_ms: p99,
            errors,
            ..Figures::default()
        }
    }

    pub fn with_server(mut self, usage: Option<ServerUsage>) -> Figures {
        if let Some(u) = usage {
            self.server_cpu_s = Some(round3(u.cpu_s));
            if self.ops > 0 {
                self.server_cpu_ms_per_op = Some(round3(u.cpu_s * 1000.0 / self.ops as f64));
            }
            self.server_peak_rss_mib = u.peak_rss_kib.map(|k| round3(k as f64 / 1024.0));
            self.peak_rss_is_lifetime = !u.peak_was_reset;
        }
        self
    }

    pub fn extra(mut self, key: &str, value: impl Into<serde_json::Value>) -> Figures {
        self.extra.insert(key.to_string(), value.into());
        self
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Server CPU time used and peak RSS over a measured interval.
#[derive(Debug, Clone, Copy)]
pub struct ServerUsage {
    pub cpu_s: f64,
    pub peak_rss_kib: Option<u64>,
    pub peak_was_reset: bool,
}

/// Watches a server process through `/proc/PID`.
#[derive(Debug, Clone, Copy)]
pub struct ServerProbe {
    pub pid: u32,
}

/// Clock ticks per second for `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

impl ServerProbe {
    /// Resets the peak RSS (`VmHWM`) where the kernel lets us and returns the
    /// CPU time so far.
    pub fn start(&self) -> ProbeStart {
        let reset = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok();
        ProbeStart {
            cpu_s: self.cpu_seconds().unwrap_or(0.0),
            reset,
        }
    }

    pub fn finish(&self, start: &ProbeStart) -> Option<ServerUsage> {
        let cpu = self.cpu_seconds()?;
        Some(ServerUsage {
            cpu_s: (cpu - start.cpu_s).max(0.0),
            peak_rss_kib: self.status_kib("VmHWM"),
            peak_was_reset: start.reset,
        })
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        parse_stat_cpu_ticks(&stat).map(|t| t as f64 / TICKS_PER_S)
    }

    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        parse_status_kib(&status, field)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ProbeStart {
    cpu_s: f64,
    reset: bool,
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state), so field N is index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field such as `VmHWM:    12345 kB` from `/proc/PID/status`.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));

        let mut v = vec![5.0, 1.0, 3.0];
        assert_eq!(percentile(&mut v, 50.0), Some(3.0));
        assert_eq!(percentile(&mut v, 99.0), Some(5.0));

        let mut one = vec![7.5];
        assert_eq!(percentile(&mut one, 50.0), Some(7.5));
        assert_eq!(percentile(&mut one, 99.0), Some(7.5));

        let mut none: Vec<f64> = vec![];
        assert_eq!(percentile(&mut none, 50.0), None);

        // p99 of 1000 samples is the 990th smallest.
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 99.0), Some(990.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn figures_rates() {
        let mut o = Outcome {
            ops: 4,
            bytes: 8 * 1024 * 1024,
            errors: 1,
            seconds: 2.0,
            latencies_ms: vec![2.0, 1.0, 4.0, 3.0],
        };
        let f = Figures::from_outcome("x", "r", 4, &mut o);
        assert_eq!(f.mib_s, 4.0);
        assert_eq!(f.ops_s, 2.0);
        assert_eq!(f.p50_ms, Some(2.0));
        assert_eq!(f.p99_ms, Some(4.0));
        assert_eq!(f.errors, 1);
        let line = serde_json::to_string(&f).unwrap();
        let back: Figures = serde_json::from_str(&line).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 8 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        let status =
            "Name:\tberth\nVmPeak:\t  200000 kB\nVmHWM:\t   34567 kB\nVmRSS:\t   20000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(34567));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(20000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn probe_reads_own_process() {
        let p = ServerProbe {
            pid: std::process::id(),
        };
        assert!(p.cpu_seconds().is_some());
        assert!(p.status_kib("VmHWM").unwrap() > 0);
        let s = p.start();
        let u = p.finish(&s).unwrap();
        assert!(u.cpu_s >= 0.0);
    }
}

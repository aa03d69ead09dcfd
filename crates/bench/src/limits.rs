//! The machine's limits, measured in the same run as the registries:
//! SHA-256 speed, disk write with fsync, cached read, small synchronous
//! writes, loopback TCP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest as _, Sha256};

use crate::stats::{Figures, round3};

const MIB: f64 = 1024.0 * 1024.0;

fn limit(scenario: &str, mib_s: f64, note: &str) -> Figures {
    Figures {
        scenario: scenario.to_string(),
        registry: "machine".to_string(),
        concurrency: 1,
        ops: 1,
        mib_s: round3(mib_s),
        ..Figures::default()
    }
    .extra("how", note.to_string())
}

/// Parses `openssl speed` output: the value (1000s of bytes per second)
/// in the `block`-byte column of the `alg` row, as MiB/s.
pub fn parse_openssl_speed(out: &str, alg: &str, block: u64) -> Option<f64> {
    let header = out.lines().rev().find(|l| l.starts_with("type"))?;
    let sizes: Vec<u64> = header
        .split_whitespace()
        .skip(1)
        .filter(|t| *t != "bytes")
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let col = sizes.iter().position(|s| *s == block)?;
    let row = out
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(alg))?;
    let v = row.split_whitespace().nth(1 + col)?;
    let k: f64 = v.trim_end_matches('k').parse().ok()?;
    Some(k * 1000.0 / MIB)
}

/// Parses dd's summary (`1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.23 s,
/// 873 MB/s`) into bytes and seconds.
pub fn parse_dd(stderr: &str) -> Option<(u64, f64)> {
    let line = stderr.lines().rev().find(|l| l.contains(" copied, "))?;
    let bytes: u64 = line.split_whitespace().next()?.parse().ok()?;
    let after = line.split(" copied, ").nth(1)?;
    let secs = after.split(',').next()?.trim().strip_suffix(" s")?;
    let secs: f64 = secs.trim().replace(',', ".").parse().ok()?;
    Some((bytes, secs))
}

pub fn openssl_sha256() -> Result<Figures> {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3",
        ])
        .output()
        .context("running openssl speed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mib = parse_openssl_speed(&text, "sha256", 16384)
        .ok_or_else(|| anyhow!("cannot read openssl speed output: {text}"))?;
    Ok(limit(
        "limit-sha256-openssl",
        mib,
        "openssl speed -evp sha256, 16 KiB blocks",
    ))
}

/// The `sha2` crate (what Berth hashes with) over 1 MiB pieces.
pub fn rust_sha256(total: usize) -> Figures {
    let buf = vec![0x5au8; 1 << 20];
    let mut h = Sha256::new();
    let t0 = Instant::now();
    for _ in 0..total / buf.len() {
        h.update(&buf);
    }
    std::hint::black_box(h.finalize());
    let s = t0.elapsed().as_secs_f64();
    limit(
        "limit-sha256-rust",
        total as f64 / MIB / s,
        "sha2 crate, 1 MiB updates",
    )
}

fn dd(args: &[String]) -> Result<f64> {
    let out = Command::new("dd")
        .args(args)
        .output()
        .context("running dd")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("dd {args:?} failed: {err}");
    }
    let (bytes, secs) = parse_dd(&err).ok_or_else(|| anyhow!("cannot read dd output: {err}"))?;
    Ok(bytes as f64 / MIB / secs.max(1e-9))
}

/// Sequential write with fsync (`dd conv=fsync`), then the same file read
/// back from the page cache. The file is removed afterwards.
pub fn disk(dir: &Path, mib: usize) -> Result<Vec<Figures>> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join("dd-limit.tmp");
    let of = format!("of={}", file.display());
    let iff = format!("if={}", file.display());
    let write = dd(&[
        "if=/dev/zero".into(),
        of,
        "bs=1M".into(),
        format!("count={mib}"),
        "conv=fsync".into(),
    ])?;
    // First read may still touch the disk; the second is from the cache.
    dd(&[iff.clone(), "of=/dev/null".into(), "bs=1M".into()])?;
    let read = dd(&[iff, "of=/dev/null".into(), "bs=1M".into()])?;
    let _ = std::fs::remove_file(&file);
    Ok(vec![
        limit(
            "limit-disk-write-fsync",
            write,
            &format!("dd bs=1M count={mib} conv=fsync to the data disk"),
        ),
        limit("limit-cached-read", read, "dd bs=1M from the page cache"),
    ])
}

/// Appending 4 KiB writes, each followed by fdatasync: per second.
pub fn fsync_4k(dir: &Path, count: usize) -> Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-limit.tmp");
    let mut f = std::fs::File::create(&path)?;
    let buf = [0x33u8; 4096];
    let t0 = Instant::now();
    for _ in 0..count {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    let s = t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    let mut fig = limit(
        "limit-fsync-4k",
        (count * 4096) as f64 / MIB / s,
        "append 4 KiB + fdatasync, one at a time",
    );
    fig.ops = count as u64;
    fig.seconds = round3(s);
    fig.ops_s = round3(count as f64 / s);
    Ok(fig)
}

/// Loopback TCP: `streams` connections each sending `bytes_per_stream`
/// in 256 KiB writes to a reader that discards them.
pub fn loopback(streams: usize, bytes_per_stream: u64) -> Result<Figures> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let readers = std::thread::spawn(move || -> Result<u64> {
        let mut handles = Vec::new();
        for _ in 0..streams {
            let (mut s, _) = listener.accept()?;
            handles.push(std::thread::spawn(move || -> std::io::Result<u64> {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                loop {
                    let r = s.read(&mut buf)?;
                    if r == 0 {
                        return Ok(n);
                    }
                    n += r as u64;
                }
            }));
        }
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| anyhow!("reader panicked"))??;
        }
        Ok(total)
    });
    let t0 = Instant::now();
    let writers: Vec<_> = (0..streams)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                let buf = vec![0x77u8; 256 * 1024];
                let mut left = bytes_per_stream;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    s.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| anyhow!("writer panicked"))??;
    }
    let total = readers.join().map_err(|_| anyhow!("reader panicked"))??;
    let s = t0.elapsed().as_secs_f64();
    if total != bytes_per_stream * streams as u64 {
        bail!(
            "loopback moved {total} bytes, expected {}",
            bytes_per_stream * streams as u64
        );
    }
    let mut f = limit(
        &format!("limit-loopback-{streams}"),
        total as f64 / MIB / s,
        &format!("{streams} TCP stream(s) over 127.0.0.1, 256 KiB writes"),
    );
    f.concurrency = streams;
    f.bytes = total;
    f.seconds = round3(s);
    Ok(f)
}

/// `bits_per_second` received, from `iperf3 -J` output, as MiB/s.
pub fn parse_iperf3_json(out: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(out).ok()?;
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64()?;
    Some(bps / 8.0 / MIB)
}

/// Loopback TCP measured by iperf3 (when installed): a one-off server and
/// a client of `streams` parallel streams for `secs` seconds.
pub fn iperf3(streams: usize, secs: u32) -> Result<Figures> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    // Retry the client until the server listens (a probe connection of
    // our own would upset the server's protocol state).
    let mut tries = 0;
    let out = loop {
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-J"])
            .args(["-t", &secs.to_string(), "-P", &streams.to_string()])
            .output();
        tries += 1;
        match out {
            Ok(o)
                if String::from_utf8_lossy(&o.stdout).contains("Connection refused")
                    && tries < 50 =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    let out = out.context("running iperf3 -c")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mib = parse_iperf3_json(&text).ok_or_else(|| {
        anyhow!(
            "cannot read iperf3 output: {}",
            &text[..text.len().min(300)]
        )
    })?;
    let mut f = limit(
        &format!("limit-iperf3-{streams}"),
        mib,
        &format!("iperf3 -P {streams} -t {secs} over 127.0.0.1 (default 128 KiB writes)"),
    );
    f.concurrency = streams;
    Ok(f)
}

/// All limits; `quick` uses smaller sizes. Failures are reported as a
/// line with an error each, not fatal.
pub fn all(dir: &Path, quick: bool) -> Vec<Figures> {
    let mut out = Vec::new();
    let mut push = |r: Result<Vec<Figures>>, name: &str| match r {
        Ok(v) => out.extend(v),
        Err(e) => out.push(
            Figures {
                scenario: name.to_string(),
                registry: "machine".into(),
                errors: 1,
                ..Figures::default()
            }
            .extra("error", format!("{e:#}")),
        ),
    };
    push(openssl_sha256().map(|f| vec![f]), "limit-sha256-openssl");
    push(
        Ok(vec![rust_sha256(if quick { 256 << 20 } else { 1 << 30 })]),
        "limit-sha256-rust",
    );
    push(disk(dir, if quick { 256 } else { 1024 }), "limit-disk");
    push(
        fsync_4k(dir, if quick { 200 } else { 2000 }).map(|f| vec![f]),
        "limit-fsync-4k",
    );
    let per_stream = if quick { 1u64 << 30 } else { 4u64 << 30 };
    for streams in [1, 2] {
        push(
            loopback(streams, per_stream / streams as u64).map(|f| vec![f]),
            &format!("limit-loopback-{streams}"),
        );
    }
    let have_iperf3 = Command::new("iperf3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_iperf3 {
        for streams in [1, 2] {
            push(
                iperf3(streams, if quick { 1 } else { 3 }).map(|f| vec![f]),
                &format!("limit-iperf3-{streams}"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_full_and_single_column() {
        let full = "The 'numbers' are in 1000s of bytes per second processed.\n\
type             16 bytes     64 bytes    256 bytes   1024 bytes   8192 bytes  16384 bytes\n\
sha256          136180.43k   428007.06k  1009715.98k  1514233.60k  1806873.60k  1876295.68k\n";
        let v = parse_openssl_speed(full, "sha256", 16384).unwrap();
        assert!((v - 1876295.68 * 1000.0 / MIB).abs() < 1e-6);
        let single = "type          16384 bytes\nsha256         1823139.59k\n";
        let v = parse_openssl_speed(single, "sha256", 16384).unwrap();
        assert!((v - 1738.68).abs() < 0.01);
        assert!(parse_openssl_speed(single, "sha512", 16384).is_none());
    }

    #[test]
    fn dd_summary() {
        let err = "1024+0 records in\n1024+0 records out\n1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.25 s, 859 MB/s\n";
        assert_eq!(parse_dd(err), Some((1073741824, 1.25)));
        let err = "1 bytes copied, 0.5 s, 2 B/s";
        assert_eq!(parse_dd(err), Some((1, 0.5)));
        assert_eq!(parse_dd("nothing"), None);
    }

    #[test]
    fn iperf3_json() {
        let out = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":1.0},
            "sum_received":{"bits_per_second":16777216000.0}}}"#;
        assert_eq!(parse_iperf3_json(out), Some(2000.0));
        assert_eq!(parse_iperf3_json("{}"), None);
    }

    #[test]
    fn loopback_moves_every_byte() {
        let f = loopback(2, 4 << 20).unwrap();
        assert_eq!(f.bytes, 8 << 20);
        assert!(f.mib_s > 0.0);
    }
}

//! Start-to-ready time and idle RSS of a registry command.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::stats::{Figures, ServerProbe, round3};

/// Starts `cmd`, polls `url`/v2/ every millisecond until any HTTP answer
/// (200 or 401), then lets it idle for `idle` and reads its RSS. Stops it
/// with SIGTERM (SIGKILL after 10 s).
pub async fn startup(url: &str, label: &str, cmd: &[String], idle: Duration) -> Result<Figures> {
    let (prog, args) = cmd.split_first().context("no command to start")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let probe_url = format!("{}/v2/", url.trim_end_matches('/'));
    let t0 = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {prog}"))?;
    let pid = child.id();
    let ready = loop {
        if let Ok(r) = http.get(&probe_url).send().await {
            let s = r.status().as_u16();
            if s == 200 || s == 401 {
                break t0.elapsed();
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("{prog} exited before it was ready: {status}");
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("{prog} not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep(idle).await;
    let probe = ServerProbe { pid };
    let rss = probe.status_kib("VmRSS");
    let hwm = probe.status_kib("VmHWM");
    stop(&mut child)?;
    let mut f = Figures {
        scenario: "startup".into(),
        registry: label.into(),
        concurrency: 1,
        ops: 1,
        seconds: round3(ready.as_secs_f64()),
        p50_ms: Some(round3(ready.as_secs_f64() * 1000.0)),
        ..Figures::default()
    };
    f.server_peak_rss_mib = hwm.map(|k| round3(k as f64 / 1024.0));
    Ok(f.extra("ready_ms", round3(ready.as_secs_f64() * 1000.0))
        .extra("idle_rss_mib", rss.map(|k| round3(k as f64 / 1024.0))))
}

fn stop(child: &mut std::process::Child) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

//! kill -9 during garbage collection (issue 5, scope 2): the GC stress
//! workload (`gc_load`) runs against a real `berth` with GC in a tight loop
//! while the server is killed with SIGKILL several times, each time just
//! after a GC run was started and with pushes in flight, and restarted on
//! the same data directory. Afterwards every tag a client believes exists
//! (acknowledged before the crash, not deleted since) pulls back
//! byte-identical, every tag that exists pulls back whole, and after two
//! more GC runs the store holds exactly the blobs the tags reference (the
//! orphan sweep took what the crashes left behind).

mod common;
#[path = "gc_load/mod.rs"]
mod gc_load;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Berth;
use gc_load::{Client, GcTotals, Load, Stats, Target, gc_loop, gc_once, store_blobs, verify};
use rand::Rng as _;

const CLIENTS: usize = 8;
const OPERATIONS: u64 = 5_000;
const CRASHES: usize = 5;

fn gc_env() -> Vec<(String, String)> {
    [
        // GC runs through the API (the test times the kills by it).
        ("BERTH_GC_INTERVAL_SECS", "3600"),
        ("BERTH_GC_GRACE_SECS", "1"),
        ("BERTH_GC_DELETE_UNTAGGED", "true"),
        ("BERTH_GC_RESTORE_WINDOW_SECS", "2"),
        ("BERTH_GC_ORPHAN_BATCH", "100000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_during_gc_loses_no_pushed_image() {
    let data = tempfile::tempdir().unwrap();
    let envs = gc_env();
    let mut server = Berth::start_env(data.path(), "127.0.0.1:0", &[], &envs);
    common::create_project(&server.url, "gcc").await;
    let target = Target::new(&server.url);
    let stats = Arc::new(Stats::default());
    let totals = Arc::new(GcTotals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let paused = Arc::new(AtomicBool::new(false));
    let gc = tokio::spawn(gc_loop(
        target.clone(),
        totals.clone(),
        stop.clone(),
        paused.clone(),
    ));
    let load = Load::new("gcc", 4, CLIENTS, OPERATIONS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = Client::new(i, target.clone(), stats.clone(), load.clone(), true);
            tokio::spawn(c.run())
        })
        .collect();

    // Let garbage pile up for a few seconds (the GC loop paused), start a
    // GC run, kill -9 while it works through the pile with pushes in
    // flight, restart.
    let killed_mid_gc = Arc::new(AtomicU64::new(0));
    let http = common::client();
    for _ in 0..CRASHES {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(500..1500))).await;
        paused.store(true, Ordering::SeqCst);
        let wait = rand::rng().random_range(2500..4000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let url = server.url.clone();
        let in_flight = {
            let http = http.clone();
            tokio::spawn(async move { gc_once(&http, &url).await })
        };
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(10..120))).await;
        target.set_down();
        tokio::task::block_in_place(|| server.kill9());
        if in_flight.await.unwrap().is_none() {
            killed_mid_gc.fetch_add(1, Ordering::Relaxed);
        }
        server = tokio::task::block_in_place(|| {
            Berth::start_env(data.path(), "127.0.0.1:0", &[], &envs)
        });
        target.set_up(&server.url);
        paused.store(false, Ordering::SeqCst);
    }
    let mut models = Vec::new();
    for c in clients {
        models.push(c.await.unwrap().model);
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    gc.await.unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..2 {
        totals.add(&gc_once(&http, &server.url).await.expect("GC answers"));
    }
    let (referenced, missing, tags) = verify(&server.url, &load, &models, &stats).await;
    let store = store_blobs(data.path());
    let referenced: BTreeSet<String> = referenced.into_iter().collect();
    let leaked: Vec<&String> = store.difference(&referenced).collect();
    let lost: Vec<&String> = referenced.difference(&store).collect();
    let maybe: usize = models.iter().map(|m| m.maybe.len()).sum();

    println!(
        "gc_crash (SQLite + filesystem, {CLIENTS} clients, {CRASHES} kill -9, {} of them with \
         the GC request unanswered, {:.1} s of load):",
        killed_mid_gc.load(Ordering::Relaxed),
        load_time.as_secs_f64()
    );
    println!("  {}", stats.summary());
    println!("  {}", totals.summary());
    println!(
        "  end: {tags} tags ({maybe} left uncertain by a lost answer), {} blobs referenced, \
         {} store objects, leaked {}, missing blobs {}",
        referenced.len(),
        store.len(),
        leaked.len(),
        missing + Stats::get(&stats.missing) + lost.len() as u64
    );
    let problems = stats.problems.lock().unwrap().clone();
    assert!(Stats::get(&stats.ops) >= OPERATIONS);
    assert_eq!(
        Stats::get(&stats.missing),
        0,
        "lost during the run: {problems:#?}"
    );
    assert_eq!(missing, 0, "lost at the end");
    assert_eq!(Stats::get(&stats.unexpected), 0, "{problems:#?}");
    assert!(
        lost.is_empty(),
        "referenced blobs missing from the store: {lost:?}"
    );
    assert!(
        leaked.is_empty(),
        "store objects nothing references: {leaked:?}"
    );
    assert!(
        killed_mid_gc.load(Ordering::Relaxed) >= 1,
        "no kill landed during a GC run"
    );
}

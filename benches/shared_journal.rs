//! What a shared journal costs: command latency against a local PostgreSQL, and how fast a
//! cache catches up.
//!
//! One real worker (tests/cluster) and a throwaway PostgreSQL cluster (tests/support/postgres.rs)
//! on this machine. A bucket with one small job is built and deployed, then `maand deploy` with
//! nothing to do and `maand cat deployments` each run `MAAND_BENCH_ROUNDS` times (default 7,
//! release binary, whole process) on the SQLite-only bucket, then again after `maand journal
//! push` made its journal shared. Target: the shared path adds ≤ 20 ms to either median.
//!
//! Then `MAAND_BENCH_EVENTS` events (default 100,000: `run_started` / `run_finished` pairs) are
//! recorded into a shared journal through `SharedJournal::record` in batches of 10,000, and a
//! fresh cache pulls them all: verify each link, store, project. Target: ≥ 100,000 events/s.
//! Run with `cargo bench --bench shared_journal` (as root, like the integration tests).

#[path = "../tests/support/mod.rs"]
mod support;

use maand::events::{Event, RunFinished, RunOutcome, RunStarted};
use maand::shared_journal::{JournalUrl, SharedJournal};
use std::time::{Duration, Instant};
use support::bucket::TestBucket;
use support::cluster::Cluster;
use support::postgres::Postgres;

fn rounds() -> usize {
    std::env::var("MAAND_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

fn median_ms(bucket: &TestBucket, args: &[&str]) -> f64 {
    let mut times: Vec<Duration> = (0..rounds())
        .map(|_| {
            let start = Instant::now();
            bucket.maand_ok(args);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn command_latency(pg: &Postgres) {
    let cluster = Cluster::start(1);
    let bucket = TestBucket::new(&cluster, &[&["app"]]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["app"]}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", "start:\n\t@true\n");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let commands: [&[&str]; 2] = [&["deploy"], &["cat", "deployments"]];
    let local: Vec<f64> = commands.iter().map(|c| median_ms(&bucket, c)).collect();
    bucket.maand_ok(&["journal", "push", &pg.url()]);
    let shared: Vec<f64> = commands.iter().map(|c| median_ms(&bucket, c)).collect();
    for ((command, local), shared) in commands.iter().zip(local).zip(shared) {
        let added = shared - local;
        println!(
            "maand {:<16} SQLite only {local:7.1} ms   shared journal {shared:7.1} ms   added {added:6.1} ms (target ≤ 20 ms: {})",
            command.join(" "),
            verdict(added <= 20.0)
        );
    }
}

fn pull_throughput(pg: &Postgres) {
    let total: u64 = std::env::var("MAAND_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let url = JournalUrl::parse(&pg.url()).unwrap();
    let cache = |dir: &std::path::Path| {
        let bucket = maand::bucket::Bucket::at(dir);
        std::fs::create_dir_all(bucket.data_dir()).unwrap();
        let mut conn = maand::bucket::open(&bucket.db_path()).unwrap();
        maand::bucket::migrate(&mut conn, &bucket.db_path()).unwrap();
        (bucket, conn)
    };
    let (writer_dir, reader_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (writer_bucket, mut writer) = cache(writer_dir.path());
    let shared = SharedJournal::connect(&url, "pull-bench").unwrap();
    shared.install().unwrap();
    let started = Event::RunStarted(RunStarted {
        command: "build".into(),
        argv: vec!["maand".into(), "build".into()],
        maand_version: "0.1.0".into(),
        user: "ops".into(),
        host: "operator".into(),
        pid: 1,
    });
    let finished = Event::RunFinished(RunFinished {
        outcome: RunOutcome::Succeeded,
        duration_ms: 1,
        error: None,
    });
    let batch = 10_000u64;
    let mut written = 0;
    while written < total {
        let events: Vec<Event> = (0..batch.min(total - written))
            .map(|i| match i % 2 {
                0 => started.clone(),
                _ => finished.clone(),
            })
            .collect();
        let run = format!("run-{written}");
        shared
            .record(&mut writer, &writer_bucket, &run, 1, &events, &[])
            .unwrap();
        written += events.len() as u64;
    }
    let (reader_bucket, mut reader) = cache(reader_dir.path());
    let start = Instant::now();
    let pulled = shared.pull(&mut reader, &reader_bucket).unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let rate = pulled as f64 / elapsed;
    println!(
        "pull of {pulled} events into a fresh cache: {elapsed:.2} s, {rate:.0} events/s (target ≥ 100000: {})",
        verdict(rate >= 100_000.0)
    );
}

fn main() {
    let pg = Postgres::start();
    command_latency(&pg);
    pull_throughput(&pg);
}

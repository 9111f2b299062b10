//! Command latency on a long journal: `maand deploy` with nothing to do, `maand cat
//! deployments` and `maand info` on a bucket whose journal holds 1,000,000 events.
//!
//! One real worker (tests/cluster) and one small job are built and deployed, then the journal
//! is padded with run events (`run_started` / `run_finished` pairs, `MAAND_BENCH_EVENTS`,
//! default 1,000,000) through `catalog::commit`, as that many commands would have left them.
//! Each command then runs 5 times (release binary, whole process); medians are printed against
//! the targets: no-op deploy ≤ 0.1 s, `cat deployments` ≤ 50 ms, `info` ≤ 50 ms. Run with
//! `cargo bench --bench journal_latency` (as root, like the integration tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use maand::catalog;
use maand::events::{Event, RunFinished, RunOutcome, RunStarted};
use support::bucket::TestBucket;
use support::cluster::Cluster;

const ROUNDS: usize = 5;

fn main() {
    let total: u64 = std::env::var("MAAND_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cluster = Cluster::start(1);
    let bucket = TestBucket::new(&cluster, &[&["app"]]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["app"]}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", "start:\n\t@true\n");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);

    let path = bucket.path().join("data/maand.db");
    let mut conn = maand::bucket::open(&path).expect("open");
    let batch = 10_000u64;
    let mut written = 0u64;
    let started = Instant::now();
    while written < total {
        let n = batch.min(total - written);
        let events: Vec<Event> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    Event::RunStarted(RunStarted {
                        command: "run_command".into(),
                        argv: vec!["maand".into(), "run_command".into(), "true".into()],
                        maand_version: "0.1.0".into(),
                        user: "bench".into(),
                        host: "bench".into(),
                        pid: i as u32,
                    })
                } else {
                    Event::RunFinished(RunFinished {
                        outcome: RunOutcome::Succeeded,
                        duration_ms: i,
                        error: None,
                    })
                }
            })
            .collect();
        let run_id = format!("padding-{}", written / batch);
        catalog::commit(&mut conn, &run_id, written as i64, &events, &[]).expect("commit");
        written += n;
    }
    drop(conn);
    println!(
        "journal padded with {total} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let median = |args: &[&str]| {
        let mut times: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                bucket.maand_ok(args);
                started.elapsed()
            })
            .collect();
        times.sort();
        times[ROUNDS / 2]
    };
    let rows = [
        ("maand deploy, nothing changed", median(&["deploy"]), 0.100),
        (
            "maand cat deployments",
            median(&["cat", "deployments"]),
            0.050,
        ),
        ("maand info", median(&["info"]), 0.050),
    ];
    println!("{ROUNDS} runs each (medians), journal of {total}+ events:");
    for (label, time, target) in rows {
        println!(
            "  {label:<32} {:>7.1} ms  (target <= {:.0} ms, ratio {:.2})",
            time.as_secs_f64() * 1000.0,
            target * 1000.0,
            time.as_secs_f64() / target
        );
    }
}

//! Benchmark: how fast maand records and replays its journal.
//!
//! Appends N small domain events (default 1,000,000; `MAAND_BENCH_EVENTS` overrides) through
//! `catalog::commit` in batches of 10,000 — each batch one transaction that also updates the
//! projections — then times `catalog::rebuild` (delete every projection row, replay the whole
//! journal) and `journal::verify`. Prints events per second for each. Run with
//! `cargo bench --bench journal_rebuild`.

use maand::catalog;
use maand::events::{Event, RunFinished, RunOutcome, RunStarted};
use std::time::Instant;

fn main() {
    let total: u64 = std::env::var("MAAND_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("maand.db");
    let mut conn = maand::bucket::open(&path).expect("open");
    maand::bucket::migrate(&mut conn, &path).expect("migrate");

    let batch = 10_000u64;
    let started = Instant::now();
    let mut written = 0u64;
    while written < total {
        let n = batch.min(total - written);
        let run_id = format!("run-{}", written / batch);
        let events: Vec<Event> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    Event::RunStarted(RunStarted {
                        command: "bench".into(),
                        argv: vec!["maand".into(), "bench".into()],
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
        catalog::commit(&mut conn, &run_id, written as i64, &events, &[]).expect("commit");
        written += n;
    }
    let append_secs = started.elapsed().as_secs_f64();
    println!(
        "append+project  {total} events in {append_secs:.2}s = {:.0} events/s (batches of {batch})",
        total as f64 / append_secs
    );

    let started = Instant::now();
    let report = catalog::rebuild(&mut conn).expect("rebuild");
    let rebuild_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.events, total);
    println!(
        "rebuild         {total} events in {rebuild_secs:.2}s = {:.0} events/s (target >= 200000)",
        total as f64 / rebuild_secs
    );

    let started = Instant::now();
    let verify = journal::verify(&conn).expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    assert!(verify.first_bad.is_none());
    println!(
        "verify chain    {total} events in {verify_secs:.2}s = {:.0} events/s",
        total as f64 / verify_secs
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database size   {:.1} MiB", size as f64 / 1048576.0);
}

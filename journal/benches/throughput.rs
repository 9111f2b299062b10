//! Throughput of the journal on a real WAL-mode database file: appending many small events in
//! one transaction, appending one event per transaction, reading everything back, verifying.
//!
//! Run with `cargo bench -p journal --bench throughput`. Sizes come from the environment:
//! `JOURNAL_BENCH_EVENTS` (default 1,000,000) for the batched append, the read and the verify;
//! `JOURNAL_BENCH_TX_EVENTS` (default 20,000) for one event per transaction.

use journal::{NewEvent, StoredEvent};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::time::{Duration, Instant};

/// Events handed to each `append` call in the batched run (all calls share one transaction).
const EVENTS_PER_CALL: usize = 100_000;

fn events_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.replace(['_', ','], "").parse().unwrap_or_else(|err| {
            panic!(
                "{name}={text:?} is not a number of events ({err}); unset it or give e.g. 200000"
            )
        }),
        Err(_) => default,
    }
}

fn open(path: &Path, synchronous: &str) -> Connection {
    let conn = Connection::open(path).expect("open the benchmark database");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("enable WAL");
    conn.pragma_update(None, "synchronous", synchronous)
        .expect("set synchronous");
    journal::install(&conn).expect("install the journal");
    conn
}

/// A small event: ~40 bytes of text and an 8-byte bincode payload.
fn small_event(n: usize) -> NewEvent {
    NewEvent {
        run_id: format!("run-{:06}", n / 1000),
        time_ms: 1_700_000_000_000 + n as i64,
        kind: "bench.tick".to_owned(),
        schema_version: 1,
        payload: journal::encode(&(n as u64)).expect("encode a payload"),
    }
}

fn per_second(count: usize, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64();
    let digits = format!("{:.0}", rate);
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn report(what: &str, count: usize, elapsed: Duration) {
    println!(
        "| {what:<52} | {count:>9} | {:>8.3} s | {:>12} events/s |",
        elapsed.as_secs_f64(),
        per_second(count, elapsed)
    );
}

fn append_batched(conn: &mut Connection, count: usize) -> Duration {
    let mut elapsed = Duration::ZERO;
    let begin = Instant::now();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let mut head = journal::head(&tx).unwrap();
    elapsed += begin.elapsed();
    let mut start = 0;
    while start < count {
        let chunk: Vec<_> = (start..count.min(start + EVENTS_PER_CALL))
            .map(small_event)
            .collect();
        let call = Instant::now();
        let seqs = journal::append(&tx, head, &chunk).unwrap();
        elapsed += call.elapsed();
        head = *seqs.last().unwrap();
        start += chunk.len();
    }
    let commit = Instant::now();
    tx.commit().unwrap();
    elapsed + commit.elapsed()
}

fn append_one_per_transaction(conn: &mut Connection, count: usize) -> Duration {
    let events: Vec<_> = (0..count).map(small_event).collect();
    let begin = Instant::now();
    for event in events.chunks(1) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let head = journal::head(&tx).unwrap();
        journal::append(&tx, head, event).unwrap();
        tx.commit().unwrap();
    }
    begin.elapsed()
}

fn read_all(conn: &Connection) -> (usize, Duration) {
    let begin = Instant::now();
    let mut count = 0;
    let mut checksum = 0u64;
    for event in journal::events_from(conn, 0) {
        let event: StoredEvent = event.unwrap();
        checksum = checksum.wrapping_add(journal::decode::<u64>(&event.payload).unwrap());
        count += 1;
    }
    std::hint::black_box(checksum);
    (count, begin.elapsed())
}

fn main() {
    let batched = events_from_env("JOURNAL_BENCH_EVENTS", 1_000_000);
    let one_per_tx = events_from_env("JOURNAL_BENCH_TX_EVENTS", 20_000);
    let durable = (one_per_tx / 10).max(1);
    let dir = tempfile::tempdir().expect("create a temporary directory");

    println!(
        "journal throughput: SQLite {}, WAL mode, one file in {}",
        rusqlite::version(),
        dir.path().display()
    );
    println!(
        "| {:<52} | {:>9} | {:>10} | {:>21} |",
        "operation", "events", "time", "throughput"
    );
    println!("|{:-<54}|{:->11}|{:->12}|{:->23}|", "", "", "", "");

    let path = dir.path().join("batched.db");
    let mut conn = open(&path, "NORMAL");
    let elapsed = append_batched(&mut conn, batched);
    report(
        &format!("append, 1 transaction, {EVENTS_PER_CALL} events per call"),
        batched,
        elapsed,
    );
    let (count, elapsed) = read_all(&conn);
    assert_eq!(count, batched);
    report("read all (events_from + decode payload)", count, elapsed);
    let begin = Instant::now();
    let verified = journal::verify(&conn).unwrap();
    let elapsed = begin.elapsed();
    assert!(verified.is_intact(), "{verified:?}");
    report("verify", verified.checked as usize, elapsed);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint the WAL");
    let bytes = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
    drop(conn);

    for (synchronous, count) in [("NORMAL", one_per_tx), ("FULL", durable)] {
        let path = dir.path().join(format!("per-tx-{synchronous}.db"));
        let mut conn = open(&path, synchronous);
        let elapsed = append_one_per_transaction(&mut conn, count);
        report(
            &format!("append, 1 event per transaction, synchronous={synchronous}"),
            count,
            elapsed,
        );
    }
    println!(
        "database file after the batched append (checkpointed): {:.1} MiB, {:.0} bytes/event",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / batched.max(1) as f64
    );
}

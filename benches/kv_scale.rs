//! Benchmark: KV that grows linearly. `maand build` of 1,000 workers all carrying one label,
//! with every job on every worker (10 jobs, then 100 jobs), and the size of `maand.db`.
//!
//! Peer lists (`peer_workers`, `<label>_peers`) are derived on read, so the database grows
//! with workers × jobs, not with its square. Targets: 10 jobs ≤ 1 s and ≤ 50 MB; 100 jobs
//! ≤ 10 s and ≤ 500 MB. `MAAND_BENCH_WORKERS` and `MAAND_BENCH_JOB_COUNTS` (comma-separated,
//! default `10,100`) change the shape. Runs the release binary as a user would. Run with
//! `cargo bench --bench kv_scale`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn maand(bucket: &Path, args: &[&str]) -> (f64, Vec<u8>) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_maand"))
        .args(args)
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .output()
        .expect("run maand");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "maand {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, out.stdout)
}

/// One bucket of `workers` workers labelled `all` and `jobs` jobs selecting `all`.
fn measure(workers: usize, jobs: usize, time_target: f64, size_target_mb: f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = dir.path();
    maand(bucket, &["init"]);
    let ws = bucket.join("workspace");
    let list: Vec<serde_json::Value> = (0..workers)
        .map(|i| {
            serde_json::json!({
                "host": format!("127.{}.{}.{}", 100 + i / 62500, (i / 250) % 250, i % 250 + 1),
                "labels": ["all"],
            })
        })
        .collect();
    std::fs::write(
        ws.join("workers.json"),
        serde_json::to_string_pretty(&list).unwrap(),
    )
    .unwrap();
    for j in 0..jobs {
        let job = ws.join("jobs").join(format!("job{j}"));
        std::fs::create_dir_all(&job).unwrap();
        let manifest = serde_json::json!({"version": "1.0.0", "selectors": ["all"]});
        std::fs::write(job.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(job.join("Makefile"), format!("start:\n\t@echo job{j}\n")).unwrap();
    }
    let (build, _) = maand(bucket, &["build"]);
    let size_mb = std::fs::metadata(bucket.join("data/maand.db"))
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1e6;
    let last = list.last().unwrap()["host"].as_str().unwrap().to_string();
    let namespace = format!("maand/job/job0/worker/{last}");
    let (get, peers) = maand(bucket, &["cat", "kv", "get", &namespace, "peer_workers"]);
    let peers = String::from_utf8_lossy(&peers);
    assert_eq!(peers.trim().split(',').count(), workers - 1, "{peers}");
    println!(
        "{workers} workers x {jobs} jobs on one label ({} allocations)",
        workers * jobs
    );
    println!(
        "  build                 {build:.2} s   (target <= {time_target} s, ratio {:.2})",
        build / time_target
    );
    println!(
        "  maand.db              {size_mb:.1} MB  (target <= {size_target_mb} MB, ratio {:.2})",
        size_mb / size_target_mb
    );
    println!("  cat kv get peer_workers {get:.3} s");
}

fn main() {
    let workers = std::env::var("MAAND_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let counts = std::env::var("MAAND_BENCH_JOB_COUNTS").unwrap_or_else(|_| "10,100".into());
    for jobs in counts
        .split(',')
        .filter_map(|c| c.trim().parse::<usize>().ok())
    {
        let (time_target, size_target) = if jobs <= 10 {
            (1.0, 50.0)
        } else {
            (10.0, 500.0)
        };
        measure(workers, jobs, time_target, size_target);
    }
}

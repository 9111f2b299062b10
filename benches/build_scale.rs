//! Benchmark: `maand build` on a generated workspace of 1,000 workers × 100 jobs.
//!
//! Each job has one `{}` port, a version and a two-file tree. Workers carry one of G group
//! labels and job j selects group j mod G, so every job lands on 1000/G workers (default
//! G = 10: 100 workers per job, 10 jobs per worker, 10,000 allocations). `MAAND_BENCH_WORKERS`,
//! `MAAND_BENCH_JOBS` and `MAAND_BENCH_GROUPS` change the shape. Runs the release binary as a
//! user would and prints wall times against the targets: build ≤ 2 s, no-change rebuild ≤ 1 s,
//! `cat allocations` ≤ 0.3 s. Run with `cargo bench --bench build_scale`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn maand(bucket: &Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_maand"))
        .args(args)
        .current_dir(bucket)
        .output()
        .expect("run maand");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "maand {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn main() {
    let (workers, jobs, groups) = (
        env_or("MAAND_BENCH_WORKERS", 1000),
        env_or("MAAND_BENCH_JOBS", 100),
        env_or("MAAND_BENCH_GROUPS", 10),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = dir.path();
    maand(bucket, &["init"]);
    let ws = bucket.join("workspace");
    let list: Vec<serde_json::Value> = (0..workers)
        .map(|i| {
            serde_json::json!({
                "host": format!("10.{}.{}.{}", i / 62500, (i / 250) % 250, i % 250 + 1),
                "labels": [format!("g{}", i % groups)],
                "memory": "16 gb", "cpu": "8 ghz", "tags": {"zone": format!("z{}", i % 3)},
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
        let manifest = serde_json::json!({
            "version": format!("1.{j}.0"),
            "selectors": [format!("g{}", j % groups)],
            "resources": {"ports": {format!("job{j}_port"): {}}},
        });
        std::fs::write(job.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(job.join("Makefile"), format!("start:\n\t@echo job{j}\n")).unwrap();
    }
    println!(
        "workspace: {workers} workers, {jobs} jobs, {groups} label groups -> {} allocations",
        jobs * workers / groups
    );
    let build = maand(bucket, &["build"]);
    let rebuild = maand(bucket, &["build"]);
    let cat = maand(bucket, &["cat", "allocations"]);
    let size = std::fs::metadata(bucket.join("data/maand.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "build                {build:.2}s  (target <= 2.0s, ratio {:.2})",
        build / 2.0
    );
    println!(
        "no-change rebuild    {rebuild:.2}s  (target <= 1.0s, ratio {:.2})",
        rebuild / 1.0
    );
    println!(
        "cat allocations      {cat:.2}s  (target <= 0.3s, ratio {:.2})",
        cat / 0.3
    );
    println!("maand.db             {:.1} MiB", size as f64 / 1048576.0);
}

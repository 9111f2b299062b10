//! `maand deploy` against the physical floor, measured in the same run on N real workers
//! (`MAAND_BENCH_WORKERS`, default 8; above 32 also raise `MAAND_TESTBED_MAX_WORKERS`).
//!
//! The job: 50 files, 1 MiB in all, and a Makefile whose `start` writes a state file.
//! - floor: for every worker in parallel, open one ssh master, rsync the tree through it (as
//!   root via `sudo rsync`), run `make -s start` through it, close it — the least any push tool
//!   must do;
//! - maand first deploy: `maand deploy` of a freshly built bucket (new bucket id, so nothing is on
//!   the workers yet);
//! - maand first deploy on a terminal: the same, on another fresh bucket, with stdout on a
//!   pseudo-terminal, so the live progress lines are drawn (the terminal reporter's cost);
//! - maand no-op deploy: `maand deploy` again with nothing changed;
//! - maand one-file redeploy, warm: one file of the job changed, `maand build`, then `maand
//!   deploy` over the masters the first deploy left open (`ssh_master_idle`), against the
//!   floor (which opens its masters) — once as a rolling restart one worker at a time (the
//!   default `max_concurrent_upgrades` of 1), and once with every worker restarting at the same
//!   time (`max_concurrent_upgrades` = workers), as the floor does.
//!
//! Each is repeated (`MAAND_BENCH_ROUNDS`, default 5) and the medians are compared. Targets:
//! first deploy ≤ 1.3 × floor, no-op deploy ≤ 0.1 s, warm one-file redeploy ≤ 0.35 × floor. Run with `cargo bench --bench deploy_floor`
//! (as root, like the integration tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::bucket::{maand_binary, set_master_idle, TestBucket};
use support::cluster::Cluster;

const MAKEFILE: &str = "start:\n\t@mkdir -p data && echo running > data/state\nrestart: start\n";

fn write_tree(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..49 {
        let content: Vec<u8> = (0..21_000u32)
            .map(|b| (b.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(dir.join(format!("file{i:02}.bin")), content).unwrap();
    }
    std::fs::write(dir.join("Makefile"), MAKEFILE).unwrap();
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn floor_round(cluster: &Cluster, tree: &Path, round: usize) -> Duration {
    let options = format!(
        "-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {} -l {}",
        cluster.known_hosts_path().display(),
        cluster.key_path().display(),
        cluster.user()
    );
    let mut script = String::from("set -e\n");
    for (i, host) in cluster.hosts().iter().enumerate() {
        let socket = format!("/tmp/maand-floor-{}-{round}-{i}.sock", std::process::id());
        script.push_str(&format!(
            "( ssh {options} -o ControlMaster=yes -o ControlPath={socket} -f -N {host} && \
               rsync -a --mkpath -e 'ssh {options} -o ControlPath={socket}' --rsync-path='sudo rsync' {tree}/ {host}:/opt/floor-{round}/ && \
               ssh {options} -o ControlPath={socket} {host} sudo make -s -C /opt/floor-{round} start && \
               ssh {options} -o ControlPath={socket} -O exit {host} 2>/dev/null ) &\n",
            tree = tree.display()
        ));
    }
    script.push_str("wait\n");
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "the floor script failed");
    elapsed
}

fn timed(bucket: &TestBucket, args: &[&str]) -> Duration {
    let started = Instant::now();
    bucket.maand_ok(args);
    started.elapsed()
}

/// Writes the bench job's manifest: `upgrades` allocations restart at the same time.
fn write_manifest(job: &Path, upgrades: usize) {
    std::fs::write(
        job.join("manifest.json"),
        format!(
            r#"{{"version": "1.0.0", "selectors": ["app"], "max_concurrent_upgrades": {upgrades}}}"#
        ),
    )
    .unwrap();
}

/// A fresh bucket of `workers` workers holding the bench's job, built, not deployed.
fn built_bucket(cluster: &Cluster, labels: &[&[&str]]) -> TestBucket {
    let bucket = TestBucket::new(cluster, labels);
    set_master_idle(bucket.path(), 60);
    let job = bucket.path().join("workspace/jobs/app");
    write_tree(&job);
    write_manifest(&job, 1);
    bucket.maand_ok(&["build"]);
    bucket
}

/// `maand deploy` with its output on a pseudo-terminal.
fn timed_on_terminal(bucket: &TestBucket) -> Duration {
    let mut command = Command::new(maand_binary());
    command
        .arg("deploy")
        .current_dir(bucket.path())
        .env_remove("MAAND_BUCKET")
        .env("TERM", "xterm");
    let started = Instant::now();
    let mut deploy = support::pty::PtyChild::spawn(&mut command);
    let code = deploy.wait_exit(Duration::from_secs(600));
    let elapsed = started.elapsed();
    // The bucket's warm masters keep the terminal open after maand exits; the screen is
    // complete once maand has.
    assert_eq!(code, Some(0), "{}", deploy.screen());
    elapsed
}

fn main() {
    let rounds: usize = std::env::var("MAAND_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let workers: usize = std::env::var("MAAND_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let cluster = Cluster::start(workers);
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("tree");
    write_tree(&tree);
    let labels: Vec<&[&str]> = (0..workers).map(|_| &["app"][..]).collect();

    let (mut floor, mut first, mut on_terminal, mut noop, mut one_file, mut one_file_parallel) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for round in 0..rounds {
        floor.push(floor_round(&cluster, &tree, round));
        let drawn = built_bucket(&cluster, &labels);
        on_terminal.push(timed_on_terminal(&drawn));
        drawn.maand_ok(&["disconnect"]);
        let bucket = built_bucket(&cluster, &labels);
        let job = bucket.path().join("workspace/jobs/app");
        first.push(timed(&bucket, &["deploy"]));
        noop.push(timed(&bucket, &["deploy"]));
        std::fs::write(job.join("file00.bin"), format!("changed in round {round}")).unwrap();
        bucket.maand_ok(&["build"]);
        one_file.push(timed(&bucket, &["deploy"]));
        // Every worker restarting at once, as the floor does (the manifest change itself is
        // deployed untimed first).
        write_manifest(&job, workers);
        bucket.maand_ok(&["build"]);
        bucket.maand_ok(&["deploy"]);
        std::fs::write(job.join("file01.bin"), format!("changed in round {round}")).unwrap();
        bucket.maand_ok(&["build"]);
        one_file_parallel.push(timed(&bucket, &["deploy"]));
        bucket.maand_ok(&["disconnect"]);
    }
    let (floor, first, on_terminal, noop, one_file, one_file_parallel) = (
        median(floor),
        median(first),
        median(on_terminal),
        median(noop),
        median(one_file),
        median(one_file_parallel),
    );
    println!("workers: {workers}, job: 50 files / 1 MiB, rounds: {rounds} (medians)");
    println!(
        "floor (ssh master + rsync + make start, parallel)  {:>7.3} s",
        floor.as_secs_f64()
    );
    println!(
        "maand deploy, first                               {:>7.3} s   {:.2} x floor (target <= 1.30)",
        first.as_secs_f64(),
        first.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "maand deploy, first, on a terminal                {:>7.3} s   {:.2} x floor (target <= 1.30)",
        on_terminal.as_secs_f64(),
        on_terminal.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "maand deploy, nothing changed                     {:>7.3} s   (target <= 0.100 s)",
        noop.as_secs_f64()
    );
    println!(
        "maand deploy, one file changed, warm, rolling     {:>7.3} s   {:.2} x floor (one worker at a time)",
        one_file.as_secs_f64(),
        one_file.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "maand deploy, one file changed, warm, all at once {:>7.3} s   {:.2} x floor (target <= 0.35)",
        one_file_parallel.as_secs_f64(),
        one_file_parallel.as_secs_f64() / floor.as_secs_f64()
    );
}

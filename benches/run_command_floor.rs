//! What a whole `maand run_command true` on N workers costs, next to what OpenSSH alone needs.
//!
//! Starts N real workers (tests/cluster; `MAAND_BENCH_WORKERS`, default 8; above 32 also raise
//! `MAAND_TESTBED_MAX_WORKERS`) and a bucket listing them, then alternates rounds of:
//! - maand cold: `maand disconnect`, then the release binary running `run_command true -c N`
//!   (process start, bucket lock, run events, a new master per worker, the command, every
//!   line journaled, summary); only the run_command is timed;
//! - maand warm: the same command again, reusing the masters the cold round left open
//!   (`ssh_master_idle`);
//! - warm floor: a bash loop starting `ssh -o ControlPath=<socket> HOST true` for all 8
//!   workers in parallel over masters opened beforehand, and waiting for them;
//! - cold floor: the same loop with no master, each ssh making its own connection.
//!
//! Prints min and median of each and the ratios of medians: warm maand against the warm floor
//! (target ≤ 2), cold maand against the cold floor (target ≤ 1.3). Run with
//! `cargo bench --bench run_command_floor` (as root, like the integration tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::cluster::Cluster;

const ROUNDS: usize = 15;

fn main() {
    let workers = std::env::var("MAAND_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    run(workers);
}

fn run(workers: usize) {
    let cluster = Cluster::start(workers);
    let hosts = cluster.hosts().to_vec();
    let bucket = tempfile::tempdir().unwrap();
    let maand = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_maand"))
            .args(args)
            .current_dir(bucket.path())
            .env_remove("MAAND_BUCKET")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "maand {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    maand(&["init"]);
    let key = bucket.path().join("secrets/worker.key");
    std::fs::copy(cluster.key_path(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let worker_list: Vec<serde_json::Value> = hosts
        .iter()
        .map(|host| serde_json::json!({ "host": host }))
        .collect();
    std::fs::write(
        bucket.path().join("workspace/workers.json"),
        serde_json::to_string_pretty(&worker_list).unwrap(),
    )
    .unwrap();
    maand(&["build"]);
    let concurrency = workers.to_string();
    let maand_round = |cold: bool| {
        if cold {
            maand(&["disconnect"]);
        }
        let started = Instant::now();
        maand(&["run_command", "true", "-c", &concurrency]);
        started.elapsed()
    };
    maand_round(true); // records the host keys in the bucket's known_hosts

    let sockets_dir = tempfile::tempdir().unwrap();
    let sockets: Vec<String> = (0..workers)
        .map(|index| socket_path(sockets_dir.path(), index))
        .collect();
    let ssh_options = format!(
        "-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {} -l {}",
        cluster.known_hosts_path().display(),
        cluster.key_path().display(),
        cluster.user()
    );
    for (host, socket) in hosts.iter().zip(&sockets) {
        let opened = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ssh -M -f -N -o ControlPath={socket} {ssh_options} {host}"
            ))
            .status()
            .unwrap();
        assert!(opened.success(), "floor master to {host}");
    }
    let warm_script =
        timed_loop(hosts.iter().zip(&sockets).map(|(host, socket)| {
            format!("ssh -o ControlPath={socket} {ssh_options} {host} true")
        }));
    let cold_script = timed_loop(hosts.iter().map(|host| {
        format!("ssh -o ControlMaster=no -o ControlPath=none {ssh_options} {host} true")
    }));
    let warm_round = || run_timed(&warm_script);
    let cold_round = || run_timed(&cold_script);
    warm_round();
    cold_round();

    let (mut ours_cold, mut ours_warm, mut warm, mut cold) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours_cold.push(maand_round(true));
        ours_warm.push(maand_round(false));
        warm.push(warm_round());
        cold.push(cold_round());
    }
    maand(&["disconnect"]);
    for socket in &sockets {
        let _ = Command::new("ssh")
            .args(["-o", &format!("ControlPath={socket}"), "-O", "exit", "x"])
            .output();
    }

    let (ours_cold_min, ours_cold_median) = summary(&mut ours_cold);
    let (ours_warm_min, ours_warm_median) = summary(&mut ours_warm);
    let (warm_min, warm_median) = summary(&mut warm);
    let (cold_min, cold_median) = summary(&mut cold);
    println!("`true` on {workers} workers in parallel, {ROUNDS} rounds (min / median):");
    let rows = [
        (
            format!("maand run_command -c {workers}, cold"),
            ours_cold_min,
            ours_cold_median,
        ),
        (
            format!("maand run_command -c {workers}, warm"),
            ours_warm_min,
            ours_warm_median,
        ),
        (
            "ssh loop, open masters (warm)".to_string(),
            warm_min,
            warm_median,
        ),
        (
            "ssh loop, new connections (cold)".to_string(),
            cold_min,
            cold_median,
        ),
    ];
    for (label, min, median) in rows {
        println!("  {label:<34} {:>7.1} ms / {:>7.1} ms", ms(min), ms(median));
    }
    println!(
        "  {:<34} {:.2}  (target <= 2)",
        "warm maand / warm floor (medians)",
        ours_warm_median.as_secs_f64() / warm_median.as_secs_f64()
    );
    println!(
        "  {:<34} {:.2}  (target <= 1.3)",
        "cold maand / cold floor (medians)",
        ours_cold_median.as_secs_f64() / cold_median.as_secs_f64()
    );
}

fn socket_path(dir: &Path, index: usize) -> String {
    dir.join(format!("floor-{index}.sock"))
        .display()
        .to_string()
}

/// A bash script starting every command in the background, waiting for all (failing if any
/// failed), and printing the elapsed microseconds.
fn timed_loop(commands: impl Iterator<Item = String>) -> String {
    let started: Vec<String> = commands
        .map(|command| format!("{command} & pids+=($!);"))
        .collect();
    format!(
        "pids=(); start=$EPOCHREALTIME; {} for pid in \"${{pids[@]}}\"; do wait $pid || exit 1; done; \
         end=$EPOCHREALTIME; echo $(( ${{end/./}} - ${{start/./}} ))",
        started.join(" ")
    )
}

fn run_timed(script: &str) -> Duration {
    let output = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let micros: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    Duration::from_micros(micros)
}

fn summary(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

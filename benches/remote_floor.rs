//! How close maand's fan-out gets to the floor that OpenSSH multiplexing allows.
//!
//! Starts 8 real workers (tests/cluster), then alternates rounds of:
//! - ours: `Fleet::run` of `true` on all 8 workers over the fleet's open masters;
//! - floor: a bash loop starting `ssh -o ControlPath=<socket> HOST true` for all 8 workers in
//!   parallel and waiting for them, over masters opened beforehand with plain `ssh -M`;
//! - native mux: the `openssh` crate's native mux client (it speaks the ControlMaster protocol
//!   over the socket itself, no `ssh` process per command) running `true` over the same
//!   masters as the floor, all 8 at once.
//!
//! Prints min and median of each and the ratios of medians: the measurement behind the choice
//! of spawned ssh clients over the crate (docs/architecture.md). Run with
//! `cargo bench --bench remote_floor` (as root, like the integration tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maand::remote::{Fleet, RemoteCommand};
use support::cluster::Cluster;
use support::remote::{config, Recorder};

const WORKERS: usize = 8;
const ROUNDS: usize = 40;

fn main() {
    let cluster = Cluster::start(WORKERS);
    let dir = std::env::temp_dir().join(format!("maand-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let fleet = Fleet::new(config(&cluster, &dir.join("known_hosts")), WORKERS).unwrap();
    let hosts = cluster.hosts().to_vec();
    let trivial = RemoteCommand::new(["true"], Duration::from_secs(30)).unwrap();
    let observer = Arc::new(Recorder::default());
    let ours_round = || {
        runtime.block_on(async {
            let started = Instant::now();
            for result in fleet.run(&hosts, &trivial, observer.clone()).await {
                assert!(result.result.unwrap().success());
            }
            started.elapsed()
        })
    };
    ours_round(); // opens the masters

    let sockets: Vec<String> = (0..WORKERS)
        .map(|index| {
            dir.join(format!("floor-{index}.sock"))
                .display()
                .to_string()
        })
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
    let floor_script = format!(
        "start=$EPOCHREALTIME; {} wait; end=$EPOCHREALTIME; echo $(( (${{end/./}} - ${{start/./}}) ))",
        hosts
            .iter()
            .zip(&sockets)
            .map(|(host, socket)| format!("ssh -o ControlPath={socket} {ssh_options} {host} true &"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let floor_round = || {
        let output = Command::new("bash")
            .arg("-c")
            .arg(&floor_script)
            .output()
            .unwrap();
        assert!(output.status.success());
        let micros: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        Duration::from_micros(micros)
    };
    floor_round();

    let native: Vec<Arc<openssh::Session>> = sockets
        .iter()
        .map(|socket| {
            Arc::new(openssh::Session::resume_mux(
                std::path::PathBuf::from(socket).into(),
                None,
            ))
        })
        .collect();
    let native_round = || {
        runtime.block_on(async {
            let started = Instant::now();
            let mut running = tokio::task::JoinSet::new();
            for session in &native {
                let session = session.clone();
                running.spawn(async move { session.command("true").status().await });
            }
            while let Some(done) = running.join_next().await {
                let status = done.expect("task").expect("native mux command");
                assert!(status.success());
            }
            started.elapsed()
        })
    };
    native_round();

    let mut ours = Vec::new();
    let mut floor = Vec::new();
    let mut mux = Vec::new();
    for _ in 0..ROUNDS {
        ours.push(ours_round());
        floor.push(floor_round());
        mux.push(native_round());
    }
    drop(native);
    for socket in &sockets {
        let _ = Command::new("ssh")
            .args(["-o", &format!("ControlPath={socket}"), "-O", "exit", "x"])
            .output();
    }
    drop(fleet);
    let _ = std::fs::remove_dir_all(&dir);

    let (ours_min, ours_median) = summary(&mut ours);
    let (floor_min, floor_median) = summary(&mut floor);
    let (mux_min, mux_median) = summary(&mut mux);
    println!("`true` on {WORKERS} workers in parallel over open masters, {ROUNDS} rounds (min / median):");
    println!(
        "  maand fan-out:        {:>7.2} ms / {:>7.2} ms",
        ms(ours_min),
        ms(ours_median)
    );
    println!(
        "  ssh loop (the floor): {:>7.2} ms / {:>7.2} ms",
        ms(floor_min),
        ms(floor_median)
    );
    println!(
        "  openssh native mux:   {:>7.2} ms / {:>7.2} ms",
        ms(mux_min),
        ms(mux_median)
    );
    println!(
        "  maand / floor:        {:.2}",
        ours_median.as_secs_f64() / floor_median.as_secs_f64()
    );
    println!(
        "  native mux / floor:   {:.2}",
        mux_median.as_secs_f64() / floor_median.as_secs_f64()
    );
}

fn summary(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

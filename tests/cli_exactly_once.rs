//! Exactly-once lifecycle steps and time limits against real sshd workers: `maand deploy`
//! killed with SIGKILL at seeded random instants and resumed, a restart that outlives the
//! operator, and hook, health_check and lifecycle processes stopped at their time limits.

mod support;

use rand::{Rng, SeedableRng};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::bucket::TestBucket;
use support::cluster::Cluster;

/// Appends `<target> <CURRENT_VERSION>-><NEW_VERSION>` to data/events for every lifecycle
/// target, and says so on stdout. `restart` sleeps `RESTART_SLEEP` seconds in the middle.
const COUNTING_MAKEFILE: &str = "\
RESTART_SLEEP ?= 0
.PHONY: start stop restart reload
start:
\t@mkdir -p data && echo \"start $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
\t@echo started $(NEW_VERSION)
stop:
\t@mkdir -p data && echo stop >> data/events
restart:
\t@mkdir -p data && echo \"restart-begin $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
\t@sleep $(RESTART_SLEEP)
\t@echo restart-end >> data/events
\t@echo restarted $(NEW_VERSION)
reload:
\t@mkdir -p data && echo reload >> data/events
";

fn spawn_deploy(bucket: &TestBucket) -> Child {
    Command::new(support::bucket::maand_binary())
        .arg("deploy")
        .current_dir(bucket.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The lifecycle lines a worker recorded for a job.
fn events(cluster: &Cluster, bucket: &TestBucket, host: &str, job: &str) -> Vec<String> {
    let out = cluster.ssh(
        host,
        &format!(
            "cat {}/jobs/{job}/data/events 2>/dev/null",
            bucket.remote_dir()
        ),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Four jobs in three waves over four workers: `base` everywhere (wave 0, batches of two),
/// `mid` and `side` demanding it (wave 1, side by side, `mid` in batches of one), and `top`
/// demanding `mid` (wave 2, everywhere at once).
fn multi_wave_bucket(cluster: &Cluster) -> TestBucket {
    let labels: Vec<&[&str]> = vec![&["w"]; cluster.hosts().len()];
    let bucket = TestBucket::new(cluster, &labels);
    let jobs = [
        (
            "base",
            r#""max_concurrent_starts": 2, "commands": {"command_ready": {"executed_on": ["cli"]}}"#,
            "",
        ),
        (
            "mid",
            r#""max_concurrent_starts": 1, "commands": {"command_mid": {"executed_on": ["cli"], "demands": {"job": "base", "command": "command_ready"}}}"#,
            "command_mid",
        ),
        (
            "side",
            r#""commands": {"command_side": {"executed_on": ["cli"], "demands": {"job": "base", "command": "command_ready"}}}"#,
            "command_side",
        ),
        (
            "top",
            r#""commands": {"command_top": {"executed_on": ["cli"], "demands": {"job": "mid", "command": "command_mid"}}}"#,
            "command_top",
        ),
    ];
    for (name, extra, _) in jobs {
        bucket.write(
            &format!("workspace/jobs/{name}/manifest.json"),
            &format!(r#"{{"version": "1.0.0", "selectors": ["w"], {extra}}}"#),
        );
        bucket.write(
            &format!("workspace/jobs/{name}/Makefile"),
            COUNTING_MAKEFILE,
        );
    }
    for (name, _, command) in jobs {
        let command = if command.is_empty() {
            "command_ready"
        } else {
            command
        };
        bucket.write(&format!("workspace/jobs/{name}/_modules/{command}.py"), "");
    }
    bucket.maand_ok(&["build"]);
    bucket
}

/// The journal's steps and the worker's step files of `job@host`, for a failure message.
fn diagnose(cluster: &Cluster, bucket: &TestBucket, host: &str, job: &str) -> String {
    let steps = bucket.sql(&format!(
        "SELECT idx, kind, status, detail FROM deploy_steps WHERE job = '{job}' AND worker = '{host}'"
    ));
    let logs = bucket.maand_ok(&["logs", "show", "--job", job, "--format", "human"]);
    let files = cluster.ssh(
        host,
        &format!(
            "cd {}/steps && for f in */*; do echo \"== $f\"; cat \"$f\"; echo; done",
            bucket.remote_dir()
        ),
    );
    let files = format!(
        "{}{}",
        String::from_utf8_lossy(&files.stdout),
        String::from_utf8_lossy(&files.stderr)
    );
    format!("steps:\n{steps}\nlogs:\n{logs}\nworker step files:\n{files}")
}

/// What a finished deploy leaves in the catalog, without bucket-specific ids.
fn projection(bucket: &TestBucket) -> String {
    [
        "SELECT job, current_version, previous_hash IS NULL, stopped FROM deployments ORDER BY job, worker_ip",
        "SELECT status, failed FROM deploys",
        "SELECT idx, kind, status FROM deploy_steps ORDER BY idx",
    ]
    .map(|query| bucket.sql(query))
    .join("\n--\n")
}

#[test]
fn sigkill_at_random_instants_then_resume_runs_every_start_exactly_once() {
    let cluster = Cluster::start(4);
    let kills: u64 = std::env::var("MAAND_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("MAAND_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let jobs = ["base", "mid", "side", "top"];

    // The uninterrupted run: its projections and how long it takes.
    let reference = multi_wave_bucket(&cluster);
    let began = Instant::now();
    reference.maand_ok(&["deploy"]);
    let span = began.elapsed();
    let expected = projection(&reference);

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut resumed, mut replanned, mut finished_before_kill, mut starts) = (0, 0, 0, 0);
    for kill in 0..kills {
        let delay = span.mul_f64(rng.random_range(0.0..1.0));
        let bucket = multi_wave_bucket(&cluster);
        let mut child = spawn_deploy(&bucket);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let status = bucket.sql("SELECT status FROM deploys");
        let out = match status.as_str() {
            "" => {
                replanned += 1;
                bucket.maand(&["deploy"])
            }
            "succeeded" => {
                finished_before_kill += 1;
                bucket.maand(&["deploy"])
            }
            _ => {
                resumed += 1;
                bucket.maand(&["deploy", "--resume"])
            }
        };
        eprintln!("kill {kill} after {delay:?}: deploy status {status:?}");
        assert!(
            out.status.success(),
            "kill {kill} after {delay:?} (status {status:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(projection(&bucket), expected, "kill {kill} after {delay:?}");
        bucket.maand_ok(&["journal", "verify"]);
        for host in cluster.hosts() {
            for job in jobs {
                let lines = events(&cluster, &bucket, host, job);
                assert_eq!(
                    lines,
                    ["start 0.0.0->1.0.0"],
                    "kill {kill} after {delay:?}: {job}@{host}\n{}",
                    diagnose(&cluster, &bucket, host, job)
                );
                starts += lines.len();
            }
        }
    }
    println!(
        "{kills} kills (seed {seed}, uninterrupted deploy {span:?}): {resumed} resumed, \
         {replanned} killed before the plan was recorded, {finished_before_kill} finished before \
         the kill; {starts} starts, each ran exactly once, 0 repeated"
    );
}

#[test]
fn sigkill_during_a_restart_leaves_it_running_and_resume_records_it_once() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let bucket = TestBucket::new(&cluster, &[&["w"]]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"]}"#,
    );
    bucket.write(
        "workspace/jobs/app/Makefile",
        &COUNTING_MAKEFILE.replace("RESTART_SLEEP ?= 0", "RESTART_SLEEP ?= 3"),
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.1.0", "selectors": ["w"]}"#,
    );
    bucket.maand_ok(&["build"]);
    let mut child = spawn_deploy(&bucket);
    while !events(&cluster, &bucket, &host, "app")
        .iter()
        .any(|l| l.starts_with("restart-begin"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The restart goes on without maand and ends on the worker.
    while !events(&cluster, &bucket, &host, "app")
        .iter()
        .any(|l| l == "restart-end")
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        bucket.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%restart%'"),
        "started"
    );
    bucket.maand_ok(&["deploy", "--resume"]);
    assert_eq!(
        events(&cluster, &bucket, &host, "app"),
        [
            "start 0.0.0->1.0.0",
            "restart-begin 1.0.0->1.1.0",
            "restart-end"
        ]
    );
    assert_eq!(
        bucket.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%restart%'"),
        "succeeded"
    );
    // The restart's own output reached the journal through its step log.
    let logs = bucket.maand_ok(&["logs", "show", "--format", "human"]);
    assert!(logs.contains("restarted 1.1.0"), "{logs}");
    assert!(logs.contains("already finished on this worker"), "{logs}");
    bucket.maand_ok(&["journal", "verify"]);
    // Receipts of the finished deploy go with gc.
    let steps = format!("{}/steps", bucket.remote_dir());
    assert!(!cluster
        .ssh_ok(&host, &format!("ls -A {steps}"))
        .trim()
        .is_empty());
    let out = bucket.maand_ok(&["gc"]);
    assert!(out.contains("step receipts"), "{out}");
    assert_eq!(cluster.ssh_ok(&host, &format!("ls -A {steps}")).trim(), "");
}

/// Appends `key = value` settings to the bucket's maand.conf.
fn configure(bucket: &TestBucket, settings: &str) {
    let path = bucket.path().join("maand.conf");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(settings);
    std::fs::write(path, text).unwrap();
}

/// Processes on the operator host whose command line contains `marker`.
fn local_processes(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", marker])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_string)
        .collect()
}

/// A job command that starts a child and both sleep far past any limit.
fn sleeping_command(marker: &str) -> String {
    format!(
        "import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\ntime.sleep({marker})\n"
    )
}

#[test]
fn a_hook_past_its_time_limit_fails_the_step_and_leaves_no_process() {
    let cluster = Cluster::start(1);
    let bucket = TestBucket::new(&cluster, &[&["w"]]);
    configure(&bucket, "hook_time_limit = 2\n");
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"],
            "commands": {"command_slow": {"executed_on": ["post_deploy"]}}}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", COUNTING_MAKEFILE);
    bucket.write(
        "workspace/jobs/app/_modules/command_slow.py",
        &sleeping_command("7301"),
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out after 2 s"), "{stderr}");
    assert_eq!(
        bucket.sql("SELECT status FROM deploy_steps WHERE detail LIKE '%timed out after 2 s%'"),
        "failed"
    );
    assert_eq!(local_processes("7301"), Vec::<String>::new());
}

#[test]
fn a_health_check_command_past_its_time_limit_is_unhealthy_and_leaves_no_process() {
    let cluster = Cluster::start(1);
    let bucket = TestBucket::new(&cluster, &[&["w"]]);
    configure(&bucket, "hook_time_limit = 2\n");
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"],
            "commands": {"command_probe": {"executed_on": ["health_check"]}}}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", COUNTING_MAKEFILE);
    bucket.write("workspace/jobs/app/_modules/command_probe.py", "");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    bucket.write(
        "workspace/jobs/app/_modules/command_probe.py",
        &sleeping_command("7302"),
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["health_check"]);
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("timed out after 2 s"), "{all}");
    assert_eq!(local_processes("7302"), Vec::<String>::new());
}

#[test]
fn a_lifecycle_step_past_its_time_limit_fails_and_leaves_no_process_on_the_worker() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let bucket = TestBucket::new(&cluster, &[&["w"]]);
    configure(&bucket, "step_time_limit = 2\n");
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"]}"#,
    );
    bucket.write(
        "workspace/jobs/app/Makefile",
        ".PHONY: start\nstart:\n\t@sleep 7303 & sleep 7303\n",
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out after 2 s"), "{stderr}");
    let left = cluster.ssh(&host, "pgrep -a -f 'sleep 7303'");
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
    // Resuming runs the failed step again as a new attempt (and it times out again).
    let again = bucket.maand(&["deploy", "--resume"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("timed out after 2 s"));
}

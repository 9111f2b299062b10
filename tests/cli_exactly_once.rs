//! Exactly-once lifecycle steps and time limits against real sshd workers: `maand deploy`
//! killed with SIGKILL at seeded random instants and resumed, a restart that outlives the
//! operator, a hook that completed before maand was killed (not run again on resume, answered
//! from its receipt) and one killed with maand (run again), and hook, health_check and
//! lifecycle processes stopped at their time limits.

mod support;

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::bucket::{maand_binary, run_maand, run_maand_ok, TestBucket};
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

fn spawn_deploy(bucket: &Path) -> Child {
    Command::new(maand_binary())
        .arg("deploy")
        .current_dir(bucket)
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

/// Runs sqlite3 on the database of the bucket at `bucket`.
fn sql(bucket: &Path, query: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(bucket.join("data/maand.db"))
        .arg(query)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const WAVE_JOBS: [&str; 4] = ["base", "mid", "side", "top"];

/// Four jobs in three waves over every worker: `base` (wave 0, batches of two), `mid` and
/// `side` demanding it (wave 1, side by side, `mid` in batches of one), and `top` demanding
/// `mid` (wave 2, everywhere at once). Built, not deployed.
fn multi_wave_bucket(cluster: &Cluster) -> TestBucket {
    let labels: Vec<&[&str]> = vec![&["w"]; cluster.hosts().len()];
    let bucket = TestBucket::new(cluster, &labels);
    let jobs = [
        (
            "base",
            r#""max_concurrent_starts": 2"#,
            "command_ready",
            None,
        ),
        (
            "mid",
            r#""max_concurrent_starts": 1"#,
            "command_mid",
            Some(("base", "command_ready")),
        ),
        (
            "side",
            r#""max_concurrent_starts": 0"#,
            "command_side",
            Some(("base", "command_ready")),
        ),
        (
            "top",
            r#""max_concurrent_starts": 0"#,
            "command_top",
            Some(("mid", "command_mid")),
        ),
    ];
    for (name, starts, command, demands) in jobs {
        let demands = demands.map_or(String::new(), |(job, command)| {
            format!(r#", "demands": {{"job": "{job}", "command": "{command}"}}"#)
        });
        bucket.write(
            &format!("workspace/jobs/{name}/manifest.json"),
            &format!(
                r#"{{"version": "1.0.0", "selectors": ["w"], {starts},
                    "commands": {{"{command}": {{"executed_on": ["cli"]{demands}}}}}}}"#
            ),
        );
        bucket.write(
            &format!("workspace/jobs/{name}/Makefile"),
            COUNTING_MAKEFILE,
        );
        bucket.write(&format!("workspace/jobs/{name}/_modules/{command}.py"), "");
    }
    bucket.maand_ok(&["build"]);
    bucket
}

/// What a finished deploy leaves in the catalog, without deploy-specific ids.
fn projection(bucket: &Path) -> String {
    [
        "SELECT job, worker_ip, current_version, current_hash, previous_hash IS NULL, stopped FROM deployments ORDER BY job, worker_ip",
        "SELECT status, failed FROM deploys",
        "SELECT idx, kind, status FROM deploy_steps ORDER BY idx",
        "SELECT count(*) FROM deploy_steps WHERE status != 'succeeded'",
    ]
    .map(|query| sql(bucket, query))
    .join("\n--\n")
}

/// Every job's lifecycle lines on `host`, one ssh round trip.
fn lines_by_job(cluster: &Cluster, remote_dir: &str, host: &str) -> Vec<(String, Vec<String>)> {
    let script = WAVE_JOBS
        .map(|job| format!("echo '== {job}'; cat {remote_dir}/jobs/{job}/data/events 2>/dev/null;"))
        .join(" ");
    let out = cluster.ssh_ok(host, &script);
    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        match line.strip_prefix("== ") {
            Some(job) => jobs.push((job.to_string(), Vec::new())),
            None => jobs.last_mut().unwrap().1.push(line.to_string()),
        }
    }
    jobs
}

/// The journal's steps and the worker's step files of `host`, for a failure message.
fn diagnose(cluster: &Cluster, bucket: &Path, remote_dir: &str, host: &str) -> String {
    let steps = sql(
        bucket,
        &format!("SELECT idx, job, kind, status, detail FROM deploy_steps WHERE worker = '{host}'"),
    );
    let files = cluster.ssh(
        host,
        &format!(
            "cd {remote_dir}/steps && for f in */*; do echo \"== $f\"; cat \"$f\"; echo; done"
        ),
    );
    format!(
        "steps:\n{steps}\nworker step files:\n{}{}",
        String::from_utf8_lossy(&files.stdout),
        String::from_utf8_lossy(&files.stderr)
    )
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Kills `maand deploy` at seeded random instants of a multi-wave deploy, then finishes it, and
/// checks every kill against an uninterrupted run. Every kill starts from a copy of the same
/// built bucket, with the bucket's tree removed from the workers. `MAAND_KILLS` and
/// `MAAND_KILL_SEED` change the number of kills (default 20) and the seed.
#[test]
fn sigkill_at_random_instants_then_resume_runs_every_start_exactly_once() {
    let cluster = Cluster::start(3);
    let kills: u64 = std::env::var("MAAND_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("MAAND_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let built = multi_wave_bucket(&cluster);
    let remote_dir = built.remote_dir();
    let scratch = tempfile::tempdir().unwrap();
    let fresh = |name: &str| -> PathBuf {
        for host in cluster.hosts() {
            cluster.as_root(host, &format!("rm -rf {remote_dir}"));
        }
        let path = scratch.path().join(name);
        copy_tree(built.path(), &path);
        path
    };

    // The uninterrupted run: its projections and how long it takes.
    let reference = fresh("reference");
    let began = Instant::now();
    run_maand_ok(&reference, &["deploy"]);
    let span = began.elapsed();
    let expected = projection(&reference);

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut resumed, mut replanned, mut finished_before_kill, mut starts) = (0, 0, 0, 0);
    let (mut in_doubt, mut answered_by_receipt) = (0, 0);
    let all = Instant::now();
    for kill in 0..kills {
        let delay = span.mul_f64(rng.random_range(0.0..1.0));
        let bucket = fresh(&format!("kill-{kill}"));
        let mut child = spawn_deploy(&bucket);
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let status = sql(&bucket, "SELECT status FROM deploys");
        in_doubt += sql(
            &bucket,
            "SELECT count(*) FROM deploy_steps WHERE status = 'started' AND kind LIKE '%Lifecycle%'",
        )
        .parse::<usize>()
        .unwrap();
        let out = match status.as_str() {
            "" => {
                replanned += 1;
                run_maand(&bucket, &["deploy"])
            }
            "succeeded" => {
                finished_before_kill += 1;
                run_maand(&bucket, &["deploy"])
            }
            _ => {
                resumed += 1;
                run_maand(&bucket, &["deploy", "--resume"])
            }
        };
        assert!(
            out.status.success(),
            "kill {kill} after {delay:?} (status {status:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(projection(&bucket), expected, "kill {kill} after {delay:?}");
        run_maand_ok(&bucket, &["journal", "verify"]);
        answered_by_receipt += sql(
            &bucket,
            "SELECT count(*) FROM journal WHERE kind = 'command_output' AND CAST(payload AS TEXT) LIKE '%already % on this worker; not run again%'",
        )
        .parse::<usize>()
        .unwrap();
        for host in cluster.hosts() {
            for (job, lines) in lines_by_job(&cluster, &remote_dir, host) {
                assert_eq!(
                    lines,
                    ["start 0.0.0->1.0.0"],
                    "kill {kill} after {delay:?}: {job}@{host}\n{}",
                    diagnose(&cluster, &bucket, &remote_dir, host)
                );
                starts += lines.len();
            }
        }
    }
    println!(
        "{kills} kills (seed {seed}) of a {span:?} deploy, {:?} in all: {resumed} resumed, \
         {replanned} killed before the plan was recorded, {finished_before_kill} finished before \
         the kill; {in_doubt} lifecycle steps in doubt at a kill, {answered_by_receipt} answered \
         by the worker's receipt; {starts} starts, each ran exactly once (0 repeated)",
        all.elapsed()
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
    let mut child = spawn_deploy(bucket.path());
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
    // The killed run's lines are in the log files already.
    let worker_log =
        std::fs::read_to_string(bucket.path().join(format!("logs/{host}.log"))).unwrap();
    assert!(
        worker_log.contains("event=command_begin") && worker_log.contains("action=restart"),
        "{worker_log}"
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

/// A `post_deploy` hook that appends `ran <its pid>` to `lines` and puts the job variable
/// `noted`. The first run (the one that can delete `arm`) then does `armed`, Python code with
/// `maand_pid` (its parent: hooks are started by maand itself) in scope.
fn noting_hook(lines: &Path, arm: &Path, armed: &str) -> String {
    format!(
        r#"import os, subprocess, sys, time
import maand
with open({lines:?}, "a") as f:
    f.write("ran %d\n" % os.getpid())
maand.put_job_variable("noted", "yes").raise_for_status()
try:
    os.unlink({arm:?})
except FileNotFoundError:
    sys.exit(0)
maand_pid = os.getppid()
assert open("/proc/%d/comm" % maand_pid).read().strip() == "maand"
{armed}
"#,
        lines = lines.display().to_string(),
        arm = arm.display().to_string(),
    )
}

/// Started by the hook, detached, before the hook ends (the hook waits for its `ready`). maand
/// creates the deploy's receipt directory once the hook has ended and its activity is recorded,
/// just before it writes the receipt and then the step's end. The killer stops maand there (SIGSTOP), takes the
/// database's write lock and lets maand go on: maand writes the receipt and then waits for the
/// lock to record the step. Once the receipt is there, the killer kills maand (SIGKILL), waits
/// until it is dead and lets go of the lock. It writes `done` however it ends.
const RECEIPT_KILLER: &str = r#"
import glob, os, signal, sqlite3, sys, time
maand_pid, bucket, done = int(sys.argv[1]), sys.argv[2], sys.argv[3]
receipts = os.path.join(bucket, "tmp", "receipts")
deadline = time.monotonic() + 30
def wait_for(pattern):
    while not glob.glob(os.path.join(receipts, pattern)):
        if time.monotonic() > deadline:
            sys.exit("nothing matched " + pattern)
def alive():
    try:
        return open("/proc/%d/stat" % maand_pid).read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
print("ready", flush=True)
os.close(1)
try:
    wait_for("*")
    os.kill(maand_pid, signal.SIGSTOP)
    try:
        db = sqlite3.connect(os.path.join(bucket, "data", "maand.db"), timeout=2, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
    finally:
        os.kill(maand_pid, signal.SIGCONT)
    wait_for(os.path.join("*", "*.json"))
    os.kill(maand_pid, signal.SIGKILL)
    while alive():
        time.sleep(0.001)
    db.execute("ROLLBACK")
    db.close()
finally:
    open(done, "w").close()
"#;

/// Lines of a file, none when it is missing.
fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` exists.
fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The receipt files under the bucket's `tmp/receipts/`, as `<deploy>/<file>`.
fn hook_receipts(bucket: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for deploy in std::fs::read_dir(bucket.join("tmp/receipts"))
        .into_iter()
        .flatten()
    {
        let deploy = deploy.unwrap();
        for file in std::fs::read_dir(deploy.path()).unwrap() {
            found.push(format!(
                "{}/{}",
                deploy.file_name().to_string_lossy(),
                file.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    found.sort();
    found
}

/// One worker, the job `app` with a `post_deploy` hook `command_note` whose script is `script`;
/// built, not deployed.
fn hook_bucket(cluster: &Cluster, script: &str) -> TestBucket {
    let bucket = TestBucket::new(cluster, &[&["w"]]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"],
            "commands": {"command_note": {"executed_on": ["post_deploy"]}}}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", COUNTING_MAKEFILE);
    bucket.write("workspace/jobs/app/_modules/command_note.py", script);
    bucket.maand_ok(&["build"]);
    bucket
}

#[test]
fn sigkill_after_a_hook_ended_but_before_its_step_was_recorded_does_not_run_it_again() {
    let cluster = Cluster::start(1);
    let scratch = tempfile::tempdir().unwrap();
    let mut window_hits = 0;
    // The killer holds the database's write lock from before the receipt is written, so maand
    // cannot record the step first. Should the killer come too late all the same (maand
    // already past the receipt), the attempt is made again.
    for attempt in 0..5 {
        let lines = scratch.path().join(format!("lines-{attempt}"));
        let arm = scratch.path().join(format!("arm-{attempt}"));
        let done = scratch.path().join(format!("done-{attempt}"));
        let armed = format!(
            "subprocess.Popen([sys.executable, '-c', {RECEIPT_KILLER:?}, str(maand_pid), os.environ['MAAND_BUCKET'], {:?}], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.readline()",
            done.display().to_string()
        );
        let bucket = hook_bucket(&cluster, &noting_hook(&lines, &arm, &armed));
        std::fs::write(&arm, "").unwrap();
        let status = spawn_deploy(bucket.path()).wait().unwrap();
        wait_for_file(&done, "the killer's end");
        assert_eq!(file_lines(&lines).len(), 1);
        let receipts = hook_receipts(bucket.path());
        assert_eq!(receipts.len(), 1, "{receipts:?}");
        let hook_step =
            bucket.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%post_deploy%'");
        if std::os::unix::process::ExitStatusExt::signal(&status) != Some(9)
            || hook_step != "started"
        {
            // The killer came too late (maand was already recording the step): try again.
            println!("attempt {attempt}: missed the window ({status:?}, hook step {hook_step})");
            continue;
        }
        window_hits += 1;
        // gc keeps the receipts of the deploy a resume may still continue.
        bucket.maand_ok(&["gc"]);
        assert_eq!(hook_receipts(bucket.path()), receipts);

        let out = bucket.maand(&["deploy", "--resume"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The hook ran once; its KV was recorded once, from the receipt.
        assert_eq!(file_lines(&lines).len(), 1, "{:?}", file_lines(&lines));
        assert_eq!(
            bucket.sql("SELECT count(*) || ' ' || max(value) FROM kv WHERE namespace = 'vars/job/app' AND key = 'noted'"),
            "1 yes"
        );
        assert_eq!(
            bucket.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%post_deploy%'"),
            "succeeded"
        );
        assert_eq!(bucket.sql("SELECT status FROM deploys"), "succeeded");
        let logs = bucket.maand_ok(&["logs", "show", "--format", "human"]);
        assert!(
            logs.contains("already finished on this host") && logs.contains("not run again"),
            "{logs}"
        );
        bucket.maand_ok(&["journal", "verify"]);
        // Once the deploy finished, gc removes its hook receipts.
        let out = bucket.maand_ok(&["gc"]);
        assert!(out.contains("hook receipts of 1 finished deploy"), "{out}");
        assert_eq!(hook_receipts(bucket.path()), Vec::<String>::new());
        break;
    }
    assert_eq!(
        window_hits, 1,
        "the kill never landed between the receipt and the step's end"
    );
}

#[test]
fn a_hook_running_when_maand_is_killed_dies_with_it_and_runs_again_on_resume() {
    let cluster = Cluster::start(1);
    let scratch = tempfile::tempdir().unwrap();
    let lines = scratch.path().join("lines");
    let arm = scratch.path().join("arm");
    let bucket = hook_bucket(&cluster, &noting_hook(&lines, &arm, "time.sleep(7306)"));
    std::fs::write(&arm, "").unwrap();
    let mut child = spawn_deploy(bucket.path());
    while arm.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = file_lines(&lines)[0]
        .strip_prefix("ran ")
        .unwrap()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel kills the hook with maand (a zombie waiting for its reaper counts as dead).
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')))
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dead() {
        assert!(Instant::now() < deadline, "the hook {pid} outlived maand");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hook_receipts(bucket.path()), Vec::<String>::new());
    assert_eq!(
        bucket.sql("SELECT status FROM deploy_steps WHERE kind LIKE '%post_deploy%'"),
        "started"
    );
    // It never ended, so it runs again on resume; its KV is recorded once, by that run.
    bucket.maand_ok(&["deploy", "--resume"]);
    assert_eq!(file_lines(&lines).len(), 2, "{:?}", file_lines(&lines));
    assert_eq!(
        bucket.sql("SELECT count(*) FROM kv WHERE namespace = 'vars/job/app' AND key = 'noted'"),
        "1"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

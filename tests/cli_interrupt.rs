//! Ctrl-C and SIGTERM against real sshd workers, pressed on a real pseudo-terminal: a deploy
//! lets the `make start` in flight finish, starts nothing new, records its run as interrupted,
//! closes its SSH masters (warm ones too) and leaves no process or temporary directory behind;
//! `deploy --resume` then runs every start exactly once. `job run` of a non-lifecycle target
//! is stopped on the worker.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::bucket::{last_run_records, maand_binary, set_master_idle, TestBucket};
use support::cluster::Cluster;
use support::pty::PtyChild;

/// `start` records itself in data/events, then takes a while (`sleep START_SLEEP`, a duration
/// each test picks so that it can look for its own); `hang` runs until it is stopped.
const SLOW_MAKEFILE: &str = "\
.PHONY: start stop restart hang
start:
\t@mkdir -p data && echo start >> data/events
\t@sleep START_SLEEP
\t@echo started
stop:
\t@mkdir -p data && echo stop >> data/events
restart:
\t@mkdir -p data && echo restart >> data/events
hang:
\t@sleep 99993
";

/// How a test stops maand.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Ctrl-C on its terminal.
    CtrlC,
    /// SIGTERM to its process, as `kill` or a service manager sends it.
    Term,
}

/// Two workers carrying `slow`, started one at a time, each start sleeping `start_sleep`
/// seconds; warm masters on (the interrupt must close them anyway). Built, not deployed.
fn slow_bucket(cluster: &Cluster, start_sleep: &str) -> TestBucket {
    let bucket = TestBucket::new(cluster, &[&["w"], &["w"]]);
    set_master_idle(bucket.path(), 60);
    bucket.write(
        "workspace/jobs/slow/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["w"], "max_concurrent_starts": 1}"#,
    );
    bucket.write(
        "workspace/jobs/slow/Makefile",
        &SLOW_MAKEFILE.replace("START_SLEEP", start_sleep),
    );
    bucket.maand_ok(&["build"]);
    bucket
}

/// Starts `maand args` in the bucket on a pseudo-terminal, with a temporary directory of the
/// test's own (so its leftovers can be seen).
fn spawn_on_terminal(bucket: &TestBucket, tmp: &Path, args: &[&str]) -> PtyChild {
    let mut command = Command::new(maand_binary());
    command
        .args(args)
        .current_dir(bucket.path())
        .env_remove("MAAND_BUCKET")
        .env("TMPDIR", tmp)
        .env("TERM", "dumb");
    PtyChild::spawn(&mut command)
}

/// Whether a process whose command line contains `pattern` runs on this machine (where the
/// testbed's workers run too). The bracket trick keeps pgrep from matching its own probe.
fn running(pattern: &str) -> bool {
    let (head, last) = pattern.split_at(pattern.len() - 1);
    let out = Command::new("pgrep")
        .args(["-f", &format!("{head}[{last}]")])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn stop(child: &mut PtyChild, how: Stop) {
    match how {
        Stop::CtrlC => child.ctrl_c(),
        // SAFETY: kill(2) on the process this test started; no memory is involved.
        Stop::Term => unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        },
    }
}

/// The lifecycle lines `host` recorded for `slow`.
fn events(cluster: &Cluster, bucket: &TestBucket, host: &str) -> Vec<String> {
    let out = cluster.ssh(
        host,
        &format!(
            "cat {}/jobs/slow/data/events 2>/dev/null",
            bucket.remote_dir()
        ),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The outcome the journal recorded for the last run of `command`.
fn last_outcome(bucket: &TestBucket, command: &str) -> String {
    last_run_records(bucket.path(), command)
        .iter()
        .find(|r| r["event"] == "run_finished")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .unwrap_or_else(|| format!("no run_finished for the last {command}"))
}

/// Asserts that nothing maand started is left: no SSH client or master naming the bucket's
/// control directory, no control socket, nothing in the temporary directory maand was given.
fn assert_nothing_left(bucket: &TestBucket, tmp: &Path, screen: &str) {
    let control = bucket.path().join("data/ssh");
    wait_until("the SSH processes of the bucket are gone", || {
        !running(&control.display().to_string())
    });
    let sockets: Vec<_> = std::fs::read_dir(&control)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".s"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        sockets.is_empty(),
        "control sockets left: {sockets:?}\n{screen}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}\n{screen}");
}

fn interrupted_deploy_resumes_with_every_start_once(how: Stop, start_sleep: &str) {
    let cluster = Cluster::start(2);
    let bucket = slow_bucket(&cluster, start_sleep);
    let tmp = tempfile::tempdir().unwrap();
    let mut deploy = spawn_on_terminal(&bucket, tmp.path(), &["deploy"]);
    // Starts go one worker at a time: stop while the first one runs.
    wait_until("a start runs on a worker", || {
        cluster
            .hosts()
            .iter()
            .any(|host| !events(&cluster, &bucket, host).is_empty())
    });
    stop(&mut deploy, how);
    let (code, screen) = deploy.wait(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{how:?}\n{screen}");
    assert!(
        screen.contains("received: starting nothing new"),
        "{screen}"
    );
    assert!(
        screen.contains("continue with `maand deploy --resume`"),
        "{screen}"
    );
    assert_eq!(last_outcome(&bucket, "deploy"), "interrupted", "{screen}");
    // The start in flight ran to its end; the other worker was never started.
    assert!(!running(&format!("sleep {start_sleep}")), "{screen}");
    let started: Vec<usize> = cluster
        .hosts()
        .iter()
        .map(|host| events(&cluster, &bucket, host).len())
        .collect();
    assert_eq!(started.iter().sum::<usize>(), 1, "{started:?}\n{screen}");
    assert_nothing_left(&bucket, tmp.path(), &screen);

    bucket.maand_ok(&["deploy", "--resume"]);
    for host in cluster.hosts() {
        assert_eq!(events(&cluster, &bucket, host), ["start"], "{host}");
    }
    assert_eq!(last_outcome(&bucket, "deploy"), "succeeded");
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn ctrl_c_during_a_deploy_finishes_the_running_start_and_resume_runs_each_start_once() {
    interrupted_deploy_resumes_with_every_start_once(Stop::CtrlC, "3.71");
}

#[test]
fn sigterm_during_a_deploy_finishes_the_running_start_and_resume_runs_each_start_once() {
    interrupted_deploy_resumes_with_every_start_once(Stop::Term, "3.72");
}

#[test]
fn ctrl_c_and_sigterm_stop_job_run_on_every_worker() {
    let cluster = Cluster::start(2);
    let bucket = slow_bucket(&cluster, "0.1");
    bucket.maand_ok(&["deploy"]);
    for how in [Stop::CtrlC, Stop::Term] {
        let tmp = tempfile::tempdir().unwrap();
        let mut run = spawn_on_terminal(
            &bucket,
            tmp.path(),
            &["job", "run", "slow", "--target", "hang"],
        );
        wait_until("`hang` runs on both workers", || {
            let out = Command::new("pgrep")
                .args(["-c", "-f", "sleep 9999[3]"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "2"
        });
        stop(&mut run, how);
        let (code, screen) = run.wait(Duration::from_secs(120));
        assert_eq!(code, Some(130), "{how:?}\n{screen}");
        assert!(
            screen.contains("interrupted: run `maand job run` again"),
            "{screen}"
        );
        wait_until("`hang` is gone from the workers", || {
            !running("sleep 99993")
        });
        assert_eq!(last_outcome(&bucket, "job run"), "interrupted", "{screen}");
        assert_nothing_left(&bucket, tmp.path(), &screen);
    }
    bucket.maand_ok(&["journal", "verify"]);
}

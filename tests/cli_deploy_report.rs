//! What `maand deploy` tells the operator, against real sshd workers: a line per finished step
//! and a recap (plain output, as when stdout is a file or a pipe), one JSON object per step and
//! the recap as one object (`--json`), only the summary (`-q`) — for a first deploy that fails
//! on one worker, its resume, a no-op and a change; and on a real pseudo-terminal, the live
//! line of running steps and the recap at the end.

mod support;

use serde_json::Value;
use support::bucket::TestBucket;
use support::cluster::Cluster;
use support::output::normalized;

/// `start` refuses while `data/fail` exists in the job's directory on the worker.
const MAKEFILE: &str = "\
.PHONY: start stop restart reload
start:
\t@test ! -f data/fail || { echo 'cannot start: data/fail is there' >&2; exit 2; }
\t@echo started
stop:
\t@true
restart:
\t@echo restarted
reload:
\t@true
";

fn web_job(bucket: &TestBucket, version: &str) {
    bucket.write(
        "workspace/jobs/web/manifest.json",
        &format!(r#"{{"version": "{version}", "selectors": ["web"]}}"#),
    );
    bucket.write("workspace/jobs/web/Makefile", MAKEFILE);
}

/// The lines from the recap table's header on.
fn recap_part(stdout: &str) -> String {
    let start = stdout
        .find("JOB")
        .unwrap_or_else(|| panic!("no recap table in:\n{stdout}"));
    stdout[start..].to_string()
}

#[test]
fn deploy_reports_each_step_and_a_recap_in_plain_json_and_quiet_modes() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let bucket = TestBucket::new(&cluster, &[&["web"], &["web"]]);
    web_job(&bucket, "1.0.0");
    bucket.maand_ok(&["build"]);
    let fail_file = format!("{}/jobs/web/data/fail", bucket.remote_dir());
    cluster.as_root(
        &hosts[1],
        &format!("mkdir -p \"$(dirname {fail_file})\" && touch {fail_file}"),
    );

    // A first deploy failing on one worker: a line per step, the failure with its cause, the
    // recap, and the command to continue.
    let failed = bucket.maand(&["deploy"]);
    assert!(!failed.status.success());
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let stdout = normalized(&stdout, &hosts);
    for line in [
        "web@H1  sync  ok  [t]",
        "web@H2  sync  ok  [t]",
        "web@H1  start  ok  [t]",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}\n{stdout}");
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("web@H2  start  failed  [t]: `start` exited with code 2")),
        "{stdout}"
    );
    insta::assert_snapshot!("failed_deploy_recap", recap_part(&stdout));
    assert!(
        stderr.contains("run `maand deploy --resume` to continue"),
        "{stderr}"
    );

    // The resume runs what is left and says how much the first run did.
    cluster.as_root(&hosts[1], &format!("rm {fail_file}"));
    let resumed = normalized(&bucket.maand_ok(&["deploy", "--resume"]), &hosts);
    assert!(
        resumed.lines().any(|l| l == "web@H2  start  ok  [t]"),
        "{resumed}"
    );
    insta::assert_snapshot!("resumed_deploy_recap", recap_part(&resumed));

    // Nothing changed: no step, the job listed as unchanged.
    let noop = normalized(&bucket.maand_ok(&["deploy"]), &hosts);
    insta::assert_snapshot!("noop_deploy", noop);

    // A change, as JSON lines: every line parses, steps first, the recap last.
    web_job(&bucket, "1.1.0");
    bucket.maand_ok(&["build"]);
    let json = bucket.maand_ok(&["deploy", "--json"]);
    let objects: Vec<Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let (recap, steps) = objects.split_last().unwrap();
    assert_eq!(recap["type"], "recap", "{json}");
    assert!(steps.iter().all(|s| s["type"] == "step"), "{json}");
    let restarts: Vec<&Value> = steps.iter().filter(|s| s["action"] == "restart").collect();
    assert_eq!(restarts.len(), 2, "{json}");
    assert!(restarts
        .iter()
        .all(|s| s["status"] == "ok" && s["outcome"] == "restarted" && s["seconds"].is_f64()));
    assert_eq!(
        normalized(recap["summary"].as_str().unwrap(), &hosts),
        "0 started, 2 restarted, 0 skipped, 0 failed, 2 synced in [t]"
    );

    // Quiet: the summary alone.
    web_job(&bucket, "1.2.0");
    bucket.maand_ok(&["build"]);
    let quiet = normalized(&bucket.maand_ok(&["deploy", "-q"]), &hosts);
    assert_eq!(
        quiet,
        "0 started, 2 restarted, 0 skipped, 0 failed, 2 synced in [t]\n"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

/// On a real pseudo-terminal: while a slow `make start` runs, the live line names it with its
/// elapsed time; when the deploy ends, the screen holds every finished step and the recap.
#[test]
fn on_a_terminal_running_steps_show_live_and_the_recap_ends_the_screen() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let bucket = TestBucket::new(&cluster, &[&["web"]]);
    bucket.write(
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"]}"#,
    );
    bucket.write(
        "workspace/jobs/web/Makefile",
        ".PHONY: start stop\nstart:\n\t@sleep 3\nstop:\n\t@true\n",
    );
    bucket.maand_ok(&["build"]);
    let mut command = std::process::Command::new(support::bucket::maand_binary());
    command
        .arg("deploy")
        .current_dir(bucket.path())
        .env_remove("MAAND_BUCKET")
        .env_remove("MAAND_ECHO")
        .env("TERM", "xterm");
    let deploy = support::pty::PtyChild::spawn(&mut command);
    let live = format!("running: web@{host} start");
    let mut seen = false;
    for _ in 0..300 {
        if deploy.screen().contains(&live) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, screen) = deploy.wait(std::time::Duration::from_secs(120));
    assert!(seen, "no live line naming the running start:\n{screen}");
    assert_eq!(code, Some(0), "{screen}");
    let screen = normalized(&screen, &[host]);
    assert!(screen.contains("web@H1  start  ok  [t]"), "{screen}");
    let recap = screen.find(" JOB").expect("the recap table");
    let summary = screen
        .find("1 started, 0 restarted, 0 skipped, 0 failed, 1 synced in [t]")
        .expect("the summary line");
    assert!(recap < summary, "{screen}");
}

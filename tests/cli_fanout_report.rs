//! What the commands that work on many workers tell the operator, against real sshd workers:
//! `run_command`, `job status`, `health_check`, `gc` and `worker_facts` print a line per
//! finished command and a recap ending in one summary line (plain output, as when stdout is a
//! pipe), JSON lines ending in the recap object (`--json`), or only the summary (`-q`); and on
//! a real pseudo-terminal, a live line names what runs where while it runs.

mod support;

use serde_json::Value;
use support::bucket::TestBucket;
use support::cluster::Cluster;
use support::output::normalized;

const MAKEFILE: &str = "\
.PHONY: start stop restart status
start:
\t@mkdir -p data && touch data/running
stop:
\t@rm -f data/running
restart:
\t@mkdir -p data && touch data/running
status:
\t@test -f data/running || { echo 'not running' >&2; exit 3; }
";

fn web_job(bucket: &TestBucket) {
    bucket.write(
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "health_check": {"checks": [{"type": "ssh", "command": "test -f data/running"}]}}"#,
    );
    bucket.write("workspace/jobs/web/Makefile", MAKEFILE);
}

/// Every stdout line parsed as JSON; the last one is the recap.
fn json_lines(stdout: &str) -> (Vec<Value>, Value) {
    let mut objects: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let recap = objects.pop().expect("a recap object");
    assert_eq!(recap["type"], "recap", "{stdout}");
    assert!(objects.iter().all(|o| o["type"] == "work"), "{stdout}");
    (objects, recap)
}

#[test]
fn run_command_reports_each_worker_and_a_recap_in_plain_json_and_quiet_modes() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let bucket = TestBucket::new(&cluster, &[&["web"], &["web"]]);
    bucket.maand_ok(&["build"]);
    let fails_on_second = format!("test \"$WORKER_IP\" != {} || exit 3", hosts[1]);

    // Plain: a line per worker as it finishes, the per-worker table, then the summary.
    let plain = bucket.maand(&["run_command", &fails_on_second]);
    assert!(!plain.status.success());
    let stdout = normalized(&String::from_utf8_lossy(&plain.stdout), &hosts);
    for line in ["H1  exec  ok  [t]", "H2  exec  exit 3  [t]"] {
        assert!(stdout.lines().any(|l| l == line), "{line}\n{stdout}");
    }
    assert!(stdout.contains("WORKER  RESULT  DURATION"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("1 ok, 1 failed in [t]"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("failed on 1 of 2 workers"), "{stderr}");

    // JSON: one object per worker, the recap last with every row and the summary.
    let json = bucket.maand(&["run_command", "--json", &fails_on_second]);
    assert!(!json.status.success());
    let (work, recap) = json_lines(&String::from_utf8_lossy(&json.stdout));
    assert_eq!(work.len(), 2);
    let second = work
        .iter()
        .find(|w| w["worker"] == hosts[1].as_str())
        .unwrap();
    assert_eq!(second["status"], "failed");
    assert_eq!(second["exit_code"], 3);
    assert_eq!(second["action"], "exec");
    assert!(second["seconds"].is_f64());
    assert_eq!(recap["rows"].as_array().unwrap().len(), 2);
    assert_eq!(
        normalized(recap["summary"].as_str().unwrap(), &hosts),
        "1 ok, 1 failed in [t]"
    );

    // Quiet: the summary alone on stdout; the error still on stderr.
    let quiet = bucket.maand(&["run_command", "-q", "true"]);
    assert!(quiet.status.success());
    let stdout = normalized(&String::from_utf8_lossy(&quiet.stdout), &hosts);
    assert_eq!(stdout, "2 ok, 0 failed in [t]\n");

    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn job_targets_health_checks_gc_and_worker_facts_use_the_same_reporters() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let bucket = TestBucket::new(&cluster, &[&["web"], &["web"]]);
    web_job(&bucket);
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);

    // A job target: the passed sync checks are counted, not listed; the target is.
    let status = normalized(&bucket.maand_ok(&["job", "status", "web"]), &hosts);
    for line in ["web@H1  status  ok  [t]", "web@H2  status  ok  [t]"] {
        assert!(status.lines().any(|l| l == line), "{line}\n{status}");
    }
    assert!(!status.contains("sync_check"), "{status}");
    assert_eq!(status.lines().last(), Some("2 ok, 0 failed in [t]"));

    // A stopped allocation fails its status and its health check, in JSON too.
    bucket.maand_ok(&["job", "stop", "web", "-q", "--allocations", &hosts[1]]);
    let failed = bucket.maand(&["job", "status", "web", "--json"]);
    assert!(!failed.status.success());
    let (work, recap) = json_lines(&String::from_utf8_lossy(&failed.stdout));
    let statuses: Vec<(&str, &str)> = work
        .iter()
        .map(|w| (w["worker"].as_str().unwrap(), w["status"].as_str().unwrap()))
        .collect();
    assert!(
        statuses.contains(&(hosts[1].as_str(), "failed")),
        "{work:?}"
    );
    assert!(recap["summary"]
        .as_str()
        .unwrap()
        .starts_with("1 ok, 1 failed"));

    let health = bucket.maand(&["health_check"]);
    assert!(!health.status.success());
    let stdout = normalized(&String::from_utf8_lossy(&health.stdout), &hosts);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("web@H1  health  ok  [t]")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("web@H2  health  failed  [t]")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("  ssh  "),
        "probe commands are not listed: {stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("1 ok, 1 failed in [t]"));
    let health_json = bucket.maand(&["health_check", "--json"]);
    let (work, _) = json_lines(&String::from_utf8_lossy(&health_json.stdout));
    assert_eq!(work.len(), 2, "{work:?}");
    assert!(work.iter().all(|w| w["phase"] == "health_check"));

    // gc and worker_facts: the recap's summary closes their own report.
    let gc = normalized(&bucket.maand_ok(&["gc"]), &hosts);
    for line in [
        "H1  forget_receipts  ok  [t]",
        "H2  forget_receipts  ok  [t]",
    ] {
        assert!(gc.lines().any(|l| l == line), "{line}\n{gc}");
    }
    assert!(gc.contains("\ngc: removed "), "{gc}");
    assert_eq!(gc.lines().last(), Some("2 ok, 0 failed in [t]"), "{gc}");
    let (_, recap) = json_lines(&bucket.maand_ok(&["gc", "--json"]));
    assert!(recap["summary"].is_string());
    let facts = bucket.maand_ok(&["worker_facts", "--dry-run", "--json"]);
    let (work, recap) = json_lines(&facts);
    assert_eq!(work.len(), 2, "{facts}");
    assert!(work
        .iter()
        .all(|w| w["action"] == "probe" && w["status"] == "ok"));
    assert!(recap["summary"]
        .as_str()
        .unwrap()
        .starts_with("2 ok, 0 failed"));
    let quiet = normalized(
        &bucket.maand_ok(&["worker_facts", "--dry-run", "-q"]),
        &hosts,
    );
    assert_eq!(quiet, "2 ok, 0 failed in [t]\n");

    bucket.maand_ok(&["journal", "verify"]);
}

/// On a real pseudo-terminal: while a slow command runs, the live line names the worker it
/// runs on with its elapsed time; at the end the screen holds the recap and the summary.
#[test]
fn on_a_terminal_run_command_shows_what_runs_where_while_it_runs() {
    let cluster = Cluster::start(1);
    let host = cluster.hosts()[0].clone();
    let bucket = TestBucket::new(&cluster, &[&["web"]]);
    bucket.maand_ok(&["build"]);
    let mut command = std::process::Command::new(support::bucket::maand_binary());
    command
        .args(["run_command", "sleep 3; echo done"])
        .current_dir(bucket.path())
        .env_remove("MAAND_BUCKET")
        .env("TERM", "xterm");
    let run = support::pty::PtyChild::spawn(&mut command);
    let live = format!("running: {host} exec");
    let mut seen = false;
    for _ in 0..300 {
        if run.screen().contains(&live) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, screen) = run.wait(std::time::Duration::from_secs(120));
    assert!(seen, "no live line naming the running command:\n{screen}");
    assert_eq!(code, Some(0), "{screen}");
    let screen = normalized(&screen, &[host]);
    assert!(
        screen.contains("H1 | done"),
        "the worker's output: {screen}"
    );
    assert!(screen.contains("H1  exec  ok  [t]"), "{screen}");
    let table = screen.find("WORKER").expect("the recap table");
    let summary = screen
        .find("1 ok, 0 failed in [t]")
        .expect("the summary line");
    assert!(table < summary, "{screen}");
}

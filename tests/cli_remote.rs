//! Black-box tests of the commands that reach workers by hand - `run_command`, `worker_facts`
//! and `job start|stop|restart|status|run` - against real sshd workers (tests/support).
//!
//! Every bucket is made the way an operator makes one: `maand init`, the cluster's key copied
//! to secrets/worker.key, workers.json listing the cluster hosts, `maand build`. Job trees on
//! workers are placed by the test itself through `maand::remote`, since deploy is not what is
//! under test here.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

use maand::remote::{
    stage_worker_files, Fleet, JobEntry, MasterPolicy, RemoteConfig, Transfer, WorkerFiles,
    WorkerIdentity,
};
use maand::worker_facts::{cpu_text, memory_text, parse_probe, PROBE_SCRIPT};
use support::bucket::last_run_records;
use support::cluster::Cluster;

/// Seconds the CLI waits for a worker to accept a connection in these tests.
const CONNECT_TIMEOUT_SECS: &str = "2";

fn maand(bucket: &Path) -> Command {
    let mut cmd = Command::cargo_bin("maand").unwrap();
    cmd.current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG")
        .env("MAAND_CONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(bucket: &Path, args: &[&str]) -> Ran {
    let output = maand(bucket).args(args).output().unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn run_ok(bucket: &Path, args: &[&str]) -> Ran {
    let ran = run(bucket, args);
    assert_eq!(
        ran.code, 0,
        "maand {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    ran
}

fn run_failing(bucket: &Path, args: &[&str]) -> Ran {
    let ran = run(bucket, args);
    assert_ne!(
        ran.code, 0,
        "maand {args:?} succeeded\nstdout:\n{}\nstderr:\n{}",
        ran.stdout, ran.stderr
    );
    ran
}

/// An initialized bucket whose workers.json is `workers_json` and whose key is the cluster's.
/// Its commands close their SSH masters when they end (warm masters: tests/cli_warm.rs).
fn bucket(cluster: &Cluster, workers_json: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["init"]);
    support::bucket::close_masters_at_exit(dir.path());
    let key = dir.path().join("secrets/worker.key");
    std::fs::copy(cluster.key_path(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("workspace/workers.json"), workers_json).unwrap();
    dir
}

/// workers.json listing `hosts` with the given labels.
fn workers_json(hosts: &[String], labels: &[&[&str]]) -> String {
    let entries: Vec<Value> = hosts
        .iter()
        .zip(labels)
        .map(|(host, labels)| serde_json::json!({"host": host, "labels": labels}))
        .collect();
    serde_json::to_string_pretty(&entries).unwrap()
}

/// Journal records of the last run of `command` (`run_command`, `job start`, ...).
fn events_for<'a>(records: &'a [Value], event: &str, worker: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["event"] == event && r["worker"] == worker)
        .collect()
}

fn run_outcome(records: &[Value]) -> String {
    records
        .iter()
        .find(|r| r["event"] == "run_finished")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .expect("the run finished")
}

/// The row of `worker` in the recap table (after the lines printed as each worker finished).
fn summary_row<'a>(stdout: &'a str, worker: &str) -> &'a str {
    let table = stdout.find("WORKER").map_or(stdout, |at| &stdout[at..]);
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(worker))
        .unwrap_or_else(|| panic!("no summary row for {worker} in:\n{stdout}"))
}

fn info(bucket: &Path) -> Value {
    serde_json::from_str(&run_ok(bucket, &["info", "--json"]).stdout).unwrap()
}

#[test]
fn run_command_runs_only_on_the_selected_workers_and_journals_every_line() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let dir = bucket(
        &cluster,
        &workers_json(hosts, &[&["web"], &["db"], &["web"]]),
    );
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    let bucket_id = info(bucket)["bucket_id"].as_str().unwrap().to_string();

    let ran = run_ok(bucket, &["run_command", "hostname", "-w", &hosts[1]]);
    assert!(
        ran.stderr.contains(&format!("{} | worker2", hosts[1])),
        "{}",
        ran.stderr
    );
    assert!(summary_row(&ran.stdout, &hosts[1]).contains("exit 0"));
    assert!(!ran.stdout.contains(&hosts[0]) && !ran.stdout.contains(&hosts[2]));

    let ran = run_ok(
        bucket,
        &[
            "run_command",
            "echo \"$BUCKET_ID $WORKER_IP\"; pwd",
            "--labels",
            "web",
            "-c",
            "2",
        ],
    );
    for host in [&hosts[0], &hosts[2]] {
        assert!(
            ran.stderr.contains(&format!("{host} | {bucket_id} {host}")),
            "{}",
            ran.stderr
        );
        // Nothing deployed yet: the script starts in the login directory.
        assert!(ran.stderr.contains(&format!("{host} | /home/agent")));
    }
    assert!(!ran.stderr.contains(&hosts[1]), "{}", ran.stderr);

    let records = last_run_records(bucket, "run_command");
    for host in [&hosts[0], &hosts[2]] {
        let begin = events_for(&records, "command_begin", host);
        assert_eq!(begin.len(), 1, "{records:#?}");
        assert_eq!(begin[0]["phase"], "run_command");
        assert_eq!(begin[0]["action"], "exec");
        let output: Vec<&str> = events_for(&records, "command_output", host)
            .iter()
            .map(|r| r["msg"].as_str().unwrap())
            .collect();
        assert_eq!(
            output,
            [format!("{bucket_id} {host}"), "/home/agent".into()]
        );
        let end = events_for(&records, "command_end", host);
        assert_eq!(end.len(), 1);
        assert_eq!(end[0]["exit"], "0");
    }
    assert!(events_for(&records, "command_begin", &hosts[1]).is_empty());
    assert_eq!(run_outcome(&records), "succeeded");
}

#[test]
fn run_command_filters_must_name_known_workers_and_labels() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"], &[], &[]]));
    let bucket = dir.path();

    // Before the first build the catalog has no workers at all.
    let ran = run_failing(bucket, &["run_command", "true"]);
    assert!(ran.stderr.contains("maand build"), "{}", ran.stderr);

    run_ok(bucket, &["build"]);
    let ran = run_failing(bucket, &["run_command", "true", "-w", "10.99.0.1"]);
    assert!(
        ran.stderr.contains("unknown worker 10.99.0.1"),
        "{}",
        ran.stderr
    );
    let ran = run_failing(bucket, &["run_command", "true", "-l", "gpu"]);
    assert!(ran.stderr.contains("label gpu"), "{}", ran.stderr);
    let ran = run_failing(
        bucket,
        &["run_command", "true", "-l", "web", "-w", &hosts[0]],
    );
    assert!(ran.stderr.contains("cannot be used with"), "{}", ran.stderr);
}

#[test]
fn a_command_failing_on_one_worker_fails_the_run_with_a_summary() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&[], &[], &[]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);

    let script = format!(
        "if [ \"$WORKER_IP\" = {} ]; then echo broken >&2; exit 7; fi; echo fine",
        hosts[1]
    );
    let ran = run_failing(bucket, &["run_command", &script, "-c", "3"]);
    assert!(summary_row(&ran.stdout, &hosts[0]).contains("exit 0"));
    assert!(summary_row(&ran.stdout, &hosts[1]).contains("exit 7"));
    assert!(summary_row(&ran.stdout, &hosts[2]).contains("exit 0"));
    assert!(
        ran.stderr.contains(&format!("{} ! broken", hosts[1])),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("failed on 1 of 3 workers"),
        "{}",
        ran.stderr
    );

    let records = last_run_records(bucket, "run_command");
    assert_eq!(
        events_for(&records, "command_end", &hosts[1])[0]["exit"],
        "7"
    );
    assert_eq!(run_outcome(&records), "failed");
}

#[test]
fn crashed_and_black_holed_workers_fail_alone_within_the_connect_timeout() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&[], &[], &[]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    let (healthy, crashed, silent) = (&hosts[0], &hosts[1], &hosts[2]);
    cluster.crash(crashed);
    cluster.blackhole(silent);

    let ran = run_failing(bucket, &["run_command", "echo alive", "-c", "3"]);
    assert!(summary_row(&ran.stdout, healthy).contains("exit 0"));
    assert!(
        summary_row(&ran.stdout, crashed).contains("connection refused"),
        "{}",
        ran.stdout
    );
    assert!(
        summary_row(&ran.stdout, silent).contains("no SSH connection within"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains(&format!("{healthy} | alive")));
    assert!(
        ran.stderr.contains("failed on 2 of 3 workers"),
        "{}",
        ran.stderr
    );

    let records = last_run_records(bucket, "run_command");
    assert_eq!(events_for(&records, "command_end", healthy)[0]["exit"], "0");
    for broken in [crashed, silent] {
        let end = events_for(&records, "command_end", broken);
        assert_eq!(end.len(), 1, "{records:#?}");
        assert!(end[0].get("exit").is_none());
        assert!(end[0]["error"].as_str().unwrap().contains(broken.as_str()));
    }
    assert_eq!(run_outcome(&records), "failed");
    let finished = records
        .iter()
        .find(|r| r["event"] == "run_finished")
        .unwrap();
    assert!(finished["error"]
        .as_str()
        .unwrap()
        .contains("failed on 2 of 3 workers"));
}

/// What the probe reports on this machine: the test workers share its kernel.
fn local_capacity() -> (String, String) {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(PROBE_SCRIPT)
        .output()
        .unwrap();
    let facts = parse_probe("localhost", &String::from_utf8(output.stdout).unwrap()).unwrap();
    (memory_text(facts.memory_mb), cpu_text(facts.cpu_mhz))
}

#[test]
fn worker_facts_writes_plausible_capacity_keeping_everything_else() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let original = format!(
        r#"[
  {{
    "labels": ["web"],
    "host": "{}",
    "tags": {{"zone": "a"}}
  }},
  {{"host": "{}", "cpu": "1 mhz", "hostname": "db-one", "memory": "1 mb"}},
  {{
    "host": "{}",
    "memory": "",
    "labels": ["db"]
  }}
]
"#,
        hosts[0], hosts[1], hosts[2]
    );
    let dir = bucket(&cluster, &original);
    let bucket = dir.path();
    let path = bucket.join("workspace/workers.json");
    let (memory, cpu) = local_capacity();

    // Before any build: workers come from workers.json.
    let ran = run_ok(bucket, &["worker_facts", "--dry-run", "-c", "3"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(
        ran.stdout
            .contains(&format!("+    \"memory\": {memory:?},")),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("dry run"), "{}", ran.stdout);

    // Only the labelled workers are probed.
    run_ok(bucket, &["worker_facts", "-l", "db"]);
    let expected_db = original.replace("\"memory\": \"\",", &format!("\"memory\": {memory:?},"));
    let expected_db = expected_db.replace(
        "\"labels\": [\"db\"]\n",
        &format!("\"labels\": [\"db\"],\n    \"cpu\": {cpu:?}\n"),
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected_db);

    let ran = run_ok(bucket, &["worker_facts", "-c", "3"]);
    assert!(ran.stdout.contains(&hosts[0]) && ran.stdout.contains(&hosts[1]));
    let expected = expected_db
        .replace(
            "\"tags\": {\"zone\": \"a\"}\n",
            &format!(
                "\"tags\": {{\"zone\": \"a\"}},\n    \"memory\": {memory:?},\n    \"cpu\": {cpu:?}\n"
            ),
        )
        .replace("\"cpu\": \"1 mhz\"", &format!("\"cpu\": {cpu:?}"))
        .replace("\"memory\": \"1 mb\"", &format!("\"memory\": {memory:?}"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);

    let ran = run_ok(bucket, &["worker_facts", "--build", "-c", "3"]);
    assert!(
        ran.stdout.contains("workers.json already up to date"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("build:"), "{}", ran.stdout);
    let workers: Value =
        serde_json::from_str(&run_ok(bucket, &["cat", "workers", "--json"]).stdout).unwrap();
    let memory_mb: u64 = memory.trim_end_matches(" mb").parse().unwrap();
    assert!(memory_mb > 64, "implausible memory {memory}");
    for worker in workers.as_array().unwrap() {
        assert_eq!(worker["memory_mb"], memory_mb);
    }
    let records = last_run_records(bucket, "worker_facts");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["event"] == "command_end" && r["exit"] == "0")
            .count(),
        3
    );
}

#[test]
fn worker_facts_writes_nothing_when_a_worker_cannot_be_probed() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts();
    let original = workers_json(hosts, &[&[], &[]]);
    let dir = bucket(&cluster, &original);
    let bucket = dir.path();
    cluster.crash(&hosts[1]);
    let ran = run_failing(bucket, &["worker_facts", "-c", "2"]);
    assert!(ran.stderr.contains("left unchanged"), "{}", ran.stderr);
    assert!(ran.stderr.contains(&hosts[1]), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_to_string(bucket.join("workspace/workers.json")).unwrap(),
        original
    );
    let ran = run_failing(bucket, &["worker_facts", "-w", "10.99.0.1"]);
    assert!(
        ran.stderr.contains("not in workspace/workers.json"),
        "{}",
        ran.stderr
    );
}

const APP_MAKEFILE: &str = "\
start:
\t@mkdir -p data && echo running > data/state && echo \"app started on $$(hostname)\"
stop:
\t@rm -f data/state && echo \"app stopped\"
restart: stop start
status:
\t@if [ -f data/state ]; then echo \"app running\"; else echo \"app not running\"; exit 3; fi
migrate:
\t@echo \"migrating to $(NEW_VERSION) as $$(id -un)\"
";

/// Places the tree deploy would leave on `host`: worker.json (at `update_seq`), jobs.json with
/// the job `app`, the runner, and `jobs/app/Makefile`.
fn place_tree(cluster: &Cluster, host: &str, identity: WorkerIdentity) {
    let stage = tempfile::tempdir().unwrap();
    let root = stage.path().join("tree");
    stage_worker_files(
        &root,
        &WorkerFiles {
            identity: identity.clone(),
            jobs: vec![JobEntry {
                name: "app".into(),
                disabled: false,
                current_version: "1.0.0".into(),
                new_version: "1.0.0".into(),
            }],
        },
    )
    .unwrap();
    let job_dir = root.join("jobs/app");
    std::fs::create_dir_all(&job_dir).unwrap();
    std::fs::set_permissions(root.join("jobs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&job_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(job_dir.join("Makefile"), APP_MAKEFILE).unwrap();

    let config = RemoteConfig {
        user: cluster.user().to_string(),
        port: cluster.port(),
        key_path: cluster.key_path().to_path_buf(),
        known_hosts_path: stage.path().join("known_hosts"),
        use_sudo: true,
        connect_timeout: Duration::from_secs(5),
        masters: MasterPolicy::PerCommand,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let fleet = Fleet::new(config, 1).unwrap();
        let session = fleet.session(host).await.unwrap();
        session
            .sync(
                &Transfer {
                    source: root.clone(),
                    destination: format!("/opt/worker/{}", identity.bucket_id),
                    filters: Vec::new(),
                    delete: false,
                    checksum: true,
                    timeout: Duration::from_secs(60),
                },
                &|_: maand::remote::RemoteRecord| {},
            )
            .await
            .unwrap();
    });
}

#[test]
fn job_targets_run_on_in_sync_workers_and_refuse_drifted_ones() {
    let cluster = Cluster::start(3);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&[], &[], &[]]));
    let bucket = dir.path();
    std::fs::create_dir_all(bucket.join("workspace/jobs/app")).unwrap();
    std::fs::write(
        bucket.join("workspace/jobs/app/manifest.json"),
        r#"{"version": "1.0.0", "selectors": ["worker"]}"#,
    )
    .unwrap();
    std::fs::write(bucket.join("workspace/jobs/app/Makefile"), APP_MAKEFILE).unwrap();
    run_ok(bucket, &["build"]);
    let info = info(bucket);
    let bucket_id = info["bucket_id"].as_str().unwrap().to_string();
    let update_seq = info["update_seq"].as_u64().unwrap();
    let workers: Value =
        serde_json::from_str(&run_ok(bucket, &["cat", "workers", "--json"]).stdout).unwrap();
    let identity = |host: &str, update_seq: u64| WorkerIdentity {
        bucket_id: bucket_id.clone(),
        worker_id: workers
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["host"] == host)
            .unwrap()["worker_id"]
            .as_str()
            .unwrap()
            .to_string(),
        update_seq,
        labels: vec!["worker".into()],
    };
    let (in_sync, missing, behind) = (&hosts[0], &hosts[1], &hosts[2]);
    place_tree(&cluster, in_sync, identity(in_sync, update_seq));
    place_tree(&cluster, behind, identity(behind, update_seq + 7));

    let ran = run_ok(bucket, &["job", "start", "app", "--allocations", in_sync]);
    assert!(
        ran.stderr
            .contains(&format!("app@{in_sync} | app started on worker1")),
        "{}",
        ran.stderr
    );
    run_ok(bucket, &["job", "status", "app", "--allocations", in_sync]);
    let records = last_run_records(bucket, "job status");
    let begin = events_for(&records, "command_begin", in_sync);
    let status = begin.iter().find(|r| r["action"] == "status").unwrap();
    assert_eq!(status["phase"], "job_control");
    assert_eq!(status["job"], "app");
    assert!(status["cmd"]
        .as_str()
        .unwrap()
        .contains("runner.py status app"));

    run_ok(bucket, &["job", "stop", "app", "--allocations", in_sync]);
    let ran = run_failing(bucket, &["job", "status", "app", "--allocations", in_sync]);
    assert!(
        summary_row(&ran.stdout, in_sync).contains("exit"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("app not running"), "{}", ran.stderr);

    let ran = run_ok(
        bucket,
        &[
            "job",
            "run",
            "app",
            "--target",
            "migrate",
            "--allocations",
            in_sync,
        ],
    );
    assert!(
        ran.stderr
            .contains(&format!("app@{in_sync} | migrating to 1.0.0 as root")),
        "{}",
        ran.stderr
    );
    run_ok(bucket, &["job", "restart", "app", "--allocations", in_sync]);

    // The run_command working directory is the bucket's tree once it exists.
    let ran = run_ok(bucket, &["run_command", "pwd", "-w", in_sync]);
    assert!(
        ran.stderr
            .contains(&format!("{in_sync} | /opt/worker/{bucket_id}")),
        "{}",
        ran.stderr
    );

    // Every allocation: the missing and the behind worker are refused, the other one runs.
    let ran = run_failing(bucket, &["job", "start", "app"]);
    assert!(
        summary_row(&ran.stdout, in_sync).contains("exit 0"),
        "{}",
        ran.stdout
    );
    assert!(
        summary_row(&ran.stdout, missing).contains("not deployed yet")
            && summary_row(&ran.stdout, missing).contains("run maand deploy"),
        "{}",
        ran.stdout
    );
    assert!(
        summary_row(&ran.stdout, behind).contains(&format!(
            "worker is at update_seq {}, catalog at {update_seq}: run maand deploy",
            update_seq + 7
        )),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("failed on 2 of 3 workers"),
        "{}",
        ran.stderr
    );
    let records = last_run_records(bucket, "job start");
    for refused in [missing, behind] {
        assert!(events_for(&records, "command_begin", refused)
            .iter()
            .all(|r| r["action"] != "start"));
        let end = events_for(&records, "command_end", refused);
        assert!(
            end.iter()
                .any(|r| r["action"] == "start"
                    && r["error"].as_str().unwrap().starts_with("refused:")),
            "{records:#?}"
        );
    }
    assert_eq!(run_outcome(&records), "failed");
    // The refused worker was left alone.
    let state = cluster.ssh(
        behind,
        &format!("test -e /opt/worker/{bucket_id}/jobs/app/data/state"),
    );
    assert!(!state.status.success());
}

#[test]
fn job_targets_check_their_arguments_before_touching_workers() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&[]]));
    let bucket = dir.path();
    std::fs::create_dir_all(bucket.join("workspace/jobs/app")).unwrap();
    std::fs::write(
        bucket.join("workspace/jobs/app/manifest.json"),
        r#"{"version": "1.0.0", "selectors": ["worker"]}"#,
    )
    .unwrap();
    std::fs::write(bucket.join("workspace/jobs/app/Makefile"), APP_MAKEFILE).unwrap();
    run_ok(bucket, &["build"]);

    let ran = run_failing(bucket, &["job", "start", "nope"]);
    assert!(ran.stderr.contains("unknown job nope"), "{}", ran.stderr);
    let ran = run_failing(
        bucket,
        &["job", "stop", "app", "--allocations", "10.99.0.1"],
    );
    assert!(
        ran.stderr
            .contains("no active allocation on worker: 10.99.0.1"),
        "{}",
        ran.stderr
    );
    let ran = run_failing(bucket, &["job", "run", "app", "--target", "x;reboot"]);
    assert!(
        ran.stderr.contains("not a Makefile target"),
        "{}",
        ran.stderr
    );
}

#[test]
fn escape_sequences_from_a_worker_are_shown_escaped_and_journaled_exactly() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jafter";
    let shown = "\\e]0;pwned\\x07\\e[2Jafter";

    let ran = run_ok(
        bucket,
        &["run_command", r"printf '\033]0;pwned\007\033[2Jafter\n'"],
    );
    assert!(ran.stderr.contains(shown), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains('\u{1b}'),
        "raw ESC reached the terminal"
    );

    let human = run_ok(bucket, &["logs", "show", "--format", "human"]);
    assert!(human.stdout.contains(shown), "{}", human.stdout);
    assert!(!human.stdout.contains('\u{1b}') && !human.stdout.contains('\u{7}'));

    let records = last_run_records(bucket, "run_command");
    let lines: Vec<&str> = events_for(&records, "command_output", &hosts[0])
        .iter()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    assert_eq!(lines, [hostile], "JSON keeps the exact bytes");
}

#[test]
fn huge_command_output_is_journaled_head_and_tail_with_the_dropped_size() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"]]));
    let bucket = dir.path();
    let conf = std::fs::read_to_string(bucket.join("maand.conf")).unwrap();
    let conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("journal_output_limit"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        bucket.join("maand.conf"),
        format!("{conf}journal_output_limit = 65536\n"),
    )
    .unwrap();
    run_ok(bucket, &["build"]);
    let db_before = std::fs::metadata(bucket.join("data/maand.db"))
        .unwrap()
        .len();

    // 200,000 numbered lines, about 1.3 MB.
    let ran = run_ok(bucket, &["run_command", "seq -f 'line %06g' 1 200000"]);
    assert!(
        ran.stderr.contains("line 200000"),
        "the terminal sees every line"
    );

    let records = last_run_records(bucket, "run_command");
    let lines: Vec<&str> = events_for(&records, "command_output", &hosts[0])
        .iter()
        .map(|r| r["msg"].as_str().unwrap())
        .collect();
    let journaled: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(journaled <= 65536 + 300, "journaled {journaled} bytes");
    assert_eq!(lines[0], "line 000001");
    assert_eq!(*lines.last().unwrap(), "line 200000");
    let marker = lines
        .iter()
        .find(|l| l.starts_with("[maand]"))
        .expect("a line records what was dropped");
    let kept = lines.len() as u64 - 1;
    let dropped_lines = 200_000 - kept;
    assert!(
        marker.contains(&format!(
            "{dropped_lines} line(s), {} byte(s)",
            dropped_lines * 12
        )),
        "{marker}"
    );
    let db_after = std::fs::metadata(bucket.join("data/maand.db"))
        .unwrap()
        .len();
    assert!(
        db_after - db_before < 2 * 1024 * 1024,
        "maand.db grew by {} bytes",
        db_after - db_before
    );
}

#[test]
fn a_key_others_may_read_is_named_with_the_fix_before_any_connection() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    let key = bucket.join("secrets/worker.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ran = run_failing(bucket, &["run_command", "true"]);
    assert!(ran.stderr.contains("has mode 644"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("chmod 600 {}", key.display())),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("authorized_keys"), "{}", ran.stderr);
}

#[test]
fn an_oversized_worker_json_is_refused_with_its_size() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&[]]));
    let bucket = dir.path();
    std::fs::create_dir_all(bucket.join("workspace/jobs/app")).unwrap();
    std::fs::write(
        bucket.join("workspace/jobs/app/manifest.json"),
        r#"{"version": "1.0.0", "selectors": ["worker"]}"#,
    )
    .unwrap();
    std::fs::write(bucket.join("workspace/jobs/app/Makefile"), APP_MAKEFILE).unwrap();
    run_ok(bucket, &["build"]);
    let bucket_id = info(bucket)["bucket_id"].as_str().unwrap().to_string();
    run_ok(
        bucket,
        &[
            "run_command",
            &format!(
                "sudo mkdir -p /opt/worker/{bucket_id} && head -c 300000 /dev/zero | tr '\\0' x | sudo tee /opt/worker/{bucket_id}/worker.json >/dev/null"
            ),
        ],
    );
    let ran = run_failing(bucket, &["job", "status", "app"]);
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains("it is 300000 bytes, more than the 65536 maand reads"),
        "{all}"
    );
}

#[test]
fn a_run_killed_with_sigkill_is_closed_as_abandoned_by_the_next_command() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maand"))
        .args(["run_command", "echo started; sleep 60"])
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the command is started on the worker (its begin is committed at once), then
    // kill maand without a chance to clean up.
    let mut seen = false;
    for _ in 0..300 {
        let logs = run_ok(bucket, &["logs", "show", "--format", "json"]).stdout;
        if logs.contains("\"command_begin\"") {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen, "the command started on the worker");
    child.kill().unwrap();
    child.wait().unwrap();

    run_ok(bucket, &["build"]);
    let records = last_run_records(bucket, "build");
    let abandoned: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "run_abandoned")
        .collect();
    assert_eq!(abandoned.len(), 1, "{records:#?}");
    assert_eq!(abandoned[0]["command"], "run_command");
    assert_eq!(abandoned[0]["pid"], child.id().to_string());
    // Closed once: the next command finds nothing open.
    run_ok(bucket, &["build"]);
    let records = last_run_records(bucket, "build");
    assert!(records.iter().all(|r| r["event"] != "run_abandoned"));
    run_ok(bucket, &["journal", "verify"]);
}

/// Process ids whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name (which may hold spaces) start after the last ')'.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == parent {
            children.push(pid);
        }
    }
    children
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
            .unwrap_or(true)
}

/// Starts `maand args` as a terminal would (leader of its own process group), waits until
/// `marker` runs on `host`, sends `signal` to the whole group, and returns maand's exit code
/// with its stderr. Asserts that no process maand started is left on the host or the worker.
fn interrupt_on_worker(
    cluster: &Cluster,
    host: &str,
    bucket: &Path,
    args: &[&str],
    marker: &str,
    signal: i32,
) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_maand"))
        .args(args)
        .current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let running = |script: &str| !cluster.ssh_ok(host, script).trim().is_empty();
    // `sleep 9999[1]` matches the command but not this probe's own command line.
    let (head, last) = marker.split_at(marker.len() - 1);
    let probe = format!("pgrep -f '{head}[{last}]' || true");
    let mut started = false;
    for _ in 0..300 {
        if running(&probe) {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started, "{marker} started on {host}");
    // Commands run over the worker's master through the native multiplexing client, so maand
    // usually has no local child for them; whatever local children it has must be gone too.
    let local_children = children_of(child.id());
    // SAFETY: kill(2) on the process group the test started; no memory is involved.
    unsafe {
        libc::kill(-(child.id() as i32), signal);
    }
    // Guard against a hang (the test would otherwise wait forever): a stop takes seconds.
    let pid = child.id();
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        // SAFETY: kill(2) on the process the test started; no memory is involved.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) }
    });
    let output = child.wait_with_output().unwrap();
    assert!(
        !guard.is_finished(),
        "maand did not stop after {signal} within 120 s"
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut leftovers = true;
    for _ in 0..100 {
        leftovers = running(&probe) || local_children.iter().any(|pid| alive(*pid));
        if !leftovers {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !leftovers,
        "processes left after the interrupt: worker: {}, local: {:?}\n{stderr}",
        cluster.ssh_ok(host, &probe),
        local_children
            .iter()
            .filter(|p| alive(**p))
            .collect::<Vec<_>>()
    );
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn ctrl_c_and_sigterm_stop_run_command_on_the_worker_and_record_an_interrupted_run() {
    let cluster = Cluster::start(1);
    let hosts = cluster.hosts();
    let dir = bucket(&cluster, &workers_json(hosts, &[&["web"]]));
    let bucket = dir.path();
    run_ok(bucket, &["build"]);
    for (signal, marker) in [
        (libc::SIGINT, "sleep 99991"),
        (libc::SIGTERM, "sleep 99992"),
    ] {
        let (code, stderr) = interrupt_on_worker(
            &cluster,
            &hosts[0],
            bucket,
            &["run_command", marker],
            marker,
            signal,
        );
        assert_eq!(code, 130, "{stderr}");
        assert!(
            stderr.contains("received: starting nothing new"),
            "{stderr}"
        );
        assert!(
            stderr.contains("interrupted: run `maand run_command` again"),
            "{stderr}"
        );
        let records = last_run_records(bucket, "run_command");
        assert_eq!(run_outcome(&records), "interrupted");
    }
    run_ok(bucket, &["journal", "verify"]);
}

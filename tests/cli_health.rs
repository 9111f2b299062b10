//! `maand health_check` and the `--health_check` flags against real sshd workers: tcp, http
//! and ssh probes passing and failing for real (a python3 web server bound to each worker's
//! own address), `--wait` until a marker file appears, the worker SSH gate, `health_check`
//! commands, the journal (`health_checked`) and `deployments.health_failed`.

mod support;

use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::bucket::TestBucket;
use support::cluster::Cluster;

/// Serves `www/` over HTTP on the job's pool port at the worker's own address (workers share
/// the loopback port space). `env.mk` is rendered per worker from `env.mk.tpl`.
const WEB_MAKEFILE: &str = "\
include env.mk
.PHONY: start stop restart status
start:
\t@mkdir -p data logs
\t@if [ ! -f data/web.pid ]; then setsid nohup python3 -m http.server $(HTTP_PORT) --bind $(WORKER_IP) --directory www >logs/web.log 2>&1 </dev/null & echo $$! > data/web.pid; fi
stop:
\t@if [ -f data/web.pid ]; then pid=$$(cat data/web.pid); kill $$pid 2>/dev/null; while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; rm -f data/web.pid; fi
restart: stop start
status:
\t@test -f data/web.pid
";

const WEB_ENV: &str = "WORKER_IP := {{ worker_ip }}\nHTTP_PORT := {{ get(ns=\"maand/bucket\", key=\"http_port\") }}\n";

/// A Makefile whose targets do nothing: for jobs checked by probes on files only.
const QUIET_MAKEFILE: &str = "\
.PHONY: start stop restart status
start stop restart status:
\t@true
";

/// A web job on workers labelled `web` with port `http_port` and the given `health_check`
/// section (one such job per bucket: the port name is bucket-wide).
fn web_job(bucket: &TestBucket, name: &str, health_check: &str) {
    bucket.write(
        &format!("workspace/jobs/{name}/manifest.json"),
        &format!(
            r#"{{"version": "1.0.0", "selectors": ["web"],
                "resources": {{"ports": {{"http_port": {{}}}}}},
                "health_check": {health_check}}}"#
        ),
    );
    bucket.write(&format!("workspace/jobs/{name}/Makefile"), WEB_MAKEFILE);
    bucket.write(&format!("workspace/jobs/{name}/env.mk.tpl"), WEB_ENV);
    bucket.write(
        &format!("workspace/jobs/{name}/www/index.html"),
        "<p>hello</p>\n",
    );
}

fn cluster_with_bucket(workers: usize) -> (Cluster, TestBucket) {
    let cluster = Cluster::start(workers);
    let labels: Vec<&[&str]> = (0..workers).map(|_| &["web"][..]).collect();
    let bucket = TestBucket::new(&cluster, &labels);
    (cluster, bucket)
}

/// Runs maand and returns (success, stdout, stderr).
fn maand(bucket: &TestBucket, args: &[&str]) -> (bool, String, String) {
    let out = bucket.maand(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The health report (from its first line, after the line per allocation printed while the
/// checks ran) with runs of spaces collapsed, for matching rows.
fn words(text: &str) -> String {
    let report = text.find("worker SSH gate").map_or(text, |at| &text[at..]);
    report
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `health_checked` record in the journal, oldest first.
fn health_events(bucket: &TestBucket) -> Vec<serde_json::Value> {
    bucket
        .maand_ok(&[
            "logs",
            "show",
            "--event",
            "health_checked",
            "--format",
            "json",
        ])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn alloc_id(bucket: &TestBucket, job: &str, host: &str) -> String {
    bucket.sql(&format!(
        "SELECT alloc_id FROM allocations WHERE job = '{job}' AND worker_ip = '{host}'"
    ))
}

#[test]
fn tcp_http_and_ssh_probes_pass_on_a_running_job_and_fail_once_it_stops() {
    let (cluster, bucket) = cluster_with_bucket(3);
    web_job(
        &bucket,
        "web",
        r#"{"checks": [
              {"type": "tcp", "port": "http_port"},
              {"type": "http", "port": "http_port", "path": "/index.html"},
              {"type": "ssh", "command": "test -f data/web.pid"}],
            "timeout_seconds": 5, "wait": {"attempts": 60, "interval_seconds": 1}}"#,
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let port = bucket.sql("SELECT port FROM job_ports WHERE job = 'web'");

    // The server needs a moment after `make start`: wait for it.
    let out = words(&bucket.maand_ok(&["health_check", "--wait"]));
    assert!(
        out.starts_with("worker SSH gate: 3 of 3 workers answered on port 22"),
        "{out}"
    );
    for host in cluster.hosts() {
        for row in [
            format!("web {host} tcp http_port:{port} passed"),
            format!("web {host} http http_port:{port}/index.html passed"),
            format!("web {host} ssh test -f data/web.pid passed"),
        ] {
            assert!(out.contains(&row), "missing {row:?} in\n{out}");
        }
    }
    assert!(out.contains("status 200"), "{out}");
    assert!(out.contains("3 healthy, 0 unhealthy allocations"), "{out}");
    assert_eq!(
        bucket.sql("SELECT count(*) FROM health WHERE healthy = 1"),
        "3"
    );
    assert_eq!(
        bucket.sql("SELECT sum(health_failed) FROM deployments"),
        "0"
    );

    // Stop the server on one worker: every probe fails there, for its own reason.
    let stopped = &cluster.hosts()[0];
    bucket.maand_ok(&["job", "stop", "web", "--allocations", stopped]);
    let (ok, stdout, stderr) = maand(&bucket, &["health_check"]);
    assert!(
        !ok,
        "an unhealthy allocation must fail the command:\n{stdout}"
    );
    let out = words(&stdout);
    assert!(
        out.contains(&format!(
            "web {stopped} tcp http_port:{port} failed cannot connect"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "web {stopped} http http_port:{port}/index.html failed cannot connect"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "web {stopped} ssh test -f data/web.pid failed exit 1"
        )),
        "{out}"
    );
    assert!(out.contains("2 healthy, 1 unhealthy allocations"), "{out}");
    assert!(
        stderr.contains(&format!("1 allocation unhealthy: web@{stopped}")),
        "{stderr}"
    );
    let stopped_alloc = alloc_id(&bucket, "web", stopped);
    assert_eq!(
        bucket.sql("SELECT alloc_id FROM deployments WHERE health_failed = 1"),
        stopped_alloc
    );
    assert_eq!(
        bucket.sql("SELECT worker_ip || ' ' || healthy FROM health WHERE healthy = 0"),
        format!("{stopped} 0")
    );

    // Every attempt is in the journal; the failed one says why.
    let events = health_events(&bucket);
    let failed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["healthy"] == "false" && e["worker"] == stopped.as_str())
        .collect();
    assert!(!failed.is_empty(), "{events:?}");
    let last = failed.last().unwrap();
    assert_eq!(last["job"], "web");
    assert_eq!(last["alloc_id"], stopped_alloc.as_str());
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["attempt"], "1");
    assert!(
        last["detail"].as_str().unwrap().contains("cannot connect"),
        "{last}"
    );

    // Starting it again with --health_check waits for it and clears the mark.
    let out = bucket.maand_ok(&[
        "job",
        "start",
        "web",
        "--allocations",
        stopped,
        "--health_check",
    ]);
    assert!(
        words(&out).contains("1 healthy, 0 unhealthy allocations"),
        "{out}"
    );
    assert_eq!(
        bucket.sql("SELECT sum(health_failed) FROM deployments"),
        "0"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn an_http_probe_fails_on_an_unexpected_status_and_a_job_without_checks_is_named() {
    let (cluster, bucket) = cluster_with_bucket(3);
    web_job(
        &bucket,
        "web",
        r#"{"checks": [{"type": "http", "port": "http_port", "path": "/going.html", "expect_status": 200}],
            "wait": {"attempts": 60, "interval_seconds": 1}}"#,
    );
    // The page is there while deploy's health gate checks it, and removed afterwards.
    bucket.write("workspace/jobs/web/www/going.html", "<p>soon gone</p>\n");
    bucket.write(
        "workspace/jobs/plain/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"]}"#,
    );
    bucket.write("workspace/jobs/plain/Makefile", QUIET_MAKEFILE);
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    // Wait until every server answers at all (a 404 is an answer), then check once.
    for host in cluster.hosts() {
        let port = bucket.sql("SELECT port FROM job_ports WHERE job = 'web'");
        while std::net::TcpStream::connect((host.as_str(), port.parse::<u16>().unwrap())).is_err() {
            thread::sleep(Duration::from_millis(100));
        }
    }
    for host in cluster.hosts() {
        cluster.ssh_ok(
            host,
            &format!("sudo rm {}/jobs/web/www/going.html", bucket.remote_dir()),
        );
    }
    let (ok, stdout, _) = maand(&bucket, &["health_check"]);
    assert!(!ok, "{stdout}");
    let out = words(&stdout);
    for host in cluster.hosts() {
        assert!(out.contains(&format!("web {host} http http_port")), "{out}");
    }
    assert_eq!(
        out.matches("failed status 404, expected 200").count(),
        3,
        "{out}"
    );
    assert!(out.contains("plain - - no health check"), "{out}");
    assert!(out.contains("1 job without a health check"), "{out}");
    // A job without checks records nothing and passes alone.
    let out = words(&bucket.maand_ok(&["health_check", "--jobs", "plain"]));
    assert!(out.contains("plain - - no health check"), "{out}");
    assert!(out.contains("0 healthy, 0 unhealthy allocations"), "{out}");
    assert!(health_events(&bucket).iter().all(|e| e["job"] == "web"));
    // Unknown jobs are refused before anything is checked.
    let (ok, _, stderr) = maand(&bucket, &["health_check", "--jobs", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("unknown job nope"), "{stderr}");
}

#[test]
fn wait_keeps_checking_until_a_marker_file_appears() {
    let (cluster, bucket) = cluster_with_bucket(3);
    bucket.write(
        "workspace/jobs/ready/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "health_check": {"checks": [{"type": "ssh", "command": "test -f /tmp/ready"}],
                             "wait": {"attempts": 600, "interval_seconds": 1}}}"#,
    );
    bucket.write("workspace/jobs/ready/Makefile", QUIET_MAKEFILE);
    bucket.maand_ok(&["build"]);
    // Ready while deploy's health gate looks (each worker has its own /tmp), not afterwards.
    for host in cluster.hosts() {
        cluster.ssh_ok(host, "touch /tmp/ready");
    }
    bucket.maand_ok(&["deploy"]);
    for host in cluster.hosts() {
        cluster.ssh_ok(host, "rm /tmp/ready");
    }
    let checked_by_deploy = health_events(&bucket).len();

    let waiting = Command::new(env!("CARGO_BIN_EXE_maand"))
        .args(["health_check", "--wait", "--jobs", "ready"])
        .current_dir(bucket.path())
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once every allocation has failed an attempt, create the marker on each worker.
    while bucket.sql("SELECT count(*) FROM health WHERE healthy = 0") != "3" {
        thread::sleep(Duration::from_millis(100));
    }
    for host in cluster.hosts() {
        cluster.ssh_ok(host, "touch /tmp/ready");
    }
    let out = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        words(&stdout).contains("3 healthy, 0 unhealthy allocations"),
        "{stdout}"
    );
    for host in cluster.hosts() {
        let attempts: Vec<(String, u32)> = health_events(&bucket)
            .iter()
            .skip(checked_by_deploy)
            .filter(|e| e["worker"] == host.as_str())
            .map(|e| {
                (
                    e["healthy"].as_str().unwrap().to_string(),
                    e["attempt"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let (last_healthy, last_attempt) = attempts.last().unwrap().clone();
        assert_eq!(last_healthy, "true", "{attempts:?}");
        assert!(last_attempt > 1, "{attempts:?}");
        // Attempts count up one by one and only the last one passed.
        for (i, (healthy, attempt)) in attempts.iter().enumerate() {
            assert_eq!(*attempt, i as u32 + 1, "{attempts:?}");
            assert_eq!(healthy == "true", i + 1 == attempts.len(), "{attempts:?}");
        }
    }
    // The probe's runs are journaled like any remote command.
    let probe_runs = bucket.maand_ok(&[
        "logs",
        "show",
        "--phase",
        "health_check",
        "--format",
        "json",
    ]);
    assert!(probe_runs.contains("\"action\":\"ssh\""), "{probe_runs}");
}

#[test]
fn a_worker_that_does_not_answer_ssh_fails_the_gate_and_its_allocations() {
    let (cluster, bucket) = cluster_with_bucket(3);
    bucket.write(
        "workspace/jobs/files/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "health_check": {"checks": [{"type": "ssh", "command": "test -f Makefile"}]}}"#,
    );
    bucket.write("workspace/jobs/files/Makefile", QUIET_MAKEFILE);
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    bucket.maand_ok(&["health_check"]);

    let silent = &cluster.hosts()[2];
    cluster.refuse(silent);
    let (ok, stdout, stderr) = maand(&bucket, &["health_check"]);
    cluster.heal(silent);
    assert!(!ok, "{stdout}");
    let out = words(&stdout);
    assert!(
        out.starts_with("worker SSH gate: 2 of 3 workers answered on port 22"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "- {silent} ssh gate failed cannot connect to port 22"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "files {silent} ssh gate failed worker {silent} did not answer"
        )),
        "{out}"
    );
    assert!(out.contains("2 healthy, 1 unhealthy allocations"), "{out}");
    assert!(
        stderr.contains(&format!("1 worker did not answer on SSH port 22: {silent}")),
        "{stderr}"
    );
    assert_eq!(
        bucket.sql("SELECT worker_ip FROM health WHERE healthy = 0"),
        silent.as_str()
    );
    bucket.maand_ok(&["health_check"]);
    assert_eq!(
        bucket.sql("SELECT count(*) FROM health WHERE healthy = 0"),
        "0"
    );
}

#[test]
fn health_check_flags_check_after_run_command_and_job_targets() {
    let (cluster, bucket) = cluster_with_bucket(3);
    bucket.write(
        "workspace/jobs/flag/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "health_check": {"checks": [{"type": "ssh", "command": "test ! -f data/down"}],
                             "wait": {"attempts": 2, "interval_seconds": 0}}}"#,
    );
    bucket.write(
        "workspace/jobs/flag/Makefile",
        "\
.PHONY: start stop restart status
start:
\t@mkdir -p data && rm -f data/down
stop:
\t@mkdir -p data && touch data/down
restart: stop start
status:
\t@test ! -f data/down
",
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let host = &cluster.hosts()[1];

    // run_command: the gate and every job on the targeted workers only.
    let out = words(&bucket.maand_ok(&["run_command", "true", "-w", host, "--health_check"]));
    assert!(
        out.contains("worker SSH gate: 1 of 1 workers answered on port 22"),
        "{out}"
    );
    assert!(out.contains(&format!("flag {host} ssh")), "{out}");
    assert!(out.contains("1 healthy, 0 unhealthy allocations"), "{out}");

    // A command that breaks the job fails the run through its health check.
    let down = format!("sudo -n touch {}/jobs/flag/data/down", bucket.remote_dir());
    let (ok, stdout, stderr) = maand(
        &bucket,
        &["run_command", &down, "-w", host, "--health_check"],
    );
    assert!(!ok, "{stdout}");
    assert!(
        words(&stdout).contains(&format!(
            "flag {host} ssh test ! -f data/down failed (attempt 2) exit 1"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "health check failed: 1 allocation unhealthy: flag@{host}"
        )),
        "{stderr}"
    );

    // job start brings it back and says so; job stop then fails its check on every worker.
    let out = words(&bucket.maand_ok(&["job", "start", "flag", "--health_check"]));
    assert!(out.contains("3 healthy, 0 unhealthy allocations"), "{out}");
    assert!(!out.contains("worker SSH gate"), "{out}");
    let (ok, stdout, stderr) = maand(&bucket, &["job", "stop", "flag", "--health_check"]);
    assert!(!ok, "{stdout}");
    assert!(
        words(&stdout).contains("0 healthy, 3 unhealthy allocations"),
        "{stdout}"
    );
    assert!(stderr.contains("3 allocations unhealthy"), "{stderr}");
    assert_eq!(
        bucket.sql("SELECT sum(health_failed) FROM deployments"),
        "3"
    );
    let out =
        words(&bucket.maand_ok(&["job", "run", "flag", "--target", "start", "--health_check"]));
    assert!(out.contains("3 healthy, 0 unhealthy allocations"), "{out}");
    assert_eq!(
        bucket.sql("SELECT sum(health_failed) FROM deployments"),
        "0"
    );
}

#[test]
fn health_check_commands_run_after_probes_on_the_operator_host() {
    let (cluster, bucket) = cluster_with_bucket(3);
    let failing = &cluster.hosts()[0];
    bucket.write(
        "workspace/jobs/cmd/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "commands": {"command_health": {"executed_on": ["health_check"]}},
            "health_check": {"checks": [{"type": "ssh", "command": "true"}]}}"#,
    );
    bucket.write("workspace/jobs/cmd/Makefile", QUIET_MAKEFILE);
    bucket.write(
        "workspace/jobs/cmd/_modules/command_health.py",
        &format!(
            "import os, sys\n\
             print('checking', os.environ['ALLOCATION_IP'], os.environ['EVENT'])\n\
             sys.exit(1 if os.environ['ALLOCATION_IP'] == '{failing}' and os.path.exists('unhealthy') else 0)\n"
        ),
    );
    bucket.maand_ok(&["build"]);
    // Healthy through deploy's health gate; the marker (in the bucket directory, where job
    // commands run) turns one allocation unhealthy afterwards.
    bucket.maand_ok(&["deploy"]);
    bucket.write("unhealthy", "");
    let (ok, stdout, stderr) = maand(&bucket, &["health_check", "--verbose"]);
    assert!(!ok, "{stdout}");
    let out = words(&stdout);
    assert!(
        out.contains(&format!("cmd {failing} command command_health failed")),
        "{out}"
    );
    for host in &cluster.hosts()[1..] {
        assert!(
            out.contains(&format!("cmd {host} ssh true passed")),
            "{out}"
        );
        assert!(
            out.contains(&format!("cmd {host} command command_health passed exit 0")),
            "{out}"
        );
    }
    // --verbose echoes the command's output.
    assert!(
        stderr.contains(&format!("checking {failing} health_check")),
        "{stderr}"
    );
    assert_eq!(
        bucket.sql("SELECT worker_ip FROM health WHERE healthy = 0"),
        failing.as_str()
    );
}

/// Serves `www/` over HTTPS with the allocation's certificate from the bucket CA.
const TLS_SERVER: &str = "\
import http.server, ssl, sys
ip, port = sys.argv[1], int(sys.argv[2])
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory='www')
server = http.server.HTTPServer((ip, port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain('certs/site.crt', 'certs/site.key')
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
";

#[test]
fn an_https_probe_trusts_the_certificates_the_bucket_ca_issued() {
    let (_cluster, bucket) = cluster_with_bucket(3);
    bucket.write(
        "workspace/jobs/tls/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["web"],
            "resources": {"ports": {"http_port": {}}},
            "certs": {"site": {"subject": {"common_name": "tls.internal"}}},
            "health_check": {"checks": [{"type": "http", "port": "http_port", "scheme": "https", "path": "/index.html"}],
                             "wait": {"attempts": 120, "interval_seconds": 1}}}"#,
    );
    bucket.write(
        "workspace/jobs/tls/Makefile",
        &WEB_MAKEFILE.replace(
            "python3 -m http.server $(HTTP_PORT) --bind $(WORKER_IP) --directory www",
            "python3 serve.py $(WORKER_IP) $(HTTP_PORT)",
        ),
    );
    bucket.write("workspace/jobs/tls/serve.py", TLS_SERVER);
    bucket.write("workspace/jobs/tls/env.mk.tpl", WEB_ENV);
    bucket.write("workspace/jobs/tls/www/index.html", "<p>secure</p>\n");
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let out = words(&bucket.maand_ok(&["health_check", "--wait"]));
    assert_eq!(out.matches(" status 200").count(), 3, "{out}");
    assert_eq!(out.matches("https http_port:").count(), 3, "{out}");
    assert!(out.contains("3 healthy, 0 unhealthy allocations"), "{out}");
    // The same server is not plain HTTP: a probe speaking http to it fails.
    let manifest = std::fs::read_to_string(bucket.path().join("workspace/jobs/tls/manifest.json"))
        .unwrap()
        .replace(r#""scheme": "https""#, r#""scheme": "http""#);
    bucket.write("workspace/jobs/tls/manifest.json", &manifest);
    bucket.maand_ok(&["build"]);
    let (ok, stdout, _) = maand(&bucket, &["health_check"]);
    assert!(!ok, "{stdout}");
    assert_eq!(
        words(&stdout).matches("http http_port:").count(),
        3,
        "{stdout}"
    );
}

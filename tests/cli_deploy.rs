//! `maand deploy` against real sshd workers: rollout, skips, policies, flags, waves, rolling
//! batches, disable/remove reconciliation, templates, failure + `--resume`, and `kill -9`.

mod support;

use support::bucket::{last_run_records, TestBucket};
use support::cluster::Cluster;

/// A Makefile that appends `<epoch> <target> <CURRENT_VERSION>-><NEW_VERSION>` to data/events
/// and sleeps `SLEEP` seconds inside restart (for overlap checks).
const RECORDING_MAKEFILE: &str = "\
SLEEP ?= 0
.PHONY: start stop restart reload status
start:
\t@mkdir -p data && echo \"$$(date +%s.%N) start $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
\t@echo started $(NEW_VERSION)
stop:
\t@mkdir -p data && echo \"$$(date +%s.%N) stop\" >> data/events
restart:
\t@mkdir -p data && echo \"$$(date +%s.%N) restart-begin $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
\t@sleep $(SLEEP)
\t@echo \"$$(date +%s.%N) restart-end\" >> data/events
reload:
\t@mkdir -p data && echo \"$$(date +%s.%N) reload $(CURRENT_VERSION)->$(NEW_VERSION)\" >> data/events
status:
\t@cat data/events
";

fn job(bucket: &TestBucket, name: &str, manifest: &str) {
    bucket.write(&format!("workspace/jobs/{name}/manifest.json"), manifest);
    bucket.write(
        &format!("workspace/jobs/{name}/Makefile"),
        RECORDING_MAKEFILE,
    );
}

/// The lifecycle lines a worker recorded for a job (without timestamps).
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
        .map(|l| {
            l.split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn timed_events(
    cluster: &Cluster,
    bucket: &TestBucket,
    host: &str,
    job: &str,
) -> Vec<(f64, String)> {
    let out = cluster.ssh_ok(
        host,
        &format!("cat {}/jobs/{job}/data/events", bucket.remote_dir()),
    );
    out.lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(t, rest)| (t.parse().unwrap(), rest.to_string()))
        })
        .collect()
}

/// `maand deploy` started in the background with its output discarded (to be killed).
fn spawn_deploy(bucket: &TestBucket) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_maand"))
        .arg("deploy")
        .current_dir(bucket.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn deploy(bucket: &TestBucket, args: &[&str]) -> String {
    let mut all = vec!["deploy"];
    all.extend_from_slice(args);
    bucket.maand_ok(&all)
}

#[test]
fn first_deploy_starts_everywhere_and_an_unchanged_redeploy_touches_nothing() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["web"], &["web"], &["web"]]);
    job(
        &bucket,
        "web",
        r#"{"version": "1.2.0", "selectors": ["web"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    for host in cluster.hosts() {
        assert_eq!(
            events(&cluster, &bucket, host, "web"),
            ["start 0.0.0->1.2.0"]
        );
        let worker_json = cluster.ssh_ok(host, &format!("cat {}/worker.json", bucket.remote_dir()));
        assert!(worker_json.contains("\"update_seq\": 1"), "{worker_json}");
    }
    assert_eq!(
        bucket.sql("SELECT DISTINCT current_version FROM deployments"),
        "1.2.0"
    );
    let out = deploy(&bucket, &[]);
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("web ") && l.contains("skipped (unchanged)")),
        "{out}"
    );
    assert!(
        out.contains("0 started, 0 restarted, 1 skipped, 0 failed"),
        "{out}"
    );
    for host in cluster.hosts() {
        assert_eq!(events(&cluster, &bucket, host, "web").len(), 1);
    }
    // A no-op deploy does not bump update_seq, so workers stay in step with the catalog.
    assert_eq!(bucket.sql("SELECT update_seq FROM bucket"), "1");
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn restart_policies_decide_the_lifecycle_of_an_update() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "always",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    job(
        &bucket,
        "soft",
        r#"{"version": "1.0.0", "selectors": ["a"], "restart_policy": "reload", "restart_globs": ["bin.conf"]}"#,
    );
    job(
        &bucket,
        "files",
        r#"{"version": "1.0.0", "selectors": ["a"], "restart_policy": "never"}"#,
    );
    for name in ["always", "soft", "files"] {
        bucket.write(&format!("workspace/jobs/{name}/app.conf"), "v1");
    }
    bucket.write("workspace/jobs/soft/bin.conf", "v1");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    // Content change everywhere.
    for name in ["always", "soft", "files"] {
        bucket.write(&format!("workspace/jobs/{name}/app.conf"), "v2");
    }
    bucket.maand_ok(&["build"]);
    let dry = deploy(&bucket, &["--dry-run"]);
    assert!(dry.contains("deployment required"), "{dry}");
    deploy(&bucket, &[]);
    let host = &cluster.hosts()[0];
    assert_eq!(
        events(&cluster, &bucket, host, "always")[1..],
        ["restart-begin 1.0.0->1.0.0", "restart-end"]
    );
    assert_eq!(
        events(&cluster, &bucket, host, "soft")[1..],
        ["reload 1.0.0->1.0.0"]
    );
    assert_eq!(events(&cluster, &bucket, host, "files").len(), 1);
    assert_eq!(
        cluster.ssh_ok(
            host,
            &format!("cat {}/jobs/files/app.conf", bucket.remote_dir())
        ),
        "v2"
    );
    // A change that matches restart_globs turns the reload into a restart.
    bucket.write("workspace/jobs/soft/bin.conf", "v2");
    bucket.maand_ok(&["build"]);
    let dry = deploy(&bucket, &["--dry-run"]);
    assert!(
        dry.contains("restart") && dry.contains("matched=bin.conf"),
        "{dry}"
    );
    deploy(&bucket, &[]);
    assert_eq!(
        events(&cluster, &bucket, host, "soft")[2..],
        ["restart-begin 1.0.0->1.0.0", "restart-end"]
    );
}

#[test]
fn a_version_bump_alone_runs_the_lifecycle_with_both_versions() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "svc",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    job(
        &bucket,
        "svc",
        r#"{"version": "1.1.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    for host in cluster.hosts() {
        assert_eq!(
            events(&cluster, &bucket, host, "svc"),
            [
                "start 0.0.0->1.0.0",
                "restart-begin 1.0.0->1.1.0",
                "restart-end"
            ]
        );
    }
    assert_eq!(
        bucket.sql("SELECT DISTINCT current_version FROM deployments"),
        "1.1.0"
    );
}

#[test]
fn sync_only_promotes_without_lifecycle_and_refuses_new_allocations() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &[]]);
    job(
        &bucket,
        "svc",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    let refused = bucket.maand(&["deploy", "--sync-only"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("--sync-only cannot start new allocations"));
    deploy(&bucket, &[]);
    bucket.write("workspace/jobs/svc/app.conf", "v2");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &["--sync-only"]);
    let host = &cluster.hosts()[0];
    assert_eq!(
        events(&cluster, &bucket, host, "svc"),
        ["start 0.0.0->1.0.0"]
    );
    assert_eq!(
        cluster.ssh_ok(
            host,
            &format!("cat {}/jobs/svc/app.conf", bucket.remote_dir())
        ),
        "v2"
    );
    assert!(deploy(&bucket, &[]).contains("nothing to do"));
}

#[test]
fn force_restarts_promoted_jobs_and_jobs_limits_the_deploy() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "one",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    job(
        &bucket,
        "two",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &["--jobs", "one"]);
    let host = &cluster.hosts()[1];
    assert_eq!(events(&cluster, &bucket, host, "one").len(), 1);
    assert!(events(&cluster, &bucket, host, "two").is_empty());
    deploy(&bucket, &[]);
    assert_eq!(events(&cluster, &bucket, host, "two").len(), 1);
    assert_eq!(
        events(&cluster, &bucket, host, "one").len(),
        1,
        "promoted job one must be skipped"
    );
    deploy(&bucket, &["--force", "--jobs", "one"]);
    assert_eq!(
        events(&cluster, &bucket, host, "one")[1..],
        ["restart-begin 1.0.0->1.0.0", "restart-end"]
    );
    assert_eq!(events(&cluster, &bucket, host, "two").len(), 1);
    let unknown = bucket.maand(&["deploy", "--jobs", "nope"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown job(s): nope"));
}

#[test]
fn waves_follow_demands_and_rolling_batches_of_one_never_overlap() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    bucket.write("workspace/jobs/base/manifest.json", r#"{"version": "1.0.0", "selectors": ["a"], "commands": {"command_x": {"executed_on": ["cli"]}}}"#);
    bucket.write("workspace/jobs/base/Makefile", RECORDING_MAKEFILE);
    bucket.write("workspace/jobs/base/_modules/command_x.py", "");
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "max_concurrent_upgrades": 1,
            "commands": {"command_y": {"executed_on": ["cli"], "demands": {"job": "base", "command": "command_x"}}}}"#,
    );
    bucket.write(
        "workspace/jobs/app/Makefile",
        &RECORDING_MAKEFILE.replace("SLEEP ?= 0", "SLEEP ?= 0.4"),
    );
    bucket.write("workspace/jobs/app/_modules/command_y.py", "");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    let latest_base = cluster
        .hosts()
        .iter()
        .map(|h| timed_events(&cluster, &bucket, h, "base")[0].0)
        .fold(0.0, f64::max);
    let first_app = cluster
        .hosts()
        .iter()
        .map(|h| timed_events(&cluster, &bucket, h, "app")[0].0)
        .fold(f64::MAX, f64::min);
    assert!(latest_base < first_app, "app started before base finished");

    bucket.write("workspace/jobs/app/app.conf", "v2");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    let mut windows: Vec<(f64, f64)> = cluster
        .hosts()
        .iter()
        .map(|h| {
            let ev = timed_events(&cluster, &bucket, h, "app");
            let begin = ev
                .iter()
                .find(|(_, e)| e.starts_with("restart-begin"))
                .unwrap()
                .0;
            let end = ev.iter().find(|(_, e)| e == "restart-end").unwrap().0;
            (begin, end)
        })
        .collect();
    windows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    for pair in windows.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two restarts overlapped: {windows:?}"
        );
    }
}

#[test]
fn disable_stops_and_reenable_starts_and_removing_a_worker_cleans_it_but_keeps_data() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "svc",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    let [first, second, third] = [
        &cluster.hosts()[0],
        &cluster.hosts()[1],
        &cluster.hosts()[2],
    ];
    bucket.write(
        "workspace/disabled.json",
        &format!(r#"{{"jobs": {{"svc": {{"allocations": ["{second}"]}}}}}}"#),
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    assert_eq!(
        events(&cluster, &bucket, second, "svc"),
        ["start 0.0.0->1.0.0", "stop"]
    );
    assert_eq!(events(&cluster, &bucket, first, "svc").len(), 1);
    bucket.remove("workspace/disabled.json");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    assert_eq!(
        events(&cluster, &bucket, second, "svc"),
        ["start 0.0.0->1.0.0", "stop", "start 1.0.0->1.0.0"]
    );

    // Drop the third worker from workers.json.
    let workers = format!(
        r#"[{{"host": "{first}", "labels": ["a"]}}, {{"host": "{second}", "labels": ["a"]}}]"#
    );
    bucket.write("workspace/workers.json", &workers);
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    let listing = cluster.as_root(
        third,
        &format!("ls -A {} 2>/dev/null; echo end", bucket.remote_dir()),
    );
    assert_eq!(
        listing.trim(),
        "end",
        "the bucket tree must be gone from the removed worker"
    );
    assert_eq!(
        bucket.sql(&format!(
            "SELECT count(*) FROM deployments WHERE worker_ip = '{third}'"
        )),
        "0"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn removing_a_job_stops_it_and_keeps_its_data_and_logs() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "keep",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    job(
        &bucket,
        "gone",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    bucket.remove("workspace/jobs/gone");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    let host = &cluster.hosts()[0];
    let listing = cluster.ssh_ok(host, &format!("ls -A {}/jobs/gone", bucket.remote_dir()));
    assert_eq!(listing.trim(), "data");
    assert_eq!(
        events(&cluster, &bucket, host, "gone"),
        ["start 0.0.0->1.0.0", "stop"]
    );
    assert_eq!(events(&cluster, &bucket, host, "keep").len(), 1);
}

#[test]
fn templates_render_per_worker_with_catalog_kv() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    job(
        &bucket,
        "tpl",
        r#"{"version": "2.0.0", "selectors": ["a"], "resources": {"ports": {"tpl_port": {}}}}"#,
    );
    bucket.write("workspace/jobs/tpl/vars.toml", "greeting = \"hi\"\n");
    bucket.write(
        "workspace/jobs/tpl/app.conf.tpl",
        "worker={{ worker_ip }} version={{ new_version }} port={{ get(ns=\"maand/bucket\", key=\"tpl_port\") }} greeting={{ get(ns=\"vars/job/tpl\", key=\"greeting\") }} peers={{ get(ns=\"maand/job/tpl/worker/\" ~ worker_ip, key=\"peer_workers\") }}",
    );
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    for host in cluster.hosts() {
        let text = cluster.ssh_ok(
            host,
            &format!("cat {}/jobs/tpl/app.conf", bucket.remote_dir()),
        );
        assert!(
            text.starts_with(&format!(
                "worker={host} version=2.0.0 port=30000 greeting=hi peers="
            )),
            "{text}"
        );
        assert!(!text.contains(&format!("peers={host}")));
    }
    // A template reading a namespace it may not read fails that job with a clear message.
    bucket.write(
        "workspace/jobs/tpl/bad.tpl",
        "{{ get(ns=\"vars/job/other\", key=\"x\") }}",
    );
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.tpl") && stderr.contains("vars/job/other"),
        "{stderr}"
    );
}

#[test]
fn a_start_that_fails_on_one_worker_resumes_only_there_after_the_fix() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    // start fails while /tmp/broken exists on the worker (each worker has its own /tmp).
    let makefile = RECORDING_MAKEFILE.replace("start:\n", "start:\n\t@test ! -e /tmp/broken\n");
    bucket.write(
        "workspace/jobs/svc/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.write("workspace/jobs/svc/Makefile", &makefile);
    bucket.maand_ok(&["build"]);
    let bad = &cluster.hosts()[1];
    cluster.ssh_ok(bad, "touch /tmp/broken");
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    cluster.ssh_ok(bad, "rm /tmp/broken");
    bucket.maand_ok(&["deploy", "--resume"]);
    for host in cluster.hosts() {
        assert_eq!(
            events(&cluster, &bucket, host, "svc"),
            ["start 0.0.0->1.0.0"],
            "{host}"
        );
    }
    assert_eq!(bucket.sql("SELECT status FROM deploys"), "succeeded");
    assert!(bucket.maand(&["deploy", "--resume"]).status.code() == Some(1));
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn tools_are_checked_only_where_a_step_failed_and_a_missing_one_is_named() {
    let cluster = Cluster::start(2);
    let [good, no_make] = [&cluster.hosts()[0], &cluster.hosts()[1]];
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"]]);
    job(
        &bucket,
        "svc",
        r#"{"version": "1.0.0", "selectors": ["a"]}"#,
    );
    bucket.maand_ok(&["build"]);
    cluster.as_root(no_make, "mount --bind /dev/null /usr/bin/make");
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker is not ready") && stderr.contains("missing make"),
        "{stderr}"
    );
    assert_eq!(
        events(&cluster, &bucket, good, "svc"),
        ["start 0.0.0->1.0.0"]
    );
    let records = last_run_records(bucket.path(), "deploy");
    let checked: Vec<&str> = records
        .iter()
        .filter(|r| r["cmd"].as_str().is_some_and(|c| c.contains("command -v")))
        .filter_map(|r| r["worker"].as_str())
        .collect();
    assert_eq!(
        checked,
        [no_make.as_str()],
        "only the failing worker is checked"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn kill_9_in_the_middle_of_a_rolling_deploy_then_resume_starts_every_worker_exactly_once() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    let makefile = RECORDING_MAKEFILE.replace("start:\n", "start:\n\t@sleep 1\n");
    bucket.write(
        "workspace/jobs/slow/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "max_concurrent_starts": 1}"#,
    );
    bucket.write("workspace/jobs/slow/Makefile", &makefile);
    bucket.maand_ok(&["build"]);
    let mut child = spawn_deploy(&bucket);
    // Wait until the first start has been recorded as started, then kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let started = bucket.sql("SELECT count(*) FROM deploy_steps WHERE kind LIKE '%Lifecycle%' AND status != 'pending'");
        if started.parse::<u32>().unwrap_or(0) >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(bucket.sql("SELECT status FROM deploys"), "planned");
    bucket.maand_ok(&["deploy", "--resume"]);
    for host in cluster.hosts() {
        let starts = events(&cluster, &bucket, host, "slow")
            .iter()
            .filter(|e| e.starts_with("start"))
            .count();
        // An in-doubt start (begun, never recorded as done) is answered by the worker's
        // receipt, never run twice.
        assert_eq!(starts, 1, "{host} started {starts} times");
    }
    let total: usize = cluster
        .hosts()
        .iter()
        .map(|h| events(&cluster, &bucket, h, "slow").len())
        .sum();
    assert_eq!(total, 3, "every worker started once, got {total} events");
    assert_eq!(bucket.sql("SELECT status FROM deploys"), "succeeded");
    bucket.maand_ok(&["journal", "verify"]);
}

/// The commands the last deploy ran on `host`, as the journal names them.
fn deploy_commands(bucket: &TestBucket, host: &str) -> Vec<String> {
    last_run_records(bucket.path(), "deploy")
        .iter()
        .filter(|r| r["event"] == "command_begin" && r["worker"] == host)
        .map(|r| r["cmd"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// What a worker's copy of job `web` holds under `conf/`, as `name=content` lines.
fn worker_conf(cluster: &Cluster, bucket: &TestBucket, host: &str) -> String {
    cluster.ssh_ok(
        host,
        &format!(
            "cd {}/jobs/web/conf && for f in *; do echo \"$f=$(cat $f)\"; done",
            bucket.remote_dir()
        ),
    )
}

#[test]
fn a_warm_redeploy_ships_a_delta_in_the_restart_and_rsync_repairs_a_copy_changed_by_hand() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"]]);
    job(
        &bucket,
        "web",
        r#"{"version": "1.0.0", "selectors": ["a"], "max_concurrent_upgrades": 2}"#,
    );
    bucket.write("workspace/jobs/web/conf/app.conf", "v1");
    bucket.write("workspace/jobs/web/conf/old.conf", "old");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    // Warm: one file changed, one removed, one added. Each worker gets them in the process
    // that restarts the job; no rsync runs.
    bucket.write("workspace/jobs/web/conf/app.conf", "v2");
    bucket.remove("workspace/jobs/web/conf/old.conf");
    bucket.write("workspace/jobs/web/conf/new.conf", "new");
    bucket.maand_ok(&["build"]);
    let out = deploy(&bucket, &[]);
    assert!(out.contains("0 started, 2 restarted"), "{out}");
    for host in &hosts {
        let commands = deploy_commands(&bucket, host);
        assert!(
            commands.iter().all(|c| !c.starts_with("rsync")),
            "{host}: {commands:?}"
        );
        assert!(
            commands.iter().any(|c| c.starts_with(
                "apply a delta to jobs/web: 2 file(s) written, 1 removed, "
            )),
            "{host}: {commands:?}"
        );
        assert!(
            commands
                .iter()
                .any(|c| c.contains(" --apply web -- ") && c.ends_with(" restart")),
            "{host}: {commands:?}"
        );
        assert_eq!(
            worker_conf(&cluster, &bucket, host),
            "app.conf=v2\nnew.conf=new\n"
        );
        assert_eq!(
            events(&cluster, &bucket, host, "web"),
            [
                "start 0.0.0->1.0.0",
                "restart-begin 1.0.0->1.0.0",
                "restart-end"
            ]
        );
    }
    // By hand on the workers: a shipped file edited on one, a stray file added on the other.
    // The delta sees that the copy is not what maand shipped, changes nothing, and rsync
    // brings it back; the job still restarts once.
    let remote = bucket.remote_dir();
    cluster.as_root(
        &hosts[0],
        &format!("echo edited > {remote}/jobs/web/conf/new.conf"),
    );
    cluster.as_root(
        &hosts[1],
        &format!("echo stray > {remote}/jobs/web/conf/stray.conf"),
    );
    bucket.write("workspace/jobs/web/conf/app.conf", "v3");
    bucket.maand_ok(&["build"]);
    let out = deploy(&bucket, &[]);
    assert!(out.contains("0 started, 2 restarted"), "{out}");
    let records = last_run_records(bucket.path(), "deploy");
    for (host, why) in [
        (
            &hosts[0],
            "jobs/web/conf/new.conf was changed on the worker",
        ),
        (
            &hosts[1],
            "jobs/web/conf/stray.conf is on the worker but not in what maand shipped",
        ),
    ] {
        assert!(
            records.iter().any(|r| r["worker"] == host.as_str()
                && r["msg"].as_str().is_some_and(|m| m.contains(why))),
            "{host}: no `{why}` in the journal"
        );
        let commands = deploy_commands(&bucket, host);
        assert_eq!(
            commands.iter().filter(|c| c.starts_with("rsync")).count(),
            1,
            "{host}: {commands:?}"
        );
        assert_eq!(
            worker_conf(&cluster, &bucket, host),
            "app.conf=v3\nnew.conf=new\n"
        );
        assert_eq!(
            events(&cluster, &bucket, host, "web")[3..],
            ["restart-begin 1.0.0->1.0.0", "restart-end"]
        );
    }
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn kill_9_during_a_restart_that_applied_a_delta_then_resume_restarts_exactly_once() {
    let cluster = Cluster::start(2);
    let hosts = cluster.hosts().to_vec();
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"]]);
    bucket.write(
        "workspace/jobs/slow/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "max_concurrent_upgrades": 2}"#,
    );
    bucket.write(
        "workspace/jobs/slow/Makefile",
        &RECORDING_MAKEFILE.replace("SLEEP ?= 0", "SLEEP ?= 2"),
    );
    bucket.write("workspace/jobs/slow/app.conf", "v1");
    bucket.maand_ok(&["build"]);
    deploy(&bucket, &[]);
    bucket.write("workspace/jobs/slow/app.conf", "v2");
    bucket.maand_ok(&["build"]);
    let mut child = spawn_deploy(&bucket);
    // The restart's command is journaled just after its step is recorded as started, so wait
    // for both: kill once each worker's restart began from an applied delta.
    let restarts_started = || {
        bucket.sql(
            "SELECT count(*) FROM deploy_steps WHERE kind LIKE '%Lifecycle%' AND status = 'started'",
        ) == "2"
    };
    let applied_on = |host: &str| {
        last_run_records(bucket.path(), "deploy").iter().any(|r| {
            r["worker"] == host
                && r["cmd"]
                    .as_str()
                    .is_some_and(|c| c.contains(" --apply slow -- "))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(restarts_started() && hosts.iter().all(|host| applied_on(host)))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(restarts_started(), "the restarts were not both started");
    for host in &hosts {
        assert!(
            applied_on(host),
            "{host}: the killed restart did not apply a delta"
        );
    }
    bucket.maand_ok(&["deploy", "--resume"]);
    for host in &hosts {
        assert_eq!(
            events(&cluster, &bucket, host, "slow"),
            [
                "start 0.0.0->1.0.0",
                "restart-begin 1.0.0->1.0.0",
                "restart-end"
            ],
            "{host}"
        );
        assert_eq!(
            cluster.ssh_ok(
                host,
                &format!("cat {}/jobs/slow/app.conf", bucket.remote_dir())
            ),
            "v2"
        );
    }
    assert_eq!(
        bucket.sql("SELECT status FROM deploys ORDER BY rowid DESC LIMIT 1"),
        "succeeded"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

/// A hook that appends `<event> <env...>` to `hooks.log` in the bucket directory (hooks run in
/// the bucket directory on the operator host).
const RECORDING_HOOK: &str = r#"
import os
keys = ["ALLOCATION_IP", "NEW_ALLOCATIONS", "UPDATED_ALLOCATIONS", "BATCH_ALLOCATIONS", "BATCH_INDEX", "BATCH_COUNT", "DEPLOY_PHASE", "CURRENT_VERSION", "NEW_VERSION"]
with open("hooks.log", "a") as log:
    log.write(os.environ["EVENT"] + " " + " ".join(k + "=" + os.environ.get(k, "") for k in keys if os.environ.get(k)) + "\n")
"#;

fn hook_lines(bucket: &TestBucket, event: &str) -> Vec<String> {
    std::fs::read_to_string(bucket.path().join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{event} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn pre_deploy_secret_reaches_a_template_in_the_same_deploy_and_batch_hooks_see_their_batch() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    bucket.write(
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "max_concurrent_starts": 2,
            "commands": {"command_secret": {"executed_on": ["pre_deploy"]},
                         "command_log": {"executed_on": ["after_allocation_started", "post_deploy"]}}}"#,
    );
    bucket.write("workspace/jobs/app/Makefile", RECORDING_MAKEFILE);
    bucket.write(
        "workspace/jobs/app/_modules/command_secret.py",
        "import maand\nmaand.put_job_secret('db_password', 'hunter2-' + maand.allocation_ip())\n",
    );
    bucket.write("workspace/jobs/app/_modules/command_log.py", RECORDING_HOOK);
    bucket.write(
        "workspace/jobs/app/app.conf.tpl",
        "password={{ get_secret(key=\"db_password\") }}\n",
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    for host in cluster.hosts() {
        let conf = cluster.ssh_ok(
            host,
            &format!("cat {}/jobs/app/app.conf", bucket.remote_dir()),
        );
        assert!(conf.starts_with("password=hunter2-"), "{conf}");
    }
    let batches = hook_lines(&bucket, "after_allocation_started");
    // Three allocations in batches of two: two hook runs for the first batch, one for the second.
    assert_eq!(batches.len(), 3, "{batches:?}");
    assert!(
        batches
            .iter()
            .all(|l| l.contains("BATCH_COUNT=2") && l.contains("DEPLOY_PHASE=new")),
        "{batches:?}"
    );
    assert_eq!(
        batches
            .iter()
            .filter(|l| l.contains("BATCH_INDEX=1"))
            .count(),
        1
    );
    assert_eq!(hook_lines(&bucket, "post_deploy").len(), 3);
    // The secret was recorded sealed, never in plaintext.
    assert_eq!(
        bucket.sql("SELECT count(*) FROM kv WHERE value LIKE '%hunter2%'"),
        "0"
    );
    assert_eq!(
        bucket.sql("SELECT count(*) FROM journal WHERE CAST(payload AS TEXT) LIKE '%hunter2%'"),
        "0"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

#[test]
fn job_control_replaces_the_makefile_lifecycle() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    bucket.write(
        "workspace/jobs/custom/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "commands": {"command_roll": {"executed_on": ["job_control"]}}}"#,
    );
    bucket.write("workspace/jobs/custom/Makefile", RECORDING_MAKEFILE);
    bucket.write(
        "workspace/jobs/custom/_modules/command_roll.py",
        RECORDING_HOOK,
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let runs = hook_lines(&bucket, "job_control");
    assert_eq!(runs.len(), 3, "{runs:?}");
    let all: Vec<String> = cluster.hosts().to_vec();
    assert!(
        runs.iter()
            .all(|l| l.contains(&format!("NEW_ALLOCATIONS={}", all.join(",")))),
        "{runs:?}"
    );
    for host in cluster.hosts() {
        assert!(
            events(&cluster, &bucket, host, "custom").is_empty(),
            "make start must not run"
        );
    }
    assert_eq!(
        bucket.sql("SELECT DISTINCT current_version FROM deployments"),
        "1.0.0"
    );
}

#[test]
fn a_failing_post_deploy_fails_the_job_and_resume_reruns_only_the_hook() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    bucket.write(
        "workspace/jobs/svc/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["a"], "commands": {"command_check": {"executed_on": ["post_deploy"]}}}"#,
    );
    bucket.write("workspace/jobs/svc/Makefile", RECORDING_MAKEFILE);
    // Fails while the marker file exists in the bucket directory.
    bucket.write(
        "workspace/jobs/svc/_modules/command_check.py",
        "import os, sys\nsys.exit(1 if os.path.exists('broken') else 0)\n",
    );
    bucket.write("broken", "");
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    assert_eq!(
        bucket.sql("SELECT count(*) FROM deployments WHERE previous_hash IS NOT NULL"),
        "0",
        "nothing promoted"
    );
    bucket.remove("broken");
    bucket.maand_ok(&["deploy", "--resume"]);
    for host in cluster.hosts() {
        assert_eq!(
            events(&cluster, &bucket, host, "svc"),
            ["start 0.0.0->1.0.0"],
            "the start must not repeat"
        );
    }
    assert_eq!(
        bucket.sql("SELECT count(*) FROM deployments WHERE previous_hash IS NOT NULL"),
        "3"
    );
}

#[test]
fn a_failing_health_gate_holds_the_rolling_update_and_resume_continues_once_healthy() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["a"], &["a"], &["a"]]);
    let manifest = |version: &str| {
        format!(
            r#"{{"version": "{version}", "selectors": ["a"], "max_concurrent_upgrades": 1,
                "health_check": {{"checks": [{{"type": "ssh", "command": "test -e /tmp/ready"}}],
                                  "timeout_seconds": 5, "wait": {{"attempts": 3, "interval_seconds": 1}}}}}}"#
        )
    };
    bucket.write("workspace/jobs/svc/manifest.json", &manifest("1.0.0"));
    bucket.write("workspace/jobs/svc/Makefile", RECORDING_MAKEFILE);
    for host in cluster.hosts() {
        cluster.ssh_ok(host, "touch /tmp/ready");
    }
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    // Roll out 1.1.0 with the rollout order pinned, and the second worker unhealthy.
    let [first, second, third] = [
        &cluster.hosts()[0],
        &cluster.hosts()[1],
        &cluster.hosts()[2],
    ];
    cluster.ssh_ok(second, "rm /tmp/ready");
    bucket.write("workspace/jobs/svc/manifest.json", &manifest("1.1.0"));
    bucket.maand_ok(&["build"]);
    let out = bucket.maand(&["deploy"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("health check failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restarted = |host: &str| {
        events(&cluster, &bucket, host, "svc")
            .iter()
            .filter(|e| e.starts_with("restart-begin"))
            .count()
    };
    assert_eq!(
        (restarted(first), restarted(second), restarted(third)),
        (1, 1, 0),
        "later batches must not be touched"
    );
    let state = bucket.sql(&format!(
        "SELECT health_failed FROM deployments WHERE worker_ip = '{second}'"
    ));
    assert_eq!(state, "1");
    let rollout = bucket.maand_ok(&["cat", "deployments", "--json"]);
    assert!(rollout.contains("health_failed"), "{rollout}");
    // The worker becomes healthy: resume re-checks it and rolls the rest.
    cluster.ssh_ok(second, "touch /tmp/ready");
    bucket.maand_ok(&["deploy", "--resume"]);
    assert_eq!(
        (restarted(first), restarted(second), restarted(third)),
        (1, 1, 1)
    );
    assert_eq!(
        bucket.sql("SELECT DISTINCT current_version FROM deployments"),
        "1.1.0"
    );
    bucket.maand_ok(&["journal", "verify"]);
}

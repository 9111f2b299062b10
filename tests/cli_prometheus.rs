//! Prometheus support end to end: `_prometheus/` at build (validation, scrape KV), the three
//! `maand cat prometheus` forms, a bad-input corpus that records nothing, and a real cluster
//! where the prometheus job runs the real `/usr/bin/prometheus` against the config maand
//! assembles: app targets up, rules loaded, runbook pages served, cert gauges pushed, and a
//! removed worker's target gone after rebuild and redeploy.

mod support;

use std::path::Path;
use std::time::Duration;

use support::bucket::{run_maand, run_maand_ok, TestBucket};
use support::cluster::Cluster;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn sqlite(bucket: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(bucket.join("data/maand.db"))
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The prometheus server job: runs the real prometheus on its worker's address and the port
/// build assigns, with its own storage under data/; `make stop` kills it.
fn prometheus_job(root: &Path) {
    write(
        root,
        "workspace/jobs/prometheus/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["monitor"], "resources": {"ports": {"prometheus_port_http": {}}}}"#,
    );
    write(
        root,
        "workspace/jobs/prometheus/prometheus.yml.tpl",
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{{ worker_ip }}:{{ get(ns=\"maand/bucket\", key=\"prometheus_port_http\") }}']\n{{ scrape_configs() }}\n\n{{ rule_files() }}",
    );
    write(
        root,
        "workspace/jobs/prometheus/run.env.tpl",
        "LISTEN={{ worker_ip }}:{{ get(ns=\"maand/bucket\", key=\"prometheus_port_http\") }}\n",
    );
    write(
        root,
        "workspace/jobs/prometheus/Makefile",
        "include run.env\n\
.PHONY: start stop restart reload\n\
start:\n\
\t@mkdir -p data/tsdb logs\n\
\t@nohup /usr/bin/prometheus --config.file=prometheus.yml --storage.tsdb.path=data/tsdb \\\n\
\t  --web.listen-address=$(LISTEN) --web.enable-lifecycle --web.enable-remote-write-receiver \\\n\
\t  --web.console.templates=consoles --web.console.libraries=console_libraries \\\n\
\t  > logs/prometheus.log 2>&1 < /dev/null & echo $$! > data/prometheus.pid\n\
stop:\n\
\t@if [ -f data/prometheus.pid ]; then kill $$(cat data/prometheus.pid) 2>/dev/null || true; \\\n\
\t  while kill -0 $$(cat data/prometheus.pid) 2>/dev/null; do sleep 0.1; done; rm -f data/prometheus.pid; fi\n\
restart: stop start\n\
reload:\n\
\t@python3 -c 'import urllib.request; urllib.request.urlopen(urllib.request.Request(\"http://$(LISTEN)/-/reload\", method=\"POST\"))'\n",
    );
}

const APP_SCRAPE: &str = "\
- job_name: maand:job
  metrics_path: /metrics
  static_configs:
    - targets:
        - maand:port/app_metrics_port
      labels:
        maand_job: maand:job
";

const APP_ALERTS: &str = "\
groups:
  - name: app
    rules:
      - alert: AppDown
        expr: up{job=\"app\"} == 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: \"{{ $labels.instance }} is down\"
          runbook: app_down
      - record: app:up:sum
        expr: sum(up{job=\"app\"})
";

/// A `/metrics` endpoint on the address and port given as arguments.
const SERVE_PY: &str = r#"import http.server, sys


class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"app_requests_total 7\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Metrics).serve_forever()
"#;

/// The monitored app: serves `/metrics` with python3 on its worker and metrics port.
fn app_job(root: &Path) {
    write(
        root,
        "workspace/jobs/app/manifest.json",
        r#"{"version": "1.0.0", "selectors": ["app"], "resources": {"ports": {"app_metrics_port": {}}}}"#,
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/scrape.yaml",
        APP_SCRAPE,
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/alerts/availability.yaml",
        APP_ALERTS,
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/runbooks/app_down.md",
        "# App down\n\nCheck `make status` on the worker, then *restart* it.\n",
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/dashboards/overview.html",
        "<h1>App</h1>\n",
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/dashboards/.dashboardignore",
        "partials/**\n",
    );
    write(
        root,
        "workspace/jobs/app/_prometheus/dashboards/partials/row.html",
        "<tr></tr>\n",
    );
    write(root, "workspace/jobs/app/serve.py", SERVE_PY);
    write(
        root,
        "workspace/jobs/app/run.env.tpl",
        "HOST={{ worker_ip }}\nPORT={{ get(ns=\"maand/bucket\", key=\"app_metrics_port\") }}\n",
    );
    write(
        root,
        "workspace/jobs/app/Makefile",
        "include run.env\n\
.PHONY: start stop restart\n\
start:\n\
\t@mkdir -p data logs\n\
\t@nohup python3 serve.py $(HOST) $(PORT) > logs/app.log 2>&1 < /dev/null & echo $$! > data/app.pid\n\
stop:\n\
\t@if [ -f data/app.pid ]; then kill $$(cat data/app.pid) 2>/dev/null || true; rm -f data/app.pid; fi\n\
restart: stop start\n",
    );
}

fn workers(root: &Path, hosts: &[(&str, &str)]) {
    let list: Vec<serde_json::Value> = hosts
        .iter()
        .map(|(host, label)| serde_json::json!({"host": host, "labels": [label]}))
        .collect();
    write(
        root,
        "workspace/workers.json",
        &serde_json::to_string_pretty(&list).unwrap(),
    );
}

/// A bucket that never connects anywhere: a prometheus job on 127.0.0.1 and the app on
/// 127.0.0.2 and 127.0.0.3, built once.
fn offline_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_maand_ok(dir.path(), &["init"]);
    workers(
        dir.path(),
        &[
            ("127.0.0.1", "monitor"),
            ("127.0.0.2", "app"),
            ("127.0.0.3", "app"),
        ],
    );
    prometheus_job(dir.path());
    app_job(dir.path());
    run_maand_ok(dir.path(), &["build"]);
    dir
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b\d{5}\b", "[port]");
    settings
}

#[test]
fn build_writes_the_scrape_kv_and_cat_prometheus_shows_it() {
    let dir = offline_bucket();
    let bucket = dir.path();
    let kv = |key: &str| run_maand_ok(bucket, &["cat", "kv", "get", "maand/prometheus", key]);
    assert_eq!(kv("scrape_jobs"), "app\n");
    assert_eq!(kv("scrape_jobs_length"), "1\n");
    assert_eq!(
        kv("scrape/app"),
        "[{\"job_name\":\"maand:job\",\"metrics_path\":\"/metrics\",\"static_configs\":[{\"labels\":{\"maand_job\":\"maand:job\"},\"targets\":[\"maand:port/app_metrics_port\"]}]}]\n"
    );
    assert_eq!(
        run_maand_ok(bucket, &["cat", "kv", "get", "maand/job/app", "job_name"]),
        "app\n"
    );
    settings().bind(|| {
        insta::assert_snapshot!(
            "cat_prometheus",
            run_maand_ok(bucket, &["cat", "prometheus"])
        );
        insta::assert_snapshot!(
            "cat_prometheus_json",
            run_maand_ok(bucket, &["cat", "prometheus", "--json"])
        );
        insta::assert_snapshot!(
            "cat_prometheus_get",
            run_maand_ok(
                bucket,
                &[
                    "cat",
                    "prometheus",
                    "get",
                    "app",
                    "alerts/availability.yaml"
                ]
            )
        );
        insta::assert_snapshot!(
            "cat_prometheus_get_json",
            run_maand_ok(
                bucket,
                &["cat", "prometheus", "get", "app", "scrape.yaml", "--json"]
            )
        );
        insta::assert_snapshot!(
            "cat_prometheus_scrape",
            run_maand_ok(bucket, &["cat", "prometheus", "scrape"])
        );
        insta::assert_snapshot!(
            "cat_prometheus_scrape_json",
            run_maand_ok(
                bucket,
                &["cat", "prometheus", "scrape", "--jobs", "app", "--json"]
            )
        );
    });
    // Drop a worker: the scrape preview follows, and --at still shows the first build.
    let first_build = sqlite(bucket, "SELECT max(seq) FROM journal");
    workers(bucket, &[("127.0.0.1", "monitor"), ("127.0.0.2", "app")]);
    run_maand_ok(bucket, &["build"]);
    let now = run_maand_ok(bucket, &["cat", "prometheus", "scrape"]);
    assert!(
        now.contains("127.0.0.2:") && !now.contains("127.0.0.3:"),
        "{now}"
    );
    let then = run_maand_ok(
        bucket,
        &["cat", "prometheus", "scrape", "--at", &first_build],
    );
    assert!(then.contains("127.0.0.3:"), "{then}");
    let missing = run_maand(bucket, &["cat", "prometheus", "get", "app", "nope.yaml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scrape.yaml"));
    let unknown = run_maand(bucket, &["cat", "prometheus", "scrape", "--jobs", "ghost"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such job"));
    run_maand_ok(bucket, &["journal", "verify"]);
}

#[test]
fn without_a_server_job_prometheus_content_is_ignored_and_the_aggregates_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path();
    run_maand_ok(bucket, &["init"]);
    workers(bucket, &[("127.0.0.2", "app")]);
    app_job(bucket);
    write(
        bucket,
        "workspace/jobs/app/_prometheus/scrape.yaml.tpl",
        "- [",
    );
    run_maand_ok(bucket, &["build"]);
    let kv = |key: &str| run_maand_ok(bucket, &["cat", "kv", "get", "maand/prometheus", key]);
    assert_eq!(kv("scrape_configs"), "[]\n");
    assert_eq!(kv("scrape_jobs"), "\n");
    assert_eq!(kv("scrape_jobs_length"), "0\n");
}

#[test]
fn bad_prometheus_content_fails_the_build_and_records_nothing() {
    let dir = offline_bucket();
    let bucket = dir.path();
    let scrape = "workspace/jobs/app/_prometheus/scrape.yaml";
    let alerts = "workspace/jobs/app/_prometheus/alerts/availability.yaml";
    let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        ("malformed yaml", scrape, "- job_name: [", vec!["jobs/app/_prometheus/scrape.yaml", "not valid YAML"]),
        (
            "unknown port key",
            scrape,
            "- job_name: app\n  static_configs:\n    - targets: [maand:port/nope]\n",
            vec!["jobs/app/_prometheus/scrape.yaml", "[0].static_configs[0].targets[0]", "\"nope\" is not declared"],
        ),
        (
            "service discovery",
            scrape,
            "- job_name: app\n  file_sd_configs: [{files: [x]}]\n  static_configs:\n    - targets: [127.0.0.9:1]\n",
            vec!["[0].file_sd_configs", "not supported"],
        ),
        (
            "duplicate job_name",
            "workspace/jobs/prometheus/_prometheus/scrape.yaml",
            "- job_name: app\n  static_configs:\n    - targets: [127.0.0.9:1]\n",
            vec!["job_name \"app\" is already used by job app"],
        ),
        (
            "duplicate alert",
            "workspace/jobs/prometheus/_prometheus/alerts/copy.yaml",
            "groups: [{name: x, rules: [{alert: AppDown, expr: up}]}]\n",
            vec!["jobs/prometheus/_prometheus/alerts/copy.yaml", "alert \"AppDown\" is already defined in workspace/jobs/app/_prometheus/alerts/availability.yaml"],
        ),
        (
            "missing runbook",
            alerts,
            "groups: [{name: x, rules: [{alert: Gone, expr: up, annotations: {runbook: nowhere}}]}]\n",
            vec![".groups[0].rules[0].annotations.runbook", "_prometheus/runbooks/nowhere.md"],
        ),
        (
            "rule without expr",
            alerts,
            "groups: [{name: x, rules: [{alert: NoExpr}]}]\n",
            vec![".groups[0].rules[0].expr"],
        ),
        (
            "scrape.yaml and scrape.yaml.tpl",
            "workspace/jobs/app/_prometheus/scrape.yaml.tpl",
            APP_SCRAPE,
            vec!["jobs/app/_prometheus/scrape.yaml.tpl", "both scrape.yaml and scrape.yaml.tpl"],
        ),
        (
            "prometheus.yml and prometheus.yml.tpl",
            "workspace/jobs/prometheus/prometheus.yml",
            "global: {}\n",
            vec!["jobs/prometheus/prometheus.yml.tpl", "keep one"],
        ),
    ];
    for (name, path, text, needles) in cases {
        let original = std::fs::read_to_string(bucket.join(path)).ok();
        write(bucket, path, text);
        let head: u64 = sqlite(bucket, "SELECT max(seq) FROM journal")
            .parse()
            .unwrap();
        let out = run_maand(bucket, &["build"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the build passed");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: {needle:?} not in:\n{stderr}"
            );
        }
        // Only the failed run's start and end are journaled.
        let now: u64 = sqlite(bucket, "SELECT max(seq) FROM journal")
            .parse()
            .unwrap();
        assert_eq!(now, head + 2, "{name}");
        match original {
            Some(text) => write(bucket, path, &text),
            None => std::fs::remove_file(bucket.join(path)).unwrap(),
        }
    }
    run_maand_ok(bucket, &["build"]);
    run_maand_ok(bucket, &["journal", "verify"]);
}

/// GETs `url`, retrying (bounded) until `ready` accepts the body.
fn poll(url: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..240 {
        match ureq::get(url).call() {
            Ok(response) => {
                last = response.into_body().read_to_string().unwrap_or_default();
                if ready(&last) {
                    return last;
                }
            }
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what}: {url} never became ready; last answer:\n{last}");
}

fn app_targets(body: &str) -> Vec<(String, String)> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == "app")
        .map(|t| {
            (
                t["labels"]["instance"].as_str().unwrap().to_string(),
                t["health"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn promtool(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "promtool {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops prometheus through its Makefile (as root, like maand runs it) and checks no prometheus process is left.
fn stop_prometheus(cluster: &Cluster, bucket: &TestBucket, host: &str) {
    cluster.ssh_ok(
        host,
        &format!(
            "cd {}/jobs/prometheus && sudo make -s stop",
            bucket.remote_dir()
        ),
    );
    let left = cluster.ssh(host, "pgrep -x prometheus");
    assert!(
        !left.status.success(),
        "prometheus still runs: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn a_real_prometheus_scrapes_the_app_loads_rules_serves_runbooks_and_receives_cert_metrics() {
    let cluster = Cluster::start(3);
    let bucket = TestBucket::new(&cluster, &[&["monitor"], &["app"], &["app"]]);
    let hosts = cluster.hosts().to_vec();
    prometheus_job(bucket.path());
    app_job(bucket.path());
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);

    // _prometheus/ stays off every worker.
    for host in &hosts[1..] {
        let listing = cluster.ssh_ok(host, &format!("ls -a {}/jobs/app", bucket.remote_dir()));
        assert!(!listing.contains("_prometheus"), "{listing}");
    }
    // The staged server tree is valid for Prometheus' own checker.
    let staged = bucket
        .path()
        .join(format!("tmp/workers/{}/jobs/prometheus", hosts[0]));
    let config = std::fs::read_to_string(staged.join("prometheus.yml")).unwrap();
    assert!(config.contains(&format!("{}:", hosts[1])), "{config}");
    promtool(&staged, &["check", "config", "prometheus.yml"]);
    promtool(
        &staged,
        &[
            "check",
            "rules",
            "rules/app/availability.yaml",
            "rules/maand/certs.yaml",
        ],
    );

    let port = bucket.maand_ok(&["cat", "kv", "get", "maand/bucket", "prometheus_port_http"]);
    let web = format!("http://{}:{}", hosts[0], port.trim());
    let targets = poll(
        &format!("{web}/api/v1/targets"),
        "both app targets up",
        |body| {
            let found = app_targets(body);
            found.len() == 2 && found.iter().all(|(_, health)| health == "up")
        },
    );
    let instances: Vec<String> = app_targets(&targets).into_iter().map(|(i, _)| i).collect();
    assert!(instances
        .iter()
        .any(|i| i.starts_with(&format!("{}:", hosts[1]))));
    assert!(instances
        .iter()
        .any(|i| i.starts_with(&format!("{}:", hosts[2]))));

    let rules = poll(&format!("{web}/api/v1/rules"), "rules loaded", |body| {
        body.contains("AppDown") && body.contains("MaandCertExpired")
    });
    assert!(
        rules.contains(&format!("{web}/consoles/runbooks/app/app_down.html")),
        "runbook_url points at the console page: {rules}"
    );
    let page = poll(
        &format!("{web}/consoles/runbooks/app/app_down.html"),
        "runbook page",
        |body| body.contains("<h1>App down</h1>"),
    );
    assert!(page.contains("<em>restart</em>"), "{page}");
    poll(
        &format!("{web}/api/v1/query?query=maand_cert_not_after_seconds%7Bscope%3D%22ca%22%7D"),
        "pushed cert expiry series",
        |body| body.contains("\"scope\":\"ca\""),
    );
    let journaled = bucket.maand_ok(&[
        "logs",
        "show",
        "--phase",
        "cert_metrics",
        "--format",
        "json",
    ]);
    assert!(
        journaled.contains("POST http://"),
        "the push is journaled: {journaled}"
    );

    // Drop the third worker: rebuild and redeploy, and its target is gone.
    workers(
        bucket.path(),
        &[(hosts[0].as_str(), "monitor"), (hosts[1].as_str(), "app")],
    );
    bucket.maand_ok(&["build"]);
    bucket.maand_ok(&["deploy"]);
    let after = poll(
        &format!("{web}/api/v1/targets"),
        "one app target left",
        |body| {
            let found = app_targets(body);
            found.len() == 1 && found[0].1 == "up"
        },
    );
    assert!(app_targets(&after)[0]
        .0
        .starts_with(&format!("{}:", hosts[1])));
    bucket.maand_ok(&["journal", "verify"]);
    stop_prometheus(&cluster, &bucket, &hosts[0]);
}

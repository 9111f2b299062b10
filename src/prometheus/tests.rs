//! Tests of scrape expansion and validation, rule validation, build-time KV, server assembly
//! (checked with the real `promtool`) and the remote-write encoding.

use super::assemble::{self, MonitoredFiles};
use super::catalog::{self, TemplateKv};
use super::scrape::{self, ExpandError, JobTargets, ScrapeConfig};
use super::{alerts, remote_write};
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn configs(yaml: &str) -> Vec<ScrapeConfig> {
    scrape::parse("api", scrape::SCRAPE_FILE, yaml).unwrap()
}

fn ports(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn targets(ports: &[(&str, u16)], workers: &[&str]) -> JobTargets {
    JobTargets {
        ports: ports.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        active_workers: workers.iter().map(|w| w.to_string()).collect(),
    }
}

const API: &str = "\
- job_name: maand:job
  metrics_path: /metrics
  static_configs:
    - targets: [maand:port/api_metrics_port, 127.0.0.9:9100]
      labels:
        maand_job: maand:job
";

#[test]
fn expansion_fills_every_active_worker_and_resolves_the_job_name() {
    let expanded = scrape::expand(
        "api",
        &configs(API),
        &targets(&[("api_metrics_port", 8001)], &["127.0.0.1", "127.0.0.2"]),
    )
    .unwrap();
    assert_eq!(
        serde_json::Value::Array(expanded.into_iter().map(Into::into).collect()),
        json!([{
            "job_name": "api",
            "metrics_path": "/metrics",
            "static_configs": [{
                "targets": ["127.0.0.1:8001", "127.0.0.2:8001", "127.0.0.9:9100"],
                "labels": {"maand_job": "api"}
            }]
        }])
    );
}

#[test]
fn a_pinned_worker_and_the_implicit_port_resolve() {
    let yaml =
        "- job_name: x\n  static_configs:\n    - targets: [maand:port/_implicit/127.0.0.2]\n";
    let expanded = scrape::expand(
        "api",
        &configs(yaml),
        &targets(
            &[("api_metrics_port", 7000), ("http", 80)],
            &["127.0.0.1", "127.0.0.2"],
        ),
    )
    .unwrap();
    assert_eq!(
        expanded[0]["static_configs"][0]["targets"],
        json!(["127.0.0.2:7000"])
    );
}

#[test]
fn no_active_allocation_means_no_targets_and_the_catalog_skips_the_job() {
    let catalog = vec![
        (
            "api".to_string(),
            configs(API.replace(", 127.0.0.9:9100", "").as_str()),
        ),
        (
            "static".to_string(),
            configs("- job_name: s\n  static_configs:\n    - targets: [127.0.0.5:1]\n"),
        ),
    ];
    let mut all = BTreeMap::new();
    all.insert("api".to_string(), targets(&[("api_metrics_port", 1)], &[]));
    assert_eq!(
        scrape::expand("api", &catalog[0].1, &all["api"]),
        Err(ExpandError::NoTargets { job: "api".into() })
    );
    let expansion = scrape::expand_catalog(&catalog, &all).unwrap();
    assert_eq!(expansion.skipped, ["api"]);
    assert_eq!(expansion.configs.len(), 1);
    assert_eq!(expansion.configs[0]["job_name"], "s");
}

#[test]
fn the_implicit_port_prefers_the_job_port_then_metrics_port_then_the_only_suffix() {
    let pick = |names: &[&str]| scrape::implicit_port("api", &ports(names));
    assert_eq!(
        pick(&["metrics_port", "api_metrics_port"]).unwrap(),
        "api_metrics_port"
    );
    assert_eq!(
        pick(&["metrics_port", "x_metrics_port"]).unwrap(),
        "metrics_port"
    );
    assert_eq!(pick(&["x_metrics_port", "http"]).unwrap(), "x_metrics_port");
    assert!(pick(&["a_metrics_port", "b_metrics_port"])
        .unwrap_err()
        .contains("ambiguous"));
    assert!(pick(&["http"]).unwrap_err().contains("declare"));
}

#[test]
fn validation_names_the_yaml_path_of_each_problem() {
    let yaml = "\
- job_name: a
  kubernetes_sd_configs: []
  static_configs:
    - targets: [maand:port/nope]
- static_configs: []
";
    let problems = scrape::validate(
        "api",
        scrape::SCRAPE_FILE,
        &configs(yaml),
        &ports(&["http"]),
    );
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.yaml_path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0].0, "[0].kubernetes_sd_configs");
    assert_eq!(found[1].0, "[0].static_configs[0].targets[0]");
    assert!(found[1].1.contains("\"nope\" is not declared"));
    assert_eq!(found[2].0, "[1].job_name");
    assert_eq!(found[3].0, "[1].static_configs");
    assert_eq!(
        problems[1].to_string(),
        "workspace/jobs/api/_prometheus/scrape.yaml at [0].static_configs[0].targets[0]: port \"nope\" is not declared in manifest.json resources.ports; declare it or fix the name"
    );
}

#[test]
fn malformed_scrape_files_are_refused_with_the_reason() {
    for (text, expected) in [
        ("", "empty"),
        ("- job_name: [", "not valid YAML"),
        ("job_name: a", "root must be a YAML list"),
        ("[]", "list is empty"),
        ("- 3", "must be a mapping"),
    ] {
        let problem = scrape::parse("api", scrape::SCRAPE_FILE, text).unwrap_err();
        assert!(problem.message.contains(expected), "{text:?}: {problem}");
    }
}

#[test]
fn the_yaml_fragment_is_indented_under_scrape_configs() {
    let fragment = scrape::yaml_fragment(&configs(
        "- job_name: a\n  static_configs:\n    - targets: [h:1]\n",
    ));
    assert_eq!(
        fragment,
        "\n  - job_name: a\n    static_configs:\n    - targets:\n      - h:1"
    );
    assert_eq!(scrape::yaml_fragment(&[]), "");
}

fn arb_ip() -> impl Strategy<Value = String> {
    (1u8..=254, 1u8..=254).prop_map(|(a, b)| format!("127.{a}.0.{b}"))
}

proptest! {
    /// Every placeholder target becomes one `<worker>:<port>` per active worker, literal
    /// targets stay, and no placeholder survives expansion.
    #[test]
    fn expansion_produces_one_target_per_active_worker(
        workers in proptest::collection::btree_set(arb_ip(), 1..6),
        port in 1u16..,
        literals in proptest::collection::vec("[a-z]{1,8}:[0-9]{1,4}", 0..3),
        placeholders in 1usize..3,
    ) {
        let workers: Vec<String> = workers.into_iter().collect();
        let mut raw: Vec<serde_json::Value> = (0..placeholders).map(|_| json!("maand:port/p")).collect();
        raw.extend(literals.iter().map(|l| json!(l)));
        let config: ScrapeConfig = serde_json::from_value(json!({
            "job_name": "maand:job",
            "static_configs": [{"targets": raw, "labels": {"j": "maand:job"}}]
        })).unwrap();
        let t = JobTargets { ports: BTreeMap::from([("p".to_string(), port)]), active_workers: workers.clone() };
        let expanded = scrape::expand("job", &[config], &t).unwrap();
        let out: Vec<String> = expanded[0]["static_configs"][0]["targets"]
            .as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        prop_assert_eq!(out.len(), placeholders * workers.len() + literals.len());
        for w in &workers {
            let wanted = format!("{w}:{port}");
            prop_assert_eq!(out.iter().filter(|t| **t == wanted).count(), placeholders);
        }
        prop_assert!(out.iter().all(|t| !t.starts_with("maand:")));
        prop_assert_eq!(&expanded[0]["job_name"], "job");
        prop_assert_eq!(&expanded[0]["static_configs"][0]["labels"]["j"], "job");
    }

    /// Validation accepts exactly the placeholders whose port is declared.
    #[test]
    fn validation_accepts_declared_ports_only(declared in proptest::collection::btree_set("[a-z]{1,6}", 0..4), used in "[a-z]{1,6}") {
        let yaml = format!("- job_name: a\n  static_configs:\n    - targets: [maand:port/{used}]\n");
        let problems = scrape::validate("api", scrape::SCRAPE_FILE, &configs(&yaml), &declared);
        prop_assert_eq!(problems.is_empty(), declared.contains(&used));
    }
}

const RULES: &str = "\
groups:
  - name: api
    rules:
      - alert: ApiDown
        expr: up{job=\"api\"} == 0
        for: 1m
        annotations:
          summary: \"{{ $labels.instance }} down\"
          runbook: api_down
      - record: api:up:sum
        expr: sum(up{job=\"api\"})
";

#[test]
fn rule_files_need_expr_one_kind_and_known_runbooks() {
    let runbooks = ports(&["api_down"]);
    let ok = alerts::validate("api", "_prometheus/alerts/a.yaml", RULES, &runbooks).unwrap();
    assert_eq!(ok.alerts, ["ApiDown"]);
    let bad = "groups:\n  - name: g\n    rules:\n      - alert: A\n        record: b\n        expr: up\n      - alert: B\n      - alert: C\n        expr: up\n        annotations: {runbook: missing}\n";
    let problems =
        alerts::validate("api", "_prometheus/alerts/a.yaml", bad, &runbooks).unwrap_err();
    let paths: Vec<&str> = problems.iter().map(|p| p.yaml_path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".groups[0].rules[0]",
            ".groups[0].rules[1].expr",
            ".groups[0].rules[2].annotations.runbook"
        ]
    );
    assert!(problems[2]
        .message
        .contains("_prometheus/runbooks/missing.md"));
    assert!(alerts::validate("api", "f", "groups: 3", &runbooks).is_err());
    assert!(
        alerts::validate("api", "f", ": [", &runbooks).unwrap_err()[0]
            .message
            .contains("YAML")
    );
}

#[test]
fn runbook_annotations_become_urls_unless_one_is_set() {
    let out =
        alerts::with_runbook_urls(RULES, "api", "http://127.0.0.1:9090/consoles/runbooks").unwrap();
    assert!(
        out.contains("runbook_url: http://127.0.0.1:9090/consoles/runbooks/api/api_down.html"),
        "{out}"
    );
    assert!(!out.contains("runbook:"));
    let own = RULES.replace(
        "runbook: api_down",
        "runbook: api_down\n          runbook_url: https://wiki/x",
    );
    let out = alerts::with_runbook_urls(&own, "api", "http://h").unwrap();
    assert!(
        out.contains("runbook_url: https://wiki/x") && !out.contains("runbook:"),
        "{out}"
    );
    let plain = "groups: []\n";
    assert_eq!(
        alerts::with_runbook_urls(plain, "api", "http://h").unwrap(),
        plain
    );
}

/// A workspace on disk, loaded the way build loads it.
struct Ws {
    dir: tempfile::TempDir,
}

impl Ws {
    fn new() -> Ws {
        let ws = Ws {
            dir: tempfile::tempdir().unwrap(),
        };
        ws.write("workers.json", r#"[{"host": "127.0.0.1"}]"#);
        ws
    }
    fn write(&self, path: &str, text: &str) -> &Ws {
        let path = self.dir.path().join("workspace").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }
    fn job(&self, name: &str, manifest: &str) -> &Ws {
        self.write(&format!("jobs/{name}/manifest.json"), manifest)
            .write(&format!("jobs/{name}/Makefile"), "start:\n\ttrue\n")
    }
    fn load(&self) -> crate::workspace::Workspace {
        crate::workspace::load(&self.dir.path().join("workspace"), "").unwrap()
    }
}

struct NoKv;
impl TemplateKv for NoKv {
    fn plain(&self, namespace: &str) -> BTreeMap<String, String> {
        if namespace == "vars/job/api" {
            BTreeMap::from([("path".to_string(), "/m".to_string())])
        } else {
            BTreeMap::new()
        }
    }
    fn secrets(&self, _: &str) -> BTreeMap<String, Result<String, String>> {
        BTreeMap::new()
    }
}

const API_MANIFEST: &str = r#"{"resources": {"ports": {"api_metrics_port": {}}}}"#;

#[test]
fn without_a_server_job_nothing_is_checked_and_the_aggregates_are_empty() {
    let ws = Ws::new();
    ws.job("api", API_MANIFEST)
        .write("jobs/api/_prometheus/scrape.yaml", "not: [valid")
        .write("jobs/api/_prometheus/scrape.yaml.tpl", "");
    let ws = ws.load();
    assert!(catalog::validate(&ws).is_empty());
    let kv = catalog::decide_kv(&ws, &BTreeSet::new(), &NoKv).unwrap();
    assert_eq!(
        kv[super::KV_NAMESPACE],
        BTreeMap::from([
            ("scrape_configs".to_string(), "[]".to_string()),
            ("scrape_jobs".to_string(), String::new()),
            ("scrape_jobs_length".to_string(), "0".to_string()),
        ])
    );
}

#[test]
fn the_aggregate_holds_jobs_with_allocations_or_only_literal_targets() {
    let ws = Ws::new();
    ws.job("prometheus", "{}")
        .write("jobs/prometheus/prometheus.yml.tpl", "scrape_configs:\n")
        .job("api", API_MANIFEST)
        .write(
            "jobs/api/_prometheus/scrape.yaml.tpl",
            "- job_name: {{ job }}\n  metrics_path: {{ get(ns=\"vars/job/api\", key=\"path\") }}\n  static_configs:\n    - targets: [maand:port/_implicit]\n",
        )
        .job("idle", r#"{"resources": {"ports": {"idle_metrics_port": {}}}}"#)
        .write("jobs/idle/_prometheus/scrape.yaml", "- job_name: idle\n  static_configs:\n    - targets: [maand:port/idle_metrics_port]\n")
        .job("ext", "{}")
        .write("jobs/ext/_prometheus/scrape.yaml", "- job_name: external\n  static_configs:\n    - targets: [127.0.0.7:9100]\n");
    let ws = ws.load();
    assert!(catalog::validate(&ws).is_empty());
    let kv = catalog::decide_kv(&ws, &BTreeSet::from(["api"]), &NoKv).unwrap();
    let prom = &kv[super::KV_NAMESPACE];
    assert_eq!(prom["scrape_jobs"], "api,ext");
    assert_eq!(prom["scrape_jobs_length"], "2");
    assert!(
        prom.contains_key("scrape/idle"),
        "per-job key even without allocations"
    );
    assert_eq!(
        prom["scrape/api"],
        r#"[{"job_name":"api","metrics_path":"/m","static_configs":[{"targets":["maand:port/_implicit"]}]}]"#
    );
    let aggregate: Vec<serde_json::Value> = serde_json::from_str(&prom["scrape_configs"]).unwrap();
    assert_eq!(aggregate.len(), 2);
    assert_eq!(kv["maand/job/ext"]["job_name"], "external");
}

#[test]
fn bucket_wide_duplicates_and_file_pairs_are_refused() {
    let ws = Ws::new();
    ws.job("prometheus", "{}")
        .write("jobs/prometheus/prometheus.yml", "")
        .write("jobs/prometheus/prometheus.yml.tpl", "")
        .job("a", "{}")
        .write(
            "jobs/a/_prometheus/scrape.yaml",
            "- job_name: same\n  static_configs: [{targets: [h:1]}]\n",
        )
        .write(
            "jobs/a/_prometheus/alerts/x.yaml",
            "groups: [{name: g, rules: [{alert: Dup, expr: up}]}]\n",
        )
        .job("b", "{}")
        .write(
            "jobs/b/_prometheus/scrape.yaml",
            "- job_name: same\n  static_configs: [{targets: [h:2]}]\n",
        )
        .write(
            "jobs/b/_prometheus/alerts/y.yaml",
            "groups: [{name: g, rules: [{alert: Dup, expr: up}]}]\n",
        )
        .job("c", "{}")
        .write(
            "jobs/c/_prometheus/scrape.yaml",
            "- job_name: c\n  static_configs: [{targets: [h:3]}]\n",
        )
        .write("jobs/c/_prometheus/scrape.yaml.tpl", "");
    let ws = ws.load();
    let problems: Vec<String> = catalog::validate(&ws)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("jobs/b/_prometheus/alerts/y.yaml") && problems[0].contains("\"Dup\"")
    );
    assert!(
        problems[1].contains("jobs/c/_prometheus/scrape.yaml.tpl")
            && problems[1].contains("both scrape.yaml and scrape.yaml.tpl")
    );
    assert!(
        problems[2].contains("jobs/prometheus/prometheus.yml.tpl")
            && problems[2].contains("prometheus.yml and prometheus.yml.tpl")
    );
    let err = catalog::decide_kv(&ws, &BTreeSet::new(), &NoKv).unwrap_err();
    assert!(
        err.iter().any(|p| p.job == "b"
            && p.message
                .contains("job_name \"same\" is already used by job a")),
        "{err:?}"
    );
}

fn monitored() -> MonitoredFiles {
    let file = |p: &str, t: &str| (p.to_string(), Arc::new(t.as_bytes().to_vec()));
    BTreeMap::from([(
        "api".to_string(),
        vec![
            file("_prometheus/alerts/availability.yaml", RULES),
            file("_prometheus/dashboards/.dashboardignore", "partials/**\n"),
            file(
                "_prometheus/dashboards/overview.html",
                "<h1>{{ \"x\" }}</h1>",
            ),
            file("_prometheus/dashboards/partials/row.html", "<tr/>"),
            file(
                "_prometheus/runbooks/api_down.md",
                "# Api down\n\nRun `{{ x }}` then *restart*.\n",
            ),
            file("_prometheus/scrape.yaml", API),
        ],
    )])
}

#[test]
fn assembly_lays_out_rules_consoles_and_indexes() {
    let assembly = assemble::assemble(&monitored(), "http://127.0.0.1:9090").unwrap();
    let paths: Vec<&str> = assembly.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "rules/api/availability.yaml",
            "consoles/dashboards/api/overview.html",
            "consoles/dashboards/api/partials/row.html",
            "consoles/runbooks/api/api_down.html",
            "rules/maand/certs.yaml",
            "consoles/runbooks/index.html",
            "consoles/runbooks/style.css",
            "consoles/dashboards/index.html",
            "consoles/dashboards/style.css",
        ]
    );
    assert_eq!(
        assembly.rule_files,
        ["rules/api/availability.yaml", "rules/maand/certs.yaml"]
    );
    let text = |path: &str| {
        String::from_utf8(
            assembly
                .files
                .iter()
                .find(|f| f.0 == path)
                .unwrap()
                .1
                .clone(),
        )
        .unwrap()
    };
    let runbook = text("consoles/runbooks/api/api_down.html");
    assert!(
        runbook.contains("<h1>Api down</h1>") && runbook.contains("<em>restart</em>"),
        "{runbook}"
    );
    assert!(
        !runbook.contains("{{"),
        "console pages are Go templates: {runbook}"
    );
    let index = text("consoles/dashboards/index.html");
    assert!(
        index.contains("api/overview.html") && !index.contains("partials"),
        "{index}"
    );
    assert_eq!(
        text("consoles/dashboards/api/overview.html"),
        "<h1>{{ \"x\" }}</h1>"
    );
}

fn promtool(args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_assembled_tree_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let assembly = assemble::assemble(&monitored(), "http://127.0.0.1:9090").unwrap();
    for (path, content, _) in &assembly.files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let expanded = scrape::expand(
        "api",
        &configs(API),
        &targets(&[("api_metrics_port", 8001)], &["127.0.0.1", "127.0.0.2"]),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:9090']\n{}\n\n{}",
        scrape::yaml_fragment(&expanded),
        assemble::rule_files_yaml(&assembly.rule_files)
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    promtool(&["check", "config", "prometheus.yml"], dir.path());
    let mut rules = vec!["check", "rules"];
    rules.extend(assembly.rule_files.iter().map(String::as_str));
    promtool(&rules, dir.path());
}

#[test]
fn cert_gauges_encode_as_a_snappy_write_request() {
    use crate::catalog::tables::{CertRow, CertScope};
    use prost::Message;
    let row = CertRow {
        scope: CertScope::Job,
        job: Some("api".into()),
        worker: Some("127.0.0.1".into()),
        cert: "server".into(),
        common_name: Some("api".into()),
        not_after: Some("2030-01-01T00:00:00Z".into()),
        days_left: Some(1000),
        status: "expiring".into(),
        reason: None,
    };
    let request = remote_write::cert_series(&[row], 42);
    assert_eq!(request.timeseries.len(), 3);
    let names: Vec<&str> = request.timeseries[0]
        .labels
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "labels are sorted");
    assert_eq!(request.timeseries[0].samples[0].value, 1893456000.0);
    assert_eq!(request.timeseries[1].samples[0].value, 1.0, "expiring");
    assert_eq!(request.timeseries[2].samples[0].value, 0.0, "not expired");
    let body = remote_write::encode(&request);
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    assert_eq!(
        remote_write::WriteRequest::decode(raw.as_slice()).unwrap(),
        request
    );
}

#[test]
fn scrape_templates_read_job_level_kv_only() {
    use super::scrape_template::{render, JobKv};
    let kv = JobKv {
        namespaces: BTreeMap::from([(
            "vars/job/api".to_string(),
            BTreeMap::from([("path".to_string(), "/m".to_string())]),
        )]),
        secrets: BTreeMap::from([("token".to_string(), Ok("t0ps3cret".to_string()))]),
    };
    let out = render(
        "api",
        "1.0.0",
        "{{ job }} {{ new_version }} {{ get(ns=\"vars/job/api\", key=\"path\") }} {{ keys(ns=\"vars/job/api\") | join(sep=\",\") }} {{ get_secret(key=\"token\") | length }}",
        kv.clone(),
    )
    .unwrap();
    assert_eq!(out, "api 1.0.0 /m path 9");
    let denied = render(
        "api",
        "1",
        "{{ get(ns=\"maand/job/db\", key=\"x\") }}",
        kv.clone(),
    )
    .unwrap_err();
    assert!(
        denied.contains("not readable from a scrape template"),
        "{denied}"
    );
    let no_worker = render(
        "api",
        "1",
        "{{ get_optional(ns=\"vars/job/api\", key=\"x\") }}",
        kv.clone(),
    );
    assert!(no_worker.is_err(), "get_optional is a deploy-time function");
    let leaked = render("api", "1", "{{ get_secret(key=\"token\") | int }}", kv).unwrap_err();
    assert!(!leaked.contains("t0ps3cret"), "{leaked}");
}

//! Black-box tests of `maand template render` (a job's templates for one allocation, from the
//! catalog, recording nothing) and of how deploy staging reports a template that fails on
//! several allocations. The workers in `workers.json` are never contacted: rendering and
//! `deploy --dry-run` staging happen on this host.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

fn maand(bucket: &Path) -> Command {
    let mut cmd = Command::cargo_bin("maand").unwrap();
    cmd.current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG")
        .env_remove("MAAND_ECHO");
    cmd
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn journal_head(bucket: &Path) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(bucket.join("data/maand.db"))
        .arg("SELECT max(seq) || ':' || (SELECT hex(hash) FROM journal ORDER BY seq DESC LIMIT 1) FROM journal")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stdout_of(bucket: &Path, args: &[&str]) -> String {
    let out = maand(bucket).args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn stderr_of_failure(bucket: &Path, args: &[&str]) -> String {
    let out = maand(bucket).args(args).assert().failure();
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

/// A built bucket: three `web` workers (in workers.json order 127.0.0.3, .1, .2) and job
/// `web` with two templates, a plain file and a job variable.
fn built_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maand(root).arg("init").assert().success();
    write(
        root,
        "workspace/workers.json",
        r#"[{"host": "127.0.0.3", "labels": ["web"]}, {"host": "127.0.0.1", "labels": ["web"]},
            {"host": "127.0.0.2", "labels": ["web"]}]"#,
    );
    write(
        root,
        "workspace/jobs/web/manifest.json",
        r#"{"version": "1.4.0", "selectors": ["web"], "resources": {"ports": {"web_http": {}}}}"#,
    );
    write(root, "workspace/jobs/web/Makefile", "start:\n\t@true\n");
    write(
        root,
        "workspace/jobs/web/vars.toml",
        "greeting = \"hello\"\n",
    );
    write(
        root,
        "workspace/jobs/web/conf/app.yml.tpl",
        "greeting: {{ get(ns=\"vars/job/web\", key=\"greeting\") }}\nworker: {{ worker_ip }}\nport: {{ get(ns=\"maand/bucket\", key=\"web_http\") }}\nversion: {{ new_version }}\n",
    );
    write(
        root,
        "workspace/jobs/web/motd.tpl",
        "peers {{ get(ns=\"maand/job/web/worker/\" ~ worker_ip, key=\"peer_workers\") }}",
    );
    maand(root).arg("build").assert().success();
    dir
}

#[test]
fn one_file_renders_exactly_for_the_chosen_worker() {
    let dir = built_bucket();
    let out = stdout_of(
        dir.path(),
        &[
            "template",
            "render",
            "web",
            "conf/app.yml.tpl",
            "--worker",
            "127.0.0.2",
        ],
    );
    assert_eq!(
        out,
        "greeting: hello\nworker: 127.0.0.2\nport: 30000\nversion: 1.4.0\n"
    );
    // The rendered name stands for its template, and no header is printed for one file.
    let out = stdout_of(
        dir.path(),
        &["template", "render", "web", "motd", "-w", "127.0.0.1"],
    );
    assert_eq!(out, "peers 127.0.0.3,127.0.0.2");
}

#[test]
fn every_template_is_printed_after_a_header_naming_it() {
    let dir = built_bucket();
    let out = stdout_of(
        dir.path(),
        &["template", "render", "web", "--worker", "127.0.0.1"],
    );
    assert_eq!(
        out,
        "# conf/app.yml.tpl\ngreeting: hello\nworker: 127.0.0.1\nport: 30000\nversion: 1.4.0\n\
         # motd.tpl\npeers 127.0.0.3,127.0.0.2\n"
    );
}

#[test]
fn without_worker_the_first_worker_in_workers_json_is_used_and_stderr_says_so() {
    let dir = built_bucket();
    let out = maand(dir.path())
        .args(["template", "render", "web", "conf/app.yml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("worker: 127.0.0.3\n"));
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("job web has 3 allocations (127.0.0.3, 127.0.0.1, 127.0.0.2); rendering for 127.0.0.3, choose another with --worker"),
        "{stderr}"
    );
}

#[test]
fn unknown_job_worker_and_file_are_errors_naming_what_exists() {
    let dir = built_bucket();
    let stderr = stderr_of_failure(dir.path(), &["template", "render", "api"]);
    assert!(
        stderr.contains("job api is not in the catalog (jobs: web)"),
        "{stderr}"
    );
    let stderr = stderr_of_failure(
        dir.path(),
        &["template", "render", "web", "--worker", "127.0.0.9"],
    );
    assert!(
        stderr.contains(
            "job web has no allocation on worker 127.0.0.9 (it has: 127.0.0.3, 127.0.0.1, 127.0.0.2)"
        ),
        "{stderr}"
    );
    let stderr = stderr_of_failure(dir.path(), &["template", "render", "web", "nope.tpl"]);
    assert!(
        stderr.contains("job web has no template nope.tpl (templates: conf/app.yml.tpl, motd.tpl)"),
        "{stderr}"
    );
    let stderr = stderr_of_failure(dir.path(), &["template", "render", "web", "Makefile"]);
    assert!(
        stderr.contains("Makefile of job web is not a template"),
        "{stderr}"
    );
}

#[test]
fn a_template_that_fails_names_the_file_and_prints_nothing() {
    let dir = built_bucket();
    write(
        dir.path(),
        "workspace/jobs/web/broken.tpl",
        "{{ get(ns=\"vars/job/web\", key=\"missing\") }}",
    );
    maand(dir.path()).arg("build").assert().success();
    let out = maand(dir.path())
        .args(["template", "render", "web", "-w", "127.0.0.1"])
        .assert()
        .failure()
        .stdout("");
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("a template of job web on worker 127.0.0.1 failed to render"),
        "{stderr}"
    );
    assert!(stderr.contains("template broken.tpl"), "{stderr}");
    assert!(stderr.contains("key `missing`"), "{stderr}");
}

#[test]
fn rendering_records_nothing() {
    let dir = built_bucket();
    let head = journal_head(dir.path());
    stdout_of(dir.path(), &["template", "render", "web"]);
    stderr_of_failure(
        dir.path(),
        &["template", "render", "web", "-w", "127.0.0.9"],
    );
    assert_eq!(journal_head(dir.path()), head);
    maand(dir.path())
        .args(["journal", "verify"])
        .assert()
        .success();
}

#[test]
fn a_template_error_on_three_workers_is_reported_once_listing_them() {
    let dir = built_bucket();
    write(
        dir.path(),
        "workspace/jobs/web/broken.tpl",
        "line one\n{{ get(ns=\"maand/job/web/worker/\" ~ worker_ip, key=\"nope\") }}\n",
    );
    maand(dir.path()).arg("build").assert().success();
    let stderr = stderr_of_failure(dir.path(), &["deploy", "--dry-run"]);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("broken.tpl"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("web on 127.0.0.1, 127.0.0.2, 127.0.0.3: template broken.tpl line 2:"),
        "{stderr}"
    );
    assert!(
        lines[0].contains("namespace `maand/job/web/worker/<worker>`"),
        "{stderr}"
    );
}

//! Black-box tests of `maand template convert`: a bucket written for the Go maand is
//! converted in place, `--check` and `--dry-run` write nothing, a construct that cannot be
//! converted is reported with its location and leaves its file alone, converting twice
//! changes nothing, and bad files get a clear error each. Also `maand build`'s refusal of Go
//! templates.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

fn maand(bucket: &Path) -> Command {
    let mut cmd = Command::cargo_bin("maand").unwrap();
    cmd.current_dir(bucket)
        .env_remove("MAAND_BUCKET")
        .env_remove("RUST_LOG");
    cmd
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

const API_CONFIG: &str = r#"{
  "cluster": "{{ get "vars/job/api" "cluster_name" }}",
  "worker": "{{ .WorkerIP }}",
  "peers": "{{ join .Labels "," }}"
}
"#;

const API_CONFIG_TERA: &str = r#"{
  "cluster": "{{ get(ns="vars/job/api", key="cluster_name") }}",
  "worker": "{{ worker_ip }}",
  "peers": "{{ labels | join(sep=",") }}"
}
"#;

const API_MANIFEST: &str =
    "{\n  \"version\": \"1.0\",\n  \"selectors\": [\"api\"],\n  \"deploy_parallel_count\": 2\n}\n";

/// An initialized bucket with one job `api` written for the Go maand, and a job `db` whose
/// template is already tera.
fn go_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    maand(dir.path()).arg("init").assert().success();
    write(
        dir.path(),
        "workspace/workers.json",
        r#"[{"host": "127.0.0.1", "labels": ["api", "db"]}]"#,
    );
    write(dir.path(), "workspace/jobs/api/manifest.json", API_MANIFEST);
    write(
        dir.path(),
        "workspace/jobs/api/Makefile",
        "start:\n\t@true\n",
    );
    write(
        dir.path(),
        "workspace/jobs/api/vars.toml",
        "cluster_name = \"prod\"\n",
    );
    write(dir.path(), "workspace/jobs/api/config.json.tpl", API_CONFIG);
    write(
        dir.path(),
        "workspace/jobs/api/conf/limits.tpl",
        "{{- $mb := int (get \"vars/job/api\" \"memory\") -}}\nlimit={{ div $mb 4 }}\n",
    );
    write(
        dir.path(),
        "workspace/jobs/db/manifest.json",
        "{\"version\": \"1.0\", \"selectors\": [\"db\"]}\n",
    );
    write(
        dir.path(),
        "workspace/jobs/db/Makefile",
        "start:\n\t@true\n",
    );
    write(
        dir.path(),
        "workspace/jobs/db/db.conf.tpl",
        "port = {{ worker_ip }}\n",
    );
    dir
}

#[test]
fn convert_rewrites_go_templates_and_old_manifest_keys_in_place() {
    let bucket = go_bucket();
    std::fs::set_permissions(
        bucket.path().join("workspace/jobs/api/config.json.tpl"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    maand(bucket.path())
        .args(["template", "convert"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "converted jobs/api/config.json.tpl",
        ))
        .stdout(predicate::str::contains(
            "converted 3 files, 1 already tera, 0 refused",
        ));
    let root = bucket.path();
    assert_eq!(
        read(root, "workspace/jobs/api/config.json.tpl"),
        API_CONFIG_TERA
    );
    assert_eq!(
        read(root, "workspace/jobs/api/conf/limits.tpl"),
        "{% set mb = get(ns=\"vars/job/api\", key=\"memory\") | go_int %}limit={{ go_div(a=mb, b=4) }}\n"
    );
    assert_eq!(
        read(root, "workspace/jobs/api/manifest.json"),
        API_MANIFEST.replace("deploy_parallel_count", "max_concurrent_starts")
    );
    assert_eq!(
        read(root, "workspace/jobs/db/db.conf.tpl"),
        "port = {{ worker_ip }}\n"
    );
    let mode = std::fs::metadata(root.join("workspace/jobs/api/config.json.tpl"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
}

#[test]
fn converting_twice_changes_nothing() {
    let bucket = go_bucket();
    maand(bucket.path())
        .args(["template", "convert"])
        .assert()
        .success();
    let first = read(bucket.path(), "workspace/jobs/api/config.json.tpl");
    maand(bucket.path())
        .args(["template", "convert"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "converted 0 files, 3 already tera, 0 refused",
        ));
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/config.json.tpl"),
        first
    );
    maand(bucket.path())
        .args(["template", "convert", "--check"])
        .assert()
        .success();
}

#[test]
fn check_lists_files_still_in_go_syntax_and_writes_nothing() {
    let bucket = go_bucket();
    maand(bucket.path())
        .args(["template", "convert", "--check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "jobs/api/config.json.tpl: needs `maand template convert`",
        ))
        .stdout(predicate::str::contains("jobs/api/manifest.json: needs"))
        .stdout(predicate::str::contains("db.conf.tpl").not());
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/config.json.tpl"),
        API_CONFIG
    );
}

#[test]
fn dry_run_prints_a_unified_diff_and_writes_nothing() {
    let bucket = go_bucket();
    let out = maand(bucket.path())
        .args(["template", "convert", "--dry-run", "api"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/config.json.tpl"),
        API_CONFIG
    );
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/manifest.json"),
        API_MANIFEST
    );
}

#[test]
fn a_construct_that_cannot_be_converted_is_reported_with_its_location() {
    let bucket = go_bucket();
    let refused = "ok\n  {{ .BucketID }}\n";
    write(bucket.path(), "workspace/jobs/api/refused.tpl", refused);
    maand(bucket.path())
        .args(["template", "convert"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: jobs/api/refused.tpl:2:6: .BucketID: maand-rs templates have no BucketID",
        ))
        .stdout(predicate::str::contains(
            "converted 3 files, 1 already tera, 1 refused",
        ));
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/refused.tpl"),
        refused
    );
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/config.json.tpl"),
        API_CONFIG_TERA
    );
}

#[test]
fn a_file_neither_go_nor_tera_is_one_error_with_its_line() {
    let bucket = go_bucket();
    write(
        bucket.path(),
        "workspace/jobs/db/broken.tpl",
        "a\nb {{ range $x := .Labels }}\n",
    );
    maand(bucket.path())
        .args(["template", "convert", "db"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: jobs/db/broken.tpl:2:6: range",
        ))
        .stderr(predicate::str::contains("not valid tera either"));
}

#[test]
fn an_unknown_job_is_an_error_naming_it() {
    let bucket = go_bucket();
    maand(bucket.path())
        .args(["template", "convert", "api", "nosuch"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown job `nosuch`"));
    assert_eq!(
        read(bucket.path(), "workspace/jobs/api/config.json.tpl"),
        API_CONFIG
    );
}

#[test]
fn binary_files_and_symlinks_out_of_the_job_are_clear_errors() {
    let bucket = go_bucket();
    let root = bucket.path();
    std::fs::write(root.join("workspace/jobs/db/blob.tpl"), b"\x00\x01{{ x }}").unwrap();
    write(root, "outside.tpl", "{{ .Job }}");
    std::os::unix::fs::symlink(
        root.join("outside.tpl"),
        root.join("workspace/jobs/db/link.tpl"),
    )
    .unwrap();
    maand(root)
        .args(["template", "convert", "db"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("jobs/db/blob.tpl: a binary file"))
        .stderr(predicate::str::contains(
            "jobs/db/link.tpl: a symlink that points outside the job directory",
        ));
    assert_eq!(read(root, "outside.tpl"), "{{ .Job }}");
}

#[test]
fn both_spellings_of_a_manifest_setting_are_refused() {
    let bucket = go_bucket();
    let manifest = "{\"deploy_parallel_count\": 1, \"max_concurrent_starts\": 2}";
    write(bucket.path(), "workspace/jobs/db/manifest.json", manifest);
    maand(bucket.path())
        .args(["template", "convert", "db"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "jobs/db/manifest.json: has both `deploy_parallel_count`",
        ));
    assert_eq!(
        read(bucket.path(), "workspace/jobs/db/manifest.json"),
        manifest
    );
}

#[test]
fn build_refuses_go_templates_and_says_to_convert() {
    let bucket = go_bucket();
    write(
        bucket.path(),
        "workspace/jobs/api/manifest.json",
        "{\"version\": \"1.0\", \"selectors\": [\"api\"]}\n",
    );
    maand(bucket.path())
        .arg("build")
        .assert()
        .failure()
        .stderr(predicate::str::contains("jobs/api/config.json.tpl"))
        .stderr(predicate::str::contains("run `maand template convert`"));
}

//! Specification tests of [`load`] over real workspace directories in temp dirs.

use super::*;
use std::os::unix::fs::symlink;

/// A bucket directory with a `workspace/` holding an empty `workers.json`.
struct Bucket {
    dir: tempfile::TempDir,
}

impl Bucket {
    fn new() -> Self {
        let bucket = Bucket {
            dir: tempfile::tempdir().unwrap(),
        };
        bucket.write("workers.json", "[]");
        bucket
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// Writes `content` at `relative` inside the workspace, creating directories.
    fn write(&self, relative: &str, content: &str) -> &Self {
        let path = self.workspace().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    /// A job with `manifest` and a Makefile.
    fn job(&self, name: &str, manifest: &str) -> &Self {
        self.write(&format!("jobs/{name}/manifest.json"), manifest)
            .write(&format!("jobs/{name}/Makefile"), "start:\n\ttrue\n")
    }

    /// A job with `manifest`, a Makefile and a Python script per command name.
    fn job_with_scripts(&self, name: &str, manifest: &str, commands: &[&str]) -> &Self {
        self.job(name, manifest);
        for command in commands {
            self.write(
                &format!("jobs/{name}/_modules/{command}.py"),
                "print('ok')\n",
            );
        }
        self
    }

    fn load(&self) -> Result<Workspace, WorkspaceErrors> {
        load(&self.workspace(), "")
    }

    fn loaded(&self) -> Workspace {
        match self.load() {
            Ok(workspace) => workspace,
            Err(errors) => panic!("expected a valid workspace, got:\n{errors}"),
        }
    }

    fn errors(&self) -> WorkspaceErrors {
        match self.load() {
            Ok(_) => panic!("expected errors, the workspace loaded"),
            Err(errors) => errors,
        }
    }

    fn single_error(&self) -> WorkspaceError {
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "expected one error, got:\n{errors}");
        errors.into_iter().next().unwrap()
    }
}

fn assert_error(
    error: &WorkspaceError,
    file: &str,
    location: Option<&str>,
    kind: ErrorKind,
    message_parts: &[&str],
) {
    assert_eq!(error.file, PathBuf::from(file), "{error}");
    assert_eq!(error.location.as_deref(), location, "{error}");
    assert_eq!(error.kind, kind, "{error}");
    for part in message_parts {
        assert!(
            error.message.contains(part),
            "{error}\nshould mention: {part}"
        );
    }
}

fn demand(job: &str, command: &str, config: &str) -> String {
    format!(r#"{{"job": "{job}", "command": "{command}", "config": {config}}}"#)
}

// ---------------------------------------------------------------- whole workspace

#[test]
fn empty_workspace_loads_with_bucket_defaults() {
    let workspace = Bucket::new().loaded();
    assert!(workspace.workers.is_empty());
    assert!(workspace.jobs.is_empty());
    assert_eq!(workspace.bucket_conf, BucketConf::default());
    assert_eq!(workspace.disabled, Disabled::default());
    assert!(workspace.job_reservations.is_empty());
}

#[test]
fn missing_workspace_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let errors = load(&dir.path().join("workspace"), "").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors.errors()[0].message.contains("maand init"));
}

#[test]
fn missing_workers_json_is_reported() {
    let bucket = Bucket::new();
    fs::remove_file(bucket.workspace().join("workers.json")).unwrap();
    let error = bucket.single_error();
    assert_error(
        &error,
        "workspace/workers.json",
        None,
        ErrorKind::InvalidWorkerJson,
        &["missing", "[]"],
    );
}

#[test]
fn workers_are_loaded_in_file_order() {
    let bucket = Bucket::new();
    bucket.write(
        "workers.json",
        r#"[{"host": "127.9.0.2", "labels": ["web"], "memory": "8 gb", "cpu": "4 ghz", "tags": {"zone": "a"}},
            {"host": "127.9.0.1"}]"#,
    );
    let workspace = bucket.loaded();
    let first = &workspace.workers[0];
    assert_eq!(first.host, "127.9.0.2");
    assert_eq!(first.position, 0);
    assert!(first.labels.contains("web") && first.labels.contains("worker"));
    assert_eq!((first.memory_mb, first.cpu_mhz), (Some(8192), Some(4000)));
    assert_eq!(workspace.worker("127.9.0.1").unwrap().position, 1);
}

#[test]
fn errors_display_one_per_line_sorted_by_file_then_location() {
    let bucket = Bucket::new();
    bucket.write(
        "workers.json",
        r#"[{"host": "a b"}, {"host": "127.9.0.1", "cpu": "x"}]"#,
    );
    bucket.job("api", r#"{"max_concurrent_upgrades": 0, "bogus": 1}"#);
    let text = bucket.errors().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("workspace/jobs/api/manifest.json: bogus: ErrInvalidManifest: "));
    assert!(lines[1].starts_with("workspace/jobs/api/manifest.json: max_concurrent_upgrades: "));
    assert!(lines[2].starts_with("workspace/workers.json: [0].host: ErrInvalidWorkerJSON: "));
    assert!(lines[3].starts_with("workspace/workers.json: [1].cpu: ErrInvalidWorkerJSON: "));
}

#[test]
fn five_mistakes_in_four_files_are_all_reported() {
    let bucket = Bucket::new();
    bucket
        .write(
            "workers.json",
            r#"[{"host": "127.9.0.1", "memory": "4 gigs"}]"#,
        )
        .write("bucket.conf", "port_min = 40000\nport_max = 30000\n")
        .write("disabled.json", r#"{"workers": ["127.9.0.9"]}"#)
        .job(
            "api",
            r#"{"version": "unknown", "resources": {"ports": {"HTTP": {}}}}"#,
        );
    let errors = bucket.errors();
    let found: Vec<(String, Option<String>, ErrorKind)> = errors
        .errors()
        .iter()
        .map(|e| (e.file.display().to_string(), e.location.clone(), e.kind))
        .collect();
    let expected = [
        (
            "workspace/bucket.conf",
            Some("port_max"),
            ErrorKind::InvalidPortRange,
        ),
        (
            "workspace/disabled.json",
            Some("workers[0]"),
            ErrorKind::InvalidDisabledJson,
        ),
        (
            "workspace/jobs/api/manifest.json",
            Some("resources.ports.HTTP"),
            ErrorKind::PortKeyFormat,
        ),
        (
            "workspace/jobs/api/manifest.json",
            Some("version"),
            ErrorKind::InvalidJobVersion,
        ),
        (
            "workspace/workers.json",
            Some("[0].memory"),
            ErrorKind::InvalidWorkerJson,
        ),
    ]
    .map(|(f, l, k)| (f.to_string(), l.map(str::to_string), k));
    assert_eq!(found, expected, "{errors}");
}

// ---------------------------------------------------------------- hostile inputs

#[test]
fn host_with_shell_command_is_rejected_naming_file_field_and_fix() {
    let bucket = Bucket::new();
    bucket.write("workers.json", r#"[{"host": "127.9.0.1;rm -rf /"}]"#);
    assert_error(
        &bucket.single_error(),
        "workspace/workers.json",
        Some("[0].host"),
        ErrorKind::InvalidWorkerJson,
        &["127.9.0.1;rm -rf /", "use an IPv4 or IPv6 address"],
    );
}

#[test]
fn label_with_command_substitution_is_rejected_naming_file_field_and_fix() {
    let bucket = Bucket::new();
    bucket.write(
        "workers.json",
        r#"[{"host": "127.9.0.1", "labels": ["$(reboot)"]}]"#,
    );
    assert_error(
        &bucket.single_error(),
        "workspace/workers.json",
        Some("[0].labels[0]"),
        ErrorKind::InvalidWorkerJson,
        &["$(reboot)", "use lowercase letters"],
    );
}

#[test]
fn port_above_65535_is_rejected_naming_file_field_and_fix() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"resources": {"ports": {"http_port": 70000}}}"#);
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("resources.ports.http_port"),
        ErrorKind::InvalidManifestPort,
        &["70000", "from 1 to 65535", "{}"],
    );
}

#[test]
fn symlink_to_etc_passwd_is_rejected_naming_link_target_and_fix() {
    let bucket = Bucket::new();
    bucket.job("api", "{}");
    symlink("/etc/passwd", bucket.workspace().join("jobs/api/passwd")).unwrap();
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/passwd",
        None,
        ErrorKind::InvalidJobFile,
        &[
            "/etc/passwd",
            "outside the job directory",
            "copy the file into the job",
        ],
    );
}

#[test]
fn parent_directory_job_names_are_rejected_wherever_jobs_are_named() {
    let bucket = Bucket::new();
    bucket
        .write("workers.json", r#"[{"host": "127.9.0.1"}]"#)
        .write("disabled.json", r#"{"jobs": {"../etc": {}}}"#)
        .write("bucket.jobs.conf", "[\"../etc\"]\nmemory = \"1 gb\"\n")
        .job_with_scripts(
            "api",
            &format!(
                r#"{{"version": "1", "commands": {{"command_a": {{"executed_on": ["cli"], "demands": {}}}}}}}"#,
                demand("../etc", "command_x", "{}")
            ),
            &["command_a"],
        );
    let errors = bucket.errors();
    let found: Vec<(String, Option<String>)> = errors
        .errors()
        .iter()
        .map(|e| (e.file.display().to_string(), e.location.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("workspace/bucket.jobs.conf", Some("../etc")),
            ("workspace/disabled.json", Some("jobs.../etc")),
            (
                "workspace/jobs/api/manifest.json",
                Some("commands.command_a.demands.job")
            ),
        ]
        .map(|(f, l)| (f.to_string(), l.map(str::to_string))),
        "{errors}"
    );
    for error in errors.errors() {
        assert!(
            error.message.contains("\"../etc\" is not a valid job name"),
            "{error}"
        );
    }
}

#[test]
fn job_directory_named_data_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("data", "{}");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/data",
        None,
        ErrorKind::InvalidJob,
        &["reserved", "rename"],
    );
}

#[test]
fn job_directory_with_unsafe_name_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("My Job", "{}");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/My Job",
        None,
        ErrorKind::InvalidJob,
        &["not a valid job name", "rename the directory"],
    );
}

#[test]
fn symlinked_job_directory_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("api", "{}");
    symlink(
        bucket.workspace().join("jobs/api"),
        bucket.workspace().join("jobs/web"),
    )
    .unwrap();
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/web",
        None,
        ErrorKind::InvalidJob,
        &["symlink"],
    );
}

#[test]
fn plain_files_next_to_job_directories_are_ignored() {
    let bucket = Bucket::new();
    bucket.job("api", "{}").write("jobs/README.md", "notes");
    assert_eq!(bucket.loaded().jobs.len(), 1);
}

// ---------------------------------------------------------------- manifest defaults

#[test]
fn empty_manifest_gets_documented_defaults() {
    let bucket = Bucket::new();
    bucket.job("prometheus", "{}");
    let workspace = bucket.loaded();
    let manifest = &workspace.jobs["prometheus"].manifest;
    assert_eq!(manifest.version, semver::Version::new(0, 0, 0));
    assert!(!manifest.version_declared);
    assert_eq!(
        manifest.selectors,
        BTreeSet::from(["prometheus".to_string()])
    );
    assert_eq!(manifest.max_concurrent_upgrades, 1);
    assert_eq!(manifest.max_concurrent_starts, 0);
    assert_eq!(manifest.min_allocations_count, 0);
    assert_eq!(manifest.restart_policy, RestartPolicy::Always);
    assert!(manifest.restart_globs.is_empty());
    assert_eq!(manifest.resources, Resources::default());
    assert!(manifest.commands.is_empty());
    assert_eq!(manifest.health_check, None);
    assert!(manifest.certs.is_empty());
    assert_eq!(workspace.deployment_seq("prometheus"), Some(0));
}

#[test]
fn declared_fields_are_read() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"version": "v2.1", "selectors": ["worker", "prod"], "max_concurrent_upgrades": 2,
            "max_concurrent_starts": 3, "min_allocations_count": 2,
            "restart_policy": "reload", "restart_globs": ["Makefile", "bin/**"]}"#,
    );
    let manifest = bucket.loaded().jobs.remove("api").unwrap().manifest;
    assert_eq!(manifest.version.to_string(), "2.1.0");
    assert!(manifest.version_declared);
    assert_eq!(
        manifest.selectors,
        BTreeSet::from(["prod".to_string(), "worker".to_string()])
    );
    assert_eq!(
        (
            manifest.max_concurrent_upgrades,
            manifest.max_concurrent_starts,
            manifest.min_allocations_count
        ),
        (2, 3, 2)
    );
    assert_eq!(manifest.restart_policy, RestartPolicy::Reload);
    assert_eq!(manifest.restart_globs, ["Makefile", "bin/**"]);
}

#[test]
fn empty_selectors_fall_back_to_the_job_name() {
    let bucket = Bucket::new();
    bucket.job("cache", r#"{"selectors": []}"#);
    let workspace = bucket.loaded();
    assert_eq!(
        workspace.jobs["cache"].manifest.selectors,
        BTreeSet::from(["cache".to_string()])
    );
}

#[test]
fn selector_with_unsafe_characters_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"selectors": ["worker", "a;b"]}"#);
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("selectors[1]"));
}

#[test]
fn unknown_manifest_fields_are_named_by_json_path() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"verison": "1.0.0", "resources": {"memory": {"minimum": "1 gb"}}}"#,
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        ["resources.memory.minimum", "verison"],
        "{errors}"
    );
    assert!(
        errors.errors()[1]
            .message
            .contains("did you mean \"version\""),
        "{errors}"
    );
}

#[test]
fn manifest_syntax_error_is_reported_with_position() {
    let bucket = Bucket::new();
    bucket.job("api", "{\n  \"version\": \"1.0.0\",\n}");
    let error = bucket.single_error();
    assert_error(
        &error,
        "workspace/jobs/api/manifest.json",
        None,
        ErrorKind::InvalidManifest,
        &["line 3"],
    );
}

#[test]
fn missing_manifest_is_reported() {
    let bucket = Bucket::new();
    bucket.write("jobs/api/Makefile", "start:\n");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        None,
        ErrorKind::InvalidManifest,
        &["missing"],
    );
}

#[test]
fn zero_max_concurrent_upgrades_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"max_concurrent_upgrades": 0}"#);
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("max_concurrent_upgrades"));
    assert!(error.message.contains("at least 1"), "{error}");
}

#[test]
fn negative_counts_are_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"max_concurrent_starts": -1, "min_allocations_count": 1.5}"#,
    );
    assert_eq!(bucket.errors().len(), 2);
}

// ---------------------------------------------------------------- version

#[test]
fn invalid_version_strings_are_rejected() {
    for version in ["", "unknown", "1.2.3.4", "1.x"] {
        let bucket = Bucket::new();
        bucket.job("api", &format!(r#"{{"version": "{version}"}}"#));
        let error = bucket.single_error();
        assert_eq!(error.kind, ErrorKind::InvalidJobVersion, "{version}");
        assert_eq!(error.location.as_deref(), Some("version"));
    }
}

#[test]
fn prerelease_version_is_kept() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"version": "2.0.0-rc1"}"#);
    assert_eq!(
        bucket.loaded().jobs["api"].manifest.version.to_string(),
        "2.0.0-rc1"
    );
}

#[test]
fn numeric_version_field_is_rejected_with_a_string_example() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"version": 2}"#);
    let error = bucket.single_error();
    assert!(error.message.contains("\"1.0.0\""), "{error}");
}

// ---------------------------------------------------------------- restart policy

#[test]
fn unknown_restart_policy_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"restart_policy": "sometimes"}"#);
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("restart_policy"));
    assert!(
        error
            .message
            .contains("\"always\", \"reload\" or \"never\""),
        "{error}"
    );
}

#[test]
fn restart_globs_require_reload_policy() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"restart_globs": ["Makefile"]}"#);
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("restart_globs"));
    assert!(error.message.contains("\"reload\""), "{error}");
}

#[test]
fn malformed_restart_glob_is_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"restart_policy": "reload", "restart_globs": ["conf/[a-", "/abs", "../up"]}"#,
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        ["restart_globs[0]", "restart_globs[1]", "restart_globs[2]"]
    );
}

#[test]
fn restart_glob_set_matches_within_and_across_directories() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"restart_policy": "reload", "restart_globs": ["*.yml", "bin/**"]}"#,
    );
    let set = bucket.loaded().jobs["api"]
        .manifest
        .restart_glob_set()
        .unwrap();
    assert!(set.is_match("docker-compose.yml"));
    assert!(!set.is_match("conf/app.yml"));
    assert!(set.is_match("bin/tools/run"));
}

// ---------------------------------------------------------------- resources

#[test]
fn resource_bounds_are_parsed_and_max_defaults_to_min() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"resources": {"memory": {"min": "256 mb", "max": "1 gb"}, "cpu": {"min": "500 mhz"}}}"#,
    );
    let resources = bucket.loaded().jobs["api"].manifest.resources.clone();
    assert_eq!(
        resources.memory_mb,
        Bounds {
            min: 256,
            max: 1024
        }
    );
    assert_eq!(resources.cpu_mhz, Bounds { min: 500, max: 500 });
}

#[test]
fn resource_min_above_max_is_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"resources": {"memory": {"min": "2 gb", "max": "1 gb"}}}"#,
    );
    let error = bucket.single_error();
    assert_error(
        &error,
        "workspace/jobs/api/manifest.json",
        Some("resources.memory"),
        ErrorKind::InvalidManifest,
        &["2048", "1024"],
    );
}

#[test]
fn resource_with_unknown_unit_lists_accepted_units() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"resources": {"cpu": {"min": "2 cores"}}}"#);
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("resources.cpu.min"));
    assert!(error.message.contains("mhz, ghz, thz"), "{error}");
}

#[test]
fn pool_and_fixed_ports_are_read() {
    let bucket = Bucket::new();
    bucket.job(
        "db",
        r#"{"resources": {"ports": {"db_port": 5432, "db_http_port": {}}}}"#,
    );
    let ports = bucket.loaded().jobs["db"].manifest.resources.ports.clone();
    assert_eq!(ports["db_port"], PortSpec::Fixed(5432));
    assert_eq!(ports["db_http_port"], PortSpec::Pool);
}

#[test]
fn port_name_must_be_lowercase_identifier() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"resources": {"ports": {"http-port": {}}}}"#);
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("resources.ports.http-port"),
        ErrorKind::PortKeyFormat,
        &["lowercase identifier"],
    );
}

#[test]
fn port_values_other_than_empty_object_or_integer_are_rejected() {
    for value in ["0", "\"5432\"", "{\"port\": 1}", "-1", "80.5", "null"] {
        let bucket = Bucket::new();
        bucket.job(
            "api",
            &format!(r#"{{"resources": {{"ports": {{"p": {value}}}}}}}"#),
        );
        let error = bucket.single_error();
        assert_eq!(error.kind, ErrorKind::InvalidManifestPort, "{value}");
    }
}

#[test]
fn same_fixed_port_in_two_jobs_is_rejected() {
    let bucket = Bucket::new();
    bucket
        .job("api", r#"{"resources": {"ports": {"api_port": 8080}}}"#)
        .job("web", r#"{"resources": {"ports": {"web_port": 8080}}}"#);
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/web/manifest.json",
        Some("resources.ports.web_port"),
        ErrorKind::PortConflict,
        &["8080", "api.api_port"],
    );
}

#[test]
fn same_fixed_port_twice_in_one_job_is_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"resources": {"ports": {"a_port": 9000, "b_port": 9000}}}"#,
    );
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("resources.ports.b_port"));
}

#[test]
fn same_port_name_in_two_jobs_is_rejected() {
    let bucket = Bucket::new();
    bucket
        .job("api", r#"{"resources": {"ports": {"http_port": {}}}}"#)
        .job("web", r#"{"resources": {"ports": {"http_port": {}}}}"#);
    let error = bucket.single_error();
    assert_eq!(error.kind, ErrorKind::PortConflict);
    assert!(error.message.contains("web_http_port"), "{error}");
}

// ---------------------------------------------------------------- commands

#[test]
fn command_is_read_with_events_and_script() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        r#"{"commands": {"command_setup": {"executed_on": ["post_build", "cli"]}}}"#,
        &[],
    );
    bucket.write("jobs/api/_modules/command_setup.ts", "console.log(1)");
    let workspace = bucket.loaded();
    let command = &workspace.jobs["api"].manifest.commands["command_setup"];
    assert_eq!(
        command.executed_on,
        BTreeSet::from([CommandEvent::PostBuild, CommandEvent::Cli])
    );
    assert_eq!(command.script.path, "_modules/command_setup.ts");
    assert_eq!(command.script.runtime, ScriptRuntime::TypeScript);
    assert_eq!(command.demand, None);
}

#[test]
fn empty_demand_means_no_demand() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        &format!(
            r#"{{"commands": {{"command_a": {{"executed_on": ["cli"], "demands": {}}}}}}}"#,
            demand("", "", "{}")
        ),
        &["command_a"],
    );
    assert_eq!(
        bucket.loaded().jobs["api"].manifest.commands["command_a"].demand,
        None
    );
}

#[test]
fn command_name_without_prefix_is_rejected() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        r#"{"commands": {"setup": {"executed_on": ["cli"]}}}"#,
        &["setup"],
    );
    let error = bucket.single_error();
    assert_eq!(error.location.as_deref(), Some("commands.setup"));
    assert!(error.message.contains("command_"), "{error}");
}

#[test]
fn unknown_or_missing_events_are_rejected() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        r#"{"commands": {"command_a": {"executed_on": ["on_boot"]}, "command_b": {"executed_on": []}, "command_c": {}}}"#,
        &["command_a", "command_b", "command_c"],
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            "commands.command_a.executed_on[0]",
            "commands.command_b.executed_on",
            "commands.command_c"
        ],
        "{errors}"
    );
    assert!(
        errors.errors()[0]
            .message
            .contains("after_allocation_stopped"),
        "{errors}"
    );
}

#[test]
fn command_without_script_is_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"commands": {"command_a": {"executed_on": ["cli"]}}}"#,
    );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("commands.command_a"),
        ErrorKind::InvalidJobCommandScript,
        &["_modules/command_a.py"],
    );
}

#[test]
fn command_with_two_scripts_is_rejected() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "api",
            r#"{"commands": {"command_a": {"executed_on": ["cli"]}}}"#,
            &["command_a"],
        )
        .write("jobs/api/_modules/command_a.js", "");
    let error = bucket.single_error();
    assert_eq!(error.kind, ErrorKind::InvalidJobCommandScript);
    assert!(error.message.contains("keep exactly one"), "{error}");
}

// ---------------------------------------------------------------- job files

#[test]
fn job_files_and_vars_are_carried() {
    let bucket = Bucket::new();
    bucket
        .job("api", "{}")
        .write(
            "jobs/api/vars.toml",
            "cluster_name = \"east\"\nreplicas = 3\n",
        )
        .write(
            "jobs/api/_prometheus/scrape.yaml",
            "- job_name: maand:job\n",
        )
        .write("jobs/api/config.json.tpl", "{}");
    let workspace = bucket.loaded();
    let job = &workspace.jobs["api"];
    let paths: Vec<&str> = job.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Makefile",
            "_prometheus/scrape.yaml",
            "config.json.tpl",
            "manifest.json",
            "vars.toml"
        ]
    );
    assert_eq!(job.vars["cluster_name"], "east");
    assert_eq!(job.vars["replicas"], "3");
    assert_eq!(job.file("Makefile").unwrap().content, b"start:\n\ttrue\n");
}

#[test]
fn invalid_vars_toml_is_reported_on_that_file() {
    let bucket = Bucket::new();
    bucket
        .job("api", "{}")
        .write("jobs/api/vars.toml", "list = [1]\n");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/vars.toml",
        Some("list"),
        ErrorKind::InvalidJobVars,
        &["strings, numbers or booleans"],
    );
}

#[test]
fn job_without_makefile_is_rejected() {
    let bucket = Bucket::new();
    bucket.write("jobs/api/manifest.json", "{}");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api",
        None,
        ErrorKind::InvalidManifest,
        &["Makefile", "job_control"],
    );
}

#[test]
fn makefile_template_satisfies_the_makefile_rule() {
    let bucket = Bucket::new();
    bucket
        .write("jobs/api/manifest.json", "{}")
        .write("jobs/api/Makefile.tpl", "start:\n");
    bucket.loaded();
}

#[test]
fn job_control_command_replaces_the_makefile() {
    let bucket = Bucket::new();
    bucket
        .write(
            "jobs/api/manifest.json",
            r#"{"commands": {"command_rollout": {"executed_on": ["job_control"]}}}"#,
        )
        .write("jobs/api/_modules/command_rollout.py", "");
    assert!(bucket.loaded().jobs["api"].manifest.has_job_control());
}

#[test]
fn job_control_command_missing_its_script_is_reported_once() {
    let bucket = Bucket::new();
    bucket.write(
        "jobs/api/manifest.json",
        r#"{"commands": {"command_rollout": {"executed_on": ["job_control"]}}}"#,
    );
    assert_eq!(
        bucket.single_error().kind,
        ErrorKind::InvalidJobCommandScript
    );
}

#[test]
fn makefile_and_template_together_are_rejected() {
    let bucket = Bucket::new();
    bucket
        .job("api", "{}")
        .write("jobs/api/Makefile.tpl", "start:\n");
    let error = bucket.single_error();
    assert!(error.message.contains("keep only one"), "{error}");
}

#[test]
fn reserved_runtime_directory_in_job_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("api", "{}").write("jobs/api/logs/old.log", "x");
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/logs",
        None,
        ErrorKind::InvalidJobFile,
        &["reserved", "remove it"],
    );
}

// ---------------------------------------------------------------- health checks

#[test]
fn health_probes_get_documented_defaults() {
    let bucket = Bucket::new();
    bucket.job(
        "db",
        r#"{"resources": {"ports": {"db_port": {}, "db_http": {}}},
            "health_check": {"checks": [
                {"type": "tcp", "port": "db_port"},
                {"type": "http", "port": "db_http"},
                {"type": "ssh", "command": "systemctl is-active db"}]}}"#,
    );
    let health = bucket.loaded().jobs["db"]
        .manifest
        .health_check
        .clone()
        .unwrap();
    assert_eq!(health.timeout_seconds, 5);
    assert_eq!(
        health.wait,
        HealthWait {
            attempts: 30,
            interval_seconds: 1
        }
    );
    assert_eq!(
        health.checks,
        [
            Probe::Tcp {
                port: "db_port".into()
            },
            Probe::Http {
                port: "db_http".into(),
                path: "/".into(),
                expect_status: 200,
                scheme: HttpScheme::Http
            },
            Probe::Ssh {
                command: "systemctl is-active db".into()
            },
        ]
    );
}

#[test]
fn health_probe_must_name_a_declared_port() {
    let bucket = Bucket::new();
    bucket.job(
        "db",
        r#"{"resources": {"ports": {"db_port": {}}}, "health_check": {"checks": [{"type": "tcp", "port": "dbport"}]}}"#,
    );
    let error = bucket.single_error();
    assert_eq!(
        error.location.as_deref(),
        Some("health_check.checks[0].port")
    );
    assert!(error.message.contains("db_port"), "{error}");
}

#[test]
fn health_probe_fields_are_checked_per_type() {
    let bucket = Bucket::new();
    bucket.job(
        "db",
        r#"{"resources": {"ports": {"p": {}}}, "health_check": {"checks": [
            {"type": "tcp", "port": "p", "path": "/x"},
            {"type": "http", "port": "p", "expect_status": 700, "scheme": "ftp"},
            {"type": "ssh", "command": "a\nb"},
            {"type": "icmp"}]}}"#,
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        [
            "health_check.checks[0].path",
            "health_check.checks[1].expect_status",
            "health_check.checks[1].scheme",
            "health_check.checks[2].command",
            "health_check.checks[3].type",
        ],
        "{errors}"
    );
}

#[test]
fn health_check_without_probes_is_rejected() {
    let bucket = Bucket::new();
    bucket.job("db", r#"{"health_check": {"checks": []}}"#);
    assert_eq!(
        bucket.single_error().location.as_deref(),
        Some("health_check.checks")
    );
}

#[test]
fn health_check_without_probes_is_valid_with_a_health_check_command() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "db",
        r#"{"health_check": {"timeout_seconds": 9, "wait": {"attempts": 3, "interval_seconds": 2}},
            "commands": {"command_health": {"executed_on": ["health_check"]}}}"#,
        &["command_health"],
    );
    let health = bucket.loaded().jobs["db"]
        .manifest
        .health_check
        .clone()
        .unwrap();
    assert!(health.checks.is_empty());
    assert_eq!(health.timeout_seconds, 9);
    assert_eq!(
        health.wait,
        HealthWait {
            attempts: 3,
            interval_seconds: 2
        }
    );
}

#[test]
fn health_check_with_neither_probes_nor_command_says_so() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "db",
        r#"{"health_check": {"timeout_seconds": 9},
            "commands": {"command_status": {"executed_on": ["cli"]}}}"#,
        &["command_status"],
    );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/db/manifest.json",
        Some("health_check.checks"),
        ErrorKind::InvalidManifest,
        &["neither probes nor a health_check command"],
    );
}

// ---------------------------------------------------------------- Go maand field names

#[test]
fn go_maand_parallel_counts_take_effect_with_one_warning_per_manifest() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"deploy_parallel_count": 2, "update_parallel_count": 3}"#,
    );
    bucket.job("db", r#"{"max_concurrent_starts": 4}"#);
    let workspace = bucket.loaded();
    let manifest = &workspace.jobs["api"].manifest;
    assert_eq!(manifest.max_concurrent_starts, 2);
    assert_eq!(manifest.max_concurrent_upgrades, 3);
    assert_eq!(workspace.jobs["db"].manifest.max_concurrent_starts, 4);
    assert_eq!(workspace.warnings.len(), 1, "{:?}", workspace.warnings);
    let warning = workspace.warnings[0].to_string();
    assert!(
        warning.starts_with("workspace/jobs/api/manifest.json: "),
        "{warning}"
    );
    for part in [
        "deploy_parallel_count (now max_concurrent_starts)",
        "update_parallel_count (now max_concurrent_upgrades)",
    ] {
        assert!(warning.contains(part), "{warning}");
    }
}

#[test]
fn an_old_parallel_count_is_validated_like_the_new_field() {
    let bucket = Bucket::new();
    bucket.job("api", r#"{"update_parallel_count": 0}"#);
    assert_eq!(
        bucket.single_error().location.as_deref(),
        Some("update_parallel_count")
    );
}

#[test]
fn both_names_of_one_setting_are_an_error_naming_both() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"max_concurrent_upgrades": 2, "update_parallel_count": 3}"#,
    );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("update_parallel_count"),
        ErrorKind::InvalidManifest,
        &[
            "max_concurrent_upgrades",
            "update_parallel_count",
            "keep only",
        ],
    );
}

#[test]
fn a_workspace_with_current_names_has_no_warnings() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"max_concurrent_upgrades": 2, "max_concurrent_starts": 1}"#,
    );
    assert!(bucket.loaded().warnings.is_empty());
}

// ---------------------------------------------------------------- certs

#[test]
fn certs_are_read_with_defaults() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"certs": {"tls": {"subject": {"common_name": "api.internal"}},
                      "client": {"one": true, "pkcs8": true, "subject": {"common_name": "cluster"}}}}"#,
    );
    let certs = bucket.loaded().jobs["api"].manifest.certs.clone();
    assert_eq!(
        certs["tls"],
        CertSpec {
            subject: crate::certs::CertSubject::with_common_name("api.internal"),
            pkcs8: false,
            one: false
        }
    );
    assert_eq!(
        certs["client"],
        CertSpec {
            subject: crate::certs::CertSubject::with_common_name("cluster"),
            pkcs8: true,
            one: true
        }
    );
}

#[test]
fn cert_subject_attributes_beyond_the_common_name_are_read() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"certs": {"tls": {"subject": {"common_name": "api.internal", "organization": "Acme",
            "organizational_unit": "Ops", "country": "DE", "province": "Berlin", "locality": "Mitte"}}}}"#,
    );
    let subject = bucket.loaded().jobs["api"].manifest.certs["tls"]
        .subject
        .clone();
    assert_eq!(
        subject,
        crate::certs::CertSubject {
            common_name: "api.internal".into(),
            organization: Some("Acme".into()),
            organizational_unit: Some("Ops".into()),
            country: Some("DE".into()),
            province: Some("Berlin".into()),
            locality: Some("Mitte".into()),
        }
    );
}

#[test]
fn a_bad_subject_attribute_is_named_by_its_path() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"certs": {"tls": {"subject": {"common_name": "a", "country": "Germany", "state": "x"}}}}"#,
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        ["certs.tls.subject.country", "certs.tls.subject.state"],
        "{errors}"
    );
    assert!(
        errors.errors()[0].message.contains("two-letter"),
        "{errors}"
    );
}

#[test]
fn cert_without_common_name_is_rejected() {
    let bucket = Bucket::new();
    bucket.job(
        "api",
        r#"{"certs": {"tls": {"subject": {"cn": "x"}}, "../k": {"subject": {"common_name": "x"}}}}"#,
    );
    let errors = bucket.errors();
    let locations: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| e.location.clone().unwrap())
        .collect();
    assert_eq!(
        locations,
        ["certs.../k", "certs.tls.subject", "certs.tls.subject.cn"],
        "{errors}"
    );
}

// ---------------------------------------------------------------- demands

fn demanding_manifest(version: Option<&str>, command: &str, demand_json: &str) -> String {
    let version = version.map_or(String::new(), |v| format!(r#""version": "{v}", "#));
    format!(
        r#"{{{version}"commands": {{"{command}": {{"executed_on": ["pre_deploy"], "demands": {demand_json}}}}}}}"#
    )
}

fn upstream_manifest(version: Option<&str>, command: &str) -> String {
    demanding_manifest(version, command, &demand("", "", "{}"))
}

#[test]
fn demand_chain_sets_deployment_sequence() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("1.0.0"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1.0.0"),
                "command_migrate",
                &demand("database", "command_schema", r#"{"min_version": "1.0.0"}"#),
            ),
            &["command_migrate"],
        )
        .job_with_scripts(
            "frontend",
            &demanding_manifest(
                Some("1.0.0"),
                "command_assets",
                &demand("api", "command_migrate", "{}"),
            ),
            &["command_assets"],
        )
        .job("standalone", "{}");
    let workspace = bucket.loaded();
    let seqs: Vec<_> = ["database", "api", "frontend", "standalone"]
        .iter()
        .map(|j| workspace.deployment_seq(j).unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 0]);
    let demand = workspace.jobs["api"].manifest.commands["command_migrate"]
        .demand
        .clone()
        .unwrap();
    assert_eq!(demand.job, "database");
    assert_eq!(demand.min_version, Some(semver::Version::new(1, 0, 0)));
    assert_eq!(demand.config["min_version"], "1.0.0");
}

#[test]
fn deployment_sequence_takes_the_longest_chain() {
    // d demands c and a; c demands b; b demands a → a=0, b=1, c=2, d=3.
    let bucket = Bucket::new();
    let two = |first: (&str, &str), second: (&str, &str)| {
        format!(
            r#"{{"version": "1", "commands": {{
                "command_x": {{"executed_on": ["cli"], "demands": {}}},
                "command_y": {{"executed_on": ["cli"], "demands": {}}}}}}}"#,
            demand(first.0, first.1, "{}"),
            demand(second.0, second.1, "{}")
        )
    };
    bucket
        .job_with_scripts(
            "a",
            &upstream_manifest(Some("1"), "command_x"),
            &["command_x"],
        )
        .job_with_scripts(
            "b",
            &demanding_manifest(Some("1"), "command_x", &demand("a", "command_x", "{}")),
            &["command_x"],
        )
        .job_with_scripts(
            "c",
            &demanding_manifest(Some("1"), "command_x", &demand("b", "command_x", "{}")),
            &["command_x"],
        )
        .job_with_scripts(
            "d",
            &two(("c", "command_x"), ("a", "command_x")),
            &["command_x", "command_y"],
        );
    let workspace = bucket.loaded();
    let seqs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|j| workspace.deployment_seq(j).unwrap())
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
}

#[test]
fn demand_on_unknown_job_is_rejected() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        &demanding_manifest(
            Some("1"),
            "command_a",
            &demand("databse", "command_schema", "{}"),
        ),
        &["command_a"],
    );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("commands.command_a.demands.job"),
        ErrorKind::InvalidJobCommandDemand,
        &["\"databse\"", "name an existing job"],
    );
}

#[test]
fn demand_on_unknown_command_lists_the_upstream_commands() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("1"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1"),
                "command_a",
                &demand("database", "command_schema2", "{}"),
            ),
            &["command_a"],
        );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("commands.command_a.demands.command"),
        ErrorKind::InvalidJobCommandDemand,
        &["command_schema2", "its commands: command_schema"],
    );
}

#[test]
fn partial_demand_pair_is_rejected() {
    for (job, command) in [("database", ""), ("", "command_schema")] {
        let bucket = Bucket::new();
        bucket
            .job_with_scripts(
                "database",
                &upstream_manifest(Some("1"), "command_schema"),
                &["command_schema"],
            )
            .job_with_scripts(
                "api",
                &demanding_manifest(Some("1"), "command_a", &demand(job, command, "{}")),
                &["command_a"],
            );
        let error = bucket.single_error();
        assert_eq!(error.kind, ErrorKind::InvalidJobCommandDemand);
        assert_eq!(
            error.location.as_deref(),
            Some("commands.command_a.demands")
        );
        assert!(error.message.contains("set together"), "{error}");
    }
}

#[test]
fn demand_on_own_job_is_rejected() {
    let bucket = Bucket::new();
    bucket.job_with_scripts(
        "api",
        &demanding_manifest(Some("1"), "command_a", &demand("api", "command_a", "{}")),
        &["command_a"],
    );
    let error = bucket.single_error();
    assert_eq!(error.kind, ErrorKind::InvalidJobCommandDemand);
    assert!(error.message.contains("its own job"), "{error}");
}

#[test]
fn both_demand_participants_must_declare_a_version() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(None, "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                None,
                "command_a",
                &demand("database", "command_schema", "{}"),
            ),
            &["command_a"],
        );
    let errors = bucket.errors();
    let found: Vec<_> = errors
        .errors()
        .iter()
        .map(|e| {
            (
                e.file.display().to_string(),
                e.location.clone().unwrap(),
                e.kind,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "workspace/jobs/api/manifest.json".to_string(),
                "version".to_string(),
                ErrorKind::InvalidJobVersion
            ),
            (
                "workspace/jobs/database/manifest.json".to_string(),
                "version".to_string(),
                ErrorKind::InvalidJobVersion
            ),
        ],
        "{errors}"
    );
    assert!(
        errors.errors()[1].message.contains("job api demands it"),
        "{errors}"
    );
}

#[test]
fn upstream_below_min_version_is_a_mismatch() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("1.5.0"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1"),
                "command_a",
                &demand("database", "command_schema", r#"{"min_version": "2.0.0"}"#),
            ),
            &["command_a"],
        );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/api/manifest.json",
        Some("commands.command_a.demands.config.min_version"),
        ErrorKind::JobCommandDemandVersionMismatch,
        &["1.5.0", "2.0.0"],
    );
}

#[test]
fn upstream_above_integer_max_version_is_a_mismatch() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("3.0.1"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1"),
                "command_a",
                &demand("database", "command_schema", r#"{"max_version": 3}"#),
            ),
            &["command_a"],
        );
    let error = bucket.single_error();
    assert_eq!(error.kind, ErrorKind::JobCommandDemandVersionMismatch);
    assert_eq!(
        error.location.as_deref(),
        Some("commands.command_a.demands.config.max_version")
    );
}

#[test]
fn upstream_within_bounds_is_accepted() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("v2.5"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1"),
                "command_a",
                &demand(
                    "database",
                    "command_schema",
                    r#"{"min_version": 2, "max_version": "3.0.0", "extra": true}"#,
                ),
            ),
            &["command_a"],
        );
    bucket.loaded();
}

#[test]
fn malformed_demand_version_bound_is_rejected() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "database",
            &upstream_manifest(Some("1"), "command_schema"),
            &["command_schema"],
        )
        .job_with_scripts(
            "api",
            &demanding_manifest(
                Some("1"),
                "command_a",
                &demand("database", "command_schema", r#"{"min_version": "latest"}"#),
            ),
            &["command_a"],
        );
    let error = bucket.single_error();
    assert_eq!(error.kind, ErrorKind::InvalidJobVersion);
    assert_eq!(
        error.location.as_deref(),
        Some("commands.command_a.demands.config.min_version")
    );
}

#[test]
fn demand_cycle_is_rejected_naming_the_path() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "a",
            &demanding_manifest(Some("1"), "command_x", &demand("b", "command_y", "{}")),
            &["command_x"],
        )
        .job_with_scripts(
            "b",
            &demanding_manifest(Some("1"), "command_y", &demand("a", "command_x", "{}")),
            &["command_y"],
        );
    assert_error(
        &bucket.single_error(),
        "workspace/jobs/a/manifest.json",
        Some("commands.command_x.demands"),
        ErrorKind::CircularJobCommandDependency,
        &["a -> b -> a"],
    );
}

#[test]
fn three_job_cycle_is_reported_once() {
    let bucket = Bucket::new();
    bucket
        .job_with_scripts(
            "a",
            &demanding_manifest(Some("1"), "command_x", &demand("b", "command_x", "{}")),
            &["command_x"],
        )
        .job_with_scripts(
            "b",
            &demanding_manifest(Some("1"), "command_x", &demand("c", "command_x", "{}")),
            &["command_x"],
        )
        .job_with_scripts(
            "c",
            &demanding_manifest(Some("1"), "command_x", &demand("a", "command_x", "{}")),
            &["command_x"],
        );
    let error = bucket.single_error();
    assert!(error.message.contains("a -> b -> c -> a"), "{error}");
}

#[test]
fn demand_on_a_job_with_a_broken_manifest_is_not_reported_twice() {
    let bucket = Bucket::new();
    bucket.job("database", "{ not json").job_with_scripts(
        "api",
        &demanding_manifest(
            Some("1"),
            "command_a",
            &demand("database", "command_schema", "{}"),
        ),
        &["command_a"],
    );
    let error = bucket.single_error();
    assert_eq!(
        error.file,
        PathBuf::from("workspace/jobs/database/manifest.json")
    );
}

// ---------------------------------------------------------------- disabled.json

#[test]
fn disabled_entries_are_loaded() {
    let bucket = Bucket::new();
    bucket
        .write(
            "workers.json",
            r#"[{"host": "127.9.0.1"}, {"host": "127.9.0.2"}]"#,
        )
        .write(
            "disabled.json",
            r#"{"jobs": {"api": {"allocations": ["127.9.0.2"]}}, "workers": ["127.9.0.1"]}"#,
        )
        .job("api", "{}");
    let workspace = bucket.loaded();
    assert!(workspace.disabled.is_disabled("api", "127.9.0.2"));
    assert!(workspace.disabled.is_disabled("other", "127.9.0.1"));
}

#[test]
fn disabled_unknown_job_is_rejected() {
    let bucket = Bucket::new();
    bucket.write("disabled.json", r#"{"jobs": {"api": {}}}"#);
    assert_error(
        &bucket.single_error(),
        "workspace/disabled.json",
        Some("jobs.api"),
        ErrorKind::InvalidDisabledJson,
        &["\"api\"", "disable nothing"],
    );
}

// ---------------------------------------------------------------- bucket files

#[test]
fn bucket_conf_is_loaded() {
    let bucket = Bucket::new();
    bucket.write(
        "bucket.conf",
        "port_min = \"31000\"\nport_max = \"31999\"\nenvironment = \"prod\"\n",
    );
    let conf = bucket.loaded().bucket_conf;
    assert_eq!((conf.port_min, conf.port_max), (31000, 31999));
    assert_eq!(conf.vars["environment"], "prod");
}

#[test]
fn job_config_selector_picks_the_reservation_file() {
    let bucket = Bucket::new();
    bucket
        .job(
            "api",
            r#"{"resources": {"memory": {"min": "256 mb", "max": "2 gb"}}}"#,
        )
        .write("bucket.jobs.conf", "[api]\nmemory = \"256 mb\"\n")
        .write("bucket.jobs.prod.conf", "[api]\nmemory = \"1 gb\"\n");
    let prod = load(&bucket.workspace(), "prod").unwrap();
    assert_eq!(prod.job_reservations["api"].memory_mb, Some(1024));
    let default = load(&bucket.workspace(), "").unwrap();
    assert_eq!(default.job_reservations["api"].memory_mb, Some(256));
    let staging = load(&bucket.workspace(), "staging").unwrap();
    assert!(staging.job_reservations.is_empty());
}

#[test]
fn unsafe_job_config_selector_is_reported_against_maand_conf() {
    let bucket = Bucket::new();
    let errors = load(&bucket.workspace(), "../prod").unwrap_err();
    assert_error(
        &errors.errors()[0],
        "maand.conf",
        Some("job_config_selector"),
        ErrorKind::InvalidJobConfigSelector,
        &["../prod"],
    );
}

#[test]
fn reservation_outside_manifest_bounds_is_rejected() {
    let bucket = Bucket::new();
    bucket
        .job(
            "api",
            r#"{"resources": {"memory": {"min": "128 mb", "max": "256 mb"}}}"#,
        )
        .write("bucket.jobs.conf", "[api]\nmemory = \"512 mb\"\n");
    assert_error(
        &bucket.single_error(),
        "workspace/bucket.jobs.conf",
        Some("api.memory"),
        ErrorKind::UnsupportedResourceConfiguration,
        &["512", "128 to 256"],
    );
}

#[test]
fn resources_combine_manifest_bounds_and_reservation() {
    let bucket = Bucket::new();
    bucket
        .job("api", r#"{"resources": {"memory": {"min": "128 mb", "max": "512 mb"}, "cpu": {"min": "100", "max": "400"}}}"#)
        .job("free", "{}")
        .write("bucket.jobs.conf", "[api]\nmemory = \"192 mb\"\n[free]\nmemory = \"256 mb\"\n");
    let workspace = bucket.loaded();
    let api = workspace.resources("api").unwrap();
    assert_eq!(
        (api.min_memory_mb, api.max_memory_mb, api.memory_mb),
        (128, 512, 192)
    );
    assert_eq!(
        (api.min_cpu_mhz, api.max_cpu_mhz, api.cpu_mhz),
        (100, 400, 400)
    );
    let free = workspace.resources("free").unwrap();
    assert_eq!(
        (free.min_memory_mb, free.max_memory_mb, free.memory_mb),
        (256, 256, 256)
    );
    assert_eq!(free.cpu_mhz, 0);
    assert_eq!(workspace.resources("missing"), None);
}

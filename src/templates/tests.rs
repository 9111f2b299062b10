//! Specification tests for template rendering: context, functions, filters, access, errors.

use std::collections::BTreeMap;

use super::*;

/// An in-memory KV store; secrets are stored in clear here and "decrypted" by lookup.
#[derive(Default)]
struct MemoryKv {
    values: BTreeMap<(String, String), String>,
    broken_secrets: Vec<(String, String)>,
}

impl MemoryKv {
    fn with(mut self, namespace: &str, key: &str, value: &str) -> Self {
        self.values
            .insert((namespace.to_string(), key.to_string()), value.to_string());
        self
    }
}

impl KvSource for MemoryKv {
    fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.values
            .get(&(namespace.to_string(), key.to_string()))
            .cloned()
    }

    fn keys(&self, namespace: &str) -> Vec<String> {
        self.values
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn secret(&self, job: &str, key: &str) -> Result<Option<String>, String> {
        let namespace = format!("secrets/job/{job}");
        if self
            .broken_secrets
            .contains(&(namespace.clone(), key.to_string()))
        {
            return Err("the bucket kv.key does not open it".to_string());
        }
        Ok(self.get(&namespace, key))
    }
}

fn context() -> TemplateContext {
    TemplateContext {
        allocation_id: "6f1c0e52-0000-5000-8000-000000000001".to_string(),
        job: "api".to_string(),
        worker_ip: "127.9.0.1".to_string(),
        worker_id: "w-1".to_string(),
        labels: vec!["worker".to_string(), "api".to_string()],
        current_version: "1.1.0".to_string(),
        new_version: "1.2.0".to_string(),
        bucket_path: "/opt/worker/b1".to_string(),
        job_path: "/opt/worker/b1/jobs/api".to_string(),
    }
}

const NO_UPSTREAM: &[String] = &[];

fn scope() -> ReadScope<'static> {
    ReadScope {
        job: "api",
        worker_ip: "127.9.0.1",
        upstream_jobs: NO_UPSTREAM,
    }
}

fn render_with(source: &str, kv: &MemoryKv) -> Result<String, TemplateError> {
    render("config.tpl", source, &context(), &scope(), kv)
}

fn render_ok(source: &str, kv: &MemoryKv) -> String {
    render_with(source, kv).unwrap_or_else(|error| panic!("{source:?} failed: {error}"))
}

fn render_err(source: &str, kv: &MemoryKv) -> TemplateError {
    match render_with(source, kv) {
        Ok(out) => panic!("{source:?} rendered {out:?} but should fail"),
        Err(error) => error,
    }
}

/// Every namespace an `api` allocation on 127.9.0.1 that demands `db` may read.
const READABLE_WITH_DB_UPSTREAM: [&str; 13] = [
    "maand/bucket",
    "vars/bucket",
    "maand/worker",
    "maand/worker/127.9.0.1",
    "maand/worker/127.9.0.1/tags",
    "maand/job/api",
    "vars/bucket/job/api",
    "vars/job/api",
    "secrets/job/api",
    "maand/job/api/worker/127.9.0.1",
    "maand/job/db",
    "vars/job/db",
    "secrets/job/db",
];

/// Namespaces that exist in a bucket but are not for an `api` allocation on 127.9.0.1, even
/// when it demands `db`.
const UNREADABLE_WITH_DB_UPSTREAM: [&str; 9] = [
    "maand/job/api/worker/127.9.0.2",
    "maand/worker/127.9.0.2",
    "maand/worker/127.9.0.2/tags",
    "maand/job/db/worker/127.9.0.1",
    "vars/bucket/job/db",
    "maand/job/web",
    "vars/job/web",
    "secrets/job/web",
    "maand/prometheus",
];

fn kv_with_key_everywhere() -> MemoryKv {
    READABLE_WITH_DB_UPSTREAM
        .iter()
        .chain(UNREADABLE_WITH_DB_UPSTREAM.iter())
        .fold(MemoryKv::default(), |kv, namespace| {
            kv.with(namespace, "k", &format!("value of {namespace}"))
        })
}

fn render_demanding_db(source: &str, kv: &MemoryKv) -> Result<String, TemplateError> {
    let upstream = vec!["db".to_string()];
    let scope = ReadScope {
        upstream_jobs: &upstream,
        ..scope()
    };
    render("config.tpl", source, &context(), &scope, kv)
}

// --- context variables ---------------------------------------------------------------------

#[test]
fn every_context_variable_renders() {
    let source = "{{ allocation_id }}|{{ job }}|{{ worker_ip }}|{{ worker_id }}|\
                  {{ labels | join(sep=\",\") }}|{{ current_version }}|{{ new_version }}|\
                  {{ bucket_path }}|{{ job_path }}";
    assert_eq!(
        render_ok(source, &MemoryKv::default()),
        "6f1c0e52-0000-5000-8000-000000000001|api|127.9.0.1|w-1|worker,api|1.1.0|1.2.0|\
         /opt/worker/b1|/opt/worker/b1/jobs/api"
    );
}

#[test]
fn labels_is_a_list() {
    let source = "{{ labels | length }}:{% for label in labels %}[{{ label }}]{% endfor %}\
                  {% if \"api\" in labels %} api{% endif %}";
    assert_eq!(
        render_ok(source, &MemoryKv::default()),
        "2:[worker][api] api"
    );
}

#[test]
fn an_undefined_variable_names_the_template_and_line() {
    let error = render_err("line one\n{{ worker_hostname }}", &MemoryKv::default());
    assert!(
        matches!(error, TemplateError::Render { line: Some(2), .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("template config.tpl line 2:"),
        "{message}"
    );
    assert!(message.contains("worker_hostname"), "{message}");
}

#[test]
fn output_is_never_html_escaped() {
    let kv = MemoryKv::default().with("vars/job/api", "dsn", "<a href=\"x\">&'");
    assert_eq!(
        render_ok("{{ get(ns=\"vars/job/api\", key=\"dsn\") }}", &kv),
        "<a href=\"x\">&'"
    );
}

// --- KV functions --------------------------------------------------------------------------

#[test]
fn get_returns_the_value() {
    let kv = MemoryKv::default().with("vars/job/api", "cluster_name", "prod-east");
    assert_eq!(
        render_ok("{{ get(ns=\"vars/job/api\", key=\"cluster_name\") }}", &kv),
        "prod-east"
    );
}

#[test]
fn get_builds_namespaces_from_context_variables() {
    let kv = MemoryKv::default().with(
        "maand/job/api/worker/127.9.0.1",
        "peer_workers",
        "127.9.0.2",
    );
    let source =
        "{{ get(ns=\"maand/job/\" ~ job ~ \"/worker/\" ~ worker_ip, key=\"peer_workers\") }}";
    assert_eq!(render_ok(source, &kv), "127.9.0.2");
}

#[test]
fn get_of_a_missing_key_names_template_namespace_and_key_and_suggests_fixes() {
    let error = render_err(
        "{\n  \"cluster\": \"{{ get(ns=\"vars/job/api\", key=\"cluster_name\") }}\"\n}",
        &MemoryKv::default(),
    );
    assert_eq!(
        error,
        TemplateError::MissingKey {
            template: "config.tpl".to_string(),
            line: Some(2),
            namespace: "vars/job/api".to_string(),
            key: "cluster_name".to_string(),
        }
    );
    let message = error.to_string();
    for part in [
        "config.tpl line 2",
        "`cluster_name`",
        "`vars/job/api`",
        "vars.toml",
        "get_optional",
    ] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
}

#[test]
fn get_optional_returns_the_value_or_an_empty_string() {
    let kv = MemoryKv::default().with("maand/job/api", "workers", "127.9.0.1,127.9.0.2");
    assert_eq!(
        render_ok(
            "[{{ get_optional(ns=\"maand/job/api\", key=\"workers\") }}]\
             [{{ get_optional(ns=\"maand/job/api\", key=\"absent\") }}]\
             [{{ get_optional(ns=\"vars/job/api\", key=\"absent\") }}]",
            &kv
        ),
        "[127.9.0.1,127.9.0.2][][]"
    );
}

#[test]
fn get_optional_lets_a_template_fall_back() {
    let source = "{{ get_optional(ns=\"vars/job/api\", key=\"log_level\") or \"info\" }}";
    assert_eq!(render_ok(source, &MemoryKv::default()), "info");
    let kv = MemoryKv::default().with("vars/job/api", "log_level", "debug");
    assert_eq!(render_ok(source, &kv), "debug");
}

#[test]
fn keys_lists_a_namespace_sorted() {
    let kv = MemoryKv::default()
        .with("vars/job/api", "zone", "a")
        .with("vars/job/api", "cluster_name", "b")
        .with("vars/job/api", "mode", "c")
        .with("vars/job/web", "hidden", "d");
    assert_eq!(
        render_ok(
            "{% for key in keys(ns=\"vars/job/api\") %}{{ key }}={{ get(ns=\"vars/job/api\", key=key) }};{% endfor %}",
            &kv
        ),
        "cluster_name=b;mode=c;zone=a;"
    );
    assert_eq!(
        render_ok("{{ keys(ns=\"vars/bucket\") | length }}", &kv),
        "0"
    );
}

#[test]
fn get_secret_reads_the_current_jobs_secrets() {
    let kv = MemoryKv::default()
        .with("secrets/job/api", "db_password", "s3cret-api")
        .with("secrets/job/db", "db_password", "s3cret-db");
    let upstream = vec!["db".to_string()];
    let scope = ReadScope {
        upstream_jobs: &upstream,
        ..scope()
    };
    let out = render(
        "config.tpl",
        "password = {{ get_secret(key=\"db_password\") }}",
        &context(),
        &scope,
        &kv,
    )
    .unwrap();
    assert_eq!(out, "password = s3cret-api");
}

#[test]
fn get_secret_of_a_missing_key_says_a_job_command_must_put_it() {
    let error = render_err(
        "{{ get_secret(key=\"db_password\") }}",
        &MemoryKv::default(),
    );
    assert_eq!(
        error,
        TemplateError::MissingKey {
            template: "config.tpl".to_string(),
            line: Some(1),
            namespace: "secrets/job/api".to_string(),
            key: "db_password".to_string(),
        }
    );
    assert!(error.to_string().contains("put_job_secret"), "{error}");
}

#[test]
fn get_on_a_readable_secrets_namespace_returns_the_decrypted_value() {
    let kv = MemoryKv::default().with("secrets/job/db", "password", "upstream-pw");
    let out = render_demanding_db("{{ get(ns=\"secrets/job/db\", key=\"password\") }}", &kv);
    assert_eq!(out.unwrap(), "upstream-pw");
}

#[test]
fn an_undecryptable_secret_fails_only_when_used() {
    let mut kv = MemoryKv::default()
        .with("secrets/job/api", "good", "fine")
        .with("secrets/job/api", "bad", "unused");
    kv.broken_secrets
        .push(("secrets/job/api".to_string(), "bad".to_string()));
    assert_eq!(render_ok("{{ get_secret(key=\"good\") }}", &kv), "fine");
    let error = render_err(
        "{{ get_secret(key=\"good\") }}{{ get_secret(key=\"bad\") }}",
        &kv,
    );
    assert_eq!(
        error,
        TemplateError::SecretUnreadable {
            template: "config.tpl".to_string(),
            line: Some(1),
            namespace: "secrets/job/api".to_string(),
            key: "bad".to_string(),
            reason: "the bucket kv.key does not open it".to_string(),
        }
    );
}

#[test]
fn misspelled_function_arguments_are_rejected() {
    let error = render_err(
        "{{ get(namespace=\"vars/job/api\", key=\"x\") }}",
        &MemoryKv::default(),
    );
    let message = error.to_string();
    assert!(
        matches!(error, TemplateError::Render { line: Some(1), .. }),
        "{error:?}"
    );
    assert!(
        message.contains("`namespace`") && message.contains("`ns`"),
        "{message}"
    );
}

// --- namespace access ----------------------------------------------------------------------

#[test]
fn an_allocation_reads_every_namespace_of_its_scope() {
    let kv = kv_with_key_everywhere();
    for namespace in READABLE_WITH_DB_UPSTREAM {
        for function in ["get", "get_optional"] {
            let source = format!("{{{{ {function}(ns=\"{namespace}\", key=\"k\") }}}}");
            assert_eq!(
                render_demanding_db(&source, &kv).unwrap(),
                format!("value of {namespace}"),
                "{source}"
            );
        }
        let source = format!("{{{{ keys(ns=\"{namespace}\") | join(sep=\",\") }}}}");
        assert_eq!(render_demanding_db(&source, &kv).unwrap(), "k", "{source}");
    }
}

#[test]
fn every_function_refuses_namespaces_outside_the_scope() {
    let kv = kv_with_key_everywhere();
    for namespace in UNREADABLE_WITH_DB_UPSTREAM {
        for call in [
            format!("get(ns=\"{namespace}\", key=\"k\")"),
            format!("get_optional(ns=\"{namespace}\", key=\"k\")"),
            format!("keys(ns=\"{namespace}\")"),
        ] {
            let source = format!("first line\n{{{{ {call} }}}}");
            let error = render_demanding_db(&source, &kv).unwrap_err();
            let TemplateError::NamespaceDenied {
                template,
                line,
                namespace: denied,
                job,
                worker_ip,
                allowed,
            } = &error
            else {
                panic!("{source}: expected NamespaceDenied, got {error:?}");
            };
            assert_eq!(
                (
                    template.as_str(),
                    *line,
                    denied.as_str(),
                    job.as_str(),
                    worker_ip.as_str()
                ),
                ("config.tpl", Some(2), namespace, "api", "127.9.0.1")
            );
            let mut expected: Vec<String> = READABLE_WITH_DB_UPSTREAM
                .iter()
                .map(|ns| ns.to_string())
                .collect();
            expected.sort();
            assert_eq!(&allowed[..], &expected[..]);
            let message = error.to_string();
            assert!(
                message.contains(&format!("`{namespace}`"))
                    && message.contains("config.tpl line 2")
                    && message.contains("vars/job/api")
                    && message.contains("demand"),
                "{message}"
            );
            assert!(!message.contains("value of"), "{message}");
        }
    }
}

#[test]
fn upstream_namespaces_need_a_demand() {
    let kv = kv_with_key_everywhere();
    for namespace in ["maand/job/db", "vars/job/db", "secrets/job/db"] {
        let source = format!("{{{{ get(ns=\"{namespace}\", key=\"k\") }}}}");
        assert!(
            matches!(
                render_with(&source, &kv),
                Err(TemplateError::NamespaceDenied { .. })
            ),
            "{namespace} readable without a demand"
        );
        assert!(render_demanding_db(&source, &kv).is_ok(), "{namespace}");
    }
}

#[test]
fn another_workers_allocation_namespace_is_denied() {
    let kv = kv_with_key_everywhere();
    let error = render_err(
        "{{ get(ns=\"maand/job/api/worker/127.9.0.2\", key=\"k\") }}",
        &kv,
    );
    assert!(
        matches!(&error, TemplateError::NamespaceDenied { namespace, .. }
            if namespace == "maand/job/api/worker/127.9.0.2"),
        "{error:?}"
    );
}

#[test]
fn a_scope_for_another_allocation_is_refused() {
    let other = ReadScope {
        worker_ip: "127.9.0.2",
        ..scope()
    };
    let error = render("config.tpl", "x", &context(), &other, &MemoryKv::default()).unwrap_err();
    assert!(
        matches!(error, TemplateError::ScopeMismatch { .. }),
        "{error:?}"
    );
}

// --- secrets stay out of errors ------------------------------------------------------------

const SECRET: &str = "Tr0ub4dor&3";

fn kv_with_secret() -> MemoryKv {
    MemoryKv::default()
        .with("secrets/job/api", "db_password", &format!("  {SECRET}  "))
        .with("secrets/job/db", "password", "upstream-Secret-9")
}

fn assert_no_secret(error: &TemplateError) {
    for text in [error.to_string(), format!("{error:?}")] {
        for secret in [
            SECRET,
            "Tr0ub4dor",
            "TR0UB4DOR&3",
            "tr0ub4dor&3",
            "upstream-Secret-9",
        ] {
            assert!(!text.contains(secret), "secret leaked into: {text}");
        }
    }
}

#[test]
fn a_secret_never_appears_in_an_error() {
    let kv = kv_with_secret();
    for source in [
        "{{ get_secret(key=\"db_password\") | int }}",
        "{{ get_secret(key=\"db_password\") | upper | int }}",
        "{{ get_secret(key=\"db_password\") | lower | int }}",
        "{{ get_secret(key=\"db_password\") | trim | int }}",
        "{{ throw(message=get_secret(key=\"db_password\")) }}",
        "{{ throw(message=\"pw is \" ~ get_secret(key=\"db_password\")) }}",
        "{{ get(ns=\"secrets/job/db\", key=\"password\") | int }}",
        "{% set pw = get_secret(key=\"db_password\") %}{{ get(ns=\"vars/job/api\", key=pw) }}",
        "{% set pw = get_secret(key=\"db_password\") %}{{ undefined_thing }}",
        "{% set pw = get_secret(key=\"db_password\") %}{{ get(ns=\"vars/job/web\", key=\"k\") }}",
        "{% set pw = get_secret(key=\"db_password\") %}{{ keys(ns=pw) }}",
        "{{ get_secret(key=\"db_password\") | replace(from=\"T\", to=\"t\") | int }}",
        "{{ get_secret(key=\"db_password\") | replace(from=\"0\", to=\"o\") | int }}",
        "{{ get_secret(key=\"db_password\") | truncate(length=5) | int }}",
    ] {
        let error = render_demanding_db(source, &kv).unwrap_err();
        assert_no_secret(&error);
        assert_eq!(error.template(), "config.tpl");
    }
}

#[test]
fn a_secret_read_as_a_key_name_is_redacted_from_the_missing_key_error() {
    let kv = kv_with_secret();
    let error = render_err(
        "{% set pw = get_secret(key=\"db_password\") %}{{ get(ns=\"vars/job/api\", key=pw) }}",
        &kv,
    );
    assert!(
        matches!(&error, TemplateError::MissingKey { key, .. } if key == "<redacted>"),
        "{error:?}"
    );
}

#[test]
fn tera_messages_are_withheld_once_a_secret_was_read_but_the_location_stays() {
    let kv = kv_with_secret();
    let source = "a = {{ get_secret(key=\"db_password\") }}\nb = {{ undefined_thing }}";
    let error = render_err(source, &kv);
    assert!(
        matches!(error, TemplateError::Render { line: Some(2), .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("withheld"), "{message}");
    assert!(message.contains("config.tpl:2:"), "{message}");
    assert!(message.contains("b = {{ undefined_thing }}"), "{message}");

    let without_secret = render_err("b = {{ undefined_thing }}", &kv).to_string();
    assert!(
        without_secret.contains("`undefined_thing` is not defined"),
        "{without_secret}"
    );
}

#[test]
fn redaction_covers_every_occurrence_and_leaves_other_text_alone() {
    let secrets = vec!["  Hunter2 ".to_string(), "ünïcode".to_string()];
    assert_eq!(
        redact("a HUNTER2 b hunter2 c ÜNÏCODE d ünïcode e Hunt", &secrets),
        "a <redacted> b <redacted> c <redacted> d <redacted> e Hunt"
    );
    assert_eq!(redact("nothing here", &Vec::new()), "nothing here");
    assert_eq!(redact("x", &vec![String::new(), "  ".to_string()]), "x");
}

#[test]
fn a_rendered_secret_appears_only_in_the_output() {
    let kv = kv_with_secret();
    assert_eq!(
        render_ok("pw={{ get_secret(key=\"db_password\") | trim }}", &kv),
        format!("pw={SECRET}")
    );
}

// --- tera built-ins we rely on, and our filters ---------------------------------------------

#[test]
fn string_filters() {
    let kv = MemoryKv::default().with("maand/worker", "api_workers", " 127.9.0.1,127.9.0.2 ");
    let workers = "get(ns=\"maand/worker\", key=\"api_workers\")";
    assert_eq!(
        render_ok(&format!("[{{{{ {workers} | trim }}}}]"), &kv),
        "[127.9.0.1,127.9.0.2]"
    );
    assert_eq!(
        render_ok(
            &format!("{{{{ {workers} | trim | split(pat=\",\") | join(sep=\" \") }}}}"),
            &kv
        ),
        "127.9.0.1 127.9.0.2"
    );
    assert_eq!(
        render_ok(
            &format!(
                "{{% for ip in {workers} | trim | split(pat=\",\") %}}<{{{{ ip }}}}>{{% endfor %}}"
            ),
            &kv
        ),
        "<127.9.0.1><127.9.0.2>"
    );
    assert_eq!(
        render_ok("{{ \"Hello\" | upper }} {{ \"Hello\" | lower }}", &kv),
        "HELLO hello"
    );
}

#[test]
fn int_parses_strings_and_keeps_integers() {
    let kv = MemoryKv::default().with("vars/job/api", "memory", " 4096 ");
    assert_eq!(
        render_ok(
            "{{ get(ns=\"vars/job/api\", key=\"memory\") | int + 1 }} {{ 7 | int }}",
            &kv
        ),
        "4097 7"
    );
    let error = render_err("{{ \"4 GB\" | int }}", &kv);
    assert!(
        matches!(error, TemplateError::Render { line: Some(1), .. }),
        "{error:?}"
    );
}

#[test]
fn integer_arithmetic_uses_tera_operators() {
    assert_eq!(
        render_ok(
            "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 // 2 }} {{ 7 % 2 }} {{ 7 / 2 }}",
            &MemoryKv::default()
        ),
        "10 -3 21 3 1 3.5"
    );
    let error = render_err("{{ 1 // 0 }}", &MemoryKv::default());
    assert!(error.to_string().contains("divide by 0"), "{error}");
}

#[test]
fn min_and_max_pick_from_a_list_of_integers() {
    let kv = MemoryKv::default();
    assert_eq!(
        render_ok(
            "{{ [5, 2, 9] | min }} {{ [5, 2, 9] | max }} {{ [-3] | min }}",
            &kv
        ),
        "2 9 -3"
    );
    assert_eq!(
        render_ok("{{ [128, [4, 9000 // 64] | max] | min }}", &kv),
        "128"
    );
}

#[test]
fn min_and_max_refuse_empty_lists_and_non_integers() {
    let kv = MemoryKv::default();
    let empty = render_err("{{ [] | min }}", &kv).to_string();
    assert!(empty.contains("at least one integer"), "{empty}");
    let empty = render_err("{{ [] | max }}", &kv).to_string();
    assert!(empty.contains("at least one integer"), "{empty}");
    let text = render_err("{{ [\"5\", 2] | max }}", &kv).to_string();
    assert!(text.contains("i128"), "{text}");
}

#[test]
fn postgres_memory_sizing() {
    let source = r#"{% component mem(mb) -%}
{% if mb >= 1024 %}{{ mb // 1024 }}GB{% else %}{{ mb }}MB{% endif %}
{%- endcomponent mem %}
{%- set memory_mb = get(ns="vars/job/postgres", key="memory") | int -%}
{%- set shared_mb = memory_mb // 4 -%}
{%- set cache_mb = memory_mb * 3 // 4 -%}
{%- set maintenance_mb = [2048, memory_mb // 16] | min -%}
{%- set work_mb = [128, [4, memory_mb // 64] | max] | min -%}
shared_buffers = {{ <mem mb={shared_mb}/> }}
effective_cache_size = {{ <mem mb={cache_mb}/> }}
maintenance_work_mem = {{ maintenance_mb }}MB
work_mem = {{ work_mb }}MB
"#;
    let ctx = TemplateContext {
        job: "postgres".to_string(),
        ..context()
    };
    let scope = ReadScope {
        job: "postgres",
        ..scope()
    };
    let sizes = [
        ("16384", "4GB", "12GB", "1024", "128"),
        ("2048", "512MB", "1GB", "128", "32"),
        ("128", "32MB", "96MB", "8", "4"),
        ("65536", "16GB", "48GB", "2048", "128"),
    ];
    for (memory, shared, cache, maintenance, work) in sizes {
        let kv = MemoryKv::default().with("vars/job/postgres", "memory", memory);
        let out = render("postgresql.conf.tpl", source, &ctx, &scope, &kv).unwrap();
        assert_eq!(
            out,
            format!(
                "shared_buffers = {shared}\neffective_cache_size = {cache}\n\
                 maintenance_work_mem = {maintenance}MB\nwork_mem = {work}MB\n"
            ),
            "memory {memory}"
        );
    }
}

// --- syntax errors -------------------------------------------------------------------------

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let error = render(
        "conf/app.yaml.tpl",
        "a: 1\nb: {{ get(ns=\"vars/job/api\" key=\"b\") }}\n",
        &context(),
        &scope(),
        &MemoryKv::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, TemplateError::Syntax { template, line: Some(2), .. }
            if template == "conf/app.yaml.tpl"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("template conf/app.yaml.tpl line 2: syntax error"),
        "{message}"
    );
    assert!(message.contains("docs/templates.md"), "{message}");
}

#[test]
fn go_template_calls_are_syntax_errors_naming_the_file() {
    for source in [
        "{{ get \"vars/job/api\" \"cluster_name\" }}",
        "{{ .WorkerIP }}",
        "{{ getSecret(key=\"x\") }}",
    ] {
        let error = render_err(source, &MemoryKv::default());
        assert!(
            matches!(error, TemplateError::Syntax { .. }),
            "{source}: {error:?}"
        );
        assert!(error.to_string().contains("config.tpl"), "{error}");
    }
}

// --- the examples of docs/templates.md -----------------------------------------------------

/// The ```jinja blocks of docs/templates.md, in order.
fn documented_examples() -> Vec<String> {
    let docs = include_str!("../../docs/templates.md");
    docs.split("```jinja\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_documented_examples_render_as_documented() {
    let examples = documented_examples();
    assert_eq!(examples.len(), 3, "docs/templates.md examples changed");
    let kv = MemoryKv::default()
        .with("vars/job/api", "cluster_name", "prod-east")
        .with("vars/job/api", "db_host", "db.internal")
        .with("maand/bucket", "api_http_port", "30042")
        .with(
            "maand/job/api/worker/127.9.0.1",
            "peer_workers",
            "127.9.0.2,127.9.0.3",
        )
        .with("secrets/job/api", "db_password", "pw");

    assert_eq!(
        render_ok(&examples[0], &kv),
        "{\n  \"cluster\": \"prod-east\",\n  \"listen_port\": 30042,\n  \"worker\": \"127.9.0.1\",\n  \
         \"version\": \"1.2.0\",\n  \"log_level\": \"info\"\n}\n"
    );

    let kv_without_peers = MemoryKv::default()
        .with("maand/bucket", "api_http_port", "30042")
        .with("maand/job/api/worker/127.9.0.1", "peer_workers", "")
        .with("secrets/job/api", "db_password", "pw");
    assert_eq!(
        render_ok(&examples[1], &kv),
        "server 127.9.0.2:30042\nserver 127.9.0.3:30042\n\n\
         cluster_name = prod-east\ndb_host = db.internal\n\npassword = pw\n"
    );
    assert_eq!(
        render_ok(&examples[1], &kv_without_peers),
        "\n\npassword = pw\n"
    );

    let postgres = TemplateContext {
        job: "postgres".to_string(),
        ..context()
    };
    let scope = ReadScope {
        job: "postgres",
        ..scope()
    };
    let kv = MemoryKv::default().with("vars/job/postgres", "memory", "16384");
    assert_eq!(
        render("postgresql.conf.tpl", &examples[2], &postgres, &scope, &kv).unwrap(),
        "shared_buffers = 4GB\neffective_cache_size = 12GB\nmaintenance_work_mem = 1024MB\n\
         work_mem = 128MB\n"
    );
}

//! `workspace/workers.json`: the list of worker hosts with their labels, capacity and tags.
//! Owns the file's schema and per-worker validation; placement and capacity checks against
//! jobs belong to the build step.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::errors::{ErrorKind, FileReport};
use super::json_reader::{self, Field, Object};
use super::names;
use super::units;

const KIND: ErrorKind = ErrorKind::InvalidWorkerJson;

/// The label every worker carries, whether or not `workers.json` lists it.
pub const DEFAULT_LABEL: &str = "worker";

/// One worker host from `workers.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// SSH target in canonical form: an IP address in standard notation or a lowercased
    /// DNS hostname. Unique within the workspace.
    pub host: String,
    /// Optional display hostname (`hostname` field), a validated DNS name.
    pub hostname: Option<String>,
    /// Placement labels; always contains [`DEFAULT_LABEL`].
    pub labels: BTreeSet<String>,
    /// Declared memory capacity in megabytes, when given.
    pub memory_mb: Option<u64>,
    /// Declared CPU capacity in megahertz, when given.
    pub cpu_mhz: Option<u64>,
    /// Free-form metadata (`tags`); keys follow the key rule in [`names`].
    pub tags: BTreeMap<String, String>,
    /// Index of the entry in the `workers.json` array.
    pub position: usize,
}

/// What loading `workers.json` produced: the fully valid workers, plus every host that was
/// readable even if the rest of its entry was not (so other files can refer to it without
/// cascading "unknown worker" errors).
pub(crate) struct LoadedWorkers {
    pub(crate) workers: Vec<Worker>,
    pub(crate) known_hosts: BTreeSet<String>,
}

const FIELDS: &[&str] = &[
    "host", "hostname", "labels", "memory", "cpu", "tags", "position",
];

/// Parses the content of `workers.json`.
pub(crate) fn parse(content: &[u8], report: &mut FileReport<'_>) -> LoadedWorkers {
    let mut loaded = LoadedWorkers {
        workers: Vec::new(),
        known_hosts: BTreeSet::new(),
    };
    let Some(root) = json_reader::parse_file(content, KIND, report) else {
        return loaded;
    };
    let Value::Array(entries) = &root else {
        report.whole(
            KIND,
            format!(
                "the file must be a JSON array of workers like [{{\"host\": \"127.9.0.1\"}}], found {}",
                json_reader::type_name(&root)
            ),
        );
        return loaded;
    };
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    for (position, entry) in entries.iter().enumerate() {
        let path = json_reader::index("", position);
        let Some(object) = Object::expect(entry, &path, KIND, report) else {
            continue;
        };
        let host = parse_host(&object, report);
        if let Some(host) = &host {
            if let Some(first) = first_seen.get(host) {
                report.at(
                    &object.path_of("host"),
                    KIND,
                    format!(
                        "host {host} is already declared at [{first}]; each worker must appear once, remove or merge the duplicate entry"
                    ),
                );
            } else {
                first_seen.insert(host.clone(), position);
                loaded.known_hosts.insert(host.clone());
            }
        }
        if let Some(worker) = parse_worker(&object, position, host, report) {
            loaded.workers.push(worker);
        }
    }
    loaded
}

fn parse_host(object: &Object<'_>, report: &mut FileReport<'_>) -> Option<String> {
    let path = object.path_of("host");
    let Some(value) = object.get("host") else {
        report.at(
            &object.path,
            KIND,
            "missing \"host\"; add the worker's IP address or hostname, e.g. \"host\": \"127.9.0.1\"",
        );
        return None;
    };
    let host = json_reader::string(Field { value, path: &path }, KIND, report)?;
    match names::parse_host(host) {
        Ok(host) => Some(host),
        Err(error) => {
            report.at(&path, KIND, format!("{error}"));
            None
        }
    }
}

fn parse_worker(
    object: &Object<'_>,
    position: usize,
    host: Option<String>,
    report: &mut FileReport<'_>,
) -> Option<Worker> {
    let before = report.count();
    object.reject_unknown(FIELDS, KIND, report);

    let hostname = object.get("hostname").and_then(|value| {
        let path = object.path_of("hostname");
        let name = json_reader::string(Field { value, path: &path }, KIND, report)?;
        match names::validate_dns_name("hostname", name) {
            Ok(()) => Some(name.to_string()),
            Err(error) => {
                report.at(&path, KIND, error.to_string());
                None
            }
        }
    });

    let mut labels = BTreeSet::from([DEFAULT_LABEL.to_string()]);
    if let Some(value) = object.get("labels") {
        let path = object.path_of("labels");
        for (label_path, label) in
            json_reader::strings(Field { value, path: &path }, KIND, report).unwrap_or_default()
        {
            match names::validate_label(label) {
                Ok(()) => {
                    labels.insert(label.to_string());
                }
                Err(error) => report.at(
                    &label_path,
                    KIND,
                    format!("{error}; fix or remove this label"),
                ),
            }
        }
    }

    let memory_mb = capacity(object, "memory", units::parse_memory_mb, "4096 mb", report);
    let cpu_mhz = capacity(object, "cpu", units::parse_cpu_mhz, "2000 mhz", report);
    let tags = parse_tags(object, report);

    if let Some(value) = object.get("position") {
        let path = object.path_of("position");
        // The array order is authoritative; the field is tolerated for files written by
        // other tools but must at least be a plain index.
        if value.as_u64().is_none() {
            report.at(
                &path,
                KIND,
                format!(
                    "must be a non-negative integer (it is ignored: the array order sets the position), found {}; remove it",
                    json_reader::describe(value)
                ),
            );
        }
    }

    if report.count() != before {
        return None;
    }
    Some(Worker {
        host: host?,
        hostname,
        labels,
        memory_mb: memory_mb.flatten(),
        cpu_mhz: cpu_mhz.flatten(),
        tags,
        position,
    })
}

/// Reads `memory` / `cpu`. `Some(None)` = absent or empty string; `None` = reported error.
fn capacity(
    object: &Object<'_>,
    key: &str,
    parse: fn(&str) -> Result<u64, units::QuantityError>,
    example: &str,
    report: &mut FileReport<'_>,
) -> Option<Option<u64>> {
    let Some(value) = object.get(key) else {
        return Some(None);
    };
    let path = object.path_of(key);
    match value {
        Value::String(text) if text.trim().is_empty() => Some(None),
        Value::String(text) => match parse(text) {
            Ok(amount) => Some(Some(amount)),
            Err(error) => {
                report.at(&path, KIND, error.to_string());
                None
            }
        },
        Value::Number(n) if n.as_u64().is_some() => Some(n.as_u64()),
        other => {
            report.at(
                &path,
                KIND,
                format!(
                    "must be a string such as \"{example}\", found {}; omit the field when the capacity is unknown",
                    json_reader::describe(other)
                ),
            );
            None
        }
    }
}

fn parse_tags(object: &Object<'_>, report: &mut FileReport<'_>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let Some(value) = object.get("tags") else {
        return tags;
    };
    let path = object.path_of("tags");
    let Some(tags_object) = Object::expect(value, &path, KIND, report) else {
        return tags;
    };
    for (key, value) in tags_object.entries() {
        let tag_path = tags_object.path_of(key);
        if let Err(error) = names::validate_key("tag key", key) {
            report.at(&tag_path, KIND, format!("{error}; rename the tag"));
            continue;
        }
        match value {
            Value::String(text) if text.chars().any(char::is_control) => report.at(
                &tag_path,
                KIND,
                "tag values may not contain control characters such as newlines; put the value on one line",
            ),
            Value::String(text) => {
                tags.insert(key.clone(), text.clone());
            }
            other => report.at(
                &tag_path,
                KIND,
                format!(
                    "tag values must be strings, found {}; quote it, e.g. \"{}\"",
                    json_reader::type_name(other),
                    json_reader::describe(other).trim_matches('"')
                ),
            ),
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::errors::WorkspaceError;
    use std::path::PathBuf;

    fn parse_text(text: &str) -> (Vec<Worker>, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("workspace/workers.json"), &mut errors);
        let loaded = parse(text.as_bytes(), &mut report);
        (loaded.workers, errors)
    }

    fn only_error(text: &str) -> WorkspaceError {
        let (_, errors) = parse_text(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn worker_gets_the_worker_label_automatically() {
        let (workers, errors) = parse_text(r#"[{"host": "127.9.0.1", "labels": ["gpu"]}]"#);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(
            workers[0].labels,
            BTreeSet::from(["gpu".to_string(), "worker".to_string()])
        );
    }

    #[test]
    fn workers_keep_file_order_as_position() {
        let (workers, _) = parse_text(r#"[{"host": "b.example"}, {"host": "a.example"}]"#);
        let hosts: Vec<_> = workers
            .iter()
            .map(|w| (w.host.as_str(), w.position))
            .collect();
        assert_eq!(hosts, [("b.example", 0), ("a.example", 1)]);
    }

    #[test]
    fn capacity_is_parsed_into_megabytes_and_megahertz() {
        let (workers, errors) =
            parse_text(r#"[{"host": "127.9.0.1", "memory": "4 gb", "cpu": "2.5 GHz"}]"#);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(workers[0].memory_mb, Some(4096));
        assert_eq!(workers[0].cpu_mhz, Some(2500));
    }

    #[test]
    fn omitted_capacity_is_none() {
        let (workers, _) = parse_text(r#"[{"host": "127.9.0.1"}]"#);
        assert_eq!((workers[0].memory_mb, workers[0].cpu_mhz), (None, None));
    }

    #[test]
    fn unknown_capacity_unit_names_the_accepted_units() {
        let error = only_error(r#"[{"host": "127.9.0.1", "memory": "4 gigs"}]"#);
        assert_eq!(error.location.as_deref(), Some("[0].memory"));
        assert!(error.message.contains("mb, gb, tb"), "{}", error.message);
    }

    #[test]
    fn duplicate_host_is_rejected_at_the_second_entry() {
        let error = only_error(r#"[{"host": "127.9.0.1"}, {"host": "127.9.0.1"}]"#);
        assert_eq!(error.kind, ErrorKind::InvalidWorkerJson);
        assert_eq!(error.location.as_deref(), Some("[1].host"));
        assert!(error.message.contains("[0]"), "{}", error.message);
    }

    #[test]
    fn duplicate_host_is_detected_across_spellings() {
        let error = only_error(r#"[{"host": "::1"}, {"host": "0:0::1"}]"#);
        assert_eq!(error.location.as_deref(), Some("[1].host"));
    }

    #[test]
    fn host_with_shell_metacharacters_is_rejected() {
        let error = only_error(r#"[{"host": "127.9.0.1;rm -rf /"}]"#);
        assert_eq!(error.file, PathBuf::from("workspace/workers.json"));
        assert_eq!(error.location.as_deref(), Some("[0].host"));
        assert!(
            error.message.contains("IPv4 or IPv6 address"),
            "{}",
            error.message
        );
    }

    #[test]
    fn missing_host_is_rejected() {
        let error = only_error(r#"[{"labels": ["a"]}]"#);
        assert_eq!(error.location.as_deref(), Some("[0]"));
        assert!(error.message.contains("\"host\""), "{}", error.message);
    }

    #[test]
    fn label_with_command_substitution_is_rejected() {
        let error = only_error(r#"[{"host": "127.9.0.1", "labels": ["ok", "$(reboot)"]}]"#);
        assert_eq!(error.location.as_deref(), Some("[0].labels[1]"));
        assert!(error.message.contains("$(reboot)"), "{}", error.message);
        assert!(
            error.message.contains("lowercase letters"),
            "{}",
            error.message
        );
    }

    #[test]
    fn unknown_field_is_named_with_a_suggestion() {
        let error = only_error(r#"[{"host": "127.9.0.1", "lables": ["a"]}]"#);
        assert_eq!(error.location.as_deref(), Some("[0].lables"));
        assert!(
            error.message.contains("did you mean \"labels\""),
            "{}",
            error.message
        );
    }

    #[test]
    fn tags_must_be_strings_with_safe_keys() {
        let (_, errors) =
            parse_text(r#"[{"host": "127.9.0.1", "tags": {"zone": 3, "bad key": "x"}}]"#);
        let locations: Vec<_> = errors.iter().map(|e| e.location.clone().unwrap()).collect();
        assert_eq!(locations, ["[0].tags.bad key", "[0].tags.zone"]);
    }

    #[test]
    fn tags_are_kept() {
        let (workers, _) = parse_text(r#"[{"host": "127.9.0.1", "tags": {"zone": "a"}}]"#);
        assert_eq!(workers[0].tags.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn file_must_be_an_array() {
        let error = only_error(r#"{"host": "127.9.0.1"}"#);
        assert_eq!(error.location, None);
        assert!(error.message.contains("JSON array"), "{}", error.message);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let error = only_error("[{\"host\": \"127.9.0.1\",}]");
        assert!(error.message.contains("line 1"), "{}", error.message);
    }

    #[test]
    fn every_bad_entry_is_reported() {
        let (_, errors) = parse_text(
            r#"[{"host": "bad host"}, {"host": "127.9.0.2", "cpu": "fast"}, {"host": "127.9.0.3", "memory": null}]"#,
        );
        assert_eq!(errors.len(), 3, "{errors:#?}");
    }
}

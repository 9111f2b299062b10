//! `workspace/disabled.json`: jobs, allocations and workers drained without removing them.
//! Owns the file's schema and the rule that every name in it must exist (a typo would
//! otherwise silently disable nothing). Which allocations exist is the build step's concern.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::errors::{ErrorKind, FileReport};
use super::json_reader::{self, Field, Object};
use super::names;

const KIND: ErrorKind = ErrorKind::InvalidDisabledJson;

/// What `disabled.json` drains. Empty when the file is absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disabled {
    /// Jobs with all or some of their allocations disabled.
    pub jobs: BTreeMap<String, DisabledJob>,
    /// Workers (canonical hosts) on which every allocation is disabled.
    pub workers: BTreeSet<String>,
}

/// How much of one job is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisabledJob {
    /// `{}`: every allocation of the job.
    Everywhere,
    /// `{"allocations": [...]}`: only the allocations on these workers (canonical hosts).
    OnWorkers(BTreeSet<String>),
}

impl Disabled {
    /// Whether the allocation of `job` on worker `host` (canonical form) is disabled, by a
    /// job entry or a worker entry.
    pub fn is_disabled(&self, job: &str, host: &str) -> bool {
        if self.workers.contains(host) {
            return true;
        }
        match self.jobs.get(job) {
            Some(DisabledJob::Everywhere) => true,
            Some(DisabledJob::OnWorkers(hosts)) => hosts.contains(host),
            None => false,
        }
    }
}

/// Parses `disabled.json`; names must be among `known_jobs` / `known_hosts`.
pub(crate) fn parse(
    content: &[u8],
    known_jobs: &BTreeSet<String>,
    known_hosts: &BTreeSet<String>,
    report: &mut FileReport<'_>,
) -> Disabled {
    let mut disabled = Disabled::default();
    let Some(root) = json_reader::parse_file(content, KIND, report) else {
        return disabled;
    };
    let Some(object) = Object::expect(&root, "", KIND, report) else {
        return disabled;
    };
    object.reject_unknown(&["jobs", "workers"], KIND, report);
    if let Some(value) = object.get("jobs") {
        if let Some(jobs) = Object::expect(value, "jobs", KIND, report) {
            for (job, entry) in jobs.entries() {
                let path = jobs.path_of(job);
                if let Some(parsed) = parse_job(job, entry, &path, known_jobs, known_hosts, report)
                {
                    disabled.jobs.insert(job.clone(), parsed);
                }
            }
        }
    }
    if let Some(value) = object.get("workers") {
        disabled.workers = hosts(
            Field {
                value,
                path: "workers",
            },
            known_hosts,
            report,
        );
    }
    disabled
}

fn parse_job(
    job: &str,
    entry: &Value,
    path: &str,
    known_jobs: &BTreeSet<String>,
    known_hosts: &BTreeSet<String>,
    report: &mut FileReport<'_>,
) -> Option<DisabledJob> {
    if let Err(error) = names::validate_job_name(job) {
        report.at(
            path,
            KIND,
            format!("{error}; name a job directory under workspace/jobs/"),
        );
        return None;
    }
    if !known_jobs.contains(job) {
        report.at(
            path,
            KIND,
            format!("there is no job {job:?} under workspace/jobs/, so this entry would disable nothing; fix the name or remove the entry"),
        );
        return None;
    }
    let object = Object::expect(entry, path, KIND, report)?;
    object.reject_unknown(&["allocations"], KIND, report);
    let Some(value) = object.get("allocations") else {
        return Some(DisabledJob::Everywhere);
    };
    let allocations_path = object.path_of("allocations");
    if matches!(value, Value::Array(items) if items.is_empty()) {
        report.at(
            &allocations_path,
            KIND,
            format!("an empty list is ambiguous; write \"{job}\": {{}} to disable every allocation, or list worker hosts"),
        );
        return None;
    }
    let hosts = hosts(
        Field {
            value,
            path: &allocations_path,
        },
        known_hosts,
        report,
    );
    Some(DisabledJob::OnWorkers(hosts))
}

fn hosts(
    field: Field<'_>,
    known_hosts: &BTreeSet<String>,
    report: &mut FileReport<'_>,
) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for (path, host) in json_reader::strings(field, KIND, report).unwrap_or_default() {
        match names::parse_host(host) {
            Ok(host) if known_hosts.contains(&host) => {
                hosts.insert(host);
            }
            Ok(host) => report.at(
                &path,
                KIND,
                format!("worker {host} is not in workers.json, so this entry would disable nothing; fix the host or remove it"),
            ),
            Err(error) => report.at(&path, KIND, format!("{error}; list worker hosts from workers.json")),
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::errors::WorkspaceError;
    use std::path::PathBuf;

    fn parse_text(text: &str) -> (Disabled, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("workspace/disabled.json"), &mut errors);
        let jobs = BTreeSet::from(["api".to_string(), "vault".to_string()]);
        let hosts = BTreeSet::from(["127.9.0.1".to_string(), "127.9.0.2".to_string()]);
        let disabled = parse(text.as_bytes(), &jobs, &hosts, &mut report);
        (disabled, errors)
    }

    #[test]
    fn empty_job_entry_disables_every_allocation() {
        let (disabled, errors) = parse_text(r#"{"jobs": {"api": {}}}"#);
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(disabled.is_disabled("api", "127.9.0.1"));
        assert!(disabled.is_disabled("api", "127.9.0.2"));
        assert!(!disabled.is_disabled("vault", "127.9.0.1"));
    }

    #[test]
    fn allocation_list_disables_only_those_workers() {
        let (disabled, errors) =
            parse_text(r#"{"jobs": {"vault": {"allocations": ["127.9.0.2"]}}}"#);
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(disabled.is_disabled("vault", "127.9.0.2"));
        assert!(!disabled.is_disabled("vault", "127.9.0.1"));
    }

    #[test]
    fn worker_entry_disables_every_job_there() {
        let (disabled, _) = parse_text(r#"{"workers": ["127.9.0.1"]}"#);
        assert!(disabled.is_disabled("api", "127.9.0.1"));
        assert!(disabled.is_disabled("vault", "127.9.0.1"));
        assert!(!disabled.is_disabled("api", "127.9.0.2"));
    }

    #[test]
    fn unknown_job_is_named() {
        let (_, errors) = parse_text(r#"{"jobs": {"apii": {}}}"#);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.as_deref(), Some("jobs.apii"));
        assert!(
            errors[0].message.contains("\"apii\""),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn unknown_workers_are_named_where_they_appear() {
        let (_, errors) = parse_text(
            r#"{"jobs": {"api": {"allocations": ["127.9.0.9"]}}, "workers": ["127.9.0.1", "127.9.0.8"]}"#,
        );
        let located: Vec<_> = errors
            .iter()
            .map(|e| {
                (
                    e.location.clone().unwrap(),
                    e.message.contains("not in workers.json"),
                )
            })
            .collect();
        assert_eq!(
            located,
            [
                ("jobs.api.allocations[0]".to_string(), true),
                ("workers[1]".to_string(), true)
            ]
        );
    }

    #[test]
    fn empty_allocation_list_is_ambiguous() {
        let (_, errors) = parse_text(r#"{"jobs": {"api": {"allocations": []}}}"#);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("ambiguous"));
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let (_, errors) = parse_text(r#"{"worker": ["127.9.0.1"]}"#);
        assert_eq!(errors[0].location.as_deref(), Some("worker"));
        assert!(errors[0].message.contains("did you mean \"workers\""));
    }
}

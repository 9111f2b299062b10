//! `workspace/bucket.conf` (port pool and bucket variables) and
//! `workspace/bucket.jobs[.<selector>].conf` (per-job memory/CPU reservations and job
//! variables). Owns these files' schemas and the check that a reservation lies within its
//! manifest bounds; worker capacity sums belong to the build step.

use std::collections::{BTreeMap, BTreeSet};

use super::errors::{ErrorKind, FileReport};
use super::manifest::Bounds;
use super::names;
use super::units;
use super::vars;

/// Pool start used when `bucket.conf` has no `port_min` (the value `maand init` writes).
pub const DEFAULT_PORT_MIN: u16 = 30000;
/// Pool end used when `bucket.conf` has no `port_max` (the value `maand init` writes).
pub const DEFAULT_PORT_MAX: u16 = 39999;

/// Bucket-wide settings from `bucket.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConf {
    /// First port of the inclusive pool for `{}` ports.
    pub port_min: u16,
    /// Last port of the inclusive pool for `{}` ports; `port_min <= port_max`.
    pub port_max: u16,
    /// Every other key, as text (the `vars/bucket` namespace).
    pub vars: BTreeMap<String, String>,
}

impl Default for BucketConf {
    fn default() -> Self {
        BucketConf {
            port_min: DEFAULT_PORT_MIN,
            port_max: DEFAULT_PORT_MAX,
            vars: BTreeMap::new(),
        }
    }
}

/// One job's section of `bucket.jobs[.<selector>].conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reservation {
    /// Memory reserved for the job on each worker, in megabytes (`memory`).
    pub memory_mb: Option<u64>,
    /// CPU reserved for the job on each worker, in megahertz (`cpu`).
    pub cpu_mhz: Option<u64>,
    /// Every key of the section as written, `memory` and `cpu` included (the
    /// `vars/bucket/job/<job>` namespace).
    pub vars: BTreeMap<String, String>,
}

/// The reservation file name for a `job_config_selector` (`""` → `bucket.jobs.conf`).
pub fn job_config_file_name(selector: &str) -> String {
    if selector.is_empty() {
        "bucket.jobs.conf".to_string()
    } else {
        format!("bucket.jobs.{selector}.conf")
    }
}

/// Parses `bucket.conf`.
pub(crate) fn parse_bucket_conf(content: &[u8], report: &mut FileReport<'_>) -> BucketConf {
    const KIND: ErrorKind = ErrorKind::InvalidBucketConf;
    let mut conf = BucketConf::default();
    let Some(table) = vars::parse_toml(content, KIND, report) else {
        return conf;
    };
    let mut range_ok = true;
    for (key, value) in &table {
        match key.as_str() {
            "port_min" | "port_max" => match port(value) {
                Some(port) if key == "port_min" => conf.port_min = port,
                Some(port) => conf.port_max = port,
                None => {
                    range_ok = false;
                    report.at(
                        key,
                        ErrorKind::InvalidPortRange,
                        format!(
                            "{key} must be a port number from 1 to 65535 (as \"30000\" or 30000), found {}",
                            vars::scalar_text(value).map_or_else(|| vars::toml_type(value).to_string(), |t| format!("{t:?}"))
                        ),
                    );
                }
            },
            _ => {
                if let Some(text) = vars::variable(key, value, key, KIND, report) {
                    conf.vars.insert(key.clone(), text);
                }
            }
        }
    }
    if range_ok && conf.port_min > conf.port_max {
        report.at(
            "port_max",
            ErrorKind::InvalidPortRange,
            format!(
                "the port pool is empty: port_min {} is greater than port_max {}; make port_min <= port_max (default pool {DEFAULT_PORT_MIN}-{DEFAULT_PORT_MAX})",
                conf.port_min, conf.port_max
            ),
        );
    }
    conf
}

fn port(value: &toml::Value) -> Option<u16> {
    let number = match value {
        toml::Value::Integer(n) => u16::try_from(*n).ok(),
        toml::Value::String(text) => text.trim().parse::<u16>().ok(),
        _ => None,
    }?;
    (number >= 1).then_some(number)
}

/// Parses the reservation file; `known_jobs` are the job directory names.
pub(crate) fn parse_job_reservations(
    content: &[u8],
    known_jobs: &BTreeSet<String>,
    report: &mut FileReport<'_>,
) -> BTreeMap<String, Reservation> {
    const KIND: ErrorKind = ErrorKind::InvalidJobConfig;
    let mut reservations = BTreeMap::new();
    let Some(table) = vars::parse_toml(content, KIND, report) else {
        return reservations;
    };
    for (job, section) in &table {
        let toml::Value::Table(section) = section else {
            report.at(
                job,
                KIND,
                format!("settings must sit in a [job] section; move \"{job}\" under the section of the job it belongs to"),
            );
            continue;
        };
        if let Err(error) = names::validate_job_name(job) {
            report.at(
                job,
                KIND,
                format!("{error}; sections must be named after a job directory"),
            );
            continue;
        }
        if !known_jobs.contains(job) {
            report.at(
                job,
                KIND,
                format!("there is no job {job:?} under workspace/jobs/; fix the section name or remove the section (it would be ignored)"),
            );
            continue;
        }
        let mut reservation = Reservation::default();
        for (key, value) in section {
            let location = format!("{job}.{key}");
            let Some(text) = vars::variable(key, value, &location, KIND, report) else {
                continue;
            };
            match key.as_str() {
                "memory" => match units::parse_memory_mb(&text) {
                    Ok(mb) => reservation.memory_mb = Some(mb),
                    Err(error) => report.at(&location, KIND, error.to_string()),
                },
                "cpu" => match units::parse_cpu_mhz(&text) {
                    Ok(mhz) => reservation.cpu_mhz = Some(mhz),
                    Err(error) => report.at(&location, KIND, error.to_string()),
                },
                _ => {}
            }
            reservation.vars.insert(key.clone(), text);
        }
        reservations.insert(job.clone(), reservation);
    }
    reservations
}

/// Checks that a reservation lies within its manifest bounds.
pub(crate) fn check_reservation(
    job: &str,
    reservation: &Reservation,
    memory_mb: Bounds,
    cpu_mhz: Bounds,
    report: &mut FileReport<'_>,
) {
    let checks = [
        (
            "memory",
            reservation.memory_mb,
            memory_mb,
            "MB",
            "resources.memory",
        ),
        ("cpu", reservation.cpu_mhz, cpu_mhz, "MHz", "resources.cpu"),
    ];
    for (key, amount, bounds, unit, manifest_field) in checks {
        let Some(amount) = amount else { continue };
        if bounds.admits(amount) {
            continue;
        }
        let range = if bounds.max == 0 {
            format!("at least {} {unit}", bounds.min)
        } else {
            format!("{} to {} {unit}", bounds.min, bounds.max)
        };
        report.at(
            &format!("{job}.{key}"),
            ErrorKind::UnsupportedResourceConfiguration,
            format!(
                "reserves {amount} {unit} but the manifest of {job} allows {range} ({manifest_field}); change the reservation or widen the manifest bounds"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::errors::WorkspaceError;
    use std::path::PathBuf;

    fn bucket_conf(text: &str) -> (BucketConf, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("workspace/bucket.conf"), &mut errors);
        let conf = parse_bucket_conf(text.as_bytes(), &mut report);
        (conf, errors)
    }

    fn reservations(
        text: &str,
        jobs: &[&str],
    ) -> (BTreeMap<String, Reservation>, Vec<WorkspaceError>) {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("workspace/bucket.jobs.conf"), &mut errors);
        let known = jobs.iter().map(|j| j.to_string()).collect();
        let parsed = parse_job_reservations(text.as_bytes(), &known, &mut report);
        (parsed, errors)
    }

    #[test]
    fn port_pool_accepts_strings_and_integers() {
        let (conf, errors) = bucket_conf("port_min = \"31000\"\nport_max = 32000\n");
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!((conf.port_min, conf.port_max), (31000, 32000));
    }

    #[test]
    fn port_pool_defaults_to_the_init_values() {
        let (conf, _) = bucket_conf("");
        assert_eq!(
            (conf.port_min, conf.port_max),
            (DEFAULT_PORT_MIN, DEFAULT_PORT_MAX)
        );
    }

    #[test]
    fn port_pool_out_of_range_is_invalid_port_range() {
        let (_, errors) = bucket_conf("port_min = 0\nport_max = \"70000\"\n");
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.kind == ErrorKind::InvalidPortRange));
    }

    #[test]
    fn port_pool_min_above_max_is_invalid_port_range() {
        let (_, errors) = bucket_conf("port_min = 40000\nport_max = 30000\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ErrorKind::InvalidPortRange);
        assert_eq!(errors[0].location.as_deref(), Some("port_max"));
    }

    #[test]
    fn other_bucket_keys_become_text_vars() {
        let (conf, _) = bucket_conf("environment = \"prod\"\nreplicas = 3\nport_min = 30000\n");
        assert_eq!(conf.vars.len(), 2);
        assert_eq!(conf.vars["replicas"], "3");
        assert!(!conf.vars.contains_key("port_min"));
    }

    #[test]
    fn reservation_reads_memory_cpu_and_keeps_all_keys_as_vars() {
        let (parsed, errors) = reservations(
            "[api]\nmemory = \"1 gb\"\ncpu = 1500\nhint = \"3\"\n",
            &["api"],
        );
        assert!(errors.is_empty(), "{errors:#?}");
        let api = &parsed["api"];
        assert_eq!((api.memory_mb, api.cpu_mhz), (Some(1024), Some(1500)));
        assert_eq!(
            api.vars.keys().collect::<Vec<_>>(),
            ["cpu", "hint", "memory"]
        );
    }

    #[test]
    fn reservation_for_unknown_job_is_rejected() {
        let (_, errors) = reservations("[apii]\nmemory = \"1 gb\"\n", &["api"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ErrorKind::InvalidJobConfig);
        assert_eq!(errors[0].location.as_deref(), Some("apii"));
    }

    #[test]
    fn reservation_section_with_path_name_is_rejected() {
        let (_, errors) = reservations("[\"../etc\"]\nmemory = \"1 gb\"\n", &["api"]);
        assert!(
            errors[0].message.contains("not a valid job name"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn reservation_outside_manifest_bounds_is_unsupported() {
        let mut errors = Vec::new();
        let mut report = FileReport::new(PathBuf::from("workspace/bucket.jobs.conf"), &mut errors);
        let reservation = Reservation {
            memory_mb: Some(512),
            cpu_mhz: Some(100),
            vars: BTreeMap::new(),
        };
        check_reservation(
            "api",
            &reservation,
            Bounds { min: 128, max: 256 },
            Bounds { min: 100, max: 0 },
            &mut report,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, ErrorKind::UnsupportedResourceConfiguration);
        assert_eq!(errors[0].location.as_deref(), Some("api.memory"));
    }

    #[test]
    fn selector_picks_the_reservation_file() {
        assert_eq!(job_config_file_name(""), "bucket.jobs.conf");
        assert_eq!(job_config_file_name("prod"), "bucket.jobs.prod.conf");
    }
}

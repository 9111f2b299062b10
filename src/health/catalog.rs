//! What the catalog says about health, read once per command: each job's manifest probes
//! (the `jobs.health_check` JSON `maand build` records), its named ports with their numbers,
//! its `health_check` commands (with what the hooks module needs to run them), the bucket id
//! and the bucket CA that https probes trust; and the active allocations a check targets.
//! Reads only.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::Value;

use super::HealthError;
use crate::bucket::Bucket;
use crate::catalog::read;
use crate::catalog::tables::{self, Selection};
use crate::certs::{CA_KV_KEY, CA_KV_NAMESPACE};
use crate::events::KvValue;
use crate::hooks::{HookCatalog, HookHost};
use crate::workspace::{CommandEvent, HealthCheck, HealthWait, HttpScheme, Probe};

/// One allocation a health check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTarget {
    pub alloc_id: String,
    pub job: String,
    pub worker_ip: String,
}

/// The health declarations of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobHealth {
    pub job: String,
    /// Manifest probes, when the manifest has a `health_check` section.
    pub probes: Option<HealthCheck>,
    /// Port name -> assigned port number.
    pub ports: BTreeMap<String, u16>,
    /// Names of the job's commands that run on `health_check`, in catalog order.
    pub commands: Vec<String>,
}

/// Everything a health check needs from the catalog.
#[derive(Debug, Clone)]
pub struct HealthCatalog {
    pub(super) bucket_id: String,
    pub(super) jobs: BTreeMap<String, JobHealth>,
    /// The bucket CA certificate (PEM), when the catalog holds it.
    pub(super) ca_pem: Option<String>,
    /// What running `health_check` commands needs; loaded only when some job has one.
    pub(super) hooks: Option<Arc<CommandHost>>,
}

/// The operator-host side of `health_check` commands.
#[derive(Debug)]
pub(super) struct CommandHost {
    pub host: HookHost,
    pub catalog: HookCatalog,
}

impl HealthCatalog {
    /// Reads every job's health declarations, its ports and the bucket CA; when some job has a
    /// `health_check` command, also the bucket's hook settings (`maand.conf`, `secrets/kv.key`)
    /// and the catalog view job commands run with.
    pub fn read(bucket: &Bucket, conn: &Connection) -> Result<HealthCatalog, HealthError> {
        let bucket_id = read::bucket_id(conn)?.ok_or(HealthError::NoBucket)?;
        let mut jobs = BTreeMap::new();
        let mut stmt = conn
            .prepare("SELECT name, health_check FROM jobs ORDER BY name")
            .map_err(crate::catalog::CatalogError::from)?;
        let rows: Vec<(String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(crate::catalog::CatalogError::from)?;
        for (job, stored) in rows {
            let probes = match stored {
                Some(text) => Some(parse_stored(&job, &text)?),
                None => None,
            };
            jobs.insert(
                job.clone(),
                JobHealth {
                    job,
                    probes,
                    ports: BTreeMap::new(),
                    commands: Vec::new(),
                },
            );
        }
        for port in tables::job_ports(conn, &Selection::default())? {
            if let Some(job) = jobs.get_mut(&port.job) {
                job.ports.insert(port.name, port.port);
            }
        }
        for command in tables::job_commands(conn, &Selection::default())? {
            if command.event == CommandEvent::HealthCheck.as_str() {
                if let Some(job) = jobs.get_mut(&command.job) {
                    job.commands.push(command.name);
                }
            }
        }
        let ca_pem = match tables::kv_entry(conn, CA_KV_NAMESPACE, CA_KV_KEY)? {
            Some(tables::KvEntry {
                value: Some(KvValue::Plain(pem)),
                ..
            }) => Some(pem),
            _ => None,
        };
        let hooks = if jobs.values().any(|job| !job.commands.is_empty()) {
            Some(Arc::new(CommandHost {
                host: HookHost::new(bucket)?,
                catalog: HookCatalog::load(conn)?,
            }))
        } else {
            None
        };
        Ok(HealthCatalog {
            bucket_id,
            jobs,
            ca_pem,
            hooks,
        })
    }

    /// The health declarations of `job`, when the catalog knows the job.
    pub fn job(&self, job: &str) -> Option<&JobHealth> {
        self.jobs.get(job)
    }

    /// Every job of the catalog, by name.
    pub fn job_names(&self) -> impl Iterator<Item = &str> {
        self.jobs.keys().map(String::as_str)
    }
}

/// Active allocations (neither disabled nor removed) of the selected jobs on the selected
/// workers, by job then worker order. Unknown job or worker names fail.
pub fn active_targets(
    conn: &Connection,
    selection: &Selection,
) -> Result<Vec<HealthTarget>, HealthError> {
    Ok(tables::allocations(conn, selection)?
        .into_iter()
        .filter(|row| !row.disabled && !row.removed)
        .map(|row| HealthTarget {
            alloc_id: row.alloc_id,
            job: row.job,
            worker_ip: row.worker_ip,
        })
        .collect())
}

/// Reads the `jobs.health_check` JSON written by `maand build` back into the manifest model.
pub(super) fn parse_stored(job: &str, text: &str) -> Result<HealthCheck, HealthError> {
    let invalid = |reason: String| HealthError::StoredSpec {
        job: job.to_string(),
        reason,
    };
    let root: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let number = |value: &Value, field: &str| -> Result<u32, HealthError> {
        value
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(format!("`{field}` is not a number")))
    };
    let text_of = |value: &Value, field: &str| -> Result<String, HealthError> {
        value
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("`{field}` is not a string")))
    };
    let checks = root
        .get("checks")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("`checks` is not an array".into()))?
        .iter()
        .map(|check| match check.get("type").and_then(Value::as_str) {
            Some("tcp") => Ok(Probe::Tcp {
                port: text_of(check, "port")?,
            }),
            Some("http") => Ok(Probe::Http {
                port: text_of(check, "port")?,
                path: text_of(check, "path")?,
                expect_status: u16::try_from(number(check, "expect_status")?)
                    .map_err(|_| invalid("`expect_status` is out of range".into()))?,
                scheme: match text_of(check, "scheme")?.as_str() {
                    "http" => HttpScheme::Http,
                    "https" => HttpScheme::Https,
                    other => return Err(invalid(format!("unknown scheme {other:?}"))),
                },
            }),
            Some("ssh") => Ok(Probe::Ssh {
                command: text_of(check, "command")?,
            }),
            other => Err(invalid(format!("unknown probe type {other:?}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wait = root
        .get("wait")
        .ok_or_else(|| invalid("`wait` is missing".into()))?;
    Ok(HealthCheck {
        checks,
        timeout_seconds: number(&root, "timeout_seconds")?,
        wait: HealthWait {
            attempts: number(wait, "attempts")?,
            interval_seconds: number(wait, "interval_seconds")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_build_records_reads_back_into_probes() {
        let stored = r#"{"checks": [
            {"type": "tcp", "port": "cql"},
            {"type": "http", "port": "web", "path": "/metrics", "expect_status": 204, "scheme": "https"},
            {"type": "ssh", "command": "systemctl is-active db"}],
            "timeout_seconds": 3, "wait": {"attempts": 4, "interval_seconds": 2}}"#;
        let health = parse_stored("db", stored).unwrap();
        assert_eq!(
            health.checks,
            [
                Probe::Tcp { port: "cql".into() },
                Probe::Http {
                    port: "web".into(),
                    path: "/metrics".into(),
                    expect_status: 204,
                    scheme: HttpScheme::Https
                },
                Probe::Ssh {
                    command: "systemctl is-active db".into()
                },
            ]
        );
        assert_eq!(health.timeout_seconds, 3);
        assert_eq!(
            health.wait,
            HealthWait {
                attempts: 4,
                interval_seconds: 2
            }
        );
    }

    #[test]
    fn a_stored_spec_maand_did_not_write_names_the_job_and_the_fix() {
        let err = parse_stored("api", r#"{"checks": [{"type": "udp"}]}"#).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("job api"), "{message}");
        assert!(message.contains("udp"), "{message}");
        assert!(message.contains("maand build"), "{message}");
    }
}

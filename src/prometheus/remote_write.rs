//! Certificate expiry gauges pushed to the prometheus server job by Prometheus remote write
//! (protobuf `WriteRequest`, snappy block compression, HTTP POST to `/api/v1/write`).
//!
//! [`cert_series`] and [`encode`] are pure; [`push`] does the HTTP request with retries on
//! transient failures. Callers treat every error as a warning: the push is best effort.

use crate::catalog::tables::CertRow;
use prost::Message;
use rusqlite::{Connection, OptionalExtension};
use std::time::Duration;

/// Unix time of `NotAfter`.
pub const METRIC_NOT_AFTER: &str = "maand_cert_not_after_seconds";
/// 1 while the certificate is within the renewal window.
pub const METRIC_EXPIRING: &str = "maand_cert_expiring";
/// 1 once the certificate has expired.
pub const METRIC_EXPIRED: &str = "maand_cert_expired";

const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(15);

/// `prometheus.WriteRequest` (remote write 1.0), the fields maand sends.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Three gauges per certificate (`not_after` only when it parsed), labelled `scope`, `job`,
/// `worker`, `cert`, `common_name` and `status`, all stamped `now_ms`.
pub fn cert_series(rows: &[CertRow], now_ms: i64) -> WriteRequest {
    let mut timeseries = Vec::with_capacity(rows.len() * 3);
    for row in rows {
        let not_after = row
            .not_after
            .as_deref()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| t.unix_timestamp() as f64);
        let flag = |status: &str| if row.status == status { 1.0 } else { 0.0 };
        let gauges = [
            (METRIC_NOT_AFTER, not_after),
            (METRIC_EXPIRING, Some(flag("expiring"))),
            (METRIC_EXPIRED, Some(flag("expired"))),
        ];
        for (name, value) in gauges {
            let Some(value) = value else { continue };
            // Label names sorted, as remote write requires.
            let labels = [
                ("__name__", name),
                ("cert", row.cert.as_str()),
                (
                    "common_name",
                    row.common_name.as_deref().unwrap_or_default(),
                ),
                ("job", row.job.as_deref().unwrap_or_default()),
                ("scope", row.scope.as_str()),
                ("status", row.status.as_str()),
                ("worker", row.worker.as_deref().unwrap_or_default()),
            ];
            timeseries.push(TimeSeries {
                labels: labels
                    .iter()
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(name, value)| Label {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                samples: vec![Sample {
                    value,
                    timestamp: now_ms,
                }],
            });
        }
    }
    WriteRequest { timeseries }
}

/// The request body: protobuf, snappy block-compressed.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any input that fits in memory")
}

/// Where and how to push, discovered from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://<worker>:<prometheus_port_http>/api/v1/write`
    pub url: String,
    /// Basic auth user and password, when `secrets/job/prometheus` has both.
    pub basic_auth: Option<(String, String)>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("catalog database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job {job} ships a server config but declares no port {port}; add it to resources.ports so maand knows where to push")]
    NoPort { job: String, port: String },
    #[error(
        "secrets/job/{job} has {present} but not {missing}; set both (or neither) for Basic auth"
    )]
    HalfAuth {
        job: String,
        present: &'static str,
        missing: &'static str,
    },
    #[error("secrets/job/{job} {key}: {reason}")]
    Secret {
        job: String,
        key: &'static str,
        reason: String,
    },
    #[error("POST {url}: {detail}")]
    Http { url: String, detail: String },
}

/// The remote-write target: the first non-removed allocation of the `prometheus` job (in
/// workers.json order), when that job ships a server config. `None` when there is nothing to
/// push to. `secret` opens a sealed `secrets/job/prometheus` key.
pub fn target(
    conn: &Connection,
    secret: &dyn Fn(&str) -> Result<Option<String>, String>,
) -> Result<Option<Target>, PushError> {
    let job = super::SERVER_JOB;
    let has_config: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM job_files WHERE job = ?1 AND path IN ('prometheus.yml', 'prometheus.yml.tpl'))",
        [job],
        |r| r.get(0),
    )?;
    if !has_config {
        return Ok(None);
    }
    let worker: Option<String> = conn
        .query_row(
            "SELECT a.worker_ip FROM allocations a LEFT JOIN workers w ON w.host = a.worker_ip
             WHERE a.job = ?1 AND a.removed = 0 ORDER BY w.position, a.worker_ip LIMIT 1",
            [job],
            |r| r.get(0),
        )
        .optional()?;
    let Some(worker) = worker else {
        return Ok(None);
    };
    let port: Option<u16> = conn
        .query_row(
            "SELECT port FROM job_ports WHERE job = ?1 AND name = ?2",
            [job, super::SERVER_HTTP_PORT],
            |r| r.get(0),
        )
        .optional()?;
    let port = port.ok_or_else(|| PushError::NoPort {
        job: job.into(),
        port: super::SERVER_HTTP_PORT.into(),
    })?;
    let read = |key: &'static str| {
        secret(key).map_err(|reason| PushError::Secret {
            job: job.into(),
            key,
            reason,
        })
    };
    let basic_auth = match (read("admin_username")?, read("admin_password")?) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(PushError::HalfAuth {
                job: job.into(),
                present: "admin_username",
                missing: "admin_password",
            })
        }
        (None, Some(_)) => {
            return Err(PushError::HalfAuth {
                job: job.into(),
                present: "admin_password",
                missing: "admin_username",
            })
        }
    };
    Ok(Some(Target {
        url: format!("http://{worker}:{port}/api/v1/write"),
        basic_auth,
    }))
}

enum Attempt {
    Done,
    Retry(String),
    Fail(String),
}

fn attempt(agent: &ureq::Agent, target: &Target, body: &[u8]) -> Attempt {
    let mut request = agent
        .post(&target.url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some((user, password)) = &target.basic_auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", format!("Basic {token}"));
    }
    match request.send(body) {
        Ok(response) => {
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Attempt::Done;
            }
            let text = response.into_body().read_to_string().unwrap_or_default();
            let detail = format!("status {status}: {}", text.trim());
            if status == 429 || status >= 500 {
                Attempt::Retry(detail)
            } else {
                Attempt::Fail(detail)
            }
        }
        Err(error) => Attempt::Retry(error.to_string()),
    }
}

/// POSTs `body` to the target; transient failures (network errors, 429, 5xx) are retried up
/// to five times with a backoff from 2 s doubling to at most 15 s. Returns how many attempts
/// it took.
pub fn push(target: &Target, body: &[u8]) -> Result<u32, PushError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for number in 1..=ATTEMPTS {
        match attempt(&agent, target, body) {
            Attempt::Done => return Ok(number),
            Attempt::Fail(detail) => {
                last = detail;
                break;
            }
            Attempt::Retry(detail) => {
                last = detail;
                if number < ATTEMPTS {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    Err(PushError::Http {
        url: target.url.clone(),
        detail: last,
    })
}

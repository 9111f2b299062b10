//! After a deploy: push certificate expiry gauges to the prometheus server job by remote
//! write. Best effort: the attempt is journaled as an operator-host command
//! (phase `cert_metrics`, action `push`) and a failure comes back as a warning for the caller
//! to print; it never fails the deploy.

use super::{remote_write, SERVER_JOB};
use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::catalog::tables::{self, Selection};
use crate::events::{CommandFinished, CommandOutput, CommandStarted, Event, Stream};
use crate::kv::secret::{self, SealedSecret, SecretKey};

const PHASE: &str = "cert_metrics";
const ACTION: &str = "push";

/// The target and request body, or `None` when there is nothing to push to.
fn prepare(
    bucket: &Bucket,
    shared: &SharedRun,
) -> anyhow::Result<Option<(remote_write::Target, Vec<u8>)>> {
    shared.with(|run| {
        let conn = run.conn();
        let key = SecretKey::load(&bucket.kv_key_path()).ok();
        let namespace = crate::kv::access::job_secrets(SERVER_JOB);
        let open = |name: &str| -> Result<Option<String>, String> {
            let entry = tables::kv_entry(conn, &namespace, name).map_err(|e| e.to_string())?;
            match entry.and_then(|e| e.value) {
                None => Ok(None),
                Some(crate::events::KvValue::Plain(value)) => Ok(Some(value)),
                Some(crate::events::KvValue::Sealed(text)) => {
                    let key = key.as_ref().ok_or("secrets/kv.key is not readable")?;
                    let sealed = SealedSecret::decode(&text).map_err(|e| e.to_string())?;
                    secret::open(key, &namespace, name, &sealed)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let Some(target) = remote_write::target(conn, &open)? else {
            return Ok(None);
        };
        let ca_pem = std::fs::read_to_string(bucket.ca_cert_path())?;
        let buffer = bucket.conf()?.certs_renewal_buffer;
        let leaves = tables::leaf_certs(conn, &Selection::default())?;
        let now = time::OffsetDateTime::now_utc();
        let rows = tables::cert_rows(&ca_pem, &leaves, now, buffer);
        let request = remote_write::cert_series(&rows, crate::run::now_ms());
        Ok(Some((target, remote_write::encode(&request))))
    })
}

/// Pushes the gauges and journals the attempt. Returns the warnings to show: why nothing was
/// pushed, and why the attempt could not be journaled. Empty when all went well or there was
/// nothing to push to.
pub fn push_after_deploy(bucket: &Bucket, shared: &SharedRun) -> Vec<String> {
    let mut warnings = Vec::new();
    let started = std::time::Instant::now();
    let prepared = prepare(bucket, shared);
    let (command, outcome) = match prepared {
        Ok(None) => return warnings,
        Ok(Some((target, body))) => (
            format!("POST {}", target.url),
            remote_write::push(&target, &body)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        ),
        Err(error) => ("POST (remote write)".to_string(), Err(format!("{error:#}"))),
    };
    let job = Some(SERVER_JOB.to_string());
    let mut events = vec![Event::CommandStarted(CommandStarted {
        worker: "-".into(),
        job: job.clone(),
        phase: PHASE.into(),
        action: ACTION.into(),
        command,
    })];
    if let Err(error) = &outcome {
        warnings.push(format!("cert metrics not pushed to prometheus: {error}"));
        events.push(Event::CommandOutput(CommandOutput {
            worker: "-".into(),
            job: job.clone(),
            phase: PHASE.into(),
            stream: Stream::Stderr,
            line: error.clone(),
        }));
    }
    events.push(Event::CommandFinished(CommandFinished {
        worker: "-".into(),
        job,
        phase: PHASE.into(),
        action: ACTION.into(),
        exit_code: Some(if outcome.is_ok() { 0 } else { 1 }),
        duration_ms: started.elapsed().as_millis() as u64,
        error: outcome.err(),
    }));
    if let Err(error) = shared.record(&events) {
        warnings.push(format!("cannot journal the cert metrics push: {error}"));
    }
    warnings
}

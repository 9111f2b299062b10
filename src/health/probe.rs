//! Running manifest probes against one allocation from the operator host: `tcp` connects to
//! the worker's address on the job's port, `http`/`https` sends one GET there, `ssh` runs the
//! declared command line on the worker through the fleet's session (journaled like every
//! remote command, phase `health_check`). Each probe is bounded by the job's timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::catalog::HealthTarget;
use super::http;
use super::plan::{CheckOutcome, PlannedCheck};
use super::HealthError;
use crate::activity::SharedRun;
use crate::remote::{bucket_dir_on_worker, CapturedOutput, Fleet, RemoteCommand};
use crate::workspace::HttpScheme;

/// The journal phase of health activity.
pub(super) const PHASE: &str = "health_check";

/// Runs an `ssh` probe's command line in the job's directory on the worker (the login
/// directory when the job has no tree there), with the allocation in its environment.
const SSH_WRAPPER: &str = "cd \"$1\" 2>/dev/null || true; \
     export JOB=\"$2\" ALLOCATION_ID=\"$3\" WORKER_IP=\"$4\"; exec bash -c \"$5\"";

/// What probes need besides the check itself.
#[derive(Clone)]
pub(super) struct Prober {
    pub fleet: Fleet,
    pub run: SharedRun,
    pub bucket_id: Arc<str>,
    /// Present when some probe uses https.
    pub tls: Option<TlsConnector>,
    /// Echo `ssh` probe output as `job@worker | line`.
    pub echo: bool,
}

impl Prober {
    /// Runs one probe. Fails only when the journal could not record the probe's activity, or
    /// an https probe has no CA to verify with.
    pub(super) async fn probe(
        &self,
        target: &HealthTarget,
        check: &PlannedCheck,
        timeout: Duration,
    ) -> Result<CheckOutcome, HealthError> {
        let host = target.worker_ip.as_str();
        let within = |seconds: Duration| format!("no answer within {}s", seconds.as_secs());
        Ok(match check {
            PlannedCheck::Tcp { port, .. } => {
                match tokio::time::timeout(timeout, TcpStream::connect((host, *port))).await {
                    Ok(Ok(_)) => CheckOutcome::Passed("connected".into()),
                    Ok(Err(error)) => CheckOutcome::Failed(format!("cannot connect: {error}")),
                    Err(_) => CheckOutcome::Failed(within(timeout)),
                }
            }
            PlannedCheck::Http {
                port,
                path,
                expect_status,
                scheme,
                ..
            } => {
                let tls = match (scheme, &self.tls) {
                    (HttpScheme::Http, _) => None,
                    (HttpScheme::Https, Some(tls)) => Some(tls),
                    (HttpScheme::Https, None) => {
                        return Err(HealthError::CaCertificate {
                            namespace: crate::certs::CA_KV_NAMESPACE,
                            key: crate::certs::CA_KV_KEY,
                            reason: "it is missing".into(),
                        })
                    }
                };
                let request = http::get_status(host, *port, path, tls);
                match tokio::time::timeout(timeout, request).await {
                    Ok(Ok(status)) if status == *expect_status => {
                        CheckOutcome::Passed(format!("status {status}"))
                    }
                    Ok(Ok(status)) => {
                        CheckOutcome::Failed(format!("status {status}, expected {expect_status}"))
                    }
                    Ok(Err(error)) => CheckOutcome::Failed(error.to_string()),
                    Err(_) => CheckOutcome::Failed(within(timeout)),
                }
            }
            PlannedCheck::Ssh { command } => self.ssh(target, command, timeout).await?,
            PlannedCheck::UnassignedPort { port_name, .. } => CheckOutcome::Failed(format!(
                "port {port_name} has no number in the catalog; run `maand build`"
            )),
        })
    }

    async fn ssh(
        &self,
        target: &HealthTarget,
        command: &str,
        timeout: Duration,
    ) -> Result<CheckOutcome, HealthError> {
        let session = match self.fleet.session(&target.worker_ip).await {
            Ok(session) => session,
            Err(error) => return Ok(CheckOutcome::Failed(error.to_string())),
        };
        let job_dir = format!(
            "{}/jobs/{}",
            bucket_dir_on_worker(&self.bucket_id),
            target.job
        );
        let remote = match RemoteCommand::new(
            [
                "bash",
                "-c",
                SSH_WRAPPER,
                "maand-health-check",
                &job_dir,
                &target.job,
                &target.alloc_id,
                &target.worker_ip,
                command,
            ],
            timeout,
        ) {
            Ok(remote) => remote,
            Err(error) => return Ok(CheckOutcome::Failed(error.to_string())),
        };
        let observer = self
            .run
            .observer(Some(&target.job), PHASE, "ssh", self.echo);
        let result = session.capture(&remote, &observer).await;
        if let Some(error) = observer.journal_error() {
            return Err(HealthError::Journal(error));
        }
        Ok(match result {
            Ok(captured) if captured.outcome.success() => CheckOutcome::Passed("exit 0".into()),
            Ok(captured) => CheckOutcome::Failed(exit_detail(&captured)),
            Err(error) => CheckOutcome::Failed(error.to_string()),
        })
    }
}

/// `exit N`, with the last line the command printed (stderr first) when there is one.
fn exit_detail(captured: &CapturedOutput) -> String {
    let last = captured
        .stderr
        .iter()
        .rev()
        .chain(captured.stdout.iter().rev())
        .find(|line| !line.trim().is_empty());
    match last {
        Some(line) => format!("exit {}: {}", captured.outcome.exit_code, line.trim()),
        None => format!("exit {}", captured.outcome.exit_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::CommandOutcome;

    #[test]
    fn a_failed_command_is_described_by_its_exit_code_and_last_words() {
        let captured = |stdout: &[&str], stderr: &[&str]| CapturedOutput {
            outcome: CommandOutcome {
                exit_code: 3,
                duration: Duration::from_millis(5),
            },
            stdout: stdout.iter().map(|s| s.to_string()).collect(),
            stderr: stderr.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            exit_detail(&captured(&["inactive"], &[])),
            "exit 3: inactive"
        );
        assert_eq!(
            exit_detail(&captured(&["out"], &["not ready", ""])),
            "exit 3: not ready"
        );
        assert_eq!(exit_detail(&captured(&[], &[])), "exit 3");
    }
}

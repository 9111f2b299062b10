//! The worker SSH gate: before checking jobs, each worker must answer on its SSH port with an
//! SSH identification line (`SSH-2.0-...`). This is stronger than a bare TCP connect (a
//! firewall or another service on the port fails it) and cheaper than a login: no key
//! exchange, no authentication, nothing runs on the worker.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::workspace::HealthWait;

/// The most bytes read while looking for the identification line (servers may send a few
/// lines of text before it).
const BANNER_LIMIT: usize = 2048;

/// How one worker answered the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerGate {
    pub worker: String,
    /// The identification line, or why none came.
    pub result: Result<String, String>,
    /// Attempts made.
    pub attempts: u32,
}

impl WorkerGate {
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

/// Dials `port` on every worker in `workers`, each answer bounded by `timeout`. With `wait`,
/// a worker that does not answer is tried again up to `wait.attempts` times,
/// `wait.interval_seconds` apart. Results come back in the order of `workers`.
pub async fn gate_workers(
    workers: &[String],
    port: u16,
    timeout: Duration,
    wait: Option<HealthWait>,
) -> Vec<WorkerGate> {
    let attempts = wait.map_or(1, |w| w.attempts.max(1));
    let interval = Duration::from_secs(wait.map_or(0, |w| u64::from(w.interval_seconds)));
    let mut running = JoinSet::new();
    for (position, worker) in workers.iter().enumerate() {
        let worker = worker.clone();
        running.spawn(async move {
            let mut attempt = 1;
            loop {
                let result = banner(&worker, port, timeout).await;
                if result.is_ok() || attempt >= attempts {
                    return (
                        position,
                        WorkerGate {
                            worker,
                            result,
                            attempts: attempt,
                        },
                    );
                }
                attempt += 1;
                tokio::time::sleep(interval).await;
            }
        });
    }
    let mut gates: Vec<Option<WorkerGate>> = workers.iter().map(|_| None).collect();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((position, gate)) => gates[position] = Some(gate),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    gates
        .into_iter()
        .map(|gate| gate.expect("every worker reports"))
        .collect()
}

/// The worker's SSH identification line.
async fn banner(worker: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect((worker, port))
            .await
            .map_err(|e| format!("cannot connect to port {port}: {e}"))?;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 256];
        loop {
            if let Some(line) = identification(&seen) {
                return Ok(line);
            }
            if seen.len() >= BANNER_LIMIT {
                return Err(format!(
                    "port {port} answers, but not with SSH (no identification line in {BANNER_LIMIT} bytes)"
                ));
            }
            let read = stream
                .read(&mut buffer)
                .await
                .map_err(|e| format!("port {port}: {e}"))?;
            if read == 0 {
                return Err(format!(
                    "port {port} closed the connection without an SSH identification line"
                ));
            }
            seen.extend_from_slice(&buffer[..read]);
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no SSH answer on port {port} within {}s; check that the worker is up and sshd runs",
            timeout.as_secs()
        )),
    }
}

/// The first complete line starting with `SSH-`, without its line end.
fn identification(seen: &[u8]) -> Option<String> {
    let mut rest = seen;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&rest[..end]);
        let line = line.trim_end_matches('\r');
        if line.starts_with("SSH-") {
            return Some(line.to_string());
        }
        rest = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn the_identification_line_may_follow_other_lines() {
        assert_eq!(
            identification(b"hello\r\nSSH-2.0-OpenSSH_9.2\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2")
        );
        assert_eq!(identification(b"SSH-2.0-partial"), None);
        assert_eq!(identification(b"HTTP/1.1 400\r\n"), None);
    }

    async fn answering(text: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(text).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn an_ssh_server_passes_and_another_service_fails() {
        let workers = vec!["127.0.0.1".to_string()];
        let ssh = answering(b"SSH-2.0-Test\r\n").await;
        let gates = gate_workers(&workers, ssh, Duration::from_secs(5), None).await;
        assert_eq!(gates[0].result, Ok("SSH-2.0-Test".into()));
        let http = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let gates = gate_workers(&workers, http, Duration::from_secs(5), None).await;
        let error = gates[0].result.clone().unwrap_err();
        assert!(error.contains("without an SSH identification"), "{error}");
        assert_eq!(gates[0].attempts, 1);
    }

    #[tokio::test]
    async fn waiting_retries_a_silent_port_the_given_number_of_times() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let wait = HealthWait {
            attempts: 3,
            interval_seconds: 0,
        };
        let gates = gate_workers(
            &["127.0.0.1".to_string()],
            port,
            Duration::from_secs(5),
            Some(wait),
        )
        .await;
        assert_eq!(gates[0].attempts, 3);
        assert!(gates[0]
            .result
            .as_ref()
            .unwrap_err()
            .contains("cannot connect"));
    }
}

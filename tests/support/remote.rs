//! Glue between the test cluster and `maand::remote`: a [`RemoteConfig`] for a cluster and an
//! [`Observer`] that keeps every record for assertions.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use maand::remote::{MasterPolicy, Observer, RemoteConfig, RemoteRecord, Stream};

use super::cluster::Cluster;

/// Settings for `cluster`, with a known_hosts file of the test's own (trust on first use),
/// as a bucket would have.
pub fn config(cluster: &Cluster, known_hosts: &Path) -> RemoteConfig {
    RemoteConfig {
        user: cluster.user().to_string(),
        port: cluster.port(),
        key_path: cluster.key_path().to_path_buf(),
        known_hosts_path: known_hosts.to_path_buf(),
        use_sudo: true,
        connect_timeout: Duration::from_secs(2),
        masters: MasterPolicy::PerCommand,
    }
}

/// Keeps every record it is given, in arrival order.
#[derive(Default)]
pub struct Recorder {
    records: Mutex<Vec<RemoteRecord>>,
}

impl Recorder {
    pub fn records(&self) -> Vec<RemoteRecord> {
        self.records.lock().unwrap().clone()
    }

    /// The records about `worker`, in arrival order.
    pub fn records_of(&self, worker: &str) -> Vec<RemoteRecord> {
        self.records()
            .into_iter()
            .filter(|record| record_worker(record) == worker)
            .collect()
    }

    /// Output lines of `worker` on `stream`, in arrival order.
    pub fn lines(&self, worker: &str, stream: Stream) -> Vec<String> {
        self.records_of(worker)
            .into_iter()
            .filter_map(|record| match record {
                RemoteRecord::OutputLine {
                    stream: s, line, ..
                } if s == stream => Some(line),
                _ => None,
            })
            .collect()
    }
}

impl Observer for Recorder {
    fn record(&self, record: RemoteRecord) {
        self.records.lock().unwrap().push(record);
    }
}

pub fn record_worker(record: &RemoteRecord) -> &str {
    match record {
        RemoteRecord::CommandStarted { worker, .. }
        | RemoteRecord::OutputLine { worker, .. }
        | RemoteRecord::CommandFinished { worker, .. }
        | RemoteRecord::CommandFailed { worker, .. } => worker,
    }
}

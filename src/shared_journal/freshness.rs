//! Owns `data/shared-journal.json`: when this cache last caught up with the shared journal and
//! at which head, so a read command that cannot reach PostgreSQL can say how stale its answer
//! is. A note about the cache, not part of it: losing it loses nothing but that message.

use crate::bucket::Bucket;
use serde::{Deserialize, Serialize};

/// The cache's last successful contact with the shared journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// When the cache was last known to hold every shared event (epoch milliseconds).
    pub synced_ms: i64,
    /// The head it held then.
    pub head: u64,
}

fn path(bucket: &Bucket) -> std::path::PathBuf {
    bucket.data_dir().join("shared-journal.json")
}

/// Notes that the cache holds every shared event up to `head` now.
pub(super) fn record_sync(bucket: &Bucket, head: u64) {
    let note = Freshness {
        synced_ms: crate::run::now_ms(),
        head,
    };
    let text = serde_json::to_string(&note).expect("freshness serializes");
    if let Err(error) = std::fs::write(path(bucket), text) {
        tracing::warn!("could not note the shared journal sync time: {error}");
    }
}

/// The last sync noted for this cache, if any.
pub fn last_sync(bucket: &Bucket) -> Option<Freshness> {
    let text = std::fs::read_to_string(path(bucket)).ok()?;
    serde_json::from_str(&text).ok()
}

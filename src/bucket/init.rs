//! `maand init`: lay out a new bucket or bring an existing one up to date.
//!
//! Files are created only when missing (never overwritten). The decision of which events to
//! record is the pure [`decide_init`]; [`initialize`] performs the file work around it.

use super::{write_atomically, Bucket, BucketError, MaandConf, LATEST_SCHEMA};
use crate::events::{BucketInitialized, BucketUpgraded, Event};
use std::path::Path;

/// The default `workspace/bucket.conf`.
pub const DEFAULT_BUCKET_CONF: &str =
    "# Bucket-wide settings. port_min/port_max bound the pool for `{}` job ports;\n\
# every other key is published to the KV namespace vars/bucket.\n\
port_min = \"30000\"\n\
port_max = \"39999\"\n";

/// What `maand init` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created {
        bucket_id: String,
    },
    Upgraded {
        bucket_id: String,
        from: u32,
        to: u32,
    },
    UpToDate {
        bucket_id: String,
    },
}

/// Decides the events of an init from what the database already holds.
pub fn decide_init(
    existing_bucket_id: Option<&str>,
    schema_before: u32,
    new_bucket_id: &str,
    ca_fingerprint: &str,
) -> (Vec<Event>, InitOutcome) {
    match existing_bucket_id {
        None => (
            vec![Event::BucketInitialized(BucketInitialized {
                bucket_id: new_bucket_id.to_string(),
                schema_version: LATEST_SCHEMA,
                ca_fingerprint: ca_fingerprint.to_string(),
            })],
            InitOutcome::Created {
                bucket_id: new_bucket_id.to_string(),
            },
        ),
        Some(id) if schema_before < LATEST_SCHEMA => (
            vec![Event::BucketUpgraded(BucketUpgraded {
                from_schema: schema_before,
                to_schema: LATEST_SCHEMA,
            })],
            InitOutcome::Upgraded {
                bucket_id: id.to_string(),
                from: schema_before,
                to: LATEST_SCHEMA,
            },
        ),
        Some(id) => (
            vec![],
            InitOutcome::UpToDate {
                bucket_id: id.to_string(),
            },
        ),
    }
}

/// Creates whatever of the bucket layout is missing. Existing files are left untouched.
pub fn lay_out(bucket: &Bucket) -> Result<(), BucketError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        bucket.root().to_path_buf(),
        bucket.data_dir(),
        bucket.workspace_dir(),
        bucket.workspace_dir().join("jobs"),
        bucket.secrets_dir(),
        bucket.tmp_dir(),
        bucket.logs_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(BucketError::io(&dir))?;
    }
    let secrets = bucket.secrets_dir();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))
        .map_err(BucketError::io(&secrets))?;
    write_if_missing(
        &bucket.conf_path(),
        MaandConf::default_file_text().as_bytes(),
    )?;
    write_if_missing(&bucket.workspace_dir().join("workers.json"), b"[]\n")?;
    write_if_missing(
        &bucket.workspace_dir().join("bucket.conf"),
        DEFAULT_BUCKET_CONF.as_bytes(),
    )?;
    Ok(())
}

/// Files that only an initialized bucket leaves behind: finding one where no bucket identity
/// is recorded means an earlier bucket's catalog is gone (or damaged), not that the directory
/// is new. Paths relative to the bucket, in a stable order.
pub fn earlier_bucket_traces(bucket: &Bucket) -> Vec<String> {
    let mut traces = Vec::new();
    for name in ["ca.crt", "ca.key", "kv.key"] {
        if bucket.secrets_dir().join(name).exists() {
            traces.push(format!("secrets/{name}"));
        }
    }
    let listed = |dir: &Path, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| keep(name))
            .collect();
        names.sort();
        names
    };
    if !listed(&bucket.logs_dir(), &|_| true).is_empty() {
        traces.push("logs/".into());
    }
    for name in listed(&bucket.data_dir(), &|name| {
        name.starts_with("maand.db.") || name == "go-maand.db"
    }) {
        traces.push(format!("data/{name}"));
    }
    traces
}

/// Why `init` refuses to create a new bucket identity among `traces`, and what to do instead.
pub fn explain_traces(bucket: &Bucket, traces: &[String]) -> String {
    let old_id = std::fs::read_to_string(bucket.logs_dir().join("maand.log"))
        .ok()
        .and_then(|log| {
            log.split_whitespace()
                .find_map(|field| field.strip_prefix("bucket_id=").map(str::to_string))
        });
    let workers = match &old_id {
        Some(id) => format!(
            "; its logs name bucket id {id}, whose jobs live under /opt/worker/{id}/ on the workers"
        ),
        None => String::new(),
    };
    let damaged = traces
        .iter()
        .any(|t| t.starts_with("data/maand.db.damaged-"));
    let mut options = vec!["restore data/maand.db from a backup of this bucket".to_string()];
    if damaged {
        options.push(
            "or, if data/maand.db was damaged, keep its readable history with `maand journal rebuild --salvage` (on the damaged file put back as data/maand.db)".into(),
        );
    }
    options.push(
        "or, to start a different bucket here on purpose, move secrets/, logs/ and data/ away first (the workers keep running the old bucket's jobs until you stop them)".into(),
    );
    format!(
        "{} holds traces of an earlier bucket ({}) but no bucket identity in data/maand.db{workers}. A new identity here would deploy a second copy of every job beside the old one and could not open the old secrets, so init refuses. Options: {}. Nothing was changed",
        bucket.root().display(),
        traces.join(", "),
        options.join("; ")
    )
}

fn write_if_missing(path: &Path, contents: &[u8]) -> Result<(), BucketError> {
    if path.exists() {
        return Ok(());
    }
    write_atomically(path, contents, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_bucket_records_its_identity() {
        let (events, outcome) = decide_init(None, 0, "id-1", "fp");
        assert_eq!(
            outcome,
            InitOutcome::Created {
                bucket_id: "id-1".into()
            }
        );
        assert!(
            matches!(&events[..], [Event::BucketInitialized(e)] if e.bucket_id == "id-1" && e.ca_fingerprint == "fp")
        );
    }

    #[test]
    fn an_existing_bucket_keeps_its_id_and_records_only_an_upgrade() {
        if LATEST_SCHEMA > 1 {
            let (events, outcome) = decide_init(Some("old"), LATEST_SCHEMA - 1, "new", "fp");
            assert!(
                matches!(outcome, InitOutcome::Upgraded { ref bucket_id, .. } if bucket_id == "old")
            );
            assert!(matches!(&events[..], [Event::BucketUpgraded(_)]));
        }
        let (events, outcome) = decide_init(Some("old"), LATEST_SCHEMA, "new", "fp");
        assert_eq!(
            outcome,
            InitOutcome::UpToDate {
                bucket_id: "old".into()
            }
        );
        assert!(events.is_empty());
    }

    #[test]
    fn lay_out_never_overwrites_an_edited_file() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::at(dir.path());
        lay_out(&bucket).unwrap();
        std::fs::write(bucket.conf_path(), "ssh_user = \"ops\"\n").unwrap();
        lay_out(&bucket).unwrap();
        assert_eq!(
            std::fs::read_to_string(bucket.conf_path()).unwrap(),
            "ssh_user = \"ops\"\n"
        );
    }
}

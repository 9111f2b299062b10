//! The first deploy of allocations adopted from the Go maand: before planning, rsync compares
//! (by checksum, without changing anything) each adopted allocation's staged job tree with the
//! tree on its worker. Those it finds identical are planned as a copy and a promote, without a
//! lifecycle target; the rest are ordinary updates.
//!
//! Only the job's own tree (`jobs/<job>/`, without the worker's `data/`, `logs/` and `bin/`)
//! is compared; maand's helper files (`worker.json`, `jobs.json`, the runner under `bin/`)
//! always differ between the two implementations and do not count.

use super::ops::TRANSFER_TIMEOUT;
use super::prepare::Prepared;
use crate::activity::SharedRun;
use crate::bucket::Bucket;
use crate::remote::{bucket_dir_on_worker, FilterRule, Fleet, Transfer};
use std::collections::BTreeSet;
use std::time::Duration;

/// Whether one line of rsync's `--itemize-changes` output changes the tree's content: a
/// deletion, a new item, different content or size, or other permissions. Time, owner and
/// group alone do not count (rsync sets them from the staged copy).
pub fn is_content_change(line: &str) -> bool {
    if line.starts_with("*deleting") {
        return true;
    }
    let mut parts = line.splitn(2, ' ');
    let flags = parts.next().unwrap_or_default().as_bytes();
    if flags.len() < 11 {
        return false;
    }
    let attributes = &flags[2..11];
    attributes.iter().all(|b| *b == b'+')
        || attributes[0] == b'c'
        || attributes[1] == b's'
        || attributes[3] == b'p'
}

/// Adopted, active allocations of the selected jobs whose staged tree is known now.
fn candidates(prepared: &Prepared) -> Vec<(String, String, String)> {
    let selected = |job: &str| {
        prepared.input.flags.jobs.is_empty() || prepared.input.flags.jobs.iter().any(|j| j == job)
    };
    prepared
        .input
        .allocations
        .iter()
        .filter(|a| !a.removed && !a.disabled && selected(&a.job))
        .filter(|a| a.deployed.as_ref().is_some_and(|d| d.adopted))
        .filter(|a| prepared.trees.contains_key(&a.alloc_id))
        .map(|a| (a.alloc_id.clone(), a.job.clone(), a.worker.clone()))
        .collect()
}

/// The adopted allocations whose worker already holds exactly their staged job tree. An
/// allocation whose worker cannot be compared (unreachable, rsync failure) is left out: it
/// deploys as an ordinary update.
pub fn unchanged_on_workers(
    bucket: &Bucket,
    prepared: &Prepared,
    run: &SharedRun,
) -> Result<BTreeSet<String>, String> {
    let candidates = candidates(prepared);
    if candidates.is_empty() {
        return Ok(BTreeSet::new());
    }
    let root = bucket.tmp_dir().join("adopt");
    let store = bucket.tmp_dir().join("adopt-store");
    for dir in [&root, &store] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
        }
    }
    let file_store = super::stage::FileStore::new(store.clone());
    for (alloc_id, job, worker) in &candidates {
        let dir = root.join(worker).join(job);
        prepared.trees[alloc_id]
            .write_to(&dir, &file_store)
            .map_err(|e| format!("writing {}: {e}", dir.display()))?;
    }
    let conf = bucket.conf().map_err(|e| e.to_string())?;
    let fleet = Fleet::new(
        bucket
            .remote_config(&conf, Duration::from_secs(10))
            .map_err(|e| e.to_string())?,
        32,
    )
    .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let bucket_dir = bucket_dir_on_worker(&prepared.bucket_id);
    let unchanged = runtime.block_on(async {
        let checks = candidates.iter().map(|(alloc_id, job, worker)| {
            let fleet = &fleet;
            let source = root.join(worker).join(job);
            let destination = format!("{bucket_dir}/jobs/{job}");
            async move {
                let transfer = Transfer {
                    source,
                    destination,
                    filters: vec![
                        FilterRule::Exclude("/data/".into()),
                        FilterRule::Exclude("/logs/".into()),
                        FilterRule::Exclude("/bin/".into()),
                    ],
                    delete: true,
                    checksum: true,
                    timeout: TRANSFER_TIMEOUT,
                };
                let observer = run.observer(Some(job), "rsync", "adopt_check", false);
                let session = fleet.session(worker).await.ok()?;
                let summary = session.preview(&transfer, &observer).await.ok()?;
                (!summary.changes.iter().any(|l| is_content_change(l))).then(|| alloc_id.clone())
            }
        });
        let mut unchanged = BTreeSet::new();
        for check in checks {
            if let Some(alloc_id) = check.await {
                unchanged.insert(alloc_id);
            }
        }
        unchanged
    });
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&store);
    Ok(unchanged)
}

#[cfg(test)]
mod tests {
    use super::is_content_change;

    #[test]
    fn only_content_size_permission_new_and_deleted_items_count_as_changes() {
        for changed in [
            ">fc.t...... Makefile",
            ">f.st...... app.conf",
            ">f+++++++++ new.conf",
            "cd+++++++++ certs/",
            "*deleting   old.conf",
            ".f...p..... bin.sh",
        ] {
            assert!(is_content_change(changed), "{changed}");
        }
        for unchanged in [
            ".d..t...... ./",
            ".f..t...... Makefile",
            ".f....og... x",
            "",
        ] {
            assert!(!is_content_change(unchanged), "{unchanged}");
        }
    }
}

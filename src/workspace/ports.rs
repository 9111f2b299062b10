//! Bucket-wide port rules that span jobs: a fixed port number may be declared only once in
//! the bucket, and a port name only once (names share the `maand/bucket` KV namespace).
//! Assigning numbers to `{}` ports from the pool is the build step's job.

use std::collections::BTreeMap;
use std::path::Path;

use super::errors::{ErrorKind, FileReport, WorkspaceError};
use super::manifest::PortSpec;
use super::{manifest_file, JobDraft};

/// Reports fixed-number and name collisions between ports of all jobs. The first
/// declaration (by job name, then port name) wins; later ones are reported.
pub(crate) fn check(
    jobs: &BTreeMap<String, JobDraft>,
    root: &Path,
    errors: &mut Vec<WorkspaceError>,
) {
    let mut numbers: BTreeMap<u16, (&str, &str)> = BTreeMap::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for (job, draft) in jobs {
        let mut report = FileReport::new(manifest_file(root, job), errors);
        for (name, spec) in &draft.job.manifest.resources.ports {
            let location = format!("resources.ports.{name}");
            if let Some(first_job) = names.get(name.as_str()) {
                report.at(
                    &location,
                    ErrorKind::PortConflict,
                    format!(
                        "port name {name} is also declared by job {first_job}; port names are shared across the bucket, rename one (e.g. {job}_{name})"
                    ),
                );
            } else {
                names.insert(name, job);
            }
            let PortSpec::Fixed(number) = spec else {
                continue;
            };
            if let Some((first_job, first_name)) = numbers.get(number) {
                report.at(
                    &location,
                    ErrorKind::PortConflict,
                    format!(
                        "port {number} is already used by {first_job}.{first_name}; choose another number or use {{}} to have one assigned"
                    ),
                );
            } else {
                numbers.insert(*number, (job, name));
            }
        }
    }
}

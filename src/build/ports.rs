//! Port assignment: fixed ports from manifests, `{}` ports from the bucket pool (lowest free,
//! stable across builds while the kept number stays inside the pool).

use super::{BuildError, CatalogSnapshot};
use crate::events::{Event, PortAssigned, PortReleased};
use crate::workspace::{PortSpec, Workspace};
use std::collections::{BTreeMap, BTreeSet};

pub(super) struct PortPlan {
    /// (job, port name) → port, for every declared port.
    pub assigned: BTreeMap<(String, String), u16>,
    pub events: Vec<Event>,
}

pub(super) fn assign(
    ws: &Workspace,
    current: &CatalogSnapshot,
    errors: &mut Vec<BuildError>,
) -> PortPlan {
    let (min, max) = (ws.bucket_conf.port_min, ws.bucket_conf.port_max);
    let mut assigned = BTreeMap::new();
    let mut from_pool = BTreeMap::new();
    let mut taken: BTreeMap<u16, (String, String)> = BTreeMap::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    let manifest = |job: &str| format!("workspace/jobs/{job}/manifest.json");

    // Port names are keys of the shared maand/bucket namespace, so they must be unique.
    for job in ws.jobs.values() {
        for name in job.manifest.resources.ports.keys() {
            if let Some(other) = names.insert(name, &job.name) {
                errors.push(BuildError {
                    file: manifest(&job.name),
                    kind: "ErrPortKeyFormat",
                    message: format!(
                        "resources.ports.{name}: job {other} already declares a port named {name}; port names are keys of maand/bucket and must be unique in the bucket (prefix it, e.g. {}_{name})",
                        job.name
                    ),
                });
            }
        }
    }
    // Pass 1: fixed ports, then pool ports that keep their number.
    let mut pending = Vec::new();
    for job in ws.jobs.values() {
        for (name, spec) in &job.manifest.resources.ports {
            let key = (job.name.clone(), name.clone());
            let port = match spec {
                PortSpec::Fixed(port) => *port,
                PortSpec::Pool => match current.ports.get(&key) {
                    Some((port, _)) if (min..=max).contains(port) => *port,
                    _ => {
                        pending.push(key);
                        continue;
                    }
                },
            };
            if let Some((other_job, other_name)) = taken.get(&port) {
                errors.push(BuildError {
                    file: manifest(&job.name),
                    kind: "ErrInvalidManifestPort",
                    message: format!(
                        "resources.ports.{name}: port {port} is already used by {other_job}.{other_name}; pick another port or use {{}} to get one from the pool"
                    ),
                });
                continue;
            }
            taken.insert(port, key.clone());
            from_pool.insert(key.clone(), matches!(spec, PortSpec::Pool));
            assigned.insert(key, port);
        }
    }
    // Pass 2: new pool ports take the lowest free numbers.
    let mut candidates = min..=max;
    for key in pending {
        match candidates.by_ref().find(|p| !taken.contains_key(p)) {
            Some(port) => {
                taken.insert(port, key.clone());
                from_pool.insert(key.clone(), true);
                assigned.insert(key, port);
            }
            None => errors.push(BuildError {
                file: "workspace/bucket.conf".to_string(),
                kind: "ErrPortRangeExhausted",
                message: format!(
                    "no free port left in port_min..port_max ({min}..{max}) for {}.{}; widen the range",
                    key.0, key.1
                ),
            }),
        }
    }
    let mut events = Vec::new();
    for (key, port) in &assigned {
        let pool = from_pool[key];
        if current.ports.get(key) != Some(&(*port, pool)) {
            events.push(Event::PortAssigned(PortAssigned {
                job: key.0.clone(),
                name: key.1.clone(),
                port: *port,
                from_pool: pool,
            }));
        }
    }
    let declared: BTreeSet<_> = assigned.keys().collect();
    for key in current.ports.keys() {
        if !declared.contains(key) {
            events.push(Event::PortReleased(PortReleased {
                job: key.0.clone(),
                name: key.1.clone(),
            }));
        }
    }
    PortPlan { assigned, events }
}

//! The KV a build owns: the values every build-owned namespace should hold (catalog metadata,
//! bucket vars, per-allocation keys, certificates), the put-only merge of `vars.toml`, and the
//! changes that take the current KV there.

use super::placement::Placement;
use super::{derived_id, BuildContext, BuildError, CatalogSnapshot};
use crate::certs::{self, CertDefinition, WorkerAddress};
use crate::events::{Event, KvChange, KvChanged, KvValue};
use crate::workspace::{CertSpec, Workspace};
use std::collections::{BTreeMap, BTreeSet};

type Desired = BTreeMap<String, BTreeMap<String, KvValue>>;

/// Whether build owns (and therefore prunes) a namespace.
pub fn is_build_owned(namespace: &str) -> bool {
    namespace.starts_with("maand/")
        || namespace == "vars/bucket"
        || namespace.starts_with("vars/bucket/job/")
}

pub(super) fn cert_definition(
    name: &str,
    spec: &CertSpec,
) -> Result<CertDefinition, certs::CertError> {
    CertDefinition::new(name, spec.subject.clone(), spec.one, spec.pkcs8)
}

fn put(desired: &mut Desired, namespace: &str, key: impl Into<String>, value: impl Into<String>) {
    desired
        .entry(namespace.to_string())
        .or_default()
        .insert(key.into(), KvValue::Plain(value.into()));
}

pub(super) fn decide<R: rand::CryptoRng + ?Sized>(
    ws: &Workspace,
    current: &CatalogSnapshot,
    placement: &Placement,
    ports: &BTreeMap<(String, String), u16>,
    ctx: &mut BuildContext<'_, R>,
) -> Result<Vec<Event>, BuildError> {
    let mut desired = Desired::new();
    let position: BTreeMap<&str, usize> = ws
        .workers
        .iter()
        .map(|w| (w.host.as_str(), w.position))
        .collect();
    let by_position = |hosts: &mut Vec<String>| {
        hosts.sort_by_key(|h| position.get(h.as_str()).copied().unwrap_or(usize::MAX))
    };

    let active_jobs: BTreeSet<&str> = placement.active().map(|a| a.job.as_str()).collect();
    // Allocations grouped once, so large fleets cost one pass rather than one per worker/job.
    let mut active_by_worker: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut active_by_job: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for allocation in placement.active() {
        active_by_worker
            .entry(allocation.worker_ip.as_str())
            .or_default()
            .push(allocation.job.as_str());
        active_by_job
            .entry(allocation.job.as_str())
            .or_default()
            .push(allocation.worker_ip.clone());
    }
    let mut present_by_job: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for allocation in placement.present() {
        present_by_job
            .entry(allocation.job.as_str())
            .or_default()
            .push(allocation.worker_ip.clone());
    }

    // maand/bucket and vars/bucket
    let bucket = "maand/bucket";
    put(&mut desired, bucket, "bucket_id", current.bucket_id.clone());
    put(
        &mut desired,
        bucket,
        "jobs",
        ws.jobs.keys().cloned().collect::<Vec<_>>().join(","),
    );
    put(
        &mut desired,
        bucket,
        "activejobs",
        active_jobs.iter().copied().collect::<Vec<_>>().join(","),
    );
    for ((job, name), port) in ports {
        if active_jobs.contains(job.as_str()) {
            put(&mut desired, bucket, name.clone(), port.to_string());
        }
    }
    for (key, value) in &ws.bucket_conf.vars {
        put(&mut desired, "vars/bucket", key.clone(), value.clone());
    }
    // The port pool is published with the other bucket variables, as the Go maand does.
    put(
        &mut desired,
        "vars/bucket",
        "port_min",
        ws.bucket_conf.port_min.to_string(),
    );
    put(
        &mut desired,
        "vars/bucket",
        "port_max",
        ws.bucket_conf.port_max.to_string(),
    );

    // maand/worker (per label) and maand/worker/<ip>
    let mut by_label: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for worker in &ws.workers {
        for label in &worker.labels {
            by_label.entry(label).or_default().push(worker.host.clone());
        }
    }
    put(
        &mut desired,
        certs::CA_KV_NAMESPACE,
        certs::CA_KV_KEY,
        ctx.ca.cert_pem().to_string(),
    );
    for (label, hosts) in &by_label {
        let ns = "maand/worker";
        put(
            &mut desired,
            ns,
            format!("{label}_workers"),
            hosts.join(","),
        );
        put(
            &mut desired,
            ns,
            format!("{label}_workers_length"),
            hosts.len().to_string(),
        );
        put(
            &mut desired,
            ns,
            format!("{label}_label_id"),
            derived_id("label", label),
        );
        for (i, host) in hosts.iter().enumerate() {
            put(&mut desired, ns, format!("{label}_{i}"), host.clone());
        }
    }
    for worker in &ws.workers {
        let ns = format!("maand/worker/{}", worker.host);
        put(&mut desired, &ns, "worker_ip", worker.host.clone());
        put(
            &mut desired,
            &ns,
            "worker_id",
            derived_id("worker", &worker.host),
        );
        if let Some(hostname) = &worker.hostname {
            put(&mut desired, &ns, "hostname", hostname.clone());
        }
        put(&mut desired, &ns, "position", worker.position.to_string());
        put(
            &mut desired,
            &ns,
            "labels",
            worker.labels.iter().cloned().collect::<Vec<_>>().join(","),
        );
        if let Some(memory) = worker.memory_mb {
            put(&mut desired, &ns, "worker_memory_mb", memory.to_string());
        }
        if let Some(cpu) = worker.cpu_mhz {
            put(&mut desired, &ns, "worker_cpu_mhz", cpu.to_string());
        }
        let jobs = active_by_worker
            .get(worker.host.as_str())
            .map(|jobs| jobs.join(","))
            .unwrap_or_default();
        put(&mut desired, &ns, "jobs", jobs);
        // `<label>_peers` is derived on read from `<label>_workers` (see kv::peers).
        for label in &worker.labels {
            let hosts = &by_label[label.as_str()];
            let index = hosts.iter().position(|h| *h == worker.host).unwrap_or(0);
            put(
                &mut desired,
                &ns,
                format!("{label}_allocation_index"),
                index.to_string(),
            );
        }
        for (key, value) in &worker.tags {
            put(
                &mut desired,
                &format!("{ns}/tags"),
                key.clone(),
                value.clone(),
            );
        }
    }

    // maand/job/<job> and vars/bucket/job/<job> of every job (a job without an active
    // allocation has empty worker lists), allocation namespaces
    for job in ws.jobs.values() {
        let name = job.name.as_str();
        let mut present: Vec<String> = present_by_job.remove(name).unwrap_or_default();
        by_position(&mut present);
        let ns = format!("maand/job/{name}");
        let resources = ws.resources(name).expect("job exists");
        let mut workers: Vec<String> = active_by_job.remove(name).unwrap_or_default();
        by_position(&mut workers);
        put(&mut desired, &ns, "name", name);
        put(&mut desired, &ns, "job_id", derived_id("job", name));
        put(&mut desired, &ns, "job_name", name);
        put(
            &mut desired,
            &ns,
            "version",
            job.manifest.version.to_string(),
        );
        put(
            &mut desired,
            &ns,
            "selectors",
            job.manifest
                .selectors
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        );
        put(&mut desired, &ns, "workers", workers.join(","));
        put(
            &mut desired,
            &ns,
            "workers_length",
            workers.len().to_string(),
        );
        for (i, host) in workers.iter().enumerate() {
            put(&mut desired, &ns, format!("worker_{i}"), host.clone());
        }
        put(&mut desired, &ns, "rollout_order", workers.join(","));
        put(&mut desired, &ns, "memory", resources.memory_mb.to_string());
        put(&mut desired, &ns, "cpu", resources.cpu_mhz.to_string());
        put(
            &mut desired,
            &ns,
            "min_memory_mb",
            resources.min_memory_mb.to_string(),
        );
        put(
            &mut desired,
            &ns,
            "max_memory_mb",
            resources.max_memory_mb.to_string(),
        );
        put(
            &mut desired,
            &ns,
            "min_cpu_mhz",
            resources.min_cpu_mhz.to_string(),
        );
        put(
            &mut desired,
            &ns,
            "max_cpu_mhz",
            resources.max_cpu_mhz.to_string(),
        );
        if let Some(reservation) = ws.job_reservations.get(name) {
            for (key, value) in &reservation.vars {
                put(
                    &mut desired,
                    &format!("vars/bucket/job/{name}"),
                    key.clone(),
                    value.clone(),
                );
            }
        }
        for (index, host) in present.iter().enumerate() {
            let ns = format!("maand/job/{name}/worker/{host}");
            put(
                &mut desired,
                &ns,
                format!("{name}_allocation_index"),
                index.to_string(),
            );
            // `peer_workers` is derived on read from these indexes (see kv::peers).
            put(
                &mut desired,
                &ns,
                "version",
                job.manifest.version.to_string(),
            );
        }
        decide_certs(ws, job, &present, current, ctx, &mut desired)?;
    }

    super::prometheus_kv::extend(ws, current, &active_jobs, &mut desired, ctx)?;
    let mut events = diff(current, &desired);
    events.extend(merge_job_vars(ws, current, placement, ctx.purge_job_kv));
    Ok(events)
}

fn worker_address(ws: &Workspace, host: &str, job: &str) -> Result<WorkerAddress, BuildError> {
    let ip = host.parse().map_err(|_| BuildError {
        file: format!("workspace/jobs/{job}/manifest.json"),
        kind: "",
        message: format!(
            "certs: worker {host} is named by hostname, but certificates carry the worker's IP address; use the IP as host in workspace/workers.json (put the name in \"hostname\")"
        ),
    })?;
    Ok(WorkerAddress {
        ip,
        hostname: ws.worker(host).and_then(|w| w.hostname.clone()),
    })
}

fn decide_certs<R: rand::CryptoRng + ?Sized>(
    ws: &Workspace,
    job: &crate::workspace::Job,
    present: &[String],
    current: &CatalogSnapshot,
    ctx: &mut BuildContext<'_, R>,
    desired: &mut Desired,
) -> Result<(), BuildError> {
    let file = format!("workspace/jobs/{}/manifest.json", job.name);
    let failed = |e: certs::CertError| BuildError {
        file: file.clone(),
        kind: "",
        message: format!("certs: {e}"),
    };
    for (name, spec) in &job.manifest.certs {
        let definition = cert_definition(name, spec).map_err(failed)?;
        let hash = certs::definition_hash(&definition);
        let definition_changed = current
            .cert_definitions
            .get(&(job.name.clone(), name.clone()))
            .is_some_and(|old| *old != hash);
        let groups: Vec<Vec<String>> = if spec.one {
            vec![present.to_vec()]
        } else {
            present.iter().map(|h| vec![h.clone()]).collect()
        };
        for holders in groups.into_iter().filter(|g| !g.is_empty()) {
            let addresses = holders
                .iter()
                .map(|h| worker_address(ws, h, &job.name))
                .collect::<Result<Vec<_>, _>>()?;
            let namespaces: Vec<String> = holders
                .iter()
                .map(|h| format!("maand/job/{}/worker/{h}", job.name))
                .collect();
            let stored: Vec<Option<(&str, &str)>> = namespaces
                .iter()
                .map(|ns| {
                    let cert = current.kv_value(ns, &definition.cert_kv_key())?;
                    let key = current.kv_value(ns, &definition.key_kv_key())?;
                    Some((cert.value.as_str(), key.value.as_str()))
                })
                .collect();
            // Every holder must have the same stored pair for it to be kept.
            let shared = stored
                .first()
                .copied()
                .flatten()
                .filter(|first| stored.iter().all(|s| *s == Some(*first)));
            let ca_changed = shared.is_some_and(|(cert, _)| {
                matches!(
                    certs::inspect(
                        cert,
                        ctx.ca.cert_pem(),
                        ctx.now,
                        ctx.certs_renewal_buffer_days
                    )
                    .status,
                    certs::CertStatus::Invalid(_)
                )
            });
            let renewal = certs::needs_renewal(
                shared.map(|(cert, _)| cert),
                &addresses,
                ca_changed,
                definition_changed,
                ctx.now,
                ctx.certs_renewal_buffer_days,
            );
            match (renewal, shared) {
                (None, Some((cert, key))) => {
                    for ns in &namespaces {
                        let entry = desired.entry(ns.clone()).or_default();
                        entry.insert(definition.cert_kv_key(), KvValue::Plain(cert.to_string()));
                        entry.insert(definition.key_kv_key(), KvValue::Sealed(key.to_string()));
                    }
                }
                _ => {
                    let issued = certs::issue(
                        ctx.ca,
                        &definition,
                        &addresses,
                        ctx.certs_ttl_days,
                        ctx.now,
                        ctx.rng,
                    )
                    .map_err(failed)?;
                    for ns in &namespaces {
                        let sealed = crate::kv::secret::seal(
                            ctx.kv_key,
                            ns,
                            &definition.key_kv_key(),
                            &issued.key_pem,
                            ctx.rng,
                        )
                        .map_err(|e| BuildError {
                            file: file.clone(),
                            kind: "",
                            message: format!("certs: sealing the key: {e}"),
                        })?;
                        let entry = desired.entry(ns.clone()).or_default();
                        entry.insert(
                            definition.cert_kv_key(),
                            KvValue::Plain(issued.cert_pem.clone()),
                        );
                        entry.insert(definition.key_kv_key(), KvValue::Sealed(sealed.encode()));
                    }
                }
            }
        }
    }
    Ok(())
}

fn same(current: &crate::build::snapshot::KvCurrent, value: &KvValue) -> bool {
    match value {
        KvValue::Plain(v) => !current.sealed && current.value == *v,
        KvValue::Sealed(v) => current.sealed && current.value == *v,
    }
}

/// Changes that make every build-owned namespace hold exactly `desired`.
fn diff(current: &CatalogSnapshot, desired: &Desired) -> Vec<Event> {
    let namespaces: BTreeSet<&String> = desired
        .keys()
        .chain(current.kv.keys().filter(|ns| is_build_owned(ns)))
        .collect();
    let mut events = Vec::new();
    let empty = BTreeMap::new();
    for namespace in namespaces {
        let want = desired.get(namespace).unwrap_or(&empty);
        let have = current.kv.get(namespace);
        let mut changes = Vec::new();
        for (key, value) in want {
            let unchanged = have
                .and_then(|h| h.get(key))
                .is_some_and(|c| !c.deleted && same(c, value));
            if !unchanged {
                changes.push(KvChange::Put {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        if let Some(have) = have {
            for (key, value) in have {
                if !value.deleted && !want.contains_key(key) {
                    changes.push(KvChange::Delete { key: key.clone() });
                }
            }
        }
        if !changes.is_empty() {
            events.push(Event::KvChanged(KvChanged {
                namespace: namespace.clone(),
                changes,
            }));
        }
    }
    events
}

/// `vars.toml` is merged put-only into `vars/job/<job>`; with `--purge-job-kv`, jobs without
/// active allocations lose their `vars/job` and `secrets/job` keys.
fn merge_job_vars(
    ws: &Workspace,
    current: &CatalogSnapshot,
    placement: &Placement,
    purge: bool,
) -> Vec<Event> {
    let active: BTreeSet<&str> = placement.active().map(|a| a.job.as_str()).collect();
    let mut events = Vec::new();
    for job in ws
        .jobs
        .values()
        .filter(|j| active.contains(j.name.as_str()) || !purge)
    {
        let namespace = format!("vars/job/{}", job.name);
        let changes: Vec<KvChange> = job
            .vars
            .iter()
            .filter(|(key, value)| {
                current
                    .kv_value(&namespace, key)
                    .is_none_or(|c| c.sealed || c.value != **value)
            })
            .map(|(key, value)| KvChange::Put {
                key: key.clone(),
                value: KvValue::Plain(value.clone()),
            })
            .collect();
        if !changes.is_empty() {
            events.push(Event::KvChanged(KvChanged { namespace, changes }));
        }
    }
    if purge {
        let known: BTreeSet<String> = ws
            .jobs
            .keys()
            .chain(current.job_hashes.keys())
            .cloned()
            .collect();
        for job in known.iter().filter(|j| !active.contains(j.as_str())) {
            for namespace in [format!("vars/job/{job}"), format!("secrets/job/{job}")] {
                let changes: Vec<KvChange> = current
                    .kv
                    .get(&namespace)
                    .into_iter()
                    .flatten()
                    .filter(|(_, c)| !c.deleted)
                    .map(|(key, _)| KvChange::Delete { key: key.clone() })
                    .collect();
                if !changes.is_empty() {
                    events.push(Event::KvChanged(KvChanged { namespace, changes }));
                }
            }
        }
    }
    events
}

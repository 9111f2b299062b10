//! Build as a specification: random workspace histories built one after another.

use super::*;
use crate::catalog;
use proptest::prelude::*;
use rusqlite::Connection;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

const HOSTS: [&str; 5] = [
    "127.9.0.1",
    "127.9.0.2",
    "127.9.0.3",
    "127.9.0.4",
    "127.9.0.5",
];
const LABELS: [&str; 3] = ["alpha", "beta", "gamma"];
const JOBS: [&str; 4] = ["api", "cache", "db", "web"];

fn ca() -> &'static BucketCa {
    static CA: OnceLock<BucketCa> = OnceLock::new();
    CA.get_or_init(|| {
        BucketCa::generate(
            "bucket",
            crate::certs::MIN_KEY_BITS,
            time::OffsetDateTime::now_utc(),
            &mut rand::rng(),
        )
        .unwrap()
    })
}

/// One workspace state: which workers exist with which labels, which jobs with which
/// selectors/port/version, and what is disabled.
#[derive(Debug, Clone)]
struct Model {
    workers: Vec<(usize, BTreeSet<usize>)>,
    jobs: Vec<(usize, BTreeSet<usize>, bool, u8)>,
    disabled_workers: BTreeSet<usize>,
    disabled_jobs: BTreeSet<usize>,
}

fn arb_model() -> impl Strategy<Value = Model> {
    let workers = prop::collection::btree_map(
        0..HOSTS.len(),
        prop::collection::btree_set(0..LABELS.len(), 0..3),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    let jobs = prop::collection::btree_map(
        0..JOBS.len(),
        (
            prop::collection::btree_set(0..LABELS.len(), 0..2),
            any::<bool>(),
            1u8..4,
        ),
        0..4,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(j, (s, p, v))| (j, s, p, v))
            .collect::<Vec<_>>()
    });
    (
        workers,
        jobs,
        prop::collection::btree_set(0..HOSTS.len(), 0..2),
        prop::collection::btree_set(0..JOBS.len(), 0..2),
    )
        .prop_map(|(workers, jobs, disabled_workers, disabled_jobs)| Model {
            workers,
            jobs,
            disabled_workers,
            disabled_jobs,
        })
}

fn write_workspace(dir: &Path, model: &Model) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let workers: Vec<serde_json::Value> = model
        .workers
        .iter()
        .map(|(h, labels)| {
            serde_json::json!({"host": HOSTS[*h], "labels": labels.iter().map(|l| LABELS[*l]).collect::<Vec<_>>()})
        })
        .collect();
    std::fs::write(
        dir.join("workers.json"),
        serde_json::to_string(&workers).unwrap(),
    )
    .unwrap();
    let hosts: BTreeSet<usize> = model.workers.iter().map(|(h, _)| *h).collect();
    let jobs: BTreeSet<usize> = model.jobs.iter().map(|(j, ..)| *j).collect();
    let disabled = serde_json::json!({
        "workers": model.disabled_workers.iter().filter(|h| hosts.contains(h)).map(|h| HOSTS[*h]).collect::<Vec<_>>(),
        "jobs": model.disabled_jobs.iter().filter(|j| jobs.contains(j)).map(|j| (JOBS[*j].to_string(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>(),
    });
    std::fs::write(dir.join("disabled.json"), disabled.to_string()).unwrap();
    for (j, selectors, port, version) in &model.jobs {
        let job_dir = dir.join("jobs").join(JOBS[*j]);
        std::fs::create_dir_all(&job_dir).unwrap();
        let mut manifest = serde_json::json!({
            "version": format!("1.{version}.0"),
            "selectors": selectors.iter().map(|l| LABELS[*l]).collect::<Vec<_>>(),
        });
        if *port {
            manifest["resources"] =
                serde_json::json!({"ports": {format!("{}_port", JOBS[*j]): {}}});
        }
        std::fs::write(job_dir.join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(
            job_dir.join("Makefile"),
            format!("start:\n\t@echo {version}\n"),
        )
        .unwrap();
    }
}

fn catalog_db(dir: &Path) -> Connection {
    let path = dir.join("maand.db");
    let mut conn = crate::bucket::open(&path).unwrap();
    crate::bucket::migrate(&mut conn, &path).unwrap();
    conn
}

fn decide(conn: &Connection, ws: &Workspace) -> BuildDecision {
    let snapshot = CatalogSnapshot::load(conn).unwrap();
    let key = SecretKey::generate(&mut rand::rng());
    let mut rng = rand::rng();
    let mut ctx = BuildContext {
        ca: ca(),
        kv_key: &key,
        now: time::OffsetDateTime::now_utc(),
        certs_ttl_days: 60,
        certs_renewal_buffer_days: 10,
        purge_job_kv: false,
        reservations_file: "bucket.jobs.conf".into(),
        rng: &mut rng,
    };
    decide_build(ws, &snapshot, &mut ctx).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn building_a_history_of_workspaces_keeps_every_invariant(history in prop::collection::vec(arb_model(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = catalog_db(dir.path());
        let ws_dir = dir.path().join("workspace");
        for model in &history {
            write_workspace(&ws_dir, model);
            let ws = crate::workspace::load(&ws_dir, "").unwrap();
            let decision = decide(&conn, &ws);
            catalog::commit(&mut conn, "run", 1, &decision.events, &decision.blobs).unwrap();

            // Building the same workspace again records nothing.
            prop_assert!(decide(&conn, &ws).events.is_empty());

            // The non-removed allocations are exactly the brute-force label matches.
            let mut expected = BTreeSet::new();
            for job in ws.jobs.values() {
                for worker in &ws.workers {
                    if job.manifest.selectors.iter().all(|s| worker.labels.contains(s)) {
                        expected.insert((job.name.clone(), worker.host.clone()));
                    }
                }
            }
            let snapshot = CatalogSnapshot::load(&conn).unwrap();
            let placed: BTreeSet<_> = snapshot.allocations.values().filter(|a| !a.removed).map(|a| (a.job.clone(), a.worker_ip.clone())).collect();
            prop_assert_eq!(placed, expected);
            // Pool ports are unique and inside the pool.
            let ports: Vec<u16> = snapshot.ports.values().map(|(p, _)| *p).collect();
            prop_assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), ports.len());
            prop_assert!(ports.iter().all(|p| (30000..=39999).contains(p)));
        }
        prop_assert_eq!(catalog::diff_with_replay(&conn).unwrap(), vec![]);
    }
}

#[test]
fn a_pool_port_keeps_its_number_when_other_jobs_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = catalog_db(dir.path());
    let ws_dir = dir.path().join("workspace");
    let both = Model {
        workers: vec![(0, BTreeSet::from([0]))],
        jobs: vec![(0, BTreeSet::new(), true, 1), (1, BTreeSet::new(), true, 1)],
        disabled_workers: BTreeSet::new(),
        disabled_jobs: BTreeSet::new(),
    };
    write_workspace(&ws_dir, &both);
    let ws = crate::workspace::load(&ws_dir, "").unwrap();
    let decision = decide(&conn, &ws);
    catalog::commit(&mut conn, "r", 1, &decision.events, &decision.blobs).unwrap();
    let before = CatalogSnapshot::load(&conn).unwrap().ports;
    let only_cache = Model {
        jobs: vec![(1, BTreeSet::new(), true, 1)],
        ..both
    };
    write_workspace(&ws_dir, &only_cache);
    let ws = crate::workspace::load(&ws_dir, "").unwrap();
    let decision = decide(&conn, &ws);
    catalog::commit(&mut conn, "r", 2, &decision.events, &decision.blobs).unwrap();
    let after = CatalogSnapshot::load(&conn).unwrap().ports;
    let key = ("cache".to_string(), "cache_port".to_string());
    assert_eq!(before[&key], after[&key]);
    assert!(!after.contains_key(&("api".to_string(), "api_port".to_string())));
}

/// The peer lists as builds stored them before they were derived on read: `<label>_peers` per
/// worker and label, `peer_workers` per non-removed allocation.
fn stored_peer_lists(
    ws: &Workspace,
    snapshot: &CatalogSnapshot,
) -> BTreeMap<(String, String), String> {
    let mut expected = BTreeMap::new();
    for worker in &ws.workers {
        for label in &worker.labels {
            let peers: Vec<&str> = ws
                .workers
                .iter()
                .filter(|w| w.labels.contains(label) && w.host != worker.host)
                .map(|w| w.host.as_str())
                .collect();
            expected.insert(
                (
                    format!("maand/worker/{}", worker.host),
                    format!("{label}_peers"),
                ),
                peers.join(","),
            );
        }
    }
    for job in ws.jobs.keys() {
        let mut present: Vec<&str> = snapshot
            .allocations
            .values()
            .filter(|a| !a.removed && a.job == *job)
            .map(|a| a.worker_ip.as_str())
            .collect();
        present.sort_by_key(|h| ws.worker(h).map(|w| w.position));
        for host in &present {
            let peers: Vec<&str> = present.iter().copied().filter(|h| h != host).collect();
            expected.insert(
                (
                    format!("maand/job/{job}/worker/{host}"),
                    "peer_workers".into(),
                ),
                peers.join(","),
            );
        }
    }
    expected
}

/// Every peer list a reader sees: `cat kv`, `cat kv get` and the template snapshot (job
/// commands read the same [`crate::kv::peers::PeerLists`]).
fn read_peer_lists(conn: &Connection) -> BTreeMap<(String, String), String> {
    let rows =
        crate::catalog::tables::kv(conn, None, crate::catalog::tables::KvState::Active).unwrap();
    let listed: BTreeMap<(String, String), String> = rows
        .into_iter()
        .filter(|row| crate::kv::peers::is_peer_list(&row.namespace, &row.key))
        .map(|row| ((row.namespace, row.key), row.value.unwrap()))
        .collect();
    let templates = crate::deploy::prepare::KvSnapshot::load(conn, None).unwrap();
    for ((namespace, key), value) in &listed {
        let entry = crate::catalog::tables::kv_entry(conn, namespace, key)
            .unwrap()
            .unwrap();
        assert_eq!(
            entry.value,
            Some(crate::events::KvValue::Plain(value.clone())),
            "cat kv get {namespace} {key}"
        );
        use crate::templates::KvSource;
        assert_eq!(templates.get(namespace, key).as_ref(), Some(value));
        assert!(templates.keys(namespace).contains(key));
    }
    listed
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn derived_peer_lists_read_exactly_like_the_stored_ones_did(history in prop::collection::vec(arb_model(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = catalog_db(dir.path());
        let ws_dir = dir.path().join("workspace");
        for model in &history {
            write_workspace(&ws_dir, model);
            let ws = crate::workspace::load(&ws_dir, "").unwrap();
            let decision = decide(&conn, &ws);
            catalog::commit(&mut conn, "run", 1, &decision.events, &decision.blobs).unwrap();
            let snapshot = CatalogSnapshot::load(&conn).unwrap();
            prop_assert_eq!(read_peer_lists(&conn), stored_peer_lists(&ws, &snapshot));
        }
    }
}

#[test]
fn peer_lists_stored_by_an_older_build_are_ignored_then_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = catalog_db(dir.path());
    let ws_dir = dir.path().join("workspace");
    let model = Model {
        workers: vec![(0, BTreeSet::from([0])), (1, BTreeSet::from([0]))],
        jobs: vec![(0, BTreeSet::from([0]), false, 1)],
        disabled_workers: BTreeSet::new(),
        disabled_jobs: BTreeSet::new(),
    };
    write_workspace(&ws_dir, &model);
    let ws = crate::workspace::load(&ws_dir, "").unwrap();
    let decision = decide(&conn, &ws);
    catalog::commit(&mut conn, "run", 1, &decision.events, &decision.blobs).unwrap();
    // What an older build recorded: stale peer lists stored as plain keys.
    let stale = [
        (format!("maand/worker/{}", HOSTS[0]), "alpha_peers"),
        (format!("maand/job/api/worker/{}", HOSTS[0]), "peer_workers"),
    ];
    let events: Vec<Event> = stale
        .iter()
        .map(|(namespace, key)| {
            Event::KvChanged(crate::events::KvChanged {
                namespace: namespace.clone(),
                changes: vec![crate::events::KvChange::Put {
                    key: key.to_string(),
                    value: crate::events::KvValue::Plain("127.9.9.9".into()),
                }],
            })
        })
        .collect();
    catalog::commit(&mut conn, "old", 2, &events, &[]).unwrap();
    let snapshot = CatalogSnapshot::load(&conn).unwrap();
    assert_eq!(read_peer_lists(&conn), stored_peer_lists(&ws, &snapshot));

    let decision = decide(&conn, &ws);
    let deleted: BTreeSet<(String, String)> = decision
        .events
        .iter()
        .filter_map(|event| match event {
            Event::KvChanged(changed) => Some(
                changed
                    .changes
                    .iter()
                    .filter_map(|change| match change {
                        crate::events::KvChange::Delete { key } => {
                            Some((changed.namespace.clone(), key.clone()))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    let expected: BTreeSet<(String, String)> = stale
        .iter()
        .map(|(namespace, key)| (namespace.clone(), key.to_string()))
        .collect();
    assert_eq!(deleted, expected);
    catalog::commit(&mut conn, "run", 3, &decision.events, &decision.blobs).unwrap();
    assert_eq!(read_peer_lists(&conn), stored_peer_lists(&ws, &snapshot));
    assert!(decide(&conn, &ws).events.is_empty());
    assert_eq!(catalog::diff_with_replay(&conn).unwrap(), vec![]);
}

//! Writes a database as the Go maand leaves it (schema_version 1: its tables, its text-typed
//! columns, its `enc:v1:` secrets and its KV history with deletions), from scratch and without
//! the Go maand, so the import can be tested against the real format.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use rusqlite::{params, Connection};
use std::path::Path;

/// The Go maand's schema (schema_version 1), table for table.
pub const GO_SCHEMA_V1: &str = "
CREATE TABLE bucket (bucket_id TEXT, update_seq INT);
CREATE TABLE worker (worker_id TEXT, worker_ip TEXT, available_memory_mb TEXT, available_cpu_mhz TEXT, position INT, PRIMARY KEY(worker_ip));
CREATE TABLE worker_labels (worker_id TEXT, label TEXT);
CREATE TABLE worker_tags (worker_id TEXT, key TEXT, value TEXT);
CREATE TABLE allocations (alloc_id TEXT, worker_ip TEXT, job TEXT, disabled INT, removed INT, deployment_seq INT, new_version TEXT, PRIMARY KEY(worker_ip, job));
CREATE TABLE job (job_id TEXT, name TEXT, version TEXT, min_memory_mb TEXT, max_memory_mb TEXT, current_memory_mb TEXT, min_cpu_mhz TEXT, max_cpu_mhz TEXT, current_cpu_mhz TEXT, update_parallel_count INT, health_check TEXT, PRIMARY KEY(name));
CREATE TABLE job_selectors (job_id TEXT, selector TEXT);
CREATE TABLE job_ports (job_id TEXT, name TEXT, port INT);
CREATE TABLE job_certs (job_id TEXT, name TEXT, pkcs8 INT, one INT, subject TEXT);
CREATE TABLE job_files (job_id TEXT, path TEXT, content BLOB, isdir BOOL);
CREATE TABLE job_commands (job_id TEXT, job TEXT, name TEXT, executed_on TEXT, demand_job TEXT, demand_command TEXT, demand_config TEXT);
CREATE TABLE key_value (key TEXT, value TEXT, namespace TEXT, version INT, ttl TEXT, created_date TEXT, deleted INT);
CREATE TABLE hash (namespace TEXT, key TEXT, current_hash TEXT, previous_hash TEXT, current_version TEXT, PRIMARY KEY(namespace, key));
CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
CREATE VIEW cat_allocations (alloc_id, worker_ip, job, disabled, removed, new_version) AS
    SELECT alloc_id, worker_ip, job, disabled, removed, new_version FROM allocations ORDER BY job;
";

/// An id for a name in the shape the Go maand uses (a UUID). The import re-derives every id
/// but the bucket's, so how this one is derived does not matter; it only has to be stable.
pub fn go_id(value: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, value.as_bytes()).to_string()
}

/// Encrypts `plaintext` as the Go maand does: `enc:v1:` + base64(nonce ‖ AES-256-GCM
/// ciphertext and tag), no associated data.
pub fn go_seal(key: &[u8; 32], plaintext: &str) -> String {
    let nonce: [u8; 12] = rand::random();
    let cipher = Aes256Gcm::new(key.into());
    let mut raw = nonce.to_vec();
    raw.extend(
        cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("encrypts"),
    );
    format!(
        "enc:v1:{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// One KV row as the Go maand writes it.
#[derive(Debug, Clone)]
pub struct GoKv {
    pub namespace: String,
    pub key: String,
    pub value: String,
    pub version: i64,
    pub created: i64,
    pub deleted: bool,
}

/// A worker of the fixture.
#[derive(Debug, Clone)]
pub struct GoWorkerSpec {
    pub ip: String,
    pub labels: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub memory_mb: String,
}

/// A job of the fixture: files relative to the job directory.
#[derive(Debug, Clone)]
pub struct GoJobSpec {
    pub name: String,
    pub version: String,
    pub selectors: Vec<String>,
    pub files: Vec<(String, Vec<u8>)>,
    pub ports: Vec<(String, i64)>,
    pub certs: Vec<String>,
}

/// Everything the fixture database holds.
#[derive(Debug, Clone)]
pub struct GoBucketSpec {
    pub bucket_id: String,
    pub update_seq: i64,
    pub schema_version: i64,
    pub workers: Vec<GoWorkerSpec>,
    pub jobs: Vec<GoJobSpec>,
    /// (job, worker, promoted version): allocations with a promoted hash row.
    pub deployed: Vec<(String, String, String)>,
    pub kv: Vec<GoKv>,
}

/// Writes `spec` as a Go maand database at `path` (which must not exist).
pub fn write_go_db(path: &Path, spec: &GoBucketSpec) {
    let conn = Connection::open(path).expect("create the Go database");
    conn.execute_batch(GO_SCHEMA_V1).expect("Go schema");
    conn.execute(
        "INSERT INTO schema_version (id, version) VALUES (1, ?1)",
        [spec.schema_version],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO bucket (bucket_id, update_seq) VALUES (?1, ?2)",
        params![spec.bucket_id, spec.update_seq],
    )
    .unwrap();
    for (position, w) in spec.workers.iter().enumerate() {
        let id = go_id(&w.ip);
        conn.execute(
            "INSERT INTO worker VALUES (?1, ?2, ?3, '0', ?4)",
            params![id, w.ip, w.memory_mb, position as i64],
        )
        .unwrap();
        for label in &w.labels {
            conn.execute(
                "INSERT INTO worker_labels VALUES (?1, ?2)",
                params![id, label],
            )
            .unwrap();
        }
        for (k, v) in &w.tags {
            conn.execute(
                "INSERT INTO worker_tags VALUES (?1, ?2, ?3)",
                params![id, k, v],
            )
            .unwrap();
        }
    }
    for job in &spec.jobs {
        let id = go_id(&job.name);
        conn.execute(
            "INSERT INTO job VALUES (?1, ?2, ?3, '0', '0', '0', '0', '0', '0', 1, '')",
            params![id, job.name, job.version],
        )
        .unwrap();
        for s in &job.selectors {
            conn.execute("INSERT INTO job_selectors VALUES (?1, ?2)", params![id, s])
                .unwrap();
        }
        for (name, port) in &job.ports {
            conn.execute(
                "INSERT INTO job_ports VALUES (?1, ?2, ?3)",
                params![id, name, port],
            )
            .unwrap();
        }
        for cert in &job.certs {
            conn.execute(
                "INSERT INTO job_certs VALUES (?1, ?2, 0, 0, ?3)",
                params![id, cert, format!("{{\"common_name\":\"{cert}.internal\"}}")],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO job_files VALUES (?1, ?2, x'', 1)",
            params![id, job.name],
        )
        .unwrap();
        for (path, content) in &job.files {
            conn.execute(
                "INSERT INTO job_files VALUES (?1, ?2, ?3, 0)",
                params![id, format!("{}/{path}", job.name), content],
            )
            .unwrap();
        }
        for w in spec
            .workers
            .iter()
            .filter(|w| job.selectors.iter().all(|s| w.labels.contains(s)))
        {
            let alloc = go_id(&format!("{}|{}", job.name, w.ip));
            conn.execute(
                "INSERT INTO allocations VALUES (?1, ?2, ?3, 0, 0, 0, ?4)",
                params![alloc, w.ip, job.name, job.version],
            )
            .unwrap();
        }
    }
    for (job, worker, version) in &spec.deployed {
        let alloc = go_id(&format!("{job}|{worker}"));
        conn.execute(
            "INSERT INTO hash VALUES (?1, ?2, 'd41d8cd98f00b204e9800998ecf8427e', 'd41d8cd98f00b204e9800998ecf8427e', ?3)",
            params![format!("{job}_allocation"), alloc, version],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO hash VALUES ('build_certs', 'web', 'aa', 'aa', NULL)",
        [],
    )
    .unwrap();
    for row in &spec.kv {
        conn.execute(
            "INSERT INTO key_value VALUES (?1, ?2, ?3, ?4, '0', ?5, ?6)",
            params![
                row.key,
                row.value,
                row.namespace,
                row.version,
                row.created,
                row.deleted as i64
            ],
        )
        .unwrap();
    }
}

/// Rewrites the database of a bucket this maand built and deployed as the database the Go
/// maand would have left for the same state: same bucket id and update sequence, workers,
/// jobs with their files, ports, allocations, every KV version (secrets opened and sealed in
/// the Go format under the bucket's kv.key) and a promoted hash row per deployed allocation.
/// `data/maand.db` is replaced by the Go database.
pub fn convert_to_go_bucket(bucket: &Path) {
    let go_path = write_go_copy(bucket);
    for name in ["maand.db", "maand.db-wal", "maand.db-shm"] {
        let _ = std::fs::remove_file(bucket.join("data").join(name));
    }
    std::fs::rename(&go_path, bucket.join("data/maand.db")).unwrap();
}

/// Writes the Go database for the bucket's state next to it; returns its path.
fn write_go_copy(bucket: &Path) -> std::path::PathBuf {
    use maand::kv::secret::{open, SealedSecret, SecretKey};
    let db = bucket.join("data/maand.db");
    let ours = Connection::open(&db).expect("open our database");
    let key = SecretKey::load(&bucket.join("secrets/kv.key")).expect("kv.key");
    let key_bytes: [u8; 32] = std::fs::read(bucket.join("secrets/kv.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let go_path = bucket.join("data/go-built.db");
    let _ = std::fs::remove_file(&go_path);
    let go = Connection::open(&go_path).unwrap();
    go.execute_batch(GO_SCHEMA_V1).unwrap();
    go.execute("INSERT INTO schema_version (id, version) VALUES (1, 1)", [])
        .unwrap();
    let (bucket_id, update_seq): (String, i64) = ours
        .query_row("SELECT bucket_id, update_seq FROM bucket", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    go.execute(
        "INSERT INTO bucket VALUES (?1, ?2)",
        params![bucket_id, update_seq],
    )
    .unwrap();
    let mut stmt = ours
        .prepare("SELECT host, labels, memory_mb, cpu_mhz, tags, position FROM workers")
        .unwrap();
    let workers = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    for (host, labels, memory, cpu, tags, position) in workers {
        let id = go_id(&host);
        go.execute(
            "INSERT INTO worker VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                host,
                memory.unwrap_or(0).to_string(),
                cpu.unwrap_or(0).to_string(),
                position
            ],
        )
        .unwrap();
        for label in serde_json::from_str::<Vec<String>>(&labels).unwrap() {
            go.execute(
                "INSERT INTO worker_labels VALUES (?1, ?2)",
                params![id, label],
            )
            .unwrap();
        }
        let tags: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&tags).unwrap();
        for (k, v) in tags {
            go.execute(
                "INSERT INTO worker_tags VALUES (?1, ?2, ?3)",
                params![id, k, v.as_str().unwrap_or_default()],
            )
            .unwrap();
        }
    }
    let mut stmt = ours
        .prepare("SELECT name, version, selectors, min_memory_mb, max_memory_mb, current_memory_mb, min_cpu_mhz, max_cpu_mhz, current_cpu_mhz, max_concurrent_upgrades, health_check FROM jobs")
        .unwrap();
    let jobs = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                [
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                ],
                r.get::<_, i64>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    for (name, version, selectors, sizes, parallel, health) in jobs {
        let id = go_id(&name);
        go.execute(
            "INSERT INTO job VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                id,
                name,
                version,
                sizes[0].to_string(),
                sizes[1].to_string(),
                sizes[2].to_string(),
                sizes[3].to_string(),
                sizes[4].to_string(),
                sizes[5].to_string(),
                parallel,
                health.unwrap_or_default()
            ],
        )
        .unwrap();
        for s in serde_json::from_str::<Vec<String>>(&selectors).unwrap() {
            go.execute("INSERT INTO job_selectors VALUES (?1, ?2)", params![id, s])
                .unwrap();
        }
        go.execute(
            "INSERT INTO job_files VALUES (?1, ?2, x'', 1)",
            params![id, name],
        )
        .unwrap();
        let mut files = ours
            .prepare("SELECT f.path, b.content FROM job_files f JOIN blobs b ON b.hash = f.hash WHERE f.job = ?1")
            .unwrap();
        let files = files
            .query_map([&name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        for (path, content) in files {
            go.execute(
                "INSERT INTO job_files VALUES (?1, ?2, ?3, 0)",
                params![id, format!("{name}/{path}"), content],
            )
            .unwrap();
        }
        let mut ports = ours
            .prepare("SELECT name, port FROM job_ports WHERE job = ?1")
            .unwrap();
        let ports = ports
            .query_map([&name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        for (port_name, port) in ports {
            go.execute(
                "INSERT INTO job_ports VALUES (?1, ?2, ?3)",
                params![id, port_name, port],
            )
            .unwrap();
        }
    }
    let mut stmt = ours
        .prepare("SELECT a.job, a.worker_ip, a.disabled, a.removed, a.deployment_seq, a.new_version, d.previous_hash, d.current_version FROM allocations a LEFT JOIN deployments d ON d.alloc_id = a.alloc_id")
        .unwrap();
    let allocations = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    for (job, worker, disabled, removed, seq, new_version, promoted, version) in allocations {
        let alloc = go_id(&format!("{job}|{worker}"));
        go.execute(
            "INSERT INTO allocations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![alloc, worker, job, disabled, removed, seq, new_version],
        )
        .unwrap();
        if promoted.is_some() {
            go.execute(
                "INSERT INTO hash VALUES (?1, ?2, 'd41d8cd98f00b204e9800998ecf8427e', 'd41d8cd98f00b204e9800998ecf8427e', ?3)",
                params![format!("{job}_allocation"), alloc, version],
            )
            .unwrap();
        }
    }
    let mut stmt = ours
        .prepare("SELECT namespace, key, version, value, sealed, deleted, time_ms FROM kv ORDER BY namespace, key, version")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    for (namespace, key_name, version, value, sealed, deleted, time_ms) in rows {
        let value = if sealed {
            let plaintext = open(
                &key,
                &namespace,
                &key_name,
                &SealedSecret::decode(&value).unwrap(),
            )
            .unwrap();
            go_seal(&key_bytes, &plaintext)
        } else {
            value
        };
        go.execute(
            "INSERT INTO key_value VALUES (?1, ?2, ?3, ?4, '0', ?5, ?6)",
            params![
                key_name,
                value,
                namespace,
                version,
                time_ms / 1000,
                deleted as i64
            ],
        )
        .unwrap();
    }
    go_path
}

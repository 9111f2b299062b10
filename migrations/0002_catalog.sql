-- The catalog `maand build` maintains: workers, jobs and their parts, port assignments,
-- allocations and the KV store. Every table here is a projection of journal events.

CREATE TABLE workers (
    host       TEXT PRIMARY KEY,     -- SSH address, unique
    worker_id  TEXT NOT NULL,        -- stable UUID derived from the host
    hostname   TEXT,
    labels     TEXT NOT NULL,        -- JSON array, sorted, includes "worker"
    memory_mb  INTEGER,
    cpu_mhz    INTEGER,
    tags       TEXT NOT NULL,        -- JSON object
    position   INTEGER NOT NULL
);

CREATE TABLE jobs (
    name                    TEXT PRIMARY KEY,
    job_id                  TEXT NOT NULL,
    version                 TEXT NOT NULL,
    version_declared        INTEGER NOT NULL,
    selectors               TEXT NOT NULL,   -- JSON array
    max_concurrent_upgrades INTEGER NOT NULL,
    max_concurrent_starts   INTEGER NOT NULL,
    min_allocations_count   INTEGER NOT NULL,
    restart_policy          TEXT NOT NULL,
    restart_globs           TEXT NOT NULL,   -- JSON array
    min_memory_mb           INTEGER NOT NULL,
    max_memory_mb           INTEGER NOT NULL,
    current_memory_mb       INTEGER NOT NULL,
    min_cpu_mhz             INTEGER NOT NULL,
    max_cpu_mhz             INTEGER NOT NULL,
    current_cpu_mhz         INTEGER NOT NULL,
    resources_source        TEXT NOT NULL,   -- "manifest" or the bucket.jobs file name
    deployment_seq          INTEGER NOT NULL,
    health_check            TEXT,            -- JSON of the manifest probes, NULL when none
    files_hash              TEXT NOT NULL,   -- sha256 over the sorted (path, hash, mode) list
    record_hash             TEXT NOT NULL    -- sha256 of the whole JobUpserted payload: build compares it
);

CREATE TABLE job_files (
    job        TEXT NOT NULL,
    path       TEXT NOT NULL,
    hash       TEXT NOT NULL,                -- key into blobs
    size       INTEGER NOT NULL,
    executable INTEGER NOT NULL,
    PRIMARY KEY (job, path)
) WITHOUT ROWID;

CREATE TABLE job_commands (
    job            TEXT NOT NULL,
    name           TEXT NOT NULL,
    event          TEXT NOT NULL,            -- one row per (command, executed_on) pair
    script         TEXT NOT NULL,            -- _modules/command_<name>.<ext>
    demand_job     TEXT NOT NULL,
    demand_command TEXT NOT NULL,
    demand_config  TEXT NOT NULL,            -- JSON object
    PRIMARY KEY (job, name, event)
) WITHOUT ROWID;

CREATE TABLE job_ports (
    job      TEXT NOT NULL,
    name     TEXT NOT NULL,
    port     INTEGER NOT NULL,
    assigned INTEGER NOT NULL,               -- 1 = picked from the bucket pool ({}), 0 = fixed in the manifest
    PRIMARY KEY (job, name)
) WITHOUT ROWID;

CREATE TABLE job_certs (
    job             TEXT NOT NULL,
    name            TEXT NOT NULL,
    definition      TEXT NOT NULL,           -- JSON of the manifest definition
    definition_hash TEXT NOT NULL,
    PRIMARY KEY (job, name)
) WITHOUT ROWID;

CREATE TABLE allocations (
    alloc_id       TEXT PRIMARY KEY,         -- UUID v5 of "job|worker"
    job            TEXT NOT NULL,
    worker_ip      TEXT NOT NULL,
    disabled       INTEGER NOT NULL,
    removed        INTEGER NOT NULL,
    new_version    TEXT NOT NULL,
    deployment_seq INTEGER NOT NULL,
    UNIQUE (job, worker_ip)
);
CREATE INDEX allocations_worker ON allocations (worker_ip);

-- KV with history: one row per version of a key; the highest version is current.
-- A deletion is a version with deleted = 1. At most 7 versions are kept per key.
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    version   INTEGER NOT NULL,
    value     TEXT NOT NULL,                 -- plaintext, or the sealed form when sealed = 1
    sealed    INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,              -- journal event that wrote this version
    time_ms   INTEGER NOT NULL,
    PRIMARY KEY (namespace, key, version)
) WITHOUT ROWID;

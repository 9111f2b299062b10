-- Deploy state: what each allocation runs (hash rows), the update sequence, and every planned
-- deploy with the status of each of its steps. All projections of journal events.

-- One row per allocation that has been staged at least once. current_* is the last staged
-- tree, previous_* the last promoted one (equal after a successful deploy).
CREATE TABLE deployments (
    alloc_id        TEXT PRIMARY KEY,
    job             TEXT NOT NULL,
    worker_ip       TEXT NOT NULL,
    current_hash    TEXT NOT NULL,
    previous_hash   TEXT,
    current_version TEXT NOT NULL,           -- last promoted (running) version; 0.0.0 before the first promote
    current_files   TEXT NOT NULL,           -- JSON object path -> sha256 of the staged tree
    previous_files  TEXT,                    -- JSON object of the promoted tree
    health_failed   INTEGER NOT NULL DEFAULT 0,
    stopped         INTEGER NOT NULL DEFAULT 0  -- stopped by reconcile (disabled); the next deploy starts it
);

CREATE TABLE deploys (
    deploy_id   TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    planned_seq INTEGER NOT NULL,            -- journal position of DeployPlanned
    catalog_seq INTEGER NOT NULL,            -- last build event the plan was made from
    flags       TEXT NOT NULL,               -- JSON of the deploy flags
    status      TEXT NOT NULL,               -- planned | succeeded | failed
    failed      TEXT NOT NULL DEFAULT '[]'   -- JSON array of failed jobs
);

CREATE TABLE deploy_steps (
    deploy_id TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    wave      INTEGER NOT NULL,
    job       TEXT,
    worker    TEXT,
    batch     INTEGER NOT NULL,
    kind      TEXT NOT NULL,                 -- JSON of the step
    status    TEXT NOT NULL,                 -- pending | started | succeeded | failed | skipped
    detail    TEXT,                          -- error or skip reason
    PRIMARY KEY (deploy_id, idx)
) WITHOUT ROWID;

-- The journal position of the last event that changed the catalog structure (build events).
ALTER TABLE bucket ADD COLUMN catalog_seq INTEGER NOT NULL DEFAULT 0;

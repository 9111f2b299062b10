-- Health: the latest health check of each allocation (`maand health_check`, `--health_check`
-- flags, deploy gates). A projection of `health_checked` events; the same events also set
-- deployments.health_failed.

CREATE TABLE health (
    alloc_id   TEXT PRIMARY KEY,
    job        TEXT NOT NULL,
    worker_ip  TEXT NOT NULL,
    healthy    INTEGER NOT NULL,
    detail     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,             -- attempt number within its check (1 = first)
    run_id     TEXT NOT NULL,                -- the run that checked
    checked_seq INTEGER NOT NULL,            -- journal position of the event
    checked_ms INTEGER NOT NULL
);

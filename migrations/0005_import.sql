-- Import of Go maand buckets: an allocation the Go maand had promoted is *adopted* until our
-- first deploy of it (its Go content hash cannot be compared with ours).
ALTER TABLE deployments ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;

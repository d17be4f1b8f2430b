-- Named queries sent by pm-engine's Python side (loaded by pm_engine/queries.py).
-- Each: "-- name --", a one-line description, the statement with %(name)s / %s parameters.

-- deploy_lock --
-- Serialize concurrent deploys for the length of the deploy transaction.
SELECT pg_advisory_xact_lock(hashtext('pm-engine:db-deploy'));

-- deploy_bootstrap --
-- Create the pm schema and the table recording applied migrations and function files.
CREATE SCHEMA IF NOT EXISTS pm;
CREATE TABLE IF NOT EXISTS pm.schema_migrations (
    kind       text        NOT NULL CHECK (kind IN ('migration', 'functions')),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- deploy_applied --
-- Every recorded migration and function file with its checksum.
SELECT kind, name, checksum FROM pm.schema_migrations;

-- deploy_record --
-- Record (or re-record) a deployed file's checksum.
INSERT INTO pm.schema_migrations (kind, name, checksum) VALUES (%s, %s, %s)
ON CONFLICT (kind, name) DO UPDATE SET checksum = excluded.checksum, applied_at = now();

-- schema_version --
-- The newest applied migration.
SELECT name FROM pm.schema_migrations WHERE kind = 'migration' ORDER BY name DESC LIMIT 1;

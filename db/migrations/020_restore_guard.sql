-- Migration 020: the restore guard. The database is recorded by its cluster's system identifier and its own
-- OID (pg_control_system() and pg_database: both the same on a physical standby; a pg_dump restored into
-- another cluster, or into a new database of the same one, has another pair). When the sender finds the
-- database is not the recorded one, every order queued before
-- that moment is held (pm.sendable_orders skips it) until the trader releases them: the orders of a backup
-- may since have been sent, filled or made pointless at the broker, so none is sent blindly.

CREATE TABLE pm.database_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    system_identifier text NOT NULL,  -- '<cluster system identifier>:<database oid>'
    recorded_at timestamptz NOT NULL DEFAULT now(),
    held_since timestamptz,          -- set when a restore was found; orders queued up to it wait
    released_at timestamptz,
    released_by text
);

-- the cluster this deploy runs in (a deployer without the right to read pg_control leaves it to the sender)
DO $$
BEGIN
    INSERT INTO pm.database_identity (system_identifier)
    SELECT c.system_identifier::text || ':' || d.oid::text
      FROM pg_catalog.pg_control_system() c, pg_catalog.pg_database d WHERE d.datname = current_database();
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'restore guard: pg_control_system() not readable by this role; the sender records the cluster';
END;
$$;

ALTER TABLE pm.anomalies DROP CONSTRAINT anomalies_kind_check;
ALTER TABLE pm.anomalies
    ADD CONSTRAINT anomalies_kind_check CHECK (kind IN ('exit_never_open', 'pyramid_without_base',
                                                        'pyramid_skips_layer', 'entry_while_base_open',
                                                        'order_needs_review', 'exit_rejected', 'entry_rejected',
                                                        'reconcile_difference', 'roll_failed',
                                                        'database_restored'));

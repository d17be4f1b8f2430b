-- Migration 020: the restore guard. The cluster a database lives in is recorded by its system identifier
-- (pg_control_system(): the same on a physical standby, new for a pg_dump restored into another cluster).
-- When the sender finds the database in a cluster other than the recorded one, every order queued before
-- that moment is held (pm.sendable_orders skips it) until the trader releases them: the orders of a backup
-- may since have been sent, filled or made pointless at the broker, so none is sent blindly.

CREATE TABLE pm.database_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    system_identifier text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    held_since timestamptz,          -- set when a restore was found; orders queued up to it wait
    released_at timestamptz,
    released_by text
);

-- the cluster this deploy runs in (a deployer without the right to read pg_control leaves it to the sender)
DO $$
BEGIN
    INSERT INTO pm.database_identity (system_identifier)
    SELECT system_identifier::text FROM pg_catalog.pg_control_system();
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

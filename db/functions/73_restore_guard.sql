-- pm.check_database_identity
-- The sender's question at start and every minute: is this still the database recorded (its cluster's system
-- identifier and its OID)? 'recorded' (first look), 'same', 'restored' (a copy: orders queued until now held, one
-- database_restored anomaly) or 'unknown' (the owner may not read pg_control: no guard). With the orders held.
CREATE OR REPLACE FUNCTION pm.check_database_identity()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    here text;
    known pm.database_identity;
    verdict text;
    held integer;
BEGIN
    BEGIN
        SELECT c.system_identifier::text || ':' || d.oid::text INTO here
          FROM pg_control_system() c, pg_database d WHERE d.datname = current_database();
    EXCEPTION WHEN insufficient_privilege THEN
        RETURN jsonb_build_object('state', 'unknown', 'held_orders', 0);
    END;
    SELECT * INTO known FROM pm.database_identity FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO pm.database_identity (system_identifier) VALUES (here) ON CONFLICT DO NOTHING;
        verdict := 'recorded';
    ELSIF known.system_identifier = here THEN
        verdict := 'same';
    ELSE
        UPDATE pm.database_identity SET system_identifier = here, recorded_at = now(), held_since = now(),
                                        released_at = NULL, released_by = NULL;
        SELECT count(*) INTO held FROM pm.broker_orders WHERE status = 'queued';
        INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
        VALUES ('database_restored', left('restore-' || here, 64), 'ALL', 'RESTORE', 'ALL', format('this database was restored from a backup (was %s, now %s): %s queued '
                             'order(s) held until `pm-engine orders release-restored`',
                             known.system_identifier, here, held));
        verdict := 'restored';
    END IF;
    SELECT count(*) INTO held FROM pm.broker_orders o, pm.database_identity d
     WHERE o.status = 'queued' AND d.held_since IS NOT NULL AND o.created_at <= d.held_since;
    RETURN jsonb_build_object('state', verdict, 'held_orders', held);
END;
$$;

-- pm.release_restored_orders
-- The trader's answer to a restore (after checking the queued orders against the broker): the held orders may
-- be sent. Returns how many queued orders that releases; p_by is a checked principal (PM095).
CREATE OR REPLACE FUNCTION pm.release_restored_orders(p_by text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    released integer;
BEGIN
    PERFORM pm.check_principal(p_by, 'by');
    SELECT count(*) INTO released FROM pm.broker_orders o, pm.database_identity d
     WHERE o.status = 'queued' AND d.held_since IS NOT NULL AND o.created_at <= d.held_since;
    UPDATE pm.database_identity SET held_since = NULL, released_at = now(), released_by = p_by
     WHERE held_since IS NOT NULL;
    RETURN released;
END;
$$;

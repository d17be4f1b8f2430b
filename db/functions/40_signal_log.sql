-- Signal log functions: the de-duplicating record of every signal and its outcome.

-- pm.log_signal
-- Claims a fingerprint by inserting its row; returns true if the fingerprint was new.
-- A repeated fingerprint changes nothing and returns false (INSERT ... ON CONFLICT DO NOTHING,
-- so two concurrent callers with one fingerprint get exactly one true).
CREATE OR REPLACE FUNCTION pm.log_signal(p_fingerprint text, p_instrument text, p_signal_type text,
                                         p_position text, p_signal_timestamp timestamptz,
                                         p_processing_status text, p_reason text DEFAULT NULL,
                                         p_payload jsonb DEFAULT NULL, p_instance text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    inserted integer;
BEGIN
    PERFORM pm.require(p_fingerprint, 'fingerprint');
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_signal_type, 'signal_type');
    PERFORM pm.require(p_position, 'position');
    PERFORM pm.require(p_signal_timestamp, 'signal_timestamp');
    PERFORM pm.require(p_processing_status, 'processing_status');
    IF p_fingerprint !~ '^[0-9a-f]{64}$' THEN
        PERFORM pm.raise_error('PM004', 'fingerprint must be 64 lowercase hex characters');
    END IF;
    INSERT INTO pm.signal_log (fingerprint, instrument, signal_type, position, signal_timestamp,
                               processing_status, reason, payload, processed_by_instance, processed_at)
    VALUES (p_fingerprint, p_instrument, p_signal_type, p_position, p_signal_timestamp,
            p_processing_status, p_reason, p_payload, p_instance, pm.instant())
    ON CONFLICT (fingerprint) DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN inserted = 1;
END;
$$;

-- pm.is_duplicate_signal
-- Whether a fingerprint has already been logged. PL/pgSQL so its lookup is planned once per session
-- (a SQL function with a SET clause is never inlined and is planned again at every call).
CREATE OR REPLACE FUNCTION pm.is_duplicate_signal(p_fingerprint text)
RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM pm.signal_log WHERE fingerprint = p_fingerprint);
END;
$$;

-- pm.cleanup_signal_log
-- Deletes signal_log rows processed longer ago than the retention; returns how many went. Below 1 day
-- (far past the signal age window, so a deleted fingerprint cannot be replayed) only the owner may (PM020).
CREATE OR REPLACE FUNCTION pm.cleanup_signal_log(retention interval DEFAULT interval '7 days')
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM pm.require_retention_floor(retention, interval '1 day', 'signal log');
    DELETE FROM pm.signal_log WHERE processed_at < now() - retention;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;

-- pm.recent_signals
-- The latest signals with their outcome and reason, newest first, processed at or after p_since
-- (NULL: any time): the dashboard's signal list and `pm-engine signals`. processed_at is the
-- signal's instant (05_instants.sql): pm.state_as_of(processed_at) shows the book right after it.
DROP FUNCTION IF EXISTS pm.recent_signals(integer);  -- before p_since was added (a new signature)
CREATE OR REPLACE FUNCTION pm.recent_signals(p_limit integer DEFAULT 50, p_since timestamptz DEFAULT NULL)
RETURNS TABLE (processed_at timestamptz, signal_timestamp timestamptz, fingerprint varchar, instrument varchar,
               signal_type varchar, "position" varchar, processing_status varchar, reason text,
               processed_by_instance varchar)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.processed_at, s.signal_timestamp, s.fingerprint, s.instrument, s.signal_type, s.position,
           s.processing_status, s.reason, s.processed_by_instance
      FROM pm.signal_log s
     WHERE p_since IS NULL OR s.processed_at >= p_since
     ORDER BY s.processed_at DESC, s.id DESC LIMIT greatest(coalesce(p_limit, 50), 0);
$$;

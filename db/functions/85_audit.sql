-- Audit (migration 004): refused webhook requests and anomalies, written so they can be listed,
-- counted and cleaned up.

-- pm.log_refusals
-- Appends a batch of refused requests (jsonb array of {received_at, source, status, reason, field,
-- body_sha256, body_excerpt, user_agent, instance}); returns how many were written. The caller
-- masks secrets and caps the excerpt; the table refuses an excerpt over 8 KiB and a status
-- outside 4xx/5xx (23514).
CREATE OR REPLACE FUNCTION pm.log_refusals(p_rows jsonb)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written integer;
BEGIN
    IF p_rows IS NULL OR jsonb_typeof(p_rows) <> 'array' THEN
        PERFORM pm.raise_error('PM004', 'refusals must be a JSON array');
    END IF;
    INSERT INTO pm.request_log (received_at, source, status, reason, field, body_sha256, body_excerpt, user_agent,
                                instance)
    SELECT coalesce((r ->> 'received_at')::timestamptz, now()), left(r ->> 'source', 64), (r ->> 'status')::smallint,
           r ->> 'reason', left(r ->> 'field', 64), r ->> 'body_sha256', r ->> 'body_excerpt',
           left(r ->> 'user_agent', 512), r ->> 'instance'
      FROM jsonb_array_elements(p_rows) r;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END;
$$;

-- pm.refusals
-- Refused requests received at or after p_since (NULL: the last 24 hours), newest first.
CREATE OR REPLACE FUNCTION pm.refusals(p_since timestamptz DEFAULT NULL, p_limit integer DEFAULT 1000)
RETURNS SETOF pm.request_log
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM pm.request_log WHERE received_at >= coalesce(p_since, now() - interval '24 hours')
     ORDER BY received_at DESC, id DESC LIMIT greatest(coalesce(p_limit, 1000), 0);
$$;

-- pm.cleanup_request_log
-- Deletes refused-request rows older than the retention (default 30 days); returns how many went.
CREATE OR REPLACE FUNCTION pm.cleanup_request_log(retention interval DEFAULT interval '30 days')
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM pm.require_retention(retention);
    DELETE FROM pm.request_log WHERE received_at < now() - retention;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;

-- pm.record_anomaly
-- Records the anomaly a signal document carries ("anomaly": its kind), called by pm.apply_signal
-- in the signal's transaction. PM004 for an unknown kind (the table's CHECK: 23514).
CREATE OR REPLACE FUNCTION pm.record_anomaly(sig jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pm.require(sig ->> 'anomaly', 'anomaly');
    INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason, instance)
    VALUES (sig ->> 'anomaly', sig ->> 'fingerprint', sig ->> 'instrument', sig ->> 'signal_type',
            sig ->> 'position', sig ->> 'reason', sig ->> 'instance');
END;
$$;

-- pm.anomalies_since
-- Anomalies detected at or after p_since (NULL: the last 24 hours), newest first.
CREATE OR REPLACE FUNCTION pm.anomalies_since(p_since timestamptz DEFAULT NULL)
RETURNS SETOF pm.anomalies
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM pm.anomalies WHERE detected_at >= coalesce(p_since, now() - interval '24 hours')
     ORDER BY detected_at DESC, id DESC;
$$;

-- pm.anomaly_counts
-- Anomalies by kind since p_since (NULL: ever): {"kind": n}.
CREATE OR REPLACE FUNCTION pm.anomaly_counts(p_since timestamptz DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(kind, n), '{}') FROM (
        SELECT kind, count(*) AS n FROM pm.anomalies WHERE p_since IS NULL OR detected_at >= p_since GROUP BY kind
    ) k;
$$;

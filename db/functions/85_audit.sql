-- Audit (migration 004): refused webhook requests and anomalies, written so they can be listed,
-- counted and cleaned up.

-- pm.log_refusals
-- Appends a batch of refused requests (jsonb array of {received_at, source, status, reason, field,
-- body_sha256, body_excerpt, user_agent, instance, route}) within the day's budget for every instance
-- together (pm.audit_budget; rows and bytes per UTC day): the rest are counted in pm.request_log_days, not
-- stored. Returns how many were written. received_at is kept within the last hour and never in the future,
-- so no caller can date a row out of the retention's reach. The caller masks secrets and caps the excerpt;
-- the table refuses an excerpt over 8 KiB and a status outside 4xx/5xx (23514).
CREATE OR REPLACE FUNCTION pm.log_refusals(p_rows jsonb)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    budget pm.audit_budget;
    used pm.request_log_days;
    offered integer;
    written integer;
    written_bytes bigint;
BEGIN
    IF p_rows IS NULL OR jsonb_typeof(p_rows) <> 'array' THEN
        PERFORM pm.raise_error('PM004', 'refusals must be a JSON array');
    END IF;
    offered := jsonb_array_length(p_rows);
    SELECT * INTO budget FROM pm.audit_budget;
    -- the day's row, locked: concurrent batches of several instances take their share one after the other
    INSERT INTO pm.request_log_days AS d (day) VALUES ((now() AT TIME ZONE 'UTC')::date)
        ON CONFLICT (day) DO UPDATE SET day = d.day
        RETURNING * INTO used;
    WITH offered_rows AS (
        SELECT r, n, sum(pm.refusal_bytes(r)) OVER (ORDER BY n) AS running_bytes
          FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e(r, n)
    ), admitted AS (
        INSERT INTO pm.request_log (received_at, source, status, reason, field, body_sha256, body_excerpt, user_agent,
                                    instance, route)
        SELECT least(greatest(coalesce((r ->> 'received_at')::timestamptz, now()), now() - interval '1 hour'), now()),
               left(r ->> 'source', 64), (r ->> 'status')::smallint, left(r ->> 'reason', 500),
               left(r ->> 'field', 64), r ->> 'body_sha256', r ->> 'body_excerpt', left(r ->> 'user_agent', 512),
               r ->> 'instance', left(r ->> 'route', 100)
          FROM offered_rows
         WHERE used.rows_written + n <= budget.rows_per_day
           AND used.bytes_written + running_bytes <= budget.bytes_per_day
        RETURNING pm.refusal_bytes(to_jsonb(request_log)) AS bytes
    )
    SELECT count(*), coalesce(sum(bytes), 0) INTO written, written_bytes FROM admitted;
    UPDATE pm.request_log_days
       SET rows_written = rows_written + written, bytes_written = bytes_written + written_bytes,
           rows_dropped = rows_dropped + (offered - written)
     WHERE day = used.day;
    RETURN written;
END;
$$;

-- pm.refusal_bytes
-- What one refusal row costs the audit's byte budget: its text columns plus 200 bytes for the rest.
CREATE OR REPLACE FUNCTION pm.refusal_bytes(r jsonb)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT 200 + coalesce(octet_length(r ->> 'body_excerpt'), 0) + coalesce(octet_length(r ->> 'reason'), 0)
         + coalesce(octet_length(r ->> 'user_agent'), 0) + coalesce(octet_length(r ->> 'source'), 0)
         + coalesce(octet_length(r ->> 'field'), 0) + coalesce(octet_length(r ->> 'route'), 0);
$$;

-- pm.audit_usage
-- The refusal audit's use of its budget on each of the last p_days UTC days, newest first.
CREATE OR REPLACE FUNCTION pm.audit_usage(p_days integer DEFAULT 7)
RETURNS TABLE (day date, rows_written bigint, bytes_written bigint, rows_dropped bigint, rows_per_day integer,
               bytes_per_day bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT d.day, d.rows_written, d.bytes_written, d.rows_dropped, b.rows_per_day, b.bytes_per_day
      FROM pm.request_log_days d CROSS JOIN pm.audit_budget b
     WHERE d.day > (now() AT TIME ZONE 'UTC')::date - greatest(coalesce(p_days, 7), 1)
     ORDER BY d.day DESC;
$$;

-- pm.refusals
-- Refused requests received at or after p_since (NULL: the last 24 hours), newest first.
CREATE OR REPLACE FUNCTION pm.refusals(p_since timestamptz DEFAULT NULL, p_limit integer DEFAULT 1000)
RETURNS SETOF pm.request_log LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.request_log WHERE received_at >= coalesce(p_since, now() - interval '24 hours')
     ORDER BY received_at DESC, id DESC LIMIT greatest(coalesce(p_limit, 1000), 0);
$$;

-- pm.cleanup_request_log
-- Deletes refused-request rows older than the retention (default 30 days), and budget days older than it;
-- returns how many rows went. Below 1 day only the database owner may (PM020).
CREATE OR REPLACE FUNCTION pm.cleanup_request_log(retention interval DEFAULT interval '30 days')
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM pm.require_retention_floor(retention, interval '1 day', 'request log');
    DELETE FROM pm.request_log WHERE received_at < now() - retention;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    DELETE FROM pm.request_log_days WHERE day < (now() - retention - interval '1 day')::date;
    RETURN deleted;
END;
$$;

-- pm.record_anomaly
-- Records the anomaly a signal document carries ("anomaly": its kind), called by pm.apply_signal
-- in the signal's transaction. PM004 for an unknown kind (the table's CHECK: 23514).
CREATE OR REPLACE FUNCTION pm.record_anomaly(sig jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
RETURNS SETOF pm.anomalies LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.anomalies WHERE detected_at >= coalesce(p_since, now() - interval '24 hours')
     ORDER BY detected_at DESC, id DESC;
$$;

-- pm.anomaly_counts
-- Anomalies by kind since p_since (NULL: ever): {"kind": n}.
CREATE OR REPLACE FUNCTION pm.anomaly_counts(p_since timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(jsonb_object_agg(kind, n), '{}') FROM (
        SELECT kind, count(*) AS n FROM pm.anomalies WHERE p_since IS NULL OR detected_at >= p_since GROUP BY kind
    ) k;
$$;

-- Observability: what the metrics endpoint and the dashboard read in one round trip.

-- pm.metrics_snapshot
-- {mode, mode_changed_by, anomalies: {kind: n}, orders_pending, last_signal_at, open_positions}
-- for the whole portfolio, whichever instance is asked.
CREATE OR REPLACE FUNCTION pm.metrics_snapshot()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'mode', (SELECT mode FROM pm.trading_control WHERE id = 1),
        'anomalies', pm.anomaly_counts(NULL),
        'orders_pending', (SELECT count(*) FROM pm.broker_orders WHERE status = 'queued'),
        'last_signal_at', (SELECT max(processed_at) FROM pm.signal_log),
        'open_positions', (SELECT count(*) FROM pm.portfolio_positions WHERE status = 'open'));
$$;

-- pm.table_checksums
-- An md5 of every row of every table in schema pm but the ones named, one row per table: how the chaos
-- run proves that refused requests wrote nothing (a new table is included without being listed).
CREATE OR REPLACE FUNCTION pm.table_checksums(excluded text[] DEFAULT '{}')
RETURNS TABLE (table_name text, checksum text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'pm' AND c.relkind = 'r' AND c.relname <> ALL (coalesce(excluded, '{}'))
              ORDER BY c.relname LOOP
        table_name := t;
        EXECUTE format($q$SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM pm.%I x$q$, t)
           INTO checksum;
        RETURN NEXT;
    END LOOP;
END;
$$;

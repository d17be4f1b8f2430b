-- Observability: what the metrics endpoint and the dashboard read in one round trip.

-- pm.metrics_snapshot
-- {mode, mode_changed_by, anomalies: {kind: n}, orders_pending, last_signal_at, open_positions}
-- for the whole portfolio, whichever instance is asked.
CREATE OR REPLACE FUNCTION pm.metrics_snapshot()
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'mode', (SELECT mode FROM pm.trading_control WHERE id = 1),
        'anomalies', pm.anomaly_counts(NULL),
        'orders_pending', (SELECT count(*) FROM pm.broker_orders WHERE status = 'pending'),
        'last_signal_at', (SELECT max(processed_at) FROM pm.signal_log),
        'open_positions', (SELECT count(*) FROM pm.portfolio_positions WHERE status = 'open'));
$$;

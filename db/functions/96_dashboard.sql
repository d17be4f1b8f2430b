-- Dashboard reads: what a chart needs rather than everything (issue 19: a year of equity points every 3 s).

-- pm.equity_curve_sampled
-- pm.equity_curve in [p_from, p_to] cut to at most about 2 × p_buckets points: the points are split into
-- p_buckets runs of equal count, and each run keeps its lowest and highest open equity (so every
-- drawdown and peak stays on the chart), plus the first and the last point of the range. Every point
-- when there are no more than 2 × p_buckets. flow: the capital flows (migration 009) since the previous
-- point kept, so summing it along the sampled curve gives the net flows so far, as on the full curve.
-- PM004 for p_buckets outside 1 … 10000 or a reversed range.
DROP FUNCTION IF EXISTS pm.equity_curve_sampled(timestamptz, timestamptz, integer);  -- before flow was added
CREATE OR REPLACE FUNCTION pm.equity_curve_sampled(p_from timestamptz, p_to timestamptz, p_buckets integer)
RETURNS TABLE (recorded_at timestamptz, closed_equity numeric, open_equity numeric, blended_equity numeric,
               fingerprint varchar, version integer, flow numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    total bigint;
BEGIN
    PERFORM pm.check_time_range(p_from, p_to);
    IF p_buckets IS NULL OR p_buckets NOT BETWEEN 1 AND 10000 THEN
        PERFORM pm.raise_error('PM004', format('buckets must be between 1 and 10000, got %s', p_buckets));
    END IF;
    SELECT count(*) INTO total FROM pm.portfolio_history h
     WHERE (p_from IS NULL OR h.recorded_at >= p_from) AND (p_to IS NULL OR h.recorded_at <= p_to);
    RETURN QUERY
        WITH points AS (
            SELECT h.*, row_number() OVER (ORDER BY h.recorded_at, h.history_id) - 1 AS i,
                   sum(coalesce(f.signed_amount, 0)) OVER (ORDER BY h.recorded_at, h.history_id) AS net_flows
              FROM pm.portfolio_history h
              LEFT JOIN pm.capital_flows f ON f.history_id = h.history_id
             WHERE (p_from IS NULL OR h.recorded_at >= p_from) AND (p_to IS NULL OR h.recorded_at <= p_to)
        ), ranked AS (
            SELECT p.*,
                   row_number() OVER (PARTITION BY p.i * p_buckets / greatest(total, 1)
                                      ORDER BY p.open_equity, p.i) AS low,
                   row_number() OVER (PARTITION BY p.i * p_buckets / greatest(total, 1)
                                      ORDER BY p.open_equity DESC, p.i) AS high
              FROM points p
        )
        SELECT k.recorded_at, k.closed_equity, k.open_equity, k.blended_equity, k.fingerprint, k.version,
               nullif(k.net_flows - lag(k.net_flows, 1, 0::numeric) OVER (ORDER BY k.recorded_at, k.history_id), 0)
          FROM (SELECT r.* FROM ranked r
                 WHERE total <= 2 * p_buckets OR r.low = 1 OR r.high = 1 OR r.i = 0 OR r.i = total - 1) k
         ORDER BY k.recorded_at, k.history_id;
END;
$$;

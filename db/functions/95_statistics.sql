-- Statistics (docs/domain.md#history-and-statistics): trades, P&L by period and trade statistics, from the closed
-- positions and the equity history. pm_engine/core/statistics.py computes the same figures for a
-- backtest; tests/integration/test_history.py proves both agree to the paisa on one stream.
-- Roundings (half away from zero, as Python's ROUND_HALF_UP): money 2 decimals, R multiples,
-- profit factor and drawdown percentages 4 decimals, win rate (a percentage) 2 decimals.

-- pm.trades
-- One row per closed position (a base or a pyramid layer) whose exit time lies in [p_from, p_to]
-- (NULL: unbounded), in exit order. Entry and exit times are the instants the book changed
-- (entered_at / exited_at: the processed_at of the signals that opened and closed it, the times of
-- its history rows and equity points); a backtest's instants are its alerts' times. R multiple =
-- P&L / initial risk (NULL when the initial risk is unknown or zero). A position rolled to later contracts
-- is one trade: its P&L adds the old contracts' (rollover_pnl), its entry price is the first contract's, its
-- risk the first entry's. PM004 when p_from is after p_to.
CREATE OR REPLACE FUNCTION pm.trades(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS TABLE (instrument varchar, position_id text, layer text, entry_time timestamptz, entry_price numeric,
               exit_time timestamptz, exit_price numeric, lots integer, pnl numeric, initial_risk numeric,
               r_multiple numeric, holding_time interval, exit_reason varchar)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.check_time_range(p_from, p_to);
    RETURN QUERY
        SELECT p.instrument, split_part(p.position_id, '@', 1),
               CASE WHEN p.is_base_position THEN 'base' ELSE 'pyramid' END,
               x.entered, coalesce(p.original_entry_price, p.entry_price), x.exited, p.exit_price, p.lots,
               p.realized_pnl + p.rollover_pnl, p.initial_risk,
               CASE WHEN p.initial_risk > 0 THEN round((p.realized_pnl + p.rollover_pnl) / p.initial_risk, 4) END,
               x.exited - x.entered, p.exit_reason
          FROM pm.portfolio_positions p,
               -- rows written before migration 005 may lack an instant: their alert times stand in
               LATERAL (SELECT coalesce(p.entered_at, p.entry_timestamp) AS entered,
                               coalesce(p.exited_at, p.exit_timestamp) AS exited) x
         WHERE p.status = 'closed'
           AND (p_from IS NULL OR x.exited >= p_from) AND (p_to IS NULL OR x.exited <= p_to)
         ORDER BY x.exited, split_part(p.position_id, '@', 1);
END;
$$;

-- pm.pnl_by_period
-- Realized P&L, trades, net capital flows (+ deposits, - withdrawals; docs/domain.md#capital-flows) and closing equity per
-- IST calendar 'day', 'week' (Monday first) or 'month' with a trade exiting or a flow recorded in [p_from, p_to].
-- Closing equity = initial capital + the P&L of every trade closed by the end of that period + every flow
-- recorded by then (earlier ones included): each period starts from the equity after the flows before it, as
-- the book's closed equity does (a rolled position's old contracts' P&L counts when its trade exits). PM004 for
-- an unknown period or an empty range.
DROP FUNCTION IF EXISTS pm.pnl_by_period(text, timestamptz, timestamptz);  -- before net_flows (a new result type)
CREATE OR REPLACE FUNCTION pm.pnl_by_period(period text, p_from timestamptz DEFAULT NULL,
                                            p_to timestamptz DEFAULT NULL)
RETURNS TABLE (period_start date, realized_pnl numeric, trades integer, net_flows numeric, closing_equity numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(period, 'period');
    IF period NOT IN ('day', 'week', 'month') THEN
        PERFORM pm.raise_error('PM004', format('period must be day, week or month, got %s', period));
    END IF;
    PERFORM pm.check_time_range(p_from, p_to);
    RETURN QUERY
        WITH moves AS (  -- every trade and every flow: (period, P&L, flow, in range, is a trade)
            SELECT date_trunc(period, t.exit_time AT TIME ZONE 'Asia/Kolkata')::date AS start, t.pnl, 0::numeric AS flow,
                   (p_from IS NULL OR t.exit_time >= p_from) AND (p_to IS NULL OR t.exit_time <= p_to) AS inside,
                   true AS trade
              FROM pm.trades() t
            UNION ALL
            SELECT date_trunc(period, f.recorded_at AT TIME ZONE 'Asia/Kolkata')::date, 0, f.signed_amount,
                   (p_from IS NULL OR f.recorded_at >= p_from) AND (p_to IS NULL OR f.recorded_at <= p_to), false
              FROM pm.capital_flows f
        ), periods AS (
            SELECT m.start, coalesce(sum(m.pnl) FILTER (WHERE m.inside AND m.trade), 0.00) AS pnl,
                   count(*) FILTER (WHERE m.inside AND m.trade)::integer AS n,
                   coalesce(sum(m.flow) FILTER (WHERE m.inside AND NOT m.trade), 0.00) AS flows,
                   count(*) FILTER (WHERE m.inside) AS moved, sum(m.pnl + m.flow) AS all_moves
              FROM moves m GROUP BY m.start
        )
        SELECT c.start, c.pnl, c.n, c.flows, c.closing
          FROM (SELECT p.start, p.pnl, p.n, p.flows, p.moved,
                       (SELECT initial_capital FROM pm.portfolio_state WHERE id = 1)
                           + sum(p.all_moves) OVER (ORDER BY p.start) AS closing
                  FROM periods p) c
         WHERE c.moved > 0
         ORDER BY c.start;
END;
$$;

-- pm.trade_figures
-- The per-trade statistics of a set of trades (jsonb array of {pnl, r, s}): trades, wins, losses,
-- win_rate, gross_profit, gross_loss, net_pnl, profit_factor, expectancy, mean_r, and the slippage s
-- (rupees, adverse positive; absent = none) as total_slippage and mean_slippage (per trade). No trades:
-- zeros, and NULL for every ratio (never a division error).
CREATE OR REPLACE FUNCTION pm.trade_figures(rows jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    WITH t AS (
        SELECT (e ->> 'pnl')::numeric AS pnl, (e ->> 'r')::numeric AS r, (e ->> 's')::numeric AS s
          FROM jsonb_array_elements(rows) e
    ), f AS (
        SELECT count(*)::integer AS n, count(*) FILTER (WHERE pnl > 0)::integer AS wins,
               count(*) FILTER (WHERE pnl < 0)::integer AS losses,
               round(coalesce(sum(pnl) FILTER (WHERE pnl > 0), 0), 2) AS gp,
               round(-coalesce(sum(pnl) FILTER (WHERE pnl < 0), 0), 2) AS gl,
               round(coalesce(sum(pnl), 0), 2) AS net, avg(r) AS mean_r, coalesce(sum(s), 0) AS slip
          FROM t
    )
    SELECT jsonb_build_object(
        'trades', n, 'wins', wins, 'losses', losses,
        'win_rate', CASE WHEN n > 0 THEN round(100.0 * wins / n, 2) END,
        'gross_profit', gp, 'gross_loss', gl, 'net_pnl', net,
        'profit_factor', CASE WHEN gl > 0 THEN round(gp / gl, 4) END,
        'expectancy', CASE WHEN n > 0 THEN round(net / n, 2) END,
        'mean_r', round(mean_r, 4), 'total_slippage', round(slip, 2),
        'mean_slippage', CASE WHEN n > 0 THEN round(slip / n, 2) END)
      FROM f;
$$;

-- pm.drawdown
-- The largest fall of a series (jsonb array of numbers, in order) from its running peak, and that
-- fall as a percentage of (base + the peak it fell from): {"amount", "pct"}; zeros for no fall.
CREATE OR REPLACE FUNCTION pm.drawdown(series jsonb, base numeric DEFAULT 0)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v        numeric;
    peak     numeric;
    worst    numeric := 0;
    worst_at numeric;
BEGIN
    FOR v IN SELECT x::numeric FROM jsonb_array_elements_text(series) x LOOP
        IF peak IS NULL OR v > peak THEN
            peak := v;
        END IF;
        IF peak - v > worst THEN
            worst := peak - v;
            worst_at := peak;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('amount', round(worst, 2),
                              'pct', CASE WHEN worst > 0 THEN round(100 * worst / (base + worst_at), 4)
                                          ELSE round(0, 4) END);
END;
$$;

-- pm.trade_stats
-- Trade statistics for trades exiting in [p_from, p_to] and the equity curve in the same range, as
-- jsonb: the pm.trade_figures keys, max_drawdown / max_drawdown_pct (closed equity) and
-- max_open_drawdown / max_open_drawdown_pct (open equity) from the curve starting at the point in
-- force at p_from, final_closed_equity, and by_instrument: the same keys per instrument, its
-- drawdown taken on its cumulative realized P&L (as % of initial capital + that P&L's peak), and
-- NULL for the keys that only the whole book has (open drawdown, final closed equity, flows).
-- Capital flows (docs/domain.md#capital-flows, migration 009) are not trading: each is its own history row's
-- (capital_flows.history_id, migration 017; never a version, which two rows can share); the trade figures never see
-- them, both drawdowns are taken on the trading curve (equity minus the net flows up to that point),
-- deposits / withdrawals / net_flows are the flows of the curve's points after its first, and
-- time_weighted_return (closed equity, %, pm.time_weighted_return) chains the sub-periods between them.
CREATE OR REPLACE FUNCTION pm.trade_stats(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    capital numeric;
    curve   jsonb;
    closed  jsonb;
    opened  jsonb;
    flows   jsonb;
    result  jsonb;
    per     jsonb;
    any_flow boolean := EXISTS (SELECT 1 FROM pm.capital_flows);
BEGIN
    PERFORM pm.check_time_range(p_from, p_to);
    SELECT initial_capital INTO capital FROM pm.portfolio_state WHERE id = 1;
    -- the curve in range, starting with the point in force at p_from (the last one before it):
    -- [closed, open, the point's flow, the net flows up to and including it]
    SELECT coalesce(jsonb_agg(jsonb_build_array(c.closed_equity, c.open_equity, coalesce(f.signed_amount, 0),
                                                CASE WHEN any_flow THEN
                                                    (SELECT coalesce(sum(g.signed_amount), 0) FROM pm.capital_flows g
                                                      WHERE g.history_id <= c.history_id)
                                                ELSE 0 END)
                              ORDER BY c.recorded_at, c.history_id), '[]')
      INTO curve
      FROM (SELECT h.recorded_at, h.history_id, h.closed_equity, h.open_equity, h.version FROM pm.portfolio_history h
             WHERE (p_from IS NULL OR h.recorded_at >= p_from) AND (p_to IS NULL OR h.recorded_at <= p_to)
            UNION ALL
            (SELECT h.recorded_at, h.history_id, h.closed_equity, h.open_equity, h.version FROM pm.portfolio_history h
              WHERE p_from IS NOT NULL AND h.recorded_at < p_from
              ORDER BY h.recorded_at DESC, h.history_id DESC LIMIT 1)) c
      LEFT JOIN pm.capital_flows f ON any_flow AND f.history_id = c.history_id;  -- a flow's own point only
    closed := pm.drawdown(coalesce((SELECT jsonb_agg((p ->> 0)::numeric - (p ->> 3)::numeric ORDER BY n)
                                      FROM jsonb_array_elements(curve) WITH ORDINALITY x(p, n)), '[]'));
    opened := pm.drawdown(coalesce((SELECT jsonb_agg((p ->> 1)::numeric - (p ->> 3)::numeric ORDER BY n)
                                      FROM jsonb_array_elements(curve) WITH ORDINALITY x(p, n)), '[]'));
    SELECT jsonb_build_object(
               'deposits', round(coalesce(sum((p ->> 2)::numeric) FILTER (WHERE (p ->> 2)::numeric > 0), 0), 2),
               'withdrawals', round(-coalesce(sum((p ->> 2)::numeric) FILTER (WHERE (p ->> 2)::numeric < 0), 0), 2),
               'net_flows', round(coalesce(sum((p ->> 2)::numeric), 0), 2),
               'time_weighted_return', pm.time_weighted_return(coalesce(
                   (SELECT jsonb_agg(jsonb_build_array(q -> 0, q -> 2) ORDER BY m)
                      FROM jsonb_array_elements(curve) WITH ORDINALITY y(q, m)), '[]')))
      INTO flows
      FROM jsonb_array_elements(curve) WITH ORDINALITY x(p, n)
     WHERE n > 1;

    -- the trades in range, read once: the figures of all of them and of each instrument
    -- a trade's slippage: its broker orders' (entry and exit, every leg), those of its layer created by its exit
    -- and after the exit of the layer's previous trade (a layer id is reused once its position closed)
    WITH t AS (
        SELECT x.instrument, x.pnl, x.r_multiple, x.exit_time, x.position_id,
               sum(x.pnl) OVER (PARTITION BY x.instrument ORDER BY x.exit_time, x.position_id) AS cumulative,
               (SELECT sum(o.slippage_rupees) FROM pm.broker_orders o
                 WHERE o.position_id = x.position_id AND o.slippage_rupees IS NOT NULL AND o.created_at <= x.exit_time
                   AND o.created_at > coalesce((SELECT max(coalesce(q.exited_at, q.exit_timestamp))
                                                  FROM pm.portfolio_positions q
                                                 WHERE q.status = 'closed' AND split_part(q.position_id, '@', 1) = x.position_id
                                                   AND coalesce(q.exited_at, q.exit_timestamp) < x.exit_time),
                                               '-infinity')) AS slippage
          FROM pm.trades(p_from, p_to) x
    ), i AS (
        SELECT t.instrument,
               pm.trade_figures(jsonb_agg(jsonb_build_object('pnl', t.pnl, 'r', t.r_multiple, 's', t.slippage)))
                   AS figures,
               pm.drawdown(jsonb_build_array(0) || jsonb_agg(t.cumulative ORDER BY t.exit_time, t.position_id),
                           capital) AS dd
          FROM t GROUP BY t.instrument
    )
    SELECT (SELECT pm.trade_figures(coalesce(jsonb_agg(jsonb_build_object('pnl', t.pnl, 'r', t.r_multiple,
                                                                          's', t.slippage)), '[]'))
              FROM t),
           (SELECT coalesce(jsonb_object_agg(i.instrument, i.figures || jsonb_build_object(
                        'max_drawdown', i.dd -> 'amount', 'max_drawdown_pct', i.dd -> 'pct', 'max_open_drawdown', NULL,
                        'max_open_drawdown_pct', NULL, 'final_closed_equity', NULL, 'deposits', NULL,
                        'withdrawals', NULL, 'net_flows', NULL, 'time_weighted_return', NULL)), '{}')
              FROM i)
      INTO result, per;
    RETURN result || flows || jsonb_build_object(
        'max_drawdown', closed -> 'amount', 'max_drawdown_pct', closed -> 'pct',
        'max_open_drawdown', opened -> 'amount', 'max_open_drawdown_pct', opened -> 'pct',
        'final_closed_equity', curve -> -1 -> 0,
        'by_instrument', per);
END;
$$;

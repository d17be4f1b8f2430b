-- Capital in and out (docs/domain.md#capital-flows, migration 009): deposits and withdrawals move closed
-- equity and equity_high by the amount under the portfolio row lock, with their ledger row, in one
-- transaction; the portfolio version moves, so every instance decides its next signal on the new
-- equity. Flows are not trading P&L: pm.trade_stats (95_statistics.sql) keeps them out of the trade
-- figures, measures drawdown on the trading curve and chains returns between flows.

-- pm.check_capital_amount
-- Raises PM060 unless the amount is a positive number of rupees with at most two decimals (below 10^13).
CREATE OR REPLACE FUNCTION pm.check_capital_amount(p_amount numeric)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pm.require(p_amount, 'amount');
    -- NaN and Infinity sort above every number, so the bound refuses them too
    IF p_amount <= 0 OR p_amount >= 1e13 OR p_amount <> round(p_amount, 2) THEN
        PERFORM pm.raise_error('PM060', format(
            'amount must be a positive number of rupees with at most two decimals (below 10^13), got %s', p_amount));
    END IF;
END;
$$;

-- pm.record_capital_flow
-- Records a deposit or withdrawal and moves closed equity and equity_high by it: portfolio lock
-- first, one instant (pm.instant) for the ledger row, its history row and its equity point.
-- PM060 bad amount; PM062 a withdrawal leaving closed equity below zero; PM061 below the margin in use;
-- PM063 a note over 500 characters; PM004 an unknown kind or no recorded_by; PM095 a recorded_by not of a
-- checked form (pm.check_principal).
CREATE OR REPLACE FUNCTION pm.record_capital_flow(p_kind text, p_amount numeric, p_note text, p_recorded_by text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur    pm.portfolio_state;
    at     timestamptz;
    signed numeric;
    flow   pm.capital_flows;
    point  bigint;
BEGIN
    PERFORM pm.require(p_kind, 'kind');
    IF p_kind NOT IN ('deposit', 'withdrawal') THEN
        PERFORM pm.raise_error('PM004', format('kind must be deposit or withdrawal, got %s', p_kind));
    END IF;
    PERFORM pm.check_capital_amount(p_amount);
    IF coalesce(btrim(p_recorded_by), '') = '' THEN
        PERFORM pm.raise_error('PM004', 'recorded_by is required');
    END IF;
    PERFORM pm.check_principal(p_recorded_by, 'recorded_by');
    IF length(p_note) > 500 THEN
        PERFORM pm.raise_error('PM063', format('note is longer than 500 characters (%s)', length(p_note)));
    END IF;

    cur := pm.lock_book();
    IF cur.id IS NULL THEN
        PERFORM pm.raise_error('PM003', 'portfolio state row is missing; run make db-deploy');
    END IF;
    at := pm.instant();  -- the flow's instant, right after the lock: ledger row, history and equity point share it
    signed := CASE WHEN p_kind = 'deposit' THEN p_amount ELSE -p_amount END;
    IF signed < 0 AND cur.closed_equity + signed < 0 THEN
        PERFORM pm.raise_error('PM062', format('withdrawal of %s would leave closed equity %s below zero',
                                               p_amount, cur.closed_equity + signed));
    END IF;
    IF signed < 0 AND cur.closed_equity + signed < cur.margin_used THEN
        PERFORM pm.raise_error('PM061', format('withdrawal of %s would leave closed equity %s below the margin in use %s',
                                               p_amount, cur.closed_equity + signed, cur.margin_used));
    END IF;
    -- a flow is not a signal: its history row and equity point carry no fingerprint
    PERFORM set_config('pm.fingerprint', '', true);
    UPDATE pm.portfolio_state
       SET closed_equity = cur.closed_equity + signed, equity_high = cur.equity_high + signed,
           version = cur.version + 1, updated_at = at
     WHERE id = 1;
    -- the flow's own equity point: the history row the UPDATE's trigger just wrote (the newest of its version, under
    -- the portfolio lock); the key the statistics join on (a version can have more rows: migration 017)
    SELECT max(h.history_id) INTO point FROM pm.portfolio_history h WHERE h.version = cur.version + 1;
    INSERT INTO pm.capital_flows (recorded_at, kind, amount, note, recorded_by, closed_equity, portfolio_version,
                                  history_id)
    VALUES (at, p_kind, p_amount, nullif(btrim(p_note), ''), btrim(p_recorded_by), cur.closed_equity + signed,
            cur.version + 1, point)
    RETURNING * INTO flow;
    RETURN to_jsonb(flow) || jsonb_build_object('equity_high', cur.equity_high + signed);
END;
$$;

-- pm.capital_ledger
-- The latest flows, newest first (p_limit NULL: all).
CREATE OR REPLACE FUNCTION pm.capital_ledger(p_limit integer DEFAULT NULL)
RETURNS SETOF pm.capital_flows LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.capital_flows ORDER BY id DESC LIMIT CASE WHEN p_limit IS NOT NULL THEN greatest(p_limit, 0) END;
$$;

-- pm.capital_totals
-- Deposits, withdrawals (both positive) and net flows recorded in [p_from, p_to] (NULL: unbounded).
CREATE OR REPLACE FUNCTION pm.capital_totals(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'deposits', coalesce(sum(amount) FILTER (WHERE kind = 'deposit'), 0.00),
        'withdrawals', coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal'), 0.00),
        'net_flows', coalesce(sum(signed_amount), 0.00))
      FROM pm.capital_flows
     WHERE (p_from IS NULL OR recorded_at >= p_from) AND (p_to IS NULL OR recorded_at <= p_to);
$$;

-- pm.time_weighted_return
-- The return of a closed-equity series with flows (jsonb array of [equity, flow], in order; the
-- first point is the start, its flow ignored), each sub-period between flows chained, in % to 4
-- decimals: (prod over sub-periods of equity before the flow / equity after the previous one) - 1.
-- Every ratio and running product is rounded to 12 decimals (as pm_engine/core/replay/statistics.py does).
-- NULL when a sub-period starts at zero equity or there is no point.
CREATE OR REPLACE FUNCTION pm.time_weighted_return(series jsonb)
RETURNS numeric LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    point  jsonb;
    equity numeric;
    flow   numeric;
    base   numeric;
    growth numeric := 1;
BEGIN
    FOR point IN SELECT e FROM jsonb_array_elements(series) e LOOP
        equity := (point ->> 0)::numeric;
        flow := coalesce((point ->> 1)::numeric, 0);
        IF base IS NULL THEN
            base := equity;
        ELSIF flow <> 0 THEN
            IF base <= 0 THEN
                RETURN NULL;
            END IF;
            growth := round(growth * round((equity - flow) / base, 12), 12);
            base := equity;
        END IF;
    END LOOP;
    IF base IS NULL OR base <= 0 THEN
        RETURN NULL;
    END IF;
    growth := round(growth * round(equity / base, 12), 12);
    RETURN round(100 * (growth - 1), 4);
END;
$$;

-- the ledger is append-only (pm.refuse_change, 06_book_and_machines.sql)
CREATE OR REPLACE TRIGGER capital_flows_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.capital_flows
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM007');
DROP FUNCTION IF EXISTS pm.refuse_ledger_change();  -- pm.refuse_change (issue 30)

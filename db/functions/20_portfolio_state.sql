-- Portfolio state functions: the single versioned row of pm.portfolio_state.

-- pm.get_portfolio_state
-- The portfolio's one row (id = 1).
CREATE OR REPLACE FUNCTION pm.get_portfolio_state()
RETURNS SETOF pm.portfolio_state LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.portfolio_state WHERE id = 1;
$$;

-- pm.save_portfolio_state
-- Updates the row if its version is still expected_version; returns the new version (PM001 if stale).
-- Keys id/version/updated_at in the document are ignored; unknown keys are refused (PM004).
CREATE OR REPLACE FUNCTION pm.save_portfolio_state(s jsonb, expected_version integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur     pm.portfolio_state;
    merged  pm.portfolio_state;
    unknown text;
BEGIN
    IF s IS NULL OR jsonb_typeof(s) <> 'object' THEN
        PERFORM pm.raise_error('PM004', 'portfolio state must be a JSON object');
    END IF;
    PERFORM pm.require(expected_version, 'expected_version');
    -- the row type's own keys (no catalog query): every column of pm.portfolio_state
    SELECT string_agg(k, ', ' ORDER BY k) INTO unknown
      FROM jsonb_object_keys(s) AS k
     WHERE NOT to_jsonb(jsonb_populate_record(NULL::pm.portfolio_state, '{}'::jsonb)) ? k;
    IF unknown IS NOT NULL THEN
        PERFORM pm.raise_error('PM004', format('unknown portfolio state field(s): %s', unknown));
    END IF;

    cur := pm.lock_book();
    PERFORM pm.instant();  -- the writer's instant, under the lock (05_instants.sql)
    IF cur.id IS NULL THEN
        PERFORM pm.raise_error('PM003', 'portfolio state row is missing; run make db-deploy');
    END IF;
    IF cur.version <> expected_version THEN
        PERFORM pm.raise_error('PM001',
            format('stale version for portfolio state: expected %s, found %s', expected_version, cur.version),
            format('current version %s', cur.version));
    END IF;

    merged := jsonb_populate_record(cur, s - 'id' - 'version' - 'updated_at');
    UPDATE pm.portfolio_state SET
        initial_capital = merged.initial_capital, closed_equity = merged.closed_equity,
        total_risk_amount = merged.total_risk_amount, total_risk_percent = merged.total_risk_percent,
        total_vol_amount = merged.total_vol_amount, margin_used = merged.margin_used,
        equity_high = greatest(merged.equity_high, merged.closed_equity), blended_weight = merged.blended_weight,
        version = cur.version + 1, updated_at = pm.instant()
     WHERE id = 1;
    RETURN cur.version + 1;
END;
$$;

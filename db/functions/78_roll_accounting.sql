-- Rollover, its accounting (migration 012, DOMAIN.md section 16): what a roll's fills do to the book. The old
-- contract's P&L realized at the close, the layer moved onto the new contract at the open (stops shifted by the
-- basis, lots re-sized), or closed flat when a leg failed. The Python twin is core/rollover.roll_in_memory.

-- pm.roll_close_layer_realized
-- One layer's close filled (p_lots of its lots at p_price): that P&L, (close − entry) × lots × point value rounded
-- to 0.01, is real cash at the broker, so it goes into closed equity and rollover_pnl now. Returns it.
CREATE OR REPLACE FUNCTION pm.roll_close_layer_realized(l pm.roll_layers, p_lots integer, p_price numeric)
RETURNS numeric
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pnl numeric := round((p_price - l.entry_price) * p_lots * l.point_value, 2);
BEGIN
    -- the position first: the portfolio row's history point sums the positions' unrealized P&L as it is written
    UPDATE pm.portfolio_positions
       SET rollover_pnl = rollover_pnl + pnl, original_entry_price = coalesce(original_entry_price, entry_price),
           original_expiry = coalesce(original_expiry, expiry), original_strike = coalesce(original_strike, strike),
           unrealized_pnl = 0, version = version + 1, updated_at = pm.instant()
     WHERE position_id = l.position_id;
    UPDATE pm.portfolio_state SET closed_equity = closed_equity + pnl WHERE id = 1;
    UPDATE pm.roll_layers SET close_price = p_price, close_pnl = pnl WHERE roll_id = l.roll_id AND position_id = l.position_id;
    RETURN pnl;
END;
$$;

-- pm.roll_move_layer
-- A layer whose open filled p_lots whole lots at p_price: the position now holds the new contract at that fill;
-- initial_stop, current_stop and highest_close shift by the basis (open − close), recorded on the layer with
-- the lots (fewer than planned: 'resized'); rollover_count + 1, rollover_timestamp the writer's instant.
CREATE OR REPLACE FUNCTION pm.roll_move_layer(l pm.roll_layers, p_lots integer, p_price numeric, p_call numeric,
                                              p_put numeric)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    closed numeric;
    shift numeric;
BEGIN
    SELECT close_price INTO closed FROM pm.roll_layers WHERE roll_id = l.roll_id AND position_id = l.position_id;
    shift := p_price - closed;
    UPDATE pm.portfolio_positions
       SET entry_price = p_price, lots = p_lots, quantity = p_lots * l.new_lot_size, futures_symbol = l.to_symbol,
           expiry = l.to_expiry, contract_month = coalesce(l.to_contract_month, contract_month), strike = l.to_strike,
           ce_symbol = l.to_ce_symbol, pe_symbol = l.to_pe_symbol, ce_entry_price = round(p_call, 2),
           pe_entry_price = round(p_put, 2), initial_stop = initial_stop + shift, current_stop = current_stop + shift,
           highest_close = highest_close + shift, unrealized_pnl = 0, rollover_status = 'none',
           rollover_count = rollover_count + 1, rollover_timestamp = pm.instant(), version = version + 1,
           updated_at = pm.instant(),
           signal_price = NULL  -- the old contract's alert price: beside the new fill it would read as slippage
     WHERE position_id = l.position_id;
    UPDATE pm.roll_layers
       SET open_price = p_price, opened_lots = p_lots, basis = shift,
           outcome = CASE WHEN p_lots = l.new_lots AND l.new_lots = l.lots THEN 'rolled' ELSE 'resized' END
     WHERE roll_id = l.roll_id AND position_id = l.position_id;
END;
$$;

-- pm.roll_flatten_layer
-- A layer flat at the broker after a roll leg failed: closed in the book at its close price with the realized P&L
-- of the last contract (p_realized: 0 when the old P&L went to rollover_pnl already), exit reason ROLL_FAILED,
-- never re-entered; a 'roll_failed' anomaly records it. The instrument's pyramiding state goes with its last layer.
CREATE OR REPLACE FUNCTION pm.roll_flatten_layer(l pm.roll_layers, p_instrument text, p_price numeric,
                                                 p_realized numeric, p_why text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pm.portfolio_positions
       SET status = 'closed', exit_price = p_price, exit_timestamp = pm.instant(), exited_at = pm.instant(),
           exit_reason = 'ROLL_FAILED', realized_pnl = p_realized, unrealized_pnl = 0, rollover_status = 'failed',
           version = version + 1, updated_at = pm.instant()
     WHERE position_id = l.position_id;
    UPDATE pm.portfolio_state SET closed_equity = closed_equity + p_realized WHERE id = 1;
    UPDATE pm.roll_layers SET outcome = 'flat' WHERE roll_id = l.roll_id AND position_id = l.position_id;
    IF NOT EXISTS (SELECT 1 FROM pm.portfolio_positions WHERE instrument = p_instrument AND status = 'open') THEN
        DELETE FROM pm.pyramiding_state WHERE instrument = p_instrument;
    END IF;
    INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
    VALUES ('roll_failed', 'roll-' || l.roll_id, p_instrument, 'ROLL', right(l.position_id, 20),
            format('roll %s of %s: %s; position %s is flat, closed in the book at %s (re-entry is the trader''s call)',
                   l.roll_id, l.position_id, p_why, l.position_id, p_price));
END;
$$;

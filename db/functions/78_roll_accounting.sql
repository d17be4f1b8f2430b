-- Rollover, its accounting (migration 012, docs/domain.md#rollover): what a roll's fills do to the book. The old
-- contract's P&L realized at the close, the layer moved onto the new contract at the open (stops shifted by the
-- basis, lots re-sized), or closed flat when a leg failed. The Python twin is core/rollover.roll_in_memory.

-- pm.roll_close_layer_realized
-- One layer's close filled (p_lots of its lots at p_price): that P&L, (close − entry) × lots × point value rounded
-- to 0.01, is real cash at the broker, so it goes into closed equity and rollover_pnl now. Returns it.
CREATE OR REPLACE FUNCTION pm.roll_close_layer_realized(l pm.roll_layers, p_lots integer, p_price numeric)
RETURNS numeric LANGUAGE plpgsql AS $$
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
RETURNS void LANGUAGE plpgsql AS $$
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
RETURNS void LANGUAGE plpgsql AS $$
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
    PERFORM pm.roll_anomaly(l, p_instrument, format('%s; position %s is flat, closed in the book at %s (re-entry is '
                                                    'the trader''s call)', p_why, l.position_id, p_price));
END;
$$;

-- pm.roll_anomaly
-- A 'roll_failed' anomaly of one layer: "roll <id> of <position>: <what happened>", under the roll's fingerprint.
CREATE OR REPLACE FUNCTION pm.roll_anomaly(l pm.roll_layers, p_instrument text, p_what text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
    VALUES ('roll_failed', 'roll-' || l.roll_id, p_instrument, 'ROLL', right(l.position_id, 20),
            format('roll %s of %s: %s', l.roll_id, l.position_id, p_what));
$$;

-- pm.roll_fail_layer
-- One layer of a failed roll, booked by what its legs of the stage (close | open) filled. Closing: a layer whose
-- close filled wholly is flat (closed in the book with its realized P&L), partly (in whole lots) keeps the rest
-- on the old contract with the closed part realized; one that closed nothing stays as it was, for the next
-- check to retry. Opening: a layer whose open filled keeps what filled (moved), one that opened nothing is flat.
-- A synthetic layer's legs filled unevenly: the extra lots of a leg are unwound by a queued opposite order
-- ('-UW'), never a naked option. Each layer not rolled whole is a 'roll_failed' anomaly.
CREATE OR REPLACE FUNCTION pm.roll_fail_layer(l pm.roll_layers, p_instrument text, p_stage text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    o pm.broker_orders;
    f record;
    got integer;
    pnl numeric;
BEGIN
    SELECT * INTO f FROM pm.roll_layer_fill(l, p_stage);
    -- a synthetic leg that filled more whole lots than its sibling is unwound down to the lots both filled
    FOR o IN SELECT * FROM pm.broker_orders WHERE roll_id = l.roll_id AND position_id = l.position_id
                                               AND roll_leg = p_stage AND leg IN ('CE', 'PE') LOOP
        got := (pm.roll_order_lots(o)).lots;
        IF got > f.lots THEN
            INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price,
                                          exchange, symbol, quantity, product, leg, point_value, roll_id, roll_leg,
                                          created_at)
            VALUES (o.client_order_id || '-UW', o.fingerprint, o.position_id, o.instrument,
                    CASE WHEN o.side = 'BUY' THEN 'SELL' ELSE 'BUY' END, got - f.lots, o.price, o.exchange, o.symbol,
                    (got - f.lots) * greatest(o.quantity / o.lots, 1), o.product, o.leg, o.point_value, o.roll_id,
                    'unwind', pm.instant())
            ON CONFLICT (client_order_id) DO NOTHING;
        END IF;
    END LOOP;
    IF p_stage = 'close' THEN
        IF f.lots = 0 THEN
            UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = l.roll_id AND position_id = l.position_id;
        ELSIF f.lots >= l.lots THEN
            pnl := round((f.price - l.entry_price) * l.lots * l.point_value, 2);
            UPDATE pm.roll_layers SET close_price = f.price, close_pnl = pnl
             WHERE roll_id = l.roll_id AND position_id = l.position_id;
            PERFORM pm.roll_flatten_layer(l, p_instrument, f.price, pnl, 'its close filled, another leg of the group did not');
        ELSE
            PERFORM pm.roll_close_layer_realized(l, f.lots, f.price);
            UPDATE pm.portfolio_positions SET lots = lots - f.lots, quantity = quantity / lots * (lots - f.lots)
             WHERE position_id = l.position_id;
            UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = l.roll_id AND position_id = l.position_id;
            PERFORM pm.roll_anomaly(l, p_instrument, format('%s of %s lots closed at %s, the rest stays on %s', f.lots,
                                                            l.lots, f.price, l.from_symbol));
        END IF;
    ELSIF f.lots > 0 THEN
        PERFORM pm.roll_move_layer(l, f.lots, f.price, f.call_price, f.put_price);
        IF f.lots < l.new_lots THEN
            PERFORM pm.roll_anomaly(l, p_instrument, format('%s of %s lots opened on %s', f.lots, l.new_lots,
                                                            l.to_symbol));
        END IF;
    ELSE
        SELECT * INTO l FROM pm.roll_layers WHERE roll_id = l.roll_id AND position_id = l.position_id;
        PERFORM pm.roll_flatten_layer(l, p_instrument, l.close_price, 0, 'its open leg ended unfilled');
    END IF;
END;
$$;

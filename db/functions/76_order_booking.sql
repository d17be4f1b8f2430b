-- Order booking: what a broker order's end does to the book (migration 011). A decision books its orders at
-- the signal's price when it commits; when a sent order ends, this corrects the book to what the broker did,
-- inside the database, whoever recorded the end. The paper broker's fills (queued → filled) are at the
-- signal's price already and never reach it.

-- pm.order_fill_totals
-- An order's filled quantity (0 when none) and the fills' volume-weighted price (NULL when none).
CREATE OR REPLACE FUNCTION pm.order_fill_totals(p_id text, OUT filled integer, OUT vwap numeric)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(quantity), 0)::integer, sum(quantity * price) / nullif(sum(quantity), 0)
      FROM pm.order_fills WHERE client_order_id = p_id;
$$;

-- pm.book_anomaly
-- Records an order-path anomaly ('entry_rejected', 'exit_rejected', 'order_needs_review') of an order's position.
CREATE OR REPLACE FUNCTION pm.book_anomaly(r pm.broker_orders, p_kind text, p_reason text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
    VALUES (p_kind, r.fingerprint, r.instrument, 'ORDER', right(r.position_id, 20), p_reason);
$$;

-- pm.remove_unfilled_entry
-- An entry that filled nothing never happened: its position is deleted (with its instrument's pyramiding state
-- when it was the base; an exit already decided gives its P&L back), a queued exit of it expires (it would
-- sell what was never bought; booking that finds no position), an 'entry_rejected' anomaly says why, and the
-- signal that decided it is 'rejected' in the signal log with the order's reason (its outcome is the order's).
CREATE OR REPLACE FUNCTION pm.remove_unfilled_entry(r pm.broker_orders, p pm.portfolio_positions, p_why text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p.status = 'closed' THEN
        UPDATE pm.portfolio_state SET closed_equity = closed_equity - p.realized_pnl WHERE id = 1;
    END IF;
    DELETE FROM pm.portfolio_positions WHERE position_id = p.position_id;
    IF p.is_base_position THEN
        DELETE FROM pm.pyramiding_state WHERE instrument = p.instrument;
    END IF;
    -- only this entry's own exits: decided after it and before any later entry of the same layer id (a layer
    -- closed and entered again keeps the newer row's exit, which waits for this entry and is then sent)
    PERFORM pm.order_expired(o.client_order_id, format('its entry %s never filled', r.client_order_id))
       FROM pm.broker_orders o
      WHERE o.position_id = r.position_id AND o.status = 'queued' AND NOT pm.order_opens(o)
        AND o.created_at >= r.created_at
        AND o.fingerprint <> r.fingerprint  -- an exit of r's own signal closed the row before r (stop-out, re-entry)
        AND NOT EXISTS (SELECT 1 FROM pm.broker_orders n
                         WHERE n.position_id = r.position_id AND pm.order_opens(n) AND n.roll_id IS NULL
                           AND n.created_at > r.created_at AND n.created_at < o.created_at);
    PERFORM pm.book_anomaly(r, 'entry_rejected', format('entry order %s %s: %s; position %s removed',
                                                         r.client_order_id, r.status, p_why, r.position_id));
    UPDATE pm.signal_log
       SET processing_status = 'rejected',
           reason = format('order %s %s: %s (decided: %s)', r.client_order_id, r.status, p_why, reason)
     WHERE fingerprint = r.fingerprint AND processing_status = 'executed';
END;
$$;

-- pm.reopen_unfilled_exit
-- An exit that filled nothing: the position is open again (its decided P&L taken back out of closed equity,
-- the base of its pyramiding state again) and an 'exit_rejected' anomaly tells the trader.
CREATE OR REPLACE FUNCTION pm.reopen_unfilled_exit(r pm.broker_orders, p pm.portfolio_positions, p_why text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pm.portfolio_state SET closed_equity = closed_equity - p.realized_pnl WHERE id = 1;
    UPDATE pm.portfolio_positions
       SET status = 'open', exit_price = NULL, exit_timestamp = NULL, exit_reason = NULL, realized_pnl = 0,
           version = version + 1, updated_at = pm.instant()
     WHERE position_id = p.position_id;
    IF p.is_base_position THEN
        INSERT INTO pm.pyramiding_state (instrument, last_pyramid_price, base_position_id)
        VALUES (p.instrument, NULL, p.position_id)
        ON CONFLICT (instrument) DO UPDATE SET base_position_id = EXCLUDED.base_position_id;
    END IF;
    PERFORM pm.book_anomaly(r, 'exit_rejected', format('exit order %s %s: %s; position %s is open again',
                                                        r.client_order_id, r.status, p_why, r.position_id));
END;
$$;

-- pm.book_fill_prices
-- A position's entry (p_opens) or exit at a filled price per unit: the entry keeps the alert's price as
-- signal_price, takes p_lots whole lots and the slippage (points, and rupees × lots × point value); an exit
-- already decided (or the exit itself) has its realized P&L recomputed and closed equity moved by the difference.
CREATE OR REPLACE FUNCTION pm.book_fill_prices(p pm.portfolio_positions, p_opens boolean, p_price numeric,
                                               p_lots integer, p_point_value numeric)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    points numeric;
    realized numeric;
BEGIN
    IF p_opens THEN
        points := round(p_price - coalesce(p.signal_price, p.entry_price), 2);
        UPDATE pm.portfolio_positions
           SET signal_price = coalesce(signal_price, entry_price), entry_price = round(p_price, 2),
               lots = p_lots, quantity = quantity / lots * p_lots,
               slippage_points = points, slippage_rupees = round(points * p_lots * p_point_value, 2),
               version = version + 1, updated_at = pm.instant()
         WHERE position_id = p.position_id
        RETURNING * INTO p;
        IF p.status <> 'closed' THEN  -- an exit decided before this fill was known: its P&L follows below
            RETURN;
        END IF;
    ELSE
        UPDATE pm.portfolio_positions SET exit_price = round(p_price, 2), version = version + 1, updated_at = pm.instant()
         WHERE position_id = p.position_id
        RETURNING * INTO p;
    END IF;
    realized := round((p.exit_price - p.entry_price) * p.lots * p_point_value, 2);
    UPDATE pm.portfolio_state SET closed_equity = closed_equity + realized - p.realized_pnl WHERE id = 1;
    UPDATE pm.portfolio_positions SET realized_pnl = realized WHERE position_id = p.position_id;
END;
$$;

-- pm.order_position
-- The position row an order belongs to, locked. A layer id is reused once its position closed (the closed row is
-- renamed id@entry-time), and an order may end after that: an entry belongs to the row its decision created (entered
-- in the order's transaction: the first entered at or after the order's creation; else the latest before it), an
-- exit to the row it closed (the first closed at or after its creation; else the row that holds the id now).
CREATE OR REPLACE FUNCTION pm.order_position(r pm.broker_orders)
RETURNS pm.portfolio_positions LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p pm.portfolio_positions;
BEGIN
    IF pm.order_opens(r) THEN
        SELECT * INTO p FROM pm.portfolio_positions x
         WHERE split_part(x.position_id, '@', 1) = r.position_id
         ORDER BY coalesce(x.entered_at, x.entry_timestamp) >= r.created_at DESC,
                  CASE WHEN coalesce(x.entered_at, x.entry_timestamp) >= r.created_at
                       THEN coalesce(x.entered_at, x.entry_timestamp) END,
                  coalesce(x.entered_at, x.entry_timestamp) DESC
         LIMIT 1 FOR UPDATE;
        RETURN p;
    END IF;
    SELECT * INTO p FROM pm.portfolio_positions x
     WHERE split_part(x.position_id, '@', 1) = r.position_id AND x.status = 'closed'
       AND coalesce(x.exited_at, x.exit_timestamp) >= r.created_at
     ORDER BY coalesce(x.exited_at, x.exit_timestamp) LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO p FROM pm.portfolio_positions WHERE position_id = r.position_id FOR UPDATE;
    END IF;
    RETURN p;
END;
$$;

-- pm.book_order
-- Books a sent order's end into its position. A futures order: slippage per unit against the signal's price
-- (adverse positive) and in rupees (× filled lots × point value) on the order; an entry that filled takes the
-- fills' volume-weighted price (rounded to 0.01, half away from zero) and its whole filled lots (the rest was
-- cancelled), one that filled nothing is removed (pm.remove_unfilled_entry); an exit that filled moves
-- exit_price, realized P&L and closed equity to its fills (fewer lots than held: an 'exit_rejected' anomaly,
-- the rest is still at the broker), one that filled nothing reopens the position (pm.reopen_unfilled_exit).
-- An option leg waits for its sibling (pm.book_synthetic). Bumps the portfolio's version: instances reload.
CREATE OR REPLACE FUNCTION pm.book_order(p_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
    p pm.portfolio_positions;
    t record;
    per_lot integer;
    lots_filled integer;
    points numeric;
BEGIN
    PERFORM pm.lock_book();  -- one writer of the book at a time
    r := pm.lock_order(p_id);
    IF r.point_value IS NULL OR r.symbol IS NULL THEN
        RETURN;  -- an order without a contract (a custom instrument) is not at a broker
    END IF;
    PERFORM set_config('pm.fingerprint', r.fingerprint, true);  -- history says which signal this corrects
    IF r.client_order_id LIKE '%-UW' THEN
        RETURN;  -- unwinding a synthetic leg: the position it belonged to was booked already
    END IF;
    IF r.roll_id IS NOT NULL THEN
        RETURN;  -- a roll's leg: its roll books it (79_roll_machine.sql, pm.roll_leg_ended)
    END IF;
    IF r.leg IN ('CE', 'PE') THEN
        PERFORM pm.book_synthetic(r);
        RETURN;
    END IF;
    SELECT * INTO t FROM pm.order_fill_totals(p_id);
    per_lot := greatest(r.quantity / r.lots, 1);
    lots_filled := t.filled / per_lot;
    IF t.vwap IS NOT NULL THEN
        points := round(CASE WHEN r.side = 'BUY' THEN t.vwap - r.price ELSE r.price - t.vwap END, 2);
        UPDATE pm.broker_orders
           SET slippage_points = points, slippage_rupees = round(points * t.filled::numeric / per_lot * r.point_value, 2)
         WHERE client_order_id = p_id;
    END IF;
    p := pm.order_position(r);
    IF p.position_id IS NULL OR (NOT pm.order_opens(r) AND p.status <> 'closed') THEN
        RETURN;
    END IF;
    IF pm.order_opens(r) AND lots_filled = 0 THEN
        PERFORM pm.remove_unfilled_entry(r, p, coalesce(r.reason, 'nothing filled'));
    ELSIF pm.order_opens(r) THEN
        PERFORM pm.book_fill_prices(p, true, t.vwap, lots_filled, r.point_value);
    ELSIF lots_filled = 0 THEN
        PERFORM pm.reopen_unfilled_exit(r, p, coalesce(r.reason, 'nothing filled'));
    ELSE
        PERFORM pm.book_fill_prices(p, false, t.vwap, p.lots, r.point_value);
        IF lots_filled < p.lots THEN
            PERFORM pm.book_anomaly(r, 'exit_rejected', format('exit order %s filled %s of %s lots: the rest is '
                                                                'still held at the broker', p_id, lots_filled, p.lots));
        END IF;
    END IF;
    PERFORM pm.bump_book(true);
END;
$$;

-- pm.book_synthetic
-- A synthetic position's two legs (CE, PE of one decision), booked once both have ended. Entry: the lots both
-- legs filled are kept at the synthetic price strike + call − put (each leg's fill price stored); a leg's lots
-- beyond the other's are unwound by an order of the opposite side ('<leg id>-UW', queued now): never a naked
-- option; nothing filled on both → the position is removed. Exit: both filled → exit at strike + call − put;
-- neither → the position is open again; one leg only → an 'exit_rejected' anomaly (the trader closes the
-- rest: half a synthetic is not unwound blindly).
CREATE OR REPLACE FUNCTION pm.book_synthetic(r pm.broker_orders)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ce pm.broker_orders;
    pe pm.broker_orders;
    leg pm.broker_orders;
    p pm.portfolio_positions;
    tc record;
    tp record;
    per_lot integer;
    ce_lots integer;
    pe_lots integer;
    both_lots integer;
    extra integer;
    opens boolean := pm.order_opens(r);
BEGIN
    SELECT * INTO ce FROM pm.broker_orders o WHERE o.fingerprint = r.fingerprint AND o.position_id = r.position_id
       AND o.leg = 'CE' AND pm.order_opens(o) = opens AND o.client_order_id NOT LIKE '%-UW';
    SELECT * INTO pe FROM pm.broker_orders o WHERE o.fingerprint = r.fingerprint AND o.position_id = r.position_id
       AND o.leg = 'PE' AND pm.order_opens(o) = opens AND o.client_order_id NOT LIKE '%-UW';
    IF ce.client_order_id IS NULL OR pe.client_order_id IS NULL
       OR NOT pm.order_ended(ce.status) OR NOT pm.order_ended(pe.status) THEN
        RETURN;  -- the other leg is still on its way: booked when it ends
    END IF;
    p := pm.order_position(r);
    IF p.position_id IS NULL OR p.strike IS NULL OR (NOT opens AND p.status <> 'closed') THEN
        RETURN;
    END IF;
    SELECT * INTO tc FROM pm.order_fill_totals(ce.client_order_id);
    SELECT * INTO tp FROM pm.order_fill_totals(pe.client_order_id);
    per_lot := greatest(r.quantity / r.lots, 1);
    ce_lots := tc.filled / per_lot;
    pe_lots := tp.filled / per_lot;
    both_lots := least(ce_lots, pe_lots);
    IF opens THEN
        IF both_lots = 0 THEN  -- removed first: removal expires the position's queued closers, the unwinds are not
            PERFORM pm.remove_unfilled_entry(r, p, format('call %s, put %s', ce.status, pe.status));
        ELSE
            UPDATE pm.portfolio_positions SET ce_entry_price = round(tc.vwap, 2), pe_entry_price = round(tp.vwap, 2)
             WHERE position_id = p.position_id
            RETURNING * INTO p;
            PERFORM pm.book_fill_prices(p, true, p.strike + tc.vwap - tp.vwap, both_lots, r.point_value);
        END IF;
        FOREACH leg IN ARRAY ARRAY[ce, pe] LOOP
            extra := CASE WHEN leg.leg = 'CE' THEN ce_lots ELSE pe_lots END - both_lots;
            IF extra > 0 THEN
                PERFORM pm.add_orders(jsonb_build_array(jsonb_build_object(
                    'client_order_id', leg.client_order_id || '-UW', 'fingerprint', leg.fingerprint,
                    'position_id', leg.position_id, 'instrument', leg.instrument,
                    'side', CASE WHEN leg.side = 'BUY' THEN 'SELL' ELSE 'BUY' END, 'lots', extra,
                    'price', leg.price, 'exchange', leg.exchange, 'symbol', leg.symbol,
                    'quantity', extra * per_lot, 'product', leg.product, 'leg', leg.leg,
                    'point_value', leg.point_value)));
            END IF;
        END LOOP;
    ELSIF ce_lots = 0 AND pe_lots = 0 THEN
        PERFORM pm.reopen_unfilled_exit(r, p, format('call %s, put %s', ce.status, pe.status));
    ELSIF ce_lots = p.lots AND pe_lots = p.lots THEN
        PERFORM pm.book_fill_prices(p, false, p.strike + tc.vwap - tp.vwap, p.lots, r.point_value);
    ELSE
        PERFORM pm.book_anomaly(r, 'exit_rejected', format('synthetic exit of %s: call filled %s, put %s of %s lots; '
                                                            'close the rest by hand', p.position_id, ce_lots, pe_lots,
                                                            p.lots));
    END IF;
    PERFORM pm.bump_book(true);
END;
$$;

-- pm.book_order_end
-- Trigger: a sent order that reaches its end (filled, cancelled, rejected, expired) is booked (pm.book_order).
-- The paper broker's queued → filled is excluded by the trigger's WHEN: nothing to correct, nothing to cost.
CREATE OR REPLACE FUNCTION pm.book_order_end()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.book_order(NEW.client_order_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER broker_orders_book_end
    AFTER UPDATE OF status ON pm.broker_orders
    FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status AND pm.order_ended(NEW.status)
          AND OLD.status <> 'queued' OR (NEW.status = 'expired' AND OLD.status = 'queued'))
    EXECUTE FUNCTION pm.book_order_end();

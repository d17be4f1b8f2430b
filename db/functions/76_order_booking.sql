-- Order booking: what a broker order's end does to the book (migration 011). A decision books its orders at
-- the signal's price when it commits; when a sent order ends, this corrects the book to what the broker did,
-- inside the database, whoever recorded the end. The paper broker's fills (queued → filled) are at the
-- signal's price already and never reach it.

-- pm.book_order
-- Books a sent order's end into its position. Slippage per unit (adverse positive) and in rupees
-- (× filled lots × point value) on the order. A futures entry that filled: entry_price becomes the fills'
-- volume-weighted price (rounded to 0.01, half away from zero), signal_price keeps the alert's, the lots
-- become the whole lots filled (the rest was cancelled); nothing filled (rejected, cancelled, expired):
-- the position is removed (with its instrument's pyramiding state when it was the base; a queued exit of it
-- expires), and an
-- 'entry_rejected' anomaly says why. A futures exit that filled: exit_price and realized P&L from the fills,
-- closed equity moved by the difference; nothing filled: the position is open again (closed equity back)
-- with an 'exit_rejected' anomaly. Option legs (a synthetic position) get their order slippage only.
-- Every change bumps the position's and the portfolio's version, so every instance reloads the book.
CREATE OR REPLACE FUNCTION pm.book_order(p_id text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.broker_orders;
    p pm.portfolio_positions;
    filled integer;
    vwap numeric;
    per_lot integer;
    lots_filled integer;
    points numeric;
    realized numeric;
BEGIN
    PERFORM 1 FROM pm.portfolio_state WHERE id = 1 FOR UPDATE;  -- one writer of the book at a time
    r := pm.lock_order(p_id);
    PERFORM set_config('pm.fingerprint', r.fingerprint, true);  -- history says which signal this corrects
    SELECT coalesce(sum(quantity), 0), sum(quantity * price) / nullif(sum(quantity), 0) INTO filled, vwap
      FROM pm.order_fills WHERE client_order_id = p_id;
    per_lot := greatest(r.quantity / r.lots, 1);
    lots_filled := filled / per_lot;
    IF vwap IS NOT NULL THEN
        points := round(CASE WHEN r.side = 'BUY' THEN vwap - r.price ELSE r.price - vwap END, 2);
        UPDATE pm.broker_orders
           SET slippage_points = points,
               slippage_rupees = round(points * filled::numeric / per_lot * coalesce(point_value, 0), 2)
         WHERE client_order_id = p_id;
    END IF;
    IF coalesce(r.leg, 'FUT') <> 'FUT' OR r.point_value IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO p FROM pm.portfolio_positions WHERE position_id = r.position_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF pm.order_opens(r) THEN
        IF lots_filled = 0 THEN
            IF p.status = 'closed' THEN  -- its exit was decided already: that P&L never happened either
                UPDATE pm.portfolio_state SET closed_equity = closed_equity - p.realized_pnl WHERE id = 1;
            END IF;
            DELETE FROM pm.portfolio_positions WHERE position_id = p.position_id;
            IF p.is_base_position THEN
                DELETE FROM pm.pyramiding_state WHERE instrument = p.instrument;
            END IF;
            UPDATE pm.portfolio_state SET version = version + 1, updated_at = now() WHERE id = 1;
            -- an exit still queued for it would sell what was never bought (booking it finds no position)
            PERFORM pm.order_expired(o.client_order_id, format('its entry %s never filled', p_id))
               FROM pm.broker_orders o
              WHERE o.position_id = r.position_id AND o.status = 'queued' AND NOT pm.order_opens(o);
            INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
            VALUES ('entry_rejected', r.fingerprint, r.instrument, 'ORDER', right(r.position_id, 20),
                    format('entry order %s %s: %s; position %s removed', p_id, r.status, coalesce(r.reason, 'no fill'),
                           r.position_id));
            RETURN;
        END IF;
        points := round(vwap - coalesce(p.signal_price, p.entry_price), 2);
        UPDATE pm.portfolio_positions
           SET signal_price = coalesce(signal_price, entry_price), entry_price = round(vwap, 2),
               lots = lots_filled, quantity = quantity / lots * lots_filled,
               slippage_points = points, slippage_rupees = round(points * lots_filled * r.point_value, 2),
               version = version + 1, updated_at = now()
         WHERE position_id = p.position_id
        RETURNING * INTO p;
        IF p.status = 'closed' THEN  -- the exit was decided before this fill was known: its P&L follows
            realized := round((p.exit_price - p.entry_price) * p.lots * r.point_value, 2);
            UPDATE pm.portfolio_state SET closed_equity = closed_equity + realized - p.realized_pnl WHERE id = 1;
            UPDATE pm.portfolio_positions SET realized_pnl = realized WHERE position_id = p.position_id;
        END IF;
    ELSIF p.status = 'closed' THEN
        IF lots_filled = 0 THEN
            UPDATE pm.portfolio_state SET closed_equity = closed_equity - p.realized_pnl WHERE id = 1;
            UPDATE pm.portfolio_positions
               SET status = 'open', exit_price = NULL, exit_timestamp = NULL, exit_reason = NULL, realized_pnl = 0,
                   version = version + 1, updated_at = now()
             WHERE position_id = p.position_id;
            IF p.is_base_position THEN
                INSERT INTO pm.pyramiding_state (instrument, last_pyramid_price, base_position_id)
                VALUES (p.instrument, NULL, p.position_id)
                ON CONFLICT (instrument) DO UPDATE SET base_position_id = EXCLUDED.base_position_id;
            END IF;
            INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
            VALUES ('exit_rejected', r.fingerprint, r.instrument, 'ORDER', right(r.position_id, 20),
                    format('exit order %s %s: %s; position %s is open again', p_id, r.status,
                           coalesce(r.reason, 'no fill'), r.position_id));
        ELSE
            realized := round((vwap - p.entry_price) * p.lots * r.point_value, 2);
            UPDATE pm.portfolio_state SET closed_equity = closed_equity + realized - p.realized_pnl WHERE id = 1;
            UPDATE pm.portfolio_positions
               SET exit_price = round(vwap, 2), realized_pnl = realized, version = version + 1, updated_at = now()
             WHERE position_id = p.position_id;
            IF lots_filled < p.lots THEN
                INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
                VALUES ('exit_rejected', r.fingerprint, r.instrument, 'ORDER', right(r.position_id, 20),
                        format('exit order %s filled %s of %s lots: the rest is still held at the broker', p_id,
                               lots_filled, p.lots));
            END IF;
        END IF;
    ELSE
        RETURN;
    END IF;
    UPDATE pm.portfolio_state SET version = version + 1, equity_high = greatest(equity_high, closed_equity),
                                  updated_at = now()
     WHERE id = 1;
END;
$$;

-- pm.book_order_end
-- Trigger: a sent order that reaches its end (filled, cancelled, rejected, expired) is booked (pm.book_order).
-- The paper broker's queued → filled is excluded by the trigger's WHEN: nothing to correct, nothing to cost.
CREATE OR REPLACE FUNCTION pm.book_order_end()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pm.book_order(NEW.client_order_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER broker_orders_book_end
    AFTER UPDATE OF status ON pm.broker_orders
    FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('filled', 'cancelled', 'rejected', 'expired')
          AND OLD.status <> 'queued' OR (NEW.status = 'expired' AND OLD.status = 'queued'))
    EXECUTE FUNCTION pm.book_order_end();

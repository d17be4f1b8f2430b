-- Rollover, its legs (migration 012): a roll's orders, written in the transaction of the move that needs them,
-- and what they filled. Each leg is an order of the order state machine tagged with its roll (roll_id,
-- roll_leg close | open | unwind); 79_roll_machine.sql moves the roll as they end.

-- pm.roll_leg_price
-- A leg's reference price (the order's price: what slippage is measured against and what the paper broker
-- fills at) from the mark: the future's price; for a synthetic leg premiums whose strike + call − put is the
-- mark (the intrinsic value plus 100), so a paper roll moves at the mark with no basis.
CREATE OR REPLACE FUNCTION pm.roll_leg_price(p_mark numeric, p_strike integer, p_leg text)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_leg WHEN 'CE' THEN greatest(p_mark - p_strike, 0) + 100
                      WHEN 'PE' THEN greatest(p_strike - p_mark, 0) + 100
                      ELSE p_mark END;
$$;

-- pm.queue_roll_legs
-- Writes one layer's close or open orders, tagged with the roll: a future is one order, a synthetic position
-- two (call and put; opening buys the call and sells the put, closing the reverse). Client order ids are
-- 'r<roll>-<position>-C|O[-CE|-PE]', so a leg is written once whatever resumes the roll.
CREATE OR REPLACE FUNCTION pm.queue_roll_legs(l pm.roll_layers, p_instrument text, p_leg text, p_mark numeric)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    opening boolean := p_leg = 'open';
    synthetic boolean := CASE WHEN opening THEN l.to_ce_symbol IS NOT NULL ELSE l.from_ce_symbol IS NOT NULL END;
    strike integer := CASE WHEN opening THEN l.to_strike ELSE l.from_strike END;
BEGIN
    INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price, exchange,
                                  symbol, quantity, product, leg, point_value, roll_id, roll_leg, created_at)
    SELECT format('r%s-%s-%s%s', l.roll_id, right(l.position_id, 44), CASE WHEN opening THEN 'O' ELSE 'C' END,
                  CASE WHEN x.leg = 'FUT' THEN '' ELSE '-' || x.leg END),
           'roll-' || l.roll_id, l.position_id, p_instrument,
           CASE WHEN (x.leg = 'PE') = opening THEN 'SELL' ELSE 'BUY' END,
           CASE WHEN opening THEN l.new_lots ELSE l.lots END,
           round(pm.roll_leg_price(p_mark, strike, x.leg), 2), l.exchange, x.symbol,
           CASE WHEN opening THEN l.open_quantity ELSE l.close_quantity END, 'NRML', x.leg,
           CASE WHEN opening THEN l.new_point_value ELSE l.point_value END, l.roll_id, p_leg,
           pm.instant() + (x.n || ' microseconds')::interval
      FROM (SELECT 1, 'FUT', CASE WHEN opening THEN l.to_symbol ELSE l.from_symbol END WHERE NOT synthetic
            UNION ALL
            SELECT 1, 'CE', CASE WHEN opening THEN l.to_ce_symbol ELSE l.from_ce_symbol END WHERE synthetic
            UNION ALL
            SELECT 2, 'PE', CASE WHEN opening THEN l.to_pe_symbol ELSE l.from_pe_symbol END WHERE synthetic) x(n, leg, symbol)
    ON CONFLICT (client_order_id) DO NOTHING;
END;
$$;

-- pm.roll_order_lots
-- Whole lots an order filled and their volume-weighted price (recorded fills; a paper fill has none: the order's).
CREATE OR REPLACE FUNCTION pm.roll_order_lots(o pm.broker_orders, OUT lots integer, OUT price numeric)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t record;
BEGIN
    SELECT * INTO t FROM pm.order_fill_totals(o.client_order_id);
    IF t.filled = 0 AND o.status = 'filled' THEN
        t.filled := o.quantity;
        t.vwap := o.fill_price;
    END IF;
    lots := t.filled / greatest(o.quantity / o.lots, 1);
    price := t.vwap;
END;
$$;

-- pm.roll_layer_fill
-- What a layer's close or open legs filled: whole lots filled on every leg (the least, for a synthetic) and the
-- price per unit (the future's fill, or strike + call − put), from the recorded fills (a paper fill: the order's).
CREATE OR REPLACE FUNCTION pm.roll_layer_fill(l pm.roll_layers, p_leg text, OUT lots integer, OUT price numeric,
                                              OUT call_price numeric, OUT put_price numeric)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    o pm.broker_orders;
    t record;
BEGIN
    FOR o IN SELECT * FROM pm.broker_orders WHERE roll_id = l.roll_id AND position_id = l.position_id AND roll_leg = p_leg
    LOOP
        SELECT * INTO t FROM pm.roll_order_lots(o);
        lots := least(coalesce(lots, t.lots), t.lots);
        CASE o.leg WHEN 'CE' THEN call_price := t.price; WHEN 'PE' THEN put_price := t.price; ELSE price := t.price; END CASE;
    END LOOP;
    IF call_price IS NOT NULL AND put_price IS NOT NULL THEN
        price := CASE WHEN p_leg = 'open' THEN l.to_strike ELSE l.from_strike END + call_price - put_price;
    END IF;
    lots := coalesce(lots, 0);
    price := round(price, 2);
END;
$$;

-- pm.paper_roll_legs
-- The queued legs of rolls in flight that a paper fill may fill: only those of groups whose every layer is on
-- paper (pm.layer_on_paper, 74_order_sending.sql: its entry paper-filled, and nothing of it since linked to a
-- broker's id). Whoever asks — the paper leader or `pm-engine rollover` from another shell, whatever its own
-- settings say — a group that trades at a broker is never filled inside the database: its sender sends its legs.
CREATE OR REPLACE FUNCTION pm.paper_roll_legs()
RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.client_order_id::text
      FROM pm.rolls r
      JOIN pm.broker_orders o ON o.roll_id = r.roll_id AND o.status = 'queued'
     WHERE r.state IN ('closing', 'opening')
       AND NOT EXISTS (SELECT 1 FROM pm.roll_layers l
                        WHERE l.roll_id = r.roll_id AND NOT pm.layer_on_paper(l.position_id))
     ORDER BY o.client_order_id;
$$;

-- pm.roll_legs_filled
-- A roll moves on only once every leg of the kind (close, open) filled (PM083 otherwise); its history rows then
-- carry the roll's fingerprint.
CREATE OR REPLACE FUNCTION pm.roll_legs_filled(r pm.rolls, p_leg text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = r.roll_id AND roll_leg = p_leg AND status <> 'filled') THEN
        PERFORM pm.raise_error('PM083', format('roll %s: its %s legs have not all filled', r.roll_id, p_leg));
    END IF;
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
END;
$$;

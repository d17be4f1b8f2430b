-- Rollover: the roll of an instrument group to its next contract as a state machine (migration 012,
-- docs/domain.md#rollover). The allowed (from, to) pairs are the rows of pm.roll_transitions; each transition below is one
-- small function that refuses every other with PM080 and appends its pm.roll_events row. Python plans a roll
-- (the next contract, its lot size, the new strike: the calendar is in the core) and starts it; from then on
-- the legs' ends drive it, inside the transaction that records each end (trigger broker_orders_roll_leg_end).

-- pm.lock_roll
-- The roll's row, locked for this transaction (PM003 when there is none), after the portfolio row: every
-- transition writes the book, and taking the book's lock first keeps one lock order with the signal path.
CREATE OR REPLACE FUNCTION pm.lock_roll(p_roll_id bigint)
RETURNS pm.rolls
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_roll_id, 'roll_id');
    PERFORM 1 FROM pm.portfolio_state WHERE id = 1 FOR UPDATE;  -- one writer of the book at a time
    SELECT * INTO r FROM pm.rolls WHERE roll_id = p_roll_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pm.raise_error('PM003', format('no roll %s', p_roll_id));
    END IF;
    RETURN r;
END;
$$;

-- pm.check_roll_transition
-- Raises PM080 unless (from, to) is a row of pm.roll_transitions.
CREATE OR REPLACE FUNCTION pm.check_roll_transition(p_from text, p_to text, p_roll_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pm.roll_transitions WHERE from_state = p_from AND to_state = p_to) THEN
        PERFORM pm.raise_error('PM080', format('roll %s cannot go from %s to %s', coalesce(p_roll_id::text, '(new)'),
                                                p_from, p_to));
    END IF;
END;
$$;

-- pm.notify_roll
-- A roll done or failed, told through the notification outbox in the transaction of its transition (a failure
-- at the last trading day once per contract).
CREATE OR REPLACE FUNCTION pm.notify_roll(r pm.rolls, p_from text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pm.notify(CASE r.state WHEN 'rolled' THEN 'roll_done' ELSE 'roll_failed' END, jsonb_build_object(
        'roll_id', r.roll_id, 'instrument', r.instrument, 'from_symbol', r.from_symbol, 'to_symbol', r.to_symbol,
        'reason', r.reason,
        'layers', (SELECT coalesce(jsonb_agg(jsonb_build_object('position_id', l.position_id, 'outcome', l.outcome,
                                                                'close_price', l.close_price, 'close_pnl', l.close_pnl,
                                                                'open_price', l.open_price, 'lots', l.opened_lots,
                                                                'basis', l.basis) ORDER BY l.position_id), '[]')
                     FROM pm.roll_layers l WHERE l.roll_id = r.roll_id)),
        CASE WHEN p_from = 'none' THEN 'expired:' || r.instrument || ':' || r.from_symbol END, 'roll-' || r.roll_id);
$$;

-- pm.move_roll
-- The one place a roll's state changes: checks the pair, sets state (and reason), appends the event, keeps the
-- open layers' rollover_status in step (pending; in_progress while closing or opening; failed) and tells the
-- trader of a roll done or failed through the notification outbox, in this transaction.
CREATE OR REPLACE FUNCTION pm.move_roll(r pm.rolls, p_to text, p_reason text)
RETURNS pm.rolls
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    moved pm.rolls;
BEGIN
    PERFORM pm.check_roll_transition(r.state, p_to, r.roll_id);
    UPDATE pm.rolls SET state = p_to, state_changed_at = pm.instant(), reason = coalesce(p_reason, reason)
     WHERE roll_id = r.roll_id
    RETURNING * INTO moved;
    INSERT INTO pm.roll_events (roll_id, from_state, to_state, reason, at)
    VALUES (r.roll_id, r.state, p_to, p_reason, pm.instant());
    IF p_to <> 'rolled' THEN
        UPDATE pm.portfolio_positions p
           SET rollover_status = CASE p_to WHEN 'pending' THEN 'pending' WHEN 'failed' THEN 'failed'
                                           ELSE 'in_progress' END,
               version = version + 1, updated_at = pm.instant()
          FROM pm.roll_layers l
         WHERE l.roll_id = r.roll_id AND l.position_id = p.position_id AND p.status = 'open'
           AND (p_to <> 'failed' OR l.outcome IS NULL OR l.outcome = 'kept');
    END IF;
    IF p_to IN ('rolled', 'failed') THEN
        PERFORM pm.notify_roll(moved, r.state);
    END IF;
    RETURN moved;
END;
$$;

-- pm.roll_leg_price
-- A leg's reference price (the order's price: what slippage is measured against and what the paper broker
-- fills at) from the mark: the future's price; for a synthetic leg premiums whose strike + call − put is the
-- mark (the intrinsic value plus 100), so a paper roll moves at the mark with no basis.
CREATE OR REPLACE FUNCTION pm.roll_leg_price(p_mark numeric, p_strike integer, p_leg text)
RETURNS numeric
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE p_leg WHEN 'CE' THEN greatest(p_mark - p_strike, 0) + 100
                      WHEN 'PE' THEN greatest(p_strike - p_mark, 0) + 100
                      ELSE p_mark END;
$$;

-- pm.queue_roll_legs
-- Writes one layer's close or open orders, tagged with the roll: a future is one order, a synthetic position
-- two (call and put; opening buys the call and sells the put, closing the reverse). Client order ids are
-- 'r<roll>-<position>-C|O[-CE|-PE]', so a leg is written once whatever resumes the roll.
CREATE OR REPLACE FUNCTION pm.queue_roll_legs(l pm.roll_layers, p_instrument text, p_leg text, p_mark numeric)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
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
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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

-- pm.roll_begin
-- none → pending: records a group's roll and its plan (p_layers: [{position_id, to_symbol, to_expiry,
-- to_contract_month, to_strike, to_ce_symbol, to_pe_symbol, new_lots, lot_size, new_lot_size, close_quantity,
-- open_quantity, point_value, new_point_value, price}], one per open layer of the instrument; what the layer
-- holds comes from its row). PM081 when the instrument is already rolling; PM082 when the plan is not the
-- group (a layer missing, not open, of another instrument or contract, or without a contract); PM085 while
-- an order of the instrument is unsettled (queued, sending, open, partially filled, unknown, needs_review)
-- or reconciliation or an order review has it locked: the book's lots and entry prices are not yet what
-- the broker holds, and a close sized from them would leave the broker with a different position.
CREATE OR REPLACE FUNCTION pm.roll_begin(p_instrument text, p_layers jsonb, p_forced boolean DEFAULT false,
                                         p_reason text DEFAULT NULL)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    held text[];
    planned text[];
    symbols text[];
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_layers, 'layers');
    PERFORM 1 FROM pm.portfolio_state WHERE id = 1 FOR UPDATE;  -- one writer of the book at a time
    PERFORM pm.check_roll_transition('none', 'pending', NULL);
    IF EXISTS (SELECT 1 FROM pm.rolls WHERE instrument = p_instrument AND state IN ('pending', 'closing', 'opening')) THEN
        PERFORM pm.raise_error('PM081', format('%s is already rolling', p_instrument));
    END IF;
    IF EXISTS (SELECT 1 FROM pm.broker_orders WHERE instrument = p_instrument AND pm.order_unsettled(status)) THEN
        PERFORM pm.raise_error('PM085', format('%s has orders not yet settled at the broker: it rolls once they are',
                                               p_instrument));
    END IF;
    IF EXISTS (SELECT 1 FROM pm.active_locks() WHERE instrument = p_instrument AND source IN ('reconcile', 'orders')) THEN
        PERFORM pm.raise_error('PM085', format('%s is locked by %s: its book and the broker may differ; it rolls once '
                                               'the trader has unlocked it', p_instrument,
                                               (SELECT string_agg(DISTINCT source, ', ') FROM pm.active_locks()
                                                 WHERE instrument = p_instrument)));
    END IF;
    SELECT coalesce(array_agg(position_id::text ORDER BY position_id), '{}'), array_agg(DISTINCT futures_symbol::text)
      INTO held, symbols
      FROM pm.portfolio_positions WHERE instrument = p_instrument AND status = 'open';
    SELECT coalesce(array_agg(l ->> 'position_id' ORDER BY l ->> 'position_id'), '{}') INTO planned
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_layers) = 'array' THEN p_layers ELSE '[]' END) l;
    IF cardinality(held) = 0 OR held <> planned OR cardinality(symbols) <> 1 OR symbols[1] IS NULL THEN
        PERFORM pm.raise_error('PM082', format('a roll of %s must name each of its open layers (%s) on one contract; '
                                                'the plan names %s', p_instrument, array_to_string(held, ', '),
                                                array_to_string(planned, ', ')));
    END IF;
    INSERT INTO pm.rolls (instrument, state, from_symbol, to_symbol, to_expiry, forced, reason, created_at,
                          state_changed_at)
    VALUES (p_instrument, 'pending', symbols[1], p_layers -> 0 ->> 'to_symbol', p_layers -> 0 ->> 'to_expiry',
            coalesce(p_forced, false), p_reason, pm.instant(), pm.instant())
    RETURNING * INTO r;
    INSERT INTO pm.roll_layers (roll_id, position_id, exchange, from_symbol, from_ce_symbol, from_pe_symbol,
                                from_strike, to_symbol, to_expiry, to_contract_month, to_strike, to_ce_symbol,
                                to_pe_symbol, lots, new_lots, lot_size, new_lot_size, close_quantity, open_quantity,
                                point_value, new_point_value, price, entry_price)
    SELECT r.roll_id, p.position_id, coalesce(l ->> 'exchange', 'NFO'), p.futures_symbol, p.ce_symbol, p.pe_symbol,
           p.strike, l ->> 'to_symbol', l ->> 'to_expiry', l ->> 'to_contract_month', (l ->> 'to_strike')::integer,
           l ->> 'to_ce_symbol', l ->> 'to_pe_symbol', p.lots, (l ->> 'new_lots')::integer,
           (l ->> 'lot_size')::integer, (l ->> 'new_lot_size')::integer, (l ->> 'close_quantity')::integer,
           (l ->> 'open_quantity')::integer, (l ->> 'point_value')::numeric, (l ->> 'new_point_value')::numeric,
           (l ->> 'price')::numeric, p.entry_price
      FROM jsonb_array_elements(p_layers) l
      JOIN pm.portfolio_positions p ON p.position_id = l ->> 'position_id';
    INSERT INTO pm.roll_events (roll_id, from_state, to_state, reason, at)
    VALUES (r.roll_id, 'none', 'pending', p_reason, pm.instant());
    UPDATE pm.portfolio_positions SET rollover_status = 'pending', version = version + 1, updated_at = pm.instant()
     WHERE instrument = p_instrument AND status = 'open';
    UPDATE pm.portfolio_state SET version = version + 1, updated_at = pm.instant() WHERE id = 1;
    RETURN r;
END;
$$;

-- pm.roll_send_close
-- pending → closing: the old contract's close orders, one per leg of each layer, queued in this transaction
-- at the plan's mark. The broker sender sends them like any order.
CREATE OR REPLACE FUNCTION pm.roll_send_close(p_roll_id bigint)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
BEGIN
    r := pm.lock_roll(p_roll_id);
    PERFORM pm.check_roll_transition(r.state, 'closing', r.roll_id);
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        PERFORM pm.queue_roll_legs(l, r.instrument, 'close', l.price);
    END LOOP;
    r := pm.move_roll(r, 'closing', NULL);
    UPDATE pm.portfolio_state SET version = version + 1, updated_at = pm.instant() WHERE id = 1;
    RETURN r;
END;
$$;

-- pm.roll_abandon
-- pending → failed: a roll given up before anything was sent (the trader's call, or a plan gone stale).
CREATE OR REPLACE FUNCTION pm.roll_abandon(p_roll_id bigint, p_reason text)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    r := pm.lock_roll(p_roll_id);
    PERFORM pm.check_roll_transition(r.state, 'failed', r.roll_id);
    IF r.state <> 'pending' THEN
        PERFORM pm.raise_error('PM080', format('roll %s cannot be abandoned once %s: its legs decide', r.roll_id, r.state));
    END IF;
    UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = r.roll_id;
    r := pm.move_roll(r, 'failed', p_reason);
    UPDATE pm.portfolio_state SET version = version + 1, updated_at = pm.instant() WHERE id = 1;
    RETURN r;
END;
$$;

-- pm.roll_expired
-- none → failed: the group's contract reached its last trading day without a roll (every attempt failed):
-- recorded once per (instrument, contract), with a critical notification; nothing is sent. Returns the roll.
CREATE OR REPLACE FUNCTION pm.roll_expired(p_instrument text, p_symbol text, p_reason text)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_symbol, 'symbol');
    PERFORM pm.require(p_reason, 'reason');
    PERFORM 1 FROM pm.portfolio_state WHERE id = 1 FOR UPDATE;
    SELECT * INTO r FROM pm.rolls WHERE instrument = p_instrument AND from_symbol = p_symbol AND state = 'failed'
       AND EXISTS (SELECT 1 FROM pm.roll_events e WHERE e.roll_id = rolls.roll_id AND e.from_state = 'none'
                                                   AND e.to_state = 'failed');
    IF FOUND THEN
        RETURN r;  -- told once
    END IF;
    PERFORM pm.check_roll_transition('none', 'failed', NULL);
    IF EXISTS (SELECT 1 FROM pm.rolls WHERE instrument = p_instrument AND state IN ('pending', 'closing', 'opening')) THEN
        PERFORM pm.raise_error('PM081', format('%s is already rolling', p_instrument));
    END IF;
    INSERT INTO pm.rolls (instrument, state, from_symbol, reason, created_at, state_changed_at)
    VALUES (p_instrument, 'failed', p_symbol, p_reason, pm.instant(), pm.instant())
    RETURNING * INTO r;
    INSERT INTO pm.roll_events (roll_id, from_state, to_state, reason, at)
    VALUES (r.roll_id, 'none', 'failed', p_reason, pm.instant());
    PERFORM pm.notify_roll(r, 'none');
    UPDATE pm.portfolio_positions SET rollover_status = 'failed', version = version + 1, updated_at = pm.instant()
     WHERE instrument = p_instrument AND status = 'open' AND futures_symbol = p_symbol;
    UPDATE pm.portfolio_state SET version = version + 1, updated_at = pm.instant() WHERE id = 1;
    RETURN r;
END;
$$;

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

-- pm.roll_open
-- closing → opening, once every close leg filled (PM083 otherwise): each layer's old P&L realized
-- (pm.roll_close_layer_realized), its entry price now the close (flat until the open fills), and its open
-- orders queued at the close price (paper: no basis).
CREATE OR REPLACE FUNCTION pm.roll_open(p_roll_id bigint)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    f record;
BEGIN
    r := pm.lock_roll(p_roll_id);
    PERFORM pm.check_roll_transition(r.state, 'opening', r.roll_id);
    IF EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = r.roll_id AND roll_leg = 'close' AND status <> 'filled') THEN
        PERFORM pm.raise_error('PM083', format('roll %s: its close legs have not all filled', r.roll_id));
    END IF;
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        SELECT * INTO f FROM pm.roll_layer_fill(l, 'close');
        PERFORM pm.roll_close_layer_realized(l, l.lots, f.price);
        UPDATE pm.portfolio_positions SET entry_price = f.price WHERE position_id = l.position_id;
        PERFORM pm.queue_roll_legs(l, r.instrument, 'open', f.price);
    END LOOP;
    r := pm.move_roll(r, 'opening', NULL);
    UPDATE pm.portfolio_state SET version = version + 1, equity_high = greatest(equity_high, closed_equity),
                                  updated_at = pm.instant()
     WHERE id = 1;
    RETURN r;
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

-- pm.roll_complete
-- opening → rolled, once every open leg filled (PM083 otherwise): every layer moved (pm.roll_move_layer).
CREATE OR REPLACE FUNCTION pm.roll_complete(p_roll_id bigint)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    f record;
BEGIN
    r := pm.lock_roll(p_roll_id);
    PERFORM pm.check_roll_transition(r.state, 'rolled', r.roll_id);
    IF EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = r.roll_id AND roll_leg = 'open' AND status <> 'filled') THEN
        PERFORM pm.raise_error('PM083', format('roll %s: its open legs have not all filled', r.roll_id));
    END IF;
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        SELECT * INTO f FROM pm.roll_layer_fill(l, 'open');
        PERFORM pm.roll_move_layer(l, f.lots, f.price, f.call_price, f.put_price);
    END LOOP;
    r := pm.move_roll(r, 'rolled', NULL);
    UPDATE pm.portfolio_state SET version = version + 1, updated_at = pm.instant() WHERE id = 1;
    RETURN r;
END;
$$;

-- pm.roll_fail
-- closing | opening → failed, once every leg of that stage ended (PM083 otherwise). Closing: a layer whose
-- close filled wholly is flat (closed in the book with its realized P&L), partly (in whole lots) keeps the rest
-- on the old contract with the closed part realized; one that closed nothing stays as it was, for the next
-- check to retry. Opening: a layer whose open filled keeps what filled (moved), one that opened nothing is flat.
-- A synthetic layer's legs filled unevenly: the extra lots of a leg are unwound by a queued opposite order
-- ('-UW'), never a naked option. Each layer not rolled whole is a 'roll_failed' anomaly.
CREATE OR REPLACE FUNCTION pm.roll_fail(p_roll_id bigint, p_reason text)
RETURNS pm.rolls
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    o pm.broker_orders;
    f record;
    stage text;
    got integer;
    pnl numeric;
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    r := pm.lock_roll(p_roll_id);
    PERFORM pm.check_roll_transition(r.state, 'failed', r.roll_id);
    stage := CASE r.state WHEN 'closing' THEN 'close' ELSE 'open' END;
    IF r.state = 'pending' OR EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = r.roll_id AND roll_leg = stage
                                         AND status NOT IN ('filled', 'cancelled', 'rejected', 'expired')) THEN
        PERFORM pm.raise_error('PM083', format('roll %s: its %s legs have not all ended', r.roll_id, stage));
    END IF;
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        SELECT * INTO f FROM pm.roll_layer_fill(l, stage);
        -- a synthetic leg that filled more whole lots than its sibling is unwound down to the lots both filled
        FOR o IN SELECT * FROM pm.broker_orders WHERE roll_id = l.roll_id AND position_id = l.position_id
                                                   AND roll_leg = stage AND leg IN ('CE', 'PE') LOOP
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
        IF stage = 'close' THEN
            IF f.lots = 0 THEN
                UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = l.roll_id AND position_id = l.position_id;
            ELSIF f.lots >= l.lots THEN
                pnl := round((f.price - l.entry_price) * l.lots * l.point_value, 2);
                UPDATE pm.roll_layers SET close_price = f.price, close_pnl = pnl
                 WHERE roll_id = l.roll_id AND position_id = l.position_id;
                PERFORM pm.roll_flatten_layer(l, r.instrument, f.price, pnl, 'its close filled, another leg of the group did not');
            ELSE
                PERFORM pm.roll_close_layer_realized(l, f.lots, f.price);
                UPDATE pm.portfolio_positions SET lots = lots - f.lots, quantity = quantity / lots * (lots - f.lots)
                 WHERE position_id = l.position_id;
                UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = l.roll_id AND position_id = l.position_id;
                INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
                VALUES ('roll_failed', 'roll-' || l.roll_id, r.instrument, 'ROLL', right(l.position_id, 20),
                        format('roll %s of %s: %s of %s lots closed at %s, the rest stays on %s', l.roll_id,
                               l.position_id, f.lots, l.lots, f.price, l.from_symbol));
            END IF;
        ELSIF f.lots > 0 THEN
            PERFORM pm.roll_move_layer(l, f.lots, f.price, f.call_price, f.put_price);
            IF f.lots < l.new_lots THEN
                INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
                VALUES ('roll_failed', 'roll-' || l.roll_id, r.instrument, 'ROLL', right(l.position_id, 20),
                        format('roll %s of %s: %s of %s lots opened on %s', l.roll_id, l.position_id, f.lots,
                               l.new_lots, l.to_symbol));
            END IF;
        ELSE
            SELECT * INTO l FROM pm.roll_layers WHERE roll_id = l.roll_id AND position_id = l.position_id;
            PERFORM pm.roll_flatten_layer(l, r.instrument, l.close_price, 0, 'its open leg ended unfilled');
        END IF;
    END LOOP;
    r := pm.move_roll(r, 'failed', p_reason);
    UPDATE pm.portfolio_state SET version = version + 1, equity_high = greatest(equity_high, closed_equity),
                                  updated_at = pm.instant()
     WHERE id = 1;
    RETURN r;
END;
$$;

-- pm.roll_leg_ended
-- Trigger: a roll's leg reached its end (filled, cancelled, rejected, expired). When it was the last of its
-- stage to end, the roll moves on in this transaction: every close filled → opening, every open filled →
-- rolled, otherwise failed with the legs' reasons. A leg still sending, open, unknown or in review blocks the
-- roll where it is; an unwind order's end changes nothing.
CREATE OR REPLACE FUNCTION pm.roll_leg_ended()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r pm.rolls;
    why text;
BEGIN
    IF NEW.roll_leg = 'unwind' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM pm.rolls WHERE roll_id = NEW.roll_id;
    IF r.state <> (CASE NEW.roll_leg WHEN 'close' THEN 'closing' ELSE 'opening' END)
       OR EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = NEW.roll_id AND roll_leg = NEW.roll_leg
                     AND status NOT IN ('filled', 'cancelled', 'rejected', 'expired')) THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(format('%s %s %s', client_order_id, status, coalesce(reason, '')), '; ' ORDER BY client_order_id)
      INTO why
      FROM pm.broker_orders WHERE roll_id = NEW.roll_id AND roll_leg = NEW.roll_leg AND status <> 'filled';
    IF why IS NULL THEN
        IF NEW.roll_leg = 'close' THEN
            PERFORM pm.roll_open(NEW.roll_id);
        ELSE
            PERFORM pm.roll_complete(NEW.roll_id);
        END IF;
    ELSE
        PERFORM pm.roll_fail(NEW.roll_id, format('%s leg ended unfilled: %s', NEW.roll_leg, why));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER broker_orders_roll_leg_end
    AFTER UPDATE OF status ON pm.broker_orders
    FOR EACH ROW
    WHEN (NEW.roll_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status IN ('filled', 'cancelled', 'rejected', 'expired'))
    EXECUTE FUNCTION pm.roll_leg_ended();

-- pm.roll_blocks
-- Why a signal on an instrument must wait: 'rolling: …' while its group's roll is in flight (NULL: free).
-- Exits wait too: an exit decided mid-roll would sell a contract the roll is closing or has closed.
-- PL/pgSQL: every signal asks (pm.control_blocks), and its lookup is planned once per session.
CREATE OR REPLACE FUNCTION pm.roll_blocks(p_instrument text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    why text;
BEGIN
    SELECT format('rolling: %s is moving from %s to %s (roll %s, %s)', instrument, from_symbol,
                  coalesce(to_symbol, '?'), roll_id, state)
      INTO why
      FROM pm.rolls WHERE instrument = p_instrument AND state IN ('pending', 'closing', 'opening');
    RETURN why;
END;
$$;

-- pm.active_rolls
-- Rolls in flight (pending, closing, opening), oldest first: what the leader resumes.
CREATE OR REPLACE FUNCTION pm.active_rolls()
RETURNS SETOF pm.rolls
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM pm.rolls WHERE state IN ('pending', 'closing', 'opening') ORDER BY roll_id;
$$;

-- pm.list_rolls
-- Rolls newest first (optionally one instrument's) with their layers and legs as JSON: `pm-engine rollover`,
-- GET /rollover and the dashboard.
CREATE OR REPLACE FUNCTION pm.list_rolls(p_instrument text DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (roll_id bigint, instrument text, state text, from_symbol text, to_symbol text, to_expiry text,
               forced boolean, reason text, created_at timestamptz, state_changed_at timestamptz, layers jsonb,
               legs jsonb, events jsonb)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.roll_id, r.instrument, r.state, r.from_symbol, r.to_symbol, r.to_expiry, r.forced, r.reason, r.created_at,
           r.state_changed_at,
           (SELECT coalesce(jsonb_agg(to_jsonb(l) - 'roll_id' ORDER BY l.position_id), '[]')
              FROM pm.roll_layers l WHERE l.roll_id = r.roll_id),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('client_order_id', o.client_order_id, 'roll_leg', o.roll_leg,
                                                         'symbol', o.symbol, 'side', o.side, 'quantity', o.quantity,
                                                         'state', o.status, 'fill_price', o.fill_price,
                                                         'reason', o.reason) ORDER BY o.created_at, o.client_order_id),
                            '[]')
              FROM pm.broker_orders o WHERE o.roll_id = r.roll_id),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('from', e.from_state, 'to', e.to_state, 'reason', e.reason,
                                                         'at', e.at) ORDER BY e.id), '[]')
              FROM pm.roll_events e WHERE e.roll_id = r.roll_id)
      FROM pm.rolls r
     WHERE p_instrument IS NULL OR r.instrument = p_instrument
     ORDER BY r.roll_id DESC
     LIMIT coalesce(p_limit, 50);
$$;

-- pm.refuse_roll_record_change
-- Trigger: roll events are append-only; an UPDATE, DELETE or TRUNCATE raises PM084.
CREATE OR REPLACE FUNCTION pm.refuse_roll_record_change()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pm.raise_error('PM084', format('%s is append-only: %s refused', TG_TABLE_NAME, TG_OP));
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER roll_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.roll_events
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_roll_record_change();

-- pm.paper_roll_legs
-- The queued legs of rolls in flight that a paper fill may fill: only those of groups whose every layer is on
-- paper (pm.layer_on_paper, 74_order_sending.sql: its entry paper-filled, and nothing of it since linked to a
-- broker's id). Whoever asks — the paper leader or `pm-engine rollover` from another shell, whatever its own
-- settings say — a group that trades at a broker is never filled inside the database: its sender sends its legs.
CREATE OR REPLACE FUNCTION pm.paper_roll_legs()
RETURNS SETOF text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.client_order_id::text
      FROM pm.rolls r
      JOIN pm.broker_orders o ON o.roll_id = r.roll_id AND o.status = 'queued'
     WHERE r.state IN ('closing', 'opening')
       AND NOT EXISTS (SELECT 1 FROM pm.roll_layers l
                        WHERE l.roll_id = r.roll_id AND NOT pm.layer_on_paper(l.position_id))
     ORDER BY o.client_order_id;
$$;

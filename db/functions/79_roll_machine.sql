-- Rollover, the roll machine: the roll of an instrument group to its next contract as a state machine (migration
-- 012, docs/domain.md#rollover). The allowed (from, to) pairs are the rows of pm.transitions for machine 'roll' (its
-- partition pm.roll_transitions, migration 019); each transition below is one small function that locks the roll
-- and checks its move once (pm.lock_roll: PM080 for any other) and appends its pm.roll_events row (pm.move_roll).
-- Python plans a roll (the next contract, its lot size, the new strike: the calendar is in the core) and starts
-- it; from then on the legs' ends drive it, inside the transaction that records each end (trigger
-- broker_orders_roll_leg_end). Its legs: 77_roll_legs.sql; its accounting: 78_roll_accounting.sql.

-- pm.lock_roll
-- The roll's row, locked for this transaction (PM003 when there is none), after the book (pm.lock_book: every
-- transition writes the book, and taking its lock first keeps one lock order with the signal path), and its
-- move to p_to checked (PM080), once, before anything is written; pm.move_roll then makes it.
DROP FUNCTION IF EXISTS pm.lock_roll(bigint);  -- before p_to (issue 30)
DROP FUNCTION IF EXISTS pm.check_roll_transition(text, text, bigint);  -- pm.check_transition (issue 30)
CREATE OR REPLACE FUNCTION pm.lock_roll(p_roll_id bigint, p_to text)
RETURNS pm.rolls LANGUAGE plpgsql AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_roll_id, 'roll_id');
    PERFORM pm.lock_book();
    SELECT * INTO r FROM pm.rolls WHERE roll_id = p_roll_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pm.raise_error('PM003', format('no roll %s', p_roll_id));
    END IF;
    PERFORM pm.check_transition('roll', r.state, p_to, 'roll ' || r.roll_id);
    RETURN r;
END;
$$;

-- pm.notify_roll
-- A roll done or failed, told through the notification outbox in the transaction of its transition (a failure
-- at the last trading day once per contract).
CREATE OR REPLACE FUNCTION pm.notify_roll(r pm.rolls, p_from text)
RETURNS void LANGUAGE sql AS $$
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
-- The one place a roll's state changes (the move checked by pm.lock_roll, and by the events' foreign key to
-- pm.roll_transitions): sets state (and reason), appends the event, keeps the
-- open layers' rollover_status in step (pending; in_progress while closing or opening; failed) and tells the
-- trader of a roll done or failed through the notification outbox, in this transaction.
CREATE OR REPLACE FUNCTION pm.move_roll(r pm.rolls, p_to text, p_reason text)
RETURNS pm.rolls LANGUAGE plpgsql AS $$
DECLARE
    moved pm.rolls;
BEGIN
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
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
    held text[];
    planned text[];
    symbols text[];
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_layers, 'layers');
    PERFORM pm.lock_book();
    PERFORM pm.check_transition('roll', 'none', 'pending', 'roll (new)');
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
    PERFORM pm.bump_book();
    RETURN r;
END;
$$;

-- pm.roll_send_close
-- pending → closing: the old contract's close orders, one per leg of each layer, queued in this transaction
-- at the plan's mark. The broker sender sends them like any order.
CREATE OR REPLACE FUNCTION pm.roll_send_close(p_roll_id bigint)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
BEGIN
    r := pm.lock_roll(p_roll_id, 'closing');
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        PERFORM pm.queue_roll_legs(l, r.instrument, 'close', l.price);
    END LOOP;
    r := pm.move_roll(r, 'closing', NULL);
    PERFORM pm.bump_book();
    RETURN r;
END;
$$;

-- pm.roll_abandon
-- pending → failed: a roll given up before anything was sent (the trader's call, or a plan gone stale).
CREATE OR REPLACE FUNCTION pm.roll_abandon(p_roll_id bigint, p_reason text)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    r := pm.lock_roll(p_roll_id, 'failed');
    IF r.state <> 'pending' THEN
        PERFORM pm.raise_error('PM080', format('roll %s cannot be abandoned once %s: its legs decide', r.roll_id, r.state));
    END IF;
    UPDATE pm.roll_layers SET outcome = 'kept' WHERE roll_id = r.roll_id;
    r := pm.move_roll(r, 'failed', p_reason);
    PERFORM pm.bump_book();
    RETURN r;
END;
$$;

-- pm.roll_expired
-- none → failed: the group's contract reached its last trading day without a roll (every attempt failed):
-- recorded once per (instrument, contract), with a critical notification; nothing is sent. Returns the roll.
CREATE OR REPLACE FUNCTION pm.roll_expired(p_instrument text, p_symbol text, p_reason text)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_symbol, 'symbol');
    PERFORM pm.require(p_reason, 'reason');
    PERFORM pm.lock_book();
    SELECT * INTO r FROM pm.rolls WHERE instrument = p_instrument AND from_symbol = p_symbol AND state = 'failed'
       AND EXISTS (SELECT 1 FROM pm.roll_events e WHERE e.roll_id = rolls.roll_id AND e.from_state = 'none'
                                                   AND e.to_state = 'failed');
    IF FOUND THEN
        RETURN r;  -- told once
    END IF;
    PERFORM pm.check_transition('roll', 'none', 'failed', 'roll (new)');
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
    PERFORM pm.bump_book();
    RETURN r;
END;
$$;

-- pm.roll_open
-- closing → opening, once every close leg filled (PM083 otherwise): each layer's old P&L realized
-- (pm.roll_close_layer_realized), its entry price now the close (flat until the open fills), and its open
-- orders queued at the close price (paper: no basis).
CREATE OR REPLACE FUNCTION pm.roll_open(p_roll_id bigint)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    f record;
BEGIN
    r := pm.lock_roll(p_roll_id, 'opening');
    PERFORM pm.roll_legs_filled(r, 'close');
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        SELECT * INTO f FROM pm.roll_layer_fill(l, 'close');
        PERFORM pm.roll_close_layer_realized(l, l.lots, f.price);
        UPDATE pm.portfolio_positions SET entry_price = f.price WHERE position_id = l.position_id;
        PERFORM pm.queue_roll_legs(l, r.instrument, 'open', f.price);
    END LOOP;
    r := pm.move_roll(r, 'opening', NULL);
    PERFORM pm.bump_book(true);
    RETURN r;
END;
$$;

-- pm.roll_complete
-- opening → rolled, once every open leg filled (PM083 otherwise): every layer moved (pm.roll_move_layer).
CREATE OR REPLACE FUNCTION pm.roll_complete(p_roll_id bigint)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    f record;
BEGIN
    r := pm.lock_roll(p_roll_id, 'rolled');
    PERFORM pm.roll_legs_filled(r, 'open');
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        SELECT * INTO f FROM pm.roll_layer_fill(l, 'open');
        PERFORM pm.roll_move_layer(l, f.lots, f.price, f.call_price, f.put_price);
    END LOOP;
    r := pm.move_roll(r, 'rolled', NULL);
    PERFORM pm.bump_book();
    RETURN r;
END;
$$;

-- pm.roll_fail
-- closing | opening → failed, once every leg of that stage ended (PM083 otherwise): each layer booked by what
-- its legs of that stage filled (pm.roll_fail_layer, 78_roll_accounting.sql).
CREATE OR REPLACE FUNCTION pm.roll_fail(p_roll_id bigint, p_reason text)
RETURNS pm.rolls LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.rolls;
    l pm.roll_layers;
    stage text;
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    r := pm.lock_roll(p_roll_id, 'failed');
    stage := CASE r.state WHEN 'closing' THEN 'close' ELSE 'open' END;
    IF r.state = 'pending' OR EXISTS (SELECT 1 FROM pm.broker_orders WHERE roll_id = r.roll_id AND roll_leg = stage
                                         AND NOT pm.order_ended(status)) THEN
        PERFORM pm.raise_error('PM083', format('roll %s: its %s legs have not all ended', r.roll_id, stage));
    END IF;
    PERFORM set_config('pm.fingerprint', 'roll-' || r.roll_id, true);
    FOR l IN SELECT * FROM pm.roll_layers WHERE roll_id = r.roll_id ORDER BY position_id LOOP
        PERFORM pm.roll_fail_layer(l, r.instrument, stage);
    END LOOP;
    r := pm.move_roll(r, 'failed', p_reason);
    PERFORM pm.bump_book(true);
    RETURN r;
END;
$$;

-- pm.roll_leg_ended
-- Trigger: a roll's leg reached its end (filled, cancelled, rejected, expired). When it was the last of its
-- stage to end, the roll moves on in this transaction: every close filled → opening, every open filled →
-- rolled, otherwise failed with the legs' reasons. A leg still sending, open, unknown or in review blocks the
-- roll where it is; an unwind order's end changes nothing.
CREATE OR REPLACE FUNCTION pm.roll_leg_ended()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
                     AND NOT pm.order_ended(status)) THEN
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
          AND pm.order_ended(NEW.status))
    EXECUTE FUNCTION pm.roll_leg_ended();

CREATE OR REPLACE TRIGGER roll_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.roll_events
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM084');
DROP FUNCTION IF EXISTS pm.refuse_roll_record_change();  -- pm.refuse_change (issue 30)

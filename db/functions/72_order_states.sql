-- Order states: the order's life as a state machine (migration 008). The allowed (from, to) pairs are
-- the rows of pm.transitions for machine 'order' (its partition pm.order_transitions, migration 019); each
-- transition below is one small function that refuses every other with PM041 (pm.check_transition, in
-- pm.move_order) and appends its pm.order_events row. Python never sets a state itself.

-- pm.lock_order
-- The order's row, locked for this transaction (PM003 when there is none).
CREATE OR REPLACE FUNCTION pm.lock_order(p_id text)
RETURNS pm.broker_orders LANGUAGE plpgsql AS $$
DECLARE
    r pm.broker_orders;
BEGIN
    PERFORM pm.require(p_id, 'client_order_id');
    SELECT * INTO r FROM pm.broker_orders WHERE client_order_id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pm.raise_error('PM003', format('no order %s', p_id));
    END IF;
    RETURN r;
END;
$$;

DROP FUNCTION IF EXISTS pm.check_order_transition(pm.broker_orders, text);  -- pm.check_transition (issue 30)

-- pm.move_order
-- The one place a state changes: checks the pair, sets status (and reason, broker order id when given; open,
-- partially filled and filled set the reason to the given one, NULL clearing a failed attempt's),
-- appends the event. Unique violations become PM042 (one unresolved order per symbol, side, product) or
-- PM043 (a broker order id links to one order). Returns the updated row.
CREATE OR REPLACE FUNCTION pm.move_order(r pm.broker_orders, p_to text, p_reason text,
                                         p_broker_order_id text DEFAULT NULL)
RETURNS pm.broker_orders LANGUAGE plpgsql AS $$
DECLARE
    moved pm.broker_orders;
    violated text;
BEGIN
    PERFORM pm.check_transition('order', r.status, p_to, 'order ' || r.client_order_id);
    BEGIN
        UPDATE pm.broker_orders
           SET status = p_to, state_changed_at = now(),
               -- an order that reached the broker (open, filled) drops the reason of an earlier failed attempt
               -- ("refused ... 403" of a send put off): the events keep it
               reason = CASE WHEN p_to IN ('open', 'partially_filled', 'filled') THEN p_reason
                             ELSE coalesce(p_reason, reason) END,
               broker_order_id = coalesce(p_broker_order_id, broker_order_id),
               attempts = attempts + (p_to = 'sending')::int,
               attempt_started_at = CASE WHEN p_to = 'sending' THEN now() ELSE attempt_started_at END
         WHERE client_order_id = r.client_order_id
        RETURNING * INTO moved;
    EXCEPTION WHEN unique_violation THEN
        GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
        IF violated = 'broker_orders_one_unresolved_idx' THEN
            PERFORM pm.raise_error('PM042', format('order %s waits: another %s %s %s order is unresolved',
                                                    r.client_order_id, r.side, r.symbol, r.product));
        END IF;
        PERFORM pm.raise_error('PM043', format('broker order %s is already linked to another order',
                                                p_broker_order_id));
    END;
    INSERT INTO pm.order_events (client_order_id, from_state, to_state, attempt, broker_order_id, reason)
    VALUES (r.client_order_id, r.status, p_to, moved.attempts, moved.broker_order_id, p_reason);
    -- the trader hears of an order that needs him, in this transaction (75_notifications.sql)
    IF p_to IN ('rejected', 'unknown', 'needs_review') THEN
        PERFORM pm.notify('order_' || p_to, jsonb_build_object(
            'client_order_id', moved.client_order_id, 'instrument', moved.instrument, 'symbol', moved.symbol,
            'side', moved.side, 'quantity', moved.quantity, 'broker_order_id', moved.broker_order_id,
            'reason', moved.reason), NULL, moved.fingerprint);
    ELSIF p_to = 'filled' THEN
        PERFORM pm.notify_order_filled(moved);  -- its fill and slippage (the paper broker's fills never pass here)
    END IF;
    RETURN moved;
END;
$$;

-- pm.order_sending
-- queued → sending, committed before the request leaves: counts the attempt and stamps its start.
-- PM044 when the order lacks what a broker needs (symbol, quantity, product).
CREATE OR REPLACE FUNCTION pm.order_sending(p_id text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders := pm.lock_order(p_id);
BEGIN
    IF r.symbol IS NULL OR r.quantity IS NULL OR r.product IS NULL THEN
        PERFORM pm.raise_error('PM044', format('order %s cannot be sent: symbol, quantity and product are required',
                                                p_id));
    END IF;
    RETURN pm.move_order(r, 'sending', NULL);
END;
$$;

-- pm.order_not_sent
-- sending → queued: the request certainly was not placed (refused connection, DNS, 403, 429); it may go again.
CREATE OR REPLACE FUNCTION pm.order_not_sent(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'queued', p_reason);
END;
$$;

-- pm.order_accepted
-- sending → open with the broker's order id.
CREATE OR REPLACE FUNCTION pm.order_accepted(p_id text, p_broker_order_id text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_broker_order_id, 'broker_order_id');
    RETURN pm.move_order(pm.lock_order(p_id), 'open', NULL, p_broker_order_id);
END;
$$;

-- pm.order_unknown
-- sending → unknown: it may have reached the broker (timeout, cut, 5xx, no order id, or a sender that died).
CREATE OR REPLACE FUNCTION pm.order_unknown(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'unknown', p_reason);
END;
$$;

-- pm.order_rejected
-- sending | open | needs_review → rejected, with the broker's (or the trader's) reason.
CREATE OR REPLACE FUNCTION pm.order_rejected(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'rejected', p_reason);
END;
$$;

-- pm.order_cancelled
-- open | partially_filled → cancelled (a partial fill keeps what filled).
CREATE OR REPLACE FUNCTION pm.order_cancelled(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'cancelled', p_reason);
END;
$$;

-- pm.order_expired
-- queued → expired: an entry that could not be sent in time is not sent late.
CREATE OR REPLACE FUNCTION pm.order_expired(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'expired', p_reason);
END;
$$;

-- pm.order_linked
-- unknown | needs_review → open: matched to exactly one broker order (or linked by the trader).
CREATE OR REPLACE FUNCTION pm.order_linked(p_id text, p_broker_order_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_broker_order_id, 'broker_order_id');
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'open', p_reason, p_broker_order_id);
END;
$$;

-- pm.order_needs_review
-- unknown → needs_review: ambiguous, or nothing at the broker within the review window.
CREATE OR REPLACE FUNCTION pm.order_needs_review(p_id text, p_reason text)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_reason, 'reason');
    RETURN pm.move_order(pm.lock_order(p_id), 'needs_review', p_reason);
END;
$$;

-- pm.record_order_fill
-- Applies the broker's cumulative fill of an order (quantity so far, its average price) idempotently: a
-- cumulative quantity already recorded, or a smaller one (an older report), changes nothing; a larger one
-- books the difference at the price that makes the volume-weighted average come out. open → partially_filled,
-- and → filled once the whole quantity is in (fill_price = the VWAP rounded to 0.01, half away from zero).
-- PM046 when the broker order id is not the order's; PM045 when it would fill more than the quantity.
CREATE OR REPLACE FUNCTION pm.record_order_fill(p_id text, p_broker_order_id text, p_cumulative integer,
                                                p_average_price numeric, p_source text DEFAULT 'tradebook')
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders := pm.lock_order(p_id);
    have integer;
    value numeric;
BEGIN
    PERFORM pm.require(p_broker_order_id, 'broker_order_id');
    PERFORM pm.require(p_cumulative, 'cumulative_quantity');
    PERFORM pm.require(p_average_price, 'average_price');
    IF r.broker_order_id IS DISTINCT FROM p_broker_order_id THEN
        PERFORM pm.raise_error('PM046', format('fill for broker order %s, but order %s is linked to %s',
                                                p_broker_order_id, p_id, coalesce(r.broker_order_id, 'none')));
    END IF;
    IF p_cumulative > r.quantity THEN
        PERFORM pm.raise_error('PM045', format('fill of %s exceeds order %s quantity %s', p_cumulative, p_id,
                                                r.quantity));
    END IF;
    SELECT coalesce(sum(quantity), 0), coalesce(sum(quantity * price), 0) INTO have, value
      FROM pm.order_fills WHERE client_order_id = p_id;
    IF p_cumulative <= have THEN
        RETURN r;
    END IF;
    INSERT INTO pm.order_fills (broker_order_id, cumulative_quantity, client_order_id, quantity, price, source)
    VALUES (p_broker_order_id, p_cumulative, p_id, p_cumulative - have,
            (p_cumulative * p_average_price - value) / (p_cumulative - have), p_source);
    IF p_cumulative = r.quantity THEN
        -- the fills' volume-weighted price is the reported average by construction
        UPDATE pm.broker_orders SET fill_price = round(p_average_price, 2), filled_at = now()
         WHERE client_order_id = p_id
        RETURNING * INTO r;
        r := pm.move_order(r, 'filled', NULL);
    ELSIF r.status = 'open' THEN
        r := pm.move_order(r, 'partially_filled', NULL);
    END IF;
    RETURN r;
END;
$$;

-- pm.order_filled_quantity
-- What has filled of an order so far (the sum of its recorded fills; 0 for none).
CREATE OR REPLACE FUNCTION pm.order_filled_quantity(p_id text)
RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(sum(quantity), 0)::integer FROM pm.order_fills WHERE client_order_id = p_id;
$$;

-- pm.unresolved_orders
-- Orders that may be at the broker without our knowing how they ended: sending (a sender that died) and unknown.
CREATE OR REPLACE FUNCTION pm.unresolved_orders()
RETURNS SETOF pm.broker_orders LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.broker_orders WHERE status IN ('sending', 'unknown') ORDER BY attempt_started_at, client_order_id;
$$;

-- pm.order_history
-- An order's events, oldest first.
CREATE OR REPLACE FUNCTION pm.order_history(p_id text)
RETURNS SETOF pm.order_events LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.order_events WHERE client_order_id = p_id ORDER BY id;
$$;

CREATE OR REPLACE TRIGGER order_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.order_events
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM047');
CREATE OR REPLACE TRIGGER order_fills_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.order_fills
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM047');
DROP FUNCTION IF EXISTS pm.refuse_order_record_change();  -- pm.refuse_change (issue 30)

-- pm.review_order
-- The trader's answer to a needs_review order (PM048 for any other state): at the broker as p_broker_order_id →
-- open (the sender then books its fills from the broker, as for any open order), or not at the broker → rejected
-- (booked like a refusal: an entry removed, an exit reopened). Releases the lock this order's review placed.
-- A link says how it was made (p_link): 'checked' (the CLI found the id in the broker's order book with the
-- order's symbol, side and quantity: pm.orders_seen_at_broker sends it back to needs_review if the sender
-- never sees it there within the review window) or 'forced' (--force, with a reason: exempt from that, its
-- contract judged by reconciliation instead); PM096 otherwise. p_by is a checked principal (PM095).
DROP FUNCTION IF EXISTS pm.review_order(text, boolean, text, text, text);  -- before p_link (issue 29)
CREATE OR REPLACE FUNCTION pm.review_order(p_id text, p_at_broker boolean, p_broker_order_id text, p_reason text,
                                           p_by text, p_link text DEFAULT NULL)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
    why text;
BEGIN
    PERFORM pm.lock_book();  -- the booking it may trigger writes the book
    r := pm.lock_order(p_id);
    PERFORM pm.require(p_at_broker, 'at_broker');
    PERFORM pm.require(p_by, 'by');
    PERFORM pm.check_principal(p_by, 'by');
    IF r.status <> 'needs_review' THEN
        PERFORM pm.raise_error('PM048', format('order %s is %s, not needs_review: nothing to review', p_id, r.status));
    END IF;
    IF p_at_broker AND coalesce(btrim(p_broker_order_id), '') = '' THEN
        PERFORM pm.raise_error('PM004', 'broker_order_id is required for an order that is at the broker');
    END IF;
    IF NOT p_at_broker AND p_broker_order_id IS NOT NULL THEN
        PERFORM pm.raise_error('PM004', 'broker_order_id: an order that is not at the broker has none');
    END IF;
    IF p_at_broker AND p_link IS DISTINCT FROM 'checked' AND p_link IS DISTINCT FROM 'forced' THEN
        PERFORM pm.raise_error('PM096', 'link must be checked (found in the broker''s order book) or forced');
    END IF;
    IF p_at_broker AND p_link = 'forced' AND coalesce(btrim(p_reason), '') = '' THEN
        PERFORM pm.raise_error('PM096', 'a forced link needs a reason');
    END IF;
    why := format('reviewed by %s: %s', p_by, coalesce(nullif(btrim(p_reason), ''),
                  CASE WHEN p_at_broker THEN 'at the broker' ELSE 'not at the broker' END));
    UPDATE pm.instrument_locks SET released_at = pm.instant(), released_by = p_by
     WHERE instrument = upper(r.instrument) AND released_at IS NULL AND source = 'orders'
       AND starts_with(reason, format('order %s needs review:', p_id));
    IF p_at_broker THEN
        r := pm.order_linked(p_id, btrim(p_broker_order_id), why || CASE WHEN p_link = 'forced' THEN ' (forced)' ELSE '' END);
        UPDATE pm.broker_orders SET review_link = p_link, seen_at_broker = NULL WHERE client_order_id = p_id
        RETURNING * INTO r;
        RETURN r;
    END IF;
    RETURN pm.order_rejected(p_id, why);
END;
$$;

-- pm.orders_seen_at_broker
-- What the sender saw in the broker's order book (p_ids: every order id there): each open or partially
-- filled order of ours whose broker id is among them is stamped seen_at_broker; an open order a 'checked'
-- review linked, never seen there, linked longer than p_review_after ago, goes back to needs_review (its
-- instrument locked again, an order_needs_review anomaly). A 'forced' link is exempt (yesterday's orders
-- are no longer in the books): reconciliation judges its contract (pm.symbols_in_flight leaves it out).
-- Returns how many went back to needs_review.
CREATE OR REPLACE FUNCTION pm.orders_seen_at_broker(p_ids text[], p_review_after interval)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
    why text;
    n integer := 0;
BEGIN
    PERFORM pm.require(p_review_after, 'review_after');
    UPDATE pm.broker_orders SET seen_at_broker = now()
     WHERE status IN ('open', 'partially_filled') AND broker_order_id = ANY (coalesce(p_ids, '{}'));
    FOR r IN SELECT * FROM pm.broker_orders
              WHERE status = 'open' AND review_link = 'checked' AND seen_at_broker IS NULL
                AND state_changed_at < now() - p_review_after
                AND NOT (broker_order_id = ANY (coalesce(p_ids, '{}')))
              ORDER BY client_order_id LOOP
        PERFORM pm.lock_book();  -- the lock and anomaly write beside the book
        why := format('linked by a review to broker order %s, not in the broker''s books within %s',
                      r.broker_order_id, p_review_after);
        PERFORM pm.order_needs_review(r.client_order_id, why);
        PERFORM pm.lock_instrument(r.instrument, 'infinity', format('order %s needs review: %s', r.client_order_id, why),
                                   'orders');
        PERFORM pm.book_anomaly(r, 'order_needs_review', format('order %s (%s %s x%s) needs review: %s',
                                r.client_order_id, r.side, r.symbol, r.quantity, why));
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;

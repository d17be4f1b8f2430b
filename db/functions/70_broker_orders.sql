-- Broker order functions: the order outbox written by pm.apply_signal and drained to the broker.

-- pm.add_orders
-- Inserts a signal's orders as 'queued' (ON CONFLICT DO NOTHING: a client order id is written once);
-- orders: [{client_order_id, fingerprint, position_id, instrument, side, lots, price, and for a contract
-- exchange, symbol, quantity, leg, product (default NRML), point_value}]. Returns how many were new.
CREATE OR REPLACE FUNCTION pm.add_orders(orders jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    added integer;
BEGIN
    IF orders IS NULL OR jsonb_typeof(orders) <> 'array' THEN
        PERFORM pm.raise_error('PM004', 'orders must be a JSON array');
    END IF;
    INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price,
                                  exchange, symbol, quantity, product, leg, point_value)
    SELECT o ->> 'client_order_id', o ->> 'fingerprint', o ->> 'position_id', o ->> 'instrument', o ->> 'side',
           (o ->> 'lots')::integer, (o ->> 'price')::numeric, o ->> 'exchange', o ->> 'symbol',
           (o ->> 'quantity')::integer, coalesce(o ->> 'product', 'NRML'), o ->> 'leg', (o ->> 'point_value')::numeric
      FROM jsonb_array_elements(orders) o
    ON CONFLICT (client_order_id) DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END;
$$;

-- pm.fill_paper_orders
-- The paper broker: fills the given queued orders at their price (idempotent: a filled order
-- keeps its first fill), queued → filled with its pm.order_events row (72_order_states.sql). Entries first,
-- then the closing orders and roll legs of layers on paper (pm.layer_on_paper, 74_order_sending.sql; so an
-- entry and its stop-out's re-entry of one batch both fill): an exit of a layer traded at a broker stays queued
-- for its sender, whoever asked. Returns every named order that is filled, with its fill. Committed
-- asynchronously (synchronous_commit off for this transaction only): a fill lost in a crash leaves its order
-- 'queued', and recovery fills it again, so waiting for the flush buys nothing.
CREATE OR REPLACE FUNCTION pm.fill_paper_orders(client_order_ids text[])
RETURNS SETOF pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    entries boolean;
BEGIN
    PERFORM pm.require(client_order_ids, 'client_order_ids');
    PERFORM set_config('synchronous_commit', 'off', true);
    FOREACH entries IN ARRAY ARRAY[true, false] LOOP
        WITH filled AS (
            UPDATE pm.broker_orders o
               SET status = 'filled', fill_price = price, filled_at = now(), state_changed_at = now(),
                   broker_order_id = 'paper-' || nextval('pm.paper_order_seq')
             WHERE client_order_id = ANY (client_order_ids) AND status = 'queued'
               AND CASE WHEN entries THEN o.roll_id IS NULL AND pm.order_opens(o)
                        ELSE pm.layer_on_paper(o.position_id) END
            RETURNING client_order_id, broker_order_id)
        INSERT INTO pm.order_events (client_order_id, from_state, to_state, attempt, broker_order_id, reason)
        SELECT client_order_id, 'queued', 'filled', 0, broker_order_id, 'paper fill' FROM filled;
    END LOOP;
    RETURN QUERY SELECT * FROM pm.broker_orders
                  WHERE client_order_id = ANY (client_order_ids) AND status = 'filled'
                  ORDER BY client_order_id;
END;
$$;

-- pm.queued_orders
-- Orders committed but not yet sent ('queued'), older than min_age (recovery and the background sweep).
CREATE OR REPLACE FUNCTION pm.queued_orders(min_age interval DEFAULT interval '0')
RETURNS SETOF pm.broker_orders LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.broker_orders
     WHERE status = 'queued' AND created_at <= now() - coalesce(min_age, interval '0')
     ORDER BY created_at, client_order_id;
$$;

-- pm.pending_orders was its name until issue 30 (the state is queued): a role granted it keeps its grant under
-- the new name, then the old one goes
DO $$
DECLARE
    grantee text;
BEGIN
    IF to_regprocedure('pm.pending_orders(interval)') IS NOT NULL THEN
        FOR grantee IN SELECT a.grantee::regrole::text FROM pg_proc p, aclexplode(p.proacl) a
                        WHERE p.oid = 'pm.pending_orders(interval)'::regprocedure AND a.privilege_type = 'EXECUTE'
                          AND a.grantee <> 0 AND a.grantee <> p.proowner LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION pm.queued_orders(interval) TO %s', grantee);
        END LOOP;
        DROP FUNCTION pm.pending_orders(interval);
    END IF;
END;
$$;

-- pm.orders_for_signal
-- Every order a fingerprint produced (audit, and the one-order-per-fingerprint checks).
CREATE OR REPLACE FUNCTION pm.orders_for_signal(p_fingerprint text)
RETURNS SETOF pm.broker_orders LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.broker_orders WHERE fingerprint = p_fingerprint ORDER BY client_order_id;
$$;

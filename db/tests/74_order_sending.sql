-- Order sending (migration 011, 74_order_sending.sql): which orders the sender takes, backoff, expiry of
-- stale entries (never exits), abandoned attempts, resolving an unknown order from the broker's order book.
SELECT plan(33);

CREATE FUNCTION pg_temp.order(id text, side text DEFAULT 'BUY', sym text DEFAULT 'GOLDM05JAN27FUT',
                              leg text DEFAULT 'FUT') RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', id, 'fingerprint', repeat('f', 64),
            'position_id', 'GOLD_MINI_Long_1', 'instrument', 'GOLD_MINI', 'side', side, 'lots', 2, 'price', 75000,
            'exchange', 'MCX', 'symbol', sym, 'quantity', 2, 'product', 'NRML', 'leg', leg)));
    RETURN id;
END;
$$;

-- which orders open a position
SELECT pg_temp.order('e-1');
SELECT pg_temp.order('x-1', 'SELL', 'GOLDM05FEB27FUT');
SELECT pg_temp.order('pe-1', 'SELL', 'BANKNIFTY29DEC2652000PE', 'PE');
SELECT is(pm.order_opens(o), x, o.client_order_id || (CASE WHEN x THEN ' opens' ELSE ' closes' END))
  FROM pm.broker_orders o JOIN (VALUES ('e-1', true), ('x-1', false), ('pe-1', true)) v(id, x) ON v.id = o.client_order_id;

-- sendable, and backoff after a certain non-placement
SELECT is((SELECT count(*)::int FROM pm.sendable_orders(10)), 3, 'three queued orders are sendable');
SELECT pm.order_sending('e-1');
SELECT results_eq($$SELECT status, next_attempt_at > now() FROM pm.order_send_later('e-1', 'HTTP 403', '1 hour')$$,
                  $$VALUES ('queued'::varchar, true)$$, 'not sent: queued again, next attempt later');
SELECT is((SELECT count(*)::int FROM pm.sendable_orders(10) WHERE client_order_id = 'e-1'), 0,
          'an order waiting out its backoff is not sendable');
SELECT throws_ok($$SELECT pm.order_send_later('e-1', 'again', '1 second')$$, 'PM041', NULL,
                 'only a sending order can be put back');
SELECT throws_ok($$SELECT pm.order_send_later('e-1', 'again', NULL)$$, 'PM004', NULL, 'the delay is required');

-- expiry: entries only
UPDATE pm.broker_orders SET created_at = now() - interval '10 minutes';
UPDATE pm.broker_orders SET exchange = 'NFO' WHERE client_order_id = 'pe-1';  -- a Bank Nifty leg
SELECT results_eq($$SELECT client_order_id::text, reason FROM pm.expire_stale_entries('120 seconds', '{NFO}') ORDER BY 1$$,
                  $$VALUES ('e-1', 'not sent within max_order_age (00:02:00): the market moved'),
                           ('pe-1', 'market closed: NFO did not open within max_order_age (00:02:00)')$$,
                  'stale entries expire: market closed for a closed exchange, the market moved for an open one');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'x-1'), 'queued', 'an exit is never expired');
SELECT is((SELECT count(*)::int FROM pm.expire_stale_entries('120 seconds')), 0, 'expiring again changes nothing');

-- an attempt whose sender died becomes unknown
SELECT pm.order_sending('x-1');
SELECT is(pm.abandon_sending('1 hour'), 0, 'a recent attempt is left alone');
UPDATE pm.broker_orders SET attempt_started_at = now() - interval '2 minutes' WHERE client_order_id = 'x-1';
SELECT is(pm.abandon_sending('30 seconds'), 1, 'an old attempt is abandoned');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'x-1'), 'unknown', '... and is unknown');
SELECT throws_ok($$SELECT pm.order_sending('x-1')$$, 'PM041', NULL, 'an unknown order is never sent again');

-- resolving from the order book
SELECT is(pm.resolve_unknown_order('x-1', '[]', '1 hour'), 'waiting', 'nothing yet: waits');
SELECT is(pm.resolve_unknown_order('x-1',
          '[{"orderid": "B9", "symbol": "GOLDM05FEB27FUT", "action": "BUY", "quantity": "2", "product": "NRML"},
            {"orderid": "B8", "symbol": "GOLDM05FEB27FUT", "action": "SELL", "quantity": "3", "product": "NRML"},
            {"orderid": "B7", "symbol": "GOLDM05FEB27FUT", "action": "SELL", "quantity": "2", "product": "NRML",
             "timestamp": "2001-01-01 10:00:00"}]', '1 hour'),
          'waiting', 'another side, another quantity, an order from before the attempt: no match');
SELECT is(pm.resolve_unknown_order('x-1',
          '[{"orderid": "B6", "symbol": "GOLDM05FEB27FUT", "action": "SELL", "quantity": 2, "product": "NRML"}]',
          '1 hour'), 'linked', 'exactly one match: linked');
SELECT results_eq($$SELECT status, broker_order_id FROM pm.broker_orders WHERE client_order_id = 'x-1'$$,
                  $$VALUES ('open'::varchar, 'B6'::varchar)$$, '... open with that broker order');

-- ambiguous: needs review, instrument locked, anomaly recorded
SELECT pg_temp.order('x-2', 'SELL', 'GOLDM05MAR27FUT');
SELECT pm.order_sending('x-2');
SELECT pm.order_unknown('x-2', 'timeout');
SELECT is(pm.resolve_unknown_order('x-2',
          '[{"orderid": "C1", "symbol": "GOLDM05MAR27FUT", "action": "SELL", "quantity": 2, "product": "NRML"},
            {"orderid": "C2", "symbol": "GOLDM05MAR27FUT", "action": "SELL", "quantity": 2, "product": "NRML"},
            {"orderid": "B6", "symbol": "GOLDM05MAR27FUT", "action": "SELL", "quantity": 2, "product": "NRML"}]',
          '1 hour'), 'needs_review', 'two unlinked matches: needs review');
SELECT ok(EXISTS (SELECT 1 FROM pm.instrument_locks WHERE instrument = 'GOLD_MINI' AND released_at IS NULL
                   AND locked_until = 'infinity') AND EXISTS (SELECT 1 FROM pm.anomalies WHERE kind = 'order_needs_review'),
          'the instrument is locked and an anomaly recorded');

-- reconciliation differences: the instrument locked once, with an anomaly; an unknown symbol is skipped
SELECT pm.unlock_instrument('GOLD_MINI', 'test');
SELECT is(pm.record_reconcile_differences('[{"symbol": "GOLDM05JAN27FUT", "exchange": "MCX", "product": "NRML",
                                             "book_quantity": 2, "broker_quantity": 3},
                                            {"symbol": "NOT_OURS", "exchange": "MCX", "product": "NRML",
                                             "book_quantity": 0, "broker_quantity": 1}]'), 1,
          'a difference in a contract we trade locks its instrument');
SELECT is(pm.record_reconcile_differences('[{"symbol": "GOLDM05JAN27FUT", "exchange": "MCX", "product": "NRML",
                                             "book_quantity": 2, "broker_quantity": 3}]'), 0,
          'the same difference again locks nothing more');
SELECT is((SELECT count(*)::int FROM pm.anomalies WHERE kind = 'reconcile_difference'), 1, 'one anomaly');
SELECT results_eq($$SELECT data -> 'differences' -> 0 ->> 'instrument', (data -> 'differences' -> 0 ->> 'broker_quantity')::int,
                           jsonb_array_length(data -> 'differences')
                      FROM pm.notification_events WHERE kind = 'reconciliation_difference'$$,
                  $$VALUES ('GOLD_MINI', 3, 1)$$,
                  'one reconciliation_difference event naming the difference, written in the same transaction');
SELECT is((SELECT count(*)::int FROM pm.notification_events
            WHERE kind = 'instrument_locked' AND data ->> 'source' IN ('reconcile', 'orders')), 0,
          'the locks of reconciliation and of an order needing review are told by their causes'' own events');
SELECT pm.unlock_instrument('GOLD_MINI', 'test');
SELECT is(pm.record_reconcile_differences('[{"symbol": "GOLDM05JAN27FUT", "exchange": "MCX", "product": "NRML",
                                             "book_quantity": 2, "broker_quantity": 3}]'), 1,
          'unlocked while it still differs: a new episode locks again');
SELECT is((SELECT count(*)::int FROM pm.notification_events WHERE kind = 'reconciliation_difference'), 2,
          'and is told again');

-- an exit waits while an earlier entry of its position is not settled
CREATE FUNCTION pg_temp.pair(pos text, sym text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.add_orders(jsonb_build_array(
        jsonb_build_object('client_order_id', pos || '-in', 'fingerprint', repeat('a', 64), 'position_id', pos,
                           'instrument', 'COPPER', 'side', 'BUY', 'lots', 1, 'price', 800, 'exchange', 'MCX',
                           'symbol', sym, 'quantity', 1, 'leg', 'FUT'),
        jsonb_build_object('client_order_id', pos || '-out', 'fingerprint', repeat('b', 64), 'position_id', pos,
                           'instrument', 'COPPER', 'side', 'SELL', 'lots', 1, 'price', 810, 'exchange', 'MCX',
                           'symbol', sym, 'quantity', 1, 'leg', 'FUT')));
    UPDATE pm.broker_orders SET created_at = now() - interval '5 seconds' WHERE client_order_id = pos || '-in';
END;
$$;
SELECT pg_temp.pair('COPPER_Long_1', 'COPPER31JAN27FUT');
SELECT is((SELECT array_agg(client_order_id::text) FROM pm.sendable_orders(50) WHERE instrument = 'COPPER'),
          ARRAY['COPPER_Long_1-in'], 'the exit waits while its entry is queued');
SELECT pm.order_sending('COPPER_Long_1-in');
SELECT pm.order_accepted('COPPER_Long_1-in', 'K1');
SELECT pm.record_order_fill('COPPER_Long_1-in', 'K1', 1, 801);
SELECT is((SELECT array_agg(client_order_id::text) FROM pm.sendable_orders(50) WHERE instrument = 'COPPER'),
          ARRAY['COPPER_Long_1-out'], 'once the entry filled, the exit goes');

-- what reconciliation leaves alone, and the simulator's fill price
SELECT pg_temp.order('f-1', 'BUY', 'SILVERM27FEB27FUT');
SELECT pg_temp.order('f-2', 'SELL', 'SILVERM27FEB27FUT');
SELECT pm.order_sending('f-1');
SELECT ok('SILVERM27FEB27FUT' = ANY(ARRAY(SELECT pm.symbols_in_flight())), 'a contract with an order in flight');
SELECT is(pm.sending_signal_price('SILVERM27FEB27FUT', 'buy'), 75000::numeric, 'the sending order''s signal price');
SELECT is(pm.sending_signal_price('SILVERM27FEB27FUT', 'SELL'), NULL, 'no SELL of it is sending');

SELECT * FROM finish();

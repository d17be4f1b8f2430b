-- The order state machine (migration 008, 72_order_states.sql): the whitelist, each transition, the
-- named refusals, the event rows, one unresolved order per (symbol, side, product), idempotent fills.
SELECT plan(76);

CREATE FUNCTION pg_temp.order(id text, sym text DEFAULT 'BANKNIFTY29DEC26FUT', side text DEFAULT 'BUY',
                              qty integer DEFAULT 60) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', id, 'fingerprint', repeat('f', 64),
            'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'side', side, 'lots', 2, 'price', 52000,
            'exchange', 'NFO', 'symbol', sym, 'quantity', qty, 'product', 'NRML', 'leg', 'FUT')));
    RETURN id;
END;
$$;

-- schema
SELECT has_table('pm', t, 'table pm.' || t) FROM unnest(ARRAY['order_transitions', 'order_events', 'order_fills']) t;
SELECT has_index('pm', 'broker_orders', i, 'index ' || i)
  FROM unnest(ARRAY['broker_orders_queued_idx', 'broker_orders_one_unresolved_idx',
                    'broker_orders_broker_order_id_idx']) AS i;
SELECT col_default_is('pm', 'broker_orders', 'status', 'queued', 'a new order is queued');
SELECT is((SELECT count(*)::int FROM pm.order_transitions), 19, 'nineteen allowed transitions (migration 018: open → needs_review, a review link the books never showed)');
SELECT is((SELECT count(*)::int FROM pm.order_transitions WHERE from_state = 'unknown' AND to_state IN ('queued', 'sending')),
          0, 'an unknown order can never be queued or sent again');

-- the happy path: queued → sending → open → partially_filled → filled
SELECT pg_temp.order('o-1');
SELECT throws_ok($$UPDATE pm.broker_orders SET status = 'pending' WHERE client_order_id = 'o-1'$$, '23514', NULL, 'the old pending is gone');
SELECT results_eq($$SELECT status, attempts, attempt_started_at IS NOT NULL FROM pm.order_sending('o-1')$$,
                  $$VALUES ('sending'::varchar, 1, true)$$, 'sending counts the attempt and stamps its start');
SELECT results_eq($$SELECT status, broker_order_id FROM pm.order_accepted('o-1', 'B1')$$,
                  $$VALUES ('open'::varchar, 'B1'::varchar)$$, 'accepted: open with the broker order id');
SELECT results_eq($$SELECT status FROM pm.record_order_fill('o-1', 'B1', 30, 52000)$$,
                  $$VALUES ('partially_filled'::varchar)$$, 'half filled');
SELECT results_eq($$SELECT status FROM pm.record_order_fill('o-1', 'B1', 30, 52000)$$,
                  $$VALUES ('partially_filled'::varchar)$$, 'the same report again changes nothing');
SELECT results_eq($$SELECT status FROM pm.record_order_fill('o-1', 'B1', 10, 52000)$$,
                  $$VALUES ('partially_filled'::varchar)$$, 'an older (smaller) report changes nothing');
SELECT is(pm.order_filled_quantity('o-1'), 30, 'thirty filled');
SELECT results_eq($$SELECT status, fill_price, filled_at IS NOT NULL FROM pm.record_order_fill('o-1', 'B1', 60, 52005)$$,
                  $$VALUES ('filled'::varchar, 52005.00::numeric, true)$$, 'all filled at the volume-weighted price');
SELECT results_eq($$SELECT (data ->> 'lots')::int, (data ->> 'quantity')::int, (data ->> 'fill_price')::numeric,
                           (data ->> 'slippage_points')::numeric, data ->> 'symbol', fingerprint::text
                      FROM pm.notification_events WHERE kind = 'order_filled'$$,
                  $$VALUES (2, 60, 52005.00, 5.00, 'BANKNIFTY29DEC26FUT', repeat('f', 64))$$,
                  'the fill is one order_filled event: the fill and the slippage against the signal price');
SELECT results_eq($$SELECT quantity, price FROM pm.order_fills WHERE client_order_id = 'o-1' ORDER BY cumulative_quantity$$,
                  $$VALUES (30, 52000::numeric), (30, 52010::numeric)$$,
                  'the second fill is the difference, at the price that gives the average');
SELECT results_eq($$SELECT from_state, to_state, attempt FROM pm.order_history('o-1')$$,
                  $$VALUES ('queued'::varchar, 'sending'::varchar, 1), ('sending', 'open', 1),
                           ('open', 'partially_filled', 1), ('partially_filled', 'filled', 1)$$,
                  'one event per transition');
SELECT throws_ok($$SELECT pm.order_sending('o-1')$$, 'PM041', 'order o-1 cannot go from filled to sending',
                 'a filled order is never sent');
SELECT throws_ok($$SELECT pm.record_order_fill('o-1', 'B1', 61, 52000)$$, 'PM045', NULL, 'no overfill');
SELECT throws_ok($$SELECT pm.record_order_fill('o-1', 'B9', 60, 52000)$$, 'PM046', NULL,
                 'a fill of another broker order is refused');

-- unknown: never sent again; resolved by linking, or needs_review
SELECT pg_temp.order('o-2');
SELECT lives_ok($$SELECT pm.order_sending('o-2')$$, 'o-2 sending');
SELECT results_eq($$SELECT status, reason FROM pm.order_unknown('o-2', 'no answer within 10 s')$$,
                  $$VALUES ('unknown'::varchar, 'no answer within 10 s'::text)$$, 'a timeout after sending is unknown');
SELECT throws_ok($$SELECT pm.order_sending('o-2')$$, 'PM041', NULL, 'an unknown order is never sent again');
SELECT throws_ok($$SELECT pm.order_not_sent('o-2', 'x')$$, 'PM041', NULL, 'an unknown order never goes back to queued');
SELECT pg_temp.order('o-3');
SELECT throws_ok($$SELECT pm.order_sending('o-3')$$, 'PM042', NULL,
                 'a second BUY of the symbol waits while one is unresolved');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'o-3'), 'queued', 'and stays queued');
SELECT pg_temp.order('o-4', side => 'SELL');
SELECT lives_ok($$SELECT pm.order_sending('o-4')$$, 'the other side is not blocked');
SELECT throws_ok($$SELECT pm.order_linked('o-2', 'B1', 'matched')$$, 'PM043', NULL,
                 'a broker order id links to one order of ours only');
SELECT results_eq($$SELECT status, broker_order_id FROM pm.order_linked('o-2', 'B2', 'matched in the order book')$$,
                  $$VALUES ('open'::varchar, 'B2'::varchar)$$, 'resolved by matching: open');
SELECT lives_ok($$SELECT pm.order_sending('o-3')$$, 'once resolved, the waiting order may go');
SELECT results_eq($$SELECT status FROM pm.order_unknown('o-3', 'HTTP 500')$$, $$VALUES ('unknown'::varchar)$$,
                  'a 500 is unknown');
SELECT results_eq($$SELECT status FROM pm.order_needs_review('o-3', 'nothing at the broker within 120 s')$$,
                  $$VALUES ('needs_review'::varchar)$$, 'needs review');
SELECT results_eq($$SELECT status FROM pm.order_rejected('o-3', 'confirmed absent by the trader')$$,
                  $$VALUES ('rejected'::varchar)$$, 'the trader confirms it is not at the broker');

-- not sent, rejected, cancelled, expired
SELECT results_eq($$SELECT status, reason, attempts FROM pm.order_not_sent('o-4', 'connection refused')$$,
                  $$VALUES ('queued'::varchar, 'connection refused'::text, 1)$$, 'not sent: queued again');
SELECT results_eq($$SELECT attempts FROM pm.order_sending('o-4')$$, $$VALUES (2)$$, 'the second attempt is counted');
SELECT results_eq($$SELECT status FROM pm.order_rejected('o-4', 'RMS: margin')$$, $$VALUES ('rejected'::varchar)$$,
                  'a definite refusal is rejected');
SELECT results_eq($$SELECT kind::text, data ->> 'client_order_id', data ->> 'reason' FROM pm.notification_events
                     WHERE kind LIKE 'order_%' ORDER BY id DESC LIMIT 1$$,
                  $$VALUES ('order_rejected', 'o-4', 'RMS: margin')$$,
                  'the rejection is a notification event, written with it');
SELECT pg_temp.order('o-5', sym => 'GOLDM');
SELECT lives_ok($$SELECT pm.order_sending('o-5'); SELECT pm.order_accepted('o-5', 'B5');
                  SELECT pm.record_order_fill('o-5', 'B5', 20, 78000)$$, 'o-5 partly filled');
SELECT results_eq($$SELECT status FROM pm.order_cancelled('o-5', 'the rest cancelled')$$,
                  $$VALUES ('cancelled'::varchar)$$, 'the rest cancelled');
SELECT is(pm.order_filled_quantity('o-5'), 20, 'the filled part stays');
SELECT pg_temp.order('o-6', sym => 'CRUDEOIL');
SELECT results_eq($$SELECT status FROM pm.order_expired('o-6', 'not sent within 120 s')$$, $$VALUES ('expired'::varchar)$$,
                  'an entry not sent in time expires');
SELECT throws_ok($$SELECT pm.order_accepted('o-6', 'B6')$$, 'PM041', NULL, 'an expired order is final');

-- refusals
SELECT pg_temp.order('o-7');
UPDATE pm.broker_orders SET exchange = NULL, symbol = NULL, quantity = NULL, leg = NULL WHERE client_order_id = 'o-7';
SELECT throws_ok($$SELECT pm.order_sending('o-7')$$, 'PM044', NULL, 'an order without a symbol cannot be sent');
SELECT throws_ok($$SELECT pm.order_accepted('no-such', 'B')$$, 'PM003', NULL, 'an unknown order id');
SELECT throws_ok($$SELECT pm.order_unknown('o-7', NULL)$$, 'PM004', 'reason is required', 'a reason is required');
SELECT throws_ok($$UPDATE pm.order_events SET reason = 'x'$$, 'PM047', NULL, 'events are append-only');
SELECT throws_ok($$DELETE FROM pm.order_fills$$, 'PM047', NULL, 'fills are append-only');

-- the paper broker: queued → filled in one step, with its event
SELECT pg_temp.order('o-8', sym => 'SILVERM');
SELECT results_eq($$SELECT status FROM pm.fill_paper_orders(ARRAY['o-8'])$$, $$VALUES ('filled'::varchar)$$,
                  'a paper fill');
SELECT results_eq($$SELECT from_state, to_state, reason FROM pm.order_history('o-8')$$,
                  $$VALUES ('queued'::varchar, 'filled'::varchar, 'paper fill'::text)$$, 'with its event row');
SELECT is((SELECT count(*)::int FROM pm.notification_events WHERE kind = 'order_filled'), 1,
          'a paper fill is no order_filled event (its signal_executed event says the fill)');

-- the trader's review of a needs_review order (pm.review_order)
SELECT pg_temp.order('o-9', sym => 'NATURALGAS');
SELECT lives_ok($$SELECT pm.order_sending('o-9'); SELECT pm.order_unknown('o-9', 'timeout');
                  SELECT pm.order_needs_review('o-9', 'two broker orders match');
                  SELECT pm.lock_instrument('BANK_NIFTY', 'infinity', 'order o-9 needs review: two match', 'orders');
                  SELECT pm.lock_instrument('BANK_NIFTY', 'infinity', 'book and broker differ', 'reconcile')$$,
                'o-9 needs review, its instrument locked');
SELECT throws_ok($$SELECT pm.review_order('o-8', false, NULL, 'x', 'cli:me@desk')$$, 'PM048',
                 'order o-8 is filled, not needs_review: nothing to review', 'only a needs_review order is reviewed');
SELECT throws_ok($$SELECT pm.review_order('o-9', true, ' ', 'x', 'cli:me@desk')$$, 'PM004', NULL,
                 'at the broker needs the broker order id');
SELECT throws_ok($$SELECT pm.review_order('o-9', false, 'B9', 'x', 'cli:me@desk')$$, 'PM004', NULL,
                 'not at the broker has no broker order id');
SELECT throws_ok($$SELECT pm.review_order('o-9', true, 'B2', 'x', 'cli:me@desk', 'checked')$$, 'PM043', NULL,
                 'a broker order id already linked to another order is refused');
SELECT results_eq($$SELECT status, broker_order_id, reason FROM pm.review_order('o-9', true, ' B9 ', NULL, 'cli:trader@desk', 'checked')$$,
                  $$VALUES ('open'::varchar, 'B9'::varchar, 'reviewed by cli:trader@desk: at the broker'::text)$$,
                  'at the broker: open, linked, the sender books its fills');
SELECT results_eq($$SELECT reason FROM pm.active_locks() WHERE instrument = 'BANK_NIFTY' ORDER BY id$$,
                  $$VALUES ('book and broker differ'::text)$$, 'the review''s own lock is released, no other');
SELECT pg_temp.order('o-10', sym => 'NATURALGAS');
SELECT lives_ok($$SELECT pm.order_sending('o-10'); SELECT pm.order_unknown('o-10', 'HTTP 500');
                  SELECT pm.order_needs_review('o-10', 'nothing at the broker')$$, 'o-10 needs review');
SELECT results_eq($$SELECT status, reason FROM pm.review_order('o-10', false, NULL, 'not in the order book', 'cli:me@desk')$$,
                  $$VALUES ('rejected'::varchar, 'reviewed by cli:me@desk: not in the order book'::text)$$,
                  'not at the broker: rejected (booked as a refusal)');

-- issue 29: a review's principal has a checked form; a link says how it was made
SELECT pg_temp.order('o-11', sym => 'CRUDEOIL');
SELECT lives_ok($$SELECT pm.order_sending('o-11'); SELECT pm.order_unknown('o-11', 'timeout');
                  SELECT pm.order_needs_review('o-11', 'nothing at the broker')$$, 'o-11 needs review');
SELECT throws_ok($$SELECT pm.review_order('o-11', false, NULL, 'x', 'the boss said so')$$, 'PM095', NULL,
                 'a principal that is free text is refused');
SELECT throws_ok($$SELECT pm.review_order('o-11', true, 'B11', 'x', 'cli:me@desk')$$, 'PM096', NULL,
                 'a link that is neither checked nor forced is refused');
SELECT throws_ok($$SELECT pm.review_order('o-11', true, 'B11', ' ', 'cli:me@desk', 'forced')$$, 'PM096',
                 'a forced link needs a reason', 'a forced link without a reason is refused');
SELECT results_eq($$SELECT status, review_link FROM pm.review_order('o-11', true, 'B11', NULL, 'cli:me@desk', 'checked')$$,
                  $$VALUES ('open'::varchar, 'checked'::varchar)$$, 'a checked link opens the order');
SELECT is(pm.orders_seen_at_broker(ARRAY['B9'], interval '1 minute'), 0,
          'within the review window an unseen checked link stays open');
UPDATE pm.broker_orders SET state_changed_at = now() - interval '2 minutes' WHERE client_order_id = 'o-11';
SELECT is(pm.orders_seen_at_broker(ARRAY['B9', 'B99'], interval '1 minute'), 1,
          'past it, a checked link the books never showed goes back');
SELECT results_eq($$SELECT status, (SELECT count(*)::int FROM pm.active_locks()
                                     WHERE reason LIKE 'order o-11 needs review: linked by a review%')
                      FROM pm.broker_orders WHERE client_order_id = 'o-11'$$,
                  $$VALUES ('needs_review'::varchar, 1)$$, 'to needs_review, its instrument locked again');
SELECT results_eq($$SELECT status, review_link FROM pm.review_order('o-11', true, 'B11', 'yesterday''s order',
                                                                     'cli:me@desk', 'forced')$$,
                  $$VALUES ('open'::varchar, 'forced'::varchar)$$, 'a forced link with a reason opens it again');
UPDATE pm.broker_orders SET state_changed_at = now() - interval '2 minutes' WHERE client_order_id = 'o-11';
SELECT is(pm.orders_seen_at_broker('{}', interval '1 minute'), 0, 'a forced link never goes back by itself');
SELECT ok('CRUDEOIL' <> ALL (ARRAY(SELECT pm.symbols_in_flight())),
          'and reconciliation judges its contract (not in flight while the books never showed it)');
SELECT is(pm.orders_seen_at_broker(ARRAY['B11'], interval '1 minute'), 0, 'once the books show it');
SELECT ok('CRUDEOIL' = ANY (ARRAY(SELECT pm.symbols_in_flight())), 'it is in flight like any open order');

-- a send put off (the broker refused: HTTP 403), then sent and filled: the fill does not keep the refusal (issue 28)
SELECT pg_temp.order('o-12', sym => 'SILVERM');
SELECT pm.order_sending('o-12');
SELECT pm.order_send_later('o-12', 'refused by the broker: HTTP 403', '0 s');
SELECT pm.order_sending('o-12');
SELECT pm.order_accepted('o-12', 'B12');
SELECT results_eq($$SELECT status, reason FROM pm.record_order_fill('o-12', 'B12', 60, 52000)$$,
                  $$VALUES ('filled'::varchar, NULL::text)$$,
                  'a filled order drops the reason of its earlier refused attempt (its events keep it)');

SELECT * FROM finish();

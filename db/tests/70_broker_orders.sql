-- pm.add_orders / fill_paper_orders / queued_orders / orders_for_signal: the order outbox.
SELECT plan(20);

CREATE FUNCTION pg_temp.orders(fp text, VARIADIC layers text[]) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('client_order_id', 'pm-' || left(fp, 8) || '-' || l, 'fingerprint', fp,
                                        'position_id', 'GOLD_MINI_' || l, 'instrument', 'GOLD_MINI', 'side', 'BUY',
                                        'lots', 3, 'price', 78500.5))
      FROM unnest(layers) l;
$$;

SELECT is(pm.add_orders(pg_temp.orders(repeat('a', 64), 'Long_1', 'Long_2')), 2, 'two new orders');
SELECT is(pm.add_orders(pg_temp.orders(repeat('a', 64), 'Long_1')), 0, 'a client order id is written once');
SELECT throws_ok($$SELECT pm.add_orders('{}')$$, 'PM004', 'orders must be a JSON array', 'orders must be an array');
SELECT throws_ok($$SELECT pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', 'x',
                   'fingerprint', 'f', 'position_id', 'p', 'instrument', 'GOLD_MINI', 'side', 'BUY', 'lots', 0,
                   'price', 1)))$$, '23514', NULL, 'zero lots refused by broker_orders_lots_check');
SELECT is((SELECT count(*)::int FROM pm.queued_orders()), 2, 'both pending');
SELECT is((SELECT count(*)::int FROM pm.queued_orders(interval '1 hour')), 0, 'none older than an hour');
SELECT results_eq($$SELECT client_order_id, fill_price, broker_order_id IS NOT NULL
                      FROM pm.fill_paper_orders(ARRAY['pm-aaaaaaaa-Long_1'])$$,
                  $$VALUES ('pm-aaaaaaaa-Long_1'::varchar, 78500.50::numeric, true)$$, 'paper fill at the price');
SELECT is((SELECT broker_order_id FROM pm.fill_paper_orders(ARRAY['pm-aaaaaaaa-Long_1'])),
          (SELECT broker_order_id FROM pm.broker_orders WHERE client_order_id = 'pm-aaaaaaaa-Long_1'),
          'a second fill returns the first fill (never two)');
SELECT results_eq($$SELECT client_order_id FROM pm.queued_orders()$$, $$VALUES ('pm-aaaaaaaa-Long_2'::varchar)$$,
                  'one left pending');
SELECT is((SELECT count(*)::int FROM pm.orders_for_signal(repeat('a', 64))), 2, 'orders of a fingerprint');

-- what a broker needs (migration 007): exchange, symbol, quantity in the exchange's unit, product, leg
SELECT is(pm.add_orders(jsonb_build_array(
    jsonb_build_object('client_order_id', 'pm-bbbb-Long_1-CE', 'fingerprint', repeat('b', 64),
                       'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'side', 'BUY', 'lots', 2,
                       'price', 52000, 'exchange', 'NFO', 'symbol', 'BANKNIFTY29DEC2652000CE', 'quantity', 60,
                       'leg', 'CE'),
    jsonb_build_object('client_order_id', 'pm-bbbb-Long_1-PE', 'fingerprint', repeat('b', 64),
                       'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'side', 'SELL', 'lots', 2,
                       'price', 52000, 'exchange', 'NFO', 'symbol', 'BANKNIFTY29DEC2652000PE', 'quantity', 60,
                       'leg', 'PE', 'product', 'NRML'))), 2, 'the two legs of one synthetic decision');
SELECT results_eq($$SELECT leg, side, exchange, symbol, quantity, product FROM pm.orders_for_signal(repeat('b', 64))$$,
                  $$VALUES ('CE'::varchar, 'BUY'::varchar, 'NFO'::varchar, 'BANKNIFTY29DEC2652000CE'::varchar, 60,
                            'NRML'::varchar),
                           ('PE', 'SELL', 'NFO', 'BANKNIFTY29DEC2652000PE', 60, 'NRML')$$,
                  'each leg keeps its symbol and quantity; product defaults to NRML');
SELECT is((SELECT product FROM pm.broker_orders WHERE client_order_id = 'pm-aaaaaaaa-Long_1'), 'NRML',
          'an order without a contract still says NRML');
SELECT throws_ok($$SELECT pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', 'y',
                   'fingerprint', 'f', 'position_id', 'p', 'instrument', 'GOLD_MINI', 'side', 'BUY', 'lots', 1,
                   'price', 1, 'exchange', 'MCX', 'symbol', 'GOLDM05JAN27FUT', 'quantity', 1, 'leg', 'FUT',
                   'product', 'INTRADAY')))$$, '23514', NULL, 'a product other than NRML, MIS or CNC is refused');
SELECT throws_ok($$SELECT pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', 'z',
                   'fingerprint', 'f', 'position_id', 'p', 'instrument', 'GOLD_MINI', 'side', 'BUY', 'lots', 1,
                   'price', 1, 'symbol', 'GOLDM05JAN27FUT', 'quantity', 1, 'leg', 'FUT')))$$, '23514', NULL,
                 'a symbol without its exchange is refused by broker_orders_contract_check');

-- paper fills a closing order only for a layer on paper (pm.layer_on_paper): the rule rollover uses too
SELECT pm.add_orders(jsonb_build_array(
    jsonb_build_object('client_order_id', 'pm-cccc-Long_1', 'fingerprint', repeat('c', 64), 'position_id',
                       'SILVER_MINI_Long_1', 'instrument', 'SILVER_MINI', 'side', 'BUY', 'lots', 1, 'price', 90000),
    jsonb_build_object('client_order_id', 'pm-dddd-Long_1', 'fingerprint', repeat('d', 64), 'position_id',
                       'SILVER_MINI_Long_1', 'instrument', 'SILVER_MINI', 'side', 'SELL', 'lots', 1, 'price', 91000)));
SELECT is(pm.layer_on_paper('SILVER_MINI_Long_1'), false, 'an entry not filled yet: not on paper');
SELECT results_eq($$SELECT client_order_id::text FROM pm.fill_paper_orders(ARRAY['pm-cccc-Long_1', 'pm-dddd-Long_1'])$$,
                  $$VALUES ('pm-cccc-Long_1'), ('pm-dddd-Long_1')$$,
                  'an entry and its exit in one paper batch: the entry first, then the exit of a layer now on paper');
UPDATE pm.broker_orders SET broker_order_id = 'OA-1' WHERE client_order_id = 'pm-aaaaaaaa-Long_1';
SELECT pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', 'pm-eeee-Long_1', 'fingerprint',
                     repeat('e', 64), 'position_id', 'GOLD_MINI_Long_1', 'instrument', 'GOLD_MINI', 'side', 'SELL',
                     'lots', 3, 'price', 78000)));
SELECT is(pm.layer_on_paper('GOLD_MINI_Long_1'), false, 'an entry linked to a broker''s order: at a broker');
SELECT is((SELECT count(*)::int FROM pm.fill_paper_orders(ARRAY['pm-eeee-Long_1'])), 0,
          'the exit of a layer traded at a broker is never paper-filled, whoever asks');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'pm-eeee-Long_1'), 'queued',
          'it stays queued for the broker sender');

SELECT * FROM finish();

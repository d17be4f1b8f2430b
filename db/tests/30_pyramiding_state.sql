-- pm.save_pyramiding_state / get / clear, and the base position foreign key.
SELECT plan(10);

SELECT pm.save_position(jsonb_build_object('position_id', 'GOLD_MINI_Long_1', 'instrument', 'GOLD_MINI',
    'entry_timestamp', now(), 'entry_price', 78000, 'lots', 5, 'quantity', 500, 'initial_stop', 77880,
    'current_stop', 77880, 'highest_close', 78000));

SELECT lives_ok($$SELECT pm.save_pyramiding_state('GOLD_MINI', 78000, 'GOLD_MINI_Long_1')$$, 'insert state');
SELECT results_eq($$SELECT instrument, last_pyramid_price, base_position_id FROM pm.get_pyramiding_state('GOLD_MINI')$$,
                  $$VALUES ('GOLD_MINI'::varchar, 78000.00::numeric, 'GOLD_MINI_Long_1'::varchar)$$, 'state read back');
SELECT lives_ok($$SELECT pm.save_pyramiding_state('GOLD_MINI', 78600, 'GOLD_MINI_Long_1')$$, 'upsert state');
SELECT is((SELECT last_pyramid_price FROM pm.get_pyramiding_state('GOLD_MINI')), 78600.00, 'upsert replaced the price');
SELECT lives_ok($$SELECT pm.save_pyramiding_state('COPPER', NULL, NULL)$$, 'state without a base');
SELECT is((SELECT count(*)::int FROM pm.get_pyramiding_state()), 2, 'NULL instrument lists every state');
SELECT throws_ok($$SELECT pm.save_pyramiding_state('SILVER_MINI', 90000, 'NO_SUCH_POSITION')$$, '23503', NULL,
                 'a base that does not exist is refused');
SELECT throws_ok($$SELECT pm.save_pyramiding_state(NULL, 1, NULL)$$, 'PM004', 'instrument is required', 'NULL instrument');
DELETE FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_1';
SELECT is((SELECT base_position_id FROM pm.get_pyramiding_state('GOLD_MINI')), NULL,
          'deleting the base sets base_position_id to NULL');
SELECT ok(pm.clear_pyramiding_state('GOLD_MINI') AND NOT pm.clear_pyramiding_state('GOLD_MINI'),
          'clear returns true once, then false');

SELECT * FROM finish();

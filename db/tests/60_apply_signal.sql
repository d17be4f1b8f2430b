-- pm.apply_signal / pm.apply_state / pm.load_state: a signal's claim and effects in one transaction.
SELECT plan(25);

CREATE FUNCTION pg_temp.sig(fp text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('fingerprint', fp, 'instrument', 'BANK_NIFTY', 'signal_type', 'BASE_ENTRY',
        'position', 'Long_1', 'signal_timestamp', '2025-11-28T05:00:00Z', 'processing_status', 'executed',
        'reason', 'entered 4 lots', 'payload', '{}'::jsonb, 'instance', 'inst-1');
$$;
CREATE FUNCTION pg_temp.effects() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('expected_version', NULL, 'doc', jsonb_build_object(
        'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'entry_timestamp', '2025-11-28T05:00:00Z',
        'entry_price', 52000, 'lots', 4, 'quantity', 120, 'initial_stop', 51650, 'current_stop', 51650,
        'highest_close', 52000, 'is_base_position', true)));
$$;

SELECT is(pm.apply_signal(pg_temp.sig(repeat('a', 64)), pg_temp.effects(),
          '[{"instrument": "BANK_NIFTY", "last_pyramid_price": 52000, "base_position_id": "BANK_NIFTY_Long_1"}]',
          '{"margin_used": 1080000}', 1),
          '{"new": true, "versions": {"BANK_NIFTY_Long_1": 1}, "portfolio_version": 2}'::jsonb,
          'a new signal writes its effects and returns the versions');
SELECT results_eq($$SELECT margin_used, version FROM pm.portfolio_state$$, $$VALUES (1080000.00::numeric, 2)$$,
                  'portfolio state written');
SELECT is((SELECT base_position_id FROM pm.get_pyramiding_state('BANK_NIFTY')), 'BANK_NIFTY_Long_1',
          'pyramiding state written');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('a', 64)), pg_temp.effects(), '[]', '{}', 2),
          '{"new": false, "portfolio_version": 2}'::jsonb,
          'a repeated fingerprint changes nothing (decided from the current version: no state sent)');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('b', 64)), '[]', '[]', '{"margin_used": 1}', 1) - 'state',
          '{"new": true, "stale": true, "portfolio_version": 2}'::jsonb,
          'a decision from an old portfolio version is refused and answered with the current version');
SELECT ok(NOT pm.is_duplicate_signal(repeat('b', 64)) AND (SELECT margin_used FROM pm.portfolio_state) = 1080000,
          'and nothing of the stale signal was written (no claim, no state)');
SELECT is(jsonb_array_length(pm.apply_signal(pg_temp.sig(repeat('b', 64)), '[]', '[]', '{}', 1)
                             -> 'state' -> 'positions'), 1, 'the stale answer carries the fresh state');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('a', 64)), '[]', '[]', '{}', 1) - 'state',
          '{"new": false, "portfolio_version": 2}'::jsonb,
          'a duplicate answers duplicate whatever version it was decided from');
SELECT is(jsonb_array_length(pm.apply_signal(pg_temp.sig(repeat('a', 64)), '[]', '[]', '{}', 1)
                             -> 'state' -> 'positions'), 1,
          'a duplicate decided from an old version carries the fresh state (the caller refreshes its copy)');
SELECT throws_ok($$SELECT pm.apply_signal(NULL, '[]', '[]', '{}', 2)$$, 'PM004', 'signal must be a JSON object',
                 'NULL signal');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('c', 64)) || jsonb_build_object('orders', jsonb_build_array(
              jsonb_build_object('client_order_id', 'pm-c-Long_2', 'fingerprint', repeat('c', 64),
                                 'position_id', 'BANK_NIFTY_Long_2', 'instrument', 'BANK_NIFTY', 'side', 'BUY',
                                 'lots', 2, 'price', 52800))), '[]', '[]', '{}', 2) -> 'portfolio_version',
          '3'::jsonb, 'a signal with orders commits');
SELECT results_eq($$SELECT client_order_id, status FROM pm.broker_orders$$,
                  $$VALUES ('pm-c-Long_2'::varchar, 'queued'::varchar)$$,
                  'its orders are in the outbox, queued, in the same transaction');
SELECT is(pm.apply_state('[]', '[{"instrument": "BANK_NIFTY", "clear": true}]', '{}', 3), 4,
          'apply_state writes outside a signal, version-checked');
SELECT is(jsonb_array_length(pm.load_state() -> 'positions'), 1, 'load_state returns the open position');

SELECT is(pm.lock_for_decision(repeat('a', 64), 4), '{"duplicate": true, "portfolio_version": 4}'::jsonb,
          'lock_for_decision: a logged fingerprint is a duplicate');
SELECT ok(pm.lock_for_decision(repeat('a', 64), 3) ? 'state',
          'lock_for_decision: a duplicate from an old version carries the fresh state');
SELECT is(pm.lock_for_decision(repeat('d', 64), 4), '{"duplicate": false, "portfolio_version": 4}'::jsonb,
          'lock_for_decision: an unchanged portfolio sends no state');
SELECT is(jsonb_array_length(pm.lock_for_decision(repeat('d', 64), 1) -> 'state' -> 'positions'), 1,
          'lock_for_decision: a moved portfolio sends the fresh state');
SELECT is(current_setting('idle_in_transaction_session_timeout'), '2s',
          'lock_for_decision: a session idling in the locked transaction is ended after 2 s');

SELECT is(pm.state_if_moved(4), '{"portfolio_version": 4}'::jsonb,
          'state_if_moved: a current version is proven current, no state sent');
SELECT is(pm.state_if_moved(3) -> 'state', pm.load_state(),
          'state_if_moved: an older version gets the whole state, as load_state has it');

-- issue 29: closed equity is derived from the realized P&L of what a signal closes
CREATE FUNCTION pg_temp.exit_sig(fp text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT pg_temp.sig(fp) || '{"signal_type": "EXIT", "reason": "closed Long_1"}'::jsonb;
$$;
CREATE FUNCTION pg_temp.close(pnl numeric) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('expected_version', 1, 'doc', jsonb_build_object(
        'position_id', 'BANK_NIFTY_Long_1', 'status', 'closed', 'exit_price', 52500, 'exit_reason', 'SIGNAL',
        'exit_timestamp', '2025-11-28T06:00:00Z', 'realized_pnl', pnl, 'unrealized_pnl', 0)));
$$;
SELECT throws_ok($$SELECT pm.apply_signal(pg_temp.exit_sig(repeat('e', 64)), pg_temp.close(60000.004), '[]',
                   jsonb_build_object('closed_equity', (SELECT closed_equity + 60001 FROM pm.portfolio_state)), 4)$$,
                 'PM094', NULL, 'a closed equity that is not the book''s plus the realized P&L closed is refused');
SELECT ok(NOT pm.is_duplicate_signal(repeat('e', 64)), 'and nothing of that signal is written');
SELECT lives_ok($$SELECT pm.apply_signal(pg_temp.exit_sig(repeat('e', 64)), pg_temp.close(60000.004), '[]',
                  jsonb_build_object('closed_equity', (SELECT closed_equity + 60000.004 FROM pm.portfolio_state),
                                     'equity_high', 1), 4)$$,
                'the engine''s own sum (unrounded, as it adds) is accepted');
SELECT results_eq($$SELECT closed_equity - (SELECT closed_equity FROM pm.portfolio_history ORDER BY history_id DESC
                                             OFFSET 1 LIMIT 1), equity_high >= closed_equity FROM pm.portfolio_state$$,
                  $$VALUES (60000.00::numeric, true)$$,
                  'closed equity moved by the realized P&L (rounded once to paise); equity_high is the book''s');

SELECT * FROM finish();

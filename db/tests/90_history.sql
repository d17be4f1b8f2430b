-- History (migration 003, functions 90_history.sql): written by triggers in the transaction of each
-- change, append-only, the book as of any time, the equity curve.
SELECT plan(24);

CREATE TEMP TABLE marks (name text PRIMARY KEY, t timestamptz NOT NULL);
CREATE FUNCTION pg_temp.mark(p_name text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO marks VALUES (p_name, clock_timestamp());
$$;
CREATE FUNCTION pg_temp.at(p_name text) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT t FROM marks WHERE name = p_name;
$$;
CREATE FUNCTION pg_temp.sig(fp text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('fingerprint', fp, 'instrument', 'BANK_NIFTY', 'signal_type', 'BASE_ENTRY',
        'position', 'Long_1', 'signal_timestamp', '2025-11-28T05:00:00Z', 'processing_status', 'executed',
        'reason', 'entered 4 lots', 'payload', '{}'::jsonb, 'instance', 'inst-1');
$$;
CREATE FUNCTION pg_temp.entry() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('expected_version', NULL, 'doc', jsonb_build_object(
        'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'entry_timestamp', '2025-11-28T05:00:00Z',
        'entry_price', 52000, 'lots', 4, 'quantity', 120, 'initial_stop', 51650, 'current_stop', 51650,
        'highest_close', 52000, 'is_base_position', true, 'unrealized_pnl', 96000, 'initial_risk', 42000)));
$$;

SELECT has_table('pm', 'position_history', 'position history table');
SELECT has_table('pm', 'portfolio_history', 'portfolio history table');
SELECT has_table('pm', 'pyramiding_history', 'pyramiding history table');
SELECT results_eq($$SELECT count(*)::int, count(fingerprint)::int, min(closed_equity) FROM pm.portfolio_history$$,
                  $$VALUES (1, 0, 5000000.00::numeric)$$, 'history starts with a seed row of the portfolio');

SELECT pg_temp.mark('before');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('a', 64)), pg_temp.entry(),
          '[{"instrument": "BANK_NIFTY", "last_pyramid_price": 52000, "base_position_id": "BANK_NIFTY_Long_1"}]',
          '{"margin_used": 1080000, "blended_weight": 0.5}', 1) -> 'portfolio_version', '2'::jsonb,
          'a signal commits');
SELECT pg_temp.mark('entered');
SELECT results_eq($$SELECT operation, position_id::text, version, fingerprint::text FROM pm.position_history$$,
                  $$VALUES ('insert'::varchar, 'BANK_NIFTY_Long_1', 1, repeat('a', 64))$$,
                  'the new position has its history row, with the signal''s fingerprint');
SELECT results_eq($$SELECT version, closed_equity, unrealized_pnl, open_equity, blended_equity, fingerprint::text
                      FROM pm.portfolio_history WHERE fingerprint IS NOT NULL$$,
                  $$VALUES (2, 5000000.00::numeric, 96000.00::numeric, 5096000.00::numeric, 5048000.00::numeric,
                            repeat('a', 64))$$,
                  'the portfolio version has its history row with closed, open and blended equity');
SELECT is((SELECT count(*)::int FROM pm.pyramiding_history WHERE fingerprint = repeat('a', 64)), 1,
          'the pyramiding state has its history row');

SELECT throws_ok($$SELECT pm.apply_signal(pg_temp.sig(repeat('b', 64)),
                   '[{"expected_version": null, "doc": {"position_id": "GOLD_MINI_Long_1", "lots": -1}}]', '[]', '{}', 2)$$,
                 '23502', NULL, 'a signal whose effects fail ...');
SELECT is((SELECT count(*)::int FROM pm.position_history WHERE fingerprint = repeat('b', 64)), 0,
          '... leaves no history row: history exists only for what committed');

SELECT is(pm.save_position('{"position_id": "BANK_NIFTY_Long_1", "current_stop": 51900}', 1), 2,
          'a stop update outside any signal');
SELECT results_eq($$SELECT version, fingerprint FROM pm.position_history WHERE operation = 'update'$$,
                  $$VALUES (2, NULL::varchar)$$, 'is kept too, with no fingerprint');
SELECT pg_temp.mark('trailed');

SELECT throws_ok($$UPDATE pm.position_history SET version = 9$$, 'PM007', NULL, 'history rows cannot be updated');
SELECT throws_ok($$DELETE FROM pm.portfolio_history$$, 'PM007', NULL, 'history rows cannot be deleted');
SELECT throws_ok($$TRUNCATE pm.pyramiding_history$$, 'PM007', NULL, 'history cannot be truncated');

SELECT throws_ok($$SELECT pm.state_as_of(NULL)$$, 'PM004', 't is required', 'state_as_of: t is required');
SELECT throws_ok($$SELECT pm.state_as_of('-infinity')$$, 'PM006', NULL,
                 'state_as_of: a time before history began is refused, not answered empty');
SELECT is(pm.state_as_of(clock_timestamp()), pm.load_state(), 'state_as_of(now) is load_state()');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at('before')) -> 'positions'), 0,
          'state_as_of before the signal: no position');
SELECT is(pm.state_as_of(pg_temp.at('entered')) #>> '{positions,0,current_stop}', '51650.00',
          'state_as_of between the entry and the stop update: the stop as it was then');

SELECT pm.clear_pyramiding_state('BANK_NIFTY');
SELECT is(jsonb_array_length(pm.state_as_of(clock_timestamp()) -> 'pyramiding'), 0,
          'a cleared pyramiding state is gone from later states');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at('trailed')) -> 'pyramiding'), 1, 'but not from earlier ones');

SELECT results_eq($$SELECT version, fingerprint::text FROM pm.equity_curve() ORDER BY recorded_at$$,
                  $$VALUES (1, NULL), (2, repeat('a', 64))$$, 'equity_curve: one point per portfolio version');
SELECT throws_ok($$SELECT * FROM pm.equity_curve(now(), now() - interval '1 day')$$, 'PM004', NULL,
                 'equity_curve: from after to is refused');

SELECT * FROM finish();

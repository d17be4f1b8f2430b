-- pm.instant (05_instants.sql): one instant per writer call, on the signal log, every history row,
-- the equity curve and the trades; state_as_of at that instant includes the change, 1 µs before does not.
SELECT plan(16);

CREATE FUNCTION pg_temp.sig(fp text, kind text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('fingerprint', fp, 'instrument', 'BANK_NIFTY', 'signal_type', kind,
        'position', 'Long_1', 'signal_timestamp', '2025-11-28T05:00:00Z', 'processing_status', 'executed',
        'reason', 'test', 'payload', '{}'::jsonb, 'instance', 'inst-1');
$$;
CREATE FUNCTION pg_temp.at(fp text) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT processed_at FROM pm.signal_log WHERE fingerprint = fp;
$$;

SELECT is(pm.apply_signal(pg_temp.sig(repeat('a', 64), 'BASE_ENTRY'),
          jsonb_build_array(jsonb_build_object('expected_version', NULL, 'doc', jsonb_build_object(
              'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY',
              'entry_timestamp', '2025-11-28T05:00:00Z', 'entry_price', 52000, 'lots', 4, 'quantity', 120,
              'initial_stop', 51650, 'current_stop', 51650, 'highest_close', 52000, 'is_base_position', true,
              'unrealized_pnl', 0, 'initial_risk', 42000,
              'entered_at', '2001-01-01T00:00:00Z', 'exited_at', '2001-01-01T00:00:00Z'))),
          '[{"instrument": "BANK_NIFTY", "last_pyramid_price": 52000, "base_position_id": "BANK_NIFTY_Long_1"}]',
          '{"margin_used": 1080000}', 1) -> 'portfolio_version', '2'::jsonb, 'an entry commits');
SELECT ok(pg_temp.at(repeat('a', 64)) > '2001-01-02', 'a document''s entered_at is ignored: the database owns it');
SELECT is((SELECT array_agg(DISTINCT recorded_at) FROM pm.position_history WHERE fingerprint = repeat('a', 64)),
          ARRAY[pg_temp.at(repeat('a', 64))], 'its position history row carries the signal''s processed_at');
SELECT is((SELECT array_agg(DISTINCT recorded_at) FROM pm.portfolio_history WHERE fingerprint = repeat('a', 64)),
          ARRAY[pg_temp.at(repeat('a', 64))], 'its portfolio history row too');
SELECT is((SELECT array_agg(DISTINCT recorded_at) FROM pm.pyramiding_history WHERE fingerprint = repeat('a', 64)),
          ARRAY[pg_temp.at(repeat('a', 64))], 'its pyramiding history row too');
SELECT is((SELECT recorded_at FROM pm.equity_curve() WHERE fingerprint = repeat('a', 64)),
          pg_temp.at(repeat('a', 64)), 'its equity-curve point too');
SELECT results_eq($$SELECT entered_at, exited_at, updated_at FROM pm.portfolio_positions$$,
                  $$SELECT pg_temp.at(repeat('a', 64)), NULL::timestamptz, pg_temp.at(repeat('a', 64))$$,
                  'and the position''s entered_at and updated_at');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at(repeat('a', 64))) -> 'positions'), 1,
          'state_as_of(its processed_at) holds the position it opened');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at(repeat('a', 64)) - interval '1 microsecond') -> 'positions'), 0,
          'state_as_of(1 µs before) does not');

SELECT is(pm.apply_signal(pg_temp.sig(repeat('b', 64), 'EXIT'),
          '[{"expected_version": 1, "doc": {"position_id": "BANK_NIFTY_Long_1", "status": "closed",
             "exit_timestamp": "2025-11-28T06:00:00Z", "exit_price": 52500, "exit_reason": "SIGNAL",
             "realized_pnl": 60000, "unrealized_pnl": 0}}]',
          '[{"instrument": "BANK_NIFTY", "clear": true}]', '{"closed_equity": 5060000, "margin_used": 0}', 2)
          -> 'portfolio_version', '3'::jsonb, 'the exit commits (a later statement of the same transaction)');
SELECT ok(pg_temp.at(repeat('b', 64)) > pg_temp.at(repeat('a', 64)),
          'each writer call takes its own instant, in commit order');
SELECT results_eq($$SELECT entry_time, exit_time FROM pm.trades()$$,
                  $$SELECT pg_temp.at(repeat('a', 64)), pg_temp.at(repeat('b', 64))$$,
                  'the trade''s entry and exit times are the processed_at of the signals that opened and closed it');
SELECT is((SELECT count(*)::int FROM pm.trades(pg_temp.at(repeat('b', 64)), pg_temp.at(repeat('b', 64)))), 1,
          'trades from/to that instant find it');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at(repeat('b', 64))) -> 'positions'), 0,
          'state_as_of(the exit''s processed_at) has the position closed');
SELECT is(jsonb_array_length(pm.state_as_of(pg_temp.at(repeat('b', 64)) - interval '1 microsecond') -> 'positions'), 1,
          'and 1 µs before, still open');

CREATE TEMP TABLE mode_change AS SELECT pm.set_trading_mode('exits_only', 'test', 'pgtap') AS row;
SELECT is((SELECT (row ->> 'changed_at')::timestamptz FROM mode_change),
          (SELECT changed_at FROM pm.trading_control_history ORDER BY version DESC LIMIT 1),
          'a control change carries one instant in its row and its history');

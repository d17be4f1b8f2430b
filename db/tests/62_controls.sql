-- Trading controls (functions 62_controls.sql): the mode, breakers at their exact thresholds, locks,
-- and pm.apply_signal obeying them. Signal times are bar times; IST day 2025-11-28 runs from
-- 2025-11-27T18:30Z to 2025-11-28T18:30Z.
SELECT plan(32);

CREATE FUNCTION pg_temp.sig(fp text, kind text, instrument text, at text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('fingerprint', fp, 'instrument', instrument, 'signal_type', kind,
        'position', CASE kind WHEN 'EXIT' THEN 'ALL' WHEN 'PYRAMID' THEN 'Long_2' ELSE 'Long_1' END,
        'signal_timestamp', at, 'processing_status', 'executed', 'reason', 'test', 'payload', '{}'::jsonb,
        'instance', 'inst-1');
$$;
CREATE FUNCTION pg_temp.entry(fp text, instrument text, at text) RETURNS boolean LANGUAGE sql AS $$
    SELECT pm.log_signal(fp, instrument, 'BASE_ENTRY', 'Long_1', at::timestamptz, 'executed', 'test', '{}', 'i');
$$;
CREATE FUNCTION pg_temp.closed_trade(id text, exit_at text, pnl numeric) RETURNS integer LANGUAGE sql AS $$
    SELECT pm.save_position(jsonb_build_object('position_id', id, 'instrument', 'COPPER', 'status', 'closed',
        'entry_timestamp', '2025-11-28T03:00:00Z', 'entry_price', 800, 'lots', 1, 'quantity', 2500,
        'initial_stop', 790, 'current_stop', 790, 'highest_close', 800, 'exit_timestamp', exit_at,
        'exit_price', 800 + pnl / 2500, 'exit_reason', 'SIGNAL', 'realized_pnl', pnl), NULL);
$$;

-- the mode
SELECT is(pm.get_trading_mode() ->> 'mode', 'active', 'trading starts active');
SELECT throws_ok($$SELECT pm.set_trading_mode('paused', 'x', 'cli:me')$$, 'PM004',
                 'mode must be active, exits_only or halted, got paused', 'an unknown mode is refused');
SELECT throws_ok($$SELECT pm.set_trading_mode('exits_only', ' ', 'cli:me')$$, 'PM004',
                 'reason is required to pause trading', 'pausing needs a reason');
SELECT throws_ok($$SELECT pm.set_trading_mode('halted', 'x', NULL)$$, 'PM004', 'changed_by is required',
                 'who changes the mode is required');
SELECT is(pm.set_trading_mode('exits_only', 'RBI policy', 'cli:me') - 'changed_at',
          '{"mode": "exits_only", "reason": "RBI policy", "changed_by": "cli:me", "version": 2}'::jsonb,
          'pause: exits only, with who and why');
SELECT results_eq($$SELECT mode::text, changed_by FROM pm.trading_mode_history(5)$$,
                  $$VALUES ('exits_only', 'cli:me'), ('active', 'migration 004')$$, 'every change is recorded');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('a', 64), 'BASE_ENTRY', 'BANK_NIFTY', '2025-11-28T04:00:00Z')),
          'trading paused (exits only): RBI policy', 'exits only blocks an entry');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('a', 64), 'PYRAMID', 'BANK_NIFTY', '2025-11-28T04:00:00Z')),
          'trading paused (exits only): RBI policy', 'exits only blocks a pyramid');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('a', 64), 'EXIT', 'BANK_NIFTY', '2025-11-28T04:00:00Z')), NULL,
          'exits only lets an exit through');
SELECT pm.set_trading_mode('halted', 'broker down', 'dashboard:1.2.3.4');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('a', 64), 'EXIT', 'BANK_NIFTY', '2025-11-28T04:00:00Z')),
          'trading paused (halted): broker down', 'halted blocks an exit too');
SELECT is(pm.apply_signal(pg_temp.sig(repeat('b', 64), 'BASE_ENTRY', 'BANK_NIFTY', '2025-11-28T04:00:00Z'),
          '[{"expected_version": null, "doc": {"position_id": "BANK_NIFTY_Long_1"}}]', '[]', '{}', 99),
          '{"new": true, "blocked": true, "reason": "trading paused (halted): broker down", "portfolio_version": 1}'::jsonb,
          'apply_signal in halted mode: blocked, whatever the decision and its version');
SELECT results_eq($$SELECT processing_status::text, reason FROM pm.signal_log WHERE fingerprint = repeat('b', 64)$$,
                  $$VALUES ('blocked', 'trading paused (halted): broker down')$$,
                  'its fingerprint is logged blocked with the reason (the alert is consumed)');
SELECT is((SELECT count(*)::int FROM pm.portfolio_positions), 0, 'and nothing of its decision was written');
SELECT pm.set_trading_mode('active', NULL, 'cli:me');

-- breaker settings
SELECT throws_ok($$SELECT pm.set_breakers('{"bogus": 1}', 'cli:me')$$, 'PM004', 'unknown breaker setting(s): bogus',
                 'an unknown breaker setting is refused');
SELECT throws_ok($$SELECT pm.set_breakers('{"cooling_off_losses": 2}', 'cli:me')$$, '23514', NULL,
                 'cooling-off needs both of its settings');
SELECT is(pm.set_breakers('{"max_entries_per_day": 2, "cooling_off_losses": 2, "cooling_off_hours": 4}', 'cli:me')
          - 'updated_at', '{"daily_loss_pct": null, "max_entries_per_day": 2, "cooling_off_losses": 2,
                            "cooling_off_hours": 4.00, "updated_by": "cli:me"}'::jsonb, 'breakers set');

-- max entries per instrument per IST day: 2
SELECT pg_temp.entry(repeat('c', 64), 'BANK_NIFTY', '2025-11-27T18:30:00Z');  -- 28 Nov 00:00 IST: that day
SELECT is(pm.control_blocks(pg_temp.sig(repeat('d', 64), 'BASE_ENTRY', 'BANK_NIFTY', '2025-11-28T04:00:00Z')), NULL,
          'max entries: 1 of 2 entries today, the second may go');
SELECT pg_temp.entry(repeat('e', 64), 'BANK_NIFTY', '2025-11-28T03:00:00Z');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('d', 64), 'PYRAMID', 'BANK_NIFTY', '2025-11-28T04:00:00Z')),
          'instrument BANK_NIFTY locked until 2025-11-28T18:30:00Z: max 2 entries per day reached',
          'max entries: at exactly 2 the next entry is blocked, locked until the next IST midnight');
SELECT results_eq($$SELECT instrument::text, source FROM pm.active_locks('2025-11-28T05:00:00Z')$$,
                  $$VALUES ('BANK_NIFTY', 'breaker:max_entries')$$, 'the lock is listed with its source');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('d', 64), 'BASE_ENTRY', 'GOLD_MINI', '2025-11-28T04:00:00Z')), NULL,
          'another instrument is not locked');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('d', 64), 'BASE_ENTRY', 'BANK_NIFTY', '2025-11-28T18:30:00Z')), NULL,
          'the next IST day starts free');

-- cooling off: 2 losing trades in a row, 4 hours from the last exit
SELECT pg_temp.closed_trade('COPPER_Long_1@1', '2025-11-28T05:00:00Z', -2500);
SELECT is(pm.control_blocks(pg_temp.sig(repeat('f', 64), 'BASE_ENTRY', 'COPPER', '2025-11-28T06:30:00Z')), NULL,
          'cooling off: one loss is not two');
SELECT pg_temp.closed_trade('COPPER_Long_1@2', '2025-11-28T06:00:00Z', -5000);
SELECT is(pm.control_blocks(pg_temp.sig(repeat('f', 64), 'BASE_ENTRY', 'COPPER', '2025-11-28T09:59:59Z')),
          'instrument COPPER locked until 2025-11-28T10:00:00Z: cooling off after 2 losing trades in a row',
          'cooling off: two losses, one second before the 4 hours end: locked until then');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('f', 64), 'BASE_ENTRY', 'COPPER', '2025-11-28T10:00:00Z')), NULL,
          'cooling off: at exactly 4 hours the base goes');
SELECT pg_temp.closed_trade('COPPER_Long_1@3', '2025-11-28T11:00:00Z', 0);
SELECT is(pm.control_blocks(pg_temp.sig(repeat('f', 64), 'BASE_ENTRY', 'COPPER', '2025-11-28T11:30:00Z')), NULL,
          'cooling off: a break-even trade ends the losing run');

-- operator locks
SELECT ok(pm.lock_instrument('gold_mini', '2025-11-28T08:00:00Z', 'broker statement check', 'cli:me') > 0,
          'an operator lock');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('g', 64), 'BASE_ENTRY', 'GOLD_MINI', '2025-11-28T07:59:59Z')),
          'instrument GOLD_MINI locked until 2025-11-28T08:00:00Z: broker statement check',
          'blocks new bases until it ends');
SELECT is(pm.unlock_instrument('GOLD_MINI', 'cli:me'), 1, 'unlock releases it');

-- daily loss: 2 % below the open equity before the day's first signal
SELECT pm.set_breakers('{"daily_loss_pct": 2}', 'cli:me');
SELECT is(pm.control_blocks(pg_temp.sig(repeat('h', 64), 'EXIT', 'COPPER', '2025-11-29T04:00:00Z')), NULL,
          'daily loss: the day''s first signal records its start (5,000,000)');
SELECT pm.save_portfolio_state('{"closed_equity": 4900000}', (SELECT version FROM pm.portfolio_state));
SELECT is(pm.control_blocks(pg_temp.sig(repeat('h', 64), 'BASE_ENTRY', 'COPPER', '2025-11-29T05:00:00Z')), NULL,
          'daily loss: exactly 2 % below is not more than 2 %');
SELECT pm.save_portfolio_state('{"closed_equity": 4899999.99}', (SELECT version FROM pm.portfolio_state));
SELECT is(pm.control_blocks(pg_temp.sig(repeat('h', 64), 'BASE_ENTRY', 'COPPER', '2025-11-29T06:00:00Z')),
          'trading paused (exits only): daily loss limit: open equity 4899999.99 is 2.00% below the day''s start '
          '5000000.00 (limit 2.000%)', 'daily loss: one paisa more and entries stop');
SELECT is(pm.get_trading_mode() ->> 'changed_by', 'breaker:daily_loss', 'the mode is now exits only, set by the breaker');

SELECT * FROM finish();

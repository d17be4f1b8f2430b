-- Capital in and out (functions 64_capital.sql, migration 009): a deposit moves closed equity and
-- equity_high by the amount with its ledger and history rows; the refusals at their exact thresholds,
-- each writing nothing; the ledger is append-only; statistics keep flows out of trading figures.
-- The book starts at the migration's 5,000,000 closed equity, version 1, no margin in use.
SELECT plan(39);

-- what a refusal must leave unchanged: ledger rows, the portfolio row, its history
CREATE FUNCTION pg_temp.footprint() RETURNS text LANGUAGE sql AS $$
    SELECT format('%s flows, version %s, closed %s, high %s, %s history rows',
                  (SELECT count(*) FROM pm.capital_flows), s.version, s.closed_equity, s.equity_high,
                  (SELECT count(*) FROM pm.portfolio_history))
      FROM pm.portfolio_state s;
$$;
CREATE FUNCTION pg_temp.closed_trade(id text, pnl numeric) RETURNS integer LANGUAGE sql AS $$
    SELECT pm.save_position(jsonb_build_object('position_id', id, 'instrument', 'COPPER', 'status', 'closed',
        'entry_timestamp', '2025-11-28T03:00:00Z', 'entry_price', 800, 'lots', 1, 'quantity', 2500,
        'initial_stop', 790, 'current_stop', 790, 'highest_close', 800, 'exit_timestamp', '2025-11-28T05:00:00Z',
        'exit_price', 800 + pnl / 2500, 'exit_reason', 'SIGNAL', 'realized_pnl', pnl, 'initial_risk', 25000), NULL);
$$;

SELECT has_table('pm', 'capital_flows', 'migration 009 adds the capital ledger');

-- a deposit
SELECT is(pm.record_capital_flow('deposit', 1000000, ' top-up from savings ', 'cli:me@desk') - 'id' - 'recorded_at'
          - 'history_id',
          '{"kind": "deposit", "amount": 1000000.00, "signed_amount": 1000000.00, "note": "top-up from savings",
            "recorded_by": "cli:me@desk", "closed_equity": 6000000.00, "portfolio_version": 2,
            "equity_high": 6000000.00}'::jsonb,
          'deposit: answered with its ledger row, the closed equity and equity_high after it');
SELECT results_eq($$SELECT closed_equity, equity_high, version FROM pm.portfolio_state$$,
                  $$VALUES (6000000.00::numeric, 6000000.00::numeric, 2)$$,
                  'deposit: closed equity and equity_high rise by the amount, the portfolio version moves');
SELECT results_eq($$SELECT kind::text, amount, signed_amount, note, recorded_by, portfolio_version FROM pm.capital_flows$$,
                  $$VALUES ('deposit', 1000000.00::numeric, 1000000.00::numeric, 'top-up from savings', 'cli:me@desk', 2)$$,
                  'deposit: one ledger row with amount, note and who');
SELECT results_eq($$SELECT closed_equity, fingerprint::text FROM pm.portfolio_history WHERE version = 2$$,
                  $$VALUES (6000000.00::numeric, NULL::text)$$,
                  'deposit: the portfolio history has the new version, with no fingerprint');
SELECT results_eq($$SELECT version, fingerprint::text, flow FROM pm.equity_curve() ORDER BY recorded_at DESC LIMIT 1$$,
                  $$VALUES (2, NULL::text, 1000000.00::numeric)$$,
                  'deposit: its equity point is marked as a flow (+ the amount), with no fingerprint');
SELECT ok((SELECT f.xmin::text = s.xmin::text AND f.xmin::text = h.xmin::text
                  AND f.recorded_at = s.updated_at AND h.recorded_at = f.recorded_at
             FROM pm.capital_flows f, pm.portfolio_state s, pm.portfolio_history h WHERE h.version = 2),
          'deposit: ledger row, portfolio row and history row written by one transaction, with one instant');

-- the refusals: each names the amount, and writes nothing
SELECT pg_temp.footprint() AS before \gset
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 0, NULL, 'cli:me@desk')$$, 'PM060',
                 'amount must be a positive number of rupees with at most two decimals (below 10^13), got 0',
                 'a zero amount is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('withdrawal', -5, NULL, 'cli:me@desk')$$, 'PM060', NULL,
                 'a negative amount is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 100.001, NULL, 'cli:me@desk')$$, 'PM060',
                 'amount must be a positive number of rupees with at most two decimals (below 10^13), got 100.001',
                 'a third decimal is refused (not rounded)');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 'NaN', NULL, 'cli:me@desk')$$, 'PM060', NULL,
                 'NaN is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 'Infinity', NULL, 'cli:me@desk')$$, 'PM060', NULL,
                 'Infinity is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 1e13, NULL, 'cli:me@desk')$$, 'PM060', NULL,
                 'an amount that does not fit the ledger is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', NULL, NULL, 'cli:me@desk')$$, 'PM004', 'amount is required',
                 'a missing amount is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('gift', 10, NULL, 'cli:me@desk')$$, 'PM004',
                 'kind must be deposit or withdrawal, got gift', 'an unknown kind is refused');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 10, NULL, ' ')$$, 'PM004', 'recorded_by is required',
                 'who records the flow is required');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 10, repeat('x', 501), 'cli:me@desk')$$, 'PM063',
                 'note is longer than 500 characters (501)', 'a note over 500 characters is refused');
SELECT is(pg_temp.footprint(), :'before', 'none of those refusals wrote anything');

-- withdrawals at the margin in use: closed equity 5,800,000 (a loss), margin in use 1,000,000
SELECT pm.save_portfolio_state('{"closed_equity": 5800000, "margin_used": 1000000}', 2);
SELECT pg_temp.footprint() AS before_margin \gset
SELECT throws_ok($$SELECT pm.record_capital_flow('withdrawal', 4800000.01, NULL, 'cli:me@desk')$$, 'PM061',
                 'withdrawal of 4800000.01 would leave closed equity 999999.99 below the margin in use 1000000.00',
                 'a withdrawal one paisa below the margin in use is refused');
SELECT is(pg_temp.footprint(), :'before_margin', 'and it wrote nothing');
SELECT is(pm.record_capital_flow('withdrawal', 4800000.00, 'profit out', 'dashboard:10.0.0.5')
          - 'id' - 'recorded_at' - 'note' - 'recorded_by' - 'history_id',
          '{"kind": "withdrawal", "amount": 4800000.00, "signed_amount": -4800000.00, "closed_equity": 1000000.00,
            "portfolio_version": 4, "equity_high": 1200000.00}'::jsonb,
          'a withdrawal exactly down to the margin in use succeeds; equity_high falls by the amount too');
SELECT is(pg_temp.footprint(), '2 flows, version 4, closed 1000000.00, high 1200000.00, 4 history rows',
          'the withdrawal: ledger row, portfolio and history moved together');
SELECT is((SELECT count(*)::int FROM pm.capital_flows f JOIN pm.portfolio_history h ON h.history_id = f.history_id
            WHERE h.version = f.portfolio_version AND h.closed_equity = f.closed_equity AND h.recorded_at = f.recorded_at),
          2, 'each flow names its own equity point (history_id, migration 017): its version, equity and instant');

-- statistics: a trading gain of 100,000 after the withdrawal, trades of -200,000 and +100,000
SELECT pm.save_portfolio_state('{"closed_equity": 1100000}', 4);
SELECT pg_temp.closed_trade('COPPER_Long_1@20251128T030000Z', -200000);
SELECT pg_temp.closed_trade('COPPER_Long_1', 100000);
SELECT results_eq($$SELECT version, flow FROM pm.equity_curve() ORDER BY recorded_at$$,
                  $$VALUES (1, NULL::numeric), (2, 1000000.00), (3, NULL), (4, -4800000.00), (5, NULL)$$,
                  'equity curve: the flows are marked on their points, the other points carry none');
SELECT is(pm.trade_stats() - 'by_instrument' - 'wins' - 'losses' - 'win_rate' - 'gross_profit' - 'gross_loss'
          - 'profit_factor' - 'mean_r' - 'total_slippage' - 'mean_slippage', jsonb_build_object(
          'trades', 2, 'net_pnl', -100000.00, 'expectancy', -50000.00,
          'deposits', 1000000.00, 'withdrawals', 4800000.00, 'net_flows', -3800000.00,
          'max_drawdown', 200000.00, 'max_drawdown_pct', 4.0000, 'max_open_drawdown', 200000.00,
          'max_open_drawdown_pct', 4.0000, 'final_closed_equity', 1100000.00, 'time_weighted_return', 6.3333),
          'trade_stats: net P&L from the trades alone; drawdown on the trading curve (5,000,000 -> 4,800,000, '
          'not 6,000,000 -> 1,000,000); return 5.8/6 x 1.1/1.0 - 1, chained across the flows');
SELECT is(pm.trade_stats() -> 'by_instrument' -> 'COPPER' -> 'deposits', 'null'::jsonb,
          'trade_stats by instrument: flows belong to the whole book only');
SELECT is(pm.trade_stats((SELECT recorded_at FROM pm.portfolio_history WHERE version = 3), NULL)
          -> 'withdrawals', '4800000.00'::jsonb, 'trade_stats in a range: the flows inside it');
SELECT is(pm.trade_stats((SELECT recorded_at FROM pm.portfolio_history WHERE version = 4) + interval '1 microsecond',
                         NULL) -> 'net_flows', '0.00'::jsonb,
          'trade_stats in a range: a flow before it is the starting point, not a flow of the range');
SELECT is(pm.capital_totals(), '{"deposits": 1000000.00, "withdrawals": 4800000.00, "net_flows": -3800000.00}'::jsonb,
          'capital_totals: deposits, withdrawals, net');
SELECT results_eq($$SELECT kind::text FROM pm.capital_ledger(1)$$, $$VALUES ('withdrawal')$$,
                  'capital_ledger: newest first, limited');
SELECT is((SELECT count(*)::int FROM pm.capital_ledger()), 2, 'capital_ledger: all flows without a limit');

-- below zero: no margin in use, closed equity 1,100,000
SELECT pm.save_portfolio_state('{"margin_used": 0}', 5);
SELECT pg_temp.footprint() AS before_zero \gset
SELECT throws_ok($$SELECT pm.record_capital_flow('withdrawal', 1100000.01, NULL, 'cli:me@desk')$$, 'PM062',
                 'withdrawal of 1100000.01 would leave closed equity -0.01 below zero',
                 'a withdrawal one paisa more than closed equity is refused');
SELECT is(pg_temp.footprint(), :'before_zero', 'and it wrote nothing');
SELECT is(pm.record_capital_flow('withdrawal', 1100000, NULL, 'cli:me@desk') -> 'closed_equity', '0.00'::jsonb,
          'withdrawing everything (nothing open) succeeds');
SELECT is(pm.trade_stats() -> 'time_weighted_return', 'null'::jsonb,
          'time-weighted return: none once a sub-period starts at zero equity');
SELECT is(pm.time_weighted_return('[[100, 0], [110, 0], [160, 50], [80, -100], [88, 0]]'), 36.1250,
          'time_weighted_return: 110/100 x 180/160 x 88/80 - 1');

-- append-only, even for the owner
SELECT throws_ok($$UPDATE pm.capital_flows SET amount = 1$$, 'PM007', 'capital_flows is append-only: UPDATE refused',
                 'the ledger refuses UPDATE');
SELECT throws_ok($$DELETE FROM pm.capital_flows$$, 'PM007', NULL, 'the ledger refuses DELETE');
SELECT throws_ok($$TRUNCATE pm.capital_flows$$, 'PM007', NULL, 'the ledger refuses TRUNCATE');

SELECT * FROM finish();

-- Statistics (functions 95_statistics.sql): trades, P&L by IST period and trade statistics, on four
-- hand-computed trades: BANK_NIFTY base +180,000 (R 4.2857) and pyramid +21,000 (R 1.4), both exiting
-- 2025-11-28; GOLD_MINI -6,000 (R -1) exiting 2025-12-01 00:30 IST (still 30 Nov in UTC) and a
-- break-even trade with no recorded initial risk exiting 2025-12-02.
SELECT plan(19);

CREATE FUNCTION pg_temp.closed_trade(id text, instrument text, base boolean, entry_at text, entry numeric,
                                     exit_at text, exit_price numeric, lots int, pnl numeric, risk numeric)
RETURNS integer LANGUAGE sql AS $$
    SELECT pm.save_position(jsonb_build_object('position_id', id, 'instrument', instrument, 'status', 'closed',
        'entry_timestamp', entry_at, 'entry_price', entry, 'lots', lots, 'quantity', lots,
        'initial_stop', entry - 1, 'current_stop', entry - 1, 'highest_close', exit_price,
        'is_base_position', base, 'exit_timestamp', exit_at, 'exit_price', exit_price, 'exit_reason', 'SIGNAL',
        'realized_pnl', pnl, 'initial_risk', risk), NULL);
$$;

SELECT pg_temp.closed_trade('BANK_NIFTY_Long_1', 'BANK_NIFTY', true, '2025-11-28T05:00:00Z', 52000,
                            '2025-11-28T07:00:00Z', 53500, 4, 180000, 42000);
SELECT pg_temp.closed_trade('BANK_NIFTY_Long_2', 'BANK_NIFTY', false, '2025-11-28T06:00:00Z', 52800,
                            '2025-11-28T07:00:00Z', 53500, 1, 21000, 15000);
SELECT pg_temp.closed_trade('GOLD_MINI_Long_1@20251130T100000Z', 'GOLD_MINI', true, '2025-11-30T10:00:00Z', 78000,
                            '2025-11-30T19:00:00Z', 77880, 5, -6000, 6000);
SELECT pg_temp.closed_trade('GOLD_MINI_Long_1', 'GOLD_MINI', true, '2025-12-02T04:00:00Z', 78000,
                            '2025-12-02T05:00:00Z', 78000, 5, 0, NULL);
-- trades are timed by the instants the book changed (entered_at / exited_at, the database's own):
-- these hand-made ones are dated as if their alerts had been processed when they were sent
UPDATE pm.portfolio_positions SET entered_at = entry_timestamp, exited_at = exit_timestamp;
-- slippage of the GOLD_MINI trades' broker orders (rupees, adverse positive): the archived layer's entry 120 and
-- exit 30 (150), the re-entered layer's entry -50 (favourable); an order of the same layer after its exit is not
-- the trade's. Trade 3: 150, trade 4: -50; total 100, mean 25 over four trades (GOLD_MINI: 50 over two).
SELECT pm.add_orders(jsonb_agg(jsonb_build_object('client_order_id', o.id, 'fingerprint', repeat('f', 64),
            'position_id', 'GOLD_MINI_Long_1', 'instrument', 'GOLD_MINI', 'side', o.side, 'lots', 5, 'price', 78000,
            'exchange', 'MCX', 'symbol', 'GOLDM05DEC25FUT', 'quantity', 5, 'product', 'NRML', 'leg', 'FUT')))
  FROM (VALUES ('g-1', 'BUY'), ('g-2', 'SELL'), ('g-3', 'BUY'), ('g-4', 'SELL')) AS o(id, side);
UPDATE pm.broker_orders SET created_at = o.at::timestamptz, slippage_rupees = o.rupees
  FROM (VALUES ('g-1', '2025-11-30T10:00:00Z', 120), ('g-2', '2025-11-30T19:00:00Z', 30),
               ('g-3', '2025-12-02T04:00:00Z', -50), ('g-4', '2025-12-03T04:00:00Z', 999)) AS o(id, at, rupees)
 WHERE client_order_id = o.id;
-- the closed-equity curve: 5,000,000 (seed), 5,201,000, 5,195,000, 5,100,000, 5,300,000
SELECT pm.save_portfolio_state(jsonb_build_object('closed_equity', e), v)
  FROM (VALUES (5201000, 1), (5195000, 2), (5100000, 3), (5300000, 4)) AS c(e, v);

SELECT results_eq($$SELECT position_id, layer, r_multiple, holding_time FROM pm.trades()$$,
                  $$VALUES ('BANK_NIFTY_Long_1', 'base', 4.2857, interval '2 hours'),
                           ('BANK_NIFTY_Long_2', 'pyramid', 1.4000, interval '1 hour'),
                           ('GOLD_MINI_Long_1', 'base', -1.0000, interval '9 hours'),
                           ('GOLD_MINI_Long_1', 'base', NULL, interval '1 hour')$$,
                  'trades: one row per closed position, in exit order, archived ids shown without their suffix');
SELECT is((SELECT count(*)::int FROM pm.trades('2025-11-29T00:00:00Z', NULL)), 2, 'trades: filtered by exit time');
SELECT throws_ok($$SELECT * FROM pm.trades(now(), now() - interval '1 s')$$, 'PM004', NULL,
                 'trades: from after to is refused');

SELECT results_eq($$SELECT period_start, realized_pnl, trades, closing_equity FROM pm.pnl_by_period('day')$$,
                  $$VALUES ('2025-11-28'::date, 201000.00::numeric, 2, 5201000.00::numeric),
                           ('2025-12-01'::date, -6000.00, 1, 5195000.00),
                           ('2025-12-02'::date, 0.00, 1, 5195000.00)$$,
                  'pnl_by_period day: IST calendar days (00:30 IST on 1 Dec is 1 Dec)');
SELECT results_eq($$SELECT period_start, realized_pnl, trades FROM pm.pnl_by_period('week')$$,
                  $$VALUES ('2025-11-24'::date, 201000.00::numeric, 2), ('2025-12-01'::date, -6000.00, 2)$$,
                  'pnl_by_period week: Monday first');
SELECT results_eq($$SELECT period_start, closing_equity FROM pm.pnl_by_period('month', '2025-12-01T00:00:00Z')$$,
                  $$VALUES ('2025-12-01'::date, 5195000.00::numeric)$$,
                  'pnl_by_period month, from December: closing equity counts the earlier trades too');
SELECT throws_ok($$SELECT * FROM pm.pnl_by_period('year')$$, 'PM004',
                 'period must be day, week or month, got year', 'pnl_by_period: an unknown period is refused');

SELECT is(pm.trade_stats() - 'by_instrument', jsonb_build_object(
          'trades', 4, 'wins', 2, 'losses', 1, 'win_rate', 50.00, 'gross_profit', 201000.00, 'gross_loss', 6000.00,
          'net_pnl', 195000.00, 'profit_factor', 33.5000, 'expectancy', 48750.00, 'mean_r', 1.5619,
          'total_slippage', 100.00, 'mean_slippage', 25.00, 'max_drawdown', 101000.00, 'max_drawdown_pct', 1.9419, 'max_open_drawdown', 101000.00,
          'max_open_drawdown_pct', 1.9419, 'final_closed_equity', 5300000.00,
          'deposits', 0.00, 'withdrawals', 0.00, 'net_flows', 0.00, 'time_weighted_return', 6.0000),
          'trade_stats: the hand-computed figures (drawdown 5,201,000 -> 5,100,000 = 1.9419 % of the peak; '
          'no flows, so the return is 5,300,000 / 5,000,000 - 1)');
SELECT is(pm.trade_stats() -> 'by_instrument' -> 'GOLD_MINI', jsonb_build_object(
          'trades', 2, 'wins', 0, 'losses', 1, 'win_rate', 0.00, 'gross_profit', 0.00, 'gross_loss', 6000.00,
          'net_pnl', -6000.00, 'profit_factor', 0.0000, 'expectancy', -3000.00, 'mean_r', -1.0000,
          'total_slippage', 100.00, 'mean_slippage', 50.00, 'max_drawdown', 6000.00, 'max_drawdown_pct', 0.1200, 'max_open_drawdown', NULL,
          'max_open_drawdown_pct', NULL, 'final_closed_equity', NULL, 'deposits', NULL, 'withdrawals', NULL,
          'net_flows', NULL, 'time_weighted_return', NULL),
          'trade_stats by instrument: the same keys; drawdown of its cumulative P&L (6,000 of 5,000,000)');
SELECT is(pm.trade_stats('2025-12-02T00:00:00Z', NULL) -> 'total_slippage', '-50.00'::jsonb,
          'trade_stats: slippage of the trades in range only (the re-entered layer: its own entry)');
SELECT is(pm.trade_stats(NULL, '2025-11-29T00:00:00Z') -> 'profit_factor', 'null'::jsonb,
          'trade_stats: no losing trade -> profit factor null, not a division error');
SELECT is(pm.trade_stats(NULL, '2025-11-29T00:00:00Z') -> 'win_rate', '100.00'::jsonb,
          'trade_stats: win rate at exactly 100 %');
SELECT is(pm.trade_stats('2030-01-01', NULL) - 'max_drawdown' - 'max_drawdown_pct' - 'max_open_drawdown'
          - 'max_open_drawdown_pct' - 'final_closed_equity', jsonb_build_object(
          'trades', 0, 'wins', 0, 'losses', 0, 'win_rate', NULL, 'gross_profit', 0.00, 'gross_loss', 0.00,
          'net_pnl', 0.00, 'profit_factor', NULL, 'expectancy', NULL, 'mean_r', NULL, 'by_instrument', '{}'::jsonb,
          'total_slippage', 0.00, 'mean_slippage', NULL,
          'deposits', 0.00, 'withdrawals', 0.00, 'net_flows', 0.00, 'time_weighted_return', 0.0000),
          'trade_stats with no trades: zeros and nulls (one point, the equity in force: no return)');
SELECT is(pm.trade_stats('2030-01-01', NULL) -> 'final_closed_equity', '5300000.00'::jsonb,
          'trade_stats after the last commit: the equity in force then');
SELECT throws_ok($$SELECT pm.trade_stats(now(), now() - interval '1 s')$$, 'PM004', NULL,
                 'trade_stats: from after to is refused');
SELECT is(pm.drawdown('[10, 12, 9, 11, 8, 20]'), '{"amount": 4.00, "pct": 33.3333}'::jsonb,
          'drawdown: the largest fall from the running peak (12 -> 8), as % of that peak');

-- capital flows (issue 28): a withdrawal of 300,000 today, then a writer that moves closed equity without
-- bumping the version (as a review giving an exit's P&L back does: a second history row of the flow's version)
SELECT pm.record_capital_flow('withdrawal', 300000, NULL, 'cli:pgtap@test');
UPDATE pm.portfolio_state SET closed_equity = closed_equity - 1000 WHERE id = 1;
SELECT is((SELECT count(*)::int FROM pm.portfolio_history h JOIN pm.capital_flows f ON f.history_id = h.history_id),
          1, 'a flow names exactly one history row (capital_flows.history_id), though its version has two');
SELECT is(pm.trade_stats() -> 'withdrawals', '300000.00'::jsonb,
          'trade_stats: the withdrawal counted once, not once per history row of its version');
SELECT results_eq($$SELECT realized_pnl, trades, net_flows, closing_equity FROM pm.pnl_by_period('month')$$,
                  $v$VALUES (201000.00::numeric, 2, 0::numeric, 5201000.00::numeric),
                            (-6000.00, 2, 0, 5195000.00), (0, 0, -300000.00, 4895000.00)$v$,
                  'pnl_by_period: the flow''s month starts from the equity after the flows (5,195,000 - 300,000)');

SELECT * FROM finish();

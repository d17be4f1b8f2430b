-- Dashboard reads (functions 96_dashboard.sql): the equity curve cut to the chart's width.
SELECT plan(7);

-- 1,000 portfolio versions: a saw-tooth with one deep dip at version 500 and one peak at version 700
SELECT pm.save_portfolio_state(jsonb_build_object(
           'closed_equity', 5000000 + (v % 10) * 100 + CASE v WHEN 500 THEN -400000 WHEN 700 THEN 300000 ELSE 0 END),
           v)
  FROM generate_series(1, 1000) v;
SELECT is((SELECT count(*)::int FROM pm.equity_curve()), 1001, 'the full curve has every version');
SELECT cmp_ok((SELECT count(*)::int FROM pm.equity_curve_sampled(NULL, NULL, 50)), '<=', 102,
              'sampled to 50 buckets it has at most about two points a bucket');
SELECT is((SELECT min(open_equity) FROM pm.equity_curve_sampled(NULL, NULL, 50)),
          (SELECT min(open_equity) FROM pm.equity_curve()), 'the deepest dip stays on the chart');
SELECT is((SELECT max(open_equity) FROM pm.equity_curve_sampled(NULL, NULL, 50)),
          (SELECT max(open_equity) FROM pm.equity_curve()), 'and the highest peak');
SELECT is((SELECT max(version) FROM pm.equity_curve_sampled(NULL, NULL, 50)), 1001, 'and the latest point');
SELECT throws_ok($$SELECT * FROM pm.equity_curve_sampled(NULL, NULL, 0)$$, 'PM004', NULL, 'buckets must be positive');
-- capital flows (migration 009) between sampled points: their sum along the sampled curve is the net flow
SELECT pm.record_capital_flow('deposit', 1000, NULL, 'cli:pgtap@tap');
SELECT pm.save_portfolio_state(jsonb_build_object('closed_equity', 5001000 + v), 1001 + v) FROM generate_series(1, 10) v;
SELECT pm.record_capital_flow('withdrawal', 250.50, NULL, 'cli:pgtap@tap');
SELECT pm.save_portfolio_state(jsonb_build_object('closed_equity', 5000900 + v), 1012 + v) FROM generate_series(1, 10) v;
SELECT is((SELECT sum(flow) FROM pm.equity_curve_sampled(NULL, NULL, 5)), 749.50::numeric,
          'flows dropped by sampling are carried by the next point kept: the net flow sums the same');

SELECT * FROM finish();

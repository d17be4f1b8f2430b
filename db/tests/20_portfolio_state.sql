-- pm.get_portfolio_state / pm.save_portfolio_state: the single versioned row.
SELECT plan(11);

SELECT results_eq('SELECT closed_equity, version FROM pm.get_portfolio_state()',
                  $$VALUES (5000000.00::numeric, 1)$$, 'initial state');
SELECT is(pm.save_portfolio_state('{"closed_equity": 5180000, "margin_used": 270000}', 1), 2,
          'update from the version read returns the next version');
SELECT results_eq('SELECT closed_equity, margin_used, equity_high, initial_capital FROM pm.get_portfolio_state()',
                  $$VALUES (5180000.00::numeric, 270000.00::numeric, 5180000.00::numeric, 5000000.00::numeric)$$,
                  'named keys written, equity_high follows closed equity up, the rest kept');
SELECT is(pm.save_portfolio_state('{"closed_equity": 5100000}', 2), 3, 'a loss is saved');
SELECT is((SELECT equity_high FROM pm.get_portfolio_state()), 5180000.00, 'equity_high never falls');
SELECT throws_ok($$SELECT pm.save_portfolio_state('{"closed_equity": 1}', 1)$$, 'PM001',
                 'stale version for portfolio state: expected 1, found 3', 'stale version raises PM001');
SELECT is((SELECT closed_equity FROM pm.get_portfolio_state()), 5100000.00, 'the stale write changed nothing');
SELECT throws_ok($$SELECT pm.save_portfolio_state('{"closed_equity": 1}', NULL)$$, 'PM004',
                 'expected_version is required', 'the version read is required');
SELECT throws_ok($$SELECT pm.save_portfolio_state('{"closed_equty": 1}', 3)$$, 'PM004',
                 'unknown portfolio state field(s): closed_equty', 'unknown keys are named');
SELECT throws_ok($$SELECT pm.save_portfolio_state('{"closed_equity": null}', 3)$$, '23502', NULL,
                 'closed_equity cannot be NULL');
SELECT throws_ok($$SELECT pm.save_portfolio_state(NULL, 3)$$, 'PM004', NULL, 'NULL document');

SELECT * FROM finish();

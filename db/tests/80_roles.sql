-- pm.grant_app_role: the engine's least-privilege role.
SELECT plan(19);

CREATE ROLE pm_tap_app NOLOGIN;
GRANT INSERT, UPDATE, DELETE ON pm.portfolio_state TO pm_tap_app;  -- as an older version granted
GRANT EXECUTE ON FUNCTION pm.save_position(jsonb, integer) TO pm_tap_app;  -- as an older version granted
SELECT lives_ok($$SELECT pm.grant_app_role('pm_tap_app')$$, 'grant to an existing role');
SELECT throws_ok($$SELECT pm.grant_app_role('pm_tap_nobody')$$, 'PM003', NULL, 'unknown role refused');
SELECT table_privs_are('pm', 'signal_log', 'pm_tap_app', ARRAY['SELECT'], 'signal_log: read only');
SELECT table_privs_are('pm', 'portfolio_state', 'pm_tap_app', ARRAY[]::text[],
                       'portfolio_state: no direct access (older grants revoked)');
SELECT ok(has_function_privilege('pm_tap_app', 'pm.apply_signal(jsonb, jsonb, jsonb, jsonb, integer)', 'EXECUTE'),
          'may execute the functions');
SELECT ok(NOT has_function_privilege('pm_tap_app', 'pm.grant_app_role(text)', 'EXECUTE'),
          'may not grant');
-- every function the app role may execute (db/README.md "The app role"): a new grant fails here until it is
-- listed in both places, so nothing becomes the engine's by accident (PUBLIC executes nothing of pm)
SELECT set_eq($$SELECT DISTINCT p.proname::text FROM pg_proc p
                 WHERE p.pronamespace = 'pm'::regnamespace AND has_function_privilege('pm_tap_app', p.oid, 'EXECUTE')$$,
              $$VALUES ('abandon_sending'), ('active_locks'), ('active_rolls'), ('anomalies_since'), ('anomaly_counts'),
                  ('apply_signal'), ('apply_state'), ('audit_usage'), ('book_net_positions'), ('capital_ledger'),
                  ('capital_totals'), ('check_database_identity'), ('claim_leadership'), ('cleanup_notifications'), ('cleanup_request_log'), ('cleanup_signal_log'),
                  ('create_session'), ('equity_curve'), ('equity_curve_sampled'), ('expire_stale_entries'), ('fill_paper_orders'),
                  ('get_breakers'), ('get_open_positions'), ('get_portfolio_state'), ('get_position'), ('get_pyramiding_state'),
                  ('get_trading_mode'), ('heartbeat_instance'), ('list_instances'), ('list_orders'), ('list_rolls'),
                  ('load_state'), ('lock_for_decision'), ('lock_instrument'), ('log_refusals'), ('metrics_snapshot'),
                  ('notification_counts'), ('notification_log'), ('notify_done'), ('notify_take'), ('order_accepted'),
                  ('order_cancelled'), ('order_rejected'), ('order_send_later'), ('order_sending'), ('order_unknown'),
                  ('orders_at_broker'), ('orders_for_signal'), ('orders_seen_at_broker'), ('paper_roll_legs'), ('queued_orders'),
                  ('pnl_by_period'), ('recent_signals'), ('record_broker_session'), ('record_capital_flow'), ('record_notification'),
                  ('record_order_fill'), ('record_reconcile_differences'), ('refusals'), ('register_instance'), ('release_restored_orders'),
                  ('resolve_unknown_order'),
                  ('review_order'), ('revoke_session'), ('roll_abandon'), ('roll_begin'), ('roll_expired'),
                  ('roll_send_close'), ('sendable_orders'), ('sending_signal_price'), ('session_active'), ('set_breakers'),
                  ('set_trading_mode'), ('state_as_of'), ('state_if_moved'), ('stop_instance'), ('sweep_stale_instances'), ('symbols_in_flight'),
                  ('table_checksums'), ('trade_stats'), ('traded_symbols'), ('trades'), ('trading_mode_history'),
                  ('unlock_instrument')$$,
              'the app role executes exactly the functions the engine calls');
SELECT is((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'pm'::regnamespace
             AND has_function_privilege('public', p.oid, 'EXECUTE')), 0, 'PUBLIC executes no function of pm');
SET ROLE pm_tap_app;
SELECT throws_ok($$DROP TABLE pm.signal_log$$, '42501', NULL, 'cannot drop a table');
SELECT throws_ok($$TRUNCATE pm.portfolio_positions$$, '42501', NULL, 'cannot truncate');
SELECT throws_ok($$UPDATE pm.portfolio_state SET closed_equity = 0$$, '42501', NULL,
                 'cannot write a row directly, only through the functions');
SELECT is(pm.apply_state('[]', '[]', '{"margin_used": 1}', (SELECT version FROM pm.get_portfolio_state())), 2,
          'the functions work for it (they run with the owner''s rights)');
-- issue 29: the forging calls of the second review, each refused
SELECT throws_ok($$SELECT pm.save_portfolio_state('{"closed_equity": 987654321}', 2)$$, '42501', NULL,
                 'no raw portfolio write: equity without a ledger row');
SELECT throws_ok($$SELECT pm.save_position('{"position_id": "GOLD_MINI_Long_1", "instrument": "GOLD_MINI",
                     "entry_timestamp": "2026-10-30T05:00:00Z", "entry_price": 1.00, "lots": 1, "quantity": 1,
                     "initial_stop": 0.5, "current_stop": 0.5, "highest_close": 1.00}')$$, '42501', NULL,
                 'no raw position write: an entry price of 1.00');
SELECT throws_ok($$SELECT pm.log_signal(repeat('a', 64), 'GOLD_MINI', 'BASE_ENTRY', 'Long_1',
                                         now() + interval '1 day', 'executed')$$, '42501', NULL,
                 'no fingerprint logged outside the signal path (a future alert made a duplicate)');
SELECT throws_ok($$SELECT pm.record_capital_flow('deposit', 10, NULL, 'the dashboard, honest')$$, 'PM095', NULL,
                 'a capital flow''s recorded_by is a checked principal, not free text');
SELECT throws_ok($$SELECT pm.apply_signal(jsonb_build_object('fingerprint', repeat('b', 64), 'instrument', 'GOLD_MINI',
                     'signal_type', 'EXIT', 'position', 'Long_1', 'signal_timestamp', '2026-10-30T05:00:00Z',
                     'processing_status', 'executed', 'reason', 'x', 'payload', '{}'::jsonb, 'instance', 'i'),
                     '[]', '[]', '{"closed_equity": 987654321}', 2)$$, 'PM094', NULL,
                 'apply_signal with a forged portfolio document: closed equity it did not earn');
SELECT throws_ok($$SELECT pm.apply_state('[]', '[]', '{"initial_capital": 1}', 2)$$, 'PM094', NULL,
                 'nor a stop update that rewrites the initial capital');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM pm.signal_log WHERE fingerprint IN (repeat('a', 64), repeat('b', 64))), 0,
          'and none of them logged a fingerprint');

SELECT * FROM finish();

-- pm.grant_app_role: the engine's least-privilege role.
SELECT plan(10);

CREATE ROLE pm_tap_app NOLOGIN;
GRANT INSERT, UPDATE, DELETE ON pm.portfolio_state TO pm_tap_app;  -- as an older version granted
SELECT lives_ok($$SELECT pm.grant_app_role('pm_tap_app')$$, 'grant to an existing role');
SELECT throws_ok($$SELECT pm.grant_app_role('pm_tap_nobody')$$, 'PM003', NULL, 'unknown role refused');
SELECT table_privs_are('pm', 'signal_log', 'pm_tap_app', ARRAY['SELECT'], 'signal_log: read only');
SELECT table_privs_are('pm', 'portfolio_state', 'pm_tap_app', ARRAY[]::text[],
                       'portfolio_state: no direct access (older grants revoked)');
SELECT ok(has_function_privilege('pm_tap_app', 'pm.apply_signal(jsonb, jsonb, jsonb, jsonb, integer)', 'EXECUTE'),
          'may execute the functions');
SELECT ok(NOT has_function_privilege('pm_tap_app', 'pm.grant_app_role(text)', 'EXECUTE'),
          'may not grant');
SET ROLE pm_tap_app;
SELECT throws_ok($$DROP TABLE pm.signal_log$$, '42501', NULL, 'cannot drop a table');
SELECT throws_ok($$TRUNCATE pm.portfolio_positions$$, '42501', NULL, 'cannot truncate');
SELECT throws_ok($$UPDATE pm.portfolio_state SET closed_equity = 0$$, '42501', NULL,
                 'cannot write a row directly, only through the functions');
SELECT is(pm.save_portfolio_state('{"margin_used": 1}', (SELECT version FROM pm.get_portfolio_state())), 2,
          'the functions work for it (they run with the owner''s rights)');
RESET ROLE;

SELECT * FROM finish();

-- pm.grant_app_role: the engine's least-privilege role.
SELECT plan(7);

CREATE ROLE pm_tap_app NOLOGIN;
SELECT lives_ok($$SELECT pm.grant_app_role('pm_tap_app')$$, 'grant to an existing role');
SELECT throws_ok($$SELECT pm.grant_app_role('pm_tap_nobody')$$, 'PM003', NULL, 'unknown role refused');
SELECT table_privs_are('pm', 'signal_log', 'pm_tap_app', ARRAY['SELECT', 'INSERT', 'DELETE'],
                       'signal_log: read, claim, clean up - nothing else');
SELECT table_privs_are('pm', 'portfolio_state', 'pm_tap_app', ARRAY['SELECT', 'UPDATE'],
                       'portfolio_state: read and update only');
SELECT ok(has_function_privilege('pm_tap_app', 'pm.apply_signal(jsonb, jsonb, jsonb, jsonb, integer)', 'EXECUTE'),
          'may execute the functions');
SET ROLE pm_tap_app;
SELECT throws_ok($$DROP TABLE pm.signal_log$$, '42501', NULL, 'cannot drop a table');
SELECT throws_ok($$TRUNCATE pm.portfolio_positions$$, '42501', NULL, 'cannot truncate');
RESET ROLE;

SELECT * FROM finish();

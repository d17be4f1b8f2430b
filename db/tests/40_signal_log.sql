-- pm.log_signal / pm.is_duplicate_signal / pm.cleanup_signal_log.
SELECT plan(19);

SELECT ok(pm.log_signal(repeat('a', 64), 'BANK_NIFTY', 'BASE_ENTRY', 'Long_1', '2025-11-28T10:30:00+05:30',
                        'executed', 'entered 4 lots', '{"price": 52000}', 'inst-1'), 'a new fingerprint returns true');
SELECT ok(NOT pm.log_signal(repeat('a', 64), 'BANK_NIFTY', 'BASE_ENTRY', 'Long_1', '2025-11-28T10:30:00+05:30',
                            'blocked', 'changed', NULL, 'inst-2'), 'a repeated fingerprint returns false');
SELECT results_eq($$SELECT processing_status, reason, processed_by_instance, is_duplicate FROM pm.signal_log$$,
                  $$VALUES ('executed'::varchar, 'entered 4 lots'::text, 'inst-1'::varchar, false)$$,
                  'the repeat changed nothing and added no row');
SELECT ok(pm.is_duplicate_signal(repeat('a', 64)), 'a logged fingerprint is a duplicate');
SELECT ok(NOT pm.is_duplicate_signal(repeat('b', 64)), 'an unknown fingerprint is not');
SELECT throws_ok($$SELECT pm.log_signal(NULL, 'X', 'EXIT', 'ALL', now(), 'executed')$$, 'PM004',
                 'fingerprint is required', 'NULL fingerprint');
SELECT throws_ok($$SELECT pm.log_signal('xyz', 'X', 'EXIT', 'ALL', now(), 'executed')$$, 'PM004',
                 'fingerprint must be 64 lowercase hex characters', 'malformed fingerprint');
SELECT throws_ok($$SELECT pm.log_signal(repeat('c', 64), 'X', 'EXIT', 'ALL', now(), 'weird')$$, '23514', NULL,
                 'unknown processing status');
SELECT throws_ok($$SELECT pm.log_signal(repeat('c', 64), 'X', 'EXIT', 'ALL', NULL, 'executed')$$, 'PM004',
                 'signal_timestamp is required', 'NULL timestamp');

-- cleanup: one old row, one fresh
SELECT pm.log_signal(repeat('d', 64), 'COPPER', 'EXIT', 'ALL', now(), 'executed');
UPDATE pm.signal_log SET processed_at = now() - interval '8 days' WHERE fingerprint = repeat('d', 64);
SELECT is(pm.cleanup_signal_log(), 1, 'default retention (7 days) deletes the 8-day-old row');
SELECT is(pm.cleanup_signal_log(interval '1 hour'), 0, 'nothing else is old enough');
SELECT is((SELECT count(*)::int FROM pm.signal_log), 1, 'the recent row stays');
SELECT throws_ok($$SELECT pm.cleanup_signal_log(interval '-1 day')$$, 'PM004', NULL, 'negative retention refused');
-- the floor: the engine's role cannot erase fingerprints younger than a day; the owner (this session) can
CREATE ROLE pm_tap_app_40;
SELECT pm.grant_app_role('pm_tap_app_40');
UPDATE pm.signal_log SET processed_at = now() - interval '1 hour';
SET SESSION AUTHORIZATION pm_tap_app_40;
SELECT throws_ok($$SELECT pm.cleanup_signal_log(interval '30 minutes')$$, 'PM020', NULL,
                 'the app role may not clean the signal log below 1 day');
RESET SESSION AUTHORIZATION;
SELECT is(pm.cleanup_signal_log(interval '30 minutes'), 1, 'the database owner may go lower');

SELECT pm.log_signal(repeat('e', 64), 'COPPER', 'EXIT', 'ALL', now(), 'executed');
SELECT is((SELECT count(*)::int FROM pm.recent_signals(50)), (SELECT count(*)::int FROM pm.signal_log),
          'recent_signals lists what is logged');
SELECT is((SELECT count(*)::int FROM pm.recent_signals(0)), 0, 'recent_signals honours its limit');
SELECT is((SELECT count(*)::int FROM pm.recent_signals(50, (SELECT max(processed_at) FROM pm.signal_log))),
          (SELECT count(*)::int FROM pm.signal_log WHERE processed_at = (SELECT max(processed_at) FROM pm.signal_log)),
          'recent_signals since a time: only those processed at or after it');
SELECT is((SELECT count(*)::int FROM pm.recent_signals(50, 'infinity')), 0,
          'recent_signals since the future: none');

SELECT * FROM finish();

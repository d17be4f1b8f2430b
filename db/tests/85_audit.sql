-- Audit (functions 85_audit.sql): refused requests (within the day's budget) and anomalies.
SELECT plan(21);

SELECT is(pm.log_refusals(jsonb_build_array(
          jsonb_build_object('received_at', now() - interval '40 days', 'source', '203.0.113.9', 'status', 401,
                             'reason', 'missing or bad secret', 'body_sha256', repeat('0', 64), 'body_excerpt', '{}',
                             'user_agent', 'curl/8', 'route', '/webhook'),
          jsonb_build_object('source', '203.0.113.9', 'status', 422, 'reason', 'price: must be a number',
                             'field', 'price', 'body_sha256', repeat('1', 64),
                             'body_excerpt', '{"secret": "***", "price": "x"}', 'instance', 'inst-1'),
          jsonb_build_object('received_at', now() + interval '1 year', 'source', '203.0.113.10', 'status', 403,
                             'reason', 'sender address is not allowed', 'body_sha256', repeat('2', 64),
                             'body_excerpt', ''))), 3,
          'log_refusals writes a batch in one call');
SELECT is((SELECT max(received_at) FROM pm.request_log) <= now(), true, 'no refusal is dated in the future');
SELECT is((SELECT min(received_at) FROM pm.request_log) >= now() - interval '1 hour', true,
          'nor more than an hour back (out of the retention''s reach)');
SELECT results_eq($$SELECT status::int, field::text, source::text FROM pm.refusals() ORDER BY id$$,
                  $$VALUES (401, NULL, '203.0.113.9'), (422, 'price', '203.0.113.9'), (403, NULL, '203.0.113.10')$$,
                  'refusals: the last 24 hours by default');
SELECT is((SELECT route::text FROM pm.request_log WHERE status = 401), '/webhook', 'the route is kept');
SELECT throws_ok($$SELECT pm.log_refusals('[{"source": "x", "status": 200, "reason": "ok", "body_sha256": "",
                                             "body_excerpt": ""}]')$$, '23514', NULL,
                 'log_refusals: only refusals (4xx, 5xx)');
SELECT throws_ok($$SELECT pm.log_refusals('{}')$$, 'PM004', 'refusals must be a JSON array', 'log_refusals: an array');

-- the day's budget, for every instance together: past it, rows are counted, not stored
UPDATE pm.audit_budget SET rows_per_day = (SELECT rows_written + 2 FROM pm.request_log_days);
SELECT is(pm.log_refusals((SELECT jsonb_agg(jsonb_build_object('source', '198.51.100.' || i, 'status', 401,
              'reason', 'missing or bad secret', 'body_sha256', repeat('3', 64), 'body_excerpt', 'x'))
            FROM generate_series(1, 5) i)), 2, 'a batch past the day''s row budget writes what fits');
SELECT results_eq($$SELECT rows_written::int, rows_dropped::int FROM pm.audit_usage()$$, $$VALUES (5, 3)$$,
                  'and the rest is counted');
UPDATE pm.audit_budget SET rows_per_day = 50000,
                           bytes_per_day = (SELECT bytes_written + 300 FROM pm.request_log_days);
SELECT is(pm.log_refusals(jsonb_build_array(
          jsonb_build_object('source', 'a', 'status', 401, 'reason', 'r', 'body_sha256', '', 'body_excerpt', 'x'),
          jsonb_build_object('source', 'b', 'status', 401, 'reason', 'r', 'body_sha256', '',
                             'body_excerpt', repeat('y', 2000)),
          jsonb_build_object('source', 'c', 'status', 401, 'reason', 'r', 'body_sha256', '', 'body_excerpt', 'z'))),
          1, 'the byte budget too: once a row does not fit, nothing after it is stored that day');
SELECT results_eq($$SELECT rows_written::int, rows_dropped::int FROM pm.audit_usage()$$, $$VALUES (6, 5)$$,
                  'every refusal is either stored or counted');
SELECT ok((SELECT bytes_written <= bytes_per_day FROM pm.audit_usage()), 'the stored bytes stay within the budget');
SELECT is(pm.refusal_bytes('{"body_excerpt": "abc", "reason": "de"}'), 205::bigint,
          'a row costs its text plus 200 bytes');

-- cleanup: past the retention; below the floor only for the owner
INSERT INTO pm.request_log (received_at, source, status, reason, body_sha256, body_excerpt)
VALUES (now() - interval '40 days', '203.0.113.9', 401, 'old', repeat('0', 64), '');
SELECT is(pm.cleanup_request_log('30 days'), 1, 'cleanup_request_log deletes rows past the retention');
SELECT throws_ok($$SELECT pm.cleanup_request_log('-1 day')$$, 'PM004', NULL, 'a negative retention is refused');
CREATE ROLE pm_tap_app_85;
SELECT pm.grant_app_role('pm_tap_app_85');
SET SESSION AUTHORIZATION pm_tap_app_85;
SELECT throws_ok($$SELECT pm.cleanup_request_log('30 minutes')$$, 'PM020', NULL,
                 'the app role may not erase the audit below 1 day');
RESET SESSION AUTHORIZATION;
SELECT is(pm.cleanup_request_log('30 minutes'), 1, 'the database owner may (the row dated an hour back goes)');

SELECT is(pm.apply_signal(jsonb_build_object('fingerprint', repeat('a', 64), 'instrument', 'BANK_NIFTY',
              'signal_type', 'EXIT', 'position', 'Long_3', 'signal_timestamp', '2025-11-28T05:00:00Z',
              'processing_status', 'blocked', 'reason', 'position not found: no open BANK_NIFTY Long_3',
              'payload', '{}'::jsonb, 'instance', 'inst-1', 'anomaly', 'exit_never_open'), '[]', '[]', '{}', 1)
          -> 'portfolio_version', '2'::jsonb, 'a blocked signal carrying an anomaly commits');
SELECT results_eq($$SELECT kind::text, signal_type::text, position::text FROM pm.anomalies_since()$$,
                  $$VALUES ('exit_never_open', 'EXIT', 'Long_3')$$, 'and its anomaly is recorded in the same transaction');
SELECT is(pm.anomaly_counts(), '{"exit_never_open": 1}'::jsonb, 'anomalies are counted by kind');
SELECT throws_ok($$SELECT pm.record_anomaly('{"anomaly": "ghost", "fingerprint": "x", "instrument": "X",
                                              "signal_type": "EXIT", "position": "ALL"}')$$, '23514', NULL,
                 'an unknown kind of anomaly is refused');

SELECT * FROM finish();

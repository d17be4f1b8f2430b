-- Audit (functions 85_audit.sql): refused requests and anomalies.
SELECT plan(11);

SELECT is(pm.log_refusals(jsonb_build_array(
          jsonb_build_object('received_at', now() - interval '40 days', 'source', '203.0.113.9', 'status', 401,
                             'reason', 'missing or bad secret', 'body_sha256', repeat('0', 64), 'body_excerpt', '{}',
                             'user_agent', 'curl/8'),
          jsonb_build_object('source', '203.0.113.9', 'status', 422, 'reason', 'price: must be a number',
                             'field', 'price', 'body_sha256', repeat('1', 64),
                             'body_excerpt', '{"secret": "***", "price": "x"}', 'instance', 'inst-1'))), 2,
          'log_refusals writes a batch in one call');
SELECT results_eq($$SELECT status::int, field::text, source::text FROM pm.refusals()$$,
                  $$VALUES (422, 'price', '203.0.113.9')$$, 'refusals: the last 24 hours by default');
SELECT is((SELECT count(*)::int FROM pm.refusals(now() - interval '60 days')), 2, 'refusals since a time');
SELECT throws_ok($$SELECT pm.log_refusals('[{"source": "x", "status": 200, "reason": "ok", "body_sha256": "",
                                             "body_excerpt": ""}]')$$, '23514', NULL,
                 'log_refusals: only refusals (4xx, 5xx)');
SELECT throws_ok($$SELECT pm.log_refusals('{}')$$, 'PM004', 'refusals must be a JSON array', 'log_refusals: an array');
SELECT is(pm.cleanup_request_log('30 days'), 1, 'cleanup_request_log deletes rows past the retention');
SELECT throws_ok($$SELECT pm.cleanup_request_log('-1 day')$$, 'PM004', NULL, 'a negative retention is refused');

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

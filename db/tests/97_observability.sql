-- Observability (functions 97_observability.sql).
SELECT plan(5);

SELECT is(pm.metrics_snapshot() - 'last_signal_at',
          '{"mode": "active", "anomalies": {}, "orders_pending": 0, "open_positions": 0}'::jsonb,
          'metrics_snapshot of an empty book');
SELECT pm.add_orders('[{"client_order_id": "pm-x-Long_1", "fingerprint": "x", "position_id": "BANK_NIFTY_Long_1",
                        "instrument": "BANK_NIFTY", "side": "BUY", "lots": 1, "price": 52000}]');
SELECT is(pm.metrics_snapshot() -> 'orders_pending', '1'::jsonb, 'metrics_snapshot counts pending orders');
SELECT pm.set_trading_mode('halted', 'test', 'cli:me');
SELECT is(pm.metrics_snapshot() ->> 'mode', 'halted', 'metrics_snapshot shows the mode');

SELECT ok((SELECT count(*) FROM pm.table_checksums('{}')) > 10
          AND NOT EXISTS (SELECT 1 FROM pm.table_checksums(ARRAY['request_log']) WHERE table_name = 'request_log'),
          'table_checksums: every table of pm but those excluded');
CREATE TEMP TABLE before AS SELECT * FROM pm.table_checksums('{}');
SELECT pm.log_refusals('[{"source": "x", "status": 401, "reason": "r", "body_sha256": "", "body_excerpt": ""}]');
SELECT results_eq($$SELECT table_name FROM pm.table_checksums('{}') EXCEPT SELECT table_name FROM before
                    NATURAL JOIN pm.table_checksums('{}') ORDER BY 1$$,
                  $$VALUES ('request_log'::text), ('request_log_days')$$,
                  'table_checksums: a write changes its table''s checksum (and the audit its budget day) and no other');

SELECT * FROM finish();

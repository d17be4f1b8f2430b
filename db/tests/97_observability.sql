-- Observability (functions 97_observability.sql).
SELECT plan(3);

SELECT is(pm.metrics_snapshot() - 'last_signal_at',
          '{"mode": "active", "anomalies": {}, "orders_pending": 0, "open_positions": 0}'::jsonb,
          'metrics_snapshot of an empty book');
SELECT pm.add_orders('[{"client_order_id": "pm-x-Long_1", "fingerprint": "x", "position_id": "BANK_NIFTY_Long_1",
                        "instrument": "BANK_NIFTY", "side": "BUY", "lots": 1, "price": 52000}]');
SELECT is(pm.metrics_snapshot() -> 'orders_pending', '1'::jsonb, 'metrics_snapshot counts pending orders');
SELECT pm.set_trading_mode('halted', 'test', 'cli:me');
SELECT is(pm.metrics_snapshot() ->> 'mode', 'halted', 'metrics_snapshot shows the mode');

SELECT * FROM finish();

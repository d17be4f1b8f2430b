-- 011_execution
-- Orders at a real broker (issue 21). A queued order that certainly did not leave (refused connection,
-- 403, 429) waits before its next attempt: next_attempt_at. The signal's price is kept beside the fill
-- (broker_orders.price is the signal's price; slippage is filled in from the fills), and on positions
-- signal_price keeps what the alert said while entry_price becomes the volume-weighted fill. Anomalies
-- gain the kinds the order path records: an order that needs the trader's review, a rejected entry or exit,
-- a difference between the book and the broker's positions.

ALTER TABLE pm.broker_orders
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN point_value     numeric(14,4),  -- rupees per point per lot: fills are booked into P&L with it
    ADD COLUMN slippage_points numeric(12,2),
    ADD COLUMN slippage_rupees numeric(15,2);

ALTER TABLE pm.portfolio_positions
    ADD COLUMN signal_price    numeric(12,2),
    ADD COLUMN slippage_points numeric(12,2),
    ADD COLUMN slippage_rupees numeric(15,2);

ALTER TABLE pm.anomalies DROP CONSTRAINT anomalies_kind_check;
ALTER TABLE pm.anomalies
    ADD CONSTRAINT anomalies_kind_check CHECK (kind IN ('exit_never_open', 'pyramid_without_base',
                                                        'pyramid_skips_layer', 'entry_while_base_open',
                                                        'order_needs_review', 'exit_rejected', 'entry_rejected',
                                                        'reconcile_difference'));

CREATE INDEX broker_orders_live_idx ON pm.broker_orders (status)
    WHERE status IN ('sending', 'open', 'partially_filled', 'unknown');

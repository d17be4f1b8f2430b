-- 015_notification_wiring
-- The notification kinds of the broker path, wired (issue 24 with issue 21): an order the broker filled
-- (its fill and slippage, pm.move_order), a reconciliation difference (pm.record_reconcile_differences),
-- the broker session (pm.record_broker_session). The broker's session is one row, the state the last
-- report left, so an episode (expired until restored, unreachable until back) is told once, whichever
-- instance's sender saw it first.

INSERT INTO pm.notification_kinds (kind, level, source, description) VALUES
    ('order_filled', 'info', 'pm.move_order (72_order_states.sql)',
     'an order the broker filled, with its fill and slippage');
UPDATE pm.notification_kinds
   SET source = 'pm.record_reconcile_differences (74_order_sending.sql)',
       description = 'the broker''s positions differ from the book (once per difference: its instrument locked)'
 WHERE kind = 'reconciliation_difference';
UPDATE pm.notification_kinds
   SET source = 'pm.record_broker_session (75_notifications.sql), from the broker sender',
       description = 'the broker session expired or restored, the broker unreachable or back'
 WHERE kind = 'broker_session';

-- the broker as the senders last reported it: ok | session_expired | unreachable (one row)
CREATE TABLE pm.broker_session (
    id         smallint    PRIMARY KEY DEFAULT 1,
    state      varchar(16) NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    seen_by    varchar(50) NOT NULL,
    message    text,
    CONSTRAINT broker_session_one_row CHECK (id = 1),
    CONSTRAINT broker_session_state_check CHECK (state IN ('ok', 'session_expired', 'unreachable')),
    CONSTRAINT broker_session_message_check CHECK (octet_length(message) <= 500)
);

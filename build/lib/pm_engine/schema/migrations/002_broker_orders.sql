-- 002_broker_orders
-- The order outbox: every broker order a signal decides is written here in the same transaction
-- as the signal's claim and effects (pm.apply_signal), as 'pending'; it is then sent to the broker
-- and marked 'filled'. An instance that dies between commit and send leaves a pending row that
-- start-up recovery (or the background-job leader) sends again. The client order id derives from
-- the fingerprint and the layer, so a row can never be ordered twice. The paper broker fills
-- straight from this table, which makes the whole path testable.

CREATE TABLE pm.broker_orders (
    client_order_id varchar(64)   PRIMARY KEY,
    fingerprint     varchar(64)   NOT NULL,
    position_id     varchar(50)   NOT NULL,
    instrument      varchar(20)   NOT NULL,
    side            varchar(4)    NOT NULL,
    lots            integer       NOT NULL,
    price           numeric(12,2) NOT NULL,
    status          varchar(20)   NOT NULL DEFAULT 'pending',
    broker_order_id varchar(64),
    fill_price      numeric(12,2),
    created_at      timestamptz   NOT NULL DEFAULT now(),
    filled_at       timestamptz,
    CONSTRAINT broker_orders_side_check CHECK (side IN ('BUY', 'SELL')),
    CONSTRAINT broker_orders_lots_check CHECK (lots > 0),
    CONSTRAINT broker_orders_price_check CHECK (price > 0),
    CONSTRAINT broker_orders_status_check CHECK (status IN ('pending', 'filled', 'rejected')),
    CONSTRAINT broker_orders_fill_check CHECK (status <> 'filled' OR (broker_order_id IS NOT NULL
                                                                     AND fill_price IS NOT NULL))
);

CREATE INDEX broker_orders_fingerprint_idx ON pm.broker_orders (fingerprint);
CREATE INDEX broker_orders_pending_idx ON pm.broker_orders (created_at) WHERE status = 'pending';
CREATE SEQUENCE pm.paper_order_seq;

-- 008_order_states
-- The order outbox (002) grows into the order's state machine (issue 21): queued → sending (committed
-- before the request leaves, with the attempt's start) → open → partially_filled → filled, or
-- rejected / cancelled / expired; unknown when the request may have reached the broker without a clear
-- answer, resolved by matching the broker's books (→ open) or → needs_review. The allowed transitions
-- are rows of pm.order_transitions; every transition appends a row to pm.order_events; fills are keyed
-- by (broker order id, cumulative quantity), so the trade book can be applied any number of times.
-- The old 'pending' is the new 'queued' (the paper broker still fills queued → filled in one step).
-- symbol, quantity and product may already exist (the contracts migration adds them): IF NOT EXISTS,
-- so either order of the two migrations works.

ALTER TABLE pm.broker_orders
    ADD COLUMN IF NOT EXISTS symbol   varchar(64),
    ADD COLUMN IF NOT EXISTS quantity integer,
    ADD COLUMN IF NOT EXISTS product  varchar(8),
    ADD COLUMN attempts           integer     NOT NULL DEFAULT 0,
    ADD COLUMN attempt_started_at timestamptz,
    ADD COLUMN state_changed_at   timestamptz,
    ADD COLUMN reason             text;

ALTER TABLE pm.broker_orders DROP CONSTRAINT broker_orders_status_check;
UPDATE pm.broker_orders SET status = 'queued' WHERE status = 'pending';
ALTER TABLE pm.broker_orders
    ALTER COLUMN status SET DEFAULT 'queued',
    ADD CONSTRAINT broker_orders_status_check CHECK (status IN ('queued', 'sending', 'open', 'partially_filled',
        'filled', 'rejected', 'cancelled', 'expired', 'unknown', 'needs_review')),
    ADD CONSTRAINT broker_orders_attempts_check CHECK (attempts >= 0);

DROP INDEX pm.broker_orders_pending_idx;
CREATE INDEX broker_orders_queued_idx ON pm.broker_orders (created_at) WHERE status = 'queued';
-- At most one order per (symbol, side, product) may be in flight or unresolved: matching the broker's
-- order book by symbol, side, quantity and time is then unambiguous.
CREATE UNIQUE INDEX broker_orders_one_unresolved_idx ON pm.broker_orders (symbol, side, product)
    WHERE status IN ('sending', 'unknown');
-- A broker order links to at most one order of ours.
CREATE UNIQUE INDEX broker_orders_broker_order_id_idx ON pm.broker_orders (broker_order_id)
    WHERE broker_order_id IS NOT NULL;

CREATE TABLE pm.order_transitions (
    from_state varchar(20) NOT NULL,
    to_state   varchar(20) NOT NULL,
    meaning    text        NOT NULL,
    PRIMARY KEY (from_state, to_state)
);

INSERT INTO pm.order_transitions (from_state, to_state, meaning) VALUES
    ('queued', 'sending', 'the request is about to leave (committed before it does)'),
    ('queued', 'filled', 'the paper broker filled it inside the database; nothing was sent'),
    ('queued', 'expired', 'an entry not sent within max_order_age: the market moved'),
    ('sending', 'queued', 'certainly not placed (connection refused, DNS, 403, 429): may be sent again'),
    ('sending', 'open', 'accepted with a broker order id'),
    ('sending', 'rejected', 'definitely refused (HTTP 400 or another 4xx)'),
    ('sending', 'unknown', 'may have reached the broker without a clear answer: never sent again'),
    ('open', 'partially_filled', 'part of the quantity filled'),
    ('open', 'filled', 'all of the quantity filled'),
    ('open', 'rejected', 'rejected in the broker''s order book'),
    ('open', 'cancelled', 'cancelled with nothing filled'),
    ('partially_filled', 'filled', 'the rest filled'),
    ('partially_filled', 'cancelled', 'the rest cancelled; the filled part stays'),
    ('cancelled', 'filled', 'a fill that raced the cancel'),
    ('unknown', 'open', 'resolved: matched to exactly one broker order'),
    ('unknown', 'needs_review', 'ambiguous, or nothing at the broker within the review window'),
    ('needs_review', 'open', 'the trader linked it to a broker order'),
    ('needs_review', 'rejected', 'the trader confirmed it is not at the broker');

CREATE TABLE pm.order_events (
    id              bigserial   PRIMARY KEY,
    client_order_id varchar(64) NOT NULL REFERENCES pm.broker_orders (client_order_id),
    from_state      varchar(20) NOT NULL,
    to_state        varchar(20) NOT NULL,
    attempt         integer     NOT NULL,
    broker_order_id varchar(64),
    reason          text,
    at              timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (from_state, to_state) REFERENCES pm.order_transitions (from_state, to_state)
);
CREATE INDEX order_events_order_idx ON pm.order_events (client_order_id, id);

CREATE TABLE pm.order_fills (
    broker_order_id     varchar(64) NOT NULL,
    cumulative_quantity integer     NOT NULL,
    client_order_id     varchar(64) NOT NULL REFERENCES pm.broker_orders (client_order_id),
    quantity            integer     NOT NULL,
    price               numeric     NOT NULL,
    source              varchar(16) NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker_order_id, cumulative_quantity),
    CONSTRAINT order_fills_quantity_check CHECK (quantity > 0 AND cumulative_quantity >= quantity),
    CONSTRAINT order_fills_price_check CHECK (price > 0),
    CONSTRAINT order_fills_source_check CHECK (source IN ('tradebook', 'orderstatus', 'review'))
);
CREATE INDEX order_fills_order_idx ON pm.order_fills (client_order_id);

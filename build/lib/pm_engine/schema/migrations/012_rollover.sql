-- 012_rollover
-- The roll (DOMAIN.md section 16, issue 22) as a durable state machine per instrument group: every open layer
-- of an instrument rolls together, as one pm.rolls row, pending → closing (the old contract's close orders
-- queued) → opening (every close filled: the old P&L realized, the open orders queued) → rolled, or failed.
-- The allowed moves are the rows of pm.roll_transitions ('none' is a roll not yet recorded); every move appends
-- a pm.roll_events row. Each leg is an order of the order state machine (migration 008) tagged with its roll,
-- written in the transaction of the move that needs it: a crash anywhere resumes from these rows and a leg,
-- keyed by its client order id, is never written twice. One layer's part of a roll is a pm.roll_layers row
-- (what it held, what it moves into, the fills, the basis shift and a lot-size re-size).

CREATE TABLE pm.roll_transitions (
    from_state varchar(20) NOT NULL,
    to_state   varchar(20) NOT NULL,
    meaning    text        NOT NULL,
    PRIMARY KEY (from_state, to_state)
);

INSERT INTO pm.roll_transitions (from_state, to_state, meaning) VALUES
    ('none', 'pending', 'the roll date came (or the trader forced it): the group''s plan is recorded'),
    ('none', 'failed', 'the contract reached its last trading day unrolled: the trader is told, nothing is sent'),
    ('pending', 'closing', 'the old contract''s close orders are queued, one per leg'),
    ('pending', 'failed', 'abandoned before anything was sent'),
    ('closing', 'opening', 'every close leg filled: the old P&L is realized and the open orders are queued'),
    ('closing', 'failed', 'a close leg ended unfilled: what did not close stays on the old contract'),
    ('opening', 'rolled', 'every open leg filled: the book holds the new contract at the new fills'),
    ('opening', 'failed', 'an open leg ended unfilled: the layer is flat, closed in the book, never re-entered');

CREATE TABLE pm.rolls (
    roll_id          bigserial   PRIMARY KEY,
    instrument       varchar(20) NOT NULL,
    state            varchar(20) NOT NULL DEFAULT 'pending',
    from_symbol      varchar(50) NOT NULL,
    to_symbol        varchar(50),
    to_expiry        varchar(20),
    forced           boolean     NOT NULL DEFAULT false,
    reason           text,
    created_at       timestamptz NOT NULL,
    state_changed_at timestamptz NOT NULL,
    CONSTRAINT rolls_state_check CHECK (state IN ('pending', 'closing', 'opening', 'rolled', 'failed'))
);
-- one roll in flight per instrument: the group moves together
CREATE UNIQUE INDEX rolls_one_active_idx ON pm.rolls (instrument) WHERE state IN ('pending', 'closing', 'opening');
CREATE INDEX rolls_instrument_idx ON pm.rolls (instrument, roll_id);

CREATE TABLE pm.roll_events (
    id         bigserial   PRIMARY KEY,
    roll_id    bigint      NOT NULL REFERENCES pm.rolls (roll_id),
    from_state varchar(20) NOT NULL,
    to_state   varchar(20) NOT NULL,
    reason     text,
    at         timestamptz NOT NULL,
    FOREIGN KEY (from_state, to_state) REFERENCES pm.roll_transitions (from_state, to_state)
);
CREATE INDEX roll_events_roll_idx ON pm.roll_events (roll_id, id);

CREATE TABLE pm.roll_layers (
    roll_id          bigint        NOT NULL REFERENCES pm.rolls (roll_id),
    position_id      varchar(50)   NOT NULL,
    exchange         varchar(10)   NOT NULL,
    from_symbol      varchar(50)   NOT NULL,
    from_ce_symbol   varchar(50),
    from_pe_symbol   varchar(50),
    from_strike      integer,
    to_symbol        varchar(50)   NOT NULL,
    to_expiry        varchar(20)   NOT NULL,
    to_contract_month varchar(20),
    to_strike        integer,
    to_ce_symbol     varchar(50),
    to_pe_symbol     varchar(50),
    lots             integer       NOT NULL,  -- held on the old contract
    new_lots         integer       NOT NULL,  -- planned on the new one (whole lots of its size, rounded down)
    lot_size         integer       NOT NULL,
    new_lot_size     integer       NOT NULL,
    close_quantity   integer       NOT NULL,  -- per leg, in the order unit
    open_quantity    integer       NOT NULL,
    point_value      numeric(14,4) NOT NULL,  -- rupees per point per lot, old and new contract
    new_point_value  numeric(14,4) NOT NULL,
    price            numeric(12,2) NOT NULL,  -- the mark the plan was made at (the close orders' reference price)
    entry_price      numeric(12,2) NOT NULL,  -- the layer's entry on the old contract
    close_price      numeric(12,2),
    close_pnl        numeric(15,2),
    open_price       numeric(12,2),
    opened_lots      integer,
    basis            numeric(12,2),           -- open − close: what stops and highest_close were shifted by
    outcome          varchar(10),
    PRIMARY KEY (roll_id, position_id),
    CONSTRAINT roll_layers_lots_check CHECK (lots > 0 AND new_lots > 0 AND lot_size > 0 AND new_lot_size > 0),
    CONSTRAINT roll_layers_outcome_check CHECK (outcome IS NULL OR outcome IN ('rolled', 'resized', 'flat', 'kept'))
);
CREATE INDEX roll_layers_position_idx ON pm.roll_layers (position_id);

ALTER TABLE pm.broker_orders
    ADD COLUMN roll_id  bigint REFERENCES pm.rolls (roll_id),
    ADD COLUMN roll_leg varchar(6),
    ADD CONSTRAINT broker_orders_roll_leg_check
        CHECK ((roll_id IS NULL) = (roll_leg IS NULL) AND (roll_leg IS NULL OR roll_leg IN ('close', 'open', 'unwind')));
CREATE INDEX broker_orders_roll_idx ON pm.broker_orders (roll_id) WHERE roll_id IS NOT NULL;

ALTER TABLE pm.anomalies DROP CONSTRAINT anomalies_kind_check;
ALTER TABLE pm.anomalies
    ADD CONSTRAINT anomalies_kind_check CHECK (kind IN ('exit_never_open', 'pyramid_without_base',
                                                        'pyramid_skips_layer', 'entry_while_base_open',
                                                        'order_needs_review', 'exit_rejected', 'entry_rejected',
                                                        'reconcile_difference', 'roll_failed'));

UPDATE pm.notification_kinds SET source = 'pm.move_roll (78_rollover.sql)' WHERE kind IN ('roll_done', 'roll_failed');

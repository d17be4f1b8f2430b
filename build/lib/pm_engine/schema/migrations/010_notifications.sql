-- 010_notifications
-- The notification outbox (DOMAIN.md section 18, issue 24). An event row is written in the
-- transaction of the thing it reports (pm.notify, called by pm.apply_signal and by triggers on the
-- controls' tables), so an event exists if and only if its cause committed. The background-job
-- leader sends each event once per notification URL: one delivery row per (event, URL), a small
-- state machine whose allowed moves are the rows of pm.notification_transitions. A URL carries
-- credentials, so the database knows it only by its SHA-256 (target_key) and its scheme.

-- what can be reported: one row per kind, so wiring a new cause is one PERFORM pm.notify(kind, data)
CREATE TABLE pm.notification_kinds (
    kind        varchar(40) PRIMARY KEY,
    level       varchar(8)  NOT NULL,
    source      text        NOT NULL,  -- who writes it (or 'direct': sent by the process, never stored)
    description text        NOT NULL,
    CONSTRAINT notification_kinds_level_check CHECK (level IN ('info', 'warning', 'critical'))
);
INSERT INTO pm.notification_kinds (kind, level, source, description) VALUES
    ('signal_executed', 'info', 'pm.apply_signal', 'an entry, pyramid or exit executed, with fill and slippage'),
    ('signal_blocked', 'info', 'pm.apply_signal', 'a signal the trading controls blocked'),
    ('mode_changed', 'warning', 'trigger on pm.trading_control_history', 'the trading mode changed'),
    ('breaker_tripped', 'critical', 'triggers on pm.trading_control_history and pm.instrument_locks',
     'a breaker tripped (daily loss: exits only; max entries, cooling off: an instrument lock)'),
    ('instrument_locked', 'warning', 'trigger on pm.instrument_locks', 'an operator locked an instrument'),
    ('daily_report', 'info', 'the leader, at notify.report_time (IST)', 'the daily report of the trading day'),
    ('order_rejected', 'critical', 'pm.move_order (72_order_states.sql)', 'the broker rejected an order'),
    ('order_unknown', 'critical', 'pm.move_order (72_order_states.sql)', 'an order is in an unknown state'),
    ('order_needs_review', 'critical', 'pm.move_order (72_order_states.sql)', 'an order needs review'),
    ('reconciliation_difference', 'critical', 'not wired yet: reconciliation (issue 21)',
     'the broker''s positions differ from the book'),
    ('broker_session', 'critical', 'not wired yet: the broker (issue 21)', 'the broker session expired'),
    ('roll_done', 'info', 'not wired yet: rollover', 'a rollover completed'),
    ('roll_failed', 'critical', 'not wired yet: rollover', 'a rollover failed');

CREATE TABLE pm.notification_events (
    id          bigserial   PRIMARY KEY,
    kind        varchar(40) NOT NULL REFERENCES pm.notification_kinds (kind),
    created_at  timestamptz NOT NULL DEFAULT now(),
    dedup_key   text,        -- e.g. the daily report's day: at most one event per (kind, key)
    fingerprint varchar(64), -- the signal that caused it, if one did
    data        jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT notification_events_dedup_key UNIQUE (kind, dedup_key)
);
CREATE INDEX notification_events_created_at_idx ON pm.notification_events (created_at);

-- the notification URLs the leader has sent to, by SHA-256 of the URL (never the URL itself)
CREATE TABLE pm.notification_targets (
    target_key     char(64)    PRIMARY KEY,
    scheme         varchar(32) NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    decided_before timestamptz NOT NULL DEFAULT now() - interval '1 minute',  -- every older event has a delivery
    CONSTRAINT notification_targets_key_check CHECK (target_key ~ '^[0-9a-f]{64}$')
);

-- one row per (event, URL): pending -> sending -> sent (or back to pending with a backoff, or given up)
CREATE TABLE pm.notification_deliveries (
    event_id        bigint      NOT NULL REFERENCES pm.notification_events (id) ON DELETE CASCADE,
    target_key      char(64)    NOT NULL REFERENCES pm.notification_targets (target_key) ON DELETE CASCADE,
    state           varchar(10) NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      varchar(50),
    lease_until     timestamptz,
    last_error      text,
    digest_id       bigint,      -- sent inside the digest named by its first event's id
    done_at         timestamptz, -- sent, given up or filtered
    CONSTRAINT notification_deliveries_pkey PRIMARY KEY (event_id, target_key),
    CONSTRAINT notification_deliveries_state_check
        CHECK (state IN ('pending', 'sending', 'sent', 'given_up', 'filtered')),
    CONSTRAINT notification_deliveries_error_check CHECK (octet_length(last_error) <= 1000)
);
CREATE INDEX notification_deliveries_due_idx ON pm.notification_deliveries (target_key, next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX notification_deliveries_sent_idx ON pm.notification_deliveries (target_key, done_at)
    WHERE state = 'sent';

-- the delivery state machine as data: every (from, to) a delivery may move along (PM070 otherwise)
CREATE TABLE pm.notification_transitions (
    from_state varchar(10) NOT NULL,
    to_state   varchar(10) NOT NULL,
    why        text        NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO pm.notification_transitions (from_state, to_state, why) VALUES
    ('pending', 'sending', 'claimed by the leader for a send'),
    ('sending', 'sending', 'reclaimed after an interrupted send (the lease ran out or its leader is gone)'),
    ('sending', 'sent', 'the service accepted it'),
    ('sending', 'pending', 'the send failed: retried after a backoff'),
    ('pending', 'given_up', 'undelivered a day after the event'),
    ('sending', 'given_up', 'undelivered a day after the event');

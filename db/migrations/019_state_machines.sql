-- 019_state_machines
-- Issue 30: one transitions table for every state machine. pm.state_machines names each machine (order,
-- roll, notification delivery) with the SQLSTATE its refused moves raise; pm.transitions holds every
-- allowed (machine, from, to) with what it means, and pm.check_transition (02_book_and_machines.sql)
-- is the one check. The three whitelists of migrations 008, 010 and 012 become its partitions under
-- their old names (pm.order_transitions, pm.roll_transitions, pm.notification_transitions): their rows
-- stay where the events tables' foreign keys point, a row inserted into pm.transitions lands in its
-- machine's partition, and a new machine is a row of pm.state_machines plus a partition.

CREATE TABLE pm.state_machines (
    machine  varchar(20) PRIMARY KEY,
    sqlstate char(5)     NOT NULL CHECK (sqlstate ~ '^PM[0-9]{3}$'),
    meaning  text        NOT NULL
);
INSERT INTO pm.state_machines (machine, sqlstate, meaning) VALUES
    ('order', 'PM041', 'a broker order: queued → sending → open → filled, and its other ends (migration 008)'),
    ('roll', 'PM080', 'a roll of an instrument group to its next contract (migration 012)'),
    ('notification', 'PM070', 'a notification''s delivery to one URL (migration 010)');

CREATE TABLE pm.transitions (
    machine    varchar(20) NOT NULL REFERENCES pm.state_machines (machine),
    from_state varchar(20) NOT NULL,
    to_state   varchar(20) NOT NULL,
    meaning    text        NOT NULL,
    -- unique, not a primary key: each partition keeps its own (from_state, to_state) key, which the
    -- events tables' foreign keys reference
    CONSTRAINT transitions_key UNIQUE (machine, from_state, to_state)
) PARTITION BY LIST (machine);

-- the delivery whitelist takes the others' shape (wider states, its why named meaning)
ALTER TABLE pm.notification_transitions
    ALTER COLUMN from_state TYPE varchar(20),
    ALTER COLUMN to_state TYPE varchar(20);
ALTER TABLE pm.notification_transitions RENAME COLUMN why TO meaning;

ALTER TABLE pm.order_transitions
    ADD COLUMN machine varchar(20) NOT NULL DEFAULT 'order' CONSTRAINT order_transitions_machine_check
        CHECK (machine = 'order');
ALTER TABLE pm.roll_transitions
    ADD COLUMN machine varchar(20) NOT NULL DEFAULT 'roll' CONSTRAINT roll_transitions_machine_check
        CHECK (machine = 'roll');
ALTER TABLE pm.notification_transitions
    ADD COLUMN machine varchar(20) NOT NULL DEFAULT 'notification' CONSTRAINT notification_transitions_machine_check
        CHECK (machine = 'notification');

ALTER TABLE pm.transitions ATTACH PARTITION pm.order_transitions FOR VALUES IN ('order');
ALTER TABLE pm.transitions ATTACH PARTITION pm.roll_transitions FOR VALUES IN ('roll');
ALTER TABLE pm.transitions ATTACH PARTITION pm.notification_transitions FOR VALUES IN ('notification');

-- 78_rollover.sql is split by concern (issue 30): a roll's notifications come from 79_roll_machine.sql
UPDATE pm.notification_kinds SET source = 'pm.move_roll (79_roll_machine.sql)' WHERE kind IN ('roll_done', 'roll_failed');

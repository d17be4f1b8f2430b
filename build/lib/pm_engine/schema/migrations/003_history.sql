-- 003_history
-- Append-only history of positions, the portfolio row and pyramiding state (DOMAIN.md section 11).
-- Rows are written by triggers (db/functions/90_history.sql) in the transaction of the change, so a
-- history row exists if and only if its change committed. Never updated or deleted (PM007).

-- the initial risk of a position, (entry - initial stop) x lots x point value, set by the engine at
-- entry (the database does not know point values): the denominator of a trade's R multiple
ALTER TABLE pm.portfolio_positions ADD COLUMN initial_risk numeric(15,2);
ALTER TABLE pm.portfolio_positions ADD CONSTRAINT portfolio_positions_initial_risk_check
    CHECK (initial_risk IS NULL OR initial_risk >= 0);

-- the weight of unrealized P&L in blended equity, written by the engine from its configuration
ALTER TABLE pm.portfolio_state ADD COLUMN blended_weight numeric(5,4) NOT NULL DEFAULT 0.5;
ALTER TABLE pm.portfolio_state ADD CONSTRAINT portfolio_state_blended_weight_check
    CHECK (blended_weight BETWEEN 0 AND 1);

-- every version of every position row
CREATE TABLE pm.position_history (
    history_id  bigserial     PRIMARY KEY,
    recorded_at timestamptz   NOT NULL,
    fingerprint varchar(64),
    operation   varchar(6)    NOT NULL,
    position_id varchar(50)   NOT NULL,
    version     integer       NOT NULL,
    status      varchar(20)   NOT NULL,
    row_data    jsonb         NOT NULL,
    CONSTRAINT position_history_operation_check CHECK (operation IN ('insert', 'update', 'delete', 'seed'))
);
-- few indexes: each costs every signal a write; as-of reads walk a position's versions by id, the
-- equity curve reads by time; the rest are sequential scans of rarely read tables
CREATE INDEX position_history_position_idx ON pm.position_history (position_id, history_id);

-- every version of the portfolio row, with the equity at that commit
CREATE TABLE pm.portfolio_history (
    history_id     bigserial     PRIMARY KEY,
    recorded_at    timestamptz   NOT NULL,
    fingerprint    varchar(64),
    version        integer       NOT NULL,
    closed_equity  numeric(15,2) NOT NULL,
    unrealized_pnl numeric(15,2) NOT NULL,
    open_equity    numeric(15,2) NOT NULL,
    blended_equity numeric(15,2) NOT NULL,
    row_data       jsonb         NOT NULL
);
CREATE INDEX portfolio_history_recorded_at_idx ON pm.portfolio_history (recorded_at);

-- every change of an instrument's pyramiding state (row_data NULL: cleared)
CREATE TABLE pm.pyramiding_history (
    history_id  bigserial   PRIMARY KEY,
    recorded_at timestamptz NOT NULL,
    fingerprint varchar(64),
    operation   varchar(6)  NOT NULL,
    instrument  varchar(20) NOT NULL,
    row_data    jsonb,
    CONSTRAINT pyramiding_history_operation_check CHECK (operation IN ('insert', 'update', 'delete', 'seed'))
);

-- history starts with what the tables hold when this migration runs
INSERT INTO pm.position_history (recorded_at, operation, position_id, version, status, row_data)
SELECT clock_timestamp(), 'seed', p.position_id, p.version, p.status, to_jsonb(p) FROM pm.portfolio_positions p;
INSERT INTO pm.pyramiding_history (recorded_at, operation, instrument, row_data)
SELECT clock_timestamp(), 'seed', y.instrument, to_jsonb(y) FROM pm.pyramiding_state y;
INSERT INTO pm.portfolio_history (recorded_at, version, closed_equity, unrealized_pnl, open_equity, blended_equity,
                                  row_data)
SELECT clock_timestamp(), s.version, s.closed_equity, u.total, s.closed_equity + u.total,
       round(s.closed_equity + s.blended_weight * u.total, 2), to_jsonb(s)
  FROM pm.portfolio_state s,
       LATERAL (SELECT coalesce(sum(unrealized_pnl), 0) AS total FROM pm.portfolio_positions
                 WHERE status = 'open') u;

-- 001_initial_schema
-- The five phase-1 tables of pm-engine (DOMAIN.md section 7), money as numeric, time as timestamptz.
-- Applied once by `make db-deploy`, which records it with its checksum in pm.schema_migrations.

CREATE TABLE pm.portfolio_positions (
    position_id          varchar(50)   PRIMARY KEY,
    instrument           varchar(20)   NOT NULL,
    status               varchar(20)   NOT NULL DEFAULT 'open',
    entry_timestamp      timestamptz   NOT NULL,
    entry_price          numeric(12,2) NOT NULL,
    lots                 integer       NOT NULL,
    quantity             integer       NOT NULL,
    initial_stop         numeric(12,2) NOT NULL,
    current_stop         numeric(12,2) NOT NULL,
    highest_close        numeric(12,2) NOT NULL,
    unrealized_pnl       numeric(15,2) NOT NULL DEFAULT 0,
    realized_pnl         numeric(15,2) NOT NULL DEFAULT 0,
    rollover_status      varchar(20)   NOT NULL DEFAULT 'none',
    original_expiry      varchar(20),
    original_strike      integer,
    original_entry_price numeric(12,2),
    rollover_timestamp   timestamptz,
    rollover_pnl         numeric(15,2) NOT NULL DEFAULT 0,
    rollover_count       integer       NOT NULL DEFAULT 0,
    strike               integer,
    expiry               varchar(20),
    pe_symbol            varchar(50),
    ce_symbol            varchar(50),
    pe_order_id          varchar(50),
    ce_order_id          varchar(50),
    pe_entry_price       numeric(12,2),
    ce_entry_price       numeric(12,2),
    contract_month       varchar(20),
    futures_symbol       varchar(50),
    futures_order_id     varchar(50),
    atr                  numeric(12,2) NOT NULL DEFAULT 0,
    limiter              varchar(50),
    risk_contribution    numeric(8,4)  NOT NULL DEFAULT 0,
    vol_contribution     numeric(8,4)  NOT NULL DEFAULT 0,
    is_base_position     boolean       NOT NULL DEFAULT false,
    exit_timestamp       timestamptz,
    exit_price           numeric(12,2),
    exit_reason          varchar(50),
    version              integer       NOT NULL DEFAULT 1,
    created_at           timestamptz   NOT NULL DEFAULT now(),
    updated_at           timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT portfolio_positions_status_check
        CHECK (status IN ('open', 'closed', 'partial')),
    CONSTRAINT portfolio_positions_rollover_status_check
        CHECK (rollover_status IN ('none', 'pending', 'in_progress', 'rolled', 'failed')),
    CONSTRAINT portfolio_positions_lots_check
        CHECK (lots >= 0 AND (lots > 0 OR status <> 'open')),
    CONSTRAINT portfolio_positions_quantity_check CHECK (quantity >= 0),
    CONSTRAINT portfolio_positions_entry_price_check CHECK (entry_price > 0),
    CONSTRAINT portfolio_positions_version_check CHECK (version >= 1)
);

CREATE INDEX portfolio_positions_instrument_status_idx ON pm.portfolio_positions (instrument, status);
CREATE INDEX portfolio_positions_status_idx ON pm.portfolio_positions (status);
CREATE INDEX portfolio_positions_created_at_idx ON pm.portfolio_positions (created_at);
CREATE INDEX portfolio_positions_instrument_entry_idx ON pm.portfolio_positions (instrument, entry_timestamp);
CREATE INDEX portfolio_positions_rollover_idx ON pm.portfolio_positions (rollover_status, expiry);

CREATE TABLE pm.portfolio_state (
    id                 integer       PRIMARY KEY DEFAULT 1,
    initial_capital    numeric(15,2) NOT NULL,
    closed_equity      numeric(15,2) NOT NULL,
    total_risk_amount  numeric(15,2) NOT NULL DEFAULT 0,
    total_risk_percent numeric(8,4)  NOT NULL DEFAULT 0,
    total_vol_amount   numeric(15,2) NOT NULL DEFAULT 0,
    margin_used        numeric(15,2) NOT NULL DEFAULT 0,
    equity_high        numeric(15,2) NOT NULL DEFAULT 0,
    version            integer       NOT NULL DEFAULT 1,
    updated_at         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT portfolio_state_single_row_check CHECK (id = 1),
    CONSTRAINT portfolio_state_initial_capital_check CHECK (initial_capital > 0),
    CONSTRAINT portfolio_state_version_check CHECK (version >= 1)
);

INSERT INTO pm.portfolio_state (id, initial_capital, closed_equity, equity_high)
VALUES (1, 5000000, 5000000, 5000000);

CREATE TABLE pm.pyramiding_state (
    instrument         varchar(20)   PRIMARY KEY,
    last_pyramid_price numeric(12,2),
    base_position_id   varchar(50)   NULL
        REFERENCES pm.portfolio_positions (position_id) ON DELETE SET NULL ON UPDATE CASCADE,
    updated_at         timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE pm.signal_log (
    id                    bigserial    PRIMARY KEY,
    instrument            varchar(20)  NOT NULL,
    signal_type           varchar(20)  NOT NULL,
    position              varchar(20)  NOT NULL,
    signal_timestamp      timestamptz  NOT NULL,
    fingerprint           varchar(64)  NOT NULL,
    is_duplicate          boolean      NOT NULL DEFAULT false,
    processed_at          timestamptz  NOT NULL DEFAULT now(),
    processed_by_instance varchar(50),
    processing_status     varchar(20),
    reason                text,
    payload               jsonb,
    CONSTRAINT signal_log_fingerprint_key UNIQUE (fingerprint),
    CONSTRAINT signal_log_processing_status_check
        CHECK (processing_status IN ('executed', 'duplicate', 'rejected', 'blocked'))
);

CREATE INDEX signal_log_processed_at_idx ON pm.signal_log (processed_at);
CREATE INDEX signal_log_instrument_ts_idx ON pm.signal_log (instrument, signal_timestamp);

CREATE TABLE pm.instance_metadata (
    instance_id           varchar(50)  PRIMARY KEY,
    started_at            timestamptz  NOT NULL DEFAULT now(),
    last_heartbeat        timestamptz  NOT NULL DEFAULT now(),
    last_signal_processed timestamptz,
    is_leader             boolean      NOT NULL DEFAULT false,
    leader_acquired_at    timestamptz,
    status                varchar(20)  NOT NULL,
    hostname              varchar(100),
    port                  integer,
    version               varchar(20),
    created_at            timestamptz  NOT NULL DEFAULT now(),
    updated_at            timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT instance_metadata_status_check CHECK (status IN ('active', 'standby', 'crashed'))
);

CREATE INDEX instance_metadata_heartbeat_idx ON pm.instance_metadata (last_heartbeat);

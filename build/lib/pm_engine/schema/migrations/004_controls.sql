-- 004_controls
-- Trading controls (DOMAIN.md section 12) and the refusal audit: the trading mode and its history,
-- breaker settings, instrument locks, the open equity at the start of each IST trading day (the
-- daily-loss breaker's reference), anomalies, and the log of refused webhook requests.

-- one row: the mode every instance obeys, enforced inside pm.apply_signal
CREATE TABLE pm.trading_control (
    id         integer     PRIMARY KEY DEFAULT 1,
    mode       varchar(12) NOT NULL DEFAULT 'active',
    reason     text,
    changed_by text        NOT NULL DEFAULT 'migration 004',
    changed_at timestamptz NOT NULL DEFAULT now(),
    version    integer     NOT NULL DEFAULT 1,
    CONSTRAINT trading_control_single_row_check CHECK (id = 1),
    CONSTRAINT trading_control_mode_check CHECK (mode IN ('active', 'exits_only', 'halted'))
);
INSERT INTO pm.trading_control DEFAULT VALUES;

-- every change of mode: who (CLI user, dashboard session, breaker), when, why
CREATE TABLE pm.trading_control_history (
    id         bigserial   PRIMARY KEY,
    mode       varchar(12) NOT NULL,
    reason     text,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL,
    version    integer     NOT NULL
);
INSERT INTO pm.trading_control_history (mode, reason, changed_by, changed_at, version)
SELECT mode, reason, changed_by, changed_at, version FROM pm.trading_control;

-- one row: the breakers' settings; NULL switches a breaker off
CREATE TABLE pm.breaker_settings (
    id                  integer      PRIMARY KEY DEFAULT 1,
    daily_loss_pct      numeric(6,3),
    max_entries_per_day integer,
    cooling_off_losses  integer,
    cooling_off_hours   numeric(8,2),
    updated_by          text         NOT NULL DEFAULT 'migration 004',
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT breaker_settings_single_row_check CHECK (id = 1),
    CONSTRAINT breaker_settings_daily_loss_check CHECK (daily_loss_pct > 0 AND daily_loss_pct < 100),
    CONSTRAINT breaker_settings_entries_check CHECK (max_entries_per_day > 0),
    CONSTRAINT breaker_settings_cooling_check CHECK ((cooling_off_losses IS NULL) = (cooling_off_hours IS NULL)
                                                     AND cooling_off_losses > 0 AND cooling_off_hours > 0)
);
INSERT INTO pm.breaker_settings DEFAULT VALUES;

-- instrument locks: new bases and pyramids on the instrument are blocked until locked_until
CREATE TABLE pm.instrument_locks (
    id           bigserial   PRIMARY KEY,
    instrument   varchar(20) NOT NULL,
    locked_until timestamptz NOT NULL,
    reason       text        NOT NULL,
    source       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text
);
CREATE INDEX instrument_locks_active_idx ON pm.instrument_locks (instrument, locked_until) WHERE released_at IS NULL;

-- open equity before the first signal of each IST day (by signal time), for the daily-loss breaker
CREATE TABLE pm.day_start_equity (
    day         date          PRIMARY KEY,
    open_equity numeric(15,2) NOT NULL,
    recorded_at timestamptz   NOT NULL DEFAULT now()
);

-- alerts that only make sense if an earlier one was missed (still answered blocked)
CREATE TABLE pm.anomalies (
    id          bigserial   PRIMARY KEY,
    detected_at timestamptz NOT NULL DEFAULT now(),
    kind        varchar(30) NOT NULL,
    fingerprint varchar(64) NOT NULL,
    instrument  varchar(20) NOT NULL,
    signal_type varchar(20) NOT NULL,
    position    varchar(20) NOT NULL,
    reason      text,
    instance    varchar(50),
    CONSTRAINT anomalies_kind_check CHECK (kind IN ('exit_never_open', 'pyramid_without_base',
                                                    'pyramid_skips_layer', 'entry_while_base_open'))
);
CREATE INDEX anomalies_detected_at_idx ON pm.anomalies (detected_at);

-- refused webhook requests (400/401/403/413/422/429/503), written off the request path in batches
CREATE TABLE pm.request_log (
    id           bigserial   PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    source       varchar(64) NOT NULL,
    status       smallint    NOT NULL,
    reason       text        NOT NULL,
    field        varchar(64),
    body_sha256  char(64)    NOT NULL,
    body_excerpt text        NOT NULL,
    user_agent   text,
    instance     varchar(50),
    CONSTRAINT request_log_status_check CHECK (status BETWEEN 400 AND 599),
    CONSTRAINT request_log_excerpt_check CHECK (octet_length(body_excerpt) <= 8192)
);
CREATE INDEX request_log_received_at_idx ON pm.request_log (received_at);

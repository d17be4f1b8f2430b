-- 009_capital
-- The capital ledger (DOMAIN.md section 17): every deposit and withdrawal, append-only, with its
-- amount, time, note and who. Written only by pm.record_capital_flow (db/functions/64_capital.sql),
-- in the transaction that moves closed equity and equity_high by the amount, so a flow is in the
-- ledger if and only if the portfolio moved with it. Never updated or deleted (PM007).

CREATE TABLE pm.capital_flows (
    id                bigserial     PRIMARY KEY,
    recorded_at       timestamptz   NOT NULL,
    kind              varchar(10)   NOT NULL,
    amount            numeric(15,2) NOT NULL,
    -- + for a deposit, - for a withdrawal: what closed equity moved by
    signed_amount     numeric(15,2) GENERATED ALWAYS AS (CASE WHEN kind = 'deposit' THEN amount ELSE -amount END) STORED,
    note              text,
    recorded_by       text          NOT NULL,
    closed_equity     numeric(15,2) NOT NULL,  -- after the flow
    -- the portfolio version the flow wrote: its portfolio_history row is the equity point of the flow
    portfolio_version integer       NOT NULL,
    CONSTRAINT capital_flows_kind_check CHECK (kind IN ('deposit', 'withdrawal')),
    CONSTRAINT capital_flows_amount_check CHECK (amount > 0),
    CONSTRAINT capital_flows_portfolio_version_key UNIQUE (portfolio_version)
);

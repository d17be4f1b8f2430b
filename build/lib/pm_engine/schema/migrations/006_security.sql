-- Issue 19: server-side login sessions, the refusal audit's global budget, the route a refusal came to.

-- one row per dashboard login: the cookie is a random value; the row keeps only its MAC under a key
-- derived from the read token (so a new token ends every session, and the table alone lets nobody in)
CREATE TABLE pm.sessions (
    digest      char(64)    PRIMARY KEY,
    source      varchar(64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CONSTRAINT sessions_digest_check CHECK (digest ~ '^[0-9a-f]{64}$'),
    CONSTRAINT sessions_expiry_check CHECK (expires_at > created_at)
);
CREATE INDEX sessions_expires_at_idx ON pm.sessions (expires_at);

-- the refusal audit's budget, for every instance together: past it in a day, refusals are counted, not stored
CREATE TABLE pm.audit_budget (
    id             boolean PRIMARY KEY DEFAULT true,
    rows_per_day   integer NOT NULL DEFAULT 50000,
    bytes_per_day  bigint  NOT NULL DEFAULT 67108864,
    CONSTRAINT audit_budget_single_row_check CHECK (id),
    CONSTRAINT audit_budget_positive_check CHECK (rows_per_day >= 0 AND bytes_per_day >= 0)
);
INSERT INTO pm.audit_budget DEFAULT VALUES;

-- what each UTC day's refusals used of the budget, and how many were counted instead of stored
CREATE TABLE pm.request_log_days (
    day            date   PRIMARY KEY,
    rows_written   bigint NOT NULL DEFAULT 0,
    bytes_written  bigint NOT NULL DEFAULT 0,
    rows_dropped   bigint NOT NULL DEFAULT 0
);

-- refusals now come from every protected route too (bad Bearer tokens, cross-site posts, oversized bodies)
ALTER TABLE pm.request_log ADD COLUMN route varchar(100);

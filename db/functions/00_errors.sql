-- pm.raise_error
-- Raises one of pm-engine's named errors (db/README.md, "Error contract") with its SQLSTATE.
CREATE OR REPLACE FUNCTION pm.raise_error(code text, message text, detail text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF code IS NULL OR code !~ '^PM[0-9]{3}$' THEN
        RAISE EXCEPTION 'pm.raise_error: % is not a pm-engine SQLSTATE', code USING ERRCODE = 'PM004';
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = coalesce(detail, '');
END;
$$;

-- pm.require
-- Raises PM004 (invalid argument) naming the field when a required argument is NULL.
CREATE OR REPLACE FUNCTION pm.require(value anyelement, field text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM pm.raise_error('PM004', format('%s is required', field));
    END IF;
END;
$$;

-- pm.require_retention
-- Raises PM004 when a retention is NULL or negative (the cleanup functions' one argument check).
CREATE OR REPLACE FUNCTION pm.require_retention(retention interval)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.require(retention, 'retention');
    IF retention < interval '0' THEN
        PERFORM pm.raise_error('PM004', format('retention must not be negative, got %s', retention));
    END IF;
END;
$$;

-- pm.require_retention_floor
-- Raises PM020 when a cleanup's retention is below its floor and the session is not the schema owner's
-- (the engine's role cannot erase its own traces; the owner, in psql, may go lower).
CREATE OR REPLACE FUNCTION pm.require_retention_floor(retention interval, floor interval, what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.require_retention(retention);
    IF retention < floor AND NOT pg_has_role(session_user,
            (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = 'pm'), 'MEMBER') THEN
        PERFORM pm.raise_error('PM020', format('%s retention must be at least %s, got %s (only the database owner '
                                               'may go lower)', what, floor, retention));
    END IF;
END;
$$;

-- pm.check_principal
-- Raises PM095 unless a principal (who a book-writing change is recorded as) has one of the checked
-- forms: cli:user@host, local:<address>, dashboard:<address>, api:<address> (the web's principals and
-- the sender's address), telegram:<numeric user id>. No other free text is recorded as who did it.
CREATE OR REPLACE FUNCTION pm.check_principal(value text, field text)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF value IS NULL OR value !~ ('^(cli:[A-Za-z0-9._$-]{1,64}@[A-Za-z0-9._-]{1,64}'
                                  '|(local|dashboard|api):[A-Za-z0-9.:_-]{1,64}|telegram:[0-9]{1,20})$') THEN
        PERFORM pm.raise_error('PM095', format('%s must be cli:user@host, local:<address>, dashboard:<address>, '
                                               'api:<address> or telegram:<user id>, got %s', field,
                                               coalesce(quote_literal(left(value, 80)), 'NULL')));
    END IF;
END;
$$;

-- Sessions (migration 006): dashboard logins as server-side records, so a logout ends a session on
-- every instance sharing the database. Rows hold the MAC of the cookie, never the cookie itself.

-- pm.create_session
-- Records a new session (its digest, expiry and the address that logged in) and forgets sessions
-- that ended more than a day ago. PM004 for a malformed digest or an expiry not in the next 31 days.
CREATE OR REPLACE FUNCTION pm.create_session(p_digest text, p_expires_at timestamptz, p_source text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_digest IS NULL OR p_digest !~ '^[0-9a-f]{64}$' THEN
        PERFORM pm.raise_error('PM004', 'session digest must be 64 hex digits');
    END IF;
    IF p_expires_at IS NULL OR p_expires_at <= now() OR p_expires_at > now() + interval '31 days' THEN
        PERFORM pm.raise_error('PM004', format('session expiry must be within the next 31 days, got %s',
                                               p_expires_at));
    END IF;
    DELETE FROM pm.sessions WHERE coalesce(revoked_at, expires_at) < now() - interval '1 day';
    INSERT INTO pm.sessions (digest, source, expires_at) VALUES (p_digest, left(p_source, 64), p_expires_at);
END;
$$;

-- pm.session_active
-- True when the session exists, has not expired and was not revoked.
CREATE OR REPLACE FUNCTION pm.session_active(p_digest text)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pm.sessions
                    WHERE digest = p_digest AND revoked_at IS NULL AND expires_at > now());
$$;

-- pm.revoke_session
-- Ends a session (logout); true when it was active.
CREATE OR REPLACE FUNCTION pm.revoke_session(p_digest text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    revoked integer;
BEGIN
    UPDATE pm.sessions SET revoked_at = now()
     WHERE digest = p_digest AND revoked_at IS NULL AND expires_at > now();
    GET DIAGNOSTICS revoked = ROW_COUNT;
    RETURN revoked > 0;
END;
$$;

-- Roles: the least-privilege grants for the role a pm-engine process connects as.

-- pm.grant_app_role
-- Grants an existing role what the engine needs and nothing more: USAGE on the schema and EXECUTE
-- on the functions, which run with their owner's rights (SECURITY DEFINER, search_path pinned),
-- so every write goes through them and their checks; SELECT on the two tables the engine reads
-- directly (signal-log counts, the schema version). No table writes, no TRUNCATE, no DDL: the
-- role owns nothing. Grants from an older version are revoked. PM003 when the role does not exist.
CREATE OR REPLACE FUNCTION pm.grant_app_role(p_role text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pm.require(p_role, 'role');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        PERFORM pm.raise_error('PM003', format('role %s does not exist (CREATE ROLE ... LOGIN first)', p_role));
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pm FROM %I', p_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pm FROM %I', p_role);
    EXECUTE format('GRANT USAGE ON SCHEMA pm TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pm TO %I', p_role);
    EXECUTE format('REVOKE EXECUTE ON FUNCTION pm.grant_app_role(text) FROM %I', p_role);
    EXECUTE format('GRANT SELECT ON pm.signal_log, pm.schema_migrations TO %I', p_role);
END;
$$;

-- only the owner may hand out grants (functions are executable by PUBLIC by default)
REVOKE EXECUTE ON FUNCTION pm.grant_app_role(text) FROM PUBLIC;

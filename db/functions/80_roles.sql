-- Roles: the least-privilege grants for the role a pm-engine process connects as.

-- pm.grant_app_role
-- Grants an existing role exactly what the engine needs: USAGE on the schema, EXECUTE on the
-- functions, the row operations those functions perform (no TRUNCATE, no DDL: the role owns
-- nothing, so it cannot drop or alter a table), SELECT on the migration record and the sequences.
-- Run it as the owner after each deploy that adds tables; PM003 when the role does not exist.
CREATE OR REPLACE FUNCTION pm.grant_app_role(p_role text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pm.require(p_role, 'role');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        PERFORM pm.raise_error('PM003', format('role %s does not exist (CREATE ROLE ... LOGIN first)', p_role));
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA pm TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pm TO %I', p_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON pm.portfolio_positions, pm.pyramiding_state, '
                   'pm.instance_metadata, pm.broker_orders TO %I', p_role);
    EXECUTE format('GRANT DELETE ON pm.pyramiding_state, pm.signal_log TO %I', p_role);
    EXECUTE format('GRANT SELECT, UPDATE ON pm.portfolio_state TO %I', p_role);
    EXECUTE format('GRANT SELECT, INSERT ON pm.signal_log TO %I', p_role);
    EXECUTE format('GRANT SELECT ON pm.schema_migrations TO %I', p_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pm TO %I', p_role);
END;
$$;

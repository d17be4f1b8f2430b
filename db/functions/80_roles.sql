-- Roles: the least-privilege grants for the role a pm-engine process connects as.

-- pm.app_role_functions
-- The functions the engine's role may execute, by name (every overload): exactly those the engine calls
-- by name from pm_engine/store/queries.sql on its paths, each of which checks what it writes. Money
-- moves only through the signal (apply_signal, which derives closed equity from what it closes), fill
-- (record_order_fill and the order transitions, which book from the broker's fills), roll and capital
-- (record_capital_flow, with a checked principal) paths; no raw position or portfolio upsert, no
-- fingerprint logged outside apply_signal. db/README.md lists them; db/tests/80_roles.sql fails on any new one.
CREATE OR REPLACE FUNCTION pm.app_role_functions()
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[
        -- the signal path and the state it reads
        'apply_signal', 'lock_for_decision', 'apply_state', 'load_state', 'state_if_moved',
        'get_portfolio_state', 'get_open_positions', 'get_position', 'get_pyramiding_state',
        -- instances, leadership, cleanup, audit, sessions
        'register_instance', 'heartbeat_instance', 'sweep_stale_instances', 'claim_leadership', 'list_instances',
        'stop_instance',
        'cleanup_signal_log', 'cleanup_request_log', 'log_refusals', 'refusals', 'audit_usage',
        'create_session', 'session_active', 'revoke_session',
        -- reads: history, statistics, dashboard, observability
        'state_as_of', 'equity_curve', 'equity_curve_sampled', 'trades', 'pnl_by_period', 'trade_stats',
        'recent_signals', 'anomalies_since', 'anomaly_counts', 'metrics_snapshot', 'table_checksums',
        -- trading controls
        'get_trading_mode', 'set_trading_mode', 'trading_mode_history', 'get_breakers', 'set_breakers',
        'lock_instrument', 'unlock_instrument', 'active_locks',
        -- capital
        'record_capital_flow', 'capital_ledger', 'capital_totals',
        -- orders: the outbox, the sender, the fill path, the trader's review, reconciliation
        'fill_paper_orders', 'queued_orders', 'orders_for_signal', 'sendable_orders', 'order_sending',
        'order_accepted', 'order_rejected', 'order_unknown', 'order_cancelled', 'order_send_later',
        'record_order_fill', 'expire_stale_entries', 'abandon_sending', 'orders_at_broker',
        'resolve_unknown_order', 'orders_seen_at_broker', 'review_order', 'list_orders', 'book_net_positions',
        'traded_symbols', 'symbols_in_flight', 'sending_signal_price', 'record_reconcile_differences',
        'record_broker_session', 'check_database_identity', 'release_restored_orders',
        -- notifications
        'notify_take', 'notify_done', 'record_notification', 'notification_log', 'notification_counts',
        'cleanup_notifications',
        -- rollover
        'roll_begin', 'roll_send_close', 'roll_abandon', 'roll_expired', 'active_rolls', 'list_rolls',
        'paper_roll_legs']::text[];
$$;

-- pm.grant_app_role
-- Grants an existing role what the engine needs and nothing more: USAGE on the schema and EXECUTE on
-- the functions of pm.app_role_functions() (every other function of the schema is revoked, from the role
-- and from PUBLIC), which run with their owner's rights (SECURITY DEFINER, search_path pinned), so
-- every write goes through them and their checks; SELECT on the two tables the engine reads directly
-- (signal-log counts, the schema version). No table writes, no TRUNCATE, no DDL: the role owns
-- nothing. Grants from an older version are revoked. PM003 when the role does not exist.
CREATE OR REPLACE FUNCTION pm.grant_app_role(p_role text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    PERFORM pm.require(p_role, 'role');
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        PERFORM pm.raise_error('PM003', format('role %s does not exist (CREATE ROLE ... LOGIN first)', p_role));
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pm FROM %I', p_role);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pm FROM %I', p_role);
    EXECUTE 'REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pm FROM PUBLIC';
    EXECUTE format('REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pm FROM %I', p_role);
    EXECUTE format('GRANT USAGE ON SCHEMA pm TO %I', p_role);
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pm'::regnamespace AND p.proname = ANY (pm.app_role_functions()) LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, p_role);
    END LOOP;
    EXECUTE format('GRANT SELECT ON pm.signal_log, pm.schema_migrations TO %I', p_role);
END;
$$;

-- only the owner may hand out grants, and nothing of the schema is executable by PUBLIC (migration 018)
REVOKE EXECUTE ON FUNCTION pm.grant_app_role(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pm.app_role_functions() FROM PUBLIC;

-- a deploy that re-runs this file grants again every role an earlier grant_app_role made an app role (it holds
-- USAGE on the schema and is not its owner): a function recreated or added by this deploy (migration 018 dropped
-- PUBLIC's EXECUTE) reaches the engine's role without a manual step; DATABASE_SETUP.md still says to re-run it
DO $$
DECLARE
    r text;
BEGIN
    FOR r IN SELECT DISTINCT ro.rolname::text
               FROM pg_catalog.pg_namespace n, LATERAL aclexplode(n.nspacl) a
               JOIN pg_catalog.pg_roles ro ON ro.oid = a.grantee
              WHERE n.nspname = 'pm' AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner LOOP
        PERFORM pm.grant_app_role(r);
    END LOOP;
END;
$$;

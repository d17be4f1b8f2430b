-- Instance functions: registration, heartbeats and stale-instance detection in pm.instance_metadata.

-- pm.register_instance
-- Registers (or re-registers after a restart) an engine instance as active with a fresh heartbeat.
CREATE OR REPLACE FUNCTION pm.register_instance(p_instance_id text, p_hostname text DEFAULT NULL,
                                                p_port integer DEFAULT NULL, p_version text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instance_id, 'instance_id');
    INSERT INTO pm.instance_metadata AS im (instance_id, started_at, last_heartbeat, status, hostname, port, version)
    VALUES (p_instance_id, now(), now(), 'active', p_hostname, p_port, p_version)
    ON CONFLICT (instance_id) DO UPDATE
        SET started_at = now(), last_heartbeat = now(), status = 'active', is_leader = false,
            leader_acquired_at = NULL, hostname = excluded.hostname, port = excluded.port,
            version = excluded.version, updated_at = now();
END;
$$;

-- pm.heartbeat_instance
-- Records a heartbeat (and optionally the time of the last signal); PM003 for an unknown instance.
CREATE OR REPLACE FUNCTION pm.heartbeat_instance(p_instance_id text, p_last_signal timestamptz DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instance_id, 'instance_id');
    UPDATE pm.instance_metadata
       SET last_heartbeat = now(), status = 'active',
           last_signal_processed = coalesce(p_last_signal, last_signal_processed), updated_at = now()
     WHERE instance_id = p_instance_id;
    IF NOT FOUND THEN
        PERFORM pm.raise_error('PM003', format('instance %s is not registered', p_instance_id));
    END IF;
END;
$$;

-- pm.get_stale_instances
-- Instances still marked active whose last heartbeat is older than the timeout.
CREATE OR REPLACE FUNCTION pm.get_stale_instances(timeout interval DEFAULT interval '30 seconds')
RETURNS SETOF pm.instance_metadata LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(timeout, 'timeout');
    IF timeout <= interval '0' THEN
        PERFORM pm.raise_error('PM004', format('timeout must be positive, got %s', timeout));
    END IF;
    RETURN QUERY SELECT * FROM pm.instance_metadata
                  WHERE status = 'active' AND last_heartbeat < now() - timeout
                  ORDER BY last_heartbeat;
END;
$$;

-- pm.stop_instance
-- A clean shutdown: the instance is 'stopped' and leads nothing (the sweep leaves it alone: it did not crash).
CREATE OR REPLACE FUNCTION pm.stop_instance(p_instance_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instance_id, 'instance_id');
    UPDATE pm.instance_metadata
       SET status = 'stopped', is_leader = false, leader_acquired_at = NULL, updated_at = now()
     WHERE instance_id = p_instance_id;
END;
$$;

-- pm.sweep_stale_instances
-- Marks stale active instances 'crashed' (dropping any leadership); returns how many were marked.
CREATE OR REPLACE FUNCTION pm.sweep_stale_instances(timeout interval DEFAULT interval '30 seconds')
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    swept integer;
BEGIN
    UPDATE pm.instance_metadata
       SET status = 'crashed', is_leader = false, leader_acquired_at = NULL, updated_at = now()
     WHERE instance_id IN (SELECT instance_id FROM pm.get_stale_instances(timeout));
    GET DIAGNOSTICS swept = ROW_COUNT;
    RETURN swept;
END;
$$;

-- pm.claim_leadership
-- Records that this instance now runs the background jobs (it holds the jobs' advisory lock);
-- every other instance loses the flag. PM003 for an unknown instance.
CREATE OR REPLACE FUNCTION pm.claim_leadership(p_instance_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instance_id, 'instance_id');
    UPDATE pm.instance_metadata
       SET is_leader = (instance_id = p_instance_id),
           leader_acquired_at = CASE WHEN instance_id = p_instance_id THEN now() END, updated_at = now()
     WHERE is_leader OR instance_id = p_instance_id;
    IF NOT EXISTS (SELECT 1 FROM pm.instance_metadata WHERE instance_id = p_instance_id) THEN
        PERFORM pm.raise_error('PM003', format('instance %s is not registered', p_instance_id));
    END IF;
END;
$$;

-- pm.list_instances
-- Every instance with its heartbeat age in seconds, and whether it is stale (silent longer than the
-- timeout without a clean stop) or marked crashed: the dashboard's instance list ('stopped': shut down cleanly).
CREATE OR REPLACE FUNCTION pm.list_instances(timeout interval DEFAULT interval '30 seconds')
RETURNS TABLE (instance_id varchar, hostname varchar, port integer, status varchar, is_leader boolean,
               started_at timestamptz, last_heartbeat timestamptz, heartbeat_age_s numeric, stale boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.instance_id, i.hostname, i.port, i.status, i.is_leader, i.started_at, i.last_heartbeat,
           round(extract(epoch FROM now() - i.last_heartbeat)::numeric, 1),
           i.status = 'crashed'
           OR (i.status <> 'stopped' AND now() - i.last_heartbeat > coalesce(timeout, interval '30 seconds'))
      FROM pm.instance_metadata i ORDER BY i.status = 'crashed', i.instance_id;
$$;

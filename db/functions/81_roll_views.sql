-- Rollover, its views: what is rolling (pm.roll_blocks, asked by every signal through pm.control_blocks), the
-- rolls in flight the leader resumes, and the rolls with their layers, legs and events for the CLI, API and
-- dashboard.

-- pm.roll_blocks
-- Why a signal on an instrument must wait: 'rolling: …' while its group's roll is in flight (NULL: free).
-- Exits wait too: an exit decided mid-roll would sell a contract the roll is closing or has closed.
-- PL/pgSQL: every signal asks (pm.control_blocks), and its lookup is planned once per session.
CREATE OR REPLACE FUNCTION pm.roll_blocks(p_instrument text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    why text;
BEGIN
    SELECT format('rolling: %s is moving from %s to %s (roll %s, %s)', instrument, from_symbol,
                  coalesce(to_symbol, '?'), roll_id, state)
      INTO why
      FROM pm.rolls WHERE instrument = p_instrument AND state IN ('pending', 'closing', 'opening');
    RETURN why;
END;
$$;

-- pm.active_rolls
-- Rolls in flight (pending, closing, opening), oldest first: what the leader resumes.
CREATE OR REPLACE FUNCTION pm.active_rolls()
RETURNS SETOF pm.rolls LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.rolls WHERE state IN ('pending', 'closing', 'opening') ORDER BY roll_id;
$$;

-- pm.list_rolls
-- Rolls newest first (optionally one instrument's) with their layers and legs as JSON: `pm-engine rollover`,
-- GET /rollover and the dashboard.
CREATE OR REPLACE FUNCTION pm.list_rolls(p_instrument text DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (roll_id bigint, instrument text, state text, from_symbol text, to_symbol text, to_expiry text,
               forced boolean, reason text, created_at timestamptz, state_changed_at timestamptz, layers jsonb,
               legs jsonb, events jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.roll_id, r.instrument, r.state, r.from_symbol, r.to_symbol, r.to_expiry, r.forced, r.reason, r.created_at,
           r.state_changed_at,
           (SELECT coalesce(jsonb_agg(to_jsonb(l) - 'roll_id' ORDER BY l.position_id), '[]')
              FROM pm.roll_layers l WHERE l.roll_id = r.roll_id),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('client_order_id', o.client_order_id, 'roll_leg', o.roll_leg,
                                                         'symbol', o.symbol, 'side', o.side, 'quantity', o.quantity,
                                                         'state', o.status, 'fill_price', o.fill_price,
                                                         'reason', o.reason) ORDER BY o.created_at, o.client_order_id),
                            '[]')
              FROM pm.broker_orders o WHERE o.roll_id = r.roll_id),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('from', e.from_state, 'to', e.to_state, 'reason', e.reason,
                                                         'at', e.at) ORDER BY e.id), '[]')
              FROM pm.roll_events e WHERE e.roll_id = r.roll_id)
      FROM pm.rolls r
     WHERE p_instrument IS NULL OR r.instrument = p_instrument
     ORDER BY r.roll_id DESC
     LIMIT coalesce(p_limit, 50);
$$;

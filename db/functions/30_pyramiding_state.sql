-- Pyramiding state functions: one row per instrument (last pyramid price, base position).

-- pm.save_pyramiding_state
-- Upserts an instrument's pyramiding state; base_position_id must name an existing position (or NULL).
CREATE OR REPLACE FUNCTION pm.save_pyramiding_state(p_instrument text, p_last_pyramid_price numeric,
                                                    p_base_position_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    IF p_last_pyramid_price IS NOT NULL AND p_last_pyramid_price <= 0 THEN
        PERFORM pm.raise_error('PM004', format('last_pyramid_price must be > 0, got %s', p_last_pyramid_price));
    END IF;
    INSERT INTO pm.pyramiding_state AS ps (instrument, last_pyramid_price, base_position_id, updated_at)
    VALUES (p_instrument, p_last_pyramid_price, p_base_position_id, pm.instant())
    ON CONFLICT (instrument) DO UPDATE
        SET last_pyramid_price = excluded.last_pyramid_price,
            base_position_id = excluded.base_position_id,
            updated_at = pm.instant();
END;
$$;

-- pm.get_pyramiding_state
-- The pyramiding state of one instrument, or of every instrument when p_instrument is NULL.
CREATE OR REPLACE FUNCTION pm.get_pyramiding_state(p_instrument text DEFAULT NULL)
RETURNS SETOF pm.pyramiding_state LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.pyramiding_state
     WHERE p_instrument IS NULL OR instrument = p_instrument
     ORDER BY instrument;
$$;

-- pm.clear_pyramiding_state
-- Removes an instrument's pyramiding state; returns whether there was one.
CREATE OR REPLACE FUNCTION pm.clear_pyramiding_state(p_instrument text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    DELETE FROM pm.pyramiding_state WHERE instrument = p_instrument;
    RETURN FOUND;
END;
$$;

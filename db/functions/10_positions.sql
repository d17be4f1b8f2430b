-- Position functions: the versioned upsert and the reads of pm.portfolio_positions.
-- Error codes are listed in db/README.md ("Error contract").

-- pm.position_template
-- A position document with every column the caller may set, all NULL (derived from the row
-- type itself, so it can never drift from the table; no catalog query, so it is cheap). The
-- database owns version, created_at, updated_at and the instants entered_at / exited_at.
CREATE OR REPLACE FUNCTION pm.position_template()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(jsonb_populate_record(NULL::pm.portfolio_positions, '{}'::jsonb))
           - 'version' - 'created_at' - 'updated_at' - 'entered_at' - 'exited_at';
$$;

-- pm.position_columns
-- The columns a caller may set through pm.save_position (all but the database-owned ones).
CREATE OR REPLACE FUNCTION pm.position_columns()
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(pm.position_template()) AS k;
$$;

-- pm.check_position_fields
-- Raises PM004 naming every key of a position document that is not a column.
CREATE OR REPLACE FUNCTION pm.check_position_fields(p jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    template jsonb := pm.position_template();
    unknown  text;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        PERFORM pm.raise_error('PM004', 'position must be a JSON object');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO unknown
      FROM jsonb_object_keys(p) AS k
     WHERE NOT template ? k AND k NOT IN ('version', 'created_at', 'updated_at', 'entered_at', 'exited_at');
    IF unknown IS NOT NULL THEN
        PERFORM pm.raise_error('PM004', format('unknown position field(s): %s', unknown));
    END IF;
    PERFORM pm.require(p ->> 'position_id', 'position_id');
END;
$$;

-- pm.save_position
-- Versioned upsert: expected_version NULL inserts (version 1), otherwise updates if unchanged.
-- Returns the row's new version. A closed row with the same id is archived under
-- '<id>@<entry time UTC>' when a new position takes its id. Keys version/created_at/updated_at/
-- entered_at/exited_at in the document are ignored: the database owns them (entered_at is the
-- statement's pm.instant() at the insert, exited_at at the update that closes the row).
CREATE OR REPLACE FUNCTION pm.save_position(p jsonb, expected_version integer DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pid  text;
    cur  pm.portfolio_positions;
    newv integer;
    cols text[];
BEGIN
    PERFORM pm.check_position_fields(p);
    pid := p ->> 'position_id';

    IF expected_version IS NULL THEN
        SELECT * INTO cur FROM pm.portfolio_positions WHERE position_id = pid FOR UPDATE;
        IF FOUND THEN
            IF cur.status <> 'closed' THEN
                PERFORM pm.raise_error('PM002', format('position %s is already %s', pid, cur.status),
                                       format('current version %s', cur.version));
            END IF;
            UPDATE pm.portfolio_positions
               SET position_id = left(pid, 32) || '@'
                                 || to_char(cur.entry_timestamp AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')
             WHERE position_id = pid;
        END IF;
        p := jsonb_strip_nulls(p) - 'version' - 'created_at' - 'updated_at' - 'entered_at' - 'exited_at'
             || jsonb_build_object('entered_at', pm.instant(), 'created_at', pm.instant(), 'updated_at', pm.instant())
             || CASE WHEN p ->> 'status' = 'closed' THEN jsonb_build_object('exited_at', pm.instant()) ELSE '{}' END;
        SELECT array_agg(k) INTO cols FROM jsonb_object_keys(p) AS k;
        EXECUTE format(
            'INSERT INTO pm.portfolio_positions (%1$s) SELECT %1$s FROM jsonb_populate_record(NULL::pm.portfolio_positions, $1)',
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) AS c))
        USING p;
        RETURN 1;
    END IF;

    -- one statement: merge the document into the current row if it is still at expected_version and
    -- open (the row lock is taken by the UPDATE itself); only when nothing matched, find out why
    UPDATE pm.portfolio_positions AS t SET
        (instrument, status, entry_timestamp, entry_price, lots, quantity, initial_stop, current_stop,
         highest_close, unrealized_pnl, realized_pnl, rollover_status, original_expiry,
         original_strike, original_entry_price, rollover_timestamp, rollover_pnl, rollover_count,
         strike, expiry, pe_symbol, ce_symbol, pe_order_id, ce_order_id, pe_entry_price,
         ce_entry_price, contract_month, futures_symbol, futures_order_id, atr, limiter,
         risk_contribution, vol_contribution, is_base_position, exit_timestamp, exit_price, exit_reason,
         exited_at, version, updated_at) =
        (SELECT r.instrument, r.status, r.entry_timestamp, r.entry_price, r.lots, r.quantity,
                r.initial_stop, r.current_stop, r.highest_close, r.unrealized_pnl, r.realized_pnl,
                r.rollover_status, r.original_expiry, r.original_strike, r.original_entry_price,
                r.rollover_timestamp, r.rollover_pnl, r.rollover_count, r.strike, r.expiry,
                r.pe_symbol, r.ce_symbol, r.pe_order_id, r.ce_order_id, r.pe_entry_price,
                r.ce_entry_price, r.contract_month, r.futures_symbol, r.futures_order_id, r.atr,
                r.limiter, r.risk_contribution, r.vol_contribution, r.is_base_position,
                r.exit_timestamp, r.exit_price, r.exit_reason,
                CASE WHEN r.status = 'closed' THEN pm.instant() END, t.version + 1, pm.instant()
           FROM jsonb_populate_record(t, p - 'version' - 'created_at' - 'updated_at') AS r)
     WHERE t.position_id = pid AND t.version = expected_version AND t.status <> 'closed'
    RETURNING t.version INTO newv;
    IF newv IS NOT NULL THEN
        RETURN newv;
    END IF;
    SELECT * INTO cur FROM pm.portfolio_positions WHERE position_id = pid;
    IF NOT FOUND THEN
        PERFORM pm.raise_error('PM003', format('position %s does not exist', pid));
    END IF;
    IF cur.version <> expected_version THEN
        PERFORM pm.raise_error('PM001',
            format('stale version for position %s: expected %s, found %s', pid, expected_version, cur.version),
            format('current version %s', cur.version));
    END IF;
    IF cur.status = 'closed' THEN
        PERFORM pm.raise_error('PM005', format('position %s is closed; a closed position is final', pid));
    END IF;
    -- matched now but not when updating: a concurrent writer came and went; the caller re-reads
    PERFORM pm.raise_error('PM001', format('position %s changed during the update; read it again', pid));
    RETURN NULL;  -- not reached: raise_error raises
END;
$$;

-- pm.get_position
-- The row of one position id (no row when it does not exist).
CREATE OR REPLACE FUNCTION pm.get_position(pid text)
RETURNS SETOF pm.portfolio_positions LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.portfolio_positions WHERE position_id = pid;
$$;

-- pm.get_open_positions
-- Every position whose status is 'open', oldest entry first.
CREATE OR REPLACE FUNCTION pm.get_open_positions()
RETURNS SETOF pm.portfolio_positions LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.portfolio_positions WHERE status = 'open' ORDER BY entry_timestamp, position_id;
$$;

-- Position functions: the versioned upsert and the reads of pm.portfolio_positions.
-- Error codes are listed in db/README.md ("Error contract").

-- pm.position_template
-- A position document with every column the caller may set, all NULL (derived from the row
-- type itself, so it can never drift from the table; no catalog query, so it is cheap).
CREATE OR REPLACE FUNCTION pm.position_template()
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT to_jsonb(jsonb_populate_record(NULL::pm.portfolio_positions, '{}'::jsonb))
           - 'version' - 'created_at' - 'updated_at';
$$;

-- pm.position_columns
-- The columns a caller may set through pm.save_position (all but the database-owned ones).
CREATE OR REPLACE FUNCTION pm.position_columns()
RETURNS text[]
LANGUAGE sql
STABLE
AS $$
    SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(pm.position_template()) AS k;
$$;

-- pm.check_position_fields
-- Raises PM004 naming every key of a position document that is not a column.
CREATE OR REPLACE FUNCTION pm.check_position_fields(p jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    template jsonb := pm.position_template();
    unknown  text;
BEGIN
    IF p IS NULL OR jsonb_typeof(p) <> 'object' THEN
        PERFORM pm.raise_error('PM004', 'position must be a JSON object');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO unknown
      FROM jsonb_object_keys(p) AS k
     WHERE NOT template ? k AND k NOT IN ('version', 'created_at', 'updated_at');
    IF unknown IS NOT NULL THEN
        PERFORM pm.raise_error('PM004', format('unknown position field(s): %s', unknown));
    END IF;
    PERFORM pm.require(p ->> 'position_id', 'position_id');
END;
$$;

-- pm.save_position
-- Versioned upsert: expected_version NULL inserts (version 1), otherwise updates if unchanged.
-- Returns the row's new version. A closed row with the same id is archived under
-- '<id>@<entry time UTC>' when a new position takes its id. Keys version/created_at/updated_at
-- in the document are ignored: the database owns them.
CREATE OR REPLACE FUNCTION pm.save_position(p jsonb, expected_version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    pid  text;
    cur  pm.portfolio_positions;
    merged  pm.portfolio_positions;
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
        SELECT array_agg(k) INTO cols
          FROM jsonb_object_keys(jsonb_strip_nulls(p) - 'version' - 'created_at' - 'updated_at') AS k;
        EXECUTE format(
            'INSERT INTO pm.portfolio_positions (%1$s) SELECT %1$s FROM jsonb_populate_record(NULL::pm.portfolio_positions, $1)',
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) AS c))
        USING p;
        RETURN 1;
    END IF;

    SELECT * INTO cur FROM pm.portfolio_positions WHERE position_id = pid FOR UPDATE;
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

    merged := jsonb_populate_record(cur, p - 'version' - 'created_at' - 'updated_at');
    UPDATE pm.portfolio_positions SET
        instrument = merged.instrument, status = merged.status, entry_timestamp = merged.entry_timestamp,
        entry_price = merged.entry_price, lots = merged.lots, quantity = merged.quantity,
        initial_stop = merged.initial_stop, current_stop = merged.current_stop, highest_close = merged.highest_close,
        unrealized_pnl = merged.unrealized_pnl, realized_pnl = merged.realized_pnl,
        rollover_status = merged.rollover_status, original_expiry = merged.original_expiry,
        original_strike = merged.original_strike, original_entry_price = merged.original_entry_price,
        rollover_timestamp = merged.rollover_timestamp, rollover_pnl = merged.rollover_pnl,
        rollover_count = merged.rollover_count, strike = merged.strike, expiry = merged.expiry,
        pe_symbol = merged.pe_symbol, ce_symbol = merged.ce_symbol, pe_order_id = merged.pe_order_id,
        ce_order_id = merged.ce_order_id, pe_entry_price = merged.pe_entry_price, ce_entry_price = merged.ce_entry_price,
        contract_month = merged.contract_month, futures_symbol = merged.futures_symbol,
        futures_order_id = merged.futures_order_id, atr = merged.atr, limiter = merged.limiter,
        risk_contribution = merged.risk_contribution, vol_contribution = merged.vol_contribution,
        is_base_position = merged.is_base_position, exit_timestamp = merged.exit_timestamp,
        exit_price = merged.exit_price, exit_reason = merged.exit_reason,
        version = cur.version + 1, updated_at = now()
     WHERE position_id = pid;
    RETURN cur.version + 1;
END;
$$;

-- pm.get_position
-- The row of one position id (no row when it does not exist).
CREATE OR REPLACE FUNCTION pm.get_position(pid text)
RETURNS SETOF pm.portfolio_positions
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM pm.portfolio_positions WHERE position_id = pid;
$$;

-- pm.get_open_positions
-- Every position whose status is 'open', oldest entry first.
CREATE OR REPLACE FUNCTION pm.get_open_positions()
RETURNS SETOF pm.portfolio_positions
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM pm.portfolio_positions WHERE status = 'open' ORDER BY entry_timestamp, position_id;
$$;

-- Trading controls (docs/domain.md#trading-controls, migration 004): the trading mode, breakers and instrument
-- locks, all evaluated by pm.apply_signal under the portfolio row lock, so every instance obeys a
-- change at the same commit. Each breaker is one function answering "lock until T, because R"
-- (jsonb {"until", "reason", "instrument"}; instrument NULL: everything), or NULL.
-- The breakers and pm.control_blocks run with their caller's rights (pm.apply_signal's, the owner's)
-- and no SET clause, which would cost a configuration save and restore on every signal; they name
-- every object with its schema, and the engine's role cannot read the tables they read.

-- pm.get_trading_mode
-- The current mode row: {mode, reason, changed_by, changed_at, version}.
CREATE OR REPLACE FUNCTION pm.get_trading_mode()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(c) - 'id' FROM pm.trading_control c WHERE id = 1;
$$;

-- pm.set_trading_mode
-- Sets the mode ('active', 'exits_only', 'halted') with who and why, and records the change.
-- Takes the portfolio row lock first, so a change lands between two signals, never inside one.
-- PM004 for an unknown mode, a missing changed_by, or a pause without a reason.
CREATE OR REPLACE FUNCTION pm.set_trading_mode(p_mode text, p_reason text, p_changed_by text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    row pm.trading_control;
BEGIN
    PERFORM pm.require(p_mode, 'mode');
    PERFORM pm.require(p_changed_by, 'changed_by');
    IF p_mode NOT IN ('active', 'exits_only', 'halted') THEN
        PERFORM pm.raise_error('PM004', format('mode must be active, exits_only or halted, got %s', p_mode));
    END IF;
    IF p_mode <> 'active' AND coalesce(btrim(p_reason), '') = '' THEN
        PERFORM pm.raise_error('PM004', 'reason is required to pause trading');
    END IF;
    PERFORM pm.lock_book();
    UPDATE pm.trading_control
       SET mode = p_mode, reason = nullif(btrim(p_reason), ''), changed_by = p_changed_by,
           changed_at = pm.instant(), version = version + 1
     WHERE id = 1
    RETURNING * INTO row;
    INSERT INTO pm.trading_control_history (mode, reason, changed_by, changed_at, version)
    VALUES (row.mode, row.reason, row.changed_by, row.changed_at, row.version);
    RETURN to_jsonb(row) - 'id';
END;
$$;

-- pm.trading_mode_history
-- The latest changes of mode, newest first.
CREATE OR REPLACE FUNCTION pm.trading_mode_history(p_limit integer DEFAULT 50)
RETURNS SETOF pm.trading_control_history
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.trading_control_history ORDER BY id DESC LIMIT greatest(coalesce(p_limit, 50), 0);
$$;

-- pm.get_breakers
-- The breakers' settings (NULL: that breaker is off).
CREATE OR REPLACE FUNCTION pm.get_breakers()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT to_jsonb(b) - 'id' FROM pm.breaker_settings b WHERE id = 1;
$$;

-- pm.set_breakers
-- Updates the keys given (daily_loss_pct, max_entries_per_day, cooling_off_losses,
-- cooling_off_hours; JSON null switches one off). PM004 for an unknown key; 23514 for a value
-- out of range (cooling-off needs both of its settings).
CREATE OR REPLACE FUNCTION pm.set_breakers(p_settings jsonb, p_by text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    unknown text;
    merged  pm.breaker_settings;
BEGIN
    PERFORM pm.require(p_by, 'updated_by');
    IF p_settings IS NULL OR jsonb_typeof(p_settings) <> 'object' THEN
        PERFORM pm.raise_error('PM004', 'breaker settings must be a JSON object');
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO unknown FROM jsonb_object_keys(p_settings) k
     WHERE k NOT IN ('daily_loss_pct', 'max_entries_per_day', 'cooling_off_losses', 'cooling_off_hours');
    IF unknown IS NOT NULL THEN
        PERFORM pm.raise_error('PM004', format('unknown breaker setting(s): %s', unknown));
    END IF;
    PERFORM pm.lock_book();
    SELECT * INTO merged FROM pm.breaker_settings WHERE id = 1;
    merged := jsonb_populate_record(merged, p_settings);
    UPDATE pm.breaker_settings
       SET daily_loss_pct = merged.daily_loss_pct, max_entries_per_day = merged.max_entries_per_day,
           cooling_off_losses = merged.cooling_off_losses, cooling_off_hours = merged.cooling_off_hours,
           updated_by = p_by, updated_at = pm.instant()
     WHERE id = 1;
    RETURN pm.get_breakers();
END;
$$;

-- pm.lock_instrument
-- Blocks new bases and pyramids on an instrument until p_until; returns the lock's id.
CREATE OR REPLACE FUNCTION pm.lock_instrument(p_instrument text, p_until timestamptz, p_reason text, p_source text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lock_id bigint;
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_until, 'until');
    PERFORM pm.require(p_source, 'source');
    IF coalesce(btrim(p_reason), '') = '' THEN
        PERFORM pm.raise_error('PM004', 'reason is required to lock an instrument');
    END IF;
    PERFORM pm.lock_book();  -- between two signals, never inside one
    INSERT INTO pm.instrument_locks (instrument, locked_until, reason, source, created_at)
    VALUES (upper(p_instrument), p_until, btrim(p_reason), p_source, pm.instant())
    RETURNING id INTO lock_id;
    RETURN lock_id;
END;
$$;

-- pm.unlock_instrument
-- Releases every active lock of an instrument; returns how many.
CREATE OR REPLACE FUNCTION pm.unlock_instrument(p_instrument text, p_by text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    released integer;
BEGIN
    PERFORM pm.require(p_instrument, 'instrument');
    PERFORM pm.require(p_by, 'released_by');
    PERFORM pm.lock_book();  -- between two signals, never inside one
    UPDATE pm.instrument_locks SET released_at = pm.instant(), released_by = p_by
     WHERE instrument = upper(p_instrument) AND released_at IS NULL;
    GET DIAGNOSTICS released = ROW_COUNT;
    RETURN released;
END;
$$;

-- pm.active_locks
-- Locks in force at p_at (not released, not yet ended), soonest end first.
CREATE OR REPLACE FUNCTION pm.active_locks(p_at timestamptz DEFAULT now())
RETURNS SETOF pm.instrument_locks LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.instrument_locks
     WHERE released_at IS NULL AND locked_until > coalesce(p_at, now())
     ORDER BY locked_until, id;
$$;

-- pm.ist_day
-- The IST calendar day of a time.
CREATE OR REPLACE FUNCTION pm.ist_day(t timestamptz)
RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT (t AT TIME ZONE 'Asia/Kolkata')::date;
$$;

-- pm.breaker_daily_loss
-- Trips when open equity (closed + the open positions' unrealized P&L, as committed) is more than
-- daily_loss_pct below its value before the first signal of the signal's IST day (recorded here
-- on that first signal). Lock: everything, no end (the mode becomes exits_only until resumed).
CREATE OR REPLACE FUNCTION pm.breaker_daily_loss(sig jsonb, settings pm.breaker_settings)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_day date := pm.ist_day((sig ->> 'signal_timestamp')::timestamptz);
    now_equity numeric;
    start_equity numeric;
    loss_pct numeric;
BEGIN
    IF settings.daily_loss_pct IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT s.closed_equity + coalesce((SELECT sum(unrealized_pnl) FROM pm.portfolio_positions WHERE status = 'open'), 0)
      INTO now_equity FROM pm.portfolio_state s WHERE id = 1;
    SELECT open_equity INTO start_equity FROM pm.day_start_equity WHERE day = v_day;
    IF start_equity IS NULL THEN
        INSERT INTO pm.day_start_equity (day, open_equity) VALUES (v_day, now_equity);
        RETURN NULL;
    END IF;
    IF now_equity >= start_equity * (1 - settings.daily_loss_pct / 100) THEN
        RETURN NULL;
    END IF;
    loss_pct := round(100 * (start_equity - now_equity) / start_equity, 2);
    RETURN jsonb_build_object('until', NULL, 'instrument', NULL, 'reason',
        format('daily loss limit: open equity %s is %s%% below the day''s start %s (limit %s%%)',
               round(now_equity, 2), loss_pct, round(start_equity, 2), settings.daily_loss_pct));
END;
$$;

-- pm.breaker_max_entries
-- Trips when the instrument already has max_entries_per_day executed entries (bases and pyramids)
-- on the signal's IST day. Lock: that instrument, until the next IST midnight.
CREATE OR REPLACE FUNCTION pm.breaker_max_entries(sig jsonb, settings pm.breaker_settings)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    entries integer;
    starts  timestamptz := (pm.ist_day((sig ->> 'signal_timestamp')::timestamptz)::timestamp) AT TIME ZONE 'Asia/Kolkata';
BEGIN
    IF settings.max_entries_per_day IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO entries FROM pm.signal_log
     WHERE instrument = sig ->> 'instrument' AND processing_status = 'executed'
       AND signal_type IN ('BASE_ENTRY', 'PYRAMID')
       AND signal_timestamp >= starts AND signal_timestamp < starts + interval '1 day';
    IF entries < settings.max_entries_per_day THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('until', starts + interval '1 day', 'instrument', sig ->> 'instrument',
        'reason', format('max %s entries per day reached', settings.max_entries_per_day));
END;
$$;

-- pm.breaker_cooling_off
-- Trips on a new base when the instrument's last cooling_off_losses trades (closed layers, by exit
-- time) all lost and the last of them exited less than cooling_off_hours before the signal.
-- Lock: that instrument, until that exit + cooling_off_hours.
CREATE OR REPLACE FUNCTION pm.breaker_cooling_off(sig jsonb, settings pm.breaker_settings)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    at      timestamptz := (sig ->> 'signal_timestamp')::timestamptz;
    n       integer;
    losers  integer;
    last_at timestamptz;
BEGIN
    IF settings.cooling_off_losses IS NULL OR sig ->> 'signal_type' <> 'BASE_ENTRY' THEN
        RETURN NULL;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE t.realized_pnl < 0), max(t.exit_timestamp)
      INTO n, losers, last_at
      FROM (SELECT realized_pnl, exit_timestamp FROM pm.portfolio_positions
             WHERE instrument = sig ->> 'instrument' AND status = 'closed' AND exit_timestamp <= at
             ORDER BY exit_timestamp DESC, split_part(position_id, '@', 1) DESC
             LIMIT settings.cooling_off_losses) t;
    IF n < settings.cooling_off_losses OR losers < n
       OR last_at + settings.cooling_off_hours * interval '1 hour' <= at THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('until', last_at + settings.cooling_off_hours * interval '1 hour',
        'instrument', sig ->> 'instrument',
        'reason', format('cooling off after %s losing trades in a row', settings.cooling_off_losses));
END;
$$;

-- pm.lock_reason
-- The text a signal blocked by an instrument lock is answered with.
CREATE OR REPLACE FUNCTION pm.lock_reason(p_instrument text, p_until timestamptz, p_reason text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format('instrument %s locked until %s: %s', p_instrument,
                  to_char(p_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), p_reason);
$$;

-- pm.control_blocks
-- Why the trading controls block a signal (NULL: they do not), called by pm.apply_signal with the
-- portfolio row locked. In order: the mode (halted blocks everything, exits_only entries and
-- pyramids; the reason starts "trading paused"); a group that is rolling (every signal of it waits,
-- exits too: "rolling: …", pm.roll_blocks); the daily-loss breaker (evaluated on every
-- signal; tripping switches the mode to exits_only, recorded as changed by 'breaker:daily_loss');
-- exits pass from here on; an active lock on the instrument; then the entry breakers, whose
-- tripping writes the lock. So a second evaluation in the same transaction gives the same answer.
CREATE OR REPLACE FUNCTION pm.control_blocks(sig jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    control  pm.trading_control;
    settings pm.breaker_settings;
    tripped  jsonb;
    active   pm.instrument_locks;
    breaker  text;
    rolling  text;
BEGIN
    SELECT * INTO control FROM pm.trading_control WHERE id = 1;
    IF control.mode = 'halted' THEN
        RETURN 'trading paused (halted): ' || coalesce(control.reason, 'no reason given');
    END IF;
    IF control.mode = 'exits_only' AND sig ->> 'signal_type' <> 'EXIT' THEN
        RETURN 'trading paused (exits only): ' || coalesce(control.reason, 'no reason given');
    END IF;
    rolling := pm.roll_blocks(sig ->> 'instrument');  -- its group is rolling (81_roll_views.sql)
    IF rolling IS NOT NULL THEN
        RETURN rolling;
    END IF;
    SELECT * INTO settings FROM pm.breaker_settings WHERE id = 1;
    IF control.mode = 'active' AND settings.daily_loss_pct IS NOT NULL THEN
        tripped := pm.breaker_daily_loss(sig, settings);
        IF tripped IS NOT NULL THEN
            PERFORM pm.set_trading_mode('exits_only', tripped ->> 'reason', 'breaker:daily_loss');
            IF sig ->> 'signal_type' <> 'EXIT' THEN
                RETURN 'trading paused (exits only): ' || (tripped ->> 'reason');
            END IF;
        END IF;
    END IF;
    IF sig ->> 'signal_type' = 'EXIT' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO active FROM pm.instrument_locks
     WHERE instrument = sig ->> 'instrument' AND released_at IS NULL
       AND locked_until > (sig ->> 'signal_timestamp')::timestamptz
     ORDER BY locked_until DESC LIMIT 1;
    IF FOUND THEN
        RETURN pm.lock_reason(active.instrument, active.locked_until, active.reason);
    END IF;
    IF settings.max_entries_per_day IS NULL AND settings.cooling_off_losses IS NULL THEN
        RETURN NULL;  -- no entry breaker is on
    END IF;
    FOREACH breaker IN ARRAY ARRAY['max_entries', 'cooling_off'] LOOP
        tripped := CASE breaker WHEN 'max_entries' THEN pm.breaker_max_entries(sig, settings)
                                ELSE pm.breaker_cooling_off(sig, settings) END;
        IF tripped IS NOT NULL THEN
            PERFORM pm.lock_instrument(tripped ->> 'instrument', (tripped ->> 'until')::timestamptz,
                                       tripped ->> 'reason', 'breaker:' || breaker);
            RETURN pm.lock_reason(tripped ->> 'instrument', (tripped ->> 'until')::timestamptz, tripped ->> 'reason');
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

-- History: append-only versions of positions, the portfolio row and pyramiding state (migration 003),
-- written by triggers in the transaction of each change; the book as of any time; the equity curve.
-- Every history row is stamped with its writer's pm.instant() (05_instants.sql), the time the signal
-- log, the equity curve and the trades show too: state_as_of(that instant) includes the change.
-- The trigger functions run as the writer, which is always the owner (the engine's role writes no
-- table itself: every write goes through the SECURITY DEFINER functions, whose search_path is pinned),
-- and they name every object with its schema; they carry no SET clause because one costs a
-- configuration save and restore on every row (measured: ~40 us of ~160 us per signal).

-- pm.current_fingerprint
-- The fingerprint of the signal this transaction applies (set by pm.apply_signal), NULL outside a signal.
-- No SET clause, so it is inlined (a function with SET costs a configuration save and restore per call).
CREATE OR REPLACE FUNCTION pm.current_fingerprint()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('pm.fingerprint', true), '');
$$;

-- pm.record_position_history
-- Trigger: appends the new version of a position row (the old one for a delete) to pm.position_history.
CREATE OR REPLACE FUNCTION pm.record_position_history()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r pm.portfolio_positions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    INSERT INTO pm.position_history (recorded_at, fingerprint, operation, position_id, version, status, row_data)
    VALUES (pm.instant(), pm.current_fingerprint(), lower(TG_OP), r.position_id, r.version, r.status,
            to_jsonb(r));
    RETURN NULL;
END;
$$;

-- pm.record_portfolio_history
-- Trigger: appends the new portfolio row with closed, open and blended equity at that moment
-- (unrealized P&L = the open positions' stored unrealized P&L, written earlier in the same transaction).
CREATE OR REPLACE FUNCTION pm.record_portfolio_history()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unrealized numeric;
BEGIN
    SELECT coalesce(sum(unrealized_pnl), 0) INTO unrealized FROM pm.portfolio_positions WHERE status = 'open';
    INSERT INTO pm.portfolio_history (recorded_at, fingerprint, version, closed_equity, unrealized_pnl, open_equity,
                                      blended_equity, row_data)
    VALUES (pm.instant(), pm.current_fingerprint(), NEW.version, NEW.closed_equity, unrealized,
            NEW.closed_equity + unrealized, round(NEW.closed_equity + NEW.blended_weight * unrealized, 2),
            to_jsonb(NEW));
    RETURN NULL;
END;
$$;

-- pm.record_pyramiding_history
-- Trigger: appends an instrument's new pyramiding state (row_data NULL when it was cleared).
CREATE OR REPLACE FUNCTION pm.record_pyramiding_history()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO pm.pyramiding_history (recorded_at, fingerprint, operation, instrument, row_data)
        VALUES (pm.instant(), pm.current_fingerprint(), 'delete', OLD.instrument, NULL);
    ELSE
        INSERT INTO pm.pyramiding_history (recorded_at, fingerprint, operation, instrument, row_data)
        VALUES (pm.instant(), pm.current_fingerprint(), lower(TG_OP), NEW.instrument, to_jsonb(NEW));
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER portfolio_positions_history
    AFTER INSERT OR UPDATE OR DELETE ON pm.portfolio_positions
    FOR EACH ROW EXECUTE FUNCTION pm.record_position_history();
CREATE OR REPLACE TRIGGER portfolio_state_history
    AFTER INSERT OR UPDATE ON pm.portfolio_state
    FOR EACH ROW EXECUTE FUNCTION pm.record_portfolio_history();
CREATE OR REPLACE TRIGGER pyramiding_state_history
    AFTER INSERT OR UPDATE OR DELETE ON pm.pyramiding_state
    FOR EACH ROW EXECUTE FUNCTION pm.record_pyramiding_history();
-- statement-level, so even an UPDATE or DELETE matching no row is refused, as is TRUNCATE
CREATE OR REPLACE TRIGGER position_history_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.position_history
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM007');
CREATE OR REPLACE TRIGGER portfolio_history_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.portfolio_history
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM007');
CREATE OR REPLACE TRIGGER pyramiding_history_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.pyramiding_history
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM007');
DROP FUNCTION IF EXISTS pm.refuse_history_change();  -- pm.refuse_change (issue 30)

-- pm.check_time_range
-- Raises PM004 when both bounds are given and the range is empty (from after to).
CREATE OR REPLACE FUNCTION pm.check_time_range(p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_from IS NOT NULL AND p_to IS NOT NULL AND p_from > p_to THEN
        PERFORM pm.raise_error('PM004', format('from (%s) is after to (%s)', p_from, p_to));
    END IF;
END;
$$;

-- pm.state_as_of
-- The book as committed at or before t, in the shape of pm.load_state(): the portfolio row, the
-- positions then open and the pyramiding states then held. PM004 for a NULL t; PM006 when t is
-- before the first history row (history starts when migration 003 is deployed).
CREATE OR REPLACE FUNCTION pm.state_as_of(t timestamptz)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    portfolio jsonb;
BEGIN
    PERFORM pm.require(t, 't');
    SELECT row_data INTO portfolio FROM pm.portfolio_history
     WHERE recorded_at <= t ORDER BY recorded_at DESC, history_id DESC LIMIT 1;
    IF portfolio IS NULL THEN
        PERFORM pm.raise_error('PM006', format('no history at or before %s; history starts at %s', t,
                                               (SELECT min(recorded_at) FROM pm.portfolio_history)));
    END IF;
    RETURN jsonb_build_object(
        'portfolio', portfolio,
        'positions', coalesce((
            SELECT jsonb_agg(h.row_data ORDER BY (h.row_data ->> 'entry_timestamp')::timestamptz, h.position_id)
              FROM (SELECT DISTINCT ON (position_id) position_id, operation, status, row_data
                      FROM pm.position_history WHERE recorded_at <= t
                     ORDER BY position_id, recorded_at DESC, history_id DESC) h
             WHERE h.operation <> 'delete' AND h.status = 'open'), '[]'),
        'pyramiding', coalesce((
            SELECT jsonb_agg(h.row_data ORDER BY h.instrument)
              FROM (SELECT DISTINCT ON (instrument) instrument, row_data
                      FROM pm.pyramiding_history WHERE recorded_at <= t
                     ORDER BY instrument, recorded_at DESC, history_id DESC) h
             WHERE h.row_data IS NOT NULL), '[]'));
END;
$$;

-- pm.equity_curve
-- One point per committed portfolio version in [p_from, p_to] (NULL: unbounded): commit time,
-- closed, open and blended equity, and the fingerprint of the signal (NULL for a stop update, a
-- capital flow or the seed row); flow: the capital flow that point records (+ deposit, - withdrawal,
-- migration 009), NULL for every other point. PM004 when p_from is after p_to.
DROP FUNCTION IF EXISTS pm.equity_curve(timestamptz, timestamptz);  -- before flow was added (a new result type)
CREATE OR REPLACE FUNCTION pm.equity_curve(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS TABLE (recorded_at timestamptz, closed_equity numeric, open_equity numeric, blended_equity numeric,
               fingerprint varchar, version integer, flow numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.check_time_range(p_from, p_to);
    RETURN QUERY
        SELECT h.recorded_at, h.closed_equity, h.open_equity, h.blended_equity, h.fingerprint, h.version,
               f.signed_amount
          FROM pm.portfolio_history h
          LEFT JOIN pm.capital_flows f ON f.history_id = h.history_id
         WHERE (p_from IS NULL OR h.recorded_at >= p_from) AND (p_to IS NULL OR h.recorded_at <= p_to)
         ORDER BY h.recorded_at, h.history_id;
END;
$$;

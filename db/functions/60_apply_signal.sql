-- Signal application: a signal's fingerprint claim and all its effects, in one call and one transaction.

-- pm.apply_signal
-- Applies one decided signal atomically. A fingerprint already logged answers {"new": false} and
-- changes nothing. Otherwise the portfolio row is locked and its version compared with the one
-- the engine decided from: if another writer moved it, nothing is written and the answer is
-- {"new": true, "stale": true, "state": pm.load_state()} so the engine can decide again without
-- another round trip. If it matches, the fingerprint is claimed (INSERT ... ON CONFLICT DO NOTHING:
-- a concurrent claim of the same fingerprint waits for the first and then answers "new": false)
-- and every effect is written: positions (versioned), pyramiding states, the portfolio state and
-- the signal's broker orders (sig -> 'orders', into the pm.broker_orders outbox as 'queued').
-- Before the version check, the trading controls (pm.control_blocks): a signal they block is
-- logged 'blocked' with their reason and nothing else is written: {"new": true, "blocked": true,
-- "reason": "trading paused ..."}. A signal carrying "anomaly" (a kind the engine detected) is also
-- recorded in pm.anomalies. Answer: {"new": true, "portfolio_version": v, "versions": {position_id:
-- version}}. A duplicate's
-- answer, {"new": false}, also carries pm.state_if_moved(expected_portfolio_version): the caller
-- learns in the same round trip that another writer moved the portfolio, and to what.
-- sig: {fingerprint, instrument, signal_type, position, signal_timestamp, processing_status, reason,
--       payload, instance, orders}; positions: [{"doc": {...}, "expected_version": n | null}];
-- pyramiding: [{"instrument", "last_pyramid_price", "base_position_id", "clear": bool}];
-- portfolio: the portfolio_state keys to write.
CREATE OR REPLACE FUNCTION pm.apply_signal(sig jsonb, positions jsonb, pyramiding jsonb, portfolio jsonb,
                                           expected_portfolio_version integer)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    claimed  boolean;
    blocked  text;
    versions jsonb := '{}';
    current  integer;
    pversion integer;
BEGIN
    IF sig IS NULL OR jsonb_typeof(sig) <> 'object' THEN
        PERFORM pm.raise_error('PM004', 'signal must be a JSON object');
    END IF;
    PERFORM pm.require(expected_portfolio_version, 'expected_portfolio_version');
    IF pm.is_duplicate_signal(sig ->> 'fingerprint') THEN
        RETURN jsonb_build_object('new', false) || pm.state_if_moved(expected_portfolio_version);
    END IF;
    current := (pm.lock_book()).version;
    -- the signal's one instant (05_instants.sql), taken under the lock: its log row, history rows,
    -- equity point and trade times all carry it, and instants are ordered as commits are
    PERFORM pm.instant();
    IF current IS DISTINCT FROM expected_portfolio_version AND pm.is_duplicate_signal(sig ->> 'fingerprint') THEN
        RETURN jsonb_build_object('new', false) || pm.state_if_moved(expected_portfolio_version);  -- claimed while we waited
    END IF;
    -- the trading controls (62_controls.sql), under the portfolio lock that mode changes take too
    blocked := pm.control_blocks(sig);
    IF blocked IS NOT NULL THEN
        claimed := pm.log_signal(sig ->> 'fingerprint', sig ->> 'instrument', sig ->> 'signal_type', sig ->> 'position',
                                 (sig ->> 'signal_timestamp')::timestamptz, 'blocked', blocked, sig -> 'payload',
                                 sig ->> 'instance');
        IF NOT claimed THEN
            RETURN jsonb_build_object('new', false) || pm.state_if_moved(expected_portfolio_version);
        END IF;
        PERFORM pm.notify_signal(sig, NULL, blocked);  -- the notification outbox (75_notifications.sql)
        RETURN jsonb_build_object('new', true, 'blocked', true, 'reason', blocked, 'portfolio_version', current);
    END IF;
    IF current IS DISTINCT FROM expected_portfolio_version THEN
        RETURN jsonb_build_object('new', true, 'stale', true, 'portfolio_version', current, 'state', pm.load_state());
    END IF;
    claimed := pm.log_signal(sig ->> 'fingerprint', sig ->> 'instrument', sig ->> 'signal_type', sig ->> 'position',
                             (sig ->> 'signal_timestamp')::timestamptz, sig ->> 'processing_status', sig ->> 'reason',
                             sig -> 'payload', sig ->> 'instance');
    IF NOT claimed THEN
        RETURN jsonb_build_object('new', false) || pm.state_if_moved(expected_portfolio_version);
    END IF;
    -- the history triggers (90_history.sql) record which signal wrote each version
    PERFORM set_config('pm.fingerprint', sig ->> 'fingerprint', true);
    pversion := pm.apply_state(positions, pyramiding, portfolio, expected_portfolio_version);
    PERFORM set_config('pm.fingerprint', '', true);  -- whatever else this transaction writes is not this signal's
    IF jsonb_array_length(coalesce(sig -> 'orders', '[]')) > 0 THEN
        PERFORM pm.add_orders(sig -> 'orders');
    END IF;
    IF sig ? 'anomaly' THEN
        PERFORM pm.record_anomaly(sig);
    END IF;
    PERFORM pm.notify_signal(sig, positions, NULL);  -- the notification outbox (75_notifications.sql)
    -- each saved position is now at its expected version + 1 (or 1 when inserted): no re-read needed
    SELECT coalesce(jsonb_object_agg(e -> 'doc' ->> 'position_id', coalesce((e ->> 'expected_version')::integer, 0) + 1),
                    '{}')
      INTO versions FROM jsonb_array_elements(coalesce(positions, '[]')) e;
    RETURN jsonb_build_object('new', true, 'portfolio_version', pversion, 'versions', versions);
END;
$$;

-- pm.apply_state
-- Writes positions, pyramiding states and the portfolio state if the portfolio is still at
-- expected_portfolio_version (PM001 otherwise); returns the new portfolio version. Closed equity is
-- the database's: the locked row's plus the realized P&L of the positions this call closes (the
-- documents with status 'closed', their realized_pnl as sent, summed before the one rounding to paise
-- of numeric(15,2), as the engine adds them); a portfolio document whose closed_equity disagrees with
-- that, or whose initial_capital is not the row's, is refused (PM094: money moves only through the
-- signal, fill, roll and capital paths). equity_high is the row's, raised to the new closed equity.
-- Nothing extra is read: the row is the one locked here, the P&L the documents in hand.
CREATE OR REPLACE FUNCTION pm.apply_state(positions jsonb, pyramiding jsonb, portfolio jsonb,
                                          expected_portfolio_version integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    item     jsonb;
    current  integer;
    closed   numeric;
    initial  numeric;
    high     numeric;
    realized numeric := 0;
BEGIN
    PERFORM pm.require(expected_portfolio_version, 'expected_portfolio_version');
    SELECT version, closed_equity, initial_capital, equity_high INTO current, closed, initial, high
      FROM pm.lock_book();
    PERFORM pm.instant();  -- taken under the lock (a no-op inside pm.apply_signal, which took it already)
    IF current IS DISTINCT FROM expected_portfolio_version THEN
        PERFORM pm.raise_error('PM001',
            format('stale version for portfolio state: expected %s, found %s', expected_portfolio_version, current),
            format('current version %s', current));
    END IF;
    FOR item IN SELECT * FROM jsonb_array_elements(coalesce(positions, '[]')) LOOP
        PERFORM pm.save_position(item -> 'doc', (item ->> 'expected_version')::integer);
        IF item -> 'doc' ->> 'status' = 'closed' THEN
            realized := realized + coalesce((item -> 'doc' ->> 'realized_pnl')::numeric, 0);
        END IF;
    END LOOP;
    FOR item IN SELECT * FROM jsonb_array_elements(coalesce(pyramiding, '[]')) LOOP
        IF coalesce((item ->> 'clear')::boolean, false) THEN
            PERFORM pm.clear_pyramiding_state(item ->> 'instrument');
        ELSE
            PERFORM pm.save_pyramiding_state(item ->> 'instrument', (item ->> 'last_pyramid_price')::numeric,
                                             item ->> 'base_position_id');
        END IF;
    END LOOP;
    closed := round(closed + realized, 2);
    IF portfolio ? 'closed_equity' AND round((portfolio ->> 'closed_equity')::numeric, 2) IS DISTINCT FROM closed THEN
        PERFORM pm.raise_error('PM094', format('closed_equity %s disagrees with the book: %s (closed equity moves only '
                                               'by the realized P&L of what a signal closes, fills, rolls and capital '
                                               'flows)', portfolio ->> 'closed_equity', closed));
    END IF;
    IF portfolio ? 'initial_capital' AND (portfolio ->> 'initial_capital')::numeric IS DISTINCT FROM initial THEN
        PERFORM pm.raise_error('PM094', format('initial_capital %s is not the book''s %s (it is set at deploy)',
                                               portfolio ->> 'initial_capital', initial));
    END IF;
    RETURN pm.save_portfolio_state(coalesce(portfolio, '{}')
                                   || jsonb_build_object('closed_equity', closed, 'equity_high', greatest(high, closed)),
                                   expected_portfolio_version);
END;
$$;

-- pm.load_state
-- Everything the engine recovers at start, in one round trip: portfolio row, open positions, pyramiding.
CREATE OR REPLACE FUNCTION pm.load_state()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'portfolio', (SELECT to_jsonb(s) FROM pm.get_portfolio_state() s),
        'positions', coalesce((SELECT jsonb_agg(to_jsonb(p)) FROM pm.get_open_positions() p), '[]'),
        'pyramiding', coalesce((SELECT jsonb_agg(to_jsonb(y)) FROM pm.get_pyramiding_state() y), '[]'));
$$;

-- pm.state_if_moved
-- The portfolio version, plus the whole state (pm.load_state()) when it differs from known_version:
-- how an instance proves its copy current, or refreshes it, in one round trip.
CREATE OR REPLACE FUNCTION pm.state_if_moved(known_version integer)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current integer;
BEGIN
    SELECT version INTO current FROM pm.portfolio_state WHERE id = 1;
    IF current IS NOT DISTINCT FROM known_version THEN
        RETURN jsonb_build_object('portfolio_version', current);
    END IF;
    RETURN jsonb_build_object('portfolio_version', current, 'state', pm.load_state());
END;
$$;

-- pm.lock_for_decision
-- The engine's second attempt after a stale decision: called right after BEGIN, it locks the
-- portfolio row for the rest of the transaction (FOR UPDATE), so no other instance can commit
-- until this one has decided and applied (the decision can no longer go stale). Answers
-- {"duplicate": true|false} merged with pm.state_if_moved(known_version): "portfolio_version",
-- plus "state" when the portfolio moved past known_version (a duplicate's caller refreshes too).
-- Given the signal document, "blocked" is pm.control_blocks' answer under the lock (NULL: free to
-- trade): the engine then commits the signal as blocked, and nobody can change the mode meanwhile.
-- A session idle in this transaction for 2 s is ended by the server, so a frozen engine
-- cannot hold the lock.
DROP FUNCTION IF EXISTS pm.lock_for_decision(text, integer);  -- before sig was added (a new signature)
CREATE OR REPLACE FUNCTION pm.lock_for_decision(p_fingerprint text, known_version integer, sig jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pm.require(p_fingerprint, 'fingerprint');
    PERFORM set_config('idle_in_transaction_session_timeout', '2000', true);
    PERFORM pm.lock_book();
    IF pm.is_duplicate_signal(p_fingerprint) THEN
        RETURN jsonb_build_object('duplicate', true) || pm.state_if_moved(known_version);
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('duplicate', false,
                                                'blocked', CASE WHEN sig IS NOT NULL THEN pm.control_blocks(sig) END))
           || pm.state_if_moved(known_version);
END;
$$;

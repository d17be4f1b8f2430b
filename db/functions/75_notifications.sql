-- Notifications (migration 010): the outbox of events the trader's phone hears about, written in
-- the transaction of their cause, and the leader's claims and results of sending them, once per
-- notification URL. pm.notify and pm.notify_signal run on the signal path, inside pm.apply_signal:
-- they run with their caller's rights and no SET clause (one insert, no configuration save and
-- restore) and name every object with its schema.

-- pm.notify
-- Records one event of a known kind (PM071 otherwise); with a dedup_key, at most one per (kind, key):
-- returns the new event's id, or NULL when that key was already recorded.
CREATE OR REPLACE FUNCTION pm.notify(p_kind text, p_data jsonb, p_dedup_key text DEFAULT NULL,
                                     p_fingerprint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pm.notification_kinds WHERE kind = p_kind) THEN
        PERFORM pm.raise_error('PM071', format('unknown notification kind %s', coalesce(p_kind, 'NULL')));
    END IF;
    INSERT INTO pm.notification_events (kind, data, dedup_key, fingerprint, created_at)
    VALUES (p_kind, coalesce(p_data, '{}'), p_dedup_key, p_fingerprint, pm.instant())
    ON CONFLICT ON CONSTRAINT notification_events_dedup_key DO NOTHING
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;

-- pm.notify_signal
-- The event of a signal pm.apply_signal has applied: signal_executed (with its orders and the
-- realized P&L of the layers it closed) only when the engine's outcome is 'executed' and the controls
-- did not block it (blocked NULL); anything else (the controls' refusal, an EXIT for a layer never
-- open, a zero-lot entry, a gate's refusal) is signal_blocked with the reason (off by default).
-- PL/pgSQL, not SQL: its statement is planned once per session, where a non-inlined SQL function is
-- planned again at every call (about 0.2 ms a signal on the bench machine).
CREATE OR REPLACE FUNCTION pm.notify_signal(sig jsonb, positions jsonb, blocked text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.notify(CASE WHEN blocked IS NULL AND sig ->> 'processing_status' = 'executed'
                           THEN 'signal_executed' ELSE 'signal_blocked' END,
        jsonb_build_object('instrument', sig -> 'instrument', 'signal_type', sig -> 'signal_type',
            'position', sig -> 'position', 'signal_timestamp', sig -> 'signal_timestamp',
            'price', sig -> 'payload' -> 'price', 'reason', coalesce(blocked, sig ->> 'reason'),
            'instance', sig -> 'instance', 'orders', coalesce(sig -> 'orders', '[]'),
            'closed', (SELECT coalesce(jsonb_agg(jsonb_build_object('position_id', e -> 'doc' -> 'position_id',
                                                                     'realized_pnl', e -> 'doc' -> 'realized_pnl',
                                                                     'exit_price', e -> 'doc' -> 'exit_price')), '[]')
                         FROM jsonb_array_elements(coalesce(positions, '[]')) e
                        WHERE e -> 'doc' ->> 'status' = 'closed')),
        NULL, sig ->> 'fingerprint');
END;
$$;

-- pm.record_notification
-- pm.notify for the engine's role, for the one event Python composes: the leader's daily report. Every
-- other kind is written by the database with its cause, so the role cannot forge a breaker trip or an
-- order alert to the trader's phone (PM071 for any other kind).
CREATE OR REPLACE FUNCTION pm.record_notification(p_kind text, p_data jsonb, p_dedup_key text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_kind IS DISTINCT FROM 'daily_report' THEN
        PERFORM pm.raise_error('PM071', format('only daily_report is recorded from outside the database, not %s',
                                               coalesce(p_kind, 'NULL')));
    END IF;
    RETURN pm.notify(p_kind, p_data, p_dedup_key, NULL);
END;
$$;

-- pm.notify_mode_change
-- Trigger on pm.trading_control_history: every change of mode is an event, breaker_tripped when a
-- breaker made it (changed_by 'breaker:...'), mode_changed otherwise.
CREATE OR REPLACE FUNCTION pm.notify_mode_change()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.notify(CASE WHEN NEW.changed_by LIKE 'breaker:%' THEN 'breaker_tripped' ELSE 'mode_changed' END,
                      jsonb_build_object('mode', NEW.mode, 'reason', NEW.reason, 'changed_by', NEW.changed_by,
                                         'version', NEW.version),
                      NULL, nullif(current_setting('pm.fingerprint', true), ''));
    RETURN NULL;
END;
$$;

-- pm.notify_lock
-- Trigger on pm.instrument_locks: a lock written by a breaker (source 'breaker:...') is
-- breaker_tripped, one an operator set is instrument_locked. A lock of the order path ('orders': an
-- order needs review) or of reconciliation ('reconcile') is told by its cause's own event.
CREATE OR REPLACE FUNCTION pm.notify_lock()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source IN ('orders', 'reconcile') THEN
        RETURN NULL;
    END IF;
    PERFORM pm.notify(CASE WHEN NEW.source LIKE 'breaker:%' THEN 'breaker_tripped' ELSE 'instrument_locked' END,
                      jsonb_build_object('instrument', NEW.instrument, 'locked_until', NEW.locked_until,
                                         'reason', NEW.reason, 'source', NEW.source),
                      NULL, NULL);
    RETURN NULL;
END;
$$;

-- pm.notify_order_filled
-- The event of an order the broker filled (called by pm.move_order on its way to 'filled'): the fills'
-- volume-weighted price (rounded to 0.01, half away from zero) and, for a futures order, the slippage
-- against the signal's price per unit (adverse positive) and in rupees (x filled lots x point value),
-- as pm.book_order records it. An option leg's price is not the signal's: it has no slippage here.
CREATE OR REPLACE FUNCTION pm.notify_order_filled(r pm.broker_orders)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    points numeric;
    per_lot integer := greatest(r.quantity / greatest(r.lots, 1), 1);
BEGIN
    SELECT * INTO t FROM pm.order_fill_totals(r.client_order_id);
    IF t.vwap IS NOT NULL AND coalesce(r.leg, 'FUT') = 'FUT' THEN
        points := round(CASE WHEN r.side = 'BUY' THEN t.vwap - r.price ELSE r.price - t.vwap END, 2);
    END IF;
    PERFORM pm.notify('order_filled', jsonb_build_object(
        'client_order_id', r.client_order_id, 'position_id', r.position_id, 'instrument', r.instrument,
        'symbol', r.symbol, 'leg', r.leg, 'side', r.side, 'lots', t.filled / per_lot, 'quantity', t.filled,
        'fill_price', round(t.vwap, 2), 'signal_price', r.price, 'slippage_points', points,
        'slippage_rupees', round(points * t.filled::numeric / per_lot * r.point_value, 2),
        'broker_order_id', r.broker_order_id), NULL, r.fingerprint);
END;
$$;

-- pm.record_broker_session
-- What a broker sender learnt of the broker: 'ok', 'session_expired' (a 403: the trader logs in again)
-- or 'unreachable' (PM072 otherwise). A change from the state last recorded (pm.broker_session, first
-- 'ok') is one broker_session event, with the state before and how long it lasted; the same state
-- again, from any instance, changes nothing, so an episode is told once when it begins and once when
-- it ends. Returns the event's id, or NULL when nothing changed.
CREATE OR REPLACE FUNCTION pm.record_broker_session(p_state text, p_message text, p_instance text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before pm.broker_session;
BEGIN
    PERFORM pm.require(p_instance, 'instance');
    IF p_state IS NULL OR p_state NOT IN ('ok', 'session_expired', 'unreachable') THEN
        PERFORM pm.raise_error('PM072', format('unknown broker state %s (ok, session_expired, unreachable)',
                                               coalesce(p_state, 'NULL')));
    END IF;
    INSERT INTO pm.broker_session (id, state, seen_by) VALUES (1, 'ok', left(p_instance, 50))
    ON CONFLICT ON CONSTRAINT broker_session_pkey DO NOTHING;
    SELECT * INTO before FROM pm.broker_session WHERE id = 1 FOR UPDATE;  -- one report at a time
    IF before.state = p_state THEN
        RETURN NULL;
    END IF;
    UPDATE pm.broker_session SET state = p_state, since = pm.instant(), seen_by = left(p_instance, 50),
                                 message = left(p_message, 500)
     WHERE id = 1;
    RETURN pm.notify('broker_session', jsonb_build_object(
        'state', p_state, 'previous', before.state, 'previous_since', before.since,
        'seconds', round(extract(epoch FROM pm.instant() - before.since)), 'message', left(p_message, 300),
        'instance', p_instance));
END;
$$;

CREATE OR REPLACE TRIGGER trading_control_history_notify
    AFTER INSERT ON pm.trading_control_history
    FOR EACH ROW EXECUTE FUNCTION pm.notify_mode_change();
CREATE OR REPLACE TRIGGER instrument_locks_notify
    AFTER INSERT ON pm.instrument_locks
    FOR EACH ROW EXECUTE FUNCTION pm.notify_lock();

-- pm.check_delivery_transition
-- Trigger on pm.notification_deliveries: a change of state must be a row of pm.transitions for machine
-- 'notification' (its partition pm.notification_transitions; PM070 otherwise), whoever makes it.
CREATE OR REPLACE FUNCTION pm.check_delivery_transition()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.check_transition('notification', OLD.state, NEW.state,
                                format('notification delivery %s/%s', OLD.event_id, left(OLD.target_key, 8)));
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER notification_deliveries_transition
    BEFORE UPDATE OF state ON pm.notification_deliveries
    FOR EACH ROW EXECUTE FUNCTION pm.check_delivery_transition();

-- pm.notify_take
-- The leader's claim of what to send now. targets: [{"key": sha256 hex of the URL, "scheme"}].
-- Registers the targets; gives every event since the last call a delivery per target (pending if its
-- kind is in p_kinds, filtered otherwise); gives up deliveries older than p_give_up; then claims, per
-- target that has sent fewer than p_burst messages in the last minute, up to p_limit due deliveries
-- (pending and due, or sending whose lease ran out or whose claimer is another instance: a crashed
-- leader's), oldest event first, for p_lease. Each row says whether it is a resend and how many
-- messages its target has had in the last minute (the caller sends a digest beyond p_burst).
CREATE OR REPLACE FUNCTION pm.notify_take(p_targets jsonb, p_kinds text[], p_instance text,
                                          p_lease interval DEFAULT interval '2 minutes', p_limit integer DEFAULT 500,
                                          p_burst integer DEFAULT 20, p_give_up interval DEFAULT interval '1 day')
RETURNS TABLE (event_id bigint, target_key text, kind text, level text, created_at timestamptz, data jsonb,
               attempts integer, resend boolean, recent_messages integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    bad text;
BEGIN
    PERFORM pm.require(p_instance, 'instance');
    IF p_targets IS NULL OR jsonb_typeof(p_targets) <> 'array' THEN
        PERFORM pm.raise_error('PM004', 'targets must be a JSON array');
    END IF;
    SELECT t ->> 'key' INTO bad FROM jsonb_array_elements(p_targets) t
     WHERE coalesce(t ->> 'key', '') !~ '^[0-9a-f]{64}$' OR coalesce(t ->> 'scheme', '') = '' LIMIT 1;
    IF FOUND THEN
        PERFORM pm.raise_error('PM004', 'a target needs a key (64 hex digits) and a scheme');
    END IF;
    INSERT INTO pm.notification_targets AS nt (target_key, scheme)
    SELECT t ->> 'key', left(t ->> 'scheme', 32) FROM jsonb_array_elements(p_targets) t
    ON CONFLICT ON CONSTRAINT notification_targets_pkey DO UPDATE SET last_seen_at = now(), scheme = excluded.scheme;
    -- every event an open transaction could still commit was created within the last 5 minutes
    INSERT INTO pm.notification_deliveries (event_id, target_key, state, done_at)
    SELECT e.id, nt.target_key, CASE WHEN e.kind = ANY (coalesce(p_kinds, '{}')) THEN 'pending' ELSE 'filtered' END,
           CASE WHEN e.kind = ANY (coalesce(p_kinds, '{}')) THEN NULL ELSE now() END
      FROM pm.notification_targets nt
      JOIN pm.notification_events e ON e.created_at >= nt.decided_before
     WHERE nt.target_key IN (SELECT t ->> 'key' FROM jsonb_array_elements(p_targets) t)
    ON CONFLICT ON CONSTRAINT notification_deliveries_pkey DO NOTHING;
    UPDATE pm.notification_targets SET decided_before = greatest(decided_before, now() - interval '5 minutes')
     WHERE notification_targets.target_key IN (SELECT t ->> 'key' FROM jsonb_array_elements(p_targets) t);
    UPDATE pm.notification_deliveries d
       SET state = 'given_up', done_at = now(), claimed_by = NULL, lease_until = NULL,
           last_error = left(format('gave up after %s attempt(s) in %s', d.attempts, p_give_up)
                             || coalesce(': ' || d.last_error, ''), 1000)
      FROM pm.notification_events e
     WHERE e.id = d.event_id AND d.state IN ('pending', 'sending') AND e.created_at < now() - p_give_up
       AND (d.state = 'pending' OR d.lease_until < now());
    RETURN QUERY
    WITH recent AS (
        SELECT nt.target_key AS key,
               (SELECT count(DISTINCT coalesce(s.digest_id, s.event_id)) FROM pm.notification_deliveries s
                 WHERE s.target_key = nt.target_key AND s.state = 'sent'
                   AND s.done_at > now() - interval '1 minute')::integer AS n
          FROM pm.notification_targets nt
         WHERE nt.target_key IN (SELECT t ->> 'key' FROM jsonb_array_elements(p_targets) t)),
    due AS (
        SELECT d.event_id, d.target_key, d.state AS was, r.n
          FROM recent r
          CROSS JOIN LATERAL (
              SELECT x.event_id, x.target_key, x.state FROM pm.notification_deliveries x
               WHERE x.target_key = r.key AND r.n < p_burst
                 AND ((x.state = 'pending' AND x.next_attempt_at <= now())
                      OR (x.state = 'sending' AND (x.lease_until < now() OR x.claimed_by <> p_instance)))
               ORDER BY x.event_id
               LIMIT greatest(coalesce(p_limit, 500), 1)
               FOR UPDATE SKIP LOCKED) d),
    claimed AS (
        UPDATE pm.notification_deliveries d
           SET state = 'sending', attempts = d.attempts + 1, claimed_by = p_instance,
               lease_until = now() + coalesce(p_lease, interval '2 minutes')
          FROM due
         WHERE d.event_id = due.event_id AND d.target_key = due.target_key
        RETURNING d.event_id, d.target_key, d.attempts, due.was, due.n)
    SELECT c.event_id, c.target_key::text, e.kind::text, k.level::text, e.created_at, e.data, c.attempts,
           c.was = 'sending', c.n
      FROM claimed c
      JOIN pm.notification_events e ON e.id = c.event_id
      JOIN pm.notification_kinds k ON k.kind = e.kind
     ORDER BY c.target_key, c.event_id;
END;
$$;

-- pm.notify_done
-- Records what the leader's sends did. results: [{"event_id", "target_key", "ok", "error", "digest_id"}].
-- Only deliveries this instance still holds (sending, claimed by p_instance) change: sent, or back
-- to pending after a backoff of p_backoff * 2^(attempts - 1), at most p_backoff_max. Returns how many changed.
CREATE OR REPLACE FUNCTION pm.notify_done(p_results jsonb, p_instance text,
                                          p_backoff interval DEFAULT interval '5 seconds',
                                          p_backoff_max interval DEFAULT interval '10 minutes')
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    changed integer;
BEGIN
    PERFORM pm.require(p_instance, 'instance');
    IF p_results IS NULL OR jsonb_typeof(p_results) <> 'array' THEN
        PERFORM pm.raise_error('PM004', 'results must be a JSON array');
    END IF;
    UPDATE pm.notification_deliveries d
       SET state = CASE WHEN (r ->> 'ok')::boolean THEN 'sent' ELSE 'pending' END,
           done_at = CASE WHEN (r ->> 'ok')::boolean THEN now() END,
           digest_id = CASE WHEN (r ->> 'ok')::boolean THEN (r ->> 'digest_id')::bigint END,
           last_error = CASE WHEN (r ->> 'ok')::boolean THEN d.last_error
                             ELSE left(coalesce(r ->> 'error', 'failed'), 1000) END,
           next_attempt_at = CASE WHEN (r ->> 'ok')::boolean THEN d.next_attempt_at
                                  ELSE now() + least(p_backoff * power(2, greatest(d.attempts - 1, 0))::numeric,
                                                     p_backoff_max) END,
           claimed_by = NULL, lease_until = NULL
      FROM jsonb_array_elements(p_results) r
     WHERE d.event_id = (r ->> 'event_id')::bigint AND d.target_key = r ->> 'target_key'
       AND d.state = 'sending' AND d.claimed_by = p_instance;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed;
END;
$$;

-- pm.notification_log
-- Events since p_since (default: the last day), newest first, each with its deliveries
-- [{scheme, target (first 8 hex of the key), state, attempts, last_error, done_at, digest_id}].
CREATE OR REPLACE FUNCTION pm.notification_log(p_since timestamptz DEFAULT NULL, p_limit integer DEFAULT 200)
RETURNS TABLE (id bigint, kind text, level text, created_at timestamptz, fingerprint text, data jsonb,
               deliveries jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT e.id, e.kind::text, k.level::text, e.created_at, e.fingerprint::text, e.data,
           coalesce((SELECT jsonb_agg(jsonb_build_object('scheme', t.scheme, 'target', left(d.target_key, 8),
                                                         'state', d.state, 'attempts', d.attempts,
                                                         'last_error', d.last_error, 'done_at', d.done_at,
                                                         'digest_id', d.digest_id) ORDER BY t.scheme, d.target_key)
                       FROM pm.notification_deliveries d JOIN pm.notification_targets t USING (target_key)
                      WHERE d.event_id = e.id), '[]')
      FROM pm.notification_events e JOIN pm.notification_kinds k ON k.kind = e.kind
     WHERE e.created_at >= coalesce(p_since, now() - interval '1 day')
     ORDER BY e.id DESC
     LIMIT greatest(coalesce(p_limit, 200), 0);
$$;

-- pm.notification_counts
-- Deliveries by state for /metrics: {pending, sending, sent, retrying (pending after a failure),
-- given_up, filtered} and failed (the last attempt failed: retrying + given_up).
CREATE OR REPLACE FUNCTION pm.notification_counts()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'pending', count(*) FILTER (WHERE state = 'pending' AND attempts = 0),
        'retrying', count(*) FILTER (WHERE state = 'pending' AND attempts > 0),
        'sending', count(*) FILTER (WHERE state = 'sending'),
        'sent', count(*) FILTER (WHERE state = 'sent'),
        'given_up', count(*) FILTER (WHERE state = 'given_up'),
        'failed', count(*) FILTER (WHERE (state = 'pending' AND attempts > 0) OR state = 'given_up'),
        'filtered', count(*) FILTER (WHERE state = 'filtered'))
      FROM pm.notification_deliveries;
$$;

-- pm.cleanup_notifications
-- Deletes events (with their deliveries) older than the retention; returns how many events.
CREATE OR REPLACE FUNCTION pm.cleanup_notifications(retention interval DEFAULT interval '30 days')
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    deleted integer;
BEGIN
    PERFORM pm.require_retention(retention);
    -- beyond the day a delivery is retried: the engine's role cannot erase what the trader was not yet told
    PERFORM pm.require_retention_floor(retention, interval '2 days', 'notifications');
    DELETE FROM pm.notification_events WHERE created_at < now() - retention;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;

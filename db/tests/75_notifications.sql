-- Notifications (functions 75_notifications.sql, migration 010): events written with their cause,
-- the leader's claims per URL key, results, backoff, resends, bursts, giving up, the state machine.
-- Everything here runs in one transaction, so now() is one instant: times are moved by UPDATE.
SELECT plan(45);

CREATE FUNCTION pg_temp.sig(fp text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('fingerprint', fp, 'instrument', 'BANK_NIFTY', 'signal_type', 'BASE_ENTRY',
        'position', 'Long_1', 'signal_timestamp', '2025-11-28T05:00:00Z', 'processing_status', 'executed',
        'reason', 'entered 4 lots', 'payload', '{"price": 52000}'::jsonb, 'instance', 'inst-1',
        'orders', jsonb_build_array(jsonb_build_object('client_order_id', 'pm-' || left(fp, 24) || '-Long_1',
            'fingerprint', fp, 'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'side', 'BUY',
            'lots', 4, 'price', 52000)));
$$;
CREATE FUNCTION pg_temp.effects() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('expected_version', NULL, 'doc', jsonb_build_object(
        'position_id', 'BANK_NIFTY_Long_1', 'instrument', 'BANK_NIFTY', 'entry_timestamp', '2025-11-28T05:00:00Z',
        'entry_price', 52000, 'lots', 4, 'quantity', 120, 'initial_stop', 51650, 'current_stop', 51650,
        'highest_close', 52000, 'is_base_position', true)));
$$;
CREATE FUNCTION pg_temp.targets() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('key', repeat('a', 64), 'scheme', 'json'),
                             jsonb_build_object('key', repeat('b', 64), 'scheme', 'mailto'));
$$;
CREATE FUNCTION pg_temp.take(instance text, kinds text[] DEFAULT ARRAY['signal_executed', 'mode_changed',
                             'breaker_tripped', 'instrument_locked', 'daily_report'])
RETURNS SETOF record LANGUAGE sql AS $$
    SELECT event_id, target_key, kind, attempts, resend, recent_messages
      FROM pm.notify_take(pg_temp.targets(), kinds, instance, interval '2 minutes', 500, 20, interval '1 day');
$$;
CREATE FUNCTION pg_temp.state(event bigint, key text) RETURNS text LANGUAGE sql AS $$
    SELECT state FROM pm.notification_deliveries WHERE event_id = event AND target_key = repeat(key, 64);
$$;

-- events exist with their cause, in its transaction
SELECT throws_ok($$SELECT pm.notify('no_such_kind', '{}')$$, 'PM071', 'unknown notification kind no_such_kind',
                 'an unknown kind is refused');
SELECT ok(pm.record_notification('daily_report', '{"day": "2025-11-27"}', '2025-11-27') IS NOT NULL,
          'the daily report of a day is recorded');
SELECT is(pm.record_notification('daily_report', '{"day": "2025-11-27"}', '2025-11-27'), NULL,
          'and only once (a second leader''s try changes nothing)');
SELECT is((pm.apply_signal(pg_temp.sig(repeat('c', 64)), pg_temp.effects(), '[]', '{}', 1)) ->> 'new', 'true',
          'an executed signal');
SELECT results_eq($$SELECT kind::text, fingerprint::text, data ->> 'instrument', data ->> 'position',
                           (data -> 'orders' -> 0 ->> 'lots')::int, data ->> 'price'
                      FROM pm.notification_events WHERE kind = 'signal_executed'$$,
                  $$VALUES ('signal_executed', repeat('c', 64), 'BANK_NIFTY', 'Long_1', 4, '52000')$$,
                  'writes one signal_executed event with its instrument, layer, lots and price');
SELECT is((pm.apply_signal(pg_temp.sig(repeat('c', 64)), pg_temp.effects(), '[]', '{}', 2)) ->> 'new', 'false',
          'a duplicate');
SELECT is((SELECT count(*)::int FROM pm.notification_events WHERE kind = 'signal_executed'), 1,
          'writes no event');
SELECT ok(pm.set_trading_mode('halted', 'RBI policy', 'cli:me') IS NOT NULL, 'a halt');
SELECT results_eq($$SELECT kind::text, data ->> 'mode', data ->> 'changed_by' FROM pm.notification_events
                     WHERE kind = 'mode_changed'$$, $$VALUES ('mode_changed', 'halted', 'cli:me')$$,
                  'is a mode_changed event');
SELECT is((pm.apply_signal(pg_temp.sig(repeat('d', 64)), '[]', '[]', '{}', 2)) ->> 'blocked', 'true',
          'a signal while halted is blocked');
SELECT results_eq($$SELECT fingerprint::text, data ->> 'reason' FROM pm.notification_events
                     WHERE kind = 'signal_blocked'$$,
                  $$VALUES (repeat('d', 64), 'trading paused (halted): RBI policy')$$,
                  'and recorded as signal_blocked with the reason');
SELECT ok(pm.set_trading_mode('exits_only', 'daily loss limit', 'breaker:daily_loss') IS NOT NULL
          AND pm.lock_instrument('GOLD_MINI', now() + interval '1 day', 'max 2 entries per day reached',
                                 'breaker:max_entries') > 0
          AND pm.lock_instrument('COPPER', now() + interval '1 hour', 'results day', 'cli:me') > 0,
          'a breaker''s change of mode, a breaker''s lock, an operator''s lock');
SELECT results_eq($$SELECT kind::text, coalesce(data ->> 'instrument', data ->> 'mode') FROM pm.notification_events
                     WHERE kind IN ('breaker_tripped', 'instrument_locked') ORDER BY id$$,
                  $$VALUES ('breaker_tripped', 'exits_only'), ('breaker_tripped', 'GOLD_MINI'),
                           ('instrument_locked', 'COPPER')$$,
                  'are two breaker_tripped events and one instrument_locked');

-- the leader's claims
SELECT throws_ok($$SELECT * FROM pm.notify_take('[{"key": "secret-url", "scheme": "json"}]', '{}', 'i')$$,
                 'PM004', 'a target needs a key (64 hex digits) and a scheme', 'a target is known by its key only');
SELECT is((SELECT count(*)::int FROM pg_temp.take('leader-1') AS t(e bigint, k text, kind text, a int, r boolean,
                                                                     n int)),
          2 * 6, 'a first take claims every chosen event for each URL (6 events x 2 URLs)');
SELECT is((SELECT count(*)::int FROM pm.notification_deliveries WHERE state = 'filtered'), 2,
          'the unchosen kind (signal_blocked) is filtered for both URLs');
SELECT is((SELECT count(*)::int FROM pg_temp.take('leader-1') AS t(e bigint, k text, kind text, a int, r boolean,
                                                                     n int)),
          0, 'a second take by the same leader claims nothing (all leased to it)');
SELECT is(pm.notify_done((SELECT jsonb_agg(jsonb_build_object('event_id', event_id, 'target_key', target_key,
                                                               'ok', target_key = repeat('a', 64),
                                                               'error', 'mailto: connection refused'))
                            FROM pm.notification_deliveries WHERE state = 'sending'), 'leader-2'),
          0, 'results from an instance that holds no claim change nothing');
SELECT is(pm.notify_done((SELECT jsonb_agg(jsonb_build_object('event_id', event_id, 'target_key', target_key,
                                                               'ok', target_key = repeat('a', 64),
                                                               'error', 'mailto: connection refused'))
                            FROM pm.notification_deliveries WHERE state = 'sending'), 'leader-1',
                         interval '5 seconds', interval '10 minutes'),
          12, 'the leader''s results are recorded');
SELECT results_eq($$SELECT state::text, count(*)::int, min(next_attempt_at - now()), min(last_error)
                      FROM pm.notification_deliveries WHERE state IN ('sent', 'pending') GROUP BY state ORDER BY 1$$,
                  $$VALUES ('pending', 6, interval '5 seconds', 'mailto: connection refused'),
                           ('sent', 6, interval '0', NULL)$$,
                  'sent for one URL; for the other pending again, 5 s on, with the error');
SELECT throws_ok($$UPDATE pm.notification_deliveries SET state = 'pending' WHERE state = 'sent'$$, 'PM070', NULL,
                 'a sent delivery never goes back to pending (the transitions are data)');
SELECT is((SELECT count(*)::int FROM pg_temp.take('leader-1') AS t(e bigint, k text, kind text, a int, r boolean,
                                                                     n int)),
          0, 'a failed delivery waits for its backoff');
UPDATE pm.notification_deliveries SET next_attempt_at = now() - interval '1 second' WHERE state = 'pending';
SELECT results_eq($$SELECT count(*)::int, min(a), bool_or(r), min(n)
                      FROM pg_temp.take('leader-1') AS t(e bigint, k text, kind text, a int, r boolean, n int)$$,
                  $$VALUES (6, 2, false, 0)$$, 'then it is claimed again: the second attempt, not a resend');
SELECT results_eq($$SELECT count(*)::int, bool_and(r)
                      FROM pg_temp.take('leader-2') AS t(e bigint, k text, kind text, a int, r boolean, n int)$$,
                  $$VALUES (6, true)$$,
                  'a new leader takes over a claim of another instance (a killed leader''s) as a resend');
SELECT is(pm.notify_done((SELECT jsonb_agg(jsonb_build_object('event_id', event_id, 'target_key', target_key,
                                                               'ok', true, 'digest_id', 1))
                            FROM pm.notification_deliveries WHERE state = 'sending'), 'leader-1'), 0,
          'and the old leader''s late result is ignored');

-- bursts, giving up, listing, cleanup
SELECT ok(pm.notify('mode_changed', jsonb_build_object('n', n)) > 0, 'twenty-one more events')
  FROM generate_series(1, 1) n;
SELECT pm.notify('mode_changed', jsonb_build_object('n', n)) FROM generate_series(2, 21) n;
UPDATE pm.notification_deliveries SET state = 'sent', done_at = now(), digest_id = NULL
 WHERE state = 'sending' AND target_key = repeat('b', 64);
SELECT results_eq($$SELECT k, count(*)::int, min(n)
                      FROM pg_temp.take('leader-2') AS t(e bigint, k text, kind text, a int, r boolean, n int)
                     GROUP BY k ORDER BY k$$,
                  $$VALUES (repeat('a', 64), 21, 6), (repeat('b', 64), 21, 6)$$,
                  'each row says how many messages its URL had in the last minute (the caller digests past 20)');
UPDATE pm.notification_deliveries SET state = 'sent', done_at = now() WHERE state = 'sending'
   AND target_key = repeat('a', 64);
SELECT ok(pm.notify('mode_changed', '{}') > 0, 'one more event');
SELECT results_eq($$SELECT k FROM pg_temp.take('leader-2') AS t(e bigint, k text, kind text, a int, r boolean, n int)$$,
                  $$VALUES (repeat('b', 64))$$,
                  'a URL that had 20 messages in the last minute gets nothing until the minute has passed');
UPDATE pm.notification_deliveries SET state = 'sent', done_at = now() WHERE state = 'sending';
UPDATE pm.notification_events SET created_at = now() - interval '25 hours'
 WHERE id = (SELECT max(id) FROM pm.notification_events);
SELECT is((SELECT count(*)::int FROM pg_temp.take('leader-2') AS t(e bigint, k text, kind text, a int, r boolean,
                                                                     n int)), 0, 'a take');
SELECT results_eq($$SELECT state::text, last_error FROM pm.notification_deliveries
                     WHERE event_id = (SELECT max(id) FROM pm.notification_events) ORDER BY target_key$$,
                  $$VALUES ('given_up', 'gave up after 0 attempt(s) in 1 day'), ('sent', NULL)$$,
                  'gives up an event still undelivered a day later (where it was sent, it stays sent)');
SELECT results_eq($$SELECT jsonb_array_length(deliveries), deliveries -> 0 ->> 'scheme', deliveries -> 0 ->> 'target'
                      FROM pm.notification_log(now() - interval '2 days', 1)$$,
                  $$VALUES (2, 'json', 'aaaaaaaa')$$,
                  'the log shows each delivery by scheme and key prefix, never a URL');
SELECT is(pm.notification_counts(), '{"pending": 0, "retrying": 0, "sending": 0, "sent": 55, "given_up": 1,
          "failed": 1, "filtered": 2}'::jsonb, 'the counts /metrics shows');
SELECT is(pm.cleanup_notifications(interval '1 day'), 1, 'cleanup deletes events older than the retention');
SELECT throws_ok($$SELECT pm.record_notification('breaker_tripped', '{}', NULL)$$, 'PM071', NULL,
                 'only the daily report is recorded from outside the database: no forged alert');

-- the broker session: one event per change of state, whichever instance reports it
SELECT throws_ok($$SELECT pm.record_broker_session('flaky', 'x', 'i1')$$, 'PM072', NULL, 'an unknown broker state');
SELECT is(pm.record_broker_session('ok', 'connected', 'i1'), NULL, 'a first ok tells nothing');
SELECT ok(pm.record_broker_session('session_expired', '403 Invalid openalgo apikey', 'i1') IS NOT NULL,
          'a session expired is an event');
SELECT is(pm.record_broker_session('session_expired', '403', 'i2'), NULL,
          'the same state again, from another instance, is the same episode: nothing');
SELECT ok(pm.record_broker_session('ok', NULL, 'i2') IS NOT NULL, 'restored is an event');
SELECT results_eq($$SELECT data ->> 'state', data ->> 'previous', data ->> 'instance' FROM pm.notification_events
                     WHERE kind = 'broker_session' ORDER BY id$$,
                  $$VALUES ('session_expired', 'ok', 'i1'), ('ok', 'session_expired', 'i2')$$,
                  'each says the state before and who saw it');
CREATE ROLE pm_tap_app_75;
SELECT pm.grant_app_role('pm_tap_app_75');
SET SESSION AUTHORIZATION pm_tap_app_75;
SELECT throws_ok($$SELECT pm.cleanup_notifications(interval '1 day')$$, 'PM020', NULL,
                 'the app role may not clean notifications younger than 2 days (a delivery retries for a day)');
SELECT ok(pm.record_broker_session('unreachable', 'connection refused', 'i3') IS NOT NULL,
          'the engine''s role records what its broker sender saw');
RESET SESSION AUTHORIZATION;

-- issue 29: a signal the engine itself blocked (an EXIT for a layer never open, a zero-lot entry, a gate's
-- refusal) is logged 'blocked' and is signal_blocked, never signal_executed ("EXIT ... executed" on the phone)
SELECT is((pm.apply_signal(pg_temp.sig(repeat('e', 64)) || '{"signal_type": "EXIT", "position": "Long_2",
                               "processing_status": "blocked", "reason": "no open position Long_2", "orders": []}',
                           '[]', '[]', '{}', (SELECT version FROM pm.portfolio_state))) ->> 'new', 'true',
          'an EXIT the engine blocked is applied (logged blocked)');
SELECT results_eq($$SELECT kind::text, data ->> 'reason' FROM pm.notification_events WHERE fingerprint = repeat('e', 64)$$,
                  $$VALUES ('signal_blocked', 'no open position Long_2')$$,
                  'and is one signal_blocked event with the engine''s reason, not signal_executed');

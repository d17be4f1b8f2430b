-- The helpers every writer of the book and every state machine uses (06_book_and_machines.sql, migration 019):
-- the book's lock and version, an order's end, the one transitions table and its check, the one refuse-change
-- trigger. The states the transitions name are the ones each machine's table allows (its CHECK constraint).
SELECT plan(30);

-- the one transitions table, each machine's whitelist its partition under the old name
SELECT has_table('pm', t, 'table pm.' || t) FROM unnest(ARRAY['state_machines', 'transitions']) t;
SELECT results_eq($$SELECT machine::text, sqlstate::text FROM pm.state_machines ORDER BY machine$$,
                  $$VALUES ('notification', 'PM070'), ('order', 'PM041'), ('roll', 'PM080')$$,
                  'three machines, each with the SQLSTATE its refused moves raise');
SELECT results_eq($$SELECT c.relname::text COLLATE "default" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'pm.transitions'::regclass ORDER BY c.relname$$,
                  $$VALUES ('notification_transitions'), ('order_transitions'), ('roll_transitions')$$,
                  'the three whitelists are the partitions of pm.transitions');
SELECT results_eq($$SELECT machine::text, count(*)::int FROM pm.transitions GROUP BY machine ORDER BY machine$$,
                  $$VALUES ('notification', 6), ('order', 19), ('roll', 8)$$,
                  'every transition of every machine is a row of pm.transitions');
SELECT is((SELECT count(*)::int FROM pm.transitions t JOIN pm.order_transitions o USING (from_state, to_state)
            WHERE t.machine = 'order'), 19, 'the order rows are the old whitelist''s rows');
INSERT INTO pm.transitions (machine, from_state, to_state, meaning) VALUES ('roll', 'failed', 'pending', 'tap');
SELECT is((SELECT count(*)::int FROM pm.roll_transitions WHERE from_state = 'failed'), 1,
          'a row written to pm.transitions lands in its machine''s partition');
DELETE FROM pm.transitions WHERE meaning = 'tap';
SELECT throws_ok($$INSERT INTO pm.transitions (machine, from_state, to_state, meaning) VALUES ('bogus', 'a', 'b', 'x')$$,
                 '23514', NULL, 'a machine without a partition is refused');
SELECT throws_ok($$INSERT INTO pm.transitions (machine, from_state, to_state, meaning)
                   VALUES ('order', 'queued', 'sending', 'again')$$, '23505', NULL, 'a transition is listed once');

-- the states each machine's transitions name are the states its table allows
SELECT is((SELECT array_agg(s ORDER BY s) FROM (SELECT from_state s FROM pm.transitions WHERE machine = 'order'
                                               UNION SELECT to_state FROM pm.transitions WHERE machine = 'order') x
            WHERE position(quote_literal(s) IN pg_get_constraintdef((SELECT oid FROM pg_constraint
                                                  WHERE conname = 'broker_orders_status_check'))) = 0), NULL,
          'every order state of a transition is allowed by broker_orders_status_check');
SELECT is((SELECT count(DISTINCT s)::int FROM (SELECT from_state s FROM pm.transitions WHERE machine = 'order'
                                               UNION SELECT to_state FROM pm.transitions WHERE machine = 'order') x),
          10, 'the order transitions reach all ten order states');
SELECT is((SELECT array_agg(s ORDER BY s) FROM (SELECT from_state s FROM pm.transitions WHERE machine = 'roll'
                                               UNION SELECT to_state FROM pm.transitions WHERE machine = 'roll') x
            WHERE s <> 'none' AND position(quote_literal(s) IN pg_get_constraintdef((SELECT oid FROM pg_constraint
                                                  WHERE conname = 'rolls_state_check'))) = 0), NULL,
          'every roll state of a transition (but none: not yet recorded) is allowed by rolls_state_check');
SELECT is((SELECT array_agg(s ORDER BY s) FROM (SELECT from_state s FROM pm.transitions WHERE machine = 'notification'
                                               UNION SELECT to_state FROM pm.transitions WHERE machine = 'notification') x
            WHERE position(quote_literal(s) IN pg_get_constraintdef((SELECT oid FROM pg_constraint
                                                  WHERE conname = 'notification_deliveries_state_check'))) = 0), NULL,
          'every delivery state of a transition is allowed by notification_deliveries_state_check');

-- pm.check_transition: the machine's SQLSTATE, the thing named
SELECT lives_ok($$SELECT pm.check_transition('order', 'queued', 'sending', 'order x')$$, 'a listed move passes');
SELECT throws_ok($$SELECT pm.check_transition('order', 'unknown', 'sending', 'order x')$$, 'PM041',
                 'order x cannot go from unknown to sending', 'an order''s refused move is PM041');
SELECT throws_ok($$SELECT pm.check_transition('roll', 'rolled', 'failed', 'roll 7')$$, 'PM080',
                 'roll 7 cannot go from rolled to failed', 'a roll''s refused move is PM080');
SELECT throws_ok($$SELECT pm.check_transition('notification', 'sent', 'pending', 'delivery 1/ab')$$, 'PM070',
                 'delivery 1/ab cannot go from sent to pending', 'a delivery''s refused move is PM070');
SELECT throws_ok($$SELECT pm.check_transition('order', 'queued', 'bogus', 'order x')$$, 'PM041', NULL,
                 'a state no machine has is refused too');

-- pm.order_ended / pm.order_unsettled: every order state is exactly one of them
SELECT results_eq($$SELECT s FROM unnest(ARRAY['queued', 'sending', 'open', 'partially_filled', 'filled', 'rejected',
                                               'cancelled', 'expired', 'unknown', 'needs_review']) s
                     WHERE pm.order_ended(s) ORDER BY s$$,
                  $$VALUES ('cancelled'), ('expired'), ('filled'), ('rejected')$$,
                  'filled, cancelled, rejected and expired are the ended states');
SELECT is((SELECT count(*)::int FROM unnest(ARRAY['queued', 'sending', 'open', 'partially_filled', 'filled', 'rejected',
                                                  'cancelled', 'expired', 'unknown', 'needs_review']) s
            WHERE pm.order_ended(s) = pm.order_unsettled(s)), 0, 'an order is either ended or unsettled, never both');
SELECT ok(pm.order_unsettled('needs_review') AND pm.order_unsettled('queued'), 'needs_review and queued are unsettled');

-- pm.lock_book / pm.bump_book
SELECT is((SELECT count(*)::int FROM pg_locks WHERE relation = 'pm.portfolio_state'::regclass
             AND pid = pg_backend_pid() AND mode = 'RowShareLock'), 0, 'the book is not locked before lock_book');
SELECT is((pm.lock_book()).id, 1, 'lock_book returns the portfolio row');
SELECT is((SELECT count(*)::int FROM pg_locks WHERE relation = 'pm.portfolio_state'::regclass
             AND pid = pg_backend_pid() AND mode = 'RowShareLock'), 1,
          'lock_book locks the row for the transaction (SELECT ... FOR UPDATE)');
UPDATE pm.portfolio_state SET closed_equity = equity_high + 100 WHERE id = 1;
SELECT pm.bump_book();
SELECT results_eq($$SELECT version, equity_high < closed_equity FROM pm.portfolio_state$$,
                  $$VALUES (2, true)$$, 'bump_book: a new version, equity_high left as it was');
SELECT pm.bump_book(true);
SELECT results_eq($$SELECT version, equity_high = closed_equity FROM pm.portfolio_state$$,
                  $$VALUES (3, true)$$, 'bump_book(true): a new version, equity_high raised to closed equity');

-- pm.refuse_change: one trigger function for every append-only table, its argument the SQLSTATE
SELECT results_eq($$SELECT c.relname::text COLLATE "default", t.tgargs FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                     WHERE t.tgfoid = 'pm.refuse_change'::regproc ORDER BY c.relname$$,
                  $$VALUES ('capital_flows', 'PM007\000'::bytea), ('order_events', 'PM047\000'::bytea),
                           ('order_fills', 'PM047\000'::bytea), ('portfolio_history', 'PM007\000'::bytea),
                           ('position_history', 'PM007\000'::bytea), ('pyramiding_history', 'PM007\000'::bytea),
                           ('roll_events', 'PM084\000'::bytea)$$,
                  'the seven append-only tables refuse changes through pm.refuse_change, each with its code');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'pm'::regnamespace
             AND proname ~ '^(refuse_.*_change|check_(order|roll)_transition)$'), 0,
          'no machine keeps its own refuse-change or transition-check function');
CREATE TABLE pm.tap_append_only (x integer);
CREATE TRIGGER tap_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON pm.tap_append_only
    FOR EACH STATEMENT EXECUTE FUNCTION pm.refuse_change('PM084');
INSERT INTO pm.tap_append_only VALUES (1);
SELECT throws_ok($$DELETE FROM pm.tap_append_only$$, 'PM084', 'tap_append_only is append-only: DELETE refused',
                 'a new append-only table takes the pattern with its code');
SELECT throws_ok($$TRUNCATE pm.tap_append_only$$, 'PM084', 'tap_append_only is append-only: TRUNCATE refused',
                 'TRUNCATE too');

SELECT * FROM finish();

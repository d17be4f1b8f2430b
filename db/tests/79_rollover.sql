-- The roll state machine (migration 012; 77_roll_legs.sql, 78_roll_accounting.sql, 79_roll_machine.sql, 81_roll_views.sql): the whitelist, every transition and the refused ones,
-- the events, legs driven by their orders' ends (an unknown leg blocks), the accounting (old P&L into closed equity
-- and rollover_pnl, stops shifted by the basis, a lot-size re-size), the failures, synthetic legs, the block.
SELECT plan(87);

CREATE FUNCTION pg_temp.position(id text, instr text, symbol text, n integer, base boolean DEFAULT true,
                                 entry numeric DEFAULT 75000) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pm.portfolio_positions (position_id, instrument, entry_timestamp, entry_price, lots, quantity,
                                        initial_stop, current_stop, highest_close, is_base_position, futures_symbol,
                                        expiry, contract_month, initial_risk)
    VALUES (id, instr, now(), entry, n, n * 100, entry - 1000, entry - 800, entry + 200, base, symbol,
            '2027-01-05', '2027-01', 10000);
    IF base THEN
        INSERT INTO pm.pyramiding_state (instrument, base_position_id) VALUES (instr, id)
        ON CONFLICT (instrument) DO UPDATE SET base_position_id = EXCLUDED.base_position_id;
    END IF;
    RETURN id;
END;
$$;
-- a plan layer: GOLDM Jan → Feb, MCX quantities in lots, 10 rupees per point per lot
CREATE FUNCTION pg_temp.layer(id text, lots integer, new_lots integer DEFAULT NULL, to_symbol text DEFAULT 'GOLDM05FEB27FUT')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('position_id', id, 'exchange', 'MCX', 'to_symbol', to_symbol, 'to_expiry', '2027-02-05',
                              'to_contract_month', '2027-02', 'new_lots', coalesce(new_lots, lots), 'lot_size', 100,
                              'new_lot_size', 100, 'close_quantity', lots, 'open_quantity', coalesce(new_lots, lots),
                              'point_value', 10, 'new_point_value', 10, 'price', 76000);
$$;
CREATE FUNCTION pg_temp.fill(id text, broker_id text, price numeric) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.order_sending(id);
    PERFORM pm.order_accepted(id, broker_id);
    PERFORM pm.record_order_fill(id, broker_id, (SELECT quantity FROM pm.broker_orders WHERE client_order_id = id), price);
END;
$$;
CREATE FUNCTION pg_temp.reject(id text) RETURNS void LANGUAGE sql AS $$
    SELECT pm.order_sending(id); SELECT pm.order_rejected(id, 'RMS: no margin');
$$;
CREATE FUNCTION pg_temp.state(id bigint) RETURNS text LANGUAGE sql AS $$
    SELECT state::text FROM pm.rolls WHERE roll_id = id;
$$;

-- schema and whitelist
SELECT has_table('pm', t, 'table pm.' || t) FROM unnest(ARRAY['rolls', 'roll_transitions', 'roll_events', 'roll_layers']) t;
SELECT is((SELECT count(*)::int FROM pm.roll_transitions), 8, 'eight allowed transitions');
SELECT is((SELECT count(*)::int FROM pm.roll_transitions WHERE from_state IN ('rolled', 'failed')), 0,
          'rolled and failed are final: a retry is a new roll');
SELECT has_index('pm', 'rolls', 'rolls_one_active_idx', 'one roll in flight per instrument');

-- a Gold Mini group (base + pyramid) rolled through the broker
SELECT pg_temp.position('GOLD_MINI_Long_1', 'GOLD_MINI', 'GOLDM05JAN27FUT', 2);
SELECT pg_temp.position('GOLD_MINI_Long_2', 'GOLD_MINI', 'GOLDM05JAN27FUT', 1, false, 75500);
SELECT throws_ok($$SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2)))$$,
                 'PM082', NULL, 'a plan that leaves a layer behind is refused: the group rolls together');
SELECT throws_ok($$SELECT pm.roll_begin('SILVER_MINI', '[]')$$, 'PM082', NULL, 'nothing open: nothing to roll');
-- a group whose book is not yet what the broker holds does not start a roll (PM085)
SAVEPOINT unsettled;
SELECT pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', 'pm-unsettled', 'fingerprint', repeat('e', 64),
        'position_id', 'GOLD_MINI_Long_2', 'instrument', 'GOLD_MINI', 'side', 'BUY', 'lots', 1, 'price', 75500,
        'exchange', 'MCX', 'symbol', 'GOLDM05JAN27FUT', 'quantity', 1, 'product', 'NRML', 'leg', 'FUT')));
SELECT throws_ok($$SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2),
                                                                       pg_temp.layer('GOLD_MINI_Long_2', 1)))$$,
                 'PM085', NULL, 'an entry still queued for the broker: no roll from lots it may never hold');
SELECT pm.order_sending('pm-unsettled');
SELECT pm.order_unknown('pm-unsettled', 'timeout');
SELECT throws_ok($$SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2),
                                                                       pg_temp.layer('GOLD_MINI_Long_2', 1)))$$,
                 'PM085', NULL, 'an unknown order blocks the roll until it is resolved');
ROLLBACK TO SAVEPOINT unsettled;
SAVEPOINT locked;
SELECT pm.lock_instrument('GOLD_MINI', 'infinity', 'reconciliation: book 3, broker 2', 'reconcile');
SELECT throws_ok($$SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2),
                                                                       pg_temp.layer('GOLD_MINI_Long_2', 1)))$$,
                 'PM085', NULL, 'a reconciliation lock: the book and the broker differ, nothing rolls');
ROLLBACK TO SAVEPOINT locked;
SELECT results_eq($$SELECT roll_id, state, from_symbol, to_symbol, forced
                      FROM pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2),
                                                                        pg_temp.layer('GOLD_MINI_Long_2', 1)), true,
                                         'forced by the trader')$$,
                  $$VALUES (1::bigint, 'pending'::varchar, 'GOLDM05JAN27FUT'::varchar, 'GOLDM05FEB27FUT'::varchar, true)$$,
                  'none → pending: the group''s roll recorded');
SELECT results_eq($$SELECT DISTINCT rollover_status FROM pm.portfolio_positions$$, $$VALUES ('pending'::varchar)$$,
                  'both layers pending');
SELECT throws_ok($$SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2),
                                                                       pg_temp.layer('GOLD_MINI_Long_2', 1)))$$,
                 'PM081', 'GOLD_MINI is already rolling', 'a second roll of a rolling group is refused');
SELECT is(pm.roll_blocks('GOLD_MINI'), 'rolling: GOLD_MINI is moving from GOLDM05JAN27FUT to GOLDM05FEB27FUT (roll 1, pending)',
          'a rolling group blocks its signals');
SELECT is(pm.control_blocks(jsonb_build_object('instrument', 'GOLD_MINI', 'signal_type', 'EXIT',
                                               'signal_timestamp', now())), pm.roll_blocks('GOLD_MINI'),
          'an exit waits too: it would sell the contract being closed');
SELECT is(pm.roll_blocks('SILVER_MINI'), NULL, 'another instrument is free');
SELECT throws_ok($$SELECT pm.roll_open(1)$$, 'PM080', 'roll 1 cannot go from pending to opening', 'pending → opening refused');
SELECT throws_ok($$SELECT pm.roll_complete(1)$$, 'PM080', NULL, 'pending → rolled refused');
SELECT throws_ok($$SELECT pm.roll_fail(1, 'x')$$, 'PM083', NULL, 'a pending roll is abandoned, not failed by its legs');
SELECT results_eq($$SELECT state FROM pm.roll_send_close(1)$$, $$VALUES ('closing'::varchar)$$, 'pending → closing');
SELECT results_eq($$SELECT client_order_id, side, symbol, quantity, lots, price, roll_leg, status FROM pm.broker_orders
                    ORDER BY client_order_id$$,
                  $$VALUES ('r1-GOLD_MINI_Long_1-C'::varchar, 'SELL'::varchar, 'GOLDM05JAN27FUT'::varchar, 2, 2,
                            76000.00::numeric(12,2), 'close'::varchar, 'queued'::varchar),
                           ('r1-GOLD_MINI_Long_2-C', 'SELL', 'GOLDM05JAN27FUT', 1, 1, 76000.00, 'close', 'queued')$$,
                  'one close order per layer, on the old contract, tagged with the roll');
SELECT results_eq($$SELECT DISTINCT rollover_status FROM pm.portfolio_positions$$, $$VALUES ('in_progress'::varchar)$$,
                  'both layers in progress');
SELECT is(pm.record_reconcile_differences(jsonb_build_array(jsonb_build_object('symbol', 'GOLDM05JAN27FUT',
          'exchange', 'MCX', 'book_quantity', 3, 'broker_quantity', 0))), 0,
          'reconciliation does not judge a rolling group (its legs are on their way)');
SELECT is((SELECT count(*)::int FROM pm.paper_roll_legs()), 0,
          'a group with no paper fill is never paper-filled, whoever asks');
SAVEPOINT paper;
INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price, status,
                              broker_order_id, fill_price)
SELECT 'pm-paper-' || position_id, repeat('d', 64), position_id, 'GOLD_MINI', 'BUY', lots, entry_price, 'filled',
       'paper-' || position_id, entry_price
  FROM pm.portfolio_positions WHERE instrument = 'GOLD_MINI';
SELECT results_eq($$SELECT * FROM pm.paper_roll_legs()$$,
                  $$VALUES ('r1-GOLD_MINI_Long_1-C'::text), ('r1-GOLD_MINI_Long_2-C')$$,
                  'a group traded on paper: its queued legs are the paper fill''s to fill');
ROLLBACK TO SAVEPOINT paper;
SELECT throws_ok($$SELECT pm.roll_send_close(1)$$, 'PM080', 'roll 1 cannot go from closing to closing',
                 'the close legs are never written twice');
SELECT throws_ok($$SELECT pm.roll_abandon(1, 'changed my mind')$$, 'PM080', NULL, 'a closing roll cannot be abandoned');
SELECT throws_ok($$SELECT pm.roll_complete(1)$$, 'PM080', NULL, 'closing → rolled refused');
SELECT throws_ok($$SELECT pm.roll_open(1)$$, 'PM083', NULL, 'closing → opening refused while a close leg is unfilled');
SELECT throws_ok($$SELECT pm.roll_fail(1, 'x')$$, 'PM083', NULL, 'closing → failed refused while a close leg is on its way');
SELECT pg_temp.fill('r1-GOLD_MINI_Long_1-C', 'B1', 76100);
SELECT is(pg_temp.state(1), 'closing', 'one close filled: still closing');
SELECT pm.order_sending('r1-GOLD_MINI_Long_2-C');
SELECT pm.order_unknown('r1-GOLD_MINI_Long_2-C', 'timeout');
SELECT is(pg_temp.state(1), 'closing', 'an unknown leg blocks the roll');
SELECT is((SELECT count(*)::int FROM pm.broker_orders WHERE roll_leg = 'open'), 0, 'nothing opens while a close is unknown');
SELECT pm.order_linked('r1-GOLD_MINI_Long_2-C', 'B2', 'matched in the broker''s order book');
SELECT pm.record_order_fill('r1-GOLD_MINI_Long_2-C', 'B2', 1, 76100);
SELECT is(pg_temp.state(1), 'opening', 'the last close filled: closing → opening in the same transaction');
SELECT is((SELECT closed_equity FROM pm.portfolio_state), 5000000 + 1100 * 2 * 10 + 600 * 1 * 10::numeric,
          'the old contract''s P&L is in closed equity: (close − entry) × lots × point value');
SELECT results_eq($$SELECT position_id, rollover_pnl, original_entry_price, entry_price, status FROM pm.portfolio_positions
                    ORDER BY position_id$$,
                  $$VALUES ('GOLD_MINI_Long_1'::varchar, 22000.00::numeric(15,2), 75000.00::numeric(12,2),
                            76100.00::numeric(12,2), 'open'::varchar),
                           ('GOLD_MINI_Long_2', 6000.00, 75500.00, 76100.00, 'open')$$,
                  'rollover_pnl and original_entry_price kept; flat until the open fills');
SELECT results_eq($$SELECT client_order_id, side, symbol, quantity, price FROM pm.broker_orders WHERE roll_leg = 'open'
                    ORDER BY client_order_id$$,
                  $$VALUES ('r1-GOLD_MINI_Long_1-O'::varchar, 'BUY'::varchar, 'GOLDM05FEB27FUT'::varchar, 2,
                            76100.00::numeric(12,2)),
                           ('r1-GOLD_MINI_Long_2-O', 'BUY', 'GOLDM05FEB27FUT', 1, 76100.00)$$,
                  'one open order per layer on the new contract, at the close price');
SELECT throws_ok($$SELECT pm.roll_open(1)$$, 'PM080', NULL, 'the open legs are never written twice');
SELECT throws_ok($$SELECT pm.roll_send_close(1)$$, 'PM080', NULL, 'opening → closing refused');
SELECT throws_ok($$SELECT pm.roll_complete(1)$$, 'PM083', NULL, 'opening → rolled refused before the opens fill');
SELECT pg_temp.fill('r1-GOLD_MINI_Long_1-O', 'B3', 76400);
SELECT is(pg_temp.state(1), 'opening', 'one open filled: still opening');
SELECT pg_temp.fill('r1-GOLD_MINI_Long_2-O', 'B4', 76400);
SELECT is(pg_temp.state(1), 'rolled', 'the last open filled: opening → rolled');
SELECT results_eq($$SELECT position_id, futures_symbol, expiry, contract_month, entry_price, initial_stop, current_stop,
                           highest_close, rollover_status, rollover_count, rollover_timestamp IS NOT NULL, original_expiry
                      FROM pm.portfolio_positions ORDER BY position_id$$,
                  $$VALUES ('GOLD_MINI_Long_1'::varchar, 'GOLDM05FEB27FUT'::varchar, '2027-02-05'::varchar,
                            '2027-02'::varchar, 76400.00::numeric(12,2), 74300.00::numeric(12,2), 74500.00::numeric(12,2),
                            75500.00::numeric(12,2), 'none'::varchar, 1, true, '2027-01-05'::varchar),
                           ('GOLD_MINI_Long_2', 'GOLDM05FEB27FUT', '2027-02-05', '2027-02', 76400.00, 74800.00, 75000.00,
                            76000.00, 'none', 1, true, '2027-01-05')$$,
                  'the book on the new contract at the new fill; stops and highest_close shifted by the basis (+300)');
SELECT results_eq($$SELECT position_id, close_price, close_pnl, open_price, basis, opened_lots, outcome FROM pm.roll_layers
                    WHERE roll_id = 1 ORDER BY position_id$$,
                  $$VALUES ('GOLD_MINI_Long_1'::varchar, 76100.00::numeric(12,2), 22000.00::numeric(15,2),
                            76400.00::numeric(12,2), 300.00::numeric(12,2), 2, 'rolled'::varchar),
                           ('GOLD_MINI_Long_2', 76100.00, 6000.00, 76400.00, 300.00, 1, 'rolled')$$,
                  'each layer''s roll recorded: fills, P&L, the basis shift');
SELECT results_eq($$SELECT from_state, to_state FROM pm.roll_events WHERE roll_id = 1 ORDER BY id$$,
                  $$VALUES ('none'::varchar, 'pending'::varchar), ('pending', 'closing'), ('closing', 'opening'),
                           ('opening', 'rolled')$$, 'one event per transition');
SELECT results_eq($$SELECT kind, data ->> 'to_symbol' FROM pm.notification_events WHERE kind LIKE 'roll%'$$,
                  $$VALUES ('roll_done'::varchar, 'GOLDM05FEB27FUT')$$, 'roll done told through the outbox');
SELECT is((SELECT slippage_points FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_1'), NULL,
          'a roll leg is not booked as an entry or exit');
SELECT is(pm.roll_blocks('GOLD_MINI'), NULL, 'rolled: signals flow again');
SELECT throws_ok($$SELECT pm.roll_fail(1, 'x')$$, 'PM080', 'roll 1 cannot go from rolled to failed', 'rolled is final (failed)');
SELECT throws_ok($$SELECT pm.roll_send_close(1)$$, 'PM080', NULL, 'rolled is final (closing)');
SELECT throws_ok($$SELECT pm.roll_abandon(1, 'x')$$, 'PM080', NULL, 'rolled is final (abandon)');
SELECT throws_ok($$UPDATE pm.roll_events SET reason = 'x'$$, 'PM084', NULL, 'roll events are append-only (update)');
SELECT throws_ok($$DELETE FROM pm.roll_events$$, 'PM084', NULL, 'roll events are append-only (delete)');

-- the paper broker rolls too: fills at the orders' prices, no basis; a second roll counts 2. Paper fills only a
-- layer on paper (pm.layer_on_paper): these layers were rolled at a broker above, so first a paper trade of them
-- (their entries paper-filled, a second later than roll 1's legs: the layer's current trade)
SELECT is((SELECT count(*)::int FROM pm.fill_paper_orders(ARRAY['r1-GOLD_MINI_Long_1-C'])
            WHERE broker_order_id LIKE 'paper-%'), 0, 'a layer traded at a broker is never paper-filled');
INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price, status,
                              broker_order_id, fill_price, created_at)
SELECT 'pm-paper2-' || position_id, repeat('e', 64), position_id, 'GOLD_MINI', 'BUY', lots, entry_price, 'filled',
       'paper-e-' || position_id, entry_price, now() + interval '1 second'
  FROM pm.portfolio_positions WHERE instrument = 'GOLD_MINI';
SELECT pm.roll_begin('GOLD_MINI', jsonb_build_array(pg_temp.layer('GOLD_MINI_Long_1', 2, 2, 'GOLDM05MAR27FUT'),
                                                    pg_temp.layer('GOLD_MINI_Long_2', 1, 1, 'GOLDM05MAR27FUT')));
SELECT pm.roll_send_close(2);
SELECT pm.fill_paper_orders(ARRAY['r2-GOLD_MINI_Long_1-C', 'r2-GOLD_MINI_Long_2-C']);
SELECT is(pg_temp.state(2), 'opening', 'paper closes filled: opening');
SELECT pm.fill_paper_orders(ARRAY['r2-GOLD_MINI_Long_1-O', 'r2-GOLD_MINI_Long_2-O']);
SELECT results_eq($$SELECT entry_price, current_stop, rollover_count, rollover_pnl, original_entry_price
                      FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_1'$$,
                  $$VALUES (76000.00::numeric(12,2), 74500.00::numeric(12,2), 2, 14000.00::numeric(15,2),
                            75000.00::numeric(12,2))$$,
                  'paper roll at the mark: basis 0, rollover_pnl summed over the rolls, the first entry kept');
SELECT is(pg_temp.state(2), 'rolled', 'paper roll done');

-- a lot-size change re-sizes to whole lots of the new size (planned by Python, recorded)
SELECT pg_temp.position('COPPER_Long_1', 'COPPER', 'COPPER31JAN27FUT', 3, true, 800);
INSERT INTO pm.broker_orders (client_order_id, fingerprint, position_id, instrument, side, lots, price, status,
                              broker_order_id, fill_price)
VALUES ('pm-paper-COPPER_Long_1', repeat('f', 64), 'COPPER_Long_1', 'COPPER', 'BUY', 3, 800, 'filled',
        'paper-COPPER_Long_1', 800);  -- entered on paper: its roll is the paper fill's
SELECT pm.roll_begin('COPPER', jsonb_build_array(pg_temp.layer('COPPER_Long_1', 3, 2, 'COPPER28FEB27FUT')
                                                 || '{"new_lot_size": 150, "new_point_value": 15}'));
SELECT pm.roll_send_close(3);
SELECT pm.fill_paper_orders(ARRAY['r3-COPPER_Long_1-C']);
SELECT pm.fill_paper_orders(ARRAY['r3-COPPER_Long_1-O']);
SELECT results_eq($$SELECT lots, quantity, futures_symbol FROM pm.portfolio_positions WHERE position_id = 'COPPER_Long_1'$$,
                  $$VALUES (2, 300, 'COPPER28FEB27FUT'::varchar)$$, 'three lots of 100 become two of 150');
SELECT results_eq($$SELECT lots, new_lots, opened_lots, outcome FROM pm.roll_layers WHERE roll_id = 3$$,
                  $$VALUES (3, 2, 2, 'resized'::varchar)$$, 'the re-size is recorded');

-- the close rejected: nothing moved, failed, retried by a new roll
SELECT pg_temp.position('SILVER_MINI_Long_1', 'SILVER_MINI', 'SILVERM26FEB27FUT', 2, true, 90000);
SELECT pm.roll_begin('SILVER_MINI', jsonb_build_array(pg_temp.layer('SILVER_MINI_Long_1', 2, 2, 'SILVERM30APR27FUT')));
SELECT pm.roll_send_close(4);
SELECT pg_temp.reject('r4-SILVER_MINI_Long_1-C');
SELECT results_eq($$SELECT state, reason LIKE 'close leg ended unfilled: r4-SILVER_MINI_Long_1-C rejected RMS%' FROM pm.rolls
                    WHERE roll_id = 4$$, $$VALUES ('failed'::varchar, true)$$, 'closing → failed with the reason');
SELECT results_eq($$SELECT status, futures_symbol, entry_price, rollover_status, rollover_count FROM pm.portfolio_positions
                    WHERE position_id = 'SILVER_MINI_Long_1'$$,
                  $$VALUES ('open'::varchar, 'SILVERM26FEB27FUT'::varchar, 90000.00::numeric(12,2), 'failed'::varchar, 0)$$,
                  'nothing moved: still on the old contract, marked failed');
SELECT is((SELECT count(*)::int FROM pm.notification_events WHERE kind = 'roll_failed'), 1, 'roll failed told');
SELECT is((SELECT count(*)::int FROM pm.broker_orders WHERE roll_id = 4 AND roll_leg = 'open'), 0, 'nothing opened');
SELECT results_eq($$SELECT state FROM pm.roll_begin('SILVER_MINI',
                      jsonb_build_array(pg_temp.layer('SILVER_MINI_Long_1', 2, 2, 'SILVERM30APR27FUT')))$$,
                  $$VALUES ('pending'::varchar)$$, 'the next check retries with a new roll');
SELECT results_eq($$SELECT state FROM pm.roll_abandon(5, 'the trader closes it by hand')$$, $$VALUES ('failed'::varchar)$$,
                  'pending → failed: abandoned before anything was sent');
SELECT is((SELECT count(*)::int FROM pm.broker_orders WHERE roll_id = 5), 0, 'an abandoned roll sent nothing');

-- the last trading day passed unrolled: failed once, told once
SELECT results_eq($$SELECT state, roll_id FROM pm.roll_expired('SILVER_MINI', 'SILVERM26FEB27FUT', 'expired unrolled')$$,
                  $$VALUES ('failed'::varchar, 6::bigint)$$, 'none → failed at the last trading day');
SELECT results_eq($$SELECT roll_id FROM pm.roll_expired('SILVER_MINI', 'SILVERM26FEB27FUT', 'expired unrolled')$$,
                  $$VALUES (6::bigint)$$, 'recorded once per contract');
SELECT is((SELECT count(*)::int FROM pm.notification_events WHERE kind = 'roll_failed' AND dedup_key LIKE 'expired:%'), 1,
          'the trader is told once, loudly');
SELECT results_eq($$SELECT from_state, to_state FROM pm.roll_events WHERE roll_id = 6$$,
                  $$VALUES ('none'::varchar, 'failed'::varchar)$$, 'its event');

-- the close filled, the open rejected: flat at the broker, closed in the book, failed, an anomaly
SELECT pm.roll_begin('SILVER_MINI', jsonb_build_array(pg_temp.layer('SILVER_MINI_Long_1', 2, 2, 'SILVERM30APR27FUT')));
SELECT pm.roll_send_close(7);
SELECT pg_temp.fill('r7-SILVER_MINI_Long_1-C', 'B7', 91000);
SELECT pg_temp.reject('r7-SILVER_MINI_Long_1-O');
SELECT is(pg_temp.state(7), 'failed', 'opening → failed');
SELECT results_eq($$SELECT status, exit_price, exit_reason, realized_pnl, rollover_pnl, rollover_status
                      FROM pm.portfolio_positions WHERE position_id = 'SILVER_MINI_Long_1'$$,
                  $$VALUES ('closed'::varchar, 91000.00::numeric(12,2), 'ROLL_FAILED'::varchar, 0.00::numeric(15,2),
                            20000.00::numeric(15,2), 'failed'::varchar)$$,
                  'closed in the book at the close fill, its P&L realized once');
SELECT results_eq($$SELECT kind, instrument FROM pm.anomalies$$, $$VALUES ('roll_failed'::varchar, 'SILVER_MINI'::varchar)$$,
                  'an anomaly lists it');
SELECT is((SELECT count(*)::int FROM pm.pyramiding_state WHERE instrument = 'SILVER_MINI'), 0,
          'no layer left: its pyramiding state goes');
SELECT is((SELECT count(*)::int FROM pm.broker_orders WHERE roll_id = 7), 2, 'never re-entered: one close, one open');
SELECT is((SELECT pnl FROM pm.trades() WHERE position_id = 'SILVER_MINI_Long_1'), 20000.00::numeric,
          'the trade''s P&L sums its contracts');

-- a synthetic Bank Nifty layer: two legs to close, two to open; a half-filled open is unwound, never naked
INSERT INTO pm.portfolio_positions (position_id, instrument, entry_timestamp, entry_price, lots, quantity, initial_stop,
                                    current_stop, highest_close, is_base_position, futures_symbol, expiry, strike,
                                    ce_symbol, pe_symbol)
VALUES ('BANK_NIFTY_Long_1', 'BANK_NIFTY', now(), 52000, 2, 60, 51000, 51200, 52200, true, 'BANKNIFTY29DEC26FUT',
        '2026-12-29', 52000, 'BANKNIFTY29DEC2652000CE', 'BANKNIFTY29DEC2652000PE');
CREATE FUNCTION pg_temp.synthetic(id text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('position_id', id, 'exchange', 'NFO',
        'to_symbol', 'BANKNIFTY26JAN27FUT', 'to_expiry', '2027-01-26', 'to_strike', 52500,
        'to_ce_symbol', 'BANKNIFTY26JAN2752500CE', 'to_pe_symbol', 'BANKNIFTY26JAN2752500PE', 'new_lots', 2,
        'lot_size', 30, 'new_lot_size', 30, 'close_quantity', 60, 'open_quantity', 60, 'point_value', 30,
        'new_point_value', 30, 'price', 52400));
$$;
SELECT pm.roll_begin('BANK_NIFTY', pg_temp.synthetic('BANK_NIFTY_Long_1'));
SELECT pm.roll_send_close(8);
SELECT results_eq($$SELECT client_order_id, side, symbol, price FROM pm.broker_orders WHERE roll_id = 8 ORDER BY client_order_id$$,
                  $$VALUES ('r8-BANK_NIFTY_Long_1-C-CE'::varchar, 'SELL'::varchar, 'BANKNIFTY29DEC2652000CE'::varchar,
                            500.00::numeric(12,2)),
                           ('r8-BANK_NIFTY_Long_1-C-PE', 'BUY', 'BANKNIFTY29DEC2652000PE', 100.00)$$,
                  'closing a synthetic: sell the call, buy back the put');
SELECT pg_temp.fill('r8-BANK_NIFTY_Long_1-C-CE', 'B8', 520);
SELECT is(pg_temp.state(8), 'closing', 'half a synthetic closed: still closing');
SELECT pg_temp.fill('r8-BANK_NIFTY_Long_1-C-PE', 'B9', 110);
SELECT results_eq($$SELECT close_price, close_pnl FROM pm.roll_layers WHERE roll_id = 8$$,
                  $$VALUES (52410.00::numeric(12,2), 24600.00::numeric(15,2))$$,
                  'the close at strike + call − put, its P&L × lots × point value');
SELECT results_eq($$SELECT client_order_id, side, symbol FROM pm.broker_orders WHERE roll_id = 8 AND roll_leg = 'open'
                    ORDER BY client_order_id$$,
                  $$VALUES ('r8-BANK_NIFTY_Long_1-O-CE'::varchar, 'BUY'::varchar, 'BANKNIFTY26JAN2752500CE'::varchar),
                           ('r8-BANK_NIFTY_Long_1-O-PE', 'SELL', 'BANKNIFTY26JAN2752500PE')$$,
                  'opening the new strike: buy the call, sell the put');
SELECT pg_temp.fill('r8-BANK_NIFTY_Long_1-O-CE', 'B10', 300);
SELECT pg_temp.reject('r8-BANK_NIFTY_Long_1-O-PE');
SELECT is(pg_temp.state(8), 'failed', 'the put refused: failed');
SELECT results_eq($$SELECT client_order_id, side, symbol, quantity, status FROM pm.broker_orders WHERE roll_leg = 'unwind'$$,
                  $$VALUES ('r8-BANK_NIFTY_Long_1-O-CE-UW'::varchar, 'SELL'::varchar, 'BANKNIFTY26JAN2752500CE'::varchar,
                            60, 'queued'::varchar)$$,
                  'the call that filled is unwound: never a naked option');
SELECT results_eq($$SELECT status, exit_reason, rollover_pnl FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_1'$$,
                  $$VALUES ('closed'::varchar, 'ROLL_FAILED'::varchar, 24600.00::numeric(15,2))$$,
                  'the synthetic is flat and closed in the book');

SELECT pg_temp.fill('r8-BANK_NIFTY_Long_1-O-CE-UW', 'B10u', 300);  -- settled: the next roll may start

-- a synthetic rolled whole: entry at strike + call − put of the new legs, the strike and legs moved
INSERT INTO pm.portfolio_positions (position_id, instrument, entry_timestamp, entry_price, lots, quantity, initial_stop,
                                    current_stop, highest_close, is_base_position, futures_symbol, expiry, strike,
                                    ce_symbol, pe_symbol)
VALUES ('BANK_NIFTY_Long_1b', 'BANK_NIFTY', now(), 52000, 2, 60, 51000, 51200, 52200, true, 'BANKNIFTY29DEC26FUT',
        '2026-12-29', 52000, 'BANKNIFTY29DEC2652000CE', 'BANKNIFTY29DEC2652000PE');
SELECT pm.roll_begin('BANK_NIFTY', pg_temp.synthetic('BANK_NIFTY_Long_1b'));
SELECT pm.roll_send_close(9);
SELECT pg_temp.fill('r9-BANK_NIFTY_Long_1b-C-CE', 'B11', 520);
SELECT pg_temp.fill('r9-BANK_NIFTY_Long_1b-C-PE', 'B12', 110);
SELECT pg_temp.fill('r9-BANK_NIFTY_Long_1b-O-CE', 'B13', 330);
SELECT pg_temp.fill('r9-BANK_NIFTY_Long_1b-O-PE', 'B14', 380);
SELECT results_eq($$SELECT entry_price, strike, ce_symbol, pe_symbol, ce_entry_price, pe_entry_price, current_stop
                      FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_1b'$$,
                  $$VALUES (52450.00::numeric(12,2), 52500, 'BANKNIFTY26JAN2752500CE'::varchar,
                            'BANKNIFTY26JAN2752500PE'::varchar, 330.00::numeric(12,2), 380.00::numeric(12,2),
                            51240.00::numeric(12,2))$$,
                  'a synthetic rolled: the new strike''s legs, entry strike + call − put, stops shifted by 40');
SELECT is((SELECT count(*)::int FROM pm.broker_orders WHERE roll_id = 9), 4, 'four legs, each once');

SELECT * FROM finish();

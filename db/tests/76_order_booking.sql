-- Order booking (migration 011, 76_order_booking.sql): a sent order's end corrects the book — the fill
-- price into entry and exit, partial fills to whole lots, a rejected entry removed, a rejected exit reopened;
-- the paper broker's fills never reach it.
SELECT plan(26);

CREATE FUNCTION pg_temp.position(id text, lots integer DEFAULT 2) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pm.portfolio_positions (position_id, instrument, entry_timestamp, entry_price, lots, quantity,
                                        initial_stop, current_stop, highest_close, is_base_position, futures_symbol)
    VALUES (id, 'GOLD_MINI', now(), 75000, lots, lots * 100, 74000, 74000, 75000, true, 'GOLDM05JAN27FUT');
    INSERT INTO pm.pyramiding_state (instrument, base_position_id) VALUES ('GOLD_MINI', id)
    ON CONFLICT (instrument) DO UPDATE SET base_position_id = EXCLUDED.base_position_id;
    RETURN id;
END;
$$;
CREATE FUNCTION pg_temp.order(id text, pos text, side text, lots integer DEFAULT 2, fp text DEFAULT repeat('f', 64))
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', id, 'fingerprint', fp,
            'position_id', pos, 'instrument', 'GOLD_MINI', 'side', side, 'lots', lots, 'price', 75000,
            'exchange', 'MCX', 'symbol', 'GOLDM05JAN27FUT', 'quantity', lots, 'product', 'NRML', 'leg', 'FUT',
            'point_value', 10)));
    RETURN id;
END;
$$;
CREATE FUNCTION pg_temp.sent(id text, broker_id text) RETURNS void LANGUAGE sql AS $$
    SELECT pm.order_sending(id); SELECT pm.order_accepted(id, broker_id);
$$;

-- the paper broker: untouched
SELECT pg_temp.position('GOLD_MINI_Long_1');
SELECT pg_temp.order('paper-1', 'GOLD_MINI_Long_1', 'BUY');
SELECT pm.fill_paper_orders(ARRAY['paper-1']);
SELECT results_eq($$SELECT entry_price, signal_price, version FROM pm.portfolio_positions$$,
                  $$VALUES (75000.00::numeric(12,2), NULL::numeric(12,2), 1)$$, 'a paper fill changes nothing');

-- an entry filled in two trades: VWAP entry, signal price kept, slippage
SELECT pg_temp.order('e-1', 'GOLD_MINI_Long_1', 'BUY');
SELECT pg_temp.sent('e-1', 'B1');
SELECT pm.record_order_fill('e-1', 'B1', 1, 75010);
SELECT pm.record_order_fill('e-1', 'B1', 2, 75015);
SELECT results_eq($$SELECT entry_price, signal_price, slippage_points, slippage_rupees, lots FROM pm.portfolio_positions$$,
                  $$VALUES (75015.00::numeric(12,2), 75000.00::numeric(12,2), 15.00::numeric(12,2),
                           300.00::numeric(15,2), 2)$$, 'entry at the fills'' price, signal price kept, slippage');
SELECT results_eq($$SELECT slippage_points, slippage_rupees FROM pm.broker_orders WHERE client_order_id = 'e-1'$$,
                  $$VALUES (15.00::numeric(12,2), 300.00::numeric(15,2))$$, 'slippage on the order');
SELECT ok((SELECT version FROM pm.portfolio_state) > 1, 'the portfolio version moved: instances reload');

-- an exit filled: exit price and P&L from the fill
UPDATE pm.portfolio_positions SET status = 'closed', exit_price = 76000, realized_pnl = (76000 - 75015) * 2 * 10;
UPDATE pm.portfolio_state SET closed_equity = closed_equity + (76000 - 75015) * 2 * 10;
SELECT pg_temp.order('x-1', 'GOLD_MINI_Long_1', 'SELL');
SELECT pg_temp.sent('x-1', 'B2');
SELECT pm.record_order_fill('x-1', 'B2', 2, 75990);
SELECT results_eq($$SELECT exit_price, realized_pnl FROM pm.portfolio_positions$$,
                  $$VALUES (75990.00::numeric(12,2), 19500.00::numeric(15,2))$$, 'exit at the fill, P&L from it');
SELECT is((SELECT closed_equity FROM pm.portfolio_state), 5019500.00::numeric(15,2), 'closed equity from the fill');
SELECT is((SELECT slippage_points FROM pm.broker_orders WHERE client_order_id = 'x-1'), -990.00::numeric(12,2),
          'a sell below the signal price is adverse slippage');

-- a rejected exit: the position is open again, closed equity back, an anomaly
DELETE FROM pm.pyramiding_state;
SELECT pg_temp.position('GOLD_MINI_Long_2');
UPDATE pm.portfolio_positions SET status = 'closed', exit_price = 75500, realized_pnl = 10000
 WHERE position_id = 'GOLD_MINI_Long_2';
UPDATE pm.portfolio_state SET closed_equity = closed_equity + 10000;
SELECT pg_temp.order('x-2', 'GOLD_MINI_Long_2', 'SELL');
SELECT pm.order_sending('x-2');
SELECT pm.order_rejected('x-2', 'RMS: margin');
SELECT results_eq($$SELECT status, exit_price, realized_pnl FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_2'$$,
                  $$VALUES ('open'::varchar, NULL::numeric(12,2), 0.00::numeric(15,2))$$, 'a rejected exit reopens');
SELECT is((SELECT closed_equity FROM pm.portfolio_state), 5019500.00::numeric(15,2), '... and takes its P&L back');
SELECT is((SELECT count(*)::int FROM pm.anomalies WHERE kind = 'exit_rejected'), 1, '... with an anomaly');
SELECT is((SELECT base_position_id FROM pm.pyramiding_state WHERE instrument = 'GOLD_MINI'), 'GOLD_MINI_Long_2',
          '... and it is the base again');

-- a partial entry keeps whole filled lots
SELECT pg_temp.position('GOLD_MINI_Long_3', 4);
SELECT pg_temp.order('e-3', 'GOLD_MINI_Long_3', 'BUY', 4);
SELECT pg_temp.sent('e-3', 'B3');
SELECT pm.record_order_fill('e-3', 'B3', 1, 75020);
SELECT pm.order_cancelled('e-3', 'the rest cancelled');
SELECT results_eq($$SELECT lots, quantity, entry_price FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_3'$$,
                  $$VALUES (1, 100, 75020.00::numeric(12,2))$$, 'one of four lots filled: one lot at its price');

-- a rejected entry: gone, with its pyramiding state and a queued exit of it; closed equity unchanged
SELECT pg_temp.position('GOLD_MINI_Long_4');
SELECT pg_temp.order('e-4', 'GOLD_MINI_Long_4', 'BUY');
SELECT pg_temp.order('x-4', 'GOLD_MINI_Long_4', 'SELL', 2, repeat('4', 64));  -- a later signal's exit
-- the layer closed and entered again before e-4's answer: that newer row's exit is not e-4's to cancel
SAVEPOINT reentered;
SELECT pg_temp.order('e-4b', 'GOLD_MINI_Long_4', 'BUY', 2, repeat('5', 64));
SELECT pg_temp.order('x-4b', 'GOLD_MINI_Long_4', 'SELL', 2, repeat('6', 64));
UPDATE pm.broker_orders SET created_at = created_at + interval '1 second' WHERE client_order_id = 'e-4b';
UPDATE pm.broker_orders SET created_at = created_at + interval '2 seconds' WHERE client_order_id = 'x-4b';
SELECT pm.order_sending('e-4');
SELECT pm.order_rejected('e-4', 'RMS: no margin');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'x-4b'), 'queued',
          'the exit of a later entry of the same layer id stays: it is sent once its own entry settles');
ROLLBACK TO SAVEPOINT reentered;
SELECT pm.order_sending('e-4');
SELECT pm.order_rejected('e-4', 'RMS: no margin');
SELECT is((SELECT count(*)::int FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_4'), 0,
          'a rejected entry leaves no position');
SELECT is((SELECT count(*)::int FROM pm.pyramiding_state), 0, '... nor its pyramiding state');
SELECT is((SELECT status FROM pm.broker_orders WHERE client_order_id = 'x-4'), 'expired',
          '... and its queued exit is never sent');
SELECT is((SELECT closed_equity FROM pm.portfolio_state), 5019500.00::numeric(15,2), 'closed equity unchanged');
SELECT is((SELECT count(*)::int FROM pm.anomalies WHERE kind = 'entry_rejected'), 1, 'an anomaly says why');

-- synthetic Bank Nifty: both legs filled → the synthetic price; one leg failed → the other unwound
CREATE FUNCTION pg_temp.synthetic(id text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pm.portfolio_positions (position_id, instrument, entry_timestamp, entry_price, lots, quantity,
                                        initial_stop, current_stop, highest_close, is_base_position, futures_symbol,
                                        strike, expiry, ce_symbol, pe_symbol)
    VALUES (id, 'BANK_NIFTY', now(), 52000, 2, 60, 51000, 51000, 52000, true, 'BANKNIFTY29DEC26FUT', 52000,
            '2026-12-29', 'BANKNIFTY29DEC2652000CE', 'BANKNIFTY29DEC2652000PE');
    PERFORM pm.add_orders(jsonb_build_array(
        jsonb_build_object('client_order_id', id || '-CE', 'fingerprint', md5(id) || md5(id), 'position_id', id,
                           'instrument', 'BANK_NIFTY', 'side', 'BUY', 'lots', 2, 'price', 52000, 'exchange', 'NFO',
                           'symbol', 'BANKNIFTY29DEC2652000CE', 'quantity', 60, 'leg', 'CE', 'point_value', 30),
        jsonb_build_object('client_order_id', id || '-PE', 'fingerprint', md5(id) || md5(id), 'position_id', id,
                           'instrument', 'BANK_NIFTY', 'side', 'SELL', 'lots', 2, 'price', 52000, 'exchange', 'NFO',
                           'symbol', 'BANKNIFTY29DEC2652000PE', 'quantity', 60, 'leg', 'PE', 'point_value', 30)));
    RETURN id;
END;
$$;
SELECT pg_temp.synthetic('BANK_NIFTY_Long_1');
SELECT pg_temp.sent('BANK_NIFTY_Long_1-CE', 'S1');
SELECT pg_temp.sent('BANK_NIFTY_Long_1-PE', 'S2');
SELECT pm.record_order_fill('BANK_NIFTY_Long_1-CE', 'S1', 60, 500);
SELECT ok((SELECT signal_price IS NULL FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_1'),
          'one leg filled: the position waits for the other');
SELECT pm.record_order_fill('BANK_NIFTY_Long_1-PE', 'S2', 60, 450);
SELECT results_eq($$SELECT entry_price, signal_price, ce_entry_price, pe_entry_price, lots FROM pm.portfolio_positions
                     WHERE position_id = 'BANK_NIFTY_Long_1'$$,
                  $$VALUES (52050.00::numeric(12,2), 52000.00::numeric(12,2), 500.00::numeric(12,2),
                           450.00::numeric(12,2), 2)$$, 'both legs filled: entry = strike + call - put');
UPDATE pm.portfolio_positions SET status = 'closed', exit_timestamp = now(), exit_price = 52000
 WHERE position_id = 'BANK_NIFTY_Long_1';
SELECT pg_temp.synthetic('BANK_NIFTY_Long_2');
SELECT pg_temp.sent('BANK_NIFTY_Long_2-CE', 'S3');
SELECT pm.record_order_fill('BANK_NIFTY_Long_2-CE', 'S3', 60, 510);
SELECT pm.order_sending('BANK_NIFTY_Long_2-PE');
SELECT pm.order_rejected('BANK_NIFTY_Long_2-PE', 'RMS: no margin for the short put');
SELECT is((SELECT count(*)::int FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_2'), 0,
          'one leg failed: the position is not opened');
SELECT results_eq($$SELECT side, quantity, symbol, status FROM pm.broker_orders WHERE client_order_id = 'BANK_NIFTY_Long_2-CE-UW'$$,
                  $$VALUES ('SELL'::varchar, 60, 'BANKNIFTY29DEC2652000CE'::varchar, 'queued'::varchar)$$,
                  'the filled call is unwound by a queued sell of what filled');
SELECT pm.order_sending('BANK_NIFTY_Long_2-CE-UW');
SELECT pm.order_accepted('BANK_NIFTY_Long_2-CE-UW', 'S4');
SELECT results_eq($$SELECT status FROM pm.record_order_fill('BANK_NIFTY_Long_2-CE-UW', 'S4', 60, 505)$$,
                  $$VALUES ('filled'::varchar)$$, 'the unwind fills');
SELECT is((SELECT count(*)::int FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_2'), 0,
          '... and books nothing into a position');

-- a layer closed and entered again before its first entry's fill was booked: the fill books into the row it opened
SELECT pg_temp.position('GOLD_MINI_Long_6', 1);
UPDATE pm.portfolio_positions SET entered_at = now() - interval '10 minutes' WHERE position_id = 'GOLD_MINI_Long_6';
SELECT pg_temp.order('re-1', 'GOLD_MINI_Long_6', 'BUY', 1);
UPDATE pm.broker_orders SET created_at = now() - interval '10 minutes' WHERE client_order_id = 're-1';
UPDATE pm.portfolio_positions SET status = 'closed', exit_price = 75100, exited_at = now() - interval '5 minutes',
       position_id = 'GOLD_MINI_Long_6@20270105T000000Z' WHERE position_id = 'GOLD_MINI_Long_6';
SELECT pg_temp.position('GOLD_MINI_Long_6', 1);
SELECT pg_temp.sent('re-1', 'B30');
SELECT pm.record_order_fill('re-1', 'B30', 1, 75020);
SELECT is((SELECT entry_price FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_6'), 75000.00::numeric(12,2),
          'the layer entered again keeps its own entry price');
SELECT is((SELECT entry_price FROM pm.portfolio_positions WHERE position_id = 'GOLD_MINI_Long_6@20270105T000000Z'),
          75020.00::numeric(12,2), 'the late fill books into the closed row it opened');

SELECT * FROM finish();

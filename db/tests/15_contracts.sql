-- pm.check_one_contract: one futures contract per instrument among open positions (PM030); expiry format.
SELECT plan(7);

CREATE FUNCTION pg_temp.pos(pid text, symbol text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('position_id', pid, 'instrument', 'BANK_NIFTY',
        'entry_timestamp', '2026-12-01T10:30:00+05:30', 'entry_price', 52000, 'lots', 4, 'quantity', 120,
        'initial_stop', 51650, 'current_stop', 51650, 'highest_close', 52000, 'is_base_position', pid LIKE '%_1',
        'futures_symbol', symbol, 'expiry', CASE WHEN symbol IS NULL THEN NULL ELSE '2026-12-29' END,
        'contract_month', '2026-12') || extra;
$$;

SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', 'BANKNIFTY29DEC26FUT')), 1, 'a base on the Dec contract');
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_2', 'BANKNIFTY29DEC26FUT')), 1,
          'a pyramid on the same contract');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('BANK_NIFTY_Long_3', 'BANKNIFTY25JAN27FUT',
                                                       '{"expiry": "2027-01-25"}'))$$, 'PM030',
                 'position BANK_NIFTY_Long_3 would hold BANKNIFTY25JAN27FUT while open BANK_NIFTY positions hold '
                 'BANKNIFTY29DEC26FUT: one contract per instrument', 'a second contract on one instrument: PM030');
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_3', NULL)), 1,
          'a layer without a recorded contract (entered before contracts) is not checked');
SELECT is(pm.save_position('{"position_id": "BANK_NIFTY_Long_2", "futures_symbol": "BANKNIFTY25JAN27FUT", '
                           '"expiry": "2027-01-25"}', 1), 2,
          'an update (a roll, layer by layer) may move a row to the next contract');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('GOLD_MINI_Long_1', 'GOLDM05JAN27FUT',
                     '{"instrument": "GOLD_MINI", "expiry": "05JAN27"}'))$$, '23514', NULL,
                 'an expiry that is not an ISO date is refused by portfolio_positions_expiry_check');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('GOLD_MINI_Long_1', 'BANKNIFTY29DEC26FUT',
                     '{"instrument": "GOLD_MINI", "ce_symbol": "BANKNIFTY29DEC2652000CE"}'))$$, '23514', NULL,
                 'an option leg without a strike is refused by portfolio_positions_legs_check');

SELECT * FROM finish();

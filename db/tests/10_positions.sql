-- pm.save_position / pm.get_position / pm.get_open_positions: versioned upsert and reads.
SELECT plan(34);

CREATE FUNCTION pg_temp.pos(pid text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('position_id', pid, 'instrument', 'BANK_NIFTY',
        'entry_timestamp', '2025-11-28T10:30:00+05:30', 'entry_price', 52000, 'lots', 4, 'quantity', 120,
        'initial_stop', 51650, 'current_stop', 51650, 'highest_close', 52000, 'atr', 350,
        'is_base_position', true, 'limiter', 'risk') || extra;
$$;

-- insert
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1')), 1, 'insert returns version 1');
SELECT results_eq($$SELECT status, lots, entry_price, is_base_position, version, rollover_status, realized_pnl
                      FROM pm.get_position('BANK_NIFTY_Long_1')$$,
                  $$VALUES ('open'::varchar, 4, 52000.00::numeric, true, 1, 'none'::varchar, 0.00::numeric)$$,
                  'inserted row has the values given and the table defaults');
SELECT is((SELECT entry_timestamp FROM pm.get_position('BANK_NIFTY_Long_1')),
          '2025-11-28T05:00:00Z'::timestamptz, 'entry timestamp keeps its zone');
SELECT is_empty($$SELECT * FROM pm.get_position('NOPE')$$, 'get_position of an unknown id is empty');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1'))$$, 'PM002',
                 'position BANK_NIFTY_Long_1 is already open', 'inserting an open id again raises PM002');

-- update with the version read
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"current_stop": 51900}'), 1), 2,
          'update from version 1 returns version 2');
SELECT is((SELECT current_stop FROM pm.get_position('BANK_NIFTY_Long_1')), 51900.00, 'update wrote the new stop');
SELECT is(pm.save_position('{"position_id": "BANK_NIFTY_Long_1", "highest_close": 52800}', 2), 3,
          'a partial document updates only the keys it names');
SELECT results_eq($$SELECT highest_close, current_stop, lots FROM pm.get_position('BANK_NIFTY_Long_1')$$,
                  $$VALUES (52800.00::numeric, 51900.00::numeric, 4)$$, 'other columns keep their values');
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"version": 99, "current_stop": 52000}'), 3), 4,
          'a version key in the document is ignored: the database owns it');

-- stale version: nothing changes
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"current_stop": 1}'), 1)$$,
                 'PM001', 'stale version for position BANK_NIFTY_Long_1: expected 1, found 4',
                 'an update from an old version raises PM001');
SELECT results_eq($$SELECT current_stop, version FROM pm.get_position('BANK_NIFTY_Long_1')$$,
                  $$VALUES (52000.00::numeric, 4)$$, 'the stale update changed nothing');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('GHOST_Long_1'), 1)$$, 'PM003',
                 'position GHOST_Long_1 does not exist', 'updating a missing id raises PM003');

-- bad arguments
SELECT throws_ok($$SELECT pm.save_position(NULL)$$, 'PM004', 'position must be a JSON object', 'NULL document');
SELECT throws_ok($$SELECT pm.save_position('[1]')$$, 'PM004', 'position must be a JSON object', 'array document');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X') - 'position_id')$$, 'PM004', 'position_id is required',
                 'missing position_id');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"lotz": 3, "colour": 1}'))$$, 'PM004',
                 'unknown position field(s): colour, lotz', 'unknown keys are named');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"lots": -1}'))$$, '23514', NULL, 'negative lots');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"lots": 0}'))$$, '23514', NULL, 'zero lots while open');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"status": "maybe"}'))$$, '23514', NULL, 'unknown status');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"rollover_status": "soon"}'))$$, '23514', NULL,
                 'unknown rollover status');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X') - 'entry_price')$$, '23502', NULL, 'missing entry_price');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('X', '{"lots": "four"}'))$$, '22P02', NULL, 'lots of wrong type');
SELECT is_empty($$SELECT * FROM pm.get_position('X')$$, 'nothing was written by the refused inserts');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"lots": -2}'), 4)$$, '23514', NULL,
                 'a refused update raises');
SELECT is((SELECT version FROM pm.get_position('BANK_NIFTY_Long_1')), 4, 'and leaves the version alone');

-- close, then a closed row is final, and a new base takes the id while history is kept
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', $${"status": "closed", "exit_price": 53500,
          "exit_reason": "SIGNAL", "exit_timestamp": "2025-11-29T10:00:00+05:30", "realized_pnl": 180000}$$), 4), 5,
          'closing is a versioned update');
SELECT throws_ok($$SELECT pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"current_stop": 1}'), 5)$$, 'PM005',
                 NULL, 'a closed position cannot be updated');
SELECT is_empty($$SELECT * FROM pm.get_open_positions()$$, 'no open positions after the close');
SELECT is(pm.save_position(pg_temp.pos('BANK_NIFTY_Long_1', '{"entry_timestamp": "2025-12-01T09:15:00Z"}')), 1,
          'a new base reuses the id of a closed one');
SELECT results_eq($$SELECT position_id, status, realized_pnl FROM pm.portfolio_positions
                     WHERE position_id LIKE 'BANK_NIFTY_Long_1%' ORDER BY entry_timestamp$$,
                  $$VALUES ('BANK_NIFTY_Long_1@20251128T050000Z'::varchar, 'closed'::varchar, 180000.00::numeric),
                           ('BANK_NIFTY_Long_1'::varchar, 'open'::varchar, 0.00::numeric)$$,
                  'the closed row is kept under <id>@<entry time UTC>');

-- get_open_positions
SELECT is(pm.save_position(pg_temp.pos('GOLD_MINI_Long_1', '{"instrument": "GOLD_MINI", "entry_timestamp": "2025-12-02T09:15:00Z"}')),
          1, 'second instrument inserted');
SELECT results_eq($$SELECT position_id FROM pm.get_open_positions()$$,
                  $$VALUES ('BANK_NIFTY_Long_1'::varchar), ('GOLD_MINI_Long_1'::varchar)$$,
                  'get_open_positions lists open rows, oldest first');
SELECT is((SELECT count(*)::int FROM pm.get_open_positions() WHERE status <> 'open'), 0,
          'get_open_positions returns only open rows');

SELECT * FROM finish();

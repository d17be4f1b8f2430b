-- Schema: the five tables (and the order outbox), their keys, money types, defaults, checks and indexes, and every function.
SELECT plan(87);

SELECT has_schema('pm');
SELECT has_table('pm', t, 'table pm.' || t || ' exists')
  FROM unnest(ARRAY['portfolio_positions', 'portfolio_state', 'pyramiding_state', 'signal_log',
                    'instance_metadata', 'schema_migrations', 'broker_orders']) AS t;
SELECT col_is_pk('pm', 'portfolio_positions', 'position_id', 'position_id is the positions key');
SELECT col_is_pk('pm', 'portfolio_state', 'id', 'id is the portfolio state key');
SELECT col_is_pk('pm', 'pyramiding_state', 'instrument', 'instrument is the pyramiding key');
SELECT col_is_pk('pm', 'signal_log', 'id', 'id is the signal log key');
SELECT col_is_pk('pm', 'instance_metadata', 'instance_id', 'instance_id is the instance key');
SELECT col_is_pk('pm', 'broker_orders', 'client_order_id', 'client_order_id is the broker order key');

-- money and prices are numeric, time is timestamptz
SELECT col_type_is('pm', 'portfolio_positions', c, 'numeric(12,2)', c || ' is numeric(12,2)')
  FROM unnest(ARRAY['entry_price', 'initial_stop', 'current_stop', 'highest_close', 'atr', 'exit_price']) AS c;
SELECT col_type_is('pm', 'portfolio_positions', c, 'numeric(15,2)', c || ' is numeric(15,2)')
  FROM unnest(ARRAY['unrealized_pnl', 'realized_pnl', 'rollover_pnl']) AS c;
SELECT col_type_is('pm', 'portfolio_state', c, 'numeric(15,2)', 'portfolio_state.' || c || ' is numeric(15,2)')
  FROM unnest(ARRAY['initial_capital', 'closed_equity', 'equity_high', 'margin_used']) AS c;
SELECT col_type_is('pm', 'portfolio_positions', c, 'timestamp with time zone', c || ' is timestamptz')
  FROM unnest(ARRAY['entry_timestamp', 'exit_timestamp', 'rollover_timestamp', 'created_at']) AS c;
SELECT col_type_is('pm', 'signal_log', 'signal_timestamp', 'timestamp with time zone', 'signal_timestamp is timestamptz');
SELECT col_type_is('pm', 'signal_log', 'payload', 'jsonb', 'payload is jsonb');

-- defaults
SELECT col_default_is('pm', 'portfolio_positions', 'status', 'open', 'status defaults to open');
SELECT col_default_is('pm', 'portfolio_positions', 'rollover_status', 'none', 'rollover_status defaults to none');
SELECT col_default_is('pm', 'portfolio_positions', 'is_base_position', 'false', 'is_base_position defaults to false');
SELECT col_default_is('pm', 'portfolio_positions', 'version', '1', 'version defaults to 1');
SELECT col_is_null('pm', 'pyramiding_state', 'base_position_id', 'base_position_id is nullable');

-- the initial portfolio row
SELECT results_eq('SELECT id, initial_capital, closed_equity, version FROM pm.portfolio_state',
                  $$VALUES (1, 5000000.00::numeric, 5000000.00::numeric, 1)$$,
                  'one portfolio_state row with 5,000,000 capital');

-- indexes: 5 on positions (plus the key), 3 on signal_log, heartbeat on instances
SELECT has_index('pm', 'portfolio_positions', i, 'index ' || i)
  FROM unnest(ARRAY['portfolio_positions_instrument_status_idx', 'portfolio_positions_status_idx',
                    'portfolio_positions_created_at_idx', 'portfolio_positions_instrument_entry_idx',
                    'portfolio_positions_rollover_idx']) AS i;
SELECT has_index('pm', 'signal_log', i, 'index ' || i)
  FROM unnest(ARRAY['signal_log_fingerprint_key', 'signal_log_processed_at_idx', 'signal_log_instrument_ts_idx']) AS i;
SELECT has_index('pm', 'instance_metadata', 'instance_metadata_heartbeat_idx', 'index on last_heartbeat');
SELECT has_index('pm', 'broker_orders', i, 'index ' || i)
  FROM unnest(ARRAY['broker_orders_fingerprint_idx', 'broker_orders_queued_idx']) AS i;
SELECT is((SELECT count(*)::int FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
            WHERE x.indrelid = 'pm.signal_log'::regclass AND a.attname = 'fingerprint'),
          1, 'fingerprint has exactly one index (pitfall 7)');
SELECT col_is_unique('pm', 'signal_log', 'fingerprint', 'fingerprint is unique');

-- foreign key with ON DELETE SET NULL
SELECT fk_ok('pm', 'pyramiding_state', 'base_position_id', 'pm', 'portfolio_positions', 'position_id');
SELECT is((SELECT confdeltype::text FROM pg_constraint
            WHERE conrelid = 'pm.pyramiding_state'::regclass AND contype = 'f'),
          'n', 'base_position_id is ON DELETE SET NULL');

-- checks
SELECT throws_ok($$INSERT INTO pm.portfolio_state (id, initial_capital, closed_equity) VALUES (2, 1, 1)$$,
                 '23514', NULL, 'a second portfolio_state row is refused');
SELECT has_check('pm', 'portfolio_positions', 'positions have CHECK constraints');

-- every function
SELECT has_function('pm', f, 'function pm.' || f)
  FROM unnest(ARRAY['raise_error', 'require', 'position_template', 'position_columns', 'check_position_fields', 'save_position',
                    'get_position', 'get_open_positions', 'get_portfolio_state', 'save_portfolio_state',
                    'save_pyramiding_state', 'get_pyramiding_state', 'clear_pyramiding_state', 'log_signal',
                    'is_duplicate_signal', 'cleanup_signal_log', 'register_instance', 'heartbeat_instance',
                    'get_stale_instances', 'sweep_stale_instances', 'apply_signal', 'apply_state',
                    'load_state', 'claim_leadership', 'add_orders', 'fill_paper_orders', 'queued_orders',
                    'orders_for_signal', 'grant_app_role', 'lock_for_decision', 'check_one_contract']) AS f;

SELECT * FROM finish();

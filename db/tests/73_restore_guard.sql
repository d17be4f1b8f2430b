-- The restore guard (migration 020, 73_restore_guard.sql): the cluster recorded at deploy, a database found in
-- another cluster holds the orders queued until then, the trader's release, and the anomaly it leaves.
SELECT plan(13);

CREATE FUNCTION pg_temp.order(id text, side text DEFAULT 'SELL') RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.add_orders(jsonb_build_array(jsonb_build_object('client_order_id', id, 'fingerprint', repeat('f', 64),
            'position_id', 'GOLD_MINI_Long_1', 'instrument', 'GOLD_MINI', 'side', side, 'lots', 2, 'price', 75000,
            'exchange', 'MCX', 'symbol', 'GOLDM05JAN27FUT', 'quantity', 2, 'product', 'NRML', 'leg', 'FUT')));
    RETURN id;
END;
$$;

-- (the tests' databases are copies of a template that records none: the first check records this one)
SELECT is(pm.check_database_identity(), '{"state": "recorded", "held_orders": 0}'::jsonb, 'the first look records it');
SELECT is((SELECT system_identifier FROM pm.database_identity),
          (SELECT c.system_identifier::text || ':' || d.oid FROM pg_control_system() c, pg_database d
            WHERE d.datname = current_database()), 'as its cluster and its own OID');
SELECT is(pm.check_database_identity(), '{"state": "same", "held_orders": 0}'::jsonb, 'the same database: nothing held');
SELECT pg_temp.order('x-1');
SELECT is((SELECT count(*)::int FROM pm.sendable_orders(10)), 1, 'a queued exit is sendable');

-- a dump restored into another cluster, or another database of this one, finds another identifier
UPDATE pm.database_identity SET system_identifier = '42';
SELECT is(pm.check_database_identity(), '{"state": "restored", "held_orders": 1}'::jsonb,
          'another cluster: restored, the queued exit held');
SELECT is((SELECT count(*)::int FROM pm.sendable_orders(10)), 0, 'a held order is not sendable');
SELECT is((SELECT count(*)::int FROM pm.anomalies WHERE kind = 'database_restored' AND reason LIKE '%1 queued order(s) held%'),
          1, 'one database_restored anomaly says what is held and how to release it');
SELECT is(pm.check_database_identity(), '{"state": "same", "held_orders": 1}'::jsonb,
          'looked at again: the new cluster is recorded, the orders still held, no second anomaly');
SELECT is((SELECT count(*)::int FROM pm.anomalies WHERE kind = 'database_restored'), 1, 'still one anomaly');
SELECT pg_temp.order('x-2');
UPDATE pm.broker_orders SET created_at = now() + interval '1 second' WHERE client_order_id = 'x-2';
SELECT is(ARRAY(SELECT client_order_id::text FROM pm.sendable_orders(10)), ARRAY['x-2'],
          'an order queued after the restore was found is not held');

-- the release: a checked principal, then every held order sendable again
SELECT throws_ok($$SELECT pm.release_restored_orders('someone')$$, 'PM095', NULL, 'the release names who in a checked form');
SELECT is(pm.release_restored_orders('cli:trader@desk'), 1, 'the release frees the one held order');
SELECT is(ARRAY(SELECT client_order_id::text FROM pm.sendable_orders(10) ORDER BY 1), ARRAY['x-1', 'x-2'],
          'both orders sendable after the release');

SELECT * FROM finish();

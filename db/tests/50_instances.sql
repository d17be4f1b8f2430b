-- pm.register_instance / heartbeat_instance / get_stale_instances / sweep_stale_instances / claim_leadership.
SELECT plan(17);

SELECT lives_ok($$SELECT pm.register_instance('inst-1', 'host-a', 8080, '0.1.0')$$, 'register');
SELECT results_eq($$SELECT status, hostname, port, is_leader FROM pm.instance_metadata WHERE instance_id = 'inst-1'$$,
                  $$VALUES ('active'::varchar, 'host-a'::varchar, 8080, false)$$, 'registered as active');
SELECT lives_ok($$SELECT pm.register_instance('inst-1', 'host-b', 8081, '0.1.0')$$, 're-register after a restart');
SELECT is((SELECT count(*)::int FROM pm.instance_metadata), 1, 're-registering does not add a row');
SELECT throws_ok($$SELECT pm.heartbeat_instance('ghost')$$, 'PM003', 'instance ghost is not registered',
                 'heartbeat of an unknown instance');
SELECT throws_ok($$SELECT pm.register_instance(NULL)$$, 'PM004', 'instance_id is required', 'NULL id');

SELECT pm.register_instance('inst-2');
UPDATE pm.instance_metadata SET last_heartbeat = now() - interval '5 minutes' WHERE instance_id IN ('inst-1', 'inst-2');
SELECT lives_ok($$SELECT pm.heartbeat_instance('inst-1', now())$$, 'heartbeat');
SELECT results_eq($$SELECT instance_id FROM pm.get_stale_instances()$$, $$VALUES ('inst-2'::varchar)$$,
                  'only the silent instance is stale');
SELECT throws_ok($$SELECT * FROM pm.get_stale_instances(interval '0')$$, 'PM004', NULL, 'zero timeout refused');
SELECT is(pm.sweep_stale_instances(), 1, 'sweep marks one instance');
SELECT results_eq($$SELECT instance_id, status FROM pm.instance_metadata ORDER BY instance_id$$,
                  $$VALUES ('inst-1'::varchar, 'active'::varchar), ('inst-2'::varchar, 'crashed'::varchar)$$,
                  'the stale one is crashed, the live one active');

SELECT lives_ok($$SELECT pm.claim_leadership('inst-1')$$, 'claim leadership');
SELECT lives_ok($$SELECT pm.claim_leadership('inst-2')$$, 'another instance takes over');
SELECT results_eq($$SELECT instance_id, is_leader, leader_acquired_at IS NOT NULL FROM pm.instance_metadata
                    ORDER BY instance_id$$,
                  $$VALUES ('inst-1'::varchar, false, false), ('inst-2'::varchar, true, true)$$,
                  'exactly one leader, the newest claimant');
SELECT throws_ok($$SELECT pm.claim_leadership('ghost')$$, 'PM003', 'instance ghost is not registered',
                 'an unknown instance cannot lead');

UPDATE pm.instance_metadata SET last_heartbeat = now() - interval '45 seconds' WHERE instance_id = 'inst-1';
UPDATE pm.instance_metadata SET last_heartbeat = now() - interval '2 seconds', status = 'active'
 WHERE instance_id = 'inst-2';
SELECT results_eq($$SELECT instance_id::text, stale, heartbeat_age_s FROM pm.list_instances() ORDER BY 1$$,
                  $$VALUES ('inst-1', true, 45.0), ('inst-2', false, 2.0)$$,
                  'list_instances: heartbeat age, and silent ones are stale');
SELECT is((SELECT is_leader FROM pm.list_instances() WHERE instance_id = 'inst-2'), true, 'list_instances: the leader');

SELECT * FROM finish();

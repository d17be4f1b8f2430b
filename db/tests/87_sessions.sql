-- Sessions (functions 87_sessions.sql): server-side login records that a logout revokes everywhere.
SELECT plan(9);

SELECT lives_ok($$SELECT pm.create_session(repeat('a', 64), now() + interval '12 hours', '127.0.0.1')$$,
                'create_session records a login');
SELECT ok(pm.session_active(repeat('a', 64)), 'it is active');
SELECT ok(NOT pm.session_active(repeat('b', 64)), 'an unknown digest is not');
SELECT ok(pm.revoke_session(repeat('a', 64)), 'revoke_session ends an active session');
SELECT ok(NOT pm.session_active(repeat('a', 64)), 'a revoked session is no longer active');
SELECT ok(NOT pm.revoke_session(repeat('a', 64)), 'revoking it again changes nothing');
INSERT INTO pm.sessions (digest, created_at, expires_at) VALUES (repeat('c', 64), now() - interval '2 days',
                                                                 now() - interval '1 day 1 hour');
SELECT ok(NOT pm.session_active(repeat('c', 64)), 'an expired session is not active');
SELECT throws_ok($$SELECT pm.create_session('not-hex', now() + interval '1 hour', 'x')$$, 'PM004', NULL,
                 'a malformed digest is refused');
SELECT throws_ok($$SELECT pm.create_session(repeat('d', 64), now() + interval '40 days', 'x')$$, 'PM004', NULL,
                 'an expiry past 31 days is refused');

SELECT * FROM finish();

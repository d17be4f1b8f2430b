-- pm.raise_error and pm.require: the named-error helpers.
SELECT plan(5);

SELECT throws_ok($$SELECT pm.raise_error('PM001', 'boom')$$, 'PM001', 'boom', 'raise_error raises the given SQLSTATE');
SELECT throws_ok($$SELECT pm.raise_error('XX000', 'boom')$$, 'PM004', NULL, 'raise_error refuses a non-PM code');
SELECT throws_ok($$SELECT pm.raise_error(NULL, 'boom')$$, 'PM004', NULL, 'raise_error refuses a NULL code');
SELECT throws_ok($$SELECT pm.require(NULL::text, 'lots')$$, 'PM004', 'lots is required', 'require names the field');
SELECT lives_ok($$SELECT pm.require(1, 'lots')$$, 'require passes a value');

SELECT * FROM finish();

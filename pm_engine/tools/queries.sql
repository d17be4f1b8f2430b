-- Named queries only the tools send (bench, chaos, failover): their scratch databases, the checks a run ends
-- with. Loaded by pm_engine/tools/queries.py with the store's own loader (pm_engine/store/queries.py), beside
-- the product's queries.sql; a name may be defined in only one of the two. Same format: "-- name --", a
-- one-line description, the statement with %(name)s / %s parameters.

-- bench_create_database --
-- Create a scratch database for one benchmark part (the name is composed as an identifier).
CREATE DATABASE {};

-- bench_drop_database --
-- Drop a benchmark scratch database.
DROP DATABASE IF EXISTS {};

-- bench_floor_setup --
-- In a bench scratch database only: a one-row table and the smallest version-checked PL/pgSQL update.
CREATE TABLE public.bench_floor (id integer PRIMARY KEY, version integer NOT NULL);
INSERT INTO public.bench_floor VALUES (1, 1);
CREATE FUNCTION public.bench_floor_update(expected integer) RETURNS integer LANGUAGE plpgsql AS $f$
DECLARE v integer;
BEGIN
    UPDATE public.bench_floor SET version = version + 1 WHERE id = 1 AND version = expected RETURNING version INTO v;
    IF v IS NULL THEN RAISE EXCEPTION 'stale' USING ERRCODE = 'PM001'; END IF;
    RETURN v;
END;
$f$;

-- bench_floor_update --
-- The durable-commit floor: one version-checked single-row update in autocommit.
SELECT public.bench_floor_update(%s);

-- bench_logged_fingerprints --
-- Every logged fingerprint with its outcome (the benchmark's and the chaos run's final check).
SELECT fingerprint, processing_status FROM pm.signal_log;

-- bench_orders_per_layer --
-- How many (fingerprint, position, leg, side) have more than one broker order (must be 0; a synthetic decision's
-- two legs are one order each, and an entry that stops a layer out and reopens it sells it once and buys it once).
SELECT count(*) FROM (SELECT 1 FROM pm.broker_orders GROUP BY fingerprint, position_id, coalesce(leg, ''), side
                       HAVING count(*) > 1) x;

-- chaos_equity_check --
-- Initial capital, closed equity, realized P&L of closed rows, instruments with two open bases, queued orders.
SELECT s.initial_capital, s.closed_equity,
       (SELECT coalesce(sum(realized_pnl), 0) FROM pm.portfolio_positions WHERE status = 'closed'),
       (SELECT count(*) FROM (SELECT instrument FROM pm.portfolio_positions WHERE status = 'open' AND is_base_position
                               GROUP BY instrument HAVING count(*) > 1) twice),
       (SELECT count(*) FROM pm.broker_orders WHERE status = 'queued')
  FROM pm.portfolio_state s;

-- chaos_orders --
-- Every broker order (compared with the reference model's paper broker), with the contract it names.
SELECT client_order_id, side, lots, price, exchange, symbol, quantity, leg FROM pm.broker_orders;

-- chaos_broker_links --
-- Every broker order id an order of ours is linked to (the chaos run against the simulator).
SELECT broker_order_id, client_order_id, status FROM pm.broker_orders WHERE broker_order_id IS NOT NULL;

-- chaos_orders_sending --
-- How many orders are between their committed 'sending' and the broker's answer.
SELECT count(*) FROM pm.broker_orders WHERE status = 'sending';

-- chaos_unclear_orders --
-- Orders whose fate is not known yet (unknown, needs_review), with what the trader needs to look them up.
SELECT client_order_id, status, symbol, side, quantity, product, exchange, price FROM pm.broker_orders
 WHERE status IN ('unknown', 'needs_review') ORDER BY created_at;

-- chaos_unfilled_orders --
-- Orders that did not end filled (against a simulator with no rejection, every order must fill).
SELECT client_order_id, status FROM pm.broker_orders WHERE status <> 'filled';

-- db_checksums --
-- An md5 of every table's rows but instance_metadata (heartbeats move it), request_log and request_log_days
-- (refusals are audited and counted) and schema_migrations, to prove nothing was written.
SELECT * FROM pm.table_checksums(ARRAY['instance_metadata', 'request_log', 'request_log_days', 'schema_migrations']);

-- history_check --
-- Committed signals without a portfolio history row, and rows whose last history version differs from the row.
SELECT
  (SELECT count(*) FROM pm.signal_log s
    WHERE s.processing_status IN ('executed', 'blocked')
      AND NOT EXISTS (SELECT 1 FROM pm.portfolio_history h WHERE h.fingerprint = s.fingerprint)) AS signals_without_history,
  (SELECT count(*) FROM pm.portfolio_positions p
    WHERE to_jsonb(p) IS DISTINCT FROM (SELECT h.row_data FROM pm.position_history h WHERE h.position_id = p.position_id
                                         ORDER BY h.history_id DESC LIMIT 1)) AS positions_differing,
  (SELECT count(*) FROM pm.portfolio_state s
    WHERE to_jsonb(s) IS DISTINCT FROM (SELECT h.row_data FROM pm.portfolio_history h
                                         ORDER BY h.history_id DESC LIMIT 1)) AS portfolio_differing,
  (SELECT count(*) FROM (SELECT DISTINCT ON (instrument) instrument, row_data FROM pm.pyramiding_history
                          ORDER BY instrument, history_id DESC) h
    FULL JOIN pm.pyramiding_state y ON y.instrument = h.instrument
    WHERE to_jsonb(y) IS DISTINCT FROM h.row_data) AS pyramiding_differing;

-- request_log_count --
-- How many refused requests are recorded (the chaos fuzz compares it with what was refused).
SELECT count(*) FROM pm.request_log;

-- request_log_containing --
-- How many audited refusals contain a text (the chaos run checks that no secret is stored).
SELECT count(*) FROM pm.request_log WHERE strpos(body_excerpt, %s) > 0 OR strpos(coalesce(user_agent, ''), %s) > 0;

-- job_lock_holders --
-- Sessions holding a session-level advisory lock here (the background-job leader's; after a failover, on the new primary).
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted;

-- pending_order_count --
-- Orders committed and not yet sent.
SELECT count(*) FROM pm.broker_orders WHERE status = 'queued';

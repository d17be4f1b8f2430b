-- Named queries sent by pm-engine's Python side (loaded by pm_engine/store/queries.py; the tools' own: pm_engine/tools/queries.sql).
-- Each: "-- name --", a one-line description, the statement with %(name)s / %s parameters.

-- deploy_lock --
-- Serialize concurrent deploys for the length of the deploy transaction.
SELECT pg_advisory_xact_lock(hashtext('pm-engine:db-deploy'));

-- deploy_bootstrap --
-- Create the pm schema and the table recording applied migrations and function files.
CREATE SCHEMA IF NOT EXISTS pm;
CREATE TABLE IF NOT EXISTS pm.schema_migrations (
    kind       text        NOT NULL CHECK (kind IN ('migration', 'functions')),
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- deploy_applied --
-- Every recorded migration and function file with its checksum.
SELECT kind, name, checksum FROM pm.schema_migrations;

-- deploy_record --
-- Record (or re-record) a deployed file's checksum.
INSERT INTO pm.schema_migrations (kind, name, checksum) VALUES (%s, %s, %s)
ON CONFLICT (kind, name) DO UPDATE SET checksum = excluded.checksum, applied_at = now();

-- schema_version --
-- The newest applied migration.
SELECT name FROM pm.schema_migrations WHERE kind = 'migration' ORDER BY name DESC LIMIT 1;

-- save_position --
-- Versioned upsert of one position document (expected version NULL inserts).
SELECT pm.save_position(%s::jsonb, %s);

-- get_position --
-- One position row by id.
SELECT * FROM pm.get_position(%s);

-- get_open_positions --
-- Every open position.
SELECT * FROM pm.get_open_positions();

-- get_portfolio_state --
-- The single portfolio_state row.
SELECT * FROM pm.get_portfolio_state();

-- save_portfolio_state --
-- Versioned update of the portfolio_state row.
SELECT pm.save_portfolio_state(%s::jsonb, %s);

-- save_pyramiding_state --
-- Upsert an instrument's pyramiding state.
SELECT pm.save_pyramiding_state(%s, %s, %s);

-- get_pyramiding_state --
-- Every instrument's pyramiding state.
SELECT * FROM pm.get_pyramiding_state();

-- clear_pyramiding_state --
-- Remove an instrument's pyramiding state.
SELECT pm.clear_pyramiding_state(%s);

-- is_duplicate_signal --
-- Whether a fingerprint was already logged.
SELECT pm.is_duplicate_signal(%s);

-- log_signal --
-- Claim a fingerprint with its outcome; true when it was new.
SELECT pm.log_signal(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s);

-- apply_signal --
-- Claim a fingerprint and write all of the signal's effects atomically (one round trip).
SELECT pm.apply_signal(%s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb, %s);

-- lock_for_decision --
-- Open a transaction and lock the portfolio for a decision (the retry after a stale one); state if it moved.
BEGIN; SELECT pm.lock_for_decision(%s, %s, %s::jsonb);

-- apply_signal_and_commit --
-- Apply the decision made under lock_for_decision and commit, in one round trip.
SELECT pm.apply_signal(%s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb, %s); COMMIT;

-- begin_apply_signal --
-- Open a transaction and apply a decision in it (COMMIT follows; a stale answer keeps the row lock).
BEGIN; SELECT pm.apply_signal(%s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb, %s);

-- commit --
-- Commit the transaction opened by begin_apply_signal.
COMMIT;

-- rollback --
-- End a transaction opened by lock_for_decision without writing anything.
ROLLBACK;

-- apply_state --
-- Write positions, pyramiding and portfolio state outside a signal (stop updates), version-checked.
SELECT pm.apply_state(%s::jsonb, %s::jsonb, %s::jsonb, %s);

-- load_state --
-- Portfolio row, open positions and pyramiding state in one round trip.
SELECT pm.load_state();

-- state_if_moved --
-- The portfolio version, with the whole state when it differs from the caller's.
SELECT pm.state_if_moved(%s);

-- cleanup_signal_log --
-- Delete signal_log rows older than the retention; returns how many.
SELECT pm.cleanup_signal_log(%s::interval);

-- register_instance --
-- Register this engine instance as active.
SELECT pm.register_instance(%s, %s, %s, %s);

-- stop_instance --
-- A clean shutdown: this instance is stopped (not crashed) and leads nothing.
SELECT pm.stop_instance(%s);

-- heartbeat_instance --
-- Record this instance's heartbeat and the time of its last processed signal (NULL keeps it).
SELECT pm.heartbeat_instance(%s, %s);

-- sweep_stale_instances --
-- Mark instances without a recent heartbeat as crashed.
SELECT pm.sweep_stale_instances(%s::interval);

-- fill_paper_orders --
-- The paper broker: fill outbox orders by client order id (idempotent), returning the filled rows.
SELECT * FROM pm.fill_paper_orders(%s::text[]);

-- queued_orders --
-- Outbox orders committed but never sent (queued), at least the given age.
SELECT * FROM pm.queued_orders(%s::interval);

-- orders_for_signal --
-- Every broker order a fingerprint produced.
SELECT * FROM pm.orders_for_signal(%s);

-- claim_leadership --
-- Record this instance as the background-job leader.
SELECT pm.claim_leadership(%s);

-- try_job_lock --
-- Take the session-level advisory lock that makes one instance the background-job runner.
SELECT pg_try_advisory_lock(hashtext('pm-engine:background-jobs'));

-- ping --
-- The round trip used for readiness and latency.
SELECT 1;

-- signal_outcomes --
-- Count of signal_log rows per processing status.
SELECT processing_status, count(*) FROM pm.signal_log GROUP BY processing_status ORDER BY 1;

-- state_as_of --
-- The book as committed at or before a time, in the shape of load_state.
SELECT pm.state_as_of(%s);

-- equity_curve --
-- Equity points (commit time, closed, open, blended, fingerprint, version) in a time range.
SELECT * FROM pm.equity_curve(%s, %s);

-- trades --
-- Closed positions exiting in a time range, with P&L, initial risk and R multiple.
SELECT * FROM pm.trades(%s, %s);

-- pnl_by_period --
-- Realized P&L, trades and closing equity per IST day, week or month.
SELECT * FROM pm.pnl_by_period(%s, %s, %s);

-- trade_stats --
-- Trade statistics (win rate, profit factor, expectancy, drawdowns, per instrument) as jsonb.
SELECT pm.trade_stats(%s, %s);

-- get_trading_mode --
-- The trading mode row: mode, reason, changed_by, changed_at, version.
SELECT pm.get_trading_mode();

-- set_trading_mode --
-- Change the trading mode (recorded with who and why).
SELECT pm.set_trading_mode(%s, %s, %s);

-- trading_mode_history --
-- The latest changes of mode, newest first.
SELECT * FROM pm.trading_mode_history(%s);

-- get_breakers --
-- The breakers' settings.
SELECT pm.get_breakers();

-- set_breakers --
-- Change some breaker settings (JSON null switches one off).
SELECT pm.set_breakers(%s::jsonb, %s);

-- lock_instrument --
-- Block new bases and pyramids on an instrument until a time.
SELECT pm.lock_instrument(%s, %s, %s, %s);

-- unlock_instrument --
-- Release an instrument's active locks.
SELECT pm.unlock_instrument(%s, %s);

-- active_locks --
-- Locks in force now.
SELECT * FROM pm.active_locks();

-- log_refusals --
-- Append a batch of refused requests.
SELECT pm.log_refusals(%s::jsonb);

-- refusals --
-- Refused requests since a time (default: the last 24 hours), newest first.
SELECT * FROM pm.refusals(%s, %s);

-- cleanup_request_log --
-- Delete refused-request rows older than the retention.
SELECT pm.cleanup_request_log(%s);

-- audit_usage --
-- The refusal audit's use of its daily budget (rows and bytes written, rows counted instead) per day.
SELECT * FROM pm.audit_usage(%s);

-- create_session --
-- Record a dashboard login (the MAC of its cookie, its expiry, the address).
SELECT pm.create_session(%s, %s, %s);

-- session_active --
-- Whether a session exists, is unexpired and was not revoked.
SELECT pm.session_active(%s);

-- revoke_session --
-- End a session (logout), for every instance.
SELECT pm.revoke_session(%s);

-- equity_curve_sampled --
-- The equity curve in a time range cut to about two points per chart bucket (lows and highs kept).
SELECT * FROM pm.equity_curve_sampled(%s, %s, %s);

-- anomalies --
-- Anomalies since a time (default: the last 24 hours), newest first.
SELECT * FROM pm.anomalies_since(%s);

-- anomalies_latest --
-- The latest N anomalies since a time (default: the last 24 hours), newest first (the dashboard's bounded read).
SELECT * FROM pm.anomalies_since(%s) ORDER BY detected_at DESC, id DESC LIMIT %s;

-- anomaly_counts --
-- Anomalies by kind since a time (NULL: ever).
SELECT pm.anomaly_counts(%s);

-- recent_signals --
-- The latest signals with outcome and reason, newest first, processed at or after a time (NULL: any).
SELECT * FROM pm.recent_signals(%s, %s);

-- list_instances --
-- Every instance with its heartbeat age and whether it is stale or crashed.
SELECT * FROM pm.list_instances();

-- metrics_snapshot --
-- Portfolio-wide figures for the metrics endpoint: mode, anomalies, pending orders, last signal.
SELECT pm.metrics_snapshot();

-- replica_lag --
-- Seconds this node's replay is behind its primary (0 on a primary; NULL on a standby that has replayed nothing).
SELECT CASE WHEN pg_is_in_recovery()
            THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric(12,3) ELSE 0 END AS lag_s,
       pg_is_in_recovery() AS standby;

-- record_capital_flow --
-- Record a deposit or withdrawal and move closed equity and equity_high by it (capital, migration 009).
SELECT pm.record_capital_flow(%s, %s, %s, %s);

-- capital_ledger --
-- The latest capital flows, newest first (NULL: all).
SELECT * FROM pm.capital_ledger(%s);

-- capital_ledger_page --
-- One page of the flows, newest first: the newest (limit + offset), the first offset skipped.
SELECT * FROM pm.capital_ledger(%s) ORDER BY id DESC OFFSET %s;

-- capital_totals --
-- Deposits, withdrawals and net flows recorded in a time range.
SELECT pm.capital_totals(%s, %s);

-- cluster_require_scram --
-- make run's private cluster: passwords it stores from now on are scram-sha-256 hashes.
SET password_encryption = 'scram-sha-256';

-- cluster_set_password --
-- make run's private cluster: the postgres role's password (sent once, stored hashed).
ALTER ROLE postgres PASSWORD %s;

-- cluster_reload_config --
-- make run's private cluster: read pg_hba.conf again.
SELECT pg_reload_conf();

-- create_embedded_database --
-- make run's private cluster: its one database (a fixed name).
CREATE DATABASE pm_engine;

-- notify_take --
-- The leader's claim of the notifications due now, per URL key (pm.notify_take, issue 24).
SELECT * FROM pm.notify_take(%s::jsonb, %s::text[], %s, %s::interval, %s, %s, %s::interval);

-- notify_done --
-- Record the results of the leader's sends (sent, or pending again after a backoff).
SELECT pm.notify_done(%s::jsonb, %s, %s::interval, %s::interval);

-- record_notification --
-- Record one event from Python (the daily report), at most once per (kind, dedup key).
SELECT pm.record_notification(%s, %s::jsonb, %s);

-- notification_log --
-- Events since a time, newest first, with their deliveries per URL (by scheme and key prefix).
SELECT * FROM pm.notification_log(%s, %s);

-- notification_counts --
-- Deliveries by state, for /metrics.
SELECT pm.notification_counts();

-- cleanup_notifications --
-- Delete events (and their deliveries) older than the retention.
SELECT pm.cleanup_notifications(%s::interval);

-- server_node --
-- Which node this connection reaches and when it started (a failover or restart changes them).
SELECT coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port') AS address,
       pg_postmaster_start_time()::text AS started, pg_is_in_recovery() AS standby;

-- signal_outcomes_between --
-- Count of signal_log rows per processing status for signals whose bar time lies in a range.
SELECT processing_status, count(*) FROM pm.signal_log WHERE signal_timestamp BETWEEN %s AND %s
 GROUP BY processing_status ORDER BY 1;

-- order_sending --
-- queued → sending, committed before the broker request leaves (PM042: another order of the symbol is unresolved).
SELECT * FROM pm.order_sending(%s);

-- order_accepted --
-- sending → open with the broker's order id.
SELECT * FROM pm.order_accepted(%s, %s);

-- order_rejected --
-- → rejected with the broker's reason.
SELECT * FROM pm.order_rejected(%s, %s);

-- review_order --
-- The trader's answer to a needs_review order: at the broker as an order id (→ open, link checked | forced), or not.
SELECT * FROM pm.review_order(%s, %s, %s, %s, %s, %s);

-- orders_seen_at_broker --
-- The order ids the broker's order book shows: review-linked orders it never showed go back to needs_review.
SELECT pm.orders_seen_at_broker(%s::text[], %s::interval);

-- order_unknown --
-- sending → unknown: the request may have reached the broker; never sent again.
SELECT * FROM pm.order_unknown(%s, %s);

-- order_cancelled --
-- open | partially_filled → cancelled (what filled stays).
SELECT * FROM pm.order_cancelled(%s, %s);

-- order_send_later --
-- sending → queued: certainly not placed; the next attempt waits the given interval.
SELECT * FROM pm.order_send_later(%s, %s, %s::interval);

-- record_order_fill --
-- The broker's cumulative fill of an order (idempotent).
SELECT * FROM pm.record_order_fill(%s, %s, %s, %s::numeric, %s);

-- sendable_orders --
-- Queued orders naming a contract whose backoff has passed, oldest first.
SELECT * FROM pm.sendable_orders(%s);

-- expire_stale_entries --
-- Queued entries older than max_order_age become expired ("market closed" for the exchanges named closed).
SELECT * FROM pm.expire_stale_entries(%s::interval, %s::text[]);

-- check_database_identity --
-- Is this database in the cluster it was recorded in? A restore into another holds the orders queued until then.
SELECT pm.check_database_identity();

-- release_restored_orders --
-- The trader's release of the orders held since a restore was found; how many are sendable again.
SELECT pm.release_restored_orders(%s);

-- abandon_sending --
-- Attempts started longer ago than the interval become unknown (their sender died).
SELECT pm.abandon_sending(%s::interval);

-- orders_at_broker --
-- Open, partially filled and unknown orders: what the sender follows in the broker's books.
SELECT * FROM pm.orders_at_broker();

-- resolve_unknown_order --
-- An unknown order matched against the broker's order book: linked, needs_review or waiting.
SELECT pm.resolve_unknown_order(%s, %s::jsonb, %s::interval);

-- list_orders --
-- Orders newest first (optionally one state, since a time) with fills, signal price and slippage.
SELECT * FROM pm.list_orders(%s, %s, %s);

-- book_net_positions --
-- The book's net quantity per contract in the order unit (MCX lots when the flag is set).
SELECT * FROM pm.book_net_positions(%s);

-- traded_symbols --
-- Every contract symbol this portfolio has sent an order for.
SELECT * FROM pm.traded_symbols();

-- symbols_in_flight --
-- Contract symbols with an order not yet settled (reconciliation leaves their difference for later).
SELECT * FROM pm.symbols_in_flight();

-- sending_signal_price --
-- The signal's price of the order of a symbol and side now sending (the simulator beside the engine fills at it).
SELECT pm.sending_signal_price(%s, %s);

-- record_reconcile_differences --
-- Lock each differing contract's instrument (once) with a reconcile_difference anomaly; how many were locked.
SELECT pm.record_reconcile_differences(%s::jsonb);

-- record_broker_session --
-- The broker's state as a sender saw it; a change is one broker_session notification (its id, else NULL).
SELECT pm.record_broker_session(%s, %s, %s);

-- roll_begin --
-- none → pending: a group's roll and its plan recorded (PM081 already rolling, PM082 the plan is not the group).
SELECT * FROM pm.roll_begin(%s, %s::jsonb, %s, %s);

-- roll_send_close --
-- pending → closing: the old contract's close orders queued.
SELECT * FROM pm.roll_send_close(%s);

-- roll_abandon --
-- pending → failed: a roll given up before anything was sent.
SELECT * FROM pm.roll_abandon(%s, %s);

-- roll_expired --
-- none → failed once per contract: its last trading day passed unrolled.
SELECT * FROM pm.roll_expired(%s, %s, %s);

-- active_rolls --
-- Rolls in flight (pending, closing, opening), oldest first.
SELECT * FROM pm.active_rolls();

-- list_rolls --
-- Rolls newest first (optionally one instrument's) with layers, legs and events.
SELECT * FROM pm.list_rolls(%s, %s);

-- paper_roll_legs --
-- Queued legs of rolls in flight whose group trades on paper (a group at a broker is never paper-filled).
SELECT * FROM pm.paper_roll_legs();

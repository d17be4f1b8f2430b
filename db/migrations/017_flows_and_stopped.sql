-- 017_flows_and_stopped
-- Each capital flow names its own equity point: capital_flows.history_id, the portfolio_history row its
-- pm.record_capital_flow wrote (issue 28). The portfolio version is not that key: a booking that moves
-- closed equity without bumping the version (an exit's P&L given back by `orders review --not-at-broker`)
-- writes a second history row of the same version, and a join on the version counted the flow twice.
-- Existing flows are matched to the first history row of their version with their closed equity (the
-- flow's own row: written in its transaction, before any later writer of that version).

-- no foreign key: portfolio_history refuses TRUNCATE with its own PM007 (a key would answer first with 0A000);
-- pm.record_capital_flow takes the id from the row its own UPDATE's trigger wrote, in the same transaction
ALTER TABLE pm.capital_flows ADD COLUMN history_id bigint;

-- the ledger is append-only (trigger capital_flows_append_only, when deployed): this one backfill is not a change
ALTER TABLE pm.capital_flows DISABLE TRIGGER USER;
UPDATE pm.capital_flows f
   SET history_id = (SELECT min(h.history_id) FROM pm.portfolio_history h
                      WHERE h.version = f.portfolio_version);
UPDATE pm.capital_flows f
   SET history_id = m.history_id
  FROM (SELECT g.id, (SELECT min(h.history_id) FROM pm.portfolio_history h
                       WHERE h.version = g.portfolio_version AND h.closed_equity = g.closed_equity) AS history_id
          FROM pm.capital_flows g) m
 WHERE m.id = f.id AND m.history_id IS NOT NULL;
ALTER TABLE pm.capital_flows ENABLE TRIGGER USER;

ALTER TABLE pm.capital_flows ALTER COLUMN history_id SET NOT NULL;
ALTER TABLE pm.capital_flows ADD CONSTRAINT capital_flows_history_id_key UNIQUE (history_id);

-- An instance that shut down cleanly says so (issue 28): status 'stopped' (pm.stop_instance), never swept to
-- 'crashed', which now means only an instance that went silent without stopping.
ALTER TABLE pm.instance_metadata DROP CONSTRAINT instance_metadata_status_check;
ALTER TABLE pm.instance_metadata ADD CONSTRAINT instance_metadata_status_check
    CHECK (status IN ('active', 'standby', 'crashed', 'stopped'));

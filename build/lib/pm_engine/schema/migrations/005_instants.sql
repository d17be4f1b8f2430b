-- 005_instants
-- When a position entered and left the book, as the database's commit instant (db/functions/05_instants.sql):
-- the trade times of pm.trades, comparable with pm.signal_log.processed_at, the history and the equity curve.
-- entry_timestamp / exit_timestamp stay the times of the alerts that opened and closed the position.
ALTER TABLE pm.portfolio_positions ADD COLUMN entered_at timestamptz;
ALTER TABLE pm.portfolio_positions ADD COLUMN exited_at timestamptz;

-- rows written before this migration: their history knows when they were written; the alert times
-- are the best guess left when it does not (a seeded row); no history row for this backfill
ALTER TABLE pm.portfolio_positions DISABLE TRIGGER USER;
UPDATE pm.portfolio_positions p
   SET entered_at = coalesce((SELECT min(h.recorded_at) FROM pm.position_history h
                               WHERE h.position_id = split_part(p.position_id, '@', 1)
                                 AND h.operation = 'insert'
                                 AND (h.row_data ->> 'entry_timestamp')::timestamptz = p.entry_timestamp),
                             p.entry_timestamp),
       exited_at = CASE WHEN p.status = 'closed' THEN
                   coalesce((SELECT min(h.recorded_at) FROM pm.position_history h
                              WHERE h.position_id = split_part(p.position_id, '@', 1) AND h.status = 'closed'
                                AND (h.row_data ->> 'entry_timestamp')::timestamptz = p.entry_timestamp),
                            p.exit_timestamp) END;
ALTER TABLE pm.portfolio_positions ENABLE TRIGGER USER;

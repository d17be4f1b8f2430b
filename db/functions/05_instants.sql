-- The instant: the one time every row a writer commits is stamped with (ARCHITECTURE.md, "One instant
-- per commit"). A writer takes it right after the portfolio row lock, so instants are ordered as
-- commits are; nested writers and the history triggers of the same client statement share it.

-- pm.instant
-- This statement's instant: clock_timestamp() at its first call in the current client statement,
-- the same value at every later call in that statement (kept in the transaction-local setting
-- pm.instant, keyed by statement_timestamp(), so the next statement of a transaction takes its own).
-- No SET clause: one costs a configuration save and restore per call.
CREATE OR REPLACE FUNCTION pm.instant()
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held      text := current_setting('pm.instant', true);
    statement text := statement_timestamp()::text;
    taken     timestamptz;
BEGIN
    IF held IS NOT NULL AND split_part(held, '|', 1) = statement THEN
        RETURN split_part(held, '|', 2)::timestamptz;
    END IF;
    taken := clock_timestamp();
    PERFORM set_config('pm.instant', statement || '|' || taken::text, true);
    RETURN taken;
END;
$$;

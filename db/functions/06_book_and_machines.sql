-- The book's lock and version, the order's end, and the one state-machine pattern (migration 019): the
-- helpers every writer of the book and every state machine uses instead of writing them out by hand.
-- None is SECURITY DEFINER; each schema-qualifies what it reads, so none sets a search_path.

-- pm.lock_book
-- The portfolio row, locked for this transaction: one writer of the book at a time, always taken first.
CREATE OR REPLACE FUNCTION pm.lock_book()
RETURNS pm.portfolio_state LANGUAGE sql AS $$
    SELECT * FROM pm.portfolio_state WHERE id = 1 FOR UPDATE;
$$;

-- pm.bump_book
-- A new version of the book (the portfolio row), stamped at the writer's instant; p_raise_high also
-- raises equity_high to closed equity (after a write that moved closed equity).
CREATE OR REPLACE FUNCTION pm.bump_book(p_raise_high boolean DEFAULT false)
RETURNS void LANGUAGE sql AS $$
    UPDATE pm.portfolio_state
       SET version = version + 1, updated_at = pm.instant(),
           equity_high = CASE WHEN p_raise_high THEN greatest(equity_high, closed_equity) ELSE equity_high END
     WHERE id = 1;
$$;

-- pm.order_ended
-- Whether an order in this state has ended (filled, cancelled, rejected, expired): nothing of it moves again.
CREATE OR REPLACE FUNCTION pm.order_ended(p_status text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_status IN ('filled', 'cancelled', 'rejected', 'expired');
$$;

-- pm.order_unsettled
-- Whether an order in this state may still change what the broker holds (every state but the ended ones:
-- queued, sending, open, partially filled, unknown, needs_review): an exit waits for its entry while it is,
-- and a roll waits for its group.
CREATE OR REPLACE FUNCTION pm.order_unsettled(p_status text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT NOT pm.order_ended(p_status);
$$;

-- pm.check_transition
-- Raises the machine's SQLSTATE (pm.state_machines: PM041 order, PM080 roll, PM070 notification) unless
-- (from, to) is a row of pm.transitions for it; p_what names the thing moving in the message.
CREATE OR REPLACE FUNCTION pm.check_transition(p_machine text, p_from text, p_to text, p_what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pm.transitions
                    WHERE machine = p_machine AND from_state = p_from AND to_state = p_to) THEN
        PERFORM pm.raise_error((SELECT sqlstate FROM pm.state_machines WHERE machine = p_machine),
                               format('%s cannot go from %s to %s', p_what, p_from, p_to));
    END IF;
END;
$$;

-- pm.refuse_change
-- Trigger (FOR EACH STATEMENT, its one argument the SQLSTATE): the table is append-only; an UPDATE,
-- DELETE or TRUNCATE raises that code (PM007 history and ledger, PM047 order records, PM084 roll events).
CREATE OR REPLACE FUNCTION pm.refuse_change()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pm.raise_error(TG_ARGV[0], format('%s is append-only: %s refused', TG_TABLE_NAME, TG_OP));
    RETURN NULL;
END;
$$;

-- Contract functions: the one-contract-per-instrument rule on pm.portfolio_positions (docs/domain.md#contracts-and-expiry).
-- Error codes are listed in db/README.md ("Error contract").

-- pm.check_one_contract
-- Trigger function: refuses (PM030) a new open position whose futures contract differs from the one
-- another open position of the same instrument holds: a pyramid trades its base's contract. Inserts
-- only: a roll moves an existing row to the next contract (an update), layer by layer.
CREATE OR REPLACE FUNCTION pm.check_one_contract()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text;
BEGIN
    IF NEW.status = 'open' AND NEW.futures_symbol IS NOT NULL THEN
        SELECT futures_symbol INTO held
          FROM pm.portfolio_positions
         WHERE instrument = NEW.instrument AND status = 'open' AND futures_symbol IS NOT NULL
           AND futures_symbol <> NEW.futures_symbol AND position_id <> NEW.position_id
         LIMIT 1;
        IF held IS NOT NULL THEN
            PERFORM pm.raise_error('PM030',
                format('position %s would hold %s while open %s positions hold %s: one contract per instrument',
                       NEW.position_id, NEW.futures_symbol, NEW.instrument, held));
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER portfolio_positions_one_contract
    BEFORE INSERT ON pm.portfolio_positions
    FOR EACH ROW EXECUTE FUNCTION pm.check_one_contract();

-- 007_contracts
-- Tradable contracts (DOMAIN.md sections 14-15). Positions already have the contract columns
-- (migration 001: futures_symbol, expiry, contract_month, strike, ce_symbol, pe_symbol); from now on
-- the engine fills them at entry, so expiry gets its format checked here, and an option leg its strike. The order outbox gains
-- what a broker needs: the exchange, the contract's symbol, the quantity in the exchange's unit,
-- the product (NRML: carried forward) and the leg (FUT, or CE / PE for the two orders of a
-- synthetic Bank Nifty decision). Additive only: existing rows keep NULLs (and product 'NRML').

ALTER TABLE pm.broker_orders
    ADD COLUMN exchange varchar(10),
    ADD COLUMN symbol   varchar(50),
    ADD COLUMN quantity integer,
    ADD COLUMN product  varchar(10) NOT NULL DEFAULT 'NRML',
    ADD COLUMN leg      varchar(3),
    ADD CONSTRAINT broker_orders_quantity_check CHECK (quantity IS NULL OR quantity > 0),
    ADD CONSTRAINT broker_orders_product_check CHECK (product IN ('NRML', 'MIS', 'CNC')),
    ADD CONSTRAINT broker_orders_leg_check CHECK (leg IS NULL OR leg IN ('FUT', 'CE', 'PE')),
    ADD CONSTRAINT broker_orders_contract_check
        CHECK ((exchange IS NULL) = (symbol IS NULL) AND (symbol IS NULL) = (quantity IS NULL)
               AND (symbol IS NULL) = (leg IS NULL));

ALTER TABLE pm.portfolio_positions
    ADD CONSTRAINT portfolio_positions_expiry_check
        CHECK (expiry IS NULL OR expiry ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    ADD CONSTRAINT portfolio_positions_legs_check
        CHECK ((ce_symbol IS NULL AND pe_symbol IS NULL) OR strike IS NOT NULL);

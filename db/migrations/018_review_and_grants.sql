-- 018_review_and_grants
-- Issue 29. (3) A trader's review that links a needs_review order to a broker order is checked against
-- the broker's order book by the CLI; the order remembers how it was linked (review_link: 'checked', or
-- 'forced' with --force and a reason) and when the sender last saw its broker id in the broker's books
-- (seen_at_broker). A checked link the books never show within review_after_s goes back to
-- needs_review (open → needs_review, a new row of the transitions whitelist); a forced one does not:
-- reconciliation judges its contract instead (pm.symbols_in_flight leaves it out).
-- (5) Functions are no longer executable by PUBLIC: pm.grant_app_role grants the engine's role the
-- functions it calls, by name, and nothing else (db/README.md lists them).

ALTER TABLE pm.broker_orders
    ADD COLUMN review_link    varchar(8),
    ADD COLUMN seen_at_broker timestamptz,
    ADD CONSTRAINT broker_orders_review_link_check CHECK (review_link IN ('checked', 'forced'));

INSERT INTO pm.order_transitions (from_state, to_state, meaning) VALUES
    ('open', 'needs_review', 'linked by a review to a broker order id the broker''s books never showed');

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pm FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA pm REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Order sending: what the broker sender asks of the database (migration 011). The sender takes queued
-- orders, commits each one's `sending` before its request leaves, and records every outcome through
-- the transitions of 72_order_states.sql; these functions choose the orders and resolve the unclear ones.

-- pm.order_opens
-- Whether an order opens (or adds to) its long position: FUT and CE legs buy, the PE leg sells.
CREATE OR REPLACE FUNCTION pm.order_opens(r pm.broker_orders)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN r.leg = 'PE' THEN r.side = 'SELL' ELSE r.side = 'BUY' END;
$$;

-- pm.layer_on_paper
-- Whether a layer id's current trade is on paper: its latest entry order (an opening order of no roll) was filled
-- by the paper broker, and no order of the layer id since then is linked to a broker's id. The one rule for every
-- paper fill of a closing order or a roll leg (pm.fill_paper_orders, pm.paper_roll_legs): whoever asks, whatever its
-- own broker setting, a layer traded at a broker (or whose entry has not been filled yet) is left to its sender.
CREATE OR REPLACE FUNCTION pm.layer_on_paper(p_position_id text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    WITH entry AS (
        SELECT e.created_at, e.broker_order_id FROM pm.broker_orders e
         WHERE e.position_id = p_position_id AND e.roll_id IS NULL AND pm.order_opens(e)
         ORDER BY e.created_at DESC, e.client_order_id DESC
         LIMIT 1)
    SELECT coalesce((SELECT entry.broker_order_id LIKE 'paper-%'
                            AND NOT EXISTS (SELECT 1 FROM pm.broker_orders o
                                             WHERE o.position_id = p_position_id AND o.created_at >= entry.created_at
                                               AND o.broker_order_id IS NOT NULL
                                               AND o.broker_order_id NOT LIKE 'paper-%')
                       FROM entry), false);
$$;

-- pm.sendable_orders
-- Queued orders that name a contract and whose backoff has passed, oldest first (at most p_limit). An order
-- that closes a position waits while an earlier opening order of it is not settled (queued, sending, open,
-- partially filled, unknown, needs_review): an exit sent before its entry is known to be at the broker could
-- sell what was never bought. Orders queued before a restore was found wait for the trader's release.
CREATE OR REPLACE FUNCTION pm.sendable_orders(p_limit integer DEFAULT 50)
RETURNS SETOF pm.broker_orders LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.* FROM pm.broker_orders o
     WHERE o.status = 'queued' AND o.symbol IS NOT NULL AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= now())
       AND (pm.order_opens(o) OR NOT EXISTS (
               SELECT 1 FROM pm.broker_orders e
                WHERE e.position_id = o.position_id AND e.created_at < o.created_at AND pm.order_opens(e)
                  AND pm.order_unsettled(e.status)))
       AND NOT EXISTS (SELECT 1 FROM pm.database_identity d  -- held since a restore (73_restore_guard.sql)
                        WHERE d.held_since IS NOT NULL AND o.created_at <= d.held_since)
     ORDER BY o.created_at, o.client_order_id
     LIMIT coalesce(p_limit, 50);
$$;

-- pm.order_send_later
-- sending → queued (pm.order_not_sent): certainly not placed; the next attempt waits p_delay.
CREATE OR REPLACE FUNCTION pm.order_send_later(p_id text, p_reason text, p_delay interval)
RETURNS pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
BEGIN
    PERFORM pm.require(p_delay, 'delay');
    r := pm.order_not_sent(p_id, p_reason);
    UPDATE pm.broker_orders SET next_attempt_at = now() + greatest(p_delay, interval '0')
     WHERE client_order_id = p_id
    RETURNING * INTO r;
    RETURN r;
END;
$$;

-- pm.expire_stale_entries
-- queued → expired for every opening order older than p_max_age (not sent late); an exit is never expired, nor
-- a roll's leg (its roll would fail on a leg that certainly never left). The reason says why it was not sent:
-- "market closed" when its exchange is one of p_closed (the sender's market hours say it is closed now), else
-- "the market moved" (its market was open: sending was held up). Returns the expired orders.
CREATE OR REPLACE FUNCTION pm.expire_stale_entries(p_max_age interval, p_closed text[] DEFAULT '{}')
RETURNS SETOF pm.broker_orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
BEGIN
    PERFORM pm.require(p_max_age, 'max_order_age');
    FOR r IN SELECT * FROM pm.broker_orders
              WHERE status = 'queued' AND symbol IS NOT NULL AND roll_id IS NULL AND created_at < now() - p_max_age
              ORDER BY created_at, client_order_id
    LOOP
        IF pm.order_opens(r) THEN
            RETURN NEXT pm.order_expired(r.client_order_id,
                CASE WHEN upper(r.exchange) = ANY (coalesce(p_closed, '{}'))
                     THEN format('market closed: %s did not open within max_order_age (%s)', r.exchange, p_max_age)
                     ELSE format('not sent within max_order_age (%s): the market moved', p_max_age) END);
        END IF;
    END LOOP;
END;
$$;

-- pm.abandon_sending
-- sending → unknown for every attempt started more than p_after ago: its sender died (or hangs) and the
-- request may have left, so it is resolved from the broker's books, never sent again. Returns how many.
CREATE OR REPLACE FUNCTION pm.abandon_sending(p_after interval)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders;
    n integer := 0;
BEGIN
    PERFORM pm.require(p_after, 'after');
    FOR r IN SELECT * FROM pm.broker_orders WHERE status = 'sending' AND attempt_started_at < now() - p_after
              ORDER BY attempt_started_at FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM pm.order_unknown(r.client_order_id, 'the sender stopped while the request may have been on its way');
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;

-- pm.orders_at_broker
-- Orders whose broker order the sender follows: open, partially filled, unknown.
CREATE OR REPLACE FUNCTION pm.orders_at_broker()
RETURNS SETOF pm.broker_orders LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM pm.broker_orders WHERE status IN ('open', 'partially_filled', 'unknown')
     ORDER BY created_at, client_order_id;
$$;

-- pm.broker_time
-- A broker's order-book time (IST wall time 'YYYY-MM-DD HH:MI:SS', no zone) as a timestamptz; NULL when
-- the broker writes another format (then it is not used for matching).
CREATE OR REPLACE FUNCTION pm.broker_time(p_text text)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_text ~ '^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$'
                THEN (replace(p_text, 'T', ' ')::timestamp AT TIME ZONE 'Asia/Kolkata') END;
$$;

-- pm.resolve_unknown_order
-- An unknown order against the broker's order book (rows of OpenAlgo's orderbook: orderid, symbol, action,
-- quantity, product, order_status, timestamp): the broker orders of the same symbol, side, quantity and
-- product, linked to no order of ours, placed since the attempt began (a minute of clock slack; a time the
-- broker writes in another format does not exclude a row). Exactly one → linked (unknown → open); more than
-- one, or none after p_review_after → needs_review, the instrument locked and an anomaly recorded; none
-- yet → stays unknown. Returns 'linked', 'needs_review' or 'waiting'.
CREATE OR REPLACE FUNCTION pm.resolve_unknown_order(p_id text, p_orderbook jsonb, p_review_after interval)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r pm.broker_orders := pm.lock_order(p_id);
    candidates text[];
    why text;
BEGIN
    PERFORM pm.require(p_review_after, 'review_after');
    IF r.status <> 'unknown' THEN
        RETURN r.status;
    END IF;
    SELECT coalesce(array_agg(DISTINCT o ->> 'orderid'), '{}') INTO candidates
      FROM jsonb_array_elements(coalesce(p_orderbook, '[]')) o
     WHERE upper(o ->> 'symbol') = upper(r.symbol) AND upper(o ->> 'action') = r.side
       AND (o ->> 'quantity')::numeric = r.quantity AND upper(coalesce(o ->> 'product', r.product)) = r.product
       AND coalesce(o ->> 'orderid', '') <> ''
       AND coalesce(pm.broker_time(o ->> 'timestamp') >= r.attempt_started_at - interval '1 minute', true)
       AND NOT EXISTS (SELECT 1 FROM pm.broker_orders b WHERE b.broker_order_id = o ->> 'orderid');
    IF cardinality(candidates) = 1 THEN
        PERFORM pm.order_linked(p_id, candidates[1], 'matched in the broker''s order book');
        RETURN 'linked';
    END IF;
    IF cardinality(candidates) = 0 AND r.attempt_started_at > now() - p_review_after THEN
        RETURN 'waiting';
    END IF;
    why := CASE WHEN cardinality(candidates) = 0
                THEN format('nothing at the broker within %s of the attempt', p_review_after)
                ELSE format('%s broker orders match (%s)', cardinality(candidates), array_to_string(candidates, ', '))
           END;
    PERFORM pm.order_needs_review(p_id, why);
    PERFORM pm.lock_instrument(r.instrument, 'infinity', format('order %s needs review: %s', p_id, why), 'orders');
    PERFORM pm.book_anomaly(r, 'order_needs_review',
                            format('order %s (%s %s x%s) needs review: %s', p_id, r.side, r.symbol, r.quantity, why));
    RETURN 'needs_review';
END;
$$;

-- pm.list_orders
-- Orders newest first, optionally of one state and created at or after p_since, with what filled: the
-- filled quantity, the fills' volume-weighted price (rounded to 0.01, half away from zero), the signal's
-- price and the slippage per unit against it (adverse positive: paid more on a buy, got less on a sell).
CREATE OR REPLACE FUNCTION pm.list_orders(p_state text DEFAULT NULL, p_since timestamptz DEFAULT NULL,
                                          p_limit integer DEFAULT 500)
RETURNS TABLE (client_order_id text, fingerprint text, position_id text, instrument text, exchange text,
               symbol text, leg text, side text, quantity integer, state text, broker_order_id text,
               filled_quantity integer, average_price numeric, signal_price numeric, slippage numeric,
               reason text, attempts integer, created_at timestamptz, attempt_started_at timestamptz,
               state_changed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT o.client_order_id, o.fingerprint, o.position_id, o.instrument, o.exchange, o.symbol, o.leg, o.side,
           o.quantity, o.status, o.broker_order_id, coalesce(f.quantity, 0)::integer, round(f.vwap, 2), o.price,
           CASE WHEN f.vwap IS NOT NULL
                THEN round(CASE WHEN o.side = 'BUY' THEN f.vwap - o.price ELSE o.price - f.vwap END, 2) END,
           o.reason, o.attempts, o.created_at, o.attempt_started_at, o.state_changed_at
      FROM pm.broker_orders o
      LEFT JOIN (SELECT x.client_order_id, sum(x.quantity) AS quantity, sum(x.quantity * x.price) / sum(x.quantity) AS vwap
                   FROM pm.order_fills x GROUP BY x.client_order_id) f ON f.client_order_id = o.client_order_id
     WHERE (p_state IS NULL OR o.status = p_state) AND (p_since IS NULL OR o.created_at >= p_since)
     ORDER BY o.created_at DESC, o.client_order_id
     LIMIT coalesce(p_limit, 500);
$$;

-- pm.book_net_positions
-- The book's net quantity per contract, in the unit orders are sent in (MCX in lots when p_mcx_in_lots,
-- else units): open futures positions by their symbol; a synthetic position as +quantity of its call and
-- -quantity of its put. Exchange and product from the position's orders (a position without a sent
-- contract is not listed). For reconciliation with the broker's positionbook.
CREATE OR REPLACE FUNCTION pm.book_net_positions(p_mcx_in_lots boolean DEFAULT true)
RETURNS TABLE (symbol text, exchange text, product text, quantity bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH legs AS (
        SELECT s.symbol, o.exchange, o.product,
               s.sign * CASE WHEN o.exchange = 'MCX' AND p_mcx_in_lots THEN p.lots ELSE p.quantity END AS quantity
          FROM pm.portfolio_positions p
          CROSS JOIN LATERAL (VALUES (p.futures_symbol, 1), (p.ce_symbol, 1), (p.pe_symbol, -1)) s(symbol, sign)
          JOIN LATERAL (SELECT b.exchange, b.product FROM pm.broker_orders b
                         WHERE b.position_id = p.position_id AND b.symbol = s.symbol
                         ORDER BY b.created_at LIMIT 1) o ON true
         WHERE p.status = 'open' AND s.symbol IS NOT NULL
           AND (p.ce_symbol IS NULL OR s.symbol <> p.futures_symbol))
    SELECT symbol, exchange, product, sum(quantity)::bigint FROM legs GROUP BY 1, 2, 3 ORDER BY 1;
$$;

-- pm.traded_symbols
-- Every contract symbol this portfolio has sent an order for (reconciliation compares only these).
CREATE OR REPLACE FUNCTION pm.traded_symbols()
RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT symbol::text FROM pm.broker_orders WHERE symbol IS NOT NULL ORDER BY 1;
$$;

-- pm.record_reconcile_differences
-- A reconciliation's differences ([{symbol, exchange, product, book_quantity, broker_quantity}]): each one's
-- instrument (from our orders of that symbol) is locked for new entries until the trader unlocks it, with a
-- 'reconcile_difference' anomaly — once: an instrument already locked by reconciliation is left as it is, and
-- one whose group is rolling is not judged while its legs are on their way (79_roll_machine.sql).
-- The newly locked differences are one reconciliation_difference notification, in this transaction: a
-- difference is told once per episode (until the trader unlocks the instrument), not at every check.
-- Nothing is ever placed to fix a difference. Returns how many instruments were newly locked.
CREATE OR REPLACE FUNCTION pm.record_reconcile_differences(p_differences jsonb)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d jsonb;
    what text;
    n integer := 0;
    o pm.broker_orders;
    told jsonb := '[]';
BEGIN
    PERFORM pm.require(p_differences, 'differences');
    FOR d IN SELECT * FROM jsonb_array_elements(p_differences) LOOP
        SELECT * INTO o FROM pm.broker_orders WHERE symbol = d ->> 'symbol' ORDER BY created_at DESC LIMIT 1;
        CONTINUE WHEN o.client_order_id IS NULL
                   OR EXISTS (SELECT 1 FROM pm.active_locks() l WHERE l.instrument = o.instrument AND l.source = 'reconcile')
                   OR pm.roll_blocks(o.instrument) IS NOT NULL;  -- a roll in flight: its legs are on their way
        what := format('book holds %s of %s:%s, the broker %s', d ->> 'book_quantity', d ->> 'exchange',
                       d ->> 'symbol', d ->> 'broker_quantity');
        PERFORM pm.lock_instrument(o.instrument, 'infinity', 'reconciliation: ' || what, 'reconcile');
        INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position, reason)
        VALUES ('reconcile_difference', o.fingerprint, o.instrument, 'RECONCILE', right(o.position_id, 20), what);
        told := told || jsonb_build_array(jsonb_build_object('instrument', o.instrument, 'symbol', d -> 'symbol',
            'exchange', d -> 'exchange', 'product', d -> 'product', 'book_quantity', d -> 'book_quantity',
            'broker_quantity', d -> 'broker_quantity', 'text', what));
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM pm.notify('reconciliation_difference', jsonb_build_object('differences', told));
    END IF;
    RETURN n;
END;
$$;

-- pm.symbols_in_flight
-- Contract symbols with an order not yet settled (pm.order_unsettled) other than needs_review (the trader's: its
-- instrument is locked): the book already holds what the broker may not show yet, so reconciliation does not
-- call their difference one.
CREATE OR REPLACE FUNCTION pm.symbols_in_flight()
RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT symbol::text FROM pm.broker_orders
     WHERE symbol IS NOT NULL AND pm.order_unsettled(status) AND status <> 'needs_review'
       -- an order a review linked with --force that the broker's books never showed is no longer in
       -- flight (yesterday's orders leave the books): reconciliation judges its contract (issue 29)
       AND NOT (status = 'open' AND review_link IS NOT DISTINCT FROM 'forced' AND seen_at_broker IS NULL)
     ORDER BY 1;
$$;

-- pm.sending_signal_price
-- The signal's price of the order of this symbol and side now in 'sending' (at most one: the unresolved index), for
-- the simulator beside the engine (pm-engine run --broker sim, chaos), which fills a MARKET order at it.
CREATE OR REPLACE FUNCTION pm.sending_signal_price(p_symbol text, p_side text)
RETURNS numeric LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT price FROM pm.broker_orders
     WHERE status = 'sending' AND symbol = p_symbol AND side = upper(p_side)
     ORDER BY attempt_started_at DESC LIMIT 1;
$$;

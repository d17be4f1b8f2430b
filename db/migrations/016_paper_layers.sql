-- 016_paper_layers
-- Issue 28: a layer's orders looked up by its layer id (pm.layer_on_paper, on every paper fill of a closing
-- order or a roll leg: is this layer's current trade on paper?), and pm.expire_stale_entries takes the
-- exchanges closed now (its expiry reason then says "market closed"): the one-argument form is dropped so the
-- function file's two-argument one (second argument optional) is the only one.

CREATE INDEX broker_orders_position_idx ON pm.broker_orders (position_id, created_at);

DROP FUNCTION IF EXISTS pm.expire_stale_entries(interval);

-- The PostgreSQL side of the peer benchmark: the flash-sale data model and one function per
-- request kind. Each call is one implicit transaction (synchronous_commit = on: the commit
-- waits for its WAL to be flushed). Functions answer ARRAY[code, values...] with the codes
-- of docs/ERRORS.md. Run by the load generator under an advisory lock; safe to run again.
CREATE TABLE IF NOT EXISTS surge_sku (
    id bigint PRIMARY KEY,
    price bigint NOT NULL,
    stocked bigint NOT NULL,
    available bigint NOT NULL,
    reserved bigint NOT NULL DEFAULT 0,
    sold bigint NOT NULL DEFAULT 0,
    per_user_limit int NOT NULL
);
CREATE TABLE IF NOT EXISTS surge_holding (
    sku bigint NOT NULL,
    user_id bigint NOT NULL,
    qty int NOT NULL,
    PRIMARY KEY (sku, user_id)
);
CREATE TABLE IF NOT EXISTS surge_order (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    sku bigint NOT NULL,
    qty int NOT NULL,
    total bigint NOT NULL,
    state smallint NOT NULL,
    payment_ref bigint
);

CREATE OR REPLACE FUNCTION surge_upsert(p_sku bigint, p_price bigint, p_stock bigint, p_limit int)
RETURNS bigint[] LANGUAGE sql AS $$
    INSERT INTO surge_sku (id, price, stocked, available, per_user_limit)
    VALUES (p_sku, p_price, p_stock, p_stock, p_limit)
    ON CONFLICT (id) DO UPDATE SET price = EXCLUDED.price, stocked = EXCLUDED.stocked,
        available = EXCLUDED.stocked - surge_sku.reserved - surge_sku.sold,
        per_user_limit = EXCLUDED.per_user_limit;
    SELECT ARRAY[0::bigint];
$$;

-- The stock lock is the conditional UPDATE: it takes the SKU's row lock, so orders for one
-- SKU queue behind each other, and the per-user check after it cannot race.
CREATE OR REPLACE FUNCTION surge_place(p_user bigint, p_sku bigint, p_qty int)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE v_price bigint; v_limit int; v_held int; v_id bigint;
BEGIN
    UPDATE surge_sku SET available = available - p_qty, reserved = reserved + p_qty
     WHERE id = p_sku AND available >= p_qty
    RETURNING price, per_user_limit INTO v_price, v_limit;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM surge_sku WHERE id = p_sku) THEN
            RETURN ARRAY[105::bigint];
        END IF;
        RETURN ARRAY[100::bigint];
    END IF;
    IF v_limit > 0 THEN
        SELECT qty INTO v_held FROM surge_holding WHERE sku = p_sku AND user_id = p_user;
        IF coalesce(v_held, 0) + p_qty > v_limit THEN
            UPDATE surge_sku SET available = available + p_qty, reserved = reserved - p_qty
             WHERE id = p_sku;
            RETURN ARRAY[104::bigint];
        END IF;
        INSERT INTO surge_holding VALUES (p_sku, p_user, p_qty)
        ON CONFLICT (sku, user_id) DO UPDATE SET qty = surge_holding.qty + EXCLUDED.qty;
    END IF;
    INSERT INTO surge_order (user_id, sku, qty, total, state)
    VALUES (p_user, p_sku, p_qty, v_price * p_qty, 1) RETURNING id INTO v_id;
    RETURN ARRAY[0, v_id, v_price * p_qty];
END $$;

CREATE OR REPLACE FUNCTION surge_not_pending(p_order bigint) RETURNS bigint[]
LANGUAGE sql AS $$
    SELECT coalesce(
        (SELECT ARRAY[CASE state WHEN 2 THEN 114 WHEN 3 THEN 116 WHEN 4 THEN 117
                      ELSE 115 END::bigint]
           FROM surge_order WHERE id = p_order),
        ARRAY[112::bigint]);
$$;

CREATE OR REPLACE FUNCTION surge_pay(p_order bigint, p_amount bigint, p_ref bigint)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE v_sku bigint; v_qty int; v_total bigint;
BEGIN
    SELECT total INTO v_total FROM surge_order WHERE id = p_order AND state = 1;
    IF FOUND AND v_total <> p_amount THEN
        RETURN ARRAY[113::bigint];
    END IF;
    UPDATE surge_order SET state = 2, payment_ref = p_ref WHERE id = p_order AND state = 1
    RETURNING sku, qty INTO v_sku, v_qty;
    IF NOT FOUND THEN
        RETURN surge_not_pending(p_order);
    END IF;
    UPDATE surge_sku SET reserved = reserved - v_qty, sold = sold + v_qty WHERE id = v_sku;
    RETURN ARRAY[0::bigint];
END $$;

CREATE OR REPLACE FUNCTION surge_release(p_order bigint, p_state int)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE v_sku bigint; v_qty int; v_user bigint;
BEGIN
    UPDATE surge_order SET state = p_state WHERE id = p_order AND state = 1
    RETURNING sku, qty, user_id INTO v_sku, v_qty, v_user;
    IF NOT FOUND THEN
        RETURN surge_not_pending(p_order);
    END IF;
    UPDATE surge_sku SET available = available + v_qty, reserved = reserved - v_qty
     WHERE id = v_sku;
    UPDATE surge_holding SET qty = qty - v_qty WHERE sku = v_sku AND user_id = v_user;
    RETURN ARRAY[0::bigint];
END $$;

CREATE OR REPLACE FUNCTION surge_stock(p_sku bigint) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(
        (SELECT ARRAY[0, price, stocked, available, reserved, sold, per_user_limit]
           FROM surge_sku WHERE id = p_sku),
        ARRAY[100::bigint]);
$$;

CREATE OR REPLACE FUNCTION surge_get_order(p_order bigint) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(
        (SELECT ARRAY[0, state, total, user_id, sku, qty] FROM surge_order WHERE id = p_order),
        ARRAY[112::bigint]);
$$;

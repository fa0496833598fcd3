-- surge's order history in PostgreSQL, kept current by `surge sink postgres` from the feed
-- (docs/FEED.md). The sink creates these tables when they are missing; nothing else writes
-- them. Money is in minor units, times are nanoseconds since the Unix epoch (surge's clock).
--
-- Exactly once: `surge_sink_position.through_seq` is written in the same transaction as the
-- rows, so after a crash of the sink, surge or PostgreSQL, the sink resumes after it: no
-- event is applied twice and none is skipped.

-- One row per order, updated as it moves (placed → paid / cancelled / failed / expired →
-- retired). `seq` is the journal sequence of the change the row shows.
CREATE TABLE IF NOT EXISTS surge_orders (
    order_id     bigint PRIMARY KEY,
    client_id    bigint NOT NULL,
    request_id   bigint NOT NULL,
    user_id      bigint NOT NULL,
    state        text   NOT NULL CHECK (state IN
                     ('pending_payment', 'paid', 'cancelled', 'payment_failed', 'expired')),
    total        bigint NOT NULL,
    created_ns   bigint NOT NULL,  -- placed, or handed over from the waitlist
    deadline_ns  bigint NOT NULL,  -- the payment deadline
    paid_ns      bigint NOT NULL,  -- 0 while unpaid
    payment_ref  bigint NOT NULL,  -- 0 while unpaid
    closed_ns    bigint NOT NULL,  -- 0 while open
    from_waitlist boolean NOT NULL DEFAULT false,
    retired      boolean NOT NULL DEFAULT false,  -- left surge's memory; this row is its history
    seq          bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS surge_orders_user ON surge_orders (user_id);
CREATE INDEX IF NOT EXISTS surge_orders_open ON surge_orders (deadline_ns)
    WHERE state = 'pending_payment';

-- An order's lines, written once when it is placed (they never change).
CREATE TABLE IF NOT EXISTS surge_order_lines (
    order_id  bigint NOT NULL REFERENCES surge_orders (order_id),
    line_no   integer NOT NULL,
    sku       bigint NOT NULL,
    qty       integer NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX IF NOT EXISTS surge_order_lines_sku ON surge_order_lines (sku);

-- What reconciling a payment statement found. `(seq, n)`: the statement batch's journal
-- sequence and the finding's place in it.
CREATE TABLE IF NOT EXISTS surge_discrepancies (
    seq          bigint  NOT NULL,
    n            integer NOT NULL,
    kind         text    NOT NULL,  -- DISCREPANCY_REFUND_DUE, _AMOUNT_MISMATCH, _MISSING_FROM_STATEMENT,
                                    -- _SETTLED_FROM_STATEMENT, _BEYOND_HISTORY (docs/ERRORS.md)
    order_id     bigint  NOT NULL,
    payment_ref  bigint  NOT NULL,
    expected     bigint  NOT NULL,
    captured     bigint  NOT NULL,
    at_ns        bigint  NOT NULL,
    PRIMARY KEY (seq, n)
);

-- The catalog as the last change left each SKU.
CREATE TABLE IF NOT EXISTS surge_skus (
    sku             bigint PRIMARY KEY,
    price           bigint  NOT NULL,
    per_user_limit  integer NOT NULL,
    listed          boolean NOT NULL,
    stocked         bigint  NOT NULL,
    available       bigint  NOT NULL,
    reserved        bigint  NOT NULL,
    sold            bigint  NOT NULL,
    seq             bigint  NOT NULL
);

-- Where the sink is: every event at or below `through_seq` is in the tables above.
CREATE TABLE IF NOT EXISTS surge_sink_position (
    id           integer PRIMARY KEY CHECK (id = 1),
    through_seq  bigint  NOT NULL,
    events       bigint  NOT NULL,  -- events applied since the tables were created
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO surge_sink_position (id, through_seq, events) VALUES (1, 0, 0)
    ON CONFLICT (id) DO NOTHING;

//! The reference model: a naive re-implementation of the rules in `docs/ENGINE.md`, written
//! from the document alone, that the property tests in `model_equivalence.rs` hold the real
//! engine against. Plain vectors and linear scans throughout; nothing is cached that can be
//! recomputed (holdings, for one, are summed from orders and waitlists on every use; whether
//! an order is held, retired or beyond history is read off two lists), so each rule reads
//! like the sentence it comes from. Every order ever placed stays in `orders`, retired or not:
//! retirement only changes what the engine answers about it, never what it holds.

use std::collections::BTreeMap;

use engine::outcome::{OrderView, StockView, WaitlistView};
use engine::{Answer, Code, Discrepancy, DiscrepancyKind, EngineConfig, Event, Outcome};
use engine::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use engine::{Command, OrderLine, OrderState, Query, Request, SaleWindow, SkuSpec};
use engine::{RetiredOrder, StatementEntry, StatementStatus};

/// Lines in one order (ENGINE.md, *Placing an order*).
const LINES_MAX: usize = 16;
/// Entries in one statement batch (ENGINE.md, *Reconciliation*).
const STATEMENT_ENTRIES_MAX: usize = 4096;
/// Releases remembered per SKU for the ETA (ENGINE.md, *Waitlist*).
const RELEASES_REMEMBERED: usize = 16;

#[derive(Clone, Debug)]
pub struct WaitEntry {
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub qty: u32,
    /// Its units count toward the buyer's holdings (the SKU had a per-user limit when it
    /// joined).
    pub counts: bool,
    /// The holdings-reset counter when it joined.
    pub stamp: u32,
}

#[derive(Clone, Debug)]
pub struct ModelSku {
    pub price: Money,
    pub stocked: Units,
    pub available: Units,
    pub reserved: Units,
    pub sold: Units,
    pub per_user_limit: u32,
    pub window: Option<SaleWindow>,
    pub listed: bool,
    /// Head first.
    pub waitlist: Vec<WaitEntry>,
    /// `(clock, qty)`, oldest first, at most `RELEASES_REMEMBERED`.
    pub releases: Vec<(TimestampNs, Units)>,
    /// The holdings-reset counter at its last reset (0 if never reset): lines and entries
    /// made before it no longer count.
    pub stamp: u32,
}

#[derive(Clone, Debug)]
pub struct ModelOrder {
    pub client: ClientId,
    pub request: RequestId,
    pub user: UserId,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_ns: TimestampNs,
    pub deadline_ns: TimestampNs,
    pub paid_ns: TimestampNs,
    pub payment_ref: u64,
    /// When it left `PendingPayment` (0 while open).
    pub closed_ns: TimestampNs,
    /// Per line: its units count toward the buyer's holdings (the SKU had a per-user limit
    /// when the order was placed, or when its waitlist entry joined).
    pub counts: Vec<bool>,
    /// The holdings-reset counter when it was placed (or its waitlist entry joined).
    pub stamp: u32,
    pub state: OrderState,
    /// Seen in a statement (or reported missing from one).
    pub seen: bool,
}

/// What the engine knows of an order id (ENGINE.md, *Retirement*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whereabouts {
    /// Never assigned: 0, or not yet reached.
    Unknown,
    /// In the book: open, or closed and not yet retired.
    Held,
    /// Retired; its record is among the last `orders_retired_max`.
    Retired,
    /// Retired and evicted from the record ring.
    BeyondHistory,
}

/// Why a SKU's holdings were reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetKind {
    Delisted,
    /// Upserted after its sale window had ended.
    Relisted,
}

/// Rare situations the model met, so the generator's reach can be checked
/// (`generator_reaches_every_rule`). Bookkeeping only: no rule reads it.
#[derive(Clone, Debug, Default)]
pub struct Reached {
    /// A per-user limit check that passed only because a reset of this kind made earlier
    /// lines or entries stop counting.
    pub limit_freed_by_delist: bool,
    pub limit_freed_by_relist: bool,
    /// An order was made while more than `orders_max` had ever been placed: retirement had
    /// made room.
    pub order_in_room_from_retirement: bool,
    /// A waitlist head that fitted stayed queued because the book was full.
    pub serve_blocked_by_capacity: bool,
    /// A statement entry or close marked a retired (in the ring) paid order as seen.
    pub retired_seen_by_entry: bool,
    pub retired_seen_by_close: bool,
}

/// What the engine remembers of one client's requests (ENGINE.md, *Idempotency*).
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The largest request id the client has had applied; `None` before its first.
    pub highest: Option<u64>,
    /// Outcomes by request id (only ids still inside the window matter).
    pub outcomes: BTreeMap<u64, Outcome>,
    /// When its last non-Tick command came, counted in non-Tick commands.
    pub last_active: u64,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub config: EngineConfig,
    pub clock: TimestampNs,
    pub skus: BTreeMap<SkuId, ModelSku>,
    /// Index `i` holds order id `i + 1`.
    pub orders: Vec<ModelOrder>,
    /// Every order ever paid, in payment order (a statement's close walks it).
    pub paid_in_order: Vec<OrderId>,
    /// Every order that left `PendingPayment`, in the order they did.
    pub closed_in_order: Vec<OrderId>,
    /// Every retired order, in the order they retired; the last `orders_retired_max` have
    /// records, the rest are beyond history.
    pub retired: Vec<OrderId>,
    /// Holdings resets so far, engine-wide; entry `k - 1` is reset `k` (the stamp it gave).
    pub resets: Vec<(SkuId, ResetKind)>,
    pub sessions: BTreeMap<ClientId, Session>,
    /// Non-Tick commands so far: the clock for `Session::last_active`.
    pub keyed_commands: u64,
    pub reached: Reached,
}

fn reject(code: Code, subject: u64) -> Outcome {
    Outcome::Rejected { code, subject }
}

fn idx(order: OrderId) -> usize {
    (order.0 - 1) as usize
}

impl Model {
    pub fn new(config: EngineConfig) -> Model {
        Model {
            config,
            clock: 0,
            skus: BTreeMap::new(),
            orders: Vec::new(),
            paid_in_order: Vec::new(),
            closed_in_order: Vec::new(),
            retired: Vec::new(),
            resets: Vec::new(),
            sessions: BTreeMap::new(),
            keyed_commands: 0,
            reached: Reached::default(),
        }
    }

    /// Any order ever placed, retired or not.
    pub fn order(&self, order: OrderId) -> Option<&ModelOrder> {
        if order.0 == 0 {
            return None;
        }
        self.orders.get(idx(order))
    }

    pub fn whereabouts(&self, order: OrderId) -> Whereabouts {
        if self.order(order).is_none() {
            return Whereabouts::Unknown;
        }
        let Some(at) = self.retired.iter().position(|&r| r == order) else {
            return Whereabouts::Held;
        };
        let newer = (self.retired.len() - 1 - at) as u64;
        if newer < self.config.orders_retired_max {
            Whereabouts::Retired
        } else {
            Whereabouts::BeyondHistory
        }
    }

    /// Orders in the book: every order placed less those retired.
    pub fn held_orders(&self) -> u64 {
        (self.orders.len() - self.retired.len()) as u64
    }

    fn book_full(&self) -> bool {
        self.held_orders() >= self.config.orders_max
    }

    /// The order leaves `PendingPayment` now.
    fn close(&mut self, order: OrderId, to: OrderState) {
        let o = &mut self.orders[idx(order)];
        debug_assert_eq!(o.state, OrderState::PendingPayment);
        o.state = to;
        o.closed_ns = self.clock;
        self.closed_in_order.push(order);
    }

    /// The SKU's holdings no longer count what was made before now.
    fn reset_holdings(&mut self, sku: SkuId, kind: ResetKind) {
        self.resets.push((sku, kind));
        let stamp = self.resets.len() as u32;
        self.skus.get_mut(&sku).expect("known").stamp = stamp;
    }

    /// One request, as `Engine::apply` would take it: its outcome and events.
    pub fn apply(&mut self, now_ns: TimestampNs, request: &Request) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        // 1. Clock.
        self.clock = self.clock.max(now_ns);
        // 2. Expiry, in creation order. Indexing (not iterating) so that an order created by
        // serving a waitlist during this very pass is looked at too.
        let mut i = 0;
        while i < self.orders.len() {
            let o = &self.orders[i];
            if o.state == OrderState::PendingPayment && o.deadline_ns <= self.clock {
                let (client, user) = (o.client, o.user);
                let id = OrderId(i as u64 + 1);
                self.close(id, OrderState::Expired);
                self.release(id, &mut events);
                events.push(Event::OrderExpired {
                    order: id,
                    client,
                    user,
                });
            }
            i += 1;
        }
        // 3. Retirement, in closing order: closed orders whose time has come (those that
        // expired just now too), at most `RETIRE_PER_COMMAND` of them.
        let mut retiring = 0;
        for id in self.closed_in_order.clone() {
            let o = &self.orders[idx(id)];
            let due = o.closed_ns.saturating_add(self.config.retire_after_ns) <= self.clock;
            if due
                && !self.retired.contains(&id)
                && retiring < engine::state_machine::RETIRE_PER_COMMAND
            {
                retiring += 1;
                self.retired.push(id);
                events.push(Event::OrderRetired {
                    order: id,
                    state: o.state,
                });
            }
        }
        // 4. Tick.
        if request.command == Command::Tick {
            return (Outcome::Ticked { now_ns: self.clock }, events);
        }
        // 5. Idempotency.
        let id = request.request.0;
        let window = self.window();
        self.keyed_commands += 1;
        let session = self.session(request.client);
        if let Some(highest) = session.highest {
            if id.saturating_add(window) <= highest {
                return (reject(Code::RequestTooOld, id), events);
            }
            if let Some(outcome) = session.outcomes.get(&id) {
                return (*outcome, events);
            }
        }
        let outcome = self.execute(request, &mut events);
        let session = self.sessions.get_mut(&request.client).expect("made above");
        let highest = session.highest.map_or(id, |h| h.max(id));
        session.highest = Some(highest);
        session.outcomes.insert(id, outcome);
        session
            .outcomes
            .retain(|&old, _| old.saturating_add(window) > highest);
        (outcome, events)
    }

    /// `W`: `idempotency_window` rounded up to a power of two, at least 16.
    fn window(&self) -> u64 {
        u64::from(self.config.idempotency_window)
            .next_power_of_two()
            .max(16)
    }

    /// The client's session, marked active now; a new client past `clients_max` first evicts
    /// the one whose last command is oldest.
    fn session(&mut self, client: ClientId) -> &mut Session {
        if !self.sessions.contains_key(&client)
            && self.sessions.len() >= self.config.clients_max as usize
        {
            let idlest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_active)
                .map(|(c, _)| *c);
            if let Some(idlest) = idlest {
                self.sessions.remove(&idlest);
            }
        }
        let session = self.sessions.entry(client).or_default();
        // Any non-Tick command counts ("whose last command (non-Tick) is oldest"), so a retry
        // answered from memory or refused as too old does too.
        session.last_active = self.keyed_commands;
        session
    }

    fn execute(&mut self, request: &Request, events: &mut Vec<Event>) -> Outcome {
        match &request.command {
            Command::UpsertSku(spec) => self.upsert(spec, events),
            Command::Restock { sku, units } => self.restock(*sku, *units, events),
            Command::Delist { sku } => self.delist(*sku, events),
            Command::PlaceOrder {
                user,
                lines,
                join_waitlist,
            } => self.place(request, *user, lines, *join_waitlist),
            Command::ConfirmPayment {
                order,
                amount,
                payment_ref,
            } => self.confirm(*order, *amount, *payment_ref, events),
            Command::FailPayment { order } => {
                self.close_unpaid(*order, OrderState::PaymentFailed, events)
            }
            Command::CancelOrder { order } => {
                self.close_unpaid(*order, OrderState::Cancelled, events)
            }
            Command::StatementBatch {
                entries,
                closes_through_ns,
            } => self.statement(entries, *closes_through_ns, events),
            Command::Tick => unreachable!("ticks return before idempotency"),
        }
    }

    // ---- Catalog ------------------------------------------------------------------------

    fn upsert(&mut self, spec: &SkuSpec, events: &mut Vec<Event>) -> Outcome {
        if let Some(w) = spec.sale_window {
            if w.end_ns <= w.start_ns {
                return reject(Code::BadSkuDefinition, spec.sku.0);
            }
        }
        match self.skus.get_mut(&spec.sku) {
            None => {
                if self.skus.len() >= self.config.skus_max as usize {
                    return reject(Code::SkuCapacityFull, spec.sku.0);
                }
                self.skus.insert(
                    spec.sku,
                    ModelSku {
                        price: spec.price,
                        stocked: spec.stock,
                        available: spec.stock,
                        reserved: 0,
                        sold: 0,
                        per_user_limit: spec.per_user_limit,
                        window: spec.sale_window,
                        listed: true,
                        waitlist: Vec::new(),
                        releases: Vec::new(),
                        stamp: 0,
                    },
                );
            }
            Some(s) => {
                if spec.stock < s.reserved + s.sold {
                    return reject(Code::StockBelowCommitted, spec.sku.0);
                }
                if s.window.is_some_and(|w| self.clock >= w.end_ns) {
                    self.reset_holdings(spec.sku, ResetKind::Relisted);
                }
                let s = self.skus.get_mut(&spec.sku).expect("known");
                s.price = spec.price;
                s.per_user_limit = spec.per_user_limit;
                s.window = spec.sale_window;
                s.listed = true;
                s.stocked = spec.stock;
                s.available = spec.stock - s.reserved - s.sold;
            }
        }
        self.serve(spec.sku, events);
        Outcome::SkuUpserted { sku: spec.sku }
    }

    fn restock(&mut self, sku: SkuId, units: Units, events: &mut Vec<Event>) -> Outcome {
        let Some(s) = self.skus.get_mut(&sku) else {
            return reject(Code::UnknownSku, sku.0);
        };
        if units == 0 {
            return reject(Code::BadQuantity, sku.0);
        }
        let Some(stocked) = s.stocked.checked_add(units) else {
            return reject(Code::StockOverflow, sku.0);
        };
        s.stocked = stocked;
        s.available += units;
        self.serve(sku, events);
        Outcome::SkuRestocked {
            sku,
            available: self.skus[&sku].available,
        }
    }

    fn delist(&mut self, sku: SkuId, events: &mut Vec<Event>) -> Outcome {
        let Some(s) = self.skus.get_mut(&sku) else {
            return reject(Code::UnknownSku, sku.0);
        };
        s.listed = false;
        let dropped = std::mem::take(&mut s.waitlist);
        for e in &dropped {
            events.push(Event::WaitlistDropped {
                client: e.client,
                request: e.request,
                user: e.user,
                sku,
            });
        }
        self.reset_holdings(sku, ResetKind::Delisted);
        Outcome::SkuDelisted {
            sku,
            waitlist_dropped: dropped.len() as u32,
        }
    }

    // ---- Orders -------------------------------------------------------------------------

    /// Units the user holds of the SKU toward its per-user limit: the counting lines of their
    /// open and paid orders (held, retired or beyond history alike) plus their counting
    /// waitlist entry. A line or entry counts if the SKU had a limit when it was made and the
    /// SKU's holdings were not reset since. With `ignore_resets`, resets are not applied (to
    /// tell when one mattered).
    fn held_units(&self, user: UserId, sku: SkuId, ignore_resets: bool) -> Units {
        let Some(s) = self.skus.get(&sku) else {
            return 0;
        };
        let current = |stamp: u32| ignore_resets || stamp >= s.stamp;
        let mut held = 0;
        for o in &self.orders {
            let holds = matches!(o.state, OrderState::PendingPayment | OrderState::Paid);
            if o.user != user || !holds || !current(o.stamp) {
                continue;
            }
            for (l, &counts) in o.lines.iter().zip(&o.counts) {
                if l.sku == sku && counts {
                    held += Units::from(l.qty);
                }
            }
        }
        for e in &s.waitlist {
            if e.user == user && e.counts && current(e.stamp) {
                held += Units::from(e.qty);
            }
        }
        held
    }

    pub fn held(&self, user: UserId, sku: SkuId) -> Units {
        self.held_units(user, sku, false)
    }

    /// The kinds of reset that stopped `user`'s lines and entries of `sku` counting.
    fn resets_that_freed(&self, user: UserId, sku: SkuId) -> Vec<ResetKind> {
        let s = &self.skus[&sku];
        let mut stamps: Vec<u32> = Vec::new();
        for o in &self.orders {
            let holds = matches!(o.state, OrderState::PendingPayment | OrderState::Paid);
            let counted = o
                .lines
                .iter()
                .zip(&o.counts)
                .any(|(l, &c)| l.sku == sku && c);
            if o.user == user && holds && counted && o.stamp < s.stamp {
                stamps.push(o.stamp);
            }
        }
        for e in &s.waitlist {
            if e.user == user && e.counts && e.stamp < s.stamp {
                stamps.push(e.stamp);
            }
        }
        // The first reset of this SKU after each.
        stamps
            .into_iter()
            .filter_map(|stamp| {
                self.resets[stamp as usize..]
                    .iter()
                    .find(|(reset_sku, _)| *reset_sku == sku)
                    .map(|(_, kind)| *kind)
            })
            .collect()
    }

    fn place(
        &mut self,
        request: &Request,
        user: UserId,
        lines: &[OrderLine],
        join_waitlist: bool,
    ) -> Outcome {
        // 1. Line count.
        if lines.is_empty() || lines.len() > LINES_MAX {
            return reject(Code::BadLineCount, lines.len() as u64);
        }
        // 2. Each line.
        let mut total: Money = 0;
        for (n, line) in lines.iter().enumerate() {
            let sku = line.sku;
            if line.qty == 0 {
                return reject(Code::BadQuantity, sku.0);
            }
            if lines[..n].iter().any(|earlier| earlier.sku == sku) {
                return reject(Code::DuplicateSku, sku.0);
            }
            let Some(s) = self.skus.get(&sku) else {
                return reject(Code::UnknownSku, sku.0);
            };
            if !s.listed {
                return reject(Code::SkuNotListed, sku.0);
            }
            if let Some(w) = s.window {
                if self.clock < w.start_ns {
                    return reject(Code::SaleNotStarted, sku.0);
                }
                if self.clock >= w.end_ns {
                    return reject(Code::SaleEnded, sku.0);
                }
            }
            let qty = Units::from(line.qty);
            let limit = u64::from(s.per_user_limit);
            if s.per_user_limit > 0 && self.held(user, sku) + qty > limit {
                return reject(Code::PerUserLimit, sku.0);
            }
            if s.per_user_limit > 0 && self.held_units(user, sku, true) + qty > limit {
                for kind in self.resets_that_freed(user, sku) {
                    match kind {
                        ResetKind::Delisted => self.reached.limit_freed_by_delist = true,
                        ResetKind::Relisted => self.reached.limit_freed_by_relist = true,
                    }
                }
            }
            match s.price.checked_mul(qty).and_then(|p| total.checked_add(p)) {
                Some(t) => total = t,
                None => return reject(Code::BadQuantity, sku.0),
            }
        }
        // 3. Stock: the first short line decides.
        let short = lines.iter().find(|l| {
            let s = &self.skus[&l.sku];
            !s.waitlist.is_empty() || s.available < Units::from(l.qty)
        });
        if let Some(line) = short {
            let max = self.config.waitlist_len_max as usize;
            let queued: usize = self.skus.values().map(|s| s.waitlist.len()).sum();
            let stamp = self.resets.len() as u32;
            let s = self.skus.get_mut(&line.sku).expect("checked above");
            let qty = Units::from(line.qty);
            let may_wait = lines.len() == 1
                && join_waitlist
                && s.reserved > 0
                && qty <= s.available + s.reserved;
            if !may_wait {
                return reject(Code::OutOfStock, line.sku.0);
            }
            if s.waitlist.iter().any(|e| e.user == user) {
                return reject(Code::AlreadyWaitlisted, line.sku.0);
            }
            if s.waitlist.len() >= max {
                return reject(Code::WaitlistFull, line.sku.0);
            }
            if queued as u64 >= u64::from(self.config.waitlist_entries_max) {
                return reject(Code::WaitlistCapacityFull, line.sku.0);
            }
            let units_ahead = s.waitlist.iter().map(|e| Units::from(e.qty)).sum();
            s.waitlist.push(WaitEntry {
                client: request.client,
                request: request.request,
                user,
                qty: line.qty,
                counts: s.per_user_limit > 0,
                stamp,
            });
            return Outcome::WaitlistJoined {
                sku: line.sku,
                position: s.waitlist.len() as u32,
                units_ahead,
            };
        }
        // 4. Capacity: the book (open orders, closed ones not yet retired).
        if self.book_full() {
            return reject(Code::OrderCapacityFull, 0);
        }
        // 5. Accepted.
        let mut counts = Vec::new();
        for l in lines {
            let s = self.skus.get_mut(&l.sku).expect("checked above");
            s.available -= Units::from(l.qty);
            s.reserved += Units::from(l.qty);
            counts.push(s.per_user_limit > 0);
        }
        let deadline_ns = self.clock + self.config.payment_window_ns;
        let stamp = self.resets.len() as u32;
        let order = self.new_order(
            (request.client, request.request, user),
            lines.to_vec(),
            total,
            (counts, stamp),
        );
        Outcome::OrderPlaced {
            order,
            total,
            deadline_ns,
        }
    }

    /// Appends a `PendingPayment` order (stock already moved by the caller) and returns its id.
    /// `holdings`: which lines count toward holdings, and the reset counter they were made at.
    fn new_order(
        &mut self,
        (client, request, user): (ClientId, RequestId, UserId),
        lines: Vec<OrderLine>,
        total: Money,
        (counts, stamp): (Vec<bool>, u32),
    ) -> OrderId {
        debug_assert!(!self.book_full());
        if self.orders.len() as u64 >= self.config.orders_max {
            self.reached.order_in_room_from_retirement = true;
        }
        self.orders.push(ModelOrder {
            client,
            request,
            user,
            lines,
            total,
            created_ns: self.clock,
            deadline_ns: self.clock + self.config.payment_window_ns,
            paid_ns: 0,
            payment_ref: 0,
            closed_ns: 0,
            counts,
            stamp,
            state: OrderState::PendingPayment,
            seen: false,
        });
        OrderId(self.orders.len() as u64)
    }

    /// The unknown/closed checks shared by confirm, fail and cancel. A retired order is
    /// judged by its final state; one beyond history cannot be.
    fn check_open(&self, order: OrderId) -> Result<(), Outcome> {
        match self.whereabouts(order) {
            Whereabouts::Unknown => return Err(reject(Code::UnknownOrder, order.0)),
            Whereabouts::BeyondHistory => return Err(reject(Code::OrderBeyondHistory, order.0)),
            Whereabouts::Held | Whereabouts::Retired => {}
        }
        let o = &self.orders[idx(order)];
        let code = match o.state {
            OrderState::PendingPayment => return Ok(()),
            OrderState::Paid => Code::AlreadyPaid,
            OrderState::Cancelled => Code::OrderAlreadyCancelled,
            OrderState::PaymentFailed => Code::OrderAlreadyFailed,
            OrderState::Expired => Code::OrderAlreadyExpired,
        };
        Err(reject(code, order.0))
    }

    fn confirm(
        &mut self,
        order: OrderId,
        amount: Money,
        payment_ref: u64,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if let Err(rejected) = self.check_open(order) {
            return rejected;
        }
        let total = self.orders[idx(order)].total;
        if amount != total {
            return reject(Code::WrongAmount, total);
        }
        self.settle(order, payment_ref, events);
        Outcome::PaymentConfirmed { order }
    }

    /// Pending → Paid: reserved units become sold, then the SKUs' waitlists are served.
    fn settle(&mut self, order: OrderId, payment_ref: u64, events: &mut Vec<Event>) {
        self.close(order, OrderState::Paid);
        let o = &mut self.orders[idx(order)];
        o.paid_ns = o.closed_ns;
        o.payment_ref = payment_ref;
        let lines = o.lines.clone();
        for l in &lines {
            let s = self.skus.get_mut(&l.sku).expect("orders name known SKUs");
            s.reserved -= Units::from(l.qty);
            s.sold += Units::from(l.qty);
        }
        self.paid_in_order.push(order);
        for l in &lines {
            self.serve(l.sku, events);
        }
    }

    fn close_unpaid(&mut self, order: OrderId, to: OrderState, events: &mut Vec<Event>) -> Outcome {
        if let Err(rejected) = self.check_open(order) {
            return rejected;
        }
        self.close(order, to);
        self.release(order, events);
        match to {
            OrderState::PaymentFailed => Outcome::PaymentFailed { order },
            _ => Outcome::OrderCancelled { order },
        }
    }

    /// Release: the (already closed) order's units go back, line by line, each SKU's
    /// waitlist served right after its line.
    fn release(&mut self, order: OrderId, events: &mut Vec<Event>) {
        let lines = self.orders[idx(order)].lines.clone();
        for l in &lines {
            let qty = Units::from(l.qty);
            let s = self.skus.get_mut(&l.sku).expect("orders name known SKUs");
            s.reserved -= qty;
            s.available += qty;
            s.releases.push((self.clock, qty));
            if s.releases.len() > RELEASES_REMEMBERED {
                s.releases.remove(0);
            }
            self.serve(l.sku, events);
        }
    }

    // ---- Waitlist -----------------------------------------------------------------------

    fn serve(&mut self, sku: SkuId, events: &mut Vec<Event>) {
        loop {
            let s = &self.skus[&sku];
            let Some(head) = s.waitlist.first().cloned() else {
                return;
            };
            let qty = Units::from(head.qty);
            let fits = qty <= s.available;
            let total = s.price.checked_mul(qty);
            if let (true, Some(total)) = (fits, total) {
                if self.book_full() {
                    self.reached.serve_blocked_by_capacity = true;
                    return;
                }
                let s = self.skus.get_mut(&sku).expect("known");
                s.waitlist.remove(0);
                s.available -= qty;
                s.reserved += qty;
                let line = OrderLine { sku, qty: head.qty };
                // The order inherits the entry's holdings decision and stamp.
                let order = self.new_order(
                    (head.client, head.request, head.user),
                    vec![line],
                    total,
                    (vec![head.counts], head.stamp),
                );
                events.push(Event::WaitlistOrderCreated {
                    client: head.client,
                    request: head.request,
                    user: head.user,
                    sku,
                    qty: head.qty,
                    order,
                    total,
                    deadline_ns: self.orders[idx(order)].deadline_ns,
                });
            } else if fits || qty > s.available + s.reserved {
                // Fits but its total overflows at today's price, or can never be satisfied.
                self.skus.get_mut(&sku).expect("known").waitlist.remove(0);
                events.push(Event::WaitlistDropped {
                    client: head.client,
                    request: head.request,
                    user: head.user,
                    sku,
                });
            } else {
                return;
            }
        }
    }

    // ---- Reconciliation -----------------------------------------------------------------

    fn statement(
        &mut self,
        entries: &[StatementEntry],
        closes_through_ns: Option<TimestampNs>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let too_many = entries.len() > STATEMENT_ENTRIES_MAX;
        if too_many || (entries.is_empty() && closes_through_ns.is_none()) {
            return reject(Code::BadStatement, entries.len() as u64);
        }
        use DiscrepancyKind::*;
        use OrderState::*;
        use StatementStatus::*;
        let mut matched = 0u32;
        let mut found: Vec<Discrepancy> = Vec::new();
        for e in entries {
            let whereabouts = self.whereabouts(e.order);
            let order = match whereabouts {
                Whereabouts::Held | Whereabouts::Retired => {
                    self.order(e.order).map(|o| (o.state, o.total, o.seen))
                }
                Whereabouts::Unknown | Whereabouts::BeyondHistory => None,
            };
            let total = order.map_or(0, |(_, total, _)| total);
            // What the table in ENGINE.md says for this row; `None` means the entry agrees.
            let kind = match (e.status, order) {
                _ if whereabouts == Whereabouts::BeyondHistory => Some(BeyondHistory),
                (Captured, None) => Some(RefundDue),
                (Captured, Some((Paid, _, false))) => {
                    self.orders[idx(e.order)].seen = true;
                    self.reached.retired_seen_by_entry |= whereabouts == Whereabouts::Retired;
                    (e.amount != total).then_some(AmountMismatch)
                }
                (Captured, Some((Paid, _, true))) => Some(RefundDue),
                (Captured, Some((PendingPayment, _, _))) if e.amount == total => {
                    self.settle(e.order, e.payment_ref, events);
                    self.orders[idx(e.order)].seen = true;
                    Some(SettledFromStatement)
                }
                (Captured, Some((PendingPayment, _, _))) => Some(AmountMismatch),
                (Captured, Some((Cancelled | PaymentFailed | Expired, _, _))) => Some(RefundDue),
                (Declined, Some((Paid, _, false))) => {
                    self.orders[idx(e.order)].seen = true;
                    self.reached.retired_seen_by_entry |= whereabouts == Whereabouts::Retired;
                    Some(MissingFromStatement)
                }
                (Declined, _) => None,
            };
            let Some(kind) = kind else {
                matched += 1;
                continue;
            };
            let captured = match e.status {
                Captured => e.amount,
                Declined => 0,
            };
            found.push(Discrepancy {
                kind,
                order: e.order,
                payment_ref: e.payment_ref,
                expected: total,
                captured,
            });
            // Events go out in entry order, interleaved with any that settling caused.
            events.push(Event::Discrepancy(found[found.len() - 1]));
        }
        if let Some(through) = closes_through_ns {
            for id in self.paid_in_order.clone() {
                // What is beyond history the engine cannot report.
                let whereabouts = self.whereabouts(id);
                if whereabouts == Whereabouts::BeyondHistory {
                    continue;
                }
                let o = &mut self.orders[idx(id)];
                if o.state == Paid && !o.seen && o.paid_ns <= through {
                    o.seen = true;
                    self.reached.retired_seen_by_close |= whereabouts == Whereabouts::Retired;
                    let missing = Discrepancy {
                        kind: MissingFromStatement,
                        order: id,
                        payment_ref: o.payment_ref,
                        expected: o.total,
                        captured: 0,
                    };
                    found.push(missing);
                    events.push(Event::Discrepancy(missing));
                }
            }
        }
        Outcome::StatementApplied {
            entries: entries.len() as u32,
            matched,
            discrepancies: found.len() as u32,
        }
    }

    // ---- Queries ------------------------------------------------------------------------

    pub fn query(&self, query: &Query) -> Answer {
        let rejected = |code, subject| Answer::Rejected { code, subject };
        match *query {
            Query::Order { order } => match (self.whereabouts(order), self.order(order)) {
                (Whereabouts::Unknown, _) | (_, None) => rejected(Code::UnknownOrder, order.0),
                (Whereabouts::BeyondHistory, _) => rejected(Code::OrderBeyondHistory, order.0),
                (Whereabouts::Retired, Some(o)) => Answer::RetiredOrder(RetiredOrder {
                    id: order,
                    client: o.client,
                    request: o.request,
                    user: o.user,
                    total: o.total,
                    created_ns: o.created_ns,
                    closed_ns: o.closed_ns,
                    payment_ref: o.payment_ref,
                    first_sku: o.lines[0].sku,
                    first_qty: o.lines[0].qty,
                    line_count: o.lines.len() as u16,
                    state: o.state,
                    reconciled: o.seen,
                }),
                (Whereabouts::Held, Some(o)) => Answer::Order(OrderView {
                    order,
                    client: o.client,
                    request: o.request,
                    user: o.user,
                    state: o.state,
                    total: o.total,
                    created_ns: o.created_ns,
                    deadline_ns: o.deadline_ns,
                    payment_ref: o.payment_ref,
                    lines: o.lines.clone(),
                }),
            },
            Query::Stock { sku } => match self.skus.get(&sku) {
                Some(s) => Answer::Stock(StockView {
                    sku,
                    price: s.price,
                    stocked: s.stocked,
                    available: s.available,
                    reserved: s.reserved,
                    sold: s.sold,
                    per_user_limit: s.per_user_limit,
                    listed: s.listed,
                    waitlist_len: s.waitlist.len() as u32,
                }),
                None => rejected(Code::UnknownSku, sku.0),
            },
            Query::WaitlistPosition { sku, user } => {
                let Some(s) = self.skus.get(&sku) else {
                    return rejected(Code::UnknownSku, sku.0);
                };
                let Some(at) = s.waitlist.iter().position(|e| e.user == user) else {
                    return rejected(Code::NotWaitlisted, sku.0);
                };
                let units_ahead: Units = s.waitlist[..at].iter().map(|e| Units::from(e.qty)).sum();
                let qty = s.waitlist[at].qty;
                Answer::WaitlistPosition(WaitlistView {
                    sku,
                    user,
                    qty,
                    position: at as u32 + 1,
                    units_ahead,
                    eta_ns: eta(&s.releases, units_ahead + Units::from(qty)),
                })
            }
        }
    }

    // ---- Invariants ---------------------------------------------------------------------

    /// The model's own bookkeeping: every SKU balances, its counters equal the sums over its
    /// orders, and the book is within `orders_max`.
    pub fn check(&self) -> Result<(), String> {
        if self.held_orders() > self.config.orders_max {
            return Err("model holds more than orders_max orders".into());
        }
        for (id, s) in &self.skus {
            if s.available + s.reserved + s.sold != s.stocked {
                return Err(format!("model SKU {id} does not balance: {s:?}"));
            }
            let sum = |state| -> Units {
                self.orders
                    .iter()
                    .filter(|o| o.state == state)
                    .flat_map(|o| &o.lines)
                    .filter(|l| l.sku == *id)
                    .map(|l| Units::from(l.qty))
                    .sum()
            };
            if s.reserved != sum(OrderState::PendingPayment) || s.sold != sum(OrderState::Paid) {
                return Err(format!("model SKU {id} counters disagree with its orders"));
            }
        }
        Ok(())
    }
}

/// ETA from the release history: `(units_ahead + qty) × span / released`, where `span` runs
/// from the oldest remembered release to the newest and `released` counts all but the oldest.
fn eta(releases: &[(TimestampNs, Units)], wanted: Units) -> Option<u64> {
    if releases.len() < 2 {
        return None;
    }
    let span = releases[releases.len() - 1].0 - releases[0].0;
    let released: Units = releases[1..].iter().map(|r| r.1).sum();
    if span == 0 || released == 0 {
        return None;
    }
    // Saturating: ENGINE.md gives no bound, and a wait past `u64::MAX` ns is "never" anyway.
    let eta = u128::from(wanted) * u128::from(span) / u128::from(released);
    Some(u64::try_from(eta).unwrap_or(u64::MAX))
}

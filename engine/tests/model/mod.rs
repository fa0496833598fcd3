//! The reference model: a naive re-implementation of the rules in `docs/ENGINE.md`, written
//! from the document alone, that the property tests in `model_equivalence.rs` hold the real
//! engine against. Plain vectors and linear scans throughout; nothing is cached that can be
//! recomputed (holdings, for one, are summed from orders and waitlists on every use), so each
//! rule reads like the sentence it comes from.

use std::collections::BTreeMap;

use engine::outcome::{OrderView, StockView, WaitlistView};
use engine::{Answer, Code, Discrepancy, DiscrepancyKind, EngineConfig, Event, Outcome};
use engine::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use engine::{Command, OrderLine, OrderState, Query, Request, SaleWindow, SkuSpec};
use engine::{StatementEntry, StatementStatus};

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
    pub state: OrderState,
    /// Seen in a statement (or reported missing from one).
    pub seen: bool,
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
    pub sessions: BTreeMap<ClientId, Session>,
    /// Non-Tick commands so far: the clock for `Session::last_active`.
    pub keyed_commands: u64,
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
            sessions: BTreeMap::new(),
            keyed_commands: 0,
        }
    }

    pub fn order(&self, order: OrderId) -> Option<&ModelOrder> {
        if order.0 == 0 {
            return None;
        }
        self.orders.get(idx(order))
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
                self.orders[i].state = OrderState::Expired;
                self.release(id, &mut events);
                events.push(Event::OrderExpired {
                    order: id,
                    client,
                    user,
                });
            }
            i += 1;
        }
        // 3. Tick.
        if request.command == Command::Tick {
            return (Outcome::Ticked { now_ns: self.clock }, events);
        }
        // 4. Idempotency.
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
                    },
                );
            }
            Some(s) => {
                if spec.stock < s.reserved + s.sold {
                    return reject(Code::StockBelowCommitted, spec.sku.0);
                }
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
        Outcome::SkuDelisted {
            sku,
            waitlist_dropped: dropped.len() as u32,
        }
    }

    // ---- Orders -------------------------------------------------------------------------

    /// Units the user holds of the SKU: open and paid orders plus their waitlist entry.
    pub fn held(&self, user: UserId, sku: SkuId) -> Units {
        let mut held = 0;
        for o in &self.orders {
            if o.user == user && matches!(o.state, OrderState::PendingPayment | OrderState::Paid) {
                for l in &o.lines {
                    if l.sku == sku {
                        held += Units::from(l.qty);
                    }
                }
            }
        }
        if let Some(s) = self.skus.get(&sku) {
            for e in &s.waitlist {
                if e.user == user {
                    held += Units::from(e.qty);
                }
            }
        }
        held
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
            if s.per_user_limit > 0 && self.held(user, sku) + qty > u64::from(s.per_user_limit) {
                return reject(Code::PerUserLimit, sku.0);
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
            let units_ahead = s.waitlist.iter().map(|e| Units::from(e.qty)).sum();
            s.waitlist.push(WaitEntry {
                client: request.client,
                request: request.request,
                user,
                qty: line.qty,
            });
            return Outcome::WaitlistJoined {
                sku: line.sku,
                position: s.waitlist.len() as u32,
                units_ahead,
            };
        }
        // 4. Capacity.
        if self.orders.len() as u64 >= self.config.orders_max {
            return reject(Code::OrderCapacityFull, 0);
        }
        // 5. Accepted.
        for l in lines {
            let s = self.skus.get_mut(&l.sku).expect("checked above");
            s.available -= Units::from(l.qty);
            s.reserved += Units::from(l.qty);
        }
        let deadline_ns = self.clock + self.config.payment_window_ns;
        let order = self.new_order(request.client, request.request, user, lines.to_vec(), total);
        Outcome::OrderPlaced {
            order,
            total,
            deadline_ns,
        }
    }

    /// Appends a `PendingPayment` order (stock already moved by the caller) and returns its id.
    fn new_order(
        &mut self,
        client: ClientId,
        request: RequestId,
        user: UserId,
        lines: Vec<OrderLine>,
        total: Money,
    ) -> OrderId {
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
            state: OrderState::PendingPayment,
            seen: false,
        });
        OrderId(self.orders.len() as u64)
    }

    /// The unknown/closed checks shared by confirm, fail and cancel.
    fn check_open(&self, order: OrderId) -> Result<(), Outcome> {
        let Some(o) = self.order(order) else {
            return Err(reject(Code::UnknownOrder, order.0));
        };
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
        let clock = self.clock;
        let o = &mut self.orders[idx(order)];
        o.state = OrderState::Paid;
        o.paid_ns = clock;
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
        self.orders[idx(order)].state = to;
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
                if self.orders.len() as u64 >= self.config.orders_max {
                    return;
                }
                let s = self.skus.get_mut(&sku).expect("known");
                s.waitlist.remove(0);
                s.available -= qty;
                s.reserved += qty;
                let line = OrderLine { sku, qty: head.qty };
                let order = self.new_order(head.client, head.request, head.user, vec![line], total);
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
            let order = self.order(e.order).map(|o| (o.state, o.total, o.seen));
            let total = order.map_or(0, |(_, total, _)| total);
            // What the table in ENGINE.md says for this row; `None` means the entry agrees.
            let kind = match (e.status, order) {
                (Captured, None) => Some(RefundDue),
                (Captured, Some((Paid, _, false))) => {
                    self.orders[idx(e.order)].seen = true;
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
            for &id in &self.paid_in_order {
                let o = &mut self.orders[idx(id)];
                if o.state == Paid && !o.seen && o.paid_ns <= through {
                    o.seen = true;
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
            Query::Order { order } => match self.order(order) {
                Some(o) => Answer::Order(OrderView {
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
                None => rejected(Code::UnknownOrder, order.0),
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

    /// The model's own bookkeeping: every SKU balances, and its counters equal the sums over
    /// its orders.
    pub fn check(&self) -> Result<(), String> {
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

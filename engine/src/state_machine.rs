//! The engine: one deterministic, single-threaded state machine. `apply` takes the time and
//! one request and writes the outcome and any events into a buffer the caller owns. It reads
//! no clock, does no I/O, never grows a table after it is made (every limit refuses with its
//! own code), and uses only deterministic hashers, so the same requests give the same
//! outputs, byte for byte, on any machine.
//!
//! Rule order for every command:
//! 1. the clock moves to `max(clock, now)`; every open order whose deadline has come
//!    (`clock >= deadline`) expires, oldest first (events); then every closed order whose
//!    retirement time has come (`clock >= closed + retire_after`) retires, in closing order
//!    (events);
//! 2. a request already in the idempotency window gets its original outcome, nothing else;
//! 3. otherwise the command runs, and its outcome is remembered.
//!
//! The rules themselves are written out in `docs/ENGINE.md`.

use crate::code::Code;
use crate::command::{Command, OrderLine, Query, Request, SkuSpec, StatementEntry};
use crate::command::{SaleWindow, StatementStatus};
use crate::config::{EngineConfig, ORDER_LINES_MAX, STATEMENT_ENTRIES_MAX};
use crate::holdings::{Holding, Holdings};
use crate::idempotency::{IdempotencyWindow, Seen};
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use crate::order::{Order, OrderBook, OrderLines, OrderState};
use crate::outcome::{Answer, Discrepancy, DiscrepancyKind, Event, OrderView, Outcome, Output};
use crate::outcome::{StockView, WaitlistView};
use crate::release_history::ReleaseHistory;
use crate::retired::{RetiredOrder, RetiredOrders};
use crate::rolling_hash::RollingHash;
use crate::sku::{Catalog, Sku, SkuIndex};
use crate::waitlist::{Joining, Waitlist};

/// Holdings slots the sweep visits per command: a lap of the table every
/// `slots / HOLDINGS_SWEEP_PER_COMMAND` commands.
const HOLDINGS_SWEEP_PER_COMMAND: usize = 4;

/// Most orders one command retires. Retirement is bookkeeping nobody waits for, so a backlog
/// (a burst of closures, a clock jump after a quiet spell) is worked off a few per command
/// instead of all at once: no command's work or event list grows with the backlog.
pub const RETIRE_PER_COMMAND: usize = 16;

#[derive(Clone)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) clock_ns: TimestampNs,
    pub(crate) catalog: Catalog,
    /// Open orders, and closed ones until they retire.
    pub(crate) orders: OrderBook,
    pub(crate) retired: RetiredOrders,
    pub(crate) holdings: Holdings,
    /// Holdings resets so far: the stamp of the newest (`Sku::holdings_since`).
    pub(crate) holdings_resets: u32,
    pub(crate) idempotency: IdempotencyWindow,
    /// Buyers on all waitlists.
    pub(crate) waitlist_entries: u64,
    pub(crate) hash: RollingHash,
    pub(crate) commands_applied: u64,
    /// Where it is in its own checkpoints (not part of the state: a restored engine starts
    /// counting again).
    pub(crate) checkpoint: crate::checkpoint::Progress,
}

/// One limit: how much of it is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitUse {
    /// The config key that sets it.
    pub name: &'static str,
    pub used: u64,
    pub max: u64,
}

impl Engine {
    /// An empty engine with every table allocated at its configured size (not yet touched:
    /// `fault_in`).
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            clock_ns: 0,
            catalog: Catalog::with_capacity(config.skus_max as usize),
            orders: OrderBook::with_capacity(config.orders_max),
            retired: RetiredOrders::with_capacity(config.orders_retired_max),
            holdings: Holdings::with_capacity(config.holdings_max as usize),
            holdings_resets: 0,
            idempotency: IdempotencyWindow::new(config.idempotency_window, config.clients_max),
            waitlist_entries: 0,
            hash: RollingHash::default(),
            commands_applied: 0,
            checkpoint: Default::default(),
        }
    }

    /// Touch every table's memory now, so the sale does not pay page faults on the hot path.
    /// Changes no state: replicas may fault in or not.
    pub fn fault_in(&mut self) {
        self.orders.fault_in();
        self.retired.fault_in();
        self.holdings.fault_in();
        self.idempotency.fault_in();
    }

    /// The big tables' allocations, for a caller that faults them in from another thread
    /// while this engine serves (they never move: their capacity is fixed at start-up).
    pub fn regions(&self) -> Vec<crate::memory::Region> {
        let mut out = Vec::new();
        self.orders.regions(&mut out);
        self.retired.regions(&mut out);
        self.holdings.regions(&mut out);
        self.idempotency.regions(&mut out);
        out
    }

    /// Bytes the configured limits take (what `fault_in` makes resident), waitlists aside.
    pub fn memory_bytes(&self) -> usize {
        self.orders.bytes()
            + self.retired.bytes()
            + self.holdings.bytes()
            + self.idempotency.bytes()
            + self.catalog.bytes()
    }

    /// Each limit and how much of it is in use, for `/metrics`.
    pub fn limits(&self) -> [LimitUse; 7] {
        let c = &self.config;
        let limit = |name, used, max| LimitUse { name, used, max };
        [
            limit("orders_max", self.orders.len(), c.orders_max),
            limit(
                "orders_retired_max",
                self.retired.len(),
                c.orders_retired_max,
            ),
            limit(
                "holdings_max",
                self.holdings.len() as u64,
                u64::from(c.holdings_max),
            ),
            limit(
                "clients_max",
                self.idempotency.clients() as u64,
                u64::from(c.clients_max),
            ),
            limit("skus_max", self.catalog.len() as u64, u64::from(c.skus_max)),
            limit(
                "waitlist_entries_max",
                self.waitlist_entries,
                u64::from(c.waitlist_entries_max),
            ),
            limit("idempotency_window", 0, u64::from(c.idempotency_window)),
        ]
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The engine's time: the largest timestamp applied so far.
    pub fn clock_ns(&self) -> TimestampNs {
        self.clock_ns
    }

    /// The rolling hash over every outcome and event so far.
    pub fn hash(&self) -> u64 {
        self.hash.value()
    }

    pub fn commands_applied(&self) -> u64 {
        self.commands_applied
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Orders held in full: open ones, and closed ones not yet retired.
    pub fn orders(&self) -> &OrderBook {
        &self.orders
    }

    pub fn retired(&self) -> &RetiredOrders {
        &self.retired
    }

    /// Units `user` holds of `sku` that count toward its per-user limit.
    pub fn held(&self, user: UserId, sku: SkuId) -> u32 {
        match self.catalog.get(sku) {
            Some(s) => self.holdings.get(user, sku, s.holdings_since),
            None => 0,
        }
    }

    /// Apply one request stamped `now_ns`; the outcome and events land in `out`.
    pub fn apply(&mut self, now_ns: TimestampNs, request: &Request, out: &mut Output) {
        out.events.clear();
        out.events.shrink_to(crate::outcome::OUTPUT_EVENTS_KEPT);
        self.advance_clock(now_ns, &mut out.events);
        out.repeated = false;
        out.outcome = if matches!(request.command, Command::Tick) {
            Outcome::Ticked {
                now_ns: self.clock_ns,
            }
        } else {
            let key = (request.client, request.request);
            match self.idempotency.seen(key) {
                Seen::Retry(original) => {
                    self.idempotency
                        .touch(request.client, self.commands_applied);
                    out.repeated = true;
                    original
                }
                Seen::TooOld => {
                    self.idempotency
                        .touch(request.client, self.commands_applied);
                    Outcome::rejected(Code::RequestTooOld, request.request.0)
                }
                Seen::New => {
                    let outcome = self.execute(request, &mut out.events);
                    self.idempotency
                        .remember(key, outcome, self.commands_applied);
                    outcome
                }
            }
        };
        out.outcome.feed(&mut self.hash);
        for event in &out.events {
            event.feed(&mut self.hash);
        }
        self.commands_applied += 1;
    }

    /// A hint: start loading what applying `request` will touch that is likely cold (the
    /// buyer's per-SKU holdings, the order it names, the client's idempotency slot). A stage
    /// that has the next request in hand calls this before applying the current one, so the
    /// cache miss overlaps that work. Changes nothing.
    #[inline]
    pub fn prefetch(&self, request: &Request) {
        self.idempotency.prefetch((request.client, request.request));
        match &request.command {
            Command::PlaceOrder { user, lines, .. } => {
                if let Some(line) = lines.first() {
                    self.holdings.prefetch(*user, line.sku);
                }
            }
            Command::ConfirmPayment { order, .. }
            | Command::FailPayment { order }
            | Command::CancelOrder { order } => self.orders.prefetch(*order),
            _ => {}
        }
    }

    /// Answer a query from the current state. Changes nothing.
    pub fn query(&self, query: &Query) -> Answer {
        match *query {
            Query::Order { order } => {
                if let Some(o) = self.orders.get(order) {
                    return Answer::Order(OrderView {
                        order,
                        client: o.client,
                        request: o.request,
                        user: o.user,
                        state: o.state,
                        total: o.total,
                        created_ns: o.created_ns,
                        deadline_ns: o.deadline_ns,
                        payment_ref: o.payment_ref,
                        lines: o.lines.as_slice().to_vec(),
                    });
                }
                match self.retired.get(order) {
                    Some(r) => Answer::RetiredOrder(*r),
                    None => rejected_answer(self.missing_order_code(order), order.0),
                }
            }
            Query::Stock { sku } => match self.catalog.get(sku) {
                Some(s) => Answer::Stock(StockView {
                    sku,
                    price: s.price,
                    stocked: s.stocked,
                    available: s.available,
                    reserved: s.reserved,
                    sold: s.sold,
                    per_user_limit: s.per_user_limit,
                    listed: s.listed,
                    waitlist_len: s.waitlist.len(),
                }),
                None => rejected_answer(Code::UnknownSku, sku.0),
            },
            Query::WaitlistPosition { sku, user } => {
                let Some(s) = self.catalog.get(sku) else {
                    return rejected_answer(Code::UnknownSku, sku.0);
                };
                match s.waitlist.place(user) {
                    Some(place) => Answer::WaitlistPosition(WaitlistView {
                        sku,
                        user,
                        qty: place.qty,
                        position: place.position,
                        units_ahead: place.units_ahead,
                        eta_ns: s
                            .releases
                            .eta_ns(place.units_ahead + Units::from(place.qty)),
                    }),
                    None => rejected_answer(Code::NotWaitlisted, sku.0),
                }
            }
        }
    }

    /// Why an order the book does not hold is not there: it was never assigned, or it
    /// retired past the retired-order window.
    fn missing_order_code(&self, order: OrderId) -> Code {
        if self.orders.was_assigned(order) {
            Code::OrderBeyondHistory
        } else {
            Code::UnknownOrder
        }
    }

    /// Check every SKU's stock invariant and the derived counters against the orders held.
    /// O(n): for tests and after a restore, not for the hot path. Paid orders retire, so the
    /// sold counter and holdings are checked as at least what the book still shows.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut reserved = vec![0u64; self.catalog.len()];
        let mut sold = vec![0u64; self.catalog.len()];
        let mut held = std::collections::BTreeMap::<(UserId, SkuId), u64>::new();
        let mut open_seen = 0;
        for (n, order) in self.orders.iter().enumerate() {
            let id = order.id;
            let in_open_chain = (n as u64) < self.orders.open_len();
            if order.is_open() != in_open_chain {
                return Err(format!("order {id} is in the wrong chain"));
            }
            open_seen += u64::from(order.is_open());
            for (i, line) in order.lines.as_slice().iter().enumerate() {
                let Some(index) = self.catalog.find(line.sku) else {
                    return Err(format!("order {id} names unknown SKU {}", line.sku));
                };
                let qty = Units::from(line.qty);
                match order.state {
                    OrderState::PendingPayment => reserved[index as usize] += qty,
                    OrderState::Paid => sold[index as usize] += qty,
                    _ => continue,
                }
                if self.line_counts(order, i, self.catalog.at(index)) {
                    *held.entry((order.user, line.sku)).or_default() += qty;
                }
            }
        }
        if open_seen != self.orders.open_len() {
            return Err("the open chain's length is wrong".into());
        }
        let mut waiting = 0u64;
        for (i, sku) in self.catalog.iter().enumerate() {
            if !sku.is_balanced() {
                return Err(format!("SKU {} is not balanced", sku.id));
            }
            if sku.reserved != reserved[i] || sku.sold < sold[i] {
                return Err(format!(
                    "SKU {}: counters reserved {} sold {} but orders held say {} and at least {}",
                    sku.id, sku.reserved, sku.sold, reserved[i], sold[i]
                ));
            }
            for entry in sku.waitlist.entries() {
                waiting += 1;
                if entry.held && entry.holdings_stamp >= sku.holdings_since {
                    *held.entry((entry.user, sku.id)).or_default() += Units::from(entry.qty);
                }
            }
        }
        if waiting != self.waitlist_entries {
            return Err("the waitlist entry count is wrong".into());
        }
        for ((user, sku), units) in held {
            let index = self.catalog.find(sku).expect("checked above");
            let s = self.catalog.at(index);
            let recorded = u64::from(self.holdings.get(user, sku, s.holdings_since));
            if recorded < units && !s.window_ended(self.clock_ns) {
                return Err(format!(
                    "user {user} holds {recorded} of SKU {sku} but open orders and waitlists say {units}"
                ));
            }
        }
        Ok(())
    }

    /// Whether line `i` of `order` counts in the buyer's holdings of `sku` (its SKU's).
    fn line_counts(&self, order: &Order, i: usize, sku: &Sku) -> bool {
        order.line_held(i) && order.holdings_stamp >= sku.holdings_since
    }

    fn advance_clock(&mut self, now_ns: TimestampNs, events: &mut Vec<Event>) {
        self.clock_ns = self.clock_ns.max(now_ns);
        while let Some(order) = self.orders.oldest_open() {
            if order.deadline_ns > self.clock_ns {
                break;
            }
            let (id, client, user) = (order.id, order.client, order.user);
            self.close_unpaid(id, OrderState::Expired, events);
            events.push(Event::OrderExpired {
                order: id,
                client,
                user,
            });
        }
        let retire_after = self.config.retire_after_ns;
        for _ in 0..RETIRE_PER_COMMAND {
            let Some(order) = self.orders.oldest_closed() else {
                break;
            };
            if order.closed_ns.saturating_add(retire_after) > self.clock_ns {
                break;
            }
            let order = self.orders.retire_oldest();
            self.retired.push(RetiredOrder::of(&order));
            events.push(Event::OrderRetired {
                order: order.id,
                state: order.state,
            });
        }
        self.sweep_holdings();
    }

    /// Remove a few holdings that are no longer needed: their SKU was reset since, or its
    /// sale window has ended.
    fn sweep_holdings(&mut self) {
        let (catalog, clock_ns) = (&self.catalog, self.clock_ns);
        self.holdings
            .sweep(HOLDINGS_SWEEP_PER_COMMAND, |h: &Holding| {
                match catalog.get(h.sku) {
                    Some(s) => h.since != s.holdings_since || s.window_ended(clock_ns),
                    None => true,
                }
            });
    }

    /// A new stamp for `index`'s holdings: everything held of it before no longer counts.
    fn reset_holdings(&mut self, index: SkuIndex) {
        self.holdings_resets = self
            .holdings_resets
            .checked_add(1)
            .expect("holdings resets overflow u32");
        self.catalog.at_mut(index).holdings_since = self.holdings_resets;
    }

    fn execute(&mut self, request: &Request, events: &mut Vec<Event>) -> Outcome {
        match &request.command {
            Command::UpsertSku(spec) => self.upsert_sku(spec, events),
            Command::Restock { sku, units } => self.restock(*sku, *units, events),
            Command::Delist { sku } => self.delist(*sku, events),
            Command::PlaceOrder {
                user,
                lines,
                join_waitlist,
            } => self.place_order(
                request.client,
                request.request,
                *user,
                lines,
                *join_waitlist,
            ),
            Command::ConfirmPayment {
                order,
                amount,
                payment_ref,
            } => self.confirm_payment(*order, *amount, *payment_ref, events),
            Command::FailPayment { order } => {
                self.close_order(*order, OrderState::PaymentFailed, events)
            }
            Command::CancelOrder { order } => {
                self.close_order(*order, OrderState::Cancelled, events)
            }
            Command::StatementBatch {
                entries,
                closes_through_ns,
            } => self.statement_batch(entries, *closes_through_ns, events),
            Command::Tick => unreachable!("ticks are handled before execute"),
        }
    }

    fn upsert_sku(&mut self, spec: &SkuSpec, events: &mut Vec<Event>) -> Outcome {
        if let Some(SaleWindow { start_ns, end_ns }) = spec.sale_window {
            if end_ns <= start_ns {
                return Outcome::rejected(Code::BadSkuDefinition, spec.sku.0);
            }
        }
        let index = match self.catalog.find(spec.sku) {
            Some(index) => {
                let sku = self.catalog.at(index);
                let committed = sku.reserved + sku.sold;
                if spec.stock < committed {
                    return Outcome::rejected(Code::StockBelowCommitted, spec.sku.0);
                }
                // Re-listed after its sale ended: a new sale, counted afresh.
                if sku.window_ended(self.clock_ns) {
                    self.reset_holdings(index);
                }
                let sku = self.catalog.at_mut(index);
                sku.price = spec.price;
                sku.per_user_limit = spec.per_user_limit;
                sku.sale_window = spec.sale_window;
                sku.listed = true;
                sku.stocked = spec.stock;
                sku.available = spec.stock - committed;
                index
            }
            None => {
                if self.catalog.len() >= self.config.skus_max as usize {
                    return Outcome::rejected(Code::SkuCapacityFull, spec.sku.0);
                }
                self.catalog.insert(Sku {
                    id: spec.sku,
                    price: spec.price,
                    per_user_limit: spec.per_user_limit,
                    sale_window: spec.sale_window,
                    listed: true,
                    stocked: spec.stock,
                    available: spec.stock,
                    reserved: 0,
                    sold: 0,
                    waitlist: Waitlist::default(),
                    releases: ReleaseHistory::default(),
                    holdings_since: 0,
                })
            }
        };
        self.serve_waitlist(index, events);
        Outcome::SkuUpserted { sku: spec.sku }
    }

    fn restock(&mut self, sku_id: SkuId, units: Units, events: &mut Vec<Event>) -> Outcome {
        let Some(index) = self.catalog.find(sku_id) else {
            return Outcome::rejected(Code::UnknownSku, sku_id.0);
        };
        if units == 0 {
            return Outcome::rejected(Code::BadQuantity, sku_id.0);
        }
        let sku = self.catalog.at_mut(index);
        let Some(stocked) = sku.stocked.checked_add(units) else {
            return Outcome::rejected(Code::StockOverflow, sku_id.0);
        };
        sku.stocked = stocked;
        sku.available += units;
        self.serve_waitlist(index, events);
        Outcome::SkuRestocked {
            sku: sku_id,
            available: self.catalog.at(index).available,
        }
    }

    fn delist(&mut self, sku_id: SkuId, events: &mut Vec<Event>) -> Outcome {
        let Some(index) = self.catalog.find(sku_id) else {
            return Outcome::rejected(Code::UnknownSku, sku_id.0);
        };
        self.catalog.at_mut(index).listed = false;
        let mut dropped = 0;
        while let Some(entry) = self.catalog.at_mut(index).waitlist.pop_front() {
            self.drop_wait_entry(index, entry, events);
            dropped += 1;
        }
        // What was held of it no longer counts; the sweep frees the entries.
        self.reset_holdings(index);
        Outcome::SkuDelisted {
            sku: sku_id,
            waitlist_dropped: dropped,
        }
    }

    fn place_order(
        &mut self,
        client: ClientId,
        request: RequestId,
        user: UserId,
        lines: &[OrderLine],
        join_waitlist: bool,
    ) -> Outcome {
        if lines.is_empty() || lines.len() > ORDER_LINES_MAX {
            return Outcome::rejected(Code::BadLineCount, lines.len() as u64);
        }
        // Look every line up once; the indexes are reused below.
        let mut indexes = [0 as SkuIndex; ORDER_LINES_MAX];
        let mut total: Money = 0;
        let mut held_lines = 0u16;
        let mut new_holdings = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.qty == 0 {
                return Outcome::rejected(Code::BadQuantity, line.sku.0);
            }
            if lines[..i].iter().any(|earlier| earlier.sku == line.sku) {
                return Outcome::rejected(Code::DuplicateSku, line.sku.0);
            }
            let Some(index) = self.catalog.find(line.sku) else {
                return Outcome::rejected(Code::UnknownSku, line.sku.0);
            };
            let sku = self.catalog.at(index);
            if !sku.listed {
                return Outcome::rejected(Code::SkuNotListed, line.sku.0);
            }
            if let Err(code) = sku.window_allows(self.clock_ns) {
                return Outcome::rejected(code, line.sku.0);
            }
            if sku.per_user_limit > 0 {
                let held = u64::from(self.holdings.get(user, line.sku, sku.holdings_since));
                if held + u64::from(line.qty) > u64::from(sku.per_user_limit) {
                    return Outcome::rejected(Code::PerUserLimit, line.sku.0);
                }
                held_lines |= 1 << i;
                new_holdings += usize::from(self.holdings.needs_entry(user, line.sku));
            }
            let Some(line_total) = sku.price.checked_mul(Money::from(line.qty)) else {
                return Outcome::rejected(Code::BadQuantity, line.sku.0);
            };
            let Some(sum) = total.checked_add(line_total) else {
                return Outcome::rejected(Code::BadQuantity, line.sku.0);
            };
            total = sum;
            indexes[i] = index;
        }
        // Stock: all lines or none. A non-empty waitlist means newcomers queue behind it.
        let short = lines.iter().zip(&indexes).find(|(line, &index)| {
            let sku = self.catalog.at(index);
            !sku.waitlist.is_empty() || sku.available < Units::from(line.qty)
        });
        if let Some((line, &index)) = short {
            return self
                .join_waitlist(client, request, user, lines, index, join_waitlist)
                .unwrap_or_else(|| Outcome::rejected(Code::OutOfStock, line.sku.0));
        }
        if self.orders.is_full() {
            return Outcome::rejected(Code::OrderCapacityFull, 0);
        }
        if !self.holdings.has_room(new_holdings) {
            return Outcome::rejected(Code::HoldingsCapacityFull, 0);
        }
        let deadline_ns = self.clock_ns + self.config.payment_window_ns;
        for (i, (line, &index)) in lines.iter().zip(&indexes).enumerate() {
            let sku = self.catalog.at_mut(index);
            sku.reserve(Units::from(line.qty));
            debug_assert!(sku.is_balanced());
            if held_lines & (1 << i) != 0 {
                let since = sku.holdings_since;
                self.holdings
                    .add(user, line.sku, line.qty, since)
                    .expect("room checked above");
            }
        }
        let order = self.create_order(
            client,
            request,
            user,
            OrderLines::new(lines),
            total,
            held_lines,
            self.holdings_resets,
        );
        Outcome::OrderPlaced {
            order,
            total,
            deadline_ns,
        }
    }

    /// Queue a single-line order that found no stock, if it asked to and units may still come
    /// back (some are reserved). `None` means plain `OUT_OF_STOCK`.
    fn join_waitlist(
        &mut self,
        client: ClientId,
        request: RequestId,
        user: UserId,
        lines: &[OrderLine],
        index: SkuIndex,
        wanted: bool,
    ) -> Option<Outcome> {
        let [line] = lines else { return None };
        let sku = self.catalog.at(index);
        let could_come_back =
            sku.reserved > 0 && Units::from(line.qty) <= sku.available + sku.reserved;
        if !wanted || !could_come_back {
            return None;
        }
        if sku.waitlist.contains(user) {
            return Some(Outcome::rejected(Code::AlreadyWaitlisted, line.sku.0));
        }
        if sku.waitlist.len() >= self.config.waitlist_len_max {
            return Some(Outcome::rejected(Code::WaitlistFull, line.sku.0));
        }
        if self.waitlist_entries >= u64::from(self.config.waitlist_entries_max) {
            return Some(Outcome::rejected(Code::WaitlistCapacityFull, line.sku.0));
        }
        let held = sku.per_user_limit > 0;
        if held && self.holdings.needs_entry(user, line.sku) && !self.holdings.has_room(1) {
            return Some(Outcome::rejected(Code::HoldingsCapacityFull, 0));
        }
        let since = sku.holdings_since;
        let place = self.catalog.at_mut(index).waitlist.push(Joining {
            client,
            request,
            user,
            qty: line.qty,
            held,
            holdings_stamp: self.holdings_resets,
        });
        self.waitlist_entries += 1;
        if held {
            self.holdings
                .add(user, line.sku, line.qty, since)
                .expect("room checked above");
        }
        Some(Outcome::WaitlistJoined {
            sku: line.sku,
            position: place.position,
            units_ahead: place.units_ahead,
        })
    }

    /// Add an open order whose units are already reserved (and held, where they count).
    #[allow(clippy::too_many_arguments)]
    fn create_order(
        &mut self,
        client: ClientId,
        request: RequestId,
        user: UserId,
        lines: OrderLines,
        total: Money,
        held_lines: u16,
        holdings_stamp: u32,
    ) -> OrderId {
        self.orders.push(Order {
            id: OrderId(0), // the book assigns it
            client,
            request,
            user,
            total,
            created_ns: self.clock_ns,
            deadline_ns: self.clock_ns + self.config.payment_window_ns,
            paid_ns: 0,
            payment_ref: 0,
            closed_ns: 0,
            holdings_stamp,
            lines,
            held_lines,
            state: OrderState::PendingPayment,
            reconciled: false,
        })
    }

    /// The rejection for a command on an order the book does not hold open.
    fn not_open(&self, id: OrderId) -> Option<Code> {
        match self.orders.get(id) {
            Some(order) => closed_order_code(order.state),
            None => Some(match self.retired.get(id) {
                Some(r) => closed_order_code(r.state).expect("a retired order is closed"),
                None => self.missing_order_code(id),
            }),
        }
    }

    fn confirm_payment(
        &mut self,
        id: OrderId,
        amount: Money,
        payment_ref: u64,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if let Some(code) = self.not_open(id) {
            return Outcome::rejected(code, id.0);
        }
        let total = self.orders.get(id).expect("open").total;
        if amount != total {
            return Outcome::rejected(Code::WrongAmount, total);
        }
        self.settle(id, payment_ref, events);
        Outcome::PaymentConfirmed { order: id }
    }

    /// Pending → paid: reserved units become sold; the order closes (and retires later).
    fn settle(&mut self, id: OrderId, payment_ref: u64, events: &mut Vec<Event>) {
        let order = self.orders.get_mut(id).expect("settling an unknown order");
        debug_assert_eq!(order.state, OrderState::PendingPayment);
        order.state = OrderState::Paid;
        order.paid_ns = self.clock_ns;
        order.closed_ns = self.clock_ns;
        order.payment_ref = payment_ref;
        self.orders.closed(id);
        for i in 0..self.orders.get(id).expect("held").lines.as_slice().len() {
            let (line, index) = self.line(id, i);
            self.catalog.at_mut(index).sell(Units::from(line.qty));
            // Fewer units can come back now; the waitlist head may have become hopeless.
            self.serve_waitlist(index, events);
        }
    }

    /// FailPayment and CancelOrder: an open order closes and its units go back.
    fn close_order(&mut self, id: OrderId, state: OrderState, events: &mut Vec<Event>) -> Outcome {
        if let Some(code) = self.not_open(id) {
            return Outcome::rejected(code, id.0);
        }
        self.close_unpaid(id, state, events);
        match state {
            OrderState::Cancelled => Outcome::OrderCancelled { order: id },
            _ => Outcome::PaymentFailed { order: id },
        }
    }

    /// Pending → `state`: release the reservation and the holdings, hand units to waitlists.
    fn close_unpaid(&mut self, id: OrderId, state: OrderState, events: &mut Vec<Event>) {
        let order = self.orders.get_mut(id).expect("closing an unknown order");
        debug_assert_eq!(order.state, OrderState::PendingPayment);
        order.state = state;
        order.closed_ns = self.clock_ns;
        self.orders.closed(id);
        let order = self.orders.get(id).expect("held");
        let (user, lines) = (order.user, order.lines.as_slice().len());
        for i in 0..lines {
            let (line, index) = self.line(id, i);
            let qty = Units::from(line.qty);
            let counts = self.line_counts(
                self.orders.get(id).expect("held"),
                i,
                self.catalog.at(index),
            );
            let sku = self.catalog.at_mut(index);
            sku.release(qty);
            sku.releases.record(self.clock_ns, qty);
            if counts {
                let (since, ended) = (sku.holdings_since, sku.window_ended(self.clock_ns));
                let removed = self.holdings.remove(user, line.sku, line.qty, since);
                assert!(removed || ended, "releasing units that were never held");
            }
            self.serve_waitlist(index, events);
        }
    }

    /// Line `i` of an order and its SKU's index, copied out so the order need not stay
    /// borrowed (no clone of the line list on the payment and release paths).
    fn line(&self, id: OrderId, i: usize) -> (OrderLine, SkuIndex) {
        let line = self.orders.get(id).expect("known order").lines.as_slice()[i];
        let index = self
            .catalog
            .find(line.sku)
            .expect("order names a known SKU");
        (line, index)
    }

    /// Hand available units to the head of the SKU's waitlist while it fits; drop a head that
    /// wants more than could ever come back from reservations (only a restock could serve it,
    /// and it should not block everyone behind it).
    fn serve_waitlist(&mut self, index: SkuIndex, events: &mut Vec<Event>) {
        loop {
            let sku = self.catalog.at(index);
            let Some(&head) = sku.waitlist.front() else {
                break;
            };
            let qty = Units::from(head.qty);
            let sku_id = sku.id;
            let fits = qty <= sku.available;
            // Dropped if no release can ever satisfy it, or if (the price having risen since it
            // joined) its total overflows: either way it must not block those behind it.
            let total = sku.price.checked_mul(qty);
            let hopeless = qty > sku.available + sku.reserved || (fits && total.is_none());
            if hopeless {
                let entry = self.catalog.at_mut(index).waitlist.pop_front();
                self.drop_wait_entry(index, entry.expect("head"), events);
                continue;
            }
            let (true, Some(total)) = (fits, total) else {
                break;
            };
            if self.orders.is_full() {
                break; // stays queued until an order retires
            }
            let sku = self.catalog.at_mut(index);
            sku.waitlist.pop_front();
            self.waitlist_entries -= 1;
            sku.reserve(qty);
            // The units were counted in holdings when the buyer joined.
            let line = OrderLine {
                sku: sku_id,
                qty: head.qty,
            };
            let order = self.create_order(
                head.client,
                head.request,
                head.user,
                OrderLines::One(line),
                total,
                u16::from(head.held),
                head.holdings_stamp,
            );
            events.push(Event::WaitlistOrderCreated {
                client: head.client,
                request: head.request,
                user: head.user,
                sku: sku_id,
                qty: head.qty,
                order,
                total,
                deadline_ns: self.clock_ns + self.config.payment_window_ns,
            });
        }
        debug_assert!(self.catalog.at(index).is_balanced());
    }

    fn drop_wait_entry(
        &mut self,
        index: SkuIndex,
        entry: crate::waitlist::WaitEntry,
        events: &mut Vec<Event>,
    ) {
        self.waitlist_entries -= 1;
        let sku = self.catalog.at(index);
        let (sku_id, since) = (sku.id, sku.holdings_since);
        if entry.held && entry.holdings_stamp >= since {
            let removed = self.holdings.remove(entry.user, sku_id, entry.qty, since);
            assert!(
                removed || sku.window_ended(self.clock_ns),
                "a waitlist entry's units were never held"
            );
        }
        events.push(Event::WaitlistDropped {
            client: entry.client,
            request: entry.request,
            user: entry.user,
            sku: sku_id,
        });
    }

    fn statement_batch(
        &mut self,
        entries: &[StatementEntry],
        closes_through_ns: Option<TimestampNs>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if entries.len() > STATEMENT_ENTRIES_MAX
            || (entries.is_empty() && closes_through_ns.is_none())
        {
            return Outcome::rejected(Code::BadStatement, entries.len() as u64);
        }
        let events_before = events.len();
        let mut matched = 0;
        for entry in entries {
            match self.reconcile_entry(entry) {
                None => matched += 1,
                Some(kind) => {
                    if kind == DiscrepancyKind::SettledFromStatement {
                        self.settle(entry.order, entry.payment_ref, events);
                        self.orders
                            .get_mut(entry.order)
                            .expect("settled")
                            .reconciled = true;
                    }
                    let expected = match self.orders.get(entry.order) {
                        Some(o) => o.total,
                        None => self.retired.get(entry.order).map_or(0, |r| r.total),
                    };
                    events.push(Event::Discrepancy(Discrepancy {
                        kind,
                        order: entry.order,
                        payment_ref: entry.payment_ref,
                        expected,
                        captured: match entry.status {
                            StatementStatus::Captured => entry.amount,
                            StatementStatus::Declined => 0,
                        },
                    }));
                }
            }
        }
        if let Some(through_ns) = closes_through_ns {
            self.close_statement(through_ns, events);
        }
        let discrepancies = events[events_before..]
            .iter()
            .filter(|e| matches!(e, Event::Discrepancy(_)))
            .count() as u32;
        Outcome::StatementApplied {
            entries: entries.len() as u32,
            matched,
            discrepancies,
        }
    }

    /// The statement covers every payment up to `through_ns`: each paid order not seen in one
    /// is missing from it. Paid orders lie in payment order across the retired ring (older)
    /// and the book's closed orders (newer).
    fn close_statement(&mut self, through_ns: TimestampNs, events: &mut Vec<Event>) {
        let missing = |id: OrderId, payment_ref: u64, total: Money| {
            Event::Discrepancy(Discrepancy {
                kind: DiscrepancyKind::MissingFromStatement,
                order: id,
                payment_ref,
                expected: total,
                captured: 0,
            })
        };
        let walked_all = self.retired.close_through(through_ns, |r| {
            events.push(missing(r.id, r.payment_ref, r.total))
        });
        if !walked_all {
            return;
        }
        self.orders.visit_closed_mut(|order| {
            if order.state != OrderState::Paid {
                return true;
            }
            if order.paid_ns > through_ns {
                return false;
            }
            if !order.reconciled {
                order.reconciled = true;
                events.push(missing(order.id, order.payment_ref, order.total));
            }
            true
        });
    }

    /// Match one statement line against the order it names. `None`: it agrees. Marks paid
    /// orders as seen.
    fn reconcile_entry(&mut self, entry: &StatementEntry) -> Option<DiscrepancyKind> {
        if let Some(order) = self.orders.get_mut(entry.order) {
            if order.is_open() {
                return match entry.status {
                    StatementStatus::Captured if entry.amount == order.total => {
                        Some(DiscrepancyKind::SettledFromStatement)
                    }
                    StatementStatus::Captured => Some(DiscrepancyKind::AmountMismatch),
                    StatementStatus::Declined => None,
                };
            }
            return reconcile_closed(entry, order.state, order.total, &mut order.reconciled);
        }
        if let Some(r) = self.retired.get_mut(entry.order) {
            return reconcile_closed(entry, r.state, r.total, &mut r.reconciled);
        }
        if self.orders.was_assigned(entry.order) {
            return Some(DiscrepancyKind::BeyondHistory);
        }
        match entry.status {
            StatementStatus::Captured => Some(DiscrepancyKind::RefundDue),
            StatementStatus::Declined => None,
        }
    }
}

/// A statement line against a closed order (`state` is not `PendingPayment`): `None` if it
/// agrees. A paid order is marked seen the first time.
fn reconcile_closed(
    entry: &StatementEntry,
    state: OrderState,
    total: Money,
    reconciled: &mut bool,
) -> Option<DiscrepancyKind> {
    debug_assert_ne!(state, OrderState::PendingPayment);
    match (entry.status, state) {
        (StatementStatus::Captured, OrderState::Paid) => {
            if *reconciled {
                return Some(DiscrepancyKind::RefundDue); // captured twice
            }
            *reconciled = true;
            (entry.amount != total).then_some(DiscrepancyKind::AmountMismatch)
        }
        (StatementStatus::Captured, _) => Some(DiscrepancyKind::RefundDue),
        (StatementStatus::Declined, OrderState::Paid) if !*reconciled => {
            *reconciled = true;
            Some(DiscrepancyKind::MissingFromStatement)
        }
        (StatementStatus::Declined, _) => None,
    }
}

/// The rejection for acting on an order that is no longer open.
fn closed_order_code(state: OrderState) -> Option<Code> {
    match state {
        OrderState::PendingPayment => None,
        OrderState::Paid => Some(Code::AlreadyPaid),
        OrderState::Cancelled => Some(Code::OrderAlreadyCancelled),
        OrderState::PaymentFailed => Some(Code::OrderAlreadyFailed),
        OrderState::Expired => Some(Code::OrderAlreadyExpired),
    }
}

fn rejected_answer(code: Code, subject: u64) -> Answer {
    debug_assert!(code.is_rejection());
    Answer::Rejected { code, subject }
}

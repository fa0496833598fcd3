//! The engine: one deterministic, single-threaded state machine. `apply` takes the time and
//! one request and writes the outcome and any events into a buffer the caller owns. It reads
//! no clock, does no I/O, allocates only to grow its own tables, and uses only deterministic
//! hashers, so the same requests give the same outputs, byte for byte, on any machine.
//!
//! Rule order for every command:
//! 1. the clock moves to `max(clock, now)`, and every order whose deadline has come
//!    (`clock >= deadline`) expires, oldest first (events);
//! 2. a request already in the idempotency window gets its original outcome, nothing else;
//! 3. otherwise the command runs, and its outcome is remembered.
//!
//! The rules themselves are written out in `docs/ENGINE.md`.

use std::collections::VecDeque;

use crate::code::Code;
use crate::command::{Command, OrderLine, Query, Request, SkuSpec, StatementEntry};
use crate::command::{SaleWindow, StatementStatus};
use crate::config::{EngineConfig, ORDER_LINES_MAX, STATEMENT_ENTRIES_MAX};
use crate::holdings::Holdings;
use crate::idempotency::{IdempotencyWindow, Seen};
use crate::ids::{ClientId, Money, OrderId, RequestId, SkuId, TimestampNs, Units, UserId};
use crate::order::{Order, OrderBook, OrderLines, OrderState};
use crate::outcome::{Answer, Discrepancy, DiscrepancyKind, Event, OrderView, Outcome, Output};
use crate::outcome::{StockView, WaitlistView};
use crate::release_history::ReleaseHistory;
use crate::rolling_hash::RollingHash;
use crate::sku::{Catalog, Sku, SkuIndex};
use crate::waitlist::Waitlist;

pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) clock_ns: TimestampNs,
    pub(crate) catalog: Catalog,
    pub(crate) orders: OrderBook,
    pub(crate) holdings: Holdings,
    pub(crate) idempotency: IdempotencyWindow,
    /// Pending orders by deadline. Deadlines are `clock + payment_window` with a clock that
    /// never goes back, so arrival order is deadline order and a FIFO suffices. Entries for
    /// orders that closed early are skipped when they reach the front.
    pub(crate) deadlines: VecDeque<OrderId>,
    /// Paid orders not yet seen in a statement, in payment order (so in `paid_ns` order).
    pub(crate) unreconciled_paid: VecDeque<OrderId>,
    pub(crate) hash: RollingHash,
    pub(crate) commands_applied: u64,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            clock_ns: 0,
            catalog: Catalog::default(),
            orders: OrderBook::default(),
            holdings: Holdings::default(),
            idempotency: IdempotencyWindow::new(config.idempotency_window, config.clients_max),
            deadlines: VecDeque::new(),
            unreconciled_paid: VecDeque::new(),
            hash: RollingHash::default(),
            commands_applied: 0,
        }
    }

    /// Size the order book, the deadline queue and the holdings table for `orders` more
    /// orders and fault their memory in now, so the sale does not pay page faults on the hot
    /// path. Changes no state: replicas may preallocate differently.
    pub fn preallocate(&mut self, orders: u64) {
        let orders = usize::try_from(orders.min(self.config.orders_max)).expect("fits memory");
        self.orders.preallocate(orders);
        let mut deadlines: Vec<OrderId> = std::mem::take(&mut self.deadlines).into();
        crate::memory::reserve_touched(&mut deadlines, orders, OrderId(0));
        self.deadlines = deadlines.into();
        self.holdings.preallocate(self.holdings.len() + orders);
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

    pub fn orders(&self) -> &OrderBook {
        &self.orders
    }

    pub fn holdings(&self) -> &Holdings {
        &self.holdings
    }

    /// Apply one request stamped `now_ns`; the outcome and events land in `out`.
    pub fn apply(&mut self, now_ns: TimestampNs, request: &Request, out: &mut Output) {
        out.events.clear();
        self.advance_clock(now_ns, &mut out.events);
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
    /// buyer's per-SKU holdings, the client's idempotency slot). A stage that has the next request in hand calls this before
    /// applying the current one, so the cache miss overlaps that work. Changes nothing.
    #[inline]
    pub fn prefetch(&self, request: &Request) {
        self.idempotency.prefetch((request.client, request.request));
        if let Command::PlaceOrder { user, lines, .. } = &request.command {
            if let Some(line) = lines.first() {
                self.holdings.prefetch(*user, line.sku);
            }
        }
    }

    /// Answer a query from the current state. Changes nothing.
    pub fn query(&self, query: &Query) -> Answer {
        match *query {
            Query::Order { order } => match self.orders.get(order) {
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
                    lines: o.lines.as_slice().to_vec(),
                }),
                None => rejected_answer(Code::UnknownOrder, order.0),
            },
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

    /// Check every SKU's stock invariant and the derived counters against the orders. O(n):
    /// for tests and after a restore, not for the hot path.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut reserved = vec![0u64; self.catalog.len()];
        let mut sold = vec![0u64; self.catalog.len()];
        let mut held = std::collections::BTreeMap::<(UserId, SkuId), u64>::new();
        for (id, order) in self.orders.iter() {
            for line in order.lines.as_slice() {
                let Some(index) = self.catalog.find(line.sku) else {
                    return Err(format!("order {id} names unknown SKU {}", line.sku));
                };
                let qty = Units::from(line.qty);
                match order.state {
                    OrderState::PendingPayment => reserved[index as usize] += qty,
                    OrderState::Paid => sold[index as usize] += qty,
                    _ => continue,
                }
                *held.entry((order.user, line.sku)).or_default() += qty;
            }
        }
        for (i, sku) in self.catalog.iter().enumerate() {
            if !sku.is_balanced() {
                return Err(format!("SKU {} is not balanced", sku.id));
            }
            if sku.reserved != reserved[i] || sku.sold != sold[i] {
                return Err(format!(
                    "SKU {}: counters reserved {} sold {} but orders say {} and {}",
                    sku.id, sku.reserved, sku.sold, reserved[i], sold[i]
                ));
            }
            for entry in sku.waitlist.entries() {
                *held.entry((entry.user, sku.id)).or_default() += Units::from(entry.qty);
            }
        }
        let recorded: Vec<_> = self
            .holdings
            .to_sorted_vec()
            .into_iter()
            .map(|(u, s, q)| ((u, s), Units::from(q)))
            .collect();
        let derived: Vec<_> = held.into_iter().filter(|&(_, q)| q > 0).collect();
        if recorded != derived {
            return Err("per-user holdings disagree with orders and waitlists".into());
        }
        Ok(())
    }

    fn advance_clock(&mut self, now_ns: TimestampNs, events: &mut Vec<Event>) {
        self.clock_ns = self.clock_ns.max(now_ns);
        while let Some(&id) = self.deadlines.front() {
            let order = self.orders.get(id).expect("deadline for an unknown order");
            if order.state != OrderState::PendingPayment {
                self.deadlines.pop_front();
                continue;
            }
            if order.deadline_ns > self.clock_ns {
                break;
            }
            self.deadlines.pop_front();
            let (client, user) = (order.client, order.user);
            self.close_unpaid(id, OrderState::Expired, events);
            events.push(Event::OrderExpired {
                order: id,
                client,
                user,
            });
        }
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
                let sku = self.catalog.at_mut(index);
                let committed = sku.reserved + sku.sold;
                if spec.stock < committed {
                    return Outcome::rejected(Code::StockBelowCommitted, spec.sku.0);
                }
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
            self.drop_wait_entry(sku_id, entry, events);
            dropped += 1;
        }
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
                let held = u64::from(self.holdings.get(user, line.sku));
                if held + u64::from(line.qty) > u64::from(sku.per_user_limit) {
                    return Outcome::rejected(Code::PerUserLimit, line.sku.0);
                }
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
        if self.orders.len() >= self.config.orders_max {
            return Outcome::rejected(Code::OrderCapacityFull, 0);
        }
        let deadline_ns = self.clock_ns + self.config.payment_window_ns;
        for (line, &index) in lines.iter().zip(&indexes) {
            let sku = self.catalog.at_mut(index);
            sku.reserve(Units::from(line.qty));
            debug_assert!(sku.is_balanced());
            self.holdings.add(user, line.sku, line.qty);
        }
        let order = self.create_order(client, request, user, OrderLines::new(lines), total);
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
        let place = self
            .catalog
            .at_mut(index)
            .waitlist
            .push(client, request, user, line.qty);
        self.holdings.add(user, line.sku, line.qty);
        Some(Outcome::WaitlistJoined {
            sku: line.sku,
            position: place.position,
            units_ahead: place.units_ahead,
        })
    }

    /// Append an order whose units are already reserved, and schedule its deadline.
    fn create_order(
        &mut self,
        client: ClientId,
        request: RequestId,
        user: UserId,
        lines: OrderLines,
        total: Money,
    ) -> OrderId {
        let id = self.orders.push(Order {
            client,
            request,
            user,
            total,
            created_ns: self.clock_ns,
            deadline_ns: self.clock_ns + self.config.payment_window_ns,
            paid_ns: 0,
            payment_ref: 0,
            lines,
            state: OrderState::PendingPayment,
            reconciled: false,
        });
        self.deadlines.push_back(id);
        id
    }

    fn confirm_payment(
        &mut self,
        id: OrderId,
        amount: Money,
        payment_ref: u64,
        events: &mut Vec<Event>,
    ) -> Outcome {
        let Some(order) = self.orders.get(id) else {
            return Outcome::rejected(Code::UnknownOrder, id.0);
        };
        if let Some(code) = closed_order_code(order.state) {
            return Outcome::rejected(code, id.0);
        }
        if amount != order.total {
            return Outcome::rejected(Code::WrongAmount, order.total);
        }
        self.settle(id, payment_ref, events);
        Outcome::PaymentConfirmed { order: id }
    }

    /// Pending → paid: reserved units become sold.
    fn settle(&mut self, id: OrderId, payment_ref: u64, events: &mut Vec<Event>) {
        let order = self.orders.get_mut(id).expect("settling an unknown order");
        debug_assert_eq!(order.state, OrderState::PendingPayment);
        order.state = OrderState::Paid;
        order.paid_ns = self.clock_ns;
        order.payment_ref = payment_ref;
        for i in 0..order.lines.as_slice().len() {
            let (line, index) = self.line(id, i);
            self.catalog.at_mut(index).sell(Units::from(line.qty));
            // Fewer units can come back now; the waitlist head may have become hopeless.
            self.serve_waitlist(index, events);
        }
        self.unreconciled_paid.push_back(id);
    }

    /// FailPayment and CancelOrder: an open order closes and its units go back.
    fn close_order(&mut self, id: OrderId, state: OrderState, events: &mut Vec<Event>) -> Outcome {
        let Some(order) = self.orders.get(id) else {
            return Outcome::rejected(Code::UnknownOrder, id.0);
        };
        if let Some(code) = closed_order_code(order.state) {
            return Outcome::rejected(code, id.0);
        }
        self.close_unpaid(id, state, events);
        match state {
            OrderState::Cancelled => Outcome::OrderCancelled { order: id },
            _ => Outcome::PaymentFailed { order: id },
        }
    }

    /// Pending → `state`: release the reservation, hand units to waitlists.
    fn close_unpaid(&mut self, id: OrderId, state: OrderState, events: &mut Vec<Event>) {
        let order = self.orders.get_mut(id).expect("closing an unknown order");
        debug_assert_eq!(order.state, OrderState::PendingPayment);
        order.state = state;
        let user = order.user;
        for i in 0..order.lines.as_slice().len() {
            let (line, index) = self.line(id, i);
            let qty = Units::from(line.qty);
            let sku = self.catalog.at_mut(index);
            sku.release(qty);
            sku.releases.record(self.clock_ns, qty);
            self.holdings.remove(user, line.sku, line.qty);
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
                self.drop_wait_entry(sku_id, entry.expect("head"), events);
                continue;
            }
            let (true, Some(total)) = (fits, total) else {
                break;
            };
            if self.orders.len() >= self.config.orders_max {
                break; // stays queued; capacity may come back with a restart
            }
            let sku = self.catalog.at_mut(index);
            sku.waitlist.pop_front();
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
        sku: SkuId,
        entry: crate::waitlist::WaitEntry,
        events: &mut Vec<Event>,
    ) {
        self.holdings.remove(entry.user, sku, entry.qty);
        events.push(Event::WaitlistDropped {
            client: entry.client,
            request: entry.request,
            user: entry.user,
            sku,
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
                    let expected = self.orders.get(entry.order).map_or(0, |o| o.total);
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
            while let Some(&id) = self.unreconciled_paid.front() {
                let order = self.orders.get_mut(id).expect("paid order exists");
                if order.paid_ns > through_ns {
                    break;
                }
                self.unreconciled_paid.pop_front();
                if !order.reconciled {
                    order.reconciled = true;
                    events.push(Event::Discrepancy(Discrepancy {
                        kind: DiscrepancyKind::MissingFromStatement,
                        order: id,
                        payment_ref: order.payment_ref,
                        expected: order.total,
                        captured: 0,
                    }));
                }
            }
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

    /// Match one statement line against the order it names. `None`: it agrees. Marks paid
    /// orders as seen.
    fn reconcile_entry(&mut self, entry: &StatementEntry) -> Option<DiscrepancyKind> {
        let Some(order) = self.orders.get_mut(entry.order) else {
            return match entry.status {
                StatementStatus::Captured => Some(DiscrepancyKind::RefundDue),
                StatementStatus::Declined => None,
            };
        };
        match (entry.status, order.state) {
            (StatementStatus::Captured, OrderState::Paid) => {
                if order.reconciled {
                    return Some(DiscrepancyKind::RefundDue); // captured twice
                }
                order.reconciled = true;
                (entry.amount != order.total).then_some(DiscrepancyKind::AmountMismatch)
            }
            (StatementStatus::Captured, OrderState::PendingPayment) => {
                if entry.amount == order.total {
                    Some(DiscrepancyKind::SettledFromStatement)
                } else {
                    Some(DiscrepancyKind::AmountMismatch)
                }
            }
            (StatementStatus::Captured, _) => Some(DiscrepancyKind::RefundDue),
            (StatementStatus::Declined, OrderState::Paid) if !order.reconciled => {
                order.reconciled = true;
                Some(DiscrepancyKind::MissingFromStatement)
            }
            (StatementStatus::Declined, _) => None,
        }
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

//! The engine's snapshot archived straight from its tables into a writer: the same bytes
//! as `EngineSnapshot`'s archive (so it loads the same way), without building the
//! `EngineSnapshot` first or holding the archive in memory. A snapshotter that built both
//! held two more copies of the state, each growing with it; this holds a few resolvers.

use crate::counted::Counted;
use std::io;

use rkyv::rancor::{Fallible, Source};
use rkyv::ser::writer::IoWriter;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{munge::munge, Archive, Place, Resolver, Serialize};

use crate::config::EngineConfig;
use crate::holdings::Holding;
use crate::idempotency::{ArchivedSession, Remembered, Tenant};
use crate::order::Order;
use crate::retired::RetiredOrder;
use crate::sku::Sku;
use crate::snapshot::{ArchivedEngineSnapshot, SNAPSHOT_FORMAT_VERSION};
use crate::state_machine::Engine;

impl Engine {
    /// Write this engine's snapshot archive into `out`, which gets every byte once, in
    /// order; `out` back. O(state): take it on a replica (the snapshotter's engine).
    pub fn write_snapshot_archive<W: io::Write>(&self, out: W) -> io::Result<W> {
        let view = EngineArchive {
            engine: self,
            tenants: self.idempotency.tenants_by_client(),
        };
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&view, IoWriter::new(out))
            .map(IoWriter::into_inner)
            .map_err(io::Error::other)
    }
}

struct EngineArchive<'a> {
    engine: &'a Engine,
    /// The idempotency tables in use, in the order the snapshot lists them.
    tenants: Vec<(u32, Tenant)>,
}

impl EngineArchive<'_> {
    fn sessions(&self) -> impl ExactSizeIterator<Item = SessionArchive<'_>> + Clone {
        self.tenants.iter().map(|&(table, tenant)| SessionArchive {
            engine: self.engine,
            table,
            tenant,
            remembered_len: self.engine.idempotency.remembered(table, &tenant).count(),
        })
    }

    fn holdings(&self) -> Counted<impl Iterator<Item = (u32, Holding)> + Clone + '_> {
        Counted::new(self.engine.holdings.entries(), self.engine.holdings.len())
    }
}

struct EngineArchiveResolver {
    config: Resolver<EngineConfig>,
    skus: VecResolver,
    open_orders: VecResolver,
    closed_orders: VecResolver,
    retired: VecResolver,
    holdings: VecResolver,
    idempotency: VecResolver,
}

impl Archive for EngineArchive<'_> {
    type Archived = ArchivedEngineSnapshot;
    type Resolver = EngineArchiveResolver;

    fn resolve(&self, r: Self::Resolver, out: Place<Self::Archived>) {
        let e = self.engine;
        munge!(let ArchivedEngineSnapshot {
            format_version,
            config,
            clock_ns,
            hash,
            commands_applied,
            skus,
            next_order_id,
            open_orders,
            closed_orders,
            retired,
            retired_total,
            reconcile_from,
            evicted_unreconciled,
            holdings,
            holdings_cursor,
            holdings_resets,
            idempotency,
            waitlist_entries,
        } = out);
        SNAPSHOT_FORMAT_VERSION.resolve((), format_version);
        e.config.resolve(r.config, config);
        e.clock_ns.resolve((), clock_ns);
        e.hash.value().resolve((), hash);
        e.commands_applied.resolve((), commands_applied);
        ArchivedVec::resolve_from_len(e.catalog.skus().len(), r.skus, skus);
        e.orders.next_id().0.resolve((), next_order_id);
        ArchivedVec::resolve_from_len(e.orders.open_orders().len(), r.open_orders, open_orders);
        ArchivedVec::resolve_from_len(
            e.orders.closed_orders().len(),
            r.closed_orders,
            closed_orders,
        );
        ArchivedVec::resolve_from_len(e.retired.iter().len(), r.retired, retired);
        e.retired.retired_total().resolve((), retired_total);
        e.retired.reconcile_from().resolve((), reconcile_from);
        e.retired
            .evicted_unreconciled
            .resolve((), evicted_unreconciled);
        ArchivedVec::resolve_from_len(e.holdings.len(), r.holdings, holdings);
        e.holdings.cursor().resolve((), holdings_cursor);
        e.holdings_resets.resolve((), holdings_resets);
        ArchivedVec::resolve_from_len(self.tenants.len(), r.idempotency, idempotency);
        e.waitlist_entries.resolve((), waitlist_entries);
    }
}

impl<S> Serialize<S> for EngineArchive<'_>
where
    S: Fallible + Allocator + Writer + ?Sized,
    S::Error: Source,
    EngineConfig: Serialize<S>,
    Sku: Serialize<S>,
    Order: Serialize<S>,
    RetiredOrder: Serialize<S>,
    (u32, Holding): Serialize<S>,
    Remembered: Serialize<S>,
{
    /// Field by field in `EngineSnapshot`'s order, as its derived `Serialize` goes: the same
    /// bytes come out.
    fn serialize(&self, s: &mut S) -> Result<Self::Resolver, S::Error> {
        let e = self.engine;
        Ok(EngineArchiveResolver {
            config: e.config.serialize(s)?,
            skus: ArchivedVec::serialize_from_iter::<Sku, _, _>(e.catalog.skus().iter(), s)?,
            open_orders: ArchivedVec::serialize_from_iter::<Order, _, _>(
                e.orders.open_orders(),
                s,
            )?,
            closed_orders: ArchivedVec::serialize_from_iter::<Order, _, _>(
                e.orders.closed_orders(),
                s,
            )?,
            retired: ArchivedVec::serialize_from_iter::<RetiredOrder, _, _>(e.retired.iter(), s)?,
            holdings: ArchivedVec::serialize_from_iter::<(u32, Holding), _, _>(self.holdings(), s)?,
            idempotency: ArchivedVec::serialize_from_iter::<SessionArchive<'_>, _, _>(
                self.sessions(),
                s,
            )?,
        })
    }
}

/// One client's idempotency table, archived as the `Session` a snapshot lists.
struct SessionArchive<'a> {
    engine: &'a Engine,
    table: u32,
    tenant: Tenant,
    /// How many requests its window remembers (counted once, when the archive is made).
    remembered_len: usize,
}

impl SessionArchive<'_> {
    fn remembered(&self) -> Counted<impl Iterator<Item = &Remembered> + Clone + '_> {
        let items = self.engine.idempotency.remembered(self.table, &self.tenant);
        Counted::new(items, self.remembered_len)
    }
}

struct SessionArchiveResolver {
    client: Resolver<crate::ClientId>,
    highest: Resolver<crate::RequestId>,
    remembered: VecResolver,
}

impl Archive for SessionArchive<'_> {
    type Archived = ArchivedSession;
    type Resolver = SessionArchiveResolver;

    fn resolve(&self, r: Self::Resolver, out: Place<Self::Archived>) {
        munge!(let ArchivedSession { client, highest, last_active, remembered } = out);
        self.tenant.client.resolve(r.client, client);
        self.tenant.highest.resolve(r.highest, highest);
        self.tenant.last_active.resolve((), last_active);
        ArchivedVec::resolve_from_len(self.remembered_len, r.remembered, remembered);
    }
}

impl<S> Serialize<S> for SessionArchive<'_>
where
    S: Fallible + Allocator + Writer + ?Sized,
    S::Error: Source,
    Remembered: Serialize<S>,
{
    fn serialize(&self, s: &mut S) -> Result<Self::Resolver, S::Error> {
        // `Session`'s fields, in its order.
        Ok(SessionArchiveResolver {
            client: self.tenant.client.serialize(s)?,
            highest: self.tenant.highest.serialize(s)?,
            remembered: ArchivedVec::serialize_from_iter::<Remembered, _, _>(self.remembered(), s)?,
        })
    }
}

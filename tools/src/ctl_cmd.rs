//! `surge ctl`: the protocol for people and scripts. One request per invocation (or a whole
//! catalog, pipelined), the answer printed as text or as JSON with the field names of
//! `surge replay --export`. Exit status: 0 accepted, 3 refused (engine or gateway code),
//! 1 could not ask (connection, I/O, bad input file).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use engine::wire::{Operation, Reply, WireAnswer};
use engine::{Answer, ClientId, Command, OrderId, OrderLine, Outcome, Query, RequestId};
use engine::{SkuId, SkuSpec, UserId};
use loadgen::client::Client;
use serde_json::{json, Value};

/// Exit status when the server refused the request.
pub const EXIT_REFUSED: i32 = 3;

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The server's client protocol address.
    #[arg(long, default_value = "127.0.0.1:7600")]
    pub server: String,
    /// Print answers as JSON (one object per line).
    #[arg(long)]
    pub json: bool,
    /// Client id to speak as (default: one made from the clock). Retrying a request with
    /// the same client id and request id returns the original answer.
    #[arg(long)]
    pub client_id: Option<u64>,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(clap::Subcommand)]
pub enum CtlCommand {
    /// Catalog administration.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Place, pay, fail, cancel or look up orders.
    #[command(subcommand)]
    Order(OrderCommand),
    /// One SKU's stock.
    Stock { sku: u64 },
    /// A buyer's place on a SKU's waitlist.
    Waitlist {
        sku: u64,
        #[arg(long)]
        user: u64,
    },
}

#[derive(clap::Subcommand)]
pub enum CatalogCommand {
    /// Upsert every SKU of a CSV file: `sku,price,stock,per_user_limit` (header optional).
    Load { file: PathBuf },
}

#[derive(clap::Subcommand)]
pub enum OrderCommand {
    Place {
        #[arg(long)]
        user: u64,
        #[arg(long)]
        sku: u64,
        #[arg(long, default_value_t = 1)]
        qty: u32,
        /// Default: one made from the clock.
        #[arg(long)]
        request_id: Option<u64>,
        /// Join the SKU's waitlist if it is sold out.
        #[arg(long)]
        waitlist: bool,
    },
    Pay {
        order: u64,
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value_t = 0)]
        payment_ref: u64,
    },
    Fail {
        order: u64,
    },
    Cancel {
        order: u64,
    },
    Get {
        order: u64,
    },
}

/// Microseconds since the epoch: a default id that keeps going up between invocations.
fn clock_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Run the command; the process exit status.
pub fn run(args: CtlArgs) -> anyhow::Result<i32> {
    let client_id = ClientId(args.client_id.unwrap_or_else(clock_id));
    let mut client = Client::connect(args.server.as_str(), client_id)
        .with_context(|| format!("connecting to {}", args.server))?;
    client.set_next_request_id(clock_id());
    let (request, operation) = match args.command {
        CtlCommand::Catalog(CatalogCommand::Load { file }) => {
            return load_catalog(&mut client, &file, args.json);
        }
        CtlCommand::Order(OrderCommand::Place {
            user,
            sku,
            qty,
            request_id,
            waitlist,
        }) => (
            request_id.map(RequestId),
            Operation::Command(Command::PlaceOrder {
                user: UserId(user),
                lines: vec![OrderLine {
                    sku: SkuId(sku),
                    qty,
                }],
                join_waitlist: waitlist,
            }),
        ),
        CtlCommand::Order(OrderCommand::Pay {
            order,
            amount,
            payment_ref,
        }) => (
            None,
            Operation::Command(Command::ConfirmPayment {
                order: OrderId(order),
                amount,
                payment_ref,
            }),
        ),
        CtlCommand::Order(OrderCommand::Fail { order }) => (
            None,
            Operation::Command(Command::FailPayment {
                order: OrderId(order),
            }),
        ),
        CtlCommand::Order(OrderCommand::Cancel { order }) => (
            None,
            Operation::Command(Command::CancelOrder {
                order: OrderId(order),
            }),
        ),
        CtlCommand::Order(OrderCommand::Get { order }) => (
            None,
            Operation::Query(Query::Order {
                order: OrderId(order),
            }),
        ),
        CtlCommand::Stock { sku } => (None, Operation::Query(Query::Stock { sku: SkuId(sku) })),
        CtlCommand::Waitlist { sku, user } => (
            None,
            Operation::Query(Query::WaitlistPosition {
                sku: SkuId(sku),
                user: UserId(user),
            }),
        ),
    };
    let request = request.unwrap_or_else(|| client.next_request_id());
    let answer = client.call_with_id(request, operation)?;
    let refused = matches!(answer.reply, Reply::Rejected { .. });
    let mut value = reply_json(&answer);
    // Who asked (to retry with the same ids); an order's own client id, when the answer
    // is an order, stays as it is.
    if let Some(fields) = value.as_object_mut() {
        fields.entry("client_id").or_insert(json!(client_id.0));
    }
    if args.json {
        println!("{value}");
    } else {
        println!("{}", reply_text(&answer));
    }
    Ok(if refused { EXIT_REFUSED } else { 0 })
}

fn load_catalog(client: &mut Client, file: &PathBuf, as_json: bool) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut specs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("sku")) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parse = |k: usize, name: &str| -> anyhow::Result<u64> {
            fields
                .get(k)
                .with_context(|| format!("line {}: no {name}", i + 1))?
                .parse()
                .with_context(|| format!("line {}: bad {name}", i + 1))
        };
        if fields.len() != 4 {
            bail!("line {}: expected sku,price,stock,per_user_limit", i + 1);
        }
        specs.push(SkuSpec {
            sku: SkuId(parse(0, "sku")?),
            price: parse(1, "price")?,
            stock: parse(2, "stock")?,
            per_user_limit: u32::try_from(parse(3, "per_user_limit")?)
                .with_context(|| format!("line {}: per_user_limit too large", i + 1))?,
            sale_window: None,
        });
    }
    for spec in &specs {
        let request = client.next_request_id();
        client.send(
            request,
            &Operation::Command(Command::UpsertSku(spec.clone())),
        )?;
    }
    client.flush()?;
    let mut refused = 0;
    for _ in &specs {
        let answer = client.recv_answer()?;
        if matches!(answer.reply, Reply::Rejected { .. }) {
            refused += 1;
            if as_json {
                println!("{}", reply_json(&answer));
            } else {
                println!("{}", reply_text(&answer));
            }
        }
    }
    let loaded = specs.len() - refused;
    if as_json {
        println!("{}", json!({"loaded": loaded, "refused": refused}));
    } else {
        println!("loaded {loaded} SKUs, {refused} refused");
    }
    Ok(if refused > 0 { EXIT_REFUSED } else { 0 })
}

/// An answer as JSON: `code`, `name`, `request_id`, `seq`, then the reply's fields under
/// the names `surge replay --export` uses.
pub fn reply_json(answer: &WireAnswer) -> Value {
    let code = answer.reply.code();
    let mut v = json!({
        "code": code.number(), "name": code.name(),
        "request_id": answer.request.0, "seq": answer.seq,
    });
    let fields = match &answer.reply {
        Reply::Outcome(o) => match *o {
            Outcome::OrderPlaced {
                order,
                total,
                deadline_ns,
            } => json!({"order_id": order.0, "total": total, "deadline_ns": deadline_ns}),
            Outcome::WaitlistJoined {
                sku,
                position,
                units_ahead,
            } => json!({"sku": sku.0, "position": position, "units_ahead": units_ahead}),
            Outcome::PaymentConfirmed { order }
            | Outcome::PaymentFailed { order }
            | Outcome::OrderCancelled { order } => json!({"order_id": order.0}),
            Outcome::SkuUpserted { sku } => json!({"sku": sku.0}),
            Outcome::SkuRestocked { sku, available } => {
                json!({"sku": sku.0, "available": available})
            }
            Outcome::SkuDelisted {
                sku,
                waitlist_dropped,
            } => json!({"sku": sku.0, "waitlist_dropped": waitlist_dropped}),
            Outcome::Ticked { now_ns } => json!({"now_ns": now_ns}),
            Outcome::StatementApplied {
                entries,
                matched,
                discrepancies,
            } => json!({"entries": entries, "matched": matched, "discrepancies": discrepancies}),
            Outcome::Rejected { subject, .. } => json!({"subject": subject}),
        },
        Reply::Answer(Answer::Order(o)) => json!({
            "order_id": o.order.0, "client_id": o.client.0, "request_id": o.request.0,
            "user": o.user.0, "state": o.state.name(), "total": o.total,
            "lines": o.lines.iter().map(|l| json!({"sku": l.sku.0, "qty": l.qty})).collect::<Vec<_>>(),
            "created_ns": o.created_ns, "deadline_ns": o.deadline_ns, "payment_ref": o.payment_ref,
        }),
        Reply::Answer(Answer::RetiredOrder(r)) => json!({
            "order_id": r.id.0, "client_id": r.client.0, "request_id": r.request.0,
            "user": r.user.0, "state": r.state.name(), "total": r.total, "retired": true,
            "line_count": r.line_count, "lines": [{"sku": r.first_sku.0, "qty": r.first_qty}],
            "created_ns": r.created_ns, "closed_ns": r.closed_ns, "payment_ref": r.payment_ref,
            "reconciled": r.reconciled,
        }),
        Reply::Answer(Answer::Stock(s)) => json!({
            "sku": s.sku.0, "price": s.price, "stocked": s.stocked, "available": s.available,
            "reserved": s.reserved, "sold": s.sold, "per_user_limit": s.per_user_limit,
            "listed": s.listed, "waitlist_len": s.waitlist_len,
        }),
        Reply::Answer(Answer::WaitlistPosition(w)) => json!({
            "sku": w.sku.0, "user": w.user.0, "qty": w.qty, "position": w.position,
            "units_ahead": w.units_ahead, "eta_ns": w.eta_ns,
        }),
        Reply::Answer(Answer::Rejected { subject, .. }) | Reply::Rejected { subject, .. } => {
            json!({"subject": subject})
        }
    };
    if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), fields) {
        v.extend(fields);
    }
    v
}

/// One line for people: the code name, then the fields.
fn reply_text(answer: &WireAnswer) -> String {
    let v = reply_json(answer);
    let mut line = v["name"].as_str().unwrap_or("?").to_string();
    if let Value::Object(fields) = &v {
        for (k, value) in fields {
            if k != "name" && k != "code" {
                line.push_str(&format!(" {k}={value}"));
            }
        }
    }
    line
}

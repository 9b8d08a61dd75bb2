//! `payledger populate`: a development database of production size, built through the ledger engine.
//!
//! Every row is one the server itself would write: bank notices go through the webhook's intake service and
//! balance operations through the balance service, both into the one ledger engine, whose writer batches
//! them exactly as it batches requests from HTTP. Nothing is inserted behind the engine's back, so
//! `payledger verify` at size measures what an operator's database would give it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use payledger_core::balances::OrderId;
use payledger_core::{BalanceOperation, BankNotice, Currency, Inn, Money, OperationId, OrderKey, ServiceId, UserId};
use uuid::Uuid;

use crate::balances::Balances;
use crate::engine::balances::BalanceOutcome;
use crate::engine::batch::WriteOutcome;
use crate::engine::{EngineError, LedgerEngine};
use crate::store::Store;
use crate::webhook::WebhookMode;
use crate::webhook::intake::Intake;

/// How many commands wait for the writer at once: enough to fill its largest batches back to back, far
/// below the queue's capacity so nothing is refused as overloaded.
pub const DEFAULT_IN_FLIGHT: usize = 4 * crate::engine::MAX_BATCH_COMMANDS;
/// What each user deposits before the transfers: far more than the transfers take, so none is refused.
const USER_DEPOSIT_MINOR: i64 = 10_000_000_000;
/// The largest bank payment built, in kopecks (10,000.00 RUB); amounts vary below it.
const MAX_PAYMENT_MINOR: i64 = 1_000_000;
/// The service whose orders the reservations are for (its revenue account receives the deductions).
const RESERVATION_SERVICE: i64 = 1;
/// The largest transfer (and reservation) built, in kopecks (100.00 RUB).
const MAX_TRANSFER_MINOR: i64 = 10_000;
/// How long a command the engine could not take (overloaded, or rolled back) waits before it is resent.
const RESEND_AFTER: Duration = Duration::from_millis(50);
/// How often one command is resent before the build gives up.
const MAX_RESENDS: u32 = 100;

const PROGRESS_TEMPLATE: &str = "populate {elapsed_precise} [{bar:24}] {pos}/{len} {per_sec} {msg}";

/// What to build.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Bank payments, spread round-robin over the organizations.
    pub payments: u64,
    /// Organizations the payments credit (demo organizations `0..organizations`, as `payledger seed`).
    pub organizations: u32,
    /// Users, each opened by one deposit, who then send and receive the transfers.
    pub users: u32,
    /// Transfers between the users.
    pub transfers: u64,
    /// Reservations of the users' money for orders, after the transfers: a third each deducted, released, and
    /// left open, so the checks of holds and of the history's reserved side have rows to read.
    pub reservations: u64,
    /// Commands waiting for the writer at once.
    pub in_flight: usize,
}

/// What was built, and how long each phase took.
#[derive(Debug, Default)]
pub struct Summary {
    /// Bank payments credited.
    pub payments: u64,
    /// Users' deposits applied.
    pub deposits: u64,
    /// Transfers applied.
    pub transfers: u64,
    /// Reservations made (each then deducted, released or left open).
    pub reservations: u64,
    /// Commands the engine refused (a transfer over the sender's money, say): none are expected.
    pub refused: u64,
    /// Time for each phase, by name.
    pub phases: Vec<(&'static str, Duration)>,
}

/// The kind of command a phase sends.
#[derive(Debug, Clone, Copy)]
enum Step {
    Payment,
    Deposit,
    Transfer,
    Reservation,
}

/// Builds a database of `shape` in `store` and reports what was applied.
pub async fn populate(store: &Store, shape: &Shape) -> anyhow::Result<Summary> {
    if shape.organizations == 0 && shape.payments > 0 {
        bail!("--organizations must be at least 1 to receive payments");
    }
    if shape.users < 2 && shape.transfers > 0 {
        bail!("--users must be at least 2 for transfers");
    }
    if shape.users == 0 && shape.reservations > 0 {
        bail!("--users must be at least 1 for reservations");
    }
    let started = Instant::now();
    let inns: Arc<Vec<Inn>> =
        Arc::new(crate::seed::seed(store, shape.organizations).await?.into_iter().map(|(inn, _)| inn).collect());
    let mut summary = Summary { phases: vec![("organizations", started.elapsed())], ..Summary::default() };

    let (engine, writer) = LedgerEngine::start(store).await.context("starting the ledger engine")?;
    let services = Services {
        intake: Intake::new(
            engine.clone(),
            WebhookMode::Sync,
            crate::statement::ReconcileSettings::default().date_tolerance_days,
        ),
        balances: Balances::new(engine),
        inns,
        users: shape.users,
    };
    let total = shape.payments + u64::from(shape.users) + shape.transfers + shape.reservations;
    let bar = super::progress_bar(total, PROGRESS_TEMPLATE);
    let phases = [
        (Step::Payment, "bank payments", shape.payments),
        (Step::Deposit, "deposits", u64::from(shape.users)),
        (Step::Transfer, "transfers", shape.transfers),
        (Step::Reservation, "reservations", shape.reservations),
    ];
    let mut result = Ok(());
    for (step, name, count) in phases {
        bar.set_message(name);
        let phase_started = Instant::now();
        let outcome = run_phase(&services, step, count, shape.in_flight, &bar).await;
        summary.phases.push((name, phase_started.elapsed()));
        match outcome {
            Ok(refused) => {
                let applied = count - refused;
                summary.refused += refused;
                match step {
                    Step::Payment => summary.payments = applied,
                    Step::Deposit => summary.deposits = applied,
                    Step::Transfer => summary.transfers = applied,
                    Step::Reservation => summary.reservations = applied,
                }
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    bar.finish_and_clear();
    // The writer stops once every handle is gone and its queue is drained.
    drop(services);
    writer.stopped().await;
    result.map(|()| summary)
}

/// The services a command goes through, as the HTTP handlers use them.
struct Services {
    intake: Intake,
    balances: Balances,
    inns: Arc<Vec<Inn>>,
    users: u32,
}

/// Runs `count` commands of one kind with `in_flight` of them waiting at once, in index order; returns how
/// many the engine refused.
async fn run_phase(
    services: &Services,
    step: Step,
    count: u64,
    in_flight: usize,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let (next, refused, bar) = (next.clone(), refused.clone(), bar.clone());
        let (intake, balances, inns, users) =
            (services.intake.clone(), services.balances.clone(), services.inns.clone(), services.users);
        senders.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                let applied = match step {
                    Step::Payment => send_payment(&intake, &inns, index).await?,
                    Step::Deposit => send_balance(&balances, deposit(index)?).await?,
                    Step::Transfer => send_balance(&balances, transfer(index, users)?).await?,
                    Step::Reservation => send_reservation(&balances, index, users).await?,
                };
                if !applied {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                bar.inc(1);
            }
        });
    }
    while let Some(joined) = senders.join_next().await {
        joined.context("a sender task failed")??;
    }
    Ok(refused.load(Ordering::Relaxed))
}

/// The `index`-th bank payment: a fresh operation id, to organization `index % organizations`.
fn payment(inns: &[Inn], index: u64) -> anyhow::Result<BankNotice> {
    let organization = usize::try_from(index % inns.len() as u64)?;
    Ok(BankNotice {
        operation_id: OperationId(Uuid::new_v4()),
        amount: Money::from_minor(varied(index, MAX_PAYMENT_MINOR), Currency::RUB),
        payer_inn: inns[organization].clone(),
        document_number: format!("PL-{index}"),
        document_date: time::macros::datetime!(2026-12-01 00:00 UTC),
    })
}

/// The `index`-th user's opening deposit.
fn deposit(index: u64) -> anyhow::Result<BalanceOperation> {
    Ok(BalanceOperation::Deposit { user: user(index)?, amount: Money::from_minor(USER_DEPOSIT_MINOR, Currency::RUB) })
}

/// The `index`-th transfer: every user sends in turn, each time to another of the others.
fn transfer(index: u64, users: u32) -> anyhow::Result<BalanceOperation> {
    let users = u64::from(users);
    let sender = index % users;
    let recipient = (sender + 1 + (index / users) % (users - 1)) % users;
    Ok(BalanceOperation::Transfer {
        sender: user(sender)?,
        recipient: user(recipient)?,
        amount: Money::from_minor(varied(index, MAX_TRANSFER_MINOR), Currency::RUB),
    })
}

/// The `index`-th reservation's order: users in turn, one service, order ids counting up.
fn order(index: u64, users: u32) -> anyhow::Result<OrderKey> {
    Ok(OrderKey {
        user: user(index % u64::from(users))?,
        service: ServiceId::new(RESERVATION_SERVICE)?,
        order: OrderId::new(i64::try_from(index + 1)?)?,
    })
}

/// Reserves the `index`-th order's money, then deducts it (index % 3 == 0), releases it (1) or leaves it held
/// (2). Returns whether the reservation was made; a deduction or release the engine refused is an error, since
/// it follows its own reservation.
async fn send_reservation(balances: &Balances, index: u64, users: u32) -> anyhow::Result<bool> {
    let key = order(index, users)?;
    let amount = Money::from_minor(varied(index, MAX_TRANSFER_MINOR), Currency::RUB);
    if !send_balance(balances, BalanceOperation::Reserve { key, amount }).await? {
        return Ok(false);
    }
    let settle = match index % 3 {
        0 => BalanceOperation::Deduct { key, amount },
        1 => BalanceOperation::Release { key, amount: Some(amount) },
        _ => return Ok(true),
    };
    if !send_balance(balances, settle.clone()).await? {
        bail!("{settle:?} was refused after its reservation");
    }
    Ok(true)
}

fn user(index: u64) -> anyhow::Result<UserId> {
    Ok(UserId::new(i64::try_from(index + 1)?)?)
}

/// An amount from 1 to `max` minor units that differs from one index to the next.
fn varied(index: u64, max: i64) -> i64 {
    // A prime stride walks the whole range before repeating.
    let stride = (index.wrapping_mul(7_919) % max.unsigned_abs()) as i64;
    1 + stride
}

/// Whether an engine error means the command was not applied and may simply be sent again.
fn resendable(error: EngineError) -> bool {
    match error {
        EngineError::Overloaded | EngineError::Unavailable => true,
        EngineError::Unconfirmed | EngineError::Stopped => false,
    }
}

/// Sends one bank payment, resending it (by its operation id, so it is credited once) while the engine
/// cannot take it. Returns whether it was credited.
async fn send_payment(intake: &Intake, inns: &[Inn], index: u64) -> anyhow::Result<bool> {
    let notice = payment(inns, index)?;
    for _ in 0..MAX_RESENDS {
        match intake.receive(notice.clone(), bytes::Bytes::new()).await {
            Ok(WriteOutcome::NoticeApplied | WriteOutcome::NoticeDuplicate) => return Ok(true),
            Ok(other) => bail!("bank payment {index} was not credited: {other:?}"),
            Err(error) if resendable(error) => tokio::time::sleep(RESEND_AFTER).await,
            Err(error) => bail!("bank payment {index}: {error}"),
        }
    }
    bail!("bank payment {index}: the engine did not take it after {MAX_RESENDS} attempts")
}

/// Applies one balance operation (without an idempotency key: a rolled-back command is simply sent again).
/// Returns whether it was applied rather than refused.
async fn send_balance(balances: &Balances, operation: BalanceOperation) -> anyhow::Result<bool> {
    for _ in 0..MAX_RESENDS {
        match balances.apply(operation.clone(), None, None).await {
            Ok(BalanceOutcome::Executed { result, .. }) => return Ok(result.is_ok()),
            Ok(other) => bail!("{operation:?} was not applied: {other:?}"),
            Err(error) if resendable(error) => tokio::time::sleep(RESEND_AFTER).await,
            Err(error) => bail!("{operation:?}: {error}"),
        }
    }
    bail!("{operation:?}: the engine did not take it after {MAX_RESENDS} attempts")
}

//! The outbox: the events a command's decision reports, derived from the rows it added to the batch's plan, so
//! they are written in the same transaction as the change (no event without its change, no change without its
//! event). Pure: `decide` calls [`EventMarks::of`] before each command and [`report`] after it.

use payledger_core::balances::ActivityKind;

use super::batch::{WriteCommand, WriteOutcome};
use super::payouts::PayoutStates;
use crate::events::{EventType, payloads};
use crate::store::batch::{NewEvent, Plan};

/// How many rows of each kind the plan held before a command was decided.
#[derive(Debug, Clone, Copy)]
pub(super) struct EventMarks {
    activity: usize,
    payout_events: usize,
    new_discrepancies: usize,
    statement_payments: usize,
}

impl EventMarks {
    /// The plan's rows so far.
    pub(super) fn of(plan: &Plan) -> EventMarks {
        EventMarks {
            activity: plan.activity.len(),
            payout_events: plan.payout_events.len(),
            new_discrepancies: plan.new_discrepancies.len(),
            statement_payments: plan.statement_payments.len(),
        }
    }
}

/// The balance event a user's history line reports; the payout lines are reported by the payout's events.
fn balance_event(kind: ActivityKind) -> Option<EventType> {
    match kind {
        ActivityKind::Deposit => Some(EventType::BalanceDeposited),
        ActivityKind::Reservation => Some(EventType::BalanceReserved),
        ActivityKind::RevenueRecognition => Some(EventType::BalanceRevenueRecognized),
        ActivityKind::Release => Some(EventType::BalanceReleased),
        ActivityKind::Transfer => Some(EventType::BalanceTransferred),
        ActivityKind::Withdrawal => Some(EventType::BalanceWithdrawn),
        ActivityKind::PayoutHold | ActivityKind::PayoutRelease | ActivityKind::Payout | ActivityKind::PayoutReturn => {
            None
        }
    }
}

/// Adds to the plan the events of what one command changed since `marks` (a credited notice reports itself:
/// `batch::credit`).
pub(super) fn report(
    command: &WriteCommand,
    outcome: &WriteOutcome,
    marks: EventMarks,
    payouts: &PayoutStates,
    plan: &mut Plan,
) {
    let wanted = &plan.wanted_events;
    if !wanted.any() {
        return;
    }
    // Each event's data is built only if some endpoint wants its type.
    let mut events = Vec::new();
    let mut add = |kind: EventType, data: &dyn Fn() -> String| {
        if wanted.wants(kind.as_str()) {
            events.push(NewEvent::new(kind.as_str(), data()));
        }
    };
    match (command, outcome) {
        (WriteCommand::IntakeNotice { notice, .. }, WriteOutcome::NoticeConflict { fields, .. }) => {
            add(EventType::BankPaymentConflict, &|| payloads::conflict(notice, fields));
        }
        (WriteCommand::RecordRejected(rejected), _) => {
            add(EventType::BankPaymentRejected, &|| payloads::rejected(rejected));
        }
        _ => {}
    }
    for line in &plan.activity[marks.activity..] {
        if let Some(kind) = balance_event(line.kind) {
            add(kind, &|| payloads::balance_line(line));
        }
    }
    for change in &plan.payout_events[marks.payout_events..] {
        // `archived` is not a status: a cancelled payout leaving the lists.
        let Some(state) = payouts.payouts.get(&change.payout_id) else { continue };
        if change.to == "archived" {
            continue;
        }
        let kind = if change.from.is_some() { EventType::PayoutStatusChanged } else { EventType::PayoutCreated };
        add(kind, &|| {
            let mut shown = state.clone();
            // The status this change led to (a later change in the same command moves the state on).
            if let Some(status) = payledger_core::payout::PayoutStatus::parse(change.to) {
                shown.status = status;
            }
            payloads::payout(&shown, change.from)
        });
    }
    for payment in &plan.statement_payments[marks.statement_payments..] {
        add(EventType::BankPaymentCredited, &|| {
            payloads::credited(&payment.notice, "statement", payment.transaction_id)
        });
    }
    for found in &plan.new_discrepancies[marks.new_discrepancies..] {
        add(EventType::StatementDiscrepancyOpened, &|| payloads::discrepancy(found));
    }
    plan.events.extend(events);
}

//! Audit rows for the changes people ask of the ledger: who, what, on what, before and after.
//!
//! A command carries the name of the user who asked (`by`); the batch adds an audit row when the command
//! changed something, so the row commits with the change or not at all. Workers and the bank carry no name:
//! their changes are in the payouts' and notices' own histories.

use payledger_core::BalanceOperation;
use serde_json::json;

use super::balances::{BalanceCommand, BalanceOutcome};
use super::payouts::{PayoutChange, PayoutCommand, PayoutOutcome};
use crate::store::AuditEntry;
use crate::store::batch::PayoutState;

/// The audit row of a balance operation that ran, if someone named asked for it.
pub fn balance_entry(command: &BalanceCommand, outcome: &BalanceOutcome) -> Option<AuditEntry> {
    let by = command.by.as_ref()?;
    let BalanceOutcome::Executed { result: Ok(lines), .. } = outcome else { return None };
    let operation = &command.operation;
    let action = match operation {
        BalanceOperation::Deposit { .. } => "balance.deposit",
        BalanceOperation::Withdraw { .. } => "balance.withdraw",
        BalanceOperation::Reserve { .. } => "balance.reserve",
        BalanceOperation::Deduct { .. } => "balance.deduct",
        BalanceOperation::Release { .. } => "balance.release",
        BalanceOperation::Transfer { .. } => "balance.transfer",
    };
    let target = match operation.order() {
        Some(order) => order.reference(),
        None => format!("balance-user:{}", operation.users().next().map_or(0, |user| user.get())),
    };
    let mut transactions: Vec<String> =
        lines.iter().filter_map(|line| line.transaction_id).map(|id| id.to_string()).collect();
    transactions.dedup();
    let after = json!({"request": crate::idempotency::canonical_value(operation), "transactions": transactions});
    Some(AuditEntry {
        actor: by.clone(),
        action: action.to_owned(),
        target,
        before: None,
        after: Some(after.to_string()),
        // `decide` names the request the command came with.
        origin: None,
    })
}

/// Whether a payout command names a user, so its change is audited.
pub fn is_audited(command: &PayoutCommand) -> bool {
    match command {
        PayoutCommand::Create(new) => new.by.is_some(),
        PayoutCommand::Change { by, .. } => by.is_some(),
    }
}

/// What an audit row shows of a payout: never its recipient's number.
fn payout_json(state: &PayoutState) -> String {
    json!({
        "status": state.status.as_str(),
        "amount": payledger_core::money::format_minor(state.amount, minor_units(state.currency)),
        "currency": state.currency,
        "description": state.description,
        "archived": state.archived,
    })
    .to_string()
}

fn minor_units(currency: &str) -> u8 {
    payledger_core::money::Currency::from_code(currency).map_or(2, |currency| currency.minor_digits())
}

/// The audit row of a payout command that changed something, if someone named asked for it: `before` is the
/// payout as it was when the command was decided, `after` as the command left it.
pub fn payout_entry(
    command: &PayoutCommand,
    before: Option<&PayoutState>,
    after: Option<&PayoutState>,
    outcome: &PayoutOutcome,
) -> Option<AuditEntry> {
    let (by, action) = match command {
        PayoutCommand::Create(new) => (new.by.as_ref()?, "payout.create"),
        PayoutCommand::Change { by, change, job, .. } => {
            let action = match change {
                PayoutChange::Edit { .. } => "payout.edit",
                PayoutChange::Delete => "payout.delete",
                PayoutChange::Retry { .. } if job.is_some() => "job.retry",
                PayoutChange::Retry { .. } => "payout.retry",
                PayoutChange::Status { .. } => "payout.status",
                PayoutChange::Attempt => "payout.attempt",
            };
            (by.as_ref()?, action)
        }
    };
    let changed = match outcome {
        PayoutOutcome::Done(_) => true,
        // A keyed creation answers with what it stored under the key: a 201 created the payout.
        PayoutOutcome::Answered(response) => (200..300).contains(&response.status),
        _ => false,
    };
    if !changed {
        return None;
    }
    Some(AuditEntry {
        actor: by.clone(),
        action: action.to_owned(),
        target: format!("payout:{}", command.payout_id()),
        before: before.map(payout_json),
        after: after.map(payout_json),
        // `decide` names the request the command came with.
        origin: None,
    })
}

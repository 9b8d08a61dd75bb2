//! Deciding an operator's apply of a statement line: match a payment that arrived since, credit the payer, or
//! refuse while a payment that may be the line's is still open. Pure; `reconcile.rs` calls it inside the batch.

use time::Date;

use super::statements::DiscrepancyKind;
#[cfg(doc)]
use super::statements::{judge, rival};

/// A line's state when an operator applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    /// A credit (debits are never applied).
    pub credit: bool,
    /// Already matched to a payment.
    pub matched: bool,
    /// Its discrepancy's kind and whether it is open, if it has one.
    pub discrepancy: Option<(DiscrepancyKind, bool)>,
    /// Its payer INN is known (an INN on the line).
    pub has_inn: bool,
}

/// What applying a line does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyDecision {
    /// A payment with its key arrived since: match it, credit nothing.
    MatchTo(i64),
    /// Credit the payer from the statement.
    Credit,
    /// Someone matched it already; nothing changes.
    AlreadyMatched,
    /// It cannot be applied, and why.
    NotApplicable(String),
}

/// An open payment that may be an applied line's payment although its key differs (see [`rival`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RivalPayment {
    /// bank_payments.id.
    pub id: i64,
    /// Its amount.
    pub amount: payledger_core::money::Money,
    /// Its Moscow document date.
    pub document_date: Date,
}

/// Decides an apply: an unmatched credit line with a payer INN and an open discrepancy of a line (missing
/// notice, unknown payer, amount mismatch, ambiguous) is matched to `open_payment`, the lowest-id open payment
/// with its key, if any; else credited when no open payment may be it (`rivals`: those of [`judge`]'s
/// candidates still open now, and any that arrived since the judgement); else refused, naming the payment. An
/// amount mismatch whose candidates other lines have taken since is a missing notice by now, so it is credited.
pub fn decide_apply(line: &LineState, open_payment: Option<i64>, rivals: &[RivalPayment]) -> ApplyDecision {
    if line.matched {
        return ApplyDecision::AlreadyMatched;
    }
    if !line.credit {
        return ApplyDecision::NotApplicable("a debit line is never applied".into());
    }
    match line.discrepancy {
        Some((DiscrepancyKind::NoticeWithoutLine, _)) => {
            ApplyDecision::NotApplicable("a notice_without_line discrepancy has no line to apply".into())
        }
        Some((_, true)) if line.has_inn => match (open_payment, rivals.first()) {
            (Some(id), _) => ApplyDecision::MatchTo(id),
            (None, Some(rival)) => ApplyDecision::NotApplicable(format!(
                "a notice of {} dated {} (payment {}) may be this payment: accept the line with a note, or wait for a \
                 statement line that takes payment {}",
                rival.amount, rival.document_date, rival.id, rival.id
            )),
            (None, None) => ApplyDecision::Credit,
        },
        Some((_, true)) => {
            ApplyDecision::NotApplicable("the line has no payer INN, so there is no one to credit".into())
        }
        Some((_, false)) => ApplyDecision::NotApplicable("the line's discrepancy is no longer open".into()),
        None => ApplyDecision::NotApplicable("the line has no discrepancy (its day is still open)".into()),
    }
}

//! The reconciliation decisions a batch makes for notices and operators' applies, without I/O: a new notice
//! that repeats a line applied from the statement is a late notice (recorded `duplicate`, never credited); a
//! credited notice takes the unmatched credit line with its key; an applied line credits its payer through
//! the same posting as a webhook notice, or matches a payment that arrived since. The batch's running view
//! ([`BatchReconciliation`]) makes a later command of the same batch see what an earlier one decided; its
//! inputs are loaded by [`load_claims`] inside the batch transaction, under lock phase 0.

use std::collections::{HashMap, HashSet};

use payledger_core::money::{Currency, Money};
use payledger_core::statement::{AccountNumber, MOSCOW, MatchKey, moscow_date, statement_operation_id};
use payledger_core::{BalanceSheet, BankNotice, Inn, OperationId};
use uuid::Uuid;

use super::batch::{AccountMap, BANK_PAYMENT_KIND, Claims, WriteOutcome};
use super::statements::{
    AppliedFromStatement, ApplyDecision, DiscrepancyKind, LateMatch, LineState, MatchRule, RivalPayment,
    StatementOutcome, decide_apply, late_notice_of,
};
use crate::store::AuditEntry;
use crate::store::batch::{
    ApplyTarget, DiscrepancyUpdate, LateNotice, LockedDiscrepancy, MatchByOperation, NewMatch, NewTransaction,
    NoticeCounterpart, NoticeDocument, PaymentCandidate, Plan, StatementPayment,
};

/// Loads what the batch's crediting notices and applies decide on: the statement payments and unmatched lines
/// with the notices' documents, the recorded notices a line already matched, the lines to apply and the open
/// payments with their documents. Before the batch stores its own lines, so a notice meets only lines stored
/// by earlier batches (a lines command of this batch matches the notice itself).
pub(super) async fn load_claims<T: crate::store::BatchTx>(
    tx: &mut T,
    commands: &[super::batch::WriteCommand],
    claims: &mut Claims,
) -> Result<(), crate::store::StoreError> {
    use super::batch::WriteCommand;
    let documents = super::sorted_unique(commands.iter().filter_map(|command| match command {
        WriteCommand::IntakeNotice { notice, apply: true, .. } if claims.inserted.contains(&notice.operation_id) => {
            Some(notice_document(notice))
        }
        WriteCommand::ApplyRecorded { notice, .. } if claims.waiting.contains(&notice.operation_id) => {
            Some(notice_document(notice))
        }
        _ => None,
    }));
    if !documents.is_empty() {
        claims.counterparts = tx.notice_counterparts(&documents).await?;
    }
    if !claims.waiting.is_empty() {
        let waiting: Vec<Uuid> = super::sorted_unique(claims.waiting.iter().map(|id| id.0));
        let open: HashSet<Uuid> =
            tx.payment_candidates(&[], &waiting).await?.into_iter().map(|payment| payment.operation_id).collect();
        claims.recorded_matched = claims.waiting.iter().filter(|id| !open.contains(&id.0)).copied().collect();
    }
    let lines = super::sorted_unique(commands.iter().filter_map(|command| match command {
        WriteCommand::StatementApply(apply) => Some(apply.line_id),
        _ => None,
    }));
    if !lines.is_empty() {
        claims.apply_targets = tx.apply_targets(&lines).await?;
        let (documents, bank_ids) = apply_documents(&claims.apply_targets);
        claims.apply_candidates = tx.payment_candidates(&documents, &bank_ids).await?;
    }
    Ok(())
}

/// An operator's apply of one statement line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyCommand {
    /// statement_lines.id.
    pub line_id: i64,
    /// Who applies it.
    pub by: String,
    /// How many days a notice's document date may differ from the line's and still be its payment.
    pub tolerance_days: u32,
}

/// Whether a command decides reconciliation, so its batch takes lock phase 0 first.
pub fn decides_reconciliation(command: &super::batch::WriteCommand) -> bool {
    use super::batch::WriteCommand;
    match command {
        WriteCommand::IntakeNotice { .. }
        | WriteCommand::ApplyRecorded { .. }
        | WriteCommand::StatementAccept(_)
        | WriteCommand::StatementBegin(_)
        | WriteCommand::StatementLines(_)
        | WriteCommand::StatementApply(_)
        | WriteCommand::StatementFinish(_) => true,
        WriteCommand::RecordRejected(_)
        | WriteCommand::Balance(_)
        | WriteCommand::Payout(_)
        | WriteCommand::KeepRefusal(_)
        | WriteCommand::ClaimJobs(_)
        | WriteCommand::Deliveries(_) => false,
    }
}

/// What a notice's counterparts are read by.
pub fn notice_document(notice: &BankNotice) -> NoticeDocument {
    NoticeDocument {
        payer_inn: notice.payer_inn.as_str().to_owned(),
        number: notice.document_number.clone(),
        date: moscow_date(notice.document_date),
    }
}

/// The key of a stored line an operator applies; `None` without a payer INN or with an unknown currency.
fn target_key(target: &ApplyTarget) -> Option<MatchKey> {
    Some(MatchKey {
        payer_inn: Inn::parse(target.payer_inn.as_deref()?).ok()?,
        document_number: target.document_number.clone(),
        document_date: target.document_date,
        amount: target.amount,
        currency: Currency::from_code(&target.currency)?,
    })
}

fn candidate_key(payment: &PaymentCandidate) -> Option<MatchKey> {
    Some(MatchKey {
        payer_inn: Inn::parse(&payment.payer_inn).ok()?,
        document_number: payment.document_number.clone(),
        document_date: moscow_date(payment.document_date),
        amount: payment.amount,
        currency: Currency::from_code(&payment.currency)?,
    })
}

/// The state of a target line as [`decide_apply`] reads it: its discrepancy is open unless a command of the
/// batch resolved it (`resolved`) or accepted it (`decided`).
fn line_state(
    target: &ApplyTarget,
    matched: bool,
    resolved: &HashSet<i64>,
    decided: &HashMap<i64, LockedDiscrepancy>,
) -> LineState {
    LineState {
        credit: target.credit,
        matched: target.matched || matched,
        discrepancy: target.discrepancy.as_ref().and_then(|(id, kind, state)| {
            let still_open = decided.get(id).is_none_or(|locked| locked.state == "open");
            Some((DiscrepancyKind::parse(kind)?, state == "open" && !resolved.contains(id) && still_open))
        }),
        has_inn: target.payer_inn.is_some(),
    }
}

/// The lowest-id open payment with `key` among `candidates` that no command of the batch took.
fn open_payment(key: Option<&MatchKey>, candidates: &[PaymentCandidate], taken: &HashSet<i64>) -> Option<i64> {
    let key = key?;
    candidates
        .iter()
        .filter(|payment| !taken.contains(&payment.id) && candidate_key(payment).as_ref() == Some(key))
        .map(|payment| payment.id)
        .min()
}

/// The open payments among `candidates`, that no command of the batch took, which may be the payment of the
/// line `target` with `key` although their keys differ: those [`super::statements::rival`] names and those the
/// line's bank ids name, ascending id.
fn rivals(
    target: &ApplyTarget,
    key: Option<&MatchKey>,
    candidates: &[PaymentCandidate],
    taken: &HashSet<i64>,
    tolerance_days: u32,
) -> Vec<RivalPayment> {
    let named_ids = super::statements::named_operation_ids(&target.bank_ids);
    let mut found: Vec<RivalPayment> = candidates
        .iter()
        .filter(|payment| !taken.contains(&payment.id))
        .filter_map(|payment| {
            let payment_key = candidate_key(payment)?;
            if key == Some(&payment_key) {
                return None;
            }
            let named = named_ids.contains(&payment.operation_id);
            let rival = key.and_then(|key| super::statements::rival(key, &payment_key, tolerance_days));
            (named || rival.is_some()).then(|| RivalPayment {
                id: payment.id,
                amount: Money::from_minor(payment_key.amount, payment_key.currency),
                document_date: payment_key.document_date,
            })
        })
        .collect();
    found.sort_by_key(|payment| payment.id);
    found
}

/// The payers the batch's applies may credit, whose accounts the batch must find or create and lock: the payer
/// of every applicable line, even one with an open payment now, since an earlier command of the batch (a twin
/// line's apply, a notice) may take that payment and leave this line to credit.
pub fn credited_payers<'a>(applies: impl Iterator<Item = &'a ApplyCommand>, claims: &Claims) -> Vec<Inn> {
    applies
        .filter_map(|apply| {
            let target = claims.apply_targets.get(&apply.line_id)?;
            let key = target_key(target);
            let decision = decide_apply(&line_state(target, false, &HashSet::new(), &HashMap::new()), None, &[]);
            (decision == ApplyDecision::Credit).then_some(key?.payer_inn)
        })
        .collect()
}

/// A statement-sourced payment a notice may repeat, as the batch sees it.
struct Applied {
    operation_id: Uuid,
    /// The payment's id, when stored before the batch (a payment the batch credits has none yet).
    id: Option<i64>,
    /// Its key and the late notices that name it so far.
    payment: AppliedFromStatement,
}

/// An unmatched credit line a notice may be.
struct OpenLine {
    id: i64,
    key: MatchKey,
    open_discrepancy: Option<i64>,
}

/// The batch's running view of the reconciliation tables.
#[derive(Default)]
pub struct BatchReconciliation {
    /// Statement-sourced applied payments: stored ones by ascending id, then the batch's own.
    applied: Vec<Applied>,
    /// Unmatched credit lines, ascending id.
    lines: Vec<OpenLine>,
    /// Lines a command of this batch matched.
    taken_lines: HashSet<i64>,
    /// Discrepancies a command of this batch resolved.
    resolved: HashSet<i64>,
    /// Payments a command of this batch matched, or whose notice it recorded late or failed, by id.
    pub taken_payments: HashSet<i64>,
    /// The payment id of each operation id the batch's lines and applies may match (both candidate lists), so a
    /// notice decided here claims the payment they would see.
    payments: HashMap<Uuid, i64>,
    /// The discrepancies the batch's accepts name, as its commands leave them: an accept and an apply or a
    /// notice of one discrepancy see each other.
    pub discrepancies: HashMap<i64, LockedDiscrepancy>,
}

impl BatchReconciliation {
    /// The view of the counterparts the batch read.
    pub fn new(counterparts: &[NoticeCounterpart]) -> BatchReconciliation {
        let mut view = BatchReconciliation::default();
        for counterpart in counterparts {
            match counterpart {
                NoticeCounterpart::StatementPayment {
                    id,
                    operation_id,
                    amount,
                    currency,
                    payer_inn,
                    document_number,
                    document_date,
                    named_by_key,
                    named,
                } => {
                    let key = key_of(payer_inn, document_number, moscow_date(*document_date), *amount, currency);
                    if let Some(key) = key {
                        let payment = AppliedFromStatement { key, named_by_key: *named_by_key, named: *named };
                        view.applied.push(Applied { operation_id: *operation_id, id: Some(*id), payment });
                    }
                }
                NoticeCounterpart::OpenLine {
                    id,
                    amount,
                    currency,
                    payer_inn,
                    document_number,
                    document_date,
                    open_discrepancy,
                } => {
                    if let Some(key) = key_of(payer_inn, document_number, *document_date, *amount, currency) {
                        view.lines.push(OpenLine { id: *id, key, open_discrepancy: *open_discrepancy });
                    }
                }
            }
        }
        view.applied.sort_by_key(|applied| applied.id);
        view.lines.sort_by_key(|line| line.id);
        view
    }

    /// The view of everything the batch loaded: the counterparts, the payments its lines and applies may match,
    /// and the discrepancies its accepts locked.
    pub fn of_claims(claims: &Claims) -> BatchReconciliation {
        let mut view = BatchReconciliation::new(&claims.counterparts);
        view.payments = claims
            .payment_candidates
            .iter()
            .chain(&claims.apply_candidates)
            .map(|payment| (payment.operation_id, payment.id))
            .collect();
        view.discrepancies = claims.discrepancies.clone();
        view
    }

    /// Whether a command of the batch matched this line.
    pub fn took_line(&self, id: i64) -> bool {
        self.taken_lines.contains(&id)
    }

    /// Resolves a discrepancy once, unless a command of the batch accepted it; whether it did.
    fn resolve(&mut self, id: i64) -> bool {
        if self.discrepancies.get(&id).is_some_and(|locked| locked.state != "open") || !self.resolved.insert(id) {
            return false;
        }
        if let Some(locked) = self.discrepancies.get_mut(&id) {
            locked.state = "resolved".into();
        }
        true
    }

    /// A notice about to be credited, through reconciliation: a late notice of a payment applied from the
    /// statement is recorded `duplicate` and not credited; a credited one takes the unmatched credit line with
    /// its key. A notice whose payment a line already matched before the batch (`matched_before`) is only
    /// credited. The batch decides its notices before its lines and applies, so a notice recorded late, failed
    /// or matched here marks its payment taken and no line of the batch matches it.
    pub fn credit(
        &mut self,
        notice: &BankNotice,
        matched_before: bool,
        tolerance_days: u32,
        plan: &mut Plan,
        credit: impl FnOnce(&mut Plan) -> WriteOutcome,
    ) -> WriteOutcome {
        let payment = self.payments.get(&notice.operation_id.0).copied();
        if matched_before || payment.is_some_and(|id| self.taken_payments.contains(&id)) {
            return credit(plan);
        }
        let late = self.late_notice(notice, tolerance_days, plan);
        let outcome = if late { WriteOutcome::NoticeDuplicate } else { credit(plan) };
        let took = match outcome {
            WriteOutcome::NoticeApplied => self.credited_notice(notice, plan),
            _ => true,
        };
        if let (true, Some(id)) = (late || took, payment) {
            self.taken_payments.insert(id);
        }
        outcome
    }

    /// Before a notice is credited: if it repeats a statement-sourced payment ([`late_notice_of`]), it is
    /// recorded `duplicate` of it and answered as a duplicate.
    pub fn late_notice(&mut self, notice: &BankNotice, tolerance_days: u32, plan: &mut Plan) -> bool {
        let key = MatchKey::of_notice(notice);
        let own_line_open = self.lines.iter().any(|line| line.key == key && !self.taken_lines.contains(&line.id));
        let applied = self.applied.iter().map(|applied| &applied.payment);
        let Some((position, how)) = late_notice_of(&key, applied, own_line_open, tolerance_days) else {
            return false;
        };
        let original = &mut self.applied[position];
        original.payment.named = true;
        original.payment.named_by_key |= how == LateMatch::Key;
        plan.late_notices.push(LateNotice {
            operation_id: notice.operation_id.0,
            duplicate_of: original.operation_id,
            late_match: how.as_str(),
        });
        true
    }

    /// After a notice is credited: the lowest-id unmatched credit line with its key is matched to it, and the
    /// line's open discrepancy is resolved by the notice.
    pub fn credited_notice(&mut self, notice: &BankNotice, plan: &mut Plan) -> bool {
        let key = MatchKey::of_notice(notice);
        let Some(line) = self.lines.iter().find(|line| line.key == key && !self.taken_lines.contains(&line.id)) else {
            return false;
        };
        let (line_id, open_discrepancy) = (line.id, line.open_discrepancy);
        self.taken_lines.insert(line_id);
        plan.matches_by_operation.push(MatchByOperation {
            line_id,
            operation_id: notice.operation_id.0,
            rule: MatchRule::Document.as_str(),
            by: None,
        });
        if let Some(discrepancy) = open_discrepancy.filter(|id| self.resolve(*id)) {
            plan.discrepancy_updates.push(DiscrepancyUpdate {
                id: discrepancy,
                state: "resolved",
                resolution: "notice",
                note: None,
                by: None,
            });
        }
        true
    }

    /// An operator's apply (see [`decide_apply`]): match a payment that arrived since, or credit the payer
    /// through the webhook's posting with the line's derived operation id.
    pub fn apply(
        &mut self,
        apply: &ApplyCommand,
        claims: &Claims,
        accounts: &AccountMap<'_>,
        sheet: &mut BalanceSheet,
        plan: &mut Plan,
    ) -> StatementOutcome {
        let Some(target) = claims.apply_targets.get(&apply.line_id) else { return StatementOutcome::NotFound };
        let key = target_key(target);
        let state = line_state(target, self.taken_lines.contains(&apply.line_id), &self.resolved, &self.discrepancies);
        let discrepancy_id = target.discrepancy.as_ref().map(|(id, _, _)| *id);
        let exact = open_payment(key.as_ref(), &claims.apply_candidates, &self.taken_payments);
        let rivals = rivals(target, key.as_ref(), &claims.apply_candidates, &self.taken_payments, apply.tolerance_days);
        let decision = decide_apply(&state, exact, &rivals);
        let (outcome, resolution, payment) = match (decision, key) {
            (ApplyDecision::MatchTo(payment_id), _) => {
                self.taken_payments.insert(payment_id);
                // Its open notice_without_line, if a finish judged it before the line was applied, is resolved.
                plan.matched_payments.push(payment_id);
                plan.statement_matches.push(NewMatch {
                    line_id: apply.line_id,
                    payment_id,
                    rule: MatchRule::Document.as_str(),
                    by: Some(apply.by.clone()),
                });
                let operation_id = claims
                    .apply_candidates
                    .iter()
                    .find(|payment| payment.id == payment_id)
                    .map_or(Uuid::nil(), |payment| payment.operation_id);
                (StatementOutcome::MatchedNotice { payment_id, operation_id, discrepancy_id }, "notice", operation_id)
            }
            (ApplyDecision::Credit, Some(key)) => {
                let Some(notice) = statement_notice(target, &key) else {
                    return StatementOutcome::NotApplicable("the line's account number is not valid".into());
                };
                let transaction_id = Uuid::now_v7();
                if let Err(error) = post_credit(&notice, transaction_id, accounts, sheet, plan) {
                    return StatementOutcome::NotApplicable(format!("the ledger refused the credit: {error}"));
                }
                plan.statement_payments.push(StatementPayment { notice: notice.clone(), transaction_id });
                plan.matches_by_operation.push(MatchByOperation {
                    line_id: apply.line_id,
                    operation_id: notice.operation_id.0,
                    rule: MatchRule::Applied.as_str(),
                    by: Some(apply.by.clone()),
                });
                let payment = AppliedFromStatement { key, named_by_key: false, named: false };
                self.applied.push(Applied { operation_id: notice.operation_id.0, id: None, payment });
                let operation_id = notice.operation_id.0;
                (StatementOutcome::Applied { operation_id, discrepancy_id }, "applied", operation_id)
            }
            (ApplyDecision::Credit, None) => {
                return StatementOutcome::NotApplicable("the line has no valid payer INN".into());
            }
            (ApplyDecision::AlreadyMatched, _) => return StatementOutcome::AlreadyMatched,
            (ApplyDecision::NotApplicable(reason), _) => return StatementOutcome::NotApplicable(reason),
        };
        self.taken_lines.insert(apply.line_id);
        if let Some(id) = discrepancy_id.filter(|id| self.resolve(*id)) {
            plan.discrepancy_updates.push(DiscrepancyUpdate {
                id,
                state: "resolved",
                resolution,
                note: None,
                by: Some(apply.by.clone()),
            });
        }
        plan.audit.push(AuditEntry {
            actor: apply.by.clone(),
            action: "statement.apply".into(),
            target: format!("statement_line:{}", apply.line_id),
            before: Some(serde_json::json!({"discrepancy": discrepancy_id, "matched": false}).to_string()),
            after: Some(
                serde_json::json!({"discrepancy": discrepancy_id, "resolution": resolution, "operation_id": payment})
                    .to_string(),
            ),
            // `decide` names the request the command came with.
            origin: None,
        });
        outcome
    }
}

fn key_of(inn: &str, number: &str, date: time::Date, amount: i64, currency: &str) -> Option<MatchKey> {
    Some(MatchKey {
        payer_inn: Inn::parse(inn).ok()?,
        document_number: number.to_owned(),
        document_date: date,
        amount,
        currency: Currency::from_code(currency)?,
    })
}

/// The notice a statement line stands for: its derived operation id, its payer and document, dated Moscow
/// midnight of its document date (so its key is the line's).
fn statement_notice(target: &ApplyTarget, key: &MatchKey) -> Option<BankNotice> {
    let account = AccountNumber::parse(&target.account).ok()?;
    let occurrence = u32::try_from(target.occurrence).ok()?;
    Some(BankNotice {
        operation_id: OperationId(statement_operation_id(&account, &target.fingerprint, occurrence)),
        amount: Money::from_minor(key.amount, key.currency),
        payer_inn: key.payer_inn.clone(),
        document_number: key.document_number.clone(),
        document_date: key.document_date.midnight().assume_offset(MOSCOW),
    })
}

/// Credits a payment's organization from the bank inflow account: the one posting of every bank payment,
/// a webhook notice's or a statement line's.
pub fn post_credit(
    notice: &BankNotice,
    transaction_id: Uuid,
    accounts: &AccountMap<'_>,
    sheet: &mut BalanceSheet,
    plan: &mut Plan,
) -> Result<(), payledger_core::LedgerError> {
    let Some(&organization) = accounts.organizations.get(&notice.payer_inn) else {
        return Err(payledger_core::LedgerError::UnknownAccount(payledger_core::AccountId(0)));
    };
    let amount = notice.amount.minor();
    let postings = [
        payledger_core::Posting { account: accounts.bank_inflow, amount: -amount },
        payledger_core::Posting { account: organization, amount },
    ];
    let entries = sheet.apply(&postings)?;
    plan.transactions.push(NewTransaction {
        id: transaction_id,
        kind: BANK_PAYMENT_KIND,
        // bank_payments.operation_id (and its unique transaction_id) already make this transaction happen
        // once; a second random-key index would double the write cost of every payment.
        idempotency_key: None,
    });
    plan.entries.extend(entries.into_iter().map(|entry| (transaction_id, entry)));
    Ok(())
}

/// The (payer INN, document number) pairs and the bank ids (as operation ids) the applied lines' open payments
/// are read by: a payment a line's bank reference names may be it whatever its document.
pub fn apply_documents(targets: &HashMap<i64, ApplyTarget>) -> (Vec<(String, String)>, Vec<Uuid>) {
    let mut documents: Vec<(String, String)> = targets
        .values()
        .filter_map(|target| Some((target.payer_inn.clone()?, target.document_number.clone())))
        .collect();
    documents.sort();
    documents.dedup();
    let mut ids: Vec<Uuid> =
        targets.values().flat_map(|target| target.bank_ids.iter().filter_map(|id| id.parse().ok())).collect();
    ids.sort();
    ids.dedup();
    (documents, ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    const INN: &str = "7707083893";

    fn notice(id: u128, number: &str, amount: i64) -> BankNotice {
        BankNotice {
            operation_id: OperationId(Uuid::from_u128(id)),
            amount: Money::from_minor(amount, Currency::RUB),
            payer_inn: Inn::parse(INN).unwrap_or_else(|_| panic!("test inn")),
            document_number: number.into(),
            // 28 April in Moscow.
            document_date: datetime!(2024-04-27 21:00 UTC),
        }
    }

    fn line(id: i64, number: &str, amount: i64, open_discrepancy: Option<i64>) -> NoticeCounterpart {
        NoticeCounterpart::OpenLine {
            id,
            amount,
            currency: "RUB".into(),
            payer_inn: INN.into(),
            document_number: number.into(),
            document_date: date!(2024 - 04 - 28),
            open_discrepancy,
        }
    }

    /// A statement payment; `named_by`: the late notice that names it already, if one does.
    fn applied(id: i64, number: &str, amount: i64, named_by: Option<LateMatch>) -> NoticeCounterpart {
        NoticeCounterpart::StatementPayment {
            id,
            operation_id: Uuid::from_u128(1000 + id as u128),
            amount,
            currency: "RUB".into(),
            payer_inn: INN.into(),
            document_number: number.into(),
            document_date: datetime!(2024-04-27 21:00 UTC),
            named_by_key: named_by == Some(LateMatch::Key),
            named: named_by.is_some(),
        }
    }

    #[test]
    fn a_notice_repeating_a_statement_payment_is_a_late_notice_once_and_never_credited() {
        let mut view =
            BatchReconciliation::new(&[applied(5, "P-1", 100, None), applied(4, "P-2", 100, Some(LateMatch::Key))]);
        let mut plan = Plan::default();
        let never = |_: &mut Plan| panic!("a late notice is not credited");
        assert_eq!(view.credit(&notice(1, "P-1", 100), false, 3, &mut plan, never), WriteOutcome::NoticeDuplicate);
        assert_eq!(
            plan.late_notices,
            vec![LateNotice {
                operation_id: Uuid::from_u128(1),
                duplicate_of: Uuid::from_u128(1005),
                late_match: "key"
            }]
        );
        // The payment is named once: a second notice with the key is a real payment; one already named, too.
        let credited = |_: &mut Plan| WriteOutcome::NoticeApplied;
        assert_eq!(view.credit(&notice(2, "P-1", 100), false, 3, &mut plan, credited), WriteOutcome::NoticeApplied);
        assert_eq!(view.credit(&notice(3, "P-2", 100), false, 3, &mut plan, credited), WriteOutcome::NoticeApplied);
        // Another number is another payment.
        let mut other = BatchReconciliation::new(&[applied(5, "P-1", 100, None)]);
        assert_eq!(other.credit(&notice(9, "P-9", 100), false, 3, &mut plan, credited), WriteOutcome::NoticeApplied);
        assert_eq!(plan.late_notices.len(), 1);
    }

    /// A notice dated `days` after 28 April in Moscow.
    fn notice_days_later(id: u128, amount: i64, days: i64) -> BankNotice {
        let mut notice = notice(id, "P-1", amount);
        notice.document_date += time::Duration::days(days);
        notice
    }

    #[test]
    fn a_notice_that_may_be_an_applied_line_although_its_key_differs_is_a_late_notice_unless_a_line_has_its_key() {
        let never = |_: &mut Plan| panic!("a late notice is not credited");
        let credited = |_: &mut Plan| WriteOutcome::NoticeApplied;
        // Its amount dated a day off, within the tolerance; another amount on its date (a typo either side).
        for late in [notice_days_later(1, 100, 1), notice_days_later(1, 100, -3), notice(1, "P-1", 1000)] {
            let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, None)]);
            let mut plan = Plan::default();
            assert_eq!(view.credit(&late, false, 3, &mut plan, never), WriteOutcome::NoticeDuplicate, "{late:?}");
            assert_eq!(plan.late_notices[0].duplicate_of, Uuid::from_u128(1005));
        }
        // Beyond the tolerance, or another amount on another date: another payment.
        for other in [notice_days_later(2, 100, 4), notice_days_later(2, 1000, 1)] {
            let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, None)]);
            let mut plan = Plan::default();
            assert_eq!(view.credit(&other, false, 3, &mut plan, credited), WriteOutcome::NoticeApplied, "{other:?}");
            assert!(plan.late_notices.is_empty());
        }
        // An unmatched line with the notice's own key is its payment: credited, and it takes the line.
        let on_its_line = notice_days_later(3, 100, 1);
        let mut line_of_29 = line(8, "P-1", 100, Some(80));
        if let NoticeCounterpart::OpenLine { document_date, .. } = &mut line_of_29 {
            *document_date = date!(2024 - 04 - 29);
        }
        let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, None), line_of_29]);
        let mut plan = Plan::default();
        assert_eq!(view.credit(&on_its_line, false, 3, &mut plan, credited), WriteOutcome::NoticeApplied);
        assert!(plan.late_notices.is_empty());
        assert_eq!(plan.matches_by_operation[0].line_id, 8);
        // A rival came first and named the payment; its own notice, with its key, is held too (the rival may
        // have been another payment, this one is certainly it), stored before the batch or in it.
        for named_by in [None, Some(LateMatch::Rival)] {
            let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, named_by)]);
            let mut plan = Plan::default();
            if named_by.is_none() {
                assert_eq!(
                    view.credit(&notice_days_later(6, 100, 1), false, 3, &mut plan, never),
                    WriteOutcome::NoticeDuplicate
                );
            }
            assert_eq!(view.credit(&notice(7, "P-1", 100), false, 3, &mut plan, never), WriteOutcome::NoticeDuplicate);
            // Now named by both, a third notice that may be it is another payment.
            assert_eq!(
                view.credit(&notice_days_later(8, 100, -1), false, 3, &mut plan, credited),
                WriteOutcome::NoticeApplied
            );
            let named: Vec<&str> = plan.late_notices.iter().map(|late| late.late_match).collect();
            assert_eq!(named, if named_by.is_none() { vec!["rival", "key"] } else { vec!["key"] });
        }
        // Of two payments it may be, the nearer date.
        let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, None), applied(6, "P-1", 100, None)]);
        if let Some(first) = view.applied.first_mut() {
            first.payment.key.document_date = date!(2024 - 04 - 25);
        }
        let mut plan = Plan::default();
        assert_eq!(
            view.credit(&notice_days_later(9, 100, -1), false, 3, &mut plan, never),
            WriteOutcome::NoticeDuplicate
        );
        assert_eq!(plan.late_notices[0].duplicate_of, Uuid::from_u128(1006));
        // The exact key wins over a rival, whichever is stored first.
        let mut view = BatchReconciliation::new(&[applied(5, "P-1", 100, None), applied(6, "P-1", 100, None)]);
        if let Some(first) = view.applied.first_mut() {
            first.payment.key.document_date = date!(2024 - 04 - 27);
        }
        let mut plan = Plan::default();
        assert_eq!(view.credit(&notice(4, "P-1", 100), false, 3, &mut plan, never), WriteOutcome::NoticeDuplicate);
        assert_eq!(plan.late_notices[0].duplicate_of, Uuid::from_u128(1006));
    }

    #[test]
    fn a_credited_notice_takes_the_lowest_unmatched_line_with_its_key_and_resolves_its_discrepancy() {
        let counterparts = [line(8, "P-1", 100, None), line(7, "P-1", 100, Some(70)), line(6, "P-1", 99, Some(60))];
        let mut view = BatchReconciliation::new(&counterparts);
        let mut plan = Plan::default();
        let credited = |_: &mut Plan| WriteOutcome::NoticeApplied;
        view.credit(&notice(1, "P-1", 100), false, 3, &mut plan, credited);
        view.credit(&notice(2, "P-1", 100), false, 3, &mut plan, credited);
        view.credit(&notice(3, "P-1", 100), false, 3, &mut plan, credited);
        let lines: Vec<(i64, u128)> =
            plan.matches_by_operation.iter().map(|m| (m.line_id, m.operation_id.as_u128())).collect();
        assert_eq!(lines, vec![(7, 1), (8, 2)], "twins take one line each; the 99 line is not theirs");
        assert_eq!(plan.discrepancy_updates.len(), 1);
        assert_eq!((plan.discrepancy_updates[0].id, plan.discrepancy_updates[0].resolution), (70, "notice"));
        // A notice whose payment a line matched already is only credited.
        let mut plan = Plan::default();
        let mut view = BatchReconciliation::new(&counterparts);
        view.credit(&notice(4, "P-1", 100), true, 3, &mut plan, credited);
        assert!(plan.matches_by_operation.is_empty());
    }
}

//! An operator's apply of statement lines: each line is one `StatementApply` command through the ledger
//! engine, which credits the payer from the statement through the webhook's posting or matches a payment that
//! arrived since. An import's apply-all submits its lines in concurrent chunks, so the engine batches them.

use super::report::discrepancy_view;
use super::{ApplyAllSummary, ApplyOutcome, ApplyResult, ReconcileError, Reconciliation};
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::reconcile::ApplyCommand;
use crate::engine::statements::StatementOutcome;

/// How many applies of an apply-all are in flight at once.
const APPLY_CHUNK: usize = 200;

/// What one apply did, before its discrepancy is read back.
enum Applied {
    Done { outcome: ApplyOutcome, operation_id: Option<String>, discrepancy_id: Option<i64> },
    NotApplicable(String),
}

async fn submit(service: &Reconciliation, line_id: i64, by: &str) -> Result<Applied, ReconcileError> {
    let tolerance_days = service.settings().date_tolerance_days;
    let command = WriteCommand::StatementApply(ApplyCommand { line_id, by: by.to_owned(), tolerance_days });
    let done = |outcome, operation_id: uuid::Uuid, discrepancy_id| {
        Ok(Applied::Done { outcome, operation_id: Some(operation_id.to_string()), discrepancy_id })
    };
    match service.engine().submit(command).await? {
        WriteOutcome::Statement(StatementOutcome::Applied { operation_id, discrepancy_id }) => {
            done(ApplyOutcome::Applied, operation_id, discrepancy_id)
        }
        WriteOutcome::Statement(StatementOutcome::MatchedNotice { operation_id, discrepancy_id, .. }) => {
            done(ApplyOutcome::Matched, operation_id, discrepancy_id)
        }
        WriteOutcome::Statement(StatementOutcome::AlreadyMatched) => {
            Ok(Applied::Done { outcome: ApplyOutcome::AlreadyMatched, operation_id: None, discrepancy_id: None })
        }
        WriteOutcome::Statement(StatementOutcome::NotFound) => Err(ReconcileError::NotFound("line")),
        WriteOutcome::Statement(StatementOutcome::NotApplicable(reason)) => Ok(Applied::NotApplicable(reason)),
        other => {
            tracing::error!(?other, "the engine answered an apply with another command's outcome");
            Err(ReconcileError::Engine(crate::engine::EngineError::Unavailable))
        }
    }
}

/// Applies one line and reads its discrepancy back.
pub(super) async fn apply_line(
    service: &Reconciliation,
    line_id: i64,
    by: &str,
) -> Result<ApplyResult, ReconcileError> {
    match submit(service, line_id, by).await? {
        Applied::Done { outcome, operation_id, discrepancy_id } => {
            let discrepancy = match discrepancy_id {
                Some(id) => service.store().discrepancy(id).await?.map(discrepancy_view),
                None => None,
            };
            Ok(ApplyResult { line_id, outcome, operation_id, discrepancy })
        }
        Applied::NotApplicable(reason) => Err(ReconcileError::NotApplicable { reason }),
    }
}

/// Applies the line of a discrepancy.
pub(super) async fn apply_discrepancy(
    service: &Reconciliation,
    discrepancy_id: i64,
    by: &str,
) -> Result<ApplyResult, ReconcileError> {
    let row = service.store().discrepancy(discrepancy_id).await?.ok_or(ReconcileError::NotFound("discrepancy"))?;
    let Some(line_id) = row.line_id else {
        return Err(ReconcileError::NotApplicable {
            reason: format!("a {} discrepancy has no statement line to apply", row.kind),
        });
    };
    apply_line(service, line_id, by).await
}

/// Applies every open `missing_notice`/`unknown_payer` line (with a payer INN) of an import, in concurrent
/// chunks: each line is its own command, so one that cannot be applied does not stop the others. An error (the
/// engine unavailable, say) does not abort the chunk's other applies, which commit or fail on their own: the
/// chunk runs to its end, no further chunk starts, and the first error is returned (a retry finds the lines
/// applied so far already matched).
pub(super) async fn apply_all(
    service: &Reconciliation,
    import_id: i64,
    by: &str,
) -> Result<ApplyAllSummary, ReconcileError> {
    service.store().statement_import(import_id).await?.ok_or(ReconcileError::NotFound("import"))?;
    let lines = service.store().applicable_lines(import_id).await?;
    let mut summary = ApplyAllSummary { import_id, ..ApplyAllSummary::default() };
    let mut errors = Vec::new();
    for chunk in lines.chunks(APPLY_CHUNK) {
        let mut round = tokio::task::JoinSet::new();
        for &line_id in chunk {
            let (service, by) = (service.clone(), by.to_owned());
            // Each apply's audit row names the request, and its log lines carry the request's span.
            let apply = crate::origin::RequestOrigin::carried(async move { submit(&service, line_id, &by).await });
            round.spawn(tracing::Instrument::in_current_span(apply));
        }
        while let Some(joined) = round.join_next().await {
            let applied = joined.map_err(|error| {
                tracing::error!(%error, "an apply task ended abnormally");
                ReconcileError::Engine(crate::engine::EngineError::Unavailable)
            });
            match applied.and_then(|applied| applied) {
                Ok(Applied::Done { outcome: ApplyOutcome::Applied, .. }) => summary.applied += 1,
                Ok(Applied::Done { outcome: ApplyOutcome::Matched, .. }) => summary.matched += 1,
                Ok(Applied::Done { outcome: ApplyOutcome::AlreadyMatched, .. }) => summary.already_matched += 1,
                Ok(Applied::NotApplicable(_)) => summary.not_applicable += 1,
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            break;
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(summary),
        Some(first) => {
            tracing::error!(import_id, ?summary, failed = errors.len() + 1, "apply-all stopped on errors");
            Err(first)
        }
    }
}

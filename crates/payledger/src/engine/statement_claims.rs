//! What a batch's statement commands read inside its transaction before any decision: the lines it stores
//! (with the payments and payers their matching needs) and, for a finishing batch, the pending lines, the
//! covered periods and the payments that may lack a line.

use uuid::Uuid;

use super::batch::{Claims, WriteCommand};
use super::{judging, sorted_unique, statements};
use crate::store::{AccountKind, BatchTx, StoreError};

/// Stores the batch's statement lines (new ones get ids; a line stored before is counted as known) and loads
/// the payments and payers their matching needs. Lines are keyed by their unique (account, booking date,
/// fingerprint, occurrence): two instances inserting one line wait for each other there, and the loser reruns
/// the batch.
pub(super) async fn statements_claims<T: BatchTx>(
    tx: &mut T,
    commands: &[WriteCommand],
    claims: &mut Claims,
) -> Result<(), StoreError> {
    let mut documents = Vec::new();
    let mut operation_ids = Vec::new();
    let mut payers = Vec::new();
    // Read before this batch stores its own lines, which its lines commands judge themselves.
    finish_claims(tx, commands, claims).await?;
    let resumed: Vec<i64> =
        claims.imports.values().filter(|import| !import.inserted && import.state != "complete").map(|i| i.id).collect();
    if !resumed.is_empty() {
        claims.import_accounts = tx.import_accounts(&resumed).await?;
    }
    for line in &claims.pending_lines {
        if let Some(inn) = &line.payer_inn {
            payers.push(inn.clone());
            documents.push((inn.clone(), line.document_number.clone()));
        }
        operation_ids.extend(line.bank_ids.iter().filter_map(|id| id.parse::<Uuid>().ok()));
    }
    for (index, command) in commands.iter().enumerate() {
        if let WriteCommand::StatementLines(lines) = command {
            let stored = tx.insert_statement_lines(&statements::line_rows(lines)).await?;
            claims.stored_lines.insert(index, stored);
            let (more_documents, more_ids) = statements::candidate_keys(lines);
            payers.extend(more_documents.iter().map(|(inn, _)| inn.clone()));
            documents.extend(more_documents);
            operation_ids.extend(more_ids);
        }
    }
    if claims.stored_lines.is_empty() && claims.pending_lines.is_empty() {
        return Ok(());
    }
    documents.sort();
    documents.dedup();
    operation_ids.sort();
    operation_ids.dedup();
    claims.payment_candidates = tx.payment_candidates(&documents, &operation_ids).await?;
    let payers = sorted_unique(payers.into_iter());
    claims.line_payers =
        tx.find_accounts(AccountKind::Organization, &payers).await?.into_iter().map(|(inn, _)| inn).collect();
    Ok(())
}

/// For a batch that finishes imports: the pending lines of closed days, every import's sections and the
/// credited payments that may lack a line (only those whose document date falls in the covered range).
async fn finish_claims<T: BatchTx>(
    tx: &mut T,
    commands: &[WriteCommand],
    claims: &mut Claims,
) -> Result<(), StoreError> {
    let finishes: Vec<&judging::FinishImport> = commands
        .iter()
        .filter_map(|command| match command {
            WriteCommand::StatementFinish(finish) => Some(finish),
            _ => None,
        })
        .collect();
    let Some(today) = finishes.iter().map(|finish| finish.today).max() else { return Ok(()) };
    claims.pending_lines = tx.pending_lines(today).await?;
    let finishing: Vec<i64> = finishes.iter().map(|finish| finish.import_id).collect();
    claims.section_periods = tx.section_periods(&finishing).await?;
    let first = claims.section_periods.iter().filter(|period| period.complete).map(|period| period.start).min();
    if let Some(first) = first {
        // A Moscow date is the UTC date or the next one: a day early and today's UTC midnight bound it.
        let from = first.previous_day().unwrap_or(first).midnight().assume_utc();
        claims.unlined_payments = tx.unlined_payments(from, today.midnight().assume_utc()).await?;
    }
    Ok(())
}

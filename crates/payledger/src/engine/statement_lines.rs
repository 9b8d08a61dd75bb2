//! A chunk of an import's lines as the ledger writer takes it, and the rows it stores.

use payledger_core::statement::{Fingerprint, StatementLine};
use time::Date;

use crate::store::batch::NewStatementLine;

/// Up to [`MAX_LINES_PER_COMMAND`] lines of an import, with their identity, to store and match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinesCommand {
    /// The import (started by a [`BeginImport`](super::statements::BeginImport)).
    pub import_id: i64,
    /// Each line with its identity.
    pub lines: Vec<LineToStore>,
    /// Today in Moscow: lines booked before it are judged, the others stay pending.
    pub today: Date,
    /// How many days a notice's document date may differ from its line's (see [`judge`](super::statements::judge)).
    pub tolerance_days: u32,
}

/// A statement line as a [`LinesCommand`] carries it: the line, its identity, and its raw fields already in
/// their stored form. The reading task serializes them, so that neither the JSON nor freeing the parsed fields
/// (allocated in the reading task's thread) is the ledger writer's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineToStore {
    /// The line; its `raw` is empty, moved into `raw_json`.
    pub line: StatementLine,
    /// Its identity across files.
    pub fingerprint: Fingerprint,
    /// Its number among the identical lines of its file.
    pub occurrence: u32,
    /// Its raw fields as stored: a JSON array of `[key, value]` pairs, in the file's order (keys repeat).
    pub raw_json: String,
}

impl LineToStore {
    /// Moves `line`'s raw fields into their stored form.
    pub fn new(mut line: StatementLine, fingerprint: Fingerprint, occurrence: u32) -> LineToStore {
        let raw = std::mem::take(&mut line.raw);
        // Serializing strings cannot fail; an empty array would only hide a bug, never lose a stored line.
        let raw_json = serde_json::to_string(&raw).unwrap_or_else(|_| "[]".to_owned());
        LineToStore { line, fingerprint, occurrence, raw_json }
    }
}

/// The most lines one [`LinesCommand`] carries.
pub const MAX_LINES_PER_COMMAND: usize = 1000;

/// The rows a lines command inserts.
pub fn line_rows(command: &LinesCommand) -> Vec<NewStatementLine<'_>> {
    command
        .lines
        .iter()
        .map(|stored| {
            let line = &stored.line;
            NewStatementLine {
                import_id: command.import_id,
                account: line.account.as_str(),
                fingerprint: stored.fingerprint,
                occurrence: i64::from(stored.occurrence),
                direction: line.direction.as_str(),
                nature: line.nature.as_str(),
                amount: line.amount.minor(),
                currency: line.amount.currency().code(),
                booking_date: line.booking_date,
                document_number: &line.document_number,
                document_date: line.document_date,
                payer_inn: line.counterparty_inn.as_ref().map(|inn| inn.as_str()),
                payer_name: line.counterparty_name.as_deref(),
                payer_account: line.counterparty_account.as_deref(),
                payer_bik: line.counterparty_bik.as_deref(),
                bank_ref: line.bank_ref.as_deref(),
                end_to_end_id: line.end_to_end_id.as_deref(),
                purpose: line.purpose.as_deref(),
                source_line: i64::try_from(line.source_line).unwrap_or(i64::MAX),
                raw: &stored.raw_json,
            }
        })
        .collect()
}

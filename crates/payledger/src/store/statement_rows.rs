//! The rows of the reconciliation tables a batch reads and writes (issue 13): statement lines, matches,
//! discrepancies, imports and the payments a line or a notice may meet. Re-exported by [`super::batch`],
//! whose [`Plan`](super::batch::Plan) holds them.

use payledger_core::BankNotice;
use time::OffsetDateTime;
use uuid::Uuid;

/// A payment credited from a statement line: the same row a webhook notice gets, with source `statement`.
#[derive(Debug, Clone)]
pub struct StatementPayment {
    /// The notice the line stands for (its operation id derived from the line).
    pub notice: BankNotice,
    /// The crediting ledger transaction.
    pub transaction_id: Uuid,
}

/// What a notice's reconciliation counterparts are read by: statement payments by its payer and number (a late
/// notice may differ from its payment in date or amount), unmatched lines by its Moscow document date too (a
/// notice takes only a line with its key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoticeDocument {
    /// The payer's INN.
    pub payer_inn: String,
    /// The document number.
    pub number: String,
    /// The Moscow date of the document.
    pub date: time::Date,
}

/// A notice that arrived after its line was applied from the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateNotice {
    /// The notice's operation id (its row was claimed by this batch).
    pub operation_id: Uuid,
    /// The operation id of the statement-sourced payment it repeats.
    pub duplicate_of: Uuid,
    /// How: `key` (it has the payment's match key) or `rival` (it may be the payment).
    pub late_match: &'static str,
}

/// A match of a line with a payment named by its operation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchByOperation {
    /// statement_lines.id.
    pub line_id: i64,
    /// The payment's operation id.
    pub operation_id: Uuid,
    /// The rule.
    pub rule: &'static str,
    /// Who matched it (an operator's apply), if anyone.
    pub by: Option<String>,
}

/// A statement line an operator applies, as the batch reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyTarget {
    /// Our account.
    pub account: String,
    /// The line's fingerprint.
    pub fingerprint: [u8; 32],
    /// Its occurrence.
    pub occurrence: i64,
    /// A credit.
    pub credit: bool,
    /// Minor units.
    pub amount: i64,
    /// Currency code.
    pub currency: String,
    /// The payer's INN, if the line has one.
    pub payer_inn: Option<String>,
    /// The document number.
    pub document_number: String,
    /// The document date.
    pub document_date: time::Date,
    /// Already matched to a payment.
    pub matched: bool,
    /// Its discrepancy: id, kind, state.
    pub discrepancy: Option<(i64, String, String)>,
    /// The bank's reference and the end-to-end id, either of which may name a payment's operation id.
    pub bank_ids: Vec<String>,
}

/// What a notice's match key may meet in the reconciliation tables, read by (payer INN, document number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeCounterpart {
    /// A payment applied from the statement.
    StatementPayment {
        /// bank_payments.id.
        id: i64,
        /// Its operation id.
        operation_id: Uuid,
        /// Amount, currency, payer INN, number.
        amount: i64,
        /// Currency code.
        currency: String,
        /// Payer INN.
        payer_inn: String,
        /// Document number.
        document_number: String,
        /// Its document date.
        document_date: OffsetDateTime,
        /// A late notice with its match key names it.
        named_by_key: bool,
        /// A late notice names it, with its key or as a rival.
        named: bool,
    },
    /// An unmatched credit line.
    OpenLine {
        /// statement_lines.id.
        id: i64,
        /// Minor units.
        amount: i64,
        /// Currency code.
        currency: String,
        /// Payer INN.
        payer_inn: String,
        /// Document number.
        document_number: String,
        /// Its document date.
        document_date: time::Date,
        /// Its open discrepancy, if any.
        open_discrepancy: Option<i64>,
    },
}

/// A stored credit line neither matched nor judged: its day was open when it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLine {
    /// statement_lines.id.
    pub id: i64,
    /// Our account.
    pub account: String,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: String,
    /// The booking day.
    pub booking_date: time::Date,
    /// The document number.
    pub document_number: String,
    /// The document date.
    pub document_date: time::Date,
    /// The payer's INN.
    pub payer_inn: Option<String>,
    /// The bank's reference and the end-to-end id.
    pub bank_ids: Vec<String>,
}

/// A credited webhook payment no line is matched to and no `notice_without_line` names yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlinedPayment {
    /// bank_payments.id.
    pub id: i64,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: String,
    /// The document date.
    pub document_date: OffsetDateTime,
}

/// The days an import's account section covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionPeriod {
    /// The account.
    pub account: String,
    /// The first day.
    pub start: time::Date,
    /// The last day.
    pub end: time::Date,
    /// Its import is complete (or finishes in this batch).
    pub complete: bool,
}

/// A statement line to store, borrowed from the command that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatementLine<'a> {
    /// The import storing it first.
    pub import_id: i64,
    /// Our account.
    pub account: &'a str,
    /// Its fingerprint.
    pub fingerprint: [u8; 32],
    /// Its occurrence among identical lines of its file.
    pub occurrence: i64,
    /// `credit` or `debit`.
    pub direction: &'static str,
    /// `payment`, `reversal`, `own_transfer` or `bank_order`: only payments are matched.
    pub nature: &'static str,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: &'static str,
    /// The booking day.
    pub booking_date: time::Date,
    /// The document number.
    pub document_number: &'a str,
    /// The document date.
    pub document_date: time::Date,
    /// The counterparty's INN.
    pub payer_inn: Option<&'a str>,
    /// The counterparty's name.
    pub payer_name: Option<&'a str>,
    /// The counterparty's account.
    pub payer_account: Option<&'a str>,
    /// The counterparty's bank.
    pub payer_bik: Option<&'a str>,
    /// The bank's reference.
    pub bank_ref: Option<&'a str>,
    /// The end-to-end id.
    pub end_to_end_id: Option<&'a str>,
    /// The purpose.
    pub purpose: Option<&'a str>,
    /// The file line.
    pub source_line: i64,
    /// The document as the file gives it, JSON.
    pub raw: &'a str,
}

/// A payment a statement line may be: applied or received, not a late notice, not matched yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentCandidate {
    /// bank_payments.id.
    pub id: i64,
    /// Its operation id.
    pub operation_id: Uuid,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: String,
    /// The payer's INN.
    pub payer_inn: String,
    /// The document number.
    pub document_number: String,
    /// The document date.
    pub document_date: OffsetDateTime,
}

/// A line matched with a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMatch {
    /// The line.
    pub line_id: i64,
    /// The payment.
    pub payment_id: i64,
    /// `bank_ref`, `document`, `applied` or `late_notice`.
    pub rule: &'static str,
    /// Who (an operator's apply), if anyone.
    pub by: Option<String>,
}

/// A discrepancy found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDiscrepancy {
    /// Its kind's stored name.
    pub kind: &'static str,
    /// The line.
    pub line_id: Option<i64>,
    /// The payment.
    pub payment_id: Option<i64>,
    /// The account.
    pub account: Option<String>,
    /// The day judged.
    pub day: time::Date,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: String,
    /// The candidates, JSON.
    pub details: String,
}

/// A statement import a batch starts, or finds started or complete, by its identity (`ImportClaim::sha256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportClaim {
    /// The import's identity: the file's SHA-256, or SHA-256(the file's SHA-256 ‖ the account) for one account.
    pub sha256: [u8; 32],
    /// `1c`, `camt053` or `csv`.
    pub format: &'static str,
    /// The file's name.
    pub file_name: Option<String>,
    /// Statement lines in the file.
    pub line_count: i64,
    /// Who imports it.
    pub by: Option<String>,
}

/// The import row a claim inserted or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedImport {
    /// Its id.
    pub id: i64,
    /// This batch inserted it.
    pub inserted: bool,
    /// `loading` or `complete`.
    pub state: String,
}

/// One account section of an import, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSection {
    /// The import.
    pub import_id: i64,
    /// The account number.
    pub account: String,
    /// The currency code.
    pub currency: &'static str,
    /// The first day covered.
    pub period_start: time::Date,
    /// The last day covered.
    pub period_end: time::Date,
    /// Stated opening balance, minor units.
    pub opening: Option<i64>,
    /// Stated credits.
    pub credits: Option<i64>,
    /// Stated debits.
    pub debits: Option<i64>,
    /// Stated closing balance.
    pub closing: Option<i64>,
    /// Credit lines in the file.
    pub credit_lines: i64,
    /// Debit lines in the file.
    pub debit_lines: i64,
}

/// A reconciliation discrepancy as a batch locks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDiscrepancy {
    /// Its kind's stored name.
    pub kind: String,
    /// Its state's stored name: `open`, `resolved` or `accepted`.
    pub state: String,
}

/// A discrepancy leaving the `open` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscrepancyUpdate {
    /// The discrepancy.
    pub id: i64,
    /// `resolved` or `accepted`.
    pub state: &'static str,
    /// `applied`, `notice`, `matched` or `accepted`.
    pub resolution: &'static str,
    /// The operator's note.
    pub note: Option<String>,
    /// Who.
    pub by: Option<String>,
}

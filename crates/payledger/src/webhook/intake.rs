//! Bank webhook intake: parsing a notice from its raw bytes, submitting it to the ledger engine, and (in
//! async mode) the background applier that credits recorded notices.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use payledger_core::bank::MAX_DOCUMENT_NUMBER_LEN;
use payledger_core::{BankNotice, Inn, OperationId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::WebhookMode;
use crate::engine::batch::{WriteCommand, WriteOutcome};
use crate::engine::{EngineError, LedgerEngine};
pub use crate::fields::FieldErrors;
use crate::fields::{JsonObject, invalid, json_string, parse_amount};
use crate::store::batch::RejectedNotice;
use crate::store::{Store, kept_body};

/// The largest webhook body accepted, in bytes.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;
/// How many recorded notices the async applier takes per round.
const APPLIER_ROUND: i64 = 1024;
/// How often the async applier looks for notices recorded by other instances when nothing wakes it.
const APPLIER_POLL: Duration = Duration::from_millis(500);
/// How long the applier waits after a database failure before it tries again.
const APPLIER_BACKOFF: Duration = Duration::from_secs(1);

/// Parses a webhook body into a notice, reporting every bad field at once.
///
/// The amount is read from its literal JSON text (a number or a decimal string), never through a float.
pub fn parse_notice(body: &[u8]) -> Result<BankNotice, FieldErrors> {
    let mut fields = JsonObject::parse(body)?;
    // Every field is looked up before any is parsed, so a missing one is reported beside the bad ones.
    let operation_id = fields.required("operation_id");
    let amount = fields.required("amount");
    let payer_inn = fields.required("payer_inn");
    let document_number = fields.required("document_number");
    let document_date = fields.required("document_date");

    let operation_id = operation_id.and_then(|raw| {
        fields.check(
            "operation_id",
            json_string(raw).and_then(|s| Uuid::parse_str(&s).map_err(|_| "must be a UUID".into())),
        )
    });
    let amount = amount.and_then(|raw| fields.check("amount", parse_amount(raw)));
    let payer_inn = payer_inn.and_then(|raw| {
        fields.check("payer_inn", json_string(raw).and_then(|s| Inn::parse(&s).map_err(|e| e.to_string())))
    });
    let document_number = document_number.and_then(|raw| {
        fields.check(
            "document_number",
            json_string(raw).and_then(|s| {
                if s.trim().is_empty() {
                    Err("must not be blank".into())
                } else if s.chars().any(char::is_control) {
                    Err("must not contain control characters".into())
                } else if s.chars().count() > MAX_DOCUMENT_NUMBER_LEN {
                    Err(format!("must be at most {MAX_DOCUMENT_NUMBER_LEN} characters"))
                } else {
                    Ok(s)
                }
            }),
        )
    });
    let document_date = document_date
        .and_then(|raw| fields.check("document_date", json_string(raw).and_then(|s| parse_document_date(&s))));
    fields.finish()?;
    match (operation_id, amount, payer_inn, document_number, document_date) {
        (Some(operation_id), Some(amount), Some(payer_inn), Some(document_number), Some(document_date)) => {
            Ok(BankNotice {
                operation_id: OperationId(operation_id),
                amount,
                payer_inn,
                document_number,
                document_date,
            })
        }
        _ => Err(invalid("body", "is incomplete")),
    }
}

/// The earliest and latest document dates accepted, as UTC years.
const DOCUMENT_YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// Parses an RFC 3339 date-time into UTC, within [`DOCUMENT_YEARS`], truncated to whole microseconds.
///
/// Microseconds are the finest precision PostgreSQL stores; truncating here means an exact replay
/// compares equal to what was stored, on either backend.
fn parse_document_date(text: &str) -> Result<OffsetDateTime, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| "must be an RFC 3339 date-time, e.g. 2024-04-27T21:00:00Z".to_owned())?;
    let utc = parsed
        .checked_to_offset(time::UtcOffset::UTC)
        .filter(|date| DOCUMENT_YEARS.contains(&date.year()))
        .ok_or_else(|| format!("must be between the years {} and {}", DOCUMENT_YEARS.start(), DOCUMENT_YEARS.end()))?;
    utc.replace_nanosecond(utc.nanosecond() / 1_000 * 1_000).map_err(|_| "is not a valid time".to_owned())
}

/// The webhook intake service: knows the mode and talks to the engine; knows nothing of HTTP.
#[derive(Clone, Debug)]
pub struct Intake {
    engine: LedgerEngine,
    mode: WebhookMode,
    /// The reconciliation's date tolerance: a notice dated this many days from a line applied from the
    /// statement, with its payer, number and amount, is that line's late notice.
    tolerance_days: u32,
    applier_wakeup: std::sync::Arc<Notify>,
}

impl Intake {
    /// A service submitting to `engine`, applying at once or recording for the applier per `mode`, and
    /// judging late notices with the reconciliation's date tolerance.
    pub fn new(engine: LedgerEngine, mode: WebhookMode, tolerance_days: u32) -> Intake {
        Intake { engine, mode, tolerance_days, applier_wakeup: std::sync::Arc::new(Notify::new()) }
    }

    /// Whether the ledger writer is still taking commands.
    pub fn is_running(&self) -> bool {
        self.engine.is_running()
    }

    /// Records (and in sync mode applies) a notice exactly once by its operation id.
    pub async fn receive(&self, notice: BankNotice, raw: Bytes) -> Result<WriteOutcome, EngineError> {
        let outcome = self.engine.submit(self.command(notice, raw)).await?;
        self.received(&outcome);
        Ok(outcome)
    }

    /// The engine command that records (and in sync mode applies) `notice`, as [`Intake::receive`] submits it.
    pub fn command(&self, notice: BankNotice, raw: Bytes) -> WriteCommand {
        let apply = self.mode == WebhookMode::Sync;
        WriteCommand::IntakeNotice { notice, apply, raw, tolerance_days: self.tolerance_days }
    }

    /// Counts a notice's outcome, and wakes the async applier for a notice it is to credit.
    pub fn received(&self, outcome: &WriteOutcome) {
        let label = match outcome {
            WriteOutcome::NoticeApplied => "applied",
            WriteOutcome::NoticeAccepted => {
                self.applier_wakeup.notify_one();
                "accepted"
            }
            WriteOutcome::NoticeDuplicate => "duplicate",
            WriteOutcome::NoticeConflict { .. } => "conflict",
            // A replay of a notice that failed before is no new failure: alerts on "failed" see each once.
            WriteOutcome::NoticeFailed { replay: false, .. } => "failed",
            WriteOutcome::NoticeFailed { replay: true, .. } => "failed_replay",
            WriteOutcome::AlreadyHandled
            | WriteOutcome::Stored
            | WriteOutcome::NotRecorded
            | WriteOutcome::Balance(_)
            | WriteOutcome::Payout(_)
            | WriteOutcome::Jobs(_)
            | WriteOutcome::Deliveries(_)
            | WriteOutcome::Statement(_) => "other",
        };
        metrics::counter!("payledger_webhook_notices_total", "outcome" => label).increment(1);
    }

    /// Keeps a rejected notice for operators. Failing to keep it is logged, never shown to the sender.
    pub async fn reject(&self, reason: &str, details: &FieldErrors, body: &[u8]) {
        if let Err(error) = self.engine.submit(Intake::rejection(reason, details, body)).await {
            tracing::warn!(%error, "could not keep a rejected notice");
        }
    }

    /// The engine command that keeps a rejected notice for operators, counted as rejected.
    pub fn rejection(reason: &str, details: &FieldErrors, body: &[u8]) -> WriteCommand {
        metrics::counter!("payledger_webhook_notices_total", "outcome" => "rejected").increment(1);
        WriteCommand::RecordRejected(RejectedNotice {
            reason: reason.to_owned(),
            details: serde_json::to_string(details).unwrap_or_default(),
            body: kept_body(body),
            received_at: OffsetDateTime::now_utc(),
        })
    }

    /// Runs the async-mode applier until `shutdown` turns true: it credits every recorded notice,
    /// including those left by a crash or by other instances.
    pub async fn run_applier(self, store: Store, mut shutdown: watch::Receiver<bool>) {
        tracing::debug!("webhook applier started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let waiting = match store.waiting_notices(APPLIER_ROUND).await {
                Ok(waiting) => waiting,
                Err(error) => {
                    tracing::warn!(%error, "async applier could not read waiting notices");
                    tokio::select! {
                        _ = tokio::time::sleep(APPLIER_BACKOFF) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if waiting.is_empty() {
                tokio::select! {
                    _ = self.applier_wakeup.notified() => {}
                    _ = tokio::time::sleep(APPLIER_POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let mut round = tokio::task::JoinSet::new();
            let mut seen = HashSet::new();
            for notice in waiting {
                if seen.insert(notice.operation_id) {
                    let engine = self.engine.clone();
                    let tolerance_days = self.tolerance_days;
                    let command = WriteCommand::ApplyRecorded { notice, tolerance_days };
                    round.spawn(async move { engine.submit(command).await });
                }
            }
            let mut failed = false;
            while let Some(result) = round.join_next().await {
                failed |= !matches!(result, Ok(Ok(_)));
            }
            if failed {
                tokio::time::sleep(APPLIER_BACKOFF).await;
            }
        }
        tracing::debug!("webhook applier stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    const VALID: &str = r#"{"operation_id": "ccf0a86d-041b-4991-bcf7-e2352f7b8a4a", "amount": 145000, "payer_inn": "1234567890", "document_number": "PAY-328", "document_date": "2024-04-27T21:00:00Z"}"#;

    fn with(field: &str, value: &str) -> String {
        let mut map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(VALID).unwrap_or_default();
        match RawValue::from_string(value.to_owned()) {
            Ok(raw) => {
                map.insert(field.to_owned(), raw);
            }
            Err(_) => {
                map.remove(field);
            }
        }
        serde_json::to_string(&map).unwrap_or_default()
    }

    fn error_of(body: &str) -> Option<(String, String)> {
        parse_notice(body.as_bytes()).err().and_then(|errors| errors.into_iter().next())
    }

    #[test]
    fn the_original_example_parses_exactly() {
        let notice = parse_notice(VALID.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(notice.amount.minor(), 14_500_000);
        assert_eq!(notice.payer_inn.as_str(), "1234567890");
        assert_eq!(notice.document_number, "PAY-328");
    }

    #[test]
    fn amounts_come_from_their_literal_text() {
        let amount = |v: &str| parse_notice(with("amount", v).as_bytes()).map(|n| n.amount.minor());
        assert_eq!(amount("\"1500.25\""), Ok(150_025));
        assert_eq!(amount("0.1"), Ok(10));
        assert_eq!(amount("999999999999.99"), Ok(99_999_999_999_999));
        assert!(amount("90071992547409.93").is_err(), "above the per-payment ceiling");
        assert!(amount("1.005").is_err());
        assert!(amount("\"1e3\"").is_err());
        assert!(amount("true").is_err());
    }

    #[test]
    fn dates_are_kept_in_utc_to_the_microsecond() {
        let date = |v: &str| parse_notice(with("document_date", v).as_bytes()).map(|n| n.document_date);
        let precise = date("\"2024-04-27T21:00:00.123456789Z\"");
        assert_eq!(precise.map(|d| d.nanosecond()), Ok(123_456_000));
        assert_eq!(date("\"2024-04-28T00:00:00+03:00\""), date("\"2024-04-27T21:00:00Z\""));
        assert!(date("\"2024-06-30T23:59:60Z\"").is_ok(), "a leap second is a valid RFC 3339 time");
    }

    #[test]
    fn escaped_keys_and_nul_bytes_are_handled() {
        let escaped = VALID.replace("\"operation_id\"", "\"operation\\u005fid\"");
        assert!(parse_notice(escaped.as_bytes()).is_ok());
        assert!(!kept_body(b"a\0b").contains('\0'));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(error_of(&with("operation_id", "\"nope\"")).map(|e| e.0), Some("operation_id".into()));
        assert_eq!(error_of(&with("amount", "0")).map(|e| e.0), Some("amount".into()));
        assert_eq!(error_of(&with("amount", "\"abc\"")).map(|e| e.0), Some("amount".into()));
        assert_eq!(error_of(&with("payer_inn", "\"123\"")).map(|e| e.0), Some("payer_inn".into()));
        assert_eq!(error_of(&with("payer_inn", "1234567890")).map(|e| e.0), Some("payer_inn".into()));
        assert_eq!(error_of(&with("document_number", "\"  \"")).map(|e| e.0), Some("document_number".into()));
        assert_eq!(error_of(&with("document_date", "\"27.04.2024\"")).map(|e| e.0), Some("document_date".into()));
        assert_eq!(error_of(&with("document_date", "20240427")).map(|e| e.0), Some("document_date".into()));
        assert_eq!(error_of(&with("document_number", "\"X\\u0000\"")).map(|e| e.0), Some("document_number".into()));
        for extreme in ["\"9999-12-31T23:59:59-01:00\"", "\"0000-01-01T00:00:00+01:00\"", "\"1899-12-31T23:59:59Z\""] {
            assert_eq!(
                error_of(&with("document_date", extreme)).map(|e| e.0),
                Some("document_date".into()),
                "{extreme}"
            );
        }
        assert_eq!(error_of("[1, 2]").map(|e| e.0), Some("body".into()));
        assert_eq!(error_of("{\"amount\": ").map(|e| e.0), Some("body".into()));
        let all = parse_notice(b"{}").err().unwrap_or_default();
        assert_eq!(all.len(), 5);
    }
}

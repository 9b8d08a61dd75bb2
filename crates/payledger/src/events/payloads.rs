//! The `data` of each event: the resource as the API shows it, as JSON text, without its `version` (the
//! event's position in the log, added when the body is built: [`body`]). Nothing here ever holds a card or
//! account number, a password, a secret or a token: a payout is shown without its recipient, a rejected notice
//! without its body.

use payledger_core::money::format_minor;
use payledger_core::payout::PayoutStatus;
use payledger_core::{BankNotice, Currency, NoticeField};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::batch::{ActivityLine, NewDiscrepancy, PayoutSource, PayoutState, RejectedNotice};
use crate::timefmt::serde_rfc3339;
use crate::views::TransactionObject;

/// Serializes a payload; these plain structs cannot fail, and an empty object would still be valid JSON.
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

/// An amount as a decimal string with its currency's minor digits (2 for a code payledger does not know).
fn amount_text(minor: i64, currency: &str) -> String {
    format_minor(minor, Currency::from_code(currency).map_or(2, |c| c.minor_digits()))
}

/// A bank payment, credited to the organization whose INN it carries.
#[derive(Serialize)]
struct BankPayment<'a> {
    operation_id: Uuid,
    organization_inn: String,
    amount: String,
    currency: &'a str,
    document_number: &'a str,
    #[serde(with = "serde_rfc3339")]
    document_date: OffsetDateTime,
    status: &'a str,
    /// `webhook` (the bank's notice) or `statement` (credited from a statement line).
    source: &'a str,
    transaction_id: Uuid,
}

/// `bank_payment.credited`.
pub fn credited(notice: &BankNotice, source: &str, transaction_id: Uuid) -> String {
    json(&BankPayment {
        operation_id: notice.operation_id.0,
        organization_inn: notice.payer_inn.to_string(),
        amount: notice.amount.to_decimal_string(),
        currency: notice.amount.currency().code(),
        document_number: &notice.document_number,
        document_date: notice.document_date,
        status: "applied",
        source,
        transaction_id,
    })
}

/// `bank_payment.conflict`: the operation id and which fields of the later notice differ from the stored one.
pub fn conflict(notice: &BankNotice, fields: &[NoticeField]) -> String {
    #[derive(Serialize)]
    struct Conflict<'a> {
        operation_id: Uuid,
        organization_inn: String,
        differing_fields: Vec<&'a str>,
    }
    json(&Conflict {
        operation_id: notice.operation_id.0,
        organization_inn: notice.payer_inn.to_string(),
        differing_fields: fields.iter().map(|field| field.name()).collect(),
    })
}

/// `bank_payment.rejected`: why, and the fields' errors; never the body (it is the sender's, unchecked).
pub fn rejected(notice: &RejectedNotice) -> String {
    #[derive(Serialize)]
    struct Rejected<'a> {
        reason: &'a str,
        errors: Box<serde_json::value::RawValue>,
        #[serde(with = "serde_rfc3339")]
        received_at: OffsetDateTime,
    }
    let errors = serde_json::value::RawValue::from_string(notice.details.clone())
        .or_else(|_| serde_json::value::RawValue::from_string("null".to_owned()));
    match errors {
        Ok(errors) => json(&Rejected { reason: &notice.reason, errors, received_at: notice.received_at }),
        Err(_) => "{}".to_owned(),
    }
}

/// `balance.*`: the user's history line, exactly as `GET /api/users/{id}/transactions/` shows it.
pub fn balance_line(line: &ActivityLine) -> String {
    json(&TransactionObject::from_line(line))
}

/// A payout as `GET /api/v1/payouts/{id}/` shows it, without the recipient (an event never carries a card or
/// account number, masked or not: fetch the payout for it).
#[derive(Serialize)]
struct Payout<'a> {
    id: Uuid,
    amount: String,
    currency: &'a str,
    description: &'a str,
    status: &'a str,
    failure_reason: Option<&'a str>,
    attempts: i32,
    gateway_reference: Option<&'a str>,
    source: Option<Source>,
    #[serde(with = "serde_rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "serde_rfc3339")]
    updated_at: OffsetDateTime,
    /// For `payout.status_changed`: the status before.
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    /// For `payout.status_changed`: the status after (also `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

/// Where a payout's money comes from, as the API shows it.
#[derive(Serialize)]
struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_inn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<i64>,
}

/// `payout.created` (no `from`) or `payout.status_changed` (`from` and `to`).
pub fn payout(state: &PayoutState, from: Option<PayoutStatus>) -> String {
    let source = state.source.as_ref().map(|(source, _)| match source {
        PayoutSource::Organization(inn) => Source { organization_inn: Some(inn.to_string()), user_id: None },
        PayoutSource::User(user) => Source { organization_inn: None, user_id: Some(user.get()) },
    });
    json(&Payout {
        id: state.id,
        amount: amount_text(state.amount, state.currency),
        currency: state.currency,
        description: &state.description,
        status: state.status.as_str(),
        failure_reason: state.failure_reason.as_deref(),
        attempts: state.attempts,
        gateway_reference: state.gateway_reference.as_deref(),
        source,
        created_at: state.created_at,
        updated_at: state.updated_at,
        from: from.map(PayoutStatus::as_str),
        to: from.map(|_| state.status.as_str()),
    })
}

/// `statement.discrepancy_opened`: what reconciliation found (its id is in `GET /api/v1/reconciliation/`).
pub fn discrepancy(found: &NewDiscrepancy) -> String {
    #[derive(Serialize)]
    struct Discrepancy<'a> {
        kind: &'a str,
        statement_line_id: Option<i64>,
        bank_payment_id: Option<i64>,
        account: Option<&'a str>,
        day: String,
        amount: String,
        currency: &'a str,
    }
    json(&Discrepancy {
        kind: found.kind,
        statement_line_id: found.line_id,
        bank_payment_id: found.payment_id,
        account: found.account.as_deref(),
        day: found.day.to_string(),
        amount: amount_text(found.amount, &found.currency),
        currency: &found.currency,
    })
}

/// `ping`: what an operator's test sends.
pub fn ping(endpoint_id: &str) -> String {
    json(&serde_json::json!({ "endpoint_id": endpoint_id, "message": "a test event from payledger" }))
}

/// The body a receiver gets: `{"type", "timestamp", "data"}`, with the event's `version` added to `data` (the
/// stored data is a JSON object without it). Built at every attempt from the stored event, so it is the same
/// bytes every time.
pub fn body(kind: &str, created_at: OffsetDateTime, data: &str, version: i64) -> String {
    let timestamp = crate::timefmt::rfc3339(created_at);
    let data = data.trim();
    let fields = data.strip_prefix('{').and_then(|inner| inner.strip_suffix('}')).map(str::trim);
    let data = match fields {
        Some("") | None => format!("{{\"version\":{version}}}"),
        Some(fields) => format!("{{{fields},\"version\":{version}}}"),
    };
    format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":{data}}}",
        serde_json::Value::from(kind),
        serde_json::Value::from(timestamp)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_adds_the_version_to_the_data() {
        let at = time::macros::datetime!(2026-12-06 10:00:00 UTC);
        let text = body("payout.created", at, r#"{"id":"x","amount":"10.00"}"#, 42);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["type"], "payout.created");
        assert_eq!(value["timestamp"], "2026-12-06T10:00:00Z");
        assert_eq!(value["data"]["version"], 42);
        assert_eq!(value["data"]["amount"], "10.00");
        let empty = body("ping", at, "{}", 7);
        let value: serde_json::Value = serde_json::from_str(&empty).unwrap_or_default();
        assert_eq!(value["data"]["version"], 7);
    }
}

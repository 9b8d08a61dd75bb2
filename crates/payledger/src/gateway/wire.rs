//! The HTTP gateway's protocol: the JSON body and the headers payledger sends, and how the gateway's answer
//! is read.

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::masking::{excerpt, mask_digit_runs, truncate_chars};
use super::{GatewayError, GatewayOutcome, GatewayRecipient, GatewayRequest};

/// The header carrying the payout id, so the gateway can answer a retry with the first outcome.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
///
/// The timestamp is signed with the body so a receiver can refuse replays of old requests.
pub const SIGNATURE_HEADER: &str = "X-Payledger-Signature";

/// How long a gateway's decline reason may be before it is cut: it becomes a payout's failure reason.
const MAX_REASON_CHARS: usize = 200;

/// The request body on the wire.
#[derive(Serialize)]
struct WireRequest<'a> {
    payout_id: Uuid,
    amount: String,
    currency: &'a str,
    recipient: WireRecipient<'a>,
    description: &'a str,
}

/// The recipient on the wire, in the same shape as the API's `recipient_details`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireRecipient<'a> {
    Card { number: &'a str, holder: &'a str },
    BankAccount { account_number: &'a str, bik: &'a str, holder: &'a str },
}

/// The JSON body of the POST for `request`, with the recipient in full and the amount as an exact decimal.
pub(super) fn wire_body(request: &GatewayRequest) -> Result<Vec<u8>, GatewayError> {
    let recipient = match &request.recipient {
        GatewayRecipient::Card { number, holder } => WireRecipient::Card { number, holder },
        GatewayRecipient::BankAccount { account_number, bik, holder } => {
            WireRecipient::BankAccount { account_number, bik, holder }
        }
    };
    let wire = WireRequest {
        payout_id: request.payout_id,
        amount: request.amount_decimal()?,
        currency: &request.currency,
        recipient,
        description: &request.description,
    };
    serde_json::to_vec(&wire).map_err(|error| GatewayError::Permanent(format!("encoding the gateway request: {error}")))
}

/// A 2xx answer's body. Every field is optional so that any JSON object parses, and the checks below
/// decide what it means.
#[derive(Deserialize)]
struct WireAnswer {
    status: Option<String>,
    reference: Option<String>,
    reason: Option<String>,
}

/// Maps an HTTP answer to the gateway's verdict.
pub(super) fn interpret(status: StatusCode, body: Result<Bytes, String>) -> Result<GatewayOutcome, GatewayError> {
    if status.is_success() {
        let body = body.map_err(|error| {
            GatewayError::Transient(format!("gateway answered {status} but its body could not be read: {error}"))
        })?;
        let unrecognised = || {
            GatewayError::Transient(format!("gateway answered {status} with an unrecognised body: {}", excerpt(&body)))
        };
        let answer: WireAnswer = serde_json::from_slice(&body).map_err(|_| unrecognised())?;
        return match answer.status.as_deref() {
            // Without a reference we cannot prove the payment later; asking again with the same key is safe.
            Some("completed") => match answer.reference {
                Some(reference) if !reference.trim().is_empty() => Ok(GatewayOutcome::Completed { reference }),
                _ => Err(unrecognised()),
            },
            // A decline is final even when the gateway gives no reason; retrying would only be declined again.
            Some("declined") => {
                let reason = answer.reason.filter(|reason| !reason.trim().is_empty());
                let reason = reason
                    .map_or_else(|| "declined".to_owned(), |r| truncate_chars(&mask_digit_runs(&r), MAX_REASON_CHARS));
                Ok(GatewayOutcome::Declined { reason })
            }
            _ => Err(unrecognised()),
        };
    }
    let text = body.map_or_else(|_| "(body unreadable)".to_owned(), |body| excerpt(&body));
    let message = format!("gateway answered {status}: {text}");
    if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(GatewayError::Transient(message))
    } else {
        Err(GatewayError::Permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_request(number: &str) -> GatewayRequest {
        GatewayRequest {
            payout_id: Uuid::from_u128(0x1234),
            amount_minor: 150_000,
            currency: "RUB".to_owned(),
            minor_digits: 2,
            recipient: GatewayRecipient::Card { number: number.to_owned(), holder: "Иван Иванов".to_owned() },
            description: "Тестовая выплата".to_owned(),
        }
    }

    #[test]
    fn the_wire_body_carries_full_details_and_an_exact_amount() {
        let request = card_request("4111111111111111");
        let body: serde_json::Value = serde_json::from_slice(&wire_body(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "payout_id": "00000000-0000-0000-0000-000000001234",
                "amount": "1500.00",
                "currency": "RUB",
                "recipient": {"type": "card", "number": "4111111111111111", "holder": "Иван Иванов"},
                "description": "Тестовая выплата",
            })
        );
    }

    #[test]
    fn answers_are_interpreted_by_status_and_body() {
        let ok = |body: &str| interpret(StatusCode::OK, Ok(Bytes::from(body.to_owned())));
        assert_eq!(
            ok(r#"{"status":"completed","reference":"gw-1"}"#),
            Ok(GatewayOutcome::Completed { reference: "gw-1".to_owned() })
        );
        assert_eq!(
            ok(r#"{"status":"declined","reason":"insufficient_funds"}"#),
            Ok(GatewayOutcome::Declined { reason: "insufficient_funds".to_owned() })
        );
        assert_eq!(ok(r#"{"status":"declined"}"#), Ok(GatewayOutcome::Declined { reason: "declined".to_owned() }));
        for garbage in [r#"{"status":"completed"}"#, r#"{"status":"pending"}"#, "[]", "oops", ""] {
            assert!(matches!(ok(garbage), Err(GatewayError::Transient(_))), "{garbage}");
        }
        let status = |code: u16| interpret(StatusCode::from_u16(code).unwrap(), Ok(Bytes::from_static(b"nope")));
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(status(code), Err(GatewayError::Transient(_))), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 409, 422] {
            assert!(matches!(status(code), Err(GatewayError::Permanent(_))), "{code}");
        }
        assert!(matches!(interpret(StatusCode::OK, Err("reset".to_owned())), Err(GatewayError::Transient(_))));
    }
}

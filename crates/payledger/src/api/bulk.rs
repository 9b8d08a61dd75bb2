//! `POST /api/v1/batch/`: up to 1,000 operations in one request, each answered as its single endpoint
//! answers it, applied each on its own or (`"atomic": true`) all in one ledger transaction or none.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use payledger_core::OperationId;
use serde_json::value::RawValue;

use crate::AppState;
use crate::access_log::Client;
use crate::api::access::Caller;
use crate::api::balances::{OPERATION_KINDS, OperationKind, balance_answer, json_response};
pub use crate::api::bulk_schema::BatchOperation;
use crate::api::bulk_schema::{BatchAnswer, BatchRequest};
use crate::api::extract::json_body;
use crate::api::webhook::{check_network, check_signature, notice_answer};
use crate::balances::Idempotency;
use crate::bulk::{AtomicResult, Bulk, BulkOperation};
use crate::config::ConflictPolicy;
use crate::engine::EngineError;
use crate::engine::balances::BalanceOutcome;
use crate::engine::batch::WriteOutcome;
use crate::error::{ApiError, ErrorBody};
use crate::fields::{FieldErrors, JsonObject, invalid, json_string};
use crate::idempotency::IdempotencyKey;
use crate::webhook::intake::parse_notice;

/// The most operations one request may carry.
pub const MAX_BATCH_OPERATIONS: usize = 1000;
/// The largest batch body accepted, in bytes.
pub const MAX_BATCH_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The type of a bank notice operation.
const BANK_NOTICE: &str = "bank_notice";

/// How one operation's answer is made once its outcome is known.
#[derive(Clone)]
enum Answerer {
    /// A bank notice: the webhook's answer.
    Notice(OperationId),
    /// A balance operation (valid, or invalid and kept under its key): its endpoint's answer.
    Balance(OperationKind),
    /// An invalid operation: 400 naming its fields (an invalid notice is also kept for operators).
    Invalid(FieldErrors),
}

/// One operation as read from the request.
struct Parsed {
    /// What goes to the ledger, if anything.
    operation: Option<BulkOperation>,
    answerer: Answerer,
    /// Why it is invalid, if it is.
    invalid: Option<FieldErrors>,
}

impl Parsed {
    fn invalid(details: FieldErrors) -> Parsed {
        Parsed { operation: None, answerer: Answerer::Invalid(details.clone()), invalid: Some(details) }
    }
}

/// One operation's answer: what its single endpoint would have answered.
struct Answer {
    status: u16,
    /// JSON text.
    body: String,
    replayed: bool,
}

impl Answer {
    fn error(error: ApiError) -> Answer {
        let (status, body) = error.status_and_body();
        Answer::of(status, &body)
    }

    fn of(status: StatusCode, body: &ErrorBody) -> Answer {
        let stored = json_response(status, body);
        Answer { status: stored.status, body: stored.body, replayed: false }
    }
}

/// Apply up to 1,000 operations in one request.
///
/// Each operation is one of the single endpoints' requests with a `type` (`bank_notice`, `deposit`,
/// `withdraw`, `reserve`, `capture`, `release`, `transfer`) and, for a balance operation, its own
/// `idempotency_key` (required). Each gets the answer its single endpoint would give, under the same rules:
/// the same key with the same valid request replays its stored answer (from a batch or a single request alike),
/// another request with it is refused, and every change is audited under the caller. Without `atomic`, each
/// operation is applied or refused on its own and an invalid one gets its 400 in its place. With
/// `"atomic": true`, either every operation takes effect, in one ledger transaction, or none does (409
/// `batch_not_applied`, each refused operation's answer in its place and 424 `not_applied` for the others);
/// any invalid operation then refuses the whole request with 400. Bank notices need what the bank webhook
/// needs besides the role: the request signed with the bank's secret (`X-Payledger-Signature` over the whole
/// body) when one is configured, from an allowed network.
#[utoipa::path(
    post,
    path = "/v1/batch/",
    tag = "batch",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every operation was applied, refused or answered on its own (or, atomic, all were applied); one result per operation, in order", body = BatchAnswer),
        (status = 400, description = "Not a batch: `details` names `body`, `atomic`, `operations`, `operations[i]` (not an object), or `operations[i].idempotency_key` / `operations[i].operation_id` (used twice in the request); atomic, also an invalid operation (`operations[i].<field>`)", body = ErrorBody),
        (status = 401, description = "Bank notices without a valid `X-Payledger-Signature` (when PAYLEDGER_WEBHOOK_SECRET is set)", body = ErrorBody),
        (status = 403, description = "Bank notices from a network outside PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS", body = ErrorBody),
        (status = 409, description = "`batch_not_applied`: atomic, and an operation was refused; nothing was applied", body = BatchAnswer),
        (status = 413, description = "Body over 2 MiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 503, description = "Nothing was applied (`overloaded`, `unavailable`), or the outcome is not known (`unconfirmed`: an atomic batch whose commit failed, or any batch that outlived the request timeout, some of whose operations may have been applied): retry the same request, whose keys make that safe", body = ErrorBody),
    )
)]
pub async fn apply_batch(
    State(state): State<AppState>,
    caller: Caller,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = json_body(&headers, body, MAX_BATCH_BODY_BYTES).await?;
    let (atomic, parsed) = parse_batch(&bytes, &caller.scope()).map_err(ApiError::InvalidData)?;
    if parsed.iter().any(|p| matches!(p.answerer, Answerer::Notice(_)) || is_rejected_notice(p)) {
        check_network(&state, &client).await?;
        check_signature(&state, &headers, &bytes).await?;
    }
    let bulk = Bulk { balances: &state.balances, intake: &state.intake };
    let by = Some(caller.name().to_owned());
    let policy = state.webhook_conflict;
    if atomic {
        let invalid: FieldErrors = parsed
            .iter()
            .enumerate()
            .filter_map(|(index, p)| p.invalid.as_ref().map(|details| (index, details)))
            .flat_map(|(index, details)| {
                details.iter().map(move |(f, why)| (format!("operations[{index}].{f}"), why.clone()))
            })
            .collect();
        if !invalid.is_empty() {
            return Err(ApiError::InvalidData(invalid));
        }
        let (answerers, operations): (Vec<_>, Vec<_>) =
            parsed.into_iter().filter_map(|p| Some((p.answerer, p.operation?))).unzip();
        let accept = match policy {
            ConflictPolicy::Record => accept_recording_conflicts,
            ConflictPolicy::Reject => accept_refusing_conflicts,
        };
        let result = bulk.apply_atomic(operations, by, accept).await?;
        return Ok(atomic_response(&answerers, result, accept, policy));
    }
    let mut answerers = Vec::with_capacity(parsed.len());
    let mut operations = Vec::with_capacity(parsed.len());
    let mut submitted = Vec::with_capacity(parsed.len());
    for p in parsed {
        submitted.push(p.operation.is_some());
        operations.extend(p.operation);
        answerers.push(p.answerer);
    }
    let mut outcomes = bulk.apply_each(operations, by).await?.into_iter();
    let answers = answerers
        .into_iter()
        .zip(submitted)
        .map(|(answerer, submitted)| {
            let outcome =
                if submitted { outcomes.next().unwrap_or(Err(EngineError::Stopped)) } else { Ok(WriteOutcome::Stored) };
            answer(answerer, outcome, policy)
        })
        .collect::<Vec<_>>();
    Ok(batch_response(StatusCode::OK, None, &answers))
}

fn is_rejected_notice(parsed: &Parsed) -> bool {
    matches!(parsed.operation, Some(BulkOperation::RejectedNotice { .. }))
}

/// Reads the request: whether it is atomic, and each operation. `Err` for a request that is not a batch.
fn parse_batch(bytes: &[u8], scope: &str) -> Result<(bool, Vec<Parsed>), FieldErrors> {
    let mut body = JsonObject::parse(bytes)?;
    let atomic = body.optional_field("atomic", |raw| match raw.get() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_owned()),
    });
    let operations = body.required("operations").and_then(|raw| {
        let operations = serde_json::from_str::<Vec<&RawValue>>(raw.get());
        body.check("operations", operations.map_err(|_| "must be an array of operations".to_owned()))
    });
    if let Some(operations) = &operations
        && !(1..=MAX_BATCH_OPERATIONS).contains(&operations.len())
    {
        body.error("operations", &format!("must hold 1 to {MAX_BATCH_OPERATIONS} operations"));
    }
    // The schema's items are objects: anything else is not an operation to answer in its place.
    for (index, raw) in operations.iter().flatten().enumerate() {
        if !raw.get().starts_with('{') {
            body.error(&format!("operations[{index}]"), "must be a JSON object");
        }
    }
    body.finish()?;
    let parsed: Vec<Parsed> =
        operations.unwrap_or_default().into_iter().map(|raw| parse_operation(raw, scope)).collect();
    refuse_repeats(&parsed)?;
    Ok((atomic.unwrap_or(false), parsed))
}

/// What the fuzz target checks of a batch body (`fuzzing::batch_body`): whether it is atomic, how many
/// operations it carries, and how many of them are invalid.
pub(crate) fn batch_summary(bytes: &[u8]) -> Result<(bool, usize, usize), FieldErrors> {
    let (atomic, parsed) = parse_batch(bytes, "fuzz")?;
    Ok((atomic, parsed.len(), parsed.iter().filter(|p| p.invalid.is_some()).count()))
}

/// Refuses two operations with one idempotency key or one bank operation id: which of them was meant is
/// not for the server to guess.
fn refuse_repeats(parsed: &[Parsed]) -> Result<(), FieldErrors> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(parsed.len());
    for (index, p) in parsed.iter().enumerate() {
        let (field, identity) = match (&p.operation, &p.answerer) {
            (Some(BulkOperation::Balance { idempotency, .. }), _) => ("idempotency_key", idempotency.key.to_string()),
            (Some(BulkOperation::Refused { key, .. }), _) => ("idempotency_key", key.to_string()),
            (_, Answerer::Notice(id)) => ("operation_id", format!("notice:{id}")),
            _ => continue,
        };
        if let Some(first) = seen.insert(identity, index) {
            return Err(invalid(&format!("operations[{index}].{field}"), &format!("repeats operations[{first}]'s")));
        }
    }
    Ok(())
}

/// Reads one operation: its type, its key, and the fields its single endpoint reads.
fn parse_operation(raw: &RawValue, scope: &str) -> Parsed {
    let bytes = Bytes::copy_from_slice(raw.get().as_bytes());
    let object = match JsonObject::parse(&bytes) {
        Ok(object) => object,
        Err(_) => return Parsed::invalid(invalid("body", "must be a JSON object")),
    };
    let type_name = match object.optional("type").map(json_string) {
        None => return Parsed::invalid(invalid("type", "this field is required")),
        Some(Err(_)) => return Parsed::invalid(invalid("type", "must be a string")),
        Some(Ok(name)) => name,
    };
    if type_name == BANK_NOTICE {
        return match parse_notice(&bytes) {
            Ok(notice) => {
                let id = notice.operation_id;
                Parsed {
                    operation: Some(BulkOperation::Notice { notice, raw: bytes }),
                    answerer: Answerer::Notice(id),
                    invalid: None,
                }
            }
            Err(details) => Parsed {
                operation: Some(BulkOperation::RejectedNotice { details: details.clone(), raw: bytes }),
                answerer: Answerer::Invalid(details.clone()),
                invalid: Some(details),
            },
        };
    }
    let Some(kind) = OPERATION_KINDS.iter().find(|(name, _)| *name == type_name).map(|(_, kind)| *kind) else {
        return Parsed::invalid(invalid(
            "type",
            "must be one of bank_notice, deposit, withdraw, reserve, capture, release, transfer",
        ));
    };
    let key = match object.optional("idempotency_key").map(json_string) {
        None => return Parsed::invalid(invalid("idempotency_key", "this field is required")),
        Some(Err(_)) => return Parsed::invalid(invalid("idempotency_key", "must be a string")),
        Some(Ok(text)) => match IdempotencyKey::parse(text.as_bytes(), scope) {
            Ok(key) => key,
            Err(error) => return Parsed::invalid(invalid("idempotency_key", &error.to_string())),
        },
    };
    match (kind.parse)(&bytes) {
        Ok(operation) => Parsed {
            operation: Some(BulkOperation::Balance {
                operation,
                idempotency: Idempotency { key, endpoint: kind.endpoint, render: kind.render },
            }),
            answerer: Answerer::Balance(kind),
            invalid: None,
        },
        // Kept under its key like the single endpoint's 400: the same operation gets it again, another
        // cannot use the key.
        Err(details) => {
            let (status, body) = ApiError::InvalidData(details.clone()).status_and_body();
            let response = json_response(status, &body);
            Parsed {
                operation: Some(BulkOperation::Refused { key, endpoint: kind.endpoint, raw: bytes, response }),
                answerer: Answerer::Balance(kind),
                invalid: Some(details),
            }
        }
    }
}

/// One operation's answer from its outcome.
fn answer(answerer: Answerer, outcome: Result<WriteOutcome, EngineError>, policy: ConflictPolicy) -> Answer {
    match (answerer, outcome) {
        // An invalid notice is answered 400 whether or not keeping it for operators worked, as the webhook
        // answers it.
        (Answerer::Invalid(details), _) => Answer::error(ApiError::InvalidData(details)),
        (_, Err(error)) => engine_failure(error),
        (Answerer::Balance(kind), Ok(WriteOutcome::Balance(outcome))) => {
            match balance_answer(outcome, kind.render, kind.endpoint) {
                Ok((response, replayed)) => Answer { status: response.status, body: response.body, replayed },
                Err(error) => Answer::error(error),
            }
        }
        (Answerer::Notice(id), Ok(outcome)) => match notice_answer(outcome, id, policy) {
            // Serializing this plain struct cannot fail; an empty object would still be valid JSON.
            Ok(answer) => Answer {
                status: StatusCode::OK.as_u16(),
                body: serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into()),
                replayed: false,
            },
            Err(error) => Answer::error(error),
        },
        (Answerer::Balance(kind), Ok(other)) => Answer::error(ApiError::Internal(format!(
            "the ledger engine answered a {} operation with {other:?}",
            kind.endpoint
        ))),
    }
}

/// Whether an atomic batch may commit with this outcome: whatever its single endpoint answers with a 2xx.
fn accept_recording_conflicts(outcome: &WriteOutcome) -> bool {
    matches!(outcome, WriteOutcome::NoticeConflict { .. }) || accept_refusing_conflicts(outcome)
}

/// The same, when a conflicting notice is answered 409 (`PAYLEDGER_WEBHOOK_CONFLICT=reject`).
fn accept_refusing_conflicts(outcome: &WriteOutcome) -> bool {
    match outcome {
        WriteOutcome::NoticeApplied
        | WriteOutcome::NoticeAccepted
        | WriteOutcome::NoticeDuplicate
        | WriteOutcome::AlreadyHandled => true,
        WriteOutcome::Balance(BalanceOutcome::Executed { result, .. }) => result.is_ok(),
        WriteOutcome::Balance(BalanceOutcome::Replayed(response)) => (200..300).contains(&response.status),
        _ => false,
    }
}

/// The answer to an atomic batch: 200 with every operation's answer, or 409 with the refused operations'
/// answers and `not_applied` for the others.
fn atomic_response(
    answerers: &[Answerer],
    result: AtomicResult,
    accept: crate::engine::Accept,
    policy: ConflictPolicy,
) -> Response {
    let AtomicResult { committed, outcomes } = result;
    let mut refused = None;
    let answers = answerers
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (answerer, outcome))| match outcome {
            Some(outcome) if committed || !accept(&outcome) => {
                if !committed {
                    refused.get_or_insert(index);
                }
                answer(answerer.clone(), Ok(outcome), policy)
            }
            _ => not_applied(),
        })
        .collect::<Vec<_>>();
    match refused {
        None if committed => batch_response(StatusCode::OK, None, &answers),
        refused => {
            let first = refused.map_or_else(|| "an operation".to_owned(), |index| format!("operations[{index}]"));
            let error = format!("Nothing was applied: {first} was refused, and the batch is atomic");
            batch_response(StatusCode::CONFLICT, Some((&error, "batch_not_applied")), &answers)
        }
    }
}

/// The answer of an operation the ledger failed, without a log line of its own: the engine logged the
/// failure once for its whole batch, which may be hundreds of this request's operations.
fn engine_failure(error: EngineError) -> Answer {
    let (status, body) = ApiError::Engine(error).unlogged_status_and_body();
    Answer::of(status, &body)
}

fn not_applied() -> Answer {
    let body = ErrorBody {
        error: "Not applied by this request: another operation of this atomic batch was refused".into(),
        code: "not_applied",
        details: None,
        available: None,
        reserved: None,
        line: None,
    };
    Answer::of(StatusCode::FAILED_DEPENDENCY, &body)
}

/// `{"error"?, "code"?, "results": [{"status", "replayed", "body"}, …]}`, written directly: each body is
/// already JSON text (a stored answer is replayed byte for byte).
fn batch_response(status: StatusCode, error: Option<(&str, &str)>, answers: &[Answer]) -> Response {
    let mut text = String::with_capacity(answers.iter().map(|a| a.body.len() + 48).sum::<usize>() + 64);
    text.push('{');
    if let Some((message, code)) = error {
        let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
        let _ = write!(text, r#""error":{message},"code":"{code}","#);
    }
    text.push_str(r#""results":["#);
    for (index, answer) in answers.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(text, r#"{{"status":{},"replayed":{},"body":{}}}"#, answer.status, answer.replayed, answer.body);
    }
    text.push_str("]}");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response()
}

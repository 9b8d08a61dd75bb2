//! The five balance operations of the users' balances page (operators): deposit, reserve, recognize revenue
//! (capture a reservation), release and transfer.
//!
//! Each form is read with the same rules as the API's bodies and shown again with every bad field named (400);
//! a valid one is confirmed on a second page, whose form carries a nonce so that confirming twice (a double
//! click, a reload) applies it once. The operation goes through the same balance service as the API, audited
//! under the console user's name; what went through redirects (303) to the user's page, which describes it, and
//! what the ledger refused is shown on the refused form (404, 409, or 422 for an amount that would overflow).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use payledger_core::balances::{OrderId, UserRole};
use payledger_core::money::{Currency, Money};
use payledger_core::{BalanceError, BalanceOperation, OrderKey, ServiceId, UserId};
use serde::Deserialize;

use super::balances::{Cursors, balances_page};
use super::ids::positive_id;
use super::{ConsoleError, ConsoleUser, Form, Layout, format, render};
use crate::AppState;
use crate::balances::Idempotency;
use crate::engine::EngineError;
use crate::engine::balances::{BalanceOutcome, OperationResult};
use crate::fields::{FieldErrors, invalid};
use crate::idempotency::IdempotencyKey;
use crate::store::batch::StoredResponse;

/// The longest confirmation nonce accepted back from a form.
const MAX_NONCE_CHARS: usize = 64;

/// The operations' routes (each behind the console guard, which `console::router` adds, and which lets only
/// operators post).
pub fn routes() -> Router<AppState> {
    // Each operation posts to its own path, the one its confirmation form posts to again.
    Op::ALL.into_iter().fold(Router::new(), |router, op| {
        router.route(
            op.path(),
            post(move |state: State<AppState>, user: ConsoleUser, Form(input): Form<OpInput>| {
                operate(state, user, op, input)
            }),
        )
    })
}

/// The five operations the page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Deposit,
    Reserve,
    Deduct,
    Release,
    Transfer,
}

impl Op {
    /// Every operation, in the page's order.
    const ALL: [Op; 5] = [Op::Deposit, Op::Reserve, Op::Deduct, Op::Release, Op::Transfer];

    /// Where its form posts (and its confirmation's form posts again).
    fn path(self) -> &'static str {
        match self {
            Op::Deposit => "/admin/balances/deposit",
            Op::Reserve => "/admin/balances/reserve",
            Op::Deduct => "/admin/balances/deduct",
            Op::Release => "/admin/balances/release",
            Op::Transfer => "/admin/balances/transfer",
        }
    }

    /// The endpoint name the confirmation's idempotency key is scoped to.
    fn endpoint(self) -> &'static str {
        match self {
            Op::Deposit => "console_deposit",
            Op::Reserve => "console_reserve",
            Op::Deduct => "console_deduct",
            Op::Release => "console_release",
            Op::Transfer => "console_transfer",
        }
    }

    /// The id of the operation's form on the user's page, so a refused form is scrolled to.
    fn anchor(self) -> &'static str {
        match self {
            Op::Deposit => "op-deposit",
            Op::Reserve => "op-reserve",
            Op::Deduct => "op-deduct",
            Op::Release => "op-release",
            Op::Transfer => "op-transfer",
        }
    }

    /// The confirmation page's title.
    fn title(self) -> &'static str {
        match self {
            Op::Deposit => "Confirm the deposit",
            Op::Reserve => "Confirm the reservation",
            Op::Deduct => "Confirm the revenue recognition",
            Op::Release => "Confirm the release",
            Op::Transfer => "Confirm the transfer",
        }
    }
}

/// One operation form's input and its errors.
#[derive(Debug, Default, Clone)]
pub(super) struct OpForm {
    /// The amount as typed.
    pub(super) amount: String,
    /// The service of the order (reserve, capture, release).
    pub(super) service_id: String,
    /// The order (reserve, capture, release).
    pub(super) order_id: String,
    /// The recipient (transfer).
    pub(super) to_user_id: String,
    /// What is wrong, by field; `form` is about the form as a whole.
    errors: FieldErrors,
}

impl OpForm {
    /// The form as typed, trimmed, without messages yet.
    fn from_input(input: &OpInput) -> OpForm {
        let text = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
        OpForm {
            amount: text(&input.amount),
            service_id: text(&input.service_id),
            order_id: text(&input.order_id),
            to_user_id: text(&input.to_user_id),
            errors: FieldErrors::new(),
        }
    }

    /// The message for a field, if it has one.
    pub(super) fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// Whether the form was refused (so it is shown open, with its messages).
    pub(super) fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// The page's operation forms: blank, except the one that was just refused.
#[derive(Debug, Default)]
pub(super) struct OpForms {
    /// The deposit form.
    pub(super) deposit: OpForm,
    /// The reservation form.
    pub(super) reserve: OpForm,
    /// The revenue recognition (capture) form.
    pub(super) deduct: OpForm,
    /// The release form.
    pub(super) release: OpForm,
    /// The transfer form.
    pub(super) transfer: OpForm,
}

impl OpForms {
    /// Blank forms but `op`'s, which is `form`.
    fn with(op: Op, form: OpForm) -> OpForms {
        let mut forms = OpForms::default();
        *match op {
            Op::Deposit => &mut forms.deposit,
            Op::Reserve => &mut forms.reserve,
            Op::Deduct => &mut forms.deduct,
            Op::Release => &mut forms.release,
            Op::Transfer => &mut forms.transfer,
        } = form;
        forms
    }
}

/// An operation form's fields (all text, so nothing is refused before it can be shown again).
#[derive(Debug, Default, Deserialize)]
struct OpInput {
    /// The user of the page (the sender of a transfer).
    user_id: Option<String>,
    amount: Option<String>,
    service_id: Option<String>,
    order_id: Option<String>,
    /// The recipient of a transfer.
    to_user_id: Option<String>,
    /// `yes` on the confirmation page's form.
    confirm: Option<String>,
    /// The confirmation's nonce: applying the same confirmation twice applies it once.
    key: Option<String>,
}

/// `POST /admin/balances/{deposit,reserve,deduct,release,transfer}` (operators).
async fn operate(State(state): State<AppState>, user: ConsoleUser, op: Op, input: OpInput) -> Response {
    match try_operate(&state, &user, op, input).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Validates; shows the confirmation; once confirmed, applies and redirects to the result, or shows the
/// refusal inline.
async fn try_operate(state: &AppState, user: &ConsoleUser, op: Op, input: OpInput) -> Result<Response, ConsoleError> {
    let subject = input
        .user_id
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| "is required".to_owned())
        .and_then(positive_id)
        .and_then(|id| UserId::new(id).map_err(|error| error.to_string()))
        .map_err(|message| {
            ConsoleError::BadRequest(format!("The form's user id {message}; look the user up again."))
        })?;
    let mut form = OpForm::from_input(&input);
    let operation = match parse_operation(op, subject, &form) {
        Ok(operation) => operation,
        Err(errors) => {
            form.errors = errors;
            return refused(state, user, subject, op, form, StatusCode::BAD_REQUEST).await;
        }
    };
    let nonce = match input.key.as_deref() {
        None | Some("") => None,
        Some(nonce) if nonce.len() <= MAX_NONCE_CHARS && nonce.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Some(nonce.to_owned())
        }
        Some(_) => return Err(ConsoleError::BadRequest("The confirmation form is damaged; start again.".into())),
    };
    if input.confirm.as_deref() != Some("yes") {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        return confirmation(state, user, op, &operation, &nonce, None, StatusCode::OK).await;
    }
    let idempotency = nonce.as_ref().map(|nonce| Idempotency {
        key: IdempotencyKey::console(user.id, nonce),
        endpoint: op.endpoint(),
        render: stored_result,
    });
    let outcome = match state.balances.apply(operation.clone(), idempotency, Some(user.username.clone())).await {
        Ok(outcome) => outcome,
        Err(EngineError::Unconfirmed) => {
            let message = if nonce.is_some() {
                "The database failed while committing: the operation may or may not have been applied. \
                 Confirming again is safe: this confirmation is applied at most once."
            } else {
                "The database failed while committing: the operation may or may not have been applied. Check \
                 the user's history before trying again."
            };
            let nonce = nonce.unwrap_or_default();
            return confirmation(state, user, op, &operation, &nonce, Some(message), StatusCode::SERVICE_UNAVAILABLE)
                .await;
        }
        Err(error) => return Err(ConsoleError::Engine(error)),
    };
    match outcome {
        BalanceOutcome::Executed { result: Ok(lines), .. } => Ok(applied(subject, lines.first().map(|line| line.id))),
        BalanceOutcome::Executed { result: Err(refusal), .. } => {
            let (status, errors) = refusal_errors(&refusal);
            form.errors = errors;
            refused(state, user, subject, op, form, status).await
        }
        // The same confirmation was submitted again (a double click, a reload): its first answer.
        BalanceOutcome::Replayed(stored) => match replayed(&stored) {
            Replay::Applied(line) => Ok(applied(subject, line)),
            Replay::Refused(status, errors) => {
                form.errors = errors;
                refused(state, user, subject, op, form, status).await
            }
        },
        BalanceOutcome::KeyInFlight => {
            form.errors = invalid("form", "This confirmation is being applied right now; reload the page shortly.");
            refused(state, user, subject, op, form, StatusCode::CONFLICT).await
        }
        BalanceOutcome::KeyReused => {
            form.errors = invalid("form", "This confirmation was used for another operation; start again.");
            refused(state, user, subject, op, form, StatusCode::CONFLICT).await
        }
        BalanceOutcome::Broken(defect) => {
            tracing::error!(%defect, "the ledger engine could not decide a console balance operation");
            Err(ConsoleError::Defect)
        }
        BalanceOutcome::Kept(_) => Err(ConsoleError::Defect),
    }
}

/// After an operation went through: to the user's page, which describes the line it wrote.
fn applied(subject: UserId, line: Option<i64>) -> Response {
    let mut target = format!("/admin/balances?user_id={subject}");
    if let Some(line) = line {
        target.push_str(&format!("&line={line}#result"));
    }
    Redirect::to(&target).into_response()
}

/// The user's page again, with the refused form open and its messages.
async fn refused(
    state: &AppState,
    user: &ConsoleUser,
    subject: UserId,
    op: Op,
    form: OpForm,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    balances_page(state, user, subject, Cursors::default(), OpForms::with(op, form), status).await
}

/// What a confirmation's idempotency key keeps: the line written, or the refusal's messages.
fn stored_result(result: &OperationResult) -> StoredResponse {
    match result {
        Ok(lines) => StoredResponse {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::json!({ "line": lines.first().map(|line| line.id) }).to_string(),
        },
        Err(refusal) => {
            let (status, errors) = refusal_errors(refusal);
            StoredResponse { status: status.as_u16(), body: serde_json::json!({ "errors": errors }).to_string() }
        }
    }
}

/// What a confirmation answered the first time it was applied.
enum Replay {
    /// It went through, writing this history line.
    Applied(Option<i64>),
    /// It was refused, with this status and these messages.
    Refused(StatusCode, FieldErrors),
}

/// Reads back what [`stored_result`] kept.
fn replayed(stored: &StoredResponse) -> Replay {
    let body: serde_json::Value = serde_json::from_str(&stored.body).unwrap_or_default();
    if (200..300).contains(&stored.status) {
        return Replay::Applied(body.get("line").and_then(serde_json::Value::as_i64));
    }
    let errors: FieldErrors = body
        .get("errors")
        .and_then(|errors| serde_json::from_value(errors.clone()).ok())
        .unwrap_or_else(|| invalid("form", "This confirmation was already refused; start again."));
    Replay::Refused(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CONFLICT), errors)
}

/// The ledger's refusal as the form's messages, with the status the API answers it with.
fn refusal_errors(refusal: &BalanceError) -> (StatusCode, FieldErrors) {
    let message = refusal.to_string();
    match refusal {
        BalanceError::UnknownUser { user, role: UserRole::Recipient } => (
            StatusCode::NOT_FOUND,
            invalid("to_user_id", &format!("User {user} has no account: nothing was ever deposited for them.")),
        ),
        BalanceError::UnknownUser { user, .. } => (
            StatusCode::NOT_FOUND,
            invalid("form", &format!("User {user} has no account: nothing was ever deposited for them.")),
        ),
        BalanceError::InsufficientFunds { available } => (
            StatusCode::CONFLICT,
            invalid("amount", &format!("Insufficient funds: {} available.", format::rub(*available))),
        ),
        BalanceError::HoldExists(_) | BalanceError::HoldSettled { .. } => {
            (StatusCode::CONFLICT, invalid("order_id", &format::sentence(&message)))
        }
        BalanceError::HoldNotFound(_) => (StatusCode::NOT_FOUND, invalid("order_id", &format::sentence(&message))),
        BalanceError::AmountMismatch { held } => (
            StatusCode::CONFLICT,
            invalid("amount", &format!("Must equal the reserved amount, {}.", format::rub(*held))),
        ),
        BalanceError::Overflow => (StatusCode::UNPROCESSABLE_ENTITY, invalid("amount", &format::sentence(&message))),
    }
}

/// Reads the form into an operation, with the same rules as the API's bodies; every bad field at once.
fn parse_operation(op: Op, user: UserId, form: &OpForm) -> Result<BalanceOperation, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut check = |field: &str, text: &str, required: bool| -> Option<String> {
        if text.is_empty() {
            if required {
                errors.insert(field.to_owned(), "This field is required.".into());
            }
            return None;
        }
        Some(text.to_owned())
    };
    let amount_text = check("amount", &form.amount, op != Op::Release);
    let needs_order = matches!(op, Op::Reserve | Op::Deduct | Op::Release);
    let service_text = if needs_order { check("service_id", &form.service_id, true) } else { None };
    let order_text = if needs_order { check("order_id", &form.order_id, true) } else { None };
    let recipient_text = if op == Op::Transfer { check("to_user_id", &form.to_user_id, true) } else { None };

    let amount = amount_text.and_then(|text| match Money::parse_positive(&text, Currency::RUB, false) {
        Ok(amount) => Some(amount),
        Err(error) => {
            errors.insert("amount".into(), format!("The amount {error}."));
            None
        }
    });
    let mut id = |field: &str, text: Option<String>| -> Option<i64> {
        let text = text?;
        match positive_id(&text) {
            Ok(id) => Some(id),
            Err(message) => {
                errors.insert(field.to_owned(), format!("The id {message}."));
                None
            }
        }
    };
    let service = id("service_id", service_text).and_then(|id| ServiceId::new(id).ok());
    let order = id("order_id", order_text).and_then(|id| OrderId::new(id).ok());
    let recipient = id("to_user_id", recipient_text).and_then(|id| UserId::new(id).ok());
    if recipient == Some(user) {
        errors.insert("to_user_id".into(), "Must be another user than the sender.".into());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let key = service.zip(order).map(|(service, order)| OrderKey { user, service, order });
    let operation = match op {
        Op::Deposit => amount.map(|amount| BalanceOperation::Deposit { user, amount }),
        Op::Reserve => key.zip(amount).map(|(key, amount)| BalanceOperation::Reserve { key, amount }),
        Op::Deduct => key.zip(amount).map(|(key, amount)| BalanceOperation::Deduct { key, amount }),
        Op::Release => key.map(|key| BalanceOperation::Release { key, amount }),
        Op::Transfer => recipient.zip(amount).map(|(recipient, amount)| BalanceOperation::Transfer {
            sender: user,
            recipient,
            amount,
        }),
    };
    operation.ok_or_else(|| invalid("form", "The form is incomplete."))
}

/// The confirmation page: what will happen, the fields carried in hidden inputs, and a Confirm button.
#[derive(askama::Template)]
#[template(path = "console/people_confirm.html")]
struct ConfirmPage {
    layout: Layout,
    question: String,
    action: &'static str,
    anchor: &'static str,
    fields: Vec<(&'static str, String)>,
    nonce: String,
    back: String,
    /// The user's balance now, if they have an account.
    available: Option<String>,
    reserved: Option<String>,
    /// For a capture or release: what the order's reservation holds now.
    hold: Option<String>,
    user_id: i64,
    error: Option<&'static str>,
}

/// The confirmation page of `operation`, whose form carries `nonce`; `error` says why it is shown again.
async fn confirmation(
    state: &AppState,
    user: &ConsoleUser,
    op: Op,
    operation: &BalanceOperation,
    nonce: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let (subject, question, fields) = described(operation);
    let balance = state.store.user_balance(subject.get()).await?;
    let page = ConfirmPage {
        layout: user.layout(op.title(), "balances"),
        question,
        action: op.path(),
        anchor: op.anchor(),
        fields,
        nonce: nonce.to_owned(),
        back: format!("/admin/balances?user_id={subject}"),
        available: balance.map(|balance| format::rub(balance.balance - balance.held)),
        reserved: balance.map(|balance| format::rub(balance.held)),
        hold: reservation_now(state, operation).await?,
        user_id: subject.get(),
        error,
    };
    Ok((status, render(&page)).into_response())
}

/// Whose page the operation is on, the question that confirms it, and the fields the confirmation's form
/// carries back (as the API would read them).
fn described(operation: &BalanceOperation) -> (UserId, String, Vec<(&'static str, String)>) {
    let (subject, question, mut fields) = match operation {
        BalanceOperation::Deposit { user, amount } => (
            *user,
            format!("Deposit {} to user {user}?", format::money(amount.minor(), amount.currency().code())),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Reserve { key, amount } => (
            key.user,
            format!(
                "Reserve {} of user {} for order {} of service {}?",
                format::money(amount.minor(), amount.currency().code()),
                key.user,
                key.order,
                key.service
            ),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Deduct { key, amount } => (
            key.user,
            format!(
                "Recognize revenue: capture {} reserved by user {} for order {} of service {}?",
                format::money(amount.minor(), amount.currency().code()),
                key.user,
                key.order,
                key.service
            ),
            vec![("amount", amount.to_decimal_string())],
        ),
        BalanceOperation::Release { key, amount } => (
            key.user,
            match amount {
                Some(amount) => format!(
                    "Release the {} reserved by user {} for order {} of service {} back to their available balance?",
                    format::money(amount.minor(), amount.currency().code()),
                    key.user,
                    key.order,
                    key.service
                ),
                None => format!(
                    "Release the whole reservation of user {} for order {} of service {} back to their available \
                     balance?",
                    key.user, key.order, key.service
                ),
            },
            amount.map(|amount| ("amount", amount.to_decimal_string())).into_iter().collect(),
        ),
        BalanceOperation::Transfer { sender, recipient, amount } => (
            *sender,
            format!(
                "Transfer {} from user {sender} to user {recipient}?",
                format::money(amount.minor(), amount.currency().code())
            ),
            vec![("amount", amount.to_decimal_string()), ("to_user_id", recipient.to_string())],
        ),
        BalanceOperation::Withdraw { user, .. } => (*user, String::new(), Vec::new()),
    };
    if let Some(key) = operation.order() {
        fields.push(("service_id", key.service.to_string()));
        fields.push(("order_id", key.order.to_string()));
    }
    (subject, question, fields)
}

/// For a capture or a release: what the order's reservation holds now, so the operator sees what they act on.
async fn reservation_now(state: &AppState, operation: &BalanceOperation) -> Result<Option<String>, ConsoleError> {
    let (BalanceOperation::Deduct { key, .. } | BalanceOperation::Release { key, .. }) = operation else {
        return Ok(None);
    };
    Ok(Some(match state.store.console_hold(&key.reference()).await? {
        Some((amount, status)) if status == "held" => {
            format!("The reservation for this order holds {}.", format::rub(amount))
        }
        Some((amount, status)) => {
            format!("The reservation for this order ({}) is already {status}.", format::rub(amount))
        }
        None => "There is no reservation for this order.".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(amount: &str, service: &str, order: &str, to: &str) -> OpForm {
        OpForm {
            amount: amount.into(),
            service_id: service.into(),
            order_id: order.into(),
            to_user_id: to.into(),
            errors: FieldErrors::new(),
        }
    }

    fn user(id: i64) -> UserId {
        UserId::new(id).unwrap_or_else(|_| panic!("id"))
    }

    #[test]
    fn amounts_are_read_exactly_and_every_bad_field_is_named() {
        let deposit = parse_operation(Op::Deposit, user(5), &form("100.5", "", "", ""));
        assert!(matches!(deposit, Ok(BalanceOperation::Deposit { amount, .. }) if amount.minor() == 10_050));
        let errors = parse_operation(Op::Reserve, user(5), &form("1.234", "x", "", "")).err().unwrap_or_default();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["amount", "order_id", "service_id"]);
        let errors = parse_operation(Op::Transfer, user(5), &form("0", "", "", "5")).err().unwrap_or_default();
        assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), ["amount", "to_user_id"]);
        let release = parse_operation(Op::Release, user(5), &form("", "1", "2", ""));
        assert!(matches!(release, Ok(BalanceOperation::Release { amount: None, .. })));
    }

    #[test]
    fn a_replayed_confirmation_answers_as_the_first_time() {
        let applied = stored_result(&Ok(Vec::new()));
        assert!(matches!(replayed(&applied), Replay::Applied(None)));
        let refused = stored_result(&Err(BalanceError::InsufficientFunds { available: 500 }));
        match replayed(&refused) {
            Replay::Refused(status, errors) => {
                assert_eq!(status, StatusCode::CONFLICT);
                assert_eq!(errors.get("amount").map(String::as_str), Some("Insufficient funds: 5.00 RUB available."));
            }
            Replay::Applied(_) => panic!("a refusal replays as a refusal"),
        }
    }
}

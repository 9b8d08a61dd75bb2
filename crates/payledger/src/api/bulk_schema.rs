//! The batch API's request and answer as the OpenAPI spec documents them. The handler reads the request
//! field by field (`api/bulk.rs`) and writes the answer itself; these types only describe them.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::schema::{IdempotencyKeyText, InnText, PositiveId, RubAmount};
use crate::api::webhook::{document_date_schema, document_number_schema};

/// Up to 1,000 operations, applied each on its own or (`atomic`) all together or none.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchRequest {
    /// All in one ledger transaction, or none (default false: each on its own).
    #[schema(default = false)]
    atomic: Option<bool>,
    /// The operations, applied in this order (bank notices first within a ledger transaction: they touch
    /// only organizations' accounts). Each is one of `BatchOperation`'s forms. The items are any JSON
    /// objects here because that is what the server takes: without `atomic`, an operation that is not one of
    /// those forms is answered 400 in its place and the others go on; with `atomic`, it refuses the request.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 1000)]
    operations: Vec<BatchOperation>,
}

/// One operation: a single endpoint's request with its `type`; a balance operation with its own key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchOperation {
    /// `POST /api/webhook/bank/`'s notice, exactly once by `operation_id`.
    BankNotice {
        /// The bank's unique id of the operation.
        #[schema(format = Uuid, example = "ccf0a86d-041b-4991-bcf7-e2352f7b8a4a")]
        operation_id: String,
        /// Roubles, > 0, at most two decimals.
        #[schema(value_type = RubAmount)]
        amount: String,
        /// The payer's INN.
        #[schema(value_type = InnText)]
        payer_inn: String,
        /// The payment document's number.
        #[schema(schema_with = document_number_schema)]
        document_number: String,
        /// The payment document's date, RFC 3339.
        #[schema(schema_with = document_date_schema)]
        document_date: String,
    },
    /// `POST /api/add_funds/`.
    Deposit {
        /// This operation's key, as the single endpoint's `Idempotency-Key`.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// The user.
        #[schema(value_type = PositiveId)]
        user_id: i64,
        /// Roubles.
        #[schema(value_type = RubAmount)]
        amount: String,
    },
    /// `POST /api/withdraw_funds/`.
    Withdraw {
        /// This operation's key.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// The user.
        #[schema(value_type = PositiveId)]
        user_id: i64,
        /// Roubles.
        #[schema(value_type = RubAmount)]
        amount: String,
    },
    /// `POST /api/reserve_funds/`.
    Reserve {
        /// This operation's key.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// The user paying for the order.
        #[schema(value_type = PositiveId)]
        user_id: i64,
        /// The service selling it.
        #[schema(value_type = PositiveId)]
        service_id: i64,
        /// The order.
        #[schema(value_type = PositiveId)]
        order_id: i64,
        /// Roubles.
        #[schema(value_type = RubAmount)]
        amount: String,
    },
    /// `POST /api/deduct_funds/`: recognize an order's reservation as its service's revenue.
    Capture {
        /// This operation's key.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// The user who reserved.
        #[schema(value_type = PositiveId)]
        user_id: i64,
        /// The service.
        #[schema(value_type = PositiveId)]
        service_id: i64,
        /// The order.
        #[schema(value_type = PositiveId)]
        order_id: i64,
        /// Roubles: the reserved amount.
        #[schema(value_type = RubAmount)]
        amount: String,
    },
    /// `POST /api/unreserve_funds/`.
    Release {
        /// This operation's key.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// The user who reserved.
        #[schema(value_type = PositiveId)]
        user_id: i64,
        /// The service.
        #[schema(value_type = PositiveId)]
        service_id: i64,
        /// The order.
        #[schema(value_type = PositiveId)]
        order_id: i64,
        /// If given (not null), must equal the reserved amount.
        #[schema(value_type = Option<RubAmount>)]
        amount: Option<String>,
    },
    /// `POST /api/transfer_funds/`.
    Transfer {
        /// This operation's key.
        #[schema(value_type = IdempotencyKeyText)]
        idempotency_key: String,
        /// Who pays.
        #[schema(value_type = PositiveId)]
        sender_id: i64,
        /// Who is paid; must differ from the sender.
        #[schema(value_type = PositiveId)]
        recipient_id: i64,
        /// Roubles.
        #[schema(value_type = RubAmount)]
        amount: String,
    },
}

/// One result per operation, in the request's order. A refused atomic batch (409) also has `error` and
/// `code` (`batch_not_applied`), as every error does.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// With 409 only: why nothing was applied.
    #[schema(example = "Nothing was applied: operations[3] was refused, and the batch is atomic")]
    error: Option<String>,
    /// With 409 only: `batch_not_applied`.
    #[schema(example = "batch_not_applied")]
    code: Option<String>,
    /// Each operation's answer.
    results: Vec<OperationAnswer>,
}

/// What the operation's single endpoint would have answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationAnswer {
    /// Its HTTP status, as its single endpoint would answer it: 201 (a balance operation) or 200 (a bank
    /// notice) when applied or replayed; its 4xx (400, 404, 409, 422) when refused; 503 when the ledger failed
    /// it (retry with its key); 500 for a defect; and 424 `not_applied` for an operation of a refused atomic
    /// batch that was not itself refused.
    #[schema(example = 201)]
    status: u16,
    /// Whether the body is the answer stored with its key, replayed (the single endpoint's
    /// `Idempotent-Replayed: true`).
    replayed: bool,
    /// Its body: a transaction, both sides of a transfer, a bank notice's answer, or an error.
    #[schema(value_type = Object)]
    body: serde_json::Value,
}

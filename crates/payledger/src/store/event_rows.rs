//! The rows of outbound events: endpoints, deliveries and their attempts, as the store reads and writes them
//! outside ledger batches (an event itself is written only by a batch: `batch::NewEvent`).

use time::OffsetDateTime;

/// A receiver the company registered.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// `ep_` and 32 hex digits.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Whether new events are delivered to it and its pending deliveries are sent.
    pub enabled: bool,
    /// Why it was disabled (an operator, a 410, the failure window).
    pub disabled_reason: Option<String>,
    /// The signing secret, encrypted by the card vault.
    pub secret: String,
    /// The secret before the last rotation, encrypted, while it still signs.
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs.
    pub previous_secret_until: Option<OffsetDateTime>,
    /// The most deliveries a second this endpoint gets from one process, if limited.
    pub rate_limit_per_second: Option<i32>,
    /// Since when every attempt to it failed (none while its last attempt succeeded).
    pub failing_since: Option<OffsetDateTime>,
    /// The event types it wants (`*` for all but the ones that must be named), ascending.
    pub event_types: Vec<String>,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow").field("id", &self.id).field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

/// What an update of an endpoint changes; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// Enable (clears the reason and the failure window) or disable with a reason.
    pub enabled: Option<(bool, Option<String>)>,
    /// A new rate limit (`Some(None)` removes it).
    pub rate_limit_per_second: Option<Option<i32>>,
    /// New event types, replacing the old ones.
    pub event_types: Option<Vec<String>>,
    /// A rotation: the new encrypted secret, and until when the secret it replaces still signs (none: at once
    /// no longer). The replaced secret is the row's, as the change finds it.
    pub rotation: Option<(String, Option<OffsetDateTime>)>,
}

/// A delivery a worker claimed, with what it needs to send it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: i64,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// The event's number, also its `version`.
    pub event_seq: i64,
    /// `evt_…`.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data, without its version.
    pub event_data: String,
    /// When the event happened.
    pub event_created_at: OffsetDateTime,
    /// The endpoint.
    pub endpoint_id: String,
    /// Its URL.
    pub url: String,
    /// Its secret, encrypted.
    pub secret: String,
    /// Its previous secret, encrypted, while it still signs.
    pub previous_secret: Option<String>,
    /// Until when it signs.
    pub previous_secret_until: Option<OffsetDateTime>,
    /// Its rate limit.
    pub rate_limit_per_second: Option<i32>,
    /// The lease this claim holds it until; its record must still find it.
    pub lease_expires_at: OffsetDateTime,
}

impl std::fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

/// How an attempt ends its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEnd {
    /// Received (2xx).
    Succeeded,
    /// Tried again this long after the attempt is recorded (the database's clock on PostgreSQL).
    RetryAfter(std::time::Duration),
    /// No attempts left: failed (an operator may replay it).
    Failed,
    /// Not attempted (the endpoint's rate limit or concurrency, a secret this process cannot read): due again
    /// this long after it is recorded, the attempt not counted and the endpoint not judged.
    Deferred(std::time::Duration),
}

impl DeliveryEnd {
    /// The delivery's status after it, how long until it is due again (if pending), and whether it counts as an
    /// attempt (it was made: logged, and judged for its endpoint).
    pub fn as_stored(self) -> (&'static str, Option<std::time::Duration>, bool) {
        match self {
            DeliveryEnd::Succeeded => ("succeeded", None, true),
            DeliveryEnd::RetryAfter(wait) => ("pending", Some(wait), true),
            DeliveryEnd::Failed => ("failed", None, true),
            DeliveryEnd::Deferred(wait) => ("pending", Some(wait), false),
        }
    }
}

/// A receiver's text as stored: PostgreSQL's text holds no NUL, and a binary answer must not fail the round.
pub fn without_nul(text: Option<&str>) -> Option<String> {
    text.map(|text| text.replace('\0', "\u{fffd}"))
}

/// One attempt's result, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: i64,
    /// Its endpoint.
    pub endpoint_id: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// How long the attempt took.
    pub duration_ms: i64,
    /// The first 4 KiB of the answer.
    pub response: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What becomes of the delivery.
    pub end: DeliveryEnd,
    /// The lease the attempt was claimed under: a record whose lease was taken over changes nothing.
    pub lease: OffsetDateTime,
    /// The receiver answered 410 Gone: disable the endpoint.
    pub gone: bool,
}

/// A delivery worker's round, run inside a ledger batch: record the attempts that finished, then claim up to
/// `limit` due deliveries (none of the endpoints in `excluding`) under a lease of `lease` from the batch's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRound {
    /// The worker.
    pub owner: String,
    /// Its finished attempts.
    pub records: Vec<AttemptRecord>,
    /// How long an endpoint may fail without a success before it is disabled.
    pub failure_window: std::time::Duration,
    /// How long the claimed deliveries are the worker's.
    pub lease: std::time::Duration,
    /// At most this many (0: record only).
    pub limit: i64,
    /// The endpoints the worker has no room for.
    pub excluding: Vec<String>,
}

/// What one round's attempts say about their endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointVerdict {
    /// One of them was received.
    pub succeeded: bool,
    /// One of them was answered 410 Gone.
    pub gone: bool,
}

impl EndpointVerdict {
    /// Why a round with this verdict disables its endpoint, if it may: a 410 always does, failures only once
    /// the endpoint has failed for the whole window (the store checks that).
    pub fn disable_reason(self) -> Option<&'static str> {
        match (self.gone, self.succeeded) {
            (true, _) => Some("the endpoint answered 410 Gone"),
            (false, false) => Some("every delivery failed for the whole failure window"),
            (false, true) => None,
        }
    }

    /// The audit row of the worker's disabling `endpoint` for `reason`.
    pub fn disable_audit(endpoint: &str, reason: &str) -> crate::store::AuditEntry {
        crate::store::AuditEntry {
            actor: "worker".to_owned(),
            action: "webhook_endpoint.disable".to_owned(),
            target: format!("webhook_endpoint:{endpoint}"),
            before: None,
            after: Some(serde_json::json!({ "enabled": false, "reason": reason }).to_string()),
            origin: None,
        }
    }
}

/// What a round did: the deliveries it claimed, and the endpoints its records disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Claimed, ascending id.
    pub claimed: Vec<ClaimedDelivery>,
    /// Disabled by this round's records (a 410, or the failure window).
    pub disabled: Vec<String>,
}

/// A delivery as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// The delivery.
    pub id: i64,
    /// `evt_…`.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// When it is next tried (pending).
    pub next_attempt_at: OffsetDateTime,
    /// The last answer's HTTP status.
    pub last_status_code: Option<i32>,
    /// The last error.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// One attempt as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// When.
    pub attempted_at: OffsetDateTime,
    /// The receiver's HTTP status.
    pub status_code: Option<i32>,
    /// How long it took.
    pub duration_ms: i64,
    /// The first 4 KiB of the answer (admins only).
    pub response: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A list of ids as SQLite's `json_each` reads it.
pub(crate) fn json_list(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

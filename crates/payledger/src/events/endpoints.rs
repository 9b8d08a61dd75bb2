//! The webhook endpoint service: the receivers an admin registers, their signing secrets (made here, shown
//! once, stored encrypted by the card vault), their state, a test event, and their delivery log with its
//! replays. The API (`api/webhook_endpoints.rs`) and the console (`console/webhooks.rs`) both go through it, so
//! the checks and the audit rows are the same from either face. Each change writes its audit row (never with a
//! secret) in the change's own transaction.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use rand::TryRngCore;
use rand::rngs::OsRng;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::guard::{OutboundNetworks, check_endpoint_url};
use crate::events::settings::EventSettings;
use crate::events::signature::EndpointSecret;
use crate::events::{ALL_TYPES, EventType, payloads};
use crate::store::batch::NewEvent;
use crate::store::event_rows::{AttemptRow, DeliveryRow, EndpointChange, EndpointRow};
use crate::store::{AuditEntry, Store, StoreError};
use crate::vault::{Vault, VaultError};

pub use crate::events::guard::MAX_URL_BYTES;
/// The longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The rate limits an endpoint may have, in deliveries a second.
pub const RATE_LIMIT_PER_SECOND: RangeInclusive<i64> = 1..=10_000;
/// Key bytes of a new secret: the middle of the specification's 24 to 64.
pub const SECRET_KEY_BYTES: usize = 32;
/// The longest a rotated-out secret may keep signing, in seconds (30 days).
pub const MAX_OVERLAP_SECONDS: i64 = 30 * 24 * 3600;
/// The most attempts of one delivery shown (the retry schedule makes far fewer).
pub const MAX_ATTEMPTS_SHOWN: i64 = 100;
/// The statuses a delivery can be in.
pub const DELIVERY_STATUSES: [&str; 3] = ["pending", "succeeded", "failed"];

/// The associated data an endpoint's secret is encrypted under: a secret copied onto another endpoint's row
/// does not decrypt there. The delivery worker decrypts with the same binding.
pub fn secret_binding(id: &str) -> Vec<u8> {
    format!("webhook-endpoint:{id}").into_bytes()
}

/// Why the service refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A value is invalid; `field` names it as the API does.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No endpoint has this id.
    #[error("webhook endpoint not found")]
    NotFound,
    /// The endpoint has no delivery with this id.
    #[error("delivery not found")]
    DeliveryNotFound,
    /// The delivery is still pending: it will be tried again without a replay.
    #[error("the delivery is still pending; it is retried on its schedule")]
    DeliveryPending,
    /// The endpoint is disabled: nothing is sent to it until it is enabled again.
    #[error("the webhook endpoint is disabled; enable it first")]
    Disabled,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The card vault could not encrypt the secret.
    #[error("card vault: {0}")]
    Vault(#[from] VaultError),
    /// The operating system's randomness failed, so no secret could be made.
    #[error("the operating system's random number generator failed")]
    Randomness,
}

impl EndpointError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> EndpointError {
        EndpointError::Invalid { field, reason: reason.into() }
    }
}

/// An endpoint as admins see it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    /// `ep_` and 32 hex digits.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// Free text.
    pub description: String,
    /// The types it wants, ascending (`*`: every type but `bank_payment.rejected`).
    pub event_types: Vec<String>,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// Since when every attempt to it failed.
    pub failing_since: Option<OffsetDateTime>,
    /// The most deliveries a second, if limited.
    pub rate_limit_per_second: Option<i32>,
    /// Until when the secret before the last rotation still signs, if it does.
    pub secret_rotating_until: Option<OffsetDateTime>,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

impl From<&EndpointRow> for EndpointView {
    fn from(row: &EndpointRow) -> EndpointView {
        EndpointView {
            id: row.id.clone(),
            url: row.url.clone(),
            description: row.description.clone(),
            event_types: row.event_types.clone(),
            enabled: row.enabled,
            disabled_reason: row.disabled_reason.clone(),
            failing_since: row.failing_since,
            rate_limit_per_second: row.rate_limit_per_second,
            secret_rotating_until: row.previous_secret.as_ref().and(row.previous_secret_until),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl EndpointView {
    /// What the audit log records of it: its settings and state, never a secret.
    fn audit_json(&self) -> serde_json::Value {
        json!({
            "url": self.url,
            "description": self.description,
            "event_types": self.event_types,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "rate_limit_per_second": self.rate_limit_per_second,
        })
    }
}

/// A new endpoint as a caller describes it (checked by [`Endpoints::create`]).
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Where deliveries go.
    pub url: String,
    /// Free text (may be empty).
    pub description: String,
    /// The types it wants; `None` for every type (`*`).
    pub event_types: Option<Vec<String>>,
    /// Whether deliveries start at once.
    pub enabled: bool,
    /// The most deliveries a second, if limited.
    pub rate_limit_per_second: Option<i64>,
}

/// A change of an endpoint; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// Enable (also clears its failure window) or disable.
    pub enabled: Option<bool>,
    /// A new rate limit (`Some(None)` removes it).
    pub rate_limit_per_second: Option<Option<i64>>,
}

/// The webhook endpoint service.
#[derive(Clone)]
pub struct Endpoints {
    store: Store,
    vault: Arc<Vault>,
    settings: EventSettings,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("require_https", &self.settings.require_https).finish_non_exhaustive()
    }
}

impl Endpoints {
    /// A service over `store`, encrypting secrets with `vault` (the payout service's card vault).
    pub fn new(store: Store, vault: Arc<Vault>, settings: EventSettings) -> Endpoints {
        Endpoints { store, vault, settings }
    }

    /// Whether endpoints must be `https` (the production profile).
    pub fn require_https(&self) -> bool {
        self.settings.require_https
    }

    /// Every endpoint, oldest first.
    pub async fn list(&self) -> Result<Vec<EndpointView>, EndpointError> {
        Ok(self.store.webhook_endpoints(None).await?.iter().map(EndpointView::from).collect())
    }

    /// The endpoint with `id`.
    pub async fn get(&self, id: &str) -> Result<EndpointView, EndpointError> {
        Ok(EndpointView::from(&self.row(id).await?))
    }

    async fn row(&self, id: &str) -> Result<EndpointRow, EndpointError> {
        // An id that is not one of ours names no endpoint; the store is not asked.
        if !is_endpoint_id(id) {
            return Err(EndpointError::NotFound);
        }
        self.store.webhook_endpoints(Some(id)).await?.into_iter().next().ok_or(EndpointError::NotFound)
    }

    /// Registers an endpoint; its secret's text is returned now and never again.
    pub async fn create(&self, by: &str, new: NewEndpoint) -> Result<(EndpointView, String), EndpointError> {
        let url = self.check_url(&new.url)?;
        let description = check_description(&new.description)?;
        let event_types = match &new.event_types {
            Some(names) => check_event_types(names)?,
            None => vec![ALL_TYPES.to_owned()],
        };
        let rate_limit_per_second = new.rate_limit_per_second.map(check_rate_limit).transpose()?;
        let id = format!("ep_{}", Uuid::now_v7().simple());
        let (secret, encrypted) = self.new_secret(&id)?;
        let now = OffsetDateTime::now_utc();
        let row = EndpointRow {
            id: id.clone(),
            url,
            description,
            enabled: new.enabled,
            disabled_reason: None,
            secret: encrypted,
            previous_secret: None,
            previous_secret_until: None,
            rate_limit_per_second,
            failing_since: None,
            event_types,
            created_at: now,
            updated_at: now,
        };
        let view = EndpointView::from(&row);
        let audit = audit(by, "webhook_endpoint.create", &id, None, Some(view.audit_json()));
        self.store.insert_webhook_endpoint(&row, &audit).await?;
        Ok((self.get(&id).await?, secret.reveal()))
    }

    /// Changes an endpoint; `enabled: true` also clears its failure window and the reason it was disabled.
    pub async fn update(&self, by: &str, id: &str, update: EndpointUpdate) -> Result<EndpointView, EndpointError> {
        let before = EndpointView::from(&self.row(id).await?);
        let change = EndpointChange {
            url: update.url.as_deref().map(|url| self.check_url(url)).transpose()?,
            description: update.description.as_deref().map(check_description).transpose()?,
            enabled: update.enabled.map(|enabled| (enabled, (!enabled).then(|| format!("disabled by {by}")))),
            rate_limit_per_second: match update.rate_limit_per_second {
                Some(limit) => Some(limit.map(check_rate_limit).transpose()?),
                None => None,
            },
            event_types: update.event_types.as_deref().map(check_event_types).transpose()?,
            rotation: None,
        };
        let mut after = before.clone();
        if let Some(url) = &change.url {
            after.url.clone_from(url);
        }
        if let Some(description) = &change.description {
            after.description.clone_from(description);
        }
        if let Some((enabled, reason)) = &change.enabled {
            after.enabled = *enabled;
            after.disabled_reason = if *enabled { None } else { reason.clone() };
        }
        if let Some(limit) = change.rate_limit_per_second {
            after.rate_limit_per_second = limit;
        }
        if let Some(types) = &change.event_types {
            after.event_types.clone_from(types);
        }
        let audit = audit(by, "webhook_endpoint.update", id, Some(before.audit_json()), Some(after.audit_json()));
        self.apply(id, &change, &audit).await?;
        self.get(id).await
    }

    /// A new secret for an endpoint; the old one keeps signing (beside the new) for `overlap`, by default the
    /// configured one. The new secret's text is returned now and never again.
    pub async fn rotate(
        &self,
        by: &str,
        id: &str,
        overlap: Option<Duration>,
    ) -> Result<(EndpointView, String), EndpointError> {
        self.row(id).await?;
        let overlap = overlap.unwrap_or(self.settings.secret_overlap);
        let now = OffsetDateTime::now_utc();
        let (secret, encrypted) = self.new_secret(id)?;
        // The store keeps the secret the row has when it changes (not one read here), so two rotations at once
        // cannot drop the secret one of them showed.
        let previous_until = match time::Duration::try_from(overlap) {
            Ok(overlap) if !overlap.is_zero() => Some(now + overlap),
            _ => None,
        };
        let until = previous_until.map(crate::timefmt::rfc3339);
        let change = EndpointChange { rotation: Some((encrypted, previous_until)), ..EndpointChange::default() };
        let after = json!({ "secret": "rotated", "previous_secret_until": until });
        let audit = audit(by, "webhook_endpoint.rotate_secret", id, None, Some(after));
        self.apply(id, &change, &audit).await?;
        Ok((self.get(id).await?, secret.reveal()))
    }

    /// Deletes an endpoint: its pending deliveries fail, its log stays.
    pub async fn delete(&self, by: &str, id: &str) -> Result<(), EndpointError> {
        let before = EndpointView::from(&self.row(id).await?);
        let audit = audit(by, "webhook_endpoint.delete", id, Some(before.audit_json()), None);
        let deleted = self.store.delete_webhook_endpoint(id, &audit, OffsetDateTime::now_utc()).await?;
        if deleted { Ok(()) } else { Err(EndpointError::NotFound) }
    }

    /// Sends a `ping` event to one endpoint (whatever types it wants), audited as `by`'s; the delivery's id.
    pub async fn test(&self, by: &str, id: &str) -> Result<i64, EndpointError> {
        self.enabled_row(id).await?;
        let event = NewEvent::new(EventType::Ping.as_str(), payloads::ping(id));
        let audit = audit(by, "webhook_endpoint.test", id, None, Some(json!({ "event": event.id })));
        Ok(self.store.send_webhook_ping(id, &event, &audit, self.store.clock().await?).await?)
    }

    /// A page of an endpoint's deliveries, newest first, and the `before` of the next page if there is one.
    pub async fn deliveries(
        &self,
        id: &str,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<DeliveryRow>, Option<i64>), EndpointError> {
        self.row(id).await?;
        let mut rows = self.store.webhook_deliveries(id, status, before, limit.saturating_add(1)).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        let next_before = if more { rows.last().map(|row| row.id) } else { None };
        Ok((rows, next_before))
    }

    /// One delivery of an endpoint.
    async fn delivery(&self, id: &str, delivery: i64) -> Result<DeliveryRow, EndpointError> {
        // The log's page just below `delivery + 1` starts with it, if it is this endpoint's.
        let above = delivery.checked_add(1);
        let rows = self.store.webhook_deliveries(id, None, above, 1).await?;
        rows.into_iter().next().filter(|row| row.id == delivery).ok_or(EndpointError::DeliveryNotFound)
    }

    /// A delivery's attempts, newest first (with the first 4 KiB of each answer).
    pub async fn attempts(&self, id: &str, delivery: i64) -> Result<Vec<AttemptRow>, EndpointError> {
        self.row(id).await?;
        self.delivery(id, delivery).await?;
        Ok(self.store.webhook_delivery_attempts(id, delivery, MAX_ATTEMPTS_SHOWN).await?)
    }

    /// Sends a finished delivery again, its schedule starting over.
    pub async fn replay(&self, by: &str, id: &str, delivery: i64) -> Result<u64, EndpointError> {
        self.enabled_row(id).await?;
        let row = self.delivery(id, delivery).await?;
        if row.status == "pending" {
            return Err(EndpointError::DeliveryPending);
        }
        let before = json!({ "delivery": delivery, "status": row.status });
        let after = json!({ "delivery": delivery, "status": "pending" });
        let audit = audit(by, "webhook_endpoint.replay", id, Some(before), Some(after));
        let now = self.store.clock().await?;
        match self.store.replay_webhook_deliveries(id, Some(delivery), None, &audit, now).await? {
            // A worker or another admin made it pending in between.
            0 => Err(EndpointError::DeliveryPending),
            replayed => Ok(replayed),
        }
    }

    /// Sends again every failed delivery of an endpoint whose event happened at or after `since`; how many.
    pub async fn recover(&self, by: &str, id: &str, since: OffsetDateTime) -> Result<u64, EndpointError> {
        self.enabled_row(id).await?;
        let after = json!({ "since": crate::timefmt::rfc3339(since) });
        let audit = audit(by, "webhook_endpoint.recover", id, None, Some(after));
        let now = self.store.clock().await?;
        Ok(self.store.replay_webhook_deliveries(id, None, Some(since), &audit, now).await?)
    }

    /// The endpoint, if it is enabled: nothing is sent to a disabled one (its pending deliveries are failed), so
    /// a test, a replay or a recovery waits until it is enabled again.
    async fn enabled_row(&self, id: &str) -> Result<EndpointRow, EndpointError> {
        let row = self.row(id).await?;
        if row.enabled { Ok(row) } else { Err(EndpointError::Disabled) }
    }

    async fn apply(&self, id: &str, change: &EndpointChange, audit: &AuditEntry) -> Result<(), EndpointError> {
        let updated = self.store.update_webhook_endpoint(id, change, audit, OffsetDateTime::now_utc()).await?;
        if updated { Ok(()) } else { Err(EndpointError::NotFound) }
    }

    /// A fresh secret from the operating system's randomness, and its text encrypted for the endpoint's row.
    fn new_secret(&self, id: &str) -> Result<(EndpointSecret, String), EndpointError> {
        let mut key = vec![0u8; SECRET_KEY_BYTES];
        OsRng.try_fill_bytes(&mut key).map_err(|_| EndpointError::Randomness)?;
        let secret = EndpointSecret::from_key(key).map_err(|_| EndpointError::Randomness)?;
        let encrypted = self.vault.encrypt(&secret.reveal(), &secret_binding(id))?;
        Ok((secret, encrypted))
    }

    /// The URL if an endpoint may have it (`guard::check_endpoint_url`: a host name is judged again whenever it
    /// is resolved, at every attempt).
    fn check_url(&self, url: &str) -> Result<String, EndpointError> {
        let networks = OutboundNetworks::from_networks(self.settings.allowed_networks.clone());
        check_endpoint_url(url, self.settings.require_https, &networks)
            .map(|_| url.to_owned())
            .map_err(|reason| EndpointError::invalid("url", reason.to_string()))
    }
}

/// Whether `id` has the shape of an endpoint id: `ep_` and 32 lower-case hex digits.
pub fn is_endpoint_id(id: &str) -> bool {
    id.strip_prefix("ep_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn audit(
    by: &str,
    action: &str,
    id: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AuditEntry {
    AuditEntry {
        actor: by.to_owned(),
        action: action.to_owned(),
        target: format!("webhook_endpoint:{id}"),
        before: before.map(|value| value.to_string()),
        after: after.map(|value| value.to_string()),
        origin: crate::origin::RequestOrigin::current(),
    }
}

fn check_description(text: &str) -> Result<String, EndpointError> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(EndpointError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(EndpointError::invalid("description", "must not contain control characters"));
    }
    Ok(text.to_owned())
}

fn check_rate_limit(limit: i64) -> Result<i32, EndpointError> {
    let out_of_range = || {
        let (low, high) = (RATE_LIMIT_PER_SECOND.start(), RATE_LIMIT_PER_SECOND.end());
        EndpointError::invalid("rate_limit_per_second", format!("must be between {low} and {high}"))
    };
    if !RATE_LIMIT_PER_SECOND.contains(&limit) {
        return Err(out_of_range());
    }
    i32::try_from(limit).map_err(|_| out_of_range())
}

/// The event types an endpoint may want, sorted: names of subscribable types each once, or `*` alone, or `*`
/// with `bank_payment.rejected` (the one type `*` leaves out, since a rejected notice is about the bank's
/// sender, not the company's money).
pub fn check_event_types(names: &[String]) -> Result<Vec<String>, EndpointError> {
    let invalid = |reason: String| EndpointError::invalid("event_types", reason);
    if names.is_empty() {
        return Err(invalid(format!("give at least one event type, or [\"{ALL_TYPES}\"] for all")));
    }
    let mut types = Vec::with_capacity(names.len());
    for name in names {
        if name != ALL_TYPES && EventType::parse(name).is_none() {
            return Err(invalid(format!("{name:?} is not an event type")));
        }
        if types.contains(name) {
            return Err(invalid(format!("{name:?} is listed twice")));
        }
        types.push(name.clone());
    }
    let rejected = EventType::BankPaymentRejected.as_str();
    if types.iter().any(|name| name == ALL_TYPES) && types.iter().any(|name| name != ALL_TYPES && name != rejected) {
        return Err(invalid(format!("\"{ALL_TYPES}\" already includes every type but {rejected}")));
    }
    types.sort();
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_star_combines_only_with_rejected_notices() {
        assert_eq!(check_event_types(&names(&["*"])).ok(), Some(names(&["*"])));
        assert_eq!(
            check_event_types(&names(&["bank_payment.rejected", "*"])).ok(),
            Some(names(&["*", "bank_payment.rejected"]))
        );
        assert!(check_event_types(&names(&["*", "payout.created"])).is_err());
        assert!(check_event_types(&names(&["payout.created", "payout.created"])).is_err());
        assert!(check_event_types(&names(&["ping"])).is_err());
        assert!(check_event_types(&[]).is_err());
    }

    #[test]
    fn endpoint_ids_are_ep_and_32_hex_digits() {
        assert!(is_endpoint_id(&format!("ep_{}", Uuid::now_v7().simple())));
        assert!(!is_endpoint_id("ep_123"));
        assert!(!is_endpoint_id(&format!("ep_{}", "G".repeat(32))));
    }
}

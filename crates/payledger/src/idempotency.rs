//! Idempotency: a client's key, scoped to its caller; the fingerprint that tells a replay from a reuse; and the
//! process-local set of keys being applied right now.
//!
//! A key takes effect at most once because the ledger engine claims it in the same batch transaction that
//! applies its operation and stores the response there (a unique index on `idempotency_keys.key`): the same key
//! with the same fingerprint replays the stored response, with another fingerprint it is refused. What lives
//! here has no I/O, so the store, the engine, the services and both faces (API and console) can share it.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use payledger_core::BalanceOperation;
use sha2::{Digest, Sha256};

/// The longest key a client may send, in bytes (all of them ASCII).
pub const MAX_KEY_LEN: usize = 255;

/// An idempotency key as stored: the client's key prefixed by who sent it, so two callers' keys never meet
/// (neither can collide with nor replay the other's requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a client's key was refused; the text is the reason the API answers for the `Idempotency-Key` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("must be at most {MAX_KEY_LEN} characters")]
    TooLong,
    /// A byte that is not visible ASCII or a space.
    #[error("must be visible ASCII characters")]
    NotVisibleAscii,
}

impl IdempotencyKey {
    /// Parses a client's key (1 to [`MAX_KEY_LEN`] visible ASCII characters or spaces) and scopes it to the
    /// caller's `scope` (see `Caller::scope`).
    pub fn parse(raw: &[u8], scope: &str) -> Result<IdempotencyKey, KeyError> {
        // The checks run in the order HTTP header values are read: bytes a header value cannot carry as text
        // first (a tab can), then the length, then the tab.
        let header_text = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
        if !raw.iter().all(header_text) {
            return Err(KeyError::NotVisibleAscii);
        }
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        if !raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            return Err(KeyError::NotVisibleAscii);
        }
        // Every byte is printable ASCII, so this is the same text.
        Ok(IdempotencyKey(format!("{scope}/{}", String::from_utf8_lossy(raw))))
    }

    /// The one-time key of a console confirmation form (`nonce` is the form's random token), scoped to the
    /// console user, so a double submit applies once.
    pub fn console(user_id: i64, nonce: &str) -> IdempotencyKey {
        IdempotencyKey(format!("console:{user_id}/{nonce}"))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unit tests of the engine name keys directly, as already-scoped text.
#[cfg(test)]
impl From<&str> for IdempotencyKey {
    fn from(key: &str) -> IdempotencyKey {
        IdempotencyKey(key.to_owned())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A balance request's identity: SHA-256 over the endpoint and the canonical JSON of the parsed operation.
///
/// Canonical JSON has sorted keys, no spaces, and amounts as exact decimal strings, so the same request
/// written differently (key order, whitespace, `100` vs `"100.00"`) has the same fingerprint.
pub fn fingerprint(endpoint: &str, operation: &BalanceOperation) -> String {
    crate::hex::encode(&Sha256::digest(format!("{endpoint}\n{}", canonical_json(operation)).as_bytes()))
}

/// The identity of an invalid request kept under its key: the raw body, since it did not parse.
pub fn refusal_fingerprint(endpoint: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(endpoint.as_bytes());
    digest.update(b"\ninvalid\n");
    digest.update(body);
    crate::hex::encode(&digest.finalize())
}

/// The operation as canonical JSON (serde_json's maps keep keys sorted).
pub fn canonical_json(operation: &BalanceOperation) -> String {
    canonical_value(operation).to_string()
}

/// The operation as a JSON value: its fields with exact decimal amounts. The audit log shows it too.
pub fn canonical_value(operation: &BalanceOperation) -> serde_json::Value {
    use serde_json::json;
    match operation {
        BalanceOperation::Deposit { user, amount } => {
            json!({"user_id": user.get(), "amount": amount.to_decimal_string()})
        }
        BalanceOperation::Withdraw { user, amount } => {
            json!({"user_id": user.get(), "amount": amount.to_decimal_string()})
        }
        BalanceOperation::Reserve { key, amount } | BalanceOperation::Deduct { key, amount } => json!({
            "user_id": key.user.get(), "service_id": key.service.get(), "order_id": key.order.get(),
            "amount": amount.to_decimal_string(),
        }),
        BalanceOperation::Release { key, amount } => json!({
            "user_id": key.user.get(), "service_id": key.service.get(), "order_id": key.order.get(),
            "amount": amount.map(|amount| amount.to_decimal_string()),
        }),
        BalanceOperation::Transfer { sender, recipient, amount } => json!({
            "sender_id": sender.get(), "recipient_id": recipient.get(), "amount": amount.to_decimal_string(),
        }),
    }
}

/// The keys this process is applying right now. A second request with a key in the set is answered "in
/// flight" at once instead of queueing behind the first; the batch transaction does the same across
/// instances.
#[derive(Debug, Clone, Default)]
pub struct InFlightKeys(Arc<Mutex<HashSet<IdempotencyKey>>>);

impl InFlightKeys {
    /// Marks `key` in flight until the returned guard drops, or `None` if it already is.
    pub fn claim(&self, key: &IdempotencyKey) -> Option<InFlight<'_>> {
        let inserted = self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(key.clone());
        inserted.then(|| InFlight { set: &self.0, key: key.clone() })
    }
}

/// A key marked in flight until dropped, also when the request is cancelled.
#[derive(Debug)]
pub struct InFlight<'a> {
    set: &'a Mutex<HashSet<IdempotencyKey>>,
    key: IdempotencyKey,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_core::{Currency, Money, UserId};

    fn deposit(minor: i64) -> BalanceOperation {
        BalanceOperation::Deposit {
            user: UserId::new(1).unwrap_or_else(|_| panic!("id")),
            amount: Money::from_minor(minor, Currency::RUB),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_writes_exact_amounts() {
        assert_eq!(canonical_json(&deposit(10_000)), r#"{"amount":"100.00","user_id":1}"#);
    }

    #[test]
    fn the_fingerprint_depends_on_the_endpoint_and_the_request() {
        let same = fingerprint("add_funds", &deposit(100));
        assert_eq!(same, fingerprint("add_funds", &deposit(100)));
        assert_eq!(same.len(), 64);
        assert_ne!(same, fingerprint("withdraw_funds", &deposit(100)));
        assert_ne!(same, fingerprint("add_funds", &deposit(101)));
    }

    #[test]
    fn an_in_flight_key_is_released_when_its_request_ends() {
        let keys = InFlightKeys::default();
        let key = IdempotencyKey::console(1, "k");
        let first = keys.claim(&key);
        assert!(first.is_some());
        assert!(keys.claim(&key).is_none());
        drop(first);
        assert!(keys.claim(&key).is_some());
    }

    #[test]
    fn a_key_is_scoped_to_its_caller_and_bounded() {
        let key = IdempotencyKey::parse(b"order-1 retry", "user:7");
        assert_eq!(key.as_ref().map(IdempotencyKey::as_str), Ok("user:7/order-1 retry"));
        assert_ne!(IdempotencyKey::parse(b"k", "user:7"), IdempotencyKey::parse(b"k", "user:8"));
        assert_eq!(IdempotencyKey::parse(b"", "user:7"), Err(KeyError::Empty));
        assert!(IdempotencyKey::parse(&[b'k'; MAX_KEY_LEN], "s").is_ok());
        assert_eq!(IdempotencyKey::parse(&[b'k'; MAX_KEY_LEN + 1], "s"), Err(KeyError::TooLong));
        assert_eq!(IdempotencyKey::parse(b"tab\there", "s"), Err(KeyError::NotVisibleAscii));
        assert_eq!(IdempotencyKey::parse("ключ".as_bytes(), "s"), Err(KeyError::NotVisibleAscii));
    }
}

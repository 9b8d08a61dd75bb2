//! The simulated gateway: deterministic outcomes for documented test cards, the default for development and
//! tests.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use super::{GatewayError, GatewayFuture, GatewayOutcome, GatewayRecipient, GatewayRequest, PayoutGateway};

/// A test card the simulated gateway always declines, with reason [`DECLINED_REASON`].
pub const DECLINED_CARD: &str = "4000000000000002";

/// A test card whose first call for a payout id fails with a transient timeout; the next call completes.
pub const TIMEOUT_ONCE_CARD: &str = "4000000000000119";

/// A test card that always fails with a transient timeout, so its payout fails once its retries run out.
pub const ALWAYS_TIMEOUT_CARD: &str = "4000000000009995";

/// The reason the simulated gateway gives for [`DECLINED_CARD`].
pub const DECLINED_REASON: &str = "card_declined";

/// The reason the simulated gateway gives for a card number that is not 13–19 digits passing the Luhn
/// check (the API refuses such numbers, so only a bug gets one this far; a real gateway would decline it).
pub const INVALID_CARD_REASON: &str = "invalid_card_number";

/// The simulated gateway's latency when the configuration names none: long enough that concurrent
/// workers really overlap, short enough that a demo feels instant.
pub const DEFAULT_SIMULATED_LATENCY: Duration = Duration::from_millis(20);

/// An in-process gateway with deterministic outcomes, the default for development and tests.
///
/// - [`DECLINED_CARD`] is declined with [`DECLINED_REASON`];
/// - [`TIMEOUT_ONCE_CARD`] times out (transiently) on the first call for a payout id, then completes;
/// - [`ALWAYS_TIMEOUT_CARD`] always times out (transiently);
/// - a card number that fails validation is declined with [`INVALID_CARD_REASON`];
/// - every other card, and every bank account, completes with reference `sim-<payout id, simple form>`.
///
/// Like a real gateway it remembers idempotency keys: a repeated payout id gets the first final outcome
/// again (a transient failure is not final), and a repeated id with a different amount, currency or
/// recipient is refused permanently. It counts calls per payout id, so tests can prove that a payout was
/// sent exactly once. Its memory is per process and grows by one small entry per payout, which is fine for
/// the development server and tests it is meant for.
pub struct SimulatedGateway {
    latency: Duration,
    state: Mutex<SimulatedState>,
}

#[derive(Default)]
struct SimulatedState {
    keys: HashMap<Uuid, KeyRecord>,
    total_calls: u64,
}

/// What the simulated gateway remembers about one idempotency key. It keeps a hash of the request rather
/// than the request, so the full recipient details do not linger in memory.
struct KeyRecord {
    calls: u32,
    fingerprint: u64,
    outcome: Option<GatewayOutcome>,
}

impl SimulatedGateway {
    /// A simulated gateway whose every call takes `latency`.
    pub fn new(latency: Duration) -> SimulatedGateway {
        SimulatedGateway { latency, state: Mutex::new(SimulatedState::default()) }
    }

    /// How long every call takes.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// How many times `pay` was called with this payout id (replays and failures included).
    pub fn calls(&self, payout_id: Uuid) -> u32 {
        self.lock().keys.get(&payout_id).map_or(0, |record| record.calls)
    }

    /// How many times `pay` was called in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().total_calls
    }

    /// The final outcome recorded for this payout id, if it has one yet.
    pub fn final_outcome(&self, payout_id: Uuid) -> Option<GatewayOutcome> {
        self.lock().keys.get(&payout_id).and_then(|record| record.outcome.clone())
    }

    /// How many payout ids have a final outcome: with [`SimulatedGateway::calls`], what a test needs to
    /// show that every payout was paid exactly once.
    pub fn final_outcome_count(&self) -> usize {
        self.lock().keys.values().filter(|record| record.outcome.is_some()).count()
    }

    fn lock(&self) -> MutexGuard<'_, SimulatedState> {
        // Nothing panics while the lock is held, and every update leaves the counters consistent, so a
        // poisoned lock still holds valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the answer to one call and records it, all under the lock, so two concurrent calls with
    /// the same key can never both be "first".
    fn answer(&self, request: &GatewayRequest) -> Result<GatewayOutcome, GatewayError> {
        let fingerprint = fingerprint(request);
        let mut state = self.lock();
        state.total_calls = state.total_calls.saturating_add(1);
        let record = state.keys.entry(request.payout_id).or_insert(KeyRecord { calls: 0, fingerprint, outcome: None });
        record.calls = record.calls.saturating_add(1);
        if record.fingerprint != fingerprint {
            return Err(GatewayError::Permanent(format!(
                "idempotency key {} was first used for a different request",
                request.payout_id
            )));
        }
        if let Some(outcome) = &record.outcome {
            return Ok(outcome.clone());
        }
        let result = simulate(request, record.calls);
        if let Ok(outcome) = &result {
            record.outcome = Some(outcome.clone());
        }
        result
    }
}

impl Default for SimulatedGateway {
    /// A simulated gateway with [`DEFAULT_SIMULATED_LATENCY`].
    fn default() -> SimulatedGateway {
        SimulatedGateway::new(DEFAULT_SIMULATED_LATENCY)
    }
}

impl fmt::Debug for SimulatedGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimulatedGateway")
            .field("latency", &self.latency)
            .field("keys", &state.keys.len())
            .field("total_calls", &state.total_calls)
            .finish()
    }
}

impl PayoutGateway for SimulatedGateway {
    fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a> {
        Box::pin(async move {
            // Decide first, then wait: the key is claimed at once, as a real gateway locks it on arrival.
            let result = self.answer(request);
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            result
        })
    }
}

/// The simulated answer to a request whose key has no final outcome yet; `call` counts from 1.
fn simulate(request: &GatewayRequest, call: u32) -> Result<GatewayOutcome, GatewayError> {
    request.amount_decimal()?;
    let completed = || GatewayOutcome::Completed { reference: format!("sim-{}", request.payout_id.simple()) };
    let number = match &request.recipient {
        GatewayRecipient::BankAccount { .. } => return Ok(completed()),
        GatewayRecipient::Card { number, .. } => digits_only(number),
    };
    if !is_valid_card_number(&number) {
        return Ok(GatewayOutcome::Declined { reason: INVALID_CARD_REASON.to_owned() });
    }
    match number.as_str() {
        DECLINED_CARD => Ok(GatewayOutcome::Declined { reason: DECLINED_REASON.to_owned() }),
        TIMEOUT_ONCE_CARD if call == 1 => {
            Err(GatewayError::Transient("simulated gateway timeout (first call for this payout)".to_owned()))
        }
        ALWAYS_TIMEOUT_CARD => Err(GatewayError::Transient("simulated gateway timeout".to_owned())),
        _ => Ok(completed()),
    }
}

/// A hash of what must not change between calls with the same idempotency key. The description is left
/// out: it is informational, and a real gateway would not reject a retry over it.
fn fingerprint(request: &GatewayRequest) -> u64 {
    let mut hasher = DefaultHasher::new();
    request.amount_minor.hash(&mut hasher);
    request.currency.hash(&mut hasher);
    request.minor_digits.hash(&mut hasher);
    request.recipient.hash(&mut hasher);
    hasher.finish()
}

/// The card number without the spaces clients may type between groups.
fn digits_only(number: &str) -> String {
    number.chars().filter(|c| !c.is_whitespace()).collect()
}

/// 13–19 ASCII digits passing the Luhn check.
fn is_valid_card_number(number: &str) -> bool {
    if !(13..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_cards_pass_the_luhn_check() {
        for card in [DECLINED_CARD, TIMEOUT_ONCE_CARD, ALWAYS_TIMEOUT_CARD, "4111111111111111"] {
            assert!(is_valid_card_number(card), "{card}");
        }
        assert!(!is_valid_card_number("4111111111111112"));
        assert!(!is_valid_card_number("411111111111"));
        assert!(!is_valid_card_number("4111-1111-1111-1111"));
    }
}

//! Payout gateways: what a payout worker calls to send money to a recipient.
//!
//! A worker claims a payout, decrypts the recipient's details, builds a [`GatewayRequest`] and awaits
//! [`PayoutGateway::pay`]. The answer decides the payout's fate:
//!
//! - `Ok(`[`GatewayOutcome::Completed`]`)` → the payout is completed with the gateway's reference;
//! - `Ok(`[`GatewayOutcome::Declined`]`)` → the payout fails with the gateway's reason;
//! - `Err(`[`GatewayError::Transient`]`)` → we do not know what happened: retry later with backoff;
//! - `Err(`[`GatewayError::Permanent`]`)` → retrying cannot help (misconfiguration, a rejected request):
//!   the payout fails.
//!
//! Every call carries the payout id as its idempotency key, so a retry after a timeout, or a second
//! worker picking up an expired lease, can never pay twice: the gateway answers a key it has seen with the
//! first final outcome.
//!
//! Two implementations exist: [`SimulatedGateway`] (the default, with documented test cards) and
//! [`HttpGateway`] (signed JSON over HTTP or HTTPS). [`build`] picks one from a [`GatewayConfig`] at
//! start-up, which is why the trait is dyn-compatible.
//!
//! The files: this one holds the trait, the request and outcome types and the configuration;
//! `simulated.rs` the simulated gateway; `http.rs` the HTTP client (TLS, timeouts); `wire.rs` the HTTP
//! gateway's protocol (body, headers, how an answer is read); `masking.rs` how card and account
//! numbers are hidden in logs and messages.

mod http;
mod masking;
mod simulated;
mod wire;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use self::masking::mask_number;
use crate::redact::redact_url;

pub use self::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP_TIMEOUT, HttpGateway};
pub use self::simulated::{
    ALWAYS_TIMEOUT_CARD, DECLINED_CARD, DECLINED_REASON, DEFAULT_SIMULATED_LATENCY, INVALID_CARD_REASON,
    SimulatedGateway, TIMEOUT_ONCE_CARD,
};
pub use self::wire::{IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER};

/// The largest number of minor digits an ISO 4217 currency has (4, e.g. CLF); more is a caller's bug.
///
/// Checked before formatting so a corrupt value becomes a permanent error instead of an overflow.
pub const MAX_MINOR_DIGITS: u8 = 4;

/// What a worker asks the gateway to pay.
///
/// It holds the recipient's full details (the worker decrypts them for this call only); its `Debug`
/// output masks card and account numbers to their last 4 digits, so logging a request is safe.
#[derive(Clone, Debug)]
pub struct GatewayRequest {
    /// The payout being paid; also the idempotency key of the call.
    pub payout_id: Uuid,
    /// The amount in minor units (kopecks for RUB); must be positive.
    pub amount_minor: i64,
    /// The ISO 4217 alphabetic code, upper-case (`RUB`).
    pub currency: String,
    /// How many minor digits the currency has (2 for RUB), which fixes how `amount_minor` is printed.
    pub minor_digits: u8,
    /// Where the money goes, in full.
    pub recipient: GatewayRecipient,
    /// The payout's description, passed on as is.
    pub description: String,
}

impl GatewayRequest {
    /// The amount as an exact decimal string with the currency's minor digits, e.g. `1500.00`.
    ///
    /// Fails permanently for a non-positive amount or an impossible number of minor digits: both mean
    /// the caller built a wrong request, and sending it again would not fix it.
    pub fn amount_decimal(&self) -> Result<String, GatewayError> {
        if self.amount_minor <= 0 {
            return Err(GatewayError::Permanent(format!(
                "amount must be positive, got {} minor units",
                self.amount_minor
            )));
        }
        if self.minor_digits > MAX_MINOR_DIGITS {
            return Err(GatewayError::Permanent(format!(
                "currency {} cannot have {} minor digits",
                self.currency, self.minor_digits
            )));
        }
        Ok(payledger_core::money::format_minor(self.amount_minor, self.minor_digits))
    }
}

/// Where a payout's money goes, with full (unmasked) details.
///
/// Deliberately not `Serialize`: the only serialisation is the gateway's wire format, so these details
/// cannot leak into an API response by accident. `Debug` masks the numbers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum GatewayRecipient {
    /// A bank card.
    Card {
        /// The card number, digits only.
        number: String,
        /// The cardholder's name.
        holder: String,
    },
    /// A Russian bank account.
    BankAccount {
        /// The 20-digit account number.
        account_number: String,
        /// The bank's 9-digit BIK.
        bik: String,
        /// The account holder's name.
        holder: String,
    },
}

impl GatewayRecipient {
    /// The card or account number masked to its last 4 digits (`•••• 1111`), for logs and messages.
    pub fn masked_number(&self) -> String {
        match self {
            GatewayRecipient::Card { number, .. } => mask_number(number),
            GatewayRecipient::BankAccount { account_number, .. } => mask_number(account_number),
        }
    }
}

impl fmt::Debug for GatewayRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayRecipient::Card { number, holder } => {
                f.debug_struct("Card").field("number", &mask_number(number)).field("holder", holder).finish()
            }
            GatewayRecipient::BankAccount { account_number, bik, holder } => f
                .debug_struct("BankAccount")
                .field("account_number", &mask_number(account_number))
                .field("bik", bik)
                .field("holder", holder)
                .finish(),
        }
    }
}

/// A final answer from the gateway: the same payout id always gets the same one back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayOutcome {
    /// The money was sent.
    Completed {
        /// The gateway's identifier of the transfer, stored on the payout.
        reference: String,
    },
    /// The gateway refused the payout for good.
    Declined {
        /// Why, as the gateway put it (e.g. `card_declined`); becomes the payout's failure reason.
        reason: String,
    },
}

/// A gateway call that produced no final outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Timeouts, connection errors, 408, 429, 5xx, or an answer we cannot interpret: the payout may or may
    /// not have been sent, so retry with backoff; the idempotency key makes the retry safe.
    #[error("transient gateway error: {0}")]
    Transient(String),
    /// Misconfiguration or a request the gateway rejected (a 4xx other than 408/429): retrying cannot
    /// help, so the payout fails with this message.
    #[error("gateway error: {0}")]
    Permanent(String),
}

impl GatewayError {
    /// Whether the call should be retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, GatewayError::Transient(_))
    }

    /// The message without the kind prefix, for a payout's failure reason.
    pub fn message(&self) -> &str {
        match self {
            GatewayError::Transient(message) | GatewayError::Permanent(message) => message,
        }
    }
}

/// The future a [`PayoutGateway`] returns, boxed so the trait can be used as `Arc<dyn PayoutGateway>`.
pub type GatewayFuture<'a> = Pin<Box<dyn Future<Output = Result<GatewayOutcome, GatewayError>> + Send + 'a>>;

/// Something that can pay a payout.
///
/// Implementations must be idempotent by `request.payout_id`: once a final outcome has been given for an
/// id, every later call with that id returns it again without paying again.
pub trait PayoutGateway: Send + Sync {
    /// Asks the gateway to pay `request`.
    fn pay<'a>(&'a self, request: &'a GatewayRequest) -> GatewayFuture<'a>;
}

/// Why a gateway could not be built from its configuration (reported at start-up).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayConfigError {
    /// The URL does not parse as an absolute URL with a host.
    #[error("payout gateway URL {0:?} is not an absolute http:// or https:// URL")]
    InvalidUrl(String),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("payout gateway URL {url:?} has scheme {scheme:?}; only http and https are supported")]
    UnsupportedScheme {
        /// The URL, with any password redacted.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// The signing secret is unusable (empty, which would make the signature worthless).
    #[error("the payout gateway signing secret {0}")]
    InvalidSecret(&'static str),
    /// A timeout of zero would fail every call.
    #[error("the payout gateway {0} timeout must be greater than zero")]
    ZeroTimeout(&'static str),
    /// TLS could not be set up (for example, no root certificates were found for an https URL).
    #[error("setting up TLS for the payout gateway: {0}")]
    Tls(String),
}

/// Which gateway to use, chosen from the server's configuration at start-up.
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayConfig {
    /// The in-process [`SimulatedGateway`].
    Simulated {
        /// How long every call takes.
        latency: Duration,
    },
    /// The [`HttpGateway`].
    Http {
        /// Where payouts are POSTed (`http://` or `https://`).
        url: String,
        /// The shared secret the body is signed with (HMAC-SHA256); never logged.
        secret: String,
        /// The limit on a whole call: connecting, sending and reading the answer.
        timeout: Duration,
        /// The limit on establishing the TCP connection alone.
        connect_timeout: Duration,
    },
}

impl GatewayConfig {
    /// An HTTP gateway configuration with the default timeouts.
    pub fn http(url: impl Into<String>, secret: impl Into<String>) -> GatewayConfig {
        GatewayConfig::Http {
            url: url.into(),
            secret: secret.into(),
            timeout: DEFAULT_HTTP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Default for GatewayConfig {
    /// The simulated gateway with [`DEFAULT_SIMULATED_LATENCY`].
    fn default() -> GatewayConfig {
        GatewayConfig::Simulated { latency: DEFAULT_SIMULATED_LATENCY }
    }
}

impl fmt::Debug for GatewayConfig {
    // Hand-written so that printing the configuration at start-up never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayConfig::Simulated { latency } => f.debug_struct("Simulated").field("latency", latency).finish(),
            GatewayConfig::Http { url, secret: _, timeout, connect_timeout } => f
                .debug_struct("Http")
                .field("url", &redact_url(url))
                .field("secret", &"***")
                .field("timeout", timeout)
                .field("connect_timeout", connect_timeout)
                .finish(),
        }
    }
}

/// Builds the gateway `config` describes.
pub fn build(config: &GatewayConfig) -> Result<Arc<dyn PayoutGateway>, GatewayConfigError> {
    match config {
        GatewayConfig::Simulated { latency } => Ok(Arc::new(SimulatedGateway::new(*latency))),
        GatewayConfig::Http { url, secret, timeout, connect_timeout } => {
            Ok(Arc::new(HttpGateway::new(url, secret, *timeout, *connect_timeout)?))
        }
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
    fn debug_output_of_a_request_never_contains_the_full_card_number() {
        for number in ["4111111111111111", "4000000000000002", "4111 1111 1111 1111", "5555555555554444"] {
            let request = card_request(number);
            let printed = format!("{request:?}");
            let pretty = format!("{request:#?}");
            let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
            for text in [&printed, &pretty] {
                assert!(!text.contains(number), "{text}");
                assert!(!text.contains(&digits), "{text}");
                assert!(!text.contains(&digits[..digits.len() - 4]), "{text}");
                assert!(text.contains(&format!("•••• {}", &digits[digits.len() - 4..])), "{text}");
            }
        }
    }

    #[test]
    fn debug_output_of_a_bank_account_masks_the_account_number() {
        let recipient = GatewayRecipient::BankAccount {
            account_number: "40817810099910004312".to_owned(),
            bik: "044525225".to_owned(),
            holder: "ООО Ромашка".to_owned(),
        };
        let printed = format!("{recipient:?}");
        assert!(!printed.contains("40817810099910004312"), "{printed}");
        assert!(printed.contains("•••• 4312"), "{printed}");
        assert!(printed.contains("044525225"), "{printed}");
        assert_eq!(recipient.masked_number(), "•••• 4312");
    }

    #[test]
    fn configuration_debug_never_shows_the_secret() {
        let config = GatewayConfig::http("https://user:pw@gateway.example/payouts", "whsec_very_secret");
        let printed = format!("{config:?}");
        assert!(!printed.contains("whsec_very_secret"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
    }

    #[test]
    fn amounts_are_printed_exactly_from_minor_units() {
        let mut request = card_request("4111111111111111");
        assert_eq!(request.amount_decimal(), Ok("1500.00".to_owned()));
        request.amount_minor = 1;
        assert_eq!(request.amount_decimal(), Ok("0.01".to_owned()));
        request.minor_digits = 0;
        request.amount_minor = 1500;
        assert_eq!(request.amount_decimal(), Ok("1500".to_owned()));
        request.minor_digits = 3;
        request.amount_minor = 1_234_567;
        assert_eq!(request.amount_decimal(), Ok("1234.567".to_owned()));
        request.amount_minor = 0;
        assert!(matches!(request.amount_decimal(), Err(GatewayError::Permanent(_))));
        request.amount_minor = 1;
        request.minor_digits = 40;
        assert!(matches!(request.amount_decimal(), Err(GatewayError::Permanent(_))));
    }
}

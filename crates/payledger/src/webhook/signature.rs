//! Signed requests between payledger and its counterparties: the header
//! `X-Payledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//!
//! payledger signs what it sends to the payment gateway, and verifies what the gateway sends back (and, later,
//! the bank's webhooks). Several `v1` values are accepted, so a secret can rotate; the timestamp must be within
//! a tolerance of now, so a captured request cannot be replayed later; comparisons run in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-payledger-signature";
/// How far a signature's timestamp may be from now, in seconds.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("the signature header is missing")]
    Missing,
    /// Not `t=…,v1=…`.
    #[error("the signature header is malformed")]
    Malformed,
    /// Too old or too far in the future.
    #[error("the signature's timestamp is outside the tolerance")]
    Expired,
    /// No `v1` value matches.
    #[error("the signature does not match")]
    Mismatch,
}

fn keyed(secret: &str) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()
}

fn mac_of(secret: &str, timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = keyed(secret)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The header value signing `body` at `timestamp` with `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac_of(secret, timestamp, body).map(|mac| mac.finalize().into_bytes().to_vec()).unwrap_or_default();
    format!("t={timestamp},v1={}", crate::hex::encode(&digest))
}

/// Checks `header` against `body` with any of `secrets`, at `now` (unix seconds).
pub fn verify(
    secrets: &[&str],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", value)) => candidates.push(crate::hex::decode(value).ok_or(SignatureError::Malformed)?),
            // Other schemes may be added later; they are ignored, not refused.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_seconds.unsigned_abs() {
        return Err(SignatureError::Expired);
    }
    for secret in secrets {
        for candidate in &candidates {
            // `verify_slice` compares in constant time.
            if mac_of(secret, timestamp, body).is_some_and(|mac| mac.verify_slice(candidate).is_ok()) {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_signature_matches_a_reference_hmac() {
        // python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_test', b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
        let header = sign("whsec_test", NOW, br#"{"a":1}"#);
        assert_eq!(header, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
        assert_eq!(verify(&["whsec_test"], Some(&header), br#"{"a":1}"#, NOW, 300), Ok(()));
    }

    #[test]
    fn tampered_expired_future_missing_and_rotated_signatures() {
        let body = br#"{"payout_id":"x"}"#;
        let header = sign("old", NOW, body);
        assert_eq!(verify(&["old"], Some(&header), b"{}", NOW, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(&["old"], Some(&header), body, NOW + 301, 300), Err(SignatureError::Expired));
        assert_eq!(verify(&["old"], Some(&header), body, NOW - 301, 300), Err(SignatureError::Expired));
        assert_eq!(verify(&["old"], None, body, NOW, 300), Err(SignatureError::Missing));
        assert_eq!(verify(&["old"], Some("v1=zz"), body, NOW, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(&["new"], Some(&header), body, NOW, 300), Err(SignatureError::Mismatch));
        // Rotation: the receiver knows both secrets, or the sender signs with both.
        assert_eq!(verify(&["new", "old"], Some(&header), body, NOW, 300), Ok(()));
        let both =
            format!("{},v1={}", sign("new", NOW, body), sign("old", NOW, body).split("v1=").nth(1).unwrap_or(""));
        assert_eq!(verify(&["old"], Some(&both), body, NOW, 300), Ok(()));
    }
}

//! Standard Webhooks signatures (https://www.standardwebhooks.com/): an endpoint's secret is `whsec_` followed
//! by the base64 of its key bytes, and a delivery's `webhook-signature` header is `v1,<base64 of HMAC-SHA256
//! of "{webhook-id}.{webhook-timestamp}.{body}">`, several separated by spaces while a rotated secret is still
//! live. No I/O: the delivery worker signs, the tests verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of every endpoint secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest and most key bytes a secret carries (the specification's range).
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// An endpoint's signing key, parsed from its `whsec_…` text.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(<hidden>)")
    }
}

/// Why a secret's text is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("an endpoint secret starts with whsec_")]
    Prefix,
    /// What follows is not base64.
    #[error("an endpoint secret is whsec_ and base64")]
    Base64,
    /// Too few or too many key bytes.
    #[error("an endpoint secret carries 24 to 64 key bytes")]
    Length,
}

impl EndpointSecret {
    /// The secret written as `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<EndpointSecret, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(EndpointSecret { key })
    }

    /// A secret of `key` bytes (made from the operating system's randomness by the caller).
    pub fn from_key(key: Vec<u8>) -> Result<EndpointSecret, SecretError> {
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(EndpointSecret { key })
    }

    /// The secret's text, `whsec_<base64>`: shown once, when the endpoint is created or rotated.
    pub fn reveal(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The signature of one delivery attempt: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            // HMAC takes a key of any length.
            Err(_) => Vec::new(),
        };
        format!("v1,{}", STANDARD.encode(digest))
    }
}

/// The `webhook-signature` header for `secrets` (the current one first, then one still valid after a
/// rotation): each signature, separated by a space.
pub fn signature_header(secrets: &[EndpointSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|secret| secret.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published test vector.
    #[test]
    fn the_specifications_test_vector() {
        let secret = EndpointSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("the spec's secret");
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_are_whsec_and_24_to_64_bytes_and_round_trip() {
        assert_eq!(EndpointSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), Err(SecretError::Prefix));
        assert_eq!(EndpointSecret::parse("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(EndpointSecret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 23]))), Err(SecretError::Length));
        assert_eq!(EndpointSecret::from_key(vec![7u8; 65]), Err(SecretError::Length));
        let secret = EndpointSecret::from_key(vec![9u8; 32]).expect("32 bytes");
        assert_eq!(EndpointSecret::parse(&secret.reveal()), Ok(secret.clone()));
        assert!(!format!("{secret:?}").contains(&secret.reveal()[6..]), "never in a debug print");
    }

    #[test]
    fn two_live_secrets_give_two_signatures_separated_by_a_space() {
        let (new, old) = (EndpointSecret::from_key(vec![1u8; 24]), EndpointSecret::from_key(vec![2u8; 24]));
        let (new, old) = (new.expect("key"), old.expect("key"));
        let header = signature_header(&[new.clone(), old.clone()], "evt_1", 10, b"{}");
        assert_eq!(header, format!("{} {}", new.sign("evt_1", 10, b"{}"), old.sign("evt_1", 10, b"{}")));
        assert_ne!(new.sign("evt_1", 10, b"{}"), new.sign("evt_1", 11, b"{}"), "the timestamp is signed");
    }
}

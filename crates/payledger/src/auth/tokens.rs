//! API tokens: short-lived signed access tokens (JWT, HS256) and opaque refresh tokens.
//!
//! This module is pure logic and crypto: no database and no HTTP. The caller stores refresh-token hashes,
//! rotates them and revokes families; this module only mints, hashes and verifies.
//!
//! - An access token is a JWT signed with HMAC-SHA256 under a key from configuration. Its payload carries the
//!   user id (`sub`), username (`name`), role, `iat`, `exp`, a random `jti` and `typ: "access"`, so a future
//!   JWT of another kind signed with the same key can never pass as an access token.
//! - Verification pins the algorithm to HS256 and checks expiry against a `now` passed in by the caller with
//!   zero leeway, never against the system clock inside the JWT library, so tests are deterministic.
//! - A refresh token is 32 random bytes from the operating system, hex-encoded; only its SHA-256 is stored, so
//!   a leaked database does not hand out live refresh tokens.
//!
//! No error message carries token or secret material: these errors end up in logs and HTTP bodies.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// The shortest signing secret accepted, in bytes: HS256's key should be at least as long as its 256-bit
/// output (RFC 7518 §3.2), and the production profile refuses anything shorter.
pub const MIN_SECRET_LEN: usize = 32;

/// The `typ` claim every access token carries.
const ACCESS_TYP: &str = "access";

/// How many random bytes a secret holds: 256 bits, beyond any guessing.
const SECRET_BYTES: usize = 32;

/// Why a token could not be issued or was refused.
///
/// Messages name the problem only, never a token, a secret or a claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token was genuine but its expiry is not after `now`.
    #[error("the access token has expired")]
    Expired,
    /// The token is malformed, signed with another key or algorithm, tampered with, or not an access token.
    /// One variant for all of these so an answer never tells an attacker which check failed.
    #[error("the access token is invalid")]
    Invalid,
    /// The signing secret is shorter than `min` bytes.
    #[error("the token signing secret is too short: it must be at least {min} bytes")]
    WeakSecret {
        /// The minimum length, in bytes.
        min: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness(#[source] rand::rand_core::OsError),
    /// The requested lifetime is shorter than one second or puts the expiry out of range.
    #[error("an access token's lifetime must be at least one second and its expiry a representable time")]
    InvalidTtl,
}

/// What a user may do, from least to most privileged: `Viewer < Operator < Admin`.
///
/// The variant order is the privilege order, so the derived `Ord` is what [`Role::at_least`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads and operates: creates and changes payouts, moves user balances.
    Operator,
    /// Everything, including deleting payouts, jobs and user management.
    Admin,
}

impl Role {
    /// The role's name as stored and as it appears in tokens: `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named exactly `viewer`, `operator` or `admin`, or `None`.
    ///
    /// Case-sensitive on purpose: the database and tokens only ever hold the lower-case names, so anything
    /// else is a bug or a forgery rather than a spelling to be forgiven.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role grants at least the privileges of `needed`.
    pub fn at_least(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified contents of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user's id.
    pub sub: i64,
    /// The user's username, at the time the token was issued.
    pub name: String,
    /// The user's role, at the time the token was issued.
    pub role: Role,
    /// When the token expires, in unix seconds; it is valid strictly before this instant.
    pub exp: i64,
    /// When the token was issued, in unix seconds.
    pub iat: i64,
    /// When the token was issued, in unix milliseconds.
    pub issued_ms: i64,
    /// The token's unique id (a UUID), so one token can be named in logs or a deny-list.
    pub jti: String,
}

/// The JWT payload as it travels. Kept apart from [`Claims`] because `sub` is a string on the wire (RFC 7519
/// §4.1.2 makes it a StringOrURI, and other JWT tools expect one) and because `typ` is checked, not returned.
#[derive(Serialize, Deserialize)]
struct AccessPayload {
    sub: String,
    name: String,
    role: Role,
    exp: i64,
    iat: i64,
    /// When the token was issued, in unix milliseconds: `iat` is whole seconds, too coarse to tell a token
    /// issued just before a revocation from one issued just after it.
    #[serde(default)]
    iat_ms: i64,
    jti: String,
    typ: String,
}

/// A moment in unix milliseconds.
pub fn unix_millis(moment: OffsetDateTime) -> i64 {
    i64::try_from(moment.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The keys that sign and verify access tokens, from one HS256 secret.
///
/// `Debug` prints no key material, so a `TokenKeys` inside settings or app state can be logged safely.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens already verified, by the SHA-256 of their exact text (so the memory holds no usable token): a
    /// client sends the same token with every request, and checking its signature and parsing its JSON again
    /// was a tenth of a balance read's time. Only tokens that passed every check are kept (a forged or altered
    /// one has another digest), and a kept token's expiry is still checked on every use.
    verified: Arc<Mutex<HashMap<[u8; 32], Claims>>>,
}

/// The most verified tokens kept; past it the memory starts again empty.
const MAX_VERIFIED_TOKENS: usize = 4096;

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys").field("algorithm", &"HS256").finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys from `secret`, which must be at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<TokenKeys, TokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(TokenError::WeakSecret { min: MIN_SECRET_LEN });
        }
        // Only HS256: accepting a list of algorithms is how key-confusion attacks get in.
        let mut validation = Validation::new(Algorithm::HS256);
        // jsonwebtoken would compare `exp` with the system clock (and a 60 s default leeway); expiry is checked
        // in `verify_access` against the caller's `now` instead, so it is exact and testable.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        // Still require `exp` to be present: a token without one must never be accepted.
        validation.set_required_spec_claims(&["exp"]);
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Arc::default(),
        })
    }

    /// A signed access token for the user, issued at `now` and valid for `ttl`, with its expiry.
    ///
    /// The expiry is whole seconds (JWT's `exp` has no fraction), so it may be up to a second before
    /// `now + ttl`; the returned time is exactly the token's `exp`. `ttl` must be at least one second, so the
    /// token is never born expired.
    pub fn issue_access(
        &self,
        user_id: i64,
        username: &str,
        role: Role,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<(String, OffsetDateTime), TokenError> {
        if ttl < Duration::SECOND {
            return Err(TokenError::InvalidTtl);
        }
        let exp = now.checked_add(ttl).ok_or(TokenError::InvalidTtl)?.unix_timestamp();
        let expires = OffsetDateTime::from_unix_timestamp(exp).map_err(|_| TokenError::InvalidTtl)?;
        let payload = AccessPayload {
            sub: user_id.to_string(),
            name: username.to_owned(),
            role,
            exp,
            iat: now.unix_timestamp(),
            iat_ms: unix_millis(now),
            jti: new_jti()?,
            typ: ACCESS_TYP.to_owned(),
        };
        // Encoding fails only on a key/algorithm mismatch, which cannot happen with an HMAC key and HS256;
        // mapping it to `Invalid` keeps the function panic-free all the same.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &payload, &self.encoding)
            .map_err(|_| TokenError::Invalid)?;
        Ok((token, expires))
    }

    /// The claims of `token` if it is a genuine, unexpired access token at `now`.
    ///
    /// Checks, in this order: structure, algorithm (HS256 only, so `alg: none` and others are refused), the
    /// signature, the payload's shape, `typ == "access"`, then `now < exp` with zero leeway. The signature comes
    /// before expiry so that [`TokenError::Expired`] is only ever said of a token this service really issued.
    pub fn verify_access(&self, token: &str, now: OffsetDateTime) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self.verified.lock().unwrap_or_else(PoisonError::into_inner).get(&digest).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                if !expired(&claims, now)? {
                    let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                    if verified.len() >= MAX_VERIFIED_TOKENS {
                        // The expired ones first; all of them only if every one is still valid.
                        verified.retain(|_, kept| kept.exp > now.unix_timestamp());
                        if verified.len() >= MAX_VERIFIED_TOKENS {
                            verified.clear();
                        }
                    }
                    verified.insert(digest, claims.clone());
                }
                claims
            }
        };
        if expired(&claims, now)? {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The claims of a genuine access token, expired or not: every check of [`TokenKeys::verify_access`] but
    /// the expiry.
    fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        // Every library error (bad base64, bad JSON, wrong algorithm, bad signature, missing exp) is `Invalid`:
        // the details are not the client's business, and they could help an attacker probe.
        let data = jsonwebtoken::decode::<AccessPayload>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let payload = data.claims;
        if payload.typ != ACCESS_TYP {
            return Err(TokenError::Invalid);
        }
        let sub = payload.sub.parse::<i64>().map_err(|_| TokenError::Invalid)?;
        // A token without `iat_ms` counts as issued at the start of its `iat` second.
        let issued_ms = if payload.iat_ms > 0 { payload.iat_ms } else { payload.iat.saturating_mul(1000) };
        Ok(Claims {
            sub,
            name: payload.name,
            role: payload.role,
            exp: payload.exp,
            iat: payload.iat,
            issued_ms,
            jti: payload.jti,
        })
    }
}

/// Whether claims verified as genuine have expired at `now` (an `exp` out of time's range is invalid).
fn expired(claims: &Claims, now: OffsetDateTime) -> Result<bool, TokenError> {
    let expires = OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| TokenError::Invalid)?;
    Ok(now >= expires)
}

/// A random v4 UUID for `jti`, from the OS generator. `Uuid::new_v4` would panic if the generator failed;
/// this returns an error instead.
fn new_jti() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut bytes).map_err(TokenError::Randomness)?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string())
}

/// A new random secret: 32 bytes from the OS generator as 64 lower-case hex characters. Refresh tokens,
/// console session tokens, CSRF tokens and per-process keys are all made by it.
///
/// Returns an error rather than panicking if the operating system's generator fails.
pub fn random_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.try_fill_bytes(&mut bytes).map_err(TokenError::Randomness)?;
    Ok(crate::hex::encode(&bytes))
}

/// The SHA-256 of a secret's text (a refresh token, a console session token), as lower-case hex: what is
/// stored and looked up in its place.
///
/// A plain hash (no salt, no slow KDF) is enough because the secret is 256 random bits, not a password: there
/// is nothing to brute-force, and a deterministic hash is what lets the database find the row by it.
pub fn secret_hash(token: &str) -> String {
    crate::hex::encode(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
    const OTHER_SECRET: &[u8] = b"fedcba9876543210fedcba9876543210-other-secret";
    const NOW: OffsetDateTime = datetime!(2026-11-05 12:00:00.250 UTC);

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET).unwrap()
    }

    fn issue(keys: &TokenKeys) -> (String, OffsetDateTime) {
        keys.issue_access(42, "alice", Role::Operator, NOW, Duration::minutes(15)).unwrap()
    }

    const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// Unpadded base64url, as JWT segments use; the tests forge segments by hand.
    fn b64url_encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            }
        }
        out
    }

    fn b64url_decode(text: &str) -> Vec<u8> {
        let values: Vec<u32> = text.bytes().map(|c| B64URL.iter().position(|d| *d == c).unwrap() as u32).collect();
        let mut out = Vec::new();
        for chunk in values.chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, v)| acc | v << (18 - 6 * i));
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    fn segments(token: &str) -> (String, String, String) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
    }

    #[test]
    fn base64url_helpers_round_trip() {
        for len in 0..10 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
            assert_eq!(b64url_decode(&b64url_encode(&bytes)), bytes);
        }
    }

    #[test]
    fn round_trip() {
        let keys = keys();
        let (token, expires) = issue(&keys);
        assert_eq!(expires, datetime!(2026-11-05 12:15:00 UTC));
        let claims = keys.verify_access(&token, NOW).unwrap();
        assert_eq!(claims.sub, 42);
        assert_eq!(claims.name, "alice");
        assert_eq!(claims.role, Role::Operator);
        assert_eq!(claims.iat, NOW.unix_timestamp());
        assert_eq!(claims.exp, expires.unix_timestamp());
        assert!(uuid::Uuid::parse_str(&claims.jti).is_ok());
        // Each token gets its own jti.
        let (again, _) = issue(&keys);
        assert_ne!(keys.verify_access(&again, NOW).unwrap().jti, claims.jti);
    }

    #[test]
    fn payload_carries_typ_access_and_string_sub() {
        let (token, _) = issue(&keys());
        let (header, payload, _) = segments(&token);
        let header: serde_json::Value = serde_json::from_slice(&b64url_decode(&header)).unwrap();
        assert_eq!(header["alg"], "HS256");
        let payload: serde_json::Value = serde_json::from_slice(&b64url_decode(&payload)).unwrap();
        assert_eq!(payload["typ"], "access");
        assert_eq!(payload["sub"], "42");
        assert_eq!(payload["role"], "operator");
    }

    #[test]
    fn expiry_is_exact_with_zero_leeway() {
        let keys = keys();
        let (token, expires) = issue(&keys);
        let just_before = expires - Duration::nanoseconds(1);
        assert!(keys.verify_access(&token, just_before).is_ok());
        // From here on the token is remembered as verified: its expiry is still checked on every use.
        assert_eq!(keys.verify_access(&token, expires), Err(TokenError::Expired));
        assert_eq!(keys.verify_access(&token, expires + Duration::seconds(1)), Err(TokenError::Expired));
        assert_eq!(keys.verify_access(&token, expires + Duration::days(365)), Err(TokenError::Expired));
    }

    #[test]
    fn ttl_shorter_than_a_second_is_refused() {
        let keys = keys();
        for ttl in [Duration::ZERO, Duration::milliseconds(999), Duration::seconds(-5)] {
            assert_eq!(keys.issue_access(1, "a", Role::Viewer, NOW, ttl), Err(TokenError::InvalidTtl));
        }
        assert_eq!(keys.issue_access(1, "a", Role::Viewer, NOW, Duration::MAX), Err(TokenError::InvalidTtl));
        let (token, expires) = keys.issue_access(1, "a", Role::Viewer, NOW, Duration::SECOND).unwrap();
        assert!(expires > NOW);
        assert!(keys.verify_access(&token, NOW).is_ok());
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let (token, _) = issue(&TokenKeys::new(OTHER_SECRET).unwrap());
        assert_eq!(keys().verify_access(&token, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let keys = keys();
        let (token, _) = issue(&keys);
        // The genuine token is verified (and remembered) first: a forgery of it must still be checked in full.
        assert!(keys.verify_access(&token, NOW).is_ok());
        assert!(keys.verify_access(&token, NOW).is_ok(), "the remembered token");
        let (header, payload, signature) = segments(&token);
        let mut claims: serde_json::Value = serde_json::from_slice(&b64url_decode(&payload)).unwrap();
        claims["role"] = "admin".into();
        let forged = format!("{header}.{}.{signature}", b64url_encode(claims.to_string().as_bytes()));
        assert_eq!(keys.verify_access(&forged, NOW), Err(TokenError::Invalid));
        // A flipped signature character is refused too.
        let mut bad_signature = signature.into_bytes();
        bad_signature[0] = if bad_signature[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{header}.{payload}.{}", String::from_utf8(bad_signature).unwrap());
        assert_eq!(keys.verify_access(&forged, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = keys();
        let (token, _) = issue(&keys);
        let (_, payload, signature) = segments(&token);
        for alg in ["none", "None", "NONE"] {
            let header = b64url_encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            assert_eq!(keys.verify_access(&format!("{header}.{payload}."), NOW), Err(TokenError::Invalid));
            assert_eq!(keys.verify_access(&format!("{header}.{payload}.{signature}"), NOW), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn other_hmac_algorithm_with_the_same_secret_is_refused() {
        let payload = AccessPayload {
            sub: "42".into(),
            name: "alice".into(),
            role: Role::Admin,
            exp: NOW.unix_timestamp() + 600,
            iat: NOW.unix_timestamp(),
            iat_ms: 0,
            jti: "x".into(),
            typ: ACCESS_TYP.into(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &payload, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(keys().verify_access(&token, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn wrong_typ_or_missing_exp_is_refused() {
        let keys = keys();
        let sign = |value: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &value, &EncodingKey::from_secret(SECRET)).unwrap()
        };
        let exp = NOW.unix_timestamp() + 600;
        let good = serde_json::json!({
            "sub": "42", "name": "alice", "role": "admin", "exp": exp, "iat": 0, "jti": "x", "typ": "access"
        });
        assert!(keys.verify_access(&sign(good.clone()), NOW).is_ok());
        for (field, value) in [("typ", "refresh".into()), ("role", "root".into()), ("sub", "not-a-number".into())] {
            let mut claims = good.clone();
            claims[field] = value;
            assert_eq!(keys.verify_access(&sign(claims), NOW), Err(TokenError::Invalid), "{field}");
        }
        for field in ["exp", "typ"] {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove(field);
            assert_eq!(keys.verify_access(&sign(claims), NOW), Err(TokenError::Invalid), "{field}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        let keys = keys();
        for token in ["", ".", "..", "a.b.c", "not a token", "eyJhbGciOiJIUzI1NiJ9..", "a.b.c.d"] {
            assert_eq!(keys.verify_access(token, NOW), Err(TokenError::Invalid), "{token:?}");
        }
    }

    #[test]
    fn secret_hash_is_stable_and_distinct() {
        let token = random_secret().unwrap();
        let hash = secret_hash(&token);
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(hash.len(), 64);
        assert_eq!(secret_hash(&token), hash);
        assert_eq!(secret_hash(&token), secret_hash(&token.clone()));
        assert_ne!(hash, token);
        let other = random_secret().unwrap();
        let other_hash = secret_hash(&other);
        assert_ne!(other, token);
        assert_ne!(other_hash, hash);
        // A known vector, so the stored format cannot drift silently.
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn role_ordering_and_names() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::Admin.at_least(Role::Admin));
        assert!(Role::Admin.at_least(Role::Operator));
        assert!(Role::Admin.at_least(Role::Viewer));
        assert!(Role::Operator.at_least(Role::Viewer));
        assert!(!Role::Operator.at_least(Role::Admin));
        assert!(!Role::Viewer.at_least(Role::Operator));
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            assert_eq!(role.to_string(), role.as_str());
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse(""), None);
    }

    #[test]
    fn weak_secret_is_refused() {
        let error = TokenKeys::new(&[7u8; MIN_SECRET_LEN - 1]).unwrap_err();
        assert_eq!(error, TokenError::WeakSecret { min: 32 });
        assert!(error.to_string().contains("32 bytes"));
        assert_eq!(TokenKeys::new(b"").unwrap_err(), TokenError::WeakSecret { min: 32 });
        assert!(TokenKeys::new(&[7u8; MIN_SECRET_LEN]).is_ok());
    }

    #[test]
    fn debug_and_errors_reveal_no_secret() {
        let keys = keys();
        let shown = format!("{keys:?}");
        assert!(shown.contains("TokenKeys"));
        let secret = String::from_utf8_lossy(SECRET);
        assert!(!shown.contains(&*secret) && !shown.contains("0123456789"));
        let (token, expires) = issue(&keys);
        for error in [keys.verify_access(&token, expires).unwrap_err(), keys.verify_access("x.y.z", NOW).unwrap_err()] {
            let message = error.to_string();
            assert!(!message.contains(&token) && !message.contains(&*secret));
        }
    }
}

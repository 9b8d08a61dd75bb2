//! Logging in with `--username`/`--password`: one `POST /api/token/` at the start buys an access token that
//! every request then carries as `Authorization: Bearer …` (added in one place, [`Client`]'s send, from the
//! [`Target`]), and a background task logs in again at 80% of the token's lifetime, so a run that outlives
//! the token (a long payout drain, say) stays authenticated.
//!
//! The token endpoint is rate-limited per client address, so the bench logs in once per run, not once per
//! connection, and renews rarely (every 12 minutes for the server's default 15-minute tokens).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use tokio::task::JoinHandle;

use crate::api::TOKEN_PATH;
use crate::client::{Client, Target};

/// The lifetime assumed for a token whose own (`exp - iat`) cannot be read: shorter than the server's
/// default of 900 s, so renewing at 80% of it is early rather than late.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);

/// A token is renewed once this many percent of its lifetime have passed since it was asked for.
const RENEW_AT_PERCENT: u32 = 80;

/// The shortest time between two renewals, whatever the token's lifetime.
const MIN_RENEWAL: Duration = Duration::from_secs(1);

/// The first wait after a failed renewal; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts of a failing renewal.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How many characters of an error answer a login error quotes.
const QUOTED_CHARS: usize = 200;

/// A username and password for `POST /api/token/`.
#[derive(Clone)]
pub struct Credentials {
    /// The login name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// An access token, as the header value that presents it.
pub struct Token {
    /// `Bearer <access>`.
    pub authorization: HeaderValue,
    /// `exp - iat` of the token, if it could be read.
    pub lifetime: Option<Duration>,
}

/// The login request's body, `{"username": "...", "password": "..."}`, escaped as JSON.
pub fn login_body(credentials: &Credentials) -> Bytes {
    let body = serde_json::json!({ "username": credentials.username, "password": credentials.password });
    Bytes::from(body.to_string())
}

/// Logs in through `client` and returns the access token.
pub async fn log_in(client: &mut Client, credentials: &Credentials) -> anyhow::Result<Token> {
    let response = client
        .post_json(TOKEN_PATH, login_body(credentials))
        .await
        .with_context(|| format!("POST {TOKEN_PATH}: no answer"))?;
    let said = || String::from_utf8_lossy(&response.body).chars().take(QUOTED_CHARS).collect::<String>();
    match response.status {
        StatusCode::OK => parse_token(&response.body).with_context(|| format!("POST {TOKEN_PATH}")),
        StatusCode::UNAUTHORIZED => {
            bail!(
                "POST {TOKEN_PATH}: the server refused user {:?} with this password: {}",
                credentials.username,
                said()
            )
        }
        StatusCode::TOO_MANY_REQUESTS => bail!(
            "POST {TOKEN_PATH}: rate-limited (the server's PAYLEDGER_LOGIN_RATE_PER_MINUTE per client address): {}",
            said()
        ),
        status => bail!("POST {TOKEN_PATH}: unexpected HTTP {status}: {}", said()),
    }
}

/// The access token of a `{"access": "...", "refresh": "..."}` answer.
fn parse_token(body: &[u8]) -> anyhow::Result<Token> {
    let answer: serde_json::Value = serde_json::from_slice(body).context("the answer is not JSON")?;
    let access = answer.get("access").and_then(|v| v.as_str()).context("the answer has no \"access\" token")?;
    if access.is_empty() {
        bail!("the answer's \"access\" token is empty");
    }
    let authorization = HeaderValue::from_str(&format!("Bearer {access}"))
        .context("the \"access\" token cannot be sent in a header")?;
    Ok(Token { authorization, lifetime: jwt_lifetime(access) })
}

/// `exp - iat` of a JWT, read from its payload without checking the signature (only the server can, and the
/// bench only needs to know when to renew); `None` if the token is not a JWT with both claims.
pub fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    let seconds = claims.get("exp")?.as_i64()?.checked_sub(claims.get("iat")?.as_i64()?)?;
    (seconds > 0).then(|| Duration::from_secs(seconds.unsigned_abs()))
}

/// Decodes unpadded (or padded) base64url, as JWT segments are encoded.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // One leftover character (6 bits) cannot end a valid encoding.
    (count < 6).then_some(out)
}

/// How long after asking for a token with `lifetime` to ask for the next one.
pub fn renewal_delay(lifetime: Option<Duration>) -> Duration {
    (lifetime.unwrap_or(ASSUMED_LIFETIME) * RENEW_AT_PERCENT / 100).max(MIN_RENEWAL)
}

/// A logged-in run: the target's requests carry the token, and a task renews it until this is dropped.
pub struct Session {
    username: String,
    lifetime: Option<Duration>,
    logins: Arc<AtomicU64>,
    renewer: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Session {
    /// Logs in once, makes every request to `target` carry the token, and starts renewing it.
    pub async fn start(target: &Target, credentials: Credentials, timeout: Duration) -> anyhow::Result<Session> {
        let asked = Instant::now();
        let token = log_in(&mut Client::new(target.clone(), timeout), &credentials).await?;
        target.set_authorization(token.authorization);
        let logins = Arc::new(AtomicU64::new(1));
        let renewer = tokio::spawn(renew(
            target.clone(),
            credentials.clone(),
            timeout,
            asked + renewal_delay(token.lifetime),
            Arc::clone(&logins),
        ));
        Ok(Session { username: credentials.username, lifetime: token.lifetime, logins, renewer })
    }

    /// Who the bench logged in as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The first token's lifetime, if it could be read from it.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// Successful logins so far, the first one included.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }
}

/// Logs in again at `next`, and after each success at 80% of the new token's lifetime; a failed attempt is
/// retried with backoff while the old token serves on (requests it no longer covers are counted as 401s).
async fn renew(target: Target, credentials: Credentials, timeout: Duration, mut next: Instant, logins: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep_until(next.into()).await;
        let mut retry = FIRST_RETRY;
        loop {
            let asked = Instant::now();
            // A fresh connection each time: one idle for many minutes may well be closed by now.
            match log_in(&mut Client::new(target.clone(), timeout), &credentials).await {
                Ok(token) => {
                    target.set_authorization(token.authorization);
                    logins.fetch_add(1, Ordering::Relaxed);
                    next = asked + renewal_delay(token.lifetime);
                    break;
                }
                Err(error) => {
                    eprintln!(
                        "payledger-bench: renewing the access token failed, retrying in {} s: {error:#}",
                        retry.as_secs()
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

/// Encodes `data` as unpadded base64url, for the mock server's tokens.
#[cfg(test)]
pub fn base64url_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xfb, 0xff, 0xfe, 0x00]] {
            let encoded = base64url_encode(data);
            assert!(!encoded.contains(['=', '+', '/']), "{encoded}");
            assert_eq!(base64url_decode(&encoded).as_deref(), Some(data), "{encoded}");
        }
        assert_eq!(base64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_decode("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        assert_eq!(base64url_decode("Zm9vY"), None, "a lone trailing character");
        assert_eq!(base64url_decode("Zm9v+g"), None, "not the URL alphabet");
    }

    #[test]
    fn the_lifetime_is_read_from_the_claims() {
        let jwt = |claims: &str| format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", base64url_encode(claims.as_bytes()));
        let token = jwt(r#"{"sub":"1","name":"bench","role":"admin","iat":1700000000,"exp":1700000900}"#);
        assert_eq!(jwt_lifetime(&token), Some(Duration::from_secs(900)));
        assert_eq!(jwt_lifetime(&jwt(r#"{"exp":1700000900}"#)), None);
        assert_eq!(jwt_lifetime(&jwt(r#"{"iat":1700000900,"exp":1700000900}"#)), None);
        assert_eq!(jwt_lifetime(&jwt("not json")), None);
        assert_eq!(jwt_lifetime("opaque-token"), None);
    }

    #[test]
    fn renewal_comes_at_80_percent_of_the_lifetime() {
        assert_eq!(renewal_delay(Some(Duration::from_secs(900))), Duration::from_secs(720));
        assert_eq!(renewal_delay(None), Duration::from_secs(240));
        assert_eq!(renewal_delay(Some(Duration::from_millis(500))), MIN_RENEWAL);
    }

    #[test]
    fn the_login_body_is_escaped_json_and_the_password_stays_out_of_debug() {
        let credentials = Credentials { username: "bench".into(), password: "p\"w\\d \u{e9}".into() };
        let body: serde_json::Value = serde_json::from_slice(&login_body(&credentials)).unwrap();
        assert_eq!(body, serde_json::json!({"username": "bench", "password": "p\"w\\d \u{e9}"}));
        assert_eq!(format!("{credentials:?}"), r#"Credentials { username: "bench", .. }"#);
    }

    #[test]
    fn tokens_are_sent_as_bearer() {
        let token = parse_token(br#"{"access": "a.b.c", "refresh": "r"}"#).unwrap();
        assert_eq!(token.authorization, "Bearer a.b.c");
        assert!(parse_token(br#"{"refresh": "r"}"#).is_err());
        assert!(parse_token(br#"{"access": ""}"#).is_err());
        assert!(parse_token(br#"{"access": "line\nbreak"}"#).is_err());
    }
}

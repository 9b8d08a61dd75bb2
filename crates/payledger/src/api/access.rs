//! Who may call what: authentication (Bearer access tokens and HTTP Basic) and the role matrix, enforced in
//! one place for every route.
//!
//! [`guard`] runs on every matched route. It looks the route up in [`gate`] — the one table of the access
//! rules — authenticates the caller when the route needs one, refuses with 401 (no or bad credentials) or 403
//! (a role too low), and hands the handler a [`Caller`]. A route missing from the table needs an admin, so a
//! new endpoint is closed until someone decides who may call it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::AppState;
use crate::access_log::Client;
use crate::auth::tokens::{Role, TokenError};
use crate::config::Profile;
use crate::error::ApiError;

/// The most verified Basic credentials remembered per process; past it the memory is cleared.
const MAX_REMEMBERED_CREDENTIALS: usize = 10_000;

/// An authenticated user, as a handler sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's id.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// The role in effect for this request.
    pub role: Role,
}

/// Who is calling: a user, or nobody (a route open to anonymous callers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Caller {
    /// No credentials, on a route that allows that.
    #[default]
    Anonymous,
    /// An authenticated user.
    User(Principal),
}

impl Caller {
    /// The name the audit log records: the username, or `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::User(principal) => &principal.username,
        }
    }

    /// A prefix that scopes what a caller stores under its own names (idempotency keys), so one caller's key
    /// can neither collide with nor replay another's.
    pub fn scope(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::User(principal) => format!("user:{}", principal.id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_default())
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Anyone: health, metrics, and the token endpoints (they take a password or a refresh token).
    Open,
    /// Anyone whose request carries a valid HMAC signature, which the handler checks: the bank's webhook
    /// (signed whenever a secret is configured, which production requires) and the gateway's callbacks.
    Signed,
    /// A user with at least this role. In the development profile, `anonymous_in_development` lets callers
    /// without credentials through as well, so the original curl examples work verbatim.
    Role {
        /// The least role.
        role: Role,
        /// Whether the development profile lets anonymous callers in.
        anonymous_in_development: bool,
    },
}

impl Gate {
    /// A user with at least `role`.
    pub const fn role(role: Role) -> Gate {
        Gate::Role { role, anonymous_in_development: false }
    }

    /// Reads anyone may make in development (balances, their history, the API documentation); a viewer in
    /// production.
    pub const fn read_open_in_development() -> Gate {
        Gate::Role { role: Role::Viewer, anonymous_in_development: true }
    }
}

/// Verified Basic credentials, so a client sending its password on every request does not pay for an
/// argon2 verification each time. Keyed by an HMAC (under a per-process random key) of the username and
/// password, so the memory never holds a password; the value is the stored hash the password matched, and a
/// remembered entry only counts while the user's stored hash is still that one (a changed password, or a
/// disabled user, takes effect on the next request).
pub struct CredentialMemory {
    key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl std::fmt::Debug for CredentialMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialMemory").finish_non_exhaustive()
    }
}

impl CredentialMemory {
    /// An empty memory with a fresh random key.
    pub fn new() -> Result<CredentialMemory, TokenError> {
        let random = crate::auth::tokens::random_secret()?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&sha2::Digest::finalize(<Sha256 as sha2::Digest>::new_with_prefix(random.as_bytes())));
        Ok(CredentialMemory { key, verified: Mutex::new(HashMap::new()) })
    }

    fn digest(&self, username: &str, password: &str) -> [u8; 32] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => return [0; 32],
        };
        mac.update(username.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn remembers(&self, digest: &[u8; 32], stored_hash: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified.get(digest).is_some_and(|hash| hash == stored_hash)
    }

    fn remember(&self, digest: [u8; 32], stored_hash: String) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED_CREDENTIALS {
            verified.clear();
        }
        verified.insert(digest, stored_hash);
    }
}

/// The caller a request's `Authorization` header names: `None` without the header, an error for a header that
/// is malformed or whose credentials are wrong, expired or disabled.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Option<Principal>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::unauthenticated("Malformed Authorization header"))?;
    let (scheme, credentials) =
        value.trim().split_once(' ').ok_or_else(|| ApiError::unauthenticated("Malformed Authorization header"))?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let claims = state.token_keys.verify_access(credentials, OffsetDateTime::now_utc())?;
        // The token proves who the caller was at login; what they may do is read now: a disabled user's
        // token stops working at once, and a changed role applies to the next request.
        let user = state.store.authenticating_principal(claims.sub).await?;
        return match user {
            Some(user)
                if user
                    .tokens_valid_after
                    .is_some_and(|after| claims.issued_ms < crate::auth::tokens::unix_millis(after)) =>
            {
                Err(ApiError::unauthenticated("The access token was revoked; log in again"))
            }
            Some(user) if user.active && user.username == claims.name => principal_of(&user).map(Some),
            _ => Err(ApiError::unauthenticated("The access token's user is disabled or gone")),
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return basic(state, credentials, client).await.map(Some);
    }
    Err(ApiError::unauthenticated("Unsupported authorization scheme; use Bearer or Basic"))
}

/// Verifies HTTP Basic credentials against the users table.
async fn basic(state: &AppState, credentials: &str, client: Option<IpAddr>) -> Result<Principal, ApiError> {
    let malformed = || ApiError::unauthenticated("Malformed Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
    let refused = || ApiError::unauthenticated("Invalid username or password");
    // A name no user can have (a NUL byte, say) is looked up as nobody, not sent to the database.
    let user = match crate::auth::principals::check_username(username) {
        Ok(()) => state.store.authenticating_principal_named(username).await?,
        Err(_) => None,
    };
    let digest = state.credentials.digest(username, password);
    if let Some(user) = &user
        && user.active
        && state.credentials.remembers(&digest, &user.password_hash)
    {
        return principal_of(user);
    }
    // A verification costs an argon2 hash: it counts against the address's login rate, and a failed one against
    // the username's, as a token request does, so Basic is no side door for password guessing. Credentials
    // remembered above were verified before and are no guess: they never count, and keep working while the
    // username is limited.
    if let Some(client) = client {
        state.login_limiter.check(&client, std::time::Instant::now()).map_err(|wait| {
            tracing::warn!(%client, "Basic authentication rate-limited");
            ApiError::TooManyRequests(wait.as_secs())
        })?;
    }
    let attempt = crate::api::auth::limit_username(state, username)?;
    let hash = user.as_ref().map_or_else(crate::auth::principals::dummy_hash, |user| user.password_hash.clone());
    let password = password.to_owned();
    let checked_hash = hash.clone();
    let matches =
        tokio::task::spawn_blocking(move || crate::auth::principals::password_matches(&password, &checked_hash))
            .await
            .unwrap_or(false);
    match user {
        Some(user) if matches && user.active => {
            attempt.succeeded();
            state.credentials.remember(digest, hash);
            principal_of(&user)
        }
        _ => {
            attempt.failed();
            Err(refused())
        }
    }
}

fn principal_of(user: &crate::store::PrincipalRow) -> Result<Principal, ApiError> {
    let role = Role::parse(&user.role).ok_or_else(|| {
        ApiError::Store(crate::store::StoreError::Corrupt(format!("user {}: role {}", user.username, user.role)))
    })?;
    Ok(Principal { id: user.id, username: user.username.clone(), role })
}

/// The middleware on every API route: applies the route's rule from `gate` (the route table's lookup,
/// `router::gate`) and leaves the [`Caller`] for the handler.
pub async fn guard(
    State(state): State<AppState>,
    gate: fn(&Method, &str) -> Gate,
    mut request: Request,
    next: Next,
) -> Response {
    // Every route this layer wraps has a matched path; were one to lack it, it gets the closed default.
    let route = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    let gate = gate(request.method(), route);
    let client = Client::of(request.extensions()).address();
    match admit(&state, gate, request.headers(), client).await {
        Ok(caller) => {
            if let Caller::User(principal) = &caller {
                crate::access_log::record_user(&principal.username);
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Whether a request may pass `gate`, and as whom.
async fn admit(state: &AppState, gate: Gate, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Caller, ApiError> {
    let (needed, anonymous_in_development) = match gate {
        Gate::Open | Gate::Signed => return Ok(Caller::Anonymous),
        Gate::Role { role, anonymous_in_development } => (role, anonymous_in_development),
    };
    match authenticate(state, headers, client).await? {
        Some(principal) if principal.role.at_least(needed) => Ok(Caller::User(principal)),
        Some(principal) => Err(ApiError::Forbidden(format!(
            "This needs the {needed} role; {} is {}",
            principal.username, principal.role
        ))),
        None if anonymous_in_development && state.profile == Profile::Development => Ok(Caller::Anonymous),
        None => Err(ApiError::unauthenticated("Authentication required: send Authorization: Bearer <token> or Basic")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_memory_keys_on_both_name_and_password() {
        let memory = CredentialMemory::new().expect("random");
        let digest = memory.digest("alice", "secret");
        memory.remember(digest, "hash-1".into());
        assert!(memory.remembers(&memory.digest("alice", "secret"), "hash-1"));
        assert!(!memory.remembers(&memory.digest("alice", "secret"), "hash-2"), "a changed password forgets");
        assert!(!memory.remembers(&memory.digest("alice", "other"), "hash-1"));
        assert!(!memory.remembers(&memory.digest("alicesecret", ""), "hash-1"));
    }
}

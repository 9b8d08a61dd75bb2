//! `POST /api/token/` and `POST /api/token/refresh/`: access tokens for a username and password, and
//! refresh-token rotation with reuse detection.

use axum::Json;
use axum::body::Body;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::access_log::Client;
use crate::api::extract::json_body;
use crate::auth::principals::password_matches;
use crate::auth::ratelimit::Attempt;
use crate::auth::tokens::{Role, random_secret, secret_hash};
use crate::error::{ApiError, ErrorBody};
use crate::fields::{JsonObject, json_string};
use crate::store::PrincipalRow;

/// The largest token request accepted, in bytes.
const MAX_TOKEN_BODY_BYTES: usize = 4 * 1024;

/// Re-exported for the console's login, which still names it here; the helper lives with password hashing.
use crate::auth::principals::dummy_hash;

/// A token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// The access token (a JWT), for `Authorization: Bearer …`.
    pub access: String,
    /// The refresh token, to exchange at `/api/token/refresh/` for a new pair (once).
    pub refresh: String,
}

/// A login, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct LoginBody {
    /// The login name.
    username: String,
    /// The password.
    password: String,
}

/// A refresh, as documented for clients.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RefreshBody {
    /// The refresh token of the last pair.
    refresh: String,
}

/// Refuses a client address past its rate of token requests (password guessing).
fn limit(state: &AppState, client: &Client) -> Result<(), ApiError> {
    let Some(address) = client.address() else { return Ok(()) };
    state.login_limiter.check(&address, std::time::Instant::now()).map_err(|wait| {
        tracing::warn!(client = %address, "token requests rate-limited");
        ApiError::TooManyRequests(wait.as_secs())
    })
}

/// Refuses a username past its rate of failed password checks, from whatever addresses they come (the same
/// 429); else the attempt, which only `failed` counts (a wrong password). The username is not logged:
/// it is attacker-chosen text, sometimes a password typed in the wrong field.
pub(crate) fn limit_username<'a>(state: &'a AppState, username: &str) -> Result<Attempt<'a>, ApiError> {
    state.username_limiter.attempt(username, std::time::Instant::now()).map_err(|wait| {
        tracing::warn!("failed password checks for one username rate-limited");
        ApiError::TooManyRequests(wait.as_secs())
    })
}

/// A token request's string fields, after its address's rate limit: 400 naming every missing or bad field.
async fn string_fields<const N: usize>(
    state: &AppState,
    client: &Client,
    headers: &HeaderMap,
    body: Body,
    names: [&str; N],
) -> Result<[String; N], ApiError> {
    limit(state, client)?;
    let bytes = json_body(headers, body, MAX_TOKEN_BODY_BYTES).await?;
    let mut fields = JsonObject::parse(&bytes).map_err(ApiError::InvalidData)?;
    let values = names.map(|name| fields.field(name, json_string));
    fields.finish().map_err(ApiError::InvalidData)?;
    Ok(values.map(Option::unwrap_or_default))
}

fn refused() -> ApiError {
    ApiError::unauthorized("Invalid username or password")
}

/// Issues an access token and a refresh token in `family` for `user`; the refresh token expires at
/// `expires_at`, or a refresh lifetime from now for a new login.
async fn issue(
    state: &AppState,
    user: &PrincipalRow,
    family: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<TokenPair, ApiError> {
    let role = Role::parse(&user.role).ok_or_else(|| {
        ApiError::Store(crate::store::StoreError::Corrupt(format!("user {}: role {}", user.username, user.role)))
    })?;
    let now = OffsetDateTime::now_utc();
    let settings = &state.token_settings;
    let (access, _) = state
        .token_keys
        .issue_access(
            user.id,
            &user.username,
            role,
            now,
            time::Duration::try_from(settings.access_ttl).unwrap_or(time::Duration::MINUTE),
        )
        .map_err(|error| ApiError::Internal(format!("issuing an access token: {error}")))?;
    let refresh = random_secret().map_err(|error| ApiError::Internal(format!("making a refresh token: {error}")))?;
    let hash = secret_hash(&refresh);
    let expires_at = expires_at.unwrap_or(now + settings.refresh_ttl);
    state.store.insert_refresh(user.id, family, &hash, expires_at, now).await?;
    Ok(TokenPair { access, refresh })
}

/// Exchange a username and password for tokens.
///
/// A wrong password, an unknown user and a disabled user get the same answer, in the same time.
#[utoipa::path(
    post,
    path = "/token/",
    tag = "auth",
    request_body(content = LoginBody, content_type = "application/json", example = json!({"username": "alice", "password": "…"})),
    responses(
        (status = 200, body = TokenPair),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 401, description = "Invalid username or password", body = ErrorBody),
        (status = 429, description = "Too many requests from this address, or failed logins for this username from any address; see Retry-After", body = ErrorBody),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TokenPair>, ApiError> {
    let [username, password] = string_fields(&state, &client, &headers, body, ["username", "password"]).await?;
    let attempt = limit_username(&state, &username)?;
    let user = match crate::auth::principals::check_username(&username) {
        Ok(()) => state.store.principal(&username).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map_or_else(dummy_hash, |user| user.password_hash.clone());
    // argon2 is CPU work: off the async workers.
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash)).await.unwrap_or(false);
    match user {
        Some(user) if matches && user.active => {
            attempt.succeeded();
            let family = Uuid::new_v4().to_string();
            Ok(Json(issue(&state, &user, &family, None).await?))
        }
        _ => {
            attempt.failed();
            Err(refused())
        }
    }
}

/// Exchange a refresh token for a new pair. Each refresh token works once: a second use revokes every token of
/// its login (it was copied), and the caller must log in again.
#[utoipa::path(
    post,
    path = "/token/refresh/",
    tag = "auth",
    request_body(content = RefreshBody, content_type = "application/json", example = json!({"refresh": "…"})),
    responses(
        (status = 200, body = TokenPair),
        (status = 400, description = "Invalid data", body = ErrorBody),
        (status = 401, description = "Unknown, expired, used or revoked refresh token", body = ErrorBody),
        (status = 429, description = "Too many requests from this address; see Retry-After", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TokenPair>, ApiError> {
    let [token] = string_fields(&state, &client, &headers, body, ["refresh"]).await?;
    let invalid = || ApiError::unauthorized("Invalid refresh token");
    let now = OffsetDateTime::now_utc();
    let stored = state.store.refresh_by_hash(&secret_hash(&token)).await?.ok_or_else(invalid)?;
    // A revoked token is only refused: it was revoked on purpose (a new password, a disabled user, an
    // earlier reuse), and an old client presenting it must not end the user's newer logins.
    if stored.revoked || stored.expires_at <= now {
        return Err(invalid());
    }
    if stored.used || !state.store.use_refresh(stored.id, now).await? {
        return Err(reuse(&state, &stored, &client, now).await?);
    }
    let user = state.store.principal_by_id(stored.user_id).await?.filter(|user| user.active).ok_or_else(invalid)?;
    // A rotation keeps the login's first expiry: refreshing forever never makes a login last forever.
    let pair = issue(&state, &user, &stored.family, Some(stored.expires_at)).await?;
    // A reuse detected while this pair was being issued revoked the login before the new refresh token
    // existed: look again now that it does, so the new pair (its access token included) cannot outlive it.
    if state.store.family_revoked(&stored.family).await? {
        return Err(reuse(&state, &stored, &client, OffsetDateTime::now_utc()).await?);
    }
    Ok(Json(pair))
}

/// A refresh token used twice (or one of a revoked login): whoever holds the other copy may be an attacker,
/// or the victim. The login's refresh tokens and the user's access tokens issued until now stop working, the
/// event is audited, and the answer says to log in again.
async fn reuse(
    state: &AppState,
    stored: &crate::store::RefreshRow,
    client: &Client,
    now: OffsetDateTime,
) -> Result<ApiError, ApiError> {
    state.store.revoke_family(&stored.family, now).await?;
    tracing::warn!(user = stored.user_id, "a refresh token was used twice; its login is revoked");
    let entry = crate::store::AuditEntry {
        actor: "auth".into(),
        action: "token.reuse".into(),
        target: format!("login:{}", stored.family),
        before: None,
        after: Some(serde_json::json!({"user_id": stored.user_id}).to_string()),
        origin: Some(client.origin.clone()),
    };
    state.store.write_audit_entry(&entry, now).await?;
    Ok(ApiError::unauthorized("Refresh token reuse detected; log in again"))
}

//! The users of the API and the console (principals): passwords hashed with argon2id, roles, the active flag,
//! and the first admin. Every change writes an audit row in the same transaction.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::TryRngCore;
use time::OffsetDateTime;

use crate::store::{AuditEntry, PrincipalChange, PrincipalRow, PrincipalUpdate, Store, StoreError};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest username accepted.
pub const MAX_USERNAME_CHARS: usize = 150;
/// The roles, weakest first.
pub const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

/// Why a principal operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The username is empty, too long, or has characters outside letters, digits and `.-_@`.
    #[error("the username must be 1 to {MAX_USERNAME_CHARS} letters, digits or .-_@")]
    BadUsername,
    /// The password is too short.
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// Not one of [`ROLES`].
    #[error("the role must be viewer, operator or admin")]
    BadRole,
    /// The username is taken.
    #[error("a user with that name exists")]
    Exists,
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// The change would leave no active admin.
    #[error("this would leave no active admin")]
    LastAdmin,
    /// Hashing failed (the OS random generator, or argon2 itself).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `username` is one a user may have: 1 to [`MAX_USERNAME_CHARS`] letters, digits or `.-_@`.
pub fn check_username(username: &str) -> Result<(), PrincipalError> {
    let fine = !username.is_empty()
        && username.chars().count() <= MAX_USERNAME_CHARS
        && username.chars().all(|c| c.is_alphanumeric() || ".-_@".contains(c));
    if fine { Ok(()) } else { Err(PrincipalError::BadUsername) }
}

fn check_role(role: &str) -> Result<(), PrincipalError> {
    if ROLES.contains(&role) { Ok(()) } else { Err(PrincipalError::BadRole) }
}

/// An argon2id hash (PHC string) of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PrincipalError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PrincipalError::WeakPassword);
    }
    // A fresh random salt from the OS for every hash.
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut salt).map_err(|error| PrincipalError::Hashing(error.to_string()))?;
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|error| PrincipalError::Hashing(error.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored hash. A malformed hash matches nothing.
pub fn password_matches(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of a random password nobody knows, verified for unknown users so that an unknown name and a wrong
/// password take the same time (made by the same hasher, so with the same parameters as real hashes).
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| generate_password().and_then(|password| hash_password(&password)).unwrap_or_default());

/// The hash to verify a password against when the user is unknown: every login path (the token endpoint,
/// HTTP Basic, the console) must take as long for an unknown user as for a wrong password.
pub fn dummy_hash() -> String {
    DUMMY_HASH.clone()
}

/// A random password for the development bootstrap: 24 characters from an unambiguous alphabet.
pub fn generate_password() -> Result<String, PrincipalError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|error| PrincipalError::Hashing(error.to_string()))?;
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()])).collect())
}

fn audit(
    actor: &str,
    action: &str,
    username: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AuditEntry {
    AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: format!("user:{username}"),
        before: before.map(|value| value.to_string()),
        after: after.map(|value| value.to_string()),
        origin: crate::origin::RequestOrigin::current(),
    }
}

/// Creates a user with a role; `actor` is recorded in the audit log.
pub async fn create(
    store: &Store,
    actor: &str,
    username: &str,
    password: &str,
    role: &str,
    generated: bool,
) -> Result<(), PrincipalError> {
    check_username(username)?;
    check_role(role)?;
    let row = PrincipalRow {
        id: 0,
        username: username.to_owned(),
        password_hash: hash_password(password)?,
        role: role.to_owned(),
        active: true,
        password_generated: generated,
        created_at: crate::timefmt::to_micros(OffsetDateTime::now_utc()),
        tokens_valid_after: None,
        auth_version: 0,
    };
    let entry = audit(actor, "user.create", username, None, Some(serde_json::json!({"role": role, "active": true})));
    if store.create_principal(&row, &entry).await? { Ok(()) } else { Err(PrincipalError::Exists) }
}

/// A change to a user: any of a new password, a new role, a new active flag.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// A new password (hashed here).
    pub password: Option<String>,
    /// A new role.
    pub role: Option<String>,
    /// Enable or disable.
    pub active: Option<bool>,
}

/// Applies a change to a user in one transaction, with one audit row per field changed. Refused with
/// [`PrincipalError::LastAdmin`] if it would leave no active admin.
pub async fn update(store: &Store, actor: &str, username: &str, change: &UserChange) -> Result<(), PrincipalError> {
    if let Some(role) = &change.role {
        check_role(role)?;
    }
    let hash = change.password.as_deref().map(hash_password).transpose()?;
    let before = store.principal(username).await?.ok_or(PrincipalError::NotFound)?;
    let mut audits = Vec::new();
    if hash.is_some() {
        audits.push(audit(actor, "user.password", username, None, None));
    }
    if let Some(role) = change.role.as_deref().filter(|role| *role != before.role) {
        audits.push(audit(
            actor,
            "user.role",
            username,
            Some(serde_json::json!({"role": before.role})),
            Some(serde_json::json!({"role": role})),
        ));
    }
    if let Some(active) = change.active.filter(|active| *active != before.active) {
        audits.push(audit(
            actor,
            if active { "user.enable" } else { "user.disable" },
            username,
            Some(serde_json::json!({"active": before.active})),
            Some(serde_json::json!({"active": active})),
        ));
    }
    let stored = PrincipalChange {
        password_hash: hash.as_deref().map(|hash| (hash, false)),
        role: change.role.as_deref(),
        active: change.active,
    };
    match store.update_principal(username, &stored, &audits, OffsetDateTime::now_utc()).await? {
        PrincipalUpdate::Updated => Ok(()),
        PrincipalUpdate::NotFound => Err(PrincipalError::NotFound),
        PrincipalUpdate::LastAdmin => Err(PrincipalError::LastAdmin),
    }
}

/// Sets a user's password (every refresh token of theirs stops working).
pub async fn set_password(store: &Store, actor: &str, username: &str, password: &str) -> Result<(), PrincipalError> {
    update(store, actor, username, &UserChange { password: Some(password.to_owned()), ..UserChange::default() }).await
}

/// Enables or disables a user.
pub async fn set_active(store: &Store, actor: &str, username: &str, active: bool) -> Result<(), PrincipalError> {
    update(store, actor, username, &UserChange { active: Some(active), ..UserChange::default() }).await
}

/// Changes a user's role.
pub async fn set_role(store: &Store, actor: &str, username: &str, role: &str) -> Result<(), PrincipalError> {
    update(store, actor, username, &UserChange { role: Some(role.to_owned()), ..UserChange::default() }).await
}

/// What the first start did about the first admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users exist already; nothing done.
    Existing,
    /// The admin named by `PAYLEDGER_ADMIN_USERNAME` / `PAYLEDGER_ADMIN_PASSWORD` was created.
    Configured(String),
    /// No admin was configured: one was created with this generated password (development only).
    Generated {
        /// The admin's name.
        username: String,
        /// The generated password, to print once.
        password: String,
    },
}

/// Creates the first admin when there are no users: from the configured name and password, or (when
/// `generate` is allowed) with a generated password.
pub async fn bootstrap(
    store: &Store,
    configured: Option<(&str, &str)>,
    generate: bool,
) -> Result<Bootstrap, PrincipalError> {
    if store.user_count().await? > 0 {
        return Ok(Bootstrap::Existing);
    }
    match configured {
        Some((username, password)) => {
            match create(store, "bootstrap", username, password, "admin", false).await {
                Ok(()) => Ok(Bootstrap::Configured(username.to_owned())),
                // Another instance starting at the same moment created it: this one did not.
                Err(PrincipalError::Exists) => Ok(Bootstrap::Existing),
                Err(error) => Err(error),
            }
        }
        None if generate => {
            let password = generate_password()?;
            match create(store, "bootstrap", "admin", &password, "admin", true).await {
                Ok(()) => Ok(Bootstrap::Generated { username: "admin".into(), password }),
                Err(PrincipalError::Exists) => Ok(Bootstrap::Existing),
                Err(error) => Err(error),
            }
        }
        None => Ok(Bootstrap::Existing),
    }
}

/// What the users table keeps from the production profile: active users still on a generated password, or
/// no users at all and no configured admin (one would be generated).
pub async fn production_problems(store: &Store, admin_configured: bool) -> Result<Vec<String>, PrincipalError> {
    let users = store.principals().await?;
    if users.is_empty() && !admin_configured {
        return Ok(vec![
            "PAYLEDGER_ADMIN_USERNAME/PAYLEDGER_ADMIN_PASSWORD are not set and there are no users: a generated \
             password would be used"
                .to_owned(),
        ]);
    }
    Ok(users
        .iter()
        .filter(|user| user.active && user.password_generated)
        .map(|user| {
            format!(
                "user `{}` still has the password payledger generated: set one with `payledger user passwd {}`",
                user.username, user.username
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse batterz", &hash));
        assert!(!password_matches("anything", "not a hash"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap_or_default(), "salted");
        assert!(matches!(hash_password("short"), Err(PrincipalError::WeakPassword)));
    }

    #[test]
    fn usernames_roles_and_generated_passwords() {
        assert!(check_username("alice.ops@example").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username("a b").is_err());
        assert!(check_role("operator").is_ok());
        assert!(check_role("root").is_err());
        let password = generate_password().unwrap_or_default();
        assert_eq!(password.chars().count(), 24);
        assert!(password.chars().count() >= MIN_PASSWORD_CHARS);
    }
}

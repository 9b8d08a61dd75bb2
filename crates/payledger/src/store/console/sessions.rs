//! Console sessions: a random token in the cookie, its SHA-256 here, one CSRF token per session.

use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// A live session with its user as the user is now (role and active flag read on every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The session row.
    pub id: i64,
    /// The user's id.
    pub user_id: i64,
    /// The user's login name.
    pub username: String,
    /// The user's role now.
    pub role: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// When it ends.
    pub expires_at: OffsetDateTime,
}

/// The sessions' queries, for one backend's store.
macro_rules! console_session_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn create_console_session(
                &self,
                token_hash: &str,
                user_id: i64,
                csrf: &str,
                now: time::OffsetDateTime,
                expires_at: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                // Ended sessions are swept here, so the table holds only live ones and a few minutes of others.
                sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                    .bind($bind_time(now))
                    .execute(&self.$writer)
                    .await?;
                sqlx::query(
                    "INSERT INTO console_sessions (token_hash, user_id, csrf, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind(csrf)
                .bind($bind_time(now))
                .bind($bind_time(expires_at))
                .execute(&self.$writer)
                .await?;
                Ok(())
            }

            pub(in crate::store) async fn console_session(
                &self,
                token_hash: &str,
                now: time::OffsetDateTime,
            ) -> Result<Option<$crate::store::console::sessions::ConsoleSession>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT s.id, u.id, u.username, u.role, s.csrf, s.expires_at
                     FROM console_sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active",
                )
                .bind(token_hash)
                .bind($bind_time(now))
                .fetch_optional(&self.$reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::console::sessions::ConsoleSession {
                    id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    username: row.try_get(2)?,
                    role: row.try_get(3)?,
                    csrf: row.try_get(4)?,
                    expires_at: row.try_get(5)?,
                }))
            }

            pub(in crate::store) async fn end_console_session(
                &self,
                token_hash: &str,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.$writer)
                    .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use console_session_queries;

impl Store {
    /// Stores a new session (its token's hash) for a user.
    pub async fn create_console_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, store => store.create_console_session(token_hash, user_id, csrf, now, expires_at).await)
    }

    /// The live session with this token hash, if its user is still active.
    pub async fn console_session(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        on_backend!(self, store => store.console_session(token_hash, now).await)
    }

    /// Ends a session (logout).
    pub async fn end_console_session(&self, token_hash: &str) -> Result<(), StoreError> {
        on_backend!(self, store => store.end_console_session(token_hash).await)
    }
}

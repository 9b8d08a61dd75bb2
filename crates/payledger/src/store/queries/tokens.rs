//! Refresh tokens (stored by their hash): issuing, using, revoking a login.

use time::OffsetDateTime;

use crate::store::{RefreshRow, Store, StoreError};

/// The refresh-token queries, implemented once for each store: `$writer` names its write pool (a token's use
/// must see the latest revocation), `$begin_write` starts a write transaction and `$bind_time` turns a time
/// into what the backend binds.
macro_rules! token_queries {
    ($store:ty, writer: $writer:ident, begin_write: $begin_write:literal, bind_time: $bind_time:path) => {
        impl $store {
        pub(in crate::store) async fn insert_refresh(
            &self,
            user_id: i64,
            family: &str,
            hash: &str,
            expires_at: time::OffsetDateTime,
            now: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user_id)
            .bind(family)
            .bind(hash)
            .bind($bind_time(expires_at))
            .bind($bind_time(now))
            .execute(&self.$writer)
            .await?;
            Ok(())
        }

        pub(in crate::store) async fn refresh_by_hash(
            &self,
            hash: &str,
        ) -> Result<Option<$crate::store::RefreshRow>, $crate::store::StoreError> {
            let row = sqlx::query(
                "SELECT id, user_id, family, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&self.$writer)
            .await?;
            Ok(match row {
                Some(row) => {
                    let used: Option<time::OffsetDateTime> = row.try_get(4)?;
                    let revoked: Option<time::OffsetDateTime> = row.try_get(5)?;
                    Some($crate::store::RefreshRow {
                        id: row.try_get(0)?,
                        user_id: row.try_get(1)?,
                        family: row.try_get(2)?,
                        expires_at: row.try_get(3)?,
                        used: used.is_some(),
                        revoked: revoked.is_some(),
                    })
                }
                None => None,
            })
        }

        /// Marks a refresh token used; false if it already was (a second use: the race is decided here), or if
        /// any token of its login is revoked. The second condition makes a revocation stick to the whole login:
        /// a reuse detected while the first use is still issuing its new token revokes the old rows only (the
        /// new one is not inserted yet), and the new token is then refused here when it is used.
        pub(in crate::store) async fn use_refresh(
            &self,
            id: i64,
            now: time::OffsetDateTime,
        ) -> Result<bool, $crate::store::StoreError> {
            let done = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM refresh_tokens revoked
                                   WHERE revoked.family = refresh_tokens.family AND revoked.revoked_at IS NOT NULL)",
            )
                .bind(id)
                .bind($bind_time(now))
                .execute(&self.$writer)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(in crate::store) async fn revoke_family(
            &self,
            family: &str,
            now: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError> {
            let mut tx = self.$writer.begin_with($begin_write).await?;
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL")
                .bind(family)
                .bind($bind_time(now))
                .execute(&mut *tx)
                .await?;
            // The copy may hold an access token of this login too: the user's access tokens issued until now
            // stop working (the user logs in again; other logins of theirs must too).
            sqlx::query(
                "UPDATE users SET tokens_valid_after = $2
                 WHERE id = (SELECT user_id FROM refresh_tokens WHERE family = $1 LIMIT 1)",
            )
            .bind(family)
            .bind($bind_time(now))
            .execute(&mut *tx)
            .await?;
            // The version the trigger gave the change: this instance forgets the user's cached row, before the
            // commit so that nothing can skip it (principal_cache.rs).
            let changed: Option<(i64, i64)> = sqlx::query_as(
                "SELECT id, auth_version FROM users
                 WHERE id = (SELECT user_id FROM refresh_tokens WHERE family = $1 LIMIT 1)",
            )
            .bind(family)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id, version)) = changed {
                self.principal_cache.changed(id, version);
            }
            tx.commit().await?;
            Ok(())
        }

        pub(in crate::store) async fn family_revoked(&self, family: &str) -> Result<bool, $crate::store::StoreError> {
            let revoked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM refresh_tokens WHERE family = $1 AND revoked_at IS NOT NULL",
            )
            .bind(family)
            .fetch_one(&self.$writer)
            .await?;
            Ok(revoked > 0)
        }
        }
    };
}
pub(crate) use token_queries;

impl Store {
    /// Stores a refresh token's hash.
    pub async fn insert_refresh(
        &self,
        user_id: i64,
        family: &str,
        hash: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, store => store.insert_refresh(user_id, family, hash, expires_at, now).await)
    }

    /// A refresh token by its hash.
    pub async fn refresh_by_hash(&self, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
        on_backend!(self, store => store.refresh_by_hash(hash).await)
    }

    /// Marks a refresh token used; false if it already was, or was revoked.
    pub async fn use_refresh(&self, id: i64, now: OffsetDateTime) -> Result<bool, StoreError> {
        on_backend!(self, store => store.use_refresh(id, now).await)
    }

    /// Revokes every refresh token of a login, and every access token its user holds.
    pub async fn revoke_family(&self, family: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        on_backend!(self, store => store.revoke_family(family, now).await)
    }

    /// Whether any refresh token of a login is revoked (the login is).
    pub async fn family_revoked(&self, family: &str) -> Result<bool, StoreError> {
        on_backend!(self, store => store.family_revoked(family).await)
    }
}

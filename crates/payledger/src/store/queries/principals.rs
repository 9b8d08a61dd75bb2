//! Users of the API and the console: reading, creating and changing them.

use time::OffsetDateTime;

use crate::store::{AuditEntry, PrincipalChange, PrincipalRow, PrincipalUpdate, Store, StoreError};

/// A user from columns `id, username, password_hash, role, active, password_generated, created_at,
/// tokens_valid_after, auth_version` (`hot_reads::principal_columns!`).
macro_rules! principal_from_row {
    ($row:expr) => {
        $crate::store::PrincipalRow {
            id: $row.try_get(0)?,
            username: $row.try_get(1)?,
            password_hash: $row.try_get(2)?,
            role: $row.try_get(3)?,
            active: $row.try_get(4)?,
            password_generated: $row.try_get(5)?,
            created_at: $row.try_get(6)?,
            tokens_valid_after: $row.try_get(7)?,
            auth_version: $row.try_get(8)?,
        }
    };
}
pub(crate) use principal_from_row;

/// The user queries, implemented once for each store: `$reader` and `$writer` name its pools, `$begin_write`
/// starts a write transaction, `$for_update` locks the rows a select reads (PostgreSQL) and `$bind_time` turns
/// a time into what the backend binds. The audit rows of a change go through the audit area's `write_audit`.
macro_rules! principal_queries {
    (
        $store:ty,
        reader: $reader:ident,
        writer: $writer:ident,
        begin_write: $begin_write:literal,
        for_update: $for_update:literal,
        bind_time: $bind_time:path
    ) => {
        impl $store {
        pub(in crate::store) async fn principals(
            &self,
        ) -> Result<Vec<$crate::store::PrincipalRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                concat!($crate::store::queries::hot_reads::principal_columns!(), " ORDER BY username"),
            )
            .fetch_all(&self.$writer)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::queries::principals::principal_from_row!(row))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        /// Inserts a user unless the name is taken; true if inserted. The audit row goes in the same
        /// transaction.
        pub(in crate::store) async fn create_principal(
            &self,
            row: &$crate::store::PrincipalRow,
            audit: &$crate::store::AuditEntry,
        ) -> Result<bool, $crate::store::StoreError> {
            let mut tx = self.$writer.begin().await?;
            let now = $bind_time(row.created_at);
            let inserted = sqlx::query(
                "INSERT INTO users (username, password_hash, role, active, password_generated, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&row.username)
            .bind(&row.password_hash)
            .bind(&row.role)
            .bind(row.active)
            .bind(row.password_generated)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                Self::write_audit(&mut *tx, audit, row.created_at).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        }

        /// Changes a user's password, role or active flag (whichever is given), unless no active admin would be
        /// left; says which happened.
        pub(in crate::store) async fn update_principal(
            &self,
            username: &str,
            change: &$crate::store::PrincipalChange<'_>,
            audits: &[$crate::store::AuditEntry],
            now: time::OffsetDateTime,
        ) -> Result<$crate::store::PrincipalUpdate, $crate::store::StoreError> {
            use sqlx::Row;
            // The write lock first (SQLite) or the active admins' rows (PostgreSQL), in id order.
            let mut tx = self.$writer.begin_with($begin_write).await?;
            let admins: Vec<String> = sqlx::query_scalar(concat!(
                "SELECT username FROM users WHERE role = 'admin' AND active ORDER BY id",
                $for_update
            ))
            .fetch_all(&mut *tx)
            .await?;
            let Some(row) = sqlx::query(concat!("SELECT id, role, active FROM users WHERE username = $1", $for_update))
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok($crate::store::PrincipalUpdate::NotFound);
            };
            let (id, role, active): (i64, String, bool) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            let stays_admin = change.role.unwrap_or(&role) == "admin" && change.active.unwrap_or(active);
            if role == "admin" && active && !stays_admin && !admins.iter().any(|admin| admin != username) {
                return Ok($crate::store::PrincipalUpdate::LastAdmin);
            }
            let (password_hash, role, active) = (change.password_hash, change.role, change.active);
            let updated = sqlx::query(
                "UPDATE users SET password_hash = COALESCE($2, password_hash),
                        password_generated = COALESCE($3, password_generated),
                        role = COALESCE($4, role), active = COALESCE($5, active), updated_at = $6
                 WHERE username = $1",
            )
            .bind(username)
            .bind(password_hash.map(|(hash, _)| hash))
            .bind(password_hash.map(|(_, generated)| generated))
            .bind(role)
            .bind(active)
            .bind($bind_time(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !updated {
                return Ok($crate::store::PrincipalUpdate::NotFound);
            }
            if password_hash.is_some() || active == Some(false) {
                // A new password or a disabled user ends every login: no refresh token of theirs works again,
                // also after the user is enabled once more.
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind($bind_time(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM console_sessions WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("UPDATE users SET tokens_valid_after = $2 WHERE id = $1")
                    .bind(id)
                    .bind($bind_time(now))
                    .execute(&mut *tx)
                    .await?;
            }
            for audit in audits {
                Self::write_audit(&mut *tx, audit, now).await?;
            }
            // The version the trigger gave the changes: this instance forgets the user's cached row, before the
            // commit so that nothing can skip it (principal_cache.rs).
            let version: i64 =
                sqlx::query_scalar("SELECT auth_version FROM users WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
            self.principal_cache.changed(id, version);
            tx.commit().await?;
            Ok($crate::store::PrincipalUpdate::Updated)
        }

        pub(in crate::store) async fn user_count(&self) -> Result<i64, $crate::store::StoreError> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.$writer).await?)
        }
        }
    };
}
pub(crate) use principal_queries;

impl Store {
    /// A user of the API by name.
    pub async fn principal(&self, username: &str) -> Result<Option<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principal(username).await)
    }

    /// Every user of the API, by name.
    pub async fn principals(&self) -> Result<Vec<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principals().await)
    }

    /// Creates a user (and its audit row) unless the name is taken; true if created.
    pub async fn create_principal(&self, row: &PrincipalRow, audit: &AuditEntry) -> Result<bool, StoreError> {
        on_backend!(self, store => store.create_principal(row, audit).await)
    }

    /// Changes a user's password (and whether it was generated), role and active flag in one transaction, with
    /// their audit rows. Refused if it would leave no active admin (the admins' rows are locked first, so two
    /// concurrent changes cannot each leave the other as the last one). A new password or a disabled user
    /// revokes every refresh token of the user.
    pub async fn update_principal(
        &self,
        username: &str,
        change: &PrincipalChange<'_>,
        audits: &[AuditEntry],
        now: OffsetDateTime,
    ) -> Result<PrincipalUpdate, StoreError> {
        on_backend!(self, store => store.update_principal(username, change, audits, now).await)
    }

    /// A user by id.
    pub async fn principal_by_id(&self, id: i64) -> Result<Option<PrincipalRow>, StoreError> {
        on_backend!(self, store => store.principal_by_id(id).await)
    }

    /// A user by id for authenticating a request: from this process's cache when it was read recently enough
    /// ([`Store::set_user_cache`]) and no change of it was heard of since (`principal_cache.rs` says why that is
    /// exact enough), else read and kept.
    pub async fn authenticating_principal(&self, id: i64) -> Result<Option<PrincipalRow>, StoreError> {
        let now = std::time::Instant::now();
        self.read_through(self.principal_cache().get(id, now), now, self.principal_by_id(id)).await
    }

    /// A user by name for authenticating a request (HTTP Basic), cached as
    /// [`Store::authenticating_principal`] is.
    pub async fn authenticating_principal_named(&self, username: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let now = std::time::Instant::now();
        self.read_through(self.principal_cache().get_named(username, now), now, self.principal(username)).await
    }

    /// The cached row if there is one, else what `read` finds, kept as read at `now` (taken before the read).
    async fn read_through(
        &self,
        cached: Option<PrincipalRow>,
        now: std::time::Instant,
        read: impl std::future::Future<Output = Result<Option<PrincipalRow>, StoreError>>,
    ) -> Result<Option<PrincipalRow>, StoreError> {
        if cached.is_some() {
            return Ok(cached);
        }
        let row = read.await?;
        if let Some(row) = &row {
            self.principal_cache().keep(row, now);
        }
        Ok(row)
    }

    fn principal_cache(&self) -> &crate::store::principal_cache::PrincipalCache {
        on_backend!(self, store => &store.principal_cache)
    }

    /// How long a cached user is served without reading it again (zero: never).
    pub fn set_user_cache(&self, fresh_for: std::time::Duration) {
        self.principal_cache().set_fresh_for(fresh_for);
    }

    /// Keeps this process's cache of users in step with changes other instances make, until `stop` turns
    /// true: on PostgreSQL by listening for the `users` trigger's notifications; on SQLite (one server per
    /// database) there is nothing to listen to, and a change made by another process (the CLI) applies
    /// within the cache's freshness.
    pub async fn watch_principals(&self, stop: tokio::sync::watch::Receiver<bool>) {
        if let Store::Postgres(store) = self {
            store.watch_principals(stop).await;
        }
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        on_backend!(self, store => store.user_count().await)
    }
}

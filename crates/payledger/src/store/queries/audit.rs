//! The audit log: writing a row (alone or inside another change's transaction) and reading them back.

use time::OffsetDateTime;

use crate::store::{AuditEntry, AuditFilter, AuditRow, Store, StoreError};

/// The audit queries, implemented once for each store: `$reader` and `$writer` name its pools and `$bind_time`
/// turns a time into what the backend binds. `write_audit` is private to the backend's module, where the
/// other areas' changes (users) call it inside their own transactions.
macro_rules! audit_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
        pub(in crate::store) async fn audit_rows(
            &self,
            filter: &$crate::store::AuditFilter,
        ) -> Result<Vec<$crate::store::AuditRow>, $crate::store::StoreError> {
            let rows = sqlx::query(
                "SELECT id, actor, action, target, before, after, at, request_id, client_address FROM audit_log
                 WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR target = $3)
                   AND ($4 IS NULL OR id < $4)
                 ORDER BY id DESC LIMIT $5",
            )
            .bind(filter.actor.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.target.as_deref())
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(&self.$reader)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::store::AuditRow {
                        id: row.try_get(0)?,
                        entry: $crate::store::AuditEntry {
                            actor: row.try_get(1)?,
                            action: row.try_get(2)?,
                            target: row.try_get(3)?,
                            before: row.try_get(4)?,
                            after: row.try_get(5)?,
                            origin: $crate::store::queries::audit::stored_origin(row.try_get(7)?, row.try_get(8)?),
                        },
                        at: row.try_get(6)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(Into::into)
        }

        pub(in crate::store) async fn write_audit_entry(
            &self,
            audit: &$crate::store::AuditEntry,
            now: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError> {
            Self::write_audit(&self.$writer, audit, now).await
        }

        /// Writes one audit row through `executor`: the pool, or the transaction of the change it records.
        async fn write_audit<'c, E>(
            executor: E,
            audit: &$crate::store::AuditEntry,
            at: time::OffsetDateTime,
        ) -> Result<(), $crate::store::StoreError>
        where
            E: sqlx::Executor<'c, Database = <$store as $crate::store::Backend>::Db>,
        {
            sqlx::query(
                "INSERT INTO audit_log (actor, action, target, before, after, at, request_id, client_address)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
                .bind(&audit.actor)
                .bind(&audit.action)
                .bind(&audit.target)
                .bind(&audit.before)
                .bind(&audit.after)
                .bind($bind_time(at))
                .bind(audit.request_id())
                .bind(audit.client_address())
                .execute(executor)
                .await?;
            Ok(())
        }
        }
    };
}
pub(crate) use audit_queries;

/// A row's request, from its `request_id` and `client_address` columns (empty before migration 0015).
pub(crate) fn stored_origin(
    request_id: Option<String>,
    client_address: Option<String>,
) -> Option<crate::origin::RequestOrigin> {
    let id = crate::origin::RequestId::stored(request_id?);
    Some(crate::origin::RequestOrigin { id, client: client_address.and_then(|address| address.parse().ok()) })
}

impl Store {
    /// Audit rows, newest first.
    pub async fn audit_rows(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        on_backend!(self, store => store.audit_rows(filter).await)
    }

    /// Writes one audit row on its own.
    pub async fn write_audit_entry(&self, audit: &AuditEntry, now: OffsetDateTime) -> Result<(), StoreError> {
        on_backend!(self, store => store.write_audit_entry(audit, now).await)
    }
}

//! Saved CSV column mappings of bank statements, one per account (`statement_csv_mappings`): a setting of the
//! import, not money, so it is written here directly and not through the ledger engine.

use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// The mapping queries, implemented once for each store: `$writer` names its write pool (a saved mapping is
/// read back by the very next import) and `$bind_time` turns a time into what the backend binds.
macro_rules! csv_mapping_queries {
    ($store:ty, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn save_csv_mapping(
                &self,
                account: &str,
                spec: &str,
                now: time::OffsetDateTime,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO statement_csv_mappings (account, spec, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (account) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                )
                .bind(account)
                .bind(spec)
                .bind($bind_time(now))
                .execute(&self.$writer)
                .await?;
                Ok(())
            }

            pub(in crate::store) async fn csv_mapping(
                &self,
                account: &str,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar("SELECT spec FROM statement_csv_mappings WHERE account = $1")
                    .bind(account)
                    .fetch_optional(&self.$writer)
                    .await?)
            }
        }
    };
}
pub(crate) use csv_mapping_queries;

impl Store {
    /// Saves (or replaces) the CSV column mapping `spec` of the 20-digit `account`.
    pub async fn save_csv_mapping(&self, account: &str, spec: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        on_backend!(self, store => store.save_csv_mapping(account, spec, now).await)
    }

    /// The CSV column mapping saved for `account`, if any.
    pub async fn csv_mapping(&self, account: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, store => store.csv_mapping(account).await)
    }
}

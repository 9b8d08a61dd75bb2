//! Console queries of the organizations pages: the list (searched by INN or name, sorted, a page at a time),
//! one organization with its balance, creating one with its account, and filling in the folded search names.

use payledger_core::Inn;
use time::OffsetDateTime;

use crate::store::{AuditEntry, Store, StoreError};

/// An organization with its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationRow {
    /// The INN.
    pub inn: String,
    /// The name (empty for organizations created by a payment).
    pub name: String,
    /// The posted balance in kopecks (0 without an account).
    pub balance: i64,
    /// The part held by open payouts.
    pub held: i64,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// How the organization list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationSort {
    /// By name, A to Z.
    Name,
    /// By name, Z to A.
    NameDesc,
    /// Smallest balance first.
    Balance,
    /// Largest balance first.
    BalanceDesc,
}

/// One page of the organization list.
#[derive(Debug, Clone)]
pub struct OrganizationQuery {
    /// A substring of the INN or the name; empty for all.
    pub search: String,
    /// The order.
    pub sort: OrganizationSort,
    /// At most this many.
    pub limit: i64,
    /// After skipping this many.
    pub offset: i64,
}

/// The organization list's query with a fixed order.
macro_rules! organizations_sql {
    ($order:literal) => {
        concat!(
            "SELECT o.inn, o.name, COALESCE(a.balance, 0), COALESCE(a.held, 0), o.created_at
             FROM organizations o
             LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
             WHERE ($1 = '' OR o.inn LIKE $2 ESCAPE '\\' OR o.name_folded LIKE $3 ESCAPE '\\')
             ORDER BY ",
            $order,
            " LIMIT $4 OFFSET $5"
        )
    };
}

/// The organization list's query for an order; only these fixed texts are ever run.
pub(crate) fn organizations_sql(sort: OrganizationSort) -> &'static str {
    match sort {
        OrganizationSort::Name => organizations_sql!("o.name, o.inn"),
        OrganizationSort::NameDesc => organizations_sql!("o.name DESC, o.inn DESC"),
        OrganizationSort::Balance => organizations_sql!("COALESCE(a.balance, 0), o.inn"),
        OrganizationSort::BalanceDesc => organizations_sql!("COALESCE(a.balance, 0) DESC, o.inn"),
    }
}

/// Counts what [`organizations_sql`] lists.
pub(crate) const ORGANIZATIONS_COUNT_SQL: &str = "SELECT COUNT(*) FROM organizations o
     WHERE ($1 = '' OR o.inn LIKE $2 ESCAPE '\\' OR o.name_folded LIKE $3 ESCAPE '\\')";

/// `LIKE` patterns for a substring search: as typed (SQLite's `LIKE` ignores ASCII case by itself) and
/// lower-cased (PostgreSQL's `LOWER` also folds other scripts), with `%`, `_` and `\` escaped.
pub(crate) fn like_patterns(search: &str) -> (String, String) {
    let mut escaped = String::with_capacity(search.len() + 2);
    for character in search.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    (format!("%{escaped}%"), format!("%{}%", crate::store::fold_name(&escaped)))
}

/// The organizations pages' queries, for one backend's store.
macro_rules! console_organization_queries {
    ($store:ty, reader: $reader:ident, writer: $writer:ident, bind_time: $bind_time:path) => {
        impl $store {
            pub(in crate::store) async fn console_organizations(
                &self,
                query: &$crate::store::console::organizations::OrganizationQuery,
            ) -> Result<(i64, Vec<$crate::store::console::organizations::OrganizationRow>), $crate::store::StoreError> {
                use sqlx::Row;
                let (pattern, lowered) = $crate::store::console::organizations::like_patterns(&query.search);
                let total: i64 = sqlx::query_scalar($crate::store::console::organizations::ORGANIZATIONS_COUNT_SQL)
                    .bind(&query.search)
                    .bind(&pattern)
                    .bind(&lowered)
                    .fetch_one(&self.$reader)
                    .await?;
                let rows = sqlx::query($crate::store::console::organizations::organizations_sql(query.sort))
                    .bind(&query.search)
                    .bind(&pattern)
                    .bind(&lowered)
                    .bind(query.limit)
                    .bind(query.offset)
                    .fetch_all(&self.$reader)
                    .await?;
                let list = rows
                    .iter()
                    .map(|row| {
                        Ok($crate::store::console::organizations::OrganizationRow {
                            inn: row.try_get(0)?,
                            name: row.try_get(1)?,
                            balance: row.try_get(2)?,
                            held: row.try_get(3)?,
                            created_at: row.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((total, list))
            }

            pub(in crate::store) async fn console_organization(
                &self,
                inn: &str,
            ) -> Result<Option<$crate::store::console::organizations::OrganizationRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT o.inn, o.name, COALESCE(a.balance, 0), COALESCE(a.held, 0), o.created_at
                     FROM organizations o
                     LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = o.inn AND a.currency = 'RUB'
                     WHERE o.inn = $1",
                )
                .bind(inn)
                .fetch_optional(&self.$reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::store::console::organizations::OrganizationRow {
                    inn: row.try_get(0)?,
                    name: row.try_get(1)?,
                    balance: row.try_get(2)?,
                    held: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                }))
            }

            pub(in crate::store) async fn fold_missing_names(&self) -> Result<u64, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT inn, name FROM organizations WHERE name_folded = '' AND name <> ''")
                    .fetch_all(&self.$writer)
                    .await?;
                for row in &rows {
                    let (inn, name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    sqlx::query("UPDATE organizations SET name_folded = $2 WHERE inn = $1")
                        .bind(&inn)
                        .bind($crate::store::fold_name(&name))
                        .execute(&self.$writer)
                        .await?;
                }
                Ok(rows.len() as u64)
            }

            /// Creates the organization and its account, with the audit row, in one transaction; false if
            /// the INN exists (nothing is written then).
            pub(in crate::store) async fn console_create_organization(
                &self,
                inn: &str,
                name: &str,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                // The first statement writes, so SQLite takes its write lock at once (no read-to-write upgrade).
                let mut tx = self.$writer.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO organizations (inn, name, created_at, name_folded) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (inn) DO NOTHING",
                )
                .bind(inn)
                .bind(name)
                .bind($bind_time(now))
                .bind($crate::store::fold_name(name))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !inserted {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // As `ensure_organizations` does: the account may already exist (it is never deleted with money).
                sqlx::query(
                    "INSERT INTO accounts (kind, external_key, currency) VALUES ('organization', $1, 'RUB')
                     ON CONFLICT (kind, external_key, currency) DO NOTHING",
                )
                .bind(inn)
                .execute(&mut *tx)
                .await?;
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
pub(crate) use console_organization_queries;

impl Store {
    /// Fills in the search name of organizations stored before it existed; how many there were.
    pub async fn fold_missing_names(&self) -> Result<u64, StoreError> {
        on_backend!(self, store => store.fold_missing_names().await)
    }

    /// A page of organizations and how many match in all.
    pub async fn console_organizations(
        &self,
        query: &OrganizationQuery,
    ) -> Result<(i64, Vec<OrganizationRow>), StoreError> {
        on_backend!(self, store => store.console_organizations(query).await)
    }

    /// One organization with its balance.
    pub async fn console_organization(&self, inn: &Inn) -> Result<Option<OrganizationRow>, StoreError> {
        on_backend!(self, store => store.console_organization(inn.as_str()).await)
    }

    /// Creates an organization and its account with the audit row, in one transaction; false if it exists.
    pub async fn console_create_organization(
        &self,
        inn: &Inn,
        name: &str,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = crate::timefmt::to_micros(now);
        on_backend!(self, store => store.console_create_organization(inn.as_str(), name, audit, now).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_patterns("50%_a\\Б"), ("%50\\%\\_a\\\\Б%".to_owned(), "%50\\%\\_a\\\\б%".to_owned()));
    }
}

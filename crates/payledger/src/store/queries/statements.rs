//! Reads of the reconciliation tables: imports with their account sections, discrepancies, and the counts
//! and totals of a report. Every write to these tables goes through the ledger engine.

use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// A stored import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// Its id.
    pub id: i64,
    /// The import's identity (`statement_imports.sha256`): the file's SHA-256, or with the account for one
    /// account of a file that has others.
    pub sha256: Vec<u8>,
    /// `1c`, `camt053` or `csv`.
    pub format: String,
    /// The file's name.
    pub file_name: Option<String>,
    /// `loading` or `complete`.
    pub state: String,
    /// Statement lines in the file.
    pub line_count: i64,
    /// Lines this import stored first.
    pub lines_new: i64,
    /// Of those, lines matched with a payment.
    pub matched: i64,
    /// Of those, credit lines neither matched nor judged (their day was open).
    pub pending: i64,
}

/// An account section of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportAccountRow {
    /// The import.
    pub import_id: i64,
    /// The account.
    pub account: String,
    /// The currency code.
    pub currency: String,
    /// `YYYY-MM-DD`.
    pub period_start: String,
    /// `YYYY-MM-DD`.
    pub period_end: String,
    /// Stated totals, minor units.
    pub opening: Option<i64>,
    /// Stated credits.
    pub credits: Option<i64>,
    /// Stated debits.
    pub debits: Option<i64>,
    /// Stated closing balance.
    pub closing: Option<i64>,
    /// Credit lines.
    pub credit_lines: i64,
    /// Debit lines.
    pub debit_lines: i64,
}

/// A discrepancy with what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscrepancyRow {
    /// Its id.
    pub id: i64,
    /// Its kind's stored name.
    pub kind: String,
    /// Its state's stored name.
    pub state: String,
    /// The day judged, `YYYY-MM-DD`.
    pub day: String,
    /// The account.
    pub account: Option<String>,
    /// Minor units.
    pub amount: i64,
    /// The currency code.
    pub currency: String,
    /// The line.
    pub line_id: Option<i64>,
    /// The line's payer INN.
    pub payer_inn: Option<String>,
    /// The line's payer name.
    pub payer_name: Option<String>,
    /// The line's or the notice's document number.
    pub document_number: Option<String>,
    /// The line's document date, `YYYY-MM-DD`.
    pub document_date: Option<String>,
    /// The line's purpose.
    pub purpose: Option<String>,
    /// The notice's operation id.
    pub operation_id: Option<Uuid>,
    /// The candidates, JSON text.
    pub details: String,
    /// The operator's note.
    pub note: Option<String>,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<OffsetDateTime>,
}

/// Which discrepancies a report lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscrepancyFilter {
    /// One account, or all.
    pub account: Option<String>,
    /// The first day.
    pub from: Date,
    /// The last day, inclusive.
    pub to: Date,
    /// One kind (stored name).
    pub kind: Option<String>,
    /// One state (stored name).
    pub state: Option<String>,
    /// Ids above this one.
    pub after: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// The counts and sums of statement lines of a report, per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTotals {
    /// The currency code.
    pub currency: String,
    /// Lines.
    pub lines: i64,
    /// Credit lines.
    pub credit_lines: i64,
    /// Matched credit lines.
    pub matched: i64,
    /// Unmatched credit lines with no discrepancy (their day is open).
    pub pending: i64,
    /// The sum of credit lines.
    pub credits: i64,
    /// The sum of matched credit lines.
    pub credits_matched: i64,
    /// What the ledger credited for the matched lines' payments.
    pub ledger_credited: i64,
}

/// The columns [`import_row`] reads.
pub(crate) const IMPORT_COLUMNS: &str = "i.id, i.sha256, i.format, i.file_name, i.state, i.line_count,
    (SELECT COUNT(*) FROM statement_lines l WHERE l.import_id = i.id),
    (SELECT COUNT(*) FROM statement_lines l JOIN statement_matches m ON m.line_id = l.id WHERE l.import_id = i.id),
    (SELECT COUNT(*) FROM statement_lines l WHERE l.import_id = i.id AND l.direction = 'credit'
        AND l.nature = 'payment' AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id)
        AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d WHERE d.line_id = l.id))";

/// The discrepancy columns and joins shared by the queries that list them.
pub(crate) const DISCREPANCY_SELECT: &str =
    "SELECT d.id, d.kind, d.state, CAST(d.day AS TEXT), d.account, d.amount, d.currency,
        d.line_id, l.payer_inn, l.payer_name, COALESCE(l.document_number, p.document_number),
        CAST(l.document_date AS TEXT), l.purpose, p.operation_id, CAST(d.details AS TEXT), d.note, d.resolution,
        d.resolved_by, d.resolved_at
     FROM statement_discrepancies d
     LEFT JOIN statement_lines l ON l.id = d.line_id
     LEFT JOIN bank_payments p ON p.id = d.payment_id";

/// The statement queries, implemented once for each store: `$reader` names its read pool and `$bind_date`
/// turns a calendar date into what the backend compares its date columns with.
macro_rules! statement_queries {
    ($store:ty, reader: $reader:ident, bind_date: $bind_date:path, bind_time: $bind_time:path) => {
        impl $store {
            /// The notices (applied or waiting for the applier) with a document date in `from..before`, and how
            /// many of them no line is matched to and no `notice_without_line` names yet.
            pub(in crate::store) async fn notice_counts(
                &self,
                from: time::OffsetDateTime,
                before: time::OffsetDateTime,
            ) -> Result<(i64, i64), $crate::store::StoreError> {
                let row = sqlx::query(
                    "SELECT COUNT(*),
                            COALESCE(SUM(CASE WHEN NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)
                                 AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d
                                                 WHERE d.payment_id = p.id AND d.kind = 'notice_without_line')
                                 THEN 1 ELSE 0 END), 0)
                     FROM bank_payments p
                     WHERE p.status IN ('applied', 'received') AND p.document_date >= $1 AND p.document_date < $2",
                )
                .bind($bind_time(from))
                .bind($bind_time(before))
                .fetch_one(&self.$reader)
                .await?;
                Ok((row.try_get(0)?, row.try_get(1)?))
            }

            pub(in crate::store) async fn statement_imports(
                &self,
                before: Option<i64>,
                limit: i64,
            ) -> Result<Vec<$crate::store::queries::statements::ImportRow>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM statement_imports i WHERE i.id < COALESCE($1, 9223372036854775807)
                     ORDER BY i.id DESC LIMIT $2",
                    $crate::store::queries::statements::IMPORT_COLUMNS
                );
                let rows =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(before).bind(limit).fetch_all(&self.$reader).await?;
                rows.iter().map($crate::store::queries::statements::import_row).collect()
            }

            pub(in crate::store) async fn statement_import(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::queries::statements::ImportRow>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM statement_imports i WHERE i.id = $1",
                    $crate::store::queries::statements::IMPORT_COLUMNS
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.$reader).await?;
                row.as_ref().map($crate::store::queries::statements::import_row).transpose()
            }

            pub(in crate::store) async fn statement_import_accounts(
                &self,
                first: i64,
                last: i64,
            ) -> Result<Vec<$crate::store::queries::statements::ImportAccountRow>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT import_id, account, currency, CAST(period_start AS TEXT), CAST(period_end AS TEXT),
                            opening, credits, debits, closing, credit_lines, debit_lines
                     FROM statement_accounts WHERE import_id >= $1 AND import_id <= $2 ORDER BY import_id, account",
                )
                .bind(first)
                .bind(last)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::queries::statements::ImportAccountRow {
                            import_id: row.try_get(0)?,
                            account: row.try_get(1)?,
                            currency: row.try_get(2)?,
                            period_start: row.try_get(3)?,
                            period_end: row.try_get(4)?,
                            opening: row.try_get(5)?,
                            credits: row.try_get(6)?,
                            debits: row.try_get(7)?,
                            closing: row.try_get(8)?,
                            credit_lines: row.try_get(9)?,
                            debit_lines: row.try_get(10)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn import_discrepancy_counts(
                &self,
                import_id: i64,
            ) -> Result<Vec<(String, i64)>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    // A line's discrepancy belongs to the import that stored the line; a notice without a
                    // line to the import whose finish found it (written in the batch that completed it).
                    "SELECT k.kind, COUNT(*) FROM (
                         SELECT d.kind FROM statement_discrepancies d JOIN statement_lines l ON l.id = d.line_id
                         WHERE l.import_id = $1
                         UNION ALL
                         SELECT d.kind FROM statement_discrepancies d JOIN statement_imports i
                           ON i.completed_at = d.created_at
                         WHERE i.id = $1 AND d.kind = 'notice_without_line'
                     ) k GROUP BY k.kind ORDER BY k.kind",
                )
                .bind(import_id)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn discrepancies(
                &self,
                filter: &$crate::store::queries::statements::DiscrepancyFilter,
            ) -> Result<Vec<$crate::store::queries::statements::DiscrepancyRow>, $crate::store::StoreError> {
                let sql = format!(
                    "{} WHERE d.day >= $1 AND d.day <= $2 AND ($3 IS NULL OR d.account = $3)
                       AND ($4 IS NULL OR d.kind = $4) AND ($5 IS NULL OR d.state = $5) AND d.id > COALESCE($6, 0)
                     ORDER BY d.id LIMIT $7",
                    $crate::store::queries::statements::DISCREPANCY_SELECT
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind($bind_date(filter.from))
                    .bind($bind_date(filter.to))
                    .bind(filter.account.clone())
                    .bind(filter.kind.clone())
                    .bind(filter.state.clone())
                    .bind(filter.after)
                    .bind(filter.limit)
                    .fetch_all(&self.$reader)
                    .await?;
                rows.iter().map($crate::store::queries::statements::discrepancy_row).collect()
            }

            pub(in crate::store) async fn discrepancy(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::queries::statements::DiscrepancyRow>, $crate::store::StoreError> {
                let sql = format!("{} WHERE d.id = $1", $crate::store::queries::statements::DISCREPANCY_SELECT);
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.$reader).await?;
                row.as_ref().map($crate::store::queries::statements::discrepancy_row).transpose()
            }

            pub(in crate::store) async fn applicable_lines(
                &self,
                import_id: i64,
            ) -> Result<Vec<i64>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT l.id FROM statement_lines l JOIN statement_discrepancies d ON d.line_id = l.id
                     WHERE l.import_id = $1 AND d.state = 'open' AND d.kind IN ('missing_notice', 'unknown_payer')
                       AND l.payer_inn IS NOT NULL ORDER BY l.id",
                )
                .bind(import_id)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter().map(|row| row.try_get(0)).collect::<Result<Vec<_>, sqlx::Error>>().map_err(Into::into)
            }

            pub(in crate::store) async fn discrepancy_counts(
                &self,
                account: Option<&str>,
                from: time::Date,
                to: time::Date,
            ) -> Result<Vec<(String, String, i64)>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT kind, state, COUNT(*) FROM statement_discrepancies
                     WHERE day >= $1 AND day <= $2 AND ($3 IS NULL OR account = $3)
                     GROUP BY kind, state ORDER BY kind, state",
                )
                .bind($bind_date(from))
                .bind($bind_date(to))
                .bind(account)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn statement_line_totals(
                &self,
                account: Option<&str>,
                from: time::Date,
                to: time::Date,
            ) -> Result<Vec<$crate::store::queries::statements::LineTotals>, $crate::store::StoreError> {
                // A matched line's ledger credit is its payment's amount when the payment is applied; the
                // report shows it beside the line's amount so a difference is visible (verify proves none).
                let rows = sqlx::query(
                    "SELECT l.currency, COUNT(*),
                            CAST(SUM(CASE WHEN l.direction = 'credit' THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN m.id IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN l.direction = 'credit' AND l.nature = 'payment'
                                          AND m.id IS NULL AND d.id IS NULL THEN 1 ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN l.direction = 'credit' THEN l.amount ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN m.id IS NOT NULL THEN l.amount ELSE 0 END) AS BIGINT),
                            CAST(SUM(CASE WHEN p.status = 'applied' THEN p.amount ELSE 0 END) AS BIGINT)
                     FROM statement_lines l
                     LEFT JOIN statement_matches m ON m.line_id = l.id
                     LEFT JOIN bank_payments p ON p.id = m.payment_id
                     LEFT JOIN statement_discrepancies d ON d.line_id = l.id
                     WHERE l.booking_date >= $1 AND l.booking_date <= $2 AND ($3 IS NULL OR l.account = $3)
                     GROUP BY l.currency ORDER BY l.currency",
                )
                .bind($bind_date(from))
                .bind($bind_date(to))
                .bind(account)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::queries::statements::LineTotals {
                            currency: row.try_get(0)?,
                            lines: row.try_get(1)?,
                            credit_lines: row.try_get(2)?,
                            matched: row.try_get(3)?,
                            pending: row.try_get(4)?,
                            credits: row.try_get(5)?,
                            credits_matched: row.try_get(6)?,
                            ledger_credited: row.try_get(7)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn statement_coverage(
                &self,
                account: Option<&str>,
            ) -> Result<Vec<(String, String, String)>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT a.account, CAST(a.period_start AS TEXT), CAST(a.period_end AS TEXT)
                     FROM statement_accounts a JOIN statement_imports i ON i.id = a.import_id
                     WHERE i.state = 'complete' AND ($1 IS NULL OR a.account = $1)
                     ORDER BY a.account, a.period_start",
                )
                .bind(account)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }
        }
    };
}
pub(crate) use statement_queries;

/// An import row from the columns of [`IMPORT_COLUMNS`].
pub(crate) fn import_row<R: sqlx::Row>(row: &R) -> Result<ImportRow, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ImportRow {
        id: row.try_get(0)?,
        sha256: row.try_get(1)?,
        format: row.try_get(2)?,
        file_name: row.try_get(3)?,
        state: row.try_get(4)?,
        line_count: row.try_get(5)?,
        lines_new: row.try_get(6)?,
        matched: row.try_get(7)?,
        pending: row.try_get(8)?,
    })
}

/// A discrepancy row from the columns of [`DISCREPANCY_SELECT`].
pub(crate) fn discrepancy_row<R: sqlx::Row>(row: &R) -> Result<DiscrepancyRow, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    OffsetDateTime: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DiscrepancyRow {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        state: row.try_get(2)?,
        day: row.try_get(3)?,
        account: row.try_get(4)?,
        amount: row.try_get(5)?,
        currency: row.try_get(6)?,
        line_id: row.try_get(7)?,
        payer_inn: row.try_get(8)?,
        payer_name: row.try_get(9)?,
        document_number: row.try_get(10)?,
        document_date: row.try_get(11)?,
        purpose: row.try_get(12)?,
        operation_id: row.try_get(13)?,
        details: row.try_get(14)?,
        note: row.try_get(15)?,
        resolution: row.try_get(16)?,
        resolved_by: row.try_get(17)?,
        resolved_at: row.try_get(18)?,
    })
}

impl Store {
    /// Imports, newest first, with ids below `before`.
    pub async fn statement_imports(&self, before: Option<i64>, limit: i64) -> Result<Vec<ImportRow>, StoreError> {
        on_backend!(self, store => store.statement_imports(before, limit).await)
    }

    /// One import.
    pub async fn statement_import(&self, id: i64) -> Result<Option<ImportRow>, StoreError> {
        on_backend!(self, store => store.statement_import(id).await)
    }

    /// The account sections of the imports with ids in `first..=last`.
    pub async fn statement_import_accounts(&self, first: i64, last: i64) -> Result<Vec<ImportAccountRow>, StoreError> {
        on_backend!(self, store => store.statement_import_accounts(first, last).await)
    }

    /// The notices with a document date in `from..before`, and how many of them are neither matched to a line
    /// nor judged `notice_without_line` (pending).
    pub async fn notice_counts(
        &self,
        from: time::OffsetDateTime,
        before: time::OffsetDateTime,
    ) -> Result<(i64, i64), StoreError> {
        on_backend!(self, store => store.notice_counts(from, before).await)
    }

    /// Each kind of discrepancy an import opened, with its count.
    pub async fn import_discrepancy_counts(&self, import_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        on_backend!(self, store => store.import_discrepancy_counts(import_id).await)
    }

    /// A page of discrepancies, ascending id.
    pub async fn discrepancies(&self, filter: &DiscrepancyFilter) -> Result<Vec<DiscrepancyRow>, StoreError> {
        on_backend!(self, store => store.discrepancies(filter).await)
    }

    /// The lines of an import an apply-all applies: open `missing_notice`/`unknown_payer` with a payer INN.
    pub async fn applicable_lines(&self, import_id: i64) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, store => store.applicable_lines(import_id).await)
    }

    /// One discrepancy.
    pub async fn discrepancy(&self, id: i64) -> Result<Option<DiscrepancyRow>, StoreError> {
        on_backend!(self, store => store.discrepancy(id).await)
    }

    /// Discrepancy counts by kind and state over a range of days.
    pub async fn discrepancy_counts(
        &self,
        account: Option<&str>,
        from: Date,
        to: Date,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_backend!(self, store => store.discrepancy_counts(account, from, to).await)
    }

    /// Statement line counts and sums over a range of booking days, per currency.
    pub async fn statement_line_totals(
        &self,
        account: Option<&str>,
        from: Date,
        to: Date,
    ) -> Result<Vec<LineTotals>, StoreError> {
        on_backend!(self, store => store.statement_line_totals(account, from, to).await)
    }

    /// The periods complete imports cover: (account, first day, last day), by account and start.
    pub async fn statement_coverage(&self, account: Option<&str>) -> Result<Vec<(String, String, String)>, StoreError> {
        on_backend!(self, store => store.statement_coverage(account).await)
    }
}

//! The reconciliation rows of a batch on PostgreSQL: a child of `postgres_writer`, so it writes in the
//! batch's transaction.

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;

use super::PgBatch;
use crate::store::StoreError;
use crate::store::batch::{ClaimedImport, DiscrepancyUpdate, ImportClaim, ImportSection, LockedDiscrepancy};

impl PgBatch {
    /// Inserts each new import (`loading`), ascending SHA-256 (the claims arrive sorted), and returns every
    /// claimed import's row; a found one is locked, so a concurrent begin of the same file waits for this one.
    pub(super) async fn claim_statement_imports(
        &mut self,
        claims: &[ImportClaim],
        now: OffsetDateTime,
    ) -> Result<HashMap<[u8; 32], ClaimedImport>, StoreError> {
        let mut claimed = HashMap::with_capacity(claims.len());
        for claim in claims {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO statement_imports (sha256, format, file_name, state, line_count, imported_by, started_at)
                 VALUES ($1, $2, $3, 'loading', $4, $5, $6) ON CONFLICT (sha256) DO NOTHING RETURNING id",
            )
            .bind(&claim.sha256[..])
            .bind(claim.format)
            .bind(&claim.file_name)
            .bind(claim.line_count)
            .bind(&claim.by)
            .bind(now)
            .fetch_optional(&mut *self.tx)
            .await?;
            let row = match inserted {
                Some(id) => Some(ClaimedImport { id, inserted: true, state: "loading".into() }),
                None => sqlx::query("SELECT id, state FROM statement_imports WHERE sha256 = $1 FOR UPDATE")
                    .bind(&claim.sha256[..])
                    .fetch_optional(&mut *self.tx)
                    .await?
                    .map(|row| -> Result<ClaimedImport, sqlx::Error> {
                        Ok(ClaimedImport { id: row.try_get(0)?, inserted: false, state: row.try_get(1)? })
                    })
                    .transpose()?,
            };
            if let Some(row) = row {
                claimed.insert(claim.sha256, row);
            }
        }
        Ok(claimed)
    }

    /// Locks the discrepancies with these ids, ascending.
    pub(super) async fn lock_statement_discrepancies(
        &mut self,
        ids: &[i64],
    ) -> Result<HashMap<i64, LockedDiscrepancy>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT id, kind, state FROM statement_discrepancies WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, LockedDiscrepancy { kind: row.try_get(1)?, state: row.try_get(2)? })))
            .collect()
    }

    pub(super) async fn write_import_sections(&mut self, sections: &[ImportSection]) -> Result<(), StoreError> {
        if sections.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO statement_accounts (import_id, account, currency, period_start, period_end, opening, credits,
                 debits, closing, credit_lines, debit_lines)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::date[], $5::date[], $6::bigint[],
                                  $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])",
        )
        .bind(sections.iter().map(|s| s.import_id).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.account.clone()).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.currency).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.period_start).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.period_end).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.opening).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.credits).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.debits).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.closing).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.credit_lines).collect::<Vec<_>>())
        .bind(sections.iter().map(|s| s.debit_lines).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(super) async fn write_discrepancy_updates(
        &mut self,
        updates: &[DiscrepancyUpdate],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = updates.iter().map(|u| u.id).collect();
        let states: Vec<&str> = updates.iter().map(|u| u.state).collect();
        let resolutions: Vec<&str> = updates.iter().map(|u| u.resolution).collect();
        let notes: Vec<Option<String>> = updates.iter().map(|u| u.note.clone()).collect();
        let by: Vec<Option<String>> = updates.iter().map(|u| u.by.clone()).collect();
        sqlx::query(
            "UPDATE statement_discrepancies d SET state = u.state, resolution = u.resolution,
                 note = COALESCE(u.note, d.note), resolved_by = u.by, resolved_at = $6
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, state, resolution, note, by)
             WHERE d.id = u.id",
        )
        .bind(&ids)
        .bind(&states)
        .bind(&resolutions)
        .bind(&notes)
        .bind(&by)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

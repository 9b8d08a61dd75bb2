//! The reconciliation rows of a batch on SQLite: a child of `sqlite_writer`, so it writes in the batch's
//! transaction.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::SqliteBatch;
use crate::store::StoreError;
use crate::store::batch::{ClaimedImport, DiscrepancyUpdate, ImportClaim, ImportSection, LockedDiscrepancy};
use crate::timefmt::sqlite_date;

impl SqliteBatch<'_> {
    /// Inserts each new import (`loading`) and returns every claimed import's row.
    pub(super) fn claim_statement_imports(
        &self,
        claims: &[ImportClaim],
        now: &str,
    ) -> Result<HashMap<[u8; 32], ClaimedImport>, StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO statement_imports (sha256, format, file_name, state, line_count, imported_by, started_at)
             VALUES (?1, ?2, ?3, 'loading', ?4, ?5, ?6) ON CONFLICT (sha256) DO NOTHING",
        )?;
        let mut find = self.tx.prepare_cached("SELECT id, state FROM statement_imports WHERE sha256 = ?1")?;
        let mut claimed = HashMap::with_capacity(claims.len());
        for claim in claims {
            let inserted = insert.execute(params![
                &claim.sha256[..],
                claim.format,
                claim.file_name,
                claim.line_count,
                claim.by,
                now
            ])? == 1;
            let row = find
                .query_row(params![&claim.sha256[..]], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
                .optional()?;
            if let Some((id, state)) = row {
                claimed.insert(claim.sha256, ClaimedImport { id, inserted, state });
            }
        }
        Ok(claimed)
    }

    /// Loads the discrepancies with these ids (the one writer holds the database's write lock already).
    pub(super) fn lock_statement_discrepancies(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, LockedDiscrepancy>, StoreError> {
        let mut statement = self.tx.prepare_cached("SELECT kind, state FROM statement_discrepancies WHERE id = ?1")?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            let row = statement
                .query_row(params![id], |row| Ok(LockedDiscrepancy { kind: row.get(0)?, state: row.get(1)? }))
                .optional()?;
            if let Some(discrepancy) = row {
                found.insert(*id, discrepancy);
            }
        }
        Ok(found)
    }

    pub(super) fn write_import_sections(&self, sections: &[ImportSection]) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO statement_accounts (import_id, account, currency, period_start, period_end, opening, credits,
                 debits, closing, credit_lines, debit_lines)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for s in sections {
            insert.execute(params![
                s.import_id,
                s.account,
                s.currency,
                sqlite_date(s.period_start),
                sqlite_date(s.period_end),
                s.opening,
                s.credits,
                s.debits,
                s.closing,
                s.credit_lines,
                s.debit_lines
            ])?;
        }
        Ok(())
    }

    pub(super) fn write_discrepancy_updates(&self, updates: &[DiscrepancyUpdate], now: &str) -> Result<(), StoreError> {
        let mut update = self.tx.prepare_cached(
            "UPDATE statement_discrepancies SET state = ?1, resolution = ?2, note = COALESCE(?3, note),
                 resolved_by = ?4, resolved_at = ?5 WHERE id = ?6",
        )?;
        for change in updates {
            update.execute(params![change.state, change.resolution, change.note, change.by, now, change.id])?;
        }
        Ok(())
    }
}

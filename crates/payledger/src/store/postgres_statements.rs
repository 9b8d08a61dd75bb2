//! The reconciliation rows of a batch on PostgreSQL: a child of `postgres_writer`, so it writes in the
//! batch's transaction.

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;

use super::PgBatch;
use crate::store::StoreError;
use uuid::Uuid;

use crate::store::batch::{
    ApplyTarget, ClaimedImport, DiscrepancyUpdate, ImportClaim, ImportSection, LateNotice, LockedDiscrepancy,
    MatchByOperation, NewDiscrepancy, NewMatch, NewStatementLine, NoticeCounterpart, NoticeDocument, PaymentCandidate,
    PendingLine, SectionPeriod, StatementPayment, UnlinedPayment,
};

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

    /// The accounts of each import's stored sections, ascending.
    pub(super) async fn accounts_of_imports(&mut self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let mut found: HashMap<i64, Vec<String>> = ids.iter().map(|id| (*id, Vec::new())).collect();
        if ids.is_empty() {
            return Ok(found);
        }
        let rows = sqlx::query(
            "SELECT import_id, account FROM statement_accounts WHERE import_id = ANY($1) ORDER BY import_id, account",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        for row in rows {
            found.entry(row.try_get(0)?).or_default().push(row.try_get(1)?);
        }
        Ok(found)
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

    /// One statement for the command's lines; `RETURNING` names the inserted ones by their identity.
    /// (Lock phase: statement lines, ascending (account, booking date, fingerprint, occurrence).)
    pub(super) async fn insert_lines(
        &mut self,
        lines: &[NewStatementLine<'_>],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        // Inserted in ascending key order, so two instances storing overlapping files wait in one order.
        let mut sorted: Vec<&NewStatementLine<'_>> = lines.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.account, a.booking_date, a.fingerprint, a.occurrence).cmp(&(
                &b.account,
                b.booking_date,
                b.fingerprint,
                b.occurrence,
            ))
        });
        let rows = sqlx::query(
            "INSERT INTO statement_lines (import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, payer_name, payer_account, payer_bik,
                 bank_ref, end_to_end_id, purpose, source_line, raw, nature)
             SELECT import_id, account, fingerprint, occurrence, direction, amount, currency, booking_date,
                    document_number, document_date, payer_inn, payer_name, payer_account, payer_bik, bank_ref,
                    end_to_end_id, purpose, source_line, raw::jsonb, nature
             FROM UNNEST($1::bigint[], $2::text[], $3::bytea[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],
                         $8::date[], $9::text[], $10::date[], $11::text[], $12::text[], $13::text[], $14::text[],
                         $15::text[], $16::text[], $17::text[], $18::bigint[], $19::text[], $20::text[])
                  WITH ORDINALITY AS l(import_id, account, fingerprint, occurrence, direction, amount, currency,
                      booking_date, document_number, document_date, payer_inn, payer_name, payer_account, payer_bik,
                      bank_ref, end_to_end_id, purpose, source_line, raw, nature, n)
             ORDER BY n
             ON CONFLICT (account, booking_date, fingerprint, occurrence) DO NOTHING
             RETURNING id, account, fingerprint, CAST(occurrence AS BIGINT)",
        )
        .bind(sorted.iter().map(|l| l.import_id).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.account).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.fingerprint.to_vec()).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.occurrence).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.direction).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.amount).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.currency).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.booking_date).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.document_number).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.document_date).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.payer_inn).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.payer_name).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.payer_account).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.payer_bik).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.bank_ref).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.end_to_end_id).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.purpose).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.source_line).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.raw).collect::<Vec<_>>())
        .bind(sorted.iter().map(|l| l.nature).collect::<Vec<_>>())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut inserted: HashMap<(String, Vec<u8>, i64), i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            inserted.insert((row.try_get(1)?, row.try_get(2)?, row.try_get(3)?), row.try_get(0)?);
        }
        Ok(lines
            .iter()
            .map(|l| inserted.remove(&(l.account.to_owned(), l.fingerprint.to_vec(), l.occurrence)))
            .collect())
    }

    pub(super) async fn candidates(
        &mut self,
        documents: &[(String, String)],
        operation_ids: &[Uuid],
    ) -> Result<Vec<PaymentCandidate>, StoreError> {
        if documents.is_empty() && operation_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Each key is its own index lookup (a LATERAL subquery behind OFFSET 0, which the planner cannot flatten
        // into a join): an OR of the two ways, or a join with the keys, let PostgreSQL read the whole table once
        // per command instead (a seq scan of bank_payments per chunk of a large import, measured). The lookup
        // returns the payment's columns itself: joining the found ids back to bank_payments let the planner hash
        // the whole table again, a parallel seq scan per command (12 s of a million-line import).
        let rows = sqlx::query(
            "SELECT c.* FROM UNNEST($1::text[], $2::text[]) AS k(inn, number)
             CROSS JOIN LATERAL (SELECT p.id, p.operation_id, p.amount, p.currency, p.payer_inn, p.document_number,
                                        p.document_date
                                 FROM bank_payments p
                                 WHERE p.payer_inn = k.inn AND p.document_number = k.number
                                   AND p.status IN ('applied', 'received')
                                   AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)
                                 OFFSET 0) c
             UNION
             SELECT c.* FROM UNNEST($3::uuid[]) AS o(id)
             CROSS JOIN LATERAL (SELECT p.id, p.operation_id, p.amount, p.currency, p.payer_inn, p.document_number,
                                        p.document_date
                                 FROM bank_payments p
                                 WHERE p.operation_id = o.id AND p.status IN ('applied', 'received')
                                   AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)
                                 OFFSET 0) c
             ORDER BY 1",
        )
        .bind(documents.iter().map(|(inn, _)| inn.as_str()).collect::<Vec<_>>())
        .bind(documents.iter().map(|(_, number)| number.as_str()).collect::<Vec<_>>())
        .bind(operation_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PaymentCandidate {
                    id: row.try_get(0)?,
                    operation_id: row.try_get(1)?,
                    amount: row.try_get(2)?,
                    currency: row.try_get(3)?,
                    payer_inn: row.try_get(4)?,
                    document_number: row.try_get(5)?,
                    document_date: row.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub(super) async fn write_statement_matches(
        &mut self,
        matches: &[NewMatch],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if matches.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at, matched_by)
             SELECT line_id, payment_id, rule, $4, matched_by
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $5::text[]) AS m(line_id, payment_id, rule, matched_by)",
        )
        .bind(matches.iter().map(|m| m.line_id).collect::<Vec<_>>())
        .bind(matches.iter().map(|m| m.payment_id).collect::<Vec<_>>())
        .bind(matches.iter().map(|m| m.rule).collect::<Vec<_>>())
        .bind(now)
        .bind(matches.iter().map(|m| m.by.clone()).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub(super) async fn write_new_discrepancies(
        &mut self,
        found: &[NewDiscrepancy],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if found.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO statement_discrepancies (kind, state, line_id, payment_id, account, day, amount, currency,
                 details, created_at)
             SELECT kind, 'open', line_id, payment_id, account, day, amount, currency, details::jsonb, $9
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::date[], $6::bigint[], $7::text[],
                         $8::text[]) AS d(kind, line_id, payment_id, account, day, amount, currency, details)",
        )
        .bind(found.iter().map(|d| d.kind).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.line_id).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.payment_id).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.account.clone()).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.day).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.amount).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.currency.clone()).collect::<Vec<_>>())
        .bind(found.iter().map(|d| d.details.clone()).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// A pass over the credit lines (the pending ones are few, but nothing marks them): fine per import.
    pub(super) async fn pending_statement_lines(&mut self, today: time::Date) -> Result<Vec<PendingLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.id, l.account, l.amount, l.currency, l.booking_date, l.document_number, l.document_date,
                    l.payer_inn, l.bank_ref, l.end_to_end_id
             FROM statement_lines l
             WHERE l.direction = 'credit' AND l.nature = 'payment' AND l.booking_date < $1
               AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id)
               AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d WHERE d.line_id = l.id)
             ORDER BY l.id",
        )
        .bind(today)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                let bank_ref: Option<String> = row.try_get(8)?;
                let end_to_end: Option<String> = row.try_get(9)?;
                Ok(PendingLine {
                    id: row.try_get(0)?,
                    account: row.try_get(1)?,
                    amount: row.try_get(2)?,
                    currency: row.try_get(3)?,
                    booking_date: row.try_get(4)?,
                    document_number: row.try_get(5)?,
                    document_date: row.try_get(6)?,
                    payer_inn: row.try_get(7)?,
                    bank_ids: [bank_ref, end_to_end].into_iter().flatten().collect(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub(super) async fn unlined(
        &mut self,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<UnlinedPayment>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.amount, p.currency, p.document_date FROM bank_payments p
             WHERE p.source = 'webhook' AND p.status = 'applied' AND p.document_date >= $1 AND p.document_date < $2
               AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)
               AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d
                               WHERE d.payment_id = p.id AND d.kind = 'notice_without_line')
             ORDER BY p.id",
        )
        .bind(from)
        .bind(before)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnlinedPayment {
                    id: row.try_get(0)?,
                    amount: row.try_get(1)?,
                    currency: row.try_get(2)?,
                    document_date: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub(super) async fn periods(&mut self, finishing: &[i64]) -> Result<Vec<SectionPeriod>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.account, a.period_start, a.period_end, i.state = 'complete' OR i.id = ANY($1)
             FROM statement_accounts a JOIN statement_imports i ON i.id = a.import_id ORDER BY a.id",
        )
        .bind(finishing)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SectionPeriod {
                    account: row.try_get(0)?,
                    start: row.try_get(1)?,
                    end: row.try_get(2)?,
                    complete: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The finished imports' rows were locked in the import phase, before the accounts.
    pub(super) async fn finish_writes(
        &mut self,
        completed: &[i64],
        matched_payments: &[i64],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !completed.is_empty() {
            sqlx::query(
                "UPDATE statement_imports SET state = 'complete', completed_at = $2
                 WHERE id = ANY($1) AND state = 'loading'",
            )
            .bind(completed)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !matched_payments.is_empty() {
            sqlx::query(
                "UPDATE statement_discrepancies SET state = 'resolved', resolution = 'matched', resolved_at = $2
                 WHERE payment_id = ANY($1) AND kind = 'notice_without_line' AND state = 'open'",
            )
            .bind(matched_payments)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}

/// The advisory lock of reconciliation decisions (lock phase 0): the two-key form, in a space of its own
/// ("PAYL", issue 13), so no other advisory lock can collide with it.
const RECONCILIATION_LOCK: (i32, i32) = (0x5041_594C, 13);

impl PgBatch {
    /// Lock phase 0: waits for every other batch that decides reconciliation (notices, applies, statement
    /// commands) on any instance, until this transaction ends.
    pub(super) async fn lock_reconciliation_decisions(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(RECONCILIATION_LOCK.0)
            .bind(RECONCILIATION_LOCK.1)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Each line with its match and its discrepancy, in one statement.
    pub(super) async fn statement_apply_targets(
        &mut self,
        line_ids: &[i64],
    ) -> Result<HashMap<i64, ApplyTarget>, StoreError> {
        if line_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT l.id, l.account, l.fingerprint, l.occurrence::bigint, l.direction, l.amount, l.currency, l.payer_inn,
                    l.document_number, l.document_date,
                    EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id), d.id, d.kind, d.state,
                    l.bank_ref, l.end_to_end_id
             FROM statement_lines l LEFT JOIN statement_discrepancies d ON d.line_id = l.id
             WHERE l.id = ANY($1::bigint[])",
        )
        .bind(line_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut targets = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let fingerprint: Vec<u8> = row.try_get(2)?;
            let fingerprint: [u8; 32] =
                fingerprint.try_into().map_err(|_| StoreError::Corrupt(format!("line {id} fingerprint")))?;
            let direction: String = row.try_get(4)?;
            let discrepancy = match (row.try_get(11)?, row.try_get(12)?, row.try_get(13)?) {
                (Some(d), Some(kind), Some(state)) => Some((d, kind, state)),
                _ => None,
            };
            targets.insert(
                id,
                ApplyTarget {
                    account: row.try_get(1)?,
                    fingerprint,
                    occurrence: row.try_get(3)?,
                    credit: direction == "credit",
                    amount: row.try_get(5)?,
                    currency: row.try_get(6)?,
                    payer_inn: row.try_get(7)?,
                    document_number: row.try_get(8)?,
                    document_date: row.try_get(9)?,
                    matched: row.try_get(10)?,
                    discrepancy,
                    bank_ids: [row.try_get::<Option<String>, _>(14)?, row.try_get::<Option<String>, _>(15)?]
                        .into_iter()
                        .flatten()
                        .collect(),
                },
            );
        }
        Ok(targets)
    }

    /// The statement-sourced applied payments with any of these documents' (payer INN, document number),
    /// through `bank_payments_by_document`, and the unmatched credit lines with any of their (document date,
    /// payer INN, number), through `statement_lines_by_document`: one statement.
    pub(super) async fn statement_counterparts(
        &mut self,
        documents: &[NoticeDocument],
    ) -> Result<Vec<NoticeCounterpart>, StoreError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let mut payment_keys: Vec<(&str, &str)> =
            documents.iter().map(|d| (d.payer_inn.as_str(), d.number.as_str())).collect();
        payment_keys.sort_unstable();
        payment_keys.dedup();
        let rows = sqlx::query(
            // Per-key index lookups (LATERAL behind OFFSET 0, never flattened into a join): with a join on the
            // keys, a plan made while bank_payments was small read the whole table for every notice batch
            // (measured: one seq scan per batch, 6 billion rows read for 600,000 notices).
            "WITH payment_keys AS (SELECT * FROM UNNEST($1::text[], $2::text[]) AS k(inn, number)),
                  line_keys AS (SELECT * FROM UNNEST($3::text[], $4::text[], $5::date[]) AS k(inn, number, day))
             SELECT 1::int, p.id, p.operation_id, p.amount, p.currency, p.payer_inn, p.document_number,
                    p.document_date, NULL::date,
                    EXISTS (SELECT 1 FROM bank_payments d WHERE d.duplicate_of = p.id AND d.late_match = 'key'),
                    NULL::bigint, EXISTS (SELECT 1 FROM bank_payments d WHERE d.duplicate_of = p.id)
             FROM payment_keys k CROSS JOIN LATERAL (SELECT * FROM bank_payments x
                                           WHERE x.payer_inn = k.inn AND x.document_number = k.number
                                             AND x.source = 'statement' AND x.status = 'applied' OFFSET 0) p
             UNION ALL
             SELECT 2::int, l.id, NULL::uuid, l.amount, l.currency, l.payer_inn, l.document_number,
                    NULL::timestamptz, l.document_date, false,
                    (SELECT d.id FROM statement_discrepancies d WHERE d.line_id = l.id AND d.state = 'open'), false
             FROM line_keys k CROSS JOIN LATERAL (SELECT * FROM statement_lines x
                                           WHERE x.document_date = k.day AND x.payer_inn = k.inn
                                             AND x.document_number = k.number AND x.direction = 'credit'
                                             AND x.nature = 'payment' OFFSET 0) l
             WHERE NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id)",
        )
        .bind(payment_keys.iter().map(|(inn, _)| *inn).collect::<Vec<_>>())
        .bind(payment_keys.iter().map(|(_, number)| *number).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.payer_inn.as_str()).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.number.as_str()).collect::<Vec<_>>())
        .bind(documents.iter().map(|d| d.date).collect::<Vec<_>>())
        .fetch_all(&mut *self.tx)
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let tag: i32 = row.try_get(0)?;
            let operation: Option<Uuid> = row.try_get(2)?;
            let payment_date: Option<OffsetDateTime> = row.try_get(7)?;
            let line_date: Option<time::Date> = row.try_get(8)?;
            found.push(match (tag, operation, payment_date, line_date) {
                (1, Some(operation_id), Some(document_date), _) => NoticeCounterpart::StatementPayment {
                    id: row.try_get(1)?,
                    operation_id,
                    amount: row.try_get(3)?,
                    currency: row.try_get(4)?,
                    payer_inn: row.try_get(5)?,
                    document_number: row.try_get(6)?,
                    document_date,
                    named_by_key: row.try_get(9)?,
                    named: row.try_get(11)?,
                },
                (_, _, _, Some(document_date)) => NoticeCounterpart::OpenLine {
                    id: row.try_get(1)?,
                    amount: row.try_get(3)?,
                    currency: row.try_get(4)?,
                    payer_inn: row.try_get(5)?,
                    document_number: row.try_get(6)?,
                    document_date,
                    open_discrepancy: row.try_get(10)?,
                },
                _ => return Err(StoreError::Corrupt("a reconciliation counterpart without its date".into())),
            });
        }
        Ok(found)
    }

    /// Inserts the payments credited from statement lines, marks late notices `duplicate` of them (or of earlier
    /// ones) and matches lines to payments named by operation id: one statement each.
    pub(super) async fn write_statement_payments(
        &mut self,
        payments: &[StatementPayment],
        late: &[LateNotice],
        matches: &[MatchByOperation],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !payments.is_empty() {
            sqlx::query(
                "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                            status, applied_at, transaction_id, received_at, source)
                 SELECT o, a, c, i, n, d, 'applied', $8, t, $8, 'statement'
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                             $7::uuid[]) AS p(o, a, c, i, n, d, t)",
            )
            .bind(payments.iter().map(|p| p.notice.operation_id.0).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.notice.amount.minor()).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.notice.amount.currency().code()).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.notice.payer_inn.as_str().to_owned()).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.notice.document_number.clone()).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.notice.document_date).collect::<Vec<_>>())
            .bind(payments.iter().map(|p| p.transaction_id).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        if !late.is_empty() {
            sqlx::query(
                "UPDATE bank_payments SET status = 'duplicate', transaction_id = NULL, applied_at = NULL,
                     duplicate_of = s.id, late_match = l.how
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS l(notice, original, how)
                 JOIN bank_payments s ON s.operation_id = l.original
                 WHERE bank_payments.operation_id = l.notice",
            )
            .bind(late.iter().map(|l| l.operation_id).collect::<Vec<_>>())
            .bind(late.iter().map(|l| l.duplicate_of).collect::<Vec<_>>())
            .bind(late.iter().map(|l| l.late_match).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        if !matches.is_empty() {
            let inserted = sqlx::query(
                "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at, matched_by)
                 SELECT m.line_id, p.id, m.rule, $4, m.by
                 FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $5::text[]) AS m(line_id, operation, rule, by)
                 JOIN bank_payments p ON p.operation_id = m.operation",
            )
            .bind(matches.iter().map(|m| m.line_id).collect::<Vec<_>>())
            .bind(matches.iter().map(|m| m.operation_id).collect::<Vec<_>>())
            .bind(matches.iter().map(|m| m.rule).collect::<Vec<_>>())
            .bind(now)
            .bind(matches.iter().map(|m| m.by.clone()).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if inserted != matches.len() as u64 {
                return Err(StoreError::Corrupt("a match names a payment that is not stored".into()));
            }
        }
        Ok(())
    }
}

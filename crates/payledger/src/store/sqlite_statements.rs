//! The reconciliation rows of a batch on SQLite: a child of `sqlite_writer`, so it writes in the batch's
//! transaction.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::SqliteBatch;
use crate::store::StoreError;
use uuid::Uuid;

use crate::store::batch::{
    ApplyTarget, ClaimedImport, DiscrepancyUpdate, ImportClaim, ImportSection, LateNotice, LockedDiscrepancy,
    MatchByOperation, NewDiscrepancy, NewMatch, NewStatementLine, NoticeCounterpart, NoticeDocument, PaymentCandidate,
    PendingLine, SectionPeriod, StatementPayment, UnlinedPayment,
};
use crate::timefmt::{sqlite_date, sqlite_text};
use time::OffsetDateTime;

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

    /// The accounts of each import's stored sections, ascending.
    pub(super) fn accounts_of_imports(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let mut select =
            self.tx.prepare_cached("SELECT account FROM statement_accounts WHERE import_id = ?1 ORDER BY account")?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            let accounts = select.query_map(params![id], |row| row.get::<_, String>(0))?.collect::<Result<_, _>>()?;
            found.insert(*id, accounts);
        }
        Ok(found)
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

    pub(super) fn insert_lines(&self, lines: &[NewStatementLine<'_>]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO statement_lines (import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, payer_name, payer_account, payer_bik,
                 bank_ref, end_to_end_id, purpose, source_line, raw, nature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
             ON CONFLICT (account, booking_date, fingerprint, occurrence) DO NOTHING",
        )?;
        let mut ids = Vec::with_capacity(lines.len());
        for l in lines {
            let inserted = insert.execute(params![
                l.import_id,
                l.account,
                &l.fingerprint[..],
                l.occurrence,
                l.direction,
                l.amount,
                l.currency,
                sqlite_date(l.booking_date),
                l.document_number,
                sqlite_date(l.document_date),
                l.payer_inn,
                l.payer_name,
                l.payer_account,
                l.payer_bik,
                l.bank_ref,
                l.end_to_end_id,
                l.purpose,
                l.source_line,
                l.raw,
                l.nature
            ])? == 1;
            ids.push(inserted.then(|| self.tx.last_insert_rowid()));
        }
        Ok(ids)
    }

    /// One indexed lookup per (payer, number) through `bank_payments_by_document`, one per id by its key.
    pub(super) fn candidates(
        &self,
        documents: &[(String, String)],
        operation_ids: &[Uuid],
    ) -> Result<Vec<PaymentCandidate>, StoreError> {
        const COLUMNS: &str = "SELECT p.id, p.operation_id, p.amount, p.currency, p.payer_inn, p.document_number,
                p.document_date FROM bank_payments p";
        const OPEN: &str = "p.status IN ('applied', 'received')
                AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)";
        let mut by_document = self
            .tx
            .prepare_cached(&format!("{COLUMNS} WHERE p.payer_inn = ?1 AND p.document_number = ?2 AND {OPEN}"))?;
        let mut by_id = self.tx.prepare_cached(&format!("{COLUMNS} WHERE p.operation_id = ?1 AND {OPEN}"))?;
        let mut found: HashMap<i64, PaymentCandidate> = HashMap::new();
        let row = |row: &rusqlite::Row<'_>| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
            ))
        };
        let mut rows = Vec::new();
        for (inn, number) in documents {
            rows.extend(by_document.query_map(params![inn, number], row)?.collect::<Result<Vec<_>, _>>()?);
        }
        for id in operation_ids {
            rows.extend(by_id.query_map(params![id.as_bytes().as_slice()], row)?.collect::<Result<Vec<_>, _>>()?);
        }
        for (id, operation, amount, currency, payer_inn, document_number, date) in rows {
            let operation_id = super::uuid_from(&operation)?;
            let document_date = super::parse_time(&date)?;
            found.insert(
                id,
                PaymentCandidate { id, operation_id, amount, currency, payer_inn, document_number, document_date },
            );
        }
        let mut candidates: Vec<PaymentCandidate> = found.into_values().collect();
        candidates.sort_by_key(|candidate| candidate.id);
        Ok(candidates)
    }

    pub(super) fn write_statement_matches(&self, matches: &[NewMatch], now: &str) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at, matched_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for m in matches {
            insert.execute(params![m.line_id, m.payment_id, m.rule, now, m.by])?;
        }
        Ok(())
    }

    pub(super) fn write_new_discrepancies(&self, found: &[NewDiscrepancy], now: &str) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO statement_discrepancies (kind, state, line_id, payment_id, account, day, amount, currency,
                 details, created_at)
             VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for d in found {
            insert.execute(params![
                d.kind,
                d.line_id,
                d.payment_id,
                d.account,
                sqlite_date(d.day),
                d.amount,
                d.currency,
                d.details,
                now
            ])?;
        }
        Ok(())
    }

    /// A full pass over the credit lines (the pending ones are few, but nothing marks them): fine per import.
    pub(super) fn pending_statement_lines(&self, today: time::Date) -> Result<Vec<PendingLine>, StoreError> {
        let mut query = self.tx.prepare_cached(
            "SELECT l.id, l.account, l.amount, l.currency, l.booking_date, l.document_number, l.document_date,
                    l.payer_inn, l.bank_ref, l.end_to_end_id
             FROM statement_lines l
             WHERE l.direction = 'credit' AND l.nature = 'payment' AND l.booking_date < ?1
               AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id)
               AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d WHERE d.line_id = l.id)
             ORDER BY l.id",
        )?;
        let rows = query
            .query_map(params![sqlite_date(today)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, account, amount, currency, booking, document_number, document, payer_inn, bank_ref, e2e)| {
                Ok(PendingLine {
                    id,
                    account,
                    amount,
                    currency,
                    booking_date: day(&booking)?,
                    document_number,
                    document_date: day(&document)?,
                    payer_inn,
                    bank_ids: [bank_ref, e2e].into_iter().flatten().collect(),
                })
            })
            .collect()
    }

    pub(super) fn unlined(
        &self,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<UnlinedPayment>, StoreError> {
        let mut query = self.tx.prepare_cached(
            "SELECT p.id, p.amount, p.currency, p.document_date FROM bank_payments p
             WHERE p.source = 'webhook' AND p.status = 'applied' AND p.document_date >= ?1 AND p.document_date < ?2
               AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.payment_id = p.id)
               AND NOT EXISTS (SELECT 1 FROM statement_discrepancies d
                               WHERE d.payment_id = p.id AND d.kind = 'notice_without_line')
             ORDER BY p.id",
        )?;
        let rows = query
            .query_map(params![sqlite_text(from), sqlite_text(before)], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, amount, currency, date)| {
                Ok(UnlinedPayment { id, amount, currency, document_date: super::parse_time(&date)? })
            })
            .collect()
    }

    pub(super) fn periods(&self, finishing: &[i64]) -> Result<Vec<SectionPeriod>, StoreError> {
        let mut query = self.tx.prepare_cached(
            "SELECT a.import_id, i.state, a.account, a.period_start, a.period_end
             FROM statement_accounts a JOIN statement_imports i ON i.id = a.import_id ORDER BY a.id",
        )?;
        let rows = query
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(import, state, account, start, end)| {
                Ok(SectionPeriod {
                    account,
                    start: day(&start)?,
                    end: day(&end)?,
                    complete: state == "complete" || finishing.contains(&import),
                })
            })
            .collect()
    }

    pub(super) fn finish_writes(
        &self,
        completed: &[i64],
        matched_payments: &[i64],
        now: &str,
    ) -> Result<(), StoreError> {
        let mut complete = self.tx.prepare_cached(
            "UPDATE statement_imports SET state = 'complete', completed_at = ?2 WHERE id = ?1 AND state = 'loading'",
        )?;
        for id in completed {
            complete.execute(params![id, now])?;
        }
        let mut resolve = self.tx.prepare_cached(
            "UPDATE statement_discrepancies SET state = 'resolved', resolution = 'matched', resolved_at = ?2
             WHERE payment_id = ?1 AND kind = 'notice_without_line' AND state = 'open'",
        )?;
        for id in matched_payments {
            resolve.execute(params![id, now])?;
        }
        Ok(())
    }
}

/// A stored `YYYY-MM-DD` day.
fn day(text: &str) -> Result<time::Date, StoreError> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| StoreError::Corrupt(format!("day {text}")))
}

/// The date of a `YYYY-MM-DD` column.
fn stored_date(text: &str) -> Result<time::Date, StoreError> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| StoreError::Corrupt(format!("statement date {text}")))
}

impl SqliteBatch<'_> {
    /// Each line with its match and its discrepancy, by its primary key.
    pub(super) fn statement_apply_targets(&self, line_ids: &[i64]) -> Result<HashMap<i64, ApplyTarget>, StoreError> {
        let mut find = self.tx.prepare_cached(
            "SELECT l.account, l.fingerprint, l.occurrence, l.direction, l.amount, l.currency, l.payer_inn,
                    l.document_number, l.document_date,
                    EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id), d.id, d.kind, d.state,
                    l.bank_ref, l.end_to_end_id
             FROM statement_lines l LEFT JOIN statement_discrepancies d ON d.line_id = l.id
             WHERE l.id = ?1",
        )?;
        let mut targets = HashMap::with_capacity(line_ids.len());
        for id in line_ids {
            let row = find
                .query_row(params![id], |row| {
                    Ok((
                        (row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, i64>(2)?),
                        (row.get::<_, String>(3)?, row.get::<_, i64>(4)?, row.get::<_, String>(5)?),
                        (row.get::<_, Option<String>>(6)?, row.get::<_, String>(7)?, row.get::<_, String>(8)?),
                        row.get::<_, bool>(9)?,
                        (
                            row.get::<_, Option<i64>>(10)?,
                            row.get::<_, Option<String>>(11)?,
                            row.get::<_, Option<String>>(12)?,
                        ),
                        [row.get::<_, Option<String>>(13)?, row.get::<_, Option<String>>(14)?],
                    ))
                })
                .optional()?;
            let Some((
                (account, fingerprint, occurrence),
                (direction, amount, currency),
                (inn, number, date),
                matched,
                d,
                bank_ids,
            )) = row
            else {
                continue;
            };
            let fingerprint: [u8; 32] =
                fingerprint.try_into().map_err(|_| StoreError::Corrupt(format!("line {id} fingerprint")))?;
            let discrepancy = match d {
                (Some(d_id), Some(kind), Some(state)) => Some((d_id, kind, state)),
                _ => None,
            };
            targets.insert(
                *id,
                ApplyTarget {
                    account,
                    fingerprint,
                    occurrence,
                    credit: direction == "credit",
                    amount,
                    currency,
                    payer_inn: inn,
                    document_number: number,
                    document_date: stored_date(&date)?,
                    matched,
                    discrepancy,
                    bank_ids: bank_ids.into_iter().flatten().collect(),
                },
            );
        }
        Ok(targets)
    }

    /// One statement per document, probing `bank_payments_by_document` for the statement-sourced applied
    /// payments with its (payer INN, number) and `statement_lines_by_document` for the unmatched credit lines
    /// with its (document date, payer INN, number). Two documents of one payer and number (two dates) read
    /// the same payments: each is kept once.
    pub(super) fn statement_counterparts(
        &self,
        documents: &[NoticeDocument],
    ) -> Result<Vec<NoticeCounterpart>, StoreError> {
        let mut find = self.tx.prepare_cached(
            "SELECT 1, p.id, p.operation_id, p.amount, p.currency, p.document_date,
                    EXISTS (SELECT 1 FROM bank_payments d WHERE d.duplicate_of = p.id AND d.late_match = 'key'),
                    EXISTS (SELECT 1 FROM bank_payments d WHERE d.duplicate_of = p.id), NULL
             FROM bank_payments p
             WHERE p.payer_inn = ?1 AND p.document_number = ?2 AND p.source = 'statement' AND p.status = 'applied'
             UNION ALL
             SELECT 2, l.id, NULL, l.amount, l.currency, l.document_date, 0, 0,
                    (SELECT d.id FROM statement_discrepancies d WHERE d.line_id = l.id AND d.state = 'open')
             FROM statement_lines l
             WHERE l.document_date = ?3 AND l.payer_inn = ?1 AND l.document_number = ?2 AND l.direction = 'credit'
               AND l.nature = 'payment' AND NOT EXISTS (SELECT 1 FROM statement_matches m WHERE m.line_id = l.id)",
        )?;
        let mut found = Vec::new();
        let mut payments: HashSet<i64> = HashSet::new();
        for document in documents {
            let (payer_inn, number) = (document.payer_inn.as_str(), document.number.as_str());
            let rows = find
                .query_map(params![payer_inn, number, sqlite_date(document.date)], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<Vec<u8>>>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, bool>(6)?,
                        row.get::<_, bool>(7)?,
                        row.get::<_, Option<i64>>(8)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            for (tag, id, operation, amount, currency, date, named_by_key, named, open_discrepancy) in rows {
                let (payer_inn, document_number) = (payer_inn.to_owned(), number.to_owned());
                match operation {
                    Some(operation) if tag == 1 => {
                        if payments.insert(id) {
                            found.push(NoticeCounterpart::StatementPayment {
                                id,
                                operation_id: super::uuid_from(&operation)?,
                                amount,
                                currency,
                                payer_inn,
                                document_number,
                                document_date: super::parse_time(&date)?,
                                named_by_key,
                                named,
                            });
                        }
                    }
                    _ => found.push(NoticeCounterpart::OpenLine {
                        id,
                        amount,
                        currency,
                        payer_inn,
                        document_number,
                        document_date: stored_date(&date)?,
                        open_discrepancy,
                    }),
                }
            }
        }
        Ok(found)
    }

    /// Inserts the payments credited from statement lines, then marks late notices `duplicate` of them (or of
    /// earlier ones) and matches lines to payments named by operation id.
    pub(super) fn write_statement_payments(
        &self,
        payments: &[StatementPayment],
        late: &[LateNotice],
        matches: &[MatchByOperation],
        now: &str,
    ) -> Result<(), StoreError> {
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO bank_payments (operation_id, amount, currency, payer_inn, document_number, document_date,
                                        status, applied_at, transaction_id, received_at, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'applied', ?7, ?8, ?7, 'statement')",
        )?;
        for payment in payments {
            let notice = &payment.notice;
            insert.execute(params![
                notice.operation_id.0.as_bytes(),
                notice.amount.minor(),
                notice.amount.currency().code(),
                notice.payer_inn.as_str(),
                notice.document_number,
                crate::timefmt::sqlite_text(notice.document_date),
                now,
                payment.transaction_id.as_bytes().as_slice(),
            ])?;
        }
        let mut duplicate = self.tx.prepare_cached(
            "UPDATE bank_payments SET status = 'duplicate', transaction_id = NULL, applied_at = NULL,
                 duplicate_of = (SELECT s.id FROM bank_payments s WHERE s.operation_id = ?2), late_match = ?3
             WHERE operation_id = ?1",
        )?;
        for notice in late {
            let (notice_id, original) = (notice.operation_id.as_bytes(), notice.duplicate_of.as_bytes());
            duplicate.execute(params![notice_id, original, notice.late_match])?;
        }
        let mut matched = self.tx.prepare_cached(
            "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at, matched_by)
             SELECT ?1, p.id, ?3, ?4, ?5 FROM bank_payments p WHERE p.operation_id = ?2",
        )?;
        for m in matches {
            if matched.execute(params![m.line_id, m.operation_id.as_bytes(), m.rule, now, m.by])? != 1 {
                return Err(StoreError::Corrupt(format!("no payment {} to match line {}", m.operation_id, m.line_id)));
            }
        }
        Ok(())
    }
}

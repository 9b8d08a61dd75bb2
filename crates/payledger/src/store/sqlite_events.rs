//! The outbox on SQLite: a batch's events and their deliveries, and the delivery workers' rounds (records and
//! claims), written on the ledger writer's connection.

use std::collections::HashSet;

use rusqlite::params;
use time::OffsetDateTime;

use super::StoreError;
use super::batch::{NewEvent, OutboxTx, WantedEvents, wants};
use super::event_rows::{AttemptRecord, ClaimedDelivery, EndpointVerdict, json_list, without_nul};
use super::sqlite_writer::{SqliteBatch, parse_time};
use crate::timefmt::sqlite_text;

impl SqliteBatch<'_> {
    /// Writes the batch's events some enabled endpoint wants, numbered after every event ever written
    /// (AUTOINCREMENT), and one pending delivery of each to every such endpoint. An event nobody wants is not
    /// stored: an endpoint gets only what happens after it is registered. The batch holds SQLite's one write
    /// lock, so no endpoint changes and no other event is numbered meanwhile.
    pub(super) fn write_events(&self, events: &[NewEvent], now: &str) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut subscriptions: Vec<(String, String)> = Vec::new();
        {
            let mut statement = self.tx.prepare_cached(
                "SELECT s.endpoint_id, s.event_type FROM webhook_subscriptions s
                 JOIN webhook_endpoints e ON e.id = s.endpoint_id WHERE e.enabled = 1
                 ORDER BY s.endpoint_id",
            )?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            for row in rows {
                subscriptions.push(row?);
            }
        }
        if subscriptions.is_empty() {
            return Ok(());
        }
        let mut insert_event =
            self.tx.prepare_cached("INSERT INTO events (id, type, data, created_at) VALUES (?1, ?2, ?3, ?4)")?;
        let mut insert_delivery = self.tx.prepare_cached(
            "INSERT INTO event_deliveries (event_seq, endpoint_id, status, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?3, ?3)",
        )?;
        for event in events {
            // Sorted by endpoint: one delivery per endpoint even when it names the type and `*`.
            let mut wanting: Vec<&str> = Vec::new();
            for (endpoint, subscribed) in &subscriptions {
                if wanting.last() != Some(&endpoint.as_str()) && wants(subscribed, event.kind) {
                    wanting.push(endpoint);
                }
            }
            if wanting.is_empty() {
                continue;
            }
            insert_event.execute(params![event.id, event.kind, event.data, now])?;
            let seq = self.tx.last_insert_rowid();
            for endpoint in wanting {
                insert_delivery.execute(params![seq, endpoint, now])?;
            }
        }
        Ok(())
    }
}

impl OutboxTx for SqliteBatch<'_> {
    async fn wanted_events(&mut self) -> Result<WantedEvents, StoreError> {
        let mut statement = self.tx.prepare_cached(
            "SELECT DISTINCT s.event_type FROM webhook_subscriptions s
             JOIN webhook_endpoints e ON e.id = s.endpoint_id WHERE e.enabled = 1",
        )?;
        let subscriptions = statement.query_map([], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(WantedEvents::new(subscriptions))
    }

    async fn record_attempts(
        &mut self,
        records: &[(&str, &AttemptRecord)],
        now: OffsetDateTime,
    ) -> Result<HashSet<(i64, OffsetDateTime)>, StoreError> {
        let now_text = sqlite_text(now);
        let mut update = self.tx.prepare_cached(
            "UPDATE event_deliveries SET status = ?3, next_attempt_at = COALESCE(?4, next_attempt_at),
                attempts = CASE WHEN ?5 THEN attempts ELSE attempts - 1 END,
                last_status_code = CASE WHEN ?5 THEN ?6 ELSE last_status_code END,
                last_error = CASE WHEN ?5 THEN ?7 ELSE last_error END,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = ?8
             WHERE id = ?1 AND lease_owner = ?2 AND lease_expires_at = ?9 AND status = 'pending'",
        )?;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, duration_ms, response, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut held = HashSet::with_capacity(records.len());
        for (owner, record) in records {
            let (status, wait, counted) = record.end.as_stored();
            let next = wait.map(|wait| sqlite_text(now + wait));
            let (error, response) = (without_nul(record.error.as_deref()), without_nul(record.response.as_deref()));
            // A worker whose lease expired (another worker, or a later claim of its own, took the delivery
            // over) records nothing: the lease it claimed with must still be the delivery's.
            let lease = sqlite_text(record.lease);
            let code = record.status_code;
            let changed = update.execute(params![
                record.delivery_id,
                owner,
                status,
                next,
                counted,
                code,
                error,
                now_text,
                lease
            ])?;
            if changed == 1 {
                held.insert((record.delivery_id, record.lease));
                if counted {
                    insert.execute(params![record.delivery_id, now_text, code, record.duration_ms, response, error])?;
                }
            }
        }
        Ok(held)
    }

    async fn judge_endpoint(
        &mut self,
        endpoint: &str,
        verdict: EndpointVerdict,
        now: OffsetDateTime,
        failing_before: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = sqlite_text(now);
        // Written only when it changes, so that a healthy endpoint's row is not rewritten by every round.
        if verdict.succeeded {
            self.tx
                .prepare_cached(
                    "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
                )?
                .execute(params![endpoint])?;
        } else {
            self.tx
                .prepare_cached(
                    "UPDATE webhook_endpoints SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
                )?
                .execute(params![endpoint, now])?;
        }
        let Some(reason) = verdict.disable_reason() else {
            return Ok(false);
        };
        let off = self
            .tx
            .prepare_cached(
                "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = ?2, updated_at = ?3
                 WHERE id = ?1 AND enabled AND (?4 OR failing_since < ?5)",
            )?
            .execute(params![endpoint, reason, now, verdict.gone, sqlite_text(failing_before)])?
            == 1;
        if off {
            self.write_audit(&[EndpointVerdict::disable_audit(endpoint, reason)], &now)?;
        }
        Ok(off)
    }

    async fn claim_deliveries(
        &mut self,
        owner: &str,
        now: OffsetDateTime,
        lease: OffsetDateTime,
        limit: i64,
        excluding: &[String],
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let (now, lease_text) = (sqlite_text(now), sqlite_text(lease));
        self.tx
            .prepare_cached(
                "UPDATE event_deliveries SET lease_owner = ?1, lease_expires_at = ?2, attempts = attempts + 1,
                    updated_at = ?3
                 WHERE id IN (SELECT d.id FROM event_deliveries d
                              JOIN webhook_endpoints p ON p.id = d.endpoint_id AND p.enabled
                              WHERE d.status = 'pending' AND d.next_attempt_at <= ?3
                                AND (d.lease_expires_at IS NULL OR d.lease_expires_at < ?3)
                                AND d.endpoint_id NOT IN (SELECT value FROM json_each(?5))
                              ORDER BY d.next_attempt_at, d.id LIMIT ?4)",
            )?
            .execute(params![owner, lease_text, now, limit, json_list(excluding)])?;
        let mut statement = self.tx.prepare_cached(
            "SELECT d.id, d.attempts, e.seq, e.id, e.type, e.data, e.created_at, p.id, p.url, p.secret,
                p.previous_secret, p.previous_secret_until, p.rate_limit_per_second
             FROM event_deliveries d JOIN events e ON e.seq = d.event_seq
             JOIN webhook_endpoints p ON p.id = d.endpoint_id
             WHERE d.lease_owner = ?1 AND d.lease_expires_at = ?2 AND d.status = 'pending'
             ORDER BY d.id",
        )?;
        let mut rows = statement.query(params![owner, lease_text])?;
        let mut claimed = Vec::new();
        while let Some(row) = rows.next()? {
            let created_at: String = row.get(6)?;
            let previous_until: Option<String> = row.get(11)?;
            claimed.push(ClaimedDelivery {
                id: row.get(0)?,
                attempts: row.get(1)?,
                event_seq: row.get(2)?,
                event_id: row.get(3)?,
                event_type: row.get(4)?,
                event_data: row.get(5)?,
                event_created_at: parse_time(&created_at)?,
                endpoint_id: row.get(7)?,
                url: row.get(8)?,
                secret: row.get(9)?,
                previous_secret: row.get(10)?,
                previous_secret_until: previous_until.as_deref().map(parse_time).transpose()?,
                rate_limit_per_second: row.get(12)?,
                lease_expires_at: lease,
            });
        }
        Ok(claimed)
    }
}

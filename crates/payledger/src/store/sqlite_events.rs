//! The outbox on SQLite: a batch's events and their deliveries, written on the ledger writer's connection.

use rusqlite::params;

use super::StoreError;
use super::batch::{NewEvent, wants};
use super::sqlite_writer::SqliteBatch;

impl SqliteBatch<'_> {
    /// Writes the batch's events, numbered after the last one, and one pending delivery of each to every
    /// enabled endpoint that wants its type. The batch holds SQLite's one write lock, so no endpoint changes and
    /// no other event is numbered meanwhile.
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
        let last: i64 =
            self.tx.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?.query_row([], |row| row.get(0))?;
        let mut insert_event = self
            .tx
            .prepare_cached("INSERT INTO events (seq, id, type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut insert_delivery = self.tx.prepare_cached(
            "INSERT INTO event_deliveries (event_seq, endpoint_id, status, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?3, ?3)",
        )?;
        for (seq, event) in (last + 1..).zip(events) {
            insert_event.execute(params![seq, event.id, event.kind, event.data, now])?;
            let mut previous: Option<&str> = None;
            for (endpoint, subscribed) in &subscriptions {
                // Sorted by endpoint: one delivery per endpoint even when it names the type and `*`.
                if previous != Some(endpoint.as_str()) && wants(subscribed, event.kind) {
                    insert_delivery.execute(params![seq, endpoint, now])?;
                    previous = Some(endpoint.as_str());
                }
            }
        }
        Ok(())
    }
}

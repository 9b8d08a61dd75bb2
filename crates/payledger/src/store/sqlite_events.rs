//! The outbox on SQLite: a batch's events and their deliveries, written on the ledger writer's connection.

use rusqlite::params;

use super::StoreError;
use super::batch::{NewEvent, wants};
use super::sqlite_writer::SqliteBatch;

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

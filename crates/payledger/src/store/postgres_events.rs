//! The outbox on PostgreSQL: a batch's events and their deliveries, one statement per batch.

use time::OffsetDateTime;

use super::StoreError;
use super::batch::{NAMED_ONLY, NewEvent};
use super::postgres_writer::PgBatch;

impl PgBatch {
    /// Writes the batch's events some enabled endpoint wants (an event nobody wants is not stored) and one pending
    /// delivery of each to every enabled endpoint that wants its type
    /// (`batch::wants`, in SQL). Their numbers come from `events_seq` here, after the batch took the locks of
    /// the accounts and payouts they report, so each change of a resource gets a larger number than the one
    /// before, whichever instance commits it. The events are numbered in the plan's order.
    pub(super) async fn write_events(&mut self, events: &[NewEvent], now: OffsetDateTime) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // `wanted` keeps the plan's order; only an event some enabled endpoint wants is numbered and stored.
        sqlx::query(
            "WITH wanted AS (
                 SELECT i, t, d, n FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(i, t, d, n)
                 WHERE EXISTS (SELECT 1 FROM webhook_subscriptions s JOIN webhook_endpoints p ON p.id = s.endpoint_id
                               WHERE p.enabled AND (s.event_type = u.t
                                     OR (s.event_type = '*' AND u.t <> ALL($5::text[]))))
             ),
             numbered AS (
                 SELECT nextval('events_seq') AS seq, i, t, d FROM (SELECT * FROM wanted ORDER BY n) AS ordered
             ),
             written AS (
                 INSERT INTO events (seq, id, type, data, created_at) SELECT seq, i, t, d, $4 FROM numbered
             )
             INSERT INTO event_deliveries (event_seq, endpoint_id, status, next_attempt_at, created_at, updated_at)
             SELECT DISTINCT e.seq, s.endpoint_id, 'pending', $4::timestamptz, $4::timestamptz, $4::timestamptz
             FROM numbered e
             JOIN webhook_subscriptions s
               ON s.event_type = e.t OR (s.event_type = '*' AND e.t <> ALL($5::text[]))
             JOIN webhook_endpoints p ON p.id = s.endpoint_id AND p.enabled",
        )
        .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.kind).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>())
        .bind(now)
        .bind(NAMED_ONLY.to_vec())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

//! The outbox on PostgreSQL: a batch's events and their deliveries (one statement per batch), and the delivery
//! workers' rounds (records and claims).

use time::OffsetDateTime;

use std::collections::HashSet;

use sqlx::Row;

use super::StoreError;
use super::batch::{BatchTx, NAMED_ONLY, NewEvent, OutboxTx, WantedEvents};
use super::event_rows::{AttemptRecord, ClaimedDelivery, DeliveryRound, EndpointVerdict, RoundOutcome, without_nul};
use super::postgres::PgStore;
use super::postgres_writer::PgBatch;

impl PgStore {
    /// Runs a delivery worker's round in a transaction of its own, dated by the database's clock
    /// (`delivery_rounds.rs` says why PostgreSQL's rounds stay out of the ledger's batches).
    pub(super) async fn delivery_round(&self, round: &DeliveryRound) -> Result<RoundOutcome, StoreError> {
        let mut batch = PgBatch::begin(&self.pool, false).await?;
        let now = crate::timefmt::to_micros(batch.clock().await?);
        let mut outcomes = super::delivery_rounds::run_rounds(&mut batch, &[round], now).await?;
        batch.commit().await?;
        Ok(outcomes.pop().unwrap_or_default())
    }
}

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

impl OutboxTx for PgBatch {
    async fn wanted_events(&mut self) -> Result<WantedEvents, StoreError> {
        let subscriptions: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT s.event_type FROM webhook_subscriptions s
             JOIN webhook_endpoints p ON p.id = s.endpoint_id WHERE p.enabled",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(WantedEvents::new(subscriptions))
    }

    async fn record_attempts(
        &mut self,
        records: &[(&str, &AttemptRecord)],
        now: OffsetDateTime,
    ) -> Result<HashSet<(i64, OffsetDateTime)>, StoreError> {
        let ids: Vec<i64> = records.iter().map(|(_, record)| record.delivery_id).collect();
        // Locked in ascending id first (an UPDATE joined to a list locks in no set order), so two batches
        // recording some of the same deliveries cannot wait on each other in a cycle.
        sqlx::query("SELECT id FROM event_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *self.tx)
            .await?;
        let ends: Vec<_> = records.iter().map(|(_, record)| record.end.as_stored()).collect();
        let errors: Vec<Option<String>> = records.iter().map(|(_, r)| without_nul(r.error.as_deref())).collect();
        // A worker whose lease expired (another worker, or a later claim of its own, took the delivery over)
        // records nothing: the lease it claimed with must still be the delivery's.
        let held: Vec<(i64, OffsetDateTime)> = sqlx::query_as(
            "UPDATE event_deliveries d SET status = u.status, next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                attempts = CASE WHEN u.counted THEN d.attempts ELSE d.attempts - 1 END,
                last_status_code = CASE WHEN u.counted THEN u.code ELSE d.last_status_code END,
                last_error = CASE WHEN u.counted THEN u.error ELSE d.last_error END,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = $9
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[], $6::int[], $7::text[],
                         $8::timestamptz[]) AS u(id, owner, status, next_at, counted, code, error, lease)
             WHERE d.id = u.id AND d.lease_owner = u.owner AND d.lease_expires_at = u.lease AND d.status = 'pending'
             RETURNING d.id, u.lease",
        )
        .bind(&ids)
        .bind(records.iter().map(|(owner, _)| *owner).collect::<Vec<_>>())
        .bind(ends.iter().map(|(status, _, _)| *status).collect::<Vec<_>>())
        .bind(ends.iter().map(|(_, wait, _)| wait.map(|wait| now + wait)).collect::<Vec<_>>())
        .bind(ends.iter().map(|(_, _, counted)| *counted).collect::<Vec<_>>())
        .bind(records.iter().map(|(_, record)| record.status_code).collect::<Vec<_>>())
        .bind(&errors)
        .bind(records.iter().map(|(_, record)| record.lease).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(&mut *self.tx)
        .await?;
        let held: HashSet<(i64, OffsetDateTime)> = held.into_iter().collect();
        let logged: Vec<usize> = (0..records.len())
            .filter(|&i| ends[i].2 && held.contains(&(records[i].1.delivery_id, records[i].1.lease)))
            .collect();
        if !logged.is_empty() {
            sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, duration_ms, response, error)
                 SELECT u.id, $2, u.code, u.duration, u.response, u.error
                 FROM UNNEST($1::bigint[], $3::int[], $4::bigint[], $5::text[], $6::text[])
                      AS u(id, code, duration, response, error)",
            )
            .bind(logged.iter().map(|&i| records[i].1.delivery_id).collect::<Vec<_>>())
            .bind(now)
            .bind(logged.iter().map(|&i| records[i].1.status_code).collect::<Vec<_>>())
            .bind(logged.iter().map(|&i| records[i].1.duration_ms).collect::<Vec<_>>())
            .bind(logged.iter().map(|&i| without_nul(records[i].1.response.as_deref())).collect::<Vec<_>>())
            .bind(logged.iter().map(|&i| errors[i].clone()).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
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
        // Written only when it changes, so that workers sending to one healthy endpoint do not queue on its row.
        if verdict.succeeded {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .bind(endpoint)
            .execute(&mut *self.tx)
            .await?;
        } else {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL")
                .bind(endpoint)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
        }
        let Some(reason) = verdict.disable_reason() else {
            return Ok(false);
        };
        let off = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, updated_at = $3
             WHERE id = $1 AND enabled AND ($4 OR failing_since < $5)",
        )
        .bind(endpoint)
        .bind(reason)
        .bind(now)
        .bind(verdict.gone)
        .bind(failing_before)
        .execute(&mut *self.tx)
        .await?
        .rows_affected()
            == 1;
        if off {
            self.write_audit(&[EndpointVerdict::disable_audit(endpoint, reason)], now).await?;
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
        // One statement: the claimed rows come back with their event and endpoint.
        let rows = sqlx::query(
            "WITH claimed AS (
                 UPDATE event_deliveries SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1,
                     updated_at = $3
                 WHERE id IN (SELECT d.id FROM event_deliveries d
                              JOIN webhook_endpoints p ON p.id = d.endpoint_id AND p.enabled
                              WHERE d.status = 'pending' AND d.next_attempt_at <= $3
                                AND (d.lease_expires_at IS NULL OR d.lease_expires_at < $3)
                                AND d.endpoint_id <> ALL($5::text[])
                              ORDER BY d.next_attempt_at, d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED)
                 RETURNING id, attempts, event_seq, endpoint_id
             )
             SELECT c.id, c.attempts, e.seq, e.id, e.type, e.data, e.created_at, p.id, p.url, p.secret,
                 p.previous_secret, p.previous_secret_until, p.rate_limit_per_second
             FROM claimed c JOIN events e ON e.seq = c.event_seq JOIN webhook_endpoints p ON p.id = c.endpoint_id
             ORDER BY c.id",
        )
        .bind(owner)
        .bind(lease)
        .bind(now)
        .bind(limit)
        .bind(excluding)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    id: row.try_get(0)?,
                    attempts: row.try_get(1)?,
                    event_seq: row.try_get(2)?,
                    event_id: row.try_get(3)?,
                    event_type: row.try_get(4)?,
                    event_data: row.try_get(5)?,
                    event_created_at: row.try_get(6)?,
                    endpoint_id: row.try_get(7)?,
                    url: row.try_get(8)?,
                    secret: row.try_get(9)?,
                    previous_secret: row.try_get(10)?,
                    previous_secret_until: row.try_get(11)?,
                    rate_limit_per_second: row.try_get(12)?,
                    lease_expires_at: lease,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }
}

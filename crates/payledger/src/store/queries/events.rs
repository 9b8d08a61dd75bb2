//! Outbound events outside ledger batches: the endpoints (with their audit rows), the delivery queue (claims,
//! attempts, replays) and the delivery log. None of it moves money; an event itself is written by its change's
//! batch (`store/sqlite_events.rs`, `store/postgres_events.rs`), except an operator's `ping`.

use time::OffsetDateTime;

use crate::store::event_rows::{AttemptRow, DeliveryRow, EndpointChange, EndpointRow};
use crate::store::{AuditEntry, Store, StoreError};

/// An endpoint from the columns `id, url, description, enabled, disabled_reason, secret, previous_secret,
/// previous_secret_until, rate_limit_per_second, failing_since, created_at, updated_at`, without its event types.
macro_rules! endpoint_from_row {
    ($row:expr) => {
        $crate::store::event_rows::EndpointRow {
            id: $row.try_get(0)?,
            url: $row.try_get(1)?,
            description: $row.try_get(2)?,
            enabled: $row.try_get(3)?,
            disabled_reason: $row.try_get(4)?,
            secret: $row.try_get(5)?,
            previous_secret: $row.try_get(6)?,
            previous_secret_until: $row.try_get(7)?,
            rate_limit_per_second: $row.try_get(8)?,
            failing_since: $row.try_get(9)?,
            event_types: Vec::new(),
            created_at: $row.try_get(10)?,
            updated_at: $row.try_get(11)?,
        }
    };
}
pub(crate) use endpoint_from_row;

/// The event queries, implemented once for each store: `$reader` and `$writer` name its pools, `$begin_write`
/// starts a write transaction, `$skip_locked` is PostgreSQL's `FOR UPDATE … SKIP LOCKED` (SQLite has one
/// writer), `$next_seq` numbers a new event outside a batch, and `$bind_time` turns a time into what the
/// backend binds.
macro_rules! event_queries {
    (
        $store:ty,
        reader: $reader:ident,
        writer: $writer:ident,
        begin_write: $begin_write:literal,
        skip_locked: $skip_locked:literal,
        next_seq: $next_seq:literal,
        bind_time: $bind_time:path
    ) => {
        impl $store {
            pub(in crate::store) async fn endpoints(
                &self,
                id: Option<&str>,
            ) -> Result<Vec<$crate::store::event_rows::EndpointRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let sql = "SELECT id, url, description, enabled, disabled_reason, secret, previous_secret,
                        previous_secret_until, rate_limit_per_second, failing_since, created_at, updated_at
                     FROM webhook_endpoints WHERE ($1 IS NULL OR id = $1) ORDER BY created_at, id LIMIT 1000";
                let rows = sqlx::query(sql).bind(id).fetch_all(&self.$reader).await?;
                let mut endpoints = rows
                    .iter()
                    .map(|row| Ok($crate::store::queries::events::endpoint_from_row!(row)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let types: Vec<(String, String)> = sqlx::query_as(
                    "SELECT endpoint_id, event_type FROM webhook_subscriptions WHERE ($1 IS NULL OR endpoint_id = $1)
                     ORDER BY endpoint_id, event_type",
                )
                .bind(id)
                .fetch_all(&self.$reader)
                .await?;
                for endpoint in &mut endpoints {
                    endpoint.event_types =
                        types.iter().filter(|(owner, _)| *owner == endpoint.id).map(|(_, kind)| kind.clone()).collect();
                }
                Ok(endpoints)
            }

            pub(in crate::store) async fn insert_endpoint(
                &self,
                row: &$crate::store::event_rows::EndpointRow,
                audit: &$crate::store::AuditEntry,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.$writer.begin_with($begin_write).await?;
                sqlx::query(
                    "INSERT INTO webhook_endpoints (id, url, description, enabled, disabled_reason, secret,
                        rate_limit_per_second, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $7)",
                )
                .bind(&row.id)
                .bind(&row.url)
                .bind(&row.description)
                .bind(row.enabled)
                .bind(&row.secret)
                .bind(row.rate_limit_per_second)
                .bind($bind_time(row.created_at))
                .execute(&mut *tx)
                .await?;
                Self::write_subscriptions(&mut tx, &row.id, &row.event_types).await?;
                Self::write_audit(&mut *tx, audit, row.created_at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn write_subscriptions(
                tx: &mut sqlx::Transaction<'static, <$store as $crate::store::Backend>::Db>,
                id: &str,
                types: &[String],
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(id).execute(&mut **tx).await?;
                for kind in types {
                    sqlx::query("INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES ($1, $2)")
                        .bind(id)
                        .bind(kind)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            pub(in crate::store) async fn update_endpoint(
                &self,
                id: &str,
                change: &$crate::store::event_rows::EndpointChange,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.$writer.begin_with($begin_write).await?;
                let (enable, reason) = match &change.enabled {
                    Some((enabled, reason)) => (Some(*enabled), reason.clone()),
                    None => (None, None),
                };
                let (secret, previous_until) = match &change.rotation {
                    Some((secret, until)) => (Some(secret.as_str()), *until),
                    None => (None, None),
                };
                let updated = sqlx::query(
                    "UPDATE webhook_endpoints SET url = COALESCE($2, url), description = COALESCE($3, description),
                        enabled = COALESCE($4, enabled),
                        disabled_reason = CASE WHEN $4 IS NULL THEN disabled_reason WHEN $4 THEN NULL ELSE $5 END,
                        failing_since = CASE WHEN $4 THEN NULL ELSE failing_since END,
                        rate_limit_per_second = CASE WHEN $6 THEN $7 ELSE rate_limit_per_second END,
                        secret = COALESCE($8, secret),
                        previous_secret = CASE WHEN $8 IS NULL THEN previous_secret WHEN $9 IS NULL THEN NULL ELSE secret END,
                        previous_secret_until = CASE WHEN $8 IS NULL THEN previous_secret_until ELSE $9 END,
                        updated_at = $10
                     WHERE id = $1",
                )
                .bind(id)
                .bind(change.url.as_deref())
                .bind(change.description.as_deref())
                .bind(enable)
                .bind(reason)
                .bind(change.rate_limit_per_second.is_some())
                .bind(change.rate_limit_per_second.flatten())
                .bind(secret)
                .bind(previous_until.map($bind_time))
                .bind($bind_time(now))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !updated {
                    return Ok(false);
                }
                if let Some(types) = &change.event_types {
                    Self::write_subscriptions(&mut tx, id, types).await?;
                }
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(in crate::store) async fn delete_endpoint(
                &self,
                id: &str,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.$writer.begin_with($begin_write).await?;
                let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if !deleted {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(id).execute(&mut *tx).await?;
                // Its log stays readable; its pending deliveries are failed by the delivery workers' sweep
                // (`fail_stranded_deliveries`), outside this transaction, which locks only the endpoint.
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(in crate::store) async fn deliveries(
                &self,
                endpoint: &str,
                status: Option<&str>,
                before: Option<i64>,
                limit: i64,
            ) -> Result<Vec<$crate::store::event_rows::DeliveryRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT d.id, e.id, e.type, d.status, d.attempts, d.next_attempt_at, d.last_status_code,
                        d.last_error, e.created_at, d.updated_at
                     FROM event_deliveries d JOIN events e ON e.seq = d.event_seq
                     WHERE d.endpoint_id = $1 AND ($2 IS NULL OR d.status = $2) AND ($3 IS NULL OR d.id < $3)
                     ORDER BY d.id DESC LIMIT $4",
                )
                .bind(endpoint)
                .bind(status)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::event_rows::DeliveryRow {
                            id: row.try_get(0)?,
                            event_id: row.try_get(1)?,
                            event_type: row.try_get(2)?,
                            status: row.try_get(3)?,
                            attempts: row.try_get(4)?,
                            next_attempt_at: row.try_get(5)?,
                            last_status_code: row.try_get(6)?,
                            last_error: row.try_get(7)?,
                            created_at: row.try_get(8)?,
                            updated_at: row.try_get(9)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn delivery_attempts(
                &self,
                endpoint: &str,
                delivery: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::event_rows::AttemptRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT a.attempted_at, a.status_code, a.duration_ms, a.response, a.error
                     FROM delivery_attempts a JOIN event_deliveries d ON d.id = a.delivery_id
                     WHERE a.delivery_id = $1 AND d.endpoint_id = $2 ORDER BY a.id DESC LIMIT $3",
                )
                .bind(delivery)
                .bind(endpoint)
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::event_rows::AttemptRow {
                            attempted_at: row.try_get(0)?,
                            status_code: row.try_get(1)?,
                            duration_ms: row.try_get(2)?,
                            response: row.try_get(3)?,
                            error: row.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(Into::into)
            }

            pub(in crate::store) async fn replay_deliveries(
                &self,
                endpoint: &str,
                delivery: Option<i64>,
                since: Option<time::OffsetDateTime>,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut tx = self.$writer.begin_with($begin_write).await?;
                // One delivery in any finished state, or every failed one since a time. The schedule starts over.
                let replayed = sqlx::query(
                    "UPDATE event_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $4,
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = $4
                     WHERE endpoint_id = $1 AND status <> 'pending'
                       AND (($2 IS NOT NULL AND id = $2) OR ($2 IS NULL AND status = 'failed' AND created_at >= $3))",
                )
                .bind(endpoint)
                .bind(delivery)
                .bind(since.map($bind_time))
                .bind($bind_time(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(replayed)
            }

            pub(in crate::store) async fn prune_events(
                &self,
                before: time::OffsetDateTime,
                limit: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                use sqlx::Row;
                // The oldest events without a pending delivery, in log order; those before the cutoff time end the
                // prefix that may go. (A filter on the time in SQL would walk the whole log once nothing is old
                // enough; one still being retried is stepped over, not waited for.)
                let oldest = sqlx::query(
                    "SELECT e.seq, e.created_at FROM events e
                     WHERE NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = e.seq AND d.status = 'pending')
                     ORDER BY e.seq LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                let mut last = None;
                for row in &oldest {
                    let created_at: time::OffsetDateTime = row.try_get(1)?;
                    if created_at >= before {
                        break;
                    }
                    last = Some(row.try_get::<i64, _>(0)?);
                }
                let Some(last) = last else { return Ok(0) };
                let mut tx = self.$writer.begin_with($begin_write).await?;
                let mut pruned = sqlx::query(
                    "DELETE FROM delivery_attempts WHERE delivery_id IN (
                         SELECT id FROM event_deliveries WHERE event_seq <= $1 AND status <> 'pending')",
                )
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                pruned += sqlx::query("DELETE FROM event_deliveries WHERE event_seq <= $1 AND status <> 'pending'")
                    .bind(last)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // An event with a delivery still pending stays until it is sent or fails.
                pruned += sqlx::query(
                    "DELETE FROM events WHERE seq <= $1
                       AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_seq = events.seq)",
                )
                .bind(last)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(pruned)
            }

            pub(in crate::store) async fn fail_stranded_deliveries(
                &self,
                now: time::OffsetDateTime,
                limit: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                // A chunk at a time, and never a delivery whose attempt is in flight (leased): a worker recording
                // it locks it first, and the sweep must not wait on it (nor hold SQLite's write lock long).
                let failed = sqlx::query(concat!(
                    "UPDATE event_deliveries SET status = 'failed',
                        last_error = 'the endpoint was disabled or deleted before it was sent',
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
                     WHERE id IN (SELECT d.id FROM event_deliveries d
                                  WHERE d.status = 'pending' AND (d.lease_expires_at IS NULL OR d.lease_expires_at < $1)
                                    AND NOT EXISTS (SELECT 1 FROM webhook_endpoints p WHERE p.id = d.endpoint_id AND p.enabled)
                                  ORDER BY d.id LIMIT $2 ",
                    $skip_locked,
                    ")"
                ))
                .bind($bind_time(now))
                .bind(limit)
                .execute(&self.$writer)
                .await?
                .rows_affected();
                Ok(failed)
            }

            pub(in crate::store) async fn send_ping(
                &self,
                endpoint: &str,
                event: &$crate::store::batch::NewEvent,
                audit: &$crate::store::AuditEntry,
                now: time::OffsetDateTime,
            ) -> Result<i64, $crate::store::StoreError> {
                let mut tx = self.$writer.begin_with($begin_write).await?;
                let seq: i64 = sqlx::query_scalar(concat!(
                    "INSERT INTO events (seq, id, type, data, created_at) VALUES (",
                    $next_seq,
                    ", $1, $2, $3, $4) RETURNING seq"
                ))
                .bind(&event.id)
                .bind(event.kind)
                .bind(&event.data)
                .bind($bind_time(now))
                .fetch_one(&mut *tx)
                .await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO event_deliveries (event_seq, endpoint_id, status, next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, 'pending', $3, $3, $3) RETURNING id",
                )
                .bind(seq)
                .bind(endpoint)
                .bind($bind_time(now))
                .fetch_one(&mut *tx)
                .await?;
                Self::write_audit(&mut *tx, audit, now).await?;
                tx.commit().await?;
                Ok(id)
            }
        }
    };
}
pub(crate) use event_queries;

impl Store {
    /// Every endpoint (at most 1,000), oldest first, or the one with `id`.
    pub async fn webhook_endpoints(&self, id: Option<&str>) -> Result<Vec<EndpointRow>, StoreError> {
        on_backend!(self, store => store.endpoints(id).await)
    }

    /// Registers an endpoint with its event types, and its audit row.
    pub async fn insert_webhook_endpoint(&self, row: &EndpointRow, audit: &AuditEntry) -> Result<(), StoreError> {
        on_backend!(self, store => store.insert_endpoint(row, audit).await)
    }

    /// Changes an endpoint, with its audit row; false if there is none with `id`.
    pub async fn update_webhook_endpoint(
        &self,
        id: &str,
        change: &EndpointChange,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, store => store.update_endpoint(id, change, audit, now).await)
    }

    /// Deletes an endpoint (its pending deliveries fail; its log stays), with its audit row.
    pub async fn delete_webhook_endpoint(
        &self,
        id: &str,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        on_backend!(self, store => store.delete_endpoint(id, audit, now).await)
    }

    /// Runs a delivery worker's round (its finished attempts recorded, its next deliveries claimed) in a
    /// transaction of its own, on PostgreSQL. `None` on SQLite, where rounds ride in the ledger engine's batches
    /// instead (`WriteCommand::Deliveries`; `store/delivery_rounds.rs` says why).
    pub async fn delivery_round(
        &self,
        round: &crate::store::event_rows::DeliveryRound,
    ) -> Result<Option<crate::store::event_rows::RoundOutcome>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(store) => store.delivery_round(round).await.map(Some),
        }
    }

    /// An endpoint's deliveries, newest first, optionally in one status and before a delivery id.
    pub async fn webhook_deliveries(
        &self,
        endpoint: &str,
        status: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        on_backend!(self, store => store.deliveries(endpoint, status, before, limit).await)
    }

    /// A delivery's attempts, newest first.
    pub async fn webhook_delivery_attempts(
        &self,
        endpoint: &str,
        delivery: i64,
        limit: i64,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        on_backend!(self, store => store.delivery_attempts(endpoint, delivery, limit).await)
    }

    /// Sends again one finished delivery of an endpoint, or every failed one since a time; how many.
    pub async fn replay_webhook_deliveries(
        &self,
        endpoint: &str,
        delivery: Option<i64>,
        since: Option<OffsetDateTime>,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        on_backend!(self, store => store.replay_deliveries(endpoint, delivery, since, audit, now).await)
    }

    /// Deletes the oldest events (at most `limit`) from before `before`, with their finished deliveries and those
    /// deliveries' attempts; an event with a pending delivery stays. How many rows went.
    pub async fn prune_events(&self, before: OffsetDateTime, limit: i64) -> Result<u64, StoreError> {
        on_backend!(self, store => store.prune_events(before, limit).await)
    }

    /// Fails up to `limit` pending deliveries of endpoints that were disabled or deleted (a recovery sends them
    /// again once the endpoint is enabled), none whose attempt is in flight; how many. It locks only those
    /// deliveries, skipping any another transaction holds, so it never waits on a worker recording its attempts.
    pub async fn fail_stranded_deliveries(&self, now: OffsetDateTime, limit: i64) -> Result<u64, StoreError> {
        on_backend!(self, store => store.fail_stranded_deliveries(now, limit).await)
    }

    /// Writes a `ping` event for one endpoint, its delivery and the audit row of who asked; the delivery's id.
    pub async fn send_webhook_ping(
        &self,
        endpoint: &str,
        event: &crate::store::batch::NewEvent,
        audit: &AuditEntry,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        on_backend!(self, store => store.send_ping(endpoint, event, audit, now).await)
    }
}

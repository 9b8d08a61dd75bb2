//! The notices a PostgreSQL batch keeps for operators: conflicting and rejected ones, each table pruned to the
//! newest [`MAX_KEPT_NOTICES`].

use time::OffsetDateTime;
use uuid::Uuid;

use super::PgBatch;
use crate::store::MAX_KEPT_NOTICES;
use crate::store::StoreError;
use crate::store::batch::{ConflictRecord, RejectedNotice};

impl PgBatch {
    /// Keeps conflicting notices for operators, pruning all but the newest [`MAX_KEPT_NOTICES`].
    pub(super) async fn write_conflicts(
        &mut self,
        conflicts: &[ConflictRecord],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if !conflicts.is_empty() {
            let ids: Vec<Uuid> = conflicts.iter().map(|c| c.operation_id.0).collect();
            let fields: Vec<&str> = conflicts.iter().map(|c| c.differing_fields.as_str()).collect();
            let notices: Vec<&str> = conflicts.iter().map(|c| c.notice.as_str()).collect();
            sqlx::query(
                "INSERT INTO notice_conflicts (operation_id, differing_fields, notice, received_at)
                 SELECT i, f, n, $4 FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS c(i, f, n)",
            )
            .bind(&ids)
            .bind(&fields)
            .bind(&notices)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM notice_conflicts WHERE id <= (SELECT MAX(id) FROM notice_conflicts) - $1")
                .bind(MAX_KEPT_NOTICES)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Keeps rejected notices for operators, pruning all but the newest [`MAX_KEPT_NOTICES`].
    pub(super) async fn write_rejected(&mut self, rejected: &[RejectedNotice]) -> Result<(), StoreError> {
        if !rejected.is_empty() {
            let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
            let details: Vec<&str> = rejected.iter().map(|r| r.details.as_str()).collect();
            let bodies: Vec<&str> = rejected.iter().map(|r| r.body.as_str()).collect();
            let received: Vec<OffsetDateTime> = rejected.iter().map(|r| r.received_at).collect();
            sqlx::query(
                "INSERT INTO rejected_notices (reason, details, body, received_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[])",
            )
            .bind(&reasons)
            .bind(&details)
            .bind(&bodies)
            .bind(&received)
            .execute(&mut *self.tx)
            .await?;
            sqlx::query("DELETE FROM rejected_notices WHERE id <= (SELECT MAX(id) FROM rejected_notices) - $1")
                .bind(MAX_KEPT_NOTICES)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

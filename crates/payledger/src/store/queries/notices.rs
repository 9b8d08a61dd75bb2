//! Bank notices recorded but not yet applied (the background applier's queue).

use payledger_core::BankNotice;

use crate::store::{Store, StoreError};

/// The notice queries, implemented once for each store: `$reader` names its read pool.
macro_rules! notice_queries {
    ($store:ty, reader: $reader:ident) => {
        impl $store {
            pub(in crate::store) async fn waiting_notices(
                &self,
                limit: i64,
            ) -> Result<Vec<payledger_core::BankNotice>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT operation_id, amount, currency, payer_inn, document_number, document_date
                 FROM bank_payments WHERE status = 'received' ORDER BY id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.$reader)
                .await?;
                rows.iter()
                    .map(|row| {
                        let currency: String = row.try_get(2)?;
                        let payer_inn: String = row.try_get(3)?;
                        $crate::store::notice_from_row(
                            row.try_get(0)?,
                            row.try_get(1)?,
                            &currency,
                            &payer_inn,
                            row.try_get(4)?,
                            row.try_get(5)?,
                        )
                    })
                    .collect()
            }
        }
    };
}
pub(crate) use notice_queries;

impl Store {
    /// Up to `limit` recorded notices that wait to be applied, oldest first.
    pub async fn waiting_notices(&self, limit: i64) -> Result<Vec<BankNotice>, StoreError> {
        on_backend!(self, store => store.waiting_notices(limit).await)
    }
}

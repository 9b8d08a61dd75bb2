//! A bank's payment notice: the webhook's payload once it has been parsed into domain types.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::inn::Inn;
use crate::money::Money;

/// The longest document number we store.
pub const MAX_DOCUMENT_NUMBER_LEN: usize = 128;

/// The bank's identifier of one payment; a notice with a known id is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationId(pub Uuid);

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// A field of a notice, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoticeField {
    /// `operation_id`
    OperationId,
    /// `amount`
    Amount,
    /// `payer_inn`
    PayerInn,
    /// `document_number`
    DocumentNumber,
    /// `document_date`
    DocumentDate,
}

impl NoticeField {
    /// Every field, in wire order.
    pub const ALL: [NoticeField; 5] = [
        NoticeField::OperationId,
        NoticeField::Amount,
        NoticeField::PayerInn,
        NoticeField::DocumentNumber,
        NoticeField::DocumentDate,
    ];

    /// The JSON name of the field.
    pub fn name(self) -> &'static str {
        match self {
            NoticeField::OperationId => "operation_id",
            NoticeField::Amount => "amount",
            NoticeField::PayerInn => "payer_inn",
            NoticeField::DocumentNumber => "document_number",
            NoticeField::DocumentDate => "document_date",
        }
    }
}

/// A validated payment notice: money received from `payer_inn`, to be credited to that organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankNotice {
    /// The bank's unique id of the operation.
    pub operation_id: OperationId,
    /// The amount paid; always positive.
    pub amount: Money,
    /// The organization credited.
    pub payer_inn: Inn,
    /// The payment document's number, non-blank.
    pub document_number: String,
    /// The payment document's date as the bank states it.
    pub document_date: OffsetDateTime,
}

impl BankNotice {
    /// The fields in which `other` (a later notice with the same operation id) differs from this one.
    pub fn differences(&self, other: &BankNotice) -> Vec<NoticeField> {
        NoticeField::ALL
            .into_iter()
            .filter(|field| match field {
                NoticeField::OperationId => self.operation_id != other.operation_id,
                NoticeField::Amount => self.amount != other.amount,
                NoticeField::PayerInn => self.payer_inn != other.payer_inn,
                NoticeField::DocumentNumber => self.document_number != other.document_number,
                NoticeField::DocumentDate => self.document_date != other.document_date,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn notice(amount: i64, inn: &str) -> BankNotice {
        BankNotice {
            operation_id: OperationId(Uuid::nil()),
            amount: Money::from_minor(amount, Currency::RUB),
            payer_inn: Inn::parse(inn).unwrap_or_else(|_| panic!("bad test inn")),
            document_number: "PAY-1".into(),
            document_date: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn differences_name_exactly_the_changed_fields() {
        let original = notice(100, "1234567890");
        assert!(original.differences(&original.clone()).is_empty());
        let changed = notice(200, "0987654321");
        assert_eq!(original.differences(&changed), vec![NoticeField::Amount, NoticeField::PayerInn]);
    }
}

//! The pure domain core of payledger: money, identifiers, bank notices and the ledger's decision rules.
//!
//! Nothing here performs I/O or knows about async, HTTP or SQL. The server crate parses input into these
//! types at its edge and hands them to the ledger engine, which uses [`ledger::BalanceSheet`] to decide
//! every command against in-memory running balances before anything is written.

pub mod balances;
pub mod bank;
pub mod inn;
pub mod ledger;
pub mod money;
pub mod payout;
pub mod statement;

pub use balances::{BalanceError, BalanceOperation, OrderKey, ServiceId, UserId};
pub use bank::{BankNotice, NoticeField, OperationId};
pub use inn::Inn;
pub use ledger::{AccountBalance, AccountId, BalanceSheet, EntryDraft, HoldChange, LedgerError, Posting};
pub use money::{AmountError, Currency, MAX_AMOUNT_MINOR, Money};
pub use payout::{
    Actor, DeleteAction, DeleteError, FieldErrors, MAX_DESCRIPTION_CHARS, MaskedRecipient, NotEditable, PayoutStatus,
    RecipientDetails, RecipientInput, TransitionError, delete_action, ensure_editable, is_editable, transition,
    validate_description,
};

//! The ledger's decision rules: a transaction's postings are checked and applied to running balances.
//!
//! The ledger engine loads the touched accounts of a whole batch into a [`BalanceSheet`], applies every
//! command in order (a refused command leaves the sheet untouched), and then writes the resulting entries
//! and final balances in one database transaction. Keeping the rules here, free of I/O, lets them be
//! property-tested against a model.

use std::collections::BTreeMap;

/// The most postings one transaction may have.
pub const MAX_POSTINGS: usize = 16;

/// A ledger account's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

/// What the ledger knows about an account's money at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountBalance {
    /// The posted balance in minor units: the sum of all the account's entries.
    pub balance: i64,
    /// The part of the balance held for pending operations; never negative.
    pub held: i64,
    /// Whether the balance may go below zero (system accounts that mirror money outside the ledger).
    pub allow_negative: bool,
}

impl AccountBalance {
    /// What may still be spent: the balance less what is held.
    pub fn available(&self) -> i64 {
        self.balance.saturating_sub(self.held)
    }
}

/// One side of a transaction: a signed amount (credit > 0, debit < 0) on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    /// The account moved.
    pub account: AccountId,
    /// The signed change in minor units.
    pub amount: i64,
}

/// A change of what an account holds: a positive amount places a hold, a negative one releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldChange {
    /// The account whose money is held.
    pub account: AccountId,
    /// The signed change of its held amount, in minor units.
    pub amount: i64,
}

/// An entry ready to be written: a posting with the account's balance before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryDraft {
    /// The account moved.
    pub account: AccountId,
    /// The signed change in minor units.
    pub amount: i64,
    /// The account's balance just before this entry.
    pub balance_before: i64,
    /// The account's balance just after this entry.
    pub balance_after: i64,
}

/// Why the ledger refuses a transaction. Refusals never change a balance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The postings do not sum to zero, are empty, have a zero amount, or are too many.
    #[error("the transaction is not balanced")]
    Unbalanced,
    /// The account is not part of the batch's balance sheet (an engine bug, never client input).
    #[error("account {0:?} is not loaded")]
    UnknownAccount(AccountId),
    /// The debit would take the account below zero.
    #[error("insufficient funds: {available} available")]
    InsufficientFunds {
        /// The account short of money.
        account: AccountId,
        /// What it had available, in minor units.
        available: i64,
    },
    /// The balance would leave the `i64` range.
    #[error("the balance would overflow")]
    Overflow,
    /// A release of more than the account holds (an engine bug: holds are released by their own amount).
    #[error("account {account:?} holds only {held}")]
    HoldShort {
        /// The account.
        account: AccountId,
        /// What it holds.
        held: i64,
    },
}

/// The running balances of the accounts touched by one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceSheet {
    accounts: BTreeMap<AccountId, AccountBalance>,
}

impl BalanceSheet {
    /// An empty sheet.
    pub fn new() -> BalanceSheet {
        BalanceSheet::default()
    }

    /// Adds an account as loaded from the store.
    pub fn insert(&mut self, id: AccountId, balance: AccountBalance) {
        self.accounts.insert(id, balance);
    }

    /// The account's running balance.
    pub fn get(&self, id: AccountId) -> Option<&AccountBalance> {
        self.accounts.get(&id)
    }

    /// Every account and its running balance, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (AccountId, &AccountBalance)> {
        self.accounts.iter().map(|(id, balance)| (*id, balance))
    }

    /// Applies a balanced set of postings, or refuses it and changes nothing.
    ///
    /// Postings apply in the given order, so an account that appears twice gets two entries whose
    /// before/after balances chain.
    pub fn apply(&mut self, postings: &[Posting]) -> Result<Vec<EntryDraft>, LedgerError> {
        if postings.is_empty() {
            return Err(LedgerError::Unbalanced);
        }
        self.transact(&[], postings)
    }

    /// Changes holds and then applies postings, all or nothing.
    ///
    /// Holds apply first, in order: placing one needs that much available money; releasing one needs that
    /// much held. Then the postings apply as in [`BalanceSheet::apply`]. A capture is a release followed by
    /// a debit of the same account; a reservation or a release alone has no postings (and no entries: the
    /// balance does not change, only what of it is available).
    pub fn transact(&mut self, holds: &[HoldChange], postings: &[Posting]) -> Result<Vec<EntryDraft>, LedgerError> {
        if (holds.is_empty() && postings.is_empty())
            || postings.len() == 1
            || postings.len() > MAX_POSTINGS
            || holds.len() > MAX_POSTINGS
            || postings.iter().any(|p| p.amount == 0)
            || holds.iter().any(|h| h.amount == 0)
        {
            return Err(LedgerError::Unbalanced);
        }
        let total = postings.iter().try_fold(0i64, |sum, p| sum.checked_add(p.amount)).ok_or(LedgerError::Overflow)?;
        if total != 0 {
            return Err(LedgerError::Unbalanced);
        }
        // Decide on a scratch copy of the touched accounts so a refusal leaves the sheet as it was.
        let mut scratch: BTreeMap<AccountId, AccountBalance> = BTreeMap::new();
        let current = |scratch: &BTreeMap<AccountId, AccountBalance>, id: AccountId| match scratch.get(&id) {
            Some(balance) => Ok(*balance),
            None => self.accounts.get(&id).copied().ok_or(LedgerError::UnknownAccount(id)),
        };
        for hold in holds {
            let account = current(&scratch, hold.account)?;
            let held = account.held.checked_add(hold.amount).ok_or(LedgerError::Overflow)?;
            if held < 0 {
                return Err(LedgerError::HoldShort { account: hold.account, held: account.held });
            }
            if hold.amount > 0
                && !account.allow_negative
                && account.balance.checked_sub(held).is_none_or(|free| free < 0)
            {
                return Err(LedgerError::InsufficientFunds { account: hold.account, available: account.available() });
            }
            scratch.insert(hold.account, AccountBalance { held, ..account });
        }
        let mut entries = Vec::with_capacity(postings.len());
        for posting in postings {
            let account = current(&scratch, posting.account)?;
            let after = account.balance.checked_add(posting.amount).ok_or(LedgerError::Overflow)?;
            if posting.amount < 0
                && !account.allow_negative
                && after.checked_sub(account.held).is_none_or(|free| free < 0)
            {
                return Err(LedgerError::InsufficientFunds {
                    account: posting.account,
                    available: account.available(),
                });
            }
            entries.push(EntryDraft {
                account: posting.account,
                amount: posting.amount,
                balance_before: account.balance,
                balance_after: after,
            });
            scratch.insert(posting.account, AccountBalance { balance: after, ..account });
        }
        self.accounts.extend(scratch);
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const SOURCE: AccountId = AccountId(1);

    fn sheet(accounts: usize) -> BalanceSheet {
        let mut sheet = BalanceSheet::new();
        sheet.insert(SOURCE, AccountBalance { balance: 0, held: 0, allow_negative: true });
        for id in 2..(2 + accounts as i64) {
            sheet.insert(AccountId(id), AccountBalance { balance: 0, held: 0, allow_negative: false });
        }
        sheet
    }

    fn transfer(from: AccountId, to: AccountId, amount: i64) -> [Posting; 2] {
        [Posting { account: from, amount: -amount }, Posting { account: to, amount }]
    }

    #[test]
    fn a_credit_from_the_source_account_moves_both_balances() {
        let mut sheet = sheet(1);
        let entries = sheet.apply(&transfer(SOURCE, AccountId(2), 500)).unwrap_or_default();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1],
            EntryDraft { account: AccountId(2), amount: 500, balance_before: 0, balance_after: 500 }
        );
        assert_eq!(sheet.get(SOURCE).map(|a| a.balance), Some(-500));
    }

    #[test]
    fn an_overdraft_is_refused_and_changes_nothing() {
        let mut sheet = sheet(2);
        let _ = sheet.apply(&transfer(SOURCE, AccountId(2), 100));
        let before = sheet.clone();
        let refused = sheet.apply(&transfer(AccountId(2), AccountId(3), 101));
        assert_eq!(refused, Err(LedgerError::InsufficientFunds { account: AccountId(2), available: 100 }));
        assert_eq!(sheet, before);
    }

    #[test]
    fn held_money_cannot_be_spent() {
        let mut sheet = BalanceSheet::new();
        sheet.insert(AccountId(2), AccountBalance { balance: 100, held: 60, allow_negative: false });
        sheet.insert(AccountId(3), AccountBalance { balance: 0, held: 0, allow_negative: false });
        assert!(matches!(
            sheet.apply(&transfer(AccountId(2), AccountId(3), 41)),
            Err(LedgerError::InsufficientFunds { available: 40, .. })
        ));
        assert!(sheet.apply(&transfer(AccountId(2), AccountId(3), 40)).is_ok());
    }

    #[test]
    fn unbalanced_empty_and_unknown_postings_are_refused() {
        let mut sheet = sheet(1);
        assert_eq!(
            sheet.apply(&[Posting { account: SOURCE, amount: -1 }, Posting { account: AccountId(2), amount: 2 }]),
            Err(LedgerError::Unbalanced)
        );
        assert_eq!(sheet.apply(&[]), Err(LedgerError::Unbalanced));
        assert_eq!(sheet.apply(&transfer(SOURCE, AccountId(2), 0)), Err(LedgerError::Unbalanced));
        assert_eq!(sheet.apply(&transfer(SOURCE, AccountId(99), 1)), Err(LedgerError::UnknownAccount(AccountId(99))));
        let huge = [Posting { account: SOURCE, amount: i64::MAX }, Posting { account: SOURCE, amount: i64::MAX }];
        assert_eq!(sheet.apply(&huge), Err(LedgerError::Overflow));
    }

    /// One step of a random workload: move `amount` from account `from` to account `to` (0 = the source).
    #[derive(Debug, Clone)]
    struct Step {
        from: usize,
        to: usize,
        amount: i64,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (0usize..5, 0usize..5, 1i64..1_000).prop_map(|(from, to, amount)| Step { from, to, amount }),
            1..200,
        )
    }

    proptest! {
        /// The sheet agrees with a naive model: balances are sums of entries, every transaction nets to
        /// zero, entries chain, and no account that forbids it ever goes negative.
        #[test]
        fn the_sheet_matches_a_model_ledger(steps in steps()) {
            let mut sheet = sheet(4);
            let mut model: HashMap<AccountId, i64> = HashMap::new();
            let mut last_after: HashMap<AccountId, i64> = HashMap::new();
            let mut entry_sums: HashMap<AccountId, i64> = HashMap::new();
            for step in steps {
                let from = AccountId(step.from as i64 + 1);
                let to = AccountId(step.to as i64 + 1);
                let model_from = model.get(&from).copied().unwrap_or(0);
                let model_allows = from == SOURCE || model_from >= step.amount;
                match sheet.apply(&transfer(from, to, step.amount)) {
                    Ok(entries) => {
                        prop_assert!(model_allows);
                        prop_assert_eq!(entries.iter().map(|e| e.amount).sum::<i64>(), 0);
                        for entry in &entries {
                            prop_assert_eq!(entry.balance_before + entry.amount, entry.balance_after);
                            prop_assert_eq!(last_after.get(&entry.account).copied().unwrap_or(0), entry.balance_before);
                            last_after.insert(entry.account, entry.balance_after);
                            *entry_sums.entry(entry.account).or_default() += entry.amount;
                        }
                        *model.entry(from).or_default() -= step.amount;
                        *model.entry(to).or_default() += step.amount;
                    }
                    Err(LedgerError::InsufficientFunds { available, .. }) => {
                        prop_assert!(!model_allows);
                        prop_assert_eq!(available, model_from);
                    }
                    Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                }
            }
            let mut total = 0;
            for (id, account) in sheet.iter() {
                prop_assert_eq!(account.balance, model.get(&id).copied().unwrap_or(0));
                prop_assert_eq!(account.balance, entry_sums.get(&id).copied().unwrap_or(0));
                prop_assert!(account.allow_negative || account.balance >= 0);
                total += account.balance;
            }
            prop_assert_eq!(total, 0);
        }
    }
}

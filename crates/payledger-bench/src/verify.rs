//! The kopeck-exact balance checks.
//!
//! Webhook scenario: `final == baseline + acknowledged unique amounts`, per organization.
//! Transfers scenario: `final == baseline + initial deposit + received - sent` over applied transfers, per
//! user, nothing left reserved, and the users' total equal to what was deposited (money is conserved).
//! Payouts scenario: once the queue has drained, `completed + failed` grew by exactly the payouts created
//! (201s), and none failed.

use crate::api::UserBalance;
use crate::load::Pending;
use crate::payouts::QueueCounts;
use crate::transfers::Transfer;

/// One organization whose balance is not what the acknowledged notices add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The organization.
    pub inn: String,
    /// Balance before the load, in kopecks.
    pub baseline: i64,
    /// Balance the acknowledged notices imply, in kopecks.
    pub expected: i64,
    /// Balance the server reported after the load, in kopecks.
    pub actual: i64,
}

/// The outcome of checking every organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Organizations checked.
    pub orgs: usize,
    /// Sum of all final balances, in kopecks.
    pub total: i64,
    /// Sum of acknowledged unique amounts, in kopecks.
    pub acknowledged: i64,
    /// Organizations that failed the check.
    pub mismatches: Vec<Mismatch>,
    /// Organizations with operations of unknown outcome; they are checked against a range instead.
    pub unverified_orgs: usize,
}

impl Verification {
    /// Whether no organization failed.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Compares final balances with baselines plus acknowledged amounts, all slices indexed like `inns`.
///
/// An organization with `unresolved` operations cannot be checked exactly, since each of those may or may
/// not have been booked: its balance must then lie between "none booked" and "all booked", and it is
/// counted in [`Verification::unverified_orgs`].
pub fn verify(
    inns: &[String],
    baseline: &[i64],
    acknowledged: &[i64],
    actual: &[i64],
    unresolved: &[Pending],
) -> Verification {
    let mut in_doubt = vec![0i64; inns.len()];
    let mut has_doubt = vec![false; inns.len()];
    for op in unresolved {
        in_doubt[op.org] += op.kopecks;
        has_doubt[op.org] = true;
    }
    let mut result = Verification { orgs: inns.len(), ..Verification::default() };
    for (org, inn) in inns.iter().enumerate() {
        let expected = baseline[org] + acknowledged[org];
        result.total += actual[org];
        result.acknowledged += acknowledged[org];
        let fits = if has_doubt[org] {
            result.unverified_orgs += 1;
            (expected..=expected + in_doubt[org]).contains(&actual[org])
        } else {
            actual[org] == expected
        };
        if !fits {
            result.mismatches.push(Mismatch {
                inn: inn.clone(),
                baseline: baseline[org],
                expected,
                actual: actual[org],
            });
        }
    }
    result
}

/// One user whose balance is not what the applied transfers add up to, or who still has money reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMismatch {
    /// The user.
    pub user_id: u64,
    /// Amount plus reserved before the set-up deposit, in kopecks (0 for a new user).
    pub baseline: i64,
    /// Sum of applied transfers the user received, in kopecks.
    pub received: i64,
    /// Sum of applied transfers the user sent, in kopecks.
    pub sent: i64,
    /// `baseline + deposit + received - sent`, in kopecks.
    pub expected: i64,
    /// What the server reported after the load.
    pub actual: UserBalance,
}

/// The outcome of checking every user of the transfers scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferVerification {
    /// Users checked.
    pub users: usize,
    /// Deposited into each user by the set-up, in kopecks.
    pub deposit: i64,
    /// Sum of all final balances (amount plus reserved), in kopecks.
    pub total: i64,
    /// What the total must be: the baselines plus every deposit, in kopecks.
    pub expected_total: i64,
    /// Sum of the amounts of applied transfers, in kopecks.
    pub moved: i64,
    /// Sum of the final reserved amounts, in kopecks; should be 0.
    pub reserved: i64,
    /// Users that failed the check.
    pub mismatches: Vec<TransferMismatch>,
    /// Users with transfers of unknown outcome; they are checked against a range instead.
    pub unverified_users: usize,
}

impl TransferVerification {
    /// Whether money was conserved across the users.
    pub fn conserved(&self) -> bool {
        self.total == self.expected_total
    }

    /// Whether every user passed and money was conserved.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.conserved()
    }
}

/// What the transfers check compares, all slices indexed like `users`.
#[derive(Debug, Clone, Copy)]
pub struct TransferBooks<'a> {
    /// The users' ids.
    pub users: &'a [u64],
    /// Balances before the set-up deposit.
    pub baseline: &'a [UserBalance],
    /// The set-up deposit into each user, in kopecks.
    pub deposit: i64,
    /// Sums of applied transfers sent, in kopecks.
    pub sent: &'a [i64],
    /// Sums of applied transfers received, in kopecks.
    pub received: &'a [i64],
}

/// Compares the users' final balances with what the applied transfers imply.
///
/// A user involved in `unresolved` transfers cannot be checked exactly, since each may or may not have been
/// applied: their balance must then lie between "every unresolved transfer they sent was applied and none
/// they received" and the reverse, and they are counted in [`TransferVerification::unverified_users`].
/// Such transfers stay between tracked users, so the total is checked exactly regardless.
pub fn verify_transfers(
    books: TransferBooks<'_>,
    actual: &[UserBalance],
    unresolved: &[Transfer],
) -> TransferVerification {
    let count = books.users.len();
    let mut may_send = vec![0i64; count];
    let mut may_receive = vec![0i64; count];
    let mut has_doubt = vec![false; count];
    for transfer in unresolved {
        may_send[transfer.sender] += transfer.kopecks;
        may_receive[transfer.recipient] += transfer.kopecks;
        has_doubt[transfer.sender] = true;
        has_doubt[transfer.recipient] = true;
    }
    let mut result = TransferVerification { users: count, deposit: books.deposit, ..TransferVerification::default() };
    for (index, &user_id) in books.users.iter().enumerate() {
        let baseline = books.baseline[index].total();
        let (sent, received) = (books.sent[index], books.received[index]);
        let expected = baseline + books.deposit + received - sent;
        let found = actual[index];
        // Saturating: the server's numbers are untrusted, and an absurd one must show up as a mismatch.
        result.total = result.total.saturating_add(found.total());
        result.reserved = result.reserved.saturating_add(found.reserved);
        result.expected_total += baseline + books.deposit;
        result.moved += sent;
        let fits = if has_doubt[index] {
            result.unverified_users += 1;
            (expected - may_send[index]..=expected + may_receive[index]).contains(&found.total())
        } else {
            found.total() == expected
        };
        if !fits || found.reserved != 0 {
            result.mismatches.push(TransferMismatch { user_id, baseline, received, sent, expected, actual: found });
        }
    }
    result
}

/// The payouts scenario's check: every created payout finished, and finished well.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayoutVerification {
    /// Payouts the server answered 201 for, warm-up included.
    pub created: u64,
    /// Requests that may or may not have created a payout (503 `unconfirmed`, other answers, no answer).
    pub in_doubt: u64,
    /// The counts before the run.
    pub baseline: QueueCounts,
    /// The counts at the end.
    pub last: QueueCounts,
}

impl PayoutVerification {
    /// Payouts completed during the run.
    pub fn completed(&self) -> i64 {
        self.last.completed.saturating_sub(self.baseline.completed)
    }

    /// Payouts failed during the run.
    pub fn failed(&self) -> i64 {
        self.last.failed.saturating_sub(self.baseline.failed)
    }

    /// Payouts that reached completed or failed during the run.
    pub fn finished(&self) -> i64 {
        self.completed().saturating_add(self.failed())
    }

    /// Whether nothing was pending or processing at the end.
    pub fn drained(&self) -> bool {
        self.last.unfinished() == 0
    }

    /// The range `finished` must lie in: exactly `created`, widened by the requests in doubt and by payouts
    /// that were already unfinished before the run (they finish during it too).
    pub fn expected_finished(&self) -> (i64, i64) {
        let created = i64::try_from(self.created).unwrap_or(i64::MAX);
        let doubt = i64::try_from(self.in_doubt).unwrap_or(i64::MAX);
        let upper = created.saturating_add(doubt).saturating_add(self.baseline.unfinished().max(0));
        (created, upper)
    }

    /// Whether the finished payouts add up to the created ones.
    pub fn adds_up(&self) -> bool {
        let (lower, upper) = self.expected_finished();
        (lower..=upper).contains(&self.finished())
    }

    /// Drained, adding up, and none failed (the bench pays a card the gateway always pays).
    pub fn ok(&self) -> bool {
        self.drained() && self.adds_up() && self.failed() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn inns() -> Vec<String> {
        vec!["7707083893".into(), "7736050003".into(), "1234567894".into()]
    }

    #[test]
    fn exact_balances_pass() {
        let v = verify(&inns(), &[100, 0, 5], &[10, 0, 1], &[110, 0, 6], &[]);
        assert!(v.ok());
        assert_eq!(v.total, 116);
        assert_eq!(v.acknowledged, 11);
        assert_eq!(v.unverified_orgs, 0);
    }

    #[test]
    fn a_single_kopeck_off_is_a_mismatch() {
        let v = verify(&inns(), &[100, 0, 5], &[10, 0, 1], &[110, 1, 6], &[]);
        assert_eq!(v.mismatches, vec![Mismatch { inn: "7736050003".into(), baseline: 0, expected: 0, actual: 1 }]);
    }

    fn balance(amount: i64) -> UserBalance {
        UserBalance { amount, reserved: 0 }
    }

    fn books<'a>(baseline: &'a [UserBalance], sent: &'a [i64], received: &'a [i64]) -> TransferBooks<'a> {
        TransferBooks { users: &[7, 8, 9], baseline, deposit: 1_000, sent, received }
    }

    #[test]
    fn exact_transfer_balances_pass() {
        let zero = [UserBalance::default(); 3];
        // 7 sent 300 to 8, 8 sent 50 to 9.
        let v = verify_transfers(
            books(&zero, &[300, 50, 0], &[0, 300, 50]),
            &[balance(700), balance(1_250), balance(1_050)],
            &[],
        );
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.total, v.expected_total, v.moved, v.reserved), (3_000, 3_000, 350, 0));
        // An earlier run's money is part of the baseline, reserved included.
        let old = [balance(5), UserBalance { amount: 1, reserved: 2 }, balance(0)];
        let v = verify_transfers(books(&old, &[0; 3], &[0; 3]), &[balance(1_005), balance(1_003), balance(1_000)], &[]);
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.expected_total, 3_008);
    }

    #[test]
    fn transfer_mismatches_reserves_and_lost_money_are_caught() {
        let zero = [UserBalance::default(); 3];
        let b = books(&zero, &[300, 0, 0], &[0, 300, 0]);
        // Money moved twice: every user is off, yet the total is conserved.
        let v = verify_transfers(b, &[balance(400), balance(1_600), balance(1_000)], &[]);
        assert!(!v.ok() && v.conserved());
        assert_eq!(v.mismatches.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!(v.mismatches[0].expected, 700);
        // The right total, but some of it still reserved.
        let held = UserBalance { amount: 1_200, reserved: 100 };
        let v = verify_transfers(b, &[balance(700), held, balance(1_000)], &[]);
        assert!(!v.ok() && v.conserved());
        assert_eq!(v.reserved, 100);
        assert_eq!(v.mismatches.len(), 1);
        // A kopeck vanished.
        let v = verify_transfers(b, &[balance(699), balance(1_300), balance(1_000)], &[]);
        assert!(!v.ok() && !v.conserved());
        assert_eq!(v.total, 2_999);
    }

    #[test]
    fn unresolved_transfers_widen_the_check_to_a_range_but_not_the_total() {
        let zero = [UserBalance::default(); 3];
        let unresolved = [Transfer::new(&[7, 8, 9], 0, 1, 40)];
        let b = books(&zero, &[0; 3], &[0; 3]);
        for (first, second) in [(1_000, 1_000), (960, 1_040)] {
            let v = verify_transfers(b, &[balance(first), balance(second), balance(1_000)], &unresolved);
            assert!(v.ok(), "{first}/{second}: {v:?}");
            assert_eq!(v.unverified_users, 2);
        }
        assert!(!verify_transfers(b, &[balance(959), balance(1_041), balance(1_000)], &unresolved).ok());
        // Each one inside its range, but money appeared from nowhere.
        let v = verify_transfers(b, &[balance(1_000), balance(1_040), balance(1_000)], &unresolved);
        assert!(v.mismatches.is_empty() && !v.ok());
    }

    fn counts(pending: i64, processing: i64, completed: i64, failed: i64) -> QueueCounts {
        QueueCounts { pending, processing, completed, failed }
    }

    #[test]
    fn payouts_that_all_completed_pass() {
        let v =
            PayoutVerification { created: 500, baseline: counts(0, 0, 0, 0), last: counts(0, 0, 500, 0), in_doubt: 0 };
        assert!(v.ok() && v.drained() && v.adds_up());
        assert_eq!((v.completed(), v.failed(), v.finished(), v.expected_finished()), (500, 0, 500, (500, 500)));
        // An earlier run's payouts are part of the baseline.
        let v =
            PayoutVerification { created: 7, baseline: counts(0, 0, 90, 3), last: counts(0, 0, 97, 3), in_doubt: 0 };
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn a_payout_too_few_or_too_many_is_a_mismatch() {
        let lost = PayoutVerification { created: 500, last: counts(0, 0, 499, 0), ..PayoutVerification::default() };
        assert!(lost.drained() && !lost.adds_up() && !lost.ok());
        let extra = PayoutVerification { created: 500, last: counts(0, 0, 501, 0), ..PayoutVerification::default() };
        assert!(!extra.adds_up() && !extra.ok());
    }

    #[test]
    fn failed_payouts_and_an_undrained_queue_fail_the_check() {
        let failed = PayoutVerification { created: 10, last: counts(0, 0, 9, 1), ..PayoutVerification::default() };
        assert!(failed.adds_up() && failed.drained() && !failed.ok());
        let stuck = PayoutVerification { created: 10, last: counts(2, 1, 7, 0), ..PayoutVerification::default() };
        assert!(!stuck.drained() && !stuck.adds_up() && !stuck.ok());
    }

    #[test]
    fn payouts_in_doubt_widen_the_check_to_a_range() {
        let v = |completed| PayoutVerification {
            created: 100,
            in_doubt: 3,
            baseline: counts(1, 1, 0, 0),
            last: counts(0, 0, completed, 0),
        };
        // 100 created, up to 3 more from the requests in doubt and 2 left unfinished by an earlier run.
        assert_eq!(v(100).expected_finished(), (100, 105));
        for completed in [100, 103, 105] {
            assert!(v(completed).ok(), "{completed} should be possible");
        }
        for completed in [99, 106] {
            assert!(!v(completed).ok(), "{completed} should not be possible");
        }
    }

    #[test]
    fn unresolved_operations_widen_the_check_to_a_range() {
        let op = |org, kopecks| Pending { operation_id: uuid::Uuid::nil(), org, kopecks, body: Bytes::new() };
        let unresolved = [op(0, 7), op(0, 3)];
        for actual in [110, 113, 117, 120] {
            let v = verify(&inns(), &[100, 0, 0], &[10, 0, 0], &[actual, 0, 0], &unresolved);
            assert!(v.ok(), "{actual} should be possible");
            assert_eq!(v.unverified_orgs, 1);
        }
        for actual in [109, 121] {
            assert!(!verify(&inns(), &[100, 0, 0], &[10, 0, 0], &[actual, 0, 0], &unresolved).ok());
        }
    }
}

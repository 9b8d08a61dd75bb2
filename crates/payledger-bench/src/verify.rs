//! The kopeck-exact balance check: `final == baseline + acknowledged unique amounts`, per organization.

use crate::load::Pending;

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

    #[test]
    fn unresolved_operations_widen_the_check_to_a_range() {
        let op = |org, kopecks| Pending { org, kopecks, body: Bytes::new() };
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

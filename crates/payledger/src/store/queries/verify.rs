//! `verify`: every ledger invariant checked in one read-only snapshot, as SQL shared by both backends.

use crate::store::{Store, StoreError, VerifyReport};

/// The check, implemented once for each store: `$reader` names its read pool, `$begin_snapshot` starts a
/// read-only snapshot and `$uuid_text` is the function that prints an id in the messages.
macro_rules! verify_queries {
    ($store:ty, reader: $reader:ident, begin_snapshot: $begin_snapshot:literal, uuid_text: $uuid_text:literal) => {
        impl $store {
            pub(in crate::store) async fn verify(
                &self,
            ) -> Result<$crate::store::VerifyReport, $crate::store::StoreError> {
                // One read-only snapshot, so every check sees the same data while writers keep going.
                let mut tx = self.$reader.begin_with($begin_snapshot).await?;
                let counts = sqlx::query($crate::store::queries::verify::VERIFY_COUNTS).fetch_one(&mut *tx).await?;
                let mut report = $crate::store::VerifyReport {
                    accounts: counts.try_get(0)?,
                    transactions: counts.try_get(1)?,
                    entries: counts.try_get(2)?,
                    bank_payments: counts.try_get(3)?,
                    problems: Vec::new(),
                };
                for (name, sql) in $crate::store::queries::verify::verify_checks($uuid_text) {
                    let found: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
                    report.problems.extend(found.into_iter().map(|problem| format!("{name}: {problem}")));
                }
                tx.rollback().await?;
                Ok(report)
            }
        }
    };
}
pub(crate) use verify_queries;

impl Store {
    /// Recomputes every balance from the entries and checks every ledger invariant.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        on_backend!(self, store => store.verify().await)
    }
}

/// The invariant checks `verify` runs, as SQL valid on both backends once `UUID_TEXT(` is replaced by the
/// backend's function that prints an id. Each query returns one text column per violation found, so an
/// empty result means the invariant holds.
const VERIFY_CHECKS: &[(&str, &str)] = &[
    (
        "account balance equals the sum of its entries",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but entries sum to ' || COALESCE(s.total, 0)
         FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM entries GROUP BY account_id) s
           ON s.account_id = a.id
         WHERE a.balance <> COALESCE(s.total, 0)",
    ),
    (
        "every transaction's entries sum to zero",
        "SELECT 'transaction ' || UUID_TEXT(transaction_id) || ' entries sum to ' || SUM(amount)
         FROM entries GROUP BY transaction_id HAVING SUM(amount) <> 0",
    ),
    (
        "every entry belongs to a stored transaction and account",
        "SELECT 'entry ' || e.id || ' references a missing transaction or account' FROM entries e
         WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = e.transaction_id)
            OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)",
    ),
    (
        "every transaction has entries",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has no entries' FROM ledger_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.transaction_id = t.id)",
    ),
    (
        "entries chain: each starts where the previous one of its account ended",
        "SELECT 'entry ' || id || ' starts at ' || balance_before || ' but the previous ended at ' || COALESCE(prev, 0)
         FROM (SELECT id, balance_before, LAG(balance_after) OVER (PARTITION BY account_id ORDER BY id) AS prev
               FROM entries) chained
         WHERE balance_before <> COALESCE(prev, 0)",
    ),
    (
        "the last entry of each account ends at its balance",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but its last entry ends at ' || e.balance_after
         FROM accounts a JOIN entries e ON e.id = (SELECT MAX(id) FROM entries WHERE account_id = a.id)
         WHERE e.balance_after <> a.balance",
    ),
    (
        "no account is overdrawn unless it may be",
        "SELECT 'account ' || id || ' is overdrawn: balance ' || balance || ', held ' || held
         FROM accounts WHERE (balance - held < 0 AND NOT (allow_negative = TRUE)) OR held < 0",
    ),
    // `+e.account_id` keeps SQLite from reaching the entries through `entries_by_account`: for a hot account
    // that reads every entry of the account once per payment (quadratic: 17,653 payments to one organization
    // took 3 minutes, 44,293 over a minute for this query alone). Through the transaction it reads two entries
    // per payment (44,293 payments: 0.2 s).
    (
        "every applied bank payment credits its organization exactly its amount",
        "SELECT 'bank payment ' || UUID_TEXT(p.operation_id) || ' is applied but credited ' || COALESCE(SUM(e.amount), 0)
         FROM bank_payments p
         LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = p.payer_inn AND a.currency = p.currency
         LEFT JOIN entries e ON e.transaction_id = p.transaction_id AND +e.account_id = a.id
         WHERE p.status = 'applied'
         GROUP BY p.operation_id, p.amount HAVING COALESCE(SUM(e.amount), 0) <> p.amount",
    ),
    (
        "each account holds exactly its open reservations",
        "SELECT 'account ' || a.id || ' holds ' || a.held || ' but its open reservations total ' || COALESCE(h.total, 0)
         FROM accounts a
         LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM holds WHERE status = 'held' GROUP BY account_id) h
           ON h.account_id = a.id
         WHERE a.held <> COALESCE(h.total, 0)",
    ),
    (
        "each captured reservation names its stored capture transaction",
        "SELECT 'reservation ' || h.reference || ' is captured by a missing transaction' FROM holds h
         WHERE h.status = 'captured'
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = h.transaction_id)",
    ),
    (
        "each user's history adds up to their available and reserved money",
        "SELECT 'user ' || a.external_key || ' has ' || (a.balance - a.held) || ' available and ' || a.held
                || ' reserved but the history adds up to ' || COALESCE(s.available, 0) || ' and ' || COALESCE(s.held, 0)
         FROM accounts a
         LEFT JOIN (SELECT account_id, SUM(amount) AS available, SUM(held_change) AS held
                    FROM account_activity GROUP BY account_id) s ON s.account_id = a.id
         WHERE a.kind = 'user' AND (a.balance - a.held <> COALESCE(s.available, 0) OR a.held <> COALESCE(s.held, 0))",
    ),
    (
        "each history line that moved a balance matches its ledger entry",
        "SELECT 'history line ' || l.id || ' moved ' || (l.amount + l.held_change) || ' but its entry moved '
                || COALESCE(SUM(e.amount), 0)
         FROM account_activity l
         LEFT JOIN entries e ON e.transaction_id = l.transaction_id AND e.account_id = l.account_id
         WHERE l.transaction_id IS NOT NULL
         GROUP BY l.id, l.amount, l.held_change HAVING COALESCE(SUM(e.amount), 0) <> l.amount + l.held_change",
    ),
    (
        "each payout with a source holds, has captured or has released its amount as its status says",
        "SELECT 'payout ' || p.hold_reference || ' is ' || p.status || ' but its hold is ' || COALESCE(h.status, 'missing')
         FROM payouts p LEFT JOIN holds h ON h.reference = p.hold_reference
         WHERE p.hold_reference IS NOT NULL AND NOT (
               (p.status IN ('pending', 'processing') AND h.status = 'held' AND h.amount = p.amount)
            OR (p.status IN ('completed', 'returned') AND h.status = 'captured' AND h.amount = p.amount)
            OR (p.status IN ('failed', 'cancelled') AND h.status = 'released' AND h.amount = p.amount))",
    ),
    (
        "every bank payment transaction belongs to exactly one applied payment",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has ' || COUNT(p.id) || ' applied payments'
         FROM ledger_transactions t LEFT JOIN bank_payments p ON p.transaction_id = t.id AND p.status = 'applied'
         WHERE t.kind = 'bank_payment' GROUP BY t.id HAVING COUNT(p.id) <> 1",
    ),
];

/// The counts `verify` reports, as SQL valid on both backends.
pub const VERIFY_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM ledger_transactions),
    (SELECT COUNT(*) FROM entries), (SELECT COUNT(*) FROM bank_payments WHERE status = 'applied')";

/// How many violations of one invariant `verify` lists.
const MAX_PROBLEMS_LISTED: i64 = 20;

/// The checks with `UUID_TEXT(` replaced by the backend's id-printing function, and a bound on the rows.
pub(crate) fn verify_checks(uuid_text_function: &str) -> impl Iterator<Item = (&'static str, String)> {
    VERIFY_CHECKS.iter().map(move |(name, sql)| {
        (*name, format!("{} LIMIT {MAX_PROBLEMS_LISTED}", sql.replace("UUID_TEXT(", uuid_text_function)))
    })
}

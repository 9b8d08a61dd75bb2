//! `verify`: every ledger invariant checked in one read-only snapshot, as SQL shared by both backends.
//!
//! Each check is one query that reads its tables once, through an index or in a hash join, never a lookup per
//! row that grows with the size of an account (docs/ARCHITECTURE.md lists the plans checked at a million
//! rows on both backends).

use std::time::{Duration, Instant};

use crate::store::{CheckReport, Store, StoreError, VerifyReport};

/// Told when each check starts (its index, of [`check_count`], and its description), for a progress bar.
pub type VerifyProgress<'a> = &'a (dyn Fn(usize, &'static str) + Sync);

/// The check, implemented once for each store: `$reader` names its read pool, `$begin_snapshot` starts a
/// read-only snapshot, `$uuid_text` is the function that prints an id in the messages, `$moscow_date` the
/// expression of a stored instant's Moscow date (`{}` is the column), `$explain` what asks
/// for a plan, and `$tune` (optional) a statement run first in the snapshot.
macro_rules! verify_queries {
    (
        $store:ty,
        reader: $reader:ident,
        begin_snapshot: $begin_snapshot:literal,
        uuid_text: $uuid_text:literal,
        moscow_date: $moscow_date:literal,
        explain: $explain:literal
        $(, tune: $tune:literal)?
    ) => {
        impl $store {
            pub(in crate::store) async fn verify(
                &self,
                progress: $crate::store::queries::verify::VerifyProgress<'_>,
            ) -> Result<$crate::store::VerifyReport, $crate::store::StoreError> {
                use $crate::store::queries::verify::{CheckTimer, counts_report, verify_checks};
                // One read-only snapshot, so every check sees the same data while writers keep going.
                let mut tx = self.$reader.begin_with($begin_snapshot).await?;
                $(sqlx::query($tune).execute(&mut *tx).await?;)?
                let counts = sqlx::query($crate::store::queries::verify::VERIFY_COUNTS).fetch_one(&mut *tx).await?;
                let mut report =
                    counts_report(counts.try_get(0)?, counts.try_get(1)?, counts.try_get(2)?, counts.try_get(3)?);
                for (index, (code, name, sql)) in verify_checks($uuid_text, $moscow_date).enumerate() {
                    progress(index, name);
                    let timer = CheckTimer::start();
                    // Each row is one violation and carries how many there are in all (`COUNT(*) OVER ()`).
                    let found: Vec<(String, i64)> =
                        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
                    report.push(timer.finish(code, name, found));
                }
                tx.rollback().await?;
                Ok(report)
            }

            /// The plan the database chooses for each check, as lines of text.
            pub(in crate::store) async fn explain_verify(
                &self,
            ) -> Result<Vec<(&'static str, Vec<String>)>, $crate::store::StoreError> {
                let mut connection = self.$reader.acquire().await?;
                let mut plans = Vec::new();
                for (code, _, sql) in $crate::store::queries::verify::verify_checks($uuid_text, $moscow_date) {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{} {sql}", $explain)))
                        .fetch_all(&mut *connection)
                        .await?;
                    plans.push((code, $crate::store::queries::verify::plan_lines(&rows)?));
                }
                Ok(plans)
            }
        }
    };
}

/// A plan's rows as text: PostgreSQL's `EXPLAIN` gives one line per row; SQLite's `EXPLAIN QUERY PLAN` gives
/// (id, parent, unused, detail), indented here under its parent as the sqlite3 shell does.
pub(crate) fn plan_lines<R: sqlx::Row>(rows: &[R]) -> Result<Vec<String>, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut depths: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        if row.len() < 4 {
            lines.push(row.try_get::<String, _>(0)?);
            continue;
        }
        let (id, parent, detail): (i64, i64, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(3)?);
        let depth = depths.get(&parent).map_or(0, |depth| depth + 1);
        depths.insert(id, depth);
        lines.push(format!("{}{detail}", "  ".repeat(depth)));
    }
    Ok(lines)
}
pub(crate) use verify_queries;

impl Store {
    /// Recomputes every balance from the entries and checks every ledger invariant.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with_progress(&|_, _| {}).await
    }

    /// The plan the database chooses for each check (`payledger verify --explain`), by check code.
    pub async fn explain_verify(&self) -> Result<Vec<(&'static str, Vec<String>)>, StoreError> {
        on_backend!(self, store => store.explain_verify().await)
    }

    /// [`Store::verify`], telling `progress` as each check starts.
    pub async fn verify_with_progress(&self, progress: VerifyProgress<'_>) -> Result<VerifyReport, StoreError> {
        on_backend!(self, store => store.verify(progress).await)
    }
}

/// How many checks `verify` runs.
pub fn check_count() -> usize {
    VERIFY_CHECKS.len()
}

/// Measures one check.
pub(crate) struct CheckTimer(Instant);

impl CheckTimer {
    pub(crate) fn start() -> CheckTimer {
        CheckTimer(Instant::now())
    }

    /// The check's report from the rows its query returned: (violation, how many violations in all).
    pub(crate) fn finish(self, code: &'static str, name: &'static str, found: Vec<(String, i64)>) -> CheckReport {
        let duration: Duration = self.0.elapsed();
        let violations = found.first().map_or(0, |(_, total)| *total);
        CheckReport {
            code,
            name,
            violations,
            sample: found.into_iter().map(|(problem, _)| problem).collect(),
            duration,
        }
    }
}

/// A report with the database's totals and no checks run yet.
pub(crate) fn counts_report(accounts: i64, transactions: i64, entries: i64, bank_payments: i64) -> VerifyReport {
    VerifyReport { accounts, transactions, entries, bank_payments, problems: Vec::new(), checks: Vec::new() }
}

/// The invariant checks `verify` runs: a stable code (for monitoring), what it proves, and SQL valid on both
/// backends once `UUID_TEXT(` is replaced by the backend's function that prints an id. Each query returns one
/// text column, `problem`, per violation found, so an empty result means the invariant holds.
///
/// Where a check sums or chains the rows of each account, it groups by `+account_id`: the expression keeps
/// SQLite from walking `entries_by_account` (or `account_activity_by_account`) and looking up every row in the
/// table from there, in an order that jumps around the file for accounts that interleave (users, spread
/// organizations). It reads the table once in stored order and sorts instead, which took less than half the
/// CPU at a million payments (BENCHMARKS.md). PostgreSQL answers the same text with a hash aggregate over a
/// sequential scan. Those sums then meet the accounts in a RIGHT JOIN, so that SQLite looks each account up by
/// its id instead of scanning every sum once per account (an expression column gets no automatic index).
const VERIFY_CHECKS: &[(&str, &str, &str)] = &[
    (
        "account_balance_is_sum_of_entries",
        "account balance equals the sum of its entries",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but entries sum to ' || COALESCE(s.total, 0) AS problem
         FROM (SELECT +account_id AS account_id, SUM(amount) AS total FROM entries GROUP BY +account_id) s
         RIGHT JOIN accounts a ON a.id = s.account_id
         WHERE a.balance <> COALESCE(s.total, 0)",
    ),
    (
        "transaction_entries_sum_to_zero",
        "every transaction's entries sum to zero",
        "SELECT 'transaction ' || UUID_TEXT(transaction_id) || ' entries sum to ' || SUM(amount) AS problem
         FROM entries GROUP BY transaction_id HAVING SUM(amount) <> 0",
    ),
    (
        "entries_reference_stored_rows",
        "every entry belongs to a stored transaction and account",
        "SELECT 'entry ' || e.id || ' references a missing transaction or account' AS problem FROM entries e
         LEFT JOIN ledger_transactions t ON t.id = e.transaction_id
         LEFT JOIN accounts a ON a.id = e.account_id
         WHERE t.id IS NULL OR a.id IS NULL",
    ),
    (
        "transactions_have_entries",
        "every transaction has entries",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has no entries' AS problem FROM ledger_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.transaction_id = t.id)",
    ),
    (
        "entries_chain",
        "entries chain: each starts where the previous one of its account ended",
        "SELECT 'entry ' || id || ' starts at ' || balance_before || ' but the previous ended at ' || COALESCE(prev, 0) AS problem
         FROM (SELECT id, balance_before, LAG(balance_after) OVER (PARTITION BY +account_id ORDER BY id) AS prev
               FROM entries) chained
         WHERE balance_before <> COALESCE(prev, 0)",
    ),
    (
        "last_entry_ends_at_balance",
        "the last entry of each account ends at its balance",
        "SELECT 'account ' || a.id || ' balance ' || a.balance || ' but its last entry ends at ' || e.balance_after AS problem
         FROM accounts a JOIN entries e ON e.id = (SELECT MAX(id) FROM entries WHERE account_id = a.id)
         WHERE e.balance_after <> a.balance",
    ),
    (
        "no_overdraft",
        "no account is overdrawn unless it may be",
        "SELECT 'account ' || id || ' is overdrawn: balance ' || balance || ', held ' || held AS problem
         FROM accounts WHERE (balance - held < 0 AND NOT (allow_negative = TRUE)) OR held < 0",
    ),
    // `+e.account_id` keeps SQLite from reaching the entries through `entries_by_account`: for a hot account
    // that reads every entry of the account once per payment (quadratic: 17,653 payments to one organization
    // took 3 minutes, 44,293 over a minute for this query alone). Through the transaction it reads two entries
    // per payment (44,293 payments: 0.2 s). Grouping by the payment's row id (not its random operation id)
    // lets SQLite read the payments in the order they are stored instead of one random lookup per payment.
    (
        "bank_payment_credits_its_amount",
        "every applied bank payment credits its organization exactly its amount",
        "SELECT 'bank payment ' || UUID_TEXT(p.operation_id) || ' is applied but credited ' || COALESCE(SUM(e.amount), 0) AS problem
         FROM bank_payments p
         LEFT JOIN accounts a ON a.kind = 'organization' AND a.external_key = p.payer_inn AND a.currency = p.currency
         LEFT JOIN entries e ON e.transaction_id = p.transaction_id AND +e.account_id = a.id
         WHERE p.status = 'applied'
         GROUP BY p.id, p.operation_id, p.amount HAVING COALESCE(SUM(e.amount), 0) <> p.amount",
    ),
    (
        "held_is_open_reservations",
        "each account holds exactly its open reservations",
        "SELECT 'account ' || a.id || ' holds ' || a.held || ' but its open reservations total ' || COALESCE(h.total, 0) AS problem
         FROM accounts a
         LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM holds WHERE status = 'held' GROUP BY account_id) h
           ON h.account_id = a.id
         WHERE a.held <> COALESCE(h.total, 0)",
    ),
    (
        "captured_reservation_has_transaction",
        "each captured reservation names its stored capture transaction",
        "SELECT 'reservation ' || h.reference || ' is captured by a missing transaction' AS problem FROM holds h
         WHERE h.status = 'captured'
           AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = h.transaction_id)",
    ),
    (
        "user_history_adds_up",
        "each user's history adds up to their available and reserved money",
        "SELECT 'user ' || a.external_key || ' has ' || (a.balance - a.held) || ' available and ' || a.held
                || ' reserved but the history adds up to ' || COALESCE(s.available, 0) || ' and ' || COALESCE(s.held, 0)
                AS problem
         FROM (SELECT +account_id AS account_id, SUM(amount) AS available, SUM(held_change) AS held
               FROM account_activity GROUP BY +account_id) s
         RIGHT JOIN accounts a ON a.id = s.account_id
         WHERE a.kind = 'user' AND (a.balance - a.held <> COALESCE(s.available, 0) OR a.held <> COALESCE(s.held, 0))",
    ),
    // As for bank payments, `+e.account_id` makes SQLite find a line's entries through its transaction (two
    // entries) rather than through `entries_by_account` (every entry of the account, once per line: 20,000
    // transfers among 100 users took 63 s).
    (
        "history_line_matches_entries",
        "each history line that moved a balance matches its ledger entry",
        "SELECT 'history line ' || l.id || ' moved ' || (l.amount + l.held_change) || ' but its entry moved '
                || COALESCE(SUM(e.amount), 0) AS problem
         FROM account_activity l
         LEFT JOIN entries e ON e.transaction_id = l.transaction_id AND +e.account_id = l.account_id
         WHERE l.transaction_id IS NOT NULL
         GROUP BY l.id, l.amount, l.held_change HAVING COALESCE(SUM(e.amount), 0) <> l.amount + l.held_change",
    ),
    (
        "payout_hold_matches_status",
        "each payout with a source holds, has captured or has released its amount as its status says",
        "SELECT 'payout ' || p.hold_reference || ' is ' || p.status || ' but its hold is ' || COALESCE(h.status, 'missing')
                AS problem
         FROM payouts p LEFT JOIN holds h ON h.reference = p.hold_reference
         WHERE p.hold_reference IS NOT NULL AND NOT (
               (p.status IN ('pending', 'processing') AND h.status = 'held' AND h.amount = p.amount)
            OR (p.status IN ('completed', 'returned') AND h.status = 'captured' AND h.amount = p.amount)
            OR (p.status IN ('failed', 'cancelled') AND h.status = 'released' AND h.amount = p.amount))",
    ),
    (
        "bank_payment_transaction_has_one_payment",
        "every bank payment transaction belongs to exactly one applied payment",
        "SELECT 'transaction ' || UUID_TEXT(t.id) || ' has ' || COUNT(p.id) || ' applied payments' AS problem
         FROM ledger_transactions t LEFT JOIN bank_payments p ON p.transaction_id = t.id AND p.status = 'applied'
         WHERE t.kind = 'bank_payment' GROUP BY t.id HAVING COUNT(p.id) <> 1",
    ),
    // Reconciliation (issue 13). A match, a late notice and an applied line each name rows of other tables;
    // these checks prove the names hold and that no line or payment counts twice, without trusting the
    // unique constraints that should already prevent it.
    (
        "statement_match_pairs_equal_rows",
        "every statement match pairs a stored credit line with a stored, credited or waiting payment of its amount \
         (and payer, and document for rules 'document' and 'applied')",
        "SELECT 'statement match ' || m.id || ' pairs line ' || m.line_id || ' with bank payment ' || m.payment_id
                || ', which are missing or differ' AS problem
         FROM statement_matches m
         LEFT JOIN statement_lines l ON l.id = m.line_id
         LEFT JOIN bank_payments p ON p.id = m.payment_id
         WHERE l.id IS NULL OR p.id IS NULL OR l.direction <> 'credit' OR l.amount <> p.amount
            OR l.currency <> p.currency
            OR (m.rule IN ('document', 'applied') AND (l.payer_inn IS NULL OR l.payer_inn <> p.payer_inn
                OR l.document_number <> p.document_number OR l.document_date <> MOSCOW_DATE(p.document_date)))
            OR (m.rule = 'bank_ref' AND l.payer_inn IS NOT NULL AND l.payer_inn <> p.payer_inn)
         UNION ALL
         SELECT 'statement match ' || m.id || ' pairs line ' || m.line_id || ' with bank payment ' || m.payment_id
                || ', which is ' || p.status || ', not applied or received' AS problem
         FROM statement_matches m JOIN bank_payments p ON p.id = m.payment_id
         WHERE p.status NOT IN ('applied', 'received')",
    ),
    (
        "statement_payment_applies_one_line",
        "every payment applied from a statement is applied and matched to exactly one line by rule 'applied'",
        "SELECT 'statement payment ' || UUID_TEXT(p.operation_id) || ' is ' || p.status || ' with '
                || COUNT(m.id) || ' applied lines' AS problem
         FROM bank_payments p LEFT JOIN statement_matches m ON m.payment_id = p.id AND m.rule = 'applied'
         WHERE p.source = 'statement'
         GROUP BY p.id, p.operation_id, p.status HAVING p.status <> 'applied' OR COUNT(m.id) <> 1
         UNION ALL
         SELECT 'statement match ' || m.id || ' is applied but its payment is not from a statement' AS problem
         FROM statement_matches m JOIN bank_payments p ON p.id = m.payment_id
         WHERE m.rule = 'applied' AND p.source <> 'statement'",
    ),
    (
        "late_notice_repeats_an_applied_line",
        "every late notice credits nothing and repeats one statement payment: with its match key ('key', at most \
         one per payment), or with its payer and document number and its amount or its Moscow document date \
         ('rival')",
        "SELECT 'late notice ' || UUID_TEXT(d.operation_id) || ' names bank payment ' || d.duplicate_of
                || ', which is missing, not applied from a statement, or another payment' AS problem
         FROM bank_payments d LEFT JOIN bank_payments s ON s.id = d.duplicate_of
         WHERE d.duplicate_of IS NOT NULL AND (d.status <> 'duplicate' OR d.transaction_id IS NOT NULL
            OR s.id IS NULL OR s.source <> 'statement' OR s.status <> 'applied' OR s.payer_inn <> d.payer_inn
            OR s.document_number <> d.document_number
            OR (COALESCE(d.late_match, '') <> 'rival' AND (s.amount <> d.amount OR s.currency <> d.currency
                OR MOSCOW_DATE(s.document_date) <> MOSCOW_DATE(d.document_date)))
            OR ((s.amount <> d.amount OR s.currency <> d.currency)
                AND MOSCOW_DATE(s.document_date) <> MOSCOW_DATE(d.document_date)))
         UNION ALL
         SELECT 'bank payment ' || duplicate_of || ' is repeated by ' || COUNT(*) || ' late notices with its key'
                AS problem
         FROM bank_payments WHERE duplicate_of IS NOT NULL AND late_match = 'key'
         GROUP BY duplicate_of HAVING COUNT(*) > 1
         UNION ALL
         SELECT 'bank payment ' || UUID_TEXT(operation_id) || ' is ' || status || ' with late_match '
                || COALESCE(late_match, 'NULL') || ' and duplicate_of ' || COALESCE(CAST(duplicate_of AS TEXT), 'NULL')
                AS problem
         FROM bank_payments
         WHERE (status = 'duplicate') <> (duplicate_of IS NOT NULL) OR (status = 'duplicate') <> (late_match IS NOT NULL)",
    ),
    (
        "statement_rows_matched_once",
        "no statement line and no bank payment is matched twice",
        "SELECT 'statement line ' || line_id || ' is matched ' || COUNT(*) || ' times' AS problem
         FROM statement_matches GROUP BY line_id HAVING COUNT(*) > 1
         UNION ALL
         SELECT 'bank payment ' || payment_id || ' is matched ' || COUNT(*) || ' times' AS problem
         FROM statement_matches GROUP BY payment_id HAVING COUNT(*) > 1",
    ),
    (
        "statement_totals_add_up",
        "each import's accounts add up and its stored lines sum to no more than the totals it states",
        "SELECT 'import ' || a.import_id || ' account ' || a.account || ': opening ' || a.opening || ' + credits '
                || a.credits || ' - debits ' || a.debits || ' is not the closing ' || a.closing AS problem
         FROM statement_accounts a
         WHERE a.opening + a.credits - a.debits <> a.closing
         UNION ALL
         SELECT 'import ' || a.import_id || ' account ' || a.account || ' stores credits of '
                || SUM(CASE WHEN l.direction = 'credit' THEN l.amount ELSE 0 END) || ' and debits of '
                || SUM(CASE WHEN l.direction = 'debit' THEN l.amount ELSE 0 END) || ', more than it states'
                AS problem
         FROM statement_lines l JOIN statement_accounts a ON a.import_id = l.import_id AND a.account = l.account
         GROUP BY a.id, a.import_id, a.account, a.credits, a.debits
         HAVING SUM(CASE WHEN l.direction = 'credit' THEN l.amount ELSE 0 END) > a.credits
             OR SUM(CASE WHEN l.direction = 'debit' THEN l.amount ELSE 0 END) > a.debits
         UNION ALL
         SELECT 'statement line ' || l.id || ' is on account ' || l.account || ', which its import has no section for'
                AS problem
         FROM statement_lines l LEFT JOIN statement_accounts a ON a.import_id = l.import_id AND a.account = l.account
         WHERE a.id IS NULL",
    ),
    // A match settles its line and its payment: an open discrepancy left on either would be applied or accepted
    // by an operator a second time.
    (
        "matched_rows_have_no_open_discrepancy",
        "no matched statement line and no matched bank payment has an open discrepancy",
        "SELECT 'discrepancy ' || d.id || ' (' || d.kind || ') is open on matched statement line ' || d.line_id
                AS problem
         FROM statement_discrepancies d JOIN statement_matches m ON m.line_id = d.line_id
         WHERE d.state = 'open'
         UNION ALL
         SELECT 'discrepancy ' || d.id || ' (' || d.kind || ') is open on matched bank payment ' || d.payment_id
                AS problem
         FROM statement_discrepancies d JOIN statement_matches m ON m.payment_id = d.payment_id
         WHERE d.state = 'open'",
    ),
];

/// The counts `verify` reports, as SQL valid on both backends.
pub const VERIFY_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM accounts), (SELECT COUNT(*) FROM ledger_transactions),
    (SELECT COUNT(*) FROM entries), (SELECT COUNT(*) FROM bank_payments WHERE status = 'applied')";

/// How many violations of one invariant `verify` lists; it counts them all.
const MAX_PROBLEMS_LISTED: i64 = 20;

/// `sql` with each `MOSCOW_DATE(column)` written as the backend's expression for the Moscow calendar date of a
/// stored instant: `template` with `{}` standing for the column. A column name holds no parenthesis.
fn with_moscow_dates(sql: &str, template: &str) -> String {
    const MARK: &str = "MOSCOW_DATE(";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find(MARK) {
        out.push_str(&rest[..start]);
        let after = &rest[start + MARK.len()..];
        let Some(end) = after.find(')') else { break };
        out.push_str(&template.replace("{}", &after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The checks with `UUID_TEXT(` replaced by the backend's id-printing function, each wrapped to return its
/// first violations with the number of all of them.
pub(crate) fn verify_checks(
    uuid_text_function: &'static str,
    moscow_date: &'static str,
) -> impl Iterator<Item = (&'static str, &'static str, String)> {
    VERIFY_CHECKS.iter().map(move |(code, name, sql)| {
        let sql = with_moscow_dates(&sql.replace("UUID_TEXT(", uuid_text_function), moscow_date);
        (*code, *name, format!("SELECT problem, COUNT(*) OVER () FROM ({sql}) found LIMIT {MAX_PROBLEMS_LISTED}"))
    })
}

//! `payledger verify` and `payledger seed` as an operator runs them: the real binary against a database.

use crate::common::{self, Backend, TestDb, TestServer, notice, on_both_backends};
use serde_json::json;
use uuid::Uuid;

on_both_backends!(
    verify_passes_on_a_clean_ledger_and_catches_tampering,
    seeding_is_idempotent_and_valid,
    a_populated_ledger_verifies_clean_and_json_reports_every_check,
    explain_shows_a_plan_for_every_check,
    verify_catches_rows_missing_on_either_side_of_a_join,
    verify_needs_only_the_database_and_changes_nothing,
    verify_catches_tampered_reconciliation_rows,
);

fn payledger(db: &TestDb, args: &[&str]) -> (i32, String) {
    payledger_with(db, args, &[])
}

fn payledger_with(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run payledger");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{}", if stderr.is_empty() { "" } else { "\n--- stderr:\n" }) + &stderr,
    )
}

/// `payledger verify --json`: the exit code and the parsed summary.
fn verify_json(db: &TestDb) -> (i32, serde_json::Value) {
    verify_json_at(&db.url)
}

fn verify_json_at(url: &str) -> (i32, serde_json::Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(["verify", "--json"])
        .env("DATABASE_URL", url)
        .env("PAYLEDGER_LOG", "error")
        .output()
        .expect("run payledger");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    (output.status.code().unwrap_or(-1), summary)
}

/// The check of a `--json` summary with this code.
fn check<'a>(summary: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    summary["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["code"] == code))
        .unwrap_or_else(|| panic!("no check {code} in {summary}"))
}

async fn verify_passes_on_a_clean_ledger_and_catches_tampering(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for amount in ["10.00", "0.01", "99.99"] {
        assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!(amount), "7707083893")).await.0, 200);
    }
    server.stop().await;

    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("checked 5 accounts, 3 transactions, 6 entries, 3 applied bank payments"), "{output}");

    // A payment whose recorded amount is not what its transaction credited (the check that reaches each
    // payment's entries through its transaction, not through the organization's account).
    db.execute("UPDATE bank_payments SET amount = amount + 1 WHERE amount = 1").await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("is applied but credited 1"), "{output}");
    db.execute("UPDATE bank_payments SET amount = amount - 1 WHERE amount = 2").await;

    // A balance changed behind the ledger's back no longer equals the sum of its entries.
    db.execute("UPDATE accounts SET balance = balance + 1 WHERE kind = 'organization'").await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("account balance equals the sum of its entries"), "{output}");
    assert!(output.contains("FAILED"), "{output}");

    // Entries carry no foreign keys (for speed); verify is what proves they reference real rows.
    db.execute("DELETE FROM ledger_transactions WHERE id = (SELECT transaction_id FROM entries ORDER BY id LIMIT 1)")
        .await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("references a missing transaction or account"), "{output}");
}

async fn seeding_is_idempotent_and_valid(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let (code, first) = payledger(&db, &["seed", "--count", "12"]);
    assert_eq!(code, 0, "{first}");
    let (code, second) = payledger(&db, &["seed", "--count", "12"]);
    assert_eq!(code, 0);
    assert_eq!(first, second, "the same count gives the same organizations");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM organizations").await, 12);
    for line in first.lines().take(12) {
        let inn = line.split_whitespace().next().unwrap_or_default();
        let parsed = payledger_core::Inn::parse(inn).expect("seeded INN parses");
        assert!(parsed.has_valid_checksum(), "{inn}");
    }
    let server = TestServer::start(common::settings(&db)).await;
    let inn = first.split_whitespace().next().unwrap_or_default();
    assert_eq!(server.balance_text(inn).await.as_deref(), Some("0.00"));
    server.stop().await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 0, "{output}");
}

/// The codes of every check `verify` runs, in order: monitoring keys on them, so they are part of the interface.
const CHECK_CODES: [&str; 20] = [
    "account_balance_is_sum_of_entries",
    "transaction_entries_sum_to_zero",
    "entries_reference_stored_rows",
    "transactions_have_entries",
    "entries_chain",
    "last_entry_ends_at_balance",
    "no_overdraft",
    "bank_payment_credits_its_amount",
    "held_is_open_reservations",
    "captured_reservation_has_transaction",
    "user_history_adds_up",
    "history_line_matches_entries",
    "payout_hold_matches_status",
    "bank_payment_transaction_has_one_payment",
    "statement_match_pairs_equal_rows",
    "statement_payment_applies_one_line",
    "late_notice_repeats_an_applied_line",
    "statement_rows_matched_once",
    "statement_totals_add_up",
    "matched_rows_have_no_open_discrepancy",
];

async fn a_populated_ledger_verifies_clean_and_json_reports_every_check(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    // The builder refuses a production configuration unless forced.
    let build = [
        "populate",
        "--payments",
        "600",
        "--organizations",
        "3",
        "--users",
        "25",
        "--transfers",
        "400",
        "--reservations",
        "30",
    ];
    let (code, output) = payledger_with(&db, &build, &[("PAYLEDGER_PROFILE", "production")]);
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("refusing under the production profile"), "{output}");

    let (code, output) = payledger(&db, &build);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(
            "populated 600 bank payments to 3 organizations, 25 deposits, 400 transfers, 30 reservations (0 refused)"
        ),
        "{output}"
    );
    // The reservations went through the balance service: a third each deducted, released and still open, so
    // the checks of holds and of the history's reserved side read real rows.
    for sql in [
        "SELECT COUNT(*) FROM holds WHERE status = 'captured'",
        "SELECT COUNT(*) FROM holds WHERE status = 'released'",
        "SELECT COUNT(*) FROM holds WHERE status = 'held'",
    ] {
        assert_eq!(db.scalar(sql).await, 10, "{sql}");
    }

    let (code, summary) = verify_json(&db);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["violations"], 0, "{summary}");
    assert_eq!(summary["totals"]["applied_bank_payments"], 600, "{summary}");
    // One transaction per payment, deposit, transfer and deduction (a reservation or a release moves no money
    // between accounts), two entries each.
    assert_eq!(summary["totals"]["transactions"], 1035, "{summary}");
    assert_eq!(summary["totals"]["entries"], 2070, "{summary}");
    let codes: Vec<&str> =
        summary["checks"].as_array().expect("checks").iter().filter_map(|c| c["code"].as_str()).collect();
    assert_eq!(codes, CHECK_CODES, "{summary}");
    for code in CHECK_CODES {
        let check = check(&summary, code);
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(check["violations"], 0, "{check}");
        assert!(check["name"].as_str().is_some_and(|name| !name.is_empty()), "{check}");
        assert!(check["duration_ms"].is_u64(), "{check}");
    }
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("OK: every balance equals the sum of its entries"), "{output}");

    // Every user's balance changed behind the ledger's back: each is counted, twenty are listed.
    db.execute("UPDATE accounts SET balance = balance + 1 WHERE kind = 'user'").await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    let balances = check(&summary, "account_balance_is_sum_of_entries");
    assert_eq!(balances["ok"], false, "{balances}");
    assert_eq!(balances["violations"], 25, "{balances}");
    assert_eq!(balances["sample"].as_array().map(Vec::len), Some(20), "{balances}");
    assert_eq!(check(&summary, "entries_chain")["violations"], 0, "{summary}");
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("PROBLEM: account balance equals the sum of its entries: and 5 more"), "{output}");
    db.execute("UPDATE accounts SET balance = balance - 1 WHERE kind = 'user'").await;

    // An entry in the middle of a hot account's chain moved by one kopeck (both ends, so the row itself is
    // consistent): its chain breaks on both sides, and nothing else.
    db.execute(
        "UPDATE entries SET balance_before = balance_before + 1, balance_after = balance_after + 1
         WHERE id = (SELECT id FROM entries WHERE account_id = (SELECT MIN(id) FROM accounts WHERE kind = 'organization')
                     ORDER BY id LIMIT 1 OFFSET 20)",
    )
    .await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(check(&summary, "entries_chain")["violations"], 2, "{summary}");
    assert_eq!(summary["violations"], 2, "{summary}");
}

async fn explain_shows_a_plan_for_every_check(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let build = ["populate", "--payments", "200", "--organizations", "1", "--users", "5", "--transfers", "100"];
    let (code, output) = payledger(&db, &build);
    assert_eq!(code, 0, "{output}");
    let (code, output) = payledger(&db, &["verify", "--explain"]);
    assert_eq!(code, 0, "{output}");
    let plans = parse_plans(&output);
    let codes: Vec<&str> = plans.iter().map(|(code, _)| code.as_str()).collect();
    assert_eq!(codes, CHECK_CODES, "{output}");
    assert!(plans.iter().all(|(_, steps)| !steps.is_empty()), "{output}");
    // The quadratic plans of the past: a check that reaches rows through an index led by `account_id` once per
    // row reads a hot account's million entries a million times. Only the last-entry check may look up by
    // account (once per account, the newest entry only). The rule names every index led by `account_id`, so a
    // new one is covered without editing this test.
    let by_account = indexes_led_by_account_id(&db).await;
    assert!(by_account.iter().any(|name| name == "entries_by_account"), "{by_account:?}");
    if backend == Backend::Postgres {
        // Plans on the empty statistics of a new database say little; with them the planner sees the sizes.
        db.execute("ANALYZE").await;
    }
    let (code, output) = payledger(&db, &["verify", "--explain"]);
    assert_eq!(code, 0, "{output}");
    for (code, steps) in parse_plans(&output) {
        for step in &steps {
            // SQLite names a lookup `SEARCH t USING [COVERING] INDEX name (…)`; a SQLite `SCAN … USING INDEX`
            // reads the index once, in order, and is allowed. On PostgreSQL any use of such an index (`Index
            // [Only] Scan [Backward] using name`, `Bitmap Index Scan on name`) is one.
            let lookup = if backend == Backend::Sqlite { step.trim_start().starts_with("SEARCH ") } else { true };
            let used = by_account.iter().find(|name| step.split_whitespace().any(|word| word == name.as_str()));
            if let (true, Some(index)) = (lookup, used) {
                assert!(
                    code == "last_entry_ends_at_balance" && index == "entries_by_account",
                    "{code} looks rows up through {index}: {step}\n{output}"
                );
            }
        }
        if backend == Backend::Sqlite {
            assert!(full_scans_in_one_loop(&steps) <= 1, "{code} scans a table inside another's loop:\n{output}");
        }
    }
}

/// `payledger verify --explain` output as (check code, plan lines).
fn parse_plans(output: &str) -> Vec<(String, Vec<String>)> {
    let mut plans: Vec<(String, Vec<String>)> = Vec::new();
    for line in output.lines() {
        match line.strip_prefix("    ") {
            Some(step) => plans.last_mut().expect("a check before its plan").1.push(step.to_owned()),
            None => plans.push((line.trim_end_matches(':').to_owned(), Vec::new())),
        }
    }
    plans
}

/// The most `SCAN` steps among the children of one node of a SQLite plan (indented two spaces a level). SQLite
/// lists a join's loops as siblings, outermost first, so two full scans there are a scan once per row of the
/// other. (A `SCAN` under `RIGHT-JOIN` is its own node's only child: the one pass over unmatched rows.)
fn full_scans_in_one_loop(steps: &[String]) -> usize {
    let mut scans_at_depth: Vec<usize> = Vec::new();
    let mut most = 0;
    for step in steps {
        let depth = (step.len() - step.trim_start().len()) / 2;
        scans_at_depth.truncate(depth + 1);
        scans_at_depth.resize(depth + 1, 0);
        if step.trim_start().starts_with("SCAN ") {
            scans_at_depth[depth] += 1;
            most = most.max(scans_at_depth[depth]);
        }
    }
    most
}

/// The names of the indexes whose first column is `account_id`, as the database lists them.
async fn indexes_led_by_account_id(db: &TestDb) -> Vec<String> {
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        sqlx::query_scalar(
            "SELECT m.name FROM sqlite_master m, pragma_index_info(m.name) i
             WHERE m.type = 'index' AND i.seqno = 0 AND i.name = 'account_id'",
        )
        .fetch_all(&pool)
        .await
        .expect("indexes")
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE a.attname = 'account_id'",
        )
        .fetch_all(&pool)
        .await
        .expect("indexes")
    }
}

/// The checks that meet two tables in an outer join must see a row that has no partner on the other side (the
/// rows an inner join would silently drop).
async fn verify_catches_rows_missing_on_either_side_of_a_join(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let build = [
        "populate",
        "--payments",
        "100",
        "--organizations",
        "2",
        "--users",
        "6",
        "--transfers",
        "30",
        "--reservations",
        "9",
    ];
    let (code, output) = payledger(&db, &build);
    assert_eq!(code, 0, "{output}");

    // An account with a balance and no entries at all.
    db.execute(
        "INSERT INTO accounts (kind, external_key, currency, balance)
         SELECT 'organization', 'tampered', currency, 500 FROM accounts WHERE kind = 'organization' LIMIT 1",
    )
    .await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    let balances = check(&summary, "account_balance_is_sum_of_entries");
    assert_eq!(balances["violations"], 1, "{balances}");
    assert!(
        balances["sample"][0].as_str().is_some_and(|s| s.ends_with("balance 500 but entries sum to 0")),
        "{balances}"
    );
    db.execute("DELETE FROM accounts WHERE external_key = 'tampered'").await;
    assert_eq!(verify_json(&db).0, 0);

    // A user with money and no history lines.
    db.execute(
        "DELETE FROM account_activity WHERE account_id = (SELECT MIN(id) FROM accounts WHERE kind = 'user' AND balance > 0)",
    )
    .await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    let history = check(&summary, "user_history_adds_up");
    assert_eq!(history["violations"], 1, "{history}");
    assert!(history["sample"][0].as_str().is_some_and(|s| s.ends_with("the history adds up to 0 and 0")), "{history}");
    assert_eq!(summary["violations"], 1, "only the history check sees it: {summary}");

    // An entry whose account does not exist.
    db.execute("UPDATE entries SET account_id = 987654321 WHERE id = (SELECT MAX(id) FROM entries)").await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    let references = check(&summary, "entries_reference_stored_rows");
    assert_eq!(references["violations"], 1, "{references}");
    assert!(
        references["sample"][0].as_str().is_some_and(|s| s.ends_with("references a missing transaction or account")),
        "{references}"
    );

    // An account that holds money with no open reservation behind it.
    db.execute(
        "DELETE FROM holds
         WHERE status = 'held' AND account_id = (SELECT MIN(account_id) FROM holds WHERE status = 'held')",
    )
    .await;
    let (code, summary) = verify_json(&db);
    assert_eq!(code, 1, "{summary}");
    let held = check(&summary, "held_is_open_reservations");
    assert_eq!(held["violations"], 1, "{held}");
    assert!(held["sample"][0].as_str().is_some_and(|s| s.ends_with("but its open reservations total 0")), "{held}");
}

/// `verify` reads the database and nothing else: server settings do not decide its exit status, a failure to
/// run is exit 2 (with one JSON line under `--json`), a mistyped path creates nothing, and a terminal gets a
/// progress bar.
async fn verify_needs_only_the_database_and_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let (code, output) = payledger(&db, &["migrate"]);
    assert_eq!(code, 0, "{output}");
    // Settings that stop the server and the workers (they are checked only when those start).
    let unrelated = [("PAYLEDGER_PAYOUT_MAX_ATTEMPTS", "0"), ("PAYLEDGER_PROFILE", "production")];
    let (code, output) = payledger_with(&db, &["verify", "--json"], &unrelated);
    assert_eq!(code, 0, "{output}");
    assert!(output.starts_with("{\"ok\":true"), "{output}");
    let (code, output) = payledger_with(&db, &["verify", "--explain"], &unrelated);
    assert_eq!(code, 0, "{output}");

    // On a terminal the checks draw a progress bar (on standard error; off a terminal it hides itself).
    let command = format!("{} verify", env!("CARGO_BIN_EXE_payledger"));
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_LOG", "warn")
        .env("TERM", "xterm")
        .output()
        .expect("run payledger under script(1) from util-linux, for a terminal");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{terminal}");
    assert!(terminal.contains("checks done; now:"), "no progress bar on a terminal: {terminal}");
    assert!(terminal.contains("OK: every balance equals the sum of its entries"), "{terminal}");

    if backend != Backend::Sqlite {
        // An unreachable server is not a broken ledger either.
        let (code, summary) = verify_json_at("postgres://postgres@127.0.0.1:1/payledger");
        assert_eq!(code, 2, "{summary}");
        assert_eq!(summary["ok"], false, "{summary}");
        return;
    }
    // A mistyped path: exit 2 for every form of the command, and neither the file nor its folder appears.
    let folder = db.dir.path().join("missing");
    let url = format!("sqlite://{}/payledger.db", folder.display());
    let (code, summary) = verify_json_at(&url);
    assert_eq!(code, 2, "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    assert!(summary["error"].as_str().is_some_and(|error| !error.is_empty()), "{summary}");
    for args in [&["verify"][..], &["verify", "--explain"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_payledger"))
            .args(args)
            .env("DATABASE_URL", &url)
            .envs(unrelated)
            .output()
            .expect("run payledger");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("the checks could not run"), "{args:?}: {stderr}");
    }
    assert!(!folder.exists(), "verify created {}", folder.display());
    // An existing file is opened read-only: no write-ahead log or shared-memory file appears beside it.
    let existing = db.dir.path().join("existing.db");
    std::fs::write(&existing, b"").expect("an empty file");
    let (code, summary) = verify_json_at(&format!("sqlite://{}", existing.display()));
    assert_eq!(code, 2, "an empty file has no ledger: {summary}");
    assert_eq!(std::fs::metadata(&existing).expect("still there").len(), 0, "verify wrote to the file");
}

/// Asserts `verify` fails and names `problem`, then runs `repair` and asserts it passes again.
async fn assert_caught(db: &TestDb, problem: &str, repair: &[&'static str]) {
    let (code, output) = payledger(db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(problem), "expected {problem:?} in:\n{output}");
    for sql in repair {
        db.execute(sql).await;
    }
    let (code, output) = payledger(db, &["verify"]);
    assert_eq!(code, 0, "after repairing {problem:?}:\n{output}");
}

/// Each reconciliation invariant (checks 15 to 20) is proven by verify: a consistent import, line and match
/// verify clean, and each tampered row is named.
async fn verify_catches_tampered_reconciliation_rows(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    for amount in ["10.00", "20.00"] {
        assert_eq!(server.post_webhook(&notice(Uuid::new_v4(), json!(amount), "7707083893")).await.0, 200);
    }
    server.stop().await;
    if backend == Backend::Sqlite {
        db.execute(
            "INSERT INTO statement_imports (id, sha256, format, state, line_count, started_at)
             VALUES (1, X'01', '1c', 'complete', 1, '2024-04-29T00:00:00.000000Z')",
        )
        .await;
        db.execute(
            "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, source_line, raw)
             VALUES (1, 1, '40702810900000000001', X'02', 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-328',
                     '2024-04-28', '7707083893', 3, '[]')",
        )
        .await;
    } else {
        db.execute(
            "INSERT INTO statement_imports (id, sha256, format, state, line_count, started_at)
             VALUES (1, '\\x01'::bytea, '1c', 'complete', 1, '2024-04-29T00:00:00Z')",
        )
        .await;
        db.execute(
            "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, source_line, raw)
             VALUES (1, 1, '40702810900000000001', '\\x02'::bytea, 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-328',
                     '2024-04-28', '7707083893', 3, '[]')",
        )
        .await;
    }
    db.execute(
        "INSERT INTO statement_accounts (import_id, account, currency, period_start, period_end, opening, credits,
             debits, closing, credit_lines, debit_lines)
         VALUES (1, '40702810900000000001', 'RUB', '2024-04-28', '2024-04-28', 500, 1000, 0, 1500, 1, 0)",
    )
    .await;
    db.execute(
        "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at)
         VALUES (1, (SELECT id FROM bank_payments WHERE amount = 1000), 'document', '2024-04-29T00:00:00Z')",
    )
    .await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 0, "a consistent import verifies clean:\n{output}");

    // 15: the line no longer has its payment's amount.
    db.execute("UPDATE statement_lines SET amount = 999").await;
    assert_caught(&db, "which are missing or differ", &["UPDATE statement_lines SET amount = 1000"]).await;
    // 15: the matched payment's credit failed, so the line was never credited to anyone.
    db.execute("UPDATE bank_payments SET status = 'failed' WHERE amount = 1000").await;
    assert_caught(
        &db,
        "which is failed, not applied or received",
        &["UPDATE bank_payments SET status = 'applied' WHERE amount = 1000"],
    )
    .await;
    // 15: a document match whose line has another document number, then another document date.
    db.execute("UPDATE statement_lines SET document_number = 'PAY-329'").await;
    assert_caught(&db, "which are missing or differ", &["UPDATE statement_lines SET document_number = 'PAY-328'"])
        .await;
    db.execute("UPDATE statement_lines SET document_date = '2024-04-29'").await;
    assert_caught(&db, "which are missing or differ", &["UPDATE statement_lines SET document_date = '2024-04-28'"])
        .await;
    // 15: a bank_ref match need not agree on the document (the bank names the payment), but on the payer the
    // line names it must.
    db.execute("UPDATE statement_matches SET rule = 'bank_ref'").await;
    db.execute("UPDATE statement_lines SET document_number = 'PAY-329', payer_inn = '7728168971'").await;
    assert_caught(&db, "which are missing or differ", &["UPDATE statement_lines SET payer_inn = '7707083893'"]).await;
    db.execute("UPDATE statement_lines SET document_number = 'PAY-328'").await;
    db.execute("UPDATE statement_matches SET rule = 'document'").await;
    // 20: a matched line keeps an open discrepancy, then a matched payment keeps an open notice_without_line.
    db.execute(
        "INSERT INTO statement_discrepancies (id, kind, state, line_id, account, day, amount, currency, created_at)
         VALUES (1, 'missing_notice', 'open', 1, '40702810900000000001', '2024-04-28', 1000, 'RUB',
                 '2024-04-29T00:00:00Z')",
    )
    .await;
    assert_caught(
        &db,
        "discrepancy 1 (missing_notice) is open on matched statement line 1",
        &["UPDATE statement_discrepancies SET state = 'resolved', resolution = 'notice' WHERE id = 1"],
    )
    .await;
    db.execute(
        "INSERT INTO statement_discrepancies (id, kind, state, payment_id, day, amount, currency, created_at)
         VALUES (2, 'notice_without_line', 'open', (SELECT id FROM bank_payments WHERE amount = 1000), '2024-04-28',
                 1000, 'RUB', '2024-04-29T00:00:00Z')",
    )
    .await;
    assert_caught(
        &db,
        "(notice_without_line) is open on matched bank payment",
        &["UPDATE statement_discrepancies SET state = 'resolved', resolution = 'matched' WHERE id = 2"],
    )
    .await;
    // 16: a payment claims to come from the statement, but no line was applied to create it.
    db.execute("UPDATE bank_payments SET source = 'statement' WHERE amount = 1000").await;
    assert_caught(&db, "with 0 applied lines", &["UPDATE bank_payments SET source = 'webhook'"]).await;
    // 17: a notice marked as a late repeat of a payment that was not applied from a statement.
    db.execute(
        "UPDATE bank_payments SET status = 'duplicate', late_match = 'key',
             duplicate_of = (SELECT MIN(id) FROM bank_payments WHERE amount = 1000) WHERE amount = 2000",
    )
    .await;
    assert_caught(
        &db,
        "which is missing, not applied from a statement, or another payment",
        &["UPDATE bank_payments SET status = 'applied', duplicate_of = NULL, late_match = NULL WHERE amount = 2000"],
    )
    .await;
    // 17: a duplicate that names no payment (the table's CHECK dropped, as by a bad restore).
    if backend == Backend::Sqlite {
        db.execute(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE bank_payments SET status = 'duplicate' WHERE amount = 2000;
             PRAGMA ignore_check_constraints = OFF;",
        )
        .await;
    } else {
        db.execute("ALTER TABLE bank_payments DROP CONSTRAINT bank_payments_duplicate_names_one").await;
        db.execute("ALTER TABLE bank_payments DROP CONSTRAINT bank_payments_late_match_of_duplicates").await;
        db.execute("UPDATE bank_payments SET status = 'duplicate' WHERE amount = 2000").await;
    }
    assert_caught(
        &db,
        "is duplicate with late_match NULL and duplicate_of NULL",
        &["UPDATE bank_payments SET status = 'applied' WHERE amount = 2000"],
    )
    .await;
    // 19: the stated balances do not add up, then the stored lines exceed the stated credits.
    db.execute("UPDATE statement_accounts SET closing = 1501").await;
    assert_caught(&db, "is not the closing", &["UPDATE statement_accounts SET closing = 1500"]).await;
    db.execute("UPDATE statement_accounts SET credits = 999, closing = 1499").await;
    assert_caught(&db, "more than it states", &["UPDATE statement_accounts SET credits = 1000, closing = 1500"]).await;
    // 18: with the unique constraints gone (a restore from a bad dump, say), a line matched twice is named.
    db.execute("CREATE TABLE loose_matches AS SELECT * FROM statement_matches").await;
    db.execute("DROP TABLE statement_matches").await;
    db.execute("ALTER TABLE loose_matches RENAME TO statement_matches").await;
    db.execute(
        "INSERT INTO statement_matches (id, line_id, payment_id, rule, matched_at)
         VALUES (99, 1, (SELECT id FROM bank_payments WHERE amount = 1000), 'document', '2024-04-29T00:00:00Z')",
    )
    .await;
    assert_caught(&db, "statement line 1 is matched 2 times", &["DELETE FROM statement_matches WHERE id = 99"]).await;
}

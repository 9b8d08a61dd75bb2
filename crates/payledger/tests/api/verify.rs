//! `payledger verify` and `payledger seed` as an operator runs them: the real binary against a database.

use crate::common::{self, Backend, TestDb, TestServer, notice, on_both_backends};
use serde_json::json;
use uuid::Uuid;

on_both_backends!(
    verify_passes_on_a_clean_ledger_and_catches_tampering,
    seeding_is_idempotent_and_valid,
    a_populated_ledger_verifies_clean_and_json_reports_every_check,
    explain_shows_a_plan_for_every_check,
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
    // Standard error is no terminal here, so the progress bar stays quiet.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("checks done"), "a progress bar was drawn into a pipe: {stderr}");
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

async fn execute(db: &TestDb, sql: &'static str) {
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        sqlx::query(sql).execute(&pool).await.expect("tamper");
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        sqlx::query(sql).execute(&pool).await.expect("tamper");
    }
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
    execute(&db, "UPDATE bank_payments SET amount = amount + 1 WHERE amount = 1").await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("is applied but credited 1"), "{output}");
    execute(&db, "UPDATE bank_payments SET amount = amount - 1 WHERE amount = 2").await;

    // A balance changed behind the ledger's back no longer equals the sum of its entries.
    execute(&db, "UPDATE accounts SET balance = balance + 1 WHERE kind = 'organization'").await;
    let (code, output) = payledger(&db, &["verify"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("account balance equals the sum of its entries"), "{output}");
    assert!(output.contains("FAILED"), "{output}");

    // Entries carry no foreign keys (for speed); verify is what proves they reference real rows.
    execute(&db, "DELETE FROM ledger_transactions WHERE id = (SELECT transaction_id FROM entries ORDER BY id LIMIT 1)")
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
const CHECK_CODES: [&str; 14] = [
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
];

async fn a_populated_ledger_verifies_clean_and_json_reports_every_check(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    // The builder refuses a production configuration unless forced.
    let build = ["populate", "--payments", "600", "--organizations", "3", "--users", "25", "--transfers", "400"];
    let (code, output) = payledger_with(&db, &build, &[("PAYLEDGER_PROFILE", "production")]);
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("refusing under the production profile"), "{output}");

    let (code, output) = payledger(&db, &build);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("populated 600 bank payments to 3 organizations, 25 deposits, 400 transfers (0 refused)"),
        "{output}"
    );

    let (code, summary) = verify_json(&db);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["violations"], 0, "{summary}");
    assert_eq!(summary["totals"]["applied_bank_payments"], 600, "{summary}");
    // One transaction per payment, deposit and transfer, two entries each.
    assert_eq!(summary["totals"]["transactions"], 1025, "{summary}");
    assert_eq!(summary["totals"]["entries"], 2050, "{summary}");
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

    // A database that cannot be reached is neither clean nor broken: exit 2, and the summary says why.
    let (code, summary) = verify_json_at(&format!("sqlite://{}/missing/payledger.db", db.dir.path().display()));
    assert_eq!(code, 2, "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    assert!(summary["error"].as_str().is_some_and(|error| !error.is_empty()), "{summary}");
}

async fn explain_shows_a_plan_for_every_check(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let build = ["populate", "--payments", "200", "--organizations", "1", "--users", "5", "--transfers", "100"];
    let (code, output) = payledger(&db, &build);
    assert_eq!(code, 0, "{output}");
    let (code, output) = payledger(&db, &["verify", "--explain"]);
    assert_eq!(code, 0, "{output}");
    let mut plans: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in output.lines() {
        match line.strip_prefix("    ") {
            Some(step) => plans.last_mut().expect("a check before its plan").1.push(step),
            None => plans.push((line.trim_end_matches(':'), Vec::new())),
        }
    }
    let codes: Vec<&str> = plans.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, CHECK_CODES, "{output}");
    assert!(plans.iter().all(|(_, steps)| !steps.is_empty()), "{output}");
    if backend == Backend::Sqlite {
        // The quadratic plans of the past: a check that reaches rows through an account's index once per row
        // reads a hot account's million entries a million times. Only the last-entry check may use that index,
        // once per account and without reading the table.
        for (code, steps) in &plans {
            for step in steps.iter().filter(|step| step.contains("entries_by_account")) {
                assert!(
                    *code == "last_entry_ends_at_balance" && step.contains("COVERING INDEX"),
                    "{code} walks entries_by_account: {step}\n{output}"
                );
            }
            assert!(!steps.iter().any(|step| step.contains("account_activity_by_account")), "{code}: {output}");
        }
    }
}

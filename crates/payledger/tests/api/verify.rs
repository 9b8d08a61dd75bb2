//! `payledger verify` and `payledger seed` as an operator runs them: the real binary against a database.

use crate::common::{self, Backend, TestDb, TestServer, notice, on_both_backends};
use serde_json::json;
use uuid::Uuid;

on_both_backends!(verify_passes_on_a_clean_ledger_and_catches_tampering, seeding_is_idempotent_and_valid);

fn payledger(db: &TestDb, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("PAYLEDGER_LOG", "warn")
        .output()
        .expect("run payledger");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
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

//! Applying statement lines against webhooks at a real server: whichever comes first, in whichever order and
//! however concurrently, each real payment is credited once. The webhooks go over HTTP to a started server;
//! the applies go through the reconciliation service's own engine on the same database — a second writer
//! instance, as a second server process would be (and some tests start a second server for the webhooks too).

use std::time::Duration;

use payledger::engine::batch::{WriteCommand, WriteOutcome};
use payledger::engine::statements::StatementOutcome;
use payledger::statement::{ApplyOutcome, DiscrepancyState, ReconcileError};
use payledger_core::statement::{Direction, StatementLine};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::macros::date;

use super::{Harness, begin_command, statement_line, submit_lines};
use crate::common::{self, Backend, TestServer, on_both_backends};

on_both_backends!(
    a_late_webhook_after_an_apply_is_a_duplicate_and_the_payer_is_credited_once,
    a_late_webhook_dated_a_day_off_or_with_a_mistyped_amount_is_a_duplicate_of_the_applied_line,
    a_webhook_before_the_apply_takes_the_line_and_the_apply_credits_nothing,
    fifty_webhooks_and_fifty_applies_fired_at_once_at_two_servers_credit_each_payment_once,
    ten_applies_of_one_line_at_once_credit_it_once,
    in_async_mode_a_recorded_notice_meets_the_apply_in_either_order_and_is_credited_once,
    random_interleavings_of_webhooks_imports_and_applies_credit_every_payment_once,
);

const INN: &str = "7707083893";
const CREDITS: &str = "SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'bank_payment'";
const CREDITED: &str = "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM bank_payments WHERE status = 'applied'";
const DUPLICATES: &str = "SELECT COUNT(*) FROM bank_payments WHERE status = 'duplicate' AND duplicate_of IS NOT NULL";
const MATCHES: &str = "SELECT COUNT(*) FROM statement_matches";

/// A webhook body for document `number` of `kopecks`, dated 28 April 2024 in Moscow.
fn webhook(number: &str, kopecks: i64) -> serde_json::Value {
    let mut body = common::notice(uuid::Uuid::new_v4(), json!(common::rubles(kopecks)), INN);
    body["document_number"] = json!(number);
    body
}

/// Posts a webhook body to a server's webhook address; its status.
async fn post_webhook_to(url: &str, body: &serde_json::Value) -> u16 {
    let response = reqwest::Client::new().post(url).json(body).send().await.expect("request");
    response.status().as_u16()
}

/// A credit line of `kopecks` for document `number`, dated and booked 28 April 2024.
fn credit(number: &str, kopecks: i64) -> StatementLine {
    let day = date!(2024 - 04 - 28);
    statement_line(Direction::Credit, kopecks, number, day, day)
}

/// Starts an import and stores `lines` (judged on 1 May: their day is closed). Returns the new lines' ids in
/// the order of `lines` (PostgreSQL inserts a chunk in key order, so ids do not follow the file), for lines with
/// distinct document numbers.
async fn import(harness: &Harness, sha: u8, lines: &[StatementLine]) -> Vec<i64> {
    let mut begin = begin_command("alice");
    begin.sha256 = [sha; 32];
    let credits: i64 = lines.iter().map(|line| line.amount.minor()).sum();
    let section = &mut begin.sections[0];
    section.summary.opening_balance = Some(0);
    (section.summary.total_credits, section.summary.total_debits) = (Some(credits), Some(0));
    section.summary.closing_balance = Some(credits);
    (section.credit_lines, section.debit_lines) = (lines.len() as u64, 0);
    begin.line_count = lines.len() as u64;
    let id = match harness.service.engine().submit(WriteCommand::StatementBegin(begin)).await.expect("begin") {
        WriteOutcome::Statement(StatementOutcome::ImportStarted { id } | StatementOutcome::ImportResumed { id }) => id,
        other => panic!("{other:?}"),
    };
    let before = harness.db.scalar("SELECT COALESCE(MAX(id), 0) FROM statement_lines").await;
    for chunk in lines.chunks(1000) {
        submit_lines(&harness.service, id, chunk).await;
    }
    let mut ids = Vec::new();
    for line in lines {
        // A test-only query text: leaked, since `scalar` takes static SQL.
        let sql = format!(
            "SELECT COALESCE(MIN(id), 0) FROM statement_lines WHERE document_number = '{}' AND id > {before}",
            line.document_number
        );
        ids.push(harness.db.scalar(Box::leak(sql.into_boxed_str())).await);
    }
    ids
}

async fn a_late_webhook_after_an_apply_is_a_duplicate_and_the_payer_is_credited_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let lines = import(&harness, 1, &[credit("PAY-1", 1_000)]).await;
    let applied = harness.service.apply_line(lines[0], "alice").await.expect("apply");
    assert_eq!(applied.outcome, ApplyOutcome::Applied);
    let discrepancy = applied.discrepancy.expect("the line's discrepancy");
    assert_eq!(discrepancy.state, DiscrepancyState::Resolved);
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM bank_payments WHERE source = 'statement'").await, 1);

    let body = webhook("PAY-1", 1_000);
    let (status, answer) = harness.server.post_webhook(&body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
    let (status, answer) = harness.server.post_webhook(&body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "a replay: {answer}");
    assert_eq!(harness.db.scalar(CREDITS).await, 1);
    assert_eq!(harness.db.scalar(CREDITED).await, 1_000);
    assert_eq!(harness.db.scalar(DUPLICATES).await, 1);

    // A second, real payment of the same document is no late notice: the one statement payment is taken.
    let (status, answer) = harness.server.post_webhook(&webhook("PAY-1", 1_000)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("processed")), "{answer}");
    assert_eq!(harness.db.scalar(CREDITS).await, 2);
    let again = harness.service.apply_line(lines[0], "bob").await.expect("apply again");
    assert_eq!(again.outcome, ApplyOutcome::AlreadyMatched);
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'statement.apply'").await, 1);
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// The bank's webhook may date a payment by its acceptance day, and a mistyped amount happens: a late
/// webhook that may be a line applied from the statement (its payer and number, and its amount within the
/// date tolerance or another amount on its date) credits nothing, since the statement already paid it.
async fn a_late_webhook_dated_a_day_off_or_with_a_mistyped_amount_is_a_duplicate_of_the_applied_line(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let lines = import(&harness, 1, &[credit("PAY-1", 1_000), credit("PAY-2", 500), credit("PAY-4", 300)]).await;
    for line in &lines[..2] {
        let applied = harness.service.apply_line(*line, "alice").await.expect("apply");
        assert_eq!(applied.outcome, ApplyOutcome::Applied);
    }
    assert_eq!(harness.db.scalar(CREDITED).await, 1_500);

    let mut a_day_later = webhook("PAY-1", 1_000);
    a_day_later["document_date"] = json!("2024-04-28T21:00:00Z");
    let (status, answer) = harness.server.post_webhook(&a_day_later).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "a day off: {answer}");
    let (status, answer) = harness.server.post_webhook(&webhook("PAY-2", 5_000)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "a mistyped amount: {answer}");
    // The day-off notice may have been another payment; PAY-1's own notice, with its key, is still held.
    let (status, answer) = harness.server.post_webhook(&webhook("PAY-1", 1_000)).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("duplicate")), "its own notice: {answer}");
    assert_eq!(harness.db.scalar(CREDITED).await, 1_500, "the statement paid both already");
    assert_eq!(harness.db.scalar(DUPLICATES).await, 3);

    // Beyond the tolerance (3 days) it is another payment; a notice dated off from a line not applied yet is
    // credited (its line stays open, and its apply is refused while the notice may be it).
    let mut a_week_later = webhook("PAY-1", 1_000);
    a_week_later["document_date"] = json!("2024-05-04T21:00:00Z");
    let (status, answer) = harness.server.post_webhook(&a_week_later).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("processed")), "a week off: {answer}");
    let mut unapplied = webhook("PAY-4", 300);
    unapplied["document_date"] = json!("2024-04-28T21:00:00Z");
    let (status, answer) = harness.server.post_webhook(&unapplied).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("processed")), "{answer}");
    let refused = harness.service.apply_line(lines[2], "alice").await;
    assert!(matches!(refused, Err(ReconcileError::NotApplicable { .. })), "{refused:?}");
    assert_eq!(harness.db.scalar(CREDITED).await, 2_800);
    assert_eq!(harness.server.balance_text(INN).await.as_deref(), Some("28.00"));
    harness.db.assert_verified().await;

    // verify holds a late notice to its payment's payer and number, and its amount or its date: the day-off
    // notice with another amount too repeats nothing.
    harness.db.execute("UPDATE bank_payments SET amount = 999 WHERE late_match = 'rival' AND amount = 1000").await;
    let report = harness.db.store().await.verify().await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("which is missing, not applied from a statement, or another payment")),
        "{:#?}",
        report.problems
    );
    // A day-off notice recorded as having the payment's key does not have it (the payment's own notice, which
    // has it, may be recorded a rival: it may be).
    harness.db.execute("UPDATE bank_payments SET amount = 1000 WHERE status = 'duplicate' AND amount = 999").await;
    harness
        .db
        .execute("UPDATE bank_payments SET late_match = 'rival' WHERE late_match = 'key' AND amount = 1000")
        .await;
    harness.db.assert_verified().await;
    harness
        .db
        .execute(
            "UPDATE bank_payments SET late_match = 'key'
             WHERE id = (SELECT MIN(id) FROM bank_payments WHERE status = 'duplicate' AND amount = 1000)",
        )
        .await;
    let report = harness.db.store().await.verify().await.expect("verify");
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    harness.stop().await;
}

async fn a_webhook_before_the_apply_takes_the_line_and_the_apply_credits_nothing(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let lines = import(&harness, 1, &[credit("PAY-2", 2_550), credit("PAY-3", 700)]).await;
    let (status, _) = harness.server.post_webhook(&webhook("PAY-2", 2_550)).await;
    assert_eq!(status, 200);
    assert_eq!(harness.db.scalar(MATCHES).await, 1, "the notice takes its line");
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_discrepancies WHERE resolution = 'notice'").await, 1);
    let applied = harness.service.apply_line(lines[0], "alice").await.expect("apply");
    assert_eq!(applied.outcome, ApplyOutcome::AlreadyMatched);
    assert_eq!(harness.db.scalar(CREDITS).await, 1);

    // The other line is applied; its discrepancy's apply through the discrepancy id finds it applied.
    let summary = harness.service.apply_all(1, "alice").await.expect("apply all");
    assert_eq!((summary.applied, summary.matched, summary.not_applicable), (1, 0, 0));
    assert_eq!(harness.db.scalar(CREDITED).await, 3_250);
    let refused = harness.service.apply_discrepancy(1, "bob").await;
    assert!(matches!(refused, Ok(ref r) if r.outcome == ApplyOutcome::AlreadyMatched), "{refused:?}");
    assert!(matches!(harness.service.apply_line(999, "bob").await, Err(ReconcileError::NotFound(_))));
    harness.db.assert_verified().await;
    harness.stop().await;
}

async fn fifty_webhooks_and_fifty_applies_fired_at_once_at_two_servers_credit_each_payment_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let second = TestServer::start(common::settings(&harness.db)).await;
    for round in 0..3u8 {
        let numbers: Vec<String> = (0..50).map(|i| format!("R{round}-{i}")).collect();
        let lines: Vec<StatementLine> = numbers.iter().map(|n| credit(n, 100 + i64::from(round))).collect();
        let ids = import(&harness, round + 1, &lines).await;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (number, line)) in numbers.iter().zip(ids).enumerate() {
            let body = webhook(number, 100 + i64::from(round));
            let server = if i % 2 == 0 { &harness.server } else { &second };
            let url = server.url("/api/webhook/bank/");
            tasks.spawn(async move { post_webhook_to(&url, &body).await == 200 });
            let service = harness.service.clone();
            tasks.spawn(async move { service.apply_line(line, "alice").await.is_ok() });
        }
        while let Some(ok) = tasks.join_next().await {
            assert!(ok.expect("task"), "every webhook and apply answers");
        }
    }
    assert_eq!(harness.db.scalar(CREDITS).await, 150, "each payment credited once");
    assert_eq!(harness.db.scalar(MATCHES).await, 150, "each line matched once");
    assert_eq!(harness.db.scalar(CREDITED).await, 50 * (100 + 101 + 102));
    second.stop().await;
    harness.db.assert_verified().await;
    harness.stop().await;
}

async fn ten_applies_of_one_line_at_once_credit_it_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let lines = import(&harness, 1, &[credit("PAY-9", 900)]).await;
    let mut applies = tokio::task::JoinSet::new();
    for i in 0..10 {
        let service = harness.service.clone();
        let line = lines[0];
        applies.spawn(async move { service.apply_line(line, &format!("operator-{i}")).await });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = applies.join_next().await {
        outcomes.push(done.expect("task").expect("apply").outcome);
    }
    assert_eq!(outcomes.iter().filter(|o| **o == ApplyOutcome::Applied).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == ApplyOutcome::AlreadyMatched).count(), 9, "{outcomes:?}");
    assert_eq!(harness.db.scalar(CREDITS).await, 1);
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// Waits until the async applier has handled every recorded notice.
async fn applier_done(harness: &Harness) {
    for _ in 0..500 {
        if harness.db.scalar("SELECT COUNT(*) FROM bank_payments WHERE status = 'received'").await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the applier never applied the recorded notices");
}

async fn in_async_mode_a_recorded_notice_meets_the_apply_in_either_order_and_is_credited_once(backend: Backend) {
    let Some(harness) = Harness::start_with(backend, common::async_settings).await else { return };
    let lines = import(&harness, 1, &[credit("A-1", 500), credit("A-2", 600)]).await;
    // Apply first, then the notice: recorded, and the applier records it duplicate.
    harness.service.apply_line(lines[0], "alice").await.expect("apply");
    assert_eq!(harness.server.post_webhook(&webhook("A-1", 500)).await.0, 200);
    applier_done(&harness).await;
    assert_eq!(harness.db.scalar(DUPLICATES).await, 1);
    assert_eq!(harness.db.scalar(CREDITS).await, 1);
    // The notice first (recorded), then the apply: the line is matched to it, and the applier credits it once.
    assert_eq!(harness.server.post_webhook(&webhook("A-2", 600)).await.0, 200);
    let applied = harness.service.apply_line(lines[1], "alice").await.expect("apply");
    assert!(matches!(applied.outcome, ApplyOutcome::Matched | ApplyOutcome::AlreadyMatched), "{applied:?}");
    applier_done(&harness).await;
    assert_eq!(harness.db.scalar(CREDITS).await, 2);
    assert_eq!(harness.db.scalar(CREDITED).await, 1_100);
    assert_eq!(harness.db.scalar(MATCHES).await, 2);
    harness.db.assert_verified().await;
    harness.stop().await;
}

async fn random_interleavings_of_webhooks_imports_and_applies_credit_every_payment_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    // 60 real payments; every tenth repeats the one before it exactly (twins). Most have a webhook.
    let payments: Vec<(String, i64, bool)> = (0..60)
        .map(|i: i64| {
            let base = if i % 10 == 9 { i - 1 } else { i };
            (format!("X-{base}"), 100 + base, rng.random_bool(0.85))
        })
        .collect();
    // Three imports of 20 payments each (twins in one file: identical lines of two files are one line),
    // racing their webhooks (shuffled, each delayed at random), then an apply-all racing the late ones.
    let order: Vec<usize> = (0..payments.len()).collect();
    for (round, events) in order.chunks(20).enumerate() {
        let mut events = events.to_vec();
        events.shuffle(&mut rng);
        let mut tasks = tokio::task::JoinSet::new();
        for &i in &events {
            let (number, amount, delivered) = payments[i].clone();
            let delay = Duration::from_millis(rng.random_range(0..150));
            if delivered {
                let url = harness.server.url("/api/webhook/bank/");
                tasks.spawn(async move {
                    tokio::time::sleep(delay).await;
                    assert_eq!(post_webhook_to(&url, &webhook(&number, amount)).await, 200);
                });
            }
        }
        let lines: Vec<StatementLine> = events.iter().map(|&i| credit(&payments[i].0, payments[i].1)).collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        import(&harness, u8::try_from(round).expect("round") + 1, &lines).await;
        let service = harness.service.clone();
        let import_id = i64::try_from(round).expect("round") + 1;
        tasks.spawn(async move {
            service.apply_all(import_id, "alice").await.expect("apply all");
        });
        while let Some(done) = tasks.join_next().await {
            done.expect("task");
        }
    }
    // Whatever a race left open (a webhook whose line was judged before it arrived) is applied now.
    for import in 1..=3 {
        harness.service.apply_all(import, "alice").await.expect("apply all");
    }
    let total: i64 = payments.iter().map(|p| p.1).sum();
    assert_eq!(harness.db.scalar(CREDITED).await, total, "every real payment credited exactly once");
    assert_eq!(harness.db.scalar(CREDITS).await, 60);
    assert_eq!(harness.db.scalar(MATCHES).await, 60);
    harness.db.assert_verified().await;
    harness.stop().await;
}

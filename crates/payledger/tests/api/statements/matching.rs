//! Matching and judging a line against notices that differ from it by one field (the amount a bank reference
//! names, the document date) and applying it afterwards: the line is never matched silently to the wrong
//! payment, never credited while an open payment may be it, and credited once its candidates are gone.

use payledger::statement::generate::csv_mapping;
use payledger::statement::{ImportOptions, ReconcileError};
use payledger_core::statement::AccountNumber;
use time::macros::date;

use super::import::{HEADER, csv_line, csv_options, import, notice};
use super::{ACCOUNT, Harness};
use crate::common::{Backend, on_both_backends};

/// The payer of every notice and line here.
const PAYER: &str = "7707083893";

on_both_backends!(
    a_bank_reference_naming_a_notice_of_another_amount_is_not_a_silent_match,
    a_line_whose_notice_differs_only_by_date_is_not_applied_as_a_second_credit,
    an_amount_mismatch_whose_only_candidate_a_later_line_matched_can_be_applied,
);

/// A 70.00 line whose bank reference names a 700.00 notice is not matched to it by rule 1 (bank id): the line is
/// an `amount_mismatch` naming that payment as its candidate, and `verify` finds no match of two amounts.
async fn a_bank_reference_naming_a_notice_of_another_amount_is_not_a_silent_match(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let notice = notice("15", date!(2024 - 04 - 29), "700.00");
    let operation = notice["operation_id"].as_str().expect("operation id").to_owned();
    assert_eq!(harness.server.post_webhook(&notice).await.0, 200);
    let account = AccountNumber::parse(ACCOUNT).expect("account");
    let mapping = format!("{},bank_ref=Ссылка", csv_mapping(&account));
    let file = format!(
        "Дата проводки;Номер;Дата документа;Направление;Сумма;ИНН;Контрагент;Счет;БИК;Назначение;Ссылка\n\
         29.04.2024;15;29.04.2024;credit;70.00;7707083893;ООО Ромашка;40702810411593609608;044560453;счёт 15;{operation}\n"
    );
    let options = ImportOptions { csv: Some(mapping), ..ImportOptions::default() };
    let summary = harness.service.import(bytes::Bytes::from(file), options, None).await.expect("import");
    // verify first: its check 15 reports the match the engine just wrote.
    harness.db.assert_verified().await;
    assert_eq!(summary.matched, 0, "a 70.00 line matched the 700.00 notice by its bank reference: {summary:?}");
    let named = harness
        .db
        .scalar(
            "SELECT COUNT(*) FROM statement_discrepancies WHERE kind = 'amount_mismatch'
                 AND CAST(details AS TEXT) LIKE '%[' || (SELECT MIN(id) FROM bank_payments) || ']%'",
        )
        .await;
    assert_eq!(named, 1, "the line is an amount_mismatch naming the payment its bank reference names: {summary:?}");
    harness.stop().await;
}

/// A credited webhook and a statement line of the same payer, document number and amount whose document dates
/// differ by one day (a bank that dates the notice by acceptance, say): the line is `ambiguous` with that
/// payment as its candidate, and an apply is refused naming the notice, so the payer is credited once. A notice
/// a day off that arrives after a line was judged `missing_notice` stops its apply the same way.
async fn a_line_whose_notice_differs_only_by_date_is_not_applied_as_a_second_credit(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    // The notice says 28 April (Moscow); the line says 27 April.
    assert_eq!(harness.server.post_webhook(&notice("15", date!(2024 - 04 - 28), "700.00")).await.0, 200);
    let file = format!("{HEADER}{}", csv_line("29.04.2024", "15", "27.04.2024", "credit", "700.00", PAYER));
    let summary = import(&harness, file, csv_options()).await;
    assert_eq!(summary.matched, 0, "{summary:?}");
    let line = harness.db.scalar("SELECT MIN(id) FROM statement_lines").await;
    let applied = harness.service.apply_line(line, "alice").await;
    let credits = harness.db.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'bank_payment'").await;
    assert_eq!(credits, 1, "one payment of 700.00 credited {credits} times; the apply answered {applied:?}");
    assert_eq!(summary.discrepancies.ambiguous, 1, "{summary:?}");
    match applied {
        Err(ReconcileError::NotApplicable { reason }) => {
            assert!(reason.contains("700.00 RUB dated 2024-04-28"), "{reason}");
        }
        other => panic!("the apply must be refused, naming the notice: {other:?}"),
    }
    // The notice that arrives after the judgement, a day off, stops the apply too: a second line of the same
    // payer, number and amount, judged missing_notice before any notice, then the notice dated a day later.
    // 28 April in Moscow; the line says 27 April.
    let late = notice("16", date!(2024 - 04 - 28), "50.00");
    let file = format!("{HEADER}{}", csv_line("29.04.2024", "16", "27.04.2024", "credit", "50.00", PAYER));
    let summary = import(&harness, file, csv_options()).await;
    assert_eq!(summary.discrepancies.missing_notice, 1, "{summary:?}");
    assert_eq!(harness.server.post_webhook(&late).await.0, 200);
    let line = harness.db.scalar("SELECT MIN(id) FROM statement_lines WHERE amount = 5000").await;
    let applied = harness.service.apply_line(line, "alice").await;
    assert!(matches!(&applied, Err(ReconcileError::NotApplicable { .. })), "{applied:?}");
    let credits = harness.db.scalar("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'bank_payment'").await;
    assert_eq!(credits, 2, "the 50.00 payment credited twice; the apply answered {applied:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// One payer pays 70.00 and 700.00 under one document number and date; only the 700.00 webhook arrives. The
/// 70.00 line, booked a day earlier, is judged `amount_mismatch` naming the 700.00 payment; the next day's
/// statement matches that payment to its own 700.00 line. Its only candidate gone, the 70.00 line is a missing
/// notice by now: an apply credits the payer the 70.00 (770.00 in all), and `verify` agrees.
async fn an_amount_mismatch_whose_only_candidate_a_later_line_matched_can_be_applied(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    assert_eq!(harness.server.post_webhook(&notice("15", date!(2024 - 04 - 28), "700.00")).await.0, 200);
    let row = |booked: &str, amount: &str| csv_line(booked, "15", "28.04.2024", "credit", amount, PAYER);
    let summary = import(&harness, format!("{HEADER}{}", row("28.04.2024", "70.00")), csv_options()).await;
    assert_eq!(summary.discrepancies.amount_mismatch, 1, "{summary:?}");
    let summary = import(&harness, format!("{HEADER}{}", row("29.04.2024", "700.00")), csv_options()).await;
    assert_eq!(summary.matched, 1, "{summary:?}");
    assert_eq!(harness.server.balance_text(PAYER).await.as_deref(), Some("700.00"));
    let seventy = harness.db.scalar("SELECT MIN(id) FROM statement_lines WHERE amount = 7000").await;
    let applied = harness.service.apply_line(seventy, "alice").await;
    assert!(
        matches!(&applied, Ok(result) if result.outcome == payledger::statement::ApplyOutcome::Applied),
        "the 70.00 payment cannot be credited: {applied:?}"
    );
    assert_eq!(harness.server.balance_text(PAYER).await.as_deref(), Some("770.00"), "the 70.00 is credited once");
    harness.db.assert_verified().await;
    harness.stop().await;
}

//! Importing statement files end to end through the service on a started server's database: every sample
//! format, re-imports, overlapping files, bad files, twins, the closed-day rule, notices without a line and a
//! resumed import.

use std::collections::HashMap;

use payledger::engine::batch::{WriteCommand, WriteOutcome};
use payledger::engine::judging::FinishImport;
use payledger::engine::statements::{self, BeginImport, SectionCounts, StatementOutcome};
use payledger::statement::generate::{GeneratedNotice, GeneratorSpec, OutputFormat, csv_mapping, generate};
use payledger::statement::{
    FormatChoice, ImportOptions, ImportPhase, ImportProgress, ImportSummary, ProgressFn, ReconcileError,
    ReconcileSettings, Reconciliation, ReportQuery, StatementSource,
};
use payledger_core::money::Currency;
use payledger_core::statement::{AccountNumber, AccountSummary, StatementFormat, moscow_date};
use time::OffsetDateTime;
use time::macros::date;

use super::{ACCOUNT, Harness};
use crate::common::{Backend, on_both_backends};

on_both_backends!(
    each_sample_file_imports_matching_every_delivered_notice_and_a_reimport_changes_nothing,
    overlapping_statements_store_and_match_each_payment_once,
    a_bad_file_is_refused_with_its_line_and_nothing_is_stored,
    identical_twin_payments_with_one_notice_leave_one_missing_notice,
    a_line_is_judged_against_another_amount_only_after_the_whole_file_is_matched,
    the_same_statement_in_every_format_stores_each_payment_once,
    a_line_of_an_open_day_stays_pending_until_a_later_import_finishes_after_its_day,
    a_credited_notice_absent_from_complete_statements_becomes_notice_without_line_until_a_line_matches,
    an_interrupted_import_left_loading_is_resumed_by_importing_the_same_file,
    importing_one_account_of_a_file_then_the_whole_file_stores_the_other_account,
    resuming_an_interrupted_import_for_one_account_does_not_complete_the_other_half_stored,
    a_nul_character_in_a_line_is_refused_as_a_bad_file_not_a_failed_store,
    a_file_that_changes_between_the_passes_is_not_finished,
    a_line_that_changes_between_the_passes_into_one_pass_one_refuses_is_never_stored,
    a_one_account_file_is_one_import_with_or_without_its_account_named,
    an_import_is_not_resumed_with_other_sections_than_it_was_started_with,
);

fn samples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/samples")
}

pub(super) fn csv_options() -> ImportOptions {
    let account = AccountNumber::parse(ACCOUNT).expect("account");
    ImportOptions { csv: Some(csv_mapping(&account)), file_name: Some("bank.csv".into()), ..ImportOptions::default() }
}

pub(super) async fn import(harness: &Harness, bytes: impl Into<bytes::Bytes>, options: ImportOptions) -> ImportSummary {
    harness.service.import(bytes.into(), options, None).await.expect("import")
}

async fn count(harness: &Harness, sql: &'static str) -> i64 {
    harness.db.scalar(sql).await
}

async fn each_sample_file_imports_matching_every_delivered_notice_and_a_reimport_changes_nothing(backend: Backend) {
    let notices = std::fs::read_to_string(samples().join("notices.jsonl")).expect("notices");
    let mapping = std::fs::read_to_string(samples().join("statement.csv-mapping.txt")).expect("mapping");
    let files = [
        ("statement-1c-cp1251.txt", "1c", None),
        ("statement-1c-utf8.txt", "1c", None),
        ("statement-camt053.xml", "camt053", None),
        ("statement.csv", "csv", Some(mapping.trim().to_owned())),
    ];
    let mut seen = Vec::new();
    for (name, format, csv) in files {
        let Some(harness) = Harness::start(backend).await else { return };
        for line in notices.lines() {
            let body: serde_json::Value = serde_json::from_str(line).expect("notice");
            assert_eq!(harness.server.post_webhook(&body).await.0, 200, "{line}");
        }
        let bytes = std::fs::read(samples().join(name)).expect("sample");
        let options = ImportOptions { csv, file_name: Some(name.into()), ..ImportOptions::default() };
        let summary = import(&harness, bytes.clone(), options.clone()).await;
        assert_eq!(
            (summary.format.as_str(), summary.state.as_str(), summary.already_imported),
            (format, "complete", false)
        );
        assert_eq!((summary.lines_read, summary.lines_new, summary.lines_already_known), (18, 18, 0), "{name}");
        // Every delivered notice is one of the file's payments; the lost ones and bank orders are judged.
        assert_eq!(summary.matched, notices.lines().count() as u64, "{name}");
        // Only customers' payments are matched or judged: reversals, own transfers and bank orders are stored
        // for the totals.
        let payments =
            count(&harness, "SELECT COUNT(*) FROM statement_lines WHERE direction = 'credit' AND nature = 'payment'")
                .await;
        let judged = summary.discrepancies.missing_notice + summary.discrepancies.unknown_payer;
        assert!(payments > 0 && (payments as u64) < summary.accounts.iter().map(|a| a.credit_lines).sum(), "{name}");
        assert_eq!(judged, payments as u64 - summary.matched, "{name}: {summary:?}");
        assert_eq!(summary.discrepancies.notice_without_line, 0, "{name}");
        let days: Vec<_> = summary
            .accounts
            .iter()
            .map(|a| (a.period_start.clone(), a.period_end.clone(), a.credit_lines, a.debit_lines))
            .collect();
        seen.push((summary.matched, summary.discrepancies, days));

        let again = import(&harness, bytes, options).await;
        assert!(again.already_imported, "{name}");
        assert_eq!((again.id, again.lines_new, again.matched), (summary.id, summary.lines_new, summary.matched));
        assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_lines").await, 18);
        assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_imports").await, 1);
        assert_eq!(count(&harness, "SELECT COUNT(*) FROM audit_log WHERE action = 'statement.import'").await, 1);
        harness.db.assert_verified().await;
        harness.stop().await;
    }
    // The four files are one statement: the same days, lines and judgement (CSV states no balances).
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:#?}");
}

fn generated(spec: &GeneratorSpec, notices: &mut HashMap<uuid::Uuid, GeneratedNotice>) -> Vec<u8> {
    let mut bytes = Vec::new();
    generate(spec, OutputFormat::OneCUtf8Bom, &mut bytes, &mut |notice| {
        notices.insert(notice.operation_id, notice.clone());
    })
    .expect("generate");
    bytes
}

async fn overlapping_statements_store_and_match_each_payment_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let account = AccountNumber::parse(ACCOUNT).expect("account");
    let first_spec =
        GeneratorSpec { twin_per_mille: 100, ..GeneratorSpec::new(7, date!(2024 - 03 - 01), 3, 5, 20, account) };
    let mut notices = HashMap::new();
    let first = generated(&first_spec, &mut notices);
    let second = generated(&first_spec.overlap(2), &mut notices);
    let delivered: Vec<&GeneratedNotice> = notices.values().filter(|notice| !notice.lost).collect();
    for notice in &delivered {
        let body: serde_json::Value = serde_json::from_str(&notice.to_json()).expect("json");
        assert_eq!(harness.server.post_webhook(&body).await.0, 200);
    }
    let one = import(&harness, first, ImportOptions::default()).await;
    let two = import(&harness, second, ImportOptions::default()).await;
    assert_ne!(one.id, two.id);
    assert!(two.lines_already_known > 0, "the last day of the first is the first day of the second: {two:?}");
    assert_eq!(two.lines_new + two.lines_already_known, two.lines_read);
    assert_eq!(
        count(&harness, "SELECT COUNT(*) FROM statement_lines").await,
        i64::try_from(one.lines_read + two.lines_new).expect("count")
    );
    // Every delivered notice is matched once, by one line, whichever file stored it.
    assert_eq!(one.matched + two.matched, delivered.len() as u64);
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_matches").await, delivered.len() as i64);
    assert_eq!(
        count(&harness, "SELECT COUNT(DISTINCT payment_id) FROM statement_matches").await,
        delivered.len() as i64
    );
    assert_eq!(
        count(&harness, "SELECT COUNT(*) FROM statement_discrepancies WHERE kind = 'notice_without_line'").await,
        0
    );
    harness.db.assert_verified().await;
    harness.stop().await;
}

async fn a_bad_file_is_refused_with_its_line_and_nothing_is_stored(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let good = std::fs::read_to_string(samples().join("statement-1c-utf8.txt")).expect("sample");
    let amount = good.lines().position(|line| line.starts_with("Сумма=")).expect("an amount") as u64 + 1;
    let bad: String = good
        .lines()
        .enumerate()
        .map(|(index, line)| if index as u64 + 1 == amount { "Сумма=1.505".to_owned() } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\r\n");
    let refused = harness.service.import(bytes::Bytes::from(bad), ImportOptions::default(), None).await;
    match refused {
        Err(ReconcileError::Invalid(error)) => {
            assert_eq!(error.line, amount, "{error}");
            assert!(error.reason.contains("1.505"), "{error}");
        }
        other => panic!("a three-decimal amount must be refused: {other:?}"),
    }
    let csv = std::fs::read(samples().join("statement.csv")).expect("csv");
    let unmapped = ImportOptions { format: FormatChoice::Fixed(StatementFormat::Csv), ..ImportOptions::default() };
    let refused = harness.service.import(bytes::Bytes::from(csv.clone()), unmapped, None).await;
    assert!(matches!(refused, Err(ReconcileError::Invalid(_) | ReconcileError::CsvMapping(_))), "{refused:?}");
    let other = AccountNumber::parse("40702810900000000002").expect("account");
    let elsewhere = ImportOptions { account: Some(other), ..csv_options() };
    let refused = harness.service.import(bytes::Bytes::from(csv), elsewhere, None).await;
    assert!(matches!(refused, Err(ReconcileError::AccountNotInFile(_))), "{refused:?}");
    // A file over the size limit is refused before it is read.
    let small = Reconciliation::new(
        harness.service.engine().clone(),
        harness.service.store().clone(),
        ReconcileSettings { max_file_bytes: 100, ..ReconcileSettings::default() },
    );
    let large = std::fs::read(samples().join("statement-camt053.xml")).expect("camt");
    let refused = small.import(bytes::Bytes::from(large), ImportOptions::default(), None).await;
    assert!(matches!(refused, Err(ReconcileError::TooLarge { limit: 100 })), "{refused:?}");
    drop(small);
    for table in ["statement_imports", "statement_lines", "statement_accounts", "statement_discrepancies"] {
        let sql: &'static str = Box::leak(format!("SELECT COUNT(*) FROM {table}").into_boxed_str());
        assert_eq!(count(&harness, sql).await, 0, "{table}");
    }
    harness.stop().await;
}

pub(super) const HEADER: &str =
    "Дата проводки;Номер;Дата документа;Направление;Сумма;ИНН;Контрагент;Счет;БИК;Назначение\n";

pub(super) fn csv_line(booked: &str, number: &str, dated: &str, direction: &str, amount: &str, inn: &str) -> String {
    format!(
        "{booked};{number};{dated};{direction};{amount};{inn};ООО Ромашка;40702810411593609608;044560453;счёт {number}\n"
    )
}

/// A notice of 7707083893's document `number` of Moscow day `day` (`YYYY-MM-DD`).
pub(super) fn notice(number: &str, day: time::Date, amount: &str) -> serde_json::Value {
    let at = day.midnight().assume_offset(payledger_core::statement::MOSCOW);
    serde_json::json!({
        "operation_id": uuid::Uuid::new_v4().to_string(),
        "amount": amount,
        "payer_inn": "7707083893",
        "document_number": number,
        "document_date": at.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).expect("date"),
    })
}

async fn identical_twin_payments_with_one_notice_leave_one_missing_notice(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    assert_eq!(harness.server.post_webhook(&notice("15", date!(2024 - 04 - 29), "700.00")).await.0, 200);
    let file = format!(
        "{HEADER}{}{}",
        csv_line("29.04.2024", "15", "29.04.2024", "credit", "700.00", "7707083893"),
        csv_line("29.04.2024", "15", "29.04.2024", "credit", "700.00", "7707083893"),
    );
    let phases = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = phases.clone();
    let progress: ProgressFn = std::sync::Arc::new(move |progress: &ImportProgress| {
        seen.lock().expect("phases").push((progress.phase, progress.lines_read, progress.lines_stored));
    });
    let summary =
        harness.service.import(bytes::Bytes::from(file), csv_options(), Some(progress)).await.expect("import");
    assert_eq!((summary.lines_new, summary.matched, summary.discrepancies.missing_notice), (2, 1, 1), "{summary:?}");
    // The progress told every phase: validating the two lines, storing them, then judging.
    let phases = phases.lock().expect("phases").clone();
    assert_eq!(phases.first().map(|p| p.0), Some(ImportPhase::Validating), "{phases:?}");
    assert!(phases.contains(&(ImportPhase::Importing, 2, 2)), "{phases:?}");
    assert_eq!(phases.last(), Some(&(ImportPhase::Judging, 2, 2)), "{phases:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// Two payments of one payer with one number and date but different amounts, the first one's notice lost:
/// chunks of a file are matched one after another, so the lost one's line (in the first chunk) is not judged
/// the other's `amount_mismatch` before the other's own line (a later chunk) has taken that notice: it is a
/// `missing_notice`. A notice with another amount and no line of its own still is one.
async fn a_line_is_judged_against_another_amount_only_after_the_whole_file_is_matched(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let day = date!(2024 - 04 - 22);
    assert_eq!(harness.server.post_webhook(&notice("55", day, "10.00")).await.0, 200);
    assert_eq!(harness.server.post_webhook(&notice("56", day, "9.00")).await.0, 200);
    let mut file = String::from(HEADER);
    file += &csv_line("22.04.2024", "55", "22.04.2024", "credit", "5.00", "7707083893");
    // More than a chunk of the bank's own debits between the two credits.
    for number in 1000..2100 {
        file += &csv_line("22.04.2024", &number.to_string(), "22.04.2024", "debit", "1.00", "7707083893");
    }
    file += &csv_line("22.04.2024", "55", "22.04.2024", "credit", "10.00", "7707083893");
    file += &csv_line("22.04.2024", "56", "22.04.2024", "credit", "7.00", "7707083893");
    let summary = import(&harness, file, csv_options()).await;
    let counts = &summary.discrepancies;
    assert_eq!(
        (summary.lines_new, summary.matched, counts.missing_notice, counts.amount_mismatch, counts.ambiguous),
        (1103, 1, 1, 1, 0),
        "{summary:?}"
    );
    // The 5.00 line is the lost payment (Apply credits it); the 7.00 line meets the 9.00 notice.
    let missing = "SELECT l.amount FROM statement_discrepancies d JOIN statement_lines l ON l.id = d.line_id
                   WHERE d.kind = 'missing_notice'";
    let mismatch = "SELECT l.amount FROM statement_discrepancies d JOIN statement_lines l ON l.id = d.line_id
                    WHERE d.kind = 'amount_mismatch'";
    assert_eq!((count(&harness, missing).await, count(&harness, mismatch).await), (500, 700));
    harness.db.assert_verified().await;
    harness.stop().await;
}

fn moscow_today() -> time::Date {
    moscow_date(OffsetDateTime::now_utc())
}

fn dmy(day: time::Date) -> String {
    format!("{:02}.{:02}.{}", day.day(), u8::from(day.month()), day.year())
}

async fn a_line_of_an_open_day_stays_pending_until_a_later_import_finishes_after_its_day(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let today = moscow_today();
    let yesterday = today.previous_day().expect("yesterday");
    // The payer is known (a notice of another document), so its unmatched line is a missing notice.
    assert_eq!(harness.server.post_webhook(&notice("1", yesterday, "5.00")).await.0, 200);
    let file = format!(
        "{HEADER}{}{}",
        csv_line(&dmy(yesterday), "1", &dmy(yesterday), "credit", "5.00", "7707083893"),
        csv_line(&dmy(today), "2", &dmy(today), "credit", "9.00", "7707083893"),
    );
    let summary = import(&harness, file, csv_options()).await;
    assert_eq!((summary.matched, summary.pending, summary.discrepancies.missing_notice), (1, 1, 0), "{summary:?}");

    // The next day, another import's finish judges the line whose day has closed.
    let tomorrow = today.next_day().expect("tomorrow");
    let id = begin_other_import(&harness, tomorrow).await;
    let finish = finish_command(id, tomorrow);
    let outcome = harness.service.engine().submit(WriteCommand::StatementFinish(finish)).await.expect("finish");
    assert_eq!(outcome, WriteOutcome::Statement(StatementOutcome::ImportFinished { id, matched: 0, discrepancies: 1 }));
    let first = harness.service.import_summary(summary.id).await.expect("summary");
    assert_eq!((first.pending, first.discrepancies.missing_notice), (0, 1), "{first:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

fn other_begin(day: time::Date) -> BeginImport {
    let summary = AccountSummary {
        account: AccountNumber::parse("40702810900000000009").expect("account"),
        currency: Currency::RUB,
        period_start: day,
        period_end: day,
        opening_balance: None,
        total_credits: None,
        total_debits: None,
        closing_balance: None,
        source_line: 1,
    };
    BeginImport {
        sha256: [9; 32],
        file_sha256: [9; 32],
        format: StatementFormat::Csv,
        file_name: None,
        sections: vec![SectionCounts { summary, credit_lines: 0, debit_lines: 0 }],
        line_count: 0,
        by: None,
    }
}

async fn begin_other_import(harness: &Harness, day: time::Date) -> i64 {
    match harness.service.engine().submit(WriteCommand::StatementBegin(other_begin(day))).await.expect("begin") {
        WriteOutcome::Statement(StatementOutcome::ImportStarted { id }) => id,
        other => panic!("{other:?}"),
    }
}

fn finish_command(id: i64, today: time::Date) -> FinishImport {
    FinishImport { claim: statements::import_claim(&other_begin(today)), import_id: id, today, tolerance_days: 3 }
}

async fn a_credited_notice_absent_from_complete_statements_becomes_notice_without_line_until_a_line_matches(
    backend: Backend,
) {
    let Some(harness) = Harness::start(backend).await else { return };
    // Document of 20 April: days 20..=23 are covered by the April statement. 1 March: never covered.
    // 29 April: its tolerance runs to 2 May, past the statement.
    assert_eq!(harness.server.post_webhook(&notice("20", date!(2024 - 04 - 20), "20.00")).await.0, 200);
    assert_eq!(harness.server.post_webhook(&notice("01", date!(2024 - 03 - 01), "1.00")).await.0, 200);
    assert_eq!(harness.server.post_webhook(&notice("29", date!(2024 - 04 - 29), "29.00")).await.0, 200);
    let april = format!(
        "{HEADER}{}{}",
        csv_line("19.04.2024", "900", "19.04.2024", "debit", "3.00", "7707083893"),
        csv_line("30.04.2024", "901", "30.04.2024", "debit", "4.00", "7707083893"),
    );
    let summary = import(&harness, april, csv_options()).await;
    assert_eq!(summary.discrepancies.notice_without_line, 1, "{summary:?}");
    let report = harness
        .service
        .report(&ReportQuery {
            account: None,
            from: date!(2024 - 04 - 01),
            to: date!(2024 - 04 - 30),
            kind: None,
            state: None,
            cursor: None,
            limit: 50,
        })
        .await
        .expect("report");
    // April has two notices: the one without a line is judged, the 29 April one is still pending.
    assert_eq!((report.counts.notices, report.counts.pending_notices), (2, 1), "{report:?}");
    let [without] = report.discrepancies.as_slice() else { panic!("{report:?}") };
    assert_eq!((without.amount.as_str(), without.day.as_str()), ("20.00", "2024-04-20"), "{without:?}");

    // A statement of another account books the 20 April payment late: it matches, and the discrepancy is
    // resolved by the match. Its coverage stops at that account's days, so nothing new is judged.
    let may = format!("{HEADER}{}", csv_line("01.05.2024", "20", "20.04.2024", "credit", "20.00", "7707083893"));
    let other = AccountNumber::parse("40702810900000000002").expect("account");
    let options = ImportOptions { csv: Some(csv_mapping(&other)), ..ImportOptions::default() };
    let late = import(&harness, may, options).await;
    assert_eq!((late.matched, late.discrepancies.notice_without_line), (1, 0), "{late:?}");
    assert_eq!(
        count(
            &harness,
            "SELECT COUNT(*) FROM statement_discrepancies WHERE kind = 'notice_without_line' AND state = 'resolved'
               AND resolution = 'matched'"
        )
        .await,
        1
    );
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_discrepancies WHERE state = 'open'").await, 0);
    harness.db.assert_verified().await;
    harness.stop().await;
}

async fn an_interrupted_import_left_loading_is_resumed_by_importing_the_same_file(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let bytes = std::fs::read(samples().join("statement-camt053.xml")).expect("sample");
    let first = import(&harness, bytes.clone(), ImportOptions::default()).await;
    // As if the process had died after storing some lines: the import is `loading`, two lines are gone.
    harness.db.execute("UPDATE statement_imports SET state = 'loading', completed_at = NULL").await;
    harness
        .db
        .execute(
            "DELETE FROM statement_lines WHERE id IN (SELECT id FROM statement_lines WHERE direction = 'debit'
               ORDER BY id DESC LIMIT 2)",
        )
        .await;
    let resumed = import(&harness, bytes, ImportOptions::default()).await;
    assert_eq!((resumed.id, resumed.state.as_str(), resumed.already_imported), (first.id, "complete", false));
    assert_eq!((resumed.lines_read, resumed.lines_new, resumed.matched), (18, 18, first.matched), "{resumed:?}");
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_lines").await, 18);
    harness.db.assert_verified().await;
    harness.stop().await;
}

const OTHER: &str = "40702810900000000002";

/// A 1C file (UTF-8, CRLF) with two account sections of 26.04.2024, one credit of 100.00 on each.
fn two_accounts() -> String {
    let section = |account: &str| {
        format!(
            "СекцияРасчСчет\r\nДатаНачала=26.04.2024\r\nДатаКонца=26.04.2024\r\nРасчСчет={account}\r\n\
             НачальныйОстаток=0.00\r\nВсегоПоступило=100.00\r\nВсегоСписано=0.00\r\nКонечныйОстаток=100.00\r\n\
             КонецРасчСчет\r\n"
        )
    };
    let document = |number: &str, account: &str| {
        format!(
            "СекцияДокумент=Платежное поручение\r\nНомер={number}\r\nДата=26.04.2024\r\nСумма=100.00\r\n\
             ПлательщикСчет=40702810411593609608\r\nПлательщикИНН=7707083893\r\nПлательщик1=ООО Ромашка\r\n\
             ПлательщикБИК=044560453\r\nПолучательСчет={account}\r\nПолучательИНН=7700002020\r\n\
             ДатаПоступило=26.04.2024\r\nНазначениеПлатежа=Оплата {number}\r\nКонецДокумента\r\n"
        )
    };
    format!(
        "1CClientBankExchange\r\nВерсияФормата=1.03\r\nКодировка=Windows\r\nДатаНачала=26.04.2024\r\n\
         ДатаКонца=26.04.2024\r\nРасчСчет={ACCOUNT}\r\nРасчСчет={OTHER}\r\n{}{}{}{}КонецФайла\r\n",
        section(ACCOUNT),
        section(OTHER),
        document("101", ACCOUNT),
        document("202", OTHER),
    )
}

fn only(account: &str) -> ImportOptions {
    ImportOptions { account: Some(AccountNumber::parse(account).expect("account")), ..ImportOptions::default() }
}

/// Each account of a file is an import of its own: importing one account, then the whole file, stores the other
/// account's line (the first account's is known), and each import again answers "already imported".
async fn importing_one_account_of_a_file_then_the_whole_file_stores_the_other_account(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let file = bytes::Bytes::from(two_accounts());
    let first = harness.service.import(file.clone(), only(ACCOUNT), None).await.expect("first account");
    assert_eq!((first.state.as_str(), first.lines_new, first.accounts.len()), ("complete", 1, 1), "{first:?}");
    let whole = harness.service.import(file.clone(), ImportOptions::default(), None).await.expect("whole file");
    assert_eq!((whole.already_imported, whole.lines_new, whole.lines_already_known), (false, 1, 1), "{whole:?}");
    assert_ne!(whole.sha256, first.sha256, "the account's import has an identity of its own");
    let other_lines = count(&harness, "SELECT COUNT(*) FROM statement_lines WHERE account = '40702810900000000002'");
    assert_eq!(other_lines.await, 1, "the second account's line is stored once");
    let other = harness.service.import(file.clone(), only(OTHER), None).await.expect("other account");
    assert_eq!((other.already_imported, other.lines_new, other.lines_already_known), (false, 0, 1), "{other:?}");
    for options in [only(ACCOUNT), ImportOptions::default(), only(OTHER)] {
        let again = harness.service.import(file.clone(), options, None).await.expect("again");
        assert!(again.already_imported, "{again:?}");
    }
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_lines").await, 2);
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// A whole-file import interrupted after storing only the first account's line, then the file imported with
/// `--account` of that account: that is another import (of one section), which completes; the interrupted
/// whole-file import stays `loading` (no complete import has a section whose line is missing) until the whole
/// file is imported again and stores the other account's line.
async fn resuming_an_interrupted_import_for_one_account_does_not_complete_the_other_half_stored(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let file = bytes::Bytes::from(two_accounts());
    let first = harness.service.import(file.clone(), ImportOptions::default(), None).await.expect("import");
    assert_eq!(first.lines_new, 2, "{first:?}");
    // As if the process had died after the first account's chunk: loading, the other account's line not stored.
    harness.db.execute("UPDATE statement_imports SET state = 'loading', completed_at = NULL").await;
    harness.db.execute("DELETE FROM statement_discrepancies").await;
    harness.db.execute("DELETE FROM statement_lines WHERE account = '40702810900000000002'").await;
    let limited = harness.service.import(file.clone(), only(ACCOUNT), None).await.expect("one account");
    assert_ne!(limited.id, first.id, "{limited:?}");
    assert_eq!((limited.state.as_str(), limited.accounts.len()), ("complete", 1), "{limited:?}");
    let sql = "SELECT COUNT(*) FROM statement_imports i JOIN statement_accounts a ON a.import_id = i.id
               WHERE i.state = 'complete' AND a.account = '40702810900000000002'";
    assert_eq!(count(&harness, sql).await, 0, "a complete import has a section whose line was never stored");
    harness.db.assert_verified().await;
    let resumed = harness.service.import(file, ImportOptions::default(), None).await.expect("resume");
    assert_eq!((resumed.id, resumed.state.as_str(), resumed.lines_new), (first.id, "complete", 2), "{resumed:?}");
    let other_lines = count(&harness, "SELECT COUNT(*) FROM statement_lines WHERE account = '40702810900000000002'");
    assert_eq!(other_lines.await, 1);
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// An interrupted import whose stored sections are not the file's (started by a version that read the file
/// otherwise, say): resuming it would finish it with sections whose lines it never stored, so the begin is
/// refused and the import stays `loading`.
async fn an_import_is_not_resumed_with_other_sections_than_it_was_started_with(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let file = bytes::Bytes::from(two_accounts());
    let first = harness.service.import(file.clone(), ImportOptions::default(), None).await.expect("import");
    harness.db.execute("UPDATE statement_imports SET state = 'loading', completed_at = NULL").await;
    harness.db.execute("DELETE FROM statement_discrepancies").await;
    harness.db.execute("DELETE FROM statement_lines WHERE account = '40702810900000000002'").await;
    harness.db.execute("DELETE FROM statement_accounts WHERE account = '40702810900000000002'").await;
    let refused = harness.service.import(file, ImportOptions::default(), None).await;
    assert!(
        matches!(&refused, Err(ReconcileError::NotApplicable { reason }) if reason.contains("cannot be resumed")),
        "{refused:?}"
    );
    let state = count(&harness, "SELECT COUNT(*) FROM statement_imports WHERE state = 'loading'").await;
    assert_eq!((state, first.accounts.len()), (1, 2));
    harness.stop().await;
}

/// A NUL inside a field (PostgreSQL cannot store U+0000) is a bad file: refused in pass one with its line and
/// field, nothing stored.
async fn a_nul_character_in_a_line_is_refused_as_a_bad_file_not_a_failed_store(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let file = two_accounts().replace("НазначениеПлатежа=Оплата 101", "НазначениеПлатежа=Оплата\u{0}101");
    let result = harness.service.import(bytes::Bytes::from(file), ImportOptions::default(), None).await;
    match &result {
        Err(ReconcileError::Invalid(error)) => {
            assert_eq!(error.to_string(), "line 26: a control character (U+0000) in НазначениеПлатежа");
        }
        other => panic!("a NUL in a purpose must be a bad file: {other:?}"),
    }
    for table in ["statement_imports", "statement_lines", "statement_accounts"] {
        let sql: &'static str = Box::leak(format!("SELECT COUNT(*) FROM {table}").into_boxed_str());
        assert_eq!(count(&harness, sql).await, 0, "{table}");
    }
    harness.stop().await;
}

/// A source whose first `validated_opens` opens give `first` and later ones `then`: a file replaced while
/// it is imported.
struct Replaced {
    first: bytes::Bytes,
    then: bytes::Bytes,
    opens: std::sync::atomic::AtomicUsize,
}

impl StatementSource for Replaced {
    fn open(&self) -> std::io::Result<Box<dyn std::io::BufRead + Send>> {
        let opened = self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // The format is named, so pass one opens the file once.
        let bytes = if opened == 0 { self.first.clone() } else { self.then.clone() };
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }

    fn len(&self) -> Option<u64> {
        u64::try_from(self.first.len()).ok()
    }
}

/// Pass two reads other bytes than pass one validated (the same number of lines, another purpose): the import
/// fails before it finishes, saying the file changed, and stays `loading` for the real file to finish.
async fn a_file_that_changes_between_the_passes_is_not_finished(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let first = bytes::Bytes::from(two_accounts());
    let then = bytes::Bytes::from(two_accounts().replace("Оплата 101", "Оплата 999"));
    let source = Replaced { first: first.clone(), then, opens: 0.into() };
    let options = ImportOptions { format: FormatChoice::Fixed(StatementFormat::OneC), ..ImportOptions::default() };
    let failed = harness.service.import(source, options.clone(), None).await;
    assert!(
        matches!(&failed, Err(ReconcileError::Io(error)) if error.to_string().contains("the file changed while it was imported")),
        "{failed:?}"
    );
    assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_imports WHERE state = 'loading'").await, 1);
    let finished = harness.service.import(first, options, None).await.expect("the real file");
    assert_eq!((finished.state.as_str(), finished.lines_read), ("complete", 2), "{finished:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// Pass two reads a line pass one would have refused (a NUL in its purpose, an account without a validated
/// section, a booking date outside its section's period): the import stops, saying the file changed, before
/// the line's chunk is stored, so no line of the changed file is stored; the real file then finishes.
async fn a_line_that_changes_between_the_passes_into_one_pass_one_refuses_is_never_stored(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let first = bytes::Bytes::from(two_accounts());
    const THIRD: &str = "40702810900000000003";
    let no_section = format!("account {THIRD} has no validated section");
    let changes = [
        ("a NUL", two_accounts().replace("Оплата 202", "Оплата\u{0}202"), "a control character (U+0000)"),
        ("another account", two_accounts().replace(OTHER, THIRD), no_section.as_str()),
        (
            "a booking date outside the period",
            two_accounts().replace(
                "ДатаПоступило=26.04.2024\r\nНазначениеПлатежа=Оплата 202",
                "ДатаПоступило=27.04.2024\r\nНазначениеПлатежа=Оплата 202",
            ),
            "outside the validated period 2024-04-26..2024-04-26",
        ),
    ];
    let options = ImportOptions { format: FormatChoice::Fixed(StatementFormat::OneC), ..ImportOptions::default() };
    for (change, then, reason) in changes {
        assert_ne!(then, two_accounts(), "{change}: the replacement must change the file");
        let source = Replaced { first: first.clone(), then: bytes::Bytes::from(then), opens: 0.into() };
        let failed = harness.service.import(source, options.clone(), None).await;
        let said = match &failed {
            Err(ReconcileError::Io(error)) => error.to_string(),
            other => panic!("{change}: the import must fail as a changed file: {other:?}"),
        };
        assert!(said.contains("the file changed while it was imported") && said.contains(reason), "{change}: {said}");
        assert_eq!(count(&harness, "SELECT COUNT(*) FROM statement_lines").await, 0, "{change}: a line was stored");
        let loading = count(&harness, "SELECT COUNT(*) FROM statement_imports WHERE state = 'loading'").await;
        assert_eq!(loading, 1, "{change}");
    }
    let finished = harness.service.import(first, options, None).await.expect("the real file");
    assert_eq!((finished.state.as_str(), finished.lines_new), ("complete", 2), "{finished:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// Naming the account of a file that has no other (the CLI's `--account`, an API upload of a CSV) leaves
/// nothing out: it is the same import as the whole file, so either order answers "already imported" with the
/// file's SHA-256 as the identity.
async fn a_one_account_file_is_one_import_with_or_without_its_account_named(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let onec = bytes::Bytes::from(std::fs::read(samples().join("statement-1c-utf8.txt")).expect("sample"));
    let whole = harness.service.import(onec.clone(), ImportOptions::default(), None).await.expect("whole");
    assert_eq!((whole.already_imported, whole.state.as_str()), (false, "complete"), "{whole:?}");
    use sha2::Digest;
    let file_sha256 = payledger::hex::encode(&sha2::Sha256::digest(&onec));
    assert_eq!(whole.sha256, file_sha256, "a whole-file import is known by the file's SHA-256");
    let named = harness.service.import(onec, only(ACCOUNT), None).await.expect("with the account");
    assert_eq!((named.already_imported, named.id, named.sha256.as_str()), (true, whole.id, whole.sha256.as_str()));
    // A CSV: the API's upload always names the account; the command line without --account is the same import.
    let mapping = std::fs::read_to_string(samples().join("statement.csv-mapping.txt")).expect("mapping");
    let csv = bytes::Bytes::from(std::fs::read(samples().join("statement.csv")).expect("sample"));
    let uploaded = ImportOptions { csv: Some(mapping.trim().to_owned()), ..only(ACCOUNT) };
    let first = harness.service.import(csv.clone(), uploaded, None).await.expect("csv with the account");
    assert!(!first.already_imported, "{first:?}");
    let cli = ImportOptions { csv: Some(mapping.trim().to_owned()), ..ImportOptions::default() };
    let again = harness.service.import(csv, cli, None).await.expect("csv without the account");
    assert_eq!((again.already_imported, again.id), (true, first.id), "{again:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

/// The time of a 100,000-line 1C import on SQLite (run by hand: `cargo test … -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn a_hundred_thousand_line_import_on_sqlite_is_timed() {
    let Some(harness) = Harness::start(Backend::Sqlite).await else { return };
    let account = AccountNumber::parse(ACCOUNT).expect("account");
    let spec = GeneratorSpec::new(11, date!(2024 - 01 - 01), 10, 200, 10_000, account);
    let mut notices = HashMap::new();
    let bytes = generated(&spec, &mut notices);
    for notice in notices.values().filter(|notice| !notice.lost).take(2_000) {
        let body: serde_json::Value = serde_json::from_str(&notice.to_json()).expect("json");
        assert_eq!(harness.server.post_webhook(&body).await.0, 200);
    }
    let started = std::time::Instant::now();
    let summary = import(&harness, bytes, ImportOptions::default()).await;
    println!("100k-line import: {:?} ({summary:?})", started.elapsed());
    assert_eq!(summary.lines_new, summary.lines_read);
    harness.stop().await;
}

/// The four samples are one statement (the same account, days and payments) in four formats, each with its
/// own SHA-256: importing them all into one ledger must store each payment once, or a payment matched to its
/// notice by the first file is a `missing_notice` of the second, which an apply credits a second time.
async fn the_same_statement_in_every_format_stores_each_payment_once(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/samples");
    let notices = std::fs::read_to_string(samples.join("notices.jsonl")).expect("notices");
    for line in notices.lines() {
        let body: serde_json::Value = serde_json::from_str(line).expect("notice");
        assert_eq!(harness.server.post_webhook(&body).await.0, 200, "{line}");
    }
    let mapping = std::fs::read_to_string(samples.join("statement.csv-mapping.txt")).expect("mapping");
    let files = [
        ("statement-1c-utf8.txt", None),
        ("statement-1c-cp1251.txt", None),
        ("statement-camt053.xml", None),
        ("statement.csv", Some(mapping.trim().to_owned())),
    ];
    let mut stored = Vec::new();
    for (name, csv) in files {
        let bytes = std::fs::read(samples.join(name)).expect("sample");
        let options = ImportOptions { csv, file_name: Some(name.into()), ..ImportOptions::default() };
        let summary = harness.service.import(bytes::Bytes::from(bytes), options, None).await.expect("import");
        stored.push((name, summary.lines_new, summary.discrepancies.missing_notice));
    }
    let lines = harness.db.scalar("SELECT COUNT(*) FROM statement_lines").await;
    assert_eq!(lines, 18, "one statement stored as {lines} lines: {stored:?}");
    harness.db.assert_verified().await;
    harness.stop().await;
}

//! The reconciliation service against a real server's database: what it reads back of stored imports,
//! sections, lines and discrepancies. The service is built in the test on the database a started
//! `TestServer` migrated, as `lib.rs` builds it for the server.
//! The HTTP API and the command line have their own modules (`http`, `cli`).

mod cli;
mod http;

use payledger::engine::batch::{WriteCommand, WriteOutcome};
use payledger::engine::statements::{BeginImport, LineToStore, LinesCommand, SectionCounts, StatementOutcome};
use payledger::engine::{LedgerEngine, WriterHandle};
use payledger::statement::{
    DiscrepancyKind, DiscrepancyState, ImportsPage, ReconcileError, ReconcileSettings, Reconciliation, ReportQuery,
};
use payledger::store::Store;
use payledger_core::Inn;
use payledger_core::money::{Currency, Money};
use payledger_core::statement::{
    AccountNumber, AccountSummary, Direction, LineNature, OccurrenceCounter, StatementFormat, StatementLine,
    fingerprint,
};
use time::macros::date;

use crate::common::{self, Backend, TestDb, TestServer, on_both_backends};

mod apply;
mod import;
mod matching;
mod upgrade;

on_both_backends!(
    an_empty_ledger_has_no_imports_and_an_unknown_import_is_not_found,
    a_stored_import_reads_back_with_its_sections_and_discrepancies,
    accepting_a_discrepancy_records_the_note_once_even_when_two_operators_race,
    beginning_the_same_file_twice_at_once_starts_one_import_and_a_complete_one_is_already_imported,
    stored_lines_match_their_notices_twins_once_each_and_a_reimport_adds_nothing,
);

/// A started server and the reconciliation service on its database.
struct Harness {
    db: TestDb,
    server: TestServer,
    service: Reconciliation,
    writer: WriterHandle,
}

impl Harness {
    async fn start(backend: Backend) -> Option<Harness> {
        Harness::start_with(backend, common::settings).await
    }

    /// A harness whose server runs with these settings (async webhooks, say).
    async fn start_with(backend: Backend, settings: fn(&TestDb) -> payledger::config::Settings) -> Option<Harness> {
        let db = TestDb::new(backend).await?;
        let server = TestServer::start(settings(&db)).await;
        let store = Store::connect(&db.url).await.expect("connect");
        let (engine, writer) = LedgerEngine::start(&store).await.expect("engine");
        let service = Reconciliation::new(engine, store, ReconcileSettings::default());
        Some(Harness { db, server, service, writer })
    }

    async fn stop(self) {
        drop(self.service);
        self.writer.stopped().await;
        self.server.stop().await;
    }
}

const ACCOUNT: &str = "40702810900000000001";

async fn an_empty_ledger_has_no_imports_and_an_unknown_import_is_not_found(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let page = harness.service.imports(ImportsPage { cursor: None, limit: 50 }).await.expect("imports");
    assert!(page.is_empty(), "{page:?}");
    let missing = harness.service.import_summary(42).await;
    assert!(matches!(missing, Err(ReconcileError::NotFound("import"))), "{missing:?}");
    harness.stop().await;
}

/// One import of two days: a credit matched to a webhook payment, a credit with a missing notice, a debit.
async fn store_an_import(db: &TestDb, backend: Backend) {
    if backend == Backend::Sqlite {
        db.execute(
            "INSERT INTO statement_imports (id, sha256, format, file_name, state, line_count, started_at)
             VALUES (1, X'ab01', '1c', 'april.txt', 'complete', 3, '2024-04-30T00:00:00.000000Z')",
        )
        .await;
        db.execute(
            "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, payer_name, purpose, source_line, raw)
             VALUES (1, 1, '40702810900000000001', X'01', 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-328',
                     '2024-04-28', '7707083893', 'ООО Ромашка', 'invoice 1', 10, '[]'),
                    (2, 1, '40702810900000000001', X'02', 1, 'credit', 2550, 'RUB', '2024-04-29', '77',
                     '2024-04-29', '7707083893', 'ООО Ромашка', 'invoice 2', 30, '[]'),
                    (3, 1, '40702810900000000001', X'03', 1, 'debit', 500, 'RUB', '2024-04-29', '9',
                     '2024-04-29', NULL, NULL, NULL, 50, '[]')",
        )
        .await;
    } else {
        db.execute(
            "INSERT INTO statement_imports (id, sha256, format, file_name, state, line_count, started_at)
             VALUES (1, '\\xab01'::bytea, '1c', 'april.txt', 'complete', 3, '2024-04-30T00:00:00Z')",
        )
        .await;
        db.execute(
            "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                 booking_date, document_number, document_date, payer_inn, payer_name, purpose, source_line, raw)
             VALUES (1, 1, '40702810900000000001', '\\x01'::bytea, 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-328',
                     '2024-04-28', '7707083893', 'ООО Ромашка', 'invoice 1', 10, '[]'),
                    (2, 1, '40702810900000000001', '\\x02'::bytea, 1, 'credit', 2550, 'RUB', '2024-04-29', '77',
                     '2024-04-29', '7707083893', 'ООО Ромашка', 'invoice 2', 30, '[]'),
                    (3, 1, '40702810900000000001', '\\x03'::bytea, 1, 'debit', 500, 'RUB', '2024-04-29', '9',
                     '2024-04-29', NULL, NULL, NULL, 50, '[]')",
        )
        .await;
    }
    db.execute(
        "INSERT INTO statement_accounts (import_id, account, currency, period_start, period_end, opening, credits,
             debits, closing, credit_lines, debit_lines)
         VALUES (1, '40702810900000000001', 'RUB', '2024-04-28', '2024-04-29', 10000, 3550, 500, 13050, 2, 1)",
    )
    .await;
    db.execute(
        "INSERT INTO statement_matches (line_id, payment_id, rule, matched_at)
         VALUES (1, (SELECT MIN(id) FROM bank_payments), 'document', '2024-04-30T00:00:00Z')",
    )
    .await;
    db.execute(
        "INSERT INTO statement_discrepancies (kind, state, line_id, account, day, amount, currency, created_at)
         VALUES ('missing_notice', 'open', 2, '40702810900000000001', '2024-04-29', 2550, 'RUB',
                 '2024-04-30T00:00:00Z')",
    )
    .await;
}

async fn a_stored_import_reads_back_with_its_sections_and_discrepancies(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let webhook = common::notice(uuid::Uuid::new_v4(), serde_json::json!("10.00"), "7707083893");
    assert_eq!(harness.server.post_webhook(&webhook).await.0, 200);
    store_an_import(&harness.db, backend).await;

    let summary = harness.service.import_summary(1).await.expect("summary");
    assert_eq!((summary.sha256.as_str(), summary.format.as_str(), summary.state.as_str()), ("ab01", "1c", "complete"));
    assert_eq!((summary.lines_read, summary.lines_new, summary.matched), (3, 3, 1));
    assert_eq!(summary.discrepancies.missing_notice, 1);
    let section = &summary.accounts[0];
    assert_eq!(
        (section.opening_balance.as_deref(), section.total_credits.as_deref(), section.closing_balance.as_deref()),
        (Some("100.00"), Some("35.50"), Some("130.50"))
    );
    assert_eq!((section.lines, section.credit_lines, section.debit_lines), (3, 2, 1));
    let page = harness.service.imports(ImportsPage { cursor: None, limit: 10 }).await.expect("imports");
    assert_eq!(page, vec![summary]);
    assert!(harness.service.imports(ImportsPage { cursor: Some(1), limit: 10 }).await.expect("next").is_empty());

    let query = ReportQuery {
        account: Some(AccountNumber::parse(ACCOUNT).expect("account")),
        from: date!(2024 - 04 - 01),
        to: date!(2024 - 04 - 30),
        kind: None,
        state: None,
        cursor: None,
        limit: 50,
    };
    let report = harness.service.report(&query).await.expect("report");
    assert_eq!((report.counts.statement_lines, report.counts.credit_lines, report.counts.matched), (3, 2, 1));
    assert_eq!((report.counts.pending_lines, report.counts.open.missing_notice), (0, 1));
    let totals = &report.totals[0];
    assert_eq!(
        (totals.statement_credits.as_str(), totals.credits_matched.as_str(), totals.ledger_credited.as_str()),
        ("35.50", "10.00", "10.00")
    );
    assert_eq!(report.coverage[0].covered, vec![["2024-04-28".to_owned(), "2024-04-29".to_owned()]]);
    let [discrepancy] = report.discrepancies.as_slice() else { panic!("{report:?}") };
    assert_eq!((discrepancy.kind, discrepancy.state), (DiscrepancyKind::MissingNotice, DiscrepancyState::Open));
    assert_eq!((discrepancy.amount.as_str(), discrepancy.line_id), ("25.50", Some(2)));
    assert_eq!(discrepancy.payer_name.as_deref(), Some("ООО Ромашка"));
    assert_eq!(report.next_cursor, None);

    // Filters: another state, and days before the import, find nothing.
    let accepted = ReportQuery { state: Some(DiscrepancyState::Accepted), ..query.clone() };
    assert!(harness.service.report(&accepted).await.expect("report").discrepancies.is_empty());
    let before = ReportQuery { from: date!(2024 - 03 - 01), to: date!(2024 - 03 - 31), ..query };
    let empty = harness.service.report(&before).await.expect("report");
    assert_eq!((empty.counts.statement_lines, empty.discrepancies.len()), (0, 0));
    harness.stop().await;
}

async fn accepting_a_discrepancy_records_the_note_once_even_when_two_operators_race(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    let webhook = common::notice(uuid::Uuid::new_v4(), serde_json::json!("10.00"), "7707083893");
    assert_eq!(harness.server.post_webhook(&webhook).await.0, 200);
    store_an_import(&harness.db, backend).await;
    let blank = harness.service.accept(1, "   ", "alice").await;
    assert!(matches!(blank, Err(ReconcileError::NotApplicable { .. })), "{blank:?}");
    let missing = harness.service.accept(99, "typo", "alice").await;
    assert!(matches!(missing, Err(ReconcileError::NotFound("discrepancy"))), "{missing:?}");

    // Two operators accept the same discrepancy at once: one wins, the other is told it is already accepted.
    let (first, second) = tokio::join!(
        harness.service.accept(1, "paid in cash, see ticket 12", "alice"),
        harness.service.accept(1, "duplicate of 11", "bob"),
    );
    let (won, lost) = match (first, second) {
        (Ok(view), Err(error)) | (Err(error), Ok(view)) => (view, error),
        other => panic!("exactly one accept must win: {other:?}"),
    };
    assert_eq!((won.state, won.resolution.as_deref()), (DiscrepancyState::Accepted, Some("accepted")));
    assert!(won.resolved_at.is_some());
    let expected_note =
        if won.resolved_by.as_deref() == Some("alice") { "paid in cash, see ticket 12" } else { "duplicate of 11" };
    assert_eq!(won.note.as_deref(), Some(expected_note));
    assert!(
        matches!(&lost, ReconcileError::NotApplicable { reason } if reason.contains("already accepted")),
        "{lost:?}"
    );
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'statement.accept'").await, 1);
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
    assert_eq!((report.counts.open.missing_notice, report.counts.accepted.missing_notice), (0, 1));
    harness.db.assert_verified().await;
    harness.stop().await;
}

fn begin_command(by: &str) -> BeginImport {
    let summary = AccountSummary {
        account: AccountNumber::parse(ACCOUNT).expect("account"),
        currency: Currency::RUB,
        period_start: date!(2024 - 04 - 28),
        period_end: date!(2024 - 04 - 29),
        opening_balance: Some(10_000),
        total_credits: Some(3_550),
        total_debits: Some(500),
        closing_balance: Some(13_050),
        source_line: 4,
    };
    BeginImport {
        sha256: [7; 32],
        file_sha256: [7; 32],
        format: StatementFormat::OneC,
        file_name: Some("april.txt".into()),
        sections: vec![SectionCounts { summary, credit_lines: 2, debit_lines: 1 }],
        line_count: 3,
        by: Some(by.into()),
    }
}

async fn begin(service: &Reconciliation, by: &str) -> StatementOutcome {
    match service.engine().submit(WriteCommand::StatementBegin(begin_command(by))).await.expect("submit") {
        WriteOutcome::Statement(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

async fn beginning_the_same_file_twice_at_once_starts_one_import_and_a_complete_one_is_already_imported(
    backend: Backend,
) {
    let Some(harness) = Harness::start(backend).await else { return };
    let (first, second) = tokio::join!(begin(&harness.service, "alice"), begin(&harness.service, "bob"));
    let id = match (&first, &second) {
        (StatementOutcome::ImportStarted { id }, StatementOutcome::ImportResumed { id: other })
        | (StatementOutcome::ImportResumed { id: other }, StatementOutcome::ImportStarted { id })
            if id == other =>
        {
            *id
        }
        other => panic!("one start and one resume of the same import: {other:?}"),
    };
    let summary = harness.service.import_summary(id).await.expect("summary");
    assert_eq!((summary.state.as_str(), summary.lines_read, summary.accounts.len()), ("loading", 3, 1));
    assert_eq!(summary.sha256, "07".repeat(32));
    assert_eq!(summary.accounts[0].total_debits.as_deref(), Some("5.00"));
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'statement.import'").await, 1);
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_accounts").await, 1);

    harness.db.execute("UPDATE statement_imports SET state = 'complete'").await;
    assert_eq!(begin(&harness.service, "carol").await, StatementOutcome::AlreadyImported { id });
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_imports").await, 1);
    harness.db.assert_verified().await;
    harness.stop().await;
}

fn statement_line(
    direction: Direction,
    minor: i64,
    number: &str,
    document: time::Date,
    booked: time::Date,
) -> StatementLine {
    StatementLine {
        account: AccountNumber::parse(ACCOUNT).expect("account"),
        direction,
        amount: Money::from_minor(minor, Currency::RUB),
        booking_date: booked,
        document_number: number.into(),
        document_date: document,
        counterparty_inn: (direction == Direction::Credit).then(|| Inn::parse("7707083893").expect("inn")),
        counterparty_name: Some("ООО Ромашка".into()),
        counterparty_account: None,
        counterparty_bik: None,
        bank_ref: None,
        end_to_end_id: None,
        purpose: None,
        source_line: 1,
        raw: [("Номер", number)].into_iter().collect(),
        nature: LineNature::Payment,
    }
}

async fn submit_lines(service: &Reconciliation, import_id: i64, lines: &[StatementLine]) -> StatementOutcome {
    let mut counter = OccurrenceCounter::default();
    let lines = lines
        .iter()
        .map(|line| {
            let print = fingerprint(line);
            LineToStore::new(line.clone(), print, counter.next(line, &print).expect("occurrence"))
        })
        .collect();
    let command = LinesCommand { import_id, lines, today: date!(2024 - 05 - 01), tolerance_days: 3 };
    match service.engine().submit(WriteCommand::StatementLines(command)).await.expect("submit") {
        WriteOutcome::Statement(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

async fn stored_lines_match_their_notices_twins_once_each_and_a_reimport_adds_nothing(backend: Backend) {
    let Some(harness) = Harness::start(backend).await else { return };
    // Two notices: PAY-328 for 10.00 (document date 28 April in Moscow), and one of two identical TW-1 payments.
    let webhook = common::notice(uuid::Uuid::new_v4(), serde_json::json!("10.00"), "7707083893");
    assert_eq!(harness.server.post_webhook(&webhook).await.0, 200);
    let mut twin = common::notice(uuid::Uuid::new_v4(), serde_json::json!("3.00"), "7707083893");
    twin["document_number"] = serde_json::json!("TW-1");
    assert_eq!(harness.server.post_webhook(&twin).await.0, 200);

    let mut begin_import = begin_command("alice");
    let section = &mut begin_import.sections[0];
    section.summary.period_end = date!(2024 - 05 - 01);
    (section.summary.total_credits, section.summary.closing_balance) = (Some(5_250), Some(14_750));
    (section.credit_lines, section.debit_lines) = (6, 1);
    begin_import.line_count = 7;
    let id = match harness.service.engine().submit(WriteCommand::StatementBegin(begin_import)).await.expect("begin") {
        WriteOutcome::Statement(StatementOutcome::ImportStarted { id }) => id,
        other => panic!("{other:?}"),
    };
    let (apr28, apr29, may1) = (date!(2024 - 04 - 28), date!(2024 - 04 - 29), date!(2024 - 05 - 01));
    let lines = [
        statement_line(Direction::Credit, 1_000, "PAY-328", apr28, apr28),
        statement_line(Direction::Credit, 2_550, "77", apr29, apr29),
        statement_line(Direction::Credit, 700, "78", may1, may1),
        statement_line(Direction::Debit, 500, "9", apr29, apr29),
        statement_line(Direction::Credit, 300, "TW-1", apr28, apr28),
        statement_line(Direction::Credit, 300, "TW-1", apr28, apr28),
        // The bank's own order (a transit account's credit): kept for the totals, never matched or judged.
        StatementLine { nature: LineNature::BankOrder, ..statement_line(Direction::Credit, 400, "BO-1", apr29, apr29) },
    ];
    let outcome = submit_lines(&harness.service, id, &lines).await;
    // PAY-328 and one twin match; 77 and the second twin are missing notices; 78 is booked today: pending; the
    // bank order is neither.
    assert_eq!(
        outcome,
        StatementOutcome::LinesStored { new: 7, already_known: 0, matched: 2, pending: 1, discrepancies: 2 }
    );
    let again = submit_lines(&harness.service, id, &lines).await;
    assert_eq!(
        again,
        StatementOutcome::LinesStored { new: 0, already_known: 7, matched: 0, pending: 0, discrepancies: 0 }
    );
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_lines").await, 7);
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_discrepancies").await, 2);
    assert_eq!(harness.db.scalar("SELECT COUNT(*) FROM statement_matches").await, 2);

    let summary = harness.service.import_summary(id).await.expect("summary");
    assert_eq!((summary.lines_new, summary.lines_already_known, summary.matched, summary.pending), (7, 0, 2, 1));
    assert_eq!(summary.discrepancies.missing_notice, 2);
    let report = harness
        .service
        .report(&ReportQuery {
            account: None,
            from: apr28,
            to: may1,
            kind: Some(DiscrepancyKind::MissingNotice),
            state: None,
            cursor: None,
            limit: 1,
        })
        .await
        .expect("report");
    assert_eq!((report.counts.matched, report.counts.pending_lines, report.counts.open.missing_notice), (2, 1, 2));
    assert_eq!(report.totals[0].credits_matched, "13.00");
    assert_eq!(report.totals[0].ledger_credited, "13.00");
    assert_eq!(report.discrepancies.len(), 1, "a page of one");
    assert!(report.next_cursor.is_some());
    harness.db.assert_verified().await;
    harness.stop().await;
}

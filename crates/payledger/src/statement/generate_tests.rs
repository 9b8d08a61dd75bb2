use super::*;
use payledger_core::statement::{CsvMapping, Limits, StatementEvent, StatementFormat, events, validate};
use proptest::prelude::*;
use time::macros::{date, datetime};

fn account() -> AccountNumber {
    AccountNumber::parse("40702810900000000001").unwrap_or_else(|_| panic!("account"))
}

const FORMATS: [OutputFormat; 4] =
    [OutputFormat::OneCWindows1251, OutputFormat::OneCUtf8Bom, OutputFormat::Camt053, OutputFormat::Csv];

fn file(spec: &GeneratorSpec, format: OutputFormat) -> (Vec<u8>, Generated, Vec<GeneratedNotice>) {
    let mut bytes = Vec::new();
    let mut notices = Vec::new();
    let generated =
        generate(spec, format, &mut bytes, &mut |n| notices.push(n.clone())).unwrap_or_else(|e| panic!("{e}"));
    (bytes, generated, notices)
}

fn parse_format(format: OutputFormat) -> (StatementFormat, Option<CsvMapping>) {
    match format {
        OutputFormat::OneCWindows1251 | OutputFormat::OneCUtf8Bom => (StatementFormat::OneC, None),
        OutputFormat::Camt053 => (StatementFormat::Camt053, None),
        OutputFormat::Csv => {
            (StatementFormat::Csv, Some(CsvMapping::parse(&csv_mapping(&account())).unwrap_or_else(|e| panic!("{e}"))))
        }
    }
}

/// Validates and then streams a generated file, and checks both agree with what was generated.
fn round_trip(spec: &GeneratorSpec, format: OutputFormat) {
    let (bytes, generated, _) = file(spec, format);
    let (parsed, mapping) = parse_format(format);
    if parsed != StatementFormat::Csv {
        assert_eq!(payledger_core::statement::detect_format(&bytes), Some(parsed), "{format:?}");
    }
    let validated = validate(&bytes[..], parsed, mapping.as_ref(), &Limits { max_lines: 1_000_000 }, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{format:?}: {e}"));
    assert_eq!(validated.lines, generated.lines, "{format:?}");
    if format == OutputFormat::Csv && generated.lines == 0 {
        // A CSV states no section: with no rows there is no account to speak of.
        assert!(validated.accounts.is_empty());
        return;
    }
    let section = &validated.accounts[0];
    assert_eq!((section.credits, section.debits), (generated.credits, generated.debits), "{format:?}");
    assert_eq!((section.credit_lines, section.debit_lines), (generated.credit_lines, generated.debit_lines));
    if format != OutputFormat::Csv {
        assert_eq!(section.summary.closing_balance, Some(generated.closing_balance));
        assert_eq!((section.summary.period_start, section.summary.period_end), (spec.start, spec.end()));
    }
    let (mut credits, mut debits, mut lines, mut not_payments) = (0i64, 0i64, 0u64, 0u64);
    for event in events(&bytes[..], parsed, mapping.as_ref()).unwrap_or_else(|e| panic!("{e}")) {
        match event.unwrap_or_else(|e| panic!("{format:?}: the stream failed after validate: {e}")) {
            StatementEvent::Line(line) => {
                lines += 1;
                not_payments += u64::from(line.nature != payledger_core::statement::LineNature::Payment);
                match line.direction {
                    Direction::Credit => credits += line.amount.minor(),
                    Direction::Debit => debits += line.amount.minor(),
                }
            }
            StatementEvent::Account(_) => {}
        }
    }
    assert_eq!((lines, credits, debits), (generated.lines, generated.credits, generated.debits), "{format:?}");
    assert_eq!(not_payments, generated.not_payments, "{format:?}");
}

#[test]
fn every_format_reads_back_the_lines_it_was_generated_with() {
    let spec = GeneratorSpec::new(7, date!(2024 - 04 - 26), 3, 5, 40, account());
    for format in FORMATS {
        round_trip(&spec, format);
    }
}

#[test]
fn an_empty_statement_still_validates_in_every_format() {
    let spec = GeneratorSpec::new(3, date!(2024 - 04 - 26), 2, 1, 0, account());
    for format in FORMATS {
        round_trip(&spec, format);
    }
}

#[test]
fn a_notice_carries_the_moscow_midnight_of_its_document_date() {
    assert_eq!(moscow_midnight(date!(2024 - 04 - 28)), datetime!(2024-04-27 21:00:00 UTC));
    let spec = GeneratorSpec::new(1, date!(2024 - 04 - 28), 1, 3, 30, account());
    let (_, generated, notices) = file(&spec, OutputFormat::OneCUtf8Bom);
    assert_eq!(generated.notices + generated.lost, notices.len() as u64);
    let json: serde_json::Value = serde_json::from_str(&notices[0].to_json()).unwrap_or_else(|e| panic!("{e}"));
    let date = json["document_date"].as_str().unwrap_or_default();
    assert!(["2024-04-27T21:00:00Z", "2024-04-26T21:00:00Z", "2024-04-25T21:00:00Z"].contains(&date), "{date}");
    assert!(json["amount"].as_str().is_some_and(|a| a.split_once('.').is_some_and(|(_, f)| f.len() == 2)));
}

#[test]
fn the_same_seed_writes_the_same_bytes_and_notices() {
    let spec = GeneratorSpec::new(42, date!(2024 - 01 - 01), 2, 4, 25, account());
    let (first, _, first_notices) = file(&spec, OutputFormat::OneCWindows1251);
    let (second, _, second_notices) = file(&spec, OutputFormat::OneCWindows1251);
    assert_eq!(first, second);
    assert_eq!(first_notices, second_notices);
    let (other, _, _) = file(&GeneratorSpec { seed: 43, ..spec }, OutputFormat::OneCWindows1251);
    assert_ne!(first, other);
}

#[test]
fn an_overlapping_statement_repeats_the_last_day_and_continues_the_balance() {
    let spec = GeneratorSpec::new(9, date!(2024 - 04 - 26), 3, 5, 20, account());
    let next = spec.overlap(2);
    assert_eq!((next.start, next.days), (date!(2024 - 04 - 28), 3));
    let payers = payers(&spec);
    let last_day: Vec<(i64, String, Date)> =
        day_operations(&spec, &payers, 2).iter().map(|o| (o.amount, o.number.clone(), o.document_date)).collect();
    let first_day: Vec<(i64, String, Date)> =
        day_operations(&next, &payers, 0).iter().map(|o| (o.amount, o.number.clone(), o.document_date)).collect();
    assert_eq!(last_day, first_day);
    let (_, generated, _) = file(&spec, OutputFormat::Camt053);
    let last_day_net: i64 = day_operations(&spec, &payers, 2).iter().map(Operation::signed).sum();
    assert_eq!(next.opening_balance, generated.closing_balance - last_day_net);
    round_trip(&next, OutputFormat::Camt053);
}

#[test]
fn bank_orders_and_debits_get_no_notices_and_some_payments_are_twins() {
    let spec = GeneratorSpec {
        bank_order_per_mille: 200,
        twin_per_mille: 200,
        ..GeneratorSpec::new(5, date!(2024 - 04 - 01), 5, 6, 50, account())
    };
    let payers = payers(&spec);
    let operations: Vec<Operation> = (0..spec.days).flat_map(|d| day_operations(&spec, &payers, d)).collect();
    assert!(operations.iter().filter(|o| o.bank_order || o.direction == Direction::Debit).all(|o| o.notice.is_none()));
    assert!(operations.iter().any(|o| o.bank_order && o.other.account.starts_with("30233")));
    let twins = operations.windows(2).filter(|w| {
        w[0].notice.is_some()
            && (w[0].amount, &w[0].number, w[0].document_date, &w[0].other.inn)
                == (w[1].amount, &w[1].number, w[1].document_date, &w[1].other.inn)
    });
    assert!(twins.count() > 0);
    assert!(payers.iter().all(|p| Inn::parse(&p.inn).is_ok_and(|inn| inn.has_valid_checksum())));
}

#[test]
fn bank_orders_and_own_transfers_read_back_as_such_and_references_have_one_length() {
    use payledger_core::statement::LineNature;
    let spec = GeneratorSpec {
        bank_order_per_mille: 150,
        own_transfer_per_mille: 150,
        twin_per_mille: 100,
        ..GeneratorSpec::new(11, date!(2024 - 04 - 01), 3, 6, 40, account())
    };
    let payers = payers(&spec);
    let operations: Vec<Operation> = (0..spec.days).flat_map(|d| day_operations(&spec, &payers, d)).collect();
    let expected: Vec<LineNature> = operations
        .iter()
        .map(|o| match (o.bank_order, o.own_transfer) {
            (true, _) => LineNature::BankOrder,
            (_, true) => LineNature::OwnTransfer,
            _ => LineNature::Payment,
        })
        .collect();
    assert!(expected.contains(&LineNature::BankOrder) && expected.contains(&LineNature::OwnTransfer));
    assert!(operations.iter().all(|o| o.reference.len() == operations[0].reference.len()));
    for format in FORMATS {
        let (bytes, _, _) = file(&spec, format);
        let (parsed, mapping) = parse_format(format);
        let natures: Vec<LineNature> = events(&bytes[..], parsed, mapping.as_ref())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|event| match event.unwrap_or_else(|e| panic!("{format:?}: {e}")) {
                StatementEvent::Line(line) => Some(line.nature),
                StatementEvent::Account(_) => None,
            })
            .collect();
        assert_eq!(natures, expected, "{format:?}");
    }
}

#[test]
fn the_1c_header_is_sent_by_the_bank_to_the_accounting_program_and_names_no_real_inn() {
    let spec = GeneratorSpec {
        bank_order_per_mille: 300,
        ..GeneratorSpec::new(2, date!(2024 - 04 - 01), 1, 2, 20, account())
    };
    let text = String::from_utf8(file(&spec, OutputFormat::OneCUtf8Bom).0).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("\r\nОтправитель=ПАО \"Банк Пример\"\r\nПолучатель=Бухгалтерия предприятия\r\n"));
    for real in ["7707083893", "7702070139"] {
        assert!(!text.contains(real), "{real}");
    }
    assert!(text.contains(&format!("ПлательщикИНН={}", bank_inn())));
}

/// The files in `docs/samples/` are what the generator writes for the sample spec; run with
/// `PAYLEDGER_WRITE_SAMPLES=1` to rewrite them after changing the generator.
#[test]
fn the_sample_files_are_what_the_generator_writes_and_they_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/samples");
    let spec = GeneratorSpec {
        debit_per_mille: 200,
        bank_order_per_mille: 100,
        own_transfer_per_mille: 100,
        lost_per_mille: 150,
        ..GeneratorSpec::new(2024, date!(2024 - 04 - 26), 3, 4, 6, account())
    };
    let samples = [
        ("statement-1c-cp1251.txt", OutputFormat::OneCWindows1251),
        ("statement-1c-utf8.txt", OutputFormat::OneCUtf8Bom),
        ("statement-camt053.xml", OutputFormat::Camt053),
        ("statement.csv", OutputFormat::Csv),
    ];
    let (_, _, notices) = file(&spec, OutputFormat::Camt053);
    let delivered: String = notices.iter().filter(|n| !n.lost).map(|n| n.to_json() + "\n").collect();
    let mut expected: Vec<(&str, Vec<u8>)> =
        samples.iter().map(|(name, format)| (*name, file(&spec, *format).0)).collect();
    expected.push(("statement.csv-mapping.txt", (csv_mapping(&account()) + "\n").into_bytes()));
    expected.push(("notices.jsonl", delivered.into_bytes()));
    for (name, bytes) in &expected {
        if std::env::var_os("PAYLEDGER_WRITE_SAMPLES").is_some() {
            std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(&std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")), bytes, "{name}");
    }
    for (_, format) in samples {
        round_trip(&spec, format);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn generated_statements_validate_and_stream_the_same_sums_in_every_format(
        seed in any::<u64>(), days in 1u32..4, payers in 1u32..8, per_day in 0u32..30, format in 0usize..4,
    ) {
        let spec = GeneratorSpec::new(seed, date!(2024 - 12 - 30), days, payers, per_day, account());
        round_trip(&spec, FORMATS[format]);
    }
}

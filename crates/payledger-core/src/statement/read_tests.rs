use super::*;
use crate::statement::Direction;
use proptest::prelude::*;

const ONEC_CP1251: &[u8] = include_bytes!("../../../../docs/samples/statement-1c-cp1251.txt");
const ONEC_UTF8: &[u8] = include_bytes!("../../../../docs/samples/statement-1c-utf8.txt");
const CAMT: &[u8] = include_bytes!("../../../../docs/samples/statement-camt053.xml");
const CSV: &[u8] = include_bytes!("../../../../docs/samples/statement.csv");
const CSV_MAPPING: &str = include_str!("../../../../docs/samples/statement.csv-mapping.txt");

fn mapping() -> CsvMapping {
    CsvMapping::parse(CSV_MAPPING.trim()).unwrap_or_else(|e| panic!("{e}"))
}

/// Validates `bytes`; when they pass, streams them and checks the stream agrees line for line and sum for sum.
fn validate_then_stream(bytes: &[u8], format: StatementFormat) -> Option<Validated> {
    let mapping = mapping();
    let csv = (format == StatementFormat::Csv).then_some(&mapping);
    let validated = validate(bytes, format, csv, &Limits { max_lines: 10_000 }, &mut |_, _| {}).ok()?;
    let (mut lines, mut credits, mut debits) = (0u64, 0i64, 0i64);
    for event in events(bytes, format, csv).unwrap_or_else(|e| panic!("{e}")) {
        if let StatementEvent::Line(line) = event.unwrap_or_else(|e| panic!("the stream failed after validate: {e}")) {
            lines += 1;
            match line.direction {
                Direction::Credit => credits += line.amount.minor(),
                Direction::Debit => debits += line.amount.minor(),
            }
        }
    }
    assert_eq!(lines, validated.lines);
    assert_eq!(credits, validated.accounts.iter().map(|a| a.credits).sum::<i64>());
    assert_eq!(debits, validated.accounts.iter().map(|a| a.debits).sum::<i64>());
    Some(validated)
}

#[test]
fn the_samples_are_detected_and_validate_with_totals_that_add_up() {
    assert_eq!(detect_format(ONEC_CP1251), Some(StatementFormat::OneC));
    assert_eq!(detect_format(ONEC_UTF8), Some(StatementFormat::OneC));
    assert_eq!(detect_format(CAMT), Some(StatementFormat::Camt053));
    assert_eq!(detect_format(CSV), None);
    let onec = validate_then_stream(ONEC_CP1251, StatementFormat::OneC).unwrap_or_else(|| panic!("1C sample"));
    assert_eq!(validate_then_stream(ONEC_UTF8, StatementFormat::OneC), Some(onec.clone()));
    let camt = validate_then_stream(CAMT, StatementFormat::Camt053).unwrap_or_else(|| panic!("camt sample"));
    let csv = validate_then_stream(CSV, StatementFormat::Csv).unwrap_or_else(|| panic!("CSV sample"));
    for other in [&camt, &csv] {
        assert_eq!(other.lines, onec.lines);
        assert_eq!(other.accounts[0].credits, onec.accounts[0].credits);
        assert_eq!(other.accounts[0].debits, onec.accounts[0].debits);
    }
    // Both formats state the same section: period, balances and totals (only the line differs).
    let onec_section =
        AccountSummary { source_line: camt.accounts[0].summary.source_line, ..onec.accounts[0].summary.clone() };
    assert_eq!(camt.accounts[0].summary, onec_section);
}

#[test]
fn a_csv_statement_needs_a_mapping() {
    let refused = validate(CSV, StatementFormat::Csv, None, &Limits { max_lines: 10 }, &mut |_, _| {});
    assert_eq!(refused.map(|_| ()).map_err(|e| e.to_string()), Err("a CSV statement needs a column mapping".into()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Damaged files never panic, and whatever still validates streams exactly as validated.
    #[test]
    fn damaged_samples_are_refused_or_stream_as_validated(
        sample in 0usize..3, at in any::<prop::sample::Index>(), cut in 0usize..40, insert in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let (bytes, format) = [(ONEC_CP1251, StatementFormat::OneC), (CAMT, StatementFormat::Camt053), (CSV, StatementFormat::Csv)][sample];
        let start = at.index(bytes.len());
        let end = (start + cut).min(bytes.len());
        let damaged: Vec<u8> = [&bytes[..start], &insert[..], &bytes[end..]].concat();
        let _ = detect_format(&damaged);
        let _ = validate_then_stream(&damaged, format);
    }
}

#[test]
fn a_cp1251_head_with_the_undefined_byte_0x98_is_still_detected() {
    let mut head = ONEC_CP1251.to_vec();
    let at = head.iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
    head.splice(at..at, b"\x98\xcf\xf0\xe8\xec\xe5\xf0\r\n".iter().copied());
    assert_eq!(detect_format(&head), Some(StatementFormat::OneC));
}

proptest! {
    /// The word-at-a-time scan finds what a scan of the characters finds, wherever in the text it is.
    #[test]
    fn the_control_character_scan_agrees_with_a_scan_of_the_characters(
        text in proptest::collection::vec(
            prop_oneof![Just('\u{0}'), Just('\t'), Just('\n'), Just('\r'), Just('\u{1f}'), Just('\u{7f}'),
                        Just(' '), Just('я'), Just('€'), Just('a')],
            0..40,
        ).prop_map(|chars| chars.into_iter().collect::<String>()),
    ) {
        let expected = text.chars().find(|c| c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n' | '\u{7f}'));
        prop_assert_eq!(first_control_character(&text), expected);
    }
}

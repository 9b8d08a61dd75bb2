//! Statement files: `validate` on any bytes in every format never panics, and a file it accepts streams through
//! `events` without an error and with the same lines and sums (the contract pass 2 of an import relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger_core::statement::{
    CsvMapping, Direction, Limits, StatementEvent, StatementFormat, detect_format, events, validate,
};

const CSV_MAPPING: &str = "booking_date=1,document_number=2,amount=3,direction=4,payer_inn=5,header=no,\
delimiter=;,default_account=40702810900000000001";

fuzz_target!(|data: &[u8]| {
    let _ = detect_format(data);
    let mapping = CsvMapping::parse(CSV_MAPPING).expect("the fuzz mapping is valid");
    for format in [StatementFormat::OneC, StatementFormat::Camt053, StatementFormat::Csv] {
        let csv = (format == StatementFormat::Csv).then_some(&mapping);
        let limits = Limits { max_lines: 10_000 };
        let Ok(validated) = validate(data, format, csv, &limits, &mut |_, _| {}) else { continue };
        let (mut lines, mut credits, mut debits) = (0u64, 0i64, 0i64);
        for event in events(data, format, csv).expect("a validated file opens again") {
            match event.expect("a validated file streams without an error") {
                StatementEvent::Line(line) => {
                    lines += 1;
                    match line.direction {
                        Direction::Credit => credits += line.amount.minor(),
                        Direction::Debit => debits += line.amount.minor(),
                    }
                }
                StatementEvent::Account(_) => {}
            }
        }
        assert_eq!(lines, validated.lines);
        assert_eq!(credits, validated.accounts.iter().map(|a| a.credits).sum::<i64>());
        assert_eq!(debits, validated.accounts.iter().map(|a| a.debits).sum::<i64>());
    }
});

//! The bank webhook's body, from raw bytes (`webhook/intake.rs` `parse_notice`): every accepted notice is within
//! the documented bounds, and a notice written back as JSON parses to the same notice (so a bank's exact replay
//! compares equal to what was stored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::parse_notice;
use payledger_core::MAX_AMOUNT_MINOR;
use payledger_core::bank::MAX_DOCUMENT_NUMBER_LEN;
use payledger_fuzz::{inn_checksum_valid, json_text};
use time::format_description::well_known::Rfc3339;

fuzz_target!(|data: &[u8]| {
    let Ok(notice) = parse_notice(data) else { return };
    let minor = notice.amount.minor();
    assert!(minor > 0 && minor <= MAX_AMOUNT_MINOR, "{minor}");
    assert_eq!(notice.amount.currency().code(), "RUB");
    assert!(inn_checksum_valid(notice.payer_inn.as_str()).is_some(), "{}", notice.payer_inn);
    let number = &notice.document_number;
    assert!(!number.trim().is_empty() && !number.chars().any(char::is_control));
    assert!(number.chars().count() <= MAX_DOCUMENT_NUMBER_LEN);
    let date = notice.document_date;
    assert!(date.offset().is_utc() && (1900..=9999).contains(&date.year()), "{date}");
    assert_eq!(date.nanosecond() % 1_000, 0, "{date}: finer than microseconds");
    let rewritten = format!(
        r#"{{"operation_id": "{}", "amount": {}, "payer_inn": "{}", "document_number": {}, "document_date": "{}"}}"#,
        notice.operation_id,
        notice.amount.to_decimal_string(),
        notice.payer_inn,
        json_text(number),
        date.format(&Rfc3339).expect("a UTC date within 1900..=9999 formats as RFC 3339"),
    );
    assert_eq!(parse_notice(rewritten.as_bytes()), Ok(notice.clone()), "{rewritten}");
});

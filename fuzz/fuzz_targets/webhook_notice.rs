//! The bank webhook's body, from raw bytes (`webhook/intake.rs` `parse_notice`): every accepted notice is within
//! the documented bounds, and a notice written back as JSON parses to the same notice (so a bank's exact replay
//! compares equal to what was stored).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::parse_notice;
use payledger_core::bank::MAX_DOCUMENT_NUMBER_LEN;
use payledger_core::{Inn, MAX_AMOUNT_MINOR};
use payledger_fuzz::{inn_checksum_valid, json_text, name, rouble_minor, rouble_text};
use time::format_description::well_known::Rfc3339;

/// A valid notice built from the fuzz input, and what the parser must read from it.
struct Generated {
    body: String,
    operation_id: String,
    minor: i64,
    inn: String,
    document_number: String,
    document_date: time::OffsetDateTime,
}

fn generate(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Generated> {
    let id = u128::arbitrary(u)?;
    let operation_id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        id >> 96,
        (id >> 80) & 0xffff,
        (id >> 64) & 0xffff,
        (id >> 48) & 0xffff,
        id & 0xffff_ffff_ffff
    );
    let minor = rouble_minor(u)?;
    let inn = Inn::company_from_body(u64::arbitrary(u)?).to_string();
    let document_number = name(u, MAX_DOCUMENT_NUMBER_LEN)?;
    // 1900-01-01T00:00:00Z to 9999-12-31T23:59:59Z, whole microseconds.
    let seconds = u.int_in_range(-2_208_988_800i64..=253_402_300_799)?;
    let micros = u.int_in_range(0..=999_999u32)?;
    let document_date = time::OffsetDateTime::from_unix_timestamp(seconds)
        .and_then(|date| date.replace_microsecond(micros))
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let date_text = document_date.format(&Rfc3339).map_err(|_| arbitrary::Error::IncorrectFormat)?;
    let body = format!(
        r#"{{"operation_id": "{operation_id}", "amount": "{}", "payer_inn": "{inn}", "document_number": {}, "document_date": "{date_text}"}}"#,
        rouble_text(minor),
        json_text(&document_number),
    );
    Ok(Generated { body, operation_id, minor, inn, document_number, document_date })
}

fuzz_target!(|data: &[u8]| {
    // A valid notice made from the input is accepted with exactly its values (a parser refusing everything
    // fails here, not only one that accepts too much).
    if let Ok(expected) = generate(&mut arbitrary::Unstructured::new(data)) {
        let notice =
            parse_notice(expected.body.as_bytes()).unwrap_or_else(|errors| panic!("{}: {errors:?}", expected.body));
        assert_eq!(notice.operation_id.to_string(), expected.operation_id, "{}", expected.body);
        assert_eq!((notice.amount.minor(), notice.amount.currency().code()), (expected.minor, "RUB"));
        assert_eq!(notice.payer_inn.as_str(), expected.inn);
        assert_eq!(notice.document_number, expected.document_number);
        assert_eq!(notice.document_date, expected.document_date);
    }
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

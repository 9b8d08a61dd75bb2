//! INNs: `Inn::parse` accepts exactly 10 or 12 ASCII digits and keeps them as given; the check digits it reports
//! agree with an independent restatement of the tax service's algorithm; the seeder's INNs are always valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payledger_core::Inn;
use payledger_fuzz::inn_checksum_valid;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let well_formed = (text.len() == 10 || text.len() == 12) && text.bytes().all(|b| b.is_ascii_digit());
        match Inn::parse(text) {
            Ok(inn) => {
                assert!(well_formed, "accepted {text:?}");
                assert_eq!(inn.as_str(), text);
                assert_eq!(inn.to_string(), text);
                assert_eq!(Some(inn.has_valid_checksum()), inn_checksum_valid(text), "{text}");
            }
            Err(_) => assert!(!well_formed, "refused {text:?}"),
        }
    }
    if let Some(body) = data.get(..8).and_then(|bytes| <[u8; 8]>::try_from(bytes).ok()) {
        let inn = Inn::company_from_body(u64::from_le_bytes(body));
        assert_eq!(inn_checksum_valid(inn.as_str()), Some(true), "{inn}");
        assert_eq!(Inn::parse(inn.as_str()).as_ref(), Ok(&inn));
    }
});

//! The batch API's body, from raw bytes (`api/bulk.rs`): a batch of valid operations built from the input is
//! read with every operation valid, and whatever the bytes, a body read as a batch carries 1 to 1,000
//! operations, no more of them invalid than it carries.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use payledger::fuzzing::batch_body;
use payledger_fuzz::{json_text, rouble_minor, rouble_text};

/// A valid key's text: visible ASCII and spaces, some of them needing JSON escapes.
fn key(u: &mut arbitrary::Unstructured<'_>, index: usize) -> arbitrary::Result<String> {
    const ALPHABET: [char; 8] = ['k', 'Z', '0', '-', ' ', '"', '\\', '~'];
    let len = u.int_in_range(0..=32usize)?;
    let text: String = (0..len).map(|_| u.choose(&ALPHABET).copied()).collect::<Result<_, _>>()?;
    // The index keeps the keys of one batch distinct whatever the generated text.
    Ok(format!("{index}/{text}"))
}

/// A batch of valid deposits and transfers, each with a distinct key, and whether it is atomic.
fn generate(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<(String, bool, usize)> {
    let atomic = bool::arbitrary(u)?;
    let count = u.int_in_range(1..=8usize)?;
    let mut operations = Vec::with_capacity(count);
    for index in 0..count {
        let key = json_text(&key(u, index)?);
        let amount = rouble_text(rouble_minor(u)?);
        let user = u.int_in_range(1..=i64::MAX - 1)?;
        operations.push(if bool::arbitrary(u)? {
            format!(r#"{{"type": "deposit", "idempotency_key": {key}, "user_id": {user}, "amount": "{amount}"}}"#)
        } else {
            let recipient = user + 1;
            format!(
                r#"{{"type": "transfer", "idempotency_key": {key}, "sender_id": {user}, "recipient_id": {recipient}, "amount": {amount}}}"#
            )
        });
    }
    Ok((format!(r#"{{"atomic": {atomic}, "operations": [{}]}}"#, operations.join(", ")), atomic, count))
}

fuzz_target!(|data: &[u8]| {
    // A parser that refuses everything fails here, not only one that accepts too much.
    if let Ok((body, atomic, count)) = generate(&mut arbitrary::Unstructured::new(data)) {
        assert_eq!(batch_body(body.as_bytes()), Ok((atomic, count, 0)), "{body}");
    }
    let Ok((_, operations, invalid)) = batch_body(data) else { return };
    assert!((1..=1000).contains(&operations), "{operations} operations");
    assert!(invalid <= operations);
});

//! Hiding card and account numbers: in `Debug` output, in error messages, and in what a gateway echoes back.

/// How much of an error body goes into an error message (which may end up in a payout's failure reason).
const MAX_ERROR_EXCERPT_CHARS: usize = 200;

/// A short, safe excerpt of a response body for an error message: cut to a bounded length, and with long
/// digit runs masked in case the gateway echoed a card or account number back.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    truncate_chars(&mask_digit_runs(text), MAX_ERROR_EXCERPT_CHARS)
}

/// Cuts `text` to at most `max` characters (never inside a character), marking the cut with `…`.
pub(super) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The shortest digit run treated as a card or account number (card numbers have 13–19 digits); shorter
/// numbers, such as amounts or codes, stay readable.
const MIN_SENSITIVE_DIGITS: usize = 12;

/// Replaces every run of [`MIN_SENSITIVE_DIGITS`] or more ASCII digits with its masked form.
pub(super) fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= MIN_SENSITIVE_DIGITS {
            out.push_str(&mask_number(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `•••• 1111`: the last 4 digits only, as the API shows them. A number of 4 or fewer characters is
/// hidden entirely, since showing its "last 4" would show all of it.
pub(super) fn mask_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() <= 4 {
        return "••••".to_owned();
    }
    let last4: String = digits[digits.len() - 4..].iter().collect();
    format!("•••• {last4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers_are_hidden_entirely() {
        assert_eq!(mask_number("1234"), "••••");
        assert_eq!(mask_number(""), "••••");
        assert_eq!(mask_number("12345"), "•••• 2345");
    }

    #[test]
    fn long_digit_runs_are_masked_in_error_text() {
        assert_eq!(mask_digit_runs("card 4111111111111111 refused, code 4031"), "card •••• 1111 refused, code 4031");
        assert_eq!(mask_digit_runs("40817810099910004312"), "•••• 4312");
        assert_eq!(mask_digit_runs("no digits"), "no digits");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("абвгд", 3), "абв…");
        assert_eq!(truncate_chars("абв", 3), "абв");
        assert_eq!(truncate_chars("", 3), "");
    }
}

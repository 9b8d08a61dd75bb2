//! Company INNs (10-digit taxpayer numbers) for the synthetic organizations the bench pays.

use std::collections::HashSet;

use rand::Rng;

/// The Federal Tax Service's weights for the first nine digits of a 10-digit INN.
const WEIGHTS: [u32; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];

/// The check digit for the first nine digits of a company INN: `(Σ dᵢ·wᵢ mod 11) mod 10`.
pub fn check_digit(body: &[u8; 9]) -> u8 {
    let sum: u32 = body.iter().zip(WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
    (sum % 11 % 10) as u8
}

/// Whether `text` is ten ASCII digits whose last one is the correct check digit.
#[cfg(test)] // The bench only generates INNs; checking them is for its tests.
pub fn is_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut body = [0u8; 9];
    for (slot, b) in body.iter_mut().zip(bytes) {
        *slot = b - b'0';
    }
    check_digit(&body) == bytes[9] - b'0'
}

/// One random company INN with a correct check digit.
pub fn random(rng: &mut impl Rng) -> String {
    let mut body = [0u8; 9];
    // The first two digits are a region code; real ones are 01..=99, and "00" would look like a bug.
    let region: u8 = rng.random_range(1..=99);
    body[0] = region / 10;
    body[1] = region % 10;
    for digit in &mut body[2..] {
        *digit = rng.random_range(0..=9);
    }
    let mut text = String::with_capacity(10);
    for d in body.iter().chain(std::iter::once(&check_digit(&body))) {
        text.push(char::from(b'0' + d));
    }
    text
}

/// `count` distinct random company INNs.
///
/// There are ~10⁹ possible INNs, so collisions are rare; they are redrawn so every organization the bench
/// tracks maps to a different account on the server.
pub fn distinct(count: usize, rng: &mut impl Rng) -> Vec<String> {
    let mut seen = HashSet::with_capacity(count);
    let mut inns = Vec::with_capacity(count);
    while inns.len() < count {
        let inn = random(rng);
        if seen.insert(inn.clone()) {
            inns.push(inn);
        }
    }
    inns
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn known_real_inns_are_valid() {
        // Sberbank and Gazprom, published company INNs.
        assert!(is_valid("7707083893"));
        assert!(is_valid("7736050003"));
    }

    #[test]
    fn check_digit_matches_hand_computation() {
        // 7·2 + 7·4 + 0·10 + 7·3 + 0·5 + 8·9 + 3·4 + 8·6 + 9·8 = 267; 267 mod 11 = 3.
        assert_eq!(check_digit(&[7, 7, 0, 7, 0, 8, 3, 8, 9]), 3);
        // 1·2 + 2·4 + 3·10 + 4·3 + 5·5 + 6·9 + 7·4 + 8·6 + 9·8 = 279; 279 mod 11 = 4.
        assert_eq!(check_digit(&[1, 2, 3, 4, 5, 6, 7, 8, 9]), 4);
        // 1·2 + 0·4 + 0·10 + 0·3 + 0·5 + 0·9 + 0·4 + 0·6 + 1·8 = 10; a remainder of 10 gives check digit 0.
        assert_eq!(check_digit(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), 0);
    }

    #[test]
    fn rejects_wrong_check_digit_and_shapes() {
        // The bank's documentation example: ten digits, but the check digit should be 4.
        assert!(!is_valid("1234567890"));
        assert!(is_valid("1234567894"));
        assert!(!is_valid("7707083894"));
        assert!(!is_valid("770708389"));
        assert!(!is_valid("77070838933"));
        assert!(!is_valid("77070838a3"));
        assert!(!is_valid(""));
    }

    #[test]
    fn generated_inns_are_valid_distinct_and_reproducible() {
        let inns = distinct(5_000, &mut StdRng::seed_from_u64(42));
        assert_eq!(inns.len(), 5_000);
        assert!(inns.iter().all(|inn| is_valid(inn)), "an invalid INN was generated");
        assert!(inns.iter().all(|inn| !inn.starts_with("00")));
        assert_eq!(inns.iter().collect::<HashSet<_>>().len(), inns.len());
        assert_eq!(inns, distinct(5_000, &mut StdRng::seed_from_u64(42)));
        assert_ne!(inns, distinct(5_000, &mut StdRng::seed_from_u64(43)));
    }
}

//! One-time recovery codes (SPEC.md §13.4).
//!
//! Ten codes of 16 base32 characters (80 random bits each), shown once at
//! registration as `XXXX-XXXX-XXXX-XXXX`. The server stores SHA-256 of the
//! normalised code (uppercase, '-' and spaces removed): 80 bits of entropy
//! make a slow hash unnecessary.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Codes issued per account.
pub const CODE_COUNT: usize = 10;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Fresh codes, formatted for display.
pub fn generate(rng: &dyn crate::clock::Rng) -> Vec<Zeroizing<String>> {
    (0..CODE_COUNT)
        .map(|_| {
            let mut raw = Zeroizing::new([0u8; 16]);
            rng.fill(raw.as_mut_slice());
            let mut code = Zeroizing::new(String::with_capacity(19));
            for (i, byte) in raw.iter().enumerate() {
                if i > 0 && i % 4 == 0 {
                    code.push('-');
                }
                // 16 random bytes reduced mod 32: each character uniform.
                code.push(char::from(ALPHABET[usize::from(byte & 31)]));
            }
            code
        })
        .collect()
}

/// SHA-256 of the normalised code.
pub fn hash(code: &str) -> [u8; 32] {
    let normalised: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    Sha256::digest(normalised.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_normalised_hash_matches() {
        let codes = generate(&crate::clock::SystemRng);
        assert_eq!(codes.len(), CODE_COUNT);
        assert_eq!(codes[0].len(), 19);
        assert_ne!(codes[0], codes[1]);
        let spaced = codes[0].replace('-', " ").to_lowercase();
        assert_eq!(hash(&codes[0]), hash(&spaced));
        assert_ne!(hash(&codes[0]), hash(&codes[1]));
    }
}

//! The per-run token that guards every mutating request.

use std::fmt;

/// The name of the session cookie that opening `/?token=...` sets.
pub const COOKIE: &str = "curfew_token";

/// The header a script sends the token in.
pub const HEADER: &str = "x-curfew-token";

/// A random per-run secret: 128 bits from the operating system, as 32 hex characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> Result<Token, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Token(hex::encode(bytes)))
    }

    /// The token's text, for the URL `curfew ui` prints.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `candidate` is this token. Compares every byte whatever the first difference,
    /// so the time taken says nothing about how much of a guess was right.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The token from a `Cookie` header's value, if it carries ours.
    pub fn from_cookies(header: &str) -> Option<&str> {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.trim())
    }
}

impl fmt::Debug for Token {
    /// Never prints the secret (it would end up in logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_characters_and_differ_per_run() {
        let (a, b) = (Token::generate().unwrap(), Token::generate().unwrap());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_exact_token_matches() {
        let t = Token("00ff".into());
        assert!(t.matches("00ff"));
        assert!(!t.matches("00fe"));
        assert!(!t.matches("00ff0"));
        assert!(!t.matches(""));
    }

    #[test]
    fn the_token_is_found_among_other_cookies() {
        assert_eq!(
            Token::from_cookies("a=1; curfew_token=abc ; b=2"),
            Some("abc")
        );
        assert_eq!(Token::from_cookies("curfew_tokenx=abc"), None);
    }
}

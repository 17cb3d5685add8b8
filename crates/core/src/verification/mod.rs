//! The life of an issued code (SPEC section 12): what a caller names its owner by (a
//! [`CodeSubject`]), how a typed code is normalised, the keys that sign codes and subjects
//! ([`Keyring`]), the limits a deployment sets ([`Limits`]), and the answers.
//!
//! Nothing here touches the store: the flows that make an issue and a verification atomic are
//! `store::codes`, written once over both databases; the use cases are `service::verify`.

mod keys;
mod limits;

use std::fmt;

pub use keys::{CodeFor, KEY_BYTES, KeyError, KeyId, Keyring, SubjectMac};
pub use limits::{Limits, LimitsError};

use zeroize::Zeroizing;

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The longest typed code accepted, in bytes, before normalisation: the longest code (1,024
/// characters) with room for the spaces and dashes a person groups it with.
pub const MAX_TYPED_BYTES: usize = 4096;

/// What an issued code is for, chosen by the caller (a user id with a phone number, a reset
/// flow's id): 1 to 256 bytes of UTF-8 without control characters. Never stored, logged or
/// shown: `Debug` redacts it, and the store keeps only its keyed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeSubject(Zeroizing<String>);

impl CodeSubject {
    /// `text` as a subject, or why it is not one.
    pub fn new(text: &str) -> Result<CodeSubject, SubjectError> {
        if text.is_empty() {
            return Err(SubjectError::Empty);
        }
        if text.len() > MAX_SUBJECT_BYTES {
            return Err(SubjectError::TooLong(text.len()));
        }
        if text.chars().any(char::is_control) {
            return Err(SubjectError::Control);
        }
        Ok(CodeSubject(Zeroizing::new(text.to_owned())))
    }

    /// The subject's bytes, for its keyed hash.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for CodeSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSubject(<redacted>)")
    }
}

/// Why a subject was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// No subject.
    #[error("must not be empty")]
    Empty,
    /// More than [`MAX_SUBJECT_BYTES`].
    #[error("must be at most {MAX_SUBJECT_BYTES} bytes of UTF-8, not {0}")]
    TooLong(usize),
    /// A control character.
    #[error("must not contain control characters")]
    Control,
}

/// A code as a person typed it, normalised for the alphabet it was drawn from: spaces
/// removed, `-` removed unless the alphabet has it (ZITADEL's symbols include `-`), and
/// upper-cased when the alphabet has no lower-case letters. Zeroed on drop.
pub struct TypedCode(Zeroizing<String>);

impl TypedCode {
    /// `typed` normalised for an alphabet of `alphabet`'s characters, or why it cannot be a
    /// code.
    pub fn new(typed: &str, alphabet: &str) -> Result<TypedCode, TypedCodeError> {
        if typed.len() > MAX_TYPED_BYTES {
            return Err(TypedCodeError::TooLong(typed.len()));
        }
        let keep_dash = alphabet.contains('-');
        let upper = !alphabet.bytes().any(|b| b.is_ascii_lowercase());
        let mut code = Zeroizing::new(String::with_capacity(typed.len()));
        for c in typed.chars() {
            match c {
                ' ' => {}
                '-' if !keep_dash => {}
                c if upper => code.push(c.to_ascii_uppercase()),
                c => code.push(c),
            }
        }
        if code.is_empty() {
            return Err(TypedCodeError::Empty);
        }
        Ok(TypedCode(code))
    }

    /// The normalised code.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TypedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedCode(<redacted>)")
    }
}

/// Why a typed code was refused before it was compared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypedCodeError {
    /// Nothing but spaces and dashes, or nothing at all.
    #[error("must not be empty")]
    Empty,
    /// More than [`MAX_TYPED_BYTES`].
    #[error("must be at most {MAX_TYPED_BYTES} bytes, not {0}")]
    TooLong(usize),
}

/// What a verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyResult {
    /// The code is right: every pending code of the subject is consumed.
    Approved,
    /// The code is wrong; the failure is counted.
    Rejected,
    /// The subject's codes have expired.
    Expired,
    /// Too many failures: the subject is locked.
    Locked,
    /// Nothing pending for the subject: never issued, already approved, used up or purged.
    NotFound,
}

impl VerifyResult {
    /// Every result, in the order of their protobuf numbers (1 to 5).
    pub const ALL: [VerifyResult; 5] = [
        VerifyResult::Approved,
        VerifyResult::Rejected,
        VerifyResult::Expired,
        VerifyResult::Locked,
        VerifyResult::NotFound,
    ];

    /// The protobuf enum name, e.g. `VERIFY_RESULT_APPROVED`.
    pub const fn name(self) -> &'static str {
        match self {
            VerifyResult::Approved => "VERIFY_RESULT_APPROVED",
            VerifyResult::Rejected => "VERIFY_RESULT_REJECTED",
            VerifyResult::Expired => "VERIFY_RESULT_EXPIRED",
            VerifyResult::Locked => "VERIFY_RESULT_LOCKED",
            VerifyResult::NotFound => "VERIFY_RESULT_NOT_FOUND",
        }
    }

    /// The short name, for metric labels: `approved`, `rejected`, ...
    pub const fn label(self) -> &'static str {
        match self {
            VerifyResult::Approved => "approved",
            VerifyResult::Rejected => "rejected",
            VerifyResult::Expired => "expired",
            VerifyResult::Locked => "locked",
            VerifyResult::NotFound => "not_found",
        }
    }
}

impl fmt::Display for VerifyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The chance that an attacker guesses a pending code within `guesses` tries (at most the
/// failures a lock allows), for codes of `entropy_bits`: `guesses` over the number of codes
/// the configuration makes (the alphabet's size to the power of the length, or fewer with
/// `requireEachClass`), capped at 1.
pub fn guess_chance(entropy_bits: f64, guesses: u32) -> f64 {
    (f64::from(guesses).log2() - entropy_bits).exp2().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_to_256_bytes_without_control_characters() {
        assert!(CodeSubject::new("user-1:+41790000000").is_ok());
        assert!(CodeSubject::new(&"é".repeat(128)).is_ok());
        assert_eq!(CodeSubject::new(""), Err(SubjectError::Empty));
        assert_eq!(
            CodeSubject::new(&"a".repeat(257)),
            Err(SubjectError::TooLong(257))
        );
        assert_eq!(CodeSubject::new("a\nb"), Err(SubjectError::Control));
        assert_eq!(CodeSubject::new("a\u{7f}"), Err(SubjectError::Control));
        let debug = format!("{:?}", CodeSubject::new("alice@example.com").unwrap());
        assert!(!debug.contains("alice"), "{debug}");
    }

    #[test]
    fn typed_codes_lose_spaces_and_dashes_and_take_the_alphabets_case() {
        let digits = "0123456789";
        assert_eq!(
            TypedCode::new(" 123-456 ", digits).unwrap().as_str(),
            "123456"
        );
        let upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        assert_eq!(TypedCode::new("ab-c1", upper).unwrap().as_str(), "ABC1");
        let mixed = "abcABC";
        assert_eq!(TypedCode::new("aB c", mixed).unwrap().as_str(), "aBc");
        // A dash that the alphabet has is part of the code.
        let symbols = "ab-";
        assert_eq!(TypedCode::new("a-b b", symbols).unwrap().as_str(), "a-bb");
        assert_eq!(
            TypedCode::new(" - ", digits).unwrap_err(),
            TypedCodeError::Empty
        );
        assert_eq!(
            TypedCode::new(&"1".repeat(MAX_TYPED_BYTES + 1), digits).unwrap_err(),
            TypedCodeError::TooLong(MAX_TYPED_BYTES + 1)
        );
    }

    #[test]
    fn the_chance_of_a_guess_is_the_guesses_over_the_codes() {
        let six_digits = 6.0 * 10f64.log2();
        assert!((guess_chance(six_digits, 100) - 1e-4).abs() < 1e-12);
        assert_eq!(guess_chance(10f64.log2(), 100), 1.0);
        assert!(guess_chance(6000.0, 100) >= 0.0);
    }
}

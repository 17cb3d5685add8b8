//! The numbers and tables of the SPEC (`SPEC.md`, sections 1, 3 and 4), restated from the text
//! rather than taken from `secretgen`, and what follows from them: a configuration's
//! alphabet, its class sizes and its entropy.

use std::time::Duration;

/// The four classes of SPEC section 3, in the order they are joined: the JSON field that
/// includes each, and its characters.
pub const CLASSES: [(&str, &str); 4] = [
    ("includeLowerLetters", "abcdefghijklmnopqrstuvwxyz"),
    ("includeUpperLetters", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("includeDigits", "0123456789"),
    ("includeSymbols", "~!@#$^&*()_+`-={}|[]:<>?,./"),
];

/// The boolean fields of a configuration: the four classes', then `excludeAmbiguous` and
/// `requireEachClass` (SPEC section 3).
pub const FLAGS: [&str; 6] = [
    CLASSES[0].0,
    CLASSES[1].0,
    CLASSES[2].0,
    CLASSES[3].0,
    "excludeAmbiguous",
    "requireEachClass",
];

/// The seven characters `excludeAmbiguous` drops.
pub const AMBIGUOUS: &str = "0Oo1lI|";

/// The longest code.
pub const MAX_LENGTH: i64 = 1024;

/// The longest expiry: 31 days, `2678400s`.
pub const MAX_EXPIRY: Duration = Duration::from_secs(2_678_400);

/// The shortest expiry but 0 (never): one second. Not in SPEC section 4's text; secretgen
/// refuses anything strictly between 0 and 1 s, since such codes expire before anyone can use
/// them (CHANGELOG, "the 1 s minimum expiry").
pub const MIN_EXPIRY: Duration = Duration::from_secs(1);

/// The entropy floor of a code, in bits: six decimal digits (NIST SP 800-63B).
pub const CODE_FLOOR_BITS: f64 = 19.9;

/// The entropy floor of an application secret, in bits.
pub const APP_SECRET_FLOOR_BITS: f64 = 128.0;

/// Prefix of every full type name.
pub const TYPE_PREFIX: &str = "SECRET_GENERATOR_TYPE_";

/// The usable generator types of SPEC section 1, by number (1 to 8): their short names. The
/// full name is [`TYPE_PREFIX`] and the short name.
pub const TYPES: [(u8, &str); 8] = [
    (1, "INIT_CODE"),
    (2, "VERIFY_EMAIL_CODE"),
    (3, "VERIFY_PHONE_CODE"),
    (4, "PASSWORD_RESET_CODE"),
    (5, "PASSWORDLESS_INIT_CODE"),
    (6, "APP_SECRET"),
    (7, "OTP_SMS"),
    (8, "OTP_EMAIL"),
];

/// The number of `APP_SECRET`, the one type that may never expire and whose floor is
/// [`APP_SECRET_FLOOR_BITS`].
pub const APP_SECRET: u8 = 6;

/// The full name of type `number` (1 to 8).
///
/// # Panics
/// When `number` is not a usable type.
pub fn full_name(number: u8) -> String {
    format!("{TYPE_PREFIX}{}", short_name(number))
}

/// The short name of type `number` (1 to 8).
///
/// # Panics
/// When `number` is not a usable type.
pub fn short_name(number: u8) -> &'static str {
    TYPES
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| *name)
        .unwrap_or_else(|| panic!("no generator type {number}"))
}

/// The entropy floor of type `number`.
pub fn floor_bits(number: u8) -> f64 {
    if number == APP_SECRET {
        APP_SECRET_FLOOR_BITS
    } else {
        CODE_FLOOR_BITS
    }
}

/// Allowed slack, in bits, between [`Shape::entropy_bits`] and secretgen's exact count: both
/// are within about 1e-12 bits of the truth (double precision over a sum whose value is at
/// least 6% of its leading term, see there).
pub const ENTROPY_TOLERANCE: f64 = 1e-9;

/// What the codes of a configuration look like: everything sampling depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Characters per code.
    pub length: usize,
    /// Which of [`CLASSES`] are included, in their order.
    pub classes: [bool; 4],
    /// Whether [`AMBIGUOUS`] is left out.
    pub exclude_ambiguous: bool,
    /// Whether every code holds every included class.
    pub require_each_class: bool,
}

impl Shape {
    /// The characters of each included class that the alphabet keeps, in [`CLASSES`] order.
    pub fn class_chars(&self) -> Vec<Vec<u8>> {
        CLASSES
            .iter()
            .zip(self.classes)
            .filter(|(_, on)| *on)
            .map(|((_, chars), _)| {
                chars
                    .bytes()
                    .filter(|b| !(self.exclude_ambiguous && AMBIGUOUS.as_bytes().contains(b)))
                    .collect()
            })
            .collect()
    }

    /// The alphabet: the included classes joined in SPEC order, less [`AMBIGUOUS`] when
    /// excluded.
    pub fn alphabet(&self) -> Vec<u8> {
        self.class_chars().concat()
    }

    /// log2 of the number of distinct codes, in double precision.
    ///
    /// Without `requireEachClass`: `length * log2(N)`. With it, by inclusion-exclusion over
    /// the classes left out, relative to `N^length` so that nothing overflows:
    /// `length * log2(N) + log2(sum over S of (-1)^|S| ((N - n_S) / N)^length)`. The sum is
    /// the probability that a uniform code holds every class, at least 6% for any alphabet
    /// of the SPEC (4 classes in 4 positions, unambiguous: 0.064), so its rounding error
    /// stays near 1e-15.
    ///
    /// # Panics
    /// When no class is included.
    pub fn entropy_bits(&self) -> f64 {
        let sizes: Vec<f64> = self.class_chars().iter().map(|c| c.len() as f64).collect();
        assert!(!sizes.is_empty(), "no class, no alphabet");
        let n: f64 = sizes.iter().sum();
        let length = self.length as f64;
        let bits = length * n.log2();
        if !self.require_each_class {
            return bits;
        }
        let mut share = 0.0;
        for left_out in 0u32..(1 << sizes.len()) {
            let gone: f64 = (0..sizes.len())
                .filter(|i| left_out & (1 << i) != 0)
                .map(|i| sizes[i])
                .sum();
            let term = ((n - gone) / n).powf(length);
            share += if left_out.count_ones() % 2 == 0 {
                term
            } else {
                -term
            };
        }
        bits + share.log2()
    }
}

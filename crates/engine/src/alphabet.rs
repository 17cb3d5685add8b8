//! ZITADEL's character classes and the alphabets built from them (SPEC section 3).

use std::fmt;

/// Lower-case letters.
pub const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
/// Upper-case letters.
pub const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Decimal digits.
pub const DIGITS: &str = "0123456789";
/// ZITADEL's 27 symbols (no space, no quote, no backslash).
pub const SYMBOLS: &str = "~!@#$^&*()_+`-={}|[]:<>?,./";
/// The seven characters `excludeAmbiguous` removes: they are easily misread for one another.
pub const AMBIGUOUS: &str = "0Oo1lI|";

/// One of the four character classes; an alphabet joins the included ones in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CharClass {
    /// `a` to `z`.
    Lower,
    /// `A` to `Z`.
    Upper,
    /// `0` to `9`.
    Digits,
    /// [`SYMBOLS`].
    Symbols,
}

impl CharClass {
    /// The four classes, in alphabet order.
    pub const ALL: [CharClass; 4] = [
        CharClass::Lower,
        CharClass::Upper,
        CharClass::Digits,
        CharClass::Symbols,
    ];

    /// Every character of the class.
    pub const fn chars(self) -> &'static str {
        match self {
            CharClass::Lower => LOWER,
            CharClass::Upper => UPPER,
            CharClass::Digits => DIGITS,
            CharClass::Symbols => SYMBOLS,
        }
    }

    /// This class as a one-bit [`ClassSet`].
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of character classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ClassSet(u8);

impl ClassSet {
    /// No class.
    pub const EMPTY: ClassSet = ClassSet(0);

    /// The set holding the classes whose flag is true.
    pub const fn from_flags(lower: bool, upper: bool, digits: bool, symbols: bool) -> ClassSet {
        ClassSet(
            ((lower as u8) * CharClass::Lower.bit())
                | ((upper as u8) * CharClass::Upper.bit())
                | ((digits as u8) * CharClass::Digits.bit())
                | ((symbols as u8) * CharClass::Symbols.bit()),
        )
    }

    /// Whether `class` is in the set.
    pub const fn contains(self, class: CharClass) -> bool {
        self.0 & class.bit() != 0
    }

    /// The set with `class` added.
    pub const fn with(self, class: CharClass) -> ClassSet {
        ClassSet(self.0 | class.bit())
    }

    /// How many classes the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set as a bit mask: bit `c as u8` for each class `c`.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The classes of the set, in alphabet order.
    pub fn iter(self) -> impl Iterator<Item = CharClass> {
        CharClass::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// The characters a code is drawn from: the included classes joined in SPEC order, less the
/// ambiguous characters when asked. Never empty; every character is printable ASCII and
/// appears once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Alphabet {
    chars: Vec<u8>,
    classes: ClassSet,
    /// Per class of [`CharClass::ALL`], how many of its characters are in the alphabet.
    class_sizes: [u32; 4],
}

impl Alphabet {
    /// Joins the classes of `classes`; with `exclude_ambiguous`, leaves out [`AMBIGUOUS`].
    pub fn new(classes: ClassSet, exclude_ambiguous: bool) -> Result<Alphabet, EmptyAlphabet> {
        if classes.is_empty() {
            return Err(EmptyAlphabet);
        }
        let mut chars = Vec::with_capacity(89);
        let mut class_sizes = [0u32; 4];
        for class in classes.iter() {
            let kept = class
                .chars()
                .bytes()
                .filter(|b| !(exclude_ambiguous && AMBIGUOUS.as_bytes().contains(b)));
            let before = chars.len();
            chars.extend(kept);
            class_sizes[class as usize] = (chars.len() - before) as u32;
        }
        Ok(Alphabet {
            chars,
            classes,
            class_sizes,
        })
    }

    /// The characters, in order.
    pub fn as_bytes(&self) -> &[u8] {
        &self.chars
    }

    /// The characters, in order.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.chars).expect("alphabets are ASCII")
    }

    /// How many characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Always false: an alphabet is never empty. Here for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The included classes.
    pub fn classes(&self) -> ClassSet {
        self.classes
    }

    /// How many characters of `class` the alphabet holds (0 when it is not included).
    pub fn class_size(&self, class: CharClass) -> u32 {
        self.class_sizes[class as usize]
    }

    /// The class a character of the alphabet belongs to, or `None` when it is not in it.
    pub fn class_of(&self, byte: u8) -> Option<CharClass> {
        if !self.chars.contains(&byte) {
            return None;
        }
        CharClass::ALL
            .into_iter()
            .find(|c| c.chars().as_bytes().contains(&byte))
    }
}

impl fmt::Debug for Alphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Alphabet").field(&self.as_str()).finish()
    }
}

/// No class was included, so there is nothing to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmptyAlphabet;

impl fmt::Display for EmptyAlphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("at least one character class must be included")
    }
}

impl std::error::Error for EmptyAlphabet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_zitadels_sizes_and_no_overlap() {
        assert_eq!(LOWER.len(), 26);
        assert_eq!(UPPER.len(), 26);
        assert_eq!(DIGITS.len(), 10);
        assert_eq!(SYMBOLS.len(), 27);
        assert!(!SYMBOLS.contains(' '));
        let all = Alphabet::new(ClassSet::from_flags(true, true, true, true), false).unwrap();
        let mut sorted = all.as_bytes().to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 89);
        assert!(all.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn classes_join_in_spec_order() {
        let a = Alphabet::new(ClassSet::from_flags(true, false, true, false), false).unwrap();
        assert_eq!(a.as_str(), format!("{LOWER}{DIGITS}"));
        let a = Alphabet::new(ClassSet::from_flags(false, true, true, true), false).unwrap();
        assert_eq!(a.as_str(), format!("{UPPER}{DIGITS}{SYMBOLS}"));
    }

    #[test]
    fn exclude_ambiguous_drops_exactly_the_seven() {
        let all = ClassSet::from_flags(true, true, true, true);
        let a = Alphabet::new(all, true).unwrap();
        assert_eq!(a.len(), 89 - 7);
        for b in AMBIGUOUS.bytes() {
            assert!(!a.as_bytes().contains(&b), "{}", b as char);
        }
        assert_eq!(a.class_size(CharClass::Lower), 24);
        assert_eq!(a.class_size(CharClass::Upper), 24);
        assert_eq!(a.class_size(CharClass::Digits), 8);
        assert_eq!(a.class_size(CharClass::Symbols), 26);
    }

    #[test]
    fn class_of_knows_every_character() {
        let a = Alphabet::new(ClassSet::from_flags(true, true, true, true), false).unwrap();
        assert_eq!(a.class_of(b'q'), Some(CharClass::Lower));
        assert_eq!(a.class_of(b'Q'), Some(CharClass::Upper));
        assert_eq!(a.class_of(b'9'), Some(CharClass::Digits));
        assert_eq!(a.class_of(b'|'), Some(CharClass::Symbols));
        assert_eq!(a.class_of(b' '), None);
        let digits = Alphabet::new(ClassSet::EMPTY.with(CharClass::Digits), false).unwrap();
        assert_eq!(digits.class_of(b'a'), None);
    }

    #[test]
    fn no_class_is_refused() {
        assert_eq!(Alphabet::new(ClassSet::EMPTY, true), Err(EmptyAlphabet));
    }
}

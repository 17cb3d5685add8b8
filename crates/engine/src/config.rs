//! A generator's configuration: checked once, against every rule of SPEC section 4.

use std::fmt;

use crate::alphabet::{Alphabet, CharClass, ClassSet};
use crate::entropy;
use crate::expiry::Expiry;
use crate::generator_type::GeneratorType;

/// How many characters a code has: 1 to [`CodeLength::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeLength(u16);

impl CodeLength {
    /// The longest code.
    pub const MAX: u16 = 1024;

    /// A length of `n` characters, refused outside 1 to 1024.
    pub fn new(n: i64) -> Result<CodeLength, LengthError> {
        match u16::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(CodeLength(n)),
            _ => Err(LengthError(n)),
        }
    }

    /// The length, in characters (and bytes: every alphabet is ASCII).
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// A length outside 1 to 1024.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthError(i64);

impl fmt::Display for LengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be between 1 and {}, got {}",
            CodeLength::MAX,
            self.0
        )
    }
}

impl std::error::Error for LengthError {}

/// The lowest entropy accepted for a code: six decimal digits, NIST SP 800-63B's floor.
pub const MIN_CODE_ENTROPY_BITS: f64 = 19.9;
/// The lowest entropy accepted for an application secret.
pub const MIN_APP_SECRET_ENTROPY_BITS: f64 = 128.0;

/// A configuration as a caller wrote it, not yet checked: the input of
/// [`GeneratorConfig::new`]. Fields mirror the API's JSON; a field a caller left out takes
/// its zero value, as in protobuf, and is checked as such.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDraft {
    /// Type, as text: full name, short name or number.
    pub generator_type: String,
    /// Characters per code.
    pub length: i64,
    /// Protobuf JSON duration, e.g. `"300s"`.
    pub expiry: String,
    /// Include `a-z`.
    pub include_lower_letters: bool,
    /// Include `A-Z`.
    pub include_upper_letters: bool,
    /// Include `0-9`.
    pub include_digits: bool,
    /// Include ZITADEL's 27 symbols.
    pub include_symbols: bool,
    /// Leave out `0 O o 1 l I |`.
    pub exclude_ambiguous: bool,
    /// Every included class appears at least once in every code.
    pub require_each_class: bool,
}

/// A valid configuration of one generator type: every rule of SPEC section 4 holds.
///
/// The only way to build one is [`GeneratorConfig::new`] (or [`GeneratorConfig::default_for`],
/// ZITADEL's shipped defaults), so a `GeneratorConfig` in hand is always usable. It also carries
/// what validation had to compute anyway: the [`Alphabet`] and the exact entropy.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    generator_type: GeneratorType,
    length: CodeLength,
    expiry: Expiry,
    classes: ClassSet,
    exclude_ambiguous: bool,
    require_each_class: bool,
    alphabet: Alphabet,
    entropy_bits: f64,
}

impl GeneratorConfig {
    /// Checks `draft` against every rule and returns either a valid configuration or every
    /// violated rule at once, each naming its JSON field.
    ///
    /// The entropy rule is checked only when length and classes are themselves valid, since
    /// entropy is not defined otherwise.
    pub fn new(draft: &ConfigDraft) -> Result<GeneratorConfig, ConfigError> {
        let mut errors = ConfigError::default();

        let generator_type = draft
            .generator_type
            .parse::<GeneratorType>()
            .map_err(|e| errors.push("generatorType", e.to_string()))
            .ok();

        let length = CodeLength::new(draft.length)
            .map_err(|e| errors.push("length", e.to_string()))
            .ok();

        let expiry = Expiry::parse(&draft.expiry)
            .map_err(|e| errors.push("expiry", e.to_string()))
            .ok();
        if let (Some(expiry), Some(t)) = (expiry, generator_type)
            && expiry.is_never()
            && t != GeneratorType::AppSecret
        {
            errors.push(
                "expiry",
                format!(
                    "0s (never expires) is allowed only for {}",
                    GeneratorType::AppSecret
                ),
            );
        }

        let classes = ClassSet::from_flags(
            draft.include_lower_letters,
            draft.include_upper_letters,
            draft.include_digits,
            draft.include_symbols,
        );
        let alphabet = Alphabet::new(classes, draft.exclude_ambiguous)
            .map_err(|_| {
                for class in CharClass::ALL {
                    errors.push(
                        class.field(),
                        "at least one of includeLowerLetters, includeUpperLetters, \
                         includeDigits and includeSymbols must be true"
                            .to_owned(),
                    );
                }
            })
            .ok();

        let mut positions_suffice = true;
        if let Some(length) = length
            && draft.require_each_class
            && length.get() < classes.len()
        {
            positions_suffice = false;
            errors.push(
                "requireEachClass",
                format!(
                    "needs at least one position per included class: {} classes, length {}",
                    classes.len(),
                    length.get()
                ),
            );
        }

        let mut entropy_bits = f64::NAN;
        if let (Some(length), Some(alphabet), true) = (length, &alphabet, positions_suffice) {
            let sizes: Vec<u32> = classes.iter().map(|c| alphabet.class_size(c)).collect();
            entropy_bits =
                entropy::entropy_bits(&sizes, length.get() as u32, draft.require_each_class);
            let (floor, why) = match generator_type {
                Some(GeneratorType::AppSecret) => (
                    MIN_APP_SECRET_ENTROPY_BITS,
                    "for SECRET_GENERATOR_TYPE_APP_SECRET",
                ),
                _ => (
                    MIN_CODE_ENTROPY_BITS,
                    "(six decimal digits, the NIST SP 800-63B floor)",
                ),
            };
            if entropy_bits < floor {
                errors.push(
                    "entropyBits",
                    format!(
                        "is {:.2} bits; must be at least {floor} {why}: make the code longer \
                         or include more classes",
                        floor_hundredths(entropy_bits)
                    ),
                );
            }
        }

        match (generator_type, length, expiry, alphabet) {
            (Some(generator_type), Some(length), Some(expiry), Some(alphabet))
                if errors.is_empty() =>
            {
                Ok(GeneratorConfig {
                    generator_type,
                    length,
                    expiry,
                    classes,
                    exclude_ambiguous: draft.exclude_ambiguous,
                    require_each_class: draft.require_each_class,
                    alphabet,
                    entropy_bits,
                })
            }
            _ => Err(errors),
        }
    }

    /// ZITADEL's shipped default for `generator_type` (SPEC section 2).
    pub fn default_for(generator_type: GeneratorType) -> GeneratorConfig {
        use GeneratorType::*;
        let (length, expiry_secs, lower, upper) = match generator_type {
            InitCode => (6, 259_200, false, true),
            VerifyEmailCode | VerifyPhoneCode | PasswordResetCode => (6, 3600, false, true),
            PasswordlessInitCode => (12, 3600, true, true),
            AppSecret => (64, 0, true, true),
            OtpSms | OtpEmail => (8, 300, false, false),
        };
        let draft = ConfigDraft {
            generator_type: generator_type.full_name().to_owned(),
            length,
            expiry: format!("{expiry_secs}s"),
            include_lower_letters: lower,
            include_upper_letters: upper,
            include_digits: true,
            include_symbols: false,
            exclude_ambiguous: false,
            require_each_class: false,
        };
        GeneratorConfig::new(&draft).expect("ZITADEL's defaults satisfy every rule")
    }

    /// A configuration that skips the entropy floor and the expiry rules, for tests of
    /// sampling that need tiny alphabets or lengths.
    #[cfg(test)]
    pub(crate) fn unchecked_for_tests(draft: &ConfigDraft) -> GeneratorConfig {
        let classes = ClassSet::from_flags(
            draft.include_lower_letters,
            draft.include_upper_letters,
            draft.include_digits,
            draft.include_symbols,
        );
        let alphabet = Alphabet::new(classes, draft.exclude_ambiguous).unwrap();
        let sizes: Vec<u32> = classes.iter().map(|c| alphabet.class_size(c)).collect();
        GeneratorConfig {
            generator_type: draft.generator_type.parse().unwrap(),
            length: CodeLength::new(draft.length).unwrap(),
            expiry: Expiry::parse(&draft.expiry).unwrap(),
            classes,
            exclude_ambiguous: draft.exclude_ambiguous,
            require_each_class: draft.require_each_class,
            entropy_bits: entropy::entropy_bits(
                &sizes,
                draft.length as u32,
                draft.require_each_class,
            ),
            alphabet,
        }
    }

    /// The configuration as a draft, to change a field and check it again.
    pub fn to_draft(&self) -> ConfigDraft {
        ConfigDraft {
            generator_type: self.generator_type.full_name().to_owned(),
            length: self.length.get() as i64,
            expiry: self.expiry.to_string(),
            include_lower_letters: self.includes(CharClass::Lower),
            include_upper_letters: self.includes(CharClass::Upper),
            include_digits: self.includes(CharClass::Digits),
            include_symbols: self.includes(CharClass::Symbols),
            exclude_ambiguous: self.exclude_ambiguous,
            require_each_class: self.require_each_class,
        }
    }

    /// The type this configuration is for.
    pub fn generator_type(&self) -> GeneratorType {
        self.generator_type
    }

    /// Characters per code.
    pub fn length(&self) -> CodeLength {
        self.length
    }

    /// How long a code stays valid.
    pub fn expiry(&self) -> Expiry {
        self.expiry
    }

    /// The included classes.
    pub fn classes(&self) -> ClassSet {
        self.classes
    }

    /// Whether `class` is included.
    pub fn includes(&self, class: CharClass) -> bool {
        self.classes.contains(class)
    }

    /// Whether `0 O o 1 l I |` are left out.
    pub fn exclude_ambiguous(&self) -> bool {
        self.exclude_ambiguous
    }

    /// Whether every code holds every included class.
    pub fn require_each_class(&self) -> bool {
        self.require_each_class
    }

    /// The characters codes are drawn from.
    pub fn alphabet(&self) -> &Alphabet {
        &self.alphabet
    }

    /// log2 of the number of distinct codes this configuration can produce, exactly counted;
    /// every one of them is equally likely.
    pub fn entropy_bits(&self) -> f64 {
        self.entropy_bits
    }
}

/// `bits` rounded down to two decimals: how `entropyBits` is shown, so that a value shown is
/// never more than the truth (eight digits carry 26.575 bits and show as 26.57).
pub fn floor_hundredths(bits: f64) -> f64 {
    (bits * 100.0).floor() / 100.0
}

/// One violated rule: the JSON field it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's JSON name, e.g. `length`.
    pub field: &'static str,
    /// What is wrong, for a person.
    pub description: String,
}

/// Every rule a [`ConfigDraft`] broke, in field order; never empty when returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigError {
    violations: Vec<FieldViolation>,
}

impl ConfigError {
    fn push(&mut self, field: &'static str, description: String) {
        self.violations.push(FieldViolation { field, description });
    }

    fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violated rules.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.violations
    }

    /// The names of the violated fields, in order, repeated when a field broke two rules.
    pub fn fields(&self) -> Vec<&'static str> {
        self.violations.iter().map(|v| v.field).collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft(t: &str, length: i64, expiry: &str, classes: [bool; 4]) -> ConfigDraft {
        ConfigDraft {
            generator_type: t.to_owned(),
            length,
            expiry: expiry.to_owned(),
            include_lower_letters: classes[0],
            include_upper_letters: classes[1],
            include_digits: classes[2],
            include_symbols: classes[3],
            exclude_ambiguous: false,
            require_each_class: false,
        }
    }

    const DIGITS_ONLY: [bool; 4] = [false, false, true, false];

    #[test]
    fn defaults_are_zitadels() {
        use GeneratorType::*;
        let expect = [
            (InitCode, 6, "259200s", [false, true, true, false]),
            (VerifyEmailCode, 6, "3600s", [false, true, true, false]),
            (VerifyPhoneCode, 6, "3600s", [false, true, true, false]),
            (PasswordResetCode, 6, "3600s", [false, true, true, false]),
            (PasswordlessInitCode, 12, "3600s", [true, true, true, false]),
            (AppSecret, 64, "0s", [true, true, true, false]),
            (OtpSms, 8, "300s", DIGITS_ONLY),
            (OtpEmail, 8, "300s", DIGITS_ONLY),
        ];
        for (t, length, expiry, classes) in expect {
            let c = GeneratorConfig::default_for(t);
            assert_eq!(c.generator_type(), t);
            assert_eq!(c.length().get(), length);
            assert_eq!(c.expiry().to_string(), expiry);
            let flags = CharClass::ALL.map(|k| c.includes(k));
            assert_eq!(flags, classes, "{t}");
            assert!(!c.exclude_ambiguous() && !c.require_each_class());
        }
    }

    #[test]
    fn entropy_is_reported_as_in_the_spec() {
        let c = GeneratorConfig::default_for(GeneratorType::OtpSms);
        assert_eq!(floor_hundredths(c.entropy_bits()), 26.57);
    }

    #[test]
    fn a_valid_draft_round_trips() {
        for t in GeneratorType::ALL {
            let c = GeneratorConfig::default_for(t);
            assert_eq!(GeneratorConfig::new(&c.to_draft()), Ok(c));
        }
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let d = draft("UNSPECIFIED", 0, "-5s", [false; 4]);
        let err = GeneratorConfig::new(&d).unwrap_err();
        assert_eq!(
            err.fields(),
            [
                "generatorType",
                "length",
                "expiry",
                "includeLowerLetters",
                "includeUpperLetters",
                "includeDigits",
                "includeSymbols"
            ]
        );
        assert!(
            err.to_string()
                .contains("length must be between 1 and 1024, got 0")
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let fields = |d: ConfigDraft| GeneratorConfig::new(&d).unwrap_err().fields();
        assert_eq!(
            fields(draft("nope", 8, "300s", DIGITS_ONLY)),
            ["generatorType"]
        );
        assert_eq!(
            fields(draft("0", 8, "300s", DIGITS_ONLY)),
            ["generatorType"]
        );
        assert_eq!(
            fields(draft("OTP_SMS", 1025, "300s", DIGITS_ONLY)),
            ["length"]
        );
        assert_eq!(
            fields(draft("OTP_SMS", -1, "300s", DIGITS_ONLY)),
            ["length"]
        );
        assert_eq!(fields(draft("OTP_SMS", 8, "300", DIGITS_ONLY)), ["expiry"]);
        assert_eq!(
            fields(draft("OTP_SMS", 8, "2678401s", DIGITS_ONLY)),
            ["expiry"]
        );
        assert_eq!(fields(draft("OTP_SMS", 8, "0s", DIGITS_ONLY)), ["expiry"]);
        // Under a second, codes are born expired: refused for every type, APP_SECRET too.
        for short in ["0.000000001s", "0.5s", "0.999999999s"] {
            assert_eq!(fields(draft("OTP_SMS", 8, short, DIGITS_ONLY)), ["expiry"]);
            assert_eq!(
                fields(draft("APP_SECRET", 64, short, [true, true, true, false])),
                ["expiry"]
            );
        }
        let err = GeneratorConfig::new(&draft("OTP_SMS", 8, "0.5s", DIGITS_ONLY)).unwrap_err();
        assert!(err.to_string().contains("at least 1s"), "{err}");
        assert!(GeneratorConfig::new(&draft("OTP_SMS", 8, "1s", DIGITS_ONLY)).is_ok());
        assert!(GeneratorConfig::new(&draft("OTP_SMS", 8, "1.000000001s", DIGITS_ONLY)).is_ok());
        assert_eq!(fields(draft("OTP_SMS", 8, "", DIGITS_ONLY)), ["expiry"]);
        // Five digits are 16.6 bits, below the floor; six are 19.93, above it.
        assert_eq!(
            fields(draft("OTP_SMS", 5, "300s", DIGITS_ONLY)),
            ["entropyBits"]
        );
        assert!(GeneratorConfig::new(&draft("OTP_SMS", 6, "300s", DIGITS_ONLY)).is_ok());
        // An app secret needs 128 bits: 21 alphanumerics are 125, 22 are 131.
        let alnum = [true, true, true, false];
        assert_eq!(
            fields(draft("APP_SECRET", 21, "0s", alnum)),
            ["entropyBits"]
        );
        assert!(GeneratorConfig::new(&draft("APP_SECRET", 22, "0s", alnum)).is_ok());
        let mut d = draft("INIT_CODE", 3, "60s", [true, true, true, true]);
        d.require_each_class = true;
        assert_eq!(fields(d), ["requireEachClass"]);
    }

    #[test]
    fn exclude_ambiguous_counts_toward_the_entropy_floor() {
        // Six digits pass (19.93 bits); without 0 and 1 six digits are 18 bits and fail.
        let mut d = draft("OTP_SMS", 6, "300s", DIGITS_ONLY);
        assert!(GeneratorConfig::new(&d).is_ok());
        d.exclude_ambiguous = true;
        assert_eq!(
            GeneratorConfig::new(&d).unwrap_err().fields(),
            ["entropyBits"]
        );
    }

    /// Draws drafts of any shape, valid or not.
    fn any_draft() -> impl Strategy<Value = ConfigDraft> {
        let types = prop_oneof![
            (0u8..=9).prop_map(|n| n.to_string()),
            prop::sample::select(
                GeneratorType::ALL
                    .map(|t| t.short_name().to_lowercase())
                    .to_vec()
            ),
            Just("bogus".to_owned()),
        ];
        let expiry = prop_oneof![
            (0u64..3_000_000).prop_map(|s| format!("{s}s")),
            (0u64..100, 0u32..1000).prop_map(|(s, ms)| format!("{s}.{ms:03}s")),
            (0u32..1_000_000_000).prop_map(|ns| format!("0.{ns:09}s")),
            Just("-1s".to_owned()),
            Just("1h".to_owned()),
        ];
        (
            types,
            -5i64..1100,
            expiry,
            any::<[bool; 4]>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(t, length, expiry, c, exclude, require)| ConfigDraft {
                generator_type: t,
                length,
                expiry,
                include_lower_letters: c[0],
                include_upper_letters: c[1],
                include_digits: c[2],
                include_symbols: c[3],
                exclude_ambiguous: exclude,
                require_each_class: require,
            })
    }

    proptest! {
        /// The validator agrees with an independent restatement of SPEC section 4, field by field.
        #[test]
        fn verdict_matches_the_rules(d in any_draft()) {
            let t = d.generator_type.parse::<GeneratorType>().ok();
            let classes = [d.include_lower_letters, d.include_upper_letters, d.include_digits,
                d.include_symbols];
            let n_classes = classes.iter().filter(|c| **c).count();
            let length_ok = (1..=1024).contains(&d.length);
            let parsed = Expiry::parse(&d.expiry);
            let zero_ok = t == Some(GeneratorType::AppSecret)
                || parsed.map_or(true, |e| !e.is_never());
            let mut want: Vec<&str> = Vec::new();
            if t.is_none() { want.push("generatorType"); }
            if !length_ok { want.push("length"); }
            if parsed.is_err() { want.push("expiry"); }
            if t.is_some() && !zero_ok { want.push("expiry"); }
            // Restated without `Expiry`: "0.<digits>s" with a digit other than 0 is under a
            // second, which no type accepts.
            let sub_second = d.expiry.strip_prefix("0.").and_then(|f| f.strip_suffix('s'))
                .is_some_and(|f| f.bytes().any(|b| b != b'0'));
            prop_assert!(!sub_second || parsed.is_err(), "{} accepted", d.expiry);
            if n_classes == 0 {
                want.extend(CharClass::ALL.map(|c| c.field()));
            }
            let short = d.require_each_class && length_ok && (d.length as usize) < n_classes;
            if short { want.push("requireEachClass"); }
            if length_ok && n_classes > 0 && !short {
                let alphabet = Alphabet::new(
                    ClassSet::from_flags(classes[0], classes[1], classes[2], classes[3]),
                    d.exclude_ambiguous,
                ).unwrap();
                let bits = if d.require_each_class {
                    // Independent of the fast path: always the exact big-integer count.
                    let sizes: Vec<u32> = alphabet.classes().iter()
                        .map(|c| alphabet.class_size(c)).collect();
                    entropy::log2(&entropy::count_codes(&sizes, d.length as u32, true))
                } else {
                    d.length as f64 * (alphabet.len() as f64).log2()
                };
                let floor = if t == Some(GeneratorType::AppSecret) { 128.0 } else { 19.9 };
                if bits < floor { want.push("entropyBits"); }
            }
            match GeneratorConfig::new(&d) {
                Ok(c) => {
                    prop_assert!(want.is_empty(), "accepted, but should break {:?}", want);
                    let e = c.expiry().duration();
                    prop_assert!(e.is_zero() || e >= std::time::Duration::from_secs(1), "{:?}", e);
                    prop_assert_eq!(c.length().get() as i64, d.length);
                    prop_assert_eq!(c.to_draft().include_digits, d.include_digits);
                }
                Err(e) => prop_assert_eq!(e.fields(), want),
            }
        }
    }
}

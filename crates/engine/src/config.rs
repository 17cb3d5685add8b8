//! A generator's configuration: checked once, against every rule of SPEC section 4.

use std::fmt;

use crate::alphabet::{Alphabet, CharClass, ClassSet};
use crate::entropy;
use crate::expiry::{Expiry, ExpiryError};
use crate::generator_type::GeneratorType;

/// How many characters a code has: 1 to [`CodeLength::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeLength(u16);

impl CodeLength {
    /// The longest code.
    pub const MAX: u16 = 1024;

    /// A length of `n` characters, refused outside 1 to 1024. Any integer a transport reads
    /// (a JSON number or string of digits, a protobuf `uint32`) converts straight into it.
    pub fn new(n: impl Into<i128>) -> Result<CodeLength, LengthError> {
        let n = n.into();
        match u16::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(CodeLength(n)),
            // Shown as a 64-bit integer reads it, as protobuf's `int64` does.
            _ => Err(LengthError(n.clamp(i64::MIN.into(), i64::MAX.into()) as i64)),
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

impl LengthError {
    /// The length refused (clamped to 64 bits).
    pub fn value(self) -> i64 {
        self.0
    }
}

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

/// A field of a configuration, named as SPEC section 4 names it. Each transport turns it into
/// its own name (`includeLowerLetters` in JSON, `include_lower_letters` in protobuf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The generator type.
    GeneratorType,
    /// Characters per code.
    Length,
    /// How long a code stays valid.
    Expiry,
    /// Include `a-z`.
    IncludeLowerLetters,
    /// Include `A-Z`.
    IncludeUpperLetters,
    /// Include `0-9`.
    IncludeDigits,
    /// Include the symbols.
    IncludeSymbols,
    /// Leave out the ambiguous characters.
    ExcludeAmbiguous,
    /// Every included class in every code.
    RequireEachClass,
    /// The computed entropy (its floor is a rule of its own).
    EntropyBits,
}

impl Field {
    /// Every field, in SPEC order.
    pub const ALL: [Field; 10] = [
        Field::GeneratorType,
        Field::Length,
        Field::Expiry,
        Field::IncludeLowerLetters,
        Field::IncludeUpperLetters,
        Field::IncludeDigits,
        Field::IncludeSymbols,
        Field::ExcludeAmbiguous,
        Field::RequireEachClass,
        Field::EntropyBits,
    ];

    /// The six flags, in SPEC order.
    pub const FLAGS: [Field; 6] = [
        Field::IncludeLowerLetters,
        Field::IncludeUpperLetters,
        Field::IncludeDigits,
        Field::IncludeSymbols,
        Field::ExcludeAmbiguous,
        Field::RequireEachClass,
    ];

    /// The field that includes `class`.
    pub const fn include(class: CharClass) -> Field {
        match class {
            CharClass::Lower => Field::IncludeLowerLetters,
            CharClass::Upper => Field::IncludeUpperLetters,
            CharClass::Digits => Field::IncludeDigits,
            CharClass::Symbols => Field::IncludeSymbols,
        }
    }

    /// The field's name in SPEC section 4 (lowerCamelCase).
    pub const fn name(self) -> &'static str {
        match self {
            Field::GeneratorType => "generatorType",
            Field::Length => "length",
            Field::Expiry => "expiry",
            Field::IncludeLowerLetters => "includeLowerLetters",
            Field::IncludeUpperLetters => "includeUpperLetters",
            Field::IncludeDigits => "includeDigits",
            Field::IncludeSymbols => "includeSymbols",
            Field::ExcludeAmbiguous => "excludeAmbiguous",
            Field::RequireEachClass => "requireEachClass",
            Field::EntropyBits => "entropyBits",
        }
    }

    /// Whether the alphabet depends on this field: every flag but `requireEachClass`.
    fn shapes_alphabet(self) -> bool {
        Field::FLAGS.contains(&self) && self != Field::RequireEachClass
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A configuration as a caller wrote it, not yet checked: the input of
/// [`GeneratorConfig::new`]. A field a caller left out takes its zero value, as in protobuf,
/// and is checked as such. A field a caller wrote in a form its transport could not read (a
/// string where JSON needs `true` or `false`) is listed in `unreadable`, with why: it is
/// reported as it is, and the rules that depend on it are not judged, since its value is not
/// known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDraft {
    /// The type the configuration is for.
    pub generator_type: GeneratorType,
    /// Characters per code, or why what was written is no length (judged in its place).
    pub length: Result<CodeLength, LengthError>,
    /// How long a code stays valid, or why what was written is no expiry (judged in its
    /// place).
    pub expiry: Result<Expiry, ExpiryError>,
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
    /// Fields that could not be read, each with why; their values above are zero values.
    pub unreadable: Vec<FieldViolation>,
}

impl ConfigDraft {
    /// A draft for `generator_type` with every field at its zero value (length 0, expiry
    /// `0s`, no class): what an empty request body says.
    pub fn new(generator_type: GeneratorType) -> ConfigDraft {
        ConfigDraft {
            generator_type,
            length: CodeLength::new(0),
            expiry: Ok(Expiry::NEVER),
            include_lower_letters: false,
            include_upper_letters: false,
            include_digits: false,
            include_symbols: false,
            exclude_ambiguous: false,
            require_each_class: false,
            unreadable: Vec::new(),
        }
    }

    /// A draft for a type that could not be read (`why`: an unknown or UNSPECIFIED type),
    /// every other field at its zero value: the transport fills them in as for any draft,
    /// so that the type's violation is listed with every other one at once (SPEC section 4).
    /// Its `generator_type` is a stand-in that nothing reads: [`GeneratorConfig::new`]
    /// refuses the draft, and judges the rules that depend on the type only where every type
    /// would break them.
    pub fn with_unreadable_type(why: impl Into<String>) -> ConfigDraft {
        ConfigDraft {
            unreadable: vec![FieldViolation {
                field: Field::GeneratorType,
                description: why.into(),
            }],
            ..ConfigDraft::new(GeneratorType::OtpSms)
        }
    }

    /// Whether `field` could not be read.
    fn unreadable(&self, field: Field) -> bool {
        self.unreadable.iter().any(|v| v.field == field)
    }
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
    /// violated rule at once, each naming its [`Field`]: first the fields that could not be
    /// read, then the rules in field order.
    ///
    /// A rule is judged only when every field it reads is known: the entropy rule needs a
    /// valid length and alphabet, `requireEachClass` needs the length and the classes, and
    /// nothing is judged of a field that could not be read. Without a known type, a rule
    /// that depends on it is judged only where it holds for every type: an entropy below
    /// the lowest floor is refused, an expiry of `0s` is not judged. This is the one place
    /// that knows which rule reads which field.
    pub fn new(draft: &ConfigDraft) -> Result<GeneratorConfig, ConfigError> {
        let mut errors = ConfigError {
            violations: draft.unreadable.clone(),
            entropy_bits: None,
        };
        let known = |field: Field| !draft.unreadable(field);
        let generator_type = draft.generator_type;
        let type_known = known(Field::GeneratorType);

        let length = if known(Field::Length) {
            draft
                .length
                .map_err(|e| errors.push(Field::Length, e.to_string()))
                .ok()
        } else {
            None
        };

        let expiry = if known(Field::Expiry) {
            draft
                .expiry
                .map_err(|e| errors.push(Field::Expiry, e.to_string()))
                .ok()
        } else {
            None
        };
        if let Some(expiry) = expiry
            && expiry.is_never()
            && type_known
            && generator_type != GeneratorType::AppSecret
        {
            errors.push(
                Field::Expiry,
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
        let classes_known = Field::ALL
            .into_iter()
            .filter(|f| f.shapes_alphabet())
            .all(known);
        let alphabet = if classes_known {
            Alphabet::new(classes, draft.exclude_ambiguous)
                .map_err(|_| {
                    for class in CharClass::ALL {
                        errors.push(
                            Field::include(class),
                            "at least one of includeLowerLetters, includeUpperLetters, \
                             includeDigits and includeSymbols must be true"
                                .to_owned(),
                        );
                    }
                })
                .ok()
        } else {
            None
        };

        let mut positions_suffice = known(Field::RequireEachClass);
        if let (Some(length), true, true) = (length, classes_known, positions_suffice)
            && draft.require_each_class
            && length.get() < classes.len()
        {
            positions_suffice = false;
            errors.push(
                Field::RequireEachClass,
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
            errors.entropy_bits = Some(entropy_bits);
            let (floor, why) = match generator_type {
                GeneratorType::AppSecret if type_known => (
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
                    Field::EntropyBits,
                    format!(
                        "is {:.2} bits; must be at least {floor} {why}: make the code longer \
                         or include more classes",
                        floor_hundredths(entropy_bits)
                    ),
                );
            }
        }

        match (length, expiry, alphabet) {
            (Some(length), Some(expiry), Some(alphabet)) if errors.is_empty() => {
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
            length: CodeLength::new(length),
            expiry: Expiry::from_secs(expiry_secs),
            include_lower_letters: lower,
            include_upper_letters: upper,
            include_digits: true,
            ..ConfigDraft::new(generator_type)
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
            generator_type: draft.generator_type,
            length: draft.length.unwrap(),
            expiry: draft.expiry.unwrap(),
            classes,
            exclude_ambiguous: draft.exclude_ambiguous,
            require_each_class: draft.require_each_class,
            entropy_bits: entropy::entropy_bits(
                &sizes,
                draft.length.unwrap().get() as u32,
                draft.require_each_class,
            ),
            alphabet,
        }
    }

    /// The configuration as a draft, to change a field and check it again.
    pub fn to_draft(&self) -> ConfigDraft {
        ConfigDraft {
            generator_type: self.generator_type,
            length: Ok(self.length),
            expiry: Ok(self.expiry),
            include_lower_letters: self.includes(CharClass::Lower),
            include_upper_letters: self.includes(CharClass::Upper),
            include_digits: self.includes(CharClass::Digits),
            include_symbols: self.includes(CharClass::Symbols),
            exclude_ambiguous: self.exclude_ambiguous,
            require_each_class: self.require_each_class,
            unreadable: Vec::new(),
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

/// One violated rule: the field it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field.
    pub field: Field,
    /// What is wrong, for a person.
    pub description: String,
}

/// Every rule a [`ConfigDraft`] broke, in field order; never empty when returned. It also
/// keeps the draft's entropy when its length and alphabet were valid enough to compute it
/// (a draft below the entropy floor has one), for a preview to show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigError {
    violations: Vec<FieldViolation>,
    entropy_bits: Option<f64>,
}

impl ConfigError {
    fn push(&mut self, field: Field, description: String) {
        self.violations.push(FieldViolation { field, description });
    }

    fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violated rules.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.violations
    }

    /// The draft's entropy in bits, when its length and alphabet could be judged.
    pub fn entropy_bits(&self) -> Option<f64> {
        self.entropy_bits
    }

    /// The violated fields, in order, repeated when a field broke two rules.
    pub fn fields(&self) -> Vec<Field> {
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
mod tests;

//! SPEC section 4, restated: which fields a proposed configuration violates, and what an
//! accepted configuration must satisfy.

use std::fmt;
use std::time::Duration;

use secretgen::GeneratorConfig;

use crate::spec::{self, CLASSES, MAX_EXPIRY, MAX_LENGTH, MIN_EXPIRY, Shape};

/// A configuration as an admin might write it for one generator type, valid or not: the
/// oracle's own plain input, apart from the crate's draft type (see [`crate::adapter`] for
/// the one conversion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The type, by its number in SPEC section 1 (1 to 8): the path names it, so it is read
    /// (by [`generator_type`]) before there is a configuration to judge.
    pub generator_type: u8,
    /// Characters per code.
    pub length: i64,
    /// A protobuf JSON duration, e.g. `"300s"`.
    pub expiry: String,
    /// Include `a-z`.
    pub include_lower_letters: bool,
    /// Include `A-Z`.
    pub include_upper_letters: bool,
    /// Include `0-9`.
    pub include_digits: bool,
    /// Include the 27 symbols.
    pub include_symbols: bool,
    /// Leave out `0 O o 1 l I |`.
    pub exclude_ambiguous: bool,
    /// Every included class in every code.
    pub require_each_class: bool,
    /// Fields the transport could not read (a value of the wrong JSON type), by name: each
    /// holds its zero value above, is reported as it is, and no rule that reads it is judged.
    pub unreadable: Vec<&'static str>,
}

impl Proposal {
    /// A proposal for type `generator_type` with every field at its zero value (length 0,
    /// expiry `0s`, no class): what an empty request body says.
    pub fn new(generator_type: u8) -> Proposal {
        Proposal {
            generator_type,
            length: 0,
            expiry: "0s".to_owned(),
            include_lower_letters: false,
            include_upper_letters: false,
            include_digits: false,
            include_symbols: false,
            exclude_ambiguous: false,
            require_each_class: false,
            unreadable: Vec::new(),
        }
    }

    /// The four `include*` flags, in SPEC order.
    pub fn classes(&self) -> [bool; 4] {
        [
            self.include_lower_letters,
            self.include_upper_letters,
            self.include_digits,
            self.include_symbols,
        ]
    }

    /// The codes this proposal asks for; meaningful only where its length is in range.
    pub fn shape(&self) -> Shape {
        Shape {
            length: usize::try_from(self.length).unwrap_or(0),
            classes: self.classes(),
            exclude_ambiguous: self.exclude_ambiguous,
            require_each_class: self.require_each_class,
        }
    }

    /// What a valid configuration says of itself, read through its getters: a proposal that
    /// must satisfy every rule.
    pub fn of(c: &GeneratorConfig) -> Proposal {
        let shape = crate::adapter::shape(c);
        Proposal {
            length: shape.length as i64,
            expiry: secretgen::protojson::duration_text(c.expiry().duration()),
            include_lower_letters: shape.classes[0],
            include_upper_letters: shape.classes[1],
            include_digits: shape.classes[2],
            include_symbols: shape.classes[3],
            exclude_ambiguous: shape.exclude_ambiguous,
            require_each_class: shape.require_each_class,
            ..Proposal::new(c.generator_type().number())
        }
    }
}

/// Why a text names no usable generator type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeFault {
    /// `UNSPECIFIED`, its full name, or the number 0.
    Unspecified,
    /// Nothing SPEC section 1 names.
    Unknown,
}

/// The number (1 to 8) of the type `text` names: the full name or the short name in any
/// ASCII case, or the number in decimal digits (leading zeros allowed).
pub fn generator_type(text: &str) -> Result<u8, TypeFault> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.trim_start_matches('0') {
            "" => Err(TypeFault::Unspecified),
            digits => spec::TYPES
                .iter()
                .find(|(n, _)| n.to_string() == digits)
                .map(|(n, _)| *n)
                .ok_or(TypeFault::Unknown),
        };
    }
    let upper = text.to_ascii_uppercase();
    if upper == "UNSPECIFIED" || upper == format!("{}UNSPECIFIED", spec::TYPE_PREFIX) {
        return Err(TypeFault::Unspecified);
    }
    spec::TYPES
        .iter()
        .find(|(n, short)| upper == *short || upper == spec::full_name(*n))
        .map(|(n, _)| *n)
        .ok_or(TypeFault::Unknown)
}

/// Why a text is not an acceptable expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryFault {
    /// Not of the shape `-?\d+(\.\d{1,9})?s`.
    NotADuration,
    /// Below zero.
    Negative,
    /// Above [`MAX_EXPIRY`], or seconds beyond 64 bits whatever the sign.
    TooLong,
    /// Above 0 but below [`MIN_EXPIRY`].
    TooShort,
}

/// Splits text of the shape `-?\d+(\.\d{1,9})?s` (a protobuf JSON duration) into its sign,
/// its seconds digits and its fraction digits, byte by byte; `None` for any other shape.
pub fn duration_shape(s: &str) -> Option<(bool, &str, &str)> {
    let b = s.as_bytes();
    let negative = b.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let digits_from = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let secs_end = digits_from(i);
    let secs = &s[i..secs_end];
    if secs.is_empty() {
        return None;
    }
    i = secs_end;
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let end = digits_from(i + 1);
        frac = &s[i + 1..end];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        i = end;
    }
    (b.get(i) == Some(&b's') && i + 1 == b.len()).then_some((negative, secs, frac))
}

/// The expiry `text` stands for, by SPEC section 4 (and the 1 s minimum).
pub fn expiry(text: &str) -> Result<Duration, ExpiryFault> {
    let (negative, secs, frac) = duration_shape(text).ok_or(ExpiryFault::NotADuration)?;
    let secs: u64 = secs.parse().map_err(|_| ExpiryFault::TooLong)?;
    let nanos = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let d = Duration::new(secs, nanos);
    if negative && !d.is_zero() {
        Err(ExpiryFault::Negative)
    } else if d > MAX_EXPIRY {
        Err(ExpiryFault::TooLong)
    } else if !d.is_zero() && d < MIN_EXPIRY {
        Err(ExpiryFault::TooShort)
    } else {
        Ok(d)
    }
}

/// The fields a proposal violates, by the rules of SPEC section 4, sorted.
#[derive(Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each violated field once, sorted by name.
    pub fields: Vec<&'static str>,
    /// The entropy is within [`spec::ENTROPY_TOLERANCE`] of its floor, where double
    /// precision cannot say which side it is on: `entropyBits` may be named or not.
    pub entropy_at_floor: bool,
}

impl Verdict {
    /// Whether the validator's list of violated fields (any order) is this verdict.
    pub fn agrees(&self, got: &[&str]) -> bool {
        let mut got = got.to_vec();
        got.sort_unstable();
        if self.entropy_at_floor {
            got.retain(|f| *f != "entropyBits");
        }
        got == self.fields
    }
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.fields)?;
        if self.entropy_at_floor {
            f.write_str(" (and maybe entropyBits)")?;
        }
        Ok(())
    }
}

/// Which fields `p` violates:
/// - every field it could not read, and no rule that reads one of them;
/// - `length`: 0, negative or above 1024;
/// - `expiry`: not a duration, negative, above 31 days, under 1 s but not 0, or 0 (never)
///   for a type other than APP_SECRET;
/// - all four `include*` fields: no class included;
/// - `requireEachClass`: fewer positions (a valid length) than included classes;
/// - `entropyBits`: when length, classes and positions are valid, below 19.9 bits, or 128
///   for APP_SECRET.
///
/// The type's own rule (UNSPECIFIED or unknown) is [`generator_type`]'s.
pub fn violations(p: &Proposal) -> Verdict {
    let known = |field: &str| !p.unreadable.contains(&field);
    let mut fields = p.unreadable.clone();
    let length_known = known("length");
    let length_ok = length_known && (1..=MAX_LENGTH).contains(&p.length);
    if length_known && !length_ok {
        fields.push("length");
    }
    if known("expiry") {
        match expiry(&p.expiry) {
            Err(_) => fields.push("expiry"),
            Ok(d) if d.is_zero() && p.generator_type != spec::APP_SECRET => {
                fields.push("expiry");
            }
            Ok(_) => {}
        }
    }
    let classes_known = CLASSES.iter().all(|(field, _)| known(field)) && known("excludeAmbiguous");
    let classes = p.classes().iter().filter(|on| **on).count();
    if classes_known && classes == 0 {
        fields.extend(CLASSES.map(|(field, _)| field));
    }
    let positions_judged = length_ok && classes_known && known("requireEachClass");
    let short = positions_judged && p.require_each_class && (p.length as usize) < classes;
    if short {
        fields.push("requireEachClass");
    }
    let mut entropy_at_floor = false;
    if positions_judged && classes > 0 && !short {
        let bits = p.shape().entropy_bits();
        let floor = spec::floor_bits(p.generator_type);
        if (bits - floor).abs() < spec::ENTROPY_TOLERANCE {
            entropy_at_floor = true;
        } else if bits < floor {
            fields.push("entropyBits");
        }
    }
    fields.sort_unstable();
    Verdict {
        fields,
        entropy_at_floor,
    }
}

/// Panics unless the validator's answer for `p` is the oracle's: accepted exactly when no
/// rule is violated, and then a configuration that is what `p` says and satisfies every rule
/// ([`check_valid`]); refused naming exactly the violated fields.
pub fn check_verdict(p: &Proposal, answer: &Result<GeneratorConfig, Vec<&'static str>>) {
    let want = violations(p);
    match answer {
        Ok(c) => {
            assert!(want.agrees(&[]), "accepted, but breaks {want:?}: {p:?}");
            check_valid(c);
            let got = Proposal::of(c);
            assert_eq!(expiry(&got.expiry), expiry(&p.expiry), "{p:?}");
            let same = Proposal {
                expiry: p.expiry.clone(),
                ..got
            };
            assert_eq!(&same, p, "the configuration is not what was proposed");
        }
        Err(fields) => {
            assert!(!fields.is_empty(), "refused without a reason: {p:?}");
            assert!(
                want.agrees(fields),
                "named {fields:?}, want {want:?}: {p:?}"
            );
        }
    }
}

/// Panics unless `c` satisfies every rule of SPEC section 4 and is what it says: its
/// alphabet is the one its classes make, its entropy the one they give, and written back as
/// a proposal and validated again it is itself.
pub fn check_valid(c: &GeneratorConfig) {
    let p = Proposal::of(c);
    let verdict = violations(&p);
    assert!(verdict.agrees(&[]), "valid, but breaks {verdict:?}: {c:?}");
    let shape = p.shape();
    assert_eq!(c.alphabet().as_bytes(), &shape.alphabet()[..], "{c:?}");
    let (bits, want) = (c.entropy_bits(), shape.entropy_bits());
    assert!(
        (bits - want).abs() < spec::ENTROPY_TOLERANCE,
        "entropy {bits}, want {want}: {c:?}"
    );
    assert_eq!(
        crate::adapter::validate(&p).as_ref(),
        Ok(c),
        "written back, it is not itself"
    );
}

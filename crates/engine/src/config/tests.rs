use super::*;
use Field::{
    EntropyBits, ExcludeAmbiguous, Expiry, IncludeDigits, IncludeLowerLetters, IncludeSymbols,
    IncludeUpperLetters, Length, RequireEachClass,
};
use GeneratorType::{AppSecret, InitCode, OtpSms};
use std::time::Duration;

type Written = Result<crate::Expiry, ExpiryError>;

/// An expiry of `secs` seconds and `nanos` nanoseconds, as a transport reads it.
fn ex(secs: u64, nanos: u32) -> Written {
    crate::Expiry::new(Duration::new(secs, nanos))
}

/// A negative expiry, as a transport reads it.
const NEGATIVE: Written = Err(ExpiryError::Negative);

/// A text a transport could not read as a duration.
const NOT_A_DURATION: Written = Err(ExpiryError::Unreadable("not a duration"));

fn draft(t: GeneratorType, length: i64, expiry: Written, classes: [bool; 4]) -> ConfigDraft {
    draft_over(ConfigDraft::new(t), length, expiry, classes)
}

/// `base` with these fields.
fn draft_over(base: ConfigDraft, length: i64, expiry: Written, classes: [bool; 4]) -> ConfigDraft {
    ConfigDraft {
        length: CodeLength::new(length),
        expiry,
        include_lower_letters: classes[0],
        include_upper_letters: classes[1],
        include_digits: classes[2],
        include_symbols: classes[3],
        ..base
    }
}

const DIGITS_ONLY: [bool; 4] = [false, false, true, false];

#[test]
fn defaults_are_zitadels() {
    use GeneratorType::*;
    let expect: [(GeneratorType, usize, Written, [bool; 4]); 8] = [
        (InitCode, 6, ex(259200, 0), [false, true, true, false]),
        (VerifyEmailCode, 6, ex(3600, 0), [false, true, true, false]),
        (VerifyPhoneCode, 6, ex(3600, 0), [false, true, true, false]),
        (
            PasswordResetCode,
            6,
            ex(3600, 0),
            [false, true, true, false],
        ),
        (
            PasswordlessInitCode,
            12,
            ex(3600, 0),
            [true, true, true, false],
        ),
        (AppSecret, 64, ex(0, 0), [true, true, true, false]),
        (OtpSms, 8, ex(300, 0), DIGITS_ONLY),
        (OtpEmail, 8, ex(300, 0), DIGITS_ONLY),
    ];
    for (t, length, expiry, classes) in expect {
        let c = GeneratorConfig::default_for(t);
        assert_eq!(c.generator_type(), t);
        assert_eq!(c.length().get(), length);
        assert_eq!(Ok(c.expiry()), expiry);
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
    let d = draft(OtpSms, 0, NEGATIVE, [false; 4]);
    let err = GeneratorConfig::new(&d).unwrap_err();
    assert_eq!(
        err.fields(),
        [
            Length,
            Expiry,
            IncludeLowerLetters,
            IncludeUpperLetters,
            IncludeDigits,
            IncludeSymbols
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
        fields(draft(OtpSms, 1025, ex(300, 0), DIGITS_ONLY)),
        [Length]
    );
    assert_eq!(fields(draft(OtpSms, -1, ex(300, 0), DIGITS_ONLY)), [Length]);
    assert_eq!(
        fields(draft(OtpSms, 8, NOT_A_DURATION, DIGITS_ONLY)),
        [Expiry]
    );
    assert_eq!(
        fields(draft(OtpSms, 8, ex(2678401, 0), DIGITS_ONLY)),
        [Expiry]
    );
    assert_eq!(fields(draft(OtpSms, 8, ex(0, 0), DIGITS_ONLY)), [Expiry]);
    // Under a second, codes are born expired: refused for every type, APP_SECRET too.
    for short in [ex(0, 1), ex(0, 500_000_000), ex(0, 999_999_999)] {
        assert_eq!(fields(draft(OtpSms, 8, short, DIGITS_ONLY)), [Expiry]);
        assert_eq!(
            fields(draft(AppSecret, 64, short, [true, true, true, false])),
            [Expiry]
        );
    }
    let err = GeneratorConfig::new(&draft(OtpSms, 8, ex(0, 500_000_000), DIGITS_ONLY)).unwrap_err();
    assert!(err.to_string().contains("at least 1s"), "{err}");
    assert!(GeneratorConfig::new(&draft(OtpSms, 8, ex(1, 0), DIGITS_ONLY)).is_ok());
    assert!(GeneratorConfig::new(&draft(OtpSms, 8, ex(1, 1), DIGITS_ONLY)).is_ok());
    // Five digits are 16.6 bits, below the floor; six are 19.93, above it.
    assert_eq!(
        fields(draft(OtpSms, 5, ex(300, 0), DIGITS_ONLY)),
        [EntropyBits]
    );
    assert!(GeneratorConfig::new(&draft(OtpSms, 6, ex(300, 0), DIGITS_ONLY)).is_ok());
    // An app secret needs 128 bits: 21 alphanumerics are 125, 22 are 131.
    let alnum = [true, true, true, false];
    assert_eq!(fields(draft(AppSecret, 21, ex(0, 0), alnum)), [EntropyBits]);
    assert!(GeneratorConfig::new(&draft(AppSecret, 22, ex(0, 0), alnum)).is_ok());
    let mut d = draft(InitCode, 3, ex(60, 0), [true, true, true, true]);
    d.require_each_class = true;
    assert_eq!(fields(d), [RequireEachClass]);
}

#[test]
fn exclude_ambiguous_counts_toward_the_entropy_floor() {
    // Six digits pass (19.93 bits); without 0 and 1 six digits are 18 bits and fail.
    let mut d = draft(OtpSms, 6, ex(300, 0), DIGITS_ONLY);
    assert!(GeneratorConfig::new(&d).is_ok());
    d.exclude_ambiguous = true;
    assert_eq!(
        GeneratorConfig::new(&d).unwrap_err().fields(),
        [EntropyBits]
    );
}

#[test]
fn unreadable_fields_are_reported_as_such_and_hide_the_rules_that_read_them() {
    let unreadable = |field: Field| FieldViolation {
        field,
        description: "must be true or false".to_owned(),
    };
    // Read as zero values, these fields would break the class, requireEachClass and
    // entropy rules; unreadable, each is reported once, as what it is.
    let mut d = draft(OtpSms, 8, ex(300, 0), [false; 4]);
    d.require_each_class = true;
    d.unreadable = vec![unreadable(IncludeDigits), unreadable(RequireEachClass)];
    let err = GeneratorConfig::new(&d).unwrap_err();
    assert_eq!(err.fields(), [IncludeDigits, RequireEachClass]);
    assert_eq!(err.violations()[0].description, "must be true or false");
    // An unreadable length hides the length, requireEachClass and entropy rules, not the
    // others.
    let mut d = draft(OtpSms, 0, NEGATIVE, [false, false, true, false]);
    d.require_each_class = true;
    d.unreadable = vec![unreadable(Length)];
    assert_eq!(
        GeneratorConfig::new(&d).unwrap_err().fields(),
        [Length, Expiry]
    );
    // An unreadable expiry hides only the expiry rules.
    let mut d = draft(OtpSms, 5, ex(0, 0), DIGITS_ONLY);
    d.unreadable = vec![unreadable(Expiry)];
    assert_eq!(
        GeneratorConfig::new(&d).unwrap_err().fields(),
        [Expiry, EntropyBits]
    );
    // An otherwise valid draft with an unreadable field is still refused.
    let mut d = GeneratorConfig::default_for(OtpSms).to_draft();
    d.unreadable = vec![unreadable(ExcludeAmbiguous)];
    assert_eq!(
        GeneratorConfig::new(&d).unwrap_err().fields(),
        [ExcludeAmbiguous]
    );
}

#[test]
fn a_draft_of_an_unreadable_type_still_lists_every_other_violation() {
    let with = |length: i64, expiry: Written, classes: [bool; 4]| {
        let base = ConfigDraft::with_unreadable_type("unknown generator type");
        draft_over(base, length, expiry, classes)
    };
    let err = GeneratorConfig::new(&with(0, NEGATIVE, [false; 4])).unwrap_err();
    assert_eq!(
        err.fields(),
        [
            Field::GeneratorType,
            Length,
            Expiry,
            IncludeLowerLetters,
            IncludeUpperLetters,
            IncludeDigits,
            IncludeSymbols
        ]
    );
    assert_eq!(err.violations()[0].description, "unknown generator type");
    // Below the lowest floor is refused whatever the type; 0s is allowed for one type,
    // so it is not judged.
    let err = GeneratorConfig::new(&with(2, ex(0, 0), DIGITS_ONLY)).unwrap_err();
    assert_eq!(err.fields(), [Field::GeneratorType, EntropyBits]);
    // Valid for some type (APP_SECRET's floor is not judged): only the type is refused.
    let err = GeneratorConfig::new(&with(8, ex(0, 0), DIGITS_ONLY)).unwrap_err();
    assert_eq!(err.fields(), [Field::GeneratorType]);
}

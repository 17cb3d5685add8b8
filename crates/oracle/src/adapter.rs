//! The one place that knows the crate's configuration input: a [`Proposal`] into the crate's
//! validator and back. When `ConfigDraft` or `GeneratorConfig::new` change shape, this file
//! changes and nothing else in the oracle does.

use secretgen::alphabet::CharClass;
use secretgen::expiry::ExpiryError;
use secretgen::protojson;
use secretgen::{CodeLength, ConfigDraft, Field, FieldViolation, GeneratorConfig, GeneratorType};

use crate::rules::Proposal;
use crate::spec::Shape;

/// The crate's verdict on `p`: the valid configuration, or the names of the fields it
/// violates, in the validator's order.
///
/// # Panics
/// When `p` names no usable type, or an unreadable field the crate does not have.
pub fn validate(p: &Proposal) -> Result<GeneratorConfig, Vec<&'static str>> {
    let unreadable = p.unreadable.iter().map(|&name| FieldViolation {
        field: Field::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("no field {name:?}")),
        description: "could not be read".to_owned(),
    });
    let draft = ConfigDraft {
        length: CodeLength::new(p.length),
        expiry: protojson::expiry(&p.expiry),
        include_lower_letters: p.include_lower_letters,
        include_upper_letters: p.include_upper_letters,
        include_digits: p.include_digits,
        include_symbols: p.include_symbols,
        exclude_ambiguous: p.exclude_ambiguous,
        require_each_class: p.require_each_class,
        unreadable: unreadable.collect(),
        ..ConfigDraft::new(
            GeneratorType::from_number(p.generator_type.into()).expect("a usable type"),
        )
    };
    GeneratorConfig::new(&draft).map_err(|e| e.fields().into_iter().map(Field::name).collect())
}

/// A draft the API made of a body, as a proposal. The draft holds typed values: an
/// acceptable expiry becomes its canonical text, an unacceptable one a text the rules refuse
/// for the same reason.
pub fn proposal(d: &ConfigDraft) -> Proposal {
    Proposal {
        generator_type: d.generator_type.number(),
        length: match d.length {
            Ok(length) => length.get() as i64,
            Err(e) => e.value(),
        },
        expiry: match d.expiry {
            Ok(e) => protojson::duration_text(e.duration()),
            Err(ExpiryError::Unreadable(_)) => "not a duration".to_owned(),
            Err(ExpiryError::Negative) => "-1s".to_owned(),
            Err(ExpiryError::TooLong) => "2678401s".to_owned(),
            Err(ExpiryError::TooShort) => "0.5s".to_owned(),
        },
        include_lower_letters: d.include_lower_letters,
        include_upper_letters: d.include_upper_letters,
        include_digits: d.include_digits,
        include_symbols: d.include_symbols,
        exclude_ambiguous: d.exclude_ambiguous,
        require_each_class: d.require_each_class,
        unreadable: d.unreadable.iter().map(|v| v.field.name()).collect(),
    }
}

/// A configuration with a valid proposal.
///
/// # Panics
/// When `p` is refused, naming the fields.
pub fn config(p: &Proposal) -> GeneratorConfig {
    validate(p).unwrap_or_else(|fields| panic!("{p:?} is refused: {fields:?}"))
}

/// What the codes of `c` look like, read through its getters.
pub fn shape(c: &GeneratorConfig) -> Shape {
    Shape {
        length: c.length().get(),
        classes: CharClass::ALL.map(|k| c.includes(k)),
        exclude_ambiguous: c.exclude_ambiguous(),
        require_each_class: c.require_each_class(),
    }
}

//! The one place that knows the crate's configuration input: a [`Proposal`] into the crate's
//! validator and back. When `ConfigDraft` or `GeneratorConfig::new` change shape, this file
//! changes and nothing else in the oracle does.

use secretgen::alphabet::CharClass;
use secretgen::{ConfigDraft, GeneratorConfig};

use crate::rules::Proposal;
use crate::spec::Shape;

/// The crate's verdict on `p`: the valid configuration, or the JSON names of the fields it
/// violates, in the validator's order.
pub fn validate(p: &Proposal) -> Result<GeneratorConfig, Vec<&'static str>> {
    let draft = ConfigDraft {
        generator_type: p.generator_type.clone(),
        length: p.length,
        expiry: p.expiry.clone(),
        include_lower_letters: p.include_lower_letters,
        include_upper_letters: p.include_upper_letters,
        include_digits: p.include_digits,
        include_symbols: p.include_symbols,
        exclude_ambiguous: p.exclude_ambiguous,
        require_each_class: p.require_each_class,
    };
    GeneratorConfig::new(&draft).map_err(|e| e.fields())
}

/// A draft the API made of a body, as a proposal.
pub fn proposal(d: &ConfigDraft) -> Proposal {
    Proposal {
        generator_type: d.generator_type.clone(),
        length: d.length,
        expiry: d.expiry.clone(),
        include_lower_letters: d.include_lower_letters,
        include_upper_letters: d.include_upper_letters,
        include_digits: d.include_digits,
        include_symbols: d.include_symbols,
        exclude_ambiguous: d.exclude_ambiguous,
        require_each_class: d.require_each_class,
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

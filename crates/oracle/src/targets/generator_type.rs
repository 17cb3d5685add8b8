//! `generator_type`: text into [`secretgen::GeneratorType`]'s `FromStr`.
//!
//! Checks that parsing never panics; accepts exactly what [`rules::generator_type`] accepts
//! (the full and short names of SPEC section 1 in any ASCII case, the numbers 1 to 8 with
//! leading zeros allowed), to the right type; refuses `UNSPECIFIED` and 0 as such; quotes at
//! most a bounded part of the input in its error; and that every accepted type writes its
//! full name and its spellings parse back to it.

use secretgen::GeneratorType;

use crate::rules::{self, TypeFault};
use crate::spec;

/// The text parsed.
pub use super::Text as Input;

/// Panics when the parser disagrees with the rules; see the module.
pub fn check(input: &Input) {
    let s = input.0.as_str();
    match (s.parse::<GeneratorType>(), rules::generator_type(s)) {
        (Ok(t), Ok(want)) => {
            assert_eq!(t.number(), want, "{s:?}");
            assert_eq!(t.to_string(), spec::full_name(want));
            for spelling in [
                spec::full_name(want),
                spec::short_name(want).to_owned(),
                spec::short_name(want).to_ascii_lowercase(),
                want.to_string(),
            ] {
                assert_eq!(spelling.parse(), Ok(t));
            }
            assert_eq!(GeneratorType::from_number(u64::from(want)), Ok(t));
        }
        (Err(e), Err(fault)) => {
            assert_eq!(
                e.is_unspecified(),
                fault == TypeFault::Unspecified,
                "{s:?}: {e}"
            );
            // The input is quoted back, shortened to 64 characters (each at most
            // `\u{10ffff}` when escaped).
            assert!(e.to_string().len() <= 64 * 10 + 400, "{s:?}");
        }
        (got, want) => panic!("{s:?} parsed to {got:?}, expected {want:?}"),
    }
}

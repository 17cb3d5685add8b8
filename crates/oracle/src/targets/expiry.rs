//! `expiry`: text into [`secretgen::protojson::expiry`], and back through
//! [`secretgen::protojson::duration_text`].
//!
//! Checks that parsing never panics; accepts exactly what [`rules::expiry`] accepts
//! (`-?\d+(\.\d{1,9})?s` that is 0 or within 1 second to 31 days), to the same value, and
//! refuses the rest for the same reason; and that an accepted expiry is written in the
//! canonical form (no sign, 0, 3, 6 or 9 decimals, the fewest that are exact) and parses back
//! to itself.

use secretgen::Expiry;
use secretgen::expiry::ExpiryError;
use secretgen::protojson::{duration_text, expiry};

use crate::rules::{self, ExpiryFault};

/// The text parsed.
pub use super::Text as Input;

/// The oracle's reason for the crate's.
fn fault(e: ExpiryError) -> ExpiryFault {
    match e {
        ExpiryError::Unreadable(_) => ExpiryFault::NotADuration,
        ExpiryError::Negative => ExpiryFault::Negative,
        ExpiryError::TooLong => ExpiryFault::TooLong,
        ExpiryError::TooShort => ExpiryFault::TooShort,
    }
}

/// Panics when parsing or writing breaks an invariant; see the module.
pub fn check(input: &Input) {
    let s = input.0.as_str();
    let got = expiry(s);
    assert_eq!(
        got.map(Expiry::duration).map_err(fault),
        rules::expiry(s),
        "{s:?}"
    );
    let Ok(e) = got else { return };
    assert_eq!(Expiry::new(e.duration()), Ok(e));
    let text = duration_text(e.duration());
    assert_eq!(expiry(&text), Ok(e), "{s:?} written as {text:?}");
    let (negative, secs, frac) = rules::duration_shape(&text).expect("written in protobuf's form");
    assert!(!negative, "{text:?}");
    assert!(secs == "0" || !secs.starts_with('0'), "{text:?}");
    let decimals = match e.duration().subsec_nanos() {
        0 => 0,
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    };
    assert_eq!(frac.len(), decimals, "{text:?}");
}

//! Whether a code is one its configuration can produce.
//!
//! A misfit names a position or a class, never the code: codes are never printed, not even
//! in a failed test.

use std::fmt;

use crate::spec::{AMBIGUOUS, CLASSES, Shape};

/// How a code fails to fit its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misfit {
    /// The code has the wrong number of characters.
    Length {
        /// Characters the configuration asks for.
        expected: usize,
        /// Characters the code has.
        got: usize,
    },
    /// An ambiguous character with `excludeAmbiguous`.
    Ambiguous {
        /// Where, from 0.
        position: usize,
    },
    /// A character of no included class.
    NotInAlphabet {
        /// Where, from 0.
        position: usize,
    },
    /// With `requireEachClass`, an included class with no character in the code.
    MissingClass {
        /// The class's JSON field, e.g. `includeDigits`.
        class: &'static str,
    },
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Length { expected, got } => {
                write!(f, "{got} characters, the configuration says {expected}")
            }
            Misfit::Ambiguous { position } => {
                write!(
                    f,
                    "an ambiguous character at position {position} with excludeAmbiguous"
                )
            }
            Misfit::NotInAlphabet { position } => {
                write!(f, "a character outside the alphabet at position {position}")
            }
            Misfit::MissingClass { class } => {
                write!(f, "no character of {class} with requireEachClass")
            }
        }
    }
}

/// Whether `code` is a code of `shape`: its length, every character in an included class and
/// not ambiguous when those are excluded, and with `requireEachClass` every included class
/// present. The first misfit found.
pub fn fits(shape: &Shape, code: &[u8]) -> Result<(), Misfit> {
    if code.len() != shape.length {
        return Err(Misfit::Length {
            expected: shape.length,
            got: code.len(),
        });
    }
    let included = || {
        CLASSES
            .iter()
            .zip(shape.classes)
            .filter(|(_, on)| *on)
            .map(|(class, _)| class)
    };
    for (position, b) in code.iter().enumerate() {
        if !included().any(|(_, chars)| chars.as_bytes().contains(b)) {
            return Err(Misfit::NotInAlphabet { position });
        }
        if shape.exclude_ambiguous && AMBIGUOUS.as_bytes().contains(b) {
            return Err(Misfit::Ambiguous { position });
        }
    }
    if shape.require_each_class {
        for (class, chars) in included() {
            if !code.iter().any(|b| chars.as_bytes().contains(b)) {
                return Err(Misfit::MissingClass { class });
            }
        }
    }
    Ok(())
}

/// Panics unless `code` fits `shape`, saying how it does not (never showing the code).
pub fn assert_fits(shape: &Shape, code: &[u8]) {
    if let Err(misfit) = fits(shape, code) {
        panic!("a code does not fit {shape:?}: {misfit}");
    }
}

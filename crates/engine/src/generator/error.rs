//! [`FillError`]: why [`Generator::fill`](super::Generator::fill) wrote no code.

use std::fmt;

use crate::rng::EntropyError;

/// [`Generator::fill`](super::Generator::fill) could not write a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillError {
    /// The buffer is not one code long.
    Length {
        /// The generator's code length.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The buffer does not hold a whole number of codes.
    NotWhole {
        /// The generator's code length.
        code_length: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The operating system gave no randomness.
    Entropy(EntropyError),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Length { expected, got } => {
                write!(
                    f,
                    "buffer of {got} bytes for a code of {expected} characters"
                )
            }
            FillError::NotWhole { code_length, got } => write!(
                f,
                "buffer of {got} bytes does not hold whole codes of {code_length} characters"
            ),
            FillError::Entropy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FillError {}

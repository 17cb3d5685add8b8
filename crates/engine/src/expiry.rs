//! How long a code stays valid: 0 (never), or 1 second to 31 days. A typed duration: its text
//! forms (protobuf JSON's `"300s"`, gRPC's `google.protobuf.Duration`) are the transports'.

use std::fmt;
use std::time::Duration;

/// The lifetime of a code: 0 (never expires), or from [`Expiry::MIN`] (1 second) up to
/// [`Expiry::MAX`] (31 days). Anything strictly between 0 and 1 second is refused: codes
/// would expire before they reach anyone. Whether 0 is allowed depends on the generator type,
/// which [`crate::GeneratorConfig`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Expiry(Duration);

impl Expiry {
    /// The longest expiry accepted: 31 days, `2678400s`.
    pub const MAX: Duration = Duration::from_secs(31 * 24 * 3600);

    /// The shortest expiry accepted but 0 (never): one second, `1s`.
    pub const MIN: Duration = Duration::from_secs(1);

    /// Codes never expire: `0s`.
    pub const NEVER: Expiry = Expiry(Duration::ZERO);

    /// An expiry of `duration`, refused above [`Expiry::MAX`] and strictly between 0 and
    /// [`Expiry::MIN`].
    pub fn new(duration: Duration) -> Result<Self, ExpiryError> {
        if duration > Self::MAX {
            Err(ExpiryError::TooLong)
        } else if !duration.is_zero() && duration < Self::MIN {
            Err(ExpiryError::TooShort)
        } else {
            Ok(Expiry(duration))
        }
    }

    /// An expiry written with its sign: `magnitude` below zero when `negative`, refused
    /// unless it is zero (`-0s` is `0s`).
    pub fn signed(negative: bool, magnitude: Duration) -> Result<Self, ExpiryError> {
        if negative && !magnitude.is_zero() {
            Err(ExpiryError::Negative)
        } else {
            Self::new(magnitude)
        }
    }

    /// An expiry of whole seconds, refused above [`Expiry::MAX`].
    pub fn from_secs(secs: u64) -> Result<Self, ExpiryError> {
        Self::new(Duration::from_secs(secs))
    }

    /// The duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// Whether codes never expire (expiry `0s`).
    pub fn is_never(self) -> bool {
        self.0.is_zero()
    }
}

/// Why a written duration is not an acceptable expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryError {
    /// The transport could not read what was written as a duration; why, in the transport's
    /// own words (its text form is the transport's, not the engine's).
    Unreadable(&'static str),
    /// Below zero.
    Negative,
    /// Above [`Expiry::MAX`].
    TooLong,
    /// Above 0 but below [`Expiry::MIN`]: codes would be born expired.
    TooShort,
}

impl fmt::Display for ExpiryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpiryError::Unreadable(why) => why,
            ExpiryError::Negative => "must not be negative",
            ExpiryError::TooLong => "must be at most 2678400s (31 days)",
            ExpiryError::TooShort => {
                "must be at least 1s (or 0s, never expires, where the type allows it): codes \
                 with a shorter lifetime would expire before anyone could use them"
            }
        })
    }
}

impl std::error::Error for ExpiryError {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_or_one_second_to_31_days() {
        use ExpiryError::*;
        assert_eq!(Expiry::new(Duration::ZERO), Ok(Expiry::NEVER));
        assert!(Expiry::NEVER.is_never());
        assert_eq!(
            Expiry::new(Expiry::MIN).map(Expiry::duration),
            Ok(Expiry::MIN)
        );
        assert_eq!(
            Expiry::new(Expiry::MAX).map(Expiry::duration),
            Ok(Expiry::MAX)
        );
        assert_eq!(Expiry::new(Duration::from_millis(999)), Err(TooShort));
        assert_eq!(Expiry::new(Duration::from_nanos(1)), Err(TooShort));
        assert_eq!(
            Expiry::new(Expiry::MAX + Duration::from_nanos(1)),
            Err(TooLong)
        );
        assert_eq!(Expiry::from_secs(u64::MAX), Err(TooLong));
        assert_eq!(Expiry::signed(true, Duration::ZERO), Ok(Expiry::NEVER));
        assert_eq!(Expiry::signed(true, Duration::from_nanos(1)), Err(Negative));
        assert_eq!(
            Expiry::signed(true, Duration::from_secs(300)),
            Err(Negative)
        );
        assert_eq!(
            Expiry::signed(false, Duration::from_secs(300)),
            Expiry::from_secs(300)
        );
        assert_eq!(Unreadable("why").to_string(), "why");
    }

    proptest! {
        /// 0, or 1 s to 31 days: nothing else is ever accepted.
        #[test]
        fn only_zero_or_one_second_to_31_days_is_accepted(
            secs in prop_oneof![0u64..=1, 2_678_399u64..=2_678_401, 0u64..=2_678_401],
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ) {
            let d = Duration::new(secs, nanos);
            let want = if d.is_zero() || (Expiry::MIN..=Expiry::MAX).contains(&d) {
                Ok(d)
            } else if d > Expiry::MAX {
                Err(ExpiryError::TooLong)
            } else {
                Err(ExpiryError::TooShort)
            };
            prop_assert_eq!(Expiry::new(d).map(Expiry::duration), want);
        }
    }
}

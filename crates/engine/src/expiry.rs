//! How long a code stays valid, read and written as a protobuf JSON duration (`"300s"`).

use std::fmt;
use std::time::Duration;

/// The lifetime of a code: 0 (never expires), or from [`Expiry::MIN`] (1 second) up to
/// [`Expiry::MAX`] (31 days). Anything strictly between 0 and 1 second is refused: codes
/// would expire before they reach anyone.
///
/// Text form is protobuf's JSON mapping of `google.protobuf.Duration`: seconds with up to nine
/// fractional digits and an `s` suffix (`"3600s"`, `"1.5s"`). Whether 0 is allowed depends on
/// the generator type, which [`crate::GeneratorConfig`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Expiry(Duration);

impl Expiry {
    /// The longest expiry accepted: 31 days, `2678400s`.
    pub const MAX: Duration = Duration::from_secs(31 * 24 * 3600);

    /// The shortest expiry accepted but 0 (never): one second, `1s`.
    pub const MIN: Duration = Duration::from_secs(1);

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

    /// An expiry of whole seconds, refused above [`Expiry::MAX`].
    pub fn from_secs(secs: u64) -> Result<Self, ExpiryError> {
        Self::new(Duration::from_secs(secs))
    }

    /// Parses a protobuf JSON duration such as `"300s"`, `"1.5s"` or `"0s"`.
    pub fn parse(text: &str) -> Result<Self, ExpiryError> {
        let (negative, magnitude) = parse_duration(text).ok_or(ExpiryError::NotADuration)?;
        match magnitude {
            None => Err(ExpiryError::TooLong),
            Some(d) if negative && !d.is_zero() => Err(ExpiryError::Negative),
            Some(d) => Self::new(d),
        }
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

impl fmt::Display for Expiry {
    /// Protobuf's canonical form: `"3600s"`, `"1.500s"`, `"1.000001s"`, `"1.000000001s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

/// Splits `-?\d+(\.\d{1,9})?s` (a protobuf JSON duration) into its sign and magnitude;
/// `None` when the text has another shape, `Some((_, None))` when the seconds do not fit in
/// 64 bits. [`Expiry::parse`] reads codes' expiries with it; tokens' expiries too.
pub fn parse_duration(text: &str) -> Option<(bool, Option<Duration>)> {
    let body = text.strip_suffix('s')?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (secs, frac) = match body.split_once('.') {
        Some((secs, frac)) => (secs, Some(frac)),
        None => (body, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(secs) {
        return None;
    }
    let nanos = match frac {
        None => 0,
        Some(frac) if all_digits(frac) && frac.len() <= 9 => {
            let digits: u32 = frac.parse().ok()?;
            digits * 10u32.pow(9 - frac.len() as u32)
        }
        Some(_) => return None,
    };
    let magnitude = secs.parse::<u64>().ok().map(|s| Duration::new(s, nanos));
    Some((negative, magnitude))
}

/// Why a text or duration is not an acceptable expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryError {
    /// Not of the form `"300s"` / `"1.5s"`.
    NotADuration,
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
            ExpiryError::NotADuration => {
                "must be a protobuf JSON duration: seconds with up to nine decimals and an \
                 's' suffix, such as \"300s\" or \"1.5s\""
            }
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
    fn parses_protobuf_durations() {
        let ok = |s: &str, d: Duration| assert_eq!(Expiry::parse(s), Ok(Expiry(d)), "{s}");
        ok("0s", Duration::ZERO);
        ok("300s", Duration::from_secs(300));
        ok("1.5s", Duration::from_millis(1500));
        ok("1s", Expiry::MIN);
        ok("1.000000001s", Duration::from_nanos(1_000_000_001));
        ok("0.000s", Duration::ZERO);
        ok("2678400s", Expiry::MAX);
        ok("2678400.000s", Expiry::MAX);
        ok("-0s", Duration::ZERO);
        ok("007s", Duration::from_secs(7));
    }

    #[test]
    fn refuses_everything_else() {
        use ExpiryError::*;
        let bad = |s: &str, e: ExpiryError| assert_eq!(Expiry::parse(s), Err(e), "{s:?}");
        for s in [
            "",
            "s",
            "300",
            "300S",
            "5m",
            "1h",
            " 3s",
            "3s ",
            "+3s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1e3s",
            "--1s",
            "1,5s",
            "0x10s",
            "３s",
        ] {
            bad(s, NotADuration);
        }
        bad("-1s", Negative);
        bad("-0.5s", Negative);
        bad("2678400.000000001s", TooLong);
        for s in ["0.000000001s", "0.5s", "0.999999999s", "0.001s"] {
            bad(s, TooShort);
        }
        assert_eq!(Expiry::new(Duration::from_millis(999)), Err(TooShort));
        assert_eq!(Expiry::new(Duration::ZERO).map(Expiry::is_never), Ok(true));
        bad("99999999999999999999999s", TooLong);
    }

    #[test]
    fn writes_the_canonical_form() {
        let show = |d: Duration| Expiry(d).to_string();
        assert_eq!(show(Duration::from_secs(3600)), "3600s");
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(Duration::from_millis(1500)), "1.500s");
        assert_eq!(show(Duration::from_micros(1)), "0.000001s");
        assert_eq!(show(Duration::from_nanos(1_000_000_001)), "1.000000001s");
    }

    proptest! {
        #[test]
        fn text_round_trips(secs in 1u64..=2_678_399, nanos in 0u32..1_000_000_000) {
            let e = Expiry::new(Duration::new(secs, nanos)).unwrap();
            prop_assert_eq!(Expiry::parse(&e.to_string()), Ok(e));
        }

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
            let text = format!("{secs}.{nanos:09}s");
            prop_assert_eq!(Expiry::parse(&text).map(Expiry::duration), want);
        }

        #[test]
        fn parse_never_panics(s in "-?[0-9.s]{0,24}") {
            let _ = Expiry::parse(&s);
        }
    }
}

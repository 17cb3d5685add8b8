//! Protobuf's JSON form of a duration (`"300s"`, `"1.5s"`): read and written here, for the
//! edges (the HTTP API's bodies, the log's stored payloads, a token's expiry), and nowhere in
//! the engine, which takes and gives typed values. Writing gives protobuf's canonical form
//! (the tests check it against `prost-types`, which the core does not depend on); reading is
//! stricter than `prost-types` (at most nine decimals, no sign but `-`), as the SPEC asks.
//! The timestamp's form is the HTTP API's (`secretgen::protojson::timestamp`).

use std::time::Duration;

use secretgen_engine::expiry::{Expiry, ExpiryError};

/// Why a text is no protobuf JSON duration, as a field violation says it.
pub const NOT_A_DURATION: &str = "must be a protobuf JSON duration: seconds with up to nine \
                                  decimals and an 's' suffix, such as \"300s\" or \"1.5s\"";

/// Splits `-?\d+(\.\d{1,9})?s` (a protobuf JSON duration) into its sign and magnitude;
/// `None` when the text has another shape, `Some((_, None))` when the seconds do not fit in
/// 64 bits.
pub fn duration(text: &str) -> Option<(bool, Option<Duration>)> {
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

/// A code's expiry from its protobuf JSON duration (`"300s"`, `"1.5s"`, `"0s"`), or why it is
/// none: a text of another shape is [`ExpiryError::Unreadable`] with [`NOT_A_DURATION`].
pub fn expiry(text: &str) -> Result<Expiry, ExpiryError> {
    match duration(text) {
        None => Err(ExpiryError::Unreadable(NOT_A_DURATION)),
        Some((_, None)) => Err(ExpiryError::TooLong),
        Some((negative, Some(magnitude))) => Expiry::signed(negative, magnitude),
    }
}

/// `d` as protobuf writes it: `"3600s"`, `"1.500s"`, `"1.000001s"`, `"1.000000001s"` (0, 3,
/// 6 or 9 decimals, the fewest that are exact).
pub fn duration_text(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    let secs = d.as_secs();
    if nanos == 0 {
        format!("{secs}s")
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_protobuf_durations() {
        let ok = |s: &str, d: Duration| assert_eq!(expiry(s).map(Expiry::duration), Ok(d), "{s}");
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
        let bad = |s: &str, e: ExpiryError| assert_eq!(expiry(s), Err(e), "{s:?}");
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
            bad(s, Unreadable(NOT_A_DURATION));
        }
        bad("-1s", Negative);
        bad("-0.5s", Negative);
        bad("2678400.000000001s", TooLong);
        for s in ["0.000000001s", "0.5s", "0.999999999s", "0.001s"] {
            bad(s, TooShort);
        }
        bad("99999999999999999999999s", TooLong);
        assert_eq!(
            Unreadable(NOT_A_DURATION).to_string(),
            "must be a protobuf JSON duration: seconds with up to nine decimals and an 's' \
             suffix, such as \"300s\" or \"1.5s\""
        );
    }

    #[test]
    fn writes_the_canonical_form() {
        assert_eq!(duration_text(Duration::from_secs(3600)), "3600s");
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.500s");
        assert_eq!(duration_text(Duration::from_micros(1)), "0.000001s");
        assert_eq!(
            duration_text(Duration::from_nanos(1_000_000_001)),
            "1.000000001s"
        );
        assert_eq!(duration_text(Expiry::MAX), "2678400s");
    }

    proptest! {
        #[test]
        fn text_round_trips(secs in 1u64..=2_678_399, nanos in 0u32..1_000_000_000) {
            let e = Expiry::new(Duration::new(secs, nanos)).unwrap();
            prop_assert_eq!(expiry(&duration_text(e.duration())), Ok(e));
        }

        /// The form prost-types writes, protobuf's canonical one.
        #[test]
        fn text_is_prost_types(secs in 0u64..=i64::MAX as u64, nanos in prop_oneof![
            Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
            (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000,
        ]) {
            let d = Duration::new(secs, nanos);
            let theirs = prost_types::Duration::try_from(d).unwrap().to_string();
            prop_assert_eq!(duration_text(d), theirs);
        }

        #[test]
        fn parse_never_panics(s in "-?[0-9.s]{0,24}") {
            let _ = expiry(&s);
        }
    }
}

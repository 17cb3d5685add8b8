//! Protobuf's JSON forms at the HTTP API's edge: a duration (the core's
//! [`secretgen_core::protojson`], re-exported) and a timestamp, written as `prost-types`
//! writes it: RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.

use std::time::SystemTime;

pub use secretgen_core::protojson::*;

/// A timestamp as protojson writes it: RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.
/// Years 1970 to 9999 (every time the server writes: now, and expiries a month at most
/// ahead) are written by hand, digit by digit, for `_generate` writes one per answer;
/// any other time as `prost-types` writes it, which the hand-written form equals.
pub fn timestamp(time: SystemTime) -> String {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) if since.as_secs() < END_OF_9999 => {
            let mut text = [0u8; 30];
            let len = write_timestamp(since.as_secs(), since.subsec_nanos(), &mut text);
            std::str::from_utf8(&text[..len])
                .expect("digits and separators are ASCII")
                .to_owned()
        }
        _ => prost_types::Timestamp::from(time).to_string(),
    }
}

/// Seconds from 1970 to 10000-01-01T00:00:00Z.
const END_OF_9999: u64 = 253_402_300_800;

/// Writes `secs` (below [`END_OF_9999`]) and `nanos` into `out` as [`timestamp`] does;
/// returns the length written (20 to 30 bytes).
fn write_timestamp(secs: u64, nanos: u32, out: &mut [u8; 30]) -> usize {
    // Days to a civil date: Howard Hinnant's days_from_civil, inverted, for days >= 0.
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut digits = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, of_day / 3600);
    digits(14, 2, of_day / 60 % 60);
    digits(17, 2, of_day % 60);
    let (fraction, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        digits(20, width, u64::from(fraction));
    }
    for (at, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[at] = separator;
    }
    let mut len = 19;
    if width > 0 {
        out[19] = b'.';
        len = 20 + width;
    }
    out[len] = b'Z';
    len + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_written_like_protojson() {
        let at = |secs, nanos| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
        assert_eq!(timestamp(at(1_795_339_958, 0)), "2026-11-22T09:32:38Z");
        assert_eq!(
            timestamp(at(1_795_339_958, 719_000_000)),
            "2026-11-22T09:32:38.719Z"
        );
        assert_eq!(
            timestamp(at(1_795_339_958, 719_123_000)),
            "2026-11-22T09:32:38.719123Z"
        );
        assert_eq!(
            timestamp(at(1_795_339_958, 719_123_456)),
            "2026-11-22T09:32:38.719123456Z"
        );
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    /// Both sides of the hand-written range and of its days, months and leap years.
    #[test]
    fn timestamps_at_the_edges_are_written_as_prost_writes_them() {
        let prost = |time| prost_types::Timestamp::from(time).to_string();
        let leap = 951_782_400; // 2000-02-29T00:00:00Z
        for secs in [
            0,
            59,
            86_399,
            86_400,
            leap - 1,
            leap,
            leap + 86_400,
            4_107_542_399,
        ] {
            for nanos in [0, 1, 999_999_999, 5_000_000, 5_000] {
                let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
                assert_eq!(timestamp(time), prost(time));
            }
        }
        for time in [
            SystemTime::UNIX_EPOCH + Duration::new(END_OF_9999 - 1, 999_999_999),
            SystemTime::UNIX_EPOCH + Duration::new(END_OF_9999, 0),
            SystemTime::UNIX_EPOCH + Duration::new(END_OF_9999 + 86_400 * 400, 7),
            SystemTime::UNIX_EPOCH - Duration::new(1, 0),
            SystemTime::UNIX_EPOCH - Duration::new(86_400 * 365 * 3000, 5_000_000),
        ] {
            assert_eq!(timestamp(time), prost(time));
        }
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH + Duration::new(END_OF_9999 - 1, 0)),
            "9999-12-31T23:59:59Z"
        );
    }

    proptest! {
        /// The hand-written timestamps are the ones prost-types writes.
        #[test]
        fn timestamps_are_written_as_prost_writes_them(secs in 0u64..END_OF_9999 + 1_000_000,
            nanos in prop_oneof![
                Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000,
            ]) {
            let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            prop_assert_eq!(timestamp(time), prost_types::Timestamp::from(time).to_string());
        }

        /// The timestamps humantime wrote before are the ones prost-types writes.
        #[test]
        fn timestamps_are_humantimes(secs in 0u64..253_402_300_799, nanos in prop_oneof![
            Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
            (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000,
        ]) {
            let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            let want = if nanos == 0 {
                humantime::format_rfc3339_seconds(time).to_string()
            } else if nanos % 1_000_000 == 0 {
                humantime::format_rfc3339_millis(time).to_string()
            } else if nanos % 1_000 == 0 {
                humantime::format_rfc3339_micros(time).to_string()
            } else {
                humantime::format_rfc3339_nanos(time).to_string()
            };
            prop_assert_eq!(timestamp(time), want);
        }
    }
}

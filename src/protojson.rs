//! Protobuf's JSON forms at the HTTP API's edge: a duration (the core's
//! [`secretgen_core::protojson`], re-exported) and a timestamp, written through `prost-types`:
//! RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.

use std::time::SystemTime;

pub use secretgen_core::protojson::*;

/// A timestamp as protojson writes it: RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.
pub fn timestamp(time: SystemTime) -> String {
    prost_types::Timestamp::from(time).to_string()
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

    proptest! {
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

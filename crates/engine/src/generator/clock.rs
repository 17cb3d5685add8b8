//! The clock expiries are read from: cheap, a few milliseconds behind at most.

#[cfg(target_os = "linux")]
use std::time::Duration;
use std::time::SystemTime;

/// The current time from a clock that is cheap to read, at most a few milliseconds behind.
#[cfg(target_os = "linux")]
#[inline]
pub(super) fn coarse_now() -> SystemTime {
    use rustix::time::{ClockId, clock_gettime};
    let ts = clock_gettime(ClockId::RealtimeCoarse);
    match (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
        (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => {
            SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
        }
        _ => SystemTime::now(),
    }
}

/// The current time.
#[cfg(not(target_os = "linux"))]
pub(super) fn coarse_now() -> SystemTime {
    SystemTime::now()
}

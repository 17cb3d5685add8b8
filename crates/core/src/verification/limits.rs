//! The limits on issuing and verifying codes, set per deployment by `serve`'s flags.

use std::time::Duration;

/// How often codes may be tried and issued (SPEC section 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Checks of one code before it is dead (`--verify-max-attempts`, 5).
    pub max_attempts: u32,
    /// Consecutive failures of a subject, over all its codes, that lock it
    /// (`--verify-lock-after`, 100; at most 100, NIST SP 800-63B's cap).
    pub lock_after: u32,
    /// How long a lock lasts (`--verify-lock-for`, 24 hours).
    pub lock_for: Duration,
    /// Codes of a subject pending at once; another retires the oldest (`--verify-pending`, 3).
    pub pending: u32,
    /// The least time between two issues to a subject (`--verify-resend-after`, 30 s).
    pub resend_after: Duration,
    /// Issues to a subject within a window (`--verify-issues-per-window`, 5).
    pub issues_per_window: u32,
    /// That window (`--verify-window`, 10 minutes).
    pub window: Duration,
}

/// The most failures a lock may wait for (NIST SP 800-63B).
pub const MAX_LOCK_AFTER: u32 = 100;

/// The most attempts, pending codes or issues per window a flag may allow: past these the
/// limits would limit nothing.
const MAX_COUNT: u32 = 1000;

/// The longest duration a flag may set: a year.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_attempts: 5,
            lock_after: MAX_LOCK_AFTER,
            lock_for: Duration::from_secs(24 * 3600),
            pending: 3,
            resend_after: Duration::from_secs(30),
            issues_per_window: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// A limit out of its range, named by its flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {why}")]
pub struct LimitsError {
    /// The flag, without its dashes.
    pub flag: &'static str,
    /// What is wrong.
    pub why: String,
}

impl Limits {
    /// These limits, or the first one out of range.
    pub fn check(self) -> Result<Limits, LimitsError> {
        let count = |flag, n: u32, most: u32| {
            if n == 0 || n > most {
                Err(LimitsError {
                    flag,
                    why: format!("must be 1 to {most}, not {n}"),
                })
            } else {
                Ok(())
            }
        };
        let duration = |flag, d: Duration, zero_ok: bool| {
            if (!zero_ok && d.is_zero()) || d > MAX_DURATION {
                Err(LimitsError {
                    flag,
                    why: format!(
                        "must be {} to 366 days",
                        if zero_ok { "0 s" } else { "1 s" }
                    ),
                })
            } else {
                Ok(())
            }
        };
        count("verify-max-attempts", self.max_attempts, MAX_COUNT)?;
        count("verify-lock-after", self.lock_after, MAX_LOCK_AFTER)?;
        duration("verify-lock-for", self.lock_for, false)?;
        count("verify-pending", self.pending, MAX_COUNT)?;
        duration("verify-resend-after", self.resend_after, true)?;
        count(
            "verify-issues-per-window",
            self.issues_per_window,
            MAX_COUNT,
        )?;
        duration("verify-window", self.window, false)?;
        Ok(self)
    }

    /// The verifications a new code of a subject with `failures` may take: its attempts,
    /// cut to what is left before the lock.
    pub fn attempts_left(&self, failures: u32) -> u32 {
        self.max_attempts
            .min(self.lock_after.saturating_sub(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_specs_and_out_of_range_is_refused() {
        let limits = Limits::default().check().unwrap();
        assert_eq!(limits.max_attempts, 5);
        assert_eq!(limits.lock_after, 100);
        assert_eq!(limits.attempts_left(98), 2);
        for (limits, flag) in [
            (
                Limits {
                    max_attempts: 0,
                    ..limits
                },
                "verify-max-attempts",
            ),
            (
                Limits {
                    lock_after: 101,
                    ..limits
                },
                "verify-lock-after",
            ),
            (
                Limits {
                    lock_after: 0,
                    ..limits
                },
                "verify-lock-after",
            ),
            (
                Limits {
                    lock_for: Duration::ZERO,
                    ..limits
                },
                "verify-lock-for",
            ),
            (
                Limits {
                    pending: 0,
                    ..limits
                },
                "verify-pending",
            ),
            (
                Limits {
                    window: MAX_DURATION * 2,
                    ..limits
                },
                "verify-window",
            ),
        ] {
            assert_eq!(limits.check().unwrap_err().flag, flag);
        }
        assert!(
            Limits {
                resend_after: Duration::ZERO,
                ..limits
            }
            .check()
            .is_ok()
        );
    }
}

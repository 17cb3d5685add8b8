//! What this server issued and verified in the last hour, per type: a minute's counts in
//! each of 60 slots of atomics, so that counting costs an issue or a verification a few
//! relaxed atomic operations and no lock. A slot is reused when its minute comes round again
//! (its counts cleared by the first to see the new minute); a count that races the clearing
//! may land in the old minute or be lost, which a dashboard's hour tolerates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::verification::VerifyResult;
use secretgen_engine::generator_type::GeneratorType;

/// The minutes counted.
pub const MINUTES: u64 = 60;

/// Counts per slot: issued, then one per verification result.
const KINDS: usize = 1 + VerifyResult::ALL.len();

#[derive(Debug, Default)]
struct Slot {
    /// The minute (since the Unix epoch) the counts are for.
    minute: AtomicU64,
    counts: [AtomicU64; KINDS],
}

/// The last hour's counts of every type.
#[derive(Debug)]
pub struct Activity {
    slots: Vec<Slot>,
}

/// One type's counts over the last hour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourCounts {
    /// Codes issued.
    pub issued: u64,
    /// Verifications by result, in the order of [`VerifyResult::ALL`].
    pub verified: [u64; 5],
}

impl HourCounts {
    /// The verifications with `result`.
    pub fn verified(&self, result: VerifyResult) -> u64 {
        let at = VerifyResult::ALL.iter().position(|&r| r == result);
        at.map_or(0, |i| self.verified[i])
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            slots: (0..GeneratorType::ALL.len() * MINUTES as usize)
                .map(|_| Slot::default())
                .collect(),
        }
    }
}

fn minute(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

impl Activity {
    fn slot(&self, t: GeneratorType, minute: u64) -> &Slot {
        let at = (t.number() as usize - 1) * MINUTES as usize + (minute % MINUTES) as usize;
        &self.slots[at]
    }

    fn count(&self, t: GeneratorType, kind: usize, now: SystemTime) {
        let minute = minute(now);
        let slot = self.slot(t, minute);
        let seen = slot.minute.load(Ordering::Relaxed);
        if seen != minute
            && slot
                .minute
                .compare_exchange(seen, minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for count in &slot.counts {
                count.store(0, Ordering::Relaxed);
            }
        }
        slot.counts[kind].fetch_add(1, Ordering::Relaxed);
    }

    /// A code of `t` was issued at `now`.
    pub fn issued(&self, t: GeneratorType, now: SystemTime) {
        self.count(t, 0, now);
    }

    /// A code of `t` was verified with `result` at `now`.
    pub fn verified(&self, t: GeneratorType, result: VerifyResult, now: SystemTime) {
        let at = VerifyResult::ALL.iter().position(|&r| r == result);
        self.count(t, 1 + at.unwrap_or(0), now);
    }

    /// The counts of `t` in the hour up to `now`.
    pub fn hour(&self, t: GeneratorType, now: SystemTime) -> HourCounts {
        let last = minute(now);
        let mut hour = HourCounts::default();
        for m in last.saturating_sub(MINUTES - 1)..=last {
            let slot = self.slot(t, m);
            if slot.minute.load(Ordering::Relaxed) != m {
                continue;
            }
            hour.issued += slot.counts[0].load(Ordering::Relaxed);
            for (i, v) in hour.verified.iter_mut().enumerate() {
                *v += slot.counts[1 + i].load(Ordering::Relaxed);
            }
        }
        hour
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_hour_holds_the_last_sixty_minutes_of_each_type() {
        let activity = Activity::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = GeneratorType::OtpSms;
        activity.issued(t, t0);
        activity.issued(t, t0 + Duration::from_secs(120));
        activity.verified(t, VerifyResult::Approved, t0 + Duration::from_secs(300));
        activity.verified(t, VerifyResult::NotFound, t0);
        activity.issued(GeneratorType::OtpEmail, t0);
        let hour = activity.hour(t, t0 + Duration::from_secs(600));
        assert_eq!(hour.issued, 2);
        assert_eq!(hour.verified(VerifyResult::Approved), 1);
        assert_eq!(hour.verified(VerifyResult::NotFound), 1);
        assert_eq!(hour.verified(VerifyResult::Rejected), 0);
        // An hour later, the first minute has left the window; the slot it used is reused.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(activity.hour(t, later).issued, 1);
        activity.issued(t, later);
        assert_eq!(activity.hour(t, later).issued, 2);
        assert_eq!(
            activity.hour(t, later + Duration::from_secs(3600)).issued,
            0
        );
    }
}

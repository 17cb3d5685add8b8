//! The purge of issued codes: a thread that, every [`PURGE_INTERVAL`], deletes the codes
//! that expired longer than a window ago (until then a verification answers `EXPIRED`) and
//! the subjects with nothing left to keep (no failures, no lock, no code, no issue within the
//! window), so that the store holds the pending codes and the subjects that matter.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::Service;
use crate::store::to_micros;

/// How often the purge runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// Starts purging `service`'s store; the thread ends with the service.
pub fn start(service: &Arc<Service>) {
    let weak = Arc::downgrade(service);
    let spawned = std::thread::Builder::new()
        .name("secretgen-purge".to_owned())
        .spawn(move || run(&weak));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the thread that purges issued codes");
    }
}

fn run(service: &Weak<Service>) {
    loop {
        std::thread::sleep(PURGE_INTERVAL);
        let Some(service) = service.upgrade() else {
            return;
        };
        service.purge_codes_now();
    }
}

impl Service {
    /// Purges the issued codes and subjects that are no longer needed, now; logs what it
    /// removed, or why it could not.
    pub fn purge_codes_now(&self) {
        let Some(settings) = &self.codes else {
            return;
        };
        let now = SystemTime::now();
        let expired_before = now.checked_sub(settings.limits.window).unwrap_or(now);
        match self
            .control
            .store()
            .purge_codes(to_micros(now), to_micros(expired_before))
        {
            Ok(purged) if purged.codes + purged.subjects > 0 => tracing::debug!(
                codes = purged.codes,
                subjects = purged.subjects,
                "purged issued codes"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot purge issued codes"),
        }
    }
}

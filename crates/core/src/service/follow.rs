//! Keeping a server in step with a store that other processes write (PostgreSQL replicas).
//!
//! The store tells a [`Watcher`] what may have changed ([`Notice`]); the follower, a thread
//! of its own, gathers the notices that arrived together and acts on them in order:
//! configuration events are applied through [`ControlPlane::catch_up`] (which reads the log
//! after the last event applied, so a notice is only a hint, never a change in itself), the
//! token table is read again, and the store's reachability and reconnects are counted. The
//! watcher only sends on a channel, so the store's listener never waits for any of it, and
//! generation never waits for the follower: it swaps snapshots like any writer.
//!
//! [`ControlPlane::catch_up`]: crate::control::ControlPlane::catch_up

use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use super::Service;
use crate::store::{Notice, Watcher};

/// What a batch of notices asks for.
#[derive(Debug, Default)]
struct Work {
    events: bool,
    tokens: bool,
    reconnects: u64,
    reachable: Option<bool>,
}

impl Work {
    fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Events => self.events = true,
            Notice::Tokens => self.tokens = true,
            Notice::Everything { reconnected } => {
                self.events = true;
                self.tokens = true;
                self.reconnects += u64::from(reconnected);
            }
            Notice::Reachable(up) => self.reachable = Some(up),
        }
    }
}

/// Starts following `service`'s store: a thread that applies what other processes write.
/// It ends when the store drops its watcher or the service is gone.
pub fn follow(service: &Arc<Service>) {
    let (sender, receiver) = mpsc::channel::<Notice>();
    let watcher: Watcher = Arc::new(move |notice| {
        let _ = sender.send(notice);
    });
    let weak = Arc::downgrade(service);
    let spawned = std::thread::Builder::new()
        .name("secretgen-follower".to_owned())
        .spawn(move || run(&weak, &receiver));
    match spawned {
        Ok(_) => service.control().store().watch(watcher),
        Err(e) => tracing::error!(error = %e, "cannot start the thread that follows the store"),
    }
}

fn run(service: &Weak<Service>, receiver: &mpsc::Receiver<Notice>) {
    while let Ok(first) = receiver.recv() {
        let mut work = Work::default();
        work.add(first);
        while let Ok(more) = receiver.try_recv() {
            work.add(more);
        }
        let Some(service) = service.upgrade() else {
            return;
        };
        apply(&service, &work);
    }
}

fn apply(service: &Service, work: &Work) {
    let metrics = service.metrics();
    if let Some(up) = work.reachable {
        metrics.store_reachable(up);
    }
    for _ in 0..work.reconnects {
        metrics.store_reconnected();
    }
    if work.events {
        match service.control().catch_up() {
            Ok(applied) => {
                let now = SystemTime::now();
                for event in applied {
                    let delay = now
                        .duration_since(event.created_at)
                        .unwrap_or_default()
                        .as_secs_f64();
                    metrics.change_propagated(delay);
                    tracing::info!(
                        generator_type = %event.generator_type,
                        sequence = event.sequence,
                        "configuration changed on another replica, now served"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot apply the log's new events"),
        }
    }
    if work.tokens
        && let Err(e) = service.tokens().refresh()
    {
        tracing::warn!(error = %e, "cannot read the tokens again");
    }
}

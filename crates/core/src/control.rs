//! The control plane's core: a [`Store`] and the live [`Instance`] kept in step.
//!
//! On open, the event log is replayed into the instance; types that have no event yet get
//! ZITADEL's default written as an `added` event first, so every type has details from the
//! start. An update takes a configuration that is valid by construction, appends its event
//! (durable when the store returns), then swaps the snapshot. Events are swapped in in the
//! log's order, whoever wrote them: this process (`update`) or another replica on the same
//! database (`catch_up`, called when the store says the log moved); both hold one small lock
//! around the swap, never across a call to the store. No code is generated from a
//! configuration the log does not hold.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::store::{
    Author, Event, EventType, GENESIS, NewEvent, Store, StoreError, StoreErrorKind,
    truncate_to_micros,
};
use secretgen_engine::config::GeneratorConfig;
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::{Instance, InstanceId, Snapshot, Version};

/// Who wrote the defaults on first start.
pub const SYSTEM_CREATOR: &str = "system";

/// The live generators of the default instance, and the log they come from.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    instance: Arc<Instance>,
    /// The last event applied. Held around every swap, never across a call to the store:
    /// the instance takes the log's events in the log's order.
    applied: Mutex<Applied>,
}

impl ControlPlane {
    /// Opens the control plane on `store` (which must be writable): takes the stored
    /// instance id, or `requested` (or a new random one) on a first start; writes the
    /// defaults of the types that have no event yet; replays the log into the instance.
    ///
    /// `requested` must match the stored id when there is one: a data directory belongs to
    /// one instance.
    pub fn open(
        store: Arc<dyn Store>,
        requested: Option<InstanceId>,
    ) -> Result<ControlPlane, OpenError> {
        let id = match (store.default_instance()?, requested) {
            (Some(stored), Some(requested)) if stored != requested => {
                return Err(OpenError::InstanceMismatch { stored, requested });
            }
            (Some(stored), _) => stored,
            (None, requested) => {
                let id = match &requested {
                    Some(id) => id.clone(),
                    None => new_instance_id()?,
                };
                // Another replica starting on the same empty database may have stored its
                // own id a moment ago: the stored one wins.
                let stored = store.claim_default_instance(&id)?;
                if let Some(requested) = requested
                    && stored != requested
                {
                    return Err(OpenError::InstanceMismatch { stored, requested });
                }
                stored
            }
        };
        let mut events = store.events(&id)?;
        let missing: Vec<GeneratorType> = GeneratorType::ALL
            .into_iter()
            .filter(|t| !events.iter().any(|e| e.generator_type() == Some(*t)))
            .collect();
        if !missing.is_empty() {
            let now = truncate_to_micros(SystemTime::now());
            let defaults: Vec<NewEvent> = missing
                .into_iter()
                .map(|t| NewEvent {
                    event_type: EventType::Added,
                    config: GeneratorConfig::default_for(t),
                    created_at: now,
                    creator: SYSTEM_CREATOR.to_owned(),
                    creator_id: None,
                })
                .collect();
            // The store writes an `added` event only for a type that has none: replicas
            // starting together write the defaults once. Read back what the log now holds.
            store.append(&id, &defaults)?;
            events = store.events(&id)?;
        }
        store.finish_creation()?;
        let mut snapshots = replay(&events)?;
        let applied = events.last().map_or(
            Applied {
                sequence: 0,
                hash: GENESIS,
            },
            |e| Applied {
                sequence: e.sequence,
                hash: e.hash,
            },
        );
        let instance = Instance::new(id, |t| {
            snapshots
                .remove(&t)
                .expect("every type has an event after the defaults are written")
        });
        Ok(ControlPlane {
            store,
            instance: Arc::new(instance),
            applied: Mutex::new(applied),
        })
    }

    /// The default instance.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// The store behind the control plane.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The live snapshot of `generator_type`.
    pub fn get(&self, generator_type: GeneratorType) -> Arc<Snapshot> {
        self.instance().snapshot(generator_type)
    }

    /// Replaces the live configuration of `config`'s type with `config` (valid by
    /// construction: nothing is checked again), recording `creator` as the author.
    ///
    /// Returns the new snapshot once the change is durable and live; every code generated
    /// afterwards uses it. A configuration equal to the live one writes nothing and returns
    /// the live snapshot, details unchanged. A failed update changes nothing.
    pub fn update(
        &self,
        config: GeneratorConfig,
        creator: &str,
    ) -> Result<Arc<Snapshot>, StoreError> {
        self.update_by(config, &Author::named(creator))
    }

    /// [`ControlPlane::update`], recording `creator`'s name and token id as the author.
    pub fn update_by(
        &self,
        config: GeneratorConfig,
        creator: &Author,
    ) -> Result<Arc<Snapshot>, StoreError> {
        let generator_type = config.generator_type();
        let instance = self.instance();
        if self.store.sole_writer() {
            // Nobody else appends: the live configuration is the log's last one.
            let live = instance.snapshot(generator_type);
            if live.config() == &config {
                return Ok(live);
            }
        }
        let now = truncate_to_micros(SystemTime::now());
        let event = NewEvent {
            event_type: EventType::Changed,
            config,
            created_at: now,
            creator: creator.name.clone(),
            creator_id: creator.token_id.clone(),
        };
        // The store numbers the event and compares it with the type's last configuration in
        // the log, inside its transaction (this process's view may be behind another
        // replica's change): an equal one writes nothing. No lock of ours is held while the
        // store works, so a slow or unreachable store delays no one but this caller.
        let stored = self
            .store
            .append(instance.id(), std::slice::from_ref(&event))?;
        let Some(written) = stored.first() else {
            self.catch_up()?;
            return Ok(instance.snapshot(generator_type));
        };
        let mine = |current: &Snapshot| {
            Snapshot::new(
                event.config.clone(),
                Version {
                    sequence: written.sequence,
                    creation_date: current.version().creation_date,
                    change_date: now,
                },
            )
        };
        {
            let mut applied = self.lock();
            if written.sequence == applied.sequence + 1 {
                // The common case: the next event of the log. Swap it in now.
                instance.replace(mine(&instance.snapshot(generator_type)));
                *applied = Applied {
                    sequence: written.sequence,
                    hash: written.hash,
                };
                return Ok(instance.snapshot(generator_type));
            }
        }
        // Other events came first (another replica's, or a concurrent update's): apply the
        // log, in order, until this one is in.
        for _ in 0..3 {
            if self.applied_sequence() >= written.sequence {
                break;
            }
            self.catch_up()?;
        }
        if self.applied_sequence() < written.sequence {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "event {} was written but cannot be read back from the log",
                    written.sequence
                ),
            ));
        }
        let live = instance.snapshot(generator_type);
        if live.version().sequence == written.sequence {
            Ok(live)
        } else {
            // A later change of the same type is already live; answer with this one's.
            Ok(Arc::new(mine(&live)))
        }
    }

    /// Applies the events appended to the log since the last one this process applied (by
    /// other replicas or concurrent updates), in order, each swapped in whole; returns what
    /// it applied. The log is read without holding the lock that orders the swaps, so a slow
    /// store never makes a writer wait; generation never waits for either.
    pub fn catch_up(&self) -> Result<Vec<AppliedEvent>, StoreError> {
        let from = *self.lock();
        let events = self
            .store
            .events_after(self.instance().id(), from.sequence, &from.hash)?;
        let mut applied = self.lock();
        let instance = self.instance();
        let mut done = Vec::new();
        // Events are chained from `from`; those at or below what was applied meanwhile are
        // the same events, already live.
        for event in events {
            if event.sequence <= applied.sequence {
                continue;
            }
            if event.sequence != applied.sequence + 1 {
                return Err(bad_event(&event, "does not follow the last event applied"));
            }
            let Some(draft) = event.config() else {
                // A token's event: the follower reads the token table; nothing to swap.
                *applied = Applied {
                    sequence: event.sequence,
                    hash: event.hash,
                };
                continue;
            };
            let generator_type = draft.generator_type;
            let config = GeneratorConfig::new(draft)
                .map_err(|e| bad_event(&event, &format!("holds a refused configuration: {e}")))?;
            let creation_date = match event.event_type {
                EventType::Changed => instance.snapshot(generator_type).version().creation_date,
                _ => event.created_at,
            };
            instance.replace(Snapshot::new(
                config,
                Version {
                    sequence: event.sequence,
                    creation_date,
                    change_date: event.created_at,
                },
            ));
            *applied = Applied {
                sequence: event.sequence,
                hash: event.hash,
            };
            done.push(AppliedEvent {
                generator_type,
                sequence: event.sequence,
                created_at: event.created_at,
            });
        }
        Ok(done)
    }

    /// The sequence of the last event applied.
    pub fn applied_sequence(&self) -> u64 {
        self.lock().sequence
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The last event applied to the instance: where the next catch-up reads from.
#[derive(Clone, Copy, Debug)]
struct Applied {
    sequence: u64,
    hash: [u8; 32],
}

/// An event [`ControlPlane::catch_up`] applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    /// The type it changed.
    pub generator_type: GeneratorType,
    /// Its sequence.
    pub sequence: u64,
    /// When it was made (on the replica that made it).
    pub created_at: SystemTime,
}

impl fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlPlane")
            .field("store", &self.store)
            .field("instance", self.instance().id())
            .finish_non_exhaustive()
    }
}

/// The live snapshot of each type after `events` (sorted by sequence): the configuration of
/// its last event, that event's sequence and time, and the time of its first event.
///
/// Every stored configuration is checked again: a log that holds one this build refuses is
/// reported, never served.
pub fn replay(events: &[Event]) -> Result<BTreeMap<GeneratorType, Snapshot>, StoreError> {
    let mut last: BTreeMap<GeneratorType, (&Event, SystemTime)> = BTreeMap::new();
    let mut previous = 0;
    for event in events {
        if event.sequence <= previous {
            return Err(bad_event(event, "is out of order"));
        }
        previous = event.sequence;
        let Some(t) = event.generator_type() else {
            continue; // a token's event
        };
        let created = last
            .get(&t)
            .map_or(event.created_at, |(_, created)| *created);
        last.insert(t, (event, created));
    }
    last.into_iter()
        .map(|(t, (event, creation_date))| {
            let draft = event.config().expect("only configuration events are kept");
            let config = GeneratorConfig::new(draft)
                .map_err(|e| bad_event(event, &format!("holds a refused configuration: {e}")))?;
            let version = Version {
                sequence: event.sequence,
                creation_date,
                change_date: event.created_at,
            };
            Ok((t, Snapshot::new(config, version)))
        })
        .collect()
}

fn bad_event(event: &Event, what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "event {} of instance {} ({}) {what}",
            event.sequence,
            event.instance_id,
            event
                .generator_type()
                .map_or(event.event_type.as_str(), GeneratorType::full_name)
        ),
    )
}

/// A new instance id: 18 random decimal digits, like ZITADEL's ids.
fn new_instance_id() -> Result<InstanceId, StoreError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Unavailable,
            format!("cannot make an instance id: the operating system's random source failed: {e}"),
        )
    })?;
    let n = 100_000_000_000_000_000 + u64::from_le_bytes(bytes) % 900_000_000_000_000_000;
    Ok(InstanceId::new(&n.to_string()).expect("digits make a valid id"))
}

/// Why the control plane could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory belongs to another instance than the one asked for.
    #[error(
        "the data directory belongs to instance {stored}, not {requested}: \
         drop --instance-id or use another data directory"
    )]
    InstanceMismatch {
        /// The id in the store.
        stored: InstanceId,
        /// The id asked for.
        requested: InstanceId,
    },
}

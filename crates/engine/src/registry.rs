//! The live generators: per instance and type, an immutable snapshot swapped whole.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, Guard};

use crate::config::GeneratorConfig;
use crate::generator::Generator;
use crate::generator_type::GeneratorType;

/// Which configuration a snapshot holds: the sequence of the event that last changed it,
/// when the generator was first configured, and when last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// Sequence of the last change; strictly increasing per instance.
    pub sequence: u64,
    /// Time of the generator's first configuration.
    pub creation_date: SystemTime,
    /// Time of its last change.
    pub change_date: SystemTime,
}

/// One generator type's configuration, compiled generator and version, as one immutable value.
///
/// Readers get a whole snapshot or the next whole snapshot, never a mix: the generator always
/// matches the configuration and version it is shown with.
#[derive(Debug)]
pub struct Snapshot {
    config: GeneratorConfig,
    generator: Generator,
    version: Version,
}

impl Snapshot {
    /// Compiles `config` into a snapshot labelled `version`.
    pub fn new(config: GeneratorConfig, version: Version) -> Snapshot {
        Snapshot {
            generator: Generator::new(&config),
            config,
            version,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The compiled generator of [`Snapshot::config`].
    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// Sequence and dates of the configuration.
    pub fn version(&self) -> Version {
        self.version
    }
}

/// An instance's name (ZITADEL's `resourceOwner`): 1 to 128 of `A-Z a-z 0-9 - _ .`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(Arc<str>);

impl InstanceId {
    /// Longest accepted id.
    pub const MAX_LEN: usize = 128;

    /// Checks `id`.
    pub fn new(id: &str) -> Result<InstanceId, InstanceIdError> {
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if id.is_empty() || id.len() > Self::MAX_LEN || !id.bytes().all(ok_char) {
            return Err(InstanceIdError);
        }
        Ok(InstanceId(id.into()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({:?})", &*self.0)
    }
}

/// An instance id that is empty, too long, or has a character outside `A-Z a-z 0-9 - _ .`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceIdError;

impl fmt::Display for InstanceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an instance id is 1 to {} characters of A-Z, a-z, 0-9, '-', '_' and '.'",
            InstanceId::MAX_LEN
        )
    }
}

impl std::error::Error for InstanceIdError {}

/// One instance's eight live generators.
pub struct Instance {
    id: InstanceId,
    slots: [ArcSwap<Snapshot>; 8],
}

impl Instance {
    /// An instance whose generator of each type starts as `initial(type)`; a snapshot whose
    /// configuration is for another type than asked is a bug in the caller, and panics.
    pub fn new(id: InstanceId, mut initial: impl FnMut(GeneratorType) -> Snapshot) -> Instance {
        let slots = GeneratorType::ALL.map(|t| {
            let snapshot = initial(t);
            assert_eq!(
                snapshot.config.generator_type(),
                t,
                "snapshot for the wrong slot"
            );
            ArcSwap::from_pointee(snapshot)
        });
        Instance { id, slots }
    }

    /// An instance on ZITADEL's defaults, all at sequence 0, created `now`.
    pub fn with_defaults(id: InstanceId, now: SystemTime) -> Instance {
        let version = Version {
            sequence: 0,
            creation_date: now,
            change_date: now,
        };
        Instance::new(id, |t| {
            Snapshot::new(GeneratorConfig::default_for(t), version)
        })
    }

    /// The instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// The current snapshot of `generator_type`, without a lock: the fast path for one
    /// request. Hold the guard briefly; use [`Instance::snapshot`] to keep it.
    #[inline]
    pub fn load(&self, generator_type: GeneratorType) -> Guard<Arc<Snapshot>> {
        self.slots[generator_type.index()].load()
    }

    /// The current snapshot of `generator_type`, to keep as long as wanted.
    pub fn snapshot(&self, generator_type: GeneratorType) -> Arc<Snapshot> {
        self.slots[generator_type.index()].load_full()
    }

    /// Makes `snapshot` live for its type, whole and at once, and returns the one it
    /// replaced. Every load that starts after this returns sees the new snapshot.
    ///
    /// Callers that must order changes (the store, which logs them) serialise their calls.
    pub fn replace(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let t = snapshot.config.generator_type();
        self.slots[t.index()].swap(Arc::new(snapshot))
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    #[test]
    fn instance_ids_are_checked() {
        assert!(InstanceId::new("69629023906488334").is_ok());
        assert!(InstanceId::new("acme-prod_1.eu").is_ok());
        for bad in ["", "has space", "ünï", "a/b", &"x".repeat(129)] {
            assert_eq!(InstanceId::new(bad), Err(InstanceIdError), "{bad:?}");
        }
    }

    #[test]
    fn an_instance_starts_on_the_defaults() {
        let now = SystemTime::now();
        let instance = Instance::with_defaults(id("a"), now);
        for t in GeneratorType::ALL {
            let s = instance.load(t);
            assert_eq!(s.config(), &GeneratorConfig::default_for(t));
            assert_eq!(s.version().sequence, 0);
            assert_eq!(s.version().creation_date, now);
            assert_eq!(s.generator().length(), s.config().length().get());
        }
    }

    #[test]
    fn replace_swaps_only_its_own_type() {
        let instance = Instance::with_defaults(id("a"), SystemTime::now());
        let mut d = GeneratorConfig::default_for(GeneratorType::OtpSms).to_draft();
        d.length = crate::CodeLength::new(10);
        let config = GeneratorConfig::new(&d).unwrap();
        let version = Version {
            sequence: 9,
            creation_date: SystemTime::UNIX_EPOCH,
            change_date: SystemTime::now(),
        };
        let old = instance.replace(Snapshot::new(config.clone(), version));
        assert_eq!(old.config().length().get(), 8);
        let now = instance.load(GeneratorType::OtpSms);
        assert_eq!(now.config(), &config);
        assert_eq!(now.version(), version);
        assert_eq!(now.generator().generate().unwrap().len(), 10);
        assert_eq!(
            instance
                .load(GeneratorType::OtpEmail)
                .config()
                .length()
                .get(),
            8
        );
    }

    #[test]
    #[should_panic(expected = "snapshot for the wrong slot")]
    fn a_snapshot_in_the_wrong_slot_is_refused() {
        let version = Version {
            sequence: 0,
            creation_date: SystemTime::UNIX_EPOCH,
            change_date: SystemTime::UNIX_EPOCH,
        };
        Instance::new(id("a"), |_| {
            Snapshot::new(GeneratorConfig::default_for(GeneratorType::OtpSms), version)
        });
    }
}

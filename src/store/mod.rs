//! Durable configuration: an append-only log of configuration events, and the hashes of
//! access tokens.
//!
//! Like ZITADEL, secretgen keeps its generator settings as events
//! (`instance.secret.generator.added` / `.changed`); the `details` of the API (sequence,
//! creation and change dates) are read off them. [`Store`] is the seam: [`SqliteStore`] is the
//! embedded implementation, and the schema ([`SCHEMA`]) is plain SQL that PostgreSQL runs
//! unchanged, for the deployments with several servers that a later store will serve.
//!
//! The store knows rows, not rules: it writes what it is given and gives back what it wrote.
//! Replaying events into live generators, and the order of appends and swaps, belong to
//! [`crate::control`].

mod directory;
mod sqlite;
mod wal;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigDraft, GeneratorConfig};
use crate::generator_type::GeneratorType;
use crate::registry::InstanceId;

pub use sqlite::{BackupSummary, SCHEMA_VERSION, SqliteStore};

/// The tables, as SQL that SQLite and PostgreSQL both run unchanged: only `TEXT` and
/// `BIGINT` columns, times as microseconds since the Unix epoch (UTC), JSON as text.
pub const SCHEMA: &str = include_str!("schema.sql");

/// What an event did to a generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The generator's first configuration (the defaults, written on first start).
    Added,
    /// A later configuration.
    Changed,
}

impl EventType {
    /// The name stored in the log, ZITADEL's.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "instance.secret.generator.added",
            EventType::Changed => "instance.secret.generator.changed",
        }
    }

    /// The event type named `name` in the log.
    pub fn from_name(name: &str) -> Option<EventType> {
        [EventType::Added, EventType::Changed]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append; the store gives it its sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Added or changed.
    pub event_type: EventType,
    /// The configuration written; it names its generator type.
    pub config: GeneratorConfig,
    /// When the change was made, to the microsecond (see [`truncate_to_micros`]).
    pub created_at: SystemTime,
    /// Who made the change: a token's name, or `system` for the defaults.
    pub creator: String,
}

/// An event read from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The instance whose log it is in.
    pub instance_id: InstanceId,
    /// Its place in the instance's log: 1, 2, 3, … without gaps.
    pub sequence: u64,
    /// Added or changed.
    pub event_type: EventType,
    /// The generator type the event is about.
    pub generator_type: GeneratorType,
    /// The configuration as written. It is a draft: the rules are checked again on replay.
    pub config: ConfigDraft,
    /// When the change was made.
    pub created_at: SystemTime,
    /// Who made the change.
    pub creator: String,
    /// The event's [`chain_hash`]: over its stored fields and the previous event's hash.
    pub hash: [u8; 32],
}

/// The hash before an instance's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// An event's fields as the log stores them: the input of [`chain_hash`].
#[derive(Clone, Copy, Debug)]
pub struct EventRow<'a> {
    /// The instance id.
    pub instance_id: &'a str,
    /// The sequence.
    pub sequence: i64,
    /// The event type's name.
    pub event_type: &'a str,
    /// The generator type's full name.
    pub generator_type: &'a str,
    /// The configuration as stored JSON.
    pub payload: &'a str,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    /// The creator's name.
    pub creator: &'a str,
}

/// The hash that chains an event to the one before it: SHA-256 over a domain tag,
/// `previous` (the previous event's hash, or [`GENESIS`] for an instance's first event) and
/// every stored field of `event`, each prefixed with its length so that no two rows encode
/// alike. Editing, dropping or reordering an event breaks the chain from there on.
pub fn chain_hash(previous: &[u8; 32], event: &EventRow<'_>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"secretgen event chain v1\n");
    hasher.update(previous);
    let sequence = event.sequence.to_string();
    let created_at = event.created_at.to_string();
    for field in [
        event.instance_id,
        &sequence,
        event.event_type,
        event.generator_type,
        event.payload,
        &created_at,
        event.creator,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// 32 bytes from 64 hexadecimal digits.
pub(crate) fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digit = |b: u8| (b as char).to_digit(16);
        *o = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// A stored access token: its SHA-256 hash, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// A public identifier, safe to show and log.
    pub id: String,
    /// The name given at creation; events record it as their creator.
    pub name: String,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Permission names, e.g. `iam.read`.
    pub permissions: Vec<String>,
    /// When the token was created.
    pub created_at: SystemTime,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

/// Where configuration events and token hashes are kept.
///
/// Every write is durable when it returns. Implementations are shared between threads.
pub trait Store: Send + Sync + fmt::Debug {
    /// The default instance's id, once one has been stored.
    fn default_instance(&self) -> Result<Option<InstanceId>, StoreError>;

    /// Stores `id` as the default instance's id; refused once one is stored.
    fn set_default_instance(&self, id: &InstanceId) -> Result<(), StoreError>;

    /// The events of `instance`, in sequence order.
    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError>;

    /// Appends `events` to the log of `instance` in one transaction, numbered after the last
    /// one, and returns them as stored. Durable when it returns; nothing is written on error.
    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError>;

    /// Stores a token's record. Refused if its id or hash is already stored.
    fn add_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// The token whose hash is `hash`, if any.
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;

    /// How many tokens are stored.
    fn token_count(&self) -> Result<u64, StoreError>;

    /// Every stored token, for the table of known tokens that authentication reads. It
    /// must not wait behind a write: it is called on a request's path when a token is not
    /// in that table yet.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Whether the store answers and is still the store it was opened as.
    fn check(&self) -> Result<(), StoreError>;

    /// Called once a new store holds its instance and that instance's first events (by
    /// [`crate::ControlPlane::open`]): a store being made becomes visible as a store only
    /// now, whole. A no-op for a store that already existed.
    fn finish_creation(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why the store could not do what was asked.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

/// The kinds of [`StoreError`], for callers that act on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The data directory or the database file cannot be created, opened or written.
    Unavailable,
    /// Another process holds the data directory.
    Locked,
    /// The file is not a secretgen store, or its contents are damaged.
    Corrupt,
    /// The write is not allowed on this handle (read-only, or not the writer), or conflicts
    /// with what is stored.
    Refused,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// A store that cannot be reached, created or written.
pub(crate) fn unavailable(message: String) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

/// A store file that is damaged, incomplete or foreign, and was left as it is.
pub(crate) fn corrupt(path: &std::path::Path, why: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "{} is not a usable secretgen store: {why}; it was left as it is \
             (restore it from a backup, or move it away to start afresh)",
            path.display()
        ),
    )
}

/// The database file in a data directory.
pub fn database_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("secretgen.db")
}

/// `time` without its nanoseconds below the microsecond: what the log keeps, so that a
/// version read back after a restart equals the one served before it.
pub fn truncate_to_micros(time: SystemTime) -> SystemTime {
    from_micros(to_micros(time))
}

/// Microseconds since the Unix epoch; times before it count as the epoch.
pub(crate) fn to_micros(time: SystemTime) -> i64 {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(micros: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

/// A configuration as the log stores it: the API's field names, without the type (a column
/// of its own).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload {
    length: i64,
    expiry: String,
    include_lower_letters: bool,
    include_upper_letters: bool,
    include_digits: bool,
    include_symbols: bool,
    #[serde(default)]
    exclude_ambiguous: bool,
    #[serde(default)]
    require_each_class: bool,
}

impl Payload {
    pub(crate) fn of(config: &GeneratorConfig) -> Payload {
        let d = config.to_draft();
        Payload {
            length: d.length,
            expiry: d.expiry,
            include_lower_letters: d.include_lower_letters,
            include_upper_letters: d.include_upper_letters,
            include_digits: d.include_digits,
            include_symbols: d.include_symbols,
            exclude_ambiguous: d.exclude_ambiguous,
            require_each_class: d.require_each_class,
        }
    }

    pub(crate) fn into_draft(self, generator_type: GeneratorType) -> ConfigDraft {
        ConfigDraft {
            length: self.length,
            expiry: self.expiry,
            include_lower_letters: self.include_lower_letters,
            include_upper_letters: self.include_upper_letters,
            include_digits: self.include_digits,
            include_symbols: self.include_symbols,
            exclude_ambiguous: self.exclude_ambiguous,
            require_each_class: self.require_each_class,
            ..ConfigDraft::new(generator_type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_zitadels() {
        assert_eq!(
            EventType::from_name("instance.secret.generator.added"),
            Some(EventType::Added)
        );
        assert_eq!(
            EventType::from_name("instance.secret.generator.changed"),
            Some(EventType::Changed)
        );
        assert_eq!(
            EventType::from_name("instance.secret.generator.removed"),
            None
        );
    }

    #[test]
    fn times_keep_microseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        assert_eq!(
            truncate_to_micros(t),
            SystemTime::UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_000)
        );
        assert_eq!(
            from_micros(to_micros(truncate_to_micros(t))),
            truncate_to_micros(t)
        );
    }

    #[test]
    fn a_payload_gives_back_the_configuration() {
        for t in GeneratorType::ALL {
            let config = GeneratorConfig::default_for(t);
            let json = serde_json::to_string(&Payload::of(&config)).unwrap();
            let back: Payload = serde_json::from_str(&json).unwrap();
            assert_eq!(GeneratorConfig::new(&back.into_draft(t)).unwrap(), config);
        }
    }
}

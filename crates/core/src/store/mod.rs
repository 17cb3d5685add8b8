//! Durable configuration: an append-only log of configuration events, and the hashes of
//! access tokens.
//!
//! Like ZITADEL, secretgen keeps its generator settings as events
//! (`instance.secret.generator.added` / `.changed`); the `details` of the API (sequence,
//! creation and change dates) are read off them. [`Store`] is the seam: [`SqliteStore`] is the
//! embedded implementation, [`PostgresStore`] the one that several servers share, and the
//! schema ([`SCHEMA`]) is plain SQL that both run unchanged. Their transaction logic (the
//! log's numbering and chain, token changes and their events) is written once, in `flow`,
//! over a small interface that each implements with its own SQL and driver.
//!
//! The store knows rows, not rules: it writes what it is given and gives back what it wrote.
//! Replaying events into live generators, and the order of appends and swaps, belong to
//! [`crate::control`].

mod chain;
pub mod codes;
mod directory;
mod error;
mod flow;
mod json;
mod page;
mod postgres;
mod sqlite;
mod wal;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use secretgen_engine::config::{ConfigDraft, GeneratorConfig};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

pub use chain::{EventRow, GENESIS, StoredEvent, chain_hash};
pub(crate) use chain::{Payload, events_following, hex, rows_to_append, unhex, verify_chain};
pub use error::{StoreError, StoreErrorKind};
pub(crate) use error::{corrupt, unavailable};
pub use page::{COUNT_AHEAD, EventFilter, LogEntry, LogPage, MAX_PAGE, page_in_memory};
pub(crate) use page::{PageRows, PageSql, SqlValue, page_of};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{BackupSummary, SCHEMA_VERSION, SqliteStore};

/// The tables, as SQL that SQLite and PostgreSQL both run unchanged: only `TEXT` and
/// `BIGINT` columns, times as microseconds since the Unix epoch (UTC), JSON as text.
pub const SCHEMA: &str = include_str!("schema.sql");

/// The indexes of the audit search's filters on the creator, over columns of schema version 4:
/// made with the tables of a new store, and by the upgrade to version 4 (after the columns),
/// so they are not in [`SCHEMA`], which also runs on a store of an older version. Plain SQL
/// that both stores run.
pub const CREATOR_INDEXES: &str = "\
    CREATE INDEX IF NOT EXISTS events_by_creator ON events (instance_id, creator, sequence); \
    CREATE INDEX IF NOT EXISTS events_by_creator_id ON events (instance_id, creator_id, sequence)";

/// The tables of issued codes (schema version 5): made with the tables of a new store, and
/// by the upgrade from version 4. Plain SQL that both stores run.
pub const CODES_TABLES: &str = include_str!("codes.sql");

/// What an event did to a generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The generator's first configuration (the defaults, written on first start).
    Added,
    /// A later configuration.
    Changed,
    /// A token was created.
    TokenAdded,
    /// A token was revoked.
    TokenRemoved,
    /// An admin lifted a subject's lock, or cleared its failures (SPEC section 12).
    SubjectUnlocked,
}

impl EventType {
    /// The name stored in the log, ZITADEL's.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "instance.secret.generator.added",
            EventType::Changed => "instance.secret.generator.changed",
            EventType::TokenAdded => "instance.token.added",
            EventType::TokenRemoved => "instance.token.removed",
            EventType::SubjectUnlocked => "instance.verification.unlocked",
        }
    }

    /// Every event type.
    pub const ALL: [EventType; 5] = [
        EventType::Added,
        EventType::Changed,
        EventType::TokenAdded,
        EventType::TokenRemoved,
        EventType::SubjectUnlocked,
    ];

    /// The event type named `name` in the log.
    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether it records a token's life.
    pub const fn is_token(self) -> bool {
        matches!(self, EventType::TokenAdded | EventType::TokenRemoved)
    }

    /// Whether it records a configuration (the others have no generator type in the log's
    /// column, so that they never count as a type's last configuration).
    pub const fn is_config(self) -> bool {
        matches!(self, EventType::Added | EventType::Changed)
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
    /// The id of the token that made the change; `None` for the server itself and the
    /// command line.
    pub creator_id: Option<String>,
}

/// An event read from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The instance whose log it is in.
    pub instance_id: InstanceId,
    /// Its place in the instance's log: 1, 2, 3, … without gaps.
    pub sequence: u64,
    /// What kind of event.
    pub event_type: EventType,
    /// What it records.
    pub change: Change,
    /// When the change was made.
    pub created_at: SystemTime,
    /// Who made the change.
    pub creator: String,
    /// The id of the token that made the change; `None` for the server itself, the command
    /// line, and events written before schema version 4.
    pub creator_id: Option<String>,
    /// The event's [`chain_hash`]: over its stored fields and the previous event's hash.
    pub hash: [u8; 32],
}

impl Event {
    /// The generator type a configuration event is about; `None` for a token event.
    pub fn generator_type(&self) -> Option<GeneratorType> {
        self.config().map(|c| c.generator_type)
    }

    /// The configuration a configuration event wrote; `None` for a token event.
    pub fn config(&self) -> Option<&ConfigDraft> {
        match &self.change {
            Change::Config(config) => Some(config),
            Change::Token(_) | Change::Unlock(_) => None,
        }
    }
}

/// What an event records.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A generator's configuration as written (`added`, `changed`). It is a draft: the rules
    /// are checked again on replay.
    Config(ConfigDraft),
    /// A token's public facts (`token.added`, `token.removed`): never its secret or hash.
    Token(TokenFacts),
    /// A lifted lock (`verification.unlocked`): the subject's keyed hash, never the subject.
    Unlock(UnlockFacts),
}

/// An unlock as the log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockFacts {
    /// The type whose subject was unlocked.
    pub generator_type: GeneratorType,
    /// The subject's keyed hash (hex), under `key_id`.
    pub subject_hash: String,
    /// The key of `subject_hash`.
    pub key_id: String,
    /// The failures cleared.
    pub failures: i64,
    /// The end of the lock lifted (microseconds since the Unix epoch); `None` when the
    /// subject had failures but no lock.
    pub locked_until: Option<i64>,
}

impl UnlockFacts {
    /// The facts as the log stores them: JSON with the API's field names.
    pub(crate) fn to_json(&self) -> String {
        json::Writer::new()
            .str("generatorType", self.generator_type.full_name())
            .str("subjectHash", &self.subject_hash)
            .str("keyId", &self.key_id)
            .int("failures", self.failures)
            .int_or_null("lockedUntil", self.locked_until)
            .finish()
    }

    /// The facts in JSON `text`.
    pub(crate) fn from_json(text: &str) -> Result<UnlockFacts, String> {
        let f = json::object(text)?;
        Ok(UnlockFacts {
            generator_type: f
                .str("generatorType")?
                .parse()
                .map_err(|e| format!("generatorType: {e}"))?,
            subject_hash: f.str("subjectHash")?.to_owned(),
            key_id: f.str("keyId")?.to_owned(),
            failures: f.int("failures")?,
            locked_until: f.optional_int("lockedUntil")?,
        })
    }

    /// When the lifted lock would have ended; `None` without a lock.
    pub fn locked_until(&self) -> Option<SystemTime> {
        self.locked_until.map(from_micros)
    }
}

/// A token as the log records it: what may be shown to any reader of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    /// The token's id.
    pub token_id: String,
    /// Its name.
    pub name: String,
    /// Its permissions' names.
    pub permissions: Vec<String>,
    /// When it expires, in microseconds since the Unix epoch; `None` for never.
    pub expires_at: Option<i64>,
    /// The id of the token that created it (`token.added` only); `None` when the server or
    /// the command line did.
    pub created_by: Option<String>,
}

impl TokenFacts {
    /// When the token expires; `None` for never.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires_at.map(from_micros)
    }

    /// The facts as the log stores them: JSON with the API's field names; `createdBy` only
    /// when there is one.
    pub(crate) fn to_json(&self) -> String {
        let w = json::Writer::new()
            .str("tokenId", &self.token_id)
            .str("name", &self.name)
            .strings("permissions", &self.permissions)
            .int_or_null("expiresAt", self.expires_at);
        match &self.created_by {
            Some(by) => w.str("createdBy", by),
            None => w,
        }
        .finish()
    }

    /// The facts in JSON `text`.
    pub(crate) fn from_json(text: &str) -> Result<TokenFacts, String> {
        let f = json::object(text)?;
        Ok(TokenFacts {
            token_id: f.str("tokenId")?.to_owned(),
            name: f.str("name")?.to_owned(),
            permissions: f.strings("permissions")?,
            expires_at: f.optional_int("expiresAt")?,
            created_by: f.optional_str("createdBy")?,
        })
    }

    /// The facts of `record`.
    pub fn of(record: &TokenRecord) -> TokenFacts {
        TokenFacts {
            token_id: record.id.clone(),
            name: record.name.clone(),
            permissions: record.permissions.clone(),
            expires_at: record.expires_at.map(to_micros),
            created_by: record.created_by.clone(),
        }
    }
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
    /// When the token stops being accepted; `None` for never.
    pub expires_at: Option<SystemTime>,
    /// The id of the token that created it; `None` when the server or the command line did
    /// (and for every token stored before schema version 4). Revoking a token revokes the
    /// tokens it created.
    pub created_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token is still accepted at `now`.
    pub fn live_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Who makes a change: a token's name and id, or the server itself or the command line
/// (a name and no id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    /// The name the log records as the creator.
    pub name: String,
    /// The token's id, when a token made the change.
    pub token_id: Option<String>,
}

impl Author {
    /// An author that is no token: `system`, `command line`.
    pub fn named(name: &str) -> Author {
        Author {
            name: name.to_owned(),
            token_id: None,
        }
    }
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("permissions", &self.permissions)
            .field("expires_at", &self.expires_at)
            .field("created_by", &self.created_by)
            .finish_non_exhaustive()
    }
}

/// Where configuration events and token hashes are kept: a store is its log ([`EventLog`]),
/// its tokens ([`TokenStore`]) and its life as a whole ([`Lifecycle`]), and every type with
/// the three is a `Store`. The control plane and the use cases hold an `Arc<dyn Store>`; a
/// backend implements each concern in an `impl` of its own (`store_impl.rs`).
///
/// Every write is durable when it returns. Implementations are shared between threads.
pub trait Store: EventLog + TokenStore + CodeStore + Lifecycle + Send + Sync + fmt::Debug {}

impl<T: EventLog + TokenStore + CodeStore + Lifecycle + Send + Sync + fmt::Debug> Store for T {}

/// Issued codes and their subjects (SPEC section 12), through the flows of `codes`: each
/// call is one transaction (or one of a group committed together), durable when it returns
/// or, for an issue and a verification, when its [`codes::Reply`] answers.
pub trait CodeStore {
    /// Stores `request`'s code for its subject, within `limits`. Returns at once: the
    /// operation runs on the store's own thread or runtime, and the reply answers once it
    /// is durable.
    fn issue_code(
        &self,
        request: codes::IssueRequest,
        limits: &crate::verification::Limits,
    ) -> codes::Reply<codes::Issued>;

    /// Checks `request`'s typed code against its subject's pending codes, within `limits`;
    /// returns at once, like [`CodeStore::issue_code`].
    fn verify_code(
        &self,
        request: codes::VerifyRequest,
        limits: &crate::verification::Limits,
    ) -> codes::Reply<codes::Verified>;

    /// Lifts the lock of `request`'s subject and clears its failures, recorded in the log as
    /// made by `by`; the event written, `None` when there was nothing to lift.
    fn unlock_subject(
        &self,
        request: codes::UnlockRequest,
        by: &Author,
    ) -> Result<Option<Event>, StoreError>;

    /// Deletes codes that expired before `expired_before`, and subjects with nothing left
    /// to keep at `now` (microseconds since the Unix epoch both).
    fn purge_codes(&self, now: i64, expired_before: i64) -> Result<codes::Purged, StoreError>;

    /// How many codes and subjects are stored, and how many subjects of each type are
    /// locked at `now` (microseconds since the Unix epoch).
    fn code_counts(&self, now: i64) -> Result<codes::CodeCounts, StoreError>;
}

/// The event log of each instance: configuration changes and token events, each chained to
/// the one before by its hash, with the default instance's id.
pub trait EventLog {
    /// The default instance's id, once one has been stored.
    fn default_instance(&self) -> Result<Option<InstanceId>, StoreError>;

    /// Stores `id` as the default instance's id unless one is stored already, and returns
    /// the stored id: `id`, or the one that was there (another replica may have stored its
    /// own a moment before).
    fn claim_default_instance(&self, id: &InstanceId) -> Result<InstanceId, StoreError>;

    /// The events of `instance`, in sequence order, their chain verified from the first.
    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError>;

    /// The events of `instance` after the one numbered `sequence`, whose hash must be `hash`
    /// (`0` and [`GENESIS`] for the whole log): the chain is verified from it, so a log
    /// rewritten under a running replica is refused rather than followed.
    fn events_after(
        &self,
        instance: &InstanceId,
        sequence: u64,
        hash: &[u8; 32],
    ) -> Result<Vec<Event>, StoreError>;

    /// Appends to the log of `instance`, in one transaction numbered after the last event,
    /// those of `events` that change something: an `added` event only for a type with no
    /// event yet, a `changed` event only when it differs from its type's last configuration
    /// in the log. Returns the events written (none when nothing changed). Durable when it
    /// returns; nothing is written on error.
    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError>;

    /// The page of `instance`'s log that `filter` asks for, with the number of events that
    /// match and the log's last sequence. The stores answer it with an indexed query that
    /// reads what it returns, not the whole log; this default (for a backend without one)
    /// reads the whole log, verified, and is the reference the stores are tested against.
    fn events_page(
        &self,
        instance: &InstanceId,
        filter: &EventFilter,
    ) -> Result<LogPage, StoreError> {
        Ok(page_in_memory(self.events(instance)?, filter))
    }

    /// The instances that have events.
    fn instances(&self) -> Result<Vec<InstanceId>, StoreError>;
}

/// Access tokens: their hashes and public facts, each change recorded in the default
/// instance's log in the same transaction.
pub trait TokenStore {
    /// Stores a token's record and appends its `token.added` event, made by `creator` (the
    /// event's creator id is the token's [`TokenRecord::created_by`]), to the default
    /// instance's log, in one transaction; returns the event. Refused if its id or hash is
    /// already stored, or when the store holds no instance yet; [`StoreErrorKind::NameTaken`]
    /// when a live token (not expired) already has its name.
    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError>;

    /// [`TokenStore::add_token`], only if the store holds no token yet (the first admin token of
    /// a first start); returns whether it was stored. Replicas starting together store one.
    fn add_first_token(&self, token: &TokenRecord, creator: &str) -> Result<bool, StoreError>;

    /// Removes the token `id` (revokes it) and every token it created, recursively, each
    /// with its `token.removed` event made by `by`, in one transaction; returns the events,
    /// the token's own first, then its descendants' (nearest first); none when there was no
    /// such token (nothing is written then). Replicas are told, as of any token change.
    fn remove_token(&self, id: &str, by: &Author) -> Result<Vec<Event>, StoreError>;

    /// The token whose hash is `hash`, if any.
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;

    /// The token `id`, if it is stored.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.tokens()?.into_iter().find(|t| t.id == id))
    }

    /// How many tokens are stored.
    fn token_count(&self) -> Result<u64, StoreError>;

    /// Every stored token, for the table of known tokens that authentication reads. It
    /// must not wait behind a write: it is called on a request's path when a token is not
    /// in that table yet.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
}

/// What a store is as a whole: whether it answers, whether another process writes it, what
/// it tells the process that follows it, and when a new store becomes one.
pub trait Lifecycle {
    /// Whether the store answers and is still the store it was opened as.
    fn check(&self) -> Result<(), StoreError>;

    /// Whether this handle is the only process that appends to the log (the embedded
    /// store's writer): then the live configurations are the log's last ones, and an update
    /// equal to one is known to change nothing without asking the store.
    fn sole_writer(&self) -> bool {
        false
    }

    /// Tells `watcher` whenever the log or the tokens may have been changed by another
    /// process, and when the store becomes reachable or unreachable. A store that only this
    /// process writes (the embedded one) never calls it. `watcher` must return at once.
    fn watch(&self, watcher: Watcher) {
        let _ = watcher;
    }

    /// Called once a new store holds its instance and that instance's first events (by
    /// [`crate::control::ControlPlane::open`]): a store being made becomes visible as a store only
    /// now, whole. A no-op for a store that already existed.
    fn finish_creation(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a store tells the process that follows it (see [`Lifecycle::watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Events may have been appended.
    Events,
    /// Tokens may have been added or changed.
    Tokens,
    /// Anything may have changed: the store has just (re)connected and notifications may have
    /// been missed, or the periodic re-read is due. Read everything from what was applied.
    Everything {
        /// Whether this follows a lost connection (counted as a reconnect).
        reconnected: bool,
    },
    /// The store became reachable (`true`) or unreachable (`false`).
    Reachable(bool),
}

/// Receives a store's [`Notice`]s; must return at once.
pub type Watcher = std::sync::Arc<dyn Fn(Notice) + Send + Sync>;

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
}

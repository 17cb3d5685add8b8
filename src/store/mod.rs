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
mod postgres;
mod sqlite;
mod wal;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigDraft, GeneratorConfig};
use crate::generator_type::GeneratorType;
use crate::registry::InstanceId;

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
}

impl EventType {
    /// The name stored in the log, ZITADEL's.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "instance.secret.generator.added",
            EventType::Changed => "instance.secret.generator.changed",
            EventType::TokenAdded => "instance.token.added",
            EventType::TokenRemoved => "instance.token.removed",
        }
    }

    /// Every event type.
    pub const ALL: [EventType; 4] = [
        EventType::Added,
        EventType::Changed,
        EventType::TokenAdded,
        EventType::TokenRemoved,
    ];

    /// The event type named `name` in the log.
    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether it records a token's life rather than a configuration.
    pub const fn is_token(self) -> bool {
        matches!(self, EventType::TokenAdded | EventType::TokenRemoved)
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
            Change::Token(_) => None,
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
}

/// A token as the log records it: what may be shown to any reader of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

impl TokenFacts {
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
    /// The creator's token id; empty for none.
    pub creator_id: &'a str,
}

/// The hash that chains an event to the one before it: SHA-256 over a domain tag,
/// `previous` (the previous event's hash, or [`GENESIS`] for an instance's first event) and
/// every stored field of `event`, each prefixed with its length so that no two rows encode
/// alike. Editing, dropping or reordering an event breaks the chain from there on.
///
/// The creator's token id (schema version 4) is hashed as an eighth field only when it is
/// not empty, so the events written before it keep their hashes; an id added to, removed
/// from or changed in a stored row breaks the chain like any other edit.
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
    if !event.creator_id.is_empty() {
        hasher.update((event.creator_id.len() as u64).to_be_bytes());
        hasher.update(event.creator_id.as_bytes());
    }
    hasher.finalize().into()
}

/// An event row exactly as the log holds it: what both stores read, verify and decode, and
/// what `secretgen migrate` copies verbatim (hashes and all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// The instance id.
    pub instance_id: String,
    /// The sequence.
    pub sequence: i64,
    /// The event type's name.
    pub event_type: String,
    /// The generator type's full name.
    pub generator_type: String,
    /// The configuration as stored JSON.
    pub payload: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
    /// The creator's name.
    pub creator: String,
    /// The creator's token id; empty for none.
    pub creator_id: String,
    /// The stored hash; all zeros when the stored text is not 64 hex digits (then it matches
    /// nothing and the chain check refuses it).
    pub hash: [u8; 32],
}

impl StoredEvent {
    /// The row of `event`, numbered `sequence` in `instance`'s log after the event whose
    /// hash is `previous`.
    pub(crate) fn encode(
        instance: &InstanceId,
        sequence: i64,
        previous: &[u8; 32],
        event: &NewEvent,
    ) -> StoredEvent {
        let payload =
            serde_json::to_string(&Payload::of(&event.config)).expect("a payload is plain JSON");
        let mut row = StoredEvent {
            instance_id: instance.as_str().to_owned(),
            sequence,
            event_type: event.event_type.as_str().to_owned(),
            generator_type: event.config.generator_type().full_name().to_owned(),
            payload,
            created_at: to_micros(event.created_at),
            creator: event.creator.clone(),
            creator_id: event.creator_id.clone().unwrap_or_default(),
            hash: [0; 32],
        };
        row.hash = chain_hash(previous, &row.as_event_row());
        row
    }

    /// The row of a token event about `facts`, numbered `sequence` in `instance`'s log
    /// after the event whose hash is `previous`, made by `creator`. Its generator type is
    /// empty.
    pub(crate) fn encode_token(
        instance: &InstanceId,
        sequence: i64,
        previous: &[u8; 32],
        event_type: EventType,
        facts: &TokenFacts,
        created_at: SystemTime,
        creator: &Author,
    ) -> StoredEvent {
        let mut row = StoredEvent {
            instance_id: instance.as_str().to_owned(),
            sequence,
            event_type: event_type.as_str().to_owned(),
            generator_type: String::new(),
            payload: serde_json::to_string(facts).expect("token facts are plain JSON"),
            created_at: to_micros(created_at),
            creator: creator.name.clone(),
            creator_id: creator.token_id.clone().unwrap_or_default(),
            hash: [0; 32],
        };
        row.hash = chain_hash(previous, &row.as_event_row());
        row
    }

    /// The fields that [`chain_hash`] covers.
    pub fn as_event_row(&self) -> EventRow<'_> {
        EventRow {
            instance_id: &self.instance_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            generator_type: &self.generator_type,
            payload: &self.payload,
            created_at: self.created_at,
            creator: &self.creator,
            creator_id: &self.creator_id,
        }
    }

    /// The event this row records; `bad` words what is wrong with a row that cannot be read.
    pub(crate) fn decode(self, bad: &dyn Fn(String) -> StoreError) -> Result<Event, StoreError> {
        let at = format!("event {} of instance {}", self.sequence, self.instance_id);
        let instance_id = InstanceId::new(&self.instance_id)
            .map_err(|e| bad(format!("{at} has an invalid instance id: {e}")))?;
        let event_type = EventType::from_name(&self.event_type).ok_or_else(|| {
            bad(format!(
                "{at} has an unknown event type {:?}",
                self.event_type
            ))
        })?;
        let change = if event_type.is_token() {
            if !self.generator_type.is_empty() {
                return Err(bad(format!("{at} is a token event with a generator type")));
            }
            Change::Token(
                serde_json::from_str(&self.payload)
                    .map_err(|e| bad(format!("{at} has unreadable token facts: {e}")))?,
            )
        } else {
            let generator_type: GeneratorType = self
                .generator_type
                .parse()
                .map_err(|e| bad(format!("{at} has a bad generator type: {e}")))?;
            let payload: Payload = serde_json::from_str(&self.payload)
                .map_err(|e| bad(format!("{at} has an unreadable configuration: {e}")))?;
            Change::Config(payload.into_draft(generator_type))
        };
        Ok(Event {
            instance_id,
            sequence: u64::try_from(self.sequence)
                .map_err(|_| bad(format!("{at} has a negative sequence")))?,
            event_type,
            change,
            created_at: from_micros(self.created_at),
            creator: self.creator,
            creator_id: (!self.creator_id.is_empty()).then_some(self.creator_id),
            hash: self.hash,
        })
    }
}

/// Refuses `rows` (sorted by instance and sequence) whose sequences have gaps or whose hashes
/// do not chain. The first row of each instance follows `before` (the sequence and hash of
/// the event before it: `(0, GENESIS)` for a whole log); `bad` words the refusal.
pub(crate) fn verify_chain(
    rows: &[StoredEvent],
    before: (i64, [u8; 32]),
    bad: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let mut previous: Option<&StoredEvent> = None;
    for row in rows {
        let (hash_before, expected_sequence) = match previous {
            Some(p) if p.instance_id == row.instance_id => (p.hash, p.sequence + 1),
            _ => (before.1, before.0 + 1),
        };
        let at = format!("event {} of instance {}", row.sequence, row.instance_id);
        if row.sequence != expected_sequence {
            return Err(bad(format!(
                "{at} follows event {}: the log has a gap",
                expected_sequence - 1
            )));
        }
        if chain_hash(&hash_before, &row.as_event_row()) != row.hash {
            return Err(bad(format!(
                "{at} does not match its hash: the log was edited or damaged after it was \
                 written"
            )));
        }
        previous = Some(row);
    }
    Ok(())
}

/// The events of `rows` (an instance's rows from sequence `after.0` on, in order; from the
/// first when `after.0` is 0) that follow the event `after` (its sequence and hash): the row
/// at `after.0` must still be that event, and the rest must chain from it. `bad` words a
/// refusal.
pub(crate) fn events_following(
    instance: &InstanceId,
    after: (i64, [u8; 32]),
    mut rows: Vec<StoredEvent>,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<Vec<Event>, StoreError> {
    let (sequence, hash) = after;
    if sequence > 0 {
        if rows
            .first()
            .is_none_or(|r| r.sequence != sequence || r.hash != hash)
        {
            return Err(bad(format!(
                "event {sequence} of instance {instance} is no longer the event this process \
                 applied: the log was rewritten"
            )));
        }
        rows.remove(0);
    }
    verify_chain(&rows, after, bad)?;
    rows.into_iter().map(|row| row.decode(bad)).collect()
}

/// The rows to append for `events` to a log whose last event is `last` (its sequence and
/// hash, `(0, GENESIS)` when empty), where `latest` gives the payload of each generator
/// type's last event (for the types of `events`; `None` for a type without one).
///
/// An event that would change nothing is left out: an `added` event for a type that already
/// has one, and a `changed` event equal to its type's last configuration. Stores call this
/// inside the transaction that appends, so that writers on several replicas agree.
pub(crate) fn rows_to_append(
    instance: &InstanceId,
    last: (i64, [u8; 32]),
    latest: &std::collections::HashMap<GeneratorType, Option<String>>,
    events: &[NewEvent],
) -> Vec<StoredEvent> {
    let mut latest = latest.clone();
    let (mut sequence, mut previous) = last;
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let generator_type = event.config.generator_type();
        let before = latest.get(&generator_type).cloned().flatten();
        let row = StoredEvent::encode(instance, sequence + 1, &previous, event);
        let changes = match event.event_type {
            EventType::Added => before.is_none(),
            EventType::Changed => before.as_deref() != Some(row.payload.as_str()),
            // Token events are written with the token change they record, never here.
            EventType::TokenAdded | EventType::TokenRemoved => false,
        };
        if !changes {
            continue;
        }
        sequence = row.sequence;
        previous = row.hash;
        latest.insert(generator_type, Some(row.payload.clone()));
        rows.push(row);
    }
    rows
}

/// The most events one page of the log holds: a larger limit is capped to it.
pub const MAX_PAGE: u64 = 1000;

/// Which events of a log, and which page of them (the audit search). Every filter is
/// optional; all given must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events about this generator type (token events are about none).
    pub generator_type: Option<GeneratorType>,
    /// Only events of these types (none at all when empty).
    pub event_types: Option<Vec<EventType>>,
    /// Only events made by the token of this name.
    pub creator: Option<String>,
    /// Only events made by the token of this id.
    pub creator_id: Option<String>,
    /// Only events from this sequence on.
    pub from_sequence: u64,
    /// Only events made at or after this time.
    pub since: Option<SystemTime>,
    /// Only events made before this time.
    pub until: Option<SystemTime>,
    /// Matching events to skip.
    pub offset: u64,
    /// Most events to return: 1 to [`MAX_PAGE`] (0 and more are read as [`MAX_PAGE`]).
    pub limit: u64,
    /// Oldest first; `false` for newest first.
    pub ascending: bool,
}

impl Default for EventFilter {
    fn default() -> EventFilter {
        EventFilter {
            generator_type: None,
            event_types: None,
            creator: None,
            creator_id: None,
            from_sequence: 0,
            since: None,
            until: None,
            offset: 0,
            limit: MAX_PAGE,
            ascending: true,
        }
    }
}

impl EventFilter {
    /// The limit as applied: 1 to [`MAX_PAGE`].
    pub fn page_size(&self) -> u64 {
        match self.limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        }
    }

    /// Whether only the sequence is filtered on: then the log being gap-free gives the
    /// number of matches and the place of any offset without reading a row.
    pub(crate) fn by_sequence_only(&self) -> bool {
        self.generator_type.is_none()
            && self.event_types.is_none()
            && self.creator.is_none()
            && self.creator_id.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Whether `event` matches every filter (paging aside).
    pub fn admits(&self, event: &Event) -> bool {
        event.sequence >= self.from_sequence
            && self
                .generator_type
                .is_none_or(|t| event.generator_type() == Some(t))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
            && self.creator.as_ref().is_none_or(|c| &event.creator == c)
            && self
                .creator_id
                .as_ref()
                .is_none_or(|c| event.creator_id.as_ref() == Some(c))
            && self.since.is_none_or(|since| event.created_at >= since)
            && self.until.is_none_or(|until| event.created_at < until)
    }
}

/// An event of a page of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// The event.
    pub event: Event,
    /// For a `changed` event: the configuration its type had before it.
    pub previous: Option<ConfigDraft>,
}

/// A page of a log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogPage {
    /// How many events match the filters, before paging.
    pub total: u64,
    /// The log's last sequence when it was read.
    pub last_sequence: u64,
    /// The page.
    pub entries: Vec<LogEntry>,
}

/// The page `filter` asks for out of a whole log (`events`, in order): what
/// [`Store::events_page`] must answer.
pub fn page_in_memory(events: Vec<Event>, filter: &EventFilter) -> LogPage {
    let last_sequence = events.last().map_or(0, |e| e.sequence);
    let mut latest: HashMap<GeneratorType, ConfigDraft> = HashMap::new();
    let mut entries = Vec::new();
    for event in events {
        let previous = match (event.event_type, event.config()) {
            (EventType::Changed, Some(config)) => {
                latest.insert(config.generator_type, config.clone())
            }
            (_, Some(config)) => {
                latest.insert(config.generator_type, config.clone());
                None
            }
            _ => None,
        };
        if filter.admits(&event) {
            entries.push(LogEntry { event, previous });
        }
    }
    if !filter.ascending {
        entries.reverse();
    }
    let total = entries.len() as u64;
    let entries = entries
        .into_iter()
        .skip(usize::try_from(filter.offset).unwrap_or(usize::MAX))
        .take(filter.page_size() as usize)
        .collect();
    LogPage {
        total,
        last_sequence,
        entries,
    }
}

/// A page query as SQL that SQLite and PostgreSQL both run: the `WHERE` clause (its
/// parameters numbered from `$1`, written `?N` for SQLite), its parameters, and the order,
/// limit and offset. Each store binds the parameters its own way.
#[derive(Debug)]
pub(crate) struct PageSql {
    /// `instance_id = $1 AND …`.
    pub where_clause: String,
    /// The parameters, in order: text or integers.
    pub params: Vec<SqlValue>,
    /// `ORDER BY sequence ASC LIMIT n OFFSET m`.
    pub tail: String,
    /// How many events match, when it is known without counting (a filter on the sequence
    /// alone, over a gap-free log).
    pub total: Option<u64>,
}

/// A parameter of a [`PageSql`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SqlValue {
    Text(String),
    Integer(i64),
}

/// The select list of a page: a stored row, then (for a `changed` event) the payload of its
/// type's event before it, found through the `(instance_id, generator_type, sequence)`
/// index.
pub(crate) const PAGE_COLUMNS: &str = "e.instance_id, e.sequence, e.event_type,      e.generator_type, e.payload, e.created_at, e.creator, e.creator_id, e.hash,      CASE WHEN e.event_type = 'instance.secret.generator.changed' THEN      (SELECT p.payload FROM events p WHERE p.instance_id = e.instance_id      AND p.generator_type = e.generator_type AND p.sequence < e.sequence      ORDER BY p.sequence DESC LIMIT 1) END";

impl PageSql {
    /// The query of `filter` over `instance`'s log, whose last sequence is `last`;
    /// `placeholder` writes the n-th parameter (`$n` or `?n`).
    pub(crate) fn of(
        instance: &InstanceId,
        filter: &EventFilter,
        last: u64,
        placeholder: fn(usize) -> String,
    ) -> PageSql {
        let mut params = vec![SqlValue::Text(instance.as_str().to_owned())];
        let mut clauses = vec![format!("e.instance_id = {}", placeholder(1))];
        // `clause` with `#` for its one parameter, `value`.
        let mut add = |clause: &str, value: SqlValue| {
            params.push(value);
            clauses.push(clause.replace('#', &placeholder(params.len())));
        };
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut offset = filter.offset;
        let mut total = None;
        let from = filter.from_sequence.max(1);
        let (mut lowest, mut highest) = (from, last);
        if filter.by_sequence_only() {
            // Gap-free: the matches are the sequences from..=last, and an offset is a
            // place among them, found without reading the rows it skips.
            total = Some((last + 1).saturating_sub(from));
            if filter.ascending {
                lowest = from.saturating_add(offset);
            } else {
                highest = last.saturating_sub(offset);
            }
            offset = 0;
        }
        // Bounded by the last sequence read: the count and the page see the same log.
        add("e.sequence >= #", SqlValue::Integer(as_i64(lowest)));
        add("e.sequence <= #", SqlValue::Integer(as_i64(highest)));
        if let Some(t) = filter.generator_type {
            add(
                "e.generator_type = #",
                SqlValue::Text(t.full_name().to_owned()),
            );
        }
        if let Some(creator) = &filter.creator {
            add("e.creator = #", SqlValue::Text(creator.clone()));
        }
        if let Some(id) = &filter.creator_id {
            add("e.creator_id = #", SqlValue::Text(id.clone()));
        }
        if let Some(since) = filter.since {
            add(
                "e.created_at >= #",
                SqlValue::Integer(to_micros_rounded_up(since)),
            );
        }
        if let Some(until) = filter.until {
            add(
                "e.created_at < #",
                SqlValue::Integer(to_micros_rounded_up(until)),
            );
        }
        if let Some(types) = &filter.event_types {
            if types.is_empty() {
                clauses.push("1 = 0".to_owned());
            } else {
                let mut names = Vec::new();
                for t in types {
                    params.push(SqlValue::Text(t.as_str().to_owned()));
                    names.push(placeholder(params.len()));
                }
                clauses.push(format!("e.event_type IN ({})", names.join(", ")));
            }
        }
        let limit = filter.page_size();
        let order = if filter.ascending { "ASC" } else { "DESC" };
        PageSql {
            where_clause: clauses.join(" AND "),
            params,
            tail: format!(
                "ORDER BY e.sequence {order} LIMIT {limit} OFFSET {}",
                as_i64(offset)
            ),
            total,
        }
    }

    /// The query of the page.
    pub(crate) fn select(&self) -> String {
        format!(
            "SELECT {PAGE_COLUMNS} FROM events e WHERE {} {}",
            self.where_clause, self.tail
        )
    }

    /// The query that counts the matches, when they must be counted.
    pub(crate) fn count(&self) -> Option<String> {
        self.total
            .is_none()
            .then(|| format!("SELECT COUNT(*) FROM events e WHERE {}", self.where_clause))
    }
}

/// Microseconds since the Unix epoch, rounded up: a stored time (whole microseconds) is at
/// or after `time` exactly when it is at or after this.
fn to_micros_rounded_up(time: SystemTime) -> i64 {
    let micros = to_micros(time);
    let exact = from_micros(micros);
    if exact < time {
        micros.saturating_add(1)
    } else {
        micros
    }
}

/// The entries of a page's rows: each row (its previous payload beside it) decoded.
pub(crate) fn page_entries(
    rows: Vec<(StoredEvent, Option<String>)>,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<Vec<LogEntry>, StoreError> {
    rows.into_iter()
        .map(|(row, previous)| {
            let generator_type = row.generator_type.clone();
            let sequence = row.sequence;
            let event = row.decode(bad)?;
            let previous = match previous {
                None => None,
                Some(payload) => {
                    let t: GeneratorType = generator_type
                        .parse()
                        .map_err(|e| bad(format!("event {sequence} has a bad type: {e}")))?;
                    let payload: Payload = serde_json::from_str(&payload).map_err(|e| {
                        bad(format!(
                            "the event before event {sequence} has an unreadable \
                             configuration: {e}"
                        ))
                    })?;
                    Some(payload.into_draft(t))
                }
            };
            Ok(LogEntry { event, previous })
        })
        .collect()
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

/// Where configuration events and token hashes are kept.
///
/// Every write is durable when it returns. Implementations are shared between threads.
pub trait Store: Send + Sync + fmt::Debug {
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

    /// Stores a token's record and appends its `token.added` event, made by `creator` (the
    /// event's creator id is the token's [`TokenRecord::created_by`]), to the default
    /// instance's log, in one transaction; returns the event. Refused if its id or hash is
    /// already stored, or when the store holds no instance yet; [`StoreErrorKind::NameTaken`]
    /// when a live token (not expired) already has its name.
    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError>;

    /// [`Store::add_token`], only if the store holds no token yet (the first admin token of
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

    /// How many tokens are stored.
    fn token_count(&self) -> Result<u64, StoreError>;

    /// Every stored token, for the table of known tokens that authentication reads. It
    /// must not wait behind a write: it is called on a request's path when a token is not
    /// in that table yet.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Whether the store answers and is still the store it was opened as.
    fn check(&self) -> Result<(), StoreError>;

    /// Whether this handle is the only process that appends to the log (the embedded
    /// store's writer): then the live configurations are the log's last ones, and an update
    /// equal to one is known to change nothing without asking the store.
    fn sole_writer(&self) -> bool {
        false
    }

    /// The instances that have events.
    fn instances(&self) -> Result<Vec<InstanceId>, StoreError>;

    /// Tells `watcher` whenever the log or the tokens may have been changed by another
    /// process, and when the store becomes reachable or unreachable. A store that only this
    /// process writes (the embedded one) never calls it. `watcher` must return at once.
    fn watch(&self, watcher: Watcher) {
        let _ = watcher;
    }

    /// Called once a new store holds its instance and that instance's first events (by
    /// [`crate::ControlPlane::open`]): a store being made becomes visible as a store only
    /// now, whole. A no-op for a store that already existed.
    fn finish_creation(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What a store tells the process that follows it (see [`Store::watch`]).
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
    /// A live token already has the name a new token was to have.
    NameTaken,
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
            length: config.length().get() as i64,
            expiry: crate::protojson::duration_text(config.expiry().duration()),
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
            length: crate::config::CodeLength::new(self.length),
            expiry: crate::protojson::expiry(&self.expiry),
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
    fn events_that_change_nothing_are_left_out_of_an_append() {
        let instance = InstanceId::new("1").unwrap();
        let event = |event_type, length| {
            let mut draft = GeneratorConfig::default_for(GeneratorType::OtpSms).to_draft();
            draft.length = crate::CodeLength::new(length);
            NewEvent {
                event_type,
                config: GeneratorConfig::new(&draft).unwrap(),
                created_at: SystemTime::UNIX_EPOCH,
                creator: "test".to_owned(),
                creator_id: None,
            }
        };
        let payload = |length| {
            StoredEvent::encode(&instance, 1, &GENESIS, &event(EventType::Changed, length)).payload
        };
        let none = std::collections::HashMap::from([(GeneratorType::OtpSms, None)]);
        let eight = std::collections::HashMap::from([(GeneratorType::OtpSms, Some(payload(8)))]);
        let last = (4, [7; 32]);
        // An `added` event only for a type without one.
        assert_eq!(
            rows_to_append(&instance, last, &none, &[event(EventType::Added, 8)]).len(),
            1
        );
        assert!(rows_to_append(&instance, last, &eight, &[event(EventType::Added, 8)]).is_empty());
        // A `changed` event only when it differs from the last configuration, in the batch too.
        assert!(
            rows_to_append(&instance, last, &eight, &[event(EventType::Changed, 8)]).is_empty()
        );
        let rows = rows_to_append(
            &instance,
            last,
            &eight,
            &[
                event(EventType::Changed, 9),
                event(EventType::Changed, 9),
                event(EventType::Changed, 8),
            ],
        );
        let sequences: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, [5, 6]);
        // Numbered after `last` and chained from its hash.
        assert_eq!(rows[0].hash, chain_hash(&[7; 32], &rows[0].as_event_row()));
        assert_eq!(
            rows[1].hash,
            chain_hash(&rows[0].hash, &rows[1].as_event_row())
        );
        verify_chain(&rows, last, &|why| {
            StoreError::new(StoreErrorKind::Corrupt, why)
        })
        .unwrap();
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

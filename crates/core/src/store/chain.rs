//! The log as stored: an event's row, its hash chained to the one before it, and the
//! checks every read makes of a run of rows. Both stores write and read these rows alike.

use std::time::SystemTime;

use super::{
    Author, Change, Event, EventType, NewEvent, StoreError, TokenFacts, UnlockFacts, from_micros,
    to_micros,
};
use secretgen_engine::config::{ConfigDraft, GeneratorConfig};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

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
        let payload = Payload::of(&event.config).to_json();
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
        StoredEvent::encode_fact(
            instance,
            (sequence, previous),
            event_type,
            facts.to_json(),
            created_at,
            creator,
        )
    }

    /// The row of an event that is not a configuration (a token's, an unlock's), with its
    /// facts' JSON as `payload`, numbered after `(sequence - 1, previous)`. Its generator type
    /// is empty: the log's column names only configurations' types.
    pub(crate) fn encode_fact(
        instance: &InstanceId,
        (sequence, previous): (i64, &[u8; 32]),
        event_type: EventType,
        payload: String,
        created_at: SystemTime,
        creator: &Author,
    ) -> StoredEvent {
        let mut row = StoredEvent {
            instance_id: instance.as_str().to_owned(),
            sequence,
            event_type: event_type.as_str().to_owned(),
            generator_type: String::new(),
            payload,
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
        if !event_type.is_config() && !self.generator_type.is_empty() {
            return Err(bad(format!(
                "{at} is a {event_type} event with a generator type"
            )));
        }
        let change = if event_type.is_token() {
            Change::Token(
                TokenFacts::from_json(&self.payload)
                    .map_err(|e| bad(format!("{at} has unreadable token facts: {e}")))?,
            )
        } else if event_type == EventType::SubjectUnlocked {
            Change::Unlock(
                UnlockFacts::from_json(&self.payload)
                    .map_err(|e| bad(format!("{at} has unreadable unlock facts: {e}")))?,
            )
        } else {
            let generator_type: GeneratorType = self
                .generator_type
                .parse()
                .map_err(|e| bad(format!("{at} has a bad generator type: {e}")))?;
            let payload = Payload::from_json(&self.payload)
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
            // Token events and unlocks are written with the change they record, never here.
            EventType::TokenAdded | EventType::TokenRemoved | EventType::SubjectUnlocked => false,
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

/// Lower-case hexadecimal: two digits a byte, from a table (every issue and verification
/// writes several MACs and ids this way, and `format!` costs a formatter call a byte).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
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

/// A configuration as the log stores it: the API's field names, without the type (a column
/// of its own). `excludeAmbiguous` and `requireEachClass` are false in payloads written
/// before they existed.
#[derive(Debug)]
pub(crate) struct Payload {
    length: i64,
    expiry: String,
    include_lower_letters: bool,
    include_upper_letters: bool,
    include_digits: bool,
    include_symbols: bool,
    exclude_ambiguous: bool,
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

    /// The payload's JSON text.
    pub(crate) fn to_json(&self) -> String {
        super::json::Writer::new()
            .int("length", self.length)
            .str("expiry", &self.expiry)
            .bool("includeLowerLetters", self.include_lower_letters)
            .bool("includeUpperLetters", self.include_upper_letters)
            .bool("includeDigits", self.include_digits)
            .bool("includeSymbols", self.include_symbols)
            .bool("excludeAmbiguous", self.exclude_ambiguous)
            .bool("requireEachClass", self.require_each_class)
            .finish()
    }

    /// The payload in JSON `text`.
    pub(crate) fn from_json(text: &str) -> Result<Payload, String> {
        let f = super::json::object(text)?;
        Ok(Payload {
            length: f.int("length")?,
            expiry: f.str("expiry")?.to_owned(),
            include_lower_letters: f.bool("includeLowerLetters")?,
            include_upper_letters: f.bool("includeUpperLetters")?,
            include_digits: f.bool("includeDigits")?,
            include_symbols: f.bool("includeSymbols")?,
            exclude_ambiguous: f.bool_or_false("excludeAmbiguous")?,
            require_each_class: f.bool_or_false("requireEachClass")?,
        })
    }

    pub(crate) fn into_draft(self, generator_type: GeneratorType) -> ConfigDraft {
        ConfigDraft {
            length: secretgen_engine::config::CodeLength::new(self.length),
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
    use crate::store::StoreErrorKind;

    #[test]
    fn hex_writes_two_lower_case_digits_a_byte_and_unhex_reads_them_back() {
        for b in 0..=255u8 {
            assert_eq!(hex(&[b]), format!("{b:02x}"));
        }
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let text = hex(&bytes);
        assert_eq!(
            text,
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        assert_eq!(unhex(&text), Some(bytes));
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn events_that_change_nothing_are_left_out_of_an_append() {
        let instance = InstanceId::new("1").unwrap();
        let event = |event_type, length| {
            let mut draft = GeneratorConfig::default_for(GeneratorType::OtpSms).to_draft();
            draft.length = secretgen_engine::config::CodeLength::new(length);
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
            let json = Payload::of(&config).to_json();
            let back = Payload::from_json(&json).unwrap();
            assert_eq!(GeneratorConfig::new(&back.into_draft(t)).unwrap(), config);
        }
    }

    #[test]
    fn payloads_are_the_bytes_serde_json_wrote_and_older_payloads_read() {
        let config = GeneratorConfig::default_for(GeneratorType::AppSecret);
        let d = config.to_draft();
        // What serde_json's derived writer gave for this configuration, field by field.
        let theirs = serde_json::json!({
            "length": config.length().get(),
            "expiry": crate::protojson::duration_text(config.expiry().duration()),
            "includeLowerLetters": d.include_lower_letters,
            "includeUpperLetters": d.include_upper_letters,
            "includeDigits": d.include_digits,
            "includeSymbols": d.include_symbols,
            "excludeAmbiguous": d.exclude_ambiguous,
            "requireEachClass": d.require_each_class,
        })
        .to_string();
        assert_eq!(Payload::of(&config).to_json(), theirs);
        // Before excludeAmbiguous and requireEachClass, with spaces and a field in another place.
        let old = r#"{ "expiry": "3600s", "length": 9, "includeLowerLetters": true,
            "includeUpperLetters": false, "includeDigits": true, "includeSymbols": false }"#;
        let draft = Payload::from_json(old)
            .unwrap()
            .into_draft(GeneratorType::OtpSms);
        assert_eq!(draft.length, secretgen_engine::config::CodeLength::new(9));
        assert!(!draft.exclude_ambiguous && !draft.require_each_class);
        assert!(Payload::from_json(r#"{"length":9}"#).is_err());

        let facts = TokenFacts {
            token_id: "t1".to_owned(),
            name: "ops \"a\"\n".to_owned(),
            permissions: vec!["iam.read".to_owned(), "codes.generate".to_owned()],
            expires_at: Some(1_700_000_000_000_000),
            created_by: None,
        };
        let theirs = serde_json::json!({
            "tokenId": "t1", "name": "ops \"a\"\n",
            "permissions": ["iam.read", "codes.generate"], "expiresAt": 1_700_000_000_000_000i64,
        })
        .to_string();
        assert_eq!(facts.to_json(), theirs);
        assert_eq!(TokenFacts::from_json(&theirs).unwrap(), facts);
        let by = TokenFacts {
            expires_at: None,
            created_by: Some("t0".to_owned()),
            ..facts
        };
        assert_eq!(
            by.to_json(),
            r#"{"tokenId":"t1","name":"ops \"a\"\n","permissions":["iam.read","codes.generate"],"expiresAt":null,"createdBy":"t0"}"#
        );
        assert_eq!(TokenFacts::from_json(&by.to_json()).unwrap(), by);
    }
}

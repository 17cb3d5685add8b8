//! Pages of a log (the audit search): which events a filter admits, the reference answer
//! read off a whole log, and the one indexed query both stores run for it.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{Event, EventType, Payload, StoreError, StoredEvent, from_micros, to_micros};
use secretgen_engine::config::ConfigDraft;
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// The most events one page of the log holds: a larger limit is capped to it.
pub const MAX_PAGE: u64 = 1000;

/// How many matches past its offset a filtered search counts at most (SPEC section 13: a
/// search costs what it returns, not what the log holds). With more, [`LogPage::total`] is
/// this many past the offset and [`LogPage::total_is_lower_bound`] says there are more.
pub const COUNT_AHEAD: u64 = 10_000;

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

    /// The most matches a search by this filter counts: `None` when they are known without
    /// counting (a filter on the sequence alone), else [`COUNT_AHEAD`] past the offset.
    pub fn count_cap(&self) -> Option<u64> {
        (!self.by_sequence_only()).then(|| self.offset.saturating_add(COUNT_AHEAD))
    }

    /// The total a page reports for `matches` matching events: the matches, or the count's
    /// cap and `true` (a lower bound) when there are more than it.
    pub fn total_of(&self, matches: u64) -> (u64, bool) {
        match self.count_cap() {
            Some(cap) if matches > cap => (cap, true),
            _ => (matches, false),
        }
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
    /// How many events match the filters, before paging; at most [`COUNT_AHEAD`] past the
    /// offset (see `total_is_lower_bound`).
    pub total: u64,
    /// Whether more events match than `total`: the count stopped at its cap.
    pub total_is_lower_bound: bool,
    /// The log's last sequence when it was read.
    pub last_sequence: u64,
    /// The page.
    pub entries: Vec<LogEntry>,
}

/// The page `filter` asks for out of a whole log (`events`, in order): what
/// [`EventLog::events_page`] must answer.
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
    let (total, total_is_lower_bound) = filter.total_of(entries.len() as u64);
    let entries = entries
        .into_iter()
        .skip(usize::try_from(filter.offset).unwrap_or(usize::MAX))
        .take(filter.page_size() as usize)
        .collect();
    LogPage {
        total,
        total_is_lower_bound,
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
    /// The most matches [`PageSql::count`] counts: the filter's [`EventFilter::count_cap`].
    count_cap: u64,
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
            count_cap: filter.count_cap().unwrap_or(0),
        }
    }

    /// The query of the page.
    pub(crate) fn select(&self) -> String {
        format!(
            "SELECT {PAGE_COLUMNS} FROM events e WHERE {} {}",
            self.where_clause, self.tail
        )
    }

    /// The query that counts the matches, when they must be counted: one past the cap at
    /// most, so that it reads no more index entries than the cap (hand its answer to
    /// [`EventFilter::total_of`]).
    pub(crate) fn count(&self) -> Option<String> {
        self.total.is_none().then(|| {
            format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events e WHERE {} LIMIT {}) AS matches",
                self.where_clause,
                self.count_cap.saturating_add(1).min(i64::MAX as u64)
            )
        })
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

/// What a store reads for a page: the total (and whether it is a lower bound), the log's last
/// sequence, and the rows, each with its previous payload.
pub(crate) type PageRows = ((u64, bool), u64, Vec<(StoredEvent, Option<String>)>);

/// The page of a query's answer: how many events match (and whether that is a lower bound),
/// the log's last sequence, and the rows, each (its previous payload beside it) decoded.
pub(crate) fn page_of(
    ((total, total_is_lower_bound), last_sequence, rows): PageRows,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<LogPage, StoreError> {
    let entries = rows
        .into_iter()
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
                    let payload = Payload::from_json(&payload).map_err(|e| {
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
        .collect::<Result<_, StoreError>>()?;
    Ok(LogPage {
        total,
        total_is_lower_bound,
        last_sequence,
        entries,
    })
}

//! The audit log (SPEC section 10): the event log, read by admins. Every configuration change
//! and token event, oldest first unless asked otherwise, each with the configuration it wrote
//! and, for a change, the one it replaced; filtered and paged.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Error, Grant, Operation, Service};
use crate::config::ConfigDraft;
use crate::generator_type::GeneratorType;
use crate::store::{Event, EventType};
use crate::token::Permission;

/// Read the event log.
#[derive(Debug)]
pub enum ReadEvents {}

impl Operation for ReadEvents {
    const PERMISSION: Permission = Permission::IamRead;
    const RATE_LIMITED: bool = false;
}

/// Which events, and which page of them. Every filter is optional; all given must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events about this generator type (token events are about none).
    pub generator_type: Option<GeneratorType>,
    /// Only events of these types.
    pub event_types: Option<Vec<EventType>>,
    /// Only events made by the token of this name (`system` for the defaults).
    pub creator: Option<String>,
    /// Only events from this sequence on.
    pub from_sequence: u64,
    /// Only events made at or after this time.
    pub since: Option<SystemTime>,
    /// Only events made before this time.
    pub until: Option<SystemTime>,
    /// Events to skip, after filtering.
    pub offset: u64,
    /// Most events to return; 0 for all.
    pub limit: u64,
    /// Oldest first (the default); `false` for newest first.
    pub ascending: bool,
}

impl Default for EventQuery {
    fn default() -> EventQuery {
        EventQuery {
            generator_type: None,
            event_types: None,
            creator: None,
            from_sequence: 0,
            since: None,
            until: None,
            offset: 0,
            limit: 0,
            ascending: true,
        }
    }
}

/// An event as the audit log shows it.
#[derive(Debug)]
pub struct AuditEntry {
    /// The event.
    pub event: Event,
    /// For a configuration change: the configuration it replaced.
    pub previous: Option<ConfigDraft>,
}

/// A page of the audit log.
#[derive(Debug)]
pub struct EventPage {
    /// How many events matched, before paging.
    pub total: u64,
    /// The last sequence of the log when it was read.
    pub processed_sequence: u64,
    /// The page.
    pub entries: Vec<AuditEntry>,
}

impl EventQuery {
    fn admits(&self, event: &Event) -> bool {
        event.sequence >= self.from_sequence
            && self
                .generator_type
                .is_none_or(|t| event.generator_type() == Some(t))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
            && self.creator.as_ref().is_none_or(|c| &event.creator == c)
            && self.since.is_none_or(|since| event.created_at >= since)
            && self.until.is_none_or(|until| event.created_at < until)
    }
}

impl Service {
    /// The events of the log that `query` asks for, paged, each configuration change with
    /// the configuration it replaced. Read from the store (on a blocking thread): the log is
    /// the source of truth, whoever wrote it.
    pub async fn search_events(
        &self,
        _: &Grant<ReadEvents>,
        query: EventQuery,
    ) -> Result<EventPage, Error> {
        let control = Arc::clone(&self.control);
        let events =
            tokio::task::spawn_blocking(move || control.store().events(control.instance().id()))
                .await
                .map_err(|_| Error::Internal("the log read was interrupted"))?
                .map_err(|e| Error::store(&e, "the log cannot be read", "the log is damaged"))?;
        let processed_sequence = events.last().map_or(0, |e| e.sequence);
        let mut latest: std::collections::HashMap<GeneratorType, ConfigDraft> =
            std::collections::HashMap::new();
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
            if query.admits(&event) {
                entries.push(AuditEntry { event, previous });
            }
        }
        if !query.ascending {
            entries.reverse();
        }
        let total = entries.len() as u64;
        let limit = match query.limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let entries: Vec<AuditEntry> = entries
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(limit)
            .collect();
        self.metrics.events_read(entries.len());
        Ok(EventPage {
            total,
            processed_sequence,
            entries,
        })
    }
}

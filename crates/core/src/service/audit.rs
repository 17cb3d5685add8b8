//! The audit log (SPEC section 10): the event log, read by admins. Every configuration change
//! and token event, oldest first unless asked otherwise, each with the configuration it wrote
//! and, for a change, the one it replaced; filtered and paged in the store.
//!
//! A search costs what it returns, not what the log holds (SPEC section 13): the store
//! answers it with one indexed query of at most [`MAX_PAGE`] events, never by reading the
//! log. A client that reads the whole log pages through it, best by `fromSequence` (the
//! sequence after the last one it has).

use std::sync::Arc;
use std::time::SystemTime;

use super::{Error, Grant, Operation, Service};
use crate::token::Permission;

use crate::store::LogEntry;
pub use crate::store::{
    COUNT_AHEAD, Change, EventFilter as EventQuery, EventType, MAX_PAGE, TokenFacts, UnlockFacts,
};
use secretgen_engine::config::ConfigDraft;

/// An event of the log as the audit search shows it: what it records, when and by whom, and
/// for a `changed` event the configuration it replaced. The row's instance and chain hash
/// stay in the core.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Its place in the log: 1, 2, 3, … without gaps.
    pub sequence: u64,
    /// What kind of event.
    pub event_type: EventType,
    /// What it records: a configuration or a token's public facts.
    pub change: Change,
    /// When the change was made.
    pub created_at: SystemTime,
    /// Who made it.
    pub creator: String,
    /// The id of the token that made it; `None` for the server itself and the command line.
    pub creator_id: Option<String>,
    /// For a `changed` event: the configuration its type had before it.
    pub previous: Option<ConfigDraft>,
}

impl From<LogEntry> for AuditEntry {
    fn from(entry: LogEntry) -> AuditEntry {
        let e = entry.event;
        AuditEntry {
            sequence: e.sequence,
            event_type: e.event_type,
            change: e.change,
            created_at: e.created_at,
            creator: e.creator,
            creator_id: e.creator_id,
            previous: entry.previous,
        }
    }
}

/// Read the event log.
#[derive(Debug)]
pub enum ReadEvents {}

impl Operation for ReadEvents {
    const PERMISSION: Permission = Permission::IamRead;
    const RATE_LIMITED: bool = false;
}

/// A page of the audit log.
#[derive(Debug)]
pub struct EventPage {
    /// How many events matched, before paging: a filtered search counts at most
    /// [`COUNT_AHEAD`] past its offset (see `total_is_lower_bound`).
    pub total: u64,
    /// Whether more events matched than `total` (the count stopped at its cap).
    pub total_is_lower_bound: bool,
    /// The last sequence of the log when it was read.
    pub processed_sequence: u64,
    /// The page: at most [`MAX_PAGE`] events.
    pub entries: Vec<AuditEntry>,
}

/// How many searches of the log are read and rendered at once: half the cores (at least one),
/// so that any number of readers of the log leave the other half to generation.
pub fn concurrent_reads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

impl Service {
    /// The events of the log that `query` asks for, one page of at most [`MAX_PAGE`] (a
    /// larger or no limit is capped to it), each configuration change with the configuration
    /// it replaced. Read from the store (on a background thread): the log is the source of
    /// truth, whoever wrote it.
    pub async fn search_events(
        &self,
        grant: &Grant<ReadEvents>,
        query: EventQuery,
    ) -> Result<EventPage, Error> {
        self.search_events_rendered(grant, query, |page| page).await
    }

    /// [`Service::search_events`], with the page handed to `render` (a transport's
    /// encoding) on the same thread, one of the service's background threads (see
    /// [`super::background`]): reading and rendering a page of up to a thousand events take
    /// no async worker's time and give way to generation, and at most [`concurrent_reads`]
    /// run at once; the others wait their turn without holding a thread.
    pub async fn search_events_rendered<T: Send + 'static>(
        &self,
        _: &Grant<ReadEvents>,
        query: EventQuery,
        render: impl FnOnce(EventPage) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _turn = self
            .audit_reads
            .acquire()
            .await
            .map_err(|_| Error::Internal("the server is stopping"))?;
        let control = Arc::clone(&self.control);
        let metrics = Arc::clone(&self.metrics);
        self.background
            .run(move || {
                let page = control
                    .store()
                    .events_page(control.instance().id(), &query)
                    .map_err(|e| Error::store(e, "the log cannot be read", "the log is damaged"))?;
                metrics.events_read(page.entries.len());
                Ok(render(EventPage {
                    total: page.total,
                    total_is_lower_bound: page.total_is_lower_bound,
                    processed_sequence: page.last_sequence,
                    entries: page.entries.into_iter().map(AuditEntry::from).collect(),
                }))
            })
            .await
            .ok_or(Error::Internal("the log read was interrupted"))?
    }
}

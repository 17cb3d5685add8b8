//! The audit log (SPEC section 10): the event log, read by admins. Every configuration change
//! and token event, oldest first unless asked otherwise, each with the configuration it wrote
//! and, for a change, the one it replaced; filtered and paged in the store.
//!
//! A search costs what it returns, not what the log holds (SPEC section 13): the store
//! answers it with one indexed query of at most [`MAX_PAGE`] events, never by reading the
//! log. A client that reads the whole log pages through it, best by `fromSequence` (the
//! sequence after the last one it has).

use std::sync::Arc;

use super::{Error, Grant, Operation, Service};
use crate::token::Permission;

pub use crate::store::{EventFilter as EventQuery, LogEntry as AuditEntry, MAX_PAGE};

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
    /// How many events matched, before paging.
    pub total: u64,
    /// The last sequence of the log when it was read.
    pub processed_sequence: u64,
    /// The page: at most [`MAX_PAGE`] events.
    pub entries: Vec<AuditEntry>,
}

impl Service {
    /// The events of the log that `query` asks for, one page of at most [`MAX_PAGE`] (a
    /// larger or no limit is capped to it), each configuration change with the configuration
    /// it replaced. Read from the store (on a blocking thread): the log is the source of
    /// truth, whoever wrote it.
    pub async fn search_events(
        &self,
        _: &Grant<ReadEvents>,
        query: EventQuery,
    ) -> Result<EventPage, Error> {
        let control = Arc::clone(&self.control);
        let page = tokio::task::spawn_blocking(move || {
            control.store().events_page(control.instance().id(), &query)
        })
        .await
        .map_err(|_| Error::Internal("the log read was interrupted"))?
        .map_err(|e| Error::store(&e, "the log cannot be read", "the log is damaged"))?;
        self.metrics.events_read(page.entries.len());
        Ok(EventPage {
            total: page.total,
            processed_sequence: page.last_sequence,
            entries: page.entries,
        })
    }
}

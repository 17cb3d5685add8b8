//! The transaction logic of every store, written once: appending to a log (its sequence,
//! its hash chain, leaving out what changes nothing) and changing tokens with their events
//! (a new token, the first token, a revocation with the tokens it made).
//!
//! A store implements [`Tx`], one write transaction on its database, with its own SQL and
//! driver, and runs these functions inside one; it begins and commits the transaction
//! itself, and holds whatever lock makes it its database's one writer of a log (SQLite:
//! `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock per instance, taken by
//! [`Tx::lock_log`]).
//!
//! Both flows read in the same order: the instance, then its log's lock, then the change,
//! then the log's last event, so that what is numbered after it is the whole change.
//!
//! The steps are `async` because PostgreSQL's driver is; SQLite's never wait, and
//! [`ready`] runs them on the caller's thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use super::codes::{self, CodesTx, UnlockRequest};
use super::{
    Author, EventType, GENESIS, NewEvent, StoreError, StoreErrorKind, StoredEvent, TokenFacts,
    TokenRecord, rows_to_append, truncate_to_micros, unhex,
};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// What a log was changed by, for the stores that tell other processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Changed {
    /// Configuration events were appended.
    Events,
    /// Tokens (and their events) were changed.
    Tokens,
}

/// One write transaction on a store's database: the reads and writes the flows are made
/// of. Each step fails with the store's own [`StoreError`], its driver's error as its
/// source. The codes flow's steps ([`CodesTx`]) are in the same transaction.
pub(crate) trait Tx: CodesTx {
    /// The default instance's id as stored, if one is.
    async fn default_instance(&mut self) -> Result<Option<String>, StoreError>;

    /// Makes this transaction the one writer of `instance`'s log until it ends.
    async fn lock_log(&mut self, instance: &InstanceId) -> Result<(), StoreError>;

    /// The sequence and the stored hash (hex) of the last event of `instance`, if any.
    async fn last_event(
        &mut self,
        instance: &InstanceId,
    ) -> Result<Option<(i64, String)>, StoreError>;

    /// The payload of the last event about `generator_type` in `instance`'s log, if any.
    async fn latest_payload(
        &mut self,
        instance: &InstanceId,
        generator_type: GeneratorType,
    ) -> Result<Option<String>, StoreError>;

    /// Inserts event rows as they are.
    async fn insert_events(&mut self, rows: &[StoredEvent]) -> Result<(), StoreError>;

    /// Whether a live token other than `token` (not expired at `token`'s creation) has
    /// `token`'s name.
    async fn name_taken(&mut self, token: &TokenRecord) -> Result<bool, StoreError>;

    /// Whether any token is stored.
    async fn holds_tokens(&mut self) -> Result<bool, StoreError>;

    /// Inserts `token`; [`StoreErrorKind::Refused`] when its id or hash is stored already.
    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;

    /// Deletes the token `id`, and returns it; `None` when there is none.
    async fn delete_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Deletes the tokens `parent` created, and returns them, in any order.
    async fn delete_tokens_created_by(
        &mut self,
        parent: &str,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    /// Tells other processes, once the transaction commits, what it changed.
    async fn notify(&mut self, changed: Changed) -> Result<(), StoreError>;

    /// The store's refusal of damaged contents, worded by `why`.
    fn corrupt(&self, why: String) -> StoreError;
}

/// A change of the tokens.
#[derive(Clone, Debug)]
pub(crate) enum TokenChange {
    /// Stores a token, unless a live token has its name.
    Add(TokenRecord),
    /// Stores a token only if there is none at all.
    AddFirst(TokenRecord),
    /// Removes the token of this id, and the tokens it created, recursively.
    Remove(String),
}

/// A write, as both stores run it: in one transaction of its own.
#[derive(Clone, Debug)]
pub(crate) enum Write {
    /// Configuration events for an instance's log (see [`append`]).
    Append(InstanceId, Vec<NewEvent>),
    /// A change of the tokens, made by an author (see [`change_tokens`]).
    Tokens(TokenChange, Author),
    /// A subject's lock lifted by an author, recorded in the log (see [`unlock`]).
    Unlock(UnlockRequest, Author),
}

/// Runs `write` in `tx`; returns the rows it appended.
pub(crate) async fn run(tx: &mut impl Tx, write: &Write) -> Result<Vec<StoredEvent>, StoreError> {
    match write {
        Write::Append(instance, events) => append(tx, instance, events).await,
        Write::Tokens(change, author) => change_tokens(tx, change, author).await,
        Write::Unlock(request, author) => unlock(tx, request, author).await,
    }
}

/// Lifts the lock of `request`'s subject and records it in the log of its instance, made by
/// `author`; the row written, none when there was nothing to lift (and nothing was written).
async fn unlock(
    tx: &mut impl Tx,
    request: &UnlockRequest,
    author: &Author,
) -> Result<Vec<StoredEvent>, StoreError> {
    let instance = request.instance();
    tx.lock_log(instance).await?;
    let Some(facts) = codes::unlock(tx, request).await? else {
        return Ok(Vec::new());
    };
    let (last, previous) = last_event(tx, instance).await?;
    let row = StoredEvent::encode_fact(
        instance,
        (last + 1, &previous),
        EventType::SubjectUnlocked,
        facts.to_json(),
        truncate_to_micros(SystemTime::now()),
        author,
    );
    tx.insert_events(std::slice::from_ref(&row)).await?;
    tx.notify(Changed::Events).await?;
    Ok(vec![row])
}

/// Who adds `token`: `creator` by name, and the token that created it.
pub(crate) fn author_of(token: &TokenRecord, creator: &str) -> Author {
    Author {
        name: creator.to_owned(),
        token_id: token.created_by.clone(),
    }
}

/// Appends to the log of `instance` those of `events` that change something (see
/// [`rows_to_append`]), numbered after its last event; returns the rows written.
async fn append(
    tx: &mut impl Tx,
    instance: &InstanceId,
    events: &[NewEvent],
) -> Result<Vec<StoredEvent>, StoreError> {
    tx.lock_log(instance).await?;
    let last = last_event(tx, instance).await?;
    let mut latest = HashMap::new();
    for event in events {
        let generator_type = event.config.generator_type();
        if let Entry::Vacant(slot) = latest.entry(generator_type) {
            slot.insert(tx.latest_payload(instance, generator_type).await?);
        }
    }
    let rows = rows_to_append(instance, last, &latest, events);
    if !rows.is_empty() {
        tx.insert_events(&rows).await?;
        tx.notify(Changed::Events).await?;
    }
    Ok(rows)
}

/// Makes `change` to the tokens and appends its events, made by `creator`, to the default
/// instance's log; returns the rows written (none when the change changed nothing, and then
/// nothing was written). Refused when the store holds no instance yet.
async fn change_tokens(
    tx: &mut impl Tx,
    change: &TokenChange,
    creator: &Author,
) -> Result<Vec<StoredEvent>, StoreError> {
    let instance = tx.default_instance().await?.ok_or_else(|| {
        StoreError::new(
            StoreErrorKind::Refused,
            "the store holds no instance yet: start `secretgen serve` on it once",
        )
    })?;
    let instance = InstanceId::new(&instance)
        .map_err(|e| tx.corrupt(format!("its default instance id is invalid: {e}")))?;
    tx.lock_log(&instance).await?;
    let changes = match change {
        TokenChange::Add(token) | TokenChange::AddFirst(token) => {
            if matches!(change, TokenChange::AddFirst(_)) {
                if tx.holds_tokens().await? {
                    return Ok(Vec::new());
                }
            } else if tx.name_taken(token).await? {
                return Err(StoreError::new(
                    StoreErrorKind::NameTaken,
                    "a live token already has this name",
                ));
            }
            tx.insert_token(token).await?;
            vec![(
                EventType::TokenAdded,
                TokenFacts::of(token),
                token.created_at,
            )]
        }
        TokenChange::Remove(id) => {
            let at = truncate_to_micros(SystemTime::now());
            remove_with_descendants(tx, id)
                .await?
                .iter()
                .map(|record| (EventType::TokenRemoved, TokenFacts::of(record), at))
                .collect()
        }
    };
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let (mut last, mut previous) = last_event(tx, &instance).await?;
    let mut rows = Vec::with_capacity(changes.len());
    for (event_type, facts, at) in changes {
        let row = StoredEvent::encode_token(
            &instance,
            last + 1,
            &previous,
            event_type,
            &facts,
            at,
            creator,
        );
        (last, previous) = (row.sequence, row.hash);
        rows.push(row);
    }
    tx.insert_events(&rows).await?;
    tx.notify(Changed::Tokens).await?;
    Ok(rows)
}

/// Deletes the token `id`, then the tokens it created, theirs, and so on, breadth first
/// (each generation by creation time, then id); returns them in that order, none when there
/// is no token `id`.
async fn remove_with_descendants(
    tx: &mut impl Tx,
    id: &str,
) -> Result<Vec<TokenRecord>, StoreError> {
    let Some(record) = tx.delete_token(id).await? else {
        return Ok(Vec::new());
    };
    let mut removed = vec![record];
    let mut next = 0;
    while next < removed.len() {
        let parent = removed[next].id.clone();
        next += 1;
        let mut children = tx.delete_tokens_created_by(&parent).await?;
        children.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        removed.extend(children);
    }
    Ok(removed)
}

/// The sequence and hash of the last event of `instance`; `(0, GENESIS)` for none.
async fn last_event(
    tx: &mut impl Tx,
    instance: &InstanceId,
) -> Result<(i64, [u8; 32]), StoreError> {
    match tx.last_event(instance).await? {
        None => Ok((0, GENESIS)),
        Some((sequence, hash)) => match unhex(&hash) {
            Some(hash) => Ok((sequence, hash)),
            None => Err(tx.corrupt(format!(
                "event {sequence} of instance {instance} has no valid hash"
            ))),
        },
    }
}

/// The output of `future`, which must be ready at once (a flow over a [`Tx`] whose steps
/// never wait, SQLite's).
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("a transaction whose steps never wait waited"),
    }
}

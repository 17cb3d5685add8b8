//! Who is asking: bearer tokens mapped, by their SHA-256, to a [`Principal`].
//!
//! Every stored token is held in memory in one immutable table, swapped whole (arc-swap), so
//! a known token is found without a lock and without the store. A token the table does not
//! hold (one made beside the running server by `secretgen token create`, or a guess) sends
//! the caller to wait, asynchronously, for the table to be read again; reads of the store are
//! single-flight: one at a time, on a blocking thread, on the store's own read connection
//! (never the writer's), and every caller waiting for a read that began after it arrived is
//! answered by that one read. A flood of unknown tokens therefore costs one table read at a
//! time, whatever its size, and never holds an async worker or delays a request that carries
//! a known token.
//!
//! Tokens carry 256 bits and are looked up by their SHA-256: the time a lookup takes tells a
//! guesser nothing it could use (it depends on the hash of the guess, not on the stored
//! tokens' secrets), so no constant-time comparison is needed or made.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::error::Error;
use crate::store::{Store, StoreError, TokenRecord};
use crate::token::{self, Permission};

/// Who is asking: a stored token's public facts (never its secret or its hash), or the
/// operator at the machine's command line ([`Principal::command_line`]).
#[derive(Debug)]
pub struct Principal {
    /// The token's id (public); `None` for the command line.
    pub(super) id: Option<String>,
    /// The token's name, recorded as the creator of its changes.
    pub name: String,
    permissions: Vec<Permission>,
    /// When the token stops being accepted; `None` for never.
    pub expires_at: Option<SystemTime>,
    /// Set once the token is no longer in the table (revoked here or on another replica),
    /// for the calls it started that are still running.
    revoked: AtomicBool,
}

impl Principal {
    /// Whether the token is still accepted: neither revoked nor expired. One atomic load and
    /// a clock read, no lock and no store: a running call asks it as often as it likes (a
    /// stream, at every chunk).
    pub fn is_live(&self) -> bool {
        !self.revoked.load(Ordering::Acquire)
            && self.expires_at.is_none_or(|at| SystemTime::now() < at)
    }

    /// The command line's operator: every permission, no expiry, no token. Whoever can run
    /// the command line on the store's machine can open the store itself; the transports
    /// never make one.
    pub(super) fn command_line() -> Principal {
        Principal {
            id: None,
            name: token::COMMAND_LINE_CREATOR.to_owned(),
            permissions: Permission::ALL.to_vec(),
            expires_at: None,
            revoked: AtomicBool::new(false),
        }
    }

    /// The id of the token asking; `None` for the command line.
    pub fn token_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Whether the token carries `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// The permissions the token carries.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    fn of(record: TokenRecord) -> Principal {
        Principal {
            id: Some(record.id),
            name: record.name,
            permissions: record
                .permissions
                .iter()
                .filter_map(|p| Permission::from_name(p))
                .collect(),
            expires_at: record.expires_at,
            revoked: AtomicBool::new(false),
        }
    }
}

type Table = HashMap<[u8; 32], Arc<Principal>>;

/// The known tokens, and the single-flight reload of them.
#[derive(Debug)]
pub struct Tokens {
    store: Arc<dyn Store>,
    table: ArcSwap<Table>,
    /// Held by the one caller reading the table from the store; the others wait their turn.
    reload: tokio::sync::Mutex<()>,
    /// Reads of the store begun so far; a caller notes it when it arrives.
    begun: AtomicU64,
    /// The number (in `begun`'s count) of the last read that finished.
    finished: AtomicU64,
}

impl Tokens {
    /// The tokens of `store`, read now.
    pub fn load(store: Arc<dyn Store>) -> Result<Tokens, StoreError> {
        let table = read(store.as_ref())?;
        Ok(Tokens {
            store,
            table: ArcSwap::from_pointee(table),
            reload: tokio::sync::Mutex::new(()),
            begun: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        })
    }

    /// The principal of `presented`, a bearer token's text.
    ///
    /// A token the table does not hold waits for a read of the store that began after this
    /// call did (so a token stored before the call is found), then is refused if still
    /// unknown.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<Principal>, Error> {
        let hash = token::hash(presented);
        if let Some(principal) = self.table.load().get(&hash) {
            return live(principal);
        }
        let arrived = self.begun.load(Ordering::Acquire);
        let _turn = self.reload.lock().await;
        if self.finished.load(Ordering::Acquire) <= arrived {
            // No read began after this call arrived and finished: make one.
            self.read_in_turn().await?;
        }
        match self.table.load().get(&hash) {
            Some(principal) => live(principal),
            None => Err(Error::Unauthenticated("the token is not known")),
        }
    }

    /// Reads the table from the store on a blocking thread and swaps it in; the caller holds
    /// `reload`.
    async fn read_in_turn(&self) -> Result<(), Error> {
        let number = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let store = Arc::clone(&self.store);
        let table = tokio::task::spawn_blocking(move || read(store.as_ref()))
            .await
            .map_err(|_| Error::Internal("the token table read was interrupted"))?
            .map_err(|e| {
                Error::store(
                    e,
                    "the token store cannot be read",
                    "the token store is damaged",
                )
            })?;
        self.swap(table);
        self.finished.store(number, Ordering::Release);
        Ok(())
    }

    /// Puts `table` in place of the current one. A token in both keeps its principal (the
    /// calls it started hold that one); a principal that is not in `table` any more is marked
    /// revoked, which ends the calls its token started that are still running.
    fn swap(&self, mut table: Table) {
        let old = self.table.load_full();
        for (hash, principal) in table.iter_mut() {
            if let Some(kept) = old.get(hash)
                && kept.id == principal.id
            {
                *principal = Arc::clone(kept);
            }
        }
        for (hash, principal) in old.iter() {
            if table.get(hash).is_none_or(|p| !Arc::ptr_eq(p, principal)) {
                principal.revoked.store(true, Ordering::Release);
            }
        }
        self.table.store(Arc::new(table));
    }

    /// Reads the table again now: after a token was added here, so that it works when the
    /// call that added it answers.
    pub async fn reload_now(&self) -> Result<(), Error> {
        let _turn = self.reload.lock().await;
        self.read_in_turn().await
    }

    /// Forgets the tokens `ids` at once, without waiting for the store: after they were
    /// revoked here. In turn with the reads, so that no read begun before the revocation can
    /// bring them back; the calls they started end.
    pub async fn forget(&self, ids: &[String]) {
        let _turn = self.reload.lock().await;
        let kept: Table = self
            .table
            .load()
            .iter()
            .filter(|(_, p)| p.id.as_ref().is_none_or(|id| !ids.contains(id)))
            .map(|(hash, p)| (*hash, Arc::clone(p)))
            .collect();
        self.swap(kept);
    }

    /// Reads the table from the store again, now, on this (blocking) thread: for the
    /// follower, when another process may have changed the tokens. It takes its turn with
    /// the reads of unknown tokens, so a later read always replaces an earlier one.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let _turn = self.reload.blocking_lock();
        let number = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let table = read(self.store.as_ref())?;
        self.swap(table);
        self.finished.store(number, Ordering::Release);
        Ok(())
    }

    /// How many reads of the store were made since the table was first loaded.
    pub fn reloads(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }
}

/// `principal`, unless its token has expired.
fn live(principal: &Arc<Principal>) -> Result<Arc<Principal>, Error> {
    if principal.is_live() {
        Ok(Arc::clone(principal))
    } else {
        Err(Error::Unauthenticated("the token has expired"))
    }
}

fn read(store: &dyn Store) -> Result<Table, StoreError> {
    Ok(store
        .tokens()?
        .into_iter()
        .map(|record| (record.hash, Arc::new(Principal::of(record))))
        .collect())
}

/// The token of an `authorization: Bearer <token>` value (an HTTP header, gRPC metadata);
/// the scheme is matched without regard to case. 401 without one.
pub fn bearer(value: Option<&[u8]>) -> Result<&str, Error> {
    let value = value.ok_or(Error::Unauthenticated(
        "no token: send Authorization: Bearer <token>",
    ))?;
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.is_ascii())
        .ok_or(Error::Unauthenticated(
            "the Authorization header is not ASCII",
        ))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(Error::Unauthenticated("use Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Error::Unauthenticated("use Authorization: Bearer <token>"));
    }
    Ok(token)
}

//! The embedded store: one SQLite file in the data directory, in WAL mode with full
//! synchronous commits, held by one writing process at a time.
//!
//! How it keeps its promises (nothing acknowledged is lost; nothing it did not write is
//! served):
//! - A store is made whole or not at all: it is built in a scratch file (schema, instance,
//!   defaults), checkpointed and synced, and only then linked in as `secretgen.db`. A store
//!   is made only in a directory that holds no store file at all; a directory with a WAL, a
//!   shared-memory index or a lock file but no database is refused.
//! - Every commit of the log and the tokens is checkpointed into the database file before it
//!   is acknowledged, so a WAL that is damaged or lost after a crash holds none of them; a WAL
//!   that SQLite would drop committed frames from is refused before SQLite opens it ([`wal`]).
//!   Issued codes' commits, by the thousand a second, are acknowledged once synced in the WAL
//!   and checkpointed with the next of those or SQLite's automatic checkpoint (`codes.rs`).
//! - Every write checks, before and after its commit, that `secretgen.db` is still the file
//!   the store has open: a file deleted or replaced under a running server makes writes fail
//!   instead of vanishing at the next start.
//! - The writer locks the data directory itself (`flock`), which cannot be deleted from under
//!   it the way a lock file can.
//! - Events are chained by hash ([`chain_hash`]): an edited or damaged event is refused on
//!   every read.
//! - The directory is private (0700, and refused when others may read or write it, as
//!   PostgreSQL does); files are made 0600.
//!
//! [`wal`]: super::wal

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::directory::{
    STORE_FILES, existing_store, lock_directory, present, private_directory, refuse_remains,
    remove_sqlite_files, sqlite_file, sync_directory,
};
use super::{
    Author, CODES_TABLES, CREATOR_INDEXES, Event, EventFilter, EventLog, GENESIS, Lifecycle,
    LogPage, NewEvent, Notice, PageRows, PageSql, SCHEMA, SqlValue, StoreError, StoreErrorKind,
    StoredEvent, TokenRecord, TokenStore, Watcher, chain_hash, corrupt, database_path,
    events_following, from_micros, hex, page_of, unavailable, unhex, verify_chain, wal,
};
use secretgen_engine::registry::InstanceId;

mod backup;
mod codes;
mod rows;
mod store_impl;
mod tx;
mod upgrade;

use super::flow::{self, TokenChange, Write, author_of, ready};
pub use backup::BackupSummary;
use rows::*;
use tx::SqliteTx;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: &str = "5";

/// How often the server asks whether another process changed the store (token commands).
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// How many read connections for pages of the log are kept between reads.
const PAGE_READERS: usize = 4;

/// The writer's page cache, as SQLite's `cache_size` takes it: negative, in KiB.
const WRITER_CACHE_KIB: i64 = -64 * 1024;

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// The scratch file a new store is built in before it is linked in as `secretgen.db`.
const SCRATCH: &str = ".secretgen.db.creating";

/// What a handle may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The one process that appends events: it holds the data directory's lock.
    Writer,
    /// Another process beside the writer: it may add tokens, never events.
    Shared,
    /// Reads only.
    ReadOnly,
}

/// A file by identity: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> io::Result<FileId> {
        let meta = fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

#[derive(Debug)]
struct Inner {
    conn: Connection,
    /// The file the connection has open: `secretgen.db`, or the scratch file of a store
    /// being made.
    at: PathBuf,
    /// The identity `at` had when it was opened; checked around every write.
    file: FileId,
    /// A new store not yet linked in as `secretgen.db`.
    pending: bool,
}

impl Inner {
    /// Whether the connection's file is still the one it opened (checked around every
    /// write); `path` names the store in the error.
    fn verify_file(&self, path: &Path) -> Result<(), StoreError> {
        let gone = |how: &str| {
            unavailable(format!(
                "{} {how} while secretgen had it open: changes would be lost, so none are \
                 accepted (restore the file, or restart on it)",
                path.display()
            ))
        };
        match FileId::of(&self.at) {
            Ok(id) if id == self.file => Ok(()),
            Ok(_) => Err(gone("was replaced by another file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(gone("was deleted")),
            Err(e) => Err(unavailable(format!(
                "cannot read {}: {e}",
                self.at.display()
            ))),
        }
    }

    /// Runs a write without a checkpoint, checking the file before and after: the commit is
    /// durable in the synced WAL, and reaches the database file with SQLite's automatic
    /// checkpoint (every 1,000 pages of WAL) or the next write that checkpoints. For issued
    /// codes, whose writes come by the thousand a second: a checkpoint costs three more
    /// syncs each time.
    fn write_in_wal<T>(
        &mut self,
        path: &Path,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.verify_file(path)?;
        let result = f(&mut self.conn)?;
        self.verify_file(path)?;
        Ok(result)
    }
}

/// The embedded store: `secretgen.db` in the data directory.
///
/// [`SqliteStore::open`] makes the process the directory's writer: it holds an exclusive
/// lock on the directory for as long as the store lives, so two servers can never append to
/// one log. [`SqliteStore::open_shared`] and [`SqliteStore::open_read_only`] open a store
/// that may have a writer beside them (`token create`, `generate` while a server runs).
///
/// Opening never repairs, resets or overwrites: a file that is not a complete, consistent
/// secretgen store is refused with [`StoreErrorKind::Corrupt`] and left as it is.
#[derive(Debug)]
pub struct SqliteStore {
    data_dir: PathBuf,
    path: PathBuf,
    mode: Mode,
    /// The writer's connection (or the only one), shared with the codes' committer.
    inner: Arc<Mutex<Inner>>,
    /// A read-only connection of its own for reads that must never wait behind a write
    /// (the token table: every request's authentication may need it), opened on first use.
    reader: Mutex<Option<Connection>>,
    /// Read-only connections for pages of the log (the audit search), kept between reads,
    /// so that concurrent searches neither wait behind a write nor share one connection.
    page_readers: Mutex<Vec<Connection>>,
    /// Operations on issued codes waiting for the next group commit, and the thread that
    /// commits them, started by the first (`codes.rs`).
    codes: Arc<codes::CodeQueue>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the life of a writer; the OS releases the lock when the process dies.
    _lock: Option<File>,
    /// Whether the thread started by [`Lifecycle::watch`] should go on; cleared on drop.
    watching: Arc<AtomicBool>,
}

impl SqliteStore {
    /// Opens the store in `data_dir` as its writer. When the directory holds no store file
    /// at all (it may not exist yet: it is made, private), a new store is begun in a scratch
    /// file; it becomes `secretgen.db` once [`Lifecycle::finish_creation`] is called, which
    /// [`crate::control::ControlPlane::open`] does after writing the instance and its defaults.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        private_directory(data_dir, true)?;
        let lock = lock_directory(data_dir)?;
        let path = database_path(data_dir);
        if !present(&path)? {
            refuse_remains(data_dir)?;
            return Self::create(data_dir, lock);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(data_dir, flags, Mode::Writer, Some(lock))?;
        store.require_complete()?;
        store.use_wal()?;
        Ok(store)
    }

    /// Opens an existing store beside its writer, to add tokens.
    pub fn open_shared(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        existing_store(data_dir)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(data_dir, flags, Mode::Shared, None)?;
        store.require_complete()?;
        store.use_wal()?;
        Ok(store)
    }

    /// Opens an existing store to read it.
    pub fn open_read_only(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        existing_store(data_dir)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(data_dir, flags, Mode::ReadOnly, None)?;
        store.require_complete()?;
        Ok(store)
    }

    /// Whether `data_dir` holds a store, or what remains of one: any of `secretgen.db`, its
    /// WAL, its shared-memory index, or a lock file.
    pub fn exists(data_dir: &Path) -> bool {
        STORE_FILES
            .iter()
            .any(|name| fs::symlink_metadata(data_dir.join(name)).is_ok())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a new store in the scratch file.
    fn create(data_dir: &Path, lock: File) -> Result<SqliteStore, StoreError> {
        let scratch = data_dir.join(SCRATCH);
        // Remains of a start that died while making its store: nothing in them was ever
        // acknowledged, and only the holder of the directory's lock makes stores.
        remove_sqlite_files(&scratch);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&scratch)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", scratch.display())))?;
        let path = database_path(data_dir);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = connection(&scratch, flags).map_err(|e| sql_error(&path, "cannot create", e))?;
        let file = FileId::of(&scratch)
            .map_err(|e| unavailable(format!("cannot read {}: {e}", scratch.display())))?;
        let store = SqliteStore {
            data_dir: data_dir.to_owned(),
            path,
            mode: Mode::Writer,
            inner: Arc::new(Mutex::new(Inner {
                conn,
                at: scratch,
                file,
                pending: true,
            })),
            reader: Mutex::new(None),
            page_readers: Mutex::new(Vec::new()),
            codes: Arc::default(),
            committer: Mutex::new(None),
            watching: Arc::new(AtomicBool::new(false)),
            _lock: Some(lock),
        };
        store.use_wal()?;
        let mut inner = store.inner();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&store.path, "cannot write", e))?;
        tx.execute_batch(SCHEMA)
            .and_then(|()| tx.execute_batch(CREATOR_INDEXES))
            .and_then(|()| tx.execute_batch(CODES_TABLES))
            .map_err(|e| sql_error(&store.path, "cannot create the tables of", e))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )
        .map_err(|e| sql_error(&store.path, "cannot write", e))?;
        tx.commit()
            .map_err(|e| sql_error(&store.path, "cannot write", e))?;
        drop(inner);
        Ok(store)
    }

    fn connect(
        data_dir: &Path,
        flags: OpenFlags,
        mode: Mode,
        lock: Option<File>,
    ) -> Result<SqliteStore, StoreError> {
        let path = database_path(data_dir);
        // Read the files before SQLite does: SQLite would open an empty file as a new
        // database, and read a damaged WAL only up to the damage.
        let meta = fs::metadata(&path)
            .map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(corrupt(&path, "it is not a file"));
        }
        if meta.len() == 0 {
            return Err(corrupt(&path, "it is empty (0 bytes)"));
        }
        let wal_path = sqlite_file(&path, "-wal");
        // A process beside us (a server, `token create`) may be appending to the WAL while
        // it is read: a frame caught half written reads as damage. Damage stays; a write in
        // progress does not, so only a verdict that holds three times over refuses.
        let mut verdict = wal::check_file(&wal_path);
        for _ in 0..2 {
            if verdict.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            verdict = wal::check_file(&wal_path);
        }
        verdict.map_err(|why| {
            corrupt(
                &path,
                &format!(
                    "its write-ahead log {} does not match it: {why}",
                    wal_path.display()
                ),
            )
        })?;
        let conn = connection(&path, flags).map_err(|e| sql_error(&path, "cannot open", e))?;
        let file = FileId::of(&path)
            .map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?;
        let store = SqliteStore {
            data_dir: data_dir.to_owned(),
            path: path.clone(),
            mode,
            inner: Arc::new(Mutex::new(Inner {
                conn,
                at: path,
                file,
                pending: false,
            })),
            reader: Mutex::new(None),
            page_readers: Mutex::new(Vec::new()),
            codes: Arc::default(),
            committer: Mutex::new(None),
            watching: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        };
        store.quick_check()?;
        Ok(store)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the connection leaves no half transaction behind: rusqlite
        // rolls back an unfinished transaction when it is dropped.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quick_check(&self) -> Result<(), StoreError> {
        let verdict: String = self
            .inner()
            .conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        if verdict != "ok" {
            return Err(corrupt(&self.path, &verdict));
        }
        Ok(())
    }

    /// SQLite's full integrity check: every page, index and constraint.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let verdicts = self.strings("PRAGMA integrity_check")?;
        if verdicts != ["ok"] {
            return Err(corrupt(&self.path, &verdicts.join("; ")));
        }
        Ok(())
    }

    /// The names of the tables in the file.
    fn tables(&self) -> Result<Vec<String>, StoreError> {
        self.strings("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    }

    /// The first column of every row of `sql`, as text.
    fn strings(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare(sql)
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        stmt.query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| sql_error(&self.path, "cannot read", e))
    }

    /// Refuses a file that is not a whole secretgen store of this schema: secretgen's
    /// tables, a schema version this build reads, and an instance. A store of schema
    /// version 1 (events without hashes) is brought to version 2 by its writer.
    fn require_complete(&self) -> Result<(), StoreError> {
        let tables = self.tables()?;
        if tables.is_empty() {
            return Err(corrupt(
                &self.path,
                "it holds no tables (its contents were never written to it, or were lost)",
            ));
        }
        if !["events", "meta", "tokens"]
            .iter()
            .all(|t| tables.iter().any(|have| have == t))
        {
            return Err(corrupt(&self.path, "it has no secretgen tables"));
        }
        match self.meta("schema_version")?.as_deref() {
            Some(SCHEMA_VERSION) => {}
            Some(old @ ("1" | "2" | "3" | "4")) if self.mode == Mode::Writer => {
                if old == "1" {
                    self.upgrade_from_version_1()?;
                }
                if old == "1" || old == "2" {
                    self.upgrade_from_version_2()?;
                }
                if old != "4" {
                    self.upgrade_from_version_3()?;
                }
                self.upgrade_from_version_4()?;
            }
            Some(old @ ("1" | "2" | "3" | "4")) => {
                return Err(StoreError::new(
                    StoreErrorKind::Refused,
                    format!(
                        "{} has schema version {old}, which its writer upgrades: start \
                         `secretgen serve` on it once",
                        self.path.display()
                    ),
                ));
            }
            Some(other) => {
                return Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!(
                        "{} has schema version {other}; this secretgen reads version \
                         {SCHEMA_VERSION} (was it written by a newer secretgen?)",
                        self.path.display()
                    ),
                ));
            }
            None => return Err(corrupt(&self.path, "it has no schema version")),
        }
        if self.default_instance()?.is_none() {
            return Err(corrupt(
                &self.path,
                "it holds no instance (it was never completed)",
            ));
        }
        Ok(())
    }

    /// Switches to WAL with full synchronous commits.
    fn use_wal(&self) -> Result<(), StoreError> {
        let inner = self.inner();
        let mode: String = inner
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "cannot set up", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(format!(
                "{} cannot use write-ahead logging (journal mode {mode})",
                self.path.display()
            )));
        }
        inner
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sql_error(&self.path, "cannot set up", e))?;
        // The writer's page cache: 64 MiB (SQLite's default is 2 MiB), so that the issued
        // codes' tables and their indexes stay in memory under load.
        inner
            .conn
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(|e| sql_error(&self.path, "cannot set up", e))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner()
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| sql_error(&self.path, "cannot read", e))
    }

    fn require_mode(&self, wanted: &[Mode], what: &str) -> Result<(), StoreError> {
        if wanted.contains(&self.mode) {
            return Ok(());
        }
        Err(StoreError::new(
            StoreErrorKind::Refused,
            format!(
                "cannot {what}: {} is open {}",
                self.path.display(),
                match self.mode {
                    Mode::ReadOnly => "read-only",
                    Mode::Shared => "beside its writer, which alone records changes",
                    Mode::Writer => "as its writer",
                }
            ),
        ))
    }

    /// Refuses to go on when the file the store has open is no longer the store's file.
    fn verify_file(&self, inner: &Inner) -> Result<(), StoreError> {
        inner.verify_file(&self.path)
    }

    /// Runs a write: checks the file before, commits, checkpoints, and checks the file
    /// again, so that a change is acknowledged only when it is in the store's file.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.inner();
        self.write_locked(&mut inner, f)
    }

    /// [`SqliteStore::write`] with the writer's connection already held.
    fn write_locked<T>(
        &self,
        inner: &mut MutexGuard<'_, Inner>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.verify_file(inner)?;
        let result = f(&mut inner.conn)?;
        checkpoint(&inner.conn, &self.path);
        self.verify_file(inner)?;
        Ok(result)
    }

    /// Runs `write` in one write transaction (`BEGIN IMMEDIATE`: the file's one writer from
    /// its first statement on), committed when it succeeds, through [`SqliteStore::write`];
    /// the events written.
    fn transaction(&self, write: &Write) -> Result<Vec<Event>, StoreError> {
        let write_error = |e| sql_error(&self.path, "cannot write", e);
        let rows = self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            let rows = ready(flow::run(
                &mut SqliteTx {
                    tx: &tx,
                    path: &self.path,
                },
                write,
            ))?;
            tx.commit().map_err(write_error)?;
            Ok(rows)
        })?;
        let bad = |why: String| corrupt(&self.path, &why);
        rows.into_iter().map(|row| row.decode(&bad)).collect()
    }

    /// Makes `change`, made by `creator`, in one transaction; the events written.
    fn change_tokens(
        &self,
        change: TokenChange,
        creator: Author,
    ) -> Result<Vec<Event>, StoreError> {
        self.require_mode(&[Mode::Writer, Mode::Shared], "change tokens")?;
        self.transaction(&Write::Tokens(change, creator))
    }

    /// A read-only connection for a page of the log: a kept one, or a new one.
    fn page_reader(&self) -> Result<Connection, StoreError> {
        let kept = self
            .page_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match kept {
            Some(conn) => Ok(conn),
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                connection(&self.path, flags).map_err(|e| sql_error(&self.path, "cannot open", e))
            }
        }
    }

    /// Keeps `conn` for the next page, up to [`PAGE_READERS`] connections.
    fn keep_page_reader(&self, conn: Connection) {
        let mut kept = self.page_readers.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < PAGE_READERS {
            kept.push(conn);
        }
    }

    /// Every instance in the log, in order of their ids.
    fn instance_ids(&self) -> Result<Vec<InstanceId>, StoreError> {
        self.strings("SELECT DISTINCT instance_id FROM events ORDER BY instance_id")?
            .into_iter()
            .map(|id| {
                InstanceId::new(&id).map_err(|e| {
                    corrupt(
                        &self.path,
                        &format!("it has an invalid instance id {id:?}: {e}"),
                    )
                })
            })
            .collect()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.watching.store(false, Ordering::Release);
        // Operations queued before the drop are committed and answered first.
        self.stop_committer();
        let inner = self.inner();
        if inner.pending {
            // Never completed, never acknowledged: nothing of it may look like a store.
            remove_sqlite_files(&inner.at);
        }
    }
}

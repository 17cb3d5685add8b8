//! The embedded store: one SQLite file in the data directory, in WAL mode with full
//! synchronous commits, held by one writing process at a time.
//!
//! How it keeps its promises (nothing acknowledged is lost; nothing it did not write is
//! served):
//! - A store is made whole or not at all: it is built in a scratch file (schema, instance,
//!   defaults), checkpointed and synced, and only then linked in as `secretgen.db`. A store
//!   is made only in a directory that holds no store file at all; a directory with a WAL, a
//!   shared-memory index or a lock file but no database is refused.
//! - Every commit is checkpointed into the database file before it is acknowledged, so a WAL
//!   that is damaged or lost after a crash holds nothing that was acknowledged; a WAL that
//!   SQLite would drop committed frames from is refused before SQLite opens it ([`wal`]).
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
use std::time::SystemTime;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::directory::{
    STORE_FILES, existing_store, lock_directory, present, private_directory, refuse_remains,
    remove_sqlite_files, sqlite_file, sync_directory,
};
use std::collections::HashMap;

use super::{
    Author, CREATOR_INDEXES, Event, EventFilter, EventType, GENESIS, LogPage, NewEvent, Notice,
    PageSql, SCHEMA, SqlValue, Store, StoreError, StoreErrorKind, StoredEvent, TokenFacts,
    TokenRecord, Watcher, chain_hash, corrupt, database_path, events_following, from_micros, hex,
    page_entries, rows_to_append, to_micros, truncate_to_micros, unavailable, unhex, verify_chain,
    wal,
};
use crate::registry::InstanceId;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: &str = "4";

/// How often the server asks whether another process changed the store (token commands).
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// How many read connections for pages of the log are kept between reads.
const PAGE_READERS: usize = 4;

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
    inner: Mutex<Inner>,
    /// A read-only connection of its own for reads that must never wait behind a write
    /// (the token table: every request's authentication may need it), opened on first use.
    reader: Mutex<Option<Connection>>,
    /// Read-only connections for pages of the log (the audit search), kept between reads,
    /// so that concurrent searches neither wait behind a write nor share one connection.
    page_readers: Mutex<Vec<Connection>>,
    /// Held for the life of a writer; the OS releases the lock when the process dies.
    _lock: Option<File>,
    /// Whether the thread started by [`Store::watch`] should go on; cleared on drop.
    watching: Arc<AtomicBool>,
}

impl SqliteStore {
    /// Opens the store in `data_dir` as its writer. When the directory holds no store file
    /// at all (it may not exist yet: it is made, private), a new store is begun in a scratch
    /// file; it becomes `secretgen.db` once [`Store::finish_creation`] is called, which
    /// [`crate::ControlPlane::open`] does after writing the instance and its defaults.
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
            inner: Mutex::new(Inner {
                conn,
                at: scratch,
                file,
                pending: true,
            }),
            reader: Mutex::new(None),
            page_readers: Mutex::new(Vec::new()),
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
            inner: Mutex::new(Inner {
                conn,
                at: path,
                file,
                pending: false,
            }),
            reader: Mutex::new(None),
            page_readers: Mutex::new(Vec::new()),
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
            Some(old @ ("1" | "2" | "3")) if self.mode == Mode::Writer => {
                if old == "1" {
                    self.upgrade_from_version_1()?;
                }
                if old != "3" {
                    self.upgrade_from_version_2()?;
                }
                self.upgrade_from_version_3()?;
            }
            Some(old @ ("1" | "2" | "3")) => {
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

    /// Brings the store to schema version `to` with `change`, in one transaction, then
    /// checkpoints; `what` says what the version adds, for the log line.
    fn upgrade(
        &self,
        to: &str,
        what: &str,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let write_error = |e| sql_error(&self.path, "cannot upgrade", e);
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        change(&tx).map_err(write_error)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [to],
        )
        .map_err(write_error)?;
        tx.commit().map_err(write_error)?;
        checkpoint(&inner.conn, &self.path);
        tracing::info!(path = %self.path.display(), "store upgraded to schema version {to} ({what})");
        Ok(())
    }

    /// Version 1 kept events without hashes: the writer chains them, once.
    fn upgrade_from_version_1(&self) -> Result<(), StoreError> {
        self.upgrade("2", "events chained by hash", |tx| {
            tx.execute_batch("ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''")?;
            // The creator's id (version 4) too: the rows are read with it; all empty.
            if !has_column(tx, "events", "creator_id")? {
                tx.execute_batch(
                    "ALTER TABLE events ADD COLUMN creator_id TEXT NOT NULL DEFAULT ''",
                )?;
            }
            let rows = read_rows(tx, None)?;
            let mut previous: Option<(&str, [u8; 32])> = None;
            for row in &rows {
                let before = match previous {
                    Some((instance, hash)) if instance == row.instance_id => hash,
                    _ => GENESIS,
                };
                let hash = chain_hash(&before, &row.as_event_row());
                tx.execute(
                    "UPDATE events SET hash = ?1 WHERE instance_id = ?2 AND sequence = ?3",
                    rusqlite::params![hex(&hash), row.instance_id, row.sequence],
                )?;
                previous = Some((&row.instance_id, hash));
            }
            Ok(())
        })
    }

    /// Version 2 had no token expiry: the writer adds the column (tokens without one never
    /// expire).
    fn upgrade_from_version_2(&self) -> Result<(), StoreError> {
        self.upgrade("3", "token expiry", |tx| {
            if !has_column(tx, "tokens", "expires_at")? {
                tx.execute_batch("ALTER TABLE tokens ADD COLUMN expires_at BIGINT")?;
            }
            Ok(())
        })
    }

    /// Version 3 had no token lineage and no indexes for the audit search: the writer adds
    /// the creator's id to events (empty for every event before: their hashes stay valid),
    /// the creating token to tokens (none for every token before: they are left as they
    /// are), and the indexes.
    fn upgrade_from_version_3(&self) -> Result<(), StoreError> {
        self.upgrade(SCHEMA_VERSION, "token lineage, audit indexes", |tx| {
            if !has_column(tx, "events", "creator_id")? {
                tx.execute_batch(
                    "ALTER TABLE events ADD COLUMN creator_id TEXT NOT NULL DEFAULT ''",
                )?;
            }
            if !has_column(tx, "tokens", "created_by")? {
                tx.execute_batch("ALTER TABLE tokens ADD COLUMN created_by TEXT")?;
            }
            tx.execute_batch(
                "CREATE INDEX IF NOT EXISTS events_by_time ON events (instance_id, created_at); \
                 CREATE INDEX IF NOT EXISTS events_by_type ON events \
                 (instance_id, generator_type, sequence)",
            )?;
            tx.execute_batch(CREATOR_INDEXES)
        })
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
        let gone = |how: &str| {
            unavailable(format!(
                "{} {how} while secretgen had it open: changes would be lost, so none are \
                 accepted (restore the file, or restart on it)",
                self.path.display()
            ))
        };
        match FileId::of(&inner.at) {
            Ok(id) if id == inner.file => Ok(()),
            Ok(_) => Err(gone("was replaced by another file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(gone("was deleted")),
            Err(e) => Err(unavailable(format!(
                "cannot read {}: {e}",
                inner.at.display()
            ))),
        }
    }

    /// Runs a write: checks the file before, commits, checkpoints, and checks the file
    /// again, so that a change is acknowledged only when it is in the store's file.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.inner();
        self.verify_file(&inner)?;
        let result = f(&mut inner.conn)?;
        checkpoint(&inner.conn, &self.path);
        self.verify_file(&inner)?;
        Ok(result)
    }

    /// A consistent copy of the store into `to`, which must not exist; the copy is checked
    /// (integrity and every event's hash) and synced before it takes its name.
    pub fn backup(&self, to: &Path) -> Result<BackupSummary, StoreError> {
        if fs::symlink_metadata(to).is_ok() {
            return Err(StoreError::new(
                StoreErrorKind::Refused,
                format!("{} exists: a backup never overwrites a file", to.display()),
            ));
        }
        let dir = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = to
            .file_name()
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Refused,
                    format!("{} names no file", to.display()),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let scratch = dir.join(format!(".{name}.partial"));
        remove_sqlite_files(&scratch);
        let fail = |e: io::Error| unavailable(format!("cannot write {}: {e}", scratch.display()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&scratch)
            .map_err(fail)?;
        let result = (|| {
            self.inner()
                .conn
                .execute("VACUUM INTO ?1", [scratch.to_string_lossy()])
                .map_err(|e| sql_error(&self.path, "cannot copy", e))?;
            let copy = Connection::open_with_flags(
                &scratch,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sql_error(&scratch, "cannot read the copy", e))?;
            let verdict: String = copy
                .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .map_err(|e| sql_error(&scratch, "cannot read the copy", e))?;
            if verdict != "ok" {
                return Err(corrupt(&scratch, &verdict));
            }
            let rows = read_rows(&copy, None).map_err(|e| sql_error(&scratch, "cannot read", e))?;
            verify_chain(&rows, (0, GENESIS), &|why| corrupt(&scratch, &why))?;
            drop(copy);
            File::open(&scratch)
                .and_then(|f| f.sync_all())
                .map_err(fail)?;
            fs::hard_link(&scratch, to)
                .map_err(|e| unavailable(format!("cannot name the copy {}: {e}", to.display())))?;
            sync_directory(&dir);
            Ok(BackupSummary {
                events: rows.len() as u64,
            })
        })();
        remove_sqlite_files(&scratch);
        result
    }

    /// One change of the tokens and its events, in one transaction: `change` alters the
    /// `tokens` table and says what it did (nothing: empty, and nothing is written), then
    /// the events are appended to the default instance's log, made by `creator`.
    fn token_change(
        &self,
        creator: &Author,
        change: impl FnOnce(
            &rusqlite::Transaction<'_>,
        ) -> Result<Vec<(EventType, TokenFacts, SystemTime)>, StoreError>,
    ) -> Result<Vec<Event>, StoreError> {
        self.require_mode(&[Mode::Writer, Mode::Shared], "change tokens")?;
        let write_error = |e| sql_error(&self.path, "cannot write", e);
        let bad = |why: String| corrupt(&self.path, &why);
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            let changes = change(&tx)?;
            if changes.is_empty() {
                return Ok(Vec::new());
            }
            let instance: Option<String> = tx
                .query_row(
                    "SELECT value FROM meta WHERE key = 'default_instance'",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(write_error)?;
            let instance = instance.ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Refused,
                    "the store holds no instance yet: start `secretgen serve` on it once",
                )
            })?;
            let instance = InstanceId::new(&instance)
                .map_err(|e| bad(format!("its default instance id is invalid: {e}")))?;
            let (mut last, mut previous) = last_event(&tx, &instance, &bad)?;
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
                insert_event(&tx, &row).map_err(write_error)?;
                (last, previous) = (row.sequence, row.hash);
                rows.push(row);
            }
            tx.commit().map_err(write_error)?;
            rows.into_iter().map(|row| row.decode(&bad)).collect()
        })
    }

    /// Refuses `token` when another live token (not expired at its creation) has its name
    /// (a second insert of the same token is refused by its id instead).
    fn require_free_name(
        &self,
        tx: &rusqlite::Transaction<'_>,
        token: &TokenRecord,
    ) -> Result<(), StoreError> {
        let taken: bool = tx
            .query_row(
                "SELECT COUNT(*) > 0 FROM tokens WHERE name = ?1 \
                 AND (expires_at IS NULL OR expires_at > ?2) AND id <> ?3",
                rusqlite::params![token.name, to_micros(token.created_at), token.id],
                |row| row.get(0),
            )
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        if taken {
            return Err(name_taken());
        }
        Ok(())
    }

    /// Inserts `token`'s row with `values` (a `VALUES` or `SELECT` clause over `?1` to
    /// `?7`) in `tx`; returns whether a row was inserted.
    fn insert_token(
        &self,
        tx: &rusqlite::Transaction<'_>,
        token: &TokenRecord,
        values: &str,
    ) -> Result<bool, StoreError> {
        let result = tx.execute(
            &format!(
                "INSERT INTO tokens (id, name, hash, permissions, created_at, expires_at, \
                 created_by) {values}"
            ),
            rusqlite::params![
                token.id,
                token.name,
                hex(&token.hash),
                token.permissions.join(","),
                to_micros(token.created_at),
                token.expires_at.map(to_micros),
                token.created_by,
            ],
        );
        match result {
            Ok(n) => Ok(n == 1),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                Err(StoreError::new(
                    StoreErrorKind::Refused,
                    "a token with this id or hash is already stored",
                ))
            }
            Err(e) => Err(sql_error(&self.path, "cannot write", e)),
        }
    }

    /// Every event row of every instance as stored, each instance's chain verified: what
    /// `secretgen migrate` copies.
    pub fn export_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = read_rows(&self.inner().conn, None)
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        verify_chain(&rows, (0, GENESIS), &|why| corrupt(&self.path, &why))?;
        Ok(rows)
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

/// What [`SqliteStore::backup`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Events in the copy, every one checked against its hash.
    pub events: u64,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.watching.store(false, Ordering::Release);
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if inner.pending {
            // Never completed, never acknowledged: nothing of it may look like a store.
            remove_sqlite_files(&inner.at);
        }
    }
}

impl Store for SqliteStore {
    fn default_instance(&self) -> Result<Option<InstanceId>, StoreError> {
        match self.meta("default_instance")? {
            None => Ok(None),
            Some(id) => InstanceId::new(&id).map(Some).map_err(|e| {
                corrupt(
                    &self.path,
                    &format!("its default instance id {id:?} is invalid: {e}"),
                )
            }),
        }
    }

    fn claim_default_instance(&self, id: &InstanceId) -> Result<InstanceId, StoreError> {
        self.require_mode(&[Mode::Writer], "store the instance id")?;
        if let Some(stored) = self.default_instance()? {
            return Ok(stored);
        }
        self.write(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('default_instance', ?1)",
                [id.as_str()],
            )
            .map_err(|e| sql_error(&self.path, "cannot write", e))?;
            Ok(())
        })?;
        Ok(id.clone())
    }

    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError> {
        let rows = {
            let inner = self.inner();
            read_rows(&inner.conn, Some(instance.as_str()))
                .map_err(|e| sql_error(&self.path, "cannot read", e))?
        };
        let bad = |why: String| corrupt(&self.path, &why);
        verify_chain(&rows, (0, GENESIS), &bad)?;
        rows.into_iter().map(|row| row.decode(&bad)).collect()
    }

    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
        self.require_mode(&[Mode::Writer], "record a change")?;
        let write_error = |e| sql_error(&self.path, "cannot write", e);
        let bad = |why: String| corrupt(&self.path, &why);
        self.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(write_error)?;
            let last = last_event(&tx, instance, &bad)?;
            let mut latest = HashMap::new();
            for event in events {
                let generator_type = event.config.generator_type();
                let payload: Option<String> = tx
                    .query_row(
                        "SELECT payload FROM events WHERE instance_id = ?1 \
                         AND generator_type = ?2 ORDER BY sequence DESC LIMIT 1",
                        [instance.as_str(), generator_type.full_name()],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(write_error)?;
                latest.insert(generator_type, payload);
            }
            let rows = rows_to_append(instance, last, &latest, events);
            for row in &rows {
                insert_event(&tx, row).map_err(write_error)?;
            }
            tx.commit().map_err(write_error)?;
            rows.into_iter().map(|row| row.decode(&bad)).collect()
        })
    }

    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError> {
        let author = Author {
            name: creator.to_owned(),
            token_id: token.created_by.clone(),
        };
        self.token_change(&author, |tx| {
            self.require_free_name(tx, token)?;
            self.insert_token(tx, token, "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            Ok(vec![(
                EventType::TokenAdded,
                TokenFacts::of(token),
                token.created_at,
            )])
        })
        .map(|mut events| events.remove(0))
    }

    fn add_first_token(&self, token: &TokenRecord, creator: &str) -> Result<bool, StoreError> {
        let author = Author {
            name: creator.to_owned(),
            token_id: token.created_by.clone(),
        };
        self.token_change(&author, |tx| {
            let added = self.insert_token(
                tx,
                token,
                "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM tokens)",
            )?;
            Ok(added
                .then(|| {
                    (
                        EventType::TokenAdded,
                        TokenFacts::of(token),
                        token.created_at,
                    )
                })
                .into_iter()
                .collect())
        })
        .map(|events| !events.is_empty())
    }

    fn remove_token(&self, id: &str, by: &Author) -> Result<Vec<Event>, StoreError> {
        self.token_change(by, |tx| {
            let read_error = |e| sql_error(&self.path, "cannot read", e);
            let found = tx
                .query_row(&format!("{SELECT_TOKENS} WHERE id = ?1"), [id], token_row)
                .optional()
                .map_err(read_error)?;
            let Some((record, _)) = found else {
                return Ok(Vec::new());
            };
            // The token, then the tokens it created, theirs, and so on, breadth first.
            let at = truncate_to_micros(SystemTime::now());
            let mut removed = vec![record];
            let mut next = 0;
            while next < removed.len() {
                let parent = removed[next].id.clone();
                next += 1;
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "{SELECT_TOKENS} WHERE created_by = ?1 ORDER BY created_at, id"
                    ))
                    .map_err(read_error)?;
                let children = stmt
                    .query_map([&parent], token_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(read_error)?;
                removed.extend(children.into_iter().map(|(child, _)| child));
            }
            for record in &removed {
                tx.execute("DELETE FROM tokens WHERE id = ?1", [&record.id])
                    .map_err(|e| sql_error(&self.path, "cannot write", e))?;
            }
            Ok(removed
                .iter()
                .map(|record| (EventType::TokenRemoved, TokenFacts::of(record), at))
                .collect())
        })
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let inner = self.inner();
        let mut stmt = inner
            .conn
            .prepare_cached(&format!("{SELECT_TOKENS} WHERE hash = ?1"))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        let found = stmt
            .query_row([hex(hash)], token_row)
            .optional()
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(found.map(|(record, _)| TokenRecord {
            hash: *hash,
            ..record
        }))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let read = |conn: &Connection| -> rusqlite::Result<Vec<(TokenRecord, String)>> {
            let mut stmt = conn.prepare_cached(SELECT_TOKENS)?;
            let rows = stmt.query_map([], token_row)?;
            rows.collect()
        };
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            *reader = Some(
                connection(&self.path, flags)
                    .map_err(|e| sql_error(&self.path, "cannot open", e))?,
            );
        }
        let conn = reader.as_ref().expect("opened above");
        let rows = read(conn).map_err(|e| sql_error(&self.path, "cannot read", e))?;
        rows.into_iter()
            .map(|(mut record, hash)| {
                record.hash = unhex(&hash).ok_or_else(|| {
                    corrupt(
                        &self.path,
                        &format!("token {} has a malformed hash", record.id),
                    )
                })?;
                Ok(record)
            })
            .collect()
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .inner()
            .conn
            .query_row("SELECT COUNT(*) FROM tokens", [], |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(n as u64)
    }

    fn instances(&self) -> Result<Vec<InstanceId>, StoreError> {
        self.instance_ids()
    }

    fn sole_writer(&self) -> bool {
        self.mode == Mode::Writer
    }

    /// One read transaction on a connection of its own: the last sequence (the primary
    /// key's last entry), the count when the filters need one, and the page through the
    /// indexes; each `changed` event's previous configuration by the type index. The rows
    /// are decoded, not chained: a page is not the whole log (see ARCHITECTURE.md).
    fn events_page(
        &self,
        instance: &InstanceId,
        filter: &EventFilter,
    ) -> Result<LogPage, StoreError> {
        let conn = self.page_reader()?;
        let read = |conn: &Connection| -> rusqlite::Result<(u64, u64, Vec<_>)> {
            let tx = conn.unchecked_transaction()?;
            let last: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE instance_id = ?1",
                )?
                .query_row([instance.as_str()], |row| row.get(0))?;
            let last = u64::try_from(last).unwrap_or(0);
            let sql = PageSql::of(instance, filter, last, |n| format!("?{n}"));
            let params: Vec<rusqlite::types::Value> = sql
                .params
                .iter()
                .map(|p| match p {
                    SqlValue::Text(t) => rusqlite::types::Value::Text(t.clone()),
                    SqlValue::Integer(n) => rusqlite::types::Value::Integer(*n),
                })
                .collect();
            let total = match sql.count() {
                None => sql.total.unwrap_or(0),
                Some(count) => {
                    let n: i64 = tx
                        .prepare_cached(&count)?
                        .query_row(rusqlite::params_from_iter(params.iter()), |row| row.get(0))?;
                    u64::try_from(n).unwrap_or(0)
                }
            };
            let rows = tx
                .prepare_cached(&sql.select())?
                .query_map(rusqlite::params_from_iter(params.iter()), |row| {
                    Ok((stored_row(row)?, row.get::<_, Option<String>>(9)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.finish()?;
            Ok((total, last, rows))
        };
        let result = read(&conn);
        self.keep_page_reader(conn);
        let (total, last_sequence, rows) =
            result.map_err(|e| sql_error(&self.path, "cannot read", e))?;
        let entries = page_entries(rows, &|why| corrupt(&self.path, &why))?;
        Ok(LogPage {
            total,
            last_sequence,
            entries,
        })
    }

    fn events_after(
        &self,
        instance: &InstanceId,
        sequence: u64,
        hash: &[u8; 32],
    ) -> Result<Vec<Event>, StoreError> {
        let from = i64::try_from(sequence).unwrap_or(i64::MAX);
        let rows = {
            let inner = self.inner();
            read_rows_from(&inner.conn, instance.as_str(), from)
                .map_err(|e| sql_error(&self.path, "cannot read", e))?
        };
        events_following(instance, (from, *hash), rows, &|why| {
            corrupt(&self.path, &why)
        })
    }

    /// Other processes change the embedded store too: `token create` and `token revoke`
    /// beside a running server. A thread asks SQLite every [`WATCH_INTERVAL`] whether
    /// another connection committed (`PRAGMA data_version`, answered from the shared
    /// memory index without reading the database) and tells the watcher to read everything
    /// when one did. Only the writer (the server) watches.
    fn watch(&self, watcher: Watcher) {
        if self.mode != Mode::Writer || self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let path = self.path.clone();
        let watching = Arc::clone(&self.watching);
        let spawned = std::thread::Builder::new()
            .name("secretgen-store-watch".to_owned())
            .spawn(move || {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let Ok(conn) = connection(&path, flags) else {
                    return;
                };
                let version = |conn: &Connection| {
                    conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))
                        .ok()
                };
                let mut last = version(&conn);
                while watching.load(Ordering::Acquire) {
                    std::thread::sleep(WATCH_INTERVAL);
                    let now = version(&conn);
                    if now != last {
                        last = now;
                        watcher(Notice::Everything { reconnected: false });
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch the store for other processes' changes");
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        let inner = self.inner();
        self.verify_file(&inner)?;
        inner
            .conn
            .query_row("SELECT COUNT(*) FROM meta", [], |row| row.get::<_, i64>(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(())
    }

    fn finish_creation(&self) -> Result<(), StoreError> {
        let mut inner = self.inner();
        if !inner.pending {
            return Ok(());
        }
        let scratch = inner.at.clone();
        if !checkpoint(&inner.conn, &self.path) {
            return Err(unavailable(format!(
                "cannot write the new store {} whole",
                scratch.display()
            )));
        }
        let io_error = |what: &str, e: io::Error| {
            unavailable(format!("cannot {what} {}: {e}", self.path.display()))
        };
        File::open(&scratch)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error("sync", e))?;
        // Close the scratch file's connection before the file takes the store's name: its
        // WAL is named after the path it was opened by.
        let placeholder =
            Connection::open_in_memory().map_err(|e| sql_error(&self.path, "cannot open", e))?;
        drop(std::mem::replace(&mut inner.conn, placeholder));
        // A link, not a rename: it fails rather than replace a store that appeared meanwhile.
        fs::hard_link(&scratch, &self.path).map_err(|e| io_error("create", e))?;
        remove_sqlite_files(&scratch);
        sync_directory(&self.data_dir);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        inner.conn =
            connection(&self.path, flags).map_err(|e| sql_error(&self.path, "cannot open", e))?;
        inner.at = self.path.clone();
        inner.file = FileId::of(&self.path).map_err(|e| io_error("read", e))?;
        inner.pending = false;
        inner
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| sql_error(&self.path, "cannot set up", e))
    }
}

/// The sequence and hash of the last event of `instance` in `tx`; `(0, GENESIS)` for none.
fn last_event(
    tx: &rusqlite::Transaction<'_>,
    instance: &InstanceId,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<(i64, [u8; 32]), StoreError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT sequence, hash FROM events WHERE instance_id = ?1 \
             ORDER BY sequence DESC LIMIT 1",
            [instance.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| bad(format!("cannot read the log: {e}")))?;
    Ok(match last {
        None => (0, GENESIS),
        Some((sequence, hash)) => (
            sequence,
            unhex(&hash).ok_or_else(|| {
                bad(format!(
                    "event {sequence} of instance {instance} has no valid hash"
                ))
            })?,
        ),
    })
}

/// Inserts an event row.
fn insert_event(tx: &rusqlite::Transaction<'_>, row: &StoredEvent) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (instance_id, sequence, event_type, generator_type, payload, \
         created_at, creator, creator_id, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        row.instance_id,
        row.sequence,
        row.event_type,
        row.generator_type,
        row.payload,
        row.created_at,
        row.creator,
        row.creator_id,
        hex(&row.hash),
    ])?;
    Ok(())
}

/// The tokens' columns, in the order [`token_row`] reads them.
const SELECT_TOKENS: &str =
    "SELECT id, name, hash, permissions, created_at, expires_at, created_by FROM tokens";

/// Whether `table` has `column`.
fn has_column(tx: &rusqlite::Transaction<'_>, table: &str, column: &str) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |row| row.get(0),
    )
}

/// The refusal of a token whose name a live token has.
fn name_taken() -> StoreError {
    StoreError::new(
        StoreErrorKind::NameTaken,
        "a live token already has this name",
    )
}

/// A row of [`SELECT_TOKENS`]: the record (its hash still zero) and the hash as stored
/// (hex), for the caller to check.
fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let permissions: String = row.get(3)?;
    Ok((
        TokenRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            hash: [0; 32],
            permissions: permissions
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: from_micros(row.get(4)?),
            expires_at: row.get::<_, Option<i64>>(5)?.map(from_micros),
            created_by: row.get(6)?,
        },
        row.get(2)?,
    ))
}

/// The event rows of `instance` from sequence `from` on, in order.
fn read_rows_from(
    conn: &Connection,
    instance: &str,
    from: i64,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_id, sequence, event_type, generator_type, payload, created_at, \
         creator, creator_id, hash FROM events WHERE instance_id = ?1 AND sequence >= ?2 \
         ORDER BY sequence",
    )?;
    stmt.query_map(rusqlite::params![instance, from], stored_row)?
        .collect()
}

/// The event rows of `instance` (all instances when `None`), by instance and sequence.
fn read_rows(conn: &Connection, instance: Option<&str>) -> rusqlite::Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT instance_id, sequence, event_type, generator_type, payload, created_at, \
         creator, creator_id, hash FROM events WHERE ?1 IS NULL OR instance_id = ?1 \
         ORDER BY instance_id, sequence",
    )?;
    stmt.query_map([instance], stored_row)?.collect()
}

/// An event row of a `SELECT instance_id, sequence, event_type, generator_type, payload,
/// created_at, creator, creator_id, hash FROM events`.
fn stored_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        instance_id: row.get(0)?,
        sequence: row.get(1)?,
        event_type: row.get(2)?,
        generator_type: row.get(3)?,
        payload: row.get(4)?,
        created_at: row.get(5)?,
        creator: row.get(6)?,
        creator_id: row.get(7)?,
        hash: unhex(&row.get::<_, String>(8)?).unwrap_or([0; 32]),
    })
}

/// A connection that never checkpoints when it closes (a refused store must be left as it
/// is; the store checkpoints after every write itself), with the busy timeout set.
fn connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))?;
    Ok(conn)
}

/// Copies the WAL into the database file and empties the WAL, so that what was committed
/// lives in the database file itself. Returns whether it went the whole way; when it did not
/// (a reader held an old snapshot past the busy timeout), the commit is still durable in the
/// WAL, and the next write checkpoints again.
fn checkpoint(conn: &Connection, path: &Path) -> bool {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(0) => true,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "checkpoint blocked by a reader; the change is durable in the WAL");
            false
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "checkpoint failed; the change is durable in the WAL");
            false
        }
    }
}

fn sql_error(path: &Path, action: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => corrupt(path, &e.to_string()),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::new(
            StoreErrorKind::Locked,
            format!(
                "{action} {}: it is locked by another process ({e})",
                path.display()
            ),
        ),
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            unavailable(format!(
                "{action} {}: {e} (the file and its directory {} must be writable: the \
                 store keeps its write-ahead log there)",
                path.display(),
                dir.display()
            ))
        }
        _ => unavailable(format!("{action} {}: {e}", path.display())),
    }
}

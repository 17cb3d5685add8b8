//! The embedded store: one SQLite file in the data directory, in WAL mode with full
//! synchronous commits, held by one writing process at a time.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    Event, EventType, NewEvent, Payload, SCHEMA, Store, StoreError, StoreErrorKind, TokenRecord,
    database_path, from_micros, to_micros,
};
use crate::generator_type::GeneratorType;
use crate::registry::InstanceId;

/// The schema version this build writes and reads.
const SCHEMA_VERSION: &str = "1";

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT_MS: u32 = 5_000;

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

/// The embedded store: `secretgen.db` in the data directory.
///
/// [`SqliteStore::open`] makes the process the directory's writer: it takes an exclusive
/// lock on `secretgen.lock` for as long as the store lives, so two servers can never append
/// to one log. [`SqliteStore::open_shared`] and [`SqliteStore::open_read_only`] open a store
/// that may have a writer beside them (`token create`, `generate` while a server runs).
///
/// Opening never repairs, resets or overwrites: a file that is not a secretgen store, or
/// whose pages are damaged, is refused with [`StoreErrorKind::Corrupt`] and left as it is.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    mode: Mode,
    conn: Mutex<Connection>,
    /// Held for the life of a writer; the OS releases the lock when the process dies.
    _lock: Option<File>,
}

impl SqliteStore {
    /// Opens the store in `data_dir` as its writer, creating the directory and the store if
    /// they do not exist yet.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        fs::create_dir_all(data_dir).map_err(|e| {
            unavailable(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let lock = lock_directory(data_dir)?;
        let path = database_path(data_dir);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(path, flags, Mode::Writer, Some(lock))?;
        store.initialize()?;
        Ok(store)
    }

    /// Opens an existing store beside its writer, to add tokens.
    pub fn open_shared(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = existing_database(data_dir)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(path, flags, Mode::Shared, None)?;
        store.require_schema()?;
        Ok(store)
    }

    /// Opens an existing store to read it.
    pub fn open_read_only(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = existing_database(data_dir)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let store = Self::connect(path, flags, Mode::ReadOnly, None)?;
        store.require_schema()?;
        Ok(store)
    }

    /// Whether `data_dir` holds a store file.
    pub fn exists(data_dir: &Path) -> bool {
        database_path(data_dir).is_file()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(
        path: PathBuf,
        flags: OpenFlags,
        mode: Mode,
        lock: Option<File>,
    ) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| sql_error(&path, "cannot open", e))?;
        conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
            .map_err(|e| sql_error(&path, "cannot open", e))?;
        let store = SqliteStore {
            path,
            mode,
            conn: Mutex::new(conn),
            _lock: lock,
        };
        // Read before anything is written: a damaged file must be left exactly as it is.
        store.quick_check()?;
        Ok(store)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves no half transaction behind: rusqlite
        // rolls back an unfinished transaction when it is dropped.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quick_check(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let verdict: String = conn
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        if verdict != "ok" {
            return Err(corrupt(&self.path, &verdict));
        }
        Ok(())
    }

    /// The names of the tables in the file.
    fn tables(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        let names = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(names)
    }

    /// Refuses a file whose tables are not secretgen's, or that a newer version wrote.
    fn require_schema(&self) -> Result<(), StoreError> {
        let tables = self.tables()?;
        if !tables.iter().any(|t| t == "meta") {
            return Err(corrupt(&self.path, "it has no secretgen tables"));
        }
        let version = self.meta("schema_version")?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(other) => Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "{} has schema version {other}; this secretgen reads version \
                     {SCHEMA_VERSION} (was it written by a newer secretgen?)",
                    self.path.display()
                ),
            )),
            None => Err(corrupt(&self.path, "it has no schema version")),
        }
    }

    /// Makes a new file a store, or checks that an existing one is; then switches to WAL
    /// with full synchronous commits.
    fn initialize(&self) -> Result<(), StoreError> {
        let empty = self.tables()?.is_empty();
        if !empty {
            self.require_schema()?;
        }
        {
            let conn = self.conn();
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(|e| sql_error(&self.path, "cannot set up", e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(unavailable(format!(
                    "{} cannot use write-ahead logging (journal mode {mode})",
                    self.path.display()
                )));
            }
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|e| sql_error(&self.path, "cannot set up", e))?;
        }
        if empty {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error(&self.path, "cannot write", e))?;
            tx.execute_batch(SCHEMA)
                .map_err(|e| sql_error(&self.path, "cannot create the tables of", e))?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )
            .map_err(|e| sql_error(&self.path, "cannot write", e))?;
            tx.commit()
                .map_err(|e| sql_error(&self.path, "cannot write", e))?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()
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

    fn set_default_instance(&self, id: &InstanceId) -> Result<(), StoreError> {
        self.require_mode(&[Mode::Writer], "store the instance id")?;
        if let Some(stored) = self.default_instance()? {
            return Err(StoreError::new(
                StoreErrorKind::Refused,
                format!(
                    "{} already belongs to instance {stored}",
                    self.path.display()
                ),
            ));
        }
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES ('default_instance', ?1)",
                [id.as_str()],
            )
            .map_err(|e| sql_error(&self.path, "cannot write", e))?;
        Ok(())
    }

    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT sequence, event_type, generator_type, payload, created_at, creator \
                 FROM events WHERE instance_id = ?1 ORDER BY sequence",
            )
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        let rows = stmt
            .query_map([instance.as_str()], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        let mut events = Vec::with_capacity(rows.len());
        for (sequence, event_type, generator_type, payload, created_at, creator) in rows {
            let bad = |what: String| {
                corrupt(
                    &self.path,
                    &format!("event {sequence} of instance {instance} {what}"),
                )
            };
            let event_type = EventType::from_name(&event_type)
                .ok_or_else(|| bad(format!("has an unknown event type {event_type:?}")))?;
            let generator_type: GeneratorType = generator_type
                .parse()
                .map_err(|e| bad(format!("has a bad generator type: {e}")))?;
            let payload: Payload = serde_json::from_str(&payload)
                .map_err(|e| bad(format!("has an unreadable configuration: {e}")))?;
            events.push(Event {
                instance_id: instance.clone(),
                sequence: u64::try_from(sequence)
                    .map_err(|_| bad("has a negative sequence".to_owned()))?,
                event_type,
                generator_type,
                config: payload.into_draft(generator_type),
                created_at: from_micros(created_at),
                creator,
            });
        }
        Ok(events)
    }

    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
        self.require_mode(&[Mode::Writer], "record a change")?;
        let mut conn = self.conn();
        let write_error = |e| sql_error(&self.path, "cannot write", e);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(write_error)?;
        let last: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE instance_id = ?1",
                [instance.as_str()],
                |row| row.get(0),
            )
            .map_err(write_error)?;
        let mut stored = Vec::with_capacity(events.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (instance_id, sequence, event_type, generator_type, \
                     payload, created_at, creator) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(write_error)?;
            for (sequence, event) in (last + 1..).zip(events) {
                let generator_type = event.config.generator_type();
                let payload = Payload::of(&event.config);
                let json = serde_json::to_string(&payload).expect("a payload is plain JSON");
                insert
                    .execute(rusqlite::params![
                        instance.as_str(),
                        sequence,
                        event.event_type.as_str(),
                        generator_type.full_name(),
                        json,
                        to_micros(event.created_at),
                        event.creator,
                    ])
                    .map_err(write_error)?;
                stored.push(Event {
                    instance_id: instance.clone(),
                    sequence: sequence as u64,
                    event_type: event.event_type,
                    generator_type,
                    config: payload.into_draft(generator_type),
                    created_at: from_micros(to_micros(event.created_at)),
                    creator: event.creator.clone(),
                });
            }
        }
        tx.commit().map_err(write_error)?;
        Ok(stored)
    }

    fn add_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.require_mode(&[Mode::Writer, Mode::Shared], "add a token")?;
        let result = self.conn().execute(
            "INSERT INTO tokens (id, name, hash, permissions, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                token.id,
                token.name,
                hex(&token.hash),
                token.permissions.join(","),
                to_micros(token.created_at),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                Err(StoreError::new(
                    StoreErrorKind::Refused,
                    "a token with this id or hash is already stored",
                ))
            }
            Err(e) => Err(sql_error(&self.path, "cannot write", e)),
        }
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, name, permissions, created_at FROM tokens WHERE hash = ?1")
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        stmt.query_row([hex(hash)], |row| {
            let permissions: String = row.get(2)?;
            Ok(TokenRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                hash: *hash,
                permissions: permissions
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                created_at: from_micros(row.get(3)?),
            })
        })
        .optional()
        .map_err(|e| sql_error(&self.path, "cannot read", e))
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM tokens", [], |row| row.get(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(n as u64)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM meta", [], |row| row.get::<_, i64>(0))
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        Ok(())
    }
}

/// Takes the data directory's writer lock, or says which process holds it.
fn lock_directory(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join("secretgen.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(StoreError::new(
                StoreErrorKind::Locked,
                format!(
                    "the data directory {} is in use by another secretgen process{by}",
                    data_dir.display()
                ),
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(unavailable(format!("cannot lock {}: {e}", path.display())));
        }
    }
    // The pid is a courtesy for the message above; the lock is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

fn existing_database(data_dir: &Path) -> Result<PathBuf, StoreError> {
    let path = database_path(data_dir);
    if path.is_file() {
        Ok(path)
    } else {
        Err(unavailable(format!(
            "{} holds no store (no {})",
            data_dir.display(),
            path.display()
        )))
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

fn corrupt(path: &Path, why: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "{} is not a usable secretgen store: {why}; it was left as it is \
             (restore it from a backup, or move it away to start afresh)",
            path.display()
        ),
    )
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

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

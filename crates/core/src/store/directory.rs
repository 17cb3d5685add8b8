//! The data directory on the file system: which files make a store, its privacy, the
//! writer's lock, and the small file operations a store needs (syncing a directory, removing
//! a scratch database).

use std::fs::{self, DirBuilder, File, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{StoreError, StoreErrorKind, database_path, unavailable};

/// Files that only exist beside a store: a directory holding one of them holds a store, or
/// the remains of one, and no new store is made there.
pub(super) const STORE_FILES: [&str; 4] = [
    "secretgen.db",
    "secretgen.db-wal",
    "secretgen.db-shm",
    "secretgen.lock",
];

/// `path` with SQLite's suffix for one of its side files.
pub(super) fn sqlite_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a scratch database and its side files, if they exist.
pub(super) fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(sqlite_file(path, suffix));
    }
}

/// Syncs a directory, so that a name made in it survives a crash. Best effort: some file
/// systems cannot sync directories.
pub(super) fn sync_directory(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether a file is at `path`.
pub(super) fn present(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(unavailable(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Refuses a directory that holds a store's side files without the store.
pub(super) fn refuse_remains(data_dir: &Path) -> Result<(), StoreError> {
    let remains: Vec<&str> = STORE_FILES
        .iter()
        .copied()
        .filter(|name| fs::symlink_metadata(data_dir.join(name)).is_ok())
        .collect();
    if remains.is_empty() {
        return Ok(());
    }
    Err(StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "{} holds {} but no secretgen.db: a store was there and its database is gone; \
             nothing was changed (restore secretgen.db from a backup, or move these files \
             away to start afresh)",
            data_dir.display(),
            remains.join(", ")
        ),
    ))
}

/// The checks of an existing store's directory, for the handles that do not create one.
pub(super) fn existing_store(data_dir: &Path) -> Result<(), StoreError> {
    private_directory(data_dir, false)?;
    if present(&database_path(data_dir))? {
        return Ok(());
    }
    refuse_remains(data_dir)?;
    Err(unavailable(format!(
        "{} holds no store (no {})",
        data_dir.display(),
        database_path(data_dir).display()
    )))
}

/// Makes `data_dir` (0700) when `create` and it does not exist; refuses a directory that
/// others may read or write (group write, or any access for others), as PostgreSQL does.
pub(super) fn private_directory(data_dir: &Path, create: bool) -> Result<(), StoreError> {
    match fs::metadata(data_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| {
                unavailable(format!(
                    "cannot create the data directory {}: {e}",
                    data_dir.display()
                ))
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(unavailable(format!(
            "{} holds no store (the directory does not exist)",
            data_dir.display()
        ))),
        Err(e) => Err(unavailable(format!(
            "cannot read the data directory {}: {e}",
            data_dir.display()
        ))),
        Ok(meta) if !meta.is_dir() => Err(unavailable(format!(
            "the data directory {} is not a directory",
            data_dir.display()
        ))),
        Ok(meta) if meta.permissions().mode() & 0o027 != 0 => Err(StoreError::new(
            StoreErrorKind::Refused,
            format!(
                "the data directory {} is open to other users (mode {:04o}); it holds token \
                 hashes: make it private with `chmod 700 {}`",
                data_dir.display(),
                meta.permissions().mode() & 0o7777,
                data_dir.display()
            ),
        )),
        Ok(_) => Ok(()),
    }
}

/// Takes the data directory's writer lock: an exclusive `flock` on the directory itself,
/// which no one can delete from under a running writer (a lock file can be). Says which
/// process holds it when it is taken.
pub(super) fn lock_directory(data_dir: &Path) -> Result<File, StoreError> {
    let dir = File::open(data_dir).map_err(|e| {
        unavailable(format!(
            "cannot open the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(TryLockError::WouldBlock) => {
            let by = dir
                .metadata()
                .ok()
                .and_then(|meta| lock_holder(&meta))
                .map_or_else(String::new, |pid| format!(" (pid {pid})"));
            Err(StoreError::new(
                StoreErrorKind::Locked,
                format!(
                    "the data directory {} is in use by another secretgen process{by}",
                    data_dir.display()
                ),
            ))
        }
        Err(TryLockError::Error(e)) => Err(unavailable(format!(
            "cannot lock the data directory {}: {e}",
            data_dir.display()
        ))),
    }
}

/// The process holding a `flock` on the file of `meta`, from Linux's `/proc/locks`
/// (`1: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> 0 EOF`, device numbers in hex).
fn lock_holder(meta: &fs::Metadata) -> Option<u32> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let dev = meta.dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.contains(&"->") {
            return None;
        }
        let mut id = fields.get(5)?.split(':');
        let (maj, min, ino) = (id.next()?, id.next()?, id.next()?);
        (u64::from_str_radix(maj, 16).ok()? == major
            && u64::from_str_radix(min, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == meta.ino())
        .then(|| fields.get(4)?.parse().ok())
        .flatten()
    })
}

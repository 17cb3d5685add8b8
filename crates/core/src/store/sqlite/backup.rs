//! Copies of the store: a checked backup file, and every event for `secretgen migrate`.

use super::*;

impl SqliteStore {
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

    /// Every event row of every instance as stored, each instance's chain verified: what
    /// `secretgen migrate` copies.
    pub fn export_events(&self) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = read_rows(&self.inner().conn, None)
            .map_err(|e| sql_error(&self.path, "cannot read", e))?;
        verify_chain(&rows, (0, GENESIS), &|why| corrupt(&self.path, &why))?;
        Ok(rows)
    }
}

/// What [`SqliteStore::backup`] copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Events in the copy, every one checked against its hash.
    pub events: u64,
}

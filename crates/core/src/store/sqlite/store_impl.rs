//! [`Store`] over the embedded file: reads on the writer's connection or on read-only
//! connections of their own, writes through the shared flows in one transaction each.

use super::*;

impl EventLog for SqliteStore {
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
        self.transaction(&Write::Append(instance.clone(), events.to_vec()))
    }

    fn instances(&self) -> Result<Vec<InstanceId>, StoreError> {
        self.instance_ids()
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
        let read = |conn: &Connection| -> rusqlite::Result<PageRows> {
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
                None => (sql.total.unwrap_or(0), false),
                Some(count) => {
                    let n: i64 = tx
                        .prepare_cached(&count)?
                        .query_row(rusqlite::params_from_iter(params.iter()), |row| row.get(0))?;
                    filter.total_of(u64::try_from(n).unwrap_or(0))
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
        let answer = result.map_err(|e| sql_error(&self.path, "cannot read", e))?;
        page_of(answer, &|why| corrupt(&self.path, &why))
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
}

impl TokenStore for SqliteStore {
    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError> {
        self.change_tokens(TokenChange::Add(token.clone()), author_of(token, creator))
            .map(|mut events| events.remove(0))
    }

    fn add_first_token(&self, token: &TokenRecord, creator: &str) -> Result<bool, StoreError> {
        self.change_tokens(
            TokenChange::AddFirst(token.clone()),
            author_of(token, creator),
        )
        .map(|events| !events.is_empty())
    }

    fn remove_token(&self, id: &str, by: &Author) -> Result<Vec<Event>, StoreError> {
        self.change_tokens(TokenChange::Remove(id.to_owned()), by.clone())
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
}

impl Lifecycle for SqliteStore {
    fn sole_writer(&self) -> bool {
        self.mode == Mode::Writer
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
                // What followers act on is in the log: every token change writes its event.
                // Commits that leave the log as it was (issued codes, by the thousand a
                // second) are not worth a re-read of the tokens and the log.
                // The last row's rowid: rows are only ever appended, and reading it is one
                // step down the table's b-tree whatever the log's length.
                let log = |conn: &Connection| {
                    conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM events", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .ok()
                };
                let mut last = version(&conn);
                let mut last_log = log(&conn);
                while watching.load(Ordering::Acquire) {
                    std::thread::sleep(WATCH_INTERVAL);
                    let now = version(&conn);
                    if now != last {
                        last = now;
                        let now_log = log(&conn);
                        if now_log != last_log || now_log.is_none() {
                            last_log = now_log;
                            watcher(Notice::Everything { reconnected: false });
                        }
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

//! [`Store`] over PostgreSQL: reads on pooled connections, writes through the shared
//! flows in one transaction each.

use super::*;

impl EventLog for PostgresStore {
    fn default_instance(&self) -> Result<Option<InstanceId>, StoreError> {
        let id = self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            Ok(client
                .query_opt("SELECT value FROM meta WHERE key = 'default_instance'", &[])
                .await
                .map_err(sql)?
                .map(|row| row.get::<_, String>(0)))
        })?;
        id.map(|id| {
            InstanceId::new(&id).map_err(|e| {
                self.corrupt()(format!("its default instance id {id:?} is invalid: {e}"))
            })
        })
        .transpose()
    }

    fn claim_default_instance(&self, id: &InstanceId) -> Result<InstanceId, StoreError> {
        let id = id.as_str().to_owned();
        let stored = self.write("cannot write", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('default_instance', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&id],
                )
                .await
                .map_err(sql)?;
            Ok(client
                .query_one("SELECT value FROM meta WHERE key = 'default_instance'", &[])
                .await
                .map_err(sql)?
                .get::<_, String>(0))
        })?;
        InstanceId::new(&stored).map_err(|e| {
            self.corrupt()(format!(
                "its default instance id {stored:?} is invalid: {e}"
            ))
        })
    }

    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError> {
        self.events_after(instance, 0, &GENESIS)
    }

    /// One read-only transaction (repeatable read, so the count and the page see one
    /// log): the last sequence, the count when the filters need one, and the page through
    /// the indexes. The rows are decoded, not chained: a page is not the whole log (see
    /// ARCHITECTURE.md).
    fn events_page(
        &self,
        instance: &InstanceId,
        filter: &EventFilter,
    ) -> Result<LogPage, StoreError> {
        let owned = instance.clone();
        let filter = filter.clone();
        let answer = self.run("cannot read", |pool| async move {
            let instance = owned;
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(sql)?;
            let last: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE instance_id = $1",
                    &[&instance.as_str()],
                )
                .await
                .map_err(sql)?
                .get(0);
            let last = u64::try_from(last).unwrap_or(0);
            let page = PageSql::of(&instance, &filter, last, |n| format!("${n}"));
            let params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> =
                page.params
                    .iter()
                    .map(|p| match p {
                        SqlValue::Text(t) => Box::new(t.clone())
                            as Box<dyn tokio_postgres::types::ToSql + Sync + Send>,
                        SqlValue::Integer(n) => Box::new(*n),
                    })
                    .collect();
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            let total = match page.count() {
                None => (page.total.unwrap_or(0), false),
                Some(count) => {
                    let n: i64 = tx.query_one(&count, &refs).await.map_err(sql)?.get(0);
                    filter.total_of(u64::try_from(n).unwrap_or(0))
                }
            };
            let statement = tx.prepare_cached(&page.select()).await.map_err(sql)?;
            let rows = tx
                .query(&statement, &refs)
                .await
                .map_err(sql)?
                .iter()
                .map(|row| (event_row(row), row.get::<_, Option<String>>(9)))
                .collect::<Vec<_>>();
            tx.commit().await.map_err(sql)?;
            Ok((total, last, rows))
        })?;
        page_of(answer, &self.corrupt())
    }

    fn events_after(
        &self,
        instance: &InstanceId,
        sequence: u64,
        hash: &[u8; 32],
    ) -> Result<Vec<Event>, StoreError> {
        let id = instance.as_str().to_owned();
        let from = i64::try_from(sequence).unwrap_or(i64::MAX);
        let rows = self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let statement = client.prepare_cached(SELECT_EVENTS).await.map_err(sql)?;
            Ok(client
                .query(&statement, &[&id, &from])
                .await
                .map_err(sql)?
                .iter()
                .map(event_row)
                .collect::<Vec<_>>())
        })?;
        events_following(instance, (from, *hash), rows, &self.corrupt())
    }

    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
        let write = Write::Append(instance.clone(), events.to_vec());
        self.transaction("cannot record the change in", write)
    }

    fn instances(&self) -> Result<Vec<InstanceId>, StoreError> {
        let ids = self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            Ok(client
                .query(
                    "SELECT DISTINCT instance_id FROM events ORDER BY instance_id",
                    &[],
                )
                .await
                .map_err(sql)?
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>())
        })?;
        ids.into_iter()
            .map(|id| {
                InstanceId::new(&id).map_err(|e| {
                    self.corrupt()(format!("it has an invalid instance id {id:?}: {e}"))
                })
            })
            .collect()
    }
}

impl TokenStore for PostgresStore {
    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError> {
        let write = Write::Tokens(TokenChange::Add(token.clone()), author_of(token, creator));
        self.transaction("cannot store the token in", write)
            .map(|mut events| events.remove(0))
    }

    fn add_first_token(&self, token: &TokenRecord, creator: &str) -> Result<bool, StoreError> {
        let write = Write::Tokens(
            TokenChange::AddFirst(token.clone()),
            author_of(token, creator),
        );
        self.transaction("cannot store the token in", write)
            .map(|events| !events.is_empty())
    }

    fn remove_token(&self, id: &str, by: &Author) -> Result<Vec<Event>, StoreError> {
        let write = Write::Tokens(TokenChange::Remove(id.to_owned()), by.clone());
        self.transaction("cannot revoke the token in", write)
    }

    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hex(hash);
        let found = self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            Ok(client
                .query_opt(&format!("{SELECT_TOKENS} WHERE hash = $1"), &[&hash])
                .await
                .map_err(sql)?
                .map(|row| token_row(&row)))
        })?;
        found.transpose().map_err(self.corrupt())
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            let n: i64 = client
                .query_one("SELECT COUNT(*) FROM tokens", &[])
                .await
                .map_err(sql)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.run("cannot read", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            Ok(client
                .query(&format!("{SELECT_TOKENS} ORDER BY id"), &[])
                .await
                .map_err(sql)?
                .iter()
                .map(token_row)
                .collect::<Vec<_>>())
        })?;
        rows.into_iter()
            .map(|row| row.map_err(self.corrupt()))
            .collect()
    }
}

impl Lifecycle for PostgresStore {
    /// What the last contact with the database showed (the listener pings it every few
    /// seconds, and every operation counts), without waiting for it: `/readyz` asks, and
    /// must answer at once when the database does not. Down while writes fail, even when the
    /// database answers pings (a lock that is not let go). Asked before anything was known,
    /// it asks the database.
    fn check(&self) -> Result<(), StoreError> {
        if let Some(why) = self.reachability.writes_failing() {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!("{} takes no writes: {why}", self.name()),
            ));
        }
        match self.reachability.state.load(Ordering::Acquire) {
            1 => return Ok(()),
            2 => {
                return Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!("{} did not answer the last time it was asked", self.name()),
                ));
            }
            _ => {}
        }
        self.run("cannot reach", |pool| async move {
            let client = pool.get().await.map_err(pool_error)?;
            client.simple_query("SELECT 1").await.map_err(sql)?;
            Ok(())
        })
    }

    fn watch(&self, watcher: Watcher) {
        let first = {
            let mut slot = self
                .reachability
                .watcher
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let first = slot.is_none();
            *slot = Some(watcher);
            first
        };
        if first {
            let runtime = self
                .runtime
                .as_ref()
                .expect("the runtime lives as long as the store");
            runtime.spawn(listen(
                self.config.clone(),
                Arc::clone(&self.reachability),
                self.options,
            ));
        }
    }
}

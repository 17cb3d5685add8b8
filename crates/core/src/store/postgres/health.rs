//! Whether the database answers and takes writes, told to the store's watcher; and the
//! listener, which follows `NOTIFY secretgen` on a connection of its own.

use super::*;

/// Whether the database answered the last time it was asked, and whether writes work.
pub(super) struct Reachability {
    /// 0: not known yet; 1: reachable; 2: unreachable.
    pub(super) state: AtomicU8,
    /// Why writes fail, while they do: set when a write fails as unavailable (the database
    /// does not answer, or a lock it needs is not let go), cleared when a write succeeds or
    /// the probe takes the log's lock. The database may answer every ping meanwhile.
    pub(super) writes_failing: Mutex<Option<String>>,
    /// Whether the probe of writes runs.
    pub(super) probing: AtomicBool,
    /// What the watcher was last told: 0: nothing; 1: up; 2: down.
    pub(super) told: Mutex<u8>,
    pub(super) watcher: Mutex<Option<Watcher>>,
    /// The database, for log lines.
    pub(super) name: String,
}

impl fmt::Debug for Reachability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reachability")
            .field("state", &self.state)
            .field("writes_failing", &self.writes_failing)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Reachability {
    pub(super) fn new(name: String) -> Reachability {
        Reachability {
            state: AtomicU8::new(0),
            writes_failing: Mutex::new(None),
            probing: AtomicBool::new(false),
            told: Mutex::new(0),
            watcher: Mutex::new(None),
            name,
        }
    }

    /// Records what the last contact showed; logs and tells the watcher only on a change.
    pub(super) fn set(&self, reachable: bool, why: Option<&str>) {
        let new = if reachable { 1 } else { 2 };
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        if reachable {
            if old == 2 {
                tracing::info!(database = %self.name, "PostgreSQL reachable again");
            }
        } else {
            tracing::warn!(
                database = %self.name,
                error = why.unwrap_or("no answer"),
                "PostgreSQL unreachable: codes are still served; changes are refused until it \
                 returns"
            );
        }
        self.publish();
    }

    /// Records that a write failed as unavailable (`Some(why)`) or succeeded (`None`); logs
    /// and tells the watcher only on a change. Whether a write fails is apart from whether
    /// the database answers: a session that holds the log's lock and lost its client lets
    /// every ping through and no write.
    pub(super) fn set_writes(&self, failing: Option<&str>) {
        let changed = {
            let mut slot = self
                .writes_failing
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let changed = slot.is_some() != failing.is_some();
            *slot = failing.map(str::to_owned);
            changed
        };
        if !changed {
            return;
        }
        match failing {
            Some(why) => tracing::warn!(
                database = %self.name,
                error = why,
                "PostgreSQL takes no writes: changes are refused and /readyz says the store is \
                 down until one succeeds"
            ),
            None => tracing::info!(database = %self.name, "PostgreSQL takes writes again"),
        }
        self.publish();
    }

    /// Why writes fail, while they do.
    pub(super) fn writes_failing(&self) -> Option<String> {
        self.writes_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tells the watcher whether the store is up (reachable, and writes work) when that
    /// changed since it was last told.
    pub(super) fn publish(&self) {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let up = self.state.load(Ordering::Acquire) != 2 && self.writes_failing().is_none();
        let now = if up { 1 } else { 2 };
        if *told != now {
            *told = now;
            self.tell(Notice::Reachable(up));
        }
    }

    pub(super) fn tell(&self, notice: Notice) {
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(watcher) = watcher {
            watcher(notice);
        }
    }
}

/// The listener: connects (with backoff between attempts), `LISTEN`s, tells the watcher to
/// read everything, then passes on each notification, pings the connection and asks for the
/// periodic re-read, until the connection fails; then again, for as long as the runtime runs.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    reachability: Arc<Reachability>,
    options: PostgresOptions,
) {
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        let outcome = listen_once(
            &config,
            &reachability,
            &options,
            &mut connected_before,
            &mut backoff,
        )
        .await;
        if let Err(why) = outcome {
            reachability.set(false, Some(&why));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection of the listener, from connecting to losing it; `Err` says why it ended.
pub(super) async fn listen_once(
    config: &tokio_postgres::Config,
    reachability: &Reachability,
    options: &PostgresOptions,
    connected_before: &mut bool,
    backoff: &mut Duration,
) -> Result<(), String> {
    let (client, mut connection) =
        tokio::time::timeout(options.connect_timeout, config.connect(NoTls))
            .await
            .map_err(|_| "connecting timed out".to_owned())?
            .map_err(|e| sql(e).to_string())?;
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The connection's own task: it carries the client's queries and hands over
    // notifications; when the connection ends, `sender` is dropped and the loop below ends.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if sender.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    let _stop_driver = AbortOnDrop(driver);
    tokio::time::timeout(options.timeout, client.batch_execute("LISTEN secretgen"))
        .await
        .map_err(|_| "LISTEN timed out".to_owned())?
        .map_err(|e| sql(e).to_string())?;
    reachability.set(true, None);
    *backoff = BACKOFF_MIN;
    // Listening from here on: everything committed before is read now.
    reachability.tell(Notice::Everything {
        reconnected: *connected_before,
    });
    *connected_before = true;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut reread = tokio::time::interval(options.reread_interval);
    reread.tick().await;
    loop {
        tokio::select! {
            payload = notifications.recv() => match payload.as_deref() {
                Some("tokens") => reachability.tell(Notice::Tokens),
                Some(_) => reachability.tell(Notice::Events),
                None => return Err("the listening connection was closed".to_owned()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(options.timeout, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => reachability.set(true, None),
                    Ok(Err(e)) => return Err(sql(e).to_string()),
                    Err(_) => return Err("the listening connection stopped answering".to_owned()),
                }
            }
            _ = reread.tick() => reachability.tell(Notice::Everything { reconnected: false }),
        }
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

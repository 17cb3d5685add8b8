//! The use cases, called as a transport calls them, over a real embedded store: admission
//! (401, 403, 429 before anything else), the one validation path, what a refused call leaves
//! behind, and an authentication path that never waits for the store when the token is known.

mod common;

use std::num::NonZeroU32;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use secretgen::config::Field;
use secretgen::service::{
    Error, GenerateCodes, ManageTokens, NewToken, ReadGenerators, SearchQuery, Service, Subject,
    UpdateGenerator,
};
use secretgen::store::codes::{
    CodeCounts, IssueRequest, Issued, Purged, Reply, UnlockRequest, Verified, VerifyRequest,
};
use secretgen::store::{
    CodeStore, Event, EventLog, Lifecycle, NewEvent, StoreError, TokenRecord, TokenStore,
};
use secretgen::token::{self, Permission, Token};
use secretgen::verification::Limits;
use secretgen::{
    ConfigDraft, ControlPlane, GeneratorType, InstanceId, SqliteStore, Store, metrics::Metrics,
};

/// Runs `f` to completion on a tokio runtime of one thread, as an actix worker runs it.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// A store whose reads of the token table can be held at a gate, to show what waits for
/// them and what does not.
#[derive(Debug)]
struct Gated {
    inner: SqliteStore,
    gate: Mutex<Option<Arc<Barrier>>>,
}

impl EventLog for Gated {
    fn default_instance(&self) -> Result<Option<InstanceId>, StoreError> {
        self.inner.default_instance()
    }
    fn claim_default_instance(&self, id: &InstanceId) -> Result<InstanceId, StoreError> {
        self.inner.claim_default_instance(id)
    }
    fn events(&self, instance: &InstanceId) -> Result<Vec<Event>, StoreError> {
        self.inner.events(instance)
    }
    fn events_after(
        &self,
        instance: &InstanceId,
        sequence: u64,
        hash: &[u8; 32],
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(instance, sequence, hash)
    }
    fn append(&self, instance: &InstanceId, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
        self.inner.append(instance, events)
    }
    fn instances(&self) -> Result<Vec<InstanceId>, StoreError> {
        self.inner.instances()
    }
    fn events_page(
        &self,
        instance: &InstanceId,
        filter: &secretgen::store::EventFilter,
    ) -> Result<secretgen::store::LogPage, StoreError> {
        self.inner.events_page(instance, filter)
    }
}

impl TokenStore for Gated {
    fn add_token(&self, token: &TokenRecord, creator: &str) -> Result<Event, StoreError> {
        self.inner.add_token(token, creator)
    }
    fn add_first_token(&self, token: &TokenRecord, creator: &str) -> Result<bool, StoreError> {
        self.inner.add_first_token(token, creator)
    }
    fn remove_token(
        &self,
        id: &str,
        by: &secretgen::store::Author,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.remove_token(id, by)
    }
    fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token_by_hash(hash)
    }
    fn token_count(&self) -> Result<u64, StoreError> {
        self.inner.token_count()
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.wait(); // in
            gate.wait(); // out
        }
        self.inner.tokens()
    }
}

impl CodeStore for Gated {
    fn issue_code(&self, request: IssueRequest, limits: &Limits) -> Reply<Issued> {
        self.inner.issue_code(request, limits)
    }
    fn verify_code(&self, request: VerifyRequest, limits: &Limits) -> Reply<Verified> {
        self.inner.verify_code(request, limits)
    }
    fn unlock_subject(
        &self,
        request: UnlockRequest,
        by: &secretgen::store::Author,
    ) -> Result<Option<Event>, StoreError> {
        self.inner.unlock_subject(request, by)
    }
    fn purge_codes(&self, now: i64, expired_before: i64) -> Result<Purged, StoreError> {
        self.inner.purge_codes(now, expired_before)
    }
    fn code_counts(&self, now: i64) -> Result<CodeCounts, StoreError> {
        self.inner.code_counts(now)
    }
}

impl Lifecycle for Gated {
    fn sole_writer(&self) -> bool {
        self.inner.sole_writer()
    }
    fn check(&self) -> Result<(), StoreError> {
        self.inner.check()
    }
    fn finish_creation(&self) -> Result<(), StoreError> {
        self.inner.finish_creation()
    }
}

struct Setup {
    service: Arc<Service>,
    store: Arc<Gated>,
    _dir: tempfile::TempDir,
}

/// A service over a new store, with one token per permission set asked for.
fn setup(rate_limit: Option<u32>) -> Setup {
    let dir = common::private_dir();
    let store = Arc::new(Gated {
        inner: SqliteStore::open(dir.path()).unwrap(),
        gate: Mutex::new(None),
    });
    let control = ControlPlane::open(Arc::clone(&store) as Arc<dyn Store>, None).unwrap();
    let service = Service::new(
        Arc::new(control),
        rate_limit.and_then(NonZeroU32::new),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    Setup {
        service: Arc::new(service),
        store,
        _dir: dir,
    }
}

/// A new token with `permissions`, stored now.
fn add_token(store: &dyn Store, name: &str, permissions: &[Permission]) -> Token {
    let token = Token::generate().unwrap();
    store
        .add_token(
            &token::record(&token, name, permissions, None).unwrap(),
            "test",
        )
        .unwrap();
    token
}

fn events(s: &Setup) -> usize {
    let control = s.service.control();
    control
        .store()
        .events(control.instance().id())
        .unwrap()
        .len()
}

#[test]
fn admission_refuses_unknown_tokens_then_missing_permissions_then_callers_over_their_rate() {
    let s = setup(Some(2));
    let reader = add_token(s.store.as_ref(), "reader", &[Permission::IamRead]);
    let coder = add_token(s.store.as_ref(), "coder", &[Permission::CodesGenerate]);
    block_on(async {
        let e = s
            .service
            .admit::<ReadGenerators>("sg_guess")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
        let e = s
            .service
            .admit::<UpdateGenerator>(reader.expose())
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::PermissionDenied(Permission::IamWrite)),
            "{e:?}"
        );
        let grant = s
            .service
            .admit::<ReadGenerators>(reader.expose())
            .await
            .unwrap();
        assert_eq!(grant.principal().name, "reader");
        // Two a second, in a burst of two: the third call of the same second is refused.
        for _ in 0..2 {
            s.service
                .admit::<GenerateCodes>(coder.expose())
                .await
                .unwrap();
        }
        let e = s
            .service
            .admit::<GenerateCodes>(coder.expose())
            .await
            .unwrap_err();
        let Error::RateLimited { retry_after, .. } = e else {
            panic!("expected a rate limit, got {e:?}");
        };
        assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
        // Reads are not rate limited.
        for _ in 0..5 {
            s.service
                .admit::<ReadGenerators>(reader.expose())
                .await
                .unwrap();
        }
    });
}

#[test]
fn a_token_stored_beside_the_running_service_is_admitted_on_its_first_call() {
    let s = setup(None);
    block_on(async {
        let e = s.service.admit::<ReadGenerators>("sg_not_yet").await;
        assert!(e.is_err());
        // Stored after the table was read, as `secretgen token create` does.
        let late = add_token(s.store.as_ref(), "late", &[Permission::IamRead]);
        let grant = s
            .service
            .admit::<ReadGenerators>(late.expose())
            .await
            .unwrap();
        assert_eq!(grant.principal().name, "late");
    });
}

#[test]
fn a_flood_of_unknown_tokens_reads_the_store_once_per_read_in_flight_not_once_per_token() {
    let s = setup(None);
    let before = s.service.tokens().reloads();
    block_on(async {
        // Two hundred guesses at once, as a flood arrives on one worker: the first reads
        // the table; every guess that arrived while that read was under way shares the one
        // read that begins after it.
        let guesses: Vec<String> = (0..200).map(|i| format!("sg_guess_{i}")).collect();
        let calls = guesses
            .iter()
            .map(|g| s.service.admit::<ReadGenerators>(g.as_str()));
        let results = futures_join_all(calls).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(Error::Unauthenticated(_))))
        );
    });
    let reads = s.service.tokens().reloads() - before;
    assert!(
        (1..=2).contains(&reads),
        "200 unknown tokens read the store {reads} times"
    );
}

#[test]
fn a_known_token_is_admitted_while_a_read_of_the_store_is_held() {
    let s = setup(None);
    let admin = add_token(s.store.as_ref(), "admin", &Permission::ALL);
    // Learn the admin token (one read), then hold every later read at the gate.
    block_on(s.service.admit::<ReadGenerators>(admin.expose())).unwrap();
    let gate = Arc::new(Barrier::new(2));
    *s.store.gate.lock().unwrap() = Some(Arc::clone(&gate));
    let service = Arc::clone(&s.service);
    let guess = std::thread::spawn(move || {
        block_on(service.admit::<ReadGenerators>("sg_unknown")).is_err()
    });
    gate.wait(); // the unknown token's read is in the store now, and held there
    let (done, finished) = std::sync::mpsc::channel();
    let service = Arc::clone(&s.service);
    let known = admin.expose().to_owned();
    std::thread::spawn(move || {
        for _ in 0..100 {
            let grant = block_on(service.admit::<UpdateGenerator>(&known)).unwrap();
            assert_eq!(grant.principal().name, "admin");
        }
        done.send(()).unwrap();
    });
    let admitted = finished.recv_timeout(Duration::from_secs(30));
    gate.wait(); // let the read finish
    assert!(
        admitted.is_ok(),
        "a known token waited for the read of an unknown one"
    );
    assert!(guess.join().unwrap(), "the unknown token is refused");
}

#[test]
fn an_update_is_checked_once_and_a_refused_one_changes_nothing() {
    let s = setup(None);
    let admin = add_token(s.store.as_ref(), "admin", &Permission::ALL);
    block_on(async {
        let grant = s
            .service
            .admit::<UpdateGenerator>(admin.expose())
            .await
            .unwrap();
        let before = s.service.control().get(GeneratorType::OtpSms);
        let written = events(&s);
        // Every rule at once, each by its typed field; nothing written, nothing swapped.
        let mut draft = ConfigDraft::new(GeneratorType::OtpSms);
        draft.expiry = Err(secretgen::expiry::ExpiryError::Negative);
        let e = s.service.update(&grant, draft).await.unwrap_err();
        let Error::Invalid { violations, .. } = e else {
            panic!("expected violations, got {e:?}");
        };
        let subjects: Vec<Subject> = violations.iter().map(|v| v.subject).collect();
        assert_eq!(
            subjects,
            [
                Field::Length,
                Field::Expiry,
                Field::IncludeLowerLetters,
                Field::IncludeUpperLetters,
                Field::IncludeDigits,
                Field::IncludeSymbols
            ]
            .map(Subject::Config)
        );
        assert_eq!(events(&s), written);
        assert!(Arc::ptr_eq(
            &before,
            &s.service.control().get(GeneratorType::OtpSms)
        ));
        // A valid change is written once and served at once; the same again writes nothing.
        let mut draft = before.config().to_draft();
        draft.length = secretgen::CodeLength::new(10);
        let changed = s.service.update(&grant, draft.clone()).await.unwrap();
        assert_eq!(changed.config().length().get(), 10);
        assert_eq!(events(&s), written + 1);
        let again = s.service.update(&grant, draft).await.unwrap();
        assert_eq!(again.version(), changed.version());
        assert_eq!(events(&s), written + 1);
        // The change is recorded as the grant's principal's.
        let control = s.service.control();
        let log = control.store().events(control.instance().id()).unwrap();
        assert_eq!(log.last().unwrap().creator, "admin");
    });
}

#[test]
fn generate_keeps_counts_in_range_and_serves_the_live_configuration() {
    let s = setup(None);
    let admin = add_token(s.store.as_ref(), "admin", &Permission::ALL);
    block_on(async {
        let grant = s
            .service
            .admit::<GenerateCodes>(admin.expose())
            .await
            .unwrap();
        for count in [0, -1, 1001, i128::from(u64::MAX) + 1] {
            let e = s
                .service
                .generate(&grant, GeneratorType::OtpSms, count)
                .unwrap_err();
            let Error::Invalid { violations, .. } = e else {
                panic!("expected a violation, got {e:?}");
            };
            assert_eq!(violations.len(), 1);
            assert_eq!(violations[0].subject, Subject::Count);
            assert!(
                violations[0].description.contains(&count.to_string()),
                "{violations:?}"
            );
        }
        let codes = s
            .service
            .generate(&grant, GeneratorType::OtpSms, 1000)
            .unwrap();
        let live = s.service.control().get(GeneratorType::OtpSms);
        assert_eq!(codes.count(), 1000);
        assert_eq!(codes.sequence, live.version().sequence);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 8 && c.iter().all(u8::is_ascii_digit))
        );
        let read = s
            .service
            .admit::<ReadGenerators>(admin.expose())
            .await
            .unwrap();
        let found = s.service.search(
            &read,
            &SearchQuery {
                offset: 1,
                limit: 2,
                ascending: false,
                types: None,
            },
        );
        assert_eq!(found.total, 8);
        let types: Vec<GeneratorType> = found
            .generators
            .iter()
            .map(|g| g.config().generator_type())
            .collect();
        assert_eq!(types, [GeneratorType::OtpSms, GeneratorType::AppSecret]);
    });
}

/// Polls every future until all are ready, in order, on the current task: what a worker
/// does with requests that arrive together.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (f, out) in pending.iter_mut().zip(done.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().map(|o| o.expect("ready")).collect()
}

#[test]
fn the_command_lines_grant_records_its_changes_as_the_command_line_with_no_token() {
    let s = setup(None);
    let admin = add_token(s.store.as_ref(), "admin", &[Permission::IamWrite]);
    block_on(async {
        let new = || NewToken {
            name: "ops".to_owned(),
            permissions: vec!["iam.read".to_owned(), "codes.generate".to_owned()],
            expiry: None,
        };
        // The command line holds every permission: it grants what no token here holds.
        let grant = s.service.command_line::<ManageTokens>();
        assert_eq!(grant.principal().token_id(), None);
        let created = s.service.create_token(&grant, new()).await.unwrap();
        let (token, record) = (created.token, created.view);
        assert_eq!(record.created_by, None);
        let last = |s: &Setup| {
            let control = s.service.control();
            let events = control.store().events(control.instance().id()).unwrap();
            events.last().cloned().unwrap()
        };
        let event = last(&s);
        assert_eq!(event.sequence, created.version.sequence);
        assert_eq!(event.creator, token::COMMAND_LINE_CREATOR);
        assert_eq!(event.creator_id, None);
        // The token works on the service at once.
        s.service
            .admit::<ReadGenerators>(token.expose())
            .await
            .unwrap();
        // A token's grant records the token, and grants only what the token holds.
        let by_token = s
            .service
            .admit::<ManageTokens>(admin.expose())
            .await
            .unwrap();
        let refused = s.service.create_token(&by_token, new()).await.unwrap_err();
        assert!(matches!(refused, Error::PermissionDenied(_)), "{refused:?}");
        let revoked = s.service.revoke_token(&grant, &record.id).await.unwrap();
        assert_eq!(revoked.ids, std::slice::from_ref(&record.id));
        let event = last(&s);
        assert_eq!(event.sequence, revoked.version.sequence);
        assert_eq!(event.creator, token::COMMAND_LINE_CREATOR);
        assert_eq!(event.creator_id, None);
        let e = s
            .service
            .admit::<ReadGenerators>(token.expose())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e:?}");
    });
}

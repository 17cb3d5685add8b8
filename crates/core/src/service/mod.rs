//! The use cases of secretgen, the same for every transport: read, search and update the
//! generators, generate codes, and report readiness.
//!
//! A transport (the HTTP API and the console in `api`, gRPC in `grpc`) is a thin adapter: it
//! reads its wire format into the typed inputs here, calls one use case, and renders the
//! typed result or the one [`Error`]. What every transport must do lives here: who may call
//! what, the rate limit, validation, the metrics of what was done, and the log lines of
//! changes.
//!
//! Admission comes first and is typed: [`Service::admit`] turns a bearer token into a
//! [`Grant`] for one [`Operation`] (401 without a known token, 403 without the operation's
//! permission, 429 over the rate), and each use case takes the grant of its operation. A
//! transport cannot call a use case without admitting its caller first, and it admits before
//! it reads the request, so that a caller without the right gets 401 or 403 whatever else is
//! wrong with its request, and learns nothing about the input's rules.

pub mod activity;
pub mod audit;
mod background;
mod codes;
pub mod error;
pub mod follow;
pub mod purge;
pub mod token_admin;
pub mod tokens;
mod verify;

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::SystemTime;

pub use audit::{AuditEntry, Change, EventPage, EventQuery, EventType, ReadEvents, TokenFacts};
pub use codes::{
    CHUNK_BYTES, CodeStream, Codes, GenerateCodes, MAX_COUNT, MAX_STREAM_COUNT, PREVIEW_SAMPLES,
    Preview, SecretBytes,
};
pub use error::{Error, Subject, Violation};
pub use token_admin::{
    CreatedToken, ManageTokens, NewToken, ReadTokens, Revoked, TokenPage, TokenQuery, TokenView,
};
pub use tokens::{Principal, Tokens};
pub use verify::{
    CodeSettings, CodeStats, IssueCodes, IssuedCode, TypeStats, UnlockSubjects, Unlocked,
    Verification, VerifyCodes,
};

use crate::control::ControlPlane;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::token::Permission;
use secretgen_engine::config::{ConfigDraft, GeneratorConfig};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::{InstanceId, Snapshot, Version};

/// Calls per second per token on the data plane.
type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Something a caller may be admitted to do.
pub trait Operation {
    /// The permission it needs.
    const PERMISSION: Permission;
    /// Whether the per-token rate limit applies.
    const RATE_LIMITED: bool;
}

/// Read generators: get and search.
#[derive(Debug)]
pub enum ReadGenerators {}

impl Operation for ReadGenerators {
    const PERMISSION: Permission = Permission::IamRead;
    const RATE_LIMITED: bool = false;
}

/// Change a generator's configuration.
#[derive(Debug)]
pub enum UpdateGenerator {}

impl Operation for UpdateGenerator {
    const PERMISSION: Permission = Permission::IamWrite;
    const RATE_LIMITED: bool = false;
}

/// Proof that a caller was admitted to operation `O`: only [`Service::admit`] makes one.
#[derive(Debug)]
pub struct Grant<O: Operation> {
    principal: Arc<Principal>,
    operation: PhantomData<O>,
}

impl<O: Operation> Grant<O> {
    /// Who was admitted.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

/// A search of the generators: paging and the types asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Results to skip.
    pub offset: u64,
    /// Most results to return; 0 for all.
    pub limit: u64,
    /// Ascending by type number (the default); `false` reverses.
    pub ascending: bool,
    /// Only these types, when given.
    pub types: Option<Vec<GeneratorType>>,
}

impl SearchQuery {
    /// Keeps only `t` among the types asked for (every type, when none were named yet):
    /// several type queries narrow the search to the types they all name.
    pub fn narrow(&mut self, t: GeneratorType) {
        self.types
            .get_or_insert_with(|| GeneratorType::ALL.to_vec())
            .retain(|&kept| kept == t);
    }
}

impl Default for SearchQuery {
    fn default() -> SearchQuery {
        SearchQuery {
            offset: 0,
            limit: 0,
            ascending: true,
            types: None,
        }
    }
}

/// What a search found.
#[derive(Debug)]
pub struct SearchResult {
    /// How many generators matched, before paging.
    pub total: u64,
    /// The highest sequence of any live configuration.
    pub processed_sequence: u64,
    /// When the search was made.
    pub view_timestamp: SystemTime,
    /// The page asked for.
    pub generators: Vec<GeneratorView>,
}

/// A generator as the use cases show it: its configuration and the version of its last
/// change. The compiled generator behind it stays in the core.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorView {
    config: GeneratorConfig,
    version: Version,
}

impl GeneratorView {
    fn of(snapshot: &Snapshot) -> GeneratorView {
        GeneratorView {
            config: snapshot.config().clone(),
            version: snapshot.version(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The version of its last change.
    pub fn version(&self) -> Version {
        self.version
    }
}

/// Whether the store answers; codes are served either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// It answers.
    Up,
    /// It does not: changes are refused, codes still served from the loaded configurations.
    Down,
}

/// The use cases over one control plane.
#[derive(Debug)]
pub struct Service {
    control: Arc<ControlPlane>,
    tokens: Tokens,
    limiter: Option<Limiter>,
    metrics: Arc<Metrics>,
    /// Turns of the audit search: at most [`audit::concurrent_reads`] pages are read and
    /// rendered at once, so that readers of the log queue among themselves instead of taking
    /// every core from generation.
    audit_reads: tokio::sync::Semaphore,
    /// The threads that read and render those pages, at the lowest priority.
    background: background::Background,
    /// The keys and limits of issued codes; `None`: no code is issued.
    codes: Option<CodeSettings>,
    /// What this server issued and verified in the last hour.
    activity: activity::Activity,
}

impl Service {
    /// The use cases over `control`, each token limited to `rate_limit` data-plane calls a
    /// second (bursts of as many), or not at all when `None`; what is done is counted in
    /// `metrics`. Reads the token table now.
    pub fn new(
        control: Arc<ControlPlane>,
        rate_limit: Option<NonZeroU32>,
        metrics: Arc<Metrics>,
    ) -> Result<Service, StoreError> {
        let tokens = Tokens::load(Arc::clone(control.store()))?;
        Ok(Service {
            control,
            tokens,
            limiter: rate_limit.map(|rps| Limiter::keyed(governor::Quota::per_second(rps))),
            metrics,
            audit_reads: tokio::sync::Semaphore::new(audit::concurrent_reads()),
            background: background::Background::start(audit::concurrent_reads(), "secretgen-log")
                .map_err(|e| {
                crate::store::unavailable(format!("cannot start the log's reader threads: {e}"))
            })?,
            codes: None,
            activity: activity::Activity::default(),
        })
    }

    /// The control plane behind the use cases.
    pub fn control(&self) -> &Arc<ControlPlane> {
        &self.control
    }

    /// The metrics the use cases count in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics as OpenMetrics text, with the live configurations' sequences; `None` when
    /// metrics are off.
    pub fn metrics_text(&self) -> Option<String> {
        self.metrics.enabled().then(|| {
            self.metrics
                .render(self.control.instance(), self.control.applied_sequence())
        })
    }

    /// The known tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The instance the generators belong to.
    pub fn instance_id(&self) -> &InstanceId {
        self.control.instance().id()
    }

    /// The grant of operation `O` to the operator at the machine's command line: every
    /// permission, recorded as `command line` with no token id. Only `secretgen`'s commands
    /// ask for it (whoever runs them can open the store itself); the transports admit their
    /// callers by token ([`Service::admit`]).
    pub fn command_line<O: Operation>(&self) -> Grant<O> {
        Grant {
            principal: Arc::new(Principal::command_line()),
            operation: PhantomData,
        }
    }

    /// Admits the bearer of `token` to operation `O`: 401 for an unknown token, 403 without
    /// `O`'s permission, 429 over the rate when `O` is rate limited.
    pub async fn admit<O: Operation>(&self, token: &str) -> Result<Grant<O>, Error> {
        let principal = self.tokens.authenticate(token).await?;
        if !principal.may(O::PERMISSION) {
            return Err(Error::PermissionDenied(O::PERMISSION));
        }
        if O::RATE_LIMITED
            && let Some(limiter) = &self.limiter
            && let Some(id) = &principal.id
        {
            limiter.check_key(id).map_err(|not_until| {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                Error::RateLimited {
                    message: "too many requests for this token; slow down",
                    retry_after: not_until.wait_time_from(now),
                }
            })?;
        }
        Ok(Grant {
            principal,
            operation: PhantomData,
        })
    }

    /// The live generator of `generator_type`.
    pub fn get(&self, _: &Grant<ReadGenerators>, generator_type: GeneratorType) -> GeneratorView {
        GeneratorView::of(&self.control.get(generator_type))
    }

    /// The generators `query` asks for, paged.
    pub fn search(&self, _: &Grant<ReadGenerators>, query: &SearchQuery) -> SearchResult {
        let instance = self.control.instance();
        let mut generators: Vec<GeneratorView> = GeneratorType::ALL
            .into_iter()
            .filter(|t| query.types.as_ref().is_none_or(|types| types.contains(t)))
            .map(|t| GeneratorView::of(&instance.load(t)))
            .collect();
        if !query.ascending {
            generators.reverse();
        }
        let processed_sequence = GeneratorType::ALL
            .into_iter()
            .map(|t| instance.load(t).version().sequence)
            .max()
            .unwrap_or(0);
        let total = generators.len() as u64;
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            usize::try_from(query.limit).unwrap_or(usize::MAX)
        };
        let generators = generators
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(limit)
            .collect();
        SearchResult {
            total,
            processed_sequence,
            view_timestamp: SystemTime::now(),
            generators,
        }
    }

    /// Replaces the configuration of `draft`'s type with `draft`, checked once here against
    /// every rule, and recorded as changed by the grant's principal. Returns the live
    /// snapshot once the change is durable: a new sequence, or the same snapshot when the
    /// draft equals the live configuration (nothing is written then). A refused update
    /// changes nothing.
    pub async fn update(
        &self,
        grant: &Grant<UpdateGenerator>,
        draft: ConfigDraft,
    ) -> Result<GeneratorView, Error> {
        let config = GeneratorConfig::new(&draft)?;
        let generator_type = config.generator_type();
        let before = self.control.get(generator_type).version().sequence;
        let control = Arc::clone(&self.control);
        let creator = crate::store::Author {
            name: grant.principal.name.clone(),
            token_id: grant.principal.token_id().map(str::to_owned),
        };
        // The update waits for the disk: on a blocking thread, never an async worker.
        let snapshot = tokio::task::spawn_blocking(move || control.update_by(config, &creator))
            .await
            .map_err(|_| Error::Internal("the update was interrupted"))?
            .map_err(|e| {
                Error::store(
                    e,
                    "the store cannot record the change",
                    "the store is damaged",
                )
            })?;
        if snapshot.version().sequence != before {
            self.metrics.config_changed(generator_type);
            tracing::info!(
                generator_type = %generator_type,
                sequence = snapshot.version().sequence,
                by = %grant.principal.name,
                "configuration changed"
            );
        }
        Ok(GeneratorView::of(&snapshot))
    }

    /// Whether the store answers now. Asked on a blocking thread: the store may be slow.
    pub async fn store_state(&self) -> StoreState {
        let control = Arc::clone(&self.control);
        match tokio::task::spawn_blocking(move || control.store().check()).await {
            Ok(Ok(())) => StoreState::Up,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "store down");
                StoreState::Down
            }
            Err(_) => StoreState::Down,
        }
    }
}

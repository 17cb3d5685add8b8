//! `secretgen serve`: opens the store, makes sure a token exists, binds its own listener and
//! serves the API until SIGTERM or SIGINT, then finishes the requests in flight.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, web};

use crate::api::{self, AppState};
use crate::grpc::{GrpcOptions, GrpcServer};
use crate::net::conn::{self, Timeouts};
use crate::net::metrics::{ConnectionMetrics, Port};
use crate::net::tls::{self, Reloadable};
use secretgen_core::control::ControlPlane;
use secretgen_core::metrics::Metrics;
use secretgen_core::service::{CodeSettings, Service};
use secretgen_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use secretgen_core::token::{self, Permission, Token};
use secretgen_core::verification::{Keyring, Limits};
use secretgen_engine::registry::InstanceId;

/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connections served at once when `--max-connections` is not given. A connection costs up
/// to about 0.5 MiB at its worst (a client that pipelines `_generate` with count 1000 and
/// never reads: a full 128 KiB read buffer, 16 queued requests, the answers waiting to be
/// written); 256 such connections peaked at 147 MiB (`benches/attacks/run.sh`), within the
/// 256 MiB the server must stay under. More connections wait to be accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// What `serve` needs to start.
#[derive(Debug)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Address to serve gRPC on (port 0 picks a free port); `None` serves no gRPC.
    pub grpc_listen: Option<String>,
    /// Where the configuration and the tokens are kept.
    pub store: StoreSettings,
    /// The instance id for a first start (must match the stored one later).
    pub instance_id: Option<InstanceId>,
    /// A token to store as the first admin token instead of making one.
    pub bootstrap_token: Option<Token>,
    /// Worker threads; `None` for one per core.
    pub workers: Option<usize>,
    /// Data-plane requests per second per token; `None` for no limit.
    pub rate_limit: Option<std::num::NonZeroU32>,
    /// Serve HTTPS with this certificate chain and key; `None` for plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Record and serve Prometheus metrics.
    pub metrics: bool,
    /// How long a request body may take to arrive whole before the request is answered 408.
    pub body_timeout: Duration,
    /// Connections served at once, over all workers; more wait to be accepted.
    pub max_connections: std::num::NonZeroUsize,
    /// SPEC section 13's `--send-timeout` and `--idle-timeout`, on both ports.
    pub timeouts: Timeouts,
    /// The keys and limits of issued codes (SPEC section 12).
    pub codes: CodeKeys,
}

/// Where the keys of issued codes come from, and their limits.
#[derive(Clone, Debug, Default)]
pub struct CodeKeys {
    /// The key file; `None`: `verify.key` in the embedded store's data directory, made on
    /// first start (a PostgreSQL deployment must name one: its replicas share it).
    pub key_file: Option<PathBuf>,
    /// The limits on attempts and issues.
    pub limits: Limits,
}

/// The key file the embedded store makes in its data directory on first start.
pub const DEFAULT_KEY_FILE: &str = "verify.key";

impl CodeKeys {
    /// The keys named by the key file, or read from (made in, the first time) the embedded
    /// store's data directory.
    fn load(&self, store: &StoreSettings) -> Result<Keyring, StartError> {
        match (&self.key_file, store) {
            (Some(file), _) => Ok(Keyring::load(file)?),
            (None, StoreSettings::Embedded(dir)) => {
                let path = dir.join(DEFAULT_KEY_FILE);
                let (keys, created) = Keyring::load_or_create(&path)?;
                if created {
                    tracing::info!(
                        path = %path.display(),
                        "made a new key for issued codes (keep it with the data directory: \
                         `secretgen backup` does not copy it)"
                    );
                }
                Ok(keys)
            }
            (None, StoreSettings::Postgres { .. }) => Err(StartError::NoVerifyKey),
        }
    }
}

/// Which store a server keeps its log and tokens in.
#[derive(Clone, Debug)]
pub enum StoreSettings {
    /// The embedded SQLite store in this data directory; one server per directory.
    Embedded(PathBuf),
    /// A PostgreSQL database that any number of replicas share.
    Postgres {
        /// The database's URL.
        url: String,
        /// Pool size and deadlines.
        options: PostgresOptions,
    },
}

impl StoreSettings {
    /// Opens the store: the embedded one as its directory's writer, a PostgreSQL one
    /// connected (its schema made if the database is empty).
    pub fn open(&self) -> Result<Arc<dyn Store>, secretgen_core::store::StoreError> {
        Ok(match self {
            StoreSettings::Embedded(dir) => Arc::new(SqliteStore::open(dir)?),
            StoreSettings::Postgres { url, options } => {
                Arc::new(PostgresStore::connect(url, *options)?)
            }
        })
    }
}

pub use crate::net::tls::TlsFiles;

/// Why a server could not start. Nothing was written when it is returned.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--workers` out of range.
    #[error("--workers must be between 1 and 512, got {0}")]
    Workers(usize),
    /// The TLS files make no configuration.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    /// SIGHUP's handler could not be installed.
    #[error("cannot handle SIGHUP: {0}")]
    Signal(std::io::Error),
    /// The address could not be bound or read back.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] secretgen_core::store::StoreError),
    /// The control plane could not open on the store.
    #[error(transparent)]
    Open(#[from] secretgen_core::control::OpenError),
    /// A key file of issued codes that cannot be read or made.
    #[error("verify key file {0}")]
    VerifyKey(#[from] secretgen_core::verification::KeyError),
    /// Replicas on PostgreSQL must share a key file.
    #[error(
        "--verify-key-file is required with --database-url: every replica must hash issued \
         codes under the same keys (one `ID:BASE64` of 32 random bytes a line)"
    )]
    NoVerifyKey,
    /// The first admin token could not be made.
    #[error("cannot make the first admin token: {0}")]
    Token(#[from] token::TokenError),
    /// The gRPC server could not start.
    #[error(transparent)]
    Grpc(#[from] crate::grpc::GrpcError),
    /// The server failed while serving.
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// A server, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    https: bool,
    server: Server,
    grpc: Option<GrpcServer>,
    new_admin_token: Option<Token>,
}

impl Application {
    /// Reads the TLS files and binds the listener first, then opens the store, then makes
    /// sure a token exists, last: a start that fails writes nothing, and a first admin
    /// token is stored only when nothing after it can fail (it is then printed at once by
    /// [`serve`]). Must be called inside an actix system.
    pub fn build(settings: Settings) -> Result<Application, StartError> {
        if let Some(workers) = settings.workers
            && !(1..=512).contains(&workers)
        {
            return Err(StartError::Workers(workers));
        }
        // Each port offers its own protocols: HTTP/1.1 on the HTTP port; HTTP/2 (and
        // HTTP/1.1 for grpc-web) on the gRPC port.
        let http_tls = match &settings.tls {
            Some(files) => Some(Arc::new(Reloadable::new(files.clone(), &[b"http/1.1"])?)),
            None => None,
        };
        let listen_error = |source| StartError::Listen {
            addr: settings.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.listen).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let grpc_listener = match &settings.grpc_listen {
            Some(grpc) => Some(
                TcpListener::bind(grpc).map_err(|source| StartError::Listen {
                    addr: grpc.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let grpc_tls = match &settings.tls {
            Some(files) if grpc_listener.is_some() => Some(Arc::new(Reloadable::new(
                files.clone(),
                &[b"h2", b"http/1.1"],
            )?)),
            _ => None,
        };
        tls::reload_on_hangup(http_tls.iter().chain(&grpc_tls).cloned().collect())
            .map_err(StartError::Signal)?;
        // A named key file is read before anything is written; the embedded store's own is
        // made once its directory is the store's.
        let named_keys = match &settings.codes.key_file {
            Some(_) => Some(settings.codes.load(&settings.store)?),
            None if matches!(settings.store, StoreSettings::Postgres { .. }) => {
                return Err(StartError::NoVerifyKey);
            }
            None => None,
        };
        let store = settings.store.open()?;
        let control = ControlPlane::open(Arc::clone(&store), settings.instance_id)?;
        let keys = match named_keys {
            Some(keys) => keys,
            None => settings.codes.load(&settings.store)?,
        };
        // One registry: the core's families, then each transport's and the log's.
        let mut metrics = if settings.metrics {
            Metrics::new()
        } else {
            Metrics::disabled()
        };
        let enabled = metrics.enabled();
        let http_metrics = Arc::new(api::metrics::HttpMetrics::register(
            metrics.registry_mut(),
            enabled,
        ));
        let grpc_metrics = Arc::new(crate::grpc::metrics::GrpcMetrics::register(
            metrics.registry_mut(),
            enabled,
        ));
        let connections = Arc::new(ConnectionMetrics::register(metrics.registry_mut()));
        crate::logging::register_metric(metrics.registry_mut());
        let service = Arc::new(
            Service::new(Arc::new(control), settings.rate_limit, Arc::new(metrics))?.with_codes(
                CodeSettings {
                    keys: Arc::new(keys),
                    limits: settings.codes.limits,
                },
            ),
        );
        secretgen_core::service::purge::start(&service);
        // Changes other processes make to the store (replicas on one PostgreSQL database)
        // are applied as they come; the embedded store has no other writer to follow.
        secretgen_core::service::follow::follow(&service);
        let grpc_service = Arc::clone(&service);
        if http_tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "serving plain HTTP beyond loopback: tokens and codes cross the network in \
                 clear; use --tls-cert and --tls-key"
            );
        }
        let https = http_tls.is_some();
        let mut server = Server::build()
            .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
            .max_concurrent_connections(per_worker(settings.max_connections, settings.workers));
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        let http = HttpPort {
            shutdown: server.graceful_shutdown_signal(),
            state: web::Data::new(AppState::new(
                service,
                settings.body_timeout,
                http_metrics,
                Arc::clone(&connections),
            )),
            addr,
            tls: http_tls,
            timeouts: settings.timeouts,
        };
        let server = server
            .listen("secretgen-http", listener, move || http.service())
            .map_err(|source| StartError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let grpc = match grpc_listener {
            Some(listener) => {
                let threads = settings.workers.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
                });
                Some(GrpcServer::start(
                    listener,
                    grpc_service,
                    GrpcOptions {
                        threads,
                        max_connections: settings.max_connections.get(),
                        tls: grpc_tls,
                        timeouts: settings.timeouts,
                        metrics: grpc_metrics,
                        connections,
                    },
                )?)
            }
            None => None,
        };
        let new_admin_token = bootstrap(store.as_ref(), settings.bootstrap_token)?;
        Ok(Application {
            addr,
            https,
            server: server.run(),
            grpc,
            new_admin_token,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The address gRPC is served on, when it is.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(GrpcServer::addr)
    }

    /// The gRPC address as SPEC section 9 prints it, `grpc://ADDR`, when gRPC is served.
    pub fn grpc_url(&self) -> Option<String> {
        self.grpc_addr().map(|addr| format!("grpc://{addr}"))
    }

    /// The admin token made on this first start, once.
    pub fn take_new_admin_token(&mut self) -> Option<Token> {
        self.new_admin_token.take()
    }

    /// A handle that stops the server from outside (`stop(false)` at once, `stop(true)`
    /// after the requests in flight), as a test that runs it in its own process does.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (or the handle stops it); requests in flight are
    /// finished first, then gRPC stops the same way.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let served = (&mut self.server).await;
        if let Some(grpc) = self.grpc.take() {
            grpc.stop(SHUTDOWN_GRACE).await;
        }
        served
    }
}

/// What each HTTP worker needs to make its service.
#[derive(Clone)]
struct HttpPort {
    /// Fires when the server stops: kept-alive connections close at once.
    shutdown: actix_server::GracefulShutdownSignal,
    state: web::Data<AppState>,
    addr: SocketAddr,
    tls: Option<Arc<Reloadable>>,
    timeouts: Timeouts,
}

impl HttpPort {
    /// A worker's service: a connection is accepted and watched ([`conn::accept`]: the send
    /// and idle timeouts, TLS with the configuration of the moment), then served as HTTP/1.1
    /// by actix-http with the API's app. actix-http's own timeouts match the idle one: a
    /// request head must arrive within it, and a kept-alive connection is closed after it.
    fn service(
        &self,
    ) -> impl actix_service::ServiceFactory<
        actix_web::rt::net::TcpStream,
        Config = (),
        Response = (),
        Error = actix_http::error::DispatchError,
        InitError = (),
    > + use<> {
        use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
        let state = self.state.clone();
        let app = App::new()
            .app_data(state.clone())
            .wrap(from_fn(api::observe_requests))
            .configure(api::routes)
            .default_service(web::to(api::not_found))
            .into_factory()
            .map_err(|e: actix_web::Error| e.error_response());
        let (addr, secure) = (self.addr, self.tls.is_some());
        let host = addr.to_string();
        let shutdown = self.shutdown.clone();
        let http = actix_http::HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(actix_http::KeepAlive::Timeout(self.timeouts.idle))
            .client_request_timeout(self.timeouts.idle)
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr(addr)
            .on_connect_ext(|stream: &conn::Stream, data| {
                data.insert(Arc::clone(stream.activity()));
            })
            .finish(map_config(app, move |()| {
                actix_web::dev::AppConfig::__priv_test_new(secure, host.clone(), addr)
            }));
        let (tls, timeouts) = (self.tls.clone(), self.timeouts);
        fn_service(move |tcp: actix_web::rt::net::TcpStream| {
            let (tls, state) = (tls.clone(), state.clone());
            async move {
                let metrics = Arc::clone(state.connections());
                let closed = move |reason| metrics.closed(Port::Http, reason);
                let stream = conn::accept(tcp, timeouts, tls.as_deref(), closed).await?;
                let peer = stream.peer_addr();
                Ok::<_, actix_http::error::DispatchError>((
                    stream,
                    actix_http::Protocol::Http1,
                    peer,
                ))
            }
        })
        .and_then(http)
    }
}

/// actix counts connections per worker: `total` split over the workers, rounded up.
fn per_worker(total: std::num::NonZeroUsize, workers: Option<usize>) -> usize {
    // actix's own default: one worker per core.
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    total.get().div_ceil(workers.max(1))
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Makes sure the store has a token: on a first start, stores `given` or a new one (which
/// it returns, to be shown once). A given token is stored only when the store has none.
fn bootstrap(store: &dyn Store, given: Option<Token>) -> Result<Option<Token>, StartError> {
    if store.token_count()? > 0 {
        warn_if_not_stored(store, given.as_ref())?;
        return Ok(None);
    }
    let (token, shown) = match given {
        Some(token) => (token, false),
        None => (
            Token::generate().map_err(|_| token::TokenError::Entropy)?,
            true,
        ),
    };
    let record = token::record(&token, token::BOOTSTRAP_TOKEN_NAME, &Permission::ALL, None)?;
    // Replicas starting together on an empty database: only the first stores its token.
    if !store.add_first_token(&record, secretgen_core::control::SYSTEM_CREATOR)? {
        warn_if_not_stored(store, (!shown).then_some(&token))?;
        return Ok(None);
    }
    tracing::info!(token_id = %record.id, name = token::BOOTSTRAP_TOKEN_NAME, "first admin token stored");
    Ok(shown.then_some(token))
}

/// Warns when `given`, a bootstrap token, is not among the stored tokens.
fn warn_if_not_stored(store: &dyn Store, given: Option<&Token>) -> Result<(), StartError> {
    if let Some(given) = given
        && store.token_by_hash(&given.hash())?.is_none()
    {
        tracing::warn!(
            "the bootstrap token was not stored: the store already has tokens \
             (create more with `secretgen token create`)"
        );
    }
    Ok(())
}

/// Runs `secretgen serve`: builds the server, prints a new admin token once (to standard
/// output, never to the log) and the address, and serves until stopped.
pub fn serve(settings: Settings) -> Result<(), StartError> {
    actix_web::rt::System::new().block_on(async move {
        let mut app = Application::build(settings)?;
        let (url, grpc_url) = (app.url(), app.grpc_url());
        let token = app.take_new_admin_token();
        // The server's first poll sets up its SIGTERM and SIGINT handling: it runs before
        // the addresses are printed, so that a signal sent once they are is always handled
        // (gRPC answers before then; a client that only used gRPC could otherwise stop a
        // server that had not yet listened for signals).
        let running = actix_web::rt::spawn(app.run_until_stopped());
        actix_web::rt::task::yield_now().await;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Some(token) = token {
                let _ = writeln!(
                    out,
                    "first start: an admin token with every permission, shown this once:\n{}",
                    token.expose()
                );
            }
            let _ = writeln!(out, "listening on {url}");
            if let Some(grpc) = &grpc_url {
                let _ = writeln!(out, "listening on {grpc}");
            }
            let _ = out.flush();
        }
        tracing::info!(url = %url, grpc = grpc_url.as_deref().unwrap_or("off"), "secretgen serving");
        running
            .await
            .map_err(|_| StartError::Serve(std::io::Error::other("the server task failed")))?
            .map_err(StartError::Serve)?;
        tracing::info!("secretgen stopped");
        Ok(())
    })
}

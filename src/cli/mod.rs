//! Command-line parsing and the `generate` command.

use std::io::{self, Write};
use std::process::ExitCode;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use secretgen::store::PostgresOptions;
use secretgen::token::{self, Token};
use secretgen::{InstanceId, server};
use secretgen_core::verification::Limits;
use zeroize::Zeroize;

mod generate;
mod store;
mod tokens;

/// Cryptographically random, exactly uniform secrets and one-time codes.
#[derive(Debug, Parser)]
#[command(name = "secretgen", version, about, arg_required_else_help = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server: ZITADEL's secret-generator admin API and the code endpoint.
    Serve(Box<ServeArgs>),
    /// Print codes of one generator type, one per line.
    Generate(generate::GenerateArgs),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Copy the store, consistently, while a server may be running on it.
    Backup(store::BackupArgs),
    /// Read the whole store without changing it and report what it holds or what is damaged.
    Check(store::CheckArgs),
    /// Copy an embedded store into an empty PostgreSQL database and check the copy.
    Migrate(store::MigrateArgs),
}

/// `secretgen serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "SECRETGEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Address to serve gRPC on (port 0 picks a free one), or `off`.
    #[arg(long, env = "SECRETGEN_GRPC_LISTEN", default_value = "127.0.0.1:8081")]
    grpc_listen: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    /// Instance id for a first start; generated once and stored when not given.
    #[arg(long, env = "SECRETGEN_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Store this token as the first admin token instead of printing a new one (it shows in
    /// `ps`: prefer --bootstrap-token-file).
    #[arg(long, env = "SECRETGEN_BOOTSTRAP_TOKEN", hide_env_values = true)]
    bootstrap_token: Option<String>,
    /// Read the first admin token from this file (one line) instead of printing a new one.
    #[arg(
        long,
        env = "SECRETGEN_BOOTSTRAP_TOKEN_FILE",
        conflicts_with = "bootstrap_token"
    )]
    bootstrap_token_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "SECRETGEN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Data-plane requests per second per token; 0 turns the limit off.
    #[arg(long, env = "SECRETGEN_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "SECRETGEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SECRETGEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Record and serve Prometheus metrics at /metrics.
    #[arg(long, env = "SECRETGEN_METRICS", default_value = "on", value_parser = ["on", "off"])]
    metrics: String,
    /// Worker threads, 1 to 512 (default: one per core).
    #[arg(long, env = "SECRETGEN_WORKERS", value_parser = clap::value_parser!(u16).range(1..=512))]
    workers: Option<u16>,
    /// Seconds a request body may take to arrive whole (1 to 3600); a slower one is
    /// answered 408 and its connection closed.
    #[arg(long, env = "SECRETGEN_BODY_TIMEOUT", value_name = "SECONDS",
          default_value_t = secretgen::api::DEFAULT_BODY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// Connections served at once, over all workers (each costs up to about 0.5 MiB under
    /// attack); more wait to be accepted.
    #[arg(long, env = "SECRETGEN_MAX_CONNECTIONS",
          default_value_t = server::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// How long a connection with an answer to send may go without the peer reading any
    /// of it before it is closed (`10s`, `500ms`; a plain number is seconds; 100ms to 1h).
    #[arg(long, env = "SECRETGEN_SEND_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = timeout)]
    send_timeout: std::time::Duration,
    /// How long a connection may stay open with no request in flight (no request head, TLS
    /// handshake or HTTP/2 preface yet, or none since the last answer) before it is closed.
    #[arg(long, env = "SECRETGEN_IDLE_TIMEOUT", value_name = "DURATION", default_value = "10s",
          value_parser = timeout)]
    idle_timeout: std::time::Duration,
    #[command(flatten)]
    verify: VerifyArgs,
}

/// Issuing and verifying codes (SPEC section 12): the key file and the limits.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// The keys codes and subjects are hashed under: one `ID:BASE64` (32 random bytes) a
    /// line; the first signs, all verify. Default with the embedded store: `verify.key` in the
    /// data directory, made on first start. Required with --database-url.
    #[arg(long, env = "SECRETGEN_VERIFY_KEY_FILE", value_name = "FILE")]
    verify_key_file: Option<PathBuf>,
    /// Checks of one issued code before it is dead.
    #[arg(long, env = "SECRETGEN_VERIFY_MAX_ATTEMPTS", default_value_t = 5)]
    verify_max_attempts: u32,
    /// Consecutive failed verifications of a subject that lock it (at most 100).
    #[arg(long, env = "SECRETGEN_VERIFY_LOCK_AFTER", default_value_t = 100)]
    verify_lock_after: u32,
    /// How long a lock lasts.
    #[arg(long, env = "SECRETGEN_VERIFY_LOCK_FOR", value_name = "DURATION",
          default_value = "86400s", value_parser = duration)]
    verify_lock_for: std::time::Duration,
    /// Codes of one subject pending at once; another retires the oldest.
    #[arg(long, env = "SECRETGEN_VERIFY_PENDING", default_value_t = 3)]
    verify_pending: u32,
    /// The least time between two codes issued to one subject.
    #[arg(long, env = "SECRETGEN_VERIFY_RESEND_AFTER", value_name = "DURATION",
          default_value = "30s", value_parser = duration)]
    verify_resend_after: std::time::Duration,
    /// Codes issued to one subject within --verify-window.
    #[arg(long, env = "SECRETGEN_VERIFY_ISSUES_PER_WINDOW", default_value_t = 5)]
    verify_issues_per_window: u32,
    /// The window of --verify-issues-per-window; expired codes are also kept this long
    /// (verifying one answers EXPIRED), then purged.
    #[arg(long, env = "SECRETGEN_VERIFY_WINDOW", value_name = "DURATION",
          default_value = "600s", value_parser = duration)]
    verify_window: std::time::Duration,
}

impl VerifyArgs {
    /// The limits, each in its range.
    fn limits(&self) -> Result<Limits, CliError> {
        Limits {
            max_attempts: self.verify_max_attempts,
            lock_after: self.verify_lock_after,
            lock_for: self.verify_lock_for,
            pending: self.verify_pending,
            resend_after: self.verify_resend_after,
            issues_per_window: self.verify_issues_per_window,
            window: self.verify_window,
        }
        .check()
        .map_err(|e| CliError::flag(format!("--{}", e.flag), e.why))
    }
}

/// A duration flag: a humantime duration (`30s`, `10m`) or a number of seconds; never
/// negative.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<u64>() {
        Ok(seconds) => Ok(std::time::Duration::from_secs(seconds)),
        Err(_) if text.trim_start().starts_with('-') => Err("must not be negative".to_owned()),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    }
}

/// A timeout flag: a humantime duration (`10s`, `500ms`) or a number of seconds, from
/// 100 ms to an hour.
fn timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string())?,
    };
    let range = std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600);
    if range.contains(&duration) {
        Ok(duration)
    } else {
        Err("must be between 100ms and 1h".to_owned())
    }
}

/// The data directory flag, shared by the commands that use the store.
#[derive(Debug, Args)]
struct DataDir {
    /// Directory of the embedded store.
    #[arg(
        long = "data-dir",
        env = "SECRETGEN_DATA_DIR",
        default_value = "./data"
    )]
    path: PathBuf,
}

/// Where the store is: the embedded one in a data directory, or a PostgreSQL database.
#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// A PostgreSQL database shared by every replica (postgres://user@host:port/db) instead
    /// of the embedded store in --data-dir.
    #[arg(long, env = "SECRETGEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// How `serve` uses a PostgreSQL database.
#[derive(Debug, Args)]
struct DatabaseArgs {
    /// Connections in the PostgreSQL pool (reads and writes; the listener has its own).
    #[arg(long, env = "SECRETGEN_DATABASE_POOL_SIZE",
          default_value_t = PostgresOptions::default().pool_size as u32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    database_pool_size: u32,
    /// Milliseconds a connection to PostgreSQL may take to open.
    #[arg(long, env = "SECRETGEN_DATABASE_CONNECT_TIMEOUT", value_name = "MS",
          default_value_t = PostgresOptions::default().connect_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    database_connect_timeout: u64,
    /// Milliseconds one database operation may take before it fails (a write then answers
    /// 503). Each session's statement_timeout too; half of it is its lock_timeout, and (at
    /// most 5 s) its idle_in_transaction_session_timeout.
    #[arg(long, env = "SECRETGEN_DATABASE_TIMEOUT", value_name = "MS",
          default_value_t = PostgresOptions::default().timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    database_timeout: u64,
    /// Seconds between re-reads of the log, the safety net beside the pushed changes.
    #[arg(long, env = "SECRETGEN_DATABASE_REREAD", value_name = "SECONDS",
          default_value_t = PostgresOptions::default().reread_interval.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    database_reread: u64,
}

impl DatabaseArgs {
    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: self.database_pool_size as usize,
            connect_timeout: std::time::Duration::from_millis(self.database_connect_timeout),
            timeout: std::time::Duration::from_millis(self.database_timeout),
            reread_interval: std::time::Duration::from_secs(self.database_reread),
        }
    }
}

impl StoreArgs {
    fn settings(&self, options: PostgresOptions) -> server::StoreSettings {
        match &self.database_url {
            Some(url) => server::StoreSettings::Postgres {
                url: url.clone(),
                options,
            },
            None => server::StoreSettings::Embedded(self.data_dir.path.clone()),
        }
    }
}

/// Parses the command line and runs it; every failure is one line on standard error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&clap_reason(&e)),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Generate(args) => generate::generate(&args),
        Command::Token(command) => tokens::run(command),
        Command::Backup(args) => store::backup(&args),
        Command::Check(args) => store::check(&args),
        Command::Migrate(args) => store::migrate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(&reason.to_string()),
    }
}

/// Why a command failed: printed as one line on standard error, exit status 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A flag's value, with the flag named.
    #[error("{flag}: {why}")]
    Flag {
        /// The flag.
        flag: String,
        /// What is wrong.
        why: String,
    },
    #[error(transparent)]
    Start(#[from] server::StartError),
    #[error(transparent)]
    Store(#[from] secretgen::StoreError),
    #[error(transparent)]
    Open(#[from] secretgen::OpenError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error(transparent)]
    Config(#[from] secretgen::ConfigError),
    #[error(transparent)]
    Type(#[from] secretgen::generator_type::ParseGeneratorTypeError),
    #[error(transparent)]
    Entropy(#[from] secretgen::EntropyError),
    #[error(transparent)]
    Fill(#[from] secretgen::FillError),
    /// Standard output could not be written.
    #[error("{what}: {source}")]
    Output {
        /// What was being written.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// A use case refused or failed.
    #[error("{}", service_words(.0))]
    Service(#[from] secretgen_core::service::Error),
    /// `check` found a store that is readable but incomplete.
    #[error("{0}")]
    Incomplete(String),
}

/// A use case's error as one line: the rules a request broke (each, as the API lists them),
/// or the error's own words.
fn service_words(e: &secretgen_core::service::Error) -> String {
    use secretgen_core::service::Error;
    match e {
        Error::Invalid { violations, .. } => violations
            .iter()
            .map(|v| v.description.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        Error::AlreadyExists { violation, .. } => violation.description.clone(),
        Error::Store { message, source } => format!("{message}: {source}"),
        other => other.to_string(),
    }
}

impl CliError {
    fn flag(flag: impl Into<String>, why: impl std::fmt::Display) -> CliError {
        CliError::Flag {
            flag: flag.into(),
            why: why.to_string(),
        }
    }
}

fn fail(reason: &str) -> ExitCode {
    // Not `eprintln!`, which panics when standard error cannot be written: the exit status
    // still tells.
    let _ = writeln!(io::stderr(), "secretgen: {reason}");
    ExitCode::from(2)
}

/// Clap's message up to its usage part, on one line, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let reason: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let reason = reason.join(" ");
    format!(
        "{} (see secretgen --help)",
        reason.strip_prefix("error: ").unwrap_or(&reason)
    )
}

fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_logging(&args.log_format);
    let instance_id = args
        .instance_id
        .as_deref()
        .map(InstanceId::new)
        .transpose()
        .map_err(|e| CliError::flag("--instance-id", e))?;
    let bootstrap_token = match (&args.bootstrap_token, &args.bootstrap_token_file) {
        (Some(given), _) => {
            Some(Token::from_given(given).map_err(|e| CliError::flag("--bootstrap-token", e))?)
        }
        (None, Some(file)) => Some(token_from_file(file)?),
        (None, None) => None,
    };
    Ok(server::serve(server::Settings {
        listen: args.listen,
        grpc_listen: (!args.grpc_listen.eq_ignore_ascii_case("off")).then_some(args.grpc_listen),
        store: args.store.settings(args.database.options()),
        instance_id,
        bootstrap_token,
        workers: args.workers.map(usize::from),
        rate_limit: std::num::NonZeroU32::new(args.rate_limit),
        metrics: args.metrics == "on",
        body_timeout: std::time::Duration::from_secs(args.body_timeout),
        max_connections: std::num::NonZeroUsize::new(args.max_connections as usize)
            .ok_or_else(|| CliError::flag("--max-connections", "must be at least 1"))?,
        timeouts: secretgen::net::conn::Timeouts {
            send: args.send_timeout,
            idle: args.idle_timeout,
        },
        codes: server::CodeKeys {
            key_file: args.verify.verify_key_file.clone(),
            limits: args.verify.limits()?,
        },
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(server::TlsFiles { cert, key }),
            _ => None,
        },
    })?)
}

/// The token in `file`: its one line, without the line's end.
fn token_from_file(file: &Path) -> Result<Token, CliError> {
    let what = format!("--bootstrap-token-file {}", file.display());
    let mut text = std::fs::read_to_string(file).map_err(|e| CliError::flag(&what, e))?;
    let result = Token::from_given(text.trim_end_matches(['\n', '\r']))
        .map_err(|e| CliError::flag(&what, e));
    text.zeroize();
    result
}

/// Logs go to standard error, as text or JSON lines; `SECRETGEN_LOG` filters them
/// (default `info`). A line standard error cannot take is dropped and counted, never a
/// panic (see `secretgen::logging`).
fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SECRETGEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(secretgen::logging::Stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

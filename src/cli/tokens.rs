//! `secretgen token create | list | revoke`: the token use cases of the routes
//! (`secretgen_core::service`), called by the operator at the machine with the command
//! line's grant ([`Service::command_line`]): every permission, recorded as `command line`
//! with no token id. A server running on the same directory or database sees the change at
//! once, as it sees a change made through its API.

use std::io::{self, Write};
use std::sync::Arc;

use clap::{Args, Subcommand};
use secretgen_core::control::ControlPlane;
use secretgen_core::metrics::Metrics;
use secretgen_core::service::{NewToken, Service, TokenQuery};
use secretgen_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store, StoreErrorKind};

use super::{CliError, StoreArgs};

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create a token, store its hash and print it, once, alone on standard output.
    Create(TokenCreateArgs),
    /// List the tokens: id, name, permissions, creation and expiry; never a token or a hash.
    List(TokenListArgs),
    /// Revoke a token by its id; a server running on the store refuses it at once.
    Revoke(TokenRevokeArgs),
}

/// `secretgen token create --name NAME --permissions LIST`.
#[derive(Debug, Args)]
pub(super) struct TokenCreateArgs {
    /// The token's name; changes made with the token are recorded under it.
    #[arg(long)]
    name: String,
    /// Comma-separated: iam.read, iam.write, codes.generate.
    #[arg(long)]
    permissions: String,
    /// How long the token lives, in whole seconds (`86400s`); it never expires without.
    #[arg(long, value_name = "DURATION")]
    expiry: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// `secretgen token list`.
#[derive(Debug, Args)]
pub(super) struct TokenListArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// `secretgen token revoke ID`.
#[derive(Debug, Args)]
pub(super) struct TokenRevokeArgs {
    /// The token's id (`tok_…`, as `token list` shows it).
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs a token command.
pub(super) fn run(command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => create(args),
        TokenCommand::List(args) => list(&args),
        TokenCommand::Revoke(args) => revoke(&args),
    }
}

/// The use cases over `store` (its instance and defaults written first when it has none, as
/// a server would), on a runtime of their own: no rate limit, no metrics.
fn service(store: Arc<dyn Store>) -> Result<(Service, tokio::runtime::Runtime), CliError> {
    let control = ControlPlane::open(store, None)?;
    let service = Service::new(Arc::new(control), None, Arc::new(Metrics::disabled()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Output {
            what: "cannot start the command's runtime",
            source,
        })?;
    Ok((service, runtime))
}

/// The store of a command that writes: created when the data directory holds none, opened
/// beside a running server when one holds it.
fn writable_store(store: &StoreArgs) -> Result<Arc<dyn Store>, CliError> {
    Ok(match &store.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url, PostgresOptions::default())?),
        None => {
            let dir = &store.data_dir.path;
            match SqliteStore::open(dir) {
                Ok(store) => Arc::new(store),
                Err(e) if e.kind() == StoreErrorKind::Locked => {
                    Arc::new(SqliteStore::open_shared(dir)?)
                }
                Err(e) => return Err(e.into()),
            }
        }
    })
}

/// Creates a token through the API's use case (its rules, checked once) and prints it.
fn create(args: TokenCreateArgs) -> Result<(), CliError> {
    let new = NewToken {
        name: args.name,
        permissions: args
            .permissions
            .split(',')
            .map(|p| p.trim().to_owned())
            .collect(),
        expiry: args.expiry,
    };
    // Refused before the store is opened: a refused command creates no data directory.
    new.check()?;
    let (service, runtime) = service(writable_store(&args.store)?)?;
    let created = runtime.block_on(service.create_token(&service.command_line(), new))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", created.token.expose())
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Output {
            what: "the token was stored but could not be printed",
            source,
        })
}

/// `secretgen token list`: one line per token, oldest first. The store is only read: a store
/// without an instance has no tokens.
fn list(args: &TokenListArgs) -> Result<(), CliError> {
    let store: Arc<dyn Store> = match &args.store.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url, PostgresOptions::default())?),
        None => Arc::new(SqliteStore::open_read_only(&args.store.data_dir.path)?),
    };
    if store.default_instance()?.is_none() {
        return Ok(());
    }
    let (service, runtime) = service(store)?;
    let page =
        runtime.block_on(service.list_tokens(&service.command_line(), TokenQuery::default()))?;
    let mut out = io::stdout().lock();
    let time = |t: std::time::SystemTime| humantime::format_rfc3339_micros(t).to_string();
    for t in page.tokens {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\tcreated {}\t{}",
            t.id,
            t.name,
            t.permissions.join(","),
            time(t.created_at),
            t.expires_at
                .map_or("never expires".to_owned(), |at| format!(
                    "expires {}",
                    time(at)
                ))
        );
    }
    Ok(())
}

/// `secretgen token revoke ID`: the token, then every token it created, recursively.
fn revoke(args: &TokenRevokeArgs) -> Result<(), CliError> {
    let (service, runtime) = service(writable_store(&args.store)?)?;
    let revoked = runtime.block_on(service.revoke_token(&service.command_line(), &args.id))?;
    let mut out = io::stdout().lock();
    for id in &revoked.ids {
        let _ = writeln!(out, "revoked {id}");
    }
    Ok(())
}

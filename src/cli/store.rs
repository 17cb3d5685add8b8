//! `secretgen backup`, `check` and `migrate`: the store's own operations, which no route has,
//! on the store itself (read-only, or a consistent copy beside a running server).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use secretgen_core::control;
use secretgen_core::store::{
    EventLog, PostgresOptions, PostgresStore, SqliteStore, Store, TokenStore,
};
use secretgen_engine::generator_type::GeneratorType;

use super::{CliError, DataDir, StoreArgs};

/// `secretgen migrate --data-dir DIR --database-url URL`.
#[derive(Debug, Args)]
pub(super) struct MigrateArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// The PostgreSQL database to copy into; it must hold no secretgen store.
    #[arg(long, env = "SECRETGEN_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// `secretgen backup --to FILE`.
#[derive(Debug, Args)]
pub(super) struct BackupArgs {
    /// Where to write the copy; must not exist. A data directory holding it as
    /// `secretgen.db` is a working store.
    #[arg(long)]
    to: PathBuf,
    #[command(flatten)]
    data_dir: DataDir,
}

/// `secretgen check`.
#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// `secretgen backup`: a consistent copy of the store, checked before it takes its name.
pub(super) fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let store = SqliteStore::open_read_only(&args.data_dir.path)?;
    let summary = store.backup(&args.to)?;
    println!(
        "{}: {} events, every hash checked",
        args.to.display(),
        summary.events
    );
    Ok(())
}

/// `secretgen check`: the store's integrity (every page, for the embedded store), the
/// schema, every event's hash and configuration, the tokens; nothing is written.
pub(super) fn check(args: &CheckArgs) -> Result<(), CliError> {
    let (store, mut lines): (Arc<dyn Store>, Vec<String>) = match &args.store.database_url {
        Some(url) => {
            let store = PostgresStore::connect(url, PostgresOptions::default())?;
            let line = format!(
                "{}: schema version {}",
                store.name(),
                secretgen::store::SCHEMA_VERSION
            );
            (Arc::new(store), vec![line])
        }
        None => {
            let store = SqliteStore::open_read_only(&args.store.data_dir.path)?;
            store.integrity_check()?;
            let line = format!(
                "{}: schema version {}, SQLite integrity check ok",
                store.path().display(),
                secretgen::store::SCHEMA_VERSION
            );
            (Arc::new(store), vec![line])
        }
    };
    let found = describe_store(store.as_ref())?;
    lines.extend(found);
    let mut out = io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

/// One line per instance (events, last sequence, chain, configurations) and one for the
/// tokens; an error when the default instance is missing or incomplete.
fn describe_store(store: &dyn Store) -> Result<Vec<String>, CliError> {
    let default = store
        .default_instance()?
        .ok_or_else(|| CliError::Incomplete("the store holds no instance".to_owned()))?;
    let mut lines = Vec::new();
    let mut instances = store.instances()?;
    if !instances.contains(&default) {
        instances.push(default.clone());
    }
    for id in instances {
        let events = store.events(&id)?;
        let snapshots = control::replay(&events)?;
        let missing: Vec<&str> = GeneratorType::ALL
            .into_iter()
            .filter(|t| !snapshots.contains_key(t))
            .map(GeneratorType::full_name)
            .collect();
        if id == default && !missing.is_empty() {
            return Err(CliError::Incomplete(format!(
                "instance {id} has no configuration for {}",
                missing.join(", ")
            )));
        }
        lines.push(format!(
            "instance {id}{}: {} events, last sequence {}, hash chain intact, {} \
             configurations valid",
            if id == default { " (default)" } else { "" },
            events.len(),
            events.last().map_or(0, |e| e.sequence),
            snapshots.len()
        ));
    }
    lines.push(format!("tokens: {}", store.token_count()?));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let codes = store.code_counts(now)?;
    lines.push(format!(
        "issued codes: {} stored for {} subjects, {} subjects locked (keyed hashes only)",
        codes.codes,
        codes.subjects,
        codes.locked.iter().map(|(_, n)| n).sum::<u64>()
    ));
    Ok(lines)
}

/// `secretgen migrate`: the embedded store's events (verbatim, hashes and all) and tokens
/// into an empty PostgreSQL database in one transaction, then the copy read back through
/// the PostgreSQL store, every hash and configuration checked, and compared with the
/// original.
pub(super) fn migrate(args: &MigrateArgs) -> Result<(), CliError> {
    let from = SqliteStore::open_read_only(&args.data_dir.path)?;
    from.integrity_check()?;
    let default = from.default_instance()?.ok_or_else(|| {
        CliError::Incomplete(format!("{} holds no instance", from.path().display()))
    })?;
    let rows = from.export_events()?;
    let tokens = from.tokens()?;
    let to = PostgresStore::connect(&args.database_url, PostgresOptions::default())?;
    if to.holds_store()? {
        return Err(CliError::Incomplete(format!(
            "{} already holds a secretgen store: migrate only into an empty database",
            to.name()
        )));
    }
    to.import(&default, &rows, &tokens)?;
    // The copy, read back and replayed, must be the original.
    let mut copied = 0;
    for id in from.instances()? {
        let original = from.events(&id)?;
        let copy = to.events(&id)?;
        if copy != original {
            return Err(CliError::Incomplete(format!(
                "the copy of instance {id} in {} differs from the original",
                to.name()
            )));
        }
        let live = |events: &[secretgen::store::Event]| -> Result<Vec<_>, CliError> {
            Ok(control::replay(events)?
                .into_values()
                .map(|s| (s.config().clone(), s.version()))
                .collect())
        };
        if live(&copy)? != live(&original)? {
            return Err(CliError::Incomplete(format!(
                "the copy of instance {id} replays differently"
            )));
        }
        copied += copy.len();
    }
    let mut copied_tokens = to.tokens()?;
    let mut original_tokens = tokens;
    copied_tokens.sort_by(|a, b| a.id.cmp(&b.id));
    original_tokens.sort_by(|a, b| a.id.cmp(&b.id));
    if copied_tokens != original_tokens || to.default_instance()?.as_ref() != Some(&default) {
        return Err(CliError::Incomplete(format!(
            "the tokens or the instance copied into {} differ from the original",
            to.name()
        )));
    }
    let lines = describe_store(&to)?;
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "copied {} into {}: {copied} events and {} tokens, every hash checked and every \
         configuration replayed",
        from.path().display(),
        to.name(),
        copied_tokens.len()
    );
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}
